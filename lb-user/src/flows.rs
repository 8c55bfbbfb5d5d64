//! How other threads reach the flows an accept thread owns: one command channel per thread.
//! Flows live in their thread's registry, so the accept/forward path takes no shared lock;
//! the runtime API, the stats page and the state writer send commands here instead.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::dataplane::{FlowTimeouts, Parked};

/// Why flows are ended from outside (the tcplog termination state: `KD`, `DD`, `UD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// `shutdown sessions server`, the stats page's "kill sessions": `K`.
    Admin,
    /// The server went DOWN with `on-marked-down shutdown-sessions`: `D`.
    ServerDown,
    /// A normal server came UP with `on-marked-up shutdown-backup-sessions`: `U`.
    BackupOff,
}

/// What other threads ask of a thread about the flows it owns.
#[derive(Debug)]
pub enum FlowCommand {
    /// End every flow on one of these servers (by [`crate::table::ServerCounters::uid`],
    /// which a server keeps across reloads), whatever generation accepted it.
    Kill {
        servers: Vec<u64>,
        reason: KillReason,
    },
    /// End the flow with this id (`shutdown session`), answering whether it was there.
    KillOne {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    /// Report the live flows (`show sess`).
    List(oneshot::Sender<Vec<FlowInfo>>),
    /// Binary upgrade: stop every flow that can be handed to another process at a quiet point
    /// and report them parked (those not parked by `until` go on here).
    HandOff {
        until: Instant,
        reply: oneshot::Sender<Vec<Offer>>,
    },
    /// Binary upgrade: serve a flow another process handed over.
    Adopt(Box<Adoption>),
}

/// A flow as one process hands it to another (binary upgrade): what its wire record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandedFlow {
    /// Names as of the generation that served it (the taker maps them to its own).
    pub frontend: String,
    pub backend: String,
    pub server: String,
    /// The client (a PROXY header's address when one came).
    pub client: SocketAddr,
    /// Time since the client was accepted.
    pub age: Duration,
    /// Bytes read from the client and from the server so far, every one passed on.
    pub bytes: (u64, u64),
    pub timeouts: FlowTimeouts,
    /// Bytes read and not yet written, client -> server and server -> client (written first by
    /// the taker). lb hands a flow over only where it holds none.
    pub unsent: (Vec<u8>, Vec<u8>),
}

/// A flow parked for a hand-off, with what its record says (the giving side).
#[derive(Debug)]
pub struct Offer {
    pub flow: HandedFlow,
    pub parked: Parked,
}

/// A flow handed over by another process, for a thread to serve (the taking side).
#[derive(Debug)]
pub struct Adoption {
    pub flow: HandedFlow,
    /// A flow in the old process's kernel maps: its state, and those maps (it is served from
    /// them, in place).
    pub kernel: Option<(
        crate::dataplane::sockmap::adopt::KernelFlow,
        std::sync::Arc<crate::dataplane::sockmap::adopt::OldMaps>,
    )>,
    pub client: OwnedFd,
    pub server: OwnedFd,
    /// The configuration generation whose names it was matched with.
    pub generation: u64,
}

/// A live flow, as `show sess` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Unique within its thread.
    pub id: u64,
    pub thread: usize,
    /// Index into its generation's `Config::frontends`.
    pub frontend: usize,
    /// Index into its generation's `Config::backends`.
    pub backend: usize,
    /// Index into the backend's servers.
    pub server: usize,
    /// The server's [`crate::table::ServerCounters::uid`].
    pub server_uid: u64,
    pub backup: bool,
    /// Configuration generation the flow was accepted in.
    pub generation: u64,
    /// Names as of that generation (the current one may not have them any more).
    pub frontend_name: std::sync::Arc<str>,
    pub backend_name: std::sync::Arc<str>,
    pub server_name: std::sync::Arc<str>,
    pub client: SocketAddr,
    /// Time since the client was accepted.
    pub age: Duration,
}

impl FlowInfo {
    /// The id `show sess` gives it: its thread in the top 16 bits, its id in that thread below.
    pub fn session_id(&self) -> u64 {
        (self.thread as u64) << 48 | self.id
    }

    /// A [`Self::session_id`]'s (thread, id within the thread).
    pub fn split_session_id(session: u64) -> (usize, u64) {
        (
            usize::try_from(session >> 48).unwrap_or(usize::MAX),
            session & ((1 << 48) - 1),
        )
    }
}

/// The command channels of every accept thread (process-wide: generations share them).
#[derive(Clone, Debug)]
pub struct FlowControl {
    threads: Vec<UnboundedSender<FlowCommand>>,
}

impl FlowControl {
    /// The channels of `threads` threads, and the receiver for each (hand `i` to thread `i`).
    pub fn new(threads: usize) -> (Self, Vec<UnboundedReceiver<FlowCommand>>) {
        let (threads, receivers) = (0..threads).map(|_| unbounded_channel()).unzip();
        (Self { threads }, receivers)
    }

    /// Ends every live flow on these servers, on every thread and data plane.
    pub fn kill(&self, servers: &[u64], reason: KillReason) {
        if servers.is_empty() {
            return;
        }
        for t in &self.threads {
            // A thread that has stopped has no flows left to act on.
            let _ = t.send(FlowCommand::Kill {
                servers: servers.to_vec(),
                reason,
            });
        }
    }

    /// Ends the flow `show sess` names `session` (its thread in the top 16 bits, see
    /// [`FlowInfo::session_id`]), as an operator's kill (`K`); whether it was there.
    pub async fn kill_one(&self, session: u64) -> bool {
        let (thread, id) = FlowInfo::split_session_id(session);
        let Some(t) = self.threads.get(thread) else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if t.send(FlowCommand::KillOne { id, reply }).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Parks every flow that can be handed off, on every thread, and returns them; a flow not
    /// parked by `until` goes on where it is.
    pub async fn hand_off(&self, until: Instant) -> Vec<Offer> {
        let mut waits = Vec::new();
        for t in &self.threads {
            let (reply, rx) = oneshot::channel();
            if t.send(FlowCommand::HandOff { until, reply }).is_ok() {
                waits.push(rx);
            }
        }
        let mut all = Vec::new();
        for rx in waits {
            all.extend(rx.await.unwrap_or_default());
        }
        all
    }

    /// Gives a handed-over flow to a thread (the `n`th flow goes to thread `n mod threads`);
    /// `false` when that thread has stopped (the process is going down with it).
    pub fn adopt(&self, n: usize, flow: Adoption) -> bool {
        let Some(t) = self.threads.get(n % self.threads.len().max(1)) else {
            return false;
        };
        t.send(FlowCommand::Adopt(Box::new(flow))).is_ok()
    }

    /// The live flows of every thread, by thread and id.
    pub async fn list(&self) -> Vec<FlowInfo> {
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
