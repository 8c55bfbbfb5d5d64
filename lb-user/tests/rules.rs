//! ACLs, `tcp-request`/`tcp-response` rules and content routing through the real lb, every
//! test on every data plane: SNI routing with real TLS clients and servers (`openssl s_client`,
//! `curl`, `openssl s_server` with certificates made here), `use_backend` by port, by source
//! from an ACL file and by map, and bad input (truncated, slow, garbage): each flow ends the
//! way HAProxy ends it, the bytes read for a decision reach the server (SHA-256 both ways), and
//! lb keeps serving.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::data::{read_until_end, DataStream, ReadEnd};
use common::ops::Syslog;
use common::peers::{
    self, client_hello, sink_exchange, sink_upload, Cert, Scratch, TlsServer, WwwServer,
};
use common::scenarios::{connect, connect_from};
use common::servers::{Backend, Note};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    sni_picks_the_tls_server_with_bytes_intact,
    curl_through_sni_routing,
    non_tls_client_gets_the_default_backend,
    non_tls_client_without_default_backend_is_closed,
    use_backend_by_dst_port,
    use_backend_by_src_from_an_acl_file,
    use_backend_from_a_map,
    truncated_slow_and_garbage_hellos_reach_the_default_backend,
    rejects_close_as_haproxy_and_lb_keeps_serving,
    response_rules_see_the_server_hello,
    use_server_by_dst_port,
    alpn_picks_the_tls_server,
    load_fetches_route_reject_and_log,
);

const MIB: usize = 1 << 20;

/// Global syslog target and tcplog on `defaults`, then `body`.
fn config(syslog: &Syslog, body: &str) -> String {
    format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n    option tcplog\n\n{body}",
        syslog.addr.port()
    )
}

