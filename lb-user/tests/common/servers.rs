//! In-process backend servers on threads (`std::net`, blocking). Each listens on `127.0.0.1:0`,
//! serves every connection on its own thread with socket timeouts (a broken lb makes a test
//! fail, never hang), counts connections (accepted, current, highest concurrent) and keeps a
//! journal of what each connection saw, for the test to compare with the client's view.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use super::data::{
    ctx, read_line, read_until_end, recv_to_eof, send_stream, ReadEnd, Summary, CHUNK, REPLY_SEED,
};

/// Read/write timeout on every socket the backends accept.
pub const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest any backend connection may live.
pub const SERVER_CONN_DEADLINE: Duration = Duration::from_mins(5);
/// Stack of connection threads: they keep their buffers on the heap.
const CONN_STACK: usize = 256 * 1024;

/// What one backend connection reported. `key` is the connection's accept sequence number
/// (0, 1, 2, ... in accept order) unless the protocol carries its own id (flows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Everything the connection read up to EOF.
    Received { key: u64, sum: Summary },
    /// Everything the connection wrote before shutting down its write side.
    Sent { key: u64, sum: Summary },
    /// An id the client sent (queue test).
    Id { key: u64, id: String },
    /// How the connection's read side ended.
    ReadEnded { key: u64, end: ReadEnd },
    /// The handler failed.
    Error { key: u64, msg: String },
}

#[derive(Default)]
struct Shared {
    accepted: AtomicU64,
    current: AtomicU64,
    max_current: AtomicU64,
    notes: Mutex<Vec<Note>>,
    changed: Condvar,
}

impl Shared {
    fn note(&self, n: Note) {
        self.notes.lock().unwrap().push(n);
        self.changed.notify_all();
    }
}

/// One connection as a handler sees it.
pub struct Conn {
    /// Accept order, from 0.
    pub seq: u64,
    /// When the connection must be finished.
    pub deadline: Instant,
    shared: Arc<Shared>,
    released: AtomicBool,
}

impl Conn {
    pub fn note(&self, n: Note) {
        self.shared.note(n);
    }

    /// Stops counting this connection in `current()` before the handler returns. A handler
    /// calls it before the last thing that lets lb free the connection's slot (its answer), so
    /// `max_current()` cannot count an old connection still winding down together with the
    /// next one lb was entitled to open. Called again when the handler returns; once counts.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.shared.current.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

type Handler = dyn Fn(&mut TcpStream, &Conn) -> io::Result<()> + Send + Sync;

/// A backend server. Stops accepting when dropped; connection threads end by themselves
/// (their protocol, their socket timeouts, or [`SERVER_CONN_DEADLINE`]).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

/// A listener on 127.0.0.1 with an OS-chosen port and a backlog large enough for 200
/// simultaneous connects (std's `TcpListener::bind` uses 128).
pub fn listener() -> TcpListener {
    listener_at("127.0.0.1:0".parse().unwrap())
}

/// A listener on `addr` (port 0: chosen by the OS) with [`listener`]'s backlog.
pub fn listener_at(addr: SocketAddr) -> TcpListener {
    bind_listen(addr, 1024)
}

/// A listener on 127.0.0.1 with an OS-chosen port and `backlog` (capped by
/// `net.core.somaxconn`).
pub fn listener_with_backlog(backlog: i32) -> TcpListener {
    bind_listen("127.0.0.1:0".parse().unwrap(), backlog)
}

fn bind_listen(addr: SocketAddr, backlog: i32) -> TcpListener {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.listen(backlog).expect("listen");
    s.into()
}

/// An address where nothing listens: connects get ECONNREFUSED. The port stays bound (without
/// `listen`) for the life of the test process, so no other socket can take it: neither a
/// listener of another test nor, through the kernel's choice of a source port, a connect to it,
/// which on loopback would be a TCP self-connect that succeeds instead of being refused.
pub fn refusing_addr() -> SocketAddr {
    static HELD: Mutex<Vec<Socket>> = Mutex::new(Vec::new());
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let a = s.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(s);
    a
}

impl Backend {
    /// A backend whose connections are served by `handler`.
    pub fn spawn<F>(name: &str, handler: F) -> Backend
    where
        F: Fn(&mut TcpStream, &Conn) -> io::Result<()> + Send + Sync + 'static,
    {
        Backend::spawn_on(listener(), name, handler)
    }

