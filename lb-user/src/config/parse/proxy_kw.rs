//! The keywords of proxy section lines, one table entry each: a handler, or "not supported yet"
//! with the feature and an argument check, or HTTP-only. `option` lines are in
//! [`super::option`], `bind` in [`super::bind`], `server`/`default-server` in [`super::server`],
//! health-check rules in [`super::checks`], `stats` in [`super::stats`].

use std::sync::Arc;

use super::super::lex::Line;
use super::super::scalar::{parse_time, parse_u32, TimeUnit};
use super::super::{Balance, HashExpr, HashFunction, HashMethod, HashType, LogTarget};
use super::log::check_log_args;
use super::proxy::{Kind, Mode, ProxyDraft};
use super::state_file;
use super::suggest::suggest;
use super::tcp_rules;
use super::{arity, Diag, Parser};

/// Handles one line whose keyword is the entry's name.
type ProxyFn = fn(&mut Parser, &mut ProxyDraft, &Line);

/// Checks the arguments of a keyword lb accepts but does not act on yet.
type ArgCheck = fn(&mut Diag, &Line) -> bool;

/// How a proxy keyword is handled.
enum Handling {
    /// Parsed into the model.
    Run(ProxyFn),
    /// Accepted but not acted on yet: the feature named in the warning, and the argument check.
    NotYet(&'static str, ArgCheck),
    /// Only meaningful in `mode http`: warned about and ignored.
    HttpOnly,
}

/// One proxy keyword.
struct ProxyKeyword {
    name: &'static str,
    handling: Handling,
    /// Offered in "did you mean" (keywords removed from `HAProxy` are not).
    suggest: bool,
}

const fn run(name: &'static str, f: ProxyFn) -> ProxyKeyword {
    ProxyKeyword {
        name,
        handling: Handling::Run(f),
        suggest: true,
    }
}

/// A handled keyword that is not offered as a suggestion.
const fn unsuggested(name: &'static str, f: ProxyFn) -> ProxyKeyword {
    ProxyKeyword {
        name,
        handling: Handling::Run(f),
        suggest: false,
    }
}

const fn not_yet(name: &'static str, feature: &'static str, args: ArgCheck) -> ProxyKeyword {
    ProxyKeyword {
        name,
        handling: Handling::NotYet(feature, args),
        suggest: true,
    }
}

const fn http_only(name: &'static str) -> ProxyKeyword {
    ProxyKeyword {
        name,
        handling: Handling::HttpOnly,
        suggest: true,
    }
}

/// Every proxy keyword. The order is the order of "did you mean" candidates (the first of
/// equally close ones wins).
const PROXY_KEYWORDS: &[ProxyKeyword] = &[
    run("mode", mode),
    run("bind", bind),
    run("default_backend", default_backend),
    run("server", server),
    run("default-server", default_server),
    run("balance", balance),
    run("hash-type", hash_type),
    run("timeout", timeout),
    run("retries", retries),
    run("maxconn", maxconn),
    run("option", option),
    run("clitcpka-idle", tcpka_time),
    run("clitcpka-intvl", tcpka_time),
    run("clitcpka-cnt", tcpka_cnt),
    run("srvtcpka-idle", tcpka_time),
    run("srvtcpka-intvl", tcpka_time),
    run("srvtcpka-cnt", tcpka_cnt),
    run("log", log),
    run("tcp-check", tcp_check),
    run("http-check", http_check),
    run("external-check", external_check),
    run("stats", stats),
    run("id", id),
    run("disabled", disabled),
    run("enabled", enabled),
    run("use_backend", tcp_rules::use_backend),
    run("use-server", tcp_rules::use_server),
    run("acl", tcp_rules::acl),
    run("tcp-request", tcp_rules::tcp_request),
    run("tcp-response", tcp_rules::tcp_response),
    run("stick-table", super::stick::stick_table),
    run("stick", super::stick::stick),
    run("force-persist", tcp_rules::force_persist),
    // HAProxy 2.6 only consults it for HTTP cookies.
    http_only("ignore-persist"),
    run("persist", persist),
    run("fullconn", fullconn),
    run("source", source),
    unsuggested("usesrc", usesrc),
    run("server-template", server_template),
    run("log-format", log_format),
    not_yet("log-format-sd", "logging", one_or_more),
    not_yet("error-log-format", "logging", one_or_more),
    run("log-tag", log_tag),
    run("description", description),
    not_yet("email-alert", "email alerts", one_or_more),
    run("backlog", backlog),
    run("rate-limit", rate_limit),
    not_yet("retry-on", "retry policies", one_or_more),
    not_yet("monitor", "monitoring", one_or_more),
    run("load-server-state-from-file", state_file::load_from_file),
    run("server-state-file-name", state_file::file_name),
    not_yet("dispatch", "dispatch", one_or_more),
    unsuggested("transparent", transparent),
    http_only("http-request"),
    http_only("http-response"),
    http_only("http-after-response"),
    http_only("http-reuse"),
    http_only("http-send-name-header"),
    http_only("errorfile"),
    http_only("errorfiles"),
    http_only("errorloc"),
    http_only("errorloc302"),
    http_only("errorloc303"),
    http_only("cookie"),
    http_only("capture"),
    http_only("compression"),
    http_only("monitor-uri"),
    http_only("redirect"),
    http_only("unique-id-format"),
    http_only("unique-id-header"),
    http_only("max-keep-alive-queue"),
    http_only("declare"),
    http_only("filter"),
    unsuggested("contimeout", removed_timeout),
    unsuggested("clitimeout", removed_timeout),
    unsuggested("srvtimeout", removed_timeout),
    unsuggested("no", no),
    unsuggested("bind-process", bind_process),
];

impl Parser {
    /// One line of a proxy section.
    pub(super) fn proxy_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let kw = line.words[0].as_str();
        let Some(k) = PROXY_KEYWORDS.iter().find(|k| k.name == kw) else {
            let known: Vec<&str> = PROXY_KEYWORDS
                .iter()
                .filter(|k| k.suggest)
                .map(|k| k.name)
                .collect();
            let sec = if px.name.is_empty() {
                format!("'{}' section", px.kind.word())
            } else {
                format!("'{}' section '{}'", px.kind.word(), px.name)
            };
            self.diag.err(
                &line.loc,
                format!("unknown keyword '{kw}' in {sec}{}", suggest(kw, &known)),
            );
            return;
        };
        match k.handling {
            Handling::Run(f) => f(self, px, line),
            Handling::NotYet(feature, args) => {
                if args(&mut self.diag, line) {
                    self.not_yet(line, kw, feature);
                }
            }
            Handling::HttpOnly => self.diag.warn(
                &line.loc,
                format!("'{kw}' is HTTP-only; ignored in mode tcp"),
            ),
        }
    }
}

