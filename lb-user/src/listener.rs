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
use crate::dataplane::{sockopt, Dataplane, FlowReport, FlowTimeouts, KillSwitch};
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
    /// Current connections per frontend (`Config::frontends` order), for frontend `maxconn`.
    pub fe_conns: Vec<AtomicU32>,
    /// Per-frontend statistics (`Config::frontends` order), for the stats page and runtime API.
    pub fe_stats: Vec<ProxyCounters>,
    /// Per-backend session counts (`Config::backends` order); bytes are the servers' sums.
    pub be_stats: Vec<ProxyCounters>,
    /// When the process started (`Start_time_sec`, uptime).
    pub started: std::time::SystemTime,
    /// One command channel per thread, to reach the flows that thread owns.
    threads: Vec<UnboundedSender<FlowCommand>>,
}

/// Session counters of one frontend or backend, all atomics (Relaxed: statistics, read independently).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Sessions being served now (`scur`); unlike `Shared::fe_conns`, not counting the slot an
    /// accept loop reserves before `accept` returns.
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

/// What other threads (admin API, health checks) ask of a thread about the flows it owns.
/// Flows live in their thread's registry, so the accept/forward path takes no shared lock.
#[derive(Debug)]
pub enum FlowCommand {
    /// End every flow on this server (`shutdown sessions server`, `on-marked-down
    /// shutdown-sessions`).
    KillServer { backend: usize, server: usize },
    /// End every flow on a backup server of this backend (`on-marked-up
    /// shutdown-backup-sessions`).
    KillBackups { backend: usize },
    /// Report the live flows (`show sess`).
    List(oneshot::Sender<Vec<FlowInfo>>),
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
        let backends = config.backends.iter().map(BackendTable::new).collect();
        let fe_conns = config.frontends.iter().map(|_| AtomicU32::new(0)).collect();
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
        let (senders, receivers) = (0..threads).map(|_| unbounded_channel()).unzip();
        let shared = Arc::new(Self {
            config,
            backends,
            conns: AtomicU32::new(0),
            maxconn,
            conn_released: Notify::new(),
            fe_conns,
            fe_stats,
            be_stats,
            started: std::time::SystemTime::now(),
            threads: senders,
        });
        (shared, receivers)
    }

    fn broadcast(&self, make: impl Fn() -> FlowCommand) {
        for t in &self.threads {
            // A thread that has stopped has no flows left to act on.
            let _ = t.send(make());
        }
    }

    /// Ends every live flow on `backend`'s `server`, on every thread and data plane.
    pub fn kill_server_flows(&self, backend: usize, server: usize) {
        self.broadcast(|| FlowCommand::KillServer { backend, server });
    }

    /// Ends every live flow on a backup server of `backend`.
    pub fn kill_backup_flows(&self, backend: usize) {
        self.broadcast(|| FlowCommand::KillBackups { backend });
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

/// What one thread's tasks share: its data plane handle and the registry of its flows.
struct ThreadCtx {
    thread: usize,
    dataplane: Dataplane,
    flows: RefCell<HashMap<u64, LocalFlow>>,
    next_id: Cell<u64>,
}

impl ThreadCtx {
    /// Acts on one command from another thread.
    fn command(&self, cmd: FlowCommand) {
        let flows = self.flows.borrow();
        match cmd {
            FlowCommand::KillServer { backend, server } => flows
                .values()
                .filter(|f| f.info.backend == backend && f.info.server == server)
                .for_each(|f| f.kill.kill()),
            FlowCommand::KillBackups { backend } => flows
                .values()
                .filter(|f| f.info.backend == backend && f.info.backup)
                .for_each(|f| f.kill.kill()),
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
    Sockmap(MapIds),
}

/// The listeners of one thread: (frontend index, listener) pairs, already bound.
pub type ThreadListeners = Vec<(usize, TcpListener)>;

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

/// Binds every `bind` of every frontend `threads` times. Errors name the frontend and address.
pub fn bind_all(config: &Config, threads: usize) -> Result<Vec<ThreadListeners>, String> {
    let mut per_thread: Vec<ThreadListeners> = (0..threads).map(|_| Vec::new()).collect();
    for (fi, fe) in config.frontends.iter().enumerate() {
        for bind in &fe.binds {
            for listeners in &mut per_thread {
                let l = bind_listener(bind.addr).map_err(|e| {
                    format!(
                        "{}: frontend '{}': cannot bind {}: {e}",
                        bind.loc, fe.name, bind.addr
                    )
                })?;
                listeners.push((fi, l));
            }
        }
    }
    Ok(per_thread)
}

/// Runs one thread's accept loops forever (returns only if the runtime cannot start).
pub fn run_thread(
    shared: Arc<Shared>,
    listeners: ThreadListeners,
    mut commands: UnboundedReceiver<FlowCommand>,
    plane: PlaneSetup,
    thread: usize,
    threads: usize,
) -> io::Result<()> {
    tokio_uring::start(async move {
        let dataplane = match plane {
            PlaneSetup::Splice => Dataplane::Splice,
            PlaneSetup::Sockmap(ids) => {
                let maps = ThreadMaps::open(ids, thread, threads)?;
                tokio_uring::spawn(maps.watcher().clone().run());
                Dataplane::Sockmap(maps)
            }
        };
        let ctx = Rc::new(ThreadCtx {
            thread,
            dataplane,
            flows: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        for (fi, listener) in listeners {
            let shared = shared.clone();
            listener.set_nonblocking(false)?;
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            tokio_uring::spawn(accept_loop(shared, fi, listener, ctx.clone()));
        }
        tokio_uring::spawn(async move {
            while let Some(cmd) = commands.recv().await {
                ctx.command(cmd);
            }
        });
        std::future::pending::<()>().await;
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
        self.shared.fe_conns[self.frontend].fetch_sub(1, Ordering::AcqRel);
        self.shared.conn_released.notify_waiters();
    }
}

/// Waits until both the process and the frontend are below their `maxconn`, then counts one
/// connection. Like HAProxy, a listener at its limit stops accepting (clients wait in the
/// kernel's backlog) instead of accepting and closing.
async fn admit(shared: &Arc<Shared>, frontend: usize, fe_max: u32) -> ConnPermit {
    loop {
        // Create the waiter before checking, so a release between check and wait is not lost.
        let released = shared.conn_released.notified();
        let fe = &shared.fe_conns[frontend];
        if shared.conns.load(Ordering::Acquire) < shared.maxconn
            && fe.load(Ordering::Acquire) < fe_max
        {
            shared.conns.fetch_add(1, Ordering::AcqRel);
            fe.fetch_add(1, Ordering::AcqRel);
            return ConnPermit {
                shared: shared.clone(),
                frontend,
            };
        }
        released.await;
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    frontend: usize,
    listener: tokio_uring::net::TcpListener,
    ctx: Rc<ThreadCtx>,
) {
    let fe_max = shared.config.frontends[frontend]
        .maxconn
        .unwrap_or(shared.maxconn);
    loop {
        let permit = admit(&shared, frontend, fe_max).await;
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the kernel keeps the
                // connection in the backlog.
                log::warn!(
                    "frontend '{}': accept failed: {e}",
                    shared.config.frontends[frontend].name
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // tokio-uring's TcpStream can't give its fd away; take our own (CLOEXEC) copy and let
        // it close the original.
        // SAFETY: fcntl on an fd that `stream` keeps open during the call.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        drop(stream);
        if fd < 0 {
            log::warn!("accept: dup failed: {}", io::Error::last_os_error());
            continue;
        }
        // SAFETY: `fd` was just created by F_DUPFD_CLOEXEC and is owned by nobody else.
        let client = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = shared.clone();
        let ctx = ctx.clone();
        tokio_uring::spawn(async move {
            let _permit = permit;
            handle(&shared, frontend, client, peer, &ctx).await;
        });
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Socket options of either side: non-blocking, `TCP_NODELAY`, keepalive when configured.
fn tune(fd: &OwnedFd, ka: &Keepalive) -> io::Result<()> {
    set_nonblocking(fd)?;
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
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
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

/// Connects to the slot's server, re-trying `retries` times; with `option redispatch` the last
/// retry goes to another server. Between retries on the same server after an immediate
/// failure, waits HAProxy's turn-around time, min(`timeout connect`, 1 s).
async fn connect_with_retries(
    table: &Arc<BackendTable>,
    be: &Backend,
    client: SocketAddr,
    mut slot: ServerSlot,
) -> Result<(ServerSlot, OwnedFd), String> {
    let mut last_error;
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        match connect(slot.addr(), &be.keepalive, be.timeouts.connect).await {
            Ok(fd) => return Ok((slot, fd)),
            Err(e) => {
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
        slot.counters().retries.fetch_add(1, Ordering::Relaxed);
        if be.redispatch && attempt == be.retries {
            let failed = slot.index();
            drop(slot);
            slot = match table.try_acquire(client, Some(failed)) {
                Ok(s) => {
                    s.counters().redispatches.fetch_add(1, Ordering::Relaxed);
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

/// Serves one client: server choice, connect, forward, counters.
async fn handle(
    shared: &Arc<Shared>,
    frontend: usize,
    client: OwnedFd,
    peer: SocketAddr,
    ctx: &ThreadCtx,
) {
    let fe: &Frontend = &shared.config.frontends[frontend];
    let be: &Backend = &shared.config.backends[fe.backend];
    let table = &shared.backends[fe.backend];
    let _session = shared.fe_stats[frontend].enter();
    if let Err(e) = tune(&client, &fe.keepalive) {
        log::debug!("frontend '{}': client {peer}: {e}", fe.name);
        return;
    }
    let queue_timeout = be.timeouts.queue.or(be.timeouts.connect);
    let slot = match table.acquire(peer, None, queue_timeout).await {
        Ok(s) => s,
        Err(e) => {
            let what = match e {
                AcquireError::NoServer => "no server available".to_string(),
                other => format!("no server available ({other})"),
            };
            log::warn!(
                "frontend '{}' -> backend '{}': {what}, closing client {peer}",
                fe.name,
                be.name
            );
            return;
        }
    };
    let _be_session = shared.be_stats[fe.backend].enter();
    let (slot, server) = match connect_with_retries(table, be, peer, slot).await {
        Ok(x) => x,
        Err(reason) => {
            log::warn!(
                "frontend '{}' -> backend '{}': no server available for client {peer}: {reason}",
                fe.name,
                be.name
            );
            return;
        }
    };
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
}
