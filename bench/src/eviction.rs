//! The eviction benchmark: `hoard gc` passes over a million entries in 1,000
//! namespaces (seeded straight into the database), while 64 clients look up
//! other entries through a running server at a steady rate. Reports each pass's
//! time, the gc process's peak RSS, and lookup latency during the passes.
//!
//! The lookups are paced (`LOOKUPS_PER_SEC` in all), not as fast as possible:
//! on a small machine, clients that saturate the CPU would measure the CPU
//! shared three ways, not whether a pass blocks lookups.

use anyhow::{bail, Context, Result};
use hoard_db::SeedEntry;
use hoard_e2e::{Backend, Deployment, Server};
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: i64 = 1024 * 1024;
const DAY_MS: i64 = 24 * 3600 * 1000;
const NAMESPACES: usize = 1000;
const LOOKUP_ENTRIES: usize = 100_000;
const VERSION: &str = "bench-version";
const LOOKUPS_PER_SEC: f64 = 2000.0;

/// 1 GiB per namespace, 7 days (3 for pull requests), and a global budget the
/// namespaces' survivors exceed, so all three phases of a pass do work.
fn policy_toml(global_budget: i64) -> String {
    format!(
        "[eviction]\n\
         interval_secs = 0\n\
         namespace_budget_bytes = {}\n\
         retention_days = 7\n\
         global_budget_bytes = {global_budget}\n\
         high_watermark = 0.9\n\
         low_watermark = 0.8\n\
         [[eviction.scopes]]\n\
         pattern = \"refs/pull/*\"\n\
         retention_days = 3\n",
        1024 * MIB
    )
}

async fn seed(url: &str, entries: usize) -> Result<()> {
    let store = hoard_db::open(url, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = hoard_core::now_millis();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let per_namespace = entries / NAMESPACES;
    let t = Instant::now();
    let namespaced = (0..NAMESPACES).flat_map(|ns| (0..per_namespace).map(move |i| (ns, i)));
    let mut seeds = namespaced
        .map(|(ns, i)| SeedEntry {
            namespace: format!("org-{ns:04}/repo"),
            scope: if i % 4 == 0 {
                format!("refs/pull/{}/merge", i % 97)
            } else {
                "refs/heads/main".to_string()
            },
            key: format!("deps-{i:06}"),
            version: VERSION.into(),
            size: rng.gen_range(MIB..=20 * MIB),
            last_accessed_at: now - rng.gen_range(0..30 * DAY_MS),
        })
        // What the clients look up during the passes: fresh, inside every rule.
        .chain((0..LOOKUP_ENTRIES).map(|i| SeedEntry {
            namespace: "default".into(),
            scope: "default".into(),
            key: format!("lookup-key-{i:07}"),
            version: VERSION.into(),
            size: 0,
            last_accessed_at: now,
        }))
        .peekable();
    while seeds.peek().is_some() {
        let rows: Vec<SeedEntry> = seeds.by_ref().take(10_000).collect();
        store
            .insert_committed_bulk(&rows)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    store.close().await;
    println!(
        "seeded {} entries in {NAMESPACES} namespaces + {LOOKUP_ENTRIES} for lookups in {:.1} s",
        per_namespace * NAMESPACES,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Pass {
    secs: f64,
    peak_rss_mib: f64,
    total_line: String,
}

/// Runs `hoard gc <extra>` under /usr/bin/time for its peak RSS.
fn gc(server: &Server, config: &Path, extra: &[&str]) -> Result<Pass> {
    let mut args = vec!["gc", "--config", config.to_str().context("config path")?];
    args.extend_from_slice(extra);
    let cli = server.cli(&args);
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed
        .args(["-f", "peak-rss-kib %M"])
        .arg(cli.get_program())
        .args(cli.get_args());
    for (k, v) in cli.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let t = Instant::now();
    let mut child = timed.spawn()?;
    // One line per removed entry: read them as they come, keep the totals.
    let stdout = child.stdout.take().context("stdout")?;
    let mut total_line = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with("total:") || line.starts_with("also:") {
            total_line.push_str(&line);
            total_line.push(' ');
        }
    }
    let out = child.wait_with_output()?;
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("hoard gc failed: {stderr}");
    }
    let kib: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .context("no peak RSS from /usr/bin/time")?
        .trim()
        .parse()?;
    Ok(Pass {
        secs,
        peak_rss_mib: kib / 1024.0,
        total_line: total_line.trim().to_string(),
    })
}

/// 64 clients looking up the fresh entries at `LOOKUPS_PER_SEC` together
/// until `stop`; every one must hit.
fn lookup_clients(
    server: &Server,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let url = server.twirp_url("GetCacheEntryDownloadURL");
    (0..64u64)
        .map(|w| {
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                let mut lat = Vec::new();
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(64.0 / LOOKUPS_PER_SEC));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let key = format!("lookup-key-{:07}", rng.gen_range(0..LOOKUP_ENTRIES));
                    let (took, hit) = crate::timed_lookup(&http, &url, &key).await?;
                    lat.push(took);
                    if !hit {
                        bail!("lookup of {key} missed during the pass");
                    }
                }
                Ok(lat)
            })
        })
        .collect()
}

pub async fn run(work: &Path, entries: usize, backend: Backend, name: &str) -> Result<()> {
    let data = work.join("eviction-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let deployment = Deployment::new(backend);
    let url = match &deployment.database {
        Some(db) => db.url.clone(),
        None => hoard_db::sqlite_url(&data.join("hoard.db")),
    };
    println!("\n## Eviction pass over {entries} entries ({name})\n");
    seed(&url, entries).await?;
    // The seeded sizes average 10.5 MiB; after retention and the 1 GiB
    // namespace budgets about 1 GiB per namespace survives. A global budget of
    // 90% of that puts the store over its high watermark.
    let global = NAMESPACES as i64 * 1024 * MIB * 9 / 10;
    let config = data.join("policy.toml");
    std::fs::write(&config, policy_toml(global))?;
    let server = Server::start_at(
        deployment.clone(),
        &data,
        &[
            ("HOARD_LOG", "warn,hoard=info"),
            ("HOARD_EVICTION_INTERVAL_SECS", "0"),
        ],
    );

    let dry = gc(&server, &config, &["--dry-run"])?;
    println!(
        "dry run: {:.1} s, gc peak RSS {:.1} MiB; {}",
        dry.secs, dry.peak_rss_mib, dry.total_line
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients = lookup_clients(&server, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let real = tokio::task::block_in_place(|| gc(&server, &config, &[]))?;
    let again = tokio::task::block_in_place(|| gc(&server, &config, &[]))?;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for c in clients {
        lat.extend(c.await??);
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "pass: {:.1} s, gc peak RSS {:.1} MiB; {}",
        real.secs, real.peak_rss_mib, real.total_line
    );
    println!(
        "next pass (nothing left to remove): {:.1} s, gc peak RSS {:.1} MiB; {}",
        again.secs, again.peak_rss_mib, again.total_line
    );
    println!(
        "lookups meanwhile (64 clients, {LOOKUPS_PER_SEC}/s in all, all hits): {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        lat.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
