//! The server table: per backend, one immutable snapshot (servers, their state, the balancer's
//! precomputed data) behind `arc-swap`, per-server atomic counters shared by every snapshot, and
//! the backend's FIFO queue of connections waiting for a server below its `maxconn`.
//!
//! Readers (accept loops) never lock: they load the snapshot, pick, and reserve a slot with one
//! compare-and-swap on the server's `cur`. There is one writer entry, [`BackendTable::write`],
//! and one caller of it, the state writer (`crate::state`): it serializes on a mutex, builds a
//! new snapshot and publishes it. Only the queued (slow) path locks the queue.

mod queue;
mod slot;

pub use crate::server::{
    carry_over, fastinter, name_key, AddrOrigin, AdminState, BackendLoad, CheckInfo, CheckResult,
    Health, Origin, ServerCounters, ServerEntry, ServerState, TrackView, Transition,
};
pub use queue::{AcquireError, TryAcquireError};
pub use slot::{BackendSession, Held, ServerSlot};

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::balance::{Balancer, Pick};
use crate::config::Backend;
use crate::server::{LatestQueue, QueueKick};
use queue::WaitQueue;

/// Highest weight haproxy accepts (`weight` 0..=256).
pub const MAX_WEIGHT: u32 = 256;

/// Immutable view of one backend: servers and the balancer's precomputed data.
#[derive(Debug)]
pub struct BackendSnapshot {
    /// Every server of the backend, in config order (index = position in `Backend::servers`).
    pub servers: Vec<ServerEntry>,
    /// Counts the snapshots this table published: 0 for the first, +1 per write.
    pub version: u64,
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
            version: prev.map_or(0, |p| p.version + 1),
            balancer,
            queue_limit,
        }
    }

    /// `balance rdp-cookie`: the server an RDP cookie's value hashes to.
    pub fn rdp_cookie_target(&self, cookie: &[u8]) -> Option<usize> {
        self.balancer.rdp_cookie_target(cookie)
    }

    /// Usable (non-backup, backup) servers, as in "1 active and 0 backup servers left".
    pub fn usable_counts(&self) -> (usize, usize) {
        usable_counts(&self.servers)
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

/// Usable (non-backup, backup) servers among `servers`.
pub fn usable_counts(servers: &[ServerEntry]) -> (usize, usize) {
    let usable = servers.iter().filter(|s| s.usable());
    let backup = usable.clone().filter(|s| s.conf.backup).count();
    (usable.count() - backup, backup)
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
    /// Its sessions (the backend's counters, shared across generations) and `fullconn`.
    pub load: Arc<BackendLoad>,
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
    /// The table of `conf`'s servers as HAProxy starts them (see [`ServerState::initial`]),
    /// with fresh counters, and `fullconn` as configured (else 1).
    pub fn new(conf: &Backend) -> Arc<Self> {
        let load = BackendLoad {
            sessions: Arc::default(),
            fullconn: conf.fullconn.unwrap_or(1),
        };
        Self::with_entries(
            conf,
            conf.servers.iter().map(ServerEntry::new).collect(),
            load,
        )
    }

    /// The table of `conf` with these entries (one per `conf.servers`, same order): a reload
    /// builds them from the previous generation's. The counters are told this table is now
    /// theirs, so slots released by older generations' flows serve its queue too; the entries
    /// read `load` for a dynamic `maxconn`.
    pub fn with_entries(
        conf: &Backend,
        mut servers: Vec<ServerEntry>,
        load: BackendLoad,
    ) -> Arc<Self> {
        debug_assert_eq!(servers.len(), conf.servers.len());
        let load = Arc::new(load);
        for e in &mut servers {
            e.load = Some(Arc::clone(&load));
        }
        let table = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            snap: ArcSwap::from_pointee(BackendSnapshot::build(conf, servers, None)),
            conf: Arc::new(conf.clone()),
            writer: Mutex::new(()),
            queue: Mutex::new(WaitQueue::default()),
            queued: AtomicUsize::new(0),
            queue_max: AtomicUsize::new(0),
            load,
        });
        let weak: Weak<dyn QueueKick> = Arc::downgrade(&table) as Weak<dyn QueueKick>;
        for e in &table.snapshot().servers {
            e.counters
                .latest
                .store(Some(Arc::new(LatestQueue(weak.clone()))));
        }
        table
    }

    /// Counts a session on the backend from its choice (before any queueing) to its end,
    /// HAProxy's `beconn` (`scur`, `stot`, the session rate, `be_conn`, `%bc`, and what a
    /// dynamic `maxconn` grows with); [`BackendSession::hold_in`] hands it to the session's
    /// server slot.
    pub fn enter(self: &Arc<Self>) -> BackendSession {
        BackendSession::new(self)
    }

    /// The current snapshot. Holding it keeps that consistent view alive.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<BackendSnapshot>> {
        self.snap.load()
    }

    /// Index of the server named `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.conf.servers.iter().position(|s| s.name == name)
    }

    /// The one write path's primitive: runs `change` on a copy of every server's entry under
    /// the writer lock and, if it succeeds and any state changed, publishes the result as one
    /// new snapshot, then lets queued connections onto servers that became available. `change`
    /// sees every server (it may need the counts of usable servers after its own change); on
    /// error nothing is published. Only `crate::state` calls this; everything else reads.
    pub(crate) fn write<R, E>(
        &self,
        change: impl FnOnce(&mut [ServerEntry]) -> Result<R, E>,
    ) -> Result<R, E> {
        let changed;
        let result;
        {
            let _writer = self.writer.lock();
            let old = self.snap.load_full();
            let mut servers = old.servers.clone();
            result = change(&mut servers)?;
            changed = servers
                .iter()
                .zip(&old.servers)
                .any(|(n, o)| n.state != o.state);
            if changed {
                let new = BackendSnapshot::build(&self.conf, servers, Some(&old));
                self.snap.store(Arc::new(new));
            }
        }
        if changed {
            self.kick();
        }
        Ok(result)
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

    /// Reserves a slot on server `index` itself (`use-server`, `stick`): when it takes the
    /// assignment ([`crate::server::ServerState::takes_assignment`]: not DOWN nor in
    /// maintenance, or any state with `persist`) and is below its maxconn. `None` otherwise
    /// (the caller balances instead: lb queues per backend, not per server).
    pub fn try_acquire_server(self: &Arc<Self>, index: usize, persist: bool) -> Option<ServerSlot> {
        let snap = self.snap.load();
        let e = snap.servers.get(index)?;
        if !e.state.takes_assignment(persist) || !e.try_reserve() {
            return None;
        }
        Some(ServerSlot::new(self, e, index).delivered())
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

    /// `clear counters` for this backend and its servers (see [`ServerCounters::clear`]): the
    /// queue's highest length, each server's counters.
    pub fn clear_counters(&self, all: bool) {
        self.queue_max.store(0, Ordering::Relaxed);
        for e in &self.snapshot().servers {
            e.counters.clear(all);
        }
    }
}

impl QueueKick for BackendTable {
    fn kick(&self) {
        // SeqCst: see try_reserve (this runs right after a release decremented cur).
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut q = self.queue.lock();
            self.dispatch(&mut q);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
