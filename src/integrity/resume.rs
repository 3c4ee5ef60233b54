//! `--resume FILE`: log files already proven valid by an earlier,
//! interrupted run are not fetched again. The file is an append-only list,
//! one JSON line per valid log file, keyed by bucket, key and the hash the
//! digest expects: a log file listed with another hash is checked afresh.
//! Only valid verdicts are kept; anything else is checked again (and
//! reported again) so a resumed run never hides a failure.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::digest::LogFileEntry;

#[derive(Serialize, Deserialize, PartialEq, Eq, Hash)]
struct Done {
    bucket: String,
    key: String,
    sha256: String,
}

impl Done {
    fn of(e: &LogFileEntry) -> Done {
        Done { bucket: e.s3_bucket.clone(), key: e.s3_object.clone(), sha256: e.hash_value.to_ascii_lowercase() }
    }
}

pub struct Resume {
    path: PathBuf,
    done: HashSet<Done>,
    out: Mutex<File>,
}

#[derive(Debug, thiserror::Error)]
#[error("resume file {path}: {detail}")]
pub struct ResumeError {
    path: String,
    detail: String,
}

impl Resume {
    /// Reads what an earlier run proved, and appends to the same file.
    pub fn open(path: &Path) -> Result<Resume, ResumeError> {
        let err = |detail: String| ResumeError { path: path.display().to_string(), detail };
        let mut done = HashSet::new();
        if let Ok(f) = File::open(path) {
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| err(e.to_string()))?;
                match serde_json::from_str::<Done>(&line) {
                    Ok(d) => {
                        done.insert(d);
                    }
                    // The last line of a run that was killed may be cut short.
                    Err(_) if line.trim().is_empty() => {}
                    Err(e) => tracing::warn!(line = i + 1, error = %e, "skipping an unreadable resume line"),
                }
            }
        }
        let out = OpenOptions::new().create(true).append(true).open(path).map_err(|e| err(e.to_string()))?;
        Ok(Resume { path: path.into(), done, out: Mutex::new(out) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_done(&self, e: &LogFileEntry) -> bool {
        self.done.contains(&Done::of(e))
    }

    /// Records a valid log file. A failed write only costs a re-check later.
    pub fn record(&self, e: &LogFileEntry) {
        let mut line = serde_json::to_vec(&Done::of(e)).expect("serialises");
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = out.write_all(&line) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot append to the resume file");
        }
    }
}
