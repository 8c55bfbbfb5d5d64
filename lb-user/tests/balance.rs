//! Server choice through the real lb: `balance` algorithms and weights, backups, `disabled`,
//! retries/redispatch on refused connects, `no server available`, and the `maxconn` queue.
//! Choice is made before the data plane is involved, but every test still runs on both planes
//! (short connections stress the plane's setup and teardown).

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::data::{read_line, read_until_end, ReadEnd};
use common::scenarios::{self, Held};
use common::servers::{refusing_addr, Backend, Note};
use common::{free_port, local, simple_config, Lb};

on_both_planes!(
    roundrobin_weights_exact_and_interleaved,
    static_rr_weights_exact,
    leastconn_prefers_least_loaded,
    source_same_ip_same_server,
    first_fills_lowest_id_up_to_maxconn,
    backup_only_first_without_allbackups,
    allbackups_spreads_over_backups,
    backup_unused_while_normal_servers_up,
    disabled_server_gets_nothing,
    redispatch_reaches_alive_server,
    no_server_available_closes_client,
    maxconn_queue_limits_and_keeps_order,
    minconn_limit_grows_with_the_backend_load,
    slowstart_ramps_the_limit_and_lets_the_queue_in,
    abortonclose_drops_a_queued_client_that_closed,
    abortonclose_aborts_a_connect_the_client_left,
);

/// `server` line for `b` with extra keywords.
fn srv(b: &Backend, extra: &str) -> String {
    format!("{} {} {extra}", b.name, b.addr)
}

fn start(dataplane: &str, backend_lines: &[&str], servers: &[String]) -> (Lb, SocketAddr) {
    let port = free_port();
    let cfg = simple_config(port, backend_lines, servers);
    (Lb::start(&cfg, dataplane), local(port))
}

/// `n` sequential connections; the server name each one reached.
fn sequence(addr: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| scenarios::who(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect()
}

fn counts(seq: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for s in seq {
        *m.entry(s.as_str()).or_default() += 1;
    }
    m
}

fn three(kind: fn(&str) -> Backend) -> [Backend; 3] {
    [kind("s1"), kind("s2"), kind("s3")]
}

fn roundrobin_weights_exact_and_interleaved(dataplane: &str) {
    let [s1, s2, s3] = three(Backend::ident);
    let (_lb, addr) = start(
        dataplane,
        &["balance roundrobin"],
        &[
            srv(&s1, "weight 1"),
            srv(&s2, "weight 2"),
            srv(&s3, "weight 3"),
        ],
    );
    let seq = sequence(addr, 600);
    let c = counts(&seq);
    assert_eq!(
        c,
        BTreeMap::from([("s1", 100), ("s2", 200), ("s3", 300)]),
        "weights 1/2/3 over 600 connections"
    );
    // Smooth: no burst of the heavy server, and every run of 6 (one weight cycle) is close to the
    // weights wherever it starts.
    for (i, w) in seq.windows(3).enumerate() {
        assert!(
            !w.iter().all(|s| s == "s3"),
            "s3 (weight 3) picked 3 times in a row at {i}: {:?}",
            &seq[..(i + 12).min(seq.len())]
        );
    }
    let weight = BTreeMap::from([("s1", 1i64), ("s2", 2), ("s3", 3)]);
    for (i, w) in seq.windows(6).enumerate() {
        let c = counts(w);
        for (name, want) in &weight {
            let got = c.get(name).copied().unwrap_or(0) as i64;
            assert!(
                (got - want).abs() <= 1,
                "window {i}..{} has {name} {got} times (weight {want}): {w:?}",
                i + 6
            );
        }
    }
}

fn static_rr_weights_exact(dataplane: &str) {
    let [s1, s2, s3] = three(Backend::ident);
    let (_lb, addr) = start(
        dataplane,
        &["balance static-rr"],
        &[
            srv(&s1, "weight 1"),
            srv(&s2, "weight 2"),
            srv(&s3, "weight 3"),
        ],
    );
    let seq = sequence(addr, 600);
    let c = counts(&seq);
    assert_eq!(c, BTreeMap::from([("s1", 100), ("s2", 200), ("s3", 300)]));
}

fn held_counts(held: &[Held]) -> (usize, usize) {
    let n1 = held.iter().filter(|h| h.server == "s1").count();
    (n1, held.len() - n1)
}

fn leastconn_prefers_least_loaded(dataplane: &str) {
    let s1 = Backend::ident_hold("s1");
    let s2 = Backend::ident_hold("s2");
    let (_lb, addr) = start(
        dataplane,
        &["balance leastconn"],
        &[srv(&s1, ""), srv(&s2, "")],
    );
    // With equal weights every new connection goes to the server with fewer.
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(Held::open(addr).unwrap_or_else(|e| panic!("held {i}: {e}")));
        let (a, b) = held_counts(&held);
        assert!(
            a.abs_diff(b) <= 1,
            "after {} connections: s1 {a}, s2 {b}",
            i + 1
        );
    }
    assert_eq!(held_counts(&held), (2, 2));
    // Free s1 entirely: the next two connections must both go there (roundrobin would alternate).
    let (on_s1, on_s2): (Vec<_>, Vec<_>) = held.into_iter().partition(|h| h.server == "s1");
    for h in on_s1 {
        h.close().unwrap();
    }
    assert!(
        s1.wait_current(0, Duration::from_secs(5)),
        "s1 still has connections"
    );
    // lb learns that the server side closed a moment after the server does; nothing observable
    // tells when, so give it a short grace.
    thread::sleep(Duration::from_millis(200));
    let a = Held::open(addr).unwrap();
    let b = Held::open(addr).unwrap();
    assert_eq!(
        (a.server.as_str(), b.server.as_str()),
        ("s1", "s1"),
        "s2 held 2, s1 none: leastconn must fill s1 first"
    );
    let c = Held::open(addr).unwrap();
    assert!(c.server == "s1" || c.server == "s2");
    for h in on_s2.into_iter().chain([a, b, c]) {
        h.close().unwrap();
    }
}

