//! Runtime API commands: parsing, levels and answers in HAProxy 2.6's words and formats.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use crate::config::CliLevel;
use crate::listener::Shared;
use crate::stats::{self, csv, find_server, html::human_uptime, now_secs, start_secs};
use crate::table::{AdminState, MAX_WEIGHT};

/// HAProxy's answer to a command above the connection's level.
pub const PERMISSION_DENIED: &str = "Permission denied\n";

/// (usage, help, level needed). Listed by `help`, in HAProxy's wording.
const COMMANDS: &[(&str, &str, CliLevel)] = &[
    (
        "disable server (DEPRECATED)",
        "disable a server for maintenance (use 'set server' instead)",
        CliLevel::Admin,
    ),
    ("disable agent", "disable agent checks", CliLevel::Admin),
    ("enable agent", "enable agent checks", CliLevel::Admin),
    (
        "enable server  (DEPRECATED)",
        "enable a disabled server (use 'set server' instead)",
        CliLevel::Admin,
    ),
    (
        "get weight <bk>/<srv>",
        "report a server's current weight",
        CliLevel::User,
    ),
    (
        "operator",
        "lower the level of the current CLI session to operator",
        CliLevel::User,
    ),
    (
        "set server <bk>/<srv> [opts]",
        "change a server's state, weight, address or ssl",
        CliLevel::Admin,
    ),
    (
        "set weight <bk>/<srv>  (DEPRECATED)",
        "change a server's weight (use 'set server' instead)",
        CliLevel::Admin,
    ),
    (
        "show info [desc|json|typed|float]*",
        "report information about the running process",
        CliLevel::User,
    ),
    (
        "show servers state [<backend>]",
        "dump volatile server information (all or for a single backend)",
        CliLevel::User,
    ),
    (
        "show sess [id]",
        "report the list of current sessions or dump this exact session",
        CliLevel::Operator,
    ),
    (
        "show stat [desc|json|no-maint|typed|up]*",
        "report counters for each proxy and server",
        CliLevel::User,
    ),
    (
        "shutdown sessions server <bk>/<srv>",
        "kill sessions on a server",
        CliLevel::Admin,
    ),
    (
        "user",
        "lower the level of the current CLI session to user",
        CliLevel::User,
    ),
    (
        "help [<command>]",
        "list matching or all commands",
        CliLevel::User,
    ),
    (
        "prompt",
        "toggle interactive mode with prompt",
        CliLevel::User,
    ),
    ("quit", "disconnect", CliLevel::User),
];

/// The state of one runtime API connection.
#[derive(Debug)]
pub struct Session {
    /// Current level (`user`/`operator` lower it).
    pub level: CliLevel,
    /// `prompt` was given: keep the connection and print `> ` after each answer.
    pub interactive: bool,
    /// `quit` was given.
    pub quit: bool,
}

fn help(level: CliLevel, filter: Option<&str>) -> String {
    let mut s = String::new();
    let matching: Vec<_> = COMMANDS
        .iter()
        .filter(|(_, _, l)| *l <= level)
        .filter(|(u, _, _)| filter.is_none_or(|f| u.starts_with(f)))
        .collect();
    if filter.is_some() && !matching.is_empty() {
        s.push_str("Unknown command, but maybe one of the following ones is a better match:\n");
    } else {
        s.push_str("The following commands are valid at this level:\n");
    }
    let list = if matching.is_empty() {
        COMMANDS.iter().filter(|(_, _, l)| *l <= level).collect()
    } else {
        matching
    };
    for (u, h, _) in list {
        let _ = writeln!(s, "  {u:<40}: {h}");
    }
    s
}

/// `B/S` → indices, or HAProxy's message.
fn server_arg(shared: &Shared, arg: Option<&str>) -> Result<(usize, usize), String> {
    let Some((b, s)) = arg.and_then(|a| a.split_once('/')) else {
        return Err("Require 'backend/server'.\n".to_owned());
    };
    find_server(shared, b, s).map_err(|e| format!("{e}\n"))
}

