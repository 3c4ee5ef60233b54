//! Dead letters: every input that does not become a row, with its reason.
//!
//! Written as NDJSON, one object per record:
//! `{"reason", "detail", "source": {"file", "record_index", "sub_index"?}, "input", "input_truncated"}`.

use std::fmt;
use std::io::Write;

use serde::Serialize;

use crate::decode::json::write_str;

/// Why a record did not become a row. The names are stable: they appear in
/// dead-letter files, the summary and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MalformedJson,
    TruncatedGzip,
    CorruptGzip,
    ReadError,
    NotAnObject,
    TooDeep,
    Oversized,
    EmptyEnvelope,
    UnrecognisedSource,
    UnsupportedEventType,
    MissingField,
    WrongFieldType,
    InvalidTimestamp,
    /// Not a dead letter: dropped on purpose by configuration (Kubernetes
    /// `final_stage_only`), counted in the summary as filtered.
    Filtered,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::MalformedJson,
        Reason::TruncatedGzip,
        Reason::CorruptGzip,
        Reason::ReadError,
        Reason::NotAnObject,
        Reason::TooDeep,
        Reason::Oversized,
        Reason::EmptyEnvelope,
        Reason::UnrecognisedSource,
        Reason::UnsupportedEventType,
        Reason::MissingField,
        Reason::WrongFieldType,
        Reason::InvalidTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::TruncatedGzip => "truncated_gzip",
            Reason::CorruptGzip => "corrupt_gzip",
            Reason::ReadError => "read_error",
            Reason::NotAnObject => "not_an_object",
            Reason::TooDeep => "too_deep",
            Reason::Oversized => "oversized",
            Reason::EmptyEnvelope => "empty_envelope",
            Reason::UnrecognisedSource => "unrecognised_source",
            Reason::UnsupportedEventType => "unsupported_event_type",
            Reason::MissingField => "missing_field",
            Reason::WrongFieldType => "wrong_field_type",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::Filtered => "filtered",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record came from.
#[derive(Debug, Clone)]
pub struct SourceRef<'a> {
    pub file: &'a str,
    pub record_index: u64,
    /// Index within an envelope record (EventList item, CloudWatch Logs event).
    pub sub_index: Option<u32>,
}

/// Dead letters keep at most this much input, so one huge bad record cannot
/// blow up the dead-letter files.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// Appends one dead-letter line to `out`. Input bytes that are not UTF-8 are
/// written lossily: the reason says what was wrong with them.
pub fn write_line(out: &mut Vec<u8>, reason: Reason, detail: &str, source: &SourceRef<'_>, input: &[u8]) {
    let truncated = input.len() > MAX_INPUT_BYTES;
    let mut end = input.len().min(MAX_INPUT_BYTES);
    // Never cut inside a UTF-8 sequence of otherwise valid text.
    while end < input.len() && end > 0 && (input[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    let text = String::from_utf8_lossy(&input[..end]);
    out.extend_from_slice(b"{\"reason\":");
    write_str(reason.as_str(), out);
    out.extend_from_slice(b",\"detail\":");
    write_str(detail, out);
    out.extend_from_slice(b",\"source\":{\"file\":");
    write_str(source.file, out);
    let _ = write!(out, ",\"record_index\":{}", source.record_index);
    if let Some(i) = source.sub_index {
        let _ = write!(out, ",\"sub_index\":{i}");
    }
    out.extend_from_slice(b"},\"input\":");
    write_str(&text, out);
    let _ = writeln!(out, ",\"input_truncated\":{truncated}}}");
}
