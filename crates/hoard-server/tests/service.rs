//! CacheService in process, over a temporary SQLite database and local
//! directory (the stores `hoard serve` opens by default): saves through blocks
//! and chunks, matching, the limits and denials each surface maps to its own
//! errors, and deletion. Faster to run and to read than the black-box suite,
//! which drives the same paths through the real binary and clients.

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use hoard_core::policy::{NamespaceLimits, Policy};
use hoard_core::signing::UrlSigner;
use hoard_core::store::ByteStream;
use hoard_core::{CacheService, Caller, CoreError, ServiceConfig};
use std::sync::Arc;

struct Fixture {
    service: CacheService,
    dir: tempfile::TempDir,
}

async fn service_with(policy: Policy) -> Fixture {
    with_config(ServiceConfig {
        policy: Arc::new(policy),
        ..ServiceConfig::default()
    })
    .await
}

async fn with_config(config: ServiceConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let service = open_service(dir.path(), config).await;
    Fixture { service, dir }
}

/// A service over the stores in `dir` (made on first use).
async fn open_service(dir: &std::path::Path, config: ServiceConfig) -> CacheService {
    let url = hoard_db::sqlite_url(&dir.join("hoard.db"));
    let meta = Arc::new(
        hoard_db::open(&url, &hoard_db::PoolConfig::default())
            .await
            .unwrap(),
    );
    let blobs = hoard_storage::open(
        dir.join("blobs").to_str().unwrap(),
        &hoard_storage::StorageOptions::default(),
    )
    .await
    .unwrap();
    CacheService::new(meta, blobs, UrlSigner::new(b"test secret"), config)
}

async fn service() -> Fixture {
    service_with(Policy::default()).await
}

fn caller(read: &[&str], write: Option<&str>) -> Caller {
    Caller {
        namespace: "repo-1".into(),
        read_scopes: read.iter().map(|s| s.to_string()).collect(),
        write_scope: write.map(str::to_string),
    }
}

fn main_branch() -> Caller {
    caller(&["refs/heads/main"], Some("refs/heads/main"))
}

fn body(bytes: &[u8]) -> ByteStream {
    // Two pieces, as a body arrives from the network.
    let (a, b) = bytes.split_at(bytes.len() / 2);
    stream::iter(vec![
        Ok(Bytes::copy_from_slice(a)),
        Ok(Bytes::copy_from_slice(b)),
    ])
    .boxed()
}

/// Saves `content` under `key` as two blocks, the way the toolkit's v2 path does.
async fn save(svc: &CacheService, who: &Caller, key: &str, content: &[u8]) -> i64 {
    let signed = svc.create(who, key, "v").await.unwrap();
    let id = signed.entry_id;
    let (a, b) = content.split_at(content.len() / 2);
    svc.put_block(id, "YmxvY2stMQ==", body(a)).await.unwrap();
    svc.put_block(id, "YmxvY2stMg==", body(b)).await.unwrap();
    let ids = ["YmxvY2stMQ==".to_string(), "YmxvY2stMg==".to_string()];
    svc.put_block_list(id, &ids).await.unwrap();
    svc.finalize(who, key, "v", content.len() as i64)
        .await
        .unwrap()
}

