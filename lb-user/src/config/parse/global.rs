//! The `global` section: one table entry per keyword (a handler, or "not supported yet" with the
//! feature and an argument check).

use std::path::PathBuf;

use super::super::lex::Line;
use super::super::scalar::{parse_size, parse_time, parse_u32, parse_uint, TimeUnit};
use super::super::{BindTlsDefaults, Global, LogTarget};
use super::log::check_log_args;
use super::state_file;
use super::suggest::suggest;
use super::{arity, Diag, Parser};
use crate::tls::ciphers::Version;

/// `HAProxy`'s values for everything `global` can set.
pub(super) fn builtin() -> Global {
    Global {
        maxconn: None,
        maxconnrate: None,
        maxsessrate: None,
        nbthread: None,
        cpu_map: Vec::new(),
        user: None,
        group: None,
        daemon: false,
        quiet: false,
        logs: Vec::new(),
        spread_checks: 0,
        external_check: false,
        set_dumpable: false,
        strict_limits: false,
        resolvers: Vec::new(),
        log_tag: None,
        log_send_hostname: None,
        stats_sockets: Vec::new(),
        stats_timeout: std::time::Duration::from_secs(10),
        stats_maxconn: 10,
        server_state_file: None,
        server_state_base: None,
        bufsize: 16384,
        maxrewrite: 1024,
        pidfile: None,
        chroot: None,
        maxpipes: None,
        node: None,
        description: None,
        ulimit_n: None,
        hard_stop_after: None,
        ca_base: None,
        crt_base: None,
        ssl_default_bind: BindTlsDefaults::default(),
        ssl_server_verify: true,
        ssl_default_server: crate::tls::ciphers::Settings::default(),
        sockmap_backlog: None,
    }
}

impl Default for Global {
    /// `HAProxy`'s values, as a config without a `global` section gets them.
    fn default() -> Self {
        builtin()
    }
}

/// Handles one line whose keyword is the entry's name.
type GlobalFn = fn(&mut Parser, &Line);

/// Checks the arguments of a keyword lb accepts but does not act on yet.
type ArgCheck = fn(&mut Diag, &Line) -> bool;

