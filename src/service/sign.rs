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
//!
//! Only the partition's owner seals. A revoked partition's batch may still
//! be going up, and its waiting batches are committed: were this worker to
//! seal them once the group had handed the partition on, the new owner's
//! digest and this one would both follow the same predecessor, a fork the
//! validator reports. They are left to the new owner, which lists committed
//! batches from their intents and replays the uncommitted one.
//!
//! Ownership as librdkafka reports it lags the group: a worker stalled past
//! its session timeout is fenced before it hears so. So a digest is first
//! *claimed*: `_trailship/chains/<writer>/<sha256 of its predecessor's
//! key>.json`, created only if absent, holds the whole signed digest. One
//! writer wins each link; the other finds the claim, writes the winner's
//! digest if the winner died before it could, and reads the chain again.
//! The claim holds the digest, not just a name, so a claimer that dies
//! between claim and digest never leaves the chain stuck.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Intent, failpoint, intent_key};
use crate::integrity::chain::{
    ChainWriter, Covered, DIGESTS_DIR, PUBLIC_KEYS_DIR, SigningKey, parse_digest_key, sha256_hex,
};
use crate::integrity::digest::Digest;
use crate::sink::objects::{ObjectStore, Put, StoreError};
use crate::source::kafka::Assignment;

/// What the chains need of the uploader: its store, and its retries with
/// backoff (None once past the shutdown deadline).
pub(super) trait Io {
    fn store(&self) -> &dyn ObjectStore;
    fn retry<T>(&self, what: &'static str, op: impl FnMut() -> Result<T, StoreError>) -> Option<T>;
}

/// A batch whose objects are written, as its digest lists it.
pub(super) struct Batch<'a> {
    pub tp: (String, i32),
    pub first: i64,
    pub last: i64,
    pub intent: Covered,
    /// Its objects and records, with the hashes of what was written.
    pub covered: Vec<Covered>,
    /// The intent found stored, for a replay: its objects' hashes.
    pub replayed: Option<&'a [u8]>,
    /// The objects and records that were there already (a replay).
    pub found: Vec<String>,
}

pub(super) struct Signer {
    /// The PKCS#8 key as read: each chain signs with its own copy.
    pem: Vec<u8>,
    writer_id: String,
    chains: HashMap<(String, i32), Chain>,
    /// The consumer's partitions; None: every partition is this worker's.
    assignment: Option<Arc<Assignment>>,
}

pub(super) struct Chain {
    pub writer: ChainWriter,
    /// The chain's newest digest in the store, "" before its first: what
    /// this worker's next digest claims to follow.
    pub base: String,
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
    pub fn new(writer: ChainWriter, base: &str, next: i64) -> Chain {
        Chain { writer, base: base.to_owned(), next, pending: Vec::new(), listed_to: None, listed: Default::default() }
    }
}

impl Signer {
    pub fn new(pem: Vec<u8>, writer_id: &str) -> Result<Signer, String> {
        SigningKey::from_pkcs8(&pem)?;
        if !crate::integrity::chain::valid_writer_id(writer_id) {
            return Err(format!("[integrity] writer_id {writer_id:?} must be 1-64 of A-Z a-z 0-9 . _ -"));
        }
        Ok(Signer { pem, writer_id: writer_id.to_owned(), chains: HashMap::new(), assignment: None })
    }

    /// Seals only the chains of partitions `assignment` holds.
    pub fn owned_by(mut self, assignment: Arc<Assignment>) -> Signer {
        self.assignment = Some(assignment);
        self
    }

    /// Whether `tp` is still this worker's to seal.
    fn owns(&self, tp: &(String, i32)) -> bool {
        self.assignment.as_ref().is_none_or(|a| a.contains(tp))
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
        // A file per key, created once: workers never rewrite a shared list.
        (format!("{PUBLIC_KEYS_DIR}{}.json", key.fingerprint()), body)
    }
}

