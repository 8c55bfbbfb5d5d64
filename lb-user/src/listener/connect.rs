//! Connecting to a server (`timeout connect`, `retries`, `option redispatch`) and the socket
//! options of either side.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Backend, Keepalive};
use crate::dataplane::sockopt;
use crate::generation::Generation;
use crate::table::{BackendTable, ServerSlot};

/// Makes an accepted socket non-blocking. An accepted socket has no other file status flag
/// set (`O_APPEND`, `O_ASYNC`, ...), so one `F_SETFL` is exact: no `F_GETFL` first.
pub(super) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Socket options of either side: `TCP_NODELAY`, keepalive when configured.
pub(super) fn tune(fd: &OwnedFd, ka: &Keepalive) -> io::Result<()> {
    sockopt::set_nodelay(fd.as_fd())?;
    sockopt::set_keepalive(fd.as_fd(), ka)
}

/// The local address of an accepted socket.
pub(super) fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// Why a connect attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("connection timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One non-blocking connect to `addr`, bounded by `timeout connect`.
pub(super) async fn connect(
    addr: SocketAddr,
    ka: &Keepalive,
    timeout: Option<Duration>,
) -> Result<OwnedFd, ConnectError> {
    // Non-blocking and close-on-exec from creation: no fcntl afterwards.
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let fd: OwnedFd = sock.into();
    tune(&fd, ka)?;
    let sock = Socket::from(fd);
    match sock.connect(&addr.into()) {
        Ok(()) => return Ok(sock.into()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let afd = crate::dataplane::async_fd(sock.into())?;
    let wait = async {
        loop {
            let mut guard = afd.writable().await?;
            guard.clear_ready();
            if let Some(e) = sockopt::take_error(afd.get_ref().as_fd()) {
                return Err(e);
            }
            // Writable with no error: connected (check, as spurious wakeups exist).
            // SAFETY: getpeername writes at most `len` bytes into the storage.
            let connected = unsafe {
                let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                libc::getpeername(
                    afd.get_ref().as_raw_fd(),
                    std::ptr::from_mut(&mut ss).cast(),
                    &raw mut len,
                ) == 0
            };
            if connected {
                return Ok::<(), io::Error>(());
            }
        }
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, wait).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnectError::Timeout(t)),
        },
        None => wait.await?,
    }
    Ok(afd.into_inner())
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

/// Connects to the slot's server, re-trying `retries` times; with `option redispatch` the last
/// retry goes to another server. Between retries on the same server after an immediate
/// failure, waits HAProxy's turn-around time, min(`timeout connect`, 1 s).
pub(super) async fn connect_with_retries(
    gen: &Generation,
    table: &Arc<BackendTable>,
    be: &Backend,
    client: SocketAddr,
    dst_port: u16,
    mut slot: ServerSlot,
    tries: &mut ConnectTries,
) -> Result<(ServerSlot, OwnedFd), String> {
    let mut last_error;
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let result = connect(slot.target(dst_port), &be.keepalive, be.timeouts.connect).await;
        let backend = (be.id as usize).saturating_sub(1);
        gen.passive
            .connect_result(backend, slot.index(), result.is_ok());
        match result {
            Ok(fd) => return Ok((slot, fd)),
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
        let turnaround = be
            .timeouts
            .connect
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        if started.elapsed() < turnaround {
            tokio::time::sleep_until(started + turnaround).await;
        }
    }
}
