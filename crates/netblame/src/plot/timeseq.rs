//! `pcap --conn ID --plot`: the time-sequence graph of a connection's main sender, in the style
//! of tcptrace and Wireshark's Stevens/tcptrace graph: each data segment a vertical bar from its
//! first to its last byte, the receiver's ACK as a step line under them and its window's right
//! edge (ACK + window) above, retransmissions in red, zero-window advertisements marked on the
//! ACK line. Sequence numbers are relative to the sender's first one.
//!
//! Long connections are thinned to what the picture can show: per pixel column, one bar from
//! the lowest to the highest byte sent there (one for first transmissions, one for
//! retransmissions), the highest ACK, the last window edge and one zero-window mark.

use super::{bytes_label, colour, note, svg, top, Area, ALERT, FONT};
use netblame_core::observe::flow::{FlowObservation, Side};
use netblame_pcap::segments::{SegmentPoint, SegmentTrace};
use plotters::prelude::*;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 720;
/// Above this many data segments, bars are merged per pixel column.
const THIN_ABOVE: usize = 4000;
/// Marks of one kind (retransmissions, zero windows) drawn at most.
const MAX_MARKS: usize = 5000;

const ACK: RGBColor = RGBColor(0, 158, 115);
const WINDOW: RGBColor = RGBColor(200, 150, 0);

