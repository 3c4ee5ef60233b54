//! trailship's own digest chain: archives written by the pipeline with a
//! signing key (RSA from the test generator, or Ed25519 from `keygen`), then
//! tampered with, then validated. Each scenario names the bad object.

mod common;

use std::path::{Path, PathBuf};

use common::TempDir;
use common::digests::{gunzip, gzip, keys};
use trailship::integrity::archive::{ArchiveOptions, validate_archive};
use trailship::integrity::chain::{PUBLIC_KEYS, SigningKey, generate_ed25519_pem};
use trailship::integrity::digest::Digest;
use trailship::integrity::keys::KeySet;
use trailship::integrity::store::{LocalStore, Store};
use trailship::integrity::validate::{Kind, Report, Verdict};
use trailship::pipeline::{self, Options};
use trailship::source::Input;

const HOUR: i64 = 3_600_000;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Three inputs, one per run: two CloudTrail files, and one with a
/// malformed line so that a dead-letter file is covered too.
fn inputs(dir: &TempDir) -> Vec<PathBuf> {
    let a = common::fixture("cloudtrail/awsdocs/console-signin-01-iam-user-successful-sign-in-without-mfa.json");
    let b = common::fixture("cloudtrail/awsdocs/console-signin-09-root-user-mfa-changed.json");
    let c = dir.write("in/broken.ndjson", b"{\"Records\": [ this is not json\n");
    vec![a, b, c]
}

enum Algo {
    Rsa,
    Ed25519,
}

fn key_file(dir: &TempDir, algo: Algo) -> PathBuf {
    match algo {
        Algo::Rsa => dir.write("rsa.pk8", &keys()[0].pkcs8_der),
        Algo::Ed25519 => dir.write("ed.pem", generate_ed25519_pem().as_bytes()),
    }
}

/// An archive with one digest per run; returns the digests' keys, oldest first.
fn build(out: &Path, key: &Path, inputs: &[PathBuf]) -> Vec<String> {
    let mut digests = Vec::new();
    for input in inputs {
        let mut opts = Options { out: out.to_path_buf(), ..Options::default() };
        opts.integrity.signing_key_file = Some(key.to_path_buf());
        let s = pipeline::run(&opts, &[Input::File(input.clone())]).unwrap();
        assert_eq!(s.digests.len(), 1, "one digest per run with new objects");
        digests.extend(s.digests);
    }
    digests
}

fn published(out: &Path) -> KeySet {
    KeySet::from_file(&out.join(PUBLIC_KEYS)).unwrap()
}

fn check_at(out: &Path, keys: &KeySet, now_ms: i64) -> Report {
    let opts = ArchiveOptions {
        bucket: String::new(),
        prefix: String::new(),
        location: out.display().to_string(),
        concurrency: 4,
        now_ms,
        grace_ms: 2 * HOUR,
        progress: false,
    };
    validate_archive(&LocalStore::new(out), keys, &opts).unwrap()
}

/// Validation three hours from now: anything a digest should list is overdue.
fn check(out: &Path) -> Report {
    check_at(out, &published(out), now() + 3 * HOUR)
}

fn verdict_of(r: &Report, kind: Kind, suffix: &str) -> Verdict {
    let hits: Vec<_> = r.findings.iter().filter(|f| f.kind == kind && f.location.ends_with(suffix)).collect();
    assert_eq!(hits.len(), 1, "one {kind:?} ending {suffix}: {:#?}", r.findings);
    hits[0].verdict.clone()
}

