//! Encoding: Arrow record batches → zstd Parquet.
//!
//! Writer properties are configuration, not code. Each object is hashed
//! (SHA-256) as it is written, for the archive's digest chain.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

mod squeeze;
mod twin;
mod uniform;

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

/// `batch` as a Security Lake source writes it: its rows in `time` order
/// (stably; what Security Lake asks of each object, so that a query's time
/// range skips what it can), and without the trailship extension's columns
/// unless `extension` ([`without_extension`]).
pub fn for_lake(batch: &RecordBatch, extension: bool) -> RecordBatch {
    let sorted = by_time(batch);
    if extension { sorted } else { without_extension(&sorted) }
}

fn by_time(batch: &RecordBatch) -> RecordBatch {
    use arrow_array::{Array, UInt32Array, cast::AsArray, types::Int64Type};
    let Some(time) = batch.column_by_name("time").and_then(|t| t.as_primitive_opt::<Int64Type>()) else {
        return batch.clone();
    };
    let key = |i: usize| time.is_valid(i).then(|| time.value(i));
    if (1..time.len()).all(|i| key(i - 1) <= key(i)) {
        return batch.clone();
    }
    let mut order: Vec<u32> = (0..time.len() as u32).collect();
    order.sort_by_key(|&i| key(i as usize));
    arrow_select::take::take_record_batch(batch, &UInt32Array::from(order)).expect("indices of its own rows")
}

/// `batch` without the trailship extension's columns
/// ([`crate::ocsf::EXTENSION_COLUMNS`]), for readers that take OCSF's own
/// attributes only (Security Lake). What `change` holds (approvals, merges,
/// pushes: a change's evidence) is not given up with its column: it goes
/// into `unmapped`, OCSF's place for what a class has no attribute for, as
/// `"change": {...}` beside the event's own unmapped members.
pub fn without_extension(batch: &RecordBatch) -> RecordBatch {
    use arrow_array::{Array, StringArray, cast::AsArray};
    let schema = batch.schema();
    let column = |name: &str| schema.index_of(name).ok();
    let mut columns = batch.columns().to_vec();
    // Most batches (CloudTrail, Kubernetes) hold no change: nothing to fold.
    if let (Some(c), Some(u)) = (column("change"), column("unmapped"))
        && batch.column(c).null_count() < batch.num_rows()
    {
        let (change, unmapped) = (batch.column(c).as_ref(), batch.column(u).as_string::<i32>());
        let mut json = Vec::new();
        let folded: StringArray = (0..batch.num_rows())
            .map(|i| {
                let own = unmapped.is_valid(i).then(|| unmapped.value(i));
                json.clear();
                if !json_value(change, i, &mut json) {
                    return own.map(str::to_owned);
                }
                Some(fold(own, std::str::from_utf8(&json).expect("written from strings and numbers")))
            })
            .collect();
        columns[u] = Arc::new(folded);
    }
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !crate::ocsf::EXTENSION_COLUMNS.contains(&schema.field(i).name().as_str()))
        .collect();
    RecordBatch::try_new(schema, columns).and_then(|b| b.project(&keep)).expect("its own columns, one replaced in kind")
}

/// `own` (an `unmapped` object's text, or none) with `"change": change`
/// added. An event whose own unmapped members hold a `change` keeps it;
/// trailship's goes in as `"trailship_change"` then.
fn fold(own: Option<&str>, change: &str) -> String {
    let Some(t) = own.map(str::trim).filter(|t| *t != "{}") else {
        return format!("{{\"change\":{change}}}");
    };
    let Some(members) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        // Not an object (unmapped always is): kept whole, as a string.
        let quoted = serde_json::to_string(t).expect("a string serialises");
        return format!("{{\"change\":{change},\"value\":{quoted}}}");
    };
    let taken = t.contains("\"change\"")
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t)
            .is_ok_and(|m| m.contains_key("change"));
    let key = if taken { "trailship_change" } else { "change" };
    format!("{{{members},\"{key}\":{change}}}")
}

