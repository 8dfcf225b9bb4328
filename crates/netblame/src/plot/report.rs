//! `doctor --report FILE.html`: one self-contained page (inline CSS, the SVGs inline, no
//! script, nothing fetched) with the verdict first, then the findings by layer with their
//! evidence, arithmetic and fix, the pictures that apply, the connections with problems and
//! what was skipped. All text from the host (process names, connection labels, sysctl values)
//! is escaped.

use netblame_core::diagnose::Verdict;
use netblame_core::observe::host::Skipped;
use netblame_core::observe::LimitShares;
use netblame_core::{Finding, Layer};
use std::fmt::Write as _;
use std::path::Path;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A connection with a warning or worse.
pub struct ProblemRow<'a> {
    pub connection: &'a str,
    pub process: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub findings: &'a [&'static str],
}

/// Everything one doctor run puts on the page.
pub struct DoctorPage<'a> {
    pub verdict: &'a Verdict,
    /// One line: the window, the connections sampled, the kernel.
    pub context: String,
    /// Ranked findings with how many connections showed each (0 for host findings).
    pub findings: Vec<(&'a Finding, usize)>,
    pub problems: Vec<ProblemRow<'a>>,
    pub skipped: &'a [Skipped],
    /// What limited each connection over the window, where the kernel says.
    pub limits: &'a [(String, LimitShares)],
    /// SVG files to add to the pictures (`--attach`).
    pub attach: &'a [std::path::PathBuf],
}

