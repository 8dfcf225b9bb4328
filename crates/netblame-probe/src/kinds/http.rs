//! `http`: one HTTP/1.1 GET per probe on a new connection, over TLS (rustls) for `https://`
//! targets, each probe on its own short-lived thread.
//!
//! Every phase is timed on its own: the name lookup (when the target is a name, done per probe
//! as curl does), the TCP connect, the TLS handshake, the wait from the request to the first
//! byte of the response, and the transfer of the rest. Redirects are not followed: a 3xx is a
//! failed probe that names where it points. Bodies are read to their end whatever their framing:
//! `Content-Length`, `Transfer-Encoding: chunked` (de-chunked with `httparse`), or the close.

use super::connect::{left, Stop};
use super::{describe, PerProbeThreads};
use crate::config::{ProbeConfig, TlsOptions};
use crate::state::{Ended, HttpTimes, ProbeResult, Prober, TargetState};
use crate::target::Target;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Largest response header accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What every probe of one target shares.
struct HttpTarget {
    /// Resolved when the target was parsed; used as is when the host is an address.
    addr: SocketAddr,
    host: String,
    /// The host is a name: look it up on every probe (timed as the `dns` phase).
    lookup: bool,
    request: Vec<u8>,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

pub(crate) struct HttpProber {
    target: Arc<HttpTarget>,
    state: Arc<TargetState>,
    threads: PerProbeThreads,
}

impl HttpProber {
    /// Prepares the request and, for `https://`, the TLS configuration (trust store read once).
    pub fn open(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> io::Result<Self> {
        let tls = if t.tls {
            let name = ServerName::try_from(t.host.clone()).map_err(|_| {
                io::Error::other(format!("'{}' is not a valid TLS server name", t.host))
            })?;
            Some((client_config(&cfg.tls)?, name))
        } else {
            None
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netblame-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            t.path,
            t.host_header(),
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        Ok(HttpProber {
            target: Arc::new(HttpTarget {
                addr: t.addr,
                host: t.host.clone(),
                lookup: t.host.parse::<IpAddr>().is_err(),
                request,
                tls,
            }),
            // A TLS handshake (certificate chain checks) wants more stack than a connect.
            threads: PerProbeThreads::new(state.clone(), 1024 * 1024),
            state,
        })
    }
}

impl Prober for HttpProber {
    fn fire(&mut self, seq: u64) {
        let job = Job {
            t: self.target.clone(),
            seq,
            state: self.state.clone(),
        };
        self.threads.spawn(seq, move || job.run());
    }

    fn finish(&mut self) {}
}

/// The client configuration for `opts`: the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
///
/// rustls 0.23.48 deprecates ring's provider because it lacks post-quantum key exchange
/// (X25519MLKEM768); aws-lc-rs has it but builds a large C library. The handshake is timed with
/// X25519 like most servers still prefer; switch to aws-lc-rs when post-quantum handshakes matter.
fn client_config(opts: &TlsOptions) -> io::Result<Arc<ClientConfig>> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS set-up: {e}")))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &opts.cacert {
            Some(path) => Arc::new(ca_file(path)?),
            None => system_roots(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates of a PEM file (`--cacert`), alone.
fn ca_file(path: &std::path::Path) -> io::Result<RootCertStore> {
    let bad = |e: String| io::Error::other(format!("--cacert {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(format!(
            "none of its {ignored} certificates can be used as a trust anchor"
        )));
    }
    Ok(store)
}

/// This host's trust store (`rustls-native-certs`), or the bundled Mozilla roots
/// (`webpki-roots`) when it has none; read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(store)
        })
        .clone()
}

/// `--insecure`: accepts any certificate, but still checks the handshake's signatures so the
/// handshake does the same work as a verified one.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connection a response is read from.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The socket during the TLS handshake, keeping the first bytes the server sent so a failed
/// handshake can say what the server spoke instead.
struct Recorder<'a> {
    sock: &'a mut TcpStream,
    seen: Vec<u8>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        let room = 16usize.saturating_sub(self.seen.len()).min(n);
        self.seen.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Write for Recorder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// What a failed TLS handshake means, in words.
