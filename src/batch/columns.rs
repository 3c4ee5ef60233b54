//! Columnar row builder for nested OCSF records.
//!
//! Normalisers write values straight into typed column buffers addressed by
//! [`Slot`]s that are resolved once from the class schema, so the hot path
//! never builds a per-record tree. The buffers are our own `Vec`s rather than
//! arrow builders for two reasons: a row can be rolled back when its
//! normaliser fails half-way (one bad record never poisons its batch), and a
//! batch's buffers become its arrays without a copy. (They start the next
//! batch empty: see [`ColumnBatch::finish`].) Each write asks for its
//! buffer's next cache line ahead of time (see `ahead`).
//!
//! Nesting model: level 0 is the row; every list column opens a new level whose
//! items are rows of their own. After a row (or list item) is ended, every
//! column at that level holds exactly one entry per row (or item): columns
//! that were not written get a null. A struct is null when nothing beneath it,
//! at its level, was written.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::decode::json::{Source, Val};
use crate::redact::{Redactor, Stats};

/// Where a short value's buffer is asked for: the line after the one being
/// written, so it is there a row or more before the write (64 and 256 bytes
/// on did as well).
const NEXT_BUT_ONE: usize = 128;

/// Asks for the cache lines just past `v`'s end, the next to be written.
///
/// A row writes a value or two into each of ~60 buffers (values, offsets,
/// validity), each a few bytes further along than the row before: more
/// streams than the hardware prefetchers follow, so every new line was a
/// store that missed, and the stores behind it waited. Asked for a row or
/// more ahead, the line is there when the write comes (6% of a run,
/// benches/README.md, session 31). `lines`: how many, from `from` bytes on.
#[inline(always)]
fn ahead<T>(v: &[T], from: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let end = v.as_ptr().wrapping_add(v.len()).cast::<i8>().wrapping_add(from);
        for line in 0..lines {
            // SAFETY: a prefetch reads nothing into the program and never
            // faults, whatever the address (past the buffer's capacity
            // included); SSE is in every x86_64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(end.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, from, lines);
}

/// Scalar column types used by trailship's OCSF datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Utf8,
    Int32,
    Int64,
    Bool,
    /// Timestamp in milliseconds, UTC (OCSF `datetime_t` companions).
    TimestampMs,
}

