//! The control plane end to end, through the real lb: DNS as HAProxy does it on a Docker-style
//! setup (a DNS server that refuses or has nothing for AAAA), health checks that follow a
//! server's address (DNS, `set server addr`), what a reload keeps (runtime admin state,
//! weights, DOWN servers, DNS-learned addresses, the connection count), every source of a DOWN
//! closing flows with `on-marked-down shutdown-sessions`, and a failed reload that changes
//! nothing.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::ops::{wait, Dnsmasq};
use common::scenarios;
use common::servers::{listener_at, Backend, FlowHeader, HalfClose};
use common::stats::{cli, col, parse_csv, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    dns_refused_aaaa_still_resolves,
    dns_nodata_aaaa_still_resolves,
    checks_follow_a_name_that_moves,
    reload_keeps_runtime_state,
    every_source_of_down_ends_the_flows,
);

const T: Duration = Duration::from_secs(15);

/// A flow of `len` bytes each way through `fe`, checked against whichever of `servers` got it.
/// Returns the index of that server.
fn checked_flow(fe: SocketAddr, servers: &[&Backend], id: u64, len: u64) -> usize {
    let h = FlowHeader {
        id,
        order: HalfClose::Both,
        up: len,
        down: len,
    };
    let (sent, got) = scenarios::flow(fe, h, Instant::now() + T).unwrap_or_else(|e| panic!("{e}"));
    for (i, s) in servers.iter().enumerate() {
        if let Some(srv_got) = s.wait_received(id, Duration::from_millis(200)) {
            assert_eq!(srv_got, sent, "flow {id} client→server");
            assert_eq!(s.wait_sent(id, T), Some(got), "flow {id} server→client");
            return i;
        }
    }
    panic!("flow {id} reached none of the servers");
}

/// The runtime API's `show stat` row of server `name`.
fn row(sock: &std::path::Path, name: &str) -> Vec<(String, String)> {
    let (_, rows) = parse_csv(&cli(sock, "show stat"));
    rows.into_iter()
        .find(|r| col(r, "svname") == name)
        .unwrap_or_else(|| panic!("no row for {name}"))
}

fn status(sock: &std::path::Path, name: &str) -> String {
    col(&row(sock, name), "status").to_owned()
}

/// A resolvers section on `dns` with short timers.
fn resolvers(dns: SocketAddr, hold_valid: &str) -> String {
    format!(
        "resolvers docker\n    nameserver dns1 {dns}\n    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 200ms\n    hold valid {hold_valid}\n"
    )
}

/// Global section with a runtime API socket.
fn global(dir: &SockDir) -> String {
    format!(
        "global\n    maxconn 4096\n    stats socket {} level admin\n",
        dir.sock("admin.sock").display()
    )
}

/// Two checked servers named by service name, `init-addr libc,none`, no `resolve-prefer` (IPv6
/// first), behind a DNS server that answers A and refuses or has nothing for AAAA: both resolve
/// through A, come UP, and carry traffic.
fn dns_families(dataplane: &str, dns: &Dnsmasq) {
    let port = free_port();
    let s1 = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "s1");
    let s2 = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 3], port))), "s2");
    let dir = SockDir::new("dnsfam");
    let fe = free_port();
    let cfg = format!(
        "{}\n{}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    default-server check inter 200ms resolvers docker init-addr libc,none\n    \
         server db1 db1.test:{port}\n    server db2 db2.test:{port}\n",
        global(&dir),
        resolvers(dns.addr, "1s"),
    );
    let lb = Lb::start(&cfg, dataplane);
    let sock = dir.sock("admin.sock");
    assert!(
        wait(T, || status(&sock, "db1") == "UP"
            && status(&sock, "db2") == "UP"),
        "db1 {}, db2 {}\n{:#?}",
        status(&sock, "db1"),
        status(&sock, "db2"),
        lb.logs()
    );
    assert_eq!(col(&row(&sock, "db1"), "addr"), format!("127.0.0.2:{port}"));
    assert!(lb
        .find_log("be/db1 changed its IP from (none) to 127.0.0.2 by docker/dns1.")
        .is_some());
    let fe = local(fe);
    let mut reached = [0; 2];
    for id in 0..6 {
        reached[checked_flow(fe, &[&s1, &s2], id, 256 * 1024)] += 1;
    }
    assert!(reached[0] > 0 && reached[1] > 0, "{reached:?}");
}

