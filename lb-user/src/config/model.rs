//! The validated, immutable configuration: what `config::load` produces from haproxy.cfg files
//! and everything else in lb reads. Field docs give HAProxy's defaults and units.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a config item came from: file and 1-based line, kept to the end so that every error and
/// warning can say `FILE:LINE: ...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A whole configuration, after `defaults` have been applied and references resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub global: Global,
    /// Every `frontend`, and the frontend half of every `listen`, in file order.
    pub frontends: Vec<Frontend>,
    /// Every `backend`, and the backend half of every `listen`, in file order.
    pub backends: Vec<Backend>,
    /// Stats pages (`mode http` sections with `stats enable|uri` or the Prometheus exporter).
    pub stats: Vec<StatsProxy>,
    /// `userlist` sections, for stats authentication.
    pub userlists: Vec<Userlist>,
    /// Things accepted but not acted on yet ("not supported yet") and other warnings. Printed by
    /// `lb -c` and at start; never fatal.
    pub warnings: Vec<Warning>,
}

/// A non-fatal diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.loc, self.message)
    }
}

/// The `global` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// `maxconn`: process-wide limit of concurrent client connections. `None` = derived from
    /// `RLIMIT_NOFILE` at start (as HAProxy does).
    pub maxconn: Option<u32>,
    /// `nbthread`: accept/forward threads. `None` = one per CPU.
    pub nbthread: Option<usize>,
    /// `user` (name or numeric uid) to drop to after binding.
    pub user: Option<String>,
    /// `group` (name or numeric gid) to drop to after binding.
    pub group: Option<String>,
    /// `daemon`: fork into the background.
    pub daemon: bool,
    /// `log` lines of the global section, in order.
    pub logs: Vec<LogTarget>,
    /// `stats socket` lines: the runtime API's unix sockets.
    pub stats_sockets: Vec<StatsSocket>,
    /// `stats timeout`: idle timeout of a runtime API connection. Default 10 s.
    pub stats_timeout: Duration,
    /// `stats maxconn`: concurrent runtime API connections per socket. Default 10.
    pub stats_maxconn: u32,
}

/// Access level of a runtime API socket (`level user|operator|admin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CliLevel {
    /// Read non-sensitive statistics only.
    User,
    /// Read everything, non-sensitive changes. HAProxy's default.
    Operator,
    /// Everything (server state, weight, address, killing sessions).
    Admin,
}

/// One `stats socket PATH [mode M] [level L]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSocket {
    pub loc: Loc,
    /// Filesystem path of the unix socket (replaced at start if it exists and is a socket).
    pub path: PathBuf,
    /// `mode`: octal permissions of the socket file. `None` = as created (umask).
    pub mode: Option<u32>,
    /// `level`, default `operator`.
    pub level: CliLevel,
}

/// One `user` of a `userlist`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    /// The password: a crypt(3) hash (`password`) or clear text (`insecure-password`).
    pub password: Password,
}

/// How a user's password is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Password {
    /// `insecure-password P` or `stats auth U:P`: compared as is (in constant time).
    Clear(String),
    /// `password HASH`: a crypt(3) hash (`$6$` SHA-512, `$5$` SHA-256, `$1$` MD5, ...).
    Crypt(String),
}

/// A `userlist NAME` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Userlist {
    pub name: String,
    pub loc: Loc,
    pub users: Vec<UserEntry>,
}

/// A stats page: a `listen`/`frontend` in `mode http` with `stats enable|uri` and/or
/// `http-request use-service prometheus-exporter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsProxy {
    pub name: String,
    pub loc: Loc,
    pub binds: Vec<Bind>,
    /// `stats enable` or `stats uri` seen: the HTML/CSV page is served.
    pub page: bool,
    /// `stats uri`, default `/haproxy?stats`.
    pub uri: String,
    /// `stats realm`, default `HAProxy Statistics`.
    pub realm: String,
    /// `stats auth U:P` users (clear text). Empty with no `userlist` = no authentication.
    pub users: Vec<UserEntry>,
    /// Userlists named by `http_auth(NAME)` in `http-request auth` / `stats http-request auth`.
    pub userlists: Vec<String>,
    /// `stats refresh`: the page's auto-refresh period.
    pub refresh: Option<Duration>,
    /// `stats admin if TRUE` (or `if { http_auth(L) }`): authenticated users may change
    /// server states from the page.
    pub admin: bool,
    /// `stats hide-version`.
    pub hide_version: bool,
    /// Path of the Prometheus exporter (`use-service prometheus-exporter if { path P }`);
    /// `Some("")` = every path that is not the stats page.
    pub prometheus: Option<String>,
    /// `maxconn` of the section. `None` = 100 for the dedicated stats server.
    pub maxconn: Option<u32>,
    /// `timeout client`: time to receive a whole request, capped at 10 s. `None` = 10 s.
    pub timeout: Option<Duration>,
}

