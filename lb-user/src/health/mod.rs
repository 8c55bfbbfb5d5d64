//! Health checks: a small pool of checker threads (each a tokio `current_thread` runtime, every
//! checked server a task, plus one for its agent check) runs HAProxy's state machine and
//! publishes into the lock-free server tables; accept loops only read what they publish. Also
//! the passive checks (`observe layer4`) fed by the accept path.

pub mod agent;
pub mod external;
pub mod probe;
pub mod state;

#[cfg(test)]
mod config_tests;

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use crate::config::{Backend, CheckKind, Config, OnError, Server};
use crate::listener::Shared;
use crate::table::{AdminState, BackendTable, CheckInfo, HealthSource, ServerCounters};
use external::ExternalArgs;
use probe::{Outcome, Probe, Target};
use state::{Health, Transition};

/// Checked servers per checker thread before a second thread is started.
const SERVERS_PER_THREAD: usize = 512;
/// At most this many checker threads: checks wait on the network, not on CPU.
const MAX_THREADS: usize = 2;
/// Slow-start weight updates happen at most this often.
const SLOWSTART_STEP: Duration = Duration::from_millis(100);

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

/// What the accept path tells a server's checker (passive checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// `error-limit` consecutive failed connects were observed: apply `on-error`.
    ErrorLimit(OnError),
}

/// Per-server passive-check state, written by the accept path.
#[derive(Debug)]
struct Observed {
    /// `observe layer4` with `check`.
    enabled: bool,
    limit: u32,
    on_error: OnError,
    /// Consecutive failed connects.
    errors: AtomicU32,
    /// The server's checker, once started.
    tx: OnceLock<UnboundedSender<Event>>,
}

/// Passive health checks (`observe layer4`, `error-limit`, `on-error`): the accept path reports
/// each connect result here; after `error-limit` consecutive failures the server's checker
/// applies `on-error`. Costs one load on the accept path for servers that are not observed.
#[derive(Debug)]
pub struct Passive {
    /// `[backend][server]`.
    servers: Vec<Vec<Observed>>,
}

impl Passive {
    /// Passive state for every server of `config`.
    pub fn new(config: &Config) -> Self {
        let servers = config
            .backends
            .iter()
            .map(|b| {
                b.servers
                    .iter()
                    .map(|s| Observed {
                        enabled: s.health.check && s.health.observe_layer4,
                        limit: s.health.error_limit.max(1),
                        on_error: s.health.on_error,
                        errors: AtomicU32::new(0),
                        tx: OnceLock::new(),
                    })
                    .collect()
            })
            .collect();
        Self { servers }
    }

