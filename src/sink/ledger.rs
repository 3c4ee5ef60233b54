//! The ledger: which inputs an archive holds, and how far each was read.
//!
//! On disk it is `_trailship/ledger.ndjson`, an [`InputId`] a line, appended
//! by every checkpoint and never rewritten, so it grows with the archive's
//! history: a line for every input ever read, and a month of an
//! organisation's CloudTrail is a million files. A run asks about its own
//! inputs only. So a run holds, by path, the lines of its own inputs (its
//! `scope`), and of all the others only what finds a renamed or copied file:
//! the hash of its first bytes and where each reading of them ended, in 48
//! bytes a line. Hashes are held cut to 128 bits: they tell files apart,
//! and nothing is signed with them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::num::NonZeroU64;
use std::path::Path;

use serde::Deserialize;

use super::SinkError;
use super::local::{InputId, io_err};

/// The first 128 bits of a SHA-256.
pub type Digest = [u8; 16];

/// `hex` (a SHA-256, as the ledger writes it) cut to a [`Digest`].
pub fn digest(hex: &str) -> Option<Digest> {
    let mut d = [0u8; 16];
    hex::decode_to_slice(hex.get(..32)?, &mut d).ok()?;
    Some(d)
}

/// Where an archived reading of a file ended, how many records it held,
/// and the hash of the bytes before its end (`InputId::tail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub end: u64,
    pub records: u64,
    pub tail: Digest,
}

/// A path's SHA-256, cut to a [`Digest`]: paths are held by it, in 16
/// bytes rather than a path's hundred-odd.
fn path_digest(path: &str) -> Digest {
    use sha2::Digest as _;
    let mut d = [0u8; 16];
    d.copy_from_slice(&sha2::Sha256::digest(path.as_bytes())[..16]);
    d
}

/// One archived reading of a path in scope.
#[derive(Clone, Copy)]
struct Held {
    size: u64,
    mtime_ns: i64,
    /// 64 bits of its head: enough to tell this path's own readings apart.
    head: Option<NonZeroU64>,
}

/// The first 64 bits of a digest.
fn prefix64(d: &Digest) -> u64 {
    u64::from_le_bytes(d[..8].try_into().expect("eight bytes"))
}

fn head64(d: &Digest) -> NonZeroU64 {
    NonZeroU64::new(prefix64(d)).unwrap_or(NonZeroU64::MIN)
}

impl Held {
    fn is(&self, size: u64, mtime_ns: i64) -> bool {
        (self.size, self.mtime_ns) == (size, mtime_ns)
    }
}

/// A path's readings: nearly always one, held in place.
enum Helds {
    One(Held),
    Many(Vec<Held>),
}

impl Helds {
    fn as_slice(&self) -> &[Held] {
        match self {
            Helds::One(h) => std::slice::from_ref(h),
            Helds::Many(v) => v,
        }
    }

    fn push(&mut self, h: Held) {
        match self {
            Helds::One(first) => *self = Helds::Many(vec![*first, h]),
            Helds::Many(v) => v.push(h),
        }
    }
}

