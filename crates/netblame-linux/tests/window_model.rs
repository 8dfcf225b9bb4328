//! Ties the window model to the running kernel: real loopback sockets with and without
//! SO_RCVBUF=64k set before connect; the model must predict SO_RCVBUF and rcv_wscale of both.

use netblame_core::window::{model, SocketRequest};
use netblame_linux::{sockopt, sysctl};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// Connects to a fresh loopback listener, optionally setting SO_RCVBUF on the client before
/// connect. Returns the client socket.
fn connect(rcvbuf: Option<u64>) -> (Socket, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if let Some(v) = rcvbuf {
        sockopt::set_rcvbuf(&s, v).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    (s, listener)
}

fn check(rcvbuf: Option<u64>) {
    let kernel = sysctl::kernel_version().unwrap();
    let settings = sysctl::rcv_settings(&kernel);
    let (sock, _listener) = connect(rcvbuf);
    let info = sockopt::tcp_info(&sock).unwrap();
    let predicted = model(
        &kernel,
        &settings,
        &SocketRequest {
            so_rcvbuf: rcvbuf,
            mss: info.rcv_mss.max(536) as u64,
            measured_ratio: None,
        },
    );
    let actual_rcvbuf = sockopt::rcvbuf(&sock).unwrap();
    if rcvbuf.is_some() {
        assert_eq!(
            actual_rcvbuf, predicted.sk_rcvbuf_bytes,
            "sk_rcvbuf on {kernel}"
        );
    } else {
        // Autotuned: starts at tcp_rmem[1] (the kernel may have grown it already; never below).
        assert!(
            actual_rcvbuf >= predicted.sk_rcvbuf_bytes,
            "{actual_rcvbuf} < {}",
            predicted.sk_rcvbuf_bytes
        );
    }
    assert!(info.has_wscale() == settings.window_scaling);
    assert_eq!(
        info.rcv_wscale, predicted.rcv_wscale,
        "rcv_wscale on {kernel} with SO_RCVBUF {rcvbuf:?}"
    );
}

#[test]
fn so_rcvbuf_64k_matches_the_model() {
    check(Some(64 * 1024));
}

#[test]
fn autotuned_socket_matches_the_model() {
    check(None);
}

#[test]
fn the_two_cases_differ_as_the_model_says() {
    let kernel = sysctl::kernel_version().unwrap();
    let settings = sysctl::rcv_settings(&kernel);
    let (fixed, _l1) = connect(Some(64 * 1024));
    let (auto, _l2) = connect(None);
    let wf = sockopt::tcp_info(&fixed).unwrap().rcv_wscale;
    let wa = sockopt::tcp_info(&auto).unwrap().rcv_wscale;
    assert!(
        wf < wa,
        "SO_RCVBUF=64k should negotiate a smaller scale ({wf}) than autotuning ({wa})"
    );
    assert_eq!(
        wa,
        netblame_core::window::autotuned_wscale(&kernel, &settings)
    );
}
