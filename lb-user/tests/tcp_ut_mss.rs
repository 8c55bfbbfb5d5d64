//! `bind ... mss N` and `tcp-ut` on a `bind` or a `server`, as in HAProxy: `mss` is the MSS the
//! listener advertises (its accepted connections keep it); `tcp-ut` (`TCP_USER_TIMEOUT`)
//! bounds how long bytes lb sent may stay unacknowledged before the kernel aborts that
//! connection, and lb ends the flow then.
//!
//! In network namespaces of the test's own: lb and a server on one host, the client on
//! another, a second server on a third. A peer that vanishes (its interface down: no FIN, no
//! reset) leaves lb retransmitting; with `tcp-ut 1s` the flow ends within seconds and the other
//! side sees its connection close, without it the flow is still open seconds later (the
//! kernel's own limit is ~15 minutes). Every byte of a 1 MiB echo is checked through each
//! `mss` bind, on every plane.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::line_echo::{exchange, server};
use common::netns::{exec_in, in_netns, Host, Segment};
use common::{free_port, Lb, LbOpts, DEFAULTS, SOCKMAP_AT_ONCE};

/// Bytes of the echo that checks the data path through each `mss` bind.
const BODY: usize = 1 << 20;

/// Longest wait for a flow whose peer vanished to end with `tcp-ut 1s`: the kernel aborts at
/// the first retransmission timeout past the second (RTO 200 ms doubling), lb then ends it.
const ENDS_WITHIN: Duration = Duration::from_secs(15);

/// How long a flow whose peer vanished is watched without `tcp-ut`: still open after it.
const STILL_OPEN_AFTER: Duration = Duration::from_secs(4);

/// The MSS `ss` shows for the established connection with local port `port` in namespace
/// `ns`.
fn ss_mss(ns: &str, port: u16) -> u32 {
    let out = exec_in(
        ns,
        &[
            "ss",
            "-tinH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ],
    );
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("mss:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mss in ss's output for port {port}:\n{out}"))
}

/// The MSS of lb's side of a connection to lb's `port`, while a client in `ns` holds it open.
fn accepted_mss(ns: &str, port: u16) -> u32 {
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let ns = ns.to_string();
        move || {
            in_netns(&ns, move || {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to lb");
                tx.send(()).unwrap();
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
                drop(s);
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mss = ss_mss(ns, port);
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    mss
}

#[test]
fn bind_mss_sets_the_accepted_connections_mss() {
    let mut segment = Segment::new("mss");
    let host = segment.host("h", Ipv4Addr::new(10, 81, 0, 1));
    let echo = server(&host.ns, None, false);
    for plane in ["splice", "sockmap", SOCKMAP_AT_ONCE] {
        let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
        let cfg = format!(
            "global\n    nbthread 1\n\n{DEFAULTS}
frontend plain
    bind 127.0.0.1:{}
    default_backend be

frontend advertised
    bind 127.0.0.1:{} mss 1000
    default_backend be

backend be
    server s {echo}
",
            ports[0], ports[1]
        );
        let lb = Lb::start_with(&LbOpts::new(&cfg, plane).netns(&host.ns));
        let ns = &host.ns;
        let plain = accepted_mss(ns, ports[0]);
        let advertised = accepted_mss(ns, ports[1]);
        eprintln!("{plane}: lb's MSS toward the client: plain {plain}, mss 1000: {advertised}");
        assert!(plain > 1000, "{plane}: loopback's MSS is large: {plain}");
        assert!(
            advertised <= 1000,
            "{plane}: 'mss 1000' gave lb's side an MSS of {advertised}; lb's log:\n{}",
            lb.logs().join("\n")
        );
        // The data path with small segments: every byte, both ways, and the half-close.
        for &port in &ports {
            let line = format!("{plane} {port}\n");
            let got = exchange(ns, port, None, line.clone(), BODY);
            assert_eq!(got, format!("got:{line}"), "{plane}: port {port}");
        }
        drop(lb);
    }
}

/// A server in `ns` on a free port that hands its first accepted connection to the test.
fn one_shot_server(ns: &str, addr: Ipv4Addr) -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let l = in_netns(ns, move || {
        TcpListener::bind(SocketAddr::from((addr, 0))).expect("bind the server")
    });
    let at = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            let _ = tx.send(s);
        }
    });
    (at, rx)
}

