//! Decoding: bytes → records. Framing splits streams into records without
//! parsing them; `json` parses one record into a reusable tape.

pub mod framer;
pub mod json;
pub mod lines;
mod swar;
