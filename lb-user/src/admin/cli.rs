//! Runtime API commands in HAProxy 2.6's words and formats: [`parse`] turns a command's words
//! into a typed [`Command`] (pure: no state, fuzzed), [`Session::run`] checks the level and
//! executes it; every server change goes through the state writer.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::CliLevel;
use crate::generation::Generation;
use crate::state::{self, By, Change, ForcedHealth};
use crate::stats::{self, csv, now_secs, start_secs};
use crate::table::AdminState;

use super::help::help;

/// HAProxy's answer to a command above the connection's level.
pub const PERMISSION_DENIED: &str = "Permission denied\n";

/// `backend/server` as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRef {
    pub backend: String,
    pub server: String,
}

/// What `set server B/S ...` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOp {
    State(AdminState),
    Health(ForcedHealth),
    Agent(bool),
    AgentSend(Vec<u8>),
    /// `weight W[%]` (validated against the server when run).
    Weight(String),
    Addr {
        ip: IpAddr,
        port: Option<u16>,
    },
    /// `check-addr A [port P]`, `check-port P` (`agent`: `agent-addr`, `agent-port`): the
    /// words, read when run (after the check's state, as HAProxy's).
    Place {
        agent: bool,
        addr: Option<String>,
        port: Option<String>,
    },
    /// `fqdn NAME` (empty: none given; checked when run, after the level and the server,
    /// as HAProxy's).
    Fqdn(String),
}

/// One runtime API command, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help(Option<String>),
    Prompt,
    Quit,
    User,
    Operator,
    ShowInfo,
    ShowBackend,
    /// `shutdown session ID` (`show sess`'s id; `None`: none given or unreadable).
    ShutdownSession(Option<u64>),
    /// `show stat` and its words.
    ShowStat(Vec<String>),
    ShowServersState(Option<String>),
    /// `show resolvers [SECTION]` (the name looked up when run).
    ShowResolvers(Option<String>),
    ShowSess,
    /// `show table [NAME ...]`.
    ShowTable(Option<super::table::TableQuery>),
    /// `clear table NAME ...`.
    ClearTable(super::table::TableQuery),
    /// `set table NAME key K [data.T V]*`: the words after `set table`, read when run.
    SetTable(Vec<String>),
    /// `clear counters [all]` (`all`: the totals too, at level admin).
    ClearCounters {
        all: bool,
    },
    GetWeight(ServerRef),
    /// `set maxconn server B/S N` (the value checked when run, as HAProxy's).
    SetMaxconn(ServerRef, String),
    /// `set maxconn frontend NAME N` (the name looked up when run; `None`: no value).
    SetFrontendMaxconn(String, Option<i64>),
    /// `set maxconn global N` (`None`: no value).
    SetGlobalMaxconn(Option<i64>),
    /// `show cli level`.
    ShowCliLevel,
    /// `show env [NAME]`.
    ShowEnv(Option<String>),
    /// `show version`.
    ShowVersion,
    /// `set timeout [cli] DELAY` (the words after `set timeout`, checked when run).
    SetTimeout(Vec<String>),
    /// `set rate-limit connections|sessions global N` (`None`: no value; the setting is
    /// checked when run, as HAProxy's).
    SetRateLimit(Vec<String>, Option<i64>),
    SetServer(ServerRef, ServerOp),
    /// `enable|disable server B/S`.
    ServerEnabled(ServerRef, bool),
    /// `enable|disable agent B/S`.
    AgentEnabled(ServerRef, bool),
    /// `enable|disable health B/S`.
    HealthEnabled(ServerRef, bool),
    ShutdownSessions(ServerRef),
    /// `show|get|add|del|set|clear acl|map ...` (any level, as HAProxy's).
    Patterns(super::patterns::PatCommand),
    /// `disable|enable|shutdown frontend NAME` (the name looked up when run; empty: none).
    Frontend(super::frontend::FrontendOp, String),
    /// Anything else: the help, filtered by this word.
    Unknown(String),
}

