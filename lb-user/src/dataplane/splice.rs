//! The userspace-driven data plane: splice(2) socket -> pipe -> socket, one pipe per direction
//! while bytes are moving, non-blocking, on the thread's event loop. Bytes move between kernel
//! buffers; none is copied into this process. Also the per-flow fallback of the sockmap plane.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use crate::fd_budget::{self, FdLease, Use};

use super::{
    drive_or_hand_over, sockopt, DirEnd, Driven, Flow, FlowReport, FlowTimeouts, HandOverAt,
    KillSwitch, Stop,
};

/// Pipe capacity asked for with `F_SETPIPE_SZ`. Larger than the 64 KiB default so that one
/// splice moves a socket's worth of data; falls back silently to the default when the
/// `fs.pipe-max-size` limit refuses it.
const PIPE_SIZE: i32 = 1 << 20;

/// Most bytes moved by one splice call.
const SPLICE_CHUNK: usize = 1 << 20;

/// Empty pipes kept per thread for reuse. A direction leases a pipe only while its bytes are
/// moving and returns it once drained (HAProxy's pipe pool, `maxpipes`): an idle connection
/// holds no pipe (2 fds instead of 6), and a short one costs no pipe2/fcntl/close.
const POOL_MAX: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A direction's pipe, if it holds one, and how many bytes are in it. Dropping it returns an
/// empty pipe to the pool (a pipe with bytes left, after an error, is closed instead).
#[derive(Default)]
struct Lease {
    pipe: Option<Pipe>,
    len: usize,
}

impl Lease {
    /// Makes sure the direction holds a pipe: its own, one from the pool, or a new one when
    /// the process's fd budget has room for it now. `Ok(false)`: it has none; wait with
    /// [`wait_for_pipe`] (pipes come back as other flows' bytes drain, and pools give theirs
    /// back while someone waits).
    fn provide(&mut self) -> io::Result<bool> {
        if self.pipe.is_none() {
            self.pipe = match POOL.with(|p| p.borrow_mut().pop()) {
                Some(p) => Some(p),
                None => match fd_budget::process().try_take(fd_budget::PIPE_FDS, Use::Pipe) {
                    Some(fds) => Some(Pipe::new(fds)?),
                    None => return Ok(false),
                },
            };
        }
        Ok(true)
    }

    /// Returns the pipe to the pool once it is empty; closes it instead when the pool is full
    /// or someone waits for fds (a pipe pooled on an idle thread would be lost to them).
    fn release_if_empty(&mut self) {
        if self.len == 0 {
            if let Some(p) = self.pipe.take() {
                let budget = fd_budget::process();
                let room = POOL_MAX.min(pool_max_for(budget.pipe_share()));
                if budget.has_waiters() {
                    return;
                }
                POOL.with(|pool| {
                    let mut pool = pool.borrow_mut();
                    if pool.len() < room {
                        pool.push(p);
                    }
                });
            }
        }
    }
}

/// Waits until the fd budget has room for a pipe, saying so at most once a second.
async fn wait_for_pipe() -> FdLease {
    let budget = fd_budget::process();
    budget
        .take(fd_budget::PIPE_FDS, Use::Pipe, || {
            budget.warn(|| {
                format!(
                    "splice: {}; flows wait for a pipe until others drain",
                    budget.describe()
                )
            });
        })
        .await
}

/// A pipe could not be created although the budget had room (fds it does not count ran
/// out): this flow ends, the others go on.
fn pipe_failed(e: &io::Error) -> DirEnd {
    fd_budget::process().warn(|| format!("splice: cannot create a pipe: {e}"));
    DirEnd::Local
}

/// Pipes one thread's pool may keep: a quarter of the pipes the fd budget has room for, so
/// that pools on idle threads never hold more than that.
fn pool_max_for(pipe_share: u64) -> usize {
    usize::try_from(pipe_share / fd_budget::PIPE_FDS / 4).unwrap_or(usize::MAX)
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release_if_empty();
    }
}

