//! Faults of the services hoard depends on: each gives the client a clear 5xx
//! promptly, never a committed entry pointing at missing bytes, and service
//! resumes when the dependency is back.

use base64::Engine;
use hoard_e2e::client::{commit_blocks, create, lookup, put_block, restore, save, twirp};
use hoard_e2e::proxy::TcpProxy;
use hoard_e2e::{Backend, Deployment, Server};
use serde_json::json;
use std::time::{Duration, Instant};

const V: &str = "faults-version";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn s3_down_mid_upload_gives_5xx_and_the_retry_succeeds() {
    let deployment = Deployment::new(Backend::PgS3);
    let server = Server::start_on(deployment.clone(), &[]);
    let s3 = deployment.s3.as_ref().unwrap();
    let upload = create(&server, "s3-outage", V).await;
    let blocks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 6 << 20]).collect();
    let ids: Vec<String> = (0..3).map(|i| b64(&format!("blk{i}"))).collect();
    assert_eq!(put_block(&upload, &ids[0], blocks[0].clone()).await, 201);

    s3.stop();
    let started = Instant::now();
    let status = put_block(&upload, &ids[1], blocks[1].clone()).await;
    assert_eq!(status, 503, "a block that cannot be stored is a 503");
    assert!(started.elapsed() < Duration::from_secs(60), "promptly");
    // Committing a list naming the failed block is refused: no entry points at
    // bytes that were never stored.
    let r = reqwest::Client::new()
        .put(format!("{upload}&comp=blocklist"))
        .body(format!(
            "<BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
            ids[0], ids[1]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(lookup(&server, "s3-outage", V).await, None);
    // A whole-body save fails the same way.
    let other = create(&server, "s3-outage-put-blob", V).await;
    let r = reqwest::Client::new()
        .put(&other)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![9u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.unwrap().contains("<Code>ServerBusy</Code>"));

    // The client retries once the S3 server is back.
    s3.resume();
    for (id, block) in ids.iter().zip(&blocks).skip(1) {
        assert_eq!(put_block(&upload, id, block.clone()).await, 201);
    }
    let size = blocks.iter().map(Vec::len).sum::<usize>() as u64;
    commit_blocks(&server, &upload, "s3-outage", V, &ids, size).await;
    let got = restore(&server, "s3-outage", V).await.expect("a hit");
    assert!(got == blocks.concat(), "byte-identical after the outage");
    // The storage errors were logged, without the credentials.
    let log = server.log();
    assert!(log.contains("storage failure"), "{log}");
    assert!(!log.contains(hoard_e2e::s3::SECRET_KEY));
}

#[tokio::test]
async fn s3_down_at_download_gives_5xx_not_a_short_body() {
    let deployment = Deployment::new(Backend::PgS3);
    let server = Server::start_on(deployment.clone(), &[]);
    save(&server, "read-outage", V, &vec![5u8; 3 << 20]).await;
    let url = lookup(&server, "read-outage", V).await.unwrap();
    deployment.s3.as_ref().unwrap().stop();
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    deployment.s3.as_ref().unwrap().resume();
    // A restarted SeaweedFS answers before its volumes are back: the client
    // retries the 503 until the bytes come, as the toolkit does.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = reqwest::get(&url).await.unwrap();
        if r.status().as_u16() != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 3 << 20);
}

/// A fresh PostgreSQL database reached through a proxy that can cut it off:
/// the database, the proxy and the URL through it.
fn database_behind_a_proxy() -> (hoard_e2e::postgres::TempDatabase, TcpProxy, String) {
    let db = hoard_e2e::postgres::TempDatabase::create();
    let target = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let proxy = TcpProxy::start(&target);
    let url = db
        .url
        .replacen(&target, &format!("127.0.0.1:{}", proxy.port), 1);
    (db, proxy, url)
}

#[tokio::test]
async fn postgres_unreachable_at_lookup_gives_5xx_then_recovers() {
    let (db, proxy, url) = database_behind_a_proxy();
    let server = Server::start_with(&[
        ("HOARD_DATABASE_URL", &url),
        ("HOARD_DATABASE_ACQUIRE_TIMEOUT_SECS", "2"),
    ]);
    save(&server, "pg-outage", V, b"before the outage").await;

    proxy.block();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let (status, body) = twirp(
        &http,
        &server.twirp_url("GetCacheEntryDownloadURL"),
        json!({"key": "pg-outage", "version": V}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no hang: {:?}",
        started.elapsed()
    );
    assert!(!server.log().contains("panicked"));

    proxy.unblock();
    assert_eq!(
        restore(&server, "pg-outage", V).await.as_deref(),
        Some(&b"before the outage"[..])
    );
    drop(server);
    drop(db);
}

/// `/readyz` as an orchestrator polls it: status and body.
async fn readiness(server: &Server) -> (u16, String) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn readiness_follows_the_database_and_the_object_store() {
    let (_db, proxy, url) = database_behind_a_proxy();
    let s3 = hoard_e2e::s3::S3Server::start();
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("HOARD_DATABASE_URL".into(), url));
    env.push(("HOARD_DATABASE_ACQUIRE_TIMEOUT_SECS".into(), "2".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with(&env);
    assert_eq!(readiness(&server).await, (200, "ready\n".into()));

    proxy.block();
    let started = Instant::now();
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered promptly"
    );
    // Liveness is not readiness: the process is fine.
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    proxy.unblock();
    wait_ready(&server).await;

    s3.stop();
    let (status, body) = readiness(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("storage") || body.contains("in time"),
        "{body}"
    );
    s3.resume();
    wait_ready(&server).await;
    // What made it unready is in the log, without the credentials.
    let log = server.log();
    assert!(log.contains("not ready"), "{log}");
    assert!(!log.contains(hoard_e2e::s3::SECRET_KEY));
}

async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readiness(server).await;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "still not ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
