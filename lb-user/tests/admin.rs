//! The runtime API through `socat`, as users drive it: `set server ... state maint|drain|ready`
//! (no new flow, existing flows go on), weights, addresses, `show stat`/`show servers state`,
//! `shutdown sessions`, levels, and garbage input.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::scenarios;
use common::servers::{wait_until, Backend};
use common::stats::{self, cli, col, config, parse_csv, Setup, SockDir};
use common::{free_port, Lb};

on_both_planes!(
    maint_stops_new_flows_keeps_old,
    drain_keeps_existing_flows,
    health_stopping_is_nolb,
);

fn start(dataplane: &str, lines: &[&str], servers: &[String]) -> Setup {
    stats::start("admin", dataplane, lines, servers)
}

fn admin(s: &Setup, cmd: &str) -> String {
    s.admin(cmd)
}

/// A connection through lb to the echo server `echo` (retrying until round robin lands there).
fn echo_conn(fe: SocketAddr, echo: &Backend) -> TcpStream {
    for _ in 0..8 {
        let before = echo.accepted();
        let c = TcpStream::connect(fe).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if wait_until(Duration::from_secs(2), || echo.accepted() > before) {
            return c;
        }
    }
    panic!("no connection reached {}", echo.name);
}

fn ping(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    c.write_all(b"ping").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// `set server be/<change>` stops new flows to s1, keeps the established one, and shows as
/// `want` in `show stat`; `restore` brings s1 back.
fn change_keeps_flows(dataplane: &str, change: &str, want: &str, restore: &str) {
    let s1 = Backend::echo("s1");
    let s2 = Backend::ident("s2");
    let s = start(
        dataplane,
        &[],
        &[format!("s1 {}", s1.addr), format!("s2 {}", s2.addr)],
    );
    let mut held = echo_conn(s.fe, &s1);
    assert!(ping(&mut held));
    assert_eq!(admin(&s, &format!("set server be/s1 {change}")), "\n");
    let before = s1.accepted();
    for _ in 0..6 {
        assert_eq!(scenarios::who(s.fe).unwrap(), "s2");
    }
    assert_eq!(
        s1.accepted(),
        before,
        "no new flow reaches s1 after {change}"
    );
    // The flow established before goes on.
    assert!(ping(&mut held), "existing flow broken by {change}");
    let (_, rows) = parse_csv(&admin(&s, "show stat"));
    assert_eq!(col(&rows[1], "status"), want);
    assert_eq!(col(&rows[1], "scur"), "1");
    assert_eq!(admin(&s, &format!("set server be/s1 {restore}")), "\n");
    let _back = echo_conn(s.fe, &s1);
    assert!(ping(&mut held));
}

fn maint_stops_new_flows_keeps_old(dataplane: &str) {
    change_keeps_flows(dataplane, "state maint", "MAINT", "state ready");
}

fn drain_keeps_existing_flows(dataplane: &str) {
    change_keeps_flows(dataplane, "state drain", "DRAIN", "state ready");
}

fn health_stopping_is_nolb(dataplane: &str) {
    change_keeps_flows(dataplane, "health stopping", "NOLB", "health up");
}

fn counts(fe: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        *m.entry(scenarios::who(fe).unwrap()).or_default() += 1;
    }
    m
}

#[test]
fn set_weight_changes_distribution() {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        "splice",
        &[],
        &[format!("s1 {}", s1.addr), format!("s2 {}", s2.addr)],
    );
    assert_eq!(
        counts(s.fe, 4),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 2)])
    );
    assert_eq!(admin(&s, "set weight be/s2 3"), "\n");
    assert_eq!(admin(&s, "get weight be/s2"), "3 (initial 1)\n\n");
    assert_eq!(
        counts(s.fe, 8),
        BTreeMap::from([("s1".into(), 2), ("s2".into(), 6)])
    );
    assert_eq!(admin(&s, "set server be/s1 weight 0"), "\n");
    assert_eq!(counts(s.fe, 3), BTreeMap::from([("s2".into(), 3)]));
    assert_eq!(admin(&s, "set weight be/s1 300%"), "\n");
    assert_eq!(admin(&s, "get weight be/s1"), "3 (initial 1)\n\n");
    assert_eq!(
        admin(&s, "set weight be/s1 257"),
        "Absolute weight can only be between 0 and 256 inclusive.\n\n"
    );
    assert_eq!(admin(&s, "set weight be/nope 1"), "No such server.\n\n");
    assert_eq!(admin(&s, "get weight xx/s1"), "No such backend.\n\n");
}

