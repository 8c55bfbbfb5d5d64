//! `option persist` and `force-persist` (HAProxy's `process_server_rules` and
//! `sticking_rule_find_target`): a connection that `use-server` or `stick match` assigns to a
//! server that is DOWN (a failing check) or in maintenance goes there all the same, while
//! without them the balancing algorithm picks another. `persist rdp-cookie`: the server a
//! session broker's cookie names gets the connection (a request as `mstsc` sends it);
//! `balance rdp-cookie`: a user (`mstshash=NAME`) always reaches the same server. The "DOWN" server here still accepts
//! on its service port (only its check port is closed), so where each connection landed shows.
//! On every plane.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::scenarios::connect_from;
use common::servers::Backend;
use common::stats::{cli, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    use_server_and_stick_take_a_down_server_only_when_persisting,
    force_persist_rules_are_checked,
    persist_rdp_cookie_follows_the_brokers_cookie,
    balance_rdp_cookie_keeps_a_user_on_one_server,
);

/// The name the `ident` server that took a connection from `from` wrote.
fn served_by(from: &str, fe: SocketAddr) -> String {
    let src: IpAddr = from.parse().unwrap();
    let mut s = connect_from(src, fe).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.trim().to_owned()
}

/// A `listen` section on `port` for each of `sections` (`(port, name, lines)`), whose servers
/// are `s1` and `s2`; `s1` is checked on a closed port (DOWN, yet serving) when `down`.
fn config(
    dir: &SockDir,
    (s1, s2): (SocketAddr, SocketAddr),
    down: bool,
    sections: &[(u16, &str, &str)],
) -> String {
    let check = if down {
        format!(" check port {} inter 100ms fall 1 rise 1", free_port())
    } else {
        String::new()
    };
    let mut c = format!(
        "global\n    stats socket {} level admin\n\n{DEFAULTS}\n",
        dir.sock("admin.sock").display()
    );
    for (port, name, lines) in sections {
        let _ = write!(
            c,
            "listen {name}\n    bind 127.0.0.1:{port}\n{lines}    server s1 {s1}{check}\n    \
             server s2 {s2}\n\n"
        );
    }
    c
}

fn use_server_and_stick_take_a_down_server_only_when_persisting(dataplane: &str) {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let dir = SockDir::new("persist");
    let admin = |cmd: &str| cli(&dir.sock("admin.sock"), cmd);
    let (plain, persist) = (free_port(), free_port());
    let cfg = config(
        &dir,
        (s1.addr, s2.addr),
        true,
        &[
            (plain, "plain", "    use-server s1 if TRUE\n"),
            (
                persist,
                "persisting",
                "    option persist\n    use-server s1 if TRUE\n",
            ),
        ],
    );
    let lb = Lb::start(&cfg, dataplane);
    for name in ["plain", "persisting"] {
        assert!(
            lb.wait_for_log(
                &format!("Server {name}/s1 is DOWN"),
                Duration::from_secs(10)
            ),
            "{name}/s1 never went DOWN"
        );
    }
    assert_eq!(served_by("127.0.0.5", local(plain)), "s2", "DOWN: skipped");
    assert_eq!(
        served_by("127.0.0.5", local(persist)),
        "s1",
        "option persist"
    );
    // In maintenance too.
    assert_eq!(admin("set server persisting/s1 state maint"), "\n");
    assert_eq!(
        served_by("127.0.0.5", local(persist)),
        "s1",
        "maint + persist"
    );
    drop(lb);

    // `stick on src`: the client's server, recorded while it was in service, is kept when it
    // goes into maintenance only with `option persist`.
    let (sticky, sticky_plain) = (free_port(), free_port());
    let stick = "    balance first\n    stick-table type ip size 1k\n    stick on src\n";
    let persisting = format!("    option persist\n{stick}");
    let cfg = config(
        &dir,
        (s1.addr, s2.addr),
        false,
        &[
            (sticky, "sticky", &persisting),
            (sticky_plain, "sticky_plain", stick),
        ],
    );
    let _lb = Lb::start(&cfg, dataplane);
    for port in [sticky, sticky_plain] {
        assert_eq!(served_by("127.0.0.7", local(port)), "s1", "balance first");
    }
    for name in ["sticky", "sticky_plain"] {
        assert_eq!(admin(&format!("set server {name}/s1 state maint")), "\n");
    }
    assert_eq!(
        served_by("127.0.0.7", local(sticky)),
        "s1",
        "stick + persist"
    );
    assert_eq!(
        served_by("127.0.0.7", local(sticky_plain)),
        "s2",
        "stick alone"
    );
}