/// How a global keyword is handled.
enum Handling {
    Run(GlobalFn),
    /// Accepted but not acted on yet: the feature named in the warning, and the argument check.
    NotYet(&'static str, ArgCheck),
}

/// One global keyword.
struct GlobalKeyword {
    name: &'static str,
    handling: Handling,
    /// Offered in "did you mean".
    suggest: bool,
}

const fn run(name: &'static str, f: GlobalFn) -> GlobalKeyword {
    GlobalKeyword {
        name,
        handling: Handling::Run(f),
        suggest: true,
    }
}

const fn unsuggested(name: &'static str, f: GlobalFn) -> GlobalKeyword {
    GlobalKeyword {
        name,
        handling: Handling::Run(f),
        suggest: false,
    }
}

const fn not_yet(name: &'static str, feature: &'static str, args: ArgCheck) -> GlobalKeyword {
    GlobalKeyword {
        name,
        handling: Handling::NotYet(feature, args),
        suggest: true,
    }
}

const TLS: &str = "TLS connection limits";

/// Every global keyword except `tune.*` (see [`tune`]). The order is the order of "did you mean"
/// candidates.
const GLOBAL_KEYWORDS: &[GlobalKeyword] = &[
    run("maxconn", maxconn),
    run("nbthread", nbthread),
    run("user", user_group),
    run("group", user_group),
    run("daemon", daemon),
    run("log", log),
    run("spread-checks", spread_checks),
    run("external-check", external_check),
    run("insecure-fork-wanted", insecure_fork_wanted),
    run("log-tag", log_tag),
    run("log-send-hostname", log_send_hostname),
    run("pidfile", pidfile),
    run("chroot", chroot),
    run("maxpipes", maxpipes),
    run("ca-base", ca_base),
    run("crt-base", crt_base),
    run("ulimit-n", ulimit_n),
    run("master-worker", master_worker),
    run("hard-stop-after", hard_stop_after),
    run("node", node),
    run("description", description),
    run("server-state-file", state_file::global_path),
    run("server-state-base", state_file::global_path),
    run("quiet", quiet),
    run("cpu-map", cpu_map),
    run("maxconnrate", max_rate),
    run("maxsessrate", max_rate),
    not_yet("maxsslconn", TLS, count),
    run("ssl-default-bind-ciphers", ssl_default_bind_list),
    run("ssl-default-bind-ciphersuites", ssl_default_bind_list),
    run("ssl-default-bind-curves", ssl_default_bind_list),
    run("ssl-default-bind-options", ssl_default_bind_options),
    run("ssl-default-server-ciphers", ssl_default_server),
    run("ssl-default-server-ciphersuites", ssl_default_server),
    run("ssl-default-server-options", ssl_default_server_options),
    run("ssl-dh-param-file", dh_params),
    run("ssl-server-verify", ssl_server_verify),
    // Handled by the `tune.*` rule; listed for "did you mean".
    run("tune.ssl.default-dh-param", dh_params),
    not_yet("lua-load", "Lua", one_or_more),
    run("set-dumpable", set_dumpable),
    run("strict-limits", strict_limits),
    not_yet("busy-polling", "polling", optional),
    not_yet("localpeer", "peers", one_or_more),
    run("setenv", environment),
    run("presetenv", environment),
    run("resetenv", environment),
    run("unsetenv", environment),
    not_yet(
        "expose-experimental-directives",
        "experimental directives",
        optional,
    ),
    not_yet("h1-case-adjust", "HTTP", any),
    unsuggested("uid", user_group),
    unsuggested("gid", user_group),
    unsuggested("nbproc", nbproc),
    unsuggested("stats", stats),
];

impl Parser {
    /// One line of the `global` section.
    pub(super) fn global_line(&mut self, line: &Line) {
        let kw = line.words[0].as_str();
        if kw.starts_with("tune.") {
            tune(self, line);
            return;
        }
        if kw == "no" {
            global_no(self, line);
            return;
        }
        let Some(k) = GLOBAL_KEYWORDS.iter().find(|k| k.name == kw) else {
            let known: Vec<&str> = GLOBAL_KEYWORDS
                .iter()
                .filter(|k| k.suggest)
                .map(|k| k.name)
                .collect();
            self.diag.err(
                &line.loc,
                format!(
                    "unknown keyword '{kw}' in 'global' section{}",
                    suggest(kw, &known)
                ),
            );
            return;
        };
        match k.handling {
            Handling::Run(f) => f(self, line),
            Handling::NotYet(feature, args) => {
                if args(&mut self.diag, line) {
                    self.not_yet(line, kw, feature);
                }
            }
        }
    }
}

// ----- argument checks of the keywords not acted on yet -----

fn any(_: &mut Diag, _: &Line) -> bool {
    true
}

fn optional(d: &mut Diag, line: &Line) -> bool {
    arity(d, line, 1, 0, 1)
}

fn one_or_more(d: &mut Diag, line: &Line) -> bool {
    arity(d, line, 1, 1, usize::MAX)
}

fn two(d: &mut Diag, line: &Line) -> bool {
    arity(d, line, 1, 2, 2)
}

fn count(d: &mut Diag, line: &Line) -> bool {
    arity(d, line, 1, 1, 1)
        && parse_u32(&line.words[1], 0, u32::MAX)
            .map_err(|e| d.err(&line.loc, format!("'{}': {e}", line.words[0])))
            .is_ok()
}

// ----- handlers -----

fn maxconn(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 1, u32::MAX) {
            Ok(v) => p.global.maxconn = Some(v),
            Err(e) => p.diag.err(&line.loc, format!("'maxconn': {e}")),
        }
    }
}

