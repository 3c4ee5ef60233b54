//! validate-digests against a real S3 API server (moto, started by
//! `scripts/test.sh`): digest signatures travel as S3 user metadata, as
//! CloudTrail delivers them, and a digest without it is unsigned.

mod common;

use std::path::Path;

use common::TempDir;
use common::digests::{self, BUCKET, HOUR, Hour, T0, build, gzip, verdict};
use trailship::integrity::keys::KeySet;
use trailship::integrity::s3::S3Store;
use trailship::integrity::validate::{Kind, Report, Verdict, validate};

fn endpoint() -> Option<String> {
    match std::env::var("TRAILSHIP_TEST_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) => {
            assert!(
                std::env::var_os("TRAILSHIP_REQUIRE_EXTERNAL").is_none(),
                "TRAILSHIP_TEST_S3_ENDPOINT is not set: run ./scripts/test.sh"
            );
            eprintln!("SKIPPED: S3 tests need TRAILSHIP_TEST_S3_ENDPOINT (run ./scripts/test.sh)");
            None
        }
    }
}

/// Empties the bucket and uploads the local copy, sidecar metadata as S3 user metadata.
fn upload(s3: &S3Store, root: &Path) {
    let c = s3.client();
    s3.block_on(async {
        let _ = c.create_bucket().bucket(BUCKET).send().await;
        let listed = c.list_objects_v2().bucket(BUCKET).send().await.unwrap();
        for o in listed.contents() {
            c.delete_object().bucket(BUCKET).key(o.key().unwrap()).send().await.unwrap();
        }
        let base = root.join(BUCKET);
        let mut files = Vec::new();
        collect(&base, &mut files);
        for f in files {
            let key = f.strip_prefix(&base).unwrap().to_str().unwrap().to_owned();
            if key.ends_with(".metadata.json") {
                continue;
            }
            let mut put = c.put_object().bucket(BUCKET).key(&key).body(std::fs::read(&f).unwrap().into());
            let meta = root.join(BUCKET).join(format!("{key}.metadata.json"));
            if let Ok(m) = std::fs::read(&meta) {
                let m: std::collections::BTreeMap<String, String> = serde_json::from_slice(&m).unwrap();
                for (k, v) in m {
                    put = put.metadata(k, v);
                }
            }
            put.send().await.unwrap();
        }
    });
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { collect(&p, out) } else { out.push(p) }
    }
}

fn check(s3: &S3Store, published: &[usize], hours: usize) -> Report {
    let keys = KeySet::from_list_public_keys_json(&digests::public_keys_json(published)).unwrap();
    validate(s3, &keys, &digests::options(T0, T0 + hours as i64 * HOUR - 1, 8)).unwrap()
}

#[test]
fn scenarios_against_a_real_s3_api() {
    let Some(ep) = endpoint() else { return };
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
