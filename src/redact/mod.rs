//! Redaction: no secret reaches the archive in clear.
//!
//! Two mechanisms, both applied where strings are written into column
//! buffers (`batch::columns`), so no stage after normalisation ever holds a
//! secret:
//! - structure, while JSON is serialised: values under secret-looking keys
//!   (`password`, `*Token`, `client_secret`, SSE-C headers, ...), the `value`
//!   of `{name, value}` pairs whose name looks secret (environment
//!   variables), everything under `data`/`stringData` of a Kubernetes Secret;
//! - token detectors over every string value: one literal-led pass, verified
//!   in code (`detectors.rs`).
//!
//! A secret becomes `[REDACTED:<type>:<fingerprint>]`, the fingerprint being
//! the first 64 bits of HMAC-SHA256 under a deployment key, over the secret
//! alone: the same leaked secret correlates across events and detectors
//! without being revealed. Identifiers (access key IDs, ARNs, SHAs) and
//! CloudTrail's own `HIDDEN_DUE_TO_SECURITY_REASONS` stay as they are.

mod detectors;
mod prefilter;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use regex_automata::meta;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use simd_json::{Node, StaticNode};

use crate::decode::json::{Source, Val, write_str};
pub use detectors::Finding;

/// `[redaction]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub enabled: bool,
    /// The fingerprint key itself (prefer `key_env`). At least 32 bytes.
    pub key: Option<String>,
    /// Environment variable holding the key.
    pub key_env: String,
    /// Detector groups to turn off: vcs, chat, payments, cloud, packages,
    /// saas, ai, crypto, jwt, url, http_auth, fields.
    pub disabled_groups: Vec<String>,
    /// Individual detector types to turn off (e.g. `mailgun_key`).
    pub disabled_types: Vec<String>,
    /// Extra field names whose values are always redacted (compared
    /// case-insensitively, ignoring `-`, `_` and `.`).
    pub field_names: Vec<String>,
    /// Values never redacted (exact match), e.g. documented example keys.
    pub allow_values: Vec<String>,
    /// Extra token patterns.
    pub patterns: Vec<CustomPattern>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    /// The type named in the marker.
    pub name: String,
    /// A regular expression (bytes, ASCII); the whole match is the secret.
    pub regex: String,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            enabled: true,
            key: None,
            key_env: "TRAILSHIP_REDACTION_KEY".into(),
            disabled_groups: vec![],
            disabled_types: vec![],
            field_names: vec![],
            allow_values: vec![],
            patterns: vec![],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("redaction key from {source_name} is {len} bytes; use at least 32 random bytes")]
    KeyTooShort { source_name: String, len: usize },
    #[error("unknown redaction group {0:?}")]
    UnknownGroup(String),
    #[error("unknown redaction type {0:?}")]
    UnknownType(String),
    #[error("redaction pattern {name:?} does not compile: {detail}")]
    BadPattern { name: String, detail: String },
    #[error("no randomness for an ephemeral redaction key: {0}")]
    Random(String),
}

const GROUPS: &[&str] =
    &["vcs", "chat", "payments", "cloud", "packages", "saas", "ai", "crypto", "jwt", "url", "http_auth", "fields"];

/// What was redacted in one row.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub count: u32,
    /// Distinct types, in order of first occurrence.
    pub types: Vec<&'static str>,
    /// Values redacted per type (parallel to `types`).
    per_type: Vec<u32>,
}

impl Stats {
    fn add(&mut self, ty: &'static str) {
        self.add_n(ty, 1);
    }
    fn add_n(&mut self, ty: &'static str, n: u32) {
        self.count += n;
        match self.types.iter().position(|t| *t == ty) {
            Some(i) => self.per_type[i] += n,
            None => {
                self.types.push(ty);
                self.per_type.push(n);
            }
        }
    }
    /// Adds `other`'s counts to these.
    pub fn absorb(&mut self, other: &Stats) {
        for (ty, n) in other.types.iter().zip(&other.per_type) {
            self.add_n(ty, *n);
        }
    }
    pub fn clear(&mut self) {
        self.count = 0;
        self.types.clear();
        self.per_type.clear();
    }
}

pub struct Redactor {
    /// Tells this redactor's entries in a thread's [`NameMemo`] from another's.
    id: u64,
    /// HMAC-SHA256 keyed with the fingerprint key: each marker clones it
    /// rather than hashing the key's pads again.
    mac: Hmac<Sha256>,
    key_id: String,
    ephemeral_key: bool,
    re: meta::Regex,
    dets: Vec<(&'static str, detectors::Verify)>,
    field_rules: bool,
    extra_fields: HashSet<String>,
    allow: HashSet<Vec<u8>>,
    totals: Mutex<BTreeMap<&'static str, u64>>,
    /// How a text's anchors are looked for ([`Redactor::candidate`]).
    check: Check,
    /// [`SECRET_WORDS`], for whole documents folded to lower case.
    words: aho_corasick::packed::Searcher,
}

/// How the anchors are split among Teddy (packed) searchers, one pass each.
/// Teddy matches on a literal's first bytes, so a 2-3 byte anchor (`SK`,
/// `eyJ`) makes every literal beside it verify often: short anchors get a
/// searcher of their own, and the long ones share few, larger searchers.
/// Measured on CloudTrail records (`benches/README.md`): 2.0 GB/s in all,
/// against 1.5 GB/s for 16 literals a searcher in pattern order and 0.6-0.9
/// GB/s for larger mixed sets.
const SHORT_ANCHOR: usize = 4;
const SHORT_PER_SEARCHER: usize = 16;
const LONG_PER_SEARCHER: usize = 48;

/// `scheme://user:password@`: the `://` anchor is in every URL, so it is
/// checked by hand rather than by the anchor searchers.
fn has_url_credentials(raw: &[u8]) -> bool {
    static SCHEME: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"://"));
    SCHEME.find_iter(raw).any(|at| url_credentials_at(raw, at))
}

/// Whether the `://` at `at` starts `user:password@`.
fn url_credentials_at(raw: &[u8], at: usize) -> bool {
    let rest = &raw[at + 3..raw.len().min(at + 3 + 512)];
    let stop = |b: &u8| matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'\\' | b' ' | b'\t' | b'\n');
    let auth = &rest[..rest.iter().position(stop).unwrap_or(rest.len())];
    match (auth.iter().position(|b| *b == b':'), auth.iter().rposition(|b| *b == b'@')) {
        (Some(c), Some(a)) => c > 0 && a > c + 1,
        _ => false,
    }
}

/// The literal anchors of every token pattern, looked for in a text before
/// its strings are scanned.
enum Check {
    /// Some pattern has no literal prefix: every text is scanned.
    None,
    /// The anchors, the escapes and `://` in one pass, where the CPU has
    /// AVX-512 VBMI (`prefilter.rs`), with what each literal is.
    OnePass(prefilter::Prefilter, Vec<Literal>),
    /// The anchors in Teddy searchers; the escapes and `://` by hand.
    Teddy(Vec<aho_corasick::packed::Searcher>),
}

/// The anchors in Teddy searchers (`://` is checked by hand).
fn teddy(lits: Vec<Vec<u8>>) -> Check {
    let (short, long): (Vec<_>, Vec<_>) =
        lits.into_iter().filter(|l| l.as_slice() != b"://").partition(|l| l.len() < SHORT_ANCHOR);
    short
        .chunks(SHORT_PER_SEARCHER)
        .chain(long.chunks(LONG_PER_SEARCHER))
        .map(|c| {
            let mut b = aho_corasick::packed::Config::new().builder();
            b.extend(c);
            b.build()
        })
        .collect::<Option<Vec<_>>>()
        .map_or(Check::None, Check::Teddy)
}

/// What a literal of the one-pass prefilter stands for.
#[derive(Clone, Copy)]
enum Literal {
    /// A detector's anchor: the detectors confirm it.
    Anchor,
    /// `\/` or `\u`, which could hide a token from the raw text.
    Escape,
    /// `://`: [`url_credentials_at`] confirms it.
    Url,
}

