//! kill -9 the real binary at several points of a run, restart it each time,
//! and check that every event is in exactly one row: no loss, no duplicates.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const FILES: usize = 24;
const PER_FILE: usize = 2500;

fn corpus(dir: &TempDir) -> std::path::PathBuf {
    let input = dir.path().join("in");
    for f in 0..FILES {
        let mut body = Vec::new();
        body.extend_from_slice(b"{\"Records\":[");
        for r in 0..PER_FILE {
            if r > 0 {
                body.push(b',');
            }
            // Spread rows over partitions so many objects are open at once.
            let _ = write!(
                body,
                r#"{{"eventVersion":"1.08","eventTime":"2024-01-{:02}T03:04:05Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-{}","recipientAccountId":"11112222333{}","eventID":"f{f:02}-r{r:05}","requestParameters":{{"filterSet":{{"items":[{{"name":"tag:Name","valueSet":{{"items":[{{"value":"web-{r}"}}]}}}}]}}}},"userAgent":"aws-cli/2.15.0 Python/3.11.6 Linux/6.1"}}"#,
                1 + r % 3,
                1 + f % 2,
                r % 2
            );
        }
        body.extend_from_slice(b"]}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        dir.write(&format!("in/f{f:02}.json.gz"), &gz.finish().unwrap());
    }
    input
}

/// Runs `normalize` with `threads` pipelines (more than the machine's cores
/// is fine: what matters is that writers interleave their checkpoints).
fn start(out: &std::path::Path, input: &std::path::Path, threads: usize) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["normalize", "--checkpoint-bytes", "200000", "--row-group-rows", "1000", "--threads"])
        .arg(threads.to_string())
        .arg("--out")
        .arg(out)
        .arg(input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_nine_at_random_points_then_restart_loses_and_duplicates_nothing() {
    let dir = TempDir::new("crash");
    let input = corpus(&dir);
    let out = dir.path().join("out");

    // Deterministic "random" kill points, from early to late in a run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    for i in 0..4 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = 150 + (seed >> 33) % 900;
        // One pipeline, then several: a restart need not match the crashed run.
        let mut child = start(&out, &input, 1 + 2 * (i % 2));
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    // The kills landed mid-run: some checkpoints committed, not all.
    let partial = rows(&out, "api_activity").len();
    assert!(partial < FILES * PER_FILE, "a killed run cannot have finished everything ({partial})");
    let status = start(&out, &input, 3).wait().unwrap();
    assert!(status.success());
    assert!(kills >= 1, "at least one run must have been killed mid-way");

    let mut seen: HashMap<String, u32> = HashMap::new();
    for row in rows(&out, "api_activity") {
        *seen.entry(get(&row, "metadata.uid").unwrap().as_str().unwrap().to_string()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated rows: {dups:?}");
    assert_eq!(seen.len(), FILES * PER_FILE, "every event is archived");
    assert!(dead_letters(&out).is_empty());
    // Interrupted runs leave no temporary files behind once a run completes.
    assert!(!out.join("_trailship/journal.json").exists());
}

#[test]
fn threads_archive_the_same_rows_as_one_pipeline_and_resume_from_each_others_ledger() {
    let dir = TempDir::new("threads");
    let input = corpus(&dir);
    let uids = |out: &std::path::Path| {
        let mut v: Vec<String> = rows(out, "api_activity")
            .iter()
            .map(|r| get(r, "metadata.uid").unwrap().as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let one = dir.path().join("one");
    let s1 =
        run_with(trailship::pipeline::Options { out: one.clone(), ..Default::default() }, std::slice::from_ref(&input));
    let four = dir.path().join("four");
    let opts = trailship::pipeline::Options { out: four.clone(), threads: 4, ..Default::default() };
    let s4 = run_with(opts.clone(), std::slice::from_ref(&input));
    assert_eq!(s4.inputs_processed, FILES as u64);
    assert_eq!(s4.rows, s1.rows);
    assert_eq!(uids(&four), uids(&one), "the same rows, each once");
    assert_eq!(uids(&four).len(), FILES * PER_FILE);
    // Objects of different threads never share a name.
    let keys: std::collections::HashSet<_> = s4.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(keys.len(), s4.objects.len());
    assert_eq!(keys.len(), parquet_files(&four).len());
    // Every input went to the one ledger: a rerun skips them all.
    let again = run_with(opts, std::slice::from_ref(&input));
    assert_eq!((again.inputs_processed, again.inputs_skipped, again.records_read), (0, FILES as u64, 0));

    // Footers over their bound close objects early: with room for none,
    // each object is closed after the write that gave it its first row
    // groups, so partitions are split over more objects, and still every
    // row is archived once.
    let run_bounded = |name: &str, max_footer_bytes: usize| {
        let out = dir.path().join(name);
        let mut opts =
            trailship::pipeline::Options { out: out.clone(), threads: 2, max_footer_bytes, ..Default::default() };
        opts.encode.row_group_rows = PER_FILE / 5;
        let s = run_with(opts, std::slice::from_ref(&input));
        assert_eq!(uids(&out), uids(&one), "the same rows, each once");
        assert_eq!(parquet_files(&out).len(), s.objects.len());
        s.objects.len()
    };
    let (unbounded, bounded) = (run_bounded("unbounded", usize::MAX), run_bounded("bounded", 1));
    assert!(bounded > unbounded, "{bounded} objects against {unbounded}");
}
