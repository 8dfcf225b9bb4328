//! Argument value parsers shared by every command, one per kind of value, built on
//! netblame-core's `units` parsers, and the usage-error type the binary exits 2 on.
//!
//! The rule for ambiguous input, the same in every command: a rate or a duration needs its
//! unit (`--rtt 30` is refused with "give a unit, e.g. 30ms"); sizes without a unit are bytes;
//! only iperf3's own flags (`-t`, `-i`) and counter windows (`--duration`) take bare seconds,
//! and iperf3's `-b` bare bits per second.
//! Zero, negative and absurd values are refused at parse time.

use netblame_core::units::{self, UnitError};
use netblame_core::{BitRate, Bytes};
use std::time::Duration;

/// The fastest rate accepted (10 Tbit/s): beyond any NIC, so a typo rather than a path.
pub const MAX_RATE_BPS: f64 = 1e13;
/// The longest round-trip time accepted: one minute (a geostationary hop is 0.6 s).
pub const MAX_RTT: Duration = Duration::from_secs(60);
/// The longest duration accepted anywhere (iperf3's own cap on `-t`: one day).
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// The largest socket buffer the kernel takes (SO_RCVBUF and SO_SNDBUF are C ints).
pub const MAX_SOCKET_BUFFER: u64 = i32::MAX as u64;
/// The largest size accepted for transfer sizes and windows (1 TiB).
pub const MAX_SIZE: u64 = 1 << 40;
/// TCP_MAXSEG range on Linux (`TCP_MIN_MSS` to `MAX_TCP_WINDOW` in net/ipv4/tcp.c).
pub const MSS_RANGE: std::ops::RangeInclusive<u32> = 88..=32_767;

/// A usage error found after parsing (a combination of values): the binary exits 2 with its
/// one line, as it does for errors clap finds.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

fn hint(s: &str, e: UnitError, unit: &str) -> String {
    match e {
        UnitError::MissingUnit { .. } => format!("give a unit, e.g. {}{unit}", s.trim()),
        e => e.to_string(),
    }
}

/// iperf3's `-b`: a target rate in decimal bits per second, the unit optional as in iperf3
/// (`100m`, `1g`, `100mbit`, `500000`); `0` means unlimited. iperf3's `/burst` suffix is refused.
pub fn bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.contains('/') && !t.ends_with("/s") {
        return Err(format!(
            "{t}: a burst (RATE/N) is not supported; give the rate alone, e.g. 100m"
        ));
    }
    if let Ok(v) = t.parse::<u64>() {
        if v as f64 > MAX_RATE_BPS {
            return Err(format!(
                "{s} is beyond any link (at most {})",
                BitRate(MAX_RATE_BPS)
            ));
        }
        return Ok(v);
    }
    Ok(rate(t)?.bits_per_second() as u64)
}

/// A path rate (`--rate`): decimal bits per second with a unit, more than zero.
pub fn rate(s: &str) -> Result<BitRate, String> {
    let r: BitRate = s.parse().map_err(|e| hint(s, e, "mbit"))?;
    if r.bits_per_second() <= 0.0 {
        return Err("the rate must be more than zero".into());
    }
    if r.bits_per_second() > MAX_RATE_BPS {
        return Err(format!(
            "{s} is beyond any link (at most {})",
            BitRate(MAX_RATE_BPS)
        ));
    }
    Ok(r)
}

fn bounded(s: &str, d: Duration, max: Duration, zero_ok: bool) -> Result<Duration, String> {
    if d.is_zero() && !zero_ok {
        return Err("must be more than zero".into());
    }
    if d > max {
        return Err(format!(
            "{s} is too long (at most {})",
            units::format_duration(max)
        ));
    }
    Ok(d)
}

/// A round-trip time (`--rtt`): a duration with a unit, more than zero, at most [`MAX_RTT`].
pub fn rtt(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| hint(s, e, "ms"))?;
    bounded(s, d, MAX_RTT, false)
}

/// A delay that may be zero (a lab's `--rtt`, `--jitter`), at most [`MAX_RTT`].
pub fn delay(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| hint(s, e, "ms"))?;
    bounded(s, d, MAX_RTT, true)
}

/// A duration with a unit (timeouts, intervals), more than zero, at most [`MAX_DURATION`].
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| hint(s, e, "s"))?;
    bounded(s, d, MAX_DURATION, false)
}

/// A window in seconds or with a unit (`--duration 5`, `--watch 2`, `5s`), more than zero.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration_default_secs(s).map_err(|e| e.to_string())?;
    bounded(s, d, MAX_DURATION, false)
}

