//! Pictures: SVG charts drawn with plotters (its SVG backend writes text as `<text>` elements,
//! so no font files are read), one module per picture, and the self-contained HTML report of
//! `doctor --report`. Every function here takes what a command already observed and returns
//! SVG or HTML text; the commands only add the flag and write the file.

pub mod bench;
pub mod doctor;
pub mod lab;
pub mod limits;
pub mod probe;
pub mod report;
pub mod timeseq;

use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

/// The font family of every chart (the viewer picks its sans-serif face).
pub const FONT: &str = "sans-serif";

/// A drawing area on an SVG string.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Series colours, in order (colour-blind friendly, Okabe-Ito).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];

/// The colour marking trouble (retransmissions, losses, spikes, zero windows).
pub const ALERT: RGBColor = RGBColor(214, 39, 40);

/// The `n`th series colour.
pub fn colour(n: usize) -> RGBColor {
    PALETTE[n % PALETTE.len()]
}

/// Draws on a fresh white SVG of `size` pixels and returns the SVG text.
pub fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

/// Writes an SVG (or any text) to `path`, saying which file failed.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes an SVG and says so on standard error (standard output stays the report or JSON).
pub fn save(path: &Path, svg: &str) -> anyhow::Result<()> {
    write(path, svg)?;
    eprintln!("netblame: plot written to {}", path.display());
    Ok(())
}

/// A centred note on an empty panel (e.g. "no replies").
pub fn note(area: &Area, title: &str, text: &str) -> anyhow::Result<()> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (10, 8),
        (FONT, 16).into_font().style(FontStyle::Bold),
    ))?;
    area.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, h as i32 / 2),
        TextStyle::from((FONT, 14).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            )),
    ))?;
    Ok(())
}

/// A tidy upper bound for an axis: `max` plus 8% headroom, never zero.
pub fn top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.08
    } else {
        1.0
    }
}

/// Bytes for an axis label (binary units, as elsewhere in netblame).
pub fn bytes_label(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a >= (1u64 << 30) as f64 {
        format!("{sign}{:.1} GiB", a / (1u64 << 30) as f64)
    } else if a >= (1u64 << 20) as f64 {
        format!("{sign}{:.1} MiB", a / (1u64 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{sign}{:.0} KiB", a / 1024.0)
    } else {
        format!("{sign}{a:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_labels_use_binary_units() {
        assert_eq!(bytes_label(512.0), "512 B");
        assert_eq!(bytes_label(65536.0), "64 KiB");
        assert_eq!(bytes_label(3.0 * 1048576.0), "3.0 MiB");
        assert_eq!(bytes_label(-2048.0), "-2 KiB");
    }

    #[test]
    fn an_svg_holds_its_text_as_text_elements() {
        let s = svg((200, 100), |a| note(a, "title <&>", "body")).unwrap();
        assert!(s.starts_with("<svg"), "{s}");
        assert!(s.contains("<text"), "{s}");
        assert!(s.contains("title &lt;&amp;&gt;"), "{s}");
    }
}