/// Writes row `i` of `a` as JSON; false (and nothing written) where it is
/// null, or a struct with no member set: OCSF leaves out what is not there.
fn json_value(a: &dyn arrow_array::Array, i: usize, out: &mut Vec<u8>) -> bool {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
    use arrow_schema::DataType;
    if a.is_null(i) {
        return false;
    }
    match a.data_type() {
        DataType::Utf8 => serde_json::to_writer(&mut *out, a.as_string::<i32>().value(i)).expect("writes to a Vec"),
        DataType::Int32 => write!(out, "{}", a.as_primitive::<Int32Type>().value(i)).expect("writes to a Vec"),
        DataType::Int64 => write!(out, "{}", a.as_primitive::<Int64Type>().value(i)).expect("writes to a Vec"),
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => {
            write!(out, "{}", a.as_primitive::<TimestampMillisecondType>().value(i)).expect("writes to a Vec")
        }
        DataType::Boolean => out.extend_from_slice(if a.as_boolean().value(i) { b"true" } else { b"false" }),
        DataType::Struct(fields) => {
            let start = out.len();
            out.push(b'{');
            for (f, c) in fields.iter().zip(a.as_struct().columns()) {
                let at = out.len();
                if at > start + 1 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, f.name()).expect("writes to a Vec");
                out.push(b':');
                if !json_value(c.as_ref(), i, out) {
                    out.truncate(at);
                }
            }
            if out.len() == start + 1 {
                out.truncate(start);
                return false;
            }
            out.push(b'}');
        }
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(i);
            out.push(b'[');
            for j in 0..items.len() {
                if j > 0 {
                    out.push(b',');
                }
                if !json_value(items.as_ref(), j, out) {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b']');
        }
        // Not a type trailship writes.
        _ => return false,
    }
    true
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
    // Text columns carry no statistics. Rows keep arrival order within a
    // partition, so a text column's min and max span nearly the alphabet
    // and prune no row group; what prunes is the partition path (region,
    // account, day), `time`, and the dictionary engines can test equality
    // against. Keeping them cost two comparisons of every value: 3.7% of
    // the instructions end to end (benches/README.md, session 13).
    for c in text_columns()? {
        b = b.set_column_statistics_enabled(c, EnabledStatistics::None);
    }
    Ok(b.build())
}

/// Every BYTE_ARRAY leaf of every dataset, as Parquet paths.
fn text_columns() -> Result<Vec<ColumnPath>, ParquetError> {
    let mut out = Vec::new();
    for class in crate::ocsf::Class::ALL {
        let fields: Vec<_> = crate::ocsf::dataset_columns(class).iter().map(|n| n.field()).collect();
        let descr = ArrowSchemaConverter::new().convert(&Schema::new(fields))?;
        for c in descr.columns() {
            if c.physical_type() == parquet::basic::Type::BYTE_ARRAY && !out.contains(c.path()) {
                out.push(c.path().clone());
            }
        }
    }
    Ok(out)
}

/// What a row group holds in one Parquet leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Nothing: definition levels only.
    Null,
    /// One value in every row, no nulls, outside any list.
    Same,
    Mixed,
}

/// Every row's definition level in a leaf, where all rows share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Every row present down to here, at this level.
    Present(i16),
    /// Every row null here or above, at this level.
    Absent(i16),
    Varies,
}

impl Depth {
    /// The depth of `a`, a field (`nullable` or not) under this one.
    fn below(self, a: &dyn arrow_array::Array, nullable: bool) -> Depth {
        match self {
            Depth::Present(_) if a.is_empty() => Depth::Varies,
            Depth::Present(d) if a.null_count() == 0 => Depth::Present(d + i16::from(nullable)),
            Depth::Present(d) if nullable && a.null_count() == a.len() => Depth::Absent(d),
            Depth::Present(_) | Depth::Varies => Depth::Varies,
            Depth::Absent(d) => Depth::Absent(d),
        }
    }
}

