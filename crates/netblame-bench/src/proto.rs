//! The iperf3 control protocol (see `shared/reference/iperf3-protocol.md`): a 37-byte cookie,
//! one signed byte per state change, and JSON framed by a 4-byte big-endian length.

use std::io::{self, Read, Write};

/// Cookie length on the wire: 36 characters from `[a-z2-7]` and a NUL.
pub const COOKIE_SIZE: usize = 37;
/// Largest parameter/result JSON accepted (iperf3 rejects parameters over 8 KiB; results carry
/// netblame's samples, so they get more room).
pub const MAX_PARAMS_JSON: usize = 8 * 1024;
/// Largest results JSON accepted.
pub const MAX_RESULTS_JSON: usize = 16 * 1024 * 1024;

/// Control states, one signed byte each (`src/iperf_api.h`).
pub mod state {
    pub const TEST_START: i8 = 1;
    pub const TEST_RUNNING: i8 = 2;
    pub const TEST_END: i8 = 4;
    pub const PARAM_EXCHANGE: i8 = 9;
    pub const CREATE_STREAMS: i8 = 10;
    pub const SERVER_TERMINATE: i8 = 11;
    pub const CLIENT_TERMINATE: i8 = 12;
    pub const EXCHANGE_RESULTS: i8 = 13;
    pub const DISPLAY_RESULTS: i8 = 14;
    pub const IPERF_START: i8 = 15;
    pub const IPERF_DONE: i8 = 16;
    pub const ACCESS_DENIED: i8 = -1;
    pub const SERVER_ERROR: i8 = -2;
}

/// Name of a state byte, for error messages.
pub fn state_name(s: i8) -> String {
    match s {
        state::TEST_START => "TEST_START".into(),
        state::TEST_RUNNING => "TEST_RUNNING".into(),
        state::TEST_END => "TEST_END".into(),
        state::PARAM_EXCHANGE => "PARAM_EXCHANGE".into(),
        state::CREATE_STREAMS => "CREATE_STREAMS".into(),
        state::SERVER_TERMINATE => "SERVER_TERMINATE".into(),
        state::CLIENT_TERMINATE => "CLIENT_TERMINATE".into(),
        state::EXCHANGE_RESULTS => "EXCHANGE_RESULTS".into(),
        state::DISPLAY_RESULTS => "DISPLAY_RESULTS".into(),
        state::IPERF_START => "IPERF_START".into(),
        state::IPERF_DONE => "IPERF_DONE".into(),
        state::ACCESS_DENIED => "ACCESS_DENIED".into(),
        state::SERVER_ERROR => "SERVER_ERROR".into(),
        other => format!("unknown state {other}"),
    }
}

/// Why a control exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("peer closed the control connection")]
    Closed,
    #[error("JSON message of {0} bytes exceeds the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("bad JSON from peer: {0}")]
    BadJson(String),
    #[error("unexpected state {got} (expected {expected})")]
    Unexpected { got: String, expected: String },
    #[error("the server is busy (ACCESS_DENIED)")]
    AccessDenied,
    #[error(
        "the server reported an error (i_errno {i_errno}, errno {errno}: {})",
        std::io::Error::from_raw_os_error(*errno)
    )]
    ServerError { i_errno: i32, errno: i32 },
    #[error("the peer terminated the test ({0})")]
    Terminated(String),
    #[error("{0}")]
    Other(String),
}

/// A fresh random cookie: 36 characters of `[a-z2-7]` then NUL.
pub fn make_cookie() -> [u8; COOKIE_SIZE] {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut raw = [0u8; 36];
    fill_random(&mut raw);
    let mut out = [0u8; COOKIE_SIZE];
    for (o, r) in out.iter_mut().zip(raw) {
        *o = ALPHABET[(r & 31) as usize];
    }
    out
}

