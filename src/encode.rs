//! Encoding: Arrow record batches → zstd Parquet.
//!
//! Writer properties are configuration, not code. Each object is hashed
//! (SHA-256) as it is written, for the archive's digest chain.

use std::io::{self, Write};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use sha2::{Digest, Sha256};

/// Parquet settings for every dataset.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub zstd_level: i32,
    /// Rows per row group; batches are flushed as whole row groups.
    pub row_group_rows: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { zstd_level: 3, row_group_rows: 64 * 1024 }
    }
}

pub fn writer_properties(o: &EncodeOptions) -> Result<WriterProperties, ParquetError> {
    Ok(WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(o.zstd_level)?))
        .set_max_row_group_row_count(Some(o.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(concat!("trailship ", env!("CARGO_PKG_VERSION")).into())
        .build())
}

/// A `Write` that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The SHA-256 and length of everything written, and the inner writer.
    pub fn finish(self) -> ([u8; 32], u64, W) {
        (self.hasher.finalize().into(), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One Parquet object being written.
pub struct ObjectWriter<W: Write + Send> {
    writer: ArrowWriter<HashingWriter<W>>,
}

impl<W: Write + Send> ObjectWriter<W> {
    pub fn new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self, ParquetError> {
        Ok(ObjectWriter { writer: ArrowWriter::try_new(HashingWriter::new(out), schema, Some(props))? })
    }

    /// Writes `batch` as (at least) one complete row group, so nothing stays
    /// buffered in the encoder between batches.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.writer.write(batch)?;
        self.writer.flush()
    }

    pub fn bytes_written(&self) -> usize {
        self.writer.bytes_written()
    }

    /// Writes the footer; returns the object's SHA-256, size and the sink.
    pub fn finish(self) -> Result<([u8; 32], u64, W), ParquetError> {
        let inner = self.writer.into_inner()?;
        Ok(inner.finish())
    }
}
