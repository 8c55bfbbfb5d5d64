//! A routed topology of a test's own, three network namespaces, IPv4 and IPv6 on both links:
//!
//! ```text
//! client 10.77.1.2/24 ── 10.77.1.1 [lb, ip_forward] 10.77.2.1 ── 10.77.2.2/24 server
//! (default via 10.77.1.1)                                   (default via 10.77.2.1)
//! client 2001:db8:77::2/64 ── ::1 [lb] 2001:db8:78::1 ── 2001:db8:78::2/64 server
//!                                                       (default via 2001:db8:78::1)
//! ```
//!
//! The lb namespace routes between the two others; each test adds its own policy routing
//! there (`tproxy.rs`: the server's answers to the client's addresses are for lb's
//! transparent sockets; `origdst.rs`: the client's connections to the server are for lb).
//! Traffic stays inside the three namespaces. Dropping the [`Routed`] deletes them (and the
//! veths with them): stop the processes running inside first.
//!
//! Both tests talk through lb the same way: [`start_server`] in the server namespace tells each
//! connection the peer and local address it sees, then answers the client's half-close with the
//! SHA-256 of what it got and [`BODY`] bytes of its own; [`exchange`], in the client namespace,
//! sends [`BODY`] bytes, half-closes, reads to the end and checks both directions came whole.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::data::{hex, DataStream};
use super::netns::{exec_in, in_netns, ip};

pub const CLIENT: &str = "10.77.1.2";
pub const LB_CLIENT_SIDE: &str = "10.77.1.1";
pub const LB_SERVER_SIDE: &str = "10.77.2.1";
pub const SERVER: &str = "10.77.2.2";
pub const CLIENT6: &str = "2001:db8:77::2";
pub const LB_CLIENT_SIDE6: &str = "2001:db8:77::1";
pub const LB_SERVER_SIDE6: &str = "2001:db8:78::1";
pub const SERVER6: &str = "2001:db8:78::2";

/// The three namespaces and lb's two interfaces.
pub struct Routed {
    pub client: String,
    pub lb: String,
    pub server: String,
    /// lb's interface towards the client.
    pub to_client: String,
    /// lb's interface towards the server.
    pub to_server: String,
}

impl Routed {
    /// Namespaces `<tag><pid>x<n>c|l|s`; interfaces `<letter><pid % 10^6>x<n>...`.
    pub fn new(tag: &str, letter: char) -> Routed {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = |role: &str| format!("{tag}{pid}x{n}{role}");
        // Interface names: 15 bytes at most.
        let short = |role: &str| format!("{letter}{}x{n}{role}", pid % 1_000_000);
        let t = Routed {
            client: name("c"),
            lb: name("l"),
            server: name("s"),
            to_client: short("lc"),
            to_server: short("ls"),
        };
        for ns in [&t.client, &t.lb, &t.server] {
            // A namespace of that name can only be a leftover of a process with our pid.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // No duplicate address detection on the links made next: their IPv6 addresses,
            // link-local ones too, are usable at once.
            exec_in(
                ns,
                &["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"],
            );
        }
        let link = |ns: &str, ifname: &str, lb_if: &str, addr: &str, lb_addr: &str| {
            ip(&[
                "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", lb_if, "netns",
                &t.lb,
            ]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
            ip(&["-n", ns, "route", "add", "default", "via", lb_addr]);
            ip(&[
                "-n",
                &t.lb,
                "addr",
                "add",
                &format!("{lb_addr}/24"),
                "dev",
                lb_if,
            ]);
            ip(&["-n", &t.lb, "link", "set", lb_if, "up"]);
        };
        link(&t.client, &short("c"), &t.to_client, CLIENT, LB_CLIENT_SIDE);
        link(&t.server, &short("s"), &t.to_server, SERVER, LB_SERVER_SIDE);
        for (ns, ifname, addr) in [
            (&t.client, short("c"), CLIENT6),
            (&t.lb, t.to_client.clone(), LB_CLIENT_SIDE6),
            (&t.lb, t.to_server.clone(), LB_SERVER_SIDE6),
            (&t.server, short("s"), SERVER6),
        ] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                &ifname,
                "nodad",
            ]);
        }
        ip(&[
            "-6",
            "-n",
            &t.server,
            "route",
            "add",
            "default",
            "via",
            LB_SERVER_SIDE6,
        ]);
        exec_in(&t.lb, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        t
    }

    /// Policy routing in lb's namespace: what `selector` picks (`ip rule add <selector>`) looks
    /// up table 100, which delivers `net` locally (`ip route add local <net> dev lo table 100`).
    /// IPv6 when `net` is.
    pub fn deliver_locally(&self, selector: &[&str], net: &str) {
        let family = if net.contains(':') { "-6" } else { "-4" };
        let mut rule = vec![family, "-n", &self.lb, "rule", "add"];
        rule.extend_from_slice(selector);
        rule.extend(["lookup", "100"]);
        ip(&rule);
        ip(&[
            family, "-n", &self.lb, "route", "add", "local", net, "dev", "lo", "table", "100",
        ]);
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.lb, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Bytes each way per exchange.
pub const BODY: usize = 1 << 20;

/// The server's own answer after the client's half-close.
pub fn server_body() -> Vec<u8> {
    DataStream::new(0x7e57_5e7e).take_vec(BODY)
}

/// The peers of every connection a [`start_server`] accepted (health checks' too), in order.
pub type Peers = Arc<Mutex<Vec<SocketAddr>>>;

/// A server listening on each of `at` (`(address, port)`) in namespace `ns`: each connection
/// gets `peer=ADDR local=ADDR\n` at once, then, after the client's half-close, `sha=<SHA-256 of
/// the bytes received>\n` and [`server_body`], and a half-close.
pub fn start_server(ns: &str, at: &[(&str, u16)]) -> Peers {
    let peers = Peers::default();
    for &(addr, port) in at {
        let addr = addr.to_owned();
        let l: TcpListener = in_netns(ns, move || {
            TcpListener::bind((addr.as_str(), port))
                .unwrap_or_else(|e| panic!("bind the server to {addr} port {port}: {e}"))
        });
        let seen = peers.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(c) = conn else { continue };
                let (Ok(peer), Ok(local)) = (c.peer_addr(), c.local_addr()) else {
                    continue;
                };
                seen.lock().unwrap().push(peer);
                std::thread::spawn(move || serve(c, peer, local));
            }
        });
    }
    peers
}