/// The level a command needs, from its words alone (the one home of the rule): HAProxy checks
/// a session's level before it reads the command's arguments, so a session below it gets
/// "Permission denied" for words that would not parse too. Words of no command (the help)
/// and `show|get|add|del|set|clear acl|map` need no level. `clear|set table` check theirs
/// when run, after the table and the key, as HAProxy's (see [`super::table::clear`]).
pub fn level(w: &[&str]) -> CliLevel {
    match w {
        ["show", "sess" | "env", ..] => CliLevel::Operator,
        ["clear", "counters", rest @ ..] => {
            if rest.first() == Some(&"all") {
                CliLevel::Admin
            } else {
                CliLevel::Operator
            }
        }
        ["set", "server" | "weight" | "rate-limit", ..]
        | ["set", "maxconn", "server" | "frontend" | "global", ..]
        | ["enable" | "disable", "server" | "agent" | "health" | "frontend", ..]
        | ["shutdown", "session" | "frontend", ..]
        | ["shutdown", "sessions", "server", ..] => CliLevel::Admin,
        _ => CliLevel::User,
    }
}

fn server_ref(arg: Option<&&str>) -> Result<ServerRef, String> {
    let Some((b, s)) = arg.and_then(|a| a.split_once('/')) else {
        return Err("Require 'backend/server'.\n".to_owned());
    };
    Ok(ServerRef {
        backend: b.to_owned(),
        server: s.to_owned(),
    })
}

/// Parses one command's words (HAProxy's grammar and error messages). Pure: no state is read.
pub fn parse(w: &[&str]) -> Result<Command, String> {
    parse_with_payload(w, None)
}

