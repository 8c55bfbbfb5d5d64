//! The `server` / `default-server` parameters, one table entry each: where the parameter is
//! accepted, whether it takes a value, and its handler (or the feature lb does not act on yet).
//! [`super::server`] runs the loop over a line's words.
#![expect(
    clippy::unnecessary_wraps,
    reason = "every handler has the table's signature; some cannot fail"
)]

use std::net::IpAddr;

use super::super::scalar::{
    env_expand, is_hostname, parse_net, parse_port, parse_time, parse_u32, parse_weight, resolve,
    TimeUnit,
};
use super::super::{InitAddr, Loc, OnError, SniExpr, Source};
use super::server::ServerParams;
use crate::acl::{Places, SampleExpr};

/// The kind of line a parameter is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Server,
    DefaultServer,
}

impl Place {
    pub(super) fn word(self) -> &'static str {
        match self {
            Place::Server => "server",
            Place::DefaultServer => "default-server",
        }
    }
}

/// What a handler may change while reading one parameter.
pub(super) struct KwCtx<'a> {
    pub(super) params: &'a mut ServerParams,
    /// The explicit `id`.
    pub(super) id: &'a mut Option<u32>,
    /// Parameters lb does not act on yet, with the feature, for the line's one warning.
    pub(super) not_yet: &'a mut Vec<(&'static str, &'static str)>,
    /// `resolvers NAME` references, checked once every section is read.
    pub(super) resolver_refs: &'a mut Vec<(String, Loc)>,
    pub(super) loc: &'a Loc,
    /// `ca-base` of the global section, for relative `ca-file` paths.
    pub(super) ca_base: Option<&'a std::path::Path>,
    /// Files of sample expressions (`sni`'s maps).
    pub(super) loader: &'a crate::acl::ConfigLoader,
}

/// Reads one parameter: the context, the parameter's name and its value (`""` for a flag).
/// `Err` is the message, after the server's context.
type Handler = fn(&mut KwCtx<'_>, &'static str, &str) -> Result<(), String>;

