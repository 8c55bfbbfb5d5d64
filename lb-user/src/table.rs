//! The server table: per backend, one immutable snapshot (servers, their state, the balancer's
//! precomputed data) behind `arc-swap`, per-server atomic counters shared by every snapshot, and
//! the backend's FIFO queue of connections waiting for a server below its `maxconn`.
//!
//! Readers (accept loops) never lock: they load the snapshot, pick, and reserve a slot with one
//! compare-and-swap on the server's `cur`. Writers (health checks, admin API) serialize on a
//! mutex, build a new snapshot and publish it. Only the queued (slow) path locks the queue.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::balance::{Balancer, Pick, Tried};
use crate::config::{Backend, Balance, Server};

/// Highest weight haproxy accepts (`weight` 0..=256).
pub const MAX_WEIGHT: u32 = 256;

/// How many waiters that exclude a server (redispatched connections) the queue dispatcher looks
/// past when it cannot serve them. Bounds the time spent under the queue lock; waiters further
/// back are reached as the ones ahead of them leave. Such waiters are rare: they come from
/// `option redispatch` after failed connects.
const DISPATCH_SCAN: usize = 64;

/// Administrative state of a server (`set server B/S state ready|drain|maint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new connections (if healthy and weight > 0).
    Ready,
    /// Keeps its connections, takes no new ones.
    Drain,
    /// Maintenance: takes no new connections (`disabled` servers start here).
    Maint,
}

/// Counters that live as long as the server, shared by every snapshot (`Arc`), all atomics.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections currently on the server (`scur`), including reserved slots not connected yet.
    pub cur: AtomicU32,
    /// Highest `cur` seen (`smax`).
    pub max: AtomicU32,
    /// Connections sent there (`lbtot`/`stot`).
    pub total: AtomicU64,
    /// Bytes client -> server (`bin`).
    pub bytes_in: AtomicU64,
    /// Bytes server -> client (`bout`).
    pub bytes_out: AtomicU64,
    /// Failed connection attempts (`econ`).
    pub connect_errors: AtomicU64,
    /// Connect re-tries (`wretr`).
    pub retries: AtomicU64,
    /// Connections redispatched away from this server (`wredis`).
    pub redispatches: AtomicU64,
    /// What the health checker last published (stats and runtime API read it).
    pub check: arc_swap::ArcSwap<CheckInfo>,
    /// Unix time (s) of the last UP/DOWN/MAINT/DRAIN change (`lastchg`); 0 = since start.
    pub last_change: AtomicU64,
    /// Seconds spent DOWN so far, completed periods only (`downtime`).
    pub downtime: AtomicU64,
    /// What the agent check (`agent-check`) last published; `enabled: false` without one.
    pub agent: arc_swap::ArcSwap<CheckInfo>,
    /// `disable agent B/S`: the agent check is configured but paused until `enable agent`.
    pub agent_disabled: AtomicBool,
    /// `set server B/S agent-send STR`: replaces the configured `agent-send`.
    pub agent_send: arc_swap::ArcSwapOption<Vec<u8>>,
}

/// The health checker's published view of one server, in HAProxy's words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckInfo {
    /// Whether the server is checked at all; `false` = status `no check`.
    pub enabled: bool,
    /// Check status with progress: `UP`, `UP 1/3` (going down), `DOWN 1/2` (going up), `DOWN`.
    /// MAINT/DRAIN come from the admin state, which readers combine with this.
    pub status: String,
    /// Last check result: `L4OK`, `L4TOUT`, `L4CON`, `L6OK`, `L6TOUT`, `L6RSP`, `L7OK`,
    /// `L7OKC`, `L7TOUT`, `L7RSP`, `L7STS`, `PROCERR`, `PROCTOUT`, `PROCOK`, `INI`.
    pub result: String,
    /// Protocol code of the last result (MySQL error code, HTTP status, exit code).
    pub code: Option<u32>,
    /// Free text of the last result (server version, error text), as HAProxy's `info`.
    pub info: String,
    /// Duration of the last check, ms.
    pub duration_ms: Option<u64>,
    /// Failed checks since start (`chkfail`).
    pub failed: u64,
    /// UP -> DOWN transitions since start (`chkdown`).
    pub down_transitions: u64,
}

/// What health checks and the admin API change; published as a new snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// Administrative state.
    pub admin: AdminState,
    /// Operational state: UP unless the regular check (or `set server B/S health down`) or
    /// the agent check holds the server DOWN. Derived from `check_down` and `agent_down`.
    pub healthy: bool,
    /// The regular health check (or `set server B/S health down`) says DOWN.
    pub check_down: bool,
    /// The agent check said `down`/`fail`/`stopped` (or `set server B/S agent down`): HAProxy's
    /// `DOWN (agent)`, whatever the regular check says.
    pub agent_down: bool,
    /// Effective weight 0..=256, initially the configured weight.
    pub weight: u32,
    /// `MAINT (resolution)`: the server's hostname does not resolve (NXDOMAIN past `hold nx`,
    /// or `init-addr none` and no answer yet). Separate from the admin MAINT, which an
    /// operator sets and clears; DNS sets and clears this one.
    pub resolution_maint: bool,
    /// HAProxy's NOLB (`set server B/S health stopping`): up, but takes no new connections;
    /// its flows go on. Cleared by `health up|down`.
    pub stopping: bool,
}

/// Which health verdict a writer sets: the server is UP only when neither holds it DOWN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthSource {
    /// The regular check (`check`) and `set server B/S health up|down`.
    Check,
    /// The agent check (`agent-check`) and `set server B/S agent up|down`.
    Agent,
}

/// A server's operational state (UP/DOWN) before and after a health write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpChange {
    /// UP before the write.
    pub before: bool,
    /// UP after it.
    pub after: bool,
}

impl UpChange {
    /// The write took the server DOWN.
    pub fn went_down(self) -> bool {
        self.before && !self.after
    }

    /// The write brought the server UP.
    pub fn went_up(self) -> bool {
        !self.before && self.after
    }
}

