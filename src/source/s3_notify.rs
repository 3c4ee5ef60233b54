//! S3 event notifications: how CloudTrail usually reaches a log-archive
//! account. A message names objects; the service fetches them.
//!
//! Three shapes arrive on Kafka: the S3 notification itself
//! (`{"Records":[{"eventSource":"aws:s3",...}]}`), the same wrapped in an SNS
//! envelope (`{"Type":"Notification","Message":"<json>"}`), and EventBridge's
//! `Object Created` event.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde_json::Value;

/// One object a notification announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    /// Decoded (notifications URL-encode keys, with `+` for space).
    pub key: String,
    pub version_id: Option<String>,
}

/// What an announced object holds, by CloudTrail's key layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    CloudTrailLog,
    CloudTrailDigest,
    Other,
}

pub fn classify(key: &str) -> ObjectKind {
    let name = key.rsplit('/').next().unwrap_or("");
    if key.contains("/CloudTrail-Digest/") && name.ends_with(".json.gz") {
        ObjectKind::CloudTrailDigest
    } else if key.contains("/CloudTrail/") && name.ends_with(".json.gz") {
        ObjectKind::CloudTrailLog
    } else {
        ObjectKind::Other
    }
}

/// A cheap test before parsing: every shape names S3 as its source, as a
/// whole JSON string (quoted, or escape-quoted inside SNS's `Message`), so
/// the S3 ARNs in ordinary CloudTrail records do not match.
pub fn looks_like(payload: &[u8]) -> bool {
    // Asked of every message: the searchers are built once.
    static NEEDLES: LazyLock<[Finder<'static>; 5]> = LazyLock::new(|| {
        [&b"\"aws:s3\""[..], b"aws:s3\\\"", b"\"aws.s3\"", b"aws.s3\\\"", b"s3:TestEvent"].map(Finder::new)
    });
    payload.len() < 1 << 20 && NEEDLES.iter().any(|n| n.find(payload).is_some())
}

/// The objects a notification announces: `None` when `payload` is not a
/// notification; an empty list for S3's `s3:TestEvent` and for events other
/// than object creation.
pub fn parse(payload: &[u8]) -> Option<Vec<ObjectEvent>> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    from_value(&v, 0)
}

fn from_value(v: &Value, depth: u8) -> Option<Vec<ObjectEvent>> {
    if v.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let inner: Value = serde_json::from_str(v.get("Message")?.as_str()?).ok()?;
        return from_value(&inner, 1);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Some(Vec::new());
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let d = v.get("detail")?;
        if v.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
            return Some(Vec::new());
        }
        return Some(vec![ObjectEvent {
            bucket: d.get("bucket")?.get("name")?.as_str()?.to_owned(),
            // EventBridge keys are not URL-encoded.
            key: d.get("object")?.get("key")?.as_str()?.to_owned(),
            version_id: d.get("object")?.get("version-id").and_then(Value::as_str).map(str::to_owned),
        }]);
    }
    let records = v.get("Records")?.as_array()?;
    if records.is_empty() || !records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:s3")) {
        return None;
    }
    let mut out = Vec::new();
    for r in records {
        if !r.get("eventName").and_then(Value::as_str).is_some_and(|n| n.starts_with("ObjectCreated:")) {
            continue;
        }
        let s3 = r.get("s3")?;
        out.push(ObjectEvent {
            bucket: s3.get("bucket")?.get("name")?.as_str()?.to_owned(),
            key: url_decode(s3.get("object")?.get("key")?.as_str()?),
            version_id: s3.get("object")?.get("versionId").and_then(Value::as_str).map(str::to_owned),
        });
    }
    Some(out)
}

/// S3 notification keys are form-encoded: `+` is a space, `%XX` a byte.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T1005Z_abc.json.gz";

    #[test]
    fn s3_sns_and_eventbridge_shapes() {
        let s3 = format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
                "s3":{{"bucket":{{"name":"trail"}},"object":{{"key":"{}","versionId":"v1","size":10}}}}}},
              {{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{{"bucket":{{"name":"trail"}},"object":{{"key":"x"}}}}}}]}}"#,
            LOG.replace('_', "%5F")
        );
        let want = vec![ObjectEvent { bucket: "trail".into(), key: LOG.into(), version_id: Some("v1".into()) }];
        assert!(looks_like(s3.as_bytes()));
        assert!(!looks_like(br#"{"eventSource":"s3.amazonaws.com","resources":[{"ARN":"arn:aws:s3:::bucket"}]}"#));
        assert_eq!(parse(s3.as_bytes()), Some(want.clone()));
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": s3}).to_string();
        assert_eq!(parse(sns.as_bytes()), Some(want.clone()));
        let eb = serde_json::json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "trail"}, "object": {"key": LOG, "version-id": "v1"}}})
        .to_string();
        assert_eq!(parse(eb.as_bytes()), Some(want));
        assert_eq!(parse(br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"trail"}"#), Some(vec![]));
        // A CloudTrail envelope is not a notification, even when it mentions S3.
        assert_eq!(parse(br#"{"Records":[{"eventSource":"s3.amazonaws.com","eventName":"PutObject"}]}"#), None);
        assert_eq!(url_decode("a+b%2Fc%zz%4"), "a b/c%zz%4");
        assert_eq!(url_decode("%é%"), "%é%");
    }

    #[test]
    fn keys_by_cloudtrail_layout() {
        assert_eq!(classify(LOG), ObjectKind::CloudTrailLog);
        assert_eq!(
            classify(
                "AWSLogs/1/CloudTrail-Digest/us-east-1/2026/11/20/1_CloudTrail-Digest_us-east-1_t_us-east-1_20261120T100000Z.json.gz"
            ),
            ObjectKind::CloudTrailDigest
        );
        assert_eq!(classify("AWSLogs/1/CloudTrail-Insight/x.json.gz"), ObjectKind::Other);
        assert_eq!(classify("notes.txt"), ObjectKind::Other);
    }
}
