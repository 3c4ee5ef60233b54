//! The code, the checked-in Arrow schemas (`schemas/arrow/`) and the pinned
//! OCSF class definitions (`schemas/ocsf-1.8.0/`) agree.
//! `UPDATE_SCHEMAS=1 cargo test --test schema` rewrites `schemas/arrow/`.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use trailship::ocsf::{Class, OCSF_VERSION, arrow_schema_json};

fn schemas_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

#[test]
fn arrow_schemas_match_the_checked_in_files() {
    for class in Class::ALL {
        let path = schemas_dir().join(format!("arrow/{}.json", class.dataset()));
        let actual = serde_json::to_string_pretty(&arrow_schema_json(class)).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            actual,
            expected,
            "{} differs from the code; rerun with UPDATE_SCHEMAS=1 and review",
            path.display()
        );
    }
}

/// (path, arrow type) for every column, lists marked by their path only.
fn columns(fields: &[Value], prefix: &str, out: &mut Vec<(String, String)>) {
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        match f["type"].as_str().unwrap() {
            "struct" => {
                out.push((path.clone(), "struct".into()));
                columns(f["fields"].as_array().unwrap(), &path, out);
            }
            "list" => {
                let el = &f["element"];
                match el["type"].as_str().unwrap() {
                    "struct" => {
                        out.push((path.clone(), "list<struct>".into()));
                        columns(el["fields"].as_array().unwrap(), &path, out);
                    }
                    t => out.push((path, format!("list<{t}>"))),
                }
            }
            t => out.push((path, t.to_string())),
        }
    }
}

/// The Arrow type an OCSF type is stored as (see schemas/README.md).
fn arrow_type_for(ocsf: &str) -> &'static str {
    match ocsf {
        "integer_t" => "int32",
        "long_t" | "timestamp_t" => "int64",
        "datetime_t" => "timestamp[ms, UTC]",
        "boolean_t" => "bool",
        "string_t[]" => "list<utf8>",
        t if t.starts_with("object:") && t.ends_with("[]") => "list<struct>",
        t if t.starts_with("object:") => "struct",
        // Strings, their derived types, json_t and the free-form `object`
        // (`unmapped`) are all UTF-8 text.
        _ => "utf8",
    }
}

#[test]
fn every_column_is_an_ocsf_attribute_of_its_class() {
    for class in Class::ALL {
        let def: Value = serde_json::from_str(
            &std::fs::read_to_string(schemas_dir().join(format!("ocsf-1.8.0/classes/{}.json", class.dataset())))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(def["ocsf_version"], OCSF_VERSION);
        assert_eq!(def["uid"], class.uid());
        assert_eq!(def["caption"], class.name());
        assert_eq!(def["category_uid"], class.category_uid());
        assert_eq!(def["category_name"], class.category_name());
        for (id, caption) in def["activity_id"].as_object().unwrap() {
            assert_eq!(class.activity_caption(id.parse().unwrap()), caption.as_str(), "{class:?} activity {id}");
        }
        let attrs = def["attributes"].as_object().unwrap();
        let mut cols = Vec::new();
        columns(arrow_schema_json(class)["fields"].as_array().unwrap(), "", &mut cols);
        for (path, ty) in &cols {
            if ["trailship", "change"].iter().any(|x| path == x || path.starts_with(&format!("{x}."))) {
                continue; // the trailship extension, checked below
            }
            let attr =
                attrs.get(path).unwrap_or_else(|| panic!("{class:?}: column {path} is not an attribute of the class"));
            let want = arrow_type_for(attr["type"].as_str().unwrap());
            assert_eq!(ty, want, "{class:?}: {path} is {ty}, OCSF {} wants {want}", attr["type"]);
        }
        // Every required attribute whose parent we write is a column.
        for (path, attr) in attrs {
            if attr["requirement"] != "required" {
                continue;
            }
            let parent_written = match path.rsplit_once('.') {
                None => true,
                Some((parent, _)) => cols.iter().any(|(p, _)| p == parent),
            };
            if parent_written {
                assert!(cols.iter().any(|(p, _)| p == path), "{class:?}: required {path} has no column");
            }
        }
    }
    let ext: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join("extensions/trailship/extension.json")).unwrap(),
    )
    .unwrap();
    let mut cols = Vec::new();
    columns(arrow_schema_json(Class::ApiActivity)["fields"].as_array().unwrap(), "", &mut cols);
    for (path, ty) in cols.iter().filter(|(p, _)| p.starts_with("trailship") || p.starts_with("change")) {
        let attr = &ext["attributes"][path];
        assert!(attr.is_object(), "extension attribute {path} is not documented");
        assert_eq!(ty, arrow_type_for(attr["type"].as_str().unwrap()), "{path}");
    }
}

