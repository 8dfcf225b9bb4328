//! The agent's TOML configuration: scan interval, sources, label limits, probe targets and the
//! path the host must fill. A bad file is refused with its line, column and the reason; every
//! value is checked before the agent starts (or, on `SIGHUP`, before the new file replaces the
//! running one).
//!
//! ```toml
//! interval = "15s"          # time between scans (the counter window); 1s to 1h
//!
//! [sources]
//! sockets = true            # sock_diag dump: states, limits, per-connection findings
//! processes = true          # map sockets to processes (a /proc scan per interval)
//! host = true               # /proc/net counters, qdiscs, NIC statistics, sysctls
//! cgroups = true            # CPU throttling of socket owners' cgroups
//! trace = false             # eBPF trace histograms (NET_RX softirq time, drops by reason)
//!
//! [limits]
//! top_processes = 10        # processes/containers labelled; the rest are process="other"
//! top_devices = 16          # network devices labelled; the rest are device="other"
//!
//! [path]                    # optional: a path this host must fill (buffer-vs-BDP checks)
//! rate = "10g"
//! rtt = "30ms"
//!
//! [[probe]]                 # optional, repeatable: latency probes on a fixed schedule
//! target = "10.0.0.2:5201"  # label value `target` (host:port, or a URL for kind "http")
//! kind = "tcp"              # tcp | rr | http | udp | icmp
//! interval = "1s"
//! timeout = "2s"
//! ```

use netblame_core::units::parse_duration;
use netblame_core::BitRate;
use netblame_probe::ProbeKind;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Shortest scan interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest scan interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Most probe targets (each adds a histogram of [`crate::metrics::PROBE_BUCKETS`] buckets).
pub const MAX_PROBES: usize = 32;
/// Most processes or devices one label limit may name.
pub const MAX_TOP: usize = 100;

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Time between scans; also the window over which counters are compared.
    pub interval: Duration,
    pub sources: Sources,
    pub limits: Limits,
    /// The path this host must fill, for the buffer-versus-BDP checks.
    pub path: Option<(BitRate, Duration)>,
    pub probes: Vec<Probe>,
}

/// Which observations each scan makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    /// Dump sockets with sock_diag.
    pub sockets: bool,
    /// Map sockets to their processes (needs `sockets`).
    pub processes: bool,
    /// Host counters and sysctls.
    pub host: bool,
    /// cgroup CPU throttling of socket owners (needs `processes` and `host`).
    pub cgroups: bool,
    /// eBPF trace histograms (netblame-trace: root and BTF; off by default).
    pub trace: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            sockets: true,
            processes: true,
            host: true,
            cgroups: true,
            trace: false,
        }
    }
}

/// Label limits: how many values a bounded label may take before the rest collapse into
/// `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Processes/containers named in the per-process series.
    pub top_processes: usize,
    /// Network devices named in the device and qdisc series.
    pub top_devices: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            top_processes: 10,
            top_devices: 16,
        }
    }
}

