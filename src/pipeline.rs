//! The batch job: inputs → decode → normalise → batch → encode → sink, with
//! every record accounted for as one row or one dead letter.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::batch::{Batcher, PartitionKey};
use crate::config::IntegrityConfig;
use crate::deadletter::{self, Reason, SourceRef};
use crate::decode::framer::{Frame, Framer, Limits};
use crate::decode::json::{Document, Envelope, Parser, Repairs, Source, Spans, Val, Whole, is_envelope, json_ws};
use crate::decode::lines::{Lined, Lines, framed_as_record};
use crate::encode::{EncodeOptions, writer_properties};
use crate::integrity::chain::{ChainWriter, SigningKey};
use crate::normalize::{Ctx, NormalizeOptions, Normalizer, Outcome, Rejected, SourceKind};
use crate::normalize::{KafkaRef, ObjectRef};
use crate::ocsf::Class;
use crate::redact::{RedactionConfig, Redactor, Stats};
use crate::sink::local::{Bounds, InputId, LocalSink, ObjectRecord};
use crate::sink::{RowSink, SinkError};
use crate::source::{self, Input};
use arrow_array::RecordBatch;

/// Settings of a `normalize` run. Defaults suit a laptop and a 2-core worker.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub limits: Limits,
    pub encode: EncodeOptions,
    /// Keep each record's original text in `raw_data`.
    pub raw_data: bool,
    pub source: SourceKind,
    /// An object is closed once it reaches this size.
    pub max_file_bytes: usize,
    /// Memory bound for rows buffered across all partitions.
    pub max_buffer_bytes: usize,
    /// A row group is written once its partition holds this many bytes (or
    /// `encode.row_group_rows` rows), whichever comes first.
    pub row_group_bytes: usize,
    /// Objects open at once (one per partition being written). Closed
    /// objects awaiting the checkpoint's sync hold a descriptor each, up to
    /// as many again.
    pub max_open_files: usize,
    /// Memory for the metadata of row groups written to open objects,
    /// which stays in memory until their footers are written
    /// ([`crate::sink::local::Bounds::max_footer_bytes`]).
    pub max_footer_bytes: usize,
    /// A CloudTrail log file up to this size is read whole and parsed in
    /// one pass, a run of records at a time ([`Document`]); larger ones are
    /// framed record by record. Parsing whole is faster but holds the file,
    /// and up to about fourteen times it where its records cannot be cut
    /// into runs (simd-json's tape and indexes), so it is a share of memory
    /// like the row buffer.
    pub whole_file_bytes: usize,
    /// Input bytes between checkpoints (objects become visible at checkpoints).
    pub checkpoint_bytes: u64,
    /// Inputs between checkpoints, whatever their bytes: a checkpoint's
    /// journal names each, and until then they are held in memory, so a
    /// run over a million small files is checkpointed every few thousand.
    pub checkpoint_inputs: usize,
    pub redaction: RedactionConfig,
    pub normalize: NormalizeOptions,
    pub integrity: IntegrityConfig,
    /// Inputs processed at once, one thread each. The memory and open-file
    /// bounds above hold for the whole run: each thread gets its share.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: PathBuf::from("trailship-archive"),
            limits: Limits { max_record_bytes: 4 << 20, max_depth: 64 },
            encode: EncodeOptions::default(),
            raw_data: false,
            source: SourceKind::Auto,
            max_file_bytes: 256 << 20,
            max_buffer_bytes: 64 << 20,
            row_group_bytes: 32 << 20,
            max_open_files: 64,
            max_footer_bytes: 32 << 20,
            whole_file_bytes: 4 << 20,
            checkpoint_bytes: 1 << 30,
            checkpoint_inputs: 16_384,
            redaction: RedactionConfig::default(),
            normalize: NormalizeOptions::default(),
            integrity: IntegrityConfig::default(),
            threads: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("cannot write the archive: {0}")]
    Sink(#[from] SinkError),
    #[error("invalid setting: {0}")]
    Config(String),
}

/// What a run did. `records_read == rows + dead letters + filtered`, always.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub inputs_processed: u64,
    pub inputs_skipped: u64,
    /// Inputs read whole again because they changed since archived.
    pub inputs_changed: u64,
    /// Inputs that grew since archived, read from where they stopped.
    pub inputs_resumed: u64,
    /// Inputs that end inside a record still being written: read up to it,
    /// the rest left for a later run.
    pub inputs_unfinished: u64,
    pub bytes_read: u64,
    pub records_read: u64,
    pub rows: BTreeMap<Class, u64>,
    pub dead_letters: BTreeMap<Reason, u64>,
    pub repaired: u64,
    /// Records dropped on purpose by configuration (not dead letters).
    pub filtered: u64,
    pub objects: Vec<ObjectRecord>,
    /// Values redacted, per type.
    pub redactions: BTreeMap<&'static str, u64>,
    /// The fingerprint key's id, and whether it was a random one for this run.
    pub redaction_key: Option<(String, bool)>,
    /// Digests sealed over the archive, and the signing key's fingerprint.
    pub digests: Vec<String>,
    pub signing_key: Option<String>,
    /// Pipelines the run used: `Options::threads`, at most one per input.
    pub threads: usize,
}

impl Summary {
    /// Adds another thread's counts (objects and digests are the sink's).
    fn merge(&mut self, o: Summary) {
        self.inputs_processed += o.inputs_processed;
        self.inputs_skipped += o.inputs_skipped;
        self.inputs_changed += o.inputs_changed;
        self.inputs_resumed += o.inputs_resumed;
        self.inputs_unfinished += o.inputs_unfinished;
        self.bytes_read += o.bytes_read;
        self.records_read += o.records_read;
        self.repaired += o.repaired;
        self.filtered += o.filtered;
        for (k, v) in o.rows {
            *self.rows.entry(k).or_default() += v;
        }
        for (k, v) in o.dead_letters {
            *self.dead_letters.entry(k).or_default() += v;
        }
    }

