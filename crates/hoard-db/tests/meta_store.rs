//! The metadata store against the matching table and the upload life cycle, on
//! SQLite and on PostgreSQL (a throwaway database per test).
//!
//! One file: the same contract runs against both engines, test by test.

use hoard_core::matching::{find_match, table, InNamespace};
use hoard_core::model::{EntryState, StoredObject};
use hoard_core::store::{BlobCommit, Finalized, MetaStore, Reservation, Staged};
use hoard_db::SqlStore;
use hoard_e2e::postgres::TempDatabase;

async fn sqlite() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = hoard_db::sqlite_url(&dir.path().join("meta db %.db"));
    let s = hoard_db::open(&url, &Default::default()).await.unwrap();
    (dir, s)
}

async fn postgres() -> (TempDatabase, SqlStore) {
    let db = TempDatabase::create();
    let s = hoard_db::open(&db.url, &Default::default()).await.unwrap();
    (db, s)
}

/// Runs each named check once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (_guard, s) = super::sqlite().await;
                super::$name(&s).await;
                s.close().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let (_guard, s) = super::postgres().await;
                super::$name(&s).await;
                s.close().await;
            })*
        }
    };
}

fn obj(name: &str, size: i64) -> StoredObject {
    StoredObject {
        object: name.into(),
        size,
        sha256: "00".repeat(32),
        crc64: String::new(),
    }
}

async fn matching_table_holds(s: &SqlStore) {
    for (i, case) in table::CASES.iter().enumerate() {
        // Each case in a namespace of its own.
        let ns = format!("ns{i}");
        for e in table::entries(case) {
            s.insert_committed(&ns, &e.scope, &e.key, &e.version, e.created_at, "o", 0)
                .await
                .unwrap();
        }
        let scopes: Vec<String> = case.scopes.iter().map(|x| x.to_string()).collect();
        let src = InNamespace {
            store: s,
            namespace: &ns,
        };
        let got = find_match(&src, &scopes, case.version, case.keys)
            .await
            .unwrap()
            .map(|e| (e.scope, e.key));
        let want = case.expect.map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(got, want, "case: {}", case.name);
        // The one-query lookup the service uses answers the same.
        let first = s
            .find_first(&ns, &scopes, case.version, case.keys)
            .await
            .unwrap()
            .map(|e| (e.scope, e.key));
        assert_eq!(first, want, "find_first, case: {}", case.name);
        assert_eq!(
            s.find_first("other", &scopes, case.version, case.keys)
                .await
                .unwrap(),
            None
        );
        // Another namespace never sees these entries.
        let other = InNamespace {
            store: s,
            namespace: "other",
        };
        assert_eq!(
            find_match(&other, &scopes, case.version, case.keys)
                .await
                .unwrap(),
            None
        );
    }
}

async fn reservation_is_exclusive_until_stale(s: &SqlStore) {
    let Reservation::Created { id, replaced: None } =
        s.reserve("ns", "main", "k", "v", 1000, 0).await.unwrap()
    else {
        panic!("first reservation must succeed")
    };
    assert_eq!(
        s.reserve("ns", "main", "k", "v", 1001, 0).await.unwrap(),
        Reservation::Taken
    );
    // Another scope or version is another entry.
    assert!(matches!(
        s.reserve("ns", "feat", "k", "v", 1001, 0).await.unwrap(),
        Reservation::Created { .. }
    ));
    assert!(matches!(
        s.reserve("ns", "main", "k", "v2", 1001, 0).await.unwrap(),
        Reservation::Created { .. }
    ));
    // Once the first is older than the stale bound it is taken over.
    match s.reserve("ns", "main", "k", "v", 5000, 2000).await.unwrap() {
        Reservation::Created { replaced, .. } => assert_eq!(replaced, Some(id)),
        other => panic!("{other:?}"),
    }
}

