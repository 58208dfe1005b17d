//! Configuration: built-in defaults, then the TOML file, then `HOARD_*` environment
//! variables, then command-line flags. Every key is documented in
//! docs/configuration.md.

mod auth;
mod checks;
mod env;
#[cfg(test)]
mod tests;
mod units;

pub use auth::{Auth, TenantConfig};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Where the SQLite database and the blobs live by default.
    pub data_dir: PathBuf,
    /// Base URL put into signed URLs; empty: from each request's Host header.
    pub public_url: String,
    pub database: Database,
    pub storage: Storage,
    pub signing: Signing,
    pub uploads: Uploads,
    pub downloads: Downloads,
    pub eviction: Eviction,
    pub auth: Auth,
    pub limits: Limits,
    pub passthrough: Passthrough,
    pub metrics: Metrics,
    pub log: Log,
    pub management: Management,
}

/// Prometheus metrics (`/metrics`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    /// An address of its own for `/metrics` (e.g. `0.0.0.0:9090`); empty: on
    /// the main listener.
    pub listen: String,
    /// Namespaces counted under their own label; empty: the
    /// `top_namespaces` largest. Every other namespace is `other`.
    pub namespaces: Vec<String>,
    pub top_namespaces: usize,
    /// How often entries and bytes per namespace are read from the database.
    #[serde(deserialize_with = "units::secs")]
    pub refresh_secs: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            listen: String::new(),
            namespaces: Vec::new(),
            top_namespaces: hoard_server::metrics::MetricsConfig::default().top,
            refresh_secs: 30,
        }
    }
}

/// What hoard logs and how.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// One info line per request (no secrets).
    pub access: bool,
    /// `text` or `json` (one JSON object per line).
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            access: true,
            format: "text".into(),
        }
    }
}

/// The management API (docs/management-api.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Management {
    /// Hash of the admin token (`hoard auth new-token`); empty: only
    /// namespaces' own tokens, where the auth mode verifies them.
    pub admin_token_hash: String,
    /// `"owner/repo" = "namespace"`: these namespaces also answer on GitHub's
    /// paths (`/repos/{owner}/{repo}/actions/caches`).
    pub repositories: std::collections::BTreeMap<String, String>,
}

/// Where calls under the results URL that hoard does not serve (the artifact
/// service) are forwarded.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Passthrough {
    /// The upstream results service; empty: answer such calls 404.
    pub upstream: String,
    /// Longest wait for the upstream: to connect, for its answer, and
    /// between pieces of a body.
    #[serde(deserialize_with = "units::secs")]
    pub timeout_secs: u64,
}

impl Default for Passthrough {
    fn default() -> Self {
        Passthrough {
            upstream: "https://results-receiver.actions.githubusercontent.com/".into(),
            timeout_secs: 60,
        }
    }
}

/// Limits on what one request or one namespace may do; each refusal is the
/// protocol's own error (docs/security.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_key_chars: usize,
    pub max_version_chars: usize,
    /// Blocks one block list may name.
    pub max_blocks: usize,
    /// All request headers together.
    #[serde(deserialize_with = "units::bytes")]
    pub max_header_bytes: usize,
    /// One Twirp request body.
    #[serde(deserialize_with = "units::bytes")]
    pub max_twirp_body_bytes: usize,
    /// Unfinished uploads one namespace may have open; 0: no limit.
    pub max_open_uploads: u64,
    /// Uploads one namespace may start per minute, per replica; 0: no limit.
    pub uploads_per_minute: u32,
    /// Put Blob / Put Block bodies streaming at once, per replica; more are
    /// refused with 503 ServerBusy + Retry-After (CreateCacheEntry: 429).
    pub uploads_in_flight: usize,
    /// Get Blob bodies streaming at once, per replica; more: 503 + Retry-After.
    pub downloads_in_flight: usize,
    /// Bytes of Put Block List bodies held in memory at once, per replica.
    #[serde(deserialize_with = "units::bytes")]
    pub block_list_buffer_bytes: usize,
    /// A request body with no bytes for this long fails.
    #[serde(deserialize_with = "units::secs")]
    pub body_idle_timeout_secs: u64,
    /// A response the client takes no bytes of for this long: the connection
    /// is closed.
    #[serde(deserialize_with = "units::secs")]
    pub write_idle_timeout_secs: u64,
    /// Request headers must arrive within this; also how long an idle
    /// keep-alive connection stays open.
    #[serde(deserialize_with = "units::secs")]
    pub header_read_timeout_secs: u64,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// After SIGTERM, requests in flight get this long before hoard exits.
    #[serde(deserialize_with = "units::secs")]
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let names = hoard_core::validate::NameLimits::default();
        let http = hoard_server::HttpLimits::default();
        let flow = hoard_server::flow::FlowLimits::default();
        let conn = hoard_server::connections::ConnLimits::default();
        Limits {
            max_key_chars: names.key_chars,
            max_version_chars: names.version_chars,
            max_blocks: hoard_core::ServiceConfig::default().max_blocks,
            max_header_bytes: http.max_header_bytes,
            max_twirp_body_bytes: http.max_twirp_body_bytes,
            max_open_uploads: 0,
            uploads_per_minute: 0,
            uploads_in_flight: flow.uploads_in_flight,
            downloads_in_flight: flow.downloads_in_flight,
            block_list_buffer_bytes: flow.block_list_bytes,
            body_idle_timeout_secs: flow.body_idle_timeout.as_secs(),
            write_idle_timeout_secs: conn.write_idle_timeout.as_secs(),
            header_read_timeout_secs: conn.header_read_timeout.as_secs(),
            http2_max_streams: conn.http2_max_streams,
            shutdown_grace_secs: conn.shutdown_grace.as_secs(),
        }
    }
}

