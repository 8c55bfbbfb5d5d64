//! `rate-limit sessions N`: a frontend lets in at most N new sessions per second, as HAProxy's
//! listeners do: over the limit they stop accepting, and clients wait in the kernel's backlog
//! (their handshake done) until the rate leaves room. Connections that `tcp-request
//! connection` rules reject are not sessions and do not use the budget.
//!
//! `maxsessrate` and `maxconnrate` in `global` do the same for the whole process, every
//! frontend together, and `set rate-limit` on the runtime API changes them until a reload.
//!
//! Bounds that a slow machine cannot break: a burst of clients at once takes at least the
//! time the limit imposes, and no more sessions than the limit (plus one per accept loop
//! already waiting) are served at once; the stats show the limit and a highest rate within it.
//! (Not "in the first half second": the rate is HAProxy's `freq_ctr`, over periods of a
//! second on the clock. A burst at the end of one period fills it; from the next one on, the
//! previous period's count weighs less as the period goes by, and a client more gets in each
//! `1 / (limit + 1)` s or so: 16 of 25 in the first 500 ms, once, in CI.)

#[macro_use]
mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::scenarios;
use common::servers::Backend;
use common::stats::{cli, col, parse_csv, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

/// The limit, per second.
const LIMIT: u64 = 10;

/// Clients in the burst.
const CLIENTS: usize = 25;

/// How soon after the first a client counts as served "at once": past the limit, the next one
/// waits at least `1 / (LIMIT + 1)` s (91 ms) for the rate to leave room.
const AT_ONCE: Duration = Duration::from_millis(60);

/// Threads lb runs. Each thread's accept loop of each address looks at the rate before it
/// waits for a client, so each may take one past the limit (as with `maxconn`).
const THREADS: u64 = 2;

/// [`CLIENTS`] clients at once, spread over `ports`: at most the limit (plus one per accept
/// loop: thread and address) served at once (within [`AT_ONCE`] of the first), at least half
/// of it in the first 500 ms, and the last after 1.2 s.
fn burst_is_held_at_the_limit(ports: &[u16], what: &str) {
    let loops = THREADS * ports.len() as u64;
    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (barrier, port) = (barrier.clone(), ports[i % ports.len()]);
            thread::spawn(move || {
                barrier.wait();
                let answer = scenarios::who(local(port));
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut done: Vec<Duration> = clients
        .into_iter()
        .map(|c| {
            let (answer, at) = c.join().unwrap();
            assert_eq!(answer.expect("every client is served in the end"), "s");
            at
        })
        .collect();
    done.sort();
    let at_once = done.iter().filter(|t| **t < done[0] + AT_ONCE).count() as u64;
    assert!(
        at_once <= LIMIT + loops,
        "{what}: {at_once} of {CLIENTS} served at once at {LIMIT} per second (all: {done:?})"
    );
    let early = done
        .iter()
        .filter(|t| **t < Duration::from_millis(500))
        .count() as u64;
    assert!(
        early >= LIMIT / 2,
        "{what}: only {early} served in the first 500 ms ({done:?})"
    );
    // 25 at 10 per second: the last waits for the rate to leave room twice over.
    let last = *done.last().unwrap();
    assert!(
        last >= Duration::from_millis(1200),
        "{what}: the last client was served after {last:?}"
    );
}

#[test]
fn a_burst_waits_in_the_backlog_at_the_limit_and_rejected_connections_do_not_count() {
    let s = Backend::ident("s");
    let (fe, open) = (free_port(), free_port());
    let dir = SockDir::new("ratelimit");
    let sock = dir.sock("admin.sock");
    let cfg = format!(
        "global\n    nbthread {THREADS}\n    stats socket {} level admin\n\n{DEFAULTS}
frontend fe
    bind 127.0.0.1:{fe}
    rate-limit sessions {LIMIT}
    tcp-request connection reject if {{ src 127.0.0.2 }}
    default_backend be

frontend open
    bind 127.0.0.1:{open}
    default_backend be

backend be
    server s {}
",
        sock.display(),
        s.addr
    );
    let _lb = Lb::start(&cfg, "splice");
    let fe_row = || {
        let (_, rows) = parse_csv(&cli(&sock, "show stat\n"));
        rows.into_iter()
            .find(|r| col(r, "pxname") == "fe" && col(r, "svname") == "FRONTEND")
            .expect("fe's row")
    };
    // Rejected connections first, three times the limit: none of them is a session, so none
    // waits for the rate (at the limit they would take 2 s) and the session rate stays 0.
    let t = Instant::now();
    for _ in 0..3 * LIMIT {
        let from = "127.0.0.2".parse().unwrap();
        assert!(scenarios::who_from(from, local(fe)).is_err());
    }
    let rejecting = t.elapsed();
    let row = fe_row();
    assert_eq!(col(&row, "dcon"), (3 * LIMIT).to_string());
    assert_eq!(
        col(&row, "rate"),
        "0",
        "rejected connections counted as sessions"
    );
    assert!(
        rejecting < Duration::from_millis(1500),
        "rejected connections waited for the session rate: {rejecting:?}"
    );
    burst_is_held_at_the_limit(&[fe], "rate-limit sessions");
    // The unlimited frontend is not held back meanwhile.
    let t = Instant::now();
    for _ in 0..3 * LIMIT {
        scenarios::who(local(open)).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the open frontend waited: {:?}",
        t.elapsed()
    );
    let row = fe_row();
    assert_eq!(col(&row, "rate_lim"), LIMIT.to_string());
    let max: u64 = col(&row, "rate_max").parse().unwrap();
    assert!(
        (LIMIT / 2..=LIMIT + THREADS).contains(&max),
        "fe's rate_max {max} at a limit of {LIMIT}"
    );
}

/// `maxsessrate` and `maxconnrate` hold the process: two frontends share one budget, and
/// `show info` shows the limits.
#[test]
fn process_limits_hold_every_frontend_together() {
    let s = Backend::ident("s");
    for kw in ["maxsessrate", "maxconnrate"] {
        let (a, b) = (free_port(), free_port());
        let dir = SockDir::new("ratelimit");
        let sock = dir.sock("admin.sock");
        let cfg = format!(
            "global\n    nbthread {THREADS}\n    {kw} {LIMIT}\n    stats socket {} level admin\n\n\
             {DEFAULTS}\nfrontend a\n    bind 127.0.0.1:{a}\n    default_backend be\n\n\
             frontend b\n    bind 127.0.0.1:{b}\n    default_backend be\n\n\
             backend be\n    server s {}\n",
            sock.display(),
            s.addr
        );
        let _lb = Lb::start(&cfg, "splice");
        burst_is_held_at_the_limit(&[a, b], kw);
        let info = cli(&sock, "show info\n");
        let (limit, other) = if kw == "maxsessrate" {
            ("SessRateLimit", "ConnRateLimit")
        } else {
            ("ConnRateLimit", "SessRateLimit")
        };
        assert!(info.contains(&format!("{limit}: {LIMIT}\n")), "{info}");
        assert!(info.contains(&format!("{other}: 0\n")), "{info}");
    }
}

/// `set rate-limit connections|sessions global N` on the runtime API: the limit holds from
/// then on, as if configured, `show info` shows it, 0 lifts it, a reload gives the
/// configured one back; other settings and missing values get HAProxy's answers.
#[test]
fn set_rate_limit_at_run_time() {
    let s = Backend::ident("s");
    let a = free_port();
    let dir = SockDir::new("ratelimit");
    let sock = dir.sock("admin.sock");
    let cfg = format!(
        "global\n    nbthread {THREADS}\n    stats socket {} level admin\n\n{DEFAULTS}\n\
         frontend a\n    bind 127.0.0.1:{a}\n    default_backend be\n\nbackend be\n    server s {}\n",
        sock.display(),
        s.addr
    );
    let lb = Lb::start(&cfg, "splice");
    for (setting, field) in [
        ("sessions", "SessRateLimit"),
        ("connections", "ConnRateLimit"),
    ] {
        // The rates count the last second: the previous round's bursts must have left it.
        let quiet = common::servers::wait_until(Duration::from_secs(5), || {
            let info = cli(&sock, "show info\n");
            info.contains("\nConnRate: 0\n") && info.contains("\nSessRate: 0\n")
        });
        assert!(quiet, "{}", cli(&sock, "show info\n"));
        let set = |n: u64| cli(&sock, &format!("set rate-limit {setting} global {n}\n"));
        assert_eq!(set(LIMIT), "\n");
        let info = cli(&sock, "show info\n");
        assert!(info.contains(&format!("{field}: {LIMIT}\n")), "{info}");
        burst_is_held_at_the_limit(&[a], setting);
        assert_eq!(set(0), "\n");
        // No limit: the same burst is served at once.
        let started = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| thread::spawn(move || scenarios::who(local(a))))
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), "s");
        }
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{setting}: limit lifted, yet {:?}",
            started.elapsed()
        );
        assert!(cli(&sock, "show info\n").contains(&format!("{field}: 0\n")));
    }
    let set = |rest: &str| cli(&sock, &format!("set rate-limit {rest}\n"));
    let usage = "'set rate-limit' only supports :\n   - 'connections global' to set the \
                 per-process maximum connection rate\n   - 'sessions global' to set the \
                 per-process maximum session rate\n\n";
    assert_eq!(set("http-compression global 5"), usage);
    assert_eq!(set("connections 5"), usage);
    assert_eq!(set("connections global"), "Expects an integer value.\n\n");
    assert_eq!(set("connections global -1"), "Value out of range.\n\n");
    // A reload starts from the configuration again (none here).
    assert_eq!(set("connections global 7"), "\n");
    lb.rewrite_config(0, &cfg);
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)));
    assert!(cli(&sock, "show info\n").contains("ConnRateLimit: 0\n"));
}