/// How a parameter is handled.
#[derive(Clone, Copy)]
pub(super) enum ServerHandling {
    Set(Handler),
    /// Accepted, not acted on yet: the feature named in the warning.
    NotYet(&'static str),
}

/// One `server`/`default-server` parameter.
pub(super) struct ServerKeyword {
    pub(super) name: &'static str,
    /// Accepted on `server` lines.
    on_server: bool,
    /// Accepted on `default-server` lines.
    on_default: bool,
    /// Takes one value word (else it is a flag).
    pub(super) takes_value: bool,
    pub(super) handling: ServerHandling,
}

impl ServerKeyword {
    pub(super) fn accepted_on(&self, place: Place) -> bool {
        match place {
            Place::Server => self.on_server,
            Place::DefaultServer => self.on_default,
        }
    }
}

/// A flag accepted on both kinds of line.
const fn flag(name: &'static str, f: Handler) -> ServerKeyword {
    ServerKeyword {
        name,
        on_server: true,
        on_default: true,
        takes_value: false,
        handling: ServerHandling::Set(f),
    }
}

/// A flag accepted on `server` lines only (HAProxy's `no-tlsv1x`).
const fn server_only(name: &'static str, f: Handler) -> ServerKeyword {
    ServerKeyword {
        name,
        on_server: true,
        on_default: false,
        takes_value: false,
        handling: ServerHandling::Set(f),
    }
}

/// A parameter with one value accepted on both kinds of line.
const fn value(name: &'static str, f: Handler) -> ServerKeyword {
    ServerKeyword {
        name,
        on_server: true,
        on_default: true,
        takes_value: true,
        handling: ServerHandling::Set(f),
    }
}

/// A parameter lb accepts but does not act on yet.
const fn not_yet(name: &'static str, takes_value: bool, feature: &'static str) -> ServerKeyword {
    ServerKeyword {
        name,
        on_server: true,
        on_default: true,
        takes_value,
        handling: ServerHandling::NotYet(feature),
    }
}

const VALUE: bool = true;
const CONNECTION: &str = "connection options";

/// Every parameter lb knows, in no particular order.
const SERVER_KEYWORDS: &[ServerKeyword] = &[
    // Load balancing and limits.
    value("weight", weight),
    value("maxconn", limit),
    value("maxqueue", limit),
    value("minconn", limit),
    flag("backup", backup),
    flag("no-backup", backup),
    flag("disabled", disabled),
    flag("enabled", disabled),
    ServerKeyword {
        name: "id",
        on_server: true,
        on_default: false,
        takes_value: true,
        handling: ServerHandling::Set(id),
    },
    // Health checks.
    flag("check", check),
    flag("no-check", check),
    value("port", port),
    value("addr", address),
    value("inter", interval),
    value("fastinter", interval),
    value("downinter", interval),
    value("slowstart", interval),
    value("rise", count),
    value("fall", count),
    value("error-limit", count),
    value("on-marked-down", on_marked),
    value("on-marked-up", on_marked),
    value("observe", observe),
    value("on-error", on_error),
    value("track", track),
    // Agent checks.
    flag("agent-check", agent_check),
    flag("no-agent-check", agent_check),
    value("agent-port", agent_port),
    value("agent-addr", address),
    value("agent-inter", interval),
    value("agent-send", agent_send),
    // Addresses and DNS.
    value("resolvers", resolvers),
    value("init-addr", init_addr),
    value("resolve-prefer", resolve_prefer),
    value("resolve-opts", resolve_opts),
    value("resolve-net", resolve_net),
    // PROXY protocol.
    flag("send-proxy", send_proxy),
    flag("send-proxy-v2", send_proxy),
    flag("send-proxy-v2-ssl", send_proxy),
    flag("send-proxy-v2-ssl-cn", send_proxy),
    flag("no-send-proxy", send_proxy),
    flag("no-send-proxy-v2", send_proxy),
    value("proxy-v2-options", proxy_v2_options),
    flag("check-send-proxy", check_send_proxy),
    flag("no-check-send-proxy", check_send_proxy),
    // Connection options.
    not_yet("pool-max-conn", VALUE, CONNECTION),
    not_yet("pool-purge-delay", VALUE, CONNECTION),
    not_yet("proto", VALUE, CONNECTION),
    flag("tfo", tfo),
    value("tcp-ut", tcp_ut),
    not_yet("namespace", VALUE, CONNECTION),
    value("source", source),
    value("interface", interface),
    value("usesrc", usesrc),
    // HTTP.
    not_yet("cookie", VALUE, "HTTP-only"),
    not_yet("redir", VALUE, "HTTP-only"),
    // TLS to the server: `ssl` for its traffic, `check-ssl` for its checks (which follow
    // `ssl` by default); both share the trust settings, as HAProxy's one `ssl_ctx`.
    flag("ssl", ssl),
    flag("no-ssl", ssl),
    flag("check-ssl", check_ssl),
    flag("no-check-ssl", check_ssl),
    value("verify", verify),
    value("verifyhost", verifyhost),
    flag("no-verifyhost", verifyhost),
    value("ca-file", ca_file),
    value("check-sni", check_sni),
    value("check-alpn", alpn),
    value("sni", sni),
    value("alpn", alpn),
    // Session resumption: rustls's own cache per server; lb offers no way to turn it off.
    flag("ssl-reuse", nothing),
    flag("no-ssl-reuse", nothing),
    flag("tls-tickets", nothing),
    flag("no-tls-tickets", nothing),
    value("ciphers", cipher_list),
    value("ciphersuites", cipher_list),
    value("ssl-min-ver", version_bound),
    value("ssl-max-ver", version_bound),
    flag("force-sslv3", tls_method),
    flag("force-tlsv10", tls_method),
    flag("force-tlsv11", tls_method),
    flag("force-tlsv12", tls_method),
    flag("force-tlsv13", tls_method),
    server_only("no-sslv3", tls_method),
    server_only("no-tlsv10", tls_method),
    server_only("no-tlsv11", tls_method),
    server_only("no-tlsv12", tls_method),
    server_only("no-tlsv13", tls_method),
    value("crt", needs_tls),
];

/// The table entry of a parameter.
pub(super) fn server_keyword(name: &str) -> Option<&'static ServerKeyword> {
    SERVER_KEYWORDS.iter().find(|k| k.name == name)
}

