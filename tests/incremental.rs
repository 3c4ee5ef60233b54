//! Inputs that change between runs: a log that grew is read from where the
//! last run stopped, a rotated one is known by its first bytes, and what
//! cannot be read on from is read whole again, and counted as such.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use trailship::pipeline::{Options, Summary};

/// CloudTrail records `from..to` as NDJSON lines, each with its own event ID
/// (and enough text that a dozen pass the 4 KiB that identify a file).
fn lines(from: usize, to: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in from..to {
        let rec = serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "principalId": format!("AIDA{i:016}"),
                             "arn": format!("arn:aws:iam::123456789012:user/user-{i}"), "accountId": "123456789012"},
            "eventTime": format!("2026-11-20T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateUser",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "192.0.2.10",
            "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023",
            "requestParameters": {"userName": format!("user-{i}"), "path": "/engineering/"},
            "requestID": format!("{i:08}-0000-4000-8000-000000000000"),
            "eventID": format!("event-{i:06}"),
            "eventType": "AwsApiCall",
            "recipientAccountId": "123456789012",
        });
        serde_json::to_writer(&mut out, &rec).unwrap();
        out.push(b'\n');
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Each event ID's rows, and each row's (file, index).
fn by_event(out: &Path) -> BTreeMap<String, Vec<(String, i64)>> {
    let mut m: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for r in all_rows(out) {
        let uid = get(&r, "metadata.uid").and_then(|v| v.as_str()).unwrap().to_owned();
        let file = get(&r, "trailship.source_file").and_then(|v| v.as_str()).unwrap().to_owned();
        let index = get(&r, "trailship.source_index").and_then(|v| v.as_i64()).unwrap();
        m.entry(uid).or_default().push((file, index));
    }
    m
}

fn run_on(out: &Path, inputs: &[PathBuf]) -> Summary {
    run(out, inputs)
}

#[test]
fn a_grown_file_is_read_from_where_the_last_run_stopped() {
    let dir = TempDir::new("grown");
    let out = dir.path().join("archive");
    let log = dir.write("logs/audit.ndjson", &lines(0, 20));
    assert!(std::fs::metadata(&log).unwrap().len() > 4096);
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.rows_total()), (20, 20));
    append(&log, &lines(20, 25));
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_resumed, s.inputs_changed), (5, 1, 0));
    let rows = by_event(&out);
    assert_eq!(rows.len(), 25);
    assert!(rows.values().all(|r| r.len() == 1), "each event once");
    // Numbered on: the grown part's first record is the file's 21st.
    assert_eq!(rows["event-000020"][0].1, 20);
    assert_eq!(rows["event-000024"][0].1, 24);
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_skipped), (0, 1));
}

/// Log rotation by rename: the old file under a new name (grown a little
/// before it was rotated), and a new file under the old name.
#[test]
fn a_rotated_file_is_known_by_its_first_bytes() {
    let dir = TempDir::new("rotated");
    let out = dir.path().join("archive");
    let logs = dir.path().join("logs");
    let live = dir.write("logs/audit.log", &lines(0, 20));
    run_on(&out, std::slice::from_ref(&logs));
    append(&live, &lines(20, 23));
    std::fs::rename(&live, logs.join("audit-1.log")).unwrap();
    dir.write("logs/audit.log", &lines(100, 120));
    let s = run_on(&out, std::slice::from_ref(&logs));
    assert_eq!((s.records_read, s.inputs_resumed, s.inputs_changed), (3 + 20, 1, 0), "{s:?}");
    let rows = by_event(&out);
    assert_eq!(rows.len(), 43);
    assert!(rows.values().all(|r| r.len() == 1), "each event once");
    // Unchanged since, the rotated file is archived; so is the new one.
    let s = run_on(&out, std::slice::from_ref(&logs));
    assert_eq!((s.records_read, s.inputs_skipped), (0, 2));
}

/// A run holds whole only its own inputs' ledger lines; a file archived
/// under a path the run does not read is still known by its first bytes.
#[test]
fn a_file_moved_or_copied_out_of_the_archived_directory_is_known_by_its_first_bytes() {
    let dir = TempDir::new("moved");
    let out = dir.path().join("archive");
    let log = dir.write("logs/audit.log", &lines(0, 20));
    let gz = dir.write("logs/trail.json.gz", &gzip(&lines(200, 400)));
    assert!(std::fs::metadata(&gz).unwrap().len() > 4096, "long enough to be known by its first bytes");
    let s = run_on(&out, &[dir.path().join("logs")]);
    assert_eq!(s.rows_total(), 220);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(&log, elsewhere.join("audit-1.log")).unwrap();
    append(&elsewhere.join("audit-1.log"), &lines(20, 24));
    std::fs::copy(&gz, elsewhere.join("copy.json.gz")).unwrap();
    let s = run_on(&out, std::slice::from_ref(&elsewhere));
    assert_eq!((s.records_read, s.inputs_resumed, s.inputs_changed), (4, 1, 0), "{s:?}");
    let rows = by_event(&out);
    assert_eq!(rows.len(), 224);
    assert!(rows.values().all(|r| r.len() == 1), "each event once");
}