/// One Parquet leaf of a row group.
#[derive(Clone, Copy)]
struct Leaf<'a> {
    shape: Shape,
    depth: Depth,
    /// The depth of the level above: where it is `Present`, the leaf's
    /// levels are its own nulls' alone.
    above: Depth,
    array: &'a dyn arrow_array::Array,
}

/// Each Parquet leaf under `a` (a field, `nullable` or not), in the
/// schema's depth-first leaf order; false for a type trailship does not
/// write. `parent` and `depth`: the level above's (`Same` and
/// `Present(0)` at the top).
fn leaves<'a>(
    a: &'a dyn arrow_array::Array,
    nullable: bool,
    parent: Shape,
    depth: Depth,
    out: &mut Vec<Leaf<'a>>,
) -> bool {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    let here = if parent == Shape::Null || a.null_count() == a.len() {
        Shape::Null
    } else if parent == Shape::Same && a.null_count() == 0 {
        Shape::Same
    } else {
        Shape::Mixed
    };
    let above = depth;
    let depth = depth.below(a, nullable);
    match a.data_type() {
        DataType::Struct(fields) => a
            .as_struct()
            .columns()
            .iter()
            .zip(fields)
            .all(|(c, f)| leaves(c.as_ref(), f.is_nullable(), here, depth, out)),
        DataType::List(item) => {
            let l = a.as_list::<i32>();
            let inner = if here == Shape::Null || l.values().is_empty() { Shape::Null } else { Shape::Mixed };
            // A list's leaves repeat: one level a row no more.
            leaves(l.values().as_ref(), item.is_nullable(), inner, Depth::Varies, out)
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
            let shape = if here == Shape::Same && !all_equal(a) { Shape::Mixed } else { here };
            out.push(Leaf { shape, depth, above, array: a });
            true
        }
    }
}

/// The first value of `a` as Parquet's plain encoding holds it (text's
/// bytes, an integer's little-endian ones), for the types trailship writes
/// as they are.
fn first_value(a: &dyn arrow_array::Array) -> Option<&[u8]> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
    use arrow_schema::{DataType, TimeUnit};
    let bytes = match a.data_type() {
        DataType::Utf8 => return a.as_string::<i32>().iter().next().flatten().map(str::as_bytes),
        DataType::Int32 => a.as_primitive::<Int32Type>().values().inner().as_slice(),
        DataType::Int64 => a.as_primitive::<Int64Type>().values().inner().as_slice(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            a.as_primitive::<TimestampMillisecondType>().values().inner().as_slice()
        }
        _ => return None,
    };
    bytes.get(..a.data_type().primitive_width()?)
}

