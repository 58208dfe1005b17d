//! Configuration: built-in defaults, then the TOML file, then `HOARD_*` environment
//! variables, then command-line flags. Every key is documented in
//! docs/configuration.md.

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

/// Who may use which namespace (docs/security.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// `trusted-network`, `tenant-token`, `github-jwt` or
    /// `tenant-token+github-jwt`.
    pub mode: String,
    pub tenants: Vec<TenantConfig>,
    pub github: GithubJwt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's namespace (with github-jwt: the prefix of its namespaces).
    pub name: String,
    /// `sha256:<salt hex>:<digest hex>`, from `hoard auth new-token`.
    pub token_hash: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubJwt {
    pub issuer: String,
    /// Accepted `aud` values; empty: not checked.
    pub audience: Vec<String>,
    /// Where the signing keys are published; empty with public_key_files set:
    /// only those keys.
    pub jwks_url: String,
    /// PEM public keys trusted besides (or instead of) the JWKS.
    pub public_key_files: Vec<PathBuf>,
    /// Clock skew allowed on exp and nbf.
    pub leeway_secs: u64,
    /// The claim naming the repository (the namespace).
    pub namespace_claim: String,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: "trusted-network".into(),
            tenants: Vec::new(),
            github: GithubJwt::default(),
        }
    }
}

impl Default for GithubJwt {
    fn default() -> Self {
        GithubJwt {
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: Vec::new(),
            jwks_url: String::new(),
            public_key_files: Vec::new(),
            leeway_secs: 60,
            namespace_claim: "repository_id".into(),
        }
    }
}

/// GitHub's key set, used when github-jwt has neither a JWKS URL nor key files.
pub const GITHUB_JWKS_URL: &str = "https://token.actions.githubusercontent.com/.well-known/jwks";

/// The auth modes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub tenant_token: bool,
    pub github_jwt: bool,
}

impl Auth {
    pub fn modes(&self) -> Result<Modes> {
        let mut m = Modes {
            tenant_token: false,
            github_jwt: false,
        };
        let mode = self.mode.trim();
        if mode == "trusted-network" {
            return Ok(m);
        }
        for part in mode.split('+').map(str::trim) {
            match part {
                "tenant-token" => m.tenant_token = true,
                "github-jwt" => m.github_jwt = true,
                other => bail!(
                    "auth.mode {other:?} is unknown: trusted-network, tenant-token, github-jwt or tenant-token+github-jwt"
                ),
            }
        }
        Ok(m)
    }

