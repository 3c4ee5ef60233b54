//! The configuration file (TOML). Unknown keys are errors, so a typo never
//! silently turns a protection off.
//!
//! ```toml
//! [redaction]
//! key_env = "TRAILSHIP_REDACTION_KEY"
//! disabled_groups = ["jwt"]
//! field_names = ["x-internal-auth"]
//! allow_values = ["AKIAIOSFODNN7EXAMPLE"]
//! [[redaction.patterns]]
//! name = "acme_token"
//! regex = "acme_[a-z0-9]{32}"
//! [integrity]
//! signing_key_file = "/etc/trailship/archive-signing.pem"
//! writer_id = "worker-0"
//! digest_interval_s = 3600
//! ```
//!
//! `trailship run` adds `[kafka]`, `[archive]`, `[batch]` and `[service]`
//! (see `deploy/trailship.toml`). `${NAME}` and `${NAME:-default}` are
//! replaced from the environment before parsing, outside comment lines; an
//! unset variable without a default is an error, never an empty string.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::redact::RedactionConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub redaction: RedactionConfig,
    pub kubernetes: KubernetesConfig,
    pub github: GitHubConfig,
    pub integrity: IntegrityConfig,
    pub kafka: Option<KafkaConfig>,
    pub archive: ArchiveConfig,
    pub batch: BatchConfig,
    pub service: ServiceConfig,
    pub source_s3: SourceS3Config,
    pub security_lake: Option<SecurityLakeConfig>,
}

/// `[security_lake]`: the service as a SIEM feed. Its Parquet goes to an
/// Amazon Security Lake's custom sources (`ext/<source>/...` under
/// `location`, rows without the `trailship` extension), and `[archive]`
/// keeps the rest: intents, dead letters, digest checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLakeConfig {
    /// The lake's bucket (`s3://aws-security-data-lake-…`), or a directory.
    pub location: String,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// The custom source registered for a dataset (`api_activity = "…"`),
    /// where it is not named after it. Security Lake takes one OCSF class a
    /// source.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, String>,
    /// Keep the trailship extension's columns (`trailship`, `change`) in
    /// the lake's rows; by default they hold OCSF's own attributes only,
    /// with what `change` held in `unmapped` (`encode::without_extension`).
    #[serde(default)]
    pub extension: bool,
}

impl SecurityLakeConfig {
    /// The lake as a store: no Object Lock of trailship's (Security Lake
    /// manages its bucket), the archive's spool and part size.
    pub fn store_config(&self, archive: &ArchiveConfig) -> ArchiveConfig {
        ArchiveConfig {
            location: self.location.clone(),
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            object_lock_mode: None,
            retain_days: 0,
            require_object_lock: false,
            ..archive.clone()
        }
    }
}

/// `[source_s3]`: where log files named by S3 event notifications are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceS3Config {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Larger log files (stored or inflated) are dead letters, not batches.
    pub max_object_bytes: u64,
    /// CloudTrail's public keys for the in-stream digest check, as
    /// ListPublicKeys returns them; unset: asked of the CloudTrail API.
    pub public_keys_file: Option<PathBuf>,
    pub cloudtrail_endpoint_url: Option<String>,
    /// A log file ingested this long ago that no checked digest lists yet
    /// raises an error log and `trailship_log_files_uncovered_total`.
    /// CloudTrail writes a digest every hour.
    pub digest_deadline_s: u64,
}

impl Default for SourceS3Config {
    fn default() -> Self {
        SourceS3Config {
            endpoint_url: None,
            region: None,
            max_object_bytes: 512 << 20,
            public_keys_file: None,
            cloudtrail_endpoint_url: None,
            digest_deadline_s: 3 * 3600,
        }
    }
}

/// `[kafka]`: the consumer group the service runs in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    pub topics: Vec<TopicConfig>,
    /// Passed to librdkafka as they are (security.protocol, sasl.*, ...).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Dead letters to this topic (reason and source in headers) instead of
    /// `_dead_letter/` in the archive; produced with acks=all before the
    /// batch's offsets are committed (at least once: a replay may repeat
    /// them, under the same message key).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

