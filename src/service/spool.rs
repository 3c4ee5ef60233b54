//! One batch's objects, staged on local disk while the batch fills.
//!
//! Row groups go to a spool file per partition as soon as they are full, so
//! memory holds column buffers, never a whole object (Vector and Bento build
//! Parquet files in RAM). The final object keys name the batch's last offset,
//! which is known only when the batch closes; the spool is what lets the
//! upload wait for it without holding the bytes.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::file::properties::WriterProperties;

use crate::batch::PartitionKey;
use crate::encode::{ObjectWriter, WRITE_BUFFER};
use crate::sink::{RowSink, SinkError};

fn io_err(path: &Path, e: std::io::Error) -> SinkError {
    SinkError::Io { path: path.to_path_buf(), source: e }
}

/// A finished spool file, ready to upload.
#[derive(Debug)]
pub struct Staged {
    /// The partition's directory in the archive (`PartitionKey::dir`), or
    /// `None` for the batch's dead letters.
    pub dir: Option<String>,
    pub path: PathBuf,
    pub sha256: [u8; 32],
    pub bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    props: WriterProperties,
    open: Vec<(PartitionKey, ObjectWriter<BufWriter<File>>, PathBuf)>,
    dead: Option<(crate::encode::HashingWriter<BufWriter<File>>, PathBuf)>,
    seq: u32,
    /// Rows for a Security Lake ([`crate::encode::for_lake`]), keeping
    /// the extension's columns or not.
    lake: Option<bool>,
}

impl Spool {
    /// A spool in `dir`, which must exist and belong to this batch alone.
    pub fn new(dir: PathBuf, props: WriterProperties) -> Self {
        Spool { dir, props, open: Vec::new(), dead: None, seq: 0, lake: None }
    }

    /// Rows for a Security Lake (`Some(extension)`): in time order, and
    /// without the trailship extension's columns unless `extension`.
    pub fn with_lake(self, lake: Option<bool>) -> Self {
        Spool { lake, ..self }
    }

    /// The directory its files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn next_path(&mut self, ext: &str) -> PathBuf {
        self.seq += 1;
        self.dir.join(format!("{:05}.{ext}", self.seq))
    }

    /// Closes every file and returns them, dead letters last.
    pub fn finish(mut self) -> Result<Vec<Staged>, SinkError> {
        let mut out = Vec::new();
        for (key, writer, path) in std::mem::take(&mut self.open) {
            let (sha256, bytes, buf) = writer.finish()?;
            buf.into_inner().map_err(|e| io_err(&path, e.into_error()))?;
            out.push(Staged { dir: Some(key.dir()), path, sha256, bytes });
        }
        if let Some((writer, path)) = self.dead.take() {
            let (sha256, bytes, mut buf) = writer.finish();
            buf.flush().map_err(|e| io_err(&path, e))?;
            out.push(Staged { dir: None, path, sha256, bytes });
        }
        Ok(out)
    }

    /// Removes the spool's files (a dropped batch, or after upload).
    pub fn remove(dir: &Path) {
        if let Err(e) = fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove spool directory");
        }
    }
}

impl RowSink for Spool {
    fn write(&mut self, key: &PartitionKey, batch: &RecordBatch) -> Result<(), SinkError> {
        let shaped;
        let batch = match self.lake {
            None => batch,
            Some(extension) => {
                shaped = crate::encode::for_lake(batch, extension);
                &shaped
            }
        };
        let i = match self.open.iter().position(|(k, ..)| k == key) {
            Some(i) => i,
            None => {
                let path = self.next_path("parquet");
                let file = File::create(&path).map_err(|e| io_err(&path, e))?;
                let w = ObjectWriter::new(
                    BufWriter::with_capacity(WRITE_BUFFER, file),
                    batch.schema(),
                    self.props.clone(),
                )?;
                self.open.push((key.clone(), w, path));
                self.open.len() - 1
            }
        };
        self.open[i].1.write(batch)?;
        Ok(())
    }

    fn dead_letter(&mut self, line: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
        if self.dead.is_none() {
            let path = self.next_path("ndjson");
            let file = File::create(&path).map_err(|e| io_err(&path, e))?;
            self.dead = Some((crate::encode::HashingWriter::new(BufWriter::new(file)), path));
        }
        let (w, path) = self.dead.as_mut().expect("just opened");
        let mut buf = Vec::new();
        line(&mut buf);
        w.write_all(&buf).map_err(|e| io_err(path, e))
    }
}
