//! GitHub webhook events → OCSF API Activity with the `change` columns, on
//! GitHub's own example payloads (octokit/webhooks) and planted variations.

mod common;

use common::*;
use serde_json::{Value, json};

fn payload(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("github-webhooks/{rel}"))).unwrap()).unwrap()
}

/// Normalises NDJSON lines; returns the rows.
fn rows_of(name: &str, lines: &[Value]) -> Vec<Value> {
    let dir = TempDir::new(name);
    let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let input = dir.write("in/events.ndjson", body.as_bytes());
    let s = run(&dir.path().join("out"), &[input]);
    assert_eq!(s.dead_total(), 0, "{:?}", dead_letters(&dir.path().join("out")));
    rows(&dir.path().join("out"), "api_activity")
}

fn delivery(event: &str, guid: &str, payload: Value) -> Value {
    json!({
        "id": 12345678901i64, "guid": guid, "delivered_at": "2024-05-01T10:00:00Z", "redelivery": false,
        "duration": 0.27, "status": "OK", "status_code": 200, "event": event, "action": payload["action"],
        "request": {"headers": {"X-GitHub-Event": event, "X-GitHub-Delivery": guid,
                                "X-Hub-Signature-256": "sha256=0000"}, "payload": payload},
        "response": {"headers": {}, "payload": "ok"}
    })
}

#[test]
fn every_example_payload_becomes_one_row() {
    let dir = TempDir::new("gh-all");
    let s = run(dir.path(), &[fixture("github-webhooks")]);
    assert_eq!(s.records_read, 115);
    assert_eq!(s.rows_total(), 115, "{:?}", dead_letters(dir.path()));
    let rows = rows(dir.path(), "api_activity");
    let mut events: Vec<String> =
        rows.iter().map(|r| r["metadata"]["event_code"].as_str().unwrap().to_string()).collect();
    events.sort();
    events.dedup();
    for e in [
        "pull_request",
        "pull_request_review",
        "push",
        "deployment",
        "deployment_status",
        "workflow_run",
        "check_run",
        "release",
        "branch_protection_rule",
        "member",
        "repository",
    ] {
        assert!(events.contains(&e.to_string()), "{e} recognised: {events:?}");
    }
    for r in &rows {
        assert_eq!(r["api"]["service"]["name"], "github");
        assert_eq!(r["change"]["vcs"], "github");
        assert!(r["actor"]["user"]["name"].is_string(), "{r}");
        assert!(r["time"].as_i64().unwrap() > 1_400_000_000_000, "{r}");
    }
}

#[test]
fn pull_request_closed_without_merge() {
    let rows = rows_of("gh-pr", &[payload("pull_request/closed.payload.json")]);
    let r = &rows[0];
    for (path, want) in [
        ("api.operation", json!("pull_request.closed")),
        ("activity_id", json!(4)),
        ("time", json!(1_557_933_678_000i64)), // closed_at
        ("change.number", json!(2)),
        ("change.url", json!("https://github.com/Codertocat/Hello-World/pull/2")),
        ("change.head_sha", json!("ec26c3e57ca3a959ca5aad62de7213c562f8c821")),
        ("change.base_sha", json!("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")),
        ("change.author", json!("Codertocat")),
        ("change.is_merged", json!(false)),
        ("change.repository.name", json!("Codertocat/Hello-World")),
        ("change.repository.uid", json!("186853002")),
        (
            "resources",
            json!([{"uid": "186853002", "name": "Codertocat/Hello-World", "type": "repository"},
                             {"uid": "279147437", "name": "#2", "type": "pull_request"}]),
        ),
        ("src_endpoint.hostname", json!("github.com")),
    ] {
        assert_eq!(get(r, path), Some(&want), "{path}");
    }
}

