//! GitLab webhook bodies (`object_kind`: merge_request, pipeline, deployment,
//! push, tag_push, build, note, release, ...) → OCSF API Activity (6003)
//! with the trailship `change` object, like GitHub's.

use super::cols::Cols;
use super::github::ChangeCols;
use super::row::{self, id_text};
use super::time::{event_day, parse_rfc3339_ms};
use super::{Ctx, Rejected};
use crate::batch::columns::ColumnBatch;
use crate::batch::{Batcher, partition_value};
use crate::deadletter::Reason;
use crate::decode::json::Val;
use crate::ocsf::{Class, OCSF_VERSION, status_caption};

/// A GitLab webhook body: `object_kind` (or the system hook's `event_name`)
/// with a project.
pub(super) fn is_webhook(s: &super::Signs<'_, '_>) -> bool {
    let kind = super::str_of(s.object_kind).or_else(|| super::str_of(s.event_name));
    kind.is_some() && (s.project.is_some() || s.project_id.is_some() || s.group_id.is_some())
}

/// GitLab writes three shapes: `2013-12-03T17:23:34Z`,
/// `2016-08-12 15:23:28 UTC` and `2021-04-28 21:50:00 +0200`.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Some(t) = parse_rfc3339_ms(s) {
        return Some(t);
    }
    let (stamp, zone) = s.rsplit_once(' ')?;
    let zone = match zone {
        "UTC" | "Z" => "Z".to_string(),
        z if z.len() == 5 && matches!(z.as_bytes()[0], b'+' | b'-') => format!("{}:{}", &z[..3], &z[3..]),
        _ => return None,
    };
    parse_rfc3339_ms(&format!("{stamp}{zone}"))
}

fn time_of(v: Option<Val<'_, '_>>) -> Option<i64> {
    v.and_then(|v| v.as_str()).and_then(parse_time)
}

pub struct GitLab {
    cols: Cols,
    change: ChangeCols,
}

impl Default for GitLab {
    fn default() -> Self {
        let b = ColumnBatch::new(crate::ocsf::dataset_columns(Class::ApiActivity));
        GitLab { cols: Cols::resolve(&b), change: ChangeCols::resolve(&b) }
    }
}

