//! TLS termination on a bind as a shim: after the `tcp-request connection` rules, the
//! client's handshake (after its PROXY header in clear, with `accept-proxy`), then a relay
//! between the TLS stream and a unix socketpair whose other end the rest of the pipeline takes
//! as the client's socket, unchanged (rules, PROXY header, server, data plane, logs).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use super::served::{LogAs, Served};

use crate::config::{BindTls, Frontend};
use crate::fd_budget::{self, FdLease, Use};
use crate::generation::Generation;
use crate::proxy_proto::{self, Parsed};
use crate::session::Session;
use crate::tls::accept::{handshake, Prefixed};
use crate::tls::relay::{pair, relay};

/// fds a relay holds besides the connection's lease: the TCP socket and its end of the pair
/// (the pair's other end and the server's socket are the connection's two).
const RELAY_FDS: u64 = 2;

/// Terminates TLS on `client` (a TCP socket of a TLS bind): `Some` is the socket the pipeline
/// goes on with; `None` when the handshake failed (the client is closed; `served` logs it as
/// HAProxy does, and no server is contacted).
pub(super) async fn terminate(
    (gen, frontend): (&Generation, usize),
    (tls, accept_proxy): (&BindTls, bool),
    client: OwnedFd,
    (sess, served): (&mut Session, &mut Served),
    accepted: Instant,
) -> Option<OwnedFd> {
    let fe: &Frontend = &gen.config.frontends[frontend];
    let idle = relay_idle(gen, fe);
    let tcp = match TcpStream::from_std(std::net::TcpStream::from(client)) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("frontend '{}': client {}: {e}", fe.name, sess.peer());
            served.log = LogAs::Nothing;
            return None;
        }
    };
    // `timeout client` from accept bounds the PROXY header and the handshake, as HAProxy's.
    let deadline = fe
        .timeouts
        .client
        .map(|t| tokio::time::Instant::from_std(accepted + t));
    let (header, rest) = if accept_proxy {
        let head = first_read(&tcp, gen.config.global.bufsize, deadline).await;
        let Parsed::Header(h) = proxy_proto::parse(&head) else {
            // No header (refused, truncated, closed, or none in time): no TLS. The pipeline
            // gets the client as it is and refuses it the way it refuses a bad header.
            let fd = relay_lease(fe).and_then(|lease| plain(tcp, head, idle, lease));
            if fd.is_none() {
                served.log = LogAs::Nothing;
            }
            return fd;
        };
        (head[..h.len].to_vec(), head[h.len..].to_vec())
    } else {
        (Vec::new(), Vec::new())
    };
    let (stream, facts) =
        match handshake(Prefixed::new(tcp, rest), tls.server.clone(), deadline).await {
            Ok(done) => done,
            Err(failed) => {
                served.log = LogAs::Embryonic(failed.0);
                return None;
            }
        };
    served.tls = Some((facts.version, facts.cipher));
    sess.set_tls(facts);
    let Some(lease) = relay_lease(fe) else {
        served.log = LogAs::Nothing;
        return None;
    };
    let (outer_end, inner) = match pair() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("frontend '{}': TLS relay: {e}", fe.name);
            served.log = LogAs::Nothing;
            return None;
        }
    };
    tokio::task::spawn_local(async move {
        let _lease = lease;
        let mut stream = stream;
        let ended = async {
            let mut inner = inner;
            inner.write_all(&header).await?;
            relay(&mut stream, inner, idle).await
        };
        if let Err(e) = ended.await {
            log::debug!("TLS relay: {e}");
            let _ =
                socket2::SockRef::from(stream.get_ref().0.tcp()).set_linger(Some(Duration::ZERO));
        }
    });
    Some(outer_end)
}

/// What the client sent first (HAProxy decides on the PROXY header from its first read): up
/// to `limit` bytes, empty on a close, an error or the deadline.
async fn first_read(
    tcp: &TcpStream,
    limit: usize,
    deadline: Option<tokio::time::Instant>,
) -> Vec<u8> {
    let mut head = vec![0; limit];
    let read = async {
        loop {
            tcp.readable().await?;
            match tcp.try_read(&mut head) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                r => return r,
            }
        }
    };
    let n = match deadline {
        Some(d) => tokio::time::timeout_at(d, read).await.unwrap_or(Ok(0)),
        None => read.await,
    };
    head.truncate(n.unwrap_or(0));
    head
}

/// A client that sent no PROXY header to a TLS bind with `accept-proxy`: relayed in clear
/// (what it sent first, then the rest) for the pipeline to refuse.
/// `None`: no socketpair (the client is closed).
fn plain(tcp: TcpStream, head: Vec<u8>, idle: Option<Duration>, lease: FdLease) -> Option<OwnedFd> {
    let (outer_end, inner) = pair().ok()?;
    tokio::task::spawn_local(async move {
        let _lease = lease;
        let mut inner: UnixStream = inner;
        if inner.write_all(&head).await.is_ok() {
            let _ = relay(tcp, inner, idle).await;
        }
    });
    Some(outer_end)
}

/// The fds a relay holds beyond the connection's own two (the client's TCP socket and its
/// end of the pair), from the process's budget; `None` when it is spent (the client is then
/// closed, and the budget's warning says why).
fn relay_lease(fe: &Frontend) -> Option<FdLease> {
    let budget = fd_budget::process();
    let lease = budget.try_take(RELAY_FDS, Use::Connection);
    if lease.is_none() {
        budget.warn(|| {
            format!(
                "frontend '{}': no file descriptor left for a TLS relay ({}); closing the \
                 client",
                fe.name,
                budget.describe()
            )
        });
    }
    lease
}

/// How long a relay may see no progress: the longest any flow of the frontend may idle (its
/// `timeout client`, or a backend's longer `timeout tunnel`); the pipeline's own timeouts end
/// the flow sooner, which ends the relay. `None` when the frontend has no `timeout client`.
fn relay_idle(gen: &Generation, fe: &Frontend) -> Option<Duration> {
    let client = fe.timeouts.client?;
    let tunnels = gen.config.backends.iter().filter_map(|b| b.timeouts.tunnel);
    Some(tunnels.fold(client, Duration::max))
}
