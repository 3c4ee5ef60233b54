//! Splits a byte stream into JSON records without parsing them.
//!
//! Accepted shapes, mixed freely in one stream: CloudTrail log files
//! (`{"Records":[...]}`, each element a record), top-level arrays (each
//! element a record) and concatenated or newline-delimited values (each value
//! a record). Only brackets, strings and the envelope's top-level keys are
//! tracked, so memory is bounded by the largest record, not the stream, and a
//! record that is broken inside costs only itself.
//!
//! Framing never fails: everything that cannot be a record is reported as a
//! [`Frame::Dead`] with its reason, and scanning resumes at the next line.

use std::io::{self, Read};

use memchr::memchr3;

use crate::deadletter::Reason;

/// Framing limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_record_bytes: usize,
    pub max_depth: usize,
}

/// One framed item.
pub enum Frame<'a> {
    /// A complete JSON value (validity is the parser's business).
    /// `log_file`: an element of a CloudTrail log file's `Records`.
    Record { index: u64, bytes: &'a mut Vec<u8>, log_file: bool },
    /// Input that cannot become a record. `input` may be truncated for
    /// oversized values.
    Dead { index: u64, reason: Reason, detail: String, input: &'a [u8] },
}

enum Scan {
    Complete,
    /// Hit end of input (or a read error) inside the value.
    Eof,
    /// A raw newline inside a string, or a line that starts a new object
    /// inside an unfinished value: the value is cut here.
    Broken(&'static str),
}

enum State {
    TopLevel,
    /// Inside an array whose elements are records; `envelope` when the array
    /// is the value of a top-level object's `Records` key.
    InArray {
        envelope: bool,
        emitted: u64,
    },
    Done,
}

const CHUNK: usize = 256 * 1024;

pub struct Framer<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    read_error: Option<io::Error>,
    limits: Limits,
    index: u64,
    state: State,
    rec: Vec<u8>,
    /// Bytes of the current value seen, stored or not.
    seen: usize,
    max_depth_seen: usize,
    dead_detail: String,
    /// The previous byte consumed was a newline (for resynchronisation).
    at_line_start: bool,
    /// Bytes of the stream before `buf`'s.
    consumed: u64,
    /// Where the current top-level value starts in the stream, and whether
    /// a line does too.
    value_start: (u64, bool),
    /// See [`Framer::leave_unfinished`].
    leave_unfinished: bool,
    unfinished: Option<u64>,
}

impl<R: Read> Framer<R> {
    pub fn new(reader: R, limits: Limits) -> Self {
        Self::with_chunk(reader, limits, CHUNK)
    }

    /// A framer reading `chunk` bytes at a time (at most the default). For
    /// small in-memory inputs, such as one Kafka message, the default
    /// chunk's zeroing costs more than the framing.
    pub fn with_chunk(reader: R, limits: Limits, chunk: usize) -> Self {
        Framer {
            reader,
            buf: vec![0; chunk.clamp(1, CHUNK)],
            pos: 0,
            end: 0,
            eof: false,
            read_error: None,
            limits,
            index: 0,
            state: State::TopLevel,
            rec: Vec::new(),
            seen: 0,
            max_depth_seen: 0,
            dead_detail: String::new(),
            at_line_start: true,
            consumed: 0,
            value_start: (0, true),
            leave_unfinished: false,
            unfinished: None,
        }
    }

    /// For a stream that may still be being written (a log file its writer
    /// appends to): a last value the stream ends inside, begun on a line of
    /// its own, is not a dead letter but the part of a record written so
    /// far. Framing stops before it; [`Framer::take_unfinished`] says where.
    pub fn leave_unfinished(&mut self, leave: bool) {
        self.leave_unfinished = leave;
    }

    /// Where the unfinished last record left unframed starts, in bytes from
    /// the stream's start (see [`Framer::leave_unfinished`]).
    pub fn take_unfinished(&mut self) -> Option<u64> {
        self.unfinished.take()
    }

    /// Frames a stream that goes on from another reading of it: `index`
    /// records and `offset` bytes of it were read before this reader's first
    /// byte, which starts a line. Indices and offsets go on from there.
    pub fn resume_at(&mut self, index: u64, offset: u64) {
        self.index = index;
        self.consumed = offset;
    }

    /// The read error that ended the stream early, if any.
    pub fn take_read_error(&mut self) -> Option<io::Error> {
        self.read_error.take()
    }

    fn refill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.consumed += self.end as u64;
                    self.pos = 0;
                    self.end = n;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_error = Some(e);
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        if self.pos == self.end && !self.refill() {
            return None;
        }
        Some(self.buf[self.pos])
    }

    fn bump(&mut self, store: bool) {
        let c = self.buf[self.pos];
        self.pos += 1;
        self.at_line_start = c == b'\n';
        self.seen += 1;
        if store {
            self.push_stored(&[c]);
        }
    }

    fn push_stored(&mut self, bytes: &[u8]) {
        let room = self.limits.max_record_bytes.saturating_sub(self.rec.len());
        self.rec.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Skips whitespace (and a UTF-8 byte-order mark).
    fn skip_ws(&mut self, store: bool) -> Option<u8> {
        loop {
            let c = self.peek()?;
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.bump(store),
                0xEF | 0xBB | 0xBF if self.index == 0 && self.seen < 3 && !store => self.bump(false),
                _ => return Some(c),
            }
        }
    }

    /// Scans one JSON value starting at the current (non-whitespace) byte.
    /// `base_depth` is the nesting the value sits at, for the depth limit.
    fn scan_value(&mut self, store: bool, base_depth: usize) -> Scan {
        let Some(first) = self.peek() else { return Scan::Eof };
        if matches!(first, b',' | b']' | b'}' | b':') {
            // A stray delimiter is a (malformed) value of its own: consuming it
            // guarantees progress.
            self.bump(store);
            return Scan::Complete;
        }
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        let mut depth = 0usize;
        let mut in_str = false;
        let mut esc = false;
        loop {
            if self.pos == self.end && !self.refill() {
                // A scalar ends at end of input; anything else is cut short.
                // In a stream still being written, a scalar with nothing
                // after it may be cut short too (`12` of `123`, or a
                // gzip file's first byte read as text).
                return if scalar && !self.leave_unfinished { Scan::Complete } else { Scan::Eof };
            }
            let start = self.pos;
            let chunk_end = self.end;
            let mut i = start;
            let mut result = None;
            while i < chunk_end {
                if esc {
                    esc = false;
                    i += 1;
                    continue;
                }
                if in_str {
                    match string_stop(&self.buf[i..chunk_end]) {
                        None => i = chunk_end,
                        Some(k) => {
                            i += k;
                            match self.buf[i] {
                                b'"' => {
                                    in_str = false;
                                    i += 1;
                                    if depth == 0 {
                                        result = Some(Scan::Complete);
                                        break;
                                    }
                                }
                                b'\\' => {
                                    esc = true;
                                    i += 1;
                                }
                                _ => {
                                    result = Some(Scan::Broken("raw newline inside a string"));
                                    break;
                                }
                            }
                        }
                    }
                    continue;
                }
                let c = self.buf[i];
                if scalar {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        result = Some(Scan::Complete);
                        break;
                    }
                    i += 1;
                    continue;
                }
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => {
                        depth += 1;
                        self.max_depth_seen = self.max_depth_seen.max(base_depth + depth);
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            result = Some(Scan::Complete);
                            break;
                        }
                    }
                    b'\n'
                        // NDJSON resynchronisation: pretty-printed JSON never
                        // starts a line with `{` inside a value, a new record does.
                        if self.buf.get(i + 1) == Some(&b'{') && i + 1 < chunk_end => {
                            i += 1;
                            result = Some(Scan::Broken("unterminated value: a new record starts"));
                            break;
                        }
                    _ => {}
                }
                i += 1;
            }
            let n = i - start;
            self.seen += n;
            if store {
                // Copy through a raw range to appease the borrow of self.buf.
                let (buf, rec, limit) = (&self.buf, &mut self.rec, self.limits.max_record_bytes);
                let room = limit.saturating_sub(rec.len());
                rec.extend_from_slice(&buf[start..start + n.min(room)]);
            }
            self.pos = i;
            if i > start {
                self.at_line_start = self.buf[i - 1] == b'\n';
            }
            if let Some(r) = result {
                return r;
            }
        }
    }

    /// Skips the rest of the current line (after a broken value).
    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                self.bump(false);
                return;
            }
            if self.at_line_start && c == b'{' {
                return;
            }
            self.bump(false);
        }
    }

    fn begin_value(&mut self) {
        self.rec.clear();
        self.seen = 0;
        self.max_depth_seen = 0;
    }

    /// Classifies a completed value for emission.
    fn finish_value(&mut self) -> Frame<'_> {
        let index = self.index;
        self.index += 1;
        if self.seen > self.limits.max_record_bytes {
            self.dead_detail = format!(
                "record is {} bytes, over the limit of {} (max_record_bytes)",
                self.seen, self.limits.max_record_bytes
            );
            return Frame::Dead {
                index,
                reason: Reason::Oversized,
                detail: std::mem::take(&mut self.dead_detail),
                input: &self.rec,
            };
        }
        if self.max_depth_seen > self.limits.max_depth {
            return Frame::Dead {
                index,
                reason: Reason::TooDeep,
                detail: format!(
                    "nesting depth {} exceeds the limit of {} (max_depth)",
                    self.max_depth_seen, self.limits.max_depth
                ),
                input: &self.rec,
            };
        }
        let log_file = matches!(self.state, State::InArray { envelope: true, .. });
        Frame::Record { index, bytes: &mut self.rec, log_file }
    }

    fn dead(&mut self, reason: Reason, detail: String) -> Frame<'_> {
        let index = self.index;
        self.index += 1;
        Frame::Dead { index, reason, detail, input: &self.rec }
    }

    /// Reason for a value cut short by the end of input: `None` when it is
    /// left unfinished (see [`Framer::leave_unfinished`]).
    fn eof_frame(&mut self) -> Option<Frame<'_>> {
        let at_top = matches!(self.state, State::TopLevel);
        self.state = State::Done;
        let (start, on_its_line) = self.value_start;
        if at_top && on_its_line && self.leave_unfinished && self.read_error.is_none() {
            self.unfinished = Some(start);
            return None;
        }
        Some(match self.read_error.take() {
            Some(e) => {
                let reason = gzip_reason(&e);
                let detail = format!("input stream failed: {e}");
                self.read_error = Some(e);
                self.dead(reason, detail)
            }
            None => self.dead(Reason::MalformedJson, "unexpected end of input inside a value".into()),
        })
    }

    /// Returns the next frame, or `None` at the end of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Frame<'_>> {
        loop {
            match self.state {
                State::Done => return None,
                State::TopLevel => {
                    self.begin_value();
                    let Some(c) = self.skip_ws(false) else {
                        self.state = State::Done;
                        // A stream error between records still loses data: say so.
                        if let Some(e) = self.read_error.take() {
                            let reason = gzip_reason(&e);
                            let detail = format!("input stream failed: {e}");
                            self.read_error = Some(e);
                            return Some(self.dead(reason, detail));
                        }
                        return None;
                    };
                    // A record's size is its own: not the whitespace before it.
                    self.seen = 0;
                    self.value_start = (self.consumed + self.pos as u64, self.at_line_start);
                    match c {
                        b'{' => match self.scan_top_object() {
                            TopObject::Record => return Some(self.finish_value()),
                            TopObject::Envelope => {
                                self.state = State::InArray { envelope: true, emitted: 0 };
                            }
                            TopObject::Eof => return self.eof_frame(),
                            TopObject::Broken(why) => {
                                self.skip_line();
                                return Some(self.dead(Reason::MalformedJson, why.to_string()));
                            }
                        },
                        b'[' => {
                            self.bump(false);
                            self.state = State::InArray { envelope: false, emitted: 0 };
                        }
                        _ => match self.scan_value(true, 0) {
                            // The parser decides: not an object, or malformed.
                            Scan::Complete => return Some(self.finish_value()),
                            Scan::Eof => return self.eof_frame(),
                            Scan::Broken(why) => {
                                self.skip_line();
                                return Some(self.dead(Reason::MalformedJson, why.to_string()));
                            }
                        },
                    }
                }
                State::InArray { envelope, emitted } => {
                    self.begin_value();
                    let Some(c) = self.skip_ws(false) else { return self.eof_frame() };
                    self.seen = 0;
                    if c == b']' {
                        self.bump(false);
                        self.state = State::TopLevel;
                        if envelope {
                            match self.skip_rest_of_object() {
                                Ok(()) => {}
                                Err(why) => {
                                    self.skip_line();
                                    return Some(self.dead(Reason::MalformedJson, why.into()));
                                }
                            }
                        }
                        if emitted == 0 {
                            self.rec.extend_from_slice(if envelope { b"{\"Records\":[]}" } else { b"[]" });
                            return Some(self.dead(Reason::EmptyEnvelope, "envelope holds no records".into()));
                        }
                        continue;
                    }
                    if c == b',' && emitted > 0 {
                        self.bump(false);
                        continue;
                    }
                    let depth = if envelope { 2 } else { 1 };
                    match self.scan_value(true, depth) {
                        Scan::Complete => {
                            self.state = State::InArray { envelope, emitted: emitted + 1 };
                            // Depth is counted from the record, not the envelope.
                            self.max_depth_seen = self.max_depth_seen.saturating_sub(depth);
                            return Some(self.finish_value());
                        }
                        Scan::Eof => return self.eof_frame(),
                        Scan::Broken(why) => {
                            // The envelope's structure is lost: continue line by line.
                            self.state = State::TopLevel;
                            self.skip_line();
                            return Some(self.dead(Reason::MalformedJson, why.to_string()));
                        }
                    }
                }
            }
        }
    }

    /// Scans a top-level object: either a record (stored whole) or a
    /// CloudTrail envelope, detected by its `Records` array.
    fn scan_top_object(&mut self) -> TopObject {
        self.bump(true); // '{'
        loop {
            let Some(c) = self.skip_ws(true) else { return TopObject::Eof };
            match c {
                b'}' => {
                    self.bump(true);
                    return TopObject::Record;
                }
                b',' => {
                    self.bump(true);
                    continue;
                }
                b'"' => {}
                _ => return TopObject::Broken("expected an object key"),
            }
            let key_start = self.rec.len();
            match self.scan_value(true, 1) {
                Scan::Complete => {}
                Scan::Eof => return TopObject::Eof,
                Scan::Broken(why) => return TopObject::Broken(why),
            }
            let is_records = &self.rec[key_start.min(self.rec.len())..] == b"\"Records\"";
            match self.skip_ws(true) {
                Some(b':') => self.bump(true),
                Some(_) => return TopObject::Broken("expected ':' after an object key"),
                None => return TopObject::Eof,
            }
            let Some(v) = self.skip_ws(true) else { return TopObject::Eof };
            if is_records && v == b'[' {
                self.bump(false);
                return TopObject::Envelope;
            }
            match self.scan_value(true, 1) {
                Scan::Complete => {}
                Scan::Eof => return TopObject::Eof,
                Scan::Broken(why) => return TopObject::Broken(why),
            }
        }
    }

    /// After an envelope's `Records` array: skips any remaining keys up to
    /// and including the closing `}`.
    fn skip_rest_of_object(&mut self) -> Result<(), &'static str> {
        loop {
            match self.skip_ws(false) {
                Some(b'}') => {
                    self.bump(false);
                    return Ok(());
                }
                Some(b',') | Some(b':') => self.bump(false),
                Some(_) => match self.scan_value(false, 1) {
                    Scan::Complete => {}
                    Scan::Eof => return Err("unexpected end of input in envelope"),
                    Scan::Broken(why) => return Err(why),
                },
                None => return Err("unexpected end of input in envelope"),
            }
        }
    }
}

