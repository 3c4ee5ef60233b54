//! Sources: where input bytes come from. Files and directories for backfill
//! (and the embedded samples); `.gz` is recognised by its magic bytes, not
//! its name, and multi-member gzip (data appended after the first member) is
//! read whole.

pub mod gzip;
pub mod kafka;
pub mod object;
pub mod s3_notify;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

use sha2::Digest as _;
use std::path::{Path, PathBuf};

use crate::sink::ledger::{Reading, Scope};
use crate::sink::local::InputId;

/// One input stream.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    /// Sample logs compiled into the binary (the embedded default).
    Embedded {
        name: &'static str,
        bytes: &'static [u8],
    },
    /// An object in S3 (backfill from a bucket).
    Object(Arc<object::Object>),
}

impl Input {
    pub fn display(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Embedded { name, .. } => format!("embedded:{name}"),
            Input::Object(o) => format!("s3://{}/{}", o.bucket, o.key),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input path {path} does not exist or cannot be read: {source}")]
    Missing { path: PathBuf, source: io::Error },
    #[error("walking {path}: {source}")]
    Walk { path: PathBuf, source: walkdir::Error },
    #[error("input path {path} is in what trailship wrote to the archive: it does not read its own output")]
    InArchive { path: PathBuf },
    #[error("cannot list {url}: {reason}")]
    S3 { url: String, reason: String },
}

/// A run's inputs, a directory at a time, in order. A run asks first what
/// it will ask the archive's ledger about ([`Inputs::scope`]), then lists
/// them as its threads take them, holding a directory's inputs at a time,
/// not a walk's.
pub trait Inputs: Sync {
    fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_>;

    /// What a run will ask the ledger about, and how many inputs there
    /// are (`None`: not known without listing them all). By default, from
    /// a listing.
    fn scope(&self) -> Result<(Scope, Option<usize>), SourceError> {
        let (mut scope, mut n) = (Scope::of([]), 0);
        for dir in self.dirs() {
            let dir = dir?;
            n += dir.len();
            scope.extend(dir.iter().map(ledger_path));
        }
        Ok((scope, Some(n)))
    }
}

impl Inputs for [Input] {
    fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
        Box::new(by_directory(self.iter().cloned().map(Ok)))
    }
}

impl Inputs for Vec<Input> {
    fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
        self.as_slice().dirs()
    }
}

impl<const N: usize> Inputs for [Input; N] {
    fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
        self.as_slice().dirs()
    }
}

impl Input {
    /// The directory (or key prefix) the input is in, which a run's
    /// threads take whole: a CloudTrail directory is one account, region
    /// and day, so one partition. As bytes: comparing paths component by
    /// component was a tenth of listing a million files.
    fn dir(&self) -> &[u8] {
        let whole = match self {
            Input::File(p) => p.as_os_str().as_encoded_bytes(),
            Input::Embedded { .. } => b"",
            Input::Object(o) => o.key.as_bytes(),
        };
        &whole[..whole.iter().rposition(|&b| b == b'/').unwrap_or(0)]
    }
}

/// The most inputs of one directory taken together: a flat prefix of a
/// million objects is handed out (and held) this many at a time.
const DIR_INPUTS: usize = 16_384;

/// Consecutive inputs of one directory, together (up to [`DIR_INPUTS`]);
/// an error on its own.
fn by_directory(
    inputs: impl Iterator<Item = Result<Input, SourceError>> + Send,
) -> impl Iterator<Item = Result<Vec<Input>, SourceError>> + Send {
    let mut inputs = inputs.peekable();
    std::iter::from_fn(move || {
        let mut dir = match inputs.next()? {
            Ok(first) => vec![first],
            Err(e) => return Some(Err(e)),
        };
        while let Some(Ok(next)) = inputs.peek() {
            if next.dir() != dir[0].dir() || dir.len() == DIR_INPUTS {
                break;
            }
            dir.extend(inputs.next().and_then(Result::ok));
        }
        Some(Ok(dir))
    })
}