async fn blocks_commit_in_list_order_and_finalize_checks_size(s: &SqlStore) {
    let Reservation::Created { id, .. } = s.reserve("ns", "main", "k", "v", 1, 0).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        s.stage_block(id, "Qg==", &obj("b1", 5)).await.unwrap(),
        Staged::Ok { replaced: None }
    );
    assert_eq!(
        s.stage_block(id, "QQ==", &obj("a1", 3)).await.unwrap(),
        Staged::Ok { replaced: None }
    );
    // A retried block replaces the earlier object.
    assert_eq!(
        s.stage_block(id, "QQ==", &obj("a2", 3)).await.unwrap(),
        Staged::Ok {
            replaced: Some("a1".into())
        }
    );
    assert_eq!(
        s.stage_block(id, "Qw==", &obj("c1", 7)).await.unwrap(),
        Staged::Ok { replaced: None }
    );
    assert_eq!(
        s.commit_block_list(id, &["Wg==".into()], i64::MAX, 2)
            .await
            .unwrap(),
        BlobCommit::UnknownBlock("Wg==".into())
    );
    // Not visible before finalize.
    assert_eq!(s.find_exact("ns", "main", "v", "k").await.unwrap(), None);
    match s
        .commit_block_list(id, &["QQ==".into(), "Qg==".into()], i64::MAX, 2)
        .await
        .unwrap()
    {
        BlobCommit::Ok { size, unused } => {
            assert_eq!(size, 8);
            assert_eq!(unused, vec!["c1".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let parts = s.parts(id).await.unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.offset, p.size, p.object.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, 3, "a2"), (3, 5, "b1")]
    );
    assert_eq!(
        s.finalize("ns", "main", "k", "v", 9, 3).await.unwrap(),
        Finalized::SizeMismatch { expected: 8 }
    );
    assert_eq!(s.find_exact("ns", "main", "v", "k").await.unwrap(), None);
    assert_eq!(
        s.finalize("ns", "main", "k", "v", 8, 3).await.unwrap(),
        Finalized::Ok { id, unused: vec![] }
    );
    // Retried finalize and block list answer the same; other content is refused.
    assert_eq!(
        s.finalize("ns", "main", "k", "v", 8, 4).await.unwrap(),
        Finalized::Ok { id, unused: vec![] }
    );
    assert_eq!(
        s.commit_block_list(id, &["QQ==".into(), "Qg==".into()], i64::MAX, 4)
            .await
            .unwrap(),
        BlobCommit::AlreadyCommitted { size: 8 }
    );
    assert_eq!(
        s.commit_block_list(id, &["QQ==".into()], i64::MAX, 4)
            .await
            .unwrap(),
        BlobCommit::Immutable
    );
    assert_eq!(
        s.stage_block(id, "QQ==", &obj("a3", 3)).await.unwrap(),
        Staged::NotPending
    );
    assert_eq!(
        s.commit_single(id, &obj("z", 1), 4).await.unwrap(),
        BlobCommit::Immutable
    );
    let e = s.find_exact("ns", "main", "v", "k").await.unwrap().unwrap();
    assert_eq!((e.id, e.size, e.state), (id, 8, EntryState::Committed));
    assert!(e.hash.starts_with("sha256-parts:"));
    assert_eq!(
        s.reserve("ns", "main", "k", "v", 10, 9).await.unwrap(),
        Reservation::Taken
    );
}

