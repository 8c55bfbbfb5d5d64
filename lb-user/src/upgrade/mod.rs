//! Binary upgrade, as HAProxy's `-x`: the running lb hands its listening sockets over its
//! runtime API socket (`_getsocks`, on a `stats socket` with `expose-fd listeners`), the new lb
//! serves on those very socket objects (their accept queues with them), then soft-stops the
//! old one (`-sf PID`): it stops accepting and exits once its flows are gone. Not one
//! connection is refused or reset: the queues are shared, and the old process never shuts the
//! handed-over sockets down.
//!
//! Beyond HAProxy, the new lb then takes the old one's established flows too (`_getflows`,
//! lb's own command, on the same socket: [`give`], [`take`], [`wire`]), so the old process
//! exits at once; flows in the kernel maps move in place, with the maps
//! (`dataplane::sockmap::adopt`). A flow it can't hand over (half-closed, still in its rules
//! or connecting) stays with it until it ends, as with HAProxy; `hard-stop-after` bounds
//! that.
//!
//! The wire format is HAProxy 2.6's (`src/cli.c` `_getsocks`, `src/sock.c`
//! `sock_get_old_sockets`): the new side sends `_getsocks\n`; the old one answers the number
//! of sockets (a native-endian `int`), then batches of at most [`MAX_SEND_FD`] sockets, each
//! batch one `sendmsg` with the fds as `SCM_RIGHTS` and, per fd, `<ns len><ns><if len><if>`
//! and 4 zero bytes; the new side acknowledges each batch with an `int`.

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrStorage};

use crate::config::BindOptions;

#[cfg(test)]
mod exchange_tests;
mod give;
mod soft_stop;
mod take;
mod wire;

pub use give::give_flows;
pub use soft_stop::{is_soft_stopped, soft_stop, soft_stopped, unfinished, StopWait, Unfinished};
pub use take::take_flows;

/// Sockets per `sendmsg`, as HAProxy (`MAX_SEND_FD`): the kernel takes at most 253 fds in one
/// `SCM_RIGHTS` message (`SCM_MAX_FD`).
pub const MAX_SEND_FD: usize = 253;

/// How long either side waits for the other (HAProxy sets 1 s `SO_RCVTIMEO` on both ends).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most sockets a new process accepts from an old one: more is a bad answer, not a process.
const MAX_SOCKETS: i32 = 1 << 16;

/// Largest per-socket record: two length bytes, a namespace name (HAProxy allows a path),
/// an interface name (`IFNAMSIZ`) and 4 bytes.
const MAX_RECORD: usize = 1 + 4096 + 1 + 16 + 4;

/// What can go wrong fetching the sockets of the old process (`-x`).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("-x {path}: cannot connect to the old process's runtime API socket: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "-x {path}: the old process sent no sockets (its `stats socket {path}` line needs \
         `expose-fd listeners`, and it must listen on something)"
    )]
    NoSockets { path: PathBuf },
    #[error("-x {path}: bad answer from the old process: {why}")]
    BadAnswer { path: PathBuf, why: String },
    #[error("-x {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

// ----- the old process: what it can hand over -----

/// A frontend address's listening sockets, as handed out by `_getsocks`.
struct Exposed {
    interface: Option<String>,
    fds: Vec<OwnedFd>,
}

/// Every frontend address's sockets (duplicates of [`crate::listener::Listeners`]' own), kept
/// for `_getsocks` on the control thread.
fn exposed() -> &'static Mutex<HashMap<SocketAddr, Exposed>> {
    static EXPOSED: OnceLock<Mutex<HashMap<SocketAddr, Exposed>>> = OnceLock::new();
    EXPOSED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Set once `_getsocks` handed the sockets out: they are shared with another process from
/// then on, and this one must never shut them down (that would stop the other's listeners
/// too); it only closes its descriptors.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Whether the listening sockets were handed to another process.
pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::Acquire)
}

/// Records `addr`'s freshly bound (or inherited) sockets for `_getsocks`.
pub fn expose(addr: SocketAddr, opts: &BindOptions, socks: &[TcpListener]) {
    let fds = socks
        .iter()
        .filter_map(|s| s.as_fd().try_clone_to_owned().ok())
        .collect();
    let e = Exposed {
        interface: opts.interface.clone(),
        fds,
    };
    lock(exposed()).insert(addr, e);
}

