//! The server's background work, each piece its own task on its own interval
//! so a long one (an eviction pass over a million entries) never delays
//! another (the access flush): started together by [`Tasks::start`], stopped
//! together by [`Tasks::stop`], each finishing the round it is in if it can
//! within the grace period.

use crate::service::CacheService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When each task runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Buffered last-access times are written this often.
    pub flush_every: Duration,
    /// Abandoned uploads, and deleted entries' objects past their grace.
    pub reclaim_every: Duration,
    /// Storage is listed for objects no entry owns.
    pub sweep_every: Duration,
    /// Only objects older than this are orphans.
    pub orphan_grace_secs: i64,
    /// Evictor passes; `None`: no evictor (`hoard gc` only), not even on
    /// pressure.
    pub evict_every: Option<Duration>,
    /// The scrub's rate in bytes per second and pause between passes;
    /// `None`: off.
    pub scrub: Option<(u64, Duration)>,
}

impl Schedule {
    /// How long the evictor lease lasts: a few missed ticks, at least 5 s.
    fn lease_ms(&self) -> i64 {
        let secs = self.evict_every.map_or(0, |d| d.as_secs() as i64);
        (secs * 3000).max(5000)
    }
}

/// The running tasks.
pub struct Tasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

/// Runs `work` every `period` until told to stop; a round in progress ends
/// first.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => work().await,
                _ = stop.changed() => break,
            }
        }
    })
}

impl Tasks {
    pub fn start(service: Arc<CacheService>, schedule: Schedule) -> Tasks {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::new();

        let svc = service.clone();
        handles.push(every(schedule.flush_every, stopped.clone(), move || {
            let svc = svc.clone();
            async move {
                if let Err(e) = svc.flush_accesses().await {
                    tracing::warn!(error = %e, "could not record last-access times");
                }
            }
        }));

        let svc = service.clone();
        handles.push(every(schedule.reclaim_every, stopped.clone(), move || {
            let svc = svc.clone();
            async move {
                if let Err(e) = svc.reclaim_stale_uploads().await {
                    tracing::warn!(error = %e, "could not reclaim abandoned uploads");
                }
                if let Err(e) = svc.delete_doomed_objects().await {
                    tracing::warn!(error = %e, "could not delete the objects of deleted entries");
                }
            }
        }));

        let svc = service.clone();
        let grace = schedule.orphan_grace_secs;
        handles.push(every(schedule.sweep_every, stopped.clone(), move || {
            let svc = svc.clone();
            async move {
                match svc.sweep_orphans(grace, false).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(objects = n, "deleted orphaned objects"),
                    Err(e) => tracing::warn!(error = %e, "could not sweep orphaned objects"),
                }
            }
        }));

        if let Some(period) = schedule.evict_every {
            handles.push(tokio::spawn(evictor(
                service.clone(),
                period,
                schedule.lease_ms(),
                stopped.clone(),
            )));
        }
        if service.config().compact {
            handles.push(tokio::spawn(compactor(service.clone(), stopped.clone())));
        }
        if let Some((rate, pause)) = schedule.scrub {
            handles.push(tokio::spawn(scrubber(service, rate, pause, stopped)));
        }
        Tasks { stop, handles }
    }

    /// Tells every task to stop and waits up to `grace` for the rounds in
    /// progress; what is still running then is aborted (an eviction pass
    /// removes batch by batch, so an aborted one loses nothing).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for mut h in self.handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
            }
        }
    }
}

/// The evictor: every replica ticks, the lease holder works; it renews the
/// lease each tick, and the lease outlasts a few missed ticks. Saves that put
/// a namespace over its budget get a pass of their own at once.
async fn evictor(
    service: Arc<CacheService>,
    period: Duration,
    lease_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let holder = uuid::Uuid::new_v4().to_string();
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => match service.evict_if_leader(&holder, lease_ms).await {
                Ok(Some(done)) if done.entries > 0 => {
                    tracing::info!(removed = done.entries, bytes = done.bytes, "eviction pass");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "eviction pass failed"),
            },
            _ = service.pressure() => match service.relieve_pressure(&holder, lease_ms).await {
                Ok(done) if done.entries > 0 => {
                    tracing::info!(removed = done.entries, bytes = done.bytes, "eviction on pressure");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "eviction on pressure failed"),
            },
            _ = stop.changed() => break,
        }
    }
}

/// Compaction of this replica's committed entries, as saves queue them; at
/// start-up, of those left from before (by one replica, under a lease).
async fn compactor(service: Arc<CacheService>, mut stop: watch::Receiver<bool>) {
    const LEASE_MS: i64 = 60 * 60 * 1000;
    let holder = uuid::Uuid::new_v4().to_string();
    if service
        .take_lease("compaction-catch-up", &holder, LEASE_MS)
        .await
        .unwrap_or(false)
    {
        match service.queue_uncompacted().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                entries = n,
                "entries of several objects queued for compaction"
            ),
            Err(e) => tracing::warn!(error = %e, "could not list entries left to compact"),
        }
    }
    loop {
        tokio::select! {
            _ = service.compaction_wanted() => {
                let n = service.compact_queued().await;
                tracing::debug!(entries = n, "compaction round");
            }
            _ = stop.changed() => break,
        }
    }
}

/// The scrub: one replica at a time (a lease) re-reads every entry at `rate`
/// bytes per second, dropping those whose bytes are missing or corrupt, then
/// pauses.
async fn scrubber(
    service: Arc<CacheService>,
    rate: u64,
    pause: Duration,
    mut stop: watch::Receiver<bool>,
) {
    const LEASE_MS: i64 = 10 * 60 * 1000;
    let holder = uuid::Uuid::new_v4().to_string();
    loop {
        let leased = || async {
            service
                .take_lease("scrub", &holder, LEASE_MS)
                .await
                .unwrap_or(false)
        };
        if leased().await {
            let mut pass = service.verify_entries(None, true, Some(rate));
            let (mut checked, mut bad) = (0usize, 0usize);
            loop {
                let next = tokio::select! {
                    next = pass.next() => next,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(Some(c)) => {
                        checked += 1;
                        bad += usize::from(c.fault.is_some());
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "scrub pass stopped");
                        break;
                    }
                }
                if !leased().await {
                    break;
                }
            }
            tracing::info!(checked, dropped = bad, "scrub pass");
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}
