//! Record parsing: UTF-8 repair, then simd-json into a reusable tape.
//!
//! The tape is a flat array of nodes; [`Val`] walks it without building a
//! tree, so normalisers read fields with no allocation per record.

use simd_json::{Node, StaticNode};

/// Reusable parser state (simd-json scratch buffers and the tape allocation).
#[derive(Default)]
pub struct Parser {
    buffers: simd_json::Buffers,
    tape: Vec<Node<'static>>,
    repaired: Vec<u8>,
}

/// What happened to a record's bytes before parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Invalid UTF-8 sequences were replaced with U+FFFD.
    pub utf8_replaced: bool,
}

/// A parsed record: the tape borrows the record's bytes.
pub struct Parsed<'t, 'i> {
    pub root: Val<'t, 'i>,
    pub repairs: Repairs,
    /// Where the parsed buffer starts: the tape's strings point into it.
    base: usize,
    len: usize,
}

impl Parsed<'_, '_> {
    /// The record's text as it was before parsing (`text`, which the caller
    /// copied), tied to the tape; `None` when repairs changed the bytes.
    pub fn source<'a>(&self, text: &'a [u8]) -> Option<Source<'a>> {
        (!self.repairs.utf8_replaced && text.len() == self.len).then_some(Source { base: self.base, text })
    }
}

impl Parser {
    /// A parser that fails on a value nested deeper than `max_depth`, the
    /// root counting one, as the framer counts.
    pub fn with_max_depth(max_depth: usize) -> Self {
        Parser { buffers: simd_json::Buffers::with_max_depth(0, max_depth), ..Default::default() }
    }

    /// Parses `bytes` in place (simd-json unescapes into the buffer), calling
    /// `f` with the root value. The tape allocation is kept for the next call.
    pub fn parse<T>(
        &mut self,
        bytes: &mut Vec<u8>,
        f: impl for<'t, 'i> FnOnce(Result<Parsed<'t, 'i>, String>) -> T,
    ) -> T {
        let mut repairs = Repairs::default();
        if simdutf8::basic::from_utf8(bytes).is_err() {
            // One bad byte must not lose a CloudTrail event: replace and go on.
            self.repaired.clear();
            self.repaired.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes());
            std::mem::swap(bytes, &mut self.repaired);
            repairs.utf8_replaced = true;
        }
        let mut tape = simd_json::tape::Tape(std::mem::take(&mut self.tape)).reset();
        let (base, len) = (bytes.as_ptr() as usize, bytes.len());
        let out = match simd_json::fill_tape(bytes, &mut self.buffers, &mut tape) {
            Ok(()) => f(Ok(Parsed { root: Val(&tape.0), repairs, base, len })),
            Err(e) => f(Err(e.to_string())),
        };
        self.tape = tape.reset().0;
        out
    }
}

/// A CloudTrail log file (`{"Records":[...]}`) parsed a run of records at a
/// time.
///
/// Framing each record and then parsing it runs two structural passes over
/// every byte; parsing the records runs one, and their bounds come from
/// simd-json's own structural index. A run is ~[`CHUNK_BYTES`] of records,
/// cut where the next record starts with the key the first one starts with
/// (AWS writes every record with the same first key and no whitespace). So
/// the text, its parsed copy and the tape of the records being normalised
/// stay in the core's cache: a whole 1.5 MB log file made 7 MB of them, and
/// reading them back missed the cache (benches/README.md, session 29).
///
/// The runs together parse exactly when the whole file would: each is
/// parsed as a log file of its own (`{"Records":[` run `]}`), a cut that is
/// not between two records leaves brackets open and fails, and then the
/// rest of the file is parsed as one run. Only a file that parses whole,
/// with nothing but its `Records` array, is read here: anything else (a
/// broken record, a record nested too deep, other members) is the framer's,
/// from the first record not handed over, and the framer turns each bad
/// record into a dead letter of its own.
pub struct Document {
    buffers: Option<(usize, simd_json::Buffers)>,
    tape: Vec<Node<'static>>,
    buf: Vec<u8>,
    spans: Vec<(u32, u32)>,
    chunk_bytes: usize,
}

impl Default for Document {
    fn default() -> Self {
        Document { buffers: None, tape: Vec::new(), buf: Vec::new(), spans: Vec::new(), chunk_bytes: CHUNK_BYTES }
    }
}

/// Text parsed at a time: with its parsed copy and its tape, well inside a
/// core's L2 cache (cache-simulated misses were least from 16 to 64 KiB,
/// benches/README.md, session 29).
pub const CHUNK_BYTES: usize = 32 << 10;

/// A run of a log file's records, parsed.
pub struct Envelope<'t, 'i, 'a> {
    /// The index in the file of the first of them.
    pub first: usize,
    /// The records.
    pub records: Elements<'t, 'i>,
    /// Each record's text, by index in the run.
    pub spans: Spans<'t, 'a>,
    /// The run's text, tied to the tape.
    pub source: Source<'a>,
    /// The run's text: its records and the commas between them.
    pub text: &'a [u8],
}

/// How far [`Document::parse`] read a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    /// Every record was handed over.
    Done,
    /// The text is not a log file that parses whole: the records from this
    /// index on were not handed over (none, at 0).
    From(usize),
}

/// Each record's text in a run of a log file, found from simd-json's
/// structural index on first use: most runs need none (no dead letter, no
/// `raw_data`, no token candidate anywhere in the run).
pub struct Spans<'t, 'a> {
    /// The run's text; the index counts from [`ENVELOPE`] before it.
    text: &'a [u8],
    structurals: &'t [u32],
    spans: &'t mut Vec<(u32, u32)>,
    records: usize,
    found: Option<bool>,
}

impl<'a> Spans<'_, 'a> {
    /// The text of record `i`. Should the index not read as the tape does
    /// (it is simd-json's own, so it does), the whole run's text.
    pub fn get(&mut self, i: usize) -> &'a [u8] {
        let found = *self.found.get_or_insert_with(|| {
            record_spans(self.text, self.structurals, self.spans) && self.spans.len() == self.records
        });
        match self.spans.get(i) {
            Some(&(a, b)) if found => &self.text[a as usize..b as usize],
            _ => self.text,
        }
    }
}

