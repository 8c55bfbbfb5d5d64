//! The two data planes that move the bytes of an established client<->server pair:
//! [`sockmap`] (in the kernel, eBPF stream verdict) and [`splice`] (splice(2) through pipes).
//! Both give the same guarantees: bytes intact both ways, half-close and reset passed on, byte
//! counts per direction, and idle timeouts.

mod handoff;
pub mod sockmap;
pub mod sockopt;
pub mod splice;

#[cfg(test)]
pub(crate) mod plane_tests;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::config::{Backend, Frontend};

pub use handoff::{HandOffAsk, Parked};

/// Which data plane the process uses (`--dataplane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DataplaneChoice {
    /// sockmap when BPF can be loaded here, else splice.
    Auto,
    /// In-kernel forwarding; fails at start if BPF cannot be loaded.
    Sockmap,
    /// splice(2) through a pipe per direction, driven from userspace.
    Splice,
}

impl fmt::Display for DataplaneChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Sockmap => "sockmap",
            Self::Splice => "splice",
        })
    }
}

/// Inactivity limits of one flow, from the frontend (client side) and backend (server side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowTimeouts {
    /// `timeout client`.
    pub client: Option<Duration>,
    /// `timeout server`.
    pub server: Option<Duration>,
    /// `timeout tunnel`: once connected, replaces both of the above.
    pub tunnel: Option<Duration>,
    /// `timeout client-fin`: client side, once the client has sent its FIN.
    pub client_fin: Option<Duration>,
    /// `timeout server-fin`: server side, once the server has sent its FIN.
    pub server_fin: Option<Duration>,
    /// Not a time, but the flow's other per-backend parameter, read where the timeouts are:
    /// the backend's `option nolinger`, which changes how the client's FIN is passed on
    /// ([`pass_fin`]). (The frontend's `option nolinger` costs the flows nothing: it is on the
    /// listening sockets.)
    pub nolinger: bool,
}

impl FlowTimeouts {
    /// Client-side timeouts come from the frontend, server-side ones from the backend, as in
    /// HAProxy.
    pub fn new(fe: &Frontend, be: &Backend) -> Self {
        Self {
            client: fe.timeouts.client,
            server: be.timeouts.server,
            tunnel: be.timeouts.tunnel,
            client_fin: fe.timeouts.client_fin,
            server_fin: be.timeouts.server_fin,
            nolinger: be.nolinger,
        }
    }

    /// The inactivity limits of the client side and the server side: `tunnel` replaces both
    /// once connected; a side that has sent its FIN uses its `-fin` timeout when set.
    fn sides(&self, client_done: bool, server_done: bool) -> (Option<Duration>, Option<Duration>) {
        let (client, server) = match self.tunnel {
            Some(t) => (Some(t), Some(t)),
            None => (self.client, self.server),
        };
        let pick =
            |done: bool, fin: Option<Duration>, normal| if done { fin.or(normal) } else { normal };
        (
            pick(client_done, self.client_fin, client),
            pick(server_done, self.server_fin, server),
        )
    }