// ----- argument checks of the keywords not acted on yet -----

fn one_or_more(d: &mut Diag, line: &Line) -> bool {
    arity(d, line, 1, 1, usize::MAX)
}

// ----- handlers -----

fn mode(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let loc = &line.loc;
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    match line.words[1].as_str() {
        "tcp" => px.opts.mode = Some((Mode::Tcp, loc.clone())),
        "http" => {
            px.opts.mode = Some((Mode::Http, loc.clone()));
            px.explicit_mode = true;
            if px.kind != Kind::Defaults && !px.is_stats {
                let msg = "mode http is not supported (lb is a TCP load balancer); only a stats \
                           section may use it";
                if px.kind == Kind::Frontend {
                    // Unless it forwards to a stats backend: known once every section is read.
                    px.http_mode_error = Some((loc.clone(), msg.to_owned()));
                } else {
                    p.diag.err(loc, msg);
                }
            }
        }
        "health" => p
            .diag
            .err(loc, "mode health is not supported (removed in HAProxy 2.4)"),
        other => p.diag.err(
            loc,
            format!("'mode': unknown mode '{other}' (expected tcp or http)"),
        ),
    }
}

fn bind(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Backend || px.kind == Kind::Defaults {
        p.not_allowed(px, line, "bind");
    } else {
        px.bind_lines += 1;
        if arity(&mut p.diag, line, 1, 1, usize::MAX) {
            p.bind_line(px, line);
        }
    }
}

fn default_backend(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let loc = &line.loc;
    if px.kind == Kind::Backend {
        p.not_allowed(px, line, "default_backend");
    } else if px.kind == Kind::Listen {
        p.diag.err(
            loc,
            "'default_backend' in a 'listen' section is not supported (a listen forwards to its \
             own servers; use a frontend)",
        );
    } else if arity(&mut p.diag, line, 1, 1, 1) {
        px.opts.default_backend = Some((line.words[1].clone(), loc.clone()));
        px.own_default_backend = Some(loc.clone());
    }
}

fn server(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Frontend || px.kind == Kind::Defaults {
        p.not_allowed(px, line, "server");
    } else if line.words.len() < 3 {
        p.diag.err(
            &line.loc,
            "'server': needs a name and an address (server NAME ADDR:PORT [params])",
        );
    } else {
        p.server_line(px, line);
    }
}