    /// A backend on listener `l` whose connections are served by `handler`.
    pub fn spawn_on<F>(l: TcpListener, name: &str, handler: F) -> Backend
    where
        F: Fn(&mut TcpStream, &Conn) -> io::Result<()> + Send + Sync + 'static,
    {
        let addr = l.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let (shared, stop, name) = (shared.clone(), stop.clone(), name.to_string());
            thread::Builder::new()
                .name(format!("be-{name}"))
                .spawn(move || accept_loop(&l, &name, &shared, &stop, &handler))
                .expect("spawn accept thread")
        };
        Backend {
            name: name.to_string(),
            addr,
            shared,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// Stops accepting: the listening socket closes (new connects are refused), connections
    /// already accepted go on, and what they noted stays readable.
    pub fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections being served now.
    pub fn current(&self) -> u64 {
        self.shared.current.load(Ordering::SeqCst)
    }

    /// Highest number of connections served at the same time.
    pub fn max_current(&self) -> u64 {
        self.shared.max_current.load(Ordering::SeqCst)
    }

    pub fn notes(&self) -> Vec<Note> {
        self.shared.notes.lock().unwrap().clone()
    }

    /// Handler failures so far, as text.
    pub fn errors(&self) -> Vec<String> {
        self.notes()
            .into_iter()
            .filter_map(|n| match n {
                Note::Error { key, msg } => Some(format!("{} conn {key}: {msg}", self.name)),
                _ => None,
            })
            .collect()
    }

    /// Waits until `pick` finds something in the journal, or `timeout` passes.
    pub fn wait_note<T>(
        &self,
        timeout: Duration,
        pick: impl Fn(&[Note]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut notes = self.shared.notes.lock().unwrap();
        loop {
            if let Some(t) = pick(&notes) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            notes = self
                .shared
                .changed
                .wait_timeout(notes, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits until flow `id` reached this [`Backend::flow`] server (its header was read).
    pub fn wait_flow(&self, id: u64, timeout: Duration) -> bool {
        self.wait_note(timeout, |notes| {
            notes
                .iter()
                .any(|n| matches!(n, Note::Id { key, id: what } if *key == id && what == "flow"))
                .then_some(())
        })
        .is_some()
    }

    /// Waits for the `Sent` note of connection `key`.
    pub fn wait_sent(&self, key: u64, timeout: Duration) -> Option<Summary> {
        self.wait_note(timeout, |ns| {
            ns.iter().find_map(|n| match n {
                Note::Sent { key: k, sum } if *k == key => Some(*sum),
                _ => None,
            })
        })
    }

    /// Waits for the `Received` note of connection `key`.
    pub fn wait_received(&self, key: u64, timeout: Duration) -> Option<Summary> {
        self.wait_note(timeout, |ns| {
            ns.iter().find_map(|n| match n {
                Note::Received { key: k, sum } if *k == key => Some(*sum),
                _ => None,
            })
        })
    }

    /// Waits until `current() == n`.
    pub fn wait_current(&self, n: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.current() == n)
    }

    /// Echo: writes back everything it reads; passes the client's EOF on as its own.
    pub fn echo(name: &str) -> Backend {
        Backend::echo_on(listener(), name)
    }

    /// [`Backend::echo`] on listener `l`.
    pub fn echo_on(l: TcpListener, name: &str) -> Backend {
        Backend::spawn_on(l, name, echo_conn)
    }

    /// [`Backend::echo`] whose connections may wait `idle` for a byte (instead of
    /// [`SERVER_IO_TIMEOUT`]): for flows a test holds open longer.
    pub fn echo_idle(name: &str, idle: Duration) -> Backend {
        Backend::spawn(name, move |s, c| {
            set_idle(s, idle)?;
            echo_conn(s, c)
        })
    }

    /// Sink: reads to EOF, notes `Received`, then replies with the 40-byte summary of what it got
    /// (see [`Summary::to_wire`]) followed by `extra` bytes of stream [`REPLY_SEED`], and closes.
    pub fn sink(name: &str, extra: u64) -> Backend {
        Backend::spawn(name, move |s, c| {
            let got = recv_to_eof(s, c.deadline)?;
            c.note(Note::Received {
                key: c.seq,
                sum: got,
            });
            s.write_all(&got.to_wire())
                .map_err(|e| ctx(&e, "sink reply"))?;
            let sent = send_stream(s, REPLY_SEED, extra, c.deadline)?;
            c.note(Note::Sent {
                key: c.seq,
                sum: sent,
            });
            s.shutdown(Shutdown::Write)
        })
    }

    /// Source: at once writes `len` bytes of stream `seed`, notes `Sent`, shuts its write side,
    /// then reads to EOF and notes `Received` (so it also serves server-first half-close tests).
    pub fn source(name: &str, len: u64, seed: u64) -> Backend {
        Backend::spawn(name, move |s, c| {
            let sent = send_stream(s, seed, len, c.deadline)?;
            c.note(Note::Sent {
                key: c.seq,
                sum: sent,
            });
            s.shutdown(Shutdown::Write)
                .map_err(|e| ctx(&e, "source shutdown"))?;
            let got = recv_to_eof(s, c.deadline)?;
            c.note(Note::Received {
                key: c.seq,
                sum: got,
            });
            Ok(())
        })
    }

    /// Identifies itself: writes `NAME\n`, shuts its write side, reads to EOF (the client closes).
    pub fn ident(name: &str) -> Backend {
        let line = format!("{name}\n");
        Backend::spawn(name, move |s, c| {
            s.write_all(line.as_bytes())?;
            s.shutdown(Shutdown::Write)?;
            read_until_end(s, c.deadline);
            Ok(())
        })
    }

    /// Identifies itself (`NAME\n`) and then holds the connection open until the client closes
    /// it; `current()` counts the held connections (maxconn, leastconn, first).
    pub fn ident_hold(name: &str) -> Backend {
        let line = format!("{name}\n");
        Backend::spawn(name, move |s, c| {
            s.write_all(line.as_bytes())?;
            read_until_end(s, c.deadline);
            Ok(())
        })
    }

    /// Queue probe: reads the client's id line, notes `Id`, holds the connection for `hold`,
    /// leaves `current()` (see [`Conn::release`]), answers `ok ID\n`, shuts write and reads to
    /// EOF.
    pub fn queue_probe(name: &str, hold: Duration) -> Backend {
        Backend::spawn(name, move |s, c| {
            let id = read_line(s, c.deadline)?;
            c.note(Note::Id {
                key: c.seq,
                id: id.clone(),
            });
            thread::sleep(hold);
            c.release();
            s.write_all(format!("ok {id}\n").as_bytes())?;
            s.shutdown(Shutdown::Write)?;
            read_until_end(s, c.deadline);
            Ok(())
        })
    }

    /// Reset probe: writes `ready\n`, then reads. A byte `R` makes it reset the connection
    /// (`SO_LINGER` 0, close); otherwise it notes how its read side ended (`ReadEnded`).
    pub fn reset_probe(name: &str) -> Backend {
        Backend::spawn(name, |s, c| {
            s.write_all(b"ready\n")?;
            let mut b = [0u8; 1];
            let end = loop {
                match s.read(&mut b) {
                    Ok(0) => break ReadEnd::Eof,
                    Ok(_) if b[0] == b'R' => {
                        SockRef::from(&*s).set_linger(Some(Duration::ZERO))?;
                        return Ok(()); // the caller drops the socket: RST
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break ReadEnd::Reset,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break ReadEnd::StillOpen
                    }
                    Err(e) => break ReadEnd::Other(e.kind()),
                }
            };
            c.note(Note::ReadEnded { key: c.seq, end });
            Ok(())
        })
    }

    /// Serves the flow protocol of [`super::scenarios::flow`]: a header says the flow id, the
    /// half-close order and both sizes. Notes `Received`/`Sent` keyed by the flow id.
    pub fn flow(name: &str) -> Backend {
        Backend::flow_on(listener(), name)
    }

    /// [`Backend::flow`] on listener `l`. A connection closed before any byte (a health check's
    /// connect) is no flow and no error.
    pub fn flow_on(l: TcpListener, name: &str) -> Backend {
        Backend::spawn_on(l, name, flow_conn)
    }

    /// [`Backend::flow`] whose connections may wait `idle` for a byte (instead of
    /// [`SERVER_IO_TIMEOUT`]): for flows a test holds open longer.
    pub fn flow_idle(name: &str, idle: Duration) -> Backend {
        Backend::spawn(name, move |s, c| {
            set_idle(s, idle)?;
            flow_conn(s, c)
        })
    }
}

/// Sets a connection's read and write timeouts to `idle`.
fn set_idle(s: &TcpStream, idle: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(idle))?;
    s.set_write_timeout(Some(idle))
}

/// [`Backend::echo`]'s connection.
fn echo_conn(s: &mut TcpStream, c: &Conn) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if Instant::now() > c.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "echo deadline"));
        }
        let n = s.read(&mut buf).map_err(|e| ctx(&e, "echo read"))?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).map_err(|e| ctx(&e, "echo write"))?;
    }
    s.shutdown(Shutdown::Write)
}

