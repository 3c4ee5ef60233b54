//! `trailship run`: consumer-group workers from Kafka to the archive.
//!
//! Each assigned partition fills one batch at a time: a contiguous offset
//! range whose rows are spooled to local disk as they are normalised. A
//! closing batch is made durable in three steps, then acknowledged:
//!
//! 1. an *intent* `_trailship/kafka/<topic>/<partition>/<first>.json` names
//!    the range `[first, last]` and its objects (create-if-absent);
//! 2. every object, keyed by `(topic, partition, first, last)` and its
//!    partition values, is created if absent;
//! 3. the offset `last + 1` is committed.
//!
//! A batch that opens at offset `first` reads the intent for `first` first:
//! when one exists, an earlier worker died between 1 and 3, and the batch is
//! cut at exactly the recorded `last`. The replay then produces the same keys
//! and writes nothing twice. A batch that continues the one this worker
//! closed before it skips that read, which would stall the worker's thread
//! for a round trip: a worker writes an intent only once everything before
//! it is committed, so the one intent a dead worker can leave past the
//! committed offset lies at that offset, where reading starts after an
//! assignment or a seek back. After a replay the next batch reads too (after
//! an offset reset, a whole earlier run's intents lie ahead). A live worker
//! racing this one (already fenced by the group) is caught when step 1 finds
//! its intent, and the range is read again from there. Offsets are committed
//! strictly in order, per
//! partition, after the objects holding them are durable: dead letters travel
//! in the batch and are durable with it, so none lets a commit pass it.
//!
//! Steps 1 and 2 run on the uploader thread ([`upload`]) while the partition
//! fills its next batch; step 3 stays on the worker's thread, which owns the
//! consumer. A partition has at most one batch going up, and its next one
//! goes only after that one's commit. When that commit does not happen, the
//! batch read meanwhile is dropped and the range is read again from the
//! uncommitted batch's first offset.

mod coverage;
mod http;
mod notify;
mod sign;
mod spool;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use parquet::file::properties::WriterProperties;

use crate::deadletter::Reason;
use crate::encode::writer_properties;
use crate::integrity::s3::S3Store;
use crate::normalize::{KafkaRef, SourceKind};
use crate::pipeline::{Options, Origin, Stages, Summary};
use crate::redact::Redactor;
use crate::sink::objects::{self, ObjectStore, StoreError};
use crate::source::kafka::{self, Change, GroupConsumer};
use crate::source::s3_notify;
use notify::{INGESTED, fetched_records};
use spool::{Spool, Staged};
use upload::{Done, Job, Outcome, Uploader};

pub use http::{Health, serve};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error("cannot open the archive: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

/// What a run did, for the exit log.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub batches: u64,
    pub messages: u64,
    pub rows: u64,
    pub dead_letters: u64,
    pub objects_created: u64,
    pub objects_existing: u64,
}

/// The intent written before a batch's objects.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    topic: String,
    partition: i32,
    first: i64,
    last: i64,
    objects: Vec<String>,
    /// What the batch writes, with hashes: a replay lists these for the
    /// objects it finds written. Absent in intents of earlier versions.
    #[serde(default)]
    covered: Vec<crate::integrity::chain::Covered>,
}

/// Crash-test hook: `TRAILSHIP_FAILPOINT=<name>:<n>` aborts the process
/// (as kill -9 would stop it) the n-th time it reaches `name`. Unset in
/// production; the crash tests use it to land exactly between the steps of a
/// batch's write.
fn failpoint(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("TRAILSHIP_FAILPOINT").ok()?;
        let (n, k) = v.split_once(':')?;
        Some((n.to_owned(), k.parse().ok()?))
    });
    if let Some((n, k)) = at
        && n == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k
    {
        eprintln!("failpoint {name}:{k}: aborting");
        std::process::abort();
    }
}

fn intent_key(topic: &str, partition: i32, first: i64) -> String {
    format!("_trailship/kafka/{topic}/{partition}/{first:020}.json")
}

/// The object key of a spooled file of the batch `[first, last]`.
fn object_key(s: &Staged, topic: &str, partition: i32, first: i64, last: i64) -> String {
    let name = format!("kafka-{topic}-{partition}-{first:020}-{last:020}");
    match &s.dir {
        Some(dir) => format!("{dir}/{name}.zstd.parquet"),
        None => format!("_dead_letter/{name}.ndjson"),
    }
}

struct Batch {
    first: i64,
    last: i64,
    /// Set when an intent recorded this batch's range before (a replay).
    replay_to: Option<i64>,
    /// That intent as stored.
    replayed: Option<Vec<u8>>,
    messages: u64,
    bytes: u64,
    /// `summary.records_read` when full row groups last went to the spool.
    spool_checked: u64,
    /// Small JSON objects written with the batch, before its commit:
    /// ingest records of fetched log files, digest check results.
    extra: Vec<(String, Vec<u8>)>,
    opened: Instant,
    spool: Spool,
    dir: PathBuf,
    summary: Summary,
}

