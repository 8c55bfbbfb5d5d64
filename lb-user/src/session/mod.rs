//! One client connection's decisions before its flow goes to the data plane, in HAProxy's
//! order: `tcp-request connection` rules at accept, the PROXY header (`accept-proxy`,
//! `expect-proxy layer4`), `tcp-request session` rules, the frontend's `tcp-request content`
//! rules, `use_backend`/`default_backend`, the backend's `tcp-request content` rules,
//! `use-server`; and, once connected, the backend's `tcp-response content` rules.
//!
//! No I/O and no clock of its own: the caller reads the client's first bytes into a buffer and
//! calls [`Session::feed`] with all of them each time more arrive (or a deadline passes); the
//! session answers [`Step::Wait`] (until when), [`Step::Reject`] or [`Step::Route`]. The
//! caller forwards every byte it read from `consumed` on (the PROXY header is not forwarded),
//! so nothing read for the decision is lost. This keeps the API the same whatever loop drives
//! it (tokio today, an `io_uring` event loop later).

mod env;
mod rdp;
mod stick;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acl::{Ctx, Dir, Places, Value, Vars};
use crate::generation::Generation;
use crate::log_format::LogFormat;
use crate::proxy_proto::{self, Parsed};
use crate::rules::{self, Hooks, Inputs, ProxyRules, Rule, Target, TrackSc, Verdict};
use env::GenEnv;
use stick::Sticky;

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more of the client's bytes; call [`Session::feed`] again when some arrive, when the
    /// client closes, or at `until` (`None`: no deadline of the session's own).
    Wait { until: Option<Instant> },
    /// Close the client; no server is contacted.
    Reject(Rejected),
    /// Connect to `backend` (to `server` when `use-server` chose one, else balance), send the
    /// client's bytes from `consumed` on, then hand the pair to the data plane.
    Route(Route),
}

/// Where the connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Index into `Config::backends`.
    pub backend: usize,
    /// Index of the server in the backend chosen by `use-server` or `stick`.
    pub server: Option<usize>,
    /// That server is taken even DOWN or in maintenance (`option persist`, `force-persist`).
    pub persist: bool,
    /// Bytes at the start of the buffer that are a PROXY header: not forwarded.
    pub consumed: usize,
}

/// Why and how a connection is closed before any server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// `silent-drop`: close without telling the client (no FIN, no reset reaches it).
    pub silent: bool,
    pub why: Why,
}

/// The phase that closed the connection, which decides how it is logged (HAProxy logs nothing
/// for the first two: no stream exists yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// `tcp-request connection reject|silent-drop`: closed with a reset, not logged.
    Connection,
    /// `tcp-request session reject|silent-drop`: closed with a reset, not logged.
    Session,
    /// No valid PROXY header: HAProxy's message, logged as `IP:PORT [DATE] FE/BIND: message`.
    Handshake(&'static str),
    /// `tcp-request content reject|silent-drop`: logged with the termination state `PR`.
    Content,
    /// No `use_backend` rule matched and the frontend has no `default_backend`: logged as a
    /// connection with no server (`SC`), as HAProxy does in tcp mode.
    NoBackend,
}

/// What the response rules decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStep {
    Wait {
        until: Option<Instant>,
    },
    /// Forward the response and everything after it.
    Accept,
    /// `reject`: close both sides (logged `PD`, counted in `dresp`); `silent` for `silent-drop`.
    Reject {
        silent: bool,
    },
    /// `close`: close the server side, let the client's side end normally.
    Close,
}

/// HAProxy's messages for a PROXY header that did not come.
pub const PRX_EMPTY: &str = "Connection closed while waiting for PROXY protocol header";
pub const PRX_ABORT: &str = "Connection error while waiting for PROXY protocol header";
pub const PRX_TIMEOUT: &str = "Timeout while waiting for PROXY protocol header";
pub const PRX_TRUNCATED: &str = "Truncated PROXY protocol header received";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the PROXY header.
    Handshake,
    /// `tcp-request session` rules.
    Session,
    /// The frontend's content rules, then `use_backend`.
    FrontendContent,
    /// The chosen backend's content rules, then `use-server`.
    BackendContent,
    Done,
}

