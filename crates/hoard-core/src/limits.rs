//! Per-namespace upload rate: a token bucket per namespace, held by each replica.
//! GitHub allows 200 uploads a minute per repository; hoard's limit is off unless
//! configured. With several replicas each applies the rate on its own (a fleet
//! behind one load balancer sees up to replicas x rate).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before full (idle) ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

pub struct UploadRate {
    per_minute: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl UploadRate {
    /// A namespace may start `per_minute` uploads in a burst, then one every
    /// 60 / `per_minute` seconds.
    pub fn new(per_minute: u32) -> UploadRate {
        UploadRate {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn per_second(&self) -> f64 {
        self.per_minute / 60.0
    }

    /// Takes one upload from the namespace's allowance at `now`, or answers the
    /// whole seconds until one is free (at least 1).
    pub fn take(&self, namespace: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (cap, rate) = (self.per_minute, self.per_second());
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < cap
            });
        }
        let bucket = buckets.entry(namespace.to_string()).or_insert(Bucket {
            tokens: self.per_minute,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second()).min(self.per_minute);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second();
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_namespace() {
        let r = UploadRate::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.take("a", t0), Ok(()));
        }
        // One upload comes back every 20 s.
        assert_eq!(r.take("a", t0), Err(20));
        assert_eq!(r.take("b", t0), Ok(()));
        assert_eq!(r.take("a", t0 + Duration::from_secs(15)), Err(5));
        assert_eq!(r.take("a", t0 + Duration::from_secs(20)), Ok(()));
        assert_eq!(r.take("a", t0 + Duration::from_secs(20)), Err(20));
        // Idle for long: back to a full burst, not more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(r.take("a", later), Ok(()));
        }
        assert!(r.take("a", later).is_err());
    }
}
