//! `acl`, `tcp-request`, `tcp-response`, `use_backend` and `use-server` lines: each rule's action
//! is an entry of [`ACTIONS`] (where it is allowed, how its arguments are read), its condition
//! goes to the proxy's ACL table ([`crate::acl`]). HAProxy's checks come along: rules in
//! anonymous `defaults` sections, misplaced rules, conditions whose fetches can't answer where
//! the rule runs.
#![expect(
    clippy::unnecessary_wraps,
    reason = "every action parser has the table's signature; some cannot fail"
)]

use std::sync::Arc;

use super::super::lex::Line;
use super::super::scalar::{parse_time, TimeUnit};
use super::proxy::{Kind, ProxyDraft};
use super::suggest::suggest;
use super::{arity, Parser};
use crate::acl::expr::{NameFormat, Ref};
use crate::acl::{ConfigLoader, Places, SampleExpr, VarName};
use crate::rules::{Action, Rule, Switch, Target, TrackSc, UseServer};

/// The rule lists, as bits (where an action is allowed).
const CONN: u8 = 1;
const SESS: u8 = 2;
const CONT: u8 = 4;
const RESP: u8 = 8;
const REQ_ALL: u8 = CONN | SESS | CONT;
const ALL: u8 = CONN | SESS | CONT | RESP;

/// Which list a rule line goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    Connection,
    Session,
    Content,
    Response,
}

impl List {
    fn bit(self) -> u8 {
        match self {
            List::Connection => CONN,
            List::Session => SESS,
            List::Content => CONT,
            List::Response => RESP,
        }
    }

    fn place(self) -> Places {
        match self {
            List::Connection => Places::CONNECTION,
            List::Session => Places::SESSION,
            List::Content => Places::REQUEST,
            List::Response => Places::RESPONSE,
        }
    }
}

/// What reading an action gave.
struct Parsed {
    /// `None`: accepted but not kept (warned about).
    action: Option<Action>,
    /// Words used after the action word.
    used: usize,
}

/// Reads an action: its word (with any `(...)`) and the words after it.
type ActionFn = fn(&mut ActCtx<'_>, &str, &[String]) -> Result<Parsed, String>;

/// What an action parser may use.
struct ActCtx<'a> {
    warnings: &'a mut Vec<String>,
    /// The configuration's files and pattern references.
    loader: &'a ConfigLoader,
    /// `tcp-request content`, ... for messages.
    rule: &'a str,
}

/// One action keyword.
struct ActionKw {
    /// The word, without any `(...)` part.
    name: &'static str,
    /// The lists it may appear in.
    lists: u8,
    parse: ActionFn,
}

const fn act(name: &'static str, lists: u8, parse: ActionFn) -> ActionKw {
    ActionKw { name, lists, parse }
}

/// Every action lb knows. The order is the order of "did you mean" candidates.
const ACTIONS: &[ActionKw] = &[
    act("accept", ALL, |_, _, _| simple(Action::Accept)),
    act("reject", ALL, |_, _, _| simple(Action::Reject)),
    act("close", RESP, |_, _, _| simple(Action::Close)),
    act("silent-drop", ALL, |_, _, _| simple(Action::SilentDrop)),
    act("set-var", ALL, set_var),
    act("unset-var", ALL, unset_var),
    act("expect-proxy", CONN, expect_proxy),
    act("capture", CONT, capture),
    act("track-sc0", REQ_ALL, track_sc),
    act("track-sc1", REQ_ALL, track_sc),
    act("track-sc2", REQ_ALL, track_sc),
    act("sc-inc-gpc0", ALL, stick_counter),
    act("sc-inc-gpc1", ALL, stick_counter),
    act("sc-inc-gpc", ALL, stick_counter),
    act("sc-add-gpc", ALL, stick_counter),
    act("sc-set-gpt0", ALL, stick_counter),
    act("sc-set-gpt", ALL, stick_counter),
    act("set-var-fmt", ALL, not_yet),
    act("expect-netscaler-cip", CONN, not_yet),
    act("set-src", REQ_ALL, not_yet),
    act("set-src-port", REQ_ALL, not_yet),
    act("set-dst", REQ_ALL, not_yet),
    act("set-dst-port", REQ_ALL, not_yet),
    act("set-tos", ALL, not_yet),
    act("set-mark", ALL, not_yet),
    act("set-nice", CONT | RESP, not_yet),
    act("set-log-level", CONT | RESP, not_yet),
    act("set-priority-class", CONT, not_yet),
    act("set-priority-offset", CONT, not_yet),
    act("set-bandwidth-limit", CONT | RESP, not_yet),
    act("set-fc-mark", REQ_ALL, not_yet),
    act("set-fc-tos", REQ_ALL, not_yet),
    act("do-resolve", CONT, not_yet),
    act("send-spoe-group", CONT | RESP, not_yet),
    act("use-service", CONT, not_yet),
    act("switch-mode", CONT, not_yet),
    act("attach-srv", SESS, not_yet),
];

