//! `trailship validate-digests` on generated CloudTrail chains (local copy
//! of the bucket), one test per scenario of the integrity spec, plus the real
//! digests and key files in `fixtures/cloudtrail-digests/`.

mod common;

use std::path::Path;

use common::digests::{self, ACCOUNT, ARN, BUCKET, HOUR, Hour, T0, build, gunzip, gzip, iso, verdict};
use common::{TempDir, fixture};
use trailship::integrity::digest::Digest;
use trailship::integrity::keys::KeySet;
use trailship::integrity::store::LocalStore;
use trailship::integrity::validate::{Kind, Report, Verdict, validate};

fn run_keys(root: &Path, published: &[usize], start: i64, end: i64) -> Report {
    let keys = KeySet::from_list_public_keys_json(&digests::public_keys_json(published)).unwrap();
    validate(&LocalStore::new(root), &keys, &digests::options(start, end, 4)).unwrap()
}

/// The whole chain of `hours` hours, as `aws cloudtrail validate-logs` would be asked.
fn run(root: &Path, hours: usize) -> Report {
    run_keys(root, &[0, 1], T0, T0 + hours as i64 * HOUR - 1)
}

fn failures(r: &Report) -> Vec<(Kind, Verdict)> {
    r.findings.iter().filter(|f| !f.verdict.is_valid()).map(|f| (f.kind, f.verdict.clone())).collect()
}

fn six_hours() -> Vec<Hour> {
    vec![Hour::logs(3), Hour::logs(0), Hour::logs(2), Hour::logs(4), Hour::logs(0), Hour::logs(1)]
}

#[test]
fn untouched_chain_with_empty_hours_is_valid() {
    let dir = TempDir::new("dg-valid");
    build(dir.path(), &six_hours());
    let r = run(dir.path(), 6);
    assert!(failures(&r).is_empty(), "{:#?}", failures(&r));
    assert_eq!((r.digests.valid, r.digests.invalid), (6, 0));
    assert_eq!((r.log_files.valid, r.log_files.invalid), (10, 0));
    assert!(r.is_clean());
    assert_eq!(r.found_start.as_deref(), Some(iso(T0).as_str()));
    let mut text = Vec::new();
    r.write_text(&mut text, false).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("6/6 digest files valid\n10/10 log files valid"), "{text}");
}

