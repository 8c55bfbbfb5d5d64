//! Socket options and socket state queries the data planes need and that `socket2`/`nix` don't
//! cover: `TCP_INFO` byte counters, `SIOCOUTQ`, `SO_COOKIE`, `SO_RCVLOWAT`, abortive close, and
//! the binds before a socket listens or connects.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BindOptions, Keepalive, Source, UseSrc};
use crate::server::{PortLease, PortPool};

/// Applies a `bind` line's options to a listening socket before it binds (`listen_queue`: the
/// backlog, also TFO's queue length as in `HAProxy`). As in `HAProxy`, a kernel that refuses
/// `defer-accept`, `tfo` or `interface` gets a warning and the listener works without it;
/// `transparent` that cannot be set is an error (binding a foreign address would fail).
pub fn apply_bind_options(
    sock: &socket2::Socket,
    addr: std::net::SocketAddr,
    opts: &BindOptions,
    listen_queue: i32,
) -> io::Result<()> {
    let v6 = addr.is_ipv6();
    match opts.v6only {
        Some(only) if v6 => sock.set_only_v6(only)?,
        // `[::]:port` takes IPv4 too, as HAProxy's default on Linux does.
        None if v6 && addr.ip().is_unspecified() => sock.set_only_v6(false)?,
        _ => {}
    }
    let fd = sock.as_raw_fd();
    if opts.transparent {
        let (level, name) = if v6 {
            (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
        } else {
            (libc::SOL_IP, libc::IP_TRANSPARENT)
        };
        setsockopt_int(fd, level, name, 1).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot make the listener transparent: {e}"),
            )
        })?;
    }
    if let Some(dev) = &opts.interface {
        if let Err(e) = sock.bind_device(Some(dev.as_bytes())) {
            log::warn!("{addr}: cannot bind the listener to interface '{dev}': {e}");
        }
    }
    if opts.defer_accept {
        // Defer accept by up to one second, as HAProxy.
        if let Err(e) = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1) {
            log::warn!("{addr}: cannot enable TCP_DEFER_ACCEPT: {e}");
        }
    }
    if opts.tfo {
        if let Err(e) = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, listen_queue) {
            log::warn!("{addr}: cannot enable TCP_FASTOPEN: {e}");
        }
    }
    if let Some(mss) = opts.mss.filter(|m| *m > 0) {
        if let Err(e) = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss) {
            log::warn!("{addr}: cannot set the MSS to {mss}: {e}");
        }
    }
    if let Some(t) = opts.user_timeout {
        if let Err(e) = set_user_timeout(fd, t) {
            log::warn!("{addr}: cannot set TCP_USER_TIMEOUT: {e}");
        }
    }
    Ok(())
}

/// `TCP_USER_TIMEOUT` (`tcp-ut` on a `bind` or a `server`): how long sent bytes may stay
/// unacknowledged before the kernel aborts the connection, in milliseconds.
pub fn set_user_timeout(fd: RawFd, t: Duration) -> io::Result<()> {
    let ms = t.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
}

/// Applies what a listening socket must get after `listen(2)`, which resets its ACK state:
/// `option tcp-smart-accept` turns `TCP_QUICKACK` off, and the sockets accepted from it
/// inherit that, so the ACK of a client's first bytes waits (up to the delayed-ACK timeout)
/// for the answer to carry it. Refused: a warning, as in `HAProxy`.
pub fn apply_listen_options(fd: BorrowedFd<'_>, addr: std::net::SocketAddr, opts: &BindOptions) {
    if opts.smart_accept {
        if let Err(e) = delay_acks(fd.as_raw_fd()) {
            log::warn!("{addr}: option tcp-smart-accept: cannot disable TCP_QUICKACK: {e}");
        }
    }
}

