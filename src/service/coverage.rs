//! The in-stream digest check's deadline: a log file ingested from an S3
//! notification that no checked CloudTrail digest lists within
//! `[source_s3] digest_deadline_s` is reported (an error log and
//! `trailship_log_files_uncovered_total`).
//!
//! What awaits a digest lives in the archive, not in a worker: each batch
//! that ingests log files writes a marker naming them,
//! `_trailship/awaiting/<bucket>/<topic>/<partition>/<first>-<n>.json`, with
//! the batch. Once a time bucket is past the deadline, the worker that
//! claims it (creates `_trailship/coverage-claims/<bucket>/<attempt>.json`)
//! checks its markers against the coverage markers the digest check writes,
//! then marks it checked (`_trailship/coverage-checked/<bucket>.json`). A
//! claim unfinished after [`LEASE_S`] (its worker stopped or died) is taken
//! over by the next attempt. So a restart or a rebalance forgets nothing.
//! Each file is reported once (`_trailship/coverage-reported/`), though a
//! replayed batch lists it again in a later bucket, or a slow check's bucket
//! is taken over.
//!
//! The check runs on a thread of its own: a bucket of a large organisation
//! trail is thousands of reads, which must not hold the consumer, and a
//! store that fails them is retried here without pausing ingestion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use serde::{Deserialize, Serialize};

use super::notify::covered_key;
use crate::sink::objects::{ObjectStore, Put, StoreError};

const AWAITING: &str = "_trailship/awaiting/";
/// Attempts at a bucket's check, each created once, by the worker making it.
const CLAIMS: &str = "_trailship/coverage-claims/";
/// A bucket whose check is done (in archives older than claims: claimed).
const CHECKED: &str = "_trailship/coverage-checked/";
/// Log files reported as covered by no digest.
const REPORTED: &str = "_trailship/coverage-reported/";
/// How long a claimed check may take before another worker takes it over.
/// A check is a few reads per log file; one still going past this is
/// repeated, and reports nothing twice.
pub(super) const LEASE_S: i64 = 600;
/// How far back a starting worker looks for buckets not yet checked.
const LOOKBACK_S: i64 = 7 * 24 * 3600;

/// The log files a batch ingested, as its marker lists them (`bucket/key`).
#[derive(Serialize, Deserialize)]
struct Awaiting {
    logs: Vec<String>,
}

/// An attempt at a bucket's check: when it was claimed.
#[derive(Serialize, Deserialize)]
struct Claimed {
    at_s: i64,
}

/// Where a due bucket's check stands, for one worker.
enum Check {
    Done,
    /// Another worker's claim, within its lease.
    Held,
    Ours,
}

/// Buckets a sixth of the deadline wide (ten minutes at most): a file is
/// reported at most that much after its deadline, and a check lists few
/// buckets.
fn bucket_s(deadline_s: u64) -> i64 {
    (deadline_s as i64 / 6).clamp(1, 600)
}

/// The marker of the log files (`bucket/key`) a batch of `tp` from `first`
/// ingested, in the bucket of the time it is cut.
pub(super) fn awaiting_marker(deadline_s: u64, tp: &(String, i32), first: i64, logs: &[&str]) -> (String, Vec<u8>) {
    let g = bucket_s(deadline_s);
    let bucket = crate::sink::now_ms().div_euclid(1000).div_euclid(g) * g;
    let key = format!("{AWAITING}{bucket:012}/{}/{}/{first:020}-{}.json", tp.0, tp.1, logs.len());
    let body = Awaiting { logs: logs.iter().map(|l| (*l).to_owned()).collect() };
    (key, serde_json::to_vec(&body).expect("serialises"))
}

/// How many log files a marker lists, from its key.
fn logs_in(marker: &str) -> Option<u64> {
    marker.strip_suffix(".json")?.rsplit_once('-')?.1.parse().ok()
}

