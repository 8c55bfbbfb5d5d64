//! A configuration generation: one validated configuration and everything built from it that
//! the accept threads, the checkers, DNS, the stats page and the runtime API share (server
//! tables, proxy counters, passive checks, log targets). Start builds the first; each accepted
//! reload builds the next from the new configuration *and the previous generation*, carrying
//! over, server by server, what was set or learned at run time (see [`crate::table::carry_over`]).
//! Flows keep the generation they were accepted in; everything else reads the current one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
pub use crate::counters::{ProxyCounters, ResolversCounters};
use crate::fe_state::FeStates;
use crate::flows::FlowControl;
use crate::logging::LogSet;
use crate::passive::Passive;
use crate::released::Released;
use crate::table::{carry_over, BackendLoad, BackendTable, ServerEntry};

/// What the whole process shares across generations: the connection count behind `global
/// maxconn` (old and new generations' connections count together), the threads' command
/// channels, the start time.
#[derive(Debug)]
pub struct Process {
    /// Current client connections, every thread and generation.
    pub conns: AtomicU32,
    /// Signalled when a connection ends, for accept loops paused at `maxconn`.
    pub conn_released: Released,
    /// Signalled when a frontend's state changes (`disable|enable|shutdown frontend`, a
    /// reload), for accept loops waiting while theirs is not ready.
    pub fe_state_changed: Released,
    /// When the process started (`Start_time_sec`, uptime).
    pub started: SystemTime,
    /// The accept threads' command channels.
    pub flows: FlowControl,
    /// Number of accept threads.
    pub threads: usize,
    /// Connections accepted and sessions let in per second, every frontend (`ConnRate`,
    /// `SessRate` and their highest in `show info`).
    pub conn_rate: crate::rate::SharedRate,
    pub sess_rate: crate::rate::SharedRate,
}

impl Process {
    pub fn new(flows: FlowControl, threads: usize) -> Arc<Self> {
        Arc::new(Self {
            conns: AtomicU32::new(0),
            conn_released: Released::new(),
            fe_state_changed: Released::new(),
            started: SystemTime::now(),
            flows,
            threads,
            conn_rate: crate::rate::SharedRate::default(),
            sess_rate: crate::rate::SharedRate::default(),
        })
    }
}

/// One configuration generation.
pub struct Generation {
    /// 0 at start, +1 per accepted reload.
    pub number: u64,
    pub config: Arc<Config>,
    /// One table per `config.backends` entry, same order.
    pub backends: Vec<Arc<BackendTable>>,
    /// Per-frontend sessions and bytes (`config.frontends` order): the stats page, the runtime
    /// API, tcplog's `%fc`, and the frontend's `maxconn`.
    pub fe_stats: Vec<Arc<ProxyCounters>>,
    /// Per-backend session counts (`config.backends` order); bytes are the servers' sums.
    pub be_stats: Vec<Arc<ProxyCounters>>,
    /// Process-wide limit (`global maxconn`, or derived from the fd limit): HAProxy's
    /// `Hard_maxconn`, the most `set maxconn global` may set.
    pub maxconn: u32,
    /// The limits in force, which the runtime API may change (see [`Limits`]).
    pub limits: Limits,
    /// Whether each frontend takes connections (`config.frontends` order): all ready when
    /// the generation is built, `disable|enable|shutdown frontend` change them.
    pub fe_states: FeStates,
    /// Each `bind ... maxconn N` address's limit and connections.
    pub listener_limits: HashMap<SocketAddr, ListenerLimit>,
    /// Passive health checks: connect results of real traffic (`observe layer4`).
    pub passive: Passive,
    /// HAProxy's proxy ids (`iid`, `be_id`) by proxy name.
    pub proxy_ids: HashMap<String, u32>,
    /// This configuration's log targets (per frontend, and the global ones).
    pub logs: Arc<LogSet>,
    pub process: Arc<Process>,
    /// The stick tables (kept across reloads that do not change their definition).
    pub tables: crate::stick::Tables,
    /// Per-nameserver DNS counters of each `resolvers` section (`config.global.resolvers`
    /// order, nameservers in their order): the DNS client counts, `show resolvers` prints.
    /// Kept across a reload for a nameserver of the same name in a section of the same name.
    pub resolvers: Vec<ResolversCounters>,
    /// Wakes this generation's resolvers when a server follows another name (`set server
    /// B/S fqdn`): they start resolving it at once.
    pub dns_wake: tokio::sync::Notify,
    /// The TLS client of each server with `ssl` (`config.backends` and their servers'
    /// order; `None` without `ssl`), built once per generation: its CA file is read here, and
    /// a server whose client could not be built fails its connects with the reason.
    pub server_tls: Vec<Vec<Option<ServerTlsClient>>>,
    /// A newer generation took over: timers of this one (slow starts) stop.
    retired: AtomicBool,
}

