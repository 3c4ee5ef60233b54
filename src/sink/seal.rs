//! Seals the local archive's digest chain (`integrity::chain`).
//!
//! Crash safety: a checkpoint appends its objects to
//! `_trailship/undigested.ndjson` before it completes, so no committed
//! object can miss its digest. A seal writes the digest (signature sidecar
//! first, then the digest by rename) and only then empties that file; after
//! a crash between the two, the objects the newest digest already lists are
//! dropped on start instead of being listed twice.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::integrity::chain::{ChainWriter, Covered, DIGESTS_DIR, PUBLIC_KEYS, digest_name_stamp, public_keys_with};
use crate::integrity::digest::Digest;
use crate::integrity::store::{LocalStore, Store as _, sidecar_path};
use crate::sink::SinkError;
use crate::sink::local::{create_dirs_synced, io_err, sync_dir, write_synced};

const UNDIGESTED: &str = "undigested.ndjson";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct Sealer {
    root: PathBuf,
    state: PathBuf,
    chain: ChainWriter,
    interval_ms: i64,
    undigested: Vec<Covered>,
    last_seal_ms: i64,
}

impl Sealer {
    pub fn open(root: &Path, state: &Path, mut chain: ChainWriter, interval_ms: i64) -> Result<Sealer, SinkError> {
        let corrupt = |path: &Path, detail: String| SinkError::Corrupt { path: path.to_path_buf(), detail };
        let mut listed_by_newest = HashSet::new();
        if let Some(newest) = newest_digest(&root.join(DIGESTS_DIR).join(chain.writer())) {
            // Read as the validator reads it: bytes and sidecar metadata together.
            let rel = newest.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            let obj = LocalStore::new(root).get("", &rel).map_err(|e| corrupt(&newest, e.to_string()))?;
            let d = Digest::from_gzip(&obj.bytes).map_err(|e| corrupt(&newest, e.to_string()))?;
            let sig =
                obj.metadata.get("signature").ok_or_else(|| corrupt(&sidecar_path(&newest), "no signature".into()))?;
            chain.resume(&rel, &d, sig);
            listed_by_newest.extend(d.doc.log_files.into_iter().map(|f| f.s3_object));
        }
        let mut undigested = read_undigested(state)?;
        undigested.retain(|c| !listed_by_newest.contains(&c.key));

        // Publish the public key beside the archive; rotated keys stay listed.
        let keys_path = root.join(PUBLIC_KEYS);
        let existing = fs::read(&keys_path).ok();
        if let Some(body) = public_keys_with(existing.as_deref(), chain.signing_key(), now_ms()) {
            let dir = keys_path.parent().expect("has a parent");
            create_dirs_synced(dir)?;
            let tmp = keys_path.with_extension("json.tmp");
            write_synced(&tmp, &body)?;
            fs::rename(&tmp, &keys_path).map_err(|e| io_err(&keys_path, e))?;
            sync_dir(dir)?;
        }
        let last_seal_ms = chain.last_end_ms().unwrap_or(i64::MIN / 2);
        Ok(Sealer { root: root.into(), state: state.into(), chain, interval_ms, undigested, last_seal_ms })
    }

    pub fn add(&mut self, objects: impl IntoIterator<Item = Covered>) {
        self.undigested.extend(objects);
    }

    pub fn seal_if_due(&mut self, now_ms: i64, force: bool) -> Result<Option<String>, SinkError> {
        let due = now_ms - self.last_seal_ms >= self.interval_ms;
        if !(due || force && !self.undigested.is_empty()) {
            return Ok(None);
        }
        let objects = dedup(std::mem::take(&mut self.undigested));
        let sealed = self.chain.seal(objects, now_ms);
        let path = self.root.join(&sealed.key);
        let dir = path.parent().expect("digest keys have folders");
        create_dirs_synced(dir)?;
        write_synced(&sidecar_path(&path), &serde_json::to_vec(&sealed.metadata).expect("serialises"))?;
        let tmp = path.with_extension("gz.tmp");
        write_synced(&tmp, &sealed.gz)?;
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
        write_synced(&self.state.join(UNDIGESTED), b"")?;
        self.last_seal_ms = now_ms;
        tracing::info!(digest = %sealed.key, objects = sealed.covered.len(), "sealed a digest");
        Ok(Some(sealed.key))
    }
}

/// The newest `trailship-digest_*.json.gz` under a writer's folder.
fn newest_digest(dir: &Path) -> Option<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let stamp = digest_name_stamp(e.file_name().to_str()?)?.to_owned();
            Some((stamp, e.into_path()))
        })
        .max()
        .map(|(_, p)| p)
}

/// Appends objects awaiting a digest, durably.
pub fn append_undigested(state: &Path, objects: &[Covered]) -> Result<(), SinkError> {
    if objects.is_empty() {
        return Ok(());
    }
    let path = state.join(UNDIGESTED);
    let mut body = Vec::new();
    for o in objects {
        serde_json::to_writer(&mut body, o).expect("serialises");
        body.push(b'\n');
    }
    let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_err(&path, e))?;
    f.write_all(&body).map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))
}

fn read_undigested(state: &Path) -> Result<Vec<Covered>, SinkError> {
    let path = state.join(UNDIGESTED);
    let Ok(body) = fs::read_to_string(&path) else { return Ok(Vec::new()) };
    let all = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| SinkError::Corrupt { path: path.clone(), detail: e.to_string() }))
        .collect::<Result<Vec<Covered>, _>>()?;
    Ok(dedup(all))
}

/// First occurrence of each key, in order (a rolled-forward journal appends twice).
fn dedup(objects: Vec<Covered>) -> Vec<Covered> {
    let mut seen = HashSet::new();
    objects.into_iter().filter(|o| seen.insert(o.key.clone())).collect()
}