/// Files, directories (recursively, in name order, skipping hidden
/// entries) and `s3://BUCKET/PREFIX`es (through `s3`, see
/// [`object::S3Source::list`]) as inputs. What trailship writes into
/// `archive` is never read: an archive kept inside an input directory would
/// otherwise take its own objects and dead letters in as input on every
/// later run. A walk steps around it; naming a path inside it is an error.
/// Anything else under the archive's root is the operator's, and read.
pub struct Listing<'a> {
    paths: &'a [PathBuf],
    s3: &'a object::S3Source,
    archive: &'a Path,
}

impl<'a> Listing<'a> {
    /// Checks that every local path exists and is not the archive's.
    pub fn new(paths: &'a [PathBuf], archive: &'a Path, s3: &'a object::S3Source) -> Result<Self, SourceError> {
        let owned = owned(archive);
        for p in paths.iter().filter(|p| s3_url(p).is_none()) {
            std::fs::metadata(p).map_err(|e| SourceError::Missing { path: p.clone(), source: e })?;
            if std::fs::canonicalize(p).is_ok_and(|c| owned.iter().any(|o| c.starts_with(o))) {
                return Err(SourceError::InArchive { path: p.clone() });
            }
        }
        Ok(Listing { paths, s3, archive })
    }

    fn inputs(
        &self,
        p: &'a PathBuf,
        owned: &Arc<Vec<PathBuf>>,
    ) -> Box<dyn Iterator<Item = Result<Input, SourceError>> + Send + '_> {
        if let Some(url) = s3_url(p) {
            return match self.s3.list(url) {
                Ok(pages) => Box::new(pages),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
        }
        match std::fs::metadata(p) {
            Err(e) => Box::new(std::iter::once(Err(SourceError::Missing { path: p.clone(), source: e }))),
            Ok(meta) if !meta.is_dir() => Box::new(std::iter::once(Ok(Input::File(p.clone())))),
            Ok(_) => {
                let owned = Arc::clone(owned);
                let walker = walkdir::WalkDir::new(p).sort_by_file_name().into_iter().filter_entry(move |e| {
                    let hidden = e.file_name().as_encoded_bytes().starts_with(b".");
                    // Only directories are looked up: what is below one is
                    // pruned with it.
                    let ours =
                        || !owned.is_empty() && std::fs::canonicalize(e.path()).is_ok_and(|c| owned.contains(&c));
                    e.depth() == 0 || !(hidden || e.file_type().is_dir() && ours())
                });
                Box::new(walker.filter_map(move |entry| match entry {
                    Err(e) => Some(Err(SourceError::Walk { path: p.clone(), source: e })),
                    Ok(entry) if entry.file_type().is_file() => Some(Ok(Input::File(entry.into_path()))),
                    Ok(_) => None,
                }))
            }
        }
    }
}

impl Inputs for Listing<'_> {
    fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
        // Found again each listing: the run's own listing comes after the
        // archive is opened, and its datasets appear as the run goes.
        let owned = Arc::new(owned(self.archive));
        Box::new(by_directory(self.paths.iter().flat_map(move |p| self.inputs(p, &owned))))
    }

    /// Files and walks by path; an S3 prefix as a prefix, whose listing is
    /// a request per thousand keys: only its first page is asked for here,
    /// so that a prefix that cannot be listed stops the run before it
    /// writes anything.
    fn scope(&self) -> Result<(Scope, Option<usize>), SourceError> {
        let (mut scope, mut n) = (Scope::of([]), Some(0));
        let owned = Arc::new(owned(self.archive));
        for p in self.paths {
            if let Some(url) = s3_url(p) {
                if let Some(Err(e)) = self.s3.list(url)?.next() {
                    return Err(e);
                }
                scope.add_prefix(url.to_owned());
                n = None;
                continue;
            }
            for input in self.inputs(p, &owned) {
                scope.extend([ledger_path(&input?)]);
                n = n.map(|n| n + 1);
            }
        }
        Ok((scope, n))
    }
}

