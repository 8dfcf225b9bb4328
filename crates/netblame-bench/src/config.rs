//! Test settings: the iperf3 parameter set (what travels in PARAM_EXCHANGE) and the client's
//! local options. netblame's extras ride under the `netblame` key, which iperf3 ignores.

use serde_json::{json, Map, Value};
use std::time::Duration;

/// Default block size for TCP (iperf3: 128 KiB).
pub const DEFAULT_LEN: usize = 128 * 1024;

/// The parameters both ends agree on (iperf3's parameter JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct TestParams {
    /// Seconds to transmit (`time`); 0 when `bytes` decides.
    pub time_s: u64,
    /// Bytes to transmit in total (`num`), 0 = by time.
    pub bytes: u64,
    /// Seconds omitted from the start (`omit`).
    pub omit_s: u64,
    /// Streams per direction (`parallel`).
    pub parallel: usize,
    /// Server sends (`reverse`).
    pub reverse: bool,
    /// Both directions (`bidirectional`).
    pub bidir: bool,
    /// `-w`: SO_SNDBUF and SO_RCVBUF on every data socket of both ends (`window`).
    pub window: Option<u64>,
    /// Block size (`len`).
    pub len: usize,
    /// TCP_MAXSEG (`MSS`).
    pub mss: Option<u32>,
    /// TCP_NODELAY (`nodelay`).
    pub nodelay: bool,
    /// Congestion control (`congestion`).
    pub congestion: Option<String>,
    /// Ask the server for its output (`get_server_output`).
    pub get_server_output: bool,
    /// sendfile on the sending side (`zerocopy`).
    pub zerocopy: bool,
    /// MSG_TRUNC on the receiving side (`skip_rx_copy`).
    pub skip_rx_copy: bool,
    /// netblame extension: SO_RCVBUF on the receiving side only.
    pub rcvbuf: Option<u64>,
    /// netblame extension: SO_SNDBUF on the sending side only.
    pub sndbuf: Option<u64>,
    /// netblame extension: sampling interval the server should use, milliseconds.
    pub interval_ms: u64,
    /// True when the peer announced itself as netblame (the extension key was present).
    pub peer_is_netblame: bool,
    /// `-b`: target bit rate of each sending stream, bits per second (`bandwidth`; 0 =
    /// unlimited). The sender keeps its average since the start at or below it, as iperf3
    /// does, and the kernel paces it (`SO_MAX_PACING_RATE` at 1.25 times the rate) so it
    /// leaves smoothly, not in line-rate bursts.
    pub bandwidth: u64,
    /// iperf3 `--fq-rate`: `SO_MAX_PACING_RATE` of each sending stream, bits per second
    /// (`fqrate`; 0 = none). Applied when a peer asks for it.
    pub fqrate: u64,
}

impl Default for TestParams {
    fn default() -> Self {
        TestParams {
            time_s: 10,
            bytes: 0,
            omit_s: 0,
            parallel: 1,
            reverse: false,
            bidir: false,
            window: None,
            len: DEFAULT_LEN,
            mss: None,
            nodelay: false,
            congestion: None,
            get_server_output: false,
            zerocopy: false,
            skip_rx_copy: false,
            rcvbuf: None,
            sndbuf: None,
            interval_ms: 1000,
            peer_is_netblame: false,
            bandwidth: 0,
            fqrate: 0,
        }
    }
}

/// Largest block size accepted from a peer (iperf3 caps TCP blocks at 1 MiB... we allow 16 MiB).
pub const MAX_LEN: usize = 16 << 20;
/// Longest test accepted (iperf3's MAX_TIME: one day).
pub const MAX_TIME_S: u64 = 86_400;
/// Most streams accepted per direction.
pub const MAX_PARALLEL: usize = 128;

