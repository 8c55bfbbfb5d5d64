//! Real servers for the health-check tests: `redis-server` (with `requirepass`, master and
//! replicas), `mariadbd` and `slapd`, each started from the test on a free loopback port in a
//! temp dir, stopped and removed on drop; a tiny RESP client; log-line counting.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, Lb};

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "lb-health-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; always reaps.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `cond` until it holds or `timeout` passes (the harness's one poller).
pub use super::servers::wait_until as poll;

/// How many of lb's log lines contain `needle`.
pub fn count_log(lb: &Lb, needle: &str) -> usize {
    lb.logs().iter().filter(|l| l.contains(needle)).count()
}

/// Waits until at least `n` log lines contain `needle`.
pub fn wait_log_count(lb: &Lb, needle: &str, n: usize, timeout: Duration) -> bool {
    poll(timeout, || count_log(lb, needle) >= n)
}

// ----- Redis -----

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Resp {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) => s.clone(),
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }
}

/// A minimal Redis client over one connection, every read bounded.
pub struct RedisConn {
    r: BufReader<TcpStream>,
}

impl RedisConn {
    pub fn connect(addr: SocketAddr) -> std::io::Result<RedisConn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.set_write_timeout(Some(Duration::from_secs(3)))?;
        Ok(RedisConn {
            r: BufReader::new(s),
        })
    }

    /// The local port of the connection (to find its session in `show sess`).
    pub fn local_port(&self) -> u16 {
        self.r.get_ref().local_addr().map_or(0, |a| a.port())
    }

    /// Sends one command (as a RESP array) and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> std::io::Result<Resp> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            let _ = write!(out, "${}\r\n{a}\r\n", a.len());
        }
        self.r.get_mut().write_all(out.as_bytes())?;
        self.read()
    }

    fn read(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP");
        let (t, rest) = line.split_at(1.min(line.len()));
        Ok(match t {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Resp::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                let mut v = Vec::new();
                for _ in 0..n.max(0) {
                    v.push(self.read()?);
                }
                Resp::Array(v)
            }
            _ => return Err(bad()),
        })
    }
}

/// A `redis-server` with `requirepass`, on a free loopback port, in its own temp dir.
pub struct Redis {
    pub port: u16,
    pub password: String,
    child: Child,
    dir: TempDir,
}

impl Redis {
    /// Starts a server; `replica_of` makes it a replica of that port.
    pub fn start(password: &str, replica_of: Option<u16>) -> Redis {
        Self::start_with(password, replica_of, &[])
    }

    /// A server without a password that logs every connection to its log file ([`Redis::log`]):
    /// `Accepted ...` when one opens, `Client closed connection` on a FIN, `Reading from
    /// client: Connection reset by peer` on a reset.
    pub fn start_logging() -> Redis {
        Self::start_with(
            "",
            None,
            &["--loglevel", "verbose", "--logfile", "redis.log"],
        )
    }

    fn start_with(password: &str, replica_of: Option<u16>, extra: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"]);
        if !password.is_empty() {
            cmd.args(["--requirepass", password])
                .args(["--masterauth", password]);
        }
        cmd.args(extra)
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(m) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
        }
        let child = cmd
            .spawn()
            .expect("start redis-server (cargo xtask setup installs it)");
        let r = Redis {
            port,
            password: password.to_owned(),
            child,
            dir,
        };
        assert!(
            poll(Duration::from_secs(10), || r
                .cmd(&["PING"])
                .is_ok_and(|p| p == Resp::Simple("PONG".into()))),
            "redis-server on port {port} did not answer PING"
        );
        r
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// One command on a fresh connection (authenticated when the server has a password).
    pub fn cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        let mut c = RedisConn::connect(self.addr())?;
        if !self.password.is_empty() {
            let auth = c.cmd(&["AUTH", &self.password])?;
            if auth != Resp::Simple("OK".into()) {
                return Err(std::io::Error::other(format!("AUTH: {auth:?}")));
            }
        }
        c.cmd(args)
    }

    /// The server's log file so far (empty unless started with [`Redis::start_logging`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// Through `addr` (lb): authenticate and ask `INFO server`; returns the `tcp_port` of the redis
/// that answered, and its `role` from `INFO replication`.
pub fn redis_via(addr: SocketAddr, password: &str) -> std::io::Result<(u16, String)> {
    let mut c = RedisConn::connect(addr)?;
    c.cmd(&["AUTH", password])?;
    let server = c.cmd(&["INFO", "server"])?.text();
    let port = field(&server, "tcp_port")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no tcp_port in {server:?}")))?;
    let repl = c.cmd(&["INFO", "replication"])?.text();
    let role = field(&repl, "role").unwrap_or_default();
    Ok((port, role))
}

/// `name:value` from an INFO text.
pub fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
}

// ----- MariaDB -----

/// A `mariadbd` on a free loopback port with its own data directory, run as root, its error
/// log in `error.log` there (see [`MariaDb::log`]).
pub struct MariaDb {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    args: Vec<String>,
}

impl MariaDb {
    /// Creates the data directory (`mariadb-install-db`) and starts the server.
    pub fn start() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// [`MariaDb::start`] with extra `mariadbd` options (`--log-warnings=4`, ...).
    pub fn start_with(args: &[&str]) -> MariaDb {
        let dir = TempDir::new("mariadb");
        let data = dir.path.join("data");
        let out = Command::new("mariadb-install-db")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .arg("--user=root")
            .arg("--skip-test-db")
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db (cargo xtask setup installs mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = MariaDb {
            port: free_port(),
            dir,
            child: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        db.restart();
        db
    }

    fn socket(&self) -> PathBuf {
        self.dir.path.join("mysqld.sock")
    }

    /// Starts (again) the server on the same port and data, waiting until it accepts SQL.
    pub fn restart(&mut self) {
        let data = self.dir.path.join("data");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path.join("pid").display()
            ))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--user=root")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!(
                "--log-error={}",
                self.dir.path.join("error.log").display()
            ))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        assert!(
            poll(Duration::from_secs(30), || self.sql("SELECT 1").is_ok()),
            "mariadbd did not come up on port {}",
            self.port
        );
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("error.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, bounded).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(20));
        }
    }

    /// Runs SQL as root over the socket.
    pub fn sql(&self, q: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--connect-timeout=2")
            .arg("-e")
            .arg(q)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `OpenLDAP` `slapd` on a free loopback port, configured from its temp dir (the core schema,
/// no database: an anonymous bind is all it serves), stopped and removed on drop.
pub struct Slapd {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Slapd {
    /// Starts one; `anonymous`: whether it accepts an anonymous bind (else `disallow
    /// bind_anon`: such a bind gets resultCode 48, inappropriateAuthentication).
    pub fn start(anonymous: bool) -> Slapd {
        let dir = TempDir::new("slapd");
        let port = free_port();
        let mut conf = format!(
            "include /etc/ldap/schema/core.schema\npidfile {}/slapd.pid\n",
            dir.path.display()
        );
        if !anonymous {
            conf.push_str("disallow bind_anon\n");
        }
        let path = dir.path.join("slapd.conf");
        std::fs::write(&path, conf).expect("write slapd.conf");
        // `-d 0`: in the foreground, without debug output.
        let child = Command::new("slapd")
            .arg("-f")
            .arg(&path)
            .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd (cargo xtask setup installs it)");
        let s = Slapd {
            port,
            child,
            _dir: dir,
        };
        assert!(
            poll(Duration::from_secs(10), || TcpStream::connect(s.addr())
                .is_ok()),
            "slapd on port {port} never listened"
        );
        s
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}