/// What trailship writes into `archive`, as canonical paths: those there
/// now as they resolve, and the rest as they will be (none while the
/// archive itself is not there: it holds nothing to step around).
fn owned(archive: &Path) -> Vec<PathBuf> {
    let Ok(root) = std::fs::canonicalize(archive) else { return Vec::new() };
    ARCHIVE_DIRS
        .iter()
        .copied()
        .chain(crate::ocsf::Class::ALL.iter().map(|c| c.dataset()))
        .map(|d| std::fs::canonicalize(archive.join(d)).unwrap_or_else(|_| root.join(d)))
        .collect()
}

/// `p` as an `s3://` URL, if it is one.
fn s3_url(p: &Path) -> Option<&str> {
    p.to_str().filter(|u| u.starts_with("s3://"))
}

/// Every input of `paths`, listed at once ([`Listing`]).
pub fn expand(paths: &[PathBuf], archive: &Path, s3: &object::S3Source) -> Result<Vec<Input>, SourceError> {
    let mut out = Vec::new();
    for dir in Listing::new(paths, archive, s3)?.dirs() {
        out.extend(dir?);
    }
    Ok(out)
}

/// What trailship writes at an archive's root besides its datasets: its
/// state, dead letters, digest chain, and the service's integrity records.
const ARCHIVE_DIRS: &[&str] = &["_trailship", "_dead_letter", "_digests", "integrity"];

/// Counts the (decompressed) bytes read, for throughput reporting.
pub struct Counting<R> {
    inner: R,
    pub bytes: u64,
    /// The bytes are inflated from gzip: offsets in them are not the file's.
    pub compressed: bool,
    /// An object's SHA-256 and version, known before it is read.
    pub fetched: Option<Fetched>,
}

/// What was read of an object, for its rows' `trailship.source_object`.
pub struct Fetched {
    pub sha256: String,
    pub version_id: Option<String>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// An input's decompressed bytes, counted.
pub type Reader = Counting<Decoded>;

/// An input's bytes, inflated if they are gzip.
pub enum Decoded {
    Plain(Box<dyn BufRead + Send>),
    Gzip(gzip::Gzip),
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(g) => g.read(buf),
        }
    }
}

impl Reader {
    /// Plain bytes from `r`, as [`open`] reads an input that is not gzip.
    #[cfg(test)]
    pub(crate) fn plain(r: impl BufRead + Send + 'static) -> Self {
        Counting { inner: Decoded::Plain(Box::new(r)), bytes: 0, compressed: false, fetched: None }
    }

    /// A gzip input inflated whole into `out` ([`gzip::Gzip::inflate_whole`]),
    /// or `None`, with nothing read, when it is to be read as a stream.
    pub fn inflate_whole(&mut self, out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        let Decoded::Gzip(g) = &mut self.inner else { return None };
        let n = g.inflate_whole(out, limit)?;
        self.bytes += n as u64;
        Some(n)
    }
}

/// Bytes at a file's start whose hash identifies it across renames and
/// growth (`InputId::head`).
pub const HEAD: usize = 4096;

/// An input's ledger identity as it is now: path, size and time, which say
/// whether the ledger holds it as it is. `fingerprint` adds the rest.
pub fn identify(input: &Input) -> io::Result<InputId> {
    let path = ledger_path(input);
    match input {
        Input::File(p) => {
            let meta = std::fs::metadata(p)?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Ok(InputId { path, size: meta.len(), mtime_ns, ..InputId::default() })
        }
        Input::Embedded { bytes, .. } => Ok(InputId { path, size: bytes.len() as u64, ..InputId::default() }),
        // An object never grows: a new one under the key is a new input.
        Input::Object(o) => {
            Ok(InputId { path, size: o.size, mtime_ns: o.modified_ms as i128 * 1_000_000, ..InputId::default() })
        }
    }
}

/// The path the ledger knows `input` by (`InputId::path`).
pub fn ledger_path(input: &Input) -> String {
    match input {
        Input::File(p) => absolute(p),
        Input::Embedded { .. } | Input::Object(_) => input.display(),
    }
}

