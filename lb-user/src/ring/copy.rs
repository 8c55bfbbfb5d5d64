//! A flow's copy phase on the thread's ring: per direction, a receive into a pooled buffer,
//! a send of what it got with the next receive linked behind it, again; the source's FIN is
//! passed on as `dataplane::pass_fin` says (a `shutdown`, the close, or the server stopped and
//! reset); the sockets are closed by the ring. A receive that fills a
//! whole buffer (a stream, not an exchange) makes the flow graduate: once nothing of it is in
//! flight and every byte it received is sent, its sockets go to the flow's [`Done`], for
//! splice or the kernel maps.
//!
//! A flow on the ring needs no task: its idle timeouts are in the thread's timer queue
//! ([`super::timer`]), its kill switch reaches it through [`OnRing`], and its end (or its
//! graduation) is handed to its [`Done`], called by the ring's loop.

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types::Fd};

use super::bufs;
use super::direct::{self, Sockets};
use super::{with, Ring, Tag};

#[cfg(test)]
#[path = "link_tests.rs"]
mod link_tests;

use crate::dataplane::{
    close_flow, idle_deadline, pass_fin, sockopt, FlowEnd, FlowReport, FlowTimeouts, KillSwitch,
    PassFin,
};

#[cfg(test)]
thread_local! {
    /// FINs this thread's ring passed on with a shutdown, and of those, with the ring's own
    /// `IORING_OP_SHUTDOWN` (tests count them).
    pub(super) static SHUTDOWNS: std::cell::Cell<(usize, usize)> =
        const { std::cell::Cell::new((0, 0)) };
}

/// Flows graduated from the rings since start (tests check that streams do).
static GRADUATED: AtomicUsize = AtomicUsize::new(0);

/// How many flows graduated from the rings since the process started.
pub fn graduated() -> usize {
    GRADUATED.load(Ordering::Relaxed)
}

/// How a flow left the ring.
pub enum Copied {
    /// It ended there; its sockets are closed.
    Done(FlowReport),
    /// It moved on: every byte it received is sent, nothing of it is in flight.
    Graduated(Graduated),
}

/// What a flow leaving the ring is handed to, called by the ring's loop (never while the ring
/// is borrowed). Dropped uncalled only when the thread stops.
pub type Done = Box<dyn FnOnce(Copied)>;

/// A flow handed back by the ring, both directions open.
pub struct Graduated {
    pub client: OwnedFd,
    pub server: OwnedFd,
    /// Bytes passed on so far, client -> server and server -> client.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Where a flow is on its thread's ring: its slab key and the serial that tells it from a
/// later flow under the same key. Its [`KillSwitch`] keeps it, to reach the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnRing {
    key: u32,
    serial: u32,
}

/// One direction: 0 is client -> server (source socket 0, the client), 1 server -> client.
#[derive(Default)]
struct Dir {
    /// The buffer holding bytes received and not sent yet: (id, offset, length).
    held: Option<(u16, u32, u32)>,
    recv_in_flight: bool,
    send_in_flight: bool,
    /// A receive found no buffer: it waits in [`Ring::starved`] order for one.
    starved: bool,
    /// The receive in flight is such a receive re-armed as a probe (see
    /// [`Ring::rearm_starved`]).
    probe: bool,
    /// The source's FIN was read.
    eof: bool,
    /// The FIN was passed on (`shutdown` done), or is left to the flow's close.
    fin: bool,
    /// Server -> client only: the client's FIN stopped the server side
    /// ([`PassFin::ResetServer`]): nothing more is received, and once what it holds is sent
    /// the flow ends.
    stopped: bool,
    bytes: u64,
}

enum Stop {
    End(FlowEnd),
    Graduate,
}

