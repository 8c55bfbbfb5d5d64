//! The accept path: one thread per core, each with its own `SO_REUSEPORT` listener per `bind`
//! and a tokio-uring (`io_uring`) accept loop; per connection: pick a server from the lock-free
//! table, connect with `timeout connect`/`retries`/`redispatch`, then hand the pair to the data
//! plane. What a thread serves comes from [`ThreadPlan`]s (start and reload); what other
//! threads ask of its flows comes on its [`FlowCommand`] channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use tokio::io::unix::AsyncFd;

use crate::config::{Backend, BindOptions, Config, Frontend, Keepalive, ProxyVersion};
use crate::conn_io;
use crate::dataplane::sockmap::{MapIds, ThreadMaps};
use crate::dataplane::{sockopt, Dataplane, FlowEnd, FlowReport, FlowTimeouts, KillSwitch};
use crate::fd_budget::{self, Use};
use crate::flows::{FlowCommand, FlowInfo, KillReason};
use crate::generation::Generation;
use crate::logging::{
    self,
    tcplog::{Ending, Killer},
};
use crate::proxy_proto;
use crate::session::{self, Rejected, ResponseStep, Session, Step, Why};
use crate::table::{AcquireError, BackendTable, ServerSlot};

/// Listen backlog of each listener (HAProxy's default is maxconn; the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// What one thread serves: for each bound address, its frontend in `gen`'s config, and a
/// listening socket when the address is new to this thread.
pub struct ThreadPlan {
    pub gen: Arc<Generation>,
    pub binds: Vec<BindPlan>,
    /// Addresses no longer in the configuration: their accept loops stop.
    pub removed: Vec<SocketAddr>,
}

impl std::fmt::Debug for ThreadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPlan")
            .field("generation", &self.gen.number)
            .field("binds", &self.binds)
            .field("removed", &self.removed)
            .finish()
    }
}

/// One address of a [`ThreadPlan`].
#[derive(Debug)]
pub struct BindPlan {
    pub addr: SocketAddr,
    /// Index into `gen.config.frontends`.
    pub frontend: usize,
    /// This thread's socket for a newly bound address; `None` = keep the running loop.
    pub listener: Option<TcpListener>,
}

/// A plan for a thread, and the acknowledgement it sends once applied.
type PlanMsg = (Box<ThreadPlan>, oneshot::Sender<()>);

/// A flow in its thread's registry.
struct LocalFlow {
    info: FlowInfo,
    started: Instant,
    kill: Rc<KillSwitch>,
    /// Why it was ended from outside, for its log line.
    killed_by: Rc<Cell<Option<KillReason>>>,
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
    gen: Arc<Generation>,
    frontend: usize,
    removed: bool,
}

