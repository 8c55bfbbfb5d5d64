//! One server as lb holds it: its configuration, its state (what the state writer publishes:
//! admin state, UP/DOWN with the check's rise/fall counter, agent verdict, weight, address,
//! maxconn, each with where it came from), and the counters every snapshot shares; the pure
//! rise/fall machine ([`health`]) and what a server keeps across a reload ([`carry`]). Below
//! the balancer and the table, which both work on these types.

mod carry;
pub mod health;
mod source_ports;

pub use carry::carry_over;
pub use health::{fastinter, Health, Transition};
pub use source_ports::{PortLease, PortPool};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::config::Server;
use crate::counters::ProxyCounters;

/// Administrative state of a server (`set server B/S state ready|drain|maint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new connections (if UP and weight > 0).
    Ready,
    /// Keeps its connections, takes no new ones.
    Drain,
    /// Maintenance: takes no new connections, is not checked (`disabled` servers start here).
    Maint,
}

/// Where a value in a server's state came from. Values set at run time survive a reload;
/// values from the configuration follow the new configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The configuration (or the default).
    Config,
    /// Run time: runtime API, stats page, agent, server-state file.
    Runtime,
}

/// Who gave a server its current address (HAProxy's `by DNS`, `by 'stats socket command'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrOrigin {
    /// The configuration (resolved at load time), or the `init-addr` fallback.
    Config,
    /// A `resolvers` answer.
    Dns,
    /// `set server B/S addr`.
    Cli,
    /// The server-state file (`init-addr last`).
    StateFile,
}

/// A health-check result, with HAProxy's names, numbers and descriptions (`HCHK_STATUS_*`).
/// The one place these are defined: logs, stats, `show servers state` and Prometheus use it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CheckResult {
    /// Not checked yet.
    #[default]
    Ini,
    /// A check is starting.
    Start,
    /// Passive check (`observe`) reported errors.
    Hana,
    SockErr,
    L4Ok,
    L4Tout,
    L4Con,
    L6Ok,
    L6Tout,
    L6Rsp,
    L7Tout,
    L7Rsp,
    L7Ok,
    L7OkC,
    L7Sts,
    ProcErr,
    ProcTout,
    ProcOk,
    /// An agent answer that judged nothing (no `up`/`down` word).
    Checked,
}

impl CheckResult {
    /// Every result, for tables that list them (Prometheus).
    pub const ALL: [CheckResult; 19] = [
        Self::Ini,
        Self::Start,
        Self::Hana,
        Self::SockErr,
        Self::L4Ok,
        Self::L4Tout,
        Self::L4Con,
        Self::L6Ok,
        Self::L6Tout,
        Self::L6Rsp,
        Self::L7Tout,
        Self::L7Rsp,
        Self::L7Ok,
        Self::L7OkC,
        Self::L7Sts,
        Self::ProcErr,
        Self::ProcTout,
        Self::ProcOk,
        Self::Checked,
    ];

