//! Walks CloudTrail digest chains back from the newest digest and gives
//! every digest and log file a verdict, like `aws cloudtrail validate-logs`,
//! plus what it misses: link fields compared with the digest they name,
//! deletions at the newest end and several in a row, log files listed only
//! by an invalid digest, appended gzip members, and many regions per run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::digest::{Digest, DigestKey, FormatError, LogFileEntry, ms_to_stamp};
use super::keys::{KeySet, RSA_SHA256, SigError, decode_signature};
use super::resume::Resume;
use super::store::{GetError, ListError, Store};
use super::{sha256_of_gzip, sha256_of_reader};
use crate::normalize::time::{format_rfc3339_s, parse_rfc3339_ms};

const HOUR_MS: i64 = 3_600_000;

/// What `--trail-arn` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    pub account: String,
    pub home_region: String,
    pub name: String,
}

impl Trail {
    /// `arn:<partition>:cloudtrail:<home-region>:<account>:trail/<name>`.
    pub fn from_arn(arn: &str) -> Result<Trail, String> {
        let bad = || format!("invalid trail ARN {arn:?}: expected arn:aws:cloudtrail:REGION:ACCOUNT:trail/NAME");
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "cloudtrail" || parts[3].is_empty() {
            return Err(bad());
        }
        let account = parts[4];
        let name = parts[5].strip_prefix("trail/").filter(|n| !n.is_empty() && !n.contains('/')).ok_or_else(bad)?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Trail { account: account.into(), home_region: parts[3].into(), name: name.into() })
    }
}

#[derive(Clone)]
pub struct Options {
    pub bucket: String,
    /// Key prefix before `AWSLogs/`, without a trailing `/`.
    pub prefix: Option<String>,
    /// Organization trails: `AWSLogs/<org-id>/<account>/...`.
    pub org_id: Option<String>,
    pub trail: Trail,
    /// Source regions; empty: every region with digests.
    pub regions: Vec<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Log files fetched and hashed at once.
    pub concurrency: usize,
    /// Now, for deciding whether digests for the end of the range are due.
    pub now_ms: i64,
    /// Log files an interrupted run already proved valid.
    pub resume: Option<std::sync::Arc<Resume>>,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

/// An object's verdict. Everything but `Valid` fails the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    NotFound,
    Unreadable {
        reason: String,
    },
    InvalidFormat {
        reason: String,
    },
    Moved,
    SignatureMissing {
        content_authentic: bool,
    },
    UnsupportedAlgorithm {
        algorithm: String,
    },
    KeyNotFound {
        fingerprint: String,
        region: String,
    },
    KeyUnloadable {
        fingerprint: String,
    },
    SignatureMismatch {
        content_authentic: bool,
    },
    LinkMismatch {
        field: String,
    },
    /// Digests that must have existed (hourly cadence, or a link into a
    /// stretch with none) but were not found.
    MissingInferred {
        from: String,
        to: String,
        count: i64,
    },
    HashMismatch,
    /// Listed only by a digest that is not valid: its hash is unproven.
    Unverified,
    /// In trailship's archive but in no digest: added, or its digest removed.
    Unreferenced,
    /// Written after the newest digest and younger than the grace period:
    /// the next digest is not due yet. Not an error.
    Pending {
        due_by: String,
    },
}

