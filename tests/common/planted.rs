//! One planted example per redaction detector type, generated here (the
//! checksummed formats are computed, not copied from anywhere).

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn checksummed(prefix: &str, body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut cs = [b'0'; 6];
    for c in cs.iter_mut().rev() {
        *c = B62[(n % 62) as usize];
        n /= 62;
    }
    format!("{prefix}{body}{}", std::str::from_utf8(&cs).unwrap())
}

fn rep(s: &str, n: usize) -> String {
    s.repeat(n / s.len() + 1)[..n].to_string()
}

/// One planted example per detector type: (expected type, text holding the secret, the secret).
pub fn planted() -> Vec<(&'static str, String, String)> {
    use base64::Engine;
    let b64u = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = format!(
        "{}.{}.{}",
        b64u(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64u(r#"{"sub":"1234567890","name":"ci","iat":1516239022}"#),
        rep("Sfl1KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", 43)
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Ym9k2V4XfakeFakeFake0123456789abcdefABCDEF\n-----END RSA PRIVATE KEY-----";
    let t = |ty: &'static str, secret: String| (ty, format!("value {secret} end"), secret);
    vec![
        t("github_token", checksummed("ghp_", &rep("aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0", 30))),
        t("github_token", checksummed("gho_", &rep("Zx8Cv7Bn6Mq5We4Rt3Yu2Io1Pa0Sd9", 30))),
        t("github_token_unverified", format!("ghs_{}", rep("abcdefABCDEF0123456789", 36))),
        t("github_fine_grained_pat", format!("github_pat_{}_{}", rep("11ABCDEFG0", 22), rep("xYz0123456789AbC", 59))),
        t("gitlab_token", format!("glpat-{}", rep("Ab1-Cd2_Ef3", 20))),
        t("gitlab_token", format!("glrt-{}", rep("Zz9Yy8Xx7", 24))),
        t("gitlab_runner_token", format!("GR1348941{}", rep("aB3dE6gH9jK2", 20))),
        t("atlassian_token", format!("ATATT3xFfGF0{}=0A1B2C3D", rep("Tn-9xQ_zR4", 180))),
        t("bitbucket_token", format!("ATBB{}", rep("aB3dE6gH9jK2", 32))),
        t("slack_token", "xoxb-263594206564-2343594206574-FGqddMF8t08v8N7Oq4i57vs1".into()),
        t("slack_app_token", format!("xapp-1-A0123456789-1234567890123-{}", rep("0a1b2c3d4e5f", 64))),
        t("slack_webhook", format!("hooks.slack.com/services/T0000AAAA/B0000BBBB/{}", rep("XyZ123abc", 24))),
        t("discord_webhook", format!("discord.com/api/webhooks/123456789012345678/{}", rep("Ab_-9xYz", 68))),
        t("stripe_key", format!("sk_live_{}", rep("4eC39HqLyjWDarjtT1zdp7dc", 24))),
        t("stripe_webhook_secret", format!("whsec_{}", rep("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLoXK", 32))),
        t("google_api_key", format!("AIza{}", rep("SyD-9tSrke72I6e0DVaBcDeF12345678", 35))),
        t("google_oauth_secret", format!("GOCSPX-{}", rep("1a2B3c4D5e6F7g8H9i0J", 28))),
        t("google_oauth_token", format!("ya29.{}", rep("a0AfH6SMBx_yz-123", 60))),
        t("azure_storage_key", format!("AccountKey={}==", rep("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6", 86))),
        t("azure_shared_access_key", format!("SharedAccessKey={}", rep("abcDEF123+/=", 44))),
        t("azure_sas_signature", format!("sig={}", rep("X%2Fabc123DEF456ghi789", 44))),
        t("aws_secret_access_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY".into()),
        t("aws_bedrock_key", format!("ABSK{}", rep("QmVkcm9ja0FQSUtleS1", 120))),
        t("digitalocean_token", format!("dop_v1_{}", rep("0123456789abcdef", 64))),
        t("vault_token", format!("hvs.{}", rep("CAESIJlAbCdEf_gH-", 95))),
        t("heroku_token", format!("HRKU-AA{}", rep("aB3_dE6-gH9", 58))),
        t("databricks_token", format!("dapi{}", rep("0123456789abcdef", 32))),
        t("npm_token", checksummed("npm_", &rep("Qw3Er4Ty5Ui6Op7As8Df9Gh0Jk", 30))),
        t("pypi_token", format!("pypi-AgEIcHlwaS5vcmc{}", rep("CJDk5Y2U0YTEt_-", 60))),
        t("docker_hub_token", format!("dckr_pat_{}", rep("aB3dE6gH9jK2mN5", 27))),
        t(
            "sendgrid_key",
            format!(
                "SG.{}.{}",
                rep("ngeVfQFYQlKU0ufo8x5d1A", 22),
                rep("TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr", 43)
            ),
        ),
        t("twilio_api_key", format!("SK{}", rep("0123456789abcdef", 32))),
        t("openai_key", format!("sk-proj-{}", rep("abcDEF123_-", 60))),
        t("openai_key", format!("sk-{}T3BlbkFJ{}", rep("abc123DEF456ghi789JK", 20), rep("xyz987WVU654tsr321QP", 20))),
        t("anthropic_key", format!("sk-ant-api03-{}AA", rep("Ab9_xY8-", 93))),
        t("huggingface_token", format!("hf_{}", rep("AbCdEfGhIjKlMnOpQr", 34))),
        t("shopify_token", format!("shpat_{}", rep("0123456789abcdef", 32))),
        t("grafana_token", format!("glsa_{}_{}", rep("AbC123xYz", 32), rep("0a1b2c3d", 8))),
        t("grafana_cloud_token", format!("glc_{}", rep("eyJvIjoiMTIzNCIsIm4iOiJ", 80))),
        t("grafana_api_key", format!("eyJrIjoi{}", rep("T0tQdTdGWlpVQ2NvZ2dEZ", 60))),
        t("new_relic_key", format!("NRAK-{}", rep("ABCDEFGHIJ0123456789", 27))),
        t("linear_key", format!("lin_api_{}", rep("aB3dE6gH9jK2mN5", 40))),
        t("postman_key", format!("PMAK-{}-{}", rep("0123456789abcdef", 24), rep("fedcba9876543210", 34))),
        t("doppler_token", format!("dp.pt.{}", rep("aB3dE6gH9jK2mN5", 43))),
        t("sentry_token", format!("sntrys_{}", rep("eyJpYXQiOjE2ODc", 60))),
        t("mailgun_key", format!("key-{}", rep("0123456789abcdef", 32))),
        t("onepassword_token", format!("ops_eyJ{}", rep("zaWduSW5BZGRyZXNzIjoi", 120))),
        t("age_secret_key", format!("AGE-SECRET-KEY-1{}", rep("QYZ3WS7XN8K2", 58))),
        ("private_key", format!("key: {pem}"), pem.to_string()),
        t("jwt", jwt),
        ("url_password", "postgres://app:S3cretPassw0rd@db.internal:5432/prod".into(), "S3cretPassw0rd".into()),
        (
            "connection_string_password",
            "Server=db;Database=app;User Id=u;Password=Pa55w0rd!x;".into(),
            "Pa55w0rd!x".into(),
        ),
        ("http_basic_auth", "Authorization: Basic dXNlcjpzM2NyZXQtcGFzcw==".into(), "dXNlcjpzM2NyZXQtcGFzcw==".into()),
        (
            "http_bearer_token",
            "Authorization: Bearer abcdefghijklmnop0123456789XYZ".into(),
            "abcdefghijklmnop0123456789XYZ".into(),
        ),
    ]
}