/// The bytes a CloudTrail log file starts with (after any whitespace).
const ENVELOPE: &[u8] = br#"{"Records":["#;

/// What a run is closed with to parse as a log file.
const CLOSE: &[u8] = b"]}";

/// Whether `text` starts as a CloudTrail log file does.
pub fn is_envelope(text: &[u8]) -> bool {
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
    text[start..].starts_with(ENVELOPE)
}

/// JSON's whitespace (not ASCII's: a form feed is not JSON).
pub(crate) fn json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Where the text between a log file's `{"Records":[` and its closing `]}`
/// starts and ends, when it has them with only JSON whitespace around.
fn records_bounds(text: &[u8]) -> Option<(usize, usize)> {
    let s = text.iter().position(|&b| !json_ws(b))?;
    let end = text.iter().rposition(|&b| !json_ws(b))?;
    if !text[s..].starts_with(ENVELOPE) || text[end] != b'}' {
        return None;
    }
    let e = text[..end].iter().rposition(|&b| !json_ws(b))?;
    let s = s + ENVELOPE.len();
    (text[e] == b']' && s <= e).then_some((s, e))
}

/// What comes between two records when every record starts with the key
/// the first one (at `records[0]`) starts with: `},{"key":`. `None` when the
/// first record does not start with a plain key.
fn record_break(records: &[u8]) -> Option<Vec<u8>> {
    let rest = records.strip_prefix(b"{\"")?;
    let len = rest.iter().take(65).position(|&b| b == b'"')?;
    let key = &rest[..len];
    if key.is_empty() || key.iter().any(|&b| b == b'\\' || b < 0x20) {
        return None;
    }
    Some([&b"},{\""[..], key, b"\":"].concat())
}

impl Document {
    /// A document that parses runs of about `bytes` (tests make them small).
    #[cfg(test)]
    fn with_chunk_bytes(bytes: usize) -> Self {
        Document { chunk_bytes: bytes.max(1), ..Default::default() }
    }

    /// Parses `text` (a copy of each run: `text` stays as received) and
    /// calls `f` with each run of its records, in order, while `f` succeeds;
    /// `Whole::From` when it is not a log file that parses whole with every
    /// record within `max_depth` (counting the envelope's two levels, as the
    /// framer does).
    pub fn parse<'a, E>(
        &mut self,
        text: &'a [u8],
        max_depth: usize,
        mut f: impl for<'t, 'i> FnMut(Envelope<'t, 'i, 'a>) -> Result<(), E>,
    ) -> Result<Whole, E> {
        let Some((s, e)) = records_bounds(text).filter(|_| u32::try_from(text.len()).is_ok()) else {
            return Ok(Whole::From(0));
        };
        let finder = record_break(&text[s..e]).map(|b| memchr::memmem::Finder::new(&b).into_owned());
        let (mut at, mut first) = (s, 0);
        while at < e {
            // The next record break past a run's worth of text, if any.
            let cut = finder.as_ref().and_then(|f| {
                let from = at.checked_add(self.chunk_bytes - 1).filter(|&t| t < e)?;
                f.find(&text[from..e]).map(|i| from + i + 1)
            });
            let parsed = match self.run(text, at, cut.unwrap_or(e), first, max_depth, &mut f) {
                // A cut inside a record: the rest as one run.
                None if cut.is_some() => self.run(text, at, e, first, max_depth, &mut f),
                r => r,
            };
            match parsed {
                None => return Ok(Whole::From(first)),
                Some(Err(err)) => return Err(err),
                Some(Ok((n, end))) => {
                    first += n;
                    // Past the comma between two records.
                    at = end + 1;
                }
            }
        }
        Ok(if first > 0 { Whole::Done } else { Whole::From(0) })
    }

    /// Parses the records in `text[from..to]` and hands them to `f`: how
    /// many, and `to`. `None` when they do not parse as records.
    fn run<'a, E>(
        &mut self,
        text: &'a [u8],
        from: usize,
        to: usize,
        first: usize,
        max_depth: usize,
        f: &mut impl for<'t, 'i> FnMut(Envelope<'t, 'i, 'a>) -> Result<(), E>,
    ) -> Option<Result<(usize, usize), E>> {
        let Document { buffers, tape, buf, spans, chunk_bytes } = self;
        let run = &text[from..to];
        let buffers = buffers_for(buffers, *chunk_bytes, max_depth);
        buf.clear();
        buf.extend_from_slice(ENVELOPE);
        buf.extend_from_slice(run);
        buf.extend_from_slice(CLOSE);
        let len = buf.len();
        buf.resize(len + simd_json::INPUT_PADDING, b' ');
        let base = buf.as_ptr() as usize + ENVELOPE.len();
        let mut t = simd_json::tape::Tape(std::mem::take(tape)).reset();
        let out = match simd_json::fill_tape_padded(buf, len, buffers, &mut t) {
            Err(_) => None,
            // One member, so the array is closed by CLOSE, not inside the run.
            Ok(()) => match Some(Val(&t.0))
                .filter(|root| matches!(root.node(), Node::Object { len: 1, .. }))
                .and_then(|root| root.get("Records"))
                .map(|r| (r, r.node()))
            {
                Some((records, Node::Array { len, .. })) if len > 0 => {
                    let structurals = buffers.structural_indexes();
                    let spans = Spans { text: run, structurals, spans, records: len, found: None };
                    let source = Source { base, text: run };
                    let envelope = Envelope { first, records: records.elements(), spans, source, text: run };
                    Some(f(envelope).map(|()| (len, to)))
                }
                _ => None,
            },
        };
        *tape = t.reset().0;
        out
    }
}

/// simd-json's buffers for runs of about `bytes` nested at most `max_depth`
/// deep, kept in `slot` from run to run while the depth stays the same.
pub(super) fn buffers_for(
    slot: &mut Option<(usize, simd_json::Buffers)>,
    bytes: usize,
    max_depth: usize,
) -> &mut simd_json::Buffers {
    if slot.as_ref().is_none_or(|(d, _)| *d != max_depth) {
        *slot = Some((max_depth, simd_json::Buffers::with_max_depth(bytes, max_depth)));
    }
    &mut slot.as_mut().expect("set above").1
}