/// `"key": "value"` and `key=value` in text that could not be parsed (dead
/// letters only). Compiled on first use: its three `{0,4096}` repetitions
/// make it the largest automaton the redactor holds (~6 ms to build, two
/// thirds of a redactor's start-up), and a run without a dead letter never
/// needs it.
static TEXT_FIELDS: std::sync::LazyLock<meta::Regex> = std::sync::LazyLock::new(|| {
    meta::Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
        .build(r#"["']?([A-Za-z0-9_.-]{1,64})["']?\s{0,3}[:=]\s{0,3}(?:"((?:[^"\\]|\\.){0,4096})"|'([^']{0,4096})'|([^\s,;&"'}{]{1,4096}))"#)
        .expect("a constant pattern compiles")
});

/// The leading literals of `patterns` (up to 12 bytes: shorter cuts lose
/// what makes them rare, `Acco` of `AccountKey=` is in every
/// `recipientAccountId`), deduplicated, or `None` when some pattern can
/// start with anything.
fn anchors(patterns: &[String]) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut out: Vec<Vec<u8>> = Vec::new();
    for p in patterns {
        let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(p).ok()?;
        let mut ex = Extractor::new();
        ex.kind(ExtractKind::Prefix).limit_class(4).limit_repeat(4).limit_literal_len(16).limit_total(64);
        let seq = ex.extract(&hir);
        for lit in seq.literals()? {
            let b = lit.as_bytes();
            if b.is_empty() {
                return None;
            }
            let cut = b[..b.len().min(12)].to_vec();
            if !out.contains(&cut) {
                out.push(cut);
            }
        }
    }
    // A shorter anchor covers every longer one that starts with it, but
    // `://`, which only `url_credentials_at` confirms, covers none: a custom
    // pattern starting `://x` keeps an anchor of its own.
    let all = out.clone();
    out.retain(|a| !all.iter().any(|b| b.len() < a.len() && a.starts_with(b) && b.as_slice() != b"://"));
    Some(out)
}

/// A thread's verdicts on short member names ([`Redactor::secret_name`]),
/// direct-mapped by a hash of the name. Judging a name scans it for secret
/// words, then normalises and matches it against the field rules: 250 to 750
/// instructions a name, eight names a CloudTrail record (callgrind, session
/// 23). A hit compares the whole name and the redactor, so a verdict is only
/// ever reused for the same name under the same rules.
struct NameMemo;

/// Names longer than this are judged every time.
const MEMO_NAME: usize = 32;
const MEMO_SLOTS: usize = 512;

#[derive(Clone, Copy)]
struct MemoSlot {
    redactor: u64,
    len: u8,
    name: [u8; MEMO_NAME],
    verdict: Option<&'static str>,
}

thread_local! {
    static NAMES: std::cell::RefCell<Vec<MemoSlot>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl NameMemo {
    /// A name's first and last eight bytes (overlapping when shorter than
    /// sixteen), read as words: loads, not a copy a byte at a time.
    fn ends(name: &[u8]) -> (u64, u64) {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("eight bytes"));
        if name.len() >= 8 {
            (word(&name[..8]), word(&name[name.len() - 8..]))
        } else {
            let w = name.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
            (w, w)
        }
    }

    fn slot(name: &[u8]) -> usize {
        let (head, tail) = Self::ends(name);
        let h = (head ^ tail.rotate_left(29) ^ name.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize % MEMO_SLOTS
    }

    /// Whether `name` (at most [`MEMO_NAME`] bytes) is `s`'s: compared as
    /// words from both ends, which hold every byte of a name up to sixteen
    /// long, not by a `memcmp` call.
    fn holds(s: &MemoSlot, name: &[u8]) -> bool {
        let n = name.len();
        usize::from(s.len) == n
            && Self::ends(&s.name[..n]) == Self::ends(name)
            && (n <= 16 || s.name[8..n - 8] == name[8..n - 8])
    }

    /// The verdict on `name` under `redactor`, if this thread has it.
    fn get(redactor: u64, name: &[u8]) -> Option<Option<&'static str>> {
        if name.len() > MEMO_NAME {
            return None;
        }
        NAMES.with(|m| {
            let m = m.borrow();
            let s = m.get(Self::slot(name))?;
            (s.redactor == redactor && Self::holds(s, name)).then_some(s.verdict)
        })
    }

    fn put(redactor: u64, name: &[u8], verdict: Option<&'static str>) {
        if name.len() > MEMO_NAME {
            return;
        }
        NAMES.with(|m| {
            let mut m = m.borrow_mut();
            if m.is_empty() {
                m.resize(MEMO_SLOTS, MemoSlot { redactor: 0, len: 0, name: [0; MEMO_NAME], verdict: None });
            }
            let mut slot = MemoSlot { redactor, len: name.len() as u8, name: [0; MEMO_NAME], verdict };
            slot.name[..name.len()].copy_from_slice(name);
            m[Self::slot(name)] = slot;
        });
    }
}

fn custom_whole(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    Some((0, m.len(), ty))
}

fn normalise_name(k: &str) -> String {
    String::from_utf8(normalise_bytes(k.as_bytes())).expect("ASCII folding keeps UTF-8")
}

/// A name lower-cased (ASCII) with `-`, `_`, `.` and spaces removed: what
/// field rules judge. Removing and folding ASCII bytes keeps UTF-8 valid.
fn normalise_bytes(k: &[u8]) -> Vec<u8> {
    k.iter().filter(|b| !matches!(b, b'-' | b'_' | b'.' | b' ')).map(|b| b.to_ascii_lowercase()).collect()
}

/// `normalise_bytes` without allocating, for keys that fit.
fn normalise_on_stack<'b>(k: &[u8], buf: &'b mut [u8; 96]) -> Option<&'b [u8]> {
    let mut n = 0;
    for &b in k {
        if matches!(b, b'-' | b'_' | b'.' | b' ') {
            continue;
        }
        *buf.get_mut(n)? = b.to_ascii_lowercase();
        n += 1;
    }
    Some(&buf[..n])
}

/// Every field rule needs one of these words (in any case); most keys have
/// none, and are rejected here without being normalised. `word` catches
/// `pass_word`, whose separator hides `pass` + `word` from `password`.
const SECRET_WORDS: [&[u8]; 8] = [b"pass", b"pwd", b"word", b"secret", b"token", b"key", b"auth", b"cookie"];

/// Whether `k` holds one of [`SECRET_WORDS`], in any case.
fn may_name_a_secret(k: &[u8]) -> bool {
    secret_words(k) != 0
}

/// Which of [`SECRET_WORDS`] `k` holds, in any case: bit `i` for word `i`.
fn secret_words(k: &[u8]) -> u8 {
    // One list serves this check and the folded search over copied
    // documents (`names_a_secret`), which must find every name this accepts.
    // Per byte (either case), the words with it first (`AT[0]`) or second
    // (`AT[1]`): a position is compared only where both of its first two
    // bytes fit a word, which few do.
    const AT: [[u8; 256]; 2] = {
        let mut t = [[0u8; 256]; 2];
        let mut i = 0;
        while i < SECRET_WORDS.len() {
            let mut j = 0;
            while j < 2 {
                let c = SECRET_WORDS[i][j];
                t[j][c as usize] |= 1 << i;
                t[j][c.to_ascii_uppercase() as usize] |= 1 << i;
                j += 1;
            }
            i += 1;
        }
        t
    };
    let mut found = 0;
    for i in 0..k.len().saturating_sub(1) {
        let mut words = AT[0][k[i] as usize] & AT[1][k[i + 1] as usize] & !found;
        while words != 0 {
            let bit = words.trailing_zeros() as usize;
            let w = SECRET_WORDS[bit];
            if k[i..].len() >= w.len() && k[i..i + w.len()].eq_ignore_ascii_case(w) {
                found |= 1 << bit;
            }
            words &= words - 1;
        }
    }
    found
}

/// The bit [`secret_words`] sets for `w`, which must be one of [`SECRET_WORDS`].
const fn word_bit(w: &[u8]) -> u8 {
    let mut i = 0;
    while i < SECRET_WORDS.len() {
        let s = SECRET_WORDS[i];
        let mut j = 0;
        while s.len() == w.len() && j < w.len() && s[j] == w[j] {
            j += 1;
        }
        if s.len() == w.len() && j == w.len() {
            return 1 << i;
        }
        i += 1;
    }
    panic!("not one of SECRET_WORDS")
}

const PASS: u8 = word_bit(b"pass");
const SECRET: u8 = word_bit(b"secret");
const TOKEN: u8 = word_bit(b"token");
const KEY: u8 = word_bit(b"key");

/// `n.contains(w)` for the short names judged here, where setting up
/// a searcher costs more than comparing every window.
fn holds(n: &[u8], w: &[u8]) -> bool {
    n.windows(w.len()).any(|x| x == w)
}