/// Parses a weight (`W` or `W%`) against the server's configured weight.
pub fn parse_weight(arg: &str, initial: u32) -> Result<u32, &'static str> {
    if let Some(pct) = arg.strip_suffix('%') {
        let p: u64 = pct
            .parse()
            .map_err(|_| "Empty weight string empty or preceded by garbage")?;
        let w = u64::from(initial) * p / 100;
        if w > u64::from(MAX_WEIGHT) {
            return Err("Relative weight too large.");
        }
        Ok(w as u32)
    } else {
        let w: u32 = arg
            .parse()
            .map_err(|_| "Empty weight string empty or preceded by garbage")?;
        if w > MAX_WEIGHT {
            return Err("Absolute weight can only be between 0 and 256 inclusive.");
        }
        Ok(w)
    }
}

/// HAProxy's `HCHK_STATUS_*` number of a check result name (`show servers state`).
fn check_status_code(result: &str) -> u32 {
    match result {
        "INI" => 1,
        "START" => 2,
        "HANA" => 4,
        "SOCKERR" => 5,
        "L4OK" => 6,
        "L4TOUT" => 7,
        "L4CON" => 8,
        "L6OK" => 9,
        "L6TOUT" => 10,
        "L6RSP" => 11,
        "L7TOUT" => 12,
        "L7RSP" => 13,
        "L7OK" => 14,
        "L7OKC" => 15,
        "L7STS" => 16,
        "PROCERR" => 17,
        "PROCTOUT" => 18,
        "PROCOK" => 19,
        _ => 0,
    }
}

/// The header of `show servers state` (format version 1).
pub const SERVERS_STATE_HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

fn servers_state(shared: &Shared, only: Option<&str>) -> String {
    let ids = stats::proxy_ids(&shared.config);
    let mut s = SERVERS_STATE_HEADER.to_owned();
    let now = now_secs();
    let start = start_secs(shared);
    for (b, table) in shared.backends.iter().enumerate() {
        let be = &shared.config.backends[b];
        if only.is_some_and(|o| o != be.name) {
            continue;
        }
        let be_id = ids.get(&be.name).copied().unwrap_or(be.id);
        for e in &table.snapshot().servers {
            let check = e.counters.check.load();
            let op = if e.state.healthy { 2 } else { 0 };
            let admin = match e.state.admin {
                AdminState::Ready => 0,
                AdminState::Drain => 0x08,
                // Forced maintenance, plus "from configuration" for `disabled` servers.
                AdminState::Maint if e.conf.disabled => 0x05,
                AdminState::Maint => 0x01,
            };
            let last = e.counters.last_change.load(Ordering::Relaxed);
            let since = now.saturating_sub(if last == 0 { start } else { last });
            let (status, result, state) = if check.enabled {
                let r = check.result.as_str();
                let res = if r.is_empty() || r == "INI" {
                    0
                } else if matches!(r, "L4OK" | "L6OK" | "L7OK" | "PROCOK") {
                    3
                } else if r == "L7OKC" {
                    4
                } else {
                    2
                };
                (check_status_code(r), res, 6)
            } else {
                (1, 0, 0)
            };
            let health = if e.state.healthy { 2 } else { 0 };
            // HAProxy's CHK_ST_* bits: CONFIGURED 0x02, ENABLED 0x04, AGENT 0x10.
            let agent = &e.conf.health.agent;
            let agent_state = match (agent.enabled, e.agent_enabled()) {
                (false, _) => 0,
                (true, false) => 0x12,
                (true, true) => 0x16,
            };
            let agent_addr = agent
                .addr
                .filter(|_| agent.enabled)
                .map_or_else(|| "-".to_owned(), |a| a.to_string());
            let agent_port = agent.port.filter(|_| agent.enabled).unwrap_or(0);
            let _ = writeln!(
                s,
                "{be_id} {} {} {} {} {op} {admin} {} {} {since} {status} {result} {health} {state} {agent_state} 0 0 {} {} - 0 {} - {agent_addr} {agent_port}",
                be.name,
                e.conf.id,
                e.conf.name,
                e.conf.addr.ip(),
                e.state.weight,
                e.conf.weight,
                e.conf.fqdn.as_deref().unwrap_or("-"),
                e.conf.addr.port(),
                e.conf.check_port.unwrap_or(0),
            );
        }
    }
    s
}

