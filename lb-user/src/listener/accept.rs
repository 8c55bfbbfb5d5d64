//! The accept loop of one address on one thread: its frontend's state (`disable|shutdown
//! frontend`), `maxconn` and the fd budget gate each accept. Accepts go through the thread's
//! ring where it has one ([`crate::ring::Accept`]), else by readiness on the reactor
//! (`accept4`).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::ctx::ThreadCtx;
use super::frontends::is_listening;
use super::permit::{below_maxconn, below_rate, rate_limited, ConnPermit};
use super::serve::handle;

use crate::fd_budget::{self, Use};
use crate::fe_state::FeState;

/// Accepts on one address while the thread serves it, each connection in its own task.
/// `listener` is non-blocking. While the address's frontend is paused or shut down, the loop
/// waits (no accept in flight) until a change of state or a reload makes it ready again.
pub(super) async fn accept_loop(addr: SocketAddr, mut listener: Listener, ctx: Rc<ThreadCtx>) {
    let _live = crate::upgrade::Unfinished::enter();
    let budget = fd_budget::process();
    // One wait for the soft stop for the loop's life, not one per accept.
    let mut stop = pin!(crate::upgrade::soft_stopped());
    loop {
        below_maxconn(&ctx, addr).await;
        let Some((gen, frontend)) = ctx.serving(addr) else {
            return;
        };
        if gen.fe_states.get(frontend) != FeState::Ready {
            drop(gen);
            if !until_ready(&ctx, addr, stop.as_mut()).await {
                return;
            }
            listener = match listener.listening_again() {
                Ok(l) => l,
                Err(e) => {
                    log::error!("cannot accept on {addr} again: {e}");
                    return;
                }
            };
            continue;
        }
        below_rate(&gen, frontend).await;
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
        // the ring's accept took as the stop came is served, and so are those queued when it
        // was cancelled (their wake may have been this accept's), then the loop ends.
        let Some((accepted, last)) = listener.accept(addr, stop.as_mut()).await else {
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
            // The socket stopped listening. Its frontend was paused or shut down (the state
            // changes first): wait at the top of the loop; or it was paused and resumed since
            // (it listens again): accept again. Else it was shut down as the process stops.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if gen.fe_states.get(frontend) != FeState::Ready || listener.listens() {
                    drop(fds);
                    continue;
                }
                return;
            }
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
        let rate_limited = rate_limited(&gen, frontend);
        let permit = ConnPermit::count(
            &gen,
            frontend,
            Some(addr),
            super::spread::accepted(ctx.thread),
        );
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            // `fds` is held until the client's and the server's sockets are closed (the task
            // may end before: a flow on the ring holds it then). Boxed here, in the task: the
            // spawn moves only the arguments, not the whole connection's future.
            Box::pin(handle(
                &gen,
                frontend,
                client,
                (peer, addr),
                &ctx,
                (permit, fds),
            ))
            .await;
        });
        if rate_limited {
            // The connection's first turn runs its connection and session rules, which count
            // it in the rate (or not): before the next accept looks at the rate.
            tokio::task::yield_now().await;
        }
        if last {
            return;
        }
    }
}

/// Waits until the frontend `addr` serves is ready (`true`), or the address was removed or the
/// process soft-stopped (`false`). Woken by each change of a frontend's state and by reloads,
/// not by time: a paused frontend costs its loops nothing.
async fn until_ready(
    ctx: &ThreadCtx,
    addr: SocketAddr,
    stop: Pin<&mut impl Future<Output = ()>>,
) -> bool {
    // The wake-up is every generation's.
    let Some(process) = ctx.with_serving(addr, |gen, _| gen.process.clone()) else {
        return false;
    };
    let ready = || match ctx.with_serving(addr, |gen, f| gen.fe_states.get(f)) {
        None => Some(false),
        Some(FeState::Ready) => Some(true),
        Some(FeState::Paused | FeState::Stopped) => None,
    };
    tokio::select! {
        biased;
        () = stop => false,
        ready = process.fe_state_changed.wait_for(ready, || {}) => ready,
    }
}

/// A listening socket, accepted from through the thread's ring, or by readiness on the
/// reactor where the thread has no ring (registered only then: on the ring, the socket is in
/// no `epoll`, and a client's arrival wakes the thread once, with its accept's completion).
pub(super) enum Listener {
    Ring {
        fd: OwnedFd,
        /// Connections still to take after the soft stop cancelled the ring's accept: those
        /// queued then (see [`Listener::owed_after_cancel`]).
        owed: Cell<u32>,
    },
    Reactor(AsyncFd<OwnedFd>),
}