/// iperf3's `-t`: whole seconds, 1 to 86400.
pub fn test_seconds(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number of seconds"))?;
    if v == 0 || v > MAX_DURATION.as_secs() {
        return Err(format!(
            "{v} s is out of range (1 to {} s, as iperf3)",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(v)
}

fn size_in(s: &str, max: u64, what: &str) -> Result<Bytes, String> {
    let b: Bytes = s.parse().map_err(|e: UnitError| e.to_string())?;
    if b.get() == 0 {
        return Err(format!("{what} must be more than zero"));
    }
    if b.get() > max {
        return Err(format!(
            "{s} is too large for {what} (at most {})",
            Bytes(max)
        ));
    }
    Ok(b)
}

/// A size (`-n`, `--size`, `--window`, `--queue`): binary multiples, more than zero.
pub fn size(s: &str) -> Result<Bytes, String> {
    size_in(s, MAX_SIZE, "a size")
}

/// A socket buffer request (`-w`, `--rcvbuf`, `--sndbuf`): more than zero, fits a C int.
pub fn socket_buffer(s: &str) -> Result<Bytes, String> {
    size_in(s, MAX_SOCKET_BUFFER, "a socket buffer")
}

/// A block size (`-l`): 1 byte to the 16 MiB a server accepts.
pub fn block_size(s: &str) -> Result<Bytes, String> {
    size_in(s, netblame_bench::config::MAX_LEN as u64, "a block")
}

/// A TCP maximum segment size (`-M`), in [`MSS_RANGE`].
pub fn mss(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an MSS in bytes"))?;
    if !MSS_RANGE.contains(&v) {
        return Err(format!(
            "the MSS (TCP_MAXSEG) must be {} to {} bytes, not {v}",
            MSS_RANGE.start(),
            MSS_RANGE.end()
        ));
    }
    Ok(v)
}

/// A count (`--count`, `-c`): a whole number, more than zero.
pub fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be more than zero".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// A port to connect to: 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to (1 to 65535)".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a port (1 to 65535)")),
    }
}

/// A percentage (`0.5%` or `0.5`), 0 to 100, returned as a fraction.
pub fn percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (e.g. 0.5%)"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("'{s}' is not between 0% and 100%"));
    }
    Ok(v / 100.0)
}

/// The largest file `--load` reads (a host snapshot or a probe interval log).
pub const MAX_LOAD_BYTES: u64 = 64 << 20;

/// Opens a `--load` file: a regular file (not a device or a pipe: `/dev/zero` never ends) of
/// at most [`MAX_LOAD_BYTES`].
fn open_loadable(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(usage(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > MAX_LOAD_BYTES {
        return Err(usage(format!(
            "{} is {}: more than the {} --load reads",
            path.display(),
            Bytes(meta.len()),
            Bytes(MAX_LOAD_BYTES)
        )));
    }
    Ok(f)
}

/// Reads a `--load` file whole, bounded as [`open_loadable`] says (even if it grows meanwhile).
pub fn read_loadable(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    open_loadable(path)?
        .take(MAX_LOAD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_LOAD_BYTES {
        return Err(usage(format!(
            "{} grew beyond {}",
            path.display(),
            Bytes(MAX_LOAD_BYTES)
        )));
    }
    Ok(text)
}

/// Checks a `--load` file that another crate reads by path.
pub fn check_loadable(path: &std::path::Path) -> anyhow::Result<()> {
    open_loadable(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_bitrates_take_bare_bits_and_zero() {
        assert_eq!(bitrate("100m"), Ok(100_000_000));
        assert_eq!(bitrate("1G"), Ok(1_000_000_000));
        assert_eq!(bitrate("500000"), Ok(500_000));
        assert_eq!(bitrate("0"), Ok(0));
        assert!(bitrate("100m/10").unwrap_err().contains("burst"));
        assert!(bitrate("99999999999999999").is_err());
        assert!(bitrate("fast").is_err());
    }

    #[test]
    fn bare_rates_and_rtts_are_refused_with_a_hint() {
        assert_eq!(rtt("30").unwrap_err(), "give a unit, e.g. 30ms");
        assert_eq!(rate("100").unwrap_err(), "give a unit, e.g. 100mbit");
        assert_eq!(rtt("30ms").unwrap(), Duration::from_millis(30));
    }

    #[test]
    fn zero_and_absurd_values_are_refused() {
        assert!(rate("0mbit").is_err());
        assert!(rtt("0ms").is_err());
        assert!(rtt("99999h").is_err());
        assert!(delay("0ms").is_ok());
        assert!(test_seconds("86401").is_err());
        assert!(test_seconds("0").is_err());
        assert!(size("0").is_err());
        assert!(mss("1").unwrap_err().contains("MSS"));
        assert!(count("0").is_err());
        assert!(port("0").is_err());
    }
}
