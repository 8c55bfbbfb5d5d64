//! DNS re-resolution through the real lb against a real DNS server (dnsmasq on a loopback
//! port): `init-addr libc,none` starts a server in MAINT (resolution) and DNS brings it up,
//! an address change is applied live (new flows go to the new address, an established flow
//! stays), NXDOMAIN past `hold nx` puts the server in MAINT (resolution), and it comes back
//! when the name resolves again. Messages are HAProxy's, on stderr and as syslog notices.
//! `show resolvers` prints each nameserver's counters in HAProxy 2.6's text as lb counts them:
//! queries sent, valid answers, address updates, NXDOMAIN answers.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::ops::{Dnsmasq, IdentAt, Syslog};
use common::stats::{cli, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(follows_dns_changes_and_nxdomain);

const T: Duration = Duration::from_secs(15);

/// db.test answers 127.0.0.3 from now on (it answered 127.0.0.2): waits until server be/s1
/// took it, as HAProxy logs it.
fn moves_to_127_0_0_3(dns: &Dnsmasq, lb: &Lb) {
    dns.set_hosts("127.0.0.3 db.test\n");
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from 127.0.0.2 to 127.0.0.3 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
}

/// Connects, reads the server's name (empty when lb closed the connection instead).
fn who(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to lb");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.trim().to_string()
}

fn follows_dns_changes_and_nxdomain(dataplane: &str) {
    let port = free_port();
    let a = IdentAt::start(SocketAddr::from(([127, 0, 0, 2], port)), "a");
    let b = IdentAt::start(SocketAddr::from(([127, 0, 0, 3], port)), "b");
    let dns = Dnsmasq::start("127.0.0.2 db.test\n");
    let syslog = Syslog::start();
    let fe_port = free_port();
    let cfg = format!(
        "global\n    log 127.0.0.1:{} local0\n\n\
         resolvers local\n    nameserver ns1 {}\n    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 300ms\n    hold valid 200ms\n    hold nx 600ms\n\n\
         {DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe_port}\n    default_backend be\n\n\
         backend be\n    server s1 db.test:{port} resolvers local init-addr libc,none\n",
        syslog.addr.port(),
        dns.addr
    );
    let lb = Lb::start(&cfg, dataplane);
    let addr = local(fe_port);

    // Not resolvable by the system resolver: started in MAINT (resolution), then DNS answers.
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from (none) to 127.0.0.2 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    assert!(lb.wait_for_log("Server be/s1 ('db.test') is UP/READY (resolves again).", T));
    assert_eq!(who(addr), "a");
    // The change is a notice (local0 = 16: 16 * 8 + 5) on the syslog targets too.
    let notices = syslog.wait_for("be/s1 changed its IP from (none) to 127.0.0.2", 1, T);
    assert!(
        notices.first().is_some_and(|l| l.starts_with("<133>")),
        "{notices:?}"
    );

    // An established flow to the old address stays there across the change.
    let mut held = TcpStream::connect(addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 2];
    held.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"a\n");

    moves_to_127_0_0_3(&dns, &lb);
    assert_eq!(who(addr), "b");
    assert_eq!(who(addr), "b");
    held.write_all(b"still here").unwrap();
    held.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest)
        .expect("the established flow was not broken by the change");
    assert_eq!(b.accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

    // NXDOMAIN: after `hold nx` the server goes to MAINT (resolution); nothing is served.
    dns.set_hosts("");
    assert!(
        lb.wait_for_log(
            "Server be/s1 is going DOWN for maintenance (DNS NX status). 0 active and 0 backup \
             servers left.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    assert!(lb.wait_for_log("backend be has no server available!", T));
    let before = (
        a.accepted.load(std::sync::atomic::Ordering::SeqCst),
        b.accepted.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(
        who(addr),
        "",
        "a server in MAINT (resolution) must not be used"
    );
    assert_eq!(
        (
            a.accepted.load(std::sync::atomic::Ordering::SeqCst),
            b.accepted.load(std::sync::atomic::Ordering::SeqCst)
        ),
        before
    );

    // Back when the name resolves again (same address: no IP change line, just READY).
    let ready_lines = || {
        lb.logs()
            .iter()
            .filter(|l| l.contains("is UP/READY (resolves again)"))
            .count()
    };
    assert_eq!(ready_lines(), 1);
    dns.set_hosts("127.0.0.3 db.test\n");
    assert!(
        common::ops::wait(T, || ready_lines() == 2),
        "{:#?}",
        lb.logs()
    );
    assert_eq!(who(addr), "b");
}

/// The counters `show resolvers` gives nameserver `ns` of section `section` in `out` (empty
/// when absent).
fn ns_counters(out: &str, section: &str, ns: &str) -> HashMap<String, u64> {
    let mut lines = out
        .lines()
        .skip_while(|l| *l != format!("Resolvers section {section}"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .skip_while(|l| *l != format!(" nameserver {ns}:"))
        .skip(1);
    let mut got = HashMap::new();
    while let Some(l) = lines.next().filter(|l| l.starts_with("  ")) {
        let (k, v) = l.trim().split_once(':').expect("name: value");
        got.insert(k.to_owned(), v.trim().parse().expect("a count"));
    }
    got
}

/// `show resolvers` (at level user, as HAProxy's) after a server was resolved: the nameserver
/// used shows its queries, valid answers and the address update, no error; another section
/// shows zeros in HAProxy's exact text, the implicit `default` section is listed, an unknown
/// name gets HAProxy's error. A second address change counts a second update, and NXDOMAIN
/// answers count in `nx`.
#[test]
fn show_resolvers_counts_per_nameserver() {
    let port = free_port();
    let _a = IdentAt::start(SocketAddr::from(([127, 0, 0, 2], port)), "a");
    let _b = IdentAt::start(SocketAddr::from(([127, 0, 0, 3], port)), "b");
    let dns = Dnsmasq::start("127.0.0.2 db.test\n");
    let dir = SockDir::new("dns-show");
    let sock = dir.sock("user.sock");
    let fe_port = free_port();
    let cfg = format!(
        "global\n    stats socket {} level user\n\n\
         resolvers local\n    nameserver ns1 {}\n    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 300ms\n    hold valid 200ms\n    hold nx 60s\n\n\
         resolvers spare\n    nameserver other {}\n\n\
         {DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe_port}\n    default_backend be\n\n\
         backend be\n    server s1 db.test:{port} resolvers local init-addr libc,none resolve-prefer ipv4\n",
        sock.display(),
        dns.addr,
        dns.addr
    );
    let lb = Lb::start(&cfg, "sockmap");
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from (none) to 127.0.0.2 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    let ns1 = || ns_counters(&cli(&sock, "show resolvers"), "local", "ns1");
    // A few resolutions (every 200 ms), each one valid A answer.
    assert!(
        common::ops::wait(T, || ns1().get("valid") >= Some(&3)),
        "{:?}",
        ns1()
    );
    let c = ns1();
    assert!(c["sent"] >= c["valid"], "{c:?}");
    assert_eq!(c["update"], 1, "{c:?}");
    for k in [
        "snd_error",
        "cname",
        "cname_error",
        "any_err",
        "nx",
        "timeout",
        "refused",
        "other",
        "invalid",
        "too_big",
        "truncated",
    ] {
        assert_eq!(c[k], 0, "{k}: {c:?}");
    }
    assert_eq!(c.len(), 15, "{c:?}");

    // One section by name: exactly HAProxy's text (an unused section counts nothing).
    assert_eq!(
        cli(&sock, "show resolvers spare"),
        "Resolvers section spare\n nameserver other:\n  sent:        0\n  snd_error:   0\n  \
         valid:       0\n  update:      0\n  cname:       0\n  cname_error: 0\n  \
         any_err:     0\n  nx:          0\n  timeout:     0\n  refused:     0\n  \
         other:       0\n  invalid:     0\n  too_big:     0\n  truncated:   0\n  \
         outdated:    0\n\n"
    );
    let local_only = cli(&sock, "show resolvers local");
    assert!(local_only.starts_with("Resolvers section local\n nameserver ns1:\n  sent:"));
    assert!(!local_only.contains("spare"), "{local_only}");
    // All of them, in file order, and HAProxy's implicit `default` last.
    let all = cli(&sock, "show resolvers");
    let sections: Vec<&str> = all
        .lines()
        .filter_map(|l| l.strip_prefix("Resolvers section "))
        .collect();
    assert_eq!(sections, ["local", "spare", "default"], "{all}");
    assert_eq!(
        cli(&sock, "show resolvers nope"),
        "Can't find that resolvers section\n\n"
    );
    assert!(cli(&sock, "help").contains(
        "  show resolvers [id]                     : dumps counters from all resolvers section \
         and associated name servers\n"
    ));

    // The answer changes: a second update.
    moves_to_127_0_0_3(&dns, &lb);
    assert!(
        common::ops::wait(T, || ns1().get("update") == Some(&2)),
        "{:?}",
        ns1()
    );

    // NXDOMAIN (the server is held by `hold nx`): counted in `nx`, not as valid.
    let valid = ns1()["valid"];
    dns.set_hosts("");
    assert!(
        common::ops::wait(T, || ns1().get("nx") >= Some(&2)),
        "{:?}",
        ns1()
    );
    let c = ns1();
    assert!(c["valid"] <= valid + 1, "{c:?}");
    assert_eq!(c["update"], 2, "{c:?}");
}
