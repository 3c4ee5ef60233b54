//! Where the service's objects land: a local directory or S3 with Object
//! Lock, behind one small interface whose only write is "create if absent".
//!
//! Create-if-absent is what makes replays harmless: object keys are
//! deterministic (see `service::keys`), so a batch written again after a crash
//! finds its objects already there and writes nothing twice.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{ArchiveConfig, LockMode};
use crate::integrity::s3::S3Store;
use crate::integrity::store::{Object, sidecar_path};

/// What a create-if-absent write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// An object of that key was already there; nothing was written.
    Exists,
}

/// A failed store call. Every one is retried by the caller with backoff:
/// an archive that cannot be written pauses the service, it never drops.
#[derive(Debug, thiserror::Error)]
#[error("{op} {key}: {detail}")]
pub struct StoreError {
    pub op: &'static str,
    pub key: String,
    pub detail: String,
}

fn err(op: &'static str, key: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError { op, key: key.to_owned(), detail: detail.to_string() }
}

pub trait ObjectStore: Send + Sync {
    /// Uploads the file at `path` (whose SHA-256 is `sha256`) as `key`,
    /// unless `key` exists.
    fn put_file(&self, key: &str, path: &Path, sha256: &[u8; 32], bytes: u64) -> Result<Put, StoreError>;
    fn put_bytes(&self, key: &str, body: &[u8]) -> Result<Put, StoreError>;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// For logs: `s3://bucket/prefix` or the directory.
    fn location(&self) -> String;
    /// `put_bytes` with user metadata stored beside the body, as CloudTrail
    /// keeps a digest's signature: S3 `x-amz-meta-*`, or a sidecar
    /// `<file>.metadata.json` locally (written first, so a body is never
    /// there without it).
    fn put_bytes_with_metadata(
        &self,
        key: &str,
        body: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Put, StoreError>;
    /// The object and its user metadata (lower-case names).
    fn get_with_metadata(&self, key: &str) -> Result<Option<Object>, StoreError>;
    /// Every key under `prefix`, sorted; only those after `after` when given.
    fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StoreError>;
}

/// Opens the store `cfg.location` names; for S3, checks its Object Lock
/// configuration first.
pub fn open(cfg: &ArchiveConfig) -> Result<Box<dyn ObjectStore>, StoreError> {
    match cfg.location.strip_prefix("s3://") {
        Some(_) => Ok(Box::new(S3Objects::open(cfg)?)),
        None => Ok(Box::new(LocalObjects::open(Path::new(&cfg.location))?)),
    }
}

/// A directory. Create-if-absent is a hard link from a synced temporary
/// file, which the file system refuses when the name exists.
pub struct LocalObjects {
    root: PathBuf,
    tmp: PathBuf,
    /// A shared hold on the archive's lock: workers write one archive
    /// together, a batch run (which clears `_trailship/tmp` when it starts)
    /// only alone.
    _lock: Option<File>,
}

impl LocalObjects {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tmp = root.join("_trailship/tmp");
        fs::create_dir_all(&tmp).map_err(|e| err("create", &tmp.display().to_string(), e))?;
        let lock = share_lock(root)?;
        remove_stale(&tmp, STALE_AFTER);
        Ok(LocalObjects { root: root.to_path_buf(), tmp, _lock: lock })
    }

    fn publish(&self, key: &str, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<Put, StoreError> {
        let dest = self.root.join(key);
        if dest.exists() {
            return Ok(Put::Exists);
        }
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| err("put", key, e))?;
        let tmp = self.tmp.join(hex::encode(name));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            write(&mut f)?;
            f.sync_all()?;
            let dir = dest.parent().expect("keys are relative paths");
            for d in crate::sink::local::create_dirs(dir)? {
                File::open(d)?.sync_all()?;
            }
            let put = match fs::hard_link(&tmp, &dest) {
                Ok(()) => Put::Created,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Put::Exists,
                Err(e) => return Err(e),
            };
            File::open(dir)?.sync_all()?;
            Ok(put)
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(|e| err("put", key, e))
    }
}

/// Holds `_trailship/lock` shared (see `sink::local`, where a batch run
/// holds it alone); None where the file system has no locks.
fn share_lock(root: &Path) -> Result<Option<File>, StoreError> {
    let (f, path) = crate::sink::local::open_lock(root)
        .map_err(|e| err("lock", &root.join(crate::sink::local::LOCK).display().to_string(), e))?;
    match f.try_lock_shared() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let detail = format!("a batch run ({}) is writing this archive; wait for it to finish", holder.trim());
            Err(err("lock", &root.display().to_string(), detail))
        }
        Err(fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the archive; make sure no batch run writes to it");
            Ok(None)
        }
    }
}