impl Verdict {
    /// Whether this verdict lets the run pass (valid, or not yet due).
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid | Verdict::Pending { .. })
    }

    /// The wording of `aws cloudtrail validate-logs` where it has one.
    pub fn text(&self) -> String {
        match self {
            Verdict::Valid => "valid".into(),
            Verdict::NotFound => "INVALID: not found".into(),
            Verdict::Unreadable { reason } => format!("INVALID: unreadable ({reason})"),
            Verdict::InvalidFormat { reason } => format!("INVALID: invalid format ({reason})"),
            Verdict::Moved => "INVALID: has been moved from its original location".into(),
            Verdict::SignatureMissing { content_authentic } => format!(
                "INVALID: signature verification failed (no signature metadata{})",
                if *content_authentic { "; content authentic via the next digest's link signature" } else { "" }
            ),
            Verdict::UnsupportedAlgorithm { algorithm } => format!("INVALID: unsupported algorithm {algorithm}"),
            Verdict::KeyNotFound { fingerprint, region } => {
                format!("INVALID: public key not found in region {region} for fingerprint {fingerprint}")
            }
            Verdict::KeyUnloadable { fingerprint } => {
                format!("INVALID: Unable to load PKCS #1 key with fingerprint {fingerprint}")
            }
            Verdict::SignatureMismatch { content_authentic } => format!(
                "INVALID: signature verification failed{}",
                if *content_authentic {
                    " (metadata signature altered; content authentic via the next digest's link signature)"
                } else {
                    ""
                }
            ),
            Verdict::LinkMismatch { field } => format!("INVALID: {field} does not match the previous digest"),
            Verdict::MissingInferred { from, to, count } => {
                format!("INVALID: {count} digest file(s) missing between {from} and {to}")
            }
            Verdict::HashMismatch => "INVALID: hash value doesn't match".into(),
            Verdict::Unverified => "INVALID: not verified (listed only by an invalid digest)".into(),
            Verdict::Unreferenced => "INVALID: not listed by any digest (added, or its digest was removed)".into(),
            Verdict::Pending { due_by } => format!("pending: written after the newest digest, due by {due_by}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Digest,
    BackfillDigest,
    LogFile,
    /// An object of trailship's own archive.
    Object,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Digest => "Digest file",
            Kind::BackfillDigest => "(backfill) Digest file",
            Kind::LogFile => "Log file",
            Kind::Object => "Object",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub region: String,
    pub location: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Further failures of the same object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Verdict>,
}

/// Logging or validation was off between these times: no digest covers
/// them. Not an error (CloudTrail starts a new chain), but reported.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub region: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Count {
    pub valid: usize,
    pub invalid: usize,
}

impl Count {
    /// `3/4 log files valid, 1/4 log files INVALID`, as the AWS CLI words it.
    fn write_line(self, w: &mut impl std::io::Write, what: &str) -> std::io::Result<()> {
        let total = self.valid + self.invalid;
        write!(w, "{}/{total} {what} valid", self.valid)?;
        if self.invalid > 0 {
            write!(w, ", {}/{total} {what} INVALID", self.invalid)?;
        }
        writeln!(w)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// What was validated: a CloudTrail trail, or trailship's archive at this location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    pub requested_start: String,
    pub requested_end: String,
    pub found_start: Option<String>,
    pub found_end: Option<String>,
    pub regions: Vec<String>,
    pub digests: Count,
    pub backfill_digests: Count,
    pub log_files: Count,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Count>,
    pub gaps: Vec<Gap>,
    pub findings: Vec<Finding>,
    /// Log files taken as valid from `--resume` instead of fetched again.
    #[serde(skip_serializing_if = "is_zero")]
    pub resumed: usize,
    #[serde(skip)]
    index: HashMap<(Kind, String), usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// Whether nothing is invalid or missing (exit status 0).
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.verdict.is_valid()) && self.digests.valid + self.backfill_digests.valid > 0
    }

    pub(super) fn record(&mut self, kind: Kind, region: &str, location: String, verdict: Verdict) {
        if let Some(&i) = self.index.get(&(kind, location.clone())) {
            let f = &mut self.findings[i];
            if f.verdict.is_valid() {
                f.verdict = verdict;
            } else if !verdict.is_valid() && f.verdict != verdict {
                f.also.push(verdict);
            }
            return;
        }
        self.index.insert((kind, location.clone()), self.findings.len());
        self.findings.push(Finding { kind, region: region.into(), location, verdict, also: Vec::new() });
    }

    pub(super) fn finish(&mut self) {
        for f in &self.findings {
            let c = match f.kind {
                Kind::Digest => &mut self.digests,
                Kind::BackfillDigest => &mut self.backfill_digests,
                Kind::LogFile => &mut self.log_files,
                Kind::Object => self.objects.get_or_insert_default(),
            };
            if f.verdict.is_valid() { c.valid += 1 } else { c.invalid += 1 }
        }
    }

    /// Text in the shape of `validate-logs`: one line per bad object (every
    /// object with `verbose`), then the summary.
    pub fn write_text(&self, w: &mut impl std::io::Write, verbose: bool) -> std::io::Result<()> {
        for f in &self.findings {
            if verbose || !f.verdict.is_valid() {
                writeln!(w, "{}\t{}\t{}", f.kind.label(), f.location, f.verdict.text())?;
                for v in &f.also {
                    writeln!(w, "{}\t{}\t{}", f.kind.label(), f.location, v.text())?;
                }
            }
        }
        if let Some(archive) = &self.archive {
            return self.write_archive_summary(w, archive);
        }
        for g in &self.gaps {
            writeln!(w, "No log files were delivered by CloudTrail between {} and {} ({})", g.from, g.to, g.region)?;
        }
        writeln!(w, "\nResults requested for {} to {}", self.requested_start, self.requested_end)?;
        if self.resumed > 0 {
            writeln!(w, "{} log files taken as valid from the resume file", self.resumed)?;
        }
        if self.digests.valid + self.digests.invalid + self.backfill_digests.valid + self.backfill_digests.invalid == 0
        {
            return writeln!(w, "No digests found");
        }
        match (&self.found_start, &self.found_end) {
            (Some(s), Some(e)) => writeln!(w, "Results found for {s} to {e}:\n")?,
            _ => writeln!(w, "No valid digests found in range\n")?,
        }
        for (c, what) in [
            (self.digests, "digest files"),
            (self.backfill_digests, "backfill digest files"),
            (self.log_files, "log files"),
        ] {
            if c.valid + c.invalid > 0 {
                c.write_line(w, what)?;
            }
        }
        Ok(())
    }
}

