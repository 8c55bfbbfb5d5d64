//! A connection on the data plane until its end: registered with its thread (`show sess`,
//! `shutdown session(s)`, `on-marked-*`, the upgrade's hand-off ask), forwarded, then counted
//! and logged.
//!
//! Where the thread has a ring (every plane but `--sockmap-after 0`), the flow copies on the
//! ring with no task:
//! what its end needs ([`OnPlane`]) waits in the ring's slab entry, and the ring hands it the
//! flow's end. A flow that graduates (a stream) becomes a task again, for splice (then, on
//! sockmap, the maps).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::{Registered, ThreadCtx};
use super::permit::ConnPermit;
use super::served::{count_bytes, Closing, LogAs};

use crate::config::Frontend;
use crate::dataplane::{FlowEnd, FlowReport, FlowTimeouts, Sock};
use crate::fd_budget::FdLease;
use crate::flows::FlowInfo;
use crate::generation::Generation;
use crate::interned;
use crate::logging::tcplog::Ending;
use crate::ring::Copied;
use crate::session::Session;
use crate::table::{Held, ServerSlot};

/// A pair ready for the data plane.
pub(super) struct ToPlane {
    pub(super) client: Sock,
    pub(super) server: Sock,
    /// Its server's slot, or the backend's count without a server.
    pub(super) held: Held,
    /// Bytes passed on before the data plane, each way (counted with the flow's).
    pub(super) pre: (u64, u64),
    /// Bytes read from each socket before the data plane (its FIN accounting).
    pub(super) read: (u64, u64),
}

/// What a flow's end needs, kept while it is on the data plane: on the ring, this is all an
/// idle flow holds besides its ring entry and its registry entry, so it is kept small (what
/// its log line reads only when its frontend logs, the session only when its end needs it).
struct OnPlane {
    end: AtEnd,
    /// The session, when its end still reads it ([`Session::needed_at_end`]); otherwise what
    /// the log line reads of it was noted at the start and it was let go then.
    sess: Option<Box<Session>>,
    pre: (u64, u64),
    reg: Registered<Rc<ThreadCtx>>,
}

/// What a flow's end releases and counts, and what its log line reads.
enum AtEnd {
    /// Its frontend logs: what serving it left for its line (its `served.slot` holds the
    /// flow's server slot). Boxed: a few hundred bytes.
    Logged(Box<Closing>),
    /// Its frontend logs nothing: its counts and its server slot, released at its end, and
    /// where its bytes are counted.
    Quiet {
        gen: Arc<Generation>,
        frontend: usize,
        slot: Held,
        _permit: ConnPermit,
        _fds: FdLease,
    },
}

/// Forwards `to` until the flow ends, then counts and logs it. This returns at once: on the
/// ring the flow goes on without a task, else in a task of its own (the setup's future, rules,
/// balancing and connect, several KiB, is freed now; an idle flow holds only its own).
pub(super) fn run(ctx: &Rc<ThreadCtx>, mut closing: Closing, sess: Box<Session>, to: ToPlane) {
    let ToPlane {
        client,
        server,
        held: slot,
        pre,
        read,
    } = to;
    let (gen, frontend) = (closing.gen.clone(), closing.frontend);
    let fe: &Frontend = &gen.config.frontends[frontend];
    // The thread's shared copy, for the registry and the ring alike.
    let t = interned::timeouts(FlowTimeouts::new(fe, &slot.table().conf));
    let info = flow_info(ctx, &closing, &sess, &slot);
    // Logged already (`option logasap`): its end draws no line.
    let logs_at_end = closing.served.log != LogAs::Nothing;
    let format = gen
        .logs
        .frontend(frontend)
        .and_then(|l| l.format.clone())
        .filter(|_| logs_at_end);
    let sess = if sess.needed_at_end(format.as_deref()) {
        Some(sess)
    } else {
        closing.served.note_session(&gen, frontend, &sess);
        None
    };
    let end = if logs_at_end && gen.logs.frontend(frontend).is_some_and(|l| l.enabled()) {
        closing.served.slot = Some(slot);
        AtEnd::Logged(Box::new(closing))
    } else {
        AtEnd::Quiet {
            gen: closing.gen,
            frontend,
            slot,
            _permit: closing.permit,
            _fds: closing.fds,
        }
    };
    let started = Instant::now();
    let reg = Registered::new(ctx.clone(), info, started, t.clone());
    let plane = OnPlane {
        end,
        sess,
        pre,
        reg,
    };
    if ctx.dataplane.copies_first() && crate::ring::available() {
        let kill = plane.reg.kill.clone();
        let (client, server) = (client.into_fd(), server.into_fd());
        let done = Box::new(move |copied| match copied {
            Copied::Done(report) => plane.finish(report),
            // A stream: splice (then, on sockmap, the maps) takes it on, in a task of its own.
            Copied::Graduated(g) => {
                tokio::task::spawn_local(async move {
                    let (kill, t) = (plane.reg.kill.clone(), plane.reg.timeouts());
                    let dataplane = &plane.reg.ctx().dataplane;
                    let report = dataplane.after_ring(g, t, &kill, read, started).await;
                    plane.finish(report);
                });
            }
        });
        crate::ring::start(client, server, t, &kill, done);
        return;
    }
    let ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let report = ctx
            .dataplane
            .forward(client, server, *t, &plane.reg.kill, read)
            .await;
        plane.finish(report);
    });
}