#[test]
fn changed_recompressed_deleted_and_extended_log_files() {
    let dir = TempDir::new("dg-logs");
    let c = build(dir.path(), &six_hours());
    // One byte of one log file's JSON changed.
    let changed = &c.logs[0][0];
    let mut body = gunzip(&std::fs::read(c.path(changed)).unwrap());
    let at = body.iter().position(|b| *b == b'P').unwrap();
    body[at] = b'Q';
    std::fs::write(c.path(changed), gzip(&body, 6)).unwrap();
    // Same content, other compression level: still valid.
    let recompressed = &c.logs[0][1];
    let same = gunzip(&std::fs::read(c.path(recompressed)).unwrap());
    std::fs::write(c.path(recompressed), gzip(&same, 9)).unwrap();
    // Deleted.
    let deleted = &c.logs[2][0];
    std::fs::remove_file(c.path(deleted)).unwrap();
    // A forged second gzip member appended: the hash of the first member
    // still matches, so only the trailing-data rule catches it.
    let extended = &c.logs[3][0];
    let mut bytes = std::fs::read(c.path(extended)).unwrap();
    bytes.extend(gzip(br#"{"Records":[{"eventName":"Forged"}]}"#, 6));
    std::fs::write(c.path(extended), bytes).unwrap();
    // Not gzip at all, and cut short.
    let plain = &c.logs[3][1];
    std::fs::write(c.path(plain), gunzip(&std::fs::read(c.path(plain)).unwrap())).unwrap();
    let cut = &c.logs[3][2];
    let bytes = std::fs::read(c.path(cut)).unwrap();
    std::fs::write(c.path(cut), &bytes[..bytes.len() - 4]).unwrap();

    let r = run(dir.path(), 6);
    assert_eq!(verdict(&r, Kind::LogFile, changed), Verdict::HashMismatch);
    assert_eq!(verdict(&r, Kind::LogFile, recompressed), Verdict::Valid);
    assert_eq!(verdict(&r, Kind::LogFile, deleted), Verdict::NotFound);
    let reason = |s: &str| Verdict::InvalidFormat { reason: s.into() };
    assert_eq!(verdict(&r, Kind::LogFile, extended), reason("unexpected data after end of compressed stream"));
    assert_eq!(verdict(&r, Kind::LogFile, plain), reason("not gzip"));
    assert_eq!(verdict(&r, Kind::LogFile, cut), reason("truncated or corrupt gzip stream"));
    assert_eq!((r.digests.valid, r.log_files.valid, r.log_files.invalid), (6, 5, 5));
    assert!(!r.is_clean());
}

#[test]
fn digest_edited_after_signing_fails_and_its_logs_are_unverified() {
    let dir = TempDir::new("dg-edited");
    let c = build(dir.path(), &six_hours());
    let path = c.path(c.digest(3));
    let mut doc = c.read_digest(3);
    let removed = doc["logFiles"].as_array_mut().unwrap().remove(0);
    std::fs::write(&path, gzip(&serde_json::to_vec(&doc).unwrap(), 6)).unwrap();
    let r = run(dir.path(), 6);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(3)), Verdict::SignatureMismatch { content_authentic: false });
    // Its three remaining log files cannot be proven; the removed one is in no digest.
    assert_eq!(verdict(&r, Kind::LogFile, &c.logs[3][1]), Verdict::Unverified);
    assert!(r.findings.iter().all(|f| !f.location.ends_with(removed["s3Object"].as_str().unwrap())));
    // The walk goes on past it: the older digests are still checked.
    assert_eq!(verdict(&r, Kind::Digest, c.digest(0)), Verdict::Valid);
    assert_eq!((r.digests.valid, r.digests.invalid), (5, 1));
    // Re-compressing a digest without changing its bytes keeps it valid.
    let dir = TempDir::new("dg-regzip");
    let c = build(dir.path(), &six_hours());
    let p = c.path(c.digest(2));
    std::fs::write(&p, gzip(&gunzip(&std::fs::read(&p).unwrap()), 1)).unwrap();
    assert!(run(dir.path(), 6).is_clean());
}

#[test]
fn signature_metadata_removed_or_altered() {
    let dir = TempDir::new("dg-sigmeta");
    let c = build(dir.path(), &six_hours());
    // The newest digest has no successor to vouch for it: without its metadata it is unsigned.
    std::fs::remove_file(c.meta_path(c.digest(5))).unwrap();
    // A middle digest whose metadata signature was altered: its successor's
    // link signature still proves the content.
    let meta = c.meta_path(c.digest(2));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let sig = m["signature"].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    m["signature"] = flipped.into();
    std::fs::write(&meta, m.to_string()).unwrap();
    let r = run(dir.path(), 6);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(5)), Verdict::SignatureMissing { content_authentic: false });
    assert_eq!(verdict(&r, Kind::Digest, c.digest(2)), Verdict::SignatureMismatch { content_authentic: true });
    assert!(!r.is_clean());
    // A copy without any metadata (offline): every digest but the newest is
    // verified with the signature its successor carries.
    let dir = TempDir::new("dg-offline");
    let c = build(dir.path(), &six_hours());
    for h in 0..5 {
        std::fs::remove_file(c.meta_path(c.digest(h))).unwrap();
    }
    let r = run(dir.path(), 6);
    assert!(r.is_clean(), "{:#?}", failures(&r));
}

