//! Lines -> sections -> validated [`Config`]: the keyword handlers for every section, `defaults`
//! inheritance, and the cross-section checks (names, `default_backend`, binds, timeouts).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::lex::Line;
use super::scalar::{
    check_hex, check_name, is_hostname, parse_port, parse_size, parse_time, parse_u32, parse_uint,
    parse_weight, resolve, split_host_port, unspecified, Host, TimeUnit,
};
use super::{
    Backend, Balance, Bind, CheckKind, CliLevel, Config, ConfigError, ExpectPattern, ExternalCheck,
    Frontend, Global, HashType, HealthParams, HttpExpect, HttpExpectKind, Keepalive, Loc,
    LogTarget, MysqlVersion, OnError, Password, Resolvers, Server, StatsProxy, StatsSocket,
    TcpCheckRule, Timeouts, UserEntry, Userlist, Warning,
};

/// Errors and warnings collected while loading; loading never stops at the first error.
#[derive(Debug, Default)]
pub(crate) struct Diag {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<Warning>,
}

impl Diag {
    pub(crate) fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        self.errors.push(ConfigError {
            loc: Some(loc.clone()),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Warning {
            loc: loc.clone(),
            message: message.into(),
        });
    }
}

/// The proxy section kinds (`defaults` included: it holds proxy settings too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }

    /// Frontend capability (defaults have both capabilities).
    fn fe(self) -> bool {
        self != Kind::Backend
    }

    /// Backend capability.
    fn be(self) -> bool {
        self != Kind::Frontend
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tcp,
    Http,
}

/// One `init-addr` method.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InitAddr {
    /// Server-state file address: not supported (no `server-state-file`), so it never succeeds.
    Last,
    /// System resolver.
    Libc,
    /// Start in MAINT without an address.
    None,
    /// A fixed fallback address.
    Ip(IpAddr),
}

/// `server_params` reported its errors already; the line is dropped.
#[derive(Debug)]
struct ParamsFailed;

/// Server settings a `default-server` line carries to the following `server` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServerParams {
    weight: u32,
    backup: bool,
    maxconn: u32,
    maxqueue: u32,
    disabled: bool,
    check_port: Option<u16>,
    init_addr: Option<Vec<InitAddr>>,
    health: HealthParams,
    resolvers: Option<String>,
    resolve_prefer_ipv4: bool,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            weight: 1,
            backup: false,
            maxconn: 0,
            maxqueue: 0,
            disabled: false,
            check_port: None,
            init_addr: None,
            health: HealthParams::default(),
            resolvers: None,
            resolve_prefer_ipv4: false,
        }
    }
}

/// Everything a `defaults` section passes on to proxies.
#[derive(Clone, Debug)]
struct ProxyOpts {
    /// `mode` and where it was set.
    mode: Option<(Mode, Loc)>,
    balance: Balance,
    hash_type: HashType,
    timeouts: Timeouts,
    retries: u32,
    redispatch: bool,
    allbackups: bool,
    cli_ka: Keepalive,
    srv_ka: Keepalive,
    maxconn: Option<u32>,
    default_backend: Option<(String, Loc)>,
    default_server: ServerParams,
    /// The last `option *-check`/`httpchk`/`tcp-check`/`external-check` and where it was set
    /// (`TcpCheck` holds no rules here: they are in `tcp_rules`).
    check: (CheckKind, Option<Loc>),
    /// `tcp-check` rules, in order.
    tcp_rules: Vec<TcpCheckRule>,
    /// `http-check expect`.
    http_expect: Option<HttpExpect>,
    log_health_checks: bool,
    external_check: ExternalCheck,
    /// `log` lines (inherited from defaults, own ones appended; `no log` empties the list).
    logs: Vec<LogTarget>,
    /// `option tcplog`.
    tcplog: bool,
    /// `option dontlognull`.
    dontlognull: bool,
}

impl ProxyOpts {
    /// `HAProxy`'s built-in defaults (what a fresh `defaults` section starts from).
    fn builtin() -> Self {
        Self {
            mode: None,
            balance: Balance::RoundRobin,
            hash_type: HashType::MapBased,
            timeouts: Timeouts::default(),
            retries: 3,
            redispatch: false,
            allbackups: false,
            cli_ka: Keepalive::default(),
            srv_ka: Keepalive::default(),
            maxconn: None,
            default_backend: None,
            default_server: ServerParams::default(),
            check: (CheckKind::Connect, None),
            tcp_rules: Vec::new(),
            http_expect: None,
            log_health_checks: false,
            external_check: ExternalCheck::default(),
            logs: Vec::new(),
            tcplog: false,
            dontlognull: false,
        }
    }
}

/// A proxy section being parsed.
#[derive(Debug)]
struct ProxyDraft {
    kind: Kind,
    name: String,
    loc: Loc,
    opts: ProxyOpts,
    explicit_mode: bool,
    binds: Vec<Bind>,
    /// `bind` lines seen, valid or not (an invalid one is reported once, not again as "no bind").
    bind_lines: usize,
    /// Servers with their explicit `id`, ids assigned once the section is complete.
    servers: Vec<(Server, Option<u32>)>,
    /// Where `default_backend` was written in this section (not inherited).
    own_default_backend: Option<Loc>,
    /// Whether this section wrote `tcp-check` rules (the first one replaces inherited rules).
    own_tcp_rules: bool,
}

impl ProxyDraft {
    fn ctx(&self) -> String {
        if self.kind == Kind::Defaults && self.name.is_empty() {
            "defaults".to_owned()
        } else {
            format!("{} '{}'", self.kind.word(), self.name)
        }
    }
}

/// Proxy keywords that only make sense in `mode http`; lb warns and ignores them.
const HTTP_ONLY: &[&str] = &[
    "http-request",
    "http-response",
    "http-after-response",
    "http-reuse",
    "http-send-name-header",
    "errorfile",
    "errorfiles",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "cookie",
    "capture",
    "compression",
    "monitor-uri",
    "redirect",
    "unique-id-format",
    "unique-id-header",
    "max-keep-alive-queue",
    "declare",
    "filter",
];

/// `option X` that only make sense in `mode http`.
const HTTP_OPTIONS: &[&str] = &[
    "httplog",
    "forwardfor",
    "http-server-close",
    "httpclose",
    "http-keep-alive",
    "http-pretend-keepalive",
    "http-buffer-request",
    "http-ignore-probes",
    "http-use-proxy-header",
    "http-no-delay",
    "http_proxy",
    "originalto",
    "accept-invalid-http-request",
    "accept-invalid-http-response",
    "h1-case-adjust-bogus-client",
    "h1-case-adjust-bogus-server",
    "checkcache",
    "disable-h2-upgrade",
    "http-restrict-req-hdr-names",
];

/// Other `option X` (no arguments) that lb accepts but does not act on yet, with the feature.
const OPTIONS_NOT_YET: &[(&str, &str)] = &[
    ("dontlog-normal", "logging"),
    ("log-separate-errors", "logging"),
    ("logasap", "logging"),
    ("socket-stats", "stats"),
    ("contstats", "stats"),
    ("nolinger", "socket options"),
    ("abortonclose", "socket options"),
    ("tcp-smart-accept", "socket options"),
    ("tcp-smart-connect", "socket options"),
    ("transparent", "transparent proxying"),
    ("persist", "persistence"),
    ("prefer-last-server", "persistence"),
    ("ldap-check", "health checks"),
    ("ssl-hello-chk", "health checks"),
    ("spop-check", "health checks"),
    ("idle-close-on-response", "socket options"),
];

/// Proxy keywords (with at least one argument unless listed in `NO_ARG_NOT_YET`) that lb
/// accepts but does not act on yet, with the feature.
const KEYWORDS_NOT_YET: &[(&str, &str)] = &[
    ("use_backend", "content switching"),
    ("use-server", "content switching"),
    ("acl", "ACLs"),
    ("tcp-request", "content rules"),
    ("tcp-response", "content rules"),
    ("stick-table", "stickiness"),
    ("stick", "stickiness"),
    ("force-persist", "persistence"),
    ("ignore-persist", "persistence"),
    ("persist", "persistence"),
    ("fullconn", "dynamic maxconn"),
    ("source", "outgoing source address"),
    ("server-template", "DNS service discovery"),
    ("log-format", "logging"),
    ("log-format-sd", "logging"),
    ("error-log-format", "logging"),
    ("log-tag", "logging"),
    ("description", "stats"),
    ("email-alert", "email alerts"),
    ("backlog", "listen backlog"),
    ("rate-limit", "rate limiting"),
    ("retry-on", "retry policies"),
    ("monitor", "monitoring"),
    ("load-server-state-from-file", "server-state file"),
    ("server-state-file-name", "server-state file"),
    ("dispatch", "dispatch"),
];

/// Global keywords lb accepts but does not act on yet, with the feature.
const GLOBAL_NOT_YET: &[(&str, &str)] = &[
    ("pidfile", "pid file"),
    ("chroot", "chroot"),
    ("ca-base", "TLS; lb has no TLS"),
    ("crt-base", "TLS; lb has no TLS"),
    ("ulimit-n", "fd limit"),
    ("master-worker", "master-worker mode"),
    ("hard-stop-after", "reload"),
    ("node", "stats"),
    ("description", "stats"),
    ("server-state-file", "server-state file"),
    ("server-state-base", "server-state file"),
    ("quiet", "quiet mode"),
    ("cpu-map", "CPU pinning"),
    ("maxconnrate", "rate limiting"),
    ("maxsessrate", "rate limiting"),
    ("maxsslconn", "TLS; lb has no TLS"),
    ("ssl-default-bind-ciphers", "TLS; lb has no TLS"),
    ("ssl-default-bind-ciphersuites", "TLS; lb has no TLS"),
    ("ssl-default-bind-options", "TLS; lb has no TLS"),
    ("ssl-default-server-ciphers", "TLS; lb has no TLS"),
    ("ssl-default-server-ciphersuites", "TLS; lb has no TLS"),
    ("ssl-default-server-options", "TLS; lb has no TLS"),
    ("ssl-dh-param-file", "TLS; lb has no TLS"),
    ("ssl-server-verify", "TLS; lb has no TLS"),
    ("tune.ssl.default-dh-param", "TLS; lb has no TLS"),
    ("lua-load", "Lua"),
    ("set-dumpable", "core dumps"),
    ("strict-limits", "fd limit"),
    ("busy-polling", "polling"),
    ("localpeer", "peers"),
    ("setenv", "environment"),
    ("presetenv", "environment"),
    ("resetenv", "environment"),
    ("unsetenv", "environment"),
    ("expose-experimental-directives", "experimental directives"),
    ("h1-case-adjust", "HTTP"),
];

/// Sections lb skips entirely (with one warning each).
const IGNORED_SECTIONS: &[&str] = &[
    "peers",
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
    "log-forward",
    "fcgi-app",
    "crt-store",
];

const SYSLOG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

const SYSLOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Checks that `line` has between `min` and `max` words after its first `kw_words` words.
fn arity(diag: &mut Diag, line: &Line, kw_words: usize, min: usize, max: usize) -> bool {
    let kw = line.words[..kw_words.min(line.words.len())].join(" ");
    let n = line.words.len().saturating_sub(kw_words);
    if n < min {
        let what = if min == 1 { "argument" } else { "arguments" };
        let exp = if min == max {
            format!("{min} {what}")
        } else {
            format!("at least {min} {what}")
        };
        diag.err(&line.loc, format!("'{kw}': expects {exp}, got {n}"));
        return false;
    }
    if n > max {
        let extra = &line.words[kw_words + max];
        diag.err(&line.loc, format!("'{kw}': unexpected argument '{extra}'"));
        return false;
    }
    true
}

/// A section header and its lines.
struct Section<'a> {
    header: &'a Line,
    body: &'a [Line],
}

/// Whether `word` starts a section.
fn is_section_word(word: &str) -> bool {
    matches!(
        word,
        "global" | "defaults" | "frontend" | "backend" | "listen" | "resolvers" | "userlist"
    ) || IGNORED_SECTIONS.contains(&word)
}

/// Splits the lines of all files (in order, as one stream) into sections. Lines before the
/// first section header are errors.
fn sections<'a>(lines: &'a [Line], diag: &mut Diag) -> Vec<Section<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if !is_section_word(&line.words[0]) {
            diag.err(
                &line.loc,
                format!(
                    "'{}' outside of any section (expected global, defaults, frontend, backend, \
                     listen, ...)",
                    line.words[0]
                ),
            );
            i += 1;
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| is_section_word(&l.words[0]))
            .map_or(lines.len(), |p| i + 1 + p);
        out.push(Section {
            header: line,
            body: &lines[i + 1..end],
        });
        i = end;
    }
    out
}

/// Builds a [`Config`] from tokenized lines (all files, in order), adding to `diag`. The
/// returned config is `None` when there are errors; its `warnings` are left empty for the caller.
pub(crate) fn build(lines: &[Line], diag: Diag) -> (Option<Config>, Diag) {
    let mut p = Parser {
        diag,
        global: Global {
            maxconn: None,
            nbthread: None,
            user: None,
            group: None,
            daemon: false,
            logs: Vec::new(),
            spread_checks: 0,
            external_check: false,
            resolvers: Vec::new(),
            log_tag: None,
            log_send_hostname: None,
            stats_sockets: Vec::new(),
            stats_timeout: std::time::Duration::from_secs(10),
            stats_maxconn: 10,
        },
        defaults: ProxyOpts::builtin(),
        named_defaults: HashMap::new(),
        proxies: Vec::new(),
        stats_sections: HashMap::new(),
        stats: Vec::new(),
        userlists: Vec::new(),
        fe_names: HashMap::new(),
        be_names: HashMap::new(),
        resolvers: HashMap::new(),
        resolver_refs: Vec::new(),
    };
    let secs = sections(lines, &mut p.diag);
    for sec in &secs {
        p.section(sec);
    }
    let config = p.finish();
    (config, p.diag)
}