/// Binds a socket about to connect to `to` to its `source` (`HAProxy`'s `source`): the device
/// first (`interface`), then the address. Without a port, `IP_BIND_ADDRESS_NO_PORT` leaves the
/// port to the connect, which picks one free for the whole 4-tuple; a plain `bind` would take
/// a port for the address alone, and one source address could then hold no more connections
/// than the ephemeral range has ports, whatever the servers. A fixed port gets `SO_REUSEADDR`,
/// as in `HAProxy`, so that its last connection's `TIME_WAIT` does not refuse the next. With a
/// port range (`ports`: the server's pool of it) a free port of the range, with `SO_REUSEADDR`
/// too, held by the returned lease until it drops; a port whose bind fails goes back and the
/// next is tried, ten at most (`HAProxy`'s attempts). The error names the source.
///
/// `client`: the client a connection carries (`None`: a health check's). With `usesrc` and a
/// client, the socket is made transparent (`IP_TRANSPARENT`/`IPV6_TRANSPARENT`, which needs
/// `CAP_NET_ADMIN`) and binds the foreign address instead ([`crate::config::UseSrc::foreign`]:
/// the client's address, its port with `client`), by the same port rules; the port range is
/// not used then (`HAProxy` binds the foreign address too). A foreign address of another
/// family than the server's fails, as in `HAProxy` (the bind is refused), with the reason.
/// Health checks bind the plain source: a check has no client.
pub fn bind_source(
    fd: BorrowedFd<'_>,
    src: &Source,
    to: std::net::SocketAddr,
    ports: Option<&Arc<PortPool>>,
    client: Option<std::net::SocketAddr>,
) -> io::Result<Option<PortLease>> {
    let foreign = src.usesrc.zip(client).map(|(u, c)| (u, u.foreign(c)));
    let named = |e: io::Error| match foreign {
        Some((u, at)) => io::Error::new(
            e.kind(),
            format!("cannot bind to tproxy source address {at} (source {src} usesrc {u}): {e}"),
        ),
        None => io::Error::new(e.kind(), format!("source {src}: {e}")),
    };
    let family = |a: std::net::SocketAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
    let at = foreign.map_or(src.addr, |(_, at)| at);
    if at.is_ipv4() != to.is_ipv4() {
        let what = match foreign {
            Some((UseSrc::Addr(_), _)) | None => "the address",
            Some(_) => "the client",
        };
        return Err(named(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} is {}, the server's address {to} {}",
                family(at),
                family(to)
            ),
        )));
    }
    let sock = socket2::SockRef::from(&fd);
    if let Some(dev) = &src.interface {
        sock.bind_device(Some(dev.as_bytes()))
            .map_err(|e| named(io::Error::new(e.kind(), format!("interface '{dev}': {e}"))))?;
    }
    if foreign.is_some() {
        let (level, name, opt) = if at.is_ipv4() {
            (libc::SOL_IP, libc::IP_TRANSPARENT, "IP_TRANSPARENT")
        } else {
            (libc::SOL_IPV6, libc::IPV6_TRANSPARENT, "IPV6_TRANSPARENT")
        };
        setsockopt_int(fd.as_raw_fd(), level, name, 1).map_err(|e| {
            named(io::Error::new(
                e.kind(),
                format!("{opt} (it needs CAP_NET_ADMIN): {e}"),
            ))
        })?;
    }
    if let Some(pool) = ports.filter(|_| foreign.is_none()) {
        sock.set_reuse_address(true).map_err(named)?;
        let mut last = None;
        for _ in 0..10 {
            let Some(lease) = pool.take() else {
                return Err(named(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "no free port left in the range",
                )));
            };
            let at = std::net::SocketAddr::new(src.addr.ip(), lease.port());
            match sock.bind(&at.into()) {
                Ok(()) => return Ok(Some(lease)),
                // The lease goes back (last in the queue): the next port is tried.
                Err(e) => last = Some(e),
            }
        }
        return Err(named(
            last.unwrap_or_else(|| io::Error::other("no port bound")),
        ));
    }
    if at.port() == 0 {
        // Kernels before 4.2 do without: the bind then takes a port as before.
        match setsockopt_int(
            fd.as_raw_fd(),
            libc::SOL_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            1,
        ) {
            Err(e) if e.raw_os_error() != Some(libc::ENOPROTOOPT) => return Err(named(e)),
            _ => {}
        }
    } else {
        sock.set_reuse_address(true).map_err(named)?;
    }
    sock.bind(&at.into()).map_err(named)?;
    Ok(None)
}

/// `TCP_QUICKACK` off (`option tcp-smart-accept` on a listener, `option tcp-smart-connect`
/// before a connect): the next ACK is delayed so that data can carry it.
pub fn delay_acks(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0)
}

