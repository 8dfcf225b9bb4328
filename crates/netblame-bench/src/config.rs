//! Test settings: the iperf3 parameter set (what travels in PARAM_EXCHANGE) and the client's
//! local options. netblame's extras ride under the `netblame` key, which iperf3 ignores.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
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

/// [`TestParams`] as JSON: iperf3's parameter object (PARAM_EXCHANGE), with netblame's extras
/// under `netblame`. Flags that are off are absent, as iperf3 writes them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ParamsJson {
    /// Always true: TCP.
    pub tcp: bool,
    /// Seconds omitted from the start (`-O`).
    pub omit: u64,
    /// Seconds to transmit (`-t`); 0 when `num` decides.
    pub time: u64,
    /// Bytes to transmit (`-n`); 0 when `time` decides.
    pub num: u64,
    /// Blocks to transmit (always 0: `-k` is not supported).
    pub blockcount: u64,
    /// Streams per direction (`-P`).
    pub parallel: usize,
    /// The server sends (`-R`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse: Option<bool>,
    /// Both directions (`--bidir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bidirectional: Option<bool>,
    /// `-w`: SO_SNDBUF and SO_RCVBUF of every data socket of both ends, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// Block size per write/read, bytes (`-l`).
    pub len: usize,
    /// `-b`: target rate of each sending stream, bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
    /// `--fq-rate`: SO_MAX_PACING_RATE of each sending stream, bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqrate: Option<u64>,
    /// iperf3's pacing timer, microseconds (always 1000).
    pub pacing_timer: u64,
    /// `-M`: TCP_MAXSEG, bytes.
    #[serde(rename = "MSS", skip_serializing_if = "Option::is_none")]
    pub mss: Option<u32>,
    /// `-N`: TCP_NODELAY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodelay: Option<bool>,
    /// `-C`: congestion control algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub congestion: Option<String>,
    /// 1 when the client wants the server's output (`--get-server-output`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub get_server_output: Option<u8>,
    /// `-Z`: sendfile on the sending side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zerocopy: Option<bool>,
    /// `--skip-rx-copy`: MSG_TRUNC on the receiving side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_rx_copy: Option<bool>,
    /// The iperf3 version whose protocol the client speaks.
    pub client_version: String,
    /// netblame's extension (iperf3 ignores it; its presence says the peer is netblame).
    pub netblame: ParamsExtension,
}

/// netblame's keys in the parameter JSON.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ParamsExtension {
    /// netblame's version.
    pub version: String,
    /// `--rcvbuf`: SO_RCVBUF on the receiving side only, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcvbuf_bytes: Option<u64>,
    /// `--sndbuf`: SO_SNDBUF on the sending side only, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sndbuf_bytes: Option<u64>,
    /// The sampling interval the server should use, milliseconds.
    pub interval_ms: u64,
}

impl Serialize for TestParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }
}

impl JsonSchema for TestParams {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        ParamsJson::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        ParamsJson::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        ParamsJson::json_schema(generator)
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
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The parameters as they travel in PARAM_EXCHANGE.
    pub fn wire(&self) -> ParamsJson {
        ParamsJson {
            tcp: true,
            omit: self.omit_s,
            time: if self.bytes > 0 { 0 } else { self.time_s },
            num: self.bytes,
            blockcount: 0,
            parallel: self.parallel,
            reverse: self.reverse.then_some(true),
            bidirectional: self.bidir.then_some(true),
            window: self.window,
            len: self.len,
            bandwidth: (self.bandwidth > 0).then_some(self.bandwidth),
            fqrate: (self.fqrate > 0).then_some(self.fqrate),
            pacing_timer: 1000,
            mss: self.mss,
            nodelay: self.nodelay.then_some(true),
            congestion: self.congestion.clone(),
            get_server_output: self.get_server_output.then_some(1),
            zerocopy: self.zerocopy.then_some(true),
            skip_rx_copy: self.skip_rx_copy.then_some(true),
            client_version: "3.12".into(),
            netblame: ParamsExtension {
                version: env!("CARGO_PKG_VERSION").into(),
                rcvbuf_bytes: self.rcvbuf,
                sndbuf_bytes: self.sndbuf,
                interval_ms: self.interval_ms,
            },
        }
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
    use serde_json::json;

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
    fn the_wire_form_is_iperf3s_parameter_object() {
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            TestParams::default().to_json(),
            json!({"tcp": true, "omit": 0, "time": 10, "num": 0, "blockcount": 0, "parallel": 1,
                "len": DEFAULT_LEN, "pacing_timer": 1000, "client_version": "3.12",
                "netblame": {"version": v, "interval_ms": 1000}})
        );
        let all = TestParams {
            bytes: 5,
            reverse: true,
            bidir: true,
            window: Some(7),
            mss: Some(1400),
            nodelay: true,
            congestion: Some("bbr".into()),
            get_server_output: true,
            zerocopy: true,
            skip_rx_copy: true,
            rcvbuf: Some(8),
            sndbuf: Some(9),
            bandwidth: 10,
            fqrate: 11,
            ..TestParams::default()
        };
        assert_eq!(
            all.to_json(),
            json!({"tcp": true, "omit": 0, "time": 0, "num": 5, "blockcount": 0, "parallel": 1,
                "reverse": true, "bidirectional": true, "window": 7, "len": DEFAULT_LEN,
                "bandwidth": 10, "fqrate": 11, "pacing_timer": 1000, "MSS": 1400,
                "nodelay": true, "congestion": "bbr", "get_server_output": 1, "zerocopy": true,
                "skip_rx_copy": true, "client_version": "3.12",
                "netblame": {"version": v, "rcvbuf_bytes": 8, "sndbuf_bytes": 9,
                    "interval_ms": 1000}})
        );
        assert_eq!(serde_json::to_value(&all).unwrap(), all.to_json());
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
