//! `option tcp-smart-accept` and `option tcp-smart-connect`: one ACK segment fewer per
//! connection on each side, as in HAProxy. With the first, lb's listener has `TCP_QUICKACK`
//! off, which the sockets it accepts inherit: the ACK of a client's request leaves with the
//! answer instead of alone. With the second, when bytes wait for the server at the connect
//! (here those `tcp-request content` rules read, or a `send-proxy` header), the handshake's
//! last ACK leaves with them.
//!
//! Counted in a network namespace of the test's own, where nothing else sends: the segments
//! (`Tcp OutSegs`) of the same short exchanges through frontends with and without the option,
//! on each data plane; and every byte of a 1 MiB echo through each option checked both ways.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::time::Duration;

use common::line_echo::{counter, exchange, server};
use common::netns::{in_netns, Segment};
use common::{free_port, Lb, LbOpts, DEFAULTS, SOCKMAP_AT_ONCE};

/// Short exchanges per frontend for the count.
const EXCHANGES: u64 = 20;

/// Bytes of the echo that checks the data path through each option.
const BODY: usize = 1 << 20;

/// How much counter `(group, name)` of the namespace grew over [`EXCHANGES`] short exchanges
/// through lb at `port` (after the greeting `greet` when given): a line answered, then both
/// sides' FINs.
fn grew(
    ns: &str,
    (group, name): (&str, &str),
    port: u16,
    greet: Option<&'static str>,
    what: &str,
) -> u64 {
    let before = counter(ns, group, name);
    for i in 0..EXCHANGES {
        let line = format!("{what} {i}\n");
        assert_eq!(
            exchange(ns, port, greet, line.clone(), 0),
            format!("got:{line}"),
            "{what}: exchange {i}"
        );
    }
    counter(ns, group, name) - before
}

/// Segments sent in the namespace, both ends of both legs.
const SEGMENTS: (&str, &str) = ("Tcp", "OutSegs");

/// ACKs the kernel sent when its delayed-ACK timer fired (nothing carried them earlier).
const TIMED_OUT_ACKS: (&str, &str) = ("TcpExt", "DelayedACKs");

/// The count of segments through lb at `port`.
fn segments(ns: &str, port: u16, what: &str) -> u64 {
    grew(ns, SEGMENTS, port, None, what)
}

/// The count of segments over [`EXCHANGES`] exchanges through lb at `port` with the server
/// that greets first behind `send-proxy`: the server reads lb's PROXY header as its line
/// (answering `got:PROXY TCP4 ...`), then echoes the client's line.
fn proxied_segments(ns: &str, port: u16, what: &str) -> u64 {
    let before = counter(ns, SEGMENTS.0, SEGMENTS.1);
    for i in 0..EXCHANGES {
        let line = format!("{what} {i}\n");
        let sent = line.clone();
        let got = in_netns(ns, move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to lb");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(sent.as_bytes()).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).expect("greeting, answer, echo");
            got
        });
        let proxied = got
            .strip_prefix("hello\ngot:PROXY TCP4 127.0.0.1 127.0.0.1 ")
            .and_then(|rest| rest.split_once("\r\n"))
            .map(|(_ports, echo)| echo);
        assert_eq!(
            proxied,
            Some(line.as_str()),
            "{what}: exchange {i} got {got:?}"
        );
    }
    counter(ns, SEGMENTS.0, SEGMENTS.1) - before
}