/// Forgets `addr`'s sockets (unbound, or removed by a reload).
pub fn withdraw(addr: &SocketAddr) {
    lock(exposed()).remove(addr);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One socket's record after its fd: no namespace, the interface name, 4 zero bytes (where
/// HAProxy before 2.3 put listener options).
fn record(interface: Option<&str>) -> Vec<u8> {
    let name = interface.map_or(&[][..], str::as_bytes);
    let name = &name[..name.len().min(255)];
    let mut r = Vec::with_capacity(2 + name.len() + 4);
    r.push(0);
    r.push(name.len() as u8);
    r.extend_from_slice(name);
    r.extend_from_slice(&[0; 4]);
    r
}

/// Answers `_getsocks` on `stream` (blocking, bounded by [`EXCHANGE_TIMEOUT`] per step), as
/// HAProxy does; returns how many sockets were sent. With nothing to send it sends nothing
/// (HAProxy closes the connection), and the caller closes.
pub fn send_sockets(stream: &mut UnixStream) -> io::Result<usize> {
    let all: Vec<(RawFd, Vec<u8>)> = {
        let map = lock(exposed());
        let mut addrs: Vec<&SocketAddr> = map.keys().collect();
        addrs.sort();
        // Dups: the records stay valid even if a reload withdraws the address meanwhile.
        addrs
            .into_iter()
            .flat_map(|a| {
                let e = &map[a];
                e.fds.iter().map(|fd| {
                    // SAFETY: F_DUPFD_CLOEXEC on an fd the map keeps open during the call.
                    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
                    (dup, record(e.interface.as_deref()))
                })
            })
            .collect()
    };
    // SAFETY: each non-negative fd was just duplicated for us and is owned by nobody else.
    let owned: Vec<(OwnedFd, Vec<u8>)> = all
        .into_iter()
        .filter(|(fd, _)| *fd >= 0)
        .map(|(fd, r)| (unsafe { OwnedFd::from_raw_fd(fd) }, r))
        .collect();
    if owned.is_empty() {
        return Ok(0);
    }
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    let count = i32::try_from(owned.len()).unwrap_or(i32::MAX);
    stream.write_all(&count.to_ne_bytes())?;
    HANDED_OVER.store(true, Ordering::Release);
    for batch in owned.chunks(MAX_SEND_FD) {
        let fds: Vec<RawFd> = batch.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
        let data: Vec<u8> = batch.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        wire::send_with_fds(stream, &data, &fds)?;
        let mut ack = [0u8; 4];
        if stream.read(&mut ack)? == 0 {
            return Err(io::Error::other(
                "the new process closed before acknowledging",
            ));
        }
    }
    Ok(owned.len())
}

/// Handed-over sockets that no other process holds: the new process did not take them (HAProxy
/// takes one socket per `bind`; lb has one per thread). They leave with this process, and
/// the clients queued on them get a reset, unless `net.ipv4.tcp_migrate_req` moves them to
/// another socket of their `SO_REUSEPORT` group. Found by looking for the sockets' inodes in
/// every other process's fds, as `ss -p` does.
pub fn untaken() -> Vec<SocketAddr> {
    use std::os::unix::fs::MetadataExt as _;
    let mine: Vec<(SocketAddr, u64)> = lock(exposed())
        .iter()
        .flat_map(|(a, e)| {
            e.fds.iter().filter_map(move |fd| {
                let f = std::fs::File::from(fd.try_clone().ok()?);
                Some((*a, f.metadata().ok()?.ino()))
            })
        })
        .collect();
    let me = std::process::id().to_string();
    let mut held = std::collections::HashSet::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = p.file_name();
        let name = name.to_string_lossy();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for fd in std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.to_string_lossy();
                if let Some(ino) = link
                    .strip_prefix("socket:[")
                    .and_then(|l| l.strip_suffix(']'))
                {
                    if let Ok(ino) = ino.parse::<u64>() {
                        held.insert(ino);
                    }
                }
            }
        }
    }
    mine.into_iter()
        .filter(|(_, ino)| !held.contains(ino))
        .map(|(a, _)| a)
        .collect()
}

/// `net.ipv4.tcp_migrate_req`: a closed listener's queue moves to its reuseport group.
pub fn migrates_requests() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|s| s.trim() == "1")
}

// ----- the new process: what it takes over -----

/// A listening socket received from the old process, with what it was bound with.
#[derive(Debug)]
struct Inherited {
    addr: SocketAddr,
    interface: Option<String>,
    v6only: bool,
    transparent: bool,
    listener: TcpListener,
}

/// Sockets received with `-x`, until the first bind takes them ([`take`]) and
/// [`finish_inheriting`] closes the rest.
fn inherited() -> &'static Mutex<Vec<Inherited>> {
    static INHERITED: OnceLock<Mutex<Vec<Inherited>>> = OnceLock::new();
    INHERITED.get_or_init(|| Mutex::new(Vec::new()))
}

