//! Kafka → S3 throughput through the real servers (tansu, moto), driven by
//! `benches/kafka-s3.sh`, which starts them.
//!
//! `kafka-bench BROKER S3_ENDPOINT TRAILSHIP TANSU_ONLY? RECORDS PARTITIONS WORKERS...`
//!
//! For each worker count: a fresh topic and bucket, RECORDS seeded CloudTrail
//! records produced one per message, then WORKERS `trailship run` processes
//! in one group, timed from start until every partition's committed offset
//! reaches its end (the group join, ~3 s, is measured separately and
//! subtracted).

#[path = "corpus.rs"]
mod corpus;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 7 {
        eprintln!("usage: kafka-bench BROKER S3_ENDPOINT TRAILSHIP RECORDS PARTITIONS WORKERS...");
        std::process::exit(2);
    }
    let (broker, s3, trailship) = (&a[1], &a[2], Path::new(&a[3]));
    let records: u64 = a[4].parse().unwrap();
    let partitions: i32 = a[5].parse().unwrap();
    let workers: Vec<usize> = a[6..].iter().map(|w| w.parse().unwrap()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s3c = trailship::integrity::s3::S3Store::new(Some(s3), Some("us-east-1")).unwrap();

    // One seeded corpus, produced once per run into a fresh topic.
    let mut rng = corpus::Rng::new(7);
    let mut msgs = Vec::with_capacity(records as usize);
    let mut bytes = 0u64;
    for seq in 0..records {
        let mut s = String::new();
        corpus::record(&mut rng, seq, &mut s);
        bytes += s.len() as u64;
        msgs.push(s);
    }
    println!(
        "corpus: {records} CloudTrail records, {:.1} MB of JSON ({} B/record), {partitions} partitions",
        bytes as f64 / 1e6,
        bytes / records
    );
    println!(
        "| workers | wall (s) | events/s (steady) | MB/s | events/s per worker | worker CPU (s) | events per CPU-s | MB per CPU-s | objects |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (run, &n) in workers.iter().enumerate() {
        let topic = format!("bench-{run}-{}", std::process::id());
        let bucket = format!("bench-{run}-{}", std::process::id());
        s3c.block_on(s3c.client().create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send()).unwrap();
        let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", broker).create().unwrap();
        let t = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
        for r in rt.block_on(admin.create_topics([&t], &AdminOptions::new())).unwrap() {
            r.unwrap();
        }
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("compression.type", "none")
            .create()
            .unwrap();
        for (i, m) in msgs.iter().enumerate() {
            let mut rec = BaseRecord::<(), _>::to(&topic).partition(i as i32 % partitions).payload(m.as_bytes());
            while let Err((_, r)) = p.send(rec) {
                p.poll(Duration::from_millis(5));
                rec = r;
            }
        }
        p.flush(Duration::from_secs(120)).unwrap();

        if run == 0 {
            // The ceiling: librdkafka draining the topic from tansu, no processing.
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", broker)
                .set("group.id", format!("{topic}-drain"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            c.subscribe(&[&topic]).unwrap();
            let mut got = 0usize;
            let mut t0 = None;
            while got < msgs.len() {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                    t0.get_or_insert_with(Instant::now);
                    got += 1;
                }
            }
            let secs = t0.unwrap().elapsed().as_secs_f64();
            println!(
                "| drain only (librdkafka from tansu, no processing) | {secs:.2} | {:.0} | {:.1} | | | | | |",
                records as f64 / secs,
                bytes as f64 / 1e6 / secs
            );
        }
        let dir = std::env::temp_dir().join(format!("trailship-kafka-bench-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("bench.toml");
        std::fs::write(
            &cfg,
            format!(
                "[kafka]\nbrokers = \"{broker}\"\ngroup_id = \"{topic}\"\n{}[[kafka.topics]]\nname = \"{topic}\"\nkind = \"cloudtrail\"\n\
                 [archive]\nlocation = \"s3://{bucket}/ocsf\"\nendpoint_url = \"{s3}\"\nobject_lock_mode = \"COMPLIANCE\"\nretain_days = 1\n\
                 spool_dir = \"{}\"\n[batch]\n{}\n[service]\nlisten = \"\"\n",
                // Extra `[kafka]` lines (benches/kafka-s3.sh), each ending its line.
                std::env::var("BENCH_KAFKA_PROPS").map(|p| format!("{}\n", p.trim_end())).unwrap_or_default(),
                dir.join("spool").display(),
                std::env::var("BENCH_BATCH").unwrap_or_else(|_| "max_events = 20000\nmax_age_s = 1".into()),
            ),
        )
        .unwrap();
        let started = Instant::now();
        let mut children: Vec<_> = (0..n)
            .map(|_| {
                Command::new(trailship)
                    .args(["--log", "info,trailship::service=debug,librdkafka=warn", "run", "--config"])
                    .arg(&cfg)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.join(format!("w{}.log", rand_id()))).unwrap())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let want = msgs.len() as i64;
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", broker).set("group.id", &topic).create().unwrap();
        let mut joined: Option<(Duration, i64)> = None;
        loop {
            let mut tpl = TopicPartitionList::new();
            for i in 0..partitions {
                tpl.add_partition(&topic, i);
            }
            let got = c.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
            let done: i64 = got.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum();
            if done > 0 && joined.is_none() {
                joined = Some((started.elapsed(), done));
            }
            if done >= want {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(900), "bench did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
        let wall = started.elapsed();
        // The workers' CPU up to the last commit (start-up and the group
        // join included, which cost little CPU): events per CPU-second is
        // the per-core figure, and on a VM the servers share it moves far
        // less than events/s does.
        let cpu: f64 = children.iter().map(|ch| cpu_seconds(ch.id())).sum();
        for ch in &mut children {
            let _ = Command::new("kill").args(["-TERM", &ch.id().to_string()]).status();
            let _ = ch.wait();
        }
        let objects = s3c
            .block_on(s3c.client().list_objects_v2().bucket(&bucket).prefix("ocsf/").send())
            .map(|l| l.key_count().unwrap_or(0))
            .unwrap_or(0);
        // Steady state: from the first commit (after the ~3 s group join and
        // the first batch) to the last.
        let (t0, done0) = joined.unwrap_or_default();
        let secs = (wall - t0).as_secs_f64().max(1e-3);
        let events = (want - done0) as f64;
        let mb = bytes as f64 / 1e6 * events / want as f64;
        println!(
            "| {n} | {:.2} (first commit at {:.2}) | {:.0} | {:.1} | {:.0} | {cpu:.2} | {:.0} | {:.1} | {objects} |",
            wall.as_secs_f64(),
            t0.as_secs_f64(),
            events / secs,
            mb / secs,
            events / secs / n as f64,
            want as f64 / cpu.max(1e-3),
            bytes as f64 / 1e6 / cpu.max(1e-3),
        );
    }
}

/// User and system CPU a process has used (`/proc/PID/stat`, fields 14
/// and 15, in clock ticks of 1/100 s, as Linux reports them to user space).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may hold spaces: fields count from after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

fn rand_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}