/// Each element's text of a run's records, from `structurals`, simd-json's
/// index of the run as parsed (after [`ENVELOPE`], before [`CLOSE`]), in the
/// run's own offsets; false if the index does not read so.
fn record_spans(run: &[u8], structurals: &[u32], out: &mut Vec<(u32, u32)>) -> bool {
    out.clear();
    let pre = ENVELOPE.len();
    // `{`, `"Records"`, `:`, `[`: the envelope's own.
    if structurals.len() < 4 || structurals[3] as usize != pre - 1 {
        return false;
    }
    let mut depth = 0usize;
    let mut start = None;
    for &s in &structurals[4..] {
        let Some(s) = (s as usize).checked_sub(pre) else { return false };
        // Past the run: the `]` that closes it.
        let c = run.get(s).copied().unwrap_or(b']');
        let s32 = s as u32;
        match c {
            b'{' | b'[' => {
                if depth == 0 {
                    start = Some(s32);
                }
                depth += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let Some(st) = start.take() else { return false };
                    out.push((st, s32 + 1));
                }
            }
            // The array's end, or the separator after an element.
            b']' | b',' if depth == 0 => {
                if let Some(st) = start.take() {
                    // A scalar element ends where the whitespace before this begins.
                    let end = st as usize + run[st as usize..s.min(run.len())].trim_ascii_end().len();
                    out.push((st, end as u32));
                }
                if c == b']' {
                    return true;
                }
            }
            // A string or scalar element starts.
            _ if depth == 0 && start.is_none() => start = Some(s32),
            _ => {}
        }
    }
    false
}

/// A JSON value on the tape: the slice starts at the value's node.
#[derive(Clone, Copy)]
pub struct Val<'t, 'i>(&'t [Node<'i>]);

impl<'t, 'i> Val<'t, 'i> {
    /// The value at the tape's start: its root.
    pub(super) fn root(tape: &'t [Node<'i>]) -> Self {
        Val(tape)
    }

    /// Number of tape nodes the value spans.
    #[inline]
    fn span(&self) -> usize {
        match self.0[0] {
            Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
            _ => 1,
        }
    }

    pub fn node(&self) -> Node<'i> {
        self.0[0]
    }

    pub fn as_str(&self) -> Option<&'i str> {
        match self.0[0] {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.0[0] {
            Node::Static(StaticNode::Bool(b)) => Some(b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.0[0], Node::Static(StaticNode::Null))
    }

    pub fn is_object(&self) -> bool {
        matches!(self.0[0], Node::Object { .. })
    }

    pub fn type_name(&self) -> &'static str {
        match self.0[0] {
            Node::String(_) => "string",
            Node::Object { .. } => "object",
            Node::Array { .. } => "array",
            Node::Static(StaticNode::Null) => "null",
            Node::Static(StaticNode::Bool(_)) => "boolean",
            Node::Static(_) => "number",
        }
    }

    /// Iterates an object's members; empty for non-objects.
    pub fn entries(&self) -> Entries<'t, 'i> {
        match self.0[0] {
            Node::Object { len, .. } => Entries { rest: &self.0[1..self.span()], left: len },
            _ => Entries { rest: &[], left: 0 },
        }
    }

    /// Iterates an array's elements; empty for non-arrays.
    pub fn elements(&self) -> Elements<'t, 'i> {
        match self.0[0] {
            Node::Array { len, .. } => Elements { rest: &self.0[1..self.span()], left: len },
            _ => Elements { rest: &[], left: 0 },
        }
    }

    /// Looks a key up in an object (linear: objects in audit records are small).
    pub fn get(&self, key: &str) -> Option<Val<'t, 'i>> {
        self.member(key).map(|(_, v)| v)
    }

    /// `get`, with the member's key as the record holds it (see [`Source`]).
    pub fn member(&self, key: &str) -> Option<(&'i str, Val<'t, 'i>)> {
        // A plain loop over the tape: through `entries()` the compiler called
        // the iterator out of line and stalled on the item it returned
        // (11% of the end-to-end profile).
        let Node::Object { len, .. } = self.0[0] else { return None };
        let mut i = 1;
        for _ in 0..len {
            let Node::String(k) = self.0[i] else { unreachable!("object keys are strings") };
            let v = Val(&self.0[i + 1..]);
            if k.len() == key.len() && k.as_bytes().first() == key.as_bytes().first() && k == key {
                return Some((k, v));
            }
            i += 1 + v.span();
        }
        None
    }

    /// Several `get`s in one pass over the members. A key that is absent
    /// costs `get` a pass over every member, and every record is asked about
    /// keys it lacks (is it an EventList? an EventBridge envelope?).
    pub fn get_many<const N: usize>(&self, keys: [&str; N]) -> [Option<Val<'t, 'i>>; N] {
        let mut found = [None; N];
        let Node::Object { len, .. } = self.0[0] else { return found };
        let mut i = 1;
        for _ in 0..len {
            let Node::String(k) = self.0[i] else { unreachable!("object keys are strings") };
            let v = Val(&self.0[i + 1..]);
            for (slot, key) in found.iter_mut().zip(keys) {
                // The first byte before the call to compare the rest: keys
                // of one length are many (`action`, `before`, `sender`).
                if slot.is_none() && k.len() == key.len() && k.as_bytes().first() == key.as_bytes().first() && k == key
                {
                    *slot = Some(v);
                }
            }
            i += 1 + v.span();
        }
        found
    }

    /// `get` through a dotted path of keys.
    pub fn at(&self, path: &[&str]) -> Option<Val<'t, 'i>> {
        let mut v = *self;
        for k in path {
            v = v.get(k)?;
        }
        Some(v)
    }

    /// A string member, or `None` when absent, null or not a string.
    pub fn get_str(&self, key: &str) -> Option<&'i str> {
        self.get(key).and_then(|v| v.as_str())
    }

    /// Writes the value as compact JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_nodes(self.0, out, None);
    }

    /// Writes the value as compact JSON; a string member whose key `rule`
    /// names is replaced by `[REDACTED:<type>]`.
    pub fn write_json_with(&self, out: &mut Vec<u8>, rule: KeyRule) {
        write_nodes(self.0, out, Some(rule));
    }

    pub fn to_json(&self) -> String {
        let mut v = Vec::new();
        self.write_json(&mut v);
        String::from_utf8(v).expect("JSON writer emits UTF-8")
    }
}

