//! One connection from accept to its end: rules, server choice, connect, the data plane.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::connect::{
    client_local, connect_transparent, connect_with_retries, OrigDst, Reached, ServerFirst,
};
use super::ctx::{Registered, ThreadCtx};
use super::flowing::{self, ToPlane};
use super::inspect::{decide, drain_unserved, proxy_header, respond, Decided};
use super::permit::ConnPermit;
use super::served::{ms_since, Closing, LogAs, Served};

use crate::config::{Backend, Frontend};
use crate::conn_io;
use crate::dataplane::{sockopt, FlowEnd, FlowReport, FlowTimeouts, KillSwitch, Sock};
use crate::fd_budget::FdLease;
use crate::flows::FlowInfo;
use crate::generation::Generation;
use crate::logging::{
    self,
    tcplog::{Ending, Killer},
};
use crate::session::{self, Session};
use crate::table::{AcquireError, BackendSession, Held, ServerSlot};

/// Serves one client, then logs it the way the frontend asks (`option tcplog`, HAProxy's
/// default `Connect from` line once the session starts, or its line for a bad PROXY header).
/// A flow that copies on the thread's ring is left there: this task ends, and the ring ends
/// the flow and logs it (see [`flowing`]). `fds`: the connection's share of the fd budget,
/// held until its sockets are closed.
pub(super) async fn handle(
    gen: &Arc<Generation>,
    frontend: usize,
    client: OwnedFd,
    (peer, bound): (SocketAddr, SocketAddr),
    ctx: &Rc<ThreadCtx>,
    (permit, fds): (ConnPermit, FdLease),
) {
    let accepted = Instant::now();
    let accepted_at = SystemTime::now();
    let fe: &Frontend = &gen.config.frontends[frontend];
    let log = gen.logs.frontend(frontend).filter(|l| l.enabled());
    let connect_line = |src: &SocketAddr, dst: &SocketAddr| {
        if let Some(log) = log.as_ref().filter(|l| l.format.is_none()) {
            log.send(
                logging::INFO,
                &logging::tcplog::connect_line(src, dst, &fe.name),
            );
        }
    };
    let Some((served, to_plane)) = serve(gen, frontend, client, (peer, bound), &connect_line).await
    else {
        return;
    };
    let closing = Closing {
        gen: gen.clone(),
        frontend,
        served,
        permit,
        accepted: (accepted, accepted_at),
        peer,
        fds,
    };
    match to_plane {
        Some((sess, to)) => {
            let mut closing = closing;
            closing.log_established(&sess);
            flowing::run(ctx, closing, sess, to);
        }
        None => closing.log(),
    }
}

/// Server choice and connect. `None` when the client socket could not even be set up (nothing
/// to log); else what serving it left for its log line, and, when it reached the data plane,
/// the session and the pair to forward.
async fn serve(
    gen: &Arc<Generation>,
    frontend: usize,
    client: OwnedFd,
    (peer, bound): (SocketAddr, SocketAddr),
    connect_line: &dyn Fn(&SocketAddr, &SocketAddr),
) -> Option<(Served, Option<(Box<Session>, ToPlane)>)> {
    let fe: &Frontend = &gen.config.frontends[frontend];
    // Non-blocking from `accept4`, `TCP_NODELAY` (and a bind's `mss`, `tcp-ut`) from the
    // listener: only keepalive, when configured, is set here.
    let setup = sockopt::set_keepalive(client.as_fd(), &fe.keepalive)
        .and_then(|()| client_local(fe, bound, &client));
    let local = match setup {
        Ok(l) => l,
        Err(e) => {
            log::debug!("frontend '{}': client {peer}: {e}", fe.name);
            return None;
        }
    };
    let mut served = Served::new(peer);
    // Boxed at once: the session is moved out of this future whole, to the data plane.
    let accepted = Instant::now();
    let mut sess = match Session::accept(gen.clone(), frontend, peer, local, accepted) {
        Ok(s) => Box::new(s),
        Err(r) => {
            served.log = LogAs::Nothing;
            if r.silent {
                conn_io::silent_drop(client, peer.is_ipv6());
            } else {
                conn_io::reset(client);
            }
            return Some((served, None));
        }
    };
    let tls = session::bind_of(gen, frontend, local)
        .map(|b| &fe.binds[b])
        .and_then(|b| Some((b.tls.as_deref()?, b.accept_proxy)));
    let client = match tls {
        None => client,
        Some(t) => {
            let shim = super::tls_shim::terminate(
                (gen, frontend),
                t,
                client,
                (&mut sess, &mut served),
                accepted,
            );
            match shim.await {
                Some(fd) => fd,
                None => return Some((served, None)),
            }
        }
    };
    let client = Sock::new(client);
    let to = serve_session(gen, frontend, &mut sess, client, &mut served, connect_line).await;
    if let Some(to) = to {
        return Some((served, Some((sess, to))));
    }
    served.note_session(gen, frontend, &sess);
    Some((served, None))
}

