//! The session's decisions on configurations and bytes, without sockets.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proxy_proto;
use crate::tls_hello::build::hello_record;

const DEFAULTS: &str =
    "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n";

fn gen(body: &str) -> Arc<Generation> {
    let cfg = crate::config::load_str("t.cfg", &format!("{DEFAULTS}{body}"))
        .unwrap_or_else(|e| panic!("{e}"));
    Generation::standalone(Arc::new(cfg))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const PEER: &str = "127.0.0.1:40000";
const LOCAL: &str = "127.0.0.1:6379";

fn accept(g: &Arc<Generation>) -> Result<Session, Rejected> {
    Session::accept(g.clone(), 0, sa(PEER), sa(LOCAL), Instant::now())
}

fn backend_index(g: &Generation, name: &str) -> usize {
    g.config
        .backends
        .iter()
        .position(|b| b.name == name)
        .unwrap()
}

fn route(step: &Step) -> Route {
    match step {
        Step::Route(r) => *r,
        other => panic!("not routed: {other:?}"),
    }
}

/// Config 21 of the corpus, on local addresses.
const SNI: &str = "frontend gateway\n  bind 127.0.0.1:6379\n  tcp-request inspect-delay 5s\n  tcp-request content accept if { req_ssl_hello_type 1 }\n  use_backend b1 if { req_ssl_sni -i redis-1.acme.com }\n  use_backend b2 if { req_ssl_sni -i redis-2.acme.com }\nbackend b1\n  server s1 127.0.0.1:1\nbackend b2\n  server s2 127.0.0.1:2\n";

#[test]
fn sni_waits_for_the_whole_hello_then_routes() {
    let g = gen(SNI);
    let mut s = accept(&g).unwrap();
    let hello = hello_record(Some("REDIS-2.acme.com"), &[]);
    let t0 = Instant::now();
    let Step::Wait { until: Some(until) } = s.feed(&hello[..30], false, t0) else {
        panic!("should wait")
    };
    assert!(until >= t0 + Duration::from_secs(5));
    // Still waiting with more bytes; the deadline does not move.
    assert_eq!(
        s.feed(&hello[..60], false, t0 + Duration::from_secs(1)),
        Step::Wait { until: Some(until) }
    );
    let r = route(&s.feed(&hello, false, t0 + Duration::from_secs(2)));
    assert_eq!(r.backend, backend_index(&g, "b2"));
    assert_eq!((r.server, r.consumed), (None, 0));
}

#[test]
fn no_match_and_no_default_backend_closes() {
    let g = gen(SNI);
    let mut s = accept(&g).unwrap();
    let hello = hello_record(Some("other.example"), &[]);
    let step = s.feed(&hello, false, Instant::now());
    assert_eq!(
        step,
        Step::Reject(Rejected {
            silent: false,
            why: Why::NoBackend
        })
    );
    // Not TLS from the first byte: decided at once, without waiting for the delay.
    let mut s = accept(&g).unwrap();
    let step = s.feed(b"PING\r\n", false, Instant::now());
    assert!(
        matches!(
            step,
            Step::Reject(Rejected {
                why: Why::NoBackend,
                ..
            })
        ),
        "{step:?}"
    );
}

#[test]
fn a_closed_client_makes_the_rules_final() {
    let g = gen(SNI);
    let mut s = accept(&g).unwrap();
    let hello = hello_record(Some("redis-1.acme.com"), &[]);
    // A truncated hello and EOF: no SNI, no backend.
    let step = s.feed(&hello[..20], true, Instant::now());
    assert!(matches!(
        step,
        Step::Reject(Rejected {
            why: Why::NoBackend,
            ..
        })
    ));
}

#[test]
fn default_backend_and_content_reject_are_counted() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  tcp-request inspect-delay 1s\n  tcp-request content reject if { req.payload(0,4) -m str EVIL }\n  tcp-request content accept if { req.len ge 4 }\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let mut s = accept(&g).unwrap();
    assert!(matches!(
        s.feed(b"EV", false, Instant::now()),
        Step::Wait { .. }
    ));
    let step = s.feed(b"EVIL!", false, Instant::now());
    assert_eq!(
        step,
        Step::Reject(Rejected {
            silent: false,
            why: Why::Content
        })
    );
    assert_eq!(g.fe_stats[0].denied_req.load(Ordering::Relaxed), 1);
    let mut s = accept(&g).unwrap();
    let r = route(&s.feed(b"GOOD", false, Instant::now()));
    assert_eq!(r.backend, 0);
}

