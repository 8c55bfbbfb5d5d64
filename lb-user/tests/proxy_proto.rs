//! The PROXY protocol through the real lb, against real HAProxy (Debian's) as the peer on every
//! data plane: HAProxy sends v1 and v2 headers to lb's `accept-proxy` bind (lb logs and routes
//! on the header's client), lb sends them with `send-proxy`/`send-proxy-v2` (and on its health
//! checks) to HAProxy's `accept-proxy` bind (HAProxy logs lb's client), and bad headers get the
//! very line HAProxy logs for the same bytes. SHA-256 both ways, half-close included.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use common::ops::Syslog;
use common::peers::{sink_upload, Haproxy};
use common::scenarios::connect_from;
use common::servers::{Backend, Note};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    haproxy_sends_v1_and_v2_headers_to_lb,
    lb_sends_v1_and_v2_headers_to_haproxy,
    bad_headers_get_haproxys_log_lines,
);

const MIB: u64 = 1 << 20;

fn must<T>(r: Result<T, String>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// lb's config: syslog to `syslog`, tcplog, then `body`.
fn lb_config(syslog: &Syslog, body: &str) -> String {
    format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n    option tcplog\n\n{body}",
        syslog.addr.port()
    )
}

/// HAProxy's config: its log on its standard output, tcplog, then `body`.
fn haproxy_config(timeout_client: &str, body: &str) -> String {
    format!(
        "global\n    log stdout format raw local0\n\ndefaults\n    mode tcp\n    log global\n    \
         option tcplog\n    timeout connect 2s\n    timeout client {timeout_client}\n    \
         timeout server 60s\n\n{body}"
    )
}

/// How many connections a sink noted it received.
fn received(b: &Backend) -> usize {
    b.notes()
        .iter()
        .filter(|n| matches!(n, Note::Received { .. }))
        .count()
}

fn haproxy_sends_v1_and_v2_headers_to_lb(dataplane: &str) {
    let seven = Backend::sink("seven", 4096);
    let other = Backend::sink("other", 4096);
    let syslog = Syslog::start();
    let lb_port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{lb_port} accept-proxy\n    use_backend be_seven if {{ \
         src 127.0.0.7 }}\n    default_backend be_other\n\nbackend be_seven\n    server s7 \
         {}\n\nbackend be_other\n    server so {}\n",
        seven.addr, other.addr
    );
    let _lb = Lb::start(&lb_config(&syslog, &body), dataplane);
    let (h1, h2) = (free_port(), free_port());
    let hbody = format!(
        "frontend hv1\n    bind 127.0.0.1:{h1}\n    default_backend to_lb_v1\n\nfrontend hv2\n    \
         bind 127.0.0.1:{h2}\n    default_backend to_lb_v2\n\nbackend to_lb_v1\n    server lb \
         127.0.0.1:{lb_port} send-proxy\n\nbackend to_lb_v2\n    server lb 127.0.0.1:{lb_port} \
         send-proxy-v2\n"
    );
    let _haproxy = Haproxy::start(&haproxy_config("60s", &hbody), &[h1, h2]);
    let mut seen = (0, 0);
    for (i, (port, src)) in [
        (h1, "127.0.0.7"),
        (h2, "127.0.0.8"),
        (h2, "127.0.0.7"),
        (h1, "127.0.0.8"),
    ]
    .into_iter()
    .enumerate()
    {
        let s = must(connect_from(ip(src), local(port)), "connect to haproxy");
        let me = s.local_addr().unwrap();
        must(sink_upload(s, (MIB, i as u64 + 1), 4096), src);
        // lb logs the client of the header (address and port), and routed on it.
        let want = if src == "127.0.0.7" {
            seen.0 += 1;
            " fe be_seven/s7 "
        } else {
            seen.1 += 1;
            " fe be_other/so "
        };
        let got = syslog.wait_for(&format!("{me} ["), 1, Duration::from_secs(10));
        assert!(
            got.len() == 1 && got[0].contains(want) && got[0].contains(" -- "),
            "lb's line for {me} through haproxy port {port}: {got:?}; all: {:?}",
            syslog.lines()
        );
    }
    assert_eq!((received(&seven), received(&other)), seen);
}