/// [`parse`], with the payload that followed a command ending in `<<` (only `add map` reads
/// one; the others ignore it, as HAProxy's).
pub fn parse_with_payload(w: &[&str], payload: Option<&str>) -> Result<Command, String> {
    Ok(match w {
        ["help", rest @ ..] => Command::Help((!rest.is_empty()).then(|| rest.join(" "))),
        ["prompt", ..] => Command::Prompt,
        ["quit", ..] => Command::Quit,
        ["user"] => Command::User,
        ["operator"] => Command::Operator,
        ["show", "info", ..] => Command::ShowInfo,
        ["show", "backend", ..] => Command::ShowBackend,
        ["show", "cli", "level", ..] => Command::ShowCliLevel,
        ["show", "env", rest @ ..] => Command::ShowEnv(rest.first().map(|v| (*v).to_owned())),
        ["show", "version", ..] => Command::ShowVersion,
        ["set", "timeout", rest @ ..] => {
            Command::SetTimeout(rest.iter().map(|w| (*w).to_owned()).collect())
        }
        ["shutdown", "session", rest @ ..] => {
            Command::ShutdownSession(rest.first().and_then(|id| session_id(id)))
        }
        ["show", "stat", rest @ ..] => {
            Command::ShowStat(rest.iter().map(|s| (*s).to_owned()).collect())
        }
        ["show", "servers", "state", rest @ ..] => {
            Command::ShowServersState(rest.first().map(|s| (*s).to_owned()))
        }
        ["show", "resolvers", rest @ ..] => {
            Command::ShowResolvers(rest.first().map(|s| (*s).to_owned()))
        }
        ["show", "sess", ..] => Command::ShowSess,
        [verb @ ("show" | "get" | "add" | "del" | "clear"), kind @ ("acl" | "map"), rest @ ..]
        | [verb @ "set", kind @ "map", rest @ ..] => {
            Command::Patterns(super::patterns::parse(verb, kind, rest, payload)?)
        }
        ["show", "table"] => Command::ShowTable(None),
        ["show", "table", t, rest @ ..] => {
            Command::ShowTable(Some(super::table::parse(t, rest, false)?))
        }
        ["clear", "table", t, rest @ ..] => {
            Command::ClearTable(super::table::parse(t, rest, true)?)
        }
        ["set", "table", rest @ ..] => {
            Command::SetTable(rest.iter().map(|w| (*w).to_owned()).collect())
        }
        ["clear", "counters", rest @ ..] => Command::ClearCounters {
            all: rest.first() == Some(&"all"),
        },
        ["clear", "table"] => {
            return Err(
                "Required arguments: <table> \"data.<store_data_type>\" <operator> \
                        <value> or <table> key <key> or <table> ptr <ptr>\n"
                    .to_owned(),
            )
        }
        ["get", "weight", rest @ ..] => Command::GetWeight(server_ref(rest.first())?),
        ["set", "weight", rest @ ..] => {
            let target = server_ref(rest.first())?;
            let Some(wt) = rest.get(1) else {
                return Err("Require <weight>.\n".to_owned());
            };
            Command::SetServer(target, ServerOp::Weight((*wt).to_owned()))
        }
        ["set", "maxconn", "frontend", rest @ ..] => Command::SetFrontendMaxconn(
            rest.first().copied().unwrap_or_default().to_owned(),
            rest.get(1).map(|v| atoi(v)),
        ),
        ["set", "maxconn", "global", rest @ ..] => {
            Command::SetGlobalMaxconn(rest.first().map(|v| atoi(v)))
        }
        ["set", "rate-limit", rest @ ..] => Command::SetRateLimit(
            rest.iter().take(2).map(|w| (*w).to_owned()).collect(),
            rest.get(2).map(|v| atoi(v)),
        ),
        ["set", "maxconn", "server", rest @ ..] => Command::SetMaxconn(
            server_ref(rest.first())?,
            rest.get(1).copied().unwrap_or_default().to_owned(),
        ),
        ["set", "server", rest @ ..] => {
            let target = server_ref(rest.first())?;
            Command::SetServer(target, server_op(&rest[1..])?)
        }
        ["enable" | "disable", what @ ("server" | "agent" | "health"), rest @ ..] => {
            let target = server_ref(rest.first())?;
            let on = w[0] == "enable";
            match *what {
                "server" => Command::ServerEnabled(target, on),
                "agent" => Command::AgentEnabled(target, on),
                _ => Command::HealthEnabled(target, on),
            }
        }
        ["shutdown", "sessions", "server", rest @ ..] => {
            Command::ShutdownSessions(server_ref(rest.first())?)
        }
        [verb @ ("disable" | "enable" | "shutdown"), "frontend", rest @ ..] => {
            super::frontend::command(verb, rest)
        }
        _ => Command::Unknown(w.first().copied().unwrap_or_default().to_owned()),
    })
}

/// C's `atoi`, which HAProxy reads these numbers with: leading blanks, a sign, the digits up
/// to the first other character; 0 when there are none (saturating instead of overflowing).
fn atoi(w: &str) -> i64 {
    let t = w.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let v = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |v, d| {
            v.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -v
    } else {
        v
    }
}

/// A session id as HAProxy's `strtoul(.., 0)` reads it (`0x` hexadecimal, else decimal);
/// 0 is none.
fn session_id(w: &str) -> Option<u64> {
    let id = match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => w.parse().ok()?,
    };
    (id != 0).then_some(id)
}