pub struct Entries<'t, 'i> {
    rest: &'t [Node<'i>],
    left: usize,
}

impl<'t, 'i> Iterator for Entries<'t, 'i> {
    type Item = (&'i str, Val<'t, 'i>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let Node::String(key) = self.rest[0] else { unreachable!("object keys are strings") };
        let v = Val(&self.rest[1..]);
        self.rest = &self.rest[1 + v.span()..];
        Some((key, v))
    }
}

#[derive(Clone)]
pub struct Elements<'t, 'i> {
    rest: &'t [Node<'i>],
    left: usize,
}

impl<'t, 'i> Iterator for Elements<'t, 'i> {
    type Item = Val<'t, 'i>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = Val(self.rest);
        self.rest = &self.rest[v.span()..];
        Some(v)
    }
}

/// A record's text as received, beside its tape. Re-serialising nested
/// documents from the tape was most of the cost of normalising CloudTrail
/// (`benches/README.md`); where a document's text is already what the
/// writer would produce, it is copied instead.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    base: usize,
    text: &'a [u8],
}

impl<'a> Source<'a> {
    /// `text` as parsed into the buffer at `base`, byte for byte where a
    /// string may be.
    pub(super) fn new(base: usize, text: &'a [u8]) -> Self {
        Source { base, text }
    }

    /// The text of the value of member `key` (an object member of this
    /// record, as the tape gives it), when that value is an object or array
    /// whose text is byte for byte what [`Val::write_json`] writes: no
    /// whitespace between tokens, no control characters, only the escapes
    /// the writer writes (`\n`, `\\`, ..., never `\"`: [`written_escape`]),
    /// and only integers that the tape holds exactly. Such a text has a `"`
    /// exactly where a string starts or ends, and no byte below 0x20.
    pub fn member_text(&self, key: &str, v: &Val<'_, '_>) -> Option<&'a [u8]> {
        self.member_verbatim(key, v).map(|c| c.text)
    }

    /// [`Source::member_text`], and whether that text holds an escape.
    pub fn member_verbatim(&self, key: &str, v: &Val<'_, '_>) -> Option<Verbatim<'a>> {
        // Strings on the tape point into the parsed buffer at their own
        // offset (simd-json unescapes in place), so the key finds its value.
        let at = (key.as_ptr() as usize).checked_sub(self.base)?;
        let t = self.text;
        let end = at.checked_add(key.len())?;
        if at == 0 || t.len() < end + 3 || t[at - 1] != b'"' || &t[at..end] != key.as_bytes() {
            return None;
        }
        if t[end] != b'"' || t[end + 1] != b':' {
            return None;
        }
        let start = end + 2;
        let open = match v.node() {
            Node::Object { .. } => b'{',
            Node::Array { .. } => b'[',
            _ => return None,
        };
        if t[start] != open {
            return None;
        }
        compact_end(t, start).map(|(e, escapes)| Verbatim { text: &t[start..e], escapes })
    }
}

/// A value's text that is byte for byte what the writer writes.
#[derive(Clone, Copy)]
pub struct Verbatim<'a> {
    pub text: &'a [u8],
    /// Whether it holds a backslash (an escape the writer writes as it is).
    pub escapes: bool,
}

/// Whether a backslash followed by `c` in a copied text may be what
/// [`write_str`] writes. Of JSON's escapes it writes `\\`, `\n`, `\r`, `\t`,
/// `\b` and `\f` as they are; not `\/` or `\u..` (it writes `/` and most
/// characters as themselves), and `\"` is refused too, so that every quote
/// of a copied text starts or ends a string. Any other byte after a
/// backslash is no escape (the text parses): the backslash is the second of
/// a `\\`. Asked of every backslash, that second one too.
#[inline]
fn written_escape(c: u8) -> bool {
    !matches!(c, b'"' | b'/' | b'u')
}

/// The end of the object or array at `t[start]`, if its text is what the
/// writer writes (see [`Source::member_text`]), and whether it holds a
/// backslash. The text is known to parse.
fn compact_end(t: &[u8], start: usize) -> Option<(usize, bool)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has the feature.
        return unsafe { compact_end_avx512(t, start) };
    }
    compact_end_bytes(t, start)
}