fn fill_random(buf: &mut [u8]) {
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if ok.is_err() {
        // Fallback: time and address entropy; cookies only need to be unlikely to collide.
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (buf.as_ptr() as u64);
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// True when `c` looks like an iperf3 cookie (36 characters of `[a-z2-7]` then NUL).
pub fn is_cookie(c: &[u8]) -> bool {
    c.len() == COOKIE_SIZE
        && c[36] == 0
        && c[..36]
            .iter()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(b))
}

/// True when `c` can be the start of an iperf3 cookie.
pub fn is_cookie_prefix(c: &[u8]) -> bool {
    c.len() <= COOKIE_SIZE
        && c.iter().enumerate().all(|(i, b)| {
            if i == COOKIE_SIZE - 1 {
                *b == 0
            } else {
                b.is_ascii_lowercase() || (b'2'..=b'7').contains(b)
            }
        })
}

/// Writes one state byte.
pub fn write_state(w: &mut impl Write, s: i8) -> io::Result<()> {
    w.write_all(&[s as u8])
}

/// Reads one state byte; `Closed` on EOF. `SERVER_ERROR` is turned into its error (with the
/// two int32 that follow it), `ACCESS_DENIED` likewise.
pub fn read_state(r: &mut impl Read) -> Result<i8, ProtoError> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => Err(ProtoError::Closed),
        Ok(_) => {
            let s = b[0] as i8;
            match s {
                state::ACCESS_DENIED => Err(ProtoError::AccessDenied),
                state::SERVER_ERROR => {
                    let mut e = [0u8; 8];
                    let _ = r.read_exact(&mut e);
                    Err(ProtoError::ServerError {
                        i_errno: i32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                        errno: i32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                    })
                }
                _ => Ok(s),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ProtoError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Reads a state and checks it is `expected`.
pub fn expect_state(r: &mut impl Read, expected: i8) -> Result<(), ProtoError> {
    let got = read_state(r)?;
    if got == expected {
        Ok(())
    } else if got == state::SERVER_TERMINATE || got == state::CLIENT_TERMINATE {
        Err(ProtoError::Terminated(state_name(got)))
    } else {
        Err(ProtoError::Unexpected {
            got: state_name(got),
            expected: state_name(expected),
        })
    }
}

/// Writes `SERVER_ERROR` with iperf3's two big-endian int32 (i_errno, errno).
pub fn write_server_error(w: &mut impl Write, i_errno: i32, errno: i32) -> io::Result<()> {
    let mut b = vec![state::SERVER_ERROR as u8];
    b.extend_from_slice(&i_errno.to_be_bytes());
    b.extend_from_slice(&errno.to_be_bytes());
    w.write_all(&b)
}

/// Writes a JSON value framed by its 4-byte big-endian length.
pub fn write_json(w: &mut impl Write, v: &serde_json::Value) -> io::Result<()> {
    let text = serde_json::to_vec(v).map_err(io::Error::other)?;
    let mut b = Vec::with_capacity(text.len() + 4);
    b.extend_from_slice(&(text.len() as u32).to_be_bytes());
    b.extend_from_slice(&text);
    w.write_all(&b)
}

/// Reads one length-framed JSON value of at most `max` bytes. Tolerates a UTF-8 BOM, a trailing
/// NUL and trailing bytes after the first value (as cJSON does). An oversized length is refused
/// before anything is allocated.
pub fn read_json(r: &mut impl Read, max: usize) -> Result<serde_json::Value, ProtoError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(eof_as_closed)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ProtoError::TooLarge(len, max));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(eof_as_closed)?;
    parse_json_lenient(&buf)
}

/// Parses the first JSON value of `buf`, skipping a UTF-8 BOM and ignoring what follows.
pub fn parse_json_lenient(buf: &[u8]) -> Result<serde_json::Value, ProtoError> {
    let body = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
    let mut it = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    match it.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => {
            // Trailing garbage right after a complete value is fine; anything else is not.
            Err(ProtoError::BadJson(e.to_string()))
        }
        None => Err(ProtoError::BadJson("empty message".into())),
    }
}

fn eof_as_closed(e: io::Error) -> ProtoError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ProtoError::Closed
    } else {
        ProtoError::Io(e)
    }
}

/// iperf3's stream ids: 1, 3, 4, 5, ... (a compatibility quirk).
pub fn stream_id(index: usize) -> i64 {
    if index == 0 {
        1
    } else {
        index as i64 + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_iperf3_shaped() {
        let c = make_cookie();
        assert!(is_cookie(&c));
        assert_ne!(make_cookie(), c);
        assert!(!is_cookie(b"GET / HTTP/1.1\r\n\r\n...................."));
    }

    #[test]
    fn json_framing_round_trips_and_is_lenient() {
        let mut buf = Vec::new();
        write_json(&mut buf, &serde_json::json!({"time": 2})).unwrap();
        assert_eq!(&buf[..4], &(10u32).to_be_bytes());
        let v = read_json(&mut buf.as_slice(), 100).unwrap();
        assert_eq!(v["time"], 2);
        let v = parse_json_lenient(b"\xEF\xBB\xBF{\"a\":1}\0junk").unwrap();
        assert_eq!(v["a"], 1);
        let mut big = Vec::new();
        big.extend_from_slice(&(1u32 << 30).to_be_bytes());
        assert!(matches!(
            read_json(&mut big.as_slice(), MAX_PARAMS_JSON),
            Err(ProtoError::TooLarge(..))
        ));
    }

    #[test]
    fn server_error_carries_errnos() {
        let mut buf = Vec::new();
        write_server_error(&mut buf, 5, 111).unwrap();
        match read_state(&mut buf.as_slice()) {
            Err(ProtoError::ServerError { i_errno, errno }) => {
                assert_eq!((i_errno, errno), (5, 111))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stream_id(0), 1);
        assert_eq!(stream_id(1), 3);
    }
}
