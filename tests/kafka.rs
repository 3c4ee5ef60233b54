//! `trailship run` against a real Kafka-protocol broker (tansu) and, for
//! Object Lock, a real S3 API server (moto): every produced event ends in
//! exactly one row or one dead letter, whatever happens to the worker.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::TempDir;
use common::kafka::{Broker, Worker, cloudtrail_record, tansu, uid_counts, wait_for};

const GROUP: &str = "archive";

fn config(dir: &Path, brokers: &str, topic: &str, archive: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{GROUP}\"\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [[kafka.topics]]\nname = \"{topic}\"\nkind = \"cloudtrail\"\n\
         [archive]\nlocation = \"{archive}\"\nspool_dir = \"{}\"\n\
         [batch]\nmax_events = 50\nmax_age_s = 1\n\
         [service]\nlisten = \"\"\nshutdown_deadline_s = 20\n{extra}",
        dir.join("spool").display()
    );
    let path = dir.join("trailship.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` single-record messages spread over `partitions`, uids `<tag>-<i>`.
fn records(tag: &str, n: usize, partitions: i32) -> Vec<(i32, Vec<u8>, Vec<(&'static str, &'static str)>)> {
    (0..n)
        .map(|i| {
            let rec = cloudtrail_record(&format!("{tag}-{i:05}"), i);
            ((i as i32) % partitions, serde_json::to_vec(&rec).unwrap(), vec![])
        })
        .collect()
}

fn assert_exactly_once(archive: &Path, tag: &str, n: usize) {
    let counts = uid_counts(archive);
    let ours: BTreeMap<_, _> = counts.iter().filter(|(k, _)| k.starts_with(tag)).collect();
    let dups: Vec<_> = ours.iter().filter(|(_, c)| ***c != 1).collect();
    assert!(dups.is_empty(), "duplicated rows: {dups:?}");
    let missing: Vec<_> = (0..n).map(|i| format!("{tag}-{i:05}")).filter(|u| !counts.contains_key(u)).collect();
    assert!(missing.is_empty(), "{} events missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
}

#[test]
fn every_event_lands_once_and_offsets_follow_durable_objects() {
    let Some(bin) = tansu() else { return };
    let dir = TempDir::new("kafka-basic");
    let broker = Broker::start(&bin, dir.path());
    broker.create_topic("ct", 3);
    let archive = dir.path().join("archive");
    let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), "");
    // Poison among good records: broken JSON, a JSON array of numbers, an
    // empty value, an unknown record, and a gzip envelope of two records.
    let mut msgs = records("ok", 300, 3);
    msgs.insert(10, (1, b"{\"eventVersion\": \"1.09\", \"eventID\": ".to_vec(), vec![]));
    msgs.insert(20, (1, b"[1, 2, 3]".to_vec(), vec![]));
    msgs.insert(30, (1, Vec::new(), vec![]));
    msgs.insert(40, (2, b"{\"hello\": \"world\"}".to_vec(), vec![]));
    let envelope = serde_json::json!({"Records": [cloudtrail_record("env-00000", 1), cloudtrail_record("env-00001", 2)]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &serde_json::to_vec(&envelope).unwrap()).unwrap();
    msgs.insert(50, (0, gz.finish().unwrap(), vec![]));
    broker.produce("ct", &msgs);
    let per_partition: Vec<i64> = (0..3).map(|p| msgs.iter().filter(|m| m.0 == p).count() as i64).collect();

    let mut w = Worker::start(&cfg, dir.path().join("worker.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || {
        broker.committed(GROUP, "ct", 3) == per_partition
    });
    assert_exactly_once(&archive, "ok", 300);
    assert_exactly_once(&archive, "env", 2);
    let dead = common::dead_letters(&archive);
    let mut reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort();
    // An array is a sequence of records: three numbers, three dead letters.
    // A topic of kind cloudtrail holds CloudTrail records: one without its
    // fields is missing them.
    assert_eq!(
        reasons,
        ["empty_envelope", "malformed_json", "missing_field", "not_an_object", "not_an_object", "not_an_object"],
        "{dead:#?}"
    );
    assert!(dead.iter().all(|d| d["source"]["file"].as_str().unwrap().starts_with("kafka://ct/")), "{dead:#?}");
    // Provenance: every row names its message.
    let rows = common::all_rows(&archive);
    let r = rows.iter().find(|r| common::get(r, "metadata.uid").unwrap() == "ok-00004").unwrap();
    assert_eq!(common::get(r, "trailship.kafka.topic").unwrap(), "ct");
    assert_eq!(common::get(r, "trailship.kafka.partition").unwrap(), 1);
    // Object keys name topic, partition and offset range; an intent precedes each batch.
    let objects = common::parquet_files(&archive);
    assert!(objects.iter().all(|p| p.file_name().unwrap().to_str().unwrap().starts_with("kafka-ct-")), "{objects:?}");
    assert!(archive.join("_trailship/kafka/ct/0/00000000000000000000.json").exists());

    // More messages after the first commit go on from there.
    broker.produce("ct", &records("late", 20, 3));
    let after: Vec<i64> = per_partition.iter().enumerate().map(|(p, n)| n + records("x", 20, 3).iter().filter(|m| m.0 == p as i32).count() as i64).collect();
    wait_for("the later offsets committed", Duration::from_secs(30), &[&w], || broker.committed(GROUP, "ct", 3) == after);
    assert_exactly_once(&archive, "late", 20);
    assert!(w.terminate().success(), "{}", w.log_text());
}