fn must<T>(r: Result<T, String>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The tcplog line of the connection from `client`.
fn log_line(syslog: &Syslog, client: SocketAddr) -> String {
    let needle = format!("{}:{} [", client.ip(), client.port());
    let got = syslog.wait_for(&needle, 1, Duration::from_secs(10));
    assert!(
        !got.is_empty(),
        "no log line for {client}; log:\n{:?}",
        syslog.lines()
    );
    got[0].clone()
}

/// How many connections a sink noted it received.
fn received(b: &Backend) -> usize {
    b.notes()
        .iter()
        .filter(|n| matches!(n, Note::Received { .. }))
        .count()
}

/// Config 21 of the corpus (SNI routing, no default backend) on local addresses.
fn sni_frontend(port: u16, s1: SocketAddr, s2: SocketAddr, extra: &str) -> String {
    format!(
        "frontend gateway\n    bind 127.0.0.1:{port}\n    tcp-request inspect-delay 5s\n    \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n    use_backend b1 if {{ \
         req_ssl_sni -i redis-1.acme.com }}\n    use_backend b2 if {{ req_ssl_sni -i \
         redis-2.acme.com }}\n{extra}\nbackend b1\n    server s1 {s1}\n\nbackend b2\n    server \
         s2 {s2}\n"
    )
}

fn sni_picks_the_tls_server_with_bytes_intact(dataplane: &str) {
    let dir = Scratch::new("sni");
    let certs = [
        Cert::new(&dir, "redis-1.acme.com"),
        Cert::new(&dir, "redis-2.acme.com"),
    ];
    let up: Vec<Vec<u8>> = (0..2)
        .map(|i| DataStream::new(0x51 + i).take_vec(MIB))
        .collect();
    let down: Vec<Vec<u8>> = (0..2)
        .map(|i| DataStream::new(0xD1 + i).take_vec(MIB))
        .collect();
    let servers: Vec<TlsServer> = (0..2)
        .map(|i| TlsServer::start(&certs[i], down[i].clone(), MIB as u64))
        .collect();
    let syslog = Syslog::start();
    let port = free_port();
    let cfg = config(
        &syslog,
        &sni_frontend(port, servers[0].addr, servers[1].addr, ""),
    );
    let _lb = Lb::start(&cfg, dataplane);
    let mut servers = servers.into_iter().map(Some).collect::<Vec<_>>();
    // Server 2 first (the second rule), then server 1 with a name in other case (-i).
    for (i, name) in [(1usize, "redis-2.acme.com"), (0, "REDIS-1.acme.com")] {
        let run = peers::s_client(
            local(port),
            Some(name),
            None,
            &up[i],
            Duration::from_mins(1),
        );
        assert!(run.success, "s_client {name} failed: {}", run.stderr);
        assert_eq!(
            run.received,
            common::data::Summary::of(&down[i]),
            "what the client got from server {}",
            i + 1
        );
        let s = servers[i].take().unwrap();
        let got = s.finish(Duration::from_secs(10));
        assert_eq!(
            got,
            common::data::Summary::of(&up[i]),
            "what server {} got",
            i + 1
        );
        let line = syslog.wait_for(
            &format!(" gateway b{}/s{} ", i + 1, i + 1),
            1,
            Duration::from_secs(10),
        );
        assert!(line.iter().any(|l| l.contains(" -- ")), "{line:?}");
    }
}

fn curl_through_sni_routing(dataplane: &str) {
    let dir = Scratch::new("curl");
    let cert = Cert::new(&dir, "files.example");
    let blob = DataStream::new(0xF11E).take_vec(2 * MIB);
    dir.write("blob", &blob);
    let www = WwwServer::start(&cert, &dir.dir);
    let other = Backend::sink("other", 0);
    let syslog = Syslog::start();
    let port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    tcp-request inspect-delay 5s\n    \
         tcp-request content accept if {{ req.ssl_hello_type 1 }}\n    use_backend www if {{ \
         req.ssl_sni -i files.example }}\n    default_backend other\n\nbackend www\n    server w \
         {}\n\nbackend other\n    server o {}\n",
        www.addr, other.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    let got = must(
        peers::curl("files.example", local(port), "blob", &dir.path("out")),
        "curl",
    );
    assert_eq!(got, common::data::Summary::of(&blob));
    assert_eq!(received(&other), 0);
    assert!(!syslog
        .wait_for(" fe www/w ", 1, Duration::from_secs(10))
        .is_empty());
}

fn non_tls_client_gets_the_default_backend(dataplane: &str) {
    let plain = Backend::sink("plain", 256 * 1024);
    let unused = common::servers::refusing_addr();
    let syslog = Syslog::start();
    let port = free_port();
    let cfg = config(
        &syslog,
        &format!(
            "{}\nbackend plain\n    server p {}\n",
            sni_frontend(port, unused, unused, "    default_backend plain\n"),
            plain.addr
        ),
    );
    let _lb = Lb::start(&cfg, dataplane);
    let s = must(connect(local(port)), "connect");
    let me = s.local_addr().unwrap();
    must(
        sink_upload(s, (MIB as u64, 0xAB), 256 * 1024),
        "plain client",
    );
    let line = log_line(&syslog, me);
    assert!(line.contains(" gateway plain/p "), "{line}");
    assert!(line.contains(" -- "), "{line}");
}

fn non_tls_client_without_default_backend_is_closed(dataplane: &str) {
    let dir = Scratch::new("nodef");
    let cert = Cert::new(&dir, "redis-1.acme.com");
    let tls = TlsServer::start(&cert, b"pong".to_vec(), 4);
    let syslog = Syslog::start();
    let port = free_port();
    let unused = common::servers::refusing_addr();
    let _lb = Lb::start(
        &config(&syslog, &sni_frontend(port, tls.addr, unused, "")),
        dataplane,
    );
    for _ in 0..3 {
        let mut s = must(connect(local(port)), "connect");
        let me = s.local_addr().unwrap();
        s.write_all(b"PING\r\n").unwrap();
        let (end, n) = read_until_end(&mut s, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            (end, n),
            (ReadEnd::Eof, 0),
            "lb closes the client with a FIN"
        );
        let line = log_line(&syslog, me);
        assert!(line.contains(" gateway gateway/<NOSRV> -1/-1/"), "{line}");
        assert!(line.contains(" SC "), "{line}");
    }
    // TLS clients are still served.
    let run = peers::s_client(
        local(port),
        Some("redis-1.acme.com"),
        None,
        b"ping",
        Duration::from_secs(30),
    );
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.received, common::data::Summary::of(b"pong"));
}