impl Report {
    fn write_archive_summary(&self, w: &mut impl std::io::Write, archive: &str) -> std::io::Result<()> {
        for g in &self.gaps {
            writeln!(
                w,
                "Chain of writer {} restarted: no link from the digest starting {} to the one ending {}",
                g.region, g.to, g.from
            )?;
        }
        writeln!(w, "\nResults for the trailship archive {archive} (writers: {})", self.regions.join(", "))?;
        if self.digests.valid + self.digests.invalid == 0 {
            return writeln!(w, "No digests found");
        }
        if let (Some(s), Some(e)) = (&self.found_start, &self.found_end) {
            writeln!(w, "Digests cover {s} to {e}:\n")?;
        }
        let objects = self.objects.unwrap_or_default();
        self.digests.write_line(w, "digest files")?;
        objects.write_line(w, "objects")?;
        let pending = self.findings.iter().filter(|f| matches!(f.verdict, Verdict::Pending { .. })).count();
        if pending > 0 {
            writeln!(w, "{pending} objects written after the newest digest (not yet due)")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error("no public keys loaded: digests cannot be verified")]
    NoKeys,
    #[error("invalid time range: start {0} is after end {1}")]
    TimeRange(String, String),
}

/// What the newer digest says about the one it links to.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub newer: String,
    pub newer_start: String,
    pub hash: Option<String>,
    pub signature: Option<String>,
    pub algorithm: Option<String>,
}

pub(super) struct LogJob {
    pub region: String,
    pub entry: LogFileEntry,
}

/// Parses `--start-time` / `--end-time`: RFC 3339 (an offset is converted,
/// not dropped), or a bare date or `YYYY-MM-DDTHH:MM[:SS]` read as UTC.
pub fn parse_time(s: &str) -> Option<i64> {
    parse_time_at(s, crate::sink::now_ms())
}

/// [`parse_time`] with `now_ms` for now: RFC 3339, a bare date or time
/// (UTC), or a whole number of minutes, hours or days before now (`90m`,
/// `26h`, `7d`), for a scheduled job whose range moves with it.
pub fn parse_time_at(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    let ago = |unit_ms: i64| s[..s.len() - 1].parse::<u32>().ok().map(|n| now_ms - i64::from(n) * unit_ms);
    let relative = match s.as_bytes().last() {
        Some(b'm') => ago(60_000),
        Some(b'h') => ago(3_600_000),
        Some(b'd') => ago(86_400_000),
        _ => None,
    };
    relative.or_else(|| parse_rfc3339_ms(s)).or_else(|| match s.len() {
        10 => parse_rfc3339_ms(&format!("{s}T00:00:00Z")),
        16 => parse_rfc3339_ms(&format!("{s}:00Z")),
        19 => parse_rfc3339_ms(&format!("{s}Z")),
        _ => None,
    })
}

