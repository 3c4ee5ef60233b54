//! End-to-end tests that drive the real binary.

mod common;

use std::io::Write;
use std::process::{Command, Output};

use common::*;

fn trailship(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailship")).args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn embedded_default_runs_and_is_idempotent() {
    let dir = TempDir::new("cli-embedded");
    let out = dir.path().join("archive");
    let o = trailship(&["normalize", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("read 43 records from 3 inputs (embedded samples)"), "{text}");
    assert!(text.contains("rows written: 41"), "{text}");
    assert!(text.contains("unsupported_event_type            2"), "{text}");
    assert!(text.contains(&format!("archive: {}", out.display())), "{text}");
    assert!(text.contains("try: duckdb"), "{text}");
    let rows = all_rows(&out);
    assert_eq!(rows.len(), 41);
    assert_eq!(rows.iter().filter(|r| r["class_uid"] == 3002).count(), 14);
    assert_eq!(dead_letters(&out).len(), 2);
    let objects = parquet_files(&out).len();

    // A second run finds every input in the ledger and writes nothing twice.
    let o = trailship(&["normalize", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("read 0 records from 0 inputs (embedded samples) (3 skipped"), "{}", stdout(&o));
    assert_eq!(all_rows(&out).len(), 41);
    assert_eq!(parquet_files(&out).len(), objects);
    assert_eq!(dead_letters(&out).len(), 2);
}

#[test]
fn partitions_follow_the_security_lake_layout() {
    let dir = TempDir::new("cli-layout");
    let out = dir.path().join("a");
    let input = fixture("cloudtrail/aws-samples-security-lake/api_activity/UpdateTrail.json");
    let o = trailship(&["normalize", "--out", out.to_str().unwrap(), input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = parquet_files(&out);
    assert_eq!(files.len(), 1);
    let rel = files[0].strip_prefix(&out).unwrap().to_string_lossy().to_string();
    assert!(rel.starts_with("api_activity/region=us-east-2/accountId=111122223333/eventDay=20160714/part-"), "{rel}");
    assert!(rel.ends_with(".zstd.parquet"));
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = walkdir::WalkDir::new(out.join("_trailship/tmp"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let dir = TempDir::new("cli-bad");
    let out = dir.path().join("a");
    let missing = dir.path().join("nope.json");
    let o = trailship(&["normalize", "--out", out.to_str().unwrap(), missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope.json") && stderr(&o).contains("check the input paths"), "{}", stderr(&o));

    let o = trailship(&["normalize", "--out", out.to_str().unwrap(), "--max-depth", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid setting"), "{}", stderr(&o));
    // A limit below any record would take a log file for one record.
    let o = trailship(&["normalize", "--out", out.to_str().unwrap(), "--max-record-bytes", "12"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("max_record_bytes must be at least 1024"), "{}", stderr(&o));
    assert!(!out.join("_trailship").exists(), "refused before the archive is touched");

    // zstd's negative levels too: the help promises 1-22.
    for level in ["99", "0", "-5"] {
        let arg = format!("--zstd-level={level}");
        let o = trailship(&["normalize", &arg, "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "clap rejects {level}");
        assert!(stderr(&o).contains("1..=22"), "{}", stderr(&o));
    }

    let o = trailship(&["normalize", "--max-depth", "many"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects it");

    let o = trailship(&["--log", "[[[", "normalize"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid --log filter"));
}

#[test]
fn unwritable_output_is_fatal_with_a_message() {
    let dir = TempDir::new("cli-unwritable");
    let file = dir.write("not-a-dir", b"x");
    let o = trailship(&["normalize", "--out", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cannot write the archive") && e.contains("not-a-dir"), "{e}");
}

/// A run that found another run's temporary objects would take them for a
/// crash's leftovers and delete them under it. A held archive is refused
/// before anything in it is touched.
#[test]
fn an_archive_another_run_holds_is_refused_untouched() {
    let dir = TempDir::new("cli-held");
    let out = dir.path().join("archive");
    // What a running run has written and not yet committed.
    let running = dir.write("archive/_trailship/tmp/running/part-00000.zstd.parquet", b"PAR1");
    let held =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(out.join("_trailship/lock")).unwrap();
    held.try_lock().unwrap();
    std::fs::write(out.join("_trailship/lock"), "pid 4242\n").unwrap();
    let o = trailship(&["normalize", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.matches("being written by another run (pid 4242)").count(), 1, "said once: {e}");
    assert!(running.exists(), "the other run's objects are left alone");
    assert!(parquet_files(&out).is_empty());
    // Once it is gone, its leftovers are cleared and the run goes ahead.
    drop(held);
    let o = trailship(&["normalize", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!running.exists());
    assert_eq!(all_rows(&out).len(), 41);
}

/// An archive kept inside the directory it archives: a later run must not
/// take the archive's own objects, dead letters and ledger in as input.
#[test]
fn an_archive_inside_its_input_directory_is_not_read_back() {
    let dir = TempDir::new("cli-nested");
    let logs = dir.path().join("logs");
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/cloudtrail");
    for e in walkdir::WalkDir::new(&samples).into_iter().map(Result::unwrap).filter(|e| e.file_type().is_file()) {
        let to = logs.join(e.path().strip_prefix(&samples).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(e.path(), to).unwrap();
    }
    let out = logs.join("archive");
    let (out_s, logs_s) = (out.to_str().unwrap(), logs.to_str().unwrap());
    let o = trailship(&["normalize", "--out", out_s, logs_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("read 43 records from 3 inputs"), "{}", stdout(&o));
    let o = trailship(&["normalize", "--out", out_s, logs_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("read 0 records from 0 inputs (3 skipped"), "{}", stdout(&o));
    // Walked from the archive's root, what trailship wrote there is skipped too.
    let o = trailship(&["normalize", "--out", out_s, out_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("read 0 records from 0 inputs (0 skipped"), "{}", stdout(&o));
    assert_eq!(all_rows(&out).len(), 41);
    assert_eq!(dead_letters(&out).len(), 2);
    // Named, a path in what trailship wrote is refused.
    let o = trailship(&["normalize", "--out", out_s, out.join("_dead_letter").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is in what trailship wrote to the archive"), "{}", stderr(&o));
}

/// An input that changed since it was archived: one that grew is read on
/// from where the last run stopped, one rewritten is read whole again, one
/// caught mid-line is read up to that line; and the run says which.
#[test]
fn a_changed_input_is_read_again_and_said_to_be() {
    let dir = TempDir::new("cli-changed");
    let out = dir.path().join("archive");
    let line = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/cloudtrail/eventbridge-createuser.json"),
    )
    .unwrap();
    let one: serde_json::Value = serde_json::from_str(&line).unwrap();
    let line = format!("{}\n", serde_json::to_string(&one).unwrap());
    let log = dir.write("logs/audit.ndjson", line.as_bytes());
    let run = || trailship(&["normalize", "--out", out.to_str().unwrap(), log.to_str().unwrap()]);
    let append = |b: &[u8]| std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b).unwrap();
    let o = run();
    assert!(o.status.success() && !stdout(&o).contains("changed since archived"), "{}", stdout(&o));
    append(line.as_bytes());
    let o = run();
    assert!(stdout(&o).contains("grown since archived, read from where they stopped: 1"), "{}", stdout(&o));
    assert_eq!(all_rows(&out).len(), 2);
    // Rewritten in place: read whole, so the line it kept is archived twice.
    let other = line.replacen("CreateUser", "DeleteUser", 1);
    std::fs::write(&log, format!("{other}{line}{line}")).unwrap();
    let o = run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("input changed since it was archived"), "{}", stderr(&o));
    assert!(stdout(&o).contains("changed since archived, read whole again: 1"), "{}", stdout(&o));
    assert_eq!(all_rows(&out).len(), 5);
    append(&line.as_bytes()[..line.len() / 2]);
    let o = run();
    assert!(stderr(&o).contains("input ends inside a record still being written"), "{}", stderr(&o));
    assert!(stdout(&o).contains("ending inside a record still being written, read up to it: 1"), "{}", stdout(&o));
    assert!(stdout(&o).contains("dead letters: 0"), "{}", stdout(&o));
    append(&line.as_bytes()[line.len() / 2..]);
    let o = run();
    assert!(stdout(&o).contains("rows written: 1"), "{}", stdout(&o));
    assert_eq!(all_rows(&out).len(), 6);
    let o = run();
    assert!(stdout(&o).contains("(1 skipped"), "unchanged since: {}", stdout(&o));
}

#[test]
fn json_logs() {
    let dir = TempDir::new("cli-logs");
    let out = dir.path().join("a");
    let o = trailship(&["--log-format", "json", "--log", "debug", "normalize", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    let first = stderr(&o).lines().next().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&first).expect("JSON log line");
    assert!(v.get("level").is_some() && v.get("fields").is_some(), "{first}");
}

#[test]
fn raw_data_is_off_by_default_and_on_when_asked() {
    let dir = TempDir::new("cli-raw");
    let input = fixture("cloudtrail/aws-samples-security-lake/api_activity/UpdateTrail.json");
    let off = dir.path().join("off");
    let on = dir.path().join("on");
    assert!(trailship(&["normalize", "--out", off.to_str().unwrap(), input.to_str().unwrap()]).status.success());
    assert!(
        trailship(&["normalize", "--raw-data", "--out", on.to_str().unwrap(), input.to_str().unwrap()])
            .status
            .success()
    );
    assert!(get(&all_rows(&off)[0], "raw_data").is_none());
    let raw = get(&all_rows(&on)[0], "raw_data").unwrap().as_str().unwrap().to_string();
    let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&raw).unwrap(), original);
}

#[test]
fn config_file_drives_redaction_and_rejects_typos() {
    let dir = TempDir::new("cli-config");
    let out = dir.path().join("a");
    let bad = dir.write("bad.toml", b"[redaction]\nenabeld = false\n");
    let o = trailship(&["normalize", "--config", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("enabeld") && stderr(&o).contains("bad.toml"), "{}", stderr(&o));

    let short_key = dir.write("key.toml", b"[redaction]\nkey = \"short\"\n");
    let o = trailship(&["normalize", "--config", short_key.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 32"), "{}", stderr(&o));

    let cfg = dir.write(
        "ok.toml",
        b"[redaction]\nfield_names = [\"x-internal-auth\"]\n[[redaction.patterns]]\nname = \"acme_token\"\nregex = \"acme_[a-z0-9]{12}\"\n",
    );
    let rec = r#"{"eventVersion":"1.08","eventTime":"2024-01-02T03:04:05Z","eventSource":"ssm.amazonaws.com","eventName":"SendCommand","awsRegion":"eu-west-1","recipientAccountId":"111122223333","eventID":"c1","requestParameters":{"x-internal-auth":"opaque-value-1","comment":"rotate acme_0123456789ab today"}}"#;
    let input = dir.write("in.json", rec.as_bytes());
    let o = trailship(&[
        "normalize",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = all_rows(&out);
    let data = get(&rows[0], "api.request.data").unwrap().as_str().unwrap().to_string();
    assert!(!data.contains("opaque-value-1") && !data.contains("acme_0123456789ab"), "{data}");
    assert!(data.contains("[REDACTED:custom_field:") && data.contains("[REDACTED:acme_token:"), "{data}");
    assert_eq!(get(&rows[0], "trailship.redacted_count").unwrap(), 2);
    assert!(stdout(&o).contains("redactions (values, by type): 2"), "{}", stdout(&o));
}

#[test]
fn validate_config_checks_the_deploy_example_with_its_environment() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/trailship.toml");
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_trailship"))
            .args(["validate-config", cfg])
            .env_remove("KAFKA_BROKERS")
            .env_remove("ARCHIVE_BUCKET")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let ok = run(&[("KAFKA_BROKERS", "k1:9092,k2:9092"), ("ARCHIVE_BUCKET", "log-archive")]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("group trailship-archive on k1:9092,k2:9092, 3 topic(s), archive s3://log-archive/ocsf"),
        "{}",
        stdout(&ok)
    );
    // The SIEM feed's section, as commented there, is valid too.
    let text = std::fs::read_to_string(cfg).unwrap();
    let lake = text
        .replace("# [security_lake]", "[security_lake]")
        .replace("# location = \"s3://aws", "location = \"s3://aws");
    let lake = lake.replace("# sources = ", "sources = ").replace("# extension = false", "extension = false");
    let lake_cfg = std::env::temp_dir().join(format!("trailship-lakecfg-{}.toml", std::process::id()));
    std::fs::write(&lake_cfg, lake).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["validate-config", lake_cfg.to_str().unwrap()])
        .envs([("KAFKA_BROKERS", "k1:9092"), ("ARCHIVE_BUCKET", "feed-state")])
        .output()
        .unwrap();
    std::fs::remove_file(&lake_cfg).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Parquet to the Security Lake at s3://aws-security-data-lake-us-east-1-EXAMPLE"),
        "{}",
        stdout(&o)
    );
    let missing = run(&[("ARCHIVE_BUCKET", "log-archive")]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("KAFKA_BROKERS is not set"), "{}", stderr(&missing));
    let dir = std::env::temp_dir().join(format!("trailship-badcfg-{}", std::process::id()));
    std::fs::write(&dir, "[kafka]\nbrokers = \"b\"\ntopics = []\n").unwrap();
    let bad = trailship(&["validate-config", dir.to_str().unwrap()]);
    std::fs::remove_file(&dir).unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("at least one [[kafka.topics]]"), "{}", stderr(&bad));
}

#[test]
fn run_without_kafka_archives_files_into_the_configured_directory() {
    let dir = std::env::temp_dir().join(format!("trailship-run-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("archive");
    let cfg = dir.join("t.toml");
    std::fs::write(&cfg, format!("[archive]\nlocation = \"{}\"\n", archive.display())).unwrap();
    let out = trailship(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rows"), "{}", stdout(&out));
    let parquet = walk(&archive).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    assert!(parquet > 0, "no objects in {}", archive.display());
    std::fs::write(&cfg, "[archive]\nlocation = \"s3://b/p\"\n").unwrap();
    let s3 = trailship(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!s3.status.success());
    assert!(stderr(&s3).contains("writes a local archive"), "{}", stderr(&s3));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
