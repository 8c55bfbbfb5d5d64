//! A flow the old process handed over at a binary upgrade (`_getflows`): counted on this thread
//! as one of its own sessions (the frontend's `scur`, the backend's, its server's `cur` when the
//! server still exists and takes it), served on this process's data plane from where the old
//! one stopped, and logged at its end as one session, with its bytes since the first accept
//! and its `Tt` from then (`Tw` and `Tc` are unknown here: -1). A flow in the old process's
//! kernel maps is served from those maps, in place (`dataplane::sockmap::adopt`).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::unix::AsyncFd;

use super::ctx::ThreadCtx;
use super::permit::ConnPermit;
use super::serve::run_registered;
use super::served::{count_bytes, log_session, LogAs, Served};

use crate::conn_io;
use crate::dataplane::sockmap::adopt::{KernelFlow, OldMaps};
use crate::dataplane::{Dataplane, FlowEnd, FlowReport, KillSwitch, Sock};
use crate::flows::{Adoption, FlowInfo, HandedFlow};
use crate::generation::Generation;
use crate::logging::{self, tcplog::Ending};
use crate::table::Held;

/// How long the old process's unsent bytes may take to go out (they were due already).
const UNSENT_WRITE: Duration = Duration::from_secs(10);

/// Serves a handed-over flow to its end.
pub(super) async fn adopt(a: Adoption, ctx: Rc<ThreadCtx>) {
    let Adoption {
        flow,
        kernel,
        client,
        server,
        generation,
    } = a;
    let socks = match kernel {
        // Never on the reactor: the data the kernel forwards would wake this thread.
        Some((k, old)) => Socks::Kernel(client, server, k, old),
        None => match (
            crate::dataplane::async_fd(client),
            crate::dataplane::async_fd(server),
        ) {
            (Ok(c), Ok(s)) => Socks::Reactor(c, s),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!("adopted flow of {}: {e}; closing it", flow.client);
                return;
            }
        },
    };
    let found = ctx.generation(generation).and_then(|gen| {
        let fe = gen
            .config
            .frontends
            .iter()
            .position(|f| f.name == flow.frontend)?;
        let b = gen
            .config
            .backends
            .iter()
            .position(|b| b.name == flow.backend)?;
        Some((gen, fe, b))
    });
    let Some((gen, frontend, backend)) = found else {
        // Matched when it was taken; a reload since may have removed the names. Served on,
        // uncounted, rather than lost.
        log::warn!(
            "adopted flow of {}: frontend '{}' or backend '{}' is gone; forwarding it uncounted",
            flow.client,
            flow.frontend,
            flow.backend
        );
        if write_unsent(&flow, &socks).await.is_ok() {
            let _ = forward(&ctx, socks, &flow, &KillSwitch::default()).await;
        }
        return;
    };
    serve_adopted(&gen, frontend, backend, flow, socks, &ctx).await;
}

/// An adopted flow's sockets: on the thread's reactor, or in the old process's kernel maps.
enum Socks {
    Reactor(AsyncFd<OwnedFd>, AsyncFd<OwnedFd>),
    Kernel(OwnedFd, OwnedFd, KernelFlow, Arc<OldMaps>),
}

impl Socks {
    fn fds(&self) -> (&OwnedFd, &OwnedFd) {
        match self {
            Self::Reactor(c, s) => (c.get_ref(), s.get_ref()),
            Self::Kernel(c, s, ..) => (c, s),
        }
    }
}

/// Forwards an adopted flow on from where the old process stopped; the report counts this
/// process's part.
async fn forward(
    ctx: &ThreadCtx,
    socks: Socks,
    flow: &HandedFlow,
    kill: &KillSwitch,
) -> FlowReport {
    match socks {
        Socks::Reactor(c, s) => {
            ctx.dataplane
                .forward(
                    Sock::registered(c),
                    Sock::registered(s),
                    flow.timeouts,
                    kill,
                    flow.bytes,
                )
                .await
        }
        Socks::Kernel(c, s, k, old) => match &ctx.dataplane {
            Dataplane::Sockmap(maps) => {
                crate::dataplane::sockmap::adopt::serve(maps, &old, k, (c, s), flow.timeouts, kill)
                    .await
            }
            // Taken only by a process that runs the maps (`adopt::available`).
            Dataplane::Splice => {
                log::warn!(
                    "adopted kernel flow of {}: this thread runs no in-kernel plane; closing it",
                    flow.client
                );
                FlowReport::local_error()
            }
        },
    }
}