    /// HAProxy's short name (`L4CON`), shown in stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ini => "INI",
            Self::Start => "START",
            Self::Hana => "HANA",
            Self::SockErr => "SOCKERR",
            Self::L4Ok => "L4OK",
            Self::L4Tout => "L4TOUT",
            Self::L4Con => "L4CON",
            Self::L6Ok => "L6OK",
            Self::L6Tout => "L6TOUT",
            Self::L6Rsp => "L6RSP",
            Self::L7Tout => "L7TOUT",
            Self::L7Rsp => "L7RSP",
            Self::L7Ok => "L7OK",
            Self::L7OkC => "L7OKC",
            Self::L7Sts => "L7STS",
            Self::ProcErr => "PROCERR",
            Self::ProcTout => "PROCTOUT",
            Self::ProcOk => "PROCOK",
            Self::Checked => "CHECKED",
        }
    }

    /// The result named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether the stats show a code with this result (HAProxy's `status >= L57DATA`: a
    /// layer 7 or external check's end), 0 when the check set none.
    pub fn has_code(self) -> bool {
        matches!(
            self,
            Self::L7Ok | Self::L7OkC | Self::L7Sts | Self::ProcErr | Self::ProcTout | Self::ProcOk
        )
    }

    /// HAProxy's description (`reason: Layer4 connection problem`).
    pub fn desc(self) -> &'static str {
        match self {
            Self::Ini => "Initializing",
            Self::Start => "Starting",
            Self::Hana => "Health analyze",
            Self::SockErr => "Socket error",
            Self::L4Ok => "Layer4 check passed",
            Self::L4Tout => "Layer4 timeout",
            Self::L4Con => "Layer4 connection problem",
            Self::L6Ok => "Layer6 check passed",
            Self::L6Tout => "Layer6 timeout",
            Self::L6Rsp => "Layer6 invalid response",
            Self::L7Tout => "Layer7 timeout",
            Self::L7Rsp => "Layer7 invalid response",
            Self::L7Ok => "Layer7 check passed",
            Self::L7OkC => "Layer7 check conditionally passed",
            Self::L7Sts => "Layer7 wrong status",
            Self::ProcErr => "External check error",
            Self::ProcTout => "External check timeout",
            Self::ProcOk => "External check passed",
            Self::Checked => "No status change",
        }
    }

    /// HAProxy's `HCHK_STATUS_*` number (`show servers state`'s `srv_check_status`).
    pub fn code(self) -> u32 {
        match self {
            Self::Ini => 1,
            Self::Start => 2,
            Self::Hana => 4,
            Self::SockErr => 5,
            Self::L4Ok => 6,
            Self::L4Tout => 7,
            Self::L4Con => 8,
            Self::L6Ok => 9,
            Self::L6Tout => 10,
            Self::L6Rsp => 11,
            Self::L7Tout => 12,
            Self::L7Rsp => 13,
            Self::L7Ok => 14,
            Self::L7OkC => 15,
            Self::L7Sts => 16,
            Self::ProcErr => 17,
            Self::ProcTout => 18,
            Self::ProcOk => 19,
            Self::Checked => 0,
        }
    }

    /// The result numbered `code` (the inverse of [`Self::code`]).
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.code() == code && *r != Self::Checked)
    }

    /// HAProxy's `CHK_RES_*` of this status: 0 unknown, 1 neutral, 2 failed, 3 passed,
    /// 4 conditionally passed (`show servers state`'s `srv_check_result`).
    pub fn verdict_code(self) -> u32 {
        match self {
            Self::Ini | Self::Start => 0,
            Self::Hana | Self::Checked => 1,
            Self::L4Ok | Self::L6Ok | Self::L7Ok | Self::ProcOk => 3,
            Self::L7OkC => 4,
            _ => 2,
        }
    }
}

/// The detail of a server's last check (or agent check), for stats and the runtime API. The
/// UP/DOWN state itself lives in [`ServerState`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckInfo {
    /// Last result; `Ini` before the first.
    pub result: CheckResult,
    /// Protocol code of the last result (MySQL error code, HTTP status, exit code).
    pub code: Option<u32>,
    /// Free text of the last result (server version, error text), as HAProxy's `info`.
    pub info: String,
    /// Duration of the last check, ms.
    pub duration_ms: Option<u64>,
    /// Failed checks since start (`chkfail`).
    pub failed: u64,
    /// UP -> DOWN transitions caused by this check since start (`chkdown`).
    pub down_transitions: u64,
}