/// `setsockopt` of one `int`.
pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The leading part of Linux's `struct tcp_info` (include/uapi/linux/tcp.h) up to
/// `tcpi_bytes_received`. The kernel copies `min(optlen, sizeof)` bytes, so a prefix is valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TcpInfoPrefix {
    /// `tcpi_state` .. the two bitfield bytes.
    head: [u8; 8],
    /// `tcpi_rto` .. `tcpi_total_retrans`: 24 `__u32` fields.
    words: [u32; 24],
    pacing_rate: u64,
    max_pacing_rate: u64,
    /// RFC4898 tcpEStatsAppHCThruOctetsAcked: payload bytes the peer acknowledged.
    bytes_acked: u64,
    /// RFC4898 tcpEStatsAppHCThruOctetsReceived: payload bytes received, plus 1 for a FIN.
    bytes_received: u64,
}

/// What the sockmap data plane reads of `TCP_INFO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `tcpi_state` (`libc::TCP_ESTABLISHED` = 1, ...).
    pub state: u8,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received; a received FIN counts 1 more.
    pub bytes_received: u64,
}

/// `TCP_ESTABLISHED` from `include/net/tcp_states.h`.
pub const TCP_ESTABLISHED: u8 = 1;

/// `TCP_CLOSE_WAIT` from `include/net/tcp_states.h`: the peer's FIN came, ours was not sent.
pub const TCP_CLOSE_WAIT: u8 = 8;

fn getsockopt_raw<T: Copy + Default>(fd: RawFd, level: i32, name: i32) -> io::Result<(T, usize)> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a valid, writable T of `len` bytes; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok((value, len as usize))
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_raw<T: Copy>(fd: RawFd, level: i32, name: i32, value: T) -> io::Result<()> {
    // SAFETY: `value` is a valid T that lives across the call; the kernel reads size_of::<T>().
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How many connections wait in a listening socket's accept queue (`tcpi_unacked` of a
/// socket in `LISTEN`: the kernel's `sk_ack_backlog`).
pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let (info, len) =
        getsockopt_raw::<TcpInfoPrefix>(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO)?;
    // `tcpi_unacked`: the fifth word after the head.
    if len < 8 + 5 * 4 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel's tcp_info is too short",
        ));
    }
    Ok(info.words[4])
}

/// Reads the state and byte counters of a TCP socket.
pub fn tcp_counters(fd: BorrowedFd<'_>) -> io::Result<TcpCounters> {
    let (info, len) =
        getsockopt_raw::<TcpInfoPrefix>(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO)?;
    if len < std::mem::size_of::<TcpInfoPrefix>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel's tcp_info has no byte counters (needs Linux 4.1+)",
        ));
    }
    Ok(TcpCounters {
        state: info.head[0],
        bytes_acked: info.bytes_acked,
        bytes_received: info.bytes_received,
    })
}

/// Bytes in the socket's send queue not yet acknowledged by the peer (`SIOCOUTQ`).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int to the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if rc == 0 {
        Ok(u64::try_from(n).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes received and not yet read (`SIOCINQ`): with 0, no skb in the receive queue is partly
/// read.
pub fn inq(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCINQ (= FIONREAD) writes one c_int to the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &raw mut n) };
    if rc == 0 {
        Ok(u64::try_from(n).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Payload bytes the socket's send queue takes now without waiting for its peer to read: half
/// of `SO_SNDBUF` (the kernel's limit on the queue's memory, skb overhead included, which is
/// at most about as much again as the payload) less what is queued and not yet acknowledged
/// (`SIOCOUTQ`).
pub fn send_room(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let (sndbuf, _) =
        getsockopt_raw::<libc::c_int>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    let half = u64::try_from(sndbuf).unwrap_or(0) / 2;
    Ok(half.saturating_sub(outq(fd)?))
}

/// Everything written to the socket so far, `bytes_acked + SIOCOUTQ` (plus one for the SYN
/// of the side that connected). Call it only while nothing writes to the socket: the sum is
/// then constant, and an ACK arriving between the two reads is detected by reading the queue
/// before and after; if the queue keeps moving, the result errs high (never low).
pub fn written(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut before = outq(fd)?;
    for _ in 0..64 {
        let acked = tcp_counters(fd)?.bytes_acked;
        let after = outq(fd)?;
        if after == before {
            return Ok(acked + before);
        }
        before = after;
    }
    let acked = tcp_counters(fd)?.bytes_acked;
    Ok(acked + before)
}

/// The kernel's unique, never reused id of a socket (`SO_COOKIE`): the key of the PEER map.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    getsockopt_raw::<u64>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE).map(|(c, _)| c)
}

/// `SO_RCVLOWAT`. Setting it on a socket in a sockmap makes the kernel run the verdict program
/// on data that was already queued before the insert (sockmap.md, trap 3).
pub fn set_rcvlowat(fd: BorrowedFd<'_>, bytes: i32) -> io::Result<()> {
    setsockopt_raw(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes)
}

/// Whether a socket is an IPv4/IPv6 one (`SO_DOMAIN`): a flow's client socket is not when a
/// TLS bind's relay stands in for the client (a unix socketpair's end), and such a flow may
/// neither enter the sockmap (its programs and hand-over are TCP's) nor be handed to another
/// process (its TLS state lives in this one).
pub fn is_inet(fd: BorrowedFd<'_>) -> bool {
    matches!(
        getsockopt_raw::<libc::c_int>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN),
        Ok((libc::AF_INET | libc::AF_INET6, _))
    )
}

