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
