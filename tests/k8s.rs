//! Kubernetes API-server audit events → OCSF API Activity (6003): real events
//! captured by the Falco project, EKS samples, and the envelopes they travel
//! in (the webhook backend's EventList, CloudWatch Logs subscriptions).

mod common;

use std::io::Write;

use common::*;
use serde_json::{Value, json};
use trailship::pipeline::Options;

fn event(audit_id: &str, stage: &str, extra: Value) -> Value {
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": stage, "requestURI": "/api/v1/namespaces/default/pods", "verb": "list",
        "user": {"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "u-1",
                 "groups": ["system:serviceaccounts", "system:authenticated"]},
        "sourceIPs": ["10.0.0.7", "10.0.0.8"], "userAgent": "kube-controller-manager/v1.29.0",
        "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.000001Z", "stageTimestamp": "2024-05-01T10:00:00.250000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding"}
    });
    if let (Value::Object(e), Value::Object(x)) = (&mut e, extra) {
        e.extend(x);
    }
    e
}

#[test]
fn falco_capture_maps_field_by_field() {
    let dir = TempDir::new("k8s-falco");
    let s = run(dir.path(), &[fixture("k8s-audit/falco")]);
    assert_eq!(s.records_read, 52);
    assert_eq!(s.rows_total(), 51);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "unrecognised_source");
    assert!(dead[0]["source"]["file"].as_str().unwrap().ends_with("fal_01_003.json"));

    let rows = rows(dir.path(), "api_activity");
    let r = find_by_uid(&rows, "55a81824-ab56-46c5-8b02-96336f5e78d7:ResponseComplete");
    // create_secret.json
    for (path, want) in [
        ("class_uid", json!(6003)),
        ("activity_id", json!(1)),
        ("activity_name", json!("Create")),
        ("type_uid", json!(600301)),
        ("status_id", json!(1)),
        ("status_code", json!("201")),
        ("time", json!(1_587_491_825_548i64)),
        ("api.operation", json!("create")),
        ("api.version", json!("v1")),
        ("api.request.uid", json!("55a81824-ab56-46c5-8b02-96336f5e78d7")),
        ("metadata.correlation_uid", json!("55a81824-ab56-46c5-8b02-96336f5e78d7")),
        ("metadata.event_code", json!("ResponseComplete")),
        ("metadata.product.name", json!("Kubernetes")),
        ("metadata.version", json!("1.8.0")),
        ("actor.user.name", json!("minikube-user")),
        ("actor.user.type_id", json!(1)),
        ("actor.user.groups", json!([{"name": "system:masters"}, {"name": "system:authenticated"}])),
        ("actor.authorizations", json!([{"decision": "allow"}])),
        ("src_endpoint.ip", json!("192.168.64.1")),
        ("http_request.url.path", json!("/api/v1/namespaces/default/secrets")),
        ("http_request.user_agent", json!("kubectl/v1.17.3 (darwin/amd64) kubernetes/06ad960")),
        ("resources", json!([{"type": "secrets", "name": "example-secret", "namespace": "default"}])),
        ("metadata.profiles", json!(["datetime"])),
    ] {
        assert_eq!(get(r, path), Some(&want), "{path} in {r}");
    }
    // Not EKS: no cloud profile, no cloud object.
    assert!(get(r, "cloud").is_none());

    // exec_pod.json: a subresource, a stage other than ResponseComplete, 101 Switching Protocols.
    let exec = rows.iter().find(|r| r["resources"][0]["type"] == "pods/exec").expect("the exec event");
    assert_eq!(exec["metadata"]["event_code"], "ResponseStarted");
    assert_eq!(exec["status_id"], 1);
    assert_eq!(exec["actor"]["user"]["name"], "minikube-user");
}

