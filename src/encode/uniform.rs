//! Column chunks for text and integer leaves that are the same in every
//! row of a row group: one value, or null at one depth.
//!
//! Most leaves of a dataset are such. A source fills a few dozen of a
//! dataset's ~150 columns, so the rest are null throughout, and a third of
//! those it fills hold one value per row group (the class, the product, the
//! partition's account and region). parquet-rs encodes them row by row: a
//! hash and a probe of its dictionary for every value, and its levels
//! computed, buffered and run-length encoded, to end with one run of each.
//! This writes the same chunk, byte for byte what parquet-rs writes under
//! the same properties (a test holds it to that), in time that does not
//! grow with the rows.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, LevelHistogram, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Longer values go through parquet-rs: a dictionary page near its size
/// limit makes it fall back to plain pages, which this does not write.
pub(super) const MAX_VALUE: usize = 4096;

/// What every row of a leaf holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill<'a> {
    /// This value (text, or an integer's little-endian bytes), every
    /// ancestor present.
    Value(&'a [u8]),
    /// Null, at this definition level (the optional ancestors present).
    Null(i16),
}

/// Whether [`chunk`] writes leaf `descr` as parquet-rs would under `props`:
/// a dictionary-encoded leaf outside any list, text with no statistics or
/// an integer with a chunk's (min, max and nulls), and no bloom filter or
/// page chunking of its own to reproduce.
pub(super) fn applies(descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let path = descr.path();
    let statistics = props.statistics_enabled(path);
    let kind = match descr.physical_type() {
        Type::BYTE_ARRAY => statistics == EnabledStatistics::None,
        Type::INT32 | Type::INT64 => statistics != EnabledStatistics::Page,
        _ => false,
    };
    kind && descr.max_rep_level() == 0
        // A required leaf's pages are cut otherwise (no levels to count).
        && descr.max_def_level() > 0
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && props.dictionary_enabled(path)
        && !props.write_page_header_statistics(path)
        && props.bloom_filter_properties(path).is_none()
        && props.content_defined_chunking().is_none()
        && props.column_data_page_row_count_limit(path) > 0
}

