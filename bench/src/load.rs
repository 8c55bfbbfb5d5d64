//! The load generator and its backends: a sink that checks bulk streams, an echo server, and
//! the four workloads (bulk, connection rate, latency, concurrency). Bulk runs on plain threads
//! and blocking sockets (the least overhead per byte); the rest runs on a small tokio runtime so
//! that 10 000 connections don't need 10 000 threads.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::data::{self, Checker, Verify};
use crate::procfs;
use crate::stats;

/// Size of a request and of an answer in the connection-rate, latency and concurrency workloads.
pub const MSG: usize = 64;

/// Errors of a workload run (the run is recorded as failed; the bench goes on).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Io { what, source }
}

/// What the sink expects of the next streams.
#[derive(Clone, Copy, Debug)]
struct SinkPlan {
    len: u64,
    verify: Verify,
    hash: Option<u64>,
}

/// The bulk sink: reads each connection to EOF, checks it, reports, then closes.
pub struct Sink {
    pub addr: SocketAddr,
    plan: Arc<Mutex<SinkPlan>>,
    results: mpsc::Receiver<Result<u64, String>>,
}

impl Sink {
    /// Listens on a free loopback port; a thread per connection.
    pub fn start() -> Result<Sink, LoadError> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(io("sink: bind"))?;
        let addr = l.local_addr().map_err(io("sink: local_addr"))?;
        let plan = Arc::new(Mutex::new(SinkPlan {
            len: 0,
            verify: Verify::Stamps,
            hash: None,
        }));
        let (tx, results) = mpsc::channel();
        let p = plan.clone();
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                for conn in l.incoming() {
                    let Ok(conn) = conn else { continue };
                    let plan = *p.lock().expect("sink plan lock");
                    let tx = tx.clone();
                    let _ = std::thread::Builder::new()
                        .name("sink-conn".into())
                        .spawn(move || {
                            let r = receive(conn, plan);
                            let _ = tx.send(r);
                        });
                }
            })
            .map_err(io("sink: thread"))?;
        Ok(Sink {
            addr,
            plan,
            results,
        })
    }
}

fn receive(mut conn: TcpStream, plan: SinkPlan) -> Result<u64, String> {
    let _ = conn.set_read_timeout(Some(Duration::from_mins(1)));
    let mut buf = vec![0u8; data::BLOCK];
    let mut check = Checker::new(plan.verify);
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match conn.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("sink: read after {} bytes: {e}", check.bytes)),
            }
        }
        if filled > 0 {
            check.block(&buf[..filled]);
        }
        if filled < buf.len() {
            break;
        }
    }
    check.finish(plan.len, plan.hash)
}

/// One bulk measurement.
#[derive(Clone, Copy, Debug)]
pub struct BulkSample {
    pub gbit_s: f64,
    pub cpu_s_per_gib: f64,
}

/// Sends `total` bytes split over `streams` connections to `addr` (which forwards to `sink`);
/// done when the sink has checked every stream.
pub fn bulk(
    sink: &Sink,
    addr: SocketAddr,
    streams: usize,
    total: u64,
    verify: Verify,
) -> Result<BulkSample, LoadError> {
    let per = total / streams as u64;
    let hash = (verify == Verify::Full).then(|| data::expected_hash(per));
    *sink.plan.lock().expect("sink plan lock") = SinkPlan {
        len: per,
        verify,
        hash,
    };
    while sink.results.try_recv().is_ok() {} // anything left from an earlier failure
    let cpu0 = procfs::cpu_times()?;
    let t0 = Instant::now();
    let senders: Vec<_> = (0..streams)
        .map(|_| std::thread::spawn(move || send_stream(addr, per)))
        .collect();
    let deadline = t0 + Duration::from_mins(2);
    let mut errors = Vec::new();
    for _ in 0..streams {
        let left = deadline.saturating_duration_since(Instant::now());
        match sink.results.recv_timeout(left) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => {
                errors.push("sink: not every stream arrived within 120 s".into());
                break;
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = procfs::cpu_times()?;
    for s in senders {
        match s.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("sender thread panicked".into()),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Failed(errors.join("; ")));
    }
    let moved = per * streams as u64;
    Ok(BulkSample {
        gbit_s: stats::gbit_per_s(moved, elapsed),
        cpu_s_per_gib: stats::cpu_s_per_gib(cpu0.busy_seconds_until(cpu1), moved),
    })
}

fn send_stream(addr: SocketAddr, len: u64) -> Result<(), LoadError> {
    let mut s = TcpStream::connect(addr).map_err(io(format!("bulk: connect {addr}")))?;
    let _ = s.set_write_timeout(Some(Duration::from_mins(1)));
    let _ = s.set_read_timeout(Some(Duration::from_mins(1)));
    let mut block = data::pattern();
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        data::make_block(&mut block, i);
        let n = left.min(data::BLOCK as u64) as usize;
        s.write_all(&block[..n])
            .map_err(io(format!("bulk: write at byte {}", len - left)))?;
        left -= n as u64;
        i += 1;
    }
    s.shutdown(Shutdown::Write).map_err(io("bulk: shutdown"))?;
    // The sink closes once it has read everything; wait for that to pass back.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .map_err(io("bulk: waiting for the sink's close"))?;
    Ok(())
}

