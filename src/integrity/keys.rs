//! Public keys: loaded from a `ListPublicKeys` answer (the API, a file saved
//! by `aws cloudtrail list-public-keys` for air-gapped audits, or the list
//! trailship publishes beside its archive), looked up by fingerprint, used
//! to verify SHA256withRSA (CloudTrail's) or Ed25519 (trailship's option).

use std::collections::HashMap;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use ring::signature::{ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a ListPublicKeys answer: {0}")]
    Shape(String),
}

#[derive(Debug, Clone)]
pub struct PublicKey {
    pub fingerprint: String,
    /// `None` when the value is neither an RSA nor an Ed25519 key.
    material: Option<KeyMaterial>,
    /// The fingerprint is the MD5 of the value as delivered: a mismatch
    /// means a corrupted or substituted key file.
    pub fingerprint_matches: bool,
    pub valid_from_ms: Option<i64>,
    pub valid_to_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    /// PKCS#1 `RSAPublicKey` DER (unwrapped from SubjectPublicKeyInfo if needed).
    Rsa(Vec<u8>),
    Ed25519([u8; 32]),
}

/// The names a digest gives its signature algorithm.
pub const RSA_SHA256: &str = "SHA256withRSA";
pub const ED25519_ALG: &str = "Ed25519";

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    KeyNotFound,
    KeyUnloadable,
    BadSignatureEncoding,
    Mismatch,
}

#[derive(Debug, Default, Clone)]
pub struct KeySet {
    by_fingerprint: HashMap<String, PublicKey>,
}

impl KeySet {
    /// Adds every key of `other` (a key published in several files).
    pub fn extend(&mut self, other: KeySet) {
        self.by_fingerprint.extend(other.by_fingerprint);
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }

    /// Adds a key from its DER bytes as delivered (PKCS#1, or SPKI as one
    /// of AWS's published samples is).
    pub fn insert_der(&mut self, fingerprint: &str, der: &[u8], valid_from_ms: Option<i64>, valid_to_ms: Option<i64>) {
        let fp = fingerprint.to_ascii_lowercase();
        let fingerprint_matches = hex::encode(Md5::digest(der)) == fp;
        let material = if der_is_rsa_public_key(der) {
            Some(KeyMaterial::Rsa(der.to_vec()))
        } else {
            spki_to_pkcs1(der).map(KeyMaterial::Rsa).or_else(|| spki_ed25519(der).map(KeyMaterial::Ed25519))
        };
        self.by_fingerprint.insert(
            fp.clone(),
            PublicKey { fingerprint: fp, material, fingerprint_matches, valid_from_ms, valid_to_ms },
        );
    }

    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.by_fingerprint.get(&fingerprint.to_ascii_lowercase())
    }

    /// Reads a ListPublicKeys answer: `PublicKeyList` (API, AWS CLI) or
    /// `publicKeyList` (the User Guide's sample), `Value` base64 DER, times as
    /// epoch numbers, numeric strings or RFC 3339.
    pub fn from_list_public_keys_json(text: &str) -> Result<KeySet, KeyFileError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| KeyFileError::Shape(e.to_string()))?;
        let list = v
            .get("PublicKeyList")
            .or_else(|| v.get("publicKeyList"))
            .and_then(|l| l.as_array())
            .ok_or_else(|| KeyFileError::Shape("no PublicKeyList array".into()))?;
        let mut set = KeySet::default();
        for (i, k) in list.iter().enumerate() {
            let field = |a: &str, b: &str| k.get(a).or_else(|| k.get(b));
            let value = field("Value", "value")
                .and_then(|x| x.as_str())
                .ok_or_else(|| KeyFileError::Shape(format!("key {i}: no Value")))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|e| KeyFileError::Shape(format!("key {i}: Value is not base64: {e}")))?;
            let fp = field("Fingerprint", "fingerprint")
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| hex::encode(Md5::digest(&der)));
            let time = |a, b| field(a, b).and_then(time_ms);
            set.insert_der(
                &fp,
                &der,
                time("ValidityStartTime", "validityStartTime"),
                time("ValidityEndTime", "validityEndTime"),
            );
        }
        Ok(set)
    }

    pub fn from_file(path: &std::path::Path) -> Result<KeySet, KeyFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyFileError::Io { path: path.display().to_string(), source })?;
        KeySet::from_list_public_keys_json(&text)
    }

    /// Verifies a hex signature over `data` with the key named by
    /// `fingerprint`, as SHA256withRSA. See [`KeySet::verify_as`].
    pub fn verify(&self, fingerprint: &str, data: &[u8], signature_hex: &str) -> Result<(), SigError> {
        self.verify_as(RSA_SHA256, fingerprint, data, signature_hex)
    }

    /// Verifies with the algorithm the digest names. A key of another type
    /// is a mismatch, never a fallback: the algorithm is part of what an
    /// attacker could edit.
    pub fn verify_as(
        &self,
        algorithm: &str,
        fingerprint: &str,
        data: &[u8],
        signature_hex: &str,
    ) -> Result<(), SigError> {
        let key = self.get(fingerprint).ok_or(SigError::KeyNotFound)?;
        let material = key.material.as_ref().filter(|_| key.fingerprint_matches).ok_or(SigError::KeyUnloadable)?;
        let sig = decode_signature(signature_hex)?;
        let ok = match (algorithm, material) {
            (RSA_SHA256, KeyMaterial::Rsa(der)) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).verify(data, &sig).is_ok()
            }
            (ED25519_ALG, KeyMaterial::Ed25519(pk)) => UnparsedPublicKey::new(&ED25519, pk).verify(data, &sig).is_ok(),
            _ => false,
        };
        if ok { Ok(()) } else { Err(SigError::Mismatch) }
    }
}