/// gzip may have members appended (CloudTrail has delivered such files):
/// the next run reads the new member.
#[test]
fn a_gzip_file_grown_by_a_member_is_read_from_that_member() {
    let dir = TempDir::new("gz-member");
    let out = dir.path().join("archive");
    let log = dir.write("logs/events.json.gz", &gzip(&lines(0, 600)));
    assert!(std::fs::metadata(&log).unwrap().len() > 4096);
    assert_eq!(run_on(&out, std::slice::from_ref(&log)).rows_total(), 600);
    append(&log, &gzip(&lines(600, 604)));
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_resumed), (4, 1));
    let rows = by_event(&out);
    assert_eq!(rows.len(), 604);
    assert!(rows.values().all(|r| r.len() == 1));
    // Renamed as it is, it is archived already.
    let moved = dir.path().join("logs/events-1.json.gz");
    std::fs::rename(&log, &moved).unwrap();
    let s = run_on(&out, &[moved]);
    assert_eq!((s.records_read, s.inputs_skipped), (0, 1));
}

/// A file rewritten past its first bytes (an export regenerated, one
/// record replaced by another of the same length, then more appended) is
/// not read on from where its last reading ended, though its first bytes
/// are the same and a line ends there: the bytes before that end changed,
/// so it is read whole, and the record that replaced the other is not lost.
#[test]
fn a_file_changed_before_where_it_was_read_to_is_read_whole() {
    let dir = TempDir::new("rewritten");
    let out = dir.path().join("archive");
    let log = dir.write("logs/export.ndjson", &lines(0, 20));
    run_on(&out, std::slice::from_ref(&log));
    let mut text = lines(0, 15);
    text.extend(lines(95, 96));
    text.extend(lines(16, 30));
    assert_eq!(text[..lines(0, 20).len()].len(), lines(0, 20).len());
    assert_eq!(text[lines(0, 20).len() - 1], b'\n', "a line still ends where the last reading did");
    std::fs::write(&log, text).unwrap();
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_resumed, s.inputs_changed), (30, 0, 1), "{s:?}");
    assert_eq!(by_event(&out)["event-000095"].len(), 1, "the replacing record is archived");
}

/// A log's writer caught mid-line: the run reads up to the line it is
/// writing and leaves that for a later run (as Vector's and Fluent Bit's file
/// sources do), rather than dead-lettering half a record and then, once the
/// line is whole, reading the file again.
#[test]
fn a_line_still_being_written_is_left_for_a_run_after_it_is_whole() {
    let dir = TempDir::new("unfinished");
    let out = dir.path().join("archive");
    let mut text = lines(0, 20);
    let cut = lines(20, 21);
    text.extend_from_slice(&cut[..cut.len() / 2]);
    let log = dir.write("logs/audit.ndjson", &text);
    // A file of nothing but the record being written: nothing read, nothing in the ledger.
    let first = dir.write("logs/first.ndjson", &cut[..cut.len() / 2]);
    let s = run_on(&out, &[log.clone(), first.clone()]);
    assert_eq!((s.records_read, s.rows_total(), s.dead_total(), s.inputs_unfinished), (20, 20, 0, 2), "{s:?}");
    append(&first, &cut[cut.len() / 2..]);
    let s = run_on(&out, std::slice::from_ref(&first));
    assert_eq!((s.records_read, s.inputs_changed, s.inputs_unfinished), (1, 0, 0), "new, not changed: {s:?}");
    std::fs::remove_file(&first).unwrap();
    // Still being written: left again, and nothing read twice.
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.dead_total(), s.inputs_unfinished, s.inputs_changed), (0, 0, 1, 0), "{s:?}");
    append(&log, &cut[cut.len() / 2..]);
    append(&log, &lines(21, 23));
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.dead_total(), s.inputs_resumed, s.inputs_unfinished), (3, 0, 1, 0), "{s:?}");
    let rows = by_event(&out);
    assert_eq!(rows.len(), 23);
    assert_eq!(rows["event-000020"].len(), 2, "once from each file");
    assert!(rows.iter().all(|(e, r)| r.len() == 1 || e == "event-000020"), "each event once");
    let in_log = rows["event-000020"].iter().find(|(f, _)| f.ends_with("audit.ndjson")).unwrap();
    assert_eq!(in_log.1, 20, "numbered on from the lines before it");
    assert_eq!(std::fs::read_dir(out.join("_dead_letter")).map_or(0, |d| d.count()), 0);
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_skipped), (0, 1));
}