fn use_backend_by_dst_port(dataplane: &str) {
    let a = Backend::sink("a", 1024);
    let b = Backend::sink("b", 1024);
    let (pa, pb) = (free_port(), free_port());
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{pa}\n    bind 127.0.0.1:{pb}\n    use_backend be_a if \
         {{ dst_port {pa} }}\n    use_backend be_b if {{ dst_port {pb} }}\n\nbackend be_a\n    \
         server a {}\n\nbackend be_b\n    server b {}\n",
        a.addr, b.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    for (port, seed) in [(pa, 1), (pb, 2), (pa, 3)] {
        let s = must(connect(local(port)), "connect");
        must(sink_upload(s, (MIB as u64, seed), 1024), "upload");
    }
    assert_eq!((received(&a), received(&b)), (2, 1));
}

fn use_backend_by_src_from_an_acl_file(dataplane: &str) {
    let dir = Scratch::new("srcf");
    let file = dir.write("vips.ips", b"# VIP clients\n127.0.0.5\n10.0.0.0/8\n");
    let vip = Backend::sink("vip", 4096);
    let rest = Backend::sink("rest", 4096);
    let port = free_port();
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    acl vip src -n -f {file}\n    use_backend \
         be_vip if vip\n    default_backend be_rest\n\nbackend be_vip\n    server v {}\n\nbackend \
         be_rest\n    server r {}\n",
        vip.addr, rest.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    for (src, seed) in [("127.0.0.5", 1), ("127.0.0.6", 2), ("127.0.0.5", 3)] {
        let s = must(
            connect_from(src.parse::<IpAddr>().unwrap(), local(port)),
            "connect",
        );
        must(sink_upload(s, (512 * 1024, seed), 4096), src);
    }
    assert_eq!((received(&vip), received(&rest)), (2, 1));
}

fn use_backend_from_a_map(dataplane: &str) {
    let dir = Scratch::new("map");
    let map = dir.write(
        "src2be.map",
        b"127.0.0.7 be_seven\n127.0.0.8   be_eight  \n",
    );
    let seven = Backend::sink("seven", 100);
    let eight = Backend::sink("eight", 100);
    let other = Backend::sink("other", 100);
    let port = free_port();
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    tcp-request content set-var(sess.who) \
         src\n    use_backend %[var(sess.who),map_str({map})]\n    default_backend be_other\n\n\
         backend be_seven\n    server s7 {}\n\nbackend be_eight\n    server s8 {}\n\nbackend \
         be_other\n    server so {}\n",
        seven.addr, eight.addr, other.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    for (src, seed) in [
        ("127.0.0.7", 1),
        ("127.0.0.8", 2),
        ("127.0.0.9", 3),
        ("127.0.0.7", 4),
    ] {
        let s = must(
            connect_from(src.parse::<IpAddr>().unwrap(), local(port)),
            "connect",
        );
        let me = s.local_addr().unwrap();
        must(sink_upload(s, (256 * 1024, seed), 100), src);
        let want = match src {
            "127.0.0.7" => " fe be_seven/s7 ",
            "127.0.0.8" => " fe be_eight/s8 ",
            _ => " fe be_other/so ",
        };
        let line = log_line(&syslog, me);
        assert!(line.contains(want), "{src}: {line}");
    }
    assert_eq!(
        (received(&seven), received(&eight), received(&other)),
        (2, 1, 1)
    );
}

