//! The stats page and the runtime API under slow and many clients: 300 clients sending one
//! header byte per second do not keep `GET /stats;csv` from answering within a second, and
//! each is answered 408 within `timeout http-request` (a few seconds by default); a section
//! full of such clients (`maxconn 10`) still serves; malformed requests (HTTP/0.9, garbage)
//! get a 400 at once and bare-LF requests a 200; many idle runtime API connections do not
//! keep `show info` from answering, and a command line trickling in is cut at `stats timeout`.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::stats::{base64, config, http_raw, stats_section, HttpResponse, SockDir};
use common::{free_port, local, Lb};

/// A request head that never ends (one byte of it a second).
const ENDLESS_HEAD: &[u8] =
    b"GET /stats HTTP/1.1\r\nHost: slow.example\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// A command line that never ends.
const ENDLESS_COMMAND: &[u8] = b"show info and more words than anyone types in ten seconds";
/// Longest time a slow-client test lets its clients run.
const SLOW_FOR: Duration = Duration::from_secs(9);

/// A stream the slow clients can use.
trait Conn: Read + Write + Send + 'static {
    fn nonblocking(&self) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn nonblocking(&self) -> io::Result<()> {
        self.set_nonblocking(true)
    }
}

impl Conn for UnixStream {
    fn nonblocking(&self) -> io::Result<()> {
        self.set_nonblocking(true)
    }
}

/// How a slow client's connection ended: when (since the clients started) and the first
/// bytes the server sent before closing.
type Ending = Option<(Duration, String)>;

/// Clients that each send the next byte of `text` once a second (none if `text` is empty:
/// idle clients), until the server closes them, for [`SLOW_FOR`] at most.
struct Slow {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<Ending>>>,
}

impl Slow {
    fn start<C: Conn>(conns: Vec<C>, text: &'static [u8]) -> Slow {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || slow_loop(conns, text, &stop))
        };
        Slow {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the clients and returns how each ended.
    fn finish(mut self) -> Vec<Ending> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("slow clients")
    }