/// [`Backend::flow`]'s connection.
fn flow_conn(s: &mut TcpStream, c: &Conn) -> io::Result<()> {
    let mut hdr = [0u8; FlowHeader::LEN];
    if s.read(&mut hdr[..1]).map_err(|e| ctx(&e, "flow header"))? == 0 {
        return Ok(());
    }
    s.read_exact(&mut hdr[1..])
        .map_err(|e| ctx(&e, "flow header"))?;
    let h = FlowHeader::decode(&hdr);
    let (id, deadline) = (h.id, c.deadline);
    // The flow reached this server (see `wait_flow`).
    c.note(Note::Id {
        key: id,
        id: "flow".to_owned(),
    });
    match h.order {
        HalfClose::ClientFirst => {
            let got = recv_to_eof(s, deadline)?;
            c.note(Note::Received { key: id, sum: got });
            let sent = send_stream(s, h.down_seed(), h.down, deadline)?;
            c.note(Note::Sent { key: id, sum: sent });
            s.shutdown(Shutdown::Write)?;
        }
        HalfClose::ServerFirst => {
            let sent = send_stream(s, h.down_seed(), h.down, deadline)?;
            c.note(Note::Sent { key: id, sum: sent });
            s.shutdown(Shutdown::Write)?;
            let got = recv_to_eof(s, deadline)?;
            c.note(Note::Received { key: id, sum: got });
        }
        HalfClose::Both => {
            let mut w = s.try_clone()?;
            let writer = thread::Builder::new().stack_size(CONN_STACK).spawn(
                move || -> io::Result<Summary> {
                    let sent = send_stream(&mut w, h.down_seed(), h.down, deadline)?;
                    w.shutdown(Shutdown::Write)?;
                    Ok(sent)
                },
            )?;
            let got = recv_to_eof(s, deadline);
            let sent = writer.join().expect("flow writer panicked")?;
            c.note(Note::Sent { key: id, sum: sent });
            c.note(Note::Received { key: id, sum: got? });
        }
    }
    Ok(())
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    l: &TcpListener,
    name: &str,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
    handler: &Arc<Handler>,
) {
    let mut seq = 0u64;
    loop {
        let accepted = l.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((mut s, _peer)) = accepted else {
            continue;
        };
        let conn = Conn {
            seq,
            deadline: Instant::now() + SERVER_CONN_DEADLINE,
            shared: shared.clone(),
            released: AtomicBool::new(false),
        };
        seq += 1;
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let now = shared.current.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_current.fetch_max(now, Ordering::SeqCst);
        let handler = handler.clone();
        let spawned = thread::Builder::new()
            .name(format!("be-{name}-{}", conn.seq))
            .stack_size(CONN_STACK)
            .spawn(move || {
                let r = s
                    .set_read_timeout(Some(SERVER_IO_TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(SERVER_IO_TIMEOUT)))
                    .and_then(|()| handler(&mut s, &conn));
                drop(s);
                if let Err(e) = r {
                    conn.note(Note::Error {
                        key: conn.seq,
                        msg: e.to_string(),
                    });
                }
                conn.release();
            });
        if let Err(e) = spawned {
            shared.current.fetch_sub(1, Ordering::SeqCst);
            shared.note(Note::Error {
                key: seq - 1,
                msg: format!("spawn: {e}"),
            });
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Who shuts its write side first in a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfClose {
    /// The client sends everything and shuts write; only then does the server send.
    ClientFirst,
    /// The server sends everything and shuts write; only then does the client send.
    ServerFirst,
    /// Both send at the same time and shut write when done.
    Both,
}

/// The header a flow client sends first: id, order, bytes up (client→server), bytes down.
#[derive(Clone, Copy, Debug)]
pub struct FlowHeader {
    pub id: u64,
    pub order: HalfClose,
    pub up: u64,
    pub down: u64,
}

impl FlowHeader {
    pub const LEN: usize = 25;

    pub fn up_seed(&self) -> u64 {
        self.id.wrapping_mul(2).wrapping_add(0x1000)
    }

    pub fn down_seed(&self) -> u64 {
        self.id.wrapping_mul(2).wrapping_add(0x1001)
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.id.to_le_bytes());
        b[8] = match self.order {
            HalfClose::ClientFirst => 0,
            HalfClose::ServerFirst => 1,
            HalfClose::Both => 2,
        };
        b[9..17].copy_from_slice(&self.up.to_le_bytes());
        b[17..25].copy_from_slice(&self.down.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::LEN]) -> Self {
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().unwrap());
        Self {
            id: u(0..8),
            order: match b[8] {
                0 => HalfClose::ClientFirst,
                1 => HalfClose::ServerFirst,
                _ => HalfClose::Both,
            },
            up: u(9..17),
            down: u(17..25),
        }
    }
}