#[test]
fn smart_accept_and_connect_each_save_an_ack_per_connection() {
    let mut segment = Segment::new("ack");
    let host = segment.host("h", Ipv4Addr::new(10, 79, 0, 1));
    let answer = server(&host.ns, None, false);
    let greeter = server(&host.ns, Some("hello\n"), false);
    for plane in ["splice", "sockmap", SOCKMAP_AT_ONCE] {
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let cfg = format!(
            "global\n    nbthread 1\n\n{DEFAULTS}
frontend smart_accept
    bind 127.0.0.1:{}
    option tcp-smart-accept
    default_backend plain

frontend plain
    bind 127.0.0.1:{}
    default_backend plain

frontend read_then_smart_connect
    bind 127.0.0.1:{}
    tcp-request inspect-delay 2s
    tcp-request content accept if {{ req.len gt 0 }}
    default_backend smart_connect

frontend read_then_plain
    bind 127.0.0.1:{}
    tcp-request inspect-delay 2s
    tcp-request content accept if {{ req.len gt 0 }}
    default_backend plain

frontend greeted_smart_connect
    bind 127.0.0.1:{}
    default_backend greeter_smart_connect

frontend greeted_plain
    bind 127.0.0.1:{}
    default_backend greeter

frontend proxied_smart_connect
    bind 127.0.0.1:{}
    default_backend greeter_proxied_smart_connect

frontend proxied_plain
    bind 127.0.0.1:{}
    default_backend greeter_proxied

backend plain
    server s {answer}

backend greeter
    server s {greeter}

backend greeter_smart_connect
    option tcp-smart-connect
    server s {greeter}

backend smart_connect
    option tcp-smart-connect
    server s {answer}

backend greeter_proxied_smart_connect
    option tcp-smart-connect
    server s {greeter} send-proxy

backend greeter_proxied
    server s {greeter} send-proxy
",
            ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
        );
        let lb = Lb::start_with(&LbOpts::new(&cfg, plane).netns(&host.ns));
        let ns = &host.ns;
        // Warm: the first connections of a namespace learn its route metrics.
        for (i, &p) in ports[..6].iter().enumerate() {
            let greet = (i >= 4).then_some("hello\n");
            exchange(ns, p, greet, "warm\n".into(), 0);
        }
        proxied_segments(ns, ports[6], "warm");
        proxied_segments(ns, ports[7], "warm");
        let accept = (
            segments(ns, ports[0], "smart accept"),
            segments(ns, ports[1], "plain"),
        );
        let connect = (
            segments(ns, ports[2], "smart connect"),
            segments(ns, ports[3], "plain, rules read first"),
        );
        // A server that speaks first behind `send-proxy`: the PROXY header is bytes waiting
        // at the connect, so the handshake's last ACK leaves with it, and the server, which
        // accepts at that ACK, greets no later.
        let proxied = (
            proxied_segments(ns, ports[6], "proxied, smart connect"),
            proxied_segments(ns, ports[7], "proxied, plain"),
        );
        // One fewer per connection; allow half of them a delayed ACK that timed out first
        // (an answer slower than the kernel's 40 ms on a loaded machine).
        for ((with, without), option) in [
            (accept, "accept"),
            (connect, "connect"),
            (proxied, "connect with send-proxy"),
        ] {
            assert!(
                with + EXCHANGES / 2 <= without,
                "{plane}: tcp-smart-{option}: {with} segments for {EXCHANGES} connections, \
                 {without} without; lb's log:\n{}",
                lb.logs().join("\n")
            );
        }
        // Nothing waits for a server that speaks first: its handshake's last ACK goes at once
        // (delayed, the server would accept only at the delayed-ACK timeout, and greet late).
        let greeted = (
            grew(
                ns,
                TIMED_OUT_ACKS,
                ports[4],
                Some("hello\n"),
                "greeted, smart connect",
            ),
            grew(
                ns,
                TIMED_OUT_ACKS,
                ports[5],
                Some("hello\n"),
                "greeted, plain",
            ),
        );
        assert!(
            greeted.0 < greeted.1 + EXCHANGES / 2,
            "{plane}: tcp-smart-connect with nothing to send delayed the handshake's ACK: {} \
             delayed ACKs timed out in {EXCHANGES} connections to a server that speaks first, \
             {} without the option",
            greeted.0,
            greeted.1
        );
        eprintln!(
            "{plane}: segments per connection: smart accept {:.2}, plain {:.2}; smart connect \
             {:.2}, plain {:.2}; with send-proxy {:.2}, plain {:.2}; timed-out delayed ACKs, \
             greeting server: smart connect {}, plain {}",
            accept.0 as f64 / EXCHANGES as f64,
            accept.1 as f64 / EXCHANGES as f64,
            connect.0 as f64 / EXCHANGES as f64,
            connect.1 as f64 / EXCHANGES as f64,
            proxied.0 as f64 / EXCHANGES as f64,
            proxied.1 as f64 / EXCHANGES as f64,
            greeted.0,
            greeted.1,
        );
        // The data path is the same with the options: every byte, both ways, and the
        // half-close.
        for (port, what) in [(ports[0], "smart accept"), (ports[2], "smart connect")] {
            let line = format!("{plane} {what} echo\n");
            let got = exchange(ns, port, None, line.clone(), BODY);
            assert_eq!(got, format!("got:{line}"), "{plane}: {what}");
        }
        drop(lb);
    }
}
