//! Proxy sections (`defaults`, `frontend`, `backend`, `listen`): the settings `defaults` pass on,
//! the section being parsed, its header (`from`, addresses), and what happens once it is read
//! (stats page, names, server ids). The keywords of its lines are in [`super::proxy_kw`].

use std::collections::HashMap;
use std::sync::Arc;

use super::super::lex::Line;
use super::super::scalar::check_name;
use super::super::{
    Balance, Bind, BindOptions, CheckKind, ConnectRule, ExternalCheck, HashType, HttpExpect,
    Keepalive, Loc, LogFormat, LogTarget, ProxyRules, Server, Source, TcpCheckRule, Timeouts,
};
use super::server::ServerParams;
use super::state_file::StateLoad;
use super::{Parser, Section};

/// The `http-check` lines of a section, merged into `option httpchk` at the end.
#[derive(Clone, Debug, Default)]
pub(super) struct HttpRules {
    /// `http-check connect`.
    pub(super) connect: Option<ConnectRule>,
    /// `http-check send meth M`.
    pub(super) method: Option<String>,
    /// `http-check send uri U` / `uri-lf FMT`.
    pub(super) uri: Option<LogFormat>,
    /// `http-check send ver V`.
    pub(super) version: Option<String>,
    /// `http-check send hdr N V`.
    pub(super) headers: Vec<(String, String)>,
    /// `http-check send body S`.
    pub(super) body: Option<String>,
    /// `http-check expect`.
    pub(super) expect: Option<HttpExpect>,
    /// `http-check disable-on-404`.
    pub(super) disable_on_404: bool,
}

/// The proxy section kinds (`defaults` included: it holds proxy settings too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    pub(super) fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }

    /// Frontend capability (defaults have both capabilities).
    pub(super) fn fe(self) -> bool {
        self != Kind::Backend
    }

    /// Backend capability.
    pub(super) fn be(self) -> bool {
        self != Kind::Frontend
    }
}

/// `mode` of a proxy section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Tcp,
    Http,
}

/// Everything a `defaults` section passes on to proxies.
#[derive(Clone, Debug)]
pub(super) struct ProxyOpts {
    /// `mode` and where it was set.
    pub(super) mode: Option<(Mode, Loc)>,
    pub(super) balance: Balance,
    /// A `balance` line was read (here or in the defaults): HAProxy's `lbprm.algo` set, which
    /// `option transparent` refuses.
    pub(super) balance_set: bool,
    /// `option transparent` (or the deprecated `transparent`): connections no rule sends to a
    /// server go to the client's original destination.
    pub(super) transparent: bool,
    pub(super) hash_type: HashType,
    pub(super) timeouts: Timeouts,
    pub(super) retries: u32,
    /// `source` (a server's own wins: see [`super::source`]).
    pub(super) source: Option<Source>,
    pub(super) redispatch: bool,
    pub(super) allbackups: bool,
    pub(super) cli_ka: Keepalive,
    pub(super) srv_ka: Keepalive,
    pub(super) maxconn: Option<u32>,
    pub(super) default_backend: Option<(String, Loc)>,
    pub(super) default_server: ServerParams,
    /// The last `option *-check`/`httpchk`/`tcp-check`/`external-check` and where it was set
    /// (`TcpCheck` holds no rules here: they are in `tcp_rules`).
    pub(super) check: (CheckKind, Option<Loc>),
    /// `tcp-check` rules, in order.
    pub(super) tcp_rules: Vec<TcpCheckRule>,
    /// `http-check connect|send|expect|disable-on-404`.
    pub(super) http_rules: HttpRules,
    pub(super) log_health_checks: bool,
    pub(super) external_check: ExternalCheck,
    /// `log` lines (inherited from defaults, own ones appended; `no log` empties the list).
    pub(super) logs: Vec<LogTarget>,
    /// `option tcplog` or `log-format`, whichever came last (HAProxy keeps one format string).
    pub(super) log_format: Option<Arc<crate::log_format::LogFormat>>,
    /// `log-tag` (frontend side).
    pub(super) log_tag: Option<String>,
    /// `option dontlognull`.
    pub(super) dontlognull: bool,
    /// `option dontlog-normal`.
    pub(super) dontlog_normal: bool,
    /// `option log-separate-errors`.
    pub(super) log_separate_errors: bool,
    /// `option logasap`.
    pub(super) logasap: bool,
    /// `option tcp-smart-accept`.
    pub(super) smart_accept: bool,
    /// `backlog`.
    pub(super) backlog: Option<u32>,
    /// `rate-limit sessions`.
    pub(super) rate_limit_sessions: Option<u32>,
    /// `fullconn`.
    pub(super) fullconn: Option<u32>,
    /// `option tcp-smart-connect`.
    pub(super) smart_connect: bool,
    /// `option nolinger` (both sides: the frontend's listeners, the backend's server side).
    pub(super) nolinger: bool,
    /// `option abortonclose`.
    pub(super) abortonclose: bool,
    /// `option persist`.
    pub(super) persist: bool,
    /// `persist rdp-cookie[(NAME)]`: the cookie's name.
    pub(super) rdp_cookie_persist: Option<String>,
    /// `balance rdp-cookie[(NAME)]`: the cookie's name.
    pub(super) balance_rdp_cookie: Option<String>,
    /// `load-server-state-from-file` and where it was set.
    pub(super) load_server_state: (StateLoad, Option<Loc>),
    /// The rules of a named `defaults` section (ACLs, `tcp-request`, `tcp-response`,
    /// inspect delays), for the proxies built from it.
    pub(super) rules: Option<Arc<ProxyRules>>,
}

