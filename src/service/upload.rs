//! The uploader: a closed batch's last rows are encoded and its intent,
//! objects and records go to the store on a thread of its own, so that the
//! worker consumes the next batch meanwhile. Before it, a worker stood idle
//! for every upload: a third of its time against moto, more against S3,
//! whose PUTs are round trips of tens of milliseconds (benches/README.md,
//! "Kafka → S3").
//!
//! The thread only writes. Everything the consumer owns stays on the
//! worker's thread: commits, seeks, pauses, the partitions' batches. Jobs
//! run in the order they are sent, one at a time, and the worker sends a
//! partition's next batch only once the previous one is committed, so
//! commits stay in offset order.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use metrics::histogram;

use super::sign::{self, Signer};
use super::spool::{Spool, Staged};
use super::{Intent, failpoint, intent_key, object_key};
use crate::batch::PartitionKey;
use crate::integrity::chain::Covered;
use crate::sink::RowSink;
use crate::sink::objects::{ObjectStore, Put, StoreError};
use crate::source::kafka::DeadLetterProducer;

/// The dead-letter topic and its producer, when `[kafka] dead_letter_topic` is set.
pub(super) type DeadLetters = (String, DeadLetterProducer);

/// Objects of one batch in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

/// One batch to make durable.
pub(super) struct Job {
    /// Tells this batch from a later one of the same partition.
    pub id: u64,
    pub tp: (String, i32),
    pub first: i64,
    pub last: i64,
    /// Whether the range's intent exists already (a replay).
    pub replay: bool,
    /// That intent as stored, when it is one: the hashes of the objects
    /// the batch finds already written.
    pub replayed: Option<Vec<u8>>,
    /// Rows not yet in the spool, by partition: encoded here, which takes
    /// a fifth of a worker's time off its thread.
    pub rows: Vec<(PartitionKey, RecordBatch)>,
    pub spool: Spool,
    /// Small JSON objects written after the objects (ingest records, digest
    /// check results).
    pub extra: Vec<(String, Vec<u8>)>,
}

pub(super) enum Outcome {
    /// Every object and record is in the store: the batch may be committed.
    Written { created: u64, existing: u64, bytes: u64 },
    /// The spool could not be finished (local disk): nothing was written,
    /// and the batch is read again.
    SpoolFailed(String),
    /// Another worker wrote this range's intent since the batch opened (a
    /// rebalance raced): its range wins, and this one is read again.
    IntentExists,
    /// Failing past the shutdown deadline: nothing more was written.
    GaveUp,
}

pub(super) struct Done {
    pub id: u64,
    pub tp: (String, i32),
    pub outcome: Outcome,
}

enum Msg {
    Job(Box<Job>),
    /// A partition's digest chain is to be read from the store again.
    Forget((String, i32)),
    /// A partition was assigned, committed up to this offset.
    Adopt((String, i32), i64),
}

/// The uploader thread, seen from the worker.
pub(super) struct Uploader {
    jobs: Option<Sender<Msg>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

/// The uploader thread stopped (it panicked): nothing more will complete.
#[derive(Debug)]
pub(super) struct Gone;

impl Uploader {
    /// `signer`: sign each batch into its partition's digest chain.
    pub fn start(
        store: Arc<dyn ObjectStore>,
        dead_letters: Option<Arc<DeadLetters>>,
        max_backoff: Duration,
        signer: Option<Signer>,
    ) -> Uploader {
        let (jobs, queue) = mpsc::channel::<Msg>();
        let (report, done) = mpsc::channel();
        let deadline = Arc::new(Mutex::new(None));
        let mut ctx = Ctx { store, dead_letters, max_backoff, deadline: Arc::clone(&deadline), signer };
        let thread = std::thread::Builder::new()
            .name("uploader".into())
            .spawn(move || {
                ctx.with_signer(|s, io| s.publish_key(io));
                loop {
                    let job = match queue.recv_timeout(Duration::from_millis(250)) {
                        Ok(Msg::Job(job)) => *job,
                        Ok(Msg::Forget(tp)) => {
                            ctx.with_signer(|s, io| s.seal_leaving(io, &tp));
                            continue;
                        }
                        Ok(Msg::Adopt(tp, committed)) => {
                            ctx.with_signer(|s, io| s.adopt(io, &tp, committed));
                            continue;
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            ctx.with_signer(|s, io| s.seal_waiting(io, false));
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            ctx.with_signer(|s, io| s.seal_waiting(io, true));
                            break;
                        }
                    };
                    let (id, tp) = (job.id, job.tp.clone());
                    let outcome = ctx.upload(job);
                    if report.send(Done { id, tp, outcome }).is_err() {
                        break;
                    }
                    ctx.with_signer(|s, io| s.seal_waiting(io, false));
                }
            })
            .expect("spawn the uploader thread");
        Uploader { jobs: Some(jobs), done, thread: Some(thread), deadline }
    }