fn show_info(shared: &Shared) -> String {
    let now = now_secs();
    let start = start_secs(shared);
    let up = now.saturating_sub(start);
    let threads = shared.config.global.nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let cum: u64 = shared
        .fe_stats
        .iter()
        .map(|f| f.total.load(Ordering::Relaxed))
        .sum();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    let v = env!("CARGO_PKG_VERSION");
    let mut s = String::new();
    for (k, val) in [
        ("Name", "lb".to_owned()),
        ("Version", v.to_owned()),
        ("Release_date", String::new()),
        ("Nbthread", threads.to_string()),
        ("Nbproc", "1".to_owned()),
        ("Process_num", "1".to_owned()),
        ("Pid", std::process::id().to_string()),
        ("Uptime", human_uptime(up)),
        ("Uptime_sec", up.to_string()),
        ("Memmax_MB", "0".to_owned()),
        ("Ulimit-n", lim.rlim_cur.to_string()),
        ("Maxsock", lim.rlim_cur.to_string()),
        ("Maxconn", shared.maxconn.to_string()),
        ("Hard_maxconn", shared.maxconn.to_string()),
        (
            "CurrConns",
            shared
                .fe_stats
                .iter()
                .map(|f| f.cur.load(Ordering::Relaxed))
                .sum::<u32>()
                .to_string(),
        ),
        ("CumConns", cum.to_string()),
        ("CumReq", "0".to_owned()),
        ("Stopping", "0".to_owned()),
        (
            "Listeners",
            shared
                .config
                .frontends
                .iter()
                .map(|f| f.binds.len())
                .sum::<usize>()
                .to_string(),
        ),
        ("Build info", v.to_owned()),
        ("Start_time_sec", start.to_string()),
    ] {
        let _ = writeln!(s, "{k}: {val}");
    }
    s
}

impl Session {
    /// A new connection at `level`.
    pub fn new(level: CliLevel) -> Self {
        Self {
            level,
            interactive: false,
            quit: false,
        }
    }

