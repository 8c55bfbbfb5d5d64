//! `lb ctl`: a client of lb's runtime API for scripts (keepalived's `vrrp_script`, monitoring):
//! `check` says, by its exit status, whether lb serves and whether named backends have a
//! usable server; `cmd` sends one command and prints the answer (socat's job, where socat is
//! not installed). It only speaks the text protocol of `stats socket`, so it works against
//! HAProxy's socket too.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::state_file::{self, StateLine};

/// The socket `lb ctl` asks when `-S` is not given: the one the packaged `lb.cfg` opens.
pub const DEFAULT_SOCKET: &str = "/run/lb/admin.sock";
/// Longest answer read; `show stat` of thousands of servers stays far below it.
const MAX_ANSWER: usize = 16 << 20;

/// Exit status of `check` when lb does not serve (no socket, no answer, not lb's answer).
pub const EXIT_NOT_SERVING: u8 = 1;
/// Exit status of `check` when a named backend has no usable server or does not exist (2 is
/// what the command-line parser returns for a usage error).
pub const EXIT_BACKEND_DOWN: u8 = 3;

/// Why a runtime API exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{path}: cannot connect: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no complete answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("{path}: answer longer than {MAX_ANSWER} bytes")]
    TooLong { path: PathBuf },
}

/// Sends one command line to the runtime API socket at `path` and returns the whole answer
/// (lb closes a non-interactive session after answering). Connecting, writing and reading are
/// all bounded by `timeout`.
pub fn query(path: &Path, command: &str, timeout: Duration) -> Result<String, CtlError> {
    let deadline = Instant::now() + timeout;
    let io_err = |what, source| CtlError::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    let connect_err = |source| CtlError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let addr = SockAddr::unix(path).map_err(connect_err)?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(connect_err)?;
    sock.connect_timeout(&addr, timeout).map_err(connect_err)?;
    let mut stream: std::os::unix::net::UnixStream = sock.into();
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io_err("set timeout", e))?;
    stream
        .write_all(format!("{}\n", command.trim_end_matches('\n')).as_bytes())
        .map_err(|e| io_err("send", e))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CtlError::Timeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| io_err("set timeout", e))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CtlError::Timeout {
                    path: path.to_path_buf(),
                    timeout,
                })
            }
            Err(e) => return Err(io_err("receive", e)),
        }
        if answer.len() > MAX_ANSWER {
            return Err(CtlError::TooLong {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// What `show info` says about the process, as far as `check` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub pid: String,
    pub uptime_sec: String,
}

/// Reads `show info`'s `Name`, `Pid` and `Uptime_sec`; `None` when the answer is not a
/// `show info` answer (an error text, an empty answer).
pub fn parse_info(answer: &str) -> Option<Info> {
    let field = |name: &str| {
        answer.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    Some(Info {
        name: field("Name")?,
        pid: field("Pid")?,
        uptime_sec: field("Uptime_sec").unwrap_or_default(),
    })
}

/// Whether a server of `show servers state` may be given new connections: operationally UP
/// (running or in slow start, not NOLB), no maintenance or drain bit, weight above 0. The
/// same rule as the server table's `ServerEntry::usable`, read from HAProxy's state format
/// (`srv_op_state` 1 = starting, 2 = running; `srv_admin_state` 0 = ready).
pub fn usable(l: &StateLine) -> bool {
    matches!(l.op_state, 1 | 2) && l.admin == 0 && l.uweight > 0
}

/// One backend's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendHealth {
    pub name: String,
    /// `None`: lb has no backend of that name.
    pub servers: Option<(usize, usize)>,
}

impl BackendHealth {
    /// From the answer to `show servers state NAME`: usable servers out of all of them, or
    /// "no such backend" (lb and HAProxy answer `Can't find backend.`).
    pub fn from_answer(name: &str, answer: &str) -> Result<Self, String> {
        if answer.trim_start().starts_with("Can't find backend") {
            return Ok(Self {
                name: name.to_owned(),
                servers: None,
            });
        }
        let (lines, problems) = state_file::parse(answer);
        if let Some(p) = problems.first() {
            return Err(format!(
                "backend {name}: unexpected answer to 'show servers state' (line {p})"
            ));
        }
        let ours: Vec<&StateLine> = lines.iter().filter(|l| l.be_name == name).collect();
        let up = ours.iter().filter(|l| usable(l)).count();
        Ok(Self {
            name: name.to_owned(),
            servers: Some((up, ours.len())),
        })
    }

    pub fn ok(&self) -> bool {
        self.servers.is_some_and(|(up, _)| up > 0)
    }
}

impl std::fmt::Display for BackendHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.servers {
            None => write!(f, "backend {}: no such backend", self.name),
            Some((0, 0)) => write!(f, "backend {}: has no server", self.name),
            Some((0, n)) => write!(f, "backend {}: no usable server (0 of {n})", self.name),
            Some((up, n)) => write!(f, "backend {}: {up} of {n} servers usable", self.name),
        }
    }
}