    pub fn send(&self, job: Job) -> Result<(), Gone> {
        self.jobs.as_ref().expect("running").send(Msg::Job(Box::new(job))).map_err(|_| Gone)
    }

    /// The partition was assigned, committed up to `committed`: its chain
    /// is read now, and what was committed after its newest digest listed.
    pub fn adopt(&self, tp: &(String, i32), committed: i64) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Msg::Adopt(tp.clone(), committed));
        }
    }

    /// The partition's digest chain is read from the store again before its
    /// next batch: it was revoked, or a batch of it was not committed.
    pub fn forget(&self, tp: &(String, i32)) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Msg::Forget(tp.clone()));
        }
    }

    /// The next completed batch, waiting up to `wait` for one.
    pub fn next(&self, wait: Duration) -> Result<Option<Done>, Gone> {
        if wait.is_zero() {
            // Asked after every message: no clock read.
            return match self.done.try_recv() {
                Ok(d) => Ok(Some(d)),
                Err(mpsc::TryRecvError::Empty) => Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => Err(Gone),
            };
        }
        match self.done.recv_timeout(wait) {
            Ok(d) => Ok(Some(d)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Gone),
        }
    }

    /// From now on a failing write is given up once its next try would
    /// start past `at`.
    pub fn set_deadline(&self, at: Instant) {
        *self.deadline.lock().expect("not poisoned") = Some(at);
    }

    /// Lets the queued jobs finish (or give up at the deadline) and joins
    /// the thread.
    pub fn stop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Ctx {
    store: Arc<dyn ObjectStore>,
    dead_letters: Option<Arc<DeadLetters>>,
    max_backoff: Duration,
    deadline: Arc<Mutex<Option<Instant>>>,
    signer: Option<Signer>,
}

impl Ctx {
    fn upload(&mut self, job: Job) -> Outcome {
        // Removed once its files are up, or given up.
        let dir = job.spool.dir().to_path_buf();
        let outcome = self.write(job);
        Spool::remove(&dir);
        outcome
    }

    fn write(&mut self, job: Job) -> Outcome {
        let Job { tp: (topic, partition), first, last, replay, replayed, rows, mut spool, extra, .. } = job;
        let staged = rows.iter().try_for_each(|(key, batch)| spool.write(key, batch)).and_then(|()| spool.finish());
        let mut staged = match staged {
            Ok(s) => s,
            Err(e) => return Outcome::SpoolFailed(e.to_string()),
        };
        if let Some(dl) = &self.dead_letters
            && let Some(i) = staged.iter().position(|s| s.dir.is_none())
        {
            let dead = staged.remove(i);
            let produced = || produce_dead_letters(dl, &dead.path, &topic, partition, first);
            if self.retry("deliver dead letters", produced).is_none() {
                return Outcome::GaveUp;
            }
        }
        let keys: Vec<String> = staged.iter().map(|s| object_key(s, &topic, partition, first, last)).collect();
        // What this batch writes, as a digest lists it: objects and the
        // records outside trailship's own state.
        let mut covered: Vec<Covered> = staged
            .iter()
            .zip(&keys)
            .map(|(s, k)| Covered { key: k.clone(), sha256: hex::encode(s.sha256), bytes: s.bytes })
            .collect();
        covered.extend(extra.iter().filter(|(k, _)| !k.starts_with("_trailship/")).map(|(k, b)| sign::covered(k, b)));
        let intent_key = intent_key(&topic, partition, first);
        let intent_body = match &replayed {
            Some(body) => body.clone(),
            None => {
                let intent = Intent {
                    topic: topic.clone(),
                    partition,
                    first,
                    last,
                    objects: keys.clone(),
                    covered: covered.clone(),
                };
                serde_json::to_vec(&intent).expect("serialises")
            }
        };
        if !replay {
            let (key, body) = (&intent_key, &intent_body);
            match self.retry("write intent", || self.store.put_bytes(key, body)) {
                None => return Outcome::GaveUp,
                Some(Put::Exists) => return Outcome::IntentExists,
                Some(Put::Created) => failpoint("after_intent"),
            }
        }
        // A batch spans many partitions (class, region, account, day), so it
        // is many objects: they go up together, and any that fail are then
        // retried one by one with backoff.
        let (mut created, mut existing, mut bytes) = (0, 0, 0);
        // What a replay finds written: its digest lists what is stored.
        let mut found = Vec::new();
        let first_try = put_concurrently(&*self.store, &staged, &keys, UPLOAD_CONCURRENCY);
        for ((s, key), tried) in staged.iter().zip(&keys).zip(first_try) {
            let put = match tried {
                Ok(put) => put,
                Err(e) => {
                    tracing::warn!(error = %e, "write object failed; retrying");
                    let Some(put) =
                        self.retry("write object", || self.store.put_file(key, &s.path, &s.sha256, s.bytes))
                    else {
                        return Outcome::GaveUp;
                    };
                    put
                }
            };
            match put {
                Put::Created => created += 1,
                Put::Exists => {
                    existing += 1;
                    found.push(key.clone());
                }
            }
            bytes += s.bytes;
        }
        for (key, body) in &extra {
            match self.retry("write record", || self.store.put_bytes(key, body)) {
                None => return Outcome::GaveUp,
                Some(Put::Exists) => found.push(key.clone()),
                Some(Put::Created) => {}
            }
        }
        if let Some(mut signer) = self.signer.take() {
            let batch = sign::Batch {
                tp: (topic, partition),
                first,
                last,
                intent: sign::covered(&intent_key, &intent_body),
                covered,
                replayed: replayed.as_deref(),
                found,
            };
            let signed = signer.sign(&*self, batch);
            self.signer = Some(signer);
            if signed.is_none() {
                return Outcome::GaveUp;
            }
        }
        Outcome::Written { created, existing, bytes }
    }

