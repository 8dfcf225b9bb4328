//! The JSON API's contract. Every document netblame prints with `--json` (and every JSON line
//! of its streams) is a [`Versioned`] body: its fields plus `schema_version`. The schemas are
//! generated from the Rust types ([`schema`]) and shipped under `docs/schema/`.
//!
//! `schema_version` changes when a field is removed, renamed or changes meaning; added fields
//! keep it (consumers must ignore fields they do not know).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::Serialize;

/// The layout version of every JSON document and line netblame writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A JSON document: `schema_version`, then the body's own fields.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Versioned<T> {
    /// The layout version of this document: it changes when a field is removed, renamed or
    /// changes meaning, not when one is added.
    pub schema_version: u32,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Versioned<T> {
    /// `body` stamped with the current [`SCHEMA_VERSION`].
    pub fn new(body: T) -> Versioned<T> {
        Versioned {
            schema_version: SCHEMA_VERSION,
            body,
        }
    }
}

/// One kind of JSON document a command writes, with its schema.
#[derive(Debug, Clone, Copy)]
pub struct JsonDoc {
    /// The schema's file name under `docs/schema/` without `.json` (`doctor`, `calc-bdp`).
    pub name: &'static str,
    /// The command line that writes it (`netblame doctor --json`).
    pub written_by: &'static str,
    make: fn(&str, &str) -> Schema,
}

impl JsonDoc {
    /// The document `name`, written by `written_by`, whose body is a `T`.
    pub const fn of<T: JsonSchema>(name: &'static str, written_by: &'static str) -> JsonDoc {
        JsonDoc {
            name,
            written_by,
            make: schema::<T>,
        }
    }

    /// The schema of the document as written (a [`Versioned`] body).
    pub fn schema(&self) -> Schema {
        (self.make)(self.name, self.written_by)
    }
}

/// The JSON Schema (draft 2020-12) of `Versioned<T>` as serialized, titled `title`.
pub fn schema<T: JsonSchema>(title: &str, written_by: &str) -> Schema {
    let mut s = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Versioned<T>>();
    s.insert("title".into(), title.into());
    if let Some(v) = s
        .get_mut("properties")
        .and_then(|p| p.get_mut("schema_version"))
        .and_then(|v| v.as_object_mut())
    {
        v.insert("const".into(), SCHEMA_VERSION.into());
    }
    s.insert(
        "description".into(),
        format!("Written by `{written_by}`.").into(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, JsonSchema)]
    struct Body {
        /// A rate.
        rate_bps: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    #[test]
    fn a_versioned_body_has_its_fields_and_the_version() {
        let v = serde_json::to_value(Versioned::new(Body {
            rate_bps: 5,
            note: None,
        }))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"schema_version": SCHEMA_VERSION, "rate_bps": 5})
        );
        let s = serde_json::to_value(schema::<Body>("body", "netblame x --json")).unwrap();
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(required.contains(&"schema_version") && required.contains(&"rate_bps"));
        assert!(
            !required.contains(&"note"),
            "an omitted field is optional: {s}"
        );
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["properties"]["schema_version"]["const"], SCHEMA_VERSION);
        assert_eq!(s["properties"]["rate_bps"]["description"], "A rate.");
    }
}