#[test]
fn security_lake_eks_samples_have_invalid_times_and_are_dead_letters() {
    // Their timestamps are anonymised to `2000-00-00T00:00:00Z`; Security Lake
    // wrote `time: 0` for them. A zero time would be a lie: dead letters.
    let dir = TempDir::new("k8s-eks-sl");
    let s = run(dir.path(), &[fixture("k8s-audit/eks")]);
    assert_eq!(s.rows_total(), 0);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.iter().map(|d| d["reason"].as_str().unwrap()).collect::<Vec<_>>(), ["invalid_timestamp"; 2]);
}

#[test]
fn eks_identity_and_secrets() {
    let dir = TempDir::new("k8s-eks");
    let e = event(
        "eks-1",
        "ResponseComplete",
        json!({
            "verb": "create", "level": "RequestResponse",
            "user": {"username": "kubernetes-admin", "uid": "aws-iam-authenticator:111122223333:AROAEXAMPLE",
                     "groups": ["system:masters"],
                     "extra": {"accessKeyId": ["ASIAEXAMPLEKEYID0001"], "arn": ["arn:aws:sts::111122223333:assumed-role/Admin/alice"],
                               "canonicalArn": ["arn:aws:iam::111122223333:role/Admin"], "principalId": ["AROAEXAMPLE"],
                               "sessionName": ["alice"]}},
            "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
            "requestObject": {"kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                    "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"c3VwZXJzZWNyZXQ=\"},\"kind\":\"Secret\"}"}},
                "data": {"password": "c3VwZXJzZWNyZXQ="}, "stringData": {"token": "plain-text-token"}},
            "responseStatus": {"metadata": {}, "code": 201}
        }),
    );
    let input = dir.write("in/audit.log", format!("{e}\n").as_bytes());
    let out = dir.path().join("out");
    run_with(Options { out: out.clone(), raw_data: true, ..Default::default() }, &[input]);
    let rows = rows(&out, "api_activity");
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["metadata"]["product"]["name"], "Amazon EKS");
    assert_eq!(r["metadata"]["profiles"], json!(["cloud", "datetime"]));
    assert_eq!(r["cloud"]["account"]["uid"], "111122223333", "the account, not the ARN (SL 1.1.0 defect)");
    assert_eq!(r["actor"]["session"]["credential_uid"], "ASIAEXAMPLEKEYID0001");
    assert_eq!(r["actor"]["session"]["issuer"], "arn:aws:iam::111122223333:role/Admin");
    assert_eq!(r["actor"]["user"]["uid_alt"], "AROAEXAMPLE");
    let all = r.to_string();
    for secret in ["c3VwZXJzZWNyZXQ=", "plain-text-token"] {
        assert!(!all.contains(secret), "{secret} reached the archive: {all}");
    }
    assert_eq!(r["trailship"]["redacted_types"], json!(["kubernetes_secret"]));
    // The rest of the object is kept.
    assert!(r["api"]["request"]["data"].as_str().unwrap().contains(r#""name":"db""#));
}

#[test]
fn stages_are_separate_rows_tied_by_audit_id() {
    let dir = TempDir::new("k8s-stages");
    let body = format!(
        "{}\n{}\n",
        event("a-1", "RequestReceived", json!({"responseStatus": null})),
        event("a-1", "ResponseComplete", json!({}))
    );
    let input = dir.write("in/audit.log", body.as_bytes());
    run(dir.path(), &[input]);
    let rows = rows(dir.path(), "api_activity");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["metadata"]["correlation_uid"] == "a-1"));
    let mut uids: Vec<_> = rows.iter().map(|r| r["metadata"]["uid"].as_str().unwrap().to_string()).collect();
    uids.sort();
    assert_eq!(uids, ["a-1:RequestReceived", "a-1:ResponseComplete"]);
    let received = find_by_uid(&rows, "a-1:RequestReceived");
    assert_eq!(received["status_id"], 0, "no response yet: unknown status");
    // The service account is a service; further source IPs stay in unmapped.
    assert_eq!(received["actor"]["user"]["type_id"], 4);
    let unmapped: Value = serde_json::from_str(received["unmapped"].as_str().unwrap()).unwrap();
    assert_eq!(unmapped["sourceIPs"], json!(["10.0.0.7", "10.0.0.8"]));
    assert_eq!(unmapped["level"], "Metadata");
}

