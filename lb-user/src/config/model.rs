//! The validated, immutable configuration: what `config::load` produces from haproxy.cfg files
//! and everything else in lb reads. Field docs give HAProxy's defaults and units.

use std::fmt;

pub use crate::acl::ProcVars;
pub use crate::rules::ProxyRules;

use super::checks::{CheckKind, ExternalCheck, HealthParams};
use super::tls::{BindTls, BindTlsDefaults};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
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
    /// The `proc` scope of variables (`set-var(proc.x)`): one per loaded configuration, as one
    /// per HAProxy process.
    pub proc_vars: Arc<ProcVars>,
    /// Every `stick-table`, in file order (named after its proxy).
    pub tables: Vec<crate::stick::TableDef>,
    /// The pattern files and inline pattern lists of its ACLs and maps, which the runtime API
    /// reads and changes (`show acl`, `add map`...).
    pub pat_refs: Arc<crate::acl::patref::PatRefs>,
}

impl Config {
    /// Backend `b`'s `fullconn`: its own, else HAProxy's default (`proxy_adjust_all_maxconn`):
    /// a tenth, rounded up, of the `maxconn` of every frontend that may send it connections
    /// (its `default_backend`, a `listen`'s own, or a `use_backend` naming it), a frontend
    /// without one counting the process's `maxconn`; at least 1.
    #[must_use]
    pub fn fullconn(&self, b: usize, maxconn: u32) -> u32 {
        if let Some(f) = self.backends[b].fullconn {
            return f.max(1);
        }
        let reaching: u64 = self
            .frontends
            .iter()
            .filter(|fe| {
                fe.backend == Some(b)
                    || fe.rules.use_backend.iter().any(|sw| {
                        matches!(sw.target, crate::rules::Target::Backend { index, .. } if index == b)
                    })
            })
            .map(|fe| u64::from(fe.maxconn.unwrap_or(maxconn)))
            .sum();
        u32::try_from(reaching.div_ceil(10))
            .unwrap_or(u32::MAX)
            .max(1)
    }
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
    /// `maxconnrate`: connections the process accepts per second, every frontend. `None`: no
    /// limit.
    pub maxconnrate: Option<u32>,
    /// `maxsessrate`: sessions the process lets in per second, every frontend. `None`: no
    /// limit.
    pub maxsessrate: Option<u32>,
    /// `nbthread`: accept/forward threads. `None` = one per CPU.
    pub nbthread: Option<usize>,
    /// `cpu-map` lines, in order (see [`super::cpu_map`]).
    pub cpu_map: Vec<super::cpu_map::CpuMap>,
    /// `user` (name or numeric uid) to drop to after binding.
    pub user: Option<String>,
    /// `group` (name or numeric gid) to drop to after binding.
    pub group: Option<String>,
    /// `daemon` (or `-D`): fork into the background once bound, the parent writing the pid file
    /// and exiting.
    pub daemon: bool,
    /// `quiet` (or `-q`): warnings are not printed when the configuration is loaded.
    pub quiet: bool,
    /// `log` lines of the global section, in order.
    pub logs: Vec<LogTarget>,
    /// `spread-checks` (percent, 0..=50): random jitter added to or removed from check
    /// intervals. Default 0.
    pub spread_checks: u32,
    /// `external-check`: allows `option external-check` (HAProxy refuses it otherwise).
    pub external_check: bool,
    /// `set-dumpable`: after the privilege drop, no file-size or core-size limit and the
    /// process dumpable again, so that a crash leaves a core (HAProxy's). Read at start.
    pub set_dumpable: bool,
    /// `strict-limits`: a file-descriptor limit that cannot be raised to what `maxconn` needs
    /// stops the start (and refuses a reload) instead of a warning. HAProxy 2.6 has it on by
    /// default; lb keeps the warning unless asked (`no strict-limits` is lb's default).
    pub strict_limits: bool,
    /// `resolvers` sections, in file order.
    pub resolvers: Vec<Resolvers>,
    /// `log-tag`: the syslog tag (program name). `None` = `lb`.
    pub log_tag: Option<String>,
    /// `log-send-hostname [NAME]`: the host name put in syslog headers (the system's when
    /// no name is given). `None` = no host name, as HAProxy by default.
    pub log_send_hostname: Option<String>,
    /// `stats socket` lines: the runtime API's unix sockets.
    pub stats_sockets: Vec<StatsSocket>,
    /// `stats timeout`: idle timeout of a runtime API connection. Default 10 s.
    pub stats_timeout: Duration,
    /// `stats maxconn`: concurrent runtime API connections, all sockets together (HAProxy's
    /// CLI frontend). Default 10.
    pub stats_maxconn: u32,
    /// `server-state-file PATH`: the file, in the format of the runtime API's `show servers
    /// state`, whose lines are applied at start to the backends with `load-server-state-from-file
    /// global`. Relative to `server_state_base` unless absolute: see
    /// [`Global::server_state_path`]. `None` (the default) = no global state file.
    pub server_state_file: Option<PathBuf>,
    /// `server-state-base DIR`: the directory of relative state-file paths, the global one and
    /// the backends' `local` ones. `None` (the default) = relative paths are relative to the
    /// working directory.
    pub server_state_base: Option<PathBuf>,
    /// `tune.bufsize`: the size of a buffer, bytes. Default 16384.
    pub bufsize: usize,
    /// `tune.maxrewrite`: the part of a buffer kept free while rules inspect it, bytes
    /// (default 1024, at most half the buffer): content rules see at most `bufsize -
    /// maxrewrite` bytes, as in HAProxy.
    pub maxrewrite: usize,
    /// `pidfile PATH`: where the process id is written at start (`-p` overrides it).
    pub pidfile: Option<PathBuf>,
    /// `chroot DIR`: entered after binding and loading the BPF program, before serving.
    pub chroot: Option<PathBuf>,
    /// `maxpipes N`: the most splice pipes open at once, process-wide. `None` = no limit of
    /// lb's own (HAProxy's default is maxconn/4; lb's flows lease pipes only while bytes move).
    pub maxpipes: Option<u32>,
    /// `node NAME`: this node's name, shown by `stats show-node`. `None` = the host name.
    pub node: Option<String>,
    /// `description TEXT`: shown by `stats show-desc`.
    pub description: Option<String>,
    /// `ulimit-n N`: `RLIMIT_NOFILE` set at start (soft and hard), as HAProxy. `None` = the soft
    /// limit is raised to the hard one.
    pub ulimit_n: Option<u32>,
    /// `hard-stop-after T`: how long a soft-stopped process (`SIGUSR1`, `-sf`) keeps its
    /// established connections before it closes them and exits. `None` (the default) = until
    /// they end.
    pub hard_stop_after: Option<Duration>,
    /// `ca-base DIR`: the directory of relative `ca-file` paths. `None` = as written.
    pub ca_base: Option<PathBuf>,
    /// `crt-base DIR`: the directory of relative `crt` paths. `None` = as written.
    pub crt_base: Option<PathBuf>,
    /// `ssl-default-bind-*`.
    pub ssl_default_bind: BindTlsDefaults,
    /// `ssl-server-verify none|required`: the default of servers' `verify`. Default `required`
    /// (true), as HAProxy.
    pub ssl_server_verify: bool,
    /// `ssl-default-server-ciphers`, `-ciphersuites`, `-options`: what servers' TLS settings
    /// leave unset (see [`crate::tls::ciphers::Settings::inherit`]).
    pub ssl_default_server: crate::tls::ciphers::Settings,
    /// `tune.lb.sockmap-backlog SIZE` (an lb extension): the bytes one direction of a flow in
    /// the kernel maps may have forwarded and not yet taken by the receiving socket, past which
    /// lb stops forwarding it in the kernel (see the README's sockmap section). At least 64 KiB.
    /// `None` (the default) = 4 MiB. Read at start.
    pub sockmap_backlog: Option<u64>,
}

