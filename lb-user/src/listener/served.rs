//! What serving a connection leaves for its log line, and the line itself (`option tcplog`,
//! `log-format`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::connect::ConnectTries;
use super::permit::ConnPermit;

use crate::config::Frontend;
use crate::dataplane::FlowEnd;
use crate::fd_budget::FdLease;
use crate::generation::Generation;
use crate::log_format::{Data, LogFormat};
use crate::logging::{
    self,
    tcplog::{Ending, Killer},
    time::{local, LocalTime},
};
use crate::session::Session;
use crate::table::Held;

/// What serving a connection leaves for its log line.
pub(super) struct Served {
    /// How the connection is logged.
    pub(super) log: LogAs,
    /// `%ci:%cp`: the client (a PROXY header's address when one came).
    pub(super) client: SocketAddr,
    /// `%b`: the backend chosen; `None` = the frontend's own name, as HAProxy logs a connection
    /// closed before a backend was chosen.
    pub(super) backend: Option<usize>,
    pub(super) server: Option<(usize, Arc<str>)>,
    pub(super) tw: Option<u64>,
    pub(super) tc: Option<u64>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) ending: Ending,
    pub(super) tries: ConnectTries,
    pub(super) backend_queue: u64,
    /// The server slot (or the backend's count, without a server), held until the line is
    /// logged.
    pub(super) slot: Option<Held>,
    /// `%fi:%fp`: what the client connected to (a PROXY header's destination when one came).
    pub(super) local: Option<SocketAddr>,
    /// `%si:%sp`: the server connected to.
    pub(super) server_addr: Option<SocketAddr>,
    /// `%bi:%bp`: lb's end of the server connection (read only when the format prints it).
    pub(super) backend_src: Option<SocketAddr>,
    /// `%rt`: the session's number in the process.
    pub(super) counter: u64,
    /// What a `log-format` reads of the session at its end; `None` without one (boxed: it
    /// is kept while the flow lasts, and most frontends have none).
    pub(super) noted: Option<Box<Noted>>,
    /// The client's TLS version and cipher (`%sslv`, `%sslc`), on a TLS bind.
    pub(super) tls: Option<(&'static str, &'static str)>,
}

/// What a `log-format` line reads of a session at its end.
pub(super) struct Noted {
    /// `%hr`, `%hrl`: the session's capture slots.
    captures: Vec<Option<Vec<u8>>>,
    /// The values of the format's `%[...]` expressions.
    samples: Vec<Option<Vec<u8>>>,
}

/// How a served connection is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LogAs {
    /// The frontend's line (`option tcplog`).
    Session,
    /// HAProxy's line for a connection that never became a session (bad PROXY header).
    Embryonic(&'static str),
    /// No line: closed by `tcp-request connection|session` rules (HAProxy logs nothing).
    Nothing,
}

impl Served {
    /// Whether the session is logged as an error (HAProxy's `strm_log`): it ended on an
    /// error (its termination state starts with neither `-` nor `L`), was redispatched, or
    /// ended normally after retries. `option dontlog-normal` logs only these,
    /// `option log-separate-errors` at `err`.
    pub(super) fn is_error(&self) -> bool {
        let first = self.ending.code().as_bytes()[0];
        self.tries.redispatched
            || !matches!(first, b'-' | b'L')
            || (first == b'-' && self.tries.retries > 0)
    }

    pub(super) fn new(client: SocketAddr) -> Self {
        Self {
            log: LogAs::Session,
            client,
            backend: None,
            server: None,
            tw: None,
            tc: None,
            bytes_in: 0,
            bytes_out: 0,
            ending: Ending::NoServer,
            tries: ConnectTries::default(),
            backend_queue: 0,
            slot: None,
            local: None,
            server_addr: None,
            backend_src: None,
            counter: logging::next_session_number(),
            noted: None,
            tls: None,
        }
    }

    /// Keeps what the log line reads of the session at its end: its destination (after a
    /// PROXY header), its captures, and the values of the `log-format`'s `%[...]`
    /// expressions.
    pub(super) fn note_session(&mut self, gen: &Generation, frontend: usize, sess: &Session) {
        self.local = Some(sess.dst());
        let format = gen.logs.frontend(frontend).and_then(|l| l.format.clone());
        if let Some(f) = format.as_deref() {
            self.noted = Some(Box::new(Noted {
                captures: sess.captures().to_vec(),
                samples: sess.log_samples(f),
            }));
        }
    }
}