fn serve(mut c: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    if c.write_all(format!("peer={peer} local={local}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sha.update(&buf[..n]),
            // A check's reset, or a timeout.
            Err(_) => return,
        }
    }
    let _ = c.write_all(format!("sha={}\n", hex(&sha.finalize())).as_bytes());
    let _ = c.write_all(&server_body());
    let _ = c.shutdown(Shutdown::Write);
}

/// What one [`exchange`] shows: the client's own address, and the peer and local address of
/// the connection the server got.
pub struct Seen {
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Connects from namespace `ns` to `to:port` (lb's address, or one lb intercepts), sends
/// [`BODY`] bytes and half-closes, reads to the end: checks the server got every byte (its
/// SHA-256) and its answer came whole after the half-close. `what` names the exchange in a
/// failure, with `logs` (lb's log).
pub fn exchange(ns: &str, to: &str, port: u16, what: &str, logs: &dyn Fn() -> String) -> Seen {
    let to = SocketAddr::new(to.parse().expect("an IP address"), port);
    let mut s = in_netns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(10))
    })
    .unwrap_or_else(|e| panic!("{what}: connect to {to}: {e}; lb's log:\n{}", logs()));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let client = s.local_addr().unwrap();
    let sent = DataStream::new(u64::from(port)).take_vec(BODY);
    let want_sha = hex(&Sha256::digest(&sent));
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || -> io::Result<()> {
        w.write_all(&sent)?;
        w.shutdown(Shutdown::Write)
    });
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    let written = writer.join().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut lines = got.splitn(3, |b| *b == b'\n');
    let first = lines.next().map(text).unwrap_or_default();
    let sha = lines.next().map(text).unwrap_or_default();
    let body = lines.next().unwrap_or_default();
    let Some((peer, local)) = first
        .strip_prefix("peer=")
        .and_then(|r| r.split_once(" local="))
        .and_then(|(p, l)| Some((p.parse().ok()?, l.parse().ok()?)))
    else {
        panic!(
            "{what}: the server was not reached (read {read:?}, sent {written:?}, {} bytes: \
             {:?}); lb's log:\n{}",
            got.len(),
            text(&got[..got.len().min(200)]),
            logs()
        );
    };
    if let Err(e) = read {
        panic!("{what}: read the answer: {e} (got {} bytes)", got.len());
    }
    if let Err(e) = written {
        panic!("{what}: send the body and half-close: {e}");
    }
    assert_eq!(
        sha,
        format!("sha={want_sha}"),
        "{what}: the server did not get the client's bytes whole"
    );
    assert_eq!(
        body.len(),
        BODY,
        "{what}: the server's answer came short after the half-close"
    );
    assert!(
        body == server_body().as_slice(),
        "{what}: the server's answer came altered"
    );
    Seen {
        client,
        peer,
        local,
    }
}
