//! The accept path: one thread per core, each with its own `SO_REUSEPORT` listener per `bind`
//! and a tokio-uring (`io_uring`) accept loop; per connection: pick a server from the lock-free
//! table, connect with `timeout connect`/`retries`/`redispatch`, then hand the pair to the data
//! plane.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, Notify};

use crate::config::{Backend, Config, Frontend, Keepalive};
use crate::dataplane::sockmap::{MapIds, ThreadMaps};
use crate::dataplane::{sockopt, Dataplane, FlowEnd, FlowReport, FlowTimeouts, KillSwitch};
use crate::fd_budget::{self, Use};
use crate::logging::{
    self,
    tcplog::{Ending, Killer},
};
use crate::table::{AcquireError, BackendTable, ServerSlot};

/// Listen backlog of each listener (HAProxy's default is maxconn; the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// What every thread shares: the config, the server tables, and the process-wide connection
/// count for `global maxconn`.
pub struct Shared {
    pub config: Arc<Config>,
    /// One table per `Config::backends` entry, same order.
    pub backends: Vec<Arc<BackendTable>>,
    /// Current client connections, all threads.
    pub conns: AtomicU32,
    /// Process-wide limit (`global maxconn`).
    pub maxconn: u32,
    /// Signalled when a connection ends, for accept loops paused at `maxconn`.
    pub conn_released: Notify,
    /// Per-frontend sessions and bytes (`Config::frontends` order), for the stats page, the
    /// runtime API, tcplog's `%fc`, and the frontend's `maxconn` (its `cur`).
    pub fe_stats: Vec<ProxyCounters>,
    /// Per-backend session counts (`Config::backends` order); bytes are the servers' sums.
    pub be_stats: Vec<ProxyCounters>,
    /// When the process started (`Start_time_sec`, uptime).
    pub started: std::time::SystemTime,
    /// One command channel per thread, to reach the flows that thread owns.
    threads: Vec<UnboundedSender<FlowCommand>>,
    /// Configuration generation: 0 at start, +1 per accepted reload. Flows keep the generation
    /// they were accepted in; commands about servers reach only flows of the same generation.
    pub generation: u64,
    /// Passive health checks: connect results of real traffic (`observe layer4`).
    pub health: crate::health::Passive,
}

/// Session counters of one frontend or backend, all atomics (Relaxed: statistics, read independently).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Sessions being served now (`scur`). A frontend's count from accept until the
    /// connection's log line, as HAProxy's; a backend's from the server pick.
    pub cur: AtomicU32,
    /// Sessions accepted since start (`stot`).
    pub total: AtomicU64,
    /// Highest concurrent sessions seen (`smax`).
    pub max: AtomicU32,
    /// Bytes client -> lb of finished flows (`bin`).
    pub bytes_in: AtomicU64,
    /// Bytes lb -> client of finished flows (`bout`).
    pub bytes_out: AtomicU64,
}

impl ProxyCounters {
    /// Counts a new session (`cur`, `max`, `total`) until the guard is dropped.
    fn enter(&self) -> ProxySession<'_> {
        let cur = self.cur.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(cur, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ProxySession(self)
    }
}

/// One session counted in [`ProxyCounters::cur`].
struct ProxySession<'a>(&'a ProxyCounters);

impl Drop for ProxySession<'_> {
    fn drop(&mut self) {
        self.0.cur.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The configuration generation serving now, for what outlives a reload (the stats page and
/// the runtime API): each request loads it afresh.
pub type Current = Arc<arc_swap::ArcSwap<Shared>>;

/// What other threads (admin API, health checks) ask of a thread about the flows it owns.
/// Flows live in their thread's registry, so the accept/forward path takes no shared lock.
#[derive(Debug)]
pub enum FlowCommand {
    /// End every flow on this server (`shutdown sessions server`, `on-marked-down
    /// shutdown-sessions`).
    KillServer {
        generation: u64,
        backend: usize,
        server: usize,
    },
    /// End every flow on a backup server of this backend (`on-marked-up
    /// shutdown-backup-sessions`).
    KillBackups { generation: u64, backend: usize },
    /// Report the live flows (`show sess`).
    List(oneshot::Sender<Vec<FlowInfo>>),
    /// Serve `plan` from now on (start and reload); acknowledged once applied.
    Apply(Box<ThreadPlan>, oneshot::Sender<()>),
}

/// What one thread serves: for each bound address, its frontend in `shared`'s config, and a
/// listening socket when the address is new to this thread.
pub struct ThreadPlan {
    pub shared: Arc<Shared>,
    pub binds: Vec<BindPlan>,
    /// Addresses no longer in the configuration: their accept loops stop.
    pub removed: Vec<SocketAddr>,
}

impl std::fmt::Debug for ThreadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPlan")
            .field("generation", &self.shared.generation)
            .field("binds", &self.binds)
            .field("removed", &self.removed)
            .finish()
    }
}

