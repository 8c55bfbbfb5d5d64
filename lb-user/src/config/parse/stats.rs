//! Stats: `stats` lines of proxies, the stats pages (`mode http` sections serving the stats page
//! or the Prometheus exporter), and the global `stats socket|timeout|maxconn` of the runtime API.

use std::path::PathBuf;

use super::super::lex::Line;
use super::super::scalar::{parse_time, parse_u32, TimeUnit};
use super::super::{CliLevel, Password, StatsProxy, StatsSocket, UserEntry};
use super::proxy::ProxyDraft;
use super::{arity, Diag, Parser, Section};

impl Parser {
    /// Global `stats socket|timeout|maxconn|bind-process`.
    pub(super) fn global_stats(&mut self, line: &Line) {
        let d = &mut self.diag;
        let w = &line.words;
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

    /// Validates a `stats` line inside a proxy.
    pub(super) fn stats_line(&mut self, line: &Line) -> bool {
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
    pub(super) fn stats_proxy(&mut self, px: &ProxyDraft, sec: &Section<'_>) -> StatsProxy {
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
            show_legends: false,
            show_node: None,
            show_desc: None,
            prometheus: None,
            maxconn: px.opts.maxconn,
            timeout: px.opts.timeouts.client,
            request_timeout: px.opts.timeouts.http_request,
        };
        for line in sec.body {
            let w = &line.words;
            let loc = &line.loc;
            match w[0].as_str() {
                "stats" if w.len() >= 2 => self.stats_page_line(&mut st, line),
                "http-request" if w.len() >= 2 => {
                    if w[1] == "use-service" && w.get(2).is_some_and(|s| s == "prometheus-exporter")
                    {
                        st.prometheus = Some(self.prometheus_path(line));
                    } else {
                        self.http_auth_rule(&mut st, line, &w[1..]);
                    }
                }
                // What any proxy has, and a stats backend's load-balancing settings (it has no
                // servers): accepted, nothing to do for a page.
                "mode" | "bind" | "timeout" | "maxconn" | "log" | "option" | "description"
                | "balance" | "hash-type" | "retries" | "default_backend" => {}
                kw => self.diag.warn(
                    loc,
                    format!("'{kw}' is ignored in stats section '{}'", px.name),
                ),
            }
        }
        st
    }

    /// A `stats X` line of a stats page (validated by [`Self::stats_line`]).
    fn stats_page_line(&mut self, st: &mut StatsProxy, line: &Line) {
        let w = &line.words;
        let loc = &line.loc;
        match w[1].as_str() {
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
            "show-legends" => st.show_legends = true,
            // No name: the global `node`, else the host name (resolved when the page is built).
            "show-node" => st.show_node = Some(w.get(2).cloned().unwrap_or_default()),
            // No text: the global `description`.
            "show-desc" => st.show_desc = Some(w[2..].join(" ")),
            // HAProxy's extra statistics modules (HTTP/TLS counters): none apply to TCP.
            "show-modules" => {}
            "admin" if w.len() > 3 => {
                let cond = &w[3..];
                let lists = http_auth_lists(cond);
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
                        "'stats admin': lb supports 'if TRUE' and 'if { http_auth(LIST) }' \
                         only; admin actions stay disabled",
                    );
                }
            }
            "http-request" => self.http_auth_rule(st, line, &w[2..]),
            other => self.diag.warn(
                loc,
                format!("'stats {other}' is not supported yet (stats page); ignored"),
            ),
        }
    }

    /// The path of `http-request use-service prometheus-exporter [if { path P }]`.
    fn prometheus_path(&mut self, line: &Line) -> String {
        match &line.words[3..] {
            [] => String::new(),
            [c, o, p, path, cl] if c == "if" && o == "{" && p == "path" && cl == "}" => {
                path.clone()
            }
            _ => {
                self.diag.warn(
                    &line.loc,
                    "'use-service prometheus-exporter': lb supports no condition or 'if { path P \
                     }'; serving /metrics",
                );
                "/metrics".to_owned()
            }
        }
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
}

/// The lists named by `http_auth(LIST)` words of a condition.
fn http_auth_lists(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter_map(|w| {
            w.strip_prefix("http_auth(")
                .and_then(|r| r.strip_suffix(')'))
                .map(str::to_owned)
        })
        .collect()
}

/// `-S PATH[,OPTION,VALUE...]`, HAProxy's master CLI socket: the options of a `stats
/// socket` line, separated by commas, read by the same parser; level `admin` unless given.
/// `Ok`: the socket and the warnings of options lb ignores; `Err`: why it is refused.
pub fn master_socket(spec: &str) -> Result<(StatsSocket, Vec<String>), String> {
    let mut words: Vec<String> = ["stats", "socket"].map(String::from).to_vec();
    words.extend(spec.split(',').map(String::from));
    let line = Line {
        loc: super::super::Loc {
            file: std::sync::Arc::new(PathBuf::from("-S")),
            line: 0,
        },
        words,
    };
    let mut d = Diag::default();
    let sock = stats_socket(&mut d, &line);
    let why = |m: &str| format!("-S {spec}: {}", m.replacen("'stats socket", "'-S", 1));
    if let Some(e) = d.errors.first() {
        return Err(why(&e.message));
    }
    let warnings = d.warnings.iter().map(|w| why(&w.message)).collect();
    let Some(mut sock) = sock else {
        return Err(format!(
            "-S {spec}: lb serves the master CLI on unix sockets only (a path)"
        ));
    };
    sock.master = true;
    if !line.words.iter().skip(3).step_by(2).any(|w| w == "level") {
        sock.level = CliLevel::Admin;
    }
    Ok((sock, warnings))
}

/// Parses `stats socket PATH [mode M] [level L] [...]` (`line.words[2..]`).
#[expect(
    clippy::many_single_char_names,
    reason = "d, w, i and v as in the other keyword parsers"
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
        expose_fd: false,
        master: false,
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
            ("expose-fd", Some(v)) if v == "listeners" => sock.expose_fd = true,
            ("expose-fd", Some(v)) => {
                d.err(
                    &line.loc,
                    format!("'stats socket': 'expose-fd' only supports 'listeners' (got '{v}')"),
                );
                return None;
            }
            (
                "user" | "group" | "uid" | "gid" | "severity-output" | "process" | "thread"
                | "name" | "maxconn" | "backlog",
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
