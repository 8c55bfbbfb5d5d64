//! The pieces of the chaos workload: flow servers that can be killed (their connections reset,
//! their listener closed) and started again at the same address, a flow client that checks
//! every byte it gets, a journal of what the servers saw, and the verdict on each flow.
//!
//! The flow protocol is [`super::servers::Backend::flow`]'s (the same header, seeds and
//! half-close orders); both ends here also compare every byte with the stream it must be, so a
//! wrong byte is caught where it arrives, even when a reset follows it, and SHA-256 summaries
//! of both directions are compared end to end.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use socket2::{Domain, SockRef, Socket, Type};

use super::data::{send_stream, DataStream, Rng, Summary, CHUNK};
use super::servers::{Backend, FlowHeader, HalfClose};

/// How often a server connection looks at its kill switch (its socket timeouts).
const KILL_POLL: Duration = Duration::from_millis(100);
/// How long a judge waits for a flow no server has journaled yet.
const ABSENT_GRACE: Duration = Duration::from_millis(50);

/// What the servers saw of one flow (by flow id), whichever server and incarnation got it.
#[derive(Clone, Debug, Default)]
pub struct ServerView {
    /// Servers that read this flow's header (more than one is a flow delivered twice).
    pub servers: Vec<String>,
    /// Everything received, up to a clean EOF.
    pub received: Option<Summary>,
    /// Everything sent, then the write side shut.
    pub sent: Option<Summary>,
    /// The first byte that differed from the stream, or bytes beyond its planned length.
    pub corrupt: Option<String>,
    /// The server was killed while it served the flow (it reset the connection).
    pub killed: bool,
    /// The server's handler has ended.
    pub done: bool,
}

/// The servers' side of every flow, shared by all servers and incarnations.
#[derive(Default)]
pub struct Journal {
    views: Mutex<HashMap<u64, ServerView>>,
    changed: Condvar,
}

impl Journal {
    fn update(&self, id: u64, f: impl FnOnce(&mut ServerView)) {
        f(self.views.lock().unwrap().entry(id).or_default());
        self.changed.notify_all();
    }

    /// Takes flow `id`'s view out of the journal once its server is done with it (waiting up to
    /// `wait`); `None` when no server read its header (within a short grace: the client has
    /// ended, so a server that got the header has it by then).
    pub fn take(&self, id: u64, wait: Duration) -> Option<ServerView> {
        let start = Instant::now();
        let mut views = self.views.lock().unwrap();
        loop {
            let done = views.get(&id).map(|v| v.done);
            let waited = start.elapsed();
            let limit = if done.is_some() { wait } else { ABSENT_GRACE };
            if done == Some(true) || waited >= limit {
                return views.remove(&id);
            }
            views = self
                .changed
                .wait_timeout(views, limit.saturating_sub(waited))
                .unwrap()
                .0;
        }
    }