/// The uncompressed chunk of `rows` rows of `fill` in leaf `descr`: its
/// bytes (dictionary page first) and what the row group writer needs to
/// splice them in.
pub(super) fn chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    fill: Fill<'_>,
    rows: usize,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    let too_long = || ParquetError::General(format!("{rows} rows do not fit a column chunk"));
    let max_def = descr.max_def_level();
    let text = descr.physical_type() == Type::BYTE_ARRAY;
    let (value, def) = match fill {
        Fill::Value(v) => (Some(v), max_def),
        Fill::Null(d) if (0..max_def).contains(&d) => (None, d),
        Fill::Null(d) => return Err(ParquetError::General(format!("a null's level {d} is not under {max_def}"))),
    };
    let mut sink = TrackedWrite::new(Vec::new());
    let mut specs: Vec<PageWriteSpec> = Vec::new();
    let dict_encoding = props.dictionary_page_encoding();
    let data_encoding = props.dictionary_data_page_encoding();
    let per_page = props.column_data_page_row_count_limit(descr.path());
    {
        let mut pages = SerializedPageWriter::new(&mut sink);
        // A dictionary of the one value, or of none: plain, which gives
        // text its length and an integer its bytes.
        let mut dict = Vec::new();
        if let Some(v) = value {
            if text {
                let len = u32::try_from(v.len()).map_err(|_| ParquetError::General("a value over 4 GiB".into()))?;
                dict.extend_from_slice(&len.to_le_bytes());
            }
            dict.extend_from_slice(v);
        }
        let len = dict.len();
        let num_values = u32::from(value.is_some());
        let page =
            Page::DictionaryPage { buf: Bytes::from(dict), num_values, encoding: dict_encoding, is_sorted: false };
        specs.push(pages.write_page(CompressedPage::new(page, len))?);
        // parquet-rs cuts a page at its row limit. A page is one run of
        // definition levels, then the indices' bit width (0 for a
        // dictionary of one or none) and, for a value, one run of index 0.
        let width = 16 - max_def.leading_zeros() as usize;
        let mut left = rows;
        while left > 0 {
            let n = left.min(per_page);
            left -= n;
            let run = u64::try_from(n).map_err(|_| too_long())? << 1;
            let mut levels = Vec::with_capacity(16);
            uleb128(run, &mut levels);
            levels.extend_from_slice(&def.to_le_bytes()[..width.div_ceil(8)]);
            let mut buf = Vec::with_capacity(32);
            buf.extend_from_slice(&(levels.len() as u32).to_le_bytes());
            buf.extend_from_slice(&levels);
            buf.push(0);
            if value.is_some() {
                uleb128(run, &mut buf);
            }
            let len = buf.len();
            let page = Page::DataPage {
                buf: Bytes::from(buf),
                num_values: u32::try_from(n).map_err(|_| too_long())?,
                encoding: data_encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            specs.push(pages.write_page(CompressedPage::new(page, len))?);
        }
        pages.close()?;
    }
    let bytes = Bytes::from(sink.into_inner()?);
    let (dict, data) = specs.split_first().expect("the dictionary page was written");
    let size = |f: fn(&PageWriteSpec) -> usize| specs.iter().map(f).sum::<usize>() as i64;
    let mut encodings = vec![Encoding::RLE, dict_encoding, data_encoding];
    encodings.dedup();
    let mut stats = vec![PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: dict_encoding, count: 1 }];
    if !data.is_empty() {
        stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: data_encoding,
            count: data.len() as i32,
        });
    }
    let mut metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(Compression::UNCOMPRESSED)
        .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
        .set_page_encoding_stats(stats)
        .set_total_compressed_size(size(|s| s.compressed_size))
        .set_total_uncompressed_size(size(|s| s.uncompressed_size))
        .set_num_values(rows as i64)
        .set_data_page_offset(data.first().map_or(0, |s| s.offset as i64))
        .set_dictionary_page_offset(Some(dict.offset as i64));
    if !text && props.statistics_enabled(descr.path()) != EnabledStatistics::None {
        // An integer's chunk statistics, as parquet-rs states them: min and
        // max the value (none for nulls), the nulls counted, and the count
        // of rows at each definition level.
        let nulls = Some(if value.is_some() { 0 } else { rows as u64 });
        let signed = descr.sort_order().is_signed();
        let statistics = match (descr.physical_type(), value) {
            (Type::INT32, v) => {
                let v = v.map(|v| v.try_into().map(i32::from_le_bytes)).transpose().map_err(|_| not_an_integer())?;
                Statistics::Int32(
                    ValueStatistics::new(v, v, None, nulls, false).with_backwards_compatible_min_max(signed),
                )
            }
            (_, v) => {
                let v = v.map(|v| v.try_into().map(i64::from_le_bytes)).transpose().map_err(|_| not_an_integer())?;
                Statistics::Int64(
                    ValueStatistics::new(v, v, None, nulls, false).with_backwards_compatible_min_max(signed),
                )
            }
        };
        let mut levels = vec![0; max_def as usize + 1];
        levels[def as usize] = rows as i64;
        metadata =
            metadata.set_statistics(statistics).set_definition_level_histogram(Some(LevelHistogram::from(levels)));
    }
    let metadata = metadata.build()?;
    let value_len = value.map_or(0, <[u8]>::len) as i64;
    let offset_index = (!props.offset_index_disabled()).then(|| OffsetIndexMetaData {
        page_locations: data
            .iter()
            .enumerate()
            .map(|(i, s)| PageLocation {
                offset: s.offset as i64,
                compressed_page_size: s.compressed_size as i32,
                first_row_index: (i * per_page) as i64,
            })
            .collect(),
        unencoded_byte_array_data_bytes: text.then(|| data.iter().map(|s| s.num_values as i64 * value_len).collect()),
    });
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index,
    };
    Ok((bytes, close))
}

fn not_an_integer() -> ParquetError {
    ParquetError::General("an integer leaf's value is not its width".into())
}

