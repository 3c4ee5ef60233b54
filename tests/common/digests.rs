//! Generates CloudTrail-shaped digest chains signed with a test RSA-2048 key,
//! laid out as a local copy of the bucket (`<root>/<bucket>/<key>`, digest
//! signatures in `<key>.metadata.json`). Scenarios edit what this writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer as _};
use sha2::{Digest as _, Sha256};

pub const BUCKET: &str = "trail-bucket";
pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "us-east-1";
pub const TRAIL: &str = "audit";
pub const ARN: &str = "arn:aws:cloudtrail:us-east-1:111122223333:trail/audit";
/// 2026-01-01T00:00:00Z
pub const T0: i64 = 1_767_225_600_000;
pub const HOUR: i64 = 3_600_000;

pub struct TestKey {
    pub signing: SigningKey<Sha256>,
    pub pkcs1_der: Vec<u8>,
    /// The private key, for trailship's own chain (which loads PKCS#8).
    pub pkcs8_der: Vec<u8>,
    pub fingerprint: String,
}

/// Three keys, made once per test binary (RSA key generation is slow).
pub fn keys() -> &'static [TestKey; 3] {
    static KEYS: OnceLock<[TestKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::array::from_fn(|_| {
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let pkcs1_der = private.to_public_key().to_pkcs1_der().unwrap().as_bytes().to_vec();
            let fingerprint = hex::encode(md5::Md5::digest(&pkcs1_der));
            let pkcs8_der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&private).unwrap().as_bytes().to_vec();
            TestKey { signing: SigningKey::<Sha256>::new(private), pkcs1_der, pkcs8_der, fingerprint }
        })
    })
}

/// A ListPublicKeys answer publishing the given keys (as `aws cloudtrail list-public-keys` prints it).
pub fn public_keys_json(which: &[usize]) -> String {
    let list: Vec<_> = which
        .iter()
        .map(|&i| {
            let k = &keys()[i];
            serde_json::json!({
                "Value": base64::engine::general_purpose::STANDARD.encode(&k.pkcs1_der),
                "ValidityStartTime": (T0 / 1000 - 86_400) as f64,
                "ValidityEndTime": (T0 / 1000 + 30 * 86_400) as f64,
                "Fingerprint": k.fingerprint,
            })
        })
        .collect();
    serde_json::json!({ "PublicKeyList": list }).to_string()
}

pub fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

pub fn iso(ms: i64) -> String {
    trailship::normalize::time::format_rfc3339_s(ms)
}

use trailship::integrity::digest::ms_to_stamp as stamp;
use trailship::integrity::validate::{Kind, Options, Report, Trail, Verdict};

/// Validation of the generated trail between `start` and `end`, every region.
pub fn options(start: i64, end: i64, concurrency: usize) -> Options {
    Options {
        bucket: BUCKET.into(),
        prefix: None,
        org_id: None,
        trail: Trail::from_arn(ARN).unwrap(),
        regions: Vec::new(),
        start_ms: start,
        end_ms: end,
        concurrency,
        now_ms: T0 + 1000 * HOUR,
        resume: None,
        progress: false,
    }
}