pub fn validate(store: &dyn Store, keys: &KeySet, opts: &Options) -> Result<Report, ValidateError> {
    if opts.start_ms > opts.end_ms {
        return Err(ValidateError::TimeRange(format_rfc3339_s(opts.start_ms), format_rfc3339_s(opts.end_ms)));
    }
    if keys.is_empty() {
        return Err(ValidateError::NoKeys);
    }
    let mut report = Report {
        requested_start: format_rfc3339_s(opts.start_ms),
        requested_end: format_rfc3339_s(opts.end_ms),
        ..Default::default()
    };
    let regions = regions(store, opts)?;
    let mut jobs = Vec::new();
    let mut found = (i64::MAX, i64::MIN);
    for region in &regions {
        let mut w = Walker { store, keys, opts, region, report: &mut report, jobs: &mut jobs, found: &mut found };
        w.walk_region()?;
    }
    report.regions = regions;
    let run = LogRun {
        concurrency: opts.concurrency,
        hashing: Hashing::Gunzipped,
        kind: Kind::LogFile,
        resume: opts.resume.as_deref(),
        progress: opts.progress,
    };
    check_logs(store, &run, jobs, &mut report);
    if found.0 <= found.1 {
        report.found_start = Some(format_rfc3339_s(found.0.max(opts.start_ms)));
        report.found_end = Some(format_rfc3339_s(found.1.min(opts.end_ms)));
    }
    report.finish();
    Ok(report)
}

/// The source regions to validate: those asked for, else every region
/// with digests under the trail's prefix.
pub fn regions(store: &dyn Store, opts: &Options) -> Result<Vec<String>, ValidateError> {
    if !opts.regions.is_empty() {
        return Ok(opts.regions.clone());
    }
    let root = chain_root(opts);
    let mut r: Vec<String> = store
        .list(&opts.bucket, &root)?
        .iter()
        .filter_map(|k| k[root.len()..].split_once('/').map(|(r, _)| r.to_owned()))
        .collect();
    r.dedup();
    Ok(r)
}

fn chain_root(opts: &Options) -> String {
    let mut root = String::new();
    if let Some(p) = opts.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        root.push_str(p);
        root.push('/');
    }
    root.push_str("AWSLogs/");
    if let Some(o) = &opts.org_id {
        root.push_str(o);
        root.push('/');
    }
    root.push_str(&opts.trail.account);
    root.push_str("/CloudTrail-Digest/");
    root
}

struct Walker<'a> {
    store: &'a dyn Store,
    keys: &'a KeySet,
    opts: &'a Options,
    region: &'a str,
    report: &'a mut Report,
    jobs: &'a mut Vec<LogJob>,
    found: &'a mut (i64, i64),
}

/// One chain's listed digests, oldest first.
struct Listing {
    standard: Vec<(DigestKey, String)>,
    backfill: Vec<(DigestKey, String)>,
}

impl Listing {
    /// The newest listed standard digest older than `ms`.
    fn older_than(&self, ms: i64) -> Option<&(DigestKey, String)> {
        self.standard.iter().rev().find(|(k, _)| k.time_ms() < ms)
    }
}

pub(super) enum Outcome {
    Valid(Digest),
    /// Not valid; the digest when it could be parsed (its log files are then unverified).
    Invalid(Verdict, Option<Digest>),
}

