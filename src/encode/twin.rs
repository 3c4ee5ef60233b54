//! Column chunks for leaves that repeat an earlier leaf, row for row.
//!
//! The same value fills several leaves of a row: CloudTrail's `eventID` and
//! a GitHub delivery's GUID are both `metadata.uid` and
//! `.original_event_uid`, and Kubernetes' `auditID` is both
//! `.original_event_uid` and `.correlation_uid`; the input's file is both
//! `metadata.log_source` and `trailship.source_file`; an access key is the
//! user's and the session's `credential_uid`. Identifiers are random, the
//! bytes zstd is slowest on, and each copy was encoded and compressed again
//! to the bytes of the first. Pages carry no column name, so a leaf whose
//! levels and values are an earlier leaf's gets that leaf's pages under
//! metadata of its own: byte for byte what parquet-rs writes for it (a test
//! holds it to that).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use parquet::arrow::arrow_writer::{InMemoryPageStore, PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

use super::{Depth, Leaf, Shape};

/// For each leaf, the earlier leaf whose chunk it can take: one outside any
/// list with the same ancestors' levels (a sibling, or a leaf whose parent
/// is present in every row at the same level), of the same type and the
/// same properties, holding the same values and nulls. `plain`: the leaves
/// stored uncompressed; `own`: those [`super::uniform`] writes.
pub(super) fn twins(
    descr: &SchemaDescriptor,
    props: &WriterProperties,
    plain: &[bool],
    own: &[bool],
    leaves: &[Leaf<'_>],
) -> Vec<Option<usize>> {
    // Once a leaf, not once a pair: a property lookup hashes the path.
    let candidate: Vec<bool> = (0..leaves.len())
        .map(|i| {
            let c = descr.column(i);
            // A leaf with no values is levels only, nothing to save.
            !own[i] && leaves[i].shape != Shape::Null && c.max_rep_level() == 0
        })
        .collect();
    (0..leaves.len())
        .map(|i| {
            if !candidate[i] {
                return None;
            }
            // The first equal leaf: equality is transitive, so it is no
            // leaf's twin itself and parquet-rs writes it.
            (0..i).find(|&j| {
                candidate[j]
                    && plain[i] == plain[j]
                    && same_levels(&descr.column(i), &descr.column(j), leaves[i].above, leaves[j].above)
                    && alike(&descr.column(i), &descr.column(j), props)
                    && equal(leaves[i].array, leaves[j].array)
            })
        })
        .collect()
}

/// Whether leaves `a` and `b` (outside any list), whose levels above are
/// `above_a` and `above_b`, have the same levels where their own values and
/// nulls are the same: they are siblings, or both parents are present in
/// every row at one level.
fn same_levels(a: &ColumnDescPtr, b: &ColumnDescPtr, above_a: Depth, above_b: Depth) -> bool {
    let (pa, pb) = (a.path().parts(), b.path().parts());
    let siblings = pa.len() == pb.len() && pa[..pa.len() - 1] == pb[..pb.len() - 1];
    let present = matches!((above_a, above_b), (Depth::Present(x), Depth::Present(y)) if x == y);
    a.max_def_level() == b.max_def_level() && (siblings || present)
}

/// Whether `a` and `b`, leaves with the same levels ([`same_levels`]), are
/// encoded the same way by parquet-rs.
fn alike(a: &ColumnDescPtr, b: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let (ta, tb) = (a.self_type(), b.self_type());
    let (ca, cb) = (a.path(), b.path());
    ta.get_basic_info().repetition() == tb.get_basic_info().repetition()
        && a.physical_type() == b.physical_type()
        && a.logical_type_ref() == b.logical_type_ref()
        && a.converted_type() == b.converted_type()
        && a.type_length() == b.type_length()
        && a.type_precision() == b.type_precision()
        && a.type_scale() == b.type_scale()
        && props.encoding(ca) == props.encoding(cb)
        && props.compression(ca) == props.compression(cb)
        && props.dictionary_enabled(ca) == props.dictionary_enabled(cb)
        && props.statistics_enabled(ca) == props.statistics_enabled(cb)
        && props.write_page_header_statistics(ca) == props.write_page_header_statistics(cb)
        && props.bloom_filter_properties(ca).is_none()
        && props.bloom_filter_properties(cb).is_none()
        && props.column_data_page_size_limit(ca) == props.column_data_page_size_limit(cb)
        && props.column_dictionary_page_size_limit(ca) == props.column_dictionary_page_size_limit(cb)
        && props.column_data_page_row_count_limit(ca) == props.column_data_page_row_count_limit(cb)
}

/// The same values and nulls. The counts and the text's length first: most
/// siblings differ there, and then cost nothing to tell apart.
fn equal(a: &dyn arrow_array::Array, b: &dyn arrow_array::Array) -> bool {
    use arrow_array::cast::AsArray;
    if a.data_type() != b.data_type() || a.len() != b.len() || a.null_count() != b.null_count() {
        return false;
    }
    if let (Some(x), Some(y)) = (a.as_string_opt::<i32>(), b.as_string_opt::<i32>()) {
        let span = |o: &[i32]| o[o.len() - 1] - o[0];
        if span(x.value_offsets()) != span(y.value_offsets()) {
            return false;
        }
    }
    a.to_data() == b.to_data()
}

/// `close`, a chunk's metadata as its writer left it (offsets from the
/// chunk's start), for leaf `descr`: what the row group writer copies when
/// it splices a chunk in, under the other leaf's descriptor.
pub(super) fn retarget(close: &ColumnCloseResult, descr: ColumnDescPtr) -> Result<ColumnCloseResult, ParquetError> {
    let m = &close.metadata;
    let mut b = ColumnChunkMetaData::builder(descr)
        .set_compression_codec(m.compression_codec())
        .set_encodings_mask(*m.encodings_mask())
        .set_total_compressed_size(m.compressed_size())
        .set_total_uncompressed_size(m.uncompressed_size())
        .set_num_values(m.num_values())
        .set_data_page_offset(m.data_page_offset())
        .set_dictionary_page_offset(m.dictionary_page_offset())
        .set_unencoded_byte_array_data_bytes(m.unencoded_byte_array_data_bytes())
        .set_repetition_level_histogram(m.repetition_level_histogram().cloned())
        .set_definition_level_histogram(m.definition_level_histogram().cloned());
    if let Some(s) = m.statistics() {
        b = b.set_statistics(s.clone());
    }
    if let Some(s) = m.page_encoding_stats() {
        b = b.set_page_encoding_stats(s.clone());
    }
    Ok(ColumnCloseResult { metadata: b.build()?, ..close.clone() })
}

/// The bytes of the dictionary page of chunk `close` (0 without one): what
/// is not a data page, which the offset index lists. `None` where there is
/// no index to tell.
pub(super) fn dictionary_len(close: &ColumnCloseResult) -> Option<usize> {
    let m = &close.metadata;
    if m.dictionary_page_offset().is_none() {
        return Some(0);
    }
    let data: i64 = close.offset_index.as_ref()?.page_locations.iter().map(|p| i64::from(p.compressed_page_size)).sum();
    usize::try_from(m.compressed_size() - data).ok()
}

/// Keeps a copy of the pages a writer hands over while it is open, so a
/// chunk can be spliced in a second time. parquet-rs streams a chunk's pages
/// out of its page store when it splices it; this is that store, watched.
/// It also keeps the page blobs a writer puts into its store while
/// recording, for [`super::squeeze`] to compress.
#[derive(Debug, Default)]
pub(super) struct Capture {
    taken: Mutex<Option<Vec<Bytes>>>,
    put: Mutex<Option<Vec<Bytes>>>,
}

impl Capture {
    pub(super) fn record(&self) {
        *self.put.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    /// The blobs put since [`Capture::record`], in the order they were put.
    pub(super) fn recorded(&self) -> Vec<Bytes> {
        self.put.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default()
    }

    pub(super) fn open(&self) {
        *self.taken.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    /// The pages taken since [`Capture::open`], as one chunk.
    pub(super) fn close(&self) -> Bytes {
        let parts = self.taken.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
        match parts.as_slice() {
            [one] => one.clone(),
            _ => Bytes::from(parts.concat()),
        }
    }
}

/// A [`PageStoreFactory`] whose stores report to one [`Capture`].
#[derive(Debug)]
pub(super) struct Watched(pub(super) Arc<Capture>);

impl PageStoreFactory for Watched {
    fn create(&self, _args: &PageStoreArgs<'_>) -> parquet::errors::Result<Box<dyn PageStore>> {
        Ok(Box::new(WatchedStore { inner: InMemoryPageStore::default(), capture: Arc::clone(&self.0) }))
    }
}

struct WatchedStore {
    inner: InMemoryPageStore,
    capture: Arc<Capture>,
}

impl PageStore for WatchedStore {
    fn put(&mut self, value: Bytes) -> parquet::errors::Result<PageKey> {
        if let Some(put) = self.capture.put.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            put.push(value.clone());
        }
        self.inner.put(value)
    }

    fn take(&mut self, key: PageKey) -> parquet::errors::Result<Bytes> {
        let page = self.inner.take(key)?;
        if let Some(taken) = self.capture.taken.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            taken.push(page.clone());
        }
        Ok(page)
    }

    fn memory_size(&self) -> usize {
        self.inner.memory_size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_buffer::NullBuffer;
    use arrow_schema::{Field, Fields};

    use super::super::{EncodeOptions, ObjectWriter, writer_properties};

    fn text(values: Vec<Option<String>>) -> ArrayRef {
        Arc::new(StringArray::from(values))
    }

    /// A struct of `names` over `children`, null where `nulls` says.
    fn group(names: &[&str], children: Vec<ArrayRef>, nulls: Option<NullBuffer>) -> ArrayRef {
        let fields: Fields =
            names.iter().zip(&children).map(|(n, c)| Field::new(*n, c.data_type().clone(), true)).collect();
        Arc::new(StructArray::new(fields, children, nulls))
    }

    /// `rows` rows of identifiers long enough for pages to be cut by size
    /// (and a dictionary to outgrow its page), some null; siblings that
    /// repeat them, that nearly do, and leaves that repeat them elsewhere
    /// (under a parent null in some rows, at another depth) or with other
    /// properties; leaves with a dictionary repeated by a sibling and under
    /// another parent; integers with statistics, repeated.
    fn batch(rows: usize) -> RecordBatch {
        let id = |i: usize| (i % 11 != 3).then(|| format!("{:08x}-{:032x}", i * 2_654_435_761 % 4_294_967_291, i * i));
        let ids: Vec<_> = (0..rows).map(id).collect();
        let mut near = ids.clone();
        near[rows / 2] = Some("another".into());
        let numbers: ArrayRef =
            Arc::new(Int64Array::from_iter((0..rows as i64).map(|i| (i % 5 != 1).then_some(i * 7))));
        let nulls = (rows > 1).then(|| NullBuffer::from((0..rows).map(|i| i % 7 != 5).collect::<Vec<_>>()));
        // Every field nullable, null in some rows or none.
        RecordBatch::try_from_iter_with_nullable(vec![
            (
                "metadata",
                group(
                    &["uid", "log_name", "original_event_uid", "correlation_uid", "event_code"],
                    vec![text(ids.clone()), text(ids.clone()), text(ids.clone()), text(near), text(ids.clone())],
                    nulls,
                ),
                true,
            ),
            ("unmapped", text(ids.clone()), true),
            ("raw_data", text(ids.clone()), true),
            (
                "api",
                group(
                    &["request"],
                    vec![group(&["uid", "data"], vec![text(ids.clone()), text(ids.clone())], None)],
                    None,
                ),
                true,
            ),
            ("cloud", group(&["region"], vec![text(ids.clone())], None), true),
            ("counts", group(&["a", "b"], vec![numbers.clone(), numbers], None), true),
            ("src_endpoint", group(&["hostname"], vec![text(ids.clone())], None), true),
            ("dst_endpoint", group(&["hostname"], vec![text(ids.clone())], None), true),
        ])
        .unwrap()
    }

    fn write(batch: &RecordBatch, own: bool) -> (Vec<u8>, Vec<Option<usize>>) {
        // Leaves of the run's datasets get a dictionary; these do not.
        let mut props = writer_properties(&EncodeOptions::default()).unwrap().into_builder();
        for c in ["cloud.region", "counts.a", "counts.b"] {
            props = props.set_column_dictionary_enabled(super::super::path(c), false);
        }
        let mut w = ObjectWriter::new(Vec::new(), batch.schema(), props.build()).unwrap();
        w.own_chunks = own;
        w.tuned_zstd = false;
        let twins = w.layout(&batch.slice(0, batch.num_rows().min(w.max_rows))).twins;
        w.write(batch).unwrap();
        (w.finish().unwrap().2, twins)
    }

    #[test]
    fn a_repeated_leaf_takes_the_first_ones_chunk_byte_for_byte() {
        for rows in [1, 20_001, 70_000] {
            let b = batch(rows);
            let (own, twins) = write(&b, true);
            let (theirs, _) = write(&b, false);
            // One row: `metadata` is present in every row, as `cloud` is, so
            // their leaves' levels are their own; and a leaf with a
            // dictionary holds one value, which `uniform` writes.
            let one = rows == 1;
            let want = [
                None,                 // metadata.uid
                None,                 // metadata.log_name: a dictionary
                Some(0),              // metadata.original_event_uid
                None,                 // metadata.correlation_uid: one value differs
                (!one).then_some(1),  // metadata.event_code, with a dictionary
                None,                 // unmapped
                Some(5),              // raw_data, at the top as unmapped is
                None,                 // api.request.uid: a level deeper
                Some(7),              // api.request.data
                one.then_some(0),     // cloud.region: else metadata is null in some rows
                None,                 // counts.a
                Some(10),             // counts.b
                None,                 // src_endpoint.hostname: a dictionary
                (!one).then_some(12), // dst_endpoint.hostname, under another parent
            ];
            assert_eq!(twins, want, "{rows} rows");
            assert!(own == theirs, "{rows} rows: the files differ");
            assert_eq!(super::super::read_back(own, &b.schema()), b);
        }
    }
}