/// A non-blocking pipe; both ends close on drop, then its fds go back to the process's fd
/// budget.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Declared last: gives the fds back once both ends are closed.
    _counted: Counted,
}

/// A pipe's fds, taken from the process's fd budget: a count, not an [`FdLease`] (no room in
/// every flow's future for the lease's handle). Gives them back when dropped.
struct Counted;

impl Counted {
    fn from(lease: FdLease) -> Self {
        debug_assert_eq!(lease.count(), fd_budget::PIPE_FDS);
        lease.into_raw();
        Self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        fd_budget::process().give_back(fd_budget::PIPE_FDS);
    }
}

impl Pipe {
    fn new(lease: FdLease) -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own fd; failure only leaves the default size.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Self {
            read,
            write,
            _counted: Counted::from(lease),
        })
    }
}

fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the duration of the call; null offsets = use file position.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves bytes `src` -> `dst` until `src`'s EOF (then shuts `dst`'s write side) or an error.
/// `done` is set once the source's FIN was passed on. `stop` counts the pump parked while it
/// waits for its source with nothing held in its pipe (dropping it then loses nothing), and
/// holds it there while a stop is requested.
pub(super) async fn pump(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    bytes: &Cell<u64>,
    last: &Cell<Instant>,
    done: &Cell<bool>,
    stop: &Stop,
) -> DirEnd {
    let mut lease = Lease::default();
    let mut eof = false;
    // The source's receive queue was found empty by the last read (or nothing was read yet):
    // no skb in it is partly read. Only then may the pump be held for a hand-over, because the
    // verdict program gets whole skbs, and a partly read one would be forwarded twice.
    let mut drained = true;
    loop {
        if let (Some(pipe), true) = (&lease.pipe, lease.len > 0) {
            let Ok(mut guard) = dst.writable().await else {
                return DirEnd::DstReset;
            };
            match guard.try_io(|_| splice(&pipe.read, dst.get_ref(), lease.len)) {
                Ok(Ok(n)) => {
                    lease.len -= n;
                    bytes.set(bytes.get() + n as u64);
                    last.set(Instant::now());
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => return DirEnd::DstReset,
                Err(_would_block) => {}
            }
            continue;
        }
        lease.release_if_empty();
        if eof {
            done.set(true);
            return match sockopt::shutdown_write(dst.get_ref().as_fd()) {
                Ok(()) => DirEnd::Fin,
                Err(_) => DirEnd::DstReset,
            };
        }
        // Parked: the pipe is empty. Waiting at `readable` means the last read found the
        // queue empty (tokio clears readiness only then), so a pump the driver sees suspended
        // here or at `held` is drained. Separate awaits, not one future wrapping the other: the
        // flow's future keeps room for the larger of the two only.
        stop.park();
        if drained {
            stop.held().await;
        }
        let ready = src.readable().await;
        stop.leave();
        let Ok(mut guard) = ready else {
            return DirEnd::SrcReset;
        };
        match lease.provide() {
            Ok(true) => {}
            Ok(false) => {
                // No room for a pipe now: wait for one without holding the readiness (boxed:
                // rare, and every flow's future would carry it), then read again.
                drop(guard);
                match Pipe::new(Box::pin(wait_for_pipe()).await) {
                    Ok(p) => lease.pipe = Some(p),
                    Err(e) => return pipe_failed(&e),
                }
                continue;
            }
            Err(e) => return pipe_failed(&e),
        }
        let Some(pipe) = &lease.pipe else {
            return DirEnd::Local;
        };
        match guard.try_io(|_| splice(src.get_ref(), &pipe.write, SPLICE_CHUNK)) {
            Ok(Ok(0)) => eof = true,
            Ok(Ok(n)) => {
                lease.len += n;
                last.set(Instant::now());
                drained = false;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return DirEnd::SrcReset,
            Err(_would_block) => drained = true,
        }
    }
}

/// Forwards `client` <-> `server` with splice(2) until both FINs, a reset, or an idle timeout.
pub async fn forward(
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
) -> FlowReport {
    match forward_until(client, server, t, kill, None).await {
        Spliced::Done(report) => report,
        // Never without a hand-over time.
        Spliced::HandOver(_) => FlowReport::local_error(),
    }
}

/// A flow stopped by [`forward_until`] at a quiet point, for the sockmap plane to take over.
pub(super) struct HandOver {
    pub client: OwnedFd,
    pub server: OwnedFd,
    /// Bytes passed on so far, client -> server and server -> client.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The flow's last activity.
    pub last: Instant,
}

pub(super) enum Spliced {
    Done(FlowReport),
    HandOver(HandOver),
}

/// [`forward`]; with `hand_over_at`, stops from then on at the first moment when both
/// directions are still open and hold no byte in a pipe, and gives the sockets back.
pub(super) async fn forward_until(
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
    hand_over_at: Option<Instant>,
) -> Spliced {
    let (Ok(client), Ok(server)) = (super::async_fd(client), super::async_fd(server)) else {
        return Spliced::Done(FlowReport::local_error());
    };
    let bytes_in = Cell::new(0u64);
    let bytes_out = Cell::new(0u64);
    let last = Cell::new(Instant::now());
    let client_done = Cell::new(false);
    let server_done = Cell::new(false);
    let stop = Stop::default();
    let flow = Flow {
        t: &t,
        since: last.get(),
        last_activity: &|| last.get(),
        client_done: &client_done,
        server_done: &server_done,
        kill,
    };
    let driven = {
        // Pinned where they are built: moved into `drive_or_hand_over`, each would take room
        // in the flow's future twice. Dropped at the end of this block, before a hand-over
        // gives the sockets back.
        let up = pin!(pump(
            &client,
            &server,
            &bytes_in,
            &last,
            &client_done,
            &stop
        ));
        let down = pin!(pump(
            &server,
            &client,
            &bytes_out,
            &last,
            &server_done,
            &stop
        ));
        let hand_over = hand_over_at.map(|at| HandOverAt { at, stop: &stop });
        drive_or_hand_over(up, down, &flow, hand_over).await
    };
    let end = match driven {
        Driven::Ended(end) => end,
        Driven::HandOver => {
            return Spliced::HandOver(HandOver {
                client: client.into_inner(),
                server: server.into_inner(),
                bytes_in: bytes_in.get(),
                bytes_out: bytes_out.get(),
                last: last.get(),
            })
        }
    };
    super::pass_reset_on(end, client.get_ref().as_fd(), server.get_ref().as_fd());
    Spliced::Done(FlowReport {
        bytes_in: bytes_in.get(),
        bytes_out: bytes_out.get(),
        end,
        spliced_in_kernel: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_len() -> usize {
        POOL.with(|p| p.borrow().len())
    }

    #[test]
    fn an_empty_pipe_goes_back_to_the_pool_and_is_reused() {
        let before = pool_len();
        let fd = {
            let mut lease = Lease::default();
            assert!(lease.provide().unwrap());
            let fd = lease.pipe.as_ref().unwrap().read.as_raw_fd();
            assert_eq!(pool_len(), before.saturating_sub(1));
            fd
        };
        assert_eq!(pool_len(), before.max(1), "returned on drop");
        let mut again = Lease::default();
        assert_eq!(
            {
                assert!(again.provide().unwrap());
                again.pipe.as_ref().unwrap().read.as_raw_fd()
            },
            fd,
            "the same pipe is reused"
        );
    }

    #[test]
    fn a_pipe_with_bytes_left_is_closed_not_pooled() {
        let mut lease = Lease::default();
        assert!(lease.provide().unwrap());
        let pipe = lease.pipe.as_ref().unwrap();
        // SAFETY: writing 3 bytes from a valid buffer into our own pipe.
        let n = unsafe { libc::write(pipe.write.as_raw_fd(), b"abc".as_ptr().cast(), 3) };
        assert_eq!(n, 3);
        lease.len = 3;
        let before = pool_len();
        drop(lease);
        assert_eq!(
            pool_len(),
            before,
            "a pipe holding bytes must never be reused"
        );
    }
}