#[test]
fn merged_pull_request_records_who_merged() {
    let mut p = payload("pull_request/closed.payload.json");
    p["pull_request"]["merged"] = json!(true);
    p["pull_request"]["merged_at"] = json!("2019-05-15T15:21:18Z");
    p["pull_request"]["merged_by"] = json!({"login": "octocat", "id": 583231});
    p["pull_request"]["merge_commit_sha"] = json!("c4295bd74fb0f4fbf95d2c9a3ea8a2b1c3d4e5f6");
    let r = &rows_of("gh-merge", &[p])[0];
    assert_eq!(r["activity_id"], 3);
    assert_eq!(r["change"]["is_merged"], true);
    assert_eq!(r["change"]["merged_by"], "octocat");
    assert_eq!(r["change"]["merge_sha"], "c4295bd74fb0f4fbf95d2c9a3ea8a2b1c3d4e5f6");
    assert_eq!(r["change"]["base_ref"], "master");
}

#[test]
fn approvals_self_approval_and_stale_reviews() {
    let base = payload("pull_request_review/submitted.payload.json");
    // The example review is by the PR's author, on the head commit.
    let mut self_approved = base.clone();
    self_approved["review"]["state"] = json!("approved");
    let mut other = base.clone();
    other["review"]["state"] = json!("APPROVED");
    other["review"]["user"] = json!({"login": "reviewer-2", "id": 99, "type": "User"});
    other["review"]["commit_id"] = json!("0000000000000000000000000000000000000000");
    let rows = rows_of("gh-review", &[base.clone(), self_approved, other]);
    let commented = &rows.iter().find(|r| r["change"]["review_state"] == "commented").unwrap()["change"];
    assert!(commented.get("approver").is_none() && commented.get("is_self_approved").is_none());
    assert_eq!(commented["is_stale_review"], false);
    let selfie = &rows.iter().find(|r| r["change"]["review_state"] == "approved").unwrap()["change"];
    assert_eq!(selfie["approver"], "Codertocat");
    assert_eq!(selfie["is_self_approved"], true);
    let reviewed = &rows.iter().find(|r| r["change"]["review_state"] == "APPROVED").unwrap()["change"];
    assert_eq!(reviewed["approver"], "reviewer-2");
    assert_eq!(reviewed["is_self_approved"], false);
    assert_eq!(reviewed["is_stale_review"], true, "approved an older commit than the head");
    assert_eq!(reviewed["reviewer"], "reviewer-2");
}

#[test]
fn forced_push_with_bot_and_ai_co_authors() {
    let mut p = payload("push/payload.json");
    p["forced"] = json!(true);
    p["ref"] = json!("refs/heads/main");
    p["commits"] = json!([
        {"id": "a1".repeat(20), "message": "Fix flaky test\n\nCo-authored-by: Claude <noreply@anthropic.com>",
         "timestamp": "2024-05-01T09:59:00Z", "author": {"name": "Ann", "email": "ann@example.com", "username": "ann"}},
        {"id": "b2".repeat(20), "message": "Bump deps", "timestamp": "2024-05-01T09:59:30Z",
         "author": {"name": "dependabot[bot]", "email": "49699333+dependabot[bot]@users.noreply.github.com"}}
    ]);
    p["head_commit"] = p["commits"][1].clone();
    let r = &rows_of("gh-push", &[p])[0];
    let c = &r["change"];
    assert_eq!(r["api"]["operation"], "push");
    assert_eq!(r["time"], 1_714_557_570_000i64, "head commit time");
    assert_eq!(c["is_force_push"], true);
    assert_eq!(c["ref"], "refs/heads/main");
    assert_eq!(c["pusher"], "Codertocat");
    assert_eq!(c["co_authors"], json!(["Claude <noreply@anthropic.com>"]));
    assert_eq!(c["has_bot_co_author"], true);
    assert_eq!(
        c["commits"],
        json!([{"sha": "a1".repeat(20), "author": "ann", "is_bot": false},
                                    {"sha": "b2".repeat(20), "author": "dependabot[bot]", "is_bot": true}])
    );
}

