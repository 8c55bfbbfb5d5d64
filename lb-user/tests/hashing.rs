//! Hash-based server choice through the real lb, against the real HAProxy: with the same
//! backend (`balance source` or `balance hash src`, each `hash-type`), lb and Debian's HAProxy
//! send every client address to the same server; two lb nodes agree with each other whatever
//! their file order; `maglev` spreads clients evenly. Clients come from many addresses of
//! 127/8 (each socket is bound before it connects; loopback accepts all of 127/8).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::data::mix64;
use common::scenarios;
use common::servers::Backend;
use common::{free_port, local, simple_config, Lb, TempCfg};

on_both_planes!(
    source_maps_like_haproxy,
    hash_src_maps_like_haproxy,
    two_lb_nodes_agree_whatever_the_file_order,
    maglev_spreads_evenly,
);

/// Client addresses per comparison: enough to reach every server many times over.
const CLIENTS: u64 = 300;

/// HAProxy from Debian (`haproxy -f cfg -db`: foreground, no daemon), stopped when dropped.
struct Haproxy {
    child: Child,
    _cfg: TempCfg,
}

impl Haproxy {
    /// Starts HAProxy on `cfg` and waits until its frontend at `addr` accepts connections.
    fn start(cfg: &str, addr: SocketAddr) -> Haproxy {
        let cfg = TempCfg::new(cfg);
        let mut child = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg.path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy is installed (cargo xtask setup)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("haproxy exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, _cfg: cfg }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `k`th client address: spread over all of 127/8 (never 127.0.0.0 or a .0/.255 host).
fn client_ip(k: u64) -> IpAddr {
    let x = mix64(k);
    IpAddr::V4(Ipv4Addr::new(
        127,
        (x % 256) as u8,
        (x >> 8) as u8,
        1 + ((x >> 16) % 254) as u8,
    ))
}

/// The server each of the first `n` client addresses reaches through `addr`.
fn mapping(addr: SocketAddr, n: u64) -> Vec<String> {
    (0..n)
        .map(|k| {
            let ip = client_ip(k);
            scenarios::who_from(ip, addr).unwrap_or_else(|e| panic!("client {ip}: {e}"))
        })
        .collect()
}

fn counts(m: &[String]) -> BTreeMap<&str, usize> {
    let mut c = BTreeMap::new();
    for s in m {
        *c.entry(s.as_str()).or_default() += 1;
    }
    c
}

/// Five identifying servers s1..s5.
fn five() -> Vec<Backend> {
    (1..=5).map(|k| Backend::ident(&format!("s{k}"))).collect()
}

/// Runs lb and HAProxy on the same backend (`backend_lines` and `server` lines) and checks
/// that every client reaches the same server through both. Returns lb's mapping.
fn same_as_haproxy(dataplane: &str, backend_lines: &[&str], servers: &[String]) -> Vec<String> {
    let (lb_port, ha_port) = (free_port(), free_port());
    let _lb = Lb::start(&simple_config(lb_port, backend_lines, servers), dataplane);
    let _ha = Haproxy::start(
        &simple_config(ha_port, backend_lines, servers),
        local(ha_port),
    );
    let ours = mapping(local(lb_port), CLIENTS);
    let theirs = mapping(local(ha_port), CLIENTS);
    let differ: Vec<String> = (0..CLIENTS as usize)
        .filter(|&k| ours[k] != theirs[k])
        .map(|k| {
            format!(
                "{}: lb {} haproxy {}",
                client_ip(k as u64),
                ours[k],
                theirs[k]
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{backend_lines:?}: {} of {CLIENTS} clients differ, e.g. {:?}; lb {:?}, haproxy {:?}",
        differ.len(),
        &differ[..differ.len().min(5)],
        counts(&ours),
        counts(&theirs)
    );
    ours
}

fn server_lines(servers: &[Backend], extra: &[&str]) -> Vec<String> {
    servers
        .iter()
        .zip(extra.iter().chain(std::iter::repeat(&"")))
        .map(|(b, x)| format!("{} {} {x}", b.name, b.addr))
        .collect()
}

fn source_maps_like_haproxy(dataplane: &str) {
    let s = five();
    let plain = server_lines(&s, &[]);
    // Weights, ids out of file order, one server in maintenance: what the map's and the tree's
    // contents depend on.
    let mixed = server_lines(
        &s,
        &[
            "id 7 weight 2",
            "id 3",
            "id 12 weight 3",
            "id 1 disabled",
            "id 5",
        ],
    );
    for ht in [
        "hash-type map-based",
        "hash-type consistent",
        "hash-type consistent sdbm",
    ] {
        for servers in [&plain, &mixed] {
            let m = same_as_haproxy(dataplane, &["balance source", ht], servers);
            if ht != "hash-type consistent sdbm" {
                // Not a trivial agreement: the clients spread over the servers. (Without
                // avalanche the ring sees 127/8 as one narrow arc, in HAProxy too.)
                assert!(counts(&m).len() >= 3, "{ht}: {:?}", counts(&m));
            }
        }
    }
}

fn hash_src_maps_like_haproxy(dataplane: &str) {
    let s = five();
    let servers = server_lines(&s, &["weight 2", "", "weight 3", "", ""]);
    // (hash-type, whether clients spread): a raw hash on a ring can leave 127/8 in one arc,
    // in HAProxy too (its docs warn about djb2 on numeric input).
    for (ht, spreads) in [
        ("hash-type map-based", true),
        ("hash-type map-based crc32 avalanche", true),
        ("hash-type consistent", true),
        ("hash-type consistent djb2", false),
        ("hash-type consistent wt6 avalanche", true),
    ] {
        let m = same_as_haproxy(dataplane, &["balance hash src", ht], &servers);
        assert!(!spreads || counts(&m).len() >= 3, "{ht}: {:?}", counts(&m));
    }
}

fn two_lb_nodes_agree_whatever_the_file_order(dataplane: &str) {
    let s = five();
    let ids = [
        "id 11",
        "id 12 weight 2",
        "id 13",
        "id 14 weight 3",
        "id 15",
    ];
    let forward = server_lines(&s, &ids);
    let mut backward = forward.clone();
    backward.reverse();
    for ht in ["hash-type consistent", "hash-type maglev"] {
        let lines = ["balance source", ht];
        let (a, b) = (free_port(), free_port());
        let _one = Lb::start(&simple_config(a, &lines, &forward), dataplane);
        let _two = Lb::start(&simple_config(b, &lines, &backward), dataplane);
        let one = mapping(local(a), CLIENTS);
        assert_eq!(one, mapping(local(b), CLIENTS), "{ht}");
        assert_eq!(counts(&one).len(), 5, "{ht}: {:?}", counts(&one));
    }
}

fn maglev_spreads_evenly(dataplane: &str) {
    let s = five();
    let port = free_port();
    let _lb = Lb::start(
        &simple_config(
            port,
            &["balance source", "hash-type maglev"],
            &server_lines(&s, &[]),
        ),
        dataplane,
    );
    let m = mapping(local(port), 500);
    let c = counts(&m);
    // 100 expected each; the table itself is even to one slot (unit tests), what varies here
    // is which 500 addresses were drawn.
    assert_eq!(c.len(), 5, "{c:?}");
    assert!(c.values().all(|&n| (60..=140).contains(&n)), "{c:?}");
}