struct Part<'o> {
    stages: Stages<'o>,
    batch: Option<Batch>,
    /// The batch before `batch`, going up on the uploader thread.
    uploading: Option<InFlight>,
    /// Whether the last batch that went up was committed. When it was not,
    /// the batch after it is dropped: its commit would acknowledge both.
    last_ok: bool,
    committed: Option<i64>,
    /// The offset after the last batch closed here: a batch opening there
    /// continues this worker's own reading and has no intent to read.
    next: Option<i64>,
    /// `trailship_messages_in_total` and `trailship_bytes_in_total` of the
    /// topic, looked up once: a labelled `counter!` allocates and hashes
    /// its key, and these count every message.
    messages_in: metrics::Counter,
    bytes_in: metrics::Counter,
}

impl<'o> Part<'o> {
    fn new(stages: Stages<'o>, topic: &str) -> Self {
        Part {
            stages,
            batch: None,
            uploading: None,
            last_ok: true,
            committed: None,
            next: None,
            messages_in: counter!("trailship_messages_in_total", "topic" => topic.to_owned()),
            bytes_in: counter!("trailship_bytes_in_total", "topic" => topic.to_owned()),
        }
    }
}

/// What the worker keeps of a batch while the uploader writes it: enough to
/// commit it and account for it.
struct InFlight {
    id: u64,
    first: i64,
    last: i64,
    messages: u64,
    opened: Instant,
    flush_started: Instant,
    summary: Summary,
}

/// Pauses between retries of a failing store or commit call: exponential
/// from 100 ms to `max`, with full jitter so that workers do not retry in step.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff { next: Duration::from_millis(100), max }
    }

    fn step(&mut self) -> Duration {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        let frac = f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX);
        let wait = self.next.mul_f64(0.5 + frac / 2.0);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// Calls `op` until it succeeds, counting and logging each failure and
/// backing off between tries (up to `max`); None once `pause` declines to
/// wait the next backoff out (a deadline passed, or the thread is stopping).
fn retry_with<T>(
    max: Duration,
    what: &'static str,
    mut op: impl FnMut() -> Result<T, StoreError>,
    mut pause: impl FnMut(Duration) -> bool,
) -> Option<T> {
    let mut backoff = Backoff::new(max);
    loop {
        match op() {
            Ok(v) => return Some(v),
            Err(e) => {
                counter!("trailship_store_errors_total", "op" => what).increment(1);
                tracing::error!(error = %e, "{what} failed; retrying");
                if !pause(backoff.step()) {
                    return None;
                }
            }
        }
    }
}

pub struct Service<'o> {
    cfg: &'o Config,
    /// In an `Arc` so that a polled message, which borrows the consumer,
    /// does not borrow the service.
    consumer: Arc<GroupConsumer>,
    store: Arc<dyn ObjectStore>,
    uploader: Uploader,
    /// Whether batches are signed into their partitions' digest chains.
    signed: bool,
    upload_seq: u64,
    topic_opts: &'o HashMap<String, Options>,
    redactor: Option<Arc<Redactor>>,
    /// Parquet settings, the same for every topic's objects.
    props: WriterProperties,
    /// Rows for a Security Lake: in time order, and with the trailship
    /// extension's columns only if `Some(true)`.
    lake: Option<bool>,
    parts: HashMap<(String, i32), Part<'o>>,
    spool_root: PathBuf,
    batch_seq: u64,
    shutdown: Arc<AtomicBool>,
    health: Arc<Health>,
    summary: RunSummary,
    /// Messages polled while the service was retrying, to be read again.
    rewind: BTreeMap<(String, i32), i64>,
    /// Reports log files no digest covered in time (its own thread).
    coverage: coverage::Coverage,
    /// CloudTrail's public keys, for the in-stream digest check.
    keys: std::cell::RefCell<crate::integrity::keys::KeySet>,
    cloudtrail: std::cell::OnceCell<Option<crate::integrity::cloudtrail_api::CloudTrailApi>>,
    /// For log files named by S3 notifications; made on first use.
    source_s3: std::cell::OnceCell<S3Store>,
    shutdown_deadline: Option<Instant>,
}

/// Per-topic stage options from the configuration.
pub fn topic_options(cfg: &Config, base: &Options) -> HashMap<String, Options> {
    let mut out = HashMap::new();
    if let Some(k) = &cfg.kafka {
        for t in &k.topics {
            let mut o = base.clone();
            o.source = t.kind.source();
            o.max_buffer_bytes = cfg.batch.max_buffer_bytes;
            o.row_group_bytes = o.row_group_bytes.min(cfg.batch.max_buffer_bytes);
            out.insert(t.name.clone(), o);
        }
    }
    out
}