    /// Runs one input line (commands separated by `;`), returning the whole answer; each
    /// command's answer ends with an empty line, as HAProxy's do.
    pub async fn run_line(&mut self, shared: &Shared, line: &str) -> String {
        let mut out = String::new();
        for cmd in line.split(';') {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let mut answer = self.run(shared, &words).await;
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

    fn need(&self, level: CliLevel) -> Result<(), String> {
        if self.level >= level {
            Ok(())
        } else {
            Err(PERMISSION_DENIED.to_owned())
        }
    }

    /// Runs one command.
    pub async fn run(&mut self, shared: &Shared, w: &[&str]) -> String {
        match self.dispatch(shared, w).await {
            Ok(s) | Err(s) => s,
        }
    }

    async fn dispatch(&mut self, shared: &Shared, w: &[&str]) -> Result<String, String> {
        match w {
            ["help", rest @ ..] => Ok(help(
                self.level,
                (!rest.is_empty()).then(|| rest.join(" ")).as_deref(),
            )),
            ["prompt", ..] => {
                self.interactive = !self.interactive;
                Ok(String::new())
            }
            ["quit", ..] => {
                self.quit = true;
                Ok(String::new())
            }
            ["user"] => {
                self.level = CliLevel::User;
                Ok(String::new())
            }
            ["operator"] => {
                if self.level < CliLevel::Operator {
                    return Err(PERMISSION_DENIED.to_owned());
                }
                self.level = CliLevel::Operator;
                Ok(String::new())
            }
            ["show", "info", ..] => Ok(show_info(shared)),
            ["show", "stat", rest @ ..] => Ok(show_stat(shared, rest)),
            ["show", "servers", "state", rest @ ..] => {
                if let Some(b) = rest.first() {
                    if !shared.config.backends.iter().any(|x| x.name == *b) {
                        return Err("Can't find backend.\n".to_owned());
                    }
                }
                Ok(servers_state(shared, rest.first().copied()))
            }
            ["show", "sess", ..] => {
                self.need(CliLevel::Operator)?;
                Ok(show_sess(shared).await)
            }
            ["get", "weight", arg, ..] => {
                let (b, s) = server_arg(shared, Some(arg))?;
                let e = &shared.backends[b].snapshot().servers[s];
                Ok(format!("{} (initial {})\n", e.state.weight, e.conf.weight))
            }
            ["get", "weight"] => Err("Require 'backend/server'.\n".to_owned()),
            ["set", "weight", rest @ ..] => {
                self.need(CliLevel::Admin)?;
                let (b, s) = server_arg(shared, rest.first().copied())?;
                let Some(wt) = rest.get(1) else {
                    return Err("Require <weight>.\n".to_owned());
                };
                set_weight(shared, b, s, wt)
            }
            ["set", "server", rest @ ..] => {
                self.need(CliLevel::Admin)?;
                set_server(shared, rest)
            }
            ["enable" | "disable", "server", rest @ ..] => {
                self.need(CliLevel::Admin)?;
                let (b, s) = server_arg(shared, rest.first().copied())?;
                let state = if w[0] == "enable" {
                    AdminState::Ready
                } else {
                    AdminState::Maint
                };
                super::set_state(shared, b, s, state, "stats socket command")
                    .map(|()| String::new())
                    .map_err(|e| format!("{e}\n"))
            }
            ["enable" | "disable", "agent", rest @ ..] => {
                self.need(CliLevel::Admin)?;
                let (b, s) = server_arg(shared, rest.first().copied())?;
                super::set_agent_enabled(shared, b, s, w[0] == "enable", "stats socket command")
                    .map(|()| String::new())
                    .map_err(|e| format!("{e}\n"))
            }
            ["shutdown", "sessions", "server", rest @ ..] => {
                self.need(CliLevel::Admin)?;
                let (b, s) = server_arg(shared, rest.first().copied())?;
                shared.kill_server_flows(b, s);
                Ok(String::new())
            }
            _ => Err(help(self.level, w.first().copied())),
        }
    }
}

fn set_weight(shared: &Shared, b: usize, s: usize, arg: &str) -> Result<String, String> {
    let initial = shared.backends[b].conf.servers[s].weight;
    let w = parse_weight(arg, initial).map_err(|e| format!("{e}\n"))?;
    shared.backends[b]
        .set_weight(s, w)
        .map(|()| String::new())
        .map_err(|e| format!("{e}\n"))
}

fn set_server(shared: &Shared, rest: &[&str]) -> Result<String, String> {
    const USAGE: &str =
        "usage: set server <backend>/<server> addr | agent | agent-send | health | state | weight\n";
    let (b, s) = server_arg(shared, rest.first().copied())?;
    match &rest[1..] {
        ["state", st, ..] => {
            let state = match *st {
                "ready" => AdminState::Ready,
                "drain" => AdminState::Drain,
                "maint" => AdminState::Maint,
                _ => {
                    return Err(
                        "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n"
                            .to_owned(),
                    )
                }
            };
            super::set_state(shared, b, s, state, "stats socket command")
                .map(|()| String::new())
                .map_err(|e| format!("{e}\n"))
        }
        ["health", h, ..] => match *h {
            "up" | "down" | "stopping" => {
                // `stopping` is HAProxy's NOLB: up, but no new connections.
                let stopping = *h == "stopping";
                super::set_health(shared, b, s, *h != "down", "stats socket command")
                    .and_then(|()| shared.backends[b].set_stopping(s, stopping).map(|_| ()))
                    .map(|()| String::new())
                    .map_err(|e| format!("{e}\n"))
            }
            _ => Err("'set server <srv> health' expects 'up', 'stopping', or 'down'.\n".to_owned()),
        },
        ["agent", h, ..] => match *h {
            "up" | "down" => {
                super::set_agent_health(shared, b, s, *h == "up", "stats socket command")
                    .map(|()| String::new())
                    .map_err(|e| format!("{e}\n"))
            }
            _ => Err("'set server <srv> agent' expects 'up' or 'down'.\n".to_owned()),
        },
        ["agent-send", text] => {
            let e = &shared.backends[b].snapshot().servers[s];
            if !e.agent_enabled() {
                return Err(super::AgentError::NotEnabled.to_string() + "\n");
            }
            e.counters
                .agent_send
                .store(Some(std::sync::Arc::new(text.as_bytes().to_vec())));
            Ok(String::new())
        }
        ["agent-send", ..] => {
            Err("'set server <srv> agent-send' expects a string (without spaces).\n".to_owned())
        }
        ["weight", wt, ..] => set_weight(shared, b, s, wt),
        ["addr", ip, more @ ..] => {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Err(format!("Invalid addr '{ip}'.\n"));
            };
            let table = &shared.backends[b];
            let old = table.snapshot().servers[s].conf.addr;
            let port = match more {
                [] => old.port(),
                ["port", p] => p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("Invalid port '{p}'.\n"))?,
                _ => {
                    return Err("'set server <srv> addr' expects <addr> [port <port>].\n".to_owned())
                }
            };
            let new = SocketAddr::new(ip, port);
            table.set_addr(s, new).map_err(|e| format!("{e}\n"))?;
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
                log::warn!(
                    "{}/{} changed its IP from {} to {} by stats socket command",
                    table.conf.name,
                    table.conf.servers[s].name,
                    old,
                    new
                );
            }
            msg.push('\n');
            Ok(msg)
        }
        _ => Err(USAGE.to_owned()),
    }
}