impl Global {
    /// How many bytes content rules can inspect: `tune.bufsize` less `tune.maxrewrite` (which
    /// HAProxy caps at half the buffer).
    #[must_use]
    pub fn inspect_limit(&self) -> usize {
        self.bufsize - self.maxrewrite.min(self.bufsize / 2)
    }

    /// Where a server-state file named `name` is, as `HAProxy` resolves it: `name` itself when it
    /// is absolute or when there is no `server-state-base`, else the base joined with `name`.
    #[must_use]
    pub fn server_state_path(&self, name: &Path) -> PathBuf {
        match &self.server_state_base {
            Some(base) if !name.is_absolute() => base.join(name),
            _ => name.to_path_buf(),
        }
    }

    /// The state file a backend reads at start (`None`: it reads none).
    #[must_use]
    pub fn server_state_file_of(&self, backend: &Backend) -> Option<PathBuf> {
        match &backend.server_state {
            ServerStateFrom::None => None,
            ServerStateFrom::Global => self
                .server_state_file
                .as_deref()
                .map(|f| self.server_state_path(f)),
            ServerStateFrom::Local(name) => Some(self.server_state_path(Path::new(name))),
        }
    }
}

/// A `resolvers` section: the nameservers and timers used to re-resolve server hostnames.
/// The last one is HAProxy's implicit `default` (nameservers of `/etc/resolv.conf`, at
/// `<internal>:0`) unless the file has a section of that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolvers {
    pub name: String,
    pub loc: Loc,
    /// `nameserver NAME IP:PORT` lines and, where `parse-resolv-conf` is, the nameservers of
    /// `/etc/resolv.conf` (read at load, port 53, named by their address as HAProxy 2.6
    /// names them), in order.
    pub nameservers: Vec<(String, SocketAddr)>,
    /// `parse-resolv-conf`: also use the nameservers of `/etc/resolv.conf` (port 53).
    pub parse_resolv_conf: bool,
    /// `resolve_retries`: queries sent before a resolution counts as timed out. Default 3.
    pub resolve_retries: u32,
    /// `timeout resolve`: interval between resolutions when no other timer applies (and
    /// between failed ones). Default 1 s.
    pub timeout_resolve: Duration,
    /// `timeout retry`: how long to wait for an answer before re-sending. Default 1 s.
    pub timeout_retry: Duration,
    /// `hold valid`: how long a valid answer is used before asking again. Default 10 s.
    pub hold_valid: Duration,
    /// `hold nx`: how long the last valid address is kept after NXDOMAIN. Default 30 s.
    pub hold_nx: Duration,
    /// `hold other`: same, after other errors. Default 30 s.
    pub hold_other: Duration,
    /// `hold refused`: same, after REFUSED. Default 30 s.
    pub hold_refused: Duration,
    /// `hold timeout`: same, after no answer at all. Default 30 s.
    pub hold_timeout: Duration,
    /// `hold obsolete`: how long an SRV record missing from the answers keeps its server.
    /// Default 0.
    pub hold_obsolete: Duration,
    /// `accepted_payload_size`: the EDNS0 UDP payload size announced. Default 512.
    pub accepted_payload_size: u16,
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

