//! Sources: where input bytes come from. Files and directories for backfill
//! (and the embedded samples); `.gz` is recognised by its magic bytes, not
//! its name, and multi-member gzip (data appended after the first member) is
//! read whole.

pub mod kafka;
pub mod s3_notify;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

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
}

impl Input {
    pub fn display(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Embedded { name, .. } => format!("embedded:{name}"),
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
}

/// Expands files and directories (recursively, in name order, skipping
/// hidden entries) into inputs. What trailship writes into `archive` is
/// never read: an archive kept inside an input directory would otherwise
/// take its own objects and dead letters in as input on every later run.
/// A walk steps around it; naming a path inside it is an error. Anything
/// else under the archive's root is the operator's, and read.
pub fn expand(paths: &[PathBuf], archive: &Path) -> Result<Vec<Input>, SourceError> {
    // Those not there yet hold nothing to step around.
    let owned: Vec<PathBuf> = ARCHIVE_DIRS
        .iter()
        .copied()
        .chain(crate::ocsf::Class::ALL.iter().map(|c| c.dataset()))
        .filter_map(|d| std::fs::canonicalize(archive.join(d)).ok())
        .collect();
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| SourceError::Missing { path: p.clone(), source: e })?;
        if canonical(p).is_some_and(|c| owned.iter().any(|o| c.starts_with(o))) {
            return Err(SourceError::InArchive { path: p.clone() });
        }
        if meta.is_dir() {
            let walker = walkdir::WalkDir::new(p).sort_by_file_name().into_iter().filter_entry(|e| {
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                // Only directories are looked up: what is below one is
                // pruned with it.
                let ours = || !owned.is_empty() && canonical(e.path()).is_some_and(|c| owned.contains(&c));
                e.depth() == 0 || !(hidden || e.file_type().is_dir() && ours())
            });
            for entry in walker {
                let entry = entry.map_err(|e| SourceError::Walk { path: p.clone(), source: e })?;
                if entry.file_type().is_file() {
                    out.push(Input::File(entry.into_path()));
                }
            }
        } else {
            out.push(Input::File(p.clone()));
        }
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
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens an input: its ledger identity and a reader of its decompressed bytes.
pub fn open(input: &Input) -> io::Result<(InputId, Counting<Box<dyn Read + Send>>)> {
    let (id, reader): (InputId, Box<dyn BufRead + Send>) = match input {
        Input::File(p) => {
            let f = File::open(p)?;
            let meta = f.metadata()?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            let path = absolute(p);
            (InputId { path, size: meta.len(), mtime_ns }, Box::new(BufReader::with_capacity(256 * 1024, f)))
        }
        Input::Embedded { name, bytes } => {
            (InputId { path: format!("embedded:{name}"), size: bytes.len() as u64, mtime_ns: 0 }, Box::new(*bytes))
        }
    };
    Ok((id, Counting { inner: decompress(reader)?, bytes: 0 }))
}

fn decompress(mut r: Box<dyn BufRead + Send>) -> io::Result<Box<dyn Read + Send>> {
    let head = r.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(MultiGzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}