/// The secret type a field name implies, if any. `n` is lower-case with
/// `-`, `_`, `.` and spaces removed.
fn field_rule(n: &[u8]) -> Option<&'static str> {
    let exact = match n {
        b"authorization" | b"proxyauthorization" => Some("authorization"),
        b"xamzsecuritytoken" | b"sessiontoken" => Some("aws_session_token"),
        b"secretaccesskey" | b"awssecretaccesskey" => Some("aws_secret_access_key"),
        b"xamzserversideencryptioncustomerkey"
        | b"xamzcopysourceserversideencryptioncustomerkey"
        | b"ssecustomerkey"
        | b"copysourcessecustomerkey" => Some("sse_customer_key"),
        b"apikey" | b"xapikey" => Some("api_key"),
        b"apisecret" => Some("secret"),
        b"accesskey" => Some("access_key"),
        b"cookie" | b"setcookie" => Some("cookie"),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    // Each rule below needs one of these words in `n`; most names that get
    // here hold only `key` (`kmsKeyId`, `accessKeyId`), so the rules whose
    // words are absent are skipped rather than searched for.
    let words = secret_words(n);
    let has = |w: u8| words & w != 0;
    let (key, pass, secret, token) = (has(KEY), has(PASS), has(SECRET), has(TOKEN));
    let ends = |xs: &[&[u8]]| xs.iter().any(|x| n.ends_with(x));
    if key && holds(n, b"privatekey") && !ends(&[b"id", b"arn", b"name", b"path", b"file", b"type"]) {
        return Some("private_key");
    }
    if pass
        && (holds(n, b"password") || holds(n, b"passwd") || holds(n, b"passphrase"))
        && !ends(&[
            b"policy",
            b"length",
            b"lastused",
            b"resetrequired",
            b"enabled",
            b"age",
            b"reuseprevention",
            b"required",
            b"changed",
            b"updated",
            b"used",
            b"reset",
            b"status",
            b"date",
            b"time",
            b"expiration",
            b"expires",
            b"set",
            b"type",
            b"arn",
            b"id",
        ])
    {
        return Some("password");
    }
    if secret
        && !ends(&[
            b"arn",
            b"arns",
            b"id",
            b"ids",
            b"name",
            b"names",
            b"type",
            b"versionid",
            b"versionstage",
            b"versionstages",
            b"region",
            b"count",
            b"enabled",
            b"list",
            b"kmskeyid",
            b"filter",
            b"filters",
            b"source",
            b"sources",
            b"ref",
        ])
    {
        return Some("secret");
    }
    if !token && !key {
        return if n == b"pwd" || n.ends_with(b"dbpwd") { Some("password") } else { None };
    }
    // Names that describe a token rather than hold one (`subjectFromWebIdentityToken`).
    let describes_token = || {
        [&b"subject"[..], b"audience", b"issuer", b"provider", b"expir", b"type", b"count", b"length", b"hash"]
            .iter()
            .any(|w| holds(n, w))
    };
    if token
        && (n.ends_with(b"token") || n.ends_with(b"tokens"))
        && !describes_token()
        && !matches!(
            n,
            b"nexttoken"
                | b"clienttoken"
                | b"paginationtoken"
                | b"continuationtoken"
                | b"idempotencytoken"
                | b"starttoken"
                | b"tokentype"
                | b"csrftoken"
                | b"pagetoken"
                | b"nextpagetoken"
                | b"continuetoken"
                | b"requesttoken"
                | b"tasktoken"
        )
    {
        return Some("token");
    }
    if (n.ends_with(b"apikey") || n.ends_with(b"apitoken") || n.ends_with(b"accesstoken")) && !n.ends_with(b"id") {
        return Some("api_key");
    }
    if n == b"pwd" || n.ends_with(b"dbpwd") {
        return Some("password");
    }
    None
}

/// CloudTrail writes this where an API model marks a member sensitive.
const AWS_MASK: &[u8] = b"HIDDEN_DUE_TO_SECURITY_REASONS";

fn is_kept_verbatim(v: &[u8]) -> bool {
    v.is_empty() || v == AWS_MASK || v.starts_with(b"[REDACTED:")
}

/// The anchors of the built-in patterns (for experiments).
pub fn builtin_anchors() -> Option<Vec<Vec<u8>>> {
    anchors(&builtin_patterns())
}

/// The built-in token patterns (for benchmarks and experiments).
pub fn builtin_patterns() -> Vec<String> {
    detectors::builtin().into_iter().map(|d| d.pattern.to_string()).collect()
}

