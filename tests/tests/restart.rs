//! Restarts and abandoned uploads: committed entries survive, pending uploads can be
//! resumed after a restart, and uploads never finalized are reclaimed.

use hoard_e2e::client::{commit_blocks, restore, save, twirp};
use hoard_e2e::Server;
use serde_json::json;
use std::time::Duration;

const V: &str = "restart-version";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn entries_and_pending_uploads_survive_a_restart() {
    let server = Server::start();
    save(&server, "committed", V, b"kept across restarts").await;
    let http = reqwest::Client::new();
    let (_, v) = twirp(
        &http,
        &server.twirp_url("CreateCacheEntry"),
        json!({"key": "pending", "version": V}),
    )
    .await;
    let upload = v["signed_upload_url"].as_str().unwrap().to_string();
    let r = http
        .put(format!("{upload}&comp=block&blockid={}", b64("b1")))
        .body("first-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let server = server.restart();
    assert!(server.log().contains("hoard listening on"));
    assert_eq!(
        restore(&server, "committed", V).await.as_deref(),
        Some(&b"kept across restarts"[..])
    );
    // The upload URL still works (the signing key is kept in the data dir): resume.
    let r = http
        .put(format!("{upload}&comp=block&blockid={}", b64("b2")))
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    commit_blocks(&server, &upload, "pending", V, &[b64("b1"), b64("b2")], 12).await;
    assert_eq!(
        restore(&server, "pending", V).await.as_deref(),
        Some(&b"first-second"[..])
    );
}

#[tokio::test]
async fn abandoned_uploads_are_reclaimed() {
    let server = Server::start_with(&[
        ("HOARD_UPLOADS_PENDING_TIMEOUT_SECS", "1"),
        ("HOARD_UPLOADS_RECLAIM_INTERVAL_SECS", "1"),
    ]);
    let http = reqwest::Client::new();
    let (_, v) = twirp(
        &http,
        &server.twirp_url("CreateCacheEntry"),
        json!({"key": "abandoned", "version": V}),
    )
    .await;
    let upload = v["signed_upload_url"].as_str().unwrap().to_string();
    let id = hoard_e2e::client::entry_id_of(&upload);
    let r = http
        .put(format!("{upload}&comp=block&blockid={}", b64("b1")))
        .body(vec![1u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        server.entry_objects(&id).len(),
        1,
        "the staged block is stored"
    );

    assert!(server.wait_for_log("reclaimed abandoned uploads", Duration::from_secs(10)));
    assert_eq!(
        server.entry_objects(&id),
        Vec::<std::path::PathBuf>::new(),
        "the staged block is deleted with the upload"
    );
    // The upload URL no longer accepts blocks, and the key can be saved afresh.
    let r = http
        .put(format!("{upload}&comp=block&blockid={}", b64("b2")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    save(&server, "abandoned", V, b"fresh").await;
    assert_eq!(
        restore(&server, "abandoned", V).await.as_deref(),
        Some(&b"fresh"[..])
    );
}

#[tokio::test]
async fn sigterm_lets_a_download_in_flight_finish() {
    let server = Server::start();
    let data: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    save(&server, "big", V, &data).await;
    let url = hoard_e2e::client::lookup(&server, "big", V).await.unwrap();
    let mut server = server;
    let mut response = reqwest::get(&url).await.unwrap();
    let mut got = Vec::with_capacity(data.len());
    let first = response.chunk().await.unwrap().unwrap();
    got.extend_from_slice(&first);
    // Stop while the body is still streaming.
    let stopper = std::thread::spawn(move || server.stop());
    while let Some(chunk) = response.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(
        stopper.join().unwrap(),
        Some(0),
        "hoard exits 0 after SIGTERM"
    );
    assert!(got == data, "the download finished whole");
}
