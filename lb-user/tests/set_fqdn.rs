//! `set server B/S fqdn NAME` through the real lb, against a real DNS server (dnsmasq on a
//! loopback port) and two real backends on 127.0.0.2 and 127.0.0.3: a server following
//! `a.test` (127.0.0.2) is told to follow `b.test` (127.0.0.3); once the name resolves, new
//! connections go to 127.0.0.3 (bytes checked end to end), `show servers state` prints the
//! new name (with HAProxy's "FQDN set from the stats socket" bit), a reload with the same
//! configuration keeps it and one that renames the server forgets it. HAProxy 2.6's answers:
//! no resolution on the server, no name, an invalid name, the same name, and "Permission
//! denied" below level admin.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::ops::Dnsmasq;
use common::servers::{listener_at, Backend};
use common::stats::{cli, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

const T: Duration = Duration::from_secs(15);

/// Sends `payload` through lb and returns what came back (the echo server's copy).
fn round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect to lb");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(payload).expect("send through lb");
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// The fields of `be/<srv>`'s line of `show servers state be`.
fn state_fields(sock: &std::path::Path, srv: &str) -> Vec<String> {
    let out = cli(sock, "show servers state be");
    let line = out
        .lines()
        .find(|l| l.split(' ').nth(3) == Some(srv))
        .unwrap_or_else(|| panic!("no line for {srv} in:\n{out}"));
    line.split(' ').map(str::to_owned).collect()
}

fn config(sock_dir: &SockDir, dns: SocketAddr, (fe_port, port): (u16, u16), name: &str) -> String {
    format!(
        "global\n    stats socket {} level admin\n    stats socket {} level operator\n\n\
         resolvers local\n    nameserver ns1 {dns}\n    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 300ms\n    hold valid 200ms\n    hold nx 60s\n\n\
         {DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe_port}\n    default_backend be\n\n\
         backend be\n    server s1 {name}:{port} resolvers local init-addr libc,none\n\n\
         backend other\n    server s2 127.0.0.1:{port}\n",
        sock_dir.sock("admin.sock").display(),
        sock_dir.sock("oper.sock").display(),
    )
}

#[test]
fn set_server_fqdn_moves_new_connections_to_the_new_name() {
    let port = free_port();
    let a = Backend::echo_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "a");
    let b = Backend::echo_on(listener_at(SocketAddr::from(([127, 0, 0, 3], port))), "b");
    let dns = Dnsmasq::start("127.0.0.2 a.test\n127.0.0.3 b.test\n127.0.0.2 c.test\n");
    let dir = SockDir::new("set-fqdn");
    let (admin, oper) = (dir.sock("admin.sock"), dir.sock("oper.sock"));
    let fe_port = free_port();
    let lb = Lb::start(
        &config(&dir, dns.addr, (fe_port, port), "a.test"),
        "sockmap",
    );
    let fe = local(fe_port);

    // Not resolvable by the system resolver: DNS gives a.test's address.
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from (none) to 127.0.0.2 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    assert!(lb.wait_for_log("Server be/s1 ('a.test') is UP/READY (resolves again).", T));
    assert_eq!(round_trip(fe, b"to a.test"), b"to a.test");
    assert_eq!((a.accepted(), b.accepted()), (1, 0));

    // Below level admin: refused before anything else, as HAProxy's.
    for cmd in ["set server be/s1 fqdn b.test", "set server be/s1 fqdn"] {
        assert_eq!(cli(&oper, cmd), "Permission denied\n\n", "{cmd}");
    }

    // The new name: HAProxy's answer; the address stays until it resolves, then moves.
    assert_eq!(
        cli(&admin, "set server be/s1 fqdn b.test"),
        "be/s1 changed its FQDN from a.test to b.test by 'stats socket command'\n\n"
    );
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from 127.0.0.2 to 127.0.0.3 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(fe, &payload), payload);
    assert_eq!(round_trip(fe, b"to b.test"), b"to b.test");
    assert_eq!((a.accepted(), b.accepted()), (1, 2));

    // `show servers state`: the new name, the address it resolved to, and HAProxy's
    // SRV_ADMF_HMAINT bit (0x40) in srv_admin_state.
    let f = state_fields(&admin, "s1");
    assert_eq!(
        (f[4].as_str(), f[6].as_str(), f[17].as_str()),
        ("127.0.0.3", "64", "b.test"),
        "{f:?}"
    );

    // HAProxy's answers to what it refuses; none of them changes the name.
    let answers = [
        (
            "set server other/s2 fqdn b.test",
            "set server <b>/<s> fqdn failed because no resolution is configured.\n\n",
        ),
        (
            "set server be/s1 fqdn",
            "set server <b>/<s> fqdn requires a FQDN.\n\n",
        ),
        (
            "set server be/s1 fqdn b!test",
            "invalid fqdn 'b!test' by 'stats socket command'\n\n",
        ),
        (
            "set server be/s1 fqdn b.test",
            "no need to change the FDQN by 'stats socket command'\n\n",
        ),
        (
            "set server be/s1 fqdn a..test",
            "could not update be/s1 FQDN by 'stats socket command'\n\n",
        ),
        ("set server be/nope fqdn b.test", "No such server.\n\n"),
    ];
    for (cmd, want) in answers {
        assert_eq!(cli(&admin, cmd), want, "{cmd}");
    }
    assert!(cli(&admin, "set server be/s1 frob").contains("check-port | fqdn | health"));
    assert_eq!(state_fields(&admin, "s1")[17], "b.test");

    // The old name no longer moves the server: a.test changes, s1 stays on b.test's address.
    dns.set_hosts("127.0.0.4 a.test\n127.0.0.3 b.test\n127.0.0.2 c.test\n");
    std::thread::sleep(Duration::from_millis(800));
    assert!(lb.find_log("changed its IP from 127.0.0.3").is_none());
    assert_eq!(round_trip(fe, b"still b"), b"still b");
    assert_eq!((a.accepted(), b.accepted()), (1, 3));

    // A reload with the same configuration keeps the run-time name and its address.
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", T),
        "{:#?}",
        lb.logs()
    );
    let f = state_fields(&admin, "s1");
    assert_eq!((f[4].as_str(), f[17].as_str()), ("127.0.0.3", "b.test"));
    assert_eq!(round_trip(fe, b"after reload"), b"after reload");
    assert_eq!((a.accepted(), b.accepted()), (1, 4));

    // A configuration that renames the server: the run-time name is forgotten.
    lb.rewrite_config(0, &config(&dir, dns.addr, (fe_port, port), "c.test"));
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 2", T),
        "{:#?}",
        lb.logs()
    );
    assert!(
        common::ops::wait(T, || state_fields(&admin, "s1")[4] == "127.0.0.2"),
        "{:#?}",
        lb.logs()
    );
    let f = state_fields(&admin, "s1");
    assert_eq!((f[6].as_str(), f[17].as_str()), ("0", "c.test"), "{f:?}");
    assert_eq!(round_trip(fe, b"to c.test"), b"to c.test");
    assert_eq!(a.accepted(), 2);
}