fn server_template(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Frontend || px.kind == Kind::Defaults {
        p.not_allowed(px, line, "server-template");
    } else if line.words.len() < 4 {
        p.diag.err(
            &line.loc,
            "'server-template': needs a prefix, a number and an address (server-template \
             PREFIX NUM|LOW-HIGH FQDN[:PORT] [params])",
        );
    } else {
        p.server_template_line(px, line);
    }
}

fn default_server(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Frontend {
        p.not_allowed(px, line, "default-server");
    } else {
        p.default_server_line(px, line);
    }
}

fn balance(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    // `balance hash <expr>` is the one form with an argument lb reads.
    let max = if line.words.get(1).is_some_and(|w| w == "hash") {
        2
    } else {
        1
    };
    if p.cap(px, line, "balance", false, true) && arity(&mut p.diag, line, 1, 1, max) {
        if let Some(b) = balance_algorithm(&mut p.diag, line) {
            px.opts.balance = b;
            px.opts.balance_set = true;
            px.opts.balance_rdp_cookie = match b {
                Balance::RdpCookie => rdp_cookie_name(&line.words[1], "mstshash"),
                _ => None,
            };
        }
    }
}

/// `balance ALGORITHM`.
fn balance_algorithm(d: &mut Diag, line: &Line) -> Option<Balance> {
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
                    d.err(&line.loc, format!("'balance random': draws {e}"));
                    return None;
                }
            }
        }
        "hash" if line.words.get(2).is_some_and(|e| e == "src") => Balance::Hash(HashExpr::Src),
        "hash" => {
            let expr = line.words.get(2).map_or("", String::as_str);
            d.err(
                &line.loc,
                format!(
                    "'balance hash {expr}': lb evaluates only the expression 'src' (the client \
                     address)"
                ),
            );
            return None;
        }
        _ if arg.starts_with("rdp-cookie") => {
            if rdp_cookie_name(arg, "mstshash").is_none() {
                d.err(&line.loc, "rdp-cookie : missing cookie name.");
                return None;
            }
            Balance::RdpCookie
        }
        _ if arg == "uri" || arg == "url_param" || arg == "uri_path" || arg.starts_with("hdr(") => {
            d.err(
                &line.loc,
                format!(
                    "'balance {arg}' needs mode http or is not supported (lb supports \
                     roundrobin, static-rr, leastconn, first, source, random, hash src)"
                ),
            );
            return None;
        }
        _ => {
            d.err(
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

fn hash_type(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !p.cap(px, line, "hash-type", false, true) || !arity(&mut p.diag, line, 1, 1, 3) {
        return;
    }
    let w = &line.words;
    let method = match w[1].as_str() {
        "map-based" => HashMethod::MapBased,
        "consistent" => HashMethod::Consistent,
        "maglev" => {
            p.diag.warn(
                &line.loc,
                "'hash-type maglev' is an lb extension that HAProxy does not have: HAProxy \
                 rejects this file"
                    .to_owned(),
            );
            HashMethod::Maglev
        }
        other => {
            p.diag.err(
                &line.loc,
                format!(
                    "'hash-type': unknown method '{other}' (expected map-based, consistent or \
                     maglev)"
                ),
            );
            return;
        }
    };
    let mut rest = &w[2..];
    let function = match rest.first().map(String::as_str) {
        Some("sdbm") => Some(HashFunction::Sdbm),
        Some("djb2") => Some(HashFunction::Djb2),
        Some("wt6") => Some(HashFunction::Wt6),
        Some("crc32") => Some(HashFunction::Crc32),
        Some("none") => Some(HashFunction::None),
        _ => None,
    };
    if function.is_some() {
        rest = &rest[1..];
    }
    let avalanche = match rest {
        [] => false,
        [m] if m == "avalanche" => true,
        [m, more @ ..] => {
            // Name the word that does not belong: after `avalanche`, whatever follows it.
            let bad = if m == "avalanche" { &more[0] } else { m };
            p.diag.err(
                &line.loc,
                format!(
                    "'hash-type': unexpected argument '{bad}' (expected [sdbm|djb2|wt6|crc32|none] \
                     [avalanche])"
                ),
            );
            return;
        }
    };
    // HAProxy: without a function, sdbm; and consistent hashing then adds avalanche.
    px.opts.hash_type = HashType {
        method,
        function: function.unwrap_or_default(),
        avalanche: avalanche || (function.is_none() && method != HashMethod::MapBased),
    };
}

fn timeout(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let w = &line.words;
    let Some(which) = w.get(1) else {
        p.diag
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
        p.diag.err(
            &line.loc,
            format!(
                "'timeout': unknown timeout '{which}' (expected connect, client, server, \
                 tunnel, queue, client-fin, server-fin, check)"
            ),
        );
        return;
    }
    if !arity(&mut p.diag, line, 2, 1, 1) {
        return;
    }
    let t = match parse_time(&w[2], TimeUnit::Ms) {
        Ok(t) => t,
        Err(e) => {
            p.diag.err(&line.loc, format!("'{kw}': {e}"));
            return;
        }
    };
    if which == "http-request" {
        // Kept for the stats pages, which bound reading a request with it (a stats section
        // inherits it from its defaults, so no warning there).
        px.opts.timeouts.http_request = (!t.is_zero()).then_some(t);
    }
    if http {
        if !(which == "http-request" && px.kind == Kind::Defaults) {
            p.diag.warn(
                &line.loc,
                format!("'{kw}' is HTTP-only; ignored in mode tcp"),
            );
        }
        return;
    }
    if !p.cap(px, line, &kw, fe, be) {
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

fn removed_timeout(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    let kw = line.words[0].as_str();
    let new = match kw {
        "contimeout" => "timeout connect",
        "clitimeout" => "timeout client",
        _ => "timeout server",
    };
    p.diag.err(
        &line.loc,
        format!("'{kw}' was removed in HAProxy 2.1; use '{new}'"),
    );
}

fn retries(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if p.cap(px, line, "retries", false, true) && arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 0, u32::MAX) {
            Ok(v) => px.opts.retries = v,
            Err(e) => p.diag.err(&line.loc, format!("'retries': {e}")),
        }
    }
}

/// `source ADDR[:PORT] [usesrc ...] [interface NAME]` (see [`super::source`]).
fn source(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !p.cap(px, line, "source", false, true) {
        return;
    }
    match super::source::source_words(&line.words[1..]) {
        Ok(source) => px.opts.source = Some(source),
        Err(e) => p.diag.err(&line.loc, format!("'source': {e}")),
    }
}

/// `usesrc` on a line of its own: `HAProxy` reads it only after a `source` address.
fn usesrc(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    p.diag.err(
        &line.loc,
        "'usesrc' only allowed after a 'source' statement".to_owned(),
    );
}

/// A frontend keyword with one positive count (`maxconn N`, `backlog N`); `None` when the
/// section has no frontend side or the count is bad (both reported).
fn frontend_count(p: &mut Parser, px: &ProxyDraft, line: &Line) -> Option<u32> {
    let kw = line.words[0].as_str();
    if !p.cap(px, line, kw, true, false) || !arity(&mut p.diag, line, 1, 1, 1) {
        return None;
    }
    parse_u32(&line.words[1], 1, u32::MAX)
        .map_err(|e| p.diag.err(&line.loc, format!("'{kw}': {e}")))
        .ok()
}

fn maxconn(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if let Some(v) = frontend_count(p, px, line) {
        px.opts.maxconn = Some(v);
    }
}

/// `rate-limit sessions N`: a frontend lets in at most N new sessions per second; over that its
/// listeners stop accepting and clients wait in the backlog (0: no limit, as in HAProxy).
fn rate_limit(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !p.cap(px, line, "rate-limit", true, false) || !arity(&mut p.diag, line, 1, 2, 2) {
        return;
    }
    if line.words[1] != "sessions" {
        p.diag.err(
            &line.loc,
            format!(
                "'rate-limit': unknown limit '{}' (expected 'sessions')",
                line.words[1]
            ),
        );
        return;
    }
    match parse_u32(&line.words[2], 0, u32::MAX) {
        Ok(v) => px.opts.rate_limit_sessions = (v > 0).then_some(v),
        Err(e) => p.diag.err(&line.loc, format!("'rate-limit sessions': {e}")),
    }
}

/// `fullconn N`: the backend load at which its servers' dynamic limits (`minconn`) reach
/// their `maxconn`; 0 or absent, HAProxy's default (see `Config::fullconn`). A backend
/// keyword: a frontend gets HAProxy's warning.
fn fullconn(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !p.cap(px, line, "fullconn", false, true) || !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    match parse_u32(&line.words[1], 0, u32::MAX) {
        Ok(v) => px.opts.fullconn = (v > 0).then_some(v),
        Err(e) => p.diag.err(&line.loc, format!("'fullconn': {e}")),
    }
}

/// `persist rdp-cookie[(NAME)]` (HAProxy's only persist method): the cookie named, `msts` by
/// default.
fn persist(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let Some(method) = line.words.get(1) else {
        p.diag.err(&line.loc, "missing persist method.");
        return;
    };
    if !method.starts_with("rdp-cookie") {
        p.diag.err(&line.loc, "unknown persist method.");
        return;
    }
    let Some(name) = rdp_cookie_name(method, "msts") else {
        p.diag.err(
            &line.loc,
            "persist rdp-cookie(name)' requires an rdp cookie name.",
        );
        return;
    };
    if !arity(&mut p.diag, line, 1, 1, 1) || !p.cap(px, line, "persist", false, true) {
        return;
    }
    px.opts.rdp_cookie_persist = Some(name);
}

/// `rdp-cookie` (the cookie `default`) or `rdp-cookie(NAME)`, as `balance` and `persist` take
/// it; `None` for an empty or unclosed name or anything after `rdp-cookie` but a `(`.
fn rdp_cookie_name(word: &str, default: &str) -> Option<String> {
    let rest = word.strip_prefix("rdp-cookie")?;
    if rest.is_empty() {
        return Some(default.to_owned());
    }
    let r = rest.strip_prefix('(')?;
    r.find(')')
        .filter(|&end| end > 0)
        .map(|end| r[..end].to_owned())
}

/// `backlog N`: the listen backlog of the section's binds that have none of their own.
fn backlog(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if let Some(v) = frontend_count(p, px, line) {
        px.opts.backlog = Some(v);
    }
}

fn option(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    p.option_line(px, line, 1, false);
}

/// `no option X`, `no log`.
fn no(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let w = &line.words;
    if w.get(1).is_some_and(|s| s == "option") {
        p.option_line(px, line, 2, true);
    } else if w.get(1).is_some_and(|s| s == "log") {
        if arity(&mut p.diag, line, 2, 0, 0) {
            px.opts.logs.clear();
        }
    } else {
        p.diag.err(
            &line.loc,
            format!(
                "'no' must be followed by 'option' or 'log', not '{}'",
                w.get(1).map_or("", String::as_str)
            ),
        );
    }
}

/// `clitcpka-idle`, `clitcpka-intvl`, `srvtcpka-idle`, `srvtcpka-intvl`.
fn tcpka_time(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let kw = line.words[0].as_str();
    let fe = kw.starts_with("cli");
    if !p.cap(px, line, kw, fe, !fe) || !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    match parse_time(&line.words[1], TimeUnit::S) {
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
        Ok(_) => p.diag.err(
            &line.loc,
            format!("'{kw}': must be at least 1s (TCP keepalive counts seconds)"),
        ),
        Err(e) => p.diag.err(&line.loc, format!("'{kw}': {e}")),
    }
}

/// `clitcpka-cnt`, `srvtcpka-cnt`.
fn tcpka_cnt(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let kw = line.words[0].as_str();
    let fe = kw.starts_with("cli");
    if p.cap(px, line, kw, fe, !fe) && arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 1, 127) {
            Ok(v) if fe => px.opts.cli_ka.cnt = v,
            Ok(v) => px.opts.srv_ka.cnt = v,
            Err(e) => p.diag.err(&line.loc, format!("'{kw}': {e}")),
        }
    }
}