fn invalid(r: &Report) -> Vec<(Kind, String, Verdict)> {
    let mut v: Vec<_> = r
        .findings
        .iter()
        .flat_map(|f| std::iter::once(&f.verdict).chain(&f.also).map(move |v| (f, v)))
        .filter(|(_, v)| !v.is_valid())
        .map(|(f, v)| (f.kind, f.location.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

/// Parquet and dead-letter objects a digest lists.
fn listed(out: &Path, digest: &str) -> Vec<String> {
    let d = Digest::from_gzip(&std::fs::read(out.join(digest)).unwrap()).unwrap();
    d.doc.log_files.iter().map(|f| f.s3_object.clone()).collect()
}

/// Rewrites a digest's JSON; `resign` signs it again with the writer's key
/// (an insider with the key), else the old signature stays.
fn edit_digest(out: &Path, digest: &str, resign: Option<&Path>, f: impl FnOnce(&mut serde_json::Value)) {
    let path = out.join(digest);
    let mut doc: serde_json::Value = serde_json::from_slice(&gunzip(&std::fs::read(&path).unwrap())).unwrap();
    f(&mut doc);
    let raw = serde_json::to_vec(&doc).unwrap();
    std::fs::write(&path, gzip(&raw, 6)).unwrap();
    if let Some(key) = resign {
        let key = SigningKey::from_file(key).unwrap();
        let d = Digest::from_json(&raw).unwrap();
        let sig = hex::encode(key.sign(d.data_to_sign().as_bytes()));
        let meta = serde_json::json!({ "signature": sig, "signature-algorithm": key.algorithm() });
        std::fs::write(format!("{}.metadata.json", path.display()), meta.to_string()).unwrap();
    }
}

#[test]
fn untouched_archives_validate_with_rsa_and_ed25519_keys() {
    for algo in [Algo::Rsa, Algo::Ed25519] {
        let dir = TempDir::new("chain-valid");
        let out = dir.path().join("archive");
        let key = key_file(&dir, algo);
        let digests = build(&out, &key, &inputs(&dir));
        let r = check(&out);
        assert!(invalid(&r).is_empty(), "{:#?}", invalid(&r));
        assert!(r.is_clean());
        assert_eq!(r.digests.valid, 3);
        let objects: usize = digests.iter().map(|d| listed(&out, d).len()).sum();
        assert!(objects >= 3, "each run wrote objects: {objects}");
        assert_eq!(r.objects.unwrap().valid, objects);
        assert!(listed(&out, &digests[2]).iter().any(|k| k.starts_with("_dead_letter/")), "dead letters are covered");
        // Each digest names the one before it.
        for w in digests.windows(2) {
            let d = Digest::from_gzip(&std::fs::read(out.join(&w[1])).unwrap()).unwrap();
            assert_eq!(d.doc.previous_digest_s3_object.as_deref(), Some(w[0].as_str()));
        }
    }
}

#[test]
fn changed_removed_and_added_objects_are_named() {
    let dir = TempDir::new("chain-objects");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Ed25519);
    let digests = build(&out, &key, &inputs(&dir));
    let first = listed(&out, &digests[0]);
    let second = listed(&out, &digests[1]);

    // Changed: one byte of a Parquet object.
    let changed = out.join(&first[0]);
    let mut bytes = std::fs::read(&changed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&changed, bytes).unwrap();
    // Removed.
    std::fs::remove_file(out.join(&second[0])).unwrap();
    // Added: a copy of a real object under a new name.
    let added = Path::new(&first[0]).with_file_name("part-planted.zstd.parquet");
    std::fs::copy(out.join(&first[0]), out.join(&added)).unwrap();

    let r = check(&out);
    assert_eq!(verdict_of(&r, Kind::Object, &first[0]), Verdict::HashMismatch);
    assert_eq!(verdict_of(&r, Kind::Object, &second[0]), Verdict::NotFound);
    assert_eq!(verdict_of(&r, Kind::Object, added.to_str().unwrap()), Verdict::Unreferenced);
    assert_eq!(invalid(&r).len(), 3, "{:#?}", invalid(&r));
    assert!(!r.is_clean());
    assert_eq!(r.digests.valid, 3, "the digests themselves are intact");

    // Right after it was written, the planted object is pending, not yet invalid.
    let fresh = check_at(&out, &published(&out), now());
    assert!(matches!(verdict_of(&fresh, Kind::Object, added.to_str().unwrap()), Verdict::Pending { .. }));
}

#[test]
fn removed_and_edited_digests_and_broken_links_are_named() {
    // Removed in the middle: its successor's link names it; its objects are unreferenced.
    let dir = TempDir::new("chain-digests");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Rsa);
    let digests = build(&out, &key, &inputs(&dir));
    let middle = listed(&out, &digests[1]);
    std::fs::remove_file(out.join(&digests[1])).unwrap();
    let r = check(&out);
    assert_eq!(verdict_of(&r, Kind::Digest, &digests[1]), Verdict::NotFound);
    for o in &middle {
        assert_eq!(verdict_of(&r, Kind::Object, o), Verdict::Unreferenced);
    }
    assert_eq!(r.digests.valid, 2);
    assert_eq!(invalid(&r).len(), 1 + middle.len(), "{:#?}", invalid(&r));

    // Removed at the newest end: nothing links to it, but its objects are left unlisted.
    let dir = TempDir::new("chain-tail");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Ed25519);
    let digests = build(&out, &key, &inputs(&dir));
    let newest = listed(&out, &digests[2]);
    std::fs::remove_file(out.join(&digests[2])).unwrap();
    let r = check(&out);
    for o in &newest {
        assert_eq!(verdict_of(&r, Kind::Object, o), Verdict::Unreferenced);
    }
    assert_eq!(invalid(&r).len(), newest.len());

    // Edited after signing (an object's hash swapped to hide a change):
    // its signature fails and its objects are unproven.
    let dir = TempDir::new("chain-edit");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Rsa);
    let digests = build(&out, &key, &inputs(&dir));
    edit_digest(&out, &digests[0], None, |d| d["logFiles"][0]["hashValue"] = "00".repeat(32).into());
    let r = check(&out);
    assert_eq!(verdict_of(&r, Kind::Digest, &digests[0]), Verdict::SignatureMismatch { content_authentic: false });
    assert_eq!(verdict_of(&r, Kind::Digest, &digests[1]), Verdict::Valid);
    for o in listed(&out, &digests[0]) {
        assert_eq!(verdict_of(&r, Kind::Object, &o), Verdict::Unverified);
    }

    // A broken link, signed by the writer's own key: the link fields are
    // checked against the digest they name, not only signed.
    let dir = TempDir::new("chain-link");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Ed25519);
    let digests = build(&out, &key, &inputs(&dir));
    edit_digest(&out, &digests[2], Some(&key), |d| d["previousDigestHashValue"] = "ab".repeat(32).into());
    let r = check(&out);
    assert_eq!(
        verdict_of(&r, Kind::Digest, &digests[2]),
        Verdict::LinkMismatch { field: "previousDigestHashValue".into() }
    );
    assert_eq!(invalid(&r).len(), 1, "{:#?}", invalid(&r));
}

