//! Socket I/O of the accept path before a flow reaches the data plane: reading a client's first
//! bytes for the rules (bounded by size and deadlines), writing them (and a PROXY header) to
//! the server, reading the server's first bytes for `tcp-response` rules while the client's
//! bytes keep flowing, and the ways a rule closes a client (reset, `silent-drop`). The decisions
//! themselves are [`crate::session`]'s.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use crate::dataplane::{pass_fin, sockopt, PassFin};

/// How a read for the rules ended.
#[derive(Debug)]
pub enum Read {
    /// Some bytes were added.
    Data,
    /// The peer sent its FIN (it stays readable: the data plane sees it too).
    Eof,
    /// The rules' deadline passed.
    Deadline,
    /// The peer was silent longer than its idle timeout.
    Idle,
    /// The buffer is at `limit`: nothing more may be read.
    Full,
    Error(io::Error),
}

/// Waits until the peer has closed its side (its FIN, or a reset), reading nothing: what it
/// sent stays for the server. `option abortonclose` while a connection waits in the queue.
/// A socket that cannot be watched counts as closed. It goes on the thread's reactor at the
/// first poll, not before.
pub async fn peer_closed(sock: &mut crate::dataplane::Sock) {
    let _on_reactor = crate::ring::spin::OnReactor::enter();
    let Ok(fd) = sock.reactor() else {
        return;
    };
    loop {
        let Ok(mut ready) = fd.ready(tokio::io::Interest::READABLE).await else {
            return;
        };
        let r = ready.ready();
        if r.is_read_closed() || r.is_error() {
            return;
        }
        // Bytes, not the end: wait for the next event (the FIN is one of its own).
        ready.clear_ready_matching(tokio::io::Ready::READABLE);
    }
}

/// Reads what is there (at most up to `limit` bytes in `buf`), waiting at most until
/// `until` (the rules' deadline) and `idle` (`timeout client`).
pub async fn read_more(
    fd: &AsyncFd<OwnedFd>,
    buf: &mut Vec<u8>,
    limit: usize,
    until: Option<Instant>,
    idle: Option<Instant>,
) -> Read {
    let _on_reactor = crate::ring::spin::OnReactor::enter();
    if buf.len() >= limit {
        return Read::Full;
    }
    let wake = match (until, idle) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    loop {
        let ready = match wake {
            Some(at) => match tokio::time::timeout_at(at.into(), fd.readable()).await {
                Ok(r) => r,
                Err(_) => {
                    return if until.is_some_and(|u| Instant::now() >= u) {
                        Read::Deadline
                    } else {
                        Read::Idle
                    }
                }
            },
            None => fd.readable().await,
        };
        let mut guard = match ready {
            Ok(g) => g,
            Err(e) => return Read::Error(e),
        };
        match guard.try_io(|f| recv_into(f.get_ref().as_fd(), buf, limit)) {
            Ok(Ok(0)) => return Read::Eof,
            Ok(Ok(_)) => return Read::Data,
            Ok(Err(e)) => return Read::Error(e),
            Err(_would_block) => {}
        }
    }
}

/// One `recv` appending to `buf` (at most up to `limit` bytes in it).
fn recv_into(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let room = limit.saturating_sub(buf.len()).min(64 * 1024);
    let start = buf.len();
    buf.resize(start + room, 0);
    // SAFETY: recv writes at most `room` bytes into the `room` bytes just reserved at `start`.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf[start..].as_mut_ptr().cast(),
            room,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        buf.truncate(start);
        return Err(io::Error::last_os_error());
    }
    buf.truncate(start + n as usize);
    Ok(n as usize)
}