/// `maxconnrate N`, `maxsessrate N`: the process's connections accepted, or sessions let in,
/// per second (0: no limit, as in HAProxy).
fn max_rate(p: &mut Parser, line: &Line) {
    if count(&mut p.diag, line) {
        let v = parse_u32(&line.words[1], 0, u32::MAX)
            .ok()
            .filter(|v| *v > 0);
        if line.words[0] == "maxconnrate" {
            p.global.maxconnrate = v;
        } else {
            p.global.maxsessrate = v;
        }
    }
}

fn nbthread(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_uint(&line.words[1], 1, 4096) {
            Ok(v) => p.global.nbthread = Some(v as usize),
            Err(e) => p.diag.err(&line.loc, format!("'nbthread': {e}")),
        }
    }
}

/// `cpu-map [auto:]GROUP[/THREADS] CPUS...` (see [`crate::config::cpu_map`]).
fn cpu_map(p: &mut Parser, line: &Line) {
    match super::super::cpu_map::parse(&line.words[1..]) {
        Ok(Some(m)) => p.global.cpu_map.push(m),
        Ok(None) => p.diag.warn(
            &line.loc,
            format!(
                "'cpu-map {}': lb has one thread group (group 1): this line names none of its \
                 threads; ignored",
                line.words.get(1).map_or("", String::as_str)
            ),
        ),
        Err(e) => p.diag.err(&line.loc, format!("'cpu-map': {e}")),
    }
}

/// `user`, `group`, `uid`, `gid`: the name or number to drop to.
fn user_group(p: &mut Parser, line: &Line) {
    let w = &line.words;
    let kw = w[0].as_str();
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    if matches!(kw, "uid" | "gid") {
        if let Err(e) = parse_u32(&w[1], 0, u32::MAX) {
            p.diag.err(&line.loc, format!("'{kw}': {e}"));
            return;
        }
    }
    let slot = if matches!(kw, "user" | "uid") {
        &mut p.global.user
    } else {
        &mut p.global.group
    };
    *slot = Some(w[1].clone());
}

fn daemon(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.global.daemon = true;
    }
}

/// `master-worker [no-exit-on-failure]` (or `-W`): HAProxy's master process, which reloads on
/// SIGUSR2 by starting new workers. lb is one process that reloads itself in place, on SIGHUP
/// and SIGUSR2 alike, whether or not the mode is asked for: nothing to change.
fn master_worker(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 1) {
        if let Some(w) = line.words.get(1).filter(|w| *w != "no-exit-on-failure") {
            p.diag.err(
                &line.loc,
                format!("'master-worker' only supports 'no-exit-on-failure' (got '{w}')"),
            );
        }
    }
}

/// `quiet` (or `-q`): no warnings and no "Configuration file is valid" on the console.
fn quiet(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.global.quiet = true;
    }
}

/// `setenv NAME VALUE`, `presetenv NAME VALUE`, `unsetenv NAME...`, `resetenv [NAME...]`:
/// applied while the lines were read (`config::env`, the lines after see the change); here
/// only their arguments are checked.
fn environment(p: &mut Parser, line: &Line) {
    let _ = match line.words[0].as_str() {
        "setenv" | "presetenv" => two(&mut p.diag, line),
        "unsetenv" => one_or_more(&mut p.diag, line),
        _ => true,
    };
}

/// `pidfile PATH` (`-p` on the command line wins, as in `HAProxy`).
fn pidfile(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.pidfile = Some(PathBuf::from(&line.words[1]));
    }
}

/// `chroot DIR`: checked at start (it must be a directory), entered after binding.
fn chroot(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.chroot = Some(PathBuf::from(&line.words[1]));
    }
}

/// `maxpipes N`: the most splice pipes open at once (0 is refused, as `HAProxy` refuses it).
fn maxpipes(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 1, u32::MAX) {
            Ok(v) => p.global.maxpipes = Some(v),
            Err(e) => p.diag.err(&line.loc, format!("'maxpipes': {e}")),
        }
    }
}