/// A server's TLS client for its traffic, or why it could not be built.
pub type ServerTlsClient = Result<Arc<crate::tls_client::TlsClient>, Arc<str>>;

/// [`Generation::server_tls`] of a configuration.
fn server_tls(config: &Config) -> Vec<Vec<Option<ServerTlsClient>>> {
    let client = |be: &crate::config::Backend, srv: &crate::config::Server| {
        crate::tls_client::TlsClient::for_traffic(srv)
            .map(Arc::new)
            .map_err(|e| {
                log::error!("server {}/{}: TLS: {e}", be.name, srv.name);
                Arc::from(e.as_str())
            })
    };
    config
        .backends
        .iter()
        .map(|be| {
            be.servers
                .iter()
                .map(|s| s.tls.ssl.then(|| client(be, s)))
                .collect()
        })
        .collect()
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

/// The connection limits in force, `set maxconn global|frontend` and `set rate-limit` being
/// able to change them:
/// the configured ones when the generation is built; a reload starts from its configuration
/// again, as HAProxy's new process does.
#[derive(Debug)]
pub struct Limits {
    /// The process's `maxconn` (`Maxconn` in `show info`), at most [`Generation::maxconn`].
    pub global: AtomicU32,
    /// Each frontend's `maxconn` (`config.frontends` order): its own, else the process's.
    pub frontends: Vec<AtomicU32>,
    /// The process's `maxconnrate` and `maxsessrate` (`set rate-limit`), 0 for none.
    pub conn_rate: AtomicU32,
    pub sess_rate: AtomicU32,
}

impl Limits {
    fn new(config: &Config, maxconn: u32) -> Self {
        Self {
            global: AtomicU32::new(maxconn),
            frontends: config
                .frontends
                .iter()
                .map(|f| AtomicU32::new(f.maxconn.unwrap_or(maxconn)))
                .collect(),
            conn_rate: AtomicU32::new(config.global.maxconnrate.unwrap_or(0)),
            sess_rate: AtomicU32::new(config.global.maxsessrate.unwrap_or(0)),
        }
    }

    /// The process's `maxconn` now.
    pub fn global(&self) -> u32 {
        self.global.load(Ordering::Relaxed)
    }

    /// Frontend `f`'s `maxconn` now.
    pub fn frontend(&self, f: usize) -> u32 {
        self.frontends[f].load(Ordering::Relaxed)
    }
}

/// The limit of one address bound with `bind ... maxconn N`, and the connections accepted on
/// it that live now. The count is the address's, as its socket is: a reload that keeps the
/// address keeps counting the connections accepted before it (a reload that first gives the
/// address a limit counts from then on).
#[derive(Debug)]
pub struct ListenerLimit {
    pub max: u32,
    pub conns: Arc<AtomicU32>,
}

impl ListenerLimit {
    /// The limits of `config`'s binds, counts carried from `prev`'s by address.
    fn build(config: &Config, prev: Option<&Generation>) -> HashMap<SocketAddr, Self> {
        let binds = config.frontends.iter().flat_map(|f| &f.binds);
        binds
            .filter_map(|b| {
                let conns = prev
                    .and_then(|p| p.listener_limits.get(&b.addr))
                    .map(|l| l.conns.clone())
                    .unwrap_or_default();
                Some((
                    b.addr,
                    Self {
                        max: b.maxconn?,
                        conns,
                    },
                ))
            })
            .collect()
    }

    /// Whether one more connection fits.
    pub fn has_room(&self) -> bool {
        self.conns.load(Ordering::Acquire) < self.max
    }
}

/// The generation serving now, for what outlives a reload (the stats page, the runtime API,
/// the state writer's timers): each request loads it afresh.
pub type Current = Arc<Serving>;

/// The generation serving now, and the gate that orders run-time changes (runtime API
/// commands, the stats page's form) against a reload.
///
/// A reload copies what each server was given at run time from the serving generation into
/// the next ([`Generation::next`]), then switches to it. A change applied to the old
/// generation between the copy and the switch would be lost. So a change runs under
/// [`Serving::for_change`], which waits while a reload is between its copy and its switch
/// ([`Serving::begin_reload`] to [`Reloading::switch`]) and then acts on the generation
/// serving: every change lands wholly before the copy, or wholly on the new generation.
#[derive(Debug)]
pub struct Serving {
    gen: arc_swap::ArcSwap<Generation>,
    gate: tokio::sync::RwLock<()>,
}

/// A run-time change's hold on the serving generation: no reload copies state while it lives.
pub struct ForChange<'a> {
    _gate: tokio::sync::RwLockReadGuard<'a, ()>,
    /// The generation to act on.
    pub gen: Arc<Generation>,
}