    /// The inactivity limit in force. Activity in either direction refreshes both sides (HAProxy
    /// without `option independent-streams`), so the flow ends after `min(client side, server
    /// side)` of silence. `client_done`/`server_done`: that side has sent its FIN.
    pub fn idle_limit(&self, client_done: bool, server_done: bool) -> Option<Duration> {
        match self.sides(client_done, server_done) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How a flow ended (the termination state of a tcplog line, later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// Both sides sent their FIN and all bytes were passed on.
    Closed,
    /// The client reset (or errored); the server was reset in turn.
    ClientReset,
    /// The server reset (or errored); the client was reset in turn.
    ServerReset,
    /// Idle for longer than the limit in force (`timeout client/server/tunnel`).
    ClientTimeout,
    /// Idle for longer than `timeout server` (the server side's limit was the shorter one).
    ServerTimeout,
    /// A local error (e.g. a failed syscall) ended the flow.
    LocalError,
    /// Ended from outside: `shutdown sessions`, `on-marked-down shutdown-sessions`.
    Killed,
    /// Handed to another process (binary upgrade, `_getflows`), which serves it on: this
    /// process closes its descriptors only, and logs nothing.
    HandedOff,
}

/// What a finished flow reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowReport {
    /// Bytes client -> server.
    pub bytes_in: u64,
    /// Bytes server -> client.
    pub bytes_out: u64,
    pub end: FlowEnd,
    /// Which data plane carried it (a sockmap process falls back to splice per flow).
    pub spliced_in_kernel: bool,
}

impl FlowReport {
    pub(crate) fn local_error() -> Self {
        Self {
            bytes_in: 0,
            bytes_out: 0,
            end: FlowEnd::LocalError,
            spliced_in_kernel: false,
        }
    }
}

/// Ends a flow from outside (admin command, health check), whichever data plane carries it,
/// or asks it to stop at a quiet point and be handed to another process (binary upgrade).
#[derive(Debug, Default)]
pub struct KillSwitch {
    notify: tokio::sync::Notify,
    killed: Cell<bool>,
    /// A hand-off asked for and not yet taken by the flow's driver.
    hand_off: RefCell<Option<HandOffAsk>>,
    /// Set with `hand_off`, cleared when the driver has seen it.
    hand_off_new: Cell<bool>,
    /// Where the flow is on its thread's ring while it copies there (no task waits for it:
    /// a kill or an ask reaches it there).
    ring: Cell<Option<crate::ring::OnRing>>,
}

/// What [`KillSwitch::wait`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outside {
    Kill,
    HandOff,
}

impl KillSwitch {
    /// Ends the flow: both sockets are closed at the next turn of its thread's loop.
    pub fn kill(&self) {
        self.killed.set(true);
        if let Some(at) = self.ring.get() {
            crate::ring::end(at, FlowEnd::Killed);
        }
        self.notify.notify_one();
    }

    /// The flow is on its thread's ring at `at` (it may leave it later: what reaches it there
    /// then finds another flow's serial, and reaches it through [`KillSwitch::wait`] instead).
    pub(crate) fn put_on_ring(&self, at: crate::ring::OnRing) {
        self.ring.set(Some(at));
    }

    /// Asks the flow to stop where it holds no byte and offer itself through `ask` (see
    /// [`HandOffAsk`]). A flow that can't (in the kernel, half-closed) drops the ask, which the
    /// asker sees at once.
    pub fn hand_off(&self, ask: HandOffAsk) {
        *self.hand_off.borrow_mut() = Some(ask);
        self.hand_off_new.set(true);
        // On the ring, it leaves the ring at once for splice, which answers the ask.
        if self.ring.get().is_some_and(|at| !crate::ring::hand_off(at)) {
            self.refuse_hand_off();
        }
        self.notify.notify_one();
    }

    /// The pending ask, while its asker still waits for it.
    fn take_hand_off(&self) -> Option<HandOffAsk> {
        self.hand_off.borrow_mut().take().filter(HandOffAsk::wanted)
    }

    /// Drops a pending ask: this flow can't be handed off (its asker learns it at once).
    pub(crate) fn refuse_hand_off(&self) {
        self.hand_off.borrow_mut().take();
    }

    /// An ask the flow saw while it could not answer it yet (on the ring, before it moved to
    /// splice): seen again by the next [`KillSwitch::wait`], while its asker still waits.
    pub(crate) fn renew_hand_off(&self) {
        if self.hand_off_until().is_some() {
            self.hand_off_new.set(true);
        }
    }

    /// The deadline of the pending ask, while its asker still waits for it.
    fn hand_off_until(&self) -> Option<Instant> {
        self.hand_off
            .borrow()
            .as_ref()
            .filter(|a| a.wanted())
            .map(|a| a.until)
    }

    pub(crate) async fn wait(&self) -> Outside {
        loop {
            if self.killed.get() {
                return Outside::Kill;
            }
            if self.hand_off_new.replace(false) {
                return Outside::HandOff;
            }
            self.notify.notified().await;
        }
    }
}

