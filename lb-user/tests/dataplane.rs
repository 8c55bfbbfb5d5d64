//! Data-plane behaviour through the real lb, each test on both planes (`sockmap::*`,
//! `splice::*`): byte-exact bulk both ways, many concurrent flows with every half-close order,
//! small-message latency paths (ping-pong, send-and-close, lone requests that arrive before the
//! plane is set up), half-close and reset passing, and idle timeouts.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::data::{read_until_end, ReadEnd};
use common::scenarios::{self, Outcome};
use common::servers::Backend;
use common::{bulk_bytes, free_port, local, simple_config, Lb};

on_both_planes!(
    upload_1gib_sha256_equal,
    download_1gib_sha256_equal,
    eight_uploads_at_once_sha256_equal,
    concurrent_flows_200_random_sizes_and_half_close_orders,
    ping_pong_10k_x_64b,
    send_and_close_1000_times,
    lone_request_and_lone_greeting_do_not_hang,
    half_close_client_first,
    half_close_server_first,
    reset_client_to_server_is_passed_as_reset,
    reset_server_to_client_is_passed_as_reset,
    idle_client_closed_after_timeout_client,
    active_client_not_closed_by_timeout_client,
);

/// lb with one frontend in front of `backend` alone.
fn lb_for(backend: &Backend, dataplane: &str) -> (Lb, SocketAddr) {
    let port = free_port();
    let cfg = simple_config(
        port,
        &["balance roundrobin"],
        &[format!("{} {}", backend.name, backend.addr)],
    );
    (Lb::start(&cfg, dataplane), local(port))
}

fn must(r: Outcome, what: &str) {
    if let Err(e) = r {
        panic!("{what}: {e}");
    }
}

fn no_backend_errors(b: &Backend) {
    let e = b.errors();
    assert!(e.is_empty(), "backend errors:\n{}", e.join("\n"));
}

fn upload_1gib_sha256_equal(dataplane: &str) {
    let sink = Backend::sink("sink", 0);
    let (_lb, addr) = lb_for(&sink, dataplane);
    let n = bulk_bytes();
    let t0 = Instant::now();
    must(
        scenarios::bulk_upload(addr, n, 0xA11CE, Duration::from_mins(5)),
        "client→server bulk",
    );
    eprintln!("{n} bytes client→server in {:?}", t0.elapsed());
    no_backend_errors(&sink);
}

/// 8 uploads of 128 MiB at once in 1 MiB writes (as the bench's 8-stream bulk): on sockmap each
/// is handed over
/// from splice to the kernel while its source's queue is full, where a partly read skb would be
/// forwarded twice if the hand-over did not wait for a drained queue.
fn eight_uploads_at_once_sha256_equal(dataplane: &str) {
    let sink = Backend::sink("sink", 0);
    let (_lb, addr) = lb_for(&sink, dataplane);
    let uploads: Vec<_> = (0..8u64)
        .map(|i| {
            thread::spawn(move || {
                scenarios::bulk_upload_in(
                    addr,
                    (128 << 20, 0xE1 + i),
                    1 << 20,
                    Duration::from_mins(5),
                )
            })
        })
        .collect();
    for (i, u) in uploads.into_iter().enumerate() {
        must(u.join().unwrap(), &format!("upload {i} of 8"));
    }
    no_backend_errors(&sink);
}

fn download_1gib_sha256_equal(dataplane: &str) {
    let n = bulk_bytes();
    let source = Backend::source("source", n, 0xB0B);
    let (_lb, addr) = lb_for(&source, dataplane);
    let t0 = Instant::now();
    must(
        scenarios::bulk_download(addr, &source, n, Duration::from_mins(5)),
        "server→client bulk",
    );
    eprintln!("{n} bytes server→client in {:?}", t0.elapsed());
    no_backend_errors(&source);
}

fn concurrent_flows_200_random_sizes_and_half_close_orders(dataplane: &str) {
    let server = Backend::flow("flows");
    let (_lb, addr) = lb_for(&server, dataplane);
    let plan = scenarios::flow_plan(200, 0x200F, 8 << 20);
    let total: u64 = plan.iter().map(|h| h.up + h.down).sum();
    let t0 = Instant::now();
    must(
        scenarios::concurrent_flows(addr, &server, &plan, Duration::from_mins(3)),
        "200 concurrent flows",
    );
    eprintln!("200 flows, {total} bytes in {:?}", t0.elapsed());
}

fn ping_pong_10k_x_64b(dataplane: &str) {
    let echo = Backend::echo("echo");
    let (_lb, addr) = lb_for(&echo, dataplane);
    let t0 = Instant::now();
    must(
        scenarios::ping_pong(addr, 10_000, 64, Duration::from_secs(90)),
        "ping-pong",
    );
    eprintln!("10000 round trips in {:?}", t0.elapsed());
    no_backend_errors(&echo);
}

