//! Client sides of the end-to-end scenarios. Each takes the address to talk to, so the same code
//! runs through lb (the real tests) and straight against a backend (the harness self-tests, which
//! prove the harness right without lb). Each returns `Err(text)` on the first thing that is wrong.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use super::data::{
    read_all, read_line, read_until_end, recv_to_eof, send_stream, send_stream_in, DataStream,
    ReadEnd, Rng, Summary, REPLY_SEED,
};
use super::servers::{Backend, FlowHeader, HalfClose, Note};

/// Read/write timeout on client sockets: no single operation may block longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub type Outcome<T = ()> = Result<T, String>;

fn e2s(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn set_timeouts(s: &TcpStream, t: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))
}

/// Connects with a 5 s connect timeout and [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> Outcome<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    set_timeouts(&s, IO_TIMEOUT).map_err(e2s("set timeouts"))?;
    s.set_nodelay(true).map_err(e2s("nodelay"))?;
    Ok(s)
}

/// Connects from a chosen local address (e.g. 127.0.0.7, port chosen by the OS).
pub fn connect_from(src: IpAddr, addr: SocketAddr) -> Outcome<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(e2s("socket"))?;
    sock.bind(&SocketAddr::new(src, 0).into())
        .map_err(|e| format!("bind {src}: {e}"))?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect {addr} from {src}: {e}"))?;
    let s: TcpStream = sock.into();
    set_timeouts(&s, IO_TIMEOUT).map_err(e2s("set timeouts"))?;
    Ok(s)
}

/// Makes the next close of `s` send a RST (`SO_LINGER` 0).
pub fn set_reset_on_close(s: &TcpStream) -> Outcome {
    SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .map_err(e2s("SO_LINGER 0"))
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "callers pass temporaries; by value reads better at every call site"
)]
fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// Client→server bulk against [`Backend::sink`]: writes `len` bytes of stream `seed`, shuts
/// write, and checks the sink's reply (length + SHA-256 of what it got) equals what was sent.
pub fn bulk_upload(addr: SocketAddr, len: u64, seed: u64, timeout: Duration) -> Outcome {
    bulk_upload_paused(addr, len, seed, Duration::ZERO, timeout)
}

/// [`bulk_upload`] in writes of `chunk` bytes (the kernel's skbs follow the writes' sizes).
pub fn bulk_upload_in(
    addr: SocketAddr,
    (len, seed): (u64, u64),
    chunk: usize,
    timeout: Duration,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let sent = send_stream_in(&mut s, (seed, len), chunk, deadline).map_err(e2s("upload"))?;
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown write"))?;
    let reply = read_all(&mut s, 40, deadline).map_err(e2s("sink reply"))?;
    if reply.len() != 40 {
        return Err(format!("sink reply has {} bytes, want 40", reply.len()));
    }
    expect_eq("what the sink got", Summary::from_wire(&reply), sent)
}

/// [`bulk_upload`] that stops sending for `pause` halfway through.
pub fn bulk_upload_paused(
    addr: SocketAddr,
    len: u64,
    seed: u64,
    pause: Duration,
    timeout: Duration,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let mut w = PauseOnce {
        inner: &mut s,
        at: len / 2,
        pause,
        written: 0,
    };
    let sent = send_stream(&mut w, seed, len, deadline).map_err(e2s("upload"))?;
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown write"))?;
    let reply = read_all(&mut s, 40, deadline).map_err(e2s("sink reply"))?;
    if reply.len() != 40 {
        return Err(format!("sink reply has {} bytes, want 40", reply.len()));
    }
    expect_eq("what the sink got", Summary::from_wire(&reply), sent)
}

/// Server→client bulk against [`Backend::source`] (one fresh source per call): reads to EOF and
/// checks length and SHA-256 against what the source noted it sent.
pub fn bulk_download(addr: SocketAddr, source: &Backend, len: u64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let got = recv_to_eof(&mut s, deadline).map_err(e2s("download"))?;
    drop(s);
    let key = source
        .accepted()
        .checked_sub(1)
        .ok_or("source accepted nothing")?;
    let sent = source
        .wait_sent(key, Duration::from_secs(10))
        .ok_or("source noted nothing sent")?;
    expect_eq("length sent by the source", sent.len, len)?;
    expect_eq("what the client got", got, sent)
}

