//! validate-digests against a real S3 API server (moto, started by
//! `scripts/test.sh`): digest signatures travel as S3 user metadata, as
//! CloudTrail delivers them, and a digest without it is unsigned.

mod common;

use std::path::Path;

use common::TempDir;
use common::digests::{self, BUCKET, HOUR, Hour, T0, build, gzip, upload_to, verdict};
use trailship::integrity::archive::{ArchiveOptions, validate_archive};
use trailship::integrity::keys::KeySet;
use trailship::integrity::s3::S3Store;
use trailship::integrity::store::Store as _;
use trailship::integrity::validate::{Kind, Report, Verdict, validate};

fn endpoint() -> Option<String> {
    common::external("TRAILSHIP_TEST_S3_ENDPOINT", "S3 tests")
}

/// Tests that fill the trail bucket take turns.
static TRAIL_BUCKET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Empties the bucket and uploads the local copy, sidecar metadata as S3 user metadata.
fn upload(s3: &S3Store, root: &Path) {
    upload_to(s3, BUCKET, "", &root.join(BUCKET));
}

fn check(s3: &S3Store, published: &[usize], hours: usize) -> Report {
    let keys = KeySet::from_list_public_keys_json(&digests::public_keys_json(published)).unwrap();
    validate(s3, &keys, &digests::options(T0, T0 + hours as i64 * HOUR - 1, 8)).unwrap()
}

#[test]
fn scenarios_against_a_real_s3_api() {
    let Some(ep) = endpoint() else { return };
    let _turn = TRAIL_BUCKET.lock().unwrap_or_else(|p| p.into_inner());
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let hours = || vec![Hour::logs(2), Hour::logs(0), Hour::logs(3), Hour::logs(1), Hour::logs(2)];

    // Untouched: every digest and log file valid, read over the S3 API.
    let dir = TempDir::new("s3-valid");
    let c = build(dir.path(), &hours());
    upload(&s3, dir.path());
    let r = check(&s3, &[0], 5);
    assert!(r.is_clean(), "{:#?}", r.findings);
    assert_eq!((r.digests.valid, r.log_files.valid), (5, 8));
    assert!(r.findings[0].location.starts_with("s3://trail-bucket/AWSLogs/"));

    // Tampered and deleted log files, a middle digest without its metadata
    // (in S3 that is an unsigned digest, even though its successor vouches
    // for the content), a digest edited after signing.
    let tampered = c.logs[0][0].clone();
    std::fs::write(c.path(&tampered), gzip(br#"{"Records":[]}"#, 6)).unwrap();
    let deleted = c.logs[2][1].clone();
    std::fs::remove_file(c.path(&deleted)).unwrap();
    std::fs::remove_file(c.meta_path(c.digest(1))).unwrap();
    let edited = c.digest(3).to_owned();
    let mut doc = c.read_digest(3);
    doc["newestEventTime"] = "2026-01-01T03:59:59Z".into();
    std::fs::write(c.path(&edited), gzip(&serde_json::to_vec(&doc).unwrap(), 6)).unwrap();
    upload(&s3, dir.path());
    let r = check(&s3, &[0], 5);
    assert_eq!(verdict(&r, Kind::LogFile, &tampered), Verdict::HashMismatch);
    assert_eq!(verdict(&r, Kind::LogFile, &deleted), Verdict::NotFound);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(1)), Verdict::SignatureMissing { content_authentic: true });
    assert_eq!(verdict(&r, Kind::Digest, &edited), Verdict::SignatureMismatch { content_authentic: false });
    assert_eq!(verdict(&r, Kind::LogFile, &c.logs[3][0]), Verdict::Unverified);
    assert!(!r.is_clean());

    // A digest deleted in the middle, and a key that is not published.
    let dir = TempDir::new("s3-missing");
    let mut h = hours();
    h[4].key = 1;
    let c = build(dir.path(), &h);
    std::fs::remove_file(c.path(c.digest(2))).unwrap();
    upload(&s3, dir.path());
    let r = check(&s3, &[0], 5);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(2)), Verdict::NotFound);
    assert!(matches!(verdict(&r, Kind::Digest, c.digest(4)), Verdict::KeyNotFound { .. }));
    assert_eq!(verdict(&r, Kind::Digest, c.digest(0)), Verdict::Valid);
    // Both keys published (rotation): only the deletion remains.
    let r = check(&s3, &[0, 1], 5);
    assert_eq!(verdict(&r, Kind::Digest, c.digest(4)), Verdict::Valid);
    assert_eq!(r.findings.iter().filter(|f| !f.verdict.is_valid()).count(), 1);

    // Logging stopped and restarted: a gap, not an error.
    let dir = TempDir::new("s3-restart");
    let mut h = hours();
    h[2].off = true;
    h[3].restart = true;
    build(dir.path(), &h);
    upload(&s3, dir.path());
    let r = check(&s3, &[0], 5);
    assert!(r.is_clean(), "{:#?}", r.findings);
    assert_eq!(r.gaps.len(), 1);
}

/// Without `--s3-bucket`, the bucket comes from DescribeTrails (the local
/// CloudTrail API) and the objects from the S3 server.
#[test]
fn describe_trails_finds_the_bucket() {
    let Some(ep) = endpoint() else { return };
    let _turn = TRAIL_BUCKET.lock().unwrap_or_else(|p| p.into_inner());
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let dir = TempDir::new("s3-describe");
    let c = build(dir.path(), &[Hour::logs(1), Hour::logs(2), Hour::logs(1)]);
    let logs: usize = c.logs.iter().map(Vec::len).sum();
    upload(&s3, dir.path());
    let api = common::cloudtrail_api::start(vec![0]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["validate-digests", "--trail-arn", digests::ARN])
        .args(["--start-time", "2026-01-01T00:00:00Z", "--end-time", "2026-01-01T02:59:59Z"])
        .args(["--endpoint-url", &ep, "--cloudtrail-endpoint-url", &api.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("3/3 digest files valid") && text.contains(&format!("{logs}/{logs} log files valid")),
        "{text}"
    );
    let targets: Vec<String> = api.requests.lock().unwrap().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["CloudTrail_20131101.DescribeTrails", "CloudTrail_20131101.ListPublicKeys"]);
}

