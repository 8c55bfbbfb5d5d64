//! A reserved connection slot on one server (`cur += 1` until dropped).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{BackendTable, ServerCounters, ServerEntry};
use crate::config::Server;
use crate::server::{PortLease, QueueKick};

/// A reserved connection slot on one server. Dropping it releases the slot (`cur -= 1`) and
/// lets the head of the queue have it.
pub struct ServerSlot {
    table: Arc<BackendTable>,
    index: usize,
    conf: Arc<Server>,
    addr: SocketAddr,
    counters: Arc<ServerCounters>,
    /// The port of the server's source range the connection is bound to: given back when the
    /// slot drops, at the flow's end.
    port: Option<PortLease>,
    /// Already released (by `release_quietly`): nothing to do on drop.
    released: bool,
    /// It holds its session's count on the backend ([`BackendSession::hold_in`]), ended
    /// with it.
    session: bool,
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
    pub(super) fn new(table: &Arc<BackendTable>, entry: &ServerEntry, index: usize) -> Self {
        Self {
            table: Arc::clone(table),
            index,
            conf: Arc::clone(&entry.conf),
            addr: entry.addr(),
            counters: Arc::clone(&entry.counters),
            port: None,
            released: false,
            session: false,
        }
    }

    /// Counts the connection (`lbtot`) when the slot reaches its user, so a slot handed to a
    /// waiter that had already left is not counted.
    pub(super) fn delivered(self) -> Self {
        // Relaxed: statistics.
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        self.counters.sess_rate.add();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.counters.last_session.store(now, Ordering::Relaxed);
        self
    }

    /// Releases the slot without dispatching the queue (the caller is the dispatcher).
    pub(super) fn release_quietly(mut self) {
        self.released = true;
        self.counters.cur.fetch_sub(1, Ordering::SeqCst);
    }

    /// Holds `port` (of the server's source range) until the slot drops.
    pub fn keep_port(&mut self, port: Option<PortLease>) {
        self.port = port;
    }

    /// The server's index in the backend (and in every snapshot's `servers`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The server's address when the slot was taken (where the connection goes).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where this connection goes, the one rule for it (HAProxy's `alloc_dst_address`): the
    /// server's address, or, for a server without one (`0.0.0.0`, `::`), the address the
    /// client asked for; the server's fixed port, or the client's destination port plus the
    /// offset. `asked` gives the client's original destination, read only when needed (it may
    /// cost a system call, see `listener::connect::OrigDst`).
    pub fn target(&self, asked: &dyn Fn() -> SocketAddr) -> SocketAddr {
        let no_addr = self.addr.ip().is_unspecified();
        let dst = (no_addr || self.conf.port_offset.is_some()).then(asked);
        let ip = match dst {
            Some(d) if no_addr => d.ip(),
            _ => self.addr.ip(),
        };
        let port = self
            .conf
            .target_port(self.addr.port(), dst.map_or(0, |d| d.port()));
        SocketAddr::new(ip, port)
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.conf.name
    }

    /// The server's configuration.
    pub fn conf(&self) -> &Arc<Server> {
        &self.conf
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
        if self.session {
            self.table.load.sessions.count_out();
        }
        if self.released {
            return;
        }
        // SeqCst: decrement cur, then read the queue length (in kick); see try_reserve.
        self.counters.cur.fetch_sub(1, Ordering::SeqCst);
        self.table.kick();
        // After a reload the server's current table is another one (the counters, and so `cur`,
        // are shared): connections queued there may take the slot too.
        if let Some(latest) = self.counters.latest.load().as_ref() {
            let mine = Arc::as_ptr(&self.table).cast::<()>();
            if !std::ptr::eq(latest.0.as_ptr().cast::<()>(), mine) {
                if let Some(t) = latest.0.upgrade() {
                    t.kick();
                }
            }
        }
    }
}

/// A session counted on its backend ([`BackendTable::enter`]) until dropped, or until handed
/// to the slot of the server it got, which then ends it with the connection: a flow on the
/// data plane holds nothing more for it.
pub struct BackendSession {
    table: Arc<BackendTable>,
    /// Still counted by this guard (not handed to a slot).
    held: bool,
}

impl BackendSession {
    pub(super) fn new(table: &Arc<BackendTable>) -> Self {
        table.load.sessions.count_in();
        Self {
            table: Arc::clone(table),
            held: true,
        }
    }

    /// Hands the count to `slot`, a slot of the same table.
    pub fn hold_in(mut self, slot: &mut ServerSlot) {
        debug_assert!(Arc::ptr_eq(&self.table, &slot.table));
        if !slot.session {
            self.held = false;
            slot.session = true;
        }
    }
}

impl Drop for BackendSession {
    fn drop(&mut self) {
        if self.held {
            self.table.load.sessions.count_out();
        }
    }
}

/// What a connection holds of its backend until it ends: its server's slot, or, for one that
/// `option transparent` sends to the client's original destination (no server, HAProxy's
/// target being the backend itself), its session's count on the backend.
pub enum Held {
    Server(ServerSlot),
    Backend(BackendSession),
}

impl Held {
    /// The server's slot, when there is a server.
    pub fn server(&self) -> Option<&ServerSlot> {
        match self {
            Self::Server(s) => Some(s),
            Self::Backend(_) => None,
        }
    }

    /// The backend.
    pub fn table(&self) -> &Arc<BackendTable> {
        match self {
            Self::Server(s) => &s.table,
            Self::Backend(b) => &b.table,
        }
    }

    /// The server's name, HAProxy's `<NOSRV>` without one (as its logs name it).
    pub fn name(&self) -> &str {
        match self {
            Self::Server(s) => s.name(),
            Self::Backend(_) => "<NOSRV>",
        }
    }

    /// Counts a flow's bytes (client -> server, server -> client): on its server, else on the
    /// backend itself (its statistics add them to its servers').
    pub fn count_bytes(&self, bytes_in: u64, bytes_out: u64) {
        let (i, o) = match self {
            Self::Server(s) => (&s.counters.bytes_in, &s.counters.bytes_out),
            Self::Backend(b) => (
                &b.table.load.sessions.bytes_in,
                &b.table.load.sessions.bytes_out,
            ),
        };
        // Relaxed: statistics.
        i.fetch_add(bytes_in, Ordering::Relaxed);
        o.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    /// A slot lives as long as its flow, idle or not: the backend session's flag took a byte
    /// of padding, no more (88 bytes with the port lease and the release flag before it).
    #[test]
    fn a_slot_stays_88_bytes() {
        assert_eq!(std::mem::size_of::<super::ServerSlot>(), 88);
    }
}
