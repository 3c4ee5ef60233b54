//! Golden tests: real CloudTrail records against the OCSF events that the
//! mappings' authors expect (Amazon Security Lake's own output, OCSF 1.1.0;
//! and the ocsf/examples AWS 1.5.0 samples). Compared field by field; every
//! deliberate difference is listed with its reason below.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// Paths where trailship deliberately differs from the reference, and why.
fn deviation(path: &str) -> Option<&'static str> {
    Some(match path {
        "metadata.version" => "trailship writes the pinned OCSF version (1.8.0), not the reference's",
        // SL puts the flattened request/response (session tokens included) in
        // a string map; trailship keeps them as JSON in api.request/response.data.
        p if p.starts_with("unmapped") => "unmapped is a JSON string of what has no OCSF home",
        // OCSF 1.8 `datetime_t` siblings are Parquet timestamps; compared via `time`.
        p if p.ends_with("_dt") => "*_dt columns are timestamps, checked through their epoch twins",
        "metadata.product.feature.name" => {
            "feature.name is eventCategory; the references use a constant when it is absent"
        }
        "observables" => "observables are not produced yet (recommended, not required)",
        "activity_name" => "with activity_id 99 OCSF names the source's verb; the references say \"Other\"",
        _ => return None,
    })
}

fn leaves(v: &Value) -> BTreeMap<String, Value> {
    let mut out = Vec::new();
    flatten(v, "", &mut out);
    out.into_iter().collect()
}

/// Compares `ours` with `expected` on every leaf of `expected`; returns the mismatches.
/// Attributes deprecated in OCSF 1.8 that the references still use, and
/// where trailship writes them instead.
fn renamed(path: &str) -> &str {
    match path {
        "actor.invoked_by" => "actor.app_name",
        // 3001 `policy` is deprecated for `policies[]`; compared below.
        "policy.uid" => "policies.0.uid",
        _ => path,
    }
}

fn compare(ours: &Value, expected: &Value, extra_ok: &[(&str, &str)]) -> Vec<String> {
    let mut ours = leaves(ours);
    if let Some(Value::Array(p)) = ours.get("policies").cloned()
        && let Some(uid) = p.first().and_then(|p| p.get("uid"))
    {
        ours.insert("policies.0.uid".into(), uid.clone());
    }
    let mut bad = Vec::new();
    for (path, want) in leaves(expected) {
        if deviation(&path).is_some() || extra_ok.iter().any(|(p, _)| *p == path) {
            continue;
        }
        match ours.get(renamed(&path)) {
            Some(got) if got == &want => {}
            // The references write "" for absent identifiers; trailship leaves them out.
            None if want == "" => {}
            got => {
                bad.push(format!("{path}: expected {want}, got {}", got.map_or("nothing".into(), |g| g.to_string())))
            }
        }
    }
    bad
}

fn normalise_one(input: &std::path::Path) -> Value {
    let out = TempDir::new("golden");
    let s = run(out.path(), &[input.to_path_buf()]);
    assert_eq!(s.rows_total(), 1, "{} should give one row: {s:?}", input.display());
    let mut all = all_rows(out.path());
    assert_eq!(all.len(), 1);
    all.pop().unwrap()
}

/// Security Lake's CloudTrail inputs, with its output for each: (class, name, input, expected).
fn security_lake_samples() -> Vec<(&'static str, String, std::path::PathBuf, Value)> {
    let mut out = Vec::new();
    for class in ["api_activity", "account_change", "authentication"] {
        let dir = fixture(&format!("cloudtrail/aws-samples-security-lake/{class}"));
        let mut inputs: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        inputs.sort();
        for input in inputs {
            let name = input.file_stem().unwrap().to_string_lossy().to_string();
            let expected = std::fs::read_to_string(fixture(&format!(
                "security-lake-expected/cloudtrail-{class}-{name}.ocsf.json"
            )))
            .unwrap();
            out.push((class, name, input, serde_json::from_str(&expected).unwrap()));
        }
    }
    out
}