fn simple(a: Action) -> Result<Parsed, String> {
    Ok(Parsed {
        action: Some(a),
        used: 0,
    })
}

/// Words up to `if`/`unless` (what an action we don't act on takes).
fn until_cond(rest: &[String]) -> usize {
    rest.iter()
        .position(|w| w == "if" || w == "unless")
        .unwrap_or(rest.len())
}

fn not_yet(c: &mut ActCtx<'_>, word: &str, rest: &[String]) -> Result<Parsed, String> {
    c.warnings.push(format!(
        "'{} {word}' is not supported yet; the rule is ignored",
        c.rule
    ));
    Ok(Parsed {
        action: None,
        used: until_cond(rest),
    })
}

/// `(NAME)` of `set-var(NAME)` / `unset-var(NAME)`.
fn var_name(word: &str) -> Result<VarName, String> {
    let (kw, inner) = word
        .split_once('(')
        .ok_or_else(|| format!("'{word}': expects '{word}(<var-name>)'"))?;
    let inner = inner
        .strip_suffix(')')
        .ok_or_else(|| format!("incomplete argument after '{kw}': expects '{kw}(<var-name>)'"))?;
    if inner.contains(',') {
        return Err(format!(
            "'{word}': conditions after the variable name (ifexists, ifgt, ...) are not \
             supported yet"
        ));
    }
    VarName::parse(inner)
}

fn set_var(c: &mut ActCtx<'_>, word: &str, rest: &[String]) -> Result<Parsed, String> {
    let name = var_name(word)?;
    if rest.first().is_none_or(|w| w == "if" || w == "unless") {
        return Err(format!("'{word}': expects a sample expression"));
    }
    let (expr, used, w) = SampleExpr::parse_words(rest, true, c.loader)
        .map_err(|e| format!("'{} {word}': {e}", c.rule))?;
    c.warnings.extend(w);
    Ok(Parsed {
        action: Some(Action::SetVar(name, expr)),
        used,
    })
}

fn unset_var(_: &mut ActCtx<'_>, word: &str, _: &[String]) -> Result<Parsed, String> {
    Ok(Parsed {
        action: Some(Action::UnsetVar(var_name(word)?)),
        used: 0,
    })
}

fn expect_proxy(_: &mut ActCtx<'_>, _: &str, rest: &[String]) -> Result<Parsed, String> {
    if rest.first().map(String::as_str) != Some("layer4") {
        return Err("'expect-proxy' expects 'layer4'".to_owned());
    }
    Ok(Parsed {
        action: Some(Action::ExpectProxy),
        used: 1,
    })
}

