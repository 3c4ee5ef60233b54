//! The S3 API as a [`Store`]: aws-sdk-s3 on a small tokio runtime of its
//! own, so the validator stays synchronous and fetches from many threads.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;

use super::store::{GetError, ListError, Object, Store};

pub struct S3Store {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the AWS client: {0}")]
pub struct S3SetupError(pub(super) String);

impl S3Store {
    /// Credentials and region from the usual AWS chain (environment, profile,
    /// web identity, instance metadata). `endpoint` selects an S3-compatible
    /// store and path-style addressing.
    pub fn new(endpoint: Option<&str>, region: Option<&str>) -> Result<S3Store, S3SetupError> {
        let (rt, conf) = sdk_config(region)?;
        let mut b = aws_sdk_s3::config::Builder::from(&conf);
        if let Some(e) = endpoint {
            b = b.endpoint_url(e).force_path_style(true);
        }
        Ok(S3Store { rt, client: aws_sdk_s3::Client::from_conf(b.build()) })
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// A small runtime and the AWS configuration from the usual chain
/// (environment, profile, web identity, instance metadata), over rustls with
/// ring: no C toolchain beyond what ring needs, and the same crypto crate
/// trailship verifies signatures with. Region: `region`, else the
/// configuration's, else us-east-1.
pub(super) fn sdk_config(
    region: Option<&str>,
) -> Result<(tokio::runtime::Runtime, aws_config::SdkConfig), S3SetupError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| S3SetupError(e.to_string()))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    let mut conf = rt.block_on(loader.load());
    if conf.region().is_none() {
        conf = conf.into_builder().region(aws_config::Region::new("us-east-1")).build();
    }
    Ok((rt, conf))
}

/// Whether a failed request may succeed if made again: no answer at all
/// (connection, timeout, an unparseable response), or a server error or
/// throttling. A request the client could not even build is not.
fn transient<E>(e: &SdkError<E>, status: Option<u16>) -> bool {
    match e {
        SdkError::ServiceError(_) => status.is_some_and(|s| s >= 500 || s == 429),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

fn describe<E: std::fmt::Debug>(e: &SdkError<E>) -> String {
    match e {
        SdkError::ServiceError(s) => format!("HTTP {}: {:?}", s.raw().status().as_u16(), s.err()),
        other => format!("{other:?}"),
    }
}

impl S3Store {
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, GetError> {
        self.get_version(bucket, key, None).await
    }

    /// The object, or the version of it that `version_id` names.
    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, GetError> {
        let get = self.client.get_object().bucket(bucket).key(key).set_version_id(version_id.map(str::to_owned));
        get.send().await.map_err(get_error)
    }

    /// The object as it was when `pin` was taken, from byte `from` on.
    async fn get_pinned(
        &self,
        bucket: &str,
        key: &str,
        pin: &Pin,
        from: u64,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, GetError> {
        let get = self.client.get_object().bucket(bucket).key(key);
        let get = match &pin.version_id {
            Some(v) => get.version_id(v),
            None => get.set_if_match(pin.etag.clone()),
        };
        let get = if from > 0 { get.range(format!("bytes={from}-")) } else { get };
        get.send().await.map_err(get_error)
    }
}

fn get_error(e: SdkError<GetObjectError>) -> GetError {
    let status = match &e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    };
    let missing = matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) || status == Some(404);
    if missing {
        GetError::NotFound
    } else if status == Some(403) {
        GetError::Unreadable("access denied (403); without s3:ListBucket a deleted object also answers 403".into())
    } else if status == Some(412) {
        GetError::Unreadable(format!("changed while read: {}", describe(&e)))
    } else if transient(&e, status) {
        GetError::Unavailable(describe(&e))
    } else {
        GetError::Unreadable(describe(&e))
    }
}

/// What a second read of an object is pinned to: the version read first,
/// or in a bucket without versions its ETag.
struct Pin {
    version_id: Option<String>,
    etag: Option<String>,
}

/// Tries of a read that S3 cannot serve now, and the first wait between
/// them, doubled each time: about half a minute in all.
pub(crate) const TRIES: u32 = 7;
pub(crate) const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A streamed object's reading, pinned to what was hashed: a body cut
/// short (a connection reset, S3 ending a long GET) is asked for again
/// from the byte it stopped at, for about half a minute, so a blip costs
/// neither a dead letter nor the rest of the object.
struct Resuming {
    /// Fails only between chunks: a body's error leaves nothing unread.
    reader: BodyReader<Arc<S3Store>>,
    bucket: String,
    key: String,
    pin: Pin,
    /// Bytes handed out so far.
    at: u64,
}

impl std::io::Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.reader.read(buf) {
                Ok(n) => {
                    self.at += n as u64;
                    return Ok(n);
                }
                Err(e) => self.resume(e.to_string())?,
            }
        }
    }
}

