//! The record formats, pinned by one sample per kind in tests/samples/: each sample passes the
//! contract's checks, goes through a tool byte for byte, and has exactly the shape (field names
//! and types) of what the tools write today.

use std::collections::BTreeMap;

use do_core::contract::{Input, Output};
use serde_json::Value;

/// The kinds a release pipeline writes (the demo writes each).
pub const KINDS: [&str; 5] = ["gc-wait", "tag", "image", "deploy", "prune"];
/// Every kind, do-login's too.
pub const ALL_KINDS: [&str; 8] =
    ["gc-wait", "tag", "image", "deploy", "prune", "login", "preview-delete", "preview-sweep"];

/// The version of each kind's record.
fn version(kind: &str) -> u64 {
    match kind {
        "prune" => 2,
        _ => 1,
    }
}

pub fn sample(kind: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/samples/{kind}.jsonl", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every JSON path with the type found there; array elements share the path `[]`.
pub fn shape(value: &Value) -> BTreeMap<String, &'static str> {
    fn walk(value: &Value, at: String, out: &mut BTreeMap<String, &'static str>) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{at}[]"), out);
                }
                "array"
            }
            Value::Object(object) => {
                for (key, inner) in object {
                    walk(inner, format!("{at}.{key}"), out);
                }
                "object"
            }
        };
        out.insert(at, kind);
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

#[test]
fn every_sample_passes_the_checks_and_round_trips_byte_for_byte() {
    for kind in ALL_KINDS {
        let text = sample(kind);
        let input = Input::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(input.lines.len(), 1);
        assert_eq!(input.lines[0].record.kind, kind);
        assert_eq!(input.lines[0].record.v, version(kind));
        let mut output = Output::new(Vec::new());
        output.pass_through(&input).unwrap();
        assert_eq!(String::from_utf8(output.into_inner()).unwrap(), text, "{kind} changed on the way through");
    }
}

#[test]
fn every_sample_documents_its_fields_in_architecture_md() {
    let architecture = std::fs::read_to_string(format!("{}/ARCHITECTURE.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for kind in ALL_KINDS {
        let record: Value = serde_json::from_str(&sample(kind)).unwrap();
        let row = architecture
            .lines()
            .find(|l| l.starts_with(&format!("| `{kind}` |")))
            .unwrap_or_else(|| panic!("no row for {kind}"));
        for field in record["data"].as_object().unwrap().keys() {
            assert!(row.contains(field.as_str()), "ARCHITECTURE.md does not document {kind}.{field}");
        }
    }
}
