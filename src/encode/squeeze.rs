//! zstd for the column chunks parquet-rs encodes, with one compression
//! context a thread.
//!
//! parquet-rs gives every column writer a codec of its own: a zstd
//! compression context and a decompression context, made when the writer is
//! and dropped with it, so once per compressed column chunk. Making a
//! context runs `cpuid`, which traps to the hypervisor on a virtual machine:
//! 1.9% of a one-thread run on the project's VM went to the two `cpuid`s of
//! ~1,300 chunks (benches/README.md, session 28). Here parquet-rs writes
//! those chunks uncompressed and each page is compressed afterwards by the
//! thread's one context, at the level the leaf's properties name. A page
//! header states its sizes in its first three fields, so a page is the same
//! header with the compressed size in the third, then the compressed bytes:
//! byte for byte what parquet-rs writes when it compresses (a test holds it
//! to that), or, at level 1, the same pages compressed with a smaller hash
//! table (see [`PAGE_HASH_LOG`]).

use std::cell::RefCell;

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnDescPtr;

use super::uniform::uleb128;

/// The level this leaf is compressed at here, where it is zstd: `None` for
/// another codec, or for data pages v2, whose header says whether its values
/// are compressed and whose levels are not.
pub(super) fn level(descr: &ColumnDescPtr, props: &WriterProperties) -> Option<ZstdLevel> {
    match props.compression(descr.path()) {
        Compression::ZSTD(level) if props.writer_version() == WriterVersion::PARQUET_1_0 => Some(level),
        _ => None,
    }
}

/// The hash table a level-1 page is compressed with: 2^12 entries (16 KiB),
/// where zstd 1.5's level 1 takes 2^14 (64 KiB) for input over 256 KiB.
///
/// A page is at most ~1 MiB, and what repeats in it (a JSON document's
/// keys and structure, a row or two back; an identifier's alphabet) repeats
/// close by, so the smaller table finds the same matches. It stays in the
/// L1 cache beside the page streaming through, where the larger one missed:
/// on the benchmark corpus's largest columns (`unmapped`, the request and
/// response documents, an identifier) compression ran 19% faster, and the
/// objects came out within 0.04% of their size (benches/README.md, session
/// 34). Levels above 1 are asked for ratio, not speed, and keep zstd's
/// tables.
pub(super) const PAGE_HASH_LOG: u32 = 12;

/// Page types ([`parquet::basic::PageType`]) as a page header writes them.
const DATA_PAGE: i32 = 0;
const DICTIONARY_PAGE: i32 = 2;

/// The compact-protocol byte that opens each of a page header's first three
/// fields: the field id one past the last, and the type i32.
const NEXT_I32: u8 = 0x15;

