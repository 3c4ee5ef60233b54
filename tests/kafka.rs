//! `trailship run` against a real Kafka-protocol broker (tansu) and, for
//! Object Lock, a real S3 API server (moto): every produced event ends in
//! exactly one row or one dead letter, whatever happens to the worker.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::TempDir;
use common::kafka::{Broker, Msg, Proxy, Worker, cloudtrail_record, tansu, uid_counts, wait_for};

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

/// A broker with `topic`, and a config for a worker archiving it into `archive`.
struct Setup {
    dir: TempDir,
    broker: Broker,
    archive: std::path::PathBuf,
    cfg: std::path::PathBuf,
}

fn setup(name: &str, bin: &Path, topic: &str, partitions: i32) -> Setup {
    let dir = TempDir::new(name);
    let broker = Broker::start(bin, dir.path());
    broker.create_topic(topic, partitions);
    let archive = dir.path().join("archive");
    let cfg = config(dir.path(), &broker.addr(), topic, &archive.display().to_string(), "");
    Setup { dir, broker, archive, cfg }
}

/// `n` single-record messages spread over `partitions`, uids `<tag>-<i>`.
fn records(tag: &str, n: usize, partitions: i32) -> Vec<Msg<'static>> {
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
    let Setup { dir, broker, archive, cfg } = setup("kafka-basic", &bin, "ct", 3);
    // Poison among good records: broken JSON, a JSON array of numbers, an
    // empty value, an unknown record, and a gzip envelope of two records.
    let mut msgs = records("ok", 300, 3);
    msgs.insert(10, (1, b"{\"eventVersion\": \"1.09\", \"eventID\": ".to_vec(), vec![]));
    msgs.insert(20, (1, b"[1, 2, 3]".to_vec(), vec![]));
    msgs.insert(30, (1, Vec::new(), vec![]));
    msgs.insert(40, (2, b"{\"hello\": \"world\"}".to_vec(), vec![]));
    let envelope =
        serde_json::json!({"Records": [cloudtrail_record("env-00000", 1), cloudtrail_record("env-00001", 2)]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &serde_json::to_vec(&envelope).unwrap()).unwrap();
    msgs.insert(50, (0, gz.finish().unwrap(), vec![]));
    // A CloudWatch Logs subscription message (gzip, as CloudWatch sends it)
    // carrying CloudTrail records as JSON text.
    let cwl = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "aws-cloudtrail-logs",
        "logStream": "123456789012_CloudTrail_us-east-1", "subscriptionFilters": ["to-kafka"],
        "logEvents": [
            {"id": "1", "timestamp": 1_763_632_800_000i64, "message": cloudtrail_record("cwl-00000", 3).to_string()},
            {"id": "2", "timestamp": 1_763_632_800_001i64, "message": cloudtrail_record("cwl-00001", 4).to_string()},
        ]
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, cwl.to_string().as_bytes()).unwrap();
    let cwl_gz = gz.finish().unwrap();
    msgs.insert(60, (2, cwl_gz.clone(), vec![]));
    // The same message cut short: no event is made of it, and it says so.
    msgs.insert(70, (0, cwl_gz[..cwl_gz.len() - 12].to_vec(), vec![]));
    broker.produce("ct", &msgs);
    let per_partition: Vec<i64> = (0..3).map(|p| msgs.iter().filter(|m| m.0 == p).count() as i64).collect();

    let mut w = Worker::start(&cfg, dir.path().join("worker.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || {
        broker.committed(GROUP, "ct", 3) == per_partition
    });
    assert_exactly_once(&archive, "ok", 300);
    assert_exactly_once(&archive, "env", 2);
    assert_exactly_once(&archive, "cwl", 2);
    let dead = common::dead_letters(&archive);
    let mut reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort();
    // An array is a sequence of records: three numbers, three dead letters.
    // A topic of kind cloudtrail holds CloudTrail records: one without its
    // fields is missing them.
    assert_eq!(
        reasons,
        [
            "corrupt_gzip",
            "empty_envelope",
            "malformed_json",
            "missing_field",
            "not_an_object",
            "not_an_object",
            "not_an_object"
        ],
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
    let after: Vec<i64> = per_partition
        .iter()
        .enumerate()
        .map(|(p, n)| n + records("x", 20, 3).iter().filter(|m| m.0 == p as i32).count() as i64)
        .collect();
    wait_for("the later offsets committed", Duration::from_secs(30), &[&w], || {
        broker.committed(GROUP, "ct", 3) == after
    });
    assert_exactly_once(&archive, "late", 20);
    assert!(w.terminate().success(), "{}", w.log_text());
}

/// A second group reading a topic already archived (an offset reset, a new
/// group id) finds an intent at the start of every batch: it replays each
/// onto the objects already there and writes none.
#[test]
fn a_new_group_replays_an_archived_range_onto_the_same_objects() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive, cfg } = setup("kafka-regroup", &bin, "ct", 2);
    let msgs = records("g", 300, 2);
    broker.produce("ct", &msgs);
    let want = ends(&msgs, 2);
    let mut w = Worker::start(&cfg, dir.path().join("first.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 2) == want);
    assert!(w.terminate().success(), "{}", w.log_text());
    let bytes = |files: Vec<std::path::PathBuf>| -> Vec<_> {
        files.into_iter().map(|p| (std::fs::read(&p).unwrap(), p)).collect()
    };
    let objects = bytes(common::parquet_files(&archive));
    let intents = walkdir::WalkDir::new(archive.join("_trailship/kafka/ct"))
        .into_iter()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_file()))
        .count();
    assert!(intents >= 6, "300 messages in batches of 50 at most: {intents} intents");

    let text =
        std::fs::read_to_string(&cfg).unwrap().replace(&format!("group_id = \"{GROUP}\""), "group_id = \"again\"");
    std::fs::write(&cfg, text).unwrap();
    let mut w = Worker::start(&cfg, dir.path().join("again.log"), &[]);
    wait_for("every offset committed again", Duration::from_secs(60), &[&w], || {
        broker.committed("again", "ct", 2) == want
    });
    assert!(w.terminate().success(), "{}", w.log_text());
    assert_eq!(bytes(common::parquet_files(&archive)), objects, "objects written again");
    assert_exactly_once(&archive, "g", 300);
    let log = w.log_text();
    // Each batch read its intent (a rebalance may repeat some): none was
    // found only when writing its own.
    let replays = log.matches("replaying a batch").count();
    assert!(replays >= intents, "{intents} intents, {replays} replays: {log}");
    assert!(!log.contains("batch intent appeared meanwhile"), "{log}");
}

