//! Checking a loaded configuration, and printing it without its secrets.

use super::*;

impl Config {
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
        c.management.admin_token_hash = mask(&c.management.admin_token_hash);
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
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be text or json, not {:?}", self.log.format);
        }
        if self.metrics.refresh_secs == 0 {
            bail!("metrics.refresh_secs must be positive");
        }
        if !self.management.admin_token_hash.is_empty() {
            hoard_server::auth::tenant::TokenHash::parse(&self.management.admin_token_hash)
                .map_err(|e| anyhow::anyhow!("management.admin_token_hash: {e}"))?;
        }
        for (repo, ns) in &self.management.repositories {
            let parts: Vec<&str> = repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || ns.is_empty() {
                bail!(
                    "management.repositories: {repo:?} = {ns:?} must map owner/repo to a namespace"
                );
            }
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
