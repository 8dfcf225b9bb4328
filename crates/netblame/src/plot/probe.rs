//! `probe --plot`: per target, latency over the run with the largest latencies marked and
//! losses shown along the top (Cloudflare's spike chart), beside its log2 histogram. A target
//! loaded from a saved log has no per-probe samples: its row is the histogram alone.

use super::{colour, note, svg, top, Area, ALERT, FONT};
use netblame_core::observe::latency::Spike;
use netblame_core::observe::latency::{log2_buckets, Measures, ProbeOutcome, TargetLatency};
use netblame_probe::report::TargetRun;
use plotters::prelude::*;

const WIDTH: u32 = 1200;
const ROW: u32 = 360;

/// The whole picture: one row per target, probed ones first.
pub fn render(runs: &[TargetRun], loaded: &[TargetLatency]) -> anyhow::Result<String> {
    let rows = (runs.len() + loaded.len()).max(1) as u32;
    svg((WIDTH, ROW * rows), |root| {
        let areas = root.split_evenly((rows as usize, 1));
        let mut n = 0;
        for r in runs {
            let (left, right) = areas[n].split_horizontally(WIDTH * 64 / 100);
            over_time(&left, &r.latency, &r.spikes, n)?;
            histogram(&right, &r.latency, n)?;
            n += 1;
        }
        for l in loaded {
            let (left, right) = areas[n].split_horizontally(WIDTH * 64 / 100);
            note(
                &left,
                &format!("{}: latency over time", l.target),
                "loaded from a histogram log: no per-probe samples",
            )?;
            histogram(&right, l, n)?;
            n += 1;
        }
        if n == 0 {
            note(&areas[0], "latency", "no targets")?;
        }
        Ok(())
    })
}

fn what(t: &TargetLatency) -> &'static str {
    match t.measures {
        Measures::Connect => "connect time",
        Measures::RoundTrip => "round trip",
    }
}

/// Latency (ms) against the probe's scheduled time (s); lost probes as crosses on the top edge;
/// the largest latencies circled with their values; p50 and p99 as dashed lines.
fn over_time(area: &Area, t: &TargetLatency, spikes: &[Spike], n: usize) -> anyhow::Result<()> {
    let replies: Vec<(f64, f64)> = t
        .samples
        .iter()
        .filter_map(|s| {
            s.latency_us()
                .map(|l| (s.at_us as f64 / 1e6, l as f64 / 1e3))
        })
        .collect();
    let replies = thin(replies);
    let lost: Vec<f64> = t
        .samples
        .iter()
        .filter(|s| !matches!(s.outcome, ProbeOutcome::Reply { .. }))
        .map(|s| s.at_us as f64 / 1e6)
        .collect();
    let lost = thin(lost.into_iter().map(|x| (x, 0.0)).collect())
        .into_iter()
        .map(|p| p.0)
        .collect::<Vec<_>>();
    let title = format!(
        "{}: {} over time ({} sent, {} lost)",
        t.target,
        what(t),
        t.summary.sent,
        t.summary.lost
    );
    if t.samples.is_empty() {
        return note(area, &title, "no probes");
    }
    let x_max = t
        .samples
        .iter()
        .map(|s| s.at_us as f64 / 1e6)
        .fold(0.0, f64::max)
        .max(t.interval_us as f64 / 1e6);
    // Headroom above the largest for the legend and the loss marks.
    let y_max = top(replies.iter().map(|p| p.1).fold(0.0, f64::max)) * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(&title, (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since the first probe (s)")
        .y_desc("latency (ms)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let c = colour(n);
    chart
        .draw_series(
            replies
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 2, c.filled())),
        )?
        .label("reply")
        .legend(move |(x, y)| Circle::new((x, y), 3, c.filled()));
    if !lost.is_empty() {
        chart
            .draw_series(
                lost.iter()
                    .map(|&x| Cross::new((x, y_max * 0.97), 4, ALERT.stroke_width(2))),
            )?
            .label("lost / failed")
            .legend(|(x, y)| Cross::new((x, y), 4, ALERT.stroke_width(2)));
    }
    if t.summary.received > 0 {
        for (name, v, style) in [
            ("p50", t.summary.p50_us, RGBColor(60, 60, 60)),
            ("p99", t.summary.p99_us, ALERT),
        ] {
            let y = v / 1e3;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, y), (x_max * 1.02, y)],
                    6,
                    4,
                    style.stroke_width(1),
                ))?
                .label(format!("{name} {}", ms(y)))
                .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], style));
        }
    }
    if !spikes.is_empty() {
        chart
            .draw_series(spikes.iter().map(|s| {
                EmptyElement::at((s.at_us as f64 / 1e6, s.latency_us as f64 / 1e3))
                    + Circle::new((0, 0), 7, ALERT.stroke_width(2))
                    + Text::new(
                        format!("{} #{}", ms(s.latency_us as f64 / 1e3), s.seq),
                        (9, -16),
                        (FONT, 11).into_font().color(&ALERT),
                    )
            }))?
            .label("largest")
            .legend(|(x, y)| Circle::new((x, y), 5, ALERT.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}

/// Above this many points a series is thinned to what the picture can show.
const THIN_ABOVE: usize = 10_000;

/// Keeps, per pixel column of a long run, only its lowest and highest point (spikes stay).
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= THIN_ABOVE {
        return points;
    }
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let col = |x: f64| (x / x_max * 1000.0) as i64;
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let c = col(points[i].0);
        let mut j = i;
        let (mut lo, mut hi) = (points[i], points[i]);
        while j < points.len() && col(points[j].0) == c {
            if points[j].1 < lo.1 {
                lo = points[j];
            }
            if points[j].1 > hi.1 {
                hi = points[j];
            }
            j += 1;
        }
        out.push(lo);
        if hi != lo {
            out.push(hi);
        }
        i = j;
    }
    out
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{:.0} us", v * 1e3)
    }
}