/// A node of a dataset's column tree.
#[derive(Debug, Clone)]
pub enum Node {
    Leaf { name: &'static str, ty: Ty, required: bool },
    Struct { name: &'static str, children: Vec<Node> },
    List { name: &'static str, item: Box<Node> },
}

impl Node {
    pub fn name(&self) -> &'static str {
        match self {
            Node::Leaf { name, .. } | Node::Struct { name, .. } | Node::List { name, .. } => name,
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Node::Leaf { ty, .. } => match ty {
                Ty::Utf8 => DataType::Utf8,
                Ty::Int32 => DataType::Int32,
                Ty::Int64 => DataType::Int64,
                Ty::Bool => DataType::Boolean,
                Ty::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            },
            Node::Struct { children, .. } => DataType::Struct(children_fields(children)),
            // "element" gives the standard three-level Parquet LIST layout.
            Node::List { item, .. } => DataType::List(Arc::new(Field::new("element", item.data_type(), true))),
        }
    }

    pub fn field(&self) -> Field {
        let nullable = !matches!(self, Node::Leaf { required: true, .. });
        Field::new(self.name(), self.data_type(), nullable)
    }
}

fn children_fields(children: &[Node]) -> Fields {
    children.iter().map(Node::field).collect()
}

/// Handle to a scalar column, resolved once per dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

/// Handle to a list column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListSlot(u32);

enum Values {
    Utf8 {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
    },
    I32(Vec<i32>),
    I64(Vec<i64>),
    /// 0 or 1 a value, as validity is (see [`bits`]).
    Bool(Vec<u8>),
}

struct LeafCol {
    ty: Ty,
    level: usize,
    values: Values,
    /// 1 where the entry is a value, 0 where it is null (bytes, not
    /// `bool`s, so that [`nulls`] can pack eight with one multiply).
    valid: Vec<u8>,
}

impl LeafCol {
    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Nulls up to row (or item) `n`. Called at every write, where the
    /// column is nearly always up to date already: that check inlined, the
    /// padding not.
    #[inline]
    fn pad_to(&mut self, n: usize) {
        if self.len() < n {
            self.pad(n);
        }
    }

    #[inline(never)]
    fn pad(&mut self, n: usize) {
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => offsets.resize(n + 1, bytes.len() as i32),
            Values::I32(v) => v.resize(n, 0),
            Values::I64(v) => v.resize(n, 0),
            Values::Bool(v) => v.resize(n, 0),
        }
        self.valid.resize(n, 0);
    }

    fn truncate(&mut self, n: usize) {
        if self.len() <= n {
            return;
        }
        match &mut self.values {
            Values::Utf8 { offsets, bytes } => {
                offsets.truncate(n + 1);
                bytes.truncate(offsets[n] as usize);
            }
            Values::I32(v) => v.truncate(n),
            Values::I64(v) => v.truncate(n),
            Values::Bool(v) => v.truncate(n),
        }
        self.valid.truncate(n);
    }
}

struct ListCol {
    /// Level the list column itself lives at.
    level: usize,
    /// Level of its items.
    item_level: usize,
    offsets: Vec<i32>,
    /// As [`LeafCol::valid`].
    valid: Vec<u8>,
}

impl ListCol {
    /// Null (absent) entries up to row `n`.
    fn pad_to(&mut self, n: usize) {
        if self.valid.len() < n {
            let last = *self.offsets.last().expect("offsets start with 0");
            self.offsets.resize(n + 1, last);
            self.valid.resize(n, 0);
        }
    }
}

/// Rows (level 0) or items of one list (level > 0) written so far.
#[derive(Default)]
struct Level {
    count: usize,
    count_at_row_start: usize,
}

/// A batch of rows for one dataset, built column by column.
pub struct ColumnBatch {
    root: Vec<Node>,
    schema: SchemaRef,
    leaves: Vec<LeafCol>,
    lists: Vec<ListCol>,
    levels: Vec<Level>,
    paths: Vec<(String, Handle)>,
    redactor: Option<Arc<Redactor>>,
    /// Whether string values of the current row may hold tokens (the
    /// record's raw text had a candidate); field rules apply regardless.
    scan_tokens: bool,
    /// What was redacted in the current row.
    row_stats: Stats,
    /// The finished rows' stats, handed to the redactor's totals at
    /// `finish`: those are behind a lock that every thread shares, so the
    /// threads meet once a batch rather than once a redacting row (8% of
    /// the bench corpus's rows; all of them in a leaky trail).
    batch_stats: Stats,
    /// `trailship.redacted_count`, `.redacted_types`, its item, `.redaction_key_id`.
    redaction_cols: Option<(Slot, ListSlot, Slot, Slot)>,
}

#[derive(Debug, Clone, Copy)]
enum Handle {
    Leaf(usize),
    List(usize),
    Struct,
}

impl ColumnBatch {
    pub fn new(root: Vec<Node>) -> Self {
        let schema = Arc::new(Schema::new(children_fields(&root)));
        let mut b = ColumnBatch {
            root: Vec::new(),
            schema,
            leaves: Vec::new(),
            lists: Vec::new(),
            levels: vec![Level::default()],
            paths: Vec::new(),
            redactor: None,
            scan_tokens: true,
            row_stats: Stats::default(),
            batch_stats: Stats::default(),
            redaction_cols: None,
        };
        for node in &root {
            b.register(node, "", 0);
        }
        b.root = root;
        b.redaction_cols = match (
            b.try_slot("trailship.redacted_count"),
            b.try_list("trailship.redacted_types"),
            b.try_slot("trailship.redacted_types[]"),
            b.try_slot("trailship.redaction_key_id"),
        ) {
            (Some(a), Some(l), Some(i), Some(k)) => Some((a, l, i, k)),
            _ => None,
        };
        b
    }

    /// Every string written from now on goes through `r` (see `redact`).
    pub fn with_redactor(mut self, r: Option<Arc<Redactor>>) -> Self {
        self.redactor = r;
        self
    }

    pub fn redacting(&self) -> bool {
        self.redactor.is_some()
    }

    /// Set per row by the caller from [`Redactor::candidate`].
    pub fn set_scan_tokens(&mut self, on: bool) {
        self.scan_tokens = on;
    }

    /// Registers `node`'s columns at `level`, addressed by dotted path.
    /// (Structs have no buffers: their validity is derived at `finish`.)
    fn register(&mut self, node: &Node, prefix: &str, level: usize) {
        let path = if prefix.is_empty() { node.name().to_string() } else { format!("{prefix}.{}", node.name()) };
        match node {
            Node::Leaf { ty, .. } => self.push_leaf(*ty, level, path),
            Node::Struct { children, .. } => {
                self.paths.push((path.clone(), Handle::Struct));
                for c in children {
                    self.register(c, &path, level);
                }
            }
            Node::List { item, .. } => {
                let idx = self.lists.len();
                let item_level = self.levels.len();
                self.levels.push(Level::default());
                self.lists.push(ListCol { level, item_level, offsets: vec![0], valid: Vec::new() });
                self.paths.push((path.clone(), Handle::List(idx)));
                match &**item {
                    // The item struct's fields are addressed under the list's path.
                    Node::Struct { children, .. } => {
                        for c in children {
                            self.register(c, &path, item_level);
                        }
                    }
                    // Items of a list of scalars are addressed as `list[]`.
                    Node::Leaf { ty, .. } => self.push_leaf(*ty, item_level, format!("{path}[]")),
                    Node::List { .. } => unreachable!("lists of lists are not used by OCSF datasets"),
                }
            }
        }
    }