/// `n` round trips of `size` bytes on one connection against [`Backend::echo`]; every reply is
/// compared with its request.
pub fn ping_pong(addr: SocketAddr, n: usize, size: usize, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let mut data = DataStream::new(0xB1B0);
    let mut req = vec![0u8; size];
    let mut rep = vec![0u8; size];
    for i in 0..n {
        if Instant::now() > deadline {
            return Err(format!("deadline passed after {i} of {n} round trips"));
        }
        data.fill(&mut req);
        s.write_all(&req)
            .map_err(|e| format!("round trip {i}: write: {e}"))?;
        s.read_exact(&mut rep)
            .map_err(|e| format!("round trip {i}: read: {e}"))?;
        if req != rep {
            return Err(format!("round trip {i}: reply differs from request"));
        }
    }
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown"))?;
    let (end, extra) = read_until_end(&mut s, deadline);
    expect_eq("end after ping-pong", (end, extra), (ReadEnd::Eof, 0))
}

/// Sends a 1 KiB request of stream `seed` and shuts write at once, against
/// `Backend::sink(_, 1024)`: the answer must be the summary of the request plus 1 KiB of
/// [`REPLY_SEED`], then EOF.
pub fn send_and_close(addr: SocketAddr, seed: u64, timeout: Duration) -> Outcome {
    send_and_close_on(connect(addr)?, seed, timeout)
}

/// [`send_and_close`] from a chosen local address (another client host on loopback).
pub fn send_and_close_from(src: IpAddr, addr: SocketAddr, seed: u64, timeout: Duration) -> Outcome {
    send_and_close_on(connect_from(src, addr)?, seed, timeout)
}

fn send_and_close_on(mut s: TcpStream, seed: u64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let req = DataStream::new(seed).take_vec(1024);
    s.write_all(&req).map_err(e2s("write request"))?;
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown write"))?;
    let reply = read_all(&mut s, 40 + 1024, deadline).map_err(e2s("read answer"))?;
    if reply.len() != 40 + 1024 {
        return Err(format!(
            "answer has {} bytes, want {}",
            reply.len(),
            40 + 1024
        ));
    }
    expect_eq(
        "summary in answer",
        Summary::from_wire(&reply[..40]),
        Summary::of(&req),
    )?;
    if reply[40..] != DataStream::new(REPLY_SEED).take_vec(1024)[..] {
        return Err("answer body differs".into());
    }
    Ok(())
}

/// Sends a small request right after connecting and waits (without closing) for the echo
/// within `wait`: data that reaches lb before its data plane is set up must not get stuck.
pub fn lone_request(addr: SocketAddr, i: u64, wait: Duration) -> Outcome {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(wait)).map_err(e2s("timeout"))?;
    let req = format!("lone request {i}\n");
    s.write_all(req.as_bytes()).map_err(e2s("write"))?;
    let mut rep = vec![0u8; req.len()];
    s.read_exact(&mut rep)
        .map_err(|e| format!("no echo within {wait:?}: {e}"))?;
    expect_eq("echo", String::from_utf8_lossy(&rep).into_owned(), req)
}

/// Waits (sending nothing) for a server that speaks first ([`Backend::ident_hold`]).
pub fn lone_greeting(addr: SocketAddr, want: &str, wait: Duration) -> Outcome {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(wait)).map_err(e2s("timeout"))?;
    let line = read_line(&mut s, Instant::now() + wait)
        .map_err(|e| format!("no greeting within {wait:?}: {e}"))?;
    expect_eq("greeting", line.as_str(), want)
}

/// Client shuts write first, against `Backend::sink(_, reply_len)`: the sink must see EOF (it
/// only answers after it), then the client must get the whole answer on its still-open read side.
pub fn half_close_client_first(addr: SocketAddr, reply_len: u64, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let req = DataStream::new(77).take_vec(1000);
    s.write_all(&req).map_err(e2s("write"))?;
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown write"))?;
    let mut head = [0u8; 40];
    s.read_exact(&mut head)
        .map_err(e2s("summary (did the backend see the client's EOF?)"))?;
    expect_eq(
        "what the backend got",
        Summary::from_wire(&head),
        Summary::of(&req),
    )?;
    let body = recv_to_eof(&mut s, deadline).map_err(e2s("answer after half-close"))?;
    expect_eq(
        "answer after half-close",
        body,
        super::data::stream_summary(REPLY_SEED, reply_len),
    )
}