/// [`compact_end`] 64 bytes at a time: each test is a mask of the block,
/// where the byte at a time took a branch a byte (2.7% of a CloudTrail run,
/// 4.3% of a GitHub one, benches/README.md, session 35). With no quote after
/// a backslash (refused, see [`written_escape`]), the bytes inside strings
/// are the prefix XOR of the quotes; outside them, the brackets give the
/// depth, and the writer's text has no whitespace, fraction, exponent, `-0`
/// or integer of more than 18 digits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn compact_end_avx512(t: &[u8], start: usize) -> Option<(usize, bool)> {
    use std::arch::x86_64::*;
    /// Bit `i` set where an odd number of bits `0..=i` of `m` are.
    fn prefix_xor(mut m: u64) -> u64 {
        for k in [1, 2, 4, 8, 16, 32] {
            m ^= m << k;
        }
        m
    }
    let eq = |v: __m512i, b: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b as i8));
    let (mut depth, mut in_str, mut run) = (0i32, 0u64, 0u32);
    // The last byte of the block before, outside strings: a digit, a minus;
    // anywhere: a backslash.
    let (mut digit_before, mut minus_before, mut backslash_before) = (0u64, 0u64, 0u64);
    let mut escapes = false;
    let mut pad = [0u8; 64];
    let mut i = start;
    while i < t.len() {
        let left = t.len() - i;
        let (v, valid) = if left >= 64 {
            // SAFETY: 64 bytes from `i` are in `t`.
            (unsafe { _mm512_loadu_si512(t.as_ptr().add(i).cast()) }, u64::MAX)
        } else {
            pad[..left].copy_from_slice(&t[i..]);
            pad[left..].fill(0);
            // SAFETY: the pad is 64 bytes.
            (unsafe { _mm512_loadu_si512(pad.as_ptr().cast()) }, (1u64 << left) - 1)
        };
        let quote = eq(v, b'"');
        // Inside a string from its opening quote up to its closing one.
        let inside = prefix_xor(quote) ^ in_str;
        in_str = ((inside as i64) >> 63) as u64;
        let outside = !inside & !quote & valid;
        let open = (eq(v, b'{') | eq(v, b'[')) & outside;
        let close = (eq(v, b'}') | eq(v, b']')) & outside;
        let mut upto = valid;
        let mut end = None;
        let mut brackets = open | close;
        while brackets != 0 {
            let b = brackets.trailing_zeros();
            brackets &= brackets - 1;
            depth += if (open >> b) & 1 == 1 { 1 } else { -1 };
            if depth == 0 {
                upto = u64::MAX >> (63 - b);
                end = Some(i + b as usize + 1);
                break;
            }
        }
        let out = outside & upto;
        let digit =
            _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8(b'0' as i8)), _mm512_set1_epi8(10)) & out;
        let control = _mm512_cmplt_epu8_mask(v, _mm512_set1_epi8(0x20));
        let mut bad = control & upto;
        // No backslash followed by what the writer would not write there,
        // the block's last by the next block's first byte.
        let backslash = eq(v, b'\\') & upto;
        if backslash | backslash_before != 0 {
            escapes = true;
            let written = !(quote | eq(v, b'/') | eq(v, b'u'));
            bad |= (backslash & !(written >> 1) & !(1 << 63)) | (backslash_before & !written & 1);
        }
        bad |= (eq(v, b' ') | eq(v, b'.')) & out;
        bad |= (eq(v, b'e') | eq(v, b'E')) & out & ((digit << 1) | digit_before);
        bad |= eq(v, b'0') & out & ((eq(v, b'-') << 1) | minus_before);
        // 19 digits in a row, within the block or on from the one before.
        let mut long = digit;
        for k in [1, 2, 4, 8] {
            long &= long >> k;
        }
        long &= (digit >> 16) & (digit >> 17) & (digit >> 18);
        if bad != 0 || long != 0 || run + digit.trailing_ones() >= 19 {
            return None;
        }
        if let Some(end) = end {
            return Some((end, escapes));
        }
        run = if digit == u64::MAX { run + 64 } else { digit.leading_ones() };
        backslash_before = backslash >> 63;
        digit_before = digit >> 63;
        minus_before = (eq(v, b'-') & out) >> 63;
        i += 64;
    }
    None
}