/// The words after `set server B/S`.
fn server_op(w: &[&str]) -> Result<ServerOp, String> {
    const USAGE: &str = "usage: set server <backend>/<server> addr | agent | agent-addr | \
                         agent-port | agent-send | check-addr | check-port | fqdn | health | \
                         state | weight\n";
    Ok(match w {
        [what @ ("check-addr" | "agent-addr")] => {
            return Err(format!(
                "set server <b>/<s> {what} requires an address and optionally a port.\n"
            ))
        }
        [what @ ("check-port" | "agent-port")] => {
            return Err(format!("set server <b>/<s> {what} requires a port.\n"))
        }
        [what @ ("check-addr" | "agent-addr"), addr, rest @ ..] => ServerOp::Place {
            agent: *what == "agent-addr",
            addr: Some((*addr).to_owned()),
            // HAProxy reads a port only from `port P` right after the address.
            port: match rest {
                ["port", p, ..] => Some((*p).to_owned()),
                ["port"] => Some(String::new()),
                _ => None,
            },
        },
        [what @ ("check-port" | "agent-port"), port, ..] => ServerOp::Place {
            agent: *what == "agent-port",
            addr: None,
            port: Some((*port).to_owned()),
        },
        ["state", st, ..] => ServerOp::State(match *st {
            "ready" => AdminState::Ready,
            "drain" => AdminState::Drain,
            "maint" => AdminState::Maint,
            _ => {
                return Err(
                    "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n".to_owned(),
                )
            }
        }),
        ["health", h, ..] => ServerOp::Health(match *h {
            "up" => ForcedHealth::Up,
            "stopping" => ForcedHealth::Stopping,
            "down" => ForcedHealth::Down,
            _ => {
                return Err(
                    "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n".to_owned(),
                )
            }
        }),
        ["agent", h, ..] => match *h {
            "up" | "down" => ServerOp::Agent(*h == "up"),
            _ => return Err("'set server <srv> agent' expects 'up' or 'down'.\n".to_owned()),
        },
        ["agent-send", text] => ServerOp::AgentSend(text.as_bytes().to_vec()),
        ["agent-send", ..] => {
            return Err(
                "'set server <srv> agent-send' expects a string (without spaces).\n".to_owned(),
            )
        }
        ["weight", wt, ..] => ServerOp::Weight((*wt).to_owned()),
        ["fqdn", rest @ ..] => ServerOp::Fqdn(rest.first().copied().unwrap_or_default().to_owned()),
        ["addr", ip, more @ ..] => {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Err(format!("Invalid addr '{ip}'.\n"));
            };
            let port = match more {
                [] => None,
                ["port", p] => Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("Invalid port '{p}'.\n"))?,
                ),
                _ => {
                    return Err("'set server <srv> addr' expects <addr> [port <port>].\n".to_owned())
                }
            };
            ServerOp::Addr { ip, port }
        }
        _ => return Err(USAGE.to_owned()),
    })
}

/// The state of one runtime API connection.
#[derive(Debug)]
pub struct Session {
    /// Current level (`user`/`operator` lower it).
    pub level: CliLevel,
    /// `prompt` was given: keep the connection and print `> ` after each answer.
    pub interactive: bool,
    /// `quit` was given.
    pub quit: bool,
    /// `set timeout cli`: how long the session waits for each line (else `stats timeout`).
    pub timeout: Option<Duration>,
}

/// `B/S` → indices, or HAProxy's message.
fn find(gen: &Generation, r: &ServerRef) -> Result<(usize, usize), String> {
    stats::find_server(gen, &r.backend, &r.server).map_err(|e| format!("{e}\n"))
}

impl Session {
    /// A new connection at `level`.
    pub fn new(level: CliLevel) -> Self {
        Self {
            level,
            interactive: false,
            quit: false,
            timeout: None,
        }
    }

    /// Runs one input line (commands separated by `;`), returning the whole answer; each
    /// command's answer ends with an empty line, as HAProxy's do. `payload`: what followed a
    /// line ending in `<<`, for its last command.
    pub async fn run_line(
        &mut self,
        gen: &Arc<Generation>,
        line: &str,
        payload: Option<&str>,
    ) -> String {
        let mut out = String::new();
        let cmds: Vec<&str> = line.split(';').collect();
        for (i, cmd) in cmds.iter().enumerate() {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let payload = payload.filter(|_| i + 1 == cmds.len());
            let mut answer = if self.level < level(&words) {
                PERMISSION_DENIED.to_owned()
            } else {
                match parse_with_payload(&words, payload) {
                    Ok(c) => self.run(gen, c).await,
                    Err(e) => e,
                }
            };
            if self.quit {
                return out;
            }
            if !answer.is_empty() && !answer.ends_with('\n') {
                answer.push('\n');
            }
            out.push_str(&answer);
            out.push('\n');
        }
        if out.is_empty() && !self.interactive {
            out.push_str(&help(self.level, None));
            out.push('\n');
        }
        out
    }