fn send_and_close_1000_times(dataplane: &str) {
    const WORKERS: u64 = 4;
    const EACH: u64 = 250;
    let sink = Arc::new(Backend::sink("sink", 1024));
    let (_lb, addr) = lb_for(&sink, dataplane);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            thread::spawn(move || {
                (0..EACH)
                    .filter_map(|i| {
                        let seed = w * EACH + i;
                        scenarios::send_and_close(addr, seed, Duration::from_secs(10))
                            .err()
                            .map(|e| format!("request {seed}: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|t| t.join().expect("worker panicked"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} send-and-close clients failed; first ones:\n{}",
        failures.len(),
        WORKERS * EACH,
        failures[..failures.len().min(10)].join("\n")
    );
    no_backend_errors(&sink);
}

fn lone_request_and_lone_greeting_do_not_hang(dataplane: &str) {
    // Client speaks first: the request reaches lb before it has wired the flow up.
    let echo = Backend::echo("echo");
    let (_lb, addr) = lb_for(&echo, dataplane);
    for i in 0..200 {
        must(
            scenarios::lone_request(addr, i, Duration::from_secs(3)),
            &format!("lone request {i}"),
        );
    }
    // Server speaks first (MySQL/SMTP style): the greeting reaches lb's backend socket first.
    let greeter = Backend::ident_hold("greeter");
    let (_lb2, addr2) = lb_for(&greeter, dataplane);
    for i in 0..200 {
        must(
            scenarios::lone_greeting(addr2, "greeter", Duration::from_secs(3)),
            &format!("lone greeting {i}"),
        );
    }
}

fn half_close_client_first(dataplane: &str) {
    let sink = Backend::sink("sink", 1 << 20);
    let (_lb, addr) = lb_for(&sink, dataplane);
    for i in 0..20 {
        must(
            scenarios::half_close_client_first(addr, 1 << 20, Duration::from_secs(30)),
            &format!("client-first half-close, round {i}"),
        );
    }
    no_backend_errors(&sink);
}

fn half_close_server_first(dataplane: &str) {
    let source = Backend::source("source", 1 << 20, 0x5E);
    let (_lb, addr) = lb_for(&source, dataplane);
    for i in 0..20 {
        must(
            scenarios::half_close_server_first(addr, &source, 1 << 20, Duration::from_secs(30)),
            &format!("server-first half-close, round {i}"),
        );
    }
    no_backend_errors(&source);
}

fn reset_client_to_server_is_passed_as_reset(dataplane: &str) {
    let probe = Backend::reset_probe("probe");
    let (_lb, addr) = lb_for(&probe, dataplane);
    for i in 0..10 {
        must(
            scenarios::reset_client_to_server(addr, &probe),
            &format!("client reset, round {i}"),
        );
    }
}

fn reset_server_to_client_is_passed_as_reset(dataplane: &str) {
    let probe = Backend::reset_probe("probe");
    let (_lb, addr) = lb_for(&probe, dataplane);
    for i in 0..10 {
        must(
            scenarios::reset_server_to_client(addr),
            &format!("server reset, round {i}"),
        );
    }
}

/// `listen` with `timeout client 1s`. No `timeout tunnel`: in `HAProxy` it supersedes client and
/// server timeouts on an established TCP connection.
fn idle_lb(dataplane: &str) -> (Lb, SocketAddr, Backend) {
    let echo = Backend::echo("echo");
    let port = free_port();
    let cfg = format!(
        "global\n    maxconn 1000\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
         timeout client 1s\n    timeout server 30s\n\nlisten idle\n    bind 127.0.0.1:{port}\n    \
         server s1 {}\n",
        echo.addr
    );
    (Lb::start(&cfg, dataplane), local(port), echo)
}

/// Sends `ping` and expects the echo within 2 s.
fn ping(s: &mut std::net::TcpStream, i: usize) -> Outcome {
    let req = format!("ping {i:04}\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("ping {i}: write: {e}"))?;
    let mut rep = vec![0u8; req.len()];
    s.read_exact(&mut rep)
        .map_err(|e| format!("ping {i}: no echo: {e}"))?;
    if rep != req.as_bytes() {
        return Err(format!("ping {i}: wrong echo"));
    }
    Ok(())
}

/// Waits for lb to close an idle connection; returns how long it took from `since`.
fn time_to_close(s: &mut std::net::TcpStream, since: Instant) -> Result<Duration, String> {
    s.set_read_timeout(Some(Duration::from_secs(6)))
        .map_err(|e| e.to_string())?;
    let (end, n) = read_until_end(s, since + Duration::from_secs(6));
    let took = since.elapsed();
    match end {
        ReadEnd::Eof | ReadEnd::Reset if n == 0 => Ok(took),
        ReadEnd::StillOpen => Err(format!("idle connection still open after {took:?}")),
        other => Err(format!(
            "unexpected end {other:?} with {n} bytes after {took:?}"
        )),
    }
}

fn idle_client_closed_after_timeout_client(dataplane: &str) {
    let (_lb, addr, _echo) = idle_lb(dataplane);
    let mut s = scenarios::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    must(ping(&mut s, 0), "first ping");
    let idle_since = Instant::now();
    let took = time_to_close(&mut s, idle_since).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
        "timeout client 1s closed an idle client after {took:?} (want 0.8–3 s)"
    );
}

fn active_client_not_closed_by_timeout_client(dataplane: &str) {
    let (_lb, addr, _echo) = idle_lb(dataplane);
    let mut s = scenarios::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        must(ping(&mut s, i), "active connection");
        i += 1;
        thread::sleep(Duration::from_millis(200));
    }
    assert!(i >= 10, "only {i} pings in 2.5 s");
    // Once it goes idle, the timeout applies again.
    let idle_since = Instant::now();
    let took = time_to_close(&mut s, idle_since).unwrap_or_else(|e| panic!("{e}"));
    assert!(took <= Duration::from_secs(3), "closed after {took:?}");
}
