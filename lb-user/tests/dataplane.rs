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
    push_at_a_backend_that_reads_nothing_is_bounded,
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

/// The 3rd field of a `net.ipv4.tcp_?mem` sysctl: the most a socket buffer autotunes to.
fn tcp_mem_max(name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    text.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// `SIOCINQ` (unread bytes in a receive queue) or `SIOCOUTQ` (unacknowledged bytes in a send
/// queue) of a socket.
fn queued(s: &std::net::TcpStream, req: libc::c_ulong) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: both ioctls write one c_int.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), req, &raw mut n) };
    assert_eq!(rc, 0, "ioctl: {}", std::io::Error::last_os_error());
    u64::try_from(n).unwrap_or(0)
}

/// A client sends 1 KiB, idles 300 ms (lb's default plane moves the flow into the kernel maps
/// meanwhile), then pushes 256 MiB at a backend that reads nothing. The push must stall with at
/// most the plane's bound taken by lb and the kernel (what the client wrote, less its own
/// unsent queue and the backend's unread queue): lb's own share (sockmap: the 4 MiB backlog
/// bound and a 256 KiB drain buffer; splice: its 1 MiB pipe) plus the most its two sockets'
/// buffers can autotune to (`tcp_rmem` and `tcp_wmem` maxima). Then the backend reads
/// everything and answers: every byte arrives both ways, SHA-256 equal, half-close passed on.
fn push_at_a_backend_that_reads_nothing_is_bounded(dataplane: &str) {
    push_at_a_stalled_backend(dataplane, None);
}

/// `tune.lb.sockmap-backlog 64k` reaches the data plane (lb reports the bound it runs with),
/// and the stalled push of [`push_at_a_backend_that_reads_nothing_is_bounded`] still delivers
/// every byte when each direction pauses at every 64 KiB. (What a stalled flow holds in all
/// barely moves with it: lb's own copying then grows the sender's receive buffer, as on splice.)
#[test]
fn tune_lb_sockmap_backlog_is_applied() {
    push_at_a_stalled_backend(common::SOCKMAP_AT_ONCE, Some("64k"));
}

/// The scenario of [`push_at_a_backend_that_reads_nothing_is_bounded`], with
/// `tune.lb.sockmap-backlog` set when given (it must be 64k then).
fn push_at_a_stalled_backend(dataplane: &str, backlog: Option<&str>) {
    use sha2::{Digest, Sha256};
    use std::net::{Shutdown, TcpListener};

    const PUSH: usize = 256 << 20;
    const ANSWER: usize = 16 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let mut cfg = simple_config(
        port,
        &["balance roundrobin"],
        &[format!("stalled {}", listener.local_addr().unwrap())],
    );
    if let Some(size) = backlog {
        cfg = cfg.replacen(
            "global\n",
            &format!("global\n    tune.lb.sockmap-backlog {size}\n"),
            1,
        );
    }
    let lb = Lb::start(&cfg, dataplane);
    if backlog.is_some() {
        assert!(
            lb.wait_for_log("at most 64 KiB in flight", Duration::from_secs(5)),
            "lb does not report the backlog bound: {:?}",
            lb.logs()
        );
    }
    let data = Arc::new(common::data::DataStream::new(0x5EED).take_vec(PUSH));
    let mut client = scenarios::connect(local(port)).unwrap();
    let (mut backend, _) = listener.accept().unwrap();
    backend
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.write_all(&data[..1024]).unwrap();
    let mut first = vec![0u8; 1024];
    backend.read_exact(&mut first).unwrap();
    assert_eq!(first, data[..1024]);
    thread::sleep(Duration::from_millis(300));

    // Push without blocking until nothing moves for a second.
    client.set_nonblocking(true).unwrap();
    let mut written = 1024;
    let mut moved = Instant::now();
    let deadline = Instant::now() + Duration::from_mins(1);
    while written < PUSH && moved.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        match client.write(&data[written..(written + (1 << 20)).min(PUSH)]) {
            Ok(n) => {
                written += n;
                moved = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("push: {e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    let unsent = queued(&client, libc::TIOCOUTQ);
    let unread = queued(&backend, libc::FIONREAD);
    let taken = written as u64 - 1024 - unsent - unread;
    let own: u64 = if dataplane == "splice" {
        1 << 20
    } else {
        (4 << 20) + (256 << 10)
    };
    let buffers = tcp_mem_max("tcp_rmem") + tcp_mem_max("tcp_wmem");
    let bound = own + buffers + (64 << 10);
    eprintln!(
        "{dataplane}: client wrote {} KiB of {} MiB; lb and the kernel took {} KiB (client's \
         queue {} KiB, backend's {} KiB); bound {} KiB = own {} KiB + socket buffer maxima {} \
         KiB + 64 KiB; margin {} KiB",
        written >> 10,
        PUSH >> 20,
        taken >> 10,
        unsent >> 10,
        unread >> 10,
        bound >> 10,
        own >> 10,
        buffers >> 10,
        bound.saturating_sub(taken) >> 10,
    );
    assert!(written < PUSH, "all of the push went into lb");
    assert!(
        taken <= bound,
        "lb and the kernel took {taken} bytes, bound {bound}"
    );

    // Now the backend reads: everything arrives, then it answers.
    let rest = {
        let data = data.clone();
        let mut client = client.try_clone().unwrap();
        thread::spawn(move || {
            client.write_all(&data[written..]).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut h = Sha256::new();
    h.update(&first);
    let mut got = first.len();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = backend.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n;
    }
    rest.join().unwrap();
    assert_eq!(got, PUSH, "bytes at the backend");
    assert!(
        h.finalize()[..] == Sha256::digest(&data[..])[..],
        "SHA-256 at the backend differs"
    );
    let answer = common::data::DataStream::new(0xA5).take_vec(ANSWER);
    let answering = {
        let answer = answer.clone();
        thread::spawn(move || {
            backend.write_all(&answer).unwrap();
            backend.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::with_capacity(ANSWER);
    client.read_to_end(&mut back).unwrap();
    answering.join().unwrap();
    assert!(
        back.len() == ANSWER && Sha256::digest(&back) == Sha256::digest(&answer),
        "answer at the client: {} bytes, or wrong ones",
        back.len()
    );
}