async fn put_blob_replaces_staged_blocks_and_finalize_needs_a_blob(s: &SqlStore) {
    let Reservation::Created { id, .. } = s.reserve("ns", "main", "k", "v", 1, 0).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        s.finalize("ns", "main", "k", "v", 0, 2).await.unwrap(),
        Finalized::NoBlob
    );
    assert_eq!(
        s.finalize("ns", "main", "nope", "v", 0, 2).await.unwrap(),
        Finalized::NotFound
    );
    s.stage_block(id, "QQ==", &obj("a", 3)).await.unwrap();
    match s.commit_single(id, &obj("whole", 10), 2).await.unwrap() {
        BlobCommit::Ok { size, unused } => {
            assert_eq!(size, 10);
            assert_eq!(unused, vec!["a".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.finalize("ns", "main", "k", "v", 10, 2).await.unwrap(),
        Finalized::Ok { id, unused: vec![] }
    );
    let e = s.entry(id).await.unwrap().unwrap();
    assert_eq!(e.hash, format!("sha256:{}", "00".repeat(32)));
}

async fn stale_uploads_are_deleted_committed_entries_stay(s: &SqlStore) {
    let Reservation::Created { id: old, .. } =
        s.reserve("ns", "main", "a", "v", 1, 0).await.unwrap()
    else {
        panic!()
    };
    let Reservation::Created { id: fresh, .. } =
        s.reserve("ns", "main", "b", "v", 100, 0).await.unwrap()
    else {
        panic!()
    };
    let kept = s
        .insert_committed("ns", "main", "c", "v", 1, "o", 1)
        .await
        .unwrap();
    assert_eq!(s.delete_stale_uploads(50, 10).await.unwrap(), vec![old]);
    assert!(s.entry(old).await.unwrap().is_none());
    assert!(s.entry(fresh).await.unwrap().is_some());
    assert!(s.entry(kept).await.unwrap().is_some());
}

async fn list_delete_and_touch(s: &SqlStore) {
    let a = s
        .insert_committed("ns", "main", "npm-1", "v", 1, "o", 1)
        .await
        .unwrap();
    let b = s
        .insert_committed("ns", "main", "npm-2", "v", 2, "o", 1)
        .await
        .unwrap();
    s.insert_committed("ns", "main", "pip-1", "v", 3, "o", 1)
        .await
        .unwrap();
    s.insert_committed("ns", "other", "npm-3", "v", 4, "o", 1)
        .await
        .unwrap();
    let scopes = vec!["main".to_string()];
    let listed: Vec<i64> = s
        .list("ns", &scopes, &["npm-".into()], 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![b, a]);
    assert_eq!(s.list("ns", &scopes, &[], 10).await.unwrap().len(), 3);
    s.touch(&[(a, 99)]).await.unwrap();
    assert_eq!(s.entry(a).await.unwrap().unwrap().last_accessed_at, 99);
    assert_eq!(s.delete_key("ns", "main", "npm-1").await.unwrap(), vec![a]);
    assert!(s.entry(a).await.unwrap().is_none());
    assert!(s
        .delete_key("ns", "main", "npm-1")
        .await
        .unwrap()
        .is_empty());
}

/// Many writers (replicas) reserving one key at once: exactly one gets it.
async fn concurrent_reservations_have_one_winner(s: &SqlStore) {
    let attempts = (0..16).map(|_| s.reserve("ns", "main", "race", "v", 10, 0));
    let results = futures::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Reservation::Created { .. })))
        .count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Ok(Reservation::Taken)))
        .count();
    assert_eq!((created, taken), (1, 15), "{results:?}");
}

/// Deletions scheduled for later come due in time order and are forgotten once
/// done; scheduling one again moves it.
async fn doomed_objects_come_due_in_order(s: &SqlStore) {
    s.doom(&["entries/2".into()], 2000).await.unwrap();
    s.doom(&["entries/1".into()], 1000).await.unwrap();
    s.doom(&["entries/3".into()], 9000).await.unwrap();
    assert!(s.due_dooms(999, 10).await.unwrap().is_empty());
    assert_eq!(
        s.due_dooms(5000, 10).await.unwrap(),
        vec!["entries/1".to_string(), "entries/2".to_string()]
    );
    assert_eq!(
        s.due_dooms(5000, 1).await.unwrap(),
        vec!["entries/1".to_string()]
    );
    s.forget_dooms(&[("entries/1".into(), None)]).await.unwrap();
    s.doom(&["entries/2".into()], 8000).await.unwrap();
    assert!(s.due_dooms(5000, 10).await.unwrap().is_empty());
    assert_eq!(s.due_dooms(9000, 10).await.unwrap().len(), 2);
    // Many at once, in one go.
    let many: Vec<String> = (100..1200).map(|i| format!("entries/{i}")).collect();
    s.doom(&many, 50_000).await.unwrap();
    assert_eq!(s.due_dooms(50_000, 5000).await.unwrap().len(), 1100 + 2);
    let asked = ["entries/2".to_string(), "entries/7".to_string()];
    assert_eq!(
        s.doomed_among(&asked).await.unwrap(),
        vec!["entries/2".to_string()]
    );
    let Reservation::Created { id, .. } = s.reserve("ns", "main", "k", "v", 1, 0).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(s.existing_entries(&[id, id + 100]).await.unwrap(), vec![id]);
}

