//! The orphan sweep: objects no entry owns (a crash between storing bytes and
//! recording them) are deleted, page after page of the listing; objects of
//! saved entries and of uploads in progress stay.

use hoard_e2e::client::{create, entry_id_of, put_block, restore, save};
use hoard_e2e::Server;
use std::time::{Duration, Instant};

const V: &str = "orphans-version";

#[tokio::test]
async fn orphans_past_the_grace_period_are_swept_owned_objects_stay() {
    // The server's own sweep runs once at start and then hourly, so the
    // planted objects are all there until `hoard gc` sweeps them.
    let mut server = Server::start_with(&[
        ("HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS", "3600"),
        ("HOARD_STORAGE_ORPHAN_GRACE_SECS", "0"),
    ]);
    let kept = save(&server, "kept", V, b"saved bytes").await;
    let upload = create(&server, "in-progress", V).await;
    assert_eq!(put_block(&upload, "YmxvY2s=", vec![7u8; 100]).await, 201);
    let pending = entry_id_of(&upload);

    // More than one listing page (S3 pages hold 1,000 keys).
    for i in 0..1100 {
        server.plant_object(&format!("entries/999999/block-{i:05}"), b"orphan");
    }
    server.plant_object("entries/999998/blob-x", b"orphan");
    assert_eq!(server.entry_objects("999999").len(), 1100);

    server.stop();
    let out = server.run_cli(&["gc"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("1101 orphaned objects deleted"), "{stdout}");
    assert!(server.entry_objects("999999").is_empty());
    assert!(server.entry_objects("999998").is_empty());
    assert_eq!(
        server.entry_objects(&kept).len(),
        1,
        "a saved entry keeps its bytes"
    );
    assert_eq!(
        server.entry_objects(&pending).len(),
        1,
        "an upload in progress keeps its block"
    );
    let server = server.restart();
    assert_eq!(
        restore(&server, "kept", V).await.as_deref(),
        Some(&b"saved bytes"[..])
    );
}

#[tokio::test]
async fn the_server_sweeps_on_its_interval() {
    let server = Server::start_with(&[
        ("HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS", "1"),
        ("HOARD_STORAGE_ORPHAN_GRACE_SECS", "0"),
    ]);
    let kept = save(&server, "kept", V, b"saved bytes").await;
    for i in 0..3 {
        server.plant_object(&format!("entries/999997/block-{i}"), b"orphan");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.entry_objects("999997").is_empty() {
        assert!(Instant::now() < deadline, "orphans left\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.wait_for_log("deleted orphaned objects", Duration::from_secs(5)));
    assert_eq!(server.entry_objects(&kept).len(), 1);
}
