//! Normalisation: one parsed record → one OCSF row, or a reason why not.
//!
//! Normalisers never do I/O and never fail the batch: a record they cannot
//! map is returned as [`Rejected`] and its partial row is rolled back.

pub mod cloudtrail;
pub mod cols;
pub mod github;
pub mod github_audit;
pub mod gitlab;
pub mod k8s;
mod row;
pub mod time;

use crate::batch::Batcher;
use crate::deadletter::Reason;
use crate::decode::json::{Parser, Repairs, Source, Val};
use crate::ocsf::Class;

/// What the normaliser knows about a record besides its content.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub source_file: &'a str,
    pub index: u64,
    pub repairs: Repairs,
    /// The record's original text, when `raw_data` is enabled.
    pub raw: Option<&'a str>,
    /// The record's text beside its tape, so nested documents can be copied
    /// rather than re-serialised; `None` where it is not at hand.
    pub source: Option<Source<'a>>,
    /// Transport metadata that travels beside the record, such as Kafka
    /// message headers (`X-GitHub-Event`, `X-GitHub-Delivery`,
    /// `X-Hub-Signature-256`). Empty for files.
    pub headers: &'a [(&'a str, &'a str)],
    /// The record's exact bytes as received, where a signature covers them
    /// (a webhook body carried as a message value).
    pub body: Option<&'a [u8]>,
    /// The Kafka message the record came from, for the provenance columns.
    pub kafka: Option<KafkaRef<'a>>,
    /// The S3 object the record was read from, when a notification named it.
    pub object: Option<ObjectRef<'a>>,
}

/// A log file fetched from S3: where it is and the SHA-256 of its content
/// (uncompressed, as CloudTrail's digests list it).
#[derive(Debug, Clone, Copy)]
pub struct ObjectRef<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub sha256: &'a str,
}

/// Where in Kafka a record was read.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl Ctx<'_> {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// A record that cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Reason,
    pub detail: String,
}

/// Which source family to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// Recognise the family per record.
    #[default]
    Auto,
    CloudTrail,
    K8sAudit,
    GitHub,
    GitLab,
}

/// Per-family settings.
#[derive(Debug, Clone, Default)]
pub struct NormalizeOptions {
    pub k8s_final_stage_only: bool,
    /// Never logged; used only to check `X-Hub-Signature-256`.
    pub github_webhook_secret: Option<Vec<u8>>,
}

/// What became of one record of an envelope (an `EventList` item, a
/// CloudWatch Logs event): its index in the envelope, and on failure its text
/// for the dead letter.
pub struct SubRecord {
    pub sub_index: u32,
    pub result: Result<Class, Rejected>,
    pub input: Option<String>,
}

/// Routes records to the normaliser of their family.
#[derive(Default)]
pub struct Normalizer {
    kind: SourceKind,
    families: Families,
    /// For records carried as JSON text inside another (CloudWatch Logs).
    inner: Parser,
    inner_buf: Vec<u8>,
}

/// What a record is made of outside its family's fields: whether it is an
/// envelope of records (`kind`: EventList, `messageType`: CloudWatch Logs)
/// or an EventBridge event (`detail-type`). Found in one pass, since a plain
/// record lacks them all and every miss of `Val::get` is a pass of its own.
#[derive(Clone, Copy, Default)]
struct Markers<'i> {
    kind: Option<&'i str>,
    message_type: Option<&'i str>,
    detail_type: Option<&'i str>,
}

impl<'i> Markers<'i> {
    fn of(root: &Val<'_, 'i>) -> Self {
        let [kind, message_type, detail_type] = root.get_many(["kind", "messageType", "detail-type"]);
        let s = |v: Option<Val<'_, 'i>>| v.and_then(|v| v.as_str());
        Markers { kind: s(kind), message_type: s(message_type), detail_type: s(detail_type) }
    }
}

/// The CloudWatch Logs subscription envelope's events, if `root` is one.
fn cloudwatch_events<'t, 'i>(root: &Val<'t, 'i>, m: &Markers<'_>) -> Option<Val<'t, 'i>> {
    m.message_type?;
    root.get("logEvents").filter(|e| matches!(e.node(), simd_json::Node::Array { .. }))
}

/// What became of a record.
pub enum Outcome {
    /// A plain record: its row's class, or why it has none.
    Record(Result<Class, Rejected>),
    /// An envelope: one outcome per record inside, in order.
    Envelope(Vec<SubRecord>),
}

impl Normalizer {
    pub fn new(kind: SourceKind) -> Self {
        Normalizer { kind, ..Default::default() }
    }

    /// Settings of the families that have any.
    pub fn with_options(mut self, opts: &NormalizeOptions) -> Self {
        self.families.k8s.final_stage_only = opts.k8s_final_stage_only;
        self.families.github.webhook_secret = opts.github_webhook_secret.clone();
        self
    }

