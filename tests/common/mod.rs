//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cloudtrail_api;
pub mod digests;
pub mod kafka;
pub mod planted;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray, types::*};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use trailship::pipeline::{self, Options, Summary};
use trailship::source::Input;

/// A server or tool `scripts/test.sh` provides, named by `var`. Outside the
/// script the test is skipped with a note; inside it (TRAILSHIP_REQUIRE_EXTERNAL)
/// a missing one fails the test instead.
pub fn external(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var_os("TRAILSHIP_REQUIRE_EXTERNAL").is_none(),
                "{var} is not set: run ./scripts/test.sh"
            );
            eprintln!("SKIPPED: {what} need {var} (run ./scripts/test.sh)");
            None
        }
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// A fresh directory under the target dir, removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!("{name}-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs the pipeline over `paths` into `out` with default options.
pub fn run(out: &Path, paths: &[PathBuf]) -> Summary {
    run_with(Options { out: out.to_path_buf(), ..Options::default() }, paths)
}

pub fn run_with(opts: Options, paths: &[PathBuf]) -> Summary {
    let inputs: Vec<Input> = trailship::source::expand(paths, &opts.out, &no_s3()).expect("inputs exist");
    let s = pipeline::run(&opts, &inputs).expect("pipeline run");
    assert_eq!(s.records_read, s.rows_total() + s.dead_total() + s.filtered, "every record accounted for");
    s
}

/// Every Parquet object under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().extension().is_some_and(|x| x == "parquet") && !e.path().to_string_lossy().contains("/_trailship/")
        })
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// All rows of all objects under `dir/<dataset>` as JSON objects (nulls dropped).
pub fn rows(dir: &Path, dataset: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for f in parquet_files(&dir.join(dataset)) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            out.extend(batch_to_json(&batch.unwrap()));
        }
    }
    out
}

/// Every row of the archive, whatever the dataset.
pub fn all_rows(dir: &Path) -> Vec<Value> {
    trailship::ocsf::Class::ALL.iter().flat_map(|c| rows(dir, c.dataset())).collect()
}

pub fn batch_to_json(b: &RecordBatch) -> Vec<Value> {
    (0..b.num_rows())
        .map(|i| {
            let mut m = Map::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                if let Some(v) = value(c, i) {
                    m.insert(f.name().clone(), v);
                }
            }
            Value::Object(m)
        })
        .collect()
}

fn value(a: &ArrayRef, i: usize) -> Option<Value> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => Value::from(a.as_string::<i32>().value(i)),
        DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::Timestamp(_, _) => Value::from(a.as_primitive::<TimestampMillisecondType>().value(i)),
        DataType::Boolean => Value::from(a.as_boolean().value(i)),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut m = Map::new();
            for (f, c) in fields.iter().zip(s.columns()) {
                if let Some(v) = value(c, i) {
                    m.insert(f.name().clone(), v);
                }
            }
            Value::Object(m)
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let items = l.value(i);
            Value::Array((0..items.len()).map(|j| value(&items, j).unwrap_or(Value::Null)).collect())
        }
        t => panic!("unexpected type {t}"),
    })
}

/// `a.b.c` lookup in a JSON value; a number indexes an array (`resources.0.name`).
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match (v, k.parse::<usize>()) {
        (Value::Array(a), Ok(i)) => a.get(i),
        _ => v.get(k),
    })
}

/// Flattens a JSON object into `a.b.c` → leaf (arrays kept whole).
pub fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &p, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

/// Reads every dead letter under `dir/_dead_letter`.
pub fn dead_letters(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let d = dir.join("_dead_letter");
    let Ok(entries) = std::fs::read_dir(&d) else { return out };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            out.push(serde_json::from_str(line).expect("dead letter lines are JSON"));
        }
    }
    out
}

pub fn find_by_uid<'a>(rows: &'a [Value], uid: &str) -> &'a Value {
    rows.iter()
        .find(|r| get(r, "metadata.uid").and_then(|v| v.as_str()) == Some(uid))
        .unwrap_or_else(|| panic!("no row with metadata.uid {uid}"))
}

/// Where `s3://` inputs would be read from, for tests that have none.
pub fn no_s3() -> trailship::source::object::S3Source {
    trailship::source::object::S3Source::new(None, None)
}