fn dns_refused_aaaa_still_resolves(dataplane: &str) {
    let dns = Dnsmasq::start_refusing("127.0.0.2 db1.test\n127.0.0.3 db2.test\n");
    dns_families(dataplane, &dns);
}

fn dns_nodata_aaaa_still_resolves(dataplane: &str) {
    let dns = Dnsmasq::start("127.0.0.2 db1.test\n127.0.0.3 db2.test\n");
    dns_families(dataplane, &dns);
}

/// A checked server whose name moves to another IP (a restarted container): checks follow
/// within `hold valid` + `inter`, the server is UP at the new address and takes the new flows,
/// and a flow established at the old address goes on to its end.
fn checks_follow_a_name_that_moves(dataplane: &str) {
    let port = free_port();
    let mut old = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "old");
    let new = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 3], port))), "new");
    let dns = Dnsmasq::start("127.0.0.2 db.test\n");
    let dir = SockDir::new("dnsmove");
    let fe = free_port();
    // `tcp-check connect linger`: a check that ends with a FIN completes its handshake, so the
    // servers' `accepted()` counts the checks (a plain connect check never reaches them).
    let cfg = format!(
        "{}\n{}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    option tcp-check\n    tcp-check connect linger\n    \
         server db db.test:{port} check inter 200ms fall 2 rise 2 resolvers docker resolve-prefer ipv4 init-addr libc,none\n",
        global(&dir),
        resolvers(dns.addr, "300ms"),
    );
    let lb = Lb::start(&cfg, dataplane);
    let sock = dir.sock("admin.sock");
    assert!(wait(T, || status(&sock, "db") == "UP"), "{:#?}", lb.logs());
    let fe = local(fe);
    assert_eq!(checked_flow(fe, &[&old, &new], 1, 64 * 1024), 0);

    // A flow held open at the old address across the move.
    let held = FlowHeader {
        id: 2,
        order: HalfClose::ClientFirst,
        up: 4 << 20,
        down: 1 << 20,
    };
    let mut s = TcpStream::connect(fe).unwrap();
    s.write_all(&held.encode()).unwrap();
    let mut up = common::data::DataStream::new(held.up_seed());
    let first = up.take_vec(1 << 20);
    s.write_all(&first).unwrap();
    assert!(
        old.wait_flow(2, T),
        "the held flow never reached the old address"
    );

    // The container restarts elsewhere: the old address takes no new connection, DNS moves.
    old.stop_accepting();
    let moved_at = Instant::now();
    dns.set_hosts("127.0.0.3 db.test\n");
    assert!(
        lb.wait_for_log(
            "be/db changed its IP from 127.0.0.2 to 127.0.0.3 by docker/dns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    // Checks go to the new address: UP there, never marked DOWN by probing the old one.
    assert!(
        wait(T, || col(&row(&sock, "db"), "addr")
            == format!("127.0.0.3:{port}")
            && status(&sock, "db") == "UP"
            && new.accepted() >= 2),
        "{:#?}",
        lb.logs()
    );
    let settle = Duration::from_millis(300 + 200 + 400);
    std::thread::sleep(settle.saturating_sub(moved_at.elapsed()));
    assert!(
        lb.find_log("Server be/db is DOWN").is_none(),
        "checks kept probing the old address: {:#?}",
        lb.logs()
    );
    assert_eq!(checked_flow(fe, &[&old, &new], 3, 64 * 1024), 1);

    // The old flow finishes, every byte intact.
    let rest = up.take_vec((held.up - (1 << 20)) as usize);
    s.write_all(&rest).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let got = common::data::recv_to_eof(&mut s, Instant::now() + T).unwrap();
    let mut all = first;
    all.extend_from_slice(&rest);
    assert_eq!(
        old.wait_received(2, T),
        Some(common::data::Summary::of(&all))
    );
    assert_eq!(old.wait_sent(2, T), Some(got));
}

/// `set server B/S addr IP port P` on a checked server: the next check goes to the new
/// address, and the old one is not checked any more.
#[test]
fn set_server_addr_moves_the_checks() {
    let a = Backend::ident("a");
    let b = Backend::ident("b");
    let dir = SockDir::new("setaddr");
    let fe = free_port();
    // `tcp-check connect linger`: a check that ends with a FIN completes its handshake, so the
    // servers' `accepted()` counts the checks (a plain connect check never reaches them).
    let cfg = format!(
        "{}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    option tcp-check\n    tcp-check connect linger\n    \
         server s1 {} check inter 300ms\n",
        global(&dir),
        a.addr
    );
    let lb = Lb::start(&cfg, "splice");
    let sock = dir.sock("admin.sock");
    assert!(wait(T, || a.accepted() >= 2), "{:#?}", lb.logs());
    let answer = cli(
        &sock,
        &format!("set server be/s1 addr 127.0.0.1 port {}", b.addr.port()),
    );
    assert_eq!(
        answer,
        format!(
            "port changed from '{}' to '{}' by 'stats socket command'\n\n",
            a.addr.port(),
            b.addr.port()
        )
    );
    let a_then = a.accepted();
    // The writer wakes the checker at once: the next check is at the new address.
    assert!(
        wait(Duration::from_secs(2), || b.accepted() >= 1),
        "{:#?}",
        lb.logs()
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        a.accepted() <= a_then + 1,
        "checks still go to the old address"
    );
    assert!(b.accepted() >= 2);
    assert_eq!(status(&sock, "s1"), "UP");
    assert_eq!(scenarios::who(local(fe)).unwrap(), "b");
}

/// A reload keeps what was set or learned at run time: MAINT and DRAIN, a weight, a server
/// its checks hold DOWN (no connection reaches it after the reload), an address learned from
/// DNS (even when DNS has stopped answering); a server removed from the configuration is gone,
/// a new one starts as HAProxy starts it.
fn reload_keeps_runtime_state(dataplane: &str) {
    let port = free_port();
    let s1 = Backend::flow("s1");
    let s2 = Backend::flow("s2");
    let s3 = Backend::flow("s3");
    let s4 = Backend::flow("s4");
    let s5 = Backend::flow_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "s5");
    let s6 = Backend::flow("s6");
    let s7 = Backend::flow("s7");
    let dead = common::servers::refusing_addr();
    let dns = Dnsmasq::start("127.0.0.2 db.test\n");
    let dns_addr = dns.addr;
    let dir = SockDir::new("reloadkeep");
    let fe = free_port();
    let cfg = |last: &Backend| {
        let mut c = format!(
            "{}\n{}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
             backend be\n    balance roundrobin\n",
            global(&dir),
            resolvers(dns_addr, "10s") + "    hold timeout 60s\n",
        );
        let _ = writeln!(c, "    server s1 {}", s1.addr);
        let _ = writeln!(c, "    server s2 {}", s2.addr);
        let _ = writeln!(c, "    server s3 {} weight 50 check inter 3s", s3.addr);
        let _ = writeln!(
            c,
            "    server s4 {} check inter 3s fall 1 port {}",
            s4.addr,
            dead.port()
        );
        let _ = writeln!(
            c,
            "    server s5 db.test:{port} resolvers docker init-addr libc,none"
        );
        let _ = writeln!(c, "    server {} {}", last.name, last.addr);
        c
    };
    let mut lb = Lb::start(&cfg(&s6), dataplane);
    let sock = dir.sock("admin.sock");
    let admin = |cmd: &str| assert_eq!(cli(&sock, cmd), "\n", "{cmd}");
    admin("set server be/s1 state maint");
    admin("set server be/s2 state drain");
    admin("set weight be/s3 5");
    assert!(
        wait(T, || status(&sock, "s4") == "DOWN"),
        "{:#?}",
        lb.logs()
    );
    assert!(
        wait(T, || col(&row(&sock, "s5"), "addr")
            == format!("127.0.0.2:{port}")),
        "{:#?}",
        lb.logs()
    );
    // DNS stops answering before the reload: only the carried address can serve s5 now.
    drop(dns);
    let before = [&s1, &s2, &s4].map(Backend::accepted);

    lb.rewrite_config(0, &cfg(&s7));
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", T),
        "{:#?}",
        lb.logs()
    );
    let fe = local(fe);
    // At once after the switch: nothing reaches s1 (MAINT), s2 (DRAIN) or s4 (DOWN); s5 at its
    // DNS-learned address and the new s7 take flows, every byte checked.
    let all = [&s1, &s2, &s3, &s4, &s5, &s6, &s7];
    let mut reached = [0; 7];
    for id in 0..12 {
        reached[checked_flow(fe, &all, 100 + id, 16 * 1024)] += 1;
    }
    assert_eq!(
        [&s1, &s2, &s4].map(Backend::accepted),
        before,
        "a server set MAINT/DRAIN or held DOWN took connections after the reload: {reached:?}"
    );
    assert!(reached[4] > 0 && reached[6] > 0, "{reached:?}");
    assert_eq!(status(&sock, "s1"), "MAINT");
    assert_eq!(status(&sock, "s2"), "DRAIN");
    assert_eq!(status(&sock, "s4"), "DOWN");
    assert_eq!(cli(&sock, "get weight be/s3"), "5 (initial 50)\n\n");
    assert_eq!(col(&row(&sock, "s5"), "addr"), format!("127.0.0.2:{port}"));
    assert_eq!(status(&sock, "s5"), "no check");
    assert!(!cli(&sock, "show stat").contains(",s6,"), "s6 was removed");
    assert_eq!(status(&sock, "s7"), "no check");
    lb.stop();
}