    fn push_leaf(&mut self, ty: Ty, level: usize, path: String) {
        let values = match ty {
            Ty::Utf8 => Values::Utf8 { offsets: vec![0], bytes: Vec::new() },
            Ty::Int32 => Values::I32(Vec::new()),
            Ty::Int64 | Ty::TimestampMs => Values::I64(Vec::new()),
            Ty::Bool => Values::Bool(Vec::new()),
        };
        self.paths.push((path, Handle::Leaf(self.leaves.len())));
        self.leaves.push(LeafCol { ty, level, values, valid: Vec::new() });
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Dotted paths of every scalar column (`resources.uid`, `actor.user.groups[]`).
    pub fn leaf_paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().filter(|(_, h)| matches!(h, Handle::Leaf(_))).map(|(p, _)| p.as_str())
    }

    /// Resolves a scalar column by dotted path. Paths are fixed by the code, so
    /// a miss is a programming error caught by the schema tests.
    pub fn slot(&self, path: &str) -> Slot {
        self.try_slot(path).unwrap_or_else(|| panic!("no scalar column `{path}` in dataset"))
    }

    pub fn try_slot(&self, path: &str) -> Option<Slot> {
        self.paths.iter().find_map(|(p, h)| match h {
            Handle::Leaf(i) if p == path => Some(Slot(*i as u32)),
            _ => None,
        })
    }

    pub fn list(&self, path: &str) -> ListSlot {
        self.try_list(path).unwrap_or_else(|| panic!("no list column `{path}` in dataset"))
    }

    pub fn try_list(&self, path: &str) -> Option<ListSlot> {
        self.paths.iter().find_map(|(p, h)| match h {
            Handle::List(i) if p == path => Some(ListSlot(*i as u32)),
            _ => None,
        })
    }

    pub fn has_struct(&self, path: &str) -> bool {
        self.paths.iter().any(|(p, h)| p == path && matches!(h, Handle::Struct))
    }

    fn is_set(&self, leaf: usize) -> bool {
        let l = &self.leaves[leaf];
        l.len() > self.levels[l.level].count
    }

    fn list_is_set(&self, list: usize) -> bool {
        let l = &self.lists[list];
        l.valid.len() > self.levels[l.level].count
    }

    /// True when `slot` already holds a value for the current row or item.
    pub fn is_written(&self, slot: Slot) -> bool {
        self.is_set(slot.0 as usize)
    }

    /// The column of `slot`, padded with nulls up to the current row.
    #[inline]
    fn leaf_mut(&mut self, slot: Slot) -> &mut LeafCol {
        let i = slot.0 as usize;
        debug_assert!(!self.is_set(i), "column {} written twice in one row", self.path_of(i));
        let count = self.levels[self.leaves[i].level].count;
        let leaf = &mut self.leaves[i];
        leaf.pad_to(count);
        ahead(&leaf.valid, NEXT_BUT_ONE, 1);
        leaf
    }

    fn path_of(&self, leaf: usize) -> &str {
        self.paths
            .iter()
            .find_map(|(p, h)| matches!(h, Handle::Leaf(i) if *i == leaf).then_some(p.as_str()))
            .unwrap_or("?")
    }

    /// Writes a string, with every secret in it redacted.
    #[inline]
    pub fn str(&mut self, slot: Slot, v: &str) {
        if self.scan_tokens && self.redactor.is_some() {
            return self.str_scanned(slot, v);
        }
        self.str_with(slot, |b| b.extend_from_slice(v.as_bytes()));
    }

    /// [`ColumnBatch::str`] where the row's strings may hold tokens: out of
    /// line, so that the common path (a copy) inlines into its ~40 callers a
    /// record.
    #[inline(never)]
    fn str_scanned(&mut self, slot: Slot, v: &str) {
        self.json_with(slot, |buf, r, stats, tokens| match r {
            Some(r) if tokens => r.scan_into(v.as_bytes(), buf, stats),
            _ => buf.extend_from_slice(v.as_bytes()),
        });
    }

    /// Writes a JSON value as text, redacted by structure and content.
    pub fn json(&mut self, slot: Slot, v: &Val<'_, '_>) {
        self.json_with(slot, |buf, r, stats, tokens| match r {
            Some(r) => r.write_json(v, buf, stats, tokens),
            None => v.write_json(buf),
        });
    }

    /// Writes the value of object member `key` as text, redacted by its key,
    /// structure and content; copied from `source` where that is the same.
    pub fn json_member(&mut self, slot: Slot, key: &str, v: &Val<'_, '_>, source: Option<Source<'_>>) {
        self.json_with(slot, |buf, r, stats, tokens| write_member(buf, r, stats, tokens, key, v, source));
    }

    /// Writes `v`, the value of object member `key`, as [`ColumnBatch::json`]
    /// does (redacted by its structure and content, not by its key); copied
    /// from `source` where that is the same.
    pub fn json_in(&mut self, slot: Slot, key: &str, v: &Val<'_, '_>, source: Option<Source<'_>>) {
        self.json_with(slot, |buf, r, stats, tokens| match r {
            Some(r) => r.write_judged(None, key, v, source, buf, stats, tokens),
            None => write_member(buf, None, stats, tokens, key, v, source),
        });
    }

