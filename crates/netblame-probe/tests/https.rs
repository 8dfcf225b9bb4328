//! http probes over TLS against a real rustls server started here, with a certificate made
//! here by rcgen (a CA and a server certificate it signs): `--insecure`, a CA file, the default
//! trust store refusing it, chunked bodies, redirects refused by name, and the wrong protocol on
//! either side named as such.

mod common;

use common::{config, probe};
use netblame_core::observe::latency::ProbeOutcome;
use netblame_probe::report::TargetRun;
use netblame_probe::{ProbeKind, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netblame test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// How the server answers.
#[derive(Clone, Copy)]
enum Speak {
    /// HTTP over TLS.
    Https,
    /// Plain HTTP: answers anything with `400 Bad Request`, like nginx on a plain port.
    PlainHttp,
}

/// A server on 127.0.0.1 answering by path: `/chunked` (a chunked body), `/redirect` (301),
/// anything else 200 with `hello`. Stopped and joined on drop.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(speak: Speak, pki: &Pki) -> Server {
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                #[allow(deprecated)]
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for s in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(s) = s else { continue };
                let tls = tls.clone();
                conns.push(std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    match speak {
                        Speak::Https => {
                            let conn = rustls::ServerConnection::new(tls).unwrap();
                            answer(rustls::StreamOwned::new(conn, s));
                        }
                        Speak::PlainHttp => {
                            let mut s = s;
                            let _ = s.read(&mut [0u8; 4096]);
                            let _ = s.write_all(
                                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                        }
                    }
                }));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Reads a request and answers it by its path.
fn answer(mut s: impl Read + Write) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let path = String::from_utf8_lossy(&req)
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let resp: &[u8] = match path.as_str() {
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "/redirect" => b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    };
    let _ = s.write_all(resp);
    let _ = s.flush();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(url: &str, count: u64, tls: TlsOptions) -> TargetRun {
    let mut cfg = config(
        ProbeKind::Http,
        &[url.to_string()],
        50,
        count,
        Duration::from_secs(3),
    );
    cfg.tls = tls;
    probe(cfg).remove(0)
}

fn insecure() -> TlsOptions {
    TlsOptions {
        insecure: true,
        cacert: None,
    }
}

fn errors(r: &TargetRun) -> Vec<String> {
    r.latency
        .samples
        .iter()
        .filter_map(|s| match &s.outcome {
            ProbeOutcome::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn insecure_times_every_phase_of_an_https_get() {
    let pki = pki();
    let s = Server::start(Speak::Https, &pki);
    let r = run(
        &format!("https://127.0.0.1:{}/", s.addr.port()),
        5,
        insecure(),
    );
    assert_eq!(r.latency.summary.received, 5, "{:?}", errors(&r));
    let http = r.http.as_ref().expect("an http section");
    let phases: Vec<&str> = http.phases.iter().map(|p| p.phase).collect();
    // An address: nothing to look up.
    assert_eq!(
        phases,
        ["connect", "tls", "first_byte", "transfer", "total"]
    );
    assert!(http
        .phases
        .iter()
        .all(|p| p.count == 5 && p.max_us > 0.0 || p.phase == "transfer"));
    assert_eq!(http.statuses.get(&200), Some(&5));
    assert_eq!(http.tls_version.as_deref(), Some("TLSv1.3"));
    assert!(http.cipher.is_some());
    for p in &http.probes {
        assert_eq!((p.status, p.body_bytes, p.chunked), (Some(200), 5, false));
        // The phases happen inside the probe's latency.
        let sum = p.phases.connect_us.unwrap()
            + p.phases.tls_us.unwrap()
            + p.phases.first_byte_us.unwrap();
        assert!(sum <= p.total_us.unwrap() + 1, "{p:?}");
    }
    // The cumulative times every kind reports are there too.
    assert!(r
        .latency
        .samples
        .iter()
        .all(|s| s.connect_us.is_some() && s.first_byte_us.is_some()));
}

#[test]
fn a_ca_file_verifies_the_server_and_the_name_is_looked_up() {
    let pki = pki();
    let s = Server::start(Speak::Https, &pki);
    let dir = TempDir::new("https-ca");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = format!("https://localhost:{}/", s.addr.port());
    let r = run(
        &url,
        3,
        TlsOptions {
            insecure: false,
            cacert: Some(ca.clone()),
        },
    );
    assert_eq!(r.latency.summary.received, 3, "{:?}", errors(&r));
    let http = r.http.unwrap();
    assert_eq!(http.phases[0].phase, "dns");
    assert_eq!(http.phases[0].count, 3);
    assert!(http.probes.iter().all(|p| p.phases.dns_us.is_some()));

    // Without the CA file the host's trust store does not know the test CA: a clear failure.
    let r = run(&url, 2, TlsOptions::default());
    assert_eq!(r.latency.summary.received, 0);
    let e = errors(&r);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("invalid peer certificate") && e[0].contains("--cacert"),
        "{e:?}"
    );

    // A CA file with no certificate in it is refused before any probe leaves.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut cfg = config(ProbeKind::Http, &[url], 50, 1, Duration::from_secs(1));
    cfg.tls.cacert = Some(empty);
    let err = netblame_probe::start(cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("--cacert") && err.contains("no PEM certificate"),
        "{err}"
    );
}

#[test]
fn chunked_bodies_are_read_to_the_end_and_redirects_are_refused_by_name() {
    let pki = pki();
    let s = Server::start(Speak::Https, &pki);
    let r = run(
        &format!("https://127.0.0.1:{}/chunked", s.addr.port()),
        2,
        insecure(),
    );
    assert_eq!(r.latency.summary.received, 2, "{:?}", errors(&r));
    let http = r.http.unwrap();
    assert!(http
        .probes
        .iter()
        .all(|p| p.chunked && p.body_bytes == 11 && p.status == Some(200)));

    let r = run(
        &format!("https://127.0.0.1:{}/redirect", s.addr.port()),
        2,
        insecure(),
    );
    assert_eq!(r.latency.summary.received, 0);
    let e = errors(&r);
    assert!(
        e.len() == 2 && e[0].contains("HTTP 301 redirect to https://elsewhere.example/"),
        "{e:?}"
    );
    assert_eq!(r.http.unwrap().statuses.get(&301), Some(&2));
}

#[test]
fn the_wrong_protocol_on_either_side_is_named() {
    let pki = pki();
    let plain = Server::start(Speak::PlainHttp, &pki);
    let r = run(
        &format!("https://127.0.0.1:{}/", plain.addr.port()),
        2,
        insecure(),
    );
    assert_eq!(r.latency.summary.received, 0);
    let e = errors(&r);
    assert!(
        e.len() == 2 && e[0].contains("plain HTTP, not TLS") && e[0].contains("http://"),
        "{e:?}"
    );
    // The handshake never finished: connect timed, no TLS time.
    let http = r.http.unwrap();
    assert!(http
        .probes
        .iter()
        .all(|p| p.phases.connect_us.is_some() && p.phases.tls_us.is_none()));

    let tls = Server::start(Speak::Https, &pki);
    let r = run(
        &format!("http://127.0.0.1:{}/", tls.addr.port()),
        1,
        TlsOptions::default(),
    );
    let e = errors(&r);
    assert!(e.len() == 1 && e[0].contains("use https://"), "{e:?}");
}