/// Process-wide unique id of a server across reloads (see [`ServerCounters::uid`]).
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Counters that live as long as the server, shared by every snapshot (`Arc`), and carried
/// into the next configuration generation when the server is kept. All atomics.
#[derive(Debug)]
pub struct ServerCounters {
    /// Identifies the server across generations: flows record it, so that ending "every flow
    /// of this server" reaches flows accepted before a reload too.
    pub uid: u64,
    /// Connections currently on the server (`scur`), including reserved slots not connected yet.
    pub cur: AtomicU32,
    /// Highest `cur` seen (`smax`).
    pub max: AtomicU32,
    /// Connections sent there (`lbtot`/`stot`).
    pub total: AtomicU64,
    /// Unix time (s) of the last connection sent there (`lastsess`); 0 = none yet.
    pub last_session: AtomicU64,
    /// Connections sent there per second, and the highest (`rate`, `rate_max`).
    pub sess_rate: crate::rate::SharedRate,
    /// Bytes client -> server (`bin`).
    pub bytes_in: AtomicU64,
    /// Bytes server -> client (`bout`).
    pub bytes_out: AtomicU64,
    /// Failed connection attempts (`econ`).
    pub connect_errors: AtomicU64,
    /// Connect re-tries (`wretr`).
    pub retries: AtomicU64,
    /// Connections redispatched away from this server (`wredis`).
    pub redispatches: AtomicU64,
    /// The regular check's last result (the state writer publishes it).
    pub check: arc_swap::ArcSwap<CheckInfo>,
    /// The agent check's last result.
    pub agent: arc_swap::ArcSwap<CheckInfo>,
    /// `set server B/S agent-send STR`: replaces the configured `agent-send`.
    pub agent_send: arc_swap::ArcSwapOption<Vec<u8>>,
    /// `set server B/S check-addr|check-port`: replaces the configured place of the checks
    /// (see [`ServerCounters::check_place`]).
    pub check_place: arc_swap::ArcSwapOption<CheckPlace>,
    /// `set server B/S agent-addr|agent-port`: the same for the agent check.
    pub agent_place: arc_swap::ArcSwapOption<CheckPlace>,
    /// `set server B/S fqdn NAME` (or the server-state file's `srv_fqdn`): the name DNS
    /// resolves for the server instead of the configured one (see [`ServerCounters::fqdn`]).
    /// Written only by the state writer, under the table's lock.
    pub fqdn: arc_swap::ArcSwapOption<String>,
    /// Unix time (s) of the last UP/DOWN/MAINT/DRAIN change (`lastchg`); 0 = since start.
    pub last_change: AtomicU64,
    /// Seconds spent DOWN so far, completed periods only (`downtime`).
    pub downtime: AtomicU64,
    /// Wakes the server's checkers before their next turn (each holds a receiver): the writer
    /// bumps it when the address changes or the server leaves maintenance (HAProxy checks at
    /// once then).
    pub check_now: tokio::sync::watch::Sender<u64>,
    /// The queue of the newest generation's table holding this server, which a released slot
    /// also serves (see `ServerSlot`'s drop).
    pub(crate) latest: arc_swap::ArcSwapOption<LatestQueue>,
    /// The free ports of the server's source port range, when it has one (kept across
    /// reloads with the counters, so that a reload's connections never take a port an older
    /// generation's connection holds).
    source_ports: arc_swap::ArcSwapOption<PortPool>,
}

/// Where a server's checks (or its agent's) connect: this address instead of the server's
/// current one, this port instead of its port (`None`: the server's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckPlace {
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
}

impl CheckPlace {
    /// This place with what `set server ... check-addr A [port P]` (or `check-port P`,
    /// and the agent's) gives: a new address, a new port (0: the server's again).
    #[must_use]
    pub fn with(self, addr: Option<IpAddr>, port: Option<u16>) -> CheckPlace {
        CheckPlace {
            addr: addr.or(self.addr),
            port: match port {
                None => self.port,
                Some(0) => None,
                Some(p) => Some(p),
            },
        }
    }
}

impl ServerCounters {
    /// Where the regular checks of the server configured as `conf` go: `addr` and `port`
    /// as configured, or as `set server` last left them.
    pub fn check_place(&self, conf: &Server) -> CheckPlace {
        self.check_place
            .load()
            .as_deref()
            .copied()
            .unwrap_or(CheckPlace {
                addr: conf.health.addr,
                port: conf.check_port,
            })
    }

