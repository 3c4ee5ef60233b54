//! A local CloudTrail API speaking the real wire protocol (JSON 1.1 over
//! HTTP, `X-Amz-Target: [...]CloudTrail_20131101.<Operation>`) for the two calls
//! validation makes. No local server implements CloudTrail's ListPublicKeys,
//! so this one stands in, as the project's rules allow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use super::digests::{ARN, BUCKET, keys};

#[derive(Debug, Clone)]
pub struct Request {
    pub target: String,
    pub body: serde_json::Value,
    /// The region in the SigV4 credential scope.
    pub region: String,
}

pub struct FakeCloudTrail {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

/// Serves until the test process ends. `published`: which test keys
/// ListPublicKeys returns, one per page (so pagination is exercised).
pub fn start(published: Vec<usize>) -> FakeCloudTrail {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (seen, published) = (seen.clone(), published.clone());
            std::thread::spawn(move || serve(conn, &seen, &published));
        }
    });
    FakeCloudTrail { url, requests }
}

fn serve(conn: std::net::TcpStream, seen: &Mutex<Vec<Request>>, published: &[usize]) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            headers.push(line.trim_end().to_owned());
        }
        let header = |name: &str| {
            headers.iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let target = header("x-amz-target").unwrap_or_default();
        let region = header("authorization")
            .and_then(|a| a.split("Credential=").nth(1).and_then(|c| c.split('/').nth(2)).map(str::to_owned))
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        seen.lock().unwrap().push(Request { target: target.clone(), body: body.clone(), region });
        // The Rust SDK sends `CloudTrail_20131101.Op`; botocore's newer model
        // prefixes the service's full shape name.
        let (status, answer) = match target.rsplit('.').next().unwrap_or_default() {
            "ListPublicKeys" => (200, list_public_keys(&body, published)),
            "DescribeTrails" => (200, describe_trails()),
            _ => (400, serde_json::json!({"__type": "UnknownOperationException", "message": target})),
        };
        let answer = answer.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: fake\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(answer.as_bytes())).is_err() {
            return;
        }
    }
}

fn list_public_keys(req: &serde_json::Value, published: &[usize]) -> serde_json::Value {
    let page: usize = req["NextToken"].as_str().and_then(|t| t.strip_prefix("page-")?.parse().ok()).unwrap_or(0);
    let Some(&k) = published.get(page) else { return serde_json::json!({ "PublicKeyList": [] }) };
    let key = &keys()[k];
    let mut out = serde_json::json!({
        "PublicKeyList": [{
            "Value": base64::engine::general_purpose::STANDARD.encode(&key.pkcs1_der),
            "ValidityStartTime": 1.7e9,
            "ValidityEndTime": 1.9e9,
            "Fingerprint": key.fingerprint,
        }]
    });
    if page + 1 < published.len() {
        out["NextToken"] = format!("page-{}", page + 1).into();
    }
    out
}

fn describe_trails() -> serde_json::Value {
    serde_json::json!({
        "trailList": [{
            "Name": "audit",
            "S3BucketName": BUCKET,
            "TrailARN": ARN,
            "HomeRegion": "us-east-1",
            "IsMultiRegionTrail": true,
            "IsOrganizationTrail": false,
            "LogFileValidationEnabled": true
        }]
    })
}
