//! Normalisation: one parsed record → one OCSF row, or a reason why not.
//!
//! Normalisers never do I/O and never fail the batch: a record they cannot
//! map is returned as [`Rejected`] and its partial row is rolled back.

pub mod cloudtrail;
pub mod cols;
pub mod time;

use crate::batch::Batcher;
use crate::deadletter::Reason;
use crate::decode::json::{Repairs, Val};
use crate::ocsf::Class;

/// What the normaliser knows about a record besides its content.
pub struct Ctx<'a> {
    pub source_file: &'a str,
    pub index: u64,
    pub repairs: Repairs,
    /// The record's original text, when `raw_data` is enabled.
    pub raw: Option<&'a str>,
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
}

/// Routes records to the normaliser of their family.
#[derive(Default)]
pub struct Normalizer {
    kind: SourceKind,
    cloudtrail: cloudtrail::CloudTrail,
}

impl Normalizer {
    pub fn new(kind: SourceKind) -> Self {
        Normalizer { kind, ..Default::default() }
    }

    /// Writes the row for `root` into `out`; on rejection nothing is left behind.
    pub fn normalize(&mut self, root: Val<'_, '_>, ctx: &Ctx<'_>, out: &mut Batcher) -> Result<Class, Rejected> {
        if !root.is_object() {
            return Err(Rejected {
                reason: Reason::NotAnObject,
                detail: format!("a record must be a JSON object, found {}", root.type_name()),
            });
        }
        let envelope = root;
        let root = cloudtrail::unwrap_eventbridge(root);
        let is_cloudtrail = match self.kind {
            SourceKind::CloudTrail => true,
            SourceKind::Auto => cloudtrail::looks_like_cloudtrail(&root),
        };
        if !is_cloudtrail {
            return Err(Rejected {
                reason: Reason::UnrecognisedSource,
                detail: "not a CloudTrail record (no eventVersion with eventSource or eventName)".into(),
            });
        }
        self.cloudtrail.normalize(envelope, root, ctx, out)
    }
}
