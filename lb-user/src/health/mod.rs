//! Health checks: a small pool of checker threads (each a tokio `current_thread` runtime, every
//! checked server a task, plus one for its agent check). A checker only probes and reports each
//! result to the state writer (`crate::state`), which runs HAProxy's state machine and
//! publishes it. From the server's published state the checker reads where to check (its
//! current address — from the configuration, DNS or `set server addr` — with `addr`/`port` on
//! top), whether to check (not in maintenance of either kind, not `disable health`), and when
//! (`inter`/`fastinter`/`downinter` from the rise/fall counter). The writer wakes it at once
//! when the address changes or the server leaves maintenance.

pub mod agent;
pub mod conn;
pub mod external;
pub mod http;
pub mod ldap;
pub mod probe;

#[cfg(test)]
mod config_tests;

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::config::{Backend, CheckKind, Config, ProxyVersion, Server};
use crate::generation::Generation;
use crate::passive::Event;
use crate::server::CheckPlace;
use crate::state::{self, By, Change, CheckReport};
use crate::table::{BackendTable, CheckResult, ServerCounters, ServerState};
use crate::tls_client::TlsClient;
use external::ExternalArgs;
use probe::{Outcome, Probe, Target, Who};

/// Checked servers per checker thread before a second thread is started.
const SERVERS_PER_THREAD: usize = 512;
/// At most this many checker threads: checks wait on the network, not on CPU.
const MAX_THREADS: usize = 2;

/// Errors of starting the checkers.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The OS refused a thread.
    #[error("cannot start health-check thread {index}: {source}")]
    Thread {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// The running checker threads of one generation.
#[derive(Debug)]
pub struct Checkers {
    /// Servers being checked.
    pub checked: usize,
    /// Checker threads started.
    pub threads: usize,
    /// Dropping it stops the checker threads (their runtimes end, and with them every check):
    /// a reload replaces the checkers of the old generation this way.
    _stop: tokio::sync::watch::Sender<()>,
}

/// One server, as both of its checkers (regular and agent) see it.
struct Srv {
    gen: Arc<Generation>,
    backend: usize,
    server: usize,
    table: Arc<BackendTable>,
    counters: Arc<ServerCounters>,
    conf: Arc<Server>,
    be: Arc<Backend>,
}

impl Srv {
    /// The server's state as last published.
    fn state(&self) -> Option<ServerState> {
        self.table
            .snapshot()
            .servers
            .get(self.server)
            .map(|e| e.state)
    }

    /// Hands a change to the state writer.
    fn report(&self, change: Change, by: &By) {
        if let Err(e) = state::apply(&self.gen, self.backend, self.server, change, by) {
            log::debug!(
                "server {}/{}: change not applied: {e}",
                self.be.name,
                self.conf.name
            );
        }
    }
}

/// The regular check (`check`) of one server.
struct CheckJob {
    probe: Arc<Probe>,
    /// The server's check TLS, when a connect uses it (built once, at start).
    tls: Option<Result<Arc<TlsClient>, Arc<str>>>,
    /// The names `uri-lf` may use.
    who: Arc<Who>,
    /// `option external-check`.
    external: bool,
    /// Delay of the first check (staggered across servers).
    first: Duration,
    spread: u32,
    /// Observed errors (`observe layer4`), when enabled.
    events: Option<UnboundedReceiver<Event>>,
}

/// One server's checkers: its regular check, its agent check, or both.
struct Job {
    srv: Srv,
    check: Option<CheckJob>,
    agent: Option<agent::AgentJob>,
}

/// Starts the checkers of every checked server of `gen` (regular and agent checks), from the
/// state the generation carries (a reload does not reset them to "UP, one failure from DOWN").
pub fn start(gen: &Arc<Generation>) -> Result<Checkers, HealthError> {
    let config = gen.config.clone();
    let mut jobs = Vec::new();
    for (bi, be) in config.backends.iter().enumerate() {
        let table = gen.backends[bi].clone();
        let probe = Arc::new(Probe::compile(&be.check));
        let snap = table.snapshot();
        for (si, srv) in be.servers.iter().enumerate() {
            let agent = srv.health.agent.enabled.then(|| agent::AgentJob {
                send: srv.health.agent.send.clone(),
                first: Duration::ZERO,
                spread: config.global.spread_checks,
            });
            let check = srv.health.check.then(|| CheckJob {
                tls: (srv.health.tls.enabled || probe.wants_tls()).then(|| {
                    TlsClient::for_checks(srv).map(Arc::new).map_err(|e| {
                        log::error!("server {}/{}: TLS check: {e}", be.name, srv.name);
                        Arc::from(e.as_str())
                    })
                }),
                who: Arc::new(Who {
                    server: srv.name.clone(),
                    server_id: srv.id,
                    backend: be.name.clone(),
                    backend_id: be.id,
                }),
                probe: probe.clone(),
                external: be.check == CheckKind::External,
                first: Duration::ZERO,
                spread: config.global.spread_checks,
                events: gen.passive.subscribe(bi, si),
            });
            if check.is_none() && agent.is_none() {
                continue;
            }
            jobs.push(Job {
                srv: Srv {
                    gen: gen.clone(),
                    backend: bi,
                    server: si,
                    table: table.clone(),
                    counters: snap.servers[si].counters.clone(),
                    conf: snap.servers[si].conf.clone(),
                    be: table.conf.clone(),
                },
                check,
                agent,
            });
        }
    }
    stagger(&mut jobs);
    let n = jobs.len();
    let threads = n
        .div_ceil(SERVERS_PER_THREAD)
        .clamp(usize::from(n > 0), MAX_THREADS);
    let mut per_thread: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, j) in jobs.into_iter().enumerate() {
        per_thread[i % threads].push(j);
    }
    let (stop, stopped) = tokio::sync::watch::channel(());
    for (index, jobs) in per_thread.into_iter().enumerate() {
        let stopped = stopped.clone();
        crate::control::spawn_local_thread(
            &format!("lb-check-{index}"),
            "health checks",
            move || run_jobs(jobs, stopped),
        )
        .map_err(|source| HealthError::Thread { index, source })?;
    }
    if n > 0 {
        log::info!("health checks: {n} servers checked by {threads} thread(s)");
    }
    Ok(Checkers {
        checked: n,
        threads,
        _stop: stop,
    })
}

