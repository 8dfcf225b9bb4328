//! Text rendering shared by every command: findings, tables that fit the terminal, plurals,
//! colour (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`, through anstream).

use netblame_core::{Finding, Severity};
use std::io::IsTerminal;

/// Sets the process-wide colour choice from `--color` (`auto` defers to the environment).
pub fn set_colour(choice: clap::ColorChoice) {
    let c = match choice {
        clap::ColorChoice::Auto => colorchoice::ColorChoice::Auto,
        clap::ColorChoice::Always => colorchoice::ColorChoice::Always,
        clap::ColorChoice::Never => colorchoice::ColorChoice::Never,
    };
    c.write_global();
}

/// True when stdout gets colour: `--color always`, or `auto` with CLICOLOR_FORCE set, or `auto`
/// on a terminal with a non-empty NO_COLOR unset (anstream's reading of both conventions).
pub fn colour_enabled() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != colorchoice::ColorChoice::Never
}

/// `1 connection`, `2 connections`: the count with the noun in the right number (English
/// plurals by `s`; nouns that need more take [`plural_as`]).
pub fn plural(n: impl TryInto<u64>, one: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    format!("{n} {}", noun(n, one))
}

/// The noun alone in the number that goes with `n` (`segment`/`segments`), for counts printed
/// another way (e.g. with thousands separators).
pub fn noun(n: u64, one: &str) -> String {
    if n == 1 {
        one.to_string()
    } else {
        format!("{one}s")
    }
}

/// Like [`plural`] with an irregular plural form (`1 reply`, `2 replies`).
pub fn plural_as(n: impl TryInto<u64>, one: &str, many: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    format!("{n} {}", if n == 1 { one } else { many })
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

/// Left-aligned table with a header row; columns sized to their widest cell and, when the
/// output is narrower than that ([`output_width`]), the widest columns shrink: cells of the last
/// column wrap onto continuation lines, cells of the others are cut with `…`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_fit(header, rows, output_width())
}

/// The width tables must fit: the terminal's on a terminal, else `COLUMNS` when set, else none
/// (a pipe or file gets whole rows, as `ss` and ripgrep do).
pub fn output_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
            return Some(w as usize);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w: &usize| w > 0)
}

const GAP: usize = 2;
/// Columns never shrink below this (or their header, or their widest cell if narrower).
const MIN_COLUMN: usize = 8;

/// Visible width of a cell (ANSI escapes do not count).
fn visible_width(cell: &str) -> usize {
    anstream::adapter::strip_str(cell)
        .to_string()
        .chars()
        .count()
}

/// [`table`] for a given width (`None`: no limit).
pub fn table_fit(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    // Cells carrying colour are never cut (an escape sequence must not be split).
    let mut floor: Vec<usize> = widths.iter().map(|&h| h.max(MIN_COLUMN)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            let w = visible_width(cell);
            widths[i] = widths[i].max(w);
            if cell.contains('\x1b') {
                floor[i] = floor[i].max(w);
            }
        }
    }
    for (f, w) in floor.iter_mut().zip(&widths) {
        *f = (*f).min(*w);
    }
    if let Some(limit) = width {
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > limit {
            // The widest column that can still give (the later one on a tie).
            let Some((i, _)) = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > floor[*i])
                .max_by_key(|(i, w)| (**w, *i))
            else {
                break;
            };
            widths[i] -= 1;
        }
    }
    let mut out = String::new();
    let mut emit = |cells: &[&str]| {
        let last = cells.len().min(cols).saturating_sub(1);
        let mut lines: Vec<String> = vec![String::new()];
        for (i, c) in cells.iter().enumerate().take(cols) {
            if i == last {
                for (k, piece) in wrap(c, widths[i]).into_iter().enumerate() {
                    if k == 0 {
                        lines[0] += &piece;
                    } else {
                        let indent: usize = widths[..i].iter().map(|w| w + GAP).sum();
                        lines.push(" ".repeat(indent) + &piece);
                    }
                }
            } else {
                let cell = elide(c, widths[i]);
                let pad = widths[i].saturating_sub(visible_width(&cell)) + GAP;
                lines[0] += &cell;
                lines[0] += &" ".repeat(pad);
            }
        }
        for l in lines {
            out += l.trim_end();
            out.push('\n');
        }
    };
    emit(header);
    for row in rows {
        emit(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// Cuts a plain cell to `width` characters, the last one `…`.
fn elide(cell: &str, width: usize) -> String {
    if cell.contains('\x1b') || cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut s: String = cell.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Splits a plain cell into lines of at most `width` characters, at spaces where it can.
fn wrap(cell: &str, width: usize) -> Vec<String> {
    if cell.contains('\x1b') || cell.chars().count() <= width || width == 0 {
        return vec![cell.to_string()];
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in cell.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let len = line.chars().count();
        if len > 0 && len + 1 + word.len() <= width {
            line.push(' ');
            line.extend(&word);
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        line = word.into_iter().collect();
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Writes `value` as one JSON document stamped with `schema_version`
/// ([`netblame_core::json`]): pretty, or compact on one line; no newline. The value must
/// serialize as an object. Every `--json` document and line of the cli goes through here.
pub fn write_json<W: std::io::Write, T: serde::Serialize>(
    w: W,
    value: &T,
    pretty: bool,
) -> serde_json::Result<()> {
    let doc = netblame_core::json::Versioned::new(value);
    if pretty {
        serde_json::to_writer_pretty(w, &doc)
    } else {
        serde_json::to_writer(w, &doc)
    }
}

/// [`write_json`] into a string.
pub fn json_text<T: serde::Serialize>(value: &T, pretty: bool) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_json(&mut out, value, pretty)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Prints a value as one pretty JSON document on stdout ([`write_json`]).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", json_text(value, true)?);
    Ok(())
}

/// Prints a value as one compact JSON line on stdout ([`write_json`]), flushed (a stream's
/// reader sees each line as it happens).
pub fn print_json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", json_text(value, false)?);
    std::io::Write::flush(&mut std::io::stdout())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        vec![vec![
            "10.0.0.1:443".into(),
            "a-very-long-process-name-indeed".into(),
            "sender bound by the receiver window for most of its busy time".into(),
        ]]
    }

    #[test]
    fn unlimited_table_keeps_whole_rows() {
        let t = table_fit(&["peer", "process", "verdict"], &rows(), None);
        assert!(t.contains("a-very-long-process-name-indeed"));
        assert_eq!(t.lines().count(), 2);
    }

    #[test]
    fn narrow_table_elides_and_wraps_within_the_width() {
        let t = table_fit(&["peer", "process", "verdict"], &rows(), Some(60));
        for line in t.lines() {
            assert!(line.chars().count() <= 60, "{line:?} is wider than 60");
        }
        assert!(t.contains('…'), "{t}");
        // Every word of the wrapped verdict is still there.
        assert!(t.contains("receiver") && t.contains("busy time"), "{t}");
        assert!(t.lines().count() > 2, "{t}");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1u32, "connection"), "1 connection");
        assert_eq!(plural(0u32, "connection"), "0 connections");
        assert_eq!(plural_as(2u32, "reply", "replies"), "2 replies");
    }
}