/// The session's life after accept up to the data plane: the rules' decision, the server.
/// `None`: it ended before (`served` says why).
async fn serve_session(
    gen: &Arc<Generation>,
    frontend: usize,
    sess: &mut Session,
    client: Sock,
    served: &mut Served,
    connect_line: &dyn Fn(&SocketAddr, &SocketAddr),
) -> Option<ToPlane> {
    let fe: &Frontend = &gen.config.frontends[frontend];
    let Ok(Decided {
        mut client,
        head,
        route,
    }) = decide(sess, client, fe.timeouts.client, served, connect_line).await
    else {
        return None;
    };
    let reached = to_server(gen, frontend, sess, &mut client, (&route, &head), served).await?;
    pass_on(sess, (client, reached), head.len() as u64, served).await
}

/// Waits for a server of the chosen backend (`maxconn`, its queue) and connects to it. `None`:
/// no server, or none connected; the client was closed and `served` says why.
async fn to_server(
    gen: &Arc<Generation>,
    frontend: usize,
    sess: &mut Session,
    client: &mut Sock,
    (route, head): (&session::Route, &[u8]),
    served: &mut Served,
) -> Option<Reached> {
    let fe: &Frontend = &gen.config.frontends[frontend];
    let b = route.backend;
    served.backend = Some(b);
    let src = sess.src();
    let be: &Backend = &gen.config.backends[b];
    let table = &gen.backends[b];
    // Connections ahead of us in the backend queue (lb has one queue per backend).
    served.backend_queue = table.queue_len() as u64;
    let queue_timeout = be.timeouts.queue.or(be.timeouts.connect);
    // Counted on the backend from here, queued or not, to the session's end (the slot holds it
    // once connected).
    let be_session = table.enter();
    let queued_at = Instant::now();
    let direct = route
        .server
        .and_then(|i| table.try_acquire_server(i, route.persist));
    if direct.is_none() && be.transparent {
        served.tw = Some(0);
        let to = (be, be_session);
        return to_original_dst((gen, frontend), sess, client, to, (route, head), served).await;
    }
    let acquired = match direct {
        Some(slot) => Ok(slot),
        // `balance source` hashes the client the rules saw.
        None if be.abortonclose => {
            // Watched only once it waits in the queue (a free server answers at once).
            tokio::select! {
                biased;
                got = table.acquire(src, None, queue_timeout) => got,
                () = conn_io::peer_closed(client) => {
                    served.ending = Ending::ClientQueueAbort;
                    served.tw = Some(ms_since(queued_at));
                    return None;
                }
            }
        }
        None => table.acquire(src, None, queue_timeout).await,
    };
    let slot = match acquired {
        Ok(s) => s,
        Err(e) => {
            served.ending = match e {
                AcquireError::NoServer => Ending::NoServer,
                AcquireError::QueueFull => Ending::QueueFull,
                AcquireError::QueueTimeout => Ending::QueueTimeout,
            };
            if e == AcquireError::QueueTimeout {
                // HAProxy records the time spent in the queue when `timeout queue` strikes.
                served.tw = Some(ms_since(queued_at));
            }
            let what = match e {
                AcquireError::NoServer => "no server available".to_string(),
                other => format!("no server available ({other})"),
            };
            log::warn!(
                "frontend '{}' -> backend '{}': {what}, closing client {src}",
                fe.name,
                be.name
            );
            Box::pin(drain_unserved(client)).await;
            return None;
        }
    };
    served.tw = Some(ms_since(queued_at));
    let connecting = Instant::now();
    // Servers without an address or a port of their own take the client's destination (the
    // PROXY header's, with `accept-proxy`, as in HAProxy).
    let asked = OrigDst::new((sess.dst(), sess.local()), client);
    // The server a connect aborted by the client is logged with (`%s`).
    let first_server = be
        .abortonclose
        .then(|| (slot.index(), crate::interned::name(slot.name())));
    let idle = super::tls_connect::relay_idle(&FlowTimeouts::new(fe, be));
    let first = |slot: &ServerSlot| first_bytes(sess, slot, (head, route), idle);
    let connecting_to = connect_with_retries(
        gen,
        table,
        be,
        (src, &asked),
        slot,
        &first,
        &mut served.tries,
    );
    let Some(connected) = unless_aborted(be, client, connecting_to).await else {
        served.ending = Ending::ClientConnectAbort;
        served.server = first_server;
        return None;
    };
    let mut reached = match connected {
        Ok(r) => r,
        Err(reason) => {
            served.ending = if served.tries.timed_out {
                Ending::ConnectTimeout
            } else {
                Ending::ConnectFailed
            };
            served.server = served.tries.failed_server.take();
            log::warn!(
                "frontend '{}' -> backend '{}': no server available for client {src}: {reason}",
                fe.name,
                be.name
            );
            Box::pin(drain_unserved(client)).await;
            return None;
        }
    };
    if let Held::Server(slot) = &mut reached.held {
        be_session.hold_in(slot);
        let name = crate::interned::name(slot.name());
        sess.server_chosen(slot.index(), &name);
        served.server = Some((slot.index(), name));
    }
    served.tc = Some(ms_since(connecting));
    connected_to(gen, frontend, &reached, served);
    Some(reached)
}

