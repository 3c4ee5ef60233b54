//! GitHub audit-log streaming events (`action`, `actor`, `@timestamp`,
//! `_document_id`, ...) → OCSF API Activity (6003), after the OCSF project's
//! GitHub audit-log mapping. Every action is API Activity for now; routing
//! the user, team, SSO and repository-settings actions to their IAM classes
//! is listed as future work in `schemas/README.md`.

use std::net::IpAddr;

use super::cols::Cols;
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
pub fn is_event(root: &Val<'_, '_>) -> bool {
    root.get_str("action").is_some_and(|a| a.contains('.'))
        && root.get("actor").is_some()
        && (root.get("@timestamp").is_some() || root.get("_document_id").is_some())
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
];

fn number(v: Option<Val<'_, '_>>) -> Option<i64> {
    match v?.node() {
        simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(n),
        simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(n).ok(),
        simd_json::Node::Static(simd_json::StaticNode::F64(f)) if f.is_finite() => Some(f as i64),
        _ => None,
    }
}

pub struct GitHubAudit {
    cols: Cols,
    change: ChangeCols,
}

impl Default for GitHubAudit {
    fn default() -> Self {
        let b = ColumnBatch::new(crate::ocsf::dataset_columns(Class::ApiActivity));
        GitHubAudit { cols: Cols::resolve(&b), change: ChangeCols::resolve(&b) }
    }
}

impl GitHubAudit {
    pub fn normalize(&mut self, p: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Result<Class, Rejected> {
        let action = p.get_str("action").unwrap_or("unknown");
        // `@timestamp` and `created_at` are milliseconds since the epoch.
        let time = number(p.get("@timestamp")).or_else(|| number(p.get("created_at"))).ok_or_else(|| Rejected {
            reason: Reason::MissingField,
            detail: "audit-log event without @timestamp or created_at".into(),
        })?;
        let org = p.get_str("org").filter(|s| !s.is_empty());
        let business = p.get_str("business").filter(|s| !s.is_empty());
        let batch = out.get(Class::ApiActivity, "unknown", partition_value(org.or(business)), event_day(time));
        let (c, ch) = (&self.cols, &self.change);

        let activity_id = match p.get_str("operation_type") {
            Some("create") => 1,
            Some("access") => 2,
            Some("modify") => 3,
            Some("remove") => 4,
            _ => 99,
        };
        row::header(batch, c, Class::ApiActivity, activity_id, action, time);
        batch.i32(c.status_id, 1);
        batch.str(c.status, status_caption(1));

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
        let rc = c.resources.as_ref().expect("API Activity has resources");
        if repo.is_some() || repo_id.is_some() {
            batch.list_begin(rc.list);
            if let Some(id) = &repo_id {
                batch.str(rc.uid, id);
            }
            if let Some(n) = repo {
                batch.str(rc.name, n);
            }
            batch.str(rc.type_, "repository");
            batch.item_end(rc.list);
            batch.list_end(rc.list);
        }
        batch.str(ch.vcs, "github");
        if let Some(n) = repo {
            batch.str(ch.repo_name, n);
        }
        if let Some(id) = &repo_id {
            batch.str(ch.repo_uid, id);
        }

        let unmapped: Vec<_> = p.entries().filter(|(k, _)| !MAPPED.contains(k)).collect();
        row::members_json(batch, c.unmapped, &unmapped);
        row::finish(batch, c, ctx, &p, &[]);
        Ok(Class::ApiActivity)
    }
}
