//! HAProxy's agent check end to end: the real `lb` against a small agent on 127.0.0.1 whose
//! answer each test changes while lb runs. `down`/`up` take a server out of rotation and back,
//! `N%` and `maxconn:N` change its weight and limit, `drain`/`maint`/`ready` its admin state
//! as the runtime API shows it; an agent that does not answer changes nothing. Also the
//! runtime API's agent commands and `lb -c` on agent configs.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::data::closed_by_peer;
use common::health::{count_log, wait_log_count};
use common::scenarios;
use common::servers::{wait_until, Backend};
use common::stats::{self, cli, col, parse_csv, Setup};
use common::{free_port, lb_check};

on_both_planes!(
    down_leaves_rotation_and_up_brings_it_back,
    down_shuts_sessions_and_empties_the_backend,
    weight_follows_the_agent,
    admin_words_follow_the_agent,
    unreachable_agent_changes_nothing,
);

/// `agent-inter` of the tests: short, so that every change shows within a fraction of a second.
const AGENT_INTER: &str = "agent-inter 100ms";
/// Bound on every wait for lb to follow the agent (many agent intervals, for a busy machine).
const FOLLOW: Duration = Duration::from_secs(5);

/// A tiny agent on 127.0.0.1: for each connection it writes the current answer, shuts its
/// write side and reads what lb sent (`agent-send`) until lb closes.
struct Agent {
    addr: SocketAddr,
    answer: Arc<Mutex<Vec<u8>>>,
    received: Arc<Mutex<Vec<u8>>>,
    checks: Arc<AtomicU64>,
    listener: Option<TcpListener>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Agent {
    fn start(answer: &str) -> Agent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer.as_bytes().to_vec()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let checks = Arc::new(AtomicU64::new(0));
        let thread = {
            let l = listener.try_clone().unwrap();
            let (answer, received, checks) = (answer.clone(), received.clone(), checks.clone());
            thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(mut c) = c else { break };
                    let text = answer.lock().unwrap().clone();
                    let (received, checks) = (received.clone(), checks.clone());
                    thread::spawn(move || {
                        let _ = c.write_all(&text);
                        let _ = c.shutdown(Shutdown::Write);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut got = Vec::new();
                        let _ = c.read_to_end(&mut got);
                        *received.lock().unwrap() = got;
                        checks.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Agent {
            addr,
            answer,
            received,
            checks,
            listener: Some(listener),
            thread: Some(thread),
        }
    }

    /// Changes the answer of the next checks.
    fn say(&self, answer: &str) {
        *self.answer.lock().unwrap() = answer.as_bytes().to_vec();
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What lb sent on the last finished check.
    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` more checks have finished.
    fn wait_checks(&self, n: u64) -> bool {
        let start = self.checks.load(Ordering::SeqCst);
        wait_until(FOLLOW, || self.checks.load(Ordering::SeqCst) >= start + n)
    }

    /// Stops listening: later checks are refused.
    fn stop(&mut self) {
        if let Some(l) = self.listener.take() {
            // SAFETY: shutdown(2) on a listening socket we own wakes the accept loop.
            unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&l), libc::SHUT_RDWR) };
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start(dataplane: &str, lines: &[&str], servers: &[String]) -> Setup {
    stats::start("agent", dataplane, lines, servers)
}

impl Setup {
    /// `show stat` row of server `name` as column → value.
    fn row(&self, name: &str) -> BTreeMap<String, String> {
        let (_, rows) = parse_csv(&self.admin("show stat"));
        let row = rows
            .into_iter()
            .find(|r| col(r, "svname") == name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        row.into_iter().collect()
    }

    fn status(&self, name: &str) -> String {
        self.row(name)["status"].clone()
    }

    /// Waits until `name`'s status is `want`; panics with the last status and lb's log.
    fn wait_status(&self, name: &str, want: &str) {
        let mut last = String::new();
        let ok = wait_until(FOLLOW, || {
            last = self.status(name);
            last == want
        });
        assert!(
            ok,
            "{name} never showed `{want}` (last: `{last}`); log:\n{}",
            self.lb.logs().join("\n")
        );
    }

    /// `show servers state` fields of server `name`, by header name.
    fn servers_state(&self, name: &str) -> BTreeMap<String, String> {
        let out = self.admin("show servers state");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("1"));
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .expect("header")
            .split(' ')
            .collect();
        let line = lines
            .find(|l| l.split(' ').nth(3) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
        header
            .iter()
            .map(|h| (*h).to_owned())
            .zip(line.split(' ').map(str::to_owned))
            .collect()
    }

    /// Which servers `n` new connections reach.
    fn counts(&self, n: usize) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for _ in 0..n {
            *m.entry(scenarios::who(self.fe).unwrap()).or_default() += 1;
        }
        m
    }
}

fn agent_server(name: &str, addr: SocketAddr, agent: &Agent, extra: &str) -> String {
    format!(
        "{name} {addr} agent-check agent-port {} {AGENT_INTER} {extra}",
        agent.port()
    )
}

fn down_leaves_rotation_and_up_brings_it_back(dataplane: &str) {
    let agent = Agent::start("up\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        dataplane,
        &["option log-health-checks"],
        &[
            agent_server("s1", s1.addr, &agent, ""),
            format!("s2 {}", s2.addr),
        ],
    );
    assert!(agent.wait_checks(2), "lb never asked the agent");
    assert_eq!(
        s.counts(4),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 2)])
    );
    // Agent-only server: UP shows as "no check", as in HAProxy.
    assert_eq!(s.status("s1"), "no check");

    agent.say("down#maintenance window\n");
    s.wait_status("s1", "DOWN (agent)");
    let down = s.lb.expect_log("Server be/s1 is DOWN");
    assert!(
        down.contains(
            "reason: Layer7 wrong status, info: \"via agent : down (maintenance window)\""
        ),
        "{down}"
    );
    assert!(
        down.contains("1 active and 0 backup servers left"),
        "{down}"
    );
    assert!(
        s.lb.expect_log("Agent check for server be/s1 failed, reason: Layer7 wrong status")
            .contains("status: 0/1 DOWN."),
        "option log-health-checks logs the agent's result; log:\n{}",
        s.lb.logs().join("\n")
    );
    let before = s1.accepted();
    assert_eq!(s.counts(6), BTreeMap::from([("s2".into(), 6)]));
    assert_eq!(s1.accepted(), before, "no new flow reaches s1 while DOWN");
    let row = s.row("s1");
    for (c, want) in [
        ("agent_status", "L7STS"),
        ("agent_desc", "Layer7 wrong status"),
        ("last_agt", "via agent : down (maintenance window)"),
        ("agent_rise", "1"),
        ("agent_fall", "1"),
        ("agent_health", "0"),
        ("check_status", ""),
    ] {
        assert_eq!(row[c], want, "column {c}");
    }
    assert!(row["agent_duration"].parse::<u64>().is_ok());
    let st = s.servers_state("s1");
    assert_eq!(st["srv_op_state"], "0");
    assert_eq!(st["srv_agent_state"], "22");
    assert_eq!(st["srv_agent_port"], agent.port().to_string());
    // The stats page (CSV over the runtime API) of a server without agent: empty columns.
    assert_eq!(s.row("s2")["agent_status"], "");
    assert_eq!(s.row("s2")["agent_health"], "");

    agent.say("up\n");
    s.wait_status("s1", "no check");
    let up = s.lb.expect_log("Server be/s1 is UP");
    assert!(
        up.contains("reason: Layer7 check passed, info: \"via agent : up\""),
        "{up}"
    );
    assert_eq!(
        s.counts(4),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 2)])
    );
    let row = s.row("s1");
    assert_eq!(
        (row["agent_status"].as_str(), row["agent_health"].as_str()),
        ("L7OK", "1")
    );
}

fn down_shuts_sessions_and_empties_the_backend(dataplane: &str) {
    let agent = Agent::start("up\n");
    let echo = Backend::echo("echo");
    let s = start(
        dataplane,
        &[],
        &[agent_server(
            "s1",
            echo.addr,
            &agent,
            "on-marked-down shutdown-sessions",
        )],
    );
    let mut c = TcpStream::connect(s.fe).unwrap();
    c.set_read_timeout(Some(FOLLOW)).unwrap();
    let mut buf = [0u8; 5];
    c.write_all(b"hello").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    agent.say("stopped\n");
    assert!(
        s.lb.wait_for_log("Server be/s1 is DOWN", FOLLOW),
        "s1 never went DOWN; log:\n{}",
        s.lb.logs().join("\n")
    );
    assert!(s
        .lb
        .wait_for_log("backend be has no server available!", FOLLOW));
    let mut rest = [0u8; 16];
    let end = c.read(&mut rest);
    assert!(
        closed_by_peer(&end),
        "on-marked-down shutdown-sessions must close the live flow, got {end:?}"
    );
    assert_eq!(s.status("s1"), "DOWN (agent)");
    // No server: a new client is turned away.
    let before = echo.accepted();
    if let Ok(mut n) = TcpStream::connect(s.fe) {
        n.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = n.write_all(b"x");
        let mut b = [0u8; 1];
        assert!(!matches!(n.read(&mut b), Ok(1)), "no server to answer");
    }
    assert_eq!(echo.accepted(), before);
}

fn weight_follows_the_agent(dataplane: &str) {
    let agent = Agent::start("100%\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        dataplane,
        &[],
        &[
            agent_server("s1", s1.addr, &agent, "weight 4"),
            format!("s2 {} weight 4", s2.addr),
        ],
    );
    assert!(agent.wait_checks(2));
    assert_eq!(
        s.counts(8),
        BTreeMap::from([("s1".into(), 4), ("s2".into(), 4)])
    );

    agent.say("50% maxconn:30\n");
    assert!(
        wait_until(FOLLOW, || s.admin("get weight be/s1")
            == "2 (initial 4)\n\n"),
        "weight never followed 50%: {}",
        s.admin("get weight be/s1")
    );
    assert!(wait_until(FOLLOW, || s.row("s1")["slim"] == "30"));
    assert_eq!(
        s.counts(6),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 4)])
    );
    assert_eq!(s.status("s1"), "no check");

    // Weight 0: no new flows, shown as DRAIN.
    agent.say("0%\n");
    s.wait_status("s1", "DRAIN");
    assert_eq!(s.counts(4), BTreeMap::from([("s2".into(), 4)]));

    // A word the agent does not send leaves its value alone; garbage is reported.
    agent.say("hello 150%\n");
    assert!(wait_until(FOLLOW, || s.admin("get weight be/s1")
        == "6 (initial 4)\n\n"));
    assert!(wait_until(FOLLOW, || s.row("s1")["last_agt"]
        == "agent reports an error : hello"));
    let row = s.row("s1");
    assert_eq!(row["agent_status"], "CHECKED");
    assert_eq!(row["slim"], "30", "maxconn not advertised: unchanged");
    assert_eq!(
        s.counts(10),
        BTreeMap::from([("s1".into(), 6), ("s2".into(), 4)])
    );
}

fn admin_words_follow_the_agent(dataplane: &str) {
    let agent = Agent::start("ready\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        dataplane,
        &[],
        &[
            agent_server("s1", s1.addr, &agent, ""),
            format!("s2 {}", s2.addr),
        ],
    );
    assert!(agent.wait_checks(2));

    agent.say("drain\n");
    s.wait_status("s1", "DRAIN (agent)");
    assert_eq!(s.servers_state("s1")["srv_admin_state"], "8");
    s.lb.expect_log("Server be/s1 enters drain state. 1 active and 0 backup servers online.");
    assert_eq!(s.counts(4), BTreeMap::from([("s2".into(), 4)]));

    agent.say("maint\n");
    s.wait_status("s1", "MAINT");
    assert_eq!(s.servers_state("s1")["srv_admin_state"], "1");
    assert_eq!(s.counts(4), BTreeMap::from([("s2".into(), 4)]));

    // `ready` cancels the agent's MAINT...
    agent.say("ready\n");
    s.wait_status("s1", "no check");
    assert_eq!(s.servers_state("s1")["srv_admin_state"], "0");
    assert_eq!(
        s.counts(4),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 2)])
    );

    // ...and the operator's: the same admin flags, last writer wins.
    let ready = "Server be/s1 is UP/READY (leaving forced maintenance).";
    let readies = count_log(&s.lb, ready);
    assert_eq!(s.admin("set server be/s1 state maint"), "\n");
    s.lb.expect_log(
        "Server be/s1 is going DOWN for maintenance. 1 active and 0 backup servers left.",
    );
    // The agent, still saying `ready`, is the next writer.
    assert!(wait_log_count(&s.lb, ready, readies + 1, FOLLOW));
    s.wait_status("s1", "no check");

    // An answer without an admin word leaves the operator's state alone.
    agent.say("100%\n");
    assert!(agent.wait_checks(2));
    assert_eq!(s.admin("set server be/s1 state drain"), "\n");
    assert!(agent.wait_checks(3));
    assert_eq!(s.status("s1"), "DRAIN (agent)");
    assert_eq!(s.counts(3), BTreeMap::from([("s2".into(), 3)]));
}

fn unreachable_agent_changes_nothing(dataplane: &str) {
    // An agent port nobody listens on: the server stays UP and serves.
    let closed = free_port();
    let mut agent = Agent::start("up\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        dataplane,
        &["option log-health-checks"],
        &[
            format!(
                "s1 {} agent-check agent-port {closed} {AGENT_INTER}",
                s1.addr
            ),
            agent_server("s2", s2.addr, &agent, ""),
        ],
    );
    assert!(wait_until(FOLLOW, || s.row("s1")["agent_status"] == "L4CON"));
    let row = s.row("s1");
    assert_eq!(row["status"], "no check");
    assert_eq!(row["last_agt"], "Connection refused");
    assert_eq!(row["agent_health"], "1");
    assert_eq!(
        s.counts(4),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 2)])
    );
    s.lb.expect_log("Agent check for server be/s1 failed, reason: Layer4 connection problem");

    // An agent that said DOWN and then stops answering: the server stays DOWN.
    agent.say("down\n");
    s.wait_status("s2", "DOWN (agent)");
    agent.stop();
    assert!(wait_until(FOLLOW, || s.row("s2")["agent_status"] == "L4CON"));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(s.status("s2"), "DOWN (agent)");
    assert_eq!(s.counts(3), BTreeMap::from([("s1".into(), 3)]));
    assert!(s.lb.find_log("Server be/s1 is DOWN").is_none());
    assert!(s.lb.find_log("Server be/s2 is UP").is_none());
}

#[test]
fn runtime_api_drives_the_agent() {
    let agent = Agent::start("up\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        "splice",
        &[],
        &[
            agent_server("s1", s1.addr, &agent, "agent-send \"hello\\r\\n\""),
            format!("s2 {}", s2.addr),
        ],
    );
    assert!(agent.wait_checks(2));
    assert_eq!(
        agent.received(),
        b"hello\r\n",
        "agent-send with its escapes"
    );

    // An answer without a health word: the runtime API's verdict stays.
    agent.say("100%\n");
    assert!(agent.wait_checks(2));
    assert_eq!(s.admin("set server be/s1 agent down"), "\n");
    assert_eq!(s.status("s1"), "DOWN (agent)");
    s.lb.expect_log("Server be/s1 is DOWN, changed from CLI. 1 active and 0 backup servers left.");
    assert!(agent.wait_checks(2));
    assert_eq!(s.status("s1"), "DOWN (agent)");
    assert_eq!(s.counts(2), BTreeMap::from([("s2".into(), 2)]));
    assert_eq!(s.admin("set server be/s1 agent up"), "\n");
    assert_eq!(s.status("s1"), "no check");

    // Disabled, the agent is not asked and not listened to.
    assert_eq!(s.admin("disable agent be/s1"), "\n");
    agent.say("down\n");
    let asked = agent.checks.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(500));
    assert!(
        agent.checks.load(Ordering::SeqCst) <= asked + 1,
        "a disabled agent is not asked"
    );
    assert_eq!(s.status("s1"), "no check");
    assert_eq!(
        s.row("s1")["agent_status"],
        "",
        "disabled: agent columns empty"
    );
    assert_eq!(s.servers_state("s1")["srv_agent_state"], "18");
    assert_eq!(
        s.admin("set server be/s1 agent down"),
        "agent checks are not enabled on this server.\n\n"
    );
    assert_eq!(s.admin("enable agent be/s1"), "\n");
    s.wait_status("s1", "DOWN (agent)");
    // Disabling lifts the agent's DOWN: only the regular check (none here) decides.
    assert_eq!(s.admin("disable agent be/s1"), "\n");
    assert_eq!(s.status("s1"), "no check");
    assert_eq!(s.admin("enable agent be/s1"), "\n");
    s.wait_status("s1", "DOWN (agent)");
    agent.say("up\n");
    s.wait_status("s1", "no check");

    assert_eq!(s.admin("set server be/s1 agent-send ping"), "\n");
    assert!(wait_until(FOLLOW, || agent.received() == b"ping"));

    for (cmd, want) in [
        (
            "set server be/s2 agent up",
            "agent checks are not enabled on this server.\n",
        ),
        (
            "set server be/s2 agent-send x",
            "agent checks are not enabled on this server.\n",
        ),
        (
            "enable agent be/s2",
            "Agent was not configured on this server, cannot enable.\n",
        ),
        ("disable agent be/s2", ""),
        (
            "set server be/s1 agent sideways",
            "'set server <srv> agent' expects 'up' or 'down'.\n",
        ),
        (
            "set server be/s1 agent-send",
            "'set server <srv> agent-send' expects a string (without spaces).\n",
        ),
        ("enable agent be/nope", "No such server.\n"),
        ("disable agent", "Require 'backend/server'.\n"),
    ] {
        assert_eq!(s.admin(cmd), format!("{want}\n"), "{cmd}");
    }
    // Lower levels may not, whatever the words: HAProxy checks the level before it reads
    // them, so a malformed command gets no usage text either.
    for cmd in [
        "disable agent be/s1",
        "disable agent",
        "set server be/s1 agent sideways",
        "set server be/s1 check-addr",
        "set server nobackslash state ready",
        "set weight be/s1",
    ] {
        assert_eq!(
            cli(&s.dir.sock("oper.sock"), cmd),
            "Permission denied\n\n",
            "{cmd}"
        );
    }
    assert_eq!(s.status("s1"), "no check");
}

/// `set server B/S check-addr|check-port|agent-addr|agent-port` (HAProxy 2.6): the checks go
/// where the runtime API says from their next turn, `show servers state` shows it, port 0
/// gives the server's port back; errors in HAProxy's words, nothing applied on one.
#[test]
fn runtime_api_moves_the_checks() {
    let up = Agent::start("up\n");
    let down = Agent::start("down\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let refusing = common::servers::refusing_addr();
    let s = start(
        "splice",
        &[],
        &[
            agent_server("s1", s1.addr, &up, "check inter 100ms fall 1 rise 1"),
            format!("s2 {}", s2.addr),
            // No port of its own (MAPPORTS): its checks need theirs.
            format!("s3 127.0.0.1 check port {} inter 100ms", s2.addr.port()),
        ],
    );
    s.wait_status("s1", "UP");
    s.wait_status("s3", "UP");
    let state = |k: &str| s.servers_state("s1")[k].clone();
    assert_eq!(state("srv_check_port"), "0");
    assert_eq!(state("srv_check_addr"), "-");

    // The regular check.
    let port = refusing.port().to_string();
    assert_eq!(
        s.admin(&format!("set server be/s1 check-port {port}")),
        "\n"
    );
    s.wait_status("s1", "DOWN");
    assert_eq!(state("srv_check_port"), port);
    assert_eq!(s.admin("set server be/s1 check-port 0"), "\n");
    s.wait_status("s1", "UP");
    assert_eq!(state("srv_check_port"), "0");
    // 127.0.0.2 is local too, but nothing listens there.
    assert_eq!(s.admin("set server be/s1 check-addr 127.0.0.2"), "\n");
    s.wait_status("s1", "DOWN");
    assert_eq!(state("srv_check_addr"), "127.0.0.2");
    assert_eq!(
        s.admin(&format!(
            "set server be/s1 check-addr 127.0.0.1 port {}",
            s1.addr.port()
        )),
        "\n"
    );
    s.wait_status("s1", "UP");
    assert_eq!(state("srv_check_addr"), "127.0.0.1");
    assert_eq!(state("srv_check_port"), s1.addr.port().to_string());

    // The agent.
    assert_eq!(state("srv_agent_port"), up.port().to_string());
    assert_eq!(
        s.admin(&format!("set server be/s1 agent-port {}", down.port())),
        "\n"
    );
    s.wait_status("s1", "DOWN (agent)");
    assert_eq!(state("srv_agent_port"), down.port().to_string());
    assert_eq!(
        s.admin(&format!(
            "set server be/s1 agent-addr 127.0.0.1 port {}",
            up.port()
        )),
        "\n"
    );
    s.wait_status("s1", "UP");
    assert_eq!(state("srv_agent_addr"), "127.0.0.1");

    // Errors: the checks stay where they are.
    for (cmd, want) in [
        (
            "set server be/s1 check-addr",
            "set server <b>/<s> check-addr requires an address and optionally a port.\n",
        ),
        (
            "set server be/s1 check-port",
            "set server <b>/<s> check-port requires a port.\n",
        ),
        (
            "set server be/s1 agent-addr",
            "set server <b>/<s> agent-addr requires an address and optionally a port.\n",
        ),
        (
            "set server be/s1 agent-port",
            "set server <b>/<s> agent-port requires a port.\n",
        ),
        (
            "set server be/s1 check-addr nowhere",
            "invalid addr 'nowhere'",
        ),
        (
            "set server be/s1 check-addr 127.0.0.3 port x",
            "provided port is not an integer",
        ),
        (
            "set server be/s1 check-port 65536",
            "provided port is invalid",
        ),
        ("set server be/s1 agent-port -1", "provided port is invalid"),
        (
            "set server be/s2 check-port 1",
            "health checks are not enabled on this server",
        ),
        (
            "set server be/s2 agent-addr 127.0.0.1",
            "agent checks are not enabled on this server",
        ),
        (
            "set server be/s3 check-port 0",
            "can't unset 'port' since MAPPORTS is in use",
        ),
    ] {
        // HAProxy prints the last ones without a new line; lb ends every answer with one.
        let line = if want.ends_with('\n') { "" } else { "\n" };
        assert_eq!(s.admin(cmd), format!("{want}{line}\n"), "{cmd}");
    }
    assert_eq!(state("srv_check_addr"), "127.0.0.1");
    assert_eq!(state("srv_check_port"), s1.addr.port().to_string());
    // A check turned off takes no place.
    assert_eq!(s.admin("disable health be/s1"), "\n");
    assert_eq!(
        s.admin("set server be/s1 check-port 1"),
        "health checks are not enabled on this server\n\n"
    );
    assert_eq!(
        cli(&s.dir.sock("oper.sock"), "set server be/s1 check-port 1"),
        "Permission denied\n\n"
    );
}

#[test]
fn agent_and_regular_check_must_both_agree() {
    let agent = Agent::start("up\n");
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    // A check port that refuses: the regular check holds s2 DOWN whatever the agent says.
    let refused = free_port();
    let s = start(
        "splice",
        &[],
        &[
            agent_server("s1", s1.addr, &agent, "check inter 100ms rise 1 fall 1"),
            agent_server(
                "s2",
                s2.addr,
                &agent,
                &format!("check port {refused} inter 100ms rise 1 fall 1"),
            ),
        ],
    );
    s.wait_status("s2", "DOWN");
    s.wait_status("s1", "UP");
    assert!(agent.wait_checks(4));
    assert_eq!(
        s.status("s2"),
        "DOWN",
        "agent `up` does not override the check"
    );
    assert_eq!(s.row("s2")["agent_health"], "1");

    // The agent's DOWN wins over a passing check.
    agent.say("down\n");
    s.wait_status("s1", "DOWN (agent)");
    assert_eq!(s.row("s1")["check_status"], "L4OK");
    s.wait_status("s2", "DOWN (agent)");
    agent.say("up\n");
    s.wait_status("s1", "UP");
    s.wait_status("s2", "DOWN");
    assert_eq!(s.counts(3), BTreeMap::from([("s1".into(), 3)]));
}

#[test]
fn agent_configs_pass_check_and_missing_port_is_an_error() {
    let ok = "\
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    default-server agent-inter 3s agent-send \"status\\n\"
    server s1 127.0.0.1:9000 check agent-check agent-port 9999 agent-addr 127.0.0.2
    server s2 127.0.0.1:9001 agent-check agent-port 9999 no-agent-check
";
    let (out, _c) = lb_check(&[ok]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        !out.stderr.contains("not supported yet"),
        "agent keywords are supported:\n{}",
        out.stderr
    );

    let broken = ok.replace(" agent-port 9999 agent-addr", " agent-addr");
    let (out, cfgs) = lb_check(&[&broken]);
    assert!(
        !out.status.success(),
        "agent-check without agent-port accepted"
    );
    let want = format!(
        "{}:11: server 'app/s1': 'agent-check' is enabled but no 'agent-port' is set",
        cfgs[0].file_name()
    );
    assert!(
        out.stderr.lines().any(|l| l.contains(&want)),
        "want `{want}` in:\n{}",
        out.stderr
    );
}

/// An agent that never answers: the check is bounded by agent-inter and the server stays UP.
#[test]
fn silent_agent_times_out() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        "splice",
        &[],
        &[
            format!(
                "s1 {} agent-check agent-port {} agent-inter 200ms",
                s1.addr,
                silent.local_addr().unwrap().port()
            ),
            format!("s2 {}", s2.addr),
        ],
    );
    let started = Instant::now();
    assert!(wait_until(FOLLOW, || s.row("s1")["agent_status"] == "L7TOUT"));
    assert!(started.elapsed() < FOLLOW);
    assert_eq!(s.status("s1"), "no check");
    assert_eq!(
        s.counts(2),
        BTreeMap::from([("s1".into(), 1), ("s2".into(), 1)])
    );
}
