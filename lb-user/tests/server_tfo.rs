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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::netns::{exec_in, in_netns, Segment};
use common::{free_port, Lb, LbOpts, DEFAULTS, SOCKMAP_AT_ONCE};
use sha2::{Digest, Sha256};

/// A listener in the namespace that takes data in SYNs (`TCP_FASTOPEN`). Each connection:
/// `greet` first when given, then a line read and answered `got:LINE`, then every further
/// byte echoed until the client's FIN, then its own FIN.
fn server(ns: &str, greet: Option<&'static str>) -> SocketAddr {
    let l = in_netns(ns, || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the server");
        let qlen: libc::c_int = 16;
        // SAFETY: setsockopt of one int on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_FASTOPEN,
                (&raw const qlen).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "TCP_FASTOPEN: {}", std::io::Error::last_os_error());
        l
    });
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut w = s.try_clone().unwrap();
                if let Some(g) = greet {
                    let _ = w.write_all(g.as_bytes());
                }
                let mut line = String::new();
                let mut r = BufReader::new(s);
                if r.read_line(&mut line).is_ok() && !line.is_empty() {
                    let _ = w.write_all(format!("got:{line}").as_bytes());
                }
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// Bytes each exchange sends after its line, echoed back: both directions checked end to end.
const BODY: usize = 1 << 20;

/// One exchange through lb at `port` in the namespace: reads the greeting when one is expected,
/// sends `line` and [`BODY`] bytes (from a writer thread, so that neither side's buffers stall
/// the other), closes its sending side, and returns the answer to the line after checking the
/// echoed bytes' SHA-256 against what it sent.
fn exchange(ns: &str, port: u16, greeting: Option<&'static str>, line: String) -> String {
    in_netns(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to lb");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Some(g) = greeting {
            let mut got = vec![0u8; g.len()];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("no greeting from a server that speaks first: {e}"));
            assert_eq!(got, g.as_bytes());
        }
        let body: Vec<u8> = (0..BODY).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = Sha256::digest(&body);
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(line.as_bytes()).unwrap();
            w.write_all(&body).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("the answer and the echo");
        writer.join().unwrap();
        let end = got
            .iter()
            .position(|b| *b == b'\n')
            .map_or(got.len(), |i| i + 1);
        assert_eq!(got.len() - end, BODY, "echoed bytes");
        assert_eq!(Sha256::digest(&got[end..]), sent, "the echo's SHA-256");
        String::from_utf8(got[..end].to_vec()).unwrap()
    })
}

/// `TcpExt` counters of the namespace (`/proc/net/netstat`).
fn tcp_ext(ns: &str, name: &str) -> u64 {
    let text = exec_in(ns, &["cat", "/proc/net/netstat"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .map_or_else(
            || panic!("no {name} in /proc/net/netstat"),
            |(_, v)| v.parse().unwrap(),
        )
}

#[test]
fn first_bytes_ride_in_the_syn_and_a_server_that_speaks_first_is_not_kept_waiting() {
    let mut segment = Segment::new("tfo");
    let host = segment.host("h", Ipv4Addr::new(10, 78, 0, 1));
    host.sysctl("net.ipv4.tcp_fastopen=3");
    let echo = server(&host.ns, None);
    let greeter = server(&host.ns, Some("hello\n"));
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
            let answer = exchange(&host.ns, f1, None, line.clone());
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
            let answer = exchange(&host.ns, f2, Some("hello\n"), line.clone());
            assert_eq!(
                answer,
                format!("got:{line}"),
                "{plane}: greeted exchange {i}"
            );
        }
        drop(lb);
    }
}
