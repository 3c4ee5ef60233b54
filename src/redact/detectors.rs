//! Token detectors: literal-led byte patterns, one pass, verified in code.
//!
//! Every pattern starts with a distinctive literal so the regex engine's
//! literal prefilter (Teddy) skips text without candidates at several GB/s;
//! anything needing context or a checksum is checked after the match, on the
//! matched bytes only. Patterns are described here in our own words from the
//! token formats' public documentation (see `specs` in the project notes).

use base64::Engine;

/// What a detector found: the byte range of the secret within the haystack
/// and the type name used in the marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub ty: &'static str,
}

pub(crate) struct Detector {
    pub ty: &'static str,
    pub group: &'static str,
    pub pattern: &'static str,
    /// Given the match, returns the secret's range within it and the type
    /// (possibly refined, e.g. `_unverified`), or `None` to reject the match.
    pub verify: Verify,
}

/// `(match bytes, type)` → the secret's range within the match, and its type.
pub(crate) type Check = fn(&[u8], &'static str) -> Option<(usize, usize, &'static str)>;

/// `(text, match start, match end, type)` → the secret's absolute range.
pub(crate) type TextCheck = fn(&[u8], usize, usize, &'static str) -> Option<(usize, usize, &'static str)>;

/// How a match is confirmed: on the matched bytes, or (rarely) by looking
/// past the match in the whole text.
#[derive(Clone, Copy)]
pub(crate) enum Verify {
    Match(Check),
    Text(TextCheck),
}

fn whole(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    Some((0, m.len(), ty))
}

const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// GitHub / npm: the last 6 characters are the base62 CRC32 of the body.
fn crc32_base62_ok(body: &[u8], check: &[u8]) -> bool {
    let mut n = crc32fast::hash(body) as u64;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    n == 0 && out == check
}

fn github_classic(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let body = &m[4..m.len() - 6];
    // A prefix-and-shape match with a bad checksum is still redacted: pasted
    // and truncated tokens break checksums; the type says it is unverified.
    let ty = if crc32_base62_ok(body, &m[m.len() - 6..]) { ty } else { "github_token_unverified" };
    Some((0, m.len(), ty))
}

fn npm(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let body = &m[4..m.len() - 6];
    let ty = if crc32_base62_ok(body, &m[m.len() - 6..]) { ty } else { "npm_token_unverified" };
    Some((0, m.len(), ty))
}

fn b64url_json(seg: &[u8]) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg.strip_suffix(b"=").unwrap_or(seg)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn jwt(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let mut parts = m.split(|b| *b == b'.');
    let header = b64url_json(parts.next()?)?;
    // A JOSE header names its algorithm; plain base64 JSON does not.
    header.get("alg")?;
    Some((0, m.len(), ty))
}

/// From the BEGIN line to the matching END line (or the end of the text).
fn private_key(text: &[u8], start: usize, end: usize, ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let rest = &text[end..];
    let stop = match memchr::memmem::find(rest, b"-----END") {
        Some(i) => {
            let tail = &rest[i + 8..];
            let close = memchr::memmem::find(tail, b"-----").map_or(tail.len(), |j| j + 5);
            end + i + 8 + close
        }
        None => text.len(),
    };
    Some((start, stop, ty))
}

/// `scheme://user:password@host`: only the password is secret.
fn url_credentials(m: &[u8], _ty: &'static str) -> Option<(usize, usize, &'static str)> {
    // m = "://user:password@"
    let rest = &m[3..m.len() - 1];
    let colon = rest.iter().position(|b| *b == b':')?;
    let pass = &rest[colon + 1..];
    if pass.is_empty() || pass.starts_with(b"[REDACTED") || pass.contains(&b'$') && pass.len() < 4 {
        return None;
    }
    let start = 3 + colon + 1;
    Some((start, start + pass.len(), "url_password"))
}

/// `Key=value` forms (Azure connection strings, ADO.NET passwords): the value.
fn after_equals(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let eq = m.iter().position(|b| *b == b'=')?;
    let mut end = m.len();
    while end > eq + 1 && m[end - 1] == b';' {
        end -= 1;
    }
    (end > eq + 1).then_some((eq + 1, end, ty))
}

/// `name": "value` style contexts: the last run of key characters.
fn aws_secret_in_context(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let start = m.len().checked_sub(40)?;
    let secret = &m[start..];
    // 40 hex characters are a SHA-1, not a key (trufflehog learned this too).
    if secret.iter().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((start, m.len(), ty))
}

fn azure_identifiable(text: &[u8], start: usize, end: usize, ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let key_start = start.checked_sub(52)?;
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    text[key_start..start].iter().all(is_b64).then_some((key_start, end, ty))
}