/// One address of a [`ThreadPlan`].
#[derive(Debug)]
pub struct BindPlan {
    pub addr: SocketAddr,
    /// Index into `shared.config.frontends`.
    pub frontend: usize,
    /// This thread's socket for a newly bound address; `None` = keep the running loop.
    pub listener: Option<TcpListener>,
}

/// A live flow, as `show sess` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Unique within its thread.
    pub id: u64,
    pub thread: usize,
    /// Index into `Config::frontends`.
    pub frontend: usize,
    /// Index into `Config::backends`.
    pub backend: usize,
    /// Index into the backend's servers.
    pub server: usize,
    pub backup: bool,
    /// Configuration generation the flow was accepted in (see [`Shared::generation`]).
    pub generation: u64,
    pub client: SocketAddr,
    /// Time since the client was accepted.
    pub age: Duration,
}

impl Shared {
    /// The shared state and one command receiver per thread (hand receiver `i` to thread `i`).
    pub fn new(
        config: Arc<Config>,
        maxconn: u32,
        threads: usize,
    ) -> (Arc<Self>, Vec<UnboundedReceiver<FlowCommand>>) {
        let (senders, receivers) = (0..threads).map(|_| unbounded_channel()).unzip();
        let started = std::time::SystemTime::now();
        (Self::build(config, maxconn, senders, 0, started), receivers)
    }

    /// The state of the next configuration generation (reload): new tables and counters,
    /// the same threads.
    pub fn next_generation(&self, config: Arc<Config>, maxconn: u32) -> Arc<Self> {
        Self::build(
            config,
            maxconn,
            self.threads.clone(),
            self.generation + 1,
            self.started,
        )
    }

    fn build(
        config: Arc<Config>,
        maxconn: u32,
        threads: Vec<UnboundedSender<FlowCommand>>,
        generation: u64,
        started: std::time::SystemTime,
    ) -> Arc<Self> {
        let backends = config.backends.iter().map(BackendTable::new).collect();
        let health = crate::health::Passive::new(&config);
        let fe_stats = config
            .frontends
            .iter()
            .map(|_| ProxyCounters::default())
            .collect();
        let be_stats = config
            .backends
            .iter()
            .map(|_| ProxyCounters::default())
            .collect();
        Arc::new(Self {
            config,
            backends,
            conns: AtomicU32::new(0),
            maxconn,
            conn_released: Notify::new(),
            threads,
            generation,
            health,
            fe_stats,
            be_stats,
            started,
        })
    }

    /// Sends each thread its plan and waits until all have applied it.
    pub async fn apply(&self, plans: Vec<ThreadPlan>) {
        let mut acks = Vec::new();
        for (t, plan) in self.threads.iter().zip(plans) {
            let (tx, rx) = oneshot::channel();
            if t.send(FlowCommand::Apply(Box::new(plan), tx)).is_ok() {
                acks.push(rx);
            }
        }
        for rx in acks {
            let _ = rx.await;
        }
    }

    fn broadcast(&self, make: impl Fn() -> FlowCommand) {
        for t in &self.threads {
            // A thread that has stopped has no flows left to act on.
            let _ = t.send(make());
        }
    }

    /// Ends every live flow on `backend`'s `server`, on every thread and data plane.
    pub fn kill_server_flows(&self, backend: usize, server: usize) {
        let generation = self.generation;
        self.broadcast(|| FlowCommand::KillServer {
            generation,
            backend,
            server,
        });
    }

    /// Ends every live flow on a backup server of `backend`.
    pub fn kill_backup_flows(&self, backend: usize) {
        let generation = self.generation;
        self.broadcast(|| FlowCommand::KillBackups {
            generation,
            backend,
        });
    }