/// One connection's decisions. See the module documentation.
pub struct Session {
    gen: Arc<Generation>,
    frontend: usize,
    /// The connection's own peer and local addresses.
    peer: SocketAddr,
    local: SocketAddr,
    /// The addresses rules, logs and `balance source` see (a PROXY header's, when one came).
    src: SocketAddr,
    dst: SocketAddr,
    vars: Vars,
    phase: Phase,
    /// Bytes of PROXY header at the start of the buffer.
    consumed: usize,
    /// The authority TLV of the PROXY header, for `proxy-v2-options authority`.
    authority: Option<Vec<u8>>,
    /// The backend chosen by `use_backend`/`default_backend`.
    backend: Option<usize>,
    /// End of the current `inspect-delay` (HAProxy's `rules_exp`), set when a rule first waits.
    rules_deadline: Option<Instant>,
    /// End of the wait for a PROXY header (`timeout client` from accept).
    handshake_deadline: Option<Instant>,
    /// The values `capture` kept, by capture rule.
    captures: Vec<Option<Vec<u8>>>,
    /// End of `tcp-response inspect-delay`.
    response_deadline: Option<Instant>,
    /// Tracked stick-table entries and persistence (dropped with the session: `conn_cur`).
    sticky: Sticky,
    /// The client's TLS handshake, on a TLS bind (set before the first `feed`).
    tls: Option<Box<crate::tls::Facts>>,
}

/// The hooks of the rules engine for one session.
struct SessHooks<'a> {
    expect_proxy: bool,
    captures: &'a mut Vec<Option<Vec<u8>>>,
    sticky: &'a Sticky,
    gen: &'a Generation,
    /// The proxy whose table a rule without `table` uses.
    current: &'a str,
    /// Whether the session started (tracking then counts it at once).
    stream: bool,
}

impl Hooks for SessHooks<'_> {
    fn expect_proxy(&mut self) {
        self.expect_proxy = true;
    }

    fn capture(&mut self, index: usize, value: Option<Vec<u8>>) {
        if self.captures.len() <= index {
            self.captures.resize(index + 1, None);
        }
        self.captures[index] = value;
    }

    fn track(&mut self, t: &TrackSc, key: Option<Value>) {
        self.sticky
            .track(self.gen, self.current, t, key, self.stream);
    }

    fn inc_gpc(&mut self, slot: u8, dt: crate::stick::DataType, idx: usize) {
        self.sticky.inc_gpc(slot, dt, idx);
    }

    fn set_gpt(&mut self, slot: u8, dt: crate::stick::DataType, idx: usize, value: i64) {
        self.sticky.set_gpt(slot, dt, idx, value);
    }
}

impl Session {
    /// A connection just accepted by `frontend` of `gen`, from `peer` to `local`: runs the
    /// `tcp-request connection` rules. `Err` when one closes it.
    pub fn accept(
        gen: Arc<Generation>,
        frontend: usize,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Result<Session, Rejected> {
        let fe = &gen.config.frontends[frontend];
        let accept_proxy = bind_of(&gen, frontend, local).is_some_and(|b| fe.binds[b].accept_proxy);
        let mut s = Session {
            vars: Vars::new(gen.config.proc_vars.clone()),
            frontend,
            peer,
            local,
            src: peer,
            dst: local,
            phase: Phase::Session,
            consumed: 0,
            authority: None,
            backend: None,
            rules_deadline: None,
            handshake_deadline: None,
            captures: Vec::new(),
            response_deadline: None,
            sticky: Sticky::default(),
            tls: None,
            gen,
        };
        let (verdict, expect_proxy) = s.run_phase(Places::CONNECTION, &[], true, |r| &r.connection);
        match verdict {
            Verdict::Reject | Verdict::SilentDrop => {
                s.gen.fe_stats[frontend]
                    .denied_conn
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Rejected {
                    silent: verdict == Verdict::SilentDrop,
                    why: Why::Connection,
                });
            }
            _ => {}
        }
        if accept_proxy || expect_proxy {
            s.phase = Phase::Handshake;
            s.handshake_deadline = s.fe_timeout_client().map(|t| now + t);
        }
        Ok(s)
    }