impl Redactor {
    pub fn new(cfg: &RedactionConfig) -> Result<Self, RedactError> {
        for g in &cfg.disabled_groups {
            if !GROUPS.contains(&g.as_str()) {
                return Err(RedactError::UnknownGroup(g.clone()));
            }
        }
        let builtin = detectors::builtin();
        for t in &cfg.disabled_types {
            if !builtin.iter().any(|d| d.ty == t) {
                return Err(RedactError::UnknownType(t.clone()));
            }
        }
        let (key, ephemeral_key) = match cfg.key.clone().map(|k| ("config key".to_string(), k)).or_else(|| {
            std::env::var(&cfg.key_env).ok().filter(|k| !k.is_empty()).map(|k| (format!("${}", cfg.key_env), k))
        }) {
            Some((source_name, k)) => {
                if k.len() < 32 {
                    return Err(RedactError::KeyTooShort { source_name, len: k.len() });
                }
                (k.into_bytes(), false)
            }
            None => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| RedactError::Random(e.to_string()))?;
                (k, true)
            }
        };
        let key_id = Sha256::digest(&key)[..4].iter().map(|b| format!("{b:02x}")).collect();

        let mut patterns: Vec<String> = Vec::new();
        let mut dets = Vec::new();
        for d in builtin {
            if cfg.disabled_groups.iter().any(|g| g == d.group) || cfg.disabled_types.iter().any(|t| t == d.ty) {
                continue;
            }
            patterns.push(d.pattern.to_string());
            dets.push((d.ty, d.verify));
        }
        for p in &cfg.patterns {
            // Validate each on its own so the error names the culprit.
            meta::Regex::builder()
                .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
                .build(&p.regex)
                .map_err(|e| RedactError::BadPattern { name: p.name.clone(), detail: e.to_string() })?;
            patterns.push(p.regex.clone());
            let name: &'static str = Box::leak(p.name.clone().into_boxed_str());
            dets.push((name, detectors::Verify::Match(custom_whole)));
        }
        let check = anchors(&patterns).map_or(Check::None, |lits| {
            let kinds: Vec<Literal> = lits
                .iter()
                .map(|l| if l.as_slice() == b"://" { Literal::Url } else { Literal::Anchor })
                .chain([Literal::Escape; 2])
                .collect();
            let all: Vec<Vec<u8>> = lits.iter().cloned().chain([b"\\/".to_vec(), b"\\u".to_vec()]).collect();
            match prefilter::Prefilter::new(&all) {
                Some(p) => Check::OnePass(p, kinds),
                None => teddy(lits),
            }
        });
        let re = meta::Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
            .configure(meta::Config::new().match_kind(regex_automata::MatchKind::LeftmostFirst))
            .build_many(&patterns)
            .map_err(|e| RedactError::BadPattern { name: "built-in".into(), detail: e.to_string() })?;
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Redactor {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length"),
            key_id,
            ephemeral_key,
            re,
            dets,
            field_rules: !cfg.disabled_groups.iter().any(|g| g == "fields"),
            extra_fields: cfg.field_names.iter().map(|f| normalise_name(f)).collect(),
            allow: cfg.allow_values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            totals: Mutex::new(BTreeMap::new()),
            check,
            words: {
                let mut b = aho_corasick::packed::Config::new().builder();
                b.extend(SECRET_WORDS);
                b.build().expect("eight short literals make a packed searcher")
            },
        })
    }

    /// Short id of the key (first 32 bits of its SHA-256), recorded per row
    /// so that fingerprints from different keys are never compared.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// True when no key was configured and a random one is used for this run.
    pub fn ephemeral_key(&self) -> bool {
        self.ephemeral_key
    }

    /// Values redacted per type since start.
    pub fn totals(&self) -> BTreeMap<&'static str, u64> {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Adds stats to the totals (a lock: callers gather a batch's first).
    pub fn record(&self, stats: &Stats) {
        if stats.count == 0 {
            return;
        }
        if let Ok(mut t) = self.totals.lock() {
            for (ty, n) in stats.types.iter().zip(&stats.per_type) {
                *t.entry(ty).or_default() += *n as u64;
            }
        }
    }

    fn marker(&self, ty: &str, secret: &[u8], out: &mut Vec<u8>) {
        let mut mac = self.mac.clone();
        mac.update(secret);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(b"[REDACTED:");
        out.extend_from_slice(ty.as_bytes());
        out.push(b':');
        for b in &tag[..8] {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        out.push(b']');
    }

    /// Whether a record's raw text may hold a token: one fast pass over the
    /// anchors of every detector. Escapes that could hide a token from the
    /// raw text (`\/`, `\u`) make every record a candidate.
    pub fn candidate(&self, raw: &[u8]) -> bool {
        let searchers = match &self.check {
            Check::None => return true,
            Check::OnePass(pf, kinds) => {
                let mut anchor = false;
                let sure = pf.find(raw, |at, id| match kinds[id] {
                    Literal::Escape => true,
                    Literal::Url => url_credentials_at(raw, at),
                    Literal::Anchor => {
                        anchor = true;
                        false
                    }
                });
                return sure || anchor && self.re.is_match(regex_automata::Input::new(raw));
            }
            Check::Teddy(searchers) => searchers,
        };
        // One pass for both escapes: backslashes are rare in audit records.
        if memchr::memchr_iter(b'\\', raw).any(|i| matches!(raw.get(i + 1), Some(b'/' | b'u'))) {
            return true;
        }
        // Anchors are cheap but loose: confirm with the detectors themselves
        // before paying the per-value scan.
        has_url_credentials(raw)
            || searchers.iter().any(|s| s.find(raw).is_some()) && self.re.is_match(regex_automata::Input::new(raw))
    }

    /// Token findings in `text`, in order, non-overlapping.
    pub fn find(&self, text: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let Some(m) = self.re.search(&regex_automata::Input::new(text).range(at..)) else { break };
            let (ty, verify) = self.dets[m.pattern().as_usize()];
            let found = match verify {
                detectors::Verify::Match(check) => {
                    check(&text[m.start()..m.end()], ty).map(|(s, e, ty)| (m.start() + s, m.start() + e, ty))
                }
                detectors::Verify::Text(check) => check(text, m.start(), m.end(), ty),
            };
            // Bounded repetitions can stop inside a multi-byte character:
            // widen to character boundaries so the output stays UTF-8.
            let found = found.map(|(mut s, mut e, ty)| {
                while s > 0 && (text[s] & 0xC0) == 0x80 {
                    s -= 1;
                }
                while e < text.len() && (text[e] & 0xC0) == 0x80 {
                    e += 1;
                }
                (s, e, ty)
            });
            match found {
                Some((s, e, ty)) if !self.allow.contains(&text[s..e]) && !is_kept_verbatim(&text[s..e]) => {
                    out.push(Finding { start: s, end: e, ty });
                    at = e.max(m.end()).max(at + 1);
                }
                // A rejected candidate: look again just after its start.
                _ => at = m.start() + 1,
            }
        }
        out
    }

    /// Appends `text` to `out` with every detected token replaced.
    pub fn scan_into(&self, text: &[u8], out: &mut Vec<u8>, stats: &mut Stats) {
        // Most text holds no candidate: `find` is then one search, no allocation.
        let found = self.find(text);
        self.replace(text, &found, out, stats);
    }

    fn replace(&self, text: &[u8], found: &[Finding], out: &mut Vec<u8>, stats: &mut Stats) {
        let mut last = 0;
        for f in found {
            out.extend_from_slice(&text[last..f.start]);
            self.marker(f.ty, &text[f.start..f.end], out);
            stats.add(f.ty);
            last = f.end;
        }
        out.extend_from_slice(&text[last..]);
    }

    /// For text that is not parsed JSON (dead letters): tokens, and the values
    /// of secret-looking `"key": "value"` / `key=value` pairs, by the same
    /// field rules as structured data.
    pub fn scan_unparsed(&self, text: &[u8], out: &mut Vec<u8>, stats: &mut Stats) {
        let mut tokens = Vec::with_capacity(text.len());
        self.scan_into(text, &mut tokens, stats);
        let mut last = 0;
        let text_fields = &*TEXT_FIELDS;
        let mut caps = text_fields.create_captures();
        let mut at = 0;
        while at < tokens.len() {
            text_fields.search_captures(&regex_automata::Input::new(&tokens[..]).range(at..), &mut caps);
            let Some(m) = caps.get_match() else { break };
            at = m.end().max(at + 1);
            let Some(k) = caps.get_group(1) else { continue };
            let key = String::from_utf8_lossy(&tokens[k.start..k.end]);
            let Some(ty) = self.secret_field(&key) else { continue };
            let Some(v) = (2..=4).find_map(|g| caps.get_group(g)) else { continue };
            let value = &tokens[v.start..v.end];
            if is_kept_verbatim(value) || self.allow.contains(value) {
                continue;
            }
            out.extend_from_slice(&tokens[last..v.start]);
            self.marker(ty, value, out);
            stats.add(ty);
            last = v.end;
        }
        out.extend_from_slice(&tokens[last..]);
    }

    /// Redacts a whole value found under a secret field.
    fn write_secret_str(&self, ty: &'static str, s: &str, out: &mut Vec<u8>, stats: &mut Stats) {
        if is_kept_verbatim(s.as_bytes()) || self.allow.contains(s.as_bytes()) {
            write_str(s, out);
            return;
        }
        out.push(b'"');
        self.marker(ty, s.as_bytes(), out);
        out.push(b'"');
        stats.add(ty);
    }

    fn write_string(&self, s: &str, out: &mut Vec<u8>, stats: &mut Stats, scratch: &mut Vec<u8>) {
        let found = self.find(s.as_bytes());
        if found.is_empty() {
            write_str(s, out);
            return;
        }
        scratch.clear();
        self.replace(s.as_bytes(), &found, scratch, stats);
        write_str(&String::from_utf8_lossy(scratch), out);
    }

    /// The secret type implied by a member key. Runs for every key of every
    /// JSON value, so it normalises on the stack and rejects most keys after
    /// one pass over their bytes.
    pub fn secret_field(&self, key: &str) -> Option<&'static str> {
        self.secret_name(key.as_bytes())
    }

    fn secret_name(&self, key: &[u8]) -> Option<&'static str> {
        if !self.field_rules && self.extra_fields.is_empty() {
            return None;
        }
        // A record's member names are the same few hundred, record after
        // record: each is judged once a thread, then looked up.
        if let Some(verdict) = NameMemo::get(self.id, key) {
            return verdict;
        }
        let verdict = self.judge_name(key);
        NameMemo::put(self.id, key, verdict);
        verdict
    }

    fn judge_name(&self, key: &[u8]) -> Option<&'static str> {
        if self.extra_fields.is_empty() && !may_name_a_secret(key) {
            return None;
        }
        let mut buf = [0u8; 96];
        let long;
        let n = match normalise_on_stack(key, &mut buf) {
            Some(n) => n,
            None => {
                long = normalise_bytes(key);
                &long
            }
        };
        // Keys are UTF-8 (object keys, or a document's text cut at quotes).
        if !self.extra_fields.is_empty() && std::str::from_utf8(n).is_ok_and(|n| self.extra_fields.contains(n)) {
            return Some("custom_field");
        }
        if self.field_rules { field_rule(n) } else { None }
    }

    /// Writes `v` as compact JSON with every secret redacted. `tokens`:
    /// whether string values may hold tokens (see [`Redactor::candidate`]);
    /// field rules apply either way.
    pub fn write_json(&self, v: &Val<'_, '_>, out: &mut Vec<u8>, stats: &mut Stats, tokens: bool) {
        let mut scratch = Vec::new();
        Walk { r: self, tokens }.walk(v, None, out, stats, &mut scratch);
    }

    /// Writes one object member's value, applying the key's field rule.
    /// `source`: the record's text, when the member is part of it.
    pub fn write_member(
        &self,
        key: &str,
        v: &Val<'_, '_>,
        source: Option<Source<'_>>,
        out: &mut Vec<u8>,
        stats: &mut Stats,
        tokens: bool,
    ) {
        self.write_judged(self.secret_field(key), key, v, source, out, stats, tokens);
    }

    /// [`Redactor::write_member`] once the member's secret type is known;
    /// with `None`, the value as [`Redactor::write_json`] writes it (no field
    /// rule for the key), copied from `source` where that is the same.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_judged(
        &self,
        secret: Option<&'static str>,
        key: &str,
        v: &Val<'_, '_>,
        source: Option<Source<'_>>,
        out: &mut Vec<u8>,
        stats: &mut Stats,
        tokens: bool,
    ) {
        if secret.is_none() && !tokens {
            // A string or scalar has no text to copy (`member_text` takes
            // containers only): written straight, without looking for it.
            match v.node() {
                Node::String(s) => return write_str(s, out),
                Node::Static(_) => return v.write_json(out),
                Node::Array { .. } | Node::Object { .. } => {}
            }
        }
        // The walk changes nothing in a document with no token candidate and
        // no string that names a secret (every structural rule starts from
        // such a name, `kind: Secret` included): its text is then the output.
        if secret.is_none()
            && !tokens
            && let Some(text) = source
                .and_then(|s| s.member_verbatim(key, v))
                .filter(|c| !self.names_a_secret(c.text, c.escapes))
                .map(|c| c.text)
        {
            debug_assert_eq!(
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&self.walked(v, None, tokens)),
                "copy differs from the walk"
            );
            out.extend_from_slice(text);
            return;
        }
        let mut scratch = Vec::new();
        Walk { r: self, tokens }.walk(v, secret, out, stats, &mut scratch);
    }

    /// Whether any string in `text` (a compact JSON document as the writer
    /// writes it, with no control bytes and no `\"`, see
    /// [`Source::member_verbatim`]; `escapes`: it holds a backslash) names a
    /// secret. One search over the text folded to lower case finds the few
    /// strings that hold a [`SECRET_WORDS`] word; only those are judged.
    fn names_a_secret(&self, text: &[u8], escapes: bool) -> bool {
        if !self.field_rules && self.extra_fields.is_empty() {
            return false;
        }
        // A string with an escape reads otherwise unescaped, as the walk
        // judges it (`pass\nword`): where it can name a secret, or with
        // extra names (every string judged), the walk decides. (A copied
        // text's quotes all start or end strings: no `\"`, see
        // `decode::json::written_escape`.)
        let mut from = 0;
        while escapes && let Some(k) = memchr::memchr(b'\\', &text[from..]) {
            let at = from + k;
            let s = memchr::memrchr(b'"', &text[..at]).map_or(0, |i| i + 1);
            let e = memchr::memchr(b'"', &text[at..]).map_or(text.len(), |i| at + i);
            if !self.extra_fields.is_empty() || can_name_a_secret(text, s, e) {
                return true;
            }
            from = e;
        }
        if !self.extra_fields.is_empty() {
            // Extra names need no secret word: judge every string.
            let mut quotes = memchr::memchr_iter(b'"', text);
            while let (Some(s), Some(e)) = (quotes.next(), quotes.next()) {
                if self.secret_name(&text[s + 1..e]).is_some() {
                    return true;
                }
            }
            return false;
        }
        // Folded in stack-sized windows that overlap by a word's length
        // less one, so a word across a window edge is still seen whole.
        const WINDOW: usize = 1024;
        const OVERLAP: usize = 5;
        let mut lower = [0u8; WINDOW];
        let mut at = 0;
        while at < text.len() {
            let chunk = &text[at..text.len().min(at + WINDOW)];
            // `| 0x20` folds exactly the ASCII capitals: no other byte of
            // such a text becomes a lower-case letter or a quote.
            for (l, b) in lower.iter_mut().zip(chunk) {
                *l = b | 0x20;
            }
            let mut from = 0;
            while let Some(m) = self.words.find_in(&lower[..chunk.len()], aho_corasick::Span::from(from..chunk.len())) {
                // Letters outside strings spell only true, false and null,
                // so every word sits in a string: judge that whole string.
                let hit = at + m.start();
                let s = memchr::memrchr(b'"', &text[..hit]).map_or(0, |i| i + 1);
                let e = memchr::memchr(b'"', &text[hit..]).map_or(text.len(), |i| hit + i);
                if can_name_a_secret(text, s, e) && self.secret_name(&text[s..e]).is_some() {
                    return true;
                }
                from = (e - at).min(chunk.len()).max(m.end());
            }
            if at + chunk.len() == text.len() {
                break;
            }
            at += WINDOW - OVERLAP;
        }
        false
    }

    fn walked(&self, v: &Val<'_, '_>, secret: Option<&'static str>, tokens: bool) -> Vec<u8> {
        let mut out = Vec::new();
        Walk { r: self, tokens }.walk(v, secret, &mut out, &mut Stats::default(), &mut Vec::new());
        out
    }
}

