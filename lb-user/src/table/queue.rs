//! The backend's FIFO queue of connections waiting for a server below its `maxconn`, and
//! the dispatcher that hands freed slots to them in arrival order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{BackendTable, ServerSlot};
use crate::balance::{Pick, Tried};

/// How many waiters that exclude a server (redispatched connections) the queue dispatcher looks
/// past when it cannot serve them. Bounds the time spent under the queue lock; waiters further
/// back are reached as the ones ahead of them leave. Such waiters are rare: they come from
/// `option redispatch` after failed connects.
const DISPATCH_SCAN: usize = 64;

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
pub(super) struct Waiter {
    id: u64,
    client: SocketAddr,
    exclude: Option<usize>,
    /// Where the dispatcher hands the reserved slot.
    tx: oneshot::Sender<ServerSlot>,
}

#[derive(Default)]
pub(super) struct WaitQueue {
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

impl BackendTable {
    pub(super) fn enqueue(
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

    /// Hands free slots to waiters in arrival order.
    ///
    /// A waiter that could take any server and got none ends the pass: nobody behind it can get
    /// one either. Waiters that cannot take every server are looked past, so they don't block
    /// the others: with `balance source` each waits for the server its address hashes to (as in
    /// haproxy, where it would sit in that server's queue), and the pass skips, without trying,
    /// every waiter whose server was already found full; it ends once all are. Waiters that
    /// exclude a server (redispatch) are looked past up to [`DISPATCH_SCAN`] of them.
    pub(super) fn dispatch(&self, q: &mut WaitQueue) {
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
pub(super) struct QueuedWaiter {
    pub(super) table: Arc<BackendTable>,
    pub(super) id: u64,
    pub(super) rx: oneshot::Receiver<ServerSlot>,
    /// Still (possibly) in the queue: remove on drop.
    pub(super) queued: bool,
}

impl QueuedWaiter {
    /// Leaves the queue; returns the slot if one was handed over in the meantime.
    pub(super) fn cancel(&mut self) -> Option<ServerSlot> {
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