/// How one direction of a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirEnd {
    /// The source sent its FIN, every byte was delivered and the FIN passed on.
    Fin,
    /// The source reset (or failed).
    SrcReset,
    /// The destination reset (or failed) while we wrote to it.
    DstReset,
    /// A local error (pipe creation, a failed query).
    Local,
}

/// How a direction passes its source's FIN on, once every byte before it was delivered:
/// what [`pass_fin`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassFin {
    /// `shutdown(dst, SHUT_WR)`: a half-close; the other direction goes on.
    Shutdown,
    /// No `shutdown`: the other side's FIN came first, so the flow ends once the other
    /// direction has passed it on, and closing the destination passes this one on. That close
    /// sends a FIN, or a reset from a client socket a frontend with `option nolinger` accepted
    /// (its listener's `SO_LINGER` 0): HAProxy calls no `shutdown` on a socket whose peer's
    /// FIN it read (`conn_sock_shutw`), so its close is what passes the FIN on there too.
    ByClose,
    /// The client's FIN, under the backend's `option nolinger`, while the server has not sent
    /// its own: nothing is passed on to the server. HAProxy closes the server connection at
    /// once (`sc_app_shut_conn` with `SC_FL_NOLINGER`: no `shutdown`), with a reset, as the
    /// server's FIN was not seen (`FD_LINGER_RISK`). In lb the server side stops
    /// ([`Ends::stop_server`]: nothing more is read from it), what lb holds for the client is
    /// delivered, and the flow ends normally ([`FlowEnd::Closed`], `--`): its close resets the
    /// server ([`reset_on_close`]: it had not closed) and passes the end of the server side on
    /// to the client, whose FIN was read, as with [`PassFin::ByClose`]. What the server had not
    /// sent yet is lost, as in HAProxy.
    ResetServer,
}

/// How the FIN of a flow's client (`from_client`) or server is passed on, once every byte
/// before it was delivered: the one rule of every data plane (the ring, splice, the kernel
/// maps) and of the rules' phase before them. `other_done`: the other side's FIN came first;
/// `nolinger`: the backend's `option nolinger` ([`FlowTimeouts::nolinger`]).
pub(crate) fn pass_fin(from_client: bool, other_done: bool, nolinger: bool) -> PassFin {
    if other_done {
        PassFin::ByClose
    } else if from_client && nolinger {
        PassFin::ResetServer
    } else {
        PassFin::Shutdown
    }
}

/// What the two directions of a flow on splice or the kernel maps know of each other's end:
/// the inputs of [`pass_fin`], kept where both see them.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    /// The client sent its FIN, and it was passed on (or left to the flow's close).
    client_done: Cell<bool>,
    /// The same for the server.
    server_done: Cell<bool>,
    /// The client's FIN stopped the server side ([`PassFin::ResetServer`]).
    server_stopped: Cell<bool>,
    /// The backend's `option nolinger`.
    nolinger: bool,
}

impl Ends {
    pub(crate) fn new(t: &FlowTimeouts) -> Self {
        Self {
            nolinger: t.nolinger,
            ..Self::default()
        }
    }

    /// The client has sent its FIN (its side's `-fin` timeout applies).
    pub(crate) fn client_done(&self) -> bool {
        self.client_done.get()
    }

    /// The server has sent its FIN: its socket closes without a reset (see [`close_flow`]).
    pub(crate) fn server_done(&self) -> bool {
        self.server_done.get()
    }

    /// The server side was stopped by the client's FIN ([`PassFin::ResetServer`]): the
    /// server -> client direction reads nothing more and ends once it delivered what it holds.
    pub(crate) fn server_stopped(&self) -> bool {
        self.server_stopped.get()
    }

    /// The client's (`from_client`) or the server's FIN arrived, every byte before it
    /// delivered: how it is passed on ([`pass_fin`]), and its side counted as done.
    pub(crate) fn fin(&self, from_client: bool) -> PassFin {
        let (this, other) = if from_client {
            (&self.client_done, &self.server_done)
        } else {
            (&self.server_done, &self.client_done)
        };
        this.set(true);
        pass_fin(from_client, other.get(), self.nolinger)
    }

