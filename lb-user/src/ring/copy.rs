//! A flow's copy phase on the thread's ring: per direction, a receive into a pooled buffer,
//! a send of what it got, again; the source's FIN is passed on with a `shutdown`; the sockets
//! are closed by the ring. A receive that fills a whole buffer (a stream, not an exchange)
//! makes the flow graduate: once nothing of it is in flight and every byte it received is
//! sent, its sockets go back to the caller, for splice or the kernel maps.

use std::future::poll_fn;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types::Fd};

use super::bufs::{self, Bufs};
use super::{with, Ring, Tag};

use crate::dataplane::{
    close_flow, idle_deadline, sockopt, FlowEnd, FlowReport, FlowTimeouts, KillSwitch, Outside,
};

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

/// A flow handed back by the ring, both directions open.
pub struct Graduated {
    pub client: OwnedFd,
    pub server: OwnedFd,
    /// Bytes passed on so far, client -> server and server -> client.
    pub bytes_in: u64,
    pub bytes_out: u64,
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
    /// The source's FIN was read.
    eof: bool,
    /// The FIN was passed on (`shutdown` done).
    fin: bool,
    bytes: u64,
}

enum Stop {
    End(FlowEnd),
    Graduate,
}

/// A flow in the ring's slab.
pub(super) struct Flow {
    /// The client's and the server's sockets; taken when the flow leaves the ring.
    fds: [Option<OwnedFd>; 2],
    dirs: [Dir; 2],
    last: Instant,
    stop: Option<Stop>,
    /// Entries of this flow the kernel has not completed (cancels, closes and buffers given
    /// back are not counted: they refer to no socket or buffer of the flow).
    in_flight: u8,
    waker: Option<Waker>,
    outcome: Option<Copied>,
    /// Its future was dropped: the ring ends it and frees its entry alone.
    abandoned: bool,
    /// When the running graduation started (its future gives up after [`GRADUATE_MAX`]).
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

impl Flow {
    fn raw(&self, i: usize) -> Fd {
        Fd(self.fds[i].as_ref().map_or(-1, AsRawFd::as_raw_fd))
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

/// Copies `client` <-> `server` on this thread's ring until both FINs, a reset, an idle
/// timeout or a kill (then [`Copied::Done`]), or until the flow graduates: a receive filled a
/// buffer while both directions were open ([`Copied::Graduated`]).
/// Both sockets must be non-blocking TCP sockets on no reactor. The thread must have a ring.
pub async fn copy(client: OwnedFd, server: OwnedFd, t: &FlowTimeouts, kill: &KillSwitch) -> Copied {
    let key = with(|r| r.start(client, server));
    let mut on_ring = OnRing(Some(key));
    let mut ending = false;
    let mut last = Instant::now();
    loop {
        let (client_fin, server_fin) = with(|r| {
            let f = &r.flows[key];
            (f.dirs[0].fin, f.dirs[1].fin)
        });
        let idle_at = idle_deadline(t, last, client_fin, server_fin).map(|d| d.0);
        let give_up_at = with(|r| r.flows[key].graduating_since).map(|at| at + GRADUATE_MAX);
        let wake = match (idle_at, give_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(at) if !ending => tokio::time::sleep_until(at.into()).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            out = poll_fn(|cx| with(|r| r.poll_outcome(key, cx))) => {
                on_ring.0 = None;
                return out;
            }
            o = kill.wait(), if !ending => match o {
                Outside::Kill => {
                    ending = true;
                    with(|r| r.end(key, FlowEnd::Killed));
                }
                // A binary upgrade asks for the flow: it leaves the ring at once (its caller
                // renews the ask for splice, which answers it); a flow that can't leave now
                // refuses.
                Outside::HandOff => {
                    if !with(|r| r.graduate_now(key)) {
                        kill.refuse_hand_off();
                    }
                }
            },
            () = sleep => {
                let now = Instant::now();
                // Activity only moves the deadline later: re-read it before ending the flow.
                last = with(|r| r.flows[key].last);
                if let Some((at, end)) = idle_deadline(t, last, client_fin, server_fin) {
                    if now >= at {
                        ending = true;
                        with(|r| r.end(key, end));
                        continue;
                    }
                }
                if give_up_at.is_some_and(|at| now >= at) {
                    with(|r| r.give_up_graduation(key));
                }
            }
        }
    }
}

/// A flow's place on the ring while its future lives; a future dropped early (its thread
/// stopping) leaves the flow to end there alone.
struct OnRing(Option<usize>);

impl Drop for OnRing {
    fn drop(&mut self) {
        if let Some(key) = self.0 {
            // The ring may be gone already (thread exit): then so are its flows.
            let _ = super::RING.try_with(|r| {
                if let Some(ring) = r.borrow_mut().as_mut() {
                    ring.abandon(key);
                }
            });
        }
    }
}

impl Ring {
    /// Puts a flow on the ring: both directions start receiving.
    fn start(&mut self, client: OwnedFd, server: OwnedFd) -> usize {
        let key = self.flows.insert(Flow {
            fds: [Some(client), Some(server)],
            dirs: [Dir::default(), Dir::default()],
            last: Instant::now(),
            stop: None,
            in_flight: 0,
            waker: None,
            outcome: None,
            abandoned: false,
            graduating_since: None,
            graduate_after: None,
            backoff: RETRY.0,
        });
        self.recv(key, 0);
        self.recv(key, 1);
        key
    }

    fn recv(&mut self, key: usize, d: usize) {
        let f = &mut self.flows[key];
        f.dirs[d].recv_in_flight = true;
        f.in_flight += 1;
        let e = opcode::Recv::new(f.raw(d), std::ptr::null_mut(), bufs::SIZE as u32)
            .buf_group(bufs::GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(Tag::Recv(d).user_data(key));
        self.push(&e);
    }

    fn send(&mut self, key: usize, d: usize) {
        let f = &mut self.flows[key];
        let Some((id, off, len)) = f.dirs[d].held else {
            return;
        };
        f.dirs[d].send_in_flight = true;
        f.in_flight += 1;
        let dst = f.raw(1 - d);
        let bytes = self.bufs.bytes(id, off, len);
        let e = opcode::Send::new(dst, bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Tag::Send(d).user_data(key));
        self.push(&e);
    }

    fn shutdown(&mut self, key: usize, d: usize) {
        let f = &mut self.flows[key];
        f.in_flight += 1;
        let e = opcode::Shutdown::new(f.raw(1 - d), libc::SHUT_WR)
            .build()
            .user_data(Tag::Shutdown(d).user_data(key));
        self.push(&e);
    }

    fn cancel(&mut self, user_data: u64) {
        let e = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(Tag::Ignored.user_data(0));
        self.push(&e);
    }

    /// Gives a buffer back to the kernel; the first receive waiting for one is re-armed,
    /// linked after it so that it finds the buffer.
    fn give_back(&mut self, id: u16) {
        let e = Bufs::give_back(&mut self.bufs, id);
        if !self.rearm_starved(Some(&e)) {
            self.push(&e);
        }
    }

    /// Re-arms the first receive still waiting for a buffer, after `provide` (linked) when
    /// given; `false` when none waits.
    fn rearm_starved(&mut self, provide: Option<&squeue::Entry>) -> bool {
        while let Some((key, d)) = self.starved.pop_front() {
            let waiting = self
                .flows
                .get_mut(key)
                .is_some_and(|f| std::mem::take(&mut f.dirs[d].starved) && f.stop.is_none());
            if waiting {
                if let Some(e) = provide {
                    self.push(&e.clone().flags(squeue::Flags::IO_LINK));
                }
                self.recv(key, d);
                return true;
            }
        }
        false
    }

    /// Handles one completion of flow `key`.
    pub(super) fn complete(&mut self, key: usize, tag: Tag, res: i32, flags: u32) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        f.in_flight -= 1;
        let ending = matches!(f.stop, Some(Stop::End(_)));
        match tag {
            Tag::Recv(d) => {
                f.dirs[d].recv_in_flight = false;
                if res > 0 {
                    self.received(key, d, res as u32, cqueue::buffer_select(flags));
                    return self.advance(key);
                }
                if let Some(id) = cqueue::buffer_select(flags) {
                    self.give_back(id);
                } else if res == 0 {
                    // A receive that found the FIN may have had a buffer picked and put back
                    // by the kernel itself: one waiting receive tries again (an EOF comes once
                    // per direction, so this never spins).
                    self.rearm_starved(None);
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
                        self.shutdown(key, d);
                    }
                } else if -res == libc::ENOBUFS {
                    if !ending {
                        f.dirs[d].starved = true;
                        self.starved.push_back((key, d));
                    }
                } else if -res != libc::ECANCELED {
                    self.end(key, reset_of(d));
                }
            }
            Tag::Send(d) => {
                f.dirs[d].send_in_flight = false;
                let Some((id, off, len)) = f.dirs[d].held else {
                    return self.advance(key);
                };
                if res >= 0 {
                    let n = (res as u32).min(len);
                    f.dirs[d].bytes += u64::from(n);
                    f.last = Instant::now();
                    if n < len && !ending {
                        f.dirs[d].held = Some((id, off + n, len - n));
                        self.send(key, d);
                        return self.advance(key);
                    }
                }
                f.dirs[d].held = None;
                self.give_back(id);
                if res < 0 && -res != libc::ECANCELED {
                    self.end(key, reset_of(1 - d));
                }
            }
            Tag::Shutdown(d) => {
                if res >= 0 || sockopt::shutdown_already_done(-res) {
                    f.dirs[d].fin = true;
                } else {
                    self.end(key, reset_of(1 - d));
                }
            }
            Tag::Ignored | Tag::Op => {}
        }
        self.advance(key);
    }

    /// `n` bytes arrived for direction `d` in buffer `id`: sent on, unless the flow ends.
    fn received(&mut self, key: usize, d: usize, n: u32, id: Option<u16>) {
        let Some(id) = id else {
            log::error!("io_uring: a receive returned bytes without its buffer");
            return self.end(key, FlowEnd::LocalError);
        };
        let f = &mut self.flows[key];
        f.last = Instant::now();
        if matches!(f.stop, Some(Stop::End(_))) {
            return self.give_back(id);
        }
        f.dirs[d].held = Some((id, 0, n));
        self.send(key, d);
        if n as usize == bufs::SIZE {
            // A full buffer: a stream; it moves on once this is sent.
            self.graduate(key);
        }
    }

    /// Re-arms what a running flow waits for, or finishes a stopping one once nothing of it
    /// is in flight.
    fn advance(&mut self, key: usize) {
        let f = &mut self.flows[key];
        if f.stop.is_none() {
            if !(f.dirs[0].fin && f.dirs[1].fin) {
                for d in 0..2 {
                    let dir = &self.flows[key].dirs[d];
                    let idle = !dir.recv_in_flight && !dir.send_in_flight && dir.held.is_none();
                    if idle && !dir.eof && !dir.starved {
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
                let fds = [f.fds[0].take(), f.fds[1].take()];
                let held = [f.dirs[0].held.take(), f.dirs[1].held.take()];
                if let [Some(client), Some(server)] = &fds {
                    close_flow(end, server_closed, client.as_fd(), server.as_fd());
                }
                for fd in fds.into_iter().flatten() {
                    let e = opcode::Close::new(Fd(fd.into_raw_fd()))
                        .build()
                        .user_data(Tag::Ignored.user_data(0));
                    self.push(&e);
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
        let f = &mut self.flows[key];
        if f.abandoned {
            self.flows.remove(key);
            return;
        }
        f.outcome = Some(outcome);
        if let Some(w) = f.waker.take() {
            w.wake();
        }
    }

    /// Ends a flow: what it has in flight is cancelled, then its sockets are closed (see
    /// [`close_flow`]).
    pub(super) fn end(&mut self, key: usize, end: FlowEnd) {
        let f = &mut self.flows[key];
        if matches!(f.stop, Some(Stop::End(_))) || f.outcome.is_some() {
            return;
        }
        f.stop = Some(Stop::End(end));
        for d in 0..2 {
            f.dirs[d].starved = false;
        }
        let mut cancel = Vec::with_capacity(4);
        for d in 0..2 {
            let dir = &self.flows[key].dirs[d];
            if dir.recv_in_flight {
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
        // Its future keeps the time limit.
        if let Some(w) = f.waker.take() {
            w.wake();
        }
        for d in 0..2 {
            let dir = &mut self.flows[key].dirs[d];
            dir.starved = false;
            if dir.recv_in_flight {
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
        matches!(self.flows[key].stop, Some(Stop::Graduate))
    }

    /// A graduation that did not find the flow quiet in time: it copies on (see
    /// [`GRADUATE_MAX`]).
    fn give_up_graduation(&mut self, key: usize) {
        let f = &mut self.flows[key];
        if !matches!(f.stop, Some(Stop::Graduate)) || f.outcome.is_some() {
            return;
        }
        f.stop = None;
        f.graduating_since = None;
        f.graduate_after = Some(Instant::now() + f.backoff);
        f.backoff = (f.backoff * 2).min(RETRY.1);
        self.advance(key);
    }

    fn poll_outcome(&mut self, key: usize, cx: &Context<'_>) -> Poll<Copied> {
        let f = &mut self.flows[key];
        if let Some(out) = f.outcome.take() {
            self.flows.remove(key);
            Poll::Ready(out)
        } else {
            f.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The flow's future is gone: the flow ends on its own (a flow already out is dropped,
    /// which closes its sockets).
    fn abandon(&mut self, key: usize) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        if f.outcome.is_some() {
            self.flows.remove(key);
            return;
        }
        f.abandoned = true;
        f.waker = None;
        // Finishes at once when nothing is in flight (and then frees the entry).
        self.end(key, FlowEnd::LocalError);
    }
}