/// Staggers the first checks over the smallest interval, as HAProxy does.
fn stagger(jobs: &mut [Job]) {
    let n = jobs.len();
    let min_inter = jobs
        .iter()
        .flat_map(|j| {
            let h = &j.srv.conf.health;
            [
                j.check.as_ref().map(|_| crate::table::fastinter(h)),
                j.agent.as_ref().map(|_| agent::interval(&j.srv.conf)),
            ]
        })
        .flatten()
        .min()
        .unwrap_or_default();
    for (i, j) in jobs.iter_mut().enumerate() {
        let first = min_inter * i as u32 / n.max(1) as u32;
        if let Some(c) = j.check.as_mut() {
            c.first = first;
        }
        if let Some(a) = j.agent.as_mut() {
            a.first = first;
        }
    }
}

/// A checker thread's work: every check a task, until its [`Checkers`] is dropped.
async fn run_jobs(jobs: Vec<Job>, mut stopped: tokio::sync::watch::Receiver<()>) {
    for job in jobs {
        let srv = Rc::new(job.srv);
        if let Some(check) = job.check {
            tokio::task::spawn_local(check.run(srv.clone()));
        }
        if let Some(a) = job.agent {
            tokio::task::spawn_local(agent::run(srv, a));
        }
    }
    // Returns (with an error) once the sender is dropped.
    while stopped.changed().await.is_ok() {}
}

/// Where and how long to check, with interval `inter`: `addr`/`port` if given, else the
/// server's current address (`server`), which DNS and `set server addr` move.
/// The check connects from `conf`'s `source` (its own, else its backend's), as its traffic,
/// taking a port of its source range from the server's pool (in `counters`) when it has one.
fn target(
    be: &Backend,
    (conf, server, counters): (&Server, SocketAddr, &ServerCounters),
    inter: Duration,
    addr: Option<IpAddr>,
    port: Option<u16>,
) -> Target {
    let addr = SocketAddr::new(addr.unwrap_or(server.ip()), port.unwrap_or(server.port()));
    let (connect_timeout, read_timeout) = match be.timeouts.check {
        Some(check) => (be.timeouts.connect.unwrap_or(inter).min(inter), Some(check)),
        None => (inter, None),
    };
    Target {
        source: conf.source.clone(),
        source_ports: counters.source_ports(conf),
        ..Target::plain(addr, connect_timeout, read_timeout, inter)
    }
}

/// The PROXY header a server's health checks send on their default connect: with
/// `check-send-proxy`, or when the server sends one to its traffic and neither `port` nor
/// `addr` sends the checks elsewhere (HAProxy's rule). The server's version, else v1.
fn check_proxy(conf: &Server) -> (Option<ProxyVersion>, ProxyVersion) {
    let version = conf.proxy.version.unwrap_or(ProxyVersion::V1);
    let same_place = conf.check_port.is_none() && conf.health.addr.is_none();
    let sends = conf.proxy.check || (conf.proxy.version.is_some() && same_place);
    (sends.then_some(version), version)
}

/// argv/env facts of an external check: a `listen` (a frontend of the same name using this
/// backend) gives its first bind address, a plain backend `NOT_USED`; the server's address is
/// its current one, or where its checks go (`place`).
fn external_args(
    config: &Config,
    backend: usize,
    (srv, place): (&Server, CheckPlace),
    addr: SocketAddr,
) -> ExternalArgs {
    let be = &config.backends[backend];
    let bind = config
        .frontends
        .iter()
        .find(|f| f.own_backend == Some(backend) && f.name == be.name)
        .and_then(|f| f.binds.first());
    let (proxy_addr, proxy_port) = bind.map_or_else(
        || ("NOT_USED".to_owned(), "NOT_USED".to_owned()),
        |b| (b.addr.ip().to_string(), b.addr.port().to_string()),
    );
    ExternalArgs {
        command: be.external_check.command.clone().unwrap_or_default(),
        path: be.external_check.path.clone().unwrap_or_default(),
        proxy_addr,
        proxy_port,
        proxy_name: be.name.clone(),
        proxy_id: be.id,
        server_name: srv.name.clone(),
        server_id: srv.id,
        server_addr: place.addr.unwrap_or(addr.ip()).to_string(),
        server_port: place.port.unwrap_or(addr.port()),
        server_maxconn: srv.maxconn,
    }
}