    /// Passes the client's (`from_client`) or the server's FIN on to `dst`, the other socket,
    /// as [`Ends::fin`] decides; how the direction ended.
    pub(crate) fn pass_on(&self, from_client: bool, dst: BorrowedFd<'_>) -> DirEnd {
        match self.fin(from_client) {
            PassFin::Shutdown => match sockopt::shutdown_write(dst) {
                Ok(()) => DirEnd::Fin,
                Err(_) => DirEnd::DstReset,
            },
            PassFin::ByClose => DirEnd::Fin,
            PassFin::ResetServer => {
                self.stop_server(dst);
                DirEnd::Fin
            }
        }
    }

    /// [`PassFin::ResetServer`]: stops the server side. `shutdown(server, SHUT_RD)` sends
    /// nothing, and wakes whatever waits to read from it (the pump or the kernel direction of
    /// server -> client), which then finds [`Ends::server_stopped`].
    pub(crate) fn stop_server(&self, server: BorrowedFd<'_>) {
        self.server_stopped.set(true);
        if let Err(e) = sockopt::shutdown_read(server) {
            log::debug!("shutdown(SHUT_RD) of a server to reset failed: {e}");
        }
    }
}

/// What [`drive_or_hand_over`] needs of a flow besides its two directions.
pub(crate) struct Flow<'a> {
    pub t: &'a FlowTimeouts,
    /// The flow's last activity known at the start (no later than the real one).
    pub since: Instant,
    pub last_activity: &'a dyn Fn() -> Instant,
    /// Which side has sent its FIN.
    pub ends: &'a Ends,
    pub kill: &'a KillSwitch,
}

/// When a spliced flow may be handed over: to the kernel maps (see `sockmap::forward`), or to
/// another process when its [`KillSwitch`] asks for it.
pub(crate) struct HandOverAt<'a> {
    /// The first moment to try a hand-over to the kernel maps (`None`: only on an ask).
    pub at: Option<Instant>,
    /// How the flow's two pumps are stopped at a point where they hold nothing.
    pub stop: &'a Stop,
}

/// Lets a flow's driver stop both its pumps where they hold no byte: each pump, at the point
/// where its pipe is empty and it is about to wait for its source, counts itself parked, and
/// while a stop is requested, waits there instead of reading on.
#[derive(Default)]
pub(crate) struct Stop {
    requested: Cell<bool>,
    released: tokio::sync::Notify,
    parked: Cell<u8>,
}

impl Stop {
    /// Both pumps are parked: dropping them now loses nothing.
    fn quiet(&self) -> bool {
        self.parked.get() == 2
    }

    /// Pumps stay at their next read point from now on.
    fn request(&self) {
        self.requested.set(true);
    }

    /// Pumps read on.
    fn release(&self) {
        self.requested.set(false);
        self.released.notify_waiters();
    }

    /// A pump reached its read point (pipe empty): counted as parked until [`Stop::leave`].
    pub(crate) fn park(&self) {
        self.parked.set(self.parked.get() + 1);
    }

    /// The pump read point's wait for a requested stop to be released (returns at once when
    /// none is requested).
    pub(crate) async fn held(&self) {
        while self.requested.get() {
            self.released.notified().await;
        }
    }

    /// The pump leaves its read point.
    pub(crate) fn leave(&self) {
        self.parked.set(self.parked.get() - 1);
    }
}

/// How [`drive_or_hand_over`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Driven {
    Ended(FlowEnd),
    /// Both directions were stopped at a quiet point, neither finished: the caller moves the
    /// flow elsewhere.
    HandOver,
}