    /// Runs `f` with the signer, when batches are signed.
    fn with_signer(&mut self, f: impl FnOnce(&mut Signer, &Ctx)) {
        if let Some(mut s) = self.signer.take() {
            f(&mut s, self);
            self.signer = Some(s);
        }
    }

    /// Calls `op` until it succeeds, backing off between failures. None when
    /// its next try would start past the shutdown deadline.
    fn retry<T>(&self, what: &'static str, op: impl FnMut() -> Result<T, StoreError>) -> Option<T> {
        super::retry_with(self.max_backoff, what, op, |wait| {
            let deadline = *self.deadline.lock().expect("not poisoned");
            if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                return false;
            }
            std::thread::sleep(wait);
            true
        })
    }
}

impl sign::Io for Ctx {
    fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    fn retry<T>(&self, what: &'static str, op: impl FnMut() -> Result<T, StoreError>) -> Option<T> {
        Ctx::retry(self, what, op)
    }
}

/// Produces a batch's dead letters to the dead-letter topic and waits
/// until every one is acknowledged. Each message's key names the batch
/// and line, so a replayed batch repeats keys, not new ones.
fn produce_dead_letters(
    (dlq, producer): &DeadLetters,
    path: &Path,
    topic: &str,
    partition: i32,
    first: i64,
) -> Result<(), StoreError> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};
    let fail = |detail: String| StoreError { op: "produce dead letters to", key: dlq.clone(), detail };
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let before = producer.context().failed.load(Ordering::Relaxed);
    for (i, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        let reason = v["reason"].as_str().unwrap_or("");
        let source = v["source"]["file"].as_str().unwrap_or("");
        let partition_s = partition.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "trailship-reason", value: Some(reason) })
            .insert(Header { key: "trailship-source", value: Some(source) })
            .insert(Header { key: "trailship-topic", value: Some(topic) })
            .insert(Header { key: "trailship-partition", value: Some(partition_s.as_str()) });
        let key = format!("{topic}/{partition}/{first}/{i}");
        let mut rec = BaseRecord::to(dlq).key(&key).payload(line).headers(headers);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    producer.poll(Duration::from_millis(10));
                    rec = r;
                }
                Err((e, _)) => return Err(fail(e.to_string())),
            }
        }
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| fail(e.to_string()))?;
    match producer.context().failed.load(Ordering::Relaxed) - before {
        0 => Ok(()),
        n => Err(fail(format!("{n} not acknowledged"))),
    }
}

