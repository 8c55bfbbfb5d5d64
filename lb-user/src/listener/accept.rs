//! The accept loop of one address on one thread: `maxconn` and the fd budget gate each accept.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use super::ctx::ThreadCtx;
use super::permit::{below_maxconn, ConnPermit};
use super::serve::handle;

use crate::fd_budget::{self, Use};

/// Accepts on one address while the thread serves it, each connection in its own task.
pub(super) async fn accept_loop(
    addr: SocketAddr,
    listener: tokio_uring::net::TcpListener,
    ctx: Rc<ThreadCtx>,
) {
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
        let accepted = listener.accept().await;
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
        // tokio-uring's TcpStream can't give its fd away; take our own (CLOEXEC) copy and let
        // it close the original.
        // SAFETY: fcntl on an fd that `stream` keeps open during the call.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        // Read now: the close below may change errno.
        let dup_error = io::Error::last_os_error();
        drop(stream);
        if fd < 0 {
            budget.warn(|| {
                format!("accept on {addr}: dup failed, client {peer} closed: {dup_error}")
            });
            continue;
        }
        fds.shrink_to(fd_budget::CONNECTION_FDS);
        // SAFETY: `fd` was just created by F_DUPFD_CLOEXEC and is owned by nobody else.
        let client = unsafe { OwnedFd::from_raw_fd(fd) };
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