/// A reload between its copy of state and its switch: run-time changes wait meanwhile.
pub struct Reloading<'a> {
    serving: &'a Serving,
    _gate: tokio::sync::RwLockWriteGuard<'a, ()>,
}

impl Serving {
    pub fn new(gen: Arc<Generation>) -> Current {
        Arc::new(Self {
            gen: arc_swap::ArcSwap::new(gen),
            gate: tokio::sync::RwLock::new(()),
        })
    }

    /// The generation serving now, to read from.
    pub fn load_full(&self) -> Arc<Generation> {
        self.gen.load_full()
    }

    /// Waits until no reload is between its copy and its switch, then holds reloads off until
    /// the returned hold drops; its `gen` is the generation to change.
    pub async fn for_change(&self) -> ForChange<'_> {
        let gate = self.gate.read().await;
        ForChange {
            _gate: gate,
            gen: self.gen.load_full(),
        }
    }

    /// Called by a reload before it copies state from the serving generation (blocking: from
    /// the main thread, outside any runtime). Waits for the changes in progress to finish.
    pub fn begin_reload(&self) -> Reloading<'_> {
        Reloading {
            serving: self,
            _gate: self.gate.blocking_write(),
        }
    }
}

impl Reloading<'_> {
    /// The generation the reload copies from.
    pub fn serving(&self) -> Arc<Generation> {
        self.serving.gen.load_full()
    }

    /// `next` serves from now on; the changes that waited run on it.
    pub fn switch(self, next: Arc<Generation>) {
        self.serving.gen.store(next);
    }
}

impl Generation {
    /// The first generation: every server as HAProxy starts it.
    pub fn first(
        config: Arc<Config>,
        maxconn: u32,
        logs: Arc<LogSet>,
        process: Arc<Process>,
    ) -> Arc<Self> {
        Self::build(config, maxconn, logs, process, None)
    }

    /// The next generation (reload): built from `config`, carrying over from `self` what each
    /// kept server was given at run time, and the counters of kept proxies.
    pub fn next(&self, config: Arc<Config>, maxconn: u32, logs: Arc<LogSet>) -> Arc<Self> {
        Self::build(config, maxconn, logs, self.process.clone(), Some(self))
    }