struct Parser {
    diag: Diag,
    global: Global,
    /// The settings of the last `defaults` section (built-ins before the first one).
    defaults: ProxyOpts,
    named_defaults: HashMap<String, (ProxyOpts, Loc)>,
    proxies: Vec<ProxyDraft>,
    /// Stats-only sections (accepted, not served), by name.
    stats_sections: HashMap<String, Loc>,
    /// The stats pages, in file order.
    stats: Vec<StatsProxy>,
    /// `userlist` sections, in file order.
    userlists: Vec<Userlist>,
    /// Names used by frontend-capable and backend-capable proxies.
    fe_names: HashMap<String, Loc>,
    be_names: HashMap<String, Loc>,
    /// `resolvers` sections by name.
    resolvers: HashMap<String, Loc>,
    /// `resolvers NAME` on server lines, checked once every section is read.
    resolver_refs: Vec<(String, Loc)>,
}

impl Parser {
    fn section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        let word = h.words[0].as_str();
        match word {
            "global" => {
                arity(&mut self.diag, h, 1, 0, 0);
                for line in sec.body {
                    self.global_line(line);
                }
            }
            "defaults" => self.proxy_section(Kind::Defaults, sec),
            "frontend" => self.proxy_section(Kind::Frontend, sec),
            "backend" => self.proxy_section(Kind::Backend, sec),
            "listen" => self.proxy_section(Kind::Listen, sec),
            "resolvers" => self.resolvers_section(sec),
            "userlist" => self.userlist_section(sec),
            _ => self.diag.warn(
                &h.loc,
                format!(
                    "'{word}' section is not supported; ignored ({} lines)",
                    sec.body.len()
                ),
            ),
        }
    }

    // ----- global -----

    fn global_line(&mut self, line: &Line) {
        let d = &mut self.diag;
        let w = &line.words;
        let kw = w[0].as_str();
        match kw {
            "maxconn" => {
                if arity(d, line, 1, 1, 1) {
                    match parse_u32(&w[1], 1, u32::MAX) {
                        Ok(v) => self.global.maxconn = Some(v),
                        Err(e) => d.err(&line.loc, format!("'maxconn': {e}")),
                    }
                }
            }
            "nbthread" => {
                if arity(d, line, 1, 1, 1) {
                    match parse_uint(&w[1], 1, 4096) {
                        Ok(v) => self.global.nbthread = Some(v as usize),
                        Err(e) => d.err(&line.loc, format!("'nbthread': {e}")),
                    }
                }
            }
            "user" | "group" | "uid" | "gid" => {
                if arity(d, line, 1, 1, 1) {
                    if matches!(kw, "uid" | "gid") {
                        if let Err(e) = parse_u32(&w[1], 0, u32::MAX) {
                            d.err(&line.loc, format!("'{kw}': {e}"));
                            return;
                        }
                    }
                    let slot = if matches!(kw, "user" | "uid") {
                        &mut self.global.user
                    } else {
                        &mut self.global.group
                    };
                    *slot = Some(w[1].clone());
                }
            }
            "daemon" => {
                if arity(d, line, 1, 0, 0) {
                    self.global.daemon = true;
                    d.warn(
                        &line.loc,
                        "'daemon' is not supported yet; lb stays in the foreground (run it \
                         under systemd or another supervisor)",
                    );
                }
            }
            "log" => {
                if check_log_args(d, line, 1) {
                    self.global.logs.push(LogTarget {
                        loc: line.loc.clone(),
                        args: w[1..].to_vec(),
                    });
                }
            }
            "log-tag" => {
                if arity(d, line, 1, 1, 1) {
                    self.global.log_tag = Some(w[1].clone());
                }
            }
            "log-send-hostname" => {
                if arity(d, line, 1, 0, 1) {
                    // Without a name, HAProxy sends the system's host name.
                    let name = w.get(1).cloned().unwrap_or_else(|| {
                        std::fs::read_to_string("/proc/sys/kernel/hostname")
                            .map(|h| h.trim().to_owned())
                            .ok()
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| "localhost".to_owned())
                    });
                    self.global.log_send_hostname = Some(name);
                }
            }
            "spread-checks" => {
                if arity(d, line, 1, 1, 1) {
                    match parse_uint(&w[1], 0, 50) {
                        Ok(v) => self.global.spread_checks = v as u32,
                        Err(e) => d.err(&line.loc, format!("'{kw}': {e}")),
                    }
                }
            }
            "external-check" => {
                if arity(d, line, 1, 0, 0) {
                    self.global.external_check = true;
                }
            }
            // Forking is what external checks need; lb allows it whenever they are configured.
            "insecure-fork-wanted" => {
                arity(d, line, 1, 0, 0);
            }
            "nbproc" => d.err(
                &line.loc,
                "'nbproc' was removed in HAProxy 2.5 (use 'nbthread'; lb runs one process)",
            ),
            "stats" => {
                let sub = w.get(1).map_or("", String::as_str);
                match sub {
                    "timeout" => {
                        if arity(d, line, 2, 1, 1) {
                            match parse_time(&w[2], TimeUnit::Ms) {
                                Ok(t) if !t.is_zero() => self.global.stats_timeout = t,
                                Ok(_) => d.err(&line.loc, "'stats timeout': must not be 0"),
                                Err(e) => d.err(&line.loc, format!("'stats timeout': {e}")),
                            }
                        }
                    }
                    "maxconn" => {
                        if arity(d, line, 2, 1, 1) {
                            match parse_u32(&w[2], 1, u32::MAX) {
                                Ok(v) => self.global.stats_maxconn = v,
                                Err(e) => d.err(&line.loc, format!("'stats maxconn': {e}")),
                            }
                        }
                    }
                    "socket" => {
                        if arity(d, line, 2, 1, usize::MAX) {
                            if let Some(sock) = stats_socket(d, line) {
                                self.global.stats_sockets.push(sock);
                            }
                        }
                    }
                    "bind-process" => {
                        d.warn(
                            &line.loc,
                            format!("'stats {sub}' is not supported yet (runtime API); ignored"),
                        );
                    }
                    _ => d.err(
                        &line.loc,
                        format!(
                            "unknown keyword 'stats {sub}' in 'global' section (expected stats \
                             socket|timeout|maxconn)"
                        ),
                    ),
                }
            }
            _ if kw.starts_with("tune.") => {
                if arity(d, line, 1, 1, usize::MAX) {
                    if matches!(
                        kw,
                        "tune.bufsize"
                            | "tune.maxrewrite"
                            | "tune.rcvbuf.client"
                            | "tune.rcvbuf.server"
                            | "tune.sndbuf.client"
                            | "tune.sndbuf.server"
                    ) {
                        if let Err(e) = parse_size(&w[1]) {
                            d.err(&line.loc, format!("'{kw}': {e}"));
                            return;
                        }
                    }
                    d.warn(
                        &line.loc,
                        format!("'{kw}' is not supported yet (tuning); ignored"),
                    );
                }
            }
            _ => {
                if let Some((_, feature)) = GLOBAL_NOT_YET.iter().find(|(k, _)| *k == kw) {
                    let ok = match kw {
                        "spread-checks" => {
                            arity(d, line, 1, 1, 1)
                                && parse_uint(&w[1], 0, 50)
                                    .map_err(|e| d.err(&line.loc, format!("'{kw}': {e}")))
                                    .is_ok()
                        }
                        "ulimit-n" | "maxconnrate" | "maxsessrate" | "maxsslconn" => {
                            arity(d, line, 1, 1, 1)
                                && parse_u32(&w[1], 0, u32::MAX)
                                    .map_err(|e| d.err(&line.loc, format!("'{kw}': {e}")))
                                    .is_ok()
                        }
                        "hard-stop-after" => {
                            arity(d, line, 1, 1, 1)
                                && parse_time(&w[1], TimeUnit::Ms)
                                    .map_err(|e| d.err(&line.loc, format!("'{kw}': {e}")))
                                    .is_ok()
                        }
                        "pidfile" | "chroot" | "ca-base" | "crt-base" | "node"
                        | "server-state-file" | "server-state-base" | "lua-load"
                        | "ssl-dh-param-file" | "localpeer" | "unsetenv" => {
                            arity(d, line, 1, 1, usize::MAX)
                        }
                        "setenv" | "presetenv" => arity(d, line, 1, 2, 2),
                        "daemon"
                        | "quiet"
                        | "master-worker"
                        | "insecure-fork-wanted"
                        | "set-dumpable"
                        | "busy-polling"
                        | "expose-experimental-directives" => arity(d, line, 1, 0, 1),
                        _ => true,
                    };
                    if ok {
                        d.warn(
                            &line.loc,
                            format!("'{kw}' is not supported yet ({feature}); ignored"),
                        );
                    }
                } else {
                    let known: Vec<&str> = [
                        "maxconn",
                        "nbthread",
                        "user",
                        "group",
                        "daemon",
                        "log",
                        "spread-checks",
                        "external-check",
                        "insecure-fork-wanted",
                        "log-tag",
                        "log-send-hostname",
                    ]
                    .into_iter()
                    .chain(GLOBAL_NOT_YET.iter().map(|(k, _)| *k))
                    .collect();
                    d.err(
                        &line.loc,
                        format!(
                            "unknown keyword '{kw}' in 'global' section{}",
                            suggest(kw, &known)
                        ),
                    );
                }
            }
        }
    }

    // ----- proxies -----

    fn proxy_section(&mut self, kind: Kind, sec: &Section<'_>) {
        let h = sec.header;
        let args = &h.words[1..];
        let mut name = String::new();
        let mut rest = args;
        if let Some(first) = args.first().filter(|a| *a != "from") {
            name.clone_from(first);
            rest = &args[1..];
            if let Err(e) = check_name(&name) {
                self.diag.err(&h.loc, format!("{} {e}", kind.word()));
            }
        } else if kind != Kind::Defaults {
            self.diag
                .err(&h.loc, format!("'{}' needs a name", kind.word()));
        }
        let mut opts = self.defaults.clone();
        let mut header_binds: Vec<&String> = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == "from" {
                match rest.get(i + 1) {
                    Some(from) => match self.named_defaults.get(from) {
                        Some((o, _)) => opts = o.clone(),
                        None => self.diag.err(
                            &h.loc,
                            format!(
                                "{} '{name}': 'from {from}': no defaults section named '{from}' \
                                 before this line",
                                kind.word()
                            ),
                        ),
                    },
                    None => self.diag.err(
                        &h.loc,
                        format!("'{} {name}': 'from' needs a name", kind.word()),
                    ),
                }
                i += 2;
            } else {
                header_binds.push(&rest[i]);
                i += 1;
            }
        }
        if kind == Kind::Defaults {
            // A new defaults section starts from built-ins (or its `from`), not from the
            // previous defaults.
            if !rest.iter().any(|a| a == "from") {
                opts = ProxyOpts::builtin();
            }
        }
        let mut px = ProxyDraft {
            kind,
            name,
            loc: h.loc.clone(),
            opts,
            explicit_mode: false,
            binds: Vec::new(),
            bind_lines: 0,
            servers: Vec::new(),
            own_default_backend: None,
            own_tcp_rules: false,
        };
        for addr in header_binds {
            px.bind_lines += 1;
            if kind.fe() && kind != Kind::Defaults {
                self.bind_addrs(&mut px, &h.loc, addr, None);
            } else {
                self.diag.err(
                    &h.loc,
                    format!(
                        "{}: unexpected argument '{addr}' (only frontend and listen may have an \
                         address on their header line)",
                        px.ctx()
                    ),
                );
            }
        }

        let is_stats = matches!(kind, Kind::Frontend | Kind::Listen)
            && sec.body.iter().any(|l| {
                let w = &l.words;
                (w[0] == "stats" && w.get(1).is_some_and(|s| s == "enable" || s == "uri"))
                    || (w[0] == "http-request"
                        && w.get(1).is_some_and(|s| s == "use-service")
                        && w.get(2).is_some_and(|s| s == "prometheus-exporter"))
            });
        let warnings_before = self.diag.warnings.len();
        for line in sec.body {
            self.proxy_line(&mut px, line, is_stats);
        }
        let mode = px.opts.mode.as_ref().map(|(m, _)| *m);
        if is_stats && mode == Some(Mode::Http) {
            // The whole section is one feature lb does not serve: one warning instead of one per
            // line.
            self.diag.warnings.truncate(warnings_before);
            let stats = self.stats_proxy(&px, sec);
            if px.bind_lines == 0 {
                self.diag.warn(
                    &px.loc,
                    format!("{} has no 'bind'; its stats page is not served", px.ctx()),
                );
            }
            self.stats.push(stats);
            self.register_names(&px);
            self.stats_sections.insert(px.name.clone(), px.loc.clone());
            return;
        }
        if mode == Some(Mode::Http) && kind != Kind::Defaults {
            if px.explicit_mode {
                // Reported on the `mode` line itself.
            } else if let Some((_, mloc)) = &px.opts.mode {
                self.diag.err(
                    &px.loc,
                    format!(
                        "{}: mode http (inherited from defaults at {mloc}) is not supported (lb \
                         is a TCP load balancer); add 'mode tcp' (only a stats section may use \
                         mode http)",
                        px.ctx()
                    ),
                );
            }
        }
        if kind == Kind::Defaults {
            if !px.name.is_empty() {
                if let Some((_, first)) = self.named_defaults.get(&px.name) {
                    self.diag.err(
                        &px.loc,
                        format!(
                            "defaults name '{}' is used twice (first at {first})",
                            px.name
                        ),
                    );
                }
                self.named_defaults
                    .insert(px.name.clone(), (px.opts.clone(), px.loc.clone()));
            }
            self.defaults = px.opts;
            return;
        }
        self.register_names(&px);
        self.assign_server_ids(&mut px);
        self.proxies.push(px);
    }

    /// Records the proxy's name in the frontend/backend namespaces, reporting reuse.
    fn register_names(&mut self, px: &ProxyDraft) {
        if px.name.is_empty() {
            return;
        }
        let mut clash: Option<Loc> = None;
        if px.kind.fe() {
            if let Some(first) = self.fe_names.get(&px.name) {
                clash = Some(first.clone());
            } else {
                self.fe_names.insert(px.name.clone(), px.loc.clone());
            }
        }
        if px.kind.be() {
            if let Some(first) = self.be_names.get(&px.name) {
                clash = clash.or_else(|| Some(first.clone()));
            } else {
                self.be_names.insert(px.name.clone(), px.loc.clone());
            }
        }
        if let Some(first) = clash {
            self.diag.err(
                &px.loc,
                format!("proxy name '{}' is used twice (first at {first})", px.name),
            );
        }
    }

    /// Server ids: explicit `id`s first, then the lowest free id for the others, in order (as
    /// `HAProxy` does; without explicit ids this is the position starting at 1).
    fn assign_server_ids(&mut self, px: &mut ProxyDraft) {
        let mut used: HashMap<u32, String> = HashMap::new();
        for (srv, explicit) in &px.servers {
            if let Some(id) = explicit {
                if let Some(other) = used.get(id) {
                    self.diag.err(
                        &srv.loc,
                        format!(
                            "server '{}/{}': id {id} is already used by server '{other}'",
                            px.name, srv.name
                        ),
                    );
                } else {
                    used.insert(*id, srv.name.clone());
                }
            }
        }
        let mut next = 1u32;
        for (srv, explicit) in &mut px.servers {
            if let Some(id) = explicit {
                srv.id = *id;
            } else {
                while used.contains_key(&next) {
                    next = next.saturating_add(1);
                }
                srv.id = next;
                used.insert(next, srv.name.clone());
            }
        }
    }

    /// Warns (and returns false) when `kw` needs a capability the section lacks; `bind`,
    /// `server`-like keywords are errors instead (they cannot mean anything there).
    fn cap(&mut self, px: &ProxyDraft, line: &Line, kw: &str, fe: bool, be: bool) -> bool {
        if (fe && px.kind.fe()) || (be && px.kind.be()) {
            return true;
        }
        let missing = if fe { "frontend" } else { "backend" };
        self.diag.warn(
            &line.loc,
            format!(
                "'{kw}' ignored because {} has no {missing} capability",
                px.ctx()
            ),
        );
        false
    }

    fn not_allowed(&mut self, px: &ProxyDraft, line: &Line, kw: &str) {
        self.diag.err(
            &line.loc,
            format!("'{kw}' in a '{}' section is not allowed", px.kind.word()),
        );
    }

    fn not_yet(&mut self, line: &Line, kw: &str, feature: &str) {
        self.diag.warn(
            &line.loc,
            format!("'{kw}' is not supported yet ({feature}); ignored"),
        );
    }

    fn proxy_line(&mut self, px: &mut ProxyDraft, line: &Line, is_stats: bool) {
        let w = &line.words;
        let kw = w[0].as_str();
        let loc = &line.loc;
        match kw {
            "mode" => {
                if !arity(&mut self.diag, line, 1, 1, 1) {
                    return;
                }
                match w[1].as_str() {
                    "tcp" => px.opts.mode = Some((Mode::Tcp, loc.clone())),
                    "http" => {
                        px.opts.mode = Some((Mode::Http, loc.clone()));
                        px.explicit_mode = true;
                        if px.kind != Kind::Defaults && !is_stats {
                            self.diag.err(
                                loc,
                                "mode http is not supported (lb is a TCP load balancer); only a \
                                 stats section may use it",
                            );
                        }
                    }
                    "health" => self
                        .diag
                        .err(loc, "mode health is not supported (removed in HAProxy 2.4)"),
                    other => self.diag.err(
                        loc,
                        format!("'mode': unknown mode '{other}' (expected tcp or http)"),
                    ),
                }
            }
            "bind" => {
                if px.kind == Kind::Backend || px.kind == Kind::Defaults {
                    self.not_allowed(px, line, kw);
                } else {
                    px.bind_lines += 1;
                    if arity(&mut self.diag, line, 1, 1, usize::MAX) {
                        self.bind_line(px, line);
                    }
                }
            }
            "default_backend" => {
                if px.kind == Kind::Backend {
                    self.not_allowed(px, line, kw);
                } else if px.kind == Kind::Listen {
                    self.diag.err(
                        loc,
                        "'default_backend' in a 'listen' section is not supported (a listen \
                         forwards to its own servers; use a frontend)",
                    );
                } else if arity(&mut self.diag, line, 1, 1, 1) {
                    px.opts.default_backend = Some((w[1].clone(), loc.clone()));
                    px.own_default_backend = Some(loc.clone());
                }
            }
            "use_backend" => {
                if px.kind == Kind::Backend {
                    self.not_allowed(px, line, kw);
                } else if arity(&mut self.diag, line, 1, 1, usize::MAX) {
                    self.not_yet(line, kw, "content switching; default_backend is used");
                }
            }
            "server" => {
                if px.kind == Kind::Frontend || px.kind == Kind::Defaults {
                    self.not_allowed(px, line, kw);
                } else if line.words.len() < 3 {
                    self.diag.err(
                        &line.loc,
                        "'server': needs a name and an address (server NAME ADDR:PORT [params])",
                    );
                } else {
                    self.server_line(px, line);
                }
            }
            "default-server" => {
                if px.kind == Kind::Frontend {
                    self.not_allowed(px, line, kw);
                } else {
                    let ctx = format!("default-server in {}", px.ctx());
                    let mut params = px.opts.default_server.clone();
                    // `id` is rejected on default-server, so there is no id to keep.
                    if self.server_params(&ctx, line, 1, &mut params, true).is_ok() {
                        px.opts.default_server = params;
                    }
                }
            }
            "balance" => {
                if self.cap(px, line, kw, false, true) && arity(&mut self.diag, line, 1, 1, 1) {
                    if let Some(b) = self.balance(line) {
                        px.opts.balance = b;
                    }
                }
            }
            "hash-type" => {
                if self.cap(px, line, kw, false, true) && arity(&mut self.diag, line, 1, 1, 3) {
                    self.hash_type(px, line);
                }
            }
            "timeout" => self.timeout_line(px, line),
            "contimeout" | "clitimeout" | "srvtimeout" => {
                let new = match kw {
                    "contimeout" => "timeout connect",
                    "clitimeout" => "timeout client",
                    _ => "timeout server",
                };
                self.diag.err(
                    loc,
                    format!("'{kw}' was removed in HAProxy 2.1; use '{new}'"),
                );
            }
            "retries" => {
                if self.cap(px, line, kw, false, true) && arity(&mut self.diag, line, 1, 1, 1) {
                    match parse_u32(&w[1], 0, u32::MAX) {
                        Ok(v) => px.opts.retries = v,
                        Err(e) => self.diag.err(loc, format!("'retries': {e}")),
                    }
                }
            }
            "maxconn" => {
                if self.cap(px, line, kw, true, false) && arity(&mut self.diag, line, 1, 1, 1) {
                    match parse_u32(&w[1], 1, u32::MAX) {
                        Ok(v) => px.opts.maxconn = Some(v),
                        Err(e) => self.diag.err(loc, format!("'maxconn': {e}")),
                    }
                }
            }
            "option" => self.option_line(px, line, 1, false),
            "no" => {
                if w.get(1).is_some_and(|s| s == "option") {
                    self.option_line(px, line, 2, true);
                } else if w.get(1).is_some_and(|s| s == "log") {
                    if arity(&mut self.diag, line, 2, 0, 0) {
                        px.opts.logs.clear();
                    }
                } else {
                    self.diag.err(
                        loc,
                        format!(
                            "'no' must be followed by 'option' or 'log', not '{}'",
                            w.get(1).map_or("", String::as_str)
                        ),
                    );
                }
            }
            "clitcpka-idle" | "clitcpka-intvl" | "srvtcpka-idle" | "srvtcpka-intvl" => {
                let fe = kw.starts_with("cli");
                if self.cap(px, line, kw, fe, !fe) && arity(&mut self.diag, line, 1, 1, 1) {
                    match parse_time(&w[1], TimeUnit::S) {
                        Ok(t) if t.as_secs() >= 1 => {
                            let ka = if fe {
                                &mut px.opts.cli_ka
                            } else {
                                &mut px.opts.srv_ka
                            };
                            if kw.ends_with("idle") {
                                ka.idle = t;
                            } else {
                                ka.intvl = t;
                            }
                        }
                        Ok(_) => self.diag.err(
                            loc,
                            format!("'{kw}': must be at least 1s (TCP keepalive counts seconds)"),
                        ),
                        Err(e) => self.diag.err(loc, format!("'{kw}': {e}")),
                    }
                }
            }
            "clitcpka-cnt" | "srvtcpka-cnt" => {
                let fe = kw.starts_with("cli");
                if self.cap(px, line, kw, fe, !fe) && arity(&mut self.diag, line, 1, 1, 1) {
                    match parse_u32(&w[1], 1, 127) {
                        Ok(v) if fe => px.opts.cli_ka.cnt = v,
                        Ok(v) => px.opts.srv_ka.cnt = v,
                        Err(e) => self.diag.err(loc, format!("'{kw}': {e}")),
                    }
                }
            }
            "log" => {
                if check_log_args(&mut self.diag, line, 1) {
                    px.opts.logs.push(LogTarget {
                        loc: loc.clone(),
                        args: w[1..].to_vec(),
                    });
                }
            }
            "tcp-check" => {
                if self.cap(px, line, kw, false, true) && self.tcp_check(line) {
                    if !px.own_tcp_rules {
                        px.own_tcp_rules = true;
                        px.opts.tcp_rules.clear();
                    }
                    if let Some(rule) = self.tcp_rule(line) {
                        px.opts.tcp_rules.push(rule);
                    }
                }
            }
            "http-check" => {
                if self.cap(px, line, kw, false, true) && self.http_check(line) {
                    if w[1] == "expect" {
                        if let Some(e) = self.http_expect(line) {
                            px.opts.http_expect = Some(e);
                        }
                    } else if w[1] != "comment" {
                        self.not_yet(line, &format!("http-check {}", w[1]), "health checks");
                    }
                }
            }
            "external-check" => {
                if self.cap(px, line, kw, false, true) && arity(&mut self.diag, line, 1, 2, 2) {
                    if w[1] == "command" {
                        px.opts.external_check.command = Some(w[2].clone());
                    } else if w[1] == "path" {
                        px.opts.external_check.path = Some(w[2].clone());
                    } else {
                        self.diag.err(
                            loc,
                            format!(
                                "'external-check': unknown argument '{}' (expected command or \
                                 path)",
                                w[1]
                            ),
                        );
                    }
                }
            }
            "stats" => {
                if self.stats_line(line) {
                    self.not_yet(line, &format!("stats {}", w[1]), "stats page");
                }
            }
            "id" => {
                if arity(&mut self.diag, line, 1, 1, 1) {
                    match parse_u32(&w[1], 1, u32::MAX) {
                        Ok(_) => self.not_yet(line, kw, "proxy ids are positions in lb"),
                        Err(e) => self.diag.err(loc, format!("'id': {e}")),
                    }
                }
            }
            "disabled" => {
                if arity(&mut self.diag, line, 1, 0, 0) {
                    self.diag.warn(
                        loc,
                        format!(
                            "'disabled' is not supported yet (disabled proxies); {} is started \
                             anyway",
                            px.ctx()
                        ),
                    );
                }
            }
            // A proxy is enabled unless `disabled`: nothing to do.
            "enabled" => {
                arity(&mut self.diag, line, 1, 0, 0);
            }
            "bind-process" => self.diag.err(
                loc,
                "'bind-process' was removed in HAProxy 2.5 with 'nbproc' (lb runs one process)",
            ),
            _ if HTTP_ONLY.contains(&kw) => {
                self.diag
                    .warn(loc, format!("'{kw}' is HTTP-only; ignored in mode tcp"));
            }
            _ => {
                if let Some((_, feature)) = KEYWORDS_NOT_YET.iter().find(|(k, _)| *k == kw) {
                    if self.keyword_not_yet_args(line) {
                        self.not_yet(line, kw, feature);
                    }
                } else {
                    let known: Vec<&str> = PROXY_KEYWORDS
                        .iter()
                        .copied()
                        .chain(KEYWORDS_NOT_YET.iter().map(|(k, _)| *k))
                        .chain(HTTP_ONLY.iter().copied())
                        .collect();
                    let sec = if px.name.is_empty() {
                        format!("'{}' section", px.kind.word())
                    } else {
                        format!("'{}' section '{}'", px.kind.word(), px.name)
                    };
                    self.diag.err(
                        loc,
                        format!("unknown keyword '{kw}' in {sec}{}", suggest(kw, &known)),
                    );
                }
            }
        }
    }

    /// Argument checks for the keywords of [`KEYWORDS_NOT_YET`].
    fn keyword_not_yet_args(&mut self, line: &Line) -> bool {
        let d = &mut self.diag;
        let w = &line.words;
        match w[0].as_str() {
            "acl" => arity(d, line, 1, 2, usize::MAX),
            "tcp-request" | "tcp-response" => {
                if !arity(d, line, 1, 1, usize::MAX) {
                    return false;
                }
                let subs: &[&str] = if w[0] == "tcp-request" {
                    &["connection", "session", "content", "inspect-delay"]
                } else {
                    &["content", "inspect-delay"]
                };
                if !subs.contains(&w[1].as_str()) {
                    d.err(
                        &line.loc,
                        format!(
                            "'{}': unknown rule type '{}' (expected {})",
                            w[0],
                            w[1],
                            subs.join("|")
                        ),
                    );
                    return false;
                }
                if w[1] == "inspect-delay" {
                    return arity(d, line, 2, 1, 1)
                        && parse_time(&w[2], TimeUnit::Ms)
                            .map_err(|e| d.err(&line.loc, format!("'{} inspect-delay': {e}", w[0])))
                            .is_ok();
                }
                arity(d, line, 2, 1, usize::MAX)
            }
            "fullconn" | "backlog" => {
                arity(d, line, 1, 1, 1)
                    && parse_u32(&w[1], 1, u32::MAX)
                        .map_err(|e| d.err(&line.loc, format!("'{}': {e}", w[0])))
                        .is_ok()
            }
            "description" => true,
            _ => arity(d, line, 1, 1, usize::MAX),
        }
    }

    // ----- bind -----

    fn bind_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let mut name = None;
        let mut not_yet: Vec<&str> = Vec::new();
        let mut i = 2;
        let mut ok = true;
        while i < w.len() {
            let opt = w[i].as_str();
            let nargs = match opt {
                "name" => {
                    let Some(n) = w.get(i + 1) else {
                        self.diag
                            .err(&line.loc, "'bind': option 'name' needs a value");
                        return;
                    };
                    name = Some(n.clone());
                    i += 2;
                    continue;
                }
                "v4v6"
                | "v6only"
                | "transparent"
                | "defer-accept"
                | "tfo"
                | "accept-proxy"
                | "accept-netscaler-cip"
                | "no-v6only"
                | "no-tfo" => usize::from(opt == "accept-netscaler-cip"),
                "interface" | "process" | "thread" | "namespace" | "id" | "nice" | "mss"
                | "level" | "severity-output" | "user" | "group" | "uid" | "gid" | "mode"
                | "tcp-ut" | "label" | "proto" => 1,
                "maxconn" | "backlog" => {
                    if let Some(Err(e)) = w.get(i + 1).map(|v| parse_u32(v, 1, u32::MAX)) {
                        self.diag
                            .err(&line.loc, format!("'bind' option '{opt}': {e}"));
                        ok = false;
                    }
                    1
                }
                "ssl"
                | "crt"
                | "crt-list"
                | "ca-file"
                | "alpn"
                | "npn"
                | "ciphers"
                | "ciphersuites"
                | "curves"
                | "ecdhe"
                | "ssl-min-ver"
                | "ssl-max-ver"
                | "verify"
                | "strict-sni"
                | "crl-file"
                | "no-sslv3"
                | "no-tlsv10"
                | "no-tlsv11"
                | "no-tlsv12"
                | "no-tlsv13"
                | "force-tlsv12"
                | "force-tlsv13"
                | "allow-0rtt"
                | "quic-force-retry"
                | "generate-certificates"
                | "ca-sign-file" => {
                    self.diag.err(
                        &line.loc,
                        format!(
                            "'bind' option '{opt}' needs TLS, which lb does not do (terminate TLS \
                             on the servers, or in front of lb)"
                        ),
                    );
                    return;
                }
                _ => {
                    self.diag
                        .err(&line.loc, format!("'bind': unknown option '{opt}'"));
                    return;
                }
            };
            if i + nargs >= w.len() + usize::from(nargs == 0) {
                self.diag
                    .err(&line.loc, format!("'bind' option '{opt}' needs a value"));
                return;
            }
            not_yet.push(opt);
            i += 1 + nargs;
        }
        if !ok {
            return;
        }
        if !not_yet.is_empty() {
            let list = not_yet
                .iter()
                .map(|o| format!("'{o}'"))
                .collect::<Vec<_>>()
                .join(", ");
            self.diag.warn(
                &line.loc,
                format!("'bind' options {list} are not supported yet (listener options); ignored"),
            );
        }
        let addr = w[1].clone();
        self.bind_addrs(px, &line.loc, &addr, name.as_ref());
    }

    fn bind_addrs(&mut self, px: &mut ProxyDraft, loc: &Loc, addr: &str, name: Option<&String>) {
        match super::scalar::parse_bind_addrs(addr) {
            Ok(addrs) => px.binds.extend(addrs.into_iter().map(|addr| Bind {
                loc: loc.clone(),
                addr,
                name: name.cloned(),
            })),
            Err(e) => self.diag.err(loc, format!("'bind': {e}")),
        }
    }

    // ----- server -----

    fn server_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let name = &w[1];
        let ctx = format!("server '{}/{}'", px.name, name);
        if let Err(e) = check_name(name) {
            self.diag.err(&line.loc, format!("{ctx}: {e}"));
            return;
        }
        let mut params = px.opts.default_server.clone();
        let Ok(explicit_id) = self.server_params(&ctx, line, 3, &mut params, false) else {
            return;
        };
        let explicit_id = explicit_id.filter(|id| *id != 0);
        let agent = &params.health.agent;
        if agent.enabled && agent.port.is_none() {
            // HAProxy: "server S does not have agent port. Agent check has been disabled."
            self.diag.err(
                &line.loc,
                format!("{ctx}: 'agent-check' is enabled but no 'agent-port' is set"),
            );
            return;
        }
        let Some((addr, fqdn, maint)) = self.server_addr(&ctx, line, &w[2], &params) else {
            return;
        };
        if let Some((s, _)) = px.servers.iter().find(|(s, _)| &s.name == name) {
            self.diag.err(
                &line.loc,
                format!("{ctx} is defined twice (first at {})", s.loc),
            );
            return;
        }
        px.servers.push((
            Server {
                name: name.clone(),
                loc: line.loc.clone(),
                id: 0,
                addr,
                fqdn,
                weight: params.weight,
                backup: params.backup,
                maxconn: params.maxconn,
                maxqueue: params.maxqueue,
                disabled: params.disabled,
                check_port: params.check_port,
                health: params.health.clone(),
                resolvers: params.resolvers.clone(),
                resolve_prefer_ipv4: params.resolve_prefer_ipv4,
                unresolved: maint,
            },
            explicit_id,
        ));
    }

    /// Resolves a server address. Returns the address, the hostname when one was written, and
    /// whether the server must start in MAINT (`init-addr none` and no address found).
    fn server_addr(
        &mut self,
        ctx: &str,
        line: &Line,
        text: &str,
        params: &ServerParams,
    ) -> Option<(SocketAddr, Option<String>, bool)> {
        let loc = &line.loc;
        let hp = match split_host_port(text) {
            Ok(hp) => hp,
            Err(e) => {
                self.diag.err(loc, format!("{ctx}: {e}"));
                return None;
            }
        };
        let port = match hp.port.as_deref() {
            None | Some("" | "0") => {
                self.diag.err(
                    loc,
                    format!(
                        "{ctx}: port required (lb does not forward to the client's destination \
                         port yet)"
                    ),
                );
                return None;
            }
            Some(p) if p.starts_with(['+', '-']) => {
                self.diag.err(
                    loc,
                    format!(
                        "{ctx}: port offset '{p}' is not supported (lb does not forward to the \
                         client's destination port yet)"
                    ),
                );
                return None;
            }
            Some(p) => match parse_port(p) {
                Ok(p) => p,
                Err(e) => {
                    self.diag.err(loc, format!("{ctx}: {e}"));
                    return None;
                }
            },
        };
        let name = match hp.host {
            Some(Host::Ip(ip)) => return Some((SocketAddr::new(ip, port), None, false)),
            Some(Host::Name(n)) => n,
            None => {
                self.diag
                    .err(loc, format!("{ctx}: address required in '{text}'"));
                return None;
            }
        };
        // HAProxy's default init-addr is `last,libc`.
        let methods = params
            .init_addr
            .clone()
            .unwrap_or_else(|| vec![InitAddr::Last, InitAddr::Libc]);
        let mut last_err = None;
        for m in &methods {
            match m {
                InitAddr::Last => {}
                InitAddr::Libc => match resolve(&name, port, hp.family) {
                    Ok(a) => return Some((a, Some(name), false)),
                    Err(e) => last_err = Some(e),
                },
                InitAddr::Ip(ip) => {
                    self.diag.warn(
                        loc,
                        format!("{ctx}: '{name}' not resolved; using init-addr {ip}"),
                    );
                    return Some((SocketAddr::new(*ip, port), Some(name), false));
                }
                InitAddr::None => {
                    self.diag.warn(
                        loc,
                        format!(
                            "{ctx}: '{name}' not resolved; starting in MAINT (resolution) \
                             (init-addr none)"
                        ),
                    );
                    let ip = unspecified(hp.family);
                    return Some((SocketAddr::new(ip, port), Some(name), true));
                }
            }
        }
        let why = last_err.unwrap_or_else(|| "no init-addr method gave an address".to_owned());
        self.diag.err(
            loc,
            format!("{ctx}: {why} (add 'init-addr libc,none' to start it in MAINT instead)"),
        );
        None
    }

    /// Parses `server`/`default-server` parameters from word `start` on into `params`. Returns
    /// [`ParamsFailed`] after reporting errors, else the explicit `id`. Unsupported parameters
    /// are collected into one warning for the line.
    #[expect(
        clippy::many_single_char_names,
        reason = "w/p/i/arg are the parser's conventional names; health keywords added one"
    )]
    fn server_params(
        &mut self,
        ctx: &str,
        line: &Line,
        start: usize,
        params: &mut ServerParams,
        is_default: bool,
    ) -> Result<Option<u32>, ParamsFailed> {
        let w = &line.words;
        let loc = &line.loc;
        let mut id = None;
        let mut not_yet: Vec<(&str, &'static str)> = Vec::new();
        let mut failed = false;
        let mut i = start;
        while i < w.len() {
            let p = w[i].as_str();
            let arg = w.get(i + 1).map(String::as_str);
            let needs_arg = matches!(
                p,
                "weight"
                    | "maxconn"
                    | "maxqueue"
                    | "port"
                    | "id"
                    | "inter"
                    | "fastinter"
                    | "downinter"
                    | "rise"
                    | "fall"
                    | "addr"
                    | "slowstart"
                    | "on-marked-down"
                    | "on-marked-up"
                    | "observe"
                    | "error-limit"
                    | "on-error"
                    | "agent-port"
                    | "agent-inter"
                    | "agent-send"
                    | "agent-addr"
                    | "resolvers"
                    | "init-addr"
                    | "verify"
                    | "sni"
                    | "cookie"
                    | "track"
                    | "resolve-prefer"
                    | "resolve-opts"
                    | "resolve-net"
                    | "minconn"
                    | "pool-max-conn"
                    | "pool-purge-delay"
                    | "proto"
                    | "check-sni"
                    | "crt"
                    | "ca-file"
                    | "alpn"
                    | "check-alpn"
                    | "ciphers"
                    | "ssl-min-ver"
                    | "ssl-max-ver"
                    | "redir"
                    | "namespace"
                    | "source"
                    | "usesrc"
                    | "proxy-v2-options"
            );
            // Flags get an empty argument; valued parameters need theirs.
            let arg = match (needs_arg, arg) {
                (false, _) => "",
                (true, Some(a)) => a,
                (true, None) => {
                    self.diag.err(loc, format!("{ctx}: '{p}' needs a value"));
                    return Err(ParamsFailed);
                }
            };
            let mut bad = |msg: String| {
                self.diag.err(loc, format!("{ctx}: {msg}"));
                failed = true;
            };
            match p {
                "weight" => match parse_weight(arg) {
                    Ok(v) => params.weight = v,
                    Err(e) => bad(e),
                },
                "maxconn" | "maxqueue" | "minconn" => match parse_u32(arg, 0, u32::MAX) {
                    Ok(v) if p == "maxconn" => params.maxconn = v,
                    Ok(v) if p == "maxqueue" => params.maxqueue = v,
                    Ok(_) => not_yet.push((p, "dynamic maxconn")),
                    Err(e) => bad(format!("'{p}': {e}")),
                },
                "port" => match parse_port(arg) {
                    Ok(v) => params.check_port = Some(v),
                    Err(e) => bad(format!("'port': {e}")),
                },
                "id" if is_default => bad("'id' is not allowed on default-server".to_owned()),
                "id" => match parse_u32(arg, 1, u32::MAX) {
                    Ok(v) => id = Some(v),
                    Err(e) => bad(format!("'id': {e}")),
                },
                "backup" => params.backup = true,
                "no-backup" => params.backup = false,
                "disabled" => params.disabled = true,
                "enabled" => params.disabled = false,
                "inter" | "fastinter" | "downinter" | "slowstart" | "agent-inter" => {
                    match parse_time(arg, TimeUnit::Ms) {
                        Ok(t) if t.is_zero() && p != "slowstart" => {
                            bad(format!("'{p}': must be greater than 0"));
                        }
                        Ok(t) => {
                            let h = &mut params.health;
                            match p {
                                "inter" => h.inter = t,
                                "fastinter" => h.fastinter = Some(t),
                                "downinter" => h.downinter = Some(t),
                                "slowstart" => h.slowstart = (!t.is_zero()).then_some(t),
                                _ => h.agent.inter = Some(t),
                            }
                        }
                        Err(e) => bad(format!("'{p}': {e}")),
                    }
                }
                "rise" | "fall" | "error-limit" => match parse_u32(arg, 1, u32::MAX) {
                    Ok(v) if p == "rise" => params.health.rise = v,
                    Ok(v) if p == "fall" => params.health.fall = v,
                    Ok(v) => params.health.error_limit = v,
                    Err(e) => bad(format!("'{p}': {e}")),
                },
                "agent-port" => match parse_port(arg) {
                    Ok(v) => params.health.agent.port = Some(v),
                    Err(e) => bad(format!("'{p}': {e}")),
                },
                "addr" | "agent-addr" => match arg.parse::<IpAddr>() {
                    Ok(ip) if p == "addr" => params.health.addr = Some(ip),
                    Ok(ip) => params.health.agent.addr = Some(ip),
                    // HAProxy resolves it once at load; lb keeps check addresses numeric.
                    Err(_) if is_hostname(arg) => bad(format!(
                        "'{p}': '{arg}' is a host name; lb needs an IP address here"
                    )),
                    Err(_) => bad(format!("'{p}': invalid address '{arg}'")),
                },
                "on-marked-down" | "on-marked-up" | "observe" | "on-error" | "verify"
                | "resolve-prefer" => {
                    let allowed: &[&str] = match p {
                        "on-marked-down" => &["shutdown-sessions"],
                        "on-marked-up" => &["shutdown-backup-sessions"],
                        "observe" => &["none", "layer4", "layer7"],
                        "on-error" => &["fastinter", "fail-check", "sudden-death", "mark-down"],
                        "verify" => &["none", "required"],
                        _ => &["ipv4", "ipv6"],
                    };
                    if allowed.contains(&arg) {
                        let h = &mut params.health;
                        match p {
                            "on-marked-down" => h.shutdown_on_down = true,
                            "on-marked-up" => h.shutdown_backup_on_up = true,
                            "observe" if arg == "layer7" => {
                                not_yet.push((p, "layer7 observing needs mode http"));
                            }
                            "observe" => h.observe_layer4 = arg == "layer4",
                            "on-error" => {
                                h.on_error = match arg {
                                    "fail-check" => OnError::FailCheck,
                                    "sudden-death" => OnError::SuddenDeath,
                                    "mark-down" => OnError::MarkDown,
                                    _ => OnError::Fastinter,
                                };
                            }
                            "verify" => not_yet.push((p, "TLS; lb has no TLS")),
                            _ => params.resolve_prefer_ipv4 = arg == "ipv4",
                        }
                    } else {
                        bad(format!(
                            "'{p}': invalid value '{arg}' (expected {})",
                            allowed.join("|")
                        ));
                    }
                }
                "resolvers" => {
                    self.resolver_refs.push((arg.to_owned(), loc.clone()));
                    params.resolvers = Some(arg.to_owned());
                }
                "init-addr" => {
                    let mut methods = Vec::new();
                    for m in arg.split(',') {
                        match m {
                            "last" => methods.push(InitAddr::Last),
                            "libc" => methods.push(InitAddr::Libc),
                            "none" => methods.push(InitAddr::None),
                            _ => {
                                if let Ok(ip) = m.parse::<IpAddr>() {
                                    methods.push(InitAddr::Ip(ip));
                                } else {
                                    bad(format!(
                                        "'init-addr': invalid method '{m}' (expected \
                                         last|libc|none|<ip>, comma-separated)"
                                    ));
                                    break;
                                }
                            }
                        }
                    }
                    params.init_addr = Some(methods);
                }
                "check" => params.health.check = true,
                "no-check" => params.health.check = false,

                "agent-check" => params.health.agent.enabled = true,
                "no-agent-check" => params.health.agent.enabled = false,
                // The lexer already applied the escapes (`\r`, `\n`, `\xNN`), as for
                // `tcp-check send`.
                "agent-send" => params.health.agent.send = Some(arg.as_bytes().to_vec()),
                "send-proxy" | "send-proxy-v2" | "no-send-proxy" | "no-send-proxy-v2"
                | "proxy-v2-options" | "check-send-proxy" => not_yet.push((p, "PROXY protocol")),
                "resolve-opts" | "resolve-net" => not_yet.push((p, "DNS re-resolution")),
                "sni" | "check-sni" => not_yet.push((p, "TLS; lb has no TLS")),
                "track" => not_yet.push((p, "health checks")),
                "cookie" | "redir" => not_yet.push((p, "HTTP-only")),
                "pool-max-conn" | "pool-purge-delay" | "proto" | "tfo" | "namespace" | "source"
                | "usesrc" => not_yet.push((p, "connection options")),
                // We never do TLS: turning it off is what lb does anyway.
                "no-ssl" | "no-verifyhost" | "no-check-ssl" => {}
                "ssl" | "check-ssl" | "crt" | "ca-file" | "alpn" | "check-alpn" | "ciphers"
                | "ssl-min-ver" | "ssl-max-ver" | "force-tlsv12" | "force-tlsv13" => {
                    bad(format!(
                        "'{p}' needs TLS, which lb does not do (connect to the server in clear \
                         text)"
                    ));
                }
                _ => bad(format!("unknown parameter '{p}'")),
            }
            i += if needs_arg { 2 } else { 1 };
        }
        if failed {
            return Err(ParamsFailed);
        }
        if !not_yet.is_empty() {
            // One warning per line, grouped by feature.
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for (p, f) in not_yet {
                match groups.iter_mut().find(|(g, _)| *g == f) {
                    Some((_, ps)) => ps.push(p),
                    None => groups.push((f, vec![p])),
                }
            }
            let text = groups
                .iter()
                .map(|(f, ps)| {
                    let ps: Vec<String> = ps.iter().map(|p| format!("'{p}'")).collect();
                    format!("{} ({f})", ps.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ");
            self.diag
                .warn(loc, format!("{ctx}: not supported yet, ignored: {text}"));
        }
        Ok(id)
    }

    // ----- balance, hash-type, timeout, option -----

    fn balance(&mut self, line: &Line) -> Option<Balance> {
        let arg = line.words[1].as_str();
        let b = match arg {
            "roundrobin" => Balance::RoundRobin,
            "static-rr" => Balance::StaticRr,
            "leastconn" => Balance::LeastConn,
            "first" => Balance::First,
            "source" => Balance::Source,
            "random" => Balance::Random { draws: 2 },
            _ if arg.starts_with("random(") && arg.ends_with(')') => {
                let n = &arg["random(".len()..arg.len() - 1];
                match parse_u32(n, 1, 100) {
                    Ok(draws) => Balance::Random { draws },
                    Err(e) => {
                        self.diag
                            .err(&line.loc, format!("'balance random': draws {e}"));
                        return None;
                    }
                }
            }
            _ if arg == "uri"
                || arg == "url_param"
                || arg == "uri_path"
                || arg.starts_with("hdr(")
                || arg.starts_with("rdp-cookie")
                || arg == "hash" =>
            {
                self.diag.err(
                    &line.loc,
                    format!(
                        "'balance {arg}' needs mode http or is not supported (lb supports \
                         roundrobin, static-rr, leastconn, first, source, random)"
                    ),
                );
                return None;
            }
            _ => {
                self.diag.err(
                    &line.loc,
                    format!(
                        "'balance': unknown algorithm '{arg}' (expected roundrobin, static-rr, \
                         leastconn, first, source, random or random(N))"
                    ),
                );
                return None;
            }
        };
        Some(b)
    }

    fn hash_type(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let ht = match w[1].as_str() {
            "map-based" => HashType::MapBased,
            "consistent" => HashType::Consistent,
            other => {
                self.diag.err(
                    &line.loc,
                    format!(
                        "'hash-type': unknown method '{other}' (expected map-based or consistent)"
                    ),
                );
                return;
            }
        };
        let mut rest = &w[2..];
        if let Some(f) = rest.first() {
            if ["sdbm", "djb2", "wt6", "crc32", "none"].contains(&f.as_str()) {
                rest = &rest[1..];
            }
        }
        if let Some(m) = rest.first() {
            if m != "avalanche" || rest.len() > 1 {
                self.diag.err(
                    &line.loc,
                    format!(
                        "'hash-type': unexpected argument '{m}' (expected [sdbm|djb2|wt6|crc32|none] \
                         [avalanche])"
                    ),
                );
                return;
            }
        }
        px.opts.hash_type = ht;
        if w.len() > 2 {
            let words: Vec<String> = w[2..].iter().map(|x| format!("'{x}'")).collect();
            self.diag.warn(
                &line.loc,
                format!(
                    "'hash-type': {} not supported yet (hash functions); lb's own hash is used",
                    words.join(" ")
                ),
            );
        }
    }

    fn timeout_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let Some(which) = w.get(1) else {
            self.diag
                .err(&line.loc, "'timeout': expects a name and a time");
            return;
        };
        let kw = format!("timeout {which}");
        let fe = matches!(which.as_str(), "client" | "client-fin");
        let be = matches!(
            which.as_str(),
            "connect" | "server" | "tunnel" | "queue" | "server-fin" | "check"
        );
        let http = matches!(
            which.as_str(),
            "http-request" | "http-keep-alive" | "tarpit"
        );
        if !fe && !be && !http {
            self.diag.err(
                &line.loc,
                format!(
                    "'timeout': unknown timeout '{which}' (expected connect, client, server, \
                     tunnel, queue, client-fin, server-fin, check)"
                ),
            );
            return;
        }
        if !arity(&mut self.diag, line, 2, 1, 1) {
            return;
        }
        let t = match parse_time(&w[2], TimeUnit::Ms) {
            Ok(t) => t,
            Err(e) => {
                self.diag.err(&line.loc, format!("'{kw}': {e}"));
                return;
            }
        };
        if which == "http-request" {
            // Kept for the stats pages, which bound reading a request with it (a stats
            // section inherits it from its defaults, so no warning there).
            px.opts.timeouts.http_request = (!t.is_zero()).then_some(t);
        }
        if http {
            if !(which == "http-request" && px.kind == Kind::Defaults) {
                self.diag.warn(
                    &line.loc,
                    format!("'{kw}' is HTTP-only; ignored in mode tcp"),
                );
            }
            return;
        }
        if !self.cap(px, line, &kw, fe, be) {
            return;
        }
        // As in HAProxy, 0 means no timeout.
        let v = (!t.is_zero()).then_some(t);
        let to = &mut px.opts.timeouts;
        match which.as_str() {
            "connect" => to.connect = v,
            "client" => to.client = v,
            "server" => to.server = v,
            "tunnel" => to.tunnel = v,
            "queue" => to.queue = v,
            "client-fin" => to.client_fin = v,
            "server-fin" => to.server_fin = v,
            _ => to.check = v,
        }
    }

    /// `option X` (`start` = index of X) or `no option X`.
    fn option_line(&mut self, px: &mut ProxyDraft, line: &Line, start: usize, no: bool) {
        let w = &line.words;
        let Some(opt) = w.get(start).map(String::as_str) else {
            self.diag.err(&line.loc, "'option': expects an option name");
            return;
        };
        let kw = format!("option {opt}");
        let args = &w[start + 1..];
        let on = !no;
        let no_args = |d: &mut Diag| arity(d, line, start + 1, 0, 0);
        match opt {
            "redispatch" | "allbackups" | "srvtcpka" => {
                if !self.cap(px, line, &kw, false, true) {
                    return;
                }
                if opt == "redispatch" {
                    // `option redispatch <interval>` (HAProxy 1.6+): a number; only the default
                    // (-1 = last retry) is supported.
                    if !arity(&mut self.diag, line, start + 1, 0, 1) {
                        return;
                    }
                    if let Some(n) = args.first() {
                        if n != "-1" {
                            self.diag.err(
                                &line.loc,
                                format!(
                                    "'option redispatch {n}': only the default interval (-1: \
                                     redispatch on the last retry) is supported"
                                ),
                            );
                            return;
                        }
                    }
                    px.opts.redispatch = on;
                } else if no_args(&mut self.diag) {
                    match opt {
                        "allbackups" => px.opts.allbackups = on,
                        _ => px.opts.srv_ka.enabled = on,
                    }
                }
            }
            "tcplog" | "dontlognull" => {
                if self.cap(px, line, &kw, true, false) && no_args(&mut self.diag) {
                    if opt == "tcplog" {
                        px.opts.tcplog = on;
                    } else {
                        px.opts.dontlognull = on;
                    }
                }
            }
            "clitcpka" => {
                if self.cap(px, line, &kw, true, false) && no_args(&mut self.diag) {
                    px.opts.cli_ka.enabled = on;
                }
            }
            "tcpka" => {
                if no_args(&mut self.diag) {
                    if px.kind.fe() {
                        px.opts.cli_ka.enabled = on;
                    }
                    if px.kind.be() {
                        px.opts.srv_ka.enabled = on;
                    }
                }
            }
            // lb always splices (or forwards in the kernel), which is what these ask for; `no
            // option splice-*` cannot turn that off, so it gets a warning.
            "splice-auto" | "splice-request" | "splice-response" => {
                if no_args(&mut self.diag) && no {
                    self.diag.warn(
                        &line.loc,
                        format!("'no {kw}' is ignored: lb always splices"),
                    );
                }
            }
            "mysql-check" => {
                if no {
                    self.diag
                        .err(&line.loc, "'no option mysql-check' is not allowed");
                    return;
                }
                if !self.cap(px, line, &kw, false, true) {
                    return;
                }
                match args {
                    [] => {}
                    [u, ..] if u == "user" => {
                        if args.len() < 2 {
                            self.diag
                                .err(&line.loc, "'option mysql-check user' needs a user name");
                            return;
                        }
                        if let Some(v) = args.get(2) {
                            if !["post-41", "pre-41", "post-80"].contains(&v.as_str()) {
                                self.diag.err(
                                    &line.loc,
                                    format!(
                                        "'option mysql-check': unknown version '{v}' (expected \
                                         post-41|pre-41|post-80)"
                                    ),
                                );
                                return;
                            }
                        }
                        if !arity(&mut self.diag, line, start + 1, 0, 3) {
                            return;
                        }
                    }
                    [other, ..] => {
                        self.diag.err(
                            &line.loc,
                            format!("'option mysql-check': unexpected argument '{other}' (expected 'user NAME')"),
                        );
                        return;
                    }
                }
                let version = match args.get(2).map(String::as_str) {
                    Some("pre-41") => MysqlVersion::Pre41,
                    Some("post-80") => MysqlVersion::Post80,
                    _ => MysqlVersion::Post41,
                };
                px.opts.check = (
                    CheckKind::Mysql {
                        user: args.get(1).cloned(),
                        version,
                    },
                    Some(line.loc.clone()),
                );
            }
            "pgsql-check" => {
                if no {
                    self.diag
                        .err(&line.loc, "'no option pgsql-check' is not allowed");
                    return;
                }
                if !self.cap(px, line, &kw, false, true) {
                    return;
                }
                if args.len() != 2 || args[0] != "user" {
                    self.diag
                        .err(&line.loc, "'option pgsql-check': expects 'user NAME'");
                    return;
                }
                px.opts.check = (
                    CheckKind::Pgsql {
                        user: args[1].clone(),
                    },
                    Some(line.loc.clone()),
                );
            }
            "redis-check" | "tcp-check" | "external-check" | "log-health-checks" => {
                if no && opt != "log-health-checks" {
                    self.diag
                        .err(&line.loc, format!("'no {kw}' is not allowed"));
                    return;
                }
                if !self.cap(px, line, &kw, false, true) || !no_args(&mut self.diag) {
                    return;
                }
                let kind = match opt {
                    "redis-check" => CheckKind::Redis,
                    "tcp-check" => CheckKind::TcpCheck(Vec::new()),
                    "external-check" => CheckKind::External,
                    _ => {
                        px.opts.log_health_checks = on;
                        return;
                    }
                };
                px.opts.check = (kind, Some(line.loc.clone()));
            }
            "httpchk" | "smtpchk" => {
                if no {
                    self.diag
                        .err(&line.loc, format!("'no {kw}' is not allowed"));
                    return;
                }
                if self.cap(px, line, &kw, false, true)
                    && arity(&mut self.diag, line, start + 1, 0, 3)
                {
                    if opt == "smtpchk" {
                        self.not_yet(line, &kw, "health checks");
                        return;
                    }
                    // `option httpchk URI`, `METH URI`, `METH URI VER` (HAProxy's defaults:
                    // OPTIONS / HTTP/1.0).
                    let (method, uri, version) = match args {
                        [] => ("OPTIONS", "/", "HTTP/1.0"),
                        [u] => ("OPTIONS", u.as_str(), "HTTP/1.0"),
                        [m, u] => (m.as_str(), u.as_str(), "HTTP/1.0"),
                        [m, u, v, ..] => (m.as_str(), u.as_str(), v.as_str()),
                    };
                    px.opts.check = (
                        CheckKind::Http {
                            method: method.to_owned(),
                            uri: uri.to_owned(),
                            version: version.to_owned(),
                            expect: None,
                        },
                        Some(line.loc.clone()),
                    );
                }
            }
            _ => {
                if let Some((_, feature)) = OPTIONS_NOT_YET.iter().find(|(k, _)| *k == opt) {
                    let check = feature == &"health checks";
                    if check && no {
                        self.diag
                            .err(&line.loc, format!("'no {kw}' is not allowed"));
                    } else if (!check || self.cap(px, line, &kw, false, true))
                        && no_args(&mut self.diag)
                    {
                        let shown = if no { format!("no {kw}") } else { kw };
                        self.not_yet(line, &shown, feature);
                    }
                } else if HTTP_OPTIONS.contains(&opt) {
                    self.diag.warn(
                        &line.loc,
                        format!("'{kw}' is HTTP-only; ignored in mode tcp"),
                    );
                } else {
                    let known: Vec<&str> = [
                        "redispatch",
                        "allbackups",
                        "tcplog",
                        "dontlognull",
                        "tcpka",
                        "clitcpka",
                        "srvtcpka",
                        "splice-auto",
                        "splice-request",
                        "splice-response",
                        "mysql-check",
                        "pgsql-check",
                        "httpchk",
                        "smtpchk",
                        "redis-check",
                        "tcp-check",
                        "external-check",
                        "log-health-checks",
                    ]
                    .into_iter()
                    .chain(OPTIONS_NOT_YET.iter().map(|(k, _)| *k))
                    .chain(HTTP_OPTIONS.iter().copied())
                    .collect();
                    self.diag.err(
                        &line.loc,
                        format!("unknown option '{opt}'{}", suggest(opt, &known)),
                    );
                }
            }
        }
    }

    // ----- health-check rule lines and stats -----

    /// Validates a `tcp-check` line.
    fn tcp_check(&mut self, line: &Line) -> bool {
        let w = &line.words;
        let d = &mut self.diag;
        let Some(sub) = w.get(1).map(String::as_str) else {
            d.err(
                &line.loc,
                "'tcp-check': expects an action (connect, send, expect, ...)",
            );
            return false;
        };
        let err = |d: &mut Diag, m: String| {
            d.err(&line.loc, format!("'tcp-check {sub}': {m}"));
            false
        };
        match sub {
            "connect" => {
                let mut i = 2;
                while i < w.len() {
                    match w[i].as_str() {
                        "port" => match w.get(i + 1).map(|p| parse_port(p)) {
                            Some(Ok(_)) => i += 2,
                            Some(Err(e)) => return err(d, e),
                            None => return err(d, "'port' needs a value".into()),
                        },
                        "addr" | "sni" | "alpn" | "proto" | "comment" => {
                            if w.get(i + 1).is_none() {
                                return err(d, format!("'{}' needs a value", w[i]));
                            }
                            i += 2;
                        }
                        "send-proxy" | "via-socks4" | "ssl" | "linger" | "default" => i += 1,
                        other => return err(d, format!("unknown option '{other}'")),
                    }
                }
                true
            }
            "send" | "send-lf" => arity(d, line, 2, 1, 3),
            "send-binary" | "send-binary-lf" => {
                if !arity(d, line, 2, 1, 3) {
                    return false;
                }
                if sub == "send-binary" {
                    if let Err(e) = check_hex(&w[2]) {
                        return err(d, e);
                    }
                }
                true
            }
            "expect" => {
                let mut i = 2;
                loop {
                    match w.get(i).map(String::as_str) {
                        Some("min-recv") => match w.get(i + 1).map(|v| parse_u32(v, 0, u32::MAX)) {
                            Some(Ok(_)) => i += 2,
                            Some(Err(e)) => return err(d, format!("'min-recv': {e}")),
                            None => return err(d, "'min-recv' needs a value".into()),
                        },
                        Some(
                            "error-status" | "tout-status" | "ok-status" | "on-success"
                            | "on-error" | "status-code" | "comment",
                        ) => {
                            if w.get(i + 1).is_none() {
                                return err(d, format!("'{}' needs a value", w[i]));
                            }
                            i += 2;
                        }
                        Some("!") => i += 1,
                        _ => break,
                    }
                }
                let types = [
                    "string",
                    "rstring",
                    "binary",
                    "rbinary",
                    "string-lf",
                    "binary-lf",
                ];
                match w.get(i).map(String::as_str) {
                    Some(t) if types.contains(&t) => match w.get(i + 1) {
                        Some(pat) => {
                            if t == "binary" {
                                if let Err(e) = check_hex(pat) {
                                    return err(d, e);
                                }
                            }
                            if let Some(extra) = w.get(i + 2) {
                                return err(d, format!("unexpected argument '{extra}'"));
                            }
                            true
                        }
                        None => err(d, format!("'{t}' needs a pattern")),
                    },
                    Some(t) => err(
                        d,
                        format!("unknown match type '{t}' (expected {})", types.join("|")),
                    ),
                    None => err(
                        d,
                        format!("needs a match type ({}) and a pattern", types.join("|")),
                    ),
                }
            }
            "comment" => arity(d, line, 2, 1, 1),
            _ if sub.starts_with("set-var")
                || sub.starts_with("unset-var")
                || sub == "set-var-fmt" =>
            {
                arity(d, line, 2, 0, usize::MAX)
            }
            _ => err(
                d,
                "unknown action (expected connect, send, send-lf, send-binary, send-binary-lf, \
                 expect, comment, set-var, unset-var)"
                    .into(),
            ),
        }
    }

    /// Builds the rule of a `tcp-check` line that [`Self::tcp_check`] accepted. Actions lb does
    /// not run (variables, log-format sends) get a warning and no rule; `comment` is dropped.
    fn tcp_rule(&mut self, line: &Line) -> Option<TcpCheckRule> {
        let w = &line.words;
        let sub = w[1].as_str();
        let loc = &line.loc;
        match sub {
            "connect" => {
                let (mut port, mut addr, mut linger) = (None, None, false);
                let mut i = 2;
                while i < w.len() {
                    match w[i].as_str() {
                        "port" => port = parse_port(&w[i + 1]).ok(),
                        "addr" => {
                            let Ok(a) = w[i + 1].parse::<IpAddr>() else {
                                self.diag.err(
                                    loc,
                                    format!(
                                        "'tcp-check connect': 'addr': invalid IP address '{}'",
                                        w[i + 1]
                                    ),
                                );
                                return None;
                            };
                            addr = Some(a);
                        }
                        "linger" => linger = true,
                        "comment" | "default" => {}
                        other => {
                            self.diag.warn(
                                loc,
                                format!(
                                    "'tcp-check connect': option '{other}' is not supported yet; \
                                     ignored"
                                ),
                            );
                        }
                    }
                    i += if matches!(
                        w[i].as_str(),
                        "port" | "addr" | "sni" | "alpn" | "proto" | "comment"
                    ) {
                        2
                    } else {
                        1
                    };
                }
                Some(TcpCheckRule::Connect { port, addr, linger })
            }
            "send" => Some(TcpCheckRule::Send(w[2].as_bytes().to_vec())),
            "send-binary" => Some(TcpCheckRule::Send(decode_hex(&w[2]))),
            "expect" => {
                let (mut min_recv, mut negate) = (None, false);
                let mut i = 2;
                loop {
                    match w[i].as_str() {
                        "min-recv" => {
                            min_recv = parse_u32(&w[i + 1], 0, u32::MAX).ok();
                            i += 2;
                        }
                        "!" => {
                            negate = true;
                            i += 1;
                        }
                        "error-status" | "tout-status" | "ok-status" | "on-success"
                        | "on-error" | "status-code" | "comment" => i += 2,
                        _ => break,
                    }
                }
                let pat = &w[i + 1];
                let pattern = match w[i].as_str() {
                    "string" => ExpectPattern::String(pat.as_bytes().to_vec()),
                    "binary" => ExpectPattern::Binary(decode_hex(pat)),
                    t @ ("rstring" | "rbinary") => {
                        if let Err(e) = regex::bytes::Regex::new(pat) {
                            self.diag.err(
                                loc,
                                format!("'tcp-check expect {t}': invalid regex '{pat}': {e}"),
                            );
                            return None;
                        }
                        if t == "rstring" {
                            ExpectPattern::Rstring(pat.clone())
                        } else {
                            ExpectPattern::Rbinary(pat.clone())
                        }
                    }
                    t => {
                        self.not_yet(line, &format!("tcp-check expect {t}"), "log-format");
                        return None;
                    }
                };
                Some(TcpCheckRule::Expect {
                    min_recv,
                    negate,
                    pattern,
                })
            }
            "comment" => None,
            _ => {
                self.not_yet(line, &format!("tcp-check {sub}"), "health checks");
                None
            }
        }
    }

    /// Builds an `http-check expect` that [`Self::http_check`] accepted.
    fn http_expect(&mut self, line: &Line) -> Option<HttpExpect> {
        let w = &line.words;
        let mut i = 2;
        let mut negate = false;
        while w[i] == "!" {
            negate = true;
            i += 1;
        }
        let pat = &w[i + 1];
        let bad_regex = |d: &mut Diag, e: regex::Error| {
            d.err(
                &line.loc,
                format!("'http-check expect {}': invalid regex '{pat}': {e}", w[i]),
            );
        };
        let kind = match w[i].as_str() {
            "status" => {
                let mut ranges = Vec::new();
                for part in pat.split(',') {
                    let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                    match (parse_uint(lo, 100, 999), parse_uint(hi, 100, 999)) {
                        (Ok(lo), Ok(hi)) if lo <= hi => ranges.push((lo as u16, hi as u16)),
                        _ => {
                            self.diag.err(
                                &line.loc,
                                format!(
                                    "'http-check expect status': invalid status '{part}'                                      (expected a code 100-999 or a range LO-HI)"
                                ),
                            );
                            return None;
                        }
                    }
                }
                HttpExpectKind::Status(ranges)
            }
            "rstatus" | "rstring" => {
                if let Err(e) = regex::Regex::new(pat) {
                    bad_regex(&mut self.diag, e);
                    return None;
                }
                if w[i] == "rstatus" {
                    HttpExpectKind::Rstatus(pat.clone())
                } else {
                    HttpExpectKind::Rstring(pat.clone())
                }
            }
            "string" => HttpExpectKind::String(pat.clone()),
            other => {
                self.not_yet(line, &format!("http-check expect {other}"), "HTTP headers");
                return None;
            }
        };
        Some(HttpExpect { negate, kind })
    }

    /// Validates an `http-check` line.
    fn http_check(&mut self, line: &Line) -> bool {
        let w = &line.words;
        let d = &mut self.diag;
        let Some(sub) = w.get(1).map(String::as_str) else {
            d.err(
                &line.loc,
                "'http-check': expects an action (send, expect, ...)",
            );
            return false;
        };
        match sub {
            "expect" => {
                let mut i = 2;
                while w.get(i).is_some_and(|s| s == "!") {
                    i += 1;
                }
                let types = [
                    "status",
                    "rstatus",
                    "string",
                    "rstring",
                    "hdr",
                    "fhdr",
                    "status-code",
                ];
                match w.get(i).map(String::as_str) {
                    Some(t) if types.contains(&t) || t.starts_with("min-recv") => {
                        if w.get(i + 1).is_none() {
                            d.err(
                                &line.loc,
                                format!("'http-check expect {t}' needs a pattern"),
                            );
                            return false;
                        }
                        true
                    }
                    Some(t) => {
                        d.err(
                            &line.loc,
                            format!(
                                "'http-check expect': unknown match type '{t}' (expected {})",
                                types.join("|")
                            ),
                        );
                        false
                    }
                    None => {
                        d.err(
                            &line.loc,
                            "'http-check expect' needs a match type and a pattern",
                        );
                        false
                    }
                }
            }
            "send" | "connect" | "comment" | "send-state" | "disable-on-404" => true,
            _ if sub.starts_with("set-var") || sub.starts_with("unset-var") => true,
            _ => {
                d.err(
                    &line.loc,
                    format!(
                        "'http-check': unknown action '{sub}' (expected send, expect, connect, \
                         comment, send-state, disable-on-404)"
                    ),
                );
                false
            }
        }
    }

    /// Validates a `stats` line inside a proxy.
    fn stats_line(&mut self, line: &Line) -> bool {
        let w = &line.words;
        let d = &mut self.diag;
        let Some(sub) = w.get(1).map(String::as_str) else {
            d.err(
                &line.loc,
                "'stats': expects an argument (enable, uri, auth, ...)",
            );
            return false;
        };
        match sub {
            "enable" | "disable" | "hide-version" | "show-legends" | "show-modules" => {
                arity(d, line, 2, 0, 0)
            }
            "uri" | "realm" | "scope" => arity(d, line, 2, 1, usize::MAX),
            "show-node" | "show-desc" => arity(d, line, 2, 0, usize::MAX),
            "auth" => {
                if !arity(d, line, 2, 1, 1) {
                    return false;
                }
                if !w[2].contains(':') {
                    d.err(&line.loc, "'stats auth': expects 'user:password'");
                    return false;
                }
                true
            }
            "refresh" => {
                arity(d, line, 2, 1, 1)
                    && parse_time(&w[2], TimeUnit::S)
                        .map_err(|e| d.err(&line.loc, format!("'stats refresh': {e}")))
                        .is_ok()
            }
            "admin" | "http-request" => {
                if sub == "admin" && !w.get(2).is_some_and(|c| c == "if" || c == "unless") {
                    d.err(
                        &line.loc,
                        "'stats admin': expects 'if' or 'unless' and a condition",
                    );
                    return false;
                }
                arity(d, line, 2, 1, usize::MAX)
            }
            _ => {
                d.err(
                    &line.loc,
                    format!(
                        "'stats': unknown argument '{sub}' (expected enable, uri, realm, auth, \
                         refresh, admin, hide-version, ...)"
                    ),
                );
                false
            }
        }
    }

    /// Builds a stats page from a `mode http` section whose lines were validated by
    /// `proxy_line` (whose per-line "HTTP-only"/"not supported" warnings were dropped).
    fn stats_proxy(&mut self, px: &ProxyDraft, sec: &Section<'_>) -> StatsProxy {
        let mut st = StatsProxy {
            name: px.name.clone(),
            loc: px.loc.clone(),
            binds: px.binds.clone(),
            page: false,
            uri: "/haproxy?stats".to_owned(),
            realm: "HAProxy Statistics".to_owned(),
            users: Vec::new(),
            userlists: Vec::new(),
            refresh: None,
            admin: false,
            hide_version: false,
            prometheus: None,
            maxconn: px.opts.maxconn,
            timeout: px.opts.timeouts.client,
            request_timeout: px.opts.timeouts.http_request,
        };
        let http_auth = |words: &[String]| -> Vec<String> {
            words
                .iter()
                .filter_map(|w| {
                    w.strip_prefix("http_auth(")
                        .and_then(|r| r.strip_suffix(')'))
                        .map(str::to_owned)
                })
                .collect()
        };
        for line in sec.body {
            let w = &line.words;
            let loc = &line.loc;
            match w[0].as_str() {
                "stats" if w.len() >= 2 => match w[1].as_str() {
                    "enable" => st.page = true,
                    "disable" => st.page = false,
                    "uri" if w.len() > 2 => {
                        st.page = true;
                        st.uri.clone_from(&w[2]);
                    }
                    "realm" if w.len() > 2 => st.realm = w[2..].join(" "),
                    "auth" if w.len() > 2 => {
                        if let Some((u, p)) = w[2].split_once(':') {
                            st.page = true;
                            st.users.push(UserEntry {
                                name: u.to_owned(),
                                password: Password::Clear(p.to_owned()),
                            });
                        }
                    }
                    "refresh" if w.len() > 2 => st.refresh = parse_time(&w[2], TimeUnit::S).ok(),
                    "hide-version" => st.hide_version = true,
                    "admin" if w.len() > 3 => {
                        let cond = &w[3..];
                        let lists = http_auth(cond);
                        if w[2] == "if" && (cond == ["TRUE"] || !lists.is_empty()) {
                            st.admin = true;
                            for l in lists {
                                if !st.userlists.contains(&l) {
                                    st.userlists.push(l);
                                }
                            }
                        } else {
                            self.diag.warn(
                                loc,
                                "'stats admin': lb supports 'if TRUE' and 'if { http_auth(LIST) \
                                 }' only; admin actions stay disabled",
                            );
                        }
                    }
                    "http-request" => self.http_auth_rule(&mut st, line, &w[2..]),
                    other => self.diag.warn(
                        loc,
                        format!("'stats {other}' is not supported yet (stats page); ignored"),
                    ),
                },
                "http-request" if w.len() >= 2 => {
                    if w[1] == "use-service" && w.get(2).is_some_and(|s| s == "prometheus-exporter")
                    {
                        st.prometheus = Some(match &w[3..] {
                            [] => String::new(),
                            [c, o, p, path, cl]
                                if c == "if" && o == "{" && p == "path" && cl == "}" =>
                            {
                                path.clone()
                            }
                            _ => {
                                self.diag.warn(
                                    loc,
                                    "'use-service prometheus-exporter': lb supports no condition \
                                     or 'if { path P }'; serving /metrics",
                                );
                                "/metrics".to_owned()
                            }
                        });
                    } else {
                        self.http_auth_rule(&mut st, line, &w[1..]);
                    }
                }
                "mode" | "bind" | "timeout" | "maxconn" | "log" | "option" | "description" => {}
                kw => self.diag.warn(
                    loc,
                    format!("'{kw}' is ignored in stats section '{}'", px.name),
                ),
            }
        }
        st
    }

    /// `[stats] http-request auth [realm R] unless { http_auth(L) }` (or `if !{ ... }`): the
    /// page asks for the users of list L. Other `http-request` rules are not supported.
    fn http_auth_rule(&mut self, st: &mut StatsProxy, line: &Line, rule: &[String]) {
        if rule.first().is_some_and(|a| a == "auth") {
            let mut i = 1;
            if rule.get(1).is_some_and(|r| r == "realm") {
                if let Some(r) = rule.get(2) {
                    st.realm.clone_from(r);
                }
                i = 3;
            }
            let lists: Vec<String> = rule[i.min(rule.len())..]
                .iter()
                .filter_map(|w| {
                    w.strip_prefix("http_auth(")
                        .or_else(|| w.strip_prefix("!http_auth("))
                        .and_then(|r| r.strip_suffix(')'))
                        .map(str::to_owned)
                })
                .collect();
            if lists.is_empty() {
                self.diag.warn(
                    &line.loc,
                    "'http-request auth': lb needs an 'unless { http_auth(LIST) }' condition; \
                     ignored",
                );
            }
            for l in lists {
                if !st.userlists.contains(&l) {
                    st.userlists.push(l);
                }
            }
            st.page = true;
        } else {
            self.diag.warn(
                &line.loc,
                format!(
                    "'http-request {}' is not supported in a stats section (lb supports 'auth' \
                     and 'use-service prometheus-exporter'); ignored",
                    rule.first().map_or("", String::as_str)
                ),
            );
        }
    }

    // ----- resolvers and userlist -----

    fn resolvers_section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        if !arity(&mut self.diag, h, 1, 1, 1) {
            return;
        }
        let name = &h.words[1];
        let duplicate = if let Some(first) = self.resolvers.get(name) {
            self.diag.err(
                &h.loc,
                format!("resolvers name '{name}' is used twice (first at {first})"),
            );
            true
        } else {
            self.resolvers.insert(name.clone(), h.loc.clone());
            false
        };
        let secs = Duration::from_secs;
        let mut res = Resolvers {
            name: name.clone(),
            loc: h.loc.clone(),
            nameservers: Vec::new(),
            parse_resolv_conf: false,
            resolve_retries: 3,
            timeout_resolve: secs(1),
            timeout_retry: secs(1),
            hold_valid: secs(10),
            hold_nx: secs(30),
            hold_other: secs(30),
            hold_refused: secs(30),
            hold_timeout: secs(30),
            hold_obsolete: Duration::ZERO,
            accepted_payload_size: 512,
        };
        for line in sec.body {
            let w = &line.words;
            let d = &mut self.diag;
            let kw = w[0].as_str();
            match kw {
                "nameserver" => {
                    if arity(d, line, 1, 2, 2) {
                        let addr = split_host_port(&w[2]).and_then(|hp| match (hp.host, hp.port) {
                            (Some(Host::Ip(ip)), Some(p)) => {
                                parse_port(&p).map(|p| SocketAddr::new(ip, p))
                            }
                            _ => Err(format!("expected IP:PORT, got '{}'", w[2])),
                        });
                        match addr {
                            Ok(a) => {
                                if res.nameservers.iter().any(|(n, _)| n == &w[1]) {
                                    d.err(
                                        &line.loc,
                                        format!("'nameserver {}': name used twice", w[1]),
                                    );
                                }
                                res.nameservers.push((w[1].clone(), a));
                            }
                            Err(e) => d.err(&line.loc, format!("'nameserver {}': {e}", w[1])),
                        }
                    }
                }
                "resolve_retries" | "accepted_payload_size" => {
                    if arity(d, line, 1, 1, 1) {
                        let (min, max) = if kw == "resolve_retries" {
                            (1, 1000)
                        } else {
                            (512, 65535)
                        };
                        match parse_uint(&w[1], min, max) {
                            Ok(v) if kw == "resolve_retries" => res.resolve_retries = v as u32,
                            Ok(v) => res.accepted_payload_size = v as u16,
                            Err(e) => d.err(&line.loc, format!("'{kw}': {e}")),
                        }
                    }
                }
                "timeout" | "hold" => {
                    let subs: &[&str] = if kw == "timeout" {
                        &["resolve", "retry"]
                    } else {
                        &["valid", "nx", "other", "refused", "timeout", "obsolete"]
                    };
                    if !w.get(1).is_some_and(|s| subs.contains(&s.as_str())) {
                        d.err(
                            &line.loc,
                            format!("'{kw}': expects one of {} and a time", subs.join("|")),
                        );
                    } else if arity(d, line, 2, 1, 1) {
                        match parse_time(&w[2], TimeUnit::Ms) {
                            Ok(t) if t.is_zero() && kw == "timeout" => {
                                d.err(&line.loc, format!("'{kw} {}': must be more than 0", w[1]));
                            }
                            Ok(t) => {
                                let slot = match (kw, w[1].as_str()) {
                                    ("timeout", "resolve") => &mut res.timeout_resolve,
                                    ("timeout", _) => &mut res.timeout_retry,
                                    (_, "valid") => &mut res.hold_valid,
                                    (_, "nx") => &mut res.hold_nx,
                                    (_, "other") => &mut res.hold_other,
                                    (_, "refused") => &mut res.hold_refused,
                                    (_, "timeout") => &mut res.hold_timeout,
                                    _ => &mut res.hold_obsolete,
                                };
                                *slot = t;
                            }
                            Err(e) => d.err(&line.loc, format!("'{kw} {}': {e}", w[1])),
                        }
                    }
                }
                "parse-resolv-conf" => {
                    if arity(d, line, 1, 0, 0) {
                        res.parse_resolv_conf = true;
                    }
                }
                _ => d.err(
                    &line.loc,
                    format!("unknown keyword '{kw}' in 'resolvers' section '{name}'"),
                ),
            }
        }
        if res.nameservers.is_empty() && !res.parse_resolv_conf {
            self.diag.warn(
                &h.loc,
                format!(
                    "resolvers '{name}' has no nameserver, so it resolves nothing (add 'nameserver NAME IP:PORT' or \
                     'parse-resolv-conf')"
                ),
            );
        }
        if !duplicate {
            self.global.resolvers.push(res);
        }
    }

    fn userlist_section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        if !arity(&mut self.diag, h, 1, 1, 1) {
            return;
        }
        let name = &h.words[1];
        if let Some(first) = self.userlists.iter().find(|u| u.name == *name) {
            self.diag.err(
                &h.loc,
                format!(
                    "userlist name '{name}' is used twice (first at {})",
                    first.loc
                ),
            );
        }
        let mut list = Userlist {
            name: name.clone(),
            loc: h.loc.clone(),
            users: Vec::new(),
        };
        for line in sec.body {
            let w = &line.words;
            let d = &mut self.diag;
            match w[0].as_str() {
                "user" => {
                    if !arity(d, line, 1, 3, 5) {
                        continue;
                    }
                    if w[2] == "password" && !w[3].starts_with('$') {
                        d.warn(
                            &line.loc,
                            format!(
                                "'user {}': the password does not look like a crypt(3) hash \
                                 ($6$..., $5$..., $1$...); it is checked with crypt(3) anyway",
                                w[1]
                            ),
                        );
                    }
                    if list.users.iter().any(|u| u.name == w[1]) {
                        d.err(
                            &line.loc,
                            format!("userlist '{name}': user '{}' is defined twice", w[1]),
                        );
                    }
                    list.users.push(UserEntry {
                        name: w[1].clone(),
                        password: if w[2] == "password" {
                            Password::Crypt(w[3].clone())
                        } else {
                            Password::Clear(w[3].clone())
                        },
                    });
                    if !matches!(w[2].as_str(), "password" | "insecure-password") {
                        d.err(
                            &line.loc,
                            format!(
                                "'user {}': expects 'password' or 'insecure-password', got '{}'",
                                w[1], w[2]
                            ),
                        );
                    } else if w.len() > 4 && (w[4] != "groups" || w.len() != 6) {
                        d.err(
                            &line.loc,
                            format!("'user {}': expects 'groups G1,G2' after the password", w[1]),
                        );
                    }
                }
                "group" => {
                    if arity(d, line, 1, 1, 3) && w.len() > 2 && (w[2] != "users" || w.len() != 4) {
                        d.err(
                            &line.loc,
                            format!("'group {}': expects 'users U1,U2' after the name", w[1]),
                        );
                    }
                }
                kw => d.err(
                    &line.loc,
                    format!("unknown keyword '{kw}' in 'userlist' section '{name}'"),
                ),
            }
        }
        self.userlists.push(list);
    }

    // ----- cross-section checks -----

    fn finish(&mut self) -> Option<Config> {
        let mut backends = Vec::new();
        let mut be_index: HashMap<String, usize> = HashMap::new();
        for px in self.proxies.iter().filter(|p| p.kind.be()) {
            be_index.insert(px.name.clone(), backends.len());
            let t = px.opts.timeouts;
            let mut missing = Vec::new();
            if t.connect.is_none() {
                missing.push("'connect'");
            }
            if t.server.is_none() {
                missing.push("'server'");
            }
            if px.kind == Kind::Backend && !missing.is_empty() {
                self.diag.warn(
                    &px.loc,
                    format!(
                        "missing timeouts for {}: {} (HAProxy warns too; set them in defaults)",
                        px.ctx(),
                        missing.join(", ")
                    ),
                );
            }
            backends.push(Backend {
                name: px.name.clone(),
                loc: px.loc.clone(),
                id: u32::try_from(backends.len() + 1).unwrap_or(u32::MAX),
                balance: px.opts.balance,
                hash_type: px.opts.hash_type,
                servers: px.servers.iter().map(|(s, _)| s.clone()).collect(),
                timeouts: px.opts.timeouts,
                retries: px.opts.retries,
                redispatch: px.opts.redispatch,
                allbackups: px.opts.allbackups,
                keepalive: px.opts.srv_ka,
                check: check_kind(&mut self.diag, &self.global, px),
                log_health_checks: px.opts.log_health_checks,
                external_check: px.opts.external_check.clone(),
            });
        }
        let mut frontends = Vec::new();
        let mut bound: HashMap<SocketAddr, (String, Loc)> = HashMap::new();
        for px in self.proxies.iter().filter(|p| p.kind.fe()) {
            let ctx = px.ctx();
            if px.binds.is_empty() {
                if px.bind_lines > 0 {
                    // Every bind line was invalid, and reported.
                } else if px.kind == Kind::Listen {
                    self.diag.warn(
                        &px.loc,
                        format!("{ctx} has no 'bind'; only its servers are used (as a backend)"),
                    );
                } else {
                    self.diag.err(&px.loc, format!("{ctx} has no 'bind' line"));
                }
                continue;
            }
            let backend = if px.kind == Kind::Listen {
                if let Some((b, loc)) = &px.opts.default_backend {
                    if px.own_default_backend.is_none() {
                        self.diag.warn(
                            &px.loc,
                            format!(
                                "{ctx}: default_backend '{b}' inherited from defaults at {loc} is \
                                 ignored; a listen forwards to its own servers"
                            ),
                        );
                    }
                }
                be_index.get(&px.name).copied()
            } else if let Some((b, loc)) = &px.opts.default_backend {
                let found = be_index.get(b).copied();
                if found.is_none() {
                    let why = if self.stats_sections.contains_key(b) {
                        " (it is a stats section, which has no servers)"
                    } else {
                        ""
                    };
                    self.diag
                        .err(loc, format!("{ctx}: default_backend '{b}' not found{why}"));
                }
                found
            } else {
                self.diag.err(
                    &px.loc,
                    format!(
                        "{ctx} has no backend: add 'default_backend NAME' (use_backend \
                             rules are not supported yet)"
                    ),
                );
                None
            };
            for b in &px.binds {
                if b.addr.port() == 0 {
                    continue;
                }
                if let Some((other, first)) = bound.get(&b.addr) {
                    self.diag.err(
                        &b.loc,
                        format!(
                            "{ctx}: address {} is already bound by {other} at {first}",
                            b.addr
                        ),
                    );
                } else {
                    bound.insert(b.addr, (ctx.clone(), b.loc.clone()));
                }
            }
            let t = px.opts.timeouts;
            let mut missing = Vec::new();
            if t.client.is_none() {
                missing.push("'client'");
            }
            if px.kind == Kind::Listen {
                if t.connect.is_none() {
                    missing.push("'connect'");
                }
                if t.server.is_none() {
                    missing.push("'server'");
                }
            }
            if !missing.is_empty() {
                self.diag.warn(
                    &px.loc,
                    format!(
                        "missing timeouts for {ctx}: {} (HAProxy warns too; set them in defaults)",
                        missing.join(", ")
                    ),
                );
            }
            let Some(backend) = backend else { continue };
            frontends.push(Frontend {
                name: px.name.clone(),
                loc: px.loc.clone(),
                binds: px.binds.clone(),
                backend,
                maxconn: px.opts.maxconn,
                timeouts: px.opts.timeouts,
                keepalive: px.opts.cli_ka,
                logs: resolve_log_global(&px.opts.logs, &self.global.logs),
                tcplog: px.opts.tcplog,
                dontlognull: px.opts.dontlognull,
            });
        }
        // `resolvers` named on server lines must exist (sections may come later in the file).
        for (r, loc) in std::mem::take(&mut self.resolver_refs) {
            if !self.resolvers.contains_key(&r) {
                self.diag.err(
                    &loc,
                    format!("resolvers '{r}' not found (no 'resolvers {r}' section)"),
                );
            }
        }
        for st in &self.stats {
            for l in &st.userlists {
                if !self.userlists.iter().any(|u| u.name == *l) {
                    self.diag.err(
                        &st.loc,
                        format!(
                            "{} '{}': userlist '{l}' not found (no 'userlist {l}' section)",
                            "stats section", st.name
                        ),
                    );
                }
            }
            for b in &st.binds {
                if b.addr.port() == 0 {
                    continue;
                }
                if let Some((other, first)) = bound.get(&b.addr) {
                    self.diag.err(
                        &b.loc,
                        format!(
                            "stats section '{}': address {} is already bound by {other} at \
                             {first}",
                            st.name, b.addr
                        ),
                    );
                } else {
                    bound.insert(b.addr, (format!("'{}'", st.name), b.loc.clone()));
                }
            }
        }
        let mut paths: HashMap<&PathBuf, &Loc> = HashMap::new();
        for sock in &self.global.stats_sockets {
            if let Some(first) = paths.insert(&sock.path, &sock.loc) {
                self.diag.err(
                    &sock.loc,
                    format!(
                        "stats socket {} is declared twice (first at {first})",
                        sock.path.display()
                    ),
                );
            }
        }
        if !self.diag.errors.is_empty() {
            return None;
        }
        Some(Config {
            global: self.global.clone(),
            frontends,
            backends,
            stats: self.stats.clone(),
            userlists: self.userlists.clone(),
            // Filled by the caller once the diagnostics are sorted.
            warnings: Vec::new(),
        })
    }
}