fn truncated_slow_and_garbage_hellos_reach_the_default_backend(dataplane: &str) {
    let tls = Backend::sink("tls", 512);
    let plain = Backend::sink("plain", 512);
    let port = free_port();
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    tcp-request inspect-delay 1s\n    \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n    use_backend be_tls if {{ \
         req_ssl_sni -i x.example }}\n    default_backend be_plain\n\nbackend be_tls\n    server \
         t {}\n\nbackend be_plain\n    server p {}\n",
        tls.addr, plain.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    let hello = client_hello(Some("x.example"));
    let ms = Duration::from_millis;
    // A whole hello at once: SNI routing.
    let s = must(connect(local(port)), "connect");
    must(
        sink_exchange(
            s,
            (&hello, hello.len(), ms(0)),
            (MIB as u64, 1),
            512,
            Duration::from_mins(1),
        ),
        "hello",
    );
    assert_eq!((received(&tls), received(&plain)), (1, 0));
    // Truncated: 40 bytes, then silence past the delay; the rules decide on what came (no SNI),
    // and those 40 bytes reach the server first.
    let s = must(connect(local(port)), "connect");
    let me = s.local_addr().unwrap();
    let t0 = Instant::now();
    must(
        sink_exchange(
            s,
            (&hello[..40], 40, ms(1500)),
            (MIB as u64, 2),
            512,
            Duration::from_mins(1),
        ),
        "truncated hello",
    );
    assert!(t0.elapsed() >= ms(1500));
    assert_eq!((received(&tls), received(&plain)), (1, 1));
    let line = log_line(&syslog, me);
    assert!(line.contains(" fe be_plain/p "), "{line}");
    // A slow sender: the hello in 10 pieces 250 ms apart; the delay ends half-way.
    let s = must(connect(local(port)), "connect");
    let step = hello.len().div_ceil(10);
    must(
        sink_exchange(
            s,
            (&hello, step, ms(250)),
            (256 * 1024, 3),
            512,
            Duration::from_mins(1),
        ),
        "slow hello",
    );
    assert_eq!((received(&tls), received(&plain)), (1, 2));
    // Garbage: not TLS from the first byte, decided at once.
    let s = must(connect(local(port)), "connect");
    let t0 = Instant::now();
    must(
        sink_exchange(
            s,
            (b"\x00\xffGARBAGE\r\n", 64, ms(0)),
            (MIB as u64, 4),
            512,
            Duration::from_mins(1),
        ),
        "garbage",
    );
    assert!(
        t0.elapsed() < ms(1000),
        "garbage waited for the inspect delay"
    );
    assert_eq!((received(&tls), received(&plain)), (1, 3));
}

