//! lb under a low file-descriptor limit, on every plane: it never accepts a client it cannot
//! serve (the others wait in the backlog; none is accepted and then reset or closed), the
//! clients it serves stay intact (all move their data at once while lb is still at its limit,
//! where splice pipes run out and directions copy through buffers: SHA-256 at both ends,
//! half-close), the next client is served
//! once others have closed, and the condition is logged at most once per second. Without
//! `global maxconn`, the `maxconn` lb derives from the limit is HAProxy's (Debian's HAProxy,
//! splicing, under the same limit).
//!
//! Limits used: lb runs with `RLIMIT_NOFILE` 256 (soft and hard) and `global maxconn 4096`,
//! far more than 256 fds can hold; 400 clients connect and idle.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::data::{recv_to_eof, send_stream, Summary};
use common::haproxy::Haproxy;
use common::servers::{wait_until, Backend, FlowHeader, HalfClose, Note};
use common::{free_port, local, simple_config, Lb, LbOpts};

/// lb's `RLIMIT_NOFILE`.
const NOFILE: u64 = 256;
/// Clients that connect and idle: more than lb can serve under [`NOFILE`].
const IDLE: usize = 400;
/// Bytes each way when a held client finally moves data: the answer is larger than what lb's
/// socket buffers towards a client that reads late hold (4 MiB at most here), so its splice
/// direction holds a pipe while it waits.
const UP_BYTES: u64 = 64 * 1024;
const DOWN_BYTES: u64 = 8 * 1024 * 1024;

on_both_planes!(never_accepts_what_it_cannot_serve);

/// A backend for held flows: reads the flow header (each client sends it at once, then
/// idles), notes its id, then serves it client-first: reads to EOF (`Received`), sends
/// `down` bytes (`Sent`) and shuts its write side.
fn held_flows() -> Backend {
    Backend::spawn("held", |s, c| {
        let mut hdr = [0u8; FlowHeader::LEN];
        s.read_exact(&mut hdr)?;
        let h = FlowHeader::decode(&hdr);
        c.note(Note::Id {
            key: h.id,
            id: h.id.to_string(),
        });
        let got = recv_to_eof(s, c.deadline)?;
        c.note(Note::Received {
            key: h.id,
            sum: got,
        });
        let sent = send_stream(s, h.down_seed(), h.down, c.deadline)?;
        c.note(Note::Sent {
            key: h.id,
            sum: sent,
        });
        s.shutdown(Shutdown::Write)
    })
}

fn header(id: u64) -> FlowHeader {
    FlowHeader {
        id,
        order: HalfClose::ClientFirst,
        up: UP_BYTES,
        down: DOWN_BYTES,
    }
}

/// Connects and sends the flow header, nothing more. The client's receive buffer is small,
/// so that when it reads late (see [`finish`]), lb's splice direction towards it holds its
/// pipe meanwhile; with many flows at once, the budget runs out of pipes and some directions
/// copy through a buffer.
fn open_idle(addr: SocketAddr, id: u64) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(&header(id).encode()).expect("send the header");
    s
}

/// Ids the backend has seen: the clients lb accepted and connected.
fn served(backend: &Backend) -> BTreeSet<u64> {
    backend
        .notes()
        .into_iter()
        .filter_map(|n| match n {
            Note::Id { key, .. } => Some(key),
            _ => None,
        })
        .collect()
}