#[test]
fn show_stat_info_and_servers_state_parse() {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let s = start(
        "splice",
        &[],
        &[format!("s1 {}", s1.addr), format!("s2 {} backup", s2.addr)],
    );
    scenarios::who(s.fe).unwrap();
    let user = s.dir.sock("user.sock");
    let (cols, rows) = parse_csv(&cli(&user, "show stat"));
    assert_eq!(&cols[..5], ["pxname", "svname", "qcur", "qmax", "scur"]);
    assert_eq!(rows.len(), 4);
    assert_eq!(col(&rows[2], "bck"), "1");
    let typed = cli(&user, "show stat typed");
    assert!(typed.contains(".svname.1:KNS:str:FRONTEND"), "{typed}");
    let json = cli(&user, "show stat json");
    assert!(json.starts_with("[[{\"objType\":\"Frontend\""), "{json}");
    let info = cli(&user, "show info");
    assert!(info.contains(&format!("Pid: {}\n", s.lb.pid())), "{info}");
    assert!(info.contains("CumConns: 1\n"), "{info}");
    let state = admin(&s, "set server be/s2 state maint; show servers state be");
    let mut lines = state.lines().filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("1"));
    let header: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(
        &header[..8],
        [
            "#",
            "be_id",
            "be_name",
            "srv_id",
            "srv_name",
            "srv_addr",
            "srv_op_state",
            "srv_admin_state"
        ]
    );
    assert_eq!(header.len(), 26);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.len(), 25, "{r:?}");
    }
    assert_eq!(
        &rows[0][..8],
        ["2", "be", "1", "s1", "127.0.0.1", "2", "0", "1"]
    );
    // In maintenance: DOWN (srv_op_state 0, as HAProxy's `_srv_update_status_adm` sets it),
    // forced maintenance (srv_admin_state 1).
    assert_eq!(&rows[1][3..7], ["s2", "127.0.0.1", "0", "1"]);
    assert_eq!(rows[1][18], s2.addr.port().to_string());
    assert_eq!(
        admin(&s, "show servers state nope"),
        "Can't find backend.\n\n"
    );
}

#[test]
fn levels_are_enforced() {
    let s1 = Backend::ident("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let (user, oper) = (s.dir.sock("user.sock"), s.dir.sock("oper.sock"));
    for sock in [&user, &oper] {
        for cmd in [
            "set server be/s1 state maint",
            "set weight be/s1 0",
            "disable server be/s1",
            "shutdown sessions server be/s1",
            "set server be/s1 addr 127.0.0.2",
        ] {
            assert_eq!(cli(sock, cmd), "Permission denied\n\n", "{cmd}");
        }
    }
    assert_eq!(cli(&user, "show sess"), "Permission denied\n\n");
    assert!(!cli(&oper, "show sess").contains("Permission"));
    assert!(!cli(&user, "help").contains("set server"));
    assert!(cli(&s.dir.sock("admin.sock"), "help").contains("set server <bk>/<srv>"));
    // Lowering the level inside a session.
    assert_eq!(
        admin(&s, "user; set server be/s1 state maint"),
        "\nPermission denied\n\n"
    );
    assert_eq!(scenarios::who(s.fe).unwrap(), "s1");
    assert_eq!(admin(&s, "disable server be/s1"), "\n");
    assert!(scenarios::who(s.fe).unwrap_or_default().is_empty());
    assert_eq!(admin(&s, "enable server be/s1"), "\n");
    assert_eq!(scenarios::who(s.fe).unwrap(), "s1");
    let unknown = admin(&s, "frobnicate");
    assert!(
        unknown.starts_with("The following commands are valid at this level:"),
        "{unknown}"
    );
}

#[test]
fn set_addr_and_shutdown_sessions() {
    let s1 = Backend::ident_hold("s1");
    let other = Backend::ident_hold("other");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let held = scenarios::Held::open(s.fe).unwrap();
    assert_eq!(held.server, "s1");
    let out = admin(
        &s,
        &format!(
            "set server be/s1 addr {} port {}",
            other.addr.ip(),
            other.addr.port()
        ),
    );
    assert_eq!(
        out,
        format!(
            "port changed from '{}' to '{}' by 'stats socket command'\n\n",
            s1.addr.port(),
            other.addr.port()
        )
    );
    let moved = scenarios::Held::open(s.fe).unwrap();
    assert_eq!(moved.server, "other");
    let sess = cli(&s.dir.sock("oper.sock"), "show sess");
    assert_eq!(
        sess.lines().filter(|l| l.contains("be=be srv=s1")).count(),
        2,
        "{sess}"
    );
    assert_eq!(admin(&s, "shutdown sessions server be/s1"), "\n");
    assert!(wait_until(Duration::from_secs(5), || s1.current() == 0
        && other.current() == 0));
    let oper = s.dir.sock("oper.sock");
    assert!(wait_until(Duration::from_secs(5), || cli(
        &oper,
        "show sess"
    )
    .trim()
    .is_empty()));
    drop((held, moved));
}

#[test]
fn garbage_input_does_no_harm() {
    let s1 = Backend::ident("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let path = s.dir.sock("admin.sock");
    // Binary garbage: answered with help, never a crash.
    let out = cli(&path, "\u{1}\u{2}\u{7f}\u{ff}garbage");
    assert!(out.starts_with("The following commands"), "{out}");
    // A 1 MB line: refused, connection closed.
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let line = vec![b'x'; 1 << 20];
    let _ = c.write_all(&line);
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(reply.contains("too long"), "{reply}");
    // Interactive mode: several commands on one connection.
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"prompt\nget weight be/s1\nquit\n").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("> 1 (initial 1)\n"), "{reply:?}");
    // Still alive and serving.
    assert_eq!(cli(&path, "get weight be/s1"), "1 (initial 1)\n\n");
    assert_eq!(scenarios::who(s.fe).unwrap(), "s1");
}

