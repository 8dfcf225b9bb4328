//! The pictures of `doctor --report`: the findings per layer by severity, and what limited each
//! busy connection over the window (the kernel's stopwatches).

use super::{svg, top, FONT};
use netblame_core::observe::LimitShares;
use netblame_core::{Finding, Layer, Severity};
use plotters::prelude::*;

const LAYERS: [Layer; 4] = [
    Layer::Network,
    Layer::Kernel,
    Layer::Host,
    Layer::Application,
];

fn severity_colour(s: Severity) -> RGBColor {
    match s {
        Severity::Critical => RGBColor(214, 39, 40),
        Severity::Warning => RGBColor(230, 159, 0),
        _ => RGBColor(86, 180, 233),
    }
}

/// Findings per layer, stacked by severity.
pub fn findings_by_layer(findings: &[&Finding]) -> anyhow::Result<String> {
    let sevs = [Severity::Critical, Severity::Warning, Severity::Info];
    let counts: Vec<[usize; 3]> = LAYERS
        .iter()
        .map(|l| {
            sevs.map(|s| {
                findings
                    .iter()
                    .filter(|f| f.layer == *l && f.severity == s)
                    .count()
            })
        })
        .collect();
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(0) as f64;
    svg((560, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("findings per layer", (FONT, 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(40)
            .build_cartesian_2d(-0.5f64..3.5f64, 0f64..top(max.max(1.0)) * 1.4)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-9 && (0.0..4.0).contains(&i) {
                    LAYERS[i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .y_labels((max as usize + 1).min(10))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("findings")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (k, s) in sevs.iter().enumerate() {
            let c = severity_colour(*s);
            chart
                .draw_series(counts.iter().enumerate().map(|(i, n)| {
                    let below = n[..k].iter().sum::<usize>() as f64;
                    Rectangle::new(
                        [
                            (i as f64 - 0.3, below),
                            (i as f64 + 0.3, below + n[k] as f64),
                        ],
                        c.filled(),
                    )
                }))?
                .label(s.to_string())
                .legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 11))
            .draw()?;
        Ok(())
    })
}

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

/// The most connections drawn.
pub const MAX_CONNECTIONS: usize = 20;

/// One horizontal bar per connection that sent over the window (busiest first): the share of
/// the window each limit held it. `None` when no connection has stopwatch shares.
pub fn connection_limits(conns: &[(String, LimitShares)]) -> anyhow::Result<Option<String>> {
    let mut busy: Vec<&(String, LimitShares)> =
        conns.iter().filter(|(_, s)| s.busy_us > 0).collect();
    if busy.is_empty() {
        return Ok(None);
    }
    busy.sort_by(|a, b| b.1.busy_us.cmp(&a.1.busy_us).then(a.0.cmp(&b.0)));
    busy.truncate(MAX_CONNECTIONS);
    let n = busy.len();
    let labels: Vec<String> = busy.iter().map(|(l, _)| l.clone()).collect();
    svg((1100, (90 + 28 * n as u32).max(200)), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "what limited each sending connection over the window",
                (FONT, 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(380)
            .build_cartesian_2d(0f64..LEGEND_RIGHT, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                let i = (y - 0.5).round();
                if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    labels[n - 1 - i as usize].clone()
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
            .x_desc("% of the window")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (k, (name, c)) in LIMITS.iter().enumerate() {
            let c = *c;
            chart
                .draw_series(busy.iter().enumerate().map(|(i, (_, s))| {
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
                    let y = (n - 1 - i) as f64;
                    Rectangle::new(
                        [
                            (left.min(100.0), y + 0.15),
                            ((left + v[k]).min(100.0), y + 0.85),
                        ],
                        c.filled(),
                    )
                }))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 11))
            .draw()?;
        Ok(())
    })
    .map(Some)
}
