//! Kubernetes API-server audit events (`audit.k8s.io/v1` `Event`) → OCSF
//! API Activity (6003), as Amazon Security Lake maps EKS audit logs, without
//! the published mappings' defects (see `schemas/README.md`).
//!
//! Every stage of a request (RequestReceived, ResponseStarted,
//! ResponseComplete, Panic) is its own row, tied to the others by
//! `metadata.correlation_uid` = `auditID`.

use std::net::IpAddr;

use super::cols::Cols;
use super::time::{event_day, parse_rfc3339_ms};
use super::{Ctx, Rejected, row};
use crate::batch::columns::ColumnBatch;
use crate::batch::{Batcher, partition_value};
use crate::deadletter::Reason;
use crate::decode::json::Val;
use crate::ocsf::{Class, OCSF_VERSION, status_caption};

/// An audit `Event` (the log backend's lines, or an `EventList` item).
/// Older clusters (audit.k8s.io/v1beta1 era) wrote no `apiVersion`.
pub(super) fn is_event(s: &super::Signs<'_, '_>) -> bool {
    let kind = super::str_of(s.kind);
    match super::str_of(s.api_version) {
        Some(v) => v.starts_with("audit.k8s.io/") && kind.is_none_or(|k| k == "Event"),
        None => kind == Some("Event") && s.audit_id.is_some() && s.verb.is_some(),
    }
}

/// The webhook backend's batch: `{"kind":"EventList","items":[...]}`;
/// `kind` is the record's.
pub fn event_list_items<'t, 'i>(root: &Val<'t, 'i>, kind: Option<&str>) -> Option<Val<'t, 'i>> {
    (kind == Some("EventList") && root.get_str("apiVersion").is_some_and(|v| v.starts_with("audit.k8s.io/")))
        .then(|| root.get("items"))
        .flatten()
}

/// Members of an audit event that the mapping consumes; the rest goes to `unmapped`.
#[derive(Clone, Copy)]
enum M {
    Kind,
    ApiVersion,
    AuditId,
    Stage,
    RequestUri,
    Verb,
    User,
    SourceIps,
    UserAgent,
    ObjectRef,
    ResponseStatus,
    RequestObject,
    ResponseObject,
    RequestReceivedTimestamp,
    StageTimestamp,
    Annotations,
}

const NM: usize = M::Annotations as usize + 1;

impl M {
    fn of(k: &str) -> Option<M> {
        Some(match k {
            "kind" => M::Kind,
            "apiVersion" => M::ApiVersion,
            "auditID" => M::AuditId,
            "stage" => M::Stage,
            "requestURI" => M::RequestUri,
            "verb" => M::Verb,
            "user" => M::User,
            "sourceIPs" => M::SourceIps,
            "userAgent" => M::UserAgent,
            "objectRef" => M::ObjectRef,
            "responseStatus" => M::ResponseStatus,
            "requestObject" => M::RequestObject,
            "responseObject" => M::ResponseObject,
            "requestReceivedTimestamp" => M::RequestReceivedTimestamp,
            "stageTimestamp" => M::StageTimestamp,
            "annotations" => M::Annotations,
            _ => return None,
        })
    }
}