#[test]
fn missing_digests_one_and_two_in_a_row() {
    let dir = TempDir::new("dg-missing");
    let c = build(dir.path(), &[Hour::logs(1); 8]);
    std::fs::remove_file(c.path(c.digest(5))).unwrap();
    // Two in a row: the AWS CLI reports only the first (aws-cli #7054).
    std::fs::remove_file(c.path(c.digest(2))).unwrap();
    std::fs::remove_file(c.path(c.digest(1))).unwrap();
    let r = run(dir.path(), 8);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(5)), Verdict::NotFound);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(2)), Verdict::NotFound);
    let inferred: Vec<_> =
        failures(&r).into_iter().filter(|(_, v)| matches!(v, Verdict::MissingInferred { .. })).collect();
    assert_eq!(inferred.len(), 1, "{inferred:?}");
    assert!(matches!(&inferred[0].1, Verdict::MissingInferred { count: 1, .. }));
    // The walk continued to the oldest digest.
    assert_eq!(verdict(&r, Kind::Digest, c.digest(0)), Verdict::Valid);
    // The logs of the missing hours are in no surviving digest: not validated.
    assert!(r.findings.iter().all(|f| !f.location.ends_with(&c.logs[5][0])));
}

#[test]
fn newest_digests_deleted_are_seen_from_a_later_digest_or_the_cadence() {
    let dir = TempDir::new("dg-tail");
    let c = build(dir.path(), &[Hour::logs(1); 8]);
    std::fs::remove_file(c.path(c.digest(5))).unwrap();
    std::fs::remove_file(c.path(c.digest(4))).unwrap();
    // The range ends after hour 6 (digest 5's key); digest 7 exists beyond it and anchors the walk.
    let r = run_keys(dir.path(), &[0], T0, T0 + 5 * HOUR);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(5)), Verdict::NotFound, "{:#?}", r.findings);
    assert!(failures(&r).iter().any(|(_, v)| matches!(v, Verdict::MissingInferred { count: 1, .. })));
    // Without a later digest, the hourly cadence shows the hole.
    let dir = TempDir::new("dg-tail-cadence");
    let c = build(dir.path(), &[Hour::logs(1); 6]);
    std::fs::remove_file(c.path(c.digest(5))).unwrap();
    std::fs::remove_file(c.path(c.digest(4))).unwrap();
    std::fs::remove_file(c.path(c.digest(3))).unwrap();
    let r = run(dir.path(), 6);
    assert!(failures(&r).iter().any(|(_, v)| matches!(v, Verdict::MissingInferred { .. })), "{:#?}", r.findings);
    assert!(!r.is_clean());
    // Every digest gone: "No digests found" is a failure, not a pass.
    let dir = TempDir::new("dg-none");
    std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
    let r = run(dir.path(), 6);
    assert!(!r.is_clean());
    let mut text = Vec::new();
    r.write_text(&mut text, false).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("No digests found"));
}

#[test]
fn keys_unpublished_rotated_and_chain_restarts() {
    let dir = TempDir::new("dg-rotate");
    let mut hours = six_hours();
    for h in &mut hours[3..] {
        h.key = 1;
    }
    let c = build(dir.path(), &hours);
    assert!(run_keys(dir.path(), &[0, 1], T0, T0 + 6 * HOUR - 1).is_clean(), "two keys, both published");
    let r = run_keys(dir.path(), &[0], T0, T0 + 6 * HOUR - 1);
    let fp = digests::keys()[1].fingerprint.clone();
    assert_eq!(
        verdict(&r, Kind::Digest, c.digest(4)),
        Verdict::KeyNotFound { fingerprint: fp, region: "us-east-1".into() }
    );
    assert_eq!(verdict(&r, Kind::Digest, c.digest(1)), Verdict::Valid);

    // Logging off for two hours, then on: a new chain, a reported gap, exit 0.
    let dir = TempDir::new("dg-restart");
    let mut hours = vec![Hour::logs(1); 7];
    hours[3].off = true;
    hours[4].off = true;
    hours[5].restart = true;
    build(dir.path(), &hours);
    let r = run(dir.path(), 7);
    assert!(r.is_clean(), "{:#?}", failures(&r));
    assert_eq!(r.digests.valid, 5);
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(
        (r.gaps[0].from.as_str(), r.gaps[0].to.as_str()),
        (iso(T0 + 3 * HOUR).as_str(), iso(T0 + 5 * HOUR).as_str())
    );
}

