//! GitHub webhook events → OCSF API Activity (6003) with the trailship
//! `change` object: `api.operation` is `<event>.<action>`, the sender is the
//! actor, and the facts of the change (PR, review, push, deployment,
//! workflow run) are columns.
//!
//! Inputs: webhook deliveries in the shape of GitHub's REST answer for a
//! delivery (`guid`, `event`, `delivered_at`, `request.headers`,
//! `request.payload`), or bare payloads, whose event is recognised from
//! their members. (Kafka messages with the event in headers come with the
//! streaming source.)

use super::cols::Cols;
use super::row::{self, id_text};
use super::time::{event_day, parse_rfc3339_ms};
use super::{Ctx, Rejected, str_of};
use crate::batch::columns::{ColumnBatch, ListSlot, Slot};
use crate::batch::{Batcher, partition_value};
use crate::deadletter::Reason;
use crate::decode::json::Val;
use crate::ocsf::{Class, OCSF_VERSION, status_caption};

/// A GitHub event found in a record.
pub struct Event<'t, 'i, 'n> {
    pub name: &'n str,
    pub payload: Val<'t, 'i>,
    /// The delivery around the payload, when the input carries one.
    pub delivery: Option<Val<'t, 'i>>,
}

/// Recognises a delivery or a bare payload.
pub(super) fn event<'t, 'i>(root: &Val<'t, 'i>, s: &super::Signs<'t, 'i>) -> Option<Event<'t, 'i, 'i>> {
    if let (Some(name), Some(payload)) =
        (str_of(s.event), s.request.and_then(|r| r.get("payload")).filter(|p| p.is_object()))
    {
        return Some(Event { name, payload, delivery: Some(*root) });
    }
    s.sender.filter(|s| s.get_str("login").is_some())?;
    (s.repository.is_some() || s.organization.is_some()).then(|| Event {
        name: infer_event(root),
        payload: *root,
        delivery: None,
    })
}

/// Like [`event`], but a payload carried with transport headers (a Kafka
/// message) takes its event name from `X-GitHub-Event`.
pub(super) fn event_with_headers<'t, 'i: 'c, 'c>(
    root: &Val<'t, 'i>,
    s: &super::Signs<'t, 'i>,
    ctx: &'c Ctx<'c>,
) -> Option<Event<'t, 'i, 'c>> {
    let found = event(root, s);
    match (ctx.header("X-GitHub-Event"), found) {
        // The header names the event: trust it over inference.
        (Some(name), Some(ev)) if ev.delivery.is_none() => Some(Event { name, payload: ev.payload, delivery: None }),
        (Some(name), None) if root.is_object() => Some(Event { name, payload: *root, delivery: None }),
        (_, found) => found.map(|ev| Event { name: ev.name, payload: ev.payload, delivery: ev.delivery }),
    }
}

/// The event name of a bare payload, from the members GitHub sends with it.
fn infer_event(p: &Val<'_, '_>) -> &'static str {
    let has = |k: &str| p.get(k).is_some_and(|v| !v.is_null());
    if has("review") && has("pull_request") {
        "pull_request_review"
    } else if has("comment") && has("pull_request") {
        "pull_request_review_comment"
    } else if has("pull_request") && has("number") {
        "pull_request"
    } else if has("deployment_status") {
        "deployment_status"
    } else if has("deployment") {
        "deployment"
    } else if has("workflow_run") {
        "workflow_run"
    } else if has("workflow_job") {
        "workflow_job"
    } else if has("check_run") {
        "check_run"
    } else if has("check_suite") {
        "check_suite"
    } else if has("ref") && has("before") && has("after") && has("pusher") {
        "push"
    } else if has("ref_type") && has("master_branch") {
        "create"
    } else if has("ref_type") {
        "delete"
    } else if has("release") {
        "release"
    } else if has("rule") {
        "branch_protection_rule"
    } else if has("member") {
        "member"
    } else if has("sha") && has("context") && has("state") {
        "status"
    } else if has("action")
        && has("repository")
        && p.entries().all(|(k, _)| {
            matches!(k, "action" | "repository" | "sender" | "organization" | "installation" | "enterprise" | "changes")
        })
    {
        "repository"
    } else {
        "unknown"
    }
}

