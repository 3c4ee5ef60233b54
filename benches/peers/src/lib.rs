//! Peer contenders for trailship's benchmark (`benches/peers.sh`):
//!
//! - `vrl`: the Vector path. Each record becomes a VRL `Value` (as Vector's
//!   JSON decoder makes it), runs `cloudtrail_to_ocsf.vrl` through VRL's
//!   runtime (as Vector's `remap` transform does), and the result goes to
//!   Parquet through arrow-json's decoder (as Vector's Parquet encoder does).
//! - `naive`: a `serde_json::Value` per record, fields picked by key into
//!   Arrow builders.
//!
//! Both read the same gzip CloudTrail log files as trailship and write zstd
//! Parquet. `peers MODE IN_DIR OUT_DIR THREADS` prints one JSON line:
//! events, bytes of JSON read, rows written. Two binaries run them: `peers`
//! with the system allocator (the naive baseline's), `peers-jemalloc` with
//! jemalloc, the allocator Vector's Linux builds have (its `unix` feature,
//! on by default, makes `tikv-jemallocator` the global allocator), for the
//! VRL path.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const BATCH_ROWS: usize = 8192;
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The command line: `MODE IN_DIR OUT_DIR THREADS`.
pub fn cli() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: peers vrl|naive IN_DIR OUT_DIR THREADS");
        std::process::exit(2);
    }
    let (mode, input, out) = (args[1].as_str(), Path::new(&args[2]), PathBuf::from(&args[3]));
    let threads: usize = args[4].parse().expect("THREADS is a number");
    let mut files = Vec::new();
    walk(input, &mut files);
    files.sort();
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let next = AtomicUsize::new(0);
    let totals: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let (files, next, out) = (&files, &next, &out);
                s.spawn(move || {
                    let path = out.join(format!("{mode}-{t}.zstd.parquet"));
                    match mode {
                        "vrl" => run(files, next, &path, ocsf_schema(), VrlPath::new()),
                        "naive" => run(files, next, &path, naive_schema(), Naive::default()),
                        _ => panic!("unknown mode {mode}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let (events, bytes, rows) = totals.iter().fold((0, 0, 0), |(e, b, r), (e2, b2, r2)| (e + e2, b + b2, r + r2));
    println!(r#"{{"mode":"{mode}","events":{events},"json_bytes":{bytes},"rows":{rows}}}"#);
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read IN_DIR") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.to_string_lossy().ends_with(".json.gz") {
            out.push(p);
        }
    }
}

/// Turns records into record batches.
trait Contender {
    /// Adds one CloudTrail record; returns a batch when one is full.
    fn push(&mut self, record: serde_json::Value) -> Option<RecordBatch>;
    fn finish(&mut self) -> Option<RecordBatch>;
}

fn run(files: &[PathBuf], next: &AtomicUsize, out: &Path, schema: SchemaRef, mut c: impl Contender) -> (u64, u64, u64) {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut w = ArrowWriter::try_new(File::create(out).expect("create output"), schema, Some(props)).unwrap();
    let (mut events, mut bytes, mut rows) = (0u64, 0u64, 0u64);
    let mut json = Vec::new();
    while let Some(path) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
        json.clear();
        flate2::read::MultiGzDecoder::new(File::open(path).expect("open input")).read_to_end(&mut json).unwrap();
        bytes += json.len() as u64;
        let mut file: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        let serde_json::Value::Array(records) = file["Records"].take() else { panic!("no Records") };
        for r in records {
            events += 1;
            if let Some(b) = c.push(r) {
                rows += b.num_rows() as u64;
                w.write(&b).unwrap();
            }
        }
    }
    if let Some(b) = c.finish() {
        rows += b.num_rows() as u64;
        w.write(&b).unwrap();
    }
    w.close().unwrap();
    (events, bytes, rows)
}

// ---- the Vector path -------------------------------------------------------

struct VrlPath {
    program: vrl::compiler::Program,
    runtime: vrl::compiler::runtime::Runtime,
    tz: vrl::compiler::TimeZone,
    decoder: arrow_json::reader::Decoder,
    pending: usize,
    line: Vec<u8>,
}

impl VrlPath {
    fn new() -> Self {
        let src = include_str!("../cloudtrail_to_ocsf.vrl");
        let program = match vrl::compiler::compile(src, &vrl::stdlib::all()) {
            Ok(r) => r.program,
            Err(d) => panic!("{}", vrl::diagnostic::Formatter::new(src, d)),
        };
        let decoder =
            arrow_json::ReaderBuilder::new(ocsf_schema()).with_batch_size(BATCH_ROWS).build_decoder().unwrap();
        VrlPath {
            program,
            runtime: vrl::compiler::runtime::Runtime::default(),
            tz: vrl::compiler::TimeZone::default(),
            decoder,
            pending: 0,
            line: Vec::new(),
        }
    }
}

impl Contender for VrlPath {
    fn push(&mut self, record: serde_json::Value) -> Option<RecordBatch> {
        let mut target = vrl::compiler::TargetValue {
            value: vrl::value::Value::from(record),
            metadata: vrl::value::Value::Object(Default::default()),
            secrets: vrl::value::Secrets::default(),
        };
        self.runtime.resolve(&mut target, &self.program, &self.tz).expect("remap succeeds on the corpus");
        self.runtime.clear();
        // Vector's Parquet encoder hands events to arrow-json as JSON.
        self.line.clear();
        serde_json::to_writer(&mut self.line, &target.value).unwrap();
        let n = self.decoder.decode(&self.line).unwrap();
        assert_eq!(n, self.line.len(), "one event fits the decoder's batch");
        self.pending += 1;
        if self.pending == BATCH_ROWS { self.finish() } else { None }
    }

    fn finish(&mut self) -> Option<RecordBatch> {
        self.pending = 0;
        self.decoder.flush().unwrap()
    }
}

fn s(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}
fn i32f(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}
fn obj(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// The OCSF-like projection the VRL program writes (trailship's column
/// names for the fields it maps).
fn ocsf_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        i32f("class_uid"),
        i32f("category_uid"),
        i32f("activity_id"),
        Field::new("type_uid", DataType::Int64, true),
        i32f("severity_id"),
        Field::new("time", DataType::Int64, true),
        s("time_dt"),
        i32f("status_id"),
        s("status"),
        obj(
            "metadata",
            vec![
                s("version"),
                s("uid"),
                s("original_event_uid"),
                s("original_time"),
                s("event_code"),
                s("log_name"),
                s("log_provider"),
                obj("product", vec![s("name"), s("vendor_name"), s("version")]),
                Field::new("profiles", DataType::List(Arc::new(s("item"))), true),
            ],
        ),
        obj("cloud", vec![s("provider"), s("region"), obj("account", vec![s("uid")])]),
        obj(
            "actor",
            vec![
                obj(
                    "user",
                    vec![
                        s("type"),
                        s("uid"),
                        s("uid_alt"),
                        s("name"),
                        s("credential_uid"),
                        obj("account", vec![s("uid")]),
                    ],
                ),
                obj(
                    "session",
                    vec![
                        s("credential_uid"),
                        s("created_time_dt"),
                        Field::new("is_mfa", DataType::Boolean, true),
                        s("issuer"),
                    ],
                ),
                s("invoked_by"),
            ],
        ),
        obj("src_endpoint", vec![s("ip"), s("uid")]),
        obj("http_request", vec![s("user_agent")]),
        obj(
            "api",
            vec![
                s("operation"),
                s("version"),
                obj("service", vec![s("name")]),
                obj("request", vec![s("uid"), s("data")]),
                obj("response", vec![s("error"), s("message"), s("data")]),
            ],
        ),
        Field::new(
            "resources",
            DataType::List(Arc::new(obj(
                "item",
                vec![s("uid"), s("type"), obj("owner", vec![obj("account", vec![s("uid")])])],
            ))),
            true,
        ),
        s("unmapped"),
    ]))
}

