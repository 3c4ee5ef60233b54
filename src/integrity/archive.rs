//! Validates trailship's own digest chain (`chain.rs`) over an archive: every
//! digest's signature and link, every listed object's SHA-256, and, because
//! the whole archive can be listed, every object that no digest lists.
//!
//! Verdicts and exit codes are CloudTrail's (`validate.rs`), plus
//! `unreferenced` (an object added, or whose digest was removed) and
//! `pending` (written after the newest digest, which is not due yet).

use std::collections::{BTreeMap, HashSet};

use super::chain::{DIGESTS_DIR, PUBLIC_KEYS, PUBLIC_KEYS_DIR, parse_digest_key};
use super::digest::stamp_to_ms;
use super::keys::{ED25519_ALG, KeySet, RSA_SHA256};
use super::store::Store;
use super::validate::{
    Gap, Hashing, Kind, Link, LogJob, LogRun, Outcome, Report, Rules, ValidateError, Verdict, check_digest, check_logs,
};
use crate::normalize::time::{format_rfc3339_s, parse_rfc3339_ms};

/// Where trailship keeps its own state in a local archive: not archive content.
const STATE_DIR: &str = "_trailship/";

/// Clocks of the writer and the store may disagree by this much.
const CLOCK_SKEW_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Empty for a local directory.
    pub bucket: String,
    /// The archive root inside the bucket: empty, or ending in `/`.
    pub prefix: String,
    /// How to name the archive to a person.
    pub location: String,
    pub concurrency: usize,
    pub now_ms: i64,
    /// How long an object written after the newest digest may wait for one.
    pub grace_ms: i64,
    pub progress: bool,
}

impl ArchiveOptions {
    /// `s3://bucket/prefix` → (bucket, prefix); a path → local.
    pub fn parse_location(location: &str) -> (Option<String>, String) {
        match location.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let prefix = prefix.trim_matches('/');
                (Some(bucket.to_owned()), if prefix.is_empty() { String::new() } else { format!("{prefix}/") })
            }
            None => (None, String::new()),
        }
    }
}

pub fn validate_archive(store: &dyn Store, keys: &KeySet, opts: &ArchiveOptions) -> Result<Report, ValidateError> {
    if keys.is_empty() {
        return Err(ValidateError::NoKeys);
    }
    let mut report = Report::default();
    report.archive = Some(opts.location.clone());
    let mut chains: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut objects = Vec::new();
    for (full, modified) in store.list_modified(&opts.bucket, &opts.prefix)? {
        let rel = full[opts.prefix.len()..].to_owned();
        if rel.starts_with(STATE_DIR) || rel == PUBLIC_KEYS || rel.starts_with(PUBLIC_KEYS_DIR) {
            continue;
        }
        match parse_digest_key(&rel) {
            Some((writer, stamp)) => chains.entry(writer.to_owned()).or_default().push((stamp.to_owned(), full)),
            // Anything else, in `_digests/` too, is content a digest must list.
            None => objects.push((rel, modified)),
        }
    }
    let mut walk = ArchiveWalk {
        store,
        keys,
        opts,
        report: &mut report,
        jobs: Vec::new(),
        referenced: HashSet::new(),
        found: (i64::MAX, i64::MIN),
    };
    for (writer, list) in &mut chains {
        list.sort();
        walk.chain(writer, list);
    }
    let (jobs, referenced, found) = (walk.jobs, walk.referenced, walk.found);
    let run = LogRun {
        concurrency: opts.concurrency,
        hashing: Hashing::Stored,
        kind: Kind::Object,
        resume: None,
        progress: opts.progress,
    };
    check_logs(store, &run, jobs, &mut report);

    for (rel, modified) in objects {
        if referenced.contains(&rel) {
            continue;
        }
        let location = store.display(&opts.bucket, &format!("{}{rel}", opts.prefix));
        let verdict = match modified {
            Some(m) if m + CLOCK_SKEW_MS > found.1 && opts.now_ms - m < opts.grace_ms => {
                Verdict::Pending { due_by: format_rfc3339_s(m + opts.grace_ms) }
            }
            _ => Verdict::Unreferenced,
        };
        report.record(Kind::Object, "", location, verdict);
    }
    report.regions = chains.keys().cloned().collect();
    if found.0 <= found.1 {
        report.found_start = Some(format_rfc3339_s(found.0));
        report.found_end = Some(format_rfc3339_s(found.1));
    }
    report.finish();
    Ok(report)
}

struct ArchiveWalk<'a> {
    store: &'a dyn Store,
    keys: &'a KeySet,
    opts: &'a ArchiveOptions,
    report: &'a mut Report,
    jobs: Vec<LogJob>,
    /// Object keys (relative) that some digest lists.
    referenced: HashSet<String>,
    /// Earliest start and latest end over the valid digests.
    found: (i64, i64),
}