/// `capture SAMPLE len N`.
fn capture(c: &mut ActCtx<'_>, _: &str, rest: &[String]) -> Result<Parsed, String> {
    if rest.is_empty() {
        return Err("'capture' expects a sample expression and 'len <length>'".to_owned());
    }
    let (expr, used, w) = SampleExpr::parse_words(rest, true, c.loader)
        .map_err(|e| format!("'{} capture': {e}", c.rule))?;
    c.warnings.extend(w);
    if rest.get(used).map(String::as_str) != Some("len") {
        return Err("'capture' expects 'len <length>' after the sample expression".to_owned());
    }
    let len = rest
        .get(used + 1)
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .ok_or_else(|| "'capture len' expects a positive length".to_owned())?;
    Ok(Parsed {
        action: Some(Action::Capture(expr, len)),
        used: used + 2,
    })
}

/// `track-scN KEY [table TABLE]` (the table defaults to the proxy's own, set at load).
fn track_sc(c: &mut ActCtx<'_>, word: &str, rest: &[String]) -> Result<Parsed, String> {
    let slot = word[word.len() - 1..].parse::<u8>().unwrap_or(0);
    if rest
        .first()
        .is_none_or(|w| w == "if" || w == "unless" || w == "table")
    {
        return Err(format!(
            "'{word}' expects a sample expression (the key to track)"
        ));
    }
    let (key, mut used, w) = SampleExpr::parse_words(rest, true, c.loader)
        .map_err(|e| format!("'{} {word}': {e}", c.rule))?;
    c.warnings.extend(w);
    let mut table = None;
    if rest.get(used).map(String::as_str) == Some("table") {
        let t = rest
            .get(used + 1)
            .ok_or_else(|| format!("'{word} ... table' expects a table name"))?;
        table = Some(t.clone());
        used += 2;
    }
    Ok(Parsed {
        action: Some(Action::Track(TrackSc { slot, key, table })),
        used,
    })
}

/// `sc-inc-gpc0(N)`, `sc-inc-gpc1(N)`, `sc-inc-gpc(I,N)`, `sc-set-gpt0(N) VALUE`,
/// `sc-set-gpt(I,N) VALUE` (the keyword read by [`super::stick::counter_action`]);
/// `sc-add-gpc` (HAProxy 2.7) is accepted and does nothing.
fn stick_counter(c: &mut ActCtx<'_>, word: &str, rest: &[String]) -> Result<Parsed, String> {
    if word.starts_with("sc-add-gpc") {
        c.warnings.push(format!(
            "'{} {word}' is not supported yet (HAProxy 2.7's sc-add-gpc); the rule does \
             nothing",
            c.rule
        ));
        return Ok(Parsed {
            action: Some(Action::Inert),
            used: until_cond(rest),
        });
    }
    let (slot, dt, idx) = super::stick::counter_action(word)?;
    if !word.starts_with("sc-set-gpt") {
        return Ok(Parsed {
            action: Some(Action::IncGpc { slot, dt, idx }),
            used: 0,
        });
    }
    let Some(first) = rest.first().filter(|w| *w != "if" && *w != "unless") else {
        return Err(format!(
            "'{word}' expects an integer or a sample expression"
        ));
    };
    let words = if first.parse::<i64>().is_ok() {
        vec![format!("int({first})")]
    } else {
        rest.to_vec()
    };
    let (value, used, w) = SampleExpr::parse_words(&words, true, c.loader)
        .map_err(|e| format!("'{} {word}': {e}", c.rule))?;
    c.warnings.extend(w);
    let used = if first.parse::<i64>().is_ok() {
        1
    } else {
        used
    };
    Ok(Parsed {
        action: Some(Action::SetGpt {
            slot,
            dt,
            idx,
            value,
        }),
        used,
    })
}

impl Parser {
    /// Whether rule keyword `kw` may be written in this section (not in anonymous defaults).
    fn rules_allowed(&mut self, px: &ProxyDraft, line: &Line, kw: &str) -> bool {
        if px.kind == Kind::Defaults && px.name.is_empty() {
            self.diag.err(
                &line.loc,
                format!(
                    "'{kw}' is not allowed in anonymous 'defaults' sections (name the section)"
                ),
            );
            return false;
        }
        true
    }
}

