//! `option X` and `no option X` lines, one table entry per option: a handler, "not supported
//! yet" with the feature, or HTTP-only.

use super::super::lex::Line;
use super::super::{CheckKind, HttpCheck, LogFormat, MysqlVersion};
use super::proxy::ProxyDraft;
use super::suggest::suggest;
use super::{arity, Parser};

/// One `option` line: the line, where the option's name is, and whether it was `no option`.
struct OptLine<'a> {
    line: &'a Line,
    /// Index of the option's name in `line.words`.
    start: usize,
    no: bool,
    /// The option's name.
    opt: &'a str,
    /// `option NAME`, for messages.
    kw: String,
}

impl OptLine<'_> {
    /// The words after the option's name.
    fn args(&self) -> &[String] {
        &self.line.words[self.start + 1..]
    }

    /// Checks that the option has no arguments.
    fn no_args(&self, p: &mut Parser) -> bool {
        arity(&mut p.diag, self.line, self.start + 1, 0, 0)
    }

    /// Reports `no option X` for an option that cannot be turned off; true when it was `no`.
    fn refuse_no(&self, p: &mut Parser) -> bool {
        if self.no {
            p.diag
                .err(&self.line.loc, format!("'no {}' is not allowed", self.kw));
        }
        self.no
    }
}

