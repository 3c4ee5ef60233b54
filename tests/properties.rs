//! Property tests: whatever the input, no panic and every record accounted
//! for (`records == rows + dead letters`, and the archive agrees).

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trailship::pipeline::{self, Options};
use trailship::source::Input;

fn run_bytes(bytes: Vec<u8>) -> (u64, u64, u64) {
    let dir = TempDir::new("prop");
    let opts = Options { out: dir.path().to_path_buf(), ..Options::default() };
    let input = Input::Embedded { name: "case", bytes: Box::leak(bytes.into_boxed_slice()) };
    let s = pipeline::run(&opts, &[input]).expect("a run never fails on input content");
    assert_eq!(s.records_read, s.rows_total() + s.dead_total());
    // The archive holds exactly what the summary says.
    assert_eq!(all_rows(dir.path()).len() as u64, s.rows_total());
    assert_eq!(dead_letters(dir.path()).len() as u64, s.dead_total());
    (s.records_read, s.rows_total(), s.dead_total())
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, b).unwrap();
    e.finish().unwrap()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A CloudTrail-shaped record whose fields are sometimes of the wrong type,
/// missing, or odd values.
fn arb_cloudtrail() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        Just("ConsoleLogin"),
        Just("AssumeRole"),
        Just("CreateUser"),
        Just("AttachUserPolicy"),
        Just("GetObject"),
        Just("UpdateAccessKey"),
        Just("CheckMfa"),
        Just("Frobnicate")
    ];
    let source = prop_oneof![
        Just("signin.amazonaws.com"),
        Just("iam.amazonaws.com"),
        Just("s3.amazonaws.com"),
        Just("sts.amazonaws.com")
    ];
    let time = prop_oneof![
        Just("2024-02-29T23:59:59Z"),
        Just("2024-01-01T00:00:00.123+05:30"),
        Just("2000-00-00T00:00:00Z"),
        Just("yesterday")
    ];
    (name, source, time, prop::collection::vec((0usize..12, arb_json()), 0..6), any::<u8>())
        .prop_map(|(name, source, time, overrides, drop)| {
            let mut rec = json!({
                "eventVersion": "1.08", "eventName": name, "eventSource": source, "eventTime": time,
                "awsRegion": "../../etc", "recipientAccountId": "111122223333", "eventID": "e",
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/a", "accountId": "1",
                    "sessionContext": {"attributes": {"creationDate": "2024-01-01T00:00:00Z", "mfaAuthenticated": "true"}}},
                "requestParameters": {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/X", "status": "Inactive"},
                "responseElements": {"ConsoleLogin": "Success", "credentials": {"sessionToken": "tok", "expiration": "2024-01-01T01:00:00Z"}},
                "additionalEventData": {"MFAUsed": "Yes", "LoginTo": "https://console"},
                "resources": [{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}],
                "sourceIPAddress": "203.0.113.9",
            });
            let keys = ["eventName", "eventSource", "eventTime", "userIdentity", "requestParameters", "responseElements",
                "additionalEventData", "resources", "sourceIPAddress", "awsRegion", "userAgent", "readOnly"];
            let obj = rec.as_object_mut().unwrap();
            for (k, v) in overrides {
                obj.insert(keys[k].to_string(), v);
            }
            if drop % 5 == 0 {
                obj.remove(keys[(drop / 5) as usize % keys.len()]);
            }
            rec
        })
}

/// Puts `secret` somewhere inside `v`: a new member, an array element, or
/// inside an existing string, chosen by `path`.
fn plant(v: &mut Value, secret: &str, path: &[u8], depth: usize) {
    let choice = path.get(depth).copied().unwrap_or(0);
    match v {
        Value::Object(m) if !m.is_empty() && choice % 3 != 0 => {
            let k = m.keys().nth(choice as usize % m.len()).unwrap().clone();
            plant(m.get_mut(&k).unwrap(), secret, path, depth + 1);
        }
        Value::Object(m) => {
            m.insert(format!("field{choice}"), Value::from(format!("see {secret} here")));
        }
        Value::Array(a) if !a.is_empty() && choice % 3 != 0 => {
            let i = choice as usize % a.len();
            plant(&mut a[i], secret, path, depth + 1);
        }
        Value::Array(a) => a.push(Value::from(secret)),
        Value::String(s) => *s = format!("{s} {secret}\n"),
        other => *other = json!({"note": format!("{secret}")}),
    }
}

