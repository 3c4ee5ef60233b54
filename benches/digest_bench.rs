//! `trailship validate-digests` against `aws cloudtrail validate-logs` on the
//! same trail, in the same run, over a real S3 API server (moto) and a
//! local CloudTrail API for ListPublicKeys. Run by `benches/validate-digests.sh`,
//! which installs and starts both servers.
//!
//! Usage: digest-bench S3_ENDPOINT TRAILSHIP AWS HOURS LOGS_PER_HOUR RECORDS_PER_LOG

#[path = "../tests/common/cloudtrail_api.rs"]
#[allow(dead_code)]
mod cloudtrail_api;
#[path = "../tests/common/digests.rs"]
#[allow(dead_code)]
mod digests;

use std::process::Command;
use std::time::Instant;

use digests::{ARN, BUCKET, HOUR, Hour, T0, build_with, iso, upload_to};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: digest-bench S3_ENDPOINT TRAILSHIP AWS HOURS LOGS_PER_HOUR RECORDS_PER_LOG");
        std::process::exit(2);
    }
    let (endpoint, trailship, aws) = (&a[1], &a[2], &a[3]);
    let n = |i: usize| a[i].parse::<usize>().expect("a number");
    let (hours, logs, records) = (n(4), n(5), n(6));

    let dir = std::env::temp_dir().join(format!("trailship-digest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let chain = build_with(&dir, &vec![Hour::logs(logs); hours], records);
    let files: Vec<_> = chain.logs.iter().flatten().collect();
    let (mut gz, mut json) = (0u64, 0u64);
    for f in &files {
        let bytes = std::fs::read(chain.path(f)).unwrap();
        gz += bytes.len() as u64;
        json += digests::gunzip(&bytes).len() as u64;
    }
    let s3 = trailship::integrity::s3::S3Store::new(Some(endpoint), Some("us-east-1")).unwrap();
    upload_to(&s3, BUCKET, "", &dir.join(BUCKET));
    let api = cloudtrail_api::start(vec![0]);
    println!(
        "trail: {hours} hourly digests, {} log files, {} events, {:.1} MB JSON ({:.1} MB gzip)",
        files.len(),
        files.len() * records,
        json as f64 / 1e6,
        gz as f64 / 1e6
    );
    let (start, end) = (iso(T0), iso(T0 + hours as i64 * HOUR - 1000));

    let trailship_run = |concurrency: &str| {
        let mut c = Command::new(trailship);
        c.args(["validate-digests", "--trail-arn", ARN, "--s3-bucket", BUCKET, "--start-time", &start])
            .args(["--end-time", &end, "--endpoint-url", endpoint, "--cloudtrail-endpoint-url", &api.url])
            .args(["--concurrency", concurrency]);
        c
    };
    let aws_run = || {
        let mut c = Command::new(aws);
        c.args(["cloudtrail", "validate-logs", "--trail-arn", ARN, "--s3-bucket", BUCKET])
            .args(["--start-time", &start, "--end-time", &end, "--endpoint-url", &api.url])
            .env("AWS_ENDPOINT_URL_S3", endpoint);
        c
    };
    // (name, trailship's --concurrency; None: the AWS CLI)
    let contenders = [
        ("trailship validate-digests --concurrency 16", Some("16")),
        ("trailship validate-digests --concurrency 1", Some("1")),
        ("aws cloudtrail validate-logs (aws-cli v1)", None),
    ];
    let mut best = vec![(f64::MAX, 0.0); contenders.len()];
    for round in 0..3 {
        for (i, &(name, concurrency)) in contenders.iter().enumerate() {
            // CPU time of the validator alone (the S3 server is another process).
            let c = concurrency.map_or_else(aws_run, trailship_run);
            let mut timed = Command::new("/usr/bin/time");
            timed.args(["-f", "cpu-seconds %U %S", "--"]).arg(c.get_program()).args(c.get_args());
            for (k, v) in c.get_envs() {
                if let Some(v) = v {
                    timed.env(k, v);
                }
            }
            let t = Instant::now();
            let out = timed.output().expect("runs (needs /usr/bin/time)");
            let secs = t.elapsed().as_secs_f64();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let cpu: f64 = stderr
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("cpu-seconds "))
                .map(|l| l.split_whitespace().filter_map(|x| x.parse::<f64>().ok()).sum())
                .unwrap_or(f64::NAN);
            let text = String::from_utf8_lossy(&out.stdout);
            let ok = text.contains(&format!("{hours}/{hours} digest files valid"))
                && text.contains(&format!("{0}/{0} log files valid", files.len()));
            assert!(ok && out.status.success(), "{name} did not validate everything:\n{text}\n{stderr}");
            eprintln!("round {round}: {name}: {secs:.2}s wall, {cpu:.2}s CPU");
            if secs < best[i].0 {
                best[i] = (secs, cpu);
            }
        }
    }
    println!(
        "\n| validator | wall, best of 3 | log files/s | MB/s of JSON | vs aws-cli (wall) | validator CPU | MB/s per CPU-second | vs aws-cli (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let (base, base_cpu) = *best.last().unwrap();
    for ((name, _), (secs, cpu)) in contenders.iter().zip(&best) {
        println!(
            "| {name} | {secs:.2} s | {:.0} | {:.1} | {:.1}x | {cpu:.2} s | {:.0} | {:.1}x |",
            files.len() as f64 / secs,
            json as f64 / 1e6 / secs,
            base / secs,
            json as f64 / 1e6 / cpu,
            base_cpu / cpu,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
