//! trailship: audit logs → OCSF → tamper-evident Parquet archive.
//!
//! The stages follow the data: [`source`] → [`decode`] → [`normalize`] →
//! [`batch`] → [`encode`] → [`sink`], driven by [`pipeline`]. See
//! `ARCHITECTURE.md` for the map and its invariants.

pub mod batch;
pub mod config;
pub mod deadletter;
pub mod decode;
pub mod encode;
pub mod integrity;
pub mod normalize;
pub mod ocsf;
pub mod pipeline;
pub mod redact;
pub mod samples;
pub mod service;
pub mod sink;
pub mod source;