/// Whether `c` gets its `s\n` greeting from the server within `wait` (served through lb).
fn served(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2];
    matches!(c.read(&mut buf), Ok(2))
}

/// `global maxconn` counts the connections of old and new generations together.
#[test]
fn maxconn_spans_generations() {
    let s = Backend::ident_hold("s");
    let fe = free_port();
    let cfg = || {
        format!(
            "global\n    maxconn 2\n    nbthread 1\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\nbackend be\n    server s {}\n",
            s.addr
        )
    };
    let mut lb = Lb::start(&cfg(), "splice");
    // Fill up: at the limit, an accept loop already waiting in accept takes one more (at most
    // one per thread: one thread here, so the limit is exact after that), then new clients
    // wait in the backlog.
    let mut held = Vec::new();
    let pending = loop {
        let mut c = TcpStream::connect(local(fe)).unwrap();
        if !served(&mut c, Duration::from_millis(500)) {
            break c;
        }
        held.push(c);
        assert!(
            held.len() <= 4,
            "maxconn 2 with 2 threads served {} clients",
            held.len()
        );
    };
    assert!(held.len() >= 2);
    // Same limit, new generation: the old generation's connections still count.
    lb.rewrite_config(0, &cfg());
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", T));
    // Down to one below the limit: the waiting client is served, and that is the limit again.
    let mut pending = pending;
    held.truncate(1);
    assert!(
        served(&mut pending, T),
        "the waiting client was never served"
    );
    let mut next = TcpStream::connect(local(fe)).unwrap();
    assert!(
        !served(&mut next, Duration::from_millis(800)),
        "a client was served beyond maxconn 2: the new generation did not count the old one's \
         connections"
    );
    drop(held);
    assert!(served(&mut next, T));
    lb.stop();
}