impl Signer {
    /// Writes a batch into its partition's chain, first reading the chain
    /// from the store unless this worker's last batch of the partition
    /// ended where this one starts. None when giving up.
    pub fn sign(&mut self, io: &impl Io, batch: Batch<'_>) -> Option<()> {
        let tp = batch.tp.clone();
        if !self.owns(&tp) {
            // Revoked while going up: this batch is not committed, and
            // nothing this worker adds to the chain could be sealed. Its
            // next owner replays it; reading the chain here would be wasted.
            self.forget(&tp);
            return Some(());
        }
        let result = self.sign_with(io, batch);
        if result.is_none() {
            // What the chain holds in memory may be ahead of the store.
            self.forget(&tp);
        }
        result
    }

    fn sign_with(&mut self, io: &impl Io, batch: Batch<'_>) -> Option<()> {
        let Batch { tp, first, last, intent, covered: mut objects, replayed, found } = batch;
        let (tp, covered) = (&tp, &mut objects);
        if !found.is_empty() {
            // Objects written before (a replay): list what is stored, as its
            // intent recorded it, or as read back when it did not.
            let recorded: Vec<Covered> =
                replayed.and_then(|b| serde_json::from_slice::<Intent>(b).ok()).map(|i| i.covered).unwrap_or_default();
            for c in covered.iter_mut().filter(|c| found.contains(&c.key)) {
                if let Some(r) = recorded.iter().find(|r| r.key == c.key) {
                    *c = r.clone();
                    continue;
                }
                let stored = io.retry("read object", || io.store().get(&c.key))?;
                if let Some(b) = stored {
                    *c = self::covered(&c.key, &b);
                }
            }
        }
        if self.chain(tp, first).is_none() {
            let chain = self.resume(io, tp, first)?;
            if let Some(end) = chain.listed_to
                && end >= first
            {
                // This batch is in the newest digest already (a replay
                // after a crash before its commit). What the replay wrote
                // that the first attempt did not (a log file since gone is
                // a dead letter now) is listed in the next digest.
                chain.listed_to = None;
                let listed = std::mem::take(&mut chain.listed);
                covered.retain(|c| !listed.contains(&c.key));
                chain.next = end.max(last) + 1;
                chain.pending.append(covered);
                return seal_if_due(io, chain, true).map(drop);
            }
        }
        let chain = self.chain(tp, first).expect("resumed above");
        chain.next = last + 1;
        chain.pending.append(covered);
        chain.pending.push(intent);
        if seal_if_due(io, chain, true)? {
            // Crash tests: this batch is in a digest, not yet committed.
            failpoint("after_digest");
        }
        Some(())
    }

    /// Reads `tp`'s chain from the store: continues after its newest
    /// digest, with the batches committed since (their intents, after the
    /// last one that digest lists) waiting for the next. A partition without
    /// a digest starts a chain.
    fn resume(&mut self, io: &impl Io, tp: &(String, i32), first: i64) -> Option<&mut Chain> {
        let (topic, partition) = (tp.0.as_str(), tp.1);
        let writer = self.writer(topic, partition);
        let keys = io.retry("list digests", || io.store().list(&writer_dir(&writer), None))?;
        // A new chain's first digest starts a second back, so that one
        // sealed at once ends now, not a second ahead of the clock.
        let start = crate::sink::now_ms().div_euclid(1000) * 1000 - 1000;
        let new_chain = |base: &str| {
            Chain::new(ChainWriter::new(self.key(), &writer, "", start).expect("valid writer"), base, first)
        };
        let Some(head) = newest(&keys) else { return Some(self.insert(tp, new_chain(""))) };
        // Unreadable, the head still names the link a restarted chain claims.
        let mut chain = new_chain(head);
        let obj = io.retry("read digest", || io.store().get_with_metadata(head))?;
        let (d, sig) = match obj.as_ref().map(|o| (Digest::from_gzip(&o.bytes), o.metadata.get("signature"))) {
            Some((Ok(d), Some(sig))) => (d, sig),
            _ => {
                tracing::error!(digest = %head, "newest digest of the chain is unreadable; starting the chain again");
                return Some(self.insert(tp, chain));
            }
        };
        chain.writer.resume(head, &d, sig);
        let Some(f) = last_first(&d, topic, partition) else { return Some(self.insert(tp, chain)) };
        if f >= first {
            let listed = io.retry("read intent", || io.store().get(&intent_key(topic, partition, f)))?;
            chain.listed_to =
                Some(listed.and_then(|b| serde_json::from_slice::<Intent>(&b).ok()).map_or(f, |i| i.last));
            chain.listed = d.doc.log_files.into_iter().map(|l| l.s3_object).collect();
            return Some(self.insert(tp, chain));
        }
        // Committed after that digest, by a worker that died before the next.
        let dir = intent_key(topic, partition, 0);
        let dir = &dir[..dir.rfind('/').expect("a folder") + 1];
        let after = intent_key(topic, partition, f);
        let later = io.retry("list intents", || io.store().list(dir, Some(&after)))?;
        for key in later {
            let Some(at) =
                key.strip_prefix(dir).and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if at >= first {
                break;
            }
            let Some(body) = io.retry("read intent", || io.store().get(&key))? else { continue };
            match serde_json::from_slice::<Intent>(&body) {
                Ok(i) if !i.covered.is_empty() || i.objects.is_empty() => chain.pending.extend(i.covered),
                _ => tracing::warn!(intent = %key, "intent without its objects' hashes; its batch stays unlisted"),
            }
            chain.pending.push(covered(&key, &body));
        }
        Some(self.insert(tp, chain))
    }

