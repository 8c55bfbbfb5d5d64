//! What the binary upgrade tests (`tests/upgrade.rs`) share: the old process's configuration,
//! the 64 MiB flow and the held echo flows that must survive the upgrade, and the connect loop
//! that runs across it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::data::{recv_to_eof, stream_summary, DataStream, Summary};
use super::scenarios::connect;
use super::servers::{Backend, FlowHeader, HalfClose};
use super::{kernel, DEFAULTS};

/// The 64 MiB flow: 32 MiB up before the upgrade, 32 MiB after, then 64 MiB down.
pub const BIG: u64 = 64 << 20;
pub const HELD_ECHO: u64 = 200;
/// How long a test may hold its flows open, idle, across an upgrade (each wait it makes is
/// bounded; on a loaded machine they add up past a minute): the flows' own deadline, the
/// backends' idle timeout ([`super::servers::Backend::echo_idle`]) and lb's `timeout client`
/// and `timeout server`, so that none of them ends a held flow first.
pub const HOLD: Duration = Duration::from_mins(3);
/// Bytes each held echo flow exchanges before and after the upgrade.
pub const ECHO_CHUNK: usize = 4096;

/// A runtime API socket path of its own (pid + counter: tests run at once).
pub fn socket_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("lb-upgrade-{}-{n}.sock", std::process::id()))
}

/// Two frontends (flow protocol on `ports.0`, echo on `ports.1`) and a runtime API socket.
pub fn config(
    sock: &std::path::Path,
    socket_opts: &str,
    hard_stop: &str,
    ports: (u16, u16),
    flow: &Backend,
    echo: &Backend,
) -> String {
    let defaults = DEFAULTS.replace("60s", &format!("{}s", HOLD.as_secs()));
    format!(
        "global\n    stats socket {} level admin {socket_opts}\n{hard_stop}\n{defaults}\n\
         frontend big\n    bind 127.0.0.1:{}\n    default_backend flows\n\n\
         frontend echo\n    bind 127.0.0.1:{}\n    default_backend echoes\n\n\
         backend flows\n    server f {}\n\nbackend echoes\n    server e {}\n",
        sock.display(),
        ports.0,
        ports.1,
        flow.addr,
        echo.addr
    )
}

/// Blocks until `go`, bounded by `deadline`.
pub fn wait_go(go: &AtomicBool, deadline: Instant, what: &str) -> Result<(), String> {
    while !go.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err(format!("{what}: never told to go on"));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The 64 MiB flow: half its upload, a wait for `go`, the rest, then the whole download; the
/// sink's summary of the upload is checked by the caller.
pub fn big_flow(addr: SocketAddr, held: &AtomicU64, go: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + HOLD;
    let h = FlowHeader {
        id: 0,
        order: HalfClose::ClientFirst,
        up: BIG,
        down: BIG,
    };
    let mut s = connect(addr)?;
    s.write_all(&h.encode())
        .map_err(|e| format!("big flow: header: {e}"))?;
    let mut data = DataStream::new(h.up_seed());
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < h.up {
        if sent == h.up / 2 {
            held.fetch_add(1, Ordering::SeqCst);
            wait_go(go, deadline, "big flow")?;
        }
        let n = (h.up / 2 - sent % (h.up / 2)).min(buf.len() as u64) as usize;
        data.fill(&mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("big flow: write at {sent}: {e}"))?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("big flow: shutdown: {e}"))?;
    let got = recv_to_eof(&mut s, deadline).map_err(|e| format!("big flow: read: {e}"))?;
    let want = stream_summary(h.down_seed(), h.down);
    if got != want {
        return Err(format!("big flow: download {got:?}, want {want:?}"));
    }
    Ok(())
}

/// One exchange of a held echo flow: `ECHO_CHUNK` bytes of stream `seed` out and back.
pub fn echo_round(
    s: &mut TcpStream,
    data: &mut DataStream,
    id: u64,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut out = vec![0u8; ECHO_CHUNK];
    data.fill(&mut out);
    s.write_all(&out)
        .map_err(|e| format!("echo {id}: write: {e}"))?;
    let mut back = vec![0u8; ECHO_CHUNK];
    s.read_exact(&mut back)
        .map_err(|e| format!("echo {id}: read: {e}"))?;
    Ok((out, back))
}

/// A held echo flow: a round before the upgrade, a wait for `go`, a round after, then a
/// half-close answered by the echo's EOF; SHA-256 of all sent and all received must match.
pub fn echo_flow(
    addr: SocketAddr,
    id: u64,
    held: &AtomicU64,
    go: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + HOLD;
    let mut s = connect(addr)?;
    let mut data = DataStream::new(0xEC40 + id);
    let (mut sent, mut got) = echo_round(&mut s, &mut data, id)?;
    held.fetch_add(1, Ordering::SeqCst);
    wait_go(go, deadline, "echo flow")?;
    let (o, b) = echo_round(&mut s, &mut data, id)?;
    sent.extend(o);
    got.extend(b);
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("echo {id}: shutdown: {e}"))?;
    let rest = recv_to_eof(&mut s, deadline).map_err(|e| format!("echo {id}: read to EOF: {e}"))?;
    if rest.len != 0 {
        return Err(format!(
            "echo {id}: {} bytes after the last round",
            rest.len
        ));
    }
    let (sent, got) = (Summary::of(&sent), Summary::of(&got));
    if sent != got {
        return Err(format!("echo {id}: sent {sent:?}, echoed {got:?}"));
    }
    Ok(())
}