/// `Err` unless `arg` is one of `allowed`.
fn one_of(p: &str, arg: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&arg) {
        Ok(())
    } else {
        Err(format!(
            "'{p}': invalid value '{arg}' (expected {})",
            allowed.join("|")
        ))
    }
}

// ----- handlers -----

fn weight(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    c.params.weight = parse_weight(arg)?;
    Ok(())
}

/// `maxconn`, `maxqueue`, `minconn`.
fn limit(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    let v = parse_u32(arg, 0, u32::MAX).map_err(|e| format!("'{p}': {e}"))?;
    match p {
        "maxconn" => c.params.maxconn = v,
        "maxqueue" => c.params.maxqueue = v,
        _ => c.params.minconn = v,
    }
    Ok(())
}

/// `backup`, `no-backup`.
fn backup(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.backup = p == "backup";
    Ok(())
}

/// `disabled`, `enabled`.
fn disabled(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.disabled = p == "disabled";
    Ok(())
}

fn id(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    *c.id = Some(parse_u32(arg, 1, u32::MAX).map_err(|e| format!("'id': {e}"))?);
    Ok(())
}

/// `check`, `no-check`.
fn check(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.health.check = p == "check";
    Ok(())
}

fn port(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    c.params.check_port = Some(parse_port(arg).map_err(|e| format!("'port': {e}"))?);
    Ok(())
}

/// `addr`, `agent-addr`: an IP address, or a host name resolved once at load with the system
/// resolver, as `HAProxy` does (environment variables expanded first, as in any address).
fn address(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let text = env_expand(arg);
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if is_hostname(&text) => resolve(&text, 0, None)
            .map_err(|e| format!("'{p}': {e}"))?
            .ip(),
        Err(_) => return Err(format!("'{p}': invalid address '{text}'")),
    };
    if p == "addr" {
        c.params.health.addr = Some(ip);
    } else {
        c.params.health.agent.addr = Some(ip);
    }
    Ok(())
}

/// `inter`, `fastinter`, `downinter`, `slowstart`, `agent-inter`.
fn interval(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let t = parse_time(arg, TimeUnit::Ms).map_err(|e| format!("'{p}': {e}"))?;
    if t.is_zero() && p != "slowstart" {
        return Err(format!("'{p}': must be greater than 0"));
    }
    let h = &mut c.params.health;
    match p {
        "inter" => h.inter = t,
        "fastinter" => h.fastinter = Some(t),
        "downinter" => h.downinter = Some(t),
        "slowstart" => h.slowstart = (!t.is_zero()).then_some(t),
        _ => h.agent.inter = Some(t),
    }
    Ok(())
}

/// `rise`, `fall`, `error-limit`.
fn count(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let v = parse_u32(arg, 1, u32::MAX).map_err(|e| format!("'{p}': {e}"))?;
    match p {
        "rise" => c.params.health.rise = v,
        "fall" => c.params.health.fall = v,
        _ => c.params.health.error_limit = v,
    }
    Ok(())
}

/// `on-marked-down shutdown-sessions`, `on-marked-up shutdown-backup-sessions`.
fn on_marked(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    if p == "on-marked-down" {
        one_of(p, arg, &["shutdown-sessions"])?;
        c.params.health.shutdown_on_down = true;
    } else {
        one_of(p, arg, &["shutdown-backup-sessions"])?;
        c.params.health.shutdown_backup_on_up = true;
    }
    Ok(())
}

fn observe(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    one_of(p, arg, &["none", "layer4", "layer7"])?;
    if arg == "layer7" {
        c.not_yet.push((p, "layer7 observing needs mode http"));
    } else {
        c.params.health.observe_layer4 = arg == "layer4";
    }
    Ok(())
}

fn on_error(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    one_of(
        p,
        arg,
        &["fastinter", "fail-check", "sudden-death", "mark-down"],
    )?;
    c.params.health.on_error = match arg {
        "fail-check" => OnError::FailCheck,
        "sudden-death" => OnError::SuddenDeath,
        "mark-down" => OnError::MarkDown,
        _ => OnError::Fastinter,
    };
    Ok(())
}

