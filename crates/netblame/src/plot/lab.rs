//! `lab scenario --plot`: before and after. One row per scenario: on the left what limited each
//! part's sender (or each connect's time), on the right one bar per part (its goodput, or its
//! slowest connect) labelled with its top finding and whether the verdict matched — the
//! incident beside its control or its fix.

use super::{colour, note, svg, top, Area, ALERT, FONT};
use netblame_lab::scenario::{Observed, PartReport, ScenarioReport};
use plotters::prelude::*;

const WIDTH: u32 = 1200;
const ROW: u32 = 380;

/// The picture for the scenarios run.
pub fn render(reports: &[ScenarioReport]) -> anyhow::Result<String> {
    let rows = reports.len().max(1);
    svg((WIDTH, ROW * rows as u32), |root| {
        let areas = root.split_evenly((rows, 1));
        if reports.is_empty() {
            return note(&areas[0], "lab", "no scenario ran");
        }
        for (rep, area) in reports.iter().zip(&areas) {
            let (left, right) = area.split_horizontally(WIDTH * 58 / 100);
            let transfers = rep
                .parts
                .iter()
                .any(|p| matches!(p.observed, Observed::Transfer(_)));
            if transfers {
                delivered(&left, rep)?;
            } else {
                connects(&left, rep)?;
            }
            bars(&right, rep)?;
        }
        Ok(())
    })
}

/// "1. label", cut to fit the label column.
fn part_name(i: usize, p: &PartReport) -> String {
    let name = format!("{}. {}", i + 1, p.label);
    if name.chars().count() <= 42 {
        name
    } else {
        name.chars().take(41).collect::<String>() + "…"
    }
}

/// One horizontal bar per transfer part: the share of the transfer each limit held the sender
/// (the kernel's stopwatches between the first and the last sample).
fn delivered(area: &Area, rep: &ScenarioReport) -> anyhow::Result<()> {
    let parts: Vec<(
        usize,
        &PartReport,
        Option<netblame_core::observe::LimitShares>,
    )> = rep
        .parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.observed {
            Observed::Transfer(t) => Some((i, p, t.sender.shares)),
            Observed::Connects(_) | Observed::Probes => None,
        })
        .collect();
    let rows: Vec<(String, Option<netblame_core::observe::LimitShares>)> = parts
        .iter()
        .map(|(i, p, s)| (part_name(*i, p), *s))
        .collect();
    let caption = format!("scenario {}: what limited the sender", rep.scenario.name);
    super::limits::bars(
        area,
        &super::limits::Layout {
            caption: &caption,
            x_desc: "% of the transfer",
            label_width: 230,
            legend_font: 10,
        },
        &rows,
    )
}

/// Each connect's time (ms) in order, one colour per part, with the path's RTT.
fn connects(area: &Area, rep: &ScenarioReport) -> anyhow::Result<()> {
    let mut n_max = 1usize;
    let mut y_max: f64 = 0.0;
    for p in &rep.parts {
        if let Observed::Connects(c) = &p.observed {
            n_max = n_max.max(c.times.len());
            y_max = y_max.max(
                c.times
                    .iter()
                    .map(|t| t.as_secs_f64() * 1e3)
                    .fold(0.0, f64::max),
            );
        }
    }
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("scenario {}: time of each connect", rep.scenario.name),
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n_max as f64 + 1.0, 0f64..top(y_max))?;
    chart
        .configure_mesh()
        .x_desc("connect number")
        .y_desc("connect time (ms)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (i, p) in rep.parts.iter().enumerate() {
        let Observed::Connects(c) = &p.observed else {
            continue;
        };
        let col = colour(i);
        chart
            .draw_series(c.times.iter().enumerate().map(|(k, t)| {
                Circle::new(((k + 1) as f64, t.as_secs_f64() * 1e3), 5, col.filled())
            }))?
            .label(part_name(i, p))
            .legend(move |(x, y)| Circle::new((x, y), 4, col.filled()));
        let rtt = c.path_rtt.as_secs_f64() * 1e3;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, rtt), (n_max as f64 + 1.0, rtt)],
            6,
            4,
            RGBColor(90, 90, 90).stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 11))
        .draw()?;
    Ok(())
}

/// A part's headline number: throughput (Mbit/s) of a transfer, or its slowest connect (ms).
fn headline(p: &PartReport) -> (f64, &'static str) {
    match &p.observed {
        Observed::Transfer(t) => (t.sender.rate_bps / 1e6, "Mbit/s"),
        Observed::Connects(c) => (
            c.times
                .iter()
                .map(|t| t.as_secs_f64() * 1e3)
                .fold(0.0, f64::max),
            "ms slowest connect",
        ),
        Observed::Probes => (0.0, "probes"),
    }
}

/// One bar per part with its number, its top finding and whether the verdict matched.
fn bars(area: &Area, rep: &ScenarioReport) -> anyhow::Result<()> {
    let values: Vec<(f64, &str)> = rep.parts.iter().map(headline).collect();
    let unit = values.first().map(|v| v.1).unwrap_or("");
    let y_max = top(values.iter().map(|v| v.0).fold(0.0, f64::max));
    let n = rep.parts.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{} ({})",
                if unit == "Mbit/s" {
                    "throughput per part"
                } else {
                    "slowest connect per part"
                },
                if rep.passed {
                    "scenario passed"
                } else {
                    "scenario FAILED"
                }
            ),
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..y_max * 1.25)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < n {
                format!("part {}", i as usize + 1)
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (i, (p, (v, _))) in rep.parts.iter().zip(&values).enumerate() {
        let c = colour(i);
        let x = i as f64;
        chart.draw_series([Rectangle::new(
            [(x - 0.35, 0.0), (x + 0.35, *v)],
            c.mix(0.85).filled(),
        )])?;
        let finding = p
            .findings
            .iter()
            .find(|f| f.severity >= netblame_core::Severity::Warning)
            .map(|f| f.id)
            .unwrap_or("no finding");
        let top_y = v + y_max * 0.04;
        chart.draw_series([
            Text::new(
                format!("{v:.1}"),
                (x - 0.3, top_y + y_max * 0.14),
                (FONT, 13).into_font().style(FontStyle::Bold),
            ),
            Text::new(
                finding.to_string(),
                (x - 0.3, top_y + y_max * 0.08),
                (FONT, 11).into_font(),
            ),
            Text::new(
                if p.matched {
                    "verdict matched"
                } else {
                    "verdict MISMATCH"
                }
                .to_string(),
                (x - 0.3, top_y + y_max * 0.02),
                (FONT, 11).into_font().color(if p.matched {
                    &RGBColor(0, 120, 60)
                } else {
                    &ALERT
                }),
            ),
        ])?;
    }
    Ok(())
}
