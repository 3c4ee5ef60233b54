//! Sinks: where finished Parquet objects and dead letters are made durable.
//! Only the sink knows about the storage; nothing upstream does I/O on it.

pub mod lake;
pub mod ledger;
pub mod local;
pub mod objects;
mod seal;

pub use seal::now_ms;

use std::path::PathBuf;

use arrow_array::RecordBatch;

use crate::batch::PartitionKey;

/// Where the stages hand their output: row batches by partition, and
/// dead-letter lines. Durability is the implementor's business.
pub trait RowSink {
    fn write(&mut self, key: &PartitionKey, batch: &RecordBatch) -> Result<(), SinkError>;
    /// Buffers one dead-letter line (see `deadletter::write_line`).
    fn dead_letter(&mut self, line: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("Parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{path} is corrupt ({detail}); move it aside to start afresh")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} is being written by another run ({holder}); wait for it to finish, or write elsewhere")]
    Busy { path: PathBuf, holder: String },
}