fn log(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if check_log_args(&mut p.diag, line, 1) {
        px.opts.logs.push(LogTarget {
            loc: line.loc.clone(),
            args: line.words[1..].to_vec(),
        });
    }
}

/// `description TEXT...`: the words joined by spaces, shown beside the proxy's name on the
/// stats page. Refused in `defaults`, as `HAProxy` does.
fn description(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Defaults {
        p.diag.err(
            &line.loc,
            "'description' not allowed in 'defaults' section".to_owned(),
        );
        return;
    }
    if line.words.len() < 2 {
        p.diag.err(
            &line.loc,
            "'description' expects a string argument".to_owned(),
        );
        return;
    }
    px.description = Some(line.words[1..].join(" "));
}

/// `log-format STRING`: one argument (spaces escaped or quoted), as HAProxy requires; ignored
/// in a backend, as HAProxy does.
/// `log-tag TAG`: the syslog tag of the frontend's session lines (else the global one). A
/// backend's lines in lb are the server-state ones, which go to the global targets with the
/// global tag: there it changes nothing, and says so.
fn log_tag(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    if px.kind == Kind::Backend {
        p.diag.warn(
            &line.loc,
            format!(
                "{}: 'log-tag' in a backend changes nothing in lb (server state changes are \
                 logged with the global tag); ignored",
                px.ctx()
            ),
        );
        return;
    }
    px.opts.log_tag = Some(line.words[1].clone());
}