/// A hand-over attempt stops both pumps at their next read point and waits at most this long
/// for both to get there (checking every [`STOP_CHECK`]): a direction that cannot empty its
/// pipe (a receiver that does not read) must not hold the other back for long.
const STOP_MAX: Duration = Duration::from_millis(5);
/// The same for a hand-off ask (binary upgrade): a flow that moves bytes without a pause, on a
/// busy machine, needs longer for both ways to run dry, and holding it back that long once is
/// no harm.
const STOP_MAX_ASKED: Duration = Duration::from_millis(50);
const STOP_CHECK: Duration = Duration::from_millis(1);
/// After a failed attempt, the next one comes this much later, doubling up to the second value.
const HAND_OVER_RETRY: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Runs both directions of a flow and its idle timer until both directions finished, one side
/// reset, or the flow was idle too long. `flow.last_activity` reads the latest activity of
/// either direction; `flow.ends` says which side has sent its FIN.
///
/// With `hand_over`, it also stops at the first quiet moment from `hand_over.at` on, or from
/// a hand-off ask of `flow.kill` on (until the ask's deadline), while neither direction has
/// finished. A flow that half-closed first stays where it is (and refuses an ask).
pub(crate) async fn drive_or_hand_over(
    mut up: Pin<&mut impl Future<Output = DirEnd>>,
    mut down: Pin<&mut impl Future<Output = DirEnd>>,
    flow: &Flow<'_>,
    hand_over: Option<HandOverAt<'_>>,
) -> Driven {
    let Flow {
        t,
        since,
        last_activity,
        ends,
        kill,
    } = *flow;
    let mut up_end = None;
    let mut down_end = None;
    let kernel_at = hand_over.as_ref().and_then(|h| h.at);
    let mut hand_over_at = kernel_at;
    // A hand-off ask in progress: its deadline.
    let mut ask_until: Option<Instant> = None;
    // While an attempt runs: when it gives up.
    let mut stopping_until: Option<Instant> = None;
    let mut retry = HAND_OVER_RETRY.0;
    // Activity only moves deadlines later, so a stale value only makes the timer fire early,
    // and it is re-read then: reading it (two map lookups on sockmap) once per timer instead
    // of once per event.
    let mut last = since;
    loop {
        // One timer for both the idle limit and the hand-over: a flow's future holds one.
        let idle_at = idle_deadline(t, last, ends.client_done(), ends.server_done()).map(|d| d.0);
        let attempt_at = match stopping_until {
            Some(until) => Some((Instant::now() + STOP_CHECK).min(until)),
            None => hand_over_at,
        };
        let wake = match (idle_at, attempt_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = up.as_mut(), if up_end.is_none() => up_end = Some(e),
            e = down.as_mut(), if down_end.is_none() => down_end = Some(e),
            o = kill.wait() => match o {
                Outside::Kill => return Driven::Ended(FlowEnd::Killed),
                Outside::HandOff => match (&hand_over, kill.hand_off_until()) {
                    (Some(_), Some(until)) if up_end.is_none() && down_end.is_none() => {
                        ask_until = Some(until);
                        let now = Instant::now();
                        hand_over_at = Some(hand_over_at.map_or(now, |at| at.min(now)));
                    }
                    _ => kill.refuse_hand_off(),
                },
            },
            () = sleep => {
                let now = Instant::now();
                if let Some(h) = &hand_over {
                    let due = stopping_until.is_some() || hand_over_at.is_some_and(|at| now >= at);
                    if due && up_end.is_none() && down_end.is_none() {
                        if h.stop.quiet() {
                            return Driven::HandOver;
                        }
                        match stopping_until {
                            None => {
                                h.stop.request();
                                let most = if ask_until.is_some() {
                                    STOP_MAX_ASKED
                                } else {
                                    STOP_MAX
                                };
                                stopping_until = Some(now + most);
                            }
                            Some(until) if now >= until => {
                                h.stop.release();
                                stopping_until = None;
                                ask_until = ask_until.filter(|u| now < *u);
                                hand_over_at = (kernel_at.is_some() || ask_until.is_some())
                                    .then_some(now + retry);
                                retry = (retry * 2).min(HAND_OVER_RETRY.1);
                            }
                            Some(_) => {}
                        }
                    }
                }
                // Activity may have happened while we slept (the kernel forwards without
                // waking us): re-read it before ending the flow.
                last = last_activity();
                if let Some((at, end)) =
                    idle_deadline(t, last, ends.client_done(), ends.server_done())
                {
                    if now >= at {
                        return Driven::Ended(end);
                    }
                }
            }
        }
        if up_end.is_some() || down_end.is_some() {
            hand_over_at = None;
            if ask_until.take().is_some() {
                kill.refuse_hand_off();
            }
            if stopping_until.take().is_some() {
                if let Some(h) = &hand_over {
                    h.stop.release();
                }
            }
        }
        match (up_end, down_end) {
            (Some(DirEnd::SrcReset), _) | (_, Some(DirEnd::DstReset)) => {
                return Driven::Ended(FlowEnd::ClientReset)
            }
            (Some(DirEnd::DstReset), _) | (_, Some(DirEnd::SrcReset)) => {
                return Driven::Ended(FlowEnd::ServerReset)
            }
            (Some(DirEnd::Local), _) | (_, Some(DirEnd::Local)) => {
                return Driven::Ended(FlowEnd::LocalError)
            }
            (Some(DirEnd::Fin), Some(DirEnd::Fin)) => return Driven::Ended(FlowEnd::Closed),
            _ => {}
        }
    }
}