/// Pending socket error (`SO_ERROR`), cleared by reading; `None` when there is none.
pub fn take_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    match getsockopt_raw::<libc::c_int>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR) {
        Ok((0, _)) => None,
        Ok((e, _)) => Some(io::Error::from_raw_os_error(e)),
        Err(e) => Some(e),
    }
}

/// `SO_LINGER {on, 0}`: the next `close()` sends a RST instead of a FIN. Used to pass a reset on.
pub fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt_raw(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, linger)
}

/// `option nolinger` of a frontend on one of its listening sockets, as HAProxy's
/// `tcp_bind_listener`: `SO_LINGER {1, 0}` with it (the sockets accepted from it inherit it:
/// their close sends a reset unless both FINs have passed), and without it a linger found on
/// the socket (one kept from an earlier configuration, or taken over from another process) is
/// cleared. Nothing is set when the socket already is as asked.
pub fn set_listener_linger(fd: BorrowedFd<'_>, nolinger: bool) -> io::Result<()> {
    let (on, secs) = linger(fd)?;
    if on == nolinger && (!on || secs == 0) {
        return Ok(());
    }
    let want = libc::linger {
        l_onoff: libc::c_int::from(nolinger),
        l_linger: 0,
    };
    setsockopt_raw(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, want)
}

/// `SO_LINGER`: whether it is on, and its time in seconds.
pub fn linger(fd: BorrowedFd<'_>) -> io::Result<(bool, i32)> {
    /// `struct linger`, with the `Default` the reader needs.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Linger {
        onoff: libc::c_int,
        secs: libc::c_int,
    }
    let (l, _) = getsockopt_raw::<Linger>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER)?;
    Ok((l.onoff != 0, l.secs))
}

/// `shutdown(fd, SHUT_WR)`: sends our FIN, the socket can still receive.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open fd.
    let rc = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
    if rc == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        if err.raw_os_error().is_some_and(shutdown_already_done) {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// `shutdown(fd, SHUT_RD)`: sends nothing; reads find the end of the stream, and whoever waits
/// to read from the socket wakes (`EPOLLIN | EPOLLRDHUP`).
pub fn shutdown_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open fd.
    let rc = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a `shutdown(SHUT_WR)` that failed with `errno` is done all the same: the socket is
/// already disconnected (`ENOTCONN`: both FINs passed, e.g. while the rules read the first
/// bytes), so nothing is left to pass on.
pub fn shutdown_already_done(errno: i32) -> bool {
    errno == libc::ENOTCONN
}

/// Reads and drops up to `max` bytes of what the socket received, without copying them
/// (`recv(MSG_TRUNC | MSG_DONTWAIT)` on TCP). `Ok(0)` is the peer's FIN.
pub fn recv_discard(fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel discards the bytes and never writes
    // through the (null) buffer pointer.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            max,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `TCP_NODELAY`: a proxy must not add Nagle delay to what the endpoints already batched.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_raw(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        1 as libc::c_int,
    )
}

/// `TCP_QUICKACK`. Turned off before `connect()`, Linux holds back the handshake's last ACK
/// (for up to 200 ms, `TCP_DELACK_MAX`) to send it with the first data; a reset sent before
/// then finds the server still in `SYN_RECV`, so its application never accepts anything
/// (HAProxy's `CONNECT_DELACK_ALWAYS` for checks).
pub fn set_quickack(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt_raw(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_QUICKACK,
        libc::c_int::from(on),
    )
}