/// Expected committed offsets: the number of messages per partition.
fn ends(msgs: &[Msg<'_>], partitions: i32) -> Vec<i64> {
    (0..partitions).map(|p| msgs.iter().filter(|m| m.0 == p).count() as i64).collect()
}

fn pseudo_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Adds a signing key to the workers' configuration.
fn sign(dir: &TempDir, cfg: &Path) {
    let key = dir.write("signing.pem", trailship::integrity::chain::generate_ed25519_pem().as_bytes());
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(&format!("[integrity]\nsigning_key_file = \"{}\"\n", key.display()));
    std::fs::write(cfg, text).unwrap();
}

/// Every object, whichever worker wrote it, is in one valid digest chain
/// per partition: nothing pending, nothing outside a chain.
fn assert_archive_validates(archive: &Path) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
        .args(["validate-digests", "--format", "json", "--archive"])
        .arg(archive)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{json}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(!json.contains("\"pending\"") && !json.contains("unreferenced"), "{json}");
}

#[test]
fn kill_9_at_random_points_loses_and_duplicates_nothing() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive, cfg } = setup("kafka-kill", &bin, "ct", 3);
    // Signed: each crash also lands between a batch's digest and the rest.
    sign(&dir, &cfg);
    let mut all = records("k", 3000, 3);
    broker.produce("ct", &all);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Crashes between the steps of a batch's write (intent, objects, commit),
    // then kill -9 at random times.
    let failpoints = ["after_intent:3", "after_object:5", "after_commit:4", "", ""];
    for (round, fp) in failpoints.iter().enumerate() {
        let mut w = Worker::start(&cfg, dir.path().join(format!("worker-{round}.log")), &[("TRAILSHIP_FAILPOINT", fp)]);
        if fp.is_empty() {
            // The first assignment takes ~3 s; kill somewhere after it.
            std::thread::sleep(Duration::from_millis(3000 + pseudo_random(&mut seed) % 2500));
        } else {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while w.alive() {
                assert!(std::time::Instant::now() < deadline, "failpoint {fp} never reached: {}", w.log_text());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        w.kill9();
        let more = records(&format!("r{round}"), 200, 3);
        broker.produce("ct", &more);
        all.extend(more);
    }
    let mut w = Worker::start(&cfg, dir.path().join("worker-last.log"), &[]);
    let want = ends(&all, 3);
    wait_for("every offset committed", Duration::from_secs(120), &[&w], || broker.committed(GROUP, "ct", 3) == want);
    assert!(w.terminate().success(), "{}", w.log_text());
    assert_archive_validates(&archive);
    assert_exactly_once(&archive, "k", 3000);
    for round in 0..5 {
        assert_exactly_once(&archive, &format!("r{round}"), 200);
    }
    // Replays happened (some batch was written but not committed when a kill
    // landed) and wrote no second object: the uid check above is the proof,
    // this says the scenario really exercised it.
    let logs: String = (0..5)
        .map(|r| std::fs::read_to_string(dir.path().join(format!("worker-{r}.log"))).unwrap_or_default())
        .collect();
    assert_eq!(logs.matches("failpoint").count(), 3, "{logs}");
    let replays = logs.matches("replaying a batch").count() + w.log_text().matches("replaying a batch").count();
    assert!(replays >= 2, "the intent and object crashes leave batches to replay; saw {replays}");
}

#[test]
fn two_workers_split_partitions_and_one_takes_over_when_the_other_dies() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive, cfg } = setup("kafka-group", &bin, "ct", 4);
    // Signed: partitions change hands twice, once between live workers.
    sign(&dir, &cfg);
    let mut all = records("g", 400, 4);
    broker.produce("ct", &all);
    let mut a = Worker::start(&cfg, dir.path().join("a.log"), &[]);
    let first = ends(&all, 4);
    wait_for("worker a to commit everything", Duration::from_secs(60), &[&a], || {
        broker.committed(GROUP, "ct", 4) == first
    });
    let mut b = Worker::start(&cfg, dir.path().join("b.log"), &[]);
    wait_for("the group to split the partitions", Duration::from_secs(60), &[&a, &b], || {
        match (a.last_assignment(), b.last_assignment()) {
            (Some(x), Some(y)) => x.matches("(\"ct\"").count() == 2 && y.matches("(\"ct\"").count() == 2,
            _ => false,
        }
    });
    let more = records("h", 400, 4);
    broker.produce("ct", &more);
    all.extend(more);
    std::thread::sleep(Duration::from_millis(500));
    a.kill9();
    let more = records("i", 400, 4);
    broker.produce("ct", &more);
    all.extend(more);
    let want = ends(&all, 4);
    wait_for("worker b to take over every partition", Duration::from_secs(90), &[&b], || {
        broker.committed(GROUP, "ct", 4) == want
    });
    for tag in ["g", "h", "i"] {
        assert_exactly_once(&archive, tag, 400);
    }
    assert!(b.last_assignment().unwrap().matches("(\"ct\"").count() == 4);
    assert!(b.terminate().success(), "{}", b.log_text());
    assert_archive_validates(&archive);
}

mod s3 {
    use super::*;
    use trailship::integrity::s3::S3Store;

    fn endpoint() -> Option<String> {
        common::external("TRAILSHIP_TEST_S3_ENDPOINT", "S3 tests")
    }

    fn locked_bucket(s3: &S3Store, bucket: &str) {
        s3.block_on(s3.client().create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send()).unwrap();
    }