/// Hashes the first and the last `HEAD` bytes of a file identified as `id`
/// (all of a shorter one: its tail): only for an input the ledger does not
/// hold as it is, so that a run over archived inputs reads none of them.
pub fn fingerprint(input: &Input, id: &mut InputId) -> io::Result<()> {
    let Input::File(p) = input else { return Ok(()) };
    let mut f = File::open(p)?;
    if id.size >= HEAD as u64 {
        id.head = hash_before(&mut f, HEAD as u64)?;
    }
    id.tail = hash_before(&mut f, id.size)?;
    Ok(())
}

/// Ends the reading `id` at `end`, before what is left for a later one
/// (an unfinished last record): its size and tail become those of the
/// bytes read.
pub fn end_reading_at(input: &Input, id: &mut InputId, end: u64) -> io::Result<()> {
    id.size = end;
    id.tail = None;
    let Input::File(p) = input else { return Ok(()) };
    id.tail = hash_before(&mut File::open(p)?, end)?;
    Ok(())
}

/// Whether `input` may still be being written: a file changed within
/// `settle` ([`SETTLE`] for text, [`GZIP_SETTLE`] for gzip). Of such a
/// file, an unfinished last record is left for a later run (text), or the
/// whole file is (gzip cut short, see [`gzip_complete`]); of anything else,
/// it is a dead letter.
pub fn may_grow(input: &Input, id: &InputId, settle: std::time::Duration) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let age_ns = now.as_nanos() as i128 - id.mtime_ns;
    matches!(input, Input::File(_)) && age_ns < settle.as_nanos() as i128
}

/// Whether the gzip stream of `input` from `id.from` up to `id.size` ends
/// where a member does. A file a compressor is still writing does not;
/// reading it would archive its first records and dead-letter the rest,
/// then read it whole again once it is done. For a stream too long to
/// hold in memory and check as it is read (`pipeline::Growing::Gzip`):
/// it costs an inflate. An error says nothing of that: the reading
/// reports it.
pub fn gzip_complete(input: &Input, id: &InputId) -> bool {
    let check = || io::copy(&mut open(input, id)?, &mut io::sink());
    !matches!(check(), Err(e) if e.kind() == io::ErrorKind::UnexpectedEof)
}

/// How long after its last change a file's unfinished last record is taken
/// to be all there will be of it (its writer died mid-line): then it is a
/// dead letter. Five minutes, Filebeat's `close_inactive`.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(300);

/// The same for a gzip file, whose check is not free when it is long
/// (an inflate before the reading): a compressor writes its output as it
/// goes, so one untouched for half a minute has finished, or stopped.
pub const GZIP_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The buffer a file or an object is read through. A read of at least this
/// much into an empty buffer goes around it.
pub const READ_BUFFER: usize = 256 << 10;

/// A reader of `input`'s decompressed bytes, from `id.from` up to `id.size`
/// as identified: what a file gains meanwhile is for a later run, so that
/// the ledger's size is where this reading stopped.
pub fn open(input: &Input, id: &InputId) -> io::Result<Reader> {
    let mut fetched = None;
    let len = match input {
        Input::File(_) => id.size.saturating_sub(id.from),
        Input::Embedded { bytes, .. } => bytes.len() as u64,
        Input::Object(o) => o.size,
    };
    let reader: Box<dyn BufRead + Send> = match input {
        Input::File(p) => {
            let mut f = File::open(p)?;
            f.seek(SeekFrom::Start(id.from))?;
            Box::new(BufReader::with_capacity(READ_BUFFER, f.take(len)))
        }
        Input::Embedded { bytes, .. } => Box::new(*bytes),
        Input::Object(o) => {
            let body = o.read().map_err(io::Error::other)?;
            fetched = Some(Fetched { sha256: body.sha256, version_id: body.version_id });
            Box::new(BufReader::with_capacity(READ_BUFFER, body.reader))
        }
    };
    let (inner, compressed) = decompress(reader, len)?;
    Ok(Counting { inner, bytes: 0, compressed, fetched })
}