impl Walker<'_> {
    fn list(&self, bucket: &str) -> Result<Listing, ValidateError> {
        let prefix = format!("{}{}/", chain_root(self.opts), self.region);
        let t = &self.opts.trail;
        let mut l = Listing { standard: Vec::new(), backfill: Vec::new() };
        for key in self.store.list(bucket, &prefix)? {
            let Some(k) = DigestKey::parse(&key) else { continue };
            if k.account != t.account
                || k.source_region != self.region
                || k.trail != t.name
                || k.home_region != t.home_region
            {
                continue;
            }
            if k.backfill { l.backfill.push((k, key)) } else { l.standard.push((k, key)) }
        }
        l.standard.sort_by(|a, b| a.0.stamp.cmp(&b.0.stamp));
        l.backfill.sort_by(|a, b| a.0.stamp.cmp(&b.0.stamp));
        Ok(l)
    }

    fn walk_region(&mut self) -> Result<(), ValidateError> {
        let (start, end) = (self.opts.start_ms, self.opts.end_ms);
        let mut bucket = self.opts.bucket.clone();
        let mut listing = self.list(&bucket)?;
        // Digests for the last hour of the range arrive up to an hour later.
        let horizon = end + HOUR_MS;
        let newest_in_range =
            listing.standard.iter().rev().find(|(k, _)| k.time_ms() <= horizon && k.time_ms() >= start);
        // Start from the first digest after the range when there is one, so
        // that digests deleted at the newest end break a link and are seen.
        let anchor = listing.standard.iter().find(|(k, _)| k.time_ms() > horizon);
        let first = anchor.or(newest_in_range).map(|(_, key)| key.clone());

        // No later digest to anchor the tail: fall back on the hourly cadence.
        // (No digest at all in the range is reported as "No digests found".)
        if let (None, Some((k, _))) = (anchor, newest_in_range) {
            let due = end.min(self.opts.now_ms - 2 * HOUR_MS);
            if due - k.time_ms() > 2 * HOUR_MS {
                let count = (due - k.time_ms()) / HOUR_MS;
                let loc = format!("{}{}/ after {}", chain_root(self.opts), self.region, k.stamp);
                self.report.record(
                    Kind::Digest,
                    self.region,
                    self.store.display(&bucket, &loc),
                    Verdict::MissingInferred { from: format_rfc3339_s(k.time_ms()), to: format_rfc3339_s(due), count },
                );
            }
        }

        let mut cursor: Option<(String, Option<Link>)> = first.map(|k| (k, None));
        let mut visited = HashSet::new();
        while let Some((key, via)) = cursor.take() {
            let location = self.store.display(&bucket, &key);
            if !visited.insert((bucket.clone(), key.clone())) {
                let v = Verdict::InvalidFormat { reason: "digest chain loops back on itself".into() };
                self.report.record(Kind::Digest, self.region, location, v);
                break;
            }
            let parsed_key = DigestKey::parse(&key);
            let key_ms = parsed_key.as_ref().map(|k| k.time_ms());
            let in_range = key_ms.is_none_or(|t| t <= horizon && t >= start);
            if key_ms.is_some_and(|t| t < start) && via.is_none() {
                break;
            }
            match self.check_digest(&bucket, &key, parsed_key.as_ref(), via.as_ref()) {
                Outcome::Valid(d) => {
                    let d_start = parse_rfc3339_ms(&d.doc.digest_start_time).unwrap_or(i64::MIN);
                    let d_end = parse_rfc3339_ms(&d.doc.digest_end_time).unwrap_or(i64::MAX);
                    if in_range {
                        self.report.record(Kind::Digest, self.region, location, Verdict::Valid);
                        self.found.0 = self.found.0.min(d_start);
                        self.found.1 = self.found.1.max(d_end);
                        self.queue_logs(&d);
                    }
                    if d_start < start {
                        break;
                    }
                    if d.starts_chain() {
                        if let Some((k, next)) = listing.older_than(key_ms.unwrap_or(d_end)) {
                            self.report.gaps.push(Gap {
                                region: self.region.into(),
                                from: format_rfc3339_s(k.time_ms()),
                                to: d.doc.digest_start_time.clone(),
                            });
                            cursor = Some((next.clone(), None));
                        }
                        continue;
                    }
                    let prev_bucket = d.doc.previous_digest_s3_bucket.clone().unwrap_or_default();
                    if prev_bucket != bucket {
                        // The trail moved buckets; the chain goes on there.
                        bucket = prev_bucket;
                        listing = self.list(&bucket)?;
                    }
                    let link = Link {
                        newer: location_of(self.store, &d),
                        newer_start: d.doc.digest_start_time.clone(),
                        hash: d.doc.previous_digest_hash_value.clone(),
                        signature: d.previous_signature().map(str::to_owned),
                        algorithm: d.doc.previous_digest_hash_algorithm.clone(),
                    };
                    cursor = d.doc.previous_digest_s3_object.clone().map(|k| (k, Some(link)));
                }
                Outcome::Invalid(verdict, digest) => {
                    let missing = verdict == Verdict::NotFound;
                    // Outside the range only what a link leads to counts: a deletion next to it.
                    if in_range || via.is_some() {
                        self.report.record(Kind::Digest, self.region, location, verdict);
                    }
                    if let Some(d) = &digest {
                        if in_range {
                            for e in &d.doc.log_files {
                                let loc = self.store.display(&e.s3_bucket, &e.s3_object);
                                self.report.record(Kind::LogFile, self.region, loc, Verdict::Unverified);
                            }
                        }
                        if parse_rfc3339_ms(&d.doc.digest_start_time).is_some_and(|s| s < start) {
                            break;
                        }
                    }
                    let Some(at) = key_ms else { break };
                    let next = listing.older_than(at).cloned();
                    if missing {
                        // A missing digest's successor says where it ended; the
                        // next digest that exists says where the hole starts.
                        let hole_end = via
                            .as_ref()
                            .and_then(|l| parse_rfc3339_ms(&l.newer_start))
                            .map(|t| t.min(at))
                            .unwrap_or(at);
                        let hole_start = next.as_ref().map(|(k, _)| k.time_ms()).unwrap_or(start).max(start - HOUR_MS);
                        let count = (hole_end - hole_start - HOUR_MS / 2) / HOUR_MS;
                        if count >= 1 && hole_end > start {
                            let v = Verdict::MissingInferred {
                                from: format_rfc3339_s(hole_start),
                                to: format_rfc3339_s(hole_end - HOUR_MS),
                                count,
                            };
                            let loc = format!("{} (before)", self.store.display(&bucket, &key));
                            self.report.record(Kind::Digest, self.region, loc, v);
                        }
                    }
                    // An older digest that ends before the range may still
                    // cover its start: it is checked, and the walk ends there.
                    cursor = next.map(|(_, k)| (k, None));
                }
            }
        }

        // Backfill digests stand alone: each is verified and its log files checked.
        for (k, key) in listing.backfill.clone() {
            if k.time_ms() < start || k.time_ms() > horizon {
                continue;
            }
            let location = self.store.display(&bucket, &key);
            match self.check_digest(&bucket, &key, Some(&k), None) {
                Outcome::Valid(d) => {
                    self.report.record(Kind::BackfillDigest, self.region, location, Verdict::Valid);
                    self.queue_logs(&d);
                }
                Outcome::Invalid(v, d) => {
                    self.report.record(Kind::BackfillDigest, self.region, location, v);
                    for e in d.iter().flat_map(|d| &d.doc.log_files) {
                        let loc = self.store.display(&e.s3_bucket, &e.s3_object);
                        self.report.record(Kind::LogFile, self.region, loc, Verdict::Unverified);
                    }
                }
            }
        }
        Ok(())
    }

    fn queue_logs(&mut self, d: &Digest) {
        for e in &d.doc.log_files {
            self.jobs.push(LogJob { region: self.region.into(), entry: e.clone() });
        }
    }

    fn check_digest(&mut self, bucket: &str, key: &str, parsed: Option<&DigestKey>, via: Option<&Link>) -> Outcome {
        let end_stamp = parsed.filter(|k| !k.backfill).map(|k| k.stamp.as_str());
        let rules = Rules {
            region: self.region,
            algorithms: &[RSA_SHA256],
            expect_bucket: Some(bucket),
            expect_object: key,
            expect_end_stamp: end_stamp,
            backfill: parsed.is_some_and(|k| k.backfill),
        };
        check_digest(self.store, self.keys, bucket, key, &rules, via, self.report)
    }
}

