//! Harness pieces for the logging, DNS and privilege tests: a UDP syslog receiver, a real
//! DNS server (Debian's dnsmasq, in the foreground on a loopback port) whose answers a test
//! changes, identifying servers on chosen loopback addresses, and `/proc/PID/status`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Text lines collected by reader threads, with a wait for the ones that contain a needle.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    /// Adds a line and wakes the waiters.
    pub fn push(&self, line: String) {
        self.0 .0.lock().unwrap().push(line);
        self.0 .1.notify_all();
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until `n` lines contain `needle`; returns those seen by then.
    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.0 .0.lock().unwrap();
        loop {
            let got: Vec<String> = st.iter().filter(|l| l.contains(needle)).cloned().collect();
            let now = Instant::now();
            if got.len() >= n || now >= deadline {
                return got;
            }
            st = self.0 .1.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

/// A syslog receiver on 127.0.0.1 (UDP): collects every datagram as one string.
pub struct Syslog {
    pub addr: SocketAddr,
    lines: Lines,
    stop: Arc<AtomicBool>,
}

impl Syslog {
    pub fn start() -> Syslog {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind syslog receiver");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let lines = Lines::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (lines.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    l.push(text);
                }
            }
        });
        Syslog { addr, lines, stop }
    }

    /// Every datagram so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits until `n` datagrams contain `needle`; returns those seen by then.
    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        self.lines.wait_for(needle, n, timeout)
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A server on a chosen address that writes `NAME\n` and closes (after reading what the
/// client sent, up to its EOF or 5 s).
pub struct IdentAt {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<AtomicUsize>,
}

impl IdentAt {
    pub fn start(addr: SocketAddr, name: &str) -> IdentAt {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (st, acc, line) = (stop.clone(), accepted.clone(), format!("{name}\n"));
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        let line = line.clone();
                        thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.write_all(line.as_bytes());
                            let _ = s.shutdown(Shutdown::Write);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut sink = [0u8; 4096];
                            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        IdentAt {
            addr,
            stop,
            accepted,
        }
    }
}

impl Drop for IdentAt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// dnsmasq answering from a hosts file the test rewrites (SIGHUP re-reads it). Names not in
/// the file get NXDOMAIN (`--no-resolv`: no upstream).
pub struct Dnsmasq {
    pub addr: SocketAddr,
    hosts: PathBuf,
    local: bool,
    child: Child,
}

/// dnsmasq on 127.0.0.1:`port`, once it answers; `None` when it exited (port taken) or did not
/// answer within 10 s.
fn spawn_dnsmasq(port: u16, hosts: &Path, local: bool, srv: &[String]) -> Option<Child> {
    let mut args = vec![
        "--no-daemon".to_owned(),
        "--keep-in-foreground".to_owned(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".to_owned(),
        "--bind-interfaces".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--cache-size=0".to_owned(),
        "--local-ttl=0".to_owned(),
        "--user=root".to_owned(),
        "--pid-file=".to_owned(),
        format!("--addn-hosts={}", hosts.display()),
    ];
    args.extend(srv.iter().map(|r| format!("--srv-host={r}")));
    if local {
        // Everything not in the hosts file is NXDOMAIN (or NODATA), not forwarded.
        args.push("--local=/test/".to_owned());
    }
    let mut child = Command::new("dnsmasq")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dnsmasq (cargo xtask setup installs dnsmasq-base)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut exited = false;
    let up = wait(Duration::from_secs(10), || {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        exited || answers(addr)
    });
    if up && !exited {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Dnsmasq {
    /// Starts dnsmasq on 127.0.0.1:<free port> answering `hosts` (hosts-file lines), and waits
    /// until it answers.
    pub fn start(hosts: &str) -> Dnsmasq {
        Dnsmasq::start_with(hosts, true, &[])
    }

    /// Like [`Dnsmasq::start`], with SRV records too: each `NAME,TARGET,PORT[,PRIO,WEIGHT]`
    /// (dnsmasq's `--srv-host`, fixed for its life; the targets' addresses come from the hosts
    /// file, which can change).
    pub fn start_srv(hosts: &str, srv: &[String]) -> Dnsmasq {
        Dnsmasq::start_with(hosts, true, srv)
    }

    /// Like [`Dnsmasq::start`], but as an embedded container DNS without upstream answers:
    /// names of the hosts file resolve for the types they have, and every other question
    /// (AAAA of a name that only has an A line, unknown names) is REFUSED.
    pub fn start_refusing(hosts: &str) -> Dnsmasq {
        Dnsmasq::start_with(hosts, false, &[])
    }

    /// With `local`, dnsmasq is authoritative for `.test`: a missing type is NODATA and an
    /// unknown name NXDOMAIN; without, both are REFUSED (nothing to forward to).
    fn start_with(hosts: &str, local: bool, srv: &[String]) -> Dnsmasq {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "lb-test-hosts-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, hosts).unwrap();
        // dnsmasq binds UDP and TCP on its port; a port taken meanwhile (tests run in
        // parallel) makes it exit at once: try again on another port, a bounded number of times.
        for _ in 0..5 {
            let port = super::free_port();
            if let Some(child) = spawn_dnsmasq(port, &path, local, srv) {
                return Dnsmasq {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    hosts: path,
                    local,
                    child,
                };
            }
        }
        panic!("dnsmasq did not start answering on 127.0.0.1 after 5 tries");
    }

    /// Restarts dnsmasq on the same address with these SRV records instead (dnsmasq reads
    /// `--srv-host` only when it starts): how a test removes or changes a record.
    pub fn restart_srv(&mut self, srv: &[String]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..5 {
            if let Some(child) = spawn_dnsmasq(self.addr.port(), &self.hosts, self.local, srv) {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dnsmasq did not start again on {} after 5 tries", self.addr);
    }

    /// Replaces the hosts file and makes dnsmasq re-read it.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        // SAFETY: kill(2) on our own live child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.hosts);
    }
}

/// Whether a DNS server on `addr` answers a query at all (any RCODE).
fn answers(addr: SocketAddr) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Query for "probe.test" A, ID 0x4242, RD.
    let mut q = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x05probe\x04test\x00\x00\x01\x00\x01");
    let _ = s.send_to(&q, addr);
    let mut buf = [0u8; 512];
    matches!(s.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == [0x42, 0x42])
}

/// Polls `cond` until it holds or `timeout` passes (the harness's one poller).
pub use super::servers::wait_until as wait;

/// `/proc/PID/status` as key -> value.
pub fn proc_status(pid: u32) -> io::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// `/proc/PID/task/*/status` for every thread of the process.
pub fn thread_statuses(pid: u32) -> io::Result<Vec<HashMap<String, String>>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let p = e?.path().join("status");
        let text = std::fs::read_to_string(p)?;
        out.push(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        );
    }
    Ok(out)
}