type OptionFn = fn(&mut Parser, &mut ProxyDraft, &OptLine<'_>);

/// How an option is handled.
enum Handling {
    Run(OptionFn),
    /// Accepted but not acted on yet: the feature named in the warning. Health-check methods
    /// (feature "health checks") need the backend capability and cannot be turned off.
    NotYet(&'static str),
    /// Only meaningful in `mode http`: warned about and ignored.
    HttpOnly,
}

const fn run(name: &'static str, f: OptionFn) -> (&'static str, Handling) {
    (name, Handling::Run(f))
}

const fn not_yet(name: &'static str, feature: &'static str) -> (&'static str, Handling) {
    (name, Handling::NotYet(feature))
}

const fn http_only(name: &'static str) -> (&'static str, Handling) {
    (name, Handling::HttpOnly)
}

/// Every option lb knows. The order is the order of "did you mean" candidates.
const OPTIONS: &[(&str, Handling)] = &[
    run("redispatch", redispatch),
    run("allbackups", backend_flag),
    run("tcplog", frontend_log_flag),
    run("dontlognull", frontend_log_flag),
    run("dontlog-normal", frontend_log_flag),
    run("log-separate-errors", frontend_log_flag),
    run("logasap", frontend_log_flag),
    run("tcpka", tcpka),
    run("clitcpka", clitcpka),
    run("srvtcpka", backend_flag),
    run("tcp-smart-accept", smart_accept),
    run("tcp-smart-connect", smart_connect),
    run("splice-auto", splice),
    run("splice-request", splice),
    run("splice-response", splice),
    run("mysql-check", mysql_check),
    run("pgsql-check", pgsql_check),
    run("httpchk", httpchk),
    run("smtpchk", httpchk),
    run("redis-check", simple_check),
    run("tcp-check", simple_check),
    run("external-check", simple_check),
    run("log-health-checks", simple_check),
    not_yet("socket-stats", "stats"),
    not_yet("contstats", "stats"),
    run("nolinger", nolinger),
    run("abortonclose", backend_flag),
    run("transparent", backend_flag),
    run("persist", backend_flag),
    not_yet("prefer-last-server", "persistence"),
    run("ldap-check", simple_check),
    run("ssl-hello-chk", simple_check),
    not_yet("spop-check", "health checks"),
    not_yet("idle-close-on-response", "socket options"),
    http_only("httplog"),
    http_only("forwardfor"),
    http_only("http-server-close"),
    http_only("httpclose"),
    http_only("http-keep-alive"),
    http_only("http-pretend-keepalive"),
    http_only("http-buffer-request"),
    http_only("http-ignore-probes"),
    http_only("http-use-proxy-header"),
    http_only("http-no-delay"),
    http_only("http_proxy"),
    http_only("originalto"),
    http_only("accept-invalid-http-request"),
    http_only("accept-invalid-http-response"),
    http_only("h1-case-adjust-bogus-client"),
    http_only("h1-case-adjust-bogus-server"),
    http_only("checkcache"),
    http_only("disable-h2-upgrade"),
    http_only("http-restrict-req-hdr-names"),
];

impl Parser {
    /// `option X` (`start` = index of X) or `no option X`.
    pub(super) fn option_line(&mut self, px: &mut ProxyDraft, line: &Line, start: usize, no: bool) {
        let Some(opt) = line.words.get(start).map(String::as_str) else {
            self.diag.err(&line.loc, "'option': expects an option name");
            return;
        };
        let o = OptLine {
            line,
            start,
            no,
            opt,
            kw: format!("option {opt}"),
        };
        match OPTIONS.iter().find(|(name, _)| *name == opt) {
            Some((_, Handling::Run(f))) => f(self, px, &o),
            Some((_, Handling::NotYet(feature))) => {
                let check = *feature == "health checks";
                if check && no {
                    self.diag
                        .err(&line.loc, format!("'no {}' is not allowed", o.kw));
                } else if (!check || self.cap(px, line, &o.kw, false, true)) && o.no_args(self) {
                    let shown = if no { format!("no {}", o.kw) } else { o.kw };
                    self.not_yet(line, &shown, feature);
                }
            }
            Some((_, Handling::HttpOnly)) => self.diag.warn(
                &line.loc,
                format!("'{}' is HTTP-only; ignored in mode tcp", o.kw),
            ),
            None => {
                let known: Vec<&str> = OPTIONS.iter().map(|(name, _)| *name).collect();
                self.diag.err(
                    &line.loc,
                    format!("unknown option '{opt}'{}", suggest(opt, &known)),
                );
            }
        }
    }
}

// ----- handlers -----

/// `option redispatch [INTERVAL]` (`HAProxy` 1.6+: a number; only the default, -1 = on the
/// last retry, is supported).
fn redispatch(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if !p.cap(px, o.line, &o.kw, false, true) || !arity(&mut p.diag, o.line, o.start + 1, 0, 1) {
        return;
    }
    if let Some(n) = o.args().first() {
        if n != "-1" {
            p.diag.err(
                &o.line.loc,
                format!(
                    "'option redispatch {n}': only the default interval (-1: redispatch on the \
                     last retry) is supported"
                ),
            );
            return;
        }
    }
    px.opts.redispatch = !o.no;
}

/// `option allbackups`, `option srvtcpka`, `option abortonclose`, `option persist`, `option
/// transparent`.
fn backend_flag(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if p.cap(px, o.line, &o.kw, false, true) && o.no_args(p) {
        match o.opt {
            "allbackups" => px.opts.allbackups = !o.no,
            "abortonclose" => px.opts.abortonclose = !o.no,
            "persist" => px.opts.persist = !o.no,
            "transparent" => px.opts.transparent = !o.no,
            _ => px.opts.srv_ka.enabled = !o.no,
        }
    }
}

/// `option tcplog`, `option dontlognull`, `option dontlog-normal`, `option
/// log-separate-errors`, `option logasap`.
fn frontend_log_flag(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if p.cap(px, o.line, &o.kw, true, false) && o.no_args(p) {
        match o.opt {
            "tcplog" => px.opts.log_format = (!o.no).then(crate::log_format::tcplog),
            "dontlog-normal" => px.opts.dontlog_normal = !o.no,
            "log-separate-errors" => px.opts.log_separate_errors = !o.no,
            "logasap" => px.opts.logasap = !o.no,
            _ => px.opts.dontlognull = !o.no,
        }
    }
}

fn clitcpka(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if p.cap(px, o.line, &o.kw, true, false) && o.no_args(p) {
        px.opts.cli_ka.enabled = !o.no;
    }
}

/// `option tcp-smart-accept`: the frontend's listeners delay the ACK of a client's first bytes
/// so that it leaves with the answer (`TCP_QUICKACK` off on the listening sockets, which the
/// accepted ones inherit), one segment fewer per connection.
fn smart_accept(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if p.cap(px, o.line, &o.kw, true, false) && o.no_args(p) {
        px.opts.smart_accept = !o.no;
    }
}

/// `option tcp-smart-connect`: when bytes wait for the server at the connect, the handshake's
/// last ACK is delayed and leaves with them (`TCP_QUICKACK` off before the connect).
fn smart_connect(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if p.cap(px, o.line, &o.kw, false, true) && o.no_args(p) {
        px.opts.smart_connect = !o.no;
    }
}

/// `option nolinger` (`HAProxy`'s `PR_O_TCP_NOLING`, for both sides the section has): the
/// frontend's listening sockets get `SO_LINGER` 0, and the backend resets a server instead of
/// passing the client's FIN on to it (see `dataplane::pass_fin`).
fn nolinger(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if o.no_args(p) {
        px.opts.nolinger = !o.no;
    }
}

/// `option tcpka`: both sides the section has.
fn tcpka(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if o.no_args(p) {
        if px.kind.fe() {
            px.opts.cli_ka.enabled = !o.no;
        }
        if px.kind.be() {
            px.opts.srv_ka.enabled = !o.no;
        }
    }
}

/// lb always splices (or forwards in the kernel), which is what these ask for; `no option
/// splice-*` cannot turn that off, so it gets a warning.
fn splice(p: &mut Parser, _: &mut ProxyDraft, o: &OptLine<'_>) {
    if o.no_args(p) && o.no {
        p.diag.warn(
            &o.line.loc,
            format!("'no {}' is ignored: lb always splices", o.kw),
        );
    }
}

/// `option mysql-check [user NAME [post-41|pre-41|post-80]]`.
fn mysql_check(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    let loc = &o.line.loc;
    if o.no {
        p.diag.err(loc, "'no option mysql-check' is not allowed");
        return;
    }
    if !p.cap(px, o.line, &o.kw, false, true) {
        return;
    }
    let args = o.args();
    match args {
        [] => {}
        [u, ..] if u == "user" => {
            if args.len() < 2 {
                p.diag
                    .err(loc, "'option mysql-check user' needs a user name");
                return;
            }
            if let Some(v) = args.get(2) {
                if !["post-41", "pre-41", "post-80"].contains(&v.as_str()) {
                    p.diag.err(
                        loc,
                        format!(
                            "'option mysql-check': unknown version '{v}' (expected \
                             post-41|pre-41|post-80)"
                        ),
                    );
                    return;
                }
            }
            if !arity(&mut p.diag, o.line, o.start + 1, 0, 3) {
                return;
            }
        }
        [other, ..] => {
            p.diag.err(
                loc,
                format!(
                    "'option mysql-check': unexpected argument '{other}' (expected 'user NAME')"
                ),
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
        Some(loc.clone()),
    );
}

/// `option pgsql-check user NAME`.
fn pgsql_check(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    let loc = &o.line.loc;
    if o.no {
        p.diag.err(loc, "'no option pgsql-check' is not allowed");
        return;
    }
    if !p.cap(px, o.line, &o.kw, false, true) {
        return;
    }
    let args = o.args();
    if args.len() != 2 || args[0] != "user" {
        p.diag.err(loc, "'option pgsql-check': expects 'user NAME'");
        return;
    }
    px.opts.check = (
        CheckKind::Pgsql {
            user: args[1].clone(),
        },
        Some(loc.clone()),
    );
}

/// `option redis-check|ldap-check|tcp-check|external-check|ssl-hello-chk|log-health-checks`
/// (no arguments).
fn simple_check(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if o.opt != "log-health-checks" && o.refuse_no(p) {
        return;
    }
    if !p.cap(px, o.line, &o.kw, false, true) || !o.no_args(p) {
        return;
    }
    let kind = match o.opt {
        "redis-check" => CheckKind::Redis,
        "ldap-check" => CheckKind::Ldap,
        "tcp-check" => CheckKind::TcpCheck(Vec::new()),
        "external-check" => CheckKind::External,
        "ssl-hello-chk" => CheckKind::SslHello,
        _ => {
            px.opts.log_health_checks = !o.no;
            return;
        }
    };
    px.opts.check = (kind, Some(o.line.loc.clone()));
}

/// `option httpchk [URI]`, `[METH URI]`, `[METH URI VER]` (`HAProxy`'s defaults: OPTIONS /
/// HTTP/1.0); `option smtpchk` (not acted on yet).
#[expect(
    clippy::many_single_char_names,
    reason = "m/u/v: method, URI, version, as in the syntax"
)]
fn httpchk(p: &mut Parser, px: &mut ProxyDraft, o: &OptLine<'_>) {
    if o.refuse_no(p)
        || !p.cap(px, o.line, &o.kw, false, true)
        || !arity(&mut p.diag, o.line, o.start + 1, 0, 3)
    {
        return;
    }
    if o.opt == "smtpchk" {
        p.not_yet(o.line, &o.kw, "health checks");
        return;
    }
    let (method, uri, version) = match o.args() {
        [] => ("OPTIONS", "/", "HTTP/1.0"),
        [u] => ("OPTIONS", u.as_str(), "HTTP/1.0"),
        [m, u] => (m.as_str(), u.as_str(), "HTTP/1.0"),
        [m, u, v, ..] => (m.as_str(), u.as_str(), v.as_str()),
    };
    px.opts.check = (
        CheckKind::Http(Box::new(HttpCheck {
            method: method.to_owned(),
            uri: LogFormat::text(uri),
            version: version.to_owned(),
            ..HttpCheck::default()
        })),
        Some(o.line.loc.clone()),
    );
}