enum TopObject {
    Record,
    Envelope,
    Eof,
    Broken(&'static str),
}

/// Classifies a stream error of a (possibly gzip) input.
fn gzip_reason(e: &io::Error) -> Reason {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Reason::TruncatedGzip,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Reason::CorruptGzip,
        _ => Reason::ReadError,
    }
}

/// The first `"`, `\\` or newline in `s`: where a string ends, escapes, or
/// is broken. Most strings in audit records are short, so the first 32 bytes
/// are checked eight at a time before handing the rest to memchr, whose
/// vector set-up costs more than a short string.
#[inline]
fn string_stop(s: &[u8]) -> Option<usize> {
    use super::swar::{eq, first, load};
    let mut i = 0;
    while i + 8 <= s.len() && i < 32 {
        let v = load(s, i);
        let hit = eq(v, b'"') | eq(v, b'\\') | eq(v, b'\n');
        if hit != 0 {
            return Some(i + first(hit));
        }
        i += 8;
    }
    memchr3(b'"', b'\\', b'\n', &s[i..]).map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stop_finds_the_first_stop_at_every_offset() {
        for len in 0..48 {
            for at in 0..=len {
                for stop in [b'"', b'\\', b'\n'] {
                    for fill in [b'a', b'!', b'#', 0x80, 0xff, 0x00, b'"' ^ 0x80, b'\n' + 1] {
                        let mut s = vec![fill; len];
                        if at < len {
                            s[at] = stop;
                        }
                        assert_eq!(string_stop(&s), memchr3(b'"', b'\\', b'\n', &s), "{s:?}");
                    }
                }
            }
        }
    }

    fn frames(input: &[u8]) -> Vec<(String, String)> {
        let mut f = Framer::new(input, Limits { max_record_bytes: 64, max_depth: 4 });
        let mut out = vec![];
        while let Some(fr) = f.next() {
            out.push(match fr {
                Frame::Record { bytes, .. } => ("rec".into(), String::from_utf8_lossy(bytes).into()),
                Frame::Dead { reason, input, .. } => (reason.as_str().into(), String::from_utf8_lossy(input).into()),
            });
        }
        out
    }

    fn recs(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(k, s)| if k == "rec" { s.as_str() } else { k.as_str() }).collect()
    }

    #[test]
    fn envelope_elements_are_records() {
        let out = frames(b"{\"Records\": [{\"a\":1}, {\"b\":\"}\"}\n]}\n");
        assert_eq!(recs(&out), ["{\"a\":1}", "{\"b\":\"}\"}"]);
    }

    #[test]
    fn only_elements_of_a_records_envelope_are_log_file_records() {
        let inputs: [(&[u8], bool); 3] = [
            (b"{\"Records\":[{\"a\":1},{\"b\":2}]}", true),
            (b"[{\"a\":1},{\"b\":2}]", false),
            (b"{\"a\":1}\n{\"b\":2}\n", false),
        ];
        for (input, want) in inputs {
            let mut f = Framer::new(input, Limits { max_record_bytes: 64, max_depth: 4 });
            let mut n = 0;
            while let Some(fr) = f.next() {
                let Frame::Record { log_file, .. } = fr else { panic!("a dead letter from {input:?}") };
                assert_eq!(log_file, want, "{input:?}");
                n += 1;
            }
            assert_eq!(n, 2);
        }
    }

    #[test]
    fn ndjson_and_concatenated_values() {
        let out = frames(b"{\"a\":1}\n{\"b\":[2]}{\"c\":3}\n\n7\n");
        assert_eq!(recs(&out), ["{\"a\":1}", "{\"b\":[2]}", "{\"c\":3}", "7"]);
    }

    #[test]
    fn top_level_array() {
        let out = frames(b"[{\"a\":1},{\"b\":2}]");
        assert_eq!(recs(&out), ["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn object_without_records_key_is_one_record() {
        let out = frames(b"{\"eventName\":\"X\",\"Records\":5}");
        assert_eq!(recs(&out), ["{\"eventName\":\"X\",\"Records\":5}"]);
    }

    #[test]
    fn empty_envelope() {
        assert_eq!(recs(&frames(b"{\"Records\":[]}")), ["empty_envelope"]);
        assert_eq!(recs(&frames(b"[ ]")), ["empty_envelope"]);
    }

    #[test]
    fn unterminated_string_resyncs_at_next_line() {
        let out = frames(b"{\"a\":\"oops\n{\"b\":1}\n");
        assert_eq!(recs(&out), ["malformed_json", "{\"b\":1}"]);
    }

    #[test]
    fn unterminated_object_resyncs_at_next_object_line() {
        let out = frames(b"{\"a\":[1,\n{\"b\":1}\n");
        assert_eq!(recs(&out), ["malformed_json", "{\"b\":1}"]);
    }

    #[test]
    fn truncated_at_eof() {
        assert_eq!(recs(&frames(b"{\"a\":1}\n{\"b\":")), ["{\"a\":1}", "malformed_json"]);
        assert_eq!(recs(&frames(b"{\"Records\":[{\"a\":1},")), ["{\"a\":1}", "malformed_json"]);
    }

    /// Frames `input` read `chunk` bytes at a time, leaving an unfinished
    /// last record: the records, and where the unfinished one starts.
    fn leaving(input: &[u8], chunk: usize) -> (Vec<String>, Option<u64>) {
        let mut f = Framer::with_chunk(input, Limits { max_record_bytes: 64, max_depth: 4 }, chunk);
        f.leave_unfinished(true);
        let mut out = vec![];
        while let Some(fr) = f.next() {
            out.push(match fr {
                Frame::Record { bytes, .. } => String::from_utf8_lossy(bytes).into(),
                Frame::Dead { reason, .. } => reason.as_str().into(),
            });
        }
        (out, f.take_unfinished())
    }

    #[test]
    fn an_unfinished_last_line_is_left_where_it_starts() {
        for chunk in [1, 3, 7, 4096] {
            let (out, at) = leaving(b"{\"a\":1}\n{\"b\":2}\n{\"c\":", chunk);
            assert_eq!(out, ["{\"a\":1}", "{\"b\":2}"], "chunk {chunk}");
            assert_eq!(at, Some(16), "chunk {chunk}");
            let (out, at) = leaving(b"{\"a\":1}\r\n  {\"c\":[1,", chunk);
            assert_eq!(out, ["{\"a\":1}", "malformed_json"], "indented: not on a line of its own");
            assert_eq!(at, None);
            let (out, at) = leaving(b"{\"a\":1}{\"c\":", chunk);
            assert_eq!(out, ["{\"a\":1}", "malformed_json"], "after a record on its line");
            assert_eq!(at, None);
            // Inside an envelope or array, the structure is the file's: cut short is cut short.
            let (out, at) = leaving(b"{\"Records\":[{\"a\":1},{\"b\"", chunk);
            assert_eq!(out, ["{\"a\":1}", "malformed_json"]);
            assert_eq!(at, None);
        }
        let (out, at) = leaving(b"{\"a\":", 4096);
        assert_eq!((out.len(), at), (0, Some(0)), "the stream's start is a line's");
        let (out, at) = leaving(b"{\"a\":1}\n", 4096);
        assert_eq!((out.len(), at), (1, None));
        // A scalar with nothing after it may be cut short as well; ended, it is a value.
        let (out, at) = leaving(b"{\"a\":1}\n12", 4096);
        assert_eq!((out.len(), at), (1, Some(8)));
        let (out, at) = leaving(b"{\"a\":1}\n12\n", 4096);
        assert_eq!((out, at), (vec!["{\"a\":1}".to_owned(), "12".to_owned()], None));
    }

    #[test]
    fn depth_and_size_limits() {
        assert_eq!(recs(&frames(b"{\"a\":[[[[1]]]]}\n{\"b\":1}")), ["too_deep", "{\"b\":1}"]);
        // Depth counts from the record, not the envelope around it.
        assert_eq!(recs(&frames(b"{\"Records\":[{\"a\":[[1]]}]}")), ["{\"a\":[[1]]}"]);
        let big = format!("{{\"a\":\"{}\"}}\n{{\"b\":1}}", "x".repeat(100));
        let out = frames(big.as_bytes());
        assert_eq!(recs(&out), ["oversized", "{\"b\":1}"]);
        assert_eq!(out[0].1.len(), 64, "dead letter keeps the first max_record_bytes");
        // A record of the limit is one, whatever whitespace comes before it.
        let limit = format!("{{\"a\":\"{}\"}}", "x".repeat(64 - 8));
        for text in [format!("{limit}\n \r\n{limit}"), format!("[{limit},\n  {limit}]")] {
            assert_eq!(recs(&frames(text.as_bytes())), [limit.as_str(), limit.as_str()], "{text}");
        }
    }

    #[test]
    fn stray_delimiters_always_make_progress() {
        assert_eq!(recs(&frames(b"]")), ["]"]);
        assert_eq!(recs(&frames(b"}\n{\"a\":1}")), ["}", "{\"a\":1}"]);
        assert_eq!(recs(&frames(b"[}]")), ["}"]);
        // An empty slot between commas holds no data: nothing to account for.
        assert_eq!(recs(&frames(b"[1,,2]")), ["1", "2"]);
        assert_eq!(recs(&frames(b"{\"Records\":[:]}")), [":"]);
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let out = frames(br#"{"a":"x\"}\\"}"#);
        assert_eq!(recs(&out), [r#"{"a":"x\"}\\"}"#]);
    }
}