/// What eviction reads and deletes: namespaces, each one's entries least
/// recently used first, and deletes that spare an entry used since planning.
async fn eviction_reads_lru_and_spares_entries_used_since(s: &SqlStore) {
    let a1 = s
        .insert_committed("team/a", "main", "k1", "v", 10, "o", 5)
        .await
        .unwrap();
    let a2 = s
        .insert_committed("team/a", "main", "k2", "v", 20, "o", 7)
        .await
        .unwrap();
    let b1 = s
        .insert_committed("team/b", "dev", "k1", "v", 15, "o", 9)
        .await
        .unwrap();
    s.touch(&[(a1, 30)]).await.unwrap();
    assert_eq!(
        s.namespaces().await.unwrap(),
        vec!["team/a".to_string(), "team/b".to_string()]
    );
    let a = s.eviction_candidates("team/a").await.unwrap();
    assert_eq!(
        a.iter()
            .map(|c| (c.id, c.last_accessed_at, c.size))
            .collect::<Vec<_>>(),
        vec![(a2, 20, 7), (a1, 30, 5)]
    );
    assert_eq!(a[0].key, "k2");
    assert_eq!(a[0].scope, "main");
    // a1 was planned at its old access time and used since: it stays.
    let deleted = s
        .delete_unused(
            &[(a2, 20), (a1, 10), (b1, 15)],
            &|id| format!("entries/{id}"),
            99,
        )
        .await
        .unwrap();
    let mut deleted = deleted;
    deleted.sort();
    assert_eq!(deleted, vec![a2.min(b1), a2.max(b1)]);
    assert!(s
        .find_exact("team/a", "main", "v", "k1")
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.namespaces().await.unwrap(), vec!["team/a".to_string()]);
}

/// Parts go with their entry: at once for a single delete, with the entry's
/// objects for an eviction pass (which removes only what lookups see), and
/// never another entry's.
async fn parts_of_deleted_entries_go_at_once_or_with_their_objects(s: &SqlStore) {
    let by_key = s
        .insert_committed("ns", "main", "by-key", "v", 1, "o1", 3)
        .await
        .unwrap();
    let evicted = s
        .insert_committed("ns", "main", "evicted", "v", 2, "o2", 3)
        .await
        .unwrap();
    let kept = s
        .insert_committed("ns", "main", "kept", "v", 3, "o3", 3)
        .await
        .unwrap();
    assert_eq!(
        s.delete_key("ns", "main", "by-key").await.unwrap(),
        vec![by_key]
    );
    assert!(s.parts(by_key).await.unwrap().is_empty());
    let prefix = |id: i64| format!("entries/{id}");
    assert_eq!(
        s.delete_unused(&[(evicted, 2)], &prefix, 10).await.unwrap(),
        vec![evicted]
    );
    assert!(s
        .find_exact("ns", "main", "v", "evicted")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.parts(evicted).await.unwrap().len(),
        1,
        "left to the purge"
    );
    let due = s.due_dooms(10, 10).await.unwrap();
    assert_eq!(due, vec![prefix(evicted)]);
    s.forget_dooms(&[(due[0].clone(), Some(evicted))])
        .await
        .unwrap();
    assert!(s.parts(evicted).await.unwrap().is_empty());
    assert!(s.due_dooms(10, 10).await.unwrap().is_empty());
    assert_eq!(s.parts(kept).await.unwrap()[0].object, "o3");
}