    /// Reads `tp`'s chain as its next batch would start at `committed`, so
    /// that the batches committed after its newest digest are listed even
    /// if no next batch comes. When the newest digest lists a batch from
    /// `committed` on (its worker died before the commit), the batch's
    /// replay reads the chain itself.
    pub fn adopt(&mut self, io: &impl Io, tp: &(String, i32), committed: i64) {
        let owned = self.owns(tp);
        // Twice: a link claimed by a worker that died before writing its
        // digest is completed by the first try, which then reads again.
        for _ in 0..2 {
            self.forget(tp);
            match self.resume(io, tp, committed) {
                Some(chain) if chain.listed_to.is_none() => {
                    if seal_if_due(io, chain, owned).is_some() {
                        return;
                    }
                }
                _ => break,
            }
        }
        self.forget(tp);
    }

    /// Forgets `tp`'s chain, its next batch reading it from the store: a
    /// batch of it was not committed, or it was revoked. Still this
    /// worker's, it first lists what the chain holds in a digest, waiting
    /// out the second if need be. Revoked, it leaves that to the next owner,
    /// which lists committed batches on assignment.
    pub fn seal_leaving(&mut self, io: &impl Io, tp: &(String, i32)) {
        let owned = self.owns(tp);
        if let Some(chain) = self.get(tp)
            && !chain.pending.is_empty()
        {
            if owned {
                if let Some(end) = chain.writer.last_end_ms() {
                    sleep_until(end + 1000);
                }
                let _ = seal_if_due(io, chain, true);
            } else {
                tracing::info!(topic = %tp.0, partition = tp.1, "partition revoked: its committed batches are left to the next owner's digest");
            }
        }
        self.forget(tp);
    }

    /// Seals every chain whose waiting batches are due; `all`: every chain
    /// that has any, waiting out the second if need be (the worker is
    /// stopping). A chain that cannot be sealed is read again later.
    pub fn seal_waiting(&mut self, io: &impl Io, all: bool) {
        if all && let Some(due) = self.due_at() {
            sleep_until(due);
        }
        for tp in self.partitions() {
            let owned = self.owns(&tp);
            let chain = self.get(&tp).expect("listed");
            if seal_if_due(io, chain, owned).is_none() {
                self.forget(&tp);
            }
        }
    }

    /// Publishes this worker's public key beside the archive's digests.
    pub fn publish_key(&self, io: &impl Io) {
        let (key, body) = self.public_key(crate::sink::now_ms());
        if io.retry("publish public key", || io.store().put_bytes(&key, &body)).is_none() {
            tracing::error!(key, "cannot publish the signing key; digests verify once it is published");
        }
    }
}

