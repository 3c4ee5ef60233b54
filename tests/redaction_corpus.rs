//! The labelled redaction corpus: recall and precision of the redactor.
//!
//! - Positives: CredSweeper's expected findings for structured token types
//!   (`tests/fixtures/secrets/credsweeper`), and tokens planted by this test
//!   (checksummed GitHub and npm tokens are generated, not copied).
//! - Hard negatives: UUIDs, commit SHAs, ARNs, base64 blobs, access key IDs,
//!   CloudTrail's own mask, CredSweeper's `false_positive` and `uuid` samples.
//!
//! Structured types must be found every time (recall 100%), and no negative
//! may be touched (zero false positives). The table is printed with
//! `cargo test --test redaction_corpus -- --nocapture`.

mod common;

use std::collections::BTreeMap;

use common::planted::planted;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use trailship::redact::{RedactionConfig, Redactor, Stats};

fn redactor() -> Redactor {
    Redactor::new(&RedactionConfig { key: Some("test-key-0123456789-0123456789-0123".into()), ..Default::default() })
        .unwrap()
}

fn scan(r: &Redactor, text: &str) -> (String, u32) {
    let mut out = Vec::new();
    let mut st = Stats::default();
    r.scan_unparsed(text.as_bytes(), &mut out, &mut st);
    (String::from_utf8(out).unwrap(), st.count)
}

/// CredSweeper rules that name token formats with a fixed structure; every
/// finding under them must be redacted.
const STRUCTURED: &[&str] = &[
    "Gitlab Prefix Token",
    "PEM Private Key",
    "JSON Web Token",
    "Docker Access Token",
    "Hugging Face User Access Token",
    "OpenAI Token",
    "Amazon Bedrock API Key",
    "Digital Ocean Token",
    "Google OAuth Secret",
    "Postman Credentials",
    "Age Secret Key",
    "Anthropic API Key",
    "Bearer Authorization",
    "Basic Authorization",
    "Azure Storage Account Key",
    "Databricks Access Token",
    "Discord Webhook",
    "Doppler API Key",
    "1Password Account Token",
    "Atlassian PAT token",
    "Github Classic Token",
    "Github Fine-granted Token",
    "Slack Token",
    "Slack Webhook",
    "SendGrid API Key",
    "NPM Token",
    "PyPi API Token",
    "Shopify Token",
    "Grafana Provisioned API Key",
    "Heroku Credentials",
    "Stripe Credentials",
    "Google API Key",
];

#[test]
fn credsweeper_structured_findings_are_all_redacted() {
    let r = redactor();
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("secrets/credsweeper/expected-output.json")).unwrap())
            .unwrap();
    let mut per_rule: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    // Each sample file is scanned whole, as a multi-line value would be.
    let mut scanned: HashMap<String, String> = HashMap::new();
    for f in &expected {
        let rule = f["rule"].as_str().unwrap();
        for l in f["line_data_list"].as_array().unwrap() {
            let line = l["line"].as_str().unwrap();
            let value = l["value"].as_str().unwrap();
            // Stripe publishable keys are public by design (Stripe's own docs);
            // they stay in clear. An empty value is no finding.
            if value.starts_with("pk_") || value.is_empty() {
                continue;
            }
            let path = l["path"].as_str().unwrap().to_string();
            let out = scanned
                .entry(path.clone())
                .or_insert_with(|| {
                    let text = std::fs::read(fixture(&format!("secrets/credsweeper/{path}"))).unwrap();
                    scan(&r, &String::from_utf8_lossy(&text)).0
                })
                .clone();
            let found = !out.contains(value);
            let e = per_rule.entry(rule.to_string()).or_default();
            e.0 += 1;
            e.1 += found as u32;
            if STRUCTURED.contains(&rule) && !found {
                misses.push(format!("{rule}: {value} in {line:?}"));
            }
        }
    }
    println!("{:<40} {:>6} {:>6} {:>7}", "CredSweeper rule", "cases", "found", "recall");
    let (mut tot, mut hit) = (0, 0);
    for (rule, (n, found)) in &per_rule {
        let mark = if STRUCTURED.contains(&rule.as_str()) { "*" } else { " " };
        println!("{mark}{rule:<39} {n:>6} {found:>6} {:>6.0}%", 100.0 * *found as f64 / *n as f64);
        if STRUCTURED.contains(&rule.as_str()) {
            tot += n;
            hit += found;
        }
    }
    println!("structured types (*): recall {hit}/{tot}");
    let covered: Vec<_> = STRUCTURED.iter().filter(|r| per_rule.contains_key(**r)).collect();
    assert!(covered.len() >= 20, "the corpus exercises the structured rules: {covered:?}");
    assert!(misses.is_empty(), "structured tokens left in clear:\n{}", misses.join("\n"));
}