impl Resuming {
    fn resume(&mut self, why: String) -> std::io::Result<()> {
        let mut wait = FIRST_WAIT;
        let mut why = why;
        for _ in 1..TRIES {
            tracing::warn!(bucket = %self.bucket, key = %self.key, at = self.at, error = %why, retry_in_ms = wait.as_millis() as u64, "an object's body was cut short; asking for the rest");
            std::thread::sleep(wait);
            wait *= 2;
            let store = &self.reader.store;
            match store.rt.block_on(store.get_pinned(&self.bucket, &self.key, &self.pin, self.at)) {
                Ok(rest) => {
                    self.reader.body = rest.body;
                    return Ok(());
                }
                Err(GetError::Unavailable(e)) => why = e,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        Err(std::io::Error::other(why))
    }
}

/// An object body read chunk by chunk as the network delivers it, so a
/// large log file is hashed in constant memory. `S`: the store, borrowed or
/// shared.
struct BodyReader<S> {
    store: S,
    body: aws_sdk_s3::primitives::ByteStream,
    chunk: bytes::Bytes,
}

impl<S: std::ops::Deref<Target = S3Store>> std::io::Read for BodyReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.store.rt.block_on(self.body.next()) {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// An object read as a batch input: its bytes, the SHA-256 of them and the
/// version read, known before the first byte is (rows carry them).
pub struct ObjectBody {
    pub reader: Box<dyn std::io::Read + Send>,
    pub sha256: String,
    pub version_id: Option<String>,
}

/// One object a listing found.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified_ms: Option<i64>,
}

impl S3Store {
    /// Every object under `prefix`, sorted by key, with its size.
    pub fn list_sized(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, ListError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.list_page(bucket, prefix, token, None)?;
            out.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One page (up to `keys` objects, S3's 1,000 by default) of those
    /// under `prefix`, from where `token` (the previous page's) says, and
    /// the next page's token. S3 lists keys in UTF-8 binary order, page
    /// after page.
    pub fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
        keys: Option<i32>,
    ) -> Result<(Vec<Listed>, Option<String>), ListError> {
        let list = self.client.list_objects_v2().bucket(bucket).prefix(prefix).set_max_keys(keys);
        let page = self
            .rt
            .block_on(list.set_continuation_token(token).send())
            .map_err(|e| ListError { location: format!("s3://{bucket}/{prefix}"), reason: describe(&e) })?;
        let listed = page
            .contents()
            .iter()
            .filter_map(|o| {
                let modified_ms = o.last_modified().and_then(|t| t.to_millis().ok());
                Some(Listed { key: o.key()?.to_owned(), size: o.size().unwrap_or(0).max(0) as u64, modified_ms })
            })
            .collect();
        let next =
            page.is_truncated().unwrap_or(false).then(|| page.next_continuation_token().map(str::to_owned)).flatten();
        Ok((listed, next))
    }

    /// Reads `key` to be normalised, with its content's SHA-256 as
    /// CloudTrail's digests hash it ([`super::log_file_sha256`]). An object
    /// up to `hold` bytes is read whole and hashed; a larger one is read
    /// twice, streamed: once to hash it, then, pinned to the version hashed
    /// (or its ETag in a bucket without versions), to be read, so memory
    /// stays bounded.
    pub fn read_object(self: &Arc<Self>, bucket: &str, key: &str, hold: u64) -> Result<ObjectBody, GetError> {
        let first = self.rt.block_on(self.get_object(bucket, key))?;
        let version_id = first.version_id().map(str::to_owned);
        if first.content_length().is_some_and(|n| n >= 0 && n as u64 <= hold) {
            let bytes = self
                .rt
                .block_on(first.body.collect())
                .map_err(|e| GetError::Unavailable(e.to_string()))?
                .into_bytes()
                .to_vec();
            let (text, sha256) = match inflate_held(bytes) {
                Ok(inflated) => inflated,
                Err(bytes) => {
                    let sha = super::log_file_sha256(&bytes[..]).map_err(|e| GetError::Unavailable(e.to_string()))?;
                    (bytes, sha)
                }
            };
            let reader = Box::new(std::io::Cursor::new(text));
            return Ok(ObjectBody { reader, sha256: hex::encode(sha256), version_id });
        }
        let pin = Pin { version_id: version_id.clone(), etag: first.e_tag().map(str::to_owned) };
        let body = BodyReader { store: &**self, body: first.body, chunk: bytes::Bytes::new() };
        let sha256 = super::log_file_sha256(std::io::BufReader::with_capacity(256 << 10, body))
            .map_err(|e| GetError::Unavailable(e.to_string()))?;
        let sha256 = hex::encode(sha256);
        let again = self.rt.block_on(self.get_pinned(bucket, key, &pin, 0))?;
        let reader = Box::new(Resuming {
            reader: BodyReader { store: Arc::clone(self), body: again.body, chunk: bytes::Bytes::new() },
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            pin,
            at: 0,
        });
        Ok(ObjectBody { reader, sha256, version_id })
    }
}

/// A held object inflated once, for its hash and its reading both: what
/// it holds and its [`super::log_file_sha256`], when it is plain, or one
/// gzip member that inflates to at most [`INFLATED_HOLD`]. Anything else
/// (several members, a stream cut short, too large) is handed back, to be
/// hashed and then read as it is.
fn inflate_held(bytes: Vec<u8>) -> Result<(Vec<u8>, [u8; 32]), Vec<u8>> {
    match super::gunzip_held(&bytes, INFLATED_HOLD) {
        Ok(held) => Ok(held),
        Err(super::HeldGzip::Bad(super::GzipError::NotGzip)) => {
            use sha2::Digest as _;
            let sha = sha2::Sha256::digest(&bytes).into();
            Ok((bytes, sha))
        }
        Err(_) => Err(bytes),
    }
}

/// The most a held object may inflate to in memory (see [`inflate_held`]):
/// the size a CloudTrail log file is parsed whole up to.
const INFLATED_HOLD: usize = 4 << 20;

impl Store for S3Store {
    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn std::io::Read + Send + '_>, GetError> {
        let out = self.rt.block_on(self.get_object(bucket, key))?;
        Ok(Box::new(BodyReader { store: self, body: out.body, chunk: bytes::Bytes::new() }))
    }

    fn list_modified(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, Option<i64>)>, ListError> {
        Ok(self.list_sized(bucket, prefix)?.into_iter().map(|o| (o.key, o.modified_ms)).collect())
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Object, GetError> {
        self.rt.block_on(async {
            let out = self.get_object(bucket, key).await?;
            // Body and metadata from the same response: a HEAD then a GET
            // could straddle an overwrite.
            let metadata: BTreeMap<String, String> =
                out.metadata().into_iter().flatten().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            let bytes =
                out.body.collect().await.map_err(|e| GetError::Unavailable(e.to_string()))?.into_bytes().to_vec();
            Ok(Object { bytes, metadata, metadata_supported: true })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    use crate::integrity::gzip as gz;

    #[test]
    fn a_held_object_is_inflated_once_when_it_can_be() {
        let text = br#"{"Records":[{"eventID":"a"}]}"#.to_vec();
        let sha: [u8; 32] = sha2::Sha256::digest(&text).into();
        assert_eq!(inflate_held(gz(&text)), Ok((text.clone(), sha)), "one member: its text");
        assert_eq!(inflate_held(text.clone()), Ok((text.clone(), sha)), "plain: as it is");
        // Handed back, to be read as it is: what the hash covers is not all
        // that is read, or it is too much to hold.
        let mut two = gz(&text);
        two.extend(gz(&text));
        assert_eq!(inflate_held(two.clone()), Err(two));
        let cut = gz(&text)[..20].to_vec();
        assert_eq!(inflate_held(cut.clone()), Err(cut));
        let big = gz(&vec![b' '; INFLATED_HOLD + 1]);
        assert_eq!(inflate_held(big.clone()), Err(big));
    }
}
