//! Text rendering shared by every command: findings, tables, colour (only on a terminal,
//! `NO_COLOR` honoured).

use netblame_core::{Finding, Severity};
use std::io::IsTerminal;

/// True when stdout is a terminal and `NO_COLOR` is unset.
pub fn colour_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Wraps `text` in an ANSI colour when colour is on.
pub fn paint(text: &str, code: &str) -> String {
    if colour_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn severity_tag(s: Severity) -> String {
    match s {
        Severity::Critical => paint("CRITICAL", "1;31"),
        Severity::Warning => paint("WARNING", "33"),
        Severity::Info => paint("info", "36"),
    }
}

/// Renders findings as blocks: headline, evidence, arithmetic, fix.
pub fn findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out += &format!(
            "{} [{}] {} ({})\n",
            severity_tag(f.severity),
            f.layer,
            f.summary,
            f.id
        );
        if let Some(subject) = &f.subject {
            out += &format!("    about:    {subject}\n");
        }
        if !f.evidence.is_empty() {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|e| format!("{} = {}", e.name, e.human()))
                .collect();
            out += &format!("    evidence: {}\n", ev.join(", "));
        }
        if !f.explanation.is_empty() {
            out += &format!("    why:      {}\n", f.explanation);
        }
        if !f.fix.is_empty() {
            out += &format!("    fix:      {}\n", f.fix);
        }
    }
    out
}

/// Left-aligned table with a header row; columns sized to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                s += &format!("{:<w$}  ", c, w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Prints a value as one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
