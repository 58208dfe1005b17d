//! Deleting an entry never cuts a download short: the entry leaves lookups at
//! once, its bytes only after the grace period.

use hoard_e2e::client::{delete, lookup, save};
use hoard_e2e::Server;
use std::time::Duration;

const V: &str = "deletion-version";

/// Reads the rest of a download slowly, past the moment its bytes become
/// deletable: it must finish whole; then the bytes go once the grace is over.
async fn finish_then_bytes_go(
    server: &Server,
    id: &str,
    mut response: reqwest::Response,
    mut got: Vec<u8>,
    data: &[u8],
) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(chunk) = response.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert!(got == data, "the download finished whole");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.entry_objects(id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the bytes were never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_download_in_flight_outlives_the_delete() {
    let server = Server::start_with(&[
        ("HOARD_DOWNLOADS_DELETE_GRACE_SECS", "2"),
        ("HOARD_UPLOADS_RECLAIM_INTERVAL_SECS", "1"),
    ]);
    let data: Vec<u8> = (0..48 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let id = save(&server, "doomed", V, &data).await;
    let url = lookup(&server, "doomed", V).await.unwrap();
    let mut response = reqwest::get(&url).await.unwrap();
    let got = response.chunk().await.unwrap().unwrap().to_vec();

    delete(&server, "doomed").await;
    assert_eq!(
        lookup(&server, "doomed", V).await,
        None,
        "gone from lookups at once"
    );
    assert!(
        !server.entry_objects(&id).is_empty(),
        "bytes kept for the grace period"
    );

    finish_then_bytes_go(&server, &id, response, got, &data).await;
    // A new download with the old URL is a clean 404, not a partial body.
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 404);
}

#[tokio::test]
async fn a_download_in_flight_outlives_eviction() {
    // Room for one 24 MiB entry: saving a second evicts the first (on pressure)
    // while it is being downloaded.
    let server = Server::start_with(&[
        ("HOARD_DOWNLOADS_DELETE_GRACE_SECS", "2"),
        ("HOARD_UPLOADS_RECLAIM_INTERVAL_SECS", "1"),
        ("HOARD_EVICTION_INTERVAL_SECS", "3600"),
        (
            "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
            &(40 << 20).to_string(),
        ),
    ]);
    let data: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    let id = save(&server, "old", V, &data).await;
    let url = lookup(&server, "old", V).await.unwrap();
    let mut response = reqwest::get(&url).await.unwrap();
    let got = response.chunk().await.unwrap().unwrap().to_vec();

    // The lookup made "old" the most recently used; a newer save of the same
    // size still has to evict it, the only other entry.
    save(&server, "new", V, &vec![1u8; 24 << 20]).await;
    // Wait on the log: a lookup that hit "old" would be a use that keeps it.
    assert!(
        server.wait_for_log("eviction on pressure", Duration::from_secs(10)),
        "never evicted\n{}",
        server.log()
    );
    assert_eq!(lookup(&server, "old", V).await, None);
    finish_then_bytes_go(&server, &id, response, got, &data).await;
    assert!(lookup(&server, "new", V).await.is_some());
}