#[test]
fn workflow_runs_and_deployments_carry_their_outcome() {
    let mut failed = payload("workflow_run/completed.payload.json");
    failed["workflow_run"]["conclusion"] = json!("failure");
    let rows = rows_of(
        "gh-wf",
        &[payload("workflow_run/completed.payload.json"), failed, payload("deployment_status/payload.json")],
    );
    let ok = rows
        .iter()
        .find(|r| r["change"]["conclusion"] == "success" && r["api"]["operation"] == "workflow_run.completed")
        .unwrap();
    assert_eq!(ok["status_id"], 1);
    assert_eq!(ok["change"]["workflow"]["path"], ".github/workflows/test.yml");
    assert_eq!(ok["change"]["workflow"]["run_uid"], "289782451");
    assert_eq!(ok["change"]["workflow"]["run_attempt"], 1);
    let bad = rows.iter().find(|r| r["change"]["conclusion"] == "failure").unwrap();
    assert_eq!(bad["status_id"], 2);
    assert_eq!(bad["status"], "Failure");
    let dep = rows.iter().find(|r| r["api"]["operation"] == "deployment_status.created").unwrap();
    assert_eq!(dep["change"]["environment"], "production");
    assert!(dep["change"]["head_sha"].is_string());
}

#[test]
fn deliveries_and_unknown_events() {
    let pr = payload("pull_request/opened.payload.json");
    let unknown = json!({"action": "tier_changed", "sponsorship": {"tier": {"name": "$5"}},
        "sender": {"login": "octocat", "id": 1, "type": "User"}, "repository": {"id": 7, "full_name": "o/r",
        "owner": {"login": "o"}, "updated_at": "2024-05-01T08:00:00Z"}});
    let rows = rows_of(
        "gh-delivery",
        &[
            delivery("pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", pr),
            delivery("sponsorship", "0b989ba4-242f-11e5-81e1-c7b6966d2516", unknown.clone()),
            unknown,
        ],
    );
    let r = find_by_uid(&rows, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(r["api"]["operation"], "pull_request.opened");
    assert_eq!(r["metadata"]["original_event_uid"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(r["activity_id"], 1);
    // An event trailship does not know is kept, in its generic form, with its payload.
    let s = find_by_uid(&rows, "0b989ba4-242f-11e5-81e1-c7b6966d2516");
    assert_eq!(s["api"]["operation"], "sponsorship.tier_changed");
    assert_eq!(s["time"], 1_714_557_600_000i64, "the delivery time");
    assert!(s["api"]["request"]["data"].as_str().unwrap().contains("tier_changed"));
    // Bare and unknown: recognised as GitHub, time from the repository, said so.
    let bare = rows.iter().find(|r| r["metadata"]["event_code"] == "unknown").unwrap();
    assert_eq!(bare["api"]["operation"], "unknown.tier_changed");
    assert_eq!(bare["trailship"]["repairs"], json!(["time_from:repository.updated_at"]));
}

#[test]
fn webhook_signatures_are_verified_when_a_secret_is_configured() {
    use hmac::{Hmac, Mac};
    let secret = b"It's a Secret to Everybody";
    let pr = payload("pull_request/opened.payload.json");
    let body = serde_json::to_string(&pr).unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(body.as_bytes());
    let good: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let with_sig = |guid: &str, sig: Option<String>| {
        let mut d = delivery("pull_request", guid, pr.clone());
        if let Some(s) = sig {
            d["request"]["headers"]["x-hub-signature-256"] = json!(s);
        }
        d["request"]["headers"].as_object_mut().unwrap().remove("X-Hub-Signature-256");
        d
    };
    let lines = [
        with_sig("good", Some(format!("sha256={good}"))),
        with_sig("bad", Some(format!("sha256={}", "0".repeat(64)))),
        with_sig("none", None),
    ];
    let dir = TempDir::new("gh-sig");
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let input = dir.write("in/d.ndjson", text.as_bytes());
    let mut opts = trailship::pipeline::Options { out: dir.path().join("with"), ..Default::default() };
    opts.normalize.github_webhook_secret = Some(secret.to_vec());
    run_with(opts, std::slice::from_ref(&input));
    let rows = rows(&dir.path().join("with"), "api_activity");
    assert_eq!(find_by_uid(&rows, "good")["trailship"]["signature"], "valid");
    assert_eq!(find_by_uid(&rows, "bad")["trailship"]["signature"], "invalid", "kept, and flagged");
    assert_eq!(find_by_uid(&rows, "none")["trailship"]["signature"], "absent");
    // Without a secret a signature cannot be checked, and says so.
    run(&dir.path().join("without"), &[input]);
    let rows = common::rows(&dir.path().join("without"), "api_activity");
    assert_eq!(find_by_uid(&rows, "good")["trailship"]["signature"], "unverified");
    assert!(find_by_uid(&rows, "none")["trailship"].get("signature").is_none());
}

#[test]
fn audit_log_events_against_the_ocsf_reference() {
    let dir = TempDir::new("gh-audit");
    let s = run(dir.path(), &[fixture("ocsf-examples/github/api_activity.raw")]);
    assert_eq!(s.rows_total(), 1);
    let r = &rows(dir.path(), "api_activity")[0];
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("ocsf-examples/github/api_activity.ocsf")).unwrap())
            .unwrap();
    // Field by field, except where trailship deliberately differs:
    // metadata.version (1.8.0 pinned), activity_name (the action for activity 99),
    // *_dt (a timestamp column), observables and src_endpoint.location (not produced),
    // unmapped (JSON text), and resources[].type (trailship names the resource type).
    for (path, want) in [
        ("class_uid", &expected["class_uid"]),
        ("activity_id", &expected["activity_id"]),
        ("type_uid", &expected["type_uid"]),
        ("time", &expected["time"]),
        ("api.operation", &expected["api"]["operation"]),
        ("metadata.event_code", &expected["metadata"]["event_code"]),
        ("metadata.uid", &expected["metadata"]["uid"]),
        ("metadata.product.name", &expected["metadata"]["product"]["name"]),
        ("metadata.product.vendor_name", &expected["metadata"]["product"]["vendor_name"]),
        ("actor.user.name", &expected["actor"]["user"]["name"]),
        ("actor.user.uid", &expected["actor"]["user"]["uid"]),
        ("actor.user.email_addr", &expected["actor"]["user"]["email_addr"]),
        ("actor.user.account.name", &expected["actor"]["user"]["account"]["name"]),
        ("actor.user.account.uid", &expected["actor"]["user"]["account"]["uid"]),
        ("actor.user.account.type_id", &expected["actor"]["user"]["account"]["type_id"]),
        ("http_request.user_agent", &expected["http_request"]["user_agent"]),
        ("src_endpoint.ip", &expected["src_endpoint"]["ip"]),
        ("resources.0.name", &expected["resources"][0]["name"]),
        ("resources.0.uid", &expected["resources"][0]["uid"]),
    ] {
        assert_eq!(common::get(r, path), Some(want), "{path}");
    }
    assert_eq!(r["activity_name"], "git.push");
    // hashed_token is GitHub's hash of a token: an identifier, kept.
    let unmapped: Value = serde_json::from_str(r["unmapped"].as_str().unwrap()).unwrap();
    assert_eq!(unmapped["hashed_token"], "tO8qpNGhmNe8OMdEXAMPLE");
    // The other reference samples are audit events too, and map.
    let dir = TempDir::new("gh-audit-all");
    let s = run(dir.path(), &[fixture("ocsf-examples/github")]);
    assert_eq!(s.rows_total(), 5);
    assert_eq!(
        s.dead_letters.get(&trailship::deadletter::Reason::UnrecognisedSource),
        Some(&5),
        "the .ocsf files are not inputs"
    );
}

/// The IAM-class samples of the OCSF GitHub audit-log mapping, field by field
/// where the expected event follows from its raw record. (The references are
/// hand-written and differ from their own raw records in places: account
/// change's `src_endpoint.ip` and group management's `user.uid` name values
/// that the raw record does not hold, so those are checked against the raw.)
#[test]
fn audit_log_iam_classes_against_the_ocsf_reference() {
    // Each sample is named after the dataset it lands in.
    for (sample, fields) in [
        (
            "account_change",
            &[
                "class_uid",
                "activity_id",
                "activity_name",
                "type_uid",
                "type_name",
                "time",
                "actor.user.name",
                "actor.user.uid",
                "actor.session.uid",
                "user.name",
                "user.uid",
            ][..],
        ),
        (
            "authentication",
            &[
                "class_uid",
                "activity_id",
                "activity_name",
                "type_uid",
                "time",
                "actor.user.name",
                "actor.user.uid",
                "actor.user.email_addr",
                "auth_protocol",
                "auth_protocol_id",
                "logon_type_id",
                "user.name",
                "user.uid",
            ][..],
        ),
        (
            "entity_management",
            &[
                "class_uid",
                "activity_id",
                "activity_name",
                "type_uid",
                "type_name",
                "time",
                "actor.user.name",
                "actor.user.account.name",
                "actor.user.account.uid",
                "entity.name",
                "entity.uid",
                "src_endpoint.ip",
            ][..],
        ),
        (
            "group_management",
            &[
                "class_uid",
                "activity_id",
                "activity_name",
                "type_uid",
                "type_name",
                "time",
                "actor.user.name",
                "actor.user.email_addr",
                "group.name",
                "user.name",
                "src_endpoint.ip",
            ][..],
        ),
    ] {
        let dir = TempDir::new(&format!("gh-audit-{sample}"));
        let s = run(dir.path(), &[fixture(&format!("ocsf-examples/github/{sample}.raw"))]);
        assert_eq!(s.rows_total(), 1, "{sample}");
        let r = &rows(dir.path(), sample)[0];
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("ocsf-examples/github/{sample}.ocsf"))).unwrap(),
        )
        .unwrap();
        for f in fields {
            assert_eq!(common::get(r, f), common::get(&expected, f), "{sample}: {f}");
        }
        assert_eq!(r["metadata"]["product"]["name"], "GitHub Audit Log");
    }
    let dir = TempDir::new("gh-audit-raw-checks");
    run(dir.path(), &[fixture("ocsf-examples/github/account_change.raw")]);
    let r = &rows(dir.path(), "account_change")[0];
    assert_eq!(r["src_endpoint"]["ip"], "11.11.111.1");
    let unmapped: Value = serde_json::from_str(r["unmapped"].as_str().unwrap()).unwrap();
    assert_eq!(unmapped["business"], "businessname", "unmapped keeps what no column holds");
    assert!(unmapped.get("user").is_none() && unmapped.get("user_id").is_none(), "mapped to user.*");
    run(dir.path(), &[fixture("ocsf-examples/github/group_management.raw")]);
    let r = &rows(dir.path(), "group_management")[0];
    assert_eq!(r["user"]["uid"], "222222");
    assert_eq!(r["activity_name"], "Add User");
    run(dir.path(), &[fixture("ocsf-examples/github/entity_management.raw")]);
    let r = &rows(dir.path(), "entity_management")[0];
    assert_eq!(r["entity"]["type"], "Org");
    let unmapped: Value = serde_json::from_str(r["unmapped"].as_str().unwrap()).unwrap();
    assert_eq!(unmapped["team"], "Wiley Coyote", "a member no column of this class holds stays in unmapped");
}