    /// Views no client has taken (flows a server read after its client was judged).
    pub fn leftovers(&self) -> Vec<(u64, ServerView)> {
        let views = self.views.lock().unwrap();
        views.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// Binds a listener at `addr` with [`super::servers::listener`]'s backlog; `Err` when the
/// address is taken.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A flow server that can be killed and started again at the same address.
pub struct FlowServer {
    pub name: String,
    pub addr: SocketAddr,
    journal: Arc<Journal>,
    live: Option<(Backend, Arc<AtomicBool>)>,
}

impl FlowServer {
    /// A server at `addr` (port 0: chosen by the OS), started.
    pub fn start(name: &str, addr: SocketAddr, journal: &Arc<Journal>) -> io::Result<FlowServer> {
        let l = bind(addr)?;
        let addr = l.local_addr()?;
        let mut s = FlowServer {
            name: name.to_owned(),
            addr,
            journal: journal.clone(),
            live: None,
        };
        s.serve(l);
        Ok(s)
    }

    fn serve(&mut self, l: TcpListener) {
        let killed = Arc::new(AtomicBool::new(false));
        let (journal, name, k) = (self.journal.clone(), self.name.clone(), killed.clone());
        let backend = Backend::spawn_on(l, &self.name, move |s, c| {
            serve_flow(s, c.deadline, &k, &journal, &name)
        });
        self.live = Some((backend, killed));
    }

    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Kills the server as a crash would: every connection is reset (within [`KILL_POLL`]) and
    /// the listener closed (connects are refused, the accept queue is reset).
    pub fn kill(&mut self) {
        if let Some((backend, killed)) = self.live.take() {
            killed.store(true, Ordering::SeqCst);
            drop(backend);
        }
    }

    /// Starts the server again at its address; retries for a while if the address is still
    /// taken. `false` when it could not.
    pub fn restart(&mut self) -> bool {
        if self.live.is_some() {
            return true;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match bind(self.addr) {
                Ok(l) => {
                    self.serve(l);
                    return true;
                }
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(_) => return false,
            }
        }
    }
}

impl Drop for FlowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server connection's stream that gives up when its server is killed: it then resets the
/// connection (`SO_LINGER` 0: the close that follows sends a RST), as a crashed process's
/// sockets with unread data do.
struct Killable<'a> {
    s: &'a mut TcpStream,
    killed: &'a AtomicBool,
    deadline: Instant,
}

impl Killable<'_> {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            let _ = SockRef::from(&*self.s).set_linger(Some(Duration::ZERO));
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "killed"));
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "server deadline"));
        }
        Ok(())
    }

    fn retry<T>(&mut self, mut op: impl FnMut(&mut TcpStream) -> io::Result<T>) -> io::Result<T> {
        loop {
            self.check()?;
            match op(self.s) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                r => return r,
            }
        }
    }
}

impl Read for Killable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.retry(|s| s.read(buf))
    }
}

impl Write for Killable<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(|s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why reading a stream stopped early.
enum RecvError {
    Io(io::Error),
    /// A byte differed from the stream, or more came than planned.
    Corrupt(String),
}

/// Reads to EOF, checking every byte against the first `planned` bytes of stream `seed`.
/// Returns the summary of what came (a prefix of the stream when it is shorter).
fn recv_checked<R: Read>(
    r: &mut R,
    seed: u64,
    planned: u64,
    deadline: Instant,
) -> Result<Summary, (u64, RecvError)> {
    let mut want = DataStream::new(seed);
    let mut expect = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut h = Sha256::new();
    let mut len = 0u64;
    loop {
        if Instant::now() > deadline {
            let e = io::Error::new(io::ErrorKind::TimedOut, "deadline");
            return Err((len, RecvError::Io(e)));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) => return Err((len, RecvError::Io(e))),
        };
        if len + n as u64 > planned {
            let why = format!(
                "{} bytes beyond the planned {planned}",
                len + n as u64 - planned
            );
            return Err((len, RecvError::Corrupt(why)));
        }
        want.fill(&mut expect[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expect[i]) {
            let why = format!("byte {} differs from the stream", len + i as u64);
            return Err((len, RecvError::Corrupt(why)));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Summary {
        len,
        sha: h.finalize().into(),
    })
}

/// Marks the flow done in the journal however the handler ends.
struct DoneGuard<'a> {
    journal: &'a Journal,
    id: Option<u64>,
}

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.journal.update(id, |v| v.done = true);
        }
    }
}

/// One server connection of the flow protocol, journaled; a connection closed before any
/// byte (a health check) is no flow.
fn serve_flow(
    s: &mut TcpStream,
    deadline: Instant,
    killed: &AtomicBool,
    journal: &Journal,
    name: &str,
) -> io::Result<()> {
    s.set_read_timeout(Some(KILL_POLL))?;
    s.set_write_timeout(Some(KILL_POLL))?;
    let mut k = Killable {
        s,
        killed,
        deadline,
    };
    let mut hdr = [0u8; FlowHeader::LEN];
    if k.read(&mut hdr[..1])? == 0 {
        return Ok(());
    }
    k.read_exact(&mut hdr[1..])?;
    let h = FlowHeader::decode(&hdr);
    let mut guard = DoneGuard { journal, id: None };
    journal.update(h.id, |v| v.servers.push(name.to_owned()));
    guard.id = Some(h.id);
    let result = serve_directions(&mut k, &h, journal);
    if killed.load(Ordering::SeqCst) {
        journal.update(h.id, |v| v.killed = true);
    }
    result
}