    /// Runs one parsed command (the session's level was checked against its words, see
    /// [`level`]).
    async fn run(&mut self, gen: &Arc<Generation>, c: Command) -> String {
        match self.execute(gen, c).await {
            Ok(s) | Err(s) => s,
        }
    }

    async fn execute(&mut self, gen: &Arc<Generation>, cmd: Command) -> Result<String, String> {
        match cmd {
            Command::Help(filter) => Ok(help(self.level, filter.as_deref())),
            Command::Prompt => {
                self.interactive = !self.interactive;
                Ok(String::new())
            }
            Command::Quit => {
                self.quit = true;
                Ok(String::new())
            }
            Command::User => {
                self.level = CliLevel::User;
                Ok(String::new())
            }
            Command::Operator => {
                if self.level < CliLevel::Operator {
                    return Err(PERMISSION_DENIED.to_owned());
                }
                self.level = CliLevel::Operator;
                Ok(String::new())
            }
            Command::ShowInfo => Ok(super::process::show_info(gen)),
            Command::ShowCliLevel => Ok(format!("{}\n", self.level.name())),
            Command::ShowEnv(name) => super::process::show_env(name.as_deref()),
            Command::ShowVersion => Ok(format!("{}\n", env!("CARGO_PKG_VERSION"))),
            Command::SetTimeout(words) => {
                self.timeout = Some(parse_cli_timeout(&words)?);
                Ok(String::new())
            }
            Command::ShowBackend => {
                let mut out = "# name\n".to_owned();
                for b in &gen.config.backends {
                    let _ = writeln!(out, "{}", b.name);
                }
                Ok(out)
            }
            Command::ShutdownSession(id) => {
                let Some(id) = id else {
                    return Err("Session pointer expected (use 'show sess').\n".to_owned());
                };
                if gen.process.flows.kill_one(id).await {
                    Ok(String::new())
                } else {
                    Err("No such session (use 'show sess').\n".to_owned())
                }
            }
            Command::ShowStat(words) => Ok(show_stat(gen, &words)),
            Command::ShowServersState(only) => {
                if let Some(b) = &only {
                    if gen.backend(b).is_none() {
                        return Err("Can't find backend.\n".to_owned());
                    }
                }
                Ok(state::file::render(
                    gen,
                    only.as_deref(),
                    now_secs(),
                    start_secs(gen),
                ))
            }
            Command::ShowResolvers(only) => super::resolvers::show(&gen.resolvers, only.as_deref()),
            Command::ShowSess => Ok(show_sess(gen).await),
            Command::ShowTable(q) => super::table::show(gen, q.as_ref(), self.level),
            Command::Patterns(c) => super::patterns::run(&gen.config.pat_refs, &c),
            Command::ClearTable(q) => super::table::clear(gen, &q, self.level),
            Command::SetTable(words) => {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                super::table::set(gen, &words, self.level)
            }
            Command::ClearCounters { all } => {
                for c in gen.fe_stats.iter().chain(&gen.be_stats) {
                    c.clear(all);
                }
                for t in &gen.backends {
                    t.clear_counters(all);
                }
                gen.process.conn_rate.clear_max();
                gen.process.sess_rate.clear_max();
                Ok(String::new())
            }
            Command::GetWeight(target) => {
                let (b, s) = find(gen, &target)?;
                let entry = &gen.backends[b].snapshot().servers[s];
                Ok(format!(
                    "{} (initial {})\n",
                    entry.state.weight, entry.conf.weight
                ))
            }
            Command::SetServer(target, op) => {
                let (b, s) = find(gen, &target)?;
                set_server(gen, b, s, op)
            }
            Command::SetFrontendMaxconn(name, value) => {
                super::process::set_frontend_maxconn(gen, &name, value)
            }
            Command::SetGlobalMaxconn(value) => super::process::set_global_maxconn(gen, value),
            Command::SetRateLimit(setting, value) => {
                super::process::set_rate_limit(gen, &setting, value)
            }
            Command::SetMaxconn(target, value) => {
                find(gen, &target)?;
                let m = crate::server::parse_maxconn(&value).map_err(|e| format!("{e}\n"))?;
                change(gen, &target, Change::Maxconn(m))
            }
            Command::ServerEnabled(target, on) => {
                let state = if on {
                    AdminState::Ready
                } else {
                    AdminState::Maint
                };
                change(gen, &target, Change::Admin(state))
            }
            Command::AgentEnabled(target, on) => change(gen, &target, Change::AgentEnabled(on)),
            Command::HealthEnabled(target, on) => change(gen, &target, Change::CheckEnabled(on)),
            Command::ShutdownSessions(target) => {
                let (b, s) = find(gen, &target)?;
                let uid = gen.backends[b].snapshot().servers[s].counters.uid;
                gen.process
                    .flows
                    .kill(&[uid], crate::flows::KillReason::Admin);
                Ok(String::new())
            }
            Command::Frontend(op, name) => super::frontend::run(gen, op, &name),
            Command::Unknown(word) => Err(help(self.level, Some(&word))),
        }
    }
}