/// Slots of the `change` columns, shared with the GitLab normaliser.
pub(super) struct ChangeCols {
    pub(super) vcs: Slot,
    pub(super) repo_uid: Slot,
    pub(super) repo_name: Slot,
    pub(super) repo_url: Slot,
    pub(super) number: Slot,
    pub(super) url: Slot,
    pub(super) title: Slot,
    pub(super) state: Slot,
    pub(super) is_draft: Slot,
    pub(super) head_ref: Slot,
    pub(super) head_sha: Slot,
    pub(super) base_ref: Slot,
    pub(super) base_sha: Slot,
    pub(super) merge_sha: Slot,
    pub(super) author: Slot,
    pub(super) is_author_bot: Slot,
    pub(super) is_merged: Slot,
    pub(super) merged_by: Slot,
    pub(super) requested_reviewers: ListSlot,
    pub(super) requested_reviewer: Slot,
    pub(super) reviewer: Slot,
    pub(super) review_state: Slot,
    pub(super) review_commit_sha: Slot,
    pub(super) is_stale_review: Slot,
    pub(super) approver: Slot,
    pub(super) is_self_approved: Slot,
    pub(super) git_ref: Slot,
    pub(super) before_sha: Slot,
    pub(super) after_sha: Slot,
    pub(super) is_force_push: Slot,
    pub(super) pusher: Slot,
    pub(super) commits: ListSlot,
    pub(super) commit_sha: Slot,
    pub(super) commit_author: Slot,
    pub(super) commit_is_bot: Slot,
    pub(super) co_authors: ListSlot,
    pub(super) co_author: Slot,
    pub(super) has_bot_co_author: Slot,
    pub(super) environment: Slot,
    pub(super) deployment_uid: Slot,
    pub(super) wf_name: Slot,
    pub(super) wf_path: Slot,
    pub(super) wf_event: Slot,
    pub(super) wf_run_uid: Slot,
    pub(super) wf_run_attempt: Slot,
    pub(super) conclusion: Slot,
}

impl ChangeCols {
    pub(super) fn resolve(b: &ColumnBatch) -> Self {
        let s = |p: &str| b.slot(&format!("change.{p}"));
        let l = |p: &str| b.list(&format!("change.{p}"));
        ChangeCols {
            vcs: s("vcs"),
            repo_uid: s("repository.uid"),
            repo_name: s("repository.name"),
            repo_url: s("repository.url"),
            number: s("number"),
            url: s("url"),
            title: s("title"),
            state: s("state"),
            is_draft: s("is_draft"),
            head_ref: s("head_ref"),
            head_sha: s("head_sha"),
            base_ref: s("base_ref"),
            base_sha: s("base_sha"),
            merge_sha: s("merge_sha"),
            author: s("author"),
            is_author_bot: s("is_author_bot"),
            is_merged: s("is_merged"),
            merged_by: s("merged_by"),
            requested_reviewers: l("requested_reviewers"),
            requested_reviewer: s("requested_reviewers[]"),
            reviewer: s("reviewer"),
            review_state: s("review_state"),
            review_commit_sha: s("review_commit_sha"),
            is_stale_review: s("is_stale_review"),
            approver: s("approver"),
            is_self_approved: s("is_self_approved"),
            git_ref: s("ref"),
            before_sha: s("before_sha"),
            after_sha: s("after_sha"),
            is_force_push: s("is_force_push"),
            pusher: s("pusher"),
            commits: l("commits"),
            commit_sha: s("commits.sha"),
            commit_author: s("commits.author"),
            commit_is_bot: s("commits.is_bot"),
            co_authors: l("co_authors"),
            co_author: s("co_authors[]"),
            has_bot_co_author: s("has_bot_co_author"),
            environment: s("environment"),
            deployment_uid: s("deployment_uid"),
            wf_name: s("workflow.name"),
            wf_path: s("workflow.path"),
            wf_event: s("workflow.event"),
            wf_run_uid: s("workflow.run_uid"),
            wf_run_attempt: s("workflow.run_attempt"),
            conclusion: s("conclusion"),
        }
    }
}

pub struct GitHub {
    cols: Cols,
    change: ChangeCols,
    signature: crate::batch::columns::Slot,
    pub(super) webhook_secret: Option<Vec<u8>>,
}