#[test]
fn links_that_do_not_match_the_digest_they_name() {
    let dir = TempDir::new("dg-links");
    let c = build(dir.path(), &six_hours());
    // Validly signed, but naming a different hash, then a different signature, of its predecessor.
    c.resign(4, 0, |d| d["previousDigestHashValue"] = "00".repeat(32).into());
    c.resign(2, 0, |d| d["previousDigestSignature"] = "ab".repeat(256).into());
    let r = run(dir.path(), 6);
    assert_eq!(
        verdict(&r, Kind::Digest, c.digest(4)),
        Verdict::LinkMismatch { field: "previousDigestHashValue".into() }
    );
    assert_eq!(
        verdict(&r, Kind::Digest, c.digest(2)),
        Verdict::LinkMismatch { field: "previousDigestSignature".into() }
    );
    // Re-signing digest 4 changed its bytes: digest 5's link to it breaks too.
    assert_eq!(
        verdict(&r, Kind::Digest, c.digest(5)),
        Verdict::LinkMismatch { field: "previousDigestHashValue".into() }
    );

    // A digest copied under another key, the original deleted.
    let dir = TempDir::new("dg-moved");
    let c = build(dir.path(), &six_hours());
    let moved_key = digests::digest_key(T0 + 2 * HOUR + 30 * 60_000);
    std::fs::rename(c.path(c.digest(2)), c.path(&moved_key)).unwrap();
    std::fs::rename(c.meta_path(c.digest(2)), c.meta_path(&moved_key)).unwrap();
    let r = run(dir.path(), 6);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(2)), Verdict::NotFound);
    assert_eq!(verdict(&r, Kind::Digest, &moved_key), Verdict::Moved);
}