    /// Writes text built by `f` into a Utf8 column. `f` is handed the
    /// redactor (if any), the row's stats and the token flag, and must route
    /// every value through the redactor.
    #[inline]
    pub fn json_with(&mut self, slot: Slot, f: impl FnOnce(&mut Vec<u8>, Option<&Redactor>, &mut Stats, bool)) {
        let i = slot.0 as usize;
        debug_assert!(!self.is_set(i), "column {} written twice in one row", self.path_of(i));
        let count = self.levels[self.leaves[i].level].count;
        let leaf = &mut self.leaves[i];
        leaf.pad_to(count);
        ahead(&leaf.valid, NEXT_BUT_ONE, 1);
        let Values::Utf8 { offsets, bytes } = &mut leaf.values else { panic!("column is not Utf8") };
        ahead(offsets, NEXT_BUT_ONE, 1);
        f(bytes, self.redactor.as_deref(), &mut self.row_stats, self.scan_tokens);
        // Documents run to hundreds of bytes a row: the next row's lines.
        ahead(bytes, 64, 4);
        offsets.push(bytes.len() as i32);
        leaf.valid.push(1);
    }

    /// Writes a string produced in place, not scanned for tokens (constants,
    /// captions, and [`ColumnBatch::str`] where the row has no candidate).
    /// `f` must append valid UTF-8.
    #[inline]
    pub fn str_with(&mut self, slot: Slot, f: impl FnOnce(&mut Vec<u8>)) {
        let leaf = self.leaf_mut(slot);
        match &mut leaf.values {
            Values::Utf8 { offsets, bytes } => {
                ahead(offsets, NEXT_BUT_ONE, 1);
                ahead(bytes, NEXT_BUT_ONE, 1);
                f(bytes);
                offsets.push(bytes.len() as i32);
            }
            _ => panic!("column is not Utf8"),
        }
        leaf.valid.push(1);
    }

    #[inline]
    pub fn i32(&mut self, slot: Slot, v: i32) {
        let leaf = self.leaf_mut(slot);
        match &mut leaf.values {
            Values::I32(x) => {
                ahead(x, NEXT_BUT_ONE, 1);
                x.push(v)
            }
            _ => panic!("column is not Int32"),
        }
        leaf.valid.push(1);
    }

    /// Int64 or millisecond-timestamp columns.
    #[inline]
    pub fn i64(&mut self, slot: Slot, v: i64) {
        let leaf = self.leaf_mut(slot);
        match &mut leaf.values {
            Values::I64(x) => {
                ahead(x, NEXT_BUT_ONE, 1);
                x.push(v)
            }
            _ => panic!("column is not Int64"),
        }
        leaf.valid.push(1);
    }

    #[inline]
    pub fn bool(&mut self, slot: Slot, v: bool) {
        let leaf = self.leaf_mut(slot);
        match &mut leaf.values {
            Values::Bool(x) => {
                ahead(x, NEXT_BUT_ONE, 1);
                x.push(v as u8)
            }
            _ => panic!("column is not Boolean"),
        }
        leaf.valid.push(1);
    }

    /// Marks a list as present (possibly empty) in the current row or item.
    pub fn list_begin(&mut self, list: ListSlot) {
        let i = list.0 as usize;
        debug_assert!(!self.list_is_set(i));
        let count = self.levels[self.lists[i].level].count;
        let l = &mut self.lists[i];
        l.pad_to(count);
        l.valid.push(1);
    }

    /// Ends one item of `list`; unset columns of the item become null.
    pub fn item_end(&mut self, list: ListSlot) {
        let level = self.lists[list.0 as usize].item_level;
        self.end_level(level);
    }

    /// Closes `list` for the current row or item.
    pub fn list_end(&mut self, list: ListSlot) {
        let l = &mut self.lists[list.0 as usize];
        let n = self.levels[l.item_level].count as i32;
        l.offsets.push(n);
    }

    /// Convenience for lists of strings.
    pub fn list_str<'a>(&mut self, list: ListSlot, item: Slot, values: impl IntoIterator<Item = &'a str>) {
        self.list_begin(list);
        for v in values {
            self.str(item, v);
            self.item_end(list);
        }
        self.list_end(list);
    }

    /// Ends a row or item of `level`. Columns not written in it are padded
    /// with nulls lazily (at their next write, or at `finish`), and struct
    /// validity is derived at `finish`, so a row costs what it writes, not
    /// what the schema holds.
    fn end_level(&mut self, level: usize) {
        self.levels[level].count += 1;
    }

    /// True when every required column of the current row was written.
    pub fn missing_required(&self) -> Option<String> {
        fn walk(b: &ColumnBatch, nodes: &[Node], prefix: &str) -> Option<String> {
            for n in nodes {
                let path = if prefix.is_empty() { n.name().to_string() } else { format!("{prefix}.{}", n.name()) };
                match n {
                    Node::Leaf { required: true, .. } => {
                        let Some(slot) = b.try_slot(&path) else { continue };
                        if !b.is_set(slot.0 as usize) {
                            return Some(path);
                        }
                    }
                    Node::Struct { children, .. } => {
                        if let Some(p) = walk(b, children, &path) {
                            return Some(p);
                        }
                    }
                    _ => {}
                }
            }
            None
        }
        walk(self, &self.root, "")
    }

