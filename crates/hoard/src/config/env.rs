//! The `HOARD_*` environment variables over the file's values (and parsing
//! their text: numbers, booleans, lists, tenants).

use super::*;

impl Config {
    pub(super) fn apply_env(&mut self) -> Result<()> {
        parse_env("HOARD_LISTEN", &mut self.listen)?;
        parse_env("HOARD_DATA_DIR", &mut self.data_dir)?;
        parse_env("HOARD_PUBLIC_URL", &mut self.public_url)?;
        parse_env("HOARD_PASSTHROUGH_UPSTREAM", &mut self.passthrough.upstream)?;
        parse_env_secs(
            "HOARD_PASSTHROUGH_TIMEOUT_SECS",
            &mut self.passthrough.timeout_secs,
        )?;
        parse_env("HOARD_DATABASE_URL", &mut self.database.url)?;
        parse_env(
            "HOARD_DATABASE_MAX_CONNECTIONS",
            &mut self.database.max_connections,
        )?;
        parse_env_secs(
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
        parse_env_bytes(
            "HOARD_STORAGE_PART_SIZE_BYTES",
            &mut self.storage.part_size_bytes,
        )?;
        parse_env_bytes(
            "HOARD_STORAGE_UPLOAD_BUFFER_BYTES",
            &mut self.storage.upload_buffer_bytes,
        )?;
        if let Ok(v) = std::env::var("HOARD_STORAGE_DIRECT_DOWNLOAD") {
            self.storage.direct_download = parse_bool("HOARD_STORAGE_DIRECT_DOWNLOAD", &v)?;
        }
        parse_env_secs(
            "HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS",
            &mut self.storage.orphan_sweep_interval_secs,
        )?;
        parse_env_secs(
            "HOARD_STORAGE_ORPHAN_GRACE_SECS",
            &mut self.storage.orphan_grace_secs,
        )?;
        parse_env_bytes(
            "HOARD_STORAGE_SCRUB_BYTES_PER_SEC",
            &mut self.storage.scrub_bytes_per_sec,
        )?;
        parse_env_secs(
            "HOARD_STORAGE_SCRUB_PAUSE_SECS",
            &mut self.storage.scrub_pause_secs,
        )?;
        parse_env_secs(
            "HOARD_EVICTION_INTERVAL_SECS",
            &mut self.eviction.interval_secs,
        )?;
        parse_env_bytes(
            "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
            &mut self.eviction.namespace_budget_bytes,
        )?;
        parse_env(
            "HOARD_EVICTION_RETENTION_DAYS",
            &mut self.eviction.retention_days,
        )?;
        parse_env_bytes(
            "HOARD_EVICTION_MAX_ENTRY_BYTES",
            &mut self.eviction.max_entry_bytes,
        )?;
        parse_env_bytes(
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
        parse_env_secs("HOARD_AUTH_GITHUB_LEEWAY_SECS", &mut g.leeway_secs)?;
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
        parse_env_bytes("HOARD_LIMITS_MAX_HEADER_BYTES", &mut l.max_header_bytes)?;
        parse_env_bytes(
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
        parse_env_bytes(
            "HOARD_LIMITS_BLOCK_LIST_BUFFER_BYTES",
            &mut l.block_list_buffer_bytes,
        )?;
        parse_env_secs(
            "HOARD_LIMITS_BODY_IDLE_TIMEOUT_SECS",
            &mut l.body_idle_timeout_secs,
        )?;
        parse_env_secs(
            "HOARD_LIMITS_WRITE_IDLE_TIMEOUT_SECS",
            &mut l.write_idle_timeout_secs,
        )?;
        parse_env_secs(
            "HOARD_LIMITS_HEADER_READ_TIMEOUT_SECS",
            &mut l.header_read_timeout_secs,
        )?;
        parse_env("HOARD_LIMITS_HTTP2_MAX_STREAMS", &mut l.http2_max_streams)?;
        parse_env_secs(
            "HOARD_LIMITS_SHUTDOWN_GRACE_SECS",
            &mut l.shutdown_grace_secs,
        )?;
        parse_env_secs(
            "HOARD_UPLOADS_PENDING_TIMEOUT_SECS",
            &mut self.uploads.pending_timeout_secs,
        )?;
        parse_env_secs(
            "HOARD_UPLOADS_RECLAIM_INTERVAL_SECS",
            &mut self.uploads.reclaim_interval_secs,
        )?;
        parse_env_secs("HOARD_UPLOADS_URL_TTL_SECS", &mut self.uploads.url_ttl_secs)?;
        parse_env_bytes(
            "HOARD_UPLOADS_MAX_BLOCK_BYTES",
            &mut self.uploads.max_block_bytes,
        )?;
        parse_env_secs(
            "HOARD_DOWNLOADS_URL_TTL_SECS",
            &mut self.downloads.url_ttl_secs,
        )?;
        parse_env_secs(
            "HOARD_DOWNLOADS_DELETE_GRACE_SECS",
            &mut self.downloads.delete_grace_secs,
        )?;
        if let Ok(v) = std::env::var("HOARD_METRICS_ENABLED") {
            self.metrics.enabled = parse_bool("HOARD_METRICS_ENABLED", &v)?;
        }
        parse_env("HOARD_METRICS_LISTEN", &mut self.metrics.listen)?;
        if let Ok(v) = std::env::var("HOARD_METRICS_NAMESPACES") {
            self.metrics.namespaces = list(&v);
        }
        parse_env(
            "HOARD_METRICS_TOP_NAMESPACES",
            &mut self.metrics.top_namespaces,
        )?;
        parse_env_secs("HOARD_METRICS_REFRESH_SECS", &mut self.metrics.refresh_secs)?;
        if let Ok(v) = std::env::var("HOARD_LOG_ACCESS") {
            self.log.access = parse_bool("HOARD_LOG_ACCESS", &v)?;
        }
        parse_env("HOARD_LOG_FORMAT", &mut self.log.format)?;
        parse_env(
            "HOARD_MANAGEMENT_ADMIN_TOKEN_HASH",
            &mut self.management.admin_token_hash,
        )?;
        if let Ok(v) = std::env::var("HOARD_MANAGEMENT_REPOSITORIES") {
            self.management.repositories = parse_repositories(&v)?;
        }
        Ok(())
    }
}

/// A `*_SECS` variable: seconds or a duration (`15m`).
fn parse_env_secs<T: TryFrom<u64>>(name: &str, slot: &mut T) -> Result<()> {
    parse_env_with(name, slot, super::units::parse_secs)
}

/// A `*_BYTES` variable: bytes or a size (`10GiB`).
fn parse_env_bytes<T: TryFrom<u64>>(name: &str, slot: &mut T) -> Result<()> {
    parse_env_with(name, slot, super::units::parse_bytes)
}

fn parse_env_with<T: TryFrom<u64>>(
    name: &str,
    slot: &mut T,
    parse: fn(&str) -> Result<u64, String>,
) -> Result<()> {
    if let Ok(v) = std::env::var(name) {
        let n = parse(&v).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        *slot = T::try_from(n).map_err(|_| anyhow::anyhow!("{name}={v:?} is too large"))?;
    }
    Ok(())
}

fn parse_env<T: std::str::FromStr>(name: &str, slot: &mut T) -> Result<()> {
    if let Ok(v) = std::env::var(name) {
        *slot = v.trim().parse().map_err(|_| {
            anyhow::anyhow!("{name}={v:?} is not valid: expected {}", expected::<T>())
        })?;
    }
    Ok(())
}

/// What a value of type `T` looks like, for an error message.
fn expected<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)",
        "i32" | "i64" => "a whole number",
        "f64" => "a number",
        _ => "a valid value (docs/configuration.md)",
    }
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
pub(super) fn parse_tenants(v: &str) -> Result<Vec<TenantConfig>> {
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

/// `owner/repo=namespace,...` (HOARD_MANAGEMENT_REPOSITORIES).
fn parse_repositories(v: &str) -> Result<std::collections::BTreeMap<String, String>> {
    list(v)
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((repo, ns)) => Ok((repo.trim().to_string(), ns.trim().to_string())),
            None => bail!("HOARD_MANAGEMENT_REPOSITORIES takes owner/repo=namespace pairs separated by commas"),
        })
        .collect()
}