#[test]
fn socket_mode_and_refusal_to_replace_a_file() {
    let s1 = Backend::ident("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let mode = std::fs::metadata(s.dir.sock("admin.sock"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    drop(s);
    // A regular file where the socket should go is not deleted: lb refuses to start.
    let dir = SockDir::new("notsock");
    std::fs::write(dir.sock("admin.sock"), "keep me").unwrap();
    let cfg = config(free_port(), &dir, &[], &[format!("s1 {}", s1.addr)], "");
    let Err(err) = Lb::try_start_with(&common::LbOpts::new(&cfg, "splice")) else {
        panic!("lb started over a regular file")
    };
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.sock("admin.sock")).unwrap(),
        "keep me"
    );
}

/// `set maxconn server B/S N`: the limit (`slim`) changes at once, and raising it lets a
/// queued connection in; bad values get HAProxy's messages and change nothing.
#[test]
fn set_maxconn_server_limits_and_lets_the_queue_in() {
    let s1 = Backend::echo("s1");
    let s = start(
        "splice",
        &["timeout queue 20s"],
        &[format!("s1 {} maxconn 5", s1.addr)],
    );
    let row = |name: &str| {
        let (_, rows) = parse_csv(&admin(&s, "show stat"));
        let r = rows
            .iter()
            .find(|r| col(r, "svname") == name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .clone();
        (
            col(&r, "scur").to_owned(),
            col(&r, "qcur").to_owned(),
            col(&r, "slim").to_owned(),
        )
    };
    assert_eq!(admin(&s, "set maxconn server be/s1 1"), "\n");
    assert_eq!(row("s1").2, "1");
    let mut first = echo_conn(s.fe, &s1);
    assert!(ping(&mut first));
    let mut second = TcpStream::connect(s.fe).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || row("BACKEND").1 == "1"),
        "the second connection does not wait in the queue: {:?}",
        row("BACKEND")
    );
    assert_eq!(admin(&s, "set maxconn server be/s1 2"), "\n");
    assert!(ping(&mut second), "the queued connection was not let in");
    assert_eq!(row("s1"), ("2".into(), "0".into(), "2".into()));
    for (arg, answer) in [
        ("x", "maxconn string empty or preceded by garbage\n\n"),
        ("7up", "Trailing garbage in maxconn string\n\n"),
        ("", "Require <maxconn>.\n\n"),
    ] {
        assert_eq!(
            admin(&s, &format!("set maxconn server be/s1 {arg}")),
            answer
        );
    }
    assert!(admin(&s, "set maxconn server be/nope 3").contains("No such server"));
    assert_eq!(row("s1").2, "2");
    let user = cli(&s.dir.sock("user.sock"), "set maxconn server be/s1 9");
    assert_eq!(user, "Permission denied\n\n");
    assert!(ping(&mut first));
}

