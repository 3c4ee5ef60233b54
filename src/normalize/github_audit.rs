//! GitHub audit-log streaming events (`action`, `actor`, `@timestamp`,
//! `_document_id`, ...) → OCSF, after the OCSF project's GitHub audit-log
//! mapping: sign-ins to Authentication (3002), user accounts to Account
//! Change (3001), repositories, organisations and branch protection to Entity
//! Management (3004), teams to Group Management (3006), everything else to
//! API Activity (6003). The table is [`classify`]; `schemas/README.md` lists it.

use std::net::IpAddr;

use super::cols::{Cols, UserCols};
use super::github::ChangeCols;
use super::row::{self, id_text};
use super::time::event_day;
use super::{Ctx, Rejected};
use crate::batch::columns::ColumnBatch;
use crate::batch::{Batcher, partition_value};
use crate::deadletter::Reason;
use crate::decode::json::Val;
use crate::ocsf::{Class, OCSF_VERSION, status_caption};

/// An audit-log event: a dotted `action`, an `actor` and a millisecond time.
pub(super) fn is_event(s: &super::Signs<'_, '_>) -> bool {
    super::str_of(s.action).is_some_and(|a| a.contains('.'))
        && s.actor.is_some()
        && (s.timestamp.is_some() || s.document_id.is_some())
}

const MAPPED: &[&str] = &[
    "action",
    "actor",
    "actor_id",
    "actor_ip",
    "actor_session",
    "@timestamp",
    "created_at",
    "_document_id",
    "org",
    "org_id",
    "repo",
    "repo_id",
    "repository",
    "repository_id",
    "user_agent",
    "url_path",
    "operation_type",
    "external_identity_nameid",
    "issuer",
];

fn number(v: Option<Val<'_, '_>>) -> Option<i64> {
    match v?.node() {
        simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(n),
        simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(n).ok(),
        simd_json::Node::Static(simd_json::StaticNode::F64(f)) if f.is_finite() => Some(f as i64),
        _ => None,
    }
}

/// Where an action goes: its class and activity. `operation_type` (GitHub's
/// own create / access / modify / remove) gives the activity where the action
/// names none more precise.
pub fn classify(action: &str, operation_type: Option<&str>) -> (Class, i32) {
    use Class::*;
    let generic = match operation_type {
        Some("create") => 1,
        Some("access") => 2,
        Some("modify") => 3,
        Some("remove") => 4,
        _ => 99,
    };
    let (category, verb) = action.split_once('.').unwrap_or((action, ""));
    match (category, verb) {
        (_, "sso_response") | ("user", "login" | "failed_login") => (Authentication, 1),
        ("user", "logout") => (Authentication, 2),
        ("oauth_authorization", _) => (Authentication, 99),
        _ if operation_type == Some("authentication") => (Authentication, 99),
        ("user", v) => (
            AccountChange,
            match v {
                "create" => 1,
                "unsuspend" => 2,
                "change_password" => 3,
                "forgot_password" | "reset_password" => 4,
                "suspend" => 5,
                "destroy" | "delete" => 6,
                _ => 99,
            },
        ),
        ("two_factor_authentication", v) => (
            AccountChange,
            match v {
                "enabled" | "add_factor" => 10,
                "disabled" | "remove_factor" => 11,
                _ => 99,
            },
        ),
        ("org", "add_member" | "remove_member" | "update_member") => (AccountChange, 99),
        ("org", "create") => (EntityManagement, 1),
        ("org", "rename") => (EntityManagement, 3),
        ("org", "delete" | "destroy") => (EntityManagement, 4),
        ("repo", "create") => (EntityManagement, 1),
        ("repo", "update" | "access" | "rename" | "archived" | "unarchived") => (EntityManagement, 3),
        ("repo", "destroy") => (EntityManagement, 4),
        ("repo", "transfer") => (EntityManagement, 5),
        ("protected_branch", "create") => (EntityManagement, 1),
        ("protected_branch", "destroy") => (EntityManagement, 4),
        ("protected_branch", v) if v.starts_with("update") => (EntityManagement, 3),
        ("team", v) => (
            GroupManagement,
            match v {
                "add_repository" => 1,
                "remove_repository" => 2,
                "add_member" => 3,
                "remove_member" => 4,
                _ => 99,
            },
        ),
        _ if action == "protected_branch.policy_override" => (ApiActivity, 3),
        _ => (ApiActivity, generic),
    }
}

