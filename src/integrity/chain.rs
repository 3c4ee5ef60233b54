//! trailship's own digest chain: at intervals, a signed digest in
//! CloudTrail's shape lists every object written since the previous one
//! with its SHA-256, and links to the previous digest by key, hash and
//! signature. `validate-digests --archive` checks it (see `archive.rs`).
//!
//! Layout, relative to the archive root:
//! - `_digests/<writer>/YYYY/MM/DD/trailship-digest_<YYYYMMDDTHHMMSSZ>.json.gz`,
//!   one chain per writer (a worker, or `trailship` for the batch job);
//! - signature and algorithm as object metadata (S3 user metadata, or
//!   `<file>.metadata.json` beside a local file), as CloudTrail stores them;
//! - `_digests/public-keys.json`: the writer's public keys in the shape of a
//!   `ListPublicKeys` answer, so the same loader reads both.
//!
//! Keys in digests are relative to the archive root: a copy of the archive
//! (S3 to disk, bucket to bucket) still validates.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Serialize;
use sha2::Sha256;

use super::digest::{Digest, ms_to_stamp, stamp_to_ms};
use super::keys::{ED25519_ALG, RSA_SHA256, ed25519_spki};
use crate::normalize::time::format_rfc3339_s;

pub const DIGESTS_DIR: &str = "_digests";
pub const PUBLIC_KEYS: &str = "_digests/public-keys.json";
/// Keys published one file each (the service's workers, which only ever
/// create objects), in the same shape as `PUBLIC_KEYS`.
pub const PUBLIC_KEYS_DIR: &str = "_digests/public-keys/";
const NAME_PREFIX: &str = "trailship-digest_";

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read signing key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("signing key {path} is not a PKCS#8 RSA (2048-8192 bit) or Ed25519 private key ({detail})")]
    Format { path: String, detail: String },
}

/// The private key digests are signed with.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.algorithm(), self.fingerprint())
    }
}

impl SigningKey {
    /// PKCS#8, PEM (`BEGIN PRIVATE KEY`) or DER.
    pub fn from_file(path: &Path) -> Result<SigningKey, SigningKeyError> {
        let p = || path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SigningKeyError::Io { path: p(), source })?;
        SigningKey::from_pkcs8(&bytes).map_err(|detail| SigningKeyError::Format { path: p(), detail })
    }

    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, String> {
        let der = match std::str::from_utf8(bytes).ok().and_then(|t| pem_body(t, "PRIVATE KEY")) {
            Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("PEM: {e}"))?,
            None => bytes.to_vec(),
        };
        match Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            Ok(k) => Ok(SigningKey::Ed25519(k)),
            Err(_) => RsaKeyPair::from_pkcs8(&der).map(SigningKey::Rsa).map_err(|e| e.to_string()),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => RSA_SHA256,
            SigningKey::Ed25519(_) => ED25519_ALG,
        }
    }

    /// Public key DER as published: PKCS#1 for RSA (as CloudTrail
    /// publishes its keys), SubjectPublicKeyInfo for Ed25519.
    pub fn public_der(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => k.public().as_ref().to_vec(),
            SigningKey::Ed25519(k) => {
                ed25519_spki(k.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes"))
            }
        }
    }

    /// MD5 of the published DER, hex: CloudTrail's fingerprint.
    pub fn fingerprint(&self) -> String {
        hex::encode(Md5::digest(self.public_der()))
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig).expect("RSA signing with a valid key");
                sig
            }
            SigningKey::Ed25519(k) => k.sign(data).as_ref().to_vec(),
        }
    }
}