/// The checking thread.
pub(super) struct Coverage {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Coverage {
    pub fn start(store: Arc<dyn ObjectStore>, deadline_s: u64, max_backoff: Duration) -> Coverage {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("coverage".into())
            .spawn(move || {
                Checker { store: &*store, deadline_s, max_backoff, lease_s: LEASE_S, stop: &stopped, from: None }.run()
            })
            .expect("spawn the coverage thread");
        Coverage { thread: Some(thread), stop }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Coverage {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Checker<'a> {
    store: &'a dyn ObjectStore,
    deadline_s: u64,
    max_backoff: Duration,
    lease_s: i64,
    stop: &'a AtomicBool,
    /// The oldest bucket not yet seen checked.
    from: Option<i64>,
}

impl Checker<'_> {
    fn run(mut self) {
        let every = Duration::from_secs(bucket_s(self.deadline_s) as u64);
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next = Instant::now() + every;
                // Stopping mid-check leaves a claimed bucket to another
                // worker, once the claim's lease is over.
                let _ = self.check();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Calls `op` until it succeeds; None once stopping.
    fn retry<T>(&self, what: &'static str, op: impl FnMut() -> Result<T, StoreError>) -> Option<T> {
        super::retry_with(self.max_backoff, what, op, |wait| {
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            true
        })
    }

    /// Checks every bucket past its deadline that no worker has checked or
    /// is checking; the log files it reported.
    fn check(&mut self) -> Option<Vec<String>> {
        let deadline = self.deadline_s as i64;
        let g = bucket_s(self.deadline_s);
        let now = crate::sink::now_ms().div_euclid(1000);
        let from = *self.from.get_or_insert((now - deadline - LOOKBACK_S).div_euclid(g) * g);
        let after = format!("{AWAITING}{from:012}");
        let keys = self.retry("list awaiting log files", || self.store.list(AWAITING, Some(&after)))?;
        let mut buckets: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for key in keys {
            if let Some(b) = key.strip_prefix(AWAITING).and_then(|k| k.get(..12)).and_then(|b| b.parse().ok()) {
                buckets.entry(b).or_default().push(key);
            }
        }
        let mut next = buckets.last_key_value().map_or(from, |(b, _)| b + g);
        let (mut awaiting, mut reported) = (0, Vec::new());
        for (bucket, markers) in buckets {
            let waiting = markers.iter().filter_map(|m| logs_in(m)).sum::<u64>();
            if bucket + g + deadline > now {
                // Not due, nor any later one.
                next = next.min(bucket);
                awaiting += waiting;
                continue;
            }
            match self.claim(bucket, now)? {
                Check::Done => {}
                // To be looked at again: it is not done until it is marked so.
                Check::Held => {
                    next = next.min(bucket);
                    awaiting += waiting;
                }
                Check::Ours => {
                    for m in &markers {
                        reported.extend(self.check_marker(m)?);
                    }
                    let done = format!("{CHECKED}{bucket:012}.json");
                    self.retry("mark coverage checked", || self.store.put_bytes(&done, b"{}"))?;
                }
            }
        }
        self.from = Some(next);
        gauge!("trailship_log_files_awaiting_digest").set(awaiting as f64);
        Some(reported)
    }

    /// Whether `bucket`'s check is done, another worker's, or, claimed
    /// now, this one's.
    fn claim(&self, bucket: i64, now: i64) -> Option<Check> {
        let done = format!("{CHECKED}{bucket:012}.json");
        if self.retry("read coverage check", || self.store.get(&done))?.is_some() {
            return Some(Check::Done);
        }
        let prefix = format!("{CLAIMS}{bucket:012}/");
        let claims = self.retry("list coverage claims", || self.store.list(&prefix, None))?;
        let attempt = |k: &String| k.strip_prefix(&prefix)?.strip_suffix(".json")?.parse::<u32>().ok();
        let next = match claims.iter().filter_map(attempt).max() {
            None => 0,
            Some(last) => {
                let key = format!("{prefix}{last:04}.json");
                let body = self.retry("read coverage claim", || self.store.get(&key))?;
                // A claim that cannot be read is taken to be as old as can be.
                let at = body.and_then(|b| serde_json::from_slice::<Claimed>(&b).ok()).map_or(i64::MIN, |c| c.at_s);
                if now.saturating_sub(at) < self.lease_s {
                    return Some(Check::Held);
                }
                tracing::warn!(bucket, attempt = last, "a coverage check was claimed and not finished; taking it over");
                last + 1
            }
        };
        let key = format!("{prefix}{next:04}.json");
        let body = serde_json::to_vec(&Claimed { at_s: now }).expect("serialises");
        Some(match self.retry("claim coverage check", || self.store.put_bytes(&key, &body))? {
            Put::Created => Check::Ours,
            Put::Exists => Check::Held,
        })
    }

    /// Reports each log file `marker` lists that no coverage marker covers.
    fn check_marker(&self, marker: &str) -> Option<Vec<String>> {
        let body = self.retry("read awaiting log files", || self.store.get(marker))?;
        let logs = body.and_then(|b| serde_json::from_slice::<Awaiting>(&b).ok()).map(|a| a.logs).unwrap_or_default();
        let mut reported = Vec::new();
        for name in logs {
            let Some((bucket, key)) = name.split_once('/') else { continue };
            let covered = covered_key(bucket, key);
            if self.retry("read coverage marker", || self.store.get(&covered))?.is_some() {
                continue;
            }
            // Reported before it is marked: a worker that dies between the
            // two makes one report twice rather than none.
            let mark = format!("{REPORTED}{name}.json");
            if self.retry("read coverage report", || self.store.get(&mark))?.is_some() {
                continue;
            }
            counter!("trailship_log_files_uncovered_total").increment(1);
            tracing::error!(log = %name, after_s = self.deadline_s, "log file not covered by any CloudTrail digest");
            self.retry("mark log file reported", || self.store.put_bytes(&mark, b"{}"))?;
            reported.push(name);
        }
        Some(reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::objects::LocalObjects;

    #[test]
    fn markers_sort_by_bucket_and_name_their_count() {
        assert_eq!(bucket_s(3 * 3600), 600);
        assert_eq!(bucket_s(0), 1);
        let (key, body) = awaiting_marker(3 * 3600, &("ct".into(), 3), 42, &["trail/a.json.gz", "trail/b.json.gz"]);
        let rest = key.strip_prefix(AWAITING).unwrap();
        let bucket: i64 = rest[..12].parse().unwrap();
        assert_eq!(bucket % 600, 0);
        assert!((crate::sink::now_ms() / 1000 - bucket) < 600);
        assert_eq!(&rest[12..], "/ct/3/00000000000000000042-2.json");
        assert_eq!(logs_in(&key), Some(2));
        let back: Awaiting = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.logs, ["trail/a.json.gz", "trail/b.json.gz"]);
    }

    /// An archive of awaiting markers, and checkers over it.
    struct Fixture {
        dir: std::path::PathBuf,
        store: LocalObjects,
        now: i64,
        stop: AtomicBool,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("trailship-coverage-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store = LocalObjects::open(&dir).unwrap();
            Fixture { dir, store, now: crate::sink::now_ms() / 1000, stop: AtomicBool::new(false) }
        }

        /// Deadline 60 s, so buckets of 10 s.
        fn checker(&self) -> Checker<'_> {
            let max_backoff = Duration::from_secs(1);
            Checker { store: &self.store, deadline_s: 60, max_backoff, lease_s: LEASE_S, stop: &self.stop, from: None }
        }

        /// A bucket `ago` seconds old.
        fn bucket(&self, ago: i64) -> i64 {
            (self.now - ago).div_euclid(10) * 10
        }

        fn put(&self, bucket: i64, first: i64, logs: &[&str]) {
            let body = serde_json::to_vec(&Awaiting { logs: logs.iter().map(|l| l.to_string()).collect() }).unwrap();
            let key = format!("{AWAITING}{bucket:012}/ct/0/{first:020}-{}.json", logs.len());
            self.store.put_bytes(&key, &body).unwrap();
        }

        fn has(&self, key: &str) -> bool {
            self.store.get(key).unwrap().is_some()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Two workers over one archive: a due bucket is checked by one of them,
    /// and a bucket not yet due by neither.
    #[test]
    fn each_due_bucket_is_checked_once() {
        let f = Fixture::new("once");
        let (due, young) = (f.bucket(100), f.bucket(0));
        f.put(due, 0, &["trail/covered.json.gz", "trail/orphan.json.gz"]);
        f.put(young, 5, &["trail/late.json.gz"]);
        f.store.put_bytes(&covered_key("trail", "covered.json.gz"), b"{}").unwrap();
        let (mut a, mut b) = (f.checker(), f.checker());
        assert_eq!(a.check().unwrap(), ["trail/orphan.json.gz"]);
        assert_eq!(b.check().unwrap(), Vec::<String>::new(), "checked by the other");
        assert!(f.has(&format!("{CLAIMS}{due:012}/0000.json")), "claimed once");
        assert!(!f.has(&format!("{CLAIMS}{due:012}/0001.json")));
        assert!(f.has(&format!("{CHECKED}{due:012}.json")), "the due bucket is checked");
        assert!(!f.has(&format!("{CHECKED}{young:012}.json")), "the young one is not");
        // Both look at the young bucket again next time, and nothing older.
        assert_eq!((a.from, b.from), (Some(young), Some(young)));
    }

    /// A worker that claimed a bucket and stopped before it was done: others
    /// wait out its lease, then one takes the check over.
    #[test]
    fn a_check_left_unfinished_is_taken_over_once_its_lease_is_over() {
        let f = Fixture::new("lease");
        let due = f.bucket(100);
        f.put(due, 0, &["trail/orphan.json.gz"]);
        let claim = |attempt: u32, at_s: i64| {
            let body = serde_json::to_vec(&Claimed { at_s }).unwrap();
            f.store.put_bytes(&format!("{CLAIMS}{due:012}/{attempt:04}.json"), &body).unwrap();
        };
        claim(0, f.now - 5);
        let mut b = f.checker();
        assert_eq!(b.check().unwrap(), Vec::<String>::new(), "within the lease: another's");
        assert_eq!(b.from, Some(due), "looked at again");
        assert!(!f.has(&format!("{CHECKED}{due:012}.json")));
        // The claimer stopped long ago, and so did the one that took over from it.
        claim(1, f.now - LEASE_S - 5);
        assert_eq!(b.check().unwrap(), ["trail/orphan.json.gz"]);
        assert!(f.has(&format!("{CLAIMS}{due:012}/0002.json")));
        assert!(f.has(&format!("{CHECKED}{due:012}.json")));
        assert_eq!(b.from, Some(due + 10));
    }

    /// A log file two markers list (a batch replayed after a crash writes
    /// its marker again, in the bucket of the time it is cut) is reported
    /// once; so is one whose bucket's check is taken over after the report.
    #[test]
    fn a_log_file_is_reported_once() {
        let f = Fixture::new("reported");
        let (first, replayed) = (f.bucket(200), f.bucket(100));
        f.put(first, 0, &["trail/orphan.json.gz"]);
        f.put(replayed, 0, &["trail/orphan.json.gz", "trail/other.json.gz"]);
        assert_eq!(f.checker().check().unwrap(), ["trail/orphan.json.gz", "trail/other.json.gz"]);
        assert!(f.has(&format!("{REPORTED}trail/orphan.json.gz.json")));
        std::fs::remove_file(f.dir.join(format!("{CHECKED}{replayed:012}.json"))).unwrap();
        let body = serde_json::to_vec(&Claimed { at_s: f.now - LEASE_S - 5 }).unwrap();
        std::fs::write(f.dir.join(format!("{CLAIMS}{replayed:012}/0000.json")), body).unwrap();
        assert_eq!(f.checker().check().unwrap(), Vec::<String>::new(), "taken over: nothing twice");
        assert!(f.has(&format!("{CHECKED}{replayed:012}.json")));
    }
}