    pub fn end_row(&mut self) {
        if self.row_stats.count > 0 {
            if let (Some((count, list, item, key)), Some(r)) = (self.redaction_cols, self.redactor.clone()) {
                self.i32(count, self.row_stats.count as i32);
                let types = std::mem::take(&mut self.row_stats.types);
                self.list_str(list, item, types.iter().copied());
                self.str_with(key, |b| b.extend_from_slice(r.key_id().as_bytes()));
                self.row_stats.types = types;
                self.batch_stats.absorb(&self.row_stats);
            }
            self.row_stats.clear();
        }
        self.end_level(0);
        for lvl in &mut self.levels {
            lvl.count_at_row_start = lvl.count;
        }
    }

    /// Discards everything written since the last `end_row`.
    pub fn rollback_row(&mut self) {
        self.row_stats.clear();
        for lvl in &mut self.levels {
            lvl.count = lvl.count_at_row_start;
        }
        for l in 0..self.leaves.len() {
            let n = self.levels[self.leaves[l].level].count;
            self.leaves[l].truncate(n);
        }
        for l in &mut self.lists {
            let n = self.levels[l.level].count;
            if l.valid.len() > n {
                l.valid.truncate(n);
                l.offsets.truncate(n + 1);
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.levels[0].count
    }

    /// Approximate bytes held by the buffers, for memory bounds.
    pub fn buffered_bytes(&self) -> usize {
        self.leaves
            .iter()
            .map(|l| {
                l.valid.len()
                    + match &l.values {
                        Values::Utf8 { offsets, bytes } => offsets.len() * 4 + bytes.len(),
                        Values::I32(v) => v.len() * 4,
                        Values::I64(v) => v.len() * 8,
                        Values::Bool(v) => v.len(),
                    }
            })
            .sum()
    }

    /// Moves the rows written so far into a `RecordBatch`; the buffers start
    /// the next batch empty, holding no memory.
    pub fn finish(&mut self) -> RecordBatch {
        if let Some(r) = &self.redactor {
            r.record(&self.batch_stats);
        }
        self.batch_stats.clear();
        for l in 0..self.leaves.len() {
            // A leaf no row wrote is built null whole (`build`), not padded.
            if !self.leaves[l].valid.is_empty() {
                let n = self.levels[self.leaves[l].level].count;
                self.leaves[l].pad_to(n);
            }
        }
        for l in 0..self.lists.len() {
            let n = self.levels[self.lists[l].level].count;
            self.lists[l].pad_to(n);
        }
        let mut next_leaf = 0;
        let mut next_list = 0;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.root.len());
        let root = std::mem::take(&mut self.root);
        let mut null = Vec::new();
        for node in &root {
            columns.push(self.build(node, &mut next_leaf, &mut next_list, &mut null));
        }
        self.root = root;
        let rows = self.rows();
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("column builder produced arrays that match its own schema");
        // `build` handed every buffer to Arrow (or copied it into a bitmap)
        // and left it empty.
        for l in &mut self.lists {
            l.valid = Vec::new();
        }
        for lvl in &mut self.levels {
            lvl.count = 0;
            lvl.count_at_row_start = 0;
        }
        batch
    }

    /// The array of `node`. `null`: the all-null leaves built so far, by
    /// type and length, for other leaves to share.
    fn build(
        &mut self,
        node: &Node,
        next_leaf: &mut usize,
        next_list: &mut usize,
        null: &mut Vec<(Ty, usize, ArrayRef)>,
    ) -> ArrayRef {
        match node {
            Node::Leaf { .. } => {
                let n = self.levels[self.leaves[*next_leaf].level].count;
                let l = &mut self.leaves[*next_leaf];
                *next_leaf += 1;
                if !l.valid.is_empty() || n == 0 {
                    return leaf_array(l);
                }
                // A dataset is ~150 leaves wide and a source fills a few
                // dozen: most leaves are null in every row of a batch.
                if let Some((_, _, a)) = null.iter().find(|(t, len, _)| *t == l.ty && *len == n) {
                    return Arc::clone(a);
                }
                let a = null_leaf(l.ty, n);
                null.push((l.ty, n, Arc::clone(&a)));
                a
            }
            Node::Struct { children, .. } => {
                let arrays: Vec<ArrayRef> =
                    children.iter().map(|c| self.build(c, next_leaf, next_list, null)).collect();
                // A struct is present where anything beneath it is.
                let nulls = arrays.iter().try_fold(None::<BooleanBuffer>, |acc, a| {
                    let v = a.nulls()?.inner().clone();
                    Some(Some(match acc {
                        None => v,
                        Some(acc) => &acc | &v,
                    }))
                });
                let nulls = match nulls {
                    // Some child is valid everywhere (or there are no rows).
                    None | Some(None) => None,
                    Some(Some(v)) => Some(NullBuffer::new(v)).filter(|n| n.null_count() > 0),
                };
                Arc::new(
                    StructArray::try_new(children_fields(children), arrays, nulls)
                        .expect("struct children have equal lengths"),
                )
            }
            Node::List { item, .. } => {
                let li = *next_list;
                *next_list += 1;
                let values = self.build(item, next_leaf, next_list, null);
                let l = &mut self.lists[li];
                let field = Arc::new(Field::new("element", item.data_type(), true));
                Arc::new(
                    ListArray::try_new(
                        field,
                        OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(&mut l.offsets, vec![0]))),
                        values,
                        nulls(&l.valid),
                    )
                    .expect("list offsets are monotonic"),
                )
            }
        }
    }
}