    /// Where the agent check goes: `agent-addr` and `agent-port`, or as `set server` left them.
    pub fn agent_place(&self, conf: &Server) -> CheckPlace {
        self.agent_place
            .load()
            .as_deref()
            .copied()
            .unwrap_or(CheckPlace {
                addr: conf.health.agent.addr,
                port: conf.health.agent.port,
            })
    }
}

impl ServerCounters {
    /// The name the server configured as `conf` is resolved from now: the one `set server
    /// B/S fqdn` (or the state file) gave it, else the configured hostname; `None` for a
    /// server written with an IP address that never got one.
    pub fn fqdn(&self, conf: &Server) -> Option<String> {
        match self.fqdn.load().as_deref() {
            Some(name) => Some(name.clone()),
            None => conf.fqdn.clone(),
        }
    }

    /// Whether the name was given at run time (HAProxy's `SRV_ADMF_HMAINT`, "FQDN set from
    /// the stats socket").
    pub fn fqdn_set_at_runtime(&self) -> bool {
        self.fqdn.load().is_some()
    }
}

/// A hostname as DNS compares it: lower case, without its final dot (HAProxy compares its
/// names in this form, `resolv_str_to_dn_label`).
pub fn name_key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A queue that a freed slot may serve: a backend table's (the table implements it).
pub trait QueueKick: Send + Sync {
    /// Lets queued connections onto free slots, if any wait.
    fn kick(&self);
}

/// The newest table of a server ([`ServerCounters::latest`]).
pub struct LatestQueue(pub Weak<dyn QueueKick>);

impl std::fmt::Debug for LatestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatestQueue")
    }
}

impl Default for ServerCounters {
    fn default() -> Self {
        Self {
            // Relaxed: a unique number, nothing else is ordered by it.
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            cur: AtomicU32::new(0),
            max: AtomicU32::new(0),
            total: AtomicU64::new(0),
            last_session: AtomicU64::new(0),
            sess_rate: crate::rate::SharedRate::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            redispatches: AtomicU64::new(0),
            check: arc_swap::ArcSwap::default(),
            agent: arc_swap::ArcSwap::default(),
            agent_send: arc_swap::ArcSwapOption::const_empty(),
            check_place: arc_swap::ArcSwapOption::const_empty(),
            agent_place: arc_swap::ArcSwapOption::const_empty(),
            fqdn: arc_swap::ArcSwapOption::const_empty(),
            last_change: AtomicU64::new(0),
            downtime: AtomicU64::new(0),
            check_now: tokio::sync::watch::channel(0).0,
            latest: arc_swap::ArcSwapOption::const_empty(),
            source_ports: arc_swap::ArcSwapOption::const_empty(),
        }
    }
}

impl ServerCounters {
    /// The pool of `conf`'s source port range (`source ADDR:LOW-HIGH`), made on first use;
    /// `None` when its source has no range. A range changed by a reload gets a new pool (the
    /// old one's ports come back to it as their connections close).
    pub fn source_ports(&self, conf: &Server) -> Option<Arc<PortPool>> {
        let range = conf.source.as_ref()?.ports?;
        let matching =
            |p: &Option<Arc<PortPool>>| p.as_ref().filter(|p| p.range() == range).cloned();
        if let Some(p) = matching(&self.source_ports.load_full()) {
            return Some(p);
        }
        self.source_ports
            .rcu(|cur| matching(cur).or_else(|| Some(PortPool::new(range))));
        matching(&self.source_ports.load_full())
    }
}

