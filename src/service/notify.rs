//! Log files named by S3 event notifications, and the in-stream digest
//! check: fetching, hashing, ingest records, digest verdicts, coverage.

use metrics::counter;

use super::Service;
use super::spool::Spool;
use crate::deadletter::Reason;
use crate::integrity::s3::S3Store;
use crate::integrity::store::{GetError, ListError, Object, Store};
use crate::integrity::{GzipError, HeldGzip};
use crate::normalize::ObjectRef;
use crate::pipeline::{Origin, Stages, Summary};
use crate::sink::objects::StoreError;
use crate::source::s3_notify::{self, ObjectEvent, ObjectKind};

pub(super) const INGESTED: &str = "_trailship/ingested/";

/// Where the hash of an ingested log file is recorded, for the digest check.
fn ingest_key(bucket: &str, key: &str) -> String {
    format!("{INGESTED}{bucket}/{key}.json")
}

/// Written when a checked digest lists an ingested log file.
pub(super) fn covered_key(bucket: &str, key: &str) -> String {
    format!("_trailship/covered/{bucket}/{key}.json")
}

/// A log file named by a notification, as fetched.
pub(super) enum Fetched {
    Log {
        bucket: String,
        key: String,
        version_id: Option<String>,
        sha256: String,
        text: Vec<u8>,
    },
    /// A digest file, checked: its integrity-dataset object, and a coverage
    /// marker for each listed log file that was ingested.
    Digest {
        key: String,
        body: Vec<u8>,
        covered: Vec<(String, Vec<u8>)>,
    },
    Dead {
        name: String,
        reason: Reason,
        detail: String,
    },
}

fn fetch_log(s3: &S3Store, ev: &ObjectEvent, max: u64) -> Result<Fetched, StoreError> {
    let name = format!("s3://{}/{}", ev.bucket, ev.key);
    let dead = |reason, detail: String| Ok(Fetched::Dead { name: name.clone(), reason, detail });
    let got = s3.block_on(async {
        let o = s3
            .client()
            .get_object()
            .bucket(&ev.bucket)
            .key(&ev.key)
            .set_version_id(ev.version_id.clone())
            .send()
            .await?;
        let len = o.content_length().unwrap_or(0).max(0) as u64;
        if len > max {
            return Ok(Err(len));
        }
        let version = o.version_id().map(str::to_owned);
        Ok::<_, aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>>(Ok((
            version,
            o.body.collect().await,
        )))
    });
    let (version_id, body) = match got {
        Ok(Ok((v, Ok(b)))) => (v, b.to_vec()),
        Ok(Ok((_, Err(e)))) => return Err(StoreError { op: "read", key: name, detail: e.to_string() }),
        Ok(Err(len)) => {
            return dead(Reason::Oversized, format!("log file is {len} bytes, over [source_s3] max_object_bytes"));
        }
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            return match status {
                Some(403 | 404) => {
                    dead(Reason::ReadError, format!("cannot read the log file: HTTP {}", status.unwrap_or(0)))
                }
                _ => Err(StoreError {
                    op: "get",
                    key: name,
                    detail: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                }),
            };
        }
    };
    match crate::integrity::gunzip_held(&body, usize::try_from(max).unwrap_or(usize::MAX)) {
        Ok((text, sha256)) => Ok(Fetched::Log {
            bucket: ev.bucket.clone(),
            key: ev.key.clone(),
            version_id: version_id.or_else(|| ev.version_id.clone()),
            sha256: hex::encode(sha256),
            text,
        }),
        Err(HeldGzip::Over) => dead(Reason::Oversized, format!("log file inflates past {max} bytes")),
        Err(HeldGzip::Bad(GzipError::Truncated)) => {
            dead(Reason::TruncatedGzip, "log file: truncated or corrupt gzip".into())
        }
        Err(HeldGzip::Bad(e)) => dead(Reason::CorruptGzip, format!("log file: {e}")),
    }
}