/// Where an upgrade stands, as the connect loop counts it (an `AtomicUsize` the test sets):
/// the new process not yet started, the move (from its start until the old one has exited),
/// and after.
pub const BEFORE: usize = 0;
pub const MOVING: usize = 1;
pub const AFTER: usize = 2;

/// What the connect loop saw.
#[derive(Debug, Default)]
pub struct LoopTally {
    pub ok: u64,
    /// Good connections that were open at some time of each phase ([`BEFORE`], [`MOVING`],
    /// [`AFTER`]): one open across a change counts in both.
    pub ok_in: [u64; 3],
    pub refused: u64,
    pub reset: u64,
    pub other: Vec<String>,
    /// Of `other`, the connections whose echo did not come in time: their index there and
    /// when their bytes went in.
    pub late: Vec<(usize, f64)>,
}

impl LoopTally {
    /// Takes out of `other` the late echoes whose bytes went in while the kernel's workers
    /// were stuck ([`kernel::stall_at`]): the kernel's, not lb's. Returns each with the
    /// kernel's evidence, for the test's output.
    pub fn excuse_kernel_stalls(&mut self, works: Option<&kernel::PsockWorks>) -> Vec<String> {
        let mut excused = Vec::new();
        let mut gone = Vec::new();
        for &(i, at) in &self.late {
            if let Some(report) = kernel::stall_at(at, works) {
                excused.push(format!("{}\n  the kernel then: {report}", self.other[i]));
                gone.push(i);
            }
        }
        let mut i = 0;
        self.other.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
        self.late.clear();
        excused
    }
}

