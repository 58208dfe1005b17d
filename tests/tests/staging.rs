//! Bytes that no budget counted: blocks staged but never listed, staged bytes
//! of unfinished uploads, and objects under a live entry that nothing refers
//! to. Each is now freed or refused, so disk use stays within the budgets.

use base64::Engine;
use hoard_e2e::client::{azure, commit_blocks, create, entry_id_of, put_block, restore};
use hoard_e2e::Server;

const V: &str = "staging-version";
const MIB: usize = 1024 * 1024;

fn id(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn blocks_staged_after_the_list_are_deleted_at_finalize() {
    let server = Server::start();
    let upload = create(&server, "late-blocks", V).await;
    let entry = entry_id_of(&upload);
    assert_eq!(put_block(&upload, &id("a"), vec![1u8; 1024]).await, 201);
    let list = reqwest::Client::new()
        .put(format!("{upload}&comp=blocklist"))
        .body(format!(
            "<BlockList><Latest>{}</Latest></BlockList>",
            id("a")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status().as_u16(), 201);
    // Staged after the list: never part of the entry.
    assert_eq!(put_block(&upload, &id("b"), vec![2u8; 6 * MIB]).await, 201);
    assert_eq!(put_block(&upload, &id("c"), vec![3u8; 6 * MIB]).await, 201);
    assert_eq!(server.entry_objects(&entry).len(), 3);
    hoard_e2e::client::finalize(&server, "late-blocks", V, 1024).await;
    assert_eq!(
        server.entry_objects(&entry).len(),
        1,
        "only the listed block's object is kept"
    );
    assert_eq!(
        restore(&server, "late-blocks", V).await.unwrap(),
        vec![1u8; 1024]
    );
}

#[tokio::test]
async fn staged_bytes_count_against_the_entry_limit_and_the_namespace_budget() {
    let server = Server::start_with(&[(
        "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
        &(16 * MIB).to_string(),
    )]);
    let one = create(&server, "first", V).await;
    for i in 0..2 {
        assert_eq!(
            put_block(&one, &id(&format!("b{i}")), vec![1u8; 6 * MIB]).await,
            201
        );
    }
    // A third 6 MiB block would make 18 MiB staged for one entry of at most 16.
    let r = reqwest::Client::new()
        .put(format!("{one}&comp=block&blockid={}", id("b2")))
        .body(vec![1u8; 6 * MIB])
        .send()
        .await
        .unwrap();
    let (status, code, _) = azure(r).await;
    assert_eq!((status, code.as_str()), (413, "RequestBodyTooLarge"));
    // Retrying a block id replaces it: its old bytes do not count twice.
    assert_eq!(put_block(&one, &id("b1"), vec![2u8; 6 * MIB]).await, 201);

    // Another upload of the namespace: 12 MiB are staged, 4 MiB are left.
    let two = create(&server, "second", V).await;
    assert_eq!(put_block(&two, &id("x0"), vec![3u8; 3 * MIB]).await, 201);
    let r = reqwest::Client::new()
        .put(format!("{two}&comp=block&blockid={}", id("x1")))
        .body(vec![3u8; 2 * MIB])
        .send()
        .await
        .unwrap();
    let (status, code, _) = azure(r).await;
    assert_eq!((status, code.as_str()), (413, "RequestBodyTooLarge"));

    // The first upload still commits what it staged within the limits.
    let ids = vec![id("b0"), id("b1")];
    commit_blocks(&server, &one, "first", V, &ids, (12 * MIB) as u64).await;
    let mut want = vec![1u8; 6 * MIB];
    want.extend(vec![2u8; 6 * MIB]);
    assert!(restore(&server, "first", V).await.unwrap() == want);
}

#[tokio::test]
async fn the_orphan_sweep_deletes_strays_under_live_entries() {
    let mut server = Server::start_with(&[
        ("HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS", "3600"),
        ("HOARD_STORAGE_ORPHAN_GRACE_SECS", "0"),
    ]);
    let kept = hoard_e2e::client::save(&server, "kept", V, b"saved bytes").await;
    server.plant_object(&format!("entries/{kept}/block-stray"), b"stray");
    assert_eq!(server.entry_objects(&kept).len(), 2);
    server.stop();
    let out = server.run_cli(&["gc"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("1 orphaned objects deleted"), "{stdout}");
    assert_eq!(server.entry_objects(&kept).len(), 1);
    let server = server.restart();
    assert_eq!(
        restore(&server, "kept", V).await.as_deref(),
        Some(&b"saved bytes"[..])
    );
}
