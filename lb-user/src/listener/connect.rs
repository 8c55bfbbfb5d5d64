//! Connecting to a server (`timeout connect`, `retries`, `option redispatch`) and the socket
//! options of either side.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::tls_connect::{self, TlsTo};
use crate::config::{Backend, Frontend, Keepalive, Server, Source};
use crate::dataplane::{sockopt, Sock};
use crate::generation::Generation;
use crate::ring::{ConnectFailed, FirstBytes};
use crate::server::{PortLease, PortPool};
use crate::table::{BackendSession, BackendTable, Held, ServerSlot};

/// Socket options of a connection to a server: `TCP_NODELAY`, keepalive and the server's
/// `tcp-ut` when configured (best effort, as in `HAProxy`: the connection works without it).
fn tune(fd: &OwnedFd, ka: &Keepalive, user_timeout: Option<Duration>) -> io::Result<()> {
    sockopt::set_nodelay(fd.as_fd())?;
    sockopt::set_keepalive(fd.as_fd(), ka)?;
    if let Some(t) = user_timeout {
        let _ = sockopt::set_user_timeout(fd.as_raw_fd(), t);
    }
    Ok(())
}

/// The local address of a client accepted on `bound`: that address itself when it names one
/// (a specific address and port, not `transparent`), else the socket's (`getsockname`).
pub(super) fn client_local(
    fe: &Frontend,
    bound: SocketAddr,
    fd: &OwnedFd,
) -> io::Result<SocketAddr> {
    let exact = !bound.ip().is_unspecified()
        && bound.port() != 0
        && fe
            .binds
            .iter()
            .any(|b| b.addr == bound && !b.opts.transparent);
    if exact {
        return Ok(bound);
    }
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// The address the client asked for (HAProxy's `sc_dst` of the client side), read once and
/// only when a connection needs it: a server without an address or without a port of its
/// own. A PROXY header's destination as the session has it; else the socket's
/// own, where an IPv4 connection that netfilter NATs (`REDIRECT`, `DNAT`) gives its address
/// before the NAT, as HAProxy's `sock_inet_get_dst` reads it (`SO_ORIGINAL_DST`; with
/// `bind ... transparent` and TPROXY or local routing the socket's address already is it).
pub(super) struct OrigDst {
    /// The session's destination, and its own local address.
    dst: SocketAddr,
    local: SocketAddr,
    /// The client's socket, open for as long as this lives (see [`OrigDst::new`]).
    client: std::os::fd::RawFd,
    read: std::cell::OnceCell<SocketAddr>,
}

impl OrigDst {
    /// `client`: the client's socket, which must stay open while this lives (the caller's
    /// `Sock`, not closed while it connects to the server).
    pub(super) fn new((dst, local): (SocketAddr, SocketAddr), client: &Sock) -> Self {
        Self {
            dst,
            local,
            client: client.fd().as_raw_fd(),
            read: std::cell::OnceCell::new(),
        }
    }

    /// The original destination (one `getsockopt` the first time, for an IPv4 socket).
    pub(super) fn get(&self) -> SocketAddr {
        *self.read.get_or_init(|| {
            if self.dst != self.local || !self.local.is_ipv4() {
                return self.dst;
            }
            // SAFETY: the client's socket is open while this lives (see `new`).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.client) };
            socket2::SockRef::from(&fd)
                .original_dst()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(self.dst)
        })
    }
}

/// Why a connect attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("connection timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS handshake with a server with `ssl` failed.
    #[error("SSL handshake failure: {0}")]
    Tls(io::Error),
}

/// A connection to a server, and what became of the bytes it was to get first.
pub(super) struct Opened {
    pub(super) sock: Sock,
    /// The port of the server's source range it holds.
    pub(super) lease: Option<PortLease>,
    /// The server's first bytes (a PROXY header, the client's bytes read so far): what went
    /// with the connect, the rest the caller's to write.
    pub(super) first: FirstBytes,
    /// With TLS to the server, `sock` is a relay's end: the local address of the TCP
    /// connection under it.
    pub(super) tls_local: Option<SocketAddr>,
}