impl<'o> Service<'o> {
    pub fn new(
        cfg: &'o Config,
        topic_opts: &'o HashMap<String, Options>,
        shutdown: Arc<AtomicBool>,
        health: Arc<Health>,
    ) -> Result<Self, ServiceError> {
        let kcfg = cfg.kafka.as_ref().ok_or_else(|| ServiceError::Config("no [kafka] section".into()))?;
        let base = topic_opts.values().next().ok_or_else(|| ServiceError::Config("no topics".into()))?;
        let props = writer_properties(&base.encode).map_err(|e| ServiceError::Config(e.to_string()))?;
        let redactor = crate::pipeline::redactor(&base.redaction).map_err(ServiceError::Config)?;
        let store: Arc<dyn ObjectStore> = match &cfg.security_lake {
            None => Arc::from(objects::open(&cfg.archive)?),
            Some(l) => {
                let lake = objects::open(&l.store_config(&cfg.archive))?;
                Arc::new(crate::sink::lake::LakeStore::new(objects::open(&cfg.archive)?, lake, &l.sources))
            }
        };
        let keys = match &cfg.source_s3.public_keys_file {
            Some(p) => crate::integrity::keys::KeySet::from_file(p)
                .map_err(|e| ServiceError::Config(format!("[source_s3] public_keys_file: {e}")))?,
            None => crate::integrity::keys::KeySet::default(),
        };
        let spool_root = spool_dir(cfg.archive.spool_dir.as_deref())?;
        let consumer = Arc::new(kafka::subscribe(kcfg)?);
        let dead_letters = match &kcfg.dead_letter_topic {
            Some(t) => Some(Arc::new((t.clone(), kafka::dead_letter_producer(kcfg)?))),
            None => None,
        };
        let max_backoff = Duration::from_secs(cfg.service.max_backoff_s.max(1));
        let signer = match &cfg.integrity.signing_key_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ServiceError::Config(format!("[integrity] signing_key_file {}: {e}", path.display()))
                })?;
                let s = sign::Signer::new(pem, &cfg.integrity.writer_id).map_err(|e| {
                    ServiceError::Config(format!("[integrity] signing_key_file {}: {e}", path.display()))
                })?;
                Some(s.owned_by(consumer.context().assignment()))
            }
            None => None,
        };
        let signed = signer.is_some();
        let uploader = Uploader::start(Arc::clone(&store), dead_letters, max_backoff, signer);
        let coverage = coverage::Coverage::start(Arc::clone(&store), cfg.source_s3.digest_deadline_s, max_backoff);
        tracing::info!(archive = %store.location(), group = %kcfg.group_id, spool = %spool_root.display(), signed, "started");
        Ok(Service {
            cfg,
            consumer,
            store,
            uploader,
            signed,
            upload_seq: 0,
            topic_opts,
            redactor,
            props,
            lake: cfg.security_lake.as_ref().map(|l| l.extension),
            parts: HashMap::new(),
            spool_root,
            batch_seq: 0,
            shutdown,
            health,
            summary: RunSummary::default(),
            rewind: BTreeMap::new(),
            source_s3: std::cell::OnceCell::new(),
            keys: std::cell::RefCell::new(keys),
            coverage,
            cloudtrail: std::cell::OnceCell::new(),
            shutdown_deadline: None,
        })
    }

    /// Consumes until shutdown is requested, then flushes and commits every
    /// open batch within the configured deadline.
    pub fn run(mut self) -> Result<RunSummary, ServiceError> {
        self.health.set_ready(true);
        let mut last_lag = Instant::now();
        let mut last_aged = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            let consumer = Arc::clone(&self.consumer);
            let polled = consumer.poll(Duration::from_millis(200));
            self.apply_changes();
            match polled {
                Some(Ok(msg)) => self.on_message(&msg),
                Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
                None => {}
            }
            self.take_uploaded(Duration::ZERO);
            // Ages are whole seconds: ten looks a second are enough, and
            // spare every message a clock read per partition.
            if last_aged.elapsed() < Duration::from_millis(100) {
                continue;
            }
            last_aged = Instant::now();
            self.health.tick();
            self.flush_aged(false);
            if last_lag.elapsed() >= Duration::from_secs(10) {
                self.report_lag();
                last_lag = Instant::now();
            }
        }
        tracing::info!("shutting down: flushing open batches");
        self.health.set_ready(false);
        let deadline = Instant::now() + Duration::from_secs(self.cfg.service.shutdown_deadline_s);
        self.flush_aged_until(deadline);
        self.wait_uploads(|s| s.parts.values().all(|p| p.uploading.is_none()));
        // Batches of revoked partitions may still be going up.
        self.uploader.stop();
        self.coverage.stop();
        let _ = std::fs::remove_dir_all(&self.spool_root);
        self.consumer.unsubscribe();
        Ok(self.summary)
    }

    fn apply_changes(&mut self) {
        for change in self.consumer.context().take_changes() {
            match change {
                Change::Revoked(list) => {
                    for tp in list {
                        self.uploader.forget(&tp);
                        // A batch going up is left to finish: its
                        // objects are durable, its range is read again.
                        if let Some(part) = self.parts.remove(&tp)
                            && let Some(b) = part.batch
                        {
                            tracing::info!(topic = %tp.0, partition = tp.1, first = b.first, last = b.last, "partition revoked: open batch dropped, uncommitted");
                            Spool::remove(&b.dir);
                        }
                        self.rewind.remove(&tp);
                    }
                }
                Change::Assigned(list) => {
                    tracing::info!(partitions = ?list, "partitions assigned");
                    if self.signed {
                        self.adopt_chains(&list);
                    }
                    for (topic, partition) in list {
                        let Some(opts) = self.topic_opts.get(&topic) else { continue };
                        let stages = Stages::new(opts, self.redactor.clone());
                        let part = Part::new(stages, &topic);
                        self.parts.entry((topic, partition)).or_insert(part);
                    }
                }
            }
        }
    }

    /// Has the uploader list, in each assigned partition's chain, the
    /// batches committed after its newest digest: a worker that died
    /// leaves them waiting, and in a quiet partition no next batch would.
    fn adopt_chains(&self, list: &[(String, i32)]) {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in list {
            let _ = tpl.add_partition(t, *p);
        }
        match self.consumer.committed_offsets(tpl, Duration::from_secs(10)) {
            Ok(got) => {
                for e in got.elements() {
                    if let Offset::Offset(at) = e.offset() {
                        self.uploader.adopt(&(e.topic().to_owned(), e.partition()), at);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read committed offsets; chains are read with their next batch")
            }
        }
    }

    fn part(&mut self, topic: &str, partition: i32) -> Option<&mut Part<'o>> {
        self.parts.get_mut(&(topic.to_owned(), partition))
    }

    fn on_message(&mut self, msg: &BorrowedMessage<'_>) {
        let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
        let tp = (topic.clone(), partition);
        if let Some(&at) = self.rewind.get(&tp) {
            if offset > at {
                return; // read again after the seek below
            }
            self.rewind.remove(&tp);
        }
        // A replayed batch ends exactly where its intent says.
        let cut =
            self.parts.get(&tp).and_then(|p| p.batch.as_ref()).and_then(|b| b.replay_to).is_some_and(|r| offset > r);
        if cut {
            self.flush(&tp);
        }
        if !self.parts.contains_key(&tp) {
            // Only assigned partitions deliver; a message from any other
            // is librdkafka's business, and it is not acknowledged.
            tracing::warn!(
                topic,
                partition,
                offset,
                "message from a partition not assigned here; ignored, uncommitted"
            );
            return;
        }
        if self.parts.get(&tp).is_some_and(|p| p.batch.is_none()) && !self.open_batch(&topic, partition, offset) {
            // Read it again, unless the partition went elsewhere meanwhile:
            // a later message must never open a batch past this one.
            if self.owns(&topic, partition) {
                self.seek(&topic, partition, offset);
            }
            return;
        }
        let max = (self.cfg.batch.max_events, self.cfg.batch.max_bytes);
        let payload = msg.payload().unwrap_or_default();
        // S3 event notifications name log files; fetch them before taking
        // the partition's batch (fetching may wait and retry).
        let kind = self.topic_opts[&topic].source;
        let notified = (matches!(kind, SourceKind::CloudTrail | SourceKind::Auto) && s3_notify::looks_like(payload))
            .then(|| s3_notify::parse(payload))
            .flatten();
        let mut fetched = Vec::new();
        for ev in notified.iter().flatten() {
            match self.fetch(ev) {
                Some(f) => fetched.push(f),
                None => {
                    // Given up (shutting down): this message is not read.
                    if self.owns(&topic, partition) {
                        self.seek(&topic, partition, offset);
                    }
                    return;
                }
            }
        }
        let Some(part) = self.part(&topic, partition) else { return };
        let batch = part.batch.as_mut().expect("opened above");
        let before = batch.summary.records_read;
        let headers: Vec<(String, String)> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let name = format!("kafka://{topic}/{partition}/{offset}");
        let origin = Origin {
            name: &name,
            headers: &header_refs,
            body: Some(payload),
            kafka: Some(KafkaRef { topic: &topic, partition, offset }),
            object: None,
            first_index: 0,
            growing: Default::default(),
        };
        let result = match &notified {
            None => message_records(&mut part.stages, &origin, payload, &mut batch.spool, &mut batch.summary),
            Some(events) if events.is_empty() => {
                // s3:TestEvent, or an event other than object creation.
                batch.summary.records_read += 1;
                batch.summary.filtered += 1;
                Ok(())
            }
            Some(_) => fetched_records(
                &mut part.stages,
                &origin,
                &fetched,
                &mut batch.spool,
                &mut batch.summary,
                &mut batch.extra,
            ),
        };
        let result = result.and_then(|()| {
            if batch.summary.records_read == before {
                // Every message is accounted for, even one that holds no record.
                let (reason, detail) = (Reason::EmptyEnvelope, "message holds no record");
                part.stages.dead_input(&mut batch.spool, &mut batch.summary, reason, detail, &name, payload)
            } else {
                Ok(())
            }
        });
        // Row groups go to the spool as they fill; checking costs a walk of
        // every column, so not after every message.
        let result = result.and_then(|()| {
            if batch.summary.records_read >= batch.spool_checked + 1024 {
                batch.spool_checked = batch.summary.records_read;
                part.stages.flush(&mut batch.spool, false)
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            // The spool is local disk: losing it loses nothing durable, so
            // drop the batch and read the range again.
            tracing::error!(topic = %topic, partition, error = %e, "cannot spool batch; re-reading it");
            let b = part.batch.take().expect("open");
            Spool::remove(&b.dir);
            self.seek(&topic, partition, b.first);
            return;
        }
        batch.last = offset;
        batch.messages += 1;
        batch.bytes += payload.len() as u64;
        part.messages_in.increment(1);
        part.bytes_in.increment(payload.len() as u64);
        let full = match batch.replay_to {
            Some(r) => offset >= r,
            None => batch.messages >= max.0 || batch.bytes >= max.1,
        };
        if full {
            self.flush(&tp);
        }
    }

    /// Starts a batch at `offset`, reading the intent an earlier worker may
    /// have left there unless the batch continues this worker's last one.
    /// False when the partition was revoked meanwhile.
    fn open_batch(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let key = intent_key(topic, partition, offset);
        let found = if self.part(topic, partition).is_some_and(|p| p.next == Some(offset)) {
            None
        } else {
            let Some(found) = self.retry("read intent", |s| s.store.get(&key)) else { return false };
            if !self.owns(topic, partition) {
                return false;
            }
            found
        };
        let body = found;
        let replay_to = match body.as_ref().map(|b| serde_json::from_slice::<Intent>(b)) {
            None => None,
            Some(Ok(i)) if i.first == offset && i.last >= offset => {
                tracing::info!(
                    topic,
                    partition,
                    first = i.first,
                    last = i.last,
                    "replaying a batch an earlier worker did not acknowledge"
                );
                counter!("trailship_batches_replayed_total").increment(1);
                Some(i.last)
            }
            Some(other) => {
                tracing::error!(key, result = ?other.map(|i| (i.first, i.last)), "unreadable batch intent; ignoring it");
                None
            }
        };
        self.batch_seq += 1;
        let dir = self.spool_root.join(format!("{topic}-{partition}-{}", self.batch_seq));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create spool directory");
            return false;
        }
        let (props, lake) = (self.props.clone(), self.lake);
        let part = self.part(topic, partition).expect("configured topic");
        part.batch = Some(Batch {
            first: offset,
            last: offset,
            replayed: replay_to.and(body),
            replay_to,
            messages: 0,
            bytes: 0,
            spool_checked: 0,
            extra: Vec::new(),
            opened: Instant::now(),
            spool: Spool::new(dir.clone(), props).with_lake(lake),
            dir,
            summary: Summary::default(),
        });
        true
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.parts.contains_key(&(topic.to_owned(), partition))
    }

    fn flush_aged(&mut self, all: bool) {
        let max_age = Duration::from_secs(self.cfg.batch.max_age_s);
        let due: Vec<_> = self
            .parts
            .iter()
            .filter(|(_, p)| {
                p.batch.as_ref().is_some_and(|b| all || (b.replay_to.is_none() && b.opened.elapsed() >= max_age))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for tp in due {
            self.flush(&tp);
        }
        let oldest = self.parts.values().filter_map(|p| p.batch.as_ref()).map(|b| b.opened.elapsed()).max();
        gauge!("trailship_oldest_batch_age_seconds").set(oldest.unwrap_or_default().as_secs_f64());
    }

    fn flush_aged_until(&mut self, deadline: Instant) {
        self.shutdown_deadline = Some(deadline);
        self.uploader.set_deadline(deadline);
        self.flush_aged(true);
    }

    /// Closes a partition's open batch and hands it to the uploader, once the
    /// partition's previous batch is committed.
    fn flush(&mut self, tp: &(String, i32)) {
        let Some(part) = self.parts.get_mut(tp) else { return };
        let Some(mut batch) = part.batch.take() else { return };
        let flush_started = Instant::now();
        // The uploader encodes them: the partition's buffers start the next batch.
        let rows = part.stages.take_rows();
        // This batch's commit would acknowledge the previous one's messages
        // too: it waits for that commit, and goes when it does not happen
        // (the previous batch is then read again, and this one after it).
        if !self.settle(tp) {
            Spool::remove(&batch.dir);
            return;
        }
        let mut extra = std::mem::take(&mut batch.extra);
        let ingested: Vec<&str> = extra
            .iter()
            .filter_map(|(key, _)| key.strip_prefix(INGESTED).and_then(|k| k.strip_suffix(".json")))
            .collect();
        if !ingested.is_empty() {
            let marker = coverage::awaiting_marker(self.cfg.source_s3.digest_deadline_s, tp, batch.first, &ingested);
            extra.push(marker);
        }
        self.upload_seq += 1;
        let id = self.upload_seq;
        let (first, last, dir) = (batch.first, batch.last, batch.dir.clone());
        let replay = batch.replay_to.is_some();
        let job =
            Job { id, tp: tp.clone(), first, last, replay, replayed: batch.replayed, rows, spool: batch.spool, extra };
        if self.uploader.send(job).is_err() {
            self.uploader_gone();
            Spool::remove(&dir);
            return;
        }
        let Some(part) = self.parts.get_mut(tp) else { return };
        // After a replay the next batch reads too: a group whose offsets
        // were reset finds a whole run's intents, one per batch.
        part.next = (!replay).then_some(last + 1);
        part.uploading = Some(InFlight {
            id,
            first,
            last,
            messages: batch.messages,
            opened: batch.opened,
            flush_started,
            summary: batch.summary,
        });
    }

    /// Waits until partition `tp` has no batch going up. False when the
    /// one it waited for was not committed.
    fn settle(&mut self, tp: &(String, i32)) -> bool {
        if self.parts.get(tp).is_none_or(|p| p.uploading.is_none()) {
            return true;
        }
        self.wait_uploads(|s| s.parts.get(tp).is_none_or(|p| p.uploading.is_none()));
        self.parts.get(tp).is_some_and(|p| p.last_ok)
    }

    /// Commits uploaded batches until `done` holds. An upload normally takes
    /// well under a second, and the group needs no poll for that long; past
    /// `BLOCK_FOR` (the store is failing) the wait pauses consumption and
    /// polls, as `retry` does, so that the worker keeps its partitions.
    fn wait_uploads(&mut self, done: impl Fn(&Self) -> bool) {
        const BLOCK_FOR: Duration = Duration::from_secs(10);
        let started = Instant::now();
        let mut paused: Option<TopicPartitionList> = None;
        while !done(self) {
            if started.elapsed() < BLOCK_FOR {
                self.health.tick();
                self.take_uploaded(Duration::from_millis(100));
                continue;
            }
            if paused.is_none() {
                paused = Some(self.pause_all());
            }
            self.idle(Duration::from_millis(100));
            self.take_uploaded(Duration::ZERO);
        }
        if let Some(tpl) = paused {
            self.resume_all(&tpl);
        }
    }

    /// Commits the batches the uploader has finished, waiting up to `wait`
    /// for the first.
    fn take_uploaded(&mut self, wait: Duration) {
        let mut wait = wait;
        loop {
            match self.uploader.next(wait) {
                Ok(Some(done)) => self.on_uploaded(done),
                Ok(None) => return,
                Err(upload::Gone) => return self.uploader_gone(),
            }
            wait = Duration::ZERO;
        }
    }

    /// The uploader thread is gone (it panicked): nothing in flight will be
    /// committed, so the worker stops; its successor replays from the intents.
    fn uploader_gone(&mut self) {
        tracing::error!("the uploader thread stopped; shutting down, uncommitted batches are read again");
        for p in self.parts.values_mut() {
            if p.uploading.take().is_some() {
                p.last_ok = false;
            }
        }
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// Commits a batch the uploader wrote, or sends its partition back to
    /// read it again.
    fn on_uploaded(&mut self, done: Done) {
        let Done { id, tp, outcome } = done;
        let (topic, partition) = (tp.0.as_str(), tp.1);
        let Some(b) = self.parts.get_mut(&tp).and_then(|p| p.uploading.take_if(|u| u.id == id)) else {
            // The partition was revoked while its batch went up.
            tracing::warn!(topic, partition, "batch written but not committed (partition revoked)");
            return;
        };
        let (first, last) = (b.first, b.last);
        let mut objects = 0;
        let committed = match outcome {
            Outcome::Written { created, existing, bytes } => {
                objects = created + existing;
                self.summary.objects_created += created;
                self.summary.objects_existing += existing;
                counter!("trailship_objects_total", "result" => "created").increment(created);
                counter!("trailship_objects_total", "result" => "existing").increment(existing);
                counter!("trailship_object_bytes_total").increment(bytes);
                self.commit(&tp, last)
            }
            Outcome::IntentExists => {
                tracing::warn!(topic, partition, first, "batch intent appeared meanwhile; re-reading the range");
                false
            }
            Outcome::SpoolFailed(e) => {
                tracing::error!(topic, partition, error = %e, "cannot finish spooled batch; re-reading it");
                false
            }
            Outcome::GaveUp => false,
        };
        if let Some(p) = self.parts.get_mut(&tp) {
            p.last_ok = committed;
        }
        if !committed {
            self.uploader.forget(&tp);
            // Whatever was read past this batch waits for it: drop it and
            // read again from here.
            if let Some(next) = self.parts.get_mut(&tp).and_then(|p| p.batch.take()) {
                Spool::remove(&next.dir);
            }
            if self.owns(topic, partition) && self.shutdown_deadline.is_none() {
                self.rewind.remove(&tp);
                self.seek(topic, partition, first);
            }
            return;
        }
        self.account(&tp, b, objects);
    }

    /// Commits offset `last + 1`; false when the partition is no longer
    /// this worker's or the shutdown deadline passed.
    fn commit(&mut self, tp: &(String, i32), last: i64) -> bool {
        let (topic, partition) = (tp.0.as_str(), tp.1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(last + 1)).expect("valid offset");
        let committed = self.retry("commit offset", |s| {
            if !s.owns(&tp.0, tp.1) {
                return Ok(false);
            }
            s.consumer.commit(&tpl, CommitMode::Sync).map(|()| true).map_err(|e| StoreError {
                op: "commit",
                key: format!("{topic}/{partition}@{}", last + 1),
                detail: e.to_string(),
            })
        });
        failpoint("after_commit");
        if committed != Some(true) {
            // The objects are durable and the intent names them: whoever
            // reads this range next replays it onto the same keys.
            tracing::warn!(
                topic,
                partition,
                last,
                "batch written but not committed (partition revoked or shutting down)"
            );
        }
        committed == Some(true)
    }

    /// Counts a committed batch in the summary and the metrics.
    fn account(&mut self, tp: &(String, i32), b: InFlight, objects: u64) {
        let topic = tp.0.as_str();
        let s = &b.summary;
        self.summary.batches += 1;
        self.summary.messages += b.messages;
        self.summary.rows += s.rows_total();
        self.summary.dead_letters += s.dead_total();
        counter!("trailship_events_in_total", "topic" => topic.to_owned()).increment(s.records_read);
        for (class, n) in &s.rows {
            counter!("trailship_events_out_total", "topic" => topic.to_owned(), "class" => class.dataset())
                .increment(*n);
        }
        for (reason, n) in &s.dead_letters {
            counter!("trailship_dead_letters_total", "topic" => topic.to_owned(), "reason" => reason.as_str())
                .increment(*n);
        }
        if s.filtered > 0 {
            counter!("trailship_events_filtered_total", "topic" => topic.to_owned()).increment(s.filtered);
        }
        if let Some(r) = &self.redactor {
            for (kind, n) in r.totals() {
                counter!("trailship_redactions_total", "type" => kind).absolute(n);
            }
        }
        histogram!("trailship_batch_age_seconds").record(b.opened.elapsed().as_secs_f64());
        gauge!("trailship_committed_offset", "topic" => topic.to_owned(), "partition" => tp.1.to_string())
            .set((b.last + 1) as f64);
        if let Some(p) = self.parts.get_mut(tp) {
            p.committed = Some(b.last + 1);
        }
        tracing::debug!(
            topic,
            partition = tp.1,
            first = b.first,
            last = b.last,
            objects,
            rows = s.rows_total(),
            age_ms = b.opened.elapsed().as_millis() as u64,
            flush_ms = b.flush_started.elapsed().as_millis() as u64,
            "batch committed"
        );
    }

    /// Calls `op` until it succeeds, pausing consumption and backing off
    /// between failures. None when giving up is right: past the shutdown
    /// deadline (nothing is committed, so nothing is lost).
    fn retry<T>(&mut self, what: &'static str, mut op: impl FnMut(&Self) -> Result<T, StoreError>) -> Option<T> {
        let mut backoff = Backoff::new(Duration::from_secs(self.cfg.service.max_backoff_s.max(1)));
        let mut paused: Option<TopicPartitionList> = None;
        let result = loop {
            match op(self) {
                Ok(v) => break Some(v),
                Err(e) => {
                    counter!("trailship_store_errors_total", "op" => what).increment(1);
                    tracing::error!(error = %e, "{what} failed; retrying");
                    if paused.is_none() {
                        paused = Some(self.pause_all());
                    }
                    let wait = backoff.step();
                    if self.past_deadline(wait) {
                        break None;
                    }
                    self.idle(wait);
                }
            }
        };
        if let Some(tpl) = paused {
            self.resume_all(&tpl);
        }
        result
    }

    /// Stops fetching for every assigned partition while the store fails
    /// (the group keeps the worker's partitions as long as it polls);
    /// returns what to resume.
    fn pause_all(&self) -> TopicPartitionList {
        let tpl = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.pause(&tpl);
        gauge!("trailship_paused").set(1.0);
        self.health.set_ready(false);
        tpl
    }

    fn resume_all(&self, tpl: &TopicPartitionList) {
        let _ = self.consumer.resume(tpl);
        gauge!("trailship_paused").set(0.0);
        self.health.set_ready(true);
    }

    fn past_deadline(&self, wait: Duration) -> bool {
        self.shutdown_deadline.is_some_and(|d| Instant::now() + wait >= d)
    }

    /// Waits while serving the group (heartbeats, rebalances). A message
    /// polled meanwhile, from a partition assigned during the wait and not
    /// paused, is read again later by seeking back to it.
    fn idle(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            self.health.tick();
            let consumer = Arc::clone(&self.consumer);
            if let Some(Ok(m)) =
                consumer.poll(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())))
            {
                let tp = (m.topic().to_owned(), m.partition());
                let at = m.offset();
                drop(m);
                if !self.rewind.contains_key(&tp) {
                    self.rewind.insert(tp.clone(), at);
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition(&tp.0, tp.1);
                    let _ = self.consumer.pause(&tpl);
                    self.seek(&tp.0, tp.1, at);
                }
            }
        }
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10)) {
            tracing::error!(topic, partition, offset, error = %e, "cannot seek; restarting the worker re-reads from the last commit");
            self.shutdown.store(true, Ordering::Relaxed);
        }
    }

    /// Consumer lag from what this worker committed and the partitions' end offsets.
    fn report_lag(&self) {
        for ((topic, partition), part) in &self.parts {
            let Some(committed) = part.committed else { continue };
            if let Ok((_, high)) = self.consumer.fetch_watermarks(topic, *partition, Duration::from_secs(1)) {
                gauge!("trailship_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                    .set((high - committed).max(0) as f64);
            }
        }
    }
}

