//! `server` and `default-server` lines: the settings a `default-server` carries, the server's
//! address (with `init-addr`), and the loop over parameters. Each parameter is an entry of the
//! table in [`super::server_kw`].

use std::net::SocketAddr;

use super::super::lex::Line;
use super::super::scalar::{
    check_name, parse_port, parse_uint, resolve, split_host_port, unspecified, Host,
};
use super::super::{
    HealthParams, InitAddr, IpNet, Loc, ProxyVersion, SendProxy, Server, ServerTls, Source,
};
use super::proxy::ProxyDraft;
use super::server_kw::{server_keyword, KwCtx, Place, ServerHandling};
use super::Parser;

/// `HAProxy`'s `init-addr` when none is written: `last,libc`, and `none` after them when the
/// server has `resolvers` (since `HAProxy` 2.3), so that a name DNS answers later does not stop
/// the start.
fn default_init_addr(has_resolvers: bool) -> Vec<InitAddr> {
    let mut methods = vec![InitAddr::Last, InitAddr::Libc];
    if has_resolvers {
        methods.push(InitAddr::None);
    }
    methods
}

/// The numbers of a `server-template`: `N` (1 to N) or `LOW-HIGH`. At most
/// [`TEMPLATE_MAX`] servers, so that a typo cannot make a backend of millions.
fn template_range(text: &str) -> Result<std::ops::RangeInclusive<u32>, String> {
    let num = |t: &str| {
        t.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("invalid server number '{t}' in '{text}' (expected N or LOW-HIGH, from 1)")
        })
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (1, num(text)?),
    };
    if lo > hi {
        return Err(format!("invalid range '{text}': {lo} is above {hi}"));
    }
    if hi - lo >= TEMPLATE_MAX {
        return Err(format!("'{text}' makes more than {TEMPLATE_MAX} servers"));
    }
    Ok(lo..=hi)
}

/// The most servers one `server-template` line makes.
const TEMPLATE_MAX: u32 = 10_000;

/// A server's address as found at load.
struct FoundAddr {
    addr: SocketAddr,
    /// The port is the client's destination port plus this (no port, `+N`, `-N`).
    port_offset: Option<i32>,
    /// The host name, when the address was written as one.
    fqdn: Option<String>,
    /// No address: starts in MAINT (resolution) (`init-addr none`).
    unresolved: bool,
    /// Index of the `init-addr` method that gave it (`None` for an IP address).
    method: Option<usize>,
}

/// `server_params` reported its errors already; the line is dropped.
#[derive(Debug)]
pub(super) struct ParamsFailed;

/// Server settings a `default-server` line carries to the following `server` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ServerParams {
    pub(super) weight: u32,
    pub(super) backup: bool,
    pub(super) maxconn: u32,
    pub(super) maxqueue: u32,
    pub(super) minconn: u32,
    pub(super) disabled: bool,
    pub(super) check_port: Option<u16>,
    pub(super) init_addr: Option<Vec<InitAddr>>,
    pub(super) health: HealthParams,
    pub(super) resolvers: Option<String>,
    pub(super) resolve_prefer_ipv4: bool,
    pub(super) resolve_ignore_weight: bool,
    pub(super) resolve_net: Vec<IpNet>,
    pub(super) proxy: ProxyParams,
    /// `source` (see [`super::source`]).
    pub(super) source: Option<Source>,
    pub(super) tfo: bool,
    /// `tcp-ut` (see [`crate::config::Server::tcp_ut`]).
    pub(super) tcp_ut: Option<std::time::Duration>,
    /// `track` (see [`crate::config::Server::track`]), resolved once every section is read.
    pub(super) track: Option<crate::config::Track>,
    /// `ssl`, `verify`, `ca-file`, `sni`... (see [`crate::config::ServerTls`]).
    pub(super) tls: ServerTls,
    /// `check-ssl` (`Some(true)`), `no-check-ssl` (`Some(false)`); `None`: as the traffic
    /// (see [`crate::config::CheckTls::enabled`]).
    pub(super) check_ssl: Option<bool>,
}

