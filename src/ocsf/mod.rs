//! OCSF classes trailship writes, and the column tree of each dataset.
//!
//! The schema version is pinned here and in `schemas/`; `tests/schema.rs`
//! checks that this code, `schemas/arrow/*.json` and the vendored class
//! definitions in `schemas/ocsf-1.8.0/` agree.

mod schema;

pub use schema::{EXTENSION_COLUMNS, dataset_columns};

use crate::batch::columns::{Node, Ty};

/// The Arrow schema of `class`'s dataset as reviewable JSON
/// (`schemas/arrow/<dataset>.json` is this, checked in).
pub fn arrow_schema_json(class: Class) -> serde_json::Value {
    fn node(n: &Node) -> serde_json::Value {
        match n {
            Node::Leaf { name, ty, required } => serde_json::json!({
                "name": name,
                "type": match ty {
                    Ty::Utf8 => "utf8",
                    Ty::Int32 => "int32",
                    Ty::Int64 => "int64",
                    Ty::Bool => "bool",
                    Ty::TimestampMs => "timestamp[ms, UTC]",
                },
                "nullable": !required,
            }),
            Node::Struct { name, children } => serde_json::json!({
                "name": name,
                "type": "struct",
                "fields": children.iter().map(node).collect::<Vec<_>>(),
            }),
            Node::List { name, item } => serde_json::json!({
                "name": name,
                "type": "list",
                "element": node(item),
            }),
        }
    }
    serde_json::json!({
        "dataset": class.dataset(),
        "class_uid": class.uid(),
        "ocsf_version": OCSF_VERSION,
        "fields": dataset_columns(class).iter().map(node).collect::<Vec<_>>(),
    })
}

/// The pinned OCSF schema version (see `schemas/README.md`).
pub const OCSF_VERSION: &str = "1.8.0";

/// An OCSF event class with a dataset of its own in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    AccountChange,
    Authentication,
    EntityManagement,
    GroupManagement,
    ApiActivity,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::ApiActivity,
        Class::Authentication,
        Class::AccountChange,
        Class::EntityManagement,
        Class::GroupManagement,
    ];

    /// Position in [`Class::ALL`], for per-class tables.
    pub fn index(self) -> usize {
        match self {
            Class::ApiActivity => 0,
            Class::Authentication => 1,
            Class::AccountChange => 2,
            Class::EntityManagement => 3,
            Class::GroupManagement => 4,
        }
    }

    pub fn uid(self) -> i32 {
        match self {
            Class::AccountChange => 3001,
            Class::Authentication => 3002,
            Class::EntityManagement => 3004,
            Class::GroupManagement => 3006,
            Class::ApiActivity => 6003,
        }
    }

    pub fn category_uid(self) -> i32 {
        self.uid() / 1000
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::AccountChange => "Account Change",
            Class::Authentication => "Authentication",
            Class::EntityManagement => "Entity Management",
            Class::GroupManagement => "Group Management",
            Class::ApiActivity => "API Activity",
        }
    }

    pub fn category_name(self) -> &'static str {
        match self.category_uid() {
            3 => "Identity & Access Management",
            6 => "Application Activity",
            _ => unreachable!(),
        }
    }

    /// Dataset (top-level directory) name in the archive: the class name in
    /// OCSF's snake_case form.
    pub fn dataset(self) -> &'static str {
        match self {
            Class::AccountChange => "account_change",
            Class::Authentication => "authentication",
            Class::EntityManagement => "entity_management",
            Class::GroupManagement => "group_management",
            Class::ApiActivity => "api_activity",
        }
    }

    /// Caption of an `activity_id` of this class (OCSF 1.8.0 enums).
    pub fn activity_caption(self, id: i32) -> Option<&'static str> {
        let c = match (self, id) {
            (_, 0) => "Unknown",
            (_, 99) => "Other",
            (Class::ApiActivity, 1) => "Create",
            (Class::ApiActivity, 2) => "Read",
            (Class::ApiActivity, 3) => "Update",
            (Class::ApiActivity, 4) => "Delete",
            (Class::Authentication, 1) => "Logon",
            (Class::Authentication, 2) => "Logoff",
            (Class::Authentication, 3) => "Authentication Ticket",
            (Class::Authentication, 4) => "Service Ticket Request",
            (Class::Authentication, 5) => "Service Ticket Renew",
            (Class::Authentication, 6) => "Preauth",
            (Class::Authentication, 7) => "Account Switch",
            (Class::AccountChange, 1) => "Create",
            (Class::AccountChange, 2) => "Enable",
            (Class::AccountChange, 3) => "Password Change",
            (Class::AccountChange, 4) => "Password Reset",
            (Class::AccountChange, 5) => "Disable",
            (Class::AccountChange, 6) => "Delete",
            (Class::AccountChange, 7) => "Attach Policy",
            (Class::AccountChange, 8) => "Detach Policy",
            (Class::AccountChange, 9) => "Lock",
            (Class::AccountChange, 10) => "MFA Factor Enable",
            (Class::AccountChange, 11) => "MFA Factor Disable",
            (Class::AccountChange, 12) => "Unlock",
            (Class::EntityManagement, 1) => "Create",
            (Class::EntityManagement, 2) => "Read",
            (Class::EntityManagement, 3) => "Update",
            (Class::EntityManagement, 4) => "Delete",
            (Class::EntityManagement, 5) => "Move",
            (Class::EntityManagement, 6) => "Enroll",
            (Class::EntityManagement, 7) => "Unenroll",
            (Class::EntityManagement, 8) => "Enable",
            (Class::EntityManagement, 9) => "Disable",
            (Class::EntityManagement, 10) => "Activate",
            (Class::EntityManagement, 11) => "Deactivate",
            (Class::EntityManagement, 12) => "Suspend",
            (Class::EntityManagement, 13) => "Resume",
            (Class::GroupManagement, 1) => "Assign Privileges",
            (Class::GroupManagement, 2) => "Revoke Privileges",
            (Class::GroupManagement, 3) => "Add User",
            (Class::GroupManagement, 4) => "Remove User",
            _ => return None,
        };
        Some(c)
    }
}

/// `severity_id` captions (base event).
pub fn severity_caption(id: i32) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        99 => "Other",
        _ => "Unknown",
    }
}

/// `status_id` captions (base event).
pub fn status_caption(id: i32) -> &'static str {
    match id {
        1 => "Success",
        2 => "Failure",
        99 => "Other",
        _ => "Unknown",
    }
}
