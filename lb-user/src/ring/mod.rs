//! One `io_uring` per thread for the copy phase of its flows: each flow's receives, sends,
//! shutdowns and closes are queued on the thread's ring and submitted together, once per turn
//! of the thread's loop (the runtime's park hook, [`submit`]), and their completions are reaped
//! together by one task woken through the ring's fd on the thread's reactor ([`install`]);
//! those of flows that came at once are handled in the park hook itself ([`submit`]). A
//! flow on the ring is a small state machine in the ring's slab ([`copy`]), with no task of its
//! own: its idle timeouts are in the thread's timer queue ([`timer`]), driven by the same
//! task, and its end is handed to a callback the flow carries. Receives take a buffer from the
//! ring's provided-buffer pool only when bytes arrive, so an idle flow holds no buffer, no
//! future and costs no syscall: its slab entry and its two sockets, which it holds as direct
//! descriptors in the ring's fixed-file table, outside the process's fd table ([`direct`]).

mod bufs;
mod copy;
pub mod direct;
#[cfg(test)]
mod flow_tests;
mod op;
pub mod spin;
mod timer;
#[cfg(test)]
mod turn_tests;

pub use copy::{copy, end, graduated, hand_off, start, Copied, Done, Graduated, OnRing};
pub use op::{connect, Accept, ConnectFailed, Connected, FirstBytes};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::task::{Poll, Waker};
use std::time::Instant;

use io_uring::{squeue, IoUring};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use bufs::Bufs;

/// Submission queue entries: a turn queues at most a few per flow that had an event, and a
/// full queue is submitted early (see [`Ring::push`]), so this bounds a batch, not the flows.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: the kernel keeps completions past this (`IORING_FEAT_NODROP`), so
/// it bounds how many one reap takes without the slower overflow list.
const CQ_ENTRIES: u32 = 16 * 1024;

/// A ring's queues and buffer pool, in entries and buffers (tests make them small).
#[derive(Clone, Copy, Debug)]
struct Sizes {
    sq: u32,
    cq: u32,
    bufs: u16,
    /// Whether buffers go back through a provided-buffer ring where the kernel has them (tests
    /// run the kernels without them by turning it off).
    buf_ring: bool,
}

const SIZES: Sizes = Sizes {
    sq: SQ_ENTRIES,
    cq: CQ_ENTRIES,
    bufs: bufs::COUNT,
    buf_ring: true,
};

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// A thread's ring, its flows and its buffers.
struct Ring {
    uring: IoUring,
    flows: Slab<copy::Flow>,
    /// One-shot operations tasks wait for (connects).
    ops: Slab<op::Op>,
    bufs: Bufs,
    /// The fixed-file table the flows' sockets are in.
    table: direct::Table,
    /// Receives that found no buffer, re-armed in this order as buffers come back.
    starved: VecDeque<(usize, usize)>,
    /// Of those, receives re-armed as probes whose completion has not come yet: each may take
    /// one of the free buffers (see `Ring::rearm_starved`).
    probing: u16,
    /// The flows' idle and graduation timers.
    timers: timer::Timers,
    /// The last flow's serial (see [`OnRing`]).
    serial: u32,
    /// Flows that left the ring, for the loop to hand to their [`Done`] once the ring is free.
    finished: Vec<(Done, Copied)>,
    /// The ring's loop, to wake when a flow left or an earlier timer was queued (see
    /// [`Ring::wake_loop`]); set by the loop each time it runs.
    waker: Option<Waker>,
    /// Whether the park hook's turn woke a task (the thread then has work: no spinning).
    woke: bool,
    /// The wait before the thread sleeps.
    spin: spin::Spin,
}

/// The ring's fd, for the reactor (the ring itself stays in [`RING`]).
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Sets up this thread's ring. Returns the task that reaps its completions, to be spawned on
/// the thread (`spawn_local`); the runtime must call [`submit`] when it parks (its
/// `on_thread_park` hook). Until this is called, [`available`] is `false` and flows take the
/// async path.
pub fn install() -> io::Result<impl Future<Output = ()>> {
    install_sized(SIZES)
}