    /// The client's bytes so far (`head`, from the first byte read), whether it closed its
    /// side, and the time: what to do next.
    pub fn feed(&mut self, head: &[u8], eof: bool, now: Instant) -> Step {
        loop {
            match self.phase {
                Phase::Handshake => {
                    if let Some(step) = self.handshake(head, eof, now) {
                        return step;
                    }
                }
                Phase::Session => {
                    let (verdict, _) = self.run_phase(Places::SESSION, &[], true, |r| &r.session);
                    if matches!(verdict, Verdict::Reject | Verdict::SilentDrop) {
                        self.gen.fe_stats[self.frontend]
                            .denied_sess
                            .fetch_add(1, Ordering::Relaxed);
                        return Self::reject(verdict, Why::Session);
                    }
                    let now = crate::rate::clock();
                    self.gen.fe_stats[self.frontend].sess_rate.add_at(now);
                    self.gen.process.sess_rate.add_at(now);
                    self.vars.start_stream();
                    self.sticky.session_started();
                    self.phase = Phase::FrontendContent;
                }
                Phase::FrontendContent => {
                    let rules = self.fe().rules.clone();
                    match self.content(&rules, head, eof, now) {
                        Verdict::Wait => return self.wait(),
                        v @ (Verdict::Reject | Verdict::SilentDrop) => {
                            return self.deny_request(v);
                        }
                        _ => {}
                    }
                    match self.switch(&rules, head) {
                        Some(b) => {
                            self.backend = Some(b);
                            self.phase = Phase::BackendContent;
                        }
                        None => {
                            return Step::Reject(Rejected {
                                silent: false,
                                why: Why::NoBackend,
                            })
                        }
                    }
                }
                Phase::BackendContent => {
                    let b = self.backend.unwrap_or_default();
                    let be_rules = self.gen.config.backends[b].rules.clone();
                    // A listen's own rules already ran as the frontend's.
                    if self.fe().own_backend != Some(b) {
                        match self.backend_content(&be_rules, head, eof, now) {
                            Verdict::Wait => return self.wait(),
                            v @ (Verdict::Reject | Verdict::SilentDrop) => {
                                return self.deny_request(v);
                            }
                            _ => {}
                        }
                    }
                    self.phase = Phase::Done;
                    let (server, persist) = self.use_server(&be_rules, head).unzip();
                    return Step::Route(Route {
                        backend: b,
                        server,
                        persist: persist.unwrap_or(false),
                        consumed: self.consumed,
                    });
                }
                Phase::Done => {
                    return Step::Route(Route {
                        backend: self.backend.unwrap_or_default(),
                        server: None,
                        persist: false,
                        consumed: self.consumed,
                    })
                }
            }
        }
    }