/// An event's mapped members, each with its key as the record holds it,
/// found in one pass: a `Val::get` for each was a pass for each (7-9% of a
/// Kubernetes run, benches/README.md, session 35). The first of a repeated
/// key, as `get` finds.
struct Members<'t, 'i>([Option<(&'i str, Val<'t, 'i>)>; NM]);

impl<'t, 'i> Members<'t, 'i> {
    fn of(root: &Val<'t, 'i>) -> Self {
        let mut m = Members([None; NM]);
        for (k, v) in root.entries() {
            if let Some(slot) = M::of(k).map(|i| &mut m.0[i as usize])
                && slot.is_none()
            {
                *slot = Some((k, v));
            }
        }
        m
    }

    fn get(&self, m: M) -> Option<Val<'t, 'i>> {
        self.0[m as usize].map(|(_, v)| v)
    }

    fn member(&self, m: M) -> Option<(&'i str, Val<'t, 'i>)> {
        self.0[m as usize]
    }
}

pub struct Kubernetes {
    cols: Cols,
    pub(super) final_stage_only: bool,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            cols: Cols::resolve(&ColumnBatch::new(crate::ocsf::dataset_columns(Class::ApiActivity))),
            final_stage_only: false,
        }
    }
}

fn activity(verb: &str) -> i32 {
    match verb {
        "create" => 1,
        "get" | "list" | "watch" => 2,
        "update" | "patch" => 3,
        "delete" | "deletecollection" => 4,
        _ => 99,
    }
}

/// `system:serviceaccount:*` is a service, other `system:*` the system.
fn user_type(name: &str) -> (i32, &'static str) {
    if name.starts_with("system:serviceaccount:") {
        (4, "Service")
    } else if name.starts_with("system:") {
        (3, "System")
    } else {
        (1, "User")
    }
}

fn first<'i>(v: Option<Val<'_, 'i>>) -> Option<&'i str> {
    v.and_then(|a| a.elements().next()).and_then(|e| e.as_str()).filter(|s| !s.is_empty())
}

/// The 12-digit account of an ARN (`arn:aws:sts::123456789012:...`).
fn arn_account(arn: &str) -> Option<&str> {
    let acct = arn.split(':').nth(4)?;
    (acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit())).then_some(acct)
}

impl Kubernetes {
    pub fn normalize(
        &mut self,
        envelope: Val<'_, '_>,
        root: Val<'_, '_>,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
    ) -> Result<Class, Rejected> {
        let members = Members::of(&root);
        let str_field = |m: M, k: &'static str| -> Result<Option<&str>, Rejected> {
            match members.get(m) {
                None => Ok(None),
                Some(v) if v.is_null() => Ok(None),
                Some(v) => v.as_str().map(Some).ok_or_else(|| Rejected {
                    reason: Reason::WrongFieldType,
                    detail: format!("{k} must be a string, found {}", v.type_name()),
                }),
            }
        };
        let verb = str_field(M::Verb, "verb")?.ok_or_else(|| Rejected {
            reason: Reason::MissingField,
            detail: "required field verb is missing".into(),
        })?;
        let audit_id = str_field(M::AuditId, "auditID")?;
        let stage = str_field(M::Stage, "stage")?;
        if self.final_stage_only && matches!(stage, Some("RequestReceived" | "ResponseStarted")) {
            return Err(Rejected { reason: Reason::Filtered, detail: "not the final stage".into() });
        }
        let time_str = str_field(M::StageTimestamp, "stageTimestamp")?
            .or(str_field(M::RequestReceivedTimestamp, "requestReceivedTimestamp")?)
            .ok_or_else(|| Rejected {
                reason: Reason::MissingField,
                detail: "required field stageTimestamp is missing".into(),
            })?;
        let time = parse_rfc3339_ms(time_str).ok_or_else(|| Rejected {
            reason: Reason::InvalidTimestamp,
            detail: format!("stageTimestamp {time_str:?} is not an RFC 3339 timestamp"),
        })?;

        let user = members.get(M::User).filter(|u| u.is_object());
        let extra = user.and_then(|u| u.get("extra"));
        // EKS adds the IAM identity behind the Kubernetes user.
        let eks_arn = first(extra.and_then(|e| e.get("arn")));
        let account = eks_arn.and_then(arn_account);
        let batch = out.get(Class::ApiActivity, "unknown", partition_value(account), event_day(time));
        let c = &self.cols;

        let activity_id = activity(verb);
        row::header(batch, c, Class::ApiActivity, activity_id, verb, time);

