//! `source`: lb's connections to a server, and the server's health checks, come from the
//! address its backend names, or the server's own, which wins (HAProxy's `source`), seen from a
//! real Redis: its log of accepted connections for the checks, `CLIENT LIST` through lb for
//! the traffic, on each data plane. A source lb cannot bind fails the connection, and the log
//! says which source and why.

#[macro_use]
mod common;

use std::time::Duration;

use common::health::{poll, Redis, RedisConn};
use common::{free_port, local, Lb, DEFAULTS, SOCKMAP_AT_ONCE};

/// Two frontends on one Redis: `b2` is `b1` with a server-level `source` of its own.
fn config(redis: u16, fe1: u16, fe2: u16) -> String {
    format!(
        "global\n    nbthread 2\n\n{DEFAULTS}
frontend f1
    bind 127.0.0.1:{fe1}
    default_backend b1

backend b1
    source 127.0.0.2
    option redis-check
    server r 127.0.0.1:{redis} check inter 100ms

frontend f2
    bind 127.0.0.1:{fe2}
    default_backend b2

backend b2
    source 127.0.0.2
    option redis-check
    server r 127.0.0.1:{redis} source 127.0.0.3 check inter 100ms
"
    )
}

/// The `addr=` of the connection that asked `CLIENT LIST` (Redis marks it with its command).
fn own_client_addr(via: std::net::SocketAddr) -> String {
    let mut c = RedisConn::connect(via).expect("connect through lb");
    let list = c.cmd(&["CLIENT", "LIST"]).expect("CLIENT LIST").text();
    let line = list
        .lines()
        .find(|l| l.contains("cmd=client|list"))
        .unwrap_or_else(|| panic!("no line for our own connection in CLIENT LIST:\n{list}"));
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
        .to_owned()
}

fn accepted_from(log: &str, ip: &str) -> usize {
    log.matches(&format!("Accepted {ip}:")).count()
}

#[test]
fn traffic_and_checks_come_from_the_backends_or_the_servers_source() {
    let redis = Redis::start_logging();
    for plane in ["splice", "sockmap", SOCKMAP_AT_ONCE] {
        let (fe1, fe2) = (free_port(), free_port());
        let before = redis.log();
        let lb = Lb::start(&config(redis.port, fe1, fe2), plane);
        // Checks first: each server's come from its source, none from lb's default address.
        let new = |ip: &str| accepted_from(&redis.log(), ip) - accepted_from(&before, ip);
        assert!(
            poll(Duration::from_secs(10), || new("127.0.0.2") >= 3
                && new("127.0.0.3") >= 3),
            "{plane}: checks from 127.0.0.2 and 127.0.0.3 did not reach Redis; its log:\n{}",
            redis.log()
        );
        assert_eq!(
            new("127.0.0.1"),
            0,
            "{plane}: a check came from lb's default address"
        );
        // Then the traffic, on each frontend.
        let a1 = own_client_addr(local(fe1));
        assert!(
            a1.starts_with("127.0.0.2:"),
            "{plane}: b1's traffic came from {a1}"
        );
        let a2 = own_client_addr(local(fe2));
        assert!(
            a2.starts_with("127.0.0.3:"),
            "{plane}: b2's traffic came from {a2}"
        );
        assert_eq!(new("127.0.0.1"), 0, "{plane}: traffic came from 127.0.0.1");
        drop(lb);
    }
}

/// An address no interface has: every connect fails before it starts, the client is closed,
/// and the log names the server, the source and the kernel's reason.
#[test]
fn a_source_that_cannot_be_bound_fails_the_connection_and_says_why() {
    let redis = Redis::start("", None);
    let fe = free_port();
    let cfg = format!(
        "global\n    nbthread 1\n\n{DEFAULTS}
frontend f
    bind 127.0.0.1:{fe}
    default_backend b

backend b
    retries 1
    source 192.0.2.7
    server r 127.0.0.1:{} source 192.0.2.9
",
        redis.port
    );
    let lb = Lb::start(&cfg, "splice");
    let mut c = RedisConn::connect(local(fe)).expect("lb accepts");
    assert!(
        c.cmd(&["PING"]).is_err(),
        "a connection whose source cannot be bound was served"
    );
    let line = lb.expect_log("source 192.0.2.9:0");
    assert!(
        line.contains("server 'b/r'") && line.contains("Cannot assign requested address"),
        "the log should name the server, the source and why: {line}"
    );
}