/// Server shuts write first, against `Backend::source(_, len, _)` (fresh per call): the client
/// reads the server's bytes to EOF, then sends `len` bytes on its still-open write side and shuts
/// it; the source must get them all.
pub fn half_close_server_first(
    addr: SocketAddr,
    source: &Backend,
    len: u64,
    timeout: Duration,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr)?;
    let got = recv_to_eof(&mut s, deadline).map_err(e2s("server's bytes"))?;
    let key = source
        .accepted()
        .checked_sub(1)
        .ok_or("source accepted nothing")?;
    let sent = source
        .wait_sent(key, Duration::from_secs(5))
        .ok_or("source noted nothing sent")?;
    expect_eq("server→client bytes", got, sent)?;
    let up =
        send_stream(&mut s, 0xC11E, len, deadline).map_err(e2s("write after the server's EOF"))?;
    s.shutdown(Shutdown::Write).map_err(e2s("shutdown write"))?;
    let recv = source
        .wait_received(key, timeout)
        .ok_or("source never saw the client's bytes + EOF")?;
    expect_eq("client→server bytes after half-close", recv, up)
}

/// Client resets (`SO_LINGER` 0 + close) against [`Backend::reset_probe`] (fresh per call): the
/// backend must read ECONNRESET, not EOF.
pub fn reset_client_to_server(addr: SocketAddr, probe: &Backend) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = connect(addr)?;
    let line = read_line(&mut s, deadline).map_err(e2s("probe greeting"))?;
    expect_eq("greeting", line.as_str(), "ready")?;
    set_reset_on_close(&s)?;
    drop(s);
    let key = probe
        .accepted()
        .checked_sub(1)
        .ok_or("probe accepted nothing")?;
    let end = probe
        .wait_note(Duration::from_secs(5), |ns| {
            ns.iter().find_map(|n| match n {
                Note::ReadEnded { key: k, end } if *k == key => Some(*end),
                _ => None,
            })
        })
        .ok_or("backend's read side did not end within 5 s of the client's reset")?;
    expect_eq("how the backend's read ended", end, ReadEnd::Reset)
}

/// Server resets against [`Backend::reset_probe`]: the client must read ECONNRESET, not EOF.
pub fn reset_server_to_client(addr: SocketAddr) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = connect(addr)?;
    let line = read_line(&mut s, deadline).map_err(e2s("probe greeting"))?;
    expect_eq("greeting", line.as_str(), "ready")?;
    s.write_all(b"R").map_err(e2s("trigger"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(e2s("timeout"))?;
    let (end, _) = read_until_end(&mut s, deadline);
    expect_eq("how the client's read ended", end, ReadEnd::Reset)
}

/// One flow of the flow protocol (see [`Backend::flow`]): returns what the client sent and got.
pub fn flow(addr: SocketAddr, h: FlowHeader, deadline: Instant) -> Outcome<(Summary, Summary)> {
    flow_over(connect(addr)?, h, deadline)
}

/// [`flow`] on a stream the caller connected (its own timeouts, namespace or source address).
pub fn flow_over(
    mut s: TcpStream,
    h: FlowHeader,
    deadline: Instant,
) -> Outcome<(Summary, Summary)> {
    let id = h.id;
    s.write_all(&h.encode()).map_err(e2s("header"))?;
    let f =
        |what: &'static str| move |e: io::Error| format!("flow {id} ({:?}): {what}: {e}", h.order);
    match h.order {
        HalfClose::ClientFirst => {
            let sent = send_stream(&mut s, h.up_seed(), h.up, deadline).map_err(f("send"))?;
            s.shutdown(Shutdown::Write).map_err(f("shutdown"))?;
            let got = recv_to_eof(&mut s, deadline).map_err(f("receive"))?;
            Ok((sent, got))
        }
        HalfClose::ServerFirst => {
            let got = recv_to_eof(&mut s, deadline).map_err(f("receive"))?;
            let sent = send_stream(&mut s, h.up_seed(), h.up, deadline).map_err(f("send"))?;
            s.shutdown(Shutdown::Write).map_err(f("shutdown"))?;
            Ok((sent, got))
        }
        HalfClose::Both => {
            let mut w = s.try_clone().map_err(f("clone"))?;
            let writer = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> io::Result<Summary> {
                    let sent = send_stream(&mut w, h.up_seed(), h.up, deadline)?;
                    w.shutdown(Shutdown::Write)?;
                    Ok(sent)
                })
                .map_err(f("spawn writer"))?;
            let got = recv_to_eof(&mut s, deadline).map_err(f("receive"));
            let sent = writer.join().expect("writer panicked").map_err(f("send"))?;
            Ok((sent, got?))
        }
    }
}