/// One attempt at each object, `n` at a time, each timed into
/// `trailship_store_put_seconds`.
fn put_concurrently(
    store: &dyn ObjectStore,
    staged: &[Staged],
    keys: &[String],
    n: usize,
) -> Vec<Result<Put, StoreError>> {
    use std::sync::atomic::AtomicUsize;
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Put, StoreError>>>> = keys.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| {
        for _ in 0..n.min(keys.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(s), Some(key)) = (staged.get(i), keys.get(i)) else { break };
                    let started = Instant::now();
                    let r = store.put_file(key, &s.path, &s.sha256, s.bytes);
                    histogram!("trailship_store_put_seconds").record(started.elapsed().as_secs_f64());
                    *results[i].lock().expect("not poisoned") = Some(r);
                    failpoint("after_object");
                }
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().expect("not poisoned").expect("every index tried")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::sink::objects::LocalObjects;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trailship-upload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Batch `n` of offsets `first..=last`: a row for each of two
    /// partitions, not yet encoded, spooled under `spool/<n>`.
    fn job(spool: &Path, n: u64, first: i64, last: i64) -> Job {
        use arrow_array::{Int64Array, RecordBatch};
        let dir = spool.join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let rows = (0..2)
            .map(|i| {
                let key = PartitionKey {
                    class: crate::ocsf::Class::ApiActivity,
                    region: format!("r{i}"),
                    account: "1".into(),
                    day: 20240301,
                };
                let col: arrow_array::ArrayRef = Arc::new(Int64Array::from(vec![first]));
                (key, RecordBatch::try_from_iter([("offset", col)]).unwrap())
            })
            .collect();
        let spool = Spool::new(dir, parquet::file::properties::WriterProperties::default());
        let extra = vec![(format!("_records/{n}.json"), b"{}".to_vec())];
        Job { id: n, tp: ("ct".into(), 0), first, last, replay: false, replayed: None, rows, spool, extra }
    }

    fn object(root: &Path, region: usize, first: i64, last: i64) -> PathBuf {
        root.join(format!(
            "archive/api_activity/region=r{region}/accountId=1/eventDay=20240301/kafka-ct-0-{first:020}-{last:020}.zstd.parquet"
        ))
    }

    fn done(u: &Uploader) -> Done {
        u.next(Duration::from_secs(30)).unwrap().expect("an upload completes")
    }

    /// `validate-digests --archive` over a local archive, with the keys its
    /// workers published (and how many), nothing pending.
    fn validate(archive: &Path) -> (crate::integrity::validate::Report, usize) {
        use crate::integrity::archive::{ArchiveOptions, validate_archive};
        use crate::integrity::keys::KeySet;
        let mut keys = KeySet::default();
        for f in std::fs::read_dir(archive.join(crate::integrity::chain::PUBLIC_KEYS_DIR)).unwrap().flatten() {
            keys.extend(KeySet::from_list_public_keys_json(&std::fs::read_to_string(f.path()).unwrap()).unwrap());
        }
        let opts = ArchiveOptions {
            bucket: String::new(),
            prefix: String::new(),
            location: archive.display().to_string(),
            concurrency: 2,
            now_ms: crate::sink::now_ms(),
            grace_ms: 0,
            progress: false,
        };
        let store = crate::integrity::store::LocalStore::new(archive);
        (validate_archive(&store, &keys, &opts).unwrap(), keys.len())
    }

    #[test]
    fn batches_go_up_in_order_and_a_taken_range_is_refused() {
        let root = scratch("order");
        let store = Arc::new(LocalObjects::open(&root.join("archive")).unwrap());
        let mut u = Uploader::start(store, None, Duration::from_secs(1), None);
        // The third batch opens where the first did, so the first's intent has its range.
        for (n, first, last) in [(1, 0, 9), (2, 10, 19), (3, 0, 5)] {
            u.send(job(&root.join("spool"), n, first, last)).unwrap();
        }
        for (n, first, last) in [(1, 0, 9), (2, 10, 19)] {
            let d = done(&u);
            assert_eq!(d.id, n);
            assert!(matches!(d.outcome, Outcome::Written { created: 2, existing: 0, .. }));
            for region in 0..2 {
                let body = std::fs::read(object(&root, region, first, last)).unwrap();
                assert!(body.starts_with(b"PAR1") && body.ends_with(b"PAR1"), "encoded on the uploader");
            }
            let intent = root.join(format!("archive/_trailship/kafka/ct/0/{first:020}.json"));
            let intent: serde_json::Value = serde_json::from_slice(&std::fs::read(intent).unwrap()).unwrap();
            assert_eq!((intent["first"].as_i64(), intent["last"].as_i64()), (Some(first), Some(last)));
            assert_eq!(intent["objects"].as_array().map(Vec::len), Some(2));
            assert!(root.join(format!("archive/_records/{n}.json")).exists());
            assert!(!root.join(format!("spool/{n}")).exists(), "spool {n} removed");
        }
        let d = done(&u);
        assert!(d.id == 3 && matches!(d.outcome, Outcome::IntentExists));
        assert!(!object(&root, 0, 0, 5).exists(), "nothing of a refused batch is written");
        assert!(!root.join("spool/3").exists());
        u.stop();
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Runs before a write (given its key), and may fail or hold it.
    type BeforeWrite = Box<dyn Fn(&str) -> Result<(), StoreError> + Send + Sync>;

    /// A local store that runs `before` ahead of every write.
    struct Hooked {
        inner: LocalObjects,
        before: BeforeWrite,
    }

    impl Hooked {
        fn new(root: &Path, before: impl Fn(&str) -> Result<(), StoreError> + Send + Sync + 'static) -> Hooked {
            Hooked { inner: LocalObjects::open(root).unwrap(), before: Box::new(before) }
        }
    }

    impl ObjectStore for Hooked {
        fn put_file(&self, key: &str, path: &Path, sha256: &[u8; 32], bytes: u64) -> Result<Put, StoreError> {
            (self.before)(key)?;
            self.inner.put_file(key, path, sha256, bytes)
        }
        fn put_bytes(&self, key: &str, body: &[u8]) -> Result<Put, StoreError> {
            (self.before)(key)?;
            self.inner.put_bytes(key, body)
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn location(&self) -> String {
            self.inner.location()
        }
        fn put_bytes_with_metadata(
            &self,
            key: &str,
            body: &[u8],
            metadata: &std::collections::BTreeMap<String, String>,
        ) -> Result<Put, StoreError> {
            (self.before)(key)?;
            self.inner.put_bytes_with_metadata(key, body, metadata)
        }
        fn get_with_metadata(&self, key: &str) -> Result<Option<crate::integrity::store::Object>, StoreError> {
            self.inner.get_with_metadata(key)
        }
        fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix, after)
        }
    }

    /// A store over `root` whose writes of the keys `which` picks wait while
    /// the returned flag is set.
    fn held_while_set(
        root: &Path,
        which: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (Arc<Hooked>, Arc<std::sync::atomic::AtomicBool>) {
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hold = Arc::clone(&held);
        let store = Hooked::new(root, move |key| {
            while which(key) && hold.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });
        (Arc::new(store), held)
    }

    #[test]
    fn failing_writes_are_retried_and_given_up_only_past_the_deadline() {
        let root = scratch("flaky");
        // Fails its first `fail` writes (every one when `usize::MAX`), counting them.
        let flaky = |fail: usize| {
            let calls = Arc::new(AtomicUsize::new(0));
            let count = Arc::clone(&calls);
            let store = Hooked::new(&root.join("archive"), move |key| {
                if count.fetch_add(1, Ordering::Relaxed) < fail {
                    return Err(StoreError { op: "put", key: key.into(), detail: "unavailable".into() });
                }
                Ok(())
            });
            (Arc::new(store), calls)
        };
        // The first three writes fail (the intent's first three tries); then all go up.
        let (store, calls) = flaky(3);
        let mut u = Uploader::start(store, None, Duration::from_millis(200), None);
        u.send(job(&root.join("spool"), 1, 0, 9)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 2, .. }));
        // Four tries of the intent, two objects, one record.
        assert_eq!(calls.load(Ordering::Relaxed), 7);
        assert!(object(&root, 0, 0, 9).exists() && object(&root, 1, 0, 9).exists());
        u.stop();
        // A store that never recovers: the batch is given up once the
        // deadline passes, and not before it is set.
        let mut u = Uploader::start(flaky(usize::MAX).0, None, Duration::from_millis(200), None);
        u.send(job(&root.join("spool"), 2, 10, 19)).unwrap();
        assert!(u.next(Duration::from_millis(700)).unwrap().is_none(), "still retrying");
        u.set_deadline(Instant::now() + Duration::from_millis(300));
        assert!(matches!(done(&u).outcome, Outcome::GaveUp));
        assert!(!root.join(format!("archive/_trailship/kafka/ct/0/{:020}.json", 10)).exists());
        assert!(!root.join("spool/2").exists());
        u.stop();
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn signed_batches_chain_into_digests_the_validator_accepts() {
        let root = scratch("signed");
        let archive = root.join("archive");
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        let signer = Signer::new(crate::integrity::chain::generate_ed25519_pem().into_bytes(), "w").unwrap();
        let mut u = Uploader::start(store.clone(), None, Duration::from_secs(1), Some(signer));
        u.send(job(&root.join("spool"), 1, 0, 9)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 2, .. }));
        u.send(job(&root.join("spool"), 2, 10, 19)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 2, .. }));
        u.stop();
        assert_eq!(store.list("_digests/w.ct.0/", None).unwrap().len(), 2);
        // The partition's next owner, with a key of its own, replays the
        // second batch (its worker died between digest and commit): the
        // newest digest lists it, so it is not listed again. Its next batch
        // continues the chain.
        let signer = Signer::new(crate::integrity::chain::generate_ed25519_pem().into_bytes(), "w").unwrap();
        let mut u = Uploader::start(store.clone(), None, Duration::from_secs(1), Some(signer));
        let replay = |n: u64, record: &str| {
            let mut j = job(&root.join("spool"), n, 10, 19);
            j.replay = true;
            j.replayed = store.get("_trailship/kafka/ct/0/00000000000000000010.json").unwrap();
            j.extra = vec![(record.to_owned(), b"{}".to_vec())];
            j
        };
        u.send(replay(3, "_records/2.json")).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 0, existing: 2, .. }));
        assert_eq!(store.list("_digests/w.ct.0/", None).unwrap().len(), 2, "the replay is listed once");
        // A replay that writes what the first attempt did not: the next
        // digest lists that (the validator below finds nothing unlisted).
        u.send(replay(4, "_records/new.json")).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 0, existing: 2, .. }));
        u.send(job(&root.join("spool"), 5, 20, 29)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 2, .. }));
        u.stop();
        // Digests a second apart at most: batches in the same second share one.
        let digests = store.list("_digests/w.ct.0/", None).unwrap().len();
        assert!((3..=4).contains(&digests), "{digests}");
        let (r, keys) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.digests.valid, digests);
        // Two keys published, one a worker.
        assert_eq!(keys, 2);
    }

    #[test]
    fn batches_committed_after_the_newest_digest_are_listed_by_the_next_owner() {
        let root = scratch("signed-gap");
        let archive = root.join("archive");
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        let pem = crate::integrity::chain::generate_ed25519_pem().into_bytes();
        let tp = ("ct".to_owned(), 0);
        let mut u =
            Uploader::start(store.clone(), None, Duration::from_secs(1), Some(Signer::new(pem.clone(), "w").unwrap()));
        u.send(job(&root.join("spool"), 1, 0, 9)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { .. }));
        u.send(job(&root.join("spool"), 2, 10, 19)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { .. }));
        // The partition goes elsewhere before the second batch's digest:
        // it was committed, and only its intent says what it wrote.
        u.forget(&tp);
        u.stop();
        let first_digests = store.list("_digests/w.ct.0/", None).unwrap();
        let mut u = Uploader::start(store.clone(), None, Duration::from_secs(1), Some(Signer::new(pem, "w").unwrap()));
        u.send(job(&root.join("spool"), 3, 20, 29)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { .. }));
        u.stop();
        assert!(store.list("_digests/w.ct.0/", None).unwrap().len() > first_digests.len());
        let (r, _) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        // Three batches of two objects and a record, and their intents.
        assert_eq!(r.objects.map(|o| o.valid), Some(12), "{r:#?}");
    }

    /// A rebalance hands a partition on while its old owner has a committed
    /// batch waiting for a digest and another going up, slowly. Were the
    /// old owner to seal once the new one had, both digests would follow
    /// the same predecessor: a fork, which the validator reports as a
    /// digest outside the chain.
    #[test]
    fn a_revoked_partition_is_sealed_by_its_next_owner_alone() {
        use crate::source::kafka::Assignment;
        let root = scratch("revoked");
        let (archive, spool) = (root.join("archive"), root.join("spool"));
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        // The old owner's writes wait while `held` is set.
        let (gated, held) = held_while_set(&archive, |_| true);
        let tp = ("ct".to_owned(), 0);
        let digests = || store.list("_digests/w.ct.0/", None).unwrap();
        let owner = |store: Arc<dyn ObjectStore>, assignment: &Arc<Assignment>| {
            let pem = crate::integrity::chain::generate_ed25519_pem().into_bytes();
            let signer = Signer::new(pem, "w").unwrap().owned_by(Arc::clone(assignment));
            Uploader::start(store, None, Duration::from_secs(1), Some(signer))
        };
        let old = Arc::new(Assignment::default());
        old.add(std::slice::from_ref(&tp));
        let mut a = owner(gated.clone(), &old);
        // Early in a second, so that the second batch lands in the second
        // the first one's digest ends in, and waits.
        let into_second = crate::sink::now_ms().rem_euclid(1000);
        if into_second > 100 {
            std::thread::sleep(Duration::from_millis(1010 - into_second as u64));
        }
        for (n, first, last) in [(1, 0, 9), (2, 10, 19)] {
            a.send(job(&spool, n, first, last)).unwrap();
            assert!(matches!(done(&a).outcome, Outcome::Written { .. }));
        }
        // The second batch waits, committed (on a machine slow enough to
        // cross the second it is sealed, and only the held batch races).
        // The group revokes the partition: the old owner's callback drops
        // it at once. A batch of it is still going up there, held.
        old.remove(std::slice::from_ref(&tp));
        held.store(true, Ordering::Relaxed);
        a.send(job(&spool, 3, 20, 29)).unwrap();
        // Two seconds on, the new owner lists the committed batch from its
        // intent. (Digests of one second share a key, which would catch the
        // race.)
        std::thread::sleep(Duration::from_millis(2000));
        let new = Arc::new(Assignment::default());
        new.add(std::slice::from_ref(&tp));
        let mut b = owner(store.clone(), &new);
        b.adopt(&tp, 20);
        let deadline = Instant::now() + Duration::from_secs(5);
        while digests().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(digests().len(), 2, "the new owner's digest follows the old owner's last");
        // A second later the old owner's batch goes up at last, and the new
        // owner reads the uncommitted range again, onto the same objects.
        std::thread::sleep(Duration::from_millis(1100));
        held.store(false, Ordering::Relaxed);
        assert!(matches!(done(&a).outcome, Outcome::Written { created: 2, .. }));
        let mut replay = job(&spool, 4, 20, 29);
        replay.replay = true;
        replay.replayed = store.get("_trailship/kafka/ct/0/00000000000000000020.json").unwrap();
        // Records are keyed by what they record, so a replay writes the same.
        replay.extra = vec![("_records/3.json".to_owned(), b"{}".to_vec())];
        b.send(replay).unwrap();
        assert!(matches!(done(&b).outcome, Outcome::Written { created: 0, existing: 2, .. }));
        // The old owner's worker acts on the revocation only now.
        std::thread::sleep(Duration::from_millis(1100));
        a.forget(&tp);
        a.stop();
        b.stop();
        let (r, _) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.digests.valid, digests().len());
        // Three ranges' records, intents and two objects each.
        assert_eq!(r.objects.map(|o| o.valid), Some(3 * 4), "{r:#?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Batch `n` of `first..=last` read again by a partition's next owner:
    /// its intent as stored, and the record its first attempt wrote.
    fn replay(store: &dyn ObjectStore, spool: &Path, n: u64, first: i64, last: i64, record: &str) -> Job {
        let mut j = job(spool, n, first, last);
        j.replay = true;
        j.replayed = store.get(&intent_key("ct", 0, first)).unwrap();
        j.extra = vec![(record.to_owned(), b"{}".to_vec())];
        j
    }

    /// An uploader signing with a key of its own, as the owner of `ct`/0 by
    /// its own lights: it is never told otherwise.
    fn signing_owner(store: Arc<dyn ObjectStore>) -> Uploader {
        use crate::source::kafka::Assignment;
        let owns = Arc::new(Assignment::default());
        owns.add(&[("ct".to_owned(), 0)]);
        let pem = crate::integrity::chain::generate_ed25519_pem().into_bytes();
        let signer = Signer::new(pem, "w").unwrap().owned_by(owns);
        Uploader::start(store, None, Duration::from_secs(1), Some(signer))
    }

    /// Sends batch 1 (offsets 0-9), sealed at once as its chain's first;
    /// a second later, when its digest may follow, sets `then` and sends
    /// batch 2 (10-19).
    fn second_batch_when(a: &Uploader, spool: &Path, then: &std::sync::atomic::AtomicBool) {
        a.send(job(spool, 1, 0, 9)).unwrap();
        assert!(matches!(done(a).outcome, Outcome::Written { .. }));
        std::thread::sleep(Duration::from_millis(1100));
        then.store(true, Ordering::Relaxed);
        a.send(job(spool, 2, 10, 19)).unwrap();
    }

    /// A worker stalled past its session timeout is fenced before librdkafka
    /// tells it, so it still believes it owns its partition when it wakes.
    /// Its digest and the new owner's would follow the same predecessor, a
    /// second or more apart (so not caught by their keys): the link's claim
    /// lets one through.
    #[test]
    fn a_fenced_worker_that_wakes_cannot_fork_the_chain() {
        let root = scratch("fenced");
        let (archive, spool) = (root.join("archive"), root.join("spool"));
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        // The stalled worker's claims wait while `held` is set.
        let (stalled, held) = held_while_set(&archive, |key| key.starts_with("_trailship/chains/"));
        let digests = || store.list("_digests/w.ct.0/", None).unwrap();
        let mut a = signing_owner(stalled);
        // Its second batch is written, and its digest claimed when the
        // worker stalls.
        second_batch_when(&a, &spool, &held);
        // Its record is its last write before the claim.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.get("_records/2.json").unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The group gave the partition to another worker, which reads the
        // uncommitted batch again and seals it.
        let mut b = signing_owner(store.clone());
        b.send(replay(&*store, &spool, 3, 10, 19, "_records/2.json")).unwrap();
        assert!(matches!(done(&b).outcome, Outcome::Written { created: 0, existing: 2, .. }));
        assert_eq!(digests().len(), 2);
        // A second later the stalled worker wakes and seals: it finds the
        // link taken and gives its batch up.
        std::thread::sleep(Duration::from_millis(1100));
        held.store(false, Ordering::Relaxed);
        assert!(matches!(done(&a).outcome, Outcome::GaveUp));
        a.stop();
        b.stop();
        assert_eq!(digests().len(), 2, "no digest of the stalled worker's");
        let (r, _) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.digests.valid, 2);
        // Two ranges' records, intents and two objects each.
        assert_eq!(r.objects.map(|o| o.valid), Some(2 * 4), "{r:#?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A claim that holds no digest (damaged, or not trailship's) cannot be
    /// followed nor replaced: the chain is sealed past it, not stopped.
    #[test]
    fn a_claim_without_a_digest_does_not_stop_the_chain() {
        let root = scratch("bad-claim");
        let (archive, spool) = (root.join("archive"), root.join("spool"));
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        let first_link = sign::claim_key("w.ct.0", "");
        assert_eq!(store.put_bytes(&first_link, b"{\"digest\": \"elsewhere\"}").unwrap(), Put::Created);
        let mut u = signing_owner(store.clone());
        u.send(job(&spool, 1, 0, 9)).unwrap();
        assert!(matches!(done(&u).outcome, Outcome::Written { created: 2, .. }));
        u.stop();
        assert_eq!(store.list("_digests/w.ct.0/", None).unwrap().len(), 1);
        let (r, _) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.objects.map(|o| o.valid), Some(4), "{r:#?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A worker that claims a link and dies before writing its digest: the
    /// next sealer finds the claim, writes the digest it holds, and goes on
    /// after it.
    #[test]
    fn a_claimed_digest_whose_sealer_died_is_written_by_the_next() {
        let root = scratch("claimed");
        let (archive, spool) = (root.join("archive"), root.join("spool"));
        let store = Arc::new(LocalObjects::open(&archive).unwrap());
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let breaks = Arc::clone(&broken);
        let dying = Arc::new(Hooked::new(&archive, move |key| {
            if key.starts_with("_digests/w.ct.0/") && breaks.load(Ordering::Relaxed) {
                return Err(StoreError { op: "put", key: key.into(), detail: "unavailable".into() });
            }
            Ok(())
        }));
        let digests = || store.list("_digests/w.ct.0/", None).unwrap();
        let mut a = signing_owner(dying);
        second_batch_when(&a, &spool, &broken);
        assert!(a.next(Duration::from_millis(500)).unwrap().is_none(), "retrying the digest");
        a.set_deadline(Instant::now() + Duration::from_millis(200));
        assert!(matches!(done(&a).outcome, Outcome::GaveUp));
        a.stop();
        assert_eq!(digests().len(), 1, "claimed, not written");
        assert_eq!(store.list("_trailship/chains/w.ct.0/", None).unwrap().len(), 2);
        // The next owner's digest of the replay loses the link, and writes
        // the claimed one instead: that lists the batch already.
        let mut b = signing_owner(store.clone());
        b.send(replay(&*store, &spool, 3, 10, 19, "_records/2.json")).unwrap();
        assert!(matches!(done(&b).outcome, Outcome::GaveUp));
        assert_eq!(digests().len(), 2);
        b.send(replay(&*store, &spool, 4, 10, 19, "_records/2.json")).unwrap();
        assert!(matches!(done(&b).outcome, Outcome::Written { created: 0, existing: 2, .. }));
        // The chain goes on after it.
        std::thread::sleep(Duration::from_millis(1100));
        b.send(job(&spool, 5, 20, 29)).unwrap();
        assert!(matches!(done(&b).outcome, Outcome::Written { created: 2, .. }));
        b.stop();
        assert_eq!(digests().len(), 3);
        let (r, _) = validate(&archive);
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.digests.valid, 3);
        assert_eq!(r.objects.map(|o| o.valid), Some(3 * 4), "{r:#?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