/// A proxy's log targets with each `log global` replaced by the global section's targets.
fn resolve_log_global(own: &[LogTarget], global: &[LogTarget]) -> Vec<LogTarget> {
    let mut out = Vec::new();
    for t in own {
        if t.args.len() == 1 && t.args[0] == "global" {
            out.extend(global.iter().cloned());
        } else {
            out.push(t.clone());
        }
    }
    out
}

/// Parses `stats socket PATH [mode M] [level L] [...]` (`line.words[2..]`).
#[expect(
    clippy::many_single_char_names,
    reason = "d, w, i and v as in the other keyword parsers of this file"
)]
fn stats_socket(d: &mut Diag, line: &Line) -> Option<StatsSocket> {
    let w = &line.words;
    let raw = w[2].as_str();
    let path = raw.strip_prefix("unix@").unwrap_or(raw);
    if !path.starts_with('/') && !path.starts_with('.') {
        d.warn(
            &line.loc,
            format!(
                "'stats socket {raw}': lb serves the runtime API on unix sockets only (a path); \
                 ignored"
            ),
        );
        return None;
    }
    let mut sock = StatsSocket {
        loc: line.loc.clone(),
        path: PathBuf::from(path),
        mode: None,
        level: CliLevel::Operator,
    };
    let mut i = 3;
    while i < w.len() {
        let val = w.get(i + 1);
        match (w[i].as_str(), val) {
            ("mode", Some(v)) => match u32::from_str_radix(v, 8) {
                Ok(m) if m <= 0o7777 => sock.mode = Some(m),
                _ => {
                    d.err(
                        &line.loc,
                        format!("'stats socket': mode '{v}' is not an octal mode (e.g. 660)"),
                    );
                    return None;
                }
            },
            ("level", Some(v)) => {
                sock.level = match v.as_str() {
                    "user" => CliLevel::User,
                    "operator" => CliLevel::Operator,
                    "admin" => CliLevel::Admin,
                    _ => {
                        d.err(
                            &line.loc,
                            format!(
                                "'stats socket': unknown level '{v}' (expected user, operator or \
                                 admin)"
                            ),
                        );
                        return None;
                    }
                };
            }
            (
                "user" | "group" | "uid" | "gid" | "expose-fd" | "severity-output" | "process"
                | "thread" | "name" | "maxconn" | "backlog",
                Some(v),
            ) => {
                d.warn(
                    &line.loc,
                    format!(
                        "'stats socket ... {} {v}' is not supported yet; ignored",
                        w[i]
                    ),
                );
            }
            (other, _) => {
                d.err(
                    &line.loc,
                    format!(
                        "'stats socket': unknown or incomplete option '{other}' (expected mode M, \
                         level L)"
                    ),
                );
                return None;
            }
        }
        i += 2;
    }
    Some(sock)
}