fn lb_sends_v1_and_v2_headers_to_haproxy(dataplane: &str) {
    let sink = Backend::sink("sink", 4096);
    let (h1, h2) = (free_port(), free_port());
    let hbody = format!(
        "frontend hv1\n    bind 127.0.0.1:{h1} accept-proxy\n    default_backend hbe\n\n\
         frontend hv2\n    bind 127.0.0.1:{h2} accept-proxy\n    default_backend hbe\n\n\
         backend hbe\n    server sink {}\n",
        sink.addr
    );
    let haproxy = Haproxy::start(&haproxy_config("60s", &hbody), &[h1, h2]);
    let syslog = Syslog::start();
    let (p1, p2) = (free_port(), free_port());
    // Health checks too: HAProxy logs a bad header if a check comes without one.
    let body = format!(
        "frontend f1\n    bind 127.0.0.1:{p1}\n    default_backend b1\n\nfrontend f2\n    bind \
         127.0.0.1:{p2}\n    default_backend b2\n\nbackend b1\n    server h 127.0.0.1:{h1} \
         send-proxy check inter 200ms\n\nbackend b2\n    server h 127.0.0.1:{h2} send-proxy-v2 \
         check inter 200ms\n"
    );
    let _lb = Lb::start(&lb_config(&syslog, &body), dataplane);
    for (i, (port, src, fe)) in [
        (p1, "127.0.0.7", "hv1"),
        (p2, "127.0.0.8", "hv2"),
        (p2, "127.0.0.7", "hv2"),
        (p1, "127.0.0.8", "hv1"),
    ]
    .into_iter()
    .enumerate()
    {
        let s = must(connect_from(ip(src), local(port)), "connect to lb");
        let me = s.local_addr().unwrap();
        must(sink_upload(s, (MIB, i as u64 + 11), 4096), src);
        // HAProxy logs lb's client (the header's source address and port).
        let got = haproxy.wait_for(&format!("{me} ["), 1, Duration::from_secs(10));
        assert!(
            got.len() == 1 && got[0].contains(&format!(" {fe} hbe/sink ")),
            "haproxy's line for {me}: {got:?}; all: {:?}",
            haproxy.lines()
        );
    }
    assert_eq!(received(&sink), 4);
    // A few check rounds went by: every check sent its header.
    thread::sleep(Duration::from_millis(600));
    let bad: Vec<String> = haproxy
        .lines()
        .into_iter()
        .filter(|l| l.contains("PROXY protocol header"))
        .collect();
    assert!(bad.is_empty(), "haproxy refused lb's headers: {bad:?}");
}

/// One bad start of a connection: bytes, then a FIN or silence past `timeout client`.
struct Bad {
    what: &'static str,
    bytes: Vec<u8>,
    fin: bool,
}

fn bad_inputs() -> Vec<Bad> {
    let sig = b"\r\n\r\n\x00\r\nQUIT\n";
    let v2 = |ver_cmd: u8, fam: u8, len: u16, body: usize| {
        let mut b = sig.to_vec();
        b.extend_from_slice(&[ver_cmd, fam]);
        b.extend_from_slice(&len.to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, body));
        b
    };
    let bad = |what, bytes: &[u8], fin| Bad {
        what,
        bytes: bytes.to_vec(),
        fin,
    };
    vec![
        bad("short garbage", b"GARBAGE\r\n", true),
        bad(
            "an HTTP request",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            true,
        ),
        bad("v1 without ports", b"PROXY TCP4 1.2.3.4\r\n", true),
        bad(
            "v1 with a bad address",
            b"PROXY TCP6 ::1 zz::1 1000 80\r\n",
            true,
        ),
        bad(
            "v1 unknown protocol",
            b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
            true,
        ),
        bad("v1 cut short", b"PROXY TCP4 1.2.3", true),
        bad("v1 cut short, no FIN", b"PROXY TCP4 1.2.3.4 5.6", false),
        bad("short garbage, no FIN", b"PING\r\n", false),
        bad("v2 cut short", &v2(0x21, 0x11, 12, 4), true),
        bad("v2 bad version", &v2(0x31, 0x11, 12, 12), true),
        bad("v2 bad command", &v2(0x22, 0x11, 12, 12), true),
        bad("v2 short address block", &v2(0x21, 0x11, 4, 4), true),
        bad("nothing then FIN", b"", true),
        bad("nothing until the timeout", b"", false),
    ]
}