fn source_same_ip_same_server(dataplane: &str) {
    let [s1, s2, s3] = three(Backend::ident);
    let (_lb, addr) = start(
        dataplane,
        &["balance source"],
        &[srv(&s1, ""), srv(&s2, ""), srv(&s3, "")],
    );
    let seq = sequence(addr, 50);
    let c = counts(&seq);
    assert_eq!(
        c.len(),
        1,
        "50 connections from 127.0.0.1 spread over {c:?}"
    );
    let mut used = BTreeSet::new();
    for last in 2..=20u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let a = scenarios::who_from(ip, addr).unwrap_or_else(|e| panic!("{ip}: {e}"));
        let b = scenarios::who_from(ip, addr).unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert_eq!(a, b, "{ip} went to {a} then {b}");
        used.insert(a);
    }
    assert!(used.len() > 1, "19 source addresses all hashed to {used:?}");
}

fn first_fills_lowest_id_up_to_maxconn(dataplane: &str) {
    let [s1, s2, s3] = three(Backend::ident_hold);
    let (_lb, addr) = start(
        dataplane,
        &["balance first"],
        &[srv(&s1, "maxconn 2"), srv(&s2, "maxconn 2"), srv(&s3, "")],
    );
    let held: Vec<Held> = (0..5)
        .map(|i| Held::open(addr).unwrap_or_else(|e| panic!("held {i}: {e}")))
        .collect();
    let names: Vec<&str> = held.iter().map(|h| h.server.as_str()).collect();
    assert_eq!(names, ["s1", "s1", "s2", "s2", "s3"]);
    assert!(s1.max_current() <= 2 && s2.max_current() <= 2);
    for h in held {
        h.close().unwrap();
    }
    assert_eq!(s3.accepted(), 1);
}

fn backups(dataplane: &str, allbackups: bool) -> (Vec<String>, [Backend; 4]) {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let b1 = Backend::ident("b1");
    let b2 = Backend::ident("b2");
    let mut lines = vec!["balance roundrobin"];
    if allbackups {
        lines.push("option allbackups");
    }
    let (_lb, addr) = start(
        dataplane,
        &lines,
        &[
            srv(&s1, "disabled"),
            srv(&s2, "disabled"),
            srv(&b1, "backup"),
            srv(&b2, "backup"),
        ],
    );
    (sequence(addr, 20), [s1, s2, b1, b2])
}