// ---- the naive baseline ----------------------------------------------------

/// Flat columns, picked from the `Value` by path.
const NAIVE_STR: &[(&str, &str)] = &[
    ("time_dt", "/eventTime"),
    ("metadata_uid", "/eventID"),
    ("metadata_product_version", "/eventVersion"),
    ("api_operation", "/eventName"),
    ("api_service_name", "/eventSource"),
    ("api_version", "/apiVersion"),
    ("api_request_uid", "/requestID"),
    ("api_response_error", "/errorCode"),
    ("api_response_message", "/errorMessage"),
    ("cloud_region", "/awsRegion"),
    ("cloud_account_uid", "/recipientAccountId"),
    ("src_endpoint_ip", "/sourceIPAddress"),
    ("http_request_user_agent", "/userAgent"),
    ("actor_user_type", "/userIdentity/type"),
    ("actor_user_uid", "/userIdentity/principalId"),
    ("actor_user_uid_alt", "/userIdentity/arn"),
    ("actor_user_name", "/userIdentity/userName"),
    ("actor_user_credential_uid", "/userIdentity/accessKeyId"),
    ("actor_user_account_uid", "/userIdentity/accountId"),
    ("actor_session_issuer", "/userIdentity/sessionContext/sessionIssuer/arn"),
    ("actor_invoked_by", "/userIdentity/invokedBy"),
];
/// Columns holding a member as JSON text.
const NAIVE_JSON: &[(&str, &str)] = &[
    ("api_request_data", "/requestParameters"),
    ("api_response_data", "/responseElements"),
    ("resources", "/resources"),
    ("unmapped_additional", "/additionalEventData"),
    ("unmapped_tls", "/tlsDetails"),
];