/// What the graph plots, already thinned.
struct Lines {
    /// (time s, from, to) of data sent for the first time.
    data: Vec<(f64, f64, f64)>,
    retrans: Vec<(f64, f64, f64)>,
    /// Step points (time s, value).
    ack: Vec<(f64, f64)>,
    edge: Vec<(f64, f64)>,
    zero: Vec<(f64, f64)>,
    syn_fin_rst: Vec<(f64, f64, &'static str)>,
}

fn secs(p: &SegmentPoint) -> f64 {
    p.at_us as f64 / 1e6
}

fn lines(sender: Side, points: &[SegmentPoint], t_max: f64) -> Lines {
    let columns = 1000.0;
    let col = |t: f64| ((t / t_max.max(1e-9)) * columns) as i64;
    let data_count = points
        .iter()
        .filter(|p| p.from == sender && p.len > 0)
        .count();
    let thin = data_count > THIN_ABOVE;
    let mut l = Lines {
        data: Vec::new(),
        retrans: Vec::new(),
        ack: Vec::new(),
        edge: Vec::new(),
        zero: Vec::new(),
        syn_fin_rst: Vec::new(),
    };
    for p in points {
        let t = secs(p);
        if p.from == sender {
            let mark = if p.syn {
                Some("SYN")
            } else if p.fin {
                Some("FIN")
            } else if p.rst {
                Some("RST")
            } else {
                None
            };
            if let Some(m) = mark {
                l.syn_fin_rst.push((t, p.seq as f64, m));
            }
            if p.len == 0 {
                continue;
            }
            let seg = (t, p.seq as f64, (p.seq + p.len as i64) as f64);
            if p.retransmission {
                let room = l.retrans.len() < MAX_MARKS;
                match l.retrans.last_mut() {
                    Some(last) if thin && col(last.0) == col(t) => {
                        last.1 = last.1.min(seg.1);
                        last.2 = last.2.max(seg.2);
                    }
                    _ if room => l.retrans.push(seg),
                    _ => {}
                }
                continue;
            }
            match l.data.last_mut() {
                Some(last) if thin && col(last.0) == col(t) => {
                    last.1 = last.1.min(seg.1);
                    last.2 = last.2.max(seg.2);
                }
                _ => l.data.push(seg),
            }
        } else if let (Some(ack), Some(edge)) = (p.ack, p.window_edge()) {
            let (ack, edge) = (ack as f64, edge as f64);
            let zero_seen = l.zero.last().is_some_and(|q| thin && col(q.0) == col(t));
            if p.zero_window && !zero_seen && l.zero.len() < MAX_MARKS {
                l.zero.push((t, ack));
            }
            let same_col =
                |v: &Vec<(f64, f64)>| v.last().is_some_and(|q| thin && col(q.0) == col(t));
            // Steps: hold the previous value until this time.
            if same_col(&l.ack) {
                let last = l.ack.last_mut().expect("checked");
                last.1 = last.1.max(ack);
            } else {
                if let Some(&(_, prev)) = l.ack.last() {
                    l.ack.push((t, prev));
                }
                l.ack.push((t, ack));
            }
            if same_col(&l.edge) {
                let last = l.edge.last_mut().expect("checked");
                last.1 = edge;
            } else {
                if let Some(&(_, prev)) = l.edge.last() {
                    l.edge.push((t, prev));
                }
                l.edge.push((t, edge));
            }
        }
    }
    l
}

/// The graph for the main sender of `flow`, from its recorded segments.
pub fn render(flow: &FlowObservation, trace: &SegmentTrace) -> anyhow::Result<String> {
    let sender = flow.main_sender();
    let (from, to) = match sender {
        Side::Client => (flow.client, flow.server),
        Side::Server => (flow.server, flow.client),
    };
    let title = format!(
        "connection #{}: time-sequence graph of {from} -> {to} ({} segments captured)",
        flow.id,
        trace.points.len() as u64 + trace.dropped
    );
    svg((WIDTH, HEIGHT), |root| {
        let t_max = trace.points.iter().map(secs).fold(0.0, f64::max);
        let l = lines(sender, &trace.points, t_max);
        if l.data.is_empty() && l.retrans.is_empty() {
            return note(root, &title, "no data segments in this direction");
        }
        draw(root, &title, &l, t_max, trace.dropped)
    })
}

fn draw(root: &Area, title: &str, l: &Lines, t_max: f64, dropped: u64) -> anyhow::Result<()> {
    let values = l
        .data
        .iter()
        .chain(&l.retrans)
        .flat_map(|d| [d.1, d.2])
        .chain(l.ack.iter().map(|a| a.1))
        .chain(l.edge.iter().map(|a| a.1));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = lo.min(0.0);
    let span = (hi - lo).max(1.0);
    let x_hi = top(t_max);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(85)
        .build_cartesian_2d(0f64..x_hi, lo..lo + span * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("time since the connection's first packet (s)")
        .y_desc("relative sequence number")
        .y_label_formatter(&|v| bytes_label(*v))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    if !l.ack.is_empty() {
        chart
            .draw_series(LineSeries::new(l.ack.iter().copied(), ACK.stroke_width(1)))?
            .label("ACK received")
            .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], ACK.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                l.edge.iter().copied(),
                WINDOW.stroke_width(1),
            ))?
            .label("receive window edge (ACK + window)")
            .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], WINDOW.stroke_width(2)));
    }
    let data = colour(0);
    chart
        .draw_series(
            l.data
                .iter()
                .map(|&(t, a, b)| PathElement::new([(t, a), (t, b)], data.stroke_width(2))),
        )?
        .label("data sent")
        .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], data.stroke_width(3)));
    if !l.retrans.is_empty() {
        chart
            .draw_series(
                l.retrans
                    .iter()
                    .map(|&(t, a, b)| PathElement::new([(t, a), (t, b)], ALERT.stroke_width(3))),
            )?
            .label("retransmission")
            .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], ALERT.stroke_width(3)));
        chart.draw_series(
            l.retrans
                .iter()
                .map(|&(t, _, b)| Cross::new((t, b), 4, ALERT.stroke_width(1))),
        )?;
    }
    if !l.zero.is_empty() {
        chart
            .draw_series(
                l.zero
                    .iter()
                    .map(|&(t, a)| TriangleMarker::new((t, a), 4, ALERT.mix(0.7).filled())),
            )?
            .label("zero window advertised")
            .legend(|(x, y)| TriangleMarker::new((x, y), 5, ALERT.filled()));
    }
    chart.draw_series(
        l.syn_fin_rst
            .iter()
            .map(|&(t, s, m)| Text::new(m, (t, s), (FONT, 11).into_font().color(&BLACK))),
    )?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 12))
        .draw()?;
    if dropped > 0 {
        root.draw(&Text::new(
            format!(
                "{dropped} later segments were not recorded (at most {} per connection)",
                netblame_pcap::segments::MAX_SEGMENTS
            ),
            (100, 40),
            (FONT, 12).into_font().color(&ALERT),
        ))?;
    }
    Ok(())
}

/// Draws connection `id` of an analysis made with [`netblame_pcap::Config::segments`] and
/// writes it to `path`.
pub fn save(path: &std::path::Path, a: &netblame_pcap::Analysis, id: u32) -> anyhow::Result<()> {
    let flow = a
        .flows
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| anyhow::anyhow!("no connection #{id} to plot"))?;
    let trace = a
        .segments
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| anyhow::anyhow!("connection #{id} kept no segments: nothing to plot"))?;
    super::save(path, &render(flow, trace)?)
}
