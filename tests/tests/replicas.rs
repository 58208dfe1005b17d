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