        let status = members.get(M::ResponseStatus).filter(|s| s.is_object());
        let code = status.and_then(|s| s.get("code")).and_then(|c| match c.node() {
            simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(n),
            simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(n).ok(),
            _ => None,
        });
        let status_id = match code {
            Some(c) if (100..400).contains(&c) => 1,
            Some(_) => 2,
            None => 0,
        };
        batch.i32(c.status_id, status_id);
        batch.str(c.status, status_caption(status_id));
        if let Some(code) = code {
            batch.str_with(c.status_code, |b| b.extend_from_slice(code.to_string().as_bytes()));
        }
        if let Some(s) = status {
            if let Some(m) = s.get_str("message").filter(|m| !m.is_empty()) {
                batch.str(c.status_detail, m);
                batch.str(c.api_response_message, m);
            }
            if let Some(r) = s.get_str("reason").filter(|r| !r.is_empty()) {
                batch.str(c.api_response_error, r);
            }
        }

        // metadata
        batch.str(c.md_version, OCSF_VERSION);
        let eks = eks_arn.is_some();
        batch.str(c.md_product_name, if eks { "Amazon EKS" } else { "Kubernetes" });
        batch.str(c.md_product_vendor, if eks { "AWS" } else { "Kubernetes" });
        if let Some(v) = str_field(M::ApiVersion, "apiVersion")? {
            batch.str(c.md_product_version, v);
        }
        batch.str(c.md_feature_name, "Audit");
        batch.str(c.md_log_name, "kube-apiserver-audit");
        if let Some(id) = audit_id {
            // One auditID has up to four stages: each row is its own event.
            batch.str_with(c.md_uid, |b| {
                b.extend_from_slice(id.as_bytes());
                b.push(b':');
                b.extend_from_slice(stage.unwrap_or("").as_bytes());
            });
            batch.str(c.md_original_event_uid, id);
            batch.str(c.md_correlation_uid, id);
            batch.str(c.api_request_uid, id);
        }
        if let Some(st) = stage {
            batch.str(c.md_event_code, st);
        }
        batch.str(c.md_log_source, ctx.source_file);
        batch.str(c.md_original_time, time_str);
        if eks {
            batch.list_str(c.md_profiles, c.md_profile, ["cloud", "datetime"]);
            batch.str(c.cloud_provider, "AWS");
            if let Some(a) = account {
                batch.str(c.cloud_account_uid, a);
                batch.i32(c.cloud_account_type_id, 10);
                batch.str(c.cloud_account_type, "AWS Account");
            }
        } else {
            batch.list_str(c.md_profiles, c.md_profile, ["datetime"]);
        }

        // actor
        if let Some(u) = user {
            let u_cols = &c.actor_user;
            if let Some(name) = u.get_str("username") {
                batch.str(u_cols.name, name);
                let (tid, t) = user_type(name);
                batch.i32(u_cols.type_id, tid);
                batch.str(u_cols.type_, t);
            }
            if let Some(uid) = u.get_str("uid").filter(|s| !s.is_empty()) {
                batch.str(u_cols.uid, uid);
            }
            if let Some(groups) = u.get("groups").filter(|g| g.elements().next().is_some()) {
                batch.list_begin(u_cols.groups);
                for g in groups.elements() {
                    if let Some(name) = g.as_str() {
                        batch.str(u_cols.group_name, name);
                    }
                    batch.item_end(u_cols.groups);
                }
                batch.list_end(u_cols.groups);
            }
            if let Some(e) = extra {
                if let Some(v) = first(e.get("principalId")) {
                    batch.str(u_cols.uid_alt, v);
                }
                if let Some(v) = first(e.get("accessKeyId")) {
                    batch.str(c.actor_session.credential_uid, v);
                }
                if let Some(v) = first(e.get("sessionName")) {
                    batch.str(c.actor_session.uid, v);
                }
                if let Some(v) = first(e.get("canonicalArn")) {
                    batch.str(c.actor_session.issuer, v);
                }
            }
        }
        let annotations = members.get(M::Annotations);
        let decision = annotations.and_then(|a| a.get_str("authorization.k8s.io/decision"));
        let reason = annotations.and_then(|a| a.get_str("authorization.k8s.io/reason")).filter(|r| !r.is_empty());
        if decision.is_some() || reason.is_some() {
            batch.list_begin(c.actor_authorizations);
            if let Some(d) = decision {
                batch.str(c.actor_authz_decision, d);
            }
            if let Some(r) = reason {
                batch.str(c.actor_authz_policy_name, r);
            }
            batch.item_end(c.actor_authorizations);
            batch.list_end(c.actor_authorizations);
        }