async fn read_all(svc: &CacheService, entry_id: i64) -> Vec<u8> {
    let open = svc.open_blob(entry_id).await.unwrap();
    let size = open.entry.size as u64;
    let stream = svc.read(&open.entry, open.parts, 0, size).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn a_block_save_is_found_by_key_and_prefix_and_reads_back() {
    let f = service().await;
    let svc = &f.service;
    let who = main_branch();
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let id = save(svc, &who, "deps-linux-aaa", &content).await;
    assert_eq!(read_all(svc, id).await, content);

    let exact = svc.lookup(&who, "deps-linux-aaa", &[], "v").await.unwrap();
    assert_eq!(exact.map(|e| e.id), Some(id));
    let prefix = svc
        .lookup(&who, "deps-linux-bbb", &["deps-linux-".into()], "v")
        .await
        .unwrap();
    assert_eq!(prefix.map(|e| e.key), Some("deps-linux-aaa".into()));
    assert!(svc
        .lookup(&who, "deps-linux-aaa", &[], "other")
        .await
        .unwrap()
        .is_none());
    // Not visible before it is finalized: a second upload of another key.
    let pending = svc.create(&who, "half-done", "v").await.unwrap();
    svc.put_blob(pending.entry_id, body(b"partial"))
        .await
        .unwrap();
    assert!(svc
        .lookup(&who, "half-done", &[], "v")
        .await
        .unwrap()
        .is_none());
    // The same key again is taken.
    let again = svc.create(&who, "deps-linux-aaa", "v").await;
    assert!(
        matches!(again, Err(CoreError::AlreadyExists(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn scopes_decide_what_a_branch_reads_and_where_it_writes() {
    let f = service().await;
    let svc = &f.service;
    save(svc, &main_branch(), "build-1", b"from main").await;
    let feature = caller(
        &["refs/heads/feature", "refs/heads/main"],
        Some("refs/heads/feature"),
    );
    let found = svc.lookup(&feature, "build-1", &[], "v").await.unwrap();
    assert_eq!(found.map(|e| e.scope), Some("refs/heads/main".into()));
    save(svc, &feature, "build-2", b"from feature").await;
    assert!(svc
        .lookup(&main_branch(), "build-2", &[], "v")
        .await
        .unwrap()
        .is_none());

    // Denials in the words the toolkit reads as policy, not failure.
    let read_only = caller(&["refs/heads/main"], None);
    match svc.create(&read_only, "k", "v").await {
        Err(CoreError::PermissionDenied(m)) => assert!(m.starts_with("cache write denied:"), "{m}"),
        other => panic!("{other:?}"),
    }
    let write_only = caller(&[], Some("refs/heads/main"));
    match svc.lookup(&write_only, "build-1", &[], "v").await {
        Err(CoreError::PermissionDenied(m)) => assert!(m.starts_with("cache read denied:"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn chunks_in_any_order_commit_and_gaps_do_not() {
    let f = service().await;
    let svc = &f.service;
    let who = main_branch();
    let id = svc.reserve(&who, "v1-key", "v", Some(30)).await.unwrap();
    for (start, piece) in [
        (20u64, b"cccccccccc"),
        (0, b"aaaaaaaaaa"),
        (10, b"bbbbbbbbbb"),
    ] {
        svc.put_chunk(&who, id, start, start + 9, body(piece))
            .await
            .unwrap();
    }
    svc.commit_chunks(&who, id, 30).await.unwrap();
    assert_eq!(read_all(svc, id).await, b"aaaaaaaaaabbbbbbbbbbcccccccccc");

    let gap = svc.reserve(&who, "v1-gap", "v", None).await.unwrap();
    svc.put_chunk(&who, gap, 0, 9, body(b"aaaaaaaaaa"))
        .await
        .unwrap();
    svc.put_chunk(&who, gap, 20, 29, body(b"cccccccccc"))
        .await
        .unwrap();
    match svc.commit_chunks(&who, gap, 30).await {
        Err(CoreError::InvalidArgument(m)) => {
            assert!(m.contains("bytes 10-19 were never uploaded"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(svc
        .lookup(&who, "v1-gap", &[], "v")
        .await
        .unwrap()
        .is_none());
    // Another namespace's upload is answered as one that does not exist.
    let stranger = Caller {
        namespace: "repo-2".into(),
        ..main_branch()
    };
    let foreign = svc
        .put_chunk(&stranger, gap, 10, 19, body(b"bbbbbbbbbb"))
        .await;
    assert!(
        matches!(foreign, Err(CoreError::NotFound(_))),
        "{foreign:?}"
    );
}

#[tokio::test]
async fn the_entry_limit_refuses_at_reservation_and_as_bytes_arrive() {
    let policy = Policy {
        defaults: NamespaceLimits {
            max_entry_bytes: Some(1000),
            ..NamespaceLimits::default()
        },
        ..Policy::default()
    };
    let f = service_with(policy).await;
    let svc = &f.service;
    let who = main_branch();
    let declared = svc.reserve(&who, "too-big", "v", Some(5000)).await;
    assert!(
        matches!(declared, Err(CoreError::TooLarge(_))),
        "{declared:?}"
    );
    let signed = svc.create(&who, "grows", "v").await.unwrap();
    let staged = svc
        .put_block(signed.entry_id, "YmxvY2stMQ==", body(&[7u8; 3000]))
        .await;
    assert!(matches!(staged, Err(CoreError::TooLarge(_))), "{staged:?}");
}

#[tokio::test]
async fn a_deleted_key_misses_at_once() {
    let f = service().await;
    let svc = &f.service;
    let who = main_branch();
    let id = save(svc, &who, "to-delete", b"bytes").await;
    assert_eq!(svc.delete(&who, "to-delete").await.unwrap(), vec![id]);
    assert!(svc
        .lookup(&who, "to-delete", &[], "v")
        .await
        .unwrap()
        .is_none());
    assert!(svc.delete(&who, "to-delete").await.unwrap().is_empty());
}

/// Compaction rewrites an entry of several blocks as one object: the same
/// bytes read back, a download opened before the switch still reads the old
/// objects whole, and those go after the delete grace period. Entries of one
/// object, and entries gone meanwhile, are left alone.
#[tokio::test]
async fn compaction_makes_one_object_and_spares_readers_in_flight() {
    let f = with_config(ServiceConfig {
        compact: true,
        delete_grace_secs: 1,
        ..ServiceConfig::default()
    })
    .await;
    let svc = &f.service;
    let who = main_branch();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let id = save(svc, &who, "layers", &content).await;
    let before = svc.open_blob(id).await.unwrap();
    assert_eq!(before.parts.len(), 2);
    // A download that opened the entry before the switch.
    let in_flight = svc
        .read(&before.entry, before.parts.clone(), 0, content.len() as u64)
        .await
        .unwrap();

    assert!(svc.compact(id).await.unwrap());
    let after = svc.open_blob(id).await.unwrap();
    assert_eq!(after.parts.len(), 1);
    assert!(
        after.parts[0].object.contains("/whole-"),
        "{:?}",
        after.parts
    );
    assert_eq!(
        after.entry.hash, before.entry.hash,
        "the content's name stays"
    );
    assert_eq!(read_all(svc, id).await, content);
    let old: Vec<u8> = in_flight
        .try_collect::<Vec<Bytes>>()
        .await
        .unwrap()
        .concat();
    assert_eq!(
        old, content,
        "the reader in flight read the old objects whole"
    );
    // Nothing more to do, and nothing for a deleted entry.
    assert!(!svc.compact(id).await.unwrap());
    let gone = save(svc, &who, "gone", &content).await;
    svc.delete(&who, "gone").await.unwrap();
    assert!(!svc.compact(gone).await.unwrap());

    // The old objects go after the grace period (1 s here).
    let blocks = f
        .dir
        .path()
        .join("blobs/objects/entries")
        .join(id.to_string());
    let files = || std::fs::read_dir(&blocks).unwrap().count();
    assert_eq!(files(), 3, "the new object beside the two old ones");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "old objects still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(read_all(svc, id).await, content);
}

/// Entries saved while compaction was off (or queued on a replica that
/// stopped) are found and compacted when it starts; entries of one object are
/// not listed.
#[tokio::test]
async fn entries_left_of_several_objects_are_caught_up() {
    let before = with_config(ServiceConfig::default()).await;
    let who = main_branch();
    let content: Vec<u8> = (0..50_000u32).map(|i| (i % 249) as u8).collect();
    let a = save(&before.service, &who, "a", &content).await;
    let b = save(&before.service, &who, "b", &content).await;
    let one = before.service.create(&who, "one", "v").await.unwrap();
    before
        .service
        .put_blob(one.entry_id, body(&content))
        .await
        .unwrap();
    before
        .service
        .finalize(&who, "one", "v", content.len() as i64)
        .await
        .unwrap();

    let svc = open_service(
        before.dir.path(),
        ServiceConfig {
            compact: true,
            ..ServiceConfig::default()
        },
    )
    .await;
    assert_eq!(svc.queue_uncompacted().await.unwrap(), 2);
    assert_eq!(svc.compact_queued().await, 2);
    for id in [a, b] {
        assert_eq!(svc.open_blob(id).await.unwrap().parts.len(), 1);
        assert_eq!(read_all(&svc, id).await, content);
    }
    assert_eq!(svc.queue_uncompacted().await.unwrap(), 0, "nothing left");
}
