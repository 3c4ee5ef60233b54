//! The in-stream digest check's deadline: a log file ingested from an S3
//! notification that no checked CloudTrail digest lists within
//! `[source_s3] digest_deadline_s` is reported (an error log and
//! `trailship_log_files_uncovered_total`).
//!
//! What awaits a digest lives in the archive, not in a worker: each batch
//! that ingests log files writes a marker naming them,
//! `_trailship/awaiting/<bucket>/<topic>/<partition>/<first>-<n>.json`, with
//! the batch. Once a time bucket is past the deadline, the first worker to
//! create `_trailship/coverage-checked/<bucket>.json` checks its markers
//! against the coverage markers the digest check writes. So a restart or a
//! rebalance forgets nothing, and each file is reported once, by one worker.
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
/// A bucket's check, claimed (created once) by the worker that makes it.
const CHECKED: &str = "_trailship/coverage-checked/";
/// How far back a starting worker looks for buckets not yet checked.
const LOOKBACK_S: i64 = 7 * 24 * 3600;

/// The log files a batch ingested, as its marker lists them (`bucket/key`).
#[derive(Serialize, Deserialize)]
struct Awaiting {
    logs: Vec<String>,
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
            .spawn(move || Checker { store: &*store, deadline_s, max_backoff, stop: &stopped, from: None }.run())
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
                // Stopping mid-check leaves the rest of a claimed bucket unchecked.
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

    /// Checks every bucket past its deadline that no worker has claimed;
    /// the log files it reported.
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
            if bucket + g + deadline > now {
                // Not due, nor any later one.
                next = next.min(bucket);
                awaiting += markers.iter().filter_map(|m| logs_in(m)).sum::<u64>();
                continue;
            }
            let claim = format!("{CHECKED}{bucket:012}.json");
            if self.retry("claim coverage check", || self.store.put_bytes(&claim, b"{}"))? == Put::Created {
                for m in &markers {
                    reported.extend(self.check_marker(m)?);
                }
            }
        }
        self.from = Some(next);
        gauge!("trailship_log_files_awaiting_digest").set(awaiting as f64);
        Some(reported)
    }

    /// Reports each log file `marker` lists that no coverage marker covers.
    fn check_marker(&self, marker: &str) -> Option<Vec<String>> {
        let body = self.retry("read awaiting log files", || self.store.get(marker))?;
        let logs = body.and_then(|b| serde_json::from_slice::<Awaiting>(&b).ok()).map(|a| a.logs).unwrap_or_default();
        let mut reported = Vec::new();
        for name in logs {
            let Some((bucket, key)) = name.split_once('/') else { continue };
            let covered = covered_key(bucket, key);
            if self.retry("read coverage marker", || self.store.get(&covered))?.is_none() {
                counter!("trailship_log_files_uncovered_total").increment(1);
                tracing::error!(log = %name, after_s = self.deadline_s, "log file not covered by any CloudTrail digest");
                reported.push(name);
            }
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

    /// Two workers over one archive: a due bucket is checked by one of them,
    /// and a bucket not yet due by neither.
    #[test]
    fn each_due_bucket_is_checked_once() {
        let dir = std::env::temp_dir().join(format!("trailship-coverage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LocalObjects::open(&dir).unwrap();
        let now = crate::sink::now_ms() / 1000;
        let put = |bucket: i64, first: i64, logs: &[&str]| {
            let body = serde_json::to_vec(&Awaiting { logs: logs.iter().map(|l| l.to_string()).collect() }).unwrap();
            let key = format!("{AWAITING}{bucket:012}/ct/0/{first:020}-{}.json", logs.len());
            store.put_bytes(&key, &body).unwrap();
        };
        // Deadline 60 s, buckets of 10 s: one due, one not.
        let (due, young) = ((now - 100).div_euclid(10) * 10, now.div_euclid(10) * 10);
        put(due, 0, &["trail/covered.json.gz", "trail/orphan.json.gz"]);
        put(young, 5, &["trail/late.json.gz"]);
        store.put_bytes(&covered_key("trail", "covered.json.gz"), b"{}").unwrap();
        let stop = AtomicBool::new(false);
        let checker =
            || Checker { store: &store, deadline_s: 60, max_backoff: Duration::from_secs(1), stop: &stop, from: None };
        let (mut a, mut b) = (checker(), checker());
        assert_eq!(a.check().unwrap(), ["trail/orphan.json.gz"]);
        assert_eq!(b.check().unwrap(), Vec::<String>::new(), "claimed by the other");
        assert!(store.get(&format!("{CHECKED}{due:012}.json")).unwrap().is_some(), "the due bucket is claimed");
        assert!(store.get(&format!("{CHECKED}{young:012}.json")).unwrap().is_none(), "the young one is not");
        // Both look at the young bucket again next time, and nothing older.
        assert_eq!((a.from, b.from), (Some(young), Some(young)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