/// The verdict of the `kind` object whose location ends with `suffix`.
pub fn verdict(r: &Report, kind: Kind, suffix: &str) -> Verdict {
    r.findings
        .iter()
        .find(|f| f.kind == kind && f.location.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {kind:?} finding for {suffix}: {:#?}", r.findings))
        .verdict
        .clone()
}

/// What one hour of the chain holds.
#[derive(Clone, Copy)]
pub struct Hour {
    pub logs: usize,
    pub key: usize,
    /// Logging was off before this hour: a new chain starts here.
    pub restart: bool,
    /// No digest at all (logging off this hour).
    pub off: bool,
}

impl Hour {
    pub fn logs(n: usize) -> Hour {
        Hour { logs: n, key: 0, restart: false, off: false }
    }
}

pub struct Chain {
    pub root: PathBuf,
    /// Digest keys, oldest first (`None` for hours that are off).
    pub digests: Vec<Option<String>>,
    /// Log file keys per hour.
    pub logs: Vec<Vec<String>>,
}

pub fn digest_key(end_ms: i64) -> String {
    let d = iso(end_ms);
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{}/{}/{}/{ACCOUNT}_CloudTrail-Digest_{REGION}_{TRAIL}_{REGION}_{}.json.gz",
        &d[0..4],
        &d[5..7],
        &d[8..10],
        stamp(end_ms)
    )
}

impl Chain {
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    pub fn meta_path(&self, key: &str) -> PathBuf {
        let mut p = self.path(key).into_os_string();
        p.push(".metadata.json");
        p.into()
    }

    pub fn digest(&self, hour: usize) -> &str {
        self.digests[hour].as_deref().unwrap()
    }

    /// Reads a digest's JSON.
    pub fn read_digest(&self, hour: usize) -> serde_json::Value {
        serde_json::from_slice(&gunzip(&std::fs::read(self.path(self.digest(hour))).unwrap())).unwrap()
    }

    /// Rewrites hour `h`'s digest with `edit` applied and signs it again
    /// with `key` (a validly signed digest with chosen content).
    pub fn resign(&self, hour: usize, key: usize, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut doc = self.read_digest(hour);
        edit(&mut doc);
        let raw = serde_json::to_vec(&doc).unwrap();
        write_signed(&self.root, self.digest(hour), &raw, &doc, key);
    }
}

fn write_signed(root: &Path, key: &str, raw: &[u8], doc: &serde_json::Value, signer: usize) -> String {
    let prev = doc["previousDigestSignature"].as_str().unwrap_or("null");
    let to_sign = format!(
        "{}\n{}/{}\n{}\n{}",
        doc["digestEndTime"].as_str().unwrap(),
        doc["digestS3Bucket"].as_str().unwrap(),
        doc["digestS3Object"].as_str().unwrap(),
        hex::encode(Sha256::digest(raw)),
        prev
    );
    let sig = hex::encode(keys()[signer].signing.sign(to_sign.as_bytes()).to_bytes());
    let path = root.join(BUCKET).join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, gzip(raw, 6)).unwrap();
    let mut meta = path.into_os_string();
    meta.push(".metadata.json");
    std::fs::write(meta, serde_json::json!({"signature": sig, "signature-algorithm": "SHA256withRSA"}).to_string())
        .unwrap();
    sig
}

/// Writes hourly digests from `T0` for `hours`, each listing its log files.
pub fn build(root: &Path, hours: &[Hour]) -> Chain {
    build_with(root, hours, 1)
}

/// As [`build`], with `records` events in each log file (for benchmarks).
pub fn build_with(root: &Path, hours: &[Hour], records: usize) -> Chain {
    build_at(root, hours, records, T0)
}

