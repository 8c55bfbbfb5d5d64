//! A server for tests in a namespace of their own (`netns`) that answers a line and then echoes,
//! the client side that checks both, and the namespace's TCP counters: what tests of socket
//! options (TCP Fast Open, delayed ACKs) count and check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::netns::{exec_in, in_netns};

/// A listener in namespace `ns`, taking data in SYNs (`TCP_FASTOPEN`) when `tfo`. Each
/// connection: `greet` first when given, then a line read and answered `got:LINE`, then every
/// further byte echoed until the client's FIN, then its own FIN.
pub fn server(ns: &str, greet: Option<&'static str>, tfo: bool) -> SocketAddr {
    let l = in_netns(ns, move || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the server");
        if tfo {
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
        }
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

/// One exchange through lb at `port` in namespace `ns`: reads the greeting when one is
/// expected, sends `line` and `body` bytes (from a writer thread, so that neither side's
/// buffers stall the other), closes its sending side, and returns the answer to the line after
/// checking the echoed bytes' length and SHA-256 against what it sent.
pub fn exchange(
    ns: &str,
    port: u16,
    greeting: Option<&'static str>,
    line: String,
    body: usize,
) -> String {
    in_netns(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to lb");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Some(g) = greeting {
            let mut got = vec![0u8; g.len()];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("no greeting from a server that speaks first: {e}"));
            assert_eq!(got, g.as_bytes());
        }
        let body: Vec<u8> = (0..body).map(|i| (i * 7 + i / 251) as u8).collect();
        let (sent, len) = (Sha256::digest(&body), body.len());
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
        assert_eq!(got.len() - end, len, "echoed bytes");
        assert_eq!(Sha256::digest(&got[end..]), sent, "the echo's SHA-256");
        String::from_utf8(got[..end].to_vec()).unwrap()
    })
}

/// A counter of namespace `ns`: `group` `TcpExt` (`/proc/net/netstat`) or `Tcp`, `Ip`, `Udp`
/// (`/proc/net/snmp`), `name` as the kernel spells it (`TCPFastOpenActive`, `OutSegs`).
pub fn counter(ns: &str, group: &str, name: &str) -> u64 {
    let file = if group == "TcpExt" || group == "IpExt" {
        "/proc/net/netstat"
    } else {
        "/proc/net/snmp"
    };
    let text = exec_in(ns, &["cat", file]);
    let prefix = format!("{group}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .map_or_else(
            || panic!("no {group} {name} in {file}"),
            |(_, v)| v.parse().unwrap(),
        )
}