/// `set timeout cli DELAY`, HAProxy's `cli_parse_set_timeout`: whole seconds by default, at
/// least one.
fn parse_cli_timeout(words: &[String]) -> Result<Duration, String> {
    if words.first().map(String::as_str) != Some("cli") {
        return Err("'set timeout' only supports 'cli'.\n".to_owned());
    }
    let Some(delay) = words.get(1) else {
        return Err("Expects an integer value.\n".to_owned());
    };
    match crate::config::parse_time(delay, crate::config::TimeUnit::S) {
        Ok(t) if t.as_secs() >= 1 => Ok(Duration::from_secs(t.as_secs())),
        _ => Err("Invalid timeout value.\n".to_owned()),
    }
}

/// Applies one change to `r` for the runtime API: an empty answer, or the error.
fn change(gen: &Arc<Generation>, r: &ServerRef, c: Change) -> Result<String, String> {
    let (b, s) = find(gen, r)?;
    state::apply(gen, b, s, c, &By::Cli)
        .map(|_| String::new())
        .map_err(|e| format!("{e}\n"))
}

fn set_server(gen: &Arc<Generation>, b: usize, s: usize, op: ServerOp) -> Result<String, String> {
    let apply = |c: Change| state::apply(gen, b, s, c, &By::Cli).map_err(|e| format!("{e}\n"));
    match op {
        ServerOp::State(a) => apply(Change::Admin(a)).map(|_| String::new()),
        ServerOp::Health(h) => apply(Change::ForceHealth(h)).map(|_| String::new()),
        ServerOp::Agent(up) => apply(Change::AgentHealth(up)).map(|_| String::new()),
        ServerOp::AgentSend(text) => apply(Change::AgentSend(text)).map(|_| String::new()),
        ServerOp::Weight(arg) => {
            let initial = gen.backends[b].snapshot().servers[s].conf.weight;
            let w = state::parse_weight(&arg, initial).map_err(|e| format!("{e}\n"))?;
            apply(Change::Weight(w)).map(|_| String::new())
        }
        ServerOp::Addr { ip, port } => {
            let (old, new) = apply(Change::Addr { ip: Some(ip), port })?.addrs();
            Ok(addr_answer(old, new))
        }
        ServerOp::Place { agent, addr, port } => {
            let entry = &gen.backends[b].snapshot().servers[s];
            let change = state::place_change(
                (agent, addr.as_deref(), port.as_deref()),
                &entry.conf,
                &entry.state,
            )?;
            // HAProxy prints these messages without a final stop or new line; the new line
            // is added below, as to every answer.
            state::apply(gen, b, s, change, &By::Cli)
                .map(|_| String::new())
                .map_err(|e| e.to_string())
        }
        ServerOp::Fqdn(name) => super::fqdn::set(gen, b, s, &name),
    }
}