impl CliLevel {
    /// The level as a `stats socket ... level` names it (`show cli level`).
    pub fn name(self) -> &'static str {
        match self {
            CliLevel::User => "user",
            CliLevel::Operator => "operator",
            CliLevel::Admin => "admin",
        }
    }
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
    /// `expose-fd listeners`: the socket answers `_getsocks`, handing the listening sockets to
    /// a new lb (or HAProxy) started with `-x PATH`. Default off.
    pub expose_fd: bool,
    /// HAProxy's master CLI (`-S`, not a configuration line): its commands, `@` prefixes
    /// to reach the runtime API, default level `admin`.
    pub master: bool,
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
    /// `stats hide-version`: no version in the page's title.
    pub hide_version: bool,
    /// `stats show-legends`: each server's address, check and settings in a tooltip.
    pub show_legends: bool,
    /// `stats show-node [NAME]`: the node name in the page's heading; `Some("")` = the global
    /// `node`, else the host name.
    pub show_node: Option<String>,
    /// `stats show-desc [TEXT]`: a description in the heading; `Some("")` = the global
    /// `description`.
    pub show_desc: Option<String>,
    /// Path of the Prometheus exporter (`use-service prometheus-exporter if { path P }`);
    /// `Some("")` = every path that is not the stats page.
    pub prometheus: Option<String>,
    /// `maxconn` of the section. `None` = the global `maxconn`, as HAProxy gives a proxy.
    pub maxconn: Option<u32>,
    /// `timeout client`: inactivity while a request arrives, and the bound on writing the
    /// answer.
    pub timeout: Option<Duration>,
    /// `timeout http-request` (the section's, else its defaults'): time to receive a whole
    /// request. `None` = a few seconds (see `stats::http`).
    pub request_timeout: Option<Duration>,
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
    /// `timeout http-request`: time to receive a whole HTTP request. Used by stats pages only
    /// (the one `mode http` lb serves); a TCP proxy ignores it.
    pub http_request: Option<Duration>,
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
    /// `accept-proxy`: every connection starts with a PROXY protocol header (v1 or v2), whose
    /// addresses replace the connection's own.
    pub accept_proxy: bool,
    /// `maxconn N` (N > 0): at most N connections accepted on this address at a time, beside
    /// the frontend's and the process's limits; at it, the address stops accepting and
    /// clients wait in its backlog.
    pub maxconn: Option<u32>,
    /// Socket options of the listener.
    pub opts: BindOptions,
    /// `ssl crt ...`: TLS termination (`None`: plain TCP).
    pub tls: Option<Arc<BindTls>>,
}