/// What the state writer publishes about one server. Everything here changes only through
/// `crate::state` (one write path), one snapshot per change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// Administrative state (forced by an operator or the agent, or `disabled`).
    pub admin: AdminState,
    /// `Config` while the admin state is what the configuration says (`disabled` or not).
    pub admin_origin: Origin,
    /// `MAINT (resolution)`: the hostname does not resolve (past its `hold`, or `init-addr
    /// none` without an answer yet). DNS sets and clears it, separately from `admin`.
    pub resolution_maint: bool,
    /// Operational state: UP (HAProxy's RUNNING or STOPPING) or DOWN (STOPPED). Checks, the
    /// agent, `set server B/S health` and maintenance move it.
    pub up: bool,
    /// HAProxy's NOLB (`set server B/S health stopping`): UP, but no new connections.
    pub stopping: bool,
    /// The regular check's rise/fall counter `h` in `[0, rise + fall - 1]` (UP when >= rise).
    pub check_h: u32,
    /// The regular check runs (configured with `check` and not `disable health`).
    pub check_enabled: bool,
    /// The agent's verdict: false after `down`/`fail`/`stopped` (HAProxy's `DOWN (agent)`).
    pub agent_up: bool,
    /// The agent check runs (configured with `agent-check` and not `disable agent`).
    pub agent_enabled: bool,
    /// Effective weight 0..=256 (slowstart's ramp included).
    pub weight: u32,
    /// The weight the ramp aims at: the configured one, or the one set at run time.
    pub user_weight: u32,
    /// `Runtime` once the weight was set by an operator or the agent.
    pub weight_origin: Origin,
    /// Where new connections go.
    pub addr: SocketAddr,
    /// Who gave that address.
    pub addr_origin: AddrOrigin,
    /// `maxconn` in force (the configured one, or the agent's `maxconn:N`); 0 = unlimited.
    pub maxconn: u32,
    /// `minconn`: below `maxconn`, the limit grows with the backend's load from here to
    /// `maxconn` at `fullconn` (see [`ServerEntry::limit`]); equal to it, a static limit.
    /// A run-time `maxconn` moves both when they are equal, as HAProxy's.
    pub minconn: u32,
    /// When the server last went DOWN, while it is DOWN (`downtime`).
    pub down_since: Option<Instant>,
    /// Slow start in progress since then (HAProxy's STARTING: the limit, and with a dynamic
    /// algorithm the weight, ramp up).
    pub ramp_start: Option<Instant>,
    /// How far the slow start is, 1..=100 percent (100 outside one): a new connection's
    /// limit is this share of it, at least 1 (see [`ServerEntry::limit`]).
    pub ramp_pct: u32,
    /// `track`: the tracked server lets this one be UP (it is UP, or NOLB). Always true for
    /// a server that tracks none.
    pub track_up: bool,
    /// `track`: the tracked server is NOLB (this one is then NOLB when UP).
    pub tracked_stopping: bool,
    /// Maintenance inherited from the tracked server (HAProxy's `IMAINT`).
    pub via_maint: bool,
    /// Drain inherited from the tracked server (HAProxy's `IDRAIN`).
    pub via_drain: bool,
}

/// What a tracking server takes from the server it tracks (see [`ServerState::track_view`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackView {
    /// UP (NOLB included), not in maintenance.
    pub up: bool,
    /// NOLB.
    pub stopping: bool,
    /// In maintenance of any kind (its trackers inherit it).
    pub maint: bool,
    /// Draining, forced or inherited (its trackers inherit it).
    pub drain: bool,
}

impl TrackView {
    /// A server UP and ready: nothing to inherit.
    pub const READY: Self = Self {
        up: true,
        stopping: false,
        maint: false,
        drain: false,
    };
}

impl ServerState {
    /// A server as HAProxy starts it from its configuration: `disabled` ones in MAINT; UP
    /// (a checked one at `h = rise`: one failure from DOWN), at its configured weight.
    pub fn initial(conf: &Server) -> Self {
        let rise = conf.health.rise.max(1);
        let (maxconn, minconn) = Server::settled_limits(conf.maxconn, conf.minconn);
        Self {
            admin: if conf.disabled {
                AdminState::Maint
            } else {
                AdminState::Ready
            },
            admin_origin: Origin::Config,
            resolution_maint: conf.unresolved,
            up: !conf.disabled && !conf.unresolved,
            stopping: false,
            check_h: if conf.disabled || conf.unresolved {
                0
            } else {
                rise
            },
            check_enabled: conf.health.check,
            agent_up: true,
            agent_enabled: conf.health.agent.enabled,
            weight: conf.weight,
            user_weight: conf.weight,
            weight_origin: Origin::Config,
            addr: conf.addr,
            addr_origin: AddrOrigin::Config,
            maxconn,
            minconn,
            down_since: None,
            ramp_start: None,
            ramp_pct: 100,
            track_up: true,
            tracked_stopping: false,
            via_maint: false,
            via_drain: false,
        }
    }