fn default_group() -> String {
    "trailship".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    #[serde(default)]
    pub kind: TopicKind,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TopicKind {
    #[default]
    Auto,
    Cloudtrail,
    K8sAudit,
    Github,
    Gitlab,
}

impl TopicKind {
    pub fn source(self) -> crate::normalize::SourceKind {
        use crate::normalize::SourceKind;
        match self {
            TopicKind::Auto => SourceKind::Auto,
            TopicKind::Cloudtrail => SourceKind::CloudTrail,
            TopicKind::K8sAudit => SourceKind::K8sAudit,
            TopicKind::Github => SourceKind::GitHub,
            TopicKind::Gitlab => SourceKind::GitLab,
        }
    }
}

/// `[archive]`: where objects go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// `s3://bucket/prefix` or a local directory.
    pub location: String,
    /// An S3-compatible endpoint (path-style addressing).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// `COMPLIANCE` or `GOVERNANCE`; set on every PUT with `retain_days`.
    pub object_lock_mode: Option<LockMode>,
    pub retain_days: u32,
    /// Refuse to start when the bucket has no Object Lock configuration.
    pub require_object_lock: bool,
    /// Objects are staged here before upload, so memory never holds one whole.
    pub spool_dir: Option<PathBuf>,
    /// Objects larger than this go up as multipart uploads of this part size.
    pub multipart_bytes: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            location: "trailship-archive".into(),
            endpoint_url: None,
            region: None,
            object_lock_mode: None,
            retain_days: 0,
            require_object_lock: true,
            spool_dir: None,
            multipart_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// `[batch]`: when a partition's batch becomes an object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_events: u64,
    /// Message bytes per batch.
    pub max_bytes: u64,
    pub max_age_s: u64,
    /// Column buffers per partition before a row group goes to the spool.
    pub max_buffer_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: 200_000, max_bytes: 256 << 20, max_age_s: 60, max_buffer_bytes: 16 << 20 }
    }
}

/// `[service]`: the process around the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// `/metrics`, `/healthz`, `/readyz`; empty: none.
    pub listen: String,
    /// SIGTERM: flush, commit and exit within this many seconds.
    pub shutdown_deadline_s: u64,
    /// Longest wait between retries of a failing write.
    pub max_backoff_s: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig { listen: "127.0.0.1:9598".into(), shutdown_deadline_s: 30, max_backoff_s: 30 }
    }
}

/// `[integrity]`: trailship's own digest chain over the archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrityConfig {
    /// PKCS#8 private key (RSA or Ed25519, PEM or DER); unset: the archive is not signed.
    pub signing_key_file: Option<PathBuf>,
    /// Names this writer's chain (`_digests/<writer_id>/`): one per batch
    /// job. The service keeps one per Kafka partition,
    /// `_digests/<writer_id>.<topic>.<partition>/`.
    pub writer_id: String,
    /// A digest at least this often while running, and one at the end of a
    /// run (the batch job; the service writes one per batch).
    pub digest_interval_s: u64,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig { signing_key_file: None, writer_id: "trailship".into(), digest_interval_s: 3600 }
    }
}

/// `[kubernetes]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Keep only the final stage of each request (ResponseComplete, Panic);
    /// the other stages are counted as filtered, not dead-lettered.
    pub final_stage_only: bool,
}

/// `[github]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitHubConfig {
    /// Environment variable holding the webhook secret; when set, each
    /// delivery's `X-Hub-Signature-256` is verified and the verdict recorded.
    pub webhook_secret_env: String,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig { webhook_secret_env: "TRAILSHIP_GITHUB_WEBHOOK_SECRET".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("config {path} is invalid: {detail}")]
    Parse { path: PathBuf, detail: String },
}

/// Replaces `${NAME}` and `${NAME:-default}` from `env`; `$$` is a literal `$`.
/// Full-line comments are left as they are, so documentation in a config
/// never needs its variables set.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(r) = after.strip_prefix('{') {
                let end = r.find('}').ok_or_else(|| format!("line {}: unclosed ${{", n + 1))?;
                let (name, default) = match r[..end].split_once(":-") {
                    Some((name, d)) => (name, Some(d)),
                    None => (&r[..end], None),
                };
                let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!("line {}: ${{{name}}} is not a variable name", n + 1));
                }
                match (env(name).filter(|v| !v.is_empty()), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        return Err(format!(
                            "line {}: environment variable {name} is not set (or use ${{{name}:-default}})",
                            n + 1
                        ));
                    }
                }
                rest = &r[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.into(), source: e })?;
        Self::parse(&text).map_err(|detail| ConfigError::Parse { path: path.into(), detail })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = interpolate(text, |k| std::env::var(k).ok())?;
        let c: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    /// What serde cannot say: values that parse but cannot work.
    fn check(&self) -> Result<(), String> {
        if let Some(k) = &self.kafka {
            if k.brokers.trim().is_empty() {
                return Err("[kafka] brokers is empty".into());
            }
            if k.topics.is_empty() {
                return Err("[kafka] needs at least one [[kafka.topics]]".into());
            }
            let mut seen = std::collections::HashSet::new();
            for t in &k.topics {
                if !valid_topic(&t.name) {
                    return Err(format!("[[kafka.topics]] name {:?} is not a Kafka topic name", t.name));
                }
                if !seen.insert(&t.name) {
                    return Err(format!("[[kafka.topics]] {} is listed twice", t.name));
                }
            }
        }
        let a = &self.archive;
        if a.location.trim().is_empty() {
            return Err("[archive] location is empty".into());
        }
        let s3 = a.location.starts_with("s3://");
        if names_no_bucket(&a.location) {
            return Err(format!("[archive] location {} names no bucket", a.location));
        }
        if a.object_lock_mode.is_some() != (a.retain_days > 0) {
            return Err("[archive] object_lock_mode and retain_days (> 0) go together".into());
        }
        if a.object_lock_mode.is_some() && !s3 {
            return Err("[archive] object_lock_mode needs an s3:// location".into());
        }
        if a.multipart_bytes < 5 << 20 {
            return Err("[archive] multipart_bytes must be at least 5 MiB (S3's smallest part)".into());
        }
        if let Some(l) = &self.security_lake {
            if l.location.trim().is_empty() {
                return Err("[security_lake] location is empty".into());
            }
            if names_no_bucket(&l.location) {
                return Err(format!("[security_lake] location {} names no bucket", l.location));
            }
            if self.integrity.signing_key_file.is_some() {
                return Err("[security_lake] and [integrity] signing_key_file do not go together: the lake's \
                            objects are not the archive's to sign; sign the archive's own deployment"
                    .into());
            }
            let datasets: Vec<&str> = crate::ocsf::Class::ALL.iter().map(|c| c.dataset()).collect();
            for (dataset, source) in &l.sources {
                if !datasets.contains(&dataset.as_str()) {
                    return Err(format!(
                        "[security_lake] sources: {dataset:?} is not a dataset ({})",
                        datasets.join(", ")
                    ));
                }
                let ok = (1..=64).contains(&source.len())
                    && source.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(format!(
                        "[security_lake] sources: {source:?} is not a custom source name ([A-Za-z0-9_-], 1-64)"
                    ));
                }
            }
        }
        let b = &self.batch;
        if b.max_events == 0 || b.max_bytes == 0 || b.max_age_s == 0 || b.max_buffer_bytes == 0 {
            return Err("[batch] limits must be positive".into());
        }
        Ok(())
    }
}