/// The log2 histogram (SystemTap's rows) as bars: replies per latency doubling.
fn histogram(area: &Area, t: &TargetLatency, n: usize) -> anyhow::Result<()> {
    let rows = log2_buckets(t.values.iter().copied());
    let title = format!("{}: {} histogram", t.target, what(t));
    if rows.is_empty() {
        return note(area, &title, "no replies");
    }
    let max = rows.iter().map(|r| r.count).max().unwrap_or(1) as f64;
    let labels: Vec<String> = rows.iter().map(|r| ms(r.lower_us as f64 / 1e3)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&title, (FONT, 16))
        .margin(10)
        .x_label_area_size(75)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..rows.len() as f64, 0f64..top(max))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor()).abs() < 1e-9 && i < labels.len() {
                format!("≥{}", labels[i])
            } else {
                String::new()
            }
        })
        .x_label_style(
            TextStyle::from((FONT, 11).into_font())
                .transform(FontTransform::Rotate90)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                )),
        )
        .y_desc("replies")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let c = colour(n);
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        Rectangle::new(
            [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, r.count as f64)],
            c.mix(0.8).filled(),
        )
    }))?;
    chart.draw_series(
        rows.iter()
            .enumerate()
            .filter(|(_, r)| r.count > 0)
            .map(|(i, r)| {
                Text::new(
                    r.count.to_string(),
                    (i as f64 + 0.2, r.count as f64 + max * 0.03),
                    (FONT, 11),
                )
            }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_each_columns_extremes() {
        let pts: Vec<(f64, f64)> = (0..100_000)
            .map(|i| {
                (
                    i as f64 / 1000.0,
                    if i == 54_321 {
                        900.0
                    } else {
                        1.0 + (i % 7) as f64
                    },
                )
            })
            .collect();
        let t = thin(pts);
        assert!(t.len() <= 2_002, "{}", t.len());
        assert!(t.contains(&(54.321, 900.0)));
        assert!(t.iter().any(|p| p.1 == 1.0));
        assert_eq!(thin(vec![(0.0, 1.0), (1.0, 2.0)]).len(), 2);
    }
}