    /// Every object under `prefix`, downloaded to `to` by key.
    fn download(s3: &S3Store, bucket: &str, to: &Path) -> Vec<String> {
        let list = s3.block_on(s3.client().list_objects_v2().bucket(bucket).max_keys(1000).send()).unwrap();
        let mut keys = Vec::new();
        for o in list.contents() {
            let key = o.key().unwrap().to_owned();
            let body = s3
                .block_on(async {
                    s3.client().get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await
                })
                .unwrap()
                .to_vec();
            let path = to.join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
            keys.push(key);
        }
        keys
    }

    /// Topic `ct`, an Object-Locked bucket, and a worker's config that
    /// reaches S3 through a proxy the test controls (`S3_URL`).
    struct Locked {
        dir: TempDir,
        s3: S3Store,
        bucket: String,
        broker: Broker,
        proxy: Proxy,
        cfg: std::path::PathBuf,
    }

    fn locked(name: &str, bin: &Path, ep: &str, partitions: i32) -> Locked {
        let dir = TempDir::new(name);
        let s3 = S3Store::new(Some(ep), Some("us-east-1")).unwrap();
        let bucket = format!("{name}-{}", std::process::id());
        locked_bucket(&s3, &bucket);
        let broker = Broker::start(bin, dir.path());
        broker.create_topic("ct", partitions);
        let proxy = Proxy::start(ep.trim_start_matches("http://").parse().unwrap());
        let lock = "object_lock_mode = \"COMPLIANCE\"\nretain_days = 1\nendpoint_url = \"${S3_URL}\"\n";
        let cfg = config(dir.path(), &broker.addr(), "ct", &format!("s3://{bucket}/archive"), "");
        let text = std::fs::read_to_string(&cfg).unwrap().replace("[batch]", &format!("{lock}[batch]"));
        std::fs::write(&cfg, text).unwrap();
        Locked { dir, s3, bucket, broker, proxy, cfg }
    }

