//! Eviction policy: which entries go, in what order, and why. Pure decisions over
//! entries the caller reads from the database, so the evictor and `hoard gc
//! --dry-run` share them and they are tested without a clock or a store.
//!
//! Order: entries past their retention first; then, in a namespace over its
//! budget, the least recently used; then, over the global high watermark, the
//! least recently used of all down to the low watermark. Protected keys never
//! expire and go only after every unprotected entry where a budget still needs
//! room.

/// A `*` (any run of characters, `/` included) and `?` (one character) pattern;
/// every other character stands for itself (globset's classes, alternations and
/// escapes are escaped away, since keys may contain `[`, `{` and `\\`).
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    /// `None` only if globset refused the escaped pattern, which it has no
    /// reason to: the pattern then matches itself alone.
    matcher: Option<globset::GlobMatcher>,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut escaped = String::with_capacity(pattern.len() + 8);
        for c in pattern.chars() {
            // A run of stars is one star (globset gives `**` a meaning of its own).
            if c == '*' && escaped.ends_with('*') && !escaped.ends_with("\\*") {
                continue;
            }
            if matches!(c, '[' | ']' | '{' | '}' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        let matcher = globset::GlobBuilder::new(&escaped)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .ok()
            .map(|g| g.compile_matcher());
        Glob {
            pattern: pattern.to_string(),
            matcher,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(text),
            None => text == self.pattern,
        }
    }
}

/// Limits of the namespaces a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLimits {
    /// Bytes the namespace may keep.
    pub budget_bytes: Option<u64>,
    /// Entries not used for this long expire (milliseconds).
    pub retention_ms: Option<i64>,
    /// The largest entry the namespace may save.
    pub max_entry_bytes: Option<u64>,
    /// Keys that never expire and are evicted last.
    pub protected: Vec<Glob>,
}

impl Default for NamespaceLimits {
    /// GitHub's: 10 GiB per repository and per entry, entries unused for 7
    /// days expire. The configuration's defaults are these.
    fn default() -> Self {
        NamespaceLimits {
            budget_bytes: Some(10 << 30),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            max_entry_bytes: Some(10 << 30),
            protected: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRule {
    pub pattern: Glob,
    pub limits: NamespaceLimits,
}

/// Retention for entries written from matching scopes (branches), in place of
/// the namespace's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    pub pattern: Glob,
    pub retention_ms: Option<i64>,
}

/// The whole store's budget: eviction starts above `high` and stops at `low`
/// (fractions of `budget_bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalBudget {
    pub budget_bytes: u64,
    pub high: f64,
    pub low: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub global: Option<GlobalBudget>,
    /// First match wins; namespaces no rule names get `defaults`.
    pub namespaces: Vec<NamespaceRule>,
    pub defaults: NamespaceLimits,
    /// First match wins.
    pub scopes: Vec<ScopeRule>,
}

/// What the policy needs to know of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub namespace: String,
    pub scope: String,
    pub key: String,
    pub size: u64,
    pub last_accessed_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not used within its retention.
    Expired,
    /// Least recently used in a namespace over its budget.
    NamespaceBudget,
    /// Least recently used while the whole store is over its high watermark.
    GlobalBudget,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::NamespaceBudget => "namespace over budget",
            Reason::GlobalBudget => "store over budget",
        }
    }

    pub const ALL: [Reason; 3] = [
        Reason::Expired,
        Reason::NamespaceBudget,
        Reason::GlobalBudget,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::NamespaceBudget => "namespace_budget",
            Reason::GlobalBudget => "global_budget",
        }
    }
}

impl Policy {
    pub fn limits(&self, namespace: &str) -> &NamespaceLimits {
        self.namespaces
            .iter()
            .find(|r| r.pattern.matches(namespace))
            .map(|r| &r.limits)
            .unwrap_or(&self.defaults)
    }

    fn retention(&self, limits: &NamespaceLimits, scope: &str) -> Option<i64> {
        match self.scopes.iter().find(|r| r.pattern.matches(scope)) {
            Some(rule) => rule.retention_ms,
            None => limits.retention_ms,
        }
    }

    fn protected(limits: &NamespaceLimits, key: &str) -> bool {
        limits.protected.iter().any(|g| g.matches(key))
    }

