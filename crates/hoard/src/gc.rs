//! `hoard gc`: applies the eviction policy once, from the command line (cron, a
//! Kubernetes CronJob), or with `--dry-run` prints what it would remove and why.

use crate::config::Config;
use anyhow::{Context, Result};
use hoard_core::policy::{Candidate, Reason};
use hoard_core::{CacheService, MetaStore};

pub struct Options {
    pub dry_run: bool,
    pub namespace: Option<String>,
    /// Evaluate as of this time (RFC 3339) instead of now: "what goes next week".
    pub at: Option<String>,
}

fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| millis.to_string())
}

/// One line per entry: namespace, scope, key, size, last access, reason.
fn line(c: &Candidate, r: Reason) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        c.namespace,
        c.scope,
        c.key,
        c.size,
        when(c.last_accessed_at),
        r.as_str()
    )
}

pub async fn run(config: Config, options: Options) -> Result<()> {
    let now = match &options.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--at {t:?} is not an RFC 3339 time"))?
            .timestamp_millis(),
        None => hoard_core::now_millis(),
    };
    let (meta, service) =
        crate::serve::open_service(&config, crate::serve::Opening::MustExist).await?;
    // A dry run only reads; a real one first gives the planner fresh numbers.
    if !options.dry_run {
        meta.refresh_statistics().await?;
    }
    let pass = service
        .eviction_pass(options.namespace.as_deref(), now)
        .await?;
    println!("namespace\tscope\tkey\tsize\tlast_access\treason");
    let done = service
        .run_pass(pass, None, options.dry_run, |c, r| {
            println!("{}", line(c, r))
        })
        .await?;
    let verb = if options.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "total: {verb} {} entries, {} bytes",
        done.entries, done.bytes
    );
    // Uploads and orphaned objects belong to the store, not to one namespace.
    if options.namespace.is_none() {
        housekeeping(&config, &service, options.dry_run).await?;
    }
    meta.close().await;
    Ok(())
}

/// Abandoned uploads and orphaned objects: listed and counted by a dry run,
/// removed by a real one, along with deleted entries' objects whose grace
/// period is over.
async fn housekeeping(config: &Config, service: &CacheService, dry_run: bool) -> Result<()> {
    let grace = config.storage.orphan_grace_secs;
    if dry_run {
        let uploads = service.stale_uploads(i64::MAX).await?;
        for u in &uploads {
            println!(
                "{}\t{}\t{}\t{}\t{}\tabandoned upload",
                u.namespace,
                u.scope,
                u.key,
                u.size,
                when(u.created_at)
            );
        }
        let orphans = service.sweep_orphans(grace, true).await?;
        println!(
            "also: would reclaim {} abandoned uploads, would delete {orphans} orphaned objects",
            uploads.len()
        );
    } else {
        let uploads = service.reclaim_stale_uploads().await?;
        let due = service.delete_doomed_objects().await?;
        let orphans = service.sweep_orphans(grace, false).await?;
        println!(
            "also: {uploads} abandoned uploads reclaimed, {due} deleted entries' objects removed, {orphans} orphaned objects deleted"
        );
    }
    Ok(())
}
