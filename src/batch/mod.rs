//! Batching: rows grouped by dataset partition, built column by column.
//!
//! One [`ColumnBatch`] per partition (class, region, account, day), so every
//! Parquet object holds one class and one partition, as Security Lake's
//! layout requires.

pub mod columns;

use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::ocsf::{Class, dataset_columns};
use crate::redact::Redactor;
use columns::ColumnBatch;

/// Where a row goes in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub class: Class,
    pub region: String,
    pub account: String,
    /// `YYYYMMDD`, UTC.
    pub day: u32,
}

impl PartitionKey {
    /// Hive-style relative directory:
    /// `<dataset>/region=<r>/accountId=<a>/eventDay=<YYYYMMDD>`.
    pub fn dir(&self) -> String {
        format!("{}/region={}/accountId={}/eventDay={:08}", self.class.dataset(), self.region, self.account, self.day)
    }
}

/// Partition values come from the input: anything outside a safe alphabet is
/// replaced so a record can never steer a path (`../`, `/`, `=`).
pub fn partition_value(v: Option<&str>) -> &str {
    match v {
        Some(s)
            if !s.is_empty()
                && s.len() <= 64
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') =>
        {
            s
        }
        // Absent values are common (Kubernetes has no region); unsafe ones are not.
        None => "unknown",
        Some("") => "unknown",
        Some(_) => "invalid",
    }
}

/// One partition's rows.
struct Part {
    key: PartitionKey,
    batch: ColumnBatch,
    /// The round in which it was last written.
    round: u64,
}

#[derive(Default)]
pub struct Batcher {
    parts: Vec<Part>,
    last: usize,
    /// Rounds end at [`Batcher::take_evictable`]: the memory checks.
    round: u64,
    redactor: Option<Arc<Redactor>>,
    scan_tokens: bool,
}

impl Batcher {
    /// A batcher whose batches redact every string through `redactor`.
    pub fn new(redactor: Option<Arc<Redactor>>) -> Self {
        Batcher { parts: Vec::new(), last: 0, round: 0, redactor, scan_tokens: true }
    }

    /// Whether the next row's strings may hold tokens ([`Redactor::candidate`]
    /// on the record's raw text).
    pub fn set_scan_tokens(&mut self, on: bool) {
        self.scan_tokens = on;
    }

    /// The batch for a partition, created on first use.
    pub fn get(&mut self, class: Class, region: &str, account: &str, day: u32) -> &mut ColumnBatch {
        let matches = |k: &PartitionKey| k.class == class && k.day == day && k.region == region && k.account == account;
        // Consecutive records mostly share a partition (one log file = one account and region).
        if !(self.last < self.parts.len() && matches(&self.parts[self.last].key)) {
            self.last = match self.parts.iter().position(|p| matches(&p.key)) {
                Some(i) => i,
                None => {
                    let key = PartitionKey { class, region: region.into(), account: account.into(), day };
                    let batch = ColumnBatch::new(dataset_columns(class)).with_redactor(self.redactor.clone());
                    self.parts.push(Part { key, batch, round: 0 });
                    self.parts.len() - 1
                }
            };
        }
        let part = &mut self.parts[self.last];
        part.round = self.round;
        part.batch.set_scan_tokens(self.scan_tokens);
        &mut part.batch
    }

