//! Checks a command's real JSON output against its schema in `docs/schema/`, strictly: a
//! field the schema does not declare fails too, so the schemas cannot fall behind the output.

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The schema `docs/schema/NAME.json`, made strict: every object schema at the root and in
/// `$defs` that does not say what else it allows gets `unevaluatedProperties: false`, except
/// the definitions the root flattens in (`anyOf`/`oneOf`/`allOf` items that are a bare `$ref`):
/// the root's own `unevaluatedProperties` closes those, with the root's fields counted.
pub fn strict_schema(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schema")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no schema {}: {e}", path.display()));
    let mut schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
    let flattened: Vec<String> = ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|item| item.get("$ref").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_string)
        .collect();
    close(&mut schema);
    if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
        defs.iter_mut()
            .filter(|(name, _)| !flattened.contains(name))
            .for_each(|(_, d)| close(d));
    }
    schema
}

/// The strict validator of `name`, read and compiled once per test process (a stream of
/// JSON lines checks every line against the same one).
fn validator(name: &str) -> Arc<jsonschema::Validator> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut compiled = COMPILED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    compiled
        .entry(name.to_string())
        .or_insert_with(|| {
            let schema = strict_schema(name);
            Arc::new(
                jsonschema::draft202012::new(&schema).unwrap_or_else(|e| {
                    panic!("docs/schema/{name}.json is not a valid schema: {e}")
                }),
            )
        })
        .clone()
}

fn close(s: &mut Value) {
    if let Value::Object(o) = s {
        if !o.contains_key("additionalProperties") && !o.contains_key("unevaluatedProperties") {
            o.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
    }
}

/// Panics with every violation when `doc` does not match `docs/schema/NAME.json` (strictly),
/// or carries no `schema_version`.
pub fn assert_valid(name: &str, doc: &Value) {
    let validator = validator(name);
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match docs/schema/{name}.json:\n  {}\ndocument: {}",
        errors.join("\n  "),
        truncate(&doc.to_string())
    );
    assert!(
        doc.get("schema_version").and_then(Value::as_u64).is_some(),
        "no schema_version in {name} output"
    );
}

/// Each line of `text` (JSON lines) checked with [`assert_valid`]; returns the lines parsed.
pub fn assert_valid_lines(name: &str, text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {l}"));
            assert_valid(name, &v);
            v
        })
        .collect()
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 4000 {
        format!("{}…", s.chars().take(4000).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fails(name: &str, doc: Value) -> bool {
        std::panic::catch_unwind(|| assert_valid(name, &doc)).is_err()
    }

    /// The check is not vacuous: a field the schema does not declare, a wrong type, a missing
    /// field and another version all fail; the document as written passes.
    #[test]
    fn strict_validation_catches_drift() {
        let good = json!({"schema_version": 1, "window_bytes": 65536, "rtt_us": 10000,
                          "bits_per_second": 52428800.0});
        assert_valid("calc-ceiling", &good);
        let mut extra = good.clone();
        extra["new_field"] = json!(1);
        assert!(fails("calc-ceiling", extra), "an undeclared field passed");
        let mut wrong = good.clone();
        wrong["rtt_us"] = json!("10ms");
        assert!(
            fails("calc-ceiling", wrong),
            "a string where a number belongs passed"
        );
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("window_bytes");
        assert!(fails("calc-ceiling", missing), "a missing field passed");
        let mut version = good;
        version["schema_version"] = json!(2);
        assert!(
            fails("calc-ceiling", version),
            "another schema_version passed"
        );
    }

    /// Nested definitions are closed too (a finding inside a report).
    #[test]
    fn nested_objects_are_closed() {
        let schema = strict_schema("calc-window");
        assert_eq!(schema["$defs"]["Finding"]["unevaluatedProperties"], false);
    }
}
