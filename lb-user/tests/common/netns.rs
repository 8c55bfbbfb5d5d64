//! Network namespaces a test makes for itself: one Ethernet segment (a bridge, alone in its own
//! namespace) and hosts on it, each a namespace with one veth into the bridge. Names carry the
//! test process's pid and a counter, so tests running at the same moment never meet. Dropping
//! the [`Segment`] deletes every namespace it made (and with them every veth): stop the
//! processes running inside first (a namespace lives on while a process is in it).
//!
//! Traffic stays inside: hosts have an address on the segment and no route elsewhere, and the
//! test's own sockets are opened inside a host's namespace with [`in_netns`].

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// Runs `ip ARGS`; panics with its stderr if it fails.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `cmd ARGS` inside namespace `ns` (`ip netns exec`); panics with its stderr if it fails.
pub fn exec_in(ns: &str, cmd: &[&str]) -> String {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    run("ip", &args)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it opens live there (a socket
/// keeps its namespace wherever it is used later). Only that thread changes namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open /run/netns/{ns}: {e}"));
    thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            // SAFETY: setns(2) on an fd we hold open; it changes this thread's namespace only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .expect("spawn a thread")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A host on the segment: its namespace, its interface and its address (a /24).
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub ifname: String,
    pub addr: Ipv4Addr,
}

impl Host {
    /// Whether `addr` is on this host's interface now (`ip -o addr show`).
    pub fn has_addr(&self, addr: Ipv4Addr) -> bool {
        let out = run(
            "ip",
            &[
                "-n",
                &self.ns,
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                &self.ifname,
            ],
        );
        out.split_whitespace()
            .any(|w| w.split('/').next() == Some(&addr.to_string()))
    }

    /// Sets a sysctl in this host's namespace (e.g. `net.ipv4.ip_nonlocal_bind=1`).
    pub fn sysctl(&self, setting: &str) {
        exec_in(&self.ns, &["sysctl", "-q", "-w", setting]);
    }
}

/// A bridge in its own namespace and the hosts plugged into it. Drop deletes them all.
pub struct Segment {
    /// Prefix of every name: `<tag><pid>x<n>`.
    pub prefix: String,
    /// Short prefix for interface names (15 bytes at most in Linux).
    short: String,
    bridge_ns: String,
    hosts: Vec<String>,
}

impl Segment {
    /// A new empty segment: namespace `<tag><pid>x<n>br` holding bridge `br0`.
    pub fn new(tag: &str) -> Segment {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("{tag}{pid}x{n}");
        let short = format!("v{}x{n}", pid % 1_000_000);
        let seg = Segment {
            bridge_ns: format!("{prefix}br"),
            prefix,
            short,
            hosts: Vec::new(),
        };
        // A namespace of that name can only be a leftover of a process with our pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &seg.bridge_ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &seg.bridge_ns]);
        let br = seg.bridge_ns.clone();
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        seg
    }

    /// Adds host `role` (one letter or two) with address `addr`/24 on a veth into the bridge.
    pub fn host(&mut self, role: &str, addr: Ipv4Addr) -> Host {
        let ns = format!("{}{role}", self.prefix);
        let ifname = format!("{}{role}", self.short);
        let peer = format!("{ifname}p");
        assert!(peer.len() <= 15, "interface name {peer} too long");
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        ip(&[
            "link",
            "add",
            &ifname,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &self.bridge_ns,
        ]);
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &peer,
            "master",
            "br0",
            "up",
        ]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &ifname,
        ]);
        ip(&["-n", &ns, "link", "set", &ifname, "up"]);
        Host { ns, ifname, addr }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let ok = Command::new("ip")
                .args(["netns", "del", ns])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("netns: could not delete namespace {ns}");
            }
        }
    }
}
