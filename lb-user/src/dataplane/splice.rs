//! The userspace-driven data plane, non-blocking on the thread's event loop. Each direction
//! starts on the copy path (read into a small pooled buffer, write it out: a short exchange
//! costs no pipe and no failing splice), and moves to splice(2) socket -> pipe -> socket, with
//! a pipe from the pool, once a read fills the buffer (HAProxy's `splice-auto`). Also the
//! per-flow path of the sockmap plane until its hand-over.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use crate::fd_budget::{self, FdLease, Use};

use super::{
    drive_or_hand_over, sockopt, DirEnd, Driven, Ends, Flow, FlowReport, FlowTimeouts, HandOverAt,
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
/// holds no pipe (2 fds instead of 6), and a short one costs no pipe2/fcntl/close. Fewer when
/// the process's fd budget is small (see [`pool_max_for`]).
const POOL_MAX: usize = 256;

/// Empty copy buffers kept per thread for reuse (a direction holds one only while its bytes
/// move, as with pipes).
const BUF_POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static BUFS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer from the thread's pool, or a new one.
fn take_buf() -> Box<[u8]> {
    BUFS.with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; COPY_BUF].into_boxed_slice())
}

/// Pipes open in the process (leased and pooled) and the most allowed at once (`maxpipes`).
static PIPES: AtomicUsize = AtomicUsize::new(0);
static MAXPIPES: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the process-wide limit of splice pipes (global `maxpipes`; `None` = no limit). A
/// direction that finds no free pipe and the limit reached (or the process's fd budget spent)
/// copies through a 16 KiB buffer instead (read/write, as `HAProxy` falls back to its
/// buffers), until a pipe is free again.
pub fn set_maxpipes(max: Option<u32>) {
    MAXPIPES.store(max.map_or(usize::MAX, |m| m as usize), Ordering::Relaxed);
}

/// Directions moved from the copy path to splice since start (tests check the move happens).
static MOVED_TO_SPLICE: AtomicUsize = AtomicUsize::new(0);

/// How many directions moved from the copy path to splice since the process started.
pub fn moved_to_splice() -> usize {
    MOVED_TO_SPLICE.load(Ordering::Relaxed)
}