/// Whether `input` can be read on from where an archived reading of a file
/// with the same first bytes ended: the bytes before that end are still the
/// ones read then (so the file grew, and was not rewritten), and a record
/// starts there: at a line's start in text (the reading ended after a
/// newline, or what was appended starts with one), or at a gzip member's
/// header (where what was appended to a whole gzip file begins).
pub fn continues(input: &Input, r: &Reading) -> io::Result<bool> {
    let Input::File(p) = input else { return Ok(false) };
    let at = r.end;
    if at == 0 {
        return Ok(false);
    }
    let mut f = File::open(p)?;
    if hash_before(&mut f, at)?.as_deref().and_then(crate::sink::ledger::digest) != Some(r.tail) {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 3];
    let gz = read_full(&mut f, &mut magic)? == 3 && magic == GZIP_MEMBER;
    f.seek(SeekFrom::Start(at - 1))?;
    let mut b = [0u8; 4];
    let n = read_full(&mut f, &mut b)?;
    // Nothing after it: the same bytes (under another name, say).
    if n <= 1 {
        return Ok(true);
    }
    // A member's header may be only begun: what there is of it is read on
    // from (and, cut short, left whole or dead-lettered by the reading).
    Ok(if gz { b[1..n] == GZIP_MEMBER[..n - 1] } else { b[0] == b'\n' || matches!(b[1], b'\n' | b'\r') })
}

/// A gzip member's first bytes: magic, then deflate.
const GZIP_MEMBER: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The SHA-256 (hex) of the `HEAD` bytes before `end` (all of them, if
/// fewer), if the file holds them.
fn hash_before(f: &mut File, end: u64) -> io::Result<Option<String>> {
    let n = end.min(HEAD as u64) as usize;
    let mut buf = [0u8; HEAD];
    f.seek(SeekFrom::Start(end - n as u64))?;
    Ok((n > 0 && read_full(f, &mut buf[..n])? == n).then(|| hex::encode(sha2::Sha256::digest(&buf[..n]))))
}

/// Reads until `buf` is full or the file ends; how much was read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A source whose read failed part way: the error, once, then the rest
/// (nothing, for a stream that ends there).
pub(crate) struct Failing<R> {
    pub err: Option<io::Error>,
    pub rest: R,
}

impl<R: Read> Read for Failing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.err.take() {
            Some(e) => Err(e),
            None => self.rest.read(buf),
        }
    }
}

impl<R: BufRead> BufRead for Failing<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.err.take() {
            Some(e) => Err(e),
            None => self.rest.fill_buf(),
        }
    }

    fn consume(&mut self, n: usize) {
        self.rest.consume(n)
    }
}

/// `len`: how many bytes `r` holds, as listed (a hint: the reading tells).
fn decompress(mut r: Box<dyn BufRead + Send>, len: u64) -> io::Result<(Decoded, bool)> {
    let head = r.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok((Decoded::Gzip(gzip::Gzip::new(r, Some(len))), true))
    } else {
        Ok((Decoded::Plain(r), false))
    }
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_come_a_directory_at_a_time_and_an_error_on_its_own() {
        let file = |p: &str| Ok(Input::File(PathBuf::from(p)));
        let gone = || Err(SourceError::InArchive { path: "x".into() });
        let listed = vec![file("a/1"), file("a/2"), file("a/b/1"), gone(), file("a/b/2"), file("c")];
        let dirs: Vec<_> = by_directory(listed.into_iter())
            .map(|d| d.map(|d| d.iter().map(Input::display).collect::<Vec<_>>()).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(dirs.len(), 5, "{dirs:?}");
        assert_eq!(dirs[0].as_ref().unwrap(), &["a/1", "a/2"]);
        assert_eq!(dirs[1].as_ref().unwrap(), &["a/b/1"]);
        assert!(dirs[2].is_err());
        assert_eq!(dirs[3].as_ref().unwrap(), &["a/b/2"]);
        assert_eq!(dirs[4].as_ref().unwrap(), &["c"]);
        // A flat directory is handed out in parts.
        let flat = (0..DIR_INPUTS + 10).map(|i| file(&format!("flat/{i}")));
        let sizes: Vec<usize> = by_directory(flat).map(|d| d.unwrap().len()).collect();
        assert_eq!(sizes, [DIR_INPUTS, 10]);
    }
}