/// The adopted flow's counts, its forwarding and its log line.
async fn serve_adopted(
    gen: &Arc<Generation>,
    frontend: usize,
    backend: usize,
    flow: HandedFlow,
    socks: Socks,
    ctx: &ThreadCtx,
) {
    let accepted = Instant::now()
        .checked_sub(flow.age)
        .unwrap_or_else(Instant::now);
    let accepted_at = logging::time::local(
        SystemTime::now()
            .checked_sub(flow.age)
            .unwrap_or_else(SystemTime::now),
    );
    let permit = ConnPermit::count(gen, frontend, None, super::spread::adopted(ctx.thread));
    // Its fds counted as an accepted connection's, when the budget has them: the sockets are
    // here already, so a full budget does not turn the flow away.
    let budget = crate::fd_budget::process();
    let _fds = budget.try_take(
        crate::fd_budget::CONNECTION_FDS,
        crate::fd_budget::Use::Connection,
    );
    let table = &gen.backends[backend];
    let snap = table.snapshot();
    let index = snap.servers.iter().position(|s| s.conf.name == flow.server);
    // Counted in the server's `cur` when it still exists and takes it (up, below its
    // maxconn); else under the backend only.
    let slot = index
        .and_then(|i| table.try_acquire_server(i, false))
        .map(Held::Server);
    let _be_session = table.enter();
    let mut served = Served::new(flow.client);
    served.backend = Some(backend);
    served.server = index.map(|i| (i, Arc::from(flow.server.as_str())));
    let (client, server) = socks.fds();
    served.local = local_addr(client);
    served.server_addr = socket2::SockRef::from(server)
        .peer_addr()
        .ok()
        .and_then(|a| a.as_socket());
    served.bytes_in = flow.bytes.0;
    served.bytes_out = flow.bytes.1;
    if let Err(end) = write_unsent(&flow, &socks).await {
        served.ending = Ending::Flow(end, logging::tcplog::Killer::Admin);
        drop(slot);
        log_session(gen, frontend, served, permit, (accepted, accepted_at));
        return;
    }
    let info = FlowInfo {
        id: 0,
        thread: ctx.thread,
        frontend,
        backend,
        server: index.unwrap_or(usize::MAX),
        server_uid: index.map_or(u64::MAX, |i| snap.servers[i].counters.uid),
        backup: index.is_some_and(|i| snap.servers[i].conf.backup),
        generation: gen.number,
        frontend_name: Arc::from(flow.frontend.as_str()),
        backend_name: Arc::from(flow.backend.as_str()),
        server_name: Arc::from(flow.server.as_str()),
        client: flow.client,
        age: Duration::ZERO,
    };
    drop(snap);
    let (report, killer) = run_registered(ctx, info, (accepted, flow.timeouts), |kill| {
        let flow = &flow;
        async move { forward(ctx, socks, flow, &kill).await }
    })
    .await;
    // This process's part only: the old one counted its own.
    count_bytes(
        gen,
        frontend,
        slot.as_ref(),
        (report.bytes_in, report.bytes_out),
    );
    served.bytes_in += report.bytes_in;
    served.bytes_out += report.bytes_out;
    served.ending = Ending::Flow(report.end, killer);
    if report.end == FlowEnd::HandedOff {
        served.log = LogAs::Nothing;
    }
    served.slot = slot;
    log::debug!(
        "adopted flow of {} ended: {:?}, {} bytes in, {} bytes out in all",
        flow.client,
        report.end,
        served.bytes_in,
        served.bytes_out
    );
    log_session(gen, frontend, served, permit, (accepted, accepted_at));
}

/// Writes what the old process had read and not yet written, each side's before anything else.
async fn write_unsent(flow: &HandedFlow, socks: &Socks) -> Result<(), FlowEnd> {
    // A kernel flow has none (its record is refused otherwise).
    let Socks::Reactor(client, server) = socks else {
        return Ok(());
    };
    let deadline = Some(Instant::now() + UNSENT_WRITE);
    if !flow.unsent.0.is_empty() {
        conn_io::write_all(server, &flow.unsent.0, deadline)
            .await
            .map_err(|_| FlowEnd::ServerReset)?;
    }
    if !flow.unsent.1.is_empty() {
        conn_io::write_all(client, &flow.unsent.1, deadline)
            .await
            .map_err(|_| FlowEnd::ClientReset)?;
    }
    Ok(())
}

fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    socket2::SockRef::from(fd)
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
}