/// Writes one object member's value as JSON text: through the redactor when
/// there is one, else as the tape or, where it is the same, `source` has it.
pub fn write_member(
    buf: &mut Vec<u8>,
    red: Option<&Redactor>,
    stats: &mut Stats,
    tokens: bool,
    key: &str,
    v: &Val<'_, '_>,
    source: Option<Source<'_>>,
) {
    match red {
        Some(r) => r.write_member(key, v, source, buf, stats, tokens),
        None => match source.and_then(|s| s.member_text(key, v)) {
            Some(text) => buf.extend_from_slice(text),
            None => v.write_json(buf),
        },
    }
}

/// A column's validity as a bitmap, or `None` when nothing is null
/// (`NullBuffer::new` counts the nulls by popcount).
fn nulls(valid: &[u8]) -> Option<NullBuffer> {
    let n = NullBuffer::new(bits(valid));
    (n.null_count() > 0).then_some(n)
}

/// Bytes that are each 0 or 1 as a bitmap, eight packed with one multiply:
/// the constant moves byte `i`'s bit to bit `56 + i` with no two partial
/// products meeting, so no carry reaches the top byte. (`From<&[bool]>`
/// sets a bit a branch; with the `all` scan that validity took before it,
/// 1% of the run.)
fn bits(v: &[u8]) -> BooleanBuffer {
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut out = Vec::with_capacity(v.len().div_ceil(8));
    let mut eights = v.chunks_exact(8);
    for e in &mut eights {
        let word = u64::from_le_bytes(e.try_into().expect("chunks of eight"));
        out.push((word.wrapping_mul(GATHER) >> 56) as u8);
    }
    let rest = eights.remainder();
    if !rest.is_empty() {
        out.push(rest.iter().enumerate().fold(0, |acc, (i, b)| acc | (b << i)));
    }
    BooleanBuffer::new(Buffer::from_vec(out), 0, v.len())
}

/// Moves a column's values into an Arrow array (no copy); the column starts
/// the next batch empty. Not pre-sized to this batch: capacity reserved on
/// every column of every partition is memory the buffer bound does not see
/// (it counts bytes written), and it was most of the peak RSS.
fn leaf_array(l: &mut LeafCol) -> ArrayRef {
    let n = nulls(&l.valid);
    // Copied into a bitmap: kept, its capacity would be a byte per row of
    // the partition's largest batch, for every column, unseen by the bound.
    l.valid = Vec::new();
    fn take<T>(v: &mut Vec<T>) -> Vec<T> {
        std::mem::take(v)
    }
    match (&mut l.values, l.ty) {
        (Values::Utf8 { offsets, bytes }, _) => {
            let offsets = std::mem::replace(offsets, vec![0]);
            assert!(ascending_from_zero(&offsets), "offsets are lengths written so far");
            // SAFETY: what `OffsetBuffer::new` checks, checked just above.
            let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
            let bytes = take(bytes);
            assert!(utf8_at(&offsets, &bytes), "only &str values are written to Utf8 columns");
            assert!(n.as_ref().is_none_or(|n| n.len() == offsets.len() - 1), "a validity bit per value");
            // SAFETY: what `StringArray::try_new` checks, checked just above
            // (`OffsetBuffer::new` checked that the offsets ascend from 0).
            Arc::new(unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(bytes), n) })
        }
        (Values::I32(v), _) => Arc::new(Int32Array::new(ScalarBuffer::from(take(v)), n)),
        (Values::I64(v), Ty::TimestampMs) => {
            Arc::new(TimestampMillisecondArray::new(ScalarBuffer::from(take(v)), n).with_timezone("UTC"))
        }
        (Values::I64(v), _) => Arc::new(Int64Array::new(ScalarBuffer::from(take(v)), n)),
        (Values::Bool(v), _) => {
            let b = bits(v);
            *v = Vec::new();
            Arc::new(BooleanArray::new(b, n))
        }
    }
}

/// `n` nulls of type `ty`.
fn null_leaf(ty: Ty, n: usize) -> ArrayRef {
    match ty {
        Ty::Utf8 => Arc::new(StringArray::new_null(n)),
        Ty::Int32 => Arc::new(Int32Array::new_null(n)),
        Ty::Int64 => Arc::new(Int64Array::new_null(n)),
        Ty::TimestampMs => Arc::new(TimestampMillisecondArray::new_null(n).with_timezone("UTC")),
        Ty::Bool => Arc::new(BooleanArray::new_null(n)),
    }
}

/// What `OffsetBuffer::new` checks, without a branch an offset: its
/// `windows(2).all(..)` stops at the first fall, so it runs an offset at a
/// time (0.5% of a run, benches/README.md, session 25); folded, it is
/// compared eight offsets to an instruction.
fn ascending_from_zero(o: &[i32]) -> bool {
    o.first().is_some_and(|&f| f >= 0) && o.iter().zip(&o[1..]).fold(true, |ok, (a, b)| ok & (a <= b))
}

