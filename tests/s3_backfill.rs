//! Backfill from S3 (`trailship normalize s3://BUCKET/PREFIX`) against a
//! real S3 API server (moto, started by `scripts/test.sh`): every object
//! under the prefix is one input, read once, its rows carrying the object's
//! bucket, key, version and SHA-256.

mod common;

use std::io::Write;
use std::process::Command;

use common::kafka::cloudtrail_record;
use common::{TempDir, all_rows, get};
use sha2::Digest;
use trailship::integrity::s3::S3Store;
use trailship::pipeline::{self, Options};

fn endpoint() -> Option<String> {
    common::external("TRAILSHIP_TEST_S3_ENDPOINT", "S3 tests")
}

/// A CloudTrail log file of `n` IAM calls, numbered from `from`, gzip'd.
fn log_file(from: usize, n: usize) -> Vec<u8> {
    let records: Vec<_> = (from..from + n).map(|i| cloudtrail_record(&format!("event-{i:06}"), i)).collect();
    let text = serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    gz.finish().unwrap()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
    out
}

const DAY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/";

/// A fresh bucket holding `objects`, with versioning when asked.
fn bucket(s3: &S3Store, name: &str, versioned: bool, objects: &[(&str, Vec<u8>)]) {
    let c = s3.client();
    s3.block_on(async {
        c.create_bucket().bucket(name).send().await.unwrap();
        if versioned {
            let on = aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build();
            c.put_bucket_versioning().bucket(name).versioning_configuration(on).send().await.unwrap();
        }
    });
    for (key, body) in objects {
        put(s3, name, key, body.clone());
    }
}

fn put(s3: &S3Store, bucket: &str, key: &str, body: Vec<u8>) {
    let c = s3.client();
    s3.block_on(async { c.put_object().bucket(bucket).key(key).body(body.into()).send().await.unwrap() });
}

fn unique(name: &str) -> String {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{name}-{}-{ns}", std::process::id())
}

fn normalize(ep: &str, out: &std::path::Path, url: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["normalize", "--endpoint-url", ep, "--region", "us-east-1", "--out", out.to_str().unwrap(), url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    stdout
}

#[test]
fn a_prefix_is_backfilled_once_with_each_objects_provenance() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let name = unique("backfill");
    let a = log_file(0, 3);
    bucket(
        &s3,
        &name,
        false,
        &[
            (&format!("{DAY}a.json.gz"), a.clone()),
            (&format!("{DAY}b.json.gz"), log_file(3, 2)),
            // What a listing also finds: a folder marker, a digest (validate-digests' to read).
            (DAY, Vec::new()),
            ("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/20/d.json.gz", log_file(100, 1)),
            // Outside the prefix.
            ("elsewhere/c.json.gz", log_file(200, 1)),
        ],
    );
    let dir = TempDir::new("s3-backfill");
    let out = dir.path().join("archive");
    let url = format!("s3://{name}/AWSLogs/");
    let stdout = normalize(&ep, &out, &url);
    assert!(stdout.contains("read 5 records from 2 inputs"), "{stdout}");
    assert!(stdout.contains("dead letters: 0"), "{stdout}");
    let rows = all_rows(&out);
    assert_eq!(rows.len(), 5);
    let first = rows.iter().find(|r| get(r, "metadata.uid").and_then(|v| v.as_str()) == Some("event-000000")).unwrap();
    let key = format!("{DAY}a.json.gz");
    assert_eq!(get(first, "trailship.source_file").unwrap(), &format!("s3://{name}/{key}"));
    assert_eq!(get(first, "trailship.source_object.bucket").unwrap(), name.as_str());
    assert_eq!(get(first, "trailship.source_object.key").unwrap(), key.as_str());
    // As CloudTrail's digests hash a log file: its content, not its gzip bytes.
    let sha = hex::encode(sha2::Sha256::digest(gunzip(&a)));
    assert_eq!(get(first, "trailship.source_object.sha256").unwrap(), sha.as_str());
    assert!(get(first, "trailship.source_object.version_id").is_none(), "the bucket has no versions");

    // Again: nothing read twice. A new object: only it is read.
    let stdout = normalize(&ep, &out, &url);
    assert!(stdout.contains("(2 skipped"), "{stdout}");
    put(&s3, &name, &format!("{DAY}c.json.gz"), log_file(5, 4));
    let stdout = normalize(&ep, &out, &url);
    assert!(stdout.contains("read 4 records from 1 inputs (2 skipped"), "{stdout}");
    assert_eq!(all_rows(&out).len(), 9);
}

