//! Newline-delimited records (Kubernetes audit logs, webhook deliveries,
//! GitHub's audit log stream) parsed a run of lines at a time.
//!
//! Framed one at a time, a record is scanned byte by byte for its end, copied
//! twice, and then scanned again by the parser's own structural pass: the
//! framer alone was 13% of a Kubernetes run (benches/README.md, session 35).
//! Here ~[`CHUNK_BYTES`] of complete lines is copied once and parsed as one
//! JSON array, each record's newline read as the comma after it (the last
//! one's as the closing bracket). The array's text is the lines' byte for
//! byte otherwise, so the tape's strings point at their own offsets in it
//! ([`Source`]) and each record's text is its line.
//!
//! A run is read here only when it is what the framer would frame as one
//! object a line: as many elements as lines, each an object whose text
//! starts at its line's first byte as `{"` and its first key (so no newline
//! made a comma is inside a string or a nested value: `starts_at`),
//! and each one the framer reads as a record (not an array, whose elements
//! it frames, nor a log file's `Records` envelope). Anything else, a
//! malformed line, a pretty-printed object, a byte-order mark, an oversized
//! or deeply nested record, stops here: the framer reads the rest of the
//! stream from the first line of that run and says what is wrong with each
//! record.

use memchr::memchr;
use simd_json::Node;

use super::framer::Limits;
use super::json::{CHUNK_BYTES, Elements, Source, Val, buffers_for, json_ws};

/// Reusable state: simd-json's buffers, the tape, the run's text.
pub struct Lines {
    buffers: Option<(usize, simd_json::Buffers)>,
    tape: Vec<Node<'static>>,
    buf: Vec<u8>,
    /// Each record's text in the run: its line without the whitespace around it.
    spans: Vec<(u32, u32)>,
    /// Where each record's newline is in `buf`.
    ends: Vec<u32>,
    chunk_bytes: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            buffers: None,
            tape: Vec::new(),
            buf: Vec::new(),
            spans: Vec::new(),
            ends: Vec::new(),
            chunk_bytes: CHUNK_BYTES,
        }
    }
}

/// A run of lines, parsed: a record a line.
pub struct Run<'t, 'i, 'a> {
    /// The records, in order.
    pub records: Elements<'t, 'i>,
    /// The run's text, tied to the tape.
    pub source: Source<'a>,
    /// The run's text: its lines, blank ones included, and their newlines.
    pub text: &'a [u8],
    spans: &'t [(u32, u32)],
}

impl<'a> Run<'_, '_, 'a> {
    /// Record `i`'s text, as the framer would give it.
    pub fn line(&self, i: usize) -> &'a [u8] {
        let (a, b) = self.spans[i];
        &self.text[a as usize..b as usize]
    }
}

/// How far [`Lines::parse`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lined {
    /// Where the first line not handed over starts.
    pub bytes: usize,
    /// Records handed over.
    pub records: usize,
    /// Every complete line was handed over (`bytes` is past the last
    /// newline); otherwise the text from `bytes` on is not for this reader.
    pub whole: bool,
}

impl Lines {
    /// Lines that parse runs of about `bytes` (tests make them small).
    #[cfg(test)]
    pub(crate) fn with_chunk_bytes(bytes: usize) -> Self {
        Lines { chunk_bytes: bytes.max(1), ..Default::default() }
    }

    /// Hands `f` the records of the complete lines of `text` (up to its last
    /// newline; the rest is left), a run at a time, while each run reads as
    /// one object a line. `before`: records of the same stream already read,
    /// which lets a run of blank lines alone be passed over (at the stream's
    /// start the framer's byte-order-mark rule needs the lines it counts).
    pub fn parse<'a, E>(
        &mut self,
        text: &'a [u8],
        before: u64,
        limits: Limits,
        mut f: impl for<'t, 'i> FnMut(Run<'t, 'i, 'a>) -> Result<(), E>,
    ) -> Result<Lined, E> {
        let complete = memchr::memrchr(b'\n', text).map_or(0, |p| p + 1);
        let mut read = Lined { bytes: 0, records: 0, whole: true };
        // simd-json's run is well under 4 GiB: its offsets are u32s.
        if complete > u32::MAX as usize / 2 {
            read.whole = false;
            return Ok(read);
        }
        while read.bytes < complete {
            let from = read.bytes;
            let (to, fits) = self.cut(text, from, complete, limits);
            if self.ends.is_empty() {
                // Blank lines only, or a first line too long for a record.
                let start = before + read.records as u64 == 0;
                if fits && !start {
                    read.bytes = to;
                    continue;
                }
                // At the stream's start they wait for the run with its first
                // record: the framer's byte-order-mark rule counts them.
                read.whole = fits && to == complete;
                return Ok(read);
            }
            match self.run(&text[from..to], limits, &mut f) {
                None => {
                    read.whole = false;
                    return Ok(read);
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(n)) => {
                    read.records += n;
                    read.bytes = to;
                }
            }
            if !fits {
                read.whole = false;
                return Ok(read);
            }
        }
        Ok(read)
    }