/// One CloudTrail digest checked on its own, as validate-digests checks each
/// digest of a chain (format, location against its key, algorithm,
/// signature), without walking to its predecessor: the in-stream check of
/// `trailship run`, which sees digests one at a time as they are announced.
pub fn check_announced_digest(store: &dyn Store, keys: &KeySet, bucket: &str, key: &str) -> (Verdict, Option<Digest>) {
    let parsed = DigestKey::parse(key);
    let region = parsed.as_ref().map_or("unknown", |k| k.source_region.as_str());
    let rules = Rules {
        region,
        algorithms: &[RSA_SHA256],
        expect_bucket: Some(bucket),
        expect_object: key,
        expect_end_stamp: parsed.as_ref().filter(|k| !k.backfill).map(|k| k.stamp.as_str()),
        backfill: parsed.as_ref().is_some_and(|k| k.backfill),
    };
    let mut scratch = Report::default();
    match check_digest(store, keys, bucket, key, &rules, None, &mut scratch) {
        Outcome::Valid(d) => (Verdict::Valid, Some(d)),
        Outcome::Invalid(v, d) => (v, d),
    }
}

/// What a digest must satisfy beyond its signature and links.
pub(super) struct Rules<'a> {
    /// The chain's name in messages (a region, or a trailship writer).
    pub region: &'a str,
    pub algorithms: &'a [&'a str],
    /// Where the digest must say it is stored (`None`: the bucket is not checked).
    pub expect_bucket: Option<&'a str>,
    pub expect_object: &'a str,
    /// The end time its key carries, when the key has one.
    pub expect_end_stamp: Option<&'a str>,
    pub backfill: bool,
}