pub(super) fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={v:?} is not true or false"),
    }
}

/// The configuration's variables, as `apply_env` reads them (a test keeps the
/// two in step).
pub(super) const CONFIG_VARIABLES: &[&str] = &[
    "HOARD_AUTH_GITHUB_AUDIENCE",
    "HOARD_AUTH_GITHUB_ISSUER",
    "HOARD_AUTH_GITHUB_JWKS_URL",
    "HOARD_AUTH_GITHUB_LEEWAY_SECS",
    "HOARD_AUTH_GITHUB_NAMESPACE_CLAIM",
    "HOARD_AUTH_GITHUB_PUBLIC_KEY_FILES",
    "HOARD_AUTH_MODE",
    "HOARD_AUTH_TENANTS",
    "HOARD_DATABASE_ACQUIRE_TIMEOUT_SECS",
    "HOARD_DATABASE_MAX_CONNECTIONS",
    "HOARD_DATABASE_URL",
    "HOARD_DATA_DIR",
    "HOARD_DOWNLOADS_DELETE_GRACE_SECS",
    "HOARD_DOWNLOADS_URL_TTL_SECS",
    "HOARD_EVICTION_GLOBAL_BUDGET_BYTES",
    "HOARD_EVICTION_INTERVAL_SECS",
    "HOARD_EVICTION_MAX_ENTRY_BYTES",
    "HOARD_EVICTION_NAMESPACE_BUDGET_BYTES",
    "HOARD_EVICTION_RETENTION_DAYS",
    "HOARD_LIMITS_BLOCK_LIST_BUFFER_BYTES",
    "HOARD_LIMITS_BODY_IDLE_TIMEOUT_SECS",
    "HOARD_LIMITS_DOWNLOADS_IN_FLIGHT",
    "HOARD_LIMITS_HEADER_READ_TIMEOUT_SECS",
    "HOARD_LIMITS_HTTP2_MAX_STREAMS",
    "HOARD_LIMITS_MAX_BLOCKS",
    "HOARD_LIMITS_MAX_HEADER_BYTES",
    "HOARD_LIMITS_MAX_KEY_CHARS",
    "HOARD_LIMITS_MAX_OPEN_UPLOADS",
    "HOARD_LIMITS_MAX_TWIRP_BODY_BYTES",
    "HOARD_LIMITS_MAX_VERSION_CHARS",
    "HOARD_LIMITS_SHUTDOWN_GRACE_SECS",
    "HOARD_LIMITS_UPLOADS_IN_FLIGHT",
    "HOARD_LIMITS_UPLOADS_PER_MINUTE",
    "HOARD_LIMITS_WRITE_IDLE_TIMEOUT_SECS",
    "HOARD_LISTEN",
    "HOARD_LOG_ACCESS",
    "HOARD_LOG_FORMAT",
    "HOARD_MANAGEMENT_ADMIN_TOKEN_HASH",
    "HOARD_MANAGEMENT_REPOSITORIES",
    "HOARD_METRICS_ENABLED",
    "HOARD_METRICS_LISTEN",
    "HOARD_METRICS_NAMESPACES",
    "HOARD_METRICS_REFRESH_SECS",
    "HOARD_METRICS_TOP_NAMESPACES",
    "HOARD_PASSTHROUGH_TIMEOUT_SECS",
    "HOARD_PASSTHROUGH_UPSTREAM",
    "HOARD_PUBLIC_URL",
    "HOARD_SIGNING_SECRET",
    "HOARD_STORAGE_ACCESS_KEY_ID",
    "HOARD_STORAGE_DIRECT_DOWNLOAD",
    "HOARD_STORAGE_ENDPOINT",
    "HOARD_STORAGE_ORPHAN_GRACE_SECS",
    "HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS",
    "HOARD_STORAGE_PART_SIZE_BYTES",
    "HOARD_STORAGE_PATH_STYLE",
    "HOARD_STORAGE_REGION",
    "HOARD_STORAGE_SCRUB_BYTES_PER_SEC",
    "HOARD_STORAGE_SCRUB_PAUSE_SECS",
    "HOARD_STORAGE_SECRET_ACCESS_KEY",
    "HOARD_STORAGE_UPLOAD_BUFFER_BYTES",
    "HOARD_STORAGE_URL",
    "HOARD_UPLOADS_MAX_BLOCK_BYTES",
    "HOARD_UPLOADS_PENDING_TIMEOUT_SECS",
    "HOARD_UPLOADS_RECLAIM_INTERVAL_SECS",
    "HOARD_UPLOADS_URL_TTL_SECS",
];

/// Variables hoard reads that are not configuration keys.
const OTHER_VARIABLES: [&str; 4] = ["HOARD_CONFIG", "HOARD_LOG", "HOARD_TOKEN", "HOARD_URL"];

/// `HOARD_*` names among `names` that hoard does not read: a misspelt setting
/// would otherwise be ignored without a word.
pub(super) fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .filter(|n| n.starts_with("HOARD_"))
        .filter(|n| {
            !CONFIG_VARIABLES.contains(&n.as_str()) && !OTHER_VARIABLES.contains(&n.as_str())
        })
        .collect();
    unknown.sort();
    unknown
}
