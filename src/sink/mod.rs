//! Sinks: where finished Parquet objects and dead letters are made durable.
//! Only the sink knows about the storage; nothing upstream does I/O on it.

pub mod local;
mod seal;

pub use seal::now_ms;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("Parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{path} is corrupt ({detail}); move it aside to start afresh")]
    Corrupt { path: PathBuf, detail: String },
}