/// The store-wide pass: namespace rules first, then the least recently used
/// of the whole store (read page by page, ties by id) down to the low
/// watermark, protected keys only when nothing else is left.
async fn the_global_pass_pages_through_the_store_protected_last(s: &SqlStore) {
    use hoard_core::eviction::EvictionPass;
    use hoard_core::policy::{Glob, GlobalBudget, NamespaceLimits, NamespaceRule, Policy, Reason};
    let rows = [
        ("team/a", "keep-1", 30, 1),
        ("team/a", "x2", 20, 2),
        ("team/b", "y1", 5, 3),
        ("team/b", "y2", 5, 4),
        ("team/b", "y3", 5, 5),
        ("team/a", "x3", 20, 6),
        ("team/a", "x4", 20, 7),
        ("team/a", "x5", 10, 8),
        ("team/a", "x6", 5, 8),
    ];
    for (ns, key, size, at) in rows {
        s.insert_committed(ns, "main", key, "v", at, "o", size)
            .await
            .unwrap();
    }
    assert_eq!(s.usage(None).await.unwrap(), 120);
    assert_eq!(s.usage(Some("team/b")).await.unwrap(), 15);
    assert_eq!(s.usage(Some("nobody")).await.unwrap(), 0);
    let page = s.least_recently_used(Some((8, 0)), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["x5", "x6"]
    );
    let policy = |budget| Policy {
        global: Some(GlobalBudget {
            budget_bytes: budget,
            high: 0.9,
            low: 0.5,
        }),
        namespaces: vec![NamespaceRule {
            pattern: Glob::new("team/b"),
            limits: NamespaceLimits {
                budget_bytes: Some(10),
                retention_ms: None,
                max_entry_bytes: None,
                protected: vec![],
            },
        }],
        defaults: NamespaceLimits {
            budget_bytes: None,
            retention_ms: None,
            max_entry_bytes: None,
            protected: vec![Glob::new("keep-*")],
        },
        scopes: vec![],
    };
    let plan = |budget| async move {
        let policy = policy(budget);
        let mut pass = EvictionPass::new(s, &policy, None, 100)
            .await
            .unwrap()
            .with_page_size(3);
        let mut out = Vec::new();
        while let Some(batch) = pass.next_batch().await.unwrap() {
            assert!(!batch.is_empty() && batch.len() <= 3 + 2);
            out.extend(batch.into_iter().map(|(c, r)| (c.key, r)));
        }
        out
    };
    let g = Reason::GlobalBudget;
    let expected = |keys: &[&str]| -> Vec<(String, Reason)> {
        std::iter::once(("y1".to_string(), Reason::NamespaceBudget))
            .chain(keys.iter().map(|k| (k.to_string(), g)))
            .collect()
    };
    // Kept 115 of 100 (high 90): down to 50, y1 already chosen is not counted
    // again, keep-1 is protected.
    assert_eq!(plan(100).await, expected(&["x2", "y2", "y3", "x3", "x4"]));
    // Kept 115 of 20: everything unprotected is not enough; keep-1 goes last.
    assert_eq!(
        plan(20).await,
        expected(&["x2", "y2", "y3", "x3", "x4", "x5", "x6", "keep-1"])
    );
    // Under the high watermark: only the namespace rule applies.
    assert_eq!(plan(1000).await, expected(&[]));
}