/// `agent-check`, `no-agent-check`.
fn agent_check(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.health.agent.enabled = p == "agent-check";
    Ok(())
}

fn agent_port(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    c.params.health.agent.port = Some(parse_port(arg).map_err(|e| format!("'{p}': {e}"))?);
    Ok(())
}

/// The lexer already applied the escapes (`\r`, `\n`, `\xNN`), as for `tcp-check send`.
fn agent_send(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    c.params.health.agent.send = Some(arg.as_bytes().to_vec());
    Ok(())
}

fn resolvers(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    c.resolver_refs.push((arg.to_owned(), c.loc.clone()));
    c.params.resolvers = Some(arg.to_owned());
    Ok(())
}

/// `init-addr METHOD[,METHOD...]`.
fn init_addr(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    let mut methods = Vec::new();
    for m in arg.split(',') {
        match m {
            "last" => methods.push(InitAddr::Last),
            "libc" => methods.push(InitAddr::Libc),
            "none" => methods.push(InitAddr::None),
            _ => match m.parse::<IpAddr>() {
                Ok(ip) => methods.push(InitAddr::Ip(ip)),
                Err(_) => {
                    return Err(format!(
                        "'init-addr': invalid method '{m}' (expected last|libc|none|<ip>, \
                         comma-separated)"
                    ));
                }
            },
        }
    }
    c.params.init_addr = Some(methods);
    Ok(())
}

/// `track [BACKEND/]SERVER`: checked once every section is read (`Parser::resolve_tracks`).
fn track(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let (backend, server) = match arg.split_once('/') {
        Some((b, s)) => (Some(b.to_owned()), s),
        None => (None, arg),
    };
    if server.is_empty() || backend.as_deref() == Some("") {
        return Err(format!(
            "'{p}' expects [<proxy>/]<server> as argument, not '{arg}'"
        ));
    }
    c.params.track = Some(crate::config::Track {
        backend,
        server: server.to_owned(),
        to: (0, 0),
        name: String::new(),
    });
    Ok(())
}

/// `tcp-ut DELAY` (milliseconds when bare; 0: the kernel's default, as in `HAProxy`).
fn tcp_ut(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let t = parse_time(arg, TimeUnit::Ms).map_err(|e| format!("'{p}': {e}"))?;
    c.params.tcp_ut = (!t.is_zero()).then_some(t);
    Ok(())
}

fn tfo(c: &mut KwCtx<'_>, _: &str, _: &str) -> Result<(), String> {
    c.params.tfo = true;
    Ok(())
}

/// `source ADDR[:PORT|:LOW-HIGH]`: replaces a `default-server`'s source (its `interface`
/// too) but for its `usesrc`, which stays as in `HAProxy` (`srv_parse_source` sets the
/// address, the `CO_SRC_TPROXY_*` options copied from the `default-server` stay). Each server
/// of a `default-server` range gets a range of its own, as in `HAProxy`.
fn source(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    let (addr, ports) = super::source::source_addr_range(arg)?;
    let usesrc = c.params.source.as_ref().and_then(|s| s.usesrc);
    c.params.source = Some(Source {
        addr,
        interface: None,
        ports,
        usesrc,
    });
    Ok(())
}

/// `usesrc client|clientip|ADDR[:PORT]`, after `source` (`HAProxy` reads it as part of the
/// source; see [`super::source::usesrc`]).
fn usesrc(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let Some(src) = c.params.source.as_mut() else {
        return Err(format!("'{p}' only allowed after a 'source' statement"));
    };
    src.usesrc = Some(super::source::usesrc(Some(arg))?);
    Ok(())
}

/// `interface NAME`, after `source` (`HAProxy` reads it as part of the source).
fn interface(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let Some(src) = c.params.source.as_mut() else {
        return Err(format!("'{p}' needs a 'source' before it"));
    };
    src.interface = Some(super::source::interface(arg)?);
    Ok(())
}