/// Whether every value of `a` (which has no nulls) is its first.
fn all_equal(a: &dyn arrow_array::Array) -> bool {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
    use arrow_schema::{DataType, TimeUnit};
    fn same<T: PartialEq + Copy>(v: &[T]) -> bool {
        v.first().is_none_or(|f| v.iter().all(|x| x == f))
    }
    match a.data_type() {
        DataType::Int32 => same(a.as_primitive::<Int32Type>().values()),
        DataType::Int64 => same(a.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => same(a.as_primitive::<TimestampMillisecondType>().values()),
        DataType::Utf8 => {
            // One value repeated is evenly spaced offsets over text that
            // repeats with that period: two passes, not a comparison a value.
            let s = a.as_string::<i32>();
            let o = s.value_offsets();
            let width = o.get(1).map_or(0, |e| e - o[0]);
            if !o.windows(2).all(|w| w[1] - w[0] == width) {
                return false;
            }
            let text = &s.values()[o[0] as usize..o[o.len() - 1] as usize];
            let w = width as usize;
            text.len() <= w || text[w..] == text[..text.len() - w]
        }
        _ => false,
    }
}

/// One column-writer factory per top-level field of `schema`, their page
/// stores watched by `capture`.
fn factories(
    schema: &Schema,
    props: &WriterProperties,
    capture: &Arc<twin::Capture>,
) -> Result<Vec<ArrowRowGroupWriterFactory>, ParquetError> {
    let converter = ArrowSchemaConverter::new();
    let shared = Arc::new(props.clone());
    let mut fields = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let alone = Arc::new(Schema::new(vec![field.clone()]));
        let descr = converter.convert(&alone)?;
        let shape = SerializedFileWriter::new(io::sink(), descr.root_schema_ptr(), Arc::clone(&shared))?;
        fields.push(
            ArrowRowGroupWriterFactory::new(&shape, alone)
                .with_page_store_factory(Arc::new(twin::Watched(Arc::clone(capture)))),
        );
    }
    Ok(fields)
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

    /// The writer underneath, and how many bytes have been handed to it.
    pub fn sink(&self) -> (&W, u64) {
        (&self.inner, self.bytes)
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

/// Bytes buffered in front of an object's file. parquet buffers 8 KiB
/// itself; this batches those into fewer writes. Every open object holds
/// one, so it is memory per object, not per thread.
pub const WRITE_BUFFER: usize = 64 << 10;

/// One Parquet object being written.
///
/// Row groups are encoded one top-level column at a time, each chunk written
/// out before the next column's writers exist, rather than with all of a row
/// group's column writers at once as `ArrowWriter` does: a writer holds zstd
/// compression and decompression contexts, a dictionary and its encoded
/// pages until it is closed, so all at once that is the whole row group's
/// encoder state, per thread, and the allocator keeps each thread's
/// high-water mark (see benches/README.md, session 10).
pub struct ObjectWriter<W: Write + Send> {
    /// Holds the object's Parquet schema and its properties before any
    /// leaf is made uncompressed.
    file: SerializedFileWriter<HashingWriter<W>>,
    /// One column-writer factory per top-level field, each over a schema of
    /// that field alone (same leaf paths and levels, so the same properties
    /// apply and the file writer accepts its chunks).
    fields: Vec<ArrowRowGroupWriterFactory>,
    /// The leaves `fields` store uncompressed, in the schema's leaf order;
    /// empty before the first row group.
    plain: Vec<bool>,
    /// The level of each leaf [`squeeze`] compresses (`fields` write them
    /// uncompressed), in the schema's leaf order.
    squeeze: Vec<Option<ZstdLevel>>,
    schema: SchemaRef,
    max_rows: usize,
    /// Whether [`uniform`], [`twin`] and [`squeeze`] write the leaves they
    /// can (off only to compare their chunks with parquet-rs's).
    own_chunks: bool,
    /// Whether [`squeeze`] compresses level-1 pages with its own hash table
    /// size (off only to compare its chunks with parquet-rs's, byte for byte).
    tuned_zstd: bool,
    /// The pages of the chunk being spliced in, when a twin will need them.
    capture: Arc<twin::Capture>,
}

/// How a row group's leaves are written ([`ObjectWriter::layout`]).
struct Layout<'b> {
    plain: Vec<bool>,
    fills: Vec<Option<uniform::Fill<'b>>>,
    /// The earlier leaf each one repeats ([`twin`]).
    twins: Vec<Option<usize>>,
    per_field: Vec<usize>,
}

impl<W: Write + Send> ObjectWriter<W> {
    /// A writer whose row groups store uncompressed the leaves they leave
    /// entirely null, or fill with one value. A dataset is ~150 columns
    /// wide; one source fills a few dozen, and a third of those hold one
    /// value per row group (the class, the product, the partition's account
    /// and region). Such chunks are a few bytes of levels and dictionary
    /// indices, which zstd's frame makes larger, not smaller, and each cost
    /// a zstd context's set-up (benches/README.md, session 13) before
    /// [`squeeze`] kept one context a thread for the rest. The choice is
    /// made per row group, as Parquet keeps a codec per column chunk: an
    /// object's first row group says nothing certain about its later ones.
    /// Most of them (text, integer and timestamp leaves outside lists) are
    /// written by [`uniform`], not parquet-rs, to the same bytes.
    pub fn new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self, ParquetError> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // ArrowWriter writes the Parquet schema and the encoded Arrow schema
        // (readers restore the Arrow types from it) into the file it hands over.
        let (file, _) =
            ArrowWriter::try_new(HashingWriter::new(out), schema.clone(), Some(props))?.into_serialized_writer()?;
        // The first row group builds the factories (`plain` matches no choice).
        Ok(ObjectWriter {
            file,
            fields: Vec::new(),
            plain: Vec::new(),
            squeeze: Vec::new(),
            schema,
            max_rows,
            own_chunks: true,
            tuned_zstd: true,
            capture: Arc::default(),
        })
    }

    /// How `batch`'s leaves are written: which are better stored
    /// uncompressed (none where the walk does not know a type: uniform
    /// properties, rather than guess), which [`uniform`] writes, and how
    /// many leaves each top-level field has (empty where the walk failed).
    fn layout<'b>(&self, batch: &'b RecordBatch) -> Layout<'b> {
        let (descr, props) = (self.file.schema_descr(), self.file.properties());
        let n = descr.num_columns();
        let mut all = Vec::with_capacity(n);
        let mut per_field = Vec::with_capacity(batch.num_columns());
        let known = batch.columns().iter().zip(self.schema.fields()).all(|(c, f)| {
            let before = all.len();
            let ok = leaves(c.as_ref(), f.is_nullable(), Shape::Same, Depth::Present(0), &mut all);
            per_field.push(all.len() - before);
            ok
        });
        if !known || all.len() != n {
            return Layout { plain: vec![false; n], fills: vec![None; n], twins: vec![None; n], per_field: Vec::new() };
        }
        let plain: Vec<bool> = (0..n)
            .map(|i| {
                let c = descr.column(i);
                match all[i].shape {
                    Shape::Null => true,
                    // One dictionary entry and a run of index 0. Written
                    // without a dictionary (or as bits), it is no longer small.
                    Shape::Same => {
                        props.dictionary_enabled(c.path()) && c.physical_type() != parquet::basic::Type::BOOLEAN
                    }
                    Shape::Mixed => false,
                }
            })
            .collect();
        let fills: Vec<Option<uniform::Fill<'b>>> = (0..n)
            .map(|i| {
                let (leaf, c) = (all[i], descr.column(i));
                if !self.own_chunks || !plain[i] || !uniform::applies(&c, props) {
                    return None;
                }
                match (leaf.shape, leaf.depth) {
                    (Shape::Null, Depth::Absent(d)) => Some(uniform::Fill::Null(d)),
                    (Shape::Same, Depth::Present(d)) if d == c.max_def_level() => {
                        let v = first_value(leaf.array)?;
                        (v.len() <= uniform::MAX_VALUE).then_some(uniform::Fill::Value(v))
                    }
                    _ => None,
                }
            })
            .collect();
        let twins = if self.own_chunks {
            let own: Vec<bool> = fills.iter().map(Option::is_some).collect();
            twin::twins(descr, props, &plain, &own, &all)
        } else {
            vec![None; n]
        };
        Layout { plain, fills, twins, per_field }
    }

    /// Writes `batch` as (at least) one complete row group, so nothing stays
    /// buffered in the encoder between batches.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        if batch.schema_ref() != &self.schema {
            return Err(ParquetError::General("record batch schema does not match the object's".into()));
        }
        let mut at = 0;
        while at < batch.num_rows() {
            let len = self.max_rows.min(batch.num_rows() - at);
            self.row_group(&batch.slice(at, len))?;
            at += len;
        }
        Ok(())
    }

    fn row_group(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let Layout { plain, fills, twins, per_field } = self.layout(batch);
        let (descr, props) = (self.file.schema_descr(), self.file.properties());
        let mut chunks = fills
            .iter()
            .enumerate()
            .map(|(i, f)| f.map(|f| uniform::chunk(&descr.column(i), props, f, batch.num_rows())).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        if plain != self.plain {
            // Consecutive row groups of a partition mostly agree, so the
            // factories are rebuilt only when the choice changes.
            let mut b = WriterProperties::clone(props).into_builder();
            let squeeze: Vec<Option<ZstdLevel>> = (0..plain.len())
                .map(|i| (self.own_chunks && !plain[i]).then(|| squeeze::level(&descr.column(i), props)).flatten())
                .collect();
            for i in (0..plain.len()).filter(|&i| plain[i] || squeeze[i].is_some()) {
                b = b.set_column_compression(descr.column(i).path().clone(), Compression::UNCOMPRESSED);
            }
            self.fields = factories(&self.schema, &b.build(), &self.capture)?;
            self.plain = plain;
            self.squeeze = squeeze;
        }
        // The leaves twins repeat, and their chunks once written (a few a
        // row group, dropped with it).
        let sources: Vec<usize> = twins.iter().flatten().copied().collect();
        let mut kept = std::collections::HashMap::new();
        let index = self.file.flushed_row_groups().len();
        let targets: Vec<_> =
            twins.iter().enumerate().map(|(i, t)| t.map(|_| self.file.schema_descr().column(i))).collect();
        let mut group = self.file.next_row_group()?;
        let mut at = 0;
        for (f, ((factory, field), column)) in
            self.fields.iter().zip(self.schema.fields()).zip(batch.columns()).enumerate()
        {
            // A field whose every leaf is written here needs neither levels
            // nor column writers.
            if let Some(&n) = per_field.get(f)
                && chunks[at..at + n].iter().all(Option::is_some)
            {
                for (bytes, close) in chunks[at..at + n].iter_mut().filter_map(Option::take) {
                    group.append_column(&bytes, close)?;
                }
                at += n;
                continue;
            }
            let mut writers = factory.create_column_writers(index)?.into_iter();
            for leaf in compute_leaves(field, column)? {
                let mut w = writers.next().ok_or_else(|| ParquetError::General("fewer writers than leaves".into()))?;
                let twin = twins.get(at).copied().flatten().and_then(|j| kept.get(&j)).zip(targets[at].clone());
                match (chunks.get_mut(at).and_then(Option::take), twin) {
                    (Some((bytes, close)), _) => group.append_column(&bytes, close)?,
                    (None, Some(((bytes, close), target))) => {
                        group.append_column(bytes, twin::retarget(close, target)?)?
                    }
                    (None, None) if let Some(level) = self.squeeze[at] => {
                        self.capture.record();
                        let written = w.write(&leaf).and_then(|()| w.close());
                        let pages = self.capture.recorded();
                        let (bytes, close) = squeeze::chunk(&pages, written?.close(), level, self.tuned_zstd)?;
                        if sources.contains(&at) {
                            kept.insert(at, (bytes.clone(), close.clone()));
                        }
                        group.append_column(&bytes, close)?;
                    }
                    (None, None) => {
                        w.write(&leaf)?;
                        let chunk = w.close()?;
                        if let Some(dictionary) =
                            sources.contains(&at).then(|| twin::dictionary_len(chunk.close())).flatten()
                        {
                            // The writer stores a dictionary page where it
                            // was made and the splice puts it first: the
                            // pages come out in file order, so the offsets
                            // move as the splice moves them.
                            let close = chunk.close().clone().update_dictionary_location(dictionary)?;
                            self.capture.open();
                            let appended = chunk.append_to_row_group(&mut group);
                            let bytes = self.capture.close();
                            appended?;
                            kept.insert(at, (bytes, close));
                        } else {
                            chunk.append_to_row_group(&mut group)?;
                        }
                    }
                }
                at += 1;
            }
        }
        group.close()?;
        Ok(())
    }

    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// The sink, and how many bytes have reached it (parquet buffers a few
    /// KiB in front of it).
    pub fn sink(&self) -> (&W, u64) {
        self.file.inner().sink()
    }

    /// Column chunks whose metadata the footer holds in memory until
    /// [`ObjectWriter::finish`]: one per leaf column per row group written.
    pub fn footer_chunks(&self) -> usize {
        self.file.flushed_row_groups().len() * self.file.schema_descr().num_columns()
    }

    /// Writes the footer; returns the object's SHA-256, size and the sink.
    pub fn finish(self) -> Result<([u8; 32], u64, W), ParquetError> {
        Ok(self.file.into_inner()?.finish())
    }
}

