//! Accepts on the thread's `io_uring` (an accept in flight on each listening socket): they stop
//! when lb stops accepting and take nothing from a queue another process now serves (binary
//! upgrade: the accept is cancelled and reaped before the loop ends), and they still wait
//! while a frontend (or one of its addresses, `bind ... maxconn`) is at its `maxconn`, resuming
//! when a connection ends. On every plane.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::servers::Backend;
use common::{free_port, local, Lb, LbOpts, DEFAULTS};

on_both_planes!(
    soft_stopped_process_takes_no_client_of_the_new_one,
    maxconn_holds_and_accepts_resume,
    a_binds_maxconn_holds_its_address_only,
    a_reload_that_raises_maxconn_lets_the_waiting_client_in,
);

/// Clients that connect while the old process has soft-stopped but still lives.
const AFTER_STOP: usize = 100;

fn socket_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("lb-accept-ring-{}-{n}.sock", std::process::id()))
}

/// One echo exchange of `msg` on a new connection, within 5 s.
fn echo_once(addr: SocketAddr, msg: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back == msg {
        Ok(())
    } else {
        Err(std::io::Error::other("echo differs"))
    }
}

/// The old lb soft-stops once a new one took its listening sockets (`-x`, `-sf`), and lives
/// on for a held connection. Every client that connects meanwhile must be served (by the new
/// one): an accept the old one left in flight would take some of them and never answer.
fn soft_stopped_process_takes_no_client_of_the_new_one(dataplane: &str) {
    let echo = Backend::echo("e");
    let sock = socket_path();
    let port = free_port();
    let cfg = format!(
        "global\n    stats socket {} level admin expose-fd listeners\n    hard-stop-after 30s\n\
         {DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\n\
         backend be\n    server e {}\n",
        sock.display(),
        echo.addr
    );
    let mut old = Lb::start(&cfg, dataplane);
    let mut held = TcpStream::connect(local(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    held.write_all(b"held").unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();
    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    // A new configuration without the held flow's backend name: the new lb refuses the flow,
    // which stays with the old process (so the old one lives on, soft-stopped).
    let new_cfg = cfg
        .replace("backend be\n", "backend be2\n")
        .replace("default_backend be\n", "default_backend be2\n");
    let new =
        Lb::start_with(&LbOpts::new(&new_cfg, dataplane).args(&["-x", &sock_arg, "-sf", &old_pid]));
    assert!(
        old.wait_for_log("soft stop: no longer accepting", Duration::from_secs(10)),
        "the old lb did not soft-stop: {}",
        old.logs().join("\n")
    );
    assert!(new.wait_for_log(
        "established flow(s) from the old process",
        Duration::from_secs(10)
    ));
    let mut failed = Vec::new();
    for i in 0..AFTER_STOP {
        if let Err(e) = echo_once(local(port), &(i as u64).to_le_bytes()) {
            failed.push(format!("client {i}: {e}"));
        }
    }
    assert!(
        old.wait_exit(Duration::ZERO).is_none(),
        "the old lb exited early: the test needs it alive"
    );
    assert!(
        failed.is_empty(),
        "clients not served after the old lb's soft stop: {failed:?}"
    );
    // The held flow is still the old process's, and works.
    held.write_all(b"more").unwrap();
    held.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"more");
    drop(held);
    assert!(
        old.wait_exit(Duration::from_secs(10)).is_some(),
        "the old lb did not exit once its last flow ended"
    );
    echo_once(local(port), b"after").unwrap();
    drop(new);
}

/// `maxconn 2` on the frontend: with two connections held, a third is not accepted (its
/// handshake completes in the kernel's backlog, but nothing answers it); once one of the two
/// closes, it is accepted and served. `nbthread 1`: with more threads, each thread's loop may
/// already wait in an accept when the limit is reached, and take one more (`permit.rs`).
fn maxconn_holds_and_accepts_resume(dataplane: &str) {
    let echo = Backend::echo("e");
    let port = free_port();
    let cfg = format!(
        "global\n    nbthread 1\n\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    maxconn 2\n    \
         default_backend be\n\nbackend be\n    server e {}\n",
        echo.addr
    );
    let lb = Lb::start(&cfg, dataplane);
    let mut held: Vec<TcpStream> = (0..2u8)
        .map(|i| {
            let mut s = TcpStream::connect(local(port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&[i]).unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            assert_eq!(b, [i]);
            s
        })
        .collect();
    let mut third = TcpStream::connect(local(port)).unwrap();
    third.write_all(b"third").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 5];
    let early = third.read(&mut b);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the third connection was served (or closed) at maxconn 2: {early:?}"
    );
    assert!(echo.wait_current(2, Duration::from_secs(5)));
    let t0 = Instant::now();
    drop(held.remove(0));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    third.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"third", "served once a connection ended");
    eprintln!(
        "the third connection was served {:?} after a close",
        t0.elapsed()
    );
    drop(lb);
}

