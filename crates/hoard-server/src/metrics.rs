//! Prometheus metrics: what the requests did (by surface, operation and
//! status), what the cache answered (hits and misses by namespace), what the
//! store holds (from the database, so every replica reports the same) and what
//! the service did on its own (evictions).
//!
//! Namespaces are labels with bounded cardinality: the configured allow-list,
//! or else the namespaces holding the most bytes (and, until that many are
//! known, any seen); every other namespace is counted as `other`.

use crate::flow::InFlight;
use hoard_core::catalog::NamespaceUsage;
use hoard_core::policy::Reason;
use hoard_core::{CacheService, CoreError, Entry};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// The label of every namespace outside the labelled set.
pub const OTHER: &str = "other";

/// Which namespaces get a label of their own.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Only these namespaces (empty: the `top` largest).
    pub namespaces: Vec<String>,
    /// How many namespaces get a label when no allow-list is given.
    pub top: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            namespaces: Vec::new(),
            top: 20,
        }
    }
}

/// Store failures answered to clients, by kind; counted where each surface maps
/// a core error, read at scrape time.
static DATABASE_FAILURES: AtomicU64 = AtomicU64::new(0);
static STORAGE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Counts and logs a database or blob store failure that a request is
/// answered with (other errors are the client's; their detail is not sent).
pub(crate) fn storage_failure(e: &CoreError) {
    match e {
        CoreError::Store(_) => DATABASE_FAILURES.fetch_add(1, Ordering::Relaxed),
        CoreError::Blob(_) => STORAGE_FAILURES.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    tracing::error!(error = %e, "storage failure");
}

/// What a lookup found, as the hit/miss label says it.
pub fn lookup_result(key: &str, found: Option<&Entry>) -> &'static str {
    match found {
        None => "miss",
        Some(e) if e.key == key => "exact",
        Some(_) => "restore_key",
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    lookups: IntCounterVec,
    entries: IntGaugeVec,
    stored_bytes: IntGaugeVec,
    budget_bytes: IntGaugeVec,
    store_budget_bytes: IntGauge,
    usage_refreshed: Gauge,
    evictions: IntCounterVec,
    leader_passes: IntCounter,
    last_leader_pass: Gauge,
    leases_lost: IntCounter,
    compactions: IntCounterVec,
    compacted_bytes: IntCounter,
    in_flight: IntGaugeVec,
    failures: IntCounterVec,
    allow: Option<HashSet<String>>,
    top: usize,
    labelled: RwLock<HashSet<String>>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    registry
        .register(Box::new(m.clone()))
        .expect("registered once");
    m
}

/// Brings a counter up to a total kept elsewhere.
fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Metrics {
        let r = Registry::new_custom(Some("hoard".into()), None).expect("a valid prefix");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to the end of its response body.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]),
            &["surface", "operation"],
        )
        .expect("a valid metric");
        Metrics {
            requests: counter_vec(
                &r,
                "http_requests_total",
                "Requests answered, by protocol surface, operation and HTTP status.",
                &["surface", "operation", "status"],
            ),
            duration: register(&r, duration),
            received: counter_vec(
                &r,
                "http_received_bytes_total",
                "Request body bytes received.",
                &["surface"],
            ),
            sent: counter_vec(
                &r,
                "http_sent_bytes_total",
                "Response body bytes sent.",
                &["surface"],
            ),
            lookups: counter_vec(
                &r,
                "cache_lookups_total",
                "Cache lookups by namespace and result: exact (the primary key), restore_key (another key or a prefix), miss.",
                &["namespace", "result"],
            ),
            entries: gauge_vec(
                &r,
                "cache_entries",
                "Committed entries by namespace (from the database; the same on every replica).",
                &["namespace"],
            ),
            stored_bytes: gauge_vec(
                &r,
                "cache_stored_bytes",
                "Bytes of committed entries by namespace (from the database; the same on every replica).",
                &["namespace"],
            ),
            budget_bytes: gauge_vec(
                &r,
                "cache_budget_bytes",
                "The eviction budget of each labelled namespace (0: none).",
                &["namespace"],
            ),
            store_budget_bytes: register(
                &r,
                IntGauge::new(
                    "store_budget_bytes",
                    "The global eviction budget of the whole store (0: none).",
                )
                .expect("a valid metric"),
            ),
            usage_refreshed: register(
                &r,
                Gauge::new(
                    "cache_usage_refreshed_timestamp_seconds",
                    "When hoard_cache_entries and hoard_cache_stored_bytes were last read from the database.",
                )
                .expect("a valid metric"),
            ),
            evictions: counter_vec(
                &r,
                "evictions_total",
                "Entries this replica evicted, by reason.",
                &["reason"],
            ),
            leader_passes: register(
                &r,
                IntCounter::new(
                    "evictor_passes_total",
                    "Full eviction passes this replica ran under the evictor lease.",
                )
                .expect("a valid metric"),
            ),
            last_leader_pass: register(
                &r,
                Gauge::new(
                    "evictor_last_pass_timestamp_seconds",
                    "When this replica last finished a full eviction pass (0: never).",
                )
                .expect("a valid metric"),
            ),
            leases_lost: register(
                &r,
                IntCounter::new(
                    "evictor_leases_lost_total",
                    "Eviction passes stopped because another replica took the evictor lease.",
                )
                .expect("a valid metric"),
            ),
            compactions: counter_vec(
                &r,
                "compactions_total",
                "Entries of several objects this replica rewrote as one (direct downloads on), by result: done, failed.",
                &["result"],
            ),
            compacted_bytes: register(
                &r,
                IntCounter::new(
                    "compacted_bytes_total",
                    "Bytes of the entries this replica rewrote as one object.",
                )
                .expect("a valid metric"),
            ),
            in_flight: gauge_vec(
                &r,
                "transfers_in_flight",
                "Upload and download bodies streaming now on this replica.",
                &["direction"],
            ),
            failures: counter_vec(
                &r,
                "store_errors_total",
                "Requests failed by the database or the blob storage, by kind.",
                &["kind"],
            ),
            registry: r,
            allow: (!config.namespaces.is_empty())
                .then(|| config.namespaces.iter().cloned().collect()),
            top: config.top,
            labelled: RwLock::new(HashSet::new()),
        }
    }

    /// The label a namespace is counted under.
    pub fn namespace_label<'a>(&self, namespace: &'a str) -> &'a str {
        if let Some(allow) = &self.allow {
            return if allow.contains(namespace) {
                namespace
            } else {
                OTHER
            };
        }
        {
            let set = self.labelled.read().unwrap_or_else(|p| p.into_inner());
            if set.contains(namespace) {
                return namespace;
            }
            if set.len() >= self.top {
                return OTHER;
            }
        }
        let mut set = self.labelled.write().unwrap_or_else(|p| p.into_inner());
        if set.len() < self.top {
            set.insert(namespace.to_string());
            namespace
        } else {
            OTHER
        }
    }

    /// One request done.
    pub fn request(
        &self,
        surface: &str,
        operation: &str,
        status: &str,
        seconds: f64,
        received: u64,
        sent: u64,
    ) {
        self.requests
            .with_label_values(&[surface, operation, status])
            .inc();
        self.duration
            .with_label_values(&[surface, operation])
            .observe(seconds);
        if received > 0 {
            self.received.with_label_values(&[surface]).inc_by(received);
        }
        if sent > 0 {
            self.sent.with_label_values(&[surface]).inc_by(sent);
        }
    }

    /// One lookup answered (`result` from [`lookup_result`]).
    pub fn lookup(&self, namespace: &str, result: &str) {
        self.lookups
            .with_label_values(&[self.namespace_label(namespace), result])
            .inc();
    }

    /// Sets the stored entries and bytes per namespace from the database; the
    /// labelled namespaces become the largest ones (without an allow-list).
    pub fn set_usage(&self, usage: &[NamespaceUsage]) {
        if self.allow.is_none() {
            let mut by_size: Vec<&NamespaceUsage> = usage.iter().collect();
            by_size.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.namespace.cmp(&b.namespace)));
            let top: HashSet<String> = by_size
                .iter()
                .take(self.top)
                .map(|u| u.namespace.clone())
                .collect();
            *self.labelled.write().unwrap_or_else(|p| p.into_inner()) = top;
        }
        let mut totals: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for u in usage {
            let t = totals
                .entry(self.namespace_label(&u.namespace))
                .or_default();
            t.0 += u.entries;
            t.1 += u.bytes;
        }
        self.entries.reset();
        self.stored_bytes.reset();
        for (ns, (entries, bytes)) in totals {
            self.entries.with_label_values(&[ns]).set(entries as i64);
            self.stored_bytes.with_label_values(&[ns]).set(bytes as i64);
        }
        self.usage_refreshed
            .set(hoard_core::now_millis() as f64 / 1000.0);
    }

    /// Reads usage from the database into the gauges, with the budgets it is
    /// measured against.
    pub async fn refresh_usage(&self, service: &CacheService) -> Result<(), CoreError> {
        let usage = service.usage_by_namespace().await?;
        self.set_usage(&usage);
        let policy = &service.config().policy;
        self.budget_bytes.reset();
        for u in &usage {
            let label = self.namespace_label(&u.namespace);
            if label != OTHER {
                let budget = policy.limits(&u.namespace).budget_bytes.unwrap_or(0);
                self.budget_bytes
                    .with_label_values(&[label])
                    .set(budget as i64);
            }
        }
        self.store_budget_bytes
            .set(policy.global.as_ref().map_or(0, |g| g.budget_bytes) as i64);
        Ok(())
    }

    /// The text exposition, with the counters kept elsewhere brought up to date.
    pub fn render(&self, service: &CacheService, in_flight: &InFlight) -> String {
        let stats = service.stats();
        for reason in Reason::ALL {
            catch_up(
                &self.evictions.with_label_values(&[reason.label()]),
                stats.evictions(reason),
            );
        }
        catch_up(&self.leader_passes, stats.leader_passes());
        catch_up(&self.leases_lost, stats.leases_lost());
        let (done, failed) = stats.compactions();
        catch_up(&self.compactions.with_label_values(&["done"]), done);
        catch_up(&self.compactions.with_label_values(&["failed"]), failed);
        catch_up(&self.compacted_bytes, stats.compacted_bytes());
        self.last_leader_pass
            .set(stats.last_leader_pass_at() as f64 / 1000.0);
        catch_up(
            &self.failures.with_label_values(&["database"]),
            DATABASE_FAILURES.load(Ordering::Relaxed),
        );
        catch_up(
            &self.failures.with_label_values(&["storage"]),
            STORAGE_FAILURES.load(Ordering::Relaxed),
        );
        let (uploads, downloads) = in_flight.counts();
        self.in_flight
            .with_label_values(&["upload"])
            .set(uploads as i64);
        self.in_flight
            .with_label_values(&["download"])
            .set(downloads as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(ns: &str, bytes: u64) -> NamespaceUsage {
        NamespaceUsage {
            namespace: ns.into(),
            entries: 1,
            bytes,
        }
    }

    #[test]
    fn namespaces_beyond_the_top_are_other() {
        let m = Metrics::new(&MetricsConfig {
            namespaces: Vec::new(),
            top: 2,
        });
        assert_eq!(m.namespace_label("a"), "a");
        assert_eq!(m.namespace_label("b"), "b");
        assert_eq!(m.namespace_label("c"), OTHER);
        // The largest two by bytes take the labels.
        m.set_usage(&[usage("a", 1), usage("b", 30), usage("c", 20)]);
        assert_eq!(m.namespace_label("a"), OTHER);
        assert_eq!(m.namespace_label("c"), "c");
        let text = {
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&m.registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains("hoard_cache_stored_bytes{namespace=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hoard_cache_stored_bytes{namespace=\"b\"} 30"),
            "{text}"
        );
    }

    #[test]
    fn an_allow_list_labels_only_its_namespaces() {
        let m = Metrics::new(&MetricsConfig {
            namespaces: vec!["x".into()],
            top: 20,
        });
        assert_eq!(m.namespace_label("x"), "x");
        assert_eq!(m.namespace_label("y"), OTHER);
    }
}