/// One probe target.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// As written in the file: the `target` label.
    pub target: String,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    interval: Option<toml::Spanned<String>>,
    #[serde(default)]
    sources: Option<Sources>,
    #[serde(default)]
    limits: Option<toml::Spanned<Limits>>,
    #[serde(default)]
    path: Option<toml::Spanned<RawPath>>,
    #[serde(default)]
    probe: Vec<toml::Spanned<RawProbe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    rate: String,
    rtt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    target: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(15),
            sources: Sources::default(),
            limits: Limits::default(),
            path: None,
            probes: Vec::new(),
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `name` names the file in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let err = |span: std::ops::Range<usize>, reason: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError::Invalid {
                path: name.to_string(),
                line,
                column,
                reason,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            err(span, e.message().trim().to_string())
        })?;
        let mut c = Config::default();
        if let Some(i) = raw.interval {
            let d = parse_duration(i.get_ref()).map_err(|e| err(i.span(), e.to_string()))?;
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
                return Err(err(
                    i.span(),
                    format!("interval must be between 1s and 1h (got {})", i.get_ref()),
                ));
            }
            c.interval = d;
        }
        if let Some(s) = raw.sources {
            c.sources = s;
        }
        if let Some(l) = raw.limits {
            let v = *l.get_ref();
            for (name, n) in [
                ("top_processes", v.top_processes),
                ("top_devices", v.top_devices),
            ] {
                if n > MAX_TOP {
                    return Err(err(
                        l.span(),
                        format!("limits.{name} must be at most {MAX_TOP} (got {n}): each value is a series"),
                    ));
                }
            }
            c.limits = v;
        }
        if let Some(p) = raw.path {
            let rate: BitRate =
                p.get_ref()
                    .rate
                    .parse()
                    .map_err(|e: netblame_core::units::UnitError| {
                        err(p.span(), format!("path.rate: {e}"))
                    })?;
            let rtt = parse_duration(&p.get_ref().rtt)
                .map_err(|e| err(p.span(), format!("path.rtt: {e}")))?;
            if rtt.is_zero() || rate.bits_per_second() <= 0.0 {
                return Err(err(
                    p.span(),
                    "path.rate and path.rtt must be above zero".into(),
                ));
            }
            c.path = Some((rate, rtt));
        }
        if raw.probe.len() > MAX_PROBES {
            return Err(err(
                raw.probe[MAX_PROBES].span(),
                format!("at most {MAX_PROBES} probe targets (each is a histogram series set)"),
            ));
        }
        for p in &raw.probe {
            let span = p.span();
            let r = p.get_ref();
            let kind = match r.kind.as_deref().unwrap_or("tcp") {
                "tcp" => ProbeKind::Tcp,
                "rr" => ProbeKind::Rr,
                "http" => ProbeKind::Http,
                "udp" => ProbeKind::Udp,
                "icmp" => ProbeKind::Icmp,
                other => {
                    return Err(err(
                        span,
                        format!("probe kind '{other}' is not one of tcp, rr, http, udp, icmp"),
                    ))
                }
            };
            let dur = |v: &Option<String>, default: Duration, what: &str| match v {
                None => Ok(default),
                Some(s) => parse_duration(s)
                    .map_err(|e| err(span.clone(), format!("probe {what}: {e}")))
                    .and_then(|d| {
                        if d < Duration::from_millis(10) {
                            Err(err(
                                span.clone(),
                                format!("probe {what} must be at least 10ms (got {s})"),
                            ))
                        } else {
                            Ok(d)
                        }
                    }),
            };
            let interval = dur(&r.interval, Duration::from_secs(1), "interval")?;
            let timeout = dur(&r.timeout, Duration::from_secs(2), "timeout")?;
            // Resolve now so a typo is refused at start, not discovered at the first round.
            netblame_probe::Target::parse(&r.target, kind)
                .map_err(|e| err(span.clone(), format!("probe target: {e}")))?;
            if c.probes
                .iter()
                .any(|q| q.target == r.target && q.kind == kind)
            {
                return Err(err(
                    span,
                    format!("probe target '{}' ({kind}) is listed twice", r.target),
                ));
            }
            c.probes.push(Probe {
                target: r.target.clone(),
                kind,
                interval,
                timeout,
            });
        }
        Ok(c)
    }

    /// The most series one exposition can hold with this configuration (docs/metrics.md shows
    /// the sum).
    pub fn series_ceiling(&self) -> usize {
        crate::metrics::series_ceiling(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> (usize, String) {
        match Config::parse(text, "t.toml") {
            Err(ConfigError::Invalid { line, reason, .. }) => (line, reason),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_a_full_file() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
        let c = Config::parse(
            "interval = \"2s\"\n[sources]\ncgroups = false\n[limits]\ntop_processes = 3\n\
             [path]\nrate = \"1g\"\nrtt = \"10ms\"\n[[probe]]\ntarget = \"127.0.0.1:9\"\n\
             interval = \"100ms\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert!(!c.sources.cgroups && c.sources.sockets);
        assert_eq!(c.limits.top_processes, 3);
        assert_eq!(c.limits.top_devices, 16);
        assert_eq!(c.probes.len(), 1);
        assert_eq!(c.probes[0].kind, ProbeKind::Tcp);
        assert_eq!(c.path.unwrap().1, Duration::from_millis(10));
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let (line, reason) = invalid("\n\ninterval = \"15\"\n");
        assert_eq!(line, 3);
        assert!(reason.contains("unit"), "{reason}");
        let (line, reason) = invalid("interval = \"5s\"\n[sources]\nsockest = true\n");
        assert_eq!(line, 3);
        assert!(reason.contains("sockest"), "{reason}");
        let (line, reason) = invalid("interval = \"0s\"\n");
        assert_eq!(line, 1);
        assert!(reason.contains("between"), "{reason}");
        let (line, reason) = invalid("[[probe]]\ntarget = \"127.0.0.1:1\"\nkind = \"tcp\"\n[[probe]]\ntarget = \"127.0.0.1:1\"\nkind = \"smtp\"\n");
        assert_eq!(line, 4, "{reason}");
        assert!(reason.contains("smtp"), "{reason}");
        let (line, reason) = invalid("\n[limits]\ntop_processes = 100000\n");
        assert!(line >= 2, "{line}");
        assert!(reason.contains("at most"), "{reason}");
        let (_, reason) = invalid("interval = [\n");
        assert!(!reason.is_empty());
    }
}