    fn build(
        config: Arc<Config>,
        maxconn: u32,
        logs: Arc<LogSet>,
        process: Arc<Process>,
        prev: Option<&Generation>,
    ) -> Arc<Self> {
        let fe_names =
            |c: &Config| -> Vec<String> { c.frontends.iter().map(|f| f.name.clone()).collect() };
        let be_names =
            |c: &Config| -> Vec<String> { c.backends.iter().map(|b| b.name.clone()).collect() };
        let prev_fe = prev.map(|p| (fe_names(&p.config), p.fe_stats.as_slice()));
        let prev_be = prev.map(|p| (be_names(&p.config), p.be_stats.as_slice()));
        let fe_stats = carry_counters(
            &fe_names(&config),
            prev_fe.as_ref().map(|(n, s)| (n.as_slice(), *s)),
        );
        let be_stats = carry_counters(
            &be_names(&config),
            prev_be.as_ref().map(|(n, s)| (n.as_slice(), *s)),
        );
        let backends = config
            .backends
            .iter()
            .enumerate()
            .map(|(b, be)| {
                let prev_table = prev.and_then(|p| p.backend(&be.name));
                let prev_snap = prev_table.map(|t| t.snapshot());
                let entries = be
                    .servers
                    .iter()
                    .map(|s| {
                        let old = prev_snap
                            .as_ref()
                            .and_then(|snap| snap.servers.iter().find(|e| e.conf.name == s.name));
                        old.map_or_else(|| ServerEntry::new(s), |e| carry_over(e, s))
                    })
                    .collect();
                let load = BackendLoad {
                    sessions: be_stats[b].clone(),
                    fullconn: config.fullconn(b, maxconn),
                };
                BackendTable::with_entries(be, entries, load)
            })
            .collect();
        let tables = crate::stick::Tables::build(&config.tables, prev.map(|p| &p.tables));
        let server_tls = server_tls(&config);
        let limits = Limits::new(&config, maxconn);
        let fe_states = FeStates::ready(config.frontends.len());
        let listener_limits = ListenerLimit::build(&config, prev);
        let resolvers = ResolversCounters::build(
            config.global.resolvers.iter().map(|r| {
                let ns = r.nameservers.iter().map(|(n, _)| n.as_str()).collect();
                (r.name.as_str(), ns)
            }),
            prev.map_or(&[], |p| p.resolvers.as_slice()),
        );
        Arc::new(Self {
            resolvers,
            number: prev.map_or(0, |p| p.number + 1),
            tables,
            passive: Passive::new(&config),
            proxy_ids: proxy_ids(&config),
            config,
            backends,
            fe_stats,
            be_stats,
            limits,
            fe_states,
            listener_limits,
            maxconn,
            logs,
            process,
            dns_wake: tokio::sync::Notify::new(),
            server_tls,
            retired: AtomicBool::new(false),
        })
    }

    /// A generation of its own with one thread channel and no threads behind it, for tests of
    /// what builds on a generation.
    #[cfg(test)]
    pub fn standalone(config: Arc<Config>) -> Arc<Self> {
        Self::standalone_with_flows(config).0
    }

    /// [`Self::standalone`], and the receiving end of its one thread channel (to see the
    /// commands sent to the flows).
    #[cfg(test)]
    pub fn standalone_with_flows(
        config: Arc<Config>,
    ) -> (
        Arc<Self>,
        tokio::sync::mpsc::UnboundedReceiver<crate::flows::FlowCommand>,
    ) {
        let (flows, mut rx) = FlowControl::new(1);
        let logs = crate::logging::open(&config).expect("log targets");
        let gen = Self::first(config, 100, logs, Process::new(flows, 1));
        (gen, rx.remove(0))
    }

    /// The table of the backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<BackendTable>> {
        let i = self.config.backends.iter().position(|b| b.name == name)?;
        self.backends.get(i)
    }

    /// A newer generation serves now (the timers of this one stop).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether [`Self::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// The counters of the proxies named `names`: those of a proxy of the same name in the
/// previous generation, fresh ones for new proxies.
fn carry_counters(
    names: &[String],
    prev: Option<(&[String], &[Arc<ProxyCounters>])>,
) -> Vec<Arc<ProxyCounters>> {
    names
        .iter()
        .map(|n| {
            prev.as_ref()
                .and_then(|(old, stats)| old.iter().position(|o| o == n).map(|i| stats[i].clone()))
                .unwrap_or_default()
        })
        .collect()
}

/// Proxy ids (`iid`) in file order, a `listen` counting once, as HAProxy numbers proxies.
fn proxy_ids(config: &Config) -> HashMap<String, u32> {
    let mut locs: Vec<(&crate::config::Loc, &str)> = config
        .frontends
        .iter()
        .map(|f| (&f.loc, f.name.as_str()))
        .chain(config.backends.iter().map(|b| (&b.loc, b.name.as_str())))
        .collect();
    locs.sort_by(|a, b| (a.0.file.as_ref(), a.0.line).cmp(&(b.0.file.as_ref(), b.0.line)));
    let mut ids = HashMap::new();
    for (_, name) in locs {
        let next = u32::try_from(ids.len() + 1).unwrap_or(u32::MAX);
        ids.entry(name.to_owned()).or_insert(next);
    }
    ids
}