/// One server in a snapshot.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    /// Its `server` line.
    pub conf: Arc<Server>,
    /// Its counters (the same `Arc` in every snapshot).
    pub counters: Arc<ServerCounters>,
    /// Its state in this snapshot.
    pub state: ServerState,
}

impl ServerEntry {
    /// Whether it may be given new connections: healthy, `Ready` and weight > 0.
    pub fn usable(&self) -> bool {
        self.state.healthy
            && self.state.admin == AdminState::Ready
            && self.state.weight > 0
            && !self.state.resolution_maint
            && !self.state.stopping
    }

    /// Whether its agent check is configured and not paused by `disable agent`.
    pub fn agent_enabled(&self) -> bool {
        // Relaxed: a flag read on its own.
        self.conf.health.agent.enabled && !self.counters.agent_disabled.load(Ordering::Relaxed)
    }

    /// Whether it is at its `maxconn` (never, with maxconn 0 = unlimited).
    pub fn is_full(&self) -> bool {
        // Relaxed: an early-out estimate; try_reserve decides.
        self.conf.maxconn != 0 && self.counters.cur.load(Ordering::Relaxed) >= self.conf.maxconn
    }

    /// Takes a connection slot (`cur += 1`) unless that would exceed `maxconn`.
    pub(crate) fn try_reserve(&self) -> bool {
        let max = self.conf.maxconn;
        // SeqCst on cur (here and in the release) pairs with SeqCst on the queue length: a
        // releaser decrements cur then reads the queue length, an enqueuer raises the queue
        // length then reads cur here. With a single total order one of them must see the other,
        // so a slot cannot be freed unseen while a waiter goes to sleep (no lost wake-up).
        // The maxconn bound itself only needs the atomicity of the compare-and-swap.
        let mut cur = self.counters.cur.load(Ordering::SeqCst);
        loop {
            if max != 0 && cur >= max {
                return false;
            }
            match self.counters.cur.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    // Relaxed: a statistic, read independently.
                    self.counters.max.fetch_max(cur + 1, Ordering::Relaxed);
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Immutable view of one backend: servers and the balancer's precomputed data.
#[derive(Debug)]
pub struct BackendSnapshot {
    /// Every server of the backend, in config order (index = position in `Backend::servers`).
    pub servers: Vec<ServerEntry>,
    balancer: Balancer,
    queue_limit: Option<usize>,
}

impl BackendSnapshot {
    fn build(conf: &Backend, servers: Vec<ServerEntry>, prev: Option<&BackendSnapshot>) -> Self {
        let balancer = Balancer::build(conf, &servers, prev.map(|p| &p.balancer));
        let active = balancer.active();
        // The queue holds at most the sum of the serving servers' maxqueue, and is unbounded as
        // soon as one of them has none (HAProxy queues per server; lb has one backend queue).
        let queue_limit =
            if !active.is_empty() && active.iter().all(|&i| servers[i].conf.maxqueue > 0) {
                Some(
                    active
                        .iter()
                        .map(|&i| servers[i].conf.maxqueue as usize)
                        .sum(),
                )
            } else {
                None
            };
        Self {
            servers,
            balancer,
            queue_limit,
        }
    }

    /// Usable (non-backup, backup) servers, as in "1 active and 0 backup servers left".
    pub fn usable_counts(&self) -> (usize, usize) {
        let usable = self.servers.iter().filter(|s| s.usable());
        let backup = usable.clone().filter(|s| s.conf.backup).count();
        (usable.count() - backup, backup)
    }

    /// Indices of the servers new connections are balanced over: usable normal servers, else
    /// the first usable backup (all usable backups with `option allbackups`).
    pub fn serving(&self) -> &[usize] {
        self.balancer.active()
    }

    /// Queue length limit (`qlimit`): the sum of the serving servers' `maxqueue`, `None` when
    /// one of them is unlimited.
    pub fn queue_limit(&self) -> Option<usize> {
        self.queue_limit
    }
}

/// Errors of the table's writers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A server index past the end of the backend's servers.
    #[error("backend {backend} has no server number {index} (it has {count})")]
    NoSuchServer {
        backend: String,
        index: usize,
        count: usize,
    },
    /// A weight above 256.
    #[error("backend {backend}, server {server}: weight {weight} is out of range (0 to 256)")]
    WeightOutOfRange {
        backend: String,
        server: String,
        weight: u32,
    },
    /// `balance static-rr` only takes 0 or the configured weight at runtime (0 or 100 %).
    #[error(
        "backend {backend} uses static-rr: server {server} weight can only be set to 0 or to \
         its configured weight {configured}, not {weight}"
    )]
    StaticWeight {
        backend: String,
        server: String,
        weight: u32,
        configured: u32,
    },
}

/// Why [`BackendTable::try_acquire`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryAcquireError {
    /// Every candidate server is at its maxconn, or connections are already queued.
    #[error("all servers are at their maximum number of connections")]
    Full,
    /// No usable server (other than the excluded one).
    #[error("no server is available")]
    NoServer,
}

/// Why [`BackendTable::acquire`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// No usable server (other than the excluded one).
    #[error("no server is available")]
    NoServer,
    /// The queue already holds as many connections as the servers' maxqueue allow.
    #[error("the backend queue is full")]
    QueueFull,
    /// `timeout queue` expired before a server slot freed up.
    #[error("timed out waiting in the backend queue for a free server")]
    QueueTimeout,
}

/// A connection waiting in the queue.
struct Waiter {
    id: u64,
    client: SocketAddr,
    exclude: Option<usize>,
    /// Where the dispatcher hands the reserved slot.
    tx: oneshot::Sender<ServerSlot>,
}

#[derive(Default)]
struct WaitQueue {
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

/// One backend, shared by all accept threads (`Arc`). Readers never lock.
pub struct BackendTable {
    /// The backend's configuration.
    pub conf: Arc<Backend>,
    snap: ArcSwap<BackendSnapshot>,
    /// Serializes writers so that concurrent updates don't lose each other.
    writer: Mutex<()>,
    queue: Mutex<WaitQueue>,
    /// `queue.waiters.len()`, readable without the lock (fast-path check, `qcur`).
    queued: AtomicUsize,
    /// Highest queue length seen (`qmax`).
    queue_max: AtomicUsize,
    /// This table's own `Arc`, for slots handed out by writers' dispatches (they have `&self`).
    me: Weak<BackendTable>,
}

impl fmt::Debug for BackendTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTable")
            .field("backend", &self.conf.name)
            .field("snapshot", &self.snap.load())
            .field("queued", &self.queue_len())
            .finish_non_exhaustive()
    }
}