/// Security Lake expected output (OCSF 1.1.0) for each of its 20 CloudTrail inputs.
#[test]
fn security_lake_cloudtrail_samples() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (class, name, input, expected) in security_lake_samples() {
        let ours = normalise_one(&input);
        // Known, deliberate differences from Security Lake's 1.1.0 output:
        let extra: &[(&str, &str)] = &[
            // SL's AssumeRole is status "Other"; a call without errorCode succeeded.
            ("status", "status follows errorCode (SL: Other for AssumeRole)"),
            // SL maps RemoveRoleFromInstanceProfile to Detach Policy; no policy is involved.
            ("activity_id", "RemoveRoleFromInstanceProfile is 99 Other, not 8 Detach Policy"),
            ("activity_name", "see activity_id"),
            ("type_uid", "see activity_id"),
            ("type_name", "see activity_id"),
            // SL keeps the deprecated user.credential_uid only; trailship writes
            // both it and OCSF 1.6+'s actor.session.credential_uid.
            // SL's ConsoleLogin `api.request.uid` is "" (a defect listed in the notes).
            ("api.request.uid", "SL writes an empty request uid for ConsoleLogin"),
            // SL CheckMfa/ConsoleLogin map `user` from additionalEventData; see test below.
        ];
        let is_remove_role = name == "AddroletoInstanceProfile";
        let relevant: Vec<(&str, &str)> = extra
            .iter()
            .copied()
            .filter(|(p, _)| match *p {
                // SL: "Other" for AssumeRole*; CheckMfa answered {"CheckMfa":"Success"}.
                "status" => name.starts_with("AssumeRole") || name == "CheckMfa",
                "activity_id" | "activity_name" | "type_uid" | "type_name" => is_remove_role,
                "api.request.uid" => name.starts_with("ConsoleLogin") || name == "CheckMfa",
                _ => true,
            })
            .collect();
        let bad = compare(&ours, &expected, &relevant);
        checked += 1;
        if !bad.is_empty() {
            failures.push(format!("{class}/{name}:\n  {}", bad.join("\n  ")));
        }
    }
    assert_eq!(checked, 20);
    assert!(failures.is_empty(), "mismatches against Security Lake output:\n{}", failures.join("\n"));
}

/// `unmapped` keeps what Security Lake leaves unmapped of `userIdentity`, less
/// what trailship maps that Security Lake does not (`sessionIssuer.userName`
/// as `actor.user.name`), and nothing that a column already holds.
#[test]
fn unmapped_user_identity_is_what_no_column_holds() {
    let mut compared = 0;
    for (class, name, input, expected) in security_lake_samples() {
        let ours = normalise_one(&input);
        let unmapped: Value =
            get(&ours, "unmapped").map_or(Value::Null, |u| serde_json::from_str(u.as_str().unwrap()).unwrap());
        let mut flat = Vec::new();
        flatten(&unmapped, "", &mut flat);
        let flat: BTreeMap<String, Value> = flat.into_iter().collect();
        let sl = expected["unmapped"].as_object().cloned().unwrap_or_default();
        for (path, value) in sl.iter().filter(|(p, _)| p.starts_with("userIdentity.")) {
            let ours_holds_it = path == "userIdentity.sessionContext.sessionIssuer.userName"
                && get(&ours, "actor.user.name") == Some(value);
            assert_eq!(flat.contains_key(path), !ours_holds_it, "{class}/{name}: {path} in {unmapped}");
            compared += 1;
        }
        for (path, column) in [
            ("userIdentity.sessionContext.sessionIssuer.arn", "actor.session.issuer"),
            ("userIdentity.sessionContext.attributes.creationDate", "actor.session.created_time"),
            ("userIdentity.sessionContext.attributes.mfaAuthenticated", "actor.session.is_mfa"),
        ] {
            if get(&ours, column).is_some() {
                assert!(!flat.contains_key(path), "{class}/{name}: {path} is {column}: {unmapped}");
            }
        }
        // A null says no more than the null column beside it.
        if let Value::Object(m) = &unmapped {
            assert!(m.values().all(|v| !v.is_null()), "{class}/{name}: {unmapped}");
        }
    }
    assert!(compared >= 28, "{compared}");
}