/// Checks the arguments of a `log` line (`start` = index of the first argument):
/// `global`, or `TARGET [len N] [format F] [sample R:S] FACILITY [LEVEL [MINLEVEL]]`.
/// Hex text already checked by `check_hex` -> bytes.
fn decode_hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap_or("00");
            u8::from_str_radix(s, 16).unwrap_or(0)
        })
        .collect()
}

/// The backend's health-check method from its options, with the checks HAProxy makes at load:
/// `option external-check` needs `external-check` in `global` and an `external-check command`.
fn check_kind(diag: &mut Diag, global: &Global, px: &ProxyDraft) -> CheckKind {
    let (kind, loc) = &px.opts.check;
    match kind {
        CheckKind::TcpCheck(_) if px.opts.tcp_rules.is_empty() => CheckKind::Connect,
        CheckKind::TcpCheck(_) => CheckKind::TcpCheck(px.opts.tcp_rules.clone()),
        CheckKind::Http {
            method,
            uri,
            version,
            ..
        } => CheckKind::Http {
            method: method.clone(),
            uri: uri.clone(),
            version: version.clone(),
            expect: px.opts.http_expect.clone(),
        },
        CheckKind::External => {
            let loc = loc.as_ref().unwrap_or(&px.loc);
            let checked = px.servers.iter().any(|(s, _)| s.health.check);
            if !global.external_check && checked {
                diag.err(
                    loc,
                    format!(
                        "{}: 'option external-check' needs 'external-check' in the global \
                         section (as in HAProxy)",
                        px.ctx()
                    ),
                );
            }
            if px.opts.external_check.command.is_none() && checked {
                diag.err(
                    loc,
                    format!(
                        "{}: 'option external-check' needs 'external-check command PATH'",
                        px.ctx()
                    ),
                );
            }
            CheckKind::External
        }
        other => other.clone(),
    }
}

