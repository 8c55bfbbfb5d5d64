//! Connections to the client's original destination, as HAProxy makes them: a server without
//! an address (`server s 0.0.0.0`, `server s *:PORT`) and `option transparent` with no server.
//! The routed topology of `common::routed` (client, lb, server namespaces), where lb intercepts
//! the client's connections to the server's own address without iptables: lb's namespace
//! delivers locally what comes from the client for the server's network (`ip rule add iif
//! <client veth> lookup 100`, `ip route add local 10.77.2.0/24 dev lo table 100`), and lb
//! listens with `bind 0.0.0.0:PORT transparent` (`IP_TRANSPARENT`: its answers may come from
//! the non-local address the client asked for). `getsockname` of an accepted connection is
//! then the client's original destination, which lb connects to.
//!
//! The client connects to 10.77.2.2 (the server's address, not lb's); the server reports the
//! peer and the local address of each connection, then reads to the client's half-close and
//! answers with the SHA-256 of what it got and 1 MiB of its own. With `server s 0.0.0.0` lb
//! connects to 10.77.2.2:9000 (the client's port), with `server s *:9002` to 10.77.2.2:9002,
//! with `option transparent` and no server to 10.77.2.2:9001 (address and port), logged
//! `<NOSRV>` and counted on the backend only, while a `use-server` rule still picks its server;
//! bytes pass both ways whole, on each data plane.

#[macro_use]
mod common;

use std::time::Duration;

use common::routed::{exchange, start_server, Routed, BODY, CLIENT, LB_SERVER_SIDE, SERVER};
use common::stats::{cli, col, parse_csv, SockDir};
use common::{Lb, LbOpts, DEFAULTS};

/// The routed topology, and lb's interception of the client's connections to the server's
/// network: delivered locally, to lb's transparent listeners.
fn topology() -> Routed {
    let t = Routed::new("odst", 'o');
    t.deliver_locally(&["iif", &t.to_client], "10.77.2.0/24");
    t
}

fn config(sock: &std::path::Path) -> String {
    let log = "    log stderr format raw local0\n    \
               log-format \"origdst %ci:%cp %fi:%fp %b/%s %si:%sp %ts\"\n    maxconn 50";
    format!(
        "global\n    nbthread 2\n    stats socket {} level admin\n\n{DEFAULTS}
frontend f_transparent
    bind 0.0.0.0:9001 transparent
    bind 0.0.0.0:9005 transparent
{log}
    default_backend transparent

backend transparent
    option transparent
    use-server s if {{ dst_port 9005 }}
    server s {SERVER}:9002

frontend f_noaddr
    bind 0.0.0.0:9000 transparent
{log}
    default_backend noaddr

backend noaddr
    server s 0.0.0.0

frontend f_anyport
    bind 0.0.0.0:9003 transparent
{log}
    default_backend anyport

backend anyport
    server s *:9002
",
        sock.display()
    )
}

/// One round of each kind, twice: the server is reached at the client's original destination.
fn original_destination(plane: &str) {
    let t = topology();
    start_server(&t.server, &[(SERVER, 9000), (SERVER, 9001), (SERVER, 9002)]);
    let dir = SockDir::new("origdst");
    let sock = dir.sock("admin");
    let lb = Lb::start_with(&LbOpts::new(&config(&sock), plane).netns(&t.lb));
    let logs = || lb.logs().join("\n");

    // The port the client connects to, what it tests, the port the server is reached on, and
    // the backend/server logged.
    let kinds = [
        // `option transparent`, no server: the whole original destination, address and port.
        (9001, "transparent", 9001, "transparent/<NOSRV>"),
        // A rule's server is still the server: not balanced, but named.
        (9005, "use-server", 9002, "transparent/s"),
        // A server without an address or a port: the client's destination address and port.
        (9000, "server 0.0.0.0", 9000, "noaddr/s"),
        // A server without an address, with a port: the client's address, the server's port.
        (9003, "server *:9002", 9002, "anyport/s"),
    ];
    for i in 0..2 {
        for (port, what, reached, logged) in kinds {
            let x = exchange(
                &t.client,
                SERVER,
                port,
                &format!("{plane} {what} {i}"),
                &logs,
            );
            assert_eq!(
                x.local.to_string(),
                format!("{SERVER}:{reached}"),
                "{plane}: {what}"
            );
            assert_eq!(
                x.peer.ip().to_string(),
                LB_SERVER_SIDE,
                "{plane}: {what}: the connection to the original destination is lb's own"
            );
            assert_eq!(
                x.client.ip().to_string(),
                CLIENT,
                "{plane}: {what}: the client's own address"
            );
            let line = format!(
                "origdst {} {SERVER}:{port} {logged} {SERVER}:{reached} --",
                x.client
            );
            assert!(
                lb.wait_for_log(&line, Duration::from_secs(5)),
                "{plane}: no log line `{line}`; lb's log:\n{}",
                logs()
            );
        }
    }

    // Statistics as HAProxy's: the connections `option transparent` sent are the backend's
    // (sessions, bytes), no server's; a server's are its own (and the backend's).
    let (_, rows) = parse_csv(&cli(&sock, "show stat"));
    let row = |px: &str, sv: &str| {
        rows.iter()
            .find(|r| col(r, "pxname") == px && col(r, "svname") == sv)
            .unwrap_or_else(|| panic!("{px}/{sv} in show stat: {rows:?}"))
            .clone()
    };
    let num = |r: &[(String, String)], c: &str| -> u64 { col(r, c).parse().unwrap_or(0) };
    let be = row("transparent", "BACKEND");
    let s = row("transparent", "s");
    assert_eq!(num(&be, "stot"), 4, "{plane}: transparent stot: {be:?}");
    assert_eq!(num(&s, "stot"), 2, "{plane}: transparent/s stot: {s:?}");
    assert!(
        num(&be, "bin") >= 4 * BODY as u64 && num(&be, "bout") >= 4 * BODY as u64,
        "{plane}: transparent bytes: {be:?}"
    );
    assert!(
        num(&s, "bin") >= 2 * BODY as u64 && num(&s, "bin") < 3 * BODY as u64,
        "{plane}: transparent/s bytes: {s:?}"
    );
    let s = row("noaddr", "s");
    assert_eq!(num(&s, "stot"), 2, "{plane}: noaddr/s stot: {s:?}");
    assert!(
        num(&s, "bin") >= 2 * BODY as u64,
        "{plane}: noaddr/s bytes: {s:?}"
    );
    drop(lb);
}

on_both_planes!(original_destination);
