//! Per-namespace upload rate: a token bucket per namespace (governor's GCRA),
//! held by each replica. GitHub allows 200 uploads a minute per repository;
//! hoard's limit is off unless configured. With several replicas each applies
//! the rate on its own (a fleet behind one load balancer sees up to replicas x
//! rate).

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

/// Namespaces remembered before idle (full) ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

pub struct UploadRate<C: Clock = DefaultClock> {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl UploadRate {
    /// A namespace may start `per_minute` uploads in a burst, then one every
    /// 60 / `per_minute` seconds.
    pub fn new(per_minute: u32) -> UploadRate {
        UploadRate::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> UploadRate<C> {
    pub fn with_clock(per_minute: u32, clock: C) -> UploadRate<C> {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        UploadRate {
            limiter: RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock.clone()),
            clock,
        }
    }

    /// Takes one upload from the namespace's allowance, or answers the whole
    /// seconds until one is free (at least 1).
    pub fn take(&self, namespace: &str) -> Result<(), u64> {
        if self.limiter.len() > PRUNE_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&namespace.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs_f64().ceil().max(1.0) as u64
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_namespace() {
        let clock = FakeRelativeClock::default();
        let r = UploadRate::with_clock(3, clock.clone());
        for _ in 0..3 {
            assert_eq!(r.take("a"), Ok(()));
        }
        // One upload comes back every 20 s.
        assert_eq!(r.take("a"), Err(20));
        assert_eq!(r.take("b"), Ok(()));
        clock.advance(Duration::from_secs(15));
        assert_eq!(r.take("a"), Err(5));
        clock.advance(Duration::from_secs(5));
        assert_eq!(r.take("a"), Ok(()));
        assert_eq!(r.take("a"), Err(20));
        // Idle for long: back to a full burst, not more.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(r.take("a"), Ok(()));
        }
        assert!(r.take("a").is_err());
    }
}