fn backup_only_first_without_allbackups(dataplane: &str) {
    let (seq, [s1, s2, _, b2]) = backups(dataplane, false);
    assert_eq!(counts(&seq), BTreeMap::from([("b1", 20)]));
    assert_eq!((s1.accepted(), s2.accepted(), b2.accepted()), (0, 0, 0));
}

fn allbackups_spreads_over_backups(dataplane: &str) {
    let (seq, [s1, s2, ..]) = backups(dataplane, true);
    let c = counts(&seq);
    assert_eq!(c.values().sum::<usize>(), 20);
    assert!(
        c.get("b1").copied().unwrap_or(0) >= 5 && c.get("b2").copied().unwrap_or(0) >= 5,
        "option allbackups with roundrobin should share 20 connections: {c:?}"
    );
    assert_eq!((s1.accepted(), s2.accepted()), (0, 0));
}

fn backup_unused_while_normal_servers_up(dataplane: &str) {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let b1 = Backend::ident("b1");
    let (_lb, addr) = start(
        dataplane,
        &["balance roundrobin"],
        &[srv(&s1, ""), srv(&s2, ""), srv(&b1, "backup")],
    );
    let seq = sequence(addr, 20);
    let c = counts(&seq);
    assert_eq!(c, BTreeMap::from([("s1", 10), ("s2", 10)]));
    assert_eq!(b1.accepted(), 0);
}

fn disabled_server_gets_nothing(dataplane: &str) {
    let [s1, s2, s3] = three(Backend::ident);
    let (_lb, addr) = start(
        dataplane,
        &["balance roundrobin"],
        &[srv(&s1, "disabled"), srv(&s2, ""), srv(&s3, "")],
    );
    let seq = sequence(addr, 30);
    let c = counts(&seq);
    assert_eq!(c, BTreeMap::from([("s2", 15), ("s3", 15)]));
    assert_eq!(s1.accepted(), 0, "a disabled server was connected to");
}

fn redispatch_reaches_alive_server(dataplane: &str) {
    let s2 = Backend::ident("s2");
    let (lb, addr) = start(
        dataplane,
        &[
            "balance roundrobin",
            "retries 2",
            "option redispatch",
            "timeout connect 200ms",
        ],
        &[format!("s1 {}", refusing_addr()), srv(&s2, "")],
    );
    for i in 0..10 {
        let t0 = Instant::now();
        let who = scenarios::who(addr).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(who, "s2", "client {i}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "client {i} took {:?}",
            t0.elapsed()
        );
    }
    assert!(lb.find_log("no server available").is_none());
}