/// Hard negatives: identifiers and blobs that look random but are not secrets.
fn hard_negatives() -> Vec<String> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let hex = |n: usize, next: &mut dyn FnMut() -> u64| -> String {
        (0..n).map(|_| char::from(b"0123456789abcdef"[(next() % 16) as usize])).collect()
    };
    let b64 = |n: usize, next: &mut dyn FnMut() -> u64| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n).map(|_| char::from(A[(next() % 64) as usize])).collect()
    };
    let upper = |n: usize, next: &mut dyn FnMut() -> u64| -> String {
        (0..n).map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(next() % 32) as usize])).collect()
    };
    let mut v = vec![
        "HIDDEN_DUE_TO_SECURITY_REASONS".to_string(),
        "AKIAIOSFODNN7EXAMPLE".into(),
        "arn:aws:iam::111122223333:role/service-role/AmazonSageMakerServiceCatalogProductsExecutionRole".into(),
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        "arn:aws:s3:::prod-artifacts/data/2024/03/01/part-00001.parquet".into(),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)".into(),
        "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true".into(),
        "https://github.com/octo-org/octo-repo/pull/1347".into(),
        "x-amz-server-side-encryption-customer-key-MD5".into(),
        "sk-ant-".into(),
        "pk_live_51H8abcdefghijklmnopqrstuvwx".into(),
        "AC0123456789abcdef0123456789abcdef".into(), // a Twilio account SID: an identifier
        "1234567890-abc123def456.apps.googleusercontent.com".into(),
        "Basic realm=\"api\"".into(),
        "Bearer".into(),
        "postgres://db.internal:5432/app".into(),
        "https://user@example.com/path".into(),
    ];
    for _ in 0..200 {
        let u = hex(32, &mut next);
        v.push(format!("{}-{}-{}-{}-{}", &u[..8], &u[8..12], &u[12..16], &u[16..20], &u[20..]));
        v.push(hex(40, &mut next)); // commit SHA
        v.push(hex(64, &mut next)); // SHA-256
        v.push(format!("AKIA{}", upper(16, &mut next)));
        v.push(format!("ASIA{}", upper(16, &mut next)));
        v.push(format!("AROA{}:session-{}", upper(17, &mut next), next() % 1000));
        v.push(b64(88, &mut next)); // x-amz-id-2 style blobs
        v.push(format!("{}==", b64(22, &mut next)));
        v.push(format!("i-0{}", hex(16, &mut next)));
    }
    v
}

#[test]
fn hard_negatives_are_untouched() {
    let r = redactor();
    let mut false_positives = Vec::new();
    let negatives = hard_negatives();
    let candidates = negatives.iter().filter(|n| r.candidate(n.as_bytes())).count();
    println!("per-record anchor check: {candidates} of {} negatives would be scanned", negatives.len());
    for n in &negatives {
        let mut out = Vec::new();
        let mut st = Stats::default();
        r.scan_into(n.as_bytes(), &mut out, &mut st);
        if st.count > 0 {
            false_positives.push(format!("{n} -> {}", String::from_utf8_lossy(&out)));
        }
    }
    // CredSweeper's own hard negatives, scanned as string values are.
    for f in ["false_positive", "uuid"] {
        let text = std::fs::read_to_string(fixture(&format!("secrets/credsweeper/samples/{f}"))).unwrap();
        for line in text.lines() {
            let mut out = Vec::new();
            let mut st = Stats::default();
            r.scan_into(line.as_bytes(), &mut out, &mut st);
            if st.count > 0 {
                false_positives.push(format!("{f}: {line} -> {}", String::from_utf8_lossy(&out)));
            }
        }
    }
    let tp = planted().len();
    println!(
        "precision: {tp} planted positives found, {} false positives in {} hard negatives -> {:.1}%",
        false_positives.len(),
        negatives.len(),
        100.0 * tp as f64 / (tp + false_positives.len()) as f64
    );
    assert!(false_positives.is_empty(), "false positives:\n{}", false_positives.join("\n"));
}