/// What a connection's end needs besides its flow: what serving it left for its log line, its
/// `maxconn` count and its share of the fd budget, both held until it is logged.
pub(super) struct Closing {
    pub(super) gen: Arc<Generation>,
    pub(super) frontend: usize,
    pub(super) served: Served,
    pub(super) permit: ConnPermit,
    /// When it was accepted (its local time is worked out for its log line only).
    pub(super) accepted: (Instant, SystemTime),
    /// The connection's own peer (the line of a bad PROXY header names it).
    pub(super) peer: SocketAddr,
    /// Its share of the fd budget, held until its sockets are closed.
    pub(super) fds: FdLease,
}

impl Closing {
    /// `option logasap`: logs the session now that its server connection is established
    /// (HAProxy's `sess_establish`), with its state so far (`--`, `%Tt` up to now, the bytes
    /// passed on so far, each with a `+`); nothing is logged at its end then. With `option
    /// dontlog-normal` a session that went well so far is left for its end, where it is
    /// logged only if it ended in error (as HAProxy, whose end-of-stream log still waits).
    pub(super) fn log_established(&mut self, sess: &Session) {
        let gen = self.gen.clone();
        let Some(log) = gen
            .logs
            .frontend(self.frontend)
            .filter(|l| l.enabled() && l.logasap)
        else {
            return;
        };
        let Some(format) = log
            .format
            .as_ref()
            .filter(|_| self.served.log == LogAs::Session)
        else {
            return;
        };
        self.served.ending = Ending::Flow(FlowEnd::Closed, Killer::Admin);
        let Some(level) = session_level(log, &self.served) else {
            return;
        };
        self.served.note_session(&gen, self.frontend, sess);
        let count = log.log_count.fetch_add(1, Ordering::Relaxed);
        let accepted = (self.accepted.0, local(self.accepted.1));
        let line = session_line(&gen, self.frontend, &self.served, accepted, (format, count));
        log.send(level, &line);
        self.served.log = LogAs::Nothing;
    }

    /// Logs the connection the way its frontend asks (`option tcplog`, `log-format`, or
    /// HAProxy's line for a bad PROXY header), then lets go of its counts.
    pub(super) fn log(self) {
        let Self {
            gen,
            frontend,
            served,
            permit,
            accepted,
            peer,
            fds: _fds,
        } = self;
        let Some(log) = gen.logs.frontend(frontend).filter(|l| l.enabled()) else {
            return;
        };
        if let LogAs::Embryonic(msg) = served.log {
            // HAProxy: with `option dontlognull`, a connection closed before sending anything.
            let empty = [crate::session::PRX_EMPTY, crate::tls::accept::SSL_EMPTY];
            if !(log.dontlognull && empty.contains(&msg)) {
                let fe = &gen.config.frontends[frontend];
                let bind = crate::session::bind_of(&gen, frontend, served.client)
                    .or_else(|| local_bind(&gen, frontend))
                    .map_or_else(|| "1".to_owned(), |b| bind_label(fe, b));
                let line = logging::tcplog::embryonic_line(
                    &peer,
                    &local(accepted.1),
                    &fe.name,
                    &bind,
                    msg,
                );
                // An anomaly that made no session: `err` with `option log-separate-errors`.
                let level = if log.log_separate_errors {
                    logging::ERR
                } else {
                    logging::INFO
                };
                log.send(level, &line);
            }
            return;
        }
        log_session(
            &gen,
            frontend,
            served,
            permit,
            (accepted.0, local(accepted.1)),
        );
    }
}

pub(super) fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Logs a served session in its frontend's format (`option tcplog`, `log-format`), unless it
/// is not to be logged. `served` holds the server slot and `permit` the connection until the
/// line is drawn, so %ac, %fc, %bc and %sc count this connection, as HAProxy's do when it logs
/// at the end of the session. Both are released before the line leaves, so whoever reads it
/// sees the counters without this connection.
pub(super) fn log_session(
    gen: &Generation,
    frontend: usize,
    served: Served,
    permit: ConnPermit,
    accepted: (Instant, LocalTime),
) {
    let log = gen.logs.frontend(frontend).filter(|l| l.enabled());
    let Some(log) = log else {
        return;
    };
    let Some(format) = log.format.as_ref().filter(|_| served.log != LogAs::Nothing) else {
        return;
    };
    if log.dontlognull && served.bytes_in == 0 {
        return;
    }
    let Some(level) = session_level(log, &served) else {
        return;
    };
    let count = log.log_count.fetch_add(1, Ordering::Relaxed);
    let line = session_line(gen, frontend, &served, accepted, (format, count));
    drop(served);
    drop(permit);
    log.send(level, &line);
}

