//! Every dead-letter reason, each from real-looking bad input, and the rest of
//! the input going on around it.

mod common;

use std::io::Write;

use common::*;
use serde_json::Value;
use trailship::pipeline::Options;

const GOOD: &str = r#"{"eventVersion":"1.08","eventTime":"2024-01-02T03:04:05Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"eu-west-1","recipientAccountId":"111122223333","eventID":"ID"}"#;

fn good(id: &str) -> String {
    GOOD.replace("\"ID\"", &format!("\"{id}\""))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Runs one input file and returns (row uids, dead letters).
fn run_one(name: &str, bytes: &[u8], opts: impl FnOnce(&mut Options)) -> (Vec<String>, Vec<Value>) {
    let dir = TempDir::new("dl");
    let input = dir.write(&format!("in/{name}"), bytes);
    // A finished file: one changed in the last minutes may still be being
    // written, and what it ends in is then left for a later run
    // (tests/incremental.rs).
    let settled = std::time::SystemTime::now() - trailship::source::SETTLE - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&input).unwrap().set_modified(settled).unwrap();
    let out = dir.path().join("out");
    let mut o = Options { out: out.clone(), ..Options::default() };
    opts(&mut o);
    let s = run_with(o, std::slice::from_ref(&input));
    let mut uids: Vec<String> =
        all_rows(&out).iter().map(|r| get(r, "metadata.uid").unwrap().as_str().unwrap().to_string()).collect();
    uids.sort();
    let dead = dead_letters(&out);
    assert_eq!(s.dead_total() as usize, dead.len());
    assert_eq!(s.rows_total() as usize, uids.len());
    for d in &dead {
        assert_eq!(d["source"]["file"], input.display().to_string());
        assert!(!d["detail"].as_str().unwrap().is_empty());
    }
    (uids, dead)
}

fn reasons(dead: &[Value]) -> Vec<&str> {
    dead.iter().map(|d| d["reason"].as_str().unwrap()).collect()
}

#[test]
fn malformed_json_costs_only_itself() {
    let input = format!("{}\n{{\"eventVersion\": 1,,}}\n{}\n", good("a"), good("b"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |_| {});
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["malformed_json"]);
    assert_eq!(dead[0]["source"]["record_index"], 1);
    assert_eq!(dead[0]["input"], "{\"eventVersion\": 1,,}");
}

#[test]
fn unterminated_record_resyncs_at_the_next_line() {
    let input = format!("{}\n{{\"eventVersion\":\"1.08\",\"eventName\":\"oops\n{}\n", good("a"), good("b"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |_| {});
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["malformed_json"]);
}

#[test]
fn truncated_gzip_keeps_what_came_before() {
    let records: Vec<String> = (0..200).map(|i| good(&format!("r{i:03}"))).collect();
    let body = format!("{{\"Records\":[{}]}}", records.join(","));
    let gz = gzip(body.as_bytes());
    let cut = &gz[..gz.len() * 2 / 3];
    let (uids, dead) = run_one("x.json.gz", cut, |_| {});
    assert!(uids.len() > 50 && uids.len() < 200, "{} rows", uids.len());
    assert_eq!(uids[0], "r000");
    assert_eq!(reasons(&dead), ["truncated_gzip"]);
}

#[test]
fn corrupt_gzip_is_reported() {
    let records: Vec<String> = (0..200).map(|i| good(&format!("r{i:03}"))).collect();
    let mut gz = gzip(format!("{{\"Records\":[{}]}}", records.join(",")).as_bytes());
    let n = gz.len();
    for b in &mut gz[n / 2..n / 2 + 64] {
        *b ^= 0x5a;
    }
    let (_uids, dead) = run_one("x.json.gz", &gz, |_| {});
    let r = reasons(&dead);
    assert!(
        r.iter().any(|r| *r == "corrupt_gzip" || *r == "truncated_gzip"),
        "a damaged stream is named as such: {r:?}"
    );
}

#[test]
fn gzip_checksum_mismatch_is_corrupt_gzip() {
    let records: Vec<String> = (0..20).map(|i| good(&format!("r{i:03}"))).collect();
    let mut gz = gzip(format!("{{\"Records\":[{}]}}", records.join(",")).as_bytes());
    let n = gz.len();
    gz[n - 8] ^= 0xff; // CRC32 of the trailer
    let (uids, dead) = run_one("x.json.gz", &gz, |_| {});
    // The data decoded fine; the stream as a whole is flagged.
    assert_eq!(uids.len(), 20);
    assert_eq!(reasons(&dead), ["corrupt_gzip"]);
}