/// One non-blocking connect to `addr` (from `source`, the server's or its backend's, when there
/// is one, transparently from `client`'s address with its `usesrc`; the server's `tcp-ut` when
/// it has one), bounded by `timeout connect`. With `tfo`, TCP Fast Open
/// (`TCP_FASTOPEN_CONNECT`): where the kernel holds the server's cookie the connect completes
/// at once and the first write sends the SYN with its bytes; else the cookie is asked for in
/// a plain handshake. On a thread with a ring, the connect goes through it (its timeout linked
/// to it) with a send of `first` linked behind it: the socket stays off the reactor until a
/// step needs it there. Without, the socket comes back on the thread's reactor, registered
/// once for the connect, the first bytes (written by the caller) and the data plane.
pub(super) async fn connect(
    (addr, client): (SocketAddr, SocketAddr),
    (source, tcp_ut, ports): (Option<&Source>, Option<Duration>, Option<&Arc<PortPool>>),
    Opening { tfo, delay_ack }: Opening,
    (ka, timeout): (&Keepalive, Option<Duration>),
    first: Vec<u8>,
) -> Result<Opened, ConnectError> {
    // Non-blocking and close-on-exec from creation: no fcntl afterwards.
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let fd: OwnedFd = sock.into();
    tune(&fd, ka, tcp_ut)?;
    // A port of the server's source range, held as long as the connection (by its slot).
    let lease = match source {
        Some(src) => sockopt::bind_source(fd.as_fd(), src, addr, ports, Some(client))?,
        None => None,
    };
    if delay_ack {
        // As HAProxy, best effort: the connect works the same without it.
        let _ = sockopt::delay_acks(fd.as_raw_fd());
    }
    if tfo {
        // As HAProxy: a kernel without it connects as usual.
        let _ = sockopt::setsockopt_int(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            1,
        );
    }
    if crate::ring::available() {
        return match crate::ring::connect(fd, addr, timeout, first).await {
            Ok(c) => Ok(Opened {
                sock: Sock::new(c.fd),
                lease,
                first: c.first,
                tls_local: None,
            }),
            Err(ConnectFailed::Timeout) => Err(ConnectError::Timeout(timeout.unwrap_or_default())),
            Err(ConnectFailed::Io(e)) => Err(e.into()),
        };
    }
    let opened = |sock| Opened {
        sock,
        lease,
        first: FirstBytes::unsent(first),
        tls_local: None,
    };
    let sock = Socket::from(fd);
    let in_progress = match sock.connect(&addr.into()) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(e.into()),
    };
    let afd = crate::dataplane::async_fd(sock.into())?;
    if !in_progress {
        return Ok(opened(Sock::registered(afd)));
    }
    // The kernel reports a connecting socket writable only once it left SYN_SENT (tcp_poll):
    // writable without a pending error is connected, no `getpeername` needed. The readiness
    // is kept (not cleared): the first write to the server uses it.
    let wait = async {
        let ready = afd.writable().await?;
        match sockopt::take_error(afd.get_ref().as_fd()) {
            Some(e) => Err(e),
            None if ready.ready().is_write_closed() => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed while connecting",
            )),
            None => Ok(()),
        }
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, wait).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnectError::Timeout(t)),
        },
        None => wait.await?,
    }
    Ok(opened(Sock::registered(afd)))
}

/// How a connect opens the connection, from HAProxy's rules (`tcp_connect_server`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Opening {
    /// TCP Fast Open (`TCP_FASTOPEN_CONNECT`).
    tfo: bool,
    /// The handshake's last ACK waits for the first bytes (`TCP_QUICKACK` off).
    delay_ack: bool,
}