fn no_server_available_closes_client(dataplane: &str) {
    let port = free_port();
    let cfg = format!(
        "global\n    maxconn 100\n\ndefaults\n    mode tcp\n    timeout connect 200ms\n    \
         timeout client 30s\n    timeout server 30s\n    retries 2\n\n\
         frontend front_nosrv\n    bind 127.0.0.1:{port}\n    default_backend back_nosrv\n\n\
         backend back_nosrv\n    server s1 {}\n",
        refusing_addr()
    );
    let lb = Lb::start(&cfg, dataplane);
    let mut s = scenarios::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A request lb will never pass on: lb reads and drops it, so that its close is a FIN (as
    // HAProxy's), not the reset that closing over unread bytes would send.
    s.write_all(b"PING request that no server will see\r\n")
        .unwrap();
    let t0 = Instant::now();
    let (end, n) = read_until_end(&mut s, t0 + Duration::from_secs(5));
    assert!(
        end == ReadEnd::Eof && n == 0,
        "client not closed with a FIN within 5 s with no server: {end:?} after {:?}, {n} bytes",
        t0.elapsed()
    );
    assert!(
        lb.wait_for_log("no server available", Duration::from_secs(5)),
        "no `no server available` log line"
    );
    let line = lb.find_log("no server available").unwrap();
    assert!(
        line.contains("front_nosrv") && line.contains("back_nosrv"),
        "the log line should name frontend and backend: {line}"
    );
}

fn maxconn_queue_limits_and_keeps_order(dataplane: &str) {
    const CLIENTS: usize = 10;
    let q = Backend::queue_probe("q1", Duration::from_millis(300));
    let (_lb, addr) = start(
        dataplane,
        &["balance roundrobin", "timeout queue 20s"],
        &[srv(&q, "maxconn 2")],
    );
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(thread::spawn(move || -> Result<(), String> {
            let mut s = scenarios::connect(addr)?;
            s.write_all(format!("c{i}\n").as_bytes())
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(20);
            let line = read_line(&mut s, deadline).map_err(|e| e.to_string())?;
            if line != format!("ok c{i}") {
                return Err(format!("got {line:?}"));
            }
            match read_until_end(&mut s, deadline) {
                (ReadEnd::Eof, 0) => Ok(()),
                other => Err(format!("end {other:?}")),
            }
        }));
        // Connects 50 ms apart so that the queue order is defined.
        thread::sleep(Duration::from_millis(50));
    }
    for (i, c) in clients.into_iter().enumerate() {
        c.join()
            .expect("client panicked")
            .unwrap_or_else(|e| panic!("client c{i} not served: {e}"));
    }
    assert!(
        q.max_current() <= 2,
        "server saw {} concurrent connections with maxconn 2",
        q.max_current()
    );
    let mut served: Vec<(u64, String)> = q
        .notes()
        .into_iter()
        .filter_map(|n| match n {
            Note::Id { key, id } => Some((key, id)),
            _ => None,
        })
        .collect();
    served.sort();
    let order: Vec<String> = served.into_iter().map(|(_, id)| id).collect();
    // lb hands freed slots out in queue order; two slots freed together (maxconn 2) are
    // granted in order, but their connects may reach the server in either order. So each
    // client is at most one place from its connect order, and the order is otherwise kept.
    assert_eq!(order.len(), CLIENTS, "{order:?}");
    for (pos, id) in order.iter().enumerate() {
        let i: usize = id[1..].parse().unwrap();
        assert!(
            i.abs_diff(pos) <= 1,
            "served order differs from connect order beyond a swap of two: {order:?}"
        );
    }
}

/// The CSV rows of `show stat` on `s`'s admin socket: (server `scur`, backend `qcur`,
/// backend `scur`, backend `slim`).
fn load_figures(s: &common::stats::Setup) -> (String, String, String, String) {
    use common::stats::{col, parse_csv};
    let (_, rows) = parse_csv(&s.admin("show stat"));
    let row = |sv: &str| {
        rows.iter()
            .find(|r| col(r, "pxname") == "be" && col(r, "svname") == sv)
            .unwrap_or_else(|| panic!("no row be/{sv}"))
            .clone()
    };
    let (e, be) = (row("e"), row("BACKEND"));
    (
        col(&e, "scur").to_owned(),
        col(&be, "qcur").to_owned(),
        col(&be, "scur").to_owned(),
        col(&be, "slim").to_owned(),
    )
}