    /// The PROXY header phase; `None` once the header is read (the caller goes on).
    ///
    /// HAProxy decides on the first bytes it reads (it peeks, so it cannot wait for more once
    /// something came): a header that is not whole by then is truncated, and fewer than 16
    /// bytes that do not start a v1 line cannot be told from a short v2 header, so they are
    /// truncated too. Only a client that sends nothing at all is waited for.
    fn handshake(&mut self, head: &[u8], eof: bool, now: Instant) -> Option<Step> {
        let refused = |msg| {
            Some(Step::Reject(Rejected {
                silent: false,
                why: Why::Handshake(msg),
            }))
        };
        match proxy_proto::parse(head) {
            Parsed::Incomplete if !head.is_empty() => refused(PRX_TRUNCATED),
            Parsed::Refused(proxy_proto::Refused::NotHeader)
                if head.len() < proxy_proto::V2_HEADER =>
            {
                refused(PRX_TRUNCATED)
            }
            Parsed::Incomplete => {
                if eof {
                    return refused(PRX_EMPTY);
                }
                if self.handshake_deadline.is_some_and(|d| now >= d) {
                    return refused(PRX_TIMEOUT);
                }
                Some(Step::Wait {
                    until: self.handshake_deadline,
                })
            }
            Parsed::Refused(r) => refused(r.message()),
            Parsed::Header(h) => {
                self.consumed = h.len;
                if let Some((s, d)) = h.addrs {
                    self.src = s;
                    self.dst = d;
                }
                self.authority = h.authority;
                self.phase = Phase::Session;
                None
            }
        }
    }

    /// Runs `f` with the rules engine's view of this session at `at`: the inputs, the
    /// variables and the hooks. The one place they are put together.
    fn with_rules<R>(
        &mut self,
        at: At<'_>,
        f: impl FnOnce(&Inputs<'_>, &mut Vars, &mut SessHooks<'_>) -> R,
    ) -> R {
        // Field by field: the rules below borrow the captures and variables mutably.
        let env = GenEnv {
            gen: &self.gen,
            sticky: &self.sticky,
            frontend: self.frontend,
            backend: self.backend,
            captures: &[],
            tls: self.tls.as_deref(),
        };
        let inputs = Inputs {
            place: at.place,
            dir: at.dir,
            final_: at.final_,
            req: at.req,
            res: at.res,
            stream: at.place.intersects(Places::CONTENT),
            src: self.src,
            dst: self.dst,
            env: &env,
            bufsize: self.gen.config.global.bufsize,
        };
        let mut hooks = SessHooks {
            expect_proxy: false,
            captures: &mut self.captures,
            sticky: &self.sticky,
            gen: &self.gen,
            current: current_proxy(&self.gen, self.frontend, self.backend),
            stream: self.phase != Phase::Session && self.phase != Phase::Handshake,
        };
        f(&inputs, &mut self.vars, &mut hooks)
    }

    /// Runs one rule list (after the defaults' one, if any) at a place that never waits.
    fn run_phase(
        &mut self,
        place: Places,
        data: &[u8],
        final_: bool,
        list: impl Fn(&ProxyRules) -> &Vec<Rule>,
    ) -> (Verdict, bool) {
        let rules = self.fe().rules.clone();
        self.with_rules(At::request(place, final_, data), |inputs, vars, hooks| {
            let v = run_lists(&rules, true, list, inputs, vars, hooks);
            (v, hooks.expect_proxy)
        })
    }

    /// A content phase over `rules` (and their defaults', first): HAProxy's
    /// `tcp_inspect_request`. Final when the client closed, the buffer is full, there is no
    /// `inspect-delay` or it is over.
    fn content_with(
        &mut self,
        rules: &ProxyRules,
        run_defaults: bool,
        head: &[u8],
        eof: bool,
        now: Instant,
    ) -> Verdict {
        let data = &head[self.consumed.min(head.len())..];
        let limit = self.gen.config.global.inspect_limit();
        let delay = rules.inspect_delay;
        let expired = self.rules_deadline.is_some_and(|d| now >= d);
        let final_ = eof || data.len() >= limit || delay.is_none() || expired;
        let at = At::request(Places::REQUEST, final_, data);
        let v = self.with_rules(at, |inputs, vars, hooks| {
            run_lists(rules, run_defaults, |r| &r.content, inputs, vars, hooks)
        });
        if v == Verdict::Wait {
            // The delay counts from the first wait (HAProxy sets `rules_exp` there).
            if self.rules_deadline.is_none() {
                self.rules_deadline = delay.map(|d| now + d);
            }
        } else {
            self.rules_deadline = None;
        }
        v
    }

    fn content(&mut self, rules: &ProxyRules, head: &[u8], eof: bool, now: Instant) -> Verdict {
        self.content_with(rules, true, head, eof, now)
    }

