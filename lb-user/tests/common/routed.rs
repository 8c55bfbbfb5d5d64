//! A routed topology of a test's own, three network namespaces, IPv4 and IPv6 on both links:
//!
//! ```text
//! client 10.77.1.2/24 ── 10.77.1.1 [lb, ip_forward] 10.77.2.1 ── 10.77.2.2/24 server
//! (default via 10.77.1.1)                                   (default via 10.77.2.1)
//! client 2001:db8:77::2/64 ── ::1 [lb] 2001:db8:78::1 ── 2001:db8:78::2/64 server
//!                                                       (default via 2001:db8:78::1)
//! ```
//!
//! The lb namespace routes between the two others; each test adds its own policy routing
//! there (`tproxy.rs`: the server's answers to the client's addresses are for lb's
//! transparent sockets; `origdst.rs`: the client's connections to the server are for lb).
//! Traffic stays inside the three namespaces. Dropping the [`Routed`] deletes them (and the
//! veths with them): stop the processes running inside first.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::netns::{exec_in, ip};

pub const CLIENT: &str = "10.77.1.2";
pub const LB_CLIENT_SIDE: &str = "10.77.1.1";
pub const LB_SERVER_SIDE: &str = "10.77.2.1";
pub const SERVER: &str = "10.77.2.2";
pub const CLIENT6: &str = "2001:db8:77::2";
pub const LB_CLIENT_SIDE6: &str = "2001:db8:77::1";
pub const LB_SERVER_SIDE6: &str = "2001:db8:78::1";
pub const SERVER6: &str = "2001:db8:78::2";

/// The three namespaces and lb's two interfaces.
pub struct Routed {
    pub client: String,
    pub lb: String,
    pub server: String,
    /// lb's interface towards the client.
    pub to_client: String,
    /// lb's interface towards the server.
    pub to_server: String,
}

impl Routed {
    /// Namespaces `<tag><pid>x<n>c|l|s`; interfaces `<letter><pid % 10^6>x<n>...`.
    pub fn new(tag: &str, letter: char) -> Routed {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = |role: &str| format!("{tag}{pid}x{n}{role}");
        // Interface names: 15 bytes at most.
        let short = |role: &str| format!("{letter}{}x{n}{role}", pid % 1_000_000);
        let t = Routed {
            client: name("c"),
            lb: name("l"),
            server: name("s"),
            to_client: short("lc"),
            to_server: short("ls"),
        };
        for ns in [&t.client, &t.lb, &t.server] {
            // A namespace of that name can only be a leftover of a process with our pid.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // No duplicate address detection on the links made next: their IPv6 addresses,
            // link-local ones too, are usable at once.
            exec_in(
                ns,
                &["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"],
            );
        }
        let link = |ns: &str, ifname: &str, lb_if: &str, addr: &str, lb_addr: &str| {
            ip(&[
                "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", lb_if, "netns",
                &t.lb,
            ]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
            ip(&["-n", ns, "route", "add", "default", "via", lb_addr]);
            ip(&[
                "-n",
                &t.lb,
                "addr",
                "add",
                &format!("{lb_addr}/24"),
                "dev",
                lb_if,
            ]);
            ip(&["-n", &t.lb, "link", "set", lb_if, "up"]);
        };
        link(&t.client, &short("c"), &t.to_client, CLIENT, LB_CLIENT_SIDE);
        link(&t.server, &short("s"), &t.to_server, SERVER, LB_SERVER_SIDE);
        for (ns, ifname, addr) in [
            (&t.client, short("c"), CLIENT6),
            (&t.lb, t.to_client.clone(), LB_CLIENT_SIDE6),
            (&t.lb, t.to_server.clone(), LB_SERVER_SIDE6),
            (&t.server, short("s"), SERVER6),
        ] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                &ifname,
                "nodad",
            ]);
        }
        ip(&[
            "-6",
            "-n",
            &t.server,
            "route",
            "add",
            "default",
            "via",
            LB_SERVER_SIDE6,
        ]);
        exec_in(&t.lb, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        t
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.lb, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
