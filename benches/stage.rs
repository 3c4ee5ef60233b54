//! Driving the per-record stages over text held in memory, shared by the
//! criterion bench and the `stages` example.
#![allow(dead_code)]

use trailship::batch::Batcher;
use trailship::decode::framer::{Frame, Framer, Limits};
use trailship::decode::json::Parser;
use trailship::normalize::{Ctx, Normalizer};
use trailship::redact::Redactor;

pub const LIMITS: Limits = Limits { max_record_bytes: 4 << 20, max_depth: 64 };

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
    while let Some(frame) = framer.next() {
        if let Frame::Record { index, bytes } = frame {
            if let Some(r) = redactor {
                batcher.set_scan_tokens(r.candidate(bytes));
            }
            let ok = parser.parse(bytes, |p| {
                let p = p.expect("corpus is valid JSON");
                let ctx = Ctx {
                    source_file: "bench",
                    index,
                    repairs: p.repairs,
                    raw: None,
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
