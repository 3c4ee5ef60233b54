//! One CloudTrail digest file: its fields, its location in the bucket, and
//! the exact string its signature covers.

use serde::{Deserialize, Deserializer};
use sha2::{Digest as _, Sha256};

use super::{GzipError, gunzip_one_member};

/// The digest's JSON (field names as CloudTrail writes them). Unknown fields
/// are allowed; duplicate fields are a format error (serde rejects them).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestDoc {
    pub aws_account_id: Option<String>,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: Option<String>,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
    pub previous_digest_s3_bucket: Option<String>,
    pub previous_digest_s3_object: Option<String>,
    pub previous_digest_hash_value: Option<String>,
    pub previous_digest_hash_algorithm: Option<String>,
    /// Must be present, may be null (a chain's first digest): `None` is
    /// absent, `Some(None)` is null.
    #[serde(default, deserialize_with = "present")]
    pub previous_digest_signature: Option<Option<String>>,
    pub log_files: Vec<LogFileEntry>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFileEntry {
    pub s3_bucket: String,
    pub s3_object: String,
    pub hash_value: String,
    pub hash_algorithm: Option<String>,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
}

/// A fetched, parsed digest with the hash of its uncompressed bytes.
#[derive(Debug, Clone)]
pub struct Digest {
    pub doc: DigestDoc,
    /// SHA-256 of the uncompressed bytes, exactly as stored (never of a
    /// re-serialisation: one real digest writes `\/`, another does not).
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Gzip(#[from] GzipError),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing field previousDigestSignature")]
    MissingPreviousSignature,
}

impl Digest {
    /// Parses a gzip-compressed digest object.
    pub fn from_gzip(bytes: &[u8]) -> Result<Digest, FormatError> {
        let mut raw = Vec::with_capacity(bytes.len() * 4);
        gunzip_one_member(bytes, |b| raw.extend_from_slice(b))?;
        Digest::from_json(&raw)
    }

    /// Parses uncompressed digest bytes.
    pub fn from_json(raw: &[u8]) -> Result<Digest, FormatError> {
        let doc: DigestDoc = serde_json::from_slice(raw).map_err(|e| FormatError::Json(e.to_string()))?;
        if doc.previous_digest_signature.is_none() {
            return Err(FormatError::MissingPreviousSignature);
        }
        Ok(Digest { doc, sha256: Sha256::digest(raw).into() })
    }

    pub fn previous_signature(&self) -> Option<&str> {
        self.doc.previous_digest_signature.as_ref().and_then(|s| s.as_deref())
    }

    /// Whether this digest starts a chain (logging or validation was off before it).
    pub fn starts_chain(&self) -> bool {
        self.doc.previous_digest_s3_bucket.is_none() || self.doc.previous_digest_s3_object.is_none()
    }

    /// The string CloudTrail signs: end time as written, `bucket/key`, the
    /// hex SHA-256 of the uncompressed digest, and the previous signature or
    /// `null`, joined by `\n` with no trailing newline.
    pub fn data_to_sign(&self) -> String {
        format!(
            "{}\n{}/{}\n{}\n{}",
            self.doc.digest_end_time,
            self.doc.digest_s3_bucket,
            self.doc.digest_s3_object,
            hex::encode(self.sha256),
            self.previous_signature().unwrap_or("null"),
        )
    }
}

/// What a digest's key says: the chain it belongs to and its end time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestKey {
    pub account: String,
    pub source_region: String,
    pub trail: String,
    pub home_region: String,
    /// `YYYYMMDDTHHMMSSZ`: sorts as it reads.
    pub stamp: String,
    pub backfill: bool,
}

impl DigestKey {
    /// Parses `…/<acct>_CloudTrail-Digest_<src>_<trail>_<home>_<stamp>[_backfill].json.gz`.
    /// Trail names may contain `_`; regions never do.
    pub fn parse(key: &str) -> Option<DigestKey> {
        let name = key.rsplit('/').next()?.strip_suffix(".json.gz")?;
        let (name, backfill) = match name.strip_suffix("_backfill") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let (account, rest) = name.split_once("_CloudTrail-Digest_")?;
        let (rest, stamp) = rest.rsplit_once('_')?;
        let (src, rest) = rest.split_once('_')?;
        let (trail, home) = rest.rsplit_once('_')?;
        let ok = stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp.bytes().enumerate().all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit());
        if !ok || account.is_empty() || src.is_empty() || trail.is_empty() || home.is_empty() {
            return None;
        }
        Some(DigestKey {
            account: account.into(),
            source_region: src.into(),
            trail: trail.into(),
            home_region: home.into(),
            stamp: stamp.into(),
            backfill,
        })
    }

    /// The stamp as milliseconds since the epoch.
    pub fn time_ms(&self) -> i64 {
        stamp_to_ms(&self.stamp).expect("checked in parse")
    }
}

/// `YYYYMMDDTHHMMSSZ` → ms.
pub fn stamp_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 {
        return None;
    }
    let iso = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    crate::normalize::time::parse_rfc3339_ms(&iso)
}

/// ms → `YYYYMMDDTHHMMSSZ`.
pub fn ms_to_stamp(ms: i64) -> String {
    crate::normalize::time::format_rfc3339_s(ms).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_with_underscores_in_trail_names_and_backfill() {
        let k = DigestKey::parse(
            "p/AWSLogs/o-abc/111122223333/CloudTrail-Digest/eu-west-1/2026/01/02/111122223333_CloudTrail-Digest_eu-west-1_my_trail_us-east-1_20260102T030405Z_backfill.json.gz",
        )
        .unwrap();
        assert_eq!((k.account.as_str(), k.source_region.as_str()), ("111122223333", "eu-west-1"));
        assert_eq!((k.trail.as_str(), k.home_region.as_str()), ("my_trail", "us-east-1"));
        assert_eq!((k.stamp.as_str(), k.backfill), ("20260102T030405Z", true));
        assert_eq!(ms_to_stamp(k.time_ms()), k.stamp);
        assert!(
            DigestKey::parse(
                "AWSLogs/1/CloudTrail/us-east-1/2026/01/02/1_CloudTrail_us-east-1_20260102T0305Z_abc.json.gz"
            )
            .is_none()
        );
    }

    #[test]
    fn previous_signature_must_be_present_but_may_be_null() {
        let base = r#"{"digestStartTime":"a","digestEndTime":"b","digestS3Bucket":"c","digestS3Object":"d","digestPublicKeyFingerprint":"e","logFiles":[]"#;
        let null = Digest::from_json(format!("{base},\"previousDigestSignature\":null}}").as_bytes()).unwrap();
        assert!(null.data_to_sign().ends_with("\nnull"));
        assert_eq!(
            Digest::from_json(format!("{base}}}").as_bytes()).unwrap_err(),
            FormatError::MissingPreviousSignature
        );
        let dup = format!("{base},\"previousDigestSignature\":null,\"digestS3Object\":\"x\"}}");
        assert!(matches!(Digest::from_json(dup.as_bytes()), Err(FormatError::Json(_))));
    }
}