impl BackendTable {
    /// The table of `conf`'s servers: all healthy, `disabled` ones in `Maint`, the others
    /// `Ready`, at their configured weight.
    pub fn new(conf: &Backend) -> Arc<Self> {
        let servers = conf
            .servers
            .iter()
            .map(|s| ServerEntry {
                conf: Arc::new(s.clone()),
                counters: Arc::default(),
                state: ServerState {
                    admin: if s.disabled {
                        AdminState::Maint
                    } else {
                        AdminState::Ready
                    },
                    healthy: true,
                    check_down: false,
                    agent_down: false,
                    weight: s.weight,
                    resolution_maint: s.unresolved,
                    stopping: false,
                },
            })
            .collect();
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            snap: ArcSwap::from_pointee(BackendSnapshot::build(conf, servers, None)),
            conf: Arc::new(conf.clone()),
            writer: Mutex::new(()),
            queue: Mutex::new(WaitQueue::default()),
            queued: AtomicUsize::new(0),
            queue_max: AtomicUsize::new(0),
        })
    }

    /// The current snapshot. Holding it keeps that consistent view alive.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<BackendSnapshot>> {
        self.snap.load()
    }

    /// Sets a server's administrative state.
    pub fn set_admin(&self, server: usize, state: AdminState) -> Result<(), TableError> {
        let mut changed = false;
        self.update(server, |_, s| {
            changed = s.admin != state;
            s.admin = state;
            Ok(())
        })?;
        if changed {
            self.mark_changed(server);
        }
        Ok(())
    }

    /// Sets a server's regular health-check verdict (see [`Self::set_health`]).
    pub fn set_healthy(&self, server: usize, healthy: bool) -> Result<(), TableError> {
        self.set_health(server, HealthSource::Check, healthy)
            .map(|_| ())
    }

    /// Sets one health verdict (regular check or agent) and says whether the server's
    /// operational state changed: it is UP only when neither verdict holds it DOWN. Decided
    /// under the writer lock, so concurrent writers see each transition exactly once.
    pub fn set_health(
        &self,
        server: usize,
        source: HealthSource,
        up: bool,
    ) -> Result<UpChange, TableError> {
        let mut change = UpChange {
            before: true,
            after: true,
        };
        self.update(server, |_, s| {
            change.before = s.healthy;
            match source {
                HealthSource::Check => s.check_down = !up,
                HealthSource::Agent => s.agent_down = !up,
            }
            s.healthy = !s.check_down && !s.agent_down;
            change.after = s.healthy;
            Ok(())
        })?;
        if change.before != change.after {
            self.mark_changed(server);
        }
        Ok(change)
    }

    /// Sets a server's `maxconn` at run time (the agent's `maxconn:N`); 0 = unlimited. Queued
    /// connections move onto slots it frees.
    pub fn set_maxconn(&self, server: usize, maxconn: u32) -> Result<(), TableError> {
        self.update_entry(server, |entry| {
            if entry.conf.maxconn != maxconn {
                let mut conf = Server::clone(&entry.conf);
                conf.maxconn = maxconn;
                entry.conf = Arc::new(conf);
            }
            Ok(())
        })
    }

    /// Records the time of a state change (`lastchg`).
    fn mark_changed(&self, server: usize) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(entry) = self.snapshot().servers.get(server) {
            entry.counters.last_change.store(now, Ordering::Relaxed);
        }
    }

    /// Sets a server's effective weight (0..=256). With `balance static-rr` only 0 and the
    /// configured weight are accepted, as in haproxy.
    pub fn set_weight(&self, server: usize, weight: u32) -> Result<(), TableError> {
        let backend = &self.conf;
        self.update(server, |conf, s| {
            if weight > MAX_WEIGHT {
                return Err(TableError::WeightOutOfRange {
                    backend: backend.name.clone(),
                    server: conf.name.clone(),
                    weight,
                });
            }
            if backend.balance == Balance::StaticRr && weight != 0 && weight != conf.weight {
                return Err(TableError::StaticWeight {
                    backend: backend.name.clone(),
                    server: conf.name.clone(),
                    weight,
                    configured: conf.weight,
                });
            }
            s.weight = weight;
            Ok(())
        })
    }

    /// Changes a server's address for new connections (DNS, `set server B/S addr IP [port
    /// P]`) and returns the old one. Flows already established stay where they are; the
    /// server keeps its counters (the same `Arc`), state and position.
    pub fn set_addr(&self, server: usize, addr: SocketAddr) -> Result<SocketAddr, TableError> {
        let mut previous = addr;
        self.update_entry(server, |entry| {
            previous = entry.conf.addr;
            if entry.conf.addr != addr {
                let mut conf = Server::clone(&entry.conf);
                conf.addr = addr;
                entry.conf = Arc::new(conf);
            }
            Ok(())
        })?;
        Ok(previous)
    }

    /// Puts a server into HAProxy's NOLB state (`health stopping`: up, no new connections) or
    /// takes it out. Returns whether that changed anything.
    pub fn set_stopping(&self, server: usize, stopping: bool) -> Result<bool, TableError> {
        let mut changed = false;
        self.update(server, |_, s| {
            changed = s.stopping != stopping;
            s.stopping = stopping;
            Ok(())
        })?;
        if changed {
            self.mark_changed(server);
        }
        Ok(changed)
    }

    /// Puts a server into `MAINT (resolution)` or takes it out. Returns whether that changed
    /// anything.
    pub fn set_resolution_maint(&self, server: usize, maint: bool) -> Result<bool, TableError> {
        let mut changed = false;
        self.update(server, |_, s| {
            changed = s.resolution_maint != maint;
            s.resolution_maint = maint;
            Ok(())
        })?;
        if changed {
            self.mark_changed(server);
        }
        Ok(changed)
    }

    /// Index of the server named `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.conf.servers.iter().position(|s| s.name == name)
    }

    /// Applies `change` to one server's state, publishes the resulting snapshot and lets queued
    /// connections onto any server that became available.
    fn update(
        &self,
        server: usize,
        change: impl FnOnce(&Server, &mut ServerState) -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        self.update_entry(server, |entry| change(&entry.conf, &mut entry.state))
    }

    /// Like [`Self::update`], with the whole entry (its `conf` may be replaced).
    fn update_entry(
        &self,
        server: usize,
        change: impl FnOnce(&mut ServerEntry) -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        {
            let _writer = self.writer.lock();
            let old = self.snap.load_full();
            let count = old.servers.len();
            if server >= count {
                return Err(TableError::NoSuchServer {
                    backend: self.conf.name.clone(),
                    index: server,
                    count,
                });
            }
            let mut servers = old.servers.clone();
            change(&mut servers[server])?;
            let new = BackendSnapshot::build(&self.conf, servers, Some(&old));
            self.snap.store(Arc::new(new));
        }
        self.kick();
        Ok(())
    }

    /// Picks a server for `client` (never `exclude`) and reserves a connection slot on it.
    /// Lock-free. Returns `Full` when every candidate is at its maxconn, and also when
    /// connections are already queued: they go first, so the caller must queue too.
    pub fn try_acquire(
        self: &Arc<Self>,
        client: SocketAddr,
        exclude: Option<usize>,
    ) -> Result<ServerSlot, TryAcquireError> {
        let snap = self.snap.load();
        // SeqCst: see try_reserve. A new arrival must not overtake queued connections.
        if self.queued.load(Ordering::SeqCst) > 0 {
            return Err(if snap.balancer.has_candidate(exclude) {
                TryAcquireError::Full
            } else {
                TryAcquireError::NoServer
            });
        }
        match snap.balancer.pick(&snap.servers, client, exclude) {
            Pick::Got(i) => Ok(ServerSlot::new(self, &snap.servers[i], i).delivered()),
            Pick::Full => Err(TryAcquireError::Full),
            Pick::NoServer => Err(TryAcquireError::NoServer),
        }
    }

    /// Like [`Self::try_acquire`], but when every candidate is at its maxconn (or others are
    /// already waiting) waits in the backend's FIFO queue until a slot frees, at most
    /// `queue_timeout` (`None` = no limit). Refuses with `QueueFull` when the queue already
    /// holds [`BackendSnapshot::queue_limit`] connections. Dropping the future leaves the queue
    /// and releases any slot it was handed.
    pub async fn acquire(
        self: &Arc<Self>,
        client: SocketAddr,
        exclude: Option<usize>,
        queue_timeout: Option<Duration>,
    ) -> Result<ServerSlot, AcquireError> {
        match self.try_acquire(client, exclude) {
            Ok(slot) => return Ok(slot),
            Err(TryAcquireError::NoServer) => return Err(AcquireError::NoServer),
            Err(TryAcquireError::Full) => {}
        }
        let mut waiter = self.enqueue(client, exclude)?;
        let received = match queue_timeout {
            None => Some((&mut waiter.rx).await),
            Some(limit) => tokio::time::timeout(limit, &mut waiter.rx).await.ok(),
        };
        match received {
            Some(Ok(slot)) => {
                // The dispatcher removed us from the queue when it sent the slot.
                waiter.queued = false;
                Ok(slot.delivered())
            }
            // The dispatcher only drops a sender after sending on it; kept as a safe answer.
            Some(Err(_)) => {
                waiter.queued = false;
                Err(AcquireError::NoServer)
            }
            None => match waiter.cancel() {
                // Handed a slot just as the timeout fired: use it rather than waste it.
                Some(slot) => Ok(slot.delivered()),
                None => Err(AcquireError::QueueTimeout),
            },
        }
    }

    /// Number of connections waiting in the queue (`qcur`).
    pub fn queue_len(&self) -> usize {
        // Relaxed: a statistic.
        self.queued.load(Ordering::Relaxed)
    }

    /// Highest queue length seen (`qmax`).
    pub fn queue_max(&self) -> usize {
        self.queue_max.load(Ordering::Relaxed)
    }

    fn enqueue(
        self: &Arc<Self>,
        client: SocketAddr,
        exclude: Option<usize>,
    ) -> Result<QueuedWaiter, AcquireError> {
        let mut q = self.queue.lock();
        let snap = self.snap.load();
        if !snap.balancer.has_candidate(exclude) {
            return Err(AcquireError::NoServer);
        }
        if snap
            .queue_limit
            .is_some_and(|limit| q.waiters.len() >= limit)
        {
            return Err(AcquireError::QueueFull);
        }
        drop(snap);
        let (tx, rx) = oneshot::channel();
        let id = q.next_id;
        q.next_id += 1;
        q.waiters.push_back(Waiter {
            id,
            client,
            exclude,
            tx,
        });
        let len = q.waiters.len();
        // SeqCst: see try_reserve; the store must precede our own re-check of cur below.
        self.queued.store(len, Ordering::SeqCst);
        self.queue_max.fetch_max(len, Ordering::Relaxed);
        // A slot may have freed between our failed pick and now (its releaser saw an empty
        // queue): serve the queue, in order, before going to sleep.
        self.dispatch(&mut q);
        Ok(QueuedWaiter {
            table: Arc::clone(self),
            id,
            rx,
            queued: true,
        })
    }

    /// Lets queued connections onto free slots, if any wait.
    fn kick(&self) {
        // SeqCst: see try_reserve (this runs right after a release decremented cur).
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut q = self.queue.lock();
            self.dispatch(&mut q);
        }
    }

    /// Hands free slots to waiters in arrival order.
    ///
    /// A waiter that could take any server and got none ends the pass: nobody behind it can get
    /// one either. Waiters that cannot take every server are looked past, so they don't block
    /// the others: with `balance source` each waits for the server its address hashes to (as in
    /// haproxy, where it would sit in that server's queue), and the pass skips, without trying,
    /// every waiter whose server was already found full; it ends once all are. Waiters that
    /// exclude a server (redispatch) are looked past up to [`DISPATCH_SCAN`] of them.
    fn dispatch(&self, q: &mut WaitQueue) {
        // Every caller holds a strong reference (a slot, a waiter, or whoever calls a writer).
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let snap = self.snap.load();
        let balancer = &snap.balancer;
        // Hash targets found full in this pass, and how many of them are serving servers.
        let mut full = Tried::new(snap.servers.len());
        let mut full_active = 0;
        let mut skipped = 0;
        let mut k = 0;
        while k < q.waiters.len() {
            let w = &q.waiters[k];
            if w.tx.is_closed() {
                q.waiters.remove(k);
                continue;
            }
            let target = balancer.hash_target(w.client, w.exclude);
            if target.is_some_and(|t| full.contains(t)) {
                k += 1;
                continue;
            }
            match balancer.pick(&snap.servers, w.client, w.exclude) {
                Pick::Got(i) => {
                    let w = q.waiters.remove(k).expect("index checked");
                    let slot = ServerSlot::new(&me, &snap.servers[i], i);
                    if let Err(slot) = w.tx.send(slot) {
                        // The waiter left meanwhile: free the slot for the next one. Not a
                        // plain drop, which would re-enter dispatch and the queue lock.
                        slot.release_quietly();
                    }
                }
                Pick::Full | Pick::NoServer => {
                    if let Some(t) = target {
                        let active = balancer.active();
                        if !full.contains(t) && active.binary_search(&t).is_ok() {
                            full_active += 1;
                        }
                        full.insert(t);
                        if full_active == active.len() {
                            break;
                        }
                    } else if w.exclude.is_none() {
                        break;
                    } else {
                        skipped += 1;
                        if skipped >= DISPATCH_SCAN {
                            break;
                        }
                    }
                    k += 1;
                }
            }
        }
        self.queued.store(q.waiters.len(), Ordering::SeqCst);
    }
}

