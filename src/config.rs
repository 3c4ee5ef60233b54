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
}

/// `[integrity]`: trailship's own digest chain over the archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrityConfig {
    /// PKCS#8 private key (RSA or Ed25519, PEM or DER); unset: the archive is not signed.
    pub signing_key_file: Option<PathBuf>,
    /// Names this writer's chain (`_digests/<writer_id>/`): one per worker.
    pub writer_id: String,
    /// A digest at least this often while running, and one at the end of a run.
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

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.into(), source: e })?;
        Self::parse(&text).map_err(|detail| ConfigError::Parse { path: path.into(), detail })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
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
}