/// Takes one of `max` places in `count`; `false` when all are taken.
fn reserve(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Size of a copy buffer: a direction's reads go through one until a read fills it (then the
/// direction splices), or for good when `maxpipes` leaves no pipe. HAProxy's `bufsize`.
const COPY_BUF: usize = 16 * 1024;

/// What carries a direction's bytes while they move: a buffer (the copy path, or when
/// `maxpipes` left no pipe), or a pipe.
enum Carrier {
    Pipe(Pipe),
    Buf(Box<[u8]>),
}

/// A direction's carrier, if it holds one, and its bytes not yet sent: `len` bytes (from
/// `off` in a buffer). Dropping it returns an empty pipe to the pool (a pipe with bytes left,
/// after an error, is closed instead). `u32` counts: a pipe holds at most a few MiB, a buffer
/// 16 KiB, and every flow's future carries two leases (see `flow_futures_stay_small`).
#[derive(Default)]
struct Lease {
    carrier: Option<Carrier>,
    len: u32,
    off: u32,
}

impl Lease {
    /// The direction's carrier: its own; on the copy path a pooled buffer; to splice, a pooled
    /// pipe, a new pipe within `maxpipes` and the process's fd budget, else a buffer. A pipe
    /// that cannot be created (fds the budget does not count ran out) is a buffer too: the
    /// flow goes on.
    fn carrier(&mut self, splice: bool) -> &mut Carrier {
        let c = match self.carrier.take() {
            Some(c) => c,
            None if !splice => Carrier::Buf(take_buf()),
            None => match POOL.with(|p| p.borrow_mut().pop()) {
                Some(p) => Carrier::Pipe(p),
                None => match new_pipe() {
                    Some(p) => Carrier::Pipe(p),
                    None => Carrier::Buf(take_buf()),
                },
            },
        };
        self.carrier.insert(c)
    }

    /// Returns the pipe or the buffer to its pool once it is empty. The pipe is closed instead
    /// when the pool is full or someone waits for fds (an accept loop): a pipe pooled on an
    /// idle thread would be lost to them.
    fn release_if_empty(&mut self) {
        if self.len == 0 {
            self.off = 0;
            if let Some(Carrier::Buf(b)) = self.carrier.take_if(|c| matches!(c, Carrier::Buf(_))) {
                BUFS.with(|pool| {
                    let mut pool = pool.borrow_mut();
                    if pool.len() < BUF_POOL_MAX {
                        pool.push(b);
                    }
                });
                return;
            }
            if let Some(Carrier::Pipe(p)) = self.carrier.take() {
                let budget = fd_budget::process();
                if budget.has_waiters() {
                    return;
                }
                let room = POOL_MAX.min(pool_max_for(budget.pipe_share()));
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

/// A new pipe, if `maxpipes` and the process's fd budget have room for it.
fn new_pipe() -> Option<Pipe> {
    if !reserve(&PIPES, MAXPIPES.load(Ordering::Relaxed)) {
        return None;
    }
    let Some(fds) = fd_budget::process().try_take(fd_budget::PIPE_FDS, Use::Pipe) else {
        PIPES.fetch_sub(1, Ordering::AcqRel);
        return None;
    };
    match Pipe::new(fds) {
        Ok(p) => Some(p),
        Err(e) => {
            fd_budget::process().warn(|| {
                format!("splice: cannot create a pipe: {e}; copying through a buffer instead")
            });
            None
        }
    }
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

/// A non-blocking pipe; both ends close on drop. Counted in [`PIPES`] (its place is taken by
/// the caller of [`Pipe::new`] and given back on drop), and its fds in the process's fd
/// budget (given back once both ends are closed).
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

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pipe {
    /// A new pipe, in the place the caller reserved in [`PIPES`] and with the fds it took from
    /// the budget (both given back on failure).
    fn new(lease: FdLease) -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            PIPES.fetch_sub(1, Ordering::AcqRel);
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

/// `read(2)` into `buf`.
fn read_into(from: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `write(2)` of `buf` (`MSG_NOSIGNAL`: a closed peer is an error, not a signal).
fn write_from(to: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
    let n = unsafe {
        libc::send(
            to.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
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

/// Moves bytes `src` -> `dst` until `src`'s EOF, then passes it on as [`Ends::fin`] says
/// (`from_client`: this is the client -> server direction), or until an error. The server ->
/// client direction also ends, once it holds nothing, when the client's FIN stopped the server
/// side ([`Ends::server_stopped`]). `stop` counts the pump parked while it waits for its source
/// with nothing held in its pipe (dropping it then loses nothing), and holds it there while a
/// stop is requested. `drained`: nobody read from `src` before.
#[expect(
    clippy::too_many_arguments,
    reason = "each flow's future keeps them: no struct of references beside them"
)]
pub(super) async fn pump(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    bytes: &Cell<u64>,
    last: &Cell<Instant>,
    ends: &Ends,
    from_client: bool,
    stop: &Stop,
    mut drained: bool,
) -> DirEnd {
    let mut lease = Lease::default();
    let mut eof = false;
    // Copy first; splice from the first read that fills the copy buffer on.
    let mut splicing = false;
    // `drained`: the source's receive queue was found empty by the last read (or nothing was
    // read yet, by anyone): no skb in it is partly read. Only then may the pump be held for a
    // hand-over, because the verdict program gets whole skbs, and a partly read one would be
    // forwarded twice.
    loop {
        if let (Some(carrier), true) = (&lease.carrier, lease.len > 0) {
            let Ok(mut guard) = dst.writable().await else {
                return DirEnd::DstReset;
            };
            let (off, len) = (lease.off as usize, lease.len as usize);
            let sent = guard.try_io(|_| match carrier {
                Carrier::Pipe(pipe) => splice(&pipe.read, dst.get_ref(), len),
                Carrier::Buf(buf) => write_from(dst.get_ref(), &buf[off..off + len]),
            });
            match sent {
                Ok(Ok(n)) => {
                    // n <= len, a u32.
                    lease.len -= n as u32;
                    lease.off += n as u32;
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
            return ends.pass_on(from_client, dst.get_ref().as_fd());
        }
        if !from_client && ends.server_stopped() {
            // Everything read from the server was delivered: the flow ends (see
            // `PassFin::ResetServer`).
            return DirEnd::Fin;
        }
        // Parked: the pipe is empty and the last read found the source's queue empty. Only
        // then: a pump waiting for readiness is not drained by that alone, because a socket
        // registered afresh (the data plane's start, after the rules read the first bytes)
        // is not known readable until the reactor's next turn, whatever its queue holds.
        // Separate awaits, not one future wrapping the other: the flow's future keeps room
        // for the larger of the two only.
        let ready = if drained {
            stop.park();
            stop.held().await;
            let ready = src.readable().await;
            stop.leave();
            ready
        } else {
            src.readable().await
        };
        let Ok(mut guard) = ready else {
            return DirEnd::SrcReset;
        };
        if !from_client && ends.server_stopped() {
            // Woken by the stop (`Ends::stop_server`): nothing more is read from the server.
            continue;
        }
        let received = match lease.carrier(splicing) {
            Carrier::Pipe(pipe) => {
                guard.try_io(|_| splice(src.get_ref(), &pipe.write, SPLICE_CHUNK))
            }
            Carrier::Buf(buf) => guard.try_io(|_| read_into(src.get_ref(), buf)),
        };
        match received {
            Ok(Ok(0)) => eof = true,
            Ok(Ok(n)) => {
                // n <= SPLICE_CHUNK or COPY_BUF, and the lease was empty before.
                lease.len += n as u32;
                last.set(Instant::now());
                drained = false;
                if let Some(Carrier::Buf(buf)) = &lease.carrier {
                    if n == buf.len() {
                        // A full buffer: a stream, not an exchange. Once this buffer is out,
                        // the direction splices (where a pipe is to be had).
                        if !splicing {
                            MOVED_TO_SPLICE.fetch_add(1, Ordering::Relaxed);
                        }
                        splicing = true;
                    } else {
                        // A short read took all the socket had: its queue is empty (no skb
                        // partly read), so no second read to learn it. Bytes arriving after
                        // the read bring a new event; a FIN already seen stays ready (tokio
                        // never clears a closed readiness), and the next read finds it.
                        drained = true;
                        guard.clear_ready();
                    }
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return DirEnd::SrcReset,
            Err(_would_block) => drained = true,
        }
    }
}

/// Forwards `client` <-> `server` with splice(2) until both FINs, a reset, an idle timeout or
/// a hand-off to another process. `pre`: bytes lb read from each socket before.
pub async fn forward(
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
    pre: (u64, u64),
) -> FlowReport {
    let (Ok(client), Ok(server)) = (super::async_fd(client), super::async_fd(server)) else {
        return FlowReport::local_error();
    };
    run(client, server, t, kill, None, pre).await.report()
}

/// A flow stopped by [`run`] at a quiet point: for the sockmap plane to take over, or to hand to
/// another process.
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

impl Spliced {
    /// The report of a flow run without a hand-over time (which never hands over).
    pub(super) fn report(self) -> FlowReport {
        match self {
            Self::Done(report) => report,
            Self::HandOver(_) => FlowReport::local_error(),
        }
    }
}

/// [`forward`]; with `hand_over_at`, stops from then on at the first moment when both
/// directions are still open and hold no byte in a pipe, and gives the sockets back.
/// `pre` (client, server): bytes lb read from that socket before (its rules' inspection),
/// so its queue may start inside an skb: no hand-over until a read found it empty.
pub(super) async fn forward_until(
    client: OwnedFd,
    server: OwnedFd,
    t: FlowTimeouts,
    kill: &KillSwitch,
    hand_over_at: Option<Instant>,
    pre: (u64, u64),
) -> Spliced {
    let (Ok(client), Ok(server)) = (super::async_fd(client), super::async_fd(server)) else {
        return Spliced::Done(FlowReport::local_error());
    };
    run(client, server, t, kill, hand_over_at, pre).await
}

/// Whether a pump may start as drained (see [`pump`]): a source nobody read from holds no
/// partly read skb; one lb read from before (`partly_read`) holds none when nothing is left
/// unread in it.
pub(super) fn drained_at_start(partly_read: bool, src: &AsyncFd<OwnedFd>) -> bool {
    !partly_read || sockopt::inq(src.get_ref().as_fd()).is_ok_and(|n| n == 0)
}

/// [`forward_until`] for sockets already on the thread's reactor (no second registration).
/// Called directly, not through a wrapper `async fn`: each level would keep its own copy of
/// the arguments in every flow's future. `pre`: bytes lb read from each socket before (the
/// rules' inspection), so that socket's queue may start inside an skb (see `forward_until`).
///
/// Also answers a hand-off ask of `kill` (binary upgrade): stopped at a quiet point, the flow
/// is offered to the other process ([`super::handoff::offer`]); taken, it ends as
/// [`FlowEnd::HandedOff`](super::FlowEnd::HandedOff) without touching the sockets; not taken,
/// both pumps read on.
pub(super) async fn run(
    client: AsyncFd<OwnedFd>,
    server: AsyncFd<OwnedFd>,
    t: FlowTimeouts,
    kill: &KillSwitch,
    hand_over_at: Option<Instant>,
    pre: (u64, u64),
) -> Spliced {
    let bytes_in = Cell::new(0u64);
    let bytes_out = Cell::new(0u64);
    let last = Cell::new(Instant::now());
    let ends = Ends::new(&t);
    let flow = Flow {
        t: &t,
        since: last.get(),
        last_activity: &|| last.get(),
        ends: &ends,
        kill,
    };
    // Whether each source's queue is known to hold no partly read skb.
    let mut drained = (
        drained_at_start(pre.0 > 0, &client),
        drained_at_start(pre.1 > 0, &server),
    );
    let end = loop {
        let driven = {
            // Pinned where they are built: moved into `drive_or_hand_over`, each would take
            // room in the flow's future twice. Dropped at the end of this block, before a
            // hand-over gives the sockets back.
            // A stop of their own: pumps dropped while parked never leave their count, and a
            // stop requested for an offer not taken would hold the next pumps for good.
            let stop = Stop::default();
            let up = pin!(pump(
                &client, &server, &bytes_in, &last, &ends, true, &stop, drained.0
            ));
            let down = pin!(pump(
                &server, &client, &bytes_out, &last, &ends, false, &stop, drained.1
            ));
            let hand_over = HandOverAt {
                at: hand_over_at,
                stop: &stop,
            };
            drive_or_hand_over(up, down, &flow, Some(hand_over)).await
        };
        match driven {
            Driven::Ended(end) => break end,
            Driven::HandOver => {}
        }
        // Stopped where both queues were read to the end.
        drained = (true, true);
        if let Some(ask) = kill.take_hand_off() {
            let read = (pre.0 + bytes_in.get(), pre.1 + bytes_out.get());
            // Boxed: only a flow being handed off needs its state.
            if Box::pin(super::handoff::offer(ask, (&client, &server), read)).await {
                // The sockets live on in the other process: only these descriptors close.
                return Spliced::Done(FlowReport {
                    bytes_in: bytes_in.get(),
                    bytes_out: bytes_out.get(),
                    end: super::FlowEnd::HandedOff,
                    spliced_in_kernel: false,
                });
            }
        } else if hand_over_at.is_some_and(|at| Instant::now() >= at) {
            return Spliced::HandOver(HandOver {
                client: client.into_inner(),
                server: server.into_inner(),
                bytes_in: bytes_in.get(),
                bytes_out: bytes_out.get(),
                last: last.get(),
            });
        }
    };
    super::close_flow(
        end,
        ends.server_done(),
        client.get_ref().as_fd(),
        server.get_ref().as_fd(),
    );
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

    fn pipe(lease: &mut Lease) -> &Pipe {
        match lease.carrier(true) {
            Carrier::Pipe(p) => p,
            Carrier::Buf(_) => panic!("no limit is set in unit tests: a pipe is expected"),
        }
    }

    #[test]
    fn reserve_stops_at_the_limit_and_places_come_back() {
        let count = AtomicUsize::new(0);
        assert!(reserve(&count, 2));
        assert!(reserve(&count, 2));
        assert!(!reserve(&count, 2), "the third place does not exist");
        count.fetch_sub(1, Ordering::AcqRel);
        assert!(reserve(&count, 2));
    }

    #[test]
    fn an_empty_pipe_goes_back_to_the_pool_and_is_reused() {
        let before = pool_len();
        let fd = {
            let mut lease = Lease::default();
            let fd = pipe(&mut lease).read.as_raw_fd();
            assert_eq!(pool_len(), before.saturating_sub(1));
            fd
        };
        assert_eq!(pool_len(), before.max(1), "returned on drop");
        let mut again = Lease::default();
        assert_eq!(
            pipe(&mut again).read.as_raw_fd(),
            fd,
            "the same pipe is reused"
        );
    }

    #[test]
    fn the_copy_path_takes_a_pooled_buffer_and_gives_it_back() {
        let ptr = {
            let mut lease = Lease::default();
            match lease.carrier(false) {
                Carrier::Buf(b) => {
                    assert_eq!(b.len(), COPY_BUF);
                    b.as_ptr()
                }
                Carrier::Pipe(_) => panic!("the copy path must not take a pipe"),
            }
        };
        let mut again = Lease::default();
        let Carrier::Buf(b) = again.carrier(false) else {
            panic!("the copy path must not take a pipe")
        };
        assert_eq!(b.as_ptr(), ptr, "the same buffer is reused");
    }

    /// The plane tests' sockets of a flow, the test's ends on this thread's reactor: (client,
    /// backend, lb's client side, lb's server side).
    fn pair() -> (
        tokio::net::TcpStream,
        tokio::net::TcpStream,
        OwnedFd,
        OwnedFd,
    ) {
        let p = crate::dataplane::plane_tests::pair();
        let on_reactor = |s: std::net::TcpStream| {
            s.set_nonblocking(true).unwrap();
            tokio::net::TcpStream::from_std(s).unwrap()
        };
        (
            on_reactor(p.client),
            on_reactor(p.backend),
            p.client_fd,
            p.server_fd,
        )
    }

    /// Sends `what` from `from` and reads it at `to`, within 2 s.
    async fn passes(
        from: &mut tokio::net::TcpStream,
        to: &mut tokio::net::TcpStream,
        what: &[u8],
    ) -> bool {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        from.write_all(what).await.unwrap();
        let mut got = vec![0u8; what.len()];
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), to.read_exact(&mut got));
        matches!(read.await, Ok(Ok(_))) && got == what
    }

    /// A flow asked to hand itself off stops where it holds no byte and offers itself; when
    /// the other process does not take it, it must forward on, both ways, to both FINs (it
    /// once kept its stop requested and its pumps counted as parked from before the offer,
    /// so the new pumps waited forever: the old process of an upgrade never exited).
    #[test]
    fn a_flow_whose_hand_off_is_refused_forwards_on() {
        use std::rc::Rc;
        use std::time::Duration;

        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        use crate::dataplane::handoff::HandOffAsk;
        use crate::dataplane::{FlowEnd, FlowTimeouts, KillSwitch};

        let rt = crate::test_runtime();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let (mut client, mut server, client_lb, server_lb) = pair();
            let kill = Rc::new(KillSwitch::default());
            let flow = tokio::task::spawn_local({
                let kill = kill.clone();
                async move {
                    forward(client_lb, server_lb, FlowTimeouts::default(), &kill, (0, 0)).await
                }
            });
            assert!(passes(&mut client, &mut server, b"before").await);
            assert!(passes(&mut server, &mut client, b"answer").await);
            for attempt in 0..2 {
                let (ask, offered) = HandOffAsk::new(Instant::now() + Duration::from_secs(5));
                kill.hand_off(ask);
                let parked = tokio::time::timeout(Duration::from_secs(5), offered)
                    .await
                    .expect("the flow offers itself at its quiet point")
                    .expect("an offer");
                // Refused: the flow goes on here.
                let _ = parked.verdict.send(false);
                let (up, down) = (format!("up {attempt}"), format!("down {attempt}"));
                assert!(
                    passes(&mut client, &mut server, up.as_bytes()).await,
                    "client -> server after refused hand-off {attempt}"
                );
                assert!(
                    passes(&mut server, &mut client, down.as_bytes()).await,
                    "server -> client after refused hand-off {attempt}"
                );
            }
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let eof = tokio::time::timeout(Duration::from_secs(2), server.read_to_end(&mut rest));
            assert!(
                matches!(eof.await, Ok(Ok(0))),
                "the client's FIN reaches the server"
            );
            server.shutdown().await.unwrap();
            let eof = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest));
            assert!(
                matches!(eof.await, Ok(Ok(0))),
                "the server's FIN reaches the client"
            );
            let report = tokio::time::timeout(Duration::from_secs(2), flow)
                .await
                .expect("the flow ends after both FINs")
                .unwrap();
            assert_eq!(report.end, FlowEnd::Closed);
        });
    }

    /// [`a_flow_whose_hand_off_is_refused_forwards_on`] where the ask comes while bytes are
    /// in flight: the flow requests its pumps' stop, reaches its quiet point once the server
    /// has read them, and offers itself with the stop still requested. Refused, the pumps
    /// built after the offer must not wait on that stop (they once did, for good).
    #[test]
    fn a_flow_stopped_for_a_refused_hand_off_forwards_on() {
        use std::rc::Rc;
        use std::time::Duration;

        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        use crate::dataplane::handoff::HandOffAsk;
        use crate::dataplane::{FlowTimeouts, KillSwitch};

        const BULK: usize = 32 << 20;
        let rt = crate::test_runtime();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let (client, server, client_lb, server_lb) = pair();
            let kill = Rc::new(KillSwitch::default());
            let _flow = tokio::task::spawn_local({
                let kill = kill.clone();
                async move {
                    forward(client_lb, server_lb, FlowTimeouts::default(), &kill, (0, 0)).await
                }
            });
            let (mut client_rd, mut client_wr) = client.into_split();
            let (mut server_rd, mut server_wr) = server.into_split();
            // Three rounds: whichever way an offer comes (at once, or after a requested stop),
            // a flow whose stop or count outlived a refused offer fails by the second.
            for round in 0..3 {
                // The server does not read yet: the bulk waits in lb's pump and the sockets.
                let writer = tokio::task::spawn_local(async move {
                    client_wr.write_all(&vec![7u8; BULK]).await.unwrap();
                    client_wr
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (ask, offered) = HandOffAsk::new(Instant::now() + Duration::from_secs(5));
                kill.hand_off(ask);
                // Refused as soon as it comes (the flow waits for the verdict meanwhile).
                let refused = tokio::task::spawn_local(async move {
                    let parked = tokio::time::timeout(Duration::from_secs(5), offered).await;
                    parked.is_ok_and(|p| p.is_ok())
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
                let mut bulk = vec![0u8; BULK];
                let read = server_rd.read_exact(&mut bulk);
                let read = tokio::time::timeout(Duration::from_secs(5), read).await;
                assert!(
                    matches!(read, Ok(Ok(_))),
                    "round {round}: the bulk reaches the server"
                );
                assert!(bulk.iter().all(|b| *b == 7));
                client_wr = writer.await.unwrap();
                assert!(
                    refused.await.unwrap(),
                    "round {round}: the flow offered itself"
                );
                client_wr.write_all(b"after").await.unwrap();
                let mut got = [0u8; 5];
                let up = server_rd.read_exact(&mut got);
                let up = tokio::time::timeout(Duration::from_secs(2), up).await;
                assert!(
                    matches!(up, Ok(Ok(_))),
                    "round {round}: client -> server after"
                );
                server_wr.write_all(b"reply").await.unwrap();
                let down = client_rd.read_exact(&mut got);
                let down = tokio::time::timeout(Duration::from_secs(2), down).await;
                assert!(
                    matches!(down, Ok(Ok(_))),
                    "round {round}: server -> client after"
                );
                assert_eq!(&got, b"reply");
            }
        });
    }

    #[test]
    fn a_pipe_with_bytes_left_is_closed_not_pooled() {
        let mut lease = Lease::default();
        let pipe = pipe(&mut lease);
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