/// `t` with `spread-checks` jitter: up to ±`spread` %.
fn spread(t: Duration, spread: u32) -> Duration {
    if spread == 0 {
        return t;
    }
    let pct = fastrand::i64(-i64::from(spread)..=i64::from(spread));
    let ms = t.as_millis() as i64;
    Duration::from_millis((ms + ms * pct / 100).max(1) as u64)
}

/// A probe's outcome as the state writer takes it.
fn report(o: &Outcome) -> CheckReport {
    CheckReport {
        passed: o.passed,
        result: CheckResult::from_name(o.result).unwrap_or(CheckResult::SockErr),
        code: o.code,
        info: o.info.clone(),
        duration: o.duration,
    }
}

/// Waits until `deadline`, or until the writer asks for a check now (`kick`).
async fn wait(deadline: Instant, kick: &mut tokio::sync::watch::Receiver<u64>) {
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {}
        r = kick.changed() => {
            if r.is_err() {
                // The writer's side is gone with the server: wait out the turn.
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
}

/// The next observed-error event, or never without `observe layer4`.
async fn next_event(events: &mut Option<UnboundedReceiver<Event>>) -> Option<Event> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl CheckJob {
    async fn run(mut self, srv: Rc<Srv>) {
        let conf = srv.conf.clone();
        let mut kick = srv.counters.check_now.subscribe();
        let mut next = Instant::now() + self.first;
        loop {
            tokio::select! {
                () = wait(next, &mut kick) => {}
                ev = next_event(&mut self.events) => {
                    let Some(Event::ErrorLimit(action)) = ev else {
                        self.events = None;
                        continue;
                    };
                    let o = Outcome::new(false, "L4CON", format!(
                        "{} consecutive connection errors (observe layer4)",
                        conf.health.error_limit
                    ));
                    srv.report(Change::CheckError(action, report(&o)), &By::Check);
                    // Every on-error action checks again at fastinter.
                    next = next.min(Instant::now() + state::fast_interval(&conf));
                    continue;
                }
            }
            let Some(st) = srv.state() else {
                return;
            };
            // HAProxy sends no checks to a server in maintenance (of either kind: a name that
            // does not resolve has no address to check), nor after `disable health`.
            if !st.in_maint() && st.check_enabled {
                let o = self.probe_once(&srv, st).await;
                srv.report(Change::Check(report(&o)), &By::Check);
            }
            let st = srv.state().unwrap_or(st);
            next = Instant::now() + spread(state::check_interval(&conf, &st), self.spread);
        }
    }

    /// One check of the server at its current address.
    async fn probe_once(&self, srv: &Srv, st: ServerState) -> Outcome {
        let conf = &srv.conf;
        // `addr` and `port`, or what `set server check-addr|check-port` made of them.
        let place = srv.counters.check_place(conf);
        if self.external {
            let args = external_args(&srv.gen.config, srv.backend, (conf, place), st.addr);
            let cur = srv.counters.cur.load(Ordering::Relaxed);
            let limit = srv.be.timeouts.check.unwrap_or(conf.health.inter);
            external::run(&args, cur, limit).await
        } else {
            let mut t = target(
                &srv.be,
                (conf, st.addr, &srv.counters),
                conf.health.inter,
                place.addr,
                place.port,
            );
            t.tls.clone_from(&self.tls);
            t.check_ssl = conf.health.tls.enabled;
            t.who = self.who.clone();
            t.server_up = st.up;
            (t.send_proxy, t.proxy_version) = check_proxy(conf);
            self.probe.run(&t).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_within_bounds() {
        let t = Duration::from_secs(1);
        assert_eq!(spread(t, 0), t);
        for _ in 0..200 {
            let s = spread(t, 50);
            assert!(s >= Duration::from_millis(500) && s <= Duration::from_millis(1500));
        }
    }

    #[test]
    fn checks_target_the_current_address_with_overrides_on_top() {
        let be = crate::table::testing::backend(crate::config::Balance::RoundRobin, vec![]);
        let now: SocketAddr = "10.0.0.7:3306".parse().unwrap();
        let srv = crate::table::testing::server("s", 1, 1);
        let inter = Duration::from_secs(2);
        let c = ServerCounters::default();
        assert_eq!(target(&be, (&srv, now, &c), inter, None, None).addr, now);
        assert_eq!(
            target(&be, (&srv, now, &c), inter, None, Some(9200)).addr,
            "10.0.0.7:9200".parse().unwrap()
        );
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            target(&be, (&srv, now, &c), inter, Some(other), None).addr,
            "10.0.0.9:3306".parse().unwrap()
        );
    }
}
