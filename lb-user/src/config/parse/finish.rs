//! Once every section is read: the cross-section checks (backend names, addresses bound twice,
//! `resolvers` and `userlist` references, missing timeouts) and the [`Config`] itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use super::super::{
    Backend, Bind, CheckKind, Config, ConnectRule, Frontend, Loc, ProxyRules, Server, StatsProxy,
    TcpCheckRule,
};
use super::checks::check_kind;
use super::log::resolve_log_global;
use super::proxy::{Kind, ProxyDraft};
use super::Parser;
use crate::rules::Target;

/// Addresses already bound, with who bound them and where.
type Bound = HashMap<SocketAddr, (String, Loc)>;

impl Parser {
    /// The cross-section checks, then the config (`None` when there are errors).
    pub(super) fn finish(&mut self) -> Option<Config> {
        let be_index: HashMap<String, usize> = self
            .proxies
            .iter()
            .filter(|p| p.kind.be())
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let tables = self.stick_tables();
        let rules = self.proxy_rules(&be_index);
        let mut backends = self.backends(&rules);
        self.resolve_tracks(&mut backends);
        self.state_file_addresses(&mut backends);
        let mut bound = Bound::new();
        let frontends = self.frontends(&be_index, &rules, &mut bound);
        self.default_resolvers();
        self.check_references(&mut bound);
        let servers_of = |name: &str| {
            be_index.get(name).map(|i| {
                backends[*i]
                    .servers
                    .iter()
                    .map(|s| s.name.clone())
                    .collect()
            })
        };
        let is_frontend = |name: &str| frontends.iter().any(|f| f.name == name);
        self.check_refs(&servers_of, &is_frontend);
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
            proc_vars: Arc::default(),
            pat_refs: Arc::new(std::mem::take(&mut self.loader).finish()),
            tables,
        })
    }

    /// `track`: each tracked server exists and has a check, an agent, or tracks another in
    /// turn, and no chain loops back (HAProxy's `srv_apply_track`); then each tracked server
    /// knows its trackers.
    fn resolve_tracks(&mut self, backends: &mut [Backend]) {
        let index: HashMap<String, usize> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let mut found: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
        let mut failed = false;
        for (b, be) in backends.iter().enumerate() {
            for (s, srv) in be.servers.iter().enumerate() {
                let Some(t) = &srv.track else { continue };
                let ctx = format!("server '{}/{}'", be.name, srv.name);
                let tb = match &t.backend {
                    None => Some(b),
                    Some(name) => index.get(name).copied(),
                };
                let Some(tb) = tb else {
                    let name = t.backend.as_deref().unwrap_or_default();
                    let msg = format!("{ctx}: unable to find required proxy '{name}' for tracking");
                    self.diag.err(&srv.loc, msg);
                    failed = true;
                    continue;
                };
                let Some(ts) = backends[tb].servers.iter().position(|x| x.name == t.server) else {
                    let msg = format!(
                        "{ctx}: unable to find required server '{}' in backend '{}' for tracking",
                        t.server, backends[tb].name
                    );
                    self.diag.err(&srv.loc, msg);
                    failed = true;
                    continue;
                };
                found.insert((b, s), (tb, ts));
            }
        }
        let mut sorted: Vec<_> = found.iter().map(|(k, v)| (*k, *v)).collect();
        sorted.sort_unstable();
        for &((b, s), to) in &sorted {
            let name = |(b, s): (usize, usize)| {
                format!("{}/{}", backends[b].name, backends[b].servers[s].name)
            };
            let (me, them) = (name((b, s)), name(to));
            let tracked = &backends[to.0].servers[to.1];
            let loc = backends[b].servers[s].loc.clone();
            if !tracked.health.check && !tracked.health.agent.enabled && tracked.track.is_none() {
                let msg = format!(
                    "server '{me}': unable to use {them} for tracking as it does not have any \
                     check nor agent enabled"
                );
                self.diag.err(&loc, msg);
                failed = true;
                continue;
            }
            // Follow the chain from the tracked server: at most one step per tracking server.
            let mut at = Some(to);
            for _ in 0..=found.len() {
                match at {
                    Some(x) if x == (b, s) => {
                        let msg = format!(
                            "server '{me}': unable to track {them} as it belongs to a tracking \
                             chain looping back to {me}"
                        );
                        self.diag.err(&loc, msg);
                        failed = true;
                        break;
                    }
                    Some(x) => at = found.get(&x).copied(),
                    None => break,
                }
            }
            if let Some(t) = backends[b].servers[s].track.as_mut() {
                t.to = to;
                t.name = them;
            }
        }
        if failed {
            return;
        }
        for ((b, s), to) in sorted {
            backends[to.0].servers[to.1].trackers.push((b, s));
        }
    }

    /// Each proxy's rules, ready to share (a `listen`'s frontend and backend halves get the
    /// same), with `use_backend` names resolved.
    fn proxy_rules(&mut self, be_index: &HashMap<String, usize>) -> Vec<Arc<ProxyRules>> {
        let mut proxies = std::mem::take(&mut self.proxies);
        let mut out = Vec::new();
        for px in &mut proxies {
            let ctx = px.ctx();
            for (sw, loc) in px.rules.use_backend.iter_mut().zip(&px.switch_locs) {
                let Target::Backend { name, index } = &mut sw.target else {
                    continue;
                };
                match be_index.get(name.as_str()) {
                    Some(_) if *name == px.name => self.diag.err(
                        loc,
                        format!("{ctx}: loop detected for use_backend: '{name}'"),
                    ),
                    Some(i) => *index = *i,
                    None => {
                        let why = if self.stats_sections.contains_key(name.as_str()) {
                            " (it is a stats section, which has no servers)"
                        } else {
                            ""
                        };
                        self.diag.err(
                            loc,
                            format!("{ctx}: unable to find required use_backend: '{name}'{why}"),
                        );
                    }
                }
            }
            out.push(Arc::new(std::mem::take(&mut px.rules)));
        }
        self.proxies = proxies;
        out
    }

    /// Every backend-capable proxy as a [`Backend`] (`rules`: each proxy's, in order).
    fn backends(&mut self, rules: &[Arc<ProxyRules>]) -> Vec<Backend> {
        let mut backends = Vec::new();
        let proxies = std::mem::take(&mut self.proxies);
        for (px, rules) in proxies.iter().zip(rules).filter(|(p, _)| p.kind.be()) {
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
            let check = check_kind(&mut self.diag, &self.global, px);
            self.check_mapped_ports(px, &check);
            self.warn_rdp_mapped_ports(px);
            if px.opts.transparent && px.opts.balance_set {
                // HAProxy's check_config_validity: fatal.
                self.diag.err(
                    &px.loc,
                    format!("{} cannot use both transparent and balance mode", px.ctx()),
                );
            }
            backends.push(Backend {
                name: px.name.clone(),
                loc: px.loc.clone(),
                id: u32::try_from(backends.len() + 1).unwrap_or(u32::MAX),
                balance: px.opts.balance,
                hash_type: px.opts.hash_type,
                servers: px
                    .servers
                    .iter()
                    .map(|(s, _)| Server {
                        source: s.source.clone().or_else(|| px.opts.source.clone()),
                        ..s.clone()
                    })
                    .collect(),
                timeouts: px.opts.timeouts,
                retries: px.opts.retries,
                redispatch: px.opts.redispatch,
                allbackups: px.opts.allbackups,
                smart_connect: px.opts.smart_connect,
                nolinger: px.opts.nolinger,
                abortonclose: px.opts.abortonclose,
                transparent: px.opts.transparent,
                source: px.opts.source.clone(),
                persist: px.opts.persist,
                rdp_cookie_persist: px.opts.rdp_cookie_persist.clone(),
                balance_rdp_cookie: px.opts.balance_rdp_cookie.clone(),
                keepalive: px.opts.srv_ka,
                check,
                log_health_checks: px.opts.log_health_checks,
                external_check: px.opts.external_check.clone(),
                server_state: self.server_state_of(px),
                rules: rules.clone(),
                description: px.description.clone(),
                fullconn: px.opts.fullconn,
            });
        }
        self.proxies = proxies;
        backends
    }

    /// A checked server without a port of its own (it takes the client's) needs a check port:
    /// `port`, or a first `tcp-check connect port N` (`HAProxy`'s rule, and its words).
    fn check_mapped_ports(&mut self, px: &ProxyDraft, check: &CheckKind) {
        let connect_has_port = match check {
            CheckKind::TcpCheck(rules) => {
                matches!(
                    rules.first(),
                    Some(TcpCheckRule::Connect(ConnectRule { port: Some(_), .. }))
                ) && rules
                    .iter()
                    .all(|r| !matches!(r, TcpCheckRule::Connect(ConnectRule { port: None, .. })))
            }
            CheckKind::Http(h) => h.connect.as_ref().is_some_and(|c| c.port.is_some()),
            _ => false,
        };
        for (srv, _) in &px.servers {
            if srv.health.check
                && srv.port_offset.is_some()
                && srv.check_port.is_none()
                && !connect_has_port
            {
                self.diag.err(
                    &srv.loc,
                    format!(
                        "{} server '{}' has neither service port nor check port (add 'port N' \
                         to check it)",
                        px.ctx(),
                        srv.name
                    ),
                );
            }
        }
    }

    /// `persist rdp-cookie` names servers by address and port: one without a port of its own
    /// can't be named (HAProxy's warning, and its words).
    fn warn_rdp_mapped_ports(&mut self, px: &ProxyDraft) {
        if px.opts.rdp_cookie_persist.is_none() {
            return;
        }
        for (srv, _) in px.servers.iter().filter(|(s, _)| s.port_offset.is_some()) {
            self.diag.warn(
                &srv.loc,
                format!(
                    "{} : RDP cookie persistence will not work for server '{}' because it lacks \
                     an explicit port number.",
                    px.ctx(),
                    srv.name
                ),
            );
        }
    }

    /// Every frontend-capable proxy with binds and a backend as a [`Frontend`]; records their
    /// addresses in `bound`.
    fn frontends(
        &mut self,
        be_index: &HashMap<String, usize>,
        rules: &[Arc<ProxyRules>],
        bound: &mut Bound,
    ) -> Vec<Frontend> {
        let mut frontends = Vec::new();
        let proxies = std::mem::take(&mut self.proxies);
        for (px, rules) in proxies.iter().zip(rules).filter(|(p, _)| p.kind.fe()) {
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
            if let Some(page) = self.stats_through_backend(px) {
                self.stats.push(page);
                continue;
            }
            if let Some((loc, msg)) = &px.http_mode_error {
                self.diag.err(loc, msg.clone());
                continue;
            }
            let backend = self.frontend_backend(px, be_index, px.use_backend_lines > 0);
            self.bind_once(&px.binds, &ctx, &ctx, bound);
            self.frontend_timeouts(px);
            let Some(backend) = backend else { continue };
            frontends.push(Frontend {
                name: px.name.clone(),
                loc: px.loc.clone(),
                binds: px
                    .binds
                    .iter()
                    .map(|b| {
                        let mut b = b.clone();
                        b.opts.smart_accept = px.opts.smart_accept;
                        b.opts.backlog = b
                            .opts
                            .backlog
                            .or(px.opts.backlog)
                            .or(b.maxconn)
                            .or(px.opts.maxconn)
                            .or(self.global.maxconn);
                        b
                    })
                    .collect(),
                backend,
                own_backend: (px.kind == Kind::Listen)
                    .then(|| be_index.get(&px.name).copied())
                    .flatten(),
                rules: rules.clone(),
                maxconn: px.opts.maxconn,
                timeouts: px.opts.timeouts,
                keepalive: px.opts.cli_ka,
                logs: resolve_log_global(&px.opts.logs, &self.global.logs),
                log_format: px.opts.log_format.clone(),
                log_tag: px.opts.log_tag.clone(),
                description: px.description.clone(),
                dontlognull: px.opts.dontlognull,
                dontlog_normal: px.opts.dontlog_normal,
                log_separate_errors: px.opts.log_separate_errors,
                logasap: px.opts.logasap,
                rate_limit_sessions: px.opts.rate_limit_sessions,
                nolinger: px.opts.nolinger,
            });
        }
        self.proxies = proxies;
        frontends
    }

    /// The stats page a `frontend` serves when its `default_backend` is a stats backend (the
    /// frontend's mode does not matter: `HAProxy` upgrades a TCP stream to HTTP for an HTTP
    /// backend): the frontend's addresses and limits, the backend's page settings.
    fn stats_through_backend(&self, px: &ProxyDraft) -> Option<StatsProxy> {
        if px.kind != Kind::Frontend {
            return None;
        }
        let (be, _) = px.opts.default_backend.as_ref()?;
        let page = self.stats_backends.get(be)?;
        Some(StatsProxy {
            name: px.name.clone(),
            loc: px.loc.clone(),
            binds: px.binds.clone(),
            maxconn: px.opts.maxconn,
            timeout: px.opts.timeouts.client,
            ..page.clone()
        })
    }

    /// The backend a frontend forwards to when no `use_backend` rule applies: a listen's own
    /// half, or its `default_backend`. The outer `None` is an error (reported); the inner one a
    /// frontend that only routes with `use_backend`.
    #[expect(
        clippy::option_option,
        reason = "error / no default backend / default backend"
    )]
    fn frontend_backend(
        &mut self,
        px: &ProxyDraft,
        be_index: &HashMap<String, usize>,
        has_use_backend: bool,
    ) -> Option<Option<usize>> {
        let ctx = px.ctx();
        if px.kind == Kind::Listen {
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
            be_index.get(&px.name).copied().map(Some)
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
            found.map(Some)
        } else if has_use_backend {
            // As in HAProxy: a connection no rule routes is closed.
            Some(None)
        } else {
            self.diag.err(
                &px.loc,
                format!("{ctx} has no backend: add 'default_backend NAME' or 'use_backend' rules"),
            );
            None
        }
    }

    /// Reports each address of `binds` already bound by someone else, else records it as
    /// bound by `owner`. `who` starts the message.
    fn bind_once(&mut self, binds: &[Bind], who: &str, owner: &str, bound: &mut Bound) {
        for b in binds {
            if b.addr.port() == 0 {
                continue;
            }
            if let Some((other, first)) = bound.get(&b.addr) {
                self.diag.err(
                    &b.loc,
                    format!(
                        "{who}: address {} is already bound by {other} at {first}",
                        b.addr
                    ),
                );
            } else {
                bound.insert(b.addr, (owner.to_owned(), b.loc.clone()));
            }
        }
    }

    /// Warns about the timeouts a frontend (and a listen's backend half) should have.
    fn frontend_timeouts(&mut self, px: &ProxyDraft) {
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
                    "missing timeouts for {}: {} (HAProxy warns too; set them in defaults)",
                    px.ctx(),
                    missing.join(", ")
                ),
            );
        }
    }

    /// References between sections (`resolvers`, `userlist`), stats pages' addresses, stats
    /// sockets declared twice.
    fn check_references(&mut self, bound: &mut Bound) {
        // `resolvers` named on server lines must exist (sections may come later in the file).
        for (r, loc) in std::mem::take(&mut self.resolver_refs) {
            if !self.resolvers.contains_key(&r) {
                self.diag.err(
                    &loc,
                    format!("resolvers '{r}' not found (no 'resolvers {r}' section)"),
                );
            }
        }
        let stats = std::mem::take(&mut self.stats);
        for st in &stats {
            for l in &st.userlists {
                if !self.userlists.iter().any(|u| u.name == *l) {
                    self.diag.err(
                        &st.loc,
                        format!(
                            "stats section '{}': userlist '{l}' not found (no 'userlist {l}' \
                             section)",
                            st.name
                        ),
                    );
                }
            }
            let who = format!("stats section '{}'", st.name);
            self.bind_once(&st.binds, &who, &format!("'{}'", st.name), bound);
        }
        self.stats = stats;
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
    }
}
