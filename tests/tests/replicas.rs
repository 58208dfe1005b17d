//! Stateless replicas: two hoard processes on one PostgreSQL database and one S3
//! bucket serve one upload between them, whichever receives each request.

use base64::Engine;
use hoard_e2e::client::{commit_blocks, create, lookup, put_block, restore, save};
use hoard_e2e::{Backend, Deployment, Server};
use std::sync::Arc;

const V: &str = "replicas-version";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The same URL on another replica (what a load balancer does).
fn on(server: &Server, url: &str) -> String {
    let rest = url.split_once("/blob/").expect("a blob URL").1;
    format!("{}/blob/{rest}", server.url)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Two replicas on one fresh PostgreSQL database and one bucket.
fn two_replicas() -> (Server, Server) {
    let deployment = Deployment::new(Backend::PgS3);
    let a = Server::start_on(deployment.clone(), &[]);
    (a, Server::start_on(deployment, &[]))
}

#[tokio::test]
async fn blocks_alternate_between_replicas() {
    let (a, b) = two_replicas();
    let upload = create(&a, "alternating", V).await;
    // Blocks of 3 MiB: each replica sees some, none sees all.
    let body = data(24 << 20, 7);
    let mut ids = Vec::new();
    for (i, block) in body.chunks(3 << 20).enumerate() {
        let id = b64(&format!("block-{i:04}"));
        let replica = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            put_block(&on(replica, &upload), &id, block.to_vec()).await,
            201
        );
        ids.push(id);
    }
    // Committed on B with A's URL rewritten, finalized on B.
    commit_blocks(
        &b,
        &on(&b, &upload),
        "alternating",
        V,
        &ids,
        body.len() as u64,
    )
    .await;
    for replica in [&a, &b] {
        let got = restore(replica, "alternating", V).await.expect("a hit");
        assert!(got == body, "byte-identical through {}", replica.url);
    }
    // A download URL minted by one replica works on the other.
    let url = lookup(&a, "alternating", V).await.unwrap();
    let got = reqwest::get(on(&b, &url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == body);
}

#[tokio::test]
async fn a_killed_replica_s_upload_completes_on_the_other() {
    let (a, b) = two_replicas();
    let upload = create(&a, "failover", V).await;
    let body = data(4 * (6 << 20), 3);
    let blocks: Vec<&[u8]> = body.chunks(6 << 20).collect();
    let ids: Vec<String> = (0..blocks.len()).map(|i| b64(&format!("b{i}"))).collect();
    assert_eq!(put_block(&upload, &ids[0], blocks[0].to_vec()).await, 201);

    // A dies while the second block streams in.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let url = format!("{upload}&comp=block&blockid={}", ids[1]);
    let len = blocks[1].len();
    let sending = tokio::spawn(async move {
        reqwest::Client::new()
            .put(url)
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
    });
    let mut tx = tx;
    use futures::SinkExt;
    tx.send(Ok(blocks[1][..1 << 20].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = a.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let _ = tx.send(Ok(blocks[1][1 << 20..].to_vec())).await;
    drop(tx);
    let failed = sending.await.unwrap();
    assert!(
        failed.map(|r| r.status().as_u16() != 201).unwrap_or(true),
        "the block sent to the killed replica did not succeed"
    );

    // The client retries that block, and sends the rest, to B.
    for (id, block) in ids.iter().zip(&blocks).skip(1) {
        assert_eq!(put_block(&on(&b, &upload), id, block.to_vec()).await, 201);
    }
    commit_blocks(&b, &on(&b, &upload), "failover", V, &ids, body.len() as u64).await;
    let got = restore(&b, "failover", V).await.expect("a hit");
    assert!(got == body, "byte-identical after failover");
}

#[test]
fn replicas_starting_together_on_an_empty_database_both_come_up() {
    let deployment = Deployment::new(Backend::PgS3);
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let d = Arc::clone(&deployment);
            std::thread::spawn(move || Server::start_on(d, &[]))
        })
        .collect();
    let servers: Vec<Server> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        save(&servers[0], "together", V, b"saved on one").await;
        assert_eq!(
            restore(&servers[1], "together", V).await.as_deref(),
            Some(&b"saved on one"[..])
        );
    });
}

/// The `removed=N` counts of a server's eviction passes.
fn evicted(server: &Server) -> Vec<usize> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("eviction pass"))
        .filter_map(|l| l.split("removed=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Committed 1 MiB entries written straight into the database, as if saved
/// through another replica: saves through these servers would make room
/// themselves (eviction on pressure), and this test is about the interval pass.
async fn seed(deployment: &Deployment, keys: &[&str]) {
    let url = &deployment.database.as_ref().expect("PostgreSQL").url;
    let store = hoard_db::open(url, &Default::default()).await.unwrap();
    let now = hoard_core::now_millis();
    for (i, key) in keys.iter().enumerate() {
        let object = format!("entries/seeded/{key}");
        store
            .insert_committed(
                "default",
                "default",
                key,
                V,
                now + i as i64,
                &object,
                1 << 20,
            )
            .await
            .unwrap();
    }
    store.close().await;
}

#[tokio::test]
async fn one_evictor_at_a_time_and_a_dead_one_s_lease_passes_on() {
    let deployment = Deployment::new(Backend::PgS3);
    // 2.5 MiB per namespace, a pass every second on each replica.
    let env = [
        ("HOARD_EVICTION_INTERVAL_SECS", "1"),
        ("HOARD_EVICTION_NAMESPACE_BUDGET_BYTES", "2621440"),
    ];
    let a = Server::start_on(deployment.clone(), &env);
    let b = Server::start_on(deployment.clone(), &env);
    seed(&deployment, &["r1", "r2", "r3", "r4"]).await;
    // Wait on the logs, not on restores: a restore is a use that would keep
    // its entry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while evicted(&a).iter().chain(&evicted(&b)).sum::<usize>() < 2 {
        assert!(std::time::Instant::now() < deadline, "nothing was evicted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Let a second pass of the other replica happen, if it were to.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(lookup(&b, "r1", V).await.is_none());
    assert!(lookup(&b, "r2", V).await.is_none());
    assert!(lookup(&b, "r4", V).await.is_some());
    // Exactly one replica ran passes, and the two entries were deleted once.
    let (ea, eb) = (evicted(&a), evicted(&b));
    assert!(ea.is_empty() != eb.is_empty(), "a: {ea:?}, b: {eb:?}");
    assert_eq!(ea.iter().chain(&eb).sum::<usize>(), 2);

    // The holder dies; its lease lapses and the other replica carries on.
    let (holder, other) = if ea.is_empty() { (b, a) } else { (a, b) };
    std::process::Command::new("kill")
        .args(["-KILL", &holder.pid().unwrap().to_string()])
        .status()
        .unwrap();
    seed(&deployment, &["r5", "r6"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while evicted(&other).iter().sum::<usize>() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the surviving replica never evicted:\n{}",
            other.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(lookup(&other, "r6", V).await.is_some());
    assert!(lookup(&other, "r3", V).await.is_none());
}
