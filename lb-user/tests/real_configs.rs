//! What the public configurations of the corpus use, end to end with the real lb: servers
//! without a port (the client's destination port, on a port-range bind), environment variables
//! in addresses, `daemon` with its pid file, and the socket options of `bind` lines.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::data::{recv_to_eof, send_stream, stream_summary};
use common::servers::{listener_at, Backend};
use common::{lb_bin, Lb, LbOpts, TempCfg};

on_both_planes!(
    portless_server_takes_the_destination_port_of_a_range,
    env_vars_in_bind_and_server_addresses,
);

const TIMEOUTS: &str =
    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

/// Two consecutive ports free on both 127.0.0.1 and 127.0.0.2, drawn below the kernel's
/// ephemeral range: a pair inside it can be taken by any outgoing connection (other tests run
/// beside this one) between this check and lb's bind.
fn two_free_ports() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        low > 11_000,
        "ephemeral range starts at {low}: no room below it"
    );
    let free = |ip: &str, port: u16| TcpListener::bind(format!("{ip}:{port}")).is_ok();
    for _ in 0..200 {
        let p = fastrand::u16(10_000..low - 1);
        if free("127.0.0.1", p)
            && free("127.0.0.1", p + 1)
            && free("127.0.0.2", p)
            && free("127.0.0.2", p + 1)
        {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

/// Sends `len` bytes of stream `seed` through `addr` to an echo server, half-closes, and
/// checks that the echo has the same SHA-256 as what was sent (both directions, both FINs).
fn echo_through(addr: SocketAddr, seed: u64, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let sent = send_stream(&mut w, seed, len, deadline).expect("send");
        w.shutdown(Shutdown::Write).expect("half-close");
        sent
    });
    let mut r = s;
    let got = recv_to_eof(&mut r, deadline).expect("read the echo to its FIN");
    let sent = sender.join().unwrap();
    assert_eq!(sent, stream_summary(seed, len));
    assert_eq!(got, sent, "{addr}: the echo differs from what was sent");
}

fn portless_server_takes_the_destination_port_of_a_range(dataplane: &str) {
    let p = two_free_ports();
    let b1 = Backend::echo_on(listener_at(format!("127.0.0.2:{p}").parse().unwrap()), "e1");
    let b2 = Backend::echo_on(
        listener_at(format!("127.0.0.2:{}", p + 1).parse().unwrap()),
        "e2",
    );
    let cfg = format!(
        "{TIMEOUTS}frontend fe\n  bind 127.0.0.1:{p}-{}\n  default_backend be\nbackend be\n  server s 127.0.0.2\n",
        p + 1
    );
    let _lb = Lb::start(&cfg, dataplane);
    echo_through(format!("127.0.0.1:{p}").parse().unwrap(), 1, 3 << 20);
    echo_through(format!("127.0.0.1:{}", p + 1).parse().unwrap(), 2, 3 << 20);
    assert_eq!(b1.accepted(), 1, "port {p} went to the server's port {p}");
    assert_eq!(
        b2.accepted(),
        1,
        "port {} went to the server's port {}",
        p + 1,
        p + 1
    );
}

fn env_vars_in_bind_and_server_addresses(dataplane: &str) {
    let echo = Backend::echo("echo");
    let port = common::free_port();
    // Unquoted, braced, and inside brackets and double quotes, as the corpus writes them.
    let cfg = format!(
        "{TIMEOUTS}frontend fe\n  bind 127.0.0.1:${{LB_T_PORT}}\n  default_backend be\nbackend be\n  server s [$LB_T_V4MAPPED]:\"$LB_T_SRV_PORT\"\n"
    );
    let opts = LbOpts::new(&cfg, dataplane)
        .env("LB_T_PORT", &port.to_string())
        .env("LB_T_V4MAPPED", "::ffff:127.0.0.1")
        .env("LB_T_SRV_PORT", &echo.addr.port().to_string());
    let _lb = Lb::start_with(&opts);
    echo_through(format!("127.0.0.1:{port}").parse().unwrap(), 3, 1 << 20);
    assert_eq!(echo.accepted(), 1);
}

/// `daemon` + `pidfile`: `lb` returns 0 once the daemon serves, the pid file names a live
/// process that is not a child of the test and leads its own session, and it serves.
#[test]
fn daemon_detaches_and_writes_its_pid_file() {
    let echo = Backend::echo("echo");
    let port = common::free_port();
    let pidfile = std::env::temp_dir().join(format!("lb-daemon-test-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    let cfg = TempCfg::new(&format!(
        "global\n  daemon\n  pidfile {}\n{TIMEOUTS}frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  server s {}\n",
        pidfile.display(),
        echo.addr
    ));
    let status = Command::new(lb_bin())
        .args(["-f", &cfg.path.to_string_lossy(), "--dataplane", "splice"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "lb (daemon) exited with {status}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the pid file exists when lb returns")
        .trim()
        .parse()
        .unwrap();
    let stop = Defer(pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon runs");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // state ppid pgrp session: a new session, led by the daemon itself.
    assert_eq!(fields[3].parse::<i32>().unwrap(), pid, "setsid: {stat}");
    assert_ne!(
        fields[1].parse::<u32>().unwrap(),
        std::process::id(),
        "detached from the test"
    );
    echo_through(format!("127.0.0.1:{port}").parse().unwrap(), 4, 1 << 20);
    drop(stop);
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < gone {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "the pid file is removed at exit");
}

/// Sends SIGTERM to a daemon when dropped (also on a failed assertion).
struct Defer(i32);

impl Drop for Defer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid we were given; at worst ESRCH.
        unsafe { libc::kill(self.0, libc::SIGTERM) };
    }
}

