//! Matches the same TCP streams in two captures (e.g. the client side and the server side of a
//! NAT) by their raw initial sequence numbers, which address translation leaves alone, and
//! confirms each match segment by segment (sequence, acknowledgement, payload length, TCP
//! timestamp). Reports the address/port translation, segments seen in one capture only (lost
//! between the capture points) and the one-way delay between the capture points.

use crate::decode::{self, Segment};
use crate::reader::{Capture, ReadError};
use netblame_core::observe::flow::{Endpoint, FlowObservation};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// Delays between the two capture points for one direction, microseconds.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct DelayStats {
    pub samples: u64,
    pub min_us: i64,
    pub median_us: i64,
    pub max_us: i64,
}

/// Segments seen in one capture only, per direction.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct OneSided {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// One stream found in both captures.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StreamMatch {
    pub a_id: u32,
    pub b_id: u32,
    pub a_client: Endpoint,
    pub a_server: Endpoint,
    pub b_client: Endpoint,
    pub b_server: Endpoint,
    pub client_isn: Option<u32>,
    pub server_isn: Option<u32>,
    /// Human lines such as "client 10.0.0.2:40000 appears as 198.18.0.1:40000 in B".
    pub translation: Vec<String>,
    /// What confirmed the match: `isn`, `segments`, `tcp_timestamps`.
    pub confirmed_by: Vec<&'static str>,
    /// Segments present in both captures.
    pub common_segments: u64,
    pub only_in_a: OneSided,
    pub only_in_b: OneSided,
    /// Time from A to B for client-to-server segments (B's clock minus A's).
    pub client_to_server_a_to_b: Option<DelayStats>,
    /// Time from B to A for server-to-client segments (A's clock minus B's).
    pub server_to_client_b_to_a: Option<DelayStats>,
    /// Which capture is nearer the client, and what the delays mean.
    pub note: String,
}

/// Both captures' streams, matched.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Correlation {
    pub matches: Vec<StreamMatch>,
    /// Connections of A (by id) with no partner in B, and the reverse.
    pub unmatched_a: Vec<u32>,
    pub unmatched_b: Vec<u32>,
    /// Damage met while re-reading either file.
    pub warnings: Vec<String>,
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct SegKey {
    to_server: bool,
    seq: u32,
    ack: u32,
    len: u32,
    flags: u8,
    tsval: Option<u32>,
}

struct Span {
    start_ns: u64,
    end_ns: u64,
    client: Endpoint,
    m: usize,
}

fn canon(a: Endpoint, b: Endpoint) -> (Endpoint, Endpoint) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn spans(flows: &[&FlowObservation], idx: &[usize]) -> HashMap<(Endpoint, Endpoint), Vec<Span>> {
    let mut out: HashMap<_, Vec<Span>> = HashMap::new();
    for (f, m) in flows.iter().zip(idx) {
        let start_ns = f.start_unix_us.saturating_mul(1000);
        out.entry(canon(f.client, f.server))
            .or_default()
            .push(Span {
                start_ns,
                // One second of slack for the last packets' rounding.
                end_ns: start_ns
                    .saturating_add(f.duration_us.saturating_mul(1000))
                    .saturating_add(1_000_000),
                client: f.client,
                m: *m,
            });
    }
    out
}

fn locate<'a>(
    spans: &'a HashMap<(Endpoint, Endpoint), Vec<Span>>,
    ts: u64,
    seg: &Segment,
) -> Option<(&'a Span, bool)> {
    let a = Endpoint {
        ip: seg.src,
        port: seg.sport,
    };
    let b = Endpoint {
        ip: seg.dst,
        port: seg.dport,
    };
    let v = spans.get(&canon(a, b))?;
    let s = v
        .iter()
        .find(|s| ts.saturating_add(1000) >= s.start_ns && ts <= s.end_ns)?;
    Some((s, s.client == a))
}

fn key(seg: &Segment, to_server: bool) -> SegKey {
    SegKey {
        to_server,
        seq: seg.seq,
        ack: seg.ack,
        len: seg.payload_len,
        flags: seg.flags & 0x07,
        tsval: seg.options.timestamp.map(|t| t.0),
    }
}

fn stats(mut v: Vec<i64>) -> Option<DelayStats> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(DelayStats {
        samples: v.len() as u64,
        min_us: v[0],
        median_us: v[v.len() / 2],
        max_us: v[v.len() - 1],
    })
}