    #[test]
    fn objects_are_locked_and_s3_outages_pause_without_loss() {
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        // The worker reaches S3 through a proxy the test can switch off.
        let Locked { dir, s3, bucket, broker, proxy, cfg } = locked("kafka-s3", &bin, &ep, 2);
        let url = proxy.url();
        let env = [("S3_URL", url.as_str())];
        let mut all = records("s", 200, 2);
        broker.produce("ct", &all);
        let w = Worker::start(&cfg, dir.path().join("w.log"), &env);
        let want = ends(&all, 2);
        wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 2) == want);

        // S3 goes away: consumption pauses, nothing is committed past what is written.
        proxy.set_down(true);
        let more = records("t", 200, 2);
        broker.produce("ct", &more);
        all.extend(more);
        wait_for("a failing write", Duration::from_secs(30), &[&w], || w.log_text().contains("failed; retrying"));
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(broker.committed(GROUP, "ct", 2), want, "nothing committed while S3 is down");
        proxy.set_down(false);
        let want = ends(&all, 2);
        wait_for("recovery after the outage", Duration::from_secs(90), &[&w], || {
            broker.committed(GROUP, "ct", 2) == want
        });

        let local = dir.path().join("copy");
        let keys = download(&s3, &bucket, &local);
        assert_exactly_once(&local.join("archive"), "s", 200);
        assert_exactly_once(&local.join("archive"), "t", 200);
        // Every object carries the lock; a delete of a locked version is refused.
        let parquet: Vec<_> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
        assert!(!parquet.is_empty());
        for key in &parquet {
            let head = s3.block_on(s3.client().head_object().bucket(&bucket).key(*key).send()).unwrap();
            assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"), "{key}");
            let until = head.object_lock_retain_until_date().unwrap().secs();
            let now = trailship::sink::now_ms() / 1000;
            assert!((now + 86_400 - 600..=now + 86_400 + 60).contains(&until), "{key}: retain until {until}");
        }
        let head = s3.block_on(s3.client().head_object().bucket(&bucket).key(parquet[0]).send()).unwrap();
        let del = s3.block_on(
            s3.client()
                .delete_object()
                .bucket(&bucket)
                .key(parquet[0])
                .set_version_id(head.version_id().map(str::to_owned))
                .send(),
        );
        assert!(del.is_err(), "deleting a COMPLIANCE-locked version must be refused");
        drop(w);

        // A bucket without Object Lock: the worker refuses to start.
        let plain = format!("plain-{}", std::process::id());
        s3.block_on(s3.client().create_bucket().bucket(&plain).send()).unwrap();
        let text =
            std::fs::read_to_string(&cfg).unwrap().replace(&format!("s3://{bucket}/"), &format!("s3://{plain}/"));
        std::fs::write(&cfg, text).unwrap();
        // (--endpoint-url overrides the config's endpoint, here the dead proxy.)
        proxy.set_down(true);
        let mut w = Worker::start_with(&cfg, dir.path().join("plain.log"), &env, &["--endpoint-url", &ep]);
        let status = w.child.wait().unwrap();
        assert!(!status.success());
        assert!(w.log_text().contains("no Object Lock configuration"), "{}", w.log_text());
    }

    #[test]
    fn the_next_batch_is_read_while_one_goes_up() {
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let Locked { dir, s3, bucket, broker, proxy, cfg } = locked("kafka-overlap", &bin, &ep, 1);
        let port = common::kafka::free_port();
        // Batches close by count only (max_events = 50), never by age: on a
        // slow machine an age limit would split them where the test cannot
        // predict, and a closed batch waits for the one going up before it.
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""))
            .replace("max_age_s = 1", "max_age_s = 3600");
        std::fs::write(&cfg, text).unwrap();
        let url = proxy.url();
        let w = Worker::start(&cfg, dir.path().join("w.log"), &[("S3_URL", url.as_str())]);
        let read = || metric(&http_get(port, "/metrics").1, "trailship_messages_in_total");
        // A first batch while the store answers: the group is joined.
        broker.produce("ct", &records("w", 50, 1));
        wait_for("the first batch committed", Duration::from_secs(60), &[&w], || {
            broker.committed(GROUP, "ct", 1) == [50]
        });
        // The store now answers nothing until released: batch `a` closes
        // and cannot go up, and `b` is read meanwhile.
        proxy.set_held(true);
        broker.produce("ct", &records("a", 50, 1));
        broker.produce("ct", &records("b", 30, 1));
        wait_for("the next batch read", Duration::from_secs(60), &[&w], || read() == 130.0);
        assert_eq!(broker.committed(GROUP, "ct", 1), [50], "committed past the batch going up");
        proxy.set_held(false);
        wait_for("the first held batch committed", Duration::from_secs(60), &[&w], || {
            broker.committed(GROUP, "ct", 1) == [100]
        });
        // `c` fills the batch `b` opened.
        broker.produce("ct", &records("c", 20, 1));
        wait_for("all committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 1) == [150]);
        let local = dir.path().join("copy");
        download(&s3, &bucket, &local);
        for (tag, n) in [("w", 50), ("a", 50), ("b", 30), ("c", 20)] {
            assert_exactly_once(&local.join("archive"), tag, n);
        }
        // Two batches, each with its own intent: the second was read while the first went up.
        let intent = |first: u64| {
            let path = local.join(format!("archive/_trailship/kafka/ct/0/{first:020}.json"));
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (v["first"].as_i64(), v["last"].as_i64())
        };
        assert_eq!(intent(50), (Some(50), Some(99)));
        assert_eq!(intent(100), (Some(100), Some(149)));
    }

    /// With a signing key, every batch's objects are listed in a signed
    /// digest of its partition's chain. A worker that dies between a digest
    /// and its commit leaves a batch its successor replays without listing
    /// it twice; the batches it committed after its last digest are listed
    /// by whoever is assigned the partition, even when nothing more comes.
    /// `validate-digests --archive` checks the whole bucket.
    #[test]
    fn a_signed_archive_validates_across_a_crash_and_finds_a_changed_object() {
        // Dies right after its second digest written with a batch (the
        // first of the second partition: a chain's first batch is sealed at
        // once), before that batch's commit.
        signed_crash("kafka-signed", "after_digest:2", true);
    }

    /// A worker that dies between claiming a digest's link and writing the
    /// digest: its successor finds the claim, writes the digest it holds,
    /// and the chain goes on after it.
    #[test]
    fn a_signed_archive_validates_across_a_crash_between_claim_and_digest() {
        signed_crash("kafka-claimed", "after_claim:2", false);
    }

    /// Runs a signed worker to `failpoint`, a second one over what is left,
    /// and validates the archive; `tamper`: then changes an object, which
    /// validation must find.
    fn signed_crash(name: &str, failpoint: &str, tamper: bool) {
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let Locked { dir, s3, bucket, broker, proxy, cfg } = locked(name, &bin, &ep, 2);
        let key = dir.write("signing.pem", trailship::integrity::chain::generate_ed25519_pem().as_bytes());
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!("[integrity]\nsigning_key_file = \"{}\"\nwriter_id = \"archive\"\n", key.display()));
        std::fs::write(&cfg, text).unwrap();
        let url = proxy.url();
        let env = [("S3_URL", url.as_str())];
        let all = records("g", 400, 2);
        broker.produce("ct", &all);
        let mut w = Worker::start(&cfg, dir.path().join("first.log"), &[env[0], ("TRAILSHIP_FAILPOINT", failpoint)]);
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while w.alive() {
            assert!(std::time::Instant::now() < deadline, "failpoint never reached: {}", w.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        w.kill9();
        let mut w = Worker::start(&cfg, dir.path().join("second.log"), &env);
        let want = ends(&all, 2);
        wait_for("every offset committed", Duration::from_secs(90), &[&w], || broker.committed(GROUP, "ct", 2) == want);
        assert!(w.terminate().success(), "{}", w.log_text());
        assert!(w.log_text().contains("replaying a batch"), "the crash left a batch to replay");
        if failpoint.starts_with("after_claim") {
            assert!(w.log_text().contains("another writer sealed"), "the claimed digest was found");
        }
        let local = dir.path().join("copy");
        download(&s3, &bucket, &local);
        assert_exactly_once(&local.join("archive"), "g", 400);
        let chains: Vec<_> =
            std::fs::read_dir(local.join("archive/_digests")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(chains.iter().any(|c| c == "archive.ct.0") && chains.iter().any(|c| c == "archive.ct.1"), "{chains:?}");

        let validate = || {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_trailship"))
                .args(["validate-digests", "--format", "json", "--endpoint-url", &ep, "--archive"])
                .arg(format!("s3://{bucket}/archive"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.code(), text, String::from_utf8_lossy(&o.stderr).into_owned())
        };
        let (code, json, err) = validate();
        assert_eq!(code, Some(0), "{json}\n{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let parquet = common::parquet_files(&local.join("archive")).len() as u64;
        assert!(v["objects"]["valid"].as_u64().unwrap() > parquet, "objects and intents: {v}");
        assert!(v["digests"]["valid"].as_u64().unwrap() >= 2, "a chain a partition: {v}");
        assert!(!json.contains("\"pending\""), "every committed batch is in a digest: {v}");
        if !tamper {
            return;
        }

        // A new version of one object (Object Lock keeps the old one, but
        // readers get the new): found and named.
        let victim = common::parquet_files(&local.join("archive"))[0]
            .strip_prefix(&local)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        s3.block_on(s3.client().put_object().bucket(&bucket).key(&victim).body(b"not parquet".to_vec().into()).send())
            .unwrap();
        let (code, json, err) = validate();
        assert_eq!(code, Some(1), "{json}\n{err}");
        assert!(json.contains(victim.trim_start_matches("archive/")), "{json}");
    }

    /// S3 event notifications (plain, SNS-wrapped, EventBridge) name
    /// CloudTrail log files; the worker fetches each, hashes its content, and
    /// every row says which object and hash it came from.
    #[test]
    fn s3_notifications_fetch_log_files_with_provenance() {
        use sha2::Digest;
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let dir = TempDir::new("kafka-notify");
        let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
        let bucket = format!("trail-{}", std::process::id());
        s3.block_on(s3.client().create_bucket().bucket(&bucket).send()).unwrap();
        let key = |n: u32| {
            format!(
                "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T10{n:02}Z_x{n}.json.gz"
            )
        };
        let put = |k: &str, body: Vec<u8>| {
            s3.block_on(s3.client().put_object().bucket(&bucket).key(k).body(body.into()).send()).unwrap();
        };
        let mut hashes = BTreeMap::new();
        for n in 0..2u32 {
            let recs: Vec<_> = (0..5).map(|i| cloudtrail_record(&format!("n{n}-{i:05}"), i)).collect();
            let json = serde_json::to_vec(&serde_json::json!({"Records": recs})).unwrap();
            hashes.insert(key(n), hex::encode(sha2::Sha256::digest(&json)));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &json).unwrap();
            put(&key(n), gz.finish().unwrap());
        }
        put(&key(7), b"{\"Records\": []}".to_vec()); // not gzip
        let s3_event = |k: &str| {
            serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": k.replace(' ', "+"), "size": 1}}}]})
            .to_string()
            .into_bytes()
        };
        let digest_key = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/20/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20261120T110000Z.json.gz";
        let msgs = vec![
            (0, s3_event(&key(0)), vec![]),
            (
                0,
                serde_json::json!({"Type": "Notification", "Message": String::from_utf8(s3_event(&key(1))).unwrap()})
                    .to_string()
                    .into_bytes(),
                vec![],
            ),
            (0, s3_event(&key(9)), vec![]), // never uploaded
            (0, s3_event(&key(7)), vec![]),
            (0, s3_event(digest_key), vec![]),
            (0, br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_vec(), vec![]),
            (
                0,
                serde_json::json!({"source": "aws.s3", "detail-type": "Object Created",
                "detail": {"bucket": {"name": bucket}, "object": {"key": "other/file.txt"}}})
                .to_string()
                .into_bytes(),
                vec![],
            ),
        ];
        let broker = Broker::start(&bin, dir.path());
        broker.create_topic("ct", 1);
        broker.produce("ct", &msgs);
        let archive = dir.path().join("archive");
        let extra = format!("[source_s3]\nendpoint_url = \"{ep}\"\n");
        let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), &extra);
        let w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
        wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 1) == [7]);
        assert_exactly_once(&archive, "n0", 5);
        assert_exactly_once(&archive, "n1", 5);
        for row in common::all_rows(&archive) {
            let k = common::get(&row, "trailship.source_object.key").unwrap().as_str().unwrap();
            assert_eq!(common::get(&row, "trailship.source_object.bucket").unwrap(), bucket.as_str());
            assert_eq!(common::get(&row, "trailship.source_object.sha256").unwrap(), hashes[k].as_str());
            assert_eq!(common::get(&row, "trailship.kafka.topic").unwrap(), "ct");
        }
        let dead = common::dead_letters(&archive);
        let mut got: Vec<(String, String)> = dead
            .iter()
            .map(|d| (d["reason"].as_str().unwrap().to_owned(), d["source"]["file"].as_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let s3n = |k: &str| format!("s3://{bucket}/{k}");
        let mut want = vec![
            ("corrupt_gzip".to_owned(), s3n(&key(7))),
            ("read_error".to_owned(), s3n(&key(9))),
            ("unrecognised_source".to_owned(), s3n("other/file.txt")),
        ];
        want.sort();
        assert_eq!(got, want);
        // The announced digest was never uploaded: the in-stream check says so.
        let checks = archive
            .join("integrity/cloudtrail_digests/digestDay=20261120")
            .join("123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20261120T110000Z.ndjson");
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&checks).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(line["digest_verdict"], "not_found", "{line}");
        assert!(w.log_text().contains("CloudTrail digest failed its check"), "{}", w.log_text());
    }

    /// The in-stream digest check: log files are ingested from notifications,
    /// then the digests that list them are announced; each listed file gets a
    /// verdict in the integrity dataset.
    #[test]
    fn announced_digests_are_checked_against_ingested_hashes() {
        use common::digests::{self as d, BUCKET, Hour};
        const DEADLINE_S: u64 = 20;
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let dir = TempDir::new("kafka-digests");
        let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
        // Hour 2: logging without digests (validation off), so its file is
        // never covered.
        let off = Hour { off: true, ..Hour::logs(1) };
        let chain = d::build(&dir.path().join("trail"), &[Hour::logs(2), Hour::logs(2), off]);
        // One log file is replaced before trailship reads it (its digest
        // lists the original's hash); one is never announced.
        let tampered = chain.logs[1][0].clone();
        std::fs::write(chain.path(&tampered), d::gzip(br#"{"Records":[]}"#, 6)).unwrap();
        d::upload_to(&s3, BUCKET, "", &dir.path().join("trail").join(BUCKET));
        let keys_file = dir.write("keys.json", d::public_keys_json(&[0]).as_bytes());
        let notify = |k: &str| {
            serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": k}}}]})
            .to_string()
            .into_bytes()
        };
        let skipped = chain.logs[1][1].clone();
        let mut msgs: Vec<_> =
            chain.logs.iter().flatten().filter(|k| **k != skipped).map(|k| (0, notify(k), vec![])).collect();
        let n_logs = msgs.len() as i64;
        let broker = Broker::start(&bin, dir.path());
        broker.create_topic("ct", 1);
        broker.produce("ct", &msgs);
        let archive = dir.path().join("archive");
        // The trail's bucket, behind a proxy the test can switch off.
        let trail = Proxy::start(ep.trim_start_matches("http://").parse().unwrap());
        let extra = format!(
            "[source_s3]\nendpoint_url = \"{}\"\npublic_keys_file = \"{}\"\ndigest_deadline_s = {DEADLINE_S}\n",
            trail.url(),
            keys_file.display()
        );
        let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), &extra);
        let mut w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
        wait_for("the log files ingested", Duration::from_secs(60), &[&w], || {
            broker.committed(GROUP, "ct", 1) == [n_logs]
        });
        let ingested = std::time::Instant::now();
        // The bucket stops answering as the digests are announced: a digest
        // is read again once it answers, not judged unreadable for good.
        trail.set_down(true);
        let digests: Vec<_> = chain.digests.iter().flatten().map(|k| (0, notify(k), vec![])).collect();
        broker.produce("ct", &digests);
        wait_for("a digest fetch failing", Duration::from_secs(60), &[&w], || {
            w.log_text().contains("fetch digest failed; retrying")
        });
        trail.set_down(false);
        msgs.extend(digests);
        let total = msgs.len() as i64;
        wait_for("the digests checked", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 1) == [total]);
        let mut verdicts = BTreeMap::new();
        for e in walkdir::WalkDir::new(archive.join("integrity/cloudtrail_digests")).into_iter().flatten() {
            if e.path().extension().is_some_and(|x| x == "ndjson") {
                for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(v["digest_verdict"], "valid", "{v}");
                    verdicts
                        .insert(v["log_key"].as_str().unwrap().to_owned(), v["verdict"].as_str().unwrap().to_owned());
                }
            }
        }
        assert_eq!(verdicts.len(), 4, "{verdicts:?}");
        assert_eq!(verdicts[&tampered], "hash_mismatch");
        assert_eq!(verdicts[&skipped], "not_ingested");
        assert_eq!(verdicts.values().filter(|v| *v == "valid").count(), 2, "{verdicts:?}");
        let log = w.log_text();
        assert!(log.contains("ingested log file differs from its digest"), "{log}");
        // Rows of the ingested files are in the archive, and no digest is a row.
        assert_eq!(common::all_rows(&archive).len(), 3, "three intact one-record files plus an empty one");
        // The file no digest lists is reported once the deadline passes; the
        // others are not. The worker stops first: what awaits a digest is in
        // the archive, not in its memory, and its successor reports it.
        let orphan = chain.logs[2][0].clone();
        let stopped_in_time = ingested.elapsed() < Duration::from_secs(DEADLINE_S - 5);
        assert!(w.terminate().success(), "{}", w.log_text());
        let mut next = Worker::start(&cfg, dir.path().join("next.log"), &[]);
        let reports = || {
            [&w, &next]
                .iter()
                .flat_map(|w| {
                    w.log_text()
                        .lines()
                        .filter(|l| l.contains("not covered by any"))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        wait_for("the uncovered file reported", Duration::from_secs(60), &[&next], || !reports().is_empty());
        std::thread::sleep(Duration::from_secs(1));
        let reported = reports();
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(reported[0].contains(&orphan), "{reported:?}");
        if stopped_in_time {
            assert!(next.log_text().contains(&orphan), "reported by the next worker: {reported:?}");
        } else {
            eprintln!("the first worker outlived the deadline: the restart is not what reported");
        }
        assert!(next.terminate().success(), "{}", next.log_text());
    }

    /// tansu keeps its log in S3 (moto), so a broker restart loses nothing;
    /// the worker reconnects and goes on from its committed offsets.
    #[test]
    fn broker_restart_loses_nothing() {
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let dir = TempDir::new("kafka-restart");
        let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
        let bucket = format!("tansu-{}", std::process::id());
        s3.block_on(s3.client().create_bucket().bucket(&bucket).send()).unwrap();
        let env: Vec<(String, String)> = [
            ("AWS_ENDPOINT", ep.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "trailship-test"),
            ("AWS_SECRET_ACCESS_KEY", "trailship-test"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut broker = Broker::start_with(&bin, dir.path(), format!("s3://{bucket}/"), env);
        broker.create_topic("ct", 2);
        let archive = dir.path().join("archive");
        let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), "");
        let mut all = records("a", 200, 2);
        broker.produce("ct", &all);
        let w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
        let want = ends(&all, 2);
        wait_for("the first commits", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 2) == want);
        broker.restart();
        let more = records("b", 200, 2);
        broker.produce("ct", &more);
        all.extend(more);
        let want = ends(&all, 2);
        wait_for("commits after the restart", Duration::from_secs(90), &[&w], || {
            broker.committed(GROUP, "ct", 2) == want
        });
        assert_exactly_once(&archive, "a", 200);
        assert_exactly_once(&archive, "b", 200);
    }

    /// The Security Lake feed over the S3 API: Parquet in the lake's bucket
    /// under `ext/<source>/`, without Object Lock headers of trailship's,
    /// and the feed's state in its own Object-Locked bucket.
    #[test]
    fn a_security_lake_feed_writes_the_lakes_bucket_and_keeps_its_state() {
        let (Some(bin), Some(ep)) = (tansu(), endpoint()) else { return };
        let Locked { dir, s3, bucket, broker, proxy, cfg } = locked("kafka-s3-lake", &bin, &ep, 2);
        let lake = format!("aws-security-data-lake-{}", std::process::id());
        s3.block_on(s3.client().create_bucket().bucket(&lake).send()).unwrap();
        let section = format!("[security_lake]\nlocation = \"s3://{lake}\"\nendpoint_url = \"${{S3_URL}}\"\n");
        let text = std::fs::read_to_string(&cfg).unwrap() + &section;
        std::fs::write(&cfg, text).unwrap();
        let url = proxy.url();
        let msgs = records("sl", 40, 2);
        broker.produce("ct", &msgs);
        let mut w = Worker::start(&cfg, dir.path().join("w.log"), &[("S3_URL", url.as_str())]);
        let want = ends(&msgs, 2);
        wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 2) == want);
        assert!(w.terminate().success(), "{}", w.log_text());

        let lake_dir = dir.path().join("lake");
        let keys = download(&s3, &lake, &lake_dir);
        assert!(!keys.is_empty());
        assert!(
            keys.iter().all(|k| k.starts_with("ext/account_change/region=us-east-1/accountId=123456789012/eventDay=")
                && k.ends_with(".parquet")),
            "{keys:?}"
        );
        let rows = common::rows(&lake_dir.join("ext"), "account_change");
        assert_eq!(rows.len(), 40);
        assert!(rows.iter().all(|r| r.get("trailship").is_none() && r.get("metadata").is_some()));
        let retention = s3.block_on(s3.client().get_object_retention().bucket(&lake).key(&keys[0]).send());
        assert!(retention.is_err() || retention.unwrap().retention().is_none(), "the lake's objects are not locked");

        let state = download(&s3, &bucket, &dir.path().join("state"));
        assert!(state.iter().any(|k| k.starts_with("archive/_trailship/kafka/ct/")), "{state:?}");
        assert!(!state.iter().any(|k| k.ends_with(".parquet")), "{state:?}");
    }
}

