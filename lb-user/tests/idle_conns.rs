//! 7 000 connections held idle through lb at once, then all answered: each client's request
//! and its answer intact (SHA-256 at both ends, each side's FIN passed on), on every plane.
//! Prints lb's RSS per idle connection, right after the burst and once idle, and holds the
//! idle figure of a flow in the copy phase (splice, and sockmap before its flows enter the
//! maps) to [`IDLE_BYTES_MAX`].
//!
//! Limits used: the test process sets its `RLIMIT_NOFILE` (soft and hard) to [`NOFILE`],
//! 20 000, the most this machine's hard limit allows (raising it needs `CAP_SYS_RESOURCE`,
//! which the test runner lacks); lb inherits it and runs with `global maxconn 9500`. 7 000
//! connections take 14 000 fds in the test (client and backend ends) and 14 000 in lb, which
//! keeps a fifth of its fds for splice pipes (7 972 connections at most here): 10 000 would
//! need more than 20 000 in each.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{free_port, Lb};
use sha2::{Digest, Sha256};

/// Connections held at once.
const CONNS: usize = 7_000;
/// The test's (and so lb's) `RLIMIT_NOFILE`: the hard limit here.
const NOFILE: u64 = 20_000;
/// Timeouts longer than the test: connecting 7 000 clients on a loaded machine can take
/// longer than the usual `timeout client` (the first ones idle meanwhile), and lb's connects
/// wait in the backend's full accept queue (SYN retries take seconds).
const IDLE_DEFAULTS: &str = "\
defaults
    mode tcp
    timeout connect 30s
    timeout client 10m
    timeout server 10m
";

/// How long the connections stay idle before lb's RSS is read again.
const SETTLE: Duration = Duration::from_millis(2500);

/// lb's RSS growth per idle connection in the copy phase, once idle: 1.4-2.3 KB here (its
/// ring entry, its registry entry, what its end needs, its kill switch, and the allocator's
/// pages around them), 4.4 KB before the setup futures stopped leaving holes among them (see
/// `main.rs`' allocator). The bound has room for the machine's wobble and still catches that.
const IDLE_BYTES_MAX: f64 = 3072.0;

/// Bound of the whole test's each phase.
const PHASE: Duration = Duration::from_mins(2);

on_both_planes!(seven_thousand_idle_connections_are_held_then_answered);

fn seven_thousand_idle_connections_are_held_then_answered(dataplane: &str) {
    // One plane at a time: together they would need three times the fds the limit allows.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    raise_nofile();
    let backend = common::servers::listener_with_backlog(16_384);
    let backend_addr = backend.local_addr().unwrap();
    let port = free_port();
    let cfg = format!(
        "global\n    nbthread 1\n    maxconn 9500\n\n{IDLE_DEFAULTS}\nfrontend fe\n    \
         bind 127.0.0.1:{port} backlog 16384\n    default_backend be\n\nbackend be\n    \
         server s1 {backend_addr}\n"
    );
    let lb = Lb::start(&cfg, dataplane);
    // Once lb has given back what starting freed (its first trim, see `listener::trim`).
    std::thread::sleep(SETTLE);
    let rss_before = rss_kib(lb.pid());

    // The backend accepts every connection lb makes and holds it.
    let held = std::thread::spawn(move || accept_all(&backend));
    let deadline = Instant::now() + PHASE;
    let clients: Vec<TcpStream> = (0..CONNS)
        .map(|i| {
            assert!(
                Instant::now() < deadline,
                "{i} clients connected in {PHASE:?}"
            );
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(PHASE)).unwrap();
            c
        })
        .collect();
    let mut servers = held.join().unwrap();
    let per_conn = |rss: u64| (rss.saturating_sub(rss_before) * 1024) as f64 / CONNS as f64;
    let rss_burst = rss_kib(lb.pid());
    // Idle: lb gives the burst's memory back once connections stop coming (see
    // `listener::trim`), within two of its ticks.
    std::thread::sleep(SETTLE);
    let rss_idle = rss_kib(lb.pid());
    eprintln!(
        "{dataplane}: {CONNS} idle connections: lb RSS {rss_before} KiB -> {rss_burst} KiB \
         right after the burst ({:.0} bytes per connection), {rss_idle} KiB idle: {:.0} bytes \
         per idle connection",
        per_conn(rss_burst),
        per_conn(rss_idle)
    );
    if dataplane != common::SOCKMAP_AT_ONCE {
        assert!(
            per_conn(rss_idle) <= IDLE_BYTES_MAX,
            "{dataplane}: {:.0} bytes per idle connection, more than {IDLE_BYTES_MAX}",
            per_conn(rss_idle)
        );
    }

    // Every client sends its request and its FIN; the backend reads each to its end.
    for (i, c) in clients.iter().enumerate() {
        (&*c).write_all(&request(i)).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
    }
    let mut seen = vec![false; CONNS];
    for s in &mut servers {
        s.set_read_timeout(Some(PHASE)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let i = usize::from(u16::from_be_bytes([got[0], got[1]]));
        assert!(i < CONNS && !seen[i], "request {i} arrived once");
        seen[i] = true;
        assert_eq!(sha(&got), sha(&request(i)), "request {i} intact (SHA-256)");
        s.write_all(&answer(i)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    }
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(sha(&got), sha(&answer(i)), "answer {i} intact (SHA-256)");
    }
}

/// Accepts [`CONNS`] connections and returns them, held.
fn accept_all(l: &TcpListener) -> Vec<TcpStream> {
    let deadline = Instant::now() + PHASE;
    l.set_nonblocking(true).unwrap();
    let mut held = Vec::with_capacity(CONNS);
    while held.len() < CONNS {
        assert!(
            Instant::now() < deadline,
            "the backend got {} connections in {PHASE:?}",
            held.len()
        );
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                held.push(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("backend accept: {e}"),
        }
    }
    held
}

/// Client `i`'s request: its number, then bytes of its own.
fn request(i: usize) -> Vec<u8> {
    let mut r = (i as u16).to_be_bytes().to_vec();
    r.extend((0..100).map(|k| (i * 7 + k) as u8));
    r
}

fn answer(i: usize) -> Vec<u8> {
    (0..300).map(|k| (i * 13 + k * 3) as u8).collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: NOFILE,
    };
    // SAFETY: setrlimit with a valid struct (root may raise the hard limit).
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) };
    assert_eq!(
        rc, 0,
        "setrlimit(RLIMIT_NOFILE, {NOFILE}) (at most the hard limit)"
    );
}

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