#[test]
fn multi_member_gzip_is_read_whole() {
    // CloudTrail has delivered files with data appended after the first member.
    let mut gz = gzip(format!("{}\n", good("a")).as_bytes());
    gz.extend(gzip(format!("{}\n", good("b")).as_bytes()));
    let (uids, dead) = run_one("x.json.gz", &gz, |_| {});
    assert_eq!(uids, ["a", "b"]);
    assert!(dead.is_empty());
}

#[test]
fn not_an_object() {
    let input = format!("{}\n42\n\"text\"\n[1,2]\n", good("a"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |_| {});
    assert_eq!(uids, ["a"]);
    // `[1,2]` is a top-level array: its elements are records.
    assert_eq!(reasons(&dead), ["not_an_object"; 4]);
}

/// A CloudTrail-looking record whose `x` holds `levels` nested arrays.
fn nested_record(levels: usize) -> String {
    format!("{{\"eventVersion\":\"1\",\"x\":{}1{}}}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn nesting_deeper_than_the_limit() {
    let deep = nested_record(100);
    let input = format!("{}\n{deep}\n{}\n", good("a"), good("b"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |o| o.limits.max_depth = 32);
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["too_deep"]);
    assert!(dead[0]["detail"].as_str().unwrap().contains("101"));
}

#[test]
fn deep_nesting_far_past_any_stack_does_not_crash() {
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let (_, dead) = run_one("x.json", deep.as_bytes(), |_| {});
    assert_eq!(reasons(&dead), ["too_deep"]);
}

#[test]
fn record_over_the_size_limit() {
    let big = GOOD.replace("\"ID\"", &format!("\"big\",\"pad\":\"{}\"", "x".repeat(10_000)));
    let input = format!("{}\n{big}\n{}\n", good("a"), good("b"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |o| o.limits.max_record_bytes = 4096);
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["oversized"]);
    assert_eq!(dead[0]["input"].as_str().unwrap().len(), 4096);
}

#[test]
fn envelope_with_no_records() {
    let (uids, dead) = run_one("x.json", b"{\"Records\": []}", |_| {});
    assert!(uids.is_empty());
    assert_eq!(reasons(&dead), ["empty_envelope"]);
}

#[test]
fn unrecognised_source() {
    let (uids, dead) = run_one("x.ndjson", b"{\"hello\":\"world\"}\n", |_| {});
    assert!(uids.is_empty());
    assert_eq!(reasons(&dead), ["unrecognised_source"]);
}

#[test]
fn insights_events_are_unsupported() {
    let (uids, dead) = run_one(
        "x.json",
        &std::fs::read(fixture("cloudtrail/awsdocs/log-file-example-07-cloudtrail-insights-event-log-example.json"))
            .unwrap(),
        |_| {},
    );
    assert!(uids.is_empty());
    assert_eq!(reasons(&dead), ["unsupported_event_type", "unsupported_event_type"]);
}

#[test]
fn missing_and_mistyped_required_fields() {
    let no_time = GOOD.replace("\"eventTime\":\"2024-01-02T03:04:05Z\",", "");
    let bad_type = GOOD.replace("\"eventName\":\"GetObject\"", "\"eventName\":17");
    let bad_time = GOOD.replace("2024-01-02T03:04:05Z", "2000-00-00T00:00:00Z");
    let input = format!("{no_time}\n{bad_type}\n{bad_time}\n{}\n", good("ok"));
    let (uids, dead) = run_one("x.ndjson", input.as_bytes(), |_| {});
    assert_eq!(uids, ["ok"]);
    assert_eq!(reasons(&dead), ["missing_field", "wrong_field_type", "invalid_timestamp"]);
    assert!(dead[1]["detail"].as_str().unwrap().contains("number"));
}

#[test]
fn a_log_file_read_whole_dead_letters_each_bad_record_with_its_own_text() {
    // A log file that parses whole is parsed in one pass; a record the
    // normaliser refuses still costs only itself, with its text as written.
    let bad_type = GOOD.replace("\"eventName\":\"GetObject\"", "\"eventName\": 17");
    let body = format!("{{\"Records\":[{},\n  {bad_type} ,42,{}]}}\n", good("a"), good("b"));
    let (uids, dead) = run_one("x.json.gz", &gzip(body.as_bytes()), |_| {});
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["wrong_field_type", "not_an_object"]);
    assert_eq!(dead[0]["source"]["record_index"], 1);
    assert_eq!(dead[0]["input"], bad_type.as_str());
    assert_eq!(dead[1]["source"]["record_index"], 2);
    assert_eq!(dead[1]["input"], "42");
}

#[test]
fn a_log_file_over_its_whole_file_share_is_framed_with_the_same_outcome() {
    // With many threads each gets a smaller share of `whole_file_bytes`, so
    // the same file may be parsed whole on one machine and framed on another:
    // its rows and dead letters must not depend on which.
    let bad_type = GOOD.replace("\"eventName\":\"GetObject\"", "\"eventName\": 17");
    let body = format!("{{\"Records\":[{},\n  {bad_type} ,42,{}]}}\n", good("a"), good("b"));
    let rows = |whole_file_bytes: usize| {
        let dir = TempDir::new("share");
        let input = dir.write("in/x.json.gz", &gzip(body.as_bytes()));
        let out = dir.path().join("out");
        let s = run_with(Options { out: out.clone(), whole_file_bytes, ..Options::default() }, &[input]);
        let dead: Vec<(String, String)> = dead_letters(&out)
            .iter()
            .map(|d| (d["reason"].as_str().unwrap().to_string(), d["input"].as_str().unwrap().to_string()))
            .collect();
        let mut rows = all_rows(&out);
        for r in &mut rows {
            // Where the input lay differs between the two runs; nothing else may.
            r.as_object_mut().unwrap().remove("trailship");
            r["metadata"].as_object_mut().unwrap().remove("log_source");
        }
        (s.rows_total(), rows, dead)
    };
    let whole = rows(Options::default().whole_file_bytes);
    let framed = rows(body.len() / 2);
    assert_eq!(whole.0, 2);
    assert_eq!(whole.2, [("wrong_field_type".into(), bad_type.clone()), ("not_an_object".into(), "42".into())]);
    assert_eq!(framed, whole);
}

#[test]
fn a_log_file_with_one_record_too_deep_loses_only_that_record() {
    let deep = nested_record(40);
    let body = format!("{{\"Records\":[{},{deep},{}]}}", good("a"), good("b"));
    let (uids, dead) = run_one("x.json", body.as_bytes(), |o| o.limits.max_depth = 32);
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(reasons(&dead), ["too_deep"]);
    assert_eq!(dead[0]["source"]["record_index"], 1);
}

#[test]
fn wrong_type_in_an_optional_field_keeps_the_row() {
    let rec = GOOD.replace("\"awsRegion\":\"eu-west-1\"", "\"awsRegion\":\"eu-west-1\",\"userAgent\":{\"x\":1}");
    let dir = TempDir::new("wt");
    let input = dir.write("x.json", rec.as_bytes());
    run(&dir.path().join("out"), &[input]);
    let rows = all_rows(&dir.path().join("out"));
    assert_eq!(rows.len(), 1);
    assert_eq!(get(&rows[0], "trailship.repairs").unwrap(), &serde_json::json!(["wrong_type:userAgent"]));
    // The value is not lost: it is in unmapped.
    let unmapped: Value = serde_json::from_str(get(&rows[0], "unmapped").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(unmapped["userAgent"], serde_json::json!({"x": 1}));
}

#[test]
fn invalid_utf8_is_repaired_and_kept() {
    let mut input =
        GOOD.replace("\"eventID\":\"ID\"", "\"eventID\":\"u1\",\"userAgent\":\"aws-cli/\u{1}X\"").into_bytes();
    let pos = input.windows(2).position(|w| w == b"\x01X").unwrap();
    input[pos] = 0xff; // a lone byte that is not UTF-8
    let dir = TempDir::new("utf8");
    let path = dir.write("x.json", &input);
    let s = run(&dir.path().join("out"), &[path]);
    assert_eq!(s.repaired, 1);
    let rows = all_rows(&dir.path().join("out"));
    assert_eq!(rows.len(), 1);
    assert_eq!(get(&rows[0], "http_request.user_agent").unwrap(), "aws-cli/\u{fffd}X");
    assert_eq!(get(&rows[0], "trailship.repairs").unwrap(), &serde_json::json!(["utf8_replaced"]));
    assert!(dead_letters(&dir.path().join("out")).is_empty());
}

#[test]
fn eventbridge_envelope_is_unwrapped() {
    let (uids, dead) = run_one(
        "eb.json",
        format!(
            "{{\"version\":\"0\",\"detail-type\":\"AWS API Call via CloudTrail\",\"source\":\"aws.s3\",\"detail\":{}}}",
            good("eb")
        )
        .as_bytes(),
        |_| {},
    );
    assert_eq!(uids, ["eb"]);
    assert!(dead.is_empty());
}
