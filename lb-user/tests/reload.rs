//! Reload (SIGHUP) under load, on both data planes: a new configuration that adds a server and
//! removes another takes effect while 100 long flows (1 GiB in all) run on untouched and a
//! steady stream of short connections sees no failure; a broken configuration is rejected and
//! the running one keeps serving.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::data::{recv_to_eof, stream_summary, DataStream};
use common::scenarios::{self, connect};
use common::servers::{Backend, FlowHeader, HalfClose, Note};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    reload_adds_and_removes_servers_without_dropping_flows,
    broken_reload_is_rejected_and_old_config_serves,
);

/// Long flows in all: 100 × (5 MiB up + 5 MiB down) = 1000 MiB.
const LONG_FLOWS: u64 = 100;
const LONG_HALF: u64 = 5 << 20;
/// Short connections' flow ids start here, above the long flows' ids.
const SHORT_FIRST_ID: u64 = 1_000_000;

fn config(port: u16, servers: &[&Backend]) -> String {
    let mut c = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend be\n    balance roundrobin\n"
    );
    for s in servers {
        let _ = writeln!(c, "    server {} {}", s.name, s.addr);
    }
    c
}

/// A long `ClientFirst` flow: sends the first half of its upload, waits for `go`, sends the
/// rest, then reads the whole download. Returns an error text on any failure.
fn long_flow(
    addr: SocketAddr,
    id: u64,
    started: &AtomicU64,
    go: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_mins(2);
    let h = FlowHeader {
        id,
        order: HalfClose::ClientFirst,
        up: 2 * LONG_HALF,
        down: 2 * LONG_HALF,
    };
    let mut s = connect(addr)?;
    s.write_all(&h.encode())
        .map_err(|e| format!("flow {id}: header: {e}"))?;
    let mut data = DataStream::new(h.up_seed());
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    let mut waited = false;
    while sent < h.up {
        if sent >= LONG_HALF && !waited {
            started.fetch_add(1, Ordering::SeqCst);
            while !go.load(Ordering::SeqCst) {
                if Instant::now() > deadline {
                    return Err(format!("flow {id}: never told to go on"));
                }
                thread::sleep(Duration::from_millis(5));
            }
            waited = true;
        }
        let n = (h.up - sent).min(buf.len() as u64) as usize;
        data.fill(&mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("flow {id}: write at {sent}: {e}"))?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("flow {id}: shutdown: {e}"))?;
    let got = recv_to_eof(&mut s, deadline).map_err(|e| format!("flow {id}: read: {e}"))?;
    let want = stream_summary(h.down_seed(), h.down);
    if got != want {
        return Err(format!("flow {id}: download {got:?}, want {want:?}"));
    }
    Ok(())
}

/// One short connection of the flow protocol: 1 KiB up, 1 KiB down.
fn short_flow(addr: SocketAddr, id: u64) -> Result<(), String> {
    let h = FlowHeader {
        id,
        order: HalfClose::ClientFirst,
        up: 1024,
        down: 1024,
    };
    let (sent, got) = scenarios::flow(addr, h, Instant::now() + Duration::from_secs(20))?;
    if got != stream_summary(h.down_seed(), h.down) || sent.len != h.up {
        return Err(format!("short flow {id}: got {got:?}"));
    }
    Ok(())
}