    pub fn rows_total(&self) -> u64 {
        self.rows.values().sum()
    }
    pub fn dead_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

/// The smallest `max_record_bytes`. Below it a log file's opening
/// `{"Records":` would be cut short as it is kept, and the whole file taken
/// for one oversized record.
pub const MIN_RECORD_BYTES: usize = 1024;

/// Normalises `inputs` into the archive at `opts.out`. They are listed a
/// directory at a time as threads take them, after [`source::Inputs::scope`]
/// says what the run will ask the archive's ledger about.
pub fn run(opts: &Options, inputs: &(impl source::Inputs + ?Sized)) -> Result<Summary, PipelineError> {
    if opts.limits.max_depth == 0 || opts.encode.row_group_rows == 0 {
        return Err(PipelineError::Config("max_depth and row_group_rows must be positive".into()));
    }
    if opts.limits.max_record_bytes < MIN_RECORD_BYTES {
        return Err(PipelineError::Config(format!(
            "max_record_bytes must be at least {MIN_RECORD_BYTES}: no audit record is smaller, and the framer keeps that \
             much of a value to tell a CloudTrail log file's `Records` from a record"
        )));
    }
    let props = writer_properties(&opts.encode).map_err(|e| PipelineError::Config(e.to_string()))?;
    let redactor = redactor(&opts.redaction).map_err(PipelineError::Config)?;
    let (scope, listed) = inputs.scope()?;
    let bounds = |threads: usize| Bounds {
        max_file_bytes: opts.max_file_bytes,
        max_open: opts.max_open_files / threads,
        max_footer_bytes: opts.max_footer_bytes / threads,
    };
    let mut sink = LocalSink::open(&opts.out, props, bounds(1), Some(scope))?;
    let mut summary = Summary::default();
    match &opts.integrity.signing_key_file {
        Some(path) => {
            let key = SigningKey::from_file(path).map_err(|e| PipelineError::Config(e.to_string()))?;
            summary.signing_key = Some(key.fingerprint());
            let chain = ChainWriter::new(key, &opts.integrity.writer_id, "", crate::sink::now_ms())
                .map_err(PipelineError::Config)?;
            let interval = opts.integrity.digest_interval_s.max(1).saturating_mul(1000) as i64;
            sink.sign_with(chain, interval)?;
        }
        None => tracing::warn!("no signing key configured ([integrity] signing_key_file): the archive is not signed"),
    }
    let threads = opts.threads.clamp(1, listed.unwrap_or(usize::MAX).max(1));
    let schedule = Schedule::new(inputs.dirs(), threads);
    summary.threads = threads;
    if threads == 1 {
        work(opts, &redactor, (&schedule, 0), &mut sink, &mut summary)?;
    } else {
        // Each thread is a whole pipeline over the inputs it takes, with its
        // share of the memory and open-object bounds and of the input between
        // checkpoints; only checkpoints meet.
        let share = Options {
            max_buffer_bytes: opts.max_buffer_bytes / threads,
            row_group_bytes: opts.row_group_bytes.min(opts.max_buffer_bytes / threads / 2),
            whole_file_bytes: opts.whole_file_bytes / threads,
            checkpoint_bytes: (opts.checkpoint_bytes / threads as u64).max(1),
            checkpoint_inputs: (opts.checkpoint_inputs / threads).max(1),
            ..opts.clone()
        };
        let mut forks = Vec::with_capacity(threads);
        for _ in 0..threads {
            forks.push(sink.fork(bounds(threads))?);
        }
        let parts = std::thread::scope(|s| {
            let handles: Vec<_> = forks
                .into_iter()
                .enumerate()
                .map(|(me, mut fork)| {
                    let (share, redactor, schedule) = (&share, &redactor, &schedule);
                    s.spawn(move || {
                        let mut part = Summary::default();
                        work(share, redactor, (schedule, me), &mut fork, &mut part)?;
                        fork.close_writer();
                        Ok::<_, PipelineError>(part)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a pipeline thread panicked")).collect::<Vec<_>>()
        });
        for part in parts {
            summary.merge(part?);
        }
    }
    sink.seal_if_due(true)?;
    summary.digests = sink.sealed();
    summary.objects = sink.close_run()?;
    if let Some(r) = &redactor {
        summary.redactions = r.totals();
        summary.redaction_key = Some((r.key_id().to_string(), r.ephemeral_key()));
    }
    debug_assert_eq!(summary.records_read, summary.rows_total() + summary.dead_total() + summary.filtered);
    // What was read before the listing failed is archived: a rerun goes on.
    if let Some(e) = schedule.failed() {
        return Err(e.into());
    }
    Ok(summary)
}

/// Hands inputs to threads a directory at a time, as they are listed, and
/// at the end lets a thread with nothing left take the back half of what
/// another has claimed and not started. A partition written by two threads
/// becomes two objects of half the rows, each a full set of column chunks,
/// and CloudTrail writes one directory per account, region and day, which
/// are its partitions: so a directory is split only when no whole one is
/// left, where splitting is what keeps the threads even.
struct Schedule<'l> {
    listing: Mutex<Listed<'l>>,
    /// Per thread: the inputs it has claimed and not yet started.
    claimed: Vec<Mutex<VecDeque<Input>>>,
}

struct Listed<'l> {
    dirs: Box<dyn Iterator<Item = Result<Vec<Input>, source::SourceError>> + Send + 'l>,
    /// Where the listing failed: no directory is handed out after it.
    failed: Option<source::SourceError>,
}

impl<'l> Schedule<'l> {
    fn new(
        dirs: Box<dyn Iterator<Item = Result<Vec<Input>, source::SourceError>> + Send + 'l>,
        threads: usize,
    ) -> Self {
        let claimed = (0..threads.max(1)).map(|_| Mutex::new(VecDeque::new())).collect();
        Schedule { listing: Mutex::new(Listed { dirs, failed: None }), claimed }
    }

    /// The next input for thread `me`; `None` once every input is taken.
    fn next(&self, me: usize) -> Option<Input> {
        let lock = |t: usize| self.claimed[t].lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = lock(me).pop_front() {
                return Some(i);
            }
            if let Some(dir) = self.next_dir() {
                *lock(me) = dir;
                continue;
            }
            // Inputs only move between claims: once all are empty, none refills.
            let victim = (0..self.claimed.len()).filter(|&t| t != me).max_by_key(|&t| lock(t).len())?;
            let stolen = {
                let mut v = lock(victim);
                let keep = v.len() / 2;
                v.split_off(keep)
            };
            if stolen.is_empty() && (0..self.claimed.len()).all(|t| lock(t).is_empty()) {
                return None;
            }
            *lock(me) = stolen;
        }
    }

    fn next_dir(&self) -> Option<VecDeque<Input>> {
        let mut l = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        if l.failed.is_some() {
            return None;
        }
        match l.dirs.next()? {
            Ok(dir) => Some(dir.into()),
            Err(e) => {
                l.failed = Some(e);
                None
            }
        }
    }

    /// Why the listing stopped short, if it did.
    fn failed(&self) -> Option<source::SourceError> {
        self.listing.lock().unwrap_or_else(|e| e.into_inner()).failed.take()
    }
}

/// One thread's share of a run: takes inputs from `schedule` until none is left,
/// and checkpoints what it wrote.
fn work(
    opts: &Options,
    redactor: &Option<Arc<Redactor>>,
    (schedule, me): (&Schedule, usize),
    sink: &mut LocalSink,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let mut stage = Stages::new(opts, redactor.clone());
    let mut pending: Vec<InputId> = Vec::new();
    let mut since_checkpoint = 0u64;
    while let Some(input) = schedule.next(me) {
        let input = &input;
        let name = input.display();
        let opened = open_unarchived(input, &name, sink, summary);
        let (mut id, mut reader) = match opened {
            Ok(Some(x)) => x,
            Ok(None) => {
                tracing::info!(input = %name, "already archived; skipping");
                summary.inputs_skipped += 1;
                continue;
            }
            Err(e) => {
                stage.unopenable(sink, summary, &name, &e)?;
                continue;
            }
        };
        tracing::debug!(input = %name, "reading");
        let records_before = summary.records_read;
        let growing = growing(input, &id, &reader);
        let fetched = reader.fetched.take();
        let object = object_ref(input, fetched.as_ref());
        let origin = Origin { first_index: id.records, growing, object, ..Origin::file(&name) };
        stage.input_reader(&origin, &mut reader, sink, summary)?;
        let (mut bytes, mut left) = (reader.bytes, stage.take_left());
        if left == Some(Left::Unchecked) {
            match read_checked(&mut stage, input, &id, origin, sink, summary)? {
                None => continue,
                Some(None) => left = Some(Left::Whole),
                Some(Some(read)) => (left, bytes) = (None, read),
            }
        }
        id.records += summary.records_read - records_before;
        let read_any = match left {
            Some(Left::From(at)) => end_before_unfinished(input, &name, &mut id, at, summary),
            Some(Left::Whole | Left::Unchecked) => {
                tracing::warn!(input = %name, "gzip input ends inside a member still being written; it is left for a later run");
                summary.inputs_unfinished += 1;
                false
            }
            None => true,
        };
        summary.inputs_processed += 1;
        summary.bytes_read += bytes;
        since_checkpoint += bytes;
        // A reading of nothing adds nothing to the ledger: an earlier
        // reading of the file, if any, still says where it stopped.
        if read_any {
            pending.push(id);
        }

        stage.flush(sink, false)?;
        if since_checkpoint >= opts.checkpoint_bytes || pending.len() >= opts.checkpoint_inputs {
            stage.flush(sink, true)?;
            sink.checkpoint(&pending)?;
            sink.seal_if_due(false)?;
            pending.clear();
            since_checkpoint = 0;
        }
    }
    stage.flush(sink, true)?;
    sink.checkpoint(&pending)?;
    Ok(())
}

/// An S3 object's provenance for its rows, as read.
fn object_ref<'a>(input: &'a Input, fetched: Option<&'a source::Fetched>) -> Option<ObjectRef<'a>> {
    match (input, fetched) {
        (Input::Object(o), Some(f)) => {
            Some(ObjectRef { bucket: &o.bucket, key: &o.key, version_id: f.version_id.as_deref(), sha256: &f.sha256 })
        }
        _ => None,
    }
}

/// How an opened input may still be growing (see [`Growing`]).
fn growing(input: &Input, id: &InputId, reader: &source::Reader) -> Growing {
    match reader.compressed {
        false if source::may_grow(input, id, source::SETTLE) => Growing::Text,
        true if source::may_grow(input, id, source::GZIP_SETTLE) => Growing::Gzip,
        _ => Growing::No,
    }
}

/// A gzip input too long to hold and check as it is read
/// ([`Left::Unchecked`]): its stream is checked whole, then, complete, read
/// as a settled file's would be: the bytes read, or none when it is cut
/// short (left whole); None when it could not be opened again (a dead
/// letter says why).
fn read_checked(
    stage: &mut Stages<'_>,
    input: &Input,
    id: &InputId,
    origin: Origin<'_>,
    sink: &mut LocalSink,
    summary: &mut Summary,
) -> Result<Option<Option<u64>>, SinkError> {
    if !source::gzip_complete(input, id) {
        return Ok(Some(None));
    }
    let mut again = match source::open(input, id) {
        Ok(r) => r,
        Err(e) => {
            stage.unopenable(sink, summary, origin.name, &e)?;
            return Ok(None);
        }
    };
    stage.input_reader(&Origin { growing: Growing::No, ..origin }, &mut again, sink, summary)?;
    Ok(Some(Some(again.bytes)))
}

/// Ends the reading `id` before the unfinished last record that starts
/// `at` bytes into it (see [`Growing::Text`]); whether it read anything
/// before that.
fn end_before_unfinished(input: &Input, name: &str, id: &mut InputId, at: u64, summary: &mut Summary) -> bool {
    let end = id.from + at;
    tracing::warn!(input = %name, bytes = id.size - end, "input ends inside a record still being written; it is left for a later run");
    summary.inputs_unfinished += 1;
    if at == 0 {
        return false;
    }
    if let Err(e) = source::end_reading_at(input, id, end) {
        // Without its tail hash a later run reads the file whole again, and says so.
        tracing::warn!(input = %name, error = %e, "cannot hash where the reading ended");
    }
    true
}

/// Opens `input` where what the archive lacks of it starts: None when the
/// ledger holds all of it (under this name or, rotated, another).
fn open_unarchived(
    input: &Input,
    name: &str,
    sink: &LocalSink,
    summary: &mut Summary,
) -> std::io::Result<Option<(InputId, source::Reader)>> {
    let mut id = source::identify(input)?;
    if sink.is_done(&id) {
        return Ok(None);
    }
    source::fingerprint(input, &mut id)?;
    // An archived file grown since, or renamed (and maybe grown): read on
    // from where its longest reading stopped, if it can be.
    let mut earlier = None;
    for r in sink.archived_readings(&id) {
        if source::continues(input, &r)? {
            earlier = Some(r);
            break;
        }
    }
    match earlier {
        // The same bytes under another name (a rotated log).
        Some(r) if r.end == id.size => return Ok(None),
        Some(r) => {
            tracing::info!(input = %name, from = r.end, "input grew since it was archived; reading what it gained");
            (id.from, id.records) = (r.end, r.records);
            summary.inputs_resumed += 1;
        }
        None if sink.archived_before(&id) => {
            // Read whole again: say so rather than repeat rows in silence.
            tracing::warn!(input = %name, "input changed since it was archived; reading it whole again repeats the rows it held then");
            summary.inputs_changed += 1;
        }
        None => {}
    }
    let reader = source::open(input, &id)?;
    Ok(Some((id, reader)))
}

/// The redactor `cfg` describes, or none when redaction is off; either way
/// the operator is warned of what it means for the archive.
pub(crate) fn redactor(cfg: &RedactionConfig) -> Result<Option<Arc<Redactor>>, String> {
    if !cfg.enabled {
        tracing::warn!("redaction is disabled: secrets in the input reach the archive in clear");
        return Ok(None);
    }
    let r = Redactor::new(cfg).map_err(|e| e.to_string())?;
    if r.ephemeral_key() {
        tracing::warn!(env = %cfg.key_env, "no redaction key configured: fingerprints correlate only within this run");
    }
    Ok(Some(Arc::new(r)))
}

/// Where a stream of records came from, beyond its bytes.
pub(crate) struct Origin<'a> {
    /// `trailship.source_file` and the dead letters' `source.file`.
    pub name: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact bytes a signature covers (a webhook delivery).
    pub body: Option<&'a [u8]>,
    pub kafka: Option<KafkaRef<'a>>,
    pub object: Option<ObjectRef<'a>>,
    /// The index of the stream's first record in its input: a file read on
    /// from where an earlier run stopped numbers on from there.
    pub first_index: u64,
    /// Whether the stream is a file that may still be being written, and
    /// so what is left of one that ends cut short (`Stages::take_left`).
    pub growing: Growing,
}

/// Whether a stream's input may still be being written (a file changed
/// within `source::SETTLE`, or `GZIP_SETTLE`), and so how an end cut short
/// is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Growing {
    /// Complete when read: a record cut short is a dead letter.
    #[default]
    No,
    /// Text: an unfinished last record, begun on a line of its own, is left
    /// for a later reading.
    Text,
    /// gzip: a stream cut short leaves the whole input for later. It is
    /// read whole into memory first to know (a stream too long for that is
    /// left unread, `Left::Unchecked`, for the caller to check first).
    Gzip,
}