    /// The backend's content rules; its defaults' rules run only when they are not the
    /// frontend's (HAProxy runs them once).
    fn backend_content(
        &mut self,
        rules: &ProxyRules,
        head: &[u8],
        eof: bool,
        now: Instant,
    ) -> Verdict {
        let fe_defaults = self.fe().rules.defaults.clone();
        let same = match (&fe_defaults, &rules.defaults) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.content_with(rules, !same, head, eof, now)
    }

    /// `use_backend` rules (final, as HAProxy evaluates them), then `default_backend`.
    fn switch(&mut self, rules: &ProxyRules, head: &[u8]) -> Option<usize> {
        let data = &head[self.consumed.min(head.len())..];
        let at = At::request(Places::REQUEST, true, data);
        let chosen = self.with_rules(at, |inputs, vars, hooks| {
            for sw in &rules.use_backend {
                let ctx = inputs.ctx(vars);
                let applies = sw
                    .cond
                    .as_ref()
                    .is_none_or(|c| c.applies(&rules.acls, &ctx) == Some(true));
                if !applies {
                    continue;
                }
                match &sw.target {
                    Target::Backend { index, .. } => return Some(*index),
                    Target::Dynamic(f) => {
                        let name = f.render(&ctx);
                        // HAProxy: a name that is no backend falls back to the default
                        // backend.
                        return hooks
                            .gen
                            .config
                            .backends
                            .iter()
                            .position(|b| b.name.as_bytes() == name.as_slice());
                    }
                }
            }
            None
        });
        chosen.or(self.fe().backend)
    }

    /// The server rules assign, in HAProxy's order: `use-server` (the first matching rule
    /// whose server is not DOWN, else the next rule; `process_server_rules`), `persist
    /// rdp-cookie` (the server the cookie names), `stick match|on` (the stored server), then
    /// `balance rdp-cookie`'s hash of the cookie; none: the balancing algorithm picks. With
    /// `option persist` or a `force-persist` rule that applies, a DOWN server or one in
    /// maintenance is taken too (`persist rdp-cookie` follows `option persist` only): the
    /// server, and whether a DOWN one may be taken.
    fn use_server(&mut self, rules: &ProxyRules, head: &[u8]) -> Option<(usize, bool)> {
        let b = self.backend?;
        let conf = &self.gen.config.backends[b];
        if rules.use_server.is_empty()
            && rules.stick.is_empty()
            && conf.rdp_cookie_persist.is_none()
            && conf.balance_rdp_cookie.is_none()
        {
            return None;
        }
        let data = &head[self.consumed.min(head.len())..];
        let at = At::request(Places::REQUEST, true, data);
        self.with_rules(at, |inputs, vars, hooks| {
            let snap = hooks.gen.backends[b].snapshot();
            let conf = &hooks.gen.config.backends[b];
            let persist = conf.persist || {
                let ctx = inputs.ctx(vars);
                rules
                    .force_persist
                    .iter()
                    .any(|c| c.applies(&rules.acls, &ctx) == Some(true))
            };
            for u in &rules.use_server {
                let ctx = inputs.ctx(vars);
                if u.cond
                    .as_ref()
                    .is_some_and(|c| c.applies(&rules.acls, &ctx) != Some(true))
                {
                    continue;
                }
                let Some(e) = snap.servers.get(u.server) else {
                    continue;
                };
                if e.state.takes_assignment(persist) {
                    return Some((u.server, persist));
                }
            }
            let by_cookie = conf
                .rdp_cookie_persist
                .as_deref()
                .and_then(|name| crate::acl::fetch::rdp_cookie_in(data, name))
                .and_then(|v| rdp::server(&snap.servers, v, conf.persist));
            let ctx = inputs.ctx(vars);
            // Run for their stores even when the cookie decided.
            let stuck =
                hooks
                    .sticky
                    .match_server(hooks.gen, b, (&rules.stick, &rules.acls), &ctx, persist);
            match by_cookie {
                Some(s) => Some((s, conf.persist)),
                None => stuck.map(|s| (s, persist)).or_else(|| {
                    // `balance rdp-cookie`: the server the cookie hashes to, taken as a
                    // `use-server` target would be (without one: the round-robin turn).
                    let name = conf.balance_rdp_cookie.as_deref()?;
                    let v = crate::acl::fetch::rdp_cookie_in(data, name)?;
                    snap.rdp_cookie_target(v).map(|s| (s, false))
                }),
            }
        })
    }