/// A Parquet file's rows as one batch, to hold the chunks written here to
/// what was written.
#[cfg(test)]
fn read_back(file: Vec<u8>, schema: &SchemaRef) -> RecordBatch {
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes::Bytes::from(file), 70_000)
            .expect("a Parquet file")
            .collect::<Result<_, _>>()
            .expect("its row groups read");
    arrow_select::concat::concat_batches(schema, &batches).expect("batches of one schema")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn a_lakes_rows_are_in_time_order() {
        let batch = |times: &[i64]| {
            let uids: Vec<String> = (0..times.len()).map(|i| format!("r{i}")).collect();
            RecordBatch::try_from_iter([
                ("time", Arc::new(Int64Array::from(times.to_vec())) as ArrayRef),
                ("uid", Arc::new(StringArray::from(uids)) as ArrayRef),
            ])
            .unwrap()
        };
        let uids = |b: &RecordBatch| -> Vec<String> {
            use arrow_array::cast::AsArray;
            b.column(1).as_string::<i32>().iter().map(|s| s.unwrap().to_owned()).collect()
        };
        let sorted = super::for_lake(&batch(&[30, 10, 20, 10]), true);
        assert_eq!(uids(&sorted), ["r1", "r3", "r2", "r0"], "in time order, ties as they came");
        let already = batch(&[1, 2, 2, 3]);
        let kept = super::for_lake(&already, true);
        assert!(kept.column(1).to_data().ptr_eq(&already.column(1).to_data()), "in order already: not copied");
    }

    #[test]
    fn a_change_is_folded_into_unmapped_beside_the_events_own_members() {
        let fold = |own: Option<&str>| super::fold(own, r#"{"approver":"octocat"}"#);
        assert_eq!(fold(None), r#"{"change":{"approver":"octocat"}}"#);
        assert_eq!(fold(Some("{}")), r#"{"change":{"approver":"octocat"}}"#);
        assert_eq!(fold(Some(r#"{"a":1}"#)), r#"{"a":1,"change":{"approver":"octocat"}}"#);
        // A change of the event's own stays; trailship's goes beside it.
        assert_eq!(fold(Some(r#"{"change":"x"}"#)), r#"{"change":"x","trailship_change":{"approver":"octocat"}}"#);
        assert_eq!(fold(Some(r#"{"a":{"change":1}}"#)), r#"{"a":{"change":1},"change":{"approver":"octocat"}}"#);
        assert_eq!(fold(Some("[1]")), r#"{"change":{"approver":"octocat"},"value":"[1]"}"#);
    }

    use super::*;

    #[test]
    fn null_and_single_valued_columns_are_stored_uncompressed_and_read_back() {
        use arrow_array::BooleanArray;
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
            ("one", Arc::new(Int64Array::from(vec![7, 7])) as ArrayRef),
            ("word", Arc::new(StringArray::from(vec!["ab", "ab"])) as ArrayRef),
            ("swapped", Arc::new(StringArray::from(vec!["ab", "ba"])) as ArrayRef),
            // Written without a dictionary: repeated plain values, which zstd shrinks.
            ("time", Arc::new(Int64Array::from(vec![5, 5])) as ArrayRef),
            ("flag", Arc::new(BooleanArray::from(vec![true, true])) as ArrayRef),
        ])
        .unwrap();
        let props = writer_properties(&EncodeOptions::default()).unwrap();
        let mut w = ObjectWriter::new(Vec::new(), batch.schema(), props).unwrap();
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
        let want = [
            ("s.a", true),
            ("s.b", false),
            ("t.a", false),
            ("t.b", false),
            ("n", true),
            ("one", false),
            ("word", false),
            ("swapped", true),
            ("time", true),
            ("flag", true),
        ];
        assert_eq!(codecs, want.map(|(p, z)| (p.to_string(), z)));
        let back =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8).unwrap().next().unwrap().unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn each_row_group_chooses_its_own_codecs() {
        // A partition's first batch (one kind of event, say) can leave a
        // column null or single-valued that later batches fill.
        let batch = |word: Vec<Option<&str>>, n: Vec<i64>| {
            RecordBatch::try_from_iter_with_nullable(vec![
                ("word", Arc::new(StringArray::from(word)) as ArrayRef, true),
                ("n", Arc::new(Int64Array::from(n)) as ArrayRef, true),
            ])
            .unwrap()
        };
        let groups = [
            batch(vec![None, None], vec![7, 7]),
            batch(vec![Some("a"), Some("b")], vec![1, 2]),
            batch(vec![Some("a"), Some("b")], vec![3, 4]),
            batch(vec![Some("c"), Some("c")], vec![5, 6]),
        ];
        let props = writer_properties(&EncodeOptions::default()).unwrap();
        let mut w = ObjectWriter::new(Vec::new(), groups[0].schema(), props).unwrap();
        for g in &groups {
            w.write(g).unwrap();
        }
        let bytes = bytes::Bytes::from(w.finish().unwrap().2);
        let r = SerializedFileReader::new(bytes.clone()).unwrap();
        let zstd: Vec<Vec<bool>> = r
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.columns().iter().map(|c| matches!(c.compression(), Compression::ZSTD(_))).collect())
            .collect();
        assert_eq!(zstd, [[false, false], [true, true], [true, true], [false, true]]);
        let back: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 2)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, groups);
    }

    #[test]
    fn one_value_repeated_is_told_from_text_of_the_same_period() {
        let eq = |v: &[&str]| all_equal(&StringArray::from(v.to_vec()));
        assert!(eq(&["abc", "abc", "abc"]) && eq(&["x"]) && eq(&["", ""]) && eq(&[]));
        assert!(!eq(&["ab", "ba"]) && !eq(&["ab", "abab"]) && !eq(&["a", "", "a"]) && !eq(&["abc", "abc", "abd"]));
        let sliced = StringArray::from(vec!["q", "ab", "ab", "z"]).slice(1, 2);
        assert!(all_equal(&sliced));
        assert!(!all_equal(&StringArray::from(vec!["q", "ab", "ab", "z"]).slice(1, 3)));
    }

    #[test]
    fn a_batch_over_the_row_group_size_is_split_and_keeps_its_arrow_types() {
        use arrow_array::TimestampMillisecondArray;
        let times: Vec<i64> = (0..10).map(|i| 1_700_000_000_000 + i).collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("time_dt", Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")) as ArrayRef),
            ("n", Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>())) as ArrayRef),
        ])
        .unwrap();
        let props = writer_properties(&EncodeOptions { row_group_rows: 4, ..EncodeOptions::default() }).unwrap();
        let mut w = ObjectWriter::new(Vec::new(), batch.schema(), props).unwrap();
        w.write(&batch).unwrap();
        let other = RecordBatch::try_from_iter(vec![("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
        assert!(w.write(&other).is_err(), "a batch of another schema is refused, not written");
        let (sha, len, bytes) = w.finish().unwrap();
        assert_eq!(len as usize, bytes.len());
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&bytes)));
        let bytes = bytes::Bytes::from(bytes);
        let r = SerializedFileReader::new(bytes.clone()).unwrap();
        let rows: Vec<i64> = r.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(rows, [4, 4, 2]);
        let kv = r.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|kv| kv.key == "ARROW:schema"), "readers restore Arrow types from it");
        let back: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 100)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, [batch]);
    }
}