fn serve_directions(k: &mut Killable<'_>, h: &FlowHeader, journal: &Journal) -> io::Result<()> {
    let deadline = k.deadline;
    let recv = |k: &mut Killable<'_>| -> io::Result<()> {
        match recv_checked(k, h.up_seed(), h.up, deadline) {
            Ok(sum) => {
                journal.update(h.id, |v| v.received = Some(sum));
                Ok(())
            }
            Err((_, RecvError::Io(e))) => Err(e),
            Err((_, RecvError::Corrupt(why))) => {
                journal.update(h.id, |v| v.corrupt = Some(why.clone()));
                Err(io::Error::new(io::ErrorKind::InvalidData, why))
            }
        }
    };
    let send = |k: &mut Killable<'_>| -> io::Result<()> {
        let sum = send_stream(k, h.down_seed(), h.down, deadline)?;
        k.s.shutdown(Shutdown::Write)?;
        journal.update(h.id, |v| v.sent = Some(sum));
        Ok(())
    };
    match h.order {
        HalfClose::ClientFirst => {
            recv(k)?;
            send(k)
        }
        HalfClose::ServerFirst => {
            send(k)?;
            recv(k)
        }
        HalfClose::Both => {
            let mut w = k.s.try_clone()?;
            let killed = k.killed;
            thread::scope(|scope| {
                let writer = scope.spawn(move || {
                    let mut wk = Killable {
                        s: &mut w,
                        killed,
                        deadline,
                    };
                    send(&mut wk)
                });
                let r = recv(k);
                let w = writer.join().expect("flow writer panicked");
                r.and(w)
            })
        }
    }
}

/// How the client's read side ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// A clean EOF.
    Eof,
    /// `ECONNRESET`.
    Reset,
    /// The flow's deadline passed with the connection still open.
    Stalled,
    /// Any other error (connect refused, broken pipe...), as text.
    Error(String),
}

/// What the client saw of one flow.
#[derive(Clone, Debug)]
pub struct ClientView {
    /// Every planned byte written, then the write side shut.
    pub sent_all: Option<Summary>,
    /// Bytes received (each one checked), and their summary.
    pub got: Summary,
    pub end: End,
    /// The first byte that differed from the stream, or bytes beyond its planned length.
    pub corrupt: Option<String>,
}

fn end_of(e: &io::Error) -> End {
    match e.kind() {
        io::ErrorKind::ConnectionReset => End::Reset,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => End::Stalled,
        _ => End::Error(e.to_string()),
    }
}

/// A client stream that moves at most [`PACE_CHUNK`] bytes per call and sleeps `pace` after
/// each: a slow client keeps its flow open long enough for the chaos to hit it mid-way.
struct Paced<'a> {
    s: &'a TcpStream,
    pace: Duration,
    /// When a write first failed, taken as the call returns: a reset's error goes to the first
    /// call that asks, and a reader that asks next sees a clean EOF; which came first is told
    /// by this, not by when the writer's thread next ran.
    write_failed: Option<&'a OnceLock<Instant>>,
}

/// Bytes a paced client moves per call.
const PACE_CHUNK: usize = 16 * 1024;

impl Paced<'_> {
    fn limit(&self, len: usize) -> usize {
        if self.pace.is_zero() {
            len
        } else {
            len.min(PACE_CHUNK)
        }
    }

    fn after(&self) {
        if !self.pace.is_zero() {
            thread::sleep(self.pace);
        }
    }
}

