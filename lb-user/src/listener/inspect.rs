//! Before the data plane: the client's first bytes under the frontend's rules (`tcp-request`,
//! PROXY header), the server's under the backend's `tcp-response` rules, and closing clients
//! lb has no server for.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::served::{LogAs, Served};

use crate::config::ProxyVersion;
use crate::conn_io;
use crate::dataplane::{sockopt, FlowEnd, Sock};
use crate::logging::tcplog::{Ending, Killer};
use crate::proxy_proto;
use crate::session::{self, Rejected, ResponseStep, Session, Step, Why};

/// How long, and how many bytes, a client lb has no server for may still send before lb
/// closes it anyway.
pub(super) const UNSERVED_DRAIN_TIME: Duration = Duration::from_secs(1);
pub(super) const UNSERVED_DRAIN_BYTES: usize = 256 * 1024;

/// Closes a client lb has no server for the way HAProxy does: a FIN, then what the client
/// sent (its request) and still sends is read and dropped until its own FIN. Closing with
/// unread bytes would make the kernel answer with a reset, and a reset can overtake the FIN
/// and whatever the client still had to read. Bounded by [`UNSERVED_DRAIN_TIME`] and
/// [`UNSERVED_DRAIN_BYTES`]; past them the close is what it is.
pub(super) async fn close_unserved(client: OwnedFd) {
    drain_unserved(&mut Sock::new(client)).await;
}

/// [`close_unserved`] for a client the connection holds.
pub(super) async fn drain_unserved(client: &mut Sock) {
    let _on_reactor = crate::ring::spin::OnReactor::enter();
    if sockopt::shutdown_write(client.fd()).is_err() {
        return;
    }
    let Ok(client) = client.reactor() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + UNSERVED_DRAIN_TIME;
    let mut drained = 0;
    while drained < UNSERVED_DRAIN_BYTES {
        let Ok(Ok(mut ready)) = tokio::time::timeout_at(deadline, client.readable()).await else {
            return;
        };
        match ready.try_io(|fd| sockopt::recv_discard(fd.get_ref().as_fd(), UNSERVED_DRAIN_BYTES)) {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => drained += n,
            Err(_would_block) => {}
        }
    }
}

/// The client's first bytes and what the rules decided on them.
pub(super) struct Decided {
    pub(super) client: Sock,
    pub(super) head: Vec<u8>,
    pub(super) route: session::Route,
}

/// Runs the connection's rules ([`Session`]) on its first bytes, reading them as the rules
/// ask: at most [`Session::read_limit`] bytes, until the rules' deadline, the client's FIN, or
/// `timeout client` of silence. `Err` is the connection's end (already closed) for the log.
pub(super) async fn decide(
    sess: &mut Session,
    mut client: Sock,
    idle_limit: Option<Duration>,
    served: &mut Served,
    connect_line: &dyn Fn(&SocketAddr, &SocketAddr),
) -> Result<Decided, ()> {
    let mut head = Vec::new();
    let mut eof = false;
    let mut last_read = Instant::now();
    // The clock as `feed` sees it: read again after every wait, not at the first step.
    let mut now = Some(last_read);
    let mut started = false;
    loop {
        let step = sess.feed(&head, eof, now.take().unwrap_or_else(Instant::now));
        if !started && sess.stream_started() {
            // HAProxy's stream (and its `Connect from` line) starts after the session rules.
            started = true;
            served.client = sess.src();
            connect_line(&sess.src(), &sess.dst());
        }
        served.bytes_in = (head.len() - sess.consumed().min(head.len())) as u64;
        match step {
            Step::Route(route) => {
                return Ok(Decided {
                    client,
                    head,
                    route,
                })
            }
            Step::Reject(r) => {
                reject(sess, client, r, served).await;
                return Err(());
            }
            Step::Wait { until } => {
                let idle = idle_limit.map(|t| last_read + t);
                let limit = sess.read_limit();
                let read = match client.reactor() {
                    Ok(fd) => conn_io::read_more(fd, &mut head, limit, until, idle).await,
                    Err(e) => conn_io::Read::Error(e),
                };
                match read {
                    conn_io::Read::Data => {
                        last_read = Instant::now();
                        now = Some(last_read);
                    }
                    conn_io::Read::Eof => eof = true,
                    conn_io::Read::Deadline | conn_io::Read::Full => {}
                    conn_io::Read::Idle => {
                        if sess.in_handshake() {
                            // `timeout client` bounds the PROXY header too: `feed` says so.
                            continue;
                        }
                        served.ending = Ending::ClientRequestTimeout;
                        served.backend = sess.backend();
                        conn_io::reset(client.into_fd());
                        return Err(());
                    }
                    conn_io::Read::Error(_) => {
                        if sess.in_handshake() {
                            served.log = LogAs::Embryonic(session::PRX_ABORT);
                        } else {
                            served.ending = Ending::ClientRequestAbort;
                            served.backend = sess.backend();
                        }
                        conn_io::reset(client.into_fd());
                        return Err(());
                    }
                }
            }
        }
    }
}