impl TestParams {
    /// The parameter JSON iperf3 expects, plus the `netblame` extension key.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("tcp".into(), json!(true));
        m.insert("omit".into(), json!(self.omit_s));
        m.insert(
            "time".into(),
            json!(if self.bytes > 0 { 0 } else { self.time_s }),
        );
        m.insert("num".into(), json!(self.bytes));
        m.insert("blockcount".into(), json!(0));
        m.insert("parallel".into(), json!(self.parallel));
        if self.reverse {
            m.insert("reverse".into(), json!(true));
        }
        if self.bidir {
            m.insert("bidirectional".into(), json!(true));
        }
        if let Some(w) = self.window {
            m.insert("window".into(), json!(w));
        }
        m.insert("len".into(), json!(self.len));
        if self.bandwidth > 0 {
            m.insert("bandwidth".into(), json!(self.bandwidth));
        }
        if self.fqrate > 0 {
            m.insert("fqrate".into(), json!(self.fqrate));
        }
        m.insert("pacing_timer".into(), json!(1000));
        if let Some(mss) = self.mss {
            m.insert("MSS".into(), json!(mss));
        }
        if self.nodelay {
            m.insert("nodelay".into(), json!(true));
        }
        if let Some(c) = &self.congestion {
            m.insert("congestion".into(), json!(c));
        }
        if self.get_server_output {
            m.insert("get_server_output".into(), json!(1));
        }
        if self.zerocopy {
            m.insert("zerocopy".into(), json!(true));
        }
        if self.skip_rx_copy {
            m.insert("skip_rx_copy".into(), json!(true));
        }
        m.insert("client_version".into(), json!("3.12"));
        let mut ext = Map::new();
        ext.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        if let Some(v) = self.rcvbuf {
            ext.insert("rcvbuf_bytes".into(), json!(v));
        }
        if let Some(v) = self.sndbuf {
            ext.insert("sndbuf_bytes".into(), json!(v));
        }
        ext.insert("interval_ms".into(), json!(self.interval_ms));
        m.insert("netblame".into(), Value::Object(ext));
        Value::Object(m)
    }

    /// Reads a peer's parameter JSON; unknown keys are ignored, out-of-range values refused.
    pub fn from_json(v: &Value) -> Result<TestParams, String> {
        let obj = v.as_object().ok_or("parameters are not a JSON object")?;
        if obj.get("udp").is_some_and(truthy) || obj.get("sctp").is_some_and(truthy) {
            return Err("only TCP tests are supported".into());
        }
        let u = |k: &str| obj.get(k).and_then(as_u64);
        let b = |k: &str| obj.get(k).is_some_and(truthy);
        let mut p = TestParams {
            time_s: u("time").unwrap_or(0),
            bytes: u("num").unwrap_or(0),
            omit_s: u("omit").unwrap_or(0),
            parallel: u("parallel").unwrap_or(1) as usize,
            reverse: b("reverse"),
            bidir: b("bidirectional"),
            window: u("window").filter(|w| *w > 0),
            len: u("len").unwrap_or(DEFAULT_LEN as u64) as usize,
            mss: u("MSS").filter(|m| *m > 0).map(|m| m as u32),
            nodelay: b("nodelay"),
            congestion: obj
                .get("congestion")
                .and_then(Value::as_str)
                .map(str::to_string),
            get_server_output: b("get_server_output"),
            zerocopy: b("zerocopy"),
            skip_rx_copy: b("skip_rx_copy"),
            bandwidth: u("bandwidth").unwrap_or(0),
            fqrate: u("fqrate").unwrap_or(0),
            ..TestParams::default()
        };
        if let Some(ext) = obj.get("netblame").and_then(Value::as_object) {
            p.peer_is_netblame = true;
            p.rcvbuf = ext.get("rcvbuf_bytes").and_then(as_u64).filter(|v| *v > 0);
            p.sndbuf = ext.get("sndbuf_bytes").and_then(as_u64).filter(|v| *v > 0);
            if let Some(i) = ext.get("interval_ms").and_then(as_u64) {
                p.interval_ms = i.clamp(100, 60_000);
            }
        }
        if p.parallel == 0 || p.parallel > MAX_PARALLEL {
            return Err(format!(
                "parallel {} out of range 1..={MAX_PARALLEL}",
                p.parallel
            ));
        }
        if p.time_s > MAX_TIME_S || p.omit_s > MAX_TIME_S {
            return Err(format!("time {} s out of range 0..={MAX_TIME_S}", p.time_s));
        }
        if p.len == 0 || p.len > MAX_LEN {
            return Err(format!("len {} out of range 1..={MAX_LEN}", p.len));
        }
        if p.time_s == 0 && p.bytes == 0 {
            // iperf3 -k (block count) is not supported: treat as the default duration.
            p.time_s = 10;
        }
        Ok(p)
    }

    /// Streams the client opens: `parallel`, twice that with `--bidir`.
    pub fn total_streams(&self) -> usize {
        if self.bidir {
            2 * self.parallel
        } else {
            self.parallel
        }
    }

    /// Whether the client sends on its stream number `index` (creation order).
    pub fn client_sends(&self, index: usize) -> bool {
        if self.bidir {
            index < self.parallel
        } else {
            !self.reverse
        }
    }

    /// Total test time, omit included, when the test runs by time.
    pub fn duration(&self) -> Option<Duration> {
        (self.bytes == 0).then(|| Duration::from_secs(self.time_s + self.omit_s))
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Which address family to use (`-4`, `-6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// Whatever the name resolves to first (client); IPv6 and IPv4 on one socket (server).
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    /// True when `addr` is of this family.
    pub fn admits(self, addr: &std::net::SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// The client's settings: where to connect, the test parameters and local-only options.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    pub params: TestParams,
    /// Interval between samples and live lines.
    pub interval: Duration,
    /// The read timeout of the application being modelled (`--app-timeout`).
    pub app_timeout: Option<Duration>,
    /// Give up connecting / waiting for a silent server after this long.
    pub connect_timeout: Duration,
    /// `-4` / `-6`: which of the host's addresses to use.
    pub family: Family,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            host: "127.0.0.1".into(),
            port: 5201,
            params: TestParams::default(),
            interval: Duration::from_secs(1),
            app_timeout: None,
            connect_timeout: Duration::from_secs(10),
            family: Family::Any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_ignore_unknown_keys() {
        let p = TestParams {
            time_s: 3,
            parallel: 2,
            reverse: true,
            window: Some(65536),
            rcvbuf: Some(65536),
            bandwidth: 100_000_000,
            ..TestParams::default()
        };
        let mut j = p.to_json();
        assert_eq!(j["bandwidth"], json!(100_000_000u64));
        assert!(j.get("fqrate").is_none());
        j["some_future_key"] = json!({"x": 1});
        let q = TestParams::from_json(&j).unwrap();
        assert_eq!(q.time_s, 3);
        assert_eq!(q.parallel, 2);
        assert!(q.reverse && q.peer_is_netblame);
        assert_eq!(q.rcvbuf, Some(65536));
        assert_eq!(q.window, Some(65536));
        assert_eq!((q.bandwidth, q.fqrate), (100_000_000, 0));
    }

    #[test]
    fn refuses_udp_and_silly_values() {
        assert!(TestParams::from_json(&json!({"udp": true, "time": 1})).is_err());
        assert!(TestParams::from_json(&json!({"tcp": true, "parallel": 100000})).is_err());
        assert!(TestParams::from_json(&json!({"tcp": true, "time": 86401})).is_err());
        assert!(TestParams::from_json(&json!([1, 2])).is_err());
        let p = TestParams::from_json(&json!({"tcp": true, "time": 2})).unwrap();
        assert!(!p.peer_is_netblame);
        assert_eq!(p.len, DEFAULT_LEN);
    }
}
