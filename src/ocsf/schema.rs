//! Column trees of the datasets: a curated subset of each OCSF 1.8.0 class
//! (the attributes trailship maps), nested exactly as OCSF names them.

use super::Class;
use crate::batch::columns::{Node, Ty};

fn leaf(name: &'static str, ty: Ty) -> Node {
    Node::Leaf { name, ty, required: false }
}
fn req(name: &'static str, ty: Ty) -> Node {
    Node::Leaf { name, ty, required: true }
}
fn s(name: &'static str) -> Node {
    leaf(name, Ty::Utf8)
}
fn obj(name: &'static str, children: Vec<Node>) -> Node {
    Node::Struct { name, children }
}
fn list_of(name: &'static str, item: Node) -> Node {
    Node::List { name, item: Box::new(item) }
}
fn strings(name: &'static str) -> Node {
    list_of(name, s("element"))
}

fn account() -> Node {
    obj("account", vec![s("uid"), s("name"), leaf("type_id", Ty::Int32), s("type")])
}

/// OCSF `user` object, as far as the sources fill it.
fn user(name: &'static str) -> Node {
    obj(
        name,
        vec![
            s("uid"),
            s("uid_alt"),
            s("name"),
            s("type"),
            leaf("type_id", Ty::Int32),
            s("credential_uid"),
            s("email_addr"),
            account(),
            list_of("groups", obj("element", vec![s("name")])),
        ],
    )
}

fn session(name: &'static str) -> Node {
    obj(
        name,
        vec![
            s("uid"),
            s("uid_alt"),
            s("issuer"),
            s("credential_uid"),
            leaf("created_time", Ty::Int64),
            leaf("created_time_dt", Ty::TimestampMs),
            leaf("expiration_time", Ty::Int64),
            leaf("expiration_time_dt", Ty::TimestampMs),
            leaf("is_mfa", Ty::Bool),
        ],
    )
}

/// OCSF `managed_entity`: what an Entity Management event created, changed or deleted.
fn managed_entity(name: &'static str) -> Node {
    obj(name, vec![s("uid"), s("name"), s("type"), leaf("type_id", Ty::Int32), s("data")])
}

fn endpoint(name: &'static str) -> Node {
    obj(name, vec![s("ip"), s("domain"), s("hostname"), s("svc_name"), s("uid")])
}