mod s3_objects {
    use super::*;
    use sha2::Digest;
    use trailship::config::{ArchiveConfig, LockMode};
    use trailship::integrity::s3::S3Store;
    use trailship::sink::objects::{self, Put};

    /// Create-if-absent holds on the real S3 API for single and multipart
    /// PUTs, and both carry the lock.
    #[test]
    fn puts_are_conditional_checksummed_and_locked() {
        let Some(ep) = common::external("TRAILSHIP_TEST_S3_ENDPOINT", "S3 tests") else { return };
        let s3 = S3Store::new(Some(&ep), Some("us-east-1")).unwrap();
        let bucket = format!("objects-{}", std::process::id());
        s3.block_on(s3.client().create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send()).unwrap();
        let cfg = ArchiveConfig {
            location: format!("s3://{bucket}/p"),
            endpoint_url: Some(ep.clone()),
            region: Some("us-east-1".into()),
            object_lock_mode: Some(LockMode::Governance),
            retain_days: 2,
            multipart_bytes: 5 << 20,
            ..ArchiveConfig::default()
        };
        let store = objects::open(&cfg).unwrap();
        assert_eq!(store.put_bytes("a.json", b"one").unwrap(), Put::Created);
        assert_eq!(store.put_bytes("a.json", b"two").unwrap(), Put::Exists);
        assert_eq!(store.get("a.json").unwrap().unwrap(), b"one");
        assert_eq!(store.get("missing").unwrap(), None);

        let dir = TempDir::new("objects");
        let big: Vec<u8> = (0..(11u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let path = dir.write("big.bin", &big);
        let sha: [u8; 32] = sha2::Sha256::digest(&big).into();
        assert_eq!(store.put_file("big.bin", &path, &sha, big.len() as u64).unwrap(), Put::Created);
        assert_eq!(store.put_file("big.bin", &path, &sha, big.len() as u64).unwrap(), Put::Exists);
        assert_eq!(store.get("big.bin").unwrap().unwrap().len(), big.len());
        for key in ["p/a.json", "p/big.bin"] {
            let head = s3.block_on(s3.client().head_object().bucket(&bucket).key(key).send()).unwrap();
            assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("GOVERNANCE"), "{key}");
            assert!(head.object_lock_retain_until_date().is_some(), "{key}");
        }
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// A counter's value in Prometheus text, summed over its label sets.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn sigterm_flushes_commits_and_exits_and_metrics_tell_the_story() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive, cfg } = setup("kafka-term", &bin, "ct", 2);
    let port = common::kafka::free_port();
    // Batches that never fill or age on their own: only shutdown flushes them.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_events = 50\nmax_age_s = 1", "max_events = 100000\nmax_age_s = 3600")
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&cfg, text).unwrap();
    let mut msgs = records("q", 30, 2);
    msgs.push((0, b"{\"broken\": ".to_vec(), vec![]));
    broker.produce("ct", &msgs);
    let mut w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
    wait_for("every message read", Duration::from_secs(60), &[&w], || {
        metric(&http_get(port, "/metrics").1, "trailship_messages_in_total") == 31.0
    });
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert_eq!(http_get(port, "/nope").0, 404);
    assert_eq!(broker.committed(GROUP, "ct", 2), [-1, -1], "open batches are not committed");
    assert!(uid_counts(&archive).is_empty());
    let status = w.terminate();
    assert!(status.success(), "{}", w.log_text());
    assert_eq!(broker.committed(GROUP, "ct", 2), ends(&msgs, 2));
    assert_exactly_once(&archive, "q", 30);
    assert_eq!(common::dead_letters(&archive).len(), 1);
    assert!(w.log_text().contains("rows=30") && w.log_text().contains("dead_letters=1"), "{}", w.log_text());
}

#[test]
fn github_webhooks_take_their_event_name_from_kafka_headers() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive, cfg } = setup("kafka-github", &bin, "gh", 1);
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("kind = \"cloudtrail\"", "kind = \"github\""))
        .unwrap();
    // Payloads as GitHub posts them; the event name travels only in a header.
    let mut msgs = Vec::new();
    for (event, file) in [
        ("pull_request", "pull_request/closed.payload.json"),
        ("pull_request_review", "pull_request_review/submitted.payload.json"),
        ("push", "push/payload.json"),
        ("member", "member/added.payload.json"),
    ] {
        let path = common::fixture("github-webhooks").join(file);
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        msgs.push((
            0,
            body,
            vec![("X-GitHub-Event", event), ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")],
        ));
    }
    let fixtures = common::fixture("github-webhooks");
    assert!(msgs.len() >= 3, "fixtures: {}", fixtures.display());
    broker.produce("gh", &msgs);
    let w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
    let want = vec![msgs.len() as i64];
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "gh", 1) == want);
    let rows = common::all_rows(&archive);
    let dead = common::dead_letters(&archive);
    assert_eq!(rows.len() + dead.len(), msgs.len(), "one row or one dead letter per delivery: {dead:#?}");
    assert_eq!(rows.len(), 4, "{dead:#?}");
    assert!(rows.iter().all(|r| common::get(r, "trailship.kafka.topic").unwrap() == "gh"));
}