    /// Waits (at most until the clients' time is up) until every client has ended.
    fn wait_all_ended(self) -> Vec<Ending> {
        if let Some(t) = &self.thread {
            while !t.is_finished() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.finish()
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn slow_loop<C: Conn>(mut conns: Vec<C>, text: &[u8], stop: &AtomicBool) -> Vec<Ending> {
    for c in &conns {
        c.nonblocking().expect("non-blocking");
    }
    let started = Instant::now();
    let mut ended: Vec<Ending> = vec![None; conns.len()];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
    let mut sent = 0;
    let mut next_byte = started;
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < SLOW_FOR {
        let now = Instant::now();
        let send = now >= next_byte && sent < text.len();
        if send {
            next_byte += Duration::from_secs(1);
        }
        for (i, c) in conns.iter_mut().enumerate() {
            if ended[i].is_some() {
                continue;
            }
            if send {
                // A failed write means the server closed: the read below says how.
                let _ = c.write(&text[sent..=sent]);
            }
            loop {
                match c.read(&mut buf) {
                    Ok(0) => {
                        ended[i] = Some((
                            started.elapsed(),
                            String::from_utf8_lossy(&got[i]).into_owned(),
                        ));
                        break;
                    }
                    Ok(n) => got[i].extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        ended[i] = Some((started.elapsed(), format!("error: {e}")));
                        break;
                    }
                }
            }
        }
        if send {
            sent += 1;
        }
        if ended.iter().all(Option::is_some) {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    ended
}

fn connect_tcp(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
        .collect()
}

fn connect_unix(path: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|_| UnixStream::connect(path).expect("connect to the stats socket"))
        .collect()
}

/// lb with a stats section (`extra_section_lines` added to it) and its runtime API sockets,
/// `global_lines` added to `global`.
fn start(global_lines: &str, extra_section_lines: &str) -> (Lb, SocketAddr, SockDir) {
    let st = free_port();
    let dir = SockDir::new("ctl");
    let section = stats_section(st) + extra_section_lines;
    let cfg = config(free_port(), &dir, &[], &[], &section).replacen(
        "global\n",
        &format!("global\n{global_lines}"),
        1,
    );
    (Lb::start(&cfg, "splice"), local(st), dir)
}

/// `GET /stats;csv` with the section's credentials; the answer and how long it took.
fn csv(stats: SocketAddr) -> (Result<HttpResponse, String>, Duration) {
    let t = Instant::now();
    let r = http_raw(
        stats,
        format!(
            "GET /stats;csv HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
            base64(b"admin:pass")
        )
        .as_bytes(),
    );
    (r, t.elapsed())
}

fn assert_csv_within_a_second(stats: SocketAddr, when: &str) {
    let (r, took) = csv(stats);
    let r = r.unwrap_or_else(|e| panic!("{when}: GET /stats;csv: {e} after {took:?}"));
    eprintln!("{when}: GET /stats;csv answered in {took:?}");
    assert_eq!(r.status, 200, "{when}: {}", r.text());
    assert!(r.text().starts_with("# pxname,"), "{when}: {}", r.text());
    assert!(
        took < Duration::from_secs(1),
        "{when}: GET /stats;csv took {took:?}"
    );
}

/// Slow clients that ended with a 408 between `from` and `to` after they started.
fn count_408(endings: &[Ending], from: Duration, to: Duration) -> usize {
    endings
        .iter()
        .flatten()
        .filter(|(at, text)| *at >= from && *at <= to && text.starts_with("HTTP/1.1 408"))
        .count()
}

#[test]
fn stats_page_answers_beside_300_slow_clients() {
    let (_lb, stats, _dir) = start("", "");
    let slow = Slow::start(connect_tcp(stats, 300), ENDLESS_HEAD);
    thread::sleep(Duration::from_millis(1500));
    for i in 0..3 {
        assert_csv_within_a_second(stats, &format!("with 300 slow clients (try {i})"));
        thread::sleep(Duration::from_secs(1));
    }
    // None holds its connection past `timeout http-request` (5 s by default): each gets 408.
    let endings = slow.wait_all_ended();
    let timely = count_408(&endings, Duration::from_secs(4), Duration::from_secs(7));
    assert_eq!(
        timely,
        300,
        "slow clients answered 408 within 4-7 s: {timely} of 300; some: {:?}",
        &endings[..5]
    );
}

#[test]
fn a_section_full_of_slow_clients_still_serves() {
    // 50 slow clients for 10 slots: each new client takes the slot of the oldest slow one.
    let (_lb, stats, _dir) = start("", "    maxconn 10\n");
    let slow = Slow::start(connect_tcp(stats, 50), ENDLESS_HEAD);
    thread::sleep(Duration::from_millis(1500));
    assert_csv_within_a_second(stats, "with 50 slow clients for maxconn 10");
    assert_csv_within_a_second(stats, "again");
    let endings = slow.finish();
    let gone = count_408(&endings, Duration::ZERO, Duration::from_secs(3));
    assert!(
        gone >= 40,
        "slow clients that gave their slot up (408) within 3 s: {gone} of 50"
    );
}

#[test]
fn timeout_http_request_bounds_a_request() {
    let (_lb, stats, _dir) = start("", "    timeout http-request 1s\n");
    let endings = Slow::start(connect_tcp(stats, 3), ENDLESS_HEAD).wait_all_ended();
    assert_eq!(
        count_408(
            &endings,
            Duration::from_millis(900),
            Duration::from_millis(2500)
        ),
        3,
        "{endings:?}"
    );
}

/// Sends `raw` and returns the answer's status and how long it took.
fn status_of(stats: SocketAddr, raw: &[u8]) -> (u16, Duration) {
    let t = Instant::now();
    let r = http_raw(stats, raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    (r.status, t.elapsed())
}

#[test]
fn malformed_requests_get_400_at_once_and_bare_lf_is_fine() {
    let (_lb, stats, _dir) = start("", "");
    let auth = base64(b"admin:pass");
    let cases: [(Vec<u8>, u16); 5] = [
        // HTTP/0.9: no version.
        (b"GET /stats\r\n".to_vec(), 400),
        (b"GET /stats\n".to_vec(), 400),
        // Not HTTP at all (a TLS ClientHello), no line end: refused on its first bytes.
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            400,
        ),
        (b"GET /stats HTTP/1.1\r\nbad header line\r\n".to_vec(), 400),
        (
            format!("GET /stats;csv HTTP/1.1\nHost: x\nAuthorization: Basic {auth}\n\n")
                .into_bytes(),
            200,
        ),
    ];
    for (raw, want) in cases {
        let (status, took) = status_of(stats, &raw);
        let raw = &raw;
        assert_eq!(status, want, "{:?}", String::from_utf8_lossy(raw));
        assert!(
            took < Duration::from_secs(1),
            "{:?} took {took:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

/// `show info` over a fresh connection to `sock`; its answer and how long it took.
fn show_info(sock: &Path) -> (String, Duration) {
    let t = Instant::now();
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"show info\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (out, t.elapsed())
}

#[test]
fn runtime_api_answers_beside_many_idle_connections() {
    // HAProxy's defaults: `stats maxconn 10` for all sockets, `stats timeout 10s`.
    let (_lb, _stats, dir) = start("", "");
    let admin = dir.sock("admin.sock");
    let idle = Slow::start(connect_unix(&admin, 30), b"");
    let trickling = Slow::start(connect_unix(&dir.sock("oper.sock"), 30), ENDLESS_COMMAND);
    thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        let (out, took) = show_info(&admin);
        assert!(out.contains("Name: lb"), "show info: {out:?}");
        assert!(
            took < Duration::from_secs(1),
            "show info took {took:?} beside 60 idle or slow connections"
        );
    }
    drop((idle, trickling));
}

#[test]
fn a_trickling_command_line_is_cut_at_stats_timeout() {
    let (_lb, _stats, dir) = start("    stats timeout 2s\n", "");
    let endings =
        Slow::start(connect_unix(&dir.sock("admin.sock"), 2), ENDLESS_COMMAND).wait_all_ended();
    for e in &endings {
        let (at, _) = e.as_ref().expect("closed before the clients' time was up");
        assert!(
            *at >= Duration::from_millis(1900) && *at < Duration::from_secs(4),
            "closed after {at:?}"
        );
    }
}
