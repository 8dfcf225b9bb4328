//! The HTTP endpoints, on `tiny_http`: `GET /metrics` (OpenMetrics text when the client asks
//! for it, as Prometheus does; the classic Prometheus text format otherwise), `GET /findings`
//! (JSON), `GET /healthz`, and an index at `/`. A few worker threads share the listener; each
//! request only reads the last published scan, so a scrape never waits for a scan.

use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use tiny_http::{Header, Method, Response, Server};

/// Worker threads answering requests.
pub const WORKERS: usize = 4;

/// The OpenMetrics content type Prometheus negotiates.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read.
pub struct Endpoints {
    pub registry: Registry,
    /// The last scan's `/findings` document, serialized once per scan.
    pub findings: RwLock<Arc<String>>,
}

/// A running HTTP server.
pub struct Http {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header is valid")
}

impl Http {
    /// Binds `addr` and starts the workers.
    pub fn start(addr: SocketAddr, ep: Arc<Endpoints>) -> std::io::Result<Http> {
        let server = Server::http(addr).map_err(std::io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let server = Arc::new(server);
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let s = server.clone();
            let ep = ep.clone();
            workers.push(
                std::thread::Builder::new()
                    .name("serve-http".into())
                    .spawn(move || {
                        while let Ok(req) = s.recv() {
                            let _ = answer(req, &ep);
                        }
                    })?,
            );
        }
        Ok(Http {
            server,
            workers,
            addr,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the workers.
    pub fn stop(mut self) {
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn answer(req: tiny_http::Request, ep: &Endpoints) -> std::io::Result<()> {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    if !matches!(req.method(), Method::Get | Method::Head) {
        return req.respond(Response::from_string("only GET\n").with_status_code(405));
    }
    match path.as_str() {
        "/metrics" => {
            let body = crate::metrics::encode(&ep.registry);
            let openmetrics = req.headers().iter().any(|h| {
                h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
            });
            let (body, ty) = if openmetrics {
                (body, OPENMETRICS)
            } else {
                (
                    crate::metrics::to_prometheus_text(&body),
                    crate::metrics::PROMETHEUS_TEXT,
                )
            };
            req.respond(Response::from_string(body).with_header(header("Content-Type", ty)))
        }
        "/findings" => {
            let body = ep
                .findings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            req.respond(
                Response::from_string(body.as_str())
                    .with_header(header("Content-Type", "application/json")),
            )
        }
        "/healthz" => req.respond(Response::from_string("ok\n")),
        "/" => req.respond(
            Response::from_string(
                "<html><body><h1>netblame serve</h1><ul>\
                 <li><a href=\"/metrics\">/metrics</a> (OpenMetrics)</li>\
                 <li><a href=\"/findings\">/findings</a> (JSON)</li>\
                 <li><a href=\"/healthz\">/healthz</a></li></ul></body></html>\n",
            )
            .with_header(header("Content-Type", "text/html; charset=utf-8")),
        ),
        _ => req.respond(Response::from_string("not found\n").with_status_code(404)),
    }
}