/// Closes a client the rules rejected, the way HAProxy does for that phase.
pub(super) async fn reject(sess: &Session, client: Sock, r: Rejected, served: &mut Served) {
    let fd = client.into_fd();
    let close = |fd: OwnedFd| {
        if r.silent {
            conn_io::silent_drop(fd, sess.peer().is_ipv6());
        } else {
            conn_io::reset(fd);
        }
    };
    match r.why {
        Why::Connection | Why::Session => {
            served.log = LogAs::Nothing;
            close(fd);
        }
        Why::Handshake(msg) => {
            served.log = LogAs::Embryonic(msg);
            conn_io::reset(fd);
        }
        Why::Content => {
            served.ending = Ending::Denied;
            served.backend = sess.backend();
            if r.silent {
                close(fd);
            } else {
                // HAProxy's close after a content reject: what was read is dropped, a FIN.
                drop(fd);
            }
        }
        Why::NoBackend => {
            served.ending = Ending::NoServer;
            log::warn!(
                "frontend '{}': no use_backend rule matched and there is no default_backend, \
                 closing client {}",
                sess.frontend_name(),
                sess.src()
            );
            Box::pin(close_unserved(fd)).await;
        }
    }
}

/// The PROXY header `server` wants (`send-proxy`, `send-proxy-v2`), with the addresses the
/// rules saw (a client's own PROXY header's, when it sent one); empty without.
pub(super) fn proxy_header(sess: &Session, server: &crate::config::Server) -> Vec<u8> {
    let pp = &server.proxy;
    let addrs = Some((sess.src(), sess.dst()));
    match pp.version {
        None => Vec::new(),
        Some(ProxyVersion::V1) => proxy_proto::v1(addrs),
        Some(ProxyVersion::V2) => proxy_proto::v2(
            addrs,
            &proxy_proto::V2Extras {
                crc32c: pp.crc32c,
                ssl: pp.ssl,
                // The client's own PROXY header's authority, else its TLS SNI (HAProxy's).
                authority: pp
                    .authority
                    .then(|| {
                        let sni = sess.tls().and_then(|t| t.sni.as_deref());
                        sess.authority()
                            .or(sni.map(str::as_bytes))
                            .map(<[u8]>::to_vec)
                    })
                    .flatten(),
                tls_version: sess.tls().map(|t| t.version),
                alpn: sess
                    .tls()
                    .and_then(|t| t.alpn.clone())
                    .map(String::into_bytes),
            },
        ),
    }
}

/// Runs the backend's `tcp-response content` rules on the server's first bytes (the client's
/// bytes keep flowing to the server meanwhile), then passes those bytes to the client. `Ok`:
/// the bytes passed each way; `Err`: the connection's end (both sides closed), with them.
/// `nolinger`: the backend's `option nolinger`: the client's FIN meanwhile ends the server's
/// input for the rules, and the connection once they decided, the server reset (see
/// `dataplane::PassFin::ResetServer`).
pub(super) async fn respond(
    sess: &mut Session,
    client: &AsyncFd<OwnedFd>,
    server: &AsyncFd<OwnedFd>,
    nolinger: bool,
) -> Result<(u64, u64), (Ending, u64, u64)> {
    let mut res = Vec::new();
    let (mut srv_eof, mut cli_eof, mut up) = (false, false, 0u64);
    // The client's FIN stopped the server side.
    let mut stopped = false;
    let limit = sess.read_limit();
    let step = loop {
        match sess.feed_response(&res, srv_eof, Instant::now()) {
            ResponseStep::Wait { until } => {
                match conn_io::pump_until_response(
                    client,
                    server,
                    &mut res,
                    limit,
                    until,
                    &mut cli_eof,
                    &mut up,
                    nolinger,
                )
                .await
                {
                    conn_io::Pumped::Server { eof } => srv_eof |= eof,
                    conn_io::Pumped::ServerStopped => (srv_eof, stopped) = (true, true),
                    conn_io::Pumped::Deadline => {}
                    conn_io::Pumped::Error(_) => srv_eof = true,
                }
            }
            other => break other,
        }
    };
    match step {
        ResponseStep::Reject { silent } => {
            let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
            if silent {
                // Nothing leaves for the client either.
                let _ = sockopt::set_linger_zero(client.get_ref().as_fd());
            }
            Err((Ending::DeniedResponse, up, 0))
        }
        ResponseStep::Close => {
            let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
            let sent = conn_io::write_all(client, &res, None).await.is_ok();
            let _ = sockopt::shutdown_write(client.get_ref().as_fd());
            let down = if sent { res.len() as u64 } else { 0 };
            Err((Ending::Flow(FlowEnd::Closed, Killer::Admin), up, down))
        }
        ResponseStep::Accept | ResponseStep::Wait { .. } if stopped => {
            // The server is reset; the client, whose FIN was read, gets what the server sent
            // and the close: the flow ends normally.
            let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
            if conn_io::write_all(client, &res, None).await.is_ok() {
                Err((
                    Ending::Flow(FlowEnd::Closed, Killer::Admin),
                    up,
                    res.len() as u64,
                ))
            } else {
                Err((Ending::Flow(FlowEnd::ClientReset, Killer::Admin), up, 0))
            }
        }
        ResponseStep::Accept | ResponseStep::Wait { .. } => {
            if conn_io::write_all(client, &res, None).await.is_ok() {
                Ok((up, res.len() as u64))
            } else {
                let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
                Err((Ending::Flow(FlowEnd::ClientReset, Killer::Admin), up, 0))
            }
        }
    }
}