/// `shutdown session ID` ends the one session `show sess` names by that id (as an
/// operator's kill), and says so when there is none; `show backend` lists the backends.
#[test]
fn shutdown_one_session_and_show_backend() {
    let s1 = Backend::ident_hold("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let first = scenarios::Held::open(s.fe).unwrap();
    let second = scenarios::Held::open(s.fe).unwrap();
    assert!(wait_until(Duration::from_secs(5), || s1.current() == 2));
    let oper = s.dir.sock("oper.sock");
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(':').next())
            .filter(|id| id.starts_with("0x"))
            .map(str::to_owned)
            .collect()
    };
    let before = ids(&cli(&oper, "show sess"));
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(admin(&s, &format!("shutdown session {}", before[0])), "\n");
    assert!(
        wait_until(Duration::from_secs(5), || s1.current() == 1),
        "the session was not ended"
    );
    assert_eq!(ids(&cli(&oper, "show sess")), [before[1].clone()]);
    assert_eq!(
        admin(&s, &format!("shutdown session {}", before[0])),
        "No such session (use 'show sess').\n\n"
    );
    for arg in ["", "0", "garbage"] {
        assert_eq!(
            admin(&s, &format!("shutdown session {arg}")),
            "Session pointer expected (use 'show sess').\n\n",
            "{arg:?}"
        );
    }
    assert_eq!(
        cli(&oper, &format!("shutdown session {}", before[1])),
        "Permission denied\n\n"
    );
    assert_eq!(s1.current(), 1);
    assert_eq!(
        cli(&s.dir.sock("user.sock"), "show backend"),
        "# name\nbe\n\n"
    );
    drop((first, second));
}

/// `set maxconn frontend NAME N` and `set maxconn global N`: a frontend at its new limit
/// leaves the next client in the backlog, and raising it lets that client in; the global
/// limit shows in `show info`, is bounded by `Hard_maxconn`, and 0 gives that back. HAProxy's
/// messages for what is refused.
#[test]
fn set_maxconn_frontend_and_global() {
    let s1 = Backend::echo("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let info = |key: &str| -> String {
        admin(&s, "show info")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {key} in show info"))
    };
    let fe_slim = || {
        let (_, rows) = parse_csv(&admin(&s, "show stat"));
        col(&rows[0], "slim").to_owned()
    };
    assert_eq!(admin(&s, "set maxconn frontend fe 1"), "\n");
    assert_eq!(fe_slim(), "1");
    let mut first = echo_conn(s.fe, &s1);
    assert!(ping(&mut first));
    let mut second = TcpStream::connect(s.fe).unwrap();
    second.write_all(b"ping").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4];
    assert!(
        second.read_exact(&mut buf).is_err(),
        "a second client was served at maxconn 1"
    );
    assert_eq!(admin(&s, "set maxconn frontend fe 2"), "\n");
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    second
        .read_exact(&mut buf)
        .expect("served once the limit grew");
    assert_eq!(&buf, b"ping");
    for (cmd, answer) in [
        ("set maxconn frontend", "A frontend name is expected.\n\n"),
        ("set maxconn frontend nope 3", "No such frontend.\n\n"),
        ("set maxconn frontend fe", "Integer value expected.\n\n"),
        ("set maxconn frontend fe -1", "Value out of range.\n\n"),
        ("set maxconn global", "Expects an integer value.\n\n"),
        ("set maxconn global 99999999", "Value out of range.\n\n"),
    ] {
        assert_eq!(admin(&s, cmd), answer, "{cmd}");
    }
    assert_eq!(fe_slim(), "2");
    let hard = info("Hard_maxconn");
    assert_eq!(info("Maxconn"), hard);
    assert_eq!(admin(&s, "set maxconn global 100"), "\n");
    assert_eq!(info("Maxconn"), "100");
    assert_eq!(admin(&s, "set maxconn global 0"), "\n");
    assert_eq!(info("Maxconn"), hard);
    assert_eq!(
        cli(&s.dir.sock("oper.sock"), "set maxconn global 5"),
        "Permission denied\n\n"
    );
    assert!(ping(&mut first) && ping(&mut second));
}