/// The routing table beyond the reference samples: the change-control events
/// (branch protection, repository settings, policy overrides) and the account
/// and team events an access review asks for.
#[test]
fn audit_log_actions_route_to_their_classes() {
    let base = |action: &str, extra: Value| {
        let mut v = serde_json::json!({
            "action": action, "actor": "octocat", "actor_id": 1, "org": "acme", "org_id": 7,
            "@timestamp": 1729176166108_i64, "_document_id": action,
        });
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v.to_string()
    };
    use serde_json::json;
    let events = [
        base(
            "protected_branch.update_pull_request_reviews_enforcement_level",
            json!({"repo": "acme/api", "repo_id": 9,
            "name": "main", "pull_request_reviews_enforcement_level": "off", "required_approving_review_count": 0}),
        ),
        base("protected_branch.destroy", json!({"repo": "acme/api", "name": "release/*"})),
        base(
            "protected_branch.policy_override",
            json!({"repo": "acme/api", "repo_id": 9, "branch": "main",
            "reasons": ["required_status_checks"]}),
        ),
        base(
            "repo.update",
            json!({"repo": "acme/api", "repo_id": 9, "previous_visibility": "private", "visibility": "public"}),
        ),
        base("repo.transfer", json!({"repo": "acme/api"})),
        base("team.add_repository", json!({"team": "acme/platform", "repo": "acme/api", "permission": "admin"})),
        base("team.remove_member", json!({"team": "acme/platform", "user": "mallory", "user_id": 66})),
        base("user.suspend", json!({"user": "mallory", "user_id": 66})),
        base("two_factor_authentication.disabled", json!({})),
        base("org.add_member", json!({"user": "eve"})),
        base("user.failed_login", json!({"user": "eve"})),
        base("oauth_authorization.create", json!({})),
        base("pull_request.merge", json!({"repo": "acme/api", "operation_type": "modify"})),
    ];
    let dir = TempDir::new("gh-audit-routing");
    let input = dir.write("audit.ndjson", (events.join("\n") + "\n").as_bytes());
    let s = run(&dir.path().join("out"), &[input]);
    assert_eq!(s.rows_total(), events.len() as u64);
    let out = dir.path().join("out");
    let all = common::all_rows(&out);
    let got = |uid: &str| find_by_uid(&all, uid);
    let class_activity =
        |uid: &str| (got(uid)["class_uid"].as_i64().unwrap(), got(uid)["activity_id"].as_i64().unwrap());

    let r = got("protected_branch.update_pull_request_reviews_enforcement_level");
    assert_eq!((r["class_uid"].as_i64(), r["activity_id"].as_i64()), (Some(3004), Some(3)));
    assert_eq!(r["entity"]["name"], "main");
    assert_eq!(r["entity"]["type_id"], 5);
    let settings: Value = serde_json::from_str(r["entity_result"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        settings,
        json!({"pull_request_reviews_enforcement_level": "off", "required_approving_review_count": 0})
    );
    assert_eq!(r["change"]["repository"]["name"], "acme/api", "the change facts hold on 3004 too");
    assert_eq!(class_activity("protected_branch.destroy"), (3004, 4));

    let r = got("protected_branch.policy_override");
    assert_eq!((r["class_uid"].as_i64(), r["severity_id"].as_i64()), (Some(6003), Some(3)));
    assert_eq!(r["resources"][1]["name"], "refs/heads/main");
    assert_eq!(r["actor"]["authorizations"][0]["decision"], "override");

    let r = got("repo.update");
    assert_eq!((r["class_uid"].as_i64(), r["entity"]["type"].as_str()), (Some(3004), Some("Repository")));
    assert_eq!(r["entity"]["data"], r#"{"visibility":"private"}"#);
    assert_eq!(r["entity_result"]["data"], r#"{"visibility":"public"}"#);
    assert_eq!(class_activity("repo.transfer"), (3004, 5));

    let r = got("team.add_repository");
    assert_eq!(class_activity("team.add_repository"), (3006, 1));
    assert_eq!(
        (r["group"]["name"].as_str(), r["resource"]["name"].as_str()),
        (Some("acme/platform"), Some("acme/api"))
    );
    assert_eq!(r["privileges"], json!(["admin"]));
    assert_eq!(class_activity("team.remove_member"), (3006, 4));
    assert_eq!(got("team.remove_member")["user"]["name"], "mallory");

    assert_eq!(class_activity("user.suspend"), (3001, 5));
    assert_eq!(got("user.suspend")["user"]["uid"], "66");
    assert_eq!(class_activity("two_factor_authentication.disabled"), (3001, 11));
    assert_eq!(got("two_factor_authentication.disabled")["user"]["name"], "octocat", "their own factor");
    assert_eq!(class_activity("org.add_member"), (3001, 99));

    let r = got("user.failed_login");
    assert_eq!((r["class_uid"].as_i64(), r["status_id"].as_i64()), (Some(3002), Some(2)));
    assert_eq!(got("oauth_authorization.create")["auth_protocol"], "OAUTH 2.0");
    assert_eq!(class_activity("pull_request.merge"), (6003, 3));
    for dataset in ["api_activity", "account_change", "authentication", "entity_management", "group_management"] {
        assert!(out.join(dataset).join("region=unknown").join("accountId=acme").is_dir(), "{dataset}");
    }
}

/// The entry point the Kafka source will use: the payload is the message
/// value, the event name, delivery id and signature travel in headers, and
/// the signature is checked over the value's exact bytes.
#[test]
fn payloads_with_transport_headers() {
    use hmac::{Hmac, Mac};
    use trailship::batch::Batcher;
    use trailship::decode::json::Parser;
    use trailship::normalize::{Ctx, NormalizeOptions, Normalizer, SourceKind};

    let secret = b"kafka-secret";
    // Pretty-printed: a re-serialisation would not match, the exact bytes do.
    let value = serde_json::to_vec_pretty(&payload("pull_request_review/submitted.payload.json")).unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(&value);
    let sig = format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
    let opts = NormalizeOptions { github_webhook_secret: Some(secret.to_vec()), ..Default::default() };
    let mut norm = Normalizer::new(SourceKind::GitHub).with_options(&opts);
    let (mut parser, mut batcher) = (Parser::default(), Batcher::default());
    for (i, tamper) in [false, true].into_iter().enumerate() {
        let mut body = value.clone();
        if tamper {
            let at = body.iter().position(|b| *b == b'C').unwrap();
            body[at] = b'X'; // "Codertocat" → "Xodertocat"
        }
        let headers = [
            ("x-github-event", "pull_request_review"),
            ("X-GitHub-Delivery", if tamper { "d-2" } else { "d-1" }),
            ("X-Hub-Signature-256", sig.as_str()),
        ];
        let exact = body.clone();
        let mut bytes = body;
        let r = parser.parse(&mut bytes, |p| {
            let p = p.unwrap();
            let ctx = Ctx {
                source_file: "kafka:github/0",
                index: i as u64,
                repairs: p.repairs,
                raw: None,
                source: None,
                headers: &headers,
                body: Some(&exact),
                kafka: None,
                object: None,
            };
            norm.normalize(p.root, &ctx, &mut batcher)
        });
        assert!(r.is_ok(), "{r:?}");
    }
    let rows: Vec<Value> = batcher.take_all().iter().flat_map(|(_, b)| batch_to_json(b)).collect();
    let good = find_by_uid(&rows, "d-1");
    assert_eq!(good["metadata"]["event_code"], "pull_request_review");
    assert_eq!(good["trailship"]["signature"], "valid");
    assert_eq!(find_by_uid(&rows, "d-2")["trailship"]["signature"], "invalid");
}

/// Without the trailship extension (a Security Lake feed), a change's
/// evidence is not dropped with the `change` column: it is in `unmapped`,
/// as `change`, beside the event's own unmapped members.
#[test]
fn without_the_extension_the_change_columns_go_into_unmapped() {
    fn pruned(v: &Value) -> Option<Value> {
        match v {
            Value::Object(m) => {
                let m: serde_json::Map<_, _> = m.iter().filter_map(|(k, v)| Some((k.clone(), pruned(v)?))).collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => Some(Value::Array(a.iter().map(|v| pruned(v).unwrap_or(Value::Null)).collect())),
            v => Some(v.clone()),
        }
    }
    let dir = TempDir::new("gh-lake");
    run(dir.path(), &[fixture("github-webhooks")]);
    let (mut rows, mut approvals) = (0, 0);
    for f in parquet_files(&dir.path().join("api_activity")) {
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
                .unwrap()
                .build()
                .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let lake = trailship::encode::without_extension(&batch);
            let names: Vec<String> = lake.schema().fields().iter().map(|f| f.name().clone()).collect();
            assert!(!names.iter().any(|n| n == "change" || n == "trailship"), "{names:?}");
            for (before, after) in batch_to_json(&batch).iter().zip(batch_to_json(&lake)) {
                rows += 1;
                let own: Value =
                    before.get("unmapped").map_or(json!({}), |u| serde_json::from_str(u.as_str().unwrap()).unwrap());
                let mut folded: Value = serde_json::from_str(after["unmapped"].as_str().unwrap()).unwrap();
                let change = folded.as_object_mut().unwrap().remove("change");
                assert_eq!(change, pruned(&before["change"]), "{before}");
                assert_eq!(folded, own, "the event's own unmapped members are kept as they were");
                approvals +=
                    change.is_some_and(|c| c.get("reviewer").is_some() && c.get("review_state").is_some()) as usize;
                // Everything else is as it was.
                let (mut b, mut a) = (before.clone(), after.clone());
                for m in [b.as_object_mut().unwrap(), a.as_object_mut().unwrap()] {
                    for k in ["change", "trailship", "unmapped"] {
                        m.remove(k);
                    }
                }
                assert_eq!(a, b);
            }
        }
    }
    assert_eq!(rows, 115);
    assert!(approvals > 0, "the examples hold reviews");
}
