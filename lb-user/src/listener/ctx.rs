//! What one thread's tasks share: its data plane, what each bound address serves, and the
//! registry of its flows (for `show sess`, `shutdown sessions`, `on-marked-*`).

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;
use slab::Slab;

use super::bind::ThreadPlan;

use crate::dataplane::{Dataplane, FlowTimeouts, HandOffAsk, KillSwitch};
use crate::flows::{FlowCommand, FlowInfo, HandedFlow, KillReason, Offer};
use crate::generation::Generation;
use crate::logging::tcplog::Killer;

/// A flow in its thread's registry.
pub(super) struct LocalFlow {
    pub(super) info: FlowInfo,
    pub(super) started: Instant,
    /// Its inactivity limits (a hand-off carries them to the other process): the thread's
    /// copy.
    pub(super) timeouts: Arc<FlowTimeouts>,
    pub(super) kill: Rc<KillSwitch>,
    /// Why it was ended from outside, for its log line.
    pub(super) killed_by: Cell<Option<KillReason>>,
}

/// What one thread's tasks share: its data plane handle, what each bound address serves, and
/// the registry of its flows.
pub(super) struct ThreadCtx {
    pub(super) thread: usize,
    pub(super) dataplane: Dataplane,
    pub(super) binds: RefCell<HashMap<SocketAddr, BindState>>,
    /// Its flows, in a slab: the table grows by whole entries (a map's spare buckets and
    /// control bytes would cost each idle flow more than its entry).
    pub(super) flows: RefCell<Slab<LocalFlow>>,
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
    pub(super) fn command(self: &Rc<Self>, cmd: FlowCommand) {
        let flows = self.flows.borrow();
        match cmd {
            FlowCommand::Kill { servers, reason } => {
                for (_, f) in flows.iter() {
                    if servers.contains(&f.info.server_uid) {
                        f.killed_by.set(Some(reason));
                        f.kill.kill();
                    }
                }
            }
            FlowCommand::KillOne { id, reply } => {
                let found = flows.iter().find(|(_, f)| f.info.id == id);
                if let Some((_, f)) = found {
                    f.killed_by.set(Some(KillReason::Admin));
                    f.kill.kill();
                }
                let _ = reply.send(found.is_some());
            }
            FlowCommand::List(reply) => {
                let list = flows
                    .iter()
                    .map(|(_, f)| f)
                    .map(|f| FlowInfo {
                        age: f.started.elapsed(),
                        ..f.info.clone()
                    })
                    .collect();
                let _ = reply.send(list);
            }
            FlowCommand::HandOff { until, reply } => {
                let asked: Vec<_> = flows.iter().map(|(_, f)| ask_hand_off(f, until)).collect();
                tokio::task::spawn_local(async move {
                    let mut parked = Vec::new();
                    for (flow, rx) in asked {
                        // An error: the flow can't be handed off (in the kernel, half-closed,
                        // ended); a timeout: it found no quiet point in time. Either way it goes
                        // on here.
                        if let Ok(Ok(p)) = tokio::time::timeout_at(until.into(), rx).await {
                            let flow = HandedFlow {
                                bytes: p.read,
                                ..flow
                            };
                            parked.push(Offer { flow, parked: p });
                        }
                    }
                    let _ = reply.send(parked);
                });
            }
            FlowCommand::Adopt(a) => {
                tokio::task::spawn_local(super::adopt::adopt(*a, self.clone()));
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

    /// Generation `number`, when one of this thread's addresses serves it; else the newest one
    /// they serve.
    pub(super) fn generation(&self, number: u64) -> Option<Arc<Generation>> {
        let binds = self.binds.borrow();
        let gens = binds.values().filter(|b| !b.removed).map(|b| &b.gen);
        gens.clone()
            .find(|g| g.number == number)
            .or_else(|| gens.max_by_key(|g| g.number))
            .cloned()
    }

    /// `f` of the generation and frontend an address serves now, without taking a reference
    /// to the generation (its count is shared by every thread); `None` once it was removed.
    pub(super) fn with_serving<T>(
        &self,
        addr: SocketAddr,
        f: impl FnOnce(&Generation, usize) -> T,
    ) -> Option<T> {
        let binds = self.binds.borrow();
        let b = binds.get(&addr)?;
        (!b.removed).then(|| f(&b.gen, b.frontend))
    }

    /// The generation and frontend an address serves now; `None` once it was removed.
    pub(super) fn serving(&self, addr: SocketAddr) -> Option<(Arc<Generation>, usize)> {
        let binds = self.binds.borrow();
        let b = binds.get(&addr)?;
        (!b.removed).then(|| (b.gen.clone(), b.frontend))
    }
}

/// Asks a flow to park for a hand-off; its record as of now, and where it arrives parked.
fn ask_hand_off(
    f: &LocalFlow,
    until: Instant,
) -> (
    HandedFlow,
    tokio::sync::oneshot::Receiver<crate::dataplane::Parked>,
) {
    let (ask, rx) = HandOffAsk::new(until);
    f.kill.hand_off(ask);
    let flow = HandedFlow {
        frontend: f.info.frontend_name.to_string(),
        backend: f.info.backend_name.to_string(),
        server: f.info.server_name.to_string(),
        client: f.info.client,
        age: f.started.elapsed(),
        // Filled in from the parked flow's counts.
        bytes: (0, 0),
        timeouts: *f.timeouts,
        unsent: (Vec::new(), Vec::new()),
    };
    (flow, rx)
}

/// A flow in its thread's registry (for `show sess`, `shutdown sessions`, `on-marked-*`, the
/// upgrade's hand-off ask), removed when this is dropped, however the flow ends. `C`: how the
/// thread's context is held (borrowed by a flow's task, owned by a flow on the ring, which
/// has no task).
pub(super) struct Registered<C: Deref<Target = ThreadCtx>> {
    ctx: C,
    /// Its key in the thread's registry.
    key: usize,
    pub(super) kill: Rc<KillSwitch>,
}

impl<C: Deref<Target = ThreadCtx>> Registered<C> {
    /// Registers the flow `info` describes (its `id` is given here), accepted at `started`;
    /// `timeouts`: the thread's shared copy ([`crate::interned::timeouts`]).
    pub(super) fn new(
        ctx: C,
        mut info: FlowInfo,
        started: Instant,
        timeouts: Arc<FlowTimeouts>,
    ) -> Self {
        let id = ctx.next_id.get();
        ctx.next_id.set(id + 1);
        info.id = id;
        let kill = Rc::new(KillSwitch::default());
        let key = ctx.flows.borrow_mut().insert(LocalFlow {
            info,
            started,
            timeouts,
            kill: kill.clone(),
            killed_by: Cell::new(None),
        });
        Self { ctx, key, kill }
    }

    /// The thread's context.
    pub(super) fn ctx(&self) -> &C {
        &self.ctx
    }

    /// The flow's inactivity limits, as registered.
    pub(super) fn timeouts(&self) -> FlowTimeouts {
        *self.ctx.flows.borrow()[self.key].timeouts
    }

    /// Who ended the flow from outside, for its log line.
    pub(super) fn killer(&self) -> Killer {
        match self.ctx.flows.borrow()[self.key].killed_by.get() {
            Some(KillReason::ServerDown) => Killer::ServerDown,
            Some(KillReason::BackupOff) => Killer::BackupOff,
            Some(KillReason::Admin) | None => Killer::Admin,
        }
    }
}

impl<C: Deref<Target = ThreadCtx>> Drop for Registered<C> {
    fn drop(&mut self) {
        self.ctx.flows.borrow_mut().remove(self.key);
    }
}