/// `acl NAME CRITERION [FLAGS] [OPERATOR] [PATTERNS]`.
pub(super) fn acl(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !arity(&mut p.diag, line, 1, 2, usize::MAX) || !p.rules_allowed(px, line, "acl") {
        return;
    }
    if line.words[1].eq_ignore_ascii_case("or") {
        p.diag.err(
            &line.loc,
            "acl name 'or' will never match: 'or' is used to express a logical disjunction within \
             a condition",
        );
        return;
    }
    match px.rules.acls.add_line(&line.words[1..], &p.loader) {
        Ok((w, refs)) => {
            for w in w {
                p.diag
                    .warn(&line.loc, format!("acl '{}': {w}", line.words[1]));
            }
            p.note_refs(px, line, refs);
            px.rules.source.push(line.words.join(" "));
        }
        Err(e) => p
            .diag
            .err(&line.loc, format!("acl '{}': {e}", line.words[1])),
    }
}

/// `tcp-request connection|session|content ACTION [COND]`, `tcp-request inspect-delay T`.
pub(super) fn tcp_request(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    rule_line(p, px, line, true);
}

/// `tcp-response content ACTION [COND]`, `tcp-response inspect-delay T`.
pub(super) fn tcp_response(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    rule_line(p, px, line, false);
}

fn rule_line(p: &mut Parser, px: &mut ProxyDraft, line: &Line, request: bool) {
    let w = &line.words;
    let kw = w[0].as_str();
    if !arity(&mut p.diag, line, 1, 1, usize::MAX) || !p.rules_allowed(px, line, kw) {
        return;
    }
    let sub = w[1].as_str();
    let list = match (request, sub) {
        (_, "inspect-delay") => {
            inspect_delay(p, px, line, request);
            return;
        }
        (true, "connection") => List::Connection,
        (true, "session") => List::Session,
        (_, "content") => {
            if request {
                List::Content
            } else {
                List::Response
            }
        }
        _ => {
            let expected = if request {
                "'inspect-delay', 'connection', 'session' or 'content'"
            } else {
                "'inspect-delay' or 'content'"
            };
            p.diag.err(
                &line.loc,
                format!("'{kw}' expects {expected} (got '{sub}')"),
            );
            return;
        }
    };
    let rule_name = format!("{kw} {sub}");
    if matches!(list, List::Connection | List::Session) && !px.kind.fe() {
        p.diag.err(
            &line.loc,
            format!(
                "'{rule_name}' is not allowed because {} is not a frontend",
                px.ctx()
            ),
        );
        return;
    }
    if list == List::Response && !px.kind.be() {
        p.diag.warn(
            &line.loc,
            format!(
                "'{rule_name}' ignored because {} has no backend capability",
                px.ctx()
            ),
        );
        return;
    }
    let Some(word) = w.get(2) else {
        p.diag
            .err(&line.loc, format!("'{rule_name}' expects an action"));
        return;
    };
    let action_name = &word[..word.find('(').unwrap_or(word.len())];
    let Some(kwd) = ACTIONS.iter().find(|a| a.name == action_name) else {
        let known: Vec<&str> = ACTIONS
            .iter()
            .filter(|a| a.lists & list.bit() != 0)
            .map(|a| a.name)
            .collect();
        let more = if action_name.starts_with("lua.") {
            " (Lua is not supported)".to_owned()
        } else {
            suggest(action_name, &known)
        };
        p.diag.err(
            &line.loc,
            format!("'{rule_name}': unknown action '{word}'{more}"),
        );
        return;
    };
    if kwd.lists & list.bit() == 0 {
        p.diag.err(
            &line.loc,
            format!("'{rule_name}': action '{action_name}' is not allowed here"),
        );
        return;
    }
    let mut warnings = Vec::new();
    let parsed = (kwd.parse)(
        &mut ActCtx {
            warnings: &mut warnings,
            loader: &p.loader,
            rule: &rule_name,
        },
        word,
        &w[3..],
    );
    for m in std::mem::take(&mut warnings) {
        p.diag.warn(&line.loc, m);
    }
    let parsed = match parsed {
        Ok(x) => x,
        Err(e) => {
            p.diag.err(&line.loc, e);
            return;
        }
    };
    let Some(cond) = condition(p, px, line, &rule_name, &w[3 + parsed.used..], list.place()) else {
        return;
    };
    let Some(action) = parsed.action else {
        return;
    };
    let refs = match &action {
        Action::SetVar(_, e) | Action::Capture(e, _) => e.refs(),
        Action::Track(t) => t.key.refs(),
        _ => Vec::new(),
    };
    p.note_refs(px, line, refs);
    misplaced(p, px, line, &rule_name, list);
    let rule = Rule {
        at: line.loc.to_string(),
        action,
        cond,
    };
    let r = &mut px.rules;
    r.source.push(w.join(" "));
    match list {
        List::Connection => r.connection.push(rule),
        List::Session => r.session.push(rule),
        List::Content => r.content.push(rule),
        List::Response => r.response.push(rule),
    }
}