/// The chunk whose pages parquet-rs put into its page store, uncompressed,
/// in the order it put them (a header, then that page's bytes; the
/// dictionary page last), and `close`, what its writer said of it: the
/// chunk compressed at `level`, dictionary page first, and its metadata.
/// `tuned`: level 1 with [`PAGE_HASH_LOG`] (else exactly as parquet-rs
/// compresses).
pub(super) fn chunk(
    pages: &[Bytes],
    close: &ColumnCloseResult,
    level: ZstdLevel,
    tuned: bool,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    if !pages.len().is_multiple_of(2) {
        return Err(bad("a page header without its page"));
    }
    let pairs = pages
        .chunks_exact(2)
        .map(|p| Ok((Header::parse(&p[0], p[1].len())?, &p[1])))
        .collect::<Result<Vec<_>, ParquetError>>()?;
    let bound: usize = pairs.iter().map(|(h, d)| h.len() + 5 + zstd::zstd_safe::compress_bound(d.len())).sum();
    let mut out = Vec::with_capacity(bound);
    let mut uncompressed = 0usize;
    let mut dictionary = None;
    let mut data = Vec::with_capacity(pairs.len());
    // The dictionary page first, as the chunk is laid out in the file.
    let order = pairs
        .iter()
        .filter(|(h, _)| h.kind == DICTIONARY_PAGE)
        .chain(pairs.iter().filter(|(h, _)| h.kind != DICTIONARY_PAGE));
    let hash_log = (tuned && level.compression_level() == 1).then_some(PAGE_HASH_LOG);
    with_context(level, hash_log, |zstd, scratch| {
        for (header, page) in order {
            scratch.clear();
            scratch.reserve(zstd::zstd_safe::compress_bound(page.len()));
            zstd.compress_to_buffer(page, scratch)?;
            let at = out.len();
            header.write(scratch.len(), &mut out)?;
            let header_len = out.len() - at;
            out.extend_from_slice(scratch);
            uncompressed += header_len + page.len();
            match header.kind {
                DICTIONARY_PAGE if dictionary.is_none() && data.is_empty() => dictionary = Some(out.len() - at),
                DATA_PAGE => data.push((at, out.len() - at)),
                _ => return Err(bad("a second dictionary page, or a page that is neither data nor dictionary")),
            }
        }
        Ok(())
    })?;
    let m = &close.metadata;
    if dictionary.is_some() != m.dictionary_page_offset().is_some() {
        return Err(bad("the pages and the chunk's metadata disagree on a dictionary"));
    }
    let mut offset_index = close.offset_index.clone();
    if let Some(index) = offset_index.as_mut() {
        if index.page_locations.len() != data.len() {
            return Err(bad("the offset index does not list the data pages"));
        }
        for (location, &(at, len)) in index.page_locations.iter_mut().zip(&data) {
            location.offset = at as i64;
            location.compressed_page_size = i32::try_from(len).map_err(|_| bad("a page over 2 GiB"))?;
        }
    }
    let metadata = m
        .clone()
        .into_builder()
        .set_compression(Compression::ZSTD(level))
        .set_total_compressed_size(out.len() as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_dictionary_page_offset(dictionary.map(|_| 0))
        .set_data_page_offset(dictionary.unwrap_or(0) as i64)
        .build()?;
    let bytes_written = out.len() as u64;
    Ok((Bytes::from(out), ColumnCloseResult { bytes_written, metadata, offset_index, ..close.clone() }))
}

/// A page header as parquet-rs wrote it for an uncompressed page: its
/// type, then its two sizes (equal), then the rest, which no size enters.
struct Header<'a> {
    kind: i32,
    uncompressed: i32,
    rest: &'a [u8],
}

impl<'a> Header<'a> {
    /// `bytes`, the header of a page of `len` bytes.
    fn parse(bytes: &'a [u8], len: usize) -> Result<Self, ParquetError> {
        let mut at = 0;
        let mut field = || -> Result<i32, ParquetError> {
            if bytes.get(at) != Some(&NEXT_I32) {
                return Err(bad("a page header that does not open with its type and sizes"));
            }
            at += 1;
            let (v, n) = varint(&bytes[at..]).ok_or_else(|| bad("a page header's size is cut short"))?;
            at += n;
            Ok(unzigzag(v))
        };
        let (kind, uncompressed, compressed) = (field()?, field()?, field()?);
        if uncompressed != compressed || usize::try_from(compressed).ok() != Some(len) {
            return Err(bad("a page that is already compressed"));
        }
        Ok(Header { kind, uncompressed, rest: &bytes[at..] })
    }

    fn len(&self) -> usize {
        3 * 6 + self.rest.len()
    }

    /// This header for the page compressed to `compressed` bytes.
    fn write(&self, compressed: usize, out: &mut Vec<u8>) -> Result<(), ParquetError> {
        let compressed = i32::try_from(compressed).map_err(|_| bad("a page over 2 GiB"))?;
        for v in [self.kind, self.uncompressed, compressed] {
            out.push(NEXT_I32);
            uleb128(u64::from(zigzag(v)), out);
        }
        out.extend_from_slice(self.rest);
        Ok(())
    }
}

