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

#[derive(Default)]
pub struct Batcher {
    parts: Vec<(PartitionKey, ColumnBatch)>,
    last: usize,
    redactor: Option<Arc<Redactor>>,
    scan_tokens: bool,
}

impl Batcher {
    /// A batcher whose batches redact every string through `redactor`.
    pub fn new(redactor: Option<Arc<Redactor>>) -> Self {
        Batcher { parts: Vec::new(), last: 0, redactor, scan_tokens: true }
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
        if !(self.last < self.parts.len() && matches(&self.parts[self.last].0)) {
            self.last = match self.parts.iter().position(|(k, _)| matches(k)) {
                Some(i) => i,
                None => {
                    let key = PartitionKey { class, region: region.into(), account: account.into(), day };
                    let batch = ColumnBatch::new(dataset_columns(class)).with_redactor(self.redactor.clone());
                    self.parts.push((key, batch));
                    self.parts.len() - 1
                }
            };
        }
        let batch = &mut self.parts[self.last].1;
        batch.set_scan_tokens(self.scan_tokens);
        batch
    }

    pub fn buffered_rows(&self) -> usize {
        self.parts.iter().map(|(_, b)| b.rows()).sum()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.parts.iter().map(|(_, b)| b.buffered_bytes()).sum()
    }

    /// Batches with at least `min_rows` rows or `min_bytes` bytes, finished.
    pub fn take_full(&mut self, min_rows: usize, min_bytes: usize) -> Vec<(PartitionKey, RecordBatch)> {
        self.parts
            .iter_mut()
            .filter(|(_, b)| b.rows() > 0 && (b.rows() >= min_rows || b.buffered_bytes() >= min_bytes))
            .map(|(k, b)| (k.clone(), b.finish()))
            .collect()
    }

    /// The largest batch, finished (to bound memory across many partitions).
    pub fn take_largest(&mut self) -> Option<(PartitionKey, RecordBatch)> {
        let (k, b) = self.parts.iter_mut().filter(|(_, b)| b.rows() > 0).max_by_key(|(_, b)| b.buffered_bytes())?;
        Some((k.clone(), b.finish()))
    }

    /// Every non-empty batch, finished; partitions are forgotten.
    pub fn take_all(&mut self) -> Vec<(PartitionKey, RecordBatch)> {
        let out = self.take_full(1, 0);
        self.parts.clear();
        self.last = 0;
        out
    }
}
