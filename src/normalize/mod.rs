//! Normalisation: one parsed record → one OCSF row, or a reason why not.
//!
//! Normalisers never do I/O and never fail the batch: a record they cannot
//! map is returned as [`Rejected`] and its partial row is rolled back.

/// A struct of the members of an object that a normaliser reads, each by
/// its key, found in one pass: a `Val::get` for each is a pass over the
/// members for each, and a `match` on the key is a jump on its length and a
/// compare or two. The first of a repeated key, as `get` finds.
macro_rules! members {
    ($(#[$doc:meta])* struct $name:ident { $($field:ident: $key:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default)]
        struct $name<'t, 'i> {
            $($field: Option<crate::decode::json::Val<'t, 'i>>,)*
        }

        impl<'t, 'i> $name<'t, 'i> {
            fn of(v: &crate::decode::json::Val<'t, 'i>) -> Self {
                let mut m = Self::default();
                for (k, v) in v.entries() {
                    let slot = match k {
                        $($key => &mut m.$field,)*
                        _ => continue,
                    };
                    if slot.is_none() {
                        *slot = Some(v);
                    }
                }
                m
            }
        }
    };
}

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

members! {
    /// The members that say what a record is: an envelope of records
    /// (`kind`: EventList, `messageType`: CloudWatch Logs), an EventBridge
    /// event (`detail-type`), and whose (each family's detector reads a few).
    /// A record lacks most of them, and each was a pass of its own (a GitHub
    /// delivery missed six before it was recognised, 2% of a GitHub run,
    /// benches/README.md, session 36).
    struct Signs {
        kind: "kind",
        message_type: "messageType",
        detail_type: "detail-type",
        // CloudTrail
        event_version: "eventVersion",
        event_source: "eventSource",
        ct_event_name: "eventName",
        event_type: "eventType",
        // Kubernetes
        api_version: "apiVersion",
        audit_id: "auditID",
        verb: "verb",
        // GitLab
        object_kind: "object_kind",
        event_name: "event_name",
        project: "project",
        project_id: "project_id",
        group_id: "group_id",
        // GitHub's audit log
        action: "action",
        actor: "actor",
        timestamp: "@timestamp",
        document_id: "_document_id",
        // GitHub webhooks
        event: "event",
        request: "request",
        sender: "sender",
        repository: "repository",
        organization: "organization",
    }
}

impl<'t, 'i> Signs<'t, 'i> {
    /// CloudTrail's, as [`cloudtrail::Marks::of`] finds them one at a time.
    fn cloudtrail(&self) -> cloudtrail::Marks<'t, 'i> {
        cloudtrail::Marks {
            version: self.event_version,
            source: self.event_source,
            name: self.ct_event_name,
            type_: self.event_type,
        }
    }
}

/// A member found, when it is a string.
fn str_of<'i>(v: Option<Val<'_, 'i>>) -> Option<&'i str> {
    v?.as_str()
}

/// The CloudWatch Logs subscription envelope's events, if `root` is one.
fn cloudwatch_events<'t, 'i>(root: &Val<'t, 'i>, s: &Signs<'_, '_>) -> Option<Val<'t, 'i>> {
    str_of(s.message_type)?;
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
        let s = Signs::of(&root);
        match self.expand(root, &s, ctx, out) {
            Some(subs) => Outcome::Envelope(subs),
            None => Outcome::Record(route(self.kind, &mut self.families, root, Some(&s), ctx, out)),
        }
    }

    /// Normalises a record of a CloudTrail log file (`{"Records": [...]}`):
    /// never an envelope of its own, nor an EventBridge event, and
    /// CloudTrail's, told by two of its first members, where its [`Signs`]
    /// would be a pass over all of them (looked for only if it is not).
    pub fn normalize_log_record(&mut self, root: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Outcome {
        Outcome::Record(route(self.kind, &mut self.families, root, None, ctx, out))
    }

    /// One outcome per record inside, or `None` for a plain record.
    fn expand(
        &mut self,
        root: Val<'_, '_>,
        s: &Signs<'_, '_>,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
    ) -> Option<Vec<SubRecord>> {
        if let Some(items) = k8s::event_list_items(&root, str_of(s.kind)) {
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
        let events = cloudwatch_events(&root, s)?;
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
                Ok(p) => route(kind, families, p.root, Some(&Signs::of(&p.root)), ctx, out),
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
        route(self.kind, &mut self.families, root, Some(&Signs::of(&root)), ctx, out)
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

/// `signs`: the record's, or `None` for a CloudTrail log file's record.
fn route(
    kind: SourceKind,
    f: &mut Families,
    root: Val<'_, '_>,
    signs: Option<&Signs<'_, '_>>,
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
    let detail = signs.and_then(|s| cloudtrail::eventbridge_detail(root, str_of(s.detail_type)));
    let root = detail.unwrap_or(root);
    // The event inside an EventBridge envelope has signs of its own.
    let own = detail.map(|d| Signs::of(&d));
    let signs = own.as_ref().or(signs);
    let not_github =
        || Rejected { reason: Reason::UnrecognisedSource, detail: "not a GitHub webhook delivery or payload".into() };
    match kind {
        SourceKind::CloudTrail => f.cloudtrail.normalize(envelope, root, ctx, out),
        SourceKind::K8sAudit => f.k8s.normalize(envelope, root, ctx, out),
        SourceKind::GitLab => f.gitlab.normalize(envelope, root, ctx, out),
        SourceKind::Auto
            if signs.map_or_else(|| cloudtrail::Marks::of(&root), Signs::cloudtrail).looks_like_cloudtrail() =>
        {
            f.cloudtrail.normalize(envelope, root, ctx, out)
        }
        SourceKind::GitHub | SourceKind::Auto => {
            let rest;
            let s = match signs {
                Some(s) => s,
                None => {
                    rest = Signs::of(&root);
                    &rest
                }
            };
            if kind == SourceKind::Auto && k8s::is_event(s) {
                f.k8s.normalize(envelope, root, ctx, out)
            } else if kind == SourceKind::Auto && gitlab::is_webhook(s) {
                f.gitlab.normalize(envelope, root, ctx, out)
            } else if github_audit::is_event(s) {
                f.github_audit.normalize(root, ctx, out)
            } else {
                match github::event_with_headers(&root, s, ctx) {
                    Some(ev) => f.github.normalize(ev, ctx, out),
                    None if kind == SourceKind::GitHub => Err(not_github()),
                    None => Err(Rejected {
                        reason: Reason::UnrecognisedSource,
                        detail: "not a CloudTrail record, Kubernetes audit event, GitHub webhook or audit-log event, or GitLab webhook"
                            .into(),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, RecordBatch};

    use super::*;

    const CLOUDTRAIL: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","accountId":"111122223333"},"eventTime":"2024-03-16T12:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","eventID":"e1","recipientAccountId":"111122223333"}"#;
    const K8S: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":"2024-03-16T12:00:00.000000Z","stageTimestamp":"2024-03-16T12:00:00.100000Z"}"#;
    const GITHUB: &str = r#"{"id":1,"guid":"g1","delivered_at":"2024-05-01T10:00:00Z","event":"push","request":{"headers":{"X-GitHub-Event":"push"},"payload":{"ref":"refs/heads/main","before":"a","after":"b","pusher":{"name":"dev"},"repository":{"id":7,"full_name":"acme/svc","owner":{"login":"acme"}},"sender":{"login":"dev","id":5}}}}"#;
    const GITHUB_AUDIT: &str =
        r#"{"@timestamp":1710590400000,"_document_id":"d1","action":"repo.create","actor":"dev","org":"acme"}"#;
    const GITLAB: &str = r#"{"object_kind":"push","event_name":"push","ref":"refs/heads/main","before":"a","after":"b","user_username":"dev","project_id":3,"project":{"id":3,"path_with_namespace":"acme/svc"},"commits":[{"id":"b","timestamp":"2024-03-16T12:00:00Z"}]}"#;

    /// The products of the rows `records` made, each read one way.
    fn products(records: &[&str], log_file: bool) -> Vec<String> {
        let mut n = Normalizer::default();
        let mut out = Batcher::new(None);
        let ctx = Ctx {
            source_file: "t",
            index: 0,
            repairs: Repairs::default(),
            raw: None,
            source: None,
            headers: &[],
            body: None,
            kafka: None,
            object: None,
        };
        for r in records {
            let mut bytes = r.as_bytes().to_vec();
            Parser::default().parse(&mut bytes, |p| {
                let root = p.expect("valid JSON").root;
                let outcome = if log_file {
                    n.normalize_log_record(root, &ctx, &mut out)
                } else {
                    n.normalize_any(root, &ctx, &mut out)
                };
                let Outcome::Record(result) = outcome else { panic!("{r} is no envelope") };
                result.unwrap_or_else(|e| panic!("{r}: {e:?}"));
            });
        }
        let mut names: Vec<String> = out.take_full(0, 0).iter().flat_map(|(_, b)| product_names(b)).collect();
        names.sort();
        names
    }

    fn product_names(b: &RecordBatch) -> Vec<String> {
        let metadata = b.column_by_name("metadata").expect("metadata").as_struct();
        let product = metadata.column_by_name("product").expect("product").as_struct();
        let name = product.column_by_name("name").expect("name").as_string::<i32>();
        (0..name.len()).map(|i| name.value(i).to_string()).collect()
    }

    #[test]
    fn each_family_is_told_by_its_members_read_in_one_pass_or_from_a_log_file() {
        let all = [CLOUDTRAIL, K8S, GITHUB, GITHUB_AUDIT, GITLAB];
        let want = ["CloudTrail", "GitHub", "GitHub Audit Log", "GitLab", "Kubernetes"];
        assert_eq!(products(&all, false), want);
        // A log file's record is looked at for CloudTrail's members first,
        // and for the others' when it is not CloudTrail's.
        assert_eq!(products(&all, true), want);
        // An EventBridge event is told by the record inside.
        let bridged =
            format!(r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.s3","detail":{CLOUDTRAIL}}}"#);
        assert_eq!(products(&[&bridged], false), ["CloudTrail"]);
        // The first of a repeated key counts, as `Val::get` finds it.
        let twice = K8S.replacen(r#""kind":"Event""#, r#""kind":"Event","kind":"Other""#, 1);
        assert_eq!(products(&[&twice], false), ["Kubernetes"]);
    }
}