/// The queued side of [`BackendTable::acquire`]; leaving the queue on drop.
struct QueuedWaiter {
    table: Arc<BackendTable>,
    id: u64,
    rx: oneshot::Receiver<ServerSlot>,
    /// Still (possibly) in the queue: remove on drop.
    queued: bool,
}

impl QueuedWaiter {
    /// Leaves the queue; returns the slot if one was handed over in the meantime.
    fn cancel(&mut self) -> Option<ServerSlot> {
        self.leave();
        self.rx.try_recv().ok()
    }

    fn leave(&mut self) {
        if !self.queued {
            return;
        }
        self.queued = false;
        let table = &self.table;
        let mut q = table.queue.lock();
        if let Some(k) = q.waiters.iter().position(|w| w.id == self.id) {
            q.waiters.remove(k);
            table.queued.store(q.waiters.len(), Ordering::SeqCst);
        }
    }
}

impl Drop for QueuedWaiter {
    fn drop(&mut self) {
        // Leave the queue first (under its lock); `rx` is dropped after this body returns, so a
        // slot already sent to it is released outside the lock (its drop dispatches again).
        self.leave();
    }
}

/// A reserved connection slot on one server. Dropping it releases the slot (`cur -= 1`) and
/// lets the head of the queue have it.
pub struct ServerSlot {
    table: Arc<BackendTable>,
    index: usize,
    conf: Arc<Server>,
    counters: Arc<ServerCounters>,
    /// Already released (by `release_quietly`): nothing to do on drop.
    released: bool,
}