/// Only what was mapped leaves `unmapped`: a session flag that is not one
/// of CloudTrail's two spellings stays, beside everything never mapped; the
/// same whether the record's text is copied (compact) or re-written, and
/// however many members come before the mapped ones.
#[test]
fn unmapped_keeps_what_was_not_mapped() {
    let input = fixture("cloudtrail/aws-samples-security-lake/account_change/AttachRolePolicy.json");
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    let ctx = &mut rec["userIdentity"]["sessionContext"];
    ctx["attributes"]["mfaAuthenticated"] = "maybe".into();
    ctx["sourceIdentity"] = "alice".into();
    let mut expected = serde_json::json!({
        "managementEvent": true,
        "readOnly": false,
        "userIdentity": {"sessionContext": {
            "attributes": {"mfaAuthenticated": "maybe"},
            "sessionIssuer": {"accountId": "112233445566", "principalId": "AROAIOJRFK4IOK6BW5ISY", "type": "Role"},
            "sourceIdentity": "alice",
            "webIdFederationData": {},
        }},
    });
    // Members sort by name: forty of these put every mapped one past the
    // first 32 members, whose kinds the normaliser keeps.
    let mut shifted = rec.clone();
    for i in 0..40 {
        shifted[format!("a{i:02}")] = i.into();
        expected[format!("a{i:02}")] = i.into();
    }
    let dir = TempDir::new("unmapped");
    for (name, text) in [
        ("pretty.json", serde_json::to_string_pretty(&rec)),
        ("compact.json", serde_json::to_string(&rec)),
        ("shifted.json", serde_json::to_string(&shifted)),
    ] {
        let out = dir.0.join(name).with_extension("out");
        let s = run(&out, &[dir.write(name, text.unwrap().as_bytes())]);
        assert_eq!(s.rows_total(), 1);
        let row = all_rows(&out).pop().unwrap();
        assert!(get(&row, "actor.session.is_mfa").is_none(), "{name}");
        assert_eq!(get(&row, "actor.session.issuer").unwrap(), "arn:aws:iam::112233445566:role/Admin");
        let unmapped: Value = serde_json::from_str(get(&row, "unmapped").unwrap().as_str().unwrap()).unwrap();
        let mut want = expected.clone();
        if name != "shifted.json" {
            want.as_object_mut().unwrap().retain(|k, _| !k.starts_with('a'));
        }
        assert_eq!(unmapped, want, "{name}");
    }
}