/// One `log` line, kept as written (`log global` is resolved when used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub loc: Loc,
    /// The words after `log`, e.g. `["127.0.0.1:514", "local0", "notice"]` or `["global"]`.
    pub args: Vec<String>,
}

/// Socket timeouts. `None` = no timeout (HAProxy warns about missing client/server/connect
/// timeouts; so does lb).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeout connect`: bound on establishing the backend connection (each try).
    pub connect: Option<Duration>,
    /// `timeout client`: inactivity on the client side.
    pub client: Option<Duration>,
    /// `timeout server`: inactivity on the server side.
    pub server: Option<Duration>,
    /// `timeout tunnel`: inactivity once both sides are connected; replaces client/server.
    pub tunnel: Option<Duration>,
    /// `timeout queue`: longest wait in a server queue. `None` = use `connect`.
    pub queue: Option<Duration>,
    /// `timeout client-fin`: inactivity on the client side once it has sent its FIN.
    pub client_fin: Option<Duration>,
    /// `timeout server-fin`: inactivity on the server side once it has sent its FIN.
    pub server_fin: Option<Duration>,
    /// `timeout check`: health-check read timeout (used by the health issue).
    pub check: Option<Duration>,
}

/// TCP keepalive on one side (`option tcpka|clitcpka|srvtcpka` and `clitcpka-*`/`srvtcpka-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// `SO_KEEPALIVE` on.
    pub enabled: bool,
    /// `TCP_KEEPIDLE`. Default 110 s when enabled and not set.
    pub idle: Duration,
    /// `TCP_KEEPINTVL`. Default 30 s.
    pub intvl: Duration,
    /// `TCP_KEEPCNT`. Default 3.
    pub cnt: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            enabled: false,
            idle: Duration::from_secs(110),
            intvl: Duration::from_secs(30),
            cnt: 3,
        }
    }
}

/// One `bind` line address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub loc: Loc,
    /// `*:port` and `:port` become `0.0.0.0:port`; `[::]:port` binds IPv6 (and v4-mapped).
    pub addr: SocketAddr,
    /// `name X`.
    pub name: Option<String>,
}

/// A `frontend`, or the frontend half of a `listen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    pub name: String,
    pub loc: Loc,
    pub binds: Vec<Bind>,
    /// Index into `Config::backends` (resolved from `default_backend`, or the `listen`'s own
    /// backend half).
    pub backend: usize,
    /// Frontend `maxconn`. `None` = the global one.
    pub maxconn: Option<u32>,
    pub timeouts: Timeouts,
    /// Client-side keepalive (`option tcpka`/`clitcpka`).
    pub keepalive: Keepalive,
}

/// `balance` algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin, weights changeable at runtime. HAProxy's default.
    RoundRobin,
    /// Weighted round robin over a precomputed map; runtime weight only 0 or 100 %.
    StaticRr,
    /// Lowest (current + queued + 1) / weight; ties rotate.
    LeastConn,
    /// Lowest server id that is below its maxconn.
    First,
    /// Hash of the client address (`hash-type` chooses map-based or consistent).
    Source,
    /// `random[(N)]`: power of N choices (N = `draws`, default 2).
    Random { draws: u32 },
}

/// `hash-type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashType {
    /// Default: hash modulo the total weight; most clients move when a server changes.
    #[default]
    MapBased,
    /// Consistent hashing ring: few clients move when a server changes.
    Consistent,
}

/// A `backend`, or the backend half of a `listen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub loc: Loc,
    /// Position in `Config::backends`, used as the proxy id (HAProxy's `iid`), starting at 1.
    pub id: u32,
    pub balance: Balance,
    pub hash_type: HashType,
    pub servers: Vec<Server>,
    pub timeouts: Timeouts,
    /// `retries`: connect re-tries after the first attempt. Default 3.
    pub retries: u32,
    /// `option redispatch`: the last retry goes to another server.
    pub redispatch: bool,
    /// `option allbackups`: all usable backups share the load, not only the first.
    pub allbackups: bool,
    /// Server-side keepalive (`option tcpka`/`srvtcpka`).
    pub keepalive: Keepalive,
}

/// One `server` line, with `default-server` applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub loc: Loc,
    /// `id` keyword or position in the backend, starting at 1.
    pub id: u32,
    /// Resolved address (hostnames resolved with the system resolver at load time).
    pub addr: SocketAddr,
    /// The name as written when it was a hostname, for DNS re-resolution later.
    pub fqdn: Option<String>,
    /// `weight` 0..=256, default 1.
    pub weight: u32,
    /// `backup`.
    pub backup: bool,
    /// `maxconn`; 0 = no limit.
    pub maxconn: u32,
    /// `maxqueue`; 0 = no limit.
    pub maxqueue: u32,
    /// `disabled`: starts in MAINT.
    pub disabled: bool,
    /// `port`: health-check port (used by the health issue).
    pub check_port: Option<u16>,
}
