//! The host's file system and resolver, as seen from outside `chroot`.
//!
//! `HAProxy` reloads by starting a new process outside the chroot (the master parses, the
//! workers chroot). lb reloads in-process, so once it has entered its `chroot` it would read the
//! `-f` files, `/etc/resolv.conf`, the server-state file and `/etc/hosts` (through the system
//! resolver) inside the chroot, where they usually are not. Before it chroots, lb therefore
//! forks a helper ([`start`]) that keeps the host's view and does exactly these things for it:
//! read a file, resolve a name, write the pid file, remove a file (the pid file and runtime
//! sockets at exit). The
//! helper runs as the same user and group as lb after its drop, so it can do nothing lb's user
//! could not do outside the chroot; it holds no listening socket or map (they are closed in it)
//! and dies with lb (`PR_SET_PDEATHSIG`).
//!
//! Without `chroot` no helper runs and every call goes straight to the file system.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The connection to the helper, once started.
static HELPER: OnceLock<Mutex<UnixStream>> = OnceLock::new();

/// Largest message either side accepts (a configuration file, an answer).
const MAX_MESSAGE: usize = 64 << 20;

/// The host's name (`gethostname`: the kernel's, so it answers inside a chroot too);
/// `localhost` when it has none.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Reads a whole file (from outside the chroot when lb is in one).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    match HELPER.get() {
        None => std::fs::read(path),
        Some(h) => ask(h, b'R', path.as_os_str().as_encoded_bytes()),
    }
}

/// `-f PATH`'s files: `None` when PATH is not a directory (it is read as a file); for a
/// directory, HAProxy's rule (`haproxy -f DIR`): its regular files (symbolic links followed)
/// whose name ends in `.cfg` and does not start with `.`, in byte order of their names (from
/// outside the chroot when lb is in one, so a reload sees files added since).
pub fn cfg_files(path: &Path) -> io::Result<Option<Vec<PathBuf>>> {
    match HELPER.get() {
        None => cfg_files_here(path),
        Some(h) => {
            let answer = ask(h, b'D', path.as_os_str().as_encoded_bytes())?;
            Ok(match answer.split_first() {
                Some((b'D', names)) => Some(
                    names
                        .split(|b| *b == 0)
                        .filter(|n| !n.is_empty())
                        // SAFETY: the helper sent `as_encoded_bytes` of paths (same platform).
                        .map(|n| PathBuf::from(unsafe { OsStr::from_encoded_bytes_unchecked(n) }))
                        .collect(),
                ),
                _ => None,
            })
        }
    }
}

fn cfg_files_here(path: &Path) -> io::Result<Option<Vec<PathBuf>>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(None);
    }
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    let mut files = Vec::new();
    for name in names {
        let n = name.as_encoded_bytes();
        // HAProxy's test: the first ".cfg" in the name is its end.
        let cfg = n.windows(4).position(|w| w == b".cfg") == n.len().checked_sub(4);
        if n.first() == Some(&b'.') || !cfg {
            continue;
        }
        let file = path.join(&name);
        if std::fs::metadata(&file)?.is_file() {
            files.push(file);
        }
    }
    Ok(Some(files))
}

/// Reads a whole file as UTF-8 text (lossy).
pub fn read_to_string(path: &Path) -> io::Result<String> {
    read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Writes a whole file (outside the chroot when lb is in one): the pid file.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    match HELPER.get() {
        None => std::fs::write(path, data),
        Some(h) => {
            let mut req = path.as_os_str().as_encoded_bytes().to_vec();
            req.push(0);
            req.extend_from_slice(data);
            ask(h, b'W', &req).map(drop)
        }
    }
}

/// Removes a file (outside the chroot when lb is in one). Errors are the caller's to ignore.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match HELPER.get() {
        None => std::fs::remove_file(path),
        Some(h) => ask(h, b'U', path.as_os_str().as_encoded_bytes()).map(drop),
    }
}