    /// Normalises a record that may be an envelope of records: a Kubernetes
    /// `EventList`, or a CloudWatch Logs subscription message (how EKS audit
    /// logs and CloudTrail-to-CloudWatch are usually shipped).
    pub fn normalize_any(&mut self, root: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Outcome {
        let m = Markers::of(&root);
        match self.expand(root, &m, ctx, out) {
            Some(subs) => Outcome::Envelope(subs),
            None => Outcome::Record(route(self.kind, &mut self.families, root, &m, ctx, out)),
        }
    }

    /// Normalises a record of a CloudTrail log file (`{"Records": [...]}`):
    /// never an envelope of its own, nor an EventBridge event, so the
    /// markers of those are not looked for.
    pub fn normalize_log_record(&mut self, root: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Outcome {
        Outcome::Record(route(self.kind, &mut self.families, root, &Markers::default(), ctx, out))
    }

    /// One outcome per record inside, or `None` for a plain record.
    fn expand(
        &mut self,
        root: Val<'_, '_>,
        m: &Markers<'_>,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
    ) -> Option<Vec<SubRecord>> {
        if let Some(items) = k8s::event_list_items(&root, m.kind) {
            let mut v = Vec::new();
            for (i, item) in items.elements().enumerate() {
                let result = self.normalize(item, ctx, out);
                let input = result.is_err().then(|| item.to_json());
                v.push(SubRecord { sub_index: i as u32, result, input });
            }
            if v.is_empty() {
                v.push(empty_envelope("EventList"));
            }
            return Some(v);
        }
        let events = cloudwatch_events(&root, m)?;
        let mut v = Vec::new();
        for (i, ev) in events.elements().enumerate() {
            let sub_index = i as u32;
            let Some(message) = ev.get_str("message") else {
                let result = Err(Rejected {
                    reason: Reason::MissingField,
                    detail: "CloudWatch Logs event without a message".into(),
                });
                v.push(SubRecord { sub_index, result, input: Some(ev.to_json()) });
                continue;
            };
            self.inner_buf.clear();
            self.inner_buf.extend_from_slice(message.as_bytes());
            let (inner, kind, families) = (&mut self.inner, self.kind, &mut self.families);
            // The outer record's text is not this one's.
            let ctx = &Ctx { source: None, ..*ctx };
            let result = inner.parse(&mut self.inner_buf, |p| match p {
                Err(e) => Err(Rejected { reason: Reason::MalformedJson, detail: format!("log event message: {e}") }),
                Ok(p) => route(kind, families, p.root, &Markers::of(&p.root), ctx, out),
            });
            let input = result.is_err().then(|| message.to_string());
            v.push(SubRecord { sub_index, result, input });
        }
        if v.is_empty() {
            v.push(empty_envelope("CloudWatch Logs message"));
        }
        Some(v)
    }

    /// Writes the row for `root`, a plain record, into `out`; on rejection
    /// nothing is left behind.
    pub fn normalize(&mut self, root: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Result<Class, Rejected> {
        route(self.kind, &mut self.families, root, &Markers::of(&root), ctx, out)
    }
}

fn empty_envelope(what: &str) -> SubRecord {
    SubRecord {
        sub_index: 0,
        result: Err(Rejected { reason: Reason::EmptyEnvelope, detail: format!("{what} holds no records") }),
        input: None,
    }
}

/// One normaliser per source family, with its resolved column slots.
#[derive(Default)]
struct Families {
    cloudtrail: cloudtrail::CloudTrail,
    k8s: k8s::Kubernetes,
    github: github::GitHub,
    gitlab: gitlab::GitLab,
    github_audit: github_audit::GitHubAudit,
}

fn route(
    kind: SourceKind,
    f: &mut Families,
    root: Val<'_, '_>,
    m: &Markers<'_>,
    ctx: &Ctx<'_>,
    out: &mut Batcher,
) -> Result<Class, Rejected> {
    if !root.is_object() {
        return Err(Rejected {
            reason: Reason::NotAnObject,
            detail: format!("a record must be a JSON object, found {}", root.type_name()),
        });
    }
    let envelope = root;
    let root = cloudtrail::unwrap_eventbridge(root, m.detail_type);
    let not_github =
        || Rejected { reason: Reason::UnrecognisedSource, detail: "not a GitHub webhook delivery or payload".into() };
    match kind {
        SourceKind::CloudTrail => f.cloudtrail.normalize(envelope, root, ctx, out),
        SourceKind::K8sAudit => f.k8s.normalize(envelope, root, ctx, out),
        SourceKind::GitHub if github_audit::is_event(&root) => f.github_audit.normalize(root, ctx, out),
        SourceKind::GitHub => {
            let ev = github::event_with_headers(&root, ctx).ok_or_else(not_github)?;
            f.github.normalize(ev, ctx, out)
        }
        SourceKind::GitLab => f.gitlab.normalize(envelope, root, ctx, out),
        SourceKind::Auto if cloudtrail::looks_like_cloudtrail(&root) => {
            f.cloudtrail.normalize(envelope, root, ctx, out)
        }
        SourceKind::Auto if k8s::is_event(&root) => f.k8s.normalize(envelope, root, ctx, out),
        SourceKind::Auto if gitlab::is_webhook(&root) => f.gitlab.normalize(envelope, root, ctx, out),
        SourceKind::Auto if github_audit::is_event(&root) => f.github_audit.normalize(root, ctx, out),
        SourceKind::Auto => match github::event_with_headers(&root, ctx) {
            Some(ev) => f.github.normalize(ev, ctx, out),
            None => Err(Rejected {
                reason: Reason::UnrecognisedSource,
                detail: "not a CloudTrail record, Kubernetes audit event, GitHub webhook or audit-log event, or GitLab webhook"
                    .into(),
            }),
        },
    }
}
