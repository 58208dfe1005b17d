//! `hoard verify`: re-reads every stored entry and checks its bytes against
//! what was acknowledged (length and sha256 of each part). Entries whose bytes
//! are missing or corrupt are dropped (lookups miss them, the next job saves
//! them again); `--dry-run` only reports them. Exits 1 when any was found, so a
//! cron job can alert on it.

use crate::config::Config;
use anyhow::Result;

pub struct Options {
    pub dry_run: bool,
    pub namespace: Option<String>,
}

/// Returns whether every entry checked was whole.
pub async fn run(config: Config, options: Options) -> Result<bool> {
    let (meta, service) =
        crate::serve::open_service(&config, crate::serve::Opening::MustExist).await?;
    let mut pass = service.verify_entries(options.namespace.as_deref(), !options.dry_run, None);
    println!("namespace\tscope\tkey\tsize\tproblem");
    let (mut checked, mut bytes, mut bad) = (0usize, 0u64, 0usize);
    while let Some(c) = pass.next().await? {
        checked += 1;
        bytes += c.entry.size;
        if let Some(fault) = &c.fault {
            bad += 1;
            println!(
                "{}\t{}\t{}\t{}\t{fault}",
                c.entry.namespace, c.entry.scope, c.entry.key, c.entry.size
            );
        }
    }
    drop(pass);
    let verb = if options.dry_run {
        "would drop"
    } else {
        "dropped"
    };
    println!(
        "total: {checked} entries checked ({bytes} bytes), {bad} missing or corrupt: {verb} {bad}"
    );
    meta.close().await;
    Ok(bad == 0)
}
