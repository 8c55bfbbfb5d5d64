//! The rules of one proxy as the configuration gives them: `tcp-request connection|session|
//! content`, `tcp-response content`, their `inspect-delay`s, `use_backend` and `use-server`, with
//! the proxy's ACLs; and [`run`], which evaluates one rule list the way HAProxy's
//! `tcp_exec_l4_rules`/`tcp_exec_l5_rules`/`tcp_inspect_request`/`tcp_inspect_response` do.
//! Pure: what a rule needs from the connection comes in [`Inputs`], what it does to it goes
//! through [`Hooks`].

use std::sync::Arc;
use std::time::Duration;

use crate::acl::expr::NameFormat;
use crate::acl::{AclTable, Cond, Ctx, Dir, Env, Places, SampleExpr, Value, VarName, Vars};
use crate::stick::DataType;

/// One rule: an action and its optional condition.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `FILE:LINE` of the rule, for messages.
    pub at: String,
    pub action: Action,
    pub cond: Option<Cond>,
}

/// What a rule does when its condition holds.
#[derive(Clone, Debug)]
pub enum Action {
    /// Stop evaluating this list: the connection goes on.
    Accept,
    /// Close the connection.
    Reject,
    /// `tcp-response content close`: close the server side now, let the flow end normally.
    Close,
    /// Close without telling the client (HAProxy's `TCP_REPAIR` trick, else a reset).
    SilentDrop,
    SetVar(VarName, SampleExpr),
    UnsetVar(VarName),
    /// `expect-proxy layer4`: read a PROXY header before the session rules.
    ExpectProxy,
    /// `capture SAMPLE len N`: keep the sample's text, at most `N` bytes, for this connection.
    Capture(SampleExpr, usize),
    /// `track-sc0..2 KEY [table T]`: handed to [`Hooks::track`].
    Track(TrackSc),
    /// `sc-inc-gpc0(N)`, `sc-inc-gpc1(N)`, `sc-inc-gpc(I,N)`: the entry slot `slot` tracks,
    /// counter `dt` (`Gpc0`, `Gpc1`, or element `idx` of the `Gpc` array).
    IncGpc {
        slot: u8,
        dt: DataType,
        idx: usize,
    },
    /// `sc-set-gpt0(N) VALUE`, `sc-set-gpt(I,N) VALUE` (`dt`: `Gpt0` or the `Gpt` array).
    SetGpt {
        slot: u8,
        dt: DataType,
        idx: usize,
        value: SampleExpr,
    },
    /// Parsed and accepted, but acts on nothing (`sc-add-gpc`); the configuration was warned
    /// about it.
    Inert,
}

/// `track-scN KEY [table TABLE]`.
#[derive(Clone, Debug)]
pub struct TrackSc {
    /// 0, 1 or 2.
    pub slot: u8,
    pub key: SampleExpr,
    /// `table NAME` (default: the proxy's own stick table).
    pub table: Option<String>,
}

/// `stick on|match|store-request|store-response PATTERN [table T] [if|unless COND]`: server
/// persistence through a stick table's `server_id`.
#[derive(Clone, Debug)]
pub struct StickRule {
    pub at: String,
    pub kind: StickKind,
    pub key: SampleExpr,
    /// The table (the backend's own unless `table` names another; resolved at load).
    pub table: String,
    pub cond: Option<Cond>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StickKind {
    /// `stick on`: match, then store the server the request went to.
    On,
    Match,
    StoreRequest,
    StoreResponse,
}

impl StickKind {
    /// Whether the rule looks a server up before balancing.
    pub fn matches(self) -> bool {
        matches!(self, StickKind::On | StickKind::Match)
    }

