//! Which saved entry answers a lookup. The rule GitHub documents for actions/cache
//! (docs/architecture.md, Restore), in order:
//! for each readable scope in the caller's order, for each key (the primary key, then
//! the restore keys in order): an entry whose key equals it, else the newest entry
//! whose key starts with it. Versions match exactly. The first hit wins.

use crate::model::Entry;
use crate::store::{MetaStore, StoreError};

/// The two questions matching asks of a store, per scope and version.
#[async_trait::async_trait]
pub trait MatchSource: Sync {
    async fn exact(
        &self,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<Entry>, StoreError>;
    async fn newest_with_prefix(
        &self,
        scope: &str,
        version: &str,
        prefix: &str,
    ) -> Result<Option<Entry>, StoreError>;
}

/// Finds the entry a lookup restores, if any.
pub async fn find_match<S: MatchSource + ?Sized>(
    source: &S,
    scopes: &[String],
    version: &str,
    keys: &[&str],
) -> Result<Option<Entry>, StoreError> {
    for scope in scopes {
        for key in keys {
            if let Some(e) = source.exact(scope, version, key).await? {
                return Ok(Some(e));
            }
            if let Some(e) = source.newest_with_prefix(scope, version, key).await? {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// Matching against a namespace of a [`MetaStore`].
pub struct InNamespace<'a> {
    pub store: &'a dyn MetaStore,
    pub namespace: &'a str,
}

#[async_trait::async_trait]
impl MatchSource for InNamespace<'_> {
    async fn exact(
        &self,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        self.store
            .find_exact(self.namespace, scope, version, key)
            .await
    }

    async fn newest_with_prefix(
        &self,
        scope: &str,
        version: &str,
        prefix: &str,
    ) -> Result<Option<Entry>, StoreError> {
        self.store
            .find_newest_with_prefix(self.namespace, scope, version, prefix)
            .await
    }
}

/// The same rule over a list of committed entries; the reference the store-backed
/// lookups are tested against.
pub struct InList<'a>(pub &'a [Entry]);

#[async_trait::async_trait]
impl MatchSource for InList<'_> {
    async fn exact(
        &self,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .0
            .iter()
            .find(|e| e.scope == scope && e.version == version && e.key == key)
            .cloned())
    }

    async fn newest_with_prefix(
        &self,
        scope: &str,
        version: &str,
        prefix: &str,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .0
            .iter()
            .filter(|e| e.scope == scope && e.version == version && e.key.starts_with(prefix))
            .max_by_key(|e| (e.created_at, e.id))
            .cloned())
    }
}

/// Table of matching cases shared by the unit tests here and the store tests in
/// hoard-db: (entries as (scope, key, version, created_at), scopes, version, keys,
/// expected matched key or None).
pub mod table {
    use crate::model::{Entry, EntryState};

    pub struct Case {
        pub name: &'static str,
        pub entries: &'static [(&'static str, &'static str, &'static str, i64)],
        pub scopes: &'static [&'static str],
        pub version: &'static str,
        pub keys: &'static [&'static str],
        pub expect: Option<(&'static str, &'static str)>,
    }

    pub const CASES: &[Case] = &[
        Case {
            name: "exact key",
            entries: &[
                ("main", "npm-abc", "v1", 1),
                ("main", "npm-abcdef", "v1", 2),
            ],
            scopes: &["main"],
            version: "v1",
            keys: &["npm-abc"],
            expect: Some(("main", "npm-abc")),
        },
        Case {
            name: "prefix picks the newest",
            entries: &[
                ("main", "npm-1", "v1", 1),
                ("main", "npm-2", "v1", 3),
                ("main", "npm-3", "v1", 2),
            ],
            scopes: &["main"],
            version: "v1",
            keys: &["npm-"],
            expect: Some(("main", "npm-2")),
        },
        Case {
            name: "exact beats a newer prefix match",
            entries: &[("main", "npm-", "v1", 1), ("main", "npm-2", "v1", 9)],
            scopes: &["main"],
            version: "v1",
            keys: &["npm-"],
            expect: Some(("main", "npm-")),
        },
        Case {
            name: "restore keys in order",
            entries: &[("main", "a-old", "v1", 5), ("main", "b-new", "v1", 9)],
            scopes: &["main"],
            version: "v1",
            keys: &["missing", "a-", "b-"],
            expect: Some(("main", "a-old")),
        },
        Case {
            name: "version must be exact",
            entries: &[("main", "k", "v2", 1)],
            scopes: &["main"],
            version: "v1",
            keys: &["k"],
            expect: None,
        },
        Case {
            name: "scopes in order, first scope with a match wins",
            entries: &[
                ("main", "k-main", "v1", 9),
                ("feature", "k-feature", "v1", 1),
            ],
            scopes: &["feature", "main"],
            version: "v1",
            keys: &["k-"],
            expect: Some(("feature", "k-feature")),
        },
        Case {
            name: "falls back to the next scope",
            entries: &[("main", "k-main", "v1", 1)],
            scopes: &["feature", "main"],
            version: "v1",
            keys: &["k-"],
            expect: Some(("main", "k-main")),
        },
        Case {
            name: "an unreadable scope is never searched",
            entries: &[("other", "k", "v1", 1)],
            scopes: &["main"],
            version: "v1",
            keys: &["k"],
            expect: None,
        },
        Case {
            name: "keys are case-sensitive",
            entries: &[("main", "Key", "v1", 1)],
            scopes: &["main"],
            version: "v1",
            keys: &["key", "KEY"],
            expect: None,
        },
        Case {
            name: "prefix is byte-wise, not a pattern",
            entries: &[("main", "a%b", "v1", 1), ("main", "axb", "v1", 2)],
            scopes: &["main"],
            version: "v1",
            keys: &["a%"],
            expect: Some(("main", "a%b")),
        },
        Case {
            name: "unicode keys and prefixes",
            entries: &[
                ("main", "ключ-1", "v1", 1),
                ("main", "ключ-2", "v1", 2),
                ("main", "ключ\u{10FFFF}", "v1", 3),
            ],
            scopes: &["main"],
            version: "v1",
            keys: &["ключ-"],
            expect: Some(("main", "ключ-2")),
        },
        Case {
            name: "no entries",
            entries: &[],
            scopes: &["main"],
            version: "v1",
            keys: &["k", "j"],
            expect: None,
        },
    ];

    /// The committed entries of a case, ids in order.
    pub fn entries(case: &Case) -> Vec<Entry> {
        case.entries
            .iter()
            .enumerate()
            .map(|(i, (scope, key, version, created))| Entry {
                id: i as i64 + 1,
                namespace: "ns".into(),
                scope: scope.to_string(),
                key: key.to_string(),
                version: version.to_string(),
                state: EntryState::Committed,
                size: 0,
                hash: String::new(),
                created_at: *created,
                last_accessed_at: *created,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn table() {
        for case in table::CASES {
            let entries = table::entries(case);
            let scopes: Vec<String> = case.scopes.iter().map(|s| s.to_string()).collect();
            let got = find_match(&InList(&entries), &scopes, case.version, case.keys)
                .await
                .unwrap()
                .map(|e| (e.scope, e.key));
            let want = case.expect.map(|(s, k)| (s.to_string(), k.to_string()));
            assert_eq!(got, want, "case: {}", case.name);
        }
    }
}
