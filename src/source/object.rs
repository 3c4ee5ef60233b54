//! Objects in S3 as batch inputs: a backfill reads a trail's bucket (or any
//! prefix of one) as it reads a directory. Each object is one input, named
//! `s3://BUCKET/KEY` in the ledger and in `trailship.source_file`, and its
//! rows carry `trailship.source_object` (bucket, key, version, SHA-256) as
//! those of a log file fetched after an S3 notification do, so digest
//! verdicts join to them the same way.

use std::sync::{Arc, OnceLock};

use super::{Input, SourceError};
use crate::integrity::s3::{FIRST_WAIT, S3Store, TRIES};
use crate::source::s3_notify::{ObjectKind, classify};

/// Objects up to this size are read whole and hashed in memory, one per
/// thread (32 MiB at sixteen); a larger one is read twice, streamed (see
/// [`S3Store::read_object`]). CloudTrail log files are almost all smaller.
pub const HOLD: u64 = 2 << 20;

/// One listed object.
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub modified_ms: i64,
    pub(super) store: Arc<S3Store>,
    /// Read whole up to this size ([`HOLD`]).
    pub(super) hold: u64,
}

impl Object {
    /// Reads the object ([`S3Store::read_object`]), again while S3 answers
    /// that it cannot now (no answer, 5xx, throttling, a body cut short),
    /// beyond the client's own retries: a backfill outlasts a blip rather
    /// than dead-lettering what it could not fetch. Still unavailable after
    /// that, it is the caller's: a dead letter kept out of the ledger, so
    /// the next run reads it.
    pub(super) fn read(&self) -> Result<crate::integrity::s3::ObjectBody, crate::integrity::store::GetError> {
        use crate::integrity::store::GetError;
        let mut wait = FIRST_WAIT;
        for _ in 1..TRIES {
            match self.store.read_object(&self.bucket, &self.key, self.hold) {
                Err(GetError::Unavailable(why)) => {
                    tracing::warn!(object = ?self, error = %why, retry_in_ms = wait.as_millis() as u64, "S3 cannot serve the object now");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                done => return done,
            }
        }
        self.store.read_object(&self.bucket, &self.key, self.hold)
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{} ({} bytes)", self.bucket, self.key, self.size)
    }
}

/// `s3://BUCKET/PREFIX` as bucket and prefix (empty: the whole bucket).
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// Whether a listed key is an input: not a folder marker, not a hidden
/// name (as a directory walk skips them), not a CloudTrail digest (those
/// are `validate-digests`' to read).
fn is_input(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or("");
    !name.is_empty() && !name.starts_with('.') && classify(key) != ObjectKind::CloudTrailDigest
}

/// Where S3 inputs are listed and read: one client, made when the first
/// `s3://` path is met, with the usual AWS credential chain.
pub struct S3Source {
    endpoint: Option<String>,
    region: Option<String>,
    store: OnceLock<Arc<S3Store>>,
    hold: u64,
    /// Objects a listing page (S3's 1,000 unless set).
    page: Option<i32>,
}

impl S3Source {
    /// `endpoint`: an S3-compatible store (path-style addressing).
    pub fn new(endpoint: Option<String>, region: Option<String>) -> Self {
        S3Source { endpoint, region, store: OnceLock::new(), hold: HOLD, page: None }
    }

    /// Lists `keys` objects a page.
    pub fn with_page(self, keys: i32) -> Self {
        S3Source { page: Some(keys), ..self }
    }

    /// Objects over `hold` bytes are streamed rather than held ([`HOLD`]).
    pub fn with_hold(self, hold: u64) -> Self {
        S3Source { hold, ..self }
    }

    fn store(&self, url: &str) -> Result<&Arc<S3Store>, SourceError> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let s = S3Store::new(self.endpoint.as_deref(), self.region.as_deref())
            .map_err(|e| SourceError::S3 { url: url.to_owned(), reason: e.to_string() })?;
        Ok(self.store.get_or_init(|| Arc::new(s)))
    }

    /// The inputs under `url` (`s3://BUCKET/PREFIX`), in key order, listed
    /// a page at a time as they are taken.
    pub fn list(&self, url: &str) -> Result<Pages, SourceError> {
        let (bucket, prefix) = parse_url(url).ok_or_else(|| SourceError::S3 {
            url: url.to_owned(),
            reason: "expected s3://BUCKET or s3://BUCKET/PREFIX".into(),
        })?;
        Ok(Pages {
            url: url.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            store: Arc::clone(self.store(url)?),
            hold: self.hold,
            keys: self.page,
            page: Vec::new().into_iter(),
            next: Some(None),
        })
    }
}

/// A listing's inputs, a page of the listing held at a time.
pub struct Pages {
    url: String,
    bucket: String,
    prefix: String,
    store: Arc<S3Store>,
    hold: u64,
    keys: Option<i32>,
    page: std::vec::IntoIter<crate::integrity::s3::Listed>,
    /// The next page's token (`Some(None)`: the first page); `None` once
    /// the last page is taken, or the listing failed.
    next: Option<Option<String>>,
}

impl Iterator for Pages {
    type Item = Result<Input, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(o) = self.page.next() {
                if !is_input(&o.key) {
                    continue;
                }
                return Some(Ok(Input::Object(Arc::new(Object {
                    bucket: self.bucket.clone(),
                    key: o.key,
                    size: o.size,
                    modified_ms: o.modified_ms.unwrap_or(0),
                    store: Arc::clone(&self.store),
                    hold: self.hold,
                }))));
            }
            let token = self.next.take()?;
            match self.store.list_page(&self.bucket, &self.prefix, token, self.keys) {
                Ok((page, next)) => {
                    self.page = page.into_iter();
                    self.next = next.map(Some);
                }
                Err(e) => return Some(Err(SourceError::S3 { url: self.url.clone(), reason: e.reason })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(parse_url("s3://trail/AWSLogs/1/"), Some(("trail", "AWSLogs/1/")));
        assert_eq!(parse_url("s3://trail"), Some(("trail", "")));
        assert_eq!(parse_url("s3:///x"), None);
        assert_eq!(parse_url("/tmp/x"), None);
        assert!(is_input("AWSLogs/1/CloudTrail/us-east-1/2026/11/20/a.json.gz"));
        assert!(!is_input("AWSLogs/1/CloudTrail-Digest/us-east-1/2026/11/20/d.json.gz"));
        assert!(!is_input("AWSLogs/1/CloudTrail/"));
        assert!(!is_input("AWSLogs/.hidden"));
        assert!(is_input("audit/kube-apiserver.log"));
    }
}