    /// Whether the rule records the server chosen for the request.
    pub fn stores_request(self) -> bool {
        matches!(self, StickKind::On | StickKind::StoreRequest)
    }
}

/// Where `use_backend` sends a connection.
#[derive(Clone, Debug)]
pub enum Target {
    /// A backend named in the configuration: its index in `Config::backends` (set once every
    /// section is read).
    Backend { name: String, index: usize },
    /// `%[expr]`: resolved by name for each connection; a name that matches no backend makes
    /// the rule fall through to `default_backend`, as HAProxy.
    Dynamic(NameFormat),
}

/// `use_backend TARGET [if|unless COND]`.
#[derive(Clone, Debug)]
pub struct Switch {
    pub at: String,
    pub target: Target,
    pub cond: Option<Cond>,
}

/// `use-server SERVER [if|unless COND]`: the server's index in its backend.
#[derive(Clone, Debug)]
pub struct UseServer {
    pub at: String,
    pub name: String,
    pub server: usize,
    pub cond: Option<Cond>,
}

/// Everything rule-related of one proxy section (a `listen` keeps its frontend and backend
/// rules here together, as HAProxy does for one proxy).
#[derive(Clone, Debug, Default)]
pub struct ProxyRules {
    /// The rules of the named `defaults` section the proxy was built from, when it has any:
    /// they run before the proxy's own, with their own ACLs (HAProxy's `defpx`).
    pub defaults: Option<Arc<ProxyRules>>,
    pub acls: AclTable,
    /// `tcp-request connection`.
    pub connection: Vec<Rule>,
    /// `tcp-request session`.
    pub session: Vec<Rule>,
    /// `tcp-request content`.
    pub content: Vec<Rule>,
    /// `tcp-request inspect-delay`: how long content rules may wait for bytes. `None` = they
    /// decide on what is there at once.
    pub inspect_delay: Option<Duration>,
    /// `tcp-response content`.
    pub response: Vec<Rule>,
    /// `tcp-response inspect-delay`.
    pub response_inspect_delay: Option<Duration>,
    pub use_backend: Vec<Switch>,
    pub use_server: Vec<UseServer>,
    /// `stick` rules (backends), in order.
    pub stick: Vec<StickRule>,
    /// `force-persist if|unless COND` (backends): when one applies, a connection `use-server`
    /// or `stick` assigns to a server goes there even when it is DOWN or in maintenance, as
    /// with `option persist` (HAProxy's `SF_FORCE_PRST`).
    pub force_persist: Vec<Cond>,
    /// The lines these rules were read from: two rule sets are equal when they were written the
    /// same (compiled expressions can't be compared).
    pub source: Vec<String>,
}

impl PartialEq for ProxyRules {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source && self.defaults == o.defaults
    }
}

impl Eq for ProxyRules {}

impl ProxyRules {
    /// The backends and servers named by ACLs and rule expressions (checked once every section
    /// is read).
    pub fn refs(&self) -> Vec<crate::acl::expr::Ref> {
        let mut refs = self.acls.refs();
        let lists = [
            &self.connection,
            &self.session,
            &self.content,
            &self.response,
        ];
        for rule in lists.into_iter().flatten() {
            match &rule.action {
                Action::SetVar(_, e) | Action::Capture(e, _) => refs.extend(e.refs()),
                Action::Track(t) => refs.extend(t.key.refs()),
                Action::SetGpt { value, .. } => refs.extend(value.refs()),
                _ => {}
            }
        }
        for s in &self.stick {
            refs.extend(s.key.refs());
        }
        for s in &self.use_backend {
            if let Target::Dynamic(f) = &s.target {
                refs.extend(f.exprs().flat_map(SampleExpr::refs));
            }
        }
        refs
    }
}

/// What a rule list decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule stopped the list: the next list (the proxy's own after its defaults') runs, and
    /// at the end HAProxy's default applies: accept.
    Continue,
    /// An `accept` rule matched: no further rule of this phase runs.
    Accept,
    Reject,
    SilentDrop,
    /// `close` (responses only).
    Close,
    /// A condition can't be decided on the bytes so far: evaluate again with more, or at the
    /// inspect-delay's end (final).
    Wait,
}