/// A run lists a prefix twice, a page at a time each (the first listing for
/// what it asks the ledger, the second as its threads take directories):
/// every object is read once, whichever page and thread it falls to.
#[test]
fn a_prefix_is_listed_a_page_at_a_time() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let name = unique("backfill-pages");
    let next_day = DAY.replace("/20/", "/21/");
    let objects: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("{}{i}.json.gz", if i < 3 { DAY } else { next_day.as_str() }), log_file(i * 10, 2)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = objects.iter().map(|(k, b)| (k.as_str(), b.clone())).collect();
    bucket(&s3, &name, false, &refs);
    let dir = TempDir::new("s3-backfill-pages");
    let out = dir.path().join("archive");
    let source = trailship::source::object::S3Source::new(Some(ep.clone()), Some("us-east-1".into())).with_page(2);
    let paths = [std::path::PathBuf::from(format!("s3://{name}/AWSLogs/"))];
    let listing = trailship::source::Listing::new(&paths, &out, &source).unwrap();
    let opts = Options { out: out.clone(), threads: 2, ..Options::default() };
    let s = pipeline::run(&opts, &listing).unwrap();
    assert_eq!((s.inputs_processed, s.rows_total(), s.dead_total()), (7, 14, 0), "{s:?}");
    let mut rows_of = std::collections::BTreeMap::<String, usize>::new();
    for r in all_rows(&out) {
        *rows_of.entry(get(&r, "trailship.source_file").unwrap().as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(rows_of.len() == 7 && rows_of.values().all(|&n| n == 2), "every object, each once: {rows_of:?}");
    let s = pipeline::run(&opts, &listing).unwrap();
    assert_eq!((s.records_read, s.inputs_skipped), (0, 7));
}

/// An object larger than what is held in memory is hashed as it streams,
/// then read again pinned to what was hashed (its version, or in a bucket
/// without versions its ETag); its rows are those of the object read whole.
#[test]
fn a_large_object_is_streamed_twice_and_pinned_to_what_was_hashed() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let body = log_file(0, 40);
    let sha = hex::encode(sha2::Sha256::digest(gunzip(&body)));
    for versioned in [true, false] {
        let name = unique(if versioned { "backfill-versions" } else { "backfill-etag" });
        bucket(&s3, &name, versioned, &[(&format!("{DAY}big.json.gz"), body.clone())]);
        let url = format!("s3://{name}/");
        let dir = TempDir::new("s3-backfill-large");
        assert!(body.len() > 256);
        for (hold, out) in [(256, dir.path().join("streamed")), (u64::MAX, dir.path().join("held"))] {
            let s =
                trailship::source::object::S3Source::new(Some(ep.clone()), Some("us-east-1".into())).with_hold(hold);
            let inputs = trailship::source::expand(&[url.clone().into()], &out, &s).unwrap();
            assert_eq!(inputs.len(), 1);
            let summary = pipeline::run(&Options { out: out.clone(), ..Options::default() }, &inputs).unwrap();
            assert_eq!((summary.rows_total(), summary.dead_total()), (40, 0), "hold {hold}");
        }
        let (streamed, held) = (all_rows(&dir.path().join("streamed")), all_rows(&dir.path().join("held")));
        assert_eq!((streamed.len(), held.len()), (40, 40));
        let version = get(&streamed[0], "trailship.source_object.version_id").and_then(|v| v.as_str());
        assert_eq!(version.is_some_and(|v| !v.is_empty()), versioned);
        for r in streamed.iter().chain(&held) {
            assert_eq!(get(r, "trailship.source_object.sha256").unwrap(), sha.as_str());
            assert_eq!(get(r, "trailship.source_object.version_id").and_then(|v| v.as_str()), version);
        }
    }
}