/// Whether the client's connection is still open with nothing to read (not closed, not
/// reset).
fn still_open(s: &TcpStream) -> Result<(), String> {
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Ok(0) => Err("closed".into()),
        Ok(_) => Err("got bytes".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Finishes the flow of a held client: sends its bytes, half-closes, reads the answer to EOF
/// (300 ms late); returns what it sent and got.
fn finish(mut s: TcpStream, id: u64, deadline: Instant) -> Result<(Summary, Summary), String> {
    let h = header(id);
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let sent = send_stream(&mut s, h.up_seed(), h.up, deadline)
        .map_err(|e| format!("flow {id}: send: {e}"))?;
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("flow {id}: shutdown: {e}"))?;
    // Late to read: the answer waits in lb meanwhile.
    thread::sleep(Duration::from_millis(300));
    let got = recv_to_eof(&mut s, deadline).map_err(|e| format!("flow {id}: receive: {e}"))?;
    Ok((sent, got))
}

/// Finishes the flows of `clients` at the same time and checks both directions of each
/// against the backend's journal.
fn finish_all(backend: &Backend, clients: Vec<(u64, TcpStream)>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    let threads: Vec<_> = clients
        .into_iter()
        .map(|(id, s)| {
            let t = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || finish(s, id, deadline))
                .expect("spawn a client");
            (id, t)
        })
        .collect();
    let mut failures = Vec::new();
    for (id, t) in threads {
        match t.join().expect("client panicked") {
            Err(e) => failures.push(e),
            Ok((sent, got)) => {
                let srv_got = backend.wait_received(id, Duration::from_secs(20));
                let srv_sent = backend.wait_sent(id, Duration::from_secs(5));
                if sent.len != UP_BYTES || srv_got != Some(sent) {
                    failures.push(format!(
                        "flow {id} up: sent {sent:?}, server got {srv_got:?}"
                    ));
                }
                if srv_sent != Some(got) || got.len != DOWN_BYTES {
                    failures.push(format!(
                        "flow {id} down: server sent {srv_sent:?}, got {got:?}"
                    ));
                }
            }
        }
    }
    failures
}

/// What lb logs when it holds back or fails an accept because of fds.
const FD_WARNINGS: [&str; 3] = ["not accepting on", "accept failed", "dup failed"];

fn never_accepts_what_it_cannot_serve(dataplane: &str) {
    let backend = held_flows();
    let port = free_port();
    // `simple_config` says `global maxconn 4096`: far beyond what 256 fds hold.
    let cfg = simple_config(port, &[], &[format!("held {}", backend.addr)]);
    let mut opts = LbOpts::new(&cfg, dataplane);
    opts.nofile = Some(NOFILE);
    let started = Instant::now();
    let lb = Lb::start_with(&opts);
    assert!(
        lb.find_log("too low for maxconn 4096").is_some(),
        "lb did not say its fd limit is too low for maxconn; log:\n{}",
        lb.logs().join("\n")
    );
    let addr = local(port);

    // 400 clients connect and idle; lb serves what its fds allow, the rest wait.
    let clients: Vec<(u64, TcpStream)> = (0..IDLE as u64)
        .map(|id| (id, open_idle(addr, id)))
        .collect();
    let mut last = usize::MAX;
    let mut stable_since = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let n = served(&backend).len();
            if n != last {
                last = n;
                stable_since = Instant::now();
            }
            n > 0 && stable_since.elapsed() > Duration::from_secs(2)
        }),
        "lb's accepted clients did not settle"
    );
    let first = served(&backend);
    assert!(
        first.len() >= 10 && first.len() < IDLE,
        "lb served {} of {IDLE} idle clients under RLIMIT_NOFILE {NOFILE}",
        first.len()
    );
    // None was accepted and then dropped: every client, served or waiting, is still open.
    let broken: Vec<String> = clients
        .iter()
        .filter_map(|(id, s)| still_open(s).err().map(|e| format!("client {id}: {e}")))
        .collect();
    assert!(
        broken.is_empty(),
        "{} clients were closed or reset while lb was at its fd limit:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert!(
        backend.errors().is_empty(),
        "backend errors: {:?}",
        backend.errors()
    );
    for bad in [
        "no server available",
        "Too many open files",
        "cannot create a pipe",
    ] {
        assert!(
            lb.find_log(bad).is_none(),
            "lb logged '{bad}' at its fd limit; log:\n{}",
            lb.logs().join("\n")
        );
    }
    // Said, and at most once a second.
    let window = started.elapsed();
    let warnings = lb
        .logs()
        .iter()
        .filter(|l| FD_WARNINGS.iter().any(|w| l.contains(w)))
        .count();
    assert!(
        warnings >= 1 && warnings as u64 <= window.as_secs() + 1,
        "{warnings} fd warnings in {window:?}; log:\n{}",
        lb.logs().join("\n")
    );

    // The served clients move their data now, lb still at its limit (on splice, pipes are
    // scarce: directions copy through buffers rather than fail): every byte intact, both ways.
    let (held, waiting): (Vec<_>, Vec<_>) =
        clients.into_iter().partition(|(id, _)| first.contains(id));
    let failures = finish_all(&backend, held);
    assert!(
        failures.is_empty(),
        "{} of {} served flows broken:\n{}\nlb log:\n{}",
        failures.len(),
        first.len(),
        failures.join("\n"),
        lb.logs().join("\n")
    );
    // Close the clients still waiting; lb gets through its backlog.
    drop(waiting);
    assert!(
        wait_until(Duration::from_secs(30), || served(&backend).len() == IDLE),
        "lb did not get through its backlog: {} of {IDLE} accepted",
        served(&backend).len()
    );
    // The next client is served, its whole flow intact.
    let next = IDLE as u64;
    let fresh = open_idle(addr, next);
    let failures = finish_all(&backend, vec![(next, fresh)]);
    assert!(
        failures.is_empty(),
        "the next client: {failures:?}\nlb log:\n{}",
        lb.logs().join("\n")
    );
    for bad in ["cannot create a pipe", "Too many open files"] {
        assert!(
            lb.find_log(bad).is_none(),
            "lb logged '{bad}'; log:\n{}",
            lb.logs().join("\n")
        );
    }
}