impl Default for GitHub {
    fn default() -> Self {
        let b = ColumnBatch::new(crate::ocsf::dataset_columns(Class::ApiActivity));
        GitHub {
            cols: Cols::resolve(&b),
            change: ChangeCols::resolve(&b),
            signature: b.slot("trailship.signature"),
            webhook_secret: None,
        }
    }
}

/// Case-insensitive header lookup (GitHub's REST API and proxies differ).
fn header<'i>(headers: Option<Val<'_, 'i>>, name: &str) -> Option<&'i str> {
    headers?.entries().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

/// Checks `sha256=<hex>` against HMAC-SHA256 of `body`, in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex) = header.strip_prefix("sha256=") else { return false };
    if hex.len() != 64 {
        return false;
    }
    let mut tag = [0u8; 32];
    for (i, b) in tag.iter_mut().enumerate() {
        match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return false,
        }
    }
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// RFC 3339 text or epoch seconds (push payloads use both).
fn time_of(v: Option<Val<'_, '_>>) -> Option<i64> {
    let v = v?;
    match v.node() {
        simd_json::Node::String(s) => parse_rfc3339_ms(s),
        simd_json::Node::Static(simd_json::StaticNode::I64(n)) => n.checked_mul(1000),
        simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(n).ok()?.checked_mul(1000),
        _ => None,
    }
}

fn is_bot_login(login: &str) -> bool {
    login.ends_with("[bot]")
}

/// `Co-authored-by: Name <email>` trailers of a commit message.
fn co_authors(message: &str) -> impl Iterator<Item = &str> {
    message.lines().filter_map(|l| {
        let l = l.trim();
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("co-authored-by").then(|| v.trim()).filter(|v| !v.is_empty())
    })
}

/// Bots and AI agents as commit co-authors: `[bot]` accounts and the
/// noreply identities AI coding agents sign with.
fn is_bot_identity(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("[bot]") || l.contains("noreply@anthropic.com") || l.contains("copilot") || l.contains("devin-ai")
}

fn activity(event: &str, action: Option<&str>, p: &Payload<'_, '_>, pr: Option<&Pr<'_, '_>>) -> i32 {
    match (event, action) {
        ("pull_request", Some("opened" | "reopened" | "ready_for_review")) => 1,
        ("pull_request", Some("closed")) => {
            if pr.and_then(|r| r.merged).and_then(|m| m.as_bool()) == Some(true) {
                3
            } else {
                4
            }
        }
        ("pull_request_review", Some("submitted")) => 1,
        ("pull_request_review", Some("dismissed")) => 4,
        ("push", _) => {
            if p.created.and_then(|v| v.as_bool()) == Some(true) {
                1
            } else if p.deleted.and_then(|v| v.as_bool()) == Some(true) {
                4
            } else {
                3
            }
        }
        ("create", _) => 1,
        ("delete", _) => 4,
        ("deployment_status", _) => 3,
        (_, Some("created" | "opened" | "added" | "requested" | "published")) => 1,
        (_, Some("deleted" | "removed" | "closed")) => 4,
        _ => 3,
    }
}

members! {
    /// The members of a payload the mapping reads: a `Val::get` for each
    /// was ~40 passes a delivery (6.7% of a GitHub run's instructions,
    /// benches/README.md, session 36), and a real repository or pull
    /// request object has dozens of members.
    struct Payload {
        action: "action",
        pull_request: "pull_request",
        review: "review",
        head_commit: "head_commit",
        repository: "repository",
        organization: "organization",
        sender: "sender",
        deployment: "deployment",
        deployment_status: "deployment_status",
        workflow_run: "workflow_run",
        workflow_job: "workflow_job",
        check_run: "check_run",
        release: "release",
        rule: "rule",
        updated_at: "updated_at",
        created: "created",
        deleted: "deleted",
        git_ref: "ref",
        before: "before",
        after: "after",
        forced: "forced",
        pusher: "pusher",
        commits: "commits",
    }
}

impl<'t, 'i> Payload<'t, 'i> {
    /// The run object of a workflow or check event: the member named as
    /// the event is.
    fn run(&self, event: &str) -> Option<Val<'t, 'i>> {
        match event {
            "workflow_run" => self.workflow_run,
            "workflow_job" => self.workflow_job,
            "check_run" => self.check_run,
            _ => None,
        }
    }
}

/// `v`'s member `key`, `v` being a member found or not.
fn at<'t, 'i>(v: Option<Val<'t, 'i>>, key: &str) -> Option<Val<'t, 'i>> {
    v?.get(key)
}