fn http_basic(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let start = 6; // "Basic "
    let decoded = base64::engine::general_purpose::STANDARD.decode(&m[start..]).ok()?;
    // Basic credentials are `user:password`.
    decoded.contains(&b':').then_some((start, m.len(), ty))
}

fn after_space(m: &[u8], ty: &'static str) -> Option<(usize, usize, &'static str)> {
    let sp = m.iter().position(|b| *b == b' ')?;
    Some((sp + 1, m.len(), ty))
}

macro_rules! det {
    ($ty:expr, $group:expr, $pat:expr) => {
        Detector { ty: $ty, group: $group, pattern: $pat, verify: Verify::Match(whole) }
    };
    ($ty:expr, $group:expr, $pat:expr, $verify:expr) => {
        Detector { ty: $ty, group: $group, pattern: $pat, verify: Verify::Match($verify) }
    };
    ($ty:expr, $group:expr, $pat:expr, text $verify:expr) => {
        Detector { ty: $ty, group: $group, pattern: $pat, verify: Verify::Text($verify) }
    };
}

/// The built-in token detectors. Each pattern begins with a literal.
pub(crate) fn builtin() -> Vec<Detector> {
    vec![
        det!("github_token", "vcs", r"(?:ghp|gho|ghu|ghs|ghr)_[0-9A-Za-z]{30,}", github_classic),
        det!("github_fine_grained_pat", "vcs", r"github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}"),
        det!("gitlab_token", "vcs", r"glpat-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z]{2}\.[0-9a-z]{7})?"),
        det!(
            "gitlab_token",
            "vcs",
            r"(?:glptt|gldt|glrt|glrtr|glcbt|glft|glimt|glagent|gloas|glsoat|glffct|glwt)-[0-9A-Za-z_-]{20,}"
        ),
        det!("gitlab_runner_token", "vcs", r"GR1348941[0-9A-Za-z_-]{20}"),
        det!("gitlab_session", "vcs", r"_gitlab_session=[0-9a-f]{32}", after_equals),
        // The trailing `=` is often escaped (`\=`, `%3D`) where tokens are pasted.
        det!("atlassian_token", "vcs", r"(?:ATATT3|ATCTT3)[0-9A-Za-z_=%\\-]{150,}"),
        det!("bitbucket_token", "vcs", r"ATBB[0-9A-Za-z]{32}"),
        det!("slack_token", "chat", r"xox[abeprs]-[0-9A-Za-z-]{10,}"),
        det!("slack_app_token", "chat", r"xapp-[0-9]-[0-9A-Za-z]{8,}-[0-9]{8,}-[0-9a-z]{32,}"),
        det!("slack_webhook", "chat", r"hooks\.slack\.com/(?:services|workflows|triggers)/[0-9A-Za-z_/+-]{20,}"),
        det!("discord_webhook", "chat", r"discord(?:app)?\.com/api/webhooks/[0-9]{6,}/[0-9A-Za-z_-]{40,}"),
        det!("stripe_key", "payments", r"(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{10,}"),
        det!("stripe_webhook_secret", "payments", r"whsec_[0-9A-Za-z]{32,}"),
        det!("google_api_key", "cloud", r"AIza[0-9A-Za-z_-]{35}"),
        det!("google_oauth_secret", "cloud", r"GOCSPX-[0-9A-Za-z_-]{28}"),
        det!("google_oauth_token", "cloud", r"ya29\.[0-9A-Za-z_-]{20,}"),
        det!("azure_storage_key", "cloud", r"AccountKey=[0-9A-Za-z+/]{86}==", after_equals),
        det!("azure_shared_access_key", "cloud", r"SharedAccessKey=[0-9A-Za-z+/=]{40,}", after_equals),
        det!("azure_sas_signature", "cloud", r"sig=[0-9A-Za-z%+/=]{40,}", after_equals),
        // Identifiable Azure keys carry a fixed signature 52 characters in.
        det!("azure_storage_key", "cloud", r"JQQJ9[9DH][0-9A-Za-z+/]{20,40}={0,2}", text azure_identifiable),
        det!(
            "aws_secret_access_key",
            "cloud",
            r#"(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY|secretAccessKey|SecretAccessKey|aws_secret_key|AWS_SECRET_KEY)["'\\]{0,2}\s{0,3}[:=]\s{0,3}["'\\]{0,2}[0-9A-Za-z/+]{40}"#,
            aws_secret_in_context
        ),
        det!("aws_bedrock_key", "cloud", r"ABSK[0-9A-Za-z+/=]{100,}"),
        det!("aws_bedrock_key", "cloud", r"bedrock-api-key-[0-9A-Za-z+/=]{20,}"),
        det!("digitalocean_token", "cloud", r"do[opr]_v1_[0-9a-f]{64}"),
        det!("vault_token", "cloud", r"hv[sb]\.[0-9A-Za-z_-]{90,}"),
        det!("heroku_token", "cloud", r"HRKU-[0-9A-Za-z_-]{30,60}"),
        det!("databricks_token", "cloud", r"dapi[0-9a-f]{32}(?:-[0-9])?"),
        det!("npm_token", "packages", r"npm_[0-9A-Za-z]{36}", npm),
        det!("pypi_token", "packages", r"pypi-AgEIcHlwaS5vcmc[0-9A-Za-z_-]{50,}"),
        det!("docker_hub_token", "packages", r"dckr_(?:pat|oat)_[0-9A-Za-z_-]{27,32}"),
        det!("sendgrid_key", "saas", r"SG\.[0-9A-Za-z_-]{16,32}\.[0-9A-Za-z_-]{16,64}"),
        det!("twilio_api_key", "saas", r"SK[0-9a-f]{32}"),
        det!("openai_key", "ai", r"sk-(?:proj-|svcacct-|admin-)?[0-9A-Za-z_-]{20,}T3BlbkFJ[0-9A-Za-z_-]{20,}"),
        det!("openai_key", "ai", r"sk-proj-[0-9A-Za-z_-]{40,}"),
        det!("anthropic_key", "ai", r"sk-ant-(?:api|admin)[0-9]{2}-[0-9A-Za-z_-]{80,}"),
        det!("huggingface_token", "ai", r"hf_[A-Za-z]{34}"),
        det!("shopify_token", "saas", r"shp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}"),
        det!("grafana_token", "saas", r"glsa_[0-9A-Za-z]{32}_[0-9a-fA-F]{8}"),
        det!("grafana_cloud_token", "saas", r"glc_[0-9A-Za-z+/]{32,}={0,2}"),
        det!("grafana_api_key", "saas", r"eyJrIjoi[0-9A-Za-z+/]{40,}={0,2}"),
        det!("new_relic_key", "saas", r"(?:NRAK|NRII|NRJS)-[0-9A-Za-z]{19,32}"),
        det!("linear_key", "saas", r"lin_api_[0-9A-Za-z]{40}"),
        det!("postman_key", "saas", r"PMAK-[0-9a-f]{24}-[0-9a-f]{34}"),
        det!("postman_key", "saas", r"PMAT-[0-9A-Z]{26}"),
        det!("doppler_token", "saas", r"dp\.pt\.[0-9A-Za-z]{43}"),
        det!("sentry_token", "saas", r"sntry[su]_[0-9A-Za-z_=+/-]{40,}"),
        det!("mailgun_key", "saas", r"key-[0-9a-f]{32}"),
        det!("onepassword_token", "saas", r"ops_eyJ[0-9A-Za-z+/=_-]{100,}"),
        det!("age_secret_key", "crypto", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
        // The block runs to its END line, or to the end of the value.
        det!("private_key", "crypto", r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----", text private_key),
        det!("jwt", "jwt", r"eyJ[0-9A-Za-z_-]{8,}\.eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}", jwt),
        // Unbounded (the engine is linear-time): a bounded run would leave the
        // tail of a long password in clear.
        det!("url_password", "url", r"://[^\s:/@?#\x22'\\]+:[^\s/@\x22'\\]+@", url_credentials),
        det!(
            "connection_string_password",
            "url",
            r"(?:Password|password|PASSWORD|Pwd|pwd|PWD)=[^;\s\x22'\\]+;?",
            after_equals
        ),
        det!("http_basic_auth", "http_auth", r"Basic [0-9A-Za-z+/]{8,}={0,2}", http_basic),
        det!("http_bearer_token", "http_auth", r"Bearer [0-9A-Za-z._~+/-]{20,}=*", after_space),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_checksum() {
        // CredSweeper's fixture: a 31-character body (lengths vary; never hard-code 30).
        assert!(crc32_base62_ok(b"0000000000000000000000000000000", b"4WZ4EQ"));
        assert!(!crc32_base62_ok(b"0000000000000000000000000000001", b"4WZ4EQ"));
    }

    #[test]
    fn every_pattern_starts_with_a_literal() {
        for d in builtin() {
            let first = d.pattern.as_bytes()[0];
            assert!(
                first.is_ascii_alphanumeric() || matches!(first, b'-' | b':' | b'(' | b'_'),
                "{} starts with a class: {}",
                d.ty,
                d.pattern
            );
            assert!(!d.pattern.starts_with("(?:[") && !d.pattern.starts_with('['), "{}", d.ty);
        }
    }
}