    /// The live flows of every thread.
    pub async fn flows(&self) -> Vec<FlowInfo> {
        let mut waits = Vec::new();
        for t in &self.threads {
            let (tx, rx) = oneshot::channel();
            if t.send(FlowCommand::List(tx)).is_ok() {
                waits.push(rx);
            }
        }
        let mut all = Vec::new();
        for rx in waits {
            all.extend(rx.await.unwrap_or_default());
        }
        all.sort_by_key(|f| (f.thread, f.id));
        all
    }
}

/// A flow in its thread's registry.
struct LocalFlow {
    info: FlowInfo,
    started: Instant,
    kill: Rc<KillSwitch>,
}

/// What one thread's tasks share: its data plane handle, what each bound address serves, and
/// the registry of its flows.
struct ThreadCtx {
    thread: usize,
    dataplane: Dataplane,
    binds: RefCell<HashMap<SocketAddr, BindState>>,
    flows: RefCell<HashMap<u64, LocalFlow>>,
    next_id: Cell<u64>,
}

/// What an accept loop serves now; replaced on reload while the loop (and its listening
/// socket, with its backlog) carries on.
struct BindState {
    shared: Arc<Shared>,
    frontend: usize,
    removed: bool,
}

impl ThreadCtx {
    /// Acts on one command from another thread.
    fn command(self: &Rc<Self>, cmd: FlowCommand) {
        if let FlowCommand::Apply(plan, ack) = cmd {
            self.apply(*plan);
            let _ = ack.send(());
            return;
        }
        let flows = self.flows.borrow();
        match cmd {
            FlowCommand::KillServer {
                generation,
                backend,
                server,
            } => flows
                .values()
                .filter(|f| {
                    f.info.generation == generation
                        && f.info.backend == backend
                        && f.info.server == server
                })
                .for_each(|f| f.kill.kill()),
            FlowCommand::KillBackups {
                generation,
                backend,
            } => flows
                .values()
                .filter(|f| {
                    f.info.generation == generation && f.info.backend == backend && f.info.backup
                })
                .for_each(|f| f.kill.kill()),
            FlowCommand::Apply(..) => {}
            FlowCommand::List(reply) => {
                let list = flows
                    .values()
                    .map(|f| FlowInfo {
                        age: f.started.elapsed(),
                        ..f.info.clone()
                    })
                    .collect();
                let _ = reply.send(list);
            }
        }
    }
}

impl ThreadCtx {
    /// Switches every address to the plan's generation, stops loops of removed addresses and
    /// starts loops for new ones.
    fn apply(self: &Rc<Self>, plan: ThreadPlan) {
        let mut binds = self.binds.borrow_mut();
        for addr in &plan.removed {
            if let Some(b) = binds.get_mut(addr) {
                b.removed = true;
            }
        }
        for bp in plan.binds {
            binds.insert(
                bp.addr,
                BindState {
                    shared: plan.shared.clone(),
                    frontend: bp.frontend,
                    removed: false,
                },
            );
            if let Some(listener) = bp.listener {
                let _ = listener.set_nonblocking(false);
                let listener = tokio_uring::net::TcpListener::from_std(listener);
                tokio_uring::spawn(accept_loop(bp.addr, listener, self.clone()));
            }
        }
    }

    /// The generation and frontend an address serves now; `None` once it was removed.
    fn serving(&self, addr: SocketAddr) -> Option<(Arc<Shared>, usize)> {
        let binds = self.binds.borrow();
        let b = binds.get(&addr)?;
        (!b.removed).then(|| (b.shared.clone(), b.frontend))
    }
}

/// Removes a flow from its thread's registry when the flow's task ends, however it ends.
struct Registered<'a> {
    ctx: &'a ThreadCtx,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.ctx.flows.borrow_mut().remove(&self.id);
    }
}

/// Which data plane the threads run.
#[derive(Clone, Copy, Debug)]
pub enum PlaneSetup {
    Splice,
    /// The maps, and how long a flow runs on splice before it enters them.
    Sockmap(MapIds, Duration),
}

/// Creates a bound, listening socket with `SO_REUSEPORT` (one per thread and bind: the kernel
/// spreads connections across them).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]:port` takes IPv4 too, as HAProxy's `v4v6` default on Linux does.
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// The listening sockets of every bound address, one per thread (an `SO_REUSEPORT` group).
/// The main thread keeps these; threads get duplicates, so an address that survives a reload
/// keeps its socket and its backlog, and shutting one down here stops every thread's loop.
#[derive(Debug, Default)]
pub struct Listeners {
    by_addr: HashMap<SocketAddr, Vec<TcpListener>>,
}