/// The echo backend: answers every byte with itself, counts live connections.
pub struct Echo {
    pub addr: SocketAddr,
    live: Arc<AtomicUsize>,
}

impl Echo {
    /// Listens on a free loopback port, on `rt`.
    pub fn start(rt: &tokio::runtime::Handle) -> Result<Echo, LoadError> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(io("echo: socket"))?;
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        sock.bind(&any.into()).map_err(io("echo: bind"))?;
        // Concurrency opens thousands of connections at once.
        sock.listen(8192).map_err(io("echo: listen"))?;
        sock.set_nonblocking(true)
            .map_err(io("echo: nonblocking"))?;
        let std_l: TcpListener = sock.into();
        let addr = std_l.local_addr().map_err(io("echo: local_addr"))?;
        let live = Arc::new(AtomicUsize::new(0));
        let l = {
            let _g = rt.enter();
            tokio::net::TcpListener::from_std(std_l).map_err(io("echo: register"))?
        };
        let lv = live.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await; // EMFILE: back off
                    continue;
                };
                let _ = c.set_nodelay(true);
                let lv = lv.clone();
                lv.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    lv.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Echo { addr, live })
    }

    /// Connections open at the echo server now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// A loopback source address for client connection `n` of run `epoch`: spread over 127.0.0.0/8
/// so that `TIME_WAIT` left by one run never limits the next (each address has its own ports).
pub fn source_ip(epoch: u32, n: u64) -> Ipv4Addr {
    let a = 10 + (epoch % 240) as u8;
    let n = n % (250 * 250);
    Ipv4Addr::new(127, a, (n / 250) as u8 + 1, (n % 250) as u8 + 1)
}

/// A client socket bound to `src` with the port left to `connect` (`IP_BIND_ADDRESS_NO_PORT`),
/// so ports are picked per destination and don't run out at bind time.
fn client_socket(src: Ipv4Addr) -> std::io::Result<tokio::net::TcpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let one: libc::c_int = 1;
    // SAFETY: valid fd, pointer to a c_int living across the call, matching length.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    let std_s: TcpStream = s.into();
    Ok(tokio::net::TcpSocket::from_std_stream(std_s))
}