/// Reads `if|unless ...` (or nothing). `None` when it is invalid (reported); `Some(None)` when
/// there is no condition.
#[expect(clippy::option_option, reason = "invalid / absent / present")]
pub(super) fn condition(
    p: &mut Parser,
    px: &mut ProxyDraft,
    line: &Line,
    rule_name: &str,
    rest: &[String],
    place: Places,
) -> Option<Option<crate::acl::Cond>> {
    let Some(first) = rest.first() else {
        return Some(None);
    };
    if first != "if" && first != "unless" {
        p.diag.err(
            &line.loc,
            format!("'{rule_name}' expects 'if', 'unless' or nothing after its action, but found '{first}'"),
        );
        return None;
    }
    let first_new = px.rules.acls.len();
    match px.rules.acls.parse_cond(rest, &p.loader) {
        Ok((cond, warnings)) => {
            for w in warnings {
                p.diag.warn(&line.loc, w);
            }
            let refs = px.rules.acls.refs_from(first_new);
            p.note_refs(px, line, refs);
            if let Some(m) = cond.conflict(&px.rules.acls, place, rule_name) {
                p.diag.warn(&line.loc, m);
            }
            Some(Some(cond))
        }
        Err(e) => {
            p.diag.err(
                &line.loc,
                format!("'{rule_name}': error detected while parsing condition: {e}"),
            );
            None
        }
    }
}

/// HAProxy's warnings for rules written after rules that run after them.
fn misplaced(p: &mut Parser, px: &ProxyDraft, line: &Line, rule_name: &str, list: List) {
    let r = &px.rules;
    let after: &[(&str, bool)] = match list {
        List::Connection => &[
            ("tcp-request session", !r.session.is_empty()),
            ("tcp-request content", !r.content.is_empty()),
            ("use_backend", !r.use_backend.is_empty()),
            ("use-server", !r.use_server.is_empty()),
        ],
        List::Session => &[
            ("tcp-request content", !r.content.is_empty()),
            ("use_backend", !r.use_backend.is_empty()),
            ("use-server", !r.use_server.is_empty()),
        ],
        List::Content => &[
            ("use_backend", !r.use_backend.is_empty()),
            ("use-server", !r.use_server.is_empty()),
        ],
        List::Response => &[],
    };
    if let Some((other, _)) = after.iter().find(|(_, seen)| *seen) {
        p.diag.warn(
            &line.loc,
            format!(
                "a '{rule_name}' rule placed after a '{other}' rule will still be processed before"
            ),
        );
    }
}