impl Opening {
    /// TCP Fast Open when the server has `tfo`, it is the first attempt, and bytes wait to be
    /// sent: without bytes no write would ever send the deferred SYN, and a server that
    /// speaks first (MySQL, SMTP) would wait for a connection that never comes. A delayed
    /// last ACK when the backend has `option tcp-smart-connect` and bytes wait (else the ACK
    /// would wait for nothing, and the server, which accepts at that ACK, with it).
    pub(super) fn new(be: &Backend, server: Option<&Server>, attempt: u32, has_data: bool) -> Self {
        Self {
            tfo: server.is_some_and(|s| s.tfo) && attempt == 0 && has_data,
            delay_ack: be.smart_connect && has_data,
        }
    }
}

/// What the connect phase did, for the tcplog line (`%rc`, `%ts`).
#[derive(Clone, Debug, Default)]
pub(super) struct ConnectTries {
    /// Re-tries after the first attempt.
    pub(super) retries: u32,
    /// The last retry went to another server.
    pub(super) redispatched: bool,
    /// The last failed attempt ended by `timeout connect`.
    pub(super) timed_out: bool,
    /// The server of the last failed attempt (index, name): `%s` when all attempts fail.
    pub(super) failed_server: Option<(usize, Arc<str>)>,
}

/// A server (or the client's original destination) reached: what the connection holds of the
/// backend, the connection, and its first bytes as [`Opened`] left them.
pub(super) struct Reached {
    pub(super) held: Held,
    pub(super) sock: Sock,
    pub(super) first: FirstBytes,
    /// Where the connection went ([`ServerSlot::target`], or the original destination).
    pub(super) target: SocketAddr,
    /// See [`Opened::tls_local`].
    pub(super) tls_local: Option<SocketAddr>,
}

/// What a connection to a server starts with: the bytes it gets first (its PROXY header,
/// `header` bytes long, then the client's bytes read so far) and, for a server with `ssl`,
/// its SNI and the TLS relay's idle bound.
pub(super) struct ServerFirst {
    pub(super) bytes: Vec<u8>,
    pub(super) header: usize,
    pub(super) sni: Option<String>,
    pub(super) idle: Option<Duration>,
}