/// Seals `chain`'s waiting batches unless its newest digest ended in
/// this second: keys and end times are whole seconds, and a digest's
/// end is never ahead of the clock. Waiting batches are committed
/// meanwhile; the next owner of the partition finds them by their
/// intents, after the last one its newest digest lists. `owned`: the
/// partition is still this worker's (see the module's note).
/// Some(false): nothing sealed (not due, nothing waiting, or not owned).
fn seal_if_due(io: &impl Io, chain: &mut Chain, owned: bool) -> Option<bool> {
    let now = crate::sink::now_ms();
    if !owned || chain.pending.is_empty() || chain.writer.last_end_ms().is_some_and(|end| now < end + 1000) {
        return Some(false);
    }
    let sealed = chain.writer.seal(std::mem::take(&mut chain.pending), now);
    let claim = Claim {
        digest: sealed.key.clone(),
        gz: base64::engine::general_purpose::STANDARD.encode(&sealed.gz),
        metadata: sealed.metadata.clone(),
    };
    let (key, body) = (claim_key(chain.writer.writer(), &chain.base), serde_json::to_vec(&claim).expect("serialises"));
    let claimed = io.retry("claim digest", || io.store().put_bytes(&key, &body))?;
    if claimed == Put::Created {
        // Crash tests: the link is claimed, its digest not yet written.
        failpoint("after_claim");
    } else {
        let stored = io.retry("read claim", || io.store().get(&key))?;
        // Not this digest's own earlier try: another writer holds the link,
        // so this one was fenced (or its chain is stale).
        let other = stored.as_deref().filter(|b| *b != &body[..]);
        if let Some(other) = other {
            let theirs = serde_json::from_slice::<Claim>(other).ok();
            match theirs.and_then(|c| Some((c.digest_of(chain.writer.writer())?, c))) {
                Some((gz, c)) => {
                    tracing::warn!(
                        after = %chain.base, claim = %key,
                        "another writer sealed this chain's next digest; reading the chain again"
                    );
                    // Written already, unless its sealer died first.
                    io.retry("write claimed digest", || {
                        io.store().put_bytes_with_metadata(&c.digest, &gz, &c.metadata)
                    })?;
                    return None;
                }
                // Such a claim cannot be followed, nor replaced (it may be
                // locked): sealing past it beats stopping the partition.
                None => tracing::error!(
                    after = %chain.base, claim = %key,
                    "the claim of this link holds no digest of the chain; sealing without it"
                ),
            }
        }
    }
    let put =
        io.retry("write digest", || io.store().put_bytes_with_metadata(&sealed.key, &sealed.gz, &sealed.metadata))?;
    if put == Put::Exists {
        let stored = io.retry("read digest", || io.store().get(&sealed.key))?;
        if stored.as_deref() != Some(&sealed.gz[..]) {
            tracing::error!(digest = %sealed.key, "another writer's digest holds this key; reading the chain again");
            return None;
        }
    }
    chain.base = sealed.key;
    Some(true)
}

/// The digest that follows `base` in `writer`'s chain, as its sealer
/// claimed the link: the digest's key, its bytes and its metadata.
#[derive(Serialize, Deserialize)]
struct Claim {
    digest: String,
    /// The gzip bytes, base64.
    gz: String,
    metadata: BTreeMap<String, String>,
}

/// Where the link after `base` is claimed.
pub(super) fn claim_key(writer: &str, base: &str) -> String {
    format!("_trailship/chains/{writer}/{}.json", sha256_hex(base.as_bytes()))
}

impl Claim {
    /// The digest's bytes, if the claim holds a digest of `writer`'s chain
    /// under its own key.
    fn digest_of(&self, writer: &str) -> Option<Vec<u8>> {
        let gz = base64::engine::general_purpose::STANDARD.decode(&self.gz).ok()?;
        let d = Digest::from_gzip(&gz).ok()?;
        let ours = parse_digest_key(&self.digest).is_some_and(|(w, _)| w == writer);
        (ours && d.doc.digest_s3_object == self.digest).then_some(gz)
    }
}

/// Sleeps until the wall clock reads `ms` (a digest may be sealed), two
/// seconds at most: a clock stepped back must not hold the uploader.
fn sleep_until(ms: i64) {
    let wait = ms - crate::sink::now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait.min(2000) as u64));
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