/// As [`build_with`], from the hour that starts at `t0` (ms).
pub fn build_at(root: &Path, hours: &[Hour], records: usize, t0: i64) -> Chain {
    let mut chain = Chain { root: root.to_path_buf(), digests: Vec::new(), logs: Vec::new() };
    let mut prev: Option<(String, String, String)> = None; // key, sha256 hex, signature
    for (h, spec) in hours.iter().enumerate() {
        let start = t0 + h as i64 * HOUR;
        let end = start + HOUR;
        let mut files = Vec::new();
        let mut entries = Vec::new();
        for i in 0..spec.logs {
            let delivered = start + (i as i64 + 1) * 5 * 60_000;
            let d = iso(delivered);
            let key = format!(
                "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{}/{}/{}/{ACCOUNT}_CloudTrail_{REGION}_{}Z_{:016x}.json.gz",
                &d[0..4],
                &d[5..7],
                &d[8..10],
                &stamp(delivered)[..13],
                h * 1000 + i
            );
            let events: Vec<_> = (0..records)
                .map(|r| {
                    serde_json::json!({
                        "eventVersion": "1.08", "eventID": format!("ev-{h}-{i}-{r}"), "eventTime": iso(delivered - 60_000),
                        "eventSource": "s3.amazonaws.com", "eventName": "PutObject", "awsRegion": REGION,
                        "recipientAccountId": ACCOUNT, "sourceIPAddress": "198.51.100.7",
                        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/app/i-{r:08x}")},
                        "requestParameters": {"bucketName": "data", "key": format!("objects/{h}/{i}/{r}.json")},
                    })
                })
                .collect();
            let body = serde_json::json!({ "Records": events }).to_string();
            let path = root.join(BUCKET).join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, gzip(body.as_bytes(), 6)).unwrap();
            entries.push(serde_json::json!({
                "s3Bucket": BUCKET, "s3Object": key, "hashValue": hex::encode(Sha256::digest(body.as_bytes())),
                "hashAlgorithm": "SHA-256", "newestEventTime": iso(delivered - 60_000), "oldestEventTime": iso(delivered - 60_000),
            }));
            files.push(key);
        }
        chain.logs.push(files);
        if spec.off {
            chain.digests.push(None);
            prev = None;
            continue;
        }
        if spec.restart {
            prev = None;
        }
        let key = digest_key(end);
        let (pb, po, ph, pa, ps) = match &prev {
            Some((k, hash, sig)) => (
                serde_json::json!(BUCKET),
                serde_json::json!(k),
                serde_json::json!(hash),
                serde_json::json!("SHA-256"),
                serde_json::json!(sig),
            ),
            None => Default::default(),
        };
        let doc = serde_json::json!({
            "awsAccountId": ACCOUNT, "digestStartTime": iso(start), "digestEndTime": iso(end),
            "digestS3Bucket": BUCKET, "digestS3Object": key,
            "digestPublicKeyFingerprint": keys()[spec.key].fingerprint, "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": null, "oldestEventTime": null,
            "previousDigestS3Bucket": pb, "previousDigestS3Object": po, "previousDigestHashValue": ph,
            "previousDigestHashAlgorithm": pa, "previousDigestSignature": ps, "logFiles": entries,
        });
        let raw = serde_json::to_vec(&doc).unwrap();
        let sig = write_signed(root, &key, &raw, &doc, spec.key);
        prev = Some((key.clone(), hex::encode(Sha256::digest(&raw)), sig));
        chain.digests.push(Some(key));
    }
    chain
}

/// Empties `bucket` and uploads every file under `base` to `prefix<relative path>`,
/// each `<file>.metadata.json` as that object's user metadata.
pub fn upload_to(s3: &trailship::integrity::s3::S3Store, bucket: &str, prefix: &str, base: &Path) {
    let c = s3.client();
    s3.block_on(async {
        let _ = c.create_bucket().bucket(bucket).send().await;
        let mut pages = c.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                c.delete_object().bucket(bucket).key(o.key().unwrap()).send().await.unwrap();
            }
        }
        let mut files = Vec::new();
        collect(base, &mut files);
        for f in files {
            let rel = f.strip_prefix(base).unwrap().to_str().unwrap().to_owned();
            if rel.ends_with(".metadata.json") {
                continue;
            }
            let mut put =
                c.put_object().bucket(bucket).key(format!("{prefix}{rel}")).body(std::fs::read(&f).unwrap().into());
            if let Ok(m) = std::fs::read(base.join(format!("{rel}.metadata.json"))) {
                let m: std::collections::BTreeMap<String, String> = serde_json::from_slice(&m).unwrap();
                for (k, v) in m {
                    put = put.metadata(k, v);
                }
            }
            put.send().await.unwrap();
        }
    });
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { collect(&p, out) } else { out.push(p) }
    }
}
