//! GitLab webhook bodies → OCSF API Activity with the `change` columns.

mod common;

use common::*;
use serde_json::{Value, json};

fn body(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("gitlab-webhooks/{name}.json"))).unwrap()).unwrap()
}

fn normalise(name: &str, lines: &[Value]) -> Vec<Value> {
    let dir = TempDir::new(name);
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let input = dir.write("in/hooks.ndjson", text.as_bytes());
    let s = run(&dir.path().join("out"), &[input]);
    assert_eq!(s.dead_total(), 0, "{:?}", dead_letters(&dir.path().join("out")));
    rows(&dir.path().join("out"), "api_activity")
}

#[test]
fn every_sample_becomes_one_row() {
    let dir = TempDir::new("gl-all");
    let s = run(dir.path(), &[fixture("gitlab-webhooks")]);
    assert_eq!((s.records_read, s.rows_total()), (10, 10), "{:?}", dead_letters(dir.path()));
    let rows = rows(dir.path(), "api_activity");
    let mut ops: Vec<_> = rows.iter().map(|r| r["api"]["operation"].as_str().unwrap().to_string()).collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            "build.created",
            "build.success",
            "deployment.success",
            "merge_request.open",
            "note.create",
            "pipeline.success",
            "push",
            "release.create",
            "tag_push",
            "user_add_to_group"
        ]
    );
    for r in &rows {
        assert_eq!(r["api"]["service"]["name"], "gitlab");
        assert_eq!(r["change"]["vcs"], "gitlab");
    }
}

#[test]
fn merge_request_fields_and_three_time_shapes() {
    let rows = normalise("gl-mr", &[body("merge_request"), body("pipeline"), body("deployment")]);
    let mr = rows.iter().find(|r| r["metadata"]["event_code"] == "merge_request").unwrap();
    for (path, want) in [
        ("activity_id", json!(1)),
        ("time", json!(1_386_091_414_000i64)),
        ("actor.user.name", json!("user1")),
        ("change.number", json!(1)),
        ("change.head_ref", json!("ms-viewport")),
        ("change.base_ref", json!("master")),
        ("change.requested_reviewers", json!(["user1"])),
        ("change.is_merged", json!(false)),
    ] {
        assert_eq!(get(mr, path), Some(&want), "{path}");
    }
    let pipeline = rows.iter().find(|r| r["metadata"]["event_code"] == "pipeline").unwrap();
    assert_eq!(pipeline["time"], 1_471_015_589_000i64, "`2016-08-12 15:26:29 UTC`");
    assert_eq!(pipeline["status_id"], 1);
    let dep = rows.iter().find(|r| r["metadata"]["event_code"] == "deployment").unwrap();
    assert_eq!(dep["time"], 1_619_639_400_000i64, "`2021-04-28 21:50:00 +0200`");
    assert_eq!(dep["change"]["environment"], "staging");
}

#[test]
fn approvals_and_merges() {
    let mut approved_by_author = body("merge_request");
    approved_by_author["object_attributes"]["action"] = json!("approved");
    approved_by_author["user"]["id"] = approved_by_author["object_attributes"]["author_id"].clone();
    let mut approved_by_other = body("merge_request");
    approved_by_other["object_attributes"]["action"] = json!("approved");
    approved_by_other["user"]["id"] = json!(424242);
    approved_by_other["user"]["username"] = json!("reviewer2");
    let mut merged = body("merge_request");
    merged["object_attributes"]["action"] = json!("merge");
    merged["object_attributes"]["state"] = json!("merged");
    let rows = normalise("gl-approve", &[approved_by_author, approved_by_other, merged]);
    let selfie = rows.iter().find(|r| r["change"]["approver"] == "user1").unwrap();
    assert_eq!(selfie["change"]["is_self_approved"], true);
    let other = rows.iter().find(|r| r["change"]["approver"] == "reviewer2").unwrap();
    assert_eq!(other["change"]["is_self_approved"], false);
    let m = rows.iter().find(|r| r["api"]["operation"] == "merge_request.merge").unwrap();
    assert_eq!(m["change"]["is_merged"], true);
    assert_eq!(m["change"]["merged_by"], "user1");
}