/// 96 cases a property in CI; `PROPTEST_CASES` asks for a longer soak.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        run_bytes(bytes);
    }

    #[test]
    fn arbitrary_json_lines(values in prop::collection::vec(arb_json(), 0..8)) {
        let body: String = values.iter().map(|v| v.to_string() + "\n").collect();
        let (records, _, _) = run_bytes(body.into_bytes());
        // Top-level arrays count their elements; everything else is one record.
        let expected: u64 = values.iter().map(|v| match v {
            Value::Array(a) if !a.is_empty() => a.len() as u64,
            _ => 1,
        }).sum();
        prop_assert_eq!(records, expected);
    }

    #[test]
    fn cloudtrail_shaped_records(recs in prop::collection::vec(arb_cloudtrail(), 1..10), envelope in any::<bool>()) {
        let body = if envelope {
            json!({"Records": recs}).to_string()
        } else {
            recs.iter().map(|r| r.to_string() + "\n").collect()
        };
        let (records, rows, _) = run_bytes(body.into_bytes());
        prop_assert_eq!(records, recs.len() as u64);
        // A record with valid required fields always becomes a row.
        let valid = recs.iter().filter(|r| {
            let s = |k: &str| r.get(k).and_then(|v| v.as_str());
            s("eventName").is_some() && s("eventSource").is_some()
                && matches!(s("eventTime"), Some(t) if t.starts_with("2024"))
        }).count() as u64;
        prop_assert_eq!(rows, valid);
    }

    /// A log read while it is being written, cut anywhere, any number of
    /// times: every record is read once, in all the runs together, and the
    /// archive holds what one run over the finished file makes of it.
    #[test]
    fn a_log_read_while_written_archives_each_record_once(
        recs in prop::collection::vec(arb_cloudtrail(), 1..8),
        cuts in prop::collection::vec(0.0f64..1.0, 0..4),
    ) {
        let body: Vec<u8> = recs.iter().flat_map(|r| (r.to_string() + "\n").into_bytes()).collect();
        let dir = TempDir::new("prop-growing");
        let log = dir.path().join("logs/audit.ndjson");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let run = |out: &str| {
            let opts = Options { out: dir.path().join(out), ..Options::default() };
            pipeline::run(&opts, &[Input::File(log.clone())]).expect("a run never fails on input content")
        };
        let mut ends: Vec<usize> = cuts.iter().map(|c| (c * body.len() as f64) as usize).collect();
        ends.sort();
        ends.push(body.len());
        let (mut records, mut rows, mut dead) = (0, 0, 0);
        for end in ends {
            std::fs::write(&log, &body[..end]).unwrap();
            let s = run("growing");
            prop_assert_eq!(s.inputs_changed, 0, "read on, never whole again: {:?}", s);
            (records, rows, dead) = (records + s.records_read, rows + s.rows_total(), dead + s.dead_total());
        }
        let once = run("once");
        prop_assert_eq!((records, rows, dead), (once.records_read, once.rows_total(), once.dead_total()));
        prop_assert_eq!(records, recs.len() as u64);
        prop_assert_eq!(all_rows(&dir.path().join("growing")).len() as u64, rows);
    }

    /// A gzip log a writer appends members to (as CloudTrail has, and as
    /// `gzip >>` does), read while the next member is half written: every
    /// record is read once over all runs, and nothing is counted changed.
    #[test]
    fn a_gzip_log_read_while_members_are_appended_archives_each_record_once(
        recs in prop::collection::vec(arb_cloudtrail(), 1..8),
        members in prop::collection::vec(0.0f64..1.0, 0..3),
        half in 0.0f64..1.0,
    ) {
        let lines: Vec<Vec<u8>> = recs.iter().map(|r| (r.to_string() + "\n").into_bytes()).collect();
        let mut cuts: Vec<usize> = members.iter().map(|m| (m * lines.len() as f64) as usize).collect();
        cuts.push(lines.len());
        cuts.sort();
        cuts.dedup();
        let dir = TempDir::new("prop-gz-growing");
        let log = dir.path().join("logs/audit.json.gz");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let run = || {
            let opts = Options { out: dir.path().join("archive"), ..Options::default() };
            pipeline::run(&opts, &[Input::File(log.clone())]).expect("a run never fails on input content")
        };
        let (mut file, mut from, mut records) = (Vec::new(), 0, 0);
        for to in cuts {
            let member = gzip(&lines[from..to].concat());
            // The next member, half written: left whole, or the part before it read.
            let mut partial = file.clone();
            partial.extend_from_slice(&member[..(half * member.len() as f64) as usize]);
            std::fs::write(&log, &partial).unwrap();
            let s = run();
            prop_assert_eq!(s.inputs_changed, 0, "{:?}", s);
            records += s.records_read;
            file.extend(member);
            std::fs::write(&log, &file).unwrap();
            let s = run();
            prop_assert_eq!(s.inputs_changed, 0, "{:?}", s);
            records += s.records_read;
            from = to;
        }
        prop_assert_eq!(records, recs.len() as u64);
    }

    /// Any supported secret, planted anywhere in a record, is absent from
    /// every column of the archive (raw_data included) and from dead letters.
    #[test]
    fn planted_secrets_are_never_in_clear(
        rec in arb_cloudtrail(),
        which in 0usize..1000,
        path in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let cases = common::planted::planted();
        // The secret with the structure that makes it one (`scheme://user:…@`, `Password=…;`).
        let (ty, text, secret) = &cases[which % cases.len()];
        let mut rec = rec;
        plant(&mut rec, text, &path, 0);
        let dir = TempDir::new("prop-plant");
        let opts = Options { out: dir.path().to_path_buf(), raw_data: true, ..Options::default() };
        let input = Input::Embedded { name: "p", bytes: Box::leak(rec.to_string().into_bytes().into_boxed_slice()) };
        let s = pipeline::run(&opts, &[input]).unwrap();
        prop_assert_eq!(s.records_read, 1);
        let rows = serde_json::to_string(&all_rows(dir.path())).unwrap();
        let dead = serde_json::to_string(&dead_letters(dir.path())).unwrap();
        prop_assert!(!rows.contains(secret.as_str()), "{} survived in a row: {}", ty, rows);
        prop_assert!(!dead.contains(secret.as_str()), "{} survived in a dead letter: {}", ty, dead);
    }

    /// Secrets CloudTrail itself returns never reach the archive in clear,
    /// wherever the record puts them.
    #[test]
    fn session_tokens_never_in_clear(rec in arb_cloudtrail(), token in "[A-Za-z0-9/+]{24,40}") {
        let mut rec = rec;
        let obj = rec.as_object_mut().unwrap();
        obj.insert("eventName".into(), json!("AssumeRole"));
        obj.insert("eventSource".into(), json!("sts.amazonaws.com"));
        obj.insert("eventTime".into(), json!("2024-01-01T00:00:00Z"));
        obj.insert("responseElements".into(), json!({"credentials": {"sessionToken": token, "secretAccessKey": token}}));
        let mut extra = Map::new();
        extra.insert("sessionToken".into(), json!(token));
        obj.insert("serviceEventDetails".into(), Value::Object(extra));
        let dir = TempDir::new("prop-secret");
        let opts = Options { out: dir.path().to_path_buf(), ..Options::default() };
        let input = Input::Embedded { name: "s", bytes: Box::leak(rec.to_string().into_bytes().into_boxed_slice()) };
        let s = pipeline::run(&opts, &[input]).unwrap();
        prop_assert_eq!(s.rows_total(), 1);
        for f in parquet_files(dir.path()) {
            let bytes = std::fs::read(f).unwrap();
            // zstd could hide it, so check the decoded rows too.
            prop_assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
        }
        let rows = all_rows(dir.path());
        prop_assert!(!rows[0].to_string().contains(&token));
    }
}