fn inspect_delay(p: &mut Parser, px: &mut ProxyDraft, line: &Line, request: bool) {
    let kw = format!("{} inspect-delay", line.words[0]);
    if !arity(&mut p.diag, line, 2, 1, 1) {
        return;
    }
    if !request && !px.kind.be() {
        p.diag.warn(
            &line.loc,
            format!(
                "'{kw}' ignored because {} has no backend capability",
                px.ctx()
            ),
        );
        return;
    }
    let t = match parse_time(&line.words[2], TimeUnit::Ms) {
        Ok(t) => t,
        Err(e) => {
            p.diag.err(&line.loc, format!("'{kw}': {e}"));
            return;
        }
    };
    let slot = if request {
        &mut px.rules.inspect_delay
    } else {
        &mut px.rules.response_inspect_delay
    };
    if slot.is_some() {
        p.diag.warn(
            &line.loc,
            format!("ignoring '{kw}' (was already defined) in {}", px.ctx()),
        );
        return;
    }
    // As in HAProxy, 0 means no delay: content rules decide on what is there at once.
    *slot = Some(t).filter(|t| !t.is_zero());
    px.rules.source.push(line.words.join(" "));
}

/// `use_backend NAME|FORMAT [if|unless COND]`.
pub(super) fn use_backend(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Backend || px.kind == Kind::Defaults {
        p.not_allowed(px, line, "use_backend");
        return;
    }
    if !arity(&mut p.diag, line, 1, 1, usize::MAX) {
        return;
    }
    px.use_backend_lines += 1;
    let name = &line.words[1];
    let target = match NameFormat::parse(name, &p.loader) {
        Ok(Some((f, warnings))) => {
            for w in warnings {
                p.diag.warn(&line.loc, w);
            }
            let refs = f.exprs().flat_map(SampleExpr::refs).collect();
            p.note_refs(px, line, refs);
            Target::Dynamic(f)
        }
        Ok(None) => Target::Backend {
            name: name.replace("%%", "%"),
            index: usize::MAX,
        },
        Err(e) => {
            p.diag.err(&line.loc, format!("'use_backend': {e}"));
            return;
        }
    };
    let Some(cond) = condition(
        p,
        px,
        line,
        "use_backend",
        &line.words[2..],
        Places::REQUEST,
    ) else {
        return;
    };
    px.rules.source.push(line.words.join(" "));
    px.switch_locs.push(line.loc.clone());
    px.rules.use_backend.push(Switch {
        at: line.loc.to_string(),
        target,
        cond,
    });
}

/// `use-server SERVER [if|unless COND]` (the server is found once the section is read).
pub(super) fn use_server(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Frontend || px.kind == Kind::Defaults {
        p.not_allowed(px, line, "use-server");
        return;
    }
    if !arity(&mut p.diag, line, 1, 1, usize::MAX) {
        return;
    }
    let Some(cond) = condition(p, px, line, "use-server", &line.words[2..], Places::REQUEST) else {
        return;
    };
    px.rules.source.push(line.words.join(" "));
    px.use_server_locs.push(line.loc.clone());
    px.rules.use_server.push(UseServer {
        at: line.loc.to_string(),
        name: line.words[1].clone(),
        server: usize::MAX,
        cond,
    });
}

/// `force-persist if|unless COND`: HAProxy's persist rule (backends; an error in `defaults`, a
/// warning in a frontend).
pub(super) fn force_persist(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let kw = "force-persist";
    if px.kind == Kind::Defaults {
        p.diag.err(
            &line.loc,
            format!("'{kw}' not allowed in 'defaults' section."),
        );
        return;
    }
    if !p.cap(px, line, kw, false, true) {
        return;
    }
    if !matches!(line.words.get(1).map(String::as_str), Some("if" | "unless")) {
        p.diag.err(
            &line.loc,
            format!("'{kw}' requires either 'if' or 'unless' followed by a condition."),
        );
        return;
    }
    let Some(Some(cond)) = condition(p, px, line, kw, &line.words[1..], Places::REQUEST) else {
        return;
    };
    px.rules.source.push(line.words.join(" "));
    px.rules.force_persist.push(cond);
}