/// Matches the streams of two analysed captures and compares their segments.
pub fn correlate(
    a_path: &Path,
    a_flows: &[FlowObservation],
    b_path: &Path,
    b_flows: &[FlowObservation],
) -> Result<Correlation, ReadError> {
    // 1. Match by raw ISNs.
    let mut by_isn: HashMap<(Option<u32>, Option<u32>), Vec<&FlowObservation>> = HashMap::new();
    for f in b_flows.iter().filter(|f| f.client_isn.is_some()) {
        by_isn
            .entry((f.client_isn, f.server_isn))
            .or_default()
            .push(f);
    }
    let mut pairs: Vec<(&FlowObservation, &FlowObservation)> = Vec::new();
    let mut used_b = std::collections::HashSet::new();
    for fa in a_flows.iter().filter(|f| f.client_isn.is_some()) {
        let cand = by_isn
            .get(&(fa.client_isn, fa.server_isn))
            .and_then(|v| v.iter().find(|fb| !used_b.contains(&fb.id)));
        if let Some(fb) = cand {
            used_b.insert(fb.id);
            pairs.push((fa, fb));
        }
    }
    let a_m: Vec<&FlowObservation> = pairs.iter().map(|p| p.0).collect();
    let b_m: Vec<&FlowObservation> = pairs.iter().map(|p| p.1).collect();
    let idx: Vec<usize> = (0..pairs.len()).collect();
    let a_spans = spans(&a_m, &idx);
    let b_spans = spans(&b_m, &idx);

    // 2. Segments of matched streams in A.
    let mut warnings = Vec::new();
    let mut in_a: Vec<HashMap<SegKey, VecDeque<u64>>> = vec![HashMap::new(); pairs.len()];
    if !pairs.is_empty() {
        let out = Capture::open(a_path)?.for_each_packet(|p| {
            if let Some(seg) = decode::tcp_segment(p.linktype, p.data) {
                if let Some((s, to_server)) = locate(&a_spans, p.ts_ns, &seg) {
                    in_a[s.m]
                        .entry(key(&seg, to_server))
                        .or_default()
                        .push_back(p.ts_ns);
                }
            }
        });
        warnings.extend(out.damage);
    }

    // 3. Walk B and pair segments.
    let n = pairs.len();
    let mut common = vec![0u64; n];
    let mut only_b = vec![OneSided::default(); n];
    let mut c2s: Vec<Vec<i64>> = vec![Vec::new(); n];
    let mut s2c: Vec<Vec<i64>> = vec![Vec::new(); n];
    let mut ts_confirm = vec![false; n];
    if !pairs.is_empty() {
        let out = Capture::open(b_path)?.for_each_packet(|p| {
            if let Some(seg) = decode::tcp_segment(p.linktype, p.data) {
                if let Some((s, to_server)) = locate(&b_spans, p.ts_ns, &seg) {
                    let k = key(&seg, to_server);
                    match in_a[s.m].get_mut(&k).and_then(|q| q.pop_front()) {
                        Some(ta) => {
                            common[s.m] += 1;
                            if k.tsval.is_some() {
                                ts_confirm[s.m] = true;
                            }
                            let d = ((p.ts_ns as i128 - ta as i128) / 1000) as i64;
                            if to_server {
                                c2s[s.m].push(d);
                            } else {
                                s2c[s.m].push(-d);
                            }
                        }
                        None => {
                            if to_server {
                                only_b[s.m].client_to_server += 1;
                            } else {
                                only_b[s.m].server_to_client += 1;
                            }
                        }
                    }
                }
            }
        });
        warnings.extend(out.damage);
    }

    let mut matches = Vec::new();
    for (i, (fa, fb)) in pairs.iter().enumerate() {
        let mut only_a = OneSided::default();
        for (k, q) in &in_a[i] {
            if k.to_server {
                only_a.client_to_server += q.len() as u64;
            } else {
                only_a.server_to_client += q.len() as u64;
            }
        }
        let mut translation = Vec::new();
        for (what, ea, eb) in [
            ("client", fa.client, fb.client),
            ("server", fa.server, fb.server),
        ] {
            if ea == eb {
                translation.push(format!("{what} {ea} unchanged"));
            } else {
                translation.push(format!("{what} {ea} in A appears as {eb} in B"));
            }
        }
        let mut confirmed_by = vec!["isn"];
        if common[i] > 2 {
            confirmed_by.push("segments");
        }
        if ts_confirm[i] {
            confirmed_by.push("tcp_timestamps");
        }
        let d1 = stats(std::mem::take(&mut c2s[i]));
        let d2 = stats(std::mem::take(&mut s2c[i]));
        let note = match (&d1, &d2) {
            (Some(x), Some(y)) if x.min_us >= 0 && y.min_us >= 0 => format!(
                "A is nearer the client: client-to-server segments reach B a median {} us after A, server-to-client segments reach A a median {} us after B (one-way delays between the capture points)",
                x.median_us, y.median_us
            ),
            (Some(x), Some(y)) if x.max_us <= 0 && y.max_us <= 0 => format!(
                "B is nearer the client: client-to-server segments reach A a median {} us after B, server-to-client segments reach B a median {} us after A",
                -x.median_us, -y.median_us
            ),
            (Some(x), Some(y)) => format!(
                "the delays disagree in sign (client-to-server {} us, server-to-client {} us): the two capture clocks differ by about {} us; one-way delays cannot be read off, the round trip between the points is about {} us",
                x.median_us,
                y.median_us,
                (x.median_us - y.median_us) / 2,
                x.median_us + y.median_us
            ),
            _ => "too few common segments for delays".to_string(),
        };
        matches.push(StreamMatch {
            a_id: fa.id,
            b_id: fb.id,
            a_client: fa.client,
            a_server: fa.server,
            b_client: fb.client,
            b_server: fb.server,
            client_isn: fa.client_isn,
            server_isn: fa.server_isn,
            translation,
            confirmed_by,
            common_segments: common[i],
            only_in_a: only_a,
            only_in_b: only_b[i].clone(),
            client_to_server_a_to_b: d1,
            server_to_client_b_to_a: d2,
            note,
        });
    }
    let ma: std::collections::HashSet<u32> = pairs.iter().map(|p| p.0.id).collect();
    Ok(Correlation {
        matches,
        unmatched_a: a_flows
            .iter()
            .filter(|f| !ma.contains(&f.id))
            .map(|f| f.id)
            .collect(),
        unmatched_b: b_flows
            .iter()
            .filter(|f| !used_b.contains(&f.id))
            .map(|f| f.id)
            .collect(),
        warnings,
    })
}