/// Nanoseconds since the epoch as the ledger holds them: an `i64` spans
/// 1678 to 2262.
fn ns(t: i128) -> i64 {
    t.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// The paths a run asks the ledger about: each by 64 bits of its digest
/// (a path that collides with one of them only has its lines held when
/// they need not be, and a million inputs take 16 MB), and every path
/// under a prefix (an S3 prefix, whose keys are known only by listing it).
pub struct Scope {
    paths: HashSet<u64>,
    prefixes: Vec<String>,
}

impl Scope {
    pub fn of(paths: impl IntoIterator<Item = String>) -> Scope {
        let mut s = Scope { paths: HashSet::new(), prefixes: Vec::new() };
        s.extend(paths);
        s
    }

    pub fn extend(&mut self, paths: impl IntoIterator<Item = String>) {
        self.paths.extend(paths.into_iter().map(|p| prefix64(&path_digest(&p))));
    }

    /// Every path that starts with `prefix`.
    pub fn add_prefix(&mut self, prefix: String) {
        self.prefixes.push(prefix);
    }

    fn contains(&self, path: &str, d: &Digest) -> bool {
        self.paths.contains(&prefix64(d)) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// What a run knows of the ledger (see the module's comment).
pub struct Ledger {
    /// The paths held whole; `None`: every path (a ledger being written
    /// with no run's inputs to ask about).
    scope: Option<Scope>,
    /// By [`path_digest`].
    paths: HashMap<Digest, Helds>,
    /// Readings of paths too short for a `head`, by [`path_digest`]: their
    /// `tail` covers all they held.
    short: HashMap<Digest, Vec<Reading>>,
    /// Readings of files with a head, loaded: sorted by head.
    heads: Vec<(Digest, Reading)>,
    /// Those recorded since loading.
    added: HashMap<Digest, Vec<Reading>>,
}

/// A ledger line as it is read: borrowed, since most lines are looked at
/// for their hashes only.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    size: u64,
    mtime_ns: i128,
    #[serde(default)]
    head: Option<&'a str>,
    #[serde(default)]
    tail: Option<&'a str>,
    #[serde(default)]
    records: u64,
}

impl Ledger {
    /// Reads the ledger at `path` (none yet: empty), holding by path the
    /// lines of `scope`'s paths (every line's, when `None`).
    pub fn load(path: &Path, scope: Option<Scope>) -> Result<Ledger, SinkError> {
        // Every path in scope will be held by the end of the run, if not now.
        let paths = HashMap::with_capacity(scope.as_ref().map_or(0, |s| s.paths.len()));
        let mut l = Ledger { scope, paths, short: HashMap::new(), heads: Vec::new(), added: HashMap::new() };
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(l),
            Err(e) => return Err(io_err(path, e)),
        };
        let corrupt = |n: usize, detail: String| SinkError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("line {n}: {detail}"),
        };
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut buf = String::new();
        for n in 1.. {
            buf.clear();
            if r.read_line(&mut buf).map_err(|e| io_err(path, e))? == 0 {
                break;
            }
            if buf.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(&buf).map_err(|e| corrupt(n, e.to_string()))?;
            let hash = |h: Option<&str>| match h {
                None => Ok(None),
                Some(h) => digest(h).map(Some).ok_or_else(|| corrupt(n, format!("{h:?} is not a SHA-256"))),
            };
            let (head, tail) = (hash(line.head)?, hash(line.tail)?);
            let reading = tail.map(|tail| Reading { end: line.size, records: line.records, tail });
            if let (Some(h), Some(r)) = (head, reading) {
                l.heads.push((h, r));
            }
            let at = path_digest(&line.path);
            if l.scope.as_ref().is_none_or(|s| s.contains(&line.path, &at)) {
                l.hold(
                    at,
                    Held { size: line.size, mtime_ns: ns(line.mtime_ns), head: head.as_ref().map(head64) },
                    reading,
                );
            }
        }
        // A roll-forward may have appended a journal's inputs twice.
        l.heads.sort_unstable_by_key(|&(h, r)| (h, r.end, r.records, r.tail));
        l.heads.dedup();
        l.heads.shrink_to_fit();
        Ok(l)
    }

    /// Adds an input a checkpoint completed.
    pub fn record(&mut self, i: &InputId) {
        let d = |h: &Option<String>| h.as_deref().and_then(digest);
        let (head, reading) = (d(&i.head), d(&i.tail).map(|tail| Reading { end: i.size, records: i.records, tail }));
        let held = Held { size: i.size, mtime_ns: ns(i.mtime_ns), head: head.as_ref().map(head64) };
        if !self.hold(path_digest(&i.path), held, reading) {
            return;
        }
        if let (Some(h), Some(r)) = (head, reading)
            && !self.heads_of(h).any(|k| *k == r)
        {
            self.added.entry(h).or_default().push(r);
        }
    }

    /// Holds a reading by its path; false if it was held already. One
    /// with a head is found by it, not by path.
    fn hold(&mut self, path: Digest, held: Held, r: Option<Reading>) -> bool {
        use std::collections::hash_map::Entry;
        match self.paths.entry(path) {
            Entry::Occupied(mut e) => {
                if e.get().as_slice().iter().any(|h| h.is(held.size, held.mtime_ns)) {
                    return false;
                }
                e.get_mut().push(held);
            }
            Entry::Vacant(e) => {
                e.insert(Helds::One(held));
            }
        }
        if let (None, Some(r)) = (held.head, r) {
            let short = self.short.entry(path).or_default();
            if !short.contains(&r) {
                short.push(r);
            }
        }
        true
    }

    fn heads_of(&self, h: Digest) -> impl Iterator<Item = &Reading> {
        let at = self.heads.partition_point(|(k, _)| *k < h);
        let loaded = self.heads[at..].iter().take_while(move |(k, _)| *k == h).map(|(_, r)| r);
        loaded.chain(self.added.get(&h).into_iter().flatten())
    }

    /// Whether the ledger holds `input` as it is (path, size and time).
    pub fn contains(&self, input: &InputId) -> bool {
        let held = self.paths.get(&path_digest(&input.path));
        held.is_some_and(|p| p.as_slice().iter().any(|h| h.is(input.size, ns(input.mtime_ns))))
    }

    /// The readings of files with `input`'s first bytes, up to its size
    /// (earlier states of it, under this name or another), and of this path
    /// when it was too short to have first bytes; longest first.
    pub fn readings(&self, input: &InputId) -> Vec<Reading> {
        let by_head = input.head.as_deref().and_then(digest);
        let short = self.short.get(&path_digest(&input.path)).map(Vec::as_slice).unwrap_or_default();
        let mut r: Vec<Reading> = by_head
            .iter()
            .flat_map(|&h| self.heads_of(h))
            .chain(short)
            .filter(|r| r.end <= input.size)
            .copied()
            .collect();
        r.sort_by_key(|r| std::cmp::Reverse(r.end));
        r
    }

    /// Whether the ledger holds `input`'s path read at another size or
    /// time with the same first bytes (or too short a file to tell): then
    /// reading it whole repeats rows. An empty reading held no row.
    pub fn read_before(&self, input: &InputId) -> bool {
        let Some(p) = self.paths.get(&path_digest(&input.path)) else { return false };
        let head = input.head.as_deref().and_then(digest).as_ref().map(head64);
        p.as_slice().iter().filter(|h| h.size > 0).any(|h| h.head.is_none() || head.is_none() || h.head == head)
    }

    /// Paths held whole, and readings held by head alone (for tests).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.paths.len(), self.heads.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(seed: u8) -> String {
        hex::encode([seed; 32])
    }

    fn id(path: &str, size: u64, head: Option<u8>, tail: u8) -> InputId {
        InputId {
            path: path.into(),
            size,
            mtime_ns: size as i128,
            head: head.map(hex),
            tail: Some(hex(tail)),
            records: size / 10,
            ..InputId::default()
        }
    }

    fn write(lines: &[InputId]) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("trailship-ledger-{}-{n}.ndjson", std::process::id()));
        let body: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn a_run_holds_its_own_paths_and_of_the_rest_only_heads() {
        let mut lines = vec![id("/in/a.log", 5000, Some(1), 2), id("/in/a.log", 8000, Some(1), 3)];
        for i in 0..100u32 {
            let mut l = id(&format!("/old/{i}.json.gz"), 6000 + i as u64, Some(9), 4);
            l.head = Some(hex::encode(i.to_le_bytes().repeat(8)));
            lines.push(l);
        }
        lines.push(id("/old/short.log", 100, None, 5));
        // A roll-forward's second append.
        lines.push(lines[2].clone());
        let path = write(&lines);
        let scope = Scope::of(["/in/a.log".to_string(), "/in/new.log".to_string()]);
        let l = Ledger::load(&path, Some(scope)).unwrap();
        assert_eq!(
            l.held(),
            (1, 102),
            "one path in scope held whole; by head, its two readings and the hundred others, once"
        );

        assert!(l.contains(&lines[1]));
        assert!(!l.contains(&id("/in/a.log", 9000, Some(1), 3)));
        // A file of the run with an old file's first bytes (a copy): its
        // reading is found by them, though its path is not held.
        let mut copy = id("/in/new.log", 7000, None, 0);
        copy.head = lines[7].head.clone();
        let r = l.readings(&copy);
        assert_eq!(r, vec![Reading { end: 6005, records: 600, tail: [4; 16] }]);
        assert!(!l.read_before(&copy), "its path was never read");
        // The run's own path: both readings, longest first.
        let grown = id("/in/a.log", 9000, Some(1), 6);
        assert_eq!(l.readings(&grown).iter().map(|r| r.end).collect::<Vec<_>>(), [8000, 5000]);
        assert!(l.read_before(&grown));
        assert!(!l.read_before(&id("/in/a.log", 9000, Some(7), 6)), "other first bytes: another file now");
        // A prefix (an S3 prefix, not listed up front) holds every path under it.
        let mut scope = Scope::of([]);
        scope.add_prefix("/old/".into());
        let l = Ledger::load(&path, Some(scope)).unwrap();
        assert_eq!(l.held().0, 101, "the hundred files and the short one under /old/");
        assert!(l.contains(&lines[101]) && !l.contains(&lines[0]));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn recorded_inputs_are_found_like_loaded_ones() {
        let path = write(&[]);
        let mut l = Ledger::load(&path, Some(Scope::of([]))).unwrap();
        let short = id("/in/s.log", 300, None, 8);
        l.record(&short);
        l.record(&id("/in/b.log", 5000, Some(2), 3));
        l.record(&id("/in/b.log", 5000, Some(2), 3));
        assert!(l.contains(&short));
        assert_eq!(l.readings(&id("/in/s.log", 400, None, 9)), vec![Reading { end: 300, records: 30, tail: [8; 16] }]);
        assert_eq!(l.readings(&id("/elsewhere", 6000, Some(2), 0)).len(), 1, "recorded once");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_bad_line_is_named() {
        let path = write(&[id("/in/a", 5000, Some(1), 2)]);
        let mut body = std::fs::read_to_string(&path).unwrap();
        body.push_str("{\"path\":\"/in/b\",\"size\":1,\"mtime_ns\":1,\"tail\":\"zz\"}\n");
        std::fs::write(&path, body).unwrap();
        let err = Ledger::load(&path, None).err().expect("refuses a bad hash").to_string();
        assert!(err.contains("line 2") && err.contains("not a SHA-256"), "{err}");
        std::fs::remove_file(path).unwrap();
    }
}