/// Connect, one request, one answer (checked), close.
async fn one_exchange(src: Ipv4Addr, addr: SocketAddr, msg: [u8; MSG]) -> Result<(), String> {
    let t = Duration::from_secs(5);
    let sock = client_socket(src).map_err(|e| format!("socket: {e}"))?;
    let mut c = tokio::time::timeout(t, sock.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    exchange(&mut c, msg).await
}

async fn exchange(c: &mut tokio::net::TcpStream, msg: [u8; MSG]) -> Result<(), String> {
    let t = Duration::from_secs(10);
    let mut back = [0u8; MSG];
    tokio::time::timeout(t, async {
        c.write_all(&msg).await?;
        c.read_exact(&mut back).await
    })
    .await
    .map_err(|_| "no answer in time".to_string())?
    .map_err(|e| format!("exchange: {e}"))?;
    if back == msg {
        Ok(())
    } else {
        Err("the answer is not the request".into())
    }
}

/// Uncounted short connections before a counted series (pools filled, code paged in).
pub const SERIES_WARM_UP: usize = 50;

/// Time for a warm-up or a counted series: the counting tools slow the proxy down (strace
/// stops it at each syscall; callgrind runs it about 50 times slower, about 4 ms a connection
/// for HAProxy here).
pub const SERIES_TIME: Duration = Duration::from_mins(1);

/// `n` short connections to `addr`, one after the other, each: connect, a [`MSG`]-byte request,
/// its answer (checked), close. Each step is bounded (5 s), the whole series by `deadline`.
/// The client of the counting workloads (syscalls, instructions): what it costs the proxy is
/// divided by `n`.
pub fn short_conns_in_series(
    addr: SocketAddr,
    n: usize,
    deadline: Instant,
) -> Result<(), LoadError> {
    let step = Duration::from_secs(5);
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    for i in 0..n {
        if Instant::now() > deadline {
            return Err(LoadError::Failed(format!(
                "short connections to {addr}: {i} of {n} done when time was up"
            )));
        }
        let fail = |source| LoadError::Io {
            what: format!("short connection {i} of {n} to {addr}"),
            source,
        };
        let mut c = TcpStream::connect_timeout(&addr, step).map_err(fail)?;
        c.set_read_timeout(Some(step)).map_err(fail)?;
        c.set_write_timeout(Some(step)).map_err(fail)?;
        c.write_all(&msg).map_err(fail)?;
        c.read_exact(&mut back).map_err(fail)?;
        if back != msg {
            return Err(LoadError::Failed(format!(
                "short connection {i} to {addr}: the answer is not the request"
            )));
        }
    }
    Ok(())
}

/// One connection-rate measurement.
#[derive(Clone, Debug)]
pub struct RateSample {
    pub conns_per_s: f64,
    /// Connections that completed their exchange.
    pub conns: u64,
    pub failures: u64,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
}

/// `clients` concurrent loops of connect / 64 B request / 64 B answer / close, for `dur`.
pub fn conn_rate(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    clients: usize,
    dur: Duration,
    epoch: u32,
) -> RateSample {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None::<String>));
    let counter = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let end = t0 + dur;
    rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (ok, failed, first, counter) =
                    (ok.clone(), failed.clone(), first.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut msg = [0u8; MSG];
                    while Instant::now() < end {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        msg[..8].copy_from_slice(&n.to_le_bytes());
                        match one_exchange(source_ip(epoch, n), addr, msg).await {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first.lock().expect("lock").get_or_insert(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let first_error = first.lock().expect("lock").take();
    RateSample {
        conns_per_s: ok.load(Ordering::Relaxed) as f64 / elapsed,
        conns: ok.load(Ordering::Relaxed),
        failures: failed.load(Ordering::Relaxed),
        first_error,
    }
}

/// Round-trip percentiles, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct LatencySample {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub count: u64,
}

/// 64 B ping-pong on one held connection for `dur` (after a short warm-up).
pub fn latency(addr: SocketAddr, dur: Duration) -> Result<LatencySample, LoadError> {
    let mut c = TcpStream::connect(addr).map_err(io(format!("latency: connect {addr}")))?;
    c.set_nodelay(true).map_err(io("latency: nodelay"))?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| LoadError::Failed(format!("histogram: {e}")))?;
    let mut msg = [0x5au8; MSG];
    let mut back = [0u8; MSG];
    let mut round = |i: u64, c: &mut TcpStream| -> Result<Duration, LoadError> {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        c.write_all(&msg).map_err(io("latency: write"))?;
        c.read_exact(&mut back).map_err(io("latency: read"))?;
        let d = t.elapsed();
        if back != msg {
            return Err(LoadError::Failed(
                "latency: the answer is not the request".into(),
            ));
        }
        Ok(d)
    };
    for i in 0..200 {
        round(i, &mut c)?;
    }
    let end = Instant::now() + dur;
    let mut i = 0;
    while Instant::now() < end {
        let d = round(i, &mut c)?;
        h.saturating_record(d.as_nanos() as u64);
        i += 1;
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    Ok(LatencySample {
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        count: h.len(),
    })
}

/// One concurrency measurement.
#[derive(Clone, Debug)]
pub struct ConcSample {
    /// Growth of the proxy's RSS per idle connection, in bytes (`None` for direct).
    pub rss_per_conn: Option<f64>,
    /// Connections that failed to open, or to exchange their one message.
    pub failures: u64,
    /// Time for every connection to exchange one message, in milliseconds.
    pub exchange_ms: f64,
    pub first_error: Option<String>,
}

/// Opens `n` connections to `addr` and holds them idle; reads the RSS of `pid` (with children)
/// before and after; then each exchanges one message; then all close.
pub fn concurrency(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    echo: &Echo,
    pid: Option<u32>,
    n: usize,
    epoch: u32,
) -> Result<ConcSample, LoadError> {
    let before = pid.map(procfs::tree_rss_kib).transpose()?;
    let base_live = echo.live();
    let first = Arc::new(Mutex::new(None::<String>));
    let (conns, open_failures) = rt.block_on(async {
        // Connect in bounded parallel batches: a SYN flood of 10 000 only measures backlogs.
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _p = sem.acquire().await;
                    let sock = client_socket(source_ip(epoch, i as u64))
                        .map_err(|e| format!("socket: {e}"))?;
                    tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
                        .await
                        .map_err(|_| "connect timed out".to_string())?
                        .map_err(|e| format!("connect: {e}"))
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(n);
        let mut failures = 0u64;
        for t in tasks {
            match t.await {
                Ok(Ok(c)) => conns.push(c),
                Ok(Err(e)) => {
                    first.lock().expect("lock").get_or_insert(e);
                    failures += 1;
                }
                Err(e) => {
                    first.lock().expect("lock").get_or_insert(e.to_string());
                    failures += 1;
                }
            }
        }
        (conns, failures)
    });
    // Idle means established end to end: wait until the backend holds them all.
    let deadline = Instant::now() + Duration::from_secs(30);
    while echo.live() < base_live + conns.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reached = echo.live().saturating_sub(base_live);
    std::thread::sleep(Duration::from_millis(300)); // let the proxy finish its per-flow setup
    let after = pid.map(procfs::tree_rss_kib).transpose()?;
    let rss_per_conn = match (before, after) {
        (Some(b), Some(a)) => Some(stats::rss_per_conn(b, a, conns.len())),
        _ => None,
    };
    let t0 = Instant::now();
    let (exchanged, conns) = rt.block_on(async move {
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                tokio::spawn(async move {
                    let mut msg = [0x33u8; MSG];
                    msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let r = exchange(&mut c, msg).await;
                    (r, c)
                })
            })
            .collect();
        let mut results = Vec::new();
        let mut kept = Vec::new();
        for t in tasks {
            if let Ok((r, c)) = t.await {
                results.push(r);
                kept.push(c);
            }
        }
        (results, kept)
    });
    let exchange_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut failures = open_failures + (n as u64 - open_failures - exchanged.len() as u64);
    for r in exchanged {
        if let Err(e) = r {
            first.lock().expect("lock").get_or_insert(e);
            failures += 1;
        }
    }
    if reached < n - open_failures as usize {
        first.lock().expect("lock").get_or_insert(format!(
            "only {reached} of {} connections reached the backend within 30 s",
            n - open_failures as usize
        ));
    }
    {
        let _g = rt.enter();
        drop(conns);
    }
    // Let them close before the next target, so they don't count against its limits.
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo.live() > base_live && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_error = first.lock().expect("lock").take();
    Ok(ConcSample {
        rss_per_conn,
        failures,
        exchange_ms,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_stay_in_loopback_and_spread() {
        let a = source_ip(0, 0);
        assert_eq!(a, Ipv4Addr::new(127, 10, 1, 1));
        assert!(source_ip(7, 123_456).is_loopback());
        assert_ne!(source_ip(1, 0), source_ip(2, 0));
        assert_ne!(source_ip(1, 0), source_ip(1, 1));
        for n in [0, 249, 250, 62_499, 62_500, u64::MAX] {
            let ip = source_ip(u32::MAX, n);
            assert!(ip.is_loopback());
            let o = ip.octets();
            assert!(o[2] >= 1 && o[3] >= 1 && o[3] <= 250, "{ip}");
        }
    }

    #[test]
    fn bulk_and_echo_work_direct() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = Sink::start().unwrap();
        let s = bulk(&sink, sink.addr, 2, 4 * data::BLOCK as u64, Verify::Full).unwrap();
        assert!(s.gbit_s > 0.0);
        let echo = Echo::start(rt.handle()).unwrap();
        let r = conn_rate(&rt, echo.addr, 2, Duration::from_millis(100), 3);
        assert_eq!(r.failures, 0, "{:?}", r.first_error);
        assert!(r.conns_per_s > 0.0);
        let l = latency(echo.addr, Duration::from_millis(50)).unwrap();
        assert!(l.count > 0 && l.p50_us <= l.p99_us && l.p99_us <= l.p999_us);
        let c = concurrency(&rt, echo.addr, &echo, None, 50, 4).unwrap();
        assert_eq!(c.failures, 0, "{:?}", c.first_error);
        assert_eq!(c.rss_per_conn, None);
    }

    #[test]
    fn short_conns_in_series_are_bounded_by_their_deadline() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let echo = Echo::start(rt.handle()).unwrap();
        let soon = Instant::now() + Duration::from_secs(10);
        short_conns_in_series(echo.addr, 20, soon).unwrap();
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        let err = short_conns_in_series(echo.addr, 3, past).unwrap_err();
        assert!(
            err.to_string().ends_with(": 0 of 3 done when time was up"),
            "{err}"
        );
    }

    #[test]
    fn short_conns_check_the_answer() {
        // A server that answers every request with zeros.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; MSG];
            c.read_exact(&mut req).unwrap();
            c.write_all(&[0u8; MSG]).unwrap();
        });
        let err =
            short_conns_in_series(addr, 2, Instant::now() + Duration::from_secs(10)).unwrap_err();
        assert!(
            err.to_string().ends_with(": the answer is not the request"),
            "{err}"
        );
        server.join().unwrap();
    }
}