impl Listeners {
    /// Binds, `threads` times each, every address of `config` not bound yet. On error nothing
    /// new stays bound, and the message names the frontend, the address and the line.
    pub fn bind_new(&mut self, config: &Config, threads: usize) -> Result<Vec<SocketAddr>, String> {
        let mut added: Vec<SocketAddr> = Vec::new();
        for fe in &config.frontends {
            for bind in &fe.binds {
                if self.by_addr.contains_key(&bind.addr) {
                    continue;
                }
                let bound: io::Result<Vec<TcpListener>> =
                    (0..threads).map(|_| bind_listener(bind.addr)).collect();
                match bound {
                    Ok(socks) => {
                        self.by_addr.insert(bind.addr, socks);
                        added.push(bind.addr);
                    }
                    Err(e) => {
                        for a in &added {
                            self.by_addr.remove(a);
                        }
                        return Err(format!(
                            "{}: frontend '{}': cannot bind {}: {e}",
                            bind.loc, fe.name, bind.addr
                        ));
                    }
                }
            }
        }
        Ok(added)
    }

    /// The plans that make every thread serve `shared`'s configuration: running loops switch
    /// to it, `new` addresses get a socket, addresses not in the configuration are removed.
    pub fn plans(
        &self,
        shared: &Arc<Shared>,
        new: &[SocketAddr],
        threads: usize,
    ) -> io::Result<Vec<ThreadPlan>> {
        let wanted: HashMap<SocketAddr, usize> = shared
            .config
            .frontends
            .iter()
            .enumerate()
            .flat_map(|(fi, fe)| fe.binds.iter().map(move |b| (b.addr, fi)))
            .collect();
        let removed: Vec<SocketAddr> = self
            .by_addr
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        (0..threads)
            .map(|t| {
                let binds = wanted
                    .iter()
                    .map(|(addr, fi)| {
                        let listener = if new.contains(addr) {
                            Some(self.by_addr[addr][t].try_clone()?)
                        } else {
                            None
                        };
                        Ok(BindPlan {
                            addr: *addr,
                            frontend: *fi,
                            listener,
                        })
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(ThreadPlan {
                    shared: shared.clone(),
                    binds,
                    removed: removed.clone(),
                })
            })
            .collect()
    }

    /// Closes the sockets of addresses not in `config` (after the threads were told): pending
    /// accepts fail, the loops see their address removed and stop; queued clients get a reset.
    pub fn close_removed(&mut self, config: &Config) {
        let wanted: Vec<SocketAddr> = config
            .frontends
            .iter()
            .flat_map(|fe| fe.binds.iter().map(|b| b.addr))
            .collect();
        self.by_addr.retain(|addr, socks| {
            let keep = wanted.contains(addr);
            if !keep {
                shutdown_listeners(socks);
            }
            keep
        });
    }

    /// Stops listening on every address at once (process stop). Needed because an `io_uring`
    /// accept in flight holds its socket open until the ring is torn down, which the kernel
    /// finishes after the process has exited: without this the port accepts for a moment more.
    pub fn close_all(&mut self) {
        for socks in self.by_addr.values() {
            shutdown_listeners(socks);
        }
        self.by_addr.clear();
    }
}

fn shutdown_listeners(socks: &[TcpListener]) {
    for s in socks {
        // SAFETY: shutdown on a listening socket we own; it wakes pending accepts.
        unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// Runs one thread forever: its data plane, its flows, and the accept loops that the plans it
/// receives on `commands` ask for (returns only if the runtime cannot start).
pub fn run_thread(
    mut commands: UnboundedReceiver<FlowCommand>,
    plane: PlaneSetup,
    thread: usize,
    threads: usize,
) -> io::Result<()> {
    tokio_uring::start(async move {
        let dataplane = match plane {
            PlaneSetup::Splice => Dataplane::Splice,
            PlaneSetup::Sockmap(ids, hand_over_after) => {
                let maps = ThreadMaps::open(ids, thread, threads, hand_over_after)?;
                tokio_uring::spawn(maps.watcher().clone().run());
                Dataplane::Sockmap(maps)
            }
        };
        // Map handles are open: privileges may be dropped now (waits for that when planned).
        crate::privileges::thread_started();
        let ctx = Rc::new(ThreadCtx {
            thread,
            dataplane,
            binds: RefCell::new(HashMap::new()),
            flows: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        while let Some(cmd) = commands.recv().await {
            ctx.command(cmd);
        }
        Ok(())
    })
}

/// A client connection counted against `global maxconn` and the frontend's `maxconn`;
/// uncounted on drop.
struct ConnPermit {
    shared: Arc<Shared>,
    frontend: usize,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.shared.conns.fetch_sub(1, Ordering::AcqRel);
        self.shared.fe_stats[self.frontend]
            .cur
            .fetch_sub(1, Ordering::AcqRel);
        self.shared.conn_released.notify_waiters();
    }
}

/// Waits until both the process and the frontend are below their `maxconn`. Like HAProxy, a
/// listener at its limit stops accepting (clients wait in the kernel's backlog) instead of
/// accepting and closing. The connection is counted only once accepted ([`ConnPermit::count`]),
/// so the counts never include accept loops that are merely waiting; at the limit, the loops
/// already waiting in `accept` may each take one more (at most one per thread and address).
async fn below_maxconn(shared: &Shared, frontend: usize) {
    let fe_max = shared.config.frontends[frontend]
        .maxconn
        .unwrap_or(shared.maxconn);
    loop {
        // Create the waiter before checking, so a release between check and wait is not lost.
        let released = shared.conn_released.notified();
        if shared.conns.load(Ordering::Acquire) < shared.maxconn
            && shared.fe_stats[frontend].cur.load(Ordering::Acquire) < fe_max
        {
            return;
        }
        released.await;
    }
}

impl ConnPermit {
    /// Counts an accepted connection against `global maxconn` and the frontend's, and in the
    /// frontend's session statistics.
    fn count(shared: &Arc<Shared>, frontend: usize) -> Self {
        shared.conns.fetch_add(1, Ordering::AcqRel);
        let fe = &shared.fe_stats[frontend];
        let cur = fe.cur.fetch_add(1, Ordering::AcqRel) + 1;
        fe.max.fetch_max(cur, Ordering::Relaxed);
        fe.total.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: shared.clone(),
            frontend,
        }
    }
}

async fn accept_loop(
    addr: SocketAddr,
    listener: tokio_uring::net::TcpListener,
    ctx: Rc<ThreadCtx>,
) {
    let budget = fd_budget::process();
    while let Some((shared, frontend)) = ctx.serving(addr) {
        below_maxconn(&shared, frontend).await;
        // Never accept what can't be served: the connection's fds are set aside first; while
        // there are none, clients wait in the backlog.
        let name = &shared.config.frontends[frontend].name;
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
        let Some((shared, frontend)) = ctx.serving(addr) else {
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
                        shared.config.frontends[frontend].name
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
        let permit = ConnPermit::count(&shared, frontend);
        let ctx = ctx.clone();
        tokio_uring::spawn(async move {
            handle(&shared, frontend, client, peer, &ctx, permit).await;
            // The client's and the server's sockets are closed by now.
            drop(fds);
        });
    }
}

/// How long an accept loop pauses after `accept` failed (HAProxy pauses a listener 100 ms).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Makes an accepted socket non-blocking. An accepted socket has no other file status flag
/// set (`O_APPEND`, `O_ASYNC`, ...), so one `F_SETFL` is exact: no `F_GETFL` first.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Socket options of either side: `TCP_NODELAY`, keepalive when configured.
fn tune(fd: &OwnedFd, ka: &Keepalive) -> io::Result<()> {
    sockopt::set_nodelay(fd.as_fd())?;
    sockopt::set_keepalive(fd.as_fd(), ka)
}

/// Why a connect attempt failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connection timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One non-blocking connect to `addr`, bounded by `timeout connect`.
async fn connect(
    addr: SocketAddr,
    ka: &Keepalive,
    timeout: Option<Duration>,
) -> Result<OwnedFd, ConnectError> {
    // Non-blocking and close-on-exec from creation: no fcntl afterwards.
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let fd: OwnedFd = sock.into();
    tune(&fd, ka)?;
    let sock = Socket::from(fd);
    match sock.connect(&addr.into()) {
        Ok(()) => return Ok(sock.into()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let afd = crate::dataplane::async_fd(sock.into())?;
    let wait = async {
        loop {
            let mut guard = afd.writable().await?;
            guard.clear_ready();
            if let Some(e) = sockopt::take_error(afd.get_ref().as_fd()) {
                return Err(e);
            }
            // Writable with no error: connected (check, as spurious wakeups exist).
            // SAFETY: getpeername writes at most `len` bytes into the storage.
            let connected = unsafe {
                let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                libc::getpeername(
                    afd.get_ref().as_raw_fd(),
                    std::ptr::from_mut(&mut ss).cast(),
                    &raw mut len,
                ) == 0
            };
            if connected {
                return Ok::<(), io::Error>(());
            }
        }
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, wait).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnectError::Timeout(t)),
        },
        None => wait.await?,
    }
    Ok(afd.into_inner())
}

/// What the connect phase did, for the tcplog line (`%rc`, `%ts`).
#[derive(Clone, Debug, Default)]
struct ConnectTries {
    /// Re-tries after the first attempt.
    retries: u32,
    /// The last retry went to another server.
    redispatched: bool,
    /// The last failed attempt ended by `timeout connect`.
    timed_out: bool,
    /// The server of the last failed attempt (index, name): `%s` when all attempts fail.
    failed_server: Option<(usize, Arc<str>)>,
}

/// Connects to the slot's server, re-trying `retries` times; with `option redispatch` the last
/// retry goes to another server. Between retries on the same server after an immediate
/// failure, waits HAProxy's turn-around time, min(`timeout connect`, 1 s).
async fn connect_with_retries(
    shared: &Shared,
    table: &Arc<BackendTable>,
    be: &Backend,
    client: SocketAddr,
    mut slot: ServerSlot,
    tries: &mut ConnectTries,
) -> Result<(ServerSlot, OwnedFd), String> {
    let mut last_error;
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let result = connect(slot.addr(), &be.keepalive, be.timeouts.connect).await;
        let backend = (be.id as usize).saturating_sub(1);
        shared
            .health
            .connect_result(backend, slot.index(), result.is_ok());
        match result {
            Ok(fd) => return Ok((slot, fd)),
            Err(e) => {
                tries.timed_out = matches!(e, ConnectError::Timeout(_));
                tries.failed_server = Some((slot.index(), Arc::from(slot.name())));
                slot.counters()
                    .connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                last_error = format!("server '{}/{}': {e}", be.name, slot.name());
                log::debug!("{last_error} (attempt {})", attempt + 1);
            }
        }
        if attempt >= be.retries {
            return Err(last_error);
        }
        attempt += 1;
        tries.retries = attempt;
        slot.counters().retries.fetch_add(1, Ordering::Relaxed);
        if be.redispatch && attempt == be.retries {
            let failed = slot.index();
            drop(slot);
            slot = match table.try_acquire(client, Some(failed)) {
                Ok(s) => {
                    s.counters().redispatches.fetch_add(1, Ordering::Relaxed);
                    tries.redispatched = true;
                    s
                }
                Err(e) => {
                    return Err(format!(
                        "{last_error}; redispatch found no other server: {e}"
                    ))
                }
            };
            continue;
        }
        let turnaround = be
            .timeouts
            .connect
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        if started.elapsed() < turnaround {
            tokio::time::sleep_until(started + turnaround).await;
        }
    }
}

/// What [`serve`] leaves for the log line.
struct Served {
    server: Option<(usize, Arc<str>)>,
    tw: Option<u64>,
    tc: Option<u64>,
    bytes_in: u64,
    bytes_out: u64,
    ending: Ending,
    tries: ConnectTries,
    backend_queue: u64,
    /// The server slot, held until the line is logged.
    slot: Option<ServerSlot>,
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Serves one client, then logs it the way the frontend asks (`option tcplog`, or HAProxy's
/// default `Connect from` line at accept).
async fn handle(
    shared: &Arc<Shared>,
    frontend: usize,
    client: OwnedFd,
    peer: SocketAddr,
    ctx: &ThreadCtx,
    permit: ConnPermit,
) {
    let accepted = Instant::now();
    let accepted_at = logging::time::now_local();
    let fe: &Frontend = &shared.config.frontends[frontend];
    let log = logging::frontend(frontend).filter(|l| l.enabled());
    if let Some(log) = log.as_ref().filter(|l| !l.tcplog) {
        if let Ok(local) = socket2::SockRef::from(&client).local_addr() {
            if let Some(local) = local.as_socket() {
                log.send(
                    logging::INFO,
                    &logging::tcplog::connect_line(&peer, &local, &fe.name),
                );
            }
        }
    }
    let Some(served) = serve(shared, frontend, client, peer, ctx).await else {
        return;
    };
    let Some(log) = log.filter(|l| l.tcplog) else {
        return;
    };
    if log.dontlognull && served.bytes_in == 0 {
        return;
    }
    let table = &shared.backends[fe.backend];
    let snap = table.snapshot();
    let beconn = snap
        .servers
        .iter()
        .map(|s| u64::from(s.counters.cur.load(Ordering::Relaxed)))
        .sum::<u64>()
        + table.queue_len() as u64;
    let srvconn = served.server.as_ref().map_or(0, |(i, _)| {
        snap.servers[*i].counters.cur.load(Ordering::Relaxed)
    });
    let be = &shared.config.backends[fe.backend];
    let line = logging::tcplog::Session {
        client: peer,
        accepted: accepted_at,
        frontend: &fe.name,
        backend: &be.name,
        server: served.server.as_ref().map(|(_, n)| &**n),
        tw: served.tw,
        tc: served.tc,
        tt: ms_since(accepted),
        bytes_out: served.bytes_out,
        ending: served.ending,
        // This connection is still counted (its permit is dropped below), as in HAProxy.
        actconn: shared.conns.load(Ordering::Relaxed),
        feconn: shared.fe_stats[frontend].cur.load(Ordering::Relaxed),
        beconn,
        srvconn,
        retries: served.tries.retries,
        redispatched: served.tries.redispatched,
        srv_queue: 0,
        backend_queue: served.backend_queue,
    }
    .line();
    // `served` holds the server slot and `permit` the connection until here, so %ac, %fc,
    // %bc and %sc count this connection, as HAProxy's do when it logs at the end of the
    // session. Both are released before the line leaves, so whoever reads it sees the
    // counters without this connection.
    drop(served);
    drop(permit);
    log.send(logging::INFO, &line);
}

/// How long, and how many bytes, a client lb has no server for may still send before lb
/// closes it anyway.
const UNSERVED_DRAIN_TIME: Duration = Duration::from_secs(1);
const UNSERVED_DRAIN_BYTES: usize = 256 * 1024;

/// Closes a client lb has no server for the way HAProxy does: a FIN, then what the client
/// sent (its request) and still sends is read and dropped until its own FIN. Closing with
/// unread bytes would make the kernel answer with a reset, and a reset can overtake the FIN
/// and whatever the client still had to read. Bounded by [`UNSERVED_DRAIN_TIME`] and
/// [`UNSERVED_DRAIN_BYTES`]; past them the close is what it is.
async fn close_unserved(client: OwnedFd) {
    if sockopt::shutdown_write(client.as_fd()).is_err() {
        return;
    }
    let Ok(client) = crate::dataplane::async_fd(client) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + UNSERVED_DRAIN_TIME;
    let mut drained = 0;
    while drained < UNSERVED_DRAIN_BYTES {
        let Ok(Ok(mut ready)) = tokio::time::timeout_at(deadline, client.readable()).await else {
            return;
        };
        match ready.try_io(|fd| sockopt::recv_discard(fd.get_ref().as_fd(), UNSERVED_DRAIN_BYTES)) {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => drained += n,
            Err(_would_block) => {}
        }
    }
}

/// Server choice, connect, forward, counters. `None` when the client socket could not even be
/// set up (nothing to log).
async fn serve(
    shared: &Arc<Shared>,
    frontend: usize,
    client: OwnedFd,
    peer: SocketAddr,
    ctx: &ThreadCtx,
) -> Option<Served> {
    let fe: &Frontend = &shared.config.frontends[frontend];
    let be: &Backend = &shared.config.backends[fe.backend];
    let table = &shared.backends[fe.backend];
    if let Err(e) = set_nonblocking(&client).and_then(|()| tune(&client, &fe.keepalive)) {
        log::debug!("frontend '{}': client {peer}: {e}", fe.name);
        return None;
    }
    let mut served = Served {
        server: None,
        tw: None,
        tc: None,
        bytes_in: 0,
        bytes_out: 0,
        ending: Ending::NoServer,
        tries: ConnectTries::default(),
        slot: None,
        // Connections ahead of us in the backend queue (lb has one queue per backend).
        backend_queue: table.queue_len() as u64,
    };
    let queue_timeout = be.timeouts.queue.or(be.timeouts.connect);
    let queued_at = Instant::now();
    let slot = match table.acquire(peer, None, queue_timeout).await {
        Ok(s) => s,
        Err(e) => {
            served.ending = match e {
                AcquireError::NoServer => Ending::NoServer,
                AcquireError::QueueFull => Ending::QueueFull,
                AcquireError::QueueTimeout => Ending::QueueTimeout,
            };
            if e == AcquireError::QueueTimeout {
                // HAProxy records the time spent in the queue when `timeout queue` strikes.
                served.tw = Some(ms_since(queued_at));
            }
            let what = match e {
                AcquireError::NoServer => "no server available".to_string(),
                other => format!("no server available ({other})"),
            };
            log::warn!(
                "frontend '{}' -> backend '{}': {what}, closing client {peer}",
                fe.name,
                be.name
            );
            Box::pin(close_unserved(client)).await;
            return Some(served);
        }
    };
    let _be_session = shared.be_stats[fe.backend].enter();
    served.tw = Some(ms_since(queued_at));
    let connecting = Instant::now();
    let connected = connect_with_retries(shared, table, be, peer, slot, &mut served.tries).await;
    let (slot, server) = match connected {
        Ok(x) => x,
        Err(reason) => {
            served.ending = if served.tries.timed_out {
                Ending::ConnectTimeout
            } else {
                Ending::ConnectFailed
            };
            served.server = served.tries.failed_server.take();
            log::warn!(
                "frontend '{}' -> backend '{}': no server available for client {peer}: {reason}",
                fe.name,
                be.name
            );
            Box::pin(close_unserved(client)).await;
            return Some(served);
        }
    };
    served.tc = Some(ms_since(connecting));
    let id = ctx.next_id.get();
    ctx.next_id.set(id + 1);
    let kill = Rc::new(KillSwitch::default());
    ctx.flows.borrow_mut().insert(
        id,
        LocalFlow {
            info: FlowInfo {
                id,
                thread: ctx.thread,
                frontend,
                backend: fe.backend,
                server: slot.index(),
                backup: slot.is_backup(),
                generation: shared.generation,
                client: peer,
                age: Duration::ZERO,
            },
            started: Instant::now(),
            kill: kill.clone(),
        },
    );
    let registered = Registered { ctx, id };
    let report: FlowReport = ctx
        .dataplane
        .forward(client, server, FlowTimeouts::new(fe, be), &kill)
        .await;
    drop(registered);
    let c = slot.counters();
    c.bytes_in.fetch_add(report.bytes_in, Ordering::Relaxed);
    c.bytes_out.fetch_add(report.bytes_out, Ordering::Relaxed);
    let f = &shared.fe_stats[frontend];
    f.bytes_in.fetch_add(report.bytes_in, Ordering::Relaxed);
    f.bytes_out.fetch_add(report.bytes_out, Ordering::Relaxed);
    log::debug!(
        "{peer} {}/{}: {:?}, {} bytes in, {} bytes out{}",
        be.name,
        slot.name(),
        report.end,
        report.bytes_in,
        report.bytes_out,
        if report.spliced_in_kernel {
            " (sockmap)"
        } else {
            " (splice)"
        }
    );
    let killer = if report.end == FlowEnd::Killed {
        let snap = table.snapshot();
        let state = &snap.servers[slot.index()];
        if !state.state.healthy {
            Killer::ServerDown
        } else if slot.is_backup() && snap.serving().iter().any(|&i| !snap.servers[i].conf.backup) {
            Killer::BackupOff
        } else {
            Killer::Admin
        }
    } else {
        Killer::Admin
    };
    served.ending = Ending::Flow(report.end, killer);
    served.bytes_in = report.bytes_in;
    served.bytes_out = report.bytes_out;
    served.server = Some((slot.index(), Arc::from(slot.name())));
    // Keep the slot until the log line is written (see `handle`).
    served.slot = Some(slot);
    Some(served)
}
