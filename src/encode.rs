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
use parquet::schema::types::ColumnPath;
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
        // Level 1, not zstd's usual 3: on the benchmark corpus it was 5%
        // fewer instructions end to end and 2% *smaller* objects (Parquet
        // pages are small; see benches/README.md).
        EncodeOptions { zstd_level: 1, row_group_rows: 64 * 1024 }
    }
}

/// Random identifiers.
const IDENTIFIERS: &[&str] =
    &["metadata.uid", "metadata.original_event_uid", "metadata.correlation_uid", "api.request.uid"];

/// JSON documents.
const DOCUMENTS: &[&str] = &["api.request.data", "api.response.data", "unmapped", "raw_data"];

/// Timestamps and positions: distinct too, but ordered, so their statistics
/// prune (time ranges, offsets).
const ORDERED: &[&str] =
    &["time", "time_dt", "metadata.original_time", "trailship.source_index", "trailship.kafka.offset"];

fn path(c: &str) -> ColumnPath {
    ColumnPath::from(c.split('.').map(String::from).collect::<Vec<_>>())
}

pub fn writer_properties(o: &EncodeOptions) -> Result<WriterProperties, ParquetError> {
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(o.zstd_level)?))
        .set_max_row_group_row_count(Some(o.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(concat!("trailship ", env!("CARGO_PKG_VERSION")).into());
    // Identifiers, documents, timestamps and positions are (nearly) all
    // distinct: a dictionary costs a hash and a probe per value and saves
    // nothing, so they are written plain (zstd still sees them).
    for c in IDENTIFIERS.iter().chain(DOCUMENTS).chain(ORDERED) {
        b = b.set_column_dictionary_enabled(path(c), false);
    }
    // No query prunes on the min/max text of a random identifier or a JSON
    // document, and keeping it costs two comparisons of every value (with
    // the dictionary, most of the `memcmp` in the end-to-end profile).
    for c in IDENTIFIERS.iter().chain(DOCUMENTS) {
        b = b.set_column_statistics_enabled(path(c), EnabledStatistics::None);
    }
    Ok(b.build())
}

/// Whether each Parquet leaf under `a` is all null, in the schema's
/// depth-first leaf order; false for a type trailship does not write.
fn null_leaves(a: &dyn arrow_array::Array, parent_null: bool, out: &mut Vec<bool>) -> bool {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    let all_null = parent_null || a.null_count() == a.len();
    match a.data_type() {
        DataType::Struct(_) => a.as_struct().columns().iter().all(|c| null_leaves(c.as_ref(), all_null, out)),
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            null_leaves(l.values().as_ref(), all_null || l.values().is_empty(), out)
        }
        DataType::Map(..)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::Union(..)
        | DataType::RunEndEncoded(..)
        | DataType::Dictionary(..) => false,
        _ => {
            out.push(all_null);
            true
        }
    }
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

    /// A writer for an object whose first row group is `first`: columns that
    /// `first` leaves entirely null are stored uncompressed. A dataset is
    /// ~200 columns wide and one source fills a few dozen; parquet-rs builds
    /// a zstd compression and decompression context per compressed column
    /// chunk (megabytes of allocation each), which dominated the cost of
    /// small objects. Null columns compress to nothing anyway: they are
    /// definition levels only.
    pub fn for_batch(out: W, first: &RecordBatch, props: WriterProperties) -> Result<Self, ParquetError> {
        let descr = parquet::arrow::ArrowSchemaConverter::new().convert(&first.schema())?;
        let mut null = Vec::with_capacity(descr.num_columns());
        let known = first.columns().iter().all(|c| null_leaves(c.as_ref(), false, &mut null));
        if !known || null.len() != descr.num_columns() {
            // The two walks disagree (a type this walk does not know): keep
            // the uniform properties rather than guess.
            return Self::new(out, first.schema(), props);
        }
        let mut b = props.into_builder();
        for (i, _) in null.iter().enumerate().filter(|(_, n)| **n) {
            b = b.set_column_compression(descr.column(i).path().clone(), Compression::UNCOMPRESSED);
        }
        Self::new(out, first.schema(), b.build())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    #[test]
    fn all_null_columns_are_stored_uncompressed_and_read_back() {
        let inner = Fields::from(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int64, true)]);
        let s = StructArray::new(
            inner.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
                Arc::new(Int64Array::from(vec![None::<i64>, None])) as ArrayRef,
            ],
            None,
        );
        let empty = StructArray::new_null(inner.clone(), 2);
        let batch = RecordBatch::try_from_iter(vec![
            ("s", Arc::new(s) as ArrayRef),
            ("t", Arc::new(empty) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ])
        .unwrap();
        let props = writer_properties(&EncodeOptions::default()).unwrap();
        let mut w = ObjectWriter::for_batch(Vec::new(), &batch, props).unwrap();
        w.write(&batch).unwrap();
        let (_, _, bytes) = w.finish().unwrap();
        let bytes = bytes::Bytes::from(bytes);
        let r = SerializedFileReader::new(bytes.clone()).unwrap();
        let codecs: Vec<(String, bool)> = r
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| (c.column_path().string(), matches!(c.compression(), Compression::ZSTD(_))))
            .collect();
        let want = [("s.a", true), ("s.b", false), ("t.a", false), ("t.b", false), ("n", true)];
        assert_eq!(codecs, want.map(|(p, z)| (p.to_string(), z)));
        let back =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8).unwrap().next().unwrap().unwrap();
        assert_eq!(back, batch);
    }
}
