//! The one write path for server state. Every source of a change — health checks, the agent,
//! DNS, the runtime API, the stats page's form, the server-state file, slow start — describes
//! it as a typed [`Change`] and calls [`apply`]. `apply` decides the new state under the
//! table's writer lock with HAProxy's rules ([`transition`]), publishes one snapshot, then
//! does what follows, once: HAProxy's log line, `backend has no server available!`,
//! `on-marked-down shutdown-sessions`, `on-marked-up shutdown-backup-sessions`, slow start,
//! waking the server's checkers at a new address, the stats' check details.
//!
//! Nothing else writes a server's state (the table's only write entry is called from here).

mod effects;
pub mod file;
pub mod fqdn;
mod timers;
mod transition;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod track_tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::OnError;
use crate::generation::Generation;
use crate::table::{
    name_key, usable_counts, AdminState, CheckResult, ServerState, TrackView, MAX_WEIGHT,
};

pub use effects::{check_details, printable};
pub use timers::resume;
pub use transition::{check_interval, check_weight, fast_interval, ramp_weight, Event, OpCause};

/// Who asks for a change: decides the wording of logs and what survives a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum By {
    /// The runtime API (`stats socket`).
    Cli,
    /// The stats page's admin form.
    StatsPage,
    /// The agent check's answer.
    Agent,
    /// The regular health check (and passive checks).
    Check,
    /// A DNS answer from `resolvers/nameserver` (the first server of a name).
    Dns {
        resolvers: String,
        nameserver: String,
    },
    /// A DNS answer shared by another server of the same name.
    DnsCache,
    /// The server-state file at start.
    StateFile,
    /// Slow start's ramp.
    Slowstart,
    /// The server it tracks changed (`track`).
    Tracking,
    /// The configuration itself.
    Config,
}

/// The result of one health check (or agent check), as the writer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub passed: bool,
    pub result: CheckResult,
    /// Protocol code (MySQL error, HTTP status, exit status).
    pub code: Option<u32>,
    /// Free text (error message, server version, the agent's words).
    pub info: String,
    pub duration: Duration,
}

/// `set server B/S health up|stopping|down`, the stats page's "set state to UP/DOWN".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForcedHealth {
    Up,
    /// HAProxy's NOLB: UP, no new connections.
    Stopping,
    Down,
}

/// One agent answer: every word that says something, applied as one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentVerdict {
    /// `ready`, `drain`, `maint`.
    pub admin: Option<AdminState>,
    /// `N%`, already turned into a weight.
    pub weight: Option<u32>,
    /// `maxconn:N`.
    pub maxconn: Option<u32>,
    /// `up` (Some(true)); `down`, `fail`, `stopped` (Some(false)).
    pub up: Option<bool>,
    /// The agent check's own result, for stats and logs.
    pub report: CheckReport,
}

/// A typed change of one server's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Administrative state (`set server state`, `enable|disable server`, the agent's words).
    Admin(AdminState),
    /// Forced operational state.
    ForceHealth(ForcedHealth),
    /// A regular check's result.
    Check(CheckReport),
    /// `error-limit` observed errors: apply `on-error` to the check counter.
    CheckError(OnError, CheckReport),
    /// An agent check's answer (or failure: a verdict with nothing in it).
    Agent(AgentVerdict),
    /// `set server B/S agent up|down`.
    AgentHealth(bool),
    /// Weight set at run time (0..=256).
    Weight(u32),
    /// `maxconn` set at run time (the agent's `maxconn:N`); 0 = unlimited.
    Maxconn(u32),
    /// A new address and/or port for new connections.
    Addr {
        ip: Option<IpAddr>,
        port: Option<u16>,
    },
    /// `Some(cause)`: the name stopped resolving (MAINT (resolution)); `None`: it resolves.
    Resolution(Option<&'static str>),
    /// A valid DNS answer: this address (and port and weight, from an SRV record), and out
    /// of MAINT (resolution) if it was in. A weight the backend's algorithm cannot take is
    /// ignored, as HAProxy ignores it (the address still applies).
    Resolved(IpAddr, Option<u16>, Option<u32>),
    /// `enable|disable health`.
    CheckEnabled(bool),
    /// `enable|disable agent`.
    AgentEnabled(bool),
    /// `set server B/S agent-send`.
    AgentSend(Vec<u8>),
    /// `set server B/S check-addr|check-port|agent-addr|agent-port`.
    MoveCheck(CheckMove),
    /// `set server B/S fqdn NAME` (or the state file's `srv_fqdn`): resolve this name from
    /// now on (checked by [`fqdn::check`]; the address stays until it resolves).
    Fqdn(String),
    /// One step of a slow start.
    RampStep,
    /// The server it tracks (`track`) is now in this state.
    Tracked(TrackView),
}