/// The flow as `show sess` and the thread's commands see it.
fn flow_info(ctx: &ThreadCtx, closing: &Closing, sess: &Session, slot: &Held) -> FlowInfo {
    let gen = &closing.gen;
    let fe: &Frontend = &gen.config.frontends[closing.frontend];
    let backend = &slot.table().conf;
    // The name its log line keeps; names are the thread's shared copies.
    let server_name = match &closing.served.server {
        Some((_, name)) => name.clone(),
        None => interned::name(slot.name()),
    };
    FlowInfo {
        id: 0,
        thread: ctx.thread,
        frontend: closing.frontend,
        backend: (backend.id as usize).saturating_sub(1),
        // No server (`option transparent`): an index and an id no server has.
        server: slot.server().map_or(usize::MAX, ServerSlot::index),
        server_uid: slot.server().map_or(u64::MAX, |s| s.counters().uid),
        backup: slot.server().is_some_and(ServerSlot::is_backup),
        generation: gen.number,
        frontend_name: interned::name(&fe.name),
        backend_name: interned::name(&backend.name),
        server_name,
        client: sess.src(),
        age: Duration::ZERO,
    }
}

/// The debug line of a flow's end: its client when kept (a frontend that logs nothing keeps
/// none), its server, why it ended, its bytes and the plane that carried it last.
fn debug_end(
    client: Option<std::net::SocketAddr>,
    slot: &Held,
    report: &FlowReport,
    (bytes_in, bytes_out): (u64, u64),
) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let plane = if report.spliced_in_kernel {
        "sockmap"
    } else {
        "splice"
    };
    log::debug!(
        "{}{}/{}: {:?}, {bytes_in} bytes in, {bytes_out} bytes out ({plane})",
        client.map(|c| format!("{c} ")).unwrap_or_default(),
        slot.table().conf.name,
        slot.name(),
        report.end,
    );
}

impl OnPlane {
    /// The flow ended with `report`: it leaves its thread's registry, its bytes are counted
    /// (server, frontend, tracked stick-table entries), and it is logged.
    fn finish(self, report: FlowReport) {
        let Self {
            end,
            sess,
            pre,
            reg,
        } = self;
        let killer = reg.killer();
        drop(reg);
        let (bytes_in, bytes_out) = (report.bytes_in + pre.0, report.bytes_out + pre.1);
        if let Some(sess) = &sess {
            sess.flow_bytes(bytes_in, bytes_out);
        }
        let mut closing = match end {
            AtEnd::Logged(closing) => closing,
            AtEnd::Quiet {
                gen,
                frontend,
                slot,
                ..
            } => {
                count_bytes(&gen, frontend, Some(&slot), (bytes_in, bytes_out));
                debug_end(None, &slot, &report, (bytes_in, bytes_out));
                // Its counts are let go of after its tracked entries' bytes, as a logged one's.
                drop(sess);
                return;
            }
        };
        let (gen, frontend) = (closing.gen.clone(), closing.frontend);
        let served = &mut closing.served;
        count_bytes(&gen, frontend, served.slot.as_ref(), (bytes_in, bytes_out));
        if let Some(slot) = &served.slot {
            debug_end(Some(served.client), slot, &report, (bytes_in, bytes_out));
        }
        served.ending = Ending::Flow(report.end, killer);
        if report.end == FlowEnd::HandedOff {
            // The process that took it logs the session at its end, with all its bytes.
            served.log = LogAs::Nothing;
        }
        served.bytes_in = bytes_in;
        served.bytes_out = bytes_out;
        if let Some(sess) = sess {
            served.note_session(&gen, frontend, &sess);
            // Its tracked entries (`conn_cur`) are let go of before the line, as before.
            drop(sess);
        }
        closing.log();
    }
}