/// The socket options a `bind` line asks for, applied where the listener is created
/// (`listener::bind_listener`). They take effect when an address is first bound: a reload
/// keeps the listening socket of an address it keeps, options included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// `v6only` (`Some(true)`) or `v4v6` (`Some(false)`): `IPV6_V6ONLY`. `None` = lb's default:
    /// `[::]` takes IPv4 too (Linux's default, which HAProxy keeps).
    pub v6only: Option<bool>,
    /// `defer-accept`: `TCP_DEFER_ACCEPT` of 1 s (a connection is accepted once it has data).
    pub defer_accept: bool,
    /// `tfo`: `TCP_FASTOPEN` with the listen backlog as queue length.
    pub tfo: bool,
    /// `interface NAME`: `SO_BINDTODEVICE`.
    pub interface: Option<String>,
    /// `transparent`: `IP_TRANSPARENT`/`IPV6_TRANSPARENT` (binding foreign addresses, TPROXY).
    pub transparent: bool,
    /// The frontend's `option tcp-smart-accept` (a proxy option that `HAProxy` too applies to
    /// each of the proxy's listeners): `TCP_QUICKACK` off on the listener.
    pub smart_accept: bool,
    /// `mss N`: a positive `N` is the MSS the listener advertises (`TCP_MAXSEG`), which the
    /// connections it accepts keep. A negative one (`HAProxy`: lower each accepted connection's
    /// MSS by `-N`) is kept but does nothing, with a warning: on Linux a connection's MSS is
    /// settled by its handshake, and `TCP_MAXSEG` set after the accept, as `HAProxy` does it,
    /// changes nothing.
    pub mss: Option<i32>,
    /// `tcp-ut`: `TCP_USER_TIMEOUT` of the listener, inherited by the connections it accepts.
    pub user_timeout: Option<std::time::Duration>,
    /// The listen backlog, `HAProxy`'s rule (`listener_backlog`): the line's `backlog`, else
    /// its frontend's `backlog`, else the line's `maxconn`, else its frontend's `maxconn`, else the global `maxconn`
    /// given in the configuration; `None`: [`BindOptions::DEFAULT_BACKLOG`]. The kernel caps
    /// it at `net.core.somaxconn`.
    pub backlog: Option<u32>,
}

impl BindOptions {
    /// The listen backlog without any `backlog` or `maxconn` in the configuration (`HAProxy`
    /// then passes the global `maxconn` it derives from the fd limit, which the kernel caps
    /// at `net.core.somaxconn`, 4096 by default).
    pub const DEFAULT_BACKLOG: u32 = 4096;

    /// The backlog `listen(2)` gets (and the TFO queue with `tfo`).
    #[must_use]
    pub fn listen_backlog(&self) -> i32 {
        i32::try_from(self.backlog.unwrap_or(Self::DEFAULT_BACKLOG)).unwrap_or(i32::MAX)
    }
}