/// Registers a socket with the thread's tokio reactor (read and write readiness).
pub(crate) fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    async_fd_for(
        fd,
        tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
    )
}

/// Registers a socket with the thread's tokio reactor for the readiness in `interest` only:
/// the kernel then wakes this thread for no other event of the socket.
pub(crate) fn async_fd_for(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and refers to the same socket
    // until the AsyncFd is dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(std::io::Error::from)
}

/// A connection's socket, put on the thread's reactor only when a step needs its readiness
/// (rules reading the first bytes, a PROXY header to write, the async data plane): a flow
/// that copies on the thread's ring never is (no `epoll_ctl` for it).
pub struct Sock {
    bare: Option<OwnedFd>,
    reactor: Option<AsyncFd<OwnedFd>>,
}

impl Sock {
    /// A socket on no reactor.
    pub fn new(fd: OwnedFd) -> Self {
        Self {
            bare: Some(fd),
            reactor: None,
        }
    }

    /// A socket already on the reactor.
    pub fn registered(fd: AsyncFd<OwnedFd>) -> Self {
        Self {
            bare: None,
            reactor: Some(fd),
        }
    }

    /// The socket on the thread's reactor (registered on the first call).
    pub fn reactor(&mut self) -> std::io::Result<&AsyncFd<OwnedFd>> {
        if let Some(fd) = self.bare.take() {
            self.reactor = Some(async_fd(fd)?);
        }
        Ok(self.reactor.as_ref().expect("a Sock holds its socket"))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match (&self.bare, &self.reactor) {
            (Some(fd), _) => fd.as_fd(),
            (None, Some(fd)) => fd.get_ref().as_fd(),
            (None, None) => unreachable!("a Sock holds its socket"),
        }
    }

    /// The socket, off the reactor.
    pub fn into_fd(self) -> OwnedFd {
        match (self.bare, self.reactor) {
            (Some(fd), _) => fd,
            (None, Some(fd)) => fd.into_inner(),
            (None, None) => unreachable!("a Sock holds its socket"),
        }
    }
}

/// How a finished flow's sockets are closed (they close when dropped, after this). A reset is
/// passed on as a reset: an abortive close (RST) of the side that did not reset. Otherwise
/// HAProxy's rule for the server side: when lb closes first (the server had not sent its FIN: a timeout, a kill, a local error),
/// an abortive close (`SO_LINGER` 0), so that lb's port leaves no `TIME_WAIT` behind and the
/// server learns at once; when the server closed first, a normal close.
pub(crate) fn close_flow(
    end: FlowEnd,
    server_closed: bool,
    client: BorrowedFd<'_>,
    server: BorrowedFd<'_>,
) {
    if let Some(i) = reset_on_close(end, server_closed) {
        if let Err(e) = sockopt::set_linger_zero([client, server][i]) {
            log::debug!("SO_LINGER 0 failed, the peer gets a FIN instead of a reset: {e}");
        }
    }
}