    /// Whether the chosen backend has `tcp-response content` rules.
    pub fn has_response_rules(&self) -> bool {
        self.backend.is_some_and(|b| {
            let r = &self.gen.config.backends[b].rules;
            !r.response.is_empty()
                || r.defaults.as_ref().is_some_and(|d| !d.response.is_empty())
                || r.stick
                    .iter()
                    .any(|s| s.kind == crate::rules::StickKind::StoreResponse)
        })
    }

    /// The server's first bytes so far (`res`), whether it closed, and the time: what the
    /// backend's `tcp-response content` rules say (HAProxy's `tcp_inspect_response`). Without
    /// `tcp-response inspect-delay` they decide at once on what is there.
    pub fn feed_response(&mut self, res: &[u8], eof: bool, now: Instant) -> ResponseStep {
        let Some(b) = self.backend else {
            return ResponseStep::Accept;
        };
        let rules = self.gen.config.backends[b].rules.clone();
        let delay = rules.response_inspect_delay;
        let limit = self.gen.config.global.inspect_limit();
        let expired = self.response_deadline.is_some_and(|d| now >= d);
        let final_ = eof || res.len() >= limit || delay.is_none() || expired;
        let at = At {
            place: Places::RESPONSE,
            dir: Dir::Response,
            final_,
            req: &[],
            res,
        };
        let v = self.with_rules(at, |inputs, vars, hooks| {
            let v = run_lists(&rules, true, |r| &r.response, inputs, vars, hooks);
            if matches!(v, Verdict::Accept | Verdict::Continue) {
                let ctx = inputs.ctx(vars);
                hooks
                    .sticky
                    .store_response(hooks.gen, &rules.stick, &rules.acls, &ctx);
            }
            v
        });
        match v {
            Verdict::Wait => {
                if self.response_deadline.is_none() {
                    self.response_deadline = delay.map(|d| now + d);
                }
                ResponseStep::Wait {
                    until: self.response_deadline,
                }
            }
            Verdict::Reject | Verdict::SilentDrop => {
                self.gen.fe_stats[self.frontend]
                    .denied_resp
                    .fetch_add(1, Ordering::Relaxed);
                self.gen.be_stats[b]
                    .denied_resp
                    .fetch_add(1, Ordering::Relaxed);
                ResponseStep::Reject {
                    silent: v == Verdict::SilentDrop,
                }
            }
            Verdict::Close => ResponseStep::Close,
            Verdict::Accept | Verdict::Continue => ResponseStep::Accept,
        }
    }

    fn wait(&self) -> Step {
        Step::Wait {
            until: self.rules_deadline,
        }
    }

    fn reject(v: Verdict, why: Why) -> Step {
        Step::Reject(Rejected {
            silent: v == Verdict::SilentDrop,
            why,
        })
    }

    /// A content rule closed the connection: counted in the frontend's `dreq` (and, for a
    /// `silent-drop` once a backend was chosen, the backend's, as HAProxy).
    fn deny_request(&self, v: Verdict) -> Step {
        self.gen.fe_stats[self.frontend]
            .denied_req
            .fetch_add(1, Ordering::Relaxed);
        if let (Verdict::SilentDrop, Some(b)) = (v, self.backend) {
            self.gen.be_stats[b]
                .denied_req
                .fetch_add(1, Ordering::Relaxed);
        }
        Self::reject(v, Why::Content)
    }