/// What the log line notes of a connection made: where it went, and its local address when
/// the format asks for it (`%bi`, `%bp`).
fn connected_to(gen: &Generation, frontend: usize, reached: &Reached, served: &mut Served) {
    served.server_addr = Some(reached.target);
    let log = gen.logs.frontend(frontend);
    if log.is_some_and(|l| l.format.as_ref().is_some_and(|f| f.needs_backend_src())) {
        served.backend_src = super::tls_connect::server_local(&reached.sock, reached.tls_local);
    }
}

/// Runs a connect; with `option abortonclose`, a client that closes meanwhile aborts it
/// (HAProxy's `back_handle_st_con`: the connect is cancelled, its socket closes without
/// reaching the server when the handshake was not done; dropping the attempt gives its server
/// slot back). `None`: aborted (the caller's ending is [`Ending::ClientConnectAbort`]).
async fn unless_aborted<T>(
    be: &Backend,
    client: &mut Sock,
    connecting: impl std::future::Future<Output = T>,
) -> Option<T> {
    if !be.abortonclose {
        return Some(connecting.await);
    }
    tokio::select! {
        biased;
        c = connecting => Some(c),
        () = conn_io::peer_closed(client) => None,
    }
}

/// A connection of an `option transparent` backend that no rule sent to a server: it goes to
/// the address the client originally asked for, with no server (logged `<NOSRV>`, counted on
/// the backend only, as HAProxy). No PROXY header (a server's), no queue. `None`: not
/// connected; the client was closed and `served` says why.
async fn to_original_dst(
    (gen, frontend): (&Generation, usize),
    sess: &Session,
    client: &mut Sock,
    (be, be_session): (&Backend, BackendSession),
    (route, head): (&session::Route, &[u8]),
    served: &mut Served,
) -> Option<Reached> {
    let src = sess.src();
    let connecting = Instant::now();
    let asked = OrigDst::new((sess.dst(), sess.local()), client);
    let first = head[route.consumed.min(head.len())..].to_vec();
    let connecting_to =
        connect_transparent(be, (src, &asked), (be_session, first), &mut served.tries);
    let reached = match unless_aborted(be, client, connecting_to).await {
        Some(Ok(r)) => r,
        None => {
            served.ending = Ending::ClientConnectAbort;
            return None;
        }
        Some(Err(reason)) => {
            served.ending = if served.tries.timed_out {
                Ending::ConnectTimeout
            } else {
                Ending::ConnectFailed
            };
            log::warn!(
                "backend '{}' (option transparent): client {src}: {reason}",
                be.name
            );
            Box::pin(drain_unserved(client)).await;
            return None;
        }
    };
    served.tc = Some(ms_since(connecting));
    connected_to(gen, frontend, &reached, served);
    Some(reached)
}