/// `getsockopt` of one `int`.
fn getsockopt_int(fd: i32, level: i32, name: i32) -> i32 {
    let mut v: i32 = -1;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` outlive the call.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &raw mut len) };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    v
}

/// lb's listening sockets on `port`, duplicated into this process with `pidfd_getfd`.
fn listeners_of(pid: u32, port: u16) -> Vec<OwnedFd> {
    // SAFETY: raw syscalls; every fd returned is checked and owned once.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let n: i32 = e.file_name().to_string_lossy().parse().unwrap();
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0) } as i32;
        if fd < 0 {
            continue;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = socket2::SockRef::from(&fd);
        let listening = getsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ACCEPTCONN);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        if listening == 1 && local.is_some_and(|a| a.port() == port) {
            out.push(fd);
        }
    }
    out
}

/// The listen backlog of every socket lb listens with on `port` (`ss`: a listening socket's
/// Send-Q is its backlog), one per thread.
fn backlogs(port: u16) -> Vec<u32> {
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols[2].parse().unwrap_or_else(|_| panic!("ss line: {l}"))
        })
        .collect()
}

/// `backlog` as HAProxy's `listener_backlog`: the bind line's, else its frontend's (from the
/// defaults too), else the frontend's `maxconn`, else the global one; the TFO queue with it.
#[test]
fn the_listen_backlog_follows_haproxys_rule() {
    let echo = Backend::echo("echo");
    let p: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let cfg = format!(
        "global\n  maxconn 300\n  nbthread 2\n{TIMEOUTS}  backlog 200\nfrontend own\n  \
         bind 127.0.0.1:{} backlog 33 tfo\n  bind 127.0.0.1:{}\n  default_backend be\n\
         frontend by_maxconn\n  maxconn 55\n  backlog 77\n  \
         bind 127.0.0.1:{}\n  default_backend be\nbackend be\n  server s {}\n",
        p[0], p[1], p[2], echo.addr
    );
    let mut lb = Lb::start(&cfg, "splice");
    assert_eq!(backlogs(p[0]), vec![33, 33], "the bind line's own");
    assert_eq!(backlogs(p[1]), vec![200, 200], "the defaults' backlog");
    assert_eq!(
        backlogs(p[2]),
        vec![77, 77],
        "the frontend's backlog before its maxconn"
    );
    let fds = listeners_of(lb.pid(), p[0]);
    // Descriptors, not sockets: the threads and the runtime API hold duplicates.
    assert!(!fds.is_empty(), "lb's listeners on port {}", p[0]);
    for fd in fds {
        assert_eq!(
            getsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
            33,
            "the TFO queue is the backlog"
        );
    }
    lb.stop();
    let cfg = format!(
        "global\n  maxconn 300\n  nbthread 1\n{TIMEOUTS}frontend by_maxconn\n  maxconn 55\n  \
         bind 127.0.0.1:{}\n  default_backend be\nfrontend by_global\n  bind 127.0.0.1:{}\n  \
         default_backend be\nbackend be\n  server s {}\n",
        p[2], p[3], echo.addr
    );
    let mut lb = Lb::start(&cfg, "splice");
    assert_eq!(backlogs(p[2]), vec![55], "the frontend's maxconn");
    assert_eq!(backlogs(p[3]), vec![300], "the global maxconn");
    lb.stop();
}

/// `defer-accept`, `tfo` and `v6only` set the socket options HAProxy sets (read back from lb's
/// own listening sockets), and a `v6only` listener takes no IPv4 client.
#[test]
fn bind_options_set_the_socket_options() {
    let echo = Backend::echo("echo");
    let port = common::free_port();
    let cfg = format!(
        "{TIMEOUTS}frontend fe\n  bind [::1]:{port} v6only defer-accept tfo\n  default_backend be\nbackend be\n  server s {}\n",
        echo.addr
    );
    let mut lb = Lb::start(&cfg, "splice");
    let fds = listeners_of(lb.pid(), port);
    assert!(
        !fds.is_empty(),
        "lb's listeners on port {port} were not found"
    );
    for fd in &fds {
        let fd = fd.as_raw_fd();
        assert_eq!(getsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_V6ONLY), 1);
        // The kernel reports TCP_DEFER_ACCEPT in seconds rounded to its retransmit schedule:
        // any non-zero value means on.
        assert!(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) > 0);
        assert!(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN) > 0);
    }
    drop(fds);
    // With defer-accept, a client that sends at once is served as usual.
    let mut s = TcpStream::connect(format!("[::1]:{port}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    lb.stop();
}