fn resolve_prefer(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    one_of(p, arg, &["ipv4", "ipv6"])?;
    c.params.resolve_prefer_ipv4 = arg == "ipv4";
    Ok(())
}

/// `resolve-opts OPT[,OPT...]`, HAProxy's `srv_parse_resolve_opts`. `prevent-dup-ip` is what
/// lb always does (a template's servers each get an address of their own); `allow-dup-ip` is
/// accepted and not acted on.
fn resolve_opts(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    for opt in arg.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ignore-weight" => c.params.resolve_ignore_weight = true,
            "prevent-dup-ip" => {}
            "allow-dup-ip" => c
                .not_yet
                .push(("resolve-opts allow-dup-ip", "servers sharing one address")),
            _ => {
                return Err(format!(
                    "'{p}' : unknown resolve-opts option '{opt}', supported methods are \
                     'allow-dup-ip', 'ignore-weight', and 'prevent-dup-ip'."
                ))
            }
        }
    }
    Ok(())
}

/// `HAProxy`'s limit on `resolve-net` networks (`SRV_MAX_PREF_NET`).
const MAX_RESOLVE_NETS: usize = 5;

/// `resolve-net NET[,NET...]` (a trailing comma is allowed, as in `HAProxy`). Kept in the model;
/// the DNS resolution does not use it yet.
fn resolve_net(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    let list = arg.strip_suffix(',').unwrap_or(arg);
    let mut nets = Vec::new();
    for net in list.split(',') {
        if nets.len() == MAX_RESOLVE_NETS {
            return Err(format!(
                "'{p}': more than {MAX_RESOLVE_NETS} networks (HAProxy's limit)"
            ));
        }
        nets.push(parse_net(net).map_err(|e| format!("'{p}': {e}"))?);
    }
    c.params.resolve_net = nets;
    Ok(())
}

/// `send-proxy`, `send-proxy-v2`, `send-proxy-v2-ssl[-cn]` and their `no-` forms. As in
/// HAProxy, v1 and v2 are separate flags and v2 wins when both are set.
fn send_proxy(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    let pp = &mut c.params.proxy;
    match p {
        "send-proxy" => pp.v1 = true,
        "no-send-proxy" => pp.v1 = false,
        "no-send-proxy-v2" => pp.v2 = false,
        _ => {
            pp.v2 = true;
            if p != "send-proxy-v2" {
                // The SSL TLV; `-cn` adds the client certificate's CN, which only a TLS client
                // connection has.
                pp.send.ssl = true;
            }
        }
    }
    Ok(())
}

/// `proxy-v2-options OPT[,OPT...]`.
fn proxy_v2_options(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    for o in arg.split(',') {
        match o {
            "ssl" | "cert-cn" | "cert-key" | "cert-sig" | "ssl-cipher" => {
                c.params.proxy.send.ssl = true;
            }
            "authority" => c.params.proxy.send.authority = true,
            "crc32c" => c.params.proxy.send.crc32c = true,
            "unique-id" => c.not_yet.push((p, "unique-id needs unique-id-format")),
            _ => {
                return Err(format!(
                    "'{p}': unknown option '{o}' (expected ssl, cert-cn, cert-key, cert-sig, \
                     ssl-cipher, authority, crc32c, unique-id)"
                ))
            }
        }
    }
    Ok(())
}

/// `check-send-proxy`, `no-check-send-proxy`.
fn check_send_proxy(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.proxy.send.check = p == "check-send-proxy";
    Ok(())
}

fn verify(c: &mut KwCtx<'_>, p: &'static str, arg: &str) -> Result<(), String> {
    one_of(p, arg, &["none", "required"])?;
    c.params.tls.verify = Some(arg == "required");
    Ok(())
}

/// `ssl`, `no-ssl`.
fn ssl(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.tls.ssl = p == "ssl";
    Ok(())
}

/// `check-ssl`, `no-check-ssl`.
fn check_ssl(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.check_ssl = Some(p == "check-ssl");
    Ok(())
}

/// `verifyhost NAME`, `no-verifyhost`.
fn verifyhost(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    c.params.tls.verifyhost = (p == "verifyhost").then(|| arg.to_owned());
    Ok(())
}