#[test]
fn wait_end_holds_until_the_delay_is_over() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  tcp-request inspect-delay 2s\n  tcp-request content accept if WAIT_END\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let mut s = accept(&g).unwrap();
    let t0 = Instant::now();
    let Step::Wait { until: Some(u) } = s.feed(b"data", false, t0) else {
        panic!()
    };
    assert_eq!(u, t0 + Duration::from_secs(2));
    assert!(matches!(
        s.feed(b"data", false, t0 + Duration::from_secs(1)),
        Step::Wait { .. }
    ));
    route(&s.feed(b"data", false, u));
}

#[test]
fn connection_rules_run_at_accept() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  acl blocked src 127.0.0.0/8\n  tcp-request connection silent-drop if blocked\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let e = accept(&g).err().expect("rejected");
    assert_eq!(
        e,
        Rejected {
            silent: true,
            why: Why::Connection
        }
    );
    assert_eq!(g.fe_stats[0].denied_conn.load(Ordering::Relaxed), 1);
    let ok = Session::accept(g.clone(), 0, sa("10.0.0.1:1"), sa(LOCAL), Instant::now());
    assert!(ok.is_ok());
}

#[test]
fn nbsrv_acl_as_config_7() {
    let g = gen("frontend front_pg\n  bind 127.0.0.1:6379\n  acl pg_single_master nbsrv(backend_pg) eq 1\n  tcp-request connection reject if !pg_single_master\n  default_backend backend_pg\nbackend backend_pg\n  server a 127.0.0.1:1\n  server b 127.0.0.1:2\n");
    // Two usable servers: not a single master, rejected.
    assert_eq!(accept(&g).err().map(|r| r.why), Some(Why::Connection));
}

#[test]
fn accept_proxy_takes_the_header_addresses() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379 accept-proxy\n  tcp-request content reject if { src 10.9.0.0/16 }\n  default_backend be\nbackend be\n  balance source\n  server s1 127.0.0.1:1\n");
    let t0 = Instant::now();
    let mut s = Session::accept(g.clone(), 0, sa(PEER), sa(LOCAL), t0).unwrap();
    // The handshake waits at most `timeout client` for the first bytes.
    assert_eq!(
        s.feed(b"", false, t0),
        Step::Wait {
            until: Some(t0 + Duration::from_secs(5))
        }
    );
    let mut head = proxy_proto::v1(Some((sa("192.0.2.7:5555"), sa("198.51.100.1:443"))));
    let hlen = head.len();
    head.extend_from_slice(b"hello");
    let r = route(&s.feed(&head, false, t0));
    assert_eq!(r.consumed, hlen);
    assert_eq!(s.src(), sa("192.0.2.7:5555"));
    assert_eq!(s.dst(), sa("198.51.100.1:443"));
    assert_eq!(s.peer(), sa(PEER));
    // The rules see the header's client.
    let mut s = accept(&g).unwrap();
    let head = proxy_proto::v2(
        Some((sa("10.9.1.1:1"), sa("10.0.0.1:2"))),
        &proxy_proto::V2Extras::default(),
    );
    let step = s.feed(&head, false, t0);
    assert!(
        matches!(
            step,
            Step::Reject(Rejected {
                why: Why::Content,
                ..
            })
        ),
        "{step:?}"
    );
}

