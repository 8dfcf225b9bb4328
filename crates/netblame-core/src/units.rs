//! Units, iperf3 style: sizes are binary (`64k` = 65536), rates are decimal bits per
//! second (`10g` = 10^10 bit/s), durations carry their unit (`30ms`, `1.5s`).
//!
//! One rule for ambiguous input: a rate or a duration without a unit is refused
//! ([`UnitError::MissingUnit`], with an example), never guessed; sizes default to bytes.
//! [`parse_duration_default_secs`] is the one exception, for iperf3's own `-t 10`.
//!
//! Every type parses from and formats to text; `to_exact_string` round-trips exactly,
//! `Display` is for humans (rounded).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a unit string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value: expected a number with a unit, e.g. {example}")]
    Empty { example: &'static str },
    #[error("'{input}' is not a number followed by a unit (e.g. {example})")]
    NotANumber {
        input: String,
        example: &'static str,
    },
    #[error("'{input}' is negative: {what} must be zero or more")]
    Negative { input: String, what: &'static str },
    #[error("'{input}' has an unknown unit '{unit}' (accepted: {accepted})")]
    UnknownUnit {
        input: String,
        unit: String,
        accepted: &'static str,
    },
    #[error("'{input}' is too large")]
    Overflow { input: String },
    #[error("'{input}' has no unit: write e.g. {example}")]
    MissingUnit {
        input: String,
        example: &'static str,
    },
}

/// Splits "1.5Mbit" into (1.5, "mbit"); the number may use a decimal point.
fn split_number(
    input: &str,
    example: &'static str,
    what: &'static str,
) -> Result<(f64, String), UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::Empty { example });
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative {
            input: input.to_string(),
            what,
        });
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_' || c == ','))
        .unwrap_or(s.len());
    let digits: String = s[..end]
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let value: f64 = digits.parse().map_err(|_| UnitError::NotANumber {
        input: input.to_string(),
        example,
    })?;
    if !value.is_finite() {
        return Err(UnitError::Overflow {
            input: input.to_string(),
        });
    }
    Ok((value, s[end..].trim().to_ascii_lowercase()))
}

/// A size in bytes. Parses `65536`, `64k`, `64K`, `64KiB`, `1.5M`, `10MB` (binary multiples, as iperf3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

const SIZE_UNITS: &str = "b, k/KiB, m/MiB, g/GiB, t/TiB (binary multiples)";

impl Bytes {
    /// One kibibyte.
    pub const KIB: u64 = 1024;
    /// One mebibyte.
    pub const MIB: u64 = 1024 * 1024;
    /// One gibibyte.
    pub const GIB: u64 = 1024 * 1024 * 1024;

    /// The value in bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// A string that parses back to exactly this value: `64KiB` when a whole multiple, else bytes.
    pub fn to_exact_string(self) -> String {
        for (unit, mult) in [
            ("TiB", 1u64 << 40),
            ("GiB", Self::GIB),
            ("MiB", Self::MIB),
            ("KiB", Self::KIB),
        ] {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return format!("{}{}", self.0 / mult, unit);
            }
        }
        self.0.to_string()
    }
}

impl FromStr for Bytes {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(input, "64k or 4MiB", "a size")?;
        let mult: u64 = match unit.as_str() {
            "" | "b" | "byte" | "bytes" => 1,
            "k" | "kb" | "kib" => Self::KIB,
            "m" | "mb" | "mib" => Self::MIB,
            "g" | "gb" | "gib" => Self::GIB,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(UnitError::UnknownUnit {
                    input: input.to_string(),
                    unit,
                    accepted: SIZE_UNITS,
                })
            }
        };
        let total = value * mult as f64;
        if total >= u64::MAX as f64 {
            return Err(UnitError::Overflow {
                input: input.to_string(),
            });
        }
        Ok(Bytes(total.round() as u64))
    }
}