fn naive_schema() -> SchemaRef {
    let mut f = vec![i32f("class_uid"), i32f("activity_id"), Field::new("time", DataType::Int64, true)];
    f.extend(NAIVE_STR.iter().chain(NAIVE_JSON).map(|(n, _)| s(n)));
    Arc::new(Schema::new(f))
}

#[derive(Default)]
struct Naive {
    class: Int32Builder,
    activity: Int32Builder,
    time: Int64Builder,
    cols: Vec<StringBuilder>,
    rows: usize,
}

impl Contender for Naive {
    fn push(&mut self, r: serde_json::Value) -> Option<RecordBatch> {
        if self.cols.is_empty() {
            self.cols = (0..NAIVE_STR.len() + NAIVE_JSON.len()).map(|_| StringBuilder::new()).collect();
        }
        let name = r["eventName"].as_str().unwrap_or("");
        let auth = matches!(name, "ConsoleLogin" | "AssumeRole" | "GetSessionToken");
        self.class.append_value(if auth { 3002 } else { 6003 });
        let activity = match name {
            n if n.starts_with("Create") || n.starts_with("Run") || n.starts_with("Put") => 1,
            n if n.starts_with("Get") || n.starts_with("Describe") || n.starts_with("List") => 2,
            n if n.starts_with("Delete") || n.starts_with("Terminate") => 4,
            _ => 99,
        };
        self.activity.append_value(activity);
        self.time.append_option(r["eventTime"].as_str().and_then(epoch_ms));
        for (i, (_, p)) in NAIVE_STR.iter().enumerate() {
            self.cols[i].append_option(r.pointer(p).and_then(|v| v.as_str()));
        }
        for (i, (_, p)) in NAIVE_JSON.iter().enumerate() {
            let v = r.pointer(p).filter(|v| !v.is_null()).map(|v| serde_json::to_string(v).unwrap());
            self.cols[NAIVE_STR.len() + i].append_option(v);
        }
        self.rows += 1;
        if self.rows == BATCH_ROWS { self.finish() } else { None }
    }

    fn finish(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        let mut cols: Vec<ArrayRef> =
            vec![Arc::new(self.class.finish()), Arc::new(self.activity.finish()), Arc::new(self.time.finish())];
        cols.extend(self.cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Some(RecordBatch::try_new(naive_schema(), cols).unwrap())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` → milliseconds since the epoch.
fn epoch_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}
