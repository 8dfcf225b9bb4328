//! `netblame schema`: the JSON Schema of every document netblame writes with `--json` (and of
//! every JSON line of its streams), generated from the types that write them. `docs/schema/`
//! holds the same files (`netblame schema --out docs/schema`; a test keeps them current).

use anyhow::{bail, Context};
use netblame_core::json::JsonDoc;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `netblame schema`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    netblame schema                      list the documents and the commands that write them\n  \
    netblame schema doctor               the schema of `netblame doctor --json`\n  \
    netblame schema --out docs/schema    write every schema as NAME.json")]
pub struct Args {
    /// Write every schema into DIR as NAME.json instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "name")]
    out: Option<PathBuf>,
    /// The document whose schema to print (`netblame schema` lists them).
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

/// Every JSON document netblame writes, by command.
pub fn documents() -> Vec<JsonDoc> {
    use crate::cmd::*;
    [
        doctor::JSON_DOCS,
        host::JSON_DOCS,
        tune::JSON_DOCS,
        calc::JSON_DOCS,
        bench::JSON_DOCS,
        lab::JSON_DOCS,
        sockets::JSON_DOCS,
        pcap::JSON_DOCS,
        probe::JSON_DOCS,
        trace::JSON_DOCS,
        serve::JSON_DOCS,
    ]
    .concat()
}

/// A schema as written to a file: pretty JSON with a final newline.
pub fn text(doc: &JsonDoc) -> String {
    let schema = doc.schema();
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// Lists the documents, prints one schema, or writes them all with `--out`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let docs = documents();
    if let Some(dir) = args.out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for d in &docs {
            let path = dir.join(format!("{}.json", d.name));
            std::fs::write(&path, text(d))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!(
            "wrote {} into {}",
            crate::render::plural(docs.len(), "schema"),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    match args.name {
        None => {
            let rows: Vec<Vec<String>> = docs
                .iter()
                .map(|d| vec![d.name.to_string(), d.written_by.to_string()])
                .collect();
            print!("{}", crate::render::table(&["SCHEMA", "WRITTEN BY"], &rows));
        }
        Some(name) => {
            let Some(d) = docs.iter().find(|d| d.name == name) else {
                let names: Vec<&str> = docs.iter().map(|d| d.name).collect();
                bail!(
                    "no schema named `{name}`: the schemas are {}",
                    names.join(", ")
                );
            };
            print!("{}", text(d));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/schema/ is what `netblame schema --out docs/schema` writes, file for file.
    #[test]
    fn docs_schema_is_generated_from_the_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema");
        let mut stale = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for d in documents() {
            let file = dir.join(format!("{}.json", d.name));
            if std::fs::read_to_string(&file).ok().as_deref() != Some(text(&d).as_str()) {
                stale.push(d.name);
            }
            names.push(format!("{}.json", d.name));
        }
        let mut extra: Vec<String> = std::fs::read_dir(&dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") && !names.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        extra.sort();
        assert!(
            stale.is_empty() && extra.is_empty(),
            "docs/schema is stale (run `cargo run -- schema --out docs/schema`): \
             differ or missing {stale:?}, not written by any command {extra:?}"
        );
    }

    /// docs/json.md lists every schema.
    #[test]
    fn docs_json_lists_every_schema() {
        let page = include_str!("../../../../docs/json.md");
        for d in documents() {
            assert!(
                page.contains(&format!("](schema/{}.json)", d.name)),
                "docs/json.md does not list {}",
                d.name
            );
        }
    }

    #[test]
    fn every_schema_is_named_once_and_carries_the_version() {
        let docs = documents();
        let mut names: Vec<&str> = docs.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), docs.len(), "a schema name is used twice");
        for d in docs {
            let s = serde_json::to_value(d.schema()).unwrap();
            assert!(
                s["properties"]["schema_version"].is_object(),
                "{} has no schema_version: {s}",
                d.name
            );
        }
    }
}