fn varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &byte) in b.iter().take(5).enumerate() {
        v |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn unzigzag(v: u32) -> i32 {
    (v >> 1) as i32 ^ -((v & 1) as i32)
}

fn bad(what: &str) -> ParquetError {
    ParquetError::General(format!("compressing a column chunk: {what}"))
}

thread_local! {
    /// The thread's compression context and the buffer a page is
    /// compressed into (grown to the largest page, ~1 MiB).
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// A compression context, what it was made for (level, hash table) and its
/// output buffer.
type Context = ((ZstdLevel, Option<u32>), zstd::bulk::Compressor<'static>, Vec<u8>);

/// Runs `f` with the thread's context at `level`, its hash table of
/// 2^`hash_log` entries where given.
fn with_context<T>(
    level: ZstdLevel,
    hash_log: Option<u32>,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>, &mut Vec<u8>) -> Result<T, ParquetError>,
) -> Result<T, ParquetError> {
    CONTEXT.with(|c| {
        let mut c = c.borrow_mut();
        let key = (level, hash_log);
        if c.as_ref().is_none_or(|(k, ..)| *k != key) {
            let mut zstd = zstd::bulk::Compressor::new(level.compression_level())?;
            if let Some(h) = hash_log {
                zstd.set_parameter(zstd::zstd_safe::CParameter::HashLog(h))?;
            }
            *c = Some((key, zstd, Vec::new()));
        }
        let (_, zstd, scratch) = c.as_mut().expect("made above");
        f(zstd, scratch)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use bytes::Bytes;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::super::{EncodeOptions, ObjectWriter, path, read_back, writer_properties};

    /// `rows` rows: identifiers (no dictionary, pages cut by size), a few
    /// names (a dictionary page first), text whose dictionary outgrows its
    /// page (parquet-rs falls back to plain pages), a list of tags
    /// (repetition levels), integers with statistics; some nulls in each.
    fn batch(rows: usize) -> RecordBatch {
        let text = |f: &dyn Fn(usize) -> Option<String>| {
            Arc::new(StringArray::from((0..rows).map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            if i % 9 == 4 {
                tags.append_null();
                continue;
            }
            for t in 0..i % 4 {
                tags.values().append_value(["prod", "eu", "pci", "tier-1"][(i + t) % 4]);
            }
            tags.append(true);
        }
        RecordBatch::try_from_iter_with_nullable(vec![
            (
                "ids",
                text(&|i| (i % 13 != 2).then(|| format!("{:016x}-{:032x}", i * 2_654_435_761, i * i * 40_503))),
                true,
            ),
            (
                "names",
                text(&|i| (i % 7 != 3).then(|| ["AssumeRole", "GetObject", "PutObject"][i % 3].to_string())),
                true,
            ),
            ("many", text(&|i| Some(format!("value-{}-{}", i, "x".repeat(i % 50)))), true),
            ("tags", Arc::new(tags.finish()) as ArrayRef, true),
            ("n", Arc::new(Int64Array::from_iter((0..rows as i64).map(|i| (i % 5 != 1).then_some(i * 7 - 300)))), true),
        ])
        .unwrap()
    }

    /// The file, and how many leaves [`super`] compressed in its last row
    /// group.
    fn write(batch: &RecordBatch, own: bool, level: i32) -> (Vec<u8>, usize) {
        write_tuned(batch, own, level, false)
    }

    fn write_tuned(batch: &RecordBatch, own: bool, level: i32, tuned: bool) -> (Vec<u8>, usize) {
        let props = writer_properties(&EncodeOptions { zstd_level: level, ..EncodeOptions::default() }).unwrap();
        let props = props.into_builder().set_column_dictionary_enabled(path("ids"), false).build();
        let mut w = ObjectWriter::new(Vec::new(), batch.schema(), props).unwrap();
        w.own_chunks = own;
        w.tuned_zstd = tuned;
        w.write(batch).unwrap();
        let squeezed = w.squeeze.iter().flatten().count();
        (w.finish().unwrap().2, squeezed)
    }

    #[test]
    fn a_chunk_compressed_here_is_byte_for_byte_what_parquet_writes() {
        for level in [1, 3] {
            for rows in [1, 1_000, 70_000] {
                let b = batch(rows);
                let (own, squeezed) = write(&b, true, level);
                let (theirs, none) = write(&b, false, level);
                // One row: every leaf but `ids` (no dictionary) holds one
                // value or none, and such chunks are stored uncompressed.
                assert_eq!((squeezed, none), (if rows == 1 { 1 } else { 5 }, 0), "{rows} rows at level {level}");
                assert!(own == theirs, "{rows} rows at level {level}: the files differ");
                assert_eq!(read_back(own.clone(), &b.schema()), b);
                let file = SerializedFileReader::new(Bytes::from(own)).unwrap();
                let rg = file.metadata().row_group(0);
                // A file does not say the level.
                let zstd = |c: Compression| matches!(c, Compression::ZSTD(_));
                assert!(zstd(rg.column(0).compression()), "ids");
                if rows > 1 {
                    assert!(zstd(rg.column(1).compression()), "names");
                    assert!(rg.column(1).dictionary_page_offset().is_some());
                    assert!(rg.column(1).compressed_size() < rg.column(1).uncompressed_size());
                }
            }
        }
    }

    /// Every page of `file` as a reader gets it, decompressed: type,
    /// values, encoding and bytes, by row group and column.
    fn pages(file: &[u8]) -> Vec<(String, u32, String, Bytes)> {
        let file = SerializedFileReader::new(Bytes::copy_from_slice(file)).unwrap();
        let mut out = Vec::new();
        for g in 0..file.num_row_groups() {
            let group = file.get_row_group(g).unwrap();
            for c in 0..group.num_columns() {
                let mut reader = group.get_column_page_reader(c).unwrap();
                while let Some(page) = reader.get_next_page().unwrap() {
                    let kind = format!("{:?}", page.page_type());
                    out.push((kind, page.num_values(), format!("{:?}", page.encoding()), page.buffer().clone()));
                }
            }
        }
        out
    }

    #[test]
    fn a_level_1_chunk_compressed_with_the_smaller_table_holds_parquets_pages() {
        for rows in [1_000, 70_000] {
            let b = batch(rows);
            let (own, squeezed) = write_tuned(&b, true, 1, true);
            let (theirs, _) = write(&b, false, 1);
            assert_eq!(squeezed, 5);
            assert!(own != theirs, "{rows} rows: the table's size changes the compressed bytes");
            let (own_pages, their_pages) = (pages(&own), pages(&theirs));
            assert!(own_pages.len() > 5, "{rows} rows: {} pages", own_pages.len());
            assert_eq!(own_pages, their_pages, "{rows} rows: the pages decompress to parquet-rs's");
            assert_eq!(read_back(own, &b.schema()), b);
        }
        // Level 3 is compressed as parquet-rs compresses it, tuned or not.
        let b = batch(1_000);
        assert!(write_tuned(&b, true, 3, true).0 == write(&b, false, 3).0);
    }

    /// A data page's header as parquet-rs writes it uncompressed: type 0,
    /// both sizes `len`, then a data page header (field 5) holding
    /// `values` values.
    fn header(kind: i32, len: i32, values: i32) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [kind, len, len] {
            h.push(super::NEXT_I32);
            super::uleb128(u64::from(super::zigzag(v)), &mut h);
        }
        h.extend_from_slice(&[0x2c, 0x15]);
        h.push(super::zigzag(values) as u8);
        h.extend_from_slice(&[0x00, 0x00]);
        h
    }

    #[test]
    fn sizes_are_read_and_written_in_the_headers_own_encoding() {
        for v in [0, 1, -1, 63, 64, 300, -300, 1 << 20, i32::MAX, i32::MIN] {
            assert_eq!(super::unzigzag(super::zigzag(v)), v);
        }
        let page = vec![7u8; 300];
        let h = header(super::DATA_PAGE, 300, 40);
        let parsed = super::Header::parse(&h, page.len()).unwrap();
        assert_eq!((parsed.kind, parsed.uncompressed, parsed.rest), (0, 300, &h[8..]));
        let mut out = Vec::new();
        parsed.write(5, &mut out).unwrap();
        // 300 is two bytes zigzagged (600), 5 one (10).
        assert_eq!(out[..8], [0x15, 0x00, 0x15, 0xd8, 0x04, 0x15, 0x0a, 0x2c]);
        assert_eq!(&out[7..], &h[8..]);
    }

    #[test]
    fn what_parquet_did_not_write_uncompressed_is_refused() {
        // Any chunk's close result: the pages are refused before it is read.
        let (file, _) = write(&batch(10), true, 1);
        let file = SerializedFileReader::new(Bytes::from(file)).unwrap();
        let close = parquet::column::writer::ColumnCloseResult {
            bytes_written: 0,
            rows_written: 10,
            metadata: file.metadata().row_group(0).column(0).clone(),
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        let level = ZstdLevel::try_new(1).unwrap();
        let page = Bytes::from(vec![1u8; 100]);
        let run = |pages: &[Bytes]| super::chunk(pages, &close, level, true).map(|_| ()).unwrap_err().to_string();
        // Already compressed: the sizes differ.
        let mut h = header(super::DATA_PAGE, 100, 10);
        h[6] = 0x0a;
        assert!(run(&[Bytes::from(h), page.clone()]).contains("already compressed"));
        // A header with no page after it.
        assert!(run(&[Bytes::from(header(super::DATA_PAGE, 100, 10))]).contains("without its page"));
        // A header for another length.
        assert!(run(&[Bytes::from(header(super::DATA_PAGE, 99, 10)), page.clone()]).contains("already compressed"));
        // Not a page header.
        assert!(run(&[Bytes::from_static(b"\x19\x00"), page.clone()]).contains("does not open"));
        // An index page.
        assert!(run(&[Bytes::from(header(1, 100, 10)), page]).contains("neither data nor dictionary"));
    }
}