fn rejects_close_as_haproxy_and_lb_keeps_serving(dataplane: &str) {
    let sink = Backend::sink("sink", 512);
    let dir = Scratch::new("rej");
    let sock = dir.path("admin.sock");
    let (p_rej, p_drop, p_conn) = (free_port(), free_port(), free_port());
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe_rej\n    bind 127.0.0.1:{p_rej}\n    tcp-request inspect-delay 1s\n    \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n    tcp-request content \
         reject\n    default_backend be\n\nfrontend fe_drop\n    bind 127.0.0.1:{p_drop}\n    \
         tcp-request inspect-delay 1s\n    tcp-request content silent-drop if {{ \
         req.payload(0,4) -m str DROP }}\n    tcp-request content accept if {{ req.len ge 4 }}\n    \
         default_backend be\n\nfrontend fe_conn\n    bind 127.0.0.1:{p_conn}\n    \
         tcp-request connection reject if {{ src 127.0.0.9 }}\n    default_backend be\n\n\
         backend be\n    server s {}\n",
        sink.addr
    );
    let cfg = config(&syslog, &body).replacen(
        "global\n",
        &format!("global\n    stats socket {} level admin\n", sock.display()),
        1,
    );
    let _lb = Lb::start(&cfg, dataplane);
    let ms = Duration::from_millis;
    // Garbage: rejected at once, logged PR.
    let mut s = must(connect(local(p_rej)), "connect");
    let me = s.local_addr().unwrap();
    s.write_all(b"HELLO?\r\n").unwrap();
    let (end, _) = read_until_end(&mut s, Instant::now() + Duration::from_secs(5));
    assert_ne!(end, ReadEnd::StillOpen);
    let line = log_line(&syslog, me);
    assert!(line.contains(" fe_rej fe_rej/<NOSRV> -1/-1/"), "{line}");
    assert!(line.contains(" PR "), "{line}");
    // A slow, incomplete hello: rejected when the delay ends, not before.
    let mut s = must(connect(local(p_rej)), "connect");
    let me = s.local_addr().unwrap();
    let t0 = Instant::now();
    s.write_all(&client_hello(None)[..3]).unwrap();
    let (end, _) = read_until_end(&mut s, Instant::now() + Duration::from_secs(5));
    assert_ne!(end, ReadEnd::StillOpen);
    assert!(
        t0.elapsed() >= ms(900),
        "rejected before the inspect delay ended"
    );
    assert!(log_line(&syslog, me).contains(" PR "));
    // silent-drop: the client hears nothing (TCP_REPAIR as root).
    let mut s = must(connect(local(p_drop)), "connect");
    let me = s.local_addr().unwrap();
    s.write_all(b"DROP").unwrap();
    s.set_read_timeout(Some(ms(1500))).unwrap();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    assert!(
        r.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "silent-drop must not tell the client: {r:?}"
    );
    assert!(log_line(&syslog, me).contains(" PR "));
    // tcp-request connection reject: a reset, no log line. The reset may come before the
    // connect call returns (it then reports it).
    match connect_from("127.0.0.9".parse().unwrap(), local(p_conn)) {
        Ok(mut s) => {
            let (end, _) = read_until_end(&mut s, Instant::now() + Duration::from_secs(5));
            assert_eq!(end, ReadEnd::Reset);
        }
        Err(e) => assert!(e.contains("Connection reset by peer"), "{e}"),
    }
    std::thread::sleep(ms(300));
    assert!(!syslog.lines().iter().any(|l| l.contains("127.0.0.9:")));
    // The counters: dreq on the frontends, dcon on fe_conn.
    let stat = common::stats::cli(&sock, "show stat\n");
    let (_, rows) = common::stats::parse_csv(&stat);
    let row = |px: &str| {
        rows.iter()
            .find(|r| {
                common::stats::col(r, "pxname") == px
                    && common::stats::col(r, "svname") == "FRONTEND"
            })
            .unwrap_or_else(|| panic!("no FRONTEND row for {px} in:\n{stat}"))
    };
    assert_eq!(common::stats::col(row("fe_rej"), "dreq"), "2");
    assert_eq!(common::stats::col(row("fe_drop"), "dreq"), "1");
    assert_eq!(common::stats::col(row("fe_conn"), "dcon"), "1");
    // lb keeps serving all three.
    let s = must(connect(local(p_rej)), "connect");
    let hello = client_hello(Some("ok.example"));
    must(
        sink_exchange(
            s,
            (&hello, hello.len(), ms(0)),
            (MIB as u64, 7),
            512,
            Duration::from_mins(1),
        ),
        "fe_rej",
    );
    let s = must(connect(local(p_drop)), "connect");
    must(
        sink_exchange(
            s,
            (b"KEEP", 4, ms(0)),
            (MIB as u64, 8),
            512,
            Duration::from_mins(1),
        ),
        "fe_drop",
    );
    let s = must(
        connect_from("127.0.0.10".parse().unwrap(), local(p_conn)),
        "connect",
    );
    must(sink_upload(s, (MIB as u64, 9), 512), "fe_conn");
}

fn response_rules_see_the_server_hello(dataplane: &str) {
    let dir = Scratch::new("resp");
    let cert = Cert::new(&dir, "tls.example");
    let up = DataStream::new(0x77).take_vec(MIB);
    let down = DataStream::new(0x78).take_vec(MIB);
    let tls = TlsServer::start(&cert, down.clone(), MIB as u64);
    let plain = Backend::sink("plain", 512);
    let (p_tls, p_plain) = (free_port(), free_port());
    let syslog = Syslog::start();
    let rules = "    tcp-response inspect-delay 2s\n    tcp-response content accept if { \
                 rep_ssl_hello_type 2 }\n    tcp-response content reject\n";
    let body = format!(
        "frontend fe_tls\n    bind 127.0.0.1:{p_tls}\n    default_backend be_tls\n\nfrontend \
         fe_plain\n    bind 127.0.0.1:{p_plain}\n    default_backend be_plain\n\nbackend be_tls\n\
         {rules}    server t {}\n\nbackend be_plain\n{rules}    server p {}\n",
        tls.addr, plain.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    // A TLS server answers with a ServerHello: accepted, bytes intact both ways.
    let run = peers::s_client(
        local(p_tls),
        Some("tls.example"),
        None,
        &up,
        Duration::from_mins(1),
    );
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.received, common::data::Summary::of(&down));
    assert_eq!(
        tls.finish(Duration::from_secs(10)),
        common::data::Summary::of(&up)
    );
    // A plain server's answer is rejected: the client gets nothing of it; the request still
    // reached the server.
    let mut s = must(connect(local(p_plain)), "connect");
    let me = s.local_addr().unwrap();
    s.write_all(b"request").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = common::data::read_all(&mut s, 4096, Instant::now() + Duration::from_secs(10));
    assert!(
        got.as_ref().is_ok_and(Vec::is_empty) || got.is_err(),
        "{got:?}"
    );
    assert!(plain
        .wait_received(0, Duration::from_secs(5))
        .is_some_and(|s| s.len == 7));
    let line = log_line(&syslog, me);
    assert!(line.contains(" fe_plain be_plain/p "), "{line}");
    assert!(line.contains(" PD "), "{line}");
}

