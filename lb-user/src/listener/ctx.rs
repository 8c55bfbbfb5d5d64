//! What one thread's tasks share: its data plane, what each bound address serves, and the
//! registry of its flows (for `show sess`, `shutdown sessions`, `on-marked-*`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::bind::ThreadPlan;

use crate::dataplane::{Dataplane, KillSwitch};
use crate::flows::{FlowCommand, FlowInfo, KillReason};
use crate::generation::Generation;

/// A flow in its thread's registry.
pub(super) struct LocalFlow {
    pub(super) info: FlowInfo,
    pub(super) started: Instant,
    pub(super) kill: Rc<KillSwitch>,
    /// Why it was ended from outside, for its log line.
    pub(super) killed_by: Rc<Cell<Option<KillReason>>>,
}

/// What one thread's tasks share: its data plane handle, what each bound address serves, and
/// the registry of its flows.
pub(super) struct ThreadCtx {
    pub(super) thread: usize,
    pub(super) dataplane: Dataplane,
    pub(super) binds: RefCell<HashMap<SocketAddr, BindState>>,
    pub(super) flows: RefCell<HashMap<u64, LocalFlow>>,
    pub(super) next_id: Cell<u64>,
}

/// What an accept loop serves now; replaced on reload while the loop (and its listening
/// socket, with its backlog) carries on.
pub(super) struct BindState {
    pub(super) gen: Arc<Generation>,
    pub(super) frontend: usize,
    pub(super) removed: bool,
}

impl ThreadCtx {
    /// Acts on one command from another thread.
    pub(super) fn command(&self, cmd: FlowCommand) {
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

    /// Switches every address to the plan's generation and marks removed addresses (their
    /// loops stop); returns the sockets of new addresses, for which loops must start.
    pub(super) fn apply(&self, plan: ThreadPlan) -> Vec<(SocketAddr, TcpListener)> {
        let mut binds = self.binds.borrow_mut();
        for addr in &plan.removed {
            if let Some(b) = binds.get_mut(addr) {
                b.removed = true;
            }
        }
        let mut new = Vec::new();
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
                new.push((bp.addr, listener));
            }
        }
        new
    }

    /// The generation and frontend an address serves now; `None` once it was removed.
    pub(super) fn serving(&self, addr: SocketAddr) -> Option<(Arc<Generation>, usize)> {
        let binds = self.binds.borrow();
        let b = binds.get(&addr)?;
        (!b.removed).then(|| (b.gen.clone(), b.frontend))
    }
}

/// Removes a flow from its thread's registry when the flow's task ends, however it ends.
pub(super) struct Registered<'a> {
    pub(super) ctx: &'a ThreadCtx,
    pub(super) id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.ctx.flows.borrow_mut().remove(&self.id);
    }
}