/// `v` as an unsigned LEB128 varint: what Parquet's RLE runs and the
/// compact protocol's integers are written as.
pub(super) fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray, TimestampMillisecondArray,
    };
    use arrow_buffer::NullBuffer;
    use arrow_schema::{DataType, Field, Fields};

    use super::super::{EncodeOptions, ObjectWriter, writer_properties};
    use super::Fill;

    /// A struct of one field `name` over `child`, null in every row or none.
    fn wrap(name: &str, child: ArrayRef, null: bool) -> ArrayRef {
        let rows = child.len();
        let nulls = null.then(|| NullBuffer::new_null(rows));
        Arc::new(StructArray::new(
            Fields::from(vec![Field::new(name, child.data_type().clone(), true)]),
            vec![child],
            nulls,
        ))
    }

    /// `rows` rows: OCSF text leaves (the run's properties give them no
    /// statistics) holding `value` at three depths, or null at three
    /// depths; a text leaf of another name (statistics on: parquet-rs
    /// writes it), a required one, a mixed one, a half-null one; integers
    /// and timestamps the same ways, and one whose dictionary is off.
    fn batch(value: &str, rows: usize) -> RecordBatch {
        let text = |v: &str| Arc::new(StringArray::from(vec![v; rows])) as ArrayRef;
        let none = || Arc::new(StringArray::from(vec![None::<&str>; rows])) as ArrayRef;
        let cloud = StructArray::new(
            Fields::from(vec![
                Field::new("region", DataType::Utf8, true),
                Field::new("provider", DataType::Utf8, true),
            ]),
            vec![text(value), text("AWS")],
            None,
        );
        let mixed: Vec<String> = (0..rows).map(|i| format!("r{}", i % 3)).collect();
        let half: Vec<Option<&str>> = (0..rows).map(|i| (i % 2 == 0).then_some("curl")).collect();
        RecordBatch::try_from_iter_with_nullable(vec![
            ("severity", text(value), true),
            ("cloud", Arc::new(cloud) as ArrayRef, true),
            ("metadata", wrap("product", wrap("name", text(value), false), false), true),
            ("word", text(value), true),
            ("activity_name", text(value), false),
            ("status", Arc::new(StringArray::from(mixed)) as ArrayRef, true),
            ("n", Arc::new(Int64Array::from(vec![1; rows])) as ArrayRef, true),
            ("api", wrap("operation", text(value), true), true),
            ("actor", wrap("user", wrap("name", text(value), true), false), true),
            ("src_endpoint", wrap("ip", none(), false), true),
            ("http_request", wrap("user_agent", Arc::new(StringArray::from(half)), false), true),
            ("class_uid", Arc::new(Int32Array::from(vec![-3001; rows])), true),
            (
                "start_time_dt",
                Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_000; rows]).with_timezone("UTC")),
                true,
            ),
            ("severity_id", Arc::new(Int32Array::from(vec![None; rows])), true),
            ("duration", wrap("ms", Arc::new(Int64Array::from(vec![None; rows])), false), true),
            ("count", Arc::new(Int32Array::from((0..rows as i32).map(|i| i % 2).collect::<Vec<_>>())), true),
            ("time", Arc::new(Int64Array::from(vec![5; rows])), true),
        ])
        .unwrap()
    }

    fn write(batch: &RecordBatch, own: bool) -> (Vec<u8>, Vec<Option<String>>) {
        let props = writer_properties(&EncodeOptions::default()).unwrap();
        let mut w = ObjectWriter::new(Vec::new(), batch.schema(), props).unwrap();
        w.own_chunks = own;
        w.tuned_zstd = false;
        let first = batch.slice(0, batch.num_rows().min(w.max_rows));
        let fills = w
            .layout(&first)
            .fills
            .iter()
            .map(|f| {
                f.map(|f| match f {
                    Fill::Value(v) => format!("{} bytes", v.len()),
                    Fill::Null(d) => format!("null at {d}"),
                })
            })
            .collect();
        w.write(batch).unwrap();
        (w.finish().unwrap().2, fills)
    }

    #[test]
    fn a_uniform_chunk_is_byte_for_byte_what_parquet_writes() {
        let long = "v".repeat(super::MAX_VALUE);
        let longer = "v".repeat(super::MAX_VALUE + 1);
        for value in ["us-east-1", "", "ü", long.as_str(), longer.as_str()] {
            // Runs shorter than a bit-packed group, page cuts at 20,000 rows,
            // and (once) a 65,536-row row group with a sliced one after it.
            let big = if value == "us-east-1" { 70_000 } else { 20_000 };
            for rows in [1, 7, 8, 9, 20_001, big] {
                let b = batch(value, rows);
                let (own, fills) = write(&b, true);
                let (theirs, _) = write(&b, false);
                let v = (value.len() <= super::MAX_VALUE).then(|| format!("{} bytes", value.len()));
                let s = |t: &str| Some(t.to_string());
                let want = [
                    v.clone(),                                   // severity
                    v.clone(),                                   // cloud.region
                    s("3 bytes"),                                // cloud.provider
                    v.clone(),                                   // metadata.product.name
                    None,                                        // word: statistics on
                    None,                                        // activity_name: required
                    if rows == 1 { s("2 bytes") } else { None }, // status: one row, one value
                    s("8 bytes"),                                // n
                    s("null at 0"),                              // api.operation
                    s("null at 1"),                              // actor.user.name
                    s("null at 1"),                              // src_endpoint.ip
                    if rows == 1 { s("4 bytes") } else { None }, // http_request.user_agent
                    s("4 bytes"),                                // class_uid
                    s("8 bytes"),                                // start_time_dt
                    s("null at 0"),                              // severity_id
                    s("null at 1"),                              // duration.ms
                    if rows == 1 { s("4 bytes") } else { None }, // count
                    None,                                        // time: no dictionary
                ];
                assert_eq!(fills, want, "{rows} rows of {}", value.len());
                assert!(own == theirs, "{rows} rows of a {}-byte value: the files differ", value.len());
                assert_eq!(super::super::read_back(own, &b.schema()), b);
            }
        }
    }
}