impl fmt::Debug for ServerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSlot")
            .field("backend", &self.table.conf.name)
            .field("server", &self.conf.name)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ServerSlot {
    /// Wraps a slot already reserved on `entry` (index `index`).
    fn new(table: &Arc<BackendTable>, entry: &ServerEntry, index: usize) -> Self {
        Self {
            table: Arc::clone(table),
            index,
            conf: Arc::clone(&entry.conf),
            counters: Arc::clone(&entry.counters),
            released: false,
        }
    }

    /// Counts the connection (`lbtot`) when the slot reaches its user, so a slot handed to a
    /// waiter that had already left is not counted.
    fn delivered(self) -> Self {
        // Relaxed: a statistic.
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// Releases the slot without dispatching the queue (the caller is the dispatcher).
    fn release_quietly(mut self) {
        self.released = true;
        self.counters.cur.fetch_sub(1, Ordering::SeqCst);
    }

    /// The server's index in the backend (and in every snapshot's `servers`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.conf.addr
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.conf.name
    }

    /// The server's counters.
    pub fn counters(&self) -> &Arc<ServerCounters> {
        &self.counters
    }

    /// Whether the server is a `backup`.
    pub fn is_backup(&self) -> bool {
        self.conf.backup
    }

    /// The backend this slot belongs to.
    pub fn table(&self) -> &Arc<BackendTable> {
        &self.table
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // SeqCst: decrement cur, then read the queue length (in kick); see try_reserve.
        self.counters.cur.fetch_sub(1, Ordering::SeqCst);
        self.table.kick();
    }
}

