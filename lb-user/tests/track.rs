//! `server ... track [BACKEND/]SERVER` end to end, on every data plane: a Redis read backend
//! whose server tracks the write backend's checked one, as users split reads and writes. The
//! tracker goes DOWN with the tracked server's check (its flows ended by `on-marked-down
//! shutdown-sessions`, new clients refused) and UP with it; an operator's maintenance on the
//! tracked server is inherited (`MAINT (via ...)` in `show stat`, the `IMAINT` bit in `show
//! servers state`, "via" on the stats page), survives a reload, and ends with it; a tracker's
//! health cannot be forced. Logs are HAProxy's (`... is DOWN via be_w/r1. ...`).

#[macro_use]
mod common;

use std::time::Duration;

use common::health::{poll, Redis, RedisConn, Resp};
use common::stats::{cli, col, get, parse_csv, stats_section, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(a_read_backend_follows_the_write_backends_server);

const WAIT: Duration = Duration::from_secs(10);

/// A PING through `port` answered with PONG.
fn pong(port: u16) -> bool {
    RedisConn::connect(local(port))
        .and_then(|mut c| c.cmd(&["PING"]))
        .is_ok_and(|r| r == Resp::Simple("PONG".into()))
}

/// `be/sv`'s column `name` in `show stat`.
fn stat(sock: &std::path::Path, be: &str, sv: &str, name: &str) -> String {
    let (_, rows) = parse_csv(&cli(sock, "show stat"));
    let row = rows
        .iter()
        .find(|r| col(r, "pxname") == be && col(r, "svname") == sv)
        .unwrap_or_else(|| panic!("no row {be}/{sv} in show stat"));
    col(row, name).to_owned()
}

/// `srv_admin_state` of `be`'s server in `show servers state`.
fn admin_bits(sock: &std::path::Path, be: &str, sv: &str) -> String {
    let out = cli(sock, "show servers state");
    let line = out
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(be) && l.split(' ').nth(3) == Some(sv))
        .unwrap_or_else(|| panic!("no {be} in show servers state:\n{out}"));
    line.split(' ').nth(6).unwrap().to_owned()
}

fn a_read_backend_follows_the_write_backends_server(dataplane: &str) {
    let redis = Redis::start("", None);
    let dir = SockDir::new("track");
    let sock = dir.sock("admin.sock");
    let (fw, fr, st) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "global\n    stats socket {} mode 600 level admin\n\n{DEFAULTS}\n\
         frontend fw\n    bind 127.0.0.1:{fw}\n    default_backend be_w\n\n\
         frontend fr\n    bind 127.0.0.1:{fr}\n    default_backend be_r\n\n\
         backend be_w\n    option tcp-check\n    tcp-check send info\\ replication\\r\\n\n    \
         tcp-check expect string role:master\n    \
         server r1 127.0.0.1:{p} check inter 100ms rise 1 fall 1\n    \
         server r2 127.0.0.1:{p} check disabled\n\n\
         backend be_r\n    server r1 127.0.0.1:{p} track be_w/r1 on-marked-down shutdown-sessions\n    \
         server r2 127.0.0.1:{p} track be_w/r2\n\
         {}",
        sock.display(),
        stats_section(st),
        p = redis.port,
    );
    let mut lb = Lb::start(&cfg, dataplane);
    assert!(
        poll(WAIT, || pong(fr)),
        "{dataplane}: no PONG through the read frontend"
    );
    assert_eq!(stat(&sock, "be_r", "r1", "tracked"), "be_w/r1");
    assert_eq!(
        stat(&sock, "be_r", "r1", "status"),
        "UP",
        "the tracked server's checks"
    );
    // A tracked server `disabled` in the configuration holds its tracker from the start.
    assert_eq!(stat(&sock, "be_r", "r2", "status"), "MAINT (via be_w/r2)");

    // The tracked server's check fails (a replica is not the master): the tracker follows.
    let mut held = RedisConn::connect(local(fr)).unwrap();
    assert_eq!(held.cmd(&["PING"]).unwrap(), Resp::Simple("PONG".into()));
    redis.cmd(&["REPLICAOF", "127.0.0.1", "1"]).unwrap();
    assert!(
        lb.wait_for_log(
            "Server be_r/r1 is DOWN via be_w/r1. 0 active and 0 backup",
            WAIT
        ),
        "{dataplane}: {:?}",
        lb.logs()
    );
    assert_eq!(stat(&sock, "be_r", "r1", "status"), "DOWN");
    assert!(
        held.cmd(&["PING"]).is_err(),
        "shutdown-sessions ends the tracker's flow"
    );
    assert!(!pong(fr), "no server for new clients of the read backend");
    assert_eq!(
        cli(&sock, "set server be_r/r1 health up"),
        "cannot change health on a tracking server.\n\n"
    );
    redis.cmd(&["REPLICAOF", "NO", "ONE"]).unwrap();
    assert!(lb.wait_for_log("Server be_r/r1 is UP via be_w/r1.", WAIT));
    assert!(pong(fr));

    // An operator's maintenance on the tracked server is inherited.
    assert_eq!(cli(&sock, "disable server be_w/r1"), "\n");
    assert!(lb.wait_for_log(
        "Server be_r/r1 is going DOWN for maintenance via be_w/r1.",
        WAIT
    ));
    assert_eq!(stat(&sock, "be_r", "r1", "status"), "MAINT (via be_w/r1)");
    assert_eq!(stat(&sock, "be_w", "r1", "status"), "MAINT");
    assert_eq!(admin_bits(&sock, "be_r", "r1"), "2", "IMAINT");
    assert_eq!(admin_bits(&sock, "be_w", "r1"), "1", "FMAINT");
    let page = get(local(st), "/stats", Some(("admin", "pass"))).text();
    assert!(
        page.contains("via be_w/r1"),
        "the stats page names the tracked server"
    );
    assert!(!pong(fr));

    // A reload keeps both, the operator's maintenance and the tracker's inherited one, and a
    // tracking server it adds inherits it before it serves.
    let more = format!("    server r3 127.0.0.1:{} track be_w/r1\n", redis.port);
    lb.rewrite_config(
        0,
        &cfg.replacen("track be_w/r2\n", &format!("track be_w/r2\n{more}"), 1),
    );
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", WAIT));
    assert_eq!(stat(&sock, "be_r", "r1", "status"), "MAINT (via be_w/r1)");
    assert_eq!(stat(&sock, "be_r", "r3", "status"), "MAINT (via be_w/r1)");
    assert!(!pong(fr));

    assert_eq!(cli(&sock, "enable server be_w/r1"), "\n");
    assert!(lb.wait_for_log("Server be_r/r1 is UP/READY (leaving maintenance).", WAIT));
    assert!(lb.wait_for_log("Server be_r/r3 is UP/READY (leaving maintenance).", WAIT));
    assert!(
        poll(WAIT, || pong(fr)),
        "{dataplane}: back after the maintenance"
    );
    assert!(pong(fw));
    lb.stop();
}
