//! Pieces every normaliser writes the same way: the OCSF classification
//! header, `unmapped`, and the row's trailer (raw data, provenance, repairs).

use super::Ctx;
use super::cols::Cols;
use crate::batch::columns::{ColumnBatch, Slot, write_member};
use crate::decode::json::{Source, Val, write_str};
use crate::ocsf::{Class, severity_caption};
use crate::redact::{Keep, write_part};

/// A JSON number or non-empty string, as text (ids arrive as both).
pub(super) fn id_text(v: Option<Val<'_, '_>>) -> Option<String> {
    match v?.node() {
        simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(n.to_string()),
        simd_json::Node::Static(simd_json::StaticNode::U64(n)) => Some(n.to_string()),
        simd_json::Node::Static(simd_json::StaticNode::F64(f)) if f.is_finite() => Some((f as i64).to_string()),
        simd_json::Node::String(s) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// Class, category, activity (with OCSF's rule that activity 99 names the
/// source's own verb), type, severity (Informational) and time.
pub(super) fn header(batch: &mut ColumnBatch, c: &Cols, class: Class, activity_id: i32, verb: &str, time: i64) {
    header_with_severity(batch, c, class, activity_id, verb, time, 1);
}

pub(super) fn header_with_severity(
    batch: &mut ColumnBatch,
    c: &Cols,
    class: Class,
    activity_id: i32,
    verb: &str,
    time: i64,
    severity_id: i32,
) {
    let caption = class.activity_caption(activity_id).unwrap_or("Other");
    batch.i32(c.class_uid, class.uid());
    batch.str(c.class_name, class.name());
    batch.i32(c.category_uid, class.category_uid());
    batch.str(c.category_name, class.category_name());
    batch.i32(c.activity_id, activity_id);
    batch.str(c.activity_name, if activity_id == 99 { verb } else { caption });
    batch.i64(c.type_uid, class.uid() as i64 * 100 + activity_id as i64);
    batch.str_with(c.type_name, |b| {
        b.extend_from_slice(class.name().as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(caption.as_bytes());
    });
    batch.i32(c.severity_id, severity_id);
    batch.str(c.severity, severity_caption(severity_id));
    batch.i64(c.time, time);
    batch.i64(c.time_dt, time);
}

/// Writes `members` as one JSON object into `slot` (redacted by key and content).
pub(super) fn members_json(
    batch: &mut ColumnBatch,
    slot: Slot,
    members: &[(&str, Val<'_, '_>)],
    source: Option<Source<'_>>,
) {
    if members.is_empty() {
        return;
    }
    batch.json_with(slot, |buf, red, stats, tokens| {
        buf.push(b'{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_str(k, buf);
            buf.push(b':');
            write_member(buf, red, stats, tokens, k, v, source);
        }
        buf.push(b'}');
    });
}

/// Writes the members of object `parent` that `keep` keeps as one JSON
/// object into `slot`, or nothing when it keeps none; says which. Each is
/// redacted in its siblings' light (see [`write_part`]), kept or not.
pub(super) fn part_json(
    batch: &mut ColumnBatch,
    slot: Slot,
    parent: &Val<'_, '_>,
    keep: impl Fn(&str) -> bool,
    source: Option<Source<'_>>,
) -> bool {
    if !parent.entries().any(|(k, _)| keep(k)) {
        return false;
    }
    batch.json_with(slot, |buf, red, stats, tokens| {
        let mut keep = |_: &[&str], _: usize, k: &str, _: &Val<'_, '_>| if keep(k) { Keep::All } else { Keep::Nothing };
        write_part(red, parent, &mut keep, source, buf, stats, tokens);
    });
    true
}

/// `raw_data` (re-serialised through the redactor when redacting), the
/// trailship provenance and repairs, then the end of the row.
pub(super) fn finish(batch: &mut ColumnBatch, c: &Cols, ctx: &Ctx<'_>, envelope: &Val<'_, '_>, notes: &[&str]) {
    if let Some(raw) = ctx.raw {
        if batch.redacting() { batch.json(c.raw_data, envelope) } else { batch.str(c.raw_data, raw) }
    }
    batch.str(c.ts_source_file, ctx.source_file);
    batch.i64(c.ts_source_index, ctx.index as i64);
    if let Some(k) = &ctx.kafka {
        batch.str(c.ts_kafka_topic, k.topic);
        batch.i32(c.ts_kafka_partition, k.partition);
        batch.i64(c.ts_kafka_offset, k.offset);
    }
    if let Some(o) = &ctx.object {
        // Names come from a notification, so they go through the redactor
        // like any input; the hash is trailship's own.
        batch.str(c.ts_object_bucket, o.bucket);
        batch.str(c.ts_object_key, o.key);
        if let Some(v) = o.version_id {
            batch.str(c.ts_object_version, v);
        }
        batch.str_with(c.ts_object_sha256, |b| b.extend_from_slice(o.sha256.as_bytes()));
    }
    let utf8 = ctx.repairs.utf8_replaced.then_some("utf8_replaced");
    if utf8.is_some() || !notes.is_empty() {
        batch.list_str(c.ts_repairs, c.ts_repair, utf8.into_iter().chain(notes.iter().copied()));
    }
    debug_assert_eq!(batch.missing_required(), None);
    batch.end_row();
}