fn use_server_by_dst_port(dataplane: &str) {
    let a = Backend::sink("a", 1024);
    let b = Backend::sink("b", 1024);
    let (pa, pb) = (free_port(), free_port());
    let syslog = Syslog::start();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{pa}\n    bind 127.0.0.1:{pb}\n    default_backend \
         be\n\nbackend be\n    use-server sb if {{ dst_port {pb} }}\n    use-server sa unless \
         {{ dst_port {pb} }}\n    server sa {}\n    server sb {}\n",
        a.addr, b.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    for (port, seed, want) in [
        (pb, 1, " fe be/sb "),
        (pa, 2, " fe be/sa "),
        (pb, 3, " fe be/sb "),
    ] {
        let s = must(connect(local(port)), "connect");
        let me = s.local_addr().unwrap();
        must(sink_upload(s, (MIB as u64, seed), 1024), "upload");
        let line = log_line(&syslog, me);
        assert!(line.contains(want), "{line}");
    }
    assert_eq!((received(&a), received(&b)), (1, 2));
}

fn alpn_picks_the_tls_server(dataplane: &str) {
    let dir = Scratch::new("alpn");
    let cert = Cert::new(&dir, "alpn.example");
    let up: Vec<Vec<u8>> = (0..2)
        .map(|i| DataStream::new(0xA1 + i).take_vec(MIB))
        .collect();
    let down: Vec<Vec<u8>> = (0..2)
        .map(|i| DataStream::new(0xB1 + i).take_vec(MIB))
        .collect();
    let servers: Vec<TlsServer> = (0..2)
        .map(|i| TlsServer::start(&cert, down[i].clone(), MIB as u64))
        .collect();
    let syslog = Syslog::start();
    let port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    tcp-request inspect-delay 5s\n    \
         tcp-request content accept if {{ req.ssl_hello_type 1 }}\n    use_backend be_h2 if {{ \
         req.ssl_alpn h2 }}\n    default_backend be_other\n\nbackend be_h2\n    server h2 {}\n\n\
         backend be_other\n    server o {}\n",
        servers[0].addr, servers[1].addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    let mut servers = servers.into_iter().map(Some).collect::<Vec<_>>();
    for (i, alpn, want) in [
        (1usize, "http/1.1", " fe be_other/o "),
        (0, "h2", " fe be_h2/h2 "),
    ] {
        let run = peers::s_client(
            local(port),
            Some("alpn.example"),
            Some(alpn),
            &up[i],
            Duration::from_mins(1),
        );
        assert!(run.success, "s_client -alpn {alpn} failed: {}", run.stderr);
        assert_eq!(run.received, common::data::Summary::of(&down[i]), "{alpn}");
        let got = servers[i].take().unwrap().finish(Duration::from_secs(10));
        assert_eq!(got, common::data::Summary::of(&up[i]), "{alpn}: server got");
        assert!(
            !syslog.wait_for(want, 1, Duration::from_secs(10)).is_empty(),
            "{alpn}: {:?}",
            syslog.lines()
        );
    }
}