/// Fetches one digest and checks format, location, algorithm, signature,
/// and (given the newer digest's `via` link) that the link names it exactly.
/// Link failures are recorded against the newer digest.
pub(super) fn check_digest(
    store: &dyn Store,
    keys: &KeySet,
    bucket: &str,
    key: &str,
    rules: &Rules<'_>,
    via: Option<&Link>,
    report: &mut Report,
) -> Outcome {
    let obj = match store.get(bucket, key) {
        Ok(o) => o,
        Err(GetError::NotFound) => return Outcome::Invalid(Verdict::NotFound, None),
        Err(GetError::Unreadable(reason) | GetError::Unavailable(reason)) => {
            return Outcome::Invalid(Verdict::Unreadable { reason }, None);
        }
    };
    let d = match Digest::from_gzip(&obj.bytes) {
        Ok(d) => d,
        Err(e) => {
            let reason = match e {
                FormatError::Json(_) => "not a digest (JSON)".to_owned(),
                e => e.to_string(),
            };
            return Outcome::Invalid(Verdict::InvalidFormat { reason }, None);
        }
    };
    let invalid = |v| Outcome::Invalid(v, Some(d.clone()));
    if rules.backfill && obj.metadata_supported && !obj.metadata.contains_key("backfill-generation-timestamp") {
        return invalid(Verdict::InvalidFormat {
            reason: "backfill digest without backfill-generation-timestamp".into(),
        });
    }
    if rules.expect_bucket.is_some_and(|b| d.doc.digest_s3_bucket != b) || d.doc.digest_s3_object != rules.expect_object
    {
        return invalid(Verdict::Moved);
    }
    if let Some(stamp) = rules.expect_end_stamp {
        let end_stamp = parse_rfc3339_ms(&d.doc.digest_end_time).map(ms_to_stamp);
        if end_stamp.as_deref() != Some(stamp) {
            return invalid(Verdict::InvalidFormat { reason: "digestEndTime differs from the time in the key".into() });
        }
    }
    let declared = d.doc.digest_signature_algorithm.as_deref().unwrap_or(RSA_SHA256);
    for alg in [Some(declared), obj.metadata.get("signature-algorithm").map(String::as_str)].into_iter().flatten() {
        if !rules.algorithms.contains(&alg) || alg != declared {
            return invalid(Verdict::UnsupportedAlgorithm { algorithm: alg.into() });
        }
    }
    let fp = &d.doc.digest_public_key_fingerprint;
    let data = d.data_to_sign();
    let link_ok = via
        .and_then(|l| l.signature.as_deref())
        .map(|s| keys.verify_as(declared, fp, data.as_bytes(), s).is_ok())
        .unwrap_or(false);
    let meta_sig = obj.metadata.get("signature");
    let sig_result = match meta_sig {
        Some(s) => keys.verify_as(declared, fp, data.as_bytes(), s),
        None if !obj.metadata_supported && link_ok => Ok(()),
        None => return invalid(Verdict::SignatureMissing { content_authentic: link_ok }),
    };
    match sig_result {
        Ok(()) => {}
        Err(SigError::KeyNotFound) => {
            return invalid(Verdict::KeyNotFound { fingerprint: fp.clone(), region: rules.region.into() });
        }
        Err(SigError::KeyUnloadable) => return invalid(Verdict::KeyUnloadable { fingerprint: fp.clone() }),
        Err(SigError::BadSignatureEncoding | SigError::Mismatch) => {
            return invalid(Verdict::SignatureMismatch { content_authentic: link_ok });
        }
    }
    // Links are judged only against a digest that verifies: an invalid one
    // is reported itself, and its successor is not blamed for it.
    if let Some(l) = via {
        let mut link_fail = |field: &str| {
            report.record(Kind::Digest, rules.region, l.newer.clone(), Verdict::LinkMismatch { field: field.into() });
        };
        if l.hash.as_deref().map(str::to_ascii_lowercase) != Some(hex::encode(d.sha256)) {
            link_fail("previousDigestHashValue");
        }
        if l.algorithm.as_deref().is_some_and(|a| a != "SHA-256") {
            link_fail("previousDigestHashAlgorithm");
        }
        let same_sig = match (meta_sig, l.signature.as_deref()) {
            (Some(m), Some(s)) => decode_signature(m).ok().is_some_and(|m| decode_signature(s).ok() == Some(m)),
            (None, Some(_)) => link_ok,
            _ => false,
        };
        if !same_sig {
            link_fail("previousDigestSignature");
        }
    }
    Outcome::Valid(d)
}