/// Whether every value `offsets` cuts from `bytes` is UTF-8: all of it is,
/// and every offset is in it, at a character's first byte. Arrow checks the
/// same a byte at a time past ASCII and then loads the byte at every offset,
/// a random read per row per column (2% of a run, benches/README.md,
/// session 23). Column text is nearly always ASCII, where every byte starts
/// a character: then only the last offset needs a look.
fn utf8_at(offsets: &OffsetBuffer<i32>, bytes: &[u8]) -> bool {
    let last = offsets.last() as usize;
    if bytes.is_ascii() {
        return last <= bytes.len();
    }
    simdutf8::basic::from_utf8(bytes).is_ok()
        && offsets.iter().all(|&o| match bytes.get(o as usize) {
            Some(b) => (*b as i8) >= -0x40,
            None => o as usize == bytes.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn s(name: &'static str) -> Node {
        Node::Leaf { name, ty: Ty::Utf8, required: false }
    }

    fn tree() -> Vec<Node> {
        vec![
            Node::Leaf { name: "id", ty: Ty::Int32, required: true },
            Node::Struct {
                name: "actor",
                children: vec![Node::Struct { name: "user", children: vec![s("uid"), s("name")] }],
            },
            Node::List {
                name: "resources",
                item: Box::new(Node::Struct { name: "element", children: vec![s("uid"), s("type")] }),
            },
            Node::List { name: "tags", item: Box::new(s("element")) },
        ]
    }

    #[test]
    fn offsets_are_checked_as_arrow_checks_them() {
        assert!(ascending_from_zero(&[0]) && ascending_from_zero(&[0, 0, 3, 3, 9]));
        // A fall anywhere, the last pair included, or a negative start.
        assert!(!ascending_from_zero(&[]) && !ascending_from_zero(&[-1, 0]));
        let mut o: Vec<i32> = (0..40).collect();
        for at in 1..o.len() {
            o[at] -= 2;
            assert!(!ascending_from_zero(&o), "a fall at {at}");
            o[at] += 2;
        }
        assert!(ascending_from_zero(&o));
    }

    #[test]
    fn string_columns_are_checked_as_arrow_checks_them() {
        let o = |v: &[i32]| OffsetBuffer::new(ScalarBuffer::from(v.to_vec()));
        let text = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert!(utf8_at(&o(&[0, 1, 3, 6]), text));
        assert!(utf8_at(&o(&[0, 0, 6]), text));
        assert!(!utf8_at(&o(&[0, 2, 6]), text), "an offset inside é");
        assert!(!utf8_at(&o(&[0, 4]), text), "an offset inside €");
        assert!(!utf8_at(&o(&[0, 7]), text), "past the end");
        assert!(!utf8_at(&o(&[0, 2]), &[b'a', 0xff]), "not UTF-8");
        assert!(utf8_at(&o(&[0, 1, 3]), b"abc"));
        assert!(utf8_at(&o(&[0, 3]), b"abcdef"), "values need not reach the end");
        assert!(!utf8_at(&o(&[0, 4]), b"abc"), "ASCII, past the end");
        assert!(utf8_at(&o(&[0]), b""));
    }

    #[test]
    fn nested_rows_nulls_and_rollback() {
        let mut b = ColumnBatch::new(tree());
        let id = b.slot("id");
        let uid = b.slot("actor.user.uid");
        let res = b.list("resources");
        let ruid = b.slot("resources.uid");
        let rtype = b.slot("resources.type");
        let tags = b.list("tags");
        let tag = b.slot("tags[]");

        // Row 0: user set, two resources, one tag.
        b.i32(id, 1);
        b.str(uid, "alice");
        b.list_begin(res);
        b.str(ruid, "arn:1");
        b.item_end(res);
        b.str(rtype, "bucket");
        b.item_end(res);
        b.list_end(res);
        b.list_str(tags, tag, ["x"]);
        b.end_row();

        // A row that fails half-way is rolled back without a trace.
        b.i32(id, 99);
        b.list_begin(res);
        b.str(ruid, "arn:bad");
        b.item_end(res);
        b.list_end(res);
        b.rollback_row();

        // Row 1: nothing but the id.
        b.i32(id, 2);
        assert!(b.missing_required().is_none());
        b.end_row();
        assert_eq!(b.missing_required().as_deref(), Some("id"));

        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        let ids = batch.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2]);
        let actor = batch.column(1).as_any().downcast_ref::<StructArray>().unwrap();
        assert!(actor.is_valid(0) && actor.is_null(1));
        let resources = batch.column(2).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(resources.value_offsets(), &[0, 2, 2]);
        assert!(resources.is_null(1));
        let items = resources.values().as_any().downcast_ref::<StructArray>().unwrap();
        let uids = items.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(uids.value(0), "arn:1");
        assert!(uids.is_null(1));
        let tags = batch.column(3).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(tags.value_offsets(), &[0, 1, 1]);

        // Buffers are reusable after finish.
        b.i32(id, 3);
        b.end_row();
        assert_eq!(b.finish().num_rows(), 1);
    }

    #[test]
    fn booleans_are_packed_as_arrow_packs_them() {
        // Lengths around the eight-entry words, patterns that set each bit.
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 64, 65, 130] {
            for pattern in [0u64, u64::MAX, 0x5555_5555_5555_5555, 0x8421_0842_1084_2108, 0x0123_4567_89ab_cdef] {
                let bools: Vec<bool> = (0..len).map(|i| pattern >> (i % 64) & 1 == 1).collect();
                let bytes: Vec<u8> = bools.iter().map(|b| *b as u8).collect();
                let want = NullBuffer::new(BooleanBuffer::from(bools.as_slice()));
                assert_eq!(bits(&bytes), *want.inner(), "len {len}, pattern {pattern:x}");
                match nulls(&bytes) {
                    Some(got) => assert_eq!(got, want, "len {len}, pattern {pattern:x}"),
                    None => assert_eq!(want.null_count(), 0, "len {len}, pattern {pattern:x}: nulls lost"),
                }
            }
        }
    }

    /// Leaves no row wrote are built null whole and shared, of their own
    /// type and length (rows, or a list's items); a leaf written once is
    /// padded as before.
    #[test]
    fn leaves_no_row_wrote_are_null_and_shared() {
        let leaf = |name, ty| Node::Leaf { name, ty, required: false };
        let mut b = ColumnBatch::new(vec![
            leaf("id", Ty::Int32),
            leaf("n", Ty::Int64),
            leaf("at", Ty::TimestampMs),
            leaf("ok", Ty::Bool),
            Node::Struct { name: "user", children: vec![s("uid"), s("name"), leaf("count", Ty::Int32)] },
            Node::List {
                name: "resources",
                item: Box::new(Node::Struct { name: "element", children: vec![s("uid"), s("type")] }),
            },
        ]);
        let (id, res, ruid) = (b.slot("id"), b.list("resources"), b.slot("resources.uid"));
        for row in 0..3 {
            b.i32(id, row);
            b.list_begin(res);
            for _ in 0..2 {
                b.str(ruid, "arn:1");
                b.item_end(res);
            }
            b.list_end(res);
            b.end_row();
        }
        let batch = b.finish();
        let user = batch.column(4).as_any().downcast_ref::<StructArray>().unwrap();
        let items = batch.column(5).as_any().downcast_ref::<ListArray>().unwrap().values().clone();
        let items = items.as_any().downcast_ref::<StructArray>().unwrap();
        let want = [
            (batch.column(1), DataType::Int64, 3),
            (batch.column(2), DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), 3),
            (batch.column(3), DataType::Boolean, 3),
            (user.column(0), DataType::Utf8, 3),
            (user.column(1), DataType::Utf8, 3),
            (user.column(2), DataType::Int32, 3),
            (items.column(1), DataType::Utf8, 6),
        ];
        for (i, (a, ty, len)) in want.iter().enumerate() {
            assert_eq!((a.data_type(), a.len(), a.null_count()), (ty, *len, *len), "leaf {i}");
        }
        assert!(user.is_null(0) && user.null_count() == 3, "a struct with nothing under it is null");
        assert!(user.column(0).to_data().ptr_eq(&user.column(1).to_data()), "one array for the two");
        assert!(!user.column(0).to_data().ptr_eq(&items.column(1).to_data()), "another length");
        assert_eq!(items.column(0).null_count(), 0, "the leaf every item wrote");
        assert_eq!(batch.column(0).null_count(), 0);
    }

    /// What a partition's buffers keep between batches is memory the buffer
    /// bound does not count: none may be kept.
    #[test]
    fn a_finished_batch_holds_no_buffer() {
        let mut b = ColumnBatch::new(tree());
        let (id, uid, tags, tag) = (b.slot("id"), b.slot("actor.user.uid"), b.list("tags"), b.slot("tags[]"));
        for i in 0..1000 {
            b.i32(id, i);
            if i % 2 == 0 {
                b.str(uid, "alice");
            }
            b.list_str(tags, tag, ["x", "y"]);
            b.end_row();
        }
        let held = |b: &ColumnBatch| {
            let leaves: usize = b
                .leaves
                .iter()
                .map(|l| {
                    l.valid.capacity()
                        + match &l.values {
                            Values::Utf8 { offsets, bytes } => offsets.capacity() * 4 + bytes.capacity(),
                            Values::I32(v) => v.capacity() * 4,
                            Values::I64(v) => v.capacity() * 8,
                            Values::Bool(v) => v.capacity(),
                        }
                })
                .sum();
            leaves + b.lists.iter().map(|l| l.valid.capacity() + l.offsets.capacity() * 4).sum::<usize>()
        };
        assert!(held(&b) > 1000 * 7, "1000 rows of several columns are buffered");
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 1000);
        // What is left: one offset per string and list column, to start the next batch.
        assert!(held(&b) <= 64, "{} bytes held after finish", held(&b));
        b.i32(id, 1);
        b.end_row();
        assert_eq!(b.finish().num_rows(), 1, "the emptied buffers take the next batch");
    }
}