/// A temporary file lives for one write, seconds; one this old was left by
/// a worker killed mid-write. Workers share the folder, so a young one may
/// be another's write in progress.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the files directly in `tmp` (whole objects, up to the object
/// size limit each) untouched for `age`. Folders are the batch job's, which
/// clears its own under its lock.
fn remove_stale(tmp: &Path, age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let old =
            e.metadata().is_ok_and(|m| m.is_file() && m.modified().is_ok_and(|t| t.elapsed().is_ok_and(|d| d > age)));
        if old && fs::remove_file(e.path()).is_ok() {
            tracing::info!(path = %e.path().display(), "removed a temporary file left by an interrupted write");
        }
    }
}

impl ObjectStore for LocalObjects {
    fn put_file(&self, key: &str, path: &Path, _sha256: &[u8; 32], _bytes: u64) -> Result<Put, StoreError> {
        self.publish(key, |f| std::io::copy(&mut File::open(path)?, f).map(drop))
    }

    fn put_bytes(&self, key: &str, body: &[u8]) -> Result<Put, StoreError> {
        self.publish(key, |f| f.write_all(body))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.root.join(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("get", key, e)),
        }
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put_bytes_with_metadata(
        &self,
        key: &str,
        body: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Put, StoreError> {
        if self.root.join(key).exists() {
            return Ok(Put::Exists);
        }
        let meta = serde_json::to_vec(metadata).expect("serialises");
        let side = sidecar_path(Path::new(key)).to_string_lossy().into_owned();
        // A sidecar left by an attempt that stopped before its body is
        // replaced: only the body's create-if-absent decides.
        let _ = fs::remove_file(self.root.join(&side));
        self.publish(&side, |f| f.write_all(&meta))?;
        self.publish(key, |f| f.write_all(body))
    }

    fn get_with_metadata(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let Some(bytes) = self.get(key)? else { return Ok(None) };
        let side = sidecar_path(&self.root.join(key));
        let metadata = match fs::read(&side) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| err("read", key, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err("read", key, e)),
        };
        Ok(Some(Object { bytes, metadata, metadata_supported: true }))
    }

    fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        // Keys are paths: walk the deepest folder the prefix names.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let base = self.root.join(dir);
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&base).into_iter() {
            let e = match e {
                Ok(e) => e,
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => break,
                Err(e) => return Err(err("list", prefix, e)),
            };
            if !e.file_type().is_file() {
                continue;
            }
            let rel = e.path().strip_prefix(&self.root).expect("under root").to_string_lossy().replace('\\', "/");
            if rel.starts_with(prefix) && !rel.ends_with(".metadata.json") && after.is_none_or(|a| rel.as_str() > a) {
                out.push(rel);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// S3 (or an S3-compatible store). Every PUT carries its SHA-256 checksum,
/// `If-None-Match: *` and, when configured, the Object Lock mode and
/// retain-until date; large objects go up in parts, each with its checksum,
/// read from the spool file one part at a time.
pub struct S3Objects {
    s3: S3Store,
    bucket: String,
    prefix: String,
    lock: Option<(LockMode, u32)>,
    part_bytes: usize,
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn describe<E>(e: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
{
    use aws_sdk_s3::error::DisplayErrorContext;
    match (e.raw_response(), e.as_service_error()) {
        (Some(r), Some(s)) => format!(
            "HTTP {} {}: {}",
            r.status().as_u16(),
            s.code().unwrap_or("(no code)"),
            s.message().unwrap_or("(no message)")
        ),
        _ => DisplayErrorContext(e).to_string(),
    }
}

fn status<E>(e: &aws_sdk_s3::error::SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl S3Objects {
    pub fn open(cfg: &ArchiveConfig) -> Result<Self, StoreError> {
        let (bucket, prefix) = crate::integrity::archive::ArchiveOptions::parse_location(&cfg.location);
        let bucket = bucket.expect("an s3:// location");
        let s3 =
            S3Store::new(cfg.endpoint_url.as_deref(), cfg.region.as_deref()).map_err(|e| err("connect", &bucket, e))?;
        let this = S3Objects {
            s3,
            bucket,
            prefix,
            lock: cfg.object_lock_mode.map(|m| (m, cfg.retain_days)),
            part_bytes: cfg.multipart_bytes,
        };
        let enabled = this.object_lock_enabled()?;
        if !enabled && cfg.require_object_lock {
            return Err(err(
                "check Object Lock on",
                &this.bucket,
                "the bucket has no Object Lock configuration; enable it (at bucket creation) or set \
                 [archive] require_object_lock = false to archive without it",
            ));
        }
        if !enabled && this.lock.is_some() {
            return Err(err(
                "check Object Lock on",
                &this.bucket,
                "object_lock_mode is set but the bucket has no Object Lock",
            ));
        }
        Ok(this)
    }

    fn object_lock_enabled(&self) -> Result<bool, StoreError> {
        use aws_sdk_s3::types::ObjectLockEnabled;
        let r = self.s3.block_on(self.s3.client().get_object_lock_configuration().bucket(&self.bucket).send());
        match r {
            Ok(o) => Ok(o
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == ObjectLockEnabled::Enabled)),
            // S3 answers 404 ObjectLockConfigurationNotFoundError for a bucket without one.
            Err(e)
                if status(&e) == Some(404)
                    && e.as_service_error().is_some_and(|s| {
                        use aws_sdk_s3::error::ProvideErrorMetadata;
                        s.code() != Some("NoSuchBucket")
                    }) =>
            {
                Ok(false)
            }
            Err(e) => Err(err("get Object Lock configuration of", &self.bucket, describe(&e))),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn retain_until(&self) -> Option<(aws_sdk_s3::types::ObjectLockMode, aws_sdk_s3::primitives::DateTime)> {
        self.lock.map(|(mode, days)| {
            let until = crate::sink::now_ms() / 1000 + i64::from(days) * 86_400;
            (aws_sdk_s3::types::ObjectLockMode::from(mode.as_str()), aws_sdk_s3::primitives::DateTime::from_secs(until))
        })
    }

    fn put_small(&self, key: &str, body: Vec<u8>, sha256: &[u8; 32]) -> Result<Put, StoreError> {
        self.put_small_with(key, body, sha256, None)
    }

    fn put_small_with(
        &self,
        key: &str,
        body: Vec<u8>,
        sha256: &[u8; 32],
        metadata: Option<&BTreeMap<String, String>>,
    ) -> Result<Put, StoreError> {
        let lock = self.retain_until();
        let metadata = metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let req = self
            .s3
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .content_length(body.len() as i64)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(sha256))
            .if_none_match("*")
            .set_object_lock_mode(lock.as_ref().map(|l| l.0.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.1))
            .set_metadata(metadata)
            .body(body.into());
        match self.s3.block_on(req.send()) {
            Ok(_) => Ok(Put::Created),
            Err(e) if status(&e) == Some(412) => Ok(Put::Exists),
            Err(e) => Err(err("put", key, describe(&e))),
        }
    }

    fn put_multipart(&self, key: &str, path: &Path) -> Result<Put, StoreError> {
        use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
        let full = self.full(key);
        let client = self.s3.client();
        let lock = self.retain_until();
        let created = self
            .s3
            .block_on(
                client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .set_object_lock_mode(lock.as_ref().map(|l| l.0.clone()))
                    .set_object_lock_retain_until_date(lock.map(|l| l.1))
                    .send(),
            )
            .map_err(|e| err("start multipart upload of", key, describe(&e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = (|| {
            let mut file = File::open(path).map_err(|e| err("read", &path.display().to_string(), e))?;
            let mut parts = Vec::new();
            let mut buf = vec![0u8; self.part_bytes];
            loop {
                let n = read_full(&mut file, &mut buf).map_err(|e| err("read", &path.display().to_string(), e))?;
                if n == 0 {
                    break;
                }
                let number = parts.len() as i32 + 1;
                let sum = b64(&Sha256::digest(&buf[..n]));
                let out = self
                    .s3
                    .block_on(
                        client
                            .upload_part()
                            .bucket(&self.bucket)
                            .key(&full)
                            .upload_id(&upload_id)
                            .part_number(number)
                            .content_length(n as i64)
                            .checksum_algorithm(ChecksumAlgorithm::Sha256)
                            .checksum_sha256(&sum)
                            .body(buf[..n].to_vec().into())
                            .send(),
                    )
                    .map_err(|e| err("upload part of", key, describe(&e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .checksum_sha256(sum)
                        .build(),
                );
            }
            let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
            match self.s3.block_on(
                client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .multipart_upload(done)
                    .if_none_match("*")
                    .send(),
            ) {
                Ok(_) => Ok(Put::Created),
                Err(e) if status(&e) == Some(412) => Ok(Put::Exists),
                Err(e) => Err(err("complete multipart upload of", key, describe(&e))),
            }
        })();
        if matches!(result, Ok(Put::Created)) {
            return self.ensure_locked(key).map(|()| Put::Created);
        }
        {
            // Parts of an unfinished upload cost storage until aborted.
            let abort = client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&upload_id);
            if let Err(e) = self.s3.block_on(abort.send()) {
                tracing::warn!(key, error = %describe(&e), "cannot abort multipart upload");
            }
        }
        result
    }
}

impl S3Objects {
    /// Some S3-compatible stores (moto among them) ignore the lock headers of
    /// CreateMultipartUpload: the object is checked after completion and
    /// given its retention when it has none. Existing retention is never
    /// touched, so it can never be shortened.
    fn ensure_locked(&self, key: &str) -> Result<(), StoreError> {
        let Some((mode, until)) = self.retain_until() else { return Ok(()) };
        let full = self.full(key);
        let client = self.s3.client();
        let head = self
            .s3
            .block_on(client.head_object().bucket(&self.bucket).key(&full).send())
            .map_err(|e| err("check retention of", key, describe(&e)))?;
        if head.object_lock_mode().is_some() {
            return Ok(());
        }
        tracing::debug!(key, "store ignored the upload's lock headers; setting retention");
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(aws_sdk_s3::types::ObjectLockRetentionMode::from(mode.as_str()))
            .retain_until_date(until)
            .build();
        self.s3
            .block_on(
                client
                    .put_object_retention()
                    .bucket(&self.bucket)
                    .key(&full)
                    .set_version_id(head.version_id().map(str::to_owned))
                    .retention(retention)
                    .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                    .send(),
            )
            .map_err(|e| err("set retention of", key, describe(&e)))?;
        Ok(())
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl ObjectStore for S3Objects {
    fn put_file(&self, key: &str, path: &Path, sha256: &[u8; 32], bytes: u64) -> Result<Put, StoreError> {
        if bytes as usize > self.part_bytes {
            return self.put_multipart(key, path);
        }
        let body = fs::read(path).map_err(|e| err("read", &path.display().to_string(), e))?;
        self.put_small(key, body, sha256)
    }

    fn put_bytes(&self, key: &str, body: &[u8]) -> Result<Put, StoreError> {
        let sha: [u8; 32] = Sha256::digest(body).into();
        self.put_small(key, body.to_vec(), &sha)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.s3.block_on(async {
            let o = self.s3.client().get_object().bucket(&self.bucket).key(self.full(key)).send().await?;
            Ok::<_, aws_sdk_s3::error::SdkError<_>>(o.body.collect().await.map(|b| b.to_vec()))
        });
        match r {
            Ok(Ok(b)) => Ok(Some(b)),
            Ok(Err(e)) => Err(err("read", key, e)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err("get", key, describe(&e))),
        }
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn put_bytes_with_metadata(
        &self,
        key: &str,
        body: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Put, StoreError> {
        let sha: [u8; 32] = Sha256::digest(body).into();
        self.put_small_with(key, body.to_vec(), &sha, Some(metadata))
    }

    fn get_with_metadata(&self, key: &str) -> Result<Option<Object>, StoreError> {
        use crate::integrity::store::{GetError, Store as _};
        match self.s3.get(&self.bucket, &self.full(key)) {
            Ok(o) => Ok(Some(o)),
            Err(GetError::NotFound) => Ok(None),
            Err(e) => Err(err("get", key, e)),
        }
    }

    fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self
                .s3
                .client()
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_start_after(after.map(|a| self.full(a)))
                .set_continuation_token(token.take());
            let page = self.s3.block_on(req.send()).map_err(|e| err("list", prefix, describe(&e)))?;
            out.extend(page.contents().iter().filter_map(|o| o.key()?.strip_prefix(&self.prefix).map(str::to_owned)));
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_put_is_create_if_absent() {
        let dir = std::env::temp_dir().join(format!("trailship-objects-{}", std::process::id()));
        let store = LocalObjects::open(&dir).unwrap();
        assert_eq!(store.put_bytes("a/b/c.json", b"one").unwrap(), Put::Created);
        assert_eq!(store.put_bytes("a/b/c.json", b"two").unwrap(), Put::Exists);
        assert_eq!(store.get("a/b/c.json").unwrap().unwrap(), b"one");
        assert_eq!(store.get("a/b/none").unwrap(), None);
        assert_eq!(fs::read_dir(dir.join("_trailship/tmp")).unwrap().count(), 0, "temporaries removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporaries_of_interrupted_writes_are_removed_once_stale() {
        let dir = std::env::temp_dir().join(format!("trailship-objects-stale-{}", std::process::id()));
        let tmp = dir.join("_trailship/tmp");
        fs::create_dir_all(tmp.join("run-1")).unwrap();
        let old = tmp.join("0123456789abcdef");
        fs::write(&old, b"half an object").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        let young = tmp.join("fedcba9876543210");
        fs::write(&young, b"a write in progress").unwrap();
        LocalObjects::open(&dir).unwrap();
        assert!(!old.exists(), "left by a killed worker");
        assert!(young.exists() && tmp.join("run-1").exists(), "another worker's, and the batch job's");
        fs::remove_dir_all(&dir).unwrap();
    }
}