/// What the server gets first: its PROXY header, then every byte read for the decision; with
/// `ssl`, its `sni` too (evaluated on those bytes) and the relay's `idle` bound.
fn first_bytes(
    sess: &Session,
    slot: &ServerSlot,
    (head, route): (&[u8], &session::Route),
    idle: Option<std::time::Duration>,
) -> ServerFirst {
    let mut bytes = proxy_header(sess, slot.conf());
    let header = bytes.len();
    let data = &head[route.consumed.min(head.len())..];
    bytes.extend_from_slice(data);
    let tls = &slot.conf().tls;
    let sni = tls
        .sni
        .as_ref()
        .filter(|_| tls.ssl)
        .and_then(|s| sess.server_sni(&s.expr, data));
    ServerFirst {
        bytes,
        header,
        sni,
        idle,
    }
}

/// Writes what the connect left of the server's first bytes and runs the `tcp-response`
/// rules: the pair is then ready for the data plane. `head_len`: how many bytes were read from
/// the client before the data plane. `None`: the flow ended here, `served` says how.
async fn pass_on(
    sess: &mut Session,
    (mut client, reached): (Sock, Reached),
    head_len: u64,
    served: &mut Served,
) -> Option<ToPlane> {
    let Reached {
        held,
        sock: mut server,
        first,
        ..
    } = reached;
    let src = sess.src();
    let be = held.table().conf.clone();
    // The reactor only when there is something left to write (a short send with the connect,
    // or a thread without a ring): a plain flow's server socket never goes on it (nor reads
    // the clock for it).
    let written = match first.rest() {
        Ok([]) => Ok(()),
        Ok(rest) => {
            let write_deadline = be.timeouts.server.map(|t| Instant::now() + t);
            match server.reactor() {
                Ok(s) => conn_io::write_all(s, rest, write_deadline).await,
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        log::debug!(
            "{src} {}/{}: writing the first bytes: {e}",
            be.name,
            held.name()
        );
        served.ending = Ending::Flow(FlowEnd::ServerReset, Killer::Admin);
        conn_io::reset(client.into_fd());
        served.slot = Some(held);
        return None;
    }
    // Bytes passed on before the data plane (for the counters), and bytes read from each
    // socket (for the data plane's FIN accounting).
    let (mut pre_in, mut pre_out) = (served.bytes_in, 0u64);
    let mut read = (head_len, 0u64);
    if sess.has_response_rules() {
        let responded = match (client.reactor(), server.reactor()) {
            (Ok(c), Ok(s)) => respond(sess, c, s, be.nolinger).await,
            _ => Err((Ending::Flow(FlowEnd::LocalError, Killer::Admin), 0, 0)),
        };
        match responded {
            Ok((up, down)) => {
                pre_in += up;
                pre_out += down;
                read = (read.0 + up, down);
            }
            Err((ending, up, down)) => {
                served.ending = ending;
                served.bytes_in = pre_in + up;
                served.bytes_out = down;
                served.slot = Some(held);
                return None;
            }
        }
    }
    Some(ToPlane {
        client,
        server,
        held,
        pre: (pre_in, pre_out),
        read,
    })
}

/// Runs `forward` (given the flow's kill switch) as a flow described by `info`, registered on
/// its thread (`show sess`, kills) while it runs.
pub(super) async fn run_registered<F: std::future::Future<Output = FlowReport>>(
    ctx: &ThreadCtx,
    info: FlowInfo,
    (started, t): (Instant, FlowTimeouts),
    forward: impl FnOnce(Rc<KillSwitch>) -> F,
) -> (FlowReport, Killer) {
    let reg = Registered::new(ctx, info, started, crate::interned::timeouts(t));
    let report: FlowReport = forward(reg.kill.clone()).await;
    (report, reg.killer())
}