impl Listener {
    /// Through the ring where this thread has one, else on the reactor.
    pub(super) fn new(fd: OwnedFd) -> io::Result<Self> {
        if crate::ring::available() {
            Ok(Self::Ring {
                fd,
                owed: Cell::new(0),
            })
        } else {
            crate::dataplane::async_fd(fd).map(Self::Reactor)
        }
    }

    /// Whether the socket listens now.
    fn listens(&self) -> bool {
        match self {
            Self::Ring { fd, .. } => is_listening(fd),
            Self::Reactor(l) => is_listening(l.get_ref()),
        }
    }

    /// The listener once its socket listens again after a pause. On the reactor it is
    /// registered afresh: while it did not listen, the socket reported a hang-up, which the
    /// reactor keeps for good (each wait for readiness would then end at once).
    fn listening_again(self) -> io::Result<Self> {
        match self {
            Self::Reactor(l) => crate::dataplane::async_fd(l.into_inner()).map(Self::Reactor),
            ring @ Self::Ring { .. } => Ok(ring),
        }
    }

    /// The next connection, and whether it is the last one (the process soft-stopped while
    /// the ring's accept was in flight: it took one first, or clients it owes were queued);
    /// `None` on soft stop. `stop`: the loop's wait for the soft stop.
    async fn accept(
        &self,
        addr: SocketAddr,
        mut stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<(io::Result<(OwnedFd, SocketAddr)>, bool)> {
        let (fd, owed) = match self {
            Self::Reactor(l) => {
                return tokio::select! {
                    biased;
                    () = stop.as_mut() => None,
                    r = accept(l) => Some((r, false)),
                };
            }
            Self::Ring { fd, owed } => (fd, owed),
        };
        if owed.get() > 0 {
            return take_owed(fd, owed);
        }
        loop {
            // Checked first: an accept queued now would be issued before its cancellation,
            // and could take a client the new process should have.
            if crate::upgrade::is_soft_stopped() {
                return None;
            }
            let mut op = crate::ring::Accept::start(fd.as_fd());
            let (r, stopped) = tokio::select! {
                biased;
                () = stop.as_mut() => {
                    // Cancelled and reaped before the loop ends: once it returns, this
                    // process takes nothing more from the queue but what it owes.
                    op.cancel();
                    (op.done().await, true)
                }
                r = op.done() => (r, false),
            };
            if stopped {
                owed.set(Self::owed_after_cancel(fd, addr));
                return match r {
                    Ok(c) => Some((Ok(c), owed.get() == 0)),
                    Err(_) => take_owed(fd, owed),
                };
            }
            match r {
                Err(e) if is_transient(&e) => {}
                r => return Some((r, false)),
            }
        }
    }

    /// How many connections a soft-stopped loop must still take from `fd` once its ring
    /// accept was cancelled and reaped: every one queued now. The kernel wakes one waiting
    /// accept per arriving connection (the ring's accept waits exclusively, against a
    /// thundering herd); when it woke ours and the cancellation came before our accept ran,
    /// that wake is spent, and the new process's accept on the same shared socket sleeps on
    /// while the client waits in the queue, until another client arrives. Those clients
    /// arrived before the accept was reaped, so they are queued now; any later one wakes the
    /// new process. Taking every queued one here may take some the new process was about to
    /// take: this process serves them (or hands them over) all the same.
    fn owed_after_cancel(fd: &OwnedFd, addr: SocketAddr) -> u32 {
        let queued = crate::dataplane::sockopt::accept_queue(fd.as_fd()).unwrap_or_else(|e| {
            log::warn!("soft stop: {addr}: cannot read the accept queue's length: {e}");
            0
        });
        if queued > 0 {
            log::info!(
                "soft stop: {addr}: taking the {queued} connection(s) queued when the accept \
                 was cancelled (the kernel may have woken this process for them)"
            );
        }
        queued
    }
}

/// One of the connections a soft-stopped loop owes ([`Listener::owed_after_cancel`]), and
/// whether it is the last; `None` once the queue is empty (another process took them).
fn take_owed(fd: &OwnedFd, owed: &Cell<u32>) -> Option<(io::Result<(OwnedFd, SocketAddr)>, bool)> {
    while owed.get() > 0 {
        owed.set(owed.get() - 1);
        match accept4(fd) {
            Err(e) if is_transient(&e) => {}
            Err(_) => break,
            Ok(c) => return Some((Ok(c), owed.get() == 0)),
        }
    }
    owed.set(0);
    None
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
    use io_uring::{opcode, types, IoUring};
    use std::io::{Read as _, Write as _};

    /// Why a soft-stopped loop takes what is queued ([`Listener::owed_after_cancel`]), made
    /// deterministic: two rings wait to accept on one listening socket (the old and the new
    /// process on a handed-over socket); a client arrives and the kernel wakes the first
    /// ring's accept only; that accept is cancelled before it ran (the first ring runs its
    /// completions' work only when it waits, so the cancel lands between the wake and the
    /// accept, as it can when the client arrives during the `io_uring_enter` that carries the
    /// cancellation). The client then waits in the queue while the second ring sleeps on; the
    /// loop's remedy takes it.
    #[test]
    fn a_cancelled_ring_accept_spends_a_queued_clients_wake_and_the_loop_takes_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let fd = OwnedFd::from(l);
        let mut old: IoUring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
            .unwrap();
        let mut new = IoUring::new(8).unwrap();
        let accept = |key| {
            opcode::Accept::new(
                types::Fd(fd.as_raw_fd()),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(key)
        };
        // SAFETY: the entries point at nothing but the listening fd, open to the end.
        unsafe {
            old.submission().push(&accept(1)).unwrap();
            new.submission().push(&accept(2)).unwrap();
        }
        old.submit().unwrap();
        new.submit().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"hello").unwrap();
        let cancel = opcode::AsyncCancel::new(1).build().user_data(3);
        // SAFETY: a cancellation holds no pointer.
        unsafe { old.submission().push(&cancel).unwrap() };
        old.submit_and_wait(2).unwrap();
        let mut old_took = false;
        for cqe in old.completion() {
            if cqe.user_data() == 1 && cqe.result() >= 0 {
                // SAFETY: a successful accept's result is a new fd nobody else owns.
                drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
                old_took = true;
            }
        }
        // The second ring, given time, took nothing: the client's wake was spent.
        let ts = types::Timespec::new().nsec(300_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        let _ = new.submitter().submit_with_args(1, &args);
        let new_took = new
            .completion()
            .any(|c| c.user_data() == 2 && c.result() >= 0);
        assert!(!old_took && !new_took, "this kernel passed the wake on");
        assert_eq!(
            crate::dataplane::sockopt::accept_queue(fd.as_fd()).unwrap(),
            1
        );
        // The loop's remedy.
        let listener = Listener::Ring {
            fd,
            owed: Cell::new(0),
        };
        let Listener::Ring { fd, owed } = &listener else {
            unreachable!()
        };
        owed.set(Listener::owed_after_cancel(fd, addr));
        assert_eq!(owed.get(), 1);
        let (taken, last) = take_owed(fd, owed).expect("the queued client");
        assert!(last);
        let mut server = std::net::TcpStream::from(taken.unwrap().0);
        server.set_nonblocking(false).unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert!(take_owed(fd, owed).is_none(), "nothing more is owed");
    }

    /// The reactor path of a pause: an accept on the unlistened socket fails with `EINVAL` (the
    /// loop then waits for its frontend), and once the socket listens again the listener,
    /// registered afresh, waits for a client instead of finding it "readable" at once forever
    /// (the hang-up it reported while not listening, which the reactor keeps).
    #[test]
    fn a_listener_on_the_reactor_waits_again_once_it_listens_again() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let l = std::net::TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        crate::test_runtime().block_on(async {
            let mut listener = Listener::Reactor(
                crate::dataplane::async_fd(OwnedFd::from(l.try_clone().unwrap())).unwrap(),
            );
            let Listener::Reactor(fd) = &listener else {
                unreachable!()
            };
            let sa = libc::sockaddr {
                sa_family: libc::AF_UNSPEC as libc::sa_family_t,
                sa_data: [0; 14],
            };
            // SAFETY: connect reads the address we pass, on a socket this test owns.
            let r = unsafe {
                libc::connect(
                    l.as_raw_fd(),
                    &raw const sa,
                    std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0);
            assert!(!listener.listens());
            let e = tokio::time::timeout(Duration::from_secs(2), accept(fd))
                .await
                .expect("an accept on an unlistened socket ends at once")
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            socket2::SockRef::from(&l).listen(16).unwrap();
            assert!(listener.listens());
            // Without a new registration, the old readiness stays.
            let Listener::Reactor(fd) = &listener else {
                unreachable!()
            };
            let stale = tokio::time::timeout(Duration::from_millis(100), fd.readable()).await;
            assert!(
                stale.is_ok(),
                "the reactor forgot the hang-up: the test needs a look"
            );
            listener = listener.listening_again().unwrap();
            let Listener::Reactor(fd) = &listener else {
                unreachable!()
            };
            let idle = tokio::time::timeout(Duration::from_millis(100), fd.readable()).await;
            assert!(
                idle.is_err(),
                "readable with no client: an accept loop would spin"
            );
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (conn, _) = tokio::time::timeout(Duration::from_secs(2), accept(fd))
                .await
                .expect("the client is accepted")
                .unwrap();
            drop(conn);
        });
    }

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
