//! How other threads reach the flows an accept thread owns: one command channel per thread.
//! Flows live in their thread's registry, so the accept/forward path takes no shared lock;
//! the runtime API, the stats page and the state writer send commands here instead.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

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
    /// Report the live flows (`show sess`).
    List(oneshot::Sender<Vec<FlowInfo>>),
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