/// Where `set server B/S check-addr A [port P]` or `check-port P` (`agent`: `agent-addr`,
/// `agent-port`) sends a check: a new address and/or port (port 0: the server's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckMove {
    pub agent: bool,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
}

/// Why a change was refused, in HAProxy's words where it has them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("backend {backend} has no server number {index}")]
    NoSuchServer { backend: String, index: usize },
    #[error("server {server}: weight {weight} is out of range (0 to 256)")]
    WeightOutOfRange { server: String, weight: u32 },
    /// `balance static-rr` and map-based hashing only take 0 or the configured weight at run
    /// time (0 or 100 %).
    #[error(
        "backend {backend} uses a static algorithm (static-rr or map-based hashing): server \
         {server} weight can only be set to 0 or to its configured weight {configured}, not \
         {weight}"
    )]
    StaticWeight {
        backend: String,
        server: String,
        weight: u32,
        configured: u32,
    },
    #[error("Agent was not configured on this server, cannot enable.")]
    AgentNotConfigured,
    #[error("agent checks are not enabled on this server.")]
    AgentNotEnabled,
    #[error("Health checks are not configured on this server, cannot enable.")]
    CheckNotConfigured,
    #[error("cannot change health on a tracking server.")]
    Tracking,
    /// `check-addr`/`check-port` on a server whose checks are off (HAProxy's words, without
    /// the final stop of its other messages).
    #[error("health checks are not enabled on this server")]
    ChecksNotEnabled,
    #[error("agent checks are not enabled on this server")]
    AgentChecksNotEnabled,
    #[error("can't unset 'port' since MAPPORTS is in use")]
    MapPortsNeedCheckPort,
    /// `set server B/S fqdn` refused (see [`fqdn::check`]).
    #[error("{0}")]
    Fqdn(fqdn::FqdnRefusal),
    /// A DNS answer for a name the server no longer follows (its name changed meanwhile):
    /// not applied.
    #[error("the server follows another name now")]
    NameChanged,
}

/// Whether the server's regular check (`agent`: its agent check) runs: configured and not
/// disabled (HAProxy's `CHK_ST_ENABLED`), which moving it needs.
pub fn checks_run(
    agent: bool,
    conf: &crate::config::Server,
    st: &ServerState,
) -> Result<(), StateError> {
    match agent {
        true if !st.agent_enabled => Err(StateError::AgentChecksNotEnabled),
        false if !(conf.health.check && st.check_enabled) => Err(StateError::ChecksNotEnabled),
        _ => Ok(()),
    }
}

/// The change of `set server B/S check-addr|check-port|agent-addr|agent-port` (`agent`: the
/// agent's) or of a state file's `srv_check_*`/`srv_agent_*` fields, from their words,
/// checked in HAProxy's order (`srv_update_check_addr_port`, `srv_update_agent_addr_port`):
/// the check must run, the address be an IP, the port an integer in 0..=65535. The first
/// failure is the answer, in HAProxy's words (no final stop, no new line).
pub fn place_change(
    (agent, addr, port): (bool, Option<&str>, Option<&str>),
    conf: &crate::config::Server,
    st: &ServerState,
) -> Result<Change, String> {
    checks_run(agent, conf, st).map_err(|e| e.to_string())?;
    let addr = match addr {
        Some(a) => Some(
            a.parse::<IpAddr>()
                .map_err(|_| format!("invalid addr '{a}'"))?,
        ),
        None => None,
    };
    let port = match port {
        Some(p) => {
            let n: i64 = p
                .parse()
                .map_err(|_| "provided port is not an integer".to_owned())?;
            Some(u16::try_from(n).map_err(|_| "provided port is invalid".to_owned())?)
        }
        None => None,
    };
    Ok(Change::MoveCheck(CheckMove { agent, addr, port }))
}

/// What a change did: the server's state before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub before: ServerState,
    pub after: ServerState,
}

impl Applied {
    /// The address before and after (for `set server addr`'s answer).
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.before.addr, self.after.addr)
    }
}

/// Applies `change` to `backend`'s `server` in `gen`: decides and publishes it (one snapshot),
/// then logs and acts on what happened. Callable from any thread.
pub fn apply(
    gen: &Arc<Generation>,
    backend: usize,
    server: usize,
    change: Change,
    by: &By,
) -> Result<Applied, StateError> {
    write(gen, (backend, server), change, by, None)
}

/// [`apply`] for what DNS learned about the name `name` ([`name_key`]'s form): refused with
/// [`StateError::NameChanged`] when the server follows another name by the time the writer
/// takes it (`set server B/S fqdn` came in between).
pub fn apply_for_name(
    gen: &Arc<Generation>,
    (backend, server): (usize, usize),
    name: &str,
    change: Change,
    by: &By,
) -> Result<Applied, StateError> {
    write(gen, (backend, server), change, by, Some(name))
}