/// `clear counters` (operator) forgets the highest values, `clear counters all` (admin) the
/// totals too, on the frontend, the backend and its servers, as HAProxy's; live sessions stay.
#[test]
fn clear_counters_max_then_all() {
    let s1 = Backend::ident("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let figures = |svname: &str| -> Vec<String> {
        let (_, rows) = parse_csv(&admin(&s, "show stat"));
        let r = rows
            .iter()
            .find(|r| col(r, "svname") == svname)
            .unwrap_or_else(|| panic!("no row {svname}"));
        ["smax", "stot", "bout", "rate_max", "scur"]
            .iter()
            .map(|c| col(r, c).to_owned())
            .collect()
    };
    // One session at a time: each ends in lb (its client's close seen) before the next, so
    // that the highest count is 1 however slowly lb tears a flow down.
    for _ in 0..3 {
        assert_eq!(scenarios::who(s.fe).unwrap(), "s1");
        assert!(
            wait_until(Duration::from_secs(5), || figures("FRONTEND")[4] == "0"),
            "the session never ended in lb"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || figures("s1")[2] != "0"),
        "bytes counted"
    );
    for row in ["FRONTEND", "s1", "BACKEND"] {
        let f = figures(row);
        assert_eq!((f[0].as_str(), f[1].as_str()), ("1", "3"), "{row}: {f:?}");
    }
    let oper = s.dir.sock("oper.sock");
    assert_eq!(cli(&oper, "clear counters"), "\n");
    for row in ["FRONTEND", "s1", "BACKEND"] {
        let f = figures(row);
        assert_eq!((f[0].as_str(), f[1].as_str()), ("0", "3"), "{row}: {f:?}");
        assert_ne!(f[2], "0", "{row}: bytes kept");
    }
    assert_eq!(
        figures("FRONTEND")[3],
        "0",
        "the highest session rate forgotten"
    );
    assert_eq!(cli(&oper, "clear counters all"), "Permission denied\n\n");
    assert_eq!(admin(&s, "clear counters all"), "\n");
    for row in ["FRONTEND", "s1", "BACKEND"] {
        assert_eq!(figures(row)[..3], ["0", "0", "0"], "{row}");
    }
    assert_eq!(scenarios::who(s.fe).unwrap(), "s1");
    assert!(wait_until(Duration::from_secs(5), || figures("s1")[1] == "1"));
}

/// `show cli level` (also after lowering it), `show version`, `show env [NAME]` (operator
/// and up), and `set timeout cli`: an interactive session idle past its new timeout is
/// closed, where the default (`stats timeout`, 10 s) would keep it. HAProxy's answers.
#[test]
fn cli_level_version_env_and_timeout() {
    let s1 = Backend::ident("s1");
    let s = start("splice", &[], &[format!("s1 {}", s1.addr)]);
    let (user, oper, admin_sock) = (
        s.dir.sock("user.sock"),
        s.dir.sock("oper.sock"),
        s.dir.sock("admin.sock"),
    );
    assert_eq!(cli(&user, "show cli level"), "user\n\n");
    assert_eq!(cli(&oper, "show cli level"), "operator\n\n");
    assert_eq!(cli(&admin_sock, "show cli level"), "admin\n\n");
    assert_eq!(
        cli(&admin_sock, "operator; show cli level"),
        "\noperator\n\n"
    );
    let version = cli(&user, "show version");
    assert_eq!(version, format!("{}\n\n", env!("CARGO_PKG_VERSION")));
    // lb's environment: the test started it with PATH (Lb::start passes the test's).
    let path = cli(&oper, "show env PATH");
    assert!(
        path.starts_with("PATH=/") && path.ends_with("\n\n"),
        "{path:?}"
    );
    assert!(cli(&oper, "show env").contains(&path[..path.len() - 1]));
    assert_eq!(
        cli(&oper, "show env LB_NO_SUCH_VARIABLE"),
        "Variable not found\n\n"
    );
    assert_eq!(cli(&user, "show env PATH"), "Permission denied\n\n");
    assert_eq!(
        cli(&user, "set timeout server 5"),
        "'set timeout' only supports 'cli'.\n\n"
    );
    assert_eq!(
        cli(&user, "set timeout cli"),
        "Expects an integer value.\n\n"
    );
    assert_eq!(
        cli(&user, "set timeout cli 500ms"),
        "Invalid timeout value.\n\n"
    );
    // An interactive session with a 1 s timeout is closed after 1 s of silence.
    let mut c = UnixStream::connect(&user).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    c.write_all(b"prompt\nset timeout cli 1\n").unwrap();
    let started = std::time::Instant::now();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    let waited = started.elapsed();
    assert_eq!(reply, "\n> \n> ", "{reply:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}