/// A `frontend`, or the frontend half of a `listen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    pub name: String,
    pub loc: Loc,
    pub binds: Vec<Bind>,
    /// Index into `Config::backends` of the backend connections go to when no `use_backend`
    /// rule sends them elsewhere: `default_backend`, or the `listen`'s own backend half. `None`:
    /// such connections are closed, as HAProxy closes them in tcp mode.
    pub backend: Option<usize>,
    /// A `listen`'s own backend half (its rules are the frontend's: not run twice).
    pub own_backend: Option<usize>,
    /// ACLs, `tcp-request`/`tcp-response` rules, `use_backend`, `use-server` (a `listen`'s are
    /// shared with its backend half).
    pub rules: Arc<ProxyRules>,
    /// Frontend `maxconn`. `None` = the global one.
    pub maxconn: Option<u32>,
    pub timeouts: Timeouts,
    /// Client-side keepalive (`option tcpka`/`clitcpka`).
    pub keepalive: Keepalive,
    /// Where this frontend's logs go: its `log` lines (inherited from `defaults` unless it has
    /// its own), with `log global` replaced by the global ones; empty after `no log`.
    pub logs: Vec<LogTarget>,
    /// `option tcplog` or `log-format`: one line per connection, at its end, in this format.
    /// `None`: HAProxy's `Connect from` line at accept.
    pub log_format: Option<Arc<crate::log_format::LogFormat>>,
    /// `log-tag`: the syslog tag of its session lines; `None` = the global one.
    pub log_tag: Option<String>,
    /// `description`: shown beside its name on the stats page.
    pub description: Option<String>,
    /// `option dontlognull`: no line for connections where the client sent nothing.
    pub dontlognull: bool,
    /// `option dontlog-normal`: only sessions that ended in error (or were re-tried or
    /// redispatched) are logged.
    pub dontlog_normal: bool,
    /// `option log-separate-errors`: such sessions are logged at `err`, not `info`.
    pub log_separate_errors: bool,
    /// `option logasap`: a session is logged once its server connection is established, not
    /// at its end (`%Tt`, `%Tu` and `%B` then carry a `+`).
    pub logasap: bool,
    /// `rate-limit sessions N`: new sessions per second the frontend lets in; over that its
    /// listeners wait (clients stay in the backlog). `None`: no limit.
    pub rate_limit_sessions: Option<u32>,
    /// `option nolinger`: its listening sockets get `SO_LINGER` 0, which the client sockets
    /// they accept inherit, so that closing a client connection not already closed on both
    /// sides sends a reset, dropping what the client has not received (HAProxy's
    /// `BC_O_NOLINGER`). Set, or cleared, on the listening sockets at each start and reload.
    pub nolinger: bool,
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
    /// Hash of the client address (`hash-type` chooses map-based, consistent or maglev).
    Source,
    /// `balance hash <expr>`: hash of a sample; lb knows the expression `src` (the client
    /// address as bytes, hashed with the `hash-type` function).
    Hash(HashExpr),
    /// `random[(N)]`: power of N choices (N = `draws`, default 2).
    Random { draws: u32 },
    /// `rdp-cookie[(NAME)]`: the hash of an RDP cookie (`mstshash` by default, the user name
    /// `mstsc` sends; named in [`Backend::balance_rdp_cookie`]) looks up the `hash-type` table;
    /// a connection without one takes a round-robin turn.
    RdpCookie,
}

/// The sample expressions of `balance hash <expr>` that lb evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashExpr {
    /// `src`: the client's address, 4 bytes (IPv4) or 16 (IPv6), network order.
    Src,
}

/// `hash-type <method> [<function> [avalanche]]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashType {
    pub method: HashMethod,
    /// Hashes the key of `balance hash <expr>` (HAProxy's default: sdbm). `balance source`
    /// does not use it: HAProxy folds the address into 32 bits instead.
    pub function: HashFunction,
    /// `avalanche`: the key's hash goes through a 32-bit mixing step (HAProxy's `full_hash`)
    /// before the lookup. On by default with `consistent` (and `maglev`) when no function is
    /// named, as in HAProxy.
    pub avalanche: bool,
}

/// How a hash is mapped to a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashMethod {
    /// Default: a static map indexed by hash modulo the total weight; most clients move when a
    /// server changes.
    #[default]
    MapBased,
    /// HAProxy's consistent-hashing tree: few clients move when a server changes.
    Consistent,
    /// lb extension (HAProxy has no such method): Google's Maglev lookup table.
    Maglev,
}

