//! `option nolinger` through the real lb, on every plane, beside a proxy without it in the same
//! process (what changes is the option, nothing else).
//!
//! The frontend's option sets `SO_LINGER` 0 on its listening sockets, which the client sockets
//! inherit: a close that is not the end of both sides is a reset. With a client that
//! half-closes, reads the whole answer (SHA-256 at both ends), then sees the server close, lb's
//! close passes that last FIN on: the client gets a reset and no `TIME_WAIT` is left for the
//! connection (without the option: a FIN, and the client's side waits in `TIME_WAIT`). A flow
//! lb ends itself (`timeout client`) resets the client, and lb's port keeps no `FIN_WAIT2`
//! for a client that does not close (without: it does). Where the server closes first and the
//! client closes last, nothing changes: lb's side went through its FIN first and the kernel
//! keeps its `TIME_WAIT`, with the option or not, as for HAProxy. A reload that adds the option
//! makes the next connections end with a reset, and one that removes it brings the FIN back,
//! on the same listening sockets; so does a binary upgrade (`-x`), on the sockets it takes.
//!
//! The backend's option: a client's FIN is not passed on to a server that has not sent its
//! own; the server (having read the request intact) sees a reset, the client a normal end, the
//! log `--`. Without it the half-close passes and the server can still answer. A server that
//! closed first gets the client's end as a normal close.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use common::data::{recv_to_eof, send_stream, stream_summary, Summary};
use common::ops::Syslog;
use common::{free_port, local, Lb, LbOpts, DEFAULTS};

on_both_planes!(
    frontend_nolinger_passes_the_last_fin_as_a_reset,
    frontend_nolinger_resets_a_client_lb_closes,
    frontend_nolinger_keeps_the_end_of_a_client_that_closes_last,
    backend_nolinger_resets_the_server_instead_of_the_half_close,
    backend_nolinger_closes_normally_after_the_servers_fin,
    backend_nolinger_while_response_rules_wait,
    reload_sets_and_clears_nolinger_on_the_same_listeners,
    binary_upgrade_sets_and_clears_nolinger_on_the_listeners_it_takes,
);

/// Deadline of every wait and every read.
const WAIT: Duration = Duration::from_secs(20);
/// Bytes of a request: more than a buffer of the ring, so a flow leaves it on its way.
const REQUEST: u64 = 256 << 10;
/// Bytes of an answer.
const ANSWER: u64 = 1 << 20;
const REQUEST_SEED: u64 = 0x4E4F_4C49_0001;
const ANSWER_SEED: u64 = 0x4E4F_4C49_0002;

/// `/proc/net/tcp` states (`include/net/tcp_states.h`).
const FIN_WAIT1: u8 = 4;
const FIN_WAIT2: u8 = 5;
const TIME_WAIT: u8 = 6;
const LISTEN: u8 = 10;

/// One IPv4 TCP socket of `/proc/net/tcp` (every socket here is on 127.0.0.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TcpRow {
    local: u16,
    remote: u16,
    state: u8,
    inode: u64,
}