    /// The lines of a run from `from`: at least one, and then while the run
    /// is under the chunk's size. Their records go to `spans` and `ends`.
    /// Where the run ends, and false when it ends before a line longer than
    /// a record may be (which is the framer's to report).
    fn cut(&mut self, text: &[u8], from: usize, complete: usize, limits: Limits) -> (usize, bool) {
        self.spans.clear();
        self.ends.clear();
        let mut at = from;
        while at < complete && (at == from || at - from < self.chunk_bytes) {
            let nl = at + memchr(b'\n', &text[at..complete]).expect("a complete line ends in a newline");
            let line = &text[at..nl];
            if let Some(s) = line.iter().position(|&b| !json_ws(b)) {
                let e = line.iter().rposition(|&b| !json_ws(b)).expect("not blank") + 1;
                if e - s > limits.max_record_bytes {
                    return (at, false);
                }
                self.spans.push(((at - from + s) as u32, (at - from + e) as u32));
                // `buf` holds the run after its opening bracket.
                self.ends.push((1 + nl - from) as u32);
            }
            at = nl + 1;
        }
        (at, true)
    }

    /// Parses a run whose records `cut` found, and hands it to `f`: how
    /// many records. `None` when it is not one object a line.
    fn run<'a, E>(
        &mut self,
        run: &'a [u8],
        limits: Limits,
        f: &mut impl for<'t, 'i> FnMut(Run<'t, 'i, 'a>) -> Result<(), E>,
    ) -> Option<Result<usize, E>> {
        let Lines { buffers, tape, buf, spans, ends, chunk_bytes } = self;
        // The outer array is a level: a record's root is the second.
        let buffers = buffers_for(buffers, *chunk_bytes, limits.max_depth.saturating_add(1));
        buf.clear();
        buf.push(b'[');
        buf.extend_from_slice(run);
        let (last, rest) = ends.split_last().expect("a run has a record");
        for &e in rest {
            buf[e as usize] = b',';
        }
        buf[*last as usize] = b']';
        let len = buf.len();
        buf.resize(len + simd_json::INPUT_PADDING, b' ');
        let base = buf.as_ptr() as usize + 1;
        let mut t = simd_json::tape::Tape(std::mem::take(tape)).reset();
        let out = match simd_json::fill_tape_padded(buf, len, buffers, &mut t) {
            Err(_) => None,
            Ok(()) => {
                let root = Val::root(&t.0);
                let records = root.elements();
                let n = ends.len();
                let one_a_line = matches!(root.node(), Node::Array { len, .. } if len == n)
                    && records
                        .clone()
                        .zip(spans.iter())
                        .all(|(v, &(at, _))| starts_at(v, base + at as usize) && framed_as_record(v));
                one_a_line.then(|| {
                    let source = Source::new(base, run);
                    f(Run { records, source, text: run, spans }).map(|()| n)
                })
            }
        };
        *tape = t.reset().0;
        out
    }
}

/// Whether `v` is an object whose text starts at `at` (in memory), as
/// `{"` and its first key. For elements of an array that parses, each
/// starting so at its line's first byte, as many as there are lines, each
/// element's text is its line's: element `i + 1` starts where line `i + 1`
/// does, so element `i` ends before it, and nothing but the comma that was
/// line `i`'s newline may come between them (another comma would not parse).
/// So no newline made a comma is inside an element, in a string or a nested
/// value (`{"a":[1` and `2]}`, or a line of two objects and one of none,
/// parse as many elements as lines too). It is a check a record, where a walk
/// of the structural index was a check a structural, 2% of a run. An
/// object with whitespace before its first key, or none, is the framer's.
fn starts_at(v: Val<'_, '_>, at: usize) -> bool {
    v.entries().next().is_some_and(|(k, _)| k.as_ptr() as usize == at + 2)
}

