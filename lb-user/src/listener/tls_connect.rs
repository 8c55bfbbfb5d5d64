//! TLS to a server (`server ... ssl`) as a shim in the connect: once TCP is connected (and a
//! PROXY header sent, in clear, as HAProxy does), the TLS client handshake runs within what
//! is left of `timeout connect` (a failed or timed-out handshake is a failed connect attempt,
//! retried and counted like one); then a relay task moves bytes between the TLS stream and one
//! end of a socketpair, and the other end is the flow's server socket for the rest of the
//! pipeline, which gets the client's first bytes through it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::connect::{ConnectError, Opened};
use crate::dataplane::{sockopt, Sock};
use crate::generation::ServerTlsClient;
use crate::ring::FirstBytes;
use crate::tls::relay;

/// What a TLS connection to a server needs besides the TCP connect: its client, the SNI
/// (its `sni` expression's value) and the client's bytes to go through TLS.
pub(super) struct TlsTo<'a> {
    pub(super) client: &'a ServerTlsClient,
    pub(super) sni: Option<String>,
    pub(super) data: Vec<u8>,
    /// How long the relay may see no byte either way (see [`relay_idle`]).
    pub(super) idle: Option<Duration>,
}

/// Runs the TLS handshake over the connection `opened` (its PROXY header, what the connect
/// left of it, written first), by `deadline` (the attempt's `timeout connect`), and starts the
/// relay. The result's socket is the relay's plain end, its first bytes the client's.
pub(super) async fn start(
    opened: Opened,
    ip: IpAddr,
    to: TlsTo<'_>,
    (deadline, timeout): (Option<Instant>, Option<Duration>),
) -> Result<Opened, ConnectError> {
    let client = to
        .client
        .as_ref()
        .map_err(|e| ConnectError::Tls(io::Error::other(e.to_string())))?;
    let Opened {
        sock: mut tcp,
        lease,
        first,
        ..
    } = opened;
    let rest = first.rest()?;
    if !rest.is_empty() {
        crate::conn_io::write_all(tcp.reactor()?, rest, deadline).await?;
    }
    // Off the reactor (an `AsyncFd` deregisters), then on it again as tokio's TCP stream.
    let tcp = TcpStream::from_std(std::net::TcpStream::from(tcp.into_fd()))?;
    let local = tcp.local_addr().ok();
    let handshake = client.connect(tcp, ip, to.sni.as_deref(), None);
    let tls = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), handshake).await {
            Ok(r) => r,
            Err(_) => return Err(ConnectError::Timeout(timeout.unwrap_or_default())),
        },
        None => handshake.await,
    }
    .map_err(ConnectError::Tls)?;
    let (plain, inner) = relay::pair()?;
    let idle = to.idle;
    tokio::task::spawn_local(async move {
        let mut tls = tls;
        if let Err(e) = relay::relay(&mut tls, inner, idle).await {
            log::debug!("TLS relay to server ended: {e}");
            // As a plain flow's server side after an error: a reset, no TIME_WAIT.
            let _ = sockopt::set_linger_zero(tls.get_ref().0.as_fd());
        }
    });
    Ok(Opened {
        sock: Sock::new(plain),
        lease,
        first: FirstBytes::unsent(to.data),
        tls_local: local,
    })
}

/// The relay's idle bound: the longest idle time the flow itself may see (`timeout tunnel`,
/// else the longer of `timeout client` and `server`), so that the relay never ends a flow its
/// data plane keeps; `None` when the flow's is unbounded.
pub(super) fn relay_idle(t: &crate::dataplane::FlowTimeouts) -> Option<Duration> {
    match t.tunnel {
        Some(d) => Some(d),
        None => Some(t.client?.max(t.server?)),
    }
}

/// The local address of the TCP connection under a flow's server socket: the socket's own, or
/// the TLS connection's behind a relay (`%bi`, `%bp`).
pub(super) fn server_local(sock: &Sock, tls_local: Option<SocketAddr>) -> Option<SocketAddr> {
    tls_local.or_else(|| {
        socket2::SockRef::from(&sock.fd())
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
    })
}