/// A gzip file a compressor is still writing: left whole for a later run
/// rather than archived up to where it is cut and dead-lettered after;
/// once complete, it is read once. Left alone past the settling time, a
/// file cut short is what it is: its records, then a dead letter.
#[test]
fn a_gzip_file_still_being_written_is_left_whole() {
    let dir = TempDir::new("gz-unfinished");
    let out = dir.path().join("archive");
    let whole = gzip(&lines(0, 30));
    let log = dir.write("logs/events.json.gz", &whole[..whole.len() * 2 / 3]);
    // Held whole to be checked (as the default holds up to 4 MiB), and
    // checked first when longer than can be held.
    let small = Options { out: out.clone(), whole_file_bytes: 4096, ..Options::default() };
    for opts in [Options { out: out.clone(), ..Options::default() }, small.clone()] {
        let s = run_with(opts, std::slice::from_ref(&log));
        assert_eq!((s.records_read, s.dead_total(), s.inputs_unfinished), (0, 0, 1), "{s:?}");
    }
    std::fs::write(&log, &whole).unwrap();
    let s = run_with(small, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.rows_total(), s.inputs_changed, s.inputs_unfinished), (30, 30, 0, 0), "{s:?}");
    assert_eq!(s.bytes_read, lines(0, 30).len() as u64, "the check's inflate is not counted as read");
    assert!(by_event(&out).values().all(|r| r.len() == 1));
    let s = run_on(&out, std::slice::from_ref(&log));
    assert_eq!((s.records_read, s.inputs_skipped), (0, 1));

    let cut = dir.write("logs/cut.json.gz", &gzip(&lines(100, 130))[..whole.len() * 2 / 3]);
    let settled = std::time::SystemTime::now() - trailship::source::GZIP_SETTLE - std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&cut).unwrap().set_modified(settled).unwrap();
    let s = run_on(&out, std::slice::from_ref(&cut));
    assert_eq!((s.inputs_unfinished, s.dead_total()), (0, 1), "{s:?}");
    assert!(s.rows_total() > 0, "{s:?}");
    assert_eq!(s.dead_letters.keys().map(|r| r.as_str()).collect::<Vec<_>>(), ["truncated_gzip"]);
}

/// Files too short to be known by their first 4 KiB are known by path and
/// all their bytes; a last record without its newline is whole, and what
/// is appended after the newline it lacked is read on from.
#[test]
fn a_short_file_and_one_without_a_last_newline_are_read_on_from() {
    let dir = TempDir::new("short");
    let out = dir.path().join("archive");
    let short = dir.write("logs/short.ndjson", &lines(200, 201));
    let mut text = lines(0, 20);
    text.pop();
    let bare = dir.write("logs/bare.ndjson", &text);
    let s = run_on(&out, &[short.clone(), bare.clone()]);
    assert_eq!((s.rows_total(), s.dead_total(), s.inputs_unfinished), (21, 0, 0), "{s:?}");
    append(&short, &lines(201, 203));
    append(&bare, b"\n");
    append(&bare, &lines(20, 22));
    let s = run_on(&out, &[short, bare]);
    assert_eq!((s.records_read, s.inputs_resumed, s.inputs_changed), (4, 2, 0), "{s:?}");
    let rows = by_event(&out);
    assert_eq!(rows.len(), 25);
    assert!(rows.values().all(|r| r.len() == 1), "each event once");
    assert_eq!(rows["event-000202"][0].1, 2);
}