    fn fe(&self) -> &crate::config::Frontend {
        &self.gen.config.frontends[self.frontend]
    }

    fn fe_timeout_client(&self) -> Option<Duration> {
        self.fe().timeouts.client
    }

    /// The connection reached server `index` of its backend, named `name` (the thread's
    /// shared copy): `stick on|store-request` rules record it.
    pub fn server_chosen(&mut self, index: usize, name: &Arc<str>) {
        let Some(b) = self.backend else {
            return;
        };
        if let Some(s) = self.gen.config.backends[b].servers.get(index) {
            self.sticky.server_chosen(s.id, name);
        }
    }

    /// Whether the session is still read when its flow ends: it tracks stick-table entries
    /// (their byte counters, `conn_cur` until then), or the log `format` evaluates `%[...]`
    /// expressions on it. Otherwise what the log line needs of it can be noted when the flow
    /// starts, and the session let go then (an idle flow holds less).
    pub fn needed_at_end(&self, format: Option<&LogFormat>) -> bool {
        self.sticky.tracks() || format.is_some_and(LogFormat::has_samples)
    }

    /// The flow ended with these bytes (client to server, server to client): the tracked
    /// entries' `bytes_*` counters.
    pub fn flow_bytes(&self, bytes_in: u64, bytes_out: u64) {
        self.sticky.flow_bytes(bytes_in, bytes_out);
    }

    /// The client address every later step sees: the PROXY header's, when one came.
    pub fn src(&self) -> SocketAddr {
        self.src
    }

    /// The destination address the client asked for (the PROXY header's, when one came).
    pub fn dst(&self) -> SocketAddr {
        self.dst
    }

    /// The connection's own peer, before any PROXY header.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's own local address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The backend chosen so far (for the log line of a rejected request: HAProxy names the
    /// frontend until a backend is chosen).
    pub fn backend(&self) -> Option<usize> {
        self.backend
    }

    /// The authority TLV of the client's PROXY header.
    pub fn authority(&self) -> Option<&[u8]> {
        self.authority.as_deref()
    }

    /// What `tcp-request content capture` rules kept, by rule. In `mode tcp` HAProxy shows
    /// them only through a custom `log-format` (`%hr`, `%[capture.req.hdr(N)]`).
    pub fn captures(&self) -> &[Option<Vec<u8>>] {
        &self.captures
    }

    /// The values of a log-format's `%[...]` expressions at the session's end (HAProxy
    /// evaluates them when it logs: final, no buffer left, captures readable).
    pub fn log_samples(&self, format: &LogFormat) -> Vec<Option<Vec<u8>>> {
        let env = self.env(&self.captures);
        let ctx = self.final_ctx(&env, (Places::RESPONSE, Dir::Response), &[]);
        format
            .samples()
            .map(|e| e.first(&ctx).map(|v| v.to_text()))
            .collect()
    }

    /// What the sample fetches read of this session's generation and state; `captures`: the
    /// capture slots readable (none while the rules that fill them run).
    fn env<'a>(&'a self, captures: &'a [Option<Vec<u8>>]) -> GenEnv<'a> {
        GenEnv {
            gen: &self.gen,
            frontend: self.frontend,
            backend: self.backend,
            captures,
            sticky: &self.sticky,
            tls: self.tls.as_deref(),
        }
    }