/// Sends `bad` to `addr` from a fresh socket; returns the client's address.
/// Sends `bad` to `addr` from `src`; returns the client's address, which names its log line.
fn send_bad(src: IpAddr, addr: SocketAddr, bad: &Bad) -> SocketAddr {
    let mut s = must(connect_from(src, addr), "connect");
    let me = s.local_addr().unwrap();
    if !bad.bytes.is_empty() {
        s.write_all(&bad.bytes).unwrap();
    }
    if bad.fin {
        // Both peers read the bytes in one go before the FIN.
        thread::sleep(Duration::from_millis(100));
        let _ = s.shutdown(Shutdown::Write);
    } else {
        thread::sleep(Duration::from_millis(1600));
    }
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(2));
        drop(s);
    });
    me
}

/// The message of the line logged for the client `me`: after `FE/BIND: ` for a handshake
/// error, the whole line (without the date) otherwise.
fn message(lines: &[String], me: SocketAddr) -> String {
    let Some(line) = lines.iter().find(|l| l.contains(&format!("{me} ["))) else {
        return "(no line)".to_owned();
    };
    match line.find("] fe/1: ") {
        Some(at) => line[at + "] fe/1: ".len()..].trim_end().to_owned(),
        None => line.clone(),
    }
}

fn bad_headers_get_haproxys_log_lines(dataplane: &str) {
    let sink = Backend::sink("sink", 512);
    let hport = free_port();
    let hbody = format!(
        "frontend fe\n    bind 127.0.0.1:{hport} accept-proxy\n    default_backend be\n\n\
         backend be\n    server s {}\n",
        sink.addr
    );
    let haproxy = Haproxy::start(&haproxy_config("1s", &hbody), &[hport]);
    let syslog = Syslog::start();
    let port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port} accept-proxy\n    timeout client 1s\n    \
         default_backend be\n\nbackend be\n    server s {}\n",
        sink.addr
    );
    let _lb = Lb::start(&lb_config(&syslog, &body), dataplane);
    let mut mismatches = Vec::new();
    for (i, bad) in bad_inputs().iter().enumerate() {
        // A source address of its own per case: a client port reused by a later case (the
        // server closed first, so the client's side left no TIME_WAIT) would otherwise find
        // the earlier case's line under the same address.
        let src = IpAddr::from([127, 0, 1, 1 + u8::try_from(i).unwrap()]);
        let at_haproxy = send_bad(src, local(hport), bad);
        let at_lb = send_bad(src, local(port), bad);
        haproxy.wait_for(&format!("{at_haproxy} ["), 1, Duration::from_secs(5));
        syslog.wait_for(&format!("{at_lb} ["), 1, Duration::from_secs(5));
        let want = message(&haproxy.lines(), at_haproxy);
        let got = message(&syslog.lines(), at_lb);
        if got != want {
            mismatches.push(format!("{}: haproxy {want:?}, lb {got:?}", bad.what));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(received(&sink), 0, "a bad header reached the server");
    // lb keeps serving: a good header, then bytes intact both ways.
    // The header is lb's: the sink gets only what follows it.
    let mut s = must(connect_from(ip("127.0.0.1"), local(port)), "connect");
    let me = s.local_addr().unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 443\r\n")
        .unwrap();
    must(sink_upload(s, (MIB, 5), 512), "after a good header");
    let line = syslog.wait_for("192.0.2.1:40000 [", 1, Duration::from_secs(10));
    assert!(
        !line.is_empty() && line[0].contains(" fe be/s "),
        "{me}: {line:?}"
    );
}