/// A block list larger than the entry may be is refused and nothing changes;
/// unfinished uploads past the timeout are listed oldest first.
async fn oversized_block_lists_and_stale_uploads(s: &SqlStore) {
    let Reservation::Created { id, .. } = s.reserve("ns", "sc", "k", "v", 1, 0).await.unwrap()
    else {
        panic!("not reserved")
    };
    for (block, size) in [("QQ==", 6), ("Qg==", 5)] {
        s.stage_block(id, block, &obj(block, size)).await.unwrap();
    }
    let both = ["QQ==".to_string(), "Qg==".to_string()];
    assert_eq!(
        s.commit_block_list(id, &both, 10, 2).await.unwrap(),
        BlobCommit::TooLarge { size: 11 }
    );
    assert_eq!(
        s.entry(id).await.unwrap().unwrap().state,
        EntryState::Pending
    );
    assert!(matches!(
        s.commit_block_list(id, &both, 11, 2).await.unwrap(),
        BlobCommit::Ok { size: 11, .. }
    ));
    let Reservation::Created { id: later, .. } =
        s.reserve("ns", "sc", "k2", "v", 5, 0).await.unwrap()
    else {
        panic!("not reserved")
    };
    let stale: Vec<i64> = s
        .stale_uploads(10, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(stale, vec![id, later]);
    assert_eq!(s.stale_uploads(3, 10).await.unwrap().len(), 1);
}

/// Deletes of a whole planned namespace, over several statements' worth.
async fn many_planned_entries_are_deleted(s: &SqlStore) {
    let seeds: Vec<hoard_db::SeedEntry> = (0..1200)
        .map(|i| hoard_db::SeedEntry {
            namespace: format!("ns-{}", i % 2),
            scope: "main".into(),
            key: format!("k{i}"),
            version: "v".into(),
            size: 10,
            last_accessed_at: 1_700_000_000_000 + i,
        })
        .collect();
    s.insert_committed_bulk(&seeds).await.unwrap();
    let planned: Vec<(i64, i64)> = s
        .eviction_candidates("ns-0")
        .await
        .unwrap()
        .iter()
        .map(|c| (c.id, c.last_accessed_at))
        .collect();
    assert_eq!(planned.len(), 600);
    let prefix = |id: i64| format!("entries/{id}");
    assert_eq!(
        s.delete_unused(&planned, &prefix, 50).await.unwrap().len(),
        600
    );
    // Each deleted entry's objects are scheduled, in the same transaction.
    assert_eq!(s.due_dooms(49, 10_000).await.unwrap().len(), 0);
    assert_eq!(s.due_dooms(50, 10_000).await.unwrap().len(), 600);
    assert_eq!(s.usage(None).await.unwrap(), 6000);
    assert_eq!(s.namespaces().await.unwrap(), vec!["ns-1".to_string()]);
}

/// One holder at a time; the holder renews; a lapsed lease passes on.
async fn leases_have_one_holder_until_they_lapse(s: &SqlStore) {
    assert!(s.try_lease("evictor", "a", 100, 200).await.unwrap());
    assert!(!s.try_lease("evictor", "b", 150, 250).await.unwrap());
    assert!(
        s.try_lease("evictor", "a", 150, 300).await.unwrap(),
        "renewed"
    );
    assert!(!s.try_lease("evictor", "b", 299, 400).await.unwrap());
    assert!(
        s.try_lease("evictor", "b", 301, 400).await.unwrap(),
        "lapsed"
    );
    assert!(s.try_lease("other", "a", 301, 400).await.unwrap());
    // Many asking at once: exactly one gets it.
    let asks = (0..8).map(|i| s.try_lease("race", ["x", "y", "z", "w"][i % 4], 1, 1000));
    let got: Vec<bool> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(got.iter().filter(|g| **g).count() >= 1);
    let holders = ["x", "y", "z", "w"];
    let winners: std::collections::HashSet<&str> = got
        .iter()
        .enumerate()
        .filter(|(_, g)| **g)
        .map(|(i, _)| holders[i % 4])
        .collect();
    assert_eq!(winners.len(), 1, "{got:?}");
}

/// Replicas starting together against an empty database: migrations run once,
/// every replica comes up.
#[tokio::test]
async fn postgres_replicas_migrate_at_the_same_time() {
    let db = TempDatabase::create();
    let pool = hoard_db::PoolConfig::default();
    let opens = (0..4).map(|_| hoard_db::open(&db.url, &pool));
    let stores = futures::future::join_all(opens).await;
    for s in &stores {
        let s = s.as_ref().expect("every replica opens");
        assert!(s
            .find_exact("ns", "main", "v", "k")
            .await
            .unwrap()
            .is_none());
    }
    // They share one secret, whichever proposed it first.
    let a = stores[0].as_ref().unwrap();
    let b = stores[1].as_ref().unwrap();
    let first = a.setting_or_init("k", "one").await.unwrap();
    assert_eq!(first, "one");
    assert_eq!(b.setting_or_init("k", "two").await.unwrap(), "one");
    for s in stores.into_iter().flatten() {
        s.close().await;
    }
}

#[tokio::test]
async fn an_unreachable_postgres_fails_promptly() {
    let pool = hoard_db::PoolConfig {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(2),
    };
    // Nothing listens on port 1.
    let started = std::time::Instant::now();
    let result = hoard_db::open("postgres://postgres@127.0.0.1:1/none", &pool).await;
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// The largest lookup hoard accepts (16 scopes, 10 keys) is statements that
/// both engines run; the match in the last scope by the last key is found.
async fn the_largest_lookup_runs_on_both_engines(s: &SqlStore) {
    s.insert_committed("big", "scope-15", "key-9-suffix", "v", 5, "o", 0)
        .await
        .unwrap();
    s.insert_committed("big", "scope-15", "key-9", "v", 4, "o", 0)
        .await
        .unwrap();
    let scopes: Vec<String> = (0..16).map(|i| format!("scope-{i}")).collect();
    let keys: Vec<String> = (0..10).map(|i| format!("key-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let e = s
        .find_first("big", &scopes, "v", &keys)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.scope.as_str(), e.key.as_str()), ("scope-15", "key-9"));
    assert_eq!(
        s.find_first("big", &scopes, "w", &keys).await.unwrap(),
        None
    );
}

on_both!(
    matching_table_holds,
    the_largest_lookup_runs_on_both_engines,
    reservation_is_exclusive_until_stale,
    blocks_commit_in_list_order_and_finalize_checks_size,
    put_blob_replaces_staged_blocks_and_finalize_needs_a_blob,
    stale_uploads_are_deleted_committed_entries_stay,
    list_delete_and_touch,
    concurrent_reservations_have_one_winner,
    doomed_objects_come_due_in_order,
    eviction_reads_lru_and_spares_entries_used_since,
    parts_of_deleted_entries_go_at_once_or_with_their_objects,
    leases_have_one_holder_until_they_lapse,
    the_global_pass_pages_through_the_store_protected_last,
    oversized_block_lists_and_stale_uploads,
    many_planned_entries_are_deleted,
);