/// `Maxconn` from `show info` on a runtime API socket.
fn show_info_maxconn(sock: &std::path::Path) -> u64 {
    // HAProxy binds its TCP listeners and its stats socket one after the other: the test saw
    // the port listen, the socket may come a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("connect to the stats socket {}: {e}", sock.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"show info\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix("Maxconn: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Maxconn in show info: {out:?}"))
}

/// Without `global maxconn`, lb derives `maxconn` from `RLIMIT_NOFILE` as HAProxy does when it
/// splices (HAProxy with `option splice-auto` keeps a pipe per four connections, as lb):
/// Debian's HAProxy and lb, under the same limits, agree within a tenth.
#[test]
fn maxconn_follows_the_fd_limit_as_haproxys() {
    let dir = common::health::TempDir::new("maxconn");
    for nofile in [1024u64, 4096] {
        let port = free_port();
        let cfg = simple_config(port, &[], &[format!("s {}", local(free_port()))]).replacen(
            "    maxconn 4096\n",
            "",
            1,
        );
        assert!(!cfg.contains("maxconn"), "{cfg}");
        let sock = dir.path.join(format!("haproxy-{nofile}.sock"));
        let ha_cfg = cfg
            .replacen(
                "global\n",
                &format!("global\n    stats socket {} level admin\n", sock.display()),
                1,
            )
            .replacen("defaults\n", "defaults\n    option splice-auto\n", 1);
        let haproxy = {
            let _ha = Haproxy::start_with_nofile(&ha_cfg, local(port), Some(nofile));
            show_info_maxconn(&sock)
        };
        let mut opts = LbOpts::new(&cfg, "splice");
        opts.nofile = Some(nofile);
        let lb = Lb::start_with(&opts);
        let line = lb
            .find_log("lb ready:")
            .unwrap_or_else(|| panic!("no 'lb ready' line:\n{}", lb.logs().join("\n")));
        let ours: u64 = line
            .rsplit("maxconn ")
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no maxconn in {line:?}"));
        eprintln!("RLIMIT_NOFILE {nofile}: maxconn lb {ours}, HAProxy {haproxy}");
        assert!(
            ours.abs_diff(haproxy) * 10 <= haproxy,
            "RLIMIT_NOFILE {nofile}: lb derived maxconn {ours}, HAProxy {haproxy}"
        );
    }
}

/// `strict-limits`: a file-descriptor limit too low for the configured `maxconn` stops the
/// start with HAProxy's alert instead of lb's warning; `no strict-limits` (lb's default)
/// starts with the warning.
#[test]
fn strict_limits_refuses_a_limit_short_of_maxconn() {
    let port = free_port();
    // `simple_config` says `global maxconn 4096`: far beyond what 256 fds hold.
    let cfg = simple_config(port, &[], &[format!("s {}", local(free_port()))]);
    let strict = cfg.replacen("global\n", "global\n    strict-limits\n", 1);
    let mut opts = LbOpts::new(&strict, "splice");
    opts.nofile = Some(NOFILE);
    let Err(err) = Lb::try_start_with(&opts) else {
        panic!("lb started with strict-limits and {NOFILE} fds for maxconn 4096");
    };
    assert!(
        err.contains(&format!("FD limit ({NOFILE}) too low for maxconn=4096")),
        "{err}"
    );
    let lenient = cfg.replacen("global\n", "global\n    no strict-limits\n", 1);
    let mut opts = LbOpts::new(&lenient, "splice");
    opts.nofile = Some(NOFILE);
    let lb = Lb::start_with(&opts);
    assert!(lb.find_log("too low for maxconn 4096").is_some());
}
