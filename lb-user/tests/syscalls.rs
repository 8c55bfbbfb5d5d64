//! Syscalls lb makes per short proxied connection (connect, 64 B, its 64 B answer, close, one
//! after the other, `nbthread 1`), counted by `strace -c -f` attached to the real binary: a
//! count, not a time. Most of it does not move with the machine's load; the turns of lb's loop
//! (`epoll_wait` + `io_uring_enter` each) do a little: a busy CPU lets fewer events gather per
//! turn (with a build running beside the suite, splice made 15.3 where it makes 10.2-11.4
//! quiet). So the planes are counted one at a time. `clock_gettime` (vDSO, when strace sees it
//! at all) is not counted.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::servers::Backend;
use common::{free_port, Lb, DEFAULTS};

/// Connections counted (after [`WARM_UP`] uncounted ones fill the pools).
const CONNECTIONS: usize = 300;
const WARM_UP: usize = 50;

/// Upper bounds, measured on this machine with margin (issue 10). With the thread's ring
/// (connects through it, sockets off `epoll` until a step needs them, the splice plane's copy
/// phase on the ring): splice 12.4–12.7 (`accept4` 2, `socket` 1, `setsockopt` 1, the rest
/// `epoll_wait` + `io_uring_enter` per turn of the loop, and how many turns a connection
/// takes moves a little with timing), sockmap 24.0 (its copy path still ran on `epoll`), then
/// 12.0–16.1 once its flows started on the ring too, sockmap at once 53.4 (18 of them `bpf`,
/// 12 `getsockopt`: the maps' setup per flow). Before the ring: splice 27.0, sockmap 33.0, at
/// once 60.2; before copy first: 41.0–42.4, 41.1–44.2, 65.0. HAProxy 2.6: 23.8. With accepts
/// on the ring (no `accept4`, 2 per connection before): splice 10.0–11.8, sockmap 10.5–12.5.
/// With each receive linked behind its send, closes, cancels and buffer returns completing
/// only on failure, and the park hook handling what completed at once: splice 8.0–11.0,
/// sockmap 8.1–10.0 (`socket` 1, `setsockopt` 1, `io_uring_enter` 4–7, `epoll_wait` 2), at
/// once 51.0–51.1.
const MAX_SPLICE: f64 = 13.0;
const MAX_SOCKMAP: f64 = 13.0;
const MAX_SOCKMAP_AT_ONCE: f64 = 55.0;

/// The same with a PROXY header (`send-proxy-v2`) for the server: splice and sockmap made
/// 14.0–14.7 when lb wrote the header on the thread's reactor once connected (`epoll_ctl` 2,
/// `sendto` 1, a turn of the loop more), 9.0–9.1 with the header sent by a send linked behind
/// the connect on the ring: no more than without a header. At once: 45.6, then 41.8.
const MAX_WITH_PROXY_HEADER: f64 = 13.0;

on_both_planes!(
    syscalls_per_short_connection_are_bounded,
    syscalls_with_a_proxy_header_for_the_server_are_bounded
);

fn syscalls_per_short_connection_are_bounded(dataplane: &str) {
    let max = match dataplane {
        "splice" => MAX_SPLICE,
        "sockmap" => MAX_SOCKMAP,
        _ => MAX_SOCKMAP_AT_ONCE,
    };
    bounded(dataplane, "", max);
}

fn syscalls_with_a_proxy_header_for_the_server_are_bounded(dataplane: &str) {
    let max = match dataplane {
        "splice" | "sockmap" => MAX_WITH_PROXY_HEADER,
        _ => MAX_SOCKMAP_AT_ONCE,
    };
    bounded(dataplane, " send-proxy-v2", max);
}