fn tls_failure(e: io::Error, seen: &[u8]) -> Stop {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return Stop::Timeout;
    }
    // A status line, or a bare HTML page (what an HTTP/0.9-style answer to a request it could
    // not parse looks like, e.g. Python's http.server).
    let text = String::from_utf8_lossy(seen).to_ascii_lowercase();
    if text.starts_with("http/") || text.starts_with("<!doctype") || text.starts_with("<html") {
        return Stop::Failed(
            "the server answered in plain HTTP, not TLS: use http:// for this target".into(),
        );
    }
    // A TLS record starts with a content type of 20 to 24.
    if let Some(&b) = seen.first() {
        if !(20..=24).contains(&b) {
            return Stop::Failed(format!(
                "the server does not speak TLS on this port (it sent {:?})",
                String::from_utf8_lossy(seen)
            ));
        }
    }
    if let Some(te) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Stop::Failed(match te {
            rustls::Error::InvalidCertificate(_) if te.to_string().contains("CaUsedAsEndEntity") => {
                "TLS: the server's certificate is a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes by default), which WebPKI refuses as a server certificate: reissue it with CA:FALSE, or use --insecure".to_string()
            }
            rustls::Error::InvalidCertificate(_) => format!(
                "TLS: {te} (trust its CA with --cacert FILE, or skip verification with --insecure)"
            ),
            _ => format!("TLS handshake failed: {te}"),
        });
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Stop::Failed(
            "closed during the TLS handshake (does the server speak TLS on this port?)".into(),
        ),
        _ => Stop::Failed(format!("TLS handshake failed: {}", describe(&e))),
    }
}

fn tls_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "TLS (other)",
    }
}

struct Job {
    t: Arc<HttpTarget>,
    seq: u64,
    state: Arc<TargetState>,
}

impl Job {
    fn run(self) {
        let mut r = ProbeResult::failed(0, "");
        let mut times = HttpTimes::default();
        let ended = self.attempt(&mut r, &mut times);
        r.http = Some(times);
        match ended {
            Ok(e) => r.ended = e,
            // Unanswered within the timeout: a loss, kept with the phases it got through.
            Err(Stop::Timeout) => r.ended = Ended::TimedOut,
            Err(Stop::Failed(e)) => {
                r.ended = Ended::Failed(self.state.since_scheduled(self.seq), e)
            }
        }
        self.state.record(self.seq, r);
    }

    fn left(&self) -> Result<std::time::Duration, Stop> {
        left(&self.state, self.seq)
    }