members! {
    /// The members of a pull request the mapping reads.
    struct Pr {
        id: "id",
        number: "number",
        html_url: "html_url",
        title: "title",
        state: "state",
        head: "head",
        base: "base",
        merge_commit_sha: "merge_commit_sha",
        user: "user",
        draft: "draft",
        merged: "merged",
        merged_by: "merged_by",
        requested_reviewers: "requested_reviewers",
        merged_at: "merged_at",
        closed_at: "closed_at",
        updated_at: "updated_at",
    }
}

impl GitHub {
    pub fn normalize(&mut self, ev: Event<'_, '_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Result<Class, Rejected> {
        let p = ev.payload;
        let m = Payload::of(&p);
        let [d_action, d_delivered_at, d_request, d_guid] =
            ev.delivery.map_or([None; 4], |d| d.get_many(["action", "delivered_at", "request", "guid"]));
        let action = str_of(m.action).or_else(|| str_of(d_action));
        let pr = m.pull_request.filter(|v| v.is_object()).map(|r| Pr::of(&r));
        let delivered = time_of(d_delivered_at);
        let [repo_id, repo_full_name, repo_html_url, repo_owner, repo_updated_at, repo_pushed_at] = m
            .repository
            .map_or([None; 6], |r| r.get_many(["id", "full_name", "html_url", "owner", "updated_at", "pushed_at"]));
        // The event's own time where the payload has one; else the delivery's.
        let own = match ev.name {
            "pull_request" => {
                pr.as_ref().and_then(|r| time_of(r.merged_at).or(time_of(r.closed_at)).or(time_of(r.updated_at)))
            }
            "pull_request_review" => time_of(at(m.review, "submitted_at")),
            "push" => time_of(at(m.head_commit, "timestamp")).or(time_of(repo_pushed_at)),
            "deployment" => time_of(at(m.deployment, "created_at")),
            "deployment_status" => {
                time_of(at(m.deployment_status, "updated_at")).or(time_of(at(m.deployment_status, "created_at")))
            }
            "workflow_run" => time_of(at(m.workflow_run, "updated_at")),
            "workflow_job" => time_of(at(m.workflow_job, "completed_at")).or(time_of(at(m.workflow_job, "started_at"))),
            "check_run" => time_of(at(m.check_run, "completed_at")).or(time_of(at(m.check_run, "started_at"))),
            "release" => time_of(at(m.release, "published_at")).or(time_of(at(m.release, "created_at"))),
            "branch_protection_rule" => time_of(at(m.rule, "updated_at")).or(time_of(at(m.rule, "created_at"))),
            "status" => time_of(m.updated_at),
            _ => None,
        };
        let repo_updated = time_of(repo_updated_at);
        let (time, time_note) = match (own, delivered, repo_updated) {
            (Some(t), _, _) => (t, None),
            (None, Some(t), _) => (t, None),
            (None, None, Some(t)) => (t, Some("time_from:repository.updated_at")),
            _ => {
                return Err(Rejected {
                    reason: Reason::MissingField,
                    detail: format!("{} event without a usable time", ev.name),
                });
            }
        };

        let repo = m.repository.filter(|r| r.is_object());
        let owner = str_of(at(repo_owner, "login")).or_else(|| str_of(at(m.organization, "login")));
        let batch = out.get(Class::ApiActivity, "unknown", partition_value(owner), event_day(time));
        let (c, ch) = (&self.cols, &self.change);

        let activity_id = activity(ev.name, action, &m, pr.as_ref());
        row::header(batch, c, Class::ApiActivity, activity_id, ev.name, time);

        // Outcome-bearing events follow their outcome; the rest succeeded.
        let outcome = match ev.name {
            "deployment_status" => at(m.deployment_status, "state"),
            "workflow_run" | "workflow_job" | "check_run" => at(m.run(ev.name), "conclusion"),
            _ => None,
        }
        .and_then(|v| v.as_str());
        let status_id = match (ev.name, outcome) {
            ("deployment_status" | "workflow_run" | "workflow_job" | "check_run", Some("success")) => 1,
            (
                "deployment_status" | "workflow_run" | "workflow_job" | "check_run",
                Some("failure" | "error" | "cancelled" | "timed_out" | "startup_failure"),
            ) => 2,
            ("deployment_status" | "workflow_run" | "workflow_job" | "check_run", _) => 99,
            _ => 1,
        };
        batch.i32(c.status_id, status_id);
        batch.str(c.status, status_caption(status_id));
        if let Some(o) = outcome {
            batch.str(c.status_code, o);
            batch.str(ch.conclusion, o);
        }

        // metadata
        batch.str(c.md_version, OCSF_VERSION);
        batch.str(c.md_product_name, "GitHub");
        batch.str(c.md_product_vendor, "GitHub");
        batch.str(c.md_feature_name, "Webhooks");
        batch.str(c.md_log_name, "webhooks");
        batch.str(c.md_event_code, ev.name);
        let headers = at(d_request, "headers");
        let guid =
            str_of(d_guid).or_else(|| header(headers, "X-GitHub-Delivery")).or_else(|| ctx.header("X-GitHub-Delivery"));
        if let Some(g) = guid {
            batch.str(c.md_uid, g);
            batch.str(c.md_original_event_uid, g);
        }
        batch.str(c.md_log_source, ctx.source_file);
        batch.list_str(c.md_profiles, c.md_profile, ["datetime"]);

        // actor: the sender
        if let Some(s) = m.sender.filter(|s| s.is_object()) {
            let u = &c.actor_user;
            let [login, id, node_id, type_] = s.get_many(["login", "id", "node_id", "type"]);
            if let Some(login) = str_of(login) {
                batch.str(u.name, login);
            }
            if let Some(id) = id_text(id) {
                batch.str(u.uid, &id);
            }
            if let Some(v) = str_of(node_id) {
                batch.str(u.uid_alt, v);
            }
            if let Some(t) = str_of(type_) {
                batch.str(u.type_, t);
                batch.i32(
                    u.type_id,
                    match t {
                        "User" => 1,
                        "Bot" => 4,
                        _ => 99,
                    },
                );
            }
        }

        // api
        batch.str_with(c.api_operation, |b| {
            b.extend_from_slice(ev.name.as_bytes());
            if let Some(a) = action {
                b.push(b'.');
                b.extend_from_slice(a.as_bytes());
            }
        });
        batch.str(c.api_service_name, "github");
        // A delivery's payload is a member of its text: copied from it where
        // the walk would write the same.
        match d_request.and_then(|r| r.member("payload")) {
            Some((key, _)) => batch.json_in(c.api_request_data, key, &p, ctx.source),
            None => batch.json(c.api_request_data, &p),
        }
        let host = headers.and_then(|h| h.get_str("X-GitHub-Enterprise-Host")).unwrap_or("github.com");
        batch.str(c.src.hostname, host);

        // resources: the repository, and the pull request
        let rc = c.resources.as_ref().expect("API Activity has resources");
        batch.list_begin(rc.list);
        // A repository that is not an object has none of these.
        let (repo_id, repo_full_name) = (id_text(repo_id), str_of(repo_full_name));
        if repo.is_some() {
            if let Some(id) = &repo_id {
                batch.str(rc.uid, id);
            }
            if let Some(n) = repo_full_name {
                batch.str(rc.name, n);
            }
            batch.str(rc.type_, "repository");
            batch.item_end(rc.list);
        }
        if let Some(r) = &pr {
            if let Some(id) = id_text(r.id) {
                batch.str(rc.uid, &id);
            }
            if let Some(n) = id_text(r.number) {
                batch.str_with(rc.name, |b| {
                    b.push(b'#');
                    b.extend_from_slice(n.as_bytes());
                });
            }
            batch.str(rc.type_, "pull_request");
            batch.item_end(rc.list);
        }
        batch.list_end(rc.list);

        // change: the facts auditors ask about
        batch.str(ch.vcs, "github");
        if repo.is_some() {
            if let Some(id) = &repo_id {
                batch.str(ch.repo_uid, id);
            }
            if let Some(n) = repo_full_name {
                batch.str(ch.repo_name, n);
            }
            if let Some(u) = str_of(repo_html_url) {
                batch.str(ch.repo_url, u);
            }
        }
        if let Some(r) = &pr {
            self.pull_request(batch, &m, r);
        }
        match ev.name {
            "push" => self.push(batch, &m),
            "deployment" | "deployment_status" => {
                if let Some(d) = m.deployment {
                    let [environment, id, sha, git_ref] = d.get_many(["environment", "id", "sha", "ref"]);
                    if let Some(e) = str_of(environment) {
                        batch.str(ch.environment, e);
                    }
                    if let Some(id) = id_text(id) {
                        batch.str(ch.deployment_uid, &id);
                    }
                    if let Some(v) = str_of(sha) {
                        batch.str(ch.head_sha, v);
                    }
                    if let Some(v) = str_of(git_ref) {
                        batch.str(ch.head_ref, v);
                    }
                }
            }
            "workflow_run" | "workflow_job" | "check_run" => {
                let run = m.run(ev.name).filter(|r| r.is_object());
                if let Some(r) = run {
                    let [name, path, event, id, attempt, head_sha, head_branch] =
                        r.get_many(["name", "path", "event", "id", "run_attempt", "head_sha", "head_branch"]);
                    for (slot, v) in [(ch.wf_name, name), (ch.wf_path, path), (ch.wf_event, event)] {
                        if let Some(v) = str_of(v) {
                            batch.str(slot, v);
                        }
                    }
                    if let Some(v) = id_text(id) {
                        batch.str(ch.wf_run_uid, &v);
                    }
                    if let Some(n) = id_text(attempt).and_then(|s| s.parse().ok()) {
                        batch.i32(ch.wf_run_attempt, n);
                    }
                    if pr.is_none() {
                        if let Some(v) = str_of(head_sha) {
                            batch.str(ch.head_sha, v);
                        }
                        if let Some(v) = str_of(head_branch) {
                            batch.str(ch.head_ref, v);
                        }
                    }
                }
            }
            _ => {}
        }

        // The signature covers the body GitHub sent: compact JSON of the
        // payload, which is what the delivery's payload re-serialises to.
        let sig = header(headers, "X-Hub-Signature-256").or_else(|| ctx.header("X-Hub-Signature-256"));
        let transported = !ctx.headers.is_empty();
        let verdict = match (&self.webhook_secret, sig) {
            (Some(secret), Some(sig)) => {
                // A message value is the body exactly as GitHub sent it; a
                // REST delivery's payload is re-serialised compactly.
                let mut body = Vec::new();
                match (ctx.body, ev.delivery) {
                    (Some(raw), None) => body.extend_from_slice(raw),
                    _ => p.write_json(&mut body),
                }
                if signature_valid(secret, &body, sig) {
                    Some("valid")
                } else {
                    tracing::warn!(event = ev.name, delivery = guid.unwrap_or(""), "webhook signature does not match");
                    Some("invalid")
                }
            }
            (Some(_), None) if ev.delivery.is_some() || transported => Some("absent"),
            (None, Some(_)) => Some("unverified"),
            _ => None,
        };
        if let Some(v) = verdict {
            batch.str(self.signature, v);
        }

        let envelope = ev.delivery.unwrap_or(p);
        row::finish(batch, c, ctx, &envelope, time_note.as_slice());
        Ok(Class::ApiActivity)
    }

    fn pull_request(&self, batch: &mut ColumnBatch, p: &Payload<'_, '_>, r: &Pr<'_, '_>) {
        let ch = &self.change;
        if let Some(n) = id_text(r.number).and_then(|s| s.parse().ok()) {
            batch.i64(ch.number, n);
        }
        let [head_ref, head_sha] = r.head.map_or([None; 2], |h| h.get_many(["ref", "sha"]));
        let [base_ref, base_sha] = r.base.map_or([None; 2], |h| h.get_many(["ref", "sha"]));
        let [user_login, user_type, user_id] = r.user.map_or([None; 3], |u| u.get_many(["login", "type", "id"]));
        let (head_sha, author) = (str_of(head_sha), str_of(user_login));
        for (slot, v) in [
            (ch.url, str_of(r.html_url)),
            (ch.title, str_of(r.title)),
            (ch.state, str_of(r.state)),
            (ch.head_ref, str_of(head_ref)),
            (ch.head_sha, head_sha),
            (ch.base_ref, str_of(base_ref)),
            (ch.base_sha, str_of(base_sha)),
            (ch.merge_sha, str_of(r.merge_commit_sha)),
            (ch.author, author),
        ] {
            if let Some(v) = v {
                batch.str(slot, v);
            }
        }
        if let Some(d) = r.draft.and_then(|v| v.as_bool()) {
            batch.bool(ch.is_draft, d);
        }
        if let Some(a) = author {
            let bot = is_bot_login(a) || str_of(user_type) == Some("Bot");
            batch.bool(ch.is_author_bot, bot);
        }
        if let Some(m) = r.merged.and_then(|v| v.as_bool()) {
            batch.bool(ch.is_merged, m);
        }
        if let Some(v) = str_of(at(r.merged_by, "login")) {
            batch.str(ch.merged_by, v);
        }
        if let Some(rr) = r.requested_reviewers.filter(|v| v.elements().next().is_some()) {
            let logins: Vec<&str> = rr.elements().filter_map(|u| u.get_str("login")).collect();
            batch.list_str(ch.requested_reviewers, ch.requested_reviewer, logins);
        }
        if let Some(review) = p.review.filter(|v| v.is_object()) {
            let [user, state, commit] = review.get_many(["user", "state", "commit_id"]);
            let [reviewer, reviewer_id] = user.map_or([None; 2], |u| u.get_many(["login", "id"]));
            let reviewer = str_of(reviewer);
            if let Some(v) = reviewer {
                batch.str(ch.reviewer, v);
            }
            let state = str_of(state);
            if let Some(v) = state {
                batch.str(ch.review_state, v);
            }
            let commit = str_of(commit);
            if let Some(v) = commit {
                batch.str(ch.review_commit_sha, v);
            }
            if let (Some(c), Some(h)) = (commit, head_sha) {
                batch.bool(ch.is_stale_review, c != h);
            }
            if state.is_some_and(|s| s.eq_ignore_ascii_case("approved")) {
                if let Some(v) = reviewer {
                    batch.str(ch.approver, v);
                }
                if let (Some(a), Some(b)) = (id_text(reviewer_id), id_text(user_id)) {
                    batch.bool(ch.is_self_approved, a == b);
                }
            }
        }
    }

    fn push(&self, batch: &mut ColumnBatch, p: &Payload<'_, '_>) {
        let ch = &self.change;
        for (slot, v) in [(ch.git_ref, p.git_ref), (ch.before_sha, p.before), (ch.after_sha, p.after)] {
            if let Some(v) = str_of(v) {
                batch.str(slot, v);
            }
        }
        if let Some(f) = p.forced.and_then(|v| v.as_bool()) {
            batch.bool(ch.is_force_push, f);
        }
        if let Some(v) = str_of(at(p.pusher, "name")) {
            batch.str(ch.pusher, v);
        }
        let commits = p.commits.filter(|c| c.elements().next().is_some());
        let mut co: Vec<&str> = Vec::new();
        let mut bot = false;
        if let Some(list) = commits {
            batch.list_begin(ch.commits);
            for commit in list.elements() {
                let [id, author, message] = commit.get_many(["id", "author", "message"]);
                if let Some(v) = str_of(id) {
                    batch.str(ch.commit_sha, v);
                }
                let [username, name, email] = author.map_or([None; 3], |a| a.get_many(["username", "name", "email"]));
                let who = str_of(username).or_else(|| str_of(name));
                if let Some(v) = who {
                    batch.str(ch.commit_author, v);
                }
                let email = str_of(email).unwrap_or("");
                let is_bot = who.is_some_and(is_bot_identity) || is_bot_identity(email);
                batch.bool(ch.commit_is_bot, is_bot);
                batch.item_end(ch.commits);
                if let Some(m) = str_of(message) {
                    for a in co_authors(m) {
                        bot |= is_bot_identity(a);
                        if !co.contains(&a) {
                            co.push(a);
                        }
                    }
                }
                bot |= is_bot;
            }
            batch.list_end(ch.commits);
        }
        if !co.is_empty() {
            batch.list_str(ch.co_authors, ch.co_author, co);
        }
        if commits.is_some() {
            batch.bool(ch.has_bot_co_author, bot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_and_bots() {
        let m = "Fix it\n\nCo-authored-by: Claude <noreply@anthropic.com>\nco-authored-by:  Ann <ann@x.io>\n";
        let v: Vec<_> = co_authors(m).collect();
        assert_eq!(v, ["Claude <noreply@anthropic.com>", "Ann <ann@x.io>"]);
        assert!(is_bot_identity(v[0]) && !is_bot_identity(v[1]));
        assert!(is_bot_login("dependabot[bot]"));
    }
}