#[test]
fn bad_or_missing_proxy_headers_close_with_haproxys_messages() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379 accept-proxy\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let t0 = Instant::now();
    let why = |head: &[u8], eof: bool, now: Instant| match accept(&g).unwrap().feed(head, eof, now)
    {
        Step::Reject(r) => r.why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        why(b"GET / HTTP/1.0\r\n", false, t0),
        Why::Handshake("Received something which does not look like a PROXY protocol header")
    );
    assert_eq!(
        why(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", false, t0),
        Why::Handshake("Received an invalid PROXY protocol header")
    );
    assert_eq!(why(b"", true, t0), Why::Handshake(PRX_EMPTY));
    assert_eq!(why(b"PROXY TC", true, t0), Why::Handshake(PRX_TRUNCATED));
    // HAProxy decides on the first bytes: a header not whole by then is truncated, and so are
    // fewer than 16 bytes of anything else (they could start a v2 header).
    assert_eq!(why(b"PROXY TC", false, t0), Why::Handshake(PRX_TRUNCATED));
    assert_eq!(why(b"PING\r\n", false, t0), Why::Handshake(PRX_TRUNCATED));
    assert_eq!(
        why(&proxy_proto::V2_SIG[..9], false, t0),
        Why::Handshake(PRX_TRUNCATED)
    );
    // Only silence is waited for, until `timeout client` (5s here).
    let mut s = accept(&g).unwrap();
    assert!(matches!(s.feed(b"", false, t0), Step::Wait { .. }));
    assert_eq!(
        s.feed(b"", false, t0 + Duration::from_secs(6)),
        Step::Reject(Rejected {
            silent: false,
            why: Why::Handshake(PRX_TIMEOUT)
        })
    );
}

#[test]
fn expect_proxy_from_a_connection_rule() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  tcp-request connection expect-proxy layer4 if { src 127.0.0.1 }\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let mut s = accept(&g).unwrap();
    assert!(s.in_handshake());
    let head = proxy_proto::v1(Some((sa("192.0.2.1:1"), sa("192.0.2.2:2"))));
    route(&s.feed(&head, false, Instant::now()));
    assert_eq!(s.src(), sa("192.0.2.1:1"));
    // Another client sends no header.
    let s = Session::accept(g.clone(), 0, sa("10.0.0.1:1"), sa(LOCAL), Instant::now()).unwrap();
    assert!(!s.in_handshake());
}

#[test]
fn dynamic_backend_names_and_fallback() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  use_backend be_%[dst_port]\n  default_backend fallback\nbackend be_6379\n  server s1 127.0.0.1:1\nbackend fallback\n  server s2 127.0.0.1:2\n");
    let mut s = accept(&g).unwrap();
    assert_eq!(
        route(&s.feed(b"", false, Instant::now())).backend,
        backend_index(&g, "be_6379")
    );
    let mut s =
        Session::accept(g.clone(), 0, sa(PEER), sa("127.0.0.1:7000"), Instant::now()).unwrap();
    assert_eq!(
        route(&s.feed(b"", false, Instant::now())).backend,
        backend_index(&g, "fallback")
    );
}

#[test]
fn backend_rules_and_use_server() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  default_backend cloud\nbackend cloud\n  tcp-request inspect-delay 5s\n  tcp-request content accept if { req_ssl_hello_type 1 }\n  use-server master if { req_ssl_sni -i master.local }\n  use-server node if { req_ssl_sni -i node.local }\n  server master 127.0.0.1:1\n  server node 127.0.0.1:2\n");
    let mut s = accept(&g).unwrap();
    let hello = hello_record(Some("node.local"), &[]);
    assert!(matches!(
        s.feed(&hello[..10], false, Instant::now()),
        Step::Wait { .. }
    ));
    let r = route(&s.feed(&hello, false, Instant::now()));
    assert_eq!(r.server, Some(1));
    let mut s = accept(&g).unwrap();
    let r = route(&s.feed(&hello_record(Some("x"), &[]), false, Instant::now()));
    assert_eq!(r.server, None);
}

