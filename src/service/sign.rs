//! The S3 (or local) archive's own digest chain, written by the workers:
//! one chain per Kafka partition, `_digests/<writer_id>.<topic>.<partition>/`,
//! in the shape the local archive's chain has (`integrity::chain`), checked
//! by `validate-digests --archive`.
//!
//! A chain per partition, not per worker, because a partition is what moves
//! between workers and what has an order: its batches are written one at a
//! time, by one worker at a time. A batch is sealed as it goes up, before
//! its commit, unless the chain's newest digest ended in this second (keys
//! and end times are whole seconds); then it waits, committed, for the next
//! digest. So every committed batch is in a digest, or recorded by an
//! intent after the last one the newest digest lists: whoever is assigned
//! the partition reads the chain and lists those. A batch the newest digest
//! lists already (a replay after a crash between digest and commit) is not
//! listed twice.
//!
//! Digests list batches' objects (Parquet, dead letters, integrity records)
//! and their intents, whose keys name the batches' first offsets.

use std::collections::HashMap;

use crate::integrity::chain::{ChainWriter, Covered, DIGESTS_DIR, SigningKey, parse_digest_key, sha256_hex};
use crate::integrity::digest::Digest;

/// Where a worker publishes its public key: a file per key, created once,
/// so that workers never rewrite a shared list.
pub(super) const KEYS_DIR: &str = "_digests/public-keys/";

pub(super) struct Signer {
    /// The PKCS#8 key as read: each chain signs with its own copy.
    pem: Vec<u8>,
    writer_id: String,
    chains: HashMap<(String, i32), Chain>,
}

pub(super) struct Chain {
    pub writer: ChainWriter,
    /// The offset after the last batch in this chain.
    pub next: i64,
    /// Objects of committed batches the next digest lists.
    pub pending: Vec<Covered>,
    /// Read with the chain, when its newest digest lists the batch about
    /// to be written (a replay): the last offset it lists, and its objects.
    pub listed_to: Option<i64>,
    pub listed: std::collections::HashSet<String>,
}

impl Chain {
    pub fn new(writer: ChainWriter, next: i64) -> Chain {
        Chain { writer, next, pending: Vec::new(), listed_to: None, listed: Default::default() }
    }
}

impl Signer {
    pub fn new(pem: Vec<u8>, writer_id: &str) -> Result<Signer, String> {
        SigningKey::from_pkcs8(&pem)?;
        if !crate::integrity::chain::valid_writer_id(writer_id) {
            return Err(format!("[integrity] writer_id {writer_id:?} must be 1-64 of A-Z a-z 0-9 . _ -"));
        }
        Ok(Signer { pem, writer_id: writer_id.to_owned(), chains: HashMap::new() })
    }

    pub fn key(&self) -> SigningKey {
        SigningKey::from_pkcs8(&self.pem).expect("checked in new")
    }

    /// `<writer_id>.<topic>.<partition>`; a topic that would make it longer
    /// than a writer id may be is named by a hash of its name instead.
    pub fn writer(&self, topic: &str, partition: i32) -> String {
        let w = format!("{}.{topic}.{partition}", self.writer_id);
        if crate::integrity::chain::valid_writer_id(&w) {
            w
        } else {
            format!("{}.{}.{partition}", self.writer_id, &sha256_hex(topic.as_bytes())[..16])
        }
    }

    /// The chain of `tp` when it continues at `first`.
    pub fn chain(&mut self, tp: &(String, i32), first: i64) -> Option<&mut Chain> {
        self.chains.get_mut(tp).filter(|c| c.next == first)
    }

    pub fn insert(&mut self, tp: &(String, i32), chain: Chain) -> &mut Chain {
        self.chains.insert(tp.clone(), chain);
        self.chains.get_mut(tp).expect("inserted")
    }

    /// When every chain with batches waiting may seal them (a second after
    /// its newest digest's end); None when none waits.
    pub fn due_at(&self) -> Option<i64> {
        self.chains
            .values()
            .filter(|c| !c.pending.is_empty())
            .map(|c| c.writer.last_end_ms().map_or(0, |end| end + 1000))
            .max()
    }

    pub fn partitions(&self) -> Vec<(String, i32)> {
        self.chains.keys().cloned().collect()
    }

    pub fn get(&mut self, tp: &(String, i32)) -> Option<&mut Chain> {
        self.chains.get_mut(tp)
    }

    /// Forgets `tp`'s chain: the partition went elsewhere, or a batch was
    /// not committed, so its next batch reads the chain from the store.
    pub fn forget(&mut self, tp: &(String, i32)) {
        self.chains.remove(tp);
    }

    /// The body of this worker's public key file, and its key.
    pub fn public_key(&self, now_ms: i64) -> (String, Vec<u8>) {
        let key = self.key();
        let body = crate::integrity::chain::public_keys_with(None, &key, now_ms).expect("a new list lacks the key");
        (format!("{KEYS_DIR}{}.json", key.fingerprint()), body)
    }
}

/// The newest digest key among `keys` (a writer's folder), by its stamp.
pub(super) fn newest(keys: &[String]) -> Option<&String> {
    keys.iter().filter_map(|k| parse_digest_key(k).map(|(_, stamp)| (stamp, k))).max().map(|(_, k)| k)
}

/// The first offset of the newest batch of `topic`/`partition` a digest
/// lists, from its intents' keys (`_trailship/kafka/<topic>/<p>/<first>.json`).
pub(super) fn last_first(d: &Digest, topic: &str, partition: i32) -> Option<i64> {
    let prefix = format!("_trailship/kafka/{topic}/{partition}/");
    d.doc.log_files.iter().filter_map(|f| f.s3_object.strip_prefix(&prefix)?.strip_suffix(".json")?.parse().ok()).max()
}

/// The digests folder of a writer.
pub(super) fn writer_dir(writer: &str) -> String {
    format!("{DIGESTS_DIR}/{writer}/")
}

/// `Covered` for a body written as `key`.
pub(super) fn covered(key: &str, body: &[u8]) -> Covered {
    Covered { key: key.to_owned(), sha256: sha256_hex(body), bytes: body.len() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_are_valid_ids_whatever_the_topic() {
        let pem = crate::integrity::chain::generate_ed25519_pem().into_bytes();
        let s = Signer::new(pem, "archive").unwrap();
        assert_eq!(s.writer("ct", 3), "archive.ct.3");
        let long = s.writer(&"t".repeat(200), 3);
        assert!(crate::integrity::chain::valid_writer_id(&long) && long.ends_with(".3"), "{long}");
        assert!(Signer::new(b"not a key".to_vec(), "archive").is_err());
    }

    #[test]
    fn the_newest_digest_is_the_latest_stamp() {
        let keys = [
            "_digests/w/2026/12/05/trailship-digest_20261205T235959Z.json.gz",
            "_digests/w/2026/12/06/trailship-digest_20261206T000001Z.json.gz",
            "_digests/w/2026/12/06/trailship-digest_20261206T000000Z.json.gz",
            "_digests/w/2026/12/06/other.json",
        ]
        .map(String::from);
        assert_eq!(newest(&keys).unwrap(), &keys[1]);
        assert_eq!(newest(&keys[3..]), None);
    }
}