/// Writes all of `data`, waiting for room at most until `deadline`.
pub async fn write_all(
    fd: &AsyncFd<OwnedFd>,
    mut data: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    let _on_reactor = crate::ring::spin::OnReactor::enter();
    while !data.is_empty() {
        let ready = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), fd.writable())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?,
            None => fd.writable().await,
        };
        let mut guard = ready?;
        match guard.try_io(|f| send(f.get_ref().as_fd(), data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: send reads at most `data.len()` bytes from `data`.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Closes with a reset (HAProxy's close of a rejected connection: `SO_LINGER` 0).
pub fn reset(fd: OwnedFd) {
    let _ = sockopt::set_linger_zero(fd.as_fd());
    drop(fd);
}

/// `silent-drop`: closes without the client hearing of it. HAProxy puts the socket in
/// `TCP_REPAIR` mode (nothing is sent at close; needs `CAP_NET_ADMIN`), else sets the TTL /
/// hop limit to 1 so the reset dies on the first router (no effect on a local network).
pub fn silent_drop(fd: OwnedFd, v6: bool) {
    let raw = fd.as_raw_fd();
    let one: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: setsockopt with a c_int option value on a socket we own.
        unsafe {
            libc::setsockopt(
                raw,
                level,
                name,
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::IPPROTO_TCP, libc::TCP_REPAIR) {
        if v6 {
            set(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS);
        } else {
            set(libc::IPPROTO_IP, libc::IP_TTL);
        }
    }
    reset(fd);
}

/// What happened while the response rules waited.
#[derive(Debug)]
pub enum Pumped {
    /// The server's buffer changed (`eof`: it closed).
    Server { eof: bool },
    /// The client's FIN stopped the server side (the backend's `option nolinger`,
    /// [`PassFin::ResetServer`]): nothing was passed on to the server, which is to be reset.
    ServerStopped,
    /// The rules' deadline passed.
    Deadline,
    /// A side failed.
    Error(io::Error),
}

/// Waits for the server's next bytes (into `res`, up to `limit`) until `until`, meanwhile
/// passing what the client sends, and its FIN, on to the server (a server that answers only
/// after more of the request, or after its end, must not stall). Counts the client bytes it
/// passed on in `up`. The FIN is passed on as [`pass_fin`] says (`nolinger`: the backend's
/// `option nolinger`); the server has not sent its own (the rules wait no longer after it).
#[expect(
    clippy::too_many_arguments,
    reason = "the response rules' buffers and state, each kept by the caller across calls"
)]
pub async fn pump_until_response(
    client: &AsyncFd<OwnedFd>,
    server: &AsyncFd<OwnedFd>,
    res: &mut Vec<u8>,
    limit: usize,
    until: Option<Instant>,
    client_eof: &mut bool,
    up: &mut u64,
    nolinger: bool,
) -> Pumped {
    let _on_reactor = crate::ring::spin::OnReactor::enter();
    let mut chunk = Vec::with_capacity(16 * 1024);
    loop {
        let sleep = async {
            match until {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = read_more(server, res, limit, None, None) => {
                return match r {
                    Read::Data | Read::Full => Pumped::Server { eof: false },
                    Read::Eof => Pumped::Server { eof: true },
                    Read::Error(e) => Pumped::Error(e),
                    Read::Deadline | Read::Idle => Pumped::Deadline,
                };
            }
            r = read_more(client, &mut chunk, 16 * 1024, None, None), if !*client_eof => {
                match r {
                    Read::Data | Read::Full => {
                        if let Err(e) = write_all(server, &chunk, until).await {
                            return Pumped::Error(e);
                        }
                        *up += chunk.len() as u64;
                        chunk.clear();
                    }
                    // The server may wait for the client's end before it answers: pass the FIN
                    // on now (the data plane finds it again and passes it on harmlessly).
                    Read::Eof => {
                        *client_eof = true;
                        if pass_fin(true, false, nolinger) == PassFin::ResetServer {
                            return Pumped::ServerStopped;
                        }
                        if let Err(e) = sockopt::shutdown_write(server.get_ref().as_fd()) {
                            return Pumped::Error(e);
                        }
                    }
                    Read::Error(e) => return Pumped::Error(e),
                    Read::Deadline | Read::Idle => {}
                }
            }
            () = sleep => return Pumped::Deadline,
        }
    }
}