/// A flow in the ring's slab.
pub(super) struct Flow {
    /// The client's and the server's sockets; taken when the flow leaves the ring. Empty
    /// while they are in the ring's fixed table (see `socks`).
    pub(super) fds: [Option<OwnedFd>; 2],
    pub(super) socks: Sockets,
    dirs: [Dir; 2],
    /// Its last activity, in ticks of the thread's timer queue (see [`Ring::now_tick`]).
    last: u32,
    serial: u32,
    /// The tick of its entry in the timer queue that counts (see [`super::timer`]).
    armed: Option<u64>,
    /// The thread's copy (flows of one frontend and backend share it).
    t: Arc<FlowTimeouts>,
    stop: Option<Stop>,
    /// Entries of this flow the kernel has not completed (cancels, closes and buffers given
    /// back are not counted: they refer to no socket or buffer of the flow).
    pub(super) in_flight: u8,
    done: Option<Done>,
    /// When the running graduation started (it is given up after [`GRADUATE_MAX`]).
    graduating_since: Option<Instant>,
    /// After a graduation given up: no new one before this; the wait doubles each time.
    graduate_after: Option<Instant>,
    backoff: Duration,
}

/// A graduation waits at most this long for the flow's sends to complete (a receiver that
/// does not read must not hold the other direction back), then the flow copies on and tries
/// again after [`RETRY`], doubling up to the second value. As the splice plane's hand-over.
const GRADUATE_MAX: Duration = Duration::from_millis(5);
const RETRY: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Whether all of direction `d`'s bytes are sent: only then may the flow's close pass its FIN
/// on ([`PassFin::ByClose`]: HAProxy's strace shows one `shutdown` per short connection, not
/// two). The socket closed had given its own FIN, so no byte waits unread in it. It saves a
/// shutdown (for a direct flow, a lent fd's install and a `shutdown(2)`; see `Ring::shutdown`).
fn all_sent(dirs: &[Dir; 2], d: usize) -> bool {
    let this = &dirs[d];
    this.held.is_none() && !this.send_in_flight
}

/// Whether direction `d` was stopped ([`Dir::stopped`]) and has nothing left to send or
/// receive: the flow may end.
fn stopped_and_idle(dir: &Dir) -> bool {
    dir.stopped && !dir.recv_in_flight && !dir.send_in_flight && dir.held.is_none()
}

impl Flow {
    /// Socket `i` of the flow at `key` as its operations name it: its fd, or its slot in the
    /// ring's fixed table (with the flag that says so).
    fn raw(&self, key: usize, i: usize) -> (Fd, squeue::Flags) {
        if self.socks.in_table() {
            let slot = direct::slot(key, i).cast_signed();
            return (Fd(slot), squeue::Flags::FIXED_FILE);
        }
        let fd = Fd(self.fds[i].as_ref().map_or(-1, AsRawFd::as_raw_fd));
        (fd, squeue::Flags::empty())
    }
}

/// The end of a flow whose socket `i` (0 client, 1 server) failed or reset.
fn reset_of(i: usize) -> FlowEnd {
    if i == 0 {
        FlowEnd::ClientReset
    } else {
        FlowEnd::ServerReset
    }
}

/// Puts `client` <-> `server` on this thread's ring. It copies there until both FINs, a reset,
/// an idle timeout (`t`) or a kill through `kill` (then [`Copied::Done`]), or until it
/// graduates: a receive filled a buffer while both directions were open, or `kill` asked for a
/// hand-off ([`Copied::Graduated`]; the ask is left for the next plane to answer). Either way
/// `done` gets it. No task waits for it meanwhile.
/// Both sockets must be non-blocking TCP sockets on no reactor. The thread must have a ring.
pub fn start(
    client: OwnedFd,
    server: OwnedFd,
    t: Arc<FlowTimeouts>,
    kill: &KillSwitch,
    done: Done,
) {
    let at = with(|r| r.start(client, server, t, done));
    kill.put_on_ring(at);
}