impl GitLab {
    pub fn normalize(
        &mut self,
        envelope: Val<'_, '_>,
        p: Val<'_, '_>,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
    ) -> Result<Class, Rejected> {
        let kind = p.get_str("object_kind").or_else(|| p.get_str("event_name")).unwrap_or("unknown");
        let attrs = p.get("object_attributes").filter(|a| a.is_object());
        // merge_request: open, update, approved, merge, close...; pipeline and
        // deployment: their status; others: `action` where they have one.
        let action = match kind {
            "pipeline" => attrs.and_then(|a| a.get_str("status")),
            "deployment" => p.get_str("status"),
            "build" => p.get_str("build_status"),
            _ => attrs.and_then(|a| a.get_str("action")).or_else(|| p.get_str("action")),
        };
        let last_commit_time =
            p.get("commits").and_then(|c| c.elements().last()).and_then(|c| time_of(c.get("timestamp")));
        let time = match kind {
            "pipeline" => attrs.and_then(|a| time_of(a.get("finished_at")).or(time_of(a.get("created_at")))),
            "deployment" => time_of(p.get("status_changed_at")),
            "build" => time_of(p.get("build_finished_at"))
                .or(time_of(p.get("build_started_at")))
                .or(time_of(p.get("build_created_at"))),
            "push" | "tag_push" => last_commit_time,
            "release" => time_of(p.get("released_at")).or(time_of(p.get("created_at"))),
            _ => attrs.and_then(|a| time_of(a.get("updated_at")).or(time_of(a.get("created_at")))),
        }
        .or_else(|| time_of(p.get("updated_at")))
        .or_else(|| time_of(p.at(&["project", "updated_at"])))
        .ok_or_else(|| Rejected {
            reason: Reason::MissingField,
            detail: format!("GitLab {kind} event without a usable time"),
        })?;

        let project = p.get("project").filter(|x| x.is_object());
        let namespace = project
            .and_then(|x| x.get_str("path_with_namespace"))
            .and_then(|pw| pw.split('/').next())
            .or_else(|| p.get_str("group_path"));
        let batch = out.get(Class::ApiActivity, "unknown", partition_value(namespace), event_day(time));
        let (c, ch) = (&self.cols, &self.change);

        let activity_id = match (kind, action) {
            ("merge_request", Some("open" | "reopen")) => 1,
            ("merge_request", Some("close")) => 4,
            ("push" | "tag_push", _) if p.get_str("before").is_some_and(|b| b.bytes().all(|x| x == b'0')) => 1,
            ("push" | "tag_push", _) if p.get_str("after").is_some_and(|b| b.bytes().all(|x| x == b'0')) => 4,
            ("pipeline" | "deployment" | "build", Some("created" | "pending")) => 1,
            (_, Some("create" | "created" | "open")) => 1,
            (_, Some("delete" | "deleted" | "destroy")) => 4,
            _ => 3,
        };
        row::header(batch, c, Class::ApiActivity, activity_id, kind, time);
        let status_id = match (kind, action) {
            ("pipeline" | "deployment" | "build", Some("success")) => 1,
            ("pipeline" | "deployment" | "build", Some("failed" | "canceled" | "canceling")) => 2,
            ("pipeline" | "deployment" | "build", _) => 99,
            _ => 1,
        };
        batch.i32(c.status_id, status_id);
        batch.str(c.status, status_caption(status_id));
        if matches!(kind, "pipeline" | "deployment" | "build")
            && let Some(a) = action
        {
            batch.str(c.status_code, a);
            batch.str(ch.conclusion, a);
        }

        batch.str(c.md_version, OCSF_VERSION);
        batch.str(c.md_product_name, "GitLab");
        batch.str(c.md_product_vendor, "GitLab");
        batch.str(c.md_feature_name, "Webhooks");
        batch.str(c.md_log_name, "webhooks");
        batch.str(c.md_event_code, kind);
        batch.str(c.md_log_source, ctx.source_file);
        batch.list_str(c.md_profiles, c.md_profile, ["datetime"]);

        // actor: `user`, or the push hooks' flat user_* members
        let user = p.get("user").filter(|u| u.is_object());
        let login = user.and_then(|u| u.get_str("username")).or_else(|| p.get_str("user_username"));
        let user_id = id_text(user.and_then(|u| u.get("id"))).or_else(|| id_text(p.get("user_id")));
        if let Some(v) = login {
            batch.str(c.actor_user.name, v);
            batch.i32(c.actor_user.type_id, 1);
            batch.str(c.actor_user.type_, "User");
        }
        if let Some(v) = &user_id {
            batch.str(c.actor_user.uid, v);
        }

        batch.str_with(c.api_operation, |b| {
            b.extend_from_slice(kind.as_bytes());
            if let Some(a) = action {
                b.push(b'.');
                b.extend_from_slice(a.as_bytes());
            }
        });
        batch.str(c.api_service_name, "gitlab");
        batch.json(c.api_request_data, &p);
        let host = project
            .and_then(|x| x.get_str("web_url"))
            .and_then(|u| u.split("://").nth(1))
            .and_then(|r| r.split('/').next())
            .unwrap_or("gitlab.com");
        batch.str(c.src.hostname, host);

        let rc = c.resources.as_ref().expect("API Activity has resources");
        batch.list_begin(rc.list);
        if let Some(x) = project {
            if let Some(id) = id_text(x.get("id")) {
                batch.str(rc.uid, &id);
            }
            if let Some(n) = x.get_str("path_with_namespace") {
                batch.str(rc.name, n);
            }
            batch.str(rc.type_, "project");
            batch.item_end(rc.list);
        }
        if kind == "merge_request"
            && let Some(a) = attrs
        {
            if let Some(id) = id_text(a.get("id")) {
                batch.str(rc.uid, &id);
            }
            if let Some(n) = id_text(a.get("iid")) {
                batch.str_with(rc.name, |b| {
                    b.push(b'!');
                    b.extend_from_slice(n.as_bytes());
                });
            }
            batch.str(rc.type_, "merge_request");
            batch.item_end(rc.list);
        }
        batch.list_end(rc.list);

        batch.str(ch.vcs, "gitlab");
        if let Some(x) = project {
            if let Some(id) = id_text(x.get("id")) {
                batch.str(ch.repo_uid, &id);
            }
            if let Some(n) = x.get_str("path_with_namespace") {
                batch.str(ch.repo_name, n);
            }
            if let Some(u) = x.get_str("web_url") {
                batch.str(ch.repo_url, u);
            }
        }
        match kind {
            "merge_request" => {
                if let Some(a) = attrs {
                    if let Some(n) = id_text(a.get("iid")).and_then(|s| s.parse().ok()) {
                        batch.i64(ch.number, n);
                    }
                    for (slot, key) in [
                        (ch.url, "url"),
                        (ch.title, "title"),
                        (ch.state, "state"),
                        (ch.head_ref, "source_branch"),
                        (ch.base_ref, "target_branch"),
                        (ch.merge_sha, "merge_commit_sha"),
                    ] {
                        if let Some(v) = a.get_str(key) {
                            batch.str(slot, v);
                        }
                    }
                    if let Some(v) = a.at(&["last_commit", "id"]).and_then(|v| v.as_str()) {
                        batch.str(ch.head_sha, v);
                    }
                    if let Some(d) = a.get("draft").or(a.get("work_in_progress")).and_then(|v| v.as_bool()) {
                        batch.bool(ch.is_draft, d);
                    }
                    let merged = action == Some("merge") || a.get_str("state") == Some("merged");
                    batch.bool(ch.is_merged, merged);
                    if action == Some("merge")
                        && let Some(v) = login
                    {
                        batch.str(ch.merged_by, v);
                    }
                    // The approver is the user acting; the author is known by id.
                    if action == Some("approved") || action == Some("approval") {
                        if let Some(v) = login {
                            batch.str(ch.approver, v);
                        }
                        if let (Some(u), Some(a)) = (&user_id, id_text(a.get("author_id"))) {
                            batch.bool(ch.is_self_approved, *u == a);
                        }
                    }
                }
                if let Some(r) = p.get("reviewers").filter(|r| r.elements().next().is_some()) {
                    let names: Vec<&str> = r.elements().filter_map(|u| u.get_str("username")).collect();
                    batch.list_str(ch.requested_reviewers, ch.requested_reviewer, names);
                }
            }
            "push" | "tag_push" => {
                for (slot, key) in [(ch.git_ref, "ref"), (ch.before_sha, "before"), (ch.after_sha, "after")] {
                    if let Some(v) = p.get_str(key) {
                        batch.str(slot, v);
                    }
                }
                if let Some(v) = login {
                    batch.str(ch.pusher, v);
                }
            }
            "pipeline" => {
                if let Some(a) = attrs {
                    for (slot, key) in [(ch.head_ref, "ref"), (ch.head_sha, "sha"), (ch.wf_event, "source")] {
                        if let Some(v) = a.get_str(key) {
                            batch.str(slot, v);
                        }
                    }
                    if let Some(v) = id_text(a.get("id")) {
                        batch.str(ch.wf_run_uid, &v);
                    }
                }
            }
            "deployment" => {
                if let Some(v) = p.get_str("environment") {
                    batch.str(ch.environment, v);
                }
                if let Some(v) = id_text(p.get("deployment_id")) {
                    batch.str(ch.deployment_uid, &v);
                }
                if let Some(v) = p.get_str("short_sha") {
                    batch.str(ch.head_sha, v);
                }
                if let Some(v) = p.get_str("ref") {
                    batch.str(ch.head_ref, v);
                }
            }
            _ => {}
        }

        row::finish(batch, c, ctx, &envelope, &[]);
        Ok(Class::ApiActivity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_time_shapes() {
        assert_eq!(parse_time("2013-12-03T17:23:34Z"), Some(1_386_091_414_000));
        assert_eq!(parse_time("2016-08-12 15:23:28 UTC"), Some(1_471_015_408_000));
        assert_eq!(parse_time("2021-04-28 21:50:00 +0200"), Some(1_619_639_400_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