/// Whether the framer would frame this value, read at a stream's top level,
/// as one record: an object that is not a log file's envelope (one with a
/// `Records` array).
pub(crate) fn framed_as_record(v: Val<'_, '_>) -> bool {
    v.is_object() && !v.entries().any(|(k, v)| k == "Records" && matches!(v.node(), Node::Array { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_record_bytes: 1 << 20, max_depth: 8 };

    /// Each record's line and its `kind` member, by run; and how far it read.
    fn read(lines: &mut Lines, text: &[u8]) -> (Vec<Vec<(String, String)>>, Lined) {
        let mut runs = Vec::new();
        let lined = lines
            .parse(text, 0, LIMITS, |run| {
                let got = run
                    .records
                    .clone()
                    .enumerate()
                    .map(|(i, r)| {
                        let line = String::from_utf8(run.line(i).to_vec()).unwrap();
                        (line, r.get_str("kind").unwrap_or("").to_string())
                    })
                    .collect();
                runs.push(got);
                Ok::<(), ()>(())
            })
            .unwrap();
        (runs, lined)
    }

    #[test]
    fn complete_lines_are_read_a_run_at_a_time() {
        let text = b"{\"kind\":\"a\"}\n\r\n  {\"kind\":\"b\"} \r\n{\"kind\":\"c\"}\n{\"kind\":\"d\"";
        let (runs, lined) = read(&mut Lines::default(), text);
        let all: Vec<_> = runs.concat();
        let kinds: Vec<_> = all.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(kinds, ["a", "b", "c"]);
        assert_eq!(all[1].0, "{\"kind\":\"b\"}");
        let rest = text.len() - b"{\"kind\":\"d\"".len();
        assert_eq!(lined, Lined { bytes: rest, records: 3, whole: true });
        // Small runs: a line or two each, the same records.
        let (runs, small) = read(&mut Lines::with_chunk_bytes(20), text);
        assert!(runs.len() >= 2, "{runs:?}");
        assert_eq!(runs.concat(), all);
        assert_eq!(small, lined);
    }

    #[test]
    fn a_run_that_is_not_one_object_a_line_is_left_whole() {
        let good = "{\"kind\":\"ok\"}\n";
        // Each parses as an array of as many elements as it has lines, or
        // fails to parse, once its newlines are commas; or is an object that
        // does not start `{"` (which is read here only when it does).
        for bad in [
            "{ \"kind\":\"x\"}\n",
            "{}\n",
            "{\"a\":[1\n2]}\n{\"x\":1},{\"y\":2}\n",
            "{\"a\":[{}\n{}]},{\"c\":1}\n",
            "{\"a\":\"x\ny\"}\n{\"b\":1},{\"c\":2}\n",
            "[{\"kind\":\"x\"}]\n",
            "1\n",
            "\"s\"\n",
            "{\"Records\":[{\"kind\":\"x\"}]}\n",
            "{\"kind\":\"x\"} {\"kind\":\"y\"}\n",
            "{\"kind\":\n\"x\"}\n",
            "\u{feff}{\"kind\":\"x\"}\n",
            "{\"kind\":\"x\",}\n",
        ] {
            // First in the stream, and after a run that reads.
            let (runs, lined) = read(&mut Lines::default(), bad.as_bytes());
            assert_eq!((runs.len(), lined), (0, Lined { bytes: 0, records: 0, whole: false }), "{bad:?}");
            let text = format!("{}{bad}", good.repeat(3));
            let (runs, lined) = read(&mut Lines::with_chunk_bytes(good.len() * 3), text.as_bytes());
            assert_eq!(runs.concat().len(), 3, "{bad:?}");
            assert_eq!(lined, Lined { bytes: good.len() * 3, records: 3, whole: false }, "{bad:?}");
        }
        // A `Records` member that is not an array leaves a record a record.
        let (runs, lined) = read(&mut Lines::default(), b"{\"Records\":1,\"kind\":\"x\"}\n");
        assert_eq!((runs.concat().len(), lined.whole), (1, true));
    }

    #[test]
    fn blank_lines_alone_wait_for_a_record_at_the_start() {
        let (runs, lined) = read(&mut Lines::default(), b"\n \n");
        assert_eq!((runs.len(), lined), (0, Lined { bytes: 0, records: 0, whole: true }));
        let (runs, lined) = read(&mut Lines::default(), b"\n \n{\"kind\":\"a\"}\n");
        assert_eq!((runs.concat().len(), lined), (1, Lined { bytes: 16, records: 1, whole: true }));
        // More than a run's worth: the framer's.
        let (runs, lined) = read(&mut Lines::with_chunk_bytes(2), b"\n \n{\"kind\":\"a\"}\n");
        assert_eq!((runs.len(), lined), (0, Lined { bytes: 0, records: 0, whole: false }));
        let mut lines = Lines::default();
        let lined = lines.parse(b"\n \n", 5, LIMITS, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(lined, Lined { bytes: 3, records: 0, whole: true });
    }

    #[test]
    fn records_over_the_limits_are_left_to_the_framer() {
        let limits = Limits { max_record_bytes: 20, max_depth: 3 };
        let parse = |text: &str| {
            let mut n = 0;
            let lined = Lines::default()
                .parse(text.as_bytes(), 0, limits, |run| {
                    n += run.records.count();
                    Ok::<(), ()>(())
                })
                .unwrap();
            (n, lined)
        };
        // 20 bytes is a record; 21 is not.
        let (n, l) = parse("{\"k\":\"aaaaaaaaaaaa\"}\n{\"k\":\"aaaaaaaaaaaaa\"}\n");
        assert_eq!((n, l), (1, Lined { bytes: 21, records: 1, whole: false }));
        // Three levels, the record's own counted, as the framer counts; then four.
        assert!(parse("{\"a\":{\"b\":[1]}}\n").1.whole);
        assert_eq!(parse("{\"a\":{\"b\":[[1]]}}\n"), (0, Lined { bytes: 0, records: 0, whole: false }));
    }
}