/// `lb ctl check`: prints one line per finding (stdout when all is well, stderr otherwise) and
/// returns the exit status: 0, [`EXIT_NOT_SERVING`] or [`EXIT_BACKEND_DOWN`].
pub fn check(path: &Path, backends: &[String], timeout: Duration) -> u8 {
    let answer = match query(path, "show info", timeout) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("lb ctl: not serving: {e}");
            return EXIT_NOT_SERVING;
        }
    };
    let Some(info) = parse_info(&answer) else {
        let first = answer.lines().next().unwrap_or("(empty answer)");
        eprintln!(
            "lb ctl: {}: not serving: 'show info' answered {first:?}",
            path.display()
        );
        return EXIT_NOT_SERVING;
    };
    let mut lines = vec![format!(
        "{} serving: pid {}, up {} s, socket {}",
        info.name,
        info.pid,
        info.uptime_sec,
        path.display()
    )];
    let mut down = false;
    for name in backends {
        let verdict = query(path, &format!("show servers state {name}"), timeout)
            .map_err(|e| e.to_string())
            .and_then(|answer| BackendHealth::from_answer(name, &answer));
        match verdict {
            Ok(h) => {
                down |= !h.ok();
                lines.push(h.to_string());
            }
            Err(e) => {
                eprintln!("lb ctl: not serving: {e}");
                return EXIT_NOT_SERVING;
            }
        }
    }
    if down {
        for l in &lines {
            eprintln!("lb ctl: {l}");
        }
        return EXIT_BACKEND_DOWN;
    }
    for l in &lines {
        println!("{l}");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state \
                          srv_admin_state srv_uweight srv_iweight ...\n";

    fn line(name: &str, op: u32, admin: u32, weight: u32) -> String {
        format!(
            "3 be 1 {name} 10.0.0.1 {op} {admin} {weight} {weight} 5 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        )
    }

    #[test]
    fn info_fields() {
        let info = parse_info("Name: lb\nVersion: 0.1.0\nPid: 42\nUptime_sec: 7\n").unwrap();
        assert_eq!(
            info,
            Info {
                name: "lb".into(),
                pid: "42".into(),
                uptime_sec: "7".into()
            }
        );
        assert_eq!(parse_info("Unknown command.\n"), None);
        assert_eq!(parse_info(""), None);
    }

    #[test]
    fn a_backend_is_ok_with_one_usable_server() {
        let text = format!("{HEADER}{}{}", line("s1", 0, 0, 1), line("s2", 2, 0, 1));
        let h = BackendHealth::from_answer("be", &text).unwrap();
        assert_eq!(h.servers, Some((1, 2)));
        assert!(h.ok());
        assert_eq!(h.to_string(), "backend be: 1 of 2 servers usable");
        // Slow start (op state 1) serves.
        let text = format!("{HEADER}{}", line("s1", 1, 0, 1));
        assert!(BackendHealth::from_answer("be", &text).unwrap().ok());
    }

    #[test]
    fn down_maint_drain_nolb_and_weight_zero_are_not_usable() {
        for (op, admin, weight) in [(0, 0, 1), (2, 0x01, 1), (2, 0x08, 1), (3, 0, 1), (2, 0, 0)] {
            let text = format!("{HEADER}{}", line("s1", op, admin, weight));
            let h = BackendHealth::from_answer("be", &text).unwrap();
            assert_eq!(h.servers, Some((0, 1)), "{op} {admin} {weight}");
            assert!(!h.ok());
            assert_eq!(h.to_string(), "backend be: no usable server (0 of 1)");
        }
    }

    #[test]
    fn unknown_backend_and_empty_backend() {
        let h = BackendHealth::from_answer("nope", "Can't find backend.\n").unwrap();
        assert!(!h.ok());
        assert_eq!(h.to_string(), "backend nope: no such backend");
        let h = BackendHealth::from_answer("be", HEADER).unwrap();
        assert!(!h.ok());
        assert_eq!(h.to_string(), "backend be: has no server");
    }

    #[test]
    fn garbage_is_an_error_naming_the_backend() {
        let e = BackendHealth::from_answer("be", "Permission denied\n").unwrap_err();
        assert!(e.starts_with("backend be: unexpected answer"), "{e}");
        let text = format!("{HEADER}3 be 1 s1 10.0.0.1 x\n");
        let e = BackendHealth::from_answer("be", &text).unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_missing_socket_is_a_connect_error() {
        let path = std::env::temp_dir().join(format!("lb-ctl-missing-{}.sock", std::process::id()));
        let e = query(&path, "show info", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, CtlError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        assert_eq!(check(&path, &[], Duration::from_secs(1)), EXIT_NOT_SERVING);
    }

    #[test]
    fn a_silent_socket_times_out() {
        let path = std::env::temp_dir().join(format!("lb-ctl-silent-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // Accepts (the backlog does) and never answers.
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let start = Instant::now();
        let e = query(&path, "show info", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, CtlError::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_file(&path);
    }
}