    /// A final evaluation context outside the rules (a log line, a server's `sni`): nothing
    /// more will come, `req` is what was read from the client, no response buffer.
    fn final_ctx<'a>(
        &'a self,
        env: &'a GenEnv<'a>,
        (place, dir): (Places, Dir),
        req: &'a [u8],
    ) -> Ctx<'a> {
        Ctx {
            place,
            dir,
            final_: true,
            req,
            res: &[],
            stream: true,
            src: self.src,
            dst: self.dst,
            vars: &self.vars,
            env,
            bufsize: self.gen.config.global.bufsize,
        }
    }

    /// A server's `sni EXPR` at its connect, as HAProxy evaluates it on the stream (the
    /// request's direction, final): `req` is what was read from the client. An empty value
    /// sends no SNI.
    pub fn server_sni(&self, expr: &crate::acl::SampleExpr, req: &[u8]) -> Option<String> {
        let env = self.env(&self.captures);
        let ctx = self.final_ctx(&env, (Places::REQUEST, Dir::Request), req);
        let v = expr.first(&ctx)?.to_text();
        (!v.is_empty()).then(|| String::from_utf8_lossy(&v).into_owned())
    }

    /// The bytes to have read at most before each decision: the PROXY header and the
    /// inspection buffer (`tune.bufsize` less `tune.maxrewrite`).
    pub fn read_limit(&self) -> usize {
        match self.phase {
            Phase::Handshake => self.gen.config.global.bufsize,
            _ => self.consumed + self.gen.config.global.inspect_limit(),
        }
    }

    /// Whether it waits for a PROXY header.
    pub fn in_handshake(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// Whether the stream exists: the PROXY header (if any) and the session rules passed.
    pub fn stream_started(&self) -> bool {
        matches!(
            self.phase,
            Phase::FrontendContent | Phase::BackendContent | Phase::Done
        )
    }

    /// Bytes of PROXY header at the start of the buffer.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Notes what the client's TLS handshake settled, for the `ssl_fc*` fetches: before the
    /// first [`Session::feed`].
    pub fn set_tls(&mut self, facts: crate::tls::Facts) {
        self.tls = Some(Box::new(facts));
    }

    /// The client's TLS handshake, on a TLS bind.
    pub fn tls(&self) -> Option<&crate::tls::Facts> {
        self.tls.as_deref()
    }

    pub fn frontend_name(&self) -> &str {
        &self.fe().name
    }
}

/// The bind of `frontend` a connection to `local` came through (for `accept-proxy` and the
/// listener's name in logs): the exact address, else a wildcard address on that port.
pub fn bind_of(gen: &Generation, frontend: usize, local: SocketAddr) -> Option<usize> {
    let binds = &gen.config.frontends[frontend].binds;
    binds.iter().position(|b| b.addr == local).or_else(|| {
        binds
            .iter()
            .position(|b| b.addr.port() == local.port() && b.addr.ip().is_unspecified())
    })
}

/// The proxy whose stick table is the default: the backend once chosen, else the frontend.
fn current_proxy(gen: &Generation, frontend: usize, backend: Option<usize>) -> &str {
    match backend {
        Some(b) => &gen.config.backends[b].name,
        None => &gen.config.frontends[frontend].name,
    }
}

/// Where a rules evaluation runs and on which bytes (see [`Session::with_rules`]).
#[derive(Clone, Copy)]
struct At<'a> {
    place: Places,
    dir: Dir,
    final_: bool,
    req: &'a [u8],
    res: &'a [u8],
}

impl<'a> At<'a> {
    /// On the client's bytes.
    fn request(place: Places, final_: bool, req: &'a [u8]) -> Self {
        Self {
            place,
            dir: Dir::Request,
            final_,
            req,
            res: &[],
        }
    }
}

/// Runs `list` of the defaults' rules (when `defaults` and there are some), then of `rules`
/// unless the first decided: HAProxy runs a `defaults` section's rules before a proxy's own.
fn run_lists(
    rules: &ProxyRules,
    defaults: bool,
    list: impl Fn(&ProxyRules) -> &Vec<Rule>,
    inputs: &Inputs<'_>,
    vars: &mut Vars,
    hooks: &mut SessHooks<'_>,
) -> Verdict {
    let mut v = Verdict::Continue;
    if let Some(d) = rules.defaults.as_ref().filter(|_| defaults) {
        v = rules::run(list(d), &d.acls, inputs, vars, hooks);
    }
    if v == Verdict::Continue {
        v = rules::run(list(rules), &rules.acls, inputs, vars, hooks);
    }
    v
}