/// Resolves `name` with the system resolver (outside the chroot when lb is in one), keeping
/// only IPv4 (`Some(false)`) or IPv6 (`Some(true)`) answers when asked; the first address wins,
/// in `getaddrinfo` order.
pub fn resolve(name: &str, port: u16, ipv6: Option<bool>) -> Result<SocketAddr, String> {
    match HELPER.get() {
        None => resolve_here(name, port, ipv6),
        Some(h) => {
            let mut req = vec![match ipv6 {
                None => b'-',
                Some(false) => b'4',
                Some(true) => b'6',
            }];
            req.extend_from_slice(&port.to_be_bytes());
            req.extend_from_slice(name.as_bytes());
            let answer = ask(h, b'N', &req).map_err(|e| format!("cannot resolve '{name}': {e}"))?;
            String::from_utf8_lossy(&answer)
                .parse()
                .map_err(|_| format!("cannot resolve '{name}': bad answer from the helper"))
        }
    }
}

fn resolve_here(name: &str, port: u16, ipv6: Option<bool>) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs = (name, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{name}': {e}"))?;
    addrs
        .into_iter()
        .find(|a| ipv6.is_none_or(|v6| a.is_ipv6() == v6))
        .ok_or_else(|| format!("cannot resolve '{name}': no address of the requested family"))
}

/// Sends one request and reads its answer (`O` + bytes, or `E` + message).
fn ask(helper: &Mutex<UnixStream>, op: u8, arg: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = helper
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut msg = Vec::with_capacity(arg.len() + 1);
    msg.push(op);
    msg.extend_from_slice(arg);
    send(&mut s, &msg)?;
    let answer = recv(&mut s)?;
    match answer.split_first() {
        Some((b'O', rest)) => Ok(rest.to_vec()),
        Some((b'E', rest)) => Err(io::Error::other(String::from_utf8_lossy(rest).into_owned())),
        _ => Err(io::Error::other("malformed answer from the chroot helper")),
    }
}

fn send(s: &mut UnixStream, msg: &[u8]) -> io::Result<()> {
    let len = u32::try_from(msg.len()).map_err(|_| io::Error::other("message too large"))?;
    s.write_all(&len.to_be_bytes())?;
    s.write_all(msg)
}

fn recv(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::other("message too large"));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Forks the helper. Call while lb has one thread, before entering the chroot; `drop_privileges`
/// is lb's drop (`setgroups`/`setgid`/`setuid`), run in the helper at once (`false`: it
/// failed, and the helper exits).
pub fn start(drop_privileges: impl FnOnce() -> bool) -> io::Result<()> {
    let (ours, theirs) = UnixStream::pair()?;
    // SAFETY: lb has a single thread here (checked by the caller's order: before any thread is
    // spawned), so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(ours);
            let code = helper_main(theirs, drop_privileges);
            // SAFETY: leaves the child without running lb's destructors (they belong to lb).
            unsafe { libc::_exit(code) }
        }
        _ => {
            drop(theirs);
            HELPER
                .set(Mutex::new(ours))
                .map_err(|_| io::Error::other("chroot helper started twice"))
        }
    }
}

/// The helper's life: serve requests until lb goes away.
fn helper_main(sock: UnixStream, drop_privileges: impl FnOnce() -> bool) -> i32 {
    // SAFETY: plain syscalls on our own process. The socket is moved to fd 3 and every other
    // fd above 2 is closed: listening sockets and BPF maps must not live on in the helper.
    let mut sock = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::dup2(sock.as_raw_fd(), 3) < 0 {
            return 1;
        }
        drop(sock);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        UnixStream::from_raw_fd(3)
    };
    if !drop_privileges() {
        return 1;
    }
    loop {
        let Ok(msg) = recv(&mut sock) else { return 0 };
        let answer = match msg.split_first() {
            Some((op, arg)) => serve(*op, arg),
            None => Err("empty request".to_owned()),
        };
        let reply = match answer {
            Ok(mut data) => {
                data.insert(0, b'O');
                data
            }
            Err(e) => [b"E".as_slice(), e.as_bytes()].concat(),
        };
        if send(&mut sock, &reply).is_err() {
            return 0;
        }
    }
}

