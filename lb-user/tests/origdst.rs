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

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use sha2::{Digest, Sha256};

use common::data::{hex, DataStream};
use common::netns::{in_netns, ip};
use common::routed::{Routed, CLIENT, LB_SERVER_SIDE, SERVER};
use common::stats::{cli, col, parse_csv, SockDir};
use common::{Lb, LbOpts, DEFAULTS};

/// Bytes each way per connection.
const BODY: usize = 1 << 20;

/// The routed topology, and lb's interception of the client's connections to the server's
/// network: delivered locally, to lb's transparent listeners.
fn topology() -> Routed {
    let t = Routed::new("odst", 'o');
    ip(&[
        "-n",
        &t.lb,
        "rule",
        "add",
        "iif",
        &t.to_client,
        "lookup",
        "100",
    ]);
    ip(&[
        "-n",
        &t.lb,
        "route",
        "add",
        "local",
        "10.77.2.0/24",
        "dev",
        "lo",
        "table",
        "100",
    ]);
    t
}

/// The server's own answer after the client's half-close.
fn server_body() -> Vec<u8> {
    DataStream::new(0x0d57_0d57).take_vec(BODY)
}

/// A server on `SERVER:port` in namespace `ns`: each connection gets `peer=ADDR local=ADDR\n` at
/// once, then, after the client's half-close, `sha=<SHA-256 of the bytes received>\n` and
/// [`server_body`].
fn start_server(ns: &str, port: u16) {
    let l: TcpListener = in_netns(ns, move || {
        TcpListener::bind((SERVER, port)).expect("bind the server")
    });
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let (Ok(peer), Ok(local)) = (c.peer_addr(), c.local_addr()) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                if c.write_all(format!("peer={peer} local={local}\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                let mut sha = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => sha.update(&buf[..n]),
                        Err(_) => return,
                    }
                }
                let _ = c.write_all(format!("sha={}\n", hex(&sha.finalize())).as_bytes());
                let _ = c.write_all(&server_body());
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
}

/// What the server said of the connection lb made: its peer and its local address.
struct Seen {
    client: SocketAddr,
    peer: String,
    local: String,
}

/// Connects from the client namespace to the server's address `SERVER:port` (intercepted by
/// lb), sends [`BODY`] bytes and half-closes, reads to the end: checks the server got every
/// byte (its SHA-256) and its answer came whole after the half-close.
fn exchange(ns: &str, port: u16, what: &str, logs: &dyn Fn() -> String) -> Seen {
    let mut s: TcpStream = in_netns(ns, move || {
        TcpStream::connect_timeout(
            &SocketAddr::new(SERVER.parse().unwrap(), port),
            Duration::from_secs(10),
        )
        .expect("connect to the server's address")
    });
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let client = s.local_addr().unwrap();
    let sent = DataStream::new(u64::from(port)).take_vec(BODY);
    let want_sha = hex(&Sha256::digest(&sent));
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&sent);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    writer.join().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut lines = got.splitn(3, |b| *b == b'\n');
    let first = lines.next().map(text).unwrap_or_default();
    let sha = lines.next().map(text).unwrap_or_default();
    let body = lines.next().unwrap_or_default();
    let Some((peer, local)) = first
        .strip_prefix("peer=")
        .and_then(|r| r.split_once(" local="))
    else {
        panic!(
            "{what}: the server was not reached ({read:?}, {} bytes: {:?}); lb's log:\n{}",
            got.len(),
            text(&got[..got.len().min(200)]),
            logs()
        );
    };
    assert_eq!(
        sha,
        format!("sha={want_sha}"),
        "{what}: the server did not get the client's bytes whole"
    );
    assert_eq!(
        body.len(),
        BODY,
        "{what}: the server's answer came short after the half-close"
    );
    assert!(
        body == server_body().as_slice(),
        "{what}: the server's answer came altered"
    );
    Seen {
        client,
        peer: peer.to_owned(),
        local: local.to_owned(),
    }
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
    for port in [9000, 9001, 9002] {
        start_server(&t.server, port);
    }
    let dir = SockDir::new("origdst");
    let sock = dir.sock("admin");
    let lb = Lb::start_with(&LbOpts::new(&config(&sock), plane).netns(&t.lb));
    let logs = || lb.logs().join("\n");

    for i in 0..2 {
        // `option transparent`, no server: the whole original destination, address and port.
        let x = exchange(&t.client, 9001, &format!("{plane} transparent {i}"), &logs);
        assert_eq!(x.local, format!("{SERVER}:9001"), "{plane}: transparent");
        let peer: SocketAddr = x.peer.parse().unwrap();
        assert_eq!(
            peer.ip().to_string(),
            LB_SERVER_SIDE,
            "{plane}: the connection to the original destination is lb's own"
        );
        let line = format!(
            "origdst {} {SERVER}:9001 transparent/<NOSRV> {SERVER}:9001 --",
            x.client
        );
        assert!(
            lb.wait_for_log(&line, Duration::from_secs(5)),
            "{plane}: no log line `{line}`; lb's log:\n{}",
            logs()
        );

        // A rule's server is still the server: not balanced, but named.
        let x = exchange(&t.client, 9005, &format!("{plane} use-server {i}"), &logs);
        assert_eq!(x.local, format!("{SERVER}:9002"), "{plane}: use-server");
        let line = format!(
            "origdst {} {SERVER}:9005 transparent/s {SERVER}:9002 --",
            x.client
        );
        assert!(
            lb.wait_for_log(&line, Duration::from_secs(5)),
            "{plane}: no log line `{line}`; lb's log:\n{}",
            logs()
        );

        // A server without an address or a port: the client's destination address and port.
        let x = exchange(&t.client, 9000, &format!("{plane} 0.0.0.0 {i}"), &logs);
        assert_eq!(x.local, format!("{SERVER}:9000"), "{plane}: server 0.0.0.0");
        let line = format!(
            "origdst {} {SERVER}:9000 noaddr/s {SERVER}:9000 --",
            x.client
        );
        assert!(
            lb.wait_for_log(&line, Duration::from_secs(5)),
            "{plane}: no log line `{line}`; lb's log:\n{}",
            logs()
        );

        // A server without an address, with a port: the client's address, the server's port.
        let x = exchange(&t.client, 9003, &format!("{plane} *:9002 {i}"), &logs);
        assert_eq!(x.local, format!("{SERVER}:9002"), "{plane}: server *:9002");
        assert_eq!(
            x.client.ip().to_string(),
            CLIENT,
            "{plane}: the client's own address"
        );
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
