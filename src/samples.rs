//! The embedded default: real public CloudTrail samples compiled into the
//! binary, so `trailship normalize` with no input works anywhere.
//! Provenance: `samples/PROVENANCE.md`.

use crate::source::Input;

const FILES: &[(&str, &[u8])] = &[
    (
        "AWSLogs/111122223333/CloudTrail/us-east-2/2016/07/14/111122223333_CloudTrail_us-east-2_20160714T1915Z_sample.json.gz",
        include_bytes!(
            "../samples/cloudtrail/AWSLogs/111122223333/CloudTrail/us-east-2/2016/07/14/111122223333_CloudTrail_us-east-2_20160714T1915Z_sample.json.gz"
        ),
    ),
    ("awsdocs-examples.ndjson", include_bytes!("../samples/cloudtrail/awsdocs-examples.ndjson")),
    ("eventbridge-createuser.json", include_bytes!("../samples/cloudtrail/eventbridge-createuser.json")),
];

pub fn inputs() -> Vec<Input> {
    FILES.iter().map(|(name, bytes)| Input::Embedded { name, bytes }).collect()
}