/// Branch-protection settings an auditor asks about ("who turned off required
/// reviews?"): copied into `entity_result.data` when the event carries them.
const BRANCH_SETTINGS: &[&str] = &[
    "admin_enforced",
    "allow_deletions_enforcement_level",
    "allow_force_pushes_enforcement_level",
    "dismiss_stale_reviews_on_push",
    "linear_history_requirement_enforcement_level",
    "merge_queue_enforcement_level",
    "pull_request_reviews_enforcement_level",
    "require_code_owner_review",
    "require_last_push_approval",
    "required_approving_review_count",
    "required_deployments_enforcement_level",
    "required_status_checks_enforcement_level",
    "signature_requirement_enforcement_level",
    "strict_required_status_checks_policy",
];

struct ClassCols {
    cols: Cols,
    change: Option<ChangeCols>,
}

pub struct GitHubAudit {
    per_class: Vec<ClassCols>,
}

impl Default for GitHubAudit {
    fn default() -> Self {
        let per_class = Class::ALL
            .iter()
            .map(|&class| {
                let b = ColumnBatch::new(crate::ocsf::dataset_columns(class));
                let change = b.try_slot("change.vcs").map(|_| ChangeCols::resolve(&b));
                ClassCols { cols: Cols::resolve(&b), change }
            })
            .collect();
        GitHubAudit { per_class }
    }
}

fn subject_user(batch: &mut ColumnBatch, u: &UserCols, p: &Val<'_, '_>) -> bool {
    let name = p.get_str("user").filter(|s| !s.is_empty());
    let uid = id_text(p.get("user_id"));
    if let Some(n) = name {
        batch.str(u.name, n);
    }
    if let Some(id) = &uid {
        batch.str(u.uid, id);
    }
    name.is_some() || uid.is_some()
}