/// Counts syscalls per short connection through lb to an echo server declared with
/// `server_opts`, and checks them against `max`.
fn bounded(dataplane: &str, server_opts: &str, max: f64) {
    // One count at a time: two counted lbs and their clients on two cores would share them.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let echo = Backend::echo("echo");
    let port = free_port();
    let cfg = format!(
        "global\n    nbthread 1\n\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
         default_backend be\n\nbackend be\n    server s1 {}{server_opts}\n",
        echo.addr
    );
    let lb = Lb::start(&cfg, dataplane);
    for _ in 0..WARM_UP {
        exchange(port);
    }
    assert!(echo.wait_current(0, Duration::from_secs(10)));
    // Counted again once when over the bound, and the lower count kept: a moment of load on
    // the machine adds turns of the loop to one count (splice 13.1 in one CI run, 7.96 of it
    // `io_uring_enter`, where quiet runs make 8.0-11.0); a change that costs syscalls adds
    // them to both.
    let (mut per, mut detail) = (f64::INFINITY, Vec::new());
    for _ in 0..2 {
        let (count, counted) = count_connections(&lb, &echo, port);
        eprintln!(
            "{dataplane}: {count:.1} syscalls per short connection: {}",
            counted.join(", ")
        );
        if count < per {
            (per, detail) = (count, counted);
        }
        if per <= max {
            break;
        }
    }
    assert!(
        per <= max,
        "{dataplane}: {per:.1} syscalls per short connection, more than {max}: {detail:?}"
    );
}

/// Syscalls per connection over [`CONNECTIONS`] exchanges through `lb`, and each call's share.
fn count_connections(lb: &Lb, echo: &Backend, port: u16) -> (f64, Vec<String>) {
    let per_conn = count_while(lb.pid(), || {
        for _ in 0..CONNECTIONS {
            exchange(port);
        }
        // lb closes its server socket once the echo server has: wait for that, so every
        // connection's syscalls are in.
        assert!(echo.wait_current(0, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
    });
    let calls: u64 = per_conn.iter().map(|(_, n)| n).sum();
    let detail = per_conn
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / CONNECTIONS as f64))
        .collect();
    (calls as f64 / CONNECTIONS as f64, detail)
}

/// connect, 64 B, read the 64 B answer, close. A PROXY v2 header lb sent the echo server
/// comes back first: it is read and checked too.
fn exchange(port: u16) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&[b'x'; 64]).unwrap();
    let mut first = [0u8; 1];
    c.read_exact(&mut first).unwrap();
    if first[0] != b'x' {
        // Signature (12 bytes), version and command, family, length (2), addresses.
        let mut head = [0u8; 15];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head[..11], &PROXY_V2_SIGNATURE[1..], "a PROXY v2 header");
        let mut addrs = vec![0u8; usize::from(u16::from_be_bytes([head[13], head[14]]))];
        c.read_exact(&mut addrs).unwrap();
        c.read_exact(&mut first).unwrap();
    }
    let mut answer = [0u8; 64];
    answer[0] = first[0];
    c.read_exact(&mut answer[1..]).unwrap();
    assert_eq!(answer, [b'x'; 64]);
}

const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Runs `work` with `strace -c -f` attached to `pid`; returns the calls per syscall name.
fn count_while(pid: u32, work: impl FnOnce()) -> Vec<(String, u64)> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let out = std::env::temp_dir().join(format!(
        "lb-syscalls-{}-{}.txt",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace (Debian package strace; `cargo xtask setup` installs it)");
    // strace says on stderr when it is attached to every thread.
    let mut stderr = BufReader::new(strace.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    while !line.contains("attached") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "strace did not attach to lb: {line}"
        );
    }
    work();
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    strace.wait().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    parse(&text)
}

/// `strace -c` rows: `% time  seconds  usecs/call  calls  [errors]  syscall`.
fn parse(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let name = *words.last()?;
            let calls = words.get(3)?.parse::<u64>().ok()?;
            (words.len() >= 5 && name != "total" && name != "clock_gettime")
                .then(|| (name.to_string(), calls))
        })
        .collect()
}

#[test]
fn parse_reads_calls_and_skips_total_and_clock_gettime() {
    let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                ------ ----------- ----------- --------- --------- ----------------\n\
                 40.00    0.000400           1       400       200 accept4\n\
                 30.00    0.000300           1       300           read\n\
                 10.00    0.000100           1       100           clock_gettime\n\
                ------ ----------- ----------- --------- --------- ----------------\n\
                100.00    0.001000           1       800       200 total\n";
    assert_eq!(
        parse(text),
        vec![("accept4".to_string(), 400), ("read".to_string(), 300)]
    );
}