fn force_persist_rules_are_checked(dataplane: &str) {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let dir = SockDir::new("force-persist");
    let port = free_port();
    let cfg = config(
        &dir,
        (s1.addr, s2.addr),
        true,
        &[(
            port,
            "be",
            "    use-server s1 if TRUE\n    force-persist if { src 127.0.0.6 }\n",
        )],
    );
    let lb = Lb::start(&cfg, dataplane);
    assert!(lb.wait_for_log("Server be/s1 is DOWN", Duration::from_secs(10)));
    assert_eq!(served_by("127.0.0.6", local(port)), "s1", "forced");
    assert_eq!(served_by("127.0.0.5", local(port)), "s2", "not forced");
}

/// An RDP connection request (TPKT and X.224 headers, 11 bytes) carrying `Cookie: msts=...`
/// naming `server` as a Windows session broker writes it: the IPv4 address's bytes read as a
/// little-endian number, the port's bytes swapped.
fn rdp_request(server: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = server else {
        panic!("an IPv4 server")
    };
    let ip = u32::from_le_bytes(v4.ip().octets());
    rdp_request_with(&format!("msts={ip}.{}.0000", v4.port().swap_bytes()))
}

/// An RDP connection request with `Cookie: COOKIE` (none when empty).
fn rdp_request_with(cookie: &str) -> Vec<u8> {
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let len = 11 + cookie.len();
    let mut req = vec![
        3,
        0,
        (len >> 8) as u8,
        len as u8,
        (len - 5) as u8,
        0xe0,
        0,
        0,
        0,
        0,
        0,
    ];
    req.extend_from_slice(cookie.as_bytes());
    req
}

/// Who served an RDP client whose request names `named`.
fn rdp_served_by(fe: SocketAddr, named: SocketAddr) -> String {
    rdp_sent(fe, &rdp_request(named))
}

/// Who served an RDP client that sent `request`.
fn rdp_sent(fe: SocketAddr, request: &[u8]) -> String {
    let mut s = connect_from("127.0.0.1".parse().unwrap(), fe).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.trim().to_owned()
}

fn persist_rdp_cookie_follows_the_brokers_cookie(dataplane: &str) {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let dir = SockDir::new("rdp");
    let admin = |cmd: &str| cli(&dir.sock("admin.sock"), cmd);
    let (port, persisting) = (free_port(), free_port());
    let rdp =
        "    tcp-request inspect-delay 5s\n    tcp-request content accept if RDP_COOKIE\n    \
               persist rdp-cookie\n    balance roundrobin\n";
    let with_option = format!("{rdp}    option persist\n");
    let cfg = config(
        &dir,
        (s1.addr, s2.addr),
        false,
        &[
            (port, "rdp", rdp),
            (persisting, "rdp_persist", &with_option),
        ],
    );
    let _lb = Lb::start(&cfg, dataplane);
    for _ in 0..3 {
        assert_eq!(rdp_served_by(local(port), s2.addr), "s2");
        assert_eq!(rdp_served_by(local(port), s1.addr), "s1");
    }
    // A cookie naming no server: round robin.
    let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut seen: Vec<String> = (0..4).map(|_| rdp_served_by(local(port), nobody)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["s1", "s2"]);
    // s2 in maintenance: its cookie is ignored, unless `option persist`.
    for name in ["rdp", "rdp_persist"] {
        assert_eq!(admin(&format!("set server {name}/s2 state maint")), "\n");
    }
    assert_eq!(rdp_served_by(local(port), s2.addr), "s1");
    assert_eq!(rdp_served_by(local(persisting), s2.addr), "s2");
}

fn balance_rdp_cookie_keeps_a_user_on_one_server(dataplane: &str) {
    let (s1, s2) = (Backend::ident("s1"), Backend::ident("s2"));
    let dir = SockDir::new("rdp-balance");
    let port = free_port();
    let rdp =
        "    tcp-request inspect-delay 5s\n    tcp-request content accept if RDP_COOKIE\n    \
               balance rdp-cookie\n";
    let cfg = config(&dir, (s1.addr, s2.addr), false, &[(port, "rdp", rdp)]);
    let _lb = Lb::start(&cfg, dataplane);
    let mut servers = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let request = rdp_request_with(&format!("mstshash={user}"));
        let first = rdp_sent(local(port), &request);
        for _ in 0..3 {
            assert_eq!(rdp_sent(local(port), &request), first, "{user} moved");
        }
        servers.push(first);
    }
    servers.sort();
    servers.dedup();
    assert_eq!(servers, ["s1", "s2"], "six users all hashed to one server");
}
