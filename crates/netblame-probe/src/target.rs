//! Probe kinds and targets (`host:port`, `[v6]:port`, `http://host:port/path`,
//! `https://host:port/path`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// What a probe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// TCP connect per probe (optionally one request/response per connection, TCP_CRR).
    Tcp,
    /// Request/response on one kept TCP connection (TCP_RR).
    Rr,
    /// HTTP/1.1 GET per probe on a new connection (TLS for `https://` targets): name lookup,
    /// connect, TLS handshake, first byte and total, each timed.
    Http,
    /// UDP echo.
    Udp,
    /// ICMP echo (raw socket, or an unprivileged ping socket when ping_group_range allows).
    Icmp,
}

impl ProbeKind {
    /// Lower-case name, as on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Rr => "rr",
            ProbeKind::Http => "http",
            ProbeKind::Udp => "udp",
            ProbeKind::Icmp => "icmp",
        }
    }

    /// Every kind.
    pub const ALL: [ProbeKind; 5] = [
        ProbeKind::Tcp,
        ProbeKind::Rr,
        ProbeKind::Http,
        ProbeKind::Udp,
        ProbeKind::Icmp,
    ];
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProbeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProbeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown probe kind '{s}' (expected tcp, rr, http, udp or icmp)")
            })
    }
}

/// A resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it (the label in every output).
    pub label: String,
    /// Host part, for the HTTP `Host` header.
    pub host: String,
    pub addr: SocketAddr,
    /// HTTP path (`/` unless given).
    pub path: String,
    /// An `https://` target: the http probe speaks TLS.
    pub tls: bool,
}

impl Target {
    /// Parses and resolves `spec` for `kind`. A port is required except for `icmp` (ignored) and
    /// `http` (80, or 443 for `https://`).
    pub fn parse(spec: &str, kind: ProbeKind) -> Result<Target, String> {
        let mut rest = spec.trim();
        if rest.is_empty() {
            return Err("empty target".into());
        }
        let mut tls = false;
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            if kind != ProbeKind::Http {
                return Err(format!("'{spec}' is a URL: use --kind http for it"));
            }
            tls = lower.starts_with("https://");
            rest = &rest[if tls { 8 } else { 7 }..];
        } else if let Some((scheme, _)) = lower.split_once("://") {
            return Err(format!(
                "'{spec}': {scheme}:// is not a probe target (http:// and https:// are; other services: --kind tcp host:port)"
            ));
        }
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) =
            split_host_port(hostport).map_err(|e| format!("target '{spec}': {e}"))?;
        let port = match (port, kind) {
            (Some(p), _) => p,
            (None, ProbeKind::Icmp) => 0,
            (None, ProbeKind::Http) if tls => 443,
            (None, ProbeKind::Http) => 80,
            (None, _) => {
                return Err(format!(
                    "target '{spec}' needs a port (host:port) for --kind {kind}"
                ))
            }
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve '{host}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{host}' resolves to no address"))?;
        if kind == ProbeKind::Icmp && !addr.is_ipv4() {
            return Err(format!("target '{spec}': icmp probes support IPv4 only"));
        }
        Ok(Target {
            label: spec.to_string(),
            host,
            addr,
            path,
            tls,
        })
    }

    /// The HTTP `Host` header value: the host (bracketed when IPv6), with the port unless it is
    /// the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.addr.port() == default {
            host
        } else {
            format!("{host}:{}", self.addr.port())
        }
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .map_err(|_| format!("'{p}' is not a port number (1-65535)"))
    };
    if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']').ok_or("unclosed '[' in IPv6 address")?;
        let host = r[..end].to_string();
        let after = &r[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected '{after}' after the address")),
        };
        return Ok((host, port));
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address without a port.
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((h.to_string(), Some(parse_port(p)?))),
        Some(_) => Err("missing host".into()),
        None => Ok((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("127.0.0.1:8080", ProbeKind::Tcp).unwrap();
        assert_eq!(t.addr.port(), 8080);
        let t = Target::parse("http://127.0.0.1/x/y", ProbeKind::Http).unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/x/y"));
        let t = Target::parse("[::1]:9", ProbeKind::Udp).unwrap();
        assert!(t.addr.is_ipv6());
        assert!(Target::parse("127.0.0.1", ProbeKind::Rr)
            .unwrap_err()
            .contains("needs a port"));
        assert!(Target::parse("127.0.0.1:99999", ProbeKind::Rr).is_err());
        assert!(Target::parse("127.0.0.1", ProbeKind::Icmp).is_ok());
        let t = Target::parse("https://127.0.0.1/x", ProbeKind::Http).unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.addr.port(), t.host_header().as_str()),
            (443, "127.0.0.1")
        );
        let t = Target::parse("HTTPS://[::1]:8443", ProbeKind::Http).unwrap();
        assert_eq!(
            (t.path.as_str(), t.host_header().as_str()),
            ("/", "[::1]:8443")
        );
        assert!(Target::parse("https://127.0.0.1", ProbeKind::Tcp)
            .unwrap_err()
            .contains("--kind http"));
        assert!(Target::parse("ftp://127.0.0.1", ProbeKind::Http)
            .unwrap_err()
            .contains("not a probe target"));
        assert!("bogus".parse::<ProbeKind>().is_err());
    }
}