/// `-x PATH`: fetches the old process's listening sockets for [`take`] and says how many came,
/// and opens the connection on which [`take_flows`] later asks for its established flows.
pub fn inherit_from(path: &Path) -> Result<usize, UpgradeError> {
    let got = fetch(path)?;
    let n = got.len();
    lock(inherited()).extend(got);
    take::prepare(path);
    Ok(n)
}

/// The sockets the old process holds for `addr` bound as `opts` asks (same address, interface,
/// `v6only` and `transparent`), one per thread: all of those received, shared between threads
/// when fewer came than there are threads (HAProxy has one per `bind`). `None`: nothing to
/// inherit, bind afresh.
pub fn take(addr: SocketAddr, opts: &BindOptions, threads: usize) -> Option<Vec<TcpListener>> {
    let mut all = lock(inherited());
    let v6only = match opts.v6only {
        Some(v) => v,
        None => addr.is_ipv6() && !addr.ip().is_unspecified() && default_v6only(),
    };
    let mut mine = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let s = &all[i];
        let fits = s.addr == addr
            && s.interface == opts.interface
            && (!addr.is_ipv6() || s.v6only == v6only)
            && s.transparent == opts.transparent;
        if fits && mine.len() < threads {
            mine.push(all.swap_remove(i).listener);
        } else {
            i += 1;
        }
    }
    if mine.is_empty() {
        return None;
    }
    let received = mine.len();
    for t in received..threads {
        match mine[t % received].try_clone() {
            Ok(dup) => mine.push(dup),
            Err(e) => {
                log::warn!("{addr}: cannot share an inherited socket between threads: {e}");
                break;
            }
        }
    }
    log::info!("{addr}: serving on {received} socket(s) taken over from the old process");
    Some(mine)
}

/// Closes inherited sockets no `bind` took (their addresses left the configuration): the old
/// process still holds them until it exits.
pub fn finish_inheriting() {
    let left = std::mem::take(&mut *lock(inherited()));
    for s in &left {
        log::info!(
            "{}: socket from the old process not in the configuration; not taken",
            s.addr
        );
    }
}

/// `net.ipv6.bindv6only`: what an IPv6 socket's `IPV6_V6ONLY` is unless set.
fn default_v6only() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|s| s.trim() == "1")
}