    /// A run-time `maxconn` (runtime API, the agent): a static limit (`minconn` equal to it)
    /// stays static, a dynamic one keeps its `minconn`, as HAProxy's
    /// `server_parse_maxconn_change_request`.
    pub fn set_maxconn(&mut self, m: u32) {
        if self.minconn == self.maxconn {
            self.minconn = m;
        }
        self.maxconn = m;
    }

    /// In maintenance of any kind (an operator's, DNS's, or the tracked server's).
    pub fn in_maint(&self) -> bool {
        self.admin == AdminState::Maint || self.resolution_maint || self.via_maint
    }

    /// Whether a connection that `use-server` or `stick match|on` assigns to this server is
    /// sent here: when it is neither DOWN nor in maintenance (HAProxy's `cur_state !=
    /// SRV_ST_STOPPED`: a draining server takes it), or, with `persist` (`option persist`, a
    /// `force-persist` rule), in any state but without an address (DNS left it none).
    pub fn takes_assignment(&self, persist: bool) -> bool {
        (self.up && !self.in_maint()) || (persist && !self.resolution_maint)
    }

    /// Draining: forced (an operator, the agent) or inherited from the tracked server.
    pub fn draining(&self) -> bool {
        self.admin == AdminState::Drain || self.via_drain
    }

    /// What the servers tracking this one take from it.
    pub fn track_view(&self) -> TrackView {
        let maint = self.in_maint();
        TrackView {
            up: self.up && !maint,
            stopping: self.up && self.stopping && !maint,
            maint,
            drain: self.draining(),
        }
    }
}

impl ServerCounters {
    /// `clear counters`: the highest values (`smax`, the session rate's highest); with `all`,
    /// the totals too (sessions, bytes, errors, retries, failed checks, DOWN transitions, time
    /// DOWN, the last session), as HAProxy's. What is live now (`cur`) stays.
    pub fn clear(&self, all: bool) {
        self.max.store(0, Ordering::Relaxed);
        self.sess_rate.clear_max();
        if !all {
            return;
        }
        for c in [
            &self.total,
            &self.last_session,
            &self.bytes_in,
            &self.bytes_out,
            &self.connect_errors,
            &self.retries,
            &self.redispatches,
            &self.downtime,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for info in [&self.check, &self.agent] {
            info.rcu(|i| CheckInfo {
                failed: 0,
                down_transitions: 0,
                ..CheckInfo::clone(i)
            });
        }
    }
}

/// A `maxconn` given at run time (`set maxconn server`, the agent's `maxconn:N`), with
/// HAProxy's messages (`server_parse_maxconn_change_request`). A sign is refused (HAProxy's
/// `strtol` would take `-3` as a limit of 4 billion).
pub fn parse_maxconn(v: &str) -> Result<u32, String> {
    if v.is_empty() {
        return Err("Require <maxconn>.".to_owned());
    }
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("maxconn string empty or preceded by garbage".to_owned());
    }
    if digits < v.len() {
        return Err("Trailing garbage in maxconn string".to_owned());
    }
    v.parse::<u32>()
        .map_err(|_| "Trailing garbage in maxconn string".to_owned())
}

/// What a backend's servers' dynamic `maxconn` reads of it: its sessions now (HAProxy's
/// `beconn`: counted from the backend's choice, queued ones included, to the session's end)
/// and its `fullconn`.
#[derive(Debug, Default)]
pub struct BackendLoad {
    pub sessions: Arc<ProxyCounters>,
    /// `fullconn`, or HAProxy's default (see `Config::fullconn`); at least 1.
    pub fullconn: u32,
}