/// Feeds fetched log files into the stages, each record with its object's
/// provenance; the message's own bytes are not records.
pub(super) fn fetched_records(
    stages: &mut Stages<'_>,
    origin: &Origin<'_>,
    fetched: &[Fetched],
    spool: &mut Spool,
    summary: &mut Summary,
    extra: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), crate::sink::SinkError> {
    for f in fetched {
        match f {
            Fetched::Log { bucket, key, version_id, sha256, text } => {
                // What the in-stream digest check compares a digest with.
                let record = serde_json::json!({
                    "bucket": bucket, "key": key, "version_id": version_id, "sha256": sha256,
                    "topic": origin.kafka.map(|k| k.topic), "partition": origin.kafka.map(|k| k.partition),
                    "offset": origin.kafka.map(|k| k.offset),
                });
                extra.push((ingest_key(bucket, key), serde_json::to_vec(&record).expect("serialises")));
                let name = format!("s3://{bucket}/{key}");
                let object = ObjectRef { bucket, key, version_id: version_id.as_deref(), sha256 };
                let o = Origin { object: Some(object), kafka: origin.kafka, ..Origin::file(&name) };
                stages.input_text(&o, text, spool, summary)?;
            }
            Fetched::Digest { key, body, covered } => {
                summary.records_read += 1;
                summary.filtered += 1;
                extra.push((key.clone(), body.clone()));
                extra.extend(covered.iter().cloned());
            }
            Fetched::Dead { name, reason, detail } => {
                stages.dead_input(spool, summary, *reason, detail, name, origin.body.unwrap_or_default())?;
            }
        }
    }
    Ok(())
}