/// The load fetches (`queue`, `avg_queue`, `srv_conn`, `fe_conn`, the session rates): with
/// `main`'s one slot held and a second client waiting in its queue, a third client of `fe_a`
/// goes to `over` (`queue(main) ge 1`), a client of `fe_b` is rejected (`fe_conn(fe_a) ge
/// 2`), and a client of `fe_c` logs each figure; once `main` is free, `fe_a` uses it again
/// and `fe_b` serves.
fn load_fetches_route_reject_and_log(dataplane: &str) {
    let syslog = Syslog::start();
    let main = Backend::ident_hold("s1");
    let over = Backend::ident("o1");
    let (a, b, c) = (free_port(), free_port(), free_port());
    let body = format!(
        "frontend fe_a\n    bind 127.0.0.1:{a}\n    use_backend over if {{ queue(main) ge 1 }}\n    \
         default_backend main\n\n\
         frontend fe_b\n    bind 127.0.0.1:{b}\n    tcp-request content reject if {{ fe_conn(fe_a) ge 2 }}\n    \
         default_backend over\n\n\
         frontend fe_c\n    bind 127.0.0.1:{c}\n    log-format \"figures %[queue(main)] %[avg_queue(main)] \
         %[srv_conn(main/s1)] %[fe_conn(fe_a)] %[fe_conn] %[be_sess_rate(main)] %[srv_sess_rate(main/s1)] \
         %[fe_sess_rate(fe_a)]\"\n    default_backend over\n\n\
         backend main\n    timeout queue 10s\n    server s1 {} maxconn 1\n\n\
         backend over\n    server o1 {}\n",
        main.addr, over.addr
    );
    let _lb = Lb::start(&config(&syslog, &body), dataplane);
    let name = |mut s: std::net::TcpStream| {
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf)
            .map(|()| String::from_utf8_lossy(&buf).into_owned())
    };
    let mut held = must(connect(local(a)), "held");
    let mut got = [0u8; 3];
    held.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"s1\n");
    let queued = must(connect(local(a)), "queued");
    // fe_c's log line: each figure as the session of one fe_c client saw it.
    let mut seen = 0;
    let mut figures = || {
        seen += 1;
        let _ = name(must(connect(local(c)), "fe_c"));
        let lines = syslog.wait_for("figures ", seen, Duration::from_secs(10));
        let line = lines.get(seen - 1).cloned().unwrap_or_default();
        let v: Vec<i64> = line
            .split("figures ")
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(-99))
            .collect();
        (v, line)
    };
    // The second client waits in main's queue once its rules ran.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut v, mut line) = figures();
    while v.first() != Some(&1) && Instant::now() < deadline {
        (v, line) = figures();
    }
    // queue, avg_queue, srv_conn, fe_conn(fe_a), fe_conn (fe_c's own), then three rates.
    assert_eq!(
        v.get(..5),
        Some(&[1, 1, 1, 2, 1][..]),
        "{dataplane}: {line}"
    );
    assert!(v[5..].iter().all(|r| *r >= 1), "{dataplane}: {line}");
    // The third client of fe_a goes over; fe_b refuses while fe_a holds two.
    let third = must(connect(local(a)), "third");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let third = name(third).unwrap_or_default();
    assert_eq!(
        third, "o1\n",
        "{dataplane}: queue(main) did not route the third client over"
    );
    let mut rejected = must(connect(local(b)), "fe_b");
    let (end, bytes) = read_until_end(&mut rejected, Instant::now() + Duration::from_secs(5));
    assert!(
        bytes == 0 && end != ReadEnd::StillOpen,
        "{dataplane}: fe_b served ({end:?})"
    );
    drop(held);
    drop(queued);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = String::new();
    while Instant::now() < deadline && back != "s1\n" {
        back = name(must(connect(local(a)), "after")).unwrap_or_default();
    }
    assert_eq!(back, "s1\n", "{dataplane}: main not used again once free");
    // fe_b serves again once lb has seen fe_a's clients go (their flows end after the test's
    // closes reach lb: until then fe_conn(fe_a) may still count two).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = String::new();
    while Instant::now() < deadline && after != "o1\n" {
        after = name(must(connect(local(b)), "fe_b after")).unwrap_or_default();
    }
    assert_eq!(after, "o1\n", "{dataplane}: fe_b still refusing");
}