#[test]
fn real_digests_parse_and_build_the_signed_string() {
    use sha2::{Digest as _, Sha256};
    for (file, sha, bytes) in [
        (
            "elastic-beats_digest_us-west-2_20200911T193649Z.json",
            "f460216005941d340d3cfbc7a734e39962f2fb19439c150af2f6082d1652fe5b",
            765,
        ),
        (
            "llm-guard-issue147_digest_ap-northeast-1_20231015T230404Z.json",
            "cdb7d440831d2bfa92e10186f087e753e01bc32b331262fa37f1b0c3d406f073",
            776,
        ),
    ] {
        let raw = std::fs::read(fixture(&format!("cloudtrail-digests/{file}"))).unwrap();
        let d = Digest::from_json(&raw).unwrap();
        let s = d.data_to_sign();
        assert_eq!((s.len(), hex::encode(Sha256::digest(s.as_bytes()))), (bytes, sha.to_owned()), "{file}");
        // The key's time is the digest's end time, and `\/` was unescaped.
        let key = trailship::integrity::digest::DigestKey::parse(&d.doc.digest_s3_object).unwrap();
        assert_eq!(
            trailship::integrity::digest::ms_to_stamp(
                trailship::normalize::time::parse_rfc3339_ms(&d.doc.digest_end_time).unwrap()
            ),
            key.stamp
        );
        assert!(!d.doc.digest_s3_object.contains('\\'));
        assert!(!d.doc.log_files.is_empty());
        // From gzip too, as it is stored.
        assert_eq!(Digest::from_gzip(&gzip(&raw, 6)).unwrap().sha256, d.sha256);
    }
    // Four published keys: fingerprint = MD5 of the DER as delivered; the SPKI one loads too.
    let mut n = 0;
    for file in ["aws-cli-example_list-public-keys.json", "cloudtrail-user-guide_list-public-keys.json"] {
        let set = KeySet::from_file(&fixture(&format!("cloudtrail-digests/{file}"))).unwrap();
        for fp in [
            "7f3f401420072e50a65a141430817ab3",
            "8eba5db5bea9b640d1c96a77256fe7f2",
            "8933b39ddc64d26d8e14ffbf6566fee4",
            "31e8b5433410dfb61a9dc45cc65b22ff",
        ] {
            if let Some(k) = set.get(fp) {
                assert!(k.fingerprint_matches, "{fp}");
                // A well-formed key refuses a wrong signature (it does not fail to load).
                assert_eq!(
                    set.verify(fp, b"x", &"00".repeat(256)),
                    Err(trailship::integrity::keys::SigError::Mismatch),
                    "{fp}"
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, 4);
}

#[test]
fn cli_exit_codes_and_json() {
    let dir = TempDir::new("dg-cli");
    let c = build(dir.path(), &six_hours());
    let keys = dir.write("keys.json", digests::public_keys_json(&[0]).as_bytes());
    let cli_from = |start: &str, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
            .args(["validate-digests", "--trail-arn", ARN, "--s3-bucket", BUCKET, "--start-time", start])
            .args(["--end-time", "2026-01-01T05:59:59Z", "--public-keys"])
            .arg(&keys)
            .arg("--local")
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let cli = |extra: &[&str]| cli_from("2026-01-01T00:00:00Z", extra);
    let (code, text) = cli(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("6/6 digest files valid"), "{text}");
    std::fs::remove_file(c.path(&c.logs[0][0])).unwrap();
    let (code, json) = cli(&["--format", "json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["log_files"]["invalid"], 1);
    let bad: Vec<_> = v["findings"].as_array().unwrap().iter().filter(|f| f["verdict"] != "valid").collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["verdict"], "not_found");
    assert!(bad[0]["location"].as_str().unwrap().ends_with(&c.logs[0][0]));
    // An offset in --start-time is converted, not dropped (aws-cli reads it as UTC).
    let (code, text) = cli_from("2026-01-01T02:00:00+02:00", &["--verbose"]);
    assert_eq!(code, Some(1));
    assert!(text.contains(&format!("Results requested for {} to", iso(T0))), "{text}");
    let (code, _) = cli_from("yesterday", &[]);
    assert_eq!(code, Some(2));
    let _ = ACCOUNT;
}

/// Runs the CLI over the local copy, keys from the local CloudTrail API.
fn cli_with_api(root: &Path, api: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["validate-digests", "--trail-arn", ARN, "--s3-bucket", BUCKET])
        .args(["--start-time", "2026-01-01T00:00:00Z", "--end-time", "2026-01-01T05:59:59Z"])
        .args(["--cloudtrail-endpoint-url", api, "--local"])
        .arg(root)
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", "trailship-test")
        .env("AWS_SECRET_ACCESS_KEY", "trailship-test")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn keys_come_from_list_public_keys_across_pages_and_rotation() {
    let dir = TempDir::new("dg-api");
    let mut hours = six_hours();
    for h in &mut hours[3..] {
        h.key = 1;
    }
    build(dir.path(), &hours);
    let api = common::cloudtrail_api::start(vec![0, 1]);
    let (code, text) = cli_with_api(dir.path(), &api.url, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("6/6 digest files valid"), "{text}");
    let reqs = api.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "one call per page: {reqs:#?}");
    assert!(reqs.iter().all(|r| r.target == "CloudTrail_20131101.ListPublicKeys"));
    // Asked of the digests' source region, not the client's default one,
    // for the range (from an hour before it).
    assert!(reqs.iter().all(|r| r.region == "us-east-1"), "{reqs:#?}");
    assert_eq!(reqs[0].body["StartTime"].as_f64(), Some(((T0 - HOUR) / 1000) as f64));
    assert_eq!(reqs[1].body["NextToken"], "page-1");

    // The rotated-to key is not published: its digests fail by name.
    let api = common::cloudtrail_api::start(vec![0]);
    let (code, text) = cli_with_api(dir.path(), &api.url, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("INVALID: public key not found in region us-east-1").count(), 3, "{text}");
}

#[test]
fn a_resumed_validation_skips_proven_log_files_and_rechecks_the_rest() {
    let dir = TempDir::new("dg-resume");
    let c = build(dir.path(), &six_hours());
    let keys = dir.write("keys.json", digests::public_keys_json(&[0]).as_bytes());
    let state = dir.path().join("resume.ndjson");
    std::fs::remove_file(c.path(&c.logs[2][0])).unwrap();
    let cli = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
            .args(["validate-digests", "--trail-arn", ARN, "--s3-bucket", BUCKET])
            .args(["--start-time", "2026-01-01T00:00:00Z", "--end-time", "2026-01-01T05:59:59Z", "--public-keys"])
            .arg(&keys)
            .arg("--local")
            .arg(dir.path())
            .arg("--resume")
            .arg(&state)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let total: usize = c.logs.iter().map(Vec::len).sum();
    let (code, first) = cli();
    assert_eq!(code, Some(1), "{first}");
    let proven = std::fs::read_to_string(&state).unwrap().lines().count();
    assert_eq!(proven, total - 1, "every valid log file is kept, the missing one is not");
    assert!(!first.contains("taken as valid"), "{first}");

    // Run again (as after an interruption): nothing proven is fetched again,
    // and the missing file is checked, and reported, again.
    let (code, second) = cli();
    assert_eq!(code, Some(1), "{second}");
    assert!(second.contains(&format!("{proven} log files taken as valid from the resume file")), "{second}");
    assert!(second.contains(&format!("{}\tINVALID: not found", c.logs[2][0])), "{second}");
    assert!(second.contains(&format!("{}/{total} log files valid", total - 1)), "{second}");
    assert_eq!(std::fs::read_to_string(&state).unwrap().lines().count(), proven, "nothing recorded twice");
}

/// The `args` of the first container in a Kubernetes manifest (a list of
/// `- item` lines under `args:`), with `$(NAME)` taken from `env`.
fn manifest_args(yaml: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "args:").skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        let Some(item) = l.trim().strip_prefix("- ") else { break };
        let mut item = item.to_owned();
        for (k, v) in env {
            item = item.replace(&format!("$({k})"), v);
        }
        out.push(item);
    }
    out
}

/// `deploy/k8s/validate-digests-cronjob.yaml` as the CronJob runs it, over a
/// trail whose last day of digests ends an hour ago (a local copy of its
/// bucket, its keys from a file): its moving range covers that day, and a
/// file deleted from it fails the job.
#[test]
fn the_cronjobs_arguments_validate_the_last_day() {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/validate-digests-cronjob.yaml"))
            .unwrap();
    let args = manifest_args(&yaml, &[("TRAIL_ARN", ARN)]);
    assert!(args.contains(&"--start-time=26h".to_owned()), "{args:?}");
    let dir = TempDir::new("dg-cronjob");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = now.div_euclid(HOUR) * HOUR - 25 * HOUR;
    let c = digests::build_at(dir.path(), &[Hour::logs(1); 24], 1, t0);
    // Keys valid over that day.
    let mut keys: serde_json::Value = serde_json::from_str(&digests::public_keys_json(&[0])).unwrap();
    keys["PublicKeyList"][0]["ValidityStartTime"] = ((t0 - 24 * HOUR) / 1000).into();
    keys["PublicKeyList"][0]["ValidityEndTime"] = ((now + 24 * HOUR) / 1000).into();
    let keys = dir.write("keys.json", keys.to_string().as_bytes());
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
            .args(&args)
            .args(["--s3-bucket", BUCKET, "--public-keys"])
            .arg(&keys)
            .arg("--local")
            .arg(dir.path())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let (code, report) = run();
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!((report["digests"]["valid"].as_u64(), report["log_files"]["valid"].as_u64()), (Some(24), Some(24)));
    let start = trailship::integrity::validate::parse_time(report["requested_start"].as_str().unwrap()).unwrap();
    assert!((now - 26 * HOUR - start).abs() < 60_000, "26 hours before now: {}", report["requested_start"]);
    std::fs::remove_file(c.path(&c.logs[12][0])).unwrap();
    let (code, report) = run();
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["log_files"]["invalid"].as_u64(), Some(1));
}