const CSS: &str = r#"
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#e3e3e3; --crit:#d62728; --warn:#b7791f; --info:#1f77b4; --ok:#1a7f37; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: var(--fg); margin: 0 auto; max-width: 1180px; padding: 24px; line-height: 1.45; background: #fff; }
header.verdict { border-left: 8px solid var(--ok); background: #f3faf5; padding: 16px 20px; margin-bottom: 24px; }
header.verdict.blame { border-left-color: var(--crit); background: #fdf3f3; }
header.verdict h1 { margin: 0 0 6px 0; font-size: 26px; }
header.verdict p { margin: 0; color: var(--muted); }
h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 32px; }
h3 { margin: 20px 0 8px 0; }
article.finding { border: 1px solid var(--line); border-left: 6px solid var(--info); border-radius: 4px; padding: 10px 14px; margin: 10px 0; }
article.finding.critical { border-left-color: var(--crit); }
article.finding.warning { border-left-color: var(--warn); }
article.finding h4 { margin: 0 0 6px 0; font-size: 16px; }
.sev { display: inline-block; font-size: 12px; font-weight: bold; text-transform: uppercase; color: #fff; background: var(--info); border-radius: 3px; padding: 1px 6px; margin-right: 6px; }
.sev.critical { background: var(--crit); } .sev.warning { background: var(--warn); }
code { background: #f4f4f4; padding: 1px 4px; border-radius: 3px; font-size: 13px; }
dl { display: grid; grid-template-columns: 90px 1fr; gap: 4px 12px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
figure { margin: 16px 0; } figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 14px; }
footer { color: var(--muted); font-size: 13px; margin-top: 40px; }
"#;

fn layer_id(l: Layer) -> &'static str {
    l.as_str()
}

/// The page.
pub fn doctor_html(p: &DoctorPage) -> anyhow::Result<String> {
    let mut h = String::new();
    let title = format!("netblame doctor: {}", p.verdict.headline);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = write!(
        h,
        "<header id=\"verdict\" class=\"verdict{}\">\n<h1>{}</h1>\n<p>{}</p>\n</header>\n",
        if p.verdict.blame.is_some() {
            " blame"
        } else {
            ""
        },
        escape(&p.verdict.headline),
        escape(&p.context)
    );

    h.push_str("<section id=\"findings\">\n<h2>Findings by layer</h2>\n");
    if p.findings.is_empty() {
        h.push_str("<p>No findings: nothing on this host or its connections looked wrong over the window.</p>\n");
    }
    // Layers in the order of their worst finding (the findings come ranked).
    let mut layers: Vec<Layer> = Vec::new();
    for (f, _) in &p.findings {
        if !layers.contains(&f.layer) {
            layers.push(f.layer);
        }
    }
    for layer in layers {
        let _ = write!(
            h,
            "<section class=\"layer\" id=\"layer-{}\">\n<h3>{}</h3>\n",
            layer_id(layer),
            escape(&capitalise(layer.as_str()))
        );
        for (f, n) in p.findings.iter().filter(|(f, _)| f.layer == layer) {
            finding(&mut h, f, *n);
        }
        h.push_str("</section>\n");
    }
    h.push_str("</section>\n");

    let all: Vec<&Finding> = p.findings.iter().map(|(f, _)| *f).collect();
    let mut figures = vec![(
        "findings-by-layer",
        super::doctor::findings_by_layer(&all)?,
        "Findings per layer, by severity.".to_string(),
    )];
    if let Some(svg) = super::doctor::connection_limits(p.limits)? {
        figures.push((
            "connection-limits",
            svg,
            format!(
                "What limited each connection that had data to send over the window (the kernel's busy, rwnd-limited and sndbuf-limited stopwatches; at most {} busiest connections).",
                super::doctor::MAX_CONNECTIONS
            ),
        ));
    }
    h.push_str("<section id=\"pictures\">\n<h2>Pictures</h2>\n");
    for (id, svg, caption) in &figures {
        let _ = write!(
            h,
            "<figure id=\"plot-{id}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            strip_xml_prolog(svg),
            escape(caption)
        );
    }
    for (i, path) in p.attach.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        let _ = write!(
            h,
            "<figure id=\"attached-{}\">\n<img alt=\"{}\" src=\"data:image/svg+xml;base64,{}\">\n<figcaption>{}</figcaption>\n</figure>\n",
            i + 1,
            escape(&name),
            base64(&read_svg(path)?),
            escape(&name)
        );
    }
    h.push_str("</section>\n");

    if !p.problems.is_empty() {
        h.push_str("<section id=\"connections\">\n<h2>Connections with problems</h2>\n<table>\n<tr><th>connection</th><th>process</th><th>limited by</th><th>findings</th></tr>\n");
        for r in &p.problems {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(r.connection),
                escape(r.process.unwrap_or("-")),
                escape(r.limit.unwrap_or("-")),
                r.findings
                    .iter()
                    .map(|f| format!("<code>{}</code>", escape(f)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        h.push_str("</table>\n</section>\n");
    }
    if !p.skipped.is_empty() {
        h.push_str("<section id=\"skipped\">\n<h2>What was skipped</h2>\n<ul>\n");
        for s in p.skipped {
            let _ = writeln!(
                h,
                "<li><b>{}</b>: {}</li>",
                escape(&s.section),
                escape(&s.reason)
            );
        }
        h.push_str("</ul>\n</section>\n");
    }
    let _ = write!(
        h,
        "<footer>netblame {} · <code>netblame doctor --report</code> · every finding id is documented in docs/findings.md</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    Ok(h)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn finding(h: &mut String, f: &Finding, connections: usize) {
    let sev = f.severity.as_str();
    let _ = write!(
        h,
        "<article class=\"finding {sev}\" id=\"finding-{}\">\n<h4><span class=\"sev {sev}\">{sev}</span>{} <code>{}</code></h4>\n<dl>\n",
        escape(f.id),
        escape(&f.summary),
        escape(f.id)
    );
    if let Some(s) = &f.subject {
        let _ = writeln!(h, "<dt>about</dt><dd>{}</dd>", escape(s));
    }
    if !f.evidence.is_empty() {
        let ev: Vec<String> = f
            .evidence
            .iter()
            .map(|e| format!("{} = <b>{}</b>", escape(&e.name), escape(&e.human())))
            .collect();
        let _ = writeln!(h, "<dt>evidence</dt><dd>{}</dd>", ev.join(", "));
    }
    if !f.explanation.is_empty() {
        let _ = writeln!(h, "<dt>why</dt><dd>{}</dd>", escape(&f.explanation));
    }
    if !f.fix.is_empty() {
        let _ = writeln!(h, "<dt>fix</dt><dd>{}</dd>", escape(&f.fix));
    }
    if connections > 1 {
        let _ = writeln!(
            h,
            "<dt>seen on</dt><dd>{connections} connections (the one shown is the most severe)</dd>"
        );
    }
    h.push_str("</dl>\n</article>\n");
}

/// The most an attached SVG may weigh.
const MAX_ATTACH: u64 = 16 << 20;

/// Reads an SVG to attach: a regular file, at most 16 MiB, that is an SVG document.
fn read_svg(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let meta = std::fs::metadata(path).with_context(|| format!("--attach {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file() && meta.len() <= MAX_ATTACH,
        "--attach {}: not a regular file of at most 16 MiB",
        path.display()
    );
    let data = std::fs::read(path).with_context(|| format!("--attach {}", path.display()))?;
    let head = String::from_utf8_lossy(&data[..data.len().min(512)]).to_string();
    anyhow::ensure!(
        head.trim_start().starts_with("<svg")
            || head.trim_start().starts_with("<?xml") && head.contains("<svg"),
        "--attach {}: not an SVG document",
        path.display()
    );
    Ok(data)
}

/// Standard base64 with padding (RFC 4648), for a data: URL.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// An SVG document's `<?xml ...?>` line, if any, is not allowed inside HTML.
fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Writes the page and says where on standard error.
pub fn write_doctor(path: &Path, page: &DoctorPage) -> anyhow::Result<()> {
    super::write(path, &doctor_html(page)?)?;
    eprintln!("netblame: report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn host_text_on_the_page_is_escaped() {
        use netblame_core::{diagnose::verdict, rules::sender::RECEIVER_WINDOW_LIMITED, Severity};
        let mut f = Finding::new(
            &RECEIVER_WINDOW_LIMITED,
            Severity::Warning,
            "<script>alert(1)</script> & more",
        );
        f.subject = Some("proc \"evil\" <img src=x onerror=alert(1)>".into());
        f.fix = "a < b".into();
        let v = verdict(std::slice::from_ref(&f));
        let skipped = [Skipped {
            section: "<sec>".into(),
            reason: "'quoted'".into(),
        }];
        let shares = [(
            "<conn>".to_string(),
            LimitShares {
                interval_us: 1000,
                busy_us: 1000,
                rwnd_limited_us: 600,
                cwnd_limited_us: 400,
                ..Default::default()
            },
        )];
        let ids = ["receiver-window-limited"];
        let page = DoctorPage {
            verdict: &v,
            context: "ctx <x>".into(),
            findings: vec![(&f, 3)],
            problems: vec![ProblemRow {
                connection: "<conn>",
                process: Some("<proc>"),
                limit: None,
                findings: &ids,
            }],
            skipped: &skipped,
            limits: &shares,
            attach: &[],
        };
        let h = doctor_html(&page).unwrap();
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(
            !h.contains("<conn>") && !h.contains("<proc>") && !h.contains("<sec>"),
            "{h}"
        );
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(h.contains("id=\"finding-receiver-window-limited\""));
        assert!(h.contains("3 connections"));
        // The verdict comes first.
        assert!(h.find("id=\"verdict\"").unwrap() < h.find("id=\"findings\"").unwrap());
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
