//! Log targets (`log ADDR FACILITY [LEVEL [MINLEVEL]]`, `log stdout|stderr`, `log /dev/log`):
//! parsing a validated `log` line, HAProxy's message formats, and sending without ever
//! blocking the caller (a full or absent receiver drops the message and counts it).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::time::{self, LocalTime};
use crate::config::LogTarget;

/// Why a `log` line cannot be turned into a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{loc}: 'log {args}': {why}")]
    Invalid {
        loc: String,
        args: String,
        why: String,
    },
    #[error("{loc}: 'log {args}': cannot create a socket: {source}")]
    Socket {
        loc: String,
        args: String,
        #[source]
        source: io::Error,
    },
}

/// Syslog severities, HAProxy's names, most severe first (the index is the numeric level).
pub const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Syslog facilities in numeric order (HAProxy's names).
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Severity `info` (6): tcplog lines and `Connect from` lines.
pub const INFO: u8 = 6;
/// Severity `notice` (5): state changes such as DNS address changes.
pub const NOTICE: u8 = 5;
/// Severity `warning` (4).
pub const WARNING: u8 = 4;
/// Severity `err` (3).
pub const ERR: u8 = 3;

/// What every syslog header carries besides the date: tag, pid, optional host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// `log-tag`; `lb` by default.
    pub tag: String,
    pub pid: u32,
    /// `log-send-hostname`; none by default, as HAProxy.
    pub host: Option<String>,
}

impl Header {
    /// lb's default header: tag `lb`, this process, no host name.
    pub fn new() -> Self {
        Self {
            tag: super::TAG.to_owned(),
            pid: std::process::id(),
            host: None,
        }
    }
}

impl Default for Header {
    fn default() -> Self {
        Self::new()
    }
}

/// HAProxy's message formats (`log ... format F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `<PRI>Mmm dd hh:mm:ss tag[pid]: msg` (the default; no hostname, as HAProxy without
    /// `log-send-hostname`).
    Rfc3164,
    /// `<PRI>1 ISO-DATE - tag pid - - msg`.
    Rfc5424,
    /// `<PRI>msg`.
    Priority,
    /// `<LEVEL>msg`.
    Short,
    /// `<LEVEL>ISO-DATE msg`.
    Timed,
    /// `ISO-DATE msg`.
    Iso,
    /// `msg`.
    Raw,
}

enum Sink {
    Udp(UdpSocket),
    Unix(UnixDatagram, PathBuf),
    /// stdout (1) or stderr (2).
    Fd(i32),
}

/// One ready-to-use log target.
pub struct Target {
    /// The `log` line's arguments, for messages about it.
    pub spec: String,
    sink: Sink,
    format: Format,
    facility: u8,
    /// Highest severity number sent (`LEVEL`; default `debug` = everything).
    level: u8,
    /// Severity numbers below this are raised to it (`MINLEVEL`; default `emerg` = none).
    minlevel: u8,
    /// `len`: longest message sent, header included (default 1024).
    max_len: usize,
    /// Messages dropped because the receiver was full, absent or failing.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("spec", &self.spec)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn level_index(s: &str) -> Option<u8> {
    LEVELS.iter().position(|l| *l == s).map(|i| i as u8)
}