impl ProxyOpts {
    /// `HAProxy`'s built-in defaults (what a fresh `defaults` section starts from).
    pub(super) fn builtin() -> Self {
        Self {
            mode: None,
            balance: Balance::RoundRobin,
            balance_set: false,
            transparent: false,
            hash_type: HashType::default(),
            timeouts: Timeouts::default(),
            retries: 3,
            source: None,
            redispatch: false,
            allbackups: false,
            cli_ka: Keepalive::default(),
            srv_ka: Keepalive::default(),
            maxconn: None,
            default_backend: None,
            default_server: ServerParams::default(),
            check: (CheckKind::Connect, None),
            tcp_rules: Vec::new(),
            http_rules: HttpRules::default(),
            log_health_checks: false,
            external_check: ExternalCheck::default(),
            logs: Vec::new(),
            log_format: None,
            log_tag: None,
            dontlognull: false,
            dontlog_normal: false,
            log_separate_errors: false,
            logasap: false,
            smart_accept: false,
            backlog: None,
            rate_limit_sessions: None,
            fullconn: None,
            smart_connect: false,
            nolinger: false,
            abortonclose: false,
            persist: false,
            rdp_cookie_persist: None,
            balance_rdp_cookie: None,
            load_server_state: (StateLoad::None, None),
            rules: None,
        }
    }
}

/// A proxy section being parsed.
#[derive(Debug)]
pub(super) struct ProxyDraft {
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) loc: Loc,
    pub(super) opts: ProxyOpts,
    pub(super) explicit_mode: bool,
    /// A `frontend`/`listen` serving a stats page (`stats enable|uri` or the Prometheus
    /// exporter): the one kind of section that may use `mode http`.
    pub(super) is_stats: bool,
    pub(super) binds: Vec<Bind>,
    /// `bind` lines seen, valid or not (an invalid one is reported once, not again as "no bind").
    pub(super) bind_lines: usize,
    /// Servers with their explicit `id`, ids assigned once the section is complete.
    pub(super) servers: Vec<(Server, Option<u32>)>,
    /// Where `default_backend` was written in this section (not inherited).
    pub(super) own_default_backend: Option<Loc>,
    /// A frontend in `mode http` that serves no stats page itself: valid only when it forwards
    /// to a stats backend (decided once every section is read); else this error is reported.
    pub(super) http_mode_error: Option<(Loc, String)>,
    /// Whether this section wrote `tcp-check` rules (the first one replaces inherited rules).
    pub(super) own_tcp_rules: bool,
    /// `server-state-file-name` of this section (not inherited from defaults, as in `HAProxy`).
    pub(super) state_file_name: Option<String>,
    /// Its own ACLs and rules (with a pointer to the defaults' ones it runs first).
    pub(super) rules: ProxyRules,
    /// Where each `use_backend` of `rules` was written.
    pub(super) switch_locs: Vec<Loc>,
    /// `use_backend` lines seen, valid or not (an invalid one is reported once, not again as
    /// "no backend").
    pub(super) use_backend_lines: usize,
    /// Where each `use-server` of `rules` was written.
    pub(super) use_server_locs: Vec<Loc>,
    /// `stick-table` of this proxy.
    pub(super) table: super::stick::DraftTable,
    /// Tables named by `stick` rules, checked once every section is read.
    pub(super) table_refs: Vec<(String, Loc)>,
    /// `description` (not inherited: `HAProxy` refuses it in `defaults`).
    pub(super) description: Option<String>,
}

impl ProxyDraft {
    /// `defaults`, or `KIND 'NAME'`, for messages.
    pub(super) fn ctx(&self) -> String {
        if self.kind == Kind::Defaults && self.name.is_empty() {
            "defaults".to_owned()
        } else {
            format!("{} '{}'", self.kind.word(), self.name)
        }
    }
}

/// Whether a section body makes it a stats page (a `frontend`/`listen` serving it on its own
/// binds), or a stats backend (a `backend` serving it to the frontends that forward to it).
fn is_stats_section(kind: Kind, body: &[Line]) -> bool {
    kind != Kind::Defaults
        && body.iter().any(|l| {
            let w = &l.words;
            (w[0] == "stats" && w.get(1).is_some_and(|s| s == "enable" || s == "uri"))
                || (w[0] == "http-request"
                    && w.get(1).is_some_and(|s| s == "use-service")
                    && w.get(2).is_some_and(|s| s == "prometheus-exporter"))
        })
}

