//! The stacked bars doctor's report and lab scenarios share: one bar per sender, the share of
//! its time each limit (the kernel's stopwatches) held it.

use super::{Area, FONT};
use netblame_core::observe::LimitShares;
use plotters::prelude::*;

/// The x axis runs past 100% to leave the legend a column of its own.
const LEGEND_RIGHT: f64 = 135.0;

/// Colours of the limits, left to right.
const LIMITS: [(&str, RGBColor); 5] = [
    ("receiver window", RGBColor(230, 159, 0)),
    ("send buffer", RGBColor(204, 121, 167)),
    ("congestion window", RGBColor(0, 114, 178)),
    ("loss recovery", RGBColor(214, 39, 40)),
    ("nothing to send", RGBColor(200, 200, 200)),
];

/// How a limit-bar chart is laid out.
pub struct Layout<'a> {
    pub caption: &'a str,
    /// What 100% is ("% of the window", "% of the transfer").
    pub x_desc: &'a str,
    /// Width of the row labels, pixels.
    pub label_width: u32,
    pub legend_font: u32,
}

/// Draws one bar per row, top to bottom; a row without shares stays empty.
pub fn bars(
    area: &Area,
    layout: &Layout,
    rows: &[(String, Option<LimitShares>)],
) -> anyhow::Result<()> {
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(layout.caption, (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(layout.label_width)
        .build_cartesian_2d(0f64..LEGEND_RIGHT, 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < rows.len() {
                rows[rows.len() - 1 - i as usize].0.clone()
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|x| {
            if *x <= 100.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .x_desc(layout.x_desc)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (k, (name, c)) in LIMITS.iter().enumerate() {
        let c = *c;
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(row, (_, s))| {
                let s = (*s)?;
                let total = s.interval_us.max(1) as f64;
                let v = [
                    s.rwnd_limited_us,
                    s.sndbuf_limited_us,
                    s.cwnd_limited_us.saturating_sub(s.loss_recovery_us),
                    s.loss_recovery_us,
                    s.idle_us,
                ]
                .map(|x| x as f64 / total * 100.0);
                let left: f64 = v[..k].iter().sum();
                let y = (rows.len() - 1 - row) as f64;
                Some(Rectangle::new(
                    [
                        (left.min(100.0), y + 0.15),
                        ((left + v[k]).min(100.0), y + 0.85),
                    ],
                    c.filled(),
                ))
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, layout.legend_font))
        .draw()?;
    Ok(())
}