/// A new Ed25519 private key as PKCS#8 PEM (`trailship keygen`).
pub fn generate_ed25519_pem() -> String {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("system randomness");
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The base64 body of a PEM block; encrypted keys are refused (ring cannot
/// decrypt them, and a clear error beats a confusing parse failure).
fn pem_body(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find("-----END")?;
    Some(text[start..stop].split_whitespace().collect())
}

/// Writer ids become path segments and must not change their meaning there.
pub fn valid_writer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Where a digest lives: `_digests/<writer>/YYYY/MM/DD/trailship-digest_<stamp>.json.gz`.
pub fn digest_key(writer: &str, end_ms: i64) -> String {
    let stamp = ms_to_stamp(end_ms);
    format!("{DIGESTS_DIR}/{writer}/{}/{}/{}/{NAME_PREFIX}{stamp}.json.gz", &stamp[0..4], &stamp[4..6], &stamp[6..8])
}

/// (writer, stamp) of a digest key relative to the archive root.
pub fn parse_digest_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(DIGESTS_DIR)?.strip_prefix('/')?;
    let (writer, rest) = rest.split_once('/')?;
    let stamp = digest_name_stamp(rest.rsplit('/').next()?)?;
    valid_writer_id(writer).then_some((writer, stamp))
}

/// The stamp in a digest's file name, `trailship-digest_<stamp>.json.gz`.
pub fn digest_name_stamp(name: &str) -> Option<&str> {
    let stamp = name.strip_prefix(NAME_PREFIX)?.strip_suffix(".json.gz")?;
    stamp_to_ms(stamp).is_some().then_some(stamp)
}

/// An object a digest vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Covered {
    /// Relative to the archive root.
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What the next digest links to.
#[derive(Debug, Clone)]
struct Prev {
    key: String,
    sha256: String,
    signature: String,
    end_ms: i64,
}

/// A digest ready to be stored: gzip bytes, and the metadata that must be
/// stored with them (the signature).
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key: String,
    pub gz: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    pub covered: Vec<Covered>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestOut<'a> {
    digest_start_time: String,
    digest_end_time: String,
    digest_s3_bucket: &'a str,
    digest_s3_object: &'a str,
    digest_public_key_fingerprint: String,
    digest_signature_algorithm: &'static str,
    trailship_writer: &'a str,
    previous_digest_s3_bucket: Option<&'a str>,
    previous_digest_s3_object: Option<&'a str>,
    previous_digest_hash_value: Option<&'a str>,
    previous_digest_hash_algorithm: Option<&'static str>,
    previous_digest_signature: Option<&'a str>,
    log_files: Vec<LogOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogOut<'a> {
    s3_bucket: &'a str,
    s3_object: &'a str,
    hash_value: &'a str,
    hash_algorithm: &'static str,
    bytes: u64,
}

/// Builds one writer's chain. Storage is the caller's: this only decides
/// what the next digest says.
#[derive(Debug)]
pub struct ChainWriter {
    key: SigningKey,
    writer: String,
    /// Recorded in digests for people; not part of what is checked, so that
    /// a copy of the archive in another bucket validates.
    bucket: String,
    prev: Option<Prev>,
    started_ms: i64,
}