    /// The accept path's report of one connect attempt to `backend`'s `server`.
    pub fn connect_result(&self, backend: usize, server: usize, ok: bool) {
        let Some(o) = self.servers.get(backend).and_then(|b| b.get(server)) else {
            return;
        };
        if !o.enabled {
            return;
        }
        if ok {
            // Relaxed: a counter of consecutive events, no other data depends on it.
            if o.errors.load(Ordering::Relaxed) != 0 {
                o.errors.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = o.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= o.limit {
            o.errors.store(0, Ordering::Relaxed);
            if let Some(tx) = o.tx.get() {
                let _ = tx.send(Event::ErrorLimit(o.on_error));
            }
        }
    }
}

/// The running checker threads (they run as long as the process).
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

/// One server, as both of its checkers (regular and agent) see it: configuration, where they
/// publish, and the state of its UP/DOWN transitions. Both run on the same checker thread and
/// share it through an `Rc`.
struct Srv {
    shared: Arc<Shared>,
    backend: usize,
    server: usize,
    table: Arc<BackendTable>,
    counters: Arc<ServerCounters>,
    conf: Arc<Server>,
    be: Arc<Backend>,
    /// When the server last went DOWN (`downtime`).
    down_since: Cell<Option<Instant>>,
    /// Bumped on every transition: a running slow-start ramp stops when it changes.
    ramp_gen: Cell<u64>,
}

/// The regular check (`check`) of one server.
struct CheckJob {
    probe: Arc<Probe>,
    external: Option<ExternalArgs>,
    target: Target,
    /// Delay of the first check (staggered across servers).
    first: Duration,
    spread: u32,
    events: UnboundedReceiver<Event>,
}

/// One server's checkers: its regular check, its agent check, or both.
struct Job {
    srv: Srv,
    check: Option<CheckJob>,
    agent: Option<agent::AgentJob>,
}

/// Publishes `no check` for unchecked servers and starts the checkers of the others.
pub fn start(shared: &Arc<Shared>) -> Result<Checkers, HealthError> {
    let config = shared.config.clone();
    let mut jobs = Vec::new();
    let mut probes: Vec<Arc<Probe>> = Vec::new();
    for (bi, be) in config.backends.iter().enumerate() {
        let table = shared.backends[bi].clone();
        let probe = Arc::new(Probe::compile(&be.check));
        probes.push(probe.clone());
        let snap = table.snapshot();
        for (si, srv) in be.servers.iter().enumerate() {
            let counters = snap.servers[si].counters.clone();
            let agent = agent_target(be, srv).map(|target| {
                counters.agent.store(Arc::new(CheckInfo {
                    enabled: true,
                    status: "UP".to_owned(),
                    result: "INI".to_owned(),
                    ..CheckInfo::default()
                }));
                agent::AgentJob {
                    target,
                    send: srv.health.agent.send.clone(),
                    first: Duration::ZERO,
                    spread: config.global.spread_checks,
                }
            });
            let check = if srv.health.check {
                let health = Health::new(srv.health.rise, srv.health.fall);
                counters.check.store(Arc::new(CheckInfo {
                    enabled: true,
                    status: health.status(),
                    result: "INI".to_owned(),
                    ..CheckInfo::default()
                }));
                let (tx, rx) = unbounded_channel();
                if let Some(o) = shared.health.servers.get(bi).and_then(|b| b.get(si)) {
                    let _ = o.tx.set(tx);
                }
                Some(CheckJob {
                    probe: probe.clone(),
                    external: (be.check == CheckKind::External)
                        .then(|| external_args(&config, bi, srv)),
                    target: target(be, srv, srv.health.inter, srv.health.addr, srv.check_port),
                    first: Duration::ZERO,
                    spread: config.global.spread_checks,
                    events: rx,
                })
            } else {
                counters.check.store(Arc::new(CheckInfo {
                    enabled: false,
                    status: "no check".to_owned(),
                    ..CheckInfo::default()
                }));
                None
            };
            if check.is_none() && agent.is_none() {
                continue;
            }
            jobs.push(Job {
                srv: Srv {
                    shared: shared.clone(),
                    backend: bi,
                    server: si,
                    table: table.clone(),
                    counters,
                    conf: snap.servers[si].conf.clone(),
                    be: table.conf.clone(),
                    down_since: Cell::new(None),
                    ramp_gen: Cell::new(0),
                },
                check,
                agent,
            });
        }
    }
    // Stagger the first checks over the smallest interval, as HAProxy does.
    let n = jobs.len();
    let min_inter = jobs
        .iter()
        .flat_map(|j| {
            let h = &j.srv.conf.health;
            [
                j.check.as_ref().map(|_| h.fastinter.unwrap_or(h.inter)),
                j.agent.as_ref().map(|a| a.target.inter),
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

/// Address and timeouts of a check with interval `inter`: `addr`/`port` or the server's.
fn target(
    be: &Backend,
    srv: &Server,
    inter: Duration,
    addr: Option<std::net::IpAddr>,
    port: Option<u16>,
) -> Target {
    let addr = SocketAddr::new(
        addr.unwrap_or(srv.addr.ip()),
        port.unwrap_or(srv.addr.port()),
    );
    let (connect_timeout, read_timeout) = match be.timeouts.check {
        Some(check) => (be.timeouts.connect.unwrap_or(inter).min(inter), Some(check)),
        None => (inter, None),
    };
    Target {
        addr,
        connect_timeout,
        read_timeout,
        inter,
    }
}

/// The agent check's target (`agent-addr`, `agent-port`, `agent-inter`), if it has one.
fn agent_target(be: &Backend, srv: &Server) -> Option<Target> {
    let a = &srv.health.agent;
    let port = a.port.filter(|_| a.enabled)?;
    let inter = a.inter.unwrap_or(srv.health.inter);
    Some(target(be, srv, inter, a.addr, Some(port)))
}

/// argv/env facts of an external check: a `listen` (a frontend of the same name using this
/// backend) gives its first bind address, a plain backend `NOT_USED`.
fn external_args(config: &Config, backend: usize, srv: &Server) -> ExternalArgs {
    let be = &config.backends[backend];
    let bind = config
        .frontends
        .iter()
        .find(|f| f.backend == backend && f.name == be.name)
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
        server_addr: srv.health.addr.unwrap_or(srv.addr.ip()).to_string(),
        server_port: srv.check_port.unwrap_or(srv.addr.port()),
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

impl CheckJob {
    async fn run(mut self, srv: Rc<Srv>) {
        let conf = srv.conf.clone();
        let mut health = Health::new(conf.health.rise, conf.health.fall);
        let mut last: Option<Outcome> = None;
        let mut next = Instant::now() + self.first;
        let mut fast_once = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                ev = self.events.recv() => {
                    let Some(Event::ErrorLimit(action)) = ev else { continue };
                    let (t, moved) = health.on_error(action);
                    let o = Outcome::new(false, "L4CON", format!(
                        "{} consecutive connection errors (observe layer4)",
                        conf.health.error_limit
                    ));
                    srv.apply_check(&health, &o, t, moved);
                    // Every on-error action checks again at fastinter.
                    let fast = Instant::now() + conf.health.fastinter.unwrap_or(conf.health.inter);
                    if fast < next {
                        next = fast;
                    }
                    fast_once = true;
                    continue;
                }
            }
            let admin = srv
                .table
                .snapshot()
                .servers
                .get(srv.server)
                .map(|s| s.state.admin);
            // HAProxy sends no checks to a server in maintenance.
            if admin != Some(AdminState::Maint) {
                let o = match &self.external {
                    Some(args) => {
                        let cur = srv.counters.cur.load(Ordering::Relaxed);
                        let limit = srv.be.timeouts.check.unwrap_or(conf.health.inter);
                        external::run(args, cur, limit).await
                    }
                    None => self.probe.run(&self.target).await,
                };
                let (t, moved) = health.record(o.passed);
                let changed = last
                    .as_ref()
                    .is_none_or(|l| l.result != o.result || l.passed != o.passed);
                if srv.be.log_health_checks && (moved || changed) {
                    srv.log_check(&health, &o);
                }
                srv.apply_check(&health, &o, t, moved);
                last = Some(o);
            }
            let mut inter = health.interval(&conf.health);
            if fast_once {
                inter = inter.min(conf.health.fastinter.unwrap_or(inter));
                fast_once = false;
            }
            next = Instant::now() + spread(inter, self.spread);
        }
    }
}

impl Srv {
    /// `option log-health-checks`: one line per check whose result or counter changed.
    fn log_check(&self, health: &Health, o: &Outcome) {
        let verb = if o.passed { "succeeded" } else { "failed" };
        let h = &self.conf.health;
        let (n, of) = if health.is_up() {
            (health.counter() - h.rise + 1, h.fall)
        } else {
            (health.counter(), h.rise)
        };
        let side = if health.is_up() { "UP" } else { "DOWN" };
        log::info!(
            "Health check for server {}/{} {verb}, reason: {}{}, check duration: {}ms, status: \
             {n}/{of} {side}.",
            self.be.name,
            self.conf.name,
            o.reason(),
            details(o),
            o.duration.as_millis()
        );
    }

    /// Publishes a regular check's result: `CheckInfo`, and on a transition the server's
    /// health (see [`Self::set_health`]).
    fn apply_check(self: &Rc<Self>, health: &Health, o: &Outcome, t: Transition, moved: bool) {
        let prev = self.counters.check.load_full();
        let failed = prev.failed + u64::from(!o.passed && (moved || t != Transition::None));
        let info = CheckInfo {
            enabled: true,
            status: health.status(),
            result: o.result.to_owned(),
            code: o.code,
            info: o.info.clone(),
            duration_ms: Some(o.duration.as_millis() as u64),
            failed,
            down_transitions: prev.down_transitions + u64::from(t == Transition::WentDown),
        };
        self.counters.check.store(Arc::new(info));
        match t {
            Transition::None => {}
            Transition::WentDown => self.set_health(HealthSource::Check, false, o),
            Transition::WentUp => self.set_health(HealthSource::Check, true, o),
        }
    }

    /// Sets one health verdict (regular check or agent) after result `o`. When that changes
    /// the server's operational state, applies what HAProxy does: logs, `downtime`,
    /// "no server available", `on-marked-down`/`on-marked-up`, `slowstart`.
    fn set_health(self: &Rc<Self>, source: HealthSource, up: bool, o: &Outcome) {
        if up {
            self.bring_up(source, o);
        } else {
            self.take_down(source, o);
        }
    }

    fn take_down(&self, source: HealthSource, o: &Outcome) {
        let Ok(change) = self.table.set_health(self.server, source, false) else {
            return;
        };
        if !change.went_down() {
            return;
        }
        self.ramp_gen.set(self.ramp_gen.get() + 1);
        self.down_since.set(Some(Instant::now()));
        let snap = self.table.snapshot();
        let (act, bck) = snap.usable_counts();
        log::warn!(
            "Server {}/{} is DOWN, reason: {}{}, check duration: {}ms. {act} active and {bck} \
             backup servers left. {} sessions active, 0 requeued, {} remaining in queue.",
            self.be.name,
            self.conf.name,
            o.reason(),
            details(o),
            o.duration.as_millis(),
            self.counters.cur.load(Ordering::Relaxed),
            self.table.queue_len()
        );
        if act + bck == 0 {
            log::error!("backend {} has no server available!", self.be.name);
        }
        if self.conf.health.shutdown_on_down {
            self.shared.kill_server_flows(self.backend, self.server);
        }
    }

    fn bring_up(self: &Rc<Self>, source: HealthSource, o: &Outcome) {
        let weight = self.conf.weight;
        let ramp = self
            .conf
            .health
            .slowstart
            .filter(|_| !crate::balance::static_weights(&self.be) && weight > 0);
        let Some(state) = self
            .table
            .snapshot()
            .servers
            .get(self.server)
            .map(|e| e.state)
        else {
            return;
        };
        let other_down = match source {
            HealthSource::Check => state.agent_down,
            HealthSource::Agent => state.check_down,
        };
        // Slow start: the weight is low before the server takes its first connection.
        if let Some(ss) = ramp.filter(|_| !state.healthy && !other_down) {
            let _ = self
                .table
                .set_weight(self.server, ramp_weight(weight, Duration::ZERO, ss));
        }
        let Ok(change) = self.table.set_health(self.server, source, true) else {
            return;
        };
        if !change.went_up() {
            return;
        }
        self.ramp_gen.set(self.ramp_gen.get() + 1);
        if let Some(since) = self.down_since.take() {
            self.counters
                .downtime
                .fetch_add(since.elapsed().as_secs(), Ordering::Relaxed);
        }
        let (act, bck) = self.table.snapshot().usable_counts();
        log::warn!(
            "Server {}/{} is UP, reason: {}{}, check duration: {}ms. {act} active and {bck} \
             backup servers online. 0 sessions requeued, {} total in queue.",
            self.be.name,
            self.conf.name,
            o.reason(),
            details(o),
            o.duration.as_millis(),
            self.table.queue_len()
        );
        if self.conf.health.shutdown_backup_on_up && !self.conf.backup {
            self.shared.kill_backup_flows(self.backend);
        }
        if let Some(ss) = ramp {
            let srv = self.clone();
            let gen = self.ramp_gen.get();
            tokio::task::spawn_local(async move {
                let start = Instant::now();
                let step = (ss / 100).max(SLOWSTART_STEP);
                loop {
                    tokio::time::sleep(step).await;
                    if srv.ramp_gen.get() != gen {
                        return;
                    }
                    let el = start.elapsed();
                    let _ = srv
                        .table
                        .set_weight(srv.server, ramp_weight(weight, el, ss));
                    if el >= ss {
                        return;
                    }
                }
            });
        }
    }
}

/// Effective weight `elapsed` into a slow start of `total`: linear from 1 % to 100 % of
/// `weight`, never 0 for a non-zero weight.
pub fn ramp_weight(weight: u32, elapsed: Duration, total: Duration) -> u32 {
    if elapsed >= total || total.is_zero() {
        return weight;
    }
    let pct = (elapsed.as_millis() * 100 / total.as_millis()).max(1) as u32;
    (weight * pct / 100).max(1)
}

/// `, code: N, info: "..."` as HAProxy's log lines have them.
fn details(o: &Outcome) -> String {
    let mut s = String::new();
    if let Some(c) = o.code {
        let _ = write!(s, ", code: {c}");
    }
    if !o.info.is_empty() {
        let _ = write!(s, ", info: \"{}\"", printable(&o.info));
    }
    s
}

/// `text` with control characters escaped (`\r`, `\n`, `\u{1b}`): server-supplied text must
/// not break a log line.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowstart_ramps_linearly_from_one_percent() {
        let total = Duration::from_secs(10);
        assert_eq!(ramp_weight(100, Duration::ZERO, total), 1);
        assert_eq!(ramp_weight(100, Duration::from_secs(5), total), 50);
        assert_eq!(ramp_weight(100, total, total), 100);
        assert_eq!(ramp_weight(1, Duration::from_secs(1), total), 1);
        assert_eq!(ramp_weight(256, Duration::from_secs(20), total), 256);
    }

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
    fn log_details_follow_haproxy() {
        let mut o = Outcome::new(false, "L4CON", "Connection refused");
        assert_eq!(details(&o), ", info: \"Connection refused\"");
        o.code = Some(1045);
        assert_eq!(details(&o), ", code: 1045, info: \"Connection refused\"");
        o.info = "expect string '+PONG\r\n'".to_owned();
        assert_eq!(
            details(&o),
            ", code: 1045, info: \"expect string '+PONG\\r\\n'\""
        );
        assert_eq!(o.reason(), "Layer4 connection problem");
    }
}