/// Applies `option tcpka|clitcpka|srvtcpka`: `SO_KEEPALIVE` with `TCP_KEEPIDLE`/`INTVL`/`CNT`.
pub fn set_keepalive(fd: BorrowedFd<'_>, ka: &Keepalive) -> io::Result<()> {
    if !ka.enabled {
        return Ok(());
    }
    let raw = fd.as_raw_fd();
    let secs = |d: Duration| d.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    setsockopt_raw(raw, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1 as libc::c_int)?;
    setsockopt_raw(raw, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(ka.idle))?;
    setsockopt_raw(raw, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(ka.intvl))?;
    setsockopt_raw(
        raw,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        ka.cnt.clamp(1, i32::MAX as u32) as libc::c_int,
    )
}

/// Reads `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` (for tests and `show`).
pub fn keepalive(fd: BorrowedFd<'_>) -> io::Result<(bool, u32, u32, u32)> {
    let raw = fd.as_raw_fd();
    let get = |level, name| getsockopt_raw::<libc::c_int>(raw, level, name).map(|(v, _)| v);
    Ok((
        get(libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)? as u32,
        get(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)? as u32,
        get(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)? as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn tcp_info_counts_payload_and_fin() {
        let (mut c, mut s) = pair();
        c.write_all(&[7u8; 1000]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        assert_eq!(buf.len(), 1000);
        let info = tcp_counters(s.as_fd()).unwrap();
        // The FIN counts one byte in tcpi_bytes_received: the sockmap EOF logic relies on it.
        assert_eq!(info.bytes_received, 1001);
        // The connecting side's SYN counts in bytes_acked, the accepting side's doesn't: the
        // sockmap data plane takes a baseline at insert time for that reason.
        let cinfo = tcp_counters(c.as_fd()).unwrap();
        assert_eq!(cinfo.bytes_acked + outq(c.as_fd()).unwrap(), 1 + 1000 + 1);
        s.write_all(b"x").unwrap();
        drop(s);
        let mut one = [0u8; 1];
        c.read_exact(&mut one).unwrap();
        let _ = c.read(&mut one);
        let sinfo = tcp_counters(c.as_fd()).unwrap();
        assert_eq!(sinfo.bytes_received, 1 + 1);
    }

    #[test]
    fn cookie_is_unique_per_socket() {
        let (c, s) = pair();
        let a = socket_cookie(c.as_fd()).unwrap();
        let b = socket_cookie(s.as_fd()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, socket_cookie(c.as_fd()).unwrap());
    }

    #[test]
    fn keepalive_values_are_applied() {
        let (c, _s) = pair();
        let ka = Keepalive {
            enabled: true,
            idle: Duration::from_secs(110),
            intvl: Duration::from_secs(30),
            cnt: 3,
        };
        set_keepalive(c.as_fd(), &ka).unwrap();
        assert_eq!(keepalive(c.as_fd()).unwrap(), (true, 110, 30, 3));
    }

    #[test]
    fn linger_zero_close_resets_peer() {
        let (c, mut s) = pair();
        set_linger_zero(c.as_fd()).unwrap();
        drop(c);
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    fn socket() -> socket2::Socket {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()
    }

    fn source(addr: &str) -> Source {
        Source {
            addr: addr.parse().unwrap(),
            interface: None,
            ports: None,
            usesrc: None,
        }
    }

    /// Without a port the bind leaves the port to the connect (`IP_BIND_ADDRESS_NO_PORT`):
    /// the socket has none until it connects, then one of the kernel's choice, from the source.
    #[test]
    fn a_source_without_port_gets_its_port_at_the_connect() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let s = socket();
        bind_source(s.as_fd(), &source("127.0.0.2:0"), to, None, None).unwrap();
        let bound = s.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(
            bound,
            "127.0.0.2:0".parse().unwrap(),
            "a port was taken at bind"
        );
        s.connect(&to.into()).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        assert_ne!(peer.port(), 0);
    }

    #[test]
    fn a_source_with_a_port_binds_it_and_errors_name_the_source() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let port = TcpListener::bind("127.0.0.3:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = socket();
        bind_source(
            s.as_fd(),
            &source(&format!("127.0.0.3:{port}")),
            to,
            None,
            None,
        )
        .unwrap();
        s.connect(&to.into()).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.to_string(), format!("127.0.0.3:{port}"));

        let e = bind_source(socket().as_fd(), &source("192.0.2.7:0"), to, None, None).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            None,
            "the kernel's error is wrapped with the source"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("source 192.0.2.7:0: ") && text.contains("Cannot assign"),
            "{text}"
        );
        let e = bind_source(socket().as_fd(), &source("[::1]:0"), to, None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("source [::1]:0: the address is IPv6, the server's address {to} IPv4")
        );
        let mut dev = source("127.0.0.2:0");
        dev.interface = Some("no-such-dev0".to_owned());
        let e = bind_source(socket().as_fd(), &dev, to, None, None).unwrap_err();
        assert!(e.to_string().contains("interface 'no-such-dev0'"), "{e}");
    }

    fn transparent(fd: BorrowedFd<'_>) -> i32 {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` outlive the call and `len` is `v`'s size.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_TRANSPARENT,
                (&raw mut v).cast(),
                &raw mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    /// `usesrc`: a connection binds the client's address (and port with `client`) on a
    /// transparent socket; a check (no client) binds the plain source on a plain socket; a
    /// client of another family than the server's fails with the reason. (Loopback addresses
    /// are local: the foreign bind itself is shown by the `tproxy` end-to-end test.)
    #[test]
    fn usesrc_binds_the_clients_address_and_checks_the_plain_source() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let mut src = source("127.0.0.2:0");
        src.usesrc = Some(UseSrc::Client);
        let client: std::net::SocketAddr = "127.0.0.9:61240".parse().unwrap();
        let s = socket();
        match bind_source(s.as_fd(), &src, to, None, Some(client)) {
            Ok(None) => {
                assert_eq!(transparent(s.as_fd()), 1);
                s.connect(&to.into()).unwrap();
                let (_, peer) = l.accept().unwrap();
                assert_eq!(peer, client, "the client's address and port");
            }
            // Without CAP_NET_ADMIN: the error names the option and the capability.
            Err(e) => assert!(
                e.to_string()
                    .contains("IP_TRANSPARENT (it needs CAP_NET_ADMIN)"),
                "{e}"
            ),
            Ok(Some(_)) => panic!("no range, no lease"),
        }
        let s = socket();
        bind_source(s.as_fd(), &src, to, None, None).unwrap();
        assert_eq!(
            transparent(s.as_fd()),
            0,
            "a check's socket is not transparent"
        );
        s.connect(&to.into()).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(
            peer.ip().to_string(),
            "127.0.0.2",
            "a check: the plain source"
        );

        let v6: std::net::SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
        let e = bind_source(socket().as_fd(), &src, to, None, Some(v6)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot bind to tproxy source address [2001:db8::7]:5000 (source 127.0.0.2:0 \
                 usesrc client): the client is IPv6, the server's address {to} IPv4"
            )
        );
        src.usesrc = Some(UseSrc::Addr("[2001:db8::5]:0".parse().unwrap()));
        let e = bind_source(socket().as_fd(), &src, to, None, Some(client)).unwrap_err();
        assert!(e.to_string().contains("the address is IPv6"), "{e}");
    }

    /// A range binds a free port of it, skips a port the bind refuses (held by a listener
    /// here), holds it until the lease drops, and says when none is left.
    #[test]
    fn a_source_range_binds_a_free_port_of_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        // Above the ephemeral range: nothing else here takes them.
        let (lo, hi) = (61_230, 61_231);
        let busy = TcpListener::bind(("127.0.0.4", lo)).unwrap();
        let mut src = source("127.0.0.4:0");
        src.ports = Some((lo, hi));
        let pool = PortPool::new((lo, hi));
        let s = socket();
        let lease = bind_source(s.as_fd(), &src, to, Some(&pool), None)
            .unwrap()
            .unwrap();
        assert_eq!(lease.port(), hi, "the port in use was skipped");
        s.connect(&to.into()).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.to_string(), format!("127.0.0.4:{hi}"));
        // lo went back to the pool but is still in use: with hi held, nothing binds.
        let e = bind_source(socket().as_fd(), &src, to, Some(&pool), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("source 127.0.0.4:{lo}-{hi}: ")),
            "{e}"
        );
        drop(busy);
        let e2 = bind_source(socket().as_fd(), &src, to, Some(&pool), None)
            .unwrap()
            .unwrap();
        assert_eq!(e2.port(), lo);
        let e = bind_source(socket().as_fd(), &src, to, Some(&pool), None).unwrap_err();
        assert!(
            e.to_string().contains("no free port left in the range"),
            "{e}"
        );
        drop(lease);
        assert_eq!(pool.free(), 1);
    }
}