/// What cannot be read on from is read whole, and counted: a file whose
/// last line was cut short and left so past [`source::SETTLE`] (its half
/// record a dead letter then), and a short file rewritten. A path that now
/// holds other content is new, not changed.
#[test]
fn what_cannot_be_read_on_from_is_read_whole_and_counted() {
    let dir = TempDir::new("whole");
    let out = dir.path().join("archive");
    let mut text = lines(0, 20);
    let cut = lines(20, 21);
    text.extend_from_slice(&cut[..cut.len() / 2]);
    let partial = dir.write("logs/partial.ndjson", &text);
    let settled = std::time::SystemTime::now() - trailship::source::SETTLE - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&partial).unwrap().set_modified(settled).unwrap();
    let short = dir.write("logs/short.ndjson", &lines(200, 201));
    let other = dir.write("logs/other.ndjson", &lines(300, 320));
    let s = run_on(&out, &[partial.clone(), short.clone(), other.clone()]);
    assert_eq!((s.rows_total(), s.dead_total(), s.inputs_unfinished), (20 + 1 + 20, 1, 0), "{s:?}");
    append(&partial, &cut[cut.len() / 2..]);
    let mut rewritten = lines(210, 211);
    rewritten.extend(lines(201, 202));
    std::fs::write(&short, rewritten).unwrap();
    std::fs::write(&other, lines(400, 420)).unwrap();
    let s = run_on(&out, &[partial, short, other]);
    assert_eq!((s.inputs_resumed, s.inputs_changed), (0, 2), "{s:?}");
    assert_eq!(s.records_read, 21 + 2 + 20);
    let rows = by_event(&out);
    assert_eq!(rows["event-000000"].len(), 2, "read whole again: its rows twice");
    assert_eq!(rows["event-000210"].len(), 1);
    assert_eq!(rows["event-000400"].len(), 1);
    assert_eq!(rows["event-000300"].len(), 1);
}

/// A run over many small files checkpoints every `checkpoint_inputs` of
/// them, whatever their bytes: until a checkpoint it holds each one's
/// ledger line, and its journal names them all.
#[test]
fn small_inputs_are_checkpointed_by_count() {
    let dir = TempDir::new("by-count");
    let out = dir.path().join("archive");
    for i in 0..5 {
        dir.write(&format!("logs/{i}.ndjson"), &lines(i * 2, i * 2 + 2));
    }
    let opts = Options { out: out.clone(), checkpoint_inputs: 2, ..Options::default() };
    let s = run_with(opts, &[dir.path().join("logs")]);
    assert_eq!((s.inputs_processed, s.rows_total()), (5, 10));
    // One object a checkpoint: after the second input, the fourth, and the last.
    assert_eq!(parquet_files(&out).len(), 3, "{:?}", s.objects);
    let ledger = std::fs::read_to_string(out.join("_trailship/ledger.ndjson")).unwrap();
    assert_eq!(ledger.lines().count(), 5);
    let s = run_on(&out, &[dir.path().join("logs")]);
    assert_eq!((s.records_read, s.inputs_skipped), (0, 5));
}

/// Inputs listed as a run goes: a listing that fails part way (a
/// directory gone, S3 refusing a page) ends the run with its error, and
/// what was read before it is archived, so a rerun goes on from there.
#[test]
fn a_listing_that_fails_part_way_archives_what_came_before() {
    use trailship::source::{Input, Inputs, SourceError};
    struct Failing(Vec<Input>);
    impl Inputs for Failing {
        fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
            let gone = || SourceError::Missing { path: "logs/b".into(), source: std::io::ErrorKind::NotFound.into() };
            Box::new([Ok(self.0.clone()), Err(gone())].into_iter())
        }
    }
    let dir = TempDir::new("listing");
    let out = dir.path().join("archive");
    let a = dir.write("logs/a/1.ndjson", &lines(0, 3));
    let b = dir.write("logs/a/2.ndjson", &lines(3, 5));
    let failing = Failing(vec![Input::File(a), Input::File(b)]);
    let opts = Options { out: out.clone(), threads: 2, ..Options::default() };
    // The first listing, for the ledger, fails: nothing is read.
    let err = trailship::pipeline::run(&opts, &failing).expect_err("the listing failed");
    assert!(err.to_string().contains("logs/b"), "{err}");
    assert!(parquet_files(&out).is_empty());
    // Failing only the second time, as a walk meeting a directory removed meanwhile does.
    struct Second(Failing, std::sync::atomic::AtomicBool);
    impl Inputs for Second {
        fn dirs(&self) -> Box<dyn Iterator<Item = Result<Vec<Input>, SourceError>> + Send + '_> {
            if self.1.swap(true, std::sync::atomic::Ordering::Relaxed) {
                self.0.dirs()
            } else {
                Box::new(std::iter::once(Ok(self.0.0.clone())))
            }
        }
    }
    let second = Second(failing, false.into());
    let err = trailship::pipeline::run(&opts, &second).expect_err("the listing failed");
    assert!(err.to_string().contains("logs/b"), "{err}");
    assert_eq!(by_event(&out).len(), 5, "the directory listed before the failure is archived");
    let s = run_on(&out, &[dir.path().join("logs")]);
    assert_eq!((s.records_read, s.inputs_skipped), (0, 2));
}