/// A streamed object whose body is cut short while it is normalised (a
/// connection reset mid-GET) is asked for again from the byte it stopped
/// at, pinned to what was hashed: every record once, no dead letter.
#[test]
fn a_body_cut_short_mid_read_is_read_on_from_where_it_stopped() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let body = log_file(0, 400);
    for versioned in [true, false] {
        let name = unique(if versioned { "backfill-cut-versions" } else { "backfill-cut-etag" });
        bucket(&s3, &name, versioned, &[(&format!("{DAY}big.json.gz"), body.clone())]);
        let proxy = common::kafka::Proxy::start(ep.trim_start_matches("http://").parse().unwrap());
        let source =
            trailship::source::object::S3Source::new(Some(proxy.url()), Some("us-east-1".into())).with_hold(256);
        let dir = TempDir::new("s3-backfill-cut");
        let out = dir.path().join("archive");
        let inputs = trailship::source::expand(&[format!("s3://{name}/").into()], &out, &source).unwrap();
        // The hash's read passes whole; the second is cut halfway through.
        proxy.cut_answers_after(body.len() as u64 * 3 / 2);
        let s = pipeline::run(&Options { out: out.clone(), ..Options::default() }, &inputs).unwrap();
        assert_eq!((s.rows_total(), s.dead_total()), (400, 0), "{s:?}");
        let mut uids: Vec<String> =
            all_rows(&out).iter().map(|r| get(r, "metadata.uid").unwrap().as_str().unwrap().to_owned()).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 400, "each record once");
    }
}

/// A prefix that cannot be listed is a clear error before anything is
/// written.
#[test]
fn a_bucket_that_is_not_there_is_a_clear_error() {
    let Some(ep) = endpoint() else { return };
    let dir = TempDir::new("s3-backfill-missing");
    let out = dir.path().join("archive");
    let o = Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["normalize", "--endpoint-url", &ep, "--out", out.to_str().unwrap(), "s3://no-such-bucket-here/x/"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot list s3://no-such-bucket-here/x/"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

/// An object gone between the listing and its reading is one dead letter
/// (`read_error`) and stays out of the ledger; the others are archived.
#[test]
fn an_object_deleted_after_the_listing_is_a_dead_letter_not_a_stop() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let name = unique("backfill-gone");
    let gone = format!("{DAY}gone.json.gz");
    bucket(&s3, &name, false, &[(&format!("{DAY}a.json.gz"), log_file(0, 2)), (&gone, log_file(2, 3))]);
    let source = trailship::source::object::S3Source::new(Some(ep.clone()), Some("us-east-1".into()));
    let dir = TempDir::new("s3-backfill-gone");
    let out = dir.path().join("archive");
    let inputs = trailship::source::expand(&[format!("s3://{name}/").into()], &out, &source).unwrap();
    assert_eq!(inputs.len(), 2);
    let c = s3.client();
    s3.block_on(async { c.delete_object().bucket(&name).key(&gone).send().await.unwrap() });
    let s = pipeline::run(&Options { out: out.clone(), ..Options::default() }, &inputs).unwrap();
    assert_eq!((s.rows_total(), s.dead_total()), (2, 1));
    assert_eq!(s.dead_letters.keys().map(|r| r.as_str()).collect::<Vec<_>>(), ["read_error"]);
    let dead = common::dead_letters(&out);
    assert_eq!(dead[0]["source"]["file"], format!("s3://{name}/{gone}"));
    let ledger = std::fs::read_to_string(out.join("_trailship/ledger.ndjson")).unwrap();
    assert!(!ledger.contains("gone.json.gz"), "{ledger}");
}

/// S3 gone for a few seconds after the listing: the reads wait it out and
/// the objects are archived, not dead-lettered.
#[test]
fn a_short_s3_outage_is_waited_out() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
    let name = unique("backfill-outage");
    bucket(
        &s3,
        &name,
        false,
        &[(&format!("{DAY}a.json.gz"), log_file(0, 3)), (&format!("{DAY}b.json.gz"), log_file(3, 2))],
    );
    let proxy = std::sync::Arc::new(common::kafka::Proxy::start(ep.trim_start_matches("http://").parse().unwrap()));
    let source = trailship::source::object::S3Source::new(Some(proxy.url()), Some("us-east-1".into()));
    let dir = TempDir::new("s3-backfill-outage");
    let out = dir.path().join("archive");
    let inputs = trailship::source::expand(&[format!("s3://{name}/").into()], &out, &source).unwrap();
    assert_eq!(inputs.len(), 2);
    proxy.set_down(true);
    let back = std::thread::spawn({
        let proxy = std::sync::Arc::clone(&proxy);
        move || {
            std::thread::sleep(std::time::Duration::from_secs(3));
            proxy.set_down(false);
        }
    });
    let s = pipeline::run(&Options { out: out.clone(), ..Options::default() }, &inputs).unwrap();
    back.join().unwrap();
    assert_eq!((s.rows_total(), s.dead_total()), (5, 0), "{s:?}");
}
