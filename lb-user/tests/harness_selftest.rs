//! Tests of the test harness itself, without lb: the data stream is deterministic, and every
//! client scenario passes when run straight against its backend. A scenario that fails here is a
//! harness bug; one that passes here and fails through lb is an lb bug.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::data::{
    read_until_end, send_stream, stream_summary, DataStream, ReadEnd, Rng, Summary,
};
use common::free_port;
use common::scenarios::{self, Held};
use common::servers::{refusing_addr, wait_until, Backend, Note};

const T: Duration = Duration::from_mins(1);

#[test]
fn stream_matches_splitmix64_reference() {
    // splitmix64 seeded with 0: first outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4.
    let b = DataStream::new(0).take_vec(16);
    assert_eq!(b[..8], 0xE220_A839_7B1D_CDAFu64.to_le_bytes());
    assert_eq!(b[8..], 0x6E78_9E6A_A1B9_65F4u64.to_le_bytes());
}

#[test]
fn stream_does_not_depend_on_chunking() {
    let whole = DataStream::new(42).take_vec(100_003);
    let mut rng = Rng::new(7);
    let mut s = DataStream::new(42);
    let mut pieces = Vec::new();
    while pieces.len() < whole.len() {
        let n = (rng.range(0, 9000) as usize).min(whole.len() - pieces.len());
        pieces.extend(s.take_vec(n));
    }
    assert_eq!(pieces, whole);
    assert_ne!(DataStream::new(43).take_vec(64), whole[..64]);
}

#[test]
fn summaries_agree() {
    let mut v = Vec::new();
    let sent = send_stream(&mut v, 9, 300_001, Instant::now() + T).unwrap();
    assert_eq!(sent, Summary::of(&v));
    assert_eq!(sent, stream_summary(9, 300_001));
    assert_eq!(Summary::from_wire(&sent.to_wire()), sent);
    assert_eq!(stream_summary(1, 0).len, 0);
}

#[test]
fn flow_plan_covers_sizes_and_orders() {
    let plan = scenarios::flow_plan(200, 1, 8 << 20);
    assert!(plan.iter().any(|h| h.up == 0) && plan.iter().any(|h| h.down == 0));
    assert!(plan.iter().any(|h| h.up > 4 << 20) && plan.iter().all(|h| h.up <= 8 << 20));
    for o in [
        common::servers::HalfClose::ClientFirst,
        common::servers::HalfClose::ServerFirst,
        common::servers::HalfClose::Both,
    ] {
        assert!(plan.iter().filter(|h| h.order == o).count() > 30, "{o:?}");
    }
    let again = scenarios::flow_plan(200, 1, 8 << 20);
    assert!(plan
        .iter()
        .zip(&again)
        .all(|(a, b)| a.up == b.up && a.down == b.down));
}

#[test]
fn upload_and_download_direct() {
    let sink = Backend::sink("sink", 0);
    scenarios::bulk_upload(sink.addr, 32 << 20, 5, T).unwrap();
    let source = Backend::source("source", 32 << 20, 6);
    scenarios::bulk_download(source.addr, &source, 32 << 20, T).unwrap();
    assert!(sink.errors().is_empty() && source.errors().is_empty());
}

#[test]
fn ping_pong_send_and_close_lone_direct() {
    let echo = Backend::echo("echo");
    scenarios::ping_pong(echo.addr, 2000, 64, T).unwrap();
    for i in 0..20 {
        scenarios::lone_request(echo.addr, i, Duration::from_secs(2)).unwrap();
    }
    let sink = Backend::sink("sink", 1024);
    for i in 0..200 {
        scenarios::send_and_close(sink.addr, i, T).unwrap();
    }
    let greeter = Backend::ident_hold("s9");
    scenarios::lone_greeting(greeter.addr, "s9", Duration::from_secs(2)).unwrap();
    assert!(echo.errors().is_empty() && sink.errors().is_empty());
}

