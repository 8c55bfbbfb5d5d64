//! The accept loop of one address on one thread: `maxconn` and the fd budget gate each accept.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::ctx::ThreadCtx;
use super::permit::{below_maxconn, ConnPermit};
use super::serve::handle;

use crate::fd_budget::{self, Use};

/// Accepts one connection when the socket is ready. Readiness, not an `io_uring` accept: a
/// pending accept would take a connection even after a soft stop, from a queue the listening
/// socket shares with a new process (binary upgrade); dropping this future takes nothing.
async fn accept_ready(l: &AsyncFd<TcpListener>) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut ready = l.readable().await?;
        if let Ok(r) = ready.try_io(|l| l.get_ref().accept()) {
            return r;
        }
    }
}

/// Accepts on one address while the thread serves it, each connection in its own task.
pub(super) async fn accept_loop(
    addr: SocketAddr,
    listener: AsyncFd<TcpListener>,
    ctx: Rc<ThreadCtx>,
) {
    let _live = crate::upgrade::AcceptLoop::enter();
    let budget = fd_budget::process();
    while let Some((gen, frontend)) = ctx.serving(addr) {
        below_maxconn(&gen, frontend).await;
        // Never accept what can't be served: the connection's fds are set aside first; while
        // there are none, clients wait in the backlog.
        let name = &gen.config.frontends[frontend].name;
        let mut fds = budget
            .take(fd_budget::ACCEPT_FDS, Use::Connection, || {
                budget.warn(|| {
                    format!(
                        "frontend '{name}': {}; not accepting on {addr} until connections \
                         close (clients wait in the backlog)",
                        budget.describe()
                    )
                });
            })
            .await;
        let accepted = tokio::select! {
            biased;
            // Soft stop: queued clients stay in the backlog (for the new process).
            () = crate::upgrade::soft_stopped() => return,
            r = accept_ready(&listener) => r,
        };
        // A reload may have happened while we waited: serve what the address serves now.
        let Some((gen, frontend)) = ctx.serving(addr) else {
            // Accepted just as the address was removed: the client gets a close.
            drop(accepted);
            return;
        };
        let (stream, peer) = match accepted {
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
        fds.shrink_to(fd_budget::CONNECTION_FDS);
        // accept4 with SOCK_CLOEXEC.
        let client = OwnedFd::from(stream);
        let permit = ConnPermit::count(&gen, frontend);
        let ctx = ctx.clone();
        tokio_uring::spawn(async move {
            handle(&gen, frontend, client, peer, &ctx, permit).await;
            // The client's and the server's sockets are closed by now.
            drop(fds);
        });
    }
}

/// How long an accept loop pauses after `accept` failed (HAProxy pauses a listener 100 ms).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
