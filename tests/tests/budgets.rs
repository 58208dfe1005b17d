//! Budgets as a saving client meets them: a save that fills a namespace makes
//! room at once (the least recently used entries go, not the save), and an entry
//! larger than its namespace allows is refused with a protocol error before it
//! is stored whole.

use hoard_e2e::client::{create, lookup, put_block, restore, save, twirp};
use hoard_e2e::Server;
use serde_json::json;
use std::time::{Duration, Instant};

const V: &str = "budget-version";
const MIB: usize = 1024 * 1024;

/// Bytes of the namespace's committed entries, as ListCacheEntries reports them.
async fn listed(server: &Server) -> (Vec<String>, u64) {
    let (s, v) = twirp(
        &reqwest::Client::new(),
        &server.twirp_url("ListCacheEntries"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    let mut keys: Vec<String> = entries
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let bytes = entries
        .iter()
        .map(|e| e["size_bytes"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    (keys, bytes)
}

async fn until_listed(server: &Server, want: &[&str]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (keys, bytes) = listed(server).await;
        if keys == want {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "entries {keys:?}, wanted {want:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_save_into_a_full_namespace_evicts_its_least_recently_used_at_once() {
    let budget = 5 * MIB / 2;
    // The interval is an hour: only the pressure of the saves can evict here.
    let server = Server::start_with(&[
        ("HOARD_EVICTION_INTERVAL_SECS", "3600"),
        ("HOARD_EVICTION_NAMESPACE_BUDGET_BYTES", &budget.to_string()),
    ]);
    save(&server, "p1", V, &vec![1u8; MIB]).await;
    save(&server, "p2", V, &vec![2u8; MIB]).await;
    // p1 restored just now (its access not yet flushed): it must still count.
    assert!(restore(&server, "p1", V).await.is_some());
    save(&server, "p3", V, &vec![3u8; MIB]).await;
    let bytes = until_listed(&server, &["p1", "p3"]).await;
    assert!(bytes as usize <= budget);
    assert!(lookup(&server, "p2", V).await.is_none());
    assert!(server.wait_for_log("eviction on pressure", Duration::from_secs(5)));

    // Next overflow: p1 was used before p3 was saved, so p1 goes.
    save(&server, "p4", V, &vec![4u8; MIB]).await;
    until_listed(&server, &["p3", "p4"]).await;
    assert_eq!(
        restore(&server, "p4", V).await.as_deref(),
        Some(&vec![4u8; MIB][..])
    );
}

/// The Azure error code of a refused blob request.
async fn azure_refusal(r: reqwest::Response) -> (u16, String) {
    let (status, code, body) = hoard_e2e::client::azure(r).await;
    assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
    (status, code)
}

#[tokio::test]
async fn entries_larger_than_the_namespace_allows_are_refused() {
    // At most 1.5 MiB per entry (budget 3 MiB).
    let server = Server::start_with(&[
        (
            "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
            &(3 * MIB).to_string(),
        ),
        ("HOARD_EVICTION_MAX_ENTRY_BYTES", &(3 * MIB / 2).to_string()),
    ]);
    let http = reqwest::Client::new();

    // Put Blob of 2 MiB: refused while streaming, nothing kept.
    let url = create(&server, "big-blob", V).await;
    let r = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![9u8; 2 * MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(azure_refusal(r).await, (413, "RequestBodyTooLarge".into()));

    // Staged bytes count as they arrive: one block of 1 MiB fits, a second
    // would make 2 MiB staged for one entry and is refused while streaming.
    let url = create(&server, "big-blocks", V).await;
    assert_eq!(put_block(&url, "QQ==", vec![7u8; MIB]).await, 201);
    assert_eq!(put_block(&url, "Qg==", vec![7u8; MIB]).await, 413);
    let r = http
        .put(format!("{url}&comp=blocklist"))
        .body("<BlockList><Latest>QQ==</Latest><Latest>Qg==</Latest></BlockList>")
        .send()
        .await
        .unwrap();
    assert_eq!(azure_refusal(r).await, (400, "InvalidBlockList".into()));
    // So there is nothing to finalize.
    for key in ["big-blob", "big-blocks"] {
        let (s, v) = twirp(
            &http,
            &server.twirp_url("FinalizeCacheEntryUpload"),
            json!({"key": key, "version": V, "size_bytes": (2 * MIB).to_string()}),
        )
        .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (412, Some("failed_precondition")),
            "{v}"
        );
        assert!(lookup(&server, key, V).await.is_none());
    }
    // An entry within the limit saves as usual.
    save(&server, "fits", V, &vec![5u8; MIB]).await;
    assert!(restore(&server, "fits", V).await.is_some());
}

#[tokio::test]
async fn without_a_maximum_the_namespace_budget_is_the_limit() {
    let server = Server::start_with(&[("HOARD_EVICTION_NAMESPACE_BUDGET_BYTES", &MIB.to_string())]);
    let url = create(&server, "over-budget", V).await;
    let r = reqwest::Client::new()
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![1u8; MIB + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(azure_refusal(r).await, (413, "RequestBodyTooLarge".into()));
    save(&server, "at-budget", V, &vec![1u8; MIB]).await;
}