/// A connection that exchanges `msg` with the echo server; panics otherwise.
fn served_echo(addr: SocketAddr, msg: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
    s
}

/// Whether nothing answers `s` (written to already) within 500 ms.
fn unanswered(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// `bind A maxconn 1` beside `bind B` in one frontend: with one connection held on A, a second
/// one on A waits in the backlog while B serves others; a reload that keeps A keeps counting
/// the held one; once it closes, the waiting one is served. `nbthread 1`, as above.
fn a_binds_maxconn_holds_its_address_only(dataplane: &str) {
    let echo = Backend::echo("e");
    let (a, b) = (free_port(), free_port());
    let cfg = format!(
        "global\n    nbthread 1\n\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{a} maxconn 1\n    \
         bind 127.0.0.1:{b}\n    default_backend be\n\nbackend be\n    server e {}\n",
        echo.addr
    );
    let mut lb = Lb::start(&cfg, dataplane);
    let held = served_echo(local(a), b"held");
    // The accept loop may already wait in an accept: it takes one more, at most (permit.rs).
    let mut waiting = TcpStream::connect(local(a)).unwrap();
    waiting.write_all(b"w").unwrap();
    let mut extra = None;
    if !unanswered(&mut waiting) {
        extra = Some(waiting);
        waiting = TcpStream::connect(local(a)).unwrap();
        waiting.write_all(b"w").unwrap();
        assert!(
            unanswered(&mut waiting),
            "a third connection on the address with maxconn 1 was served"
        );
    }
    // The frontend itself is not at a limit: its other address serves.
    let others: Vec<TcpStream> = (0..3u8).map(|i| served_echo(local(b), &[i])).collect();
    lb.rewrite_config(0, &cfg);
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)));
    drop(extra);
    assert!(
        unanswered(&mut waiting),
        "after the reload the address took a second connection: the held one was not counted"
    );
    drop(held);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut c = [0u8; 1];
    waiting.read_exact(&mut c).unwrap();
    assert_eq!(&c, b"w", "served once the held connection ended");
    drop(others);
    lb.stop();
}

/// A frontend at `maxconn 1` with a client waiting in the backlog: a reload that raises the
/// limit lets it in at once, as HAProxy's new process would accept it, without waiting for a
/// connection to end.
fn a_reload_that_raises_maxconn_lets_the_waiting_client_in(dataplane: &str) {
    let echo = Backend::echo("e");
    let port = free_port();
    let cfg = |maxconn: u32| {
        format!(
            "global\n    nbthread 1\n\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
             maxconn {maxconn}\n    default_backend be\n\nbackend be\n    server e {}\n",
            echo.addr
        )
    };
    let mut lb = Lb::start(&cfg(1), dataplane);
    let mut held = vec![served_echo(local(port), b"held")];
    let waiting = loop {
        let mut c = TcpStream::connect(local(port)).unwrap();
        c.write_all(b"w").unwrap();
        if unanswered(&mut c) {
            break c;
        }
        // The loop that already waited in an accept took one more (at most one: one thread).
        held.push(c);
        assert!(held.len() <= 2, "maxconn 1 served {} clients", held.len());
    };
    lb.rewrite_config(0, &cfg(10));
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)));
    let mut waiting = waiting;
    waiting
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut c = [0u8; 1];
    let got = waiting.read_exact(&mut c);
    assert!(
        got.is_ok() && &c == b"w",
        "the waiting client was not served after the reload raised maxconn: {got:?}"
    );
    drop(held);
    lb.stop();
}