/// `minconn` below `maxconn`: HAProxy's dynamic limit, `beconn * maxconn / fullconn` and never
/// below `minconn`, where `beconn` counts every session of the backend, queued ones too. With
/// `minconn 1 maxconn 4` and `fullconn 8`: 4 sessions let 2 onto the server (2 wait), 8 let 4
/// on. The backend's `scur` is `beconn` (HAProxy's), its `slim` the `fullconn`.
fn minconn_limit_grows_with_the_backend_load(dataplane: &str) {
    let e = Backend::echo("e");
    let s = common::stats::start(
        "minconn",
        dataplane,
        &["fullconn 8", "timeout queue 30s"],
        &[srv(&e, "minconn 1 maxconn 4")],
    );
    let figures = |want: (&str, &str, &str, &str), when: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = load_figures(&s);
            if (
                got.0.as_str(),
                got.1.as_str(),
                got.2.as_str(),
                got.3.as_str(),
            ) == want
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: (server scur, backend qcur, backend scur, slim) = {got:?}, want {want:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    figures(("0", "0", "0", "8"), "idle");
    let mut held: Vec<std::net::TcpStream> = (0..4)
        .map(|i| scenarios::connect(s.fe).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    figures(("2", "2", "4", "8"), "4 sessions");
    held.extend(
        (4..8).map(|i| scenarios::connect(s.fe).unwrap_or_else(|e| panic!("client {i}: {e}"))),
    );
    figures(("4", "4", "8", "8"), "8 sessions");
    // Each one served in the end, its bytes echoed, as others leave (in no set order: two
    // threads' arrivals queue in the order they reach the backend).
    let clients: Vec<_> = held
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let line = format!("c{i}\n");
                c.write_all(line.as_bytes()).unwrap();
                let got = read_line(&mut c, Instant::now() + Duration::from_secs(15))
                    .unwrap_or_else(|err| panic!("client {i}: {err}"));
                assert_eq!(format!("{got}\n"), line, "client {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client was not served");
    }
    figures(("0", "0", "0", "8"), "all gone");
}

/// `slowstart`: a server coming back UP takes 1 % of its `maxconn` at first (at least one
/// connection), the share growing with the ramp, as HAProxy's STARTING state; a queued
/// connection gets in when the ramp alone raises the limit (no connection ended). The CSV's
/// `throttle` shows the ramp, and nothing once it is over.
fn slowstart_ramps_the_limit_and_lets_the_queue_in(dataplane: &str) {
    use common::stats::{col, parse_csv};
    let e = Backend::echo("e");
    let s = common::stats::start(
        "slowstart",
        dataplane,
        &["timeout queue 30s"],
        &[srv(&e, "maxconn 4 weight 100 slowstart 4s")],
    );
    let server_row = || {
        let (_, rows) = parse_csv(&s.admin("show stat"));
        rows.into_iter()
            .find(|r| col(r, "svname") == "e")
            .expect("row be/e")
    };
    let queued = || {
        let (_, rows) = parse_csv(&s.admin("show stat"));
        let be = rows
            .iter()
            .find(|r| col(r, "svname") == "BACKEND")
            .expect("row be/BACKEND");
        col(be, "qcur").to_owned()
    };
    assert_eq!(col(&server_row(), "throttle"), "", "no ramp at start");
    assert_eq!(s.admin("set server be/e health down"), "\n");
    assert_eq!(s.admin("set server be/e health up"), "\n");
    let up = Instant::now();
    let throttle: u64 = col(&server_row(), "throttle")
        .parse()
        .expect("throttle shown");
    assert!(throttle < 50, "throttle {throttle} % right after coming up");
    let mut first = scenarios::connect(s.fe).unwrap();
    first.write_all(b"a\n").unwrap();
    assert_eq!(
        read_line(&mut first, Instant::now() + Duration::from_secs(5)).unwrap(),
        "a"
    );
    let mut second = scenarios::connect(s.fe).unwrap();
    second.write_all(b"b\n").unwrap();
    assert!(
        common::servers::wait_until(Duration::from_secs(1), || queued() == "1"),
        "the second connection was not held back by the ramp's limit ({}s after UP)",
        up.elapsed().as_secs_f32()
    );
    // 2 of 4 at half the ramp: the ramp lets it in, the first connection still open.
    assert_eq!(
        read_line(&mut second, Instant::now() + Duration::from_secs(10)).unwrap(),
        "b"
    );
    assert!(
        up.elapsed() >= Duration::from_millis(1500),
        "let in {:?} after UP, before the ramp allowed a second connection",
        up.elapsed()
    );
    assert!(
        common::servers::wait_until(Duration::from_secs(10), || col(&server_row(), "throttle")
            .is_empty()),
        "the ramp never ended"
    );
    drop(first);
}

/// `option abortonclose`: a client that closes while its connection waits in the queue is
/// dropped there (`CQ` in its log line, the queue empty at once), and never reaches the server
/// once a place frees; without the option it still does, as HAProxy's default.
fn abortonclose_drops_a_queued_client_that_closed(dataplane: &str) {
    for abort in [true, false] {
        let e = Backend::echo("e");
        let port = free_port();
        let cfg = format!(
            "global\n    log stderr format raw daemon\n\n{}    log global\n    option tcplog\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend be\n    timeout queue 30s\n{}    server e {} maxconn 1\n",
            common::DEFAULTS,
            if abort { "    option abortonclose\n" } else { "" },
            e.addr
        );
        let lb = Lb::start(&cfg, dataplane);
        let addr = local(port);
        let mut first = scenarios::connect(addr).unwrap();
        first.write_all(b"one\n").unwrap();
        assert_eq!(
            read_line(&mut first, Instant::now() + Duration::from_secs(5)).unwrap(),
            "one"
        );
        let mut second = scenarios::connect(addr).unwrap();
        second.write_all(b"two\n").unwrap();
        let me = second.local_addr().unwrap().port();
        thread::sleep(Duration::from_millis(200));
        second.shutdown(std::net::Shutdown::Write).unwrap();
        if abort {
            let line = lb.expect_log(&format!("127.0.0.1:{me} ["));
            assert!(
                line.contains(" fe be/<NOSRV> ") && line.contains(" CQ "),
                "{line}"
            );
        }
        drop(first);
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut second, &mut rest);
        if abort {
            assert!(rest.is_empty(), "an aborted client got {rest:?}");
            thread::sleep(Duration::from_millis(300));
            assert_eq!(e.accepted(), 1, "the aborted client reached the server");
        } else {
            assert_eq!(
                rest, b"two\n",
                "served once the first left, its FIN passed on"
            );
            assert_eq!(e.accepted(), 2);
        }
    }
}

