//! `source ADDR usesrc client|clientip|ADDR2`: transparent proxying, as in HAProxy. A real
//! routed topology of the test's own, three network namespaces:
//!
//! ```text
//! client 10.77.1.2/24 ── 10.77.1.1 [lb, ip_forward] 10.77.2.1 ── 10.77.2.2/24 server
//! (default via 10.77.1.1)                                   (default via 10.77.2.1)
//! ```
//!
//! The server answers lb's transparent connections to the client's address; lb's namespace
//! routes those answers to itself with TPROXY-style policy routing (`ip rule add from
//! 10.77.2.2 iif <server veth> lookup 100`, `ip route add local 10.77.1.0/24 dev lo table
//! 100`: the `-m socket` mark rule does the same for any traffic, where iptables is there).
//!
//! The server (`common::routed`) reports the peer each connection came from (and its local
//! address), then reads to the client's half-close, answers with the SHA-256 of what it got and
//! 1 MiB of its own: with `usesrc clientip` the server sees the client's address, with `usesrc
//! client` its address and port, with `usesrc 10.77.1.50` that address; bytes pass both ways
//! whole, on each data plane; the health checks come from lb's own address (10.77.2.1) and find
//! the server up; `%bi:%bp` logs the foreign address the connection came from. lb runs as `user
//! nobody`: its accept threads keep `CAP_NET_ADMIN` (alone) for the transparent sockets. Both
//! links carry IPv6 too (`2001:db8:77::/64`, `2001:db8:78::/64`, same policy routing with
//! `ip -6`): `usesrc client` over IPv6 (`IPV6_TRANSPARENT`) shows the client's address and port to
//! an IPv6 server, whose checks come from lb's own IPv6 address; an IPv6 client of an IPv4
//! server fails, the log saying why.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::health::poll;
use common::netns::in_netns;
use common::ops::thread_statuses;
use common::routed::{
    exchange, start_server, Routed, CLIENT, CLIENT6, LB_CLIENT_SIDE, LB_CLIENT_SIDE6,
    LB_SERVER_SIDE, LB_SERVER_SIDE6, SERVER, SERVER6,
};
use common::stats::{cli, col, parse_csv, SockDir};
use common::{Lb, LbOpts, DEFAULTS};

const SERVER_PORT: u16 = 9000;
/// The fixed foreign address of `usesrc ADDR`.
const FIXED: &str = "10.77.1.50";

/// The routed topology, and lb's policy routing for the return path: the server's answers to
/// the client's addresses are for lb's transparent sockets.
fn topology() -> Routed {
    let t = Routed::new("tpx", 't');
    t.deliver_locally(&["from", SERVER, "iif", &t.to_server], "10.77.1.0/24");
    t.deliver_locally(&["from", SERVER6, "iif", &t.to_server], "2001:db8:77::/64");
    t
}

/// The check of every server: it passes only when the server says the check came from lb's own
/// address (a plain connect check would reset before the server accepts it).
const CHECK: &str = "    option tcp-check\n    tcp-check expect rstring ^peer=10\\.77\\.2\\.1:";
const CHECK6: &str = "    option tcp-check\n    tcp-check expect string peer=[2001:db8:78::1]:";

fn config(sock: &std::path::Path) -> String {
    let check = "check inter 200ms";
    format!(
        "global\n    nbthread 2\n    user nobody\n    group nogroup\n    stats socket {} level admin\n\n{DEFAULTS}
frontend f_clientip
    bind {LB_CLIENT_SIDE}:8001
    log stderr format raw local0
    log-format \"bsrc=%bi:%bp client=%ci:%cp\"
    default_backend clientip

backend clientip
    source 0.0.0.0 usesrc clientip
{CHECK}
    server s {SERVER}:{SERVER_PORT} {check}

frontend f_client
    bind {LB_CLIENT_SIDE}:8002
    default_backend client

backend client
    source 0.0.0.0 usesrc client
{CHECK}
    server s {SERVER}:{SERVER_PORT} {check}

frontend f_fixed
    bind {LB_CLIENT_SIDE}:8003
    default_backend fixed

backend fixed
{CHECK}
    server s {SERVER}:{SERVER_PORT} source 0.0.0.0 usesrc {FIXED} {check}

frontend f_v6ok
    bind [{LB_CLIENT_SIDE6}]:8005
    default_backend v6ok

backend v6ok
    source :::0 usesrc client
{CHECK6}
    server s [{SERVER6}]:{SERVER_PORT} {check}

frontend f_v6
    bind [{LB_CLIENT_SIDE6}]:8004
    default_backend v6

backend v6
    retries 0
    source 0.0.0.0 usesrc clientip
    server s {SERVER}:{SERVER_PORT}
",
        sock.display()
    )
}