fn show_stat(shared: &Shared, args: &[&str]) -> String {
    let mut rows = stats::rows(shared);
    let mut typed = false;
    let mut json = false;
    let mut nums = Vec::new();
    for a in args {
        match *a {
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

async fn show_sess(shared: &Shared) -> String {
    let flows = shared.flows().await;
    let mut s = String::new();
    for f in flows {
        let fe = &shared.config.frontends[f.frontend].name;
        let be = &shared.config.backends[f.backend];
        let srv = be
            .servers
            .get(f.server)
            .map_or("<none>", |x| x.name.as_str());
        let proto = if f.client.is_ipv4() { "tcpv4" } else { "tcpv6" };
        let _ = writeln!(
            s,
            "0x{:x}: proto={proto} src={} fe={fe} be={} srv={srv} ts=00 epoch=0 age={} calls=0 rate=0 cpu=0 lat=0 thread={}",
            (f.thread as u64) << 48 | f.id,
            f.client,
            be.name,
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
        assert_eq!(parse_weight("10", 3), Ok(10));
        assert_eq!(parse_weight("50%", 4), Ok(2));
        assert_eq!(parse_weight("200%", 3), Ok(6));
        assert!(parse_weight("257", 1).is_err());
        assert!(parse_weight("abc", 1).is_err());
        assert!(parse_weight("-1", 1).is_err());
        assert!(parse_weight("%", 1).is_err());
    }

    #[test]
    fn help_respects_levels() {
        let user = help(CliLevel::User, None);
        assert!(user.contains("show stat"));
        assert!(!user.contains("set server"));
        let admin = help(CliLevel::Admin, None);
        assert!(admin.contains("set server <bk>/<srv>"));
        assert!(help(CliLevel::Admin, Some("show")).starts_with("Unknown command"));
    }
}
