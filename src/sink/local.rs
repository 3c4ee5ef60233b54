//! Local-directory archive with atomic, exactly-once commits.
//!
//! Objects are written under `_trailship/tmp/<run>/` and become visible only
//! at a checkpoint, by rename. A checkpoint first writes a journal naming
//! every rename and the inputs it completes; after a crash the journal is
//! rolled forward and anything not in a journal is deleted, so a restarted
//! run neither loses nor duplicates rows. Inputs completed by a checkpoint go
//! to the ledger and are skipped by later runs.
//!
//! Several writers may share one archive ([`LocalSink::fork`], one per
//! thread): each owns its open objects and temporary files, so an object only
//! ever holds rows of the inputs its own writer's checkpoint completes, and
//! checkpoints (journal, ledger, digest chain) are serialised by one lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::RecordBatch;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::batch::PartitionKey;
use crate::encode::{ObjectWriter, WRITE_BUFFER};
use crate::integrity::chain::{ChainWriter, Covered};
use crate::sink::SinkError;
use crate::sink::ledger::{Ledger, Reading, Scope};
use crate::sink::seal::{self, Sealer, now_ms};

/// The ledger's file, under the archive's state directory.
const LEDGER: &str = "ledger.ndjson";

fn covered(r: &ObjectRecord) -> Covered {
    Covered { key: r.key.clone(), sha256: r.sha256.clone(), bytes: r.bytes }
}

/// Identity of an input for the ledger: a changed file is a new input.
/// Equal by path, size and time; the rest says how it was read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputId {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
    /// SHA-256 (hex) of the file's first `source::HEAD` bytes, for files
    /// that long: it follows the file through a rename, and tells a file
    /// that grew from one rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// SHA-256 (hex) of the `source::HEAD` bytes before `size`: a later run
    /// reads on from `size` only if they are still there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// Where this reading started, in bytes (an archived file that grew).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub from: u64,
    /// Records read up to `size`, over every reading: a later one numbers on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PartialEq for InputId {
    fn eq(&self, o: &Self) -> bool {
        (&self.path, self.size, self.mtime_ns) == (&o.path, o.size, o.mtime_ns)
    }
}

impl Eq for InputId {}

impl std::hash::Hash for InputId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (&self.path, self.size, self.mtime_ns).hash(h);
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    run: String,
    renames: Vec<(PathBuf, PathBuf)>,
    objects: Vec<ObjectRecord>,
    /// Dead-letter files: digests cover them like Parquet objects.
    #[serde(default)]
    dead_objects: Vec<ObjectRecord>,
    inputs: Vec<InputId>,
}

/// An object made visible by a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Path relative to the archive root.
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
}

/// When a writer closes the objects it has open. Each writer has its own
/// ([`LocalSink::fork`] takes a thread's share).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// An object is closed once it holds this many bytes.
    pub max_file_bytes: usize,
    /// Objects open at once; the oldest is closed to open another. Also the
    /// most closed objects held unsynced until the checkpoint (a descriptor
    /// each).
    pub max_open: usize,
    /// Memory for the footers of open objects. parquet-rs keeps every
    /// written row group's metadata until the footer is written, and with
    /// many threads, each with a small share of the row buffer, row groups
    /// are small and many: at sixteen threads this was a quarter of the
    /// peak RSS (benches/README.md, session 24). Past it, the object
    /// holding the most is closed early, as at `max_file_bytes`.
    pub max_footer_bytes: usize,
}

/// What an open object's footer holds in memory per column chunk: parquet
/// 60's `ColumnChunkMetaData` (424 bytes), an empty page-index slot (232)
/// and an offset index (48, and its list of pages) are 704 bytes; the
/// rest is the lists' own allocations and statistics.
pub const FOOTER_BYTES_PER_CHUNK: usize = 1 << 10;

struct OpenObject {
    writer: ObjectWriter<BufWriter<File>>,
    tmp: PathBuf,
    key: String,
    rows: u64,
    /// Where the file's writeback was last started ([`start_writeback`]).
    written_back: u64,
}