/// Which socket of a finished flow [`close_flow`] closes with a reset (`SO_LINGER` 0): 0 the
/// client, 1 the server, `None` neither. The rule, also for sockets the ring holds as direct
/// descriptors (it sets the option through the ring).
pub(crate) fn reset_on_close(end: FlowEnd, server_closed: bool) -> Option<usize> {
    match end {
        FlowEnd::ClientReset => Some(1),
        FlowEnd::ServerReset => Some(0),
        _ if !server_closed => Some(1),
        _ => None,
    }
}

/// A thread's handle on the data plane chosen at start.
#[derive(Clone)]
pub enum Dataplane {
    Sockmap(Rc<sockmap::ThreadMaps>),
    Splice,
}

impl Dataplane {
    /// Forwards one established pair until both sides are done, a reset, or a timeout. Both
    /// must be non-blocking TCP sockets, on the thread's reactor or not (registered at most
    /// once for the whole connection); they are closed when this returns. `pre`: the bytes lb read
    /// from the client and from the server before (its rules' inspection); they are not in
    /// the report.
    ///
    /// Where the thread has a ring, a flow copies on it first ([`crate::ring::copy`]): a
    /// short flow lives and ends there; one that fills a buffer graduates, every byte it
    /// received sent, to splice, or on the sockmap plane to splice and then the maps once it
    /// has lived `--sockmap-after` (at the first quiet point, each source's queue read to the
    /// end: the ring's last read may have stopped inside an skb, see `sockmap::forward_after`).
    /// Only `--sockmap-after 0` skips the ring: its flows enter the maps at once.
    pub async fn forward(
        &self,
        client: Sock,
        server: Sock,
        t: FlowTimeouts,
        kill: &KillSwitch,
        pre: (u64, u64),
    ) -> FlowReport {
        let started = Instant::now();
        if self.copies_first() && crate::ring::available() {
            let (c, s) = (client.into_fd(), server.into_fd());
            return match crate::ring::copy(c, s, &t, kill).await {
                crate::ring::Copied::Done(report) => report,
                crate::ring::Copied::Graduated(g) => {
                    self.after_ring(g, t, kill, pre, started).await
                }
            };
        }
        self.forward_async(client, server, t, kill, pre, started)
            .await
    }

    /// [`Dataplane::forward`] for a flow that graduated from the ring, `pre` as given to it,
    /// `started` when the flow came to the data plane (the maps take it `--sockmap-after`
    /// from then). The report counts the bytes the ring passed on too.
    pub async fn after_ring(
        &self,
        g: crate::ring::Graduated,
        t: FlowTimeouts,
        kill: &KillSwitch,
        pre: (u64, u64),
        started: Instant,
    ) -> FlowReport {
        let (client, server) = (Sock::new(g.client), Sock::new(g.server));
        let moved = (g.bytes_in, g.bytes_out);
        let pre = (pre.0 + moved.0, pre.1 + moved.1);
        // A binary upgrade's ask made it leave the ring: splice answers it.
        kill.renew_hand_off();
        let mut report = self
            .forward_async(client, server, t, kill, pre, started)
            .await;
        report.bytes_in += moved.0;
        report.bytes_out += moved.1;
        report
    }

    /// Whether flows start on the ring's copy phase: everywhere but on a sockmap plane that
    /// puts them into the maps at once (`--sockmap-after 0`).
    pub(crate) fn copies_first(&self) -> bool {
        match self {
            Self::Splice => true,
            Self::Sockmap(maps) => !maps.at_once(),
        }
    }

    /// [`Dataplane::forward`] without the ring: splice, or the maps after splice.
    async fn forward_async(
        &self,
        mut client: Sock,
        mut server: Sock,
        t: FlowTimeouts,
        kill: &KillSwitch,
        pre: (u64, u64),
        started: Instant,
    ) -> FlowReport {
        // The thread's reactor drives the flow from here: no spinning on the ring meanwhile.
        let _on_reactor = crate::ring::spin::OnReactor::enter();
        match self {
            Self::Splice => {
                if client.reactor().is_err() || server.reactor().is_err() {
                    return FlowReport::local_error();
                }
                let (Some(client), Some(server)) = (client.reactor, server.reactor) else {
                    return FlowReport::local_error();
                };
                let run = splice::run(client, server, t, kill, None, pre);
                run.await.report()
            }
            Self::Sockmap(maps) => {
                let (client, server) = (client.into_fd(), server.into_fd());
                sockmap::forward_after(maps, client, server, t, kill, (pre, started)).await
            }
        }
    }
}