#[test]
fn half_close_direct() {
    let sink = Backend::sink("sink", 1 << 20);
    scenarios::half_close_client_first(sink.addr, 1 << 20, T).unwrap();
    let source = Backend::source("source", 1 << 20, 3);
    scenarios::half_close_server_first(source.addr, &source, 1 << 20, T).unwrap();
}

#[test]
fn resets_direct() {
    let probe = Backend::reset_probe("probe");
    scenarios::reset_client_to_server(probe.addr, &probe).unwrap();
    scenarios::reset_server_to_client(probe.addr).unwrap();
    // A graceful close is seen as EOF, so the reset checks can tell the two apart.
    let mut s = scenarios::connect(probe.addr).unwrap();
    common::data::read_line(&mut s, Instant::now() + T).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let got = probe.wait_note(Duration::from_secs(5), |ns| {
        ns.iter().find_map(|n| match n {
            Note::ReadEnded { key: 2, end } => Some(*end),
            _ => None,
        })
    });
    assert_eq!(got, Some(ReadEnd::Eof));
}

#[test]
fn concurrent_flows_direct() {
    let server = Backend::flow("flows");
    let plan = scenarios::flow_plan(60, 11, 1 << 20);
    scenarios::concurrent_flows(server.addr, &server, &plan, T).unwrap();
}

#[test]
fn ident_hold_counts_and_refusing_port() {
    let s1 = Backend::ident("s1");
    assert_eq!(scenarios::who(s1.addr).unwrap(), "s1");
    let h = Backend::ident_hold("h");
    let a = Held::open(h.addr).unwrap();
    let b = Held::open(h.addr).unwrap();
    assert_eq!((a.server.as_str(), b.server.as_str()), ("h", "h"));
    assert!(h.wait_current(2, Duration::from_secs(2)));
    a.close().unwrap();
    assert!(h.wait_current(1, Duration::from_secs(2)));
    b.close().unwrap();
    assert!(h.wait_current(0, Duration::from_secs(2)));
    assert_eq!((h.accepted(), h.max_current()), (2, 2));
    let refused = TcpStream::connect(refusing_addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let from = scenarios::who_from("127.0.0.9".parse().unwrap(), s1.addr).unwrap();
    assert_eq!(from, "s1");
}

#[test]
fn queue_probe_notes_ids_in_accept_order() {
    let q = Backend::queue_probe("q", Duration::from_millis(10));
    for i in 0..5 {
        let mut s = scenarios::connect(q.addr).unwrap();
        s.write_all(format!("c{i}\n").as_bytes()).unwrap();
        let (end, n) = read_until_end(&mut s, Instant::now() + T);
        assert_eq!((end, n), (ReadEnd::Eof, format!("ok c{i}\n").len() as u64));
    }
    assert!(wait_until(Duration::from_secs(2), || q.current() == 0));
    let ids: Vec<_> = q
        .notes()
        .into_iter()
        .filter_map(|n| match n {
            Note::Id { key, id } => Some((key, id)),
            _ => None,
        })
        .collect();
    let want: Vec<_> = (0..5).map(|i| (i, format!("c{i}"))).collect();
    assert_eq!(ids, want);
}

#[test]
fn failed_start_is_reported_with_the_log() {
    // Whatever lb is (stub or real), an invalid config must not reach `lb ready`, and the harness
    // must report that instead of hanging.
    let t0 = Instant::now();
    let r = common::Lb::try_start_with(&common::LbOpts::new(
        "frontend\n  no_such_keyword\n",
        "splice",
    ));
    assert!(r.is_err(), "lb got ready on an invalid config");
    assert!(t0.elapsed() < common::READY_TIMEOUT + Duration::from_secs(6));
}

#[test]
fn free_ports_are_never_handed_out_by_the_os() {
    // A CI run failed when the port picked for lb's stats page was given back by `bind(:0)` to the
    // test's own backend, before lb bound it. The OS's picks, held so that each is another port,
    // must never meet the harness's.
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "free_port repeated a port");
    let held: Vec<TcpListener> = (0..800)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let met: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .filter(|p| ports.contains(p))
        .collect();
    assert!(met.is_empty(), "bind(:0) handed out free ports {met:?}");
}
