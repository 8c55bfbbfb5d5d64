//! Real peers from Debian's packages for the rules and PROXY protocol tests: self-signed
//! certificates and TLS servers and clients (`openssl req`, `openssl s_server`, `openssl
//! s_client`, `curl`), and HAProxy itself (started on loopback, its log lines collected).
//! Every process is killed when its value is dropped; every wait has a deadline.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::data::Summary;

/// A directory of its own for one test (pid + counter), removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lb-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `name` and returns its path as a string (for configs).
    pub fn write(&self, name: &str, data: &[u8]) -> String {
        let p = self.path(name);
        fs::write(&p, data).expect("write scratch file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate and its key for `cn` (`openssl req -x509`, EC P-256).
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    pub fn new(dir: &Scratch, cn: &str) -> Cert {
        let cert = dir.path(&format!("{cn}.crt"));
        let key = dir.path(&format!("{cn}.key"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl req");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cert { cert, key }
    }
}

/// Waits until something listens on 127.0.0.1:`port` (read from `/proc/net/tcp`, so no
/// connection is spent on the check).
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    while Instant::now() < deadline {
        if fs::read_to_string("/proc/net/tcp").is_ok_and(|t| t.contains(&needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Hashes everything read from `r` until EOF; the running byte count is shared.
fn hash_reader(
    mut r: impl Read + Send + 'static,
    count: Arc<(Mutex<u64>, Condvar)>,
) -> JoinHandle<Summary> {
    thread::spawn(move || {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    len += n as u64;
                    *count.0.lock().unwrap() = len;
                    count.1.notify_all();
                }
            }
        }
        Summary {
            len,
            sha: h.finalize().into(),
        }
    })
}

/// One `openssl s_server` connection: it sends `down` to its client and keeps what the client
/// sends; once `up_len` bytes came it closes (`s_server` ends a connection at the end of its
/// standard input).
pub struct TlsServer {
    pub addr: SocketAddr,
    child: Child,
    received: Option<JoinHandle<Summary>>,
    count: Arc<(Mutex<u64>, Condvar)>,
    feeder: Option<JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(cert: &Cert, down: Vec<u8>, up_len: u64) -> TlsServer {
        let port = super::free_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert.cert)
            .arg("-key")
            .arg(&cert.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server");
        let count: Arc<(Mutex<u64>, Condvar)> = Arc::default();
        let received = hash_reader(child.stdout.take().unwrap(), count.clone());
        let stdin = child.stdin.take().unwrap();
        let c = count.clone();
        let feeder = thread::spawn(move || feed_then_close(stdin, &down, &c, up_len));
        assert!(
            wait_listening(port, Duration::from_secs(10)),
            "s_server did not listen on {port}"
        );
        TlsServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            received: Some(received),
            count,
            feeder: Some(feeder),
        }
    }

    /// Bytes received so far.
    pub fn received_len(&self) -> u64 {
        *self.count.0.lock().unwrap()
    }

    /// What the server received, once its connection is over (at most `timeout`).
    pub fn finish(mut self, timeout: Duration) -> Summary {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        self.received.take().unwrap().join().unwrap()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `down`, waits (at most 60 s) until `up_len` bytes were received, closes `stdin`.
fn feed_then_close(mut stdin: ChildStdin, down: &[u8], count: &(Mutex<u64>, Condvar), up_len: u64) {
    let _ = stdin.write_all(down);
    let _ = stdin.flush();
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut got = count.0.lock().unwrap();
    while *got < up_len {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        got = count.1.wait_timeout(got, deadline - now).unwrap().0;
    }
    drop(got);
    drop(stdin);
}

/// What `openssl s_client` did.
pub struct TlsClientRun {
    pub success: bool,
    /// What it received.
    pub received: Summary,
    pub stderr: String,
}

/// Runs `openssl s_client -quiet -servername NAME [-alpn ...] -connect ADDR`, sends `up`, and
/// reads until the server closes (at most `timeout`).
pub fn s_client(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: Option<&str>,
    up: &[u8],
    timeout: Duration,
) -> TlsClientRun {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-ign_eof", "-connect"])
        .arg(addr.to_string());
    match sni {
        Some(n) => cmd.arg("-servername").arg(n),
        None => cmd.arg("-noservername"),
    };
    if let Some(a) = alpn {
        cmd.arg("-alpn").arg(a);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl s_client");
    let count: Arc<(Mutex<u64>, Condvar)> = Arc::default();
    let received = hash_reader(child.stdout.take().unwrap(), count);
    let mut err = child.stderr.take().unwrap();
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdin = child.stdin.take().unwrap();
    let data = up.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    TlsClientRun {
        success: status.is_some_and(|s| s.success()),
        received: received.join().unwrap(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `openssl s_server -WWW` serving the files of `dir` to one connection.
pub struct WwwServer {
    pub addr: SocketAddr,
    child: Child,
}

impl WwwServer {
    pub fn start(cert: &Cert, dir: &Path) -> WwwServer {
        let port = super::free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert.cert)
            .arg("-key")
            .arg(&cert.key)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server -WWW");
        assert!(
            wait_listening(port, Duration::from_secs(10)),
            "s_server -WWW did not listen on {port}"
        );
        WwwServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        }
    }
}

impl Drop for WwwServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -sk --resolve NAME:PORT:127.0.0.1 https://NAME:PORT/PATH`: the body's summary.
pub fn curl(name: &str, lb: SocketAddr, path: &str, out: &Path) -> Result<Summary, String> {
    let status = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "30", "--resolve"])
        .arg(format!("{name}:{}:127.0.0.1", lb.port()))
        .arg(format!("https://{name}:{}/{path}", lb.port()))
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn curl: {e}"))?;
    if !status.status.success() {
        return Err(format!(
            "curl failed ({}): {}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let body = fs::read(out).map_err(|e| format!("read curl output: {e}"))?;
    Ok(Summary::of(&body))
}

/// A running HAProxy (Debian's), logging to its standard output (`log stdout format raw`).
pub struct Haproxy {
    child: Child,
    lines: super::ops::Lines,
    _cfg: super::TempCfg,
}

impl Haproxy {
    /// Starts `haproxy -db -f CONFIG` and waits until it listens on every port of `ports`.
    pub fn start(config: &str, ports: &[u16]) -> Haproxy {
        let cfg = super::TempCfg::new(config);
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haproxy");
        let lines = super::ops::Lines::default();
        for (stream, tag) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                "out",
            ),
            (Box::new(child.stderr.take().unwrap()), "err"),
        ] {
            let l = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[haproxy {tag}] {line}");
                    l.push(line);
                }
            });
        }
        for p in ports {
            if !wait_listening(*p, Duration::from_secs(10)) {
                let log = lines.all().join("\n");
                let _ = child.kill();
                panic!("haproxy did not listen on {p}; config:\n{config}\nlog:\n{log}");
            }
        }
        Haproxy {
            child,
            lines,
            _cfg: cfg,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits until `n` lines contain `needle`; returns those seen by then.
    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        self.lines.wait_for(needle, n, timeout)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `head` (in pieces of `step` bytes, `pause` apart: a slow sender) then `len` bytes of
/// stream `seed` to a [`super::servers::Backend::sink`] through `s`, half-closes, and checks
/// the sink's answer: the summary of exactly what was sent (`head` included), then `extra`
/// bytes of [`super::data::REPLY_SEED`]. SHA-256 both ways.
pub fn sink_exchange(
    mut s: std::net::TcpStream,
    (head, step, pause): (&[u8], usize, Duration),
    (len, seed): (u64, u64),
    extra: u64,
    timeout: Duration,
) -> Result<(), String> {
    use super::data::{DataStream, REPLY_SEED};
    let deadline = Instant::now() + timeout;
    let mut h = Sha256::new();
    for piece in head.chunks(step.max(1)) {
        s.write_all(piece).map_err(|e| format!("write head: {e}"))?;
        thread::sleep(pause);
    }
    h.update(head);
    let mut stream = DataStream::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        if Instant::now() > deadline {
            return Err("upload: deadline passed".into());
        }
        let n = left.min(buf.len() as u64) as usize;
        stream.fill(&mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("upload at {}: {e}", len - left))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown write: {e}"))?;
    let sent = Summary {
        len: head.len() as u64 + len,
        sha: h.finalize().into(),
    };
    let reply = super::data::read_all(&mut s, 40 + extra as usize, deadline)
        .map_err(|e| format!("sink reply: {e}"))?;
    if reply.len() < 40 {
        return Err(format!("sink reply has {} bytes", reply.len()));
    }
    let got = Summary::from_wire(&reply[..40]);
    if got != sent {
        return Err(format!("the sink got {got:?}, the client sent {sent:?}"));
    }
    let want = Summary::of(&DataStream::new(REPLY_SEED).take_vec(extra as usize));
    let down = Summary::of(&reply[40..]);
    if down != want {
        return Err(format!(
            "the client got {down:?} after the summary, the sink sent {want:?}"
        ));
    }
    Ok(())
}

/// [`sink_exchange`] without a head.
pub fn sink_upload(s: std::net::TcpStream, data: (u64, u64), extra: u64) -> Result<(), String> {
    sink_exchange(
        s,
        (&[], 1, Duration::ZERO),
        data,
        extra,
        Duration::from_mins(1),
    )
}

/// A TLS 1.2-style ClientHello record (what `openssl s_client` sends first, in shape), with an
/// SNI when given: for tests that need exact bytes (truncated, slow).
pub fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        exts.extend_from_slice(&[0, 0]);
        exts.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
        exts.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        exts.push(0);
        exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
        exts.extend_from_slice(n);
    }
    // supported_groups: x25519.
    exts.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 0x1d]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}