impl Read for Paced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.limit(buf.len());
        let r = (&mut &*self.s).read(&mut buf[..n]);
        self.after();
        r
    }
}

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.limit(buf.len());
        let r = (&mut &*self.s).write(&buf[..n]);
        if let (Err(_), Some(at)) = (&r, self.write_failed) {
            let _ = at.set(Instant::now());
        }
        self.after();
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Records how sending ended. A write that failed before the read side ended is the failure
/// the client saw first, even when its read side then ends in a clean EOF (after a reset, the
/// first call gets `ECONNRESET`, later reads return 0). A clean EOF seen first stays: the
/// client took it for the end of the answer before anything told it otherwise.
fn note_send(view: &mut ClientView, sent: io::Result<Summary>, failed_first: bool) {
    match sent {
        Ok(sum) => view.sent_all = Some(sum),
        Err(e) => {
            if view.end == End::Eof && failed_first {
                view.end = end_of(&e);
            }
        }
    }
}

/// Runs flow `h` through `addr` until `deadline`, checking every byte it gets; `pace` (zero:
/// full speed) slows the client down. On any failure the client resets the connection, so a
/// server never mistakes it for a clean end.
pub fn run_flow(addr: SocketAddr, h: FlowHeader, pace: Duration, deadline: Instant) -> ClientView {
    let mut view = ClientView {
        sent_all: None,
        got: Summary::of(&[]),
        end: End::Error("not connected".to_owned()),
        corrupt: None,
    };
    let s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            view.end = end_of(&e);
            return view;
        }
    };
    let _ = s.set_nodelay(true);
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = s.set_read_timeout(Some(left));
    let _ = s.set_write_timeout(Some(left));
    let write_failed = OnceLock::new();
    let send = |w: &TcpStream| -> io::Result<Summary> {
        (&mut &*w).write_all(&h.encode())?;
        let mut paced = Paced {
            s: w,
            pace,
            write_failed: Some(&write_failed),
        };
        let sum = send_stream(&mut paced, h.up_seed(), h.up, deadline)?;
        w.shutdown(Shutdown::Write)?;
        Ok(sum)
    };
    let recv = |r: &TcpStream, view: &mut ClientView| match recv_checked(
        &mut Paced {
            s: r,
            pace,
            write_failed: None,
        },
        h.down_seed(),
        h.down,
        deadline,
    ) {
        Ok(sum) => {
            view.got = sum;
            view.end = End::Eof;
        }
        Err((len, RecvError::Io(e))) => {
            view.got.len = len;
            view.end = end_of(&e);
        }
        Err((len, RecvError::Corrupt(why))) => {
            view.got.len = len;
            view.corrupt = Some(why);
            view.end = End::Error("corrupt".to_owned());
        }
    };
    match h.order {
        HalfClose::ClientFirst => {
            let sent = send(&s);
            recv(&s, &mut view);
            note_send(&mut view, sent, true);
        }
        HalfClose::ServerFirst => {
            let mut hdr = &s;
            if let Err(e) = hdr.write_all(&h.encode()) {
                view.end = end_of(&e);
            } else {
                recv(&s, &mut view);
                if view.end == End::Eof {
                    let mut paced = Paced {
                        s: &s,
                        pace,
                        write_failed: None,
                    };
                    let sum = send_stream(&mut paced, h.up_seed(), h.up, deadline)
                        .and_then(|sum| s.shutdown(Shutdown::Write).map(|()| sum));
                    note_send(&mut view, sum, false);
                }
            }
        }
        HalfClose::Both => {
            thread::scope(|scope| {
                let writer = scope.spawn(|| {
                    let sent = send(&s);
                    (sent, Instant::now())
                });
                recv(&s, &mut view);
                let read_end = Instant::now();
                let (sent, send_end) = writer.join().expect("flow writer panicked");
                let send_end = write_failed.get().copied().unwrap_or(send_end);
                note_send(&mut view, sent, send_end < read_end);
            });
        }
    }
    if view.end != End::Eof || view.sent_all.is_none() {
        let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    }
    view
}