/// Sets `phase` to [`AFTER`] once process `pid` has exited (a zombie not yet reaped, or
/// gone), checking every 5 ms until `stop` or 3 minutes.
pub fn mark_exit(pid: u32, phase: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_mins(3);
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            // The state follows the command's closing parenthesis.
            let exited = state.as_deref().is_none_or(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with(['Z', 'X']))
            });
            if exited {
                phase.store(AFTER, Ordering::SeqCst);
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Connects, exchanges 16 bytes with the echo backend and closes, until `stop`, at most
/// 50,000 times or 60 s, counting the good ones in each `phase` they were open in. A connection that fails is told with its client port, the time of
/// each step since the loop began, and what the kernel holds of it then (`ss`: which process
/// has its other end, what waits in which queue).
pub fn connect_loop(
    addr: SocketAddr,
    stop: &AtomicBool,
    done: &AtomicU64,
    phase: &AtomicUsize,
) -> LoopTally {
    let mut t = LoopTally::default();
    let start = Instant::now();
    let end = start + Duration::from_mins(1);
    for i in 0..50_000u64 {
        if stop.load(Ordering::SeqCst) || Instant::now() > end {
            break;
        }
        let began_in = phase.load(Ordering::SeqCst).min(AFTER);
        let mut steps = Steps::new(start);
        let r = (|| -> std::io::Result<bool> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            steps.port = s.local_addr().map_or(0, |a| a.port());
            steps.at("connected");
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let msg = i.to_le_bytes().repeat(2);
            s.write_all(&msg)?;
            steps.at("written");
            let mut back = [0u8; 16];
            if let Err(e) = s.read_exact(&mut back) {
                steps.at("read failed");
                steps.kernel = kernel_view(steps.port, addr.port());
                steps.at(late_answer(&mut s));
                return Err(e);
            }
            Ok(back[..] == msg[..])
        })();
        match r {
            Ok(true) => {
                t.ok += 1;
                let ended_in = phase.load(Ordering::SeqCst).clamp(began_in, AFTER);
                for n in &mut t.ok_in[began_in..=ended_in] {
                    *n += 1;
                }
            }
            Ok(false) => t
                .other
                .push(format!("connection {i}: echo differs ({steps})")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => t.refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                t.reset += 1;
                t.other.push(format!("connection {i}: {e} ({steps})"));
            }
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    t.late.push((t.other.len(), steps.wall.as_secs_f64()));
                }
                t.other.push(format!("connection {i}: {e} ({steps})"));
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
    t
}

/// When each step of one connection of the loop happened (ms since the loop began, and the
/// wall clock of the first, to set beside lb's log), and what the kernel held of it when it
/// failed.
struct Steps {
    start: Instant,
    began: Duration,
    wall: Duration,
    port: u16,
    marks: Vec<(&'static str, Duration)>,
    kernel: String,
}

impl Steps {
    fn new(start: Instant) -> Steps {
        Steps {
            start,
            began: start.elapsed(),
            wall: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
            port: 0,
            marks: Vec::new(),
            kernel: String::new(),
        }
    }

    fn at(&mut self, what: &'static str) {
        self.marks.push((what, self.start.elapsed()));
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client port {}, began at {:.3} s (unix {:.3})",
            self.port,
            self.began.as_secs_f64(),
            self.wall.as_secs_f64()
        )?;
        for (what, when) in &self.marks {
            write!(f, ", {what} at {:.3} s", when.as_secs_f64())?;
        }
        if !self.kernel.is_empty() {
            write!(f, "\nthe kernel's view then:\n{}", self.kernel)?;
        }
        Ok(())
    }
}

/// What came on a connection that had no answer in time, within [`LATE`] more: late (a
/// loaded machine) or never (lost). A failure either way; this only tells which.
fn late_answer(s: &mut TcpStream) -> &'static str {
    let mut buf = [0u8; 16];
    if s.set_read_timeout(Some(LATE)).is_err() {
        return "no second read";
    }
    match s.read(&mut buf) {
        Ok(0) => "EOF after the timeout",
        Ok(_) => "echo late, after the timeout",
        Err(_) => "still nothing after 10 s more",
    }
}

/// How long a failed connection of the loop waits more for its answer (see [`late_answer`]).
const LATE: Duration = Duration::from_secs(10);

/// `ss` on the sockets of client port `port` to `lb_port` (both ends: the server end names the
/// process that holds it, if any; no process means it waits in an accept queue).
fn kernel_view(port: u16, lb_port: u16) -> String {
    let filter = format!("( sport = :{port} or dport = :{port} or sport = :{lb_port} )");
    match std::process::Command::new("ss")
        .args(["-tanpieomH", &filter])
        .output()
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(&format!(":{port} ")) || l.contains("LISTEN"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("ss: {e}"),
    }
}