impl Parser {
    /// Once a section is read: `use-server` names are found among its servers.
    pub(super) fn resolve_use_server(&mut self, px: &mut ProxyDraft) {
        let ctx = px.ctx();
        for (u, loc) in px.rules.use_server.iter_mut().zip(&px.use_server_locs) {
            match px.servers.iter().position(|(s, _)| s.name == u.name) {
                Some(i) => u.server = i,
                None => self.diag.err(
                    loc,
                    format!(
                        "{ctx}: unable to find server '{}' referenced in a 'use-server' rule",
                        u.name
                    ),
                ),
            }
        }
    }

    /// Remembers the backends and servers a line's expressions name, for [`Self::check_refs`].
    fn note_refs(&mut self, px: &ProxyDraft, line: &Line, refs: Vec<Ref>) {
        for r in refs {
            self.expr_refs.push(ExprRef {
                what: r,
                loc: line.loc.clone(),
                proxy: px.name.clone(),
            });
        }
    }

    /// Every backend and server named by an expression must exist (HAProxy resolves them at
    /// load); a server without a backend is one of the rule's own proxy's.
    pub(super) fn check_refs(
        &mut self,
        servers_of: &dyn Fn(&str) -> Option<Vec<String>>,
        is_frontend: &dyn Fn(&str) -> bool,
    ) {
        for r in std::mem::take(&mut self.expr_refs) {
            let msg = match &r.what {
                Ref::Backend(b) => servers_of(b)
                    .is_none()
                    .then(|| format!("no backend named '{b}' (named in an expression)")),
                Ref::Frontend(f) => (!is_frontend(f))
                    .then(|| format!("no frontend named '{f}' (named in an expression)")),
                Ref::Server(b, s) => {
                    let be = b.as_deref().unwrap_or(&r.proxy);
                    match servers_of(be) {
                        None if b.is_some() => {
                            Some(format!("no backend named '{be}' (named in an expression)"))
                        }
                        None => Some(format!(
                            "'{s}': a server without its backend ('backend/{s}') only works in \
                             a section with servers"
                        )),
                        Some(list) if !list.contains(s) => Some(format!(
                            "no server '{s}' in backend '{be}' (named in an expression)"
                        )),
                        Some(_) => None,
                    }
                }
            };
            if let Some(m) = msg {
                self.diag.err(&r.loc, m);
            }
        }
    }

    /// Checks what a defaults section with rules may initialise (HAProxy's rules), and returns
    /// the defaults' rules a proxy section runs before its own.
    pub(super) fn inherited_rules(
        &mut self,
        kind: Kind,
        h: &Line,
        from: Option<&Arc<crate::rules::ProxyRules>>,
    ) -> Option<Arc<crate::rules::ProxyRules>> {
        let d = from?;
        let has_l4_l5 = !d.connection.is_empty() || !d.session.is_empty();
        let has_any = has_l4_l5 || !d.content.is_empty() || !d.response.is_empty();
        if !has_any {
            return None;
        }
        let err = match kind {
            Kind::Defaults => {
                Some("a defaults section cannot inherit from a defaults section defining TCP rules")
            }
            Kind::Listen => {
                Some("a listen section cannot inherit from a defaults section defining TCP rules")
            }
            Kind::Backend if has_l4_l5 => Some(
                "a backend section cannot inherit from a defaults section defining 'tcp-request \
                 connection' or 'tcp-request session' rules",
            ),
            Kind::Frontend if !d.response.is_empty() => Some(
                "a frontend section cannot inherit from a defaults section defining \
                 'tcp-response content' rules",
            ),
            _ => None,
        };
        if let Some(e) = err {
            self.diag.err(&h.loc, e);
            return None;
        }
        Some(d.clone())
    }
}

/// A backend or server an expression names, and where.
#[derive(Debug)]
pub(super) struct ExprRef {
    what: Ref,
    loc: super::super::Loc,
    /// The proxy of the rule (for a server named without its backend).
    proxy: String,
}