/// The hash function of `hash-type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashFunction {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
    /// `none` (HAProxy 2.8+): no hashing; the key's text is read as an integer.
    None,
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
    /// `option tcp-smart-connect`: `TCP_QUICKACK` off before a connect when bytes wait to be
    /// sent, so that the handshake's last ACK leaves with them.
    pub smart_connect: bool,
    /// `option nolinger`: the client's FIN is not passed on to a server that has not sent its
    /// own; the flow ends and the server is reset (HAProxy's `SC_FL_NOLINGER` on the server
    /// side, see `dataplane::pass_fin`).
    pub nolinger: bool,
    /// `balance rdp-cookie[(NAME)]`: the cookie hashed (`None` with any other algorithm).
    pub balance_rdp_cookie: Option<String>,
    /// `persist rdp-cookie[(NAME)]`: the RDP cookie (`msts` by default) whose value names a
    /// server by its address (`IP.PORT.0000`, as a Windows session broker writes it) sends
    /// the connection there (HAProxy's `tcp_persist_rdp_cookie`).
    pub rdp_cookie_persist: Option<String>,
    /// `option persist`: a connection `use-server` or `stick match|on` assigns to a server goes
    /// there even when the server is DOWN or in maintenance (HAProxy's `PR_O_PERSIST`); with
    /// `option redispatch` its last retry goes elsewhere.
    pub persist: bool,
    /// `option transparent` (or the deprecated `transparent`), and no `balance`: a connection
    /// that no rule sends to a server (`use-server`, `stick`, `force-persist`) goes to the
    /// address the client originally asked for, with no server (HAProxy's `PR_O_TRANSP`
    /// without a balancing algorithm: the servers take no balanced traffic).
    pub transparent: bool,
    /// The backend's own `source` (each server has it too, unless it has its own): where the
    /// connections it sends with no server (`transparent`) come from.
    pub source: Option<Source>,
    /// `option abortonclose`: a connection whose client closes (FIN or reset) while it waits
    /// in the queue is dropped there (`CQ`) instead of being sent to a server later.
    pub abortonclose: bool,
    /// Server-side keepalive (`option tcpka`/`srvtcpka`).
    pub keepalive: Keepalive,
    /// What a health check of this backend's servers does (`option tcp-check`, `option
    /// mysql-check`, ...). Default: a plain TCP connect.
    pub check: CheckKind,
    /// `option log-health-checks`: log every change of check result, not only UP/DOWN.
    pub log_health_checks: bool,
    /// `external-check command` and `external-check path`.
    pub external_check: ExternalCheck,
    /// `load-server-state-from-file` (with `server-state-file-name` for `local`): the
    /// server-state file whose lines for this backend are applied at start. Default: none.
    pub server_state: ServerStateFrom,
    /// Its rules (`tcp-request content`, `tcp-response content`, `use-server`, ACLs); a
    /// `listen`'s are its frontend half's.
    pub rules: Arc<ProxyRules>,
    /// `description`: shown beside its name on the stats page.
    pub description: Option<String>,
    /// `fullconn`: the load at which its servers' dynamic limits reach their `maxconn`.
    /// `None`: HAProxy's default, see [`Config::fullconn`].
    pub fullconn: Option<u32>,
}

/// Where a backend reads its servers' states at start (`load-server-state-from-file`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServerStateFrom {
    /// `none` (the default, also when the keyword is absent): no state is applied.
    #[default]
    None,
    /// `global`: the global `server-state-file` (its lines for this backend). Nothing when the
    /// global section has no `server-state-file` (lb warns, as `HAProxy` does).
    Global,
    /// `local`: a file of this backend's own, named by `server-state-file-name NAME`, or the
    /// backend's name (`server-state-file-name use-backend-name`, `server-state-file-name` with
    /// no argument, or no `server-state-file-name` at all). Relative to `server-state-base`
    /// unless absolute: see [`Global::server_state_path`].
    Local(String),
}

/// One `init-addr` method: a way to find a server's address at start when it is written as a
/// host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitAddr {
    /// `last`: the address the server-state file holds for this server (see
    /// [`ServerStateFrom`]). Satisfied only when the backend loads a state file that has an
    /// address for the server; it is the runtime that reads the file, so at load lb skips it.
    Last,
    /// `libc`: the system resolver (`getaddrinfo`).
    Libc,
    /// `none`: start without an address, in MAINT (resolution), until DNS answers.
    None,
    /// An IP address: start with this fixed address.
    Ip(IpAddr),
}

/// An IP network, `ADDR/PREFIX` (`resolve-net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    /// The address as written (host bits are ignored when matching).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix_len: u8,
}