fn transparent_proxying(plane: &str) {
    let t = topology();
    let peers = start_server(&t.server, &[(SERVER, SERVER_PORT), (SERVER6, SERVER_PORT)]);
    let dir = SockDir::new("tproxy");
    let sock = dir.sock("admin");
    let lb = Lb::start_with(&LbOpts::new(&config(&sock), plane).netns(&t.lb));
    let logs = || lb.logs().join("\n");

    for i in 0..2 {
        let x = exchange(
            &t.client,
            LB_CLIENT_SIDE,
            8001,
            &format!("{plane} clientip {i}"),
            &logs,
        );
        assert_eq!(
            x.peer.ip().to_string(),
            CLIENT,
            "{plane}: usesrc clientip: the server saw {}; lb's log:\n{}",
            x.peer,
            logs()
        );
        let bsrc = format!("bsrc={} client={}", x.peer, x.client);
        assert!(
            lb.wait_for_log(&bsrc, Duration::from_secs(5)),
            "{plane}: %bi:%bp is not the foreign address ({bsrc}); lb's log:\n{}",
            logs()
        );

        for (to, port, what) in [
            (LB_CLIENT_SIDE, 8002, "usesrc client"),
            (LB_CLIENT_SIDE6, 8005, "IPv6 usesrc client"),
        ] {
            let x = exchange(&t.client, to, port, &format!("{plane} {what} {i}"), &logs);
            assert_eq!(
                x.peer, x.client,
                "{plane}: {what}: the server saw another address or port than the client's"
            );
        }

        let x = exchange(
            &t.client,
            LB_CLIENT_SIDE,
            8003,
            &format!("{plane} fixed {i}"),
            &logs,
        );
        assert_eq!(
            x.peer.ip().to_string(),
            FIXED,
            "{plane}: usesrc {FIXED}: the server saw {}",
            x.peer
        );
    }

    // Dropped to nobody, the accept threads (`lb-N`, they connect) keep CAP_NET_ADMIN alone
    // for the transparent sockets; every other thread has no capability.
    assert!(
        lb.find_log("the accept threads keep CAP_NET_ADMIN, for usesrc")
            .is_some(),
        "{}",
        logs()
    );
    let threads = thread_statuses(lb.pid()).expect("read /proc/PID/task/*/status");
    let mut accepting = 0;
    for st in &threads {
        let name = st.get("Name").cloned().unwrap_or_default();
        assert_eq!(st["Uid"], "65534\t65534\t65534\t65534", "thread {name}");
        let accept = name
            .strip_prefix("lb-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let caps = if accept {
            accepting += 1;
            "0000000000001000"
        } else {
            "0000000000000000"
        };
        assert_eq!(
            (st["CapEff"].as_str(), st["CapPrm"].as_str()),
            (caps, caps),
            "thread {name}"
        );
    }
    assert_eq!(accepting, 2, "two accept threads");

    // An IPv6 client cannot be the source of a connection to an IPv4 server: the connection
    // fails, and the log names the server and says why.
    let mut s: TcpStream = in_netns(&t.client, || {
        TcpStream::connect(format!("[{LB_CLIENT_SIDE6}]:8004")).expect("connect to lb over IPv6")
    });
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"hello\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{plane}: the IPv6 client got an answer");
    let why = "server 'v6/s': cannot bind to tproxy source address [2001:db8:77::2]:0 \
               (source 0.0.0.0:0 usesrc clientip): the client is IPv6, the server's address \
               10.77.2.2:9000 IPv4";
    assert!(
        lb.wait_for_log(why, Duration::from_secs(5)),
        "{plane}: no log line with `{why}`; lb's log:\n{}",
        logs()
    );

    // The checks come from lb's own address, never a client's (their `expect` says so too),
    // and find the server up.
    let from_lb = || {
        peers
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ip().to_string() == LB_SERVER_SIDE)
            .count()
    };
    assert!(
        poll(Duration::from_secs(10), || from_lb() >= 6),
        "{plane}: fewer than 6 checks came from {LB_SERVER_SIDE}: {:?}; show stat:\n{}",
        peers.lock().unwrap(),
        cli(&sock, "show stat")
    );
    let (_, rows) = parse_csv(&cli(&sock, "show stat"));
    for be in ["clientip", "client", "fixed", "v6ok"] {
        let row = rows
            .iter()
            .find(|r| col(r, "pxname") == be && col(r, "svname") == "s")
            .unwrap_or_else(|| panic!("{be}/s in show stat: {rows:?}"));
        assert_eq!(
            (col(row, "status"), col(row, "check_status")),
            ("UP", "L7OK"),
            "{plane}: {be}/s: {row:?}"
        );
    }
    let others: Vec<SocketAddr> = peers
        .lock()
        .unwrap()
        .iter()
        .filter(|p| {
            ![LB_SERVER_SIDE, CLIENT, FIXED, LB_SERVER_SIDE6, CLIENT6]
                .contains(&p.ip().to_string().as_str())
        })
        .copied()
        .collect();
    assert!(others.is_empty(), "{plane}: connections from {others:?}");
    drop(lb);
}

on_both_planes!(transparent_proxying);