#[test]
fn response_rules() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  default_backend be\nbackend be\n  tcp-response inspect-delay 2s\n  tcp-response content accept if { rep_ssl_hello_type 2 }\n  tcp-response content reject\n  server s1 127.0.0.1:1\n");
    let mut s = accept(&g).unwrap();
    route(&s.feed(b"", false, Instant::now()));
    assert!(s.has_response_rules());
    let t0 = Instant::now();
    assert!(matches!(
        s.feed_response(b"\x16\x03\x03", false, t0),
        ResponseStep::Wait { until: Some(_) }
    ));
    let server_hello = crate::tls_hello::build::record(
        0x16,
        0x0303,
        &crate::tls_hello::build::handshake(2, &[0u8; 40]),
    );
    assert_eq!(
        s.feed_response(&server_hello, false, t0),
        ResponseStep::Accept
    );
    let mut s = accept(&g).unwrap();
    route(&s.feed(b"", false, t0));
    assert_eq!(
        s.feed_response(b"HTTP/1.0 200 OK\r\n", false, t0),
        ResponseStep::Reject { silent: false }
    );
    assert_eq!(g.be_stats[0].denied_resp.load(Ordering::Relaxed), 1);
    assert_eq!(g.fe_stats[0].denied_resp.load(Ordering::Relaxed), 1);
}

#[test]
fn variables_flow_from_connection_to_content_rules() {
    let g = gen("frontend fe\n  bind 127.0.0.1:6379\n  tcp-request connection set-var(sess.port) dst_port\n  tcp-request content set-var(txn.tag) str(t),concat(-,sess.port)\n  use_backend %[var(txn.tag)]\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\nbackend t-6379\n  server s2 127.0.0.1:2\n");
    let mut s = accept(&g).unwrap();
    assert_eq!(
        route(&s.feed(b"", false, Instant::now())).backend,
        backend_index(&g, "t-6379")
    );
}

#[test]
fn the_inspection_buffer_is_bounded() {
    let g = gen("global\n  tune.bufsize 4096\n  tune.maxrewrite 1024\nfrontend fe\n  bind 127.0.0.1:6379\n  tcp-request inspect-delay 10s\n  tcp-request content accept if { req.len gt 100000 }\n  tcp-request content accept if WAIT_END\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n");
    let s = accept(&g).unwrap();
    assert_eq!(s.read_limit(), 3072);
    let mut s = accept(&g).unwrap();
    // A full buffer is final: the rules decide now.
    route(&s.feed(&[b'x'; 3072], false, Instant::now()));
}

#[test]
fn a_session_is_kept_past_its_start_only_when_its_end_reads_it() {
    let plain = gen("frontend f\n  bind 127.0.0.1:6379\n  default_backend b\nbackend b\n  server s 127.0.0.1:1\n");
    let s = accept(&plain).unwrap();
    let tcplog = crate::log_format::tcplog();
    assert!(!s.needed_at_end(None), "nothing reads it");
    assert!(!s.needed_at_end(Some(&*tcplog)), "tcplog has no %[...]");
    let samples = crate::log_format::LogFormat::parse("%ci %[src]", &crate::acl::FsLoader)
        .unwrap()
        .0;
    assert!(s.needed_at_end(Some(&samples)), "%[src] is read at the end");

    let tracked = gen("frontend f\n  bind 127.0.0.1:6379\n  stick-table type ip size 10 expire 10s store conn_cur,bytes_in_cnt\n  tcp-request connection track-sc0 src\n  default_backend b\nbackend b\n  server s 127.0.0.1:1\n");
    let s = accept(&tracked).unwrap();
    assert!(
        s.needed_at_end(None),
        "its entry counts the flow's bytes at the end"
    );
}