    fn attempt(&self, r: &mut ProbeResult, times: &mut HttpTimes) -> Result<Ended, Stop> {
        let addr = if self.t.lookup {
            let t0 = Instant::now();
            let found = (self.t.host.as_str(), self.t.addr.port()).to_socket_addrs();
            times.dns = Some(t0.elapsed());
            found
                .map_err(|e| Stop::Failed(format!("name lookup of {} failed: {e}", self.t.host)))?
                .next()
                .ok_or_else(|| Stop::Failed(format!("{} resolves to no address", self.t.host)))?
        } else {
            self.t.addr
        };

        let t0 = Instant::now();
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nodelay(true)?;
        sock.connect_timeout(&SockAddr::from(addr), self.left()?)?;
        times.connect = Some(t0.elapsed());
        r.connect_ns = Some(self.state.since_scheduled(self.seq));
        r.total_rto = netblame_linux::sockopt::tcp_info(&sock)
            .ok()
            .and_then(|i| i.total_rto);
        let mut tcp: TcpStream = sock.into();

        let mut conn = match &self.t.tls {
            None => Conn::Plain(tcp),
            Some((config, name)) => {
                let t0 = Instant::now();
                let mut c = ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| Stop::Failed(format!("TLS set-up: {e}")))?;
                let mut rec = Recorder {
                    sock: &mut tcp,
                    seen: Vec::new(),
                };
                while c.is_handshaking() {
                    rec.sock.set_read_timeout(Some(self.left()?))?;
                    if let Err(e) = c.complete_io(&mut rec) {
                        return Err(tls_failure(e, &rec.seen));
                    }
                }
                times.tls = Some(t0.elapsed());
                times.tls_version = c.protocol_version().map(tls_version_name);
                times.cipher = c
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()));
                Conn::Tls(Box::new(StreamOwned::new(c, tcp)))
            }
        };

        conn.tcp().set_write_timeout(Some(self.left()?))?;
        conn.write_all(&self.t.request)?;
        conn.flush()?;
        let sent = Instant::now();

        let mut buf = vec![0u8; 16 * 1024];
        let mut head = Vec::new();
        let mut first: Option<Instant> = None;
        let mut body: Option<(Head, Body)> = None;
        loop {
            conn.tcp().set_read_timeout(Some(self.left()?))?;
            let n = match conn.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A TLS server that closes without close_notify (common): the end of the
                // stream; whether that is a truncation is decided below.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if n > 0 && first.is_none() {
                let now = Instant::now();
                first = Some(now);
                times.first_byte = Some(now - sent);
                r.first_byte_ns = Some(self.state.since_scheduled(self.seq));
            }
            if n == 0 {
                match &body {
                    None if head.is_empty() => {
                        return Err(Stop::Failed("closed without a response".into()))
                    }
                    None => {
                        return Err(Stop::Failed(
                            "truncated HTTP response (closed inside the header)".into(),
                        ))
                    }
                    Some((_, Body::UntilClose)) => break,
                    Some(_) => {
                        return Err(Stop::Failed(format!(
                            "truncated HTTP response: closed after {} body bytes",
                            times.body_bytes
                        )))
                    }
                }
            }
            let data = &buf[..n];
            match &mut body {
                Some((_, b)) => {
                    if b.feed(data, &mut times.body_bytes)? {
                        break;
                    }
                }
                None => {
                    head.extend_from_slice(data);
                    let Some((h, consumed)) = parse_head(&head)? else {
                        if head.len() > MAX_HEAD {
                            return Err(Stop::Failed("HTTP header larger than 64 KiB".into()));
                        }
                        continue;
                    };
                    times.status = Some(h.status);
                    times.chunked = matches!(h.body, Body::Chunked(_));
                    let mut b = h.body.clone();
                    let rest = head.split_off(consumed);
                    let done = b.feed(&rest, &mut times.body_bytes)?;
                    body = Some((h, b));
                    if done {
                        break;
                    }
                }
            }
        }
        times.transfer = first.map(|f| f.elapsed());
        let total = self.state.since_scheduled(self.seq);
        let Some((h, _)) = body else {
            return Err(Stop::Failed("closed without a response".into()));
        };
        Ok(match h.status {
            300..=399 if h.status != 304 => Ended::Failed(
                total,
                format!(
                    "HTTP {} redirect to {}: redirects are not followed (probe that URL instead)",
                    h.status,
                    h.location.as_deref().unwrap_or("(no Location)")
                ),
            ),
            500.. => Ended::Failed(total, format!("HTTP {}", h.status)),
            _ => Ended::Reply(total),
        })
    }
}

/// A parsed response header.
#[derive(Debug, Clone)]
struct Head {
    status: u16,
    location: Option<String>,
    body: Body,
}

/// How the body of a response ends.
#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body ends when the server closes.
    UntilClose,
}

impl Body {
    /// Takes in body bytes; true when the body is complete (bytes past its end are ignored).
    fn feed(&mut self, data: &[u8], counted: &mut u64) -> Result<bool, Stop> {
        match self {
            Body::Length(left) => {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                *counted += take;
                Ok(*left == 0)
            }
            Body::Chunked(c) => c.feed(data, counted),
            Body::UntilClose => {
                *counted += data.len() as u64;
                Ok(false)
            }
        }
    }
}