/// `ulimit-n N`: the file-descriptor limit lb sets at start (soft and hard).
fn ulimit_n(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 1, u32::MAX) {
            Ok(v) => p.global.ulimit_n = Some(v),
            Err(e) => p.diag.err(&line.loc, format!("'ulimit-n': {e}")),
        }
    }
}

/// `hard-stop-after T`: bounds how long a soft-stopped process keeps its connections.
fn hard_stop_after(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_time(&line.words[1], TimeUnit::Ms) {
            Ok(t) => p.global.hard_stop_after = Some(t),
            Err(e) => p.diag.err(&line.loc, format!("'hard-stop-after': {e}")),
        }
    }
}

/// `ca-base DIR`: where relative `ca-file` paths of the following lines are (TLS checks).
fn ca_base(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.ca_base = Some(line.words[1].clone().into());
    }
}

/// `ssl-default-server-ciphers LIST`, `ssl-default-server-ciphersuites LIST`: checked when a
/// server inherits them.
fn ssl_default_server(p: &mut Parser, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    let list = Some(line.words[1].clone());
    let d = &mut p.global.ssl_default_server;
    if line.words[0].ends_with("ciphersuites") {
        d.ciphersuites = list;
    } else {
        d.ciphers = list;
    }
}

/// `ssl-default-server-options OPT...`: `no-sslv3`...`no-tlsv13`, `force-*`, `ssl-min-ver V`,
/// `ssl-max-ver V`, `no-tls-tickets` (accepted; rustls's tickets stay on), as HAProxy.
fn ssl_default_server_options(p: &mut Parser, line: &Line) {
    let words = &line.words;
    let kw = &words[0];
    if words.len() < 2 {
        let msg = format!("global statement '{kw}' expects an option as an argument.");
        p.diag.err(&line.loc, msg);
        return;
    }
    let mut set = p.global.ssl_default_server.clone();
    let mut at = 1;
    while at < words.len() {
        let opt = words[at].as_str();
        let bound = match opt {
            "ssl-min-ver" | "ssl-max-ver" => {
                Some(words.get(at + 1).and_then(|v| Version::parse(v)))
            }
            _ => None,
        };
        match bound {
            Some(Some(v)) if opt == "ssl-min-ver" => (set.min, at) = (Some(v), at + 1),
            Some(Some(v)) => (set.max, at) = (Some(v), at + 1),
            Some(None) => {
                let msg = format!(
                    "'{opt}' expects one of SSLv3, TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3 on \
                     global statement '{kw}'."
                );
                p.diag.err(&line.loc, msg);
                return;
            }
            None if opt == "no-tls-tickets" || set.apply_word(opt) => {}
            None => {
                let msg = format!("unknown option '{opt}' on global statement '{kw}'.");
                p.diag.err(&line.loc, msg);
                return;
            }
        }
        at += 1;
    }
    p.global.ssl_default_server = set;
}

/// `ssl-server-verify none|required`: the default `verify` of servers (`ssl`, TLS checks).
fn ssl_server_verify(p: &mut Parser, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    match line.words[1].as_str() {
        "none" => p.global.ssl_server_verify = false,
        "required" => p.global.ssl_server_verify = true,
        other => p.diag.err(
            &line.loc,
            format!("'ssl-server-verify': invalid value '{other}' (expected none|required)"),
        ),
    }
}

/// `node NAME` (stats `show-node`).
fn node(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.node = Some(line.words[1].clone());
    }
}

/// `description TEXT...` (stats `show-desc`): the words joined by spaces, as `HAProxy`.
fn description(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, usize::MAX) {
        p.global.description = Some(line.words[1..].join(" "));
    }
}

/// `ssl-dh-param-file`, `tune.ssl.default-dh-param`: the DHE parameters of TLS binds. lb's
/// TLS (rustls) has no DHE key exchange (ECDHE only), so there is nothing to set: accepted
/// without a warning, as they change nothing a client can tell.
fn dh_params(p: &mut Parser, line: &Line) {
    arity(&mut p.diag, line, 1, 1, usize::MAX);
}