impl ChainWriter {
    pub fn new(key: SigningKey, writer: &str, bucket: &str, now_ms: i64) -> Result<ChainWriter, String> {
        if !valid_writer_id(writer) {
            return Err(format!("writer id {writer:?} must be 1-64 of A-Z a-z 0-9 . _ -"));
        }
        Ok(ChainWriter { key, writer: writer.into(), bucket: bucket.into(), prev: None, started_ms: now_ms })
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Continues after `prev`, this writer's newest stored digest, whose
    /// signature metadata is `signature`.
    pub fn resume(&mut self, key: &str, prev: &Digest, signature: &str) {
        let end_ms = crate::normalize::time::parse_rfc3339_ms(&prev.doc.digest_end_time).unwrap_or(self.started_ms);
        self.prev =
            Some(Prev { key: key.into(), sha256: hex::encode(prev.sha256), signature: signature.into(), end_ms });
    }

    pub fn last_end_ms(&self) -> Option<i64> {
        self.prev.as_ref().map(|p| p.end_ms)
    }

    /// Signs a digest covering `objects`, ending at `now_ms` (moved to the
    /// next second when the previous digest ends in the same one, so keys
    /// never collide), and makes it the link target of the next.
    pub fn seal(&mut self, objects: Vec<Covered>, now_ms: i64) -> Sealed {
        let start_ms = self.prev.as_ref().map(|p| p.end_ms).unwrap_or(self.started_ms);
        let mut end_ms = now_ms.div_euclid(1000) * 1000;
        if end_ms <= start_ms {
            end_ms = start_ms.div_euclid(1000) * 1000 + 1000;
        }
        let key = digest_key(&self.writer, end_ms);
        let doc = DigestOut {
            digest_start_time: format_rfc3339_s(start_ms),
            digest_end_time: format_rfc3339_s(end_ms),
            digest_s3_bucket: &self.bucket,
            digest_s3_object: &key,
            digest_public_key_fingerprint: self.key.fingerprint(),
            digest_signature_algorithm: self.key.algorithm(),
            trailship_writer: &self.writer,
            previous_digest_s3_bucket: self.prev.as_ref().map(|_| self.bucket.as_str()),
            previous_digest_s3_object: self.prev.as_ref().map(|p| p.key.as_str()),
            previous_digest_hash_value: self.prev.as_ref().map(|p| p.sha256.as_str()),
            previous_digest_hash_algorithm: self.prev.as_ref().map(|_| "SHA-256"),
            previous_digest_signature: self.prev.as_ref().map(|p| p.signature.as_str()),
            log_files: objects
                .iter()
                .map(|o| LogOut {
                    s3_bucket: &self.bucket,
                    s3_object: &o.key,
                    hash_value: &o.sha256,
                    hash_algorithm: "SHA-256",
                    bytes: o.bytes,
                })
                .collect(),
        };
        let raw = serde_json::to_vec(&doc).expect("digest serialises");
        let digest = Digest::from_json(&raw).expect("a digest trailship wrote parses");
        let signature = hex::encode(self.key.sign(digest.data_to_sign().as_bytes()));
        let gz = super::gzip(&raw);
        let metadata = BTreeMap::from([
            ("signature".to_owned(), signature.clone()),
            ("signature-algorithm".to_owned(), self.key.algorithm().to_owned()),
        ]);
        self.prev = Some(Prev { key: key.clone(), sha256: hex::encode(digest.sha256), signature, end_ms });
        Sealed { key, gz, metadata, covered: objects }
    }
}

/// The `_digests/public-keys.json` body with `key` added to `existing` (a
/// previous body) unless its fingerprint is there already: rotated keys stay
/// published so older digests still verify.
pub fn public_keys_with(existing: Option<&[u8]>, key: &SigningKey, now_ms: i64) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = existing
        .and_then(|b| serde_json::from_slice(b).ok())
        .filter(|v: &serde_json::Value| v.get("PublicKeyList").is_some_and(|l| l.is_array()))
        .unwrap_or_else(|| serde_json::json!({ "PublicKeyList": [] }));
    let fp = key.fingerprint();
    let list = doc["PublicKeyList"].as_array_mut().expect("checked above");
    if list.iter().any(|k| k.get("Fingerprint").and_then(|f| f.as_str()) == Some(fp.as_str())) {
        return None;
    }
    list.push(serde_json::json!({
        "Value": base64::engine::general_purpose::STANDARD.encode(key.public_der()),
        "Fingerprint": fp,
        "Algorithm": key.algorithm(),
        "ValidityStartTime": format_rfc3339_s(now_ms),
    }));
    Some(serde_json::to_vec_pretty(&doc).expect("serialises"))
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::keys::KeySet;

    #[test]
    fn sealed_digests_verify_and_link() {
        let key = SigningKey::from_pkcs8(generate_ed25519_pem().as_bytes()).unwrap();
        let keys =
            KeySet::from_list_public_keys_json(std::str::from_utf8(&public_keys_with(None, &key, 0).unwrap()).unwrap())
                .unwrap();
        let mut w = ChainWriter::new(key, "w1", "", 1_767_225_600_000).unwrap();
        let obj = Covered { key: "api_activity/x.parquet".into(), sha256: sha256_hex(b"x"), bytes: 1 };
        let a = w.seal(vec![obj], 1_767_225_600_000);
        let b = w.seal(vec![], 1_767_225_600_500);
        assert_eq!(parse_digest_key(&a.key), Some(("w1", "20260101T000001Z")));
        assert_eq!(parse_digest_key(&b.key), Some(("w1", "20260101T000002Z")), "same-second seals get distinct keys");
        let da = Digest::from_gzip(&a.gz).unwrap();
        let db = Digest::from_gzip(&b.gz).unwrap();
        for (d, s) in [(&da, &a), (&db, &b)] {
            keys.verify_as(
                ED25519_ALG,
                &d.doc.digest_public_key_fingerprint,
                d.data_to_sign().as_bytes(),
                &s.metadata["signature"],
            )
            .unwrap();
        }
        assert!(da.starts_chain());
        assert_eq!(db.doc.previous_digest_s3_object.as_deref(), Some(a.key.as_str()));
        assert_eq!(db.doc.previous_digest_hash_value.as_deref(), Some(hex::encode(da.sha256).as_str()));
        assert_eq!(db.previous_signature(), Some(a.metadata["signature"].as_str()));
        // An RSA signature check with an Ed25519 key is refused, not tried.
        assert!(keys.verify(&da.doc.digest_public_key_fingerprint, b"x", &a.metadata["signature"]).is_err());
    }
}
