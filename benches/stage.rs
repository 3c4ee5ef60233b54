//! Driving the per-record stages over text held in memory, shared by the
//! criterion bench and the `stages` example.
#![allow(dead_code)]

use arrow_array::RecordBatch;
use parquet::file::properties::WriterProperties;
use trailship::batch::{Batcher, PartitionKey};
use trailship::decode::framer::{Frame, Framer, Limits};
use trailship::decode::json::{Document, Parser, Source, Val, Whole};
use trailship::encode::ObjectWriter;
use trailship::normalize::{Ctx, Normalizer};
use trailship::redact::Redactor;

pub const LIMITS: Limits = Limits { max_record_bytes: 4 << 20, max_depth: 64 };

/// Decoding as the pipeline does it: a log file whole when it parses so,
/// otherwise record by record through the framer.
#[derive(Default)]
pub struct Decoder {
    parser: Parser,
    document: Document,
    /// A framed record's text before parsing.
    original: Vec<u8>,
}

impl Decoder {
    /// Calls `f` with each record of `input` (index, text, root, text tied
    /// to the tape); returns how many `f` accepted. Without `texts`, records
    /// of a log file parsed whole come with no text, as in the pipeline,
    /// which looks a record's text up only when it needs it.
    pub fn each(
        &mut self,
        input: &[u8],
        texts: bool,
        mut f: impl for<'t, 'i, 'a> FnMut(u64, &'a [u8], Val<'t, 'i>, Option<Source<'a>>) -> bool,
    ) -> u64 {
        let mut n = 0;
        let Ok(whole) = self.document.parse(input, LIMITS.max_depth, |mut e| {
            for (i, root) in e.records.enumerate() {
                let text = if texts { e.spans.get(i) } else { &[] };
                n += f((e.first + i) as u64, text, root, Some(e.source)) as u64;
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let from = match whole {
            Whole::Done => return n,
            Whole::From(first) => first as u64,
        };
        let mut framer = Framer::new(input, LIMITS);
        while let Some(frame) = framer.next() {
            if let Frame::Record { index, bytes, .. } = frame
                && index >= from
            {
                self.original.clear();
                self.original.extend_from_slice(bytes);
                let original = &self.original[..];
                n += self.parser.parse(bytes, |p| {
                    let p = p.expect("corpus is valid JSON");
                    f(index, original, p.root, p.source(original))
                }) as u64;
            }
        }
        n
    }
}

/// Decodes `input`; returns records parsed.
pub fn decode(input: &[u8], dec: &mut Decoder) -> u64 {
    dec.each(input, false, |_, _, _, _| true)
}

/// Encodes each batch as one object, with the writer the pipeline uses;
/// returns the bytes of Parquet written.
pub fn encode<'b>(batches: impl IntoIterator<Item = &'b (PartitionKey, RecordBatch)>, props: &WriterProperties) -> u64 {
    let mut out = 0;
    for (_, b) in batches {
        let mut w = ObjectWriter::new(std::io::sink(), b.schema(), props.clone()).expect("writer");
        w.write(b).expect("encode");
        out += w.finish().expect("finish").1;
    }
    out
}

/// Decodes and normalises `input`; returns rows written.
pub fn normalise(input: &[u8], dec: &mut Decoder, norm: &mut Normalizer, batcher: &mut Batcher) -> u64 {
    normalise_redacted(input, dec, norm, batcher, None)
}

/// The same, deciding per record whether strings need the token scan, as the
/// pipeline does.
pub fn normalise_redacted(
    input: &[u8],
    dec: &mut Decoder,
    norm: &mut Normalizer,
    batcher: &mut Batcher,
    redactor: Option<&Redactor>,
) -> u64 {
    // As the pipeline does: one candidate check over the whole input, then
    // per record only when it found one.
    let clean = redactor.is_some_and(|r| !r.candidate(input));
    dec.each(input, redactor.is_some() && !clean, |index, text, root, source| {
        if let Some(r) = redactor {
            batcher.set_scan_tokens(!clean && r.candidate(text));
        }
        let ctx = Ctx {
            source_file: "bench",
            index,
            repairs: Default::default(),
            raw: None,
            source,
            headers: &[],
            body: None,
            kafka: None,
            object: None,
        };
        norm.normalize(root, &ctx, batcher).is_ok()
    })
}