impl ThreadCtx {
    /// Acts on one command from another thread.
    fn command(&self, cmd: FlowCommand) {
        let flows = self.flows.borrow();
        match cmd {
            FlowCommand::Kill { servers, reason } => {
                for f in flows.values() {
                    if servers.contains(&f.info.server_uid) {
                        f.killed_by.set(Some(reason));
                        f.kill.kill();
                    }
                }
            }
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
                    gen: plan.gen.clone(),
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
    fn serving(&self, addr: SocketAddr) -> Option<(Arc<Generation>, usize)> {
        let binds = self.binds.borrow();
        let b = binds.get(&addr)?;
        (!b.removed).then(|| (b.gen.clone(), b.frontend))
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
pub fn bind_listener(addr: SocketAddr, opts: &BindOptions) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sockopt::apply_bind_options(&sock, addr, opts, BACKLOG)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// The listening sockets of every bound address, one per thread (an `SO_REUSEPORT` group),
/// and the channels that hand plans to the threads. The main thread keeps these; threads get
/// duplicates, so an address that survives a reload keeps its socket and its backlog, and
/// shutting one down here stops every thread's loop.
#[derive(Debug)]
pub struct Listeners {
    by_addr: HashMap<SocketAddr, Vec<TcpListener>>,
    threads: Vec<UnboundedSender<PlanMsg>>,
}

/// What a thread receives: plans from the main thread, commands about its flows from anyone.
pub struct ThreadInbox {
    plans: UnboundedReceiver<PlanMsg>,
    flows: UnboundedReceiver<FlowCommand>,
}

impl Listeners {
    /// No address bound yet, and one inbox per thread (give inbox `i` to thread `i`), made of
    /// the plan channel and the thread's flow channel (`flows[i]`).
    pub fn new(flows: Vec<UnboundedReceiver<FlowCommand>>) -> (Self, Vec<ThreadInbox>) {
        let mut threads = Vec::new();
        let mut inboxes = Vec::new();
        for flows in flows {
            let (tx, plans) = unbounded_channel();
            threads.push(tx);
            inboxes.push(ThreadInbox { plans, flows });
        }
        (
            Self {
                by_addr: HashMap::new(),
                threads,
            },
            inboxes,
        )
    }

    /// Binds, once per thread each, every address of `config` not bound yet, and returns
    /// them. On error nothing new stays bound, and the message names the frontend, the
    /// address and the line.
    pub fn bind_new(&mut self, config: &Config) -> Result<Vec<SocketAddr>, String> {
        let threads = self.threads.len();
        let mut added: Vec<SocketAddr> = Vec::new();
        for fe in &config.frontends {
            for bind in &fe.binds {
                if self.by_addr.contains_key(&bind.addr) {
                    continue;
                }
                let bound: io::Result<Vec<TcpListener>> = (0..threads)
                    .map(|_| bind_listener(bind.addr, &bind.opts))
                    .collect();
                match bound {
                    Ok(socks) => {
                        self.by_addr.insert(bind.addr, socks);
                        added.push(bind.addr);
                    }
                    Err(e) => {
                        self.unbind(&added);
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

    /// Closes addresses [`Self::bind_new`] bound, before any thread serves them (a reload that
    /// fails after binding undoes its binds this way).
    pub fn unbind(&mut self, addrs: &[SocketAddr]) {
        for a in addrs {
            self.by_addr.remove(a);
        }
    }

    /// The plans that make every thread serve `gen`'s configuration: running loops switch
    /// to it, `new` addresses get a socket, addresses not in the configuration are removed.
    pub fn plans(&self, gen: &Arc<Generation>, new: &[SocketAddr]) -> io::Result<Vec<ThreadPlan>> {
        let wanted: HashMap<SocketAddr, usize> = gen
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
        (0..self.threads.len())
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
                    gen: gen.clone(),
                    binds,
                    removed: removed.clone(),
                })
            })
            .collect()
    }

    /// Sends each thread its plan and waits until all have applied it: from then on every
    /// new connection is served by the plans' generation.
    pub async fn switch(&self, plans: Vec<ThreadPlan>) {
        let mut acks = Vec::new();
        for (t, plan) in self.threads.iter().zip(plans) {
            let (tx, rx) = oneshot::channel();
            if t.send((Box::new(plan), tx)).is_ok() {
                acks.push(rx);
            }
        }
        for rx in acks {
            let _ = rx.await;
        }
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
/// receives ask for (returns only if the runtime cannot start).
pub fn run_thread(
    inbox: ThreadInbox,
    plane: PlaneSetup,
    thread: usize,
    threads: usize,
) -> io::Result<()> {
    let ThreadInbox {
        mut plans,
        mut flows,
    } = inbox;
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
        loop {
            tokio::select! {
                plan = plans.recv() => {
                    let Some((plan, ack)) = plan else { break };
                    ctx.apply(*plan);
                    let _ = ack.send(());
                }
                cmd = flows.recv() => {
                    let Some(cmd) = cmd else { break };
                    ctx.command(cmd);
                }
            }
        }
        Ok(())
    })
}

/// A client connection counted against `global maxconn` and the frontend's `maxconn`;
/// uncounted on drop.
struct ConnPermit {
    gen: Arc<Generation>,
    frontend: usize,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let p = &self.gen.process;
        p.conns.fetch_sub(1, Ordering::AcqRel);
        self.gen.fe_stats[self.frontend]
            .cur
            .fetch_sub(1, Ordering::AcqRel);
        p.conn_released.notify_waiters();
    }
}

/// Waits until both the process and the frontend are below their `maxconn`. Like HAProxy, a
/// listener at its limit stops accepting (clients wait in the kernel's backlog) instead of
/// accepting and closing. The connection is counted only once accepted ([`ConnPermit::count`]),
/// so the counts never include accept loops that are merely waiting; at the limit, the loops
/// already waiting in `accept` may each take one more (at most one per thread and address).
async fn below_maxconn(gen: &Generation, frontend: usize) {
    let fe_max = gen.config.frontends[frontend]
        .maxconn
        .unwrap_or(gen.maxconn);
    let p = &gen.process;
    loop {
        // Create the waiter before checking, so a release between check and wait is not lost.
        let released = p.conn_released.notified();
        if p.conns.load(Ordering::Acquire) < gen.maxconn
            && gen.fe_stats[frontend].cur.load(Ordering::Acquire) < fe_max
        {
            return;
        }
        released.await;
    }
}

impl ConnPermit {
    /// Counts an accepted connection against `global maxconn` and the frontend's, and in the
    /// frontend's session statistics.
    fn count(gen: &Arc<Generation>, frontend: usize) -> Self {
        gen.process.conns.fetch_add(1, Ordering::AcqRel);
        let fe = &gen.fe_stats[frontend];
        let cur = fe.cur.fetch_add(1, Ordering::AcqRel) + 1;
        fe.max.fetch_max(cur, Ordering::Relaxed);
        fe.total.fetch_add(1, Ordering::Relaxed);
        Self {
            gen: gen.clone(),
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
    gen: &Generation,
    table: &Arc<BackendTable>,
    be: &Backend,
    client: SocketAddr,
    dst_port: u16,
    mut slot: ServerSlot,
    tries: &mut ConnectTries,
) -> Result<(ServerSlot, OwnedFd), String> {
    let mut last_error;
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let result = connect(slot.target(dst_port), &be.keepalive, be.timeouts.connect).await;
        let backend = (be.id as usize).saturating_sub(1);
        gen.passive
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
    /// How the connection is logged.
    log: LogAs,
    /// `%ci:%cp`: the client (a PROXY header's address when one came).
    client: SocketAddr,
    /// `%b`: the backend chosen; `None` = the frontend's own name, as HAProxy logs a connection
    /// closed before a backend was chosen.
    backend: Option<usize>,
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

/// How a served connection is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogAs {
    /// The frontend's line (`option tcplog`).
    Session,
    /// HAProxy's line for a connection that never became a session (bad PROXY header).
    Embryonic(&'static str),
    /// No line: closed by `tcp-request connection|session` rules (HAProxy logs nothing).
    Nothing,
}

impl Served {
    fn new(client: SocketAddr) -> Self {
        Self {
            log: LogAs::Session,
            client,
            backend: None,
            server: None,
            tw: None,
            tc: None,
            bytes_in: 0,
            bytes_out: 0,
            ending: Ending::NoServer,
            tries: ConnectTries::default(),
            backend_queue: 0,
            slot: None,
        }
    }
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Serves one client, then logs it the way the frontend asks (`option tcplog`, HAProxy's
/// default `Connect from` line once the session starts, or its line for a bad PROXY header).
async fn handle(
    gen: &Arc<Generation>,
    frontend: usize,
    client: OwnedFd,
    peer: SocketAddr,
    ctx: &ThreadCtx,
    permit: ConnPermit,
) {
    let accepted = Instant::now();
    let accepted_at = logging::time::now_local();
    let fe: &Frontend = &gen.config.frontends[frontend];
    let log = gen.logs.frontend(frontend).filter(|l| l.enabled());
    let connect_line = |src: &SocketAddr, dst: &SocketAddr| {
        if let Some(log) = log.as_ref().filter(|l| !l.tcplog) {
            log.send(
                logging::INFO,
                &logging::tcplog::connect_line(src, dst, &fe.name),
            );
        }
    };
    let Some(served) = serve(gen, frontend, client, peer, ctx, &connect_line).await else {
        return;
    };
    let Some(log) = log else {
        return;
    };
    if let LogAs::Embryonic(msg) = served.log {
        // HAProxy: with `option dontlognull`, a connection closed before sending anything.
        if !(log.dontlognull && msg == session::PRX_EMPTY) {
            let bind = session::bind_of(gen, frontend, served.client)
                .or_else(|| local_bind(gen, frontend))
                .map_or_else(|| "1".to_owned(), |b| bind_label(fe, b));
            let line = logging::tcplog::embryonic_line(&peer, &accepted_at, &fe.name, &bind, msg);
            log.send(logging::INFO, &line);
        }
        return;
    }
    if served.log == LogAs::Nothing || !log.tcplog {
        return;
    }
    if log.dontlognull && served.bytes_in == 0 {
        return;
    }
    let (backend_name, beconn, srvconn) = match served.backend {
        Some(b) => {
            let table = &gen.backends[b];
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
            (gen.config.backends[b].name.as_str(), beconn, srvconn)
        }
        None => (fe.name.as_str(), 0, 0),
    };
    let line = logging::tcplog::Session {
        client: served.client,
        accepted: accepted_at,
        frontend: &fe.name,
        backend: backend_name,
        server: served.server.as_ref().map(|(_, n)| &**n),
        tw: served.tw,
        tc: served.tc,
        tt: ms_since(accepted),
        bytes_out: served.bytes_out,
        ending: served.ending,
        // This connection is still counted (its permit is dropped below), as in HAProxy.
        actconn: gen.process.conns.load(Ordering::Relaxed),
        feconn: gen.fe_stats[frontend].cur.load(Ordering::Relaxed),
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

/// A frontend's only bind, when it has one (to name it in a log line).
fn local_bind(gen: &Generation, frontend: usize) -> Option<usize> {
    (gen.config.frontends[frontend].binds.len() == 1).then_some(0)
}

/// A bind as HAProxy names it in logs: its `name`, else its number in the frontend from 1.
fn bind_label(fe: &Frontend, bind: usize) -> String {
    fe.binds[bind]
        .name
        .clone()
        .unwrap_or_else(|| (bind + 1).to_string())
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
    drain_unserved(&client).await;
}

/// [`close_unserved`] for a client already registered with the reactor.
async fn drain_unserved(client: &AsyncFd<OwnedFd>) {
    if sockopt::shutdown_write(client.get_ref().as_fd()).is_err() {
        return;
    }
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

/// The client's first bytes and what the rules decided on them.
struct Decided {
    client: AsyncFd<OwnedFd>,
    head: Vec<u8>,
    route: session::Route,
}

/// Runs the connection's rules ([`Session`]) on its first bytes, reading them as the rules
/// ask: at most [`Session::read_limit`] bytes, until the rules' deadline, the client's FIN, or
/// `timeout client` of silence. `Err` is the connection's end (already closed) for the log.
async fn decide(
    sess: &mut Session,
    client: AsyncFd<OwnedFd>,
    idle_limit: Option<Duration>,
    served: &mut Served,
    connect_line: &dyn Fn(&SocketAddr, &SocketAddr),
) -> Result<Decided, ()> {
    let mut head = Vec::new();
    let mut eof = false;
    let mut last_read = Instant::now();
    let mut started = false;
    loop {
        let step = sess.feed(&head, eof, Instant::now());
        if !started && sess.stream_started() {
            // HAProxy's stream (and its `Connect from` line) starts after the session rules.
            started = true;
            served.client = sess.src();
            connect_line(&sess.src(), &sess.dst());
        }
        served.bytes_in = (head.len() - sess.consumed().min(head.len())) as u64;
        match step {
            Step::Route(route) => {
                return Ok(Decided {
                    client,
                    head,
                    route,
                })
            }
            Step::Reject(r) => {
                reject(sess, client, r, served).await;
                return Err(());
            }
            Step::Wait { until } => {
                let idle = idle_limit.map(|t| last_read + t);
                let limit = sess.read_limit();
                match conn_io::read_more(&client, &mut head, limit, until, idle).await {
                    conn_io::Read::Data => last_read = Instant::now(),
                    conn_io::Read::Eof => eof = true,
                    conn_io::Read::Deadline | conn_io::Read::Full => {}
                    conn_io::Read::Idle => {
                        if sess.in_handshake() {
                            // `timeout client` bounds the PROXY header too: `feed` says so.
                            continue;
                        }
                        served.ending = Ending::ClientRequestTimeout;
                        served.backend = sess.backend();
                        conn_io::reset(client.into_inner());
                        return Err(());
                    }
                    conn_io::Read::Error(_) => {
                        if sess.in_handshake() {
                            served.log = LogAs::Embryonic(session::PRX_ABORT);
                        } else {
                            served.ending = Ending::ClientRequestAbort;
                            served.backend = sess.backend();
                        }
                        conn_io::reset(client.into_inner());
                        return Err(());
                    }
                }
            }
        }
    }
}

/// Closes a client the rules rejected, the way HAProxy does for that phase.
async fn reject(sess: &Session, client: AsyncFd<OwnedFd>, r: Rejected, served: &mut Served) {
    let fd = client.into_inner();
    let close = |fd: OwnedFd| {
        if r.silent {
            conn_io::silent_drop(fd, sess.peer().is_ipv6());
        } else {
            conn_io::reset(fd);
        }
    };
    match r.why {
        Why::Connection | Why::Session => {
            served.log = LogAs::Nothing;
            close(fd);
        }
        Why::Handshake(msg) => {
            served.log = LogAs::Embryonic(msg);
            conn_io::reset(fd);
        }
        Why::Content => {
            served.ending = Ending::Denied;
            served.backend = sess.backend();
            if r.silent {
                close(fd);
            } else {
                // HAProxy's close after a content reject: what was read is dropped, a FIN.
                drop(fd);
            }
        }
        Why::NoBackend => {
            served.ending = Ending::NoServer;
            log::warn!(
                "frontend '{}': no use_backend rule matched and there is no default_backend, \
                 closing client {}",
                sess.frontend_name(),
                sess.src()
            );
            Box::pin(close_unserved(fd)).await;
        }
    }
}

/// Server choice, connect, forward, counters. `None` when the client socket could not even be
/// set up (nothing to log).
async fn serve(
    gen: &Arc<Generation>,
    frontend: usize,
    client: OwnedFd,
    peer: SocketAddr,
    ctx: &ThreadCtx,
    connect_line: &dyn Fn(&SocketAddr, &SocketAddr),
) -> Option<Served> {
    let fe: &Frontend = &gen.config.frontends[frontend];
    let setup = set_nonblocking(&client)
        .and_then(|()| tune(&client, &fe.keepalive))
        .and_then(|()| local_addr(&client));
    let local = match setup {
        Ok(l) => l,
        Err(e) => {
            log::debug!("frontend '{}': client {peer}: {e}", fe.name);
            return None;
        }
    };
    let mut served = Served::new(peer);
    let mut sess = match Session::accept(gen.clone(), frontend, peer, local, Instant::now()) {
        Ok(s) => s,
        Err(r) => {
            served.log = LogAs::Nothing;
            if r.silent {
                conn_io::silent_drop(client, peer.is_ipv6());
            } else {
                conn_io::reset(client);
            }
            return Some(served);
        }
    };
    let client = match crate::dataplane::async_fd(client) {
        Ok(c) => c,
        Err(e) => {
            log::debug!("frontend '{}': client {peer}: {e}", fe.name);
            return None;
        }
    };
    let Ok(Decided {
        client,
        head,
        route,
    }) = decide(
        &mut sess,
        client,
        fe.timeouts.client,
        &mut served,
        connect_line,
    )
    .await
    else {
        return Some(served);
    };
    let b = route.backend;
    served.backend = Some(b);
    let src = sess.src();
    let be: &Backend = &gen.config.backends[b];
    let table = &gen.backends[b];
    // Connections ahead of us in the backend queue (lb has one queue per backend).
    served.backend_queue = table.queue_len() as u64;
    let queue_timeout = be.timeouts.queue.or(be.timeouts.connect);
    let queued_at = Instant::now();
    let direct = route.server.and_then(|i| table.try_acquire_server(i));
    let acquired = match direct {
        Some(slot) => Ok(slot),
        // `balance source` hashes the client the rules saw.
        None => table.acquire(src, None, queue_timeout).await,
    };
    let slot = match acquired {
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
                "frontend '{}' -> backend '{}': {what}, closing client {src}",
                fe.name,
                be.name
            );
            Box::pin(drain_unserved(&client)).await;
            return Some(served);
        }
    };
    let _be_session = gen.be_stats[b].enter();
    served.tw = Some(ms_since(queued_at));
    let connecting = Instant::now();
    // Servers without a port of their own take the one the client connected to (the PROXY
    // header's, with `accept-proxy`, as in HAProxy).
    let dst_port = if be.maps_ports() {
        sess.dst().port()
    } else {
        0
    };
    let connected =
        connect_with_retries(gen, table, be, src, dst_port, slot, &mut served.tries).await;
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
                "frontend '{}' -> backend '{}': no server available for client {src}: {reason}",
                fe.name,
                be.name
            );
            Box::pin(drain_unserved(&client)).await;
            return Some(served);
        }
    };
    served.tc = Some(ms_since(connecting));
    served.server = Some((slot.index(), Arc::from(slot.name())));
    sess.server_chosen(slot.index());
    let Ok(server) = crate::dataplane::async_fd(server) else {
        served.ending = Ending::Flow(FlowEnd::LocalError, Killer::Admin);
        return Some(served);
    };
    // Every byte read for the decision reaches the server, after its PROXY header.
    let mut first = proxy_header(&sess, slot.conf());
    first.extend_from_slice(&head[route.consumed.min(head.len())..]);
    let write_deadline = be.timeouts.server.map(|t| Instant::now() + t);
    if let Err(e) = conn_io::write_all(&server, &first, write_deadline).await {
        log::debug!(
            "{src} {}/{}: writing the first bytes: {e}",
            be.name,
            slot.name()
        );
        served.ending = Ending::Flow(FlowEnd::ServerReset, Killer::Admin);
        conn_io::reset(client.into_inner());
        served.slot = Some(slot);
        return Some(served);
    }
    // Bytes passed on before the data plane (for the counters), and bytes read from each
    // socket (for the data plane's FIN accounting).
    let (mut pre_in, mut pre_out) = (served.bytes_in, 0u64);
    let mut read = (head.len() as u64, 0u64);
    if sess.has_response_rules() {
        match respond(&mut sess, &client, &server).await {
            Ok((up, down)) => {
                pre_in += up;
                pre_out += down;
                read = (read.0 + up, down);
            }
            Err((ending, up, down)) => {
                served.ending = ending;
                served.bytes_in = pre_in + up;
                served.bytes_out = down;
                served.slot = Some(slot);
                return Some(served);
            }
        }
    }
    let pair = (client.into_inner(), server.into_inner());
    let report = forward(gen, frontend, ctx, &slot, src, pair, read).await;
    let (report_in, report_out) = (report.0.bytes_in + pre_in, report.0.bytes_out + pre_out);
    sess.flow_bytes(report_in, report_out);
    let c = slot.counters();
    c.bytes_in.fetch_add(report_in, Ordering::Relaxed);
    c.bytes_out.fetch_add(report_out, Ordering::Relaxed);
    let f = &gen.fe_stats[frontend];
    f.bytes_in.fetch_add(report_in, Ordering::Relaxed);
    f.bytes_out.fetch_add(report_out, Ordering::Relaxed);
    log::debug!(
        "{src} {}/{}: {:?}, {report_in} bytes in, {report_out} bytes out{}",
        be.name,
        slot.name(),
        report.0.end,
        if report.0.spliced_in_kernel {
            " (sockmap)"
        } else {
            " (splice)"
        }
    );
    served.ending = Ending::Flow(report.0.end, report.1);
    served.bytes_in = report_in;
    served.bytes_out = report_out;
    // Keep the slot until the log line is written (see `handle`).
    served.slot = Some(slot);
    Some(served)
}

/// The PROXY header `server` wants (`send-proxy`, `send-proxy-v2`), with the addresses the
/// rules saw (a client's own PROXY header's, when it sent one); empty without.
fn proxy_header(sess: &Session, server: &crate::config::Server) -> Vec<u8> {
    let pp = &server.proxy;
    let addrs = Some((sess.src(), sess.dst()));
    match pp.version {
        None => Vec::new(),
        Some(ProxyVersion::V1) => proxy_proto::v1(addrs),
        Some(ProxyVersion::V2) => proxy_proto::v2(
            addrs,
            &proxy_proto::V2Extras {
                crc32c: pp.crc32c,
                ssl: pp.ssl,
                authority: pp
                    .authority
                    .then(|| sess.authority().map(<[u8]>::to_vec))
                    .flatten(),
            },
        ),
    }
}

/// Runs the backend's `tcp-response content` rules on the server's first bytes (the client's
/// bytes keep flowing to the server meanwhile), then passes those bytes to the client. `Ok`:
/// the bytes passed each way; `Err`: the connection's end (both sides closed), with them.
async fn respond(
    sess: &mut Session,
    client: &AsyncFd<OwnedFd>,
    server: &AsyncFd<OwnedFd>,
) -> Result<(u64, u64), (Ending, u64, u64)> {
    let mut res = Vec::new();
    let (mut srv_eof, mut cli_eof, mut up) = (false, false, 0u64);
    let limit = sess.read_limit();
    let step = loop {
        match sess.feed_response(&res, srv_eof, Instant::now()) {
            ResponseStep::Wait { until } => {
                match conn_io::pump_until_response(
                    client,
                    server,
                    &mut res,
                    limit,
                    until,
                    &mut cli_eof,
                    &mut up,
                )
                .await
                {
                    conn_io::Pumped::Server { eof } => srv_eof |= eof,
                    conn_io::Pumped::Deadline => {}
                    conn_io::Pumped::Error(_) => srv_eof = true,
                }
            }
            other => break other,
        }
    };
    match step {
        ResponseStep::Reject { silent } => {
            let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
            if silent {
                // Nothing leaves for the client either.
                let _ = sockopt::set_linger_zero(client.get_ref().as_fd());
            }
            Err((Ending::DeniedResponse, up, 0))
        }
        ResponseStep::Close => {
            let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
            let sent = conn_io::write_all(client, &res, None).await.is_ok();
            let _ = sockopt::shutdown_write(client.get_ref().as_fd());
            let down = if sent { res.len() as u64 } else { 0 };
            Err((Ending::Flow(FlowEnd::Closed, Killer::Admin), up, down))
        }
        ResponseStep::Accept | ResponseStep::Wait { .. } => {
            if conn_io::write_all(client, &res, None).await.is_ok() {
                Ok((up, res.len() as u64))
            } else {
                let _ = sockopt::set_linger_zero(server.get_ref().as_fd());
                Err((Ending::Flow(FlowEnd::ClientReset, Killer::Admin), up, 0))
            }
        }
    }
}

/// Registers the flow with its thread (so `show sess`, `shutdown sessions` and the health
/// checks' `on-marked-*` see it) and hands the pair to the data plane until it ends.
async fn forward(
    gen: &Arc<Generation>,
    frontend: usize,
    ctx: &ThreadCtx,
    slot: &ServerSlot,
    client_addr: SocketAddr,
    (client, server): (OwnedFd, OwnedFd),
    pre: (u64, u64),
) -> (FlowReport, Killer) {
    let fe: &Frontend = &gen.config.frontends[frontend];
    let backend = slot.table().conf.clone();
    let b = (backend.id as usize).saturating_sub(1);
    let id = ctx.next_id.get();
    ctx.next_id.set(id + 1);
    let kill = Rc::new(KillSwitch::default());
    let killed_by = Rc::new(Cell::new(None));
    ctx.flows.borrow_mut().insert(
        id,
        LocalFlow {
            info: FlowInfo {
                id,
                thread: ctx.thread,
                frontend,
                backend: b,
                server: slot.index(),
                server_uid: slot.counters().uid,
                backup: slot.is_backup(),
                generation: gen.number,
                frontend_name: Arc::from(fe.name.as_str()),
                backend_name: Arc::from(backend.name.as_str()),
                server_name: Arc::from(slot.name()),
                client: client_addr,
                age: Duration::ZERO,
            },
            started: Instant::now(),
            kill: kill.clone(),
            killed_by: killed_by.clone(),
        },
    );
    let registered = Registered { ctx, id };
    let report: FlowReport = ctx
        .dataplane
        .forward(client, server, FlowTimeouts::new(fe, &backend), &kill, pre)
        .await;
    drop(registered);
    let killer = match killed_by.get() {
        Some(KillReason::ServerDown) => Killer::ServerDown,
        Some(KillReason::BackupOff) => Killer::BackupOff,
        Some(KillReason::Admin) | None => Killer::Admin,
    };
    (report, killer)
}

/// The local address of an accepted socket.
fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}