impl ArchiveWalk<'_> {
    /// One writer's digests (sorted by stamp), walked back from the newest
    /// along the links; where a link breaks, on from the next older one.
    fn chain(&mut self, writer: &str, list: &[(String, String)]) {
        let mut visited = HashSet::new();
        let older = |stamp: &str, visited: &HashSet<String>| {
            list.iter().rev().find(|(s, k)| s.as_str() < stamp && !visited.contains(k)).map(|(_, k)| k.clone())
        };
        let mut cursor = list.last().map(|(_, k)| (k.clone(), None::<Link>));
        while let Some((key, via)) = cursor.take() {
            let location = self.store.display(&self.opts.bucket, &key);
            if !visited.insert(key.clone()) {
                let v = Verdict::InvalidFormat { reason: "digest chain loops back on itself".into() };
                self.report.record(Kind::Digest, writer, location, v);
                break;
            }
            let rel = key.strip_prefix(&self.opts.prefix).unwrap_or(&key).to_owned();
            // A link may name any key; only this writer's digest keys are followed.
            let stamp = parse_digest_key(&rel).filter(|(w, _)| *w == writer).map(|(_, s)| s.to_owned());
            let Some(stamp) = stamp else {
                if let Some(l) = &via {
                    let v = Verdict::LinkMismatch { field: "previousDigestS3Object".into() };
                    self.report.record(Kind::Digest, writer, l.newer.clone(), v);
                }
                cursor = None;
                continue;
            };
            match self.check(writer, &key, &rel, &stamp, via.as_ref()) {
                Outcome::Valid(d) => {
                    self.report.record(Kind::Digest, writer, location.clone(), Verdict::Valid);
                    self.found.0 = self.found.0.min(parse_rfc3339_ms(&d.doc.digest_start_time).unwrap_or(i64::MAX));
                    self.found.1 = self.found.1.max(parse_rfc3339_ms(&d.doc.digest_end_time).unwrap_or(i64::MIN));
                    self.queue(writer, &d.doc.log_files, true);
                    if d.starts_chain() {
                        if let Some(next) = older(&stamp, &visited) {
                            let older_end = list
                                .iter()
                                .find(|(_, k)| *k == next)
                                .and_then(|(s, _)| stamp_to_ms(s))
                                .map(format_rfc3339_s)
                                .unwrap_or_default();
                            self.report.gaps.push(Gap {
                                region: writer.into(),
                                from: older_end,
                                to: d.doc.digest_start_time.clone(),
                            });
                            cursor = Some((next, None));
                        }
                        continue;
                    }
                    let link = Link {
                        newer: location,
                        newer_start: d.doc.digest_start_time.clone(),
                        hash: d.doc.previous_digest_hash_value.clone(),
                        signature: d.previous_signature().map(str::to_owned),
                        algorithm: d.doc.previous_digest_hash_algorithm.clone(),
                    };
                    cursor = d
                        .doc
                        .previous_digest_s3_object
                        .as_ref()
                        .map(|prev| (format!("{}{prev}", self.opts.prefix), Some(link)));
                }
                Outcome::Invalid(v, d) => {
                    self.report.record(Kind::Digest, writer, location, v);
                    if let Some(d) = d {
                        self.queue(writer, &d.doc.log_files, false);
                    }
                    cursor = older(&stamp, &visited).map(|k| (k, None));
                }
            }
        }
        // A listed digest that no later digest links to: the chain forked,
        // or a digest was planted. Its objects are still checked.
        for (stamp, key) in list {
            if visited.contains(key) {
                continue;
            }
            let rel = key.strip_prefix(&self.opts.prefix).unwrap_or(key).to_owned();
            let location = self.store.display(&self.opts.bucket, key);
            let (v, d) = match self.check(writer, key, &rel, stamp, None) {
                Outcome::Valid(d) => (
                    Verdict::InvalidFormat { reason: "outside the chain: no later digest links to it".into() },
                    Some(d),
                ),
                Outcome::Invalid(v, d) => (v, d),
            };
            self.report.record(Kind::Digest, writer, location, v);
            if let Some(d) = d {
                self.queue(writer, &d.doc.log_files, false);
            }
        }
    }

    fn check(&mut self, writer: &str, key: &str, rel: &str, stamp: &str, via: Option<&Link>) -> Outcome {
        let rules = Rules {
            region: writer,
            algorithms: &[RSA_SHA256, ED25519_ALG],
            // Not the bucket: a copy of the archive elsewhere still validates.
            expect_bucket: None,
            expect_object: rel,
            expect_end_stamp: Some(stamp),
            backfill: false,
        };
        check_digest(self.store, self.keys, &self.opts.bucket, key, &rules, via, self.report)
    }

    /// Objects of a valid digest are hashed; those of an invalid one are
    /// unverified. Either way they are accounted for, not unreferenced.
    fn queue(&mut self, writer: &str, files: &[super::digest::LogFileEntry], valid: bool) {
        for e in files {
            let rel = e.s3_object.clone();
            let full = format!("{}{rel}", self.opts.prefix);
            if rel.starts_with(DIGESTS_DIR) && parse_digest_key(&rel).is_some() {
                continue;
            }
            self.referenced.insert(rel);
            if valid {
                let mut entry = e.clone();
                entry.s3_bucket = self.opts.bucket.clone();
                entry.s3_object = full;
                self.jobs.push(LogJob { region: writer.into(), entry });
            } else {
                let loc = self.store.display(&self.opts.bucket, &full);
                self.report.record(Kind::Object, writer, loc, Verdict::Unverified);
            }
        }
    }
}