/// A server whose accept queue is full: its kernel drops new SYNs, so a connect to it stays
/// in `SYN_SENT` (the SYN retransmitted after 1 s, 3 s, ...) until the queue has room. Returns
/// the listener and the connection that fills its queue.
fn stalled_server() -> (std::net::TcpListener, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    // Backlog 0: one queued connection fills it.
    s.listen(0).unwrap();
    let l: std::net::TcpListener = s.into();
    let filler = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (l, filler)
}

/// `option abortonclose`: a client that closes while lb still connects to its server aborts
/// the connect (`CC`, the server named), and the server never sees a connection from it
/// when its queue frees; without the option, lb goes on connecting and passes the client's
/// bytes and FIN once the server takes the connection, as HAProxy's default.
fn abortonclose_aborts_a_connect_the_client_left(dataplane: &str) {
    for abort in [true, false] {
        let (server, filler) = stalled_server();
        let port = free_port();
        let cfg = format!(
            "global\n    log stderr format raw daemon\n\ndefaults\n    mode tcp\n    \
             timeout connect 10s\n    timeout client 30s\n    timeout server 30s\n    log \
             global\n    option tcplog\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
             default_backend be\n\nbackend be\n{}    server s {}\n",
            if abort {
                "    option abortonclose\n"
            } else {
                ""
            },
            server.local_addr().unwrap()
        );
        let lb = Lb::start(&cfg, dataplane);
        let mut client = scenarios::connect(local(port)).unwrap();
        client.write_all(b"x").unwrap();
        let me = client.local_addr().unwrap().port();
        // lb is in its connect now (its SYN dropped by the full queue).
        thread::sleep(Duration::from_millis(300));
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let left = Instant::now();
        if abort {
            let line = lb.expect_log(&format!("127.0.0.1:{me} ["));
            assert!(
                line.contains(" fe be/s ") && line.contains(" CC "),
                "{line}"
            );
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut client, &mut rest);
            assert!(rest.is_empty(), "an aborted client got {rest:?}");
            assert!(
                left.elapsed() < Duration::from_secs(3),
                "{:?}",
                left.elapsed()
            );
        }
        // Room in the queue: a connect still under way reaches the server at its next SYN.
        drop(server.accept().unwrap());
        drop(filler);
        server.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_millis(3500);
        let reached = loop {
            match server.accept() {
                Ok((c, _)) => break Some(c),
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        if abort {
            assert!(reached.is_none(), "the aborted connect reached the server");
        } else {
            let mut c = reached.expect("lb's connect never reached the server");
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut c, &mut got).unwrap();
            assert_eq!(got, b"x", "the client's bytes and FIN, once connected");
        }
        drop(lb);
    }
}
