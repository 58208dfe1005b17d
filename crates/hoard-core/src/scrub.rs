//! Re-reading stored entries to find bytes that changed or vanished after they
//! were acknowledged (a failing disk, an operator's mistake, a bucket policy):
//! `hoard verify` does it once, the background scrub slowly and for ever. A
//! bad entry is dropped the way a download that finds it drops it.

use crate::error::CoreError;
use crate::model::{EntryState, Part};
use crate::policy::Candidate;
use crate::reading::{self, Fault, Piece};
use crate::service::{drop_unusable, CacheService};
use crate::store::BlobError;
use futures::StreamExt;
use std::time::{Duration, Instant};

/// What checking one entry found.
#[derive(Debug)]
pub struct Checked {
    pub entry: Candidate,
    /// `None`: every part has its recorded length and hash.
    pub fault: Option<Fault>,
}

/// Committed entries read per page of a store-wide pass.
const PAGE: i64 = 500;

/// Paces reads to a rate in bytes per second; `None`: as fast as they come.
struct Pace {
    rate: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Pace {
    async fn add(&mut self, n: u64) {
        self.bytes += n;
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl CacheService {
    /// Takes or renews the lease `name` for `holder` for `lease_ms`: work
    /// that one replica at a time does (the scrub).
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<bool, CoreError> {
        let now = crate::now_millis();
        Ok(self
            .meta()
            .try_lease(name, holder, now, now + lease_ms)
            .await?)
    }

    /// Reads every part of an entry whole, checking lengths and hashes. A store
    /// that cannot be reached is an error (nothing is known about the entry);
    /// a missing or corrupt part is the entry's fault.
    async fn check_parts(
        &self,
        parts: Vec<Part>,
        pace: &mut Pace,
    ) -> Result<Option<Fault>, CoreError> {
        for p in parts {
            let piece = Piece {
                object: p.object,
                start: 0,
                end: p.size as u64,
                size: p.size as u64,
                sha256: p.sha256,
                crc64: p.crc64,
                thorough: true,
            };
            if piece.end == 0 {
                continue;
            }
            let mut stream = match reading::open(self.blobs(), piece).await {
                Ok(s) => s,
                Err(e) => return fault_or_error(e),
            };
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => pace.add(bytes.len() as u64).await,
                    Err(e) => return fault_or_error(e),
                }
            }
        }
        Ok(None)
    }

    /// Checks one committed entry; with `repair`, drops it when its bytes are
    /// bad.
    async fn check_entry(
        &self,
        entry: Candidate,
        repair: bool,
        pace: &mut Pace,
    ) -> Result<Option<Checked>, CoreError> {
        match self.meta().entry(entry.id).await? {
            Some(e) if e.state == EntryState::Committed => {}
            // Deleted or replaced since it was listed.
            _ => return Ok(None),
        }
        let parts = self.meta().parts(entry.id).await?;
        let fault = self.check_parts(parts, pace).await?;
        if let (Some(f), true) = (&fault, repair) {
            drop_unusable(self.meta().clone(), entry.id, f.clone()).await;
        }
        Ok(Some(Checked { entry, fault }))
    }

    /// A pass that checks every committed entry (of one namespace, or of all),
    /// one at a time; with `repair`, bad entries are dropped. `rate` bounds the
    /// bytes read per second.
    pub fn verify_entries(
        &self,
        namespace: Option<&str>,
        repair: bool,
        rate: Option<u64>,
    ) -> VerifyPass<'_> {
        VerifyPass {
            service: self,
            namespace: namespace.map(str::to_string),
            repair,
            pace: Pace {
                rate,
                started: Instant::now(),
                bytes: 0,
            },
            page: Vec::new(),
            after: None,
            done: false,
        }
    }
}

/// Entries checked one by one, read from the store a page at a time, so a
/// pass over a million entries never holds them all.
pub struct VerifyPass<'a> {
    service: &'a CacheService,
    namespace: Option<String>,
    repair: bool,
    pace: Pace,
    /// The rest of the current page, in reverse.
    page: Vec<Candidate>,
    after: Option<(i64, i64)>,
    done: bool,
}

impl VerifyPass<'_> {
    /// Checks the next entry; `None` at the end of the pass.
    pub async fn next(&mut self) -> Result<Option<Checked>, CoreError> {
        loop {
            if let Some(c) = self.page.pop() {
                if let Some(done) = self
                    .service
                    .check_entry(c, self.repair, &mut self.pace)
                    .await?
                {
                    return Ok(Some(done));
                }
                continue;
            }
            if self.done {
                return Ok(None);
            }
            let meta = self.service.meta();
            let mut page = match &self.namespace {
                Some(ns) => {
                    self.done = true;
                    meta.eviction_candidates(ns).await?
                }
                None => {
                    let page = meta.least_recently_used(self.after, PAGE).await?;
                    self.done = (page.len() as i64) < PAGE;
                    if let Some(last) = page.last() {
                        self.after = Some((last.last_accessed_at, last.id));
                    }
                    page
                }
            };
            page.reverse();
            self.page = page;
        }
    }
}

fn fault_or_error(e: std::io::Error) -> Result<Option<Fault>, CoreError> {
    match Fault::of(&e) {
        Some(f) => Ok(Some(f.clone())),
        None => Err(CoreError::Blob(BlobError::Backend(e.to_string()))),
    }
}