impl Service<'_> {
    /// Fetches the log file `ev` names, hashing its content as it inflates.
    /// Answers that will not change on retry (missing, forbidden, not gzip,
    /// too large) become dead letters; anything else is retried.
    pub(super) fn fetch(&mut self, ev: &ObjectEvent) -> Option<Fetched> {
        let name = format!("s3://{}/{}", ev.bucket, ev.key);
        match s3_notify::classify(&ev.key) {
            ObjectKind::CloudTrailLog => {}
            ObjectKind::CloudTrailDigest => return self.check_digest(ev),
            ObjectKind::Other => {
                return Some(Fetched::Dead {
                    name,
                    reason: Reason::UnrecognisedSource,
                    detail: "not a CloudTrail log file".into(),
                });
            }
        }
        let max = self.cfg.source_s3.max_object_bytes;
        self.retry("fetch log file", |s| fetch_log(s.source_s3()?, ev, max))
    }

    /// The client for the trail's bucket, made on first use (a config
    /// without S3 notifications never needs AWS credentials).
    fn source_s3(&self) -> Result<&S3Store, StoreError> {
        if self.source_s3.get().is_none() {
            let c = &self.cfg.source_s3;
            let s3 = S3Store::new(c.endpoint_url.as_deref(), c.region.as_deref()).map_err(|e| StoreError {
                op: "connect to",
                key: "S3".into(),
                detail: e.to_string(),
            })?;
            let _ = self.source_s3.set(s3);
        }
        Ok(self.source_s3.get().expect("set above"))
    }

    /// The in-stream digest check: an announced CloudTrail digest is
    /// verified as validate-digests verifies each digest (format, location,
    /// algorithm, signature), then every log file it lists is compared with
    /// the hash recorded when that file was ingested. The verdicts become
    /// one NDJSON object of the integrity dataset
    /// (`integrity/cloudtrail_digests/`), written with the batch.
    ///
    /// A store that does not answer is retried, as for log files: its
    /// verdict would be `unreadable`, committed for good, when a later try
    /// can read the digest. None when giving up (shutting down).
    fn check_digest(&mut self, ev: &ObjectEvent) -> Option<Fetched> {
        use crate::integrity::validate::{Verdict, check_announced_digest};
        let name = format!("s3://{}/{}", ev.bucket, ev.key);
        let got = self.retry("fetch digest", |s| match s.source_s3()?.get(&ev.bucket, &ev.key) {
            Err(GetError::Unavailable(detail)) => Err(StoreError { op: "get", key: name.clone(), detail }),
            other => Ok(other),
        })?;
        let read = OneObject { bucket: &ev.bucket, key: &ev.key, got };
        let parsed_key = crate::integrity::digest::DigestKey::parse(&ev.key);
        let (mut verdict, mut digest) = check_announced_digest(&read, &self.keys.borrow(), &ev.bucket, &ev.key);
        if let (Verdict::KeyNotFound { .. }, None) = (&verdict, &self.cfg.source_s3.public_keys_file)
            && let Some(d) = &digest
        {
            // Keys rotate: ask CloudTrail for the ones around this digest, once.
            let t = crate::normalize::time::parse_rfc3339_ms(&d.doc.digest_end_time).unwrap_or(0);
            let region = parsed_key.as_ref().map(|k| k.source_region.as_str()).unwrap_or_default();
            let api = self.cloudtrail.get_or_init(|| {
                crate::integrity::cloudtrail_api::CloudTrailApi::new(
                    self.cfg.source_s3.cloudtrail_endpoint_url.as_deref(),
                )
                .ok()
            });
            if let Some(api) = api {
                match api.list_public_keys(region, t - 3_600_000, t + 7_200_000, &mut self.keys.borrow_mut()) {
                    Ok(_) => {
                        (verdict, digest) = check_announced_digest(&read, &self.keys.borrow(), &ev.bucket, &ev.key)
                    }
                    Err(e) => tracing::warn!(error = %e, "ListPublicKeys failed"),
                }
            }
        }
        let tag = |v: &Verdict| {
            serde_json::to_value(v).ok().and_then(|j| j["verdict"].as_str().map(str::to_owned)).unwrap_or_default()
        };
        let digest_verdict = tag(&verdict);
        counter!("trailship_digests_checked_total", "verdict" => digest_verdict.clone()).increment(1);
        if !verdict.is_valid() {
            tracing::error!(digest = %ev.key, verdict = %verdict.text(), "CloudTrail digest failed its check");
        }
        let now = crate::sink::now_ms();
        let base = serde_json::json!({
            "digest_bucket": ev.bucket, "digest_key": ev.key, "digest_verdict": digest_verdict,
            "digest_detail": verdict.text(), "checked_at": now,
        });
        let mut lines = Vec::new();
        let mut covered = Vec::new();
        for e in digest.iter().flat_map(|d| &d.doc.log_files) {
            let ikey = ingest_key(&e.s3_bucket, &e.s3_object);
            let record = self.retry("read ingest record", |s| s.store.get(&ikey))?;
            let ingested = record
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["sha256"].as_str().map(str::to_owned));
            let v = match &ingested {
                None => "not_ingested",
                Some(h) if h.eq_ignore_ascii_case(&e.hash_value) && verdict.is_valid() => "valid",
                Some(h) if h.eq_ignore_ascii_case(&e.hash_value) => "unverified",
                Some(_) => "hash_mismatch",
            };
            counter!("trailship_digest_log_files_total", "verdict" => v).increment(1);
            match v {
                "hash_mismatch" => {
                    tracing::error!(log = %e.s3_object, expected = %e.hash_value, ingested = ?ingested, "ingested log file differs from its digest")
                }
                "not_ingested" => {
                    tracing::warn!(log = %e.s3_object, digest = %ev.key, "digest lists a log file not ingested (yet)")
                }
                _ => {}
            }
            let mut line = base.clone();
            line["log_bucket"] = e.s3_bucket.clone().into();
            line["log_key"] = e.s3_object.clone().into();
            line["expected_sha256"] = e.hash_value.to_ascii_lowercase().into();
            line["ingested_sha256"] = ingested.clone().into();
            line["verdict"] = v.into();
            if ingested.is_some() {
                let marker = serde_json::json!({"digest_key": ev.key, "verdict": v});
                covered
                    .push((covered_key(&e.s3_bucket, &e.s3_object), serde_json::to_vec(&marker).expect("serialises")));
            }
            lines.push(line);
        }
        if lines.is_empty() {
            lines.push(base);
        }
        let mut body = Vec::new();
        for l in &lines {
            serde_json::to_writer(&mut body, l).expect("serialises");
            body.push(b'\n');
        }
        let day = parsed_key.as_ref().map_or("unknown", |k| &k.stamp[..8]);
        let name = ev.key.rsplit('/').next().unwrap_or("digest").trim_end_matches(".json.gz");
        let key = format!("integrity/cloudtrail_digests/digestDay={day}/{name}.ndjson");
        Some(Fetched::Digest { key, body, covered })
    }
}

/// One object already read, as a [`Store`]: the digest check reads the
/// announced digest through it, after the worker's retries have read it.
struct OneObject<'a> {
    bucket: &'a str,
    key: &'a str,
    got: Result<Object, GetError>,
}

impl Store for OneObject<'_> {
    fn list_modified(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, Option<i64>)>, ListError> {
        Err(ListError { location: format!("s3://{bucket}/{prefix}"), reason: "one object only".into() })
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Object, GetError> {
        if (bucket, key) == (self.bucket, self.key) { self.got.clone() } else { Err(GetError::NotFound) }
    }
}