/// [`start`] for a task that waits for the flow to leave the ring. Dropped early, it leaves
/// the flow to end there (closing its sockets).
pub async fn copy(client: OwnedFd, server: OwnedFd, t: &FlowTimeouts, kill: &KillSwitch) -> Copied {
    struct Wait {
        out: Option<Copied>,
        waker: Option<Waker>,
    }
    struct Abandon(Option<OnRing>);
    impl Drop for Abandon {
        fn drop(&mut self) {
            if let Some(at) = self.0 {
                end(at, FlowEnd::LocalError);
            }
        }
    }
    let wait = Rc::new(RefCell::new(Wait {
        out: None,
        waker: None,
    }));
    let w = wait.clone();
    let done: Done = Box::new(move |out| {
        let mut w = w.borrow_mut();
        w.out = Some(out);
        if let Some(waker) = w.waker.take() {
            waker.wake();
        }
    });
    let at = with(|r| r.start(client, server, crate::interned::timeouts(*t), done));
    kill.put_on_ring(at);
    let mut abandon = Abandon(Some(at));
    let out = poll_fn(|cx| {
        let mut w = wait.borrow_mut();
        if let Some(out) = w.out.take() {
            Poll::Ready(out)
        } else {
            w.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    abandon.0 = None;
    out
}

/// Runs `f` on the flow at `at`, if it is still on this thread's ring and the ring is free;
/// `None` otherwise.
fn on_flow<T>(at: OnRing, f: impl FnOnce(&mut Ring, usize) -> T) -> Option<T> {
    super::RING
        .try_with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            let ring = r.as_mut()?;
            let key = at.key as usize;
            let here = ring.flows.get(key).is_some_and(|fl| fl.serial == at.serial);
            here.then(|| f(ring, key))
        })
        .ok()
        .flatten()
}

/// Ends the flow at `at` (a kill: `shutdown session`, a server marked down, hard stop), if it
/// is still on the ring.
pub fn end(at: OnRing, why: FlowEnd) {
    if on_flow(at, |r, key| r.end(key, why)).is_none() {
        log::debug!("io_uring: an end asked of a flow no longer on the ring: {why:?}");
    }
}

/// A hand-off asked of the flow at `at`: it graduates now, the ask left for the next plane.
/// `false` when it can't leave the ring (half-closed, ending): the ask is to be refused. A
/// flow no longer on the ring: `true` (whatever carries it now answers).
pub fn hand_off(at: OnRing) -> bool {
    on_flow(at, Ring::graduate_now).unwrap_or(true)
}

impl Ring {
    /// Puts a flow on the ring: both directions start receiving, its idle timer is armed.
    fn start(
        &mut self,
        client: OwnedFd,
        server: OwnedFd,
        t: Arc<FlowTimeouts>,
        done: Done,
    ) -> OnRing {
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let last = self.now_tick();
        let key = self.flows.insert(Flow {
            fds: [Some(client), Some(server)],
            socks: Sockets::Fds,
            dirs: [Dir::default(), Dir::default()],
            last,
            serial,
            armed: None,
            t,
            stop: None,
            in_flight: 0,
            done: Some(done),
            graduating_since: None,
            graduate_after: None,
            backoff: RETRY.0,
        });
        self.enter_table(key);
        self.recv(key, 0);
        self.recv(key, 1);
        self.arm(key);
        OnRing {
            key: u32::try_from(key).expect("fewer than 2^32 flows on a ring"),
            serial,
        }
    }

    /// When flow `key` must next be looked at: its idle deadline, or the end of the wait of
    /// its running graduation.
    fn wake_at(&self, key: usize) -> Option<Instant> {
        let f = &self.flows[key];
        let last = self.timers.instant(u64::from(f.last));
        let idle = idle_deadline(&f.t, last, f.dirs[0].fin, f.dirs[1].fin).map(|d| d.0);
        let give_up = f.graduating_since.map(|at| at + GRADUATE_MAX);
        match (idle, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues flow `key`'s timer when its deadline is earlier than the one it has queued (a
    /// later one is found when the earlier comes due).
    fn arm(&mut self, key: usize) {
        let Some(at) = self.wake_at(key) else {
            return;
        };
        let tick = self.timers.tick(at);
        let f = &mut self.flows[key];
        if f.armed.is_some_and(|a| a <= tick) {
            return;
        }
        f.armed = Some(tick);
        if self.timers.push(tick, key) {
            self.wake_loop();
        }
    }

    /// Handles the timers due at `now`: flows idle too long end, graduations that waited too
    /// long are given up, flows active meanwhile are armed again.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((tick, key)) = self.timers.pop_due(now) {
            let Some(f) = self.flows.get_mut(key) else {
                continue;
            };
            if f.armed != Some(tick) {
                continue;
            }
            f.armed = None;
            if matches!(f.stop, Some(Stop::End(_))) {
                continue;
            }
            let last = self.timers.instant(u64::from(f.last));
            if let Some((at, why)) = idle_deadline(&f.t, last, f.dirs[0].fin, f.dirs[1].fin) {
                if now >= at {
                    self.end(key, why);
                    continue;
                }
            }
            if f.graduating_since.is_some_and(|s| now >= s + GRADUATE_MAX) {
                self.give_up_graduation(key);
            }
            if self.flows.contains(key) {
                self.arm(key);
            }
        }
    }

    /// Now, in ticks of the timer queue, rounded down (a flow's last activity).
    pub(super) fn now_tick(&self) -> u32 {
        self.tick_of(Instant::now())
    }

    /// `at` in ticks of the timer queue, rounded down.
    pub(super) fn tick_of(&self, at: Instant) -> u32 {
        let t = self.timers.tick(at).saturating_sub(1);
        u32::try_from(t).unwrap_or(u32::MAX)
    }

    /// A flow left the ring with `out`: its [`Done`] is called by the ring's loop.
    fn leave(&mut self, key: usize, out: Copied) {
        let mut f = self.flows.remove(key);
        if let Some(done) = f.done.take() {
            self.finished.push((done, out));
            self.wake_loop();
        }
    }

    fn recv(&mut self, key: usize, d: usize) {
        self.recv_flags(key, d, 0);
    }

    /// A receive of a starved direction that completes at once, `EAGAIN` when no bytes wait
    /// (see [`Ring::rearm_starved`]).
    fn probe(&mut self, key: usize, d: usize) {
        self.flows[key].dirs[d].probe = true;
        self.probing += 1;
        self.recv_flags(key, d, libc::MSG_DONTWAIT);
    }

    fn recv_flags(&mut self, key: usize, d: usize, msg_flags: i32) {
        let f = &mut self.flows[key];
        f.dirs[d].recv_in_flight = true;
        f.in_flight += 1;
        let (fd, fixed) = f.raw(key, d);
        let e = opcode::Recv::new(fd, std::ptr::null_mut(), bufs::SIZE as u32)
            .buf_group(bufs::GROUP)
            .flags(msg_flags)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT | fixed)
            .user_data(Tag::Recv(d).user_data(key));
        self.push(&e);
    }

    /// Sends what direction `d` holds. `MSG_WAITALL`: the kernel sends the rest of a short
    /// send itself, so the send completes with all its bytes or fails (a failure after some
    /// bytes completes with their count: [`Ring::complete`] sends the rest).
    fn send(&mut self, key: usize, d: usize) {
        let e = self.send_entry(key, d);
        self.push(&e);
    }

    /// Sends what direction `d` holds with its next receive linked behind it
    /// (`IOSQE_IO_LINK`): queued in the same submission, it starts once every byte is sent,
    /// so the flow's next bytes need no turn of the loop. A send that fails or falls short
    /// cancels it (`ECANCELED`): re-armed once the rest is sent (see [`Ring::advance`]).
    fn send_then_recv(&mut self, key: usize, d: usize) {
        // A chain goes in one submission.
        self.room_for(2);
        let send = self.send_entry(key, d).flags(squeue::Flags::IO_LINK);
        self.push(&send);
        self.recv(key, d);
    }

    fn send_entry(&mut self, key: usize, d: usize) -> squeue::Entry {
        let f = &mut self.flows[key];
        let (id, off, len) = f.dirs[d].held.expect("a send of bytes held");
        f.dirs[d].send_in_flight = true;
        f.in_flight += 1;
        let (dst, fixed) = f.raw(key, 1 - d);
        let bytes = self.bufs.bytes(id, off, len);
        opcode::Send::new(dst, bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .flags(fixed)
            .user_data(Tag::Send(d).user_data(key))
    }

    /// Passes direction `d`'s FIN on to socket `1 - d` with `shutdown(2)`, as HAProxy does:
    /// `io_uring` runs every `IORING_OP_SHUTDOWN` on an io-wq worker (a thread woken, which then
    /// waits for the ring's lock to find a direct descriptor; perf showed a fifth of lb's
    /// samples in those workers, two per short connection). A flow with fds calls it at
    /// once; one in the fixed table gets the socket as a short-lived fd first
    /// (`FIXED_FD_INSTALL` runs inline at submission), and the loop calls it when that
    /// completes ([`Tag::FinFd`]). Only a flow whose fd cannot be lent (no room in the fd
    /// budget, or its fds being installed) uses the ring's `shutdown`.
    fn shutdown(&mut self, key: usize, d: usize) {
        #[cfg(test)]
        SHUTDOWNS.with(|n| n.set((n.get().0 + 1, n.get().1)));
        if let Some(fd) = &self.flows[key].fds[1 - d] {
            let done = sockopt::shutdown_write(fd.as_fd());
            return self.fin_passed(key, d, done.is_ok());
        }
        if self.lend_fd(key, 1 - d, Tag::FinFd(d)) {
            self.flows[key].in_flight += 1;
        } else {
            self.shutdown_on_ring(key, d);
        }
    }

    /// [`Ring::shutdown`] through the ring, for a flow in the table whose fd cannot be lent.
    fn shutdown_on_ring(&mut self, key: usize, d: usize) {
        #[cfg(test)]
        SHUTDOWNS.with(|n| n.set((n.get().0, n.get().1 + 1)));
        let f = &mut self.flows[key];
        f.in_flight += 1;
        let (fd, fixed) = f.raw(key, 1 - d);
        let e = opcode::Shutdown::new(fd, libc::SHUT_WR)
            .build()
            .flags(fixed)
            .user_data(Tag::Shutdown(d).user_data(key));
        self.push(&e);
    }

    /// [`PassFin::ResetServer`]: the client's FIN is not passed on (it counts as done);
    /// server -> client receives nothing more (its receive in flight is cancelled, one linked
    /// behind a send once the send completes), and `advance` ends the flow once it has sent
    /// what it holds; the close then resets the server ([`close_flow`]: it had not closed).
    fn stop_server(&mut self, key: usize) {
        let f = &mut self.flows[key];
        f.dirs[0].fin = true;
        let dir = &mut f.dirs[1];
        dir.stopped = true;
        dir.starved = false;
        if dir.recv_in_flight && !dir.send_in_flight {
            self.cancel(Tag::Recv(1).user_data(key));
        }
        // The client's `-fin` timeout may be the shorter one now.
        self.arm(key);
    }

    /// Direction `d`'s FIN was passed on (`ok`), or the `shutdown` failed: the flow ends.
    fn fin_passed(&mut self, key: usize, d: usize, ok: bool) {
        if ok {
            self.flows[key].dirs[d].fin = true;
            // Its side's `-fin` timeout may be the shorter one now.
            self.arm(key);
        } else {
            self.end(key, reset_of(1 - d));
        }
    }

    /// Cancels the flow's entry `user_data`; completes only when there was nothing to cancel
    /// (`ENOENT`, `EALREADY`: the entry's own completion says how it ended).
    fn cancel(&mut self, user_data: u64) {
        let e = opcode::AsyncCancel::new(user_data)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        self.push(&e);
    }

    /// Gives a buffer back to the kernel; a receive waiting for one is re-armed after it.
    fn give_back(&mut self, id: u16) {
        if let Some(e) = self.bufs.give_back(id) {
            self.push(&e);
        }
        self.rearm_starved();
    }

    /// Re-arms the receives waiting for a buffer, oldest first, as many as the kernel has
    /// free buffers not already promised to a probe in flight: none stays waiting while a
    /// buffer is free. Called wherever that count or the queue grows: a buffer given back, a
    /// receive starved (its `ENOBUFS` may be reaped after the give-back that would have
    /// re-armed it), a probe done without a buffer.
    ///
    /// Each goes as a probe (`MSG_DONTWAIT`). The kernel picks a receive's buffer before it
    /// reads, so a receive starves even with no bytes waiting; re-armed as a plain receive, one
    /// with none would wait in poll, its buffer back in the pool, and no completion would say
    /// so: receives with bytes behind it would stay parked with that buffer free. A probe
    /// completes at once, with bytes, `ENOBUFS` (the buffer went to another: parked again), or
    /// `EAGAIN` (no bytes: it waits as a plain receive, and the buffer goes to the next one).
    fn rearm_starved(&mut self) {
        while self.bufs.free() > self.probing {
            let Some((key, d)) = self.starved.pop_front() else {
                return;
            };
            let waiting = self
                .flows
                .get_mut(key)
                .is_some_and(|f| std::mem::take(&mut f.dirs[d].starved) && f.stop.is_none());
            if waiting {
                self.probe(key, d);
            }
        }
    }

    /// Handles one completion of flow `key`, now.
    #[cfg(test)]
    pub(super) fn complete(&mut self, key: usize, tag: Tag, res: i32, flags: u32) {
        self.complete_at(key, tag, (res, flags), self.now_tick());
    }

    /// Handles one completion of flow `key` (its result and flags) at tick `now`.
    pub(super) fn complete_at(&mut self, key: usize, tag: Tag, (res, flags): (i32, u32), now: u32) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        f.in_flight -= 1;
        let ending = matches!(f.stop, Some(Stop::End(_)));
        match tag {
            Tag::Recv(d) => {
                f.dirs[d].recv_in_flight = false;
                let probe = std::mem::take(&mut f.dirs[d].probe);
                if probe {
                    self.probing -= 1;
                }
                let buf = cqueue::buffer_select(flags);
                if buf.is_some() {
                    self.bufs.taken();
                }
                if res > 0 {
                    self.received(key, d, res as u32, buf, now);
                    return self.advance(key);
                }
                if let Some(id) = buf {
                    self.give_back(id);
                }
                let f = &mut self.flows[key];
                if res == 0 {
                    f.dirs[d].eof = true;
                    if !ending {
                        // A flow that half-closed stays here: no graduation.
                        if matches!(f.stop, Some(Stop::Graduate)) {
                            f.stop = None;
                            f.graduating_since = None;
                        }
                        match pass_fin(d == 0, f.dirs[1 - d].eof, f.t.nolinger) {
                            PassFin::ByClose if all_sent(&f.dirs, d) => {
                                // The close passes it on: `advance` ends the flow once the
                                // other direction's FIN is passed on too.
                                f.dirs[d].fin = true;
                            }
                            PassFin::ByClose | PassFin::Shutdown => self.shutdown(key, d),
                            PassFin::ResetServer => self.stop_server(key),
                        }
                    }
                } else if -res == libc::ENOBUFS {
                    if !ending {
                        f.dirs[d].starved = true;
                        self.starved.push_back((key, d));
                    }
                } else if probe && -res == libc::EAGAIN {
                    // No bytes wait: `advance` re-arms it as a plain receive.
                } else if -res != libc::ECANCELED {
                    self.end(key, reset_of(d));
                }
                // A buffer this receive did not take may be free for one waiting.
                self.rearm_starved();
            }
            Tag::Send(d) => {
                f.dirs[d].send_in_flight = false;
                // A receive in flight beside a send is the one linked behind it.
                let linked = f.dirs[d].recv_in_flight;
                let Some((id, off, len)) = f.dirs[d].held else {
                    return self.advance(key);
                };
                if res >= 0 {
                    let n = (res as u32).min(len);
                    f.dirs[d].bytes += u64::from(n);
                    f.last = now;
                    if n < len && !ending {
                        // The rest; the linked receive was cancelled (re-armed after this).
                        f.dirs[d].held = Some((id, off + n, len - n));
                        self.send(key, d);
                        return self.advance(key);
                    }
                    if n == len && linked && (f.stop.is_some() || f.dirs[d].stopped) {
                        // The flow stops: the receive that just started behind this send
                        // goes too (a cancel asked while it waited in the link found nothing).
                        self.cancel(Tag::Recv(d).user_data(key));
                    }
                }
                let f = &mut self.flows[key];
                f.dirs[d].held = None;
                self.give_back(id);
                if res < 0 && -res != libc::ECANCELED {
                    self.end(key, reset_of(1 - d));
                }
            }
            Tag::Shutdown(d) => {
                self.fin_passed(key, d, res >= 0 || sockopt::shutdown_already_done(-res));
            }
            Tag::FinFd(d) => match direct::LentFd::of(res) {
                Some(fd) if !ending => {
                    let done = sockopt::shutdown_write(fd.as_fd());
                    self.close_lent(fd);
                    self.fin_passed(key, d, done.is_ok());
                }
                None if !ending => self.shutdown_on_ring(key, d),
                // The flow ends: its close passes what is left on (a lent fd is closed).
                Some(_) | None => {}
            },
            Tag::Install(d) => self.installed(key, d, res),
            Tag::Ignored | Tag::Op | Tag::OpSend | Tag::Files => {}
        }
        self.advance(key);
    }

    /// `n` bytes arrived for direction `d` in buffer `id`: sent on, unless the flow ends.
    fn received(&mut self, key: usize, d: usize, n: u32, id: Option<u16>, now: u32) {
        let Some(id) = id else {
            log::error!("io_uring: a receive returned bytes without its buffer");
            return self.end(key, FlowEnd::LocalError);
        };
        let f = &mut self.flows[key];
        f.last = now;
        if matches!(f.stop, Some(Stop::End(_))) {
            return self.give_back(id);
        }
        f.dirs[d].held = Some((id, 0, n));
        if n as usize == bufs::SIZE {
            // A full buffer: a stream; it moves on once this is sent (its receive re-armed
            // only if it can't).
            self.send(key, d);
            self.graduate(key);
        } else if f.stop.is_some() || f.dirs[d].stopped {
            // Graduating or stopped: this receive got bytes before its cancel; no new one.
            self.send(key, d);
        } else {
            self.send_then_recv(key, d);
        }
    }

    /// Re-arms what a running flow waits for, or finishes a stopping one once nothing of it
    /// is in flight.
    fn advance(&mut self, key: usize) {
        // Gone: it already left the ring.
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        if f.stop.is_none() {
            let server_end = f.dirs[1].fin || stopped_and_idle(&f.dirs[1]);
            if !(f.dirs[0].fin && server_end) {
                for d in 0..2 {
                    let dir = &self.flows[key].dirs[d];
                    let idle = !dir.recv_in_flight && !dir.send_in_flight && dir.held.is_none();
                    if idle && !dir.eof && !dir.starved && !dir.stopped {
                        self.recv(key, d);
                    }
                }
                return;
            }
            f.stop = Some(Stop::End(FlowEnd::Closed));
        }
        let f = &mut self.flows[key];
        if f.in_flight > 0 {
            return;
        }
        let (bytes_in, bytes_out) = (f.dirs[0].bytes, f.dirs[1].bytes);
        let outcome = match f.stop {
            Some(Stop::End(end)) => {
                let server_closed = f.dirs[1].eof;
                self.close_slots(key, end, server_closed);
                let f = &mut self.flows[key];
                let fds = [f.fds[0].take(), f.fds[1].take()];
                let held = [f.dirs[0].held.take(), f.dirs[1].held.take()];
                if let [Some(client), Some(server)] = &fds {
                    close_flow(end, server_closed, client.as_fd(), server.as_fd());
                }
                for fd in fds.into_iter().flatten() {
                    self.close_raw(fd.into_raw_fd());
                }
                for (id, _, _) in held.into_iter().flatten() {
                    self.give_back(id);
                }
                Copied::Done(FlowReport {
                    bytes_in,
                    bytes_out,
                    end,
                    spliced_in_kernel: false,
                })
            }
            Some(Stop::Graduate) => {
                debug_assert!(f.dirs.iter().all(|d| d.held.is_none()));
                if !self.real_fds(key) {
                    return;
                }
                let f = &mut self.flows[key];
                let (Some(client), Some(server)) = (f.fds[0].take(), f.fds[1].take()) else {
                    return;
                };
                GRADUATED.fetch_add(1, Ordering::Relaxed);
                Copied::Graduated(Graduated {
                    client,
                    server,
                    bytes_in,
                    bytes_out,
                })
            }
            None => return,
        };
        self.leave(key, outcome);
    }

    /// Ends a flow: what it has in flight is cancelled, then its sockets are closed (see
    /// [`close_flow`]).
    pub(super) fn end(&mut self, key: usize, end: FlowEnd) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        if matches!(f.stop, Some(Stop::End(_))) {
            return;
        }
        f.stop = Some(Stop::End(end));
        for d in 0..2 {
            f.dirs[d].starved = false;
        }
        let mut cancel = Vec::with_capacity(4);
        for d in 0..2 {
            let dir = &self.flows[key].dirs[d];
            // A receive linked behind a send goes with it (or, if the send completes first,
            // is cancelled then: see `complete`).
            if dir.recv_in_flight && !dir.send_in_flight {
                cancel.push(Tag::Recv(d).user_data(key));
            }
            if dir.send_in_flight {
                cancel.push(Tag::Send(d).user_data(key));
            }
        }
        for c in cancel {
            self.cancel(c);
        }
        self.advance(key);
    }

    /// Starts moving a flow on, if both its directions are open and no graduation was given
    /// up on lately: its receives are cancelled (bytes one still got are sent first).
    fn graduate(&mut self, key: usize) {
        let f = &mut self.flows[key];
        let now = Instant::now();
        if f.stop.is_some()
            || f.dirs.iter().any(|d| d.eof)
            || f.graduate_after.is_some_and(|at| now < at)
        {
            return;
        }
        f.stop = Some(Stop::Graduate);
        f.graduating_since = Some(now);
        // The time limit of the wait.
        self.arm(key);
        for d in 0..2 {
            let dir = &mut self.flows[key].dirs[d];
            dir.starved = false;
            // One linked behind a send is cancelled once that send completes.
            if dir.recv_in_flight && !dir.send_in_flight {
                self.cancel(Tag::Recv(d).user_data(key));
            }
        }
        self.advance(key);
    }

    /// Starts moving a flow on now, whatever its backoff: `false` when it can't (half-closed,
    /// ending).
    fn graduate_now(&mut self, key: usize) -> bool {
        let f = &mut self.flows[key];
        if !matches!(f.stop, Some(Stop::Graduate)) {
            f.graduate_after = None;
            self.graduate(key);
        }
        // Gone: it left the ring at once, graduated.
        self.flows
            .get(key)
            .is_none_or(|f| matches!(f.stop, Some(Stop::Graduate)))
    }

    /// A graduation that did not find the flow quiet in time: it copies on (see
    /// [`GRADUATE_MAX`]).
    pub(super) fn give_up_graduation(&mut self, key: usize) {
        let f = &mut self.flows[key];
        if !matches!(f.stop, Some(Stop::Graduate)) {
            return;
        }
        f.stop = None;
        f.graduating_since = None;
        f.graduate_after = Some(Instant::now() + f.backoff);
        f.backoff = (f.backoff * 2).min(RETRY.1);
        self.advance(key);
    }
}