/// One server in a snapshot.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    /// Its `server` line, as configured (run-time values are in `state`).
    pub conf: Arc<Server>,
    /// Its counters (the same `Arc` in every snapshot, and across reloads).
    pub counters: Arc<ServerCounters>,
    /// Its state in this snapshot.
    pub state: ServerState,
    /// Its backend's load, for a dynamic `maxconn` (set by the table that holds it).
    pub load: Option<Arc<BackendLoad>>,
}

impl ServerEntry {
    /// A server as HAProxy starts it, with fresh counters.
    pub fn new(conf: &Server) -> Self {
        Self {
            conf: Arc::new(conf.clone()),
            counters: Arc::default(),
            state: ServerState::initial(conf),
            load: None,
        }
    }

    /// Whether it may be given new connections: UP (not NOLB), `Ready`, resolved, weight > 0.
    pub fn usable(&self) -> bool {
        self.state.up
            && !self.state.stopping
            && !self.state.in_maint()
            && !self.state.draining()
            && self.state.weight > 0
    }

    /// Where new connections to it go.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// Its `maxconn` in force; 0 = unlimited.
    pub fn maxconn(&self) -> u32 {
        self.state.maxconn
    }

    /// The limit a new connection is held to now (0 = none), HAProxy's `srv_dynamic_maxconn`:
    /// `maxconn`, or with a `minconn` below it, the backend's share of `fullconn` applied to
    /// `maxconn` (`beconn * maxconn / fullconn`), never below `minconn`, `maxconn` once the
    /// backend holds `fullconn` sessions; during a slow start, its share of that (at least 1).
    pub fn limit(&self) -> u32 {
        let max = self.dynamic_limit();
        let pct = self.state.ramp_pct;
        if max == 0 || pct >= 100 {
            return max;
        }
        // Slow start: a share of it, never below 1.
        u32::try_from(u64::from(max) * u64::from(pct) / 100)
            .unwrap_or(max)
            .max(1)
    }

    /// [`Self::limit`] before a slow start's share.
    fn dynamic_limit(&self) -> u32 {
        let (max, min) = (self.state.maxconn, self.state.minconn);
        if min == max {
            return max;
        }
        let Some(load) = &self.load else {
            return max;
        };
        // Relaxed: an estimate of the load, as HAProxy's unlocked read of `beconn`.
        let be = load.sessions.cur.load(Ordering::Relaxed);
        if be >= load.fullconn {
            return max;
        }
        let share = u64::from(be) * u64::from(max) / u64::from(load.fullconn.max(1));
        min.max(u32::try_from(share).unwrap_or(max))
    }

    /// Whether it is at its limit (never, with maxconn 0 = unlimited).
    pub fn is_full(&self) -> bool {
        let max = self.limit();
        // Relaxed: an early-out estimate; try_reserve decides.
        max != 0 && self.counters.cur.load(Ordering::Relaxed) >= max
    }

    /// Takes a connection slot (`cur += 1`) unless that would exceed its limit.
    pub(crate) fn try_reserve(&self) -> bool {
        let max = self.limit();
        // SeqCst on cur (here and in the release) pairs with SeqCst on the queue length: a
        // releaser decrements cur then reads the queue length, an enqueuer raises the queue
        // length then reads cur here. With a single total order one of them must see the other,
        // so a slot cannot be freed unseen while a waiter goes to sleep (no lost wake-up).
        // The maxconn bound itself only needs the atomicity of the compare-and-swap.
        let mut cur = self.counters.cur.load(Ordering::SeqCst);
        loop {
            if max != 0 && cur >= max {
                return false;
            }
            match self.counters.cur.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    // Relaxed: a statistic, read independently.
                    self.counters.max.fetch_max(cur + 1, Ordering::Relaxed);
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }
}