/// Whether `s` sees its connection end (EOF or an error) within `within`: `Some(elapsed)`.
fn ends_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < within {
        let left = within
            .saturating_sub(t0.elapsed())
            .max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

/// Takes `host`'s interface down: it sends nothing more, not even a reset.
fn vanish(host: &Host) {
    exec_in(&host.ns, &["ip", "link", "set", &host.ifname, "down"]);
}

/// A client on `client` connected through lb at `lb_at` to the server whose connections
/// `accepted` hands over, one line passed each way so the flow is on its plane.
fn flow(
    client: &Host,
    lb_at: SocketAddr,
    accepted: &mpsc::Receiver<TcpStream>,
) -> (TcpStream, TcpStream) {
    let mut c = in_netns(&client.ns, move || {
        TcpStream::connect(lb_at).expect("connect to lb")
    });
    let mut s = accepted
        .recv_timeout(Duration::from_secs(10))
        .expect("lb connected to the server");
    c.write_all(b"ping\n").unwrap();
    let mut got = [0u8; 5];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut got).unwrap();
    s.write_all(b"pong\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong\n");
    (c, s)
}

#[test]
fn tcp_ut_ends_a_flow_whose_peer_vanished() {
    for plane in ["splice", "sockmap", SOCKMAP_AT_ONCE] {
        for (side, with_ut) in [
            ("client", true),
            ("client", false),
            ("server", true),
            ("server", false),
        ] {
            let mut segment = Segment::new("tut");
            let lb_host = segment.host("l", Ipv4Addr::new(10, 82, 0, 1));
            let client = segment.host("c", Ipv4Addr::new(10, 82, 0, 2));
            let server_host = segment.host("s", Ipv4Addr::new(10, 82, 0, 3));
            let (server_at, accepted) = one_shot_server(&server_host.ns, server_host.addr);
            let port = free_port();
            let (bind_ut, server_ut) = match (side, with_ut) {
                ("client", true) => (" tcp-ut 1s", ""),
                ("server", true) => ("", " tcp-ut 1s"),
                _ => ("", ""),
            };
            let cfg = format!(
                "global\n    nbthread 1\n\n{DEFAULTS}
frontend fe
    bind {}:{port}{bind_ut}
    default_backend be

backend be
    server s {server_at}{server_ut}
",
                lb_host.addr
            );
            let lb = Lb::start_with(&LbOpts::new(&cfg, plane).netns(&lb_host.ns));
            let lb_at = SocketAddr::from((lb_host.addr, port));
            let (mut c, mut s) = flow(&client, lb_at, &accepted);
            // The side that stays writes to the one that vanished; lb's socket toward it is
            // left with bytes nobody acknowledges.
            let what = format!("{plane}, {side} vanished, tcp-ut {with_ut}");
            let (gone, stays) = if side == "client" {
                (&client, &mut s)
            } else {
                (&server_host, &mut c)
            };
            vanish(gone);
            stays.write_all(&vec![7u8; 64 << 10]).unwrap();
            let wait = if with_ut {
                ENDS_WITHIN
            } else {
                STILL_OPEN_AFTER
            };
            let ended = ends_within(stays, wait);
            eprintln!("{what}: the other side saw the end after {ended:?}");
            if with_ut {
                assert!(
                    ended.is_some(),
                    "{what}: the flow was still open after {ENDS_WITHIN:?}; lb's log:\n{}",
                    lb.logs().join("\n")
                );
            } else {
                assert!(
                    ended.is_none(),
                    "{what}: the flow ended without tcp-ut (after {ended:?}): the test does not \
                     show what tcp-ut does"
                );
            }
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
            drop(lb);
        }
    }
}