/// Hex (any case) to bytes; odd length or non-hex is an encoding error.
pub fn decode_signature(hex_sig: &str) -> Result<Vec<u8>, SigError> {
    hex::decode(hex_sig.trim()).map_err(|_| SigError::BadSignatureEncoding)
}

fn time_ms(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        serde_json::Value::String(s) => {
            s.parse::<f64>().ok().map(|x| (x * 1000.0) as i64).or_else(|| crate::normalize::time::parse_rfc3339_ms(s))
        }
        _ => None,
    }
}

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// `SEQUENCE { INTEGER n, INTEGER e }` and nothing after it.
fn der_is_rsa_public_key(der: &[u8]) -> bool {
    let Some((0x30, body, [])) = tlv(der) else { return false };
    let Some((0x02, _, rest)) = tlv(body) else { return false };
    matches!(tlv(rest), Some((0x02, _, [])))
}

/// `SubjectPublicKeyInfo { AlgorithmIdentifier, BIT STRING { 0x00, RSAPublicKey } }`.
fn spki_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (0x30, body, []) = tlv(der)? else { return None };
    let (0x30, _alg, rest) = tlv(body)? else { return None };
    let (0x03, bits, []) = tlv(rest)? else { return None };
    let (&0, key) = bits.split_first()? else { return None };
    der_is_rsa_public_key(key).then(|| key.to_vec())
}

/// `SubjectPublicKeyInfo { { id-Ed25519 }, BIT STRING { 0x00, 32 bytes } }` (RFC 8410).
fn spki_ed25519(der: &[u8]) -> Option<[u8; 32]> {
    let (0x30, body, []) = tlv(der)? else { return None };
    let (0x30, alg, rest) = tlv(body)? else { return None };
    let (0x06, [0x2b, 0x65, 0x70], []) = tlv(alg)? else { return None };
    let (0x03, bits, []) = tlv(rest)? else { return None };
    let (&0, key) = bits.split_first()? else { return None };
    key.try_into().ok()
}

/// The SPKI DER of an Ed25519 public key, as trailship publishes it.
pub fn ed25519_spki(public: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(public);
    der
}