/// The side effects of rules that are not about variables.
pub trait Hooks {
    /// `expect-proxy layer4` matched.
    fn expect_proxy(&mut self);
    /// `capture` matched: the sample's text, cut to its length (`None`: no sample).
    fn capture(&mut self, index: usize, value: Option<Vec<u8>>);
    /// `track-scN` matched with this key.
    fn track(&mut self, t: &TrackSc, key: Option<Value>);
    /// `sc-inc-gpc0|1(slot)` / `sc-inc-gpc(idx,slot)` matched.
    fn inc_gpc(&mut self, slot: u8, dt: DataType, idx: usize);
    /// `sc-set-gpt0(slot) VALUE` / `sc-set-gpt(idx,slot) VALUE` matched.
    fn set_gpt(&mut self, slot: u8, dt: DataType, idx: usize, value: i64);
}

/// What rules read besides variables.
pub struct Inputs<'a> {
    pub place: Places,
    pub dir: Dir,
    pub final_: bool,
    pub req: &'a [u8],
    pub res: &'a [u8],
    pub stream: bool,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    pub env: &'a dyn Env,
    pub bufsize: usize,
}

impl Inputs<'_> {
    pub fn ctx<'b>(&'b self, vars: &'b Vars) -> Ctx<'b> {
        Ctx {
            place: self.place,
            dir: self.dir,
            final_: self.final_,
            req: self.req,
            res: self.res,
            stream: self.stream,
            src: self.src,
            dst: self.dst,
            vars,
            env: self.env,
            bufsize: self.bufsize,
        }
    }
}

/// Runs one rule list in order: the first matching accept/reject/silent-drop ends it; other
/// actions run and the list goes on; a condition that can't be decided yet makes the whole
/// list wait (and it starts again from its first rule next time, as in HAProxy).
pub fn run(
    rules: &[Rule],
    acls: &AclTable,
    inputs: &Inputs<'_>,
    vars: &mut Vars,
    hooks: &mut dyn Hooks,
) -> Verdict {
    let mut captures = 0;
    for rule in rules {
        let applies = match &rule.cond {
            None => Some(true),
            Some(c) => c.applies(acls, &inputs.ctx(vars)),
        };
        let is_capture = matches!(rule.action, Action::Capture(..));
        let index = captures;
        if is_capture {
            captures += 1;
        }
        match applies {
            None => return Verdict::Wait,
            Some(false) => continue,
            Some(true) => {}
        }
        match &rule.action {
            Action::Accept => return Verdict::Accept,
            Action::Reject => return Verdict::Reject,
            Action::Close => return Verdict::Close,
            Action::SilentDrop => return Verdict::SilentDrop,
            Action::SetVar(name, expr) => {
                if let Some(v) = expr.first(&inputs.ctx(vars)) {
                    vars.set(name, v);
                }
            }
            Action::UnsetVar(name) => vars.unset(name),
            Action::ExpectProxy => hooks.expect_proxy(),
            Action::Capture(expr, len) => {
                let v = expr.first(&inputs.ctx(vars)).map(|v| {
                    let mut t = v.to_text();
                    t.truncate(*len);
                    t
                });
                hooks.capture(index, v);
            }
            Action::Track(t) => {
                let key = t.key.first(&inputs.ctx(vars));
                hooks.track(t, key);
            }
            Action::IncGpc { slot, dt, idx } => hooks.inc_gpc(*slot, *dt, *idx),
            Action::SetGpt {
                slot,
                dt,
                idx,
                value,
            } => {
                if let Some(Value::Int(v)) = value
                    .first(&inputs.ctx(vars))
                    .and_then(|v| v.cast(crate::acl::Type::Int))
                {
                    hooks.set_gpt(*slot, *dt, *idx, v);
                }
            }
            Action::Inert => {}
        }
    }
    Verdict::Continue
}