/// `s3://` with nothing before the next `/`.
fn names_no_bucket(location: &str) -> bool {
    location.strip_prefix("s3://").is_some_and(|r| r.split('/').next().unwrap_or("").is_empty())
}

/// Kafka's own rule: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn valid_topic(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c = Config::parse(
            "[redaction]\ndisabled_groups = [\"jwt\"]\n[[redaction.patterns]]\nname = \"a\"\nregex = \"a_[0-9]{4}\"\n",
        )
        .unwrap();
        assert_eq!(c.redaction.disabled_groups, ["jwt"]);
        assert_eq!(c.redaction.patterns[0].name, "a");
        assert!(c.redaction.enabled);
        let e = Config::parse("[redaction]\nenabeld = false\n").unwrap_err();
        assert!(e.contains("enabeld"), "{e}");
    }

    #[test]
    fn interpolates_the_environment() {
        let env = |k: &str| match k {
            "BROKERS" => Some("k1:9092".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let got = interpolate("a = \"${BROKERS}\"\nb = \"${NOPE:-x}${EMPTY:-y}$$z\"\n# ${UNSET}\n", env).unwrap();
        assert_eq!(got, "a = \"k1:9092\"\nb = \"xy$z\"\n# ${UNSET}\n");
        let e = interpolate("x\na = \"${UNSET}\"", env).unwrap_err();
        assert!(e.contains("line 2") && e.contains("UNSET"), "{e}");
        assert!(interpolate("a = \"${BAD NAME}\"", env).is_err());
        assert!(interpolate("a = \"${OPEN", env).is_err());
    }

    #[test]
    fn service_sections_are_checked() {
        let ok = "[kafka]\nbrokers = \"b:9092\"\n[[kafka.topics]]\nname = \"ct\"\nkind = \"cloudtrail\"\n\
                  [archive]\nlocation = \"s3://bkt/p\"\nobject_lock_mode = \"COMPLIANCE\"\nretain_days = 30\n";
        let c = Config::parse(ok).unwrap();
        let k = c.kafka.unwrap();
        assert_eq!((k.group_id.as_str(), k.topics[0].kind), ("trailship", TopicKind::Cloudtrail));
        assert_eq!(c.archive.object_lock_mode, Some(LockMode::Compliance));
        for (bad, why) in [
            (ok.replace("retain_days = 30", "retain_days = 0"), "go together"),
            (ok.replace("\"ct\"", "\"c/t\""), "not a Kafka topic"),
            (ok.replace("s3://bkt/p", "/tmp/a"), "needs an s3://"),
            (ok.replace("cloudtrail", "cloudtrial"), "cloudtrial"),
            (ok.replace("s3://bkt/p", "s3:///p"), "names no bucket"),
            (format!("{ok}[security_lake]\nlocation = \"\"\n"), "location is empty"),
            (format!("{ok}[security_lake]\nlocation = \"s3://\"\n"), "names no bucket"),
            (format!("{ok}[security_lake]\nlocation = \"s3://l\"\nsources = {{ api = \"x\" }}\n"), "not a dataset"),
            (
                format!("{ok}[security_lake]\nlocation = \"s3://l\"\nsources = {{ api_activity = \"a/b\" }}\n"),
                "custom source name",
            ),
            (
                format!("{ok}[security_lake]\nlocation = \"s3://l\"\n[integrity]\nsigning_key_file = \"k\"\n"),
                "do not go together",
            ),
        ] {
            let e = Config::parse(&bad).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