/// Connects to the slot's server, re-trying `retries` times; with `option redispatch` the last
/// retry goes to another server. Between retries on the same server after an immediate
/// failure, waits HAProxy's turn-around time, min(`timeout connect`, 1 s). `client`: its
/// address (for a redispatch's choice and a `usesrc` bind) and the destination it asked for
/// (for servers without an address or a port); `first`: the bytes a server is to get first (a PROXY header is the server's own),
/// sent with the connect where it can (see [`connect`], and [`Opening`] for what their
/// presence changes).
pub(super) async fn connect_with_retries(
    gen: &Generation,
    table: &Arc<BackendTable>,
    be: &Backend,
    (client, asked): (SocketAddr, &OrigDst),
    mut slot: ServerSlot,
    first: &dyn Fn(&ServerSlot) -> ServerFirst,
    tries: &mut ConnectTries,
) -> Result<Reached, String> {
    let mut last_error;
    let mut attempt = 0u32;
    let backend = (be.id as usize).saturating_sub(1);
    loop {
        let started = tokio::time::Instant::now();
        let ports = slot.counters().source_ports(slot.conf());
        let first = first(&slot);
        let target = slot.target(&|| asked.get());
        let tls = gen
            .server_tls
            .get(backend)
            .and_then(|b| b.get(slot.index()))
            .and_then(Option::as_ref);
        // With TLS, only the PROXY header goes with the connect; the handshake then has
        // bytes to send at once (the ClientHello).
        let (bytes, tls) = match tls {
            Some(client) => {
                let mut bytes = first.bytes;
                let data = bytes.split_off(first.header.min(bytes.len()));
                let (sni, idle) = (first.sni, first.idle);
                (
                    bytes,
                    Some(TlsTo {
                        client,
                        sni,
                        data,
                        idle,
                    }),
                )
            }
            None => (first.bytes, None),
        };
        let has_data = !bytes.is_empty() || tls.is_some();
        let opened = connect(
            (target, client),
            (
                slot.conf().source.as_ref(),
                slot.conf().tcp_ut,
                ports.as_ref(),
            ),
            Opening::new(be, Some(slot.conf()), attempt, has_data),
            (&be.keepalive, be.timeouts.connect),
            bytes,
        )
        .await;
        let result = match (opened, tls) {
            (Ok(o), Some(to)) => {
                let deadline = be.timeouts.connect.map(|t| started.into_std() + t);
                let ip = target.ip();
                tls_connect::start(o, ip, to, (deadline, be.timeouts.connect)).await
            }
            (opened, _) => opened,
        };
        gen.passive
            .connect_result(backend, slot.index(), result.is_ok());
        match result {
            Ok(o) => {
                slot.keep_port(o.lease);
                return Ok(Reached {
                    held: Held::Server(slot),
                    sock: o.sock,
                    first: o.first,
                    target,
                    tls_local: o.tls_local,
                });
            }
            Err(e) => {
                tries.timed_out = matches!(e, ConnectError::Timeout(_));
                tries.failed_server = Some((slot.index(), Arc::from(slot.name())));
                slot.counters()
                    .connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                last_error = format!("server '{}/{}': {e}", be.name, slot.name());
                log::debug!("{last_error} (attempt {})", attempt + 1);
            }
        }
        if attempt >= be.retries {
            return Err(last_error);
        }
        attempt += 1;
        tries.retries = attempt;
        slot.counters().retries.fetch_add(1, Ordering::Relaxed);
        if be.redispatch && attempt == be.retries {
            let failed = slot.index();
            drop(slot);
            slot = match table.try_acquire(client, Some(failed)) {
                Ok(s) => {
                    s.counters().redispatches.fetch_add(1, Ordering::Relaxed);
                    tries.redispatched = true;
                    s
                }
                Err(e) => {
                    return Err(format!(
                        "{last_error}; redispatch found no other server: {e}"
                    ))
                }
            };
            continue;
        }
        turnaround(be, started).await;
    }
}

/// Between retries on the same address after an immediate failure, waits HAProxy's
/// turn-around time, min(`timeout connect`, 1 s), from the attempt's start.
async fn turnaround(be: &Backend, started: tokio::time::Instant) {
    let turnaround = be
        .timeouts
        .connect
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    if started.elapsed() < turnaround {
        tokio::time::sleep_until(started + turnaround).await;
    }
}

/// Connects a connection that `option transparent` sends to the address the client originally
/// asked for, with no server (HAProxy's `alloc_dst_address` for `PR_O_TRANSP`: the whole
/// destination, address and port), from the backend's `source`; re-tries `retries` times (no
/// redispatch: there is no server to leave). `session`: its count on the backend, which the
/// connection then holds.
pub(super) async fn connect_transparent(
    be: &Backend,
    (client, asked): (SocketAddr, &OrigDst),
    (session, first): (BackendSession, Vec<u8>),
    tries: &mut ConnectTries,
) -> Result<Reached, String> {
    let target = asked.get();
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let result = connect(
            (target, client),
            (be.source.as_ref(), None, None),
            Opening::new(be, None, attempt, !first.is_empty()),
            (&be.keepalive, be.timeouts.connect),
            first.clone(),
        )
        .await;
        match result {
            Ok(o) => {
                return Ok(Reached {
                    held: Held::Backend(session),
                    sock: o.sock,
                    first: o.first,
                    target,
                    tls_local: None,
                })
            }
            Err(e) => {
                tries.timed_out = matches!(e, ConnectError::Timeout(_));
                let error = format!("original destination {target}: {e}");
                log::debug!("{error} (attempt {})", attempt + 1);
                if attempt >= be.retries {
                    return Err(error);
                }
            }
        }
        attempt += 1;
        tries.retries = attempt;
        turnaround(be, started).await;
    }
}