/// Writing `sessionContext` less its mapped members must not write an object
/// inside it member by member, away from its own name's redaction rule.
#[test]
fn a_secret_inside_session_context_stays_redacted() {
    let input = fixture("cloudtrail/aws-samples-security-lake/account_change/AttachRolePolicy.json");
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    rec["userIdentity"]["sessionContext"]["password"] = serde_json::json!({"value": "hunter2", "hint": "pet"});
    let dir = TempDir::new("ctx-secret");
    let out = dir.0.join("out");
    run(&out, &[dir.write("r.json", serde_json::to_string(&rec).unwrap().as_bytes())]);
    let row = all_rows(&out).pop().unwrap();
    let unmapped = get(&row, "unmapped").unwrap().as_str().unwrap();
    assert!(!unmapped.contains("hunter2") && unmapped.contains(r#""hint":"pet""#), "{unmapped}");
    assert!(!unmapped.contains(r#":role/Admin""#), "the issuer's ARN is mapped: {unmapped}");
}

/// `unmapped` holds parts of the record, of `userIdentity` and of its
/// session objects; a member left there is still judged by its siblings,
/// whether or not they are left too (they were not, before `write_part`).
#[test]
fn secrets_that_siblings_reveal_stay_redacted_in_unmapped() {
    let input = fixture("cloudtrail/aws-samples-security-lake/account_change/AttachRolePolicy.json");
    let base: Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    let mut pair_at_root = base.clone();
    pair_at_root["name"] = "db_password".into();
    pair_at_root["value"] = "hunter2-root".into();
    let mut k8s_secret_in_identity = base.clone();
    k8s_secret_in_identity["userIdentity"]["kind"] = "Secret".into();
    k8s_secret_in_identity["userIdentity"]["data"] = serde_json::json!({"pw": "hunter2-ident"});
    let mut pair_in_attributes = base.clone();
    pair_in_attributes["userIdentity"]["sessionContext"]["attributes"]["Name"] = "API_TOKEN".into();
    pair_in_attributes["userIdentity"]["sessionContext"]["attributes"]["Value"] = "hunter2-attr".into();
    let dir = TempDir::new("sibling-secret");
    let out = dir.0.join("out");
    let inputs: Vec<_> = [pair_at_root, k8s_secret_in_identity, pair_in_attributes]
        .iter()
        .enumerate()
        .map(|(i, r)| dir.write(&format!("r{i}.json"), serde_json::to_string(r).unwrap().as_bytes()))
        .collect();
    run(&out, &inputs);
    let rows = all_rows(&out);
    assert_eq!(rows.len(), 3);
    let unmapped: Vec<&str> = rows.iter().map(|r| get(r, "unmapped").unwrap().as_str().unwrap()).collect();
    for u in &unmapped {
        assert!(!u.contains("hunter2"), "{u}");
    }
    let has = |needle: &str| unmapped.iter().any(|u| u.contains(needle));
    assert!(has(r#""value":"[REDACTED:password:"#), "{unmapped:?}");
    assert!(has(r#""data":{"pw":"[REDACTED:kubernetes_secret:"#), "{unmapped:?}");
    assert!(has(r#""Value":"[REDACTED:token:"#), "{unmapped:?}");
    // What was mapped is still left out of the objects taken apart.
    assert!(unmapped.iter().all(|u| !u.contains("mfaAuthenticated") && !u.contains(":role/Admin\"")), "{unmapped:?}");
}

/// The samples in ocsf/examples are not valid JSON (trailing commas, a known
/// defect): strip those before comparing.
fn lenient_json(s: &str) -> Value {
    let mut cleaned = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut in_str = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            cleaned.push(c);
            if c == '\\' {
                cleaned.push(chars[i + 1]);
                i += 1;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                cleaned.push(c);
            }
        } else {
            if c == '"' {
                in_str = true;
            }
            cleaned.push(c);
        }
        i += 1;
    }
    serde_json::from_str(&cleaned).unwrap()
}

#[test]
fn ocsf_examples_v1_5_0_samples() {
    for (dir, raw, ocsf) in [
        ("api_activity", "generic_api_activity.raw", "generic_api_activity.ocsf"),
        // The "Account Change" sample is really a DescribeTargetHealth API call.
        ("account_change", "account_change.raw", "account_change.ocsf"),
        ("authentication", "authentication.raw", "authentication.ocsf"),
    ] {
        let expected = lenient_json(&std::fs::read_to_string(fixture(&format!("ocsf-examples/{dir}/{ocsf}"))).unwrap());
        let ours = normalise_one(&fixture(&format!("ocsf-examples/{dir}/{raw}")));
        let extra: &[(&str, &str)] = &[
            // The 1.5.0 Authentication sample (CredentialChallenge) has no
            // `user`, which 3002 requires, and captions activity 99 "Other";
            // OCSF says activity 99 carries the source's own verb.
            ("activity_name", "activity 99 names the source verb"),
            // The 1.5.0 mapping keeps the session issuer under actor.session only.
            ("api.response.data", "compared structurally below"),
        ];
        let bad = compare(&ours, &expected, extra);
        assert!(bad.is_empty(), "{dir}: {}", bad.join("\n"));
        // Response data: same JSON, whatever the formatting.
        if let Some(want) = get(&expected, "api.response.data").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
            let got = get(&ours, "api.response.data").and_then(|v| v.as_str()).unwrap();
            assert_eq!(serde_json::from_str::<Value>(got).unwrap(), serde_json::from_str::<Value>(want).unwrap());
        }
    }
}

/// Fields the references leave out or get wrong, checked on their own.
#[test]
fn mapping_details_beyond_the_references() {
    let ours = normalise_one(&fixture("cloudtrail/aws-samples-security-lake/authentication/AssumeRole.json"));
    // Required by 3002's at_least_one(service, dst_endpoint): SL's output breaks it.
    assert_eq!(get(&ours, "service.name").unwrap(), "sts.amazonaws.com");
    assert_eq!(get(&ours, "status_id").unwrap(), 1);
    assert_eq!(get(&ours, "cloud.account.uid").unwrap(), "111122223333");
    assert_eq!(get(&ours, "metadata.correlation_uid").unwrap(), "bEXAMPLE-efea-4a70-b951-19a88EXAMPLE");
    assert_eq!(get(&ours, "actor.session.credential_uid").unwrap(), "AKIAQRSTUVWXYZEXAMPLE");
    // The session token never reaches the archive in clear.
    let resp = get(&ours, "api.response.data").unwrap().as_str().unwrap();
    assert!(!resp.contains("<encoded session token blob>"), "{resp}");
    assert!(resp.contains("[REDACTED:aws_session_token:"), "{resp}");
    assert_eq!(get(&ours, "trailship.redacted_count").unwrap(), 1);
    assert_eq!(get(&ours, "trailship.redacted_types").unwrap(), &serde_json::json!(["aws_session_token"]));
    assert_eq!(get(&ours, "trailship.redaction_key_id").unwrap().as_str().unwrap().len(), 8);

    // Error code → failure with code and message.
    let ours = normalise_one(&fixture("cloudtrail/aws-samples-security-lake/api_activity/UpdateTrail.json"));
    assert_eq!(get(&ours, "status_id").unwrap(), 2);
    assert_eq!(get(&ours, "status_code").unwrap(), "TrailNotFoundException");
    assert_eq!(get(&ours, "status_detail").unwrap(), "Unknown trail: myTrail2 for the user: 111122223333");
    assert_eq!(get(&ours, "api.request.data").unwrap(), r#"{"name":"myTrail2"}"#);
    assert_eq!(get(&ours, "type_uid").unwrap(), 600303);

    // Failed console sign-in: status from responseElements.ConsoleLogin.
    let ours = normalise_one(&fixture("cloudtrail/awsdocs/console-signin-03-iam-user-unsuccessful-sign-in.json"));
    assert_eq!(get(&ours, "class_uid").unwrap(), 3002);
    assert_eq!(get(&ours, "status_id").unwrap(), 2);
    assert_eq!(get(&ours, "status").unwrap(), "Failure");
    assert_eq!(get(&ours, "status_detail").unwrap(), "Failed authentication");
    assert_eq!(get(&ours, "is_mfa").unwrap(), true, "additionalEventData.MFAUsed is Yes");
    // `"accessKeyId": ""` is no credential.
    assert!(get(&ours, "actor.user.credential_uid").is_none());
    assert_eq!(get(&ours, "logon_type_id").unwrap(), 2);

    // Data event: resources from the record, the S3 Outposts endpoint as a domain.
    let ours = normalise_one(&fixture(
        "cloudtrail/awsdocs/s3-cloudtrail-02-example-amazon-s3-on-outposts-log-file-entries.json",
    ));
    assert_eq!(get(&ours, "metadata.product.feature.name").unwrap(), "Data");
    assert_eq!(get(&ours, "activity_id").unwrap(), 3);
    let resources = get(&ours, "resources").unwrap().as_array().unwrap();
    assert!(!resources.is_empty());
    assert!(resources.iter().all(|r| r.get("uid").is_some() || r.get("type").is_some()));

    // Account change: the user changed, from the response, and its policies.
    let ours = normalise_one(&fixture("cloudtrail/aws-samples-security-lake/account_change/AttachUserPolicy.json"));
    assert_eq!(get(&ours, "activity_id").unwrap(), 7);
    let policies = get(&ours, "policies").unwrap().as_array().unwrap();
    assert_eq!(policies.len(), 1);
    assert!(policies[0].get("uid").unwrap().as_str().unwrap().starts_with("arn:aws:iam::"));
}