/// Every source of a DOWN — a failed check, the agent, `set server B/S health down`, the stats
/// page's "set state to DOWN", and a name that stops resolving — ends the server's flows with
/// `on-marked-down shutdown-sessions`, and logs HAProxy's line once.
fn every_source_of_down_ends_the_flows(dataplane: &str) {
    let port = free_port();
    let _echo = Backend::echo_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "s1");
    let check_port = free_port();
    let agent = Agent::start();
    let dns = Dnsmasq::start("127.0.0.2 db.test\n");
    let dir = SockDir::new("downsrc");
    let fe = free_port();
    let stats_port = free_port();
    let cfg = format!(
        "{}\n{}\n    hold nx 300ms\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    server s1 db.test:{port} check inter 200ms fall 1 rise 1 port {check_port} \
         agent-check agent-addr 127.0.0.1 agent-port {} agent-inter 200ms resolvers docker resolve-prefer ipv4 \
         init-addr libc,none on-marked-down shutdown-sessions\n\n\
         listen stats\n    mode http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n    stats admin if TRUE\n",
        global(&dir),
        resolvers(dns.addr, "200ms"),
        agent.port()
    );
    // The check port answers: the server comes UP.
    let check = CheckPort::open(check_port);
    let lb = Lb::start(&cfg, dataplane);
    let sock = dir.sock("admin.sock");
    let fe = local(fe);
    let down_lines = || {
        lb.logs()
            .iter()
            .filter(|l| {
                l.contains("Server be/s1 is DOWN") || l.contains("Server be/s1 is going DOWN")
            })
            .count()
    };
    let mut expected_lines = 0;
    let sources: [(&str, &dyn Fn()); 5] = [
        ("check", &|| check.close()),
        ("agent", &|| agent.say("down#maintenance\n")),
        ("cli", &|| {
            assert_eq!(cli(&sock, "set server be/s1 health down"), "\n");
        }),
        ("stats page", &|| {
            let body = "s=s1&action=hdown&b=be";
            let r = common::stats::request(local(stats_port), "POST", "/stats", None, body);
            assert_eq!(r.status, 303, "{}", r.text());
            assert_eq!(r.header("location").as_deref(), Some("/stats;st=DONE"));
        }),
        ("dns", &|| dns.set_hosts("")),
    ];
    for (what, make_down) in sources {
        // UP again: check answers, agent says up, health up, name resolves.
        check.open_again();
        agent.say("up\n");
        dns.set_hosts("127.0.0.2 db.test\n");
        assert!(
            wait(T, || {
                let st = status(&sock, "s1");
                if st.starts_with("DOWN") && !st.contains("agent") {
                    let _ = cli(&sock, "set server be/s1 health up");
                }
                st == "UP"
            }),
            "{what}: s1 never came back UP ({})\n{:#?}",
            status(&sock, "s1"),
            lb.logs()
        );
        let mut held = TcpStream::connect(fe).unwrap();
        held.set_read_timeout(Some(T)).unwrap();
        held.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        held.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping", "{what}");
        make_down();
        expected_lines += 1;
        // The flow is ended by lb: EOF or reset, well before its idle timeout (not a read
        // timeout of ours).
        held.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut rest = [0u8; 16];
        let end = held.read(&mut rest);
        assert!(
            common::data::closed_by_peer(&end),
            "{what}: the flow was not ended ({end:?})"
        );
        assert!(
            wait(Duration::from_secs(2), || down_lines() == expected_lines),
            "{what}: {} DOWN lines, {expected_lines} expected\n{:#?}",
            down_lines(),
            lb.logs()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(down_lines(), expected_lines, "{:#?}", lb.logs());
}

/// A failed reload (a configuration error; an address that can't be bound) leaves the log
/// targets, the listeners and the server state exactly as they were.
#[test]
fn failed_reload_changes_nothing() {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let dir = SockDir::new("failreload");
    let fe = free_port();
    let other = free_port();
    let log_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let log_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&log_a, &log_b] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let cfg = |log: &UdpSocket, extra_bind: Option<u16>| {
        let mut c = format!(
            "global\n    maxconn 4096\n    log {} local0\n    stats socket {} level admin\n{DEFAULTS}\n\
             frontend fe\n    bind 127.0.0.1:{fe}\n",
            log.local_addr().unwrap(),
            dir.sock("admin.sock").display()
        );
        if let Some(p) = extra_bind {
            let _ = writeln!(c, "    bind 127.0.0.1:{other}\n    bind 127.0.0.1:{p}");
        }
        let _ = write!(
            c,
            "    default_backend be\n\nbackend be\n    server s1 {}\n    server s2 {}\n",
            s1.addr, s2.addr
        );
        c
    };
    let mut lb = Lb::start(&cfg(&log_a, None), "splice");
    let sock = dir.sock("admin.sock");
    assert_eq!(cli(&sock, "set server be/s1 state maint"), "\n");
    let drain = |s: &UdpSocket| {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while s.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    drain(&log_a);

    // 1. A broken configuration.
    lb.rewrite_config(0, "global\n    frobnicate\n");
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload rejected", T), "{:#?}", lb.logs());
    // 2. A configuration with another log target and an address in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    lb.rewrite_config(0, &cfg(&log_b, Some(taken.local_addr().unwrap().port())));
    lb.signal(libc::SIGHUP);
    assert!(
        common::health::wait_log_count(&lb, "reload rejected", 2, T),
        "{:#?}",
        lb.logs()
    );
    // Listeners: the old one serves, the new free address of the failed config is not bound.
    assert_eq!(scenarios::who(local(fe)).unwrap(), "s2");
    assert!(
        TcpListener::bind(("127.0.0.1", other)).is_ok(),
        "port {other} left bound"
    );
    // State: s1 still in maintenance.
    assert_eq!(status(&sock, "s1"), "MAINT");
    // Log targets: lb's own messages still go to the first target, none to the second.
    drain(&log_a);
    assert_eq!(cli(&sock, "set server be/s2 state drain"), "\n");
    assert!(
        wait(T, || drain(&log_a) > 0),
        "no message reached the old target"
    );
    assert_eq!(
        drain(&log_b),
        0,
        "a message reached the failed config's target"
    );
    lb.stop();
}

/// A check port that can be opened and closed (a health check's target).
struct CheckPort {
    port: u16,
    listener: std::sync::Mutex<Option<TcpListener>>,
}

impl CheckPort {
    fn open(port: u16) -> CheckPort {
        let me = CheckPort {
            port,
            listener: std::sync::Mutex::new(None),
        };
        me.open_again();
        me
    }

    fn open_again(&self) {
        let mut l = self.listener.lock().unwrap();
        if l.is_none() {
            *l = Some(TcpListener::bind(("127.0.0.2", self.port)).expect("rebind the check port"));
        }
    }

    fn close(&self) {
        self.listener.lock().unwrap().take();
    }
}

/// An agent on 127.0.0.1 that answers every connection with its current line.
struct Agent {
    backend: Backend,
    line: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Agent {
    fn start() -> Agent {
        let line = std::sync::Arc::new(std::sync::Mutex::new("up\n".to_owned()));
        let l = line.clone();
        let backend = Backend::spawn("agent", move |s, _| {
            let text = l.lock().unwrap().clone();
            s.write_all(text.as_bytes())?;
            s.shutdown(Shutdown::Write)
        });
        Agent { backend, line }
    }

    fn port(&self) -> u16 {
        self.backend.addr.port()
    }

    fn say(&self, text: &str) {
        text.clone_into(&mut self.line.lock().unwrap());
    }
}

/// HAProxy's way across a restart: `show servers state` saved to `server-state-file`, lb
/// started again with `load-server-state-from-file global`: MAINT, a weight set at run time,
/// a server its checks held DOWN, where `set server` sent its checks, and (`init-addr last`)
/// an address that only the file knows come back before any check or connection. A bad line
/// is named and skipped.
#[test]
fn server_state_file_survives_a_restart() {
    let s1 = Backend::ident("s1");
    let s2 = Backend::ident("s2");
    let s3 = Backend::ident("s3");
    let s4 = Backend::ident("s4");
    let dir = SockDir::new("statefile");
    let state = dir.path.join("state");
    let fe = free_port();
    let cfg = format!(
        "global\n    maxconn 4096\n    stats socket {} level admin\n    server-state-base {}\n    server-state-file state\n{DEFAULTS}\n\
         frontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    load-server-state-from-file global\n\
         \x20   server s1 {}\n    server s2 {} check inter 5s\n    server s3 {} weight 10\n\
         \x20   server s4 nowhere.invalid:{} init-addr last,127.0.0.9\n",
        dir.sock("admin.sock").display(),
        dir.path.display(),
        s1.addr,
        s2.addr,
        s3.addr,
        s4.addr.port(),
    );
    let mut lb = Lb::start(&cfg, "splice");
    let sock = dir.sock("admin.sock");
    assert_eq!(cli(&sock, "set server be/s1 state maint"), "\n");
    assert_eq!(cli(&sock, "set weight be/s3 3"), "\n");
    assert_eq!(
        cli(&sock, "set server be/s4 addr 127.0.0.1"),
        "IP changed from '127.0.0.9' to '127.0.0.1' by 'stats socket command'\n\n"
    );
    assert_eq!(cli(&sock, "set server be/s2 health down"), "\n");
    let check_port = common::servers::refusing_addr().port();
    assert_eq!(
        cli(
            &sock,
            &format!("set server be/s2 check-addr 127.0.0.1 port {check_port}")
        ),
        "\n"
    );
    // `srv_check_port srv_check_addr`, the 22nd and 23rd fields of a server's line.
    let check_place = |sock: &std::path::Path| {
        let out = cli(sock, "show servers state");
        let line = out
            .lines()
            .find(|l| l.split(' ').nth(3) == Some("s2"))
            .unwrap_or_else(|| panic!("no s2 in {out}"))
            .to_owned();
        let f: Vec<&str> = line.split(' ').collect();
        (f[21].to_owned(), f[22].to_owned())
    };
    assert_eq!(
        check_place(&sock),
        (check_port.to_string(), "127.0.0.1".to_owned())
    );
    let saved = cli(&sock, "show servers state");
    // A line the file can't use is reported and skipped; the others still apply.
    std::fs::write(&state, saved.trim_end().to_owned() + "\n1 be 9 s9 bogus\n").unwrap();
    lb.stop();

    let lb = Lb::start(&cfg, "splice");
    // s2's check passes, but one success is not `rise`: still DOWN as the file left it.
    assert_eq!(status(&sock, "s1"), "MAINT");
    assert!(
        status(&sock, "s2").starts_with("DOWN"),
        "{}",
        status(&sock, "s2")
    );
    assert_eq!(cli(&sock, "get weight be/s3"), "3 (initial 10)\n\n");
    assert_eq!(
        check_place(&sock),
        (check_port.to_string(), "127.0.0.1".to_owned())
    );
    assert_eq!(
        col(&row(&sock, "s4"), "addr"),
        format!("127.0.0.1:{}", s4.addr.port())
    );
    assert!(
        lb.find_log(&format!("server-state file {}:", state.display()))
            .is_some_and(|l| l.contains(":7: 5 fields")),
        "{:#?}",
        lb.logs()
    );
    let fe = local(fe);
    for _ in 0..6 {
        let who = scenarios::who(fe).unwrap();
        assert!(who == "s3" || who == "s4", "{who}");
    }
    assert_eq!(s1.accepted(), 0);
}

/// A configuration with a runtime API socket and two servers without checks.
fn two_servers(dir: &SockDir, fe: u16, s1: &Backend, s2: &Backend) -> String {
    format!(
        "{}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    server s1 {}\n    server s2 {}\n",
        global(dir),
        s1.addr,
        s2.addr
    )
}

/// A change sent while a reload is between its copy of run-time state and its switch waits for
/// the switch and lands on the new generation (applied to the old one, after the copy, it was
/// lost). `LB_TEST_RELOAD_PAUSE_MS` holds the reload open there long enough to send it.
#[test]
fn a_change_sent_during_a_reload_lands_on_the_new_generation() {
    let (s1, s2) = (Backend::flow("s1"), Backend::flow("s2"));
    let dir = SockDir::new("reloadgate");
    let cfg = two_servers(&dir, free_port(), &s1, &s2);
    let lb =
        Lb::start_with(&common::LbOpts::new(&cfg, "splice").env("LB_TEST_RELOAD_PAUSE_MS", "1500"));
    let sock = dir.sock("admin.sock");
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("after the copy of run-time state", T),
        "{:#?}",
        lb.logs()
    );
    // Not `socat`: it stops waiting for an answer 0.5 s after its input ends.
    let patient = |line: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let sent = Instant::now();
    assert_eq!(
        patient("set server be/s1 state maint; set weight be/s2 7"),
        "\n\n"
    );
    let answered = sent.elapsed();
    assert!(
        lb.wait_for_log("reload done: generation 1", T),
        "{:#?}",
        lb.logs()
    );
    assert_eq!(status(&sock, "s1"), "MAINT", "{:#?}", lb.logs());
    assert_eq!(cli(&sock, "get weight be/s2"), "7 (initial 1)\n\n");
    assert!(
        answered > Duration::from_millis(500),
        "the changes were answered in {answered:?}, during the reload's pause: not held back"
    );
}

/// An interactive runtime API session (`prompt`) opened before a reload acts on the generation
/// serving when each command runs, not on the one it started with.
#[test]
fn an_interactive_session_acts_on_the_generation_serving_now() {
    let (s1, s2) = (Backend::flow("s1"), Backend::flow("s2"));
    let dir = SockDir::new("reloadprompt");
    let cfg = two_servers(&dir, free_port(), &s1, &s2);
    let lb = Lb::start(&cfg, "splice");
    let sock = dir.sock("admin.sock");
    let mut session = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    session.set_read_timeout(Some(T)).unwrap();
    let answer = |session: &mut std::os::unix::net::UnixStream, line: &str| {
        session.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"> ") {
            assert_eq!(session.read(&mut b).unwrap(), 1, "session closed: {got:?}");
            got.push(b[0]);
        }
        String::from_utf8(got).unwrap()
    };
    answer(&mut session, "prompt");
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", T),
        "{:#?}",
        lb.logs()
    );
    assert_eq!(answer(&mut session, "set server be/s1 state maint"), "\n> ");
    assert_eq!(status(&sock, "s1"), "MAINT", "{:#?}", lb.logs());
}