    /// Plans one namespace: `entries` are all of its committed entries, least
    /// recently used first. Returns what goes, in order, and what stays.
    pub fn plan_namespace<'a>(
        &self,
        namespace: &str,
        entries: &'a [Candidate],
        now: i64,
    ) -> (Vec<(&'a Candidate, Reason)>, Vec<&'a Candidate>) {
        let limits = self.limits(namespace);
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let expired = self
                .retention(limits, &e.scope)
                .is_some_and(|r| now - e.last_accessed_at > r);
            if expired && !Self::protected(limits, &e.key) {
                gone.push((e, Reason::Expired));
            } else {
                kept.push(e);
            }
        }
        if let Some(budget) = limits.budget_bytes {
            let mut total: u64 = kept.iter().map(|e| e.size).sum();
            let (protected, unprotected): (Vec<&'a Candidate>, Vec<&'a Candidate>) = kept
                .iter()
                .copied()
                .partition(|e| Self::protected(limits, &e.key));
            let mut dropped = std::collections::HashSet::new();
            for e in unprotected.into_iter().chain(protected) {
                if total <= budget {
                    break;
                }
                total -= e.size;
                dropped.insert(e.id);
                gone.push((e, Reason::NamespaceBudget));
            }
            kept.retain(|e| !dropped.contains(&e.id));
        }
        (gone, kept)
    }

    /// Whether an entry's key is protected in its namespace.
    pub fn is_protected(&self, c: &Candidate) -> bool {
        Self::protected(self.limits(&c.namespace), &c.key)
    }

    /// Bytes the store-wide pass frees when the namespace passes kept
    /// `kept_bytes`: nothing up to the high watermark, else down to the low.
    pub fn global_excess(&self, kept_bytes: u64) -> u64 {
        let Some(global) = &self.global else {
            return 0;
        };
        if kept_bytes as f64 <= global.budget_bytes as f64 * global.high {
            return 0;
        }
        kept_bytes.saturating_sub((global.budget_bytes as f64 * global.low) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    fn entry(id: i64, scope: &str, key: &str, size: u64, last: i64) -> Candidate {
        Candidate {
            id,
            namespace: "org/repo".into(),
            scope: scope.into(),
            key: key.into(),
            size,
            last_accessed_at: last,
        }
    }

    fn ids(plan: &[(&Candidate, Reason)]) -> Vec<(i64, Reason)> {
        plan.iter().map(|(e, r)| (e.id, *r)).collect()
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "anything/at/all", true),
            ("org/*", "org/repo", true),
            ("org/*", "other/repo", false),
            ("refs/heads/main", "refs/heads/main", true),
            ("refs/heads/main", "refs/heads/main2", false),
            ("refs/pull/*/merge", "refs/pull/12/merge", true),
            ("node-?-*", "node-a-linux", true),
            ("node-?-*", "node--linux", false),
            ("*-deps", "linux-deps", true),
            ("", "", true),
            ("", "x", false),
            // Only `*` and `?` are special; runs of stars are one star.
            ("deps-[linux]-*", "deps-[linux]-x", true),
            ("deps-[linux]-*", "deps-l-x", false),
            ("{a,b}", "{a,b}", true),
            ("{a,b}", "a", false),
            ("a\\b*", "a\\bc", true),
            ("a**b", "a/x/y/b", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(Glob::new(p).matches(t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn expired_entries_go_first_and_scope_rules_override_retention() {
        let policy = Policy {
            scopes: vec![
                ScopeRule {
                    pattern: Glob::new("refs/heads/main"),
                    retention_ms: Some(30 * DAY),
                },
                ScopeRule {
                    pattern: Glob::new("*"),
                    retention_ms: Some(3 * DAY),
                },
            ],
            ..Policy::default()
        };
        let now = 100 * DAY;
        let entries = [
            entry(1, "refs/heads/main", "a", 1, now - 20 * DAY),
            entry(2, "refs/heads/feature", "b", 1, now - 4 * DAY),
            entry(3, "refs/heads/feature", "c", 1, now - 2 * DAY),
            entry(4, "refs/heads/main", "d", 1, now - 31 * DAY),
        ];
        let (gone, kept) = policy.plan_namespace("org/repo", &entries, now);
        assert_eq!(ids(&gone), vec![(2, Reason::Expired), (4, Reason::Expired)]);
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn a_namespace_over_budget_loses_its_least_recently_used_protected_last() {
        let policy = Policy {
            namespaces: vec![NamespaceRule {
                pattern: Glob::new("org/*"),
                limits: NamespaceLimits {
                    budget_bytes: Some(100),
                    retention_ms: None,
                    max_entry_bytes: Some(60),
                    protected: vec![Glob::new("toolchain-*")],
                },
            }],
            ..Policy::default()
        };
        // Least recently used first, as the caller reads them.
        let entries = [
            entry(1, "s", "toolchain-1", 40, 1),
            entry(2, "s", "deps-a", 40, 2),
            entry(3, "s", "deps-b", 40, 3),
            entry(4, "s", "deps-c", 40, 4),
        ];
        let (gone, kept) = policy.plan_namespace("org/repo", &entries, 10);
        assert_eq!(
            ids(&gone),
            vec![(2, Reason::NamespaceBudget), (3, Reason::NamespaceBudget)]
        );
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(policy.limits("org/repo").max_entry_bytes, Some(60));
        // Another namespace falls back to GitHub's defaults.
        assert_eq!(policy.limits("elsewhere/repo").budget_bytes, Some(10 << 30));
        assert_eq!(policy.limits("elsewhere/repo").retention_ms, Some(7 * DAY));
    }

    #[test]
    fn protected_keys_never_expire_but_give_way_to_a_budget_when_nothing_else_is_left() {
        let policy = Policy {
            defaults: NamespaceLimits {
                budget_bytes: Some(50),
                retention_ms: Some(DAY),
                max_entry_bytes: None,
                protected: vec![Glob::new("keep-*")],
            },
            ..Policy::default()
        };
        let now = 10 * DAY;
        let entries = [
            entry(1, "s", "keep-old", 40, 0),
            entry(2, "s", "keep-new", 40, now),
        ];
        let (gone, kept) = policy.plan_namespace("any", &entries, now);
        assert_eq!(ids(&gone), vec![(1, Reason::NamespaceBudget)]);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn the_global_pass_runs_above_the_high_watermark_down_to_the_low() {
        let policy = Policy {
            global: Some(GlobalBudget {
                budget_bytes: 100,
                high: 0.9,
                low: 0.5,
            }),
            defaults: NamespaceLimits {
                budget_bytes: None,
                retention_ms: None,
                max_entry_bytes: None,
                protected: vec![Glob::new("keep")],
            },
            ..Policy::default()
        };
        assert_eq!(policy.global_excess(95), 45);
        assert_eq!(policy.global_excess(90), 0);
        assert_eq!(Policy::default().global_excess(u64::MAX), 0);
        assert!(policy.is_protected(&entry(1, "s", "keep", 1, 1)));
        assert!(!policy.is_protected(&entry(1, "s", "keep-not", 1, 1)));
    }
}