impl Target {
    /// Builds a target from a `log` line already checked by the config parser (anything but
    /// `log global`, which the config resolves).
    pub fn open(line: &LogTarget) -> Result<Self, TargetError> {
        let args = line.args.join(" ");
        let invalid = |why: String| TargetError::Invalid {
            loc: line.loc.to_string(),
            args: args.clone(),
            why,
        };
        let w = &line.args;
        let dest = w.first().ok_or_else(|| invalid("no target".into()))?;
        let mut format = None;
        let mut max_len = 1024usize;
        let mut i = 1;
        while i < w.len() {
            match w[i].as_str() {
                "len" => {
                    max_len = w
                        .get(i + 1)
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| invalid("'len' needs a number".into()))?;
                }
                "format" => {
                    format = Some(match w.get(i + 1).map(String::as_str) {
                        Some("rfc3164") => Format::Rfc3164,
                        Some("rfc5424") => Format::Rfc5424,
                        Some("priority") => Format::Priority,
                        Some("short") => Format::Short,
                        Some("timed") => Format::Timed,
                        Some("iso") => Format::Iso,
                        Some("raw") => Format::Raw,
                        other => return Err(invalid(format!("unknown format {other:?}"))),
                    });
                }
                "sample" | "profile" => {
                    return Err(invalid(format!(
                        "'{}' is not supported (every message goes to the target)",
                        w[i]
                    )))
                }
                _ => break,
            }
            i += 2;
        }
        let fac = w
            .get(i)
            .and_then(|f| FACILITIES.iter().position(|x| x == f))
            .ok_or_else(|| invalid("a facility is required (e.g. local0)".into()))?
            as u8;
        let level = match w.get(i + 1) {
            Some(l) => level_index(l).ok_or_else(|| invalid(format!("unknown level '{l}'")))?,
            None => 7,
        };
        let minlevel = match w.get(i + 2) {
            Some(l) => level_index(l).ok_or_else(|| invalid(format!("unknown level '{l}'")))?,
            None => 0,
        };
        let sock_err = |source: io::Error| TargetError::Socket {
            loc: line.loc.to_string(),
            args: args.clone(),
            source,
        };
        let sink = match dest.as_str() {
            "stdout" => Sink::Fd(1),
            "stderr" => Sink::Fd(2),
            d if d.starts_with('/') => {
                let s = UnixDatagram::unbound().map_err(sock_err)?;
                s.set_nonblocking(true).map_err(sock_err)?;
                Sink::Unix(s, PathBuf::from(d))
            }
            d => {
                let addr = parse_udp_addr(d).map_err(invalid)?;
                let bind: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let s = UdpSocket::bind(bind).map_err(sock_err)?;
                s.connect(addr).map_err(sock_err)?;
                s.set_nonblocking(true).map_err(sock_err)?;
                Sink::Udp(s)
            }
        };
        Ok(Self {
            spec: args.clone(),
            sink,
            // HAProxy's default is rfc3164 for every target, stdout/stderr included (users
            // write `format raw` there).
            format: format.unwrap_or(Format::Rfc3164),
            facility: fac,
            level,
            minlevel,
            max_len: max_len.max(80),
            dropped: AtomicU64::new(0),
        })
    }

    /// Messages dropped so far (receiver full, absent or failing).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Formats and sends `msg` at `severity` (0 = emerg .. 7 = debug) unless the target's
    /// level filters it out. Never blocks; a message that cannot be sent now is dropped.
    pub fn send(&self, severity: u8, msg: &str, hdr: &Header) {
        if severity > self.level {
            return;
        }
        let severity = severity.max(self.minlevel);
        let mut out = self.render(severity, msg, hdr, &time::now_local());
        if out.len() >= self.max_len {
            let mut cut = self.max_len - 1;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out.push('\n');
        if !self.write(out.as_bytes()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The message as this target's format writes it (without the final newline).
    pub fn render(&self, severity: u8, msg: &str, hdr: &Header, t: &LocalTime) -> String {
        let pri = u32::from(self.facility) * 8 + u32::from(severity);
        let (tag, pid) = (&hdr.tag, hdr.pid);
        match self.format {
            Format::Rfc3164 => match &hdr.host {
                Some(h) => format!("<{pri}>{} {h} {tag}[{pid}]: {msg}", t.syslog()),
                None => format!("<{pri}>{} {tag}[{pid}]: {msg}", t.syslog()),
            },
            Format::Rfc5424 => format!(
                "<{pri}>1 {} {} {tag} {pid} - - {msg}",
                t.iso(),
                hdr.host.as_deref().unwrap_or("-")
            ),
            Format::Priority => format!("<{pri}>{msg}"),
            Format::Short => format!("<{severity}>{msg}"),
            Format::Timed => format!("<{severity}>{} {msg}", t.iso()),
            Format::Iso => format!("{} {msg}", t.iso()),
            Format::Raw => msg.to_owned(),
        }
    }

    /// One non-blocking write; false when the message was not sent whole.
    fn write(&self, buf: &[u8]) -> bool {
        match &self.sink {
            Sink::Udp(s) => s.send(buf).is_ok_and(|n| n == buf.len()),
            Sink::Unix(s, path) => s.send_to(buf, path).is_ok_and(|n| n == buf.len()),
            Sink::Fd(fd) => write_if_ready(*fd, buf),
        }
    }
}

/// Writes to stdout/stderr only if that does not block: `poll` with no wait first (a pipe
/// reports writable with at least `PIPE_BUF` bytes free, and lines are at most `len` long).
/// The descriptor itself stays blocking: it is shared with the rest of the process.
fn write_if_ready(fd: i32, buf: &[u8]) -> bool {
    // Serialises whole lines between threads: a line is written by one write(2) under the lock.
    static LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own; fds 1 and 2 stay open for the life of the process.
    let ready = unsafe { libc::poll(&raw mut p, 1, 0) } == 1 && p.revents & libc::POLLOUT != 0;
    if !ready {
        return false;
    }
    let _g = LOCK.lock();
    // SAFETY: write(2) from a live slice to an open fd.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    n == buf.len() as isize
}

/// `IP[:PORT]` of a UDP syslog target; the port defaults to 514.
fn parse_udp_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s
        .strip_prefix("udp@")
        .or_else(|| s.strip_prefix("udp4@"))
        .or_else(|| s.strip_prefix("udp6@"))
        .or_else(|| s.strip_prefix("ipv4@"))
        .or_else(|| s.strip_prefix("ipv6@"))
        .unwrap_or(s);
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 514));
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 514));
    }
    Err(format!(
        "target '{s}' is not IP[:PORT], a path, stdout or stderr (lb sends syslog over UDP or \
         to a unix socket)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Loc;
    use std::sync::Arc;

    fn line(args: &str) -> LogTarget {
        LogTarget {
            loc: Loc {
                file: Arc::new("t.cfg".into()),
                line: 3,
            },
            args: args.split(' ').map(str::to_owned).collect(),
        }
    }

    fn hdr(pid: u32) -> Header {
        Header {
            tag: "lb".into(),
            pid,
            host: None,
        }
    }

    #[test]
    fn log_send_hostname_and_log_tag() {
        let tg = Target::open(&line("127.0.0.1 local0")).unwrap();
        let h = Header {
            tag: "db-lb".into(),
            pid: 9,
            host: Some("lb1".into()),
        };
        assert_eq!(
            tg.render(INFO, "m", &h, &t()),
            "<134>Aug  5 18:04:02 lb1 db-lb[9]: m"
        );
        let tg = Target::open(&line("127.0.0.1 format rfc5424 local0")).unwrap();
        assert_eq!(
            tg.render(INFO, "m", &h, &t()),
            "<134>1 2020-08-05T18:04:02.387123+02:00 lb1 db-lb 9 - - m"
        );
    }

    fn t() -> LocalTime {
        LocalTime {
            year: 2020,
            month: 8,
            day: 5,
            hour: 18,
            min: 4,
            sec: 2,
            millis: 387,
            micros: 387_123,
            gmtoff: 7200,
            epoch: 0,
        }
    }

    #[test]
    fn rfc3164_is_haproxys_default() {
        let tg = Target::open(&line("127.0.0.1:5514 local0")).unwrap();
        assert_eq!(
            tg.render(INFO, "hello", &hdr(42), &t()),
            "<134>Aug  5 18:04:02 lb[42]: hello"
        );
        let tg = Target::open(&line("127.0.0.1 daemon notice")).unwrap();
        assert_eq!(tg.level, NOTICE);
        assert_eq!(
            tg.render(ERR, "x", &hdr(1), &t()),
            "<27>Aug  5 18:04:02 lb[1]: x"
        );
    }

    #[test]
    fn other_formats() {
        let r = |spec: &str| {
            Target::open(&line(spec))
                .unwrap()
                .render(INFO, "m", &hdr(7), &t())
        };
        assert_eq!(r("stdout format raw daemon"), "m");
        assert_eq!(r("stderr format short local0"), "<6>m");
        assert_eq!(r("127.0.0.1 format priority local0"), "<134>m");
        assert_eq!(
            r("127.0.0.1 format iso local0"),
            "2020-08-05T18:04:02.387123+02:00 m"
        );
        assert_eq!(
            r("127.0.0.1 format rfc5424 local0"),
            "<134>1 2020-08-05T18:04:02.387123+02:00 - lb 7 - - m"
        );
    }

    #[test]
    fn levels_filter_and_minlevel_raises() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let tg = Target::open(&line(&format!("127.0.0.1:{port} local0 notice err"))).unwrap();
        tg.send(INFO, "filtered", &hdr(1));
        tg.send(WARNING, "kept", &hdr(1));
        tg.send(0, "capped", &hdr(1));
        let mut buf = [0u8; 256];
        let mut recv = || {
            let n = sock.recv(&mut buf).unwrap();
            std::str::from_utf8(&buf[..n]).unwrap().to_owned()
        };
        // warning (4) is not more severe than err: local0 (16) * 8 + 4 = 132.
        let got = recv();
        assert_eq!(got, format!("<132>{} lb[1]: kept\n", &got[5..20]));
        // emerg (0) is more severe than err (3): capped to err, 131.
        let got = recv();
        assert!(
            got.starts_with("<131>") && got.ends_with("lb[1]: capped\n"),
            "{got}"
        );
    }

    #[test]
    fn a_missing_receiver_drops_without_blocking() {
        let tg = Target::open(&line("/nonexistent/dev/log local0")).unwrap();
        for _ in 0..3 {
            tg.send(INFO, "x", &hdr(1));
        }
        assert_eq!(tg.dropped(), 3);
    }

    #[test]
    fn long_messages_are_cut_at_len() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let tg = Target::open(&line(&format!("127.0.0.1:{port} len 100 local0"))).unwrap();
        tg.send(INFO, &"y".repeat(500), &hdr(1));
        let mut buf = [0u8; 1024];
        assert_eq!(sock.recv(&mut buf).unwrap(), 100);
    }

    #[test]
    fn bad_targets_say_why() {
        let e = Target::open(&line("not-an-ip local0")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("t.cfg:3: 'log not-an-ip local0': target"));
    }
}
