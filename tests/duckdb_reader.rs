//! The archive read back by an independent reader: DuckDB (from the venv
//! that `scripts/test.sh` sets up), querying it the way a user would.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// The Python with DuckDB, or `None` (and a loud note) when it is not set up.
/// Under `scripts/test.sh` (TRAILSHIP_REQUIRE_EXTERNAL=1) missing is a failure.
fn python() -> Option<String> {
    common::external("TRAILSHIP_TEST_PYTHON", "DuckDB reader tests")
}

fn duckdb(py: &str, sql: &str) -> Vec<Value> {
    let script = r#"
import duckdb, json, sys
rows = duckdb.sql(sys.argv[1]).fetchall()
print(json.dumps([list(r) for r in rows], default=str))
"#;
    let o = Command::new(py).args(["-c", script, sql]).output().expect("python runs");
    assert!(o.status.success(), "duckdb failed on {sql}:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap()
}

#[test]
fn duckdb_reads_the_archive_like_ocsf() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("duckdb");
    let out = dir.path();
    // The GitHub audit-log samples fill the two datasets CloudTrail never writes.
    let inputs = vec![
        fixture("cloudtrail/aws-samples-security-lake"),
        fixture("cloudtrail/awsdocs"),
        fixture("ocsf-examples/github/entity_management.raw"),
        fixture("ocsf-examples/github/group_management.raw"),
    ];
    let s = run(out, &inputs);
    let root = out.display();
    let ds = |d: &str| format!("read_parquet('{root}/{d}/**/*.parquet', hive_partitioning=true)");

    // Row counts per dataset agree with the summary.
    for class in trailship::ocsf::Class::ALL {
        let n = duckdb(&py, &format!("SELECT count(*) FROM {}", ds(class.dataset())));
        assert_eq!(n[0][0], s.rows[&class], "{}", class.dataset());
    }

    // Nested OCSF names, partition columns and values.
    let r = duckdb(
        &py,
        &format!(
            "SELECT class_uid, type_uid, api.operation, actor.user.name, status_id, status_code, cloud.region, \
             region, accountId, eventDay, epoch_ms(time_dt) = time, len(resources) \
             FROM {} WHERE metadata.uid = 'b7d4398e-b2f0-4faa-9c76-e2d316a8d67f' \
             AND api.operation = 'UpdateTrail' AND accountId = 111122223333",
            ds("api_activity")
        ),
    );
    assert_eq!(
        r,
        vec![serde_json::json!([
            6003,
            600303,
            "UpdateTrail",
            "Alice",
            2,
            "TrailNotFoundException",
            "us-east-2",
            "us-east-2",
            111122223333i64,
            20160714,
            true,
            null
        ])]
    );

    // Lists: unnest the resources of the S3 on Outposts data event.
    let r = duckdb(
        &py,
        &format!(
            "SELECT r.type, count(*) FROM (SELECT unnest(resources) AS r FROM {}) GROUP BY 1 ORDER BY 1",
            ds("api_activity")
        ),
    );
    assert_eq!(
        r,
        vec![serde_json::json!(["AWS::S3Outposts::Bucket", 1]), serde_json::json!(["AWS::S3Outposts::Object", 1])]
    );

    // JSON columns are real JSON to the reader.
    let r = duckdb(
        &py,
        &format!(
            "SELECT json_extract_string(api.request.data, '$.roleArn') FROM {} WHERE api.operation = 'AssumeRole'",
            ds("authentication")
        ),
    );
    assert_eq!(r, vec![serde_json::json!(["arn:aws:iam::111122223333:role/EC2-dev"])]);

    // Sign-in failures are queryable by status.
    let r = duckdb(
        &py,
        &format!(
            "SELECT count(*) FROM {} WHERE api.operation = 'ConsoleLogin' AND status_id = 2",
            ds("authentication")
        ),
    );
    assert_eq!(r[0][0], 2);

    // DuckDB sees the same standard LIST layout Athena needs.
    let r = duckdb(
        &py,
        &format!(
            "SELECT name, repetition_type FROM parquet_schema('{root}/authentication/**/*.parquet') \
             WHERE name IN ('profiles', 'list', 'element') GROUP BY ALL ORDER BY 1"
        ),
    );
    assert_eq!(
        r,
        vec![
            serde_json::json!(["element", "OPTIONAL"]),
            serde_json::json!(["list", "REPEATED"]),
            serde_json::json!(["profiles", "OPTIONAL"])
        ]
    );
}