fn write(
    gen: &Arc<Generation>,
    (backend, server): (usize, usize),
    change: Change,
    by: &By,
    for_name: Option<&str>,
) -> Result<Applied, StateError> {
    let table = gen
        .backends
        .get(backend)
        .ok_or_else(|| StateError::NoSuchServer {
            backend: format!("#{backend}"),
            index: server,
        })?;
    let now = Instant::now();
    let decided = table.write(|servers| {
        let counts_before = usable_counts(servers);
        // A tracking server takes its tracked server's state as published now, read under its
        // own lock: whatever order two propagations come in, the last one reads the latest.
        let change = match change {
            Change::Tracked(view) => Change::Tracked(
                servers
                    .get(server)
                    .and_then(|e| e.conf.track.as_ref())
                    .map_or(view, |t| tracked_view(gen, backend, servers, t.to)),
            ),
            other => other,
        };
        let Some(e) = servers.get_mut(server) else {
            return Err(StateError::NoSuchServer {
                backend: table.conf.name.clone(),
                index: server,
            });
        };
        if let Some(want) = for_name {
            let follows = e.counters.fqdn(&e.conf).map(|n| name_key(&n));
            if follows.as_deref() != Some(want) {
                return Err(StateError::NameChanged);
            }
        }
        let fqdn_before = matches!(change, Change::Fqdn(_))
            .then(|| e.counters.fqdn(&e.conf))
            .flatten();
        let before = e.state;
        let mut events = Vec::new();
        transition::step(
            &e.conf,
            &table.conf,
            &mut e.state,
            change,
            by,
            now,
            &mut events,
        )?;
        // The name is the server's (its counters'), written here under the table's lock so
        // that an answer for the old name can no longer land (see `apply_for_name`). The
        // configured name again is no run-time name.
        for ev in &events {
            if let Event::Fqdn(name) = ev {
                let runtime =
                    (e.conf.fqdn.as_deref() != Some(name.as_str())).then(|| Arc::new(name.clone()));
                e.counters.fqdn.store(runtime);
            }
        }
        let after = e.state;
        Ok(effects::Decided {
            applied: Applied { before, after },
            events,
            counts_before,
            counts_after: usable_counts(servers),
            fqdn_before,
        })
    })?;
    let applied = decided.applied;
    effects::run(gen, backend, server, by, decided);
    Ok(applied)
}

/// The state of the tracked server `to` (backend, server) as its trackers take it: from
/// `servers` when it is in the same backend (the table being written), else from its
/// backend's published snapshot.
fn tracked_view(
    gen: &Generation,
    backend: usize,
    servers: &[crate::table::ServerEntry],
    to: (usize, usize),
) -> TrackView {
    let from = |e: Option<&crate::table::ServerEntry>| e.map(|e| e.state.track_view());
    let view = if to.0 == backend {
        from(servers.get(to.1))
    } else {
        gen.backends
            .get(to.0)
            .and_then(|t| from(t.snapshot().servers.get(to.1)))
    };
    // A configuration checked at load always finds it; nothing to follow otherwise.
    view.unwrap_or(TrackView::READY)
}

/// Brings every tracking server of `gen` to its tracked server's state: at start and after a
/// reload, before the generation serves (HAProxy's `srv_compute_all_admin_states`). Not
/// logged (the configuration sets it up); what follows from it (flows ended by
/// `on-marked-down shutdown-sessions`) is done as for any change.
pub fn follow_tracked(gen: &Arc<Generation>) {
    for (b, be) in gen.config.backends.iter().enumerate() {
        for (s, srv) in be.servers.iter().enumerate() {
            if srv.track.is_some() {
                let _ = apply(gen, b, s, Change::Tracked(TrackView::READY), &By::Config);
            }
        }
    }
}

/// Parses a weight as the runtime API and the agent write it: `W` (0..=256) or `W%` of the
/// configured weight `initial`; errors in HAProxy's words.
pub fn parse_weight(arg: &str, initial: u32) -> Result<u32, &'static str> {
    if let Some(pct) = arg.strip_suffix('%') {
        let p: u64 = pct
            .parse()
            .map_err(|_| "Empty weight string empty or preceded by garbage")?;
        // Saturating: a percentage of 20 digits is too large, not a product that wraps.
        let w = u64::from(initial).saturating_mul(p) / 100;
        if w > u64::from(MAX_WEIGHT) {
            return Err("Relative weight too large.");
        }
        Ok(w as u32)
    } else {
        let w: u32 = arg
            .parse()
            .map_err(|_| "Empty weight string empty or preceded by garbage")?;
        if w > MAX_WEIGHT {
            return Err("Absolute weight can only be between 0 and 256 inclusive.");
        }
        Ok(w)
    }
}