/// Configuration builders for the table and balancer tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::config::{Backend, Balance, HashType, Keepalive, Loc, Server, Timeouts};

    fn loc(line: u32) -> Loc {
        Loc {
            file: Arc::new(PathBuf::from("test.cfg")),
            line,
        }
    }

    /// A server `name` with config `id` and `weight`, no limits, address 192.0.2.id:80.
    pub(crate) fn server(name: &str, id: u32, weight: u32) -> Server {
        Server {
            name: name.to_owned(),
            loc: loc(10 + id),
            id,
            addr: SocketAddr::from((Ipv4Addr::new(192, 0, 2, id as u8), 80)),
            fqdn: None,
            weight,
            backup: false,
            maxconn: 0,
            maxqueue: 0,
            disabled: false,
            check_port: None,
            health: crate::config::HealthParams::default(),
            resolvers: None,
            resolve_prefer_ipv4: false,
            unresolved: false,
            init_addr: vec![crate::config::InitAddr::Last, crate::config::InitAddr::Libc],
            init_addr_used: None,
            resolve_net: Vec::new(),
        }
    }

    /// A backend `bk` with these servers.
    pub(crate) fn backend(balance: Balance, servers: Vec<Server>) -> Backend {
        Backend {
            name: "bk".to_owned(),
            loc: loc(1),
            id: 1,
            balance,
            hash_type: HashType::MapBased,
            servers,
            timeouts: Timeouts::default(),
            retries: 3,
            redispatch: false,
            allbackups: false,
            keepalive: Keepalive::default(),
            check: crate::config::CheckKind::default(),
            log_health_checks: false,
            external_check: crate::config::ExternalCheck::default(),
            server_state: crate::config::ServerStateFrom::None,
        }
    }

    /// The `n`th distinct client address (distinct IPs, port varying with `n` too).
    pub(crate) fn client(n: u32) -> SocketAddr {
        let ip = Ipv4Addr::from(0x0a00_0000 + n);
        SocketAddr::from((ip, 1024 + (n % 60000) as u16))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::task::yield_now;

    use super::testing::{backend, client, server};
    use super::*;

    fn limited(maxconn: u32, maxqueue: u32, n: u32) -> Arc<BackendTable> {
        let servers = (1..=n)
            .map(|id| {
                let mut s = server(&format!("s{id}"), id, 1);
                s.maxconn = maxconn;
                s.maxqueue = maxqueue;
                s
            })
            .collect();
        BackendTable::new(&backend(Balance::RoundRobin, servers))
    }

    fn cur(t: &BackendTable, i: usize) -> u32 {
        t.snapshot().servers[i].counters.cur.load(Ordering::SeqCst)
    }

    async fn until(mut cond: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            yield_now().await;
        }
        panic!("condition never became true");
    }

    #[test]
    fn set_addr_keeps_counters_and_redirects_new_slots() {
        let t = limited(0, 0, 2);
        let slot = t.try_acquire(client(1), None).expect("a slot");
        let i = slot.index();
        let before = Arc::clone(&t.snapshot().servers[i].counters);
        let new: SocketAddr = "127.0.0.9:4242".parse().unwrap();
        let old = t.set_addr(i, new).expect("set_addr");
        assert_ne!(old, new);
        // The slot taken before keeps its address; the counters are the same object.
        assert_eq!(slot.addr(), old);
        assert!(Arc::ptr_eq(&before, &t.snapshot().servers[i].counters));
        assert_eq!(cur(&t, i), 1);
        drop(slot);
        assert_eq!(t.snapshot().servers[i].conf.addr, new);
        assert!(t.set_addr(9, new).is_err());
    }

    #[tokio::test]
    async fn queue_serves_waiters_in_arrival_order() {
        let t = limited(2, 0, 1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        for k in 0..10u32 {
            let (t2, tx) = (Arc::clone(&t), tx.clone());
            tokio::spawn(async move {
                let slot = t2.acquire(client(k), None, None).await.unwrap();
                tx.send((k, slot)).unwrap();
            });
            // Let it arrive (take a slot or queue) before the next one: arrival order = k.
            let queued = (k + 1).saturating_sub(2) as usize;
            until(|| t.queue_len() == queued && cur(&t, 0) == (k + 1).min(2)).await;
        }
        let mut held = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        assert_eq!([held[0].0, held[1].0], [0, 1]);
        assert_eq!(t.queue_len(), 8);
        assert_eq!(t.queue_max(), 8);
        for expect in 2..10 {
            // Free the oldest slot: the head of the queue gets it, nobody else.
            held.remove(0);
            let (k, slot) = rx.recv().await.unwrap();
            assert_eq!(k, expect);
            held.push((k, slot));
            assert_eq!(cur(&t, 0), 2);
            assert_eq!(t.queue_len(), 9 - expect as usize);
        }
        drop(held);
        let snap = t.snapshot();
        let counters = &snap.servers[0].counters;
        assert_eq!(counters.cur.load(Ordering::SeqCst), 0);
        assert_eq!(
            counters.max.load(Ordering::SeqCst),
            2,
            "never more than maxconn"
        );
        assert_eq!(counters.total.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_leaks_nothing() {
        let t = limited(1, 0, 1);
        let held = t.try_acquire(client(0), None).unwrap();
        let start = tokio::time::Instant::now();
        let err = t
            .acquire(client(1), None, Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert_eq!(err, AcquireError::QueueTimeout);
        assert_eq!(
            err.to_string(),
            "timed out waiting in the backend queue for a free server"
        );
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(t.queue_len(), 0);
        drop(held);
        assert_eq!(cur(&t, 0), 0);
        // The queue is empty again: the fast path works.
        assert_eq!(t.try_acquire(client(2), None).unwrap().index(), 0);
    }

    #[tokio::test]
    async fn queue_full_at_sum_of_maxqueue() {
        let t = limited(1, 1, 2);
        let held: Vec<ServerSlot> = (0..2)
            .map(|k| t.try_acquire(client(k), None).unwrap())
            .collect();
        assert_eq!(t.snapshot().queue_limit(), Some(2));
        let waiters: Vec<_> = (0..2)
            .map(|k| {
                let t = Arc::clone(&t);
                tokio::spawn(async move { t.acquire(client(10 + k), None, None).await })
            })
            .collect();
        until(|| t.queue_len() == 2).await;
        assert_eq!(
            t.acquire(client(20), None, None).await.unwrap_err(),
            AcquireError::QueueFull
        );
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap().is_ok());
        }
        // One server without maxqueue: unlimited.
        let mut conf = backend(
            Balance::RoundRobin,
            vec![server("a", 1, 1), server("b", 2, 1)],
        );
        conf.servers[0].maxqueue = 5;
        assert_eq!(BackendTable::new(&conf).snapshot().queue_limit(), None);
    }

    #[tokio::test]
    async fn dropped_waiters_leak_nothing() {
        let t = limited(1, 0, 1);
        let held = t.try_acquire(client(0), None).unwrap();

        // Dropped while waiting.
        let t2 = Arc::clone(&t);
        let h = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
        until(|| t.queue_len() == 1).await;
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(t.queue_len(), 0);

        // Dropped after being handed the slot but before running again.
        let t2 = Arc::clone(&t);
        let h = tokio::spawn(async move { t2.acquire(client(2), None, None).await });
        until(|| t.queue_len() == 1).await;
        drop(held);
        assert_eq!(t.queue_len(), 0);
        assert_eq!(cur(&t, 0), 1, "handed over, not released");
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(cur(&t, 0), 0);
        // Only the first connection was delivered.
        assert_eq!(
            t.snapshot().servers[0]
                .counters
                .total
                .load(Ordering::SeqCst),
            1
        );
    }

    #[tokio::test]
    async fn new_arrivals_do_not_overtake_and_picky_waiters_do_not_block() {
        let t = limited(1, 0, 2);
        let ha = t.try_acquire(client(0), None).unwrap();
        let hb = t.try_acquire(client(1), None).unwrap();
        assert_eq!([ha.index(), hb.index()], [0, 1]);
        // A redispatched connection that must avoid server 1.
        let t2 = Arc::clone(&t);
        let picky = tokio::spawn(async move { t2.acquire(client(2), Some(1), None).await });
        until(|| t.queue_len() == 1).await;
        drop(hb);
        // Server 1 is free but the waiter can't use it; it stays queued...
        assert_eq!(t.queue_len(), 1);
        assert_eq!(cur(&t, 1), 0);
        // ...and a new arrival on the fast path must not jump the queue...
        assert_eq!(
            t.try_acquire(client(3), None).unwrap_err(),
            TryAcquireError::Full
        );
        // ...but one that queues behind it is served at once by the free server.
        let other = t.acquire(client(4), None, None).await.unwrap();
        assert_eq!(other.index(), 1);
        drop(ha);
        assert_eq!(picky.await.unwrap().unwrap().index(), 0);
        drop(other);
        assert_eq!((cur(&t, 0), cur(&t, 1), t.queue_len()), (0, 0, 0));
    }

    #[tokio::test]
    async fn source_waiters_wait_for_their_server_without_blocking_others() {
        let servers = (1..=2)
            .map(|id| {
                let mut s = server(&format!("s{id}"), id, 1);
                s.maxconn = 1;
                s
            })
            .collect();
        let t = BackendTable::new(&backend(Balance::Source, servers));
        // Clients hashing to server 0 and to server 1.
        let on = |i: usize| {
            (0..10_000)
                .map(client)
                .find(|&c| t.snapshot().balancer.hash_target(c, None) == Some(i))
                .unwrap()
        };
        let (c0, c1) = (on(0), on(1));
        let h0 = t.try_acquire(c0, None).unwrap();
        assert_eq!(h0.index(), 0);
        // Many clients of server 0 queue for it...
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let t = Arc::clone(&t);
                tokio::spawn(async move { t.acquire(c0, None, None).await.map(|s| s.index()) })
            })
            .collect();
        until(|| t.queue_len() == 100).await;
        // ...a client of the idle server 1 is not stuck behind them...
        let s1 = t.acquire(c1, None, None).await.unwrap();
        assert_eq!(s1.index(), 1);
        assert_eq!(t.queue_len(), 100);
        // ...and server 1 freeing up doesn't serve server 0's clients elsewhere.
        drop(s1);
        assert_eq!((t.queue_len(), cur(&t, 1)), (100, 0));
        drop(h0);
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap(), 0);
        }
        assert_eq!((t.queue_len(), cur(&t, 0)), (0, 0));
    }

    #[tokio::test]
    async fn acquire_without_servers_fails_at_once() {
        let t = limited(1, 0, 1);
        t.set_healthy(0, false).unwrap();
        assert_eq!(
            t.acquire(client(0), None, None).await.unwrap_err(),
            AcquireError::NoServer
        );
        assert_eq!(AcquireError::NoServer.to_string(), "no server is available");
    }

    #[tokio::test]
    async fn a_server_coming_back_serves_the_queue() {
        let t = limited(1, 0, 2);
        t.set_admin(1, AdminState::Maint).unwrap();
        let held = t.try_acquire(client(0), None).unwrap();
        let t2 = Arc::clone(&t);
        let w = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
        until(|| t.queue_len() == 1).await;
        t.set_admin(1, AdminState::Ready).unwrap();
        assert_eq!(w.await.unwrap().unwrap().name(), "s2");
        drop(held);
    }

    /// Each thread runs its own current-thread runtime, as the accept threads do.
    #[test]
    fn queue_hands_slots_across_threads() {
        let t = limited(2, 0, 1);
        std::thread::scope(|s| {
            for th in 0..4u32 {
                let t = &t;
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for k in 0..50 {
                            let slot = t
                                .acquire(client(th * 100 + k), None, Some(Duration::from_secs(30)))
                                .await
                                .unwrap();
                            assert!(slot.counters().cur.load(Ordering::SeqCst) <= 2);
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    });
                });
            }
        });
        let snap = t.snapshot();
        let c = &snap.servers[0].counters;
        assert_eq!(c.total.load(Ordering::SeqCst), 200);
        assert_eq!(c.max.load(Ordering::SeqCst), 2);
        assert_eq!(c.cur.load(Ordering::SeqCst), 0);
        assert_eq!(t.queue_len(), 0);
    }

    /// Accept threads share tables and may move slots and queued futures between tasks.
    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let t = limited(1, 0, 1);
        send_sync(&t);
        let slot = t.try_acquire(client(0), None).unwrap();
        send_sync(&slot);
        let fut = t.acquire(client(1), None, None);
        send(&fut);
    }

    #[test]
    fn writers_publish_snapshots_and_keep_counters() {
        let t = BackendTable::new(&backend(
            Balance::RoundRobin,
            vec![server("a", 1, 1), server("b", 2, 1)],
        ));
        assert_eq!(t.server_index("b"), Some(1));
        assert_eq!(t.server_index("zz"), None);
        let old = t.snapshot();
        let slot = t.try_acquire(client(0), None).unwrap();
        assert_eq!((slot.name(), slot.addr().port()), ("a", 80));

        t.set_admin(0, AdminState::Drain).unwrap();
        t.set_healthy(1, false).unwrap();
        t.set_weight(1, 7).unwrap();
        let new = t.snapshot();
        // The old view is untouched and still self-consistent.
        assert_eq!(old.servers[0].state.admin, AdminState::Ready);
        assert!(old.servers[1].state.healthy);
        assert_eq!(old.serving(), [0, 1]);
        assert_eq!(
            new.servers[0].state,
            ServerState {
                admin: AdminState::Drain,
                healthy: true,
                check_down: false,
                agent_down: false,
                weight: 1,
                resolution_maint: false,
                stopping: false,
            }
        );
        assert_eq!(new.servers[1].state.weight, 7);
        assert!(new.serving().is_empty());
        // Counters are shared: the slot taken before the change shows in the new snapshot.
        assert!(Arc::ptr_eq(
            &old.servers[0].counters,
            &new.servers[0].counters
        ));
        assert_eq!(new.servers[0].counters.cur.load(Ordering::SeqCst), 1);
        drop(slot);
        assert_eq!(old.servers[0].counters.cur.load(Ordering::SeqCst), 0);
        assert_eq!(new.servers[0].counters.total.load(Ordering::SeqCst), 1);

        let err = t.set_admin(2, AdminState::Ready).unwrap_err();
        assert_eq!(
            err.to_string(),
            "backend bk has no server number 2 (it has 2)"
        );
        assert!(t.set_healthy(9, true).is_err());
        assert!(t.set_weight(9, 1).is_err());
    }

    #[test]
    fn check_and_agent_verdicts_combine() {
        let t = BackendTable::new(&backend(
            Balance::RoundRobin,
            vec![server("a", 1, 1), server("b", 2, 1)],
        ));
        let up = |before, after| UpChange { before, after };
        // The agent takes it DOWN; the regular check saying UP does not bring it back.
        let c = t.set_health(0, HealthSource::Agent, false).unwrap();
        assert_eq!(c, up(true, false));
        assert!(c.went_down() && !c.went_up());
        assert_eq!(t.snapshot().serving(), [1]);
        assert_eq!(
            t.set_health(0, HealthSource::Check, true).unwrap(),
            up(false, false)
        );
        // The check goes DOWN too: the agent's UP alone is not enough.
        assert_eq!(
            t.set_health(0, HealthSource::Check, false).unwrap(),
            up(false, false)
        );
        assert_eq!(
            t.set_health(0, HealthSource::Agent, true).unwrap(),
            up(false, false)
        );
        let st = t.snapshot().servers[0].state;
        assert!(st.check_down && !st.agent_down && !st.healthy);
        // Both UP: UP again.
        let c = t.set_health(0, HealthSource::Check, true).unwrap();
        assert!(c.went_up());
        assert_eq!(t.snapshot().serving(), [0, 1]);
        // set_healthy is the regular check's verdict.
        t.set_healthy(1, false).unwrap();
        assert!(t.snapshot().servers[1].state.check_down);
        assert!(t.set_health(9, HealthSource::Agent, true).is_err());
    }

    #[tokio::test]
    async fn set_maxconn_limits_and_frees_queued_slots() {
        let t = limited(1, 0, 1);
        let held = t.try_acquire(client(0), None).unwrap();
        let t2 = Arc::clone(&t);
        let w = tokio::spawn(async move { t2.acquire(client(1), None, None).await });
        until(|| t.queue_len() == 1).await;
        // Raising maxconn lets the waiter in at once, keeping the counters.
        t.set_maxconn(0, 2).unwrap();
        let second = w.await.unwrap().unwrap();
        assert_eq!(cur(&t, 0), 2);
        assert_eq!(t.snapshot().servers[0].conf.maxconn, 2);
        assert!(t.snapshot().servers[0].is_full());
        drop((held, second));
        t.set_maxconn(0, 0).unwrap();
        assert!(!t.snapshot().servers[0].is_full());
        assert!(t.set_maxconn(3, 1).is_err());
    }

    #[test]
    fn set_addr_applies_to_new_slots_and_keeps_counters() {
        let t = BackendTable::new(&backend(Balance::RoundRobin, vec![server("a", 1, 1)]));
        let before = t.try_acquire(client(0), None).unwrap();
        let new_addr: SocketAddr = "127.0.0.3:8080".parse().unwrap();
        t.set_addr(0, new_addr).unwrap();
        let after = t.try_acquire(client(1), None).unwrap();
        assert_eq!(
            before.addr().port(),
            80,
            "a slot taken before keeps its address"
        );
        assert_eq!(after.addr(), new_addr);
        assert!(Arc::ptr_eq(before.counters(), after.counters()));
        assert_eq!(after.counters().cur.load(Ordering::SeqCst), 2);
        assert!(t.set_addr(5, new_addr).is_err());
    }

    #[test]
    fn resolution_maint_is_separate_from_admin_maint() {
        let mut s = server("a", 1, 1);
        s.unresolved = true;
        let t = BackendTable::new(&backend(Balance::RoundRobin, vec![s, server("b", 2, 1)]));
        let snap = t.snapshot();
        assert!(snap.servers[0].state.resolution_maint);
        assert_eq!(snap.servers[0].state.admin, AdminState::Ready);
        assert_eq!(snap.serving(), [1]);
        assert!(t.set_resolution_maint(0, false).unwrap());
        assert!(!t.set_resolution_maint(0, false).unwrap());
        assert_eq!(t.snapshot().serving(), [0, 1]);
        t.set_admin(0, AdminState::Maint).unwrap();
        t.set_resolution_maint(0, true).unwrap();
        t.set_resolution_maint(0, false).unwrap();
        assert_eq!(t.snapshot().servers[0].state.admin, AdminState::Maint);
        assert_eq!(t.snapshot().serving(), [1]);
    }

    #[test]
    fn concurrent_writers_do_not_lose_updates() {
        let servers = (1..=8).map(|id| server(&format!("s{id}"), id, 1)).collect();
        let t = BackendTable::new(&backend(Balance::LeastConn, servers));
        std::thread::scope(|s| {
            for i in 0..8 {
                let t = &t;
                s.spawn(move || {
                    for w in 0..=50 {
                        t.set_weight(i, w).unwrap();
                    }
                });
            }
        });
        assert!(t.snapshot().servers.iter().all(|s| s.state.weight == 50));
    }
}