/// HAProxy's answer to `set server B/S addr`.
fn addr_answer(old: std::net::SocketAddr, new: std::net::SocketAddr) -> String {
    let mut msg = String::new();
    if old.ip() != new.ip() {
        let _ = write!(msg, "IP changed from '{}' to '{}'", old.ip(), new.ip());
    }
    if old.port() != new.port() {
        if !msg.is_empty() {
            msg.push_str(", ");
        }
        let _ = write!(
            msg,
            "port changed from '{}' to '{}'",
            old.port(),
            new.port()
        );
    }
    if msg.is_empty() {
        msg.push_str("no need to change the addr");
    } else {
        msg.push_str(" by 'stats socket command'");
    }
    msg.push('\n');
    msg
}

fn show_stat(gen: &Generation, args: &[String]) -> String {
    let mut rows = stats::rows(gen);
    let mut typed = false;
    let mut json = false;
    let mut nums = Vec::new();
    for a in args {
        match a.as_str() {
            "typed" => typed = true,
            "json" => json = true,
            "up" => rows.retain(|r| {
                r.kind != Some(stats::RowKind::Server)
                    || r.status.starts_with("UP")
                    || r.status == "no check"
            }),
            "no-maint" => rows.retain(|r| r.status != "MAINT"),
            n => {
                if let Ok(v) = n.parse::<i64>() {
                    nums.push(v);
                }
            }
        }
    }
    // `show stat <iid> <type> <sid>`: -1 = any proxy; type is a bit mask (1 fe, 2 be, 4 srv).
    if let [iid, ty, sid] = nums[..] {
        rows.retain(|r| {
            let bit = match r.kind {
                Some(stats::RowKind::Frontend) | None => 1,
                Some(stats::RowKind::Backend) => 2,
                Some(stats::RowKind::Server) => 4,
            };
            (iid < 0 || i64::from(r.iid) == iid)
                && (ty < 0 || ty & bit != 0)
                && (sid < 0 || r.kind != Some(stats::RowKind::Server) || i64::from(r.sid) == sid)
        });
    }
    if json {
        csv::render_json(&rows)
    } else if typed {
        csv::render_typed(&rows)
    } else {
        csv::render(&rows)
    }
}

