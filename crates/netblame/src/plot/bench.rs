//! `bench client --plot`: per interval, throughput, congestion window, RTT and what limited the
//! sender (the kernel's stopwatches: receiver window, send buffer, congestion window, nothing
//! to send), from both ends when the server is netblame (its samples come back in the results).
//! The client's lines are solid, the server's dashed.

use super::{bytes_label, colour, note, svg, top, Area, FONT};
use netblame_bench::client::ClientOutcome;
use netblame_bench::sample::{IntervalSample, StreamSample};
use plotters::prelude::*;

const WIDTH: u32 = 1100;
const PANEL: u32 = 260;

/// One line: an end's view of one stream.
struct Line {
    label: String,
    server: bool,
    colour: RGBColor,
    points: Vec<StreamSample>,
}

fn collect(end: &str, server: bool, intervals: &[IntervalSample], out: &mut Vec<Line>) {
    for iv in intervals {
        for s in &iv.streams {
            match out.iter_mut().find(|l| {
                l.server == server && l.points[0].id == s.id && l.points[0].sender == s.sender
            }) {
                Some(l) => l.points.push(s.clone()),
                None => {
                    let n = out.len();
                    out.push(Line {
                        label: format!(
                            "{end} #{} {}",
                            s.id,
                            if s.sender { "sending" } else { "receiving" }
                        ),
                        server,
                        colour: colour(n),
                        points: vec![s.clone()],
                    })
                }
            }
        }
    }
}

/// The picture for one test.
pub fn render(o: &ClientOutcome) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    collect("client", false, &o.intervals, &mut lines);
    if let Some(s) = &o.server {
        collect("server", true, &s.intervals, &mut lines);
    }
    let ends: Vec<bool> = [false, true]
        .into_iter()
        .filter(|srv| {
            lines.iter().any(|l| {
                l.server == *srv && l.points.iter().any(|p| p.sender && p.shares().is_some())
            })
        })
        .collect();
    let panels = 3 + ends.len().max(1);
    // Bars of what limited the sender need a sender with the kernel's stopwatches.
    let x_max = top(lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.end))
        .fold(0.0, f64::max));
    let direction = if o.params.bidir {
        "both directions"
    } else if o.params.reverse {
        "server -> client"
    } else {
        "client -> server"
    };
    svg((WIDTH, PANEL * panels as u32 + 30), |root| {
        root.draw(&Text::new(
            format!(
                "netblame bench {}:{} ({direction}, {} stream{}, {:.1} s){}",
                o.host,
                o.port,
                o.params.parallel,
                if o.params.parallel == 1 { "" } else { "s" },
                o.seconds,
                if o.server.is_some() {
                    ""
                } else {
                    "; the server is not netblame: client samples only"
                }
            ),
            (12, 8),
            (FONT, 17).into_font().style(FontStyle::Bold),
        ))?;
        let (_, body) = root.split_vertically(30);
        let areas = body.split_evenly((panels, 1));
        if lines.is_empty() {
            return note(&areas[0], "bench", "no interval samples");
        }
        panel(
            &areas[0],
            "throughput (Mbit/s)",
            x_max,
            &lines,
            &|p| Some(p.bits_per_second / 1e6),
            Some(&|v| format!("{v:.0}")),
        )?;
        panel(
            &areas[1],
            "congestion window (sender)",
            x_max,
            &lines,
            &|p| p.sender.then_some(p.snd_cwnd_bytes as f64),
            Some(&|v| bytes_label(*v)),
        )?;
        panel(
            &areas[2],
            "smoothed RTT (ms)",
            x_max,
            &lines,
            &|p| (p.rtt_us > 0).then_some(p.rtt_us as f64 / 1e3),
            None,
        )?;
        if ends.is_empty() {
            note(
                &areas[3],
                "what limited the sender",
                "no stopwatch samples from a sender (Linux 4.10+ and a netblame end that sends)",
            )?;
        }
        for (i, srv) in ends.iter().enumerate() {
            shares(&areas[3 + i], *srv, x_max, &lines)?;
        }
        Ok(())
    })
}

type Get<'a> = &'a dyn Fn(&StreamSample) -> Option<f64>;

fn panel(
    area: &Area,
    title: &str,
    x_max: f64,
    lines: &[Line],
    get: Get,
    y_fmt: Option<&dyn Fn(&f64) -> String>,
) -> anyhow::Result<()> {
    let y_max = top(lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(get))
        .fold(0.0, f64::max));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("time (s)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(238, 238, 238));
    if let Some(f) = y_fmt {
        mesh.y_label_formatter(f);
    }
    mesh.draw()?;
    let mut any = false;
    for l in lines {
        let pts: Vec<(f64, f64)> = l
            .points
            .iter()
            .filter_map(|p| get(p).map(|v| (p.end, v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        any = true;
        let c = l.colour;
        let style = c.stroke_width(2);
        let series = if l.server {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 7, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        };
        series
            .label(&l.label)
            .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
    }
    if any {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 11))
            .draw()?;
    }
    Ok(())
}

/// Colours of the limits, in stacking order from the bottom.
const LIMITS: [(&str, RGBColor); 4] = [
    ("receiver window", RGBColor(230, 159, 0)),
    ("send buffer", RGBColor(204, 121, 167)),
    ("congestion window (network)", RGBColor(0, 114, 178)),
    ("nothing to send (application)", RGBColor(190, 190, 190)),
];

/// Stacked bars per interval: the share of wall time each limit held the sending end's
/// streams (summed over its streams).
fn shares(area: &Area, server: bool, x_max: f64, lines: &[Line]) -> anyhow::Result<()> {
    // (start, end) -> summed microseconds per limit and interval.
    let mut bars: Vec<(f64, f64, [f64; 4], f64)> = Vec::new();
    for l in lines.iter().filter(|l| l.server == server) {
        for p in l.points.iter().filter(|p| p.sender) {
            let Some(s) = p.shares() else { continue };
            let v = [
                s.rwnd_limited_us as f64,
                s.sndbuf_limited_us as f64,
                s.cwnd_limited_us as f64,
                s.idle_us as f64,
            ];
            match bars
                .iter_mut()
                .find(|b| (b.0 - p.start).abs() < 1e-6 && (b.1 - p.end).abs() < 1e-6)
            {
                Some(b) => {
                    for (sum, x) in b.2.iter_mut().zip(v) {
                        *sum += x;
                    }
                    b.3 += s.interval_us as f64;
                }
                None => bars.push((p.start, p.end, v, s.interval_us as f64)),
            }
        }
    }
    let title = format!(
        "what limited the {} while sending (share of each interval)",
        if server { "server" } else { "client" }
    );
    let mut chart = ChartBuilder::on(area)
        .caption(&title, (FONT, 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..x_max, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("% of time")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (k, (name, c)) in LIMITS.iter().enumerate() {
        let c = *c;
        chart
            .draw_series(bars.iter().map(|(a, b, v, total)| {
                let below: f64 = v[..k].iter().sum::<f64>() / total.max(1.0) * 100.0;
                let mine = v[k] / total.max(1.0) * 100.0;
                let w = (b - a) * 0.08;
                Rectangle::new(
                    [(a + w, below), (b - w, (below + mine).min(100.0))],
                    c.filled(),
                )
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 11))
        .draw()?;
    Ok(())
}