/// What became of one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both directions complete, both digests equal.
    Complete,
    /// Failed in a way an end sees: a reset, an error, an EOF before the planned length with
    /// no server behind it, or a server killed under it.
    Failed(&'static str),
    /// The client's deadline passed with the connection open.
    Stalled(String),
    /// Wrong bytes, bytes delivered twice, or an end told a clean EOF while bytes were missing.
    Corrupt(String),
}

/// Judges flow `h` from both ends' views (`server`: `None` when no server read its header).
pub fn judge(h: &FlowHeader, c: &ClientView, server: Option<&ServerView>) -> Verdict {
    let flow = format!(
        "flow {} ({:?}, {} up, {} down)",
        h.id, h.order, h.up, h.down
    );
    if let Some(why) = &c.corrupt {
        return Verdict::Corrupt(format!("{flow}: client got wrong bytes: {why}"));
    }
    if let Some(s) = server {
        if let Some(why) = &s.corrupt {
            return Verdict::Corrupt(format!(
                "{flow}: server {:?} got wrong bytes: {why}",
                s.servers
            ));
        }
        if s.servers.len() > 1 {
            return Verdict::Corrupt(format!(
                "{flow}: delivered to several servers {:?}",
                s.servers
            ));
        }
        if let Some(r) = s.received {
            if r.len < h.up {
                return Verdict::Corrupt(format!(
                    "{flow}: server {:?} got a clean EOF after {} of {} bytes (client: {:?})",
                    s.servers, r.len, h.up, c.end
                ));
            }
            if c.sent_all.is_some_and(|sent| sent != r) {
                return Verdict::Corrupt(format!(
                    "{flow}: client sent {:?}, server got {r:?}",
                    c.sent_all
                ));
            }
        }
    }
    match &c.end {
        End::Stalled => return Verdict::Stalled(format!("{flow}: no end by the deadline ({c:?})")),
        End::Reset => return Verdict::Failed("reset"),
        End::Error(_) => return Verdict::Failed("error"),
        End::Eof if c.got.len < h.down => {
            return match server {
                None => Verdict::Failed("closed without a server"),
                Some(s) => Verdict::Corrupt(format!(
                    "{flow}: client got a clean EOF after {} of {} bytes; server {:?} sent {:?}, \
                     killed: {}",
                    c.got.len, h.down, s.servers, s.sent, s.killed
                )),
            };
        }
        End::Eof => {}
    }
    let Some(s) = server else {
        return if h.down == 0 {
            Verdict::Failed("closed without a server")
        } else {
            Verdict::Corrupt(format!(
                "{flow}: client got every byte and no server sent any"
            ))
        };
    };
    if s.sent.is_some_and(|sent| sent != c.got) {
        return Verdict::Corrupt(format!(
            "{flow}: server sent {:?}, client got {:?}",
            s.sent, c.got
        ));
    }
    match (c.sent_all, s.received) {
        (Some(_), Some(_)) => Verdict::Complete,
        (None, _) => Verdict::Failed("send failed"),
        (Some(_), None) if s.killed => Verdict::Failed("server killed before the end"),
        (Some(_), None) => Verdict::Failed("server saw an error"),
    }
}

/// The plan of flow `id`: sizes mostly small, sometimes up to `max` bytes per direction, and a
/// half-close order; deterministic from `rng`.
pub fn plan_flow(id: u64, rng: &mut Rng, max: u64) -> FlowHeader {
    let mut size = || match rng.below(10) {
        0 => 0,
        1..=4 => rng.range(1, 4096),
        5..=7 => rng.range(1, 128 * 1024),
        _ => rng.range(1, max),
    };
    let (up, down) = (size(), size());
    let order = match rng.below(3) {
        0 => HalfClose::ClientFirst,
        1 => HalfClose::ServerFirst,
        _ => HalfClose::Both,
    };
    FlowHeader {
        id,
        order,
        up,
        down,
    }
}
