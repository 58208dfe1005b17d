//! `hoard gc`: applies the eviction policy once, from the command line (cron, a
//! Kubernetes CronJob), or with `--dry-run` prints what it would remove and why.

use crate::config::Config;
use anyhow::{Context, Result};
use hoard_core::policy::{Candidate, Reason};

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
    let (meta, service) = crate::serve::open_service(&config).await?;
    let policy = config.eviction.policy();
    let plan = service
        .plan_eviction(&policy, options.namespace.as_deref(), now)
        .await?;
    println!("namespace\tscope\tkey\tsize\tlast_access\treason");
    let removed: std::collections::HashSet<i64> = if options.dry_run {
        plan.iter().map(|(c, _)| c.id).collect()
    } else {
        service.evict(&plan).await?.into_iter().collect()
    };
    let mut bytes = 0;
    for (c, r) in plan.iter().filter(|(c, _)| removed.contains(&c.id)) {
        println!("{}", line(c, *r));
        bytes += c.size;
    }
    let verb = if options.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!("total: {verb} {} entries, {bytes} bytes", removed.len());
    if !options.dry_run {
        let uploads = service.reclaim_stale_uploads().await?;
        let due = service.delete_doomed_objects().await?;
        println!(
            "also: {uploads} abandoned uploads reclaimed, {due} deleted entries' objects removed"
        );
    }
    meta.close().await;
    Ok(())
}