#[test]
fn unpublished_keys_and_empty_archives_fail() {
    let dir = TempDir::new("chain-keys");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Ed25519);
    let digests = build(&out, &key, &inputs(&dir)[..1]);
    // The auditor's pinned key is another one: nothing verifies.
    let other = KeySet::from_list_public_keys_json(&common::digests::public_keys_json(&[1])).unwrap();
    let r = check_at(&out, &other, now() + 3 * HOUR);
    assert!(matches!(verdict_of(&r, Kind::Digest, &digests[0]), Verdict::KeyNotFound { .. }));
    assert!(!r.is_clean());

    let empty = TempDir::new("chain-empty");
    let r = check_at(empty.path(), &published(&out), now());
    assert_eq!(r.digests.valid + r.digests.invalid, 0);
    assert!(!r.is_clean(), "no digests is not a clean bill");
}

#[test]
fn objects_committed_before_a_seal_or_without_a_key_are_covered_once() {
    let dir = TempDir::new("chain-crash");
    let out = dir.path().join("archive");
    let key = key_file(&dir, Algo::Ed25519);
    let ins = inputs(&dir);
    // Run 1 without a key: committed, not signed.
    let s = pipeline::run(&Options { out: out.clone(), ..Options::default() }, &[Input::File(ins[0].clone())]).unwrap();
    assert!(s.digests.is_empty());
    let unsigned: Vec<String> = s.objects.iter().map(|o| o.key.clone()).collect();
    // Run 2 signs: its digest lists run 1's objects too.
    let d2 = build(&out, &key, &ins[1..2]);
    let l2 = listed(&out, &d2[0]);
    assert!(unsigned.iter().all(|k| l2.contains(k)), "{unsigned:?} in {l2:?}");
    // A crash after a seal but before the pending list was emptied: the
    // next digest does not list those objects a second time.
    let pending = out.join("_trailship/undigested.ndjson");
    let again: String =
        l2.iter().map(|k| serde_json::json!({ "key": k, "sha256": "00", "bytes": 0 }).to_string() + "\n").collect();
    std::fs::write(&pending, again).unwrap();
    let d3 = build(&out, &key, &ins[2..3]);
    let l3 = listed(&out, &d3[0]);
    assert!(l3.iter().all(|k| !l2.contains(k)), "{l3:?} repeats {l2:?}");
    let r = check(&out);
    assert!(r.is_clean(), "{:#?}", invalid(&r));
    assert_eq!(r.digests.valid, 2);
}

#[test]
fn the_cli_validates_an_archive_and_exits_by_verdict() {
    let dir = TempDir::new("chain-cli");
    let out = dir.path().join("archive");
    let bin = env!("CARGO_BIN_EXE_trailship");
    let key = dir.path().join("k.pem");
    let st = std::process::Command::new(bin).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let again = std::process::Command::new(bin).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(!again.status.success(), "keygen never overwrites a key");
    let st = std::process::Command::new(bin)
        .args(["normalize", "--out"])
        .arg(&out)
        .arg("--signing-key")
        .arg(&key)
        .arg(common::fixture("cloudtrail/awsdocs"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let validate = |extra: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(["validate-digests", "--archive"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, text) = validate(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1/1 digest files valid"), "{text}");
    let (code, json) = validate(&["--format", "json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["digests"]["valid"], 1);
    let n = v["objects"]["valid"].as_u64().unwrap();
    assert!(n > 0);

    // One object removed: exit 1 and the object named.
    let store = LocalStore::new(&out);
    let victim = store.list("", "api_activity/").unwrap().into_iter().next().unwrap();
    std::fs::remove_file(out.join(&victim)).unwrap();
    let (code, text) = validate(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("{victim}\tINVALID: not found")), "{text}");
}