#[test]
fn event_list_items_are_records() {
    let dir = TempDir::new("k8s-list");
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": [event("l-1", "ResponseComplete", json!({})), event("l-2", "ResponseComplete", json!({})),
                  event("l-3", "ResponseComplete", json!({"stageTimestamp": "yesterday"}))]});
    let empty = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []});
    let input = dir.write("in/webhook.json", format!("{list}\n{empty}\n").as_bytes());
    let s = run(dir.path(), &[input]);
    assert_eq!(s.records_read, 4);
    assert_eq!(s.rows_total(), 2);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["reason"], "invalid_timestamp");
    assert_eq!(dead[0]["source"]["sub_index"], 2);
    assert!(dead[0]["input"].as_str().unwrap().contains("l-3"), "the item, not the whole list");
    assert_eq!(dead[1]["reason"], "empty_envelope");
}

#[test]
fn cloudwatch_logs_subscription_envelope() {
    let dir = TempDir::new("k8s-cwl");
    let envelope = json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333",
        "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-0123",
        "subscriptionFilters": ["to-trailship"],
        "logEvents": [
            {"id": "1", "timestamp": 1714557600000i64, "message": event("c-1", "ResponseComplete", json!({})).to_string()},
            {"id": "2", "timestamp": 1714557600001i64, "message": "{not json"},
            {"id": "3", "timestamp": 1714557600002i64, "message": event("c-3", "ResponseComplete", json!({})).to_string()}
        ]
    });
    // CloudWatch Logs delivers the envelope gzip-compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(envelope.to_string().as_bytes()).unwrap();
    let input = dir.write("in/cwl.gz", &gz.finish().unwrap());
    let s = run(dir.path(), &[input]);
    assert_eq!(s.records_read, 3);
    assert_eq!(s.rows_total(), 2);
    let rows = rows(dir.path(), "api_activity");
    find_by_uid(&rows, "c-1:ResponseComplete");
    find_by_uid(&rows, "c-3:ResponseComplete");
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "malformed_json");
    assert_eq!(dead[0]["source"]["sub_index"], 1);
    assert_eq!(dead[0]["input"], "{not json");
}

#[test]
fn forced_source_kind() {
    let dir = TempDir::new("k8s-forced");
    let mut e = event("f-1", "ResponseComplete", json!({}));
    e.as_object_mut().unwrap().remove("apiVersion");
    e.as_object_mut().unwrap().remove("kind");
    let input = dir.write("in/a.log", format!("{e}\n").as_bytes());
    // Auto cannot tell what this is; told, it maps it.
    let auto = run(&dir.path().join("auto"), std::slice::from_ref(&input));
    assert_eq!(auto.rows_total(), 0);
    let forced = run_with(
        Options {
            out: dir.path().join("forced"),
            source: trailship::normalize::SourceKind::K8sAudit,
            ..Default::default()
        },
        &[input],
    );
    assert_eq!(forced.rows_total(), 1);
}

#[test]
fn final_stage_only_filters_the_other_stages_without_dead_letters() {
    let dir = TempDir::new("k8s-final");
    let body = format!(
        "{}\n{}\n{}\n",
        event("s-1", "RequestReceived", json!({"responseStatus": null})),
        event("s-1", "ResponseStarted", json!({})),
        event("s-1", "ResponseComplete", json!({}))
    );
    let input = dir.write("in/audit.log", body.as_bytes());
    let mut opts = Options { out: dir.path().join("out"), ..Default::default() };
    opts.normalize.k8s_final_stage_only = true;
    let s = run_with(opts, &[input]);
    assert_eq!((s.records_read, s.rows_total(), s.filtered, s.dead_total()), (3, 1, 2, 0));
    let rows = rows(&dir.path().join("out"), "api_activity");
    assert_eq!(rows[0]["metadata"]["uid"], "s-1:ResponseComplete");
}