/// [`install`] with queues and a pool of `sizes`.
fn install_sized(sizes: Sizes) -> io::Result<impl Future<Output = ()>> {
    let uring = new_uring(sizes)?;
    let fd = uring.as_raw_fd();
    let table = direct::Table::new(&uring);
    let mut ring = Ring {
        uring,
        flows: Slab::new(),
        ops: Slab::new(),
        bufs: Bufs::new(sizes.bufs),
        table,
        starved: VecDeque::new(),
        probing: 0,
        timers: timer::Timers::new(),
        serial: 0,
        finished: Vec::new(),
        waker: None,
        woke: false,
        spin: spin::Spin::new(),
    };
    if let Some(provide) = ring.bufs.provide_all(&ring.uring, sizes.buf_ring) {
        ring.push(&provide);
    }
    ring.uring.submit()?;
    // SAFETY: the ring's fd stays open as long as the thread's ring, which lives in `RING`
    // until the thread ends, after its tasks (and so this registration) are gone.
    let reactor = unsafe { AsyncFd::register_with_interest(RingFd(fd), Interest::READABLE) }
        .map_err(io::Error::from)?;
    RING.with(|r| *r.borrow_mut() = Some(ring));
    Ok(run(reactor))
}

/// The thread's `io_uring`. `IORING_SETUP_COOP_TASKRUN` (Linux 5.19): a completion that
/// arrives while the thread runs is posted at its next entry into the kernel (it enters at
/// every park of its loop) instead of through an inter-processor interrupt that stops it
/// mid-turn; a sleeping thread is still woken at once. `IORING_SETUP_TASKRUN_FLAG` says so in
/// the ring's shared flags meanwhile, which a spinning thread watches ([`spin`]). Kernels
/// without them get a plain ring.
fn new_uring(sizes: Sizes) -> io::Result<IoUring> {
    match IoUring::builder()
        .setup_cqsize(sizes.cq)
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(sizes.sq)
    {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(sizes.cq).build(sizes.sq)
        }
        r => r,
    }
}

/// The runtime of a thread whose flows copy on its ring: tokio's reactor (epoll) with the
/// ring's fd on it, the ring's entries of a turn submitted together when the loop is about to
/// wait (the park hook, [`submit`]), and a local runtime rather than a `LocalSet` on a
/// current-thread one: the thread's `!Send` tasks are the scheduler's own, run from its
/// queue, without the set's second queue and the tick that moves between the two at every
/// wake (~700 instructions per connection). lb's threads run on it, and so do the tests that
/// run flows as they do. A thread without a ring runs on it too (the hook then has nothing to
/// submit).
pub fn thread_runtime() -> io::Result<tokio::runtime::LocalRuntime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(submit)
        .on_thread_unpark(unparked)
        .build_local(tokio::runtime::LocalOptions::default())
}

/// Whether this thread has a ring (flows then copy on it).
pub fn available() -> bool {
    RING.with(|r| r.borrow().is_some())
}

/// Submits what this turn queued: one `io_uring_enter` for all the flows of the turn, none
/// when nothing was queued. What completed at once (a send the socket took, a receive linked
/// behind it that found bytes waiting) is handled here too and what it queued submitted, in
/// up to [`ROUNDS`] rounds, so an exchange does not wait for a wake of the loop per step.
/// Then, when the turn left the thread nothing to do, the thread keeps its CPU for a while
/// ([`spin`]) and takes in this hook what comes meanwhile. The runtime's park hook.
pub fn submit() {
    RING.with(|r| {
        if let Some(ring) = r.borrow_mut().as_mut() {
            ring.park();
        }
    });
}

