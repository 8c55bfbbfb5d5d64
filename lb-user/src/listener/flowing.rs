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
use super::served::{count_bytes, Closing, LogAs};

use crate::config::Frontend;
use crate::dataplane::{FlowEnd, FlowReport, FlowTimeouts, Sock};
use crate::flows::FlowInfo;
use crate::logging::tcplog::Ending;
use crate::ring::Copied;
use crate::session::Session;
use crate::table::ServerSlot;

/// A pair ready for the data plane.
pub(super) struct ToPlane {
    pub(super) client: Sock,
    pub(super) server: Sock,
    pub(super) slot: ServerSlot,
    /// Bytes passed on before the data plane, each way (counted with the flow's).
    pub(super) pre: (u64, u64),
    /// Bytes read from each socket before the data plane (its FIN accounting).
    pub(super) read: (u64, u64),
}

/// What a flow's end needs, kept while it is on the data plane.
struct OnPlane {
    closing: Closing,
    sess: Session,
    slot: ServerSlot,
    pre: (u64, u64),
    reg: Registered<Rc<ThreadCtx>>,
}

/// Forwards `to` until the flow ends, then counts and logs it. On the ring, this returns at
/// once and the flow goes on without a task.
pub(super) async fn run(ctx: &Rc<ThreadCtx>, closing: Closing, sess: Session, to: ToPlane) {
    let ToPlane {
        client,
        server,
        slot,
        pre,
        read,
    } = to;
    let gen = &closing.gen;
    let fe: &Frontend = &gen.config.frontends[closing.frontend];
    let backend = slot.table().conf.clone();
    let t = FlowTimeouts::new(fe, &backend);
    let info = flow_info(ctx, &closing, &sess, &slot);
    let reg = Registered::new(ctx.clone(), info, Instant::now(), t);
    let plane = OnPlane {
        closing,
        sess,
        slot,
        pre,
        reg,
    };
    if ctx.dataplane.copies_first() && crate::ring::available() {
        let kill = plane.reg.kill.clone();
        let (client, server) = (client.into_fd(), server.into_fd());
        let (dataplane, started) = (ctx.dataplane.clone(), Instant::now());
        let done = Box::new(move |copied| match copied {
            Copied::Done(report) => plane.finish(report),
            // A stream: splice (then, on sockmap, the maps) takes it on, in a task of its own.
            Copied::Graduated(g) => {
                tokio::task::spawn_local(async move {
                    let kill = plane.reg.kill.clone();
                    let report = dataplane.after_ring(g, t, &kill, read, started).await;
                    plane.finish(report);
                });
            }
        });
        crate::ring::start(client, server, &t, &kill, done);
        return;
    }
    let report = ctx
        .dataplane
        .forward(client, server, t, &plane.reg.kill, read)
        .await;
    plane.finish(report);
}

/// The flow as `show sess` and the thread's commands see it.
fn flow_info(ctx: &ThreadCtx, closing: &Closing, sess: &Session, slot: &ServerSlot) -> FlowInfo {
    let gen = &closing.gen;
    let fe: &Frontend = &gen.config.frontends[closing.frontend];
    let backend = &slot.table().conf;
    FlowInfo {
        id: 0,
        thread: ctx.thread,
        frontend: closing.frontend,
        backend: (backend.id as usize).saturating_sub(1),
        server: slot.index(),
        server_uid: slot.counters().uid,
        backup: slot.is_backup(),
        generation: gen.number,
        frontend_name: Arc::from(fe.name.as_str()),
        backend_name: Arc::from(backend.name.as_str()),
        server_name: Arc::from(slot.name()),
        client: sess.src(),
        age: Duration::ZERO,
    }
}

impl OnPlane {
    /// The flow ended with `report`: it leaves its thread's registry, its bytes are counted
    /// (server, frontend, tracked stick-table entries), and it is logged.
    fn finish(self, report: FlowReport) {
        let Self {
            mut closing,
            sess,
            slot,
            pre,
            reg,
        } = self;
        let killer = reg.killer();
        drop(reg);
        let (gen, frontend) = (closing.gen.clone(), closing.frontend);
        let (bytes_in, bytes_out) = (report.bytes_in + pre.0, report.bytes_out + pre.1);
        sess.flow_bytes(bytes_in, bytes_out);
        count_bytes(&gen, frontend, Some(&slot), (bytes_in, bytes_out));
        log::debug!(
            "{} {}/{}: {:?}, {bytes_in} bytes in, {bytes_out} bytes out{}",
            sess.src(),
            slot.table().conf.name,
            slot.name(),
            report.end,
            if report.spliced_in_kernel {
                " (sockmap)"
            } else {
                " (splice)"
            }
        );
        let served = &mut closing.served;
        served.ending = Ending::Flow(report.end, killer);
        if report.end == FlowEnd::HandedOff {
            // The process that took it logs the session at its end, with all its bytes.
            served.log = LogAs::Nothing;
        }
        served.bytes_in = bytes_in;
        served.bytes_out = bytes_out;
        // Kept until the log line is written (see `Closing::log`).
        served.slot = Some(slot);
        served.note_session(&gen, frontend, &sess);
        // Its tracked entries (`conn_cur`) are let go of before the line, as before.
        drop(sess);
        closing.log();
    }
}