/// `ca-file PATH`: joined to `ca-base` unless absolute (or `@system-ca`), as `HAProxy`. The
/// file is read once the server line is complete and only if the traffic or a check uses
/// TLS.
fn ca_file(c: &mut KwCtx<'_>, _: &str, arg: &str) -> Result<(), String> {
    let path = match c.ca_base {
        Some(base) if !arg.starts_with('/') && !arg.starts_with('@') => base.join(arg),
        _ => arg.into(),
    };
    c.params.tls.ca_file = Some(path);
    Ok(())
}

/// `check-sni NAME`: a host name (an IP address is never sent as SNI).
fn check_sni(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    if !is_hostname(arg) || arg.parse::<IpAddr>().is_ok() {
        return Err(format!("'{p}': invalid server name '{arg}'"));
    }
    c.params.health.tls.sni = Some(arg.to_owned());
    Ok(())
}

/// `sni EXPR`: a sample expression evaluated at each connect, as the request's content rules
/// see the session (`str(NAME)`, `req.ssl_sni`, a variable...).
fn sni(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let (expr, _, _) = SampleExpr::parse_words(&[arg.to_owned()], false, c.loader)
        .map_err(|e| format!("'{p}': error detected while parsing sni expression: {e}"))?;
    if !expr.places().contains(Places::REQUEST) {
        return Err(format!(
            "'{p}': fetch method '{}' can't be used when connecting to a server",
            expr.keyword()
        ));
    }
    c.params.tls.sni = Some(SniExpr {
        text: arg.to_owned(),
        expr,
    });
    Ok(())
}

/// `alpn LIST`, `check-alpn LIST`: comma-separated protocol names of 1 to 255 bytes.
fn alpn(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let list: Vec<String> = arg.split(',').map(str::to_owned).collect();
    if let Some(bad) = list.iter().find(|a| a.is_empty() || a.len() > 255) {
        return Err(format!(
            "'{p}': invalid protocol name '{bad}' in '{arg}' (1 to 255 bytes each)"
        ));
    }
    if p == "check-alpn" {
        c.params.health.tls.alpn = list;
    } else {
        c.params.tls.alpn = list;
    }
    Ok(())
}

/// `ciphers LIST` (TLS 1.2, OpenSSL syntax), `ciphersuites LIST` (TLS 1.3): checked here,
/// mapped to rustls by [`crate::tls::ciphers`].
fn cipher_list(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let checked = if p == "ciphers" {
        crate::tls::ciphers::tls12_suites(arg).map(drop)
    } else {
        crate::tls::ciphers::tls13_suites(arg).map(drop)
    };
    checked.map_err(|e| format!("'{p}': {e}"))?;
    let s = &mut c.params.tls.settings;
    let list = Some(arg.to_owned());
    if p == "ciphers" {
        s.ciphers = list;
    } else {
        s.ciphersuites = list;
    }
    Ok(())
}

/// `ssl-min-ver V`, `ssl-max-ver V`.
fn version_bound(c: &mut KwCtx<'_>, p: &str, arg: &str) -> Result<(), String> {
    let v = crate::tls::ciphers::Version::parse(arg).ok_or_else(|| {
        format!("'{p}': expects one of SSLv3, TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3, not '{arg}'")
    })?;
    let s = &mut c.params.tls.settings;
    if p == "ssl-min-ver" {
        s.min = Some(v);
    } else {
        s.max = Some(v);
    }
    Ok(())
}

/// `force-sslv3`...`force-tlsv13`, `no-sslv3`...`no-tlsv13`.
fn tls_method(c: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    c.params.tls.settings.apply_word(p);
    Ok(())
}

/// A parameter that asks for nothing lb would do otherwise.
fn nothing(_: &mut KwCtx<'_>, _: &str, _: &str) -> Result<(), String> {
    Ok(())
}

fn needs_tls(_: &mut KwCtx<'_>, p: &str, _: &str) -> Result<(), String> {
    Err(format!(
        "'{p}': lb's TLS to servers presents no client certificate; remove it (or let the \
         server accept clients without one)"
    ))
}