/// Whether the string `text[s..e]` of a compact document (see
/// [`Redactor::names_a_secret`]) can make anything secret: a member's key,
/// or the value of a member whose siblings it judges ([`Siblings::of`]:
/// `kind`, and a pair's name). Any other value is only ever written, so
/// `arn:...:key/...` and the like need not be judged.
fn can_name_a_secret(text: &[u8], s: usize, e: usize) -> bool {
    if text.get(e + 1) == Some(&b':') {
        return true;
    }
    // A member's value follows `"key":`; an array element follows `[` or `,`.
    if s < 3 || text[s - 2] != b':' || text[s - 3] != b'"' {
        return false;
    }
    let key_end = s - 3;
    let key_start = memchr::memrchr(b'"', &text[..key_end]).map_or(0, |i| i + 1);
    let key = &text[key_start..key_end];
    key == b"kind" || is_pair_name(key)
}

/// Keys whose string value names a `{name, value}` pair.
fn is_pair_name(k: &[u8]) -> bool {
    matches!(k, b"name" | b"Name" | b"key" | b"Key" | b"ParameterKey")
}

/// Keys of a `{name, value}` pair's value.
fn is_pair_value(k: &str) -> bool {
    matches!(k, "value" | "Value" | "ParameterValue")
}

struct Walk<'r> {
    r: &'r Redactor,
    tokens: bool,
}

impl Walk<'_> {
    fn walk(
        &self,
        v: &Val<'_, '_>,
        secret: Option<&'static str>,
        out: &mut Vec<u8>,
        stats: &mut Stats,
        scratch: &mut Vec<u8>,
    ) {
        match v.node() {
            Node::String(s) => match secret {
                Some(ty) => self.r.write_secret_str(ty, s, out, stats),
                None if self.tokens => self.r.write_string(s, out, stats, scratch),
                None => write_str(s, out),
            },
            Node::Static(st) => match (secret, st) {
                // A number or boolean under a secret key: a numeric PIN is still a secret.
                (Some(ty), StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)) => {
                    let mut text = Vec::new();
                    v.write_json(&mut text);
                    out.push(b'"');
                    self.r.marker(ty, &text, out);
                    out.push(b'"');
                    stats.add(ty);
                }
                _ => v.write_json(out),
            },
            Node::Array { .. } => {
                out.push(b'[');
                for (i, e) in v.elements().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.walk(&e, secret, out, stats, scratch);
                }
                out.push(b']');
            }
            Node::Object { .. } => {
                let mut siblings = None;
                out.push(b'{');
                for (i, (k, val)) in v.entries().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(k, out);
                    out.push(b':');
                    let member_secret = Siblings::judge(self.r, v, secret, &mut siblings, k, &val);
                    self.walk(&val, member_secret, out, stats, scratch);
                }
                out.push(b'}');
            }
        }
    }
}

/// What an object's members learn from their parent and siblings: a
/// member's own name is not the whole story (`kind: Secret` makes `data`
/// secret, a `{name, value}` pair's name makes `value` secret).
#[derive(Clone, Copy)]
struct Siblings {
    /// The secret type the object itself is under, if any.
    secret: Option<&'static str>,
    k8s_secret: bool,
    pair_secret: Option<&'static str>,
}

impl Siblings {
    /// One pass over `v`'s members: a Kubernetes Secret, and `{name, value}`
    /// pairs (environment variables, parameters).
    #[inline]
    fn of(r: &Redactor, v: &Val<'_, '_>, secret: Option<&'static str>) -> Self {
        let (mut k8s_secret, mut pair_name, mut has_value) = (false, None, false);
        for (k, val) in v.entries() {
            match k {
                "kind" => k8s_secret = val.as_str() == Some("Secret"),
                _ if pair_name.is_none() && is_pair_name(k.as_bytes()) => pair_name = val.as_str(),
                _ if is_pair_value(k) => has_value = true,
                _ => {}
            }
        }
        let pair_secret = match (secret, pair_name, has_value && r.field_rules) {
            (None, Some(name), true) => r.secret_field(name),
            _ => None,
        };
        Siblings { secret, k8s_secret, pair_secret }
    }

    /// The secret type member `k` of object `v` is under. `v`'s siblings are
    /// looked at (once, into `seen`) only for the few names they can change;
    /// most objects have none of them.
    #[inline]
    fn judge(
        r: &Redactor,
        v: &Val<'_, '_>,
        secret: Option<&'static str>,
        seen: &mut Option<Siblings>,
        k: &str,
        val: &Val<'_, '_>,
    ) -> Option<&'static str> {
        let s = if matches!(k, "data" | "stringData" | "metadata") || is_pair_value(k) {
            *seen.get_or_insert_with(|| Siblings::of(r, v, secret))
        } else {
            Siblings { secret, k8s_secret: false, pair_secret: None }
        };
        s.member_secret(r, k, val)
    }

    /// The secret type member `k` is under.
    #[inline]
    fn member_secret(&self, r: &Redactor, k: &str, val: &Val<'_, '_>) -> Option<&'static str> {
        // A secret-named key over an object (`"secret": {"secretName":
        // ..., "defaultMode": 420}`, a pod volume) names where a secret
        // lives, not the secret: inside it only value-like members
        // inherit; the rest are judged by their own names. A
        // Kubernetes Secret's data is secret through and through.
        let inherited = self.secret.filter(|ty| {
            *ty == "kubernetes_secret"
                || matches!(k, "value" | "Value" | "data" | "plaintext" | "text" | "string" | "content" | "key")
        });
        inherited
            .or_else(|| {
                (self.k8s_secret && r.field_rules && (k == "data" || k == "stringData")).then_some("kubernetes_secret")
            })
            .or_else(|| self.pair_secret.filter(|_| is_pair_value(k)))
            .or_else(|| if self.k8s_secret && k == "metadata" { None } else { r.secret_field(k) })
            .or_else(|| {
                // The whole Secret travels in this annotation as a JSON string.
                (k == "kubectl.kubernetes.io/last-applied-configuration"
                    && val.as_str().is_some_and(|s| s.contains("\"kind\":\"Secret\"")))
                .then_some("kubernetes_secret")
            })
    }
}