impl IpNet {
    /// Whether `ip` is in this network (an IPv4 address is never in an IPv6 network, nor the
    /// reverse).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One `server` line, with `default-server` applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub loc: Loc,
    /// `id` keyword or position in the backend, starting at 1.
    pub id: u32,
    /// Resolved address (hostnames resolved with the system resolver at load time). Its port
    /// is 0 when `port_offset` is set.
    pub addr: SocketAddr,
    /// Written without a port, or with `+N`/`-N`: each connection goes to the port the client
    /// connected to, plus this offset (HAProxy's mapped ports). `None` = the fixed port of
    /// `addr`.
    pub port_offset: Option<i32>,
    /// The name as written when it was a hostname, for DNS re-resolution later.
    pub fqdn: Option<String>,
    /// `weight` 0..=256, default 1.
    pub weight: u32,
    /// `backup`.
    pub backup: bool,
    /// `maxconn`; 0 = no limit.
    pub maxconn: u32,
    /// `minconn`: below `maxconn`, a dynamic limit that grows with the backend's load, from
    /// `minconn` to `maxconn` at its `fullconn`. Equal to `maxconn` otherwise (a static limit),
    /// as HAProxy settles them: `minconn` alone, or above `maxconn`, makes both `minconn`;
    /// `maxconn` alone makes both `maxconn`.
    pub minconn: u32,
    /// `maxqueue`; 0 = no limit.
    pub maxqueue: u32,
    /// `disabled`: starts in MAINT.
    pub disabled: bool,
    /// `port`: health-check port (used by the health issue).
    pub check_port: Option<u16>,
    /// Health-check settings.
    pub health: HealthParams,
    /// `resolvers NAME`: re-resolve `fqdn` at run time with that section's nameservers.
    pub resolvers: Option<String>,
    /// `resolve-prefer ipv4|ipv6`: which family is asked for first. Default IPv6, as HAProxy.
    pub resolve_prefer_ipv4: bool,
    /// `resolve-opts ignore-weight`: an SRV record's weight does not change the server's
    /// weight, which stays the configured one or the one set at run time (HAProxy's
    /// `resolv_opts.ignore_weight`). Default off: the record's weight applies.
    pub resolve_ignore_weight: bool,
    /// Started without an address (`init-addr none`): in MAINT (resolution) until DNS answers.
    pub unresolved: bool,
    /// `init-addr METHOD[,METHOD...]`: how the address of a host-name server is found at start,
    /// the first method that succeeds winning. Default `last,libc`, and `last,libc,none` with
    /// `resolvers`, as `HAProxy`.
    pub init_addr: Vec<InitAddr>,
    /// Index in `init_addr` of the method that gave `addr` (or `unresolved`) at load, where
    /// [`InitAddr::Last`] is skipped. `None` when the address was written as an IP (no method
    /// is used). See [`Server::state_addr_wins`].
    pub init_addr_used: Option<usize>,
    /// `resolve-net NET[,NET...]`: among the addresses a DNS answer gives, prefer one in these
    /// networks, in this order (up to 5, as `HAProxy`). Empty (the default) = no preference.
    pub resolve_net: Vec<IpNet>,
    /// `send-proxy` / `send-proxy-v2` (and their `-ssl` forms, `proxy-v2-options`,
    /// `check-send-proxy`): the PROXY header sent to this server.
    pub proxy: SendProxy,
    /// Made by a `server-template` line: DNS gives each server of the template its own
    /// address (or SRV target and port); the ones left without one wait in MAINT
    /// (resolution).
    pub template: bool,
    /// `source`: the server's own (or its `default-server`'s), else its backend's.
    pub source: Option<Source>,
    /// `tfo`: TCP Fast Open to the server: a connection's first bytes ride in its SYN (see
    /// `listener::connect`).
    pub tfo: bool,
    /// `tcp-ut`: `TCP_USER_TIMEOUT` of lb's connections to the server: how long sent bytes may
    /// stay unacknowledged before the kernel aborts the connection (`None`: the kernel's
    /// retransmission limits, ~15 minutes).
    pub tcp_ut: Option<std::time::Duration>,
    /// `track [BACKEND/]SERVER`: the server's state follows that server's (HAProxy's
    /// tracking): DOWN, UP, NOLB, maintenance and drain pass to it.
    pub track: Option<Track>,
    /// `ssl` and the TLS settings its traffic and its TLS checks share (`verify`,
    /// `ca-file`, `sni`...).
    pub tls: super::ServerTls,
    /// The servers that track this one (backend and server indexes), found once every
    /// section is read.
    pub trackers: Vec<(usize, usize)>,
}

/// `track [BACKEND/]SERVER` on a server line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// The tracked server's backend as written (`None`: the server's own).
    pub backend: Option<String>,
    pub server: String,
    /// The tracked server, as backend and server indexes (set once every section is read).
    pub to: (usize, usize),
    /// `BACKEND/SERVER`, as the logs and the stats name it.
    pub name: String,
}