        // api and resources
        batch.str(c.api_operation, verb);
        batch.str(c.api_service_name, "kube-apiserver");
        let obj = members.get(M::ObjectRef).filter(|o| o.is_object());
        if let Some(v) = obj.and_then(|o| o.get_str("apiVersion")) {
            batch.str(c.api_version, v);
        }
        if let Some(o) = obj {
            let rc = c.resources.as_ref().expect("API Activity has resources");
            batch.list_begin(rc.list);
            match (o.get_str("resource"), o.get_str("subresource")) {
                (Some(r), Some(sub)) => batch.str_with(rc.type_, |b| {
                    b.extend_from_slice(r.as_bytes());
                    b.push(b'/');
                    b.extend_from_slice(sub.as_bytes());
                }),
                (Some(r), None) => batch.str(rc.type_, r),
                _ => {}
            }
            if let Some(v) = o.get_str("name") {
                batch.str(rc.name, v);
            }
            if let Some(v) = o.get_str("namespace") {
                batch.str(rc.namespace, v);
            }
            if let Some(v) = o.get_str("uid") {
                batch.str(rc.uid, v);
            }
            if let Some(v) = o.get_str("resourceVersion") {
                batch.str(rc.version, v);
            }
            batch.item_end(rc.list);
            batch.list_end(rc.list);
        }
        if let Some((k, v)) = members.member(M::RequestObject).filter(|(_, v)| !v.is_null()) {
            batch.json_member(c.api_request_data, k, &v, ctx.source);
        }
        if let Some((k, v)) = members.member(M::ResponseObject).filter(|(_, v)| !v.is_null()) {
            batch.json_member(c.api_response_data, k, &v, ctx.source);
        }

        // endpoints and http
        if let Some(ip) = first(members.get(M::SourceIps)) {
            if ip.parse::<IpAddr>().is_ok() {
                batch.str(c.src.ip, ip);
            } else {
                batch.str(c.src.hostname, ip);
            }
        }
        if let Some(ua) = str_field(M::UserAgent, "userAgent")? {
            batch.str(c.http_user_agent, ua);
        }
        if let Some(uri) = str_field(M::RequestUri, "requestURI")? {
            batch.str(c.http_url_path, uri);
        }

        // unmapped: level, impersonatedUser, user.extra, further source IPs, other annotations, ...
        let more_ips = members.get(M::SourceIps).is_some_and(|ips| ips.elements().nth(1).is_some());
        let other_annotations = annotations.is_some_and(|a| {
            a.entries().any(|(k, _)| k != "authorization.k8s.io/decision" && k != "authorization.k8s.io/reason")
        });
        let keep = |k: &str| {
            M::of(k).is_none()
                || (k == "sourceIPs" && more_ips)
                || (k == "annotations" && other_annotations)
                || (k == "user" && extra.is_some())
        };
        row::part_json(batch, c.unmapped, &root, keep, ctx.source);
        row::finish(batch, c, ctx, &envelope, &[]);
        Ok(Class::ApiActivity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_users() {
        assert_eq!(activity("list"), 2);
        assert_eq!(activity("deletecollection"), 4);
        assert_eq!(activity("impersonate"), 99);
        assert_eq!(user_type("system:serviceaccount:kube-system:default"), (4, "Service"));
        assert_eq!(user_type("system:node:ip-10-0-0-1"), (3, "System"));
        assert_eq!(user_type("alice@example.com"), (1, "User"));
        assert_eq!(arn_account("arn:aws:sts::111122223333:assumed-role/x/y"), Some("111122223333"));
        assert_eq!(arn_account("arn:aws:iam::P119024012704:role/x"), None);
    }
}