/// The severity of a session's line, `None` when it is not logged (`option dontlog-normal`
/// and it went well); `err` for one that went wrong with `option log-separate-errors`.
fn session_level(log: &logging::FrontendLog, served: &Served) -> Option<u8> {
    let error = served.is_error();
    if log.dontlog_normal && !error {
        return None;
    }
    Some(if error && log.log_separate_errors {
        logging::ERR
    } else {
        logging::INFO
    })
}

/// Counts a flow's bytes (client -> server, server -> client) in its server's (or, without
/// one, its backend's) and its frontend's statistics (`bin`, `bout`).
pub(super) fn count_bytes(
    gen: &Generation,
    frontend: usize,
    held: Option<&Held>,
    (bytes_in, bytes_out): (u64, u64),
) {
    if let Some(h) = held {
        h.count_bytes(bytes_in, bytes_out);
    }
    let f = &gen.fe_stats[frontend];
    f.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
    f.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
}

/// A frontend's only bind, when it has one (to name it in a log line).
pub(super) fn local_bind(gen: &Generation, frontend: usize) -> Option<usize> {
    (gen.config.frontends[frontend].binds.len() == 1).then_some(0)
}

/// A bind as HAProxy names it in logs: its `name`, else its number in the frontend from 1.
pub(super) fn bind_label(fe: &Frontend, bind: usize) -> String {
    fe.binds[bind]
        .name
        .clone()
        .unwrap_or_else(|| (bind + 1).to_string())
}

/// The line of a served connection in `format` (`option tcplog` or `log-format`), counting it
/// still in `%ac/%fc/%bc/%sc`; `log_count` is the frontend's `%lc`.
pub(super) fn session_line(
    gen: &Generation,
    frontend: usize,
    served: &Served,
    (accepted, accepted_at): (Instant, LocalTime),
    (format, log_count): (&LogFormat, u64),
) -> String {
    let fe = &gen.config.frontends[frontend];
    let (backend_name, beconn, srvconn) = match served.backend {
        Some(b) => {
            let table = &gen.backends[b];
            let snap = table.snapshot();
            let beconn = u64::from(table.load.sessions.cur.load(Ordering::Relaxed));
            let srvconn = served.server.as_ref().map_or(0, |(i, _)| {
                snap.servers[*i].counters.cur.load(Ordering::Relaxed)
            });
            (gen.config.backends[b].name.as_str(), beconn, srvconn)
        }
        None => (fe.name.as_str(), 0, 0),
    };
    let u = u64::from;
    format.render(&Data {
        client: served.client,
        frontend_addr: served.local,
        backend_src: served.backend_src,
        server_addr: served.server_addr,
        accepted: accepted_at.stamp(),
        frontend: &fe.name,
        backend: backend_name,
        server: served.server.as_ref().map(|(_, n)| &**n),
        th: 0,
        tw: served.tw,
        tc: served.tc,
        tt: ms_since(accepted),
        bytes_in: served.bytes_in,
        bytes_out: served.bytes_out,
        term: served.ending.code(),
        // This connection is still counted (its permit is dropped below), as in HAProxy.
        actconn: u(gen.process.conns.load(Ordering::Relaxed)),
        feconn: u(gen.fe_stats[frontend].cur.load(Ordering::Relaxed)),
        beconn,
        srvconn: u(srvconn),
        retries: served.tries.retries,
        redispatched: served.tries.redispatched,
        // lb queues per backend: the position is in %bq.
        srv_queue: 0,
        backend_queue: served.backend_queue,
        counter: served.counter,
        log_count,
        pid: std::process::id(),
        hostname: logging::tcplog::hostname(),
        captures: served.noted.as_ref().map_or(&[], |n| &n.captures),
        samples: served.noted.as_ref().map_or(&[], |n| &n.samples),
        asap: gen.logs.frontend(frontend).is_some_and(|l| l.logasap),
        ssl: served.tls,
    })
}