fn log_format(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let w = &line.words;
    if w.len() < 2 {
        p.diag.err(&line.loc, "'log-format' expects an argument");
        return;
    }
    if w.len() > 2 {
        p.diag.err(
            &line.loc,
            "'log-format' expects only one argument, don't forget to escape spaces!",
        );
        return;
    }
    if !px.kind.fe() {
        p.diag.warn(
            &line.loc,
            format!(
                "{}: 'log-format' directive is ignored in backends",
                px.ctx()
            ),
        );
        return;
    }
    match crate::log_format::LogFormat::parse(&w[1], &p.loader) {
        Ok((f, warnings)) => {
            for msg in warnings {
                p.diag.warn(&line.loc, format!("log-format: {msg}"));
            }
            px.opts.log_format = Some(Arc::new(f));
        }
        Err(e) => p
            .diag
            .err(&line.loc, format!("failed to parse log-format : {e}")),
    }
}

fn tcp_check(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if p.cap(px, line, "tcp-check", false, true) && p.tcp_check(line) {
        if !px.own_tcp_rules {
            px.own_tcp_rules = true;
            px.opts.tcp_rules.clear();
        }
        if let Some(rule) = p.tcp_rule(line) {
            px.opts.tcp_rules.push(rule);
        }
    }
}

fn http_check(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let w = &line.words;
    if p.cap(px, line, "http-check", false, true) && p.http_check(line) {
        match w[1].as_str() {
            "expect" => {
                if let Some(e) = p.http_expect(line) {
                    px.opts.http_rules.expect = Some(e);
                }
            }
            "connect" => {
                if let Some(c) = p.connect_rule(line, "http-check connect") {
                    px.opts.http_rules.connect = Some(c);
                }
            }
            "send" => p.http_send(line, &mut px.opts.http_rules),
            "disable-on-404" => px.opts.http_rules.disable_on_404 = true,
            "comment" => {}
            other => p.not_yet(line, &format!("http-check {other}"), "health checks"),
        }
    }
}