/// The port of an `addr=IP:PORT` text.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// `source ADDR:LOW-HIGH` on a server (HAProxy's port range), on each data plane: each
/// connection binds a port of the range no other holds; with every port held the next
/// connection fails (the log says why) and a port comes back when its connection ends. The
/// server's health checks take their ports from the range too.
#[test]
fn a_servers_port_range_gives_each_connection_a_port_of_its_own() {
    let redis = Redis::start_logging();
    // Above the ephemeral range (nothing else takes them), one address per plane.
    for (i, plane) in ["splice", "sockmap", SOCKMAP_AT_ONCE]
        .into_iter()
        .enumerate()
    {
        let (lo, hi) = (61_300 + 10 * i as u16, 61_301 + 10 * i as u16);
        let (chk_lo, chk_hi) = (lo + 5, lo + 7);
        let ip = format!("127.0.0.{}", 20 + i);
        let (fe, fe_chk) = (free_port(), free_port());
        let before = redis.log();
        let cfg = format!(
            "global\n    nbthread 2\n\n{DEFAULTS}
frontend f
    bind 127.0.0.1:{fe}
    default_backend b

frontend fc
    bind 127.0.0.1:{fe_chk}
    default_backend bc

backend b
    retries 0
    server r 127.0.0.1:{r} source {ip}:{lo}-{hi}

backend bc
    option redis-check
    default-server source {ip}:{chk_lo}-{chk_hi}
    server r 127.0.0.1:{r} check inter 100ms
",
            r = redis.port
        );
        let mut lb = Lb::start(&cfg, plane);
        let mut held = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..2 {
            let mut c = RedisConn::connect(local(fe)).expect("connect through lb");
            // `CLIENT INFO`: this connection's own line (`CLIENT LIST` would show the held
            // ones too, with the same last command).
            let info = c.cmd(&["CLIENT", "INFO"]).expect("CLIENT INFO").text();
            let me = info
                .split_whitespace()
                .find_map(|f| f.strip_prefix("addr="))
                .unwrap_or_else(|| panic!("{plane}: no addr= in {info}"))
                .to_owned();
            assert!(me.starts_with(&format!("{ip}:")), "{plane}: came from {me}");
            ports.push(port_of(&me));
            held.push(c);
        }
        ports.sort_unstable();
        assert_eq!(ports, [lo, hi], "{plane}: one port each, both of the range");
        let mut third = RedisConn::connect(local(fe)).expect("lb accepts");
        assert!(
            third.cmd(&["PING"]).is_err(),
            "{plane}: served with no port left"
        );
        let line = lb.expect_log(&format!("source {ip}:{lo}-{hi}"));
        assert!(
            line.contains("no free port left in the range"),
            "{plane}: {line}"
        );
        // A connection that ends gives its port back.
        drop(held.pop());
        assert!(
            poll(Duration::from_secs(10), || own_client_addr_ok(
                local(fe),
                &ip
            )),
            "{plane}: no connection after a port came back"
        );
        // The checks, from the other range only.
        let new = |p: u16| {
            let from = format!("Accepted {ip}:{p}");
            redis.log().matches(&from).count() - before.matches(&from).count()
        };
        assert!(
            poll(Duration::from_secs(10), || (chk_lo..=chk_hi)
                .map(new)
                .sum::<usize>()
                >= 3),
            "{plane}: no check from {ip}:{chk_lo}-{chk_hi}; redis log:\n{}",
            redis.log()
        );
        let all_from_ip = accepted_from(&redis.log(), &ip) - accepted_from(&before, &ip);
        let in_ranges: usize = (lo..=hi).chain(chk_lo..=chk_hi).map(new).sum();
        assert_eq!(
            all_from_ip, in_ranges,
            "{plane}: a connection from outside the ranges"
        );
        lb.stop();
    }
}

/// Whether a `CLIENT LIST` through `via` works and comes from `ip`.
fn own_client_addr_ok(via: std::net::SocketAddr, ip: &str) -> bool {
    let Ok(mut c) = RedisConn::connect(via) else {
        return false;
    };
    c.cmd(&["CLIENT", "INFO"])
        .is_ok_and(|l| l.text().contains(&format!("addr={ip}:")))
}