/// Athena accepts only the standard three-level LIST layout; OCSF timestamps
/// are int64 milliseconds; `*_dt` are UTC millisecond timestamps.
#[test]
fn written_parquet_uses_standard_lists_and_ms_timestamps() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = TempDir::new("schema-parquet");
    let input = fixture("cloudtrail/awsdocs/s3-cloudtrail-02-example-amazon-s3-on-outposts-log-file-entries.json");
    run(dir.path(), &[input]);
    let files = parquet_files(&dir.path().join("api_activity"));
    assert_eq!(files.len(), 1);
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    let mut printed = Vec::new();
    parquet::schema::printer::print_schema(&mut printed, meta.file_metadata().schema());
    let schema = String::from_utf8(printed).unwrap();
    assert!(
        schema.contains("OPTIONAL group resources (LIST) {\n    REPEATED group list {\n      OPTIONAL group element {"),
        "{schema}"
    );
    assert!(schema.contains("OPTIONAL group profiles (LIST) {\n      REPEATED group list {\n        OPTIONAL BYTE_ARRAY element (STRING);"), "{schema}");
    assert!(schema.contains("REQUIRED INT64 time;"), "{schema}");
    assert!(schema.contains("OPTIONAL INT64 time_dt (TIMESTAMP(MILLIS,true));"), "{schema}");
    assert!(schema.contains("REQUIRED INT32 class_uid;"), "{schema}");
    // zstd for every column that holds values; columns the object leaves
    // entirely null (definition levels only), or fills with one value (one
    // dictionary entry and a run of index 0), are stored uncompressed: no
    // zstd context to build for a few bytes. This file has one record.
    use parquet::basic::Compression::{UNCOMPRESSED, ZSTD};
    let mut zstd = 0;
    let mut text = Vec::new();
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let path = c.column_path().string();
            let Some(stats) = c.statistics() else {
                // Text is written without statistics (its min and max prune
                // nothing in arrival order); everything else keeps them.
                assert_eq!(c.column_type(), parquet::basic::Type::BYTE_ARRAY, "{path} has no statistics");
                text.push((path, c.compression()));
                continue;
            };
            let all_null = stats.null_count_opt() == Some(c.num_values() as u64);
            let one_entry = stats.null_count_opt() == Some(0)
                && stats.min_bytes_opt() == stats.max_bytes_opt()
                && c.dictionary_page_offset().is_some();
            let want = if all_null || one_entry {
                UNCOMPRESSED
            } else {
                zstd += 1;
                ZSTD(Default::default())
            };
            assert_eq!(c.compression(), want, "{path}");
        }
    }
    // The times: written without a dictionary, so compressed.
    assert!(zstd >= 2, "{zstd} compressed columns");
    let codec = |p: &str| text.iter().find(|(q, _)| q == p).map(|(_, c)| *c);
    assert_eq!(codec("api.operation"), Some(UNCOMPRESSED), "one value, one dictionary entry");
    assert_eq!(codec("metadata.uid"), Some(ZSTD(Default::default())), "identifiers have no dictionary");
    assert_eq!(codec("actor.user.email_addr"), Some(UNCOMPRESSED), "all null");
    assert!(text.len() > 40, "{} text columns", text.len());
}