fn check_log_args(d: &mut Diag, line: &Line, start: usize) -> bool {
    let w = &line.words[start..];
    let err = |d: &mut Diag, m: String| {
        d.err(&line.loc, format!("'log': {m}"));
        false
    };
    match w {
        [] => return err(d, "expects 'global' or a target and a facility".into()),
        [g] if g == "global" => return true,
        [g, extra, ..] if g == "global" => return err(d, format!("unexpected argument '{extra}'")),
        _ => {}
    }
    let mut i = 1;
    while i < w.len() {
        match w[i].as_str() {
            "len" => match w.get(i + 1).map(|v| parse_u32(v, 80, 65535)) {
                Some(Ok(_)) => i += 2,
                Some(Err(e)) => return err(d, format!("'len': {e}")),
                None => return err(d, "'len' needs a value".into()),
            },
            "format" => match w.get(i + 1).map(String::as_str) {
                Some(
                    "rfc3164" | "rfc5424" | "short" | "raw" | "timed" | "iso" | "priority",
                ) => i += 2,
                Some(f) => {
                    return err(
                        d,
                        format!(
                            "unknown format '{f}' (expected rfc3164|rfc5424|short|raw|timed|iso|priority)"
                        ),
                    )
                }
                None => return err(d, "'format' needs a value".into()),
            },
            "sample" | "profile" => {
                if w.get(i + 1).is_none() {
                    return err(d, format!("'{}' needs a value", w[i]));
                }
                i += 2;
            }
            _ => break,
        }
    }
    let Some(fac) = w.get(i) else {
        return err(d, "a facility is required (e.g. local0)".into());
    };
    if !SYSLOG_FACILITIES.contains(&fac.as_str()) {
        return err(
            d,
            format!("unknown facility '{fac}' (e.g. local0, daemon, user)"),
        );
    }
    for lvl in &w[i + 1..(i + 3).min(w.len())] {
        if !SYSLOG_LEVELS.contains(&lvl.as_str()) {
            return err(
                d,
                format!(
                    "unknown level '{lvl}' (expected {})",
                    SYSLOG_LEVELS.join("|")
                ),
            );
        }
    }
    if let Some(extra) = w.get(i + 3) {
        return err(d, format!("unexpected argument '{extra}'"));
    }
    true
}