/// HAProxy's way across a restart: `show servers state` saved to `server-state-file`, lb
/// started again with `load-server-state-from-file`: the server follows the name set at run
/// time (and, with `init-addr last`, starts on the address it had), not the configured one.
#[test]
fn the_state_file_brings_a_runtime_name_back_after_a_restart() {
    let port = free_port();
    let a = Backend::echo_on(listener_at(SocketAddr::from(([127, 0, 0, 2], port))), "a");
    let b = Backend::echo_on(listener_at(SocketAddr::from(([127, 0, 0, 3], port))), "b");
    let dns = Dnsmasq::start("127.0.0.2 a.test\n127.0.0.3 b.test\n");
    let dir = SockDir::new("fqdn-state");
    let admin = dir.sock("admin.sock");
    let fe_port = free_port();
    let cfg = format!(
        "global\n    stats socket {} level admin\n    server-state-base {}\n    server-state-file state\n\n\
         resolvers local\n    nameserver ns1 {}\n    resolve_retries 2\n    timeout resolve 200ms\n    timeout retry 300ms\n    hold valid 200ms\n    hold nx 60s\n\n\
         {DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{fe_port}\n    default_backend be\n\n\
         backend be\n    load-server-state-from-file global\n    server s1 a.test:{port} resolvers local init-addr last,libc,none\n",
        admin.display(),
        dir.path.display(),
        dns.addr,
    );
    let fe = local(fe_port);
    let mut lb = Lb::start(&cfg, "sockmap");
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from (none) to 127.0.0.2 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    assert_eq!(
        cli(&admin, "set server be/s1 fqdn b.test"),
        "be/s1 changed its FQDN from a.test to b.test by 'stats socket command'\n\n"
    );
    assert!(
        common::ops::wait(T, || state_fields(&admin, "s1")[4] == "127.0.0.3"),
        "{:#?}",
        lb.logs()
    );
    let saved = cli(&admin, "show servers state");
    std::fs::write(dir.path.join("state"), saved.trim_end().to_owned() + "\n").unwrap();
    lb.stop();

    let lb = Lb::start(&cfg, "sockmap");
    let f = state_fields(&admin, "s1");
    assert_eq!(
        (f[4].as_str(), f[6].as_str(), f[17].as_str()),
        ("127.0.0.3", "64", "b.test"),
        "{f:?}"
    );
    assert_eq!(round_trip(fe, b"after restart"), b"after restart");
    assert_eq!((a.accepted(), b.accepted()), (0, 1));
    // DNS follows b.test: its new address moves the server (a.test's would not).
    dns.set_hosts("127.0.0.4 a.test\n127.0.0.2 b.test\n");
    assert!(
        lb.wait_for_log(
            "be/s1 changed its IP from 127.0.0.3 to 127.0.0.2 by local/ns1.",
            T
        ),
        "{:#?}",
        lb.logs()
    );
    assert_eq!(round_trip(fe, b"to a's address"), b"to a's address");
    assert_eq!(a.accepted(), 1);
}