#[test]
fn dead_letters_go_to_a_kafka_topic_with_reason_and_source_in_headers() {
    let Some(bin) = tansu() else { return };
    let dir = TempDir::new("kafka-dlq");
    let broker = Broker::start(&bin, dir.path());
    broker.create_topic("ct", 1);
    broker.create_topic("dlq", 1);
    let archive = dir.path().join("archive");
    let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[kafka.properties]", "dead_letter_topic = \"dlq\"\n[kafka.properties]");
    std::fs::write(&cfg, text).unwrap();
    let mut msgs = records("d", 20, 1);
    msgs.insert(5, (0, b"{\"eventVersion\": ".to_vec(), vec![]));
    msgs.insert(9, (0, br#"{"eventVersion":"1.09","password":"hunter2-is-not-a-good-one"}"#.to_vec(), vec![]));
    broker.produce("ct", &msgs);
    let w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 1) == [22]);
    assert_exactly_once(&archive, "d", 20);
    assert!(common::dead_letters(&archive).is_empty(), "dead letters went to the topic, not the archive");
    let dead = broker.read("dlq", 2);
    assert_eq!(dead.len(), 2);
    let mut reasons: Vec<String> =
        dead.iter().map(|(_, _, h)| h.iter().find(|(k, _)| k == "trailship-reason").unwrap().1.clone()).collect();
    reasons.sort();
    assert_eq!(reasons, ["malformed_json", "missing_field"]);
    for (key, value, headers) in &dead {
        let line: serde_json::Value = serde_json::from_slice(value).unwrap();
        let source = &headers.iter().find(|(k, _)| k == "trailship-source").unwrap().1;
        assert_eq!(line["source"]["file"].as_str().unwrap(), source);
        assert!(source.starts_with("kafka://ct/0/"), "{source}");
        assert!(key.starts_with("ct/0/"), "{key}");
        assert!(
            !String::from_utf8_lossy(value).contains("hunter2"),
            "dead letters are redacted: {}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn consumer_lag_and_committed_offsets_are_exported() {
    let Some(bin) = tansu() else { return };
    let Setup { dir, broker, archive: _, cfg } = setup("kafka-lag", &bin, "ct", 2);
    let port = common::kafka::free_port();
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap().replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let msgs = records("l", 60, 2);
    broker.produce("ct", &msgs);
    let w = Worker::start(&cfg, dir.path().join("w.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || broker.committed(GROUP, "ct", 2) == [30, 30]);
    // Lag is end offset minus committed, per partition, refreshed every 10 s.
    wait_for("the lag gauges", Duration::from_secs(30), &[&w], || {
        let text = http_get(port, "/metrics").1;
        text.lines().filter(|l| l.starts_with("trailship_consumer_lag{")).count() == 2
    });
    let text = http_get(port, "/metrics").1;
    assert_eq!(metric(&text, "trailship_consumer_lag"), 0.0, "{text}");
    assert_eq!(metric(&text, "trailship_committed_offset"), 60.0, "{text}");
    assert_eq!(metric(&text, "trailship_events_out_total"), 60.0, "{text}");
    assert!(metric(&text, "trailship_store_put_seconds_count") >= 2.0, "{text}");
}

/// The SIEM feed: a worker whose Parquet goes to an Amazon Security Lake's
/// custom sources (`ext/<source>/region=…/accountId=…/eventDay=…/`), with
/// OCSF's own columns only, while its state and dead letters stay in its
/// archive location, which the lake's provider role could not write.
#[test]
fn a_security_lake_feed_gets_ocsf_parquet_under_its_custom_sources() {
    let Some(bin) = tansu() else { return };
    let dir = TempDir::new("kafka-lake");
    let broker = Broker::start(&bin, dir.path());
    broker.create_topic("ct", 2);
    let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
    let extra = format!(
        "[security_lake]\nlocation = \"{}\"\nsources = {{ account_change = \"iam-changes\" }}\n",
        lake.display()
    );
    let cfg = config(dir.path(), &broker.addr(), "ct", &archive.display().to_string(), &extra);
    // Newest first: the lake's objects are in time order all the same.
    let mut msgs = records("lake", 60, 2);
    msgs.reverse();
    msgs.push((1, b"{\"eventVersion\": \"1.09\", \"eventID\": ".to_vec(), vec![]));
    broker.produce("ct", &msgs);
    let per_partition = [30, 31];
    let mut w = Worker::start(&cfg, dir.path().join("worker.log"), &[]);
    wait_for("every offset committed", Duration::from_secs(60), &[&w], || {
        broker.committed(GROUP, "ct", 2) == per_partition
    });
    assert!(w.terminate().success(), "{}", w.log_text());

    // In the lake: the custom source's partitions, Parquet only, each event once.
    let ext = lake.join("ext");
    let sources: Vec<_> = std::fs::read_dir(&ext).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(sources, ["iam-changes"], "account changes, under the source registered for them");
    let objects = common::parquet_files(&ext);
    assert!(!objects.is_empty());
    for o in &objects {
        let rel = o.strip_prefix(&ext).unwrap().to_str().unwrap().to_owned();
        assert!(rel.starts_with("iam-changes/region=us-east-1/accountId=123456789012/eventDay=20261120/"), "{rel}");
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(o).unwrap())
                .unwrap();
        let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert!(names.contains(&"metadata".to_owned()) && names.contains(&"actor".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n == "trailship" || n == "change"), "OCSF's own columns only: {names:?}");
        let times: Vec<i64> = common::batch_to_json(&reader.build().unwrap().map(Result::unwrap).next().unwrap())
            .iter()
            .map(|r| r["time"].as_i64().unwrap())
            .collect();
        assert!(times.len() > 1 && times.is_sorted(), "in time order: {times:?}");
    }
    let rows = common::rows(&ext, "iam-changes");
    assert_eq!(rows.len(), 60);
    let mut uids: Vec<_> = rows.iter().map(|r| common::get(r, "metadata.uid").unwrap().as_str().unwrap()).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 60, "each event once");

    // In the archive: the batches' intents and the dead letter, no Parquet.
    assert!(common::parquet_files(&archive).is_empty());
    assert!(archive.join("_trailship/kafka/ct/0/00000000000000000000.json").exists());
    let dead = common::dead_letters(&archive);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "malformed_json");
}