fn location_of(store: &dyn Store, d: &Digest) -> String {
    store.display(&d.doc.digest_s3_bucket, &d.doc.digest_s3_object)
}

/// How a listed object's hash is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hashing {
    /// Of the first gzip member's content (CloudTrail log files).
    Gunzipped,
    /// Of the bytes as stored (trailship's objects).
    Stored,
}

fn check_log(store: &dyn Store, e: &LogFileEntry, hashing: Hashing) -> Verdict {
    if let Some(a) = e.hash_algorithm.as_deref().filter(|a| *a != "SHA-256") {
        return Verdict::UnsupportedAlgorithm { algorithm: a.into() };
    }
    let body = match store.open(&e.s3_bucket, &e.s3_object) {
        Ok(o) => o,
        Err(GetError::NotFound) => return Verdict::NotFound,
        Err(GetError::Unreadable(reason) | GetError::Unavailable(reason)) => return Verdict::Unreadable { reason },
    };
    let body = std::io::BufReader::with_capacity(256 << 10, body);
    let hash = match hashing {
        Hashing::Gunzipped => sha256_of_gzip(body).map_err(|g| g.to_string()),
        Hashing::Stored => sha256_of_reader(body).map_err(|e| format!("read failed: {e}")),
    };
    match hash {
        Ok(h) if hex::encode(h) == e.hash_value.to_ascii_lowercase() => Verdict::Valid,
        Ok(_) => Verdict::HashMismatch,
        Err(reason) => Verdict::InvalidFormat { reason },
    }
}

/// How `check_logs` runs.
pub(super) struct LogRun<'a> {
    pub concurrency: usize,
    pub hashing: Hashing,
    pub kind: Kind,
    pub resume: Option<&'a Resume>,
    pub progress: bool,
}

/// Fetches and hashes log files `concurrency` at a time; results are
/// recorded in listing order, so output does not depend on timing.
pub(super) fn check_logs(store: &dyn Store, run: &LogRun<'_>, jobs: Vec<LogJob>, report: &mut Report) {
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<usize, Verdict>> = Mutex::new(BTreeMap::new());
    let bar = if run.progress {
        indicatif::ProgressBar::new(jobs.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_prefix(match run.kind {
        Kind::Object => "objects",
        _ => "log files",
    });
    let resumed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..run.concurrency.max(1).min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let v = if run.resume.is_some_and(|r| r.is_done(&job.entry)) {
                        resumed.fetch_add(1, Ordering::Relaxed);
                        Verdict::Valid
                    } else {
                        let v = check_log(store, &job.entry, run.hashing);
                        if let (Some(r), Verdict::Valid) = (run.resume, &v) {
                            r.record(&job.entry);
                        }
                        v
                    };
                    bar.inc(1);
                    results.lock().unwrap_or_else(|p| p.into_inner()).insert(i, v);
                }
            });
        }
    });
    bar.finish_and_clear();
    report.resumed += resumed.into_inner();
    for (i, v) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let job = &jobs[i];
        let loc = store.display(&job.entry.s3_bucket, &job.entry.s3_object);
        report.record(run.kind, &job.region, loc, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_or_a_while_before_now() {
        let now = parse_rfc3339_ms("2026-12-06T10:00:00Z").unwrap();
        let at = |s| parse_time_at(s, now).map(format_rfc3339_s);
        assert_eq!(at("26h").as_deref(), Some("2026-12-05T08:00:00Z"));
        assert_eq!(at("7d").as_deref(), Some("2026-11-29T10:00:00Z"));
        assert_eq!(at(" 90m ").as_deref(), Some("2026-12-06T08:30:00Z"));
        assert_eq!(at("2026-01-01").as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(at("2026-01-01T02:00:00+02:00").as_deref(), Some("2026-01-01T00:00:00Z"));
        for bad in ["h", "-3h", "1.5h", "3w", "yesterday", "26 h"] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}