/// When an idle flow must end, and which side's limit it was, given the last activity.
pub(crate) fn idle_deadline(
    t: &FlowTimeouts,
    last: Instant,
    client_done: bool,
    server_done: bool,
) -> Option<(Instant, FlowEnd)> {
    let limit = t.idle_limit(client_done, server_done)?;
    // Which side's limit is the shorter one decides the termination cause.
    let server_side = match t.sides(client_done, server_done) {
        (Some(c), Some(s)) => s < c,
        (c, s) => c.is_none() && s.is_some(),
    };
    let end = if server_side {
        FlowEnd::ServerTimeout
    } else {
        FlowEnd::ClientTimeout
    };
    Some((last + limit, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(clippy::unnecessary_wraps, reason = "timeouts are Option<Duration>")]
    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    /// HAProxy's rule: a FIN after the other side's is passed on by the close; the client's
    /// first, under the backend's `option nolinger`, resets the server; else a half-close.
    #[test]
    fn pass_fin_rule() {
        for nolinger in [false, true] {
            assert_eq!(pass_fin(false, false, nolinger), PassFin::Shutdown);
            assert_eq!(pass_fin(false, true, nolinger), PassFin::ByClose);
            assert_eq!(pass_fin(true, true, nolinger), PassFin::ByClose);
        }
        assert_eq!(pass_fin(true, false, false), PassFin::Shutdown);
        assert_eq!(pass_fin(true, false, true), PassFin::ResetServer);
        // The two directions of a flow: the server's FIN first, then the client's.
        let ends = Ends::new(&FlowTimeouts {
            nolinger: true,
            ..FlowTimeouts::default()
        });
        assert_eq!(ends.fin(false), PassFin::Shutdown);
        assert!(ends.server_done() && !ends.client_done());
        assert_eq!(ends.fin(true), PassFin::ByClose);
        assert!(ends.client_done() && !ends.server_stopped());
        // The client's first: the server side is stopped, not done (its close is a reset).
        let ends = Ends::new(&FlowTimeouts {
            nolinger: true,
            ..FlowTimeouts::default()
        });
        assert_eq!(ends.fin(true), PassFin::ResetServer);
        assert!(ends.client_done() && !ends.server_done());
        assert_eq!(reset_on_close(FlowEnd::Closed, ends.server_done()), Some(1));
    }

    #[test]
    fn idle_limit_takes_the_shorter_side_and_tunnel_overrides() {
        let t = FlowTimeouts {
            client: ms(1000),
            server: ms(5000),
            ..Default::default()
        };
        assert_eq!(t.idle_limit(false, false), ms(1000));
        let t2 = FlowTimeouts {
            tunnel: ms(7000),
            ..t
        };
        assert_eq!(t2.idle_limit(false, false), ms(7000));
        let t3 = FlowTimeouts {
            client_fin: ms(200),
            ..t
        };
        assert_eq!(t3.idle_limit(false, false), ms(1000));
        assert_eq!(t3.idle_limit(true, false), ms(200));
        assert_eq!(FlowTimeouts::default().idle_limit(true, true), None);
        let only_server = FlowTimeouts {
            server: ms(300),
            ..Default::default()
        };
        let now = Instant::now();
        let (at, end) = idle_deadline(&only_server, now, false, false).unwrap();
        assert_eq!(at, now + Duration::from_millis(300));
        assert_eq!(end, FlowEnd::ServerTimeout);
        let (_, end) = idle_deadline(&t, now, false, false).unwrap();
        assert_eq!(end, FlowEnd::ClientTimeout);
    }
}