/// Real CloudTrail records hold no secrets but CloudTrail's own session
/// tokens (redacted by field name): nothing else may be touched.
#[test]
fn real_cloudtrail_records_lose_nothing_but_session_tokens() {
    let dir = TempDir::new("redact-ct");
    let s = run(dir.path(), &[fixture("cloudtrail")]);
    assert!(s.rows_total() >= 38);
    for ty in s.redactions.keys() {
        assert_eq!(*ty, "aws_session_token", "unexpected redaction type {ty}");
    }
    for row in all_rows(dir.path()) {
        if let Some(types) = get(&row, "trailship.redacted_types") {
            assert_eq!(types, &json!(["aws_session_token"]), "{row}");
        }
    }
}

#[test]
fn every_detector_type_has_a_planted_case() {
    let r = redactor();
    let cases = planted();
    let types: std::collections::BTreeSet<_> = cases.iter().map(|c| c.0).collect();
    assert!(types.len() >= 50, "{} types", types.len());
    for (ty, text, secret) in &cases {
        assert!(r.candidate(text.as_bytes()), "{ty}: the per-record anchor check must see it");
        let mut out = Vec::new();
        let mut st = Stats::default();
        r.scan_into(text.as_bytes(), &mut out, &mut st);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains(secret.as_str()), "{ty}: {secret} survived in {out}");
        assert_eq!(st.types, [*ty], "{ty}: {out}");
        assert!(out.contains(&format!("[REDACTED:{ty}:")), "{out}");
    }
}

/// Planted secrets in every place a CloudTrail record can carry text, through
/// the whole pipeline: none survives in any column of any object. Once as
/// NDJSON with `raw_data` (each record framed), once as a CloudTrail log file
/// (parsed whole; clean records around each planted one).
#[test]
fn planted_secrets_never_reach_the_archive() {
    let cases = planted();
    let records: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, text, _))| {
            json!({
                "eventVersion": "1.08", "eventTime": "2024-01-02T03:04:05Z", "eventSource": "ecs.amazonaws.com",
                "eventName": "RegisterTaskDefinition", "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
                "eventID": format!("e{i}"), "userAgent": format!("agent {text}"), "errorMessage": text,
                "requestParameters": {"containerDefinitions": [{"environment": [{"name": "NOTE", "value": text}],
                    "command": ["sh", "-c", text]}], "family": "web"},
                "someNewField": {"nested": [text]},
            })
            .to_string()
        })
        .collect();
    let clean = |i: usize| {
        json!({
            "eventVersion": "1.08", "eventTime": "2024-01-02T03:04:05Z", "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
            "eventID": format!("c{i}"), "requestParameters": {"bucketName": "b", "key": "k"},
        })
        .to_string()
    };
    let mut log_file = Vec::new();
    for (i, r) in records.iter().enumerate() {
        log_file.push(clean(i));
        log_file.push(r.clone());
    }
    let log_file = format!("{{\"Records\":[{}]}}", log_file.join(","));
    let ndjson = records.iter().map(|r| format!("{r}\n")).collect::<String>();
    for (name, body, raw_data, rows) in
        [("x.ndjson", ndjson, true, cases.len()), ("x.json", log_file, false, 2 * cases.len())]
    {
        let dir = TempDir::new("redact-e2e");
        let input = dir.write(&format!("in/{name}"), body.as_bytes());
        let out = dir.path().join("out");
        let opts = trailship::pipeline::Options { out: out.clone(), raw_data, ..Default::default() };
        let s = run_with(opts, &[input]);
        assert_eq!(s.rows_total() as usize, rows, "{name}");
        let rows = all_rows(&out);
        let all = serde_json::to_string(&rows).unwrap();
        for (ty, _, secret) in &cases {
            assert!(!all.contains(secret.as_str()), "{name}: {ty}: {secret} reached the archive");
        }
        for row in &rows {
            let n = get(row, "trailship.redacted_count").and_then(|v| v.as_i64()).unwrap_or(0);
            let planted = get(row, "metadata.uid").and_then(|v| v.as_str()).is_some_and(|u| u.starts_with('e'));
            assert!(!planted || n >= 5, "{name}: each planted row redacts in 5+ places: {row}");
            assert!(planted || n == 0, "{name}: a clean row is untouched: {row}");
        }
        // Compressed bytes too (a secret could hide in a dictionary page).
        for f in parquet_files(&out) {
            let bytes = std::fs::read(&f).unwrap();
            for (ty, _, secret) in &cases {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{name}: {ty} in {}",
                    f.display()
                );
            }
        }
    }
}