impl Parser {
    pub(super) fn proxy_section(&mut self, kind: Kind, sec: &Section<'_>) {
        let mut px = self.proxy_header(kind, sec.header);
        px.is_stats = is_stats_section(kind, sec.body);
        let warnings_before = self.diag.warnings.len();
        for line in sec.body {
            // What ACLs and maps read from files name as where they are used.
            let file = line.loc.file.display().to_string();
            self.loader.at(&file, line.loc.line);
            self.proxy_line(&mut px, line);
        }
        let mode = px.opts.mode.as_ref().map(|(m, _)| *m);
        if px.is_stats && mode == Some(Mode::Http) {
            // The whole section is one feature lb does not serve: one warning instead of one per
            // line.
            self.diag.warnings.truncate(warnings_before);
            self.close_stats(&px, sec);
            return;
        }
        if mode == Some(Mode::Http) && kind != Kind::Defaults {
            let error = if px.explicit_mode {
                // Reported on the `mode` line itself (deferred for a frontend, below).
                px.http_mode_error.take()
            } else {
                px.opts.mode.as_ref().map(|(_, mloc)| {
                    let msg = format!(
                        "{}: mode http (inherited from defaults at {mloc}) is not supported (lb \
                         is a TCP load balancer); add 'mode tcp' (only a stats section may use \
                         mode http)",
                        px.ctx()
                    );
                    (px.loc.clone(), msg)
                })
            };
            match error {
                // A frontend forwarding to a stats backend is a stats page: known at the end.
                Some(e) if kind == Kind::Frontend => px.http_mode_error = Some(e),
                Some((loc, msg)) => self.diag.err(&loc, msg),
                None => {}
            }
        }
        self.resolve_use_server(&mut px);
        if kind == Kind::Defaults {
            // A defaults section passes its own rules on (only a named one can have any).
            let own = std::mem::take(&mut px.rules);
            px.opts.rules = (own != ProxyRules::default()).then(|| Arc::new(own));
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

    /// Reads a proxy header: `KIND [NAME] [from DEFAULTS] [ADDR...]`. The draft starts from the
    /// last `defaults` (or the named one); addresses are `bind`s of a frontend/listen.
    fn proxy_header(&mut self, kind: Kind, h: &Line) -> ProxyDraft {
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
        let inherited = self.inherited_rules(kind, h, opts.rules.as_ref());
        let rules = ProxyRules {
            inspect_delay: opts.rules.as_ref().and_then(|r| r.inspect_delay),
            response_inspect_delay: opts.rules.as_ref().and_then(|r| r.response_inspect_delay),
            defaults: inherited,
            ..ProxyRules::default()
        };
        let mut px = ProxyDraft {
            kind,
            name,
            loc: h.loc.clone(),
            opts,
            explicit_mode: false,
            is_stats: false,
            binds: Vec::new(),
            bind_lines: 0,
            servers: Vec::new(),
            own_default_backend: None,
            http_mode_error: None,
            own_tcp_rules: false,
            state_file_name: None,
            rules,
            switch_locs: Vec::new(),
            use_backend_lines: 0,
            use_server_locs: Vec::new(),
            table: None,
            table_refs: Vec::new(),
            description: None,
        };
        for addr in header_binds {
            px.bind_lines += 1;
            if kind.fe() && kind != Kind::Defaults {
                self.bind_addrs(&mut px, &h.loc, addr, None, &BindOptions::default(), false);
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
        px
    }

    /// A stats section once read: its page is kept, its name taken, nothing else. A `backend`
    /// is kept aside for the frontends that forward to it.
    fn close_stats(&mut self, px: &ProxyDraft, sec: &Section<'_>) {
        let stats = self.stats_proxy(px, sec);
        self.register_names(px);
        self.stats_sections.insert(px.name.clone(), px.loc.clone());
        if px.kind == Kind::Backend {
            self.stats_backends.insert(px.name.clone(), stats);
            return;
        }
        if px.bind_lines == 0 {
            self.diag.warn(
                &px.loc,
                format!("{} has no 'bind'; its stats page is not served", px.ctx()),
            );
        }
        self.stats.push(stats);
    }

    /// Records the proxy's name in the frontend/backend namespaces, reporting reuse.
    pub(super) fn register_names(&mut self, px: &ProxyDraft) {
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
    pub(super) fn cap(
        &mut self,
        px: &ProxyDraft,
        line: &Line,
        kw: &str,
        fe: bool,
        be: bool,
    ) -> bool {
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

    pub(super) fn not_allowed(&mut self, px: &ProxyDraft, line: &Line, kw: &str) {
        self.diag.err(
            &line.loc,
            format!("'{kw}' in a '{}' section is not allowed", px.kind.word()),
        );
    }
}