/// What a reading left for later (see [`Growing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// An unfinished last record, from this many bytes into the stream.
    From(u64),
    /// All of it: a gzip stream cut short.
    Whole,
    /// All of it, unread: a gzip stream longer than can be held to check.
    Unchecked,
}

impl<'a> Origin<'a> {
    pub fn file(name: &'a str) -> Self {
        Origin { name, headers: &[], body: None, kafka: None, object: None, first_index: 0, growing: Growing::No }
    }
}

/// The per-record stages and their reusable state.
pub(crate) struct Stages<'o> {
    parser: Parser,
    document: Document,
    lines: Lines,
    /// A whole input, when it is read whole (see [`Stages::input_reader`]).
    whole: Vec<u8>,
    /// A framed record's text before parsing (which rewrites it in place).
    original: Vec<u8>,
    /// For an input that is one object (see [`Stages::input_one`]).
    one: Parser,
    one_text: Vec<u8>,
    /// What the last stream left for later, if anything.
    left: Option<Left>,
    rec: Records<'o>,
}

/// What every record goes through once parsed.
struct Records<'o> {
    opts: &'o Options,
    redactor: Option<Arc<Redactor>>,
    normalizer: Normalizer,
    batcher: Batcher,
    raw: String,
    /// Records since the buffer was last measured (see [`flush_interval`]).
    since_flush: usize,
}