/// Frames one message's value (gzip or not) into the stages.
fn message_records(
    stages: &mut Stages<'_>,
    origin: &Origin<'_>,
    payload: &[u8],
    spool: &mut Spool,
    summary: &mut Summary,
) -> Result<(), crate::sink::SinkError> {
    let limits = stages.limits();
    if payload.starts_with(&[0x1f, 0x8b]) {
        // Compressed envelopes (CloudWatch Logs subscriptions, log files)
        // inflate to at most this much; beyond it is a bomb, not a batch.
        let cap = (limits.max_record_bytes as u64).saturating_mul(16);
        let mut text = Vec::new();
        if crate::source::gzip::inflate_member(payload, &mut text, cap as usize).is_some() {
            return stages.input_text(origin, &text, spool, summary);
        }
        text.clear();
        let read = std::io::Read::read_to_end(
            &mut std::io::Read::take(flate2::read::MultiGzDecoder::new(payload), cap + 1),
            &mut text,
        );
        let failed = match read {
            Err(e) => Some((Reason::CorruptGzip, format!("cannot inflate message: {e}"))),
            Ok(_) if text.len() as u64 > cap => Some((Reason::Oversized, format!("inflates past {cap} bytes"))),
            Ok(_) => None,
        };
        if let Some((reason, detail)) = failed {
            return stages.dead_input(spool, summary, reason, &detail, origin.name, b"");
        }
        return stages.input_text(origin, &text, spool, summary);
    }
    stages.input_text(origin, payload, spool, summary)
}