impl GitHubAudit {
    pub fn normalize(&mut self, p: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Result<Class, Rejected> {
        let action = p.get_str("action").unwrap_or("unknown");
        // `@timestamp` and `created_at` are milliseconds since the epoch.
        let time = number(p.get("@timestamp")).or_else(|| number(p.get("created_at"))).ok_or_else(|| Rejected {
            reason: Reason::MissingField,
            detail: "audit-log event without @timestamp or created_at".into(),
        })?;
        let (class, activity_id) = classify(action, p.get_str("operation_type"));
        let org = p.get_str("org").filter(|s| !s.is_empty());
        let business = p.get_str("business").filter(|s| !s.is_empty());
        let batch = out.get(class, "unknown", partition_value(org.or(business)), event_day(time));
        let ClassCols { cols: c, change } = &self.per_class[class.index()];

        // A push or merge that bypassed branch protection is the event an
        // auditor of change control looks for first.
        let overridden = action == "protected_branch.policy_override";
        row::header_with_severity(batch, c, class, activity_id, action, time, if overridden { 3 } else { 1 });
        let failed = action.ends_with("failed_login");
        let status_id = if failed { 2 } else { 1 };
        batch.i32(c.status_id, status_id);
        batch.str(c.status, status_caption(status_id));

        batch.str(c.md_version, OCSF_VERSION);
        batch.str(c.md_product_name, "GitHub Audit Log");
        batch.str(c.md_product_vendor, "GitHub");
        batch.str(c.md_log_name, "audit-log");
        batch.str(c.md_event_code, action);
        if let Some(id) = p.get_str("_document_id") {
            batch.str(c.md_uid, id);
            batch.str(c.md_original_event_uid, id);
        }
        batch.str(c.md_log_source, ctx.source_file);
        batch.list_str(c.md_profiles, c.md_profile, ["datetime"]);

        let u = &c.actor_user;
        if let Some(a) = p.get_str("actor").filter(|s| !s.is_empty()) {
            batch.str(u.name, a);
        }
        if let Some(id) = id_text(p.get("actor_id")) {
            batch.str(u.uid, &id);
        }
        if let Some(e) = p.get_str("external_identity_nameid").filter(|s| !s.is_empty()) {
            batch.str(u.email_addr, e);
        }
        if org.is_some() || p.get("org_id").is_some() {
            if let Some(o) = org {
                batch.str(u.account_name, o);
            }
            if let Some(id) = id_text(p.get("org_id")) {
                batch.str(u.account_uid, &id);
            }
            batch.i32(u.account_type_id, 99);
            batch.str(u.account_type, "Other");
        }
        if let Some(s) = id_text(p.get("actor_session")) {
            batch.str(c.actor_session.uid, &s);
        }
        if let Some(issuer) = p.get_str("issuer").filter(|s| !s.is_empty()) {
            batch.str(c.actor_session.issuer, issuer);
        }

        batch.str(c.api_operation, action);
        batch.str(c.api_service_name, "github");
        if let Some(ip) = p.get_str("actor_ip").filter(|s| !s.is_empty()) {
            if ip.parse::<IpAddr>().is_ok() {
                batch.str(c.src.ip, ip);
            } else {
                batch.str(c.src.hostname, ip);
            }
        }
        if let Some(ua) = p.get_str("user_agent") {
            batch.str(c.http_user_agent, ua);
        }
        if let Some(path) = p.get_str("url_path") {
            batch.str(c.http_url_path, path);
        }

        let repo = p.get_str("repo").or_else(|| p.get_str("repository")).filter(|s| !s.is_empty());
        let repo_id = id_text(p.get("repo_id")).or_else(|| id_text(p.get("repository_id")));
        if let Some(rc) = &c.resources
            && (repo.is_some() || repo_id.is_some())
        {
            batch.list_begin(rc.list);
            if let Some(id) = &repo_id {
                batch.str(rc.uid, id);
            }
            if let Some(n) = repo {
                batch.str(rc.name, n);
            }
            batch.str(rc.type_, "repository");
            batch.item_end(rc.list);
            if overridden && let Some(b) = p.get_str("branch").filter(|s| !s.is_empty()) {
                let full = if b.starts_with("refs/") { b.to_string() } else { format!("refs/heads/{b}") };
                batch.str(rc.name, &full);
                batch.str(rc.type_, "branch");
                batch.item_end(rc.list);
            }
            batch.list_end(rc.list);
        }
        if overridden {
            batch.list_begin(c.actor_authorizations);
            batch.str(c.actor_authz_decision, "override");
            batch.str(c.actor_authz_policy_name, "branch protection");
            batch.item_end(c.actor_authorizations);
            batch.list_end(c.actor_authorizations);
        }
        if let Some(ch) = change {
            batch.str(ch.vcs, "github");
            if let Some(n) = repo {
                batch.str(ch.repo_name, n);
            }
            if let Some(id) = &repo_id {
                batch.str(ch.repo_uid, id);
            }
        }

        let (category, _) = action.split_once('.').unwrap_or((action, ""));
        match class {
            Class::Authentication => {
                let a = c.auth.as_ref().expect("Authentication columns");
                if !subject_user(batch, &a.user, &p)
                    && let Some(n) = p.get_str("actor").filter(|s| !s.is_empty())
                {
                    batch.str(a.user.name, n);
                }
                batch.str(a.service_name, "github");
                let (proto_id, proto) = if category == "oauth_authorization" {
                    (6, "OAUTH 2.0")
                } else if action.contains("sso") || action.contains("saml") || p.get("issuer").is_some() {
                    (5, "SAML")
                } else {
                    (0, "Unknown")
                };
                batch.i32(a.auth_protocol_id, proto_id);
                batch.str(a.auth_protocol, proto);
                batch.i32(a.logon_type_id, 99);
                batch.str(a.logon_type, "Other");
                batch.bool(a.is_remote, true);
            }
            Class::AccountChange => {
                let a = c.account_change.as_ref().expect("Account Change columns");
                if !subject_user(batch, &a.user, &p) && category == "two_factor_authentication" {
                    // A user changing their own second factor.
                    if let Some(n) = p.get_str("actor").filter(|s| !s.is_empty()) {
                        batch.str(a.user.name, n);
                    }
                }
            }
            Class::EntityManagement => {
                let e = c.entity.as_ref().expect("Entity Management columns");
                match category {
                    "org" => {
                        if let Some(o) = org {
                            batch.str(e.entity.name, o);
                        }
                        if let Some(id) = id_text(p.get("org_id")) {
                            batch.str(e.entity.uid, &id);
                        }
                        batch.i32(e.entity.type_id, 4);
                        batch.str(e.entity.type_, "Org");
                    }
                    "repo" => {
                        if let Some(n) = repo {
                            batch.str(e.entity.name, n);
                        }
                        if let Some(id) = &repo_id {
                            batch.str(e.entity.uid, id);
                        }
                        batch.i32(e.entity.type_id, 99);
                        batch.str(e.entity.type_, "Repository");
                        let before: Vec<_> =
                            p.get("previous_visibility").map(|v| ("visibility", v)).into_iter().collect();
                        row::members_json(batch, e.entity.data, &before, ctx.source);
                        let after: Vec<_> = p.get("visibility").map(|v| ("visibility", v)).into_iter().collect();
                        if !after.is_empty() {
                            row::members_json(batch, e.result.data, &after, ctx.source);
                            batch.i32(e.result.type_id, 99);
                            batch.str(e.result.type_, "Repository");
                        }
                    }
                    _ => {
                        // protected_branch: the rule is a policy named by its branch pattern.
                        if let Some(n) = p.get_str("name").or_else(|| p.get_str("branch")).filter(|s| !s.is_empty()) {
                            batch.str(e.entity.name, n);
                        }
                        batch.i32(e.entity.type_id, 5);
                        batch.str(e.entity.type_, "Policy");
                        let setting = |k: &str| BRANCH_SETTINGS.binary_search(&k).is_ok();
                        if row::part_json(batch, e.result.data, &p, setting, ctx.source) {
                            batch.i32(e.result.type_id, 5);
                            batch.str(e.result.type_, "Policy");
                        }
                    }
                }
            }
            Class::GroupManagement => {
                let g = c.group.as_ref().expect("Group Management columns");
                if let Some(t) = p.get_str("team").filter(|s| !s.is_empty()) {
                    batch.str(g.group_name, t);
                }
                if let Some(id) = id_text(p.get("team_id")) {
                    batch.str(g.group_uid, &id);
                }
                batch.str(g.group_type, "team");
                subject_user(batch, &g.user, &p);
                if let Some(perm) = p.get_str("permission").filter(|s| !s.is_empty()) {
                    batch.list_str(g.privileges, g.privilege, [perm]);
                }
                if matches!(activity_id, 1 | 2) {
                    if let Some(n) = repo {
                        batch.str(g.resource_name, n);
                    }
                    if let Some(id) = &repo_id {
                        batch.str(g.resource_uid, id);
                    }
                    batch.str(g.resource_type, "repository");
                }
            }
            Class::ApiActivity => {}
        }

        let subject: &[&str] = match class {
            Class::Authentication | Class::AccountChange => &["user", "user_id"],
            Class::GroupManagement => &["user", "user_id", "team", "team_id", "permission"],
            Class::EntityManagement | Class::ApiActivity => &[],
        };
        row::part_json(batch, c.unmapped, &p, |k| !MAPPED.contains(&k) && !subject.contains(&k), ctx.source);
        row::finish(batch, c, ctx, &p, &[]);
        Ok(class)
    }
}