fn tcp_rows() -> Vec<TcpRow> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(TcpRow {
                local: port(f.get(1)?)?,
                remote: port(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The states of the sockets of the connection between ports `a` and `b`: (`a`'s side,
/// `b`'s side), each empty when gone.
fn conn_states(a: u16, b: u16) -> (Vec<u8>, Vec<u8>) {
    let rows = tcp_rows();
    let side = |l, r| {
        rows.iter()
            .filter(|t| t.local == l && t.remote == r)
            .map(|t| t.state)
            .collect()
    };
    (side(a, b), side(b, a))
}

/// The inodes of the listening sockets on `port` (one per lb thread), sorted.
fn listeners(port: u16) -> Vec<u64> {
    let mut v: Vec<u64> = tcp_rows()
        .into_iter()
        .filter(|t| t.local == port && t.state == LISTEN)
        .map(|t| t.inode)
        .collect();
    v.sort_unstable();
    v
}

/// What serves one connection of a [`Scripted`] backend.
type Handler = Box<dyn FnOnce(TcpStream) + Send>;

/// A backend that serves each connection it accepts with the next handler the test queued
/// ([`Scripted::next`]), on a thread of its own.
struct Scripted {
    addr: SocketAddr,
    handlers: Option<Sender<Handler>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Scripted {
    fn start() -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<Handler>();
        let thread = thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let mut served = Vec::new();
            // Each handler waits for its connection, at most `WAIT`.
            while let Ok(handler) = rx.recv() {
                let end = Instant::now() + WAIT;
                let conn = loop {
                    match l.accept() {
                        Ok((s, _)) => break Some(s),
                        Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                            thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => break None,
                    }
                };
                let Some(s) = conn else { continue };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                s.set_write_timeout(Some(WAIT)).unwrap();
                served.push(thread::spawn(move || handler(s)));
            }
            for t in served {
                let _ = t.join();
            }
        });
        Scripted {
            addr,
            handlers: Some(tx),
            thread: Some(thread),
        }
    }

    /// Serves the next connection with `f`.
    fn next(&self, f: impl FnOnce(TcpStream) + Send + 'static) {
        self.handlers.as_ref().unwrap().send(Box::new(f)).unwrap();
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        drop(self.handlers.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client connection to lb.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to lb");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// How reading `s` to its end ended: `Ok(bytes)` at a FIN, the error kind otherwise.
fn read_end(s: &mut TcpStream) -> Result<usize, ErrorKind> {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .map(|_| rest.len())
        .map_err(|e| e.kind())
}

/// Reads exactly `len` bytes and returns their summary.
fn read_exactly(s: &mut TcpStream, len: u64) -> Summary {
    let mut buf = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut buf).expect("read the answer");
    Summary::of(&buf)
}

/// Polls `f` until it holds, at most [`WAIT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// lb's config: `frontend fe` on `port` with `fe_lines`, to `backend be` with `be_lines`
/// and the one server `server`; `option tcplog` to `syslog` when given.
/// The log line of the flow from the client's port `me`.
fn flow_line(syslog: &Syslog, me: u16) -> String {
    syslog
        .wait_for(&format!("127.0.0.1:{me} ["), 1, WAIT)
        .into_iter()
        .next()
        .expect("the flow's log line")
}

/// After the client's half-close: with the backend's `option nolinger` the server is reset,
/// the client gets a FIN with nothing before it and the flow is logged as a normal end;
/// without it the FIN passes and the server's `answer` reaches the client.
fn half_close_outcome(
    c: &mut TcpStream,
    end_rx: &mpsc::Receiver<Result<usize, ErrorKind>>,
    nolinger: bool,
    (syslog, me): (&Syslog, u16),
    answer_sent: &[u8],
) {
    let server_end = end_rx.recv_timeout(WAIT).unwrap();
    let mut answer = Vec::new();
    let client_end = c.read_to_end(&mut answer).map_err(|e| e.kind());
    if nolinger {
        assert_eq!(
            server_end,
            Err(ErrorKind::ConnectionReset),
            "the server is reset"
        );
        assert_eq!(
            (client_end, answer.len()),
            (Ok(0), 0),
            "the client gets a FIN"
        );
        let line = flow_line(syslog, me);
        assert!(
            line.contains(" fe be/s1 ") && line.contains(" 0 -- "),
            "{line}"
        );
    } else {
        assert_eq!(server_end, Ok(0), "without the option the FIN passes");
        assert_eq!(
            answer, answer_sent,
            "and the server's answer is the client's"
        );
    }
}

fn config(
    port: u16,
    fe_lines: &str,
    be_lines: &str,
    server: SocketAddr,
    syslog: Option<&Syslog>,
) -> String {
    let mut c = String::from("global\n");
    if let Some(s) = syslog {
        let _ = writeln!(c, "    log 127.0.0.1:{} local0", s.addr.port());
    }
    let _ = write!(
        c,
        "\n{DEFAULTS}    log global\n    option tcplog\n\nfrontend fe\n    bind 127.0.0.1:{port}\n{fe_lines}    default_backend be\n\nbackend be\n{be_lines}    server s1 {server}\n"
    );
    c
}

/// The client half-closes after its request, reads the whole answer, then the server closes:
/// how the client's read ended after the answer, and the connection's sockets left once the
/// client closed too (client side, lb side).
fn client_half_closes_first(
    lb: SocketAddr,
    backend: &Scripted,
) -> (Result<usize, ErrorKind>, (Vec<u8>, Vec<u8>)) {
    let (read_tx, read_rx) = mpsc::channel::<()>();
    let (req_tx, req_rx) = mpsc::channel();
    backend.next(move |mut s| {
        let deadline = Instant::now() + WAIT;
        let got = recv_to_eof(&mut s, deadline).expect("the request and the client's FIN");
        req_tx.send(got).unwrap();
        send_stream(&mut s, ANSWER_SEED, ANSWER, deadline).expect("send the answer");
        // The server closes once the client has read everything.
        let _ = read_rx.recv_timeout(WAIT);
    });
    let mut c = connect(lb);
    let me = c.local_addr().unwrap().port();
    let sent = send_stream(&mut c, REQUEST_SEED, REQUEST, Instant::now() + WAIT).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        req_rx.recv_timeout(WAIT).unwrap(),
        sent,
        "the request, intact"
    );
    assert_eq!(
        read_exactly(&mut c, ANSWER),
        stream_summary(ANSWER_SEED, ANSWER),
        "the answer, intact"
    );
    read_tx.send(()).unwrap();
    let end = read_end(&mut c);
    drop(c);
    // lb's side goes at once after a reset, through LAST_ACK after a FIN.
    let lb_port = lb.port();
    eventually("lb's side of the client connection stays", || {
        conn_states(me, lb_port).1.is_empty()
    });
    (end, conn_states(me, lb_port))
}

/// [`client_half_closes_first`] on a listener with `option nolinger`: the client's read ends
/// with a reset, and nothing of the connection is left on either side.
fn ends_with_a_reset(lb: SocketAddr, backend: &Scripted, why: &str) {
    let (end, (client, lb_side)) = client_half_closes_first(lb, backend);
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "{why}: a reset");
    assert!(
        client.is_empty() && lb_side.is_empty(),
        "{why}: nothing left of the connection: client {client:?}, lb {lb_side:?}"
    );
}

/// [`client_half_closes_first`] on a listener without it: a FIN, and the client, which closed
/// first, waits in `TIME_WAIT`.
fn ends_with_a_fin(lb: SocketAddr, backend: &Scripted, why: &str) {
    let (end, (client, _)) = client_half_closes_first(lb, backend);
    assert_eq!(end, Ok(0), "{why}: a FIN");
    assert_eq!(
        client,
        [TIME_WAIT],
        "{why}: the client, which closed first, waits"
    );
}

fn frontend_nolinger_passes_the_last_fin_as_a_reset(dataplane: &str) {
    let backend = Scripted::start();
    let (port, plain_port) = (free_port(), free_port());
    let cfg = format!(
        "{}\nfrontend plain\n    bind 127.0.0.1:{plain_port}\n    default_backend be\n",
        config(port, "    option nolinger\n", "", backend.addr, None)
    );
    let _lb = Lb::start(&cfg, dataplane);
    ends_with_a_reset(local(port), &backend, "option nolinger");
    ends_with_a_fin(local(plain_port), &backend, "without the option");
}

/// lb ends an idle flow (`timeout client`): with the option the client gets a reset and lb's
/// port keeps nothing for it; without, a FIN, and lb's side waits in `FIN_WAIT2` for a client
/// that does not close.
fn frontend_nolinger_resets_a_client_lb_closes(dataplane: &str) {
    let backend = Scripted::start();
    let (port, plain_port) = (free_port(), free_port());
    let timeout = "    timeout client 300ms\n";
    let cfg =
        format!(
        "{}\nfrontend plain\n    bind 127.0.0.1:{plain_port}\n{timeout}    default_backend be\n",
        config(port, &format!("{timeout}    option nolinger\n"), "", backend.addr, None)
    );
    let _lb = Lb::start(&cfg, dataplane);
    for (p, nolinger) in [(port, true), (plain_port, false)] {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        backend.next(move |mut s| {
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(b"hello").unwrap();
            // Silent until the test is done (lb resets it at the timeout).
            let _ = done_rx.recv_timeout(WAIT);
        });
        let mut c = connect(local(p));
        let me = c.local_addr().unwrap().port();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        let end = read_end(&mut c);
        let (_, lb_side) = conn_states(me, p);
        if nolinger {
            assert_eq!(
                end,
                Err(ErrorKind::ConnectionReset),
                "option nolinger: a reset"
            );
            assert!(lb_side.is_empty(), "lb's port keeps {lb_side:?}");
        } else {
            assert_eq!(end, Ok(0), "without the option: a FIN");
            assert!(
                lb_side.iter().all(|s| [FIN_WAIT1, FIN_WAIT2].contains(s)) && lb_side.len() == 1,
                "lb's side waits for the client's FIN: {lb_side:?}"
            );
        }
        drop(c);
        done_tx.send(()).unwrap();
    }
}

/// The server closes first, the client reads to the end and closes: the option changes
/// nothing. lb's FIN went first, so the client's FIN puts lb's side in `TIME_WAIT` (the
/// kernel's doing, whatever `SO_LINGER` says), as it does HAProxy's; the client gets its
/// FIN, not a reset.
fn frontend_nolinger_keeps_the_end_of_a_client_that_closes_last(dataplane: &str) {
    let backend = Scripted::start();
    let port = free_port();
    let _lb = Lb::start(
        &config(port, "    option nolinger\n", "", backend.addr, None),
        dataplane,
    );
    backend.next(move |mut s| {
        let deadline = Instant::now() + WAIT;
        send_stream(&mut s, ANSWER_SEED, ANSWER, deadline).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let _ = recv_to_eof(&mut s, deadline);
    });
    let mut c = connect(local(port));
    let me = c.local_addr().unwrap().port();
    let got = recv_to_eof(&mut c, Instant::now() + WAIT).expect("the answer and a FIN");
    assert_eq!(got, stream_summary(ANSWER_SEED, ANSWER));
    drop(c);
    eventually("lb's side goes to TIME_WAIT", || {
        conn_states(me, port).1 == [TIME_WAIT]
    });
}

/// The backend's option: the client sends its request; once the server has read it, the
/// client half-closes. The server sees a reset (not the FIN), the client a normal end, the
/// log `--`. Without the option (`be_plain`) the server sees the FIN and its answer still
/// reaches the client.
fn backend_nolinger_resets_the_server_instead_of_the_half_close(dataplane: &str) {
    let syslog = Syslog::start();
    let backend = Scripted::start();
    let (port, plain_port) = (free_port(), free_port());
    let cfg = format!(
        "{}\nfrontend plain\n    bind 127.0.0.1:{plain_port}\n    default_backend be_plain\n\nbackend be_plain\n    server s1 {}\n",
        config(port, "", "    option nolinger\n", backend.addr, Some(&syslog)),
        backend.addr
    );
    let _lb = Lb::start(&cfg, dataplane);
    for (p, nolinger) in [(port, true), (plain_port, false)] {
        let (read_tx, read_rx) = mpsc::channel();
        let (end_tx, end_rx) = mpsc::channel();
        backend.next(move |mut s| {
            let mut req = vec![0u8; usize::try_from(REQUEST).unwrap()];
            s.read_exact(&mut req).unwrap();
            read_tx.send(Summary::of(&req)).unwrap();
            let end = read_end(&mut s);
            if end == Ok(0) {
                s.write_all(b"late answer").unwrap();
            }
            end_tx.send(end).unwrap();
        });
        let mut c = connect(local(p));
        let me = c.local_addr().unwrap().port();
        let sent = send_stream(&mut c, REQUEST_SEED, REQUEST, Instant::now() + WAIT).unwrap();
        assert_eq!(
            read_rx.recv_timeout(WAIT).unwrap(),
            sent,
            "the request, intact"
        );
        c.shutdown(Shutdown::Write).unwrap();
        half_close_outcome(&mut c, &end_rx, nolinger, (&syslog, me), b"late answer");
    }
}

/// The backend's option with the server closing first: its FIN reaches the client, whose
/// close then reaches the server as a normal close (the server's FIN was seen: no reset).
fn backend_nolinger_closes_normally_after_the_servers_fin(dataplane: &str) {
    let syslog = Syslog::start();
    let backend = Scripted::start();
    let port = free_port();
    let cfg = config(
        port,
        "",
        "    option nolinger\n",
        backend.addr,
        Some(&syslog),
    );
    let _lb = Lb::start(&cfg, dataplane);
    let (end_tx, end_rx) = mpsc::channel();
    backend.next(move |mut s| {
        let deadline = Instant::now() + WAIT;
        let mut b = [0u8; 7];
        s.read_exact(&mut b).unwrap();
        send_stream(&mut s, ANSWER_SEED, ANSWER, deadline).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        end_tx.send(read_end(&mut s)).unwrap();
    });
    let mut c = connect(local(port));
    let me = c.local_addr().unwrap().port();
    c.write_all(b"request").unwrap();
    let got = recv_to_eof(&mut c, Instant::now() + WAIT).expect("the answer and a FIN");
    assert_eq!(got, stream_summary(ANSWER_SEED, ANSWER));
    drop(c);
    assert_eq!(
        end_rx.recv_timeout(WAIT).unwrap(),
        Ok(0),
        "the server gets a FIN"
    );
    let line = flow_line(&syslog, me);
    assert!(line.contains(&format!(" {ANSWER} -- ")), "{line}");
}

/// The backend's option while `tcp-response` rules wait for the server's first bytes: the
/// client's FIN ends the server's input for them at once (no wait for the inspect delay) and
/// the connection once they decided: the server, which read the request, is reset, the client
/// gets a FIN, the log `--`. Without the option the FIN passes on, and the server's answer to
/// it is what the rules see and the client gets.
fn backend_nolinger_while_response_rules_wait(dataplane: &str) {
    let syslog = Syslog::start();
    let backend = Scripted::start();
    let (port, plain_port) = (free_port(), free_port());
    let rules =
        "    tcp-response inspect-delay 10s\n    tcp-response content accept if { res.len ge 6 }\n";
    let cfg = format!(
        "{}\nfrontend plain\n    bind 127.0.0.1:{plain_port}\n    default_backend be_plain\n\nbackend be_plain\n{rules}    server s1 {}\n",
        config(
            port,
            "",
            &format!("{rules}    option nolinger\n"),
            backend.addr,
            Some(&syslog)
        ),
        backend.addr
    );
    let _lb = Lb::start(&cfg, dataplane);
    for (p, nolinger) in [(port, true), (plain_port, false)] {
        let (read_tx, read_rx) = mpsc::channel();
        let (end_tx, end_rx) = mpsc::channel();
        backend.next(move |mut s| {
            let mut req = [0u8; 7];
            s.read_exact(&mut req).unwrap();
            read_tx.send(()).unwrap();
            let end = read_end(&mut s);
            if end == Ok(0) {
                s.write_all(b"answer").unwrap();
            }
            end_tx.send(end).unwrap();
        });
        let mut c = connect(local(p));
        let me = c.local_addr().unwrap().port();
        c.write_all(b"request").unwrap();
        read_rx.recv_timeout(WAIT).unwrap();
        let half_closed = Instant::now();
        c.shutdown(Shutdown::Write).unwrap();
        half_close_outcome(&mut c, &end_rx, nolinger, (&syslog, me), b"answer");
        if nolinger {
            assert!(
                half_closed.elapsed() < Duration::from_secs(5),
                "not held for the inspect delay"
            );
        }
    }
}

/// One reload adds the frontend's option, the next removes it: connections after each end
/// as the configuration in force says, on the listening sockets lb had from the start.
fn reload_sets_and_clears_nolinger_on_the_same_listeners(dataplane: &str) {
    let backend = Scripted::start();
    let port = free_port();
    let plain = config(port, "", "", backend.addr, None);
    let with = config(port, "    option nolinger\n", "", backend.addr, None);
    let lb = Lb::start(&plain, dataplane);
    let sockets = listeners(port);
    assert!(!sockets.is_empty(), "lb listens on {port}");
    let reload = |text: &str, generation: u32| {
        lb.rewrite_config(0, text);
        lb.signal(libc::SIGHUP);
        assert!(
            lb.wait_for_log(&format!("reload done: generation {generation}"), WAIT),
            "no reload: {}",
            lb.logs().join("\n")
        );
        assert_eq!(listeners(port), sockets, "the same listening sockets");
    };
    let (end, _) = client_half_closes_first(local(port), &backend);
    assert_eq!(end, Ok(0), "before: a FIN");
    reload(&with, 1);
    ends_with_a_reset(local(port), &backend, "option nolinger added");
    reload(&plain, 2);
    ends_with_a_fin(local(port), &backend, "option nolinger removed again");
}

/// A binary upgrade (`-x SOCKET -sf PID`) to a configuration with the frontend's option sets
/// it on the listening sockets the new lb takes over; the next upgrade, without it, clears it.
fn binary_upgrade_sets_and_clears_nolinger_on_the_listeners_it_takes(dataplane: &str) {
    let backend = Scripted::start();
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("lb-nolinger-{}-{port}.sock", std::process::id()));
    let stats = format!(
        "global\n    stats socket {} level admin expose-fd listeners\n",
        sock.display()
    );
    let plain = config(port, "", "", backend.addr, None).replacen("global\n", &stats, 1);
    let with = config(port, "    option nolinger\n", "", backend.addr, None)
        .replacen("global\n", &stats, 1);
    let mut old = Lb::start(&plain, dataplane);
    let sockets = listeners(port);
    let (end, _) = client_half_closes_first(local(port), &backend);
    assert_eq!(end, Ok(0), "before: a FIN");
    let upgrade = |old: &mut Lb, text: &str| {
        let args = [
            "-x",
            &sock.display().to_string(),
            "-sf",
            &old.pid().to_string(),
        ];
        let new = Lb::start_with(&LbOpts::new(text, dataplane).args(&args));
        assert!(
            new.wait_for_log("taken over from the old process", Duration::ZERO),
            "the new lb bound sockets of its own: {}",
            new.logs().join("\n")
        );
        assert!(old.wait_exit(WAIT).is_some(), "the old lb did not exit");
        assert_eq!(listeners(port), sockets, "the listening sockets taken over");
        new
    };
    let mut new = upgrade(&mut old, &with);
    ends_with_a_reset(local(port), &backend, "option nolinger");
    let _newer = upgrade(&mut new, &plain);
    ends_with_a_fin(local(port), &backend, "without it again");
}