    pub fn buffered_rows(&self) -> usize {
        self.parts.iter().map(|p| p.batch.rows()).sum()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.batch.buffered_bytes()).sum()
    }

    /// Batches with at least `min_rows` rows or `min_bytes` bytes, finished.
    pub fn take_full(&mut self, min_rows: usize, min_bytes: usize) -> Vec<(PartitionKey, RecordBatch)> {
        self.parts
            .iter_mut()
            .filter(|p| p.batch.rows() > 0 && (p.batch.rows() >= min_rows || p.batch.buffered_bytes() >= min_bytes))
            .map(|p| (p.key.clone(), p.batch.finish()))
            .collect()
    }

    /// A batch to write early, finished, to bound memory across many
    /// partitions: the largest of those not written since the last call
    /// that hold at least `min_idle_bytes`, else the largest of all.
    ///
    /// Inputs mostly come grouped by partition (a backfill walks
    /// `AWSLogs/<account>/CloudTrail/<region>/<day>/` in order; a Kafka
    /// partition carries a few producers), so a partition that has gone a
    /// round without rows is most likely complete, and the largest is most
    /// likely the one being filled. Writing that one cut each partition
    /// into a row group per eviction: twice the row groups at half the
    /// buffer (two threads' share), each costing ~140 column writers and a
    /// zstd context pair per compressed chunk (benches/README.md, session
    /// 14). The floor keeps a crowd of small idle partitions from being
    /// written as tiny row groups while a large one is what holds memory.
    pub fn take_evictable(&mut self, min_idle_bytes: usize) -> Option<(PartitionKey, RecordBatch)> {
        let round = self.round;
        let live = |p: &&mut Part| p.batch.rows() > 0;
        let idle = self
            .parts
            .iter_mut()
            .filter(live)
            .filter(|p| p.round < round && p.batch.buffered_bytes() >= min_idle_bytes)
            .max_by_key(|p| p.batch.buffered_bytes());
        let p = match idle {
            Some(p) => p,
            None => self.parts.iter_mut().filter(live).max_by_key(|p| p.batch.buffered_bytes())?,
        };
        Some((p.key.clone(), p.batch.finish()))
    }

    /// Ends a round: partitions written after this are not idle.
    pub fn next_round(&mut self) {
        self.round += 1;
    }

    /// Every non-empty batch, finished; partitions are forgotten.
    pub fn take_all(&mut self) -> Vec<(PartitionKey, RecordBatch)> {
        let out = self.take_full(1, 0);
        self.parts.clear();
        self.last = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds `n` rows to a partition of `region`, each with a kilobyte-long uid.
    fn fill(b: &mut Batcher, region: &str, n: usize) {
        let text = "x".repeat(1024);
        for _ in 0..n {
            let batch = b.get(Class::ApiActivity, region, "111122223333", 20240316);
            for name in ["class_uid", "category_uid", "activity_id", "severity_id"] {
                batch.i32(batch.slot(name), 1);
            }
            for name in ["type_uid", "time"] {
                batch.i64(batch.slot(name), 1);
            }
            for name in ["metadata.version", "metadata.product.name"] {
                batch.str(batch.slot(name), "1");
            }
            batch.str(batch.slot("metadata.uid"), &text);
            batch.end_row();
        }
    }

    fn take(b: &mut Batcher, min_idle_bytes: usize) -> (String, usize) {
        let (key, batch) = b.take_evictable(min_idle_bytes).unwrap();
        (key.region, batch.num_rows())
    }

    #[test]
    fn an_idle_partition_is_written_before_the_one_being_filled() {
        let mut b = Batcher::new(None);
        fill(&mut b, "done", 10);
        b.next_round();
        fill(&mut b, "filling", 20);
        // "filling" is larger, but it is the one still receiving rows.
        assert_eq!(take(&mut b, 0), ("done".into(), 10));
        // Nothing idle left with rows: the largest goes.
        assert_eq!(take(&mut b, 0), ("filling".into(), 20));
        assert!(b.take_evictable(0).is_none(), "nothing left to write");
    }

    #[test]
    fn idle_partitions_under_the_floor_wait_for_the_largest() {
        let mut b = Batcher::new(None);
        fill(&mut b, "small", 2);
        fill(&mut b, "idle", 8);
        b.next_round();
        fill(&mut b, "filling", 30);
        // Of the idle ones, the largest that clears the floor.
        assert_eq!(take(&mut b, 4 << 10), ("idle".into(), 8));
        // "small" is idle but under the floor: writing it would free little.
        assert_eq!(take(&mut b, 4 << 10), ("filling".into(), 30));
        assert_eq!(take(&mut b, 4 << 10), ("small".into(), 2));
        // A partition written again after a round is busy once more.
        b.next_round();
        fill(&mut b, "idle", 1);
        fill(&mut b, "filling", 3);
        assert_eq!(take(&mut b, 0), ("filling".into(), 3));
    }
}
