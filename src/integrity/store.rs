//! Where digests and log files are read from: an S3 API (`s3.rs`) or a
//! local copy of a bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One object's bytes and user metadata (lower-case names, without the
/// `x-amz-meta-` prefix), taken from the same read.
#[derive(Debug, Clone, Default)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    /// Whether this store can hold user metadata at all. A local copy made
    /// with `aws s3 cp` cannot: older digests are then verified with the
    /// signature their successor carries, as the User Guide describes.
    pub metadata_supported: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    #[error("not found")]
    NotFound,
    /// Exists but cannot be read (403, archived, KMS...). A 403 may hide a
    /// deletion when the reader lacks `s3:ListBucket`.
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// The store did not answer, or answered that it could not now (5xx,
    /// throttling, a body cut short), after the client's own retries. A
    /// later try may succeed: a one-shot audit reports it as unreadable, a
    /// worker tries again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list {location}: {reason}")]
pub struct ListError {
    pub location: String,
    pub reason: String,
}

pub trait Store: Sync {
    /// Every key under `prefix`, sorted.
    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, ListError> {
        Ok(self.list_modified(bucket, prefix)?.into_iter().map(|(k, _)| k).collect())
    }
    /// Every key under `prefix` with its last-modified time (ms), sorted.
    fn list_modified(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, Option<i64>)>, ListError>;
    fn get(&self, bucket: &str, key: &str) -> Result<Object, GetError>;
    /// The object's bytes as a stream, for hashing without holding it.
    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn std::io::Read + Send + '_>, GetError> {
        Ok(Box::new(std::io::Cursor::new(self.get(bucket, key)?.bytes)))
    }
    /// How to name an object to a person.
    fn display(&self, bucket: &str, key: &str) -> String {
        format!("s3://{bucket}/{key}")
    }
}

/// A bucket copied to disk: `ROOT/<bucket>/<key>` when that folder exists,
/// else `ROOT/<key>` (a copy of one bucket). User metadata, when kept, is a
/// JSON object in `<file>.metadata.json` beside the object.
pub struct LocalStore {
    root: PathBuf,
}

pub const METADATA_SUFFIX: &str = ".metadata.json";

/// Where a local object's user metadata lives: `<file>.metadata.json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(METADATA_SUFFIX);
    PathBuf::from(p)
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    fn base(&self, bucket: &str) -> PathBuf {
        let b = self.root.join(bucket);
        if !bucket.is_empty() && !bucket.contains(['/', '\\']) && bucket != ".." && b.is_dir() {
            b
        } else {
            self.root.clone()
        }
    }

    fn path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        // Keys come from digests, which an attacker may have written.
        if key.split('/').any(|c| c == ".." || c.is_empty()) || key.starts_with('/') || key.contains('\\') {
            return None;
        }
        Some(self.base(bucket).join(key))
    }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Option<i64>)>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if !name.ends_with(METADATA_SUFFIX) {
            let modified = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as i64));
            out.push((key, modified));
        }
    }
    Ok(())
}

impl Store for LocalStore {
    fn list_modified(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, Option<i64>)>, ListError> {
        let base = self.base(bucket);
        // Walk the deepest folder the prefix names, then filter by the prefix.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut keys = Vec::new();
        walk(&base.join(dir_part), dir_part, &mut keys)
            .map_err(|e| ListError { location: base.join(dir_part).display().to_string(), reason: e.to_string() })?;
        keys.retain(|(k, _)| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Object, GetError> {
        let path = self.path(bucket, key).ok_or(GetError::NotFound)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(GetError::NotFound),
            Err(e) => return Err(GetError::Unreadable(e.to_string())),
        };
        let metadata = match std::fs::read(sidecar_path(&path)) {
            Ok(m) => serde_json::from_slice::<BTreeMap<String, String>>(&m)
                .map_err(|e| GetError::Unreadable(format!("metadata file: {e}")))?
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase().trim_start_matches("x-amz-meta-").to_owned(), v))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        let metadata_supported = !metadata.is_empty();
        Ok(Object { bytes, metadata, metadata_supported })
    }

    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn std::io::Read + Send + '_>, GetError> {
        let path = self.path(bucket, key).ok_or(GetError::NotFound)?;
        match std::fs::File::open(&path) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(Box::new(f)),
            Ok(_) => Err(GetError::NotFound),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(GetError::NotFound),
            Err(e) => Err(GetError::Unreadable(e.to_string())),
        }
    }

    fn display(&self, bucket: &str, key: &str) -> String {
        match self.path(bucket, key) {
            Some(p) => p.display().to_string(),
            None => format!("s3://{bucket}/{key}"),
        }
    }
}