/// A record's text as received: at hand when framed, looked up in its log
/// file only when needed when the file was parsed whole.
enum Text<'s, 't, 'a> {
    Known(&'a [u8]),
    InFile(&'s mut Spans<'t, 'a>, usize),
}

impl<'a> Text<'_, '_, 'a> {
    fn get(&mut self) -> &'a [u8] {
        match self {
            Text::Known(t) => t,
            Text::InFile(spans, i) => spans.get(*i),
        }
    }
}

/// A record's parse result: the tape's root, repairs made, and its text tied to the tape.
type ParsedRecord<'t, 'i, 'a> = Result<(Val<'t, 'i>, Repairs, Option<Source<'a>>), String>;

impl<'o> Stages<'o> {
    pub fn limits(&self) -> Limits {
        self.rec.opts.limits
    }

    /// The largest log file parsed whole: never more than a record may be.
    fn whole_file_bytes(&self) -> usize {
        self.rec.opts.whole_file_bytes.min(self.rec.opts.limits.max_record_bytes)
    }

    pub fn new(opts: &'o Options, redactor: Option<Arc<Redactor>>) -> Self {
        Stages {
            parser: Parser::default(),
            document: Document::default(),
            lines: Lines::default(),
            whole: Vec::new(),
            original: Vec::new(),
            one: Parser::with_max_depth(opts.limits.max_depth),
            one_text: Vec::new(),
            left: None,
            rec: Records {
                opts,
                normalizer: Normalizer::new(opts.source).with_options(&opts.normalize),
                batcher: Batcher::new(redactor.clone()),
                redactor,
                raw: String::new(),
                since_flush: 0,
            },
        }
    }

    /// Every record of a stream. A CloudTrail log file no larger than
    /// [`Options::whole_file_bytes`] (nor than one record may be) is read
    /// whole and parsed in one pass, a run of records at a time (see
    /// [`Document`]); other text a run of lines at a time while it is one
    /// object a line ([`Lines`]); everything else is framed record by record.
    pub fn input_reader(
        &mut self,
        origin: &Origin<'_>,
        reader: &mut source::Reader,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        self.left = None;
        let limit = self.whole_file_bytes();
        let mut head = std::mem::take(&mut self.whole);
        // A gzip member whole, as held whole below: complete, and no longer than a log file read whole.
        if reader.inflate_whole(&mut head, limit).is_some() {
            let done = self.input_text(origin, &head, sink, summary);
            self.whole = head;
            return done;
        }
        let mut filled = 0;
        let whole_or_nothing = origin.growing == Growing::Gzip;
        let mut read = read_up_to(reader, &mut head, &mut filled, ENVELOPE_PEEK);
        let mut ended = read.is_ok() && filled < ENVELOPE_PEEK;
        if read.is_ok() && !ended && (whole_or_nothing || is_envelope(&head[..filled])) {
            read = read_up_to(reader, &mut head, &mut filled, limit + 1);
            ended = read.is_ok() && filled <= limit;
        }
        if whole_or_nothing {
            self.left = match &read {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Some(Left::Whole),
                Ok(()) if !ended => Some(Left::Unchecked),
                _ => None,
            };
            if self.left.is_some() {
                self.whole = head;
                return Ok(());
            }
        }
        let envelope = is_envelope(&head[..filled]);
        let text = &head[..filled];
        let done = match read {
            Ok(()) if ended => self.input_text(origin, text, sink, summary),
            Ok(()) if !envelope => self.input_stream(origin, reader, &mut head, filled, sink, summary),
            read => self.input_framed(origin, text, reader, read, (0, 0), sink, summary),
        };
        self.whole = head;
        done
    }

    /// Every record of a text held in memory (a Kafka message, an object).
    pub fn input_text(
        &mut self,
        origin: &Origin<'_>,
        text: &[u8],
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        let limits = self.limits();
        // `Document::parse` itself declines what is not a log file.
        let mut from = 0;
        if text.len() <= self.whole_file_bytes() {
            let rec = &mut self.rec;
            let whole = self.document.parse(text, limits.max_depth, |envelope| {
                let Envelope { first, records, mut spans, source, text } = envelope;
                // A run with no token candidate anywhere has none in any record.
                let tokens = match &rec.redactor {
                    Some(r) if !r.candidate(text) => Some(false),
                    _ => None,
                };
                for (i, root) in records.enumerate() {
                    let parsed = Ok((root, Repairs::default(), Some(source)));
                    let text = Text::InFile(&mut spans, i);
                    rec.record(origin, (first + i) as u64, text, tokens, true, parsed, sink, summary)?;
                }
                Ok::<(), SinkError>(())
            })?;
            match whole {
                Whole::Done => return Ok(()),
                Whole::From(first) => from = first,
            }
        }
        // A log file's text is one line, and its one record an envelope.
        let mut lined = Lined { bytes: 0, records: 0, whole: false };
        if from == 0 && !is_envelope(text) {
            lined = self.input_lines(origin, text, 0, sink, summary)?;
            if lined.whole && lined.bytes == text.len() {
                return Ok(());
            }
        }
        // A log file is never one object: `from` > 0 only for one.
        if lined.records == 0
            && let Some(done) = self.input_one(origin, text, sink, summary)
        {
            return done;
        }
        let rest = &text[lined.bytes..];
        let mut framer = Framer::with_chunk(rest, limits, rest.len() + 1);
        framer.resume_at(lined.records as u64, lined.bytes as u64);
        self.input(origin, &mut framer, from as u64, sink, summary)
    }