/// The runtime's unpark hook: the sleep that ended teaches the spin.
fn unparked() {
    RING.with(|r| {
        if let Some(ring) = r.borrow_mut().as_mut() {
            ring.spin.woke();
        }
    });
}

/// Rounds of submit and reap in [`submit`] before the loop parks: bounds the time the park
/// hook keeps the thread from its tasks.
const ROUNDS: usize = 8;

/// Runs `f` on this thread's ring. Only called by flows on the ring (which exist only where
/// [`install`] ran), never while the ring is borrowed.
fn with<T>(f: impl FnOnce(&mut Ring) -> T) -> T {
    RING.with(|r| {
        f(r.borrow_mut()
            .as_mut()
            .expect("a flow on a thread without a ring"))
    })
}

/// The ring's loop: reaps its completions whenever the reactor says it has some, handles the
/// flows' timers as they come due, and hands the flows that left to their [`Done`].
///
/// One future polled by hand rather than a `select!` per wake: the thread's one timer (the
/// earliest deadline of its flows) is a single pinned `Sleep`, moved only when that deadline
/// changes, and the clock is read once per wake for every completion and timer it handles.
async fn run(reactor: AsyncFd<RingFd>) {
    let mut sleep = pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    // The deadline `sleep` is set to, while it has not fired, and whether it was polled since
    // it was set (its waker is then registered: it needs no poll until it fires).
    let mut armed: Option<Instant> = None;
    let mut registered = false;
    // The flows that left, taken from the ring in turn with this one (no allocation per wake).
    let mut finished: Vec<(Done, Copied)> = Vec::new();
    poll_fn(|cx| {
        // The first round handles whatever woke the loop (completions, a timer, a flow that
        // left, a new earliest deadline); a later one only what came since.
        let mut work = true;
        loop {
            let ready = match reactor.poll_read_ready(cx) {
                // Cleared before reaping: a completion posted after the reap below wakes us
                // again.
                Poll::Ready(Ok(mut ready)) => {
                    ready.clear_ready();
                    true
                }
                Poll::Ready(Err(_)) => {
                    log::error!("io_uring: the ring's fd left the reactor; flows on it are stuck");
                    return Poll::Ready(());
                }
                Poll::Pending => false,
            };
            let next = RING.with(|r| {
                let mut r = r.borrow_mut();
                let ring = r.as_mut()?;
                if ready || work {
                    if !ring.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        ring.waker = Some(cx.waker().clone());
                    }
                    let now = Instant::now();
                    if ready {
                        ring.reap_at(&mut Some(ring.tick_of(now)));
                    }
                    ring.expire(now);
                    std::mem::swap(&mut ring.finished, &mut finished);
                }
                ring.timers.next()
            });
            work = false;
            for (done, out) in finished.drain(..) {
                done(out);
            }
            // What the flows' ends queued is seen by the next round (`ready`) or wakes the
            // loop (an earlier deadline); the deadline read above is the ring's now.
            if next != armed {
                if let Some(at) = next {
                    sleep.as_mut().reset(at.into());
                }
                armed = next;
                registered = false;
            }
            // A timer that fired is set again from the queue on the next round, even to the
            // same deadline, so the loop never spins on a `Sleep` that stays ready.
            let fired = armed.is_some()
                && (!registered || sleep.is_elapsed())
                && match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => true,
                    Poll::Pending => {
                        registered = true;
                        false
                    }
                };
            if fired {
                armed = None;
                work = true;
            }
            if !ready && !fired {
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// What a completion is for: the low byte of its `user_data`, above it the flow's slab key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    /// A receive of direction 0 (client -> server) or 1.
    Recv(usize),
    /// A send of direction 0 or 1.
    Send(usize),
    /// The `shutdown(SHUT_WR)` passing direction 0's or 1's FIN on.
    Shutdown(usize),
    /// A one-shot operation a task waits for (its key is in the ring's `ops`).
    Op,
    /// The send linked behind a connect of `ops` (see [`op::connect`]).
    OpSend,
    /// The `FIXED_FD_INSTALL` giving socket 0 (client) or 1 a real fd again.
    Install(usize),
    /// The update putting a flow's sockets into the fixed table (completes only on failure).
    Files,
    /// The `FIXED_FD_INSTALL` giving the socket that direction 0's or 1's FIN goes to a
    /// short-lived fd, for a `shutdown(2)` in the loop (see `Ring::shutdown`).
    FinFd(usize),
    /// Completions nobody waits for: cancels, closes, buffers given back.
    Ignored,
}

impl Tag {
    fn code(self) -> u64 {
        match self {
            Self::Recv(d) => d as u64,
            Self::Send(d) => 2 + d as u64,
            Self::Shutdown(d) => 4 + d as u64,
            Self::Op => 6,
            Self::Install(d) => 7 + d as u64,
            Self::Files => 9,
            Self::FinFd(d) => 10 + d as u64,
            Self::OpSend => 12,
            Self::Ignored => 0xff,
        }
    }

    fn user_data(self, key: usize) -> u64 {
        ((key as u64) << 8) | self.code()
    }

    fn of(user_data: u64) -> (usize, Self) {
        let key = (user_data >> 8) as usize;
        let tag = match user_data & 0xff {
            c @ 0..=1 => Self::Recv(c as usize),
            c @ 2..=3 => Self::Send(c as usize - 2),
            c @ 4..=5 => Self::Shutdown(c as usize - 4),
            6 => Self::Op,
            c @ 7..=8 => Self::Install(c as usize - 7),
            9 => Self::Files,
            c @ 10..=11 => Self::FinFd(c as usize - 10),
            12 => Self::OpSend,
            _ => Self::Ignored,
        };
        (key, tag)
    }
}

impl Drop for Ring {
    /// The thread stops: what its last turn queued (the closes of its last flows) still goes.
    fn drop(&mut self) {
        self.submit();
    }
}

impl Ring {
    /// Queues one entry; a full submission queue is submitted first.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry queued here points only at memory that outlives its
            // completion: buffers of the pool (never freed, see `Bufs`) and sockets a flow
            // keeps open until all its entries completed.
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.uring.submit() {
                // EBUSY/EAGAIN: the kernel has no room for more in flight; reap to make room.
                log::debug!("io_uring: submit with a full queue: {e}");
                self.reap_at(&mut None);
            }
        }
    }

    /// Wakes the ring's loop (a flow left, or an earlier timer was queued).
    fn wake_loop(&mut self) {
        if let Some(waker) = &self.waker {
            self.woke = true;
            waker.wake_by_ref();
        }
    }

    /// The park hook's work: see [`submit`]. Turns, and spins while the turn leaves the
    /// thread idle and work comes within the spin: a completion of a task's operation (an
    /// accept, a connect) ends it for the loop to take.
    fn park(&mut self) {
        loop {
            self.woke = false;
            self.turn();
            if self.woke || !self.uring.completion().is_empty() {
                return;
            }
            let uring = &mut self.uring;
            if !self
                .spin
                .wait(|| !uring.completion().is_empty() || uring.submission().taskrun())
            {
                return;
            }
        }
    }

    /// Submits and reaps the flows' completions: see [`submit`].
    fn turn(&mut self) {
        // The clock is read once, at the first completion, for every round of this turn.
        let mut now = None;
        for round in 1.. {
            self.submit();
            if round == ROUNDS || !self.flows_only_completed() {
                return;
            }
            self.reap_at(&mut now);
        }
    }

    /// Whether the completion queue holds completions and all of them are of flows. An
    /// operation a task waits for (an accept, a connect) is left to the ring's loop: waking a
    /// task from the park hook costs a wake of the runtime (a `write` to its eventfd and an
    /// `epoll_wait` more), where the loop's wake by the ring's fd is one `epoll_wait`.
    fn flows_only_completed(&mut self) -> bool {
        let mut cq = self.uring.completion();
        if cq.is_empty() {
            return false;
        }
        let flows = cq
            .by_ref()
            .all(|c| !matches!(Tag::of(c.user_data()).1, Tag::Op | Tag::OpSend));
        // A peek: the queue's head is stored back only when it is dropped, so the entries
        // stay for `reap`.
        std::mem::forget(cq);
        flows
    }

    /// Submits what is queued; with nothing queued, enters the kernel only to post the
    /// completions it holds for this thread (`IORING_SQ_TASKRUN`).
    fn submit(&mut self) {
        if self.uring.submission().is_empty() && !self.uring.submission().taskrun() {
            return;
        }
        if let Err(e) = self.uring.submit() {
            // Left queued: the next turn's submit takes them.
            log::debug!("io_uring: submit: {e}");
        }
    }

    /// Handles every completion in the queue, and those the kernel kept past it, as of tick
    /// `now` (read from the clock at the first completion when `None`).
    fn reap_at(&mut self, now: &mut Option<u32>) {
        // One at a time, each taken off the queue before it is handled: no batch to allocate.
        loop {
            let next = self.uring.completion().next();
            let Some(cqe) = next else {
                if self.flush_overflow() {
                    continue;
                }
                return;
            };
            let (key, tag) = Tag::of(cqe.user_data());
            match tag {
                Tag::Ignored => ignored_failed(cqe.result()),
                Tag::Op => self.op_done(key, cqe.result()),
                Tag::OpSend => self.op_sent(key, cqe.result()),
                Tag::Files => self.files_failed(key, cqe.result()),
                _ => {
                    let now = *now.get_or_insert_with(|| self.now_tick());
                    self.complete_at(key, tag, (cqe.result(), cqe.flags()), now);
                }
            }
        }
    }

    /// Completions that found the queue full wait in the kernel (`IORING_FEAT_NODROP`) and
    /// reach the queue only in an `io_uring_enter` with `IORING_ENTER_GETEVENTS`: nothing else
    /// posts them, and nothing wakes the loop for them again. So once the queue is read
    /// empty while `IORING_SQ_CQ_OVERFLOW` says some wait, they are fetched (the crate's
    /// submit asks for events when that flag is set; what is queued goes too). `true` when
    /// that brought completions to reap.
    fn flush_overflow(&mut self) -> bool {
        if !self.uring.submission().cq_overflow() {
            return false;
        }
        if let Err(e) = self.uring.submitter().submit_and_wait(0) {
            log::debug!("io_uring: fetching the completions past the queue: {e}");
            return false;
        }
        !self.uring.completion().is_empty()
    }
}

/// A completion of an entry nobody waits for: closes, cancels and buffer returns complete
/// only when they fail (`IOSQE_CQE_SKIP_SUCCESS`), a connect's linked timeout always.
fn ignored_failed(res: i32) {
    // A cancel that found nothing (the entry completed first), a timeout that fired or was
    // cancelled by its connect's completion: nothing went wrong.
    let expected = [libc::ENOENT, libc::EALREADY, libc::ECANCELED, libc::ETIME];
    if res < 0 && !expected.contains(&-res) {
        log::debug!(
            "io_uring: a close, cancel or buffer return failed: {}",
            io::Error::from_raw_os_error(-res)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_carries_the_key_and_the_tag() {
        for tag in [
            Tag::Recv(0),
            Tag::Recv(1),
            Tag::Send(0),
            Tag::Send(1),
            Tag::Shutdown(0),
            Tag::Shutdown(1),
            Tag::Op,
            Tag::OpSend,
            Tag::Install(0),
            Tag::Install(1),
            Tag::Files,
            Tag::FinFd(0),
            Tag::FinFd(1),
            Tag::Ignored,
        ] {
            assert_eq!(Tag::of(tag.user_data(123_456)), (123_456, tag));
        }
    }
}
