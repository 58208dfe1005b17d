//! The methods OpenDAL does not call, in binary protobuf: LookupCacheEntry,
//! ListCacheEntries and DeleteCacheEntry answer in the request's encoding.

use hoard_e2e::client::{restore, save};
use hoard_e2e::Server;
use hoard_proto::twirp as pb;
use prost::Message;

const V: &str = "protobuf-version";

async fn call<Req: Message, Resp: Message + Default>(s: &Server, method: &str, req: &Req) -> Resp {
    let r = reqwest::Client::new()
        .post(s.twirp_url(method))
        .header("content-type", "application/protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{method}");
    assert_eq!(r.headers()["content-type"], "application/protobuf");
    Resp::decode(r.bytes().await.unwrap()).expect("protobuf answer")
}

#[tokio::test]
async fn lookup_list_delete_in_protobuf() {
    let s = Server::start();
    save(&s, "pb-key-1", V, b"one").await;
    save(&s, "pb-key-2", V, b"two!").await;
    save(&s, "other", V, b"x").await;

    let found: pb::LookupCacheEntryResponse = call(
        &s,
        "LookupCacheEntry",
        &pb::LookupCacheEntryRequest {
            metadata: None,
            key: "pb-missing".into(),
            restore_keys: vec!["pb-key-".into()],
            version: V.into(),
        },
    )
    .await;
    assert!(found.exists);
    let entry = found.entry.unwrap();
    assert_eq!((entry.key.as_str(), entry.size_bytes), ("pb-key-2", 4));
    assert!(entry.hash.starts_with("sha256:"));
    assert_eq!(entry.hash.len(), "sha256:".len() + 64);
    assert!(entry.created_at.unwrap().seconds > 1_700_000_000);

    let miss: pb::LookupCacheEntryResponse = call(
        &s,
        "LookupCacheEntry",
        &pb::LookupCacheEntryRequest {
            metadata: None,
            key: "nope".into(),
            restore_keys: vec![],
            version: V.into(),
        },
    )
    .await;
    assert!(!miss.exists && miss.entry.is_none());

    let listed: pb::ListCacheEntriesResponse = call(
        &s,
        "ListCacheEntries",
        &pb::ListCacheEntriesRequest {
            metadata: None,
            key: "pb-key-".into(),
            restore_keys: vec![],
        },
    )
    .await;
    let keys: Vec<&str> = listed.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["pb-key-2", "pb-key-1"]);

    let deleted: pb::DeleteCacheEntryResponse = call(
        &s,
        "DeleteCacheEntry",
        &pb::DeleteCacheEntryRequest {
            metadata: None,
            key: "pb-key-1".into(),
        },
    )
    .await;
    assert!(deleted.ok && deleted.entry_id > 0);
    assert_eq!(restore(&s, "pb-key-1", V).await, None);
    assert_eq!(
        restore(&s, "pb-key-2", V).await.as_deref(),
        Some(&b"two!"[..])
    );
    let again: pb::DeleteCacheEntryResponse = call(
        &s,
        "DeleteCacheEntry",
        &pb::DeleteCacheEntryRequest {
            metadata: None,
            key: "pb-key-1".into(),
        },
    )
    .await;
    assert!(!again.ok);
    // The key can be saved anew once deleted.
    save(&s, "pb-key-1", V, b"fresh").await;
    assert_eq!(
        restore(&s, "pb-key-1", V).await.as_deref(),
        Some(&b"fresh"[..])
    );
}