/// The exchange with the old process (HAProxy's `sock_get_old_sockets`).
fn fetch(path: &Path) -> Result<Vec<Inherited>, UpgradeError> {
    let io_err = |source| UpgradeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |why: String| UpgradeError::BadAnswer {
        path: path.to_path_buf(),
        why,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| UpgradeError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io_err)?;
    stream.write_all(b"_getsocks\n").map_err(io_err)?;
    let mut count = [0u8; 4];
    let mut have = 0;
    while have < 4 {
        match stream.read(&mut count[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if have == 0 {
        return Err(UpgradeError::NoSockets {
            path: path.to_path_buf(),
        });
    }
    if have < 4 {
        return Err(bad(format!(
            "{have} byte(s) where the socket count was due"
        )));
    }
    let count = i32::from_ne_bytes(count);
    if count <= 0 || count > MAX_SOCKETS {
        return Err(bad(format!(
            "announces {count} sockets (the first bytes are {:?}: is it an lb or HAProxy \
             runtime API socket?)",
            String::from_utf8_lossy(&count.to_ne_bytes())
        )));
    }
    let expected = count as usize;
    let (fds, records) = receive(&mut stream, expected).map_err(|e| match e {
        Received::Io(e) => io_err(e),
        Received::Bad(why) => bad(why),
    })?;
    let infos = parse_records(&records, expected).map_err(bad)?;
    let mut out = Vec::new();
    for (fd, interface) in fds.into_iter().zip(infos) {
        match describe(fd, interface) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(out)
}

enum Received {
    Io(io::Error),
    Bad(String),
}

/// Receives `expected` fds and their records, acknowledging each message.
fn receive(stream: &mut UnixStream, expected: usize) -> Result<(Vec<OwnedFd>, Vec<u8>), Received> {
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(expected);
    let mut records: Vec<u8> = Vec::new();
    let limit = expected * MAX_RECORD;
    while fds.len() < expected {
        let room = (MAX_SEND_FD * MAX_RECORD).min(limit - records.len());
        if room == 0 {
            return Err(Received::Bad(
                "more record bytes than the announced sockets need".into(),
            ));
        }
        let mut buf = vec![0u8; room];
        let r = wire::recv_with_fds(stream, &mut buf, MAX_SEND_FD).map_err(Received::Io)?;
        let (n, got, truncated) = (r.bytes, r.fds, r.truncated);
        if n == 0 && got.is_empty() {
            return Err(Received::Bad(format!(
                "the connection ended after {} of {expected} sockets",
                fds.len()
            )));
        }
        // An ack the old process no longer waits for (HAProxy may close after its last batch)
        // is no error: HAProxy's own client ignores it too; a missing batch fails the read.
        let ack = i32::try_from(fds.len()).unwrap_or(i32::MAX).to_ne_bytes();
        let _ = stream.write_all(&ack);
        if truncated {
            return Err(Received::Bad("more fds in one message than fit".into()));
        }
        if fds.len() + got.len() > expected {
            return Err(Received::Bad(format!(
                "more sockets than the {expected} announced"
            )));
        }
        fds.extend(got);
        records.extend_from_slice(&buf[..n]);
    }
    Ok((fds, records))
}

/// Splits the records (one per fd, in order) into interface names; a namespace is refused
/// (lb has no `namespace` bind option).
fn parse_records(mut r: &[u8], expected: usize) -> Result<Vec<Option<String>>, String> {
    let mut out = Vec::with_capacity(expected);
    for i in 0..expected {
        let mut field = |what: &str| -> Result<Vec<u8>, String> {
            let (&len, rest) = r
                .split_first()
                .ok_or_else(|| format!("socket {i}: the record ends before its {what}"))?;
            let len = usize::from(len);
            if rest.len() < len {
                return Err(format!("socket {i}: the record ends inside its {what}"));
            }
            let (v, rest) = rest.split_at(len);
            r = rest;
            Ok(v.to_vec())
        };
        let ns = field("namespace")?;
        let iface = field("interface")?;
        if r.len() < 4 {
            return Err(format!("socket {i}: the record ends before its options"));
        }
        r = &r[4..];
        if !ns.is_empty() {
            return Err(format!(
                "socket {i} is in network namespace '{}' (lb binds in its own namespace only)",
                String::from_utf8_lossy(&ns)
            ));
        }
        out.push((!iface.is_empty()).then(|| String::from_utf8_lossy(&iface).into_owned()));
    }
    if !r.is_empty() {
        return Err(format!(
            "{} byte(s) after the last socket's record",
            r.len()
        ));
    }
    Ok(out)
}

/// What a received fd is: a listening TCP socket (kept), or anything else HAProxy exports
/// (unix or UDP sockets: closed, lb binds its own).
fn describe(fd: OwnedFd, interface: Option<String>) -> io::Result<Option<Inherited>> {
    let raw = fd.as_raw_fd();
    let addr: SockaddrStorage = getsockname(raw)?;
    let addr: SocketAddr = if let Some(a) = addr.as_sockaddr_in() {
        SocketAddr::V4((*a).into())
    } else if let Some(a) = addr.as_sockaddr_in6() {
        SocketAddr::V6((*a).into())
    } else {
        return Ok(None);
    };
    let fd_ref = fd.as_fd();
    if getsockopt(&fd_ref, sockopt::SockType)? != nix::sys::socket::SockType::Stream
        || !getsockopt(&fd_ref, sockopt::AcceptConn)?
    {
        log::info!("{addr}: a socket from the old process is not a TCP listener; not taken");
        return Ok(None);
    }
    let v6only = addr.is_ipv6() && getsockopt(&fd_ref, sockopt::Ipv6V6Only)?;
    let transparent = if addr.is_ipv6() {
        int_opt(raw, libc::SOL_IPV6, libc::IPV6_TRANSPARENT)? != 0
    } else {
        getsockopt(&fd_ref, sockopt::IpTransparent)?
    };
    let listener = TcpListener::from(fd);
    Ok(Some(Inherited {
        addr,
        interface,
        v6only,
        transparent,
        listener,
    }))
}

fn int_opt(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` outlive the call and `len` is `v`'s size.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &raw mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut r = record(None);
        r.extend(record(Some("lo")));
        assert_eq!(r, [0, 0, 0, 0, 0, 0, 0, 2, b'l', b'o', 0, 0, 0, 0]);
        assert_eq!(parse_records(&r, 2), Ok(vec![None, Some("lo".to_owned())]));
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(parse_records(&[0, 0, 0], 1)
            .unwrap_err()
            .contains("options"));
        assert!(parse_records(&[0, 5, b'a'], 1)
            .unwrap_err()
            .contains("inside its interface"));
        assert!(parse_records(&[2, b'n', b's', 0, 0, 0, 0, 0], 1)
            .unwrap_err()
            .contains("namespace 'ns'"));
        assert!(parse_records(&[0, 0, 0, 0, 0, 0, 9], 1)
            .unwrap_err()
            .contains("after the last"));
        assert!(parse_records(&[], 1).unwrap_err().contains("socket 0"));
    }
}
