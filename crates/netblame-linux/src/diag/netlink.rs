//! The netlink side of a sock_diag dump: request, streamed receive, and decoding of one
//! `inet_diag_msg` with its attributes into a [`SocketSnapshot`].

use super::DiagError;
use netblame_core::observe::{SkMemInfo, SocketSnapshot, TcpInfo, TcpState};
use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, Parseable, NLMSG_DONE,
    NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{
    INET_DIAG_CONG, INET_DIAG_INFO, INET_DIAG_SHUTDOWN, INET_DIAG_SKMEMINFO, IPPROTO_TCP,
    SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use std::io;
use std::net::SocketAddr as IpSocketAddr;

/// `sizeof(struct inet_diag_msg)`.
const INET_DIAG_MSG_LEN: usize = 72;
/// Receive buffer per batch: the kernel fills up to about 32 KiB per dump reply.
const RECV_BUF: usize = 64 * 1024;
/// `TCPDIAG_GETSOCK`: the original inet_diag request. Its dumps cover IPv4 and IPv6 in one walk
/// of the kernel's socket tables (`sdiag_family = AF_UNSPEC`), where `SOCK_DIAG_BY_FAMILY`
/// needs one walk per family; `ss` uses it for the same reason. Replies carry this type.
const TCPDIAG_GETSOCK: u16 = 18;
/// `sizeof(struct inet_diag_req)`: family, src_len, dst_len, ext, a 48-byte socket id, states,
/// dbs.
const INET_DIAG_REQ_V1_LEN: usize = 60;

pub(super) struct DiagSocket {
    sock: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl DiagSocket {
    pub(super) fn open() -> Result<DiagSocket, DiagError> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(DiagError::Socket)?;
        sock.bind_auto().map_err(DiagError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(DiagError::Socket)?;
        Ok(DiagSocket {
            sock,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    fn send_request(&mut self, family: u8, states: u32) -> Result<u32, DiagError> {
        self.seq += 1;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        hdr.sequence_number = self.seq;
        let socket_id = if family == libc::AF_INET6 as u8 {
            SocketId::new_v6()
        } else {
            SocketId::new_v4()
        };
        let mut msg = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO
                    | ExtensionFlags::CONG
                    | ExtensionFlags::SKMEMINFO
                    | ExtensionFlags::SHUTDOWN,
                states: StateFlags::from_bits_retain(states),
                socket_id,
            })
            .into(),
        );
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock.send(&out, 0).map_err(DiagError::Socket)?;
        Ok(self.seq)
    }

    /// Sends a `TCPDIAG_GETSOCK` dump request for both families at once.
    fn send_request_both(&mut self, states: u32) -> Result<u32, DiagError> {
        self.seq += 1;
        let len = 16 + INET_DIAG_REQ_V1_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        let ext = ExtensionFlags::INFO
            | ExtensionFlags::CONG
            | ExtensionFlags::SKMEMINFO
            | ExtensionFlags::SHUTDOWN;
        // family (ignored by the dump: both), src_len, dst_len, ext.
        out.extend_from_slice(&[0, 0, 0, ext.bits()]);
        out.extend_from_slice(&[0u8; 48]); // socket id: any
        out.extend_from_slice(&states.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // dbs
        self.sock.send(&out, 0).map_err(DiagError::Socket)?;
        Ok(self.seq)
    }

    /// Dumps IPv4 and IPv6 in one walk (`TCPDIAG_GETSOCK`), calling `each` per socket; returns
    /// the count of undecodable messages. A kernel that refuses the request gives
    /// [`DiagError::Kernel`]: use [`DiagSocket::dump_family`] per family then.
    pub(super) fn dump_both(
        &mut self,
        states: u32,
        each: &mut impl FnMut(SocketSnapshot),
    ) -> Result<usize, DiagError> {
        let seq = self.send_request_both(states)?;
        self.receive(seq, each)
    }

    /// Dumps one family, calling `each` per socket; returns the count of undecodable messages.
    pub(super) fn dump_family(
        &mut self,
        family: u8,
        states: u32,
        each: &mut impl FnMut(SocketSnapshot),
    ) -> Result<usize, DiagError> {
        let seq = self.send_request(family, states)?;
        self.receive(seq, each)
    }

    /// Receives a dump's batches until `NLMSG_DONE`, decoding each socket as it arrives.
    fn receive(
        &mut self,
        seq: u32,
        each: &mut impl FnMut(SocketSnapshot),
    ) -> Result<usize, DiagError> {
        let mut undecodable = 0;
        loop {
            let n = {
                let mut slice = &mut self.buf[..];
                match self.sock.recv(&mut slice, 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(DiagError::Socket(e)),
                }
            };
            let mut off = 0;
            while off < n {
                let nl = NetlinkBuffer::new_checked(&self.buf[off..n])
                    .map_err(|e| DiagError::Decode(e.to_string()))?;
                let len = nl.length() as usize;
                if len == 0 {
                    break;
                }
                if nl.sequence_number() == seq {
                    match nl.message_type() {
                        NLMSG_DONE => return Ok(undecodable),
                        NLMSG_ERROR => {
                            let code = ErrorBuffer::new_checked(nl.payload())
                                .ok()
                                .and_then(|e| e.code())
                                .map(|c| -c.get())
                                .unwrap_or(0);
                            if code != 0 {
                                return Err(DiagError::Kernel(io::Error::from_raw_os_error(code)));
                            }
                        }
                        SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match decode(nl.payload()) {
                            Some(s) => each(s),
                            None => undecodable += 1,
                        },
                        _ => {}
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

/// Decodes one `inet_diag_msg` and its attributes; `None` when malformed.
pub(crate) fn decode(payload: &[u8]) -> Option<SocketSnapshot> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let h = InetResponseHeader::parse(&payload[..INET_DIAG_MSG_LEN]).ok()?;
    let state = TcpState::from_kernel(h.state)?;
    let id = &h.socket_id;
    let mut snap = SocketSnapshot {
        local: IpSocketAddr::new(id.source_address, id.source_port),
        peer: IpSocketAddr::new(id.destination_address, id.destination_port),
        state,
        inode: h.inode as u64,
        cookie: u64::from_ne_bytes(id.cookie),
        uid: h.uid,
        recv_q_bytes: h.recv_queue,
        send_q_bytes: h.send_queue,
        tcp_info: None,
        congestion: None,
        skmem: None,
        shutdown: None,
        owners: Vec::new(),
    };
    for nla in NlasIterator::new(&payload[INET_DIAG_MSG_LEN..]) {
        let Ok(nla) = nla else { break };
        let v = nla.value();
        match nla.kind() {
            INET_DIAG_INFO => snap.tcp_info = TcpInfo::parse(v).ok(),
            INET_DIAG_CONG => {
                let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                snap.congestion = Some(String::from_utf8_lossy(&v[..end]).into_owned());
            }
            INET_DIAG_SKMEMINFO => {
                let mut words = [0u32; 16];
                let n = (v.len() / 4).min(words.len());
                for (w, c) in words.iter_mut().zip(v.chunks_exact(4)) {
                    *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                }
                snap.skmem = SkMemInfo::from_array(&words[..n]);
            }
            INET_DIAG_SHUTDOWN => snap.shutdown = v.first().copied(),
            _ => {}
        }
    }
    Some(snap)
}