/// The bytes of an open object that reach its file before the kernel is
/// asked to start writing them to the disk ([`start_writeback`]).
const WRITEBACK_STEP: u64 = 1 << 20;

/// What every writer of one archive shares: the commit point.
struct Shared {
    root: PathBuf,
    state: PathBuf,
    /// This run's hold on the archive (`lock_archive`), released with it.
    _lock: Option<File>,
    run: String,
    writers: std::sync::atomic::AtomicU32,
    commit: Mutex<Commit>,
}

struct Commit {
    ledger: Ledger,
    committed: Vec<ObjectRecord>,
    sealer: Option<Sealer>,
    /// Digests sealed by this run, oldest first.
    sealed: Vec<String>,
}

pub struct LocalSink {
    shared: Arc<Shared>,
    tmp: PathBuf,
    run: String,
    props: WriterProperties,
    bounds: Bounds,
    open: HashMap<PartitionKey, OpenObject>,
    /// The keys of `open`, in the order their objects were opened, for
    /// closing the oldest first; [`LocalSink::close`] keeps it so.
    open_order: Vec<PartitionKey>,
    closed: Vec<(PathBuf, ObjectRecord)>,
    /// Closed objects whose data is still to be synced, oldest first: at the
    /// next checkpoint, or once more of them are held than objects may be
    /// open. A file synced as it is closed waits for all of its writeback
    /// there and then; held, its writeback (started when it closed) runs
    /// while the thread encodes the next ones. At the end of a run that was
    /// every object's I/O in a row, ~20 ms a thread (benches/README.md,
    /// session 33).
    unsynced: VecDeque<(File, PathBuf)>,
    dead: Vec<u8>,
    dead_files: Vec<(PathBuf, ObjectRecord)>,
    seq: u64,
}

pub(super) fn io_err(path: &Path, e: std::io::Error) -> SinkError {
    SinkError::Io { path: path.to_path_buf(), source: e }
}

impl LocalSink {
    /// Opens (creating) the archive at `root`, recovering from an interrupted
    /// run. `scope`: what the run will ask the ledger about
    /// (`source::Inputs::scope`), or `None` for all ([`Ledger::load`]).
    pub fn open(root: &Path, props: WriterProperties, bounds: Bounds, scope: Option<Scope>) -> Result<Self, SinkError> {
        let state = root.join("_trailship");
        create_dirs_synced(&state)?;
        let lock = lock_archive(root)?;
        recover(&state)?;
        let ledger = Ledger::load(&state.join(LEDGER), scope)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let run = format!("{}-{:08x}", now.as_secs(), std::process::id() ^ now.subsec_nanos());
        let commit = Commit { ledger, committed: Vec::new(), sealer: None, sealed: Vec::new() };
        let shared = Shared {
            root: root.to_path_buf(),
            state,
            _lock: lock,
            run: run.clone(),
            writers: 1.into(),
            commit: Mutex::new(commit),
        };
        Self::writer(Arc::new(shared), run, props, bounds)
    }

    /// A writer with no open object, its temporary files under `tmp/<run>`.
    fn writer(shared: Arc<Shared>, run: String, props: WriterProperties, bounds: Bounds) -> Result<Self, SinkError> {
        let tmp = shared.state.join("tmp").join(&run);
        // Durable, as the objects' entries in it are before a journal names them.
        create_dirs_synced(&tmp)?;
        Ok(LocalSink {
            shared,
            tmp,
            run,
            props,
            bounds: Bounds { max_open: bounds.max_open.max(1), ..bounds },
            open: HashMap::new(),
            open_order: Vec::new(),
            closed: Vec::new(),
            unsynced: VecDeque::new(),
            dead: Vec::new(),
            dead_files: Vec::new(),
            seq: 0,
        })
    }