fn external_check(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let w = &line.words;
    if p.cap(px, line, "external-check", false, true) && arity(&mut p.diag, line, 1, 2, 2) {
        if w[1] == "command" {
            px.opts.external_check.command = Some(w[2].clone());
        } else if w[1] == "path" {
            px.opts.external_check.path = Some(w[2].clone());
        } else {
            p.diag.err(
                &line.loc,
                format!(
                    "'external-check': unknown argument '{}' (expected command or path)",
                    w[1]
                ),
            );
        }
    }
}

/// `stats` outside a stats section: a `mode tcp` proxy, where `HAProxy` ignores it too ("'stats'
/// statement ignored ... as it requires HTTP mode").
fn stats(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    if p.stats_line(line) {
        p.diag.warn(
            &line.loc,
            format!(
                "'stats {}' is HTTP-only; ignored in mode tcp (a stats page needs 'mode http')",
                line.words[1]
            ),
        );
    }
}

fn id(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    if arity(&mut p.diag, line, 1, 1, 1) {
        match parse_u32(&line.words[1], 1, u32::MAX) {
            Ok(_) => p.not_yet(line, "id", "proxy ids are positions in lb"),
            Err(e) => p.diag.err(&line.loc, format!("'id': {e}")),
        }
    }
}

fn disabled(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        p.diag.warn(
            &line.loc,
            format!(
                "'disabled' is not supported yet (disabled proxies); {} is started anyway",
                px.ctx()
            ),
        );
    }
}

/// `transparent`, HAProxy's deprecated form of `option transparent`. HAProxy 2.6 takes it in
/// any section, without a capability check or a warning; a frontend has no use for it.
fn transparent(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if arity(&mut p.diag, line, 1, 0, 0) {
        px.opts.transparent = true;
    }
}

/// A proxy is enabled unless `disabled`: nothing to do.
fn enabled(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    arity(&mut p.diag, line, 1, 0, 0);
}

fn bind_process(p: &mut Parser, _: &mut ProxyDraft, line: &Line) {
    p.diag.err(
        &line.loc,
        "'bind-process' was removed in HAProxy 2.5 with 'nbproc' (lb runs one process)",
    );
}