fn base(class: Class) -> Vec<Node> {
    let mut v = vec![
        req("class_uid", Ty::Int32),
        s("class_name"),
        req("category_uid", Ty::Int32),
        s("category_name"),
        req("activity_id", Ty::Int32),
        s("activity_name"),
        req("type_uid", Ty::Int64),
        s("type_name"),
        req("severity_id", Ty::Int32),
        s("severity"),
        req("time", Ty::Int64),
        leaf("time_dt", Ty::TimestampMs),
        leaf("status_id", Ty::Int32),
        s("status"),
        s("status_code"),
        s("status_detail"),
        obj(
            "metadata",
            vec![
                req("version", Ty::Utf8),
                obj(
                    "product",
                    vec![req("name", Ty::Utf8), s("vendor_name"), s("version"), obj("feature", vec![s("name")])],
                ),
                s("uid"),
                s("original_event_uid"),
                s("correlation_uid"),
                s("event_code"),
                s("log_name"),
                s("log_source"),
                s("original_time"),
                strings("profiles"),
            ],
        ),
        obj(
            "cloud",
            vec![s("provider"), s("region"), obj("account", vec![s("uid"), leaf("type_id", Ty::Int32), s("type")])],
        ),
        obj(
            "actor",
            vec![
                user("user"),
                session("session"),
                s("app_name"),
                obj("idp", vec![s("uid"), s("name")]),
                list_of("authorizations", obj("element", vec![s("decision"), obj("policy", vec![s("name")])])),
            ],
        ),
        obj(
            "api",
            vec![
                s("operation"),
                s("version"),
                obj("service", vec![s("name")]),
                obj("request", vec![s("uid"), s("data")]),
                obj("response", vec![s("error"), s("message"), s("data")]),
            ],
        ),
        endpoint("src_endpoint"),
        endpoint("dst_endpoint"),
        obj("http_request", vec![s("user_agent"), obj("url", vec![s("url_string"), s("path")])]),
    ];
    match class {
        Class::ApiActivity => {
            v.push(list_of(
                "resources",
                obj(
                    "element",
                    vec![
                        s("uid"),
                        s("name"),
                        s("type"),
                        s("namespace"),
                        s("version"),
                        obj("owner", vec![obj("account", vec![s("uid")])]),
                    ],
                ),
            ));
        }
        Class::Authentication => {
            v.push(user("user"));
            v.push(session("session"));
            v.push(obj("service", vec![s("name")]));
            v.push(leaf("is_mfa", Ty::Bool));
            v.push(leaf("is_remote", Ty::Bool));
            v.push(leaf("auth_protocol_id", Ty::Int32));
            v.push(s("auth_protocol"));
            v.push(leaf("logon_type_id", Ty::Int32));
            v.push(s("logon_type"));
        }
        Class::AccountChange => {
            v.push(user("user"));
            v.push(list_of("policies", obj("element", vec![s("uid"), s("name")])));
        }
        Class::EntityManagement => {
            v.push(managed_entity("entity"));
            v.push(managed_entity("entity_result"));
            v.push(s("comment"));
        }
        Class::GroupManagement => {
            v.push(obj("group", vec![s("uid"), s("name"), s("type")]));
            v.push(user("user"));
            v.push(strings("privileges"));
            v.push(obj("resource", vec![s("uid"), s("name"), s("type")]));
        }
    }
    // Repository and branch-protection settings are Entity Management events
    // about code: the `change` facts apply there too.
    if matches!(class, Class::ApiActivity | Class::EntityManagement) {
        v.push(change());
    }
    v.push(s("unmapped"));
    v.push(s("raw_data"));
    // trailship extension (schemas/extensions/trailship): provenance, repairs, redactions.
    v.push(obj(
        "trailship",
        vec![
            s("source_file"),
            leaf("source_index", Ty::Int64),
            obj("kafka", vec![s("topic"), leaf("partition", Ty::Int32), leaf("offset", Ty::Int64)]),
            obj("source_object", vec![s("bucket"), s("key"), s("version_id"), s("sha256")]),
            strings("repairs"),
            leaf("redacted_count", Ty::Int32),
            strings("redacted_types"),
            s("redaction_key_id"),
            s("signature"),
        ],
    ));
    v
}

/// The trailship extension's `change` object: the facts about a code change
/// that auditors ask for, as columns (`schemas/extensions/trailship/`).
fn change() -> Node {
    obj(
        "change",
        vec![
            s("vcs"),
            obj("repository", vec![s("uid"), s("name"), s("url")]),
            leaf("number", Ty::Int64),
            s("url"),
            s("title"),
            s("state"),
            leaf("is_draft", Ty::Bool),
            s("head_ref"),
            s("head_sha"),
            s("base_ref"),
            s("base_sha"),
            s("merge_sha"),
            s("author"),
            leaf("is_author_bot", Ty::Bool),
            leaf("is_merged", Ty::Bool),
            s("merged_by"),
            strings("requested_reviewers"),
            s("reviewer"),
            s("review_state"),
            s("review_commit_sha"),
            leaf("is_stale_review", Ty::Bool),
            s("approver"),
            leaf("is_self_approved", Ty::Bool),
            s("ref"),
            s("before_sha"),
            s("after_sha"),
            leaf("is_force_push", Ty::Bool),
            s("pusher"),
            list_of("commits", obj("element", vec![s("sha"), s("author"), leaf("is_bot", Ty::Bool)])),
            strings("co_authors"),
            leaf("has_bot_co_author", Ty::Bool),
            s("environment"),
            s("deployment_uid"),
            obj("workflow", vec![s("name"), s("path"), s("event"), s("run_uid"), leaf("run_attempt", Ty::Int32)]),
            s("conclusion"),
        ],
    )
}

/// The column tree of `class`'s dataset.
/// The top-level columns of the trailship extension
/// (`schemas/extensions/trailship/`): the rest are OCSF's own.
pub const EXTENSION_COLUMNS: [&str; 2] = ["trailship", "change"];

pub fn dataset_columns(class: Class) -> Vec<Node> {
    base(class)
}
