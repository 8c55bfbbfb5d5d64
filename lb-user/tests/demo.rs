//! `lb demo` (what `cargo xtask run` starts): two demo backends behind a round-robin listener,
//! and the stats page beside it, all reachable as the text it prints says.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, lb_bin, local};

/// A plain HTTP/1.0 GET; returns the body.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.to_string()
}

#[test]
fn demo_balances_and_shows_its_stats_page() {
    // The stats page takes port + 1: find a free pair.
    let port = loop {
        let p = free_port();
        if std::net::TcpListener::bind(local(p + 1)).is_ok() {
            break p;
        }
    };
    let mut child = Command::new(lb_bin())
        .args(["demo", "--port", &port.to_string(), "--dataplane", "splice"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lb demo");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[lb demo] {line}");
            let _ = tx.send(line);
        }
    });
    // What it prints for the user ends with "Stop with Ctrl-C.".
    let mut printed = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).is_ok_and(|n| n > 0) {
        printed.push_str(&line);
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
        line.clear();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("lb ready") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let outcome = std::panic::catch_unwind(|| {
        assert!(ready, "lb demo did not get ready");
        assert!(
            printed.contains(&format!("curl -s http://127.0.0.1:{port}/")),
            "{printed}"
        );
        assert!(
            printed.contains("backend demo_servers"),
            "it prints its haproxy.cfg"
        );
        let a = get(port, "/");
        let b = get(port, "/");
        assert!(a.contains("hello from demo backend"), "{a}");
        assert_ne!(
            a.split(" (").next(),
            b.split(" (").next(),
            "round robin alternates"
        );
        let csv = get(port + 1, "/stats;csv");
        assert!(csv.starts_with("# pxname,svname,"), "{csv}");
        assert!(csv.contains("demo_servers,web1,") && csv.contains("demo_servers,web2,"));
        assert!(get(port + 1, "/metrics").contains("haproxy_server_status"));
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