/// This process's spool directory, under `root` (default: the system's
/// temporary directory). Directories left by dead processes are removed.
fn spool_dir(root: Option<&Path>) -> Result<PathBuf, ServiceError> {
    let root = root.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join("trailship-spool"));
    std::fs::create_dir_all(&root).map_err(|e| ServiceError::Io(format!("{}: {e}", root.display())))?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let dir = root.join(format!("{}-{}", std::process::id(), hex::encode(r)));
    std::fs::create_dir_all(&dir).map_err(|e| ServiceError::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_offset_and_name_the_range() {
        let s =
            |dir: Option<&str>| Staged { dir: dir.map(str::to_owned), path: PathBuf::new(), sha256: [0; 32], bytes: 0 };
        assert_eq!(
            object_key(&s(Some("api_activity/region=us-east-1/accountId=1/eventDay=20250101")), "ct", 3, 7, 12),
            "api_activity/region=us-east-1/accountId=1/eventDay=20250101/kafka-ct-3-00000000000000000007-00000000000000000012.zstd.parquet"
        );
        assert_eq!(
            object_key(&s(None), "ct", 3, 7, 12),
            "_dead_letter/kafka-ct-3-00000000000000000007-00000000000000000012.ndjson"
        );
        assert!(intent_key("ct", 0, 9) < intent_key("ct", 0, 10));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let waits: Vec<_> = (0..8).map(|_| b.step()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        assert!(waits[7] >= Duration::from_secs(1), "{waits:?}");
    }
}