/// [`compact_end`] a byte at a time.
fn compact_end_bytes(t: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut depth = 0usize;
    let mut digits = 0usize;
    let mut escapes = false;
    let mut i = start;
    while i < t.len() {
        let b = t[i];
        if b.is_ascii_digit() {
            // i64 holds 18 digits whatever they are; longer ones may be u64 or f64.
            digits += 1;
            if digits > 18 {
                return None;
            }
            i += 1;
            continue;
        }
        digits = 0;
        match b {
            b'"' => {
                // To the closing quote: no control character, and every
                // backslash followed by what the writer writes after one
                // (see `written_escape`).
                let mut from = i + 1;
                loop {
                    let k = from + next_escape(&t[from..])?;
                    match t[k] {
                        b'"' => {
                            i = k + 1;
                            break;
                        }
                        b'\\' if t.get(k + 1).is_some_and(|&c| written_escape(c)) => {
                            escapes = true;
                            from = k + 1;
                        }
                        _ => return None,
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((i + 1, escapes));
                }
            }
            b',' | b':' => {}
            // `true`, `false`, `null`: the parse checked their spelling.
            b't' | b'n' => i += 3,
            b'f' => i += 4,
            // `-0` is written `0`.
            b'-' if t.get(i + 1) != Some(&b'0') => {}
            // Whitespace, fractions and exponents: the writer's text differs.
            _ => return None,
        }
        i += 1;
    }
    None
}

/// Names the secret type of a member key whose string value must not be written.
pub type KeyRule = fn(&str) -> Option<&'static str>;

/// Serialises tape nodes as compact JSON. Iterative, so depth is no concern.
fn write_nodes(nodes: &[Node<'_>], out: &mut Vec<u8>, rule: Option<KeyRule>) {
    // Each open container: (closing byte, members left).
    let mut stack: Vec<(u8, usize, bool)> = Vec::new();
    let mut i = 0;
    let total = Val(nodes).span();
    while i < total {
        // Separators and keys for the container we are in.
        // Inside an object every value is preceded by its key.
        if let Some((_, _, true)) = stack.last()
            && let Node::String(k) = nodes[i]
        {
            write_str(k, out);
            out.push(b':');
            i += 1;
            if let (Some(rule), Node::String(_)) = (rule, nodes[i])
                && let Some(ty) = rule(k)
            {
                out.extend_from_slice(b"\"[REDACTED:");
                out.extend_from_slice(ty.as_bytes());
                out.extend_from_slice(b"]\"");
                i += 1;
                value_done(&mut stack, out);
                while let Some(&(close, 0, _)) = stack.last() {
                    out.push(close);
                    stack.pop();
                    value_done(&mut stack, out);
                }
                continue;
            }
        }
        match nodes[i] {
            Node::Object { len, .. } => {
                out.push(b'{');
                stack.push((b'}', len, true));
                i += 1;
            }
            Node::Array { len, .. } => {
                out.push(b'[');
                stack.push((b']', len, false));
                i += 1;
            }
            Node::String(s) => {
                write_str(s, out);
                i += 1;
                value_done(&mut stack, out);
            }
            Node::Static(st) => {
                write_static(st, out);
                i += 1;
                value_done(&mut stack, out);
            }
        }
        // Close containers that had no members at all.
        while let Some(&(close, 0, _)) = stack.last() {
            out.push(close);
            stack.pop();
            value_done(&mut stack, out);
        }
    }
}

/// After a complete member value: a comma, or nothing when the container ends
/// (the closing byte is written by the caller's empty-container loop).
fn value_done(stack: &mut [(u8, usize, bool)], out: &mut Vec<u8>) {
    if let Some((_, left, _)) = stack.last_mut() {
        *left -= 1;
        if *left > 0 {
            out.push(b',');
        }
    }
}

fn write_static(st: StaticNode, out: &mut Vec<u8>) {
    use std::io::Write;
    match st {
        StaticNode::Null => out.extend_from_slice(b"null"),
        StaticNode::Bool(true) => out.extend_from_slice(b"true"),
        StaticNode::Bool(false) => out.extend_from_slice(b"false"),
        StaticNode::I64(n) => {
            let _ = write!(out, "{n}");
        }
        StaticNode::U64(n) => {
            let _ = write!(out, "{n}");
        }
        StaticNode::F64(f) => {
            if f.is_finite() {
                let _ = write!(out, "{f:?}");
            } else {
                out.extend_from_slice(b"null");
            }
        }
        #[allow(unreachable_patterns)]
        _ => out.extend_from_slice(b"null"),
    }
}

/// Writes a JSON string literal with the escapes serde_json uses.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(k) = next_escape(&bytes[start..]) {
        let i = start + k;
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The first byte of `s` that a JSON string must escape (`"`, `\\`, or a
/// control character), eight bytes at a time: re-serialising nested JSON
/// (request and response documents, `unmapped`) writes every string of it,
/// and almost none needs an escape.
#[inline]
fn next_escape(s: &[u8]) -> Option<usize> {
    use super::swar::{below, eq, first, load};
    let mut i = 0;
    while i + 8 <= s.len() {
        let v = load(s, i);
        let hit = below(v, 0x20) | eq(v, b'"') | eq(v, b'\\');
        if hit != 0 {
            return Some(i + first(hit));
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_escapes_like_serde_json_at_every_offset() {
        // Escapes next to bytes that borrow or carry in the eight-byte test
        // (0x00, 0x1f, 0x20, 0x7f, 0x80 and multi-byte UTF-8), at every
        // position of a word and of the tail.
        for len in 0..24 {
            for at in 0..len {
                for esc in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{8}', '\u{c}', '\r', '\t'] {
                    for fill in ['a', ' ', '\u{7f}', 'é', '€', '!', '#', '[', ']'] {
                        let mut s: Vec<char> = vec![fill; len];
                        s[at] = esc;
                        let s: String = s.into_iter().collect();
                        let mut out = Vec::new();
                        write_str(&s, &mut out);
                        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
    }

    /// `member_text` of `key` in `doc`, checked against the writer.
    fn member_text(doc: &str, key: &str) -> Option<String> {
        let mut p = Parser::default();
        let original = doc.as_bytes().to_vec();
        let mut b = original.clone();
        p.parse(&mut b, |r| {
            let r = r.unwrap();
            let source = r.source(&original).expect("no repairs");
            let (k, v) = r.root.member(key).expect("member");
            let text = source.member_text(k, &v)?;
            assert_eq!(text, v.to_json().as_bytes(), "a copy must be what the writer writes");
            Some(String::from_utf8(text.to_vec()).unwrap())
        })
    }

    #[test]
    fn member_text_is_copied_only_where_it_is_what_the_writer_writes() {
        let doc =
            r#"{"a":1,"p":{"bucketName":"b","key":"k/é.txt","n":[1,-2,true,false,null,{}],"e":[]},"z":[{"x":"y"}]}"#;
        assert_eq!(
            member_text(doc, "p").as_deref(),
            Some(r#"{"bucketName":"b","key":"k/é.txt","n":[1,-2,true,false,null,{}],"e":[]}"#)
        );
        assert_eq!(member_text(doc, "z").as_deref(), Some(r#"[{"x":"y"}]"#));
        assert_eq!(member_text(doc, "a"), None, "scalars are written from the tape");
        // The escapes the writer writes are its text too.
        assert_eq!(
            member_text(r#"{"p":{"m":"a\nb\tc\\d\r\b\f","\\n":[1]}}"#, "p").as_deref(),
            Some(r#"{"m":"a\nb\tc\\d\r\b\f","\\n":[1]}"#)
        );
        for p in [
            r#"{"a": 1}"#,
            "{\"a\":1\n}",
            r#"{"a":"\"q\""}"#,
            // A quote after an escaped backslash is the string's end, but
            // any quote after a backslash is refused.
            r#"{"a":"x\\"}"#,
            r#"{"a":"\u0001"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"x\/y"}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":12345678901234567890}"#,
        ] {
            let doc = format!(r#"{{"k":1,"p":{p}}}"#);
            assert_eq!(member_text(&doc, "p"), None, "{doc}");
        }
        // The key must be the record's own, unescaped.
        assert_eq!(member_text(r#"{"x\u0071":{"a":1},"pq":{"a":2}}"#, "pq").as_deref(), Some(r#"{"a":2}"#));
        assert_eq!(member_text(r#"{"p\u0071":{"a":1}}"#, "pq"), None);
        // 18 digits are i64 whatever they are; the writer's text then matches.
        assert!(member_text(r#"{"p":[999999999999999999,-999999999999999999]}"#, "p").is_some());
    }

    /// A number below `n` (xorshift).
    fn next(rng: &mut u64, n: u64) -> u64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    }

    /// A JSON value of random shape and spelling: whitespace, escapes,
    /// long and negative numbers, fractions and exponents, now and then.
    fn random_value(rng: &mut u64, depth: usize, out: &mut String) {
        let ws = |rng: &mut u64| if next(rng, 40) == 0 { " " } else { "" };
        match if depth > 3 { 2 + next(rng, 3) } else { next(rng, 5) } {
            0 | 1 => {
                let (open, close, object) = if next(rng, 2) == 0 { ('{', '}', true) } else { ('[', ']', false) };
                out.push(open);
                for k in 0..next(rng, 5) {
                    if k > 0 {
                        out.push_str(ws(rng));
                        out.push(',');
                    }
                    if object {
                        out.push_str(&format!("\"k{}\"", next(rng, 9)));
                        out.push_str(ws(rng));
                        out.push(':');
                    }
                    random_value(rng, depth + 1, out);
                }
                out.push(close);
            }
            2 => {
                out.push('"');
                for _ in 0..next(rng, 30) {
                    // Escapes the writer writes (`\n`, `\\`, ...) and others (`\"`,
                    // `\/`, `\u..`), and a backslash before each.
                    let piece = [
                        "\\\"",
                        "\\n",
                        "\\u00e9",
                        "\\\\",
                        "\\t",
                        "\\\\\\\"",
                        "\\/",
                        "\\u0001",
                        "\\r\\b\\f",
                        "\\\\n",
                        " ",
                        "{[,:]}",
                        "é",
                        "0123456789",
                        "abcxyz",
                    ];
                    let c = piece[(next(rng, 60) as usize).min(piece.len() - 1)];
                    // Whole pieces where a cut would split an escape or a character.
                    let cut =
                        if c.starts_with('\\') || c == "é" { c.len() } else { 1 + next(rng, c.len() as u64) as usize };
                    out.push_str(&c[..cut]);
                }
                out.push('"');
            }
            3 => {
                if next(rng, 8) == 0 {
                    out.push('-');
                }
                let digits: String = (0..1 + next(rng, 22)).map(|_| char::from(b'0' + next(rng, 10) as u8)).collect();
                let digits = digits.trim_start_matches('0');
                out.push_str(if digits.is_empty() { "0" } else { digits });
                match next(rng, 12) {
                    0 => out.push_str(".5"),
                    1 => out.push_str("e3"),
                    2 => out.push_str("E-2"),
                    _ => {}
                }
            }
            _ => out.push_str(["true", "false", "null"][next(rng, 3) as usize]),
        }
    }

    #[test]
    fn compact_end_finds_what_the_writer_writes_whatever_the_block_edges() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let (mut copied, mut tried) = (0, 0);
        for round in 0..20_000u64 {
            let mut value = String::new();
            while !value.starts_with(['{', '[']) {
                value.clear();
                random_value(&mut rng, 0, &mut value);
            }
            // What follows the value is not its own: spaces, a fraction.
            let text = format!("{value} , \"z\" : 1.5e3 \t\\n{}", " ".repeat((round % 70) as usize));
            let mut b = value.clone().into_bytes();
            let Ok(written) = Parser::default().parse(&mut b, |r| r.map(|p| p.root.to_json())) else { continue };
            tried += 1;
            let end = compact_end(text.as_bytes(), 0);
            assert_eq!(end, compact_end_bytes(text.as_bytes(), 0), "{text}");
            if let Some((end, escapes)) = end {
                assert_eq!(&text[..end], written, "a copy must be what the writer writes");
                assert_eq!(escapes, written.contains('\\'), "{text}");
                copied += 1;
            }
        }
        // Both kinds were met: documents copied, and documents refused.
        assert!(copied > tried / 10 && copied < tried * 9 / 10, "{copied} of {tried}");
    }

    fn roundtrip(s: &str) -> String {
        let mut p = Parser::default();
        let mut b = s.as_bytes().to_vec();
        p.parse(&mut b, |r| r.unwrap().root.to_json())
    }

    #[test]
    fn writer_matches_serde_json() {
        for s in [
            r#"{"a":1,"b":[true,false,null,{"c":"x\"y\\z\n"}],"d":{},"e":[],"f":-1.5,"g":{"h":[[],[{}]]}}"#,
            r#"[]"#,
            r#""\u0001\t""#,
            r#"{"a":{"b":{"c":[1,2,{"d":[]}]}},"z":18446744073709551615}"#,
        ] {
            let expected = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(s).unwrap()).unwrap();
            assert_eq!(roundtrip(s), expected, "for {s}");
        }
    }

    #[test]
    fn invalid_utf8_is_repaired() {
        let mut p = Parser::default();
        let mut b = b"{\"a\":\"x\xffy\"}".to_vec();
        p.parse(&mut b, |r| {
            let r = r.unwrap();
            assert!(r.repairs.utf8_replaced);
            assert_eq!(r.root.get_str("a"), Some("x\u{fffd}y"));
        });
    }

    #[test]
    fn lookups() {
        let mut p = Parser::default();
        let mut b = br#"{"a":{"b":[1,{"c":"d"}]},"e":"f"}"#.to_vec();
        p.parse(&mut b, |r| {
            let root = r.unwrap().root;
            assert_eq!(root.get_str("e"), Some("f"));
            let arr: Vec<_> = root.at(&["a", "b"]).unwrap().elements().collect();
            assert_eq!(arr.len(), 2);
            assert_eq!(arr[1].get_str("c"), Some("d"));
            assert!(root.get("zz").is_none());
        });
    }
}

#[cfg(test)]
mod document_tests {
    use super::*;

    /// Each record handed over (its index, its JSON as parsed, its text and
    /// the text of its run), and how far the document read.
    #[allow(clippy::type_complexity)]
    fn read(doc: &mut Document, text: &[u8], depth: usize) -> (Vec<(usize, String, String, String)>, Whole) {
        let mut got = Vec::new();
        let whole = doc
            .parse(text, depth, |mut e| {
                let records: Vec<String> = e.records.map(|v| v.to_json()).collect();
                for (i, json) in records.into_iter().enumerate() {
                    let own = String::from_utf8_lossy(e.spans.get(i)).into_owned();
                    got.push((e.first + i, json, own, String::from_utf8_lossy(e.text).into_owned()));
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        (got, whole)
    }

    fn whole(text: &[u8], depth: usize) -> Option<Vec<(String, String)>> {
        match read(&mut Document::default(), text, depth) {
            (got, Whole::Done) => Some(got.into_iter().map(|(_, json, own, _)| (json, own)).collect()),
            (got, Whole::From(0)) if got.is_empty() => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_log_file_parses_whole_with_each_records_text() {
        let text = br#" {"Records":[{"a":1,"b":[1,2],"s":"]},"}, "x" ,3 ,{"c":{"d":"e"}} , [] ]}
"#;
        let got = whole(text, 64).expect("parses whole");
        let want = [
            (r#"{"a":1,"b":[1,2],"s":"]},"}"#, r#"{"a":1,"b":[1,2],"s":"]},"}"#),
            (r#""x""#, r#""x""#),
            ("3", "3"),
            (r#"{"c":{"d":"e"}}"#, r#"{"c":{"d":"e"}}"#),
            ("[]", "[]"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn records_are_read_a_run_at_a_time_cut_between_records() {
        let records: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    r#"{{"eventVersion":"1.0{}","n":{i},"s":"{}","o":{{"eventVersion":2}}}}"#,
                    i % 10,
                    "x".repeat(i)
                )
            })
            .collect();
        let text = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        for bytes in [1, 100, 1000, CHUNK_BYTES] {
            let (got, whole) = read(&mut Document::with_chunk_bytes(bytes), text.as_bytes(), 64);
            assert_eq!(whole, Whole::Done);
            let mut runs: Vec<&str> = got.iter().map(|g| g.3.as_str()).collect();
            runs.dedup();
            match bytes {
                1 => assert_eq!(runs.len(), 40, "a run a record"),
                CHUNK_BYTES => assert_eq!(runs.len(), 1, "the file in one run"),
                _ => assert!(runs.len() > 1 && runs.len() < 40, "cut into {} runs of {bytes} bytes", runs.len()),
            }
            // The runs are the file's records and the commas between them, in order.
            assert_eq!(runs.join(","), records.join(","), "runs of {bytes} bytes");
            assert_eq!(got.len(), records.len());
            for (i, (at, json, own, _)) in got.iter().enumerate() {
                assert_eq!((*at, json, own), (i, &records[i], &records[i]), "runs of {bytes} bytes");
            }
        }
    }

    #[test]
    fn a_cut_inside_a_record_reads_the_rest_as_one_run() {
        // Record 1 holds objects that start with the records' first key.
        let text = br#"{"Records":[{"k":0},{"k":1,"a":[{"k":2},{"k":3}],"b":{"k":4}},{"k":5},{"k":6}]}"#;
        let (got, whole) = read(&mut Document::with_chunk_bytes(1), text, 64);
        assert_eq!(whole, Whole::Done);
        let got: Vec<(usize, &str, &str)> = got.iter().map(|g| (g.0, g.2.as_str(), g.3.as_str())).collect();
        let rest = r#"{"k":1,"a":[{"k":2},{"k":3}],"b":{"k":4}},{"k":5},{"k":6}"#;
        assert_eq!(
            got,
            [
                (0, r#"{"k":0}"#, r#"{"k":0}"#),
                (1, r#"{"k":1,"a":[{"k":2},{"k":3}],"b":{"k":4}}"#, rest),
                (2, r#"{"k":5}"#, rest),
                (3, r#"{"k":6}"#, rest),
            ]
        );
    }

    #[test]
    fn a_broken_record_leaves_the_records_from_its_run_on_to_the_framer() {
        let text = br#"{"Records":[{"k":0},{"k":1},{"k":2,},{"k":3}]}"#;
        let (got, whole) = read(&mut Document::with_chunk_bytes(1), text, 64);
        assert_eq!(whole, Whole::From(2));
        assert_eq!(got.iter().map(|g| (g.0, g.1.as_str())).collect::<Vec<_>>(), [(0, r#"{"k":0}"#), (1, r#"{"k":1}"#)]);
        // Read whole, the same file yields nothing.
        assert_eq!(read(&mut Document::default(), text, 64), (vec![], Whole::From(0)));
        // Too deep in a later run: the depth counts the envelope in every run.
        let deep = br#"{"Records":[{"k":0},{"k":{"a":[1]}}]}"#;
        assert_eq!(read(&mut Document::with_chunk_bytes(1), deep, 4).1, Whole::From(1));
        assert_eq!(read(&mut Document::with_chunk_bytes(1), deep, 5).1, Whole::Done);
    }

    #[test]
    fn anything_else_is_left_to_the_framer() {
        for text in [
            &br#"{"Records":[{"a":1},{"b":2]}"#[..],           // broken inside a record
            br#"{"Records":[]}"#,                              // empty: the framer's dead letter
            br#"{"Records":[{"a":1}],"next":2}"#,              // another member
            br#"{"Records":[{"a":1}],"next":[2]}"#,            // another member, ending as the array does
            br#"{"Records":[{"a":1}]} {"Records":[{"b":2}]}"#, // two envelopes
            br#"{"Records":[{"a":1},{"a":2}]} {"Records":[{"a":3}]}"#, // two envelopes, cut
            br#"{"records":[{"a":1}]}"#,                       // not CloudTrail's
            b"{\"Records\":[{\"a\":\"\xff\"}]}",               // invalid UTF-8
            b"\x0c{\"Records\":[{\"a\":1}]}",                  // not JSON's whitespace
            br#"{"Records":[{"a":1}]"#,                        // cut short
            br#"{"a":1}"#,
        ] {
            for doc in [Document::default(), Document::with_chunk_bytes(1)] {
                let mut doc = doc;
                let (got, whole) = read(&mut doc, text, 64);
                let done = got.iter().map(|g| g.0).max().map_or(0, |i| i + 1);
                assert!(whole != Whole::Done, "{}", String::from_utf8_lossy(text));
                assert_eq!(whole, Whole::From(done), "{}", String::from_utf8_lossy(text));
            }
            assert_eq!(whole(text, 64), None, "{}", String::from_utf8_lossy(text));
        }
        // The envelope's two levels count, as they do for the framer.
        let deep = br#"{"Records":[{"a":{"b":[1]}}]}"#;
        assert!(whole(deep, 5).is_some());
        assert_eq!(whole(deep, 4), None);
    }

    #[test]
    fn a_runs_source_is_its_own_text() {
        let text = br#"{"Records":[{"k":0,"d":{"x":[1,"y"]}},{"k":1,"d":{"x":[2,"z"]}}]}"#;
        let mut docs = Vec::new();
        Document::with_chunk_bytes(1)
            .parse(text, 64, |e| {
                for r in e.records {
                    let d = r.get("d").unwrap();
                    let key = r.0.iter().find_map(|n| match n {
                        Node::String(s) if *s == "d" => Some(*s),
                        _ => None,
                    });
                    docs.push(e.source.member_text(key.unwrap(), &d).map(|t| String::from_utf8_lossy(t).into_owned()));
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(docs, [Some(r#"{"x":[1,"y"]}"#.to_string()), Some(r#"{"x":[2,"z"]}"#.to_string())]);
    }
}