/// The PROXY protocol settings of a `server`/`default-server` line: HAProxy keeps v1 and v2 as
/// separate flags (`no-send-proxy` clears only v1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ProxyParams {
    pub(super) v1: bool,
    pub(super) v2: bool,
    /// Everything but the version.
    pub(super) send: SendProxy,
}

impl ProxyParams {
    fn model(&self) -> SendProxy {
        let version = if self.v2 {
            Some(ProxyVersion::V2)
        } else if self.v1 {
            Some(ProxyVersion::V1)
        } else {
            None
        };
        SendProxy {
            version,
            ..self.send.clone()
        }
    }
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            weight: 1,
            backup: false,
            maxconn: 0,
            maxqueue: 0,
            minconn: 0,
            disabled: false,
            check_port: None,
            init_addr: None,
            health: HealthParams::default(),
            resolvers: None,
            resolve_prefer_ipv4: false,
            resolve_ignore_weight: false,
            resolve_net: Vec::new(),
            proxy: ProxyParams::default(),
            source: None,
            tfo: false,
            tcp_ut: None,
            track: None,
            tls: ServerTls::default(),
            check_ssl: None,
        }
    }
}

impl Parser {
    /// A `server NAME ADDR [params]` line (at least a name and an address, checked by the
    /// caller).
    pub(super) fn server_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let name = &w[1];
        let ctx = format!("server '{}/{}'", px.name, name);
        if let Err(e) = check_name(name) {
            self.diag.err(&line.loc, format!("{ctx}: {e}"));
            return;
        }
        let mut params = px.opts.default_server.clone();
        let Ok(explicit_id) = self.server_params(&ctx, line, 3, &mut params, Place::Server) else {
            return;
        };
        let explicit_id = explicit_id.filter(|id| *id != 0);
        self.add_server(px, line, name, &w[2], params, explicit_id, false);
    }

    /// `server-template PREFIX NUM|LOW-HIGH FQDN[:PORT] [params]`: servers `PREFIX<n>` for n in
    /// 1..=NUM (or LOW..=HIGH), each following FQDN with the same parameters; DNS gives each
    /// its own address (A/AAAA) or its own target and port (an SRV name, starting with `_`).
    pub(super) fn server_template_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let w = &line.words;
        let loc = &line.loc;
        let ctx = format!("server-template '{}/{}'", px.name, w[1]);
        if let Err(e) = check_name(&w[1]) {
            self.diag.err(loc, format!("{ctx}: {e}"));
            return;
        }
        let range = match template_range(&w[2]) {
            Ok(r) => r,
            Err(e) => {
                self.diag.err(loc, format!("{ctx}: {e}"));
                return;
            }
        };
        let mut params = px.opts.default_server.clone();
        let Ok(id) = self.server_params(&ctx, line, 4, &mut params, Place::Server) else {
            return;
        };
        if id.is_some() {
            self.diag.err(
                loc,
                format!("{ctx}: 'id' cannot be set on a server-template (each server has its own)"),
            );
            return;
        }
        let srv = w[3].starts_with('_');
        if srv {
            if params.resolvers.is_none() {
                self.diag.err(
                    loc,
                    format!(
                        "{ctx}: SRV name '{}' needs 'resolvers' (only DNS gives its servers)",
                        w[3]
                    ),
                );
                return;
            }
            if w[3].contains(':') {
                self.diag.err(
                    loc,
                    format!(
                        "{ctx}: SRV name '{}' takes no port: the SRV records give it",
                        w[3]
                    ),
                );
                return;
            }
            // No system resolver asks SRV records: the servers start without an address, as
            // HAProxy starts them, until the resolvers answer.
            params.init_addr = Some(vec![InitAddr::None]);
        }
        for n in range {
            let name = format!("{}{n}", w[1]);
            self.add_server(px, line, &name, &w[3], params.clone(), None, true);
        }
    }

    /// Adds one server (of a `server` or `server-template` line) once its parameters are read.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per line kind, all needed"
    )]
    fn add_server(
        &mut self,
        px: &mut ProxyDraft,
        line: &Line,
        name: &str,
        addr_text: &str,
        mut params: ServerParams,
        explicit_id: Option<u32>,
        template: bool,
    ) {
        let ctx = format!("server '{}/{}'", px.name, name);
        let agent = &params.health.agent;
        if agent.enabled && agent.port.is_none() {
            // HAProxy: "server S does not have agent port. Agent check has been disabled."
            self.diag.err(
                &line.loc,
                format!("{ctx}: 'agent-check' is enabled but no 'agent-port' is set"),
            );
            return;
        }
        if !self.server_tls(&ctx, &line.loc, &mut params) {
            return;
        }
        let mut init_addr = params
            .init_addr
            .clone()
            .unwrap_or_else(|| default_init_addr(params.resolvers.is_some()));
        if super::super::resolution_failures_ignored() && !init_addr.contains(&InitAddr::None) {
            init_addr.push(InitAddr::None);
        }
        let found = if template && addr_text.starts_with('_') {
            let ip = std::net::Ipv4Addr::UNSPECIFIED.into();
            FoundAddr {
                addr: SocketAddr::new(ip, 0),
                port_offset: None,
                fqdn: Some(addr_text.to_owned()),
                unresolved: true,
                method: Some(0),
            }
        } else {
            let Some(found) = self.server_addr(&ctx, line, addr_text, &init_addr) else {
                return;
            };
            found
        };
        if let Some((s, _)) = px.servers.iter().find(|(s, _)| s.name == name) {
            self.diag.err(
                &line.loc,
                format!("{ctx} is defined twice (first at {})", s.loc),
            );
            return;
        }
        let (maxconn, minconn) = Server::settled_limits(params.maxconn, params.minconn);
        px.servers.push((
            Server {
                name: name.to_owned(),
                loc: line.loc.clone(),
                id: 0,
                addr: found.addr,
                port_offset: found.port_offset,
                fqdn: found.fqdn,
                weight: params.weight,
                backup: params.backup,
                maxconn,
                minconn,
                maxqueue: params.maxqueue,
                disabled: params.disabled,
                check_port: params.check_port,
                health: params.health.clone(),
                resolvers: params.resolvers.clone(),
                resolve_prefer_ipv4: params.resolve_prefer_ipv4,
                resolve_ignore_weight: params.resolve_ignore_weight,
                unresolved: found.unresolved,
                init_addr,
                init_addr_used: found.method,
                resolve_net: params.resolve_net.clone(),
                proxy: params.proxy.model(),
                template,
                source: params.source.clone(),
                tfo: params.tfo,
                tcp_ut: params.tcp_ut,
                track: params.track.clone(),
                tls: params.tls.clone(),
                trackers: Vec::new(),
            },
            explicit_id,
        ));
    }

    /// Completes a server's TLS settings: whether its checks speak TLS (HAProxy's
    /// `init_srv_check`: as the traffic unless `check-ssl`/`no-check-ssl`, or `port`/`addr`,
    /// say otherwise), `verify` from `ssl-server-verify` when unset, and, when the traffic or
    /// a check speaks TLS and verifies, a readable CA file (`HAProxy`'s errors).
    fn server_tls(&mut self, ctx: &str, loc: &Loc, params: &mut ServerParams) -> bool {
        let moved = params.check_port.is_some() || params.health.addr.is_some();
        params.health.tls.enabled = params.check_ssl.unwrap_or(params.tls.ssl && !moved);
        let tls = &mut params.tls;
        let verify = *tls.verify.get_or_insert(self.global.ssl_server_verify);
        let kw = match (tls.ssl, params.health.tls.enabled) {
            (true, _) => "ssl",
            (false, true) => "check-ssl",
            (false, false) => return true,
        };
        tls.settings.inherit(&self.global.ssl_default_server);
        let usable = tls.settings.versions().map(drop);
        if let Err(e) = usable.and_then(|()| tls.settings.provider().map(drop)) {
            self.diag.err(loc, format!("{ctx}: '{kw}': {e}"));
            return false;
        }
        if !verify {
            return true;
        }
        let Some(path) = &tls.ca_file else {
            let why = if self.global.ssl_server_verify {
                "verify is enabled by default but no CA file specified. If you're running on a \
                 LAN where you're certain to trust the server's certificate, please set an \
                 explicit 'verify none' statement on the 'server' line, or use \
                 'ssl-server-verify none' in the global section to disable server-side \
                 verifications by default."
            } else {
                "verify is enabled but no CA file specified."
            };
            self.diag.err(loc, format!("{ctx}: '{kw}': {why}"));
            return false;
        };
        if let Err(e) = crate::config::ca::load(path) {
            self.diag.err(loc, format!("{ctx}: 'ca-file': {e}"));
            return false;
        }
        true
    }

    /// A `default-server [params]` line: its parameters apply to the following `server` lines.
    pub(super) fn default_server_line(&mut self, px: &mut ProxyDraft, line: &Line) {
        let ctx = format!("default-server in {}", px.ctx());
        let mut params = px.opts.default_server.clone();
        // `id` is rejected on default-server, so there is no id to keep.
        if self
            .server_params(&ctx, line, 1, &mut params, Place::DefaultServer)
            .is_ok()
        {
            px.opts.default_server = params;
        }
    }

    /// Resolves a server address, trying the `init-addr` methods in order when it is a host
    /// name (`last` is decided once the backend's server-state file is known:
    /// `state_file_addresses`).
    fn server_addr(
        &mut self,
        ctx: &str,
        line: &Line,
        text: &str,
        methods: &[InitAddr],
    ) -> Option<FoundAddr> {
        let loc = &line.loc;
        let hp = match split_host_port(text) {
            Ok(hp) => hp,
            Err(e) => {
                self.diag.err(loc, format!("{ctx}: {e}"));
                return None;
            }
        };
        let (port, port_offset) = self.server_port(ctx, loc, hp.port.as_deref())?;
        let name = match hp.host {
            Some(Host::Ip(ip)) => {
                return Some(FoundAddr {
                    addr: SocketAddr::new(ip, port),
                    port_offset,
                    fqdn: None,
                    unresolved: false,
                    method: None,
                });
            }
            Some(Host::Name(n)) => n,
            // `*` or nothing (`*:PORT`, `:PORT`): the any address of the family, IPv4 unless
            // `ipv6@` (HAProxy's `str2ip2`), a server without an address (its connections go
            // to the client's destination, see `ServerSlot::target`).
            None => {
                return Some(FoundAddr {
                    addr: SocketAddr::new(unspecified(hp.family), port),
                    port_offset,
                    fqdn: None,
                    unresolved: false,
                    method: None,
                });
            }
        };
        let found = |addr, unresolved, i| FoundAddr {
            addr,
            port_offset,
            fqdn: Some(name.clone()),
            unresolved,
            method: Some(i),
        };
        let mut last_err = None;
        for (i, m) in methods.iter().enumerate() {
            match m {
                // The server-state file is read by the runtime, not here.
                InitAddr::Last => {}
                InitAddr::Libc => match resolve(&name, port, hp.family) {
                    Ok(a) => return Some(found(a, false, i)),
                    Err(e) => last_err = Some(e),
                },
                InitAddr::Ip(ip) => {
                    self.diag.warn(
                        loc,
                        format!("{ctx}: '{name}' not resolved; using init-addr {ip}"),
                    );
                    return Some(found(SocketAddr::new(*ip, port), false, i));
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
                    return Some(found(SocketAddr::new(ip, port), true, i));
                }
            }
        }
        if let Some(i) = methods.iter().position(|m| *m == InitAddr::Last) {
            // Only the server-state file can give it an address now: decided once the
            // backend's state file is known (`state_file_addresses`).
            self.waiting_for_state.insert(loc.clone(), last_err);
            let ip = unspecified(hp.family);
            return Some(found(SocketAddr::new(ip, port), true, i));
        }
        let why = last_err.unwrap_or_else(|| "no init-addr method gave an address".to_owned());
        self.diag.err(
            loc,
            format!("{ctx}: {why} (add 'init-addr libc,none' to start it in MAINT instead)"),
        );
        None
    }

    /// The port of a server address, as `HAProxy`'s `str2sa_range` reads it: `N` is fixed;
    /// none, `0`, `+N` or `-N` map it (the client's destination port, plus the offset), which
    /// is `(0, Some(offset))`.
    fn server_port(
        &mut self,
        ctx: &str,
        loc: &Loc,
        port: Option<&str>,
    ) -> Option<(u16, Option<i32>)> {
        let offset =
            |sign: i32, n: &str| parse_uint(n, 0, 65535).map(|v| (0, Some(sign * v as i32)));
        let parsed = match port {
            None | Some("" | "0") => Ok((0, Some(0))),
            Some(p) => match (p.strip_prefix('+'), p.strip_prefix('-')) {
                (Some(n), _) => offset(1, n),
                (_, Some(n)) => offset(-1, n),
                _ => parse_port(p).map(|p| (p, None)),
            }
            .map_err(|_| format!("invalid port '{p}' (expected 1..=65535, or an offset +N/-N)")),
        };
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                self.diag.err(loc, format!("{ctx}: {e}"));
                None
            }
        }
    }

    /// Parses `server`/`default-server` parameters from word `start` on into `params`. Returns
    /// [`ParamsFailed`] after reporting errors, else the explicit `id`. Unsupported parameters
    /// are collected into one warning for the line.
    #[expect(
        clippy::many_single_char_names,
        reason = "w/p/i/c as in the other keyword parsers"
    )]
    fn server_params(
        &mut self,
        ctx: &str,
        line: &Line,
        start: usize,
        params: &mut ServerParams,
        place: Place,
    ) -> Result<Option<u32>, ParamsFailed> {
        let w = &line.words;
        let loc = &line.loc;
        let mut id = None;
        let mut not_yet: Vec<(&str, &'static str)> = Vec::new();
        let mut failed = false;
        let mut i = start;
        while i < w.len() {
            let p = w[i].as_str();
            let Some(kw) = server_keyword(p) else {
                self.diag
                    .err(loc, format!("{ctx}: unknown parameter '{p}'"));
                failed = true;
                i += 1;
                continue;
            };
            // Flags get an empty argument; valued parameters need theirs.
            let arg = if kw.takes_value {
                let Some(value) = w.get(i + 1) else {
                    self.diag.err(loc, format!("{ctx}: '{p}' needs a value"));
                    return Err(ParamsFailed);
                };
                value.as_str()
            } else {
                ""
            };
            let result = if kw.accepted_on(place) {
                let mut c = KwCtx {
                    params: &mut *params,
                    id: &mut id,
                    not_yet: &mut not_yet,
                    resolver_refs: &mut self.resolver_refs,
                    loc,
                    ca_base: self.global.ca_base.as_deref(),
                    loader: &self.loader,
                };
                match kw.handling {
                    ServerHandling::Set(f) => f(&mut c, kw.name, arg),
                    ServerHandling::NotYet(feature) => {
                        c.not_yet.push((kw.name, feature));
                        Ok(())
                    }
                }
            } else {
                Err(format!("'{p}' is not allowed on {}", place.word()))
            };
            if let Err(msg) = result {
                self.diag.err(loc, format!("{ctx}: {msg}"));
                failed = true;
            }
            i += if kw.takes_value { 2 } else { 1 };
        }
        if failed {
            return Err(ParamsFailed);
        }
        if !not_yet.is_empty() {
            self.diag.warn(
                loc,
                format!(
                    "{ctx}: not supported yet, ignored: {}",
                    not_yet_text(not_yet)
                ),
            );
        }
        Ok(id)
    }
}

/// The parameters of one line that lb does not act on yet, grouped by feature:
/// `'a', 'b' (feature); 'c' (other feature)`.
fn not_yet_text(not_yet: Vec<(&str, &str)>) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (p, f) in not_yet {
        match groups.iter_mut().find(|(g, _)| *g == f) {
            Some((_, ps)) => ps.push(p),
            None => groups.push((f, vec![p])),
        }
    }
    groups
        .iter()
        .map(|(f, ps)| {
            let ps: Vec<String> = ps.iter().map(|p| format!("'{p}'")).collect();
            format!("{} ({f})", ps.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
