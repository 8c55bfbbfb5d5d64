//! The accept loop of one address on one thread: `maxconn` and the fd budget gate each accept.
//! Accepts go through the thread's ring where it has one ([`crate::ring::Accept`]), else by
//! readiness on the reactor (`accept4`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::ctx::ThreadCtx;
use super::permit::{below_maxconn, ConnPermit};
use super::serve::handle;

use crate::fd_budget::{self, Use};

/// Accepts on one address while the thread serves it, each connection in its own task.
/// `listener` is non-blocking.
pub(super) async fn accept_loop(addr: SocketAddr, listener: Listener, ctx: Rc<ThreadCtx>) {
    let _live = crate::upgrade::AcceptLoop::enter();
    let budget = fd_budget::process();
    while let Some((gen, frontend)) = ctx.serving(addr) {
        below_maxconn(&gen, frontend).await;
        // Never accept what can't be served: the connection's fds are set aside first; while
        // there are none, clients wait in the backlog.
        let name = &gen.config.frontends[frontend].name;
        let fds = budget
            .take(fd_budget::CONNECTION_FDS, Use::Connection, || {
                budget.warn(|| {
                    format!(
                        "frontend '{name}': {}; not accepting on {addr} until connections \
                         close (clients wait in the backlog)",
                        budget.describe()
                    )
                });
            })
            .await;
        // Soft stop: queued clients stay in the backlog (for the new process); a connection
        // the ring's accept took as the stop came is served, then the loop ends.
        let Some((accepted, last)) = listener.accept().await else {
            return;
        };
        // A reload may have happened while we waited: serve what the address serves now.
        let Some((gen, frontend)) = ctx.serving(addr) else {
            // Accepted just as the address was removed: the client gets a close.
            drop(accepted);
            return;
        };
        let (client, peer) = match accepted {
            Ok(x) => x,
            // The listening socket was shut down (process stop): nothing more to accept.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS/ENOMEM (fds lb did not count, or the system's): the
                // client stays in the backlog; pause as HAProxy does, warn at most once a second.
                budget.warn(|| {
                    format!(
                        "frontend '{}': accept failed on {addr}: {e}; pausing {ACCEPT_PAUSE:?} \
                         (clients wait in the backlog)",
                        gen.config.frontends[frontend].name
                    )
                });
                drop(fds);
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        super::trim::accepted();
        let permit = ConnPermit::count(&gen, frontend);
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            // `fds` is held until the client's and the server's sockets are closed (the task
            // may end before: a flow on the ring holds it then).
            handle(&gen, frontend, client, (peer, addr), &ctx, (permit, fds)).await;
        });
        if last {
            return;
        }
    }
}

/// A listening socket, accepted from through the thread's ring, or by readiness on the
/// reactor where the thread has no ring (registered only then: on the ring, the socket is in
/// no `epoll`, and a client's arrival wakes the thread once, with its accept's completion).
pub(super) enum Listener {
    Ring(OwnedFd),
    Reactor(AsyncFd<OwnedFd>),
}

impl Listener {
    /// Through the ring where this thread has one, else on the reactor.
    pub(super) fn new(fd: OwnedFd) -> io::Result<Self> {
        if crate::ring::available() {
            Ok(Self::Ring(fd))
        } else {
            crate::dataplane::async_fd(fd).map(Self::Reactor)
        }
    }

    /// The next connection, and whether it is the last one (the process soft-stopped while
    /// the ring's accept was in flight and it took one first); `None` on soft stop.
    async fn accept(&self) -> Option<(io::Result<(OwnedFd, SocketAddr)>, bool)> {
        let fd = match self {
            Self::Reactor(l) => {
                return tokio::select! {
                    biased;
                    () = crate::upgrade::soft_stopped() => None,
                    r = accept(l) => Some((r, false)),
                };
            }
            Self::Ring(fd) => fd,
        };
        loop {
            // Checked first: an accept queued now would be issued before its cancellation,
            // and could take a client the new process should have.
            if crate::upgrade::is_soft_stopped() {
                return None;
            }
            let mut op = crate::ring::Accept::start(fd.as_fd());
            let (r, stopped) = tokio::select! {
                biased;
                () = crate::upgrade::soft_stopped() => {
                    // Cancelled and reaped before the loop ends: once it returns, this
                    // process takes nothing more from the queue.
                    op.cancel();
                    (op.done().await, true)
                }
                r = op.done() => (r, false),
            };
            match r {
                Err(_) if stopped => return None,
                Err(e) if is_transient(&e) => {}
                r => return Some((r, stopped)),
            }
        }
    }
}

/// How long an accept loop pauses after `accept` failed (HAProxy pauses a listener 100 ms).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One connection from the listening socket by readiness, on a thread without a ring:
/// `accept4` hands it over non-blocking and close-on-exec, with the client's address (no
/// `fcntl`, no `getpeername` afterwards); dropping this future takes nothing.
/// Sockets accepted inherit the listener's `TCP_NODELAY` (set in `thread::serve_listener`).
async fn accept(listener: &AsyncFd<OwnedFd>) -> io::Result<(OwnedFd, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        match ready.try_io(|l| accept4(l.get_ref())) {
            // A connection that failed in the queue (man accept(2): Linux passes its pending
            // network error to accept): the next one may be fine, no pause.
            Ok(Err(e)) if is_transient(&e) => {}
            Ok(r) => return r,
            Err(_would_block) => {}
        }
    }
}

/// An `accept` error that concerns the one connection, not the listener or the process.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

fn accept4(listener: &OwnedFd) -> io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: accept4 writes at most `len` bytes of address into the storage try_init gives it,
    // and sets `len` to what it wrote; a returned fd >= 0 is new and owned by nobody else.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(OwnedFd::from_raw_fd(fd))
            }
        })?
    };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
    Ok((fd, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_accept_errors_are_transient_and_fd_exhaustion_is_not() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(is_transient(&e(libc::ECONNABORTED)));
        assert!(is_transient(&e(libc::EPROTO)));
        assert!(!is_transient(&e(libc::EMFILE)));
        assert!(!is_transient(&e(libc::ENFILE)));
        assert!(
            !is_transient(&e(libc::EINVAL)),
            "a shut listener ends the loop"
        );
    }
}