/// Parses a response header from the start of `buf`: `None` until it is complete, then the
/// header and its length. Interim responses (1xx other than 101) are skipped.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Stop> {
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&buf[offset..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(Stop::Failed(format!(
                    "not an HTTP response ({e}): does the target speak HTTP{}?",
                    if buf[offset..]
                        .first()
                        .is_some_and(|&b| (20..=24).contains(&b))
                    {
                        "; it answered in TLS: use https://"
                    } else {
                        ""
                    }
                )))
            }
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            offset += len;
            continue;
        }
        let get = |name: &str| {
            resp.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                .collect::<Vec<_>>()
        };
        let encodings = get("transfer-encoding").join(",");
        let chunked = encodings
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        let body = if status == 204 || status == 304 || (100..200).contains(&status) {
            Body::Length(0)
        } else if chunked {
            Body::Chunked(Chunked::default())
        } else if !encodings.is_empty() {
            // A transfer coding other than chunked last: delimited by the close (RFC 9112 6.3).
            Body::UntilClose
        } else if let Some(l) = get("content-length").first() {
            Body::Length(l.parse().map_err(|_| {
                Stop::Failed(format!("bad Content-Length '{l}' in the HTTP response"))
            })?)
        } else {
            Body::UntilClose
        };
        return Ok(Some((
            Head {
                status,
                location: get("location").into_iter().next(),
                body,
            },
            offset + len,
        )));
    }
}

/// A `Transfer-Encoding: chunked` decoder that only counts: chunk sizes by `httparse`, data
/// skipped, trailers read to the empty line.
#[derive(Debug, Clone, Default, PartialEq)]
struct Chunked {
    state: ChunkState,
    /// Bytes not consumed yet (a partial size or trailer line).
    pending: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

impl Chunked {
    fn feed(&mut self, data: &[u8], counted: &mut u64) -> Result<bool, Stop> {
        let bad = |what: &str| Stop::Failed(format!("malformed chunked HTTP body: {what}"));
        self.pending.extend_from_slice(data);
        let buf = std::mem::take(&mut self.pending);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() > 1024 => {
                        return Err(bad("chunk-size line longer than 1 KiB"))
                    }
                    Ok(httparse::Status::Partial) => break,
                    Err(_) => return Err(bad("invalid chunk size")),
                },
                ChunkState::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    pos += take as usize;
                    *counted += take;
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        break;
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => match rest.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        pos += 2;
                        self.state = ChunkState::Done;
                    }
                    Some(i) => pos += i + 2,
                    None if rest.len() > MAX_HEAD => return Err(bad("trailers too long")),
                    None => break,
                },
                ChunkState::Done => break,
            }
        }
        self.pending = buf[pos..].to_vec();
        Ok(self.state == ChunkState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(r: Result<impl std::fmt::Debug, Stop>) -> String {
        match r {
            Err(Stop::Failed(e)) => e,
            Err(Stop::Timeout) => "timeout".into(),
            Ok(v) => panic!("expected a failure, got {v:?}"),
        }
    }

    #[test]
    fn heads_and_framing() {
        let (h, n) = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap_or_else(|_| panic!())
            .unwrap();
        assert_eq!((h.status, n, h.body), (200, 38, Body::Length(5)));
        let (h, _) = parse_head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nLocation: /x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        )
        .unwrap_or_else(|_| panic!())
        .unwrap();
        assert_eq!(h.status, 301);
        assert_eq!(h.location.as_deref(), Some("/x"));
        assert!(matches!(h.body, Body::Chunked(_)));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-")
            .unwrap_or_else(|_| panic!())
            .is_none());
        assert!(failed(parse_head(b"\x15\x03\x03\x00\x02\x02\x46")).contains("https://"));
        assert!(
            failed(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"))
                .contains("Content-Length")
        );
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let mut n = 0;
            let first = c.feed(&body[..split], &mut n).unwrap_or_else(|_| panic!());
            assert!(!first, "done early at split {split}");
            assert!(c.feed(&body[split..], &mut n).unwrap_or_else(|_| panic!()));
            assert_eq!(n, 6);
        }
        let mut c = Chunked::default();
        assert!(failed(c.feed(b"zz\r\n", &mut 0)).contains("chunk size"));
        let mut c = Chunked::default();
        assert!(failed(c.feed(b"1\r\nabc", &mut 0)).contains("CRLF"));
    }
}