    /// The JWKS URL to fetch, if any.
    pub fn jwks_url(&self) -> Option<String> {
        let g = &self.github;
        match (g.jwks_url.is_empty(), g.public_key_files.is_empty()) {
            (false, _) => Some(g.jwks_url.clone()),
            (true, true) => Some(GITHUB_JWKS_URL.into()),
            (true, false) => None,
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
    pub max_header_bytes: usize,
    /// One Twirp request body.
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
    pub block_list_buffer_bytes: usize,
    /// A request body with no bytes for this long fails.
    pub body_idle_timeout_secs: u64,
    /// A response the client takes no bytes of for this long: the connection
    /// is closed.
    pub write_idle_timeout_secs: u64,
    /// Request headers must arrive within this; also how long an idle
    /// keep-alive connection stays open.
    pub header_read_timeout_secs: u64,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// After SIGTERM, requests in flight get this long before hoard exits.
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
    pub interval_secs: u64,
    /// Bytes each namespace may keep; 0: no budget.
    pub namespace_budget_bytes: u64,
    /// Entries unused for this many days expire; 0: never.
    pub retention_days: u64,
    /// The largest entry a namespace may save; 0: up to its budget.
    pub max_entry_bytes: u64,
    /// Bytes the whole store may keep; 0: no global budget.
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
    pub budget_bytes: Option<u64>,
    pub retention_days: Option<u64>,
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
    pub part_size_bytes: usize,
    /// Upload bytes one replica holds in memory at once.
    pub upload_buffer_bytes: usize,
    /// Downloads of single-object entries get a presigned URL of the bucket.
    pub direct_download: bool,
    /// How often storage is listed for objects no entry owns.
    pub orphan_sweep_interval_secs: u64,
    /// Only objects older than this are ever swept.
    pub orphan_grace_secs: i64,
    /// The background scrub re-reads stored entries at this many bytes per
    /// second and drops those whose bytes changed or vanished; 0: off.
    pub scrub_bytes_per_sec: u64,
    /// Pause between two full scrub passes.
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
    pub pending_timeout_secs: i64,
    /// How often abandoned uploads are looked for.
    pub reclaim_interval_secs: u64,
    /// Lifetime of a signed upload URL.
    pub url_ttl_secs: i64,
    /// Largest body of one Put Block or Put Blob.
    pub max_block_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Downloads {
    /// Lifetime of a signed download URL.
    pub url_ttl_secs: i64,
    /// A deleted entry's bytes are kept this long for downloads in flight.
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

fn parse_env<T: std::str::FromStr>(name: &str, slot: &mut T) -> Result<()> {
    if let Ok(v) = std::env::var(name) {
        *slot = v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value"))?;
    }
    Ok(())
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `name=hash,name=hash` (HOARD_AUTH_TENANTS).
fn parse_tenants(v: &str) -> Result<Vec<TenantConfig>> {
    list(v)
        .into_iter()
        .map(|t| match t.split_once('=') {
            Some((name, hash)) => Ok(TenantConfig {
                name: name.trim().to_string(),
                token_hash: hash.trim().to_string(),
            }),
            None => bail!("HOARD_AUTH_TENANTS takes name=token_hash pairs separated by commas"),
        })
        .collect()
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={v:?} is not true or false"),
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

    fn apply_env(&mut self) -> Result<()> {
        parse_env("HOARD_LISTEN", &mut self.listen)?;
        parse_env("HOARD_DATA_DIR", &mut self.data_dir)?;
        parse_env("HOARD_PUBLIC_URL", &mut self.public_url)?;
        parse_env("HOARD_PASSTHROUGH_UPSTREAM", &mut self.passthrough.upstream)?;
        parse_env(
            "HOARD_PASSTHROUGH_TIMEOUT_SECS",
            &mut self.passthrough.timeout_secs,
        )?;
        parse_env("HOARD_DATABASE_URL", &mut self.database.url)?;
        parse_env(
            "HOARD_DATABASE_MAX_CONNECTIONS",
            &mut self.database.max_connections,
        )?;
        parse_env(
            "HOARD_DATABASE_ACQUIRE_TIMEOUT_SECS",
            &mut self.database.acquire_timeout_secs,
        )?;
        parse_env("HOARD_STORAGE_URL", &mut self.storage.url)?;
        parse_env("HOARD_STORAGE_ENDPOINT", &mut self.storage.endpoint)?;
        parse_env("HOARD_STORAGE_REGION", &mut self.storage.region)?;
        parse_env(
            "HOARD_STORAGE_ACCESS_KEY_ID",
            &mut self.storage.access_key_id,
        )?;
        parse_env(
            "HOARD_STORAGE_SECRET_ACCESS_KEY",
            &mut self.storage.secret_access_key,
        )?;
        if let Ok(v) = std::env::var("HOARD_STORAGE_PATH_STYLE") {
            self.storage.path_style = Some(parse_bool("HOARD_STORAGE_PATH_STYLE", &v)?);
        }
        parse_env(
            "HOARD_STORAGE_PART_SIZE_BYTES",
            &mut self.storage.part_size_bytes,
        )?;
        parse_env(
            "HOARD_STORAGE_UPLOAD_BUFFER_BYTES",
            &mut self.storage.upload_buffer_bytes,
        )?;
        if let Ok(v) = std::env::var("HOARD_STORAGE_DIRECT_DOWNLOAD") {
            self.storage.direct_download = parse_bool("HOARD_STORAGE_DIRECT_DOWNLOAD", &v)?;
        }
        parse_env(
            "HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS",
            &mut self.storage.orphan_sweep_interval_secs,
        )?;
        parse_env(
            "HOARD_STORAGE_ORPHAN_GRACE_SECS",
            &mut self.storage.orphan_grace_secs,
        )?;
        parse_env(
            "HOARD_STORAGE_SCRUB_BYTES_PER_SEC",
            &mut self.storage.scrub_bytes_per_sec,
        )?;
        parse_env(
            "HOARD_STORAGE_SCRUB_PAUSE_SECS",
            &mut self.storage.scrub_pause_secs,
        )?;
        parse_env(
            "HOARD_EVICTION_INTERVAL_SECS",
            &mut self.eviction.interval_secs,
        )?;
        parse_env(
            "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
            &mut self.eviction.namespace_budget_bytes,
        )?;
        parse_env(
            "HOARD_EVICTION_RETENTION_DAYS",
            &mut self.eviction.retention_days,
        )?;
        parse_env(
            "HOARD_EVICTION_MAX_ENTRY_BYTES",
            &mut self.eviction.max_entry_bytes,
        )?;
        parse_env(
            "HOARD_EVICTION_GLOBAL_BUDGET_BYTES",
            &mut self.eviction.global_budget_bytes,
        )?;
        parse_env("HOARD_SIGNING_SECRET", &mut self.signing.secret)?;
        parse_env("HOARD_AUTH_MODE", &mut self.auth.mode)?;
        if let Ok(v) = std::env::var("HOARD_AUTH_TENANTS") {
            self.auth.tenants = parse_tenants(&v)?;
        }
        let g = &mut self.auth.github;
        parse_env("HOARD_AUTH_GITHUB_ISSUER", &mut g.issuer)?;
        parse_env("HOARD_AUTH_GITHUB_JWKS_URL", &mut g.jwks_url)?;
        parse_env("HOARD_AUTH_GITHUB_NAMESPACE_CLAIM", &mut g.namespace_claim)?;
        parse_env("HOARD_AUTH_GITHUB_LEEWAY_SECS", &mut g.leeway_secs)?;
        if let Ok(v) = std::env::var("HOARD_AUTH_GITHUB_AUDIENCE") {
            g.audience = list(&v);
        }
        if let Ok(v) = std::env::var("HOARD_AUTH_GITHUB_PUBLIC_KEY_FILES") {
            g.public_key_files = list(&v).into_iter().map(PathBuf::from).collect();
        }
        let l = &mut self.limits;
        parse_env("HOARD_LIMITS_MAX_KEY_CHARS", &mut l.max_key_chars)?;
        parse_env("HOARD_LIMITS_MAX_VERSION_CHARS", &mut l.max_version_chars)?;
        parse_env("HOARD_LIMITS_MAX_BLOCKS", &mut l.max_blocks)?;
        parse_env("HOARD_LIMITS_MAX_HEADER_BYTES", &mut l.max_header_bytes)?;
        parse_env(
            "HOARD_LIMITS_MAX_TWIRP_BODY_BYTES",
            &mut l.max_twirp_body_bytes,
        )?;
        parse_env("HOARD_LIMITS_MAX_OPEN_UPLOADS", &mut l.max_open_uploads)?;
        parse_env("HOARD_LIMITS_UPLOADS_PER_MINUTE", &mut l.uploads_per_minute)?;
        parse_env("HOARD_LIMITS_UPLOADS_IN_FLIGHT", &mut l.uploads_in_flight)?;
        parse_env(
            "HOARD_LIMITS_DOWNLOADS_IN_FLIGHT",
            &mut l.downloads_in_flight,
        )?;
        parse_env(
            "HOARD_LIMITS_BLOCK_LIST_BUFFER_BYTES",
            &mut l.block_list_buffer_bytes,
        )?;
        parse_env(
            "HOARD_LIMITS_BODY_IDLE_TIMEOUT_SECS",
            &mut l.body_idle_timeout_secs,
        )?;
        parse_env(
            "HOARD_LIMITS_WRITE_IDLE_TIMEOUT_SECS",
            &mut l.write_idle_timeout_secs,
        )?;
        parse_env(
            "HOARD_LIMITS_HEADER_READ_TIMEOUT_SECS",
            &mut l.header_read_timeout_secs,
        )?;
        parse_env("HOARD_LIMITS_HTTP2_MAX_STREAMS", &mut l.http2_max_streams)?;
        parse_env(
            "HOARD_LIMITS_SHUTDOWN_GRACE_SECS",
            &mut l.shutdown_grace_secs,
        )?;
        parse_env(
            "HOARD_UPLOADS_PENDING_TIMEOUT_SECS",
            &mut self.uploads.pending_timeout_secs,
        )?;
        parse_env(
            "HOARD_UPLOADS_RECLAIM_INTERVAL_SECS",
            &mut self.uploads.reclaim_interval_secs,
        )?;
        parse_env("HOARD_UPLOADS_URL_TTL_SECS", &mut self.uploads.url_ttl_secs)?;
        parse_env(
            "HOARD_UPLOADS_MAX_BLOCK_BYTES",
            &mut self.uploads.max_block_bytes,
        )?;
        parse_env(
            "HOARD_DOWNLOADS_URL_TTL_SECS",
            &mut self.downloads.url_ttl_secs,
        )?;
        parse_env(
            "HOARD_DOWNLOADS_DELETE_GRACE_SECS",
            &mut self.downloads.delete_grace_secs,
        )?;
        Ok(())
    }

    /// The configuration with every secret replaced by `***`, for printing.
    pub fn masked(&self) -> Config {
        let mask = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                "***".to_string()
            }
        };
        let mut c = self.clone();
        c.signing.secret = mask(&c.signing.secret);
        c.storage.secret_access_key = mask(&c.storage.secret_access_key);
        c.database.url = crate::redact::url_password(&c.database.url);
        for t in &mut c.auth.tenants {
            t.token_hash = mask(&t.token_hash);
        }
        c
    }

    pub fn validate(&self) -> Result<()> {
        if self.uploads.pending_timeout_secs <= 0 {
            bail!("uploads.pending_timeout_secs must be positive");
        }
        if self.uploads.reclaim_interval_secs == 0 {
            bail!("uploads.reclaim_interval_secs must be positive");
        }
        if self.uploads.url_ttl_secs <= 0 || self.downloads.url_ttl_secs <= 0 {
            bail!("URL lifetimes must be positive");
        }
        if self.storage.orphan_sweep_interval_secs == 0 || self.storage.orphan_grace_secs < 0 {
            bail!("storage.orphan_sweep_interval_secs must be positive and orphan_grace_secs not negative");
        }
        let e = &self.eviction;
        if !(0.0 < e.low_watermark
            && e.low_watermark <= e.high_watermark
            && e.high_watermark <= 1.0)
        {
            bail!("eviction watermarks must satisfy 0 < low_watermark <= high_watermark <= 1");
        }
        if self.downloads.delete_grace_secs < 0 {
            bail!("downloads.delete_grace_secs must not be negative");
        }
        if self.uploads.max_block_bytes == 0 {
            bail!("uploads.max_block_bytes must be positive");
        }
        if self.database.max_connections == 0 {
            bail!("database.max_connections must be positive");
        }
        if self.storage.part_size_bytes < 5 * 1024 * 1024 {
            bail!("storage.part_size_bytes must be at least 5 MiB (S3's smallest part)");
        }
        let l = &self.limits;
        if l.uploads_in_flight == 0
            || l.downloads_in_flight == 0
            || l.http2_max_streams == 0
            || l.body_idle_timeout_secs == 0
            || l.write_idle_timeout_secs == 0
            || l.header_read_timeout_secs == 0
        {
            bail!("limits: uploads/downloads in flight, HTTP/2 streams and the idle and header timeouts must be positive");
        }
        if l.block_list_buffer_bytes < 1024 * 1024 || l.block_list_buffer_bytes > u32::MAX as usize
        {
            bail!("limits.block_list_buffer_bytes must be between 1 MiB and 4 GiB");
        }
        if self.storage.upload_buffer_bytes < self.storage.part_size_bytes {
            bail!("storage.upload_buffer_bytes must hold at least one part");
        }
        let modes = self.auth.modes()?;
        if modes.tenant_token && self.auth.tenants.is_empty() {
            bail!("auth.mode tenant-token needs at least one [[auth.tenants]]");
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.auth.tenants {
            let token = hoard_server::auth::tenant::TokenHash::parse(&t.token_hash)
                .map_err(|e| anyhow::anyhow!("tenant {:?}: {e}", t.name))?;
            hoard_server::auth::tenant::Tenant::new(&t.name, token)
                .map_err(|e| anyhow::anyhow!("auth.tenants: {e}"))?;
            if !names.insert(t.name.as_str()) {
                bail!("auth.tenants: two tenants are named {:?}", t.name);
            }
        }
        if modes.github_jwt && self.auth.github.issuer.is_empty() {
            bail!("auth.github.issuer must be set for github-jwt");
        }
        let l = &self.limits;
        if l.max_key_chars == 0
            || l.max_version_chars == 0
            || l.max_blocks == 0
            || l.max_header_bytes < 1024
            || l.max_twirp_body_bytes < 1024
        {
            bail!("limits: key/version lengths and max_blocks must be positive, header and Twirp body limits at least 1024 bytes");
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            bail!("public_url must start with http:// or https://");
        }
        let p = &self.passthrough;
        if !p.upstream.is_empty() {
            if p.timeout_secs == 0 {
                bail!("passthrough.timeout_secs must be at least 1");
            }
            hoard_server::passthrough::Upstream::new(&p.upstream, Duration::from_secs(1))
                .map_err(|e| anyhow::anyhow!("passthrough.upstream: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf key of a TOML table, dotted.
    fn leaf_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    leaf_keys(v, &format!("{prefix}{k}."), out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }

    /// One source of truth for defaults: the shipped example file states every
    /// key at the value the code uses, and configuration.md documents each.
    #[test]
    fn the_example_file_is_the_defaults_and_every_key_is_documented() {
        let text = include_str!("../../../deploy/hoard.example.toml");
        let example: toml::Value = toml::from_str(text).expect("the example parses");
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let (mut in_example, mut in_code) = (Vec::new(), Vec::new());
        leaf_keys(&example, "", &mut in_example);
        leaf_keys(&defaults, "", &mut in_code);
        assert_eq!(in_example, in_code, "the example names every key, no other");
        assert_eq!(example, defaults, "the example states the defaults");
        let parsed: Config = toml::from_str(text).unwrap();
        parsed.validate().unwrap();
        let docs = include_str!("../../../docs/configuration.md");
        for key in in_code {
            assert!(
                docs.contains(&format!("`{key}`")) || docs.contains(&format!("`[[{key}]]`")),
                "docs/configuration.md does not document {key}"
            );
        }
    }

    #[test]
    fn passthrough_goes_to_github_unless_told_otherwise() {
        let c = Config::default();
        assert_eq!(
            c.passthrough.upstream,
            "https://results-receiver.actions.githubusercontent.com/"
        );
        assert!(c.validate().is_ok());
        let off: Config = toml::from_str("[passthrough]\nupstream = \"\"\n").unwrap();
        assert!(off.validate().is_ok());
        for bad in [
            "[passthrough]\nupstream = \"results.internal\"\n",
            "[passthrough]\nupstream = \"ftp://results.internal/\"\n",
            "[passthrough]\ntimeout_secs = 0\n",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_file() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.uploads.pending_timeout_secs, 3600);
        let parsed: Config =
            toml::from_str("listen = \"0.0.0.0:9000\"\n[uploads]\npending_timeout_secs = 5\n")
                .unwrap();
        assert_eq!(parsed.listen, "0.0.0.0:9000");
        assert_eq!(parsed.uploads.pending_timeout_secs, 5);
        assert_eq!(parsed.uploads.url_ttl_secs, 3600);
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
        let parsed: Config = toml::from_str(
            "[database]\nurl = \"postgres://db/hoard\"\n[storage]\nurl = \"s3://b/p\"\npath_style = false\n",
        )
        .unwrap();
        assert_eq!(parsed.database.url, "postgres://db/hoard");
        assert_eq!(parsed.storage.path_style, Some(false));
        assert_eq!(parsed.storage.part_size_bytes, 8 * 1024 * 1024);
        assert!(parse_bool("X", "maybe").is_err());
        let parsed: Config = toml::from_str(
            "[eviction]\nretention_days = 0\n[[eviction.namespaces]]\npattern = \"org/*\"\nbudget_bytes = 100\nmax_entry_bytes = 50\nprotected_keys = [\"tool-*\"]\n[[eviction.scopes]]\npattern = \"refs/pull/*\"\nretention_days = 3\n",
        )
        .unwrap();
        let policy = parsed.eviction.policy();
        assert_eq!(policy.defaults.retention_ms, None);
        assert_eq!(policy.defaults.budget_bytes, Some(10 << 30));
        assert_eq!(policy.limits("org/x").budget_bytes, Some(100));
        assert_eq!(policy.limits("org/x").protected.len(), 1);
        assert_eq!(policy.limits("org/x").max_entry_bytes, Some(50));
        assert_eq!(policy.defaults.max_entry_bytes, Some(10 << 30));
        assert_eq!(policy.scopes[0].retention_ms, Some(3 * DAY_MS));
        assert!(parse_bool("X", " TRUE ").unwrap());
        let mut secret = Config::default();
        secret.signing.secret = "sign-me".into();
        secret.storage.secret_access_key = "s3-secret".into();
        secret.database.url = "postgres://u:pg-secret@db/x".into();
        let printed = toml::to_string(&secret.masked()).unwrap();
        for s in ["sign-me", "s3-secret", "pg-secret"] {
            assert!(!printed.contains(s), "{printed}");
        }
    }

    #[test]
    fn auth_modes_and_tenants() {
        let hash = hoard_server::auth::tenant::TokenHash::new("hoard_x").to_string();
        let parsed: Config = toml::from_str(&format!(
            "[auth]\nmode = \"tenant-token+github-jwt\"\n[[auth.tenants]]\nname = \"team-a\"\ntoken_hash = \"{hash}\"\n[auth.github]\npublic_key_files = [\"/k.pem\"]\n"
        ))
        .unwrap();
        let modes = parsed.auth.modes().unwrap();
        assert!(modes.tenant_token && modes.github_jwt);
        assert_eq!(parsed.auth.jwks_url(), None);
        assert!(parsed.validate().is_ok());
        assert!(!toml::to_string(&parsed.masked()).unwrap().contains(&hash));
        let mut c = Config::default();
        assert!(!c.auth.modes().unwrap().tenant_token);
        c.auth.mode = "github-jwt".into();
        assert_eq!(c.auth.jwks_url().as_deref(), Some(GITHUB_JWKS_URL));
        c.auth.mode = "tenant-token".into();
        assert!(c.validate().is_err(), "tenant-token without tenants");
        c.auth.mode = "open-sesame".into();
        assert!(c.validate().is_err());
        c.auth.mode = "tenant-token".into();
        c.auth.tenants = parse_tenants(&format!("a={hash}, b=sha256:00:11")).unwrap();
        assert!(
            c.validate().is_err(),
            "a malformed hash is refused at start"
        );
        assert!(parse_tenants("no-equals-sign").is_err());
        c.auth.tenants = parse_tenants(&format!("a/b={hash}")).unwrap();
        assert!(c.validate().is_err(), "tenant names cannot contain '/'");
    }
}