/// `source`: where lb's connections to a server, and its health checks, come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Bound before the connect; port 0: the kernel picks the port at the connect
    /// (`IP_BIND_ADDRESS_NO_PORT`), by the whole 4-tuple.
    pub addr: SocketAddr,
    /// `interface NAME`: the connection leaves through that device (`SO_BINDTODEVICE`).
    pub interface: Option<String>,
    /// `ADDR:LOW-HIGH` on a server: each connection binds a free port of `LOW..=HIGH` (`addr`'s
    /// port is then 0).
    pub ports: Option<(u16, u16)>,
    /// `usesrc`: transparent proxying, the traffic's connections come from a foreign address
    /// (`IP_TRANSPARENT`); `addr`, `ports` and `interface` still serve the health checks
    /// (`interface` the traffic too).
    pub usesrc: Option<UseSrc>,
}

/// `usesrc`: the foreign address lb's connections to a server come from (`HAProxy`'s
/// `CO_SRC_TPROXY_*`). The box must route the server's answers to lb (TPROXY policy routing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseSrc {
    /// `client`: the client's address and port.
    Client,
    /// `clientip`: the client's address, a port the kernel picks at the connect.
    ClientIp,
    /// `ADDR[:PORT]`: that address (port 0: the kernel's choice).
    Addr(SocketAddr),
}

impl UseSrc {
    /// Where a connection of `client` binds: its address, its port with `client`.
    pub fn foreign(self, client: SocketAddr) -> SocketAddr {
        match self {
            Self::Client => client,
            Self::ClientIp => SocketAddr::new(client.ip(), 0),
            Self::Addr(a) => a,
        }
    }
}

impl fmt::Display for UseSrc {
    /// As written after `usesrc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client => f.write_str("client"),
            Self::ClientIp => f.write_str("clientip"),
            Self::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for Source {
    /// As written: `ADDR:PORT`, or `ADDR:LOW-HIGH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ports {
            None => write!(f, "{}", self.addr),
            Some((lo, hi)) if self.addr.is_ipv6() => write!(f, "[{}]:{lo}-{hi}", self.addr.ip()),
            Some((lo, hi)) => write!(f, "{}:{lo}-{hi}", self.addr.ip()),
        }
    }
}

/// A PROXY protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// The PROXY header lb sends to a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendProxy {
    /// `send-proxy` (v1) or `send-proxy-v2`: every connection to the server starts with a
    /// header carrying the client's addresses. `None` (the default): nothing is sent.
    pub version: Option<ProxyVersion>,
    /// `proxy-v2-options crc32c`: a checksum TLV.
    pub crc32c: bool,
    /// `send-proxy-v2-ssl[-cn]`, `proxy-v2-options ssl|cert-*|ssl-cipher`: the SSL TLV (saying
    /// "not TLS": lb does not terminate TLS).
    pub ssl: bool,
    /// `proxy-v2-options authority`: the authority TLV, from the client's own PROXY header.
    pub authority: bool,
    /// `check-send-proxy`: health checks send a header too (v1: the check connection's own
    /// addresses; v2: `LOCAL`), in the server's version (v1 when it has none).
    pub check: bool,
}

impl Server {
    /// `(maxconn, minconn)` as HAProxy settles them (`srv_minmax_conn_apply`): a `minconn`
    /// above `maxconn` (or alone) raises `maxconn` to it, a `maxconn` alone is also the
    /// `minconn`; equal, the limit is static.
    #[must_use]
    pub fn settled_limits(maxconn: u32, minconn: u32) -> (u32, u32) {
        if minconn > maxconn {
            (minconn, minconn)
        } else if minconn == 0 {
            (maxconn, maxconn)
        } else {
            (maxconn, minconn)
        }
    }

    /// The port a connection goes to, for a client that connected to port `dst_port`: the
    /// fixed port, or `dst_port` plus the offset (wrapping as HAProxy's 16-bit port does).
    #[must_use]
    pub fn target_port(&self, addr_port: u16, dst_port: u16) -> u16 {
        match self.port_offset {
            None => addr_port,
            #[expect(clippy::cast_possible_truncation, reason = "16-bit wrap, as HAProxy")]
            Some(off) => (i32::from(dst_port) + off) as u16,
        }
    }

    /// Whether the address a server-state file holds for this server replaces the one found at
    /// load: the server is written as a host name and `init-addr` lists `last` before the method
    /// that gave its address at load (`HAProxy` tries the methods in order).
    #[must_use]
    pub fn state_addr_wins(&self) -> bool {
        let Some(used) = self.init_addr_used else {
            return false;
        };
        self.fqdn.is_some() && self.init_addr[..=used].contains(&InitAddr::Last)
    }
}