impl fmt::Display for Bytes {
    /// Human form: `64 KiB`, `1.50 MiB`, `512 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        for (unit, mult) in [
            ("TiB", (1u64 << 40) as f64),
            ("GiB", Self::GIB as f64),
            ("MiB", Self::MIB as f64),
            ("KiB", Self::KIB as f64),
        ] {
            if b >= mult {
                let v = b / mult;
                return if (v - v.round()).abs() < 1e-9 {
                    write!(f, "{} {}", v.round(), unit)
                } else {
                    write!(f, "{:.2} {}", v, unit)
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// A rate in bits per second (decimal multiples): `100mbit`, `10g`, `1.5gbps`, `800k`.
#[derive(
    Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct BitRate(pub f64);

const RATE_UNITS: &str =
    "bit/bps, k/kbit/kbps, m/mbit/mbps, g/gbit/gbps, t/tbit (decimal bits per second)";

impl BitRate {
    /// Bits per second.
    pub fn bits_per_second(self) -> f64 {
        self.0
    }

    /// Bytes per second.
    pub fn bytes_per_second(self) -> f64 {
        self.0 / 8.0
    }

    /// A string that parses back to exactly this value (plain bits per second).
    pub fn to_exact_string(self) -> String {
        format!("{}bit", self.0)
    }
}

impl FromStr for BitRate {
    type Err = UnitError;
    fn from_str(input: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(input, "100mbit or 10g", "a rate")?;
        let unit = unit.trim_end_matches("/s");
        let mult = match unit {
            // Is `100` bits, kbit or Mbit per second? A plan built on a guess is dangerous.
            "" => {
                return Err(UnitError::MissingUnit {
                    input: input.to_string(),
                    example: "100mbit or 10g",
                })
            }
            "b" | "bit" | "bits" | "bps" => 1.0,
            "k" | "kbit" | "kbits" | "kbps" | "kb" => 1e3,
            "m" | "mbit" | "mbits" | "mbps" | "mb" => 1e6,
            "g" | "gbit" | "gbits" | "gbps" | "gb" => 1e9,
            "t" | "tbit" | "tbits" | "tbps" | "tb" => 1e12,
            _ => {
                return Err(UnitError::UnknownUnit {
                    input: input.to_string(),
                    unit: unit.to_string(),
                    accepted: RATE_UNITS,
                })
            }
        };
        let v = value * mult;
        if !v.is_finite() || v > 1e18 {
            return Err(UnitError::Overflow {
                input: input.to_string(),
            });
        }
        Ok(BitRate(v))
    }
}

impl fmt::Display for BitRate {
    /// Human form: `17.48 Mbit/s`, `10.00 Gbit/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let (div, unit) = if v >= 1e12 {
            (1e12, "Tbit/s")
        } else if v >= 1e9 {
            (1e9, "Gbit/s")
        } else if v >= 1e6 {
            (1e6, "Mbit/s")
        } else if v >= 1e3 {
            (1e3, "kbit/s")
        } else {
            return write!(f, "{:.0} bit/s", v);
        };
        write!(f, "{:.2} {}", v / div, unit)
    }
}

const DURATION_UNITS: &str = "ns, us, ms, s, m/min, h";

/// Parses a duration with a unit: `250us`, `30ms`, `1.5s`, `2m`, `1h`. A bare number is an error
/// (is `30` seconds or milliseconds?); see [`parse_duration_default_secs`] for iperf3's `-t 10`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let (value, unit) = split_number(input, "30ms or 1.5s", "a duration")?;
    let ns_per_unit = match unit.as_str() {
        "" => {
            return Err(UnitError::MissingUnit {
                input: input.to_string(),
                example: "30ms or 1.5s",
            })
        }
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "sec" | "secs" => 1e9,
        "m" | "min" | "mins" => 60e9,
        "h" | "hr" | "hour" | "hours" => 3600e9,
        _ => {
            return Err(UnitError::UnknownUnit {
                input: input.to_string(),
                unit,
                accepted: DURATION_UNITS,
            })
        }
    };
    let ns = (value * ns_per_unit).round();
    if ns >= u64::MAX as f64 {
        return Err(UnitError::Overflow {
            input: input.to_string(),
        });
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Like [`parse_duration`], but a bare number means seconds (iperf3's `-t 10`, `-i 1`).
pub fn parse_duration_default_secs(input: &str) -> Result<Duration, UnitError> {
    match parse_duration(input) {
        Err(UnitError::MissingUnit { .. }) => {
            let (value, _) = split_number(input, "10 or 1.5s", "a duration")?;
            Duration::try_from_secs_f64(value).map_err(|_| UnitError::Overflow {
                input: input.to_string(),
            })
        }
        other => other,
    }
}

/// Human form of a duration: `137 ms`, `1.50 s`, `250 us`, `2 min 5 s`.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1.0 {
        format!("{} ns", d.as_nanos())
    } else if us < 1000.0 {
        trim_float(us, "us")
    } else if us < 1e6 {
        trim_float(us / 1e3, "ms")
    } else if us < 120e6 {
        trim_float(us / 1e6, "s")
    } else {
        let s = d.as_secs();
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A duration string that parses back to exactly the same value (nanoseconds when needed).
pub fn duration_exact_string(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1000) {
        format!("{}us", ns / 1000)
    } else {
        format!("{}ns", ns)
    }
}

fn trim_float(v: f64, unit: &str) -> String {
    if (v - v.round()).abs() < 0.005 {
        format!("{:.0} {}", v, unit)
    } else if v < 10.0 {
        format!("{:.2} {}", v, unit)
    } else {
        format!("{:.1} {}", v, unit)
    }
}

/// Thousands separators for byte counts in human output: 37500000 -> "37,500,000".
pub fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate as a short command-line argument that parses back exactly: `10g`, `100m`, `1500k`,
/// else bits per second.
pub fn rate_arg(bps: f64) -> String {
    for (mult, suffix) in [(1e12, "t"), (1e9, "g"), (1e6, "m"), (1e3, "k")] {
        let v = bps / mult;
        if v >= 1.0 && v.fract() == 0.0 {
            return format!("{v}{suffix}");
        }
    }
    BitRate(bps).to_exact_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_refused_for_rates_and_durations() {
        assert!(matches!(
            "100".parse::<BitRate>(),
            Err(UnitError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("30"),
            Err(UnitError::MissingUnit { .. })
        ));
        assert_eq!("100bit".parse::<BitRate>().unwrap(), BitRate(100.0));
    }
    use proptest::prelude::*;

    #[test]
    fn sizes_are_binary_like_iperf3() {
        assert_eq!("64k".parse::<Bytes>().unwrap(), Bytes(65536));
        assert_eq!("64K".parse::<Bytes>().unwrap(), Bytes(65536));
        assert_eq!("64KiB".parse::<Bytes>().unwrap(), Bytes(65536));
        assert_eq!("1.5M".parse::<Bytes>().unwrap(), Bytes(1_572_864));
        assert_eq!("10MiB".parse::<Bytes>().unwrap(), Bytes(10 * 1024 * 1024));
        assert_eq!("65535".parse::<Bytes>().unwrap(), Bytes(65535));
        assert_eq!(Bytes(65536).to_string(), "64 KiB");
    }

    #[test]
    fn rates_are_decimal_bits() {
        assert_eq!("10g".parse::<BitRate>().unwrap(), BitRate(1e10));
        assert_eq!("10gbit".parse::<BitRate>().unwrap(), BitRate(1e10));
        assert_eq!("100mbit".parse::<BitRate>().unwrap(), BitRate(1e8));
        assert_eq!("1.5Gbps".parse::<BitRate>().unwrap(), BitRate(1.5e9));
        assert_eq!(BitRate(17_476_266.0).to_string(), "17.48 Mbit/s");
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("30ms").unwrap(), Duration::from_millis(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(matches!(
            parse_duration("30"),
            Err(UnitError::MissingUnit { .. })
        ));
        assert_eq!(
            parse_duration_default_secs("10").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(format_duration(Duration::from_millis(137)), "137 ms");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(
            "12x".parse::<Bytes>(),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            "-5k".parse::<Bytes>(),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!("".parse::<Bytes>(), Err(UnitError::Empty { .. })));
        assert!(matches!(
            "k".parse::<Bytes>(),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            "99999999999T".parse::<Bytes>(),
            Err(UnitError::Overflow { .. })
        ));
        assert!("1e400".parse::<BitRate>().is_err());
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(parse_duration("1e30h").is_err());
        let msg = "12x".parse::<Bytes>().unwrap_err().to_string();
        assert!(msg.contains("unknown unit 'x'"), "{msg}");
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(37_500_000), "37,500,000");
        assert_eq!(group_thousands(999), "999");
    }

    proptest! {
        #[test]
        fn bytes_round_trip(n in 0u64..(1u64 << 50)) {
            let b = Bytes(n);
            prop_assert_eq!(b.to_exact_string().parse::<Bytes>().unwrap(), b);
            let human: Bytes = b.to_string().replace(' ', "").parse().unwrap();
            let err = (human.0 as f64 - n as f64).abs();
            prop_assert!(err <= (n as f64) * 0.005 + 0.5, "{} -> {}", n, human.0);
        }

        #[test]
        fn rate_round_trip(v in 0.0f64..1e14) {
            let r = BitRate(v);
            let back: BitRate = r.to_exact_string().parse().unwrap();
            prop_assert!((back.0 - v).abs() <= v * 1e-12);
            let human: BitRate = r.to_string().replace(' ', "").replace("/s", "").parse().unwrap();
            prop_assert!((human.0 - v).abs() <= v * 0.005 + 1.0);
        }

        #[test]
        fn duration_round_trip(ns in 0u64..(1u64 << 50)) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse_duration(&duration_exact_string(d)).unwrap(), d);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<Bytes>();
            let _ = s.parse::<BitRate>();
            let _ = parse_duration(&s);
        }
    }
}