/// `crt-base DIR`: the directory of relative `crt` paths.
fn crt_base(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.crt_base = Some(line.words[1].clone().into());
    }
}

/// `ssl-default-bind-ciphers|ciphersuites|curves LIST`: the list of every `ssl` bind that
/// sets none. Checked where a bind uses it, as HAProxy (which hands it to OpenSSL only there).
fn ssl_default_bind_list(p: &mut Parser, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    let v = Some(line.words[1].clone());
    let s = &mut p.global.ssl_default_bind.settings;
    match line.words[0].as_str() {
        "ssl-default-bind-ciphers" => s.ciphers = v,
        "ssl-default-bind-ciphersuites" => s.ciphersuites = v,
        _ => s.curves = v,
    }
}

/// `ssl-default-bind-options WORDS`: `no-sslv3`, `no-tlsv1x`, `force-tlsv1x`, `ssl-min-ver
/// V`, `ssl-max-ver V`, `no-tls-tickets`, `prefer-client-ciphers` (HAProxy's list).
fn ssl_default_bind_options(p: &mut Parser, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, usize::MAX) {
        return;
    }
    let d: &mut BindTlsDefaults = &mut p.global.ssl_default_bind;
    let mut words = line.words[1..].iter();
    while let Some(w) = words.next() {
        let err = match w.as_str() {
            "no-tls-tickets" => {
                d.no_tls_tickets = true;
                None
            }
            "prefer-client-ciphers" => {
                d.prefer_client_ciphers = true;
                None
            }
            "ssl-min-ver" | "ssl-max-ver" => match words.next().map(|v| (v, Version::parse(v))) {
                Some((_, Some(v))) => {
                    if w == "ssl-min-ver" {
                        d.settings.min = Some(v);
                    } else {
                        d.settings.max = Some(v);
                    }
                    None
                }
                Some((v, None)) => Some(format!(
                    "'{w}': unknown version '{v}' (expected SSLv3, TLSv1.0, TLSv1.1, TLSv1.2 \
                     or TLSv1.3)"
                )),
                None => Some(format!("'{w}' needs a version")),
            },
            other if d.settings.apply_word(other) => None,
            other => Some(format!("unknown option '{other}'")),
        };
        if let Some(e) = err {
            p.diag
                .err(&line.loc, format!("'ssl-default-bind-options': {e}"));
            return;
        }
    }
}

fn log(p: &mut Parser, line: &Line) {
    if check_log_args(&mut p.diag, line, 1) {
        p.global.logs.push(LogTarget {
            loc: line.loc.clone(),
            args: line.words[1..].to_vec(),
        });
    }
}

fn log_tag(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        p.global.log_tag = Some(line.words[1].clone());
    }
}

/// `log-send-hostname [NAME]`: without a name, `HAProxy` sends the system's host name.
fn log_send_hostname(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 1) {
        let name = line
            .words
            .get(1)
            .cloned()
            .unwrap_or_else(crate::outside::hostname);
        p.global.log_send_hostname = Some(name);
    }
}

fn spread_checks(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_uint(&line.words[1], 0, 50) {
            Ok(v) => p.global.spread_checks = v as u32,
            Err(e) => p.diag.err(&line.loc, format!("'spread-checks': {e}")),
        }
    }
}

fn external_check(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.global.external_check = true;
    }
}

/// `set-dumpable` (see [`Global::set_dumpable`]).
fn set_dumpable(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.global.set_dumpable = true;
    }
}

/// `strict-limits` (see [`Global::strict_limits`]).
fn strict_limits(p: &mut Parser, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.global.strict_limits = true;
    }
}