    /// Another writer into the same archive, for another thread, with its own
    /// bounds. Its checkpoints commit through the same journal, ledger and
    /// digest chain as this one's.
    pub fn fork(&self, bounds: Bounds) -> Result<LocalSink, SinkError> {
        let n = self.shared.writers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run = format!("{}-w{n}", self.shared.run);
        Self::writer(Arc::clone(&self.shared), run, self.props.clone(), bounds)
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    fn commit(&self) -> MutexGuard<'_, Commit> {
        // A writer that panicked mid-checkpoint leaves the journal for the
        // next start to roll forward; the state behind the lock stays usable.
        self.shared.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs the archive from now on: every committed object goes into the
    /// next digest of `chain` (see `integrity::chain`), sealed at least every
    /// `interval_ms` and at the end of the run.
    pub fn sign_with(&mut self, chain: ChainWriter, interval_ms: i64) -> Result<(), SinkError> {
        let sealer = Sealer::open(&self.shared.root, &self.shared.state, chain, interval_ms)?;
        self.commit().sealer = Some(sealer);
        Ok(())
    }

    /// Seals a digest when one is due (`force`: whenever objects await one);
    /// [`LocalSink::sealed`] lists what was sealed.
    pub fn seal_if_due(&mut self, force: bool) -> Result<(), SinkError> {
        let mut c = self.commit();
        let Some(s) = &mut c.sealer else { return Ok(()) };
        if let Some(key) = s.seal_if_due(now_ms(), force)? {
            c.sealed.push(key);
        }
        Ok(())
    }

    pub fn is_done(&self, input: &InputId) -> bool {
        self.commit().ledger.contains(input)
    }

    /// See [`Ledger::readings`].
    pub fn archived_readings(&self, input: &InputId) -> Vec<Reading> {
        self.commit().ledger.readings(input)
    }

    /// See [`Ledger::read_before`].
    pub fn archived_before(&self, input: &InputId) -> bool {
        self.commit().ledger.read_before(input)
    }

    /// Digests sealed by this run, by any writer, oldest first.
    pub fn sealed(&self) -> Vec<String> {
        self.commit().sealed.clone()
    }

    pub fn write(&mut self, key: &PartitionKey, batch: &RecordBatch) -> Result<(), SinkError> {
        if !self.open.contains_key(key) {
            if self.open.len() >= self.bounds.max_open {
                let oldest = self.open_order[0].clone();
                self.close(&oldest)?;
            }
            self.seq += 1;
            let name = format!("part-{}-{:05}.zstd.parquet", self.run, self.seq);
            let tmp = self.tmp.join(&name);
            let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            let writer =
                ObjectWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), batch.schema(), self.props.clone())?;
            let obj_key = format!("{}/{}", key.dir(), name);
            self.open.insert(key.clone(), OpenObject { writer, tmp, key: obj_key, rows: 0, written_back: 0 });
            self.open_order.push(key.clone());
        }
        let obj = self.open.get_mut(key).expect("just opened");
        obj.writer.write(batch)?;
        obj.rows += batch.num_rows() as u64;
        let (buf, passed) = obj.writer.sink();
        // Whole pages only: a page under writeback that is written again
        // can make that write wait for the disk.
        let in_file = (passed - buf.buffer().len() as u64) & !4095;
        if in_file >= obj.written_back + WRITEBACK_STEP {
            start_writeback(buf.get_ref(), obj.written_back, in_file - obj.written_back);
            obj.written_back = in_file;
        }
        if obj.writer.bytes_written() >= self.bounds.max_file_bytes {
            self.close(key)?;
        }
        self.bound_footers()
    }

    /// Closes the open object whose footer holds the most (the oldest of
    /// equals) until what open objects' footers hold fits the bound.
    fn bound_footers(&mut self) -> Result<(), SinkError> {
        loop {
            let held: usize = self.open.values().map(|o| o.writer.footer_chunks()).sum();
            if held.saturating_mul(FOOTER_BYTES_PER_CHUNK) <= self.bounds.max_footer_bytes {
                return Ok(());
            }
            let chunks = |k: &PartitionKey| self.open.get(k).map_or(0, |o| o.writer.footer_chunks());
            let Some(i) = (0..self.open_order.len()).rev().max_by_key(|&i| chunks(&self.open_order[i])) else {
                return Ok(());
            };
            let key = self.open_order[i].clone();
            self.close(&key)?;
        }
    }

    fn close(&mut self, key: &PartitionKey) -> Result<(), SinkError> {
        let Some(obj) = self.open.remove(key) else { return Ok(()) };
        self.open_order.retain(|k| k != key);
        let (sha, bytes, buf) = obj.writer.finish()?;
        let file = buf.into_inner().map_err(|e| io_err(&obj.tmp, e.into_error()))?;
        start_writeback(&file, obj.written_back, 0);
        self.unsynced.push_back((file, obj.tmp.clone()));
        self.closed.push((obj.tmp, ObjectRecord { key: obj.key, sha256: hex::encode(sha), bytes, rows: obj.rows }));
        while self.unsynced.len() > self.bounds.max_open {
            self.sync_oldest()?;
        }
        Ok(())
    }

    fn sync_oldest(&mut self) -> Result<(), SinkError> {
        match self.unsynced.pop_front() {
            Some((file, path)) => file.sync_all().map_err(|e| io_err(&path, e)),
            None => Ok(()),
        }
    }

    /// Buffers one dead-letter line (see `deadletter::write_line`).
    pub fn dead_letter(&mut self, line: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
        line(&mut self.dead);
        if self.dead.len() >= 4 << 20 {
            self.spill_dead()?;
        }
        Ok(())
    }

    fn spill_dead(&mut self) -> Result<(), SinkError> {
        if self.dead.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        let name = format!("dead-{}-{:05}.ndjson", self.run, self.seq);
        let tmp = self.tmp.join(&name);
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(&self.dead).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        let rec = ObjectRecord {
            key: format!("_dead_letter/{name}"),
            sha256: crate::integrity::chain::sha256_hex(&self.dead),
            bytes: self.dead.len() as u64,
            rows: memchr::memchr_iter(b'\n', &self.dead).count() as u64,
        };
        self.dead.clear();
        self.dead_files.push((tmp, rec));
        Ok(())
    }

    /// Makes everything written so far visible and records `inputs` as done.
    pub fn checkpoint(&mut self, inputs: &[InputId]) -> Result<(), SinkError> {
        while let Some(k) = self.open_order.first().cloned() {
            self.close(&k)?;
        }
        self.spill_dead()?;
        while !self.unsynced.is_empty() {
            self.sync_oldest()?;
        }
        let root = &self.shared.root;
        let mut renames = Vec::new();
        let mut objects = Vec::new();
        for (tmp, rec) in self.closed.drain(..) {
            renames.push((tmp, root.join(&rec.key)));
            objects.push(rec);
        }
        let mut dead_objects = Vec::new();
        for (tmp, rec) in self.dead_files.drain(..) {
            renames.push((tmp, root.join(&rec.key)));
            dead_objects.push(rec);
        }
        if renames.is_empty() && inputs.is_empty() {
            return Ok(());
        }
        if !renames.is_empty() {
            // The objects' data is synced above, their names here:
            // a journal naming a file that a crash then loses would be rolled
            // forward as if the file had been renamed already.
            sync_dir(&self.tmp)?;
        }
        let journal = Journal { run: self.run.clone(), renames, objects, dead_objects, inputs: inputs.to_vec() };
        let body = serde_json::to_vec(&journal).expect("journal serialises");
        let state = &self.shared.state;
        // One journal at a time: recovery rolls forward exactly one.
        let mut c = self.commit();
        let path = state.join("journal.json");
        let tmp = state.join("journal.json.tmp");
        write_synced(&tmp, &body)?;
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(state)?;
        apply(state, &journal)?;
        fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        for i in &journal.inputs {
            c.ledger.record(i);
        }
        if let Some(s) = &mut c.sealer {
            s.add(journal.objects.iter().chain(&journal.dead_objects).map(covered));
        }
        c.committed.extend(journal.objects);
        Ok(())
    }

    /// Removes this writer's temporary directory (after its final checkpoint).
    pub fn close_writer(self) {
        let _ = fs::remove_dir(&self.tmp);
    }

    /// Closes this writer; returns the objects committed so far by every
    /// writer of the archive.
    pub fn close_run(self) -> Result<Vec<ObjectRecord>, SinkError> {
        let committed = self.commit().committed.clone();
        self.close_writer();
        Ok(committed)
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `at` (to its
/// end where `len` is 0) to the disk, without waiting: the sync that makes
/// them durable then finds them written, or on their way, rather than
/// starting all of their I/O itself. Only a hint, so a failure is left for
/// that sync to report.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn sync_file_range(fd: i32, offset: i64, nbytes: i64, flags: u32) -> i32;
    }
    const SYNC_FILE_RANGE_WRITE: u32 = 2;
    // SAFETY: `file` keeps the descriptor open for the call, which reads no
    // memory of ours.
    unsafe { sync_file_range(file.as_raw_fd(), at as i64, len as i64, SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

pub(super) fn write_synced(path: &Path, body: &[u8]) -> Result<(), SinkError> {
    let mut f = File::create(path).map_err(|e| io_err(path, e))?;
    f.write_all(body).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))
}

/// Creates `dir` and whichever of its ancestors are missing, and returns the
/// directories that gained an entry: the parent of each one created. A new
/// directory outlives a crash of the machine only once its parent is synced,
/// as a renamed file does. Syncing only the leaf (after `create_dir_all`)
/// kept a new partition directory, and the committed objects in it, only on
/// file systems that order their metadata (ext4's journal, XFS's log), not
/// on ext4 without a journal. Where `dir` exists this is one `stat`.
pub(crate) fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    let mut gained = Vec::new();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Another writer made it: it may not have synced its parent yet.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            gained.push(p.to_path_buf());
        }
    }
    Ok(gained)
}