/// What [`write_part`] keeps of an object member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    All,
    Nothing,
    /// An object: the members its own [`Keep`]s keep (anything else: all of it).
    Part,
}

/// The deepest object [`write_part`] takes apart; below it `Part` is `All`.
const PART_DEPTH: usize = 8;

/// Writes the part of object `v` that `keep` keeps, as compact JSON: the
/// caller's columns hold the rest. `keep` is asked of each member, with the
/// keys of the objects taken apart above it (outermost first) and its
/// index. Each member is redacted as the walk of the whole object would
/// redact it: its siblings decide as much as its name, even those left out.
/// `red`: none when redaction is off.
pub fn write_part<F: FnMut(&[&str], usize, &str, &Val<'_, '_>) -> Keep>(
    red: Option<&Redactor>,
    v: &Val<'_, '_>,
    keep: &mut F,
    source: Option<Source<'_>>,
    out: &mut Vec<u8>,
    stats: &mut Stats,
    tokens: bool,
) {
    let mut path = [""; PART_DEPTH];
    part(red, v, None, &mut path, 0, keep, source, out, stats, tokens);
}

#[allow(clippy::too_many_arguments)]
fn part<'i, F: FnMut(&[&str], usize, &str, &Val<'_, '_>) -> Keep>(
    red: Option<&Redactor>,
    v: &Val<'_, 'i>,
    secret: Option<&'static str>,
    path: &mut [&'i str; PART_DEPTH],
    depth: usize,
    keep: &mut F,
    source: Option<Source<'_>>,
    out: &mut Vec<u8>,
    stats: &mut Stats,
    tokens: bool,
) {
    let mut siblings = None;
    out.push(b'{');
    let mut first = true;
    for (i, (k, val)) in v.entries().enumerate() {
        let how = keep(&path[..depth], i, k, &val);
        if how == Keep::Nothing {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(k, out);
        out.push(b':');
        let member_secret = red.and_then(|r| Siblings::judge(r, v, secret, &mut siblings, k, &val));
        if how == Keep::Part && val.is_object() && depth < PART_DEPTH {
            path[depth] = k;
            part(red, &val, member_secret, path, depth + 1, keep, source, out, stats, tokens);
            continue;
        }
        match red {
            Some(r) => r.write_judged(member_secret, k, &val, source, out, stats, tokens),
            None => match source.and_then(|s| s.member_text(k, &val)) {
                Some(text) => out.extend_from_slice(text),
                None => val.write_json(out),
            },
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::Parser;

    fn red() -> Redactor {
        Redactor::new(&RedactionConfig { key: Some("k".repeat(32)), ..Default::default() }).unwrap()
    }

    #[test]
    fn a_names_verdict_is_remembered_per_redactor_and_per_whole_name() {
        let plain = red();
        let custom = Redactor::new(&RedactionConfig {
            key: Some("k".repeat(32)),
            field_names: vec!["badge".into()],
            ..Default::default()
        })
        .unwrap();
        let no_rules = Redactor::new(&RedactionConfig {
            key: Some("k".repeat(32)),
            disabled_groups: vec!["fields".into()],
            ..Default::default()
        })
        .unwrap();
        let long = format!("{}Password", "x".repeat(40));
        // Twice over, so the second round reads what the first remembered.
        for _ in 0..2 {
            assert_eq!(plain.secret_field("badge"), None);
            assert_eq!(custom.secret_field("badge"), Some("custom_field"));
            assert_eq!(plain.secret_field("password"), Some("password"));
            assert_eq!(no_rules.secret_field("password"), None);
            assert_eq!(plain.secret_field("passwordPolicy"), None, "a longer name, not the shorter's verdict");
            assert_eq!(plain.secret_field("Password"), Some("password"));
            assert_eq!(plain.secret_field(&long), Some("password"), "too long to remember, judged each time");
            assert_eq!(plain.secret_field("eventName"), None);
        }
        // Two names in one slot: each is judged as itself, whichever came last.
        let other = (0..)
            .map(|i| format!("field{i}"))
            .find(|n| NameMemo::slot(n.as_bytes()) == NameMemo::slot(b"password"))
            .unwrap();
        for _ in 0..2 {
            assert_eq!(plain.secret_field(&other), None, "{other}");
            assert_eq!(plain.secret_field("password"), Some("password"));
        }
    }

    /// A remembered name is compared by its ends as words: a name of any
    /// length the memo keeps, differing from it in any one byte (the
    /// middle of a long one too) or in length, is not it.
    #[test]
    fn a_remembered_name_is_told_from_one_differing_anywhere() {
        for n in 1..=MEMO_NAME {
            let name: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            let mut slot = MemoSlot { redactor: 1, len: n as u8, name: [0; MEMO_NAME], verdict: None };
            slot.name[..n].copy_from_slice(&name);
            assert!(NameMemo::holds(&slot, &name), "{n}");
            for i in 0..n {
                let mut other = name.clone();
                other[i] = b'Z';
                assert!(!NameMemo::holds(&slot, &other), "length {n}, byte {i}");
            }
            assert!(!NameMemo::holds(&slot, &name[..n - 1]), "{n}");
        }
    }

    fn json(r: &Redactor, s: &str) -> (String, Stats) {
        let mut p = Parser::default();
        let mut b = s.as_bytes().to_vec();
        let mut st = Stats::default();
        let out = p.parse(&mut b, |v| {
            let mut out = Vec::new();
            r.write_json(&v.unwrap().root, &mut out, &mut st, true);
            String::from_utf8(out).unwrap()
        });
        (out, st)
    }

    /// `write_member` of member `p` with the record's text at hand (the
    /// copy is allowed) and without (always the walk): both must agree.
    fn member_both_ways(r: &Redactor, doc: &str) -> String {
        let original = doc.as_bytes().to_vec();
        let mut b = original.clone();
        Parser::default().parse(&mut b, |v| {
            let v = v.unwrap();
            let (k, p) = v.root.member("p").unwrap();
            let (mut copied, mut walked) = (Vec::new(), Vec::new());
            let (mut s1, mut s2) = (Stats::default(), Stats::default());
            r.write_member(k, &p, v.source(&original), &mut copied, &mut s1, false);
            r.write_member(k, &p, None, &mut walked, &mut s2, false);
            assert_eq!(String::from_utf8_lossy(&copied), String::from_utf8_lossy(&walked), "{doc}");
            assert_eq!(s1.count, s2.count);
            String::from_utf8(copied).unwrap()
        })
    }

    /// `write_part` of a whole document, with and without its text at hand
    /// and with redaction on and off; `keep` sees the path and the key.
    fn part(doc: &str, keep: fn(&[&str], &str) -> Keep) -> (String, String) {
        let r = red();
        let original = doc.as_bytes().to_vec();
        let mut b = original.clone();
        Parser::default().parse(&mut b, |v| {
            let v = v.unwrap();
            let mut keep = |path: &[&str], _: usize, k: &str, _: &Val<'_, '_>| keep(path, k);
            let (mut copied, mut walked, mut plain) = (Vec::new(), Vec::new(), Vec::new());
            let (mut s1, mut s2) = (Stats::default(), Stats::default());
            write_part(Some(&r), &v.root, &mut keep, v.source(&original), &mut copied, &mut s1, false);
            write_part(Some(&r), &v.root, &mut keep, None, &mut walked, &mut s2, false);
            write_part(None, &v.root, &mut keep, v.source(&original), &mut plain, &mut Stats::default(), false);
            assert_eq!(String::from_utf8_lossy(&copied), String::from_utf8_lossy(&walked), "{doc}");
            assert_eq!(s1.count, s2.count);
            (String::from_utf8(copied).unwrap(), String::from_utf8(plain).unwrap())
        })
    }

    #[test]
    fn a_part_is_redacted_in_the_light_of_the_members_left_out() {
        // The pair's name and the Secret's kind are left out; what they make secret is not.
        let doc = r#"{"name":"db_password","value":"hunter2","id":{"kind":"Secret","uid":"u1","data":{"pw":"c2VjcmV0"}},"ctx":{"attrs":{"Name":"API_TOKEN","mapped":"m","Value":"tok"},"keep":{"a":[1,2]}}}"#;
        let (red, plain) = part(doc, |path, k| match (path, k) {
            ([], "name") | (["id"], "kind" | "uid") | (["ctx", "attrs"], "Name" | "mapped") => Keep::Nothing,
            ([], "id" | "ctx") | (["ctx"], "attrs") => Keep::Part,
            _ => Keep::All,
        });
        assert!(!red.contains("hunter2") && !red.contains("c2VjcmV0") && !red.contains("tok\""), "{red}");
        assert!(red.starts_with(r#"{"value":"[REDACTED:password:"#), "{red}");
        assert!(red.contains(r#""id":{"data":{"pw":"[REDACTED:kubernetes_secret:"#), "{red}");
        assert!(red.contains(r#""ctx":{"attrs":{"Value":"[REDACTED:token:"#), "{red}");
        assert!(red.ends_with(r#""keep":{"a":[1,2]}}}"#), "{red}");
        // Redaction off: the same part, in clear.
        assert_eq!(
            plain,
            r#"{"value":"hunter2","id":{"data":{"pw":"c2VjcmV0"}},"ctx":{"attrs":{"Value":"tok"},"keep":{"a":[1,2]}}}"#
        );
        // `Part` of a value that is not an object is all of it; nothing kept is `{}`.
        assert_eq!(part(r#"{"a":[1],"b":"x"}"#, |_, _| Keep::Part).1, r#"{"a":[1],"b":"x"}"#);
        assert_eq!(part(r#"{"a":1}"#, |_, _| Keep::Nothing).0, "{}");
    }

    #[test]
    fn copied_documents_are_redacted_like_walked_ones() {
        let r = red();
        let clean =
            r#"{"k":1,"p":{"bucketName":"b","key":"a/b.txt","kmsKeyId":"arn:x","Keys":["KEY"],"authorized":true}}"#;
        assert_eq!(
            member_both_ways(&r, clean),
            r#"{"bucketName":"b","key":"a/b.txt","kmsKeyId":"arn:x","Keys":["KEY"],"authorized":true}"#
        );
        // Every way a secret name can appear, in any case and across the
        // copy's 1 KiB folding windows.
        let pad = "x".repeat(1019);
        for (doc, secret) in [
            (r#"{"p":{"a":{"PassWord":"hunter2"}}}"#.to_string(), "hunter2"),
            (r#"{"p":{"pAsS_wOrD":"hunter2"}}"#.to_string(), "hunter2"),
            (r#"{"p":[{"name":"DB_PASSWORD","value":"hunter2"}]}"#.to_string(), "hunter2"),
            (r#"{"p":{"kind":"Secret","data":{"x":"aHVudGVyMg=="}}}"#.to_string(), "aHVudGVyMg=="),
            (r#"{"p":{"COOKIE":"sess=1"}}"#.to_string(), "sess=1"),
            (r#"{"p":{"client_secret":"s3cr3t","n":123}}"#.to_string(), "s3cr3t"),
            (format!(r#"{{"p":{{"pad":"{pad}","sessionToken":"tok123"}}}}"#), "tok123"),
            (format!(r#"{{"p":{{"pad":"{}","apiKey":"k123"}}}}"#, "y".repeat(1012)), "k123"),
            // A pair's name and a Secret's kind are values, after keys that say so.
            (r#"{"p":[{"Value":"hunter2","ParameterKey":"db-password"}]}"#.to_string(), "hunter2"),
            (r#"{"p":{"data":{"x":"aHVudGVyMg=="},"arn":"x:key/1","kind":"Secret"}}"#.to_string(), "aHVudGVyMg=="),
            // Escapes the writer writes as they are, so such a text may be
            // copied: in a value beside a secret, in a secret key, in a pair.
            (r#"{"p":{"msg":"line 1\nline 2\t\\","PassWord":"hunter2"}}"#.to_string(), "hunter2"),
            (r#"{"p":{"db\tpassword":"hunter2","note":"a\nb"}}"#.to_string(), "hunter2"),
            (r#"{"p":{"pass\\word":"x","password":"hunter2"}}"#.to_string(), "hunter2"),
            // Read as it is, `password\time` ends in `time` (a date, not a
            // secret); unescaped it ends in a tab and `ime`, and is one.
            (r#"{"p":{"password\time":"hunter2"}}"#.to_string(), "hunter2"),
            (r#"{"p":[{"name":"DB_PASSWORD","value":"hunter2","note":"a\nb"}]}"#.to_string(), "hunter2"),
            (r#"{"p":{"kind":"Secret","note":"a\r\nb","data":{"x":"aHVudGVyMg=="}}}"#.to_string(), "aHVudGVyMg=="),
        ] {
            let out = member_both_ways(&r, &doc);
            assert!(!out.contains(secret) && out.contains("[REDACTED:"), "{doc} -> {out}");
        }
        // Names added by configuration need no secret word.
        let custom = Redactor::new(&RedactionConfig {
            key: Some("k".repeat(32)),
            field_names: vec!["X-Internal".into()],
            ..Default::default()
        })
        .unwrap();
        let out = member_both_ways(&custom, r#"{"p":{"x_internal":"v1","other":"v2"}}"#);
        assert!(!out.contains("v1") && out.contains("v2"), "{out}");
        let out = member_both_ways(&custom, r#"{"p":{"x_internal":"v1","other":"a\nb"}}"#);
        assert!(!out.contains("v1") && out.contains(r#""a\nb""#), "{out}");
        // A multi-line value with no secret near it is the document as it was.
        let lines = r#"{"p":{"message":"Fix\n\nCo-authored-by: A <a@x>","path":"C:\\tmp"}}"#;
        assert_eq!(member_both_ways(&r, lines), r#"{"message":"Fix\n\nCo-authored-by: A <a@x>","path":"C:\\tmp"}"#);
    }

    #[test]
    fn only_keys_and_the_values_siblings_read_can_name_a_secret() {
        let text = br#"{"password":"key/1","name":"token","Tags":["secret"],"x":{"kind":"Secret"},"a":"b"}"#;
        let judged = |w: &str| {
            let s = text.windows(w.len()).position(|x| x == w.as_bytes()).unwrap();
            can_name_a_secret(text, s, s + w.len())
        };
        assert!(judged("password") && judged("token") && judged("Secret") && judged("kind"));
        assert!(!judged("key/1") && !judged("secret") && !judged("b"));
    }

    #[test]
    fn secret_words_are_found_in_any_case_anywhere() {
        for w in SECRET_WORDS {
            let w = std::str::from_utf8(w).unwrap();
            let mixed: String =
                w.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
            for name in [w.to_string(), w.to_ascii_uppercase(), format!("x_{mixed}_y")] {
                assert!(may_name_a_secret(name.as_bytes()), "{name}");
            }
        }
        for name in ["bucketName", "eventSource", "PAS", "wor", "", "kE"] {
            assert!(!may_name_a_secret(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn field_rules() {
        for (k, want) in [
            ("password", Some("password")),
            ("masterUserPassword", Some("password")),
            ("PasswordResetRequired", None),
            ("PasswordUpdated", None),
            ("subjectFromWebIdentityToken", None),
            ("hashed_token", None),
            ("webIdentityToken", Some("token")),
            ("client_secret", Some("secret")),
            ("SecretId", None),
            ("secretString", Some("secret")),
            ("sessionToken", Some("aws_session_token")),
            ("nextToken", None),
            ("clientToken", None),
            ("GITHUB_TOKEN", Some("token")),
            ("accessKeyId", None),
            ("x-amz-server-side-encryption-customer-key", Some("sse_customer_key")),
            ("x-amz-server-side-encryption-customer-key-MD5", None),
            ("Authorization", Some("authorization")),
            ("kmsKeyId", None),
            ("pass_word", Some("password")),
            ("CLIENT-SECRET", Some("secret")),
        ] {
            assert_eq!(field_rule(normalise_name(k).as_bytes()), want, "{k}");
        }
    }

    #[test]
    fn structure_and_tokens_in_json() {
        let r = red();
        let (out, st) = json(
            &r,
            r#"{"containerDefinitions":[{"environment":[{"name":"DB_PASSWORD","value":"hunter2"},{"name":"REGION","value":"eu-west-1"}]}],
               "password":"HIDDEN_DUE_TO_SECURITY_REASONS","note":"token ghp_00000000000000000000000000000004WZ4EQ here",
               "accessKeyId":"AKIAIOSFODNN7EXAMPLE","apiKey":1234}"#,
        );
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains(r#""value":"eu-west-1""#), "{out}");
        assert!(out.contains(r#""password":"HIDDEN_DUE_TO_SECURITY_REASONS""#), "{out}");
        assert!(out.contains("token [REDACTED:github_token:"), "{out}");
        assert!(out.contains("AKIAIOSFODNN7EXAMPLE"), "access key IDs are identifiers: {out}");
        assert!(!out.contains("1234"), "{out}");
        assert_eq!(st.count, 3);
        assert_eq!(st.types, ["password", "github_token", "api_key"]);
    }

    #[test]
    fn secret_named_objects_are_judged_member_by_member() {
        let r = red();
        let (out, st) = json(
            &r,
            r#"{"volumes":[{"name":"certs","secret":{"secretName":"tls-certs","defaultMode":420}}],"password":{"value":"hunter2","hint":"pet"},"tokens":["t1","t2"]}"#,
        );
        assert!(out.contains(r#""secretName":"tls-certs""#) && out.contains(r#""defaultMode":420"#), "{out}");
        assert!(!out.contains("hunter2") && out.contains(r#""hint":"pet""#), "{out}");
        assert!(!out.contains("\"t1\""), "arrays under a secret key are secret: {out}");
        assert_eq!(st.count, 3);
    }

    #[test]
    fn kubernetes_secret() {
        let r = red();
        let (out, _) = json(
            &r,
            r#"{"kind":"Secret","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"pw\":\"aHVudGVyMg==\"},\"kind\":\"Secret\"}"}},"data":{"pw":"aHVudGVyMg=="},"stringData":{"x":"clear"}}"#,
        );
        assert!(!out.contains("aHVudGVyMg") && !out.contains("clear"), "{out}");
        assert!(out.contains(r#""name":"db""#), "{out}");
    }

    #[test]
    fn fingerprints_correlate_and_depend_on_the_key() {
        let r = red();
        let mut a = Vec::new();
        let mut st = Stats::default();
        r.scan_into(b"x ghp_00000000000000000000000000000004WZ4EQ", &mut a, &mut st);
        let (j, _) = json(&r, r#"{"token":"ghp_00000000000000000000000000000004WZ4EQ"}"#);
        let fp = |s: &str| s.rsplit(':').next().unwrap()[..16].to_string();
        assert_eq!(fp(std::str::from_utf8(&a).unwrap()), fp(&j), "same secret, same fingerprint across detectors");
        // The fingerprint is the first 8 bytes of HMAC-SHA256(key, secret),
        // as an archive written by any earlier version has it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice("k".repeat(32).as_bytes()).unwrap();
        mac.update(b"ghp_00000000000000000000000000000004WZ4EQ");
        assert_eq!(fp(&j), hex::encode(&mac.finalize().into_bytes()[..8]));
        for _ in 0..2 {
            let mut again = Vec::new();
            r.scan_into(b"x ghp_00000000000000000000000000000004WZ4EQ", &mut again, &mut st);
            assert_eq!(again, a, "the keyed state is reused, not consumed");
        }
        let other = Redactor::new(&RedactionConfig { key: Some("z".repeat(32)), ..Default::default() }).unwrap();
        let mut b = Vec::new();
        other.scan_into(b"x ghp_00000000000000000000000000000004WZ4EQ", &mut b, &mut st);
        assert_ne!(a, b);
        assert_ne!(r.key_id(), other.key_id());
    }

    #[test]
    fn unparsed_text_is_redacted_by_key_and_token() {
        let r = red();
        let mut out = Vec::new();
        let mut st = Stats::default();
        r.scan_unparsed(
            br#"{"eventName": "x", "password": "hunter2",, "nextToken": "abc", db_password=s3cr3t token xoxb-1234567890-abcdefghij"#,
            &mut out,
            &mut st,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("hunter2") && !out.contains("s3cr3t") && !out.contains("xoxb-123"), "{out}");
        assert!(out.contains(r#""nextToken": "abc""#) && out.contains(r#""eventName": "x""#), "{out}");
        assert_eq!(st.count, 3);
    }

    #[test]
    fn cuts_never_split_a_character() {
        let r = red();
        let text = format!("Password={};", "é".repeat(300));
        let mut out = Vec::new();
        let mut st = Stats::default();
        r.scan_into(text.as_bytes(), &mut out, &mut st);
        assert_eq!(st.count, 1);
        let out = String::from_utf8(out).expect("valid UTF-8");
        assert!(out.starts_with("Password=[REDACTED:connection_string_password:"), "{out}");
        assert!(!out.contains('é'), "no tail of a long password is left: {out}");
    }

    #[test]
    fn url_credential_check() {
        assert!(has_url_credentials(b"x postgres://app:pw@db/x"));
        assert!(has_url_credentials(b"\"https://u:p@h\""));
        assert!(!has_url_credentials(b"https://console.aws.amazon.com/a:b@c"));
        assert!(!has_url_credentials(b"https://user@example.com/"));
        assert!(!has_url_credentials(b"s3://bucket/key:with@chars"));
    }

    #[test]
    fn config_errors_are_clear() {
        let e = Redactor::new(&RedactionConfig { key: Some("short".into()), ..Default::default() }).err().unwrap();
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = Redactor::new(&RedactionConfig { disabled_groups: vec!["nope".into()], ..Default::default() })
            .err()
            .unwrap();
        assert!(e.to_string().contains("nope"));
        let e = Redactor::new(&RedactionConfig {
            patterns: vec![CustomPattern { name: "x".into(), regex: "(".into() }],
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("\"x\""));
    }

    /// The one-pass check (where this CPU has it) and the Teddy searchers
    /// (everywhere) say the same of every kind of candidate.
    #[test]
    fn both_checks_find_every_kind_of_candidate() {
        let token = format!("ghp_{}", "a1B2".repeat(9));
        let cases: Vec<(String, bool)> = vec![
            (
                r#"{"eventName":"GetObject","userAgent":"aws-cli/2.0","host":"https://s3.amazonaws.com/b/k"}"#.into(),
                false,
            ),
            (format!(r#"{{"t":"{token}"}}"#), true),
            (format!(r#"{{"t":"x","pad":"{}","u":"{token}"}}"#, "y".repeat(200)), true),
            (r#"{"t":"ghp_short"}"#.into(), false),
            (format!(r#"{{"sid":"SK{}"}}"#, "0123456789abcdef".repeat(2)), true),
            (r#"{"a":"x\/y"}"#.into(), true),
            (r#"{"a":"\u0041"}"#.into(), true),
            (r#"{"u":"postgres://app:pw@db/x"}"#.into(), true),
            (r#"{"u":"https://user@example.com/"}"#.into(), false),
        ];
        let mut teddy_check = red();
        teddy_check.check = teddy(anchors(&builtin_patterns()).expect("built-in anchors"));
        assert!(matches!(teddy_check.check, Check::Teddy(_)));
        let mut checks = vec![("teddy", teddy_check)];
        let native = red();
        if matches!(native.check, Check::OnePass(..)) {
            checks.push(("one pass", native));
        }
        for (name, r) in &checks {
            for (text, want) in &cases {
                assert_eq!(r.candidate(text.as_bytes()), *want, "{name}: {text}");
            }
        }
    }

    #[test]
    fn a_custom_pattern_that_starts_like_a_url_is_looked_for() {
        let r = Redactor::new(&RedactionConfig {
            key: Some("k".repeat(32)),
            patterns: vec![CustomPattern { name: "internal".into(), regex: "://internal-[0-9]{4}".into() }],
            ..Default::default()
        })
        .unwrap();
        assert!(r.candidate(br#"{"u":"see ://internal-1234 here"}"#));
        assert!(!r.candidate(br#"{"u":"https://example.com/a"}"#), "a URL alone is no candidate");
        assert!(r.candidate(br#"{"u":"https://u:p@example.com/a"}"#));
    }

    #[test]
    fn custom_patterns_fields_and_allowlist() {
        let r = Redactor::new(&RedactionConfig {
            key: Some("k".repeat(32)),
            patterns: vec![CustomPattern { name: "acme".into(), regex: "acme_[a-z0-9]{8}".into() }],
            field_names: vec!["X-Internal-Auth".into()],
            allow_values: vec!["ghp_00000000000000000000000000000004WZ4EQ".into()],
            ..Default::default()
        })
        .unwrap();
        let (out, st) =
            json(&r, r#"{"a":"acme_12345678","x_internal_auth":"v","t":"ghp_00000000000000000000000000000004WZ4EQ"}"#);
        assert!(out.contains("[REDACTED:acme:") && out.contains("[REDACTED:custom_field:"), "{out}");
        assert!(out.contains("ghp_00000000000000000000000000000004WZ4EQ"), "allowlisted: {out}");
        assert_eq!(st.count, 2);
    }
}