    /// The records of the complete lines of `text`, a stream's after its
    /// first `before` records, while they read as one object a line
    /// ([`Lines`]). How far that was.
    fn input_lines(
        &mut self,
        origin: &Origin<'_>,
        text: &[u8],
        before: u64,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<Lined, SinkError> {
        let limits = self.limits();
        let (rec, mut index) = (&mut self.rec, before);
        self.lines.parse(text, before, limits, |run| {
            // A run with no token candidate anywhere has none in any record.
            let tokens = match &rec.redactor {
                Some(r) if !r.candidate(run.text) => Some(false),
                _ => None,
            };
            for (i, root) in run.records.clone().enumerate() {
                let parsed = Ok((root, Repairs::default(), Some(run.source)));
                rec.record(origin, index, Text::Known(run.line(i)), tokens, false, parsed, sink, summary)?;
                index += 1;
            }
            Ok::<(), SinkError>(())
        })
    }

    /// A stream that is not a log file read whole, from its first `filled`
    /// bytes in `head`: a run of lines at a time while its lines read as one
    /// object each ([`Lines`]), then the framer from the first line that
    /// does not, or from the unfinished line at the end. `head` holds the
    /// line being read, up to a record's limit.
    fn input_stream(
        &mut self,
        origin: &Origin<'_>,
        reader: &mut source::Reader,
        head: &mut Vec<u8>,
        mut filled: usize,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        let limits = self.limits();
        let (mut records, mut offset) = (0u64, 0u64);
        let (mut read, mut ended) = (Ok(()), false);
        loop {
            let lined = self.input_lines(origin, &head[..filled], records, sink, summary)?;
            records += lined.records as u64;
            // A line longer than a record may be is the framer's to report.
            let over = filled - lined.bytes > limits.max_record_bytes;
            if !lined.whole || ended || over || read.is_err() {
                let at = (records, offset + lined.bytes as u64);
                return self.input_framed(origin, &head[lined.bytes..filled], reader, read, at, sink, summary);
            }
            offset += lined.bytes as u64;
            head.copy_within(lined.bytes..filled, 0);
            filled -= lined.bytes;
            // One read of the source's buffer size a turn: once that buffer
            // is drained, such a read goes around it, straight into `head`.
            // Filled up to a mark instead, the last short read of each turn
            // left the buffer holding bytes again, so every read was copied
            // through it: every byte twice (1.2% of a GitHub run's
            // instructions, benches/README.md, session 36).
            let want = filled + STREAM_READ;
            if head.len() < want {
                head.resize(want, 0);
            }
            match read_some(reader, &mut head[filled..want]) {
                Ok(0) => ended = true,
                Ok(k) => filled += k,
                Err(e) => read = Err(e),
            }
        }
    }

    /// The framer's records of a stream from `text`, held, on: then the rest
    /// of `reader`, or the error that stopped its reading, as if read in one
    /// stream. `at`: the records and bytes of the stream before `text`.
    #[allow(clippy::too_many_arguments)]
    fn input_framed(
        &mut self,
        origin: &Origin<'_>,
        text: &[u8],
        reader: &mut source::Reader,
        read: std::io::Result<()>,
        at: (u64, u64),
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        let mut failing;
        let rest: &mut dyn Read = match read {
            Ok(()) => reader,
            Err(e) => {
                failing = source::Failing { err: Some(e), rest: std::io::empty() };
                &mut failing
            }
        };
        let mut framer = Framer::new(Cursor::new(text).chain(rest), self.limits());
        framer.resume_at(at.0, at.1);
        self.input(origin, &mut framer, 0, sink, summary)
    }

    /// `text` as one record, when it is one JSON object within the limits
    /// and not a log file's envelope: what a Kafka message usually is. The
    /// framer would find the same single record by a scan of every byte
    /// (a tenth of a worker's time, benches/README.md); the parse finds its
    /// end anyway. `None`: anything else, left to the framer, which tells
    /// records apart and says what is wrong with each.
    fn input_one(
        &mut self,
        origin: &Origin<'_>,
        text: &[u8],
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Option<Result<(), SinkError>> {
        // The framer's record is the object's text, without the whitespace around it.
        let start = text.iter().position(|&b| !json_ws(b))?;
        let end = text.iter().rposition(|&b| !json_ws(b))? + 1;
        let text = &text[start..end];
        if text.len() > self.rec.opts.limits.max_record_bytes || text[0] != b'{' || is_envelope(text) {
            return None;
        }
        self.one_text.clear();
        self.one_text.extend_from_slice(text);
        let (rec, original) = (&mut self.rec, text);
        self.one.parse(&mut self.one_text, |parsed| {
            let p = parsed.ok()?;
            // Any `Records` array makes the framer read the object as an envelope.
            if !framed_as_record(p.root) {
                return None;
            }
            let parsed = Ok((p.root, p.repairs, p.source(original)));
            Some(rec.record(origin, 0, Text::Known(original), None, false, parsed, sink, summary))
        })
    }

    /// Every record the framer finds from index `from` on (those before it
    /// were read whole, [`Document::parse`]).
    fn input<R: Read>(
        &mut self,
        origin: &Origin<'_>,
        framer: &mut Framer<R>,
        from: u64,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        let name = origin.name;
        framer.leave_unfinished(origin.growing == Growing::Text);
        while let Some(frame) = framer.next() {
            match frame {
                Frame::Dead { index, .. } | Frame::Record { index, .. } if index < from => {}
                Frame::Dead { index, reason, detail, input } => {
                    summary.records_read += 1;
                    let src = SourceRef { file: name, record_index: origin.first_index + index, sub_index: None };
                    let input = input.to_vec();
                    self.rec.dead_letter(sink, reason, &detail, &src, &input)?;
                    *summary.dead_letters.entry(reason).or_default() += 1;
                }
                Frame::Record { index, bytes, log_file } => {
                    // Dead letters need the input text, which parsing destroys.
                    self.original.clear();
                    self.original.extend_from_slice(bytes);
                    let (rec, original) = (&mut self.rec, &self.original);
                    self.parser.parse(bytes, |parsed| {
                        let parsed = parsed.map(|p| (p.root, p.repairs, p.source(original)));
                        rec.record(origin, index, Text::Known(original), None, log_file, parsed, sink, summary)
                    })?;
                }
            }
        }
        if let Some(e) = framer.take_read_error() {
            tracing::warn!(input = %name, error = %e, "input ended early");
        }
        if let Some(at) = framer.take_unfinished() {
            self.left = Some(Left::From(at));
        }
        Ok(())
    }

    /// What the last stream left for a later reading (see [`Growing`]).
    pub fn take_left(&mut self) -> Option<Left> {
        self.left.take()
    }

    /// An input that cannot be opened: one dead letter, not a failed run.
    fn unopenable(
        &self,
        sink: &mut impl RowSink,
        summary: &mut Summary,
        name: &str,
        e: &std::io::Error,
    ) -> Result<(), SinkError> {
        tracing::warn!(input = %name, error = %e, "cannot open input");
        self.dead_input(sink, summary, Reason::ReadError, &e.to_string(), name, b"")
    }

    /// A dead letter for a whole input or message that yields no record
    /// (unreadable, not inflatable, empty), counted as one record read.
    pub fn dead_input(
        &self,
        sink: &mut impl RowSink,
        summary: &mut Summary,
        reason: Reason,
        detail: &str,
        name: &str,
        input: &[u8],
    ) -> Result<(), SinkError> {
        summary.records_read += 1;
        *summary.dead_letters.entry(reason).or_default() += 1;
        let src = SourceRef { file: name, record_index: 0, sub_index: None };
        self.rec.dead_letter(sink, reason, detail, &src, input)
    }

    /// Writes full batches (or all, when `all`), and the largest ones while
    /// over the memory bound.
    pub fn flush(&mut self, sink: &mut impl RowSink, all: bool) -> Result<(), SinkError> {
        self.rec.flush(sink, all)
    }

    /// Every buffered row, by partition, for a sink elsewhere: what
    /// `flush(sink, true)` would write.
    pub fn take_rows(&mut self) -> Vec<(PartitionKey, RecordBatch)> {
        let rows = self.rec.batcher.take_all();
        self.rec.batcher.next_round();
        rows
    }
}

impl Records<'_> {
    /// Normalises one record (`text` as received), or an envelope's records,
    /// accounting for each as a row, a filtered record or a dead letter.
    /// `tokens`: whether its strings may hold tokens, when already known;
    /// `log_file`: whether it is an element of a CloudTrail log file's `Records`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        origin: &Origin<'_>,
        index: u64,
        mut text: Text<'_, '_, '_>,
        tokens: Option<bool>,
        log_file: bool,
        parsed: ParsedRecord<'_, '_, '_>,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        let name = origin.name;
        let index = origin.first_index + index;
        summary.records_read += 1;
        let keep_raw = self.opts.raw_data;
        if keep_raw {
            self.raw.clear();
            self.raw.push_str(&String::from_utf8_lossy(text.get()));
        }
        // One pass over the raw record decides whether its strings need the
        // token scan; most records hold no candidate.
        if let Some(r) = &self.redactor {
            self.batcher.set_scan_tokens(tokens.unwrap_or_else(|| r.candidate(text.get())));
        }
        let (outcome, repaired) = match parsed {
            Err(e) => (Outcome::Record(Err(Rejected { reason: Reason::MalformedJson, detail: e })), false),
            Ok((root, repairs, source)) => {
                let ctx = Ctx {
                    source_file: name,
                    index,
                    repairs,
                    raw: keep_raw.then_some(self.raw.as_str()),
                    source,
                    headers: origin.headers,
                    body: origin.body,
                    kafka: origin.kafka,
                    object: origin.object,
                };
                let outcome = if log_file {
                    self.normalizer.normalize_log_record(root, &ctx, &mut self.batcher)
                } else {
                    self.normalizer.normalize_any(root, &ctx, &mut self.batcher)
                };
                (outcome, repairs.utf8_replaced)
            }
        };
        let src = SourceRef { file: name, record_index: index, sub_index: None };
        match outcome {
            Outcome::Record(result) => self.account(result, repaired, &src, None, &mut text, sink, summary)?,
            // An envelope: each record inside is accounted for.
            Outcome::Envelope(subs) => {
                summary.records_read += subs.len() as u64 - 1;
                for sub in subs {
                    let src = SourceRef { sub_index: Some(sub.sub_index), ..src };
                    self.account(sub.result, repaired, &src, sub.input.as_deref(), &mut text, sink, summary)?;
                }
            }
        }
        // Bound memory inside one input too: a 10 GB file is one input.
        self.since_flush += 1;
        if self.since_flush >= flush_interval(self.opts.max_buffer_bytes) {
            self.since_flush = 0;
            self.flush(sink, false)?;
        }
        Ok(())
    }

