//! Driving the per-record stages over text held in memory, shared by the
//! criterion bench and the `stages` example.
#![allow(dead_code)]

use arrow_array::RecordBatch;
use parquet::file::properties::WriterProperties;
use trailship::batch::{Batcher, PartitionKey};
use trailship::decode::framer::{Frame, Framer, Limits};
use trailship::decode::json::Parser;
use trailship::encode::ObjectWriter;
use trailship::normalize::{Ctx, Normalizer};
use trailship::redact::Redactor;

pub const LIMITS: Limits = Limits { max_record_bytes: 4 << 20, max_depth: 64 };

/// Frames and parses `input`; returns records parsed.
pub fn decode(input: &[u8], parser: &mut Parser) -> u64 {
    let mut framer = Framer::new(input, LIMITS);
    let mut n = 0;
    while let Some(frame) = framer.next() {
        if let Frame::Record { bytes, .. } = frame {
            n += parser.parse(bytes, |p| p.is_ok()) as u64;
        }
    }
    n
}

/// Encodes each batch as one object, with the writer the pipeline uses;
/// returns the bytes of Parquet written.
pub fn encode<'b>(batches: impl IntoIterator<Item = &'b (PartitionKey, RecordBatch)>, props: &WriterProperties) -> u64 {
    let mut out = 0;
    for (_, b) in batches {
        let mut w = ObjectWriter::for_batch(std::io::sink(), b, props.clone()).expect("writer");
        w.write(b).expect("encode");
        out += w.finish().expect("finish").1;
    }
    out
}

/// Frames, parses and normalises `input`; returns rows written.
pub fn normalise(input: &[u8], parser: &mut Parser, norm: &mut Normalizer, batcher: &mut Batcher) -> u64 {
    normalise_redacted(input, parser, norm, batcher, None)
}

/// The same, deciding per record whether strings need the token scan, as the
/// pipeline does.
pub fn normalise_redacted(
    input: &[u8],
    parser: &mut Parser,
    norm: &mut Normalizer,
    batcher: &mut Batcher,
    redactor: Option<&Redactor>,
) -> u64 {
    let mut framer = Framer::new(input, LIMITS);
    let mut rows = 0;
    // The record's text before parsing, as the pipeline keeps it.
    let mut original = Vec::new();
    while let Some(frame) = framer.next() {
        if let Frame::Record { index, bytes } = frame {
            if let Some(r) = redactor {
                batcher.set_scan_tokens(r.candidate(bytes));
            }
            original.clear();
            original.extend_from_slice(bytes);
            let original = &original[..];
            let ok = parser.parse(bytes, |p| {
                let p = p.expect("corpus is valid JSON");
                let ctx = Ctx {
                    source_file: "bench",
                    index,
                    repairs: p.repairs,
                    raw: None,
                    source: p.source(original),
                    headers: &[],
                    body: None,
                    kafka: None,
                    object: None,
                };
                norm.normalize(p.root, &ctx, batcher).is_ok()
            });
            rows += ok as u64;
        }
    }
    rows
}