/// What `hoard gc` removes. Defaults mirror GitHub's: 10 GiB per namespace,
/// entries unused for 7 days expire.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Eviction {
    /// Seconds between evictor passes in the server; 0: no evictor (`hoard gc`
    /// only).
    #[serde(deserialize_with = "units::secs")]
    pub interval_secs: u64,
    /// Bytes each namespace may keep; 0: no budget.
    #[serde(deserialize_with = "units::bytes")]
    pub namespace_budget_bytes: u64,
    /// Entries unused for this many days expire; 0: never.
    pub retention_days: u64,
    /// The largest entry a namespace may save; 0: up to its budget.
    #[serde(deserialize_with = "units::bytes")]
    pub max_entry_bytes: u64,
    /// Bytes the whole store may keep; 0: no global budget.
    #[serde(deserialize_with = "units::bytes")]
    pub global_budget_bytes: u64,
    /// Fractions of the global budget: eviction starts above high, stops at low.
    pub high_watermark: f64,
    pub low_watermark: f64,
    /// Per-namespace rules, first match wins.
    pub namespaces: Vec<NamespaceRule>,
    /// Per-scope (branch) retention, first match wins.
    pub scopes: Vec<ScopeRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRule {
    /// Glob on the namespace (`*` any run, `?` one character).
    pub pattern: String,
    #[serde(default, deserialize_with = "units::opt_bytes")]
    pub budget_bytes: Option<u64>,
    pub retention_days: Option<u64>,
    #[serde(default, deserialize_with = "units::opt_bytes")]
    pub max_entry_bytes: Option<u64>,
    /// Globs on keys that never expire and are evicted last.
    #[serde(default)]
    pub protected_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRule {
    /// Glob on the scope, e.g. `refs/heads/main` or `refs/pull/*`.
    pub pattern: String,
    /// 0: never expire.
    pub retention_days: u64,
}

impl Default for Eviction {
    fn default() -> Self {
        // The policy's own defaults, in the configuration's units (0: none).
        let limits = hoard_core::policy::NamespaceLimits::default();
        Eviction {
            interval_secs: 600,
            namespace_budget_bytes: limits.budget_bytes.unwrap_or(0),
            retention_days: limits.retention_ms.map_or(0, |ms| (ms / DAY_MS) as u64),
            max_entry_bytes: limits.max_entry_bytes.unwrap_or(0),
            global_budget_bytes: 0,
            high_watermark: 0.9,
            low_watermark: 0.8,
            namespaces: Vec::new(),
            scopes: Vec::new(),
        }
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

fn bytes(b: u64) -> Option<u64> {
    (b > 0).then_some(b)
}

fn days(d: u64) -> Option<i64> {
    (d > 0).then_some(d as i64 * DAY_MS)
}

impl Eviction {
    pub fn policy(&self) -> hoard_core::policy::Policy {
        use hoard_core::policy::{self as p, Glob};
        let defaults = p::NamespaceLimits {
            budget_bytes: (self.namespace_budget_bytes > 0).then_some(self.namespace_budget_bytes),
            retention_ms: days(self.retention_days),
            max_entry_bytes: bytes(self.max_entry_bytes),
            protected: Vec::new(),
        };
        p::Policy {
            global: (self.global_budget_bytes > 0).then_some(p::GlobalBudget {
                budget_bytes: self.global_budget_bytes,
                high: self.high_watermark,
                low: self.low_watermark,
            }),
            namespaces: self
                .namespaces
                .iter()
                .map(|r| p::NamespaceRule {
                    pattern: Glob::new(&r.pattern),
                    limits: p::NamespaceLimits {
                        budget_bytes: match r.budget_bytes {
                            Some(0) => None,
                            Some(b) => Some(b),
                            None => defaults.budget_bytes,
                        },
                        retention_ms: r.retention_days.map_or(defaults.retention_ms, days),
                        max_entry_bytes: r.max_entry_bytes.map_or(defaults.max_entry_bytes, bytes),
                        protected: r.protected_keys.iter().map(|k| Glob::new(k)).collect(),
                    },
                })
                .collect(),
            defaults: defaults.clone(),
            scopes: self
                .scopes
                .iter()
                .map(|r| p::ScopeRule {
                    pattern: Glob::new(&r.pattern),
                    retention_ms: days(r.retention_days),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// `sqlite://path` or `postgres://user:password@host/db`; empty: SQLite in the
    /// data dir.
    pub url: String,
    /// PostgreSQL connections per replica.
    pub max_connections: u32,
    /// Seconds a request waits for a database connection before failing.
    #[serde(deserialize_with = "units::secs")]
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`; empty: the `blobs` directory in the data dir.
    pub url: String,
    /// S3 endpoint of a non-AWS server, e.g. `http://minio:9000`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style S3 requests (default on).
    pub path_style: Option<bool>,
    /// Bytes per uploaded part in object storage (at least 5 MiB).
    #[serde(deserialize_with = "units::bytes")]
    pub part_size_bytes: usize,
    /// Upload bytes one replica holds in memory at once.
    #[serde(deserialize_with = "units::bytes")]
    pub upload_buffer_bytes: usize,
    /// Downloads of single-object entries get a presigned URL of the bucket.
    pub direct_download: bool,
    /// How often storage is listed for objects no entry owns.
    #[serde(deserialize_with = "units::secs")]
    pub orphan_sweep_interval_secs: u64,
    /// Only objects older than this are ever swept.
    #[serde(deserialize_with = "units::secs")]
    pub orphan_grace_secs: i64,
    /// The background scrub re-reads stored entries at this many bytes per
    /// second and drops those whose bytes changed or vanished; 0: off.
    #[serde(deserialize_with = "units::bytes")]
    pub scrub_bytes_per_sec: u64,
    /// Pause between two full scrub passes.
    #[serde(deserialize_with = "units::secs")]
    pub scrub_pause_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signing {
    /// Secret for signed URLs; empty: generated once and kept in the database,
    /// so every replica shares it.
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Uploads {
    /// An upload not finalized within this many seconds is reclaimed.
    #[serde(deserialize_with = "units::secs")]
    pub pending_timeout_secs: i64,
    /// How often abandoned uploads are looked for.
    #[serde(deserialize_with = "units::secs")]
    pub reclaim_interval_secs: u64,
    /// Lifetime of a signed upload URL.
    #[serde(deserialize_with = "units::secs")]
    pub url_ttl_secs: i64,
    /// Largest body of one Put Block or Put Blob.
    #[serde(deserialize_with = "units::bytes")]
    pub max_block_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Downloads {
    /// Lifetime of a signed download URL.
    #[serde(deserialize_with = "units::secs")]
    pub url_ttl_secs: i64,
    /// A deleted entry's bytes are kept this long for downloads in flight.
    #[serde(deserialize_with = "units::secs")]
    pub delete_grace_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./hoard-data"),
            public_url: String::new(),
            database: Database::default(),
            storage: Storage::default(),
            signing: Signing::default(),
            uploads: Uploads::default(),
            downloads: Downloads::default(),
            eviction: Eviction::default(),
            auth: Auth::default(),
            limits: Limits::default(),
            passthrough: Passthrough::default(),
            metrics: Metrics::default(),
            log: Log::default(),
            management: Management::default(),
        }
    }
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: String::new(),
            max_connections: 16,
            acquire_timeout_secs: 5,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: None,
            part_size_bytes: 8 * 1024 * 1024,
            upload_buffer_bytes: 32 * 1024 * 1024,
            direct_download: false,
            orphan_sweep_interval_secs: 3600,
            orphan_grace_secs: 86400,
            scrub_bytes_per_sec: 0,
            scrub_pause_secs: 86400,
        }
    }
}

impl Default for Uploads {
    fn default() -> Self {
        let core = hoard_core::ServiceConfig::default();
        Uploads {
            pending_timeout_secs: core.pending_timeout_secs,
            reclaim_interval_secs: 60,
            url_ttl_secs: core.upload_url_ttl_secs,
            max_block_bytes: core.max_block_bytes,
        }
    }
}

impl Default for Downloads {
    fn default() -> Self {
        let core = hoard_core::ServiceConfig::default();
        Downloads {
            url_ttl_secs: core.download_url_ttl_secs,
            delete_grace_secs: core.delete_grace_secs,
        }
    }
}

impl Config {
    /// Reads the file (if any) and applies the environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing the config file {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env()?;
        Ok(config)
    }

    /// Warns of each `HOARD_*` variable in the environment that hoard does not
    /// read (the server calls it at start; maintenance commands keep their
    /// output to what they were asked).
    pub fn warn_unknown_variables() {
        for name in env::unknown_variables(std::env::vars().map(|(name, _)| name)) {
            tracing::warn!("{name} is not a hoard setting and is ignored: check its spelling (docs/configuration.md)");
        }
    }
}