/// trailship's own chain, read over the S3 API from under a prefix, with
/// signatures as user metadata: valid; then a changed, a removed and an
/// added object, a digest removed in the middle and the newest edited after
/// signing.
#[test]
fn the_archive_chain_against_a_real_s3_api() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let dir = TempDir::new("s3-archive");
    let out = dir.path().join("archive");
    let key = dir.write("k.pem", trailship::integrity::chain::generate_ed25519_pem().as_bytes());
    let mut opts = trailship::pipeline::Options { out: out.clone(), ..Default::default() };
    opts.integrity.signing_key_file = Some(key);
    // Four runs, four digests.
    let inputs = trailship::source::expand(&[common::fixture("cloudtrail/awsdocs")], &out, &common::no_s3()).unwrap();
    let mut digests = Vec::new();
    let mut objects: Vec<Vec<String>> = Vec::new();
    for chunk in inputs.chunks(inputs.len().div_ceil(4)) {
        let s = trailship::pipeline::run(&opts, chunk).unwrap();
        digests.extend(s.digests);
        objects.push(s.objects.iter().map(|o| o.key.clone()).collect());
    }
    assert_eq!(digests.len(), 4);
    std::fs::remove_dir_all(out.join("_trailship")).unwrap();
    let bucket = "trailship-archive";
    let keys = KeySet::from_file(&out.join(trailship::integrity::chain::PUBLIC_KEYS)).unwrap();
    let check_with = |keys: &KeySet| {
        let opts = ArchiveOptions {
            bucket: bucket.into(),
            prefix: "tenant-a/".into(),
            location: format!("s3://{bucket}/tenant-a"),
            concurrency: 4,
            now_ms: i64::MAX / 2,
            grace_ms: 0,
            progress: false,
        };
        validate_archive(&s3, keys, &opts).unwrap()
    };
    let check = || check_with(&keys);
    upload_to(&s3, bucket, "tenant-a/", &out);
    let r = check();
    assert!(r.is_clean(), "{:#?}", r.findings);
    let written = trailship::integrity::store::LocalStore::new(&out)
        .list("", "")
        .unwrap()
        .into_iter()
        .filter(|k| !k.starts_with("_digests/"))
        .count();
    assert_eq!((r.digests.valid, r.objects.unwrap().valid), (4, written));
    assert!(r.findings[0].location.starts_with("s3://trailship-archive/tenant-a/_digests/"), "{:#?}", r.findings[0]);
    // Checked against a key the auditor pinned that is not the writer's: nothing verifies.
    let r = check_with(&KeySet::from_list_public_keys_json(&digests::public_keys_json(&[2])).unwrap());
    assert_eq!(r.digests.invalid, 4);
    assert!(matches!(verdict(&r, Kind::Digest, &digests[0]), Verdict::KeyNotFound { .. }));

    let (changed, removed) = (&objects[0][0], &objects[0][1]);
    let planted = "api_activity/part-planted.zstd.parquet";
    std::fs::remove_file(out.join(&digests[1])).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&digests::gunzip(&std::fs::read(out.join(&digests[3])).unwrap())).unwrap();
    doc["digestStartTime"] = "2020-01-01T00:00:00Z".into();
    // Parquet objects and the dead-letter file of the last run.
    let newest_listed = doc["logFiles"].as_array().unwrap().len();
    std::fs::write(out.join(&digests[3]), gzip(&serde_json::to_vec(&doc).unwrap(), 6)).unwrap();
    upload_to(&s3, bucket, "tenant-a/", &out);
    s3.block_on(async {
        let c = s3.client();
        let put = |k: String, b: &'static [u8]| c.put_object().bucket(bucket).key(k).body(b.to_vec().into()).send();
        put(format!("tenant-a/{changed}"), b"PAR1 forged").await.unwrap();
        put(format!("tenant-a/{planted}"), b"PAR1 planted").await.unwrap();
        c.delete_object().bucket(bucket).key(format!("tenant-a/{removed}")).send().await.unwrap();
    });
    let r = check();
    assert_eq!(verdict(&r, Kind::Object, changed), Verdict::HashMismatch);
    assert_eq!(verdict(&r, Kind::Object, removed), Verdict::NotFound);
    assert_eq!(verdict(&r, Kind::Object, planted), Verdict::Unreferenced);
    assert_eq!(verdict(&r, Kind::Digest, &digests[1]), Verdict::NotFound);
    assert_eq!(verdict(&r, Kind::Digest, &digests[3]), Verdict::SignatureMismatch { content_authentic: false });
    for o in &objects[1] {
        assert_eq!(verdict(&r, Kind::Object, o), Verdict::Unreferenced, "{o}: its digest is gone");
    }
    for o in &objects[3] {
        assert_eq!(verdict(&r, Kind::Object, o), Verdict::Unverified, "{o}: its digest was edited");
    }
    let bad = r.findings.iter().filter(|f| !f.verdict.is_valid()).count();
    assert_eq!(bad, 5 + objects[1].len() + newest_listed, "{:#?}", r.findings);
}