/// One request in the helper.
fn serve(op: u8, arg: &[u8]) -> Result<Vec<u8>, String> {
    let path = || {
        // SAFETY: the bytes came from `as_encoded_bytes` of an `OsStr` in lb (same platform).
        Path::new(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(arg) })
    };
    match op {
        b'R' => std::fs::read(path()).map_err(|e| e.to_string()),
        b'W' => {
            let Some(nul) = arg.iter().position(|b| *b == 0) else {
                return Err("malformed write request".to_owned());
            };
            // SAFETY: as above, the path's bytes came from an `OsStr` in lb.
            let p =
                Path::new(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(&arg[..nul]) });
            std::fs::write(p, &arg[nul + 1..])
                .map(|()| Vec::new())
                .map_err(|e| e.to_string())
        }
        b'D' => match cfg_files_here(path()).map_err(|e| e.to_string())? {
            None => Ok(b"F".to_vec()),
            Some(files) => {
                let mut answer = b"D".to_vec();
                for f in files {
                    answer.extend_from_slice(f.as_os_str().as_encoded_bytes());
                    answer.push(0);
                }
                Ok(answer)
            }
        },
        b'U' => std::fs::remove_file(path())
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
        b'N' if arg.len() >= 3 => {
            let ipv6 = match arg[0] {
                b'4' => Some(false),
                b'6' => Some(true),
                _ => None,
            };
            let port = u16::from_be_bytes([arg[1], arg[2]]);
            let name = String::from_utf8_lossy(&arg[3..]);
            resolve_here(&name, port, ipv6).map(|a| a.to_string().into_bytes())
        }
        _ => Err("unknown request".to_owned()),
    }
}

/// Enters `dir` as the root directory (`chroot` then `chdir("/")`).
pub fn enter_chroot(dir: &Path) -> io::Result<()> {
    nix::unistd::chroot(dir).map_err(io::Error::from)?;
    nix::unistd::chdir("/").map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_the_helper() {
        let dir = std::env::temp_dir().join(format!("lb-outside-{}", std::process::id()));
        std::fs::write(&dir, b"abc").unwrap();
        let p = dir.as_os_str().as_encoded_bytes();
        assert_eq!(serve(b'R', p).unwrap(), b"abc");
        let mut w = p.to_vec();
        w.push(0);
        w.extend_from_slice(b"xyz");
        assert!(serve(b'W', &w).is_ok());
        assert_eq!(serve(b'R', p).unwrap(), b"xyz");
        assert!(serve(b'W', p).is_err(), "no NUL: malformed, not a panic");
        assert!(serve(b'U', p).is_ok());
        assert!(serve(b'R', p).is_err());
        let mut req = vec![b'4'];
        req.extend_from_slice(&80u16.to_be_bytes());
        req.extend_from_slice(b"127.0.0.1");
        assert_eq!(serve(b'N', &req).unwrap(), b"127.0.0.1:80");
        // A file is not a directory of configuration files; a directory lists its `.cfg`
        // files as `haproxy -f DIR` does.
        let d = std::env::temp_dir().join(format!("lb-outside-dir-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub.cfg")).unwrap();
        for f in [
            "b.cfg",
            "a.cfg",
            ".hidden.cfg",
            "notes.txt",
            "x.cfg.bak",
            "y.cfg.cfg",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        std::fs::write(&dir, b"abc").unwrap();
        assert_eq!(serve(b'D', p).unwrap(), b"F");
        let mut listed = b"D".to_vec();
        for f in ["a.cfg", "b.cfg"] {
            listed.extend_from_slice(d.join(f).as_os_str().as_encoded_bytes());
            listed.push(0);
        }
        assert_eq!(
            serve(b'D', d.as_os_str().as_encoded_bytes()).unwrap(),
            listed
        );
        assert_eq!(
            cfg_files_here(&d).unwrap(),
            Some(vec![d.join("a.cfg"), d.join("b.cfg")])
        );
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(serve(b'D', p).is_err(), "gone: an error");
        // Malformed requests are answered with an error, never a panic.
        assert!(serve(b'N', b"4").is_err());
        assert!(serve(b'?', b"").is_err());
    }
}