async fn show_sess(gen: &Generation) -> String {
    let flows = gen.process.flows.list().await;
    let mut s = String::new();
    for f in flows {
        let proto = if f.client.is_ipv4() { "tcpv4" } else { "tcpv6" };
        let _ = writeln!(
            s,
            "0x{:x}: proto={proto} src={} fe={} be={} srv={} ts=00 epoch={} age={} calls=0 rate=0 cpu=0 lat=0 thread={}",
            f.session_id(),
            f.client,
            f.frontend_name,
            f.backend_name,
            f.server_name,
            f.generation,
            crate::stats::html::human_time(f.age.as_secs()),
            f.thread
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        use crate::state::parse_weight;
        assert_eq!(parse_weight("10", 3), Ok(10));
        assert_eq!(parse_weight("50%", 4), Ok(2));
        assert_eq!(parse_weight("200%", 3), Ok(6));
        assert!(parse_weight("257", 1).is_err());
        assert!(parse_weight("abc", 1).is_err());
        assert!(parse_weight("-1", 1).is_err());
        assert!(parse_weight("%", 1).is_err());
    }

    #[test]
    fn commands_parse_to_types() {
        let r = || ServerRef {
            backend: "be".into(),
            server: "s1".into(),
        };
        let p = |l: &str| parse(&l.split_whitespace().collect::<Vec<_>>());
        assert_eq!(
            p("set server be/s1 state maint"),
            Ok(Command::SetServer(r(), ServerOp::State(AdminState::Maint)))
        );
        assert_eq!(
            p("set server be/s1 addr 10.0.0.2 port 3307"),
            Ok(Command::SetServer(
                r(),
                ServerOp::Addr {
                    ip: "10.0.0.2".parse().unwrap(),
                    port: Some(3307)
                }
            ))
        );
        assert_eq!(p("show backend"), Ok(Command::ShowBackend));
        assert_eq!(p("show cli level"), Ok(Command::ShowCliLevel));
        assert_eq!(p("show env"), Ok(Command::ShowEnv(None)));
        assert_eq!(p("show env X"), Ok(Command::ShowEnv(Some("X".into()))));
        assert_eq!(level(&["show", "env"]), CliLevel::Operator);
        assert_eq!(p("show version"), Ok(Command::ShowVersion));
        let t =
            |w: &[&str]| parse_cli_timeout(&w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(t(&["cli", "90"]), Ok(Duration::from_secs(90)));
        assert_eq!(t(&["cli", "2m"]), Ok(Duration::from_mins(2)));
        assert_eq!(t(&["cli", "1500ms"]), Ok(Duration::from_secs(1)));
        assert_eq!(t(&["cli", "0"]), Err("Invalid timeout value.\n".into()));
        assert_eq!(t(&["cli", "x"]), Err("Invalid timeout value.\n".into()));
        assert_eq!(p("show resolvers"), Ok(Command::ShowResolvers(None)));
        assert_eq!(
            p("show resolvers dns extra"),
            Ok(Command::ShowResolvers(Some("dns".into())))
        );
        assert_eq!(level(&["show", "resolvers"]), CliLevel::User);
        assert_eq!(
            p("clear counters"),
            Ok(Command::ClearCounters { all: false })
        );
        assert_eq!(
            p("clear counters all"),
            Ok(Command::ClearCounters { all: true })
        );
        assert_eq!(level(&["clear", "counters", "x"]), CliLevel::Operator);
        assert_eq!(level(&["clear", "counters", "all"]), CliLevel::Admin);
        assert_eq!(
            p("set maxconn frontend fe 12abc"),
            Ok(Command::SetFrontendMaxconn("fe".into(), Some(12)))
        );
        assert_eq!(
            p("set maxconn frontend fe"),
            Ok(Command::SetFrontendMaxconn("fe".into(), None))
        );
        assert_eq!(
            p("set maxconn global -3"),
            Ok(Command::SetGlobalMaxconn(Some(-3)))
        );
        assert_eq!(
            p("set maxconn global x"),
            Ok(Command::SetGlobalMaxconn(Some(0)))
        );
        assert_eq!(p("set maxconn global"), Ok(Command::SetGlobalMaxconn(None)));
        assert_eq!(
            p("shutdown session 0x100000000000d"),
            Ok(Command::ShutdownSession(Some(0x1_0000_0000_000d)))
        );
        assert_eq!(
            p("shutdown session 12"),
            Ok(Command::ShutdownSession(Some(12)))
        );
        for bad in [
            "shutdown session",
            "shutdown session 0",
            "shutdown session 0xzz",
        ] {
            assert_eq!(p(bad), Ok(Command::ShutdownSession(None)), "{bad}");
        }
        assert_eq!(
            p("set maxconn server be/s1 30"),
            Ok(Command::SetMaxconn(r(), "30".into()))
        );
        assert_eq!(
            p("set maxconn server be/s1"),
            Ok(Command::SetMaxconn(r(), String::new()))
        );
        assert!(p("set maxconn server nobackslash 3").is_err());
        assert_eq!(
            p("set weight be/s1 50%"),
            Ok(Command::SetServer(r(), ServerOp::Weight("50%".into())))
        );
        assert_eq!(
            p("disable health be/s1"),
            Ok(Command::HealthEnabled(r(), false))
        );
        assert_eq!(
            p("set server be/s1 addr 10.0.0.2 port 0"),
            Err("Invalid port '0'.\n".to_owned())
        );
        assert_eq!(
            p("set server be/s1 health sideways"),
            Err("'set server <srv> health' expects 'up', 'stopping', or 'down'.\n".to_owned())
        );
        assert_eq!(
            p("set server nobackslash state ready"),
            Err("Require 'backend/server'.\n".to_owned())
        );
        assert_eq!(p("frobnicate"), Ok(Command::Unknown("frobnicate".into())));
        assert_eq!(level(&["show", "sess"]), CliLevel::Operator);
    }
}