fn reload_adds_and_removes_servers_without_dropping_flows(dataplane: &str) {
    let a = Backend::flow("a");
    let b = Backend::flow("b");
    let c = Backend::flow("c");
    let port = free_port();
    let addr = local(port);
    let lb = Lb::start(&config(port, &[&a, &b]), dataplane);

    // 100 long flows, each stopped halfway through its upload until the reload is done.
    let started = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let long: Vec<_> = (0..LONG_FLOWS)
        .map(|id| {
            let (started, go) = (started.clone(), go.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || long_flow(addr, id, &started, &go))
                .unwrap()
        })
        .collect();

    // A steady stream of short connections across the reload (bounded: 20 s or until told).
    let stop = Arc::new(AtomicBool::new(false));
    // The id of the short connection under way (one at a time).
    let short_id = Arc::new(AtomicU64::new(SHORT_FIRST_ID));
    let short = {
        let (stop, short_id) = (stop.clone(), short_id.clone());
        thread::spawn(move || {
            let (mut ok, mut failures) = (0u64, Vec::new());
            let end = Instant::now() + Duration::from_secs(20);
            let mut id = SHORT_FIRST_ID;
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                short_id.store(id, Ordering::SeqCst);
                match short_flow(addr, id) {
                    Ok(()) => ok += 1,
                    Err(e) => failures.push(e),
                }
                id += 1;
            }
            (ok, failures)
        })
    };

    let deadline = Instant::now() + Duration::from_mins(1);
    while started.load(Ordering::SeqCst) < LONG_FLOWS {
        assert!(Instant::now() < deadline, "long flows did not all start");
        thread::sleep(Duration::from_millis(10));
    }
    let b_before = b.accepted();
    assert!(b_before > 0, "b served nothing before the reload");

    lb.rewrite_config(0, &config(port, &[&a, &c]));
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)),
        "no reload: {}",
        lb.logs().join("\n")
    );
    // Connections started from here on belong to the new generation. (Counting b's accepts
    // would not tell: b's accept thread may lag behind connections lb already made to it.)
    let last_old_short = short_id.load(Ordering::SeqCst);
    // Short connections go on for a while on the new generation.
    let c_deadline = Instant::now() + Duration::from_secs(10);
    while c.accepted() < 20 {
        assert!(
            Instant::now() < c_deadline,
            "the added server c gets no connection"
        );
        thread::sleep(Duration::from_millis(10));
    }
    go.store(true, Ordering::SeqCst);
    let long_failures: Vec<String> = long
        .into_iter()
        .filter_map(|t| t.join().unwrap().err())
        .collect();
    stop.store(true, Ordering::SeqCst);
    let (ok, short_failures) = short.join().unwrap();

    assert!(
        long_failures.is_empty(),
        "long flows broken:\n{}",
        long_failures.join("\n")
    );
    assert!(
        short_failures.is_empty(),
        "short connections failed:\n{}",
        short_failures.join("\n")
    );
    // Short connections ran on both generations: b took some before the reload, c (added by
    // it) at least 20 after; none failed.
    assert!(ok >= 20, "only {ok} short connections went through");
    let late: Vec<u64> = b
        .notes()
        .iter()
        .filter_map(|n| match n {
            Note::Received { key, .. } if *key > last_old_short => Some(*key),
            _ => None,
        })
        .collect();
    assert!(
        late.is_empty(),
        "the removed server b got short connections started after the reload: {late:?}"
    );
    // Every long flow's upload reached its server intact.
    for s in [&a, &b] {
        let errors = s.errors();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
    for id in 0..LONG_FLOWS {
        let want = stream_summary(
            FlowHeader {
                id,
                order: HalfClose::ClientFirst,
                up: 0,
                down: 0,
            }
            .up_seed(),
            2 * LONG_HALF,
        );
        let got = a
            .wait_received(id, Duration::ZERO)
            .or_else(|| b.wait_received(id, Duration::ZERO));
        assert_eq!(got, Some(want), "upload of long flow {id}");
    }
}

fn broken_reload_is_rejected_and_old_config_serves(dataplane: &str) {
    let a = Backend::flow("a");
    let port = free_port();
    let addr = local(port);
    let lb = Lb::start(&config(port, &[&a]), dataplane);
    lb.rewrite_config(
        0,
        &format!("{}\n    balance nosuchalgo\n", config(port, &[&a])),
    );
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload rejected", Duration::from_secs(10)),
        "{}",
        lb.logs().join("\n")
    );
    assert!(
        lb.find_log("nosuchalgo").is_some(),
        "the error names the problem"
    );
    for id in 0..20 {
        short_flow(addr, id).unwrap();
    }
}
