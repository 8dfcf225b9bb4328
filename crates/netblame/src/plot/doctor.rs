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
    let rows: Vec<(String, Option<LimitShares>)> =
        busy.iter().map(|(l, s)| (l.clone(), Some(*s))).collect();
    svg((1100, (90 + 28 * n as u32).max(200)), |root| {
        super::limits::bars(
            root,
            &super::limits::Layout {
                caption: "what limited each sending connection over the window",
                x_desc: "% of the window",
                label_width: 380,
                legend_font: 11,
            },
            &rows,
        )
    })
    .map(Some)
}