/// [`create_dirs`], with the directories that gained an entry synced.
pub(super) fn create_dirs_synced(dir: &Path) -> Result<(), SinkError> {
    for d in create_dirs(dir).map_err(|e| io_err(dir, e))? {
        sync_dir(&d)?;
    }
    Ok(())
}

/// Performs a journal's renames (idempotently) and appends its inputs to the ledger.
fn apply(state: &Path, j: &Journal) -> Result<(), SinkError> {
    let mut dirs = HashSet::new();
    for (tmp, dst) in &j.renames {
        if !tmp.exists() {
            // Already renamed by an earlier, interrupted roll-forward.
            continue;
        }
        let parent = dst.parent().expect("objects live under the archive root");
        dirs.extend(create_dirs(parent).map_err(|e| io_err(parent, e))?);
        fs::rename(tmp, dst).map_err(|e| io_err(dst, e))?;
        dirs.insert(parent.to_path_buf());
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    // Before the journal is removed, so no committed object can miss its
    // digest; a roll-forward may append twice, and readers dedupe.
    let covered: Vec<Covered> = j.objects.iter().chain(&j.dead_objects).map(covered).collect();
    seal::append_undigested(state, &covered)?;
    if !j.inputs.is_empty() {
        let path = state.join(LEDGER);
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_err(&path, e))?;
        let mut body = Vec::new();
        for i in &j.inputs {
            serde_json::to_writer(&mut body, i).expect("ledger entry serialises");
            body.push(b'\n');
        }
        f.write_all(&body).map_err(|e| io_err(&path, e))?;
        f.sync_all().map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}

/// One run writes an archive at a time. A second would take the first's
/// temporary objects and journal for a crash's leftovers (deleting the one,
/// rolling the other forward under it), and both would seal one digest
/// chain. The lock is the operating system's, so it ends with the process
/// however that ends; the file names the holder for the error message. A
/// file system without locks is warned about, not refused.
/// The archive's lock, under its root: a batch run holds it alone, the
/// service's workers together (`objects::LocalObjects`).
pub const LOCK: &str = "_trailship/lock";

/// The archive's lock file (created when missing, never emptied by
/// opening: it names the batch run holding it) and its path.
pub(crate) fn open_lock(root: &Path) -> std::io::Result<(File, PathBuf)> {
    let path = root.join(LOCK);
    let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    Ok((f, path))
}

fn lock_archive(root: &Path) -> Result<Option<File>, SinkError> {
    let (mut f, path) = open_lock(root).map_err(|e| io_err(&root.join(LOCK), e))?;
    match f.try_lock() {
        Ok(()) => {
            // Best effort: the holder's name helps a person, nothing reads it.
            let _ = f.set_len(0).and_then(|()| writeln!(f, "pid {}", std::process::id()));
            Ok(Some(f))
        }
        Err(fs::TryLockError::WouldBlock) => {
            // Held shared: by the service's workers, which write no pid.
            let holder = match f.try_lock_shared() {
                Ok(()) => "`trailship run` workers".to_owned(),
                Err(_) => fs::read_to_string(&path).unwrap_or_default().trim().to_owned(),
            };
            Err(SinkError::Busy { path: root.to_path_buf(), holder })
        }
        Err(fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the archive; make sure no other run writes to it");
            Ok(None)
        }
    }
}

/// Rolls a pending journal forward and deletes uncommitted temporary files.
fn recover(state: &Path) -> Result<(), SinkError> {
    let path = state.join("journal.json");
    if path.exists() {
        let body = fs::read(&path).map_err(|e| io_err(&path, e))?;
        let journal: Journal = serde_json::from_slice(&body)
            .map_err(|e| SinkError::Corrupt { path: path.clone(), detail: e.to_string() })?;
        // The ledger append may have happened before the crash: the ledger is
        // a set, so appending twice is harmless.
        apply(state, &journal)?;
        fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        tracing::info!(run = %journal.run, objects = journal.objects.len(), "rolled forward an interrupted checkpoint");
    }
    let _ = fs::remove_file(state.join("journal.json.tmp"));
    let tmp = state.join("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    Ok(())
}

impl super::RowSink for LocalSink {
    fn write(&mut self, key: &PartitionKey, batch: &RecordBatch) -> Result<(), SinkError> {
        LocalSink::write(self, key, batch)
    }

    fn dead_letter(&mut self, line: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
        LocalSink::dead_letter(self, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> WriterProperties {
        crate::encode::writer_properties(&crate::encode::EncodeOptions::default()).unwrap()
    }

    fn bounds(max_open: usize) -> Bounds {
        Bounds { max_file_bytes: 1 << 20, max_open, max_footer_bytes: 64 << 20 }
    }

    #[test]
    fn new_directories_come_with_the_parents_that_gained_an_entry() {
        let root = std::env::temp_dir().join(format!("trailship-sink-dirs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir(&root).unwrap();
        let leaf = root.join("api_activity/region=x/day=1");
        let gained = create_dirs(&leaf).unwrap();
        assert!(leaf.is_dir());
        assert_eq!(gained, [root.clone(), root.join("api_activity"), root.join("api_activity/region=x")]);
        assert_eq!(create_dirs(&leaf).unwrap(), Vec::<PathBuf>::new(), "nothing new, nothing to sync");
        assert_eq!(create_dirs(&root.join("api_activity/region=y")).unwrap(), [root.join("api_activity")]);
        fs::write(root.join("file"), b"").unwrap();
        assert!(create_dirs(&root.join("file/x")).is_err(), "a file in the way is an error");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn one_run_at_a_time_holds_an_archive() {
        let root = std::env::temp_dir().join(format!("trailship-sink-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let first = LocalSink::open(&root, props(), bounds(4), None).unwrap();
        let fork = first.fork(bounds(2)).unwrap();
        let again = LocalSink::open(&root, props(), bounds(4), None);
        assert!(matches!(again, Err(SinkError::Busy { .. })), "{:?}", again.err());
        // Held until the last of the run's writers is gone.
        drop(first);
        assert!(matches!(LocalSink::open(&root, props(), bounds(4), None), Err(SinkError::Busy { .. })));
        drop(fork);
        LocalSink::open(&root, props(), bounds(4), None).unwrap();
        let _ = fs::remove_dir_all(&root);
    }

    /// The service's workers write a local archive together; a batch run,
    /// whose recovery clears `_trailship/tmp` (their writes in progress
    /// too), does not start on it while they do, nor they while it does.
    #[test]
    fn a_batch_run_and_the_service_do_not_share_an_archive() {
        use crate::sink::objects::{LocalObjects, ObjectStore, Put};
        let root = std::env::temp_dir().join(format!("trailship-sink-shared-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (a, b) = (LocalObjects::open(&root).unwrap(), LocalObjects::open(&root).unwrap());
        assert_eq!(a.put_bytes("x/one.json", b"1").unwrap(), Put::Created);
        assert_eq!(b.put_bytes("x/one.json", b"1").unwrap(), Put::Exists);
        match LocalSink::open(&root, props(), bounds(4), None) {
            Err(SinkError::Busy { holder, .. }) => assert_eq!(holder, "`trailship run` workers"),
            other => panic!("{:?}", other.err()),
        }
        drop((a, b));
        let batch = LocalSink::open(&root, props(), bounds(4), None).unwrap();
        let refused = LocalObjects::open(&root).err().expect("refused while a batch run writes");
        assert!(refused.to_string().contains(&format!("a batch run (pid {})", std::process::id())), "{refused}");
        drop(batch);
        LocalObjects::open(&root).unwrap();
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn interrupted_checkpoint_is_rolled_forward_and_orphans_removed() {
        let root = std::env::temp_dir().join(format!("trailship-sink-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let state = root.join("_trailship");
        let run_tmp = state.join("tmp/run1");
        fs::create_dir_all(&run_tmp).unwrap();
        // The crash came after the journal and one of two renames.
        fs::write(run_tmp.join("a.parquet"), b"A").unwrap();
        fs::create_dir_all(root.join("ds/x")).unwrap();
        fs::write(root.join("ds/x/b.parquet"), b"B").unwrap();
        // An object of a checkpoint that never got its journal.
        fs::write(run_tmp.join("orphan.parquet"), b"O").unwrap();
        let input = InputId { path: "/in/1.json".into(), size: 1, mtime_ns: 2, ..InputId::default() };
        let journal = Journal {
            run: "run1".into(),
            renames: vec![
                (run_tmp.join("a.parquet"), root.join("ds/x/a.parquet")),
                (run_tmp.join("b.parquet"), root.join("ds/x/b.parquet")),
            ],
            objects: vec![],
            dead_objects: vec![],
            inputs: vec![input.clone()],
        };
        fs::write(state.join("journal.json"), serde_json::to_vec(&journal).unwrap()).unwrap();

        let sink = LocalSink::open(&root, props(), bounds(4), None).unwrap();
        assert_eq!(fs::read(root.join("ds/x/a.parquet")).unwrap(), b"A");
        assert_eq!(fs::read(root.join("ds/x/b.parquet")).unwrap(), b"B");
        assert!(!state.join("journal.json").exists());
        assert!(!run_tmp.exists(), "uncommitted objects are deleted");
        assert!(sink.is_done(&input));
        drop(sink);

        // Reopening again changes nothing (the roll-forward is idempotent).
        let sink = LocalSink::open(&root, props(), bounds(4), None).unwrap();
        assert!(sink.is_done(&input));
        assert_eq!(fs::read_to_string(state.join("ledger.ndjson")).unwrap().lines().count(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Footers are bounded apart from bytes: the object holding the most
    /// row groups is closed (and committed whole at the checkpoint) once
    /// the open objects' footers would hold more than the bound.
    #[test]
    fn the_open_object_holding_the_most_footer_is_closed_past_the_bound() {
        use arrow_array::{ArrayRef, Int64Array, StringArray};
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let root = std::env::temp_dir().join(format!("trailship-sink-footer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // Two leaves a row group: three row groups' footers fit, a fourth does not.
        let bounds = Bounds { max_footer_bytes: 6 * FOOTER_BYTES_PER_CHUNK, ..bounds(4) };
        let mut sink = LocalSink::open(&root, props(), bounds, None).unwrap();
        let rows = |n: i64| {
            let cols: Vec<(&str, ArrayRef)> =
                vec![("n", Arc::new(Int64Array::from(vec![n; 3]))), ("s", Arc::new(StringArray::from(vec!["x"; 3])))];
            RecordBatch::try_from_iter(cols).unwrap()
        };
        let key = |region: &str| PartitionKey {
            class: crate::ocsf::Class::ALL[0],
            region: region.into(),
            account: "1".into(),
            day: 20261206,
        };
        let (a, b) = (key("a"), key("b"));
        for (k, n) in [(&a, 1), (&a, 2), (&b, 3), (&a, 4), (&a, 5), (&b, 6)] {
            sink.write(k, &rows(n)).unwrap();
        }
        sink.checkpoint(&[]).unwrap();
        let mut objects: Vec<(String, Vec<i64>)> = sink
            .close_run()
            .unwrap()
            .iter()
            .map(|o| {
                let r = SerializedFileReader::new(File::open(root.join(&o.key)).unwrap()).unwrap();
                let groups = r.metadata().row_groups().iter().map(|g| g.num_rows()).collect::<Vec<_>>();
                assert_eq!(o.rows, groups.iter().sum::<i64>() as u64);
                (o.key.split("region=").nth(1).unwrap()[..1].to_string(), groups)
            })
            .collect();
        objects.sort();
        // `a` was closed at its fourth row group's write (three of its own and
        // one of `b`'s held: the bound), then reopened; `b` never held the most.
        let want = [("a", vec![3]), ("a", vec![3, 3, 3]), ("b", vec![3, 3])];
        let want: Vec<(String, Vec<i64>)> = want.into_iter().map(|(r, g)| (r.to_string(), g)).collect();
        assert_eq!(objects, want);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A closed object is synced at the checkpoint, not as it closes, but no
    /// more of them stay unsynced (each holding a descriptor) than objects
    /// may be open.
    #[test]
    fn closed_objects_wait_for_the_checkpoint_to_be_synced_within_the_open_bound() {
        use arrow_array::{ArrayRef, Int64Array};
        let root = std::env::temp_dir().join(format!("trailship-sink-unsynced-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mut sink = LocalSink::open(&root, props(), bounds(2), None).unwrap();
        let key = |region: String| PartitionKey {
            class: crate::ocsf::Class::ALL[0],
            region,
            account: "1".into(),
            day: 20261206,
        };
        let mut held = Vec::new();
        for n in 0..6i64 {
            let cols: Vec<(&str, ArrayRef)> = vec![("n", Arc::new(Int64Array::from(vec![n; 4])))];
            sink.write(&key(format!("r{n}")), &RecordBatch::try_from_iter(cols).unwrap()).unwrap();
            held.push(sink.unsynced.len());
        }
        // Opening a third object closes the oldest; from the fifth on, the
        // oldest closed one is synced to keep two.
        assert_eq!(held, [0, 0, 1, 2, 2, 2]);
        assert_eq!(sink.closed.len(), 4);
        sink.checkpoint(&[]).unwrap();
        assert!(sink.unsynced.is_empty() && sink.closed.is_empty());
        let committed = sink.close_run().unwrap();
        assert_eq!(committed.len(), 6);
        for o in &committed {
            let body = fs::read(root.join(&o.key)).unwrap();
            assert_eq!((body.len() as u64, o.rows), (o.bytes, 4));
            assert_eq!(crate::integrity::chain::sha256_hex(&body), o.sha256);
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn corrupt_ledger_is_a_clear_error() {
        let root = std::env::temp_dir().join(format!("trailship-sink-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("_trailship")).unwrap();
        fs::write(root.join("_trailship/ledger.ndjson"), b"{not json\n").unwrap();
        let err = LocalSink::open(&root, props(), bounds(4), None).err().expect("refuses a corrupt ledger");
        assert!(err.to_string().contains("ledger.ndjson"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }
}