/// The plan for `n` flows: sizes 0..=8 MiB per direction (a mix of empty, small, medium and large
/// so edge cases are common) and a half-close order per flow; deterministic from `seed`.
pub fn flow_plan(n: usize, seed: u64, max: u64) -> Vec<FlowHeader> {
    let mut rng = Rng::new(seed);
    let size = |rng: &mut Rng| match rng.below(8) {
        0 => 0,
        1 | 2 => rng.range(1, 1500),
        3 | 4 => rng.range(1, 256 * 1024),
        _ => rng.range(1, max),
    };
    (0..n as u64)
        .map(|id| FlowHeader {
            id,
            order: match rng.below(3) {
                0 => HalfClose::ClientFirst,
                1 => HalfClose::ServerFirst,
                _ => HalfClose::Both,
            },
            up: size(&mut rng),
            down: size(&mut rng),
        })
        .collect()
}

/// Runs all flows of `plan` at the same time (one client thread each, started together) against
/// [`Backend::flow`] at `addr`, then checks both directions of every flow against the server's
/// journal. Reports every broken flow, not just the first.
pub fn concurrent_flows(
    addr: SocketAddr,
    server: &Backend,
    plan: &[FlowHeader],
    timeout: Duration,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let barrier = Arc::new(Barrier::new(plan.len()));
    let threads: Vec<_> = plan
        .iter()
        .map(|&h| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .name(format!("flow-{}", h.id))
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    flow(addr, h, deadline)
                })
                .expect("spawn flow client")
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("flow client panicked"))
        .collect();
    let mut failures = Vec::new();
    for (h, r) in plan.iter().zip(results) {
        let (sent, got) = match r {
            Ok(v) => v,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let srv_got = server.wait_received(h.id, left);
        let srv_sent = server.wait_sent(h.id, Duration::from_secs(1));
        if sent.len != h.up || srv_got != Some(sent) {
            failures.push(format!(
                "flow {} ({:?}) client→server: client sent {sent:?} (planned {}), server got {srv_got:?}",
                h.id, h.order, h.up
            ));
        }
        if srv_sent.map(|s| s.len) != Some(h.down) || srv_sent != Some(got) {
            failures.push(format!(
                "flow {} ({:?}) server→client: server sent {srv_sent:?} (planned {}), client got {got:?}",
                h.id, h.order, h.down
            ));
        }
    }
    let errors = server.errors();
    if failures.is_empty() && errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} flows broken:\n{}\nserver errors:\n{}",
            failures.len(),
            plan.len(),
            failures.join("\n"),
            errors.join("\n")
        ))
    }
}

/// Which server answers (against [`Backend::ident`]): connect, read to EOF, return the name.
pub fn who(addr: SocketAddr) -> Outcome<String> {
    let mut s = connect(addr)?;
    let got = read_all(&mut s, 64, Instant::now() + Duration::from_secs(5))
        .map_err(e2s("read server name"))?;
    Ok(String::from_utf8_lossy(&got).trim().to_string())
}

/// [`who`] from a chosen source address.
pub fn who_from(src: IpAddr, addr: SocketAddr) -> Outcome<String> {
    let mut s = connect_from(src, addr)?;
    let got = read_all(&mut s, 64, Instant::now() + Duration::from_secs(5))
        .map_err(e2s("read server name"))?;
    Ok(String::from_utf8_lossy(&got).trim().to_string())
}

/// A connection held open on a [`Backend::ident_hold`] server.
pub struct Held {
    pub server: String,
    stream: TcpStream,
}

impl Held {
    pub fn open(addr: SocketAddr) -> Outcome<Held> {
        let mut stream = connect(addr)?;
        let server = read_line(&mut stream, Instant::now() + Duration::from_secs(5))
            .map_err(e2s("read server name"))?;
        Ok(Held { server, stream })
    }

    /// Closes gracefully and waits until the whole path is closed (the server's EOF comes back).
    pub fn close(mut self) -> Outcome {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(e2s("timeout"))?;
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(e2s("shutdown"))?;
        let (end, _) = read_until_end(&mut self.stream, Instant::now() + Duration::from_secs(5));
        expect_eq("end of held connection", end, ReadEnd::Eof)
    }
}

/// A writer that sleeps `pause` once, when `at` bytes have gone through it.
struct PauseOnce<'a, W: Write> {
    inner: &'a mut W,
    at: u64,
    pause: Duration,
    written: u64,
}

impl<W: Write> Write for PauseOnce<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let before = self.written;
        // Never write across the pause point.
        let room = if before < self.at {
            (self.at - before).min(buf.len() as u64) as usize
        } else {
            buf.len()
        };
        let n = self.inner.write(&buf[..room])?;
        self.written += n as u64;
        if before < self.at && self.written >= self.at && !self.pause.is_zero() {
            std::thread::sleep(self.pause);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