/// `no KEYWORD` in `global`, for the keywords HAProxy 2.6 lets `no` negate: `log` (drops the
/// global log targets given so far), `set-dumpable`, `strict-limits`, and three whose
/// negation is what lb does anyway (`busy-polling`, `insecure-fork-wanted`,
/// `numa-cpu-mapping`).
fn global_no(p: &mut Parser, line: &Line) {
    let what = line.words.get(1).map_or("", String::as_str);
    if !matches!(
        what,
        "log"
            | "set-dumpable"
            | "strict-limits"
            | "busy-polling"
            | "insecure-fork-wanted"
            | "numa-cpu-mapping"
    ) {
        p.diag.err(
            &line.loc,
            "negation/default currently supported only for options, log, busy-polling, \
             set-dumpable, strict-limits, insecure-fork-wanted and numa-cpu-mapping.",
        );
        return;
    }
    if !arity(&mut p.diag, line, 2, 0, 0) {
        return;
    }
    match what {
        "log" => p.global.logs.clear(),
        "set-dumpable" => p.global.set_dumpable = false,
        "strict-limits" => p.global.strict_limits = false,
        _ => {}
    }
}

/// Forking is what external checks need; lb allows it whenever they are configured.
fn insecure_fork_wanted(p: &mut Parser, line: &Line) {
    arity(&mut p.diag, line, 1, 0, 0);
}

fn nbproc(p: &mut Parser, line: &Line) {
    p.diag.err(
        &line.loc,
        "'nbproc': multi-process mode was removed in HAProxy 2.5 (use 'nbthread'; lb runs one \
         process with one thread per CPU)",
    );
}

fn stats(p: &mut Parser, line: &Line) {
    p.global_stats(line);
}

/// `tune.*`: `tune.bufsize` and `tune.maxrewrite` size the content-inspection buffer, lb's own
/// `tune.lb.sockmap-backlog` bounds the kernel maps; the others are accepted (sizes checked)
/// and not acted on yet.
fn tune(p: &mut Parser, line: &Line) {
    let kw = line.words[0].as_str();
    if kw == "tune.lb.sockmap-backlog" {
        sockmap_backlog(p, line);
        return;
    }
    if kw == "tune.bufsize" || kw == "tune.maxrewrite" {
        buffer_size(p, line, kw);
        return;
    }
    if !arity(&mut p.diag, line, 1, 1, usize::MAX) {
        return;
    }
    if kw == "tune.ssl.default-dh-param" {
        dh_params(p, line);
        return;
    }
    if matches!(
        kw,
        "tune.rcvbuf.client" | "tune.rcvbuf.server" | "tune.sndbuf.client" | "tune.sndbuf.server"
    ) {
        if let Err(e) = parse_size(&line.words[1]) {
            p.diag.err(&line.loc, format!("'{kw}': {e}"));
            return;
        }
    }
    p.not_yet(line, kw, "tuning");
}

/// `tune.bufsize` / `tune.maxrewrite SIZE`.
fn buffer_size(p: &mut Parser, line: &Line, kw: &str) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    let min = if kw == "tune.bufsize" { 1024 } else { 0 };
    match parse_size(&line.words[1]).map(usize::try_from) {
        Ok(Ok(v)) if v >= min && v <= 1 << 30 => {
            if kw == "tune.bufsize" {
                p.global.bufsize = v;
            } else {
                p.global.maxrewrite = v;
            }
        }
        Ok(_) => p.diag.err(
            &line.loc,
            format!("'{kw}': must be between {min} and 1073741824"),
        ),
        Err(e) => p.diag.err(&line.loc, format!("'{kw}': {e}")),
    }
}

/// The least `tune.lb.sockmap-backlog`: one skb (64 KiB without BIG TCP) must fit in it.
const MIN_SOCKMAP_BACKLOG: u64 = 64 << 10;

/// `tune.lb.sockmap-backlog SIZE` (lb extension).
fn sockmap_backlog(p: &mut Parser, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    match parse_size(&line.words[1]) {
        Ok(n) if n >= MIN_SOCKMAP_BACKLOG => p.global.sockmap_backlog = Some(n),
        Ok(n) => p.diag.err(
            &line.loc,
            format!("'tune.lb.sockmap-backlog': {n} bytes is below the minimum of 64k"),
        ),
        Err(e) => p
            .diag
            .err(&line.loc, format!("'tune.lb.sockmap-backlog': {e}")),
    }
}