    /// Counts what became of one record, and writes its dead letter if it
    /// has one: with `input` (a record inside an envelope), else the text.
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        result: Result<Class, Rejected>,
        repaired: bool,
        src: &SourceRef<'_>,
        input: Option<&str>,
        text: &mut Text<'_, '_, '_>,
        sink: &mut impl RowSink,
        summary: &mut Summary,
    ) -> Result<(), SinkError> {
        match result {
            Ok(class) => {
                *summary.rows.entry(class).or_default() += 1;
                summary.repaired += repaired as u64;
            }
            Err(r) if r.reason == Reason::Filtered => summary.filtered += 1,
            Err(r) => {
                let input = match input {
                    Some(input) => input.as_bytes(),
                    None => text.get(),
                };
                self.dead_letter(sink, r.reason, &r.detail, src, input)?;
                *summary.dead_letters.entry(r.reason).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Writes a dead letter; its input and detail go through the redactor
    /// like every other string that leaves trailship.
    fn dead_letter(
        &self,
        sink: &mut impl RowSink,
        reason: Reason,
        detail: &str,
        src: &SourceRef<'_>,
        input: &[u8],
    ) -> Result<(), SinkError> {
        match &self.redactor {
            None => sink.dead_letter(|b| deadletter::write_line(b, reason, detail, src, input)),
            Some(r) => {
                let mut stats = Stats::default();
                let mut red_input = Vec::with_capacity(input.len());
                r.scan_unparsed(input, &mut red_input, &mut stats);
                let mut red_detail = Vec::with_capacity(detail.len());
                r.scan_unparsed(detail.as_bytes(), &mut red_detail, &mut stats);
                let red_detail = String::from_utf8_lossy(&red_detail);
                r.record(&stats);
                sink.dead_letter(|b| deadletter::write_line(b, reason, &red_detail, src, &red_input))
            }
        }
    }

    fn flush(&mut self, sink: &mut impl RowSink, all: bool) -> Result<(), SinkError> {
        let batches = if all {
            self.batcher.take_all()
        } else {
            self.batcher.take_full(self.opts.encode.row_group_rows, self.opts.row_group_bytes)
        };
        for (key, batch) in batches {
            sink.write(&key, &batch)?;
        }
        while self.batcher.buffered_bytes() > self.opts.max_buffer_bytes {
            let Some((key, batch)) = self.batcher.take_evictable(self.opts.max_buffer_bytes / 16) else { break };
            sink.write(&key, &batch)?;
        }
        self.batcher.next_round();
        Ok(())
    }
}

/// Records between two measurements of the row buffer. Rows are mostly
/// under a KiB, so the buffer overshoots its bound by about a sixteenth
/// between checks; a fixed interval overshot a thread's share on
/// 16 cores (4 MiB) by 4096 rows, more than the share itself. Measuring
/// walks every column of every partition, so not every record.
fn flush_interval(max_buffer_bytes: usize) -> usize {
    (max_buffer_bytes / (16 << 10)).clamp(64, 4096)
}

/// Bytes read before deciding whether an input is a CloudTrail log file.
const ENVELOPE_PEEK: usize = 64;

/// Bytes read at a time from a stream read a run of lines at a time: the
/// source's buffer, which a read this long goes around.
const STREAM_READ: usize = source::READ_BUFFER;

/// One read into `buf`, tried again if interrupted: how many bytes, 0 at the end.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

/// Reads into `buf[*filled..n]` until it is full or the stream ends.
/// `buf.len()` is how much of it is initialised, not what it holds: kept
/// from input to input, it is zeroed once as it grows, where `read_to_end`
/// zeroes what it reads into every time (2% of instructions end to end).
/// It grows geometrically but exactly, never past `n`: doubling capacity
/// one byte past the whole-file limit would hold twice that limit per thread.
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, filled: &mut usize, n: usize) -> std::io::Result<()> {
    while *filled < n {
        if buf.len() <= *filled {
            let len = (*filled + (*filled).max(64 << 10)).min(n);
            buf.reserve_exact(len - buf.len());
            buf.resize(len, 0);
        }
        let end = buf.len().min(n);
        match read_some(r, &mut buf[*filled..end])? {
            0 => return Ok(()),
            k => *filled += k,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files in directories of these sizes, in walk order, each named by
    /// its place in that order ([`number`]).
    fn inputs(dirs: &[usize]) -> Vec<Input> {
        let mut v = Vec::new();
        for (d, &n) in dirs.iter().enumerate() {
            for _ in 0..n {
                v.push(Input::File(PathBuf::from(format!("AWSLogs/{d}/{}", v.len()))));
            }
        }
        v
    }

    /// An input's place in walk order.
    fn number(i: Input) -> usize {
        let Input::File(p) = i else { panic!("files only") };
        p.file_name().unwrap().to_str().unwrap().parse().unwrap()
    }

    /// Which thread took each of `n` inputs, when every input takes as
    /// long and the thread that has worked least asks next.
    fn simulate(s: &Schedule, n: usize, threads: usize) -> Vec<usize> {
        let mut owner = vec![usize::MAX; n];
        let mut clock = vec![0usize; threads];
        let mut live: Vec<usize> = (0..threads).collect();
        while let Some(&me) = live.iter().min_by_key(|&&t| (clock[t], t)) {
            match s.next(me).map(number) {
                Some(i) => {
                    assert_eq!(owner[i], usize::MAX, "input {i} handed out twice");
                    owner[i] = me;
                    clock[me] += 1;
                }
                None => live.retain(|&t| t != me),
            }
        }
        owner
    }

    /// The schedule of `all`, as a run lists them.
    fn schedule(all: &[Input], threads: usize) -> Schedule<'_> {
        Schedule::new(source::Inputs::dirs(all), threads)
    }

    #[test]
    fn the_buffer_is_measured_more_often_as_its_share_shrinks() {
        // One thread's default share, then 16 threads' (4 MiB), then a share
        // too small to measure after every record.
        assert_eq!(flush_interval(64 << 20), 4096);
        assert_eq!(flush_interval(4 << 20), 256);
        assert_eq!(flush_interval(64 << 10), 64);
        // 256 rows of a typical kilobyte: a sixteenth of the 4 MiB share.
        assert!(flush_interval(4 << 20) * 1024 <= (4 << 20) / 16);
    }

    #[test]
    fn directories_are_split_only_at_the_end() {
        // The peer corpus's directories (benches/peers.sh).
        let sizes = [13, 20, 24, 17, 9, 14, 19, 13, 22, 20, 15, 14];
        let all = inputs(&sizes);
        let s = schedule(&all, 2);
        let owner = simulate(&s, all.len(), 2);
        assert!(owner.iter().all(|&t| t < 2), "every input handed out");
        let mut start = 0;
        let dirs: Vec<_> = sizes
            .iter()
            .map(|n| {
                start += n;
                start - n..start
            })
            .collect();
        let split = dirs.iter().filter(|d| owner[d.start..d.end].iter().any(|&t| t != owner[d.start])).count();
        assert!(split <= 1, "only the last directory in progress may be shared: {owner:?}");
        // Even at the end: the threads' loads differ by at most one input.
        let load = |t| owner.iter().filter(|&&o| o == t).count();
        assert!(load(0).abs_diff(load(1)) <= 1, "{} against {}", load(0), load(1));
        // A whole directory is taken front to back by one thread.
        assert!(owner[..13].iter().all(|&t| t == 0) && owner[13..33].iter().all(|&t| t == 1));
    }

    #[test]
    fn one_directory_is_shared_by_halves() {
        let all = inputs(&[40]);
        let s = schedule(&all, 2);
        assert_eq!(s.next(0).map(number), Some(0));
        // Nothing whole is left: the second thread takes the back half.
        assert_eq!(s.next(1).map(number), Some(20));
        let owner = simulate(&s, all.len(), 2);
        assert_eq!(owner.iter().filter(|&&t| t == usize::MAX).count(), 2, "the two taken above");
        assert!(owner[1..20].iter().all(|&t| t == 0) && owner[21..30].iter().all(|&t| t == 1), "{owner:?}");
    }

    #[test]
    fn one_thread_takes_the_inputs_in_order_and_threads_take_each_once() {
        let all = inputs(&[3, 1, 4]);
        let s = schedule(&all, 1);
        let order: Vec<usize> = std::iter::from_fn(|| s.next(0)).map(number).collect();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
        let all = inputs(&[50, 1, 7, 300, 2, 90]);
        let s = schedule(&all, 8);
        let mut taken: Vec<usize> = std::thread::scope(|scope| {
            let s = &s;
            let hands: Vec<_> = (0..8)
                .map(|me| scope.spawn(move || std::iter::from_fn(|| s.next(me)).map(number).collect::<Vec<_>>()))
                .collect();
            hands.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        taken.sort_unstable();
        assert_eq!(taken, (0..all.len()).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod one_object {
    use super::*;

    #[derive(Default)]
    struct Memory {
        rows: Vec<(PartitionKey, RecordBatch)>,
        dead: Vec<u8>,
    }

    impl RowSink for Memory {
        fn write(&mut self, key: &PartitionKey, batch: &RecordBatch) -> Result<(), SinkError> {
            self.rows.push((key.clone(), batch.clone()));
            Ok(())
        }
        fn dead_letter(&mut self, line: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
            line(&mut self.dead);
            Ok(())
        }
    }

    /// What the stages make of `text`, with the one-object path allowed or
    /// framing forced; and whether that path took it.
    fn run(opts: &Options, text: &[u8], framed: bool) -> (Memory, Summary, bool) {
        let mut stages = Stages::new(opts, None);
        let (mut sink, mut summary) = (Memory::default(), Summary::default());
        let origin = Origin::file("kafka://ct/0/7");
        let mut took = false;
        if framed {
            let mut framer = Framer::with_chunk(text, opts.limits, text.len() + 1);
            stages.input(&origin, &mut framer, 0, &mut sink, &mut summary).unwrap();
        } else {
            took = stages.input_one(&origin, text, &mut sink, &mut summary).is_some();
            if !took {
                stages.input_text(&origin, text, &mut sink, &mut summary).unwrap();
            }
        }
        stages.flush(&mut sink, true).unwrap();
        (sink, summary, took)
    }

    const RECORD: &str = r#"{"eventVersion":"1.09","eventTime":"2024-03-01T08:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userIdentity":{"type":"IAMUser","accountId":"111122223333","userName":"alice"},"requestParameters":{"bucketName":"b","key":"k"},"eventID":"e1","recipientAccountId":"111122223333"}"#;

    #[test]
    fn a_log_file_read_a_run_at_a_time_is_read_as_the_framer_reads_it() {
        use crate::decode::json::CHUNK_BYTES;
        let opts = Options::default();
        let record = |i: usize| {
            let mut r = RECORD.replace(r#""eventID":"e1""#, &format!(r#""eventID":"e{i}""#));
            if i.is_multiple_of(2) {
                // Objects that start as records do: cuts to be found inside a record.
                let items = r#""requestParameters":{"items":[{"eventVersion":"a"},{"eventVersion":"b"}]}"#;
                r = r.replace(r#""requestParameters":{"bucketName":"b","key":"k"}"#, items);
            }
            r
        };
        let n = 3 * CHUNK_BYTES / RECORD.len();
        let file = |broken: &[usize]| {
            let records: Vec<String> = (0..n)
                .map(|i| if broken.contains(&i) { record(i).replacen(',', ",,", 1) } else { record(i) })
                .collect();
            format!(r#"{{"Records":[{}]}}"#, records.join(","))
        };
        for broken in [&[][..], &[n / 2], &[0], &[n - 1], &[n / 3, n / 3 + 1, 2 * n / 3]] {
            let text = file(broken);
            let (a, sa, _) = run(&opts, text.as_bytes(), false);
            let (b, sb, _) = run(&opts, text.as_bytes(), true);
            let rows = |m: &Memory| m.rows.iter().map(|(_, b)| b.num_rows()).sum::<usize>();
            assert_eq!((rows(&a), sa.rows_total()), (n - broken.len(), (n - broken.len()) as u64), "{broken:?}");
            assert_eq!(sa.dead_letters.values().sum::<u64>(), broken.len() as u64, "{broken:?}");
            assert_eq!(sa.records_read, sb.records_read, "{broken:?}");
            assert_eq!(sa.dead_letters, sb.dead_letters, "{broken:?}");
            assert_eq!(a.rows, b.rows, "{broken:?}");
            assert_eq!(String::from_utf8_lossy(&a.dead), String::from_utf8_lossy(&b.dead), "{broken:?}");
        }
    }

    /// What the stages make of `text` read as a stream of plain bytes, a
    /// few at a time (as a file is read).
    fn run_stream(opts: &Options, text: &[u8], chunk: usize) -> (Memory, Summary) {
        /// Hands out at most `chunk` bytes a read.
        struct Trickle(std::io::Cursor<Vec<u8>>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.1);
                self.0.read(&mut buf[..n])
            }
        }
        let mut stages = Stages::new(opts, None);
        let (mut sink, mut summary) = (Memory::default(), Summary::default());
        let origin = Origin::file("kafka://ct/0/7");
        let trickle = Trickle(std::io::Cursor::new(text.to_vec()), chunk);
        let mut reader = source::Reader::plain(std::io::BufReader::with_capacity(chunk, trickle));
        stages.input_reader(&origin, &mut reader, &mut sink, &mut summary).unwrap();
        stages.flush(&mut sink, true).unwrap();
        (sink, summary)
    }

    #[test]
    fn lines_read_a_run_at_a_time_are_read_as_the_framer_reads_them() {
        use crate::decode::json::CHUNK_BYTES;
        let opts = Options { limits: Limits { max_record_bytes: 2048, max_depth: 6 }, ..Options::default() };
        let n = 3 * CHUNK_BYTES / RECORD.len();
        let record = |i: usize| RECORD.replace(r#""eventID":"e1""#, &format!(r#""eventID":"e{i}""#));
        let lines = |at: usize, line: &str| -> String {
            (0..n).map(|i| if i == at { format!("{line}\n") } else { format!("{}\n", record(i)) }).collect()
        };
        let deep = format!("{}{}", r#"{"a":"#.repeat(6) + "1", "}".repeat(6));
        let pretty = RECORD.replace(",\"", ",\n  \"");
        // One record across two lines, the second ending with another: as
        // many elements as lines once the newline is a comma.
        let split = RECORD.replace(r#""key":"k"}"#, "\"key\":[\"k\"\n\"k2\"]}") + r#",{"eventVersion":"1.09"}"#;
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            ("clean".into(), lines(n, "").into_bytes()),
            ("crlf, blank lines".into(), lines(n, "").replace('\n', "\r\n\n  ").into_bytes()),
            ("no newline at the end".into(), lines(n, "").trim_end().as_bytes().to_vec()),
            ("cut short at the end".into(), lines(n, "").as_bytes()[..n * (RECORD.len() + 1) - 9].to_vec()),
            ("pretty at the end".into(), format!("{}{pretty}\n", lines(n, "")).into_bytes()),
            ("byte-order mark".into(), format!("\u{feff}{}", lines(n, "")).into_bytes()),
            ("blank start".into(), format!("\n\n\n{}", lines(n, "")).into_bytes()),
        ];
        for at in [0, n / 2, n - 1] {
            for (what, line) in [
                ("broken", record(at).replacen(',', ",,", 1)),
                ("pretty", pretty.clone()),
                ("two on a line", format!("{} {}", record(at), record(at))),
                ("two with a comma", format!("{},{}", record(at), record(at))),
                ("an array", format!("[{},{}]", record(at), record(at))),
                ("a log file", format!(r#"{{"Records":[{}]}}"#, record(at))),
                ("a scalar", "42".into()),
                ("oversized", record(at).replacen('{', &format!(r#"{{"pad":"{}","#, "x".repeat(2048)), 1)),
                ("too deep", record(at).replacen('{', &format!(r#"{{"deep":{deep},"#), 1)),
                ("split", split.clone()),
            ] {
                cases.push((format!("{what} at {at}"), lines(at, &line).into_bytes()));
            }
            let mut bad = lines(at, "").into_bytes();
            let i = at * (RECORD.len() + 1) + 40;
            bad[i] = 0xff;
            cases.push((format!("invalid UTF-8 at {at}"), bad));
        }
        for (what, text) in &cases {
            let (framed, sf, _) = run(&opts, text, true);
            let (a, sa, _) = run(&opts, text, false);
            let (b, sb) = run_stream(&opts, text, 4096);
            let (c, sc) = run_stream(&opts, text, 700);
            for (m, s) in [(&a, &sa), (&b, &sb), (&c, &sc)] {
                assert_eq!(s.records_read, sf.records_read, "{what}");
                assert_eq!(s.rows, sf.rows, "{what}");
                assert_eq!(s.dead_letters, sf.dead_letters, "{what}");
                assert_eq!(s.repaired, sf.repaired, "{what}");
                assert_eq!(m.rows, framed.rows, "{what}");
                assert_eq!(String::from_utf8_lossy(&m.dead), String::from_utf8_lossy(&framed.dead), "{what}");
            }
        }
        // The runs did read: the clean text is all rows, the broken one all but one.
        let (_, s, _) = run(&opts, &cases[0].1, false);
        assert_eq!((s.rows_total(), s.records_read), (n as u64, n as u64));
        let (_, s) = run_stream(&opts, &cases[7].1, 700);
        assert_eq!((s.rows_total(), s.dead_letters.values().sum::<u64>()), (n as u64 - 1, 1), "{}", cases[7].0);
    }

    #[test]
    fn a_message_of_one_object_is_read_as_the_framer_reads_it() {
        let nested = |levels: usize| format!("{}{}", r#"{"a":"#.repeat(levels - 1) + "1", "}".repeat(levels - 1));
        let record_with = |member: &str| RECORD.replacen('{', &format!("{{{member},"), 1);
        let opts = Options { limits: Limits { max_record_bytes: 2048, max_depth: 6 }, ..Options::default() };
        // (input, whether the one-object path takes it)
        let cases: Vec<(String, bool)> = vec![
            (RECORD.into(), true),
            (format!(" \r\n{RECORD}\n\n"), true),
            ("{}".into(), true),
            // max_depth levels, the record's own counted; then one more.
            (record_with(&format!(r#""deep":{}"#, nested(6))), true),
            (record_with(&format!(r#""deep":{}"#, nested(7))), false),
            (record_with(r#""Records":1"#), true),
            (record_with(r#""Records":[{"eventName":"x"}]"#), false),
            (format!(r#"{{"Records":[{RECORD}]}}"#), false),
            (format!("{RECORD}\n{RECORD}\n"), false),
            (format!("{RECORD}{RECORD}"), false),
            (format!("{RECORD} x"), false),
            (r#"{"eventName":}"#.into(), false),
            (format!(r#"[{RECORD}]"#), false),
            (record_with(&format!(r#""pad":"{}""#, "x".repeat(2048))), false),
        ];
        for (text, fast) in &cases {
            let (a, sa, took) = run(&opts, text.as_bytes(), false);
            let (b, sb, _) = run(&opts, text.as_bytes(), true);
            assert_eq!(took, *fast, "{text}");
            assert_eq!(sa.records_read, sb.records_read, "{text}");
            assert_eq!(sa.rows, sb.rows, "{text}");
            assert_eq!(sa.dead_letters, sb.dead_letters, "{text}");
            assert_eq!(a.rows, b.rows, "{text}");
            assert_eq!(String::from_utf8_lossy(&a.dead), String::from_utf8_lossy(&b.dead), "{text}");
        }
        // Invalid UTF-8 is repaired on both paths alike.
        let bad = [&RECORD.as_bytes()[..RECORD.len() - 1], b",\"x\":\"\xff\"}"].concat();
        let ((a, sa, took), (b, sb, _)) = (run(&opts, &bad, false), run(&opts, &bad, true));
        assert!(took);
        assert_eq!((sa.rows, sa.repaired, a.rows), (sb.rows, sb.repaired, b.rows));
        // The one-object path did produce rows (so the comparison above compared something).
        let (a, s, _) = run(&opts, RECORD.as_bytes(), false);
        assert_eq!((s.rows_total(), a.rows.iter().map(|(_, b)| b.num_rows()).sum::<usize>()), (1, 1));
    }
}
