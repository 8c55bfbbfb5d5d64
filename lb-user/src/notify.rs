//! systemd's readiness protocol (`sd_notify(3)`), for `Type=notify` units: one datagram per
//! state change to the socket named in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). `READY=1` once lb serves, `RELOADING=1` (with `MONOTONIC_USEC`, as systemd
//! ≥ 253 requires for `Type=notify-reload`) then `READY=1` around a SIGHUP reload, and
//! `STOPPING=1` when lb stops. Without `$NOTIFY_SOCKET` every call does nothing.
//!
//! The socket is connected when lb starts, before `chroot` and the privilege drop, so that
//! messages still reach systemd from inside the chroot and as the unprivileged user.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const ENV: &str = "NOTIFY_SOCKET";

/// Where `$NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(std::path::PathBuf),
    /// `@name`: the abstract namespace (the name without the `@`).
    Abstract(Vec<u8>),
}

/// Reads `$NOTIFY_SOCKET`'s value: `/path` or `@abstract`. systemd also documents `vsock:`
/// addresses (for virtual machines), which lb does not speak.
pub fn parse_target(value: &str) -> Result<Target, String> {
    if let Some(name) = value.strip_prefix('@') {
        if name.is_empty() {
            return Err("'@' without a name".to_owned());
        }
        return Ok(Target::Abstract(name.as_bytes().to_vec()));
    }
    if value.starts_with('/') {
        return Ok(Target::Path(value.into()));
    }
    Err(format!(
        "'{value}' is neither an absolute path nor an @abstract name"
    ))
}

/// The notification socket, or nothing when lb does not run under a `Type=notify` unit.
#[derive(Debug, Default)]
pub struct Notifier {
    sock: Option<UnixDatagram>,
}

impl Notifier {
    /// Takes `$NOTIFY_SOCKET` out of the environment (the external health checks lb starts
    /// must not notify in its name) and connects to it. A value lb can't use is reported and
    /// ignored: systemd then times the start out, which names the problem in its own log.
    ///
    /// Call it while the process has one thread (it changes the environment).
    pub fn from_env() -> Self {
        let Some(value) = std::env::var_os(ENV) else {
            return Self::default();
        };
        std::env::remove_var(ENV);
        let value = value.to_string_lossy();
        match parse_target(&value).and_then(|t| connect(&t).map_err(|e| e.to_string())) {
            Ok(sock) => Self { sock: Some(sock) },
            Err(e) => {
                log::warn!("{ENV}={value}: {e}; systemd will not hear from lb");
                Self::default()
            }
        }
    }

    /// Whether lb runs under a `Type=notify` unit.
    pub fn active(&self) -> bool {
        self.sock.is_some()
    }

    /// Sends `message` (`KEY=VALUE` lines) as one datagram. A failure is logged, never fatal:
    /// the service must go on serving even if systemd stopped listening.
    pub fn send(&self, message: &str) {
        let Some(sock) = &self.sock else { return };
        if let Err(e) = sock.send(message.as_bytes()) {
            log::warn!("{ENV}: cannot send {:?}: {e}", message.lines().next());
        }
    }

    /// `READY=1`: lb serves (after `lb ready`, and again after each reload).
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    /// `RELOADING=1` with the time the reload starts, before the configuration is read again.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`: lb has been told to stop.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

fn connect(target: &Target) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    match target {
        Target::Path(p) => sock.connect(p)?,
        Target::Abstract(name) => sock.connect_addr(&SocketAddr::from_abstract_name(name)?)?,
    }
    Ok(sock)
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/run/systemd/notify"),
            Ok(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target("@/org/freedesktop/systemd1/notify/42"),
            Ok(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/42".to_vec()
            ))
        );
        assert!(parse_target("@").is_err());
        assert!(parse_target("vsock:2:1234")
            .unwrap_err()
            .contains("vsock:2:1234"));
        assert!(parse_target("relative/path").is_err());
    }

    #[test]
    fn messages_reach_an_abstract_socket_in_order() {
        let name = format!("lb-notify-unit-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let n = Notifier {
            sock: Some(connect(&parse_target(&format!("@{name}")).unwrap()).unwrap()),
        };
        assert!(n.active());
        let before = monotonic_usec();
        n.ready("serving");
        n.reloading();
        n.stopping();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert!(
            got[0].starts_with("READY=1\nSTATUS=serving\nMAINPID="),
            "{got:?}"
        );
        assert!(got[1].starts_with("RELOADING=1\n"), "{got:?}");
        let usec: u64 = got[1]
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec >= before && usec <= monotonic_usec(), "{usec}");
        assert!(got[2].starts_with("STOPPING=1"), "{got:?}");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier::default();
        assert!(!n.active());
        n.ready("x");
        n.stopping();
    }
}