/// Proxy keywords handled directly by `proxy_line` (for suggestions).
const PROXY_KEYWORDS: &[&str] = &[
    "mode",
    "bind",
    "default_backend",
    "server",
    "default-server",
    "balance",
    "hash-type",
    "timeout",
    "retries",
    "maxconn",
    "option",
    "clitcpka-idle",
    "clitcpka-intvl",
    "clitcpka-cnt",
    "srvtcpka-idle",
    "srvtcpka-intvl",
    "srvtcpka-cnt",
    "log",
    "tcp-check",
    "http-check",
    "external-check",
    "stats",
    "id",
    "disabled",
    "enabled",
];

/// ` (did you mean 'X'?)` when a known word is within edit distance 2 of `word`.
fn suggest(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map_or_else(String::new, |(_, k)| format!(" (did you mean '{k}'?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Stable-sorts diagnostics by file order, then line.
pub(crate) fn sort_diag(diag: &mut Diag, files: &[Arc<PathBuf>]) {
    let rank = |loc: &Loc| {
        let f = files
            .iter()
            .position(|p| **p == *loc.file)
            .unwrap_or(usize::MAX);
        (f, loc.line)
    };
    diag.errors
        .sort_by_key(|e| e.loc.as_ref().map_or((0, 0), &rank));
    diag.warnings.sort_by_key(|w| rank(&w.loc));
}
