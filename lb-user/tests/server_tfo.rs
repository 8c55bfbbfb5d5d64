//! `server ... tfo`: TCP Fast Open to the server, with HAProxy's rule: only when bytes wait to
//! be sent at the connect (here the bytes `tcp-request content` rules read), so that they ride
//! in the SYN; never without (a server that speaks first would wait for a SYN no write sends).
//!
//! In a network namespace of the test's own (`net.ipv4.tcp_fastopen=3` there: client and
//! server), on each data plane: the kernel's counters of that namespace say whether a SYN
//! carried data the server took (`TCPFastOpenActive` on lb's side, `TCPFastOpenPassive` on the
//! server's), and every answer is checked byte for byte.

#[macro_use]
mod common;

use std::net::Ipv4Addr;

use common::line_echo::{counter, exchange, server};
use common::netns::Segment;
use common::{free_port, Lb, LbOpts, DEFAULTS, SOCKMAP_AT_ONCE};

/// Bytes each exchange sends after its line, echoed back: both directions checked end to end.
const BODY: usize = 1 << 20;

/// `TcpExt` counters of the namespace.
fn tcp_ext(ns: &str, name: &str) -> u64 {
    counter(ns, "TcpExt", name)
}

#[test]
fn first_bytes_ride_in_the_syn_and_a_server_that_speaks_first_is_not_kept_waiting() {
    let mut segment = Segment::new("tfo");
    let host = segment.host("h", Ipv4Addr::new(10, 78, 0, 1));
    host.sysctl("net.ipv4.tcp_fastopen=3");
    let echo = server(&host.ns, None, true);
    let greeter = server(&host.ns, Some("hello\n"), true);
    for plane in ["splice", "sockmap", SOCKMAP_AT_ONCE] {
        let (f1, f2) = (free_port(), free_port());
        let cfg = format!(
            "global\n    nbthread 1\n\n{DEFAULTS}
frontend inspected
    bind 127.0.0.1:{f1}
    tcp-request inspect-delay 2s
    tcp-request content accept if {{ req.len gt 0 }}
    default_backend echo

backend echo
    server e {echo} tfo

frontend plain
    bind 127.0.0.1:{f2}
    default_backend greeter

backend greeter
    server g {greeter} tfo
"
        );
        let lb = Lb::start_with(&LbOpts::new(&cfg, plane).netns(&host.ns));
        let active = tcp_ext(&host.ns, "TCPFastOpenActive");
        let passive = tcp_ext(&host.ns, "TCPFastOpenPassive");
        // The first may fetch the server's cookie in a plain handshake; the next ones carry
        // their bytes in the SYN.
        for i in 0..3 {
            let line = format!("{plane} request {i} {}\n", "x".repeat(100 * i));
            let answer = exchange(&host.ns, f1, None, line.clone(), BODY);
            assert_eq!(answer, format!("got:{line}"), "{plane}: exchange {i}");
        }
        assert!(
            tcp_ext(&host.ns, "TCPFastOpenActive") >= active + 2
                && tcp_ext(&host.ns, "TCPFastOpenPassive") >= passive + 2,
            "{plane}: the requests' SYNs did not carry their bytes (TCPFastOpenActive {} -> {}, \
             TCPFastOpenPassive {} -> {}); lb's log:\n{}",
            active,
            tcp_ext(&host.ns, "TCPFastOpenActive"),
            passive,
            tcp_ext(&host.ns, "TCPFastOpenPassive"),
            lb.logs().join("\n")
        );
        // Nothing to send at the connect: a plain connect, and the greeting comes.
        for i in 0..2 {
            let line = format!("{plane} after the greeting {i}\n");
            let answer = exchange(&host.ns, f2, Some("hello\n"), line.clone(), BODY);
            assert_eq!(
                answer,
                format!("got:{line}"),
                "{plane}: greeted exchange {i}"
            );
        }
        drop(lb);
    }
}
