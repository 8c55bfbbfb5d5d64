//! The runtime API's ACL and map commands through `socat`, as users drive a blocklist or a
//! routing map: `add acl` / `del acl` block and unblock a source for new connections at once,
//! `set map` / `add map` (one entry, or many in a payload after `<<`) / `del map` / `clear
//! map` reroute them, `show` and `get` report what
//! matches, bad patterns are refused with HAProxy's messages and change nothing, and a reload
//! reads the files again (run-time changes are lost, as in HAProxy). On every plane.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::peers::Scratch;
use common::scenarios::connect_from;
use common::servers::Backend;
use common::stats::{cli, SockDir};
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(
    add_and_del_acl_block_and_unblock_a_source,
    map_changes_reroute_new_connections,
);

fn src(ip: &str) -> IpAddr {
    ip.parse().unwrap()
}

/// A config with a `level admin` runtime API socket `admin.sock` in `dir`, then `body`.
fn config(dir: &SockDir, body: &str) -> String {
    format!(
        "global\n    stats socket {} level admin\n\n{DEFAULTS}\n{body}",
        dir.sock("admin.sock").display()
    )
}

/// Whether a connection from `from` is served: an echo of `ping` comes back (else lb
/// closed it, as `tcp-request connection reject` does).
fn served(from: &str, fe: SocketAddr) -> bool {
    let Ok(mut s) = connect_from(src(from), fe) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// The line `ident` servers write first: which backend served a connection from `from`.
fn served_by(from: &str, fe: SocketAddr) -> String {
    let mut s = connect_from(src(from), fe).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.trim().to_owned()
}

fn add_and_del_acl_block_and_unblock_a_source(dataplane: &str) {
    let scratch = Scratch::new("blocklist");
    let file = scratch.write("blocked.lst", b"# abusers\n10.9.9.9\n");
    let echo = Backend::echo("echo");
    let dir = SockDir::new("pat-acl");
    let port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    acl blocked src -f {file}\n    \
         tcp-request connection reject if blocked\n    default_backend be\n\nbackend be\n    \
         server echo {}\n",
        echo.addr
    );
    let lb = Lb::start(&config(&dir, &body), dataplane);
    let fe = local(port);
    let admin = |cmd: &str| cli(&dir.sock("admin.sock"), cmd);
    assert!(served("127.0.0.5", fe));

    assert_eq!(admin(&format!("add acl {file} 127.0.0.5")), "\n");
    assert!(!served("127.0.0.5", fe), "a source added to the blocklist");
    assert!(served("127.0.0.6", fe));
    let listed = admin(&format!("show acl {file}"));
    let entries: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(entries.len(), 2, "{listed}");
    assert!(
        entries[0].starts_with("0x") && entries[0].ends_with(" 10.9.9.9"),
        "{listed}"
    );
    assert!(entries[1].ends_with(" 127.0.0.5"), "{listed}");
    let refs = admin("show acl");
    assert!(refs.starts_with("# id (file) description\n"), "{refs}");
    assert!(
        refs.contains(&format!(
            "0 ({file}) pattern loaded from file '{file}' used by acl at file '"
        )) && refs.contains("curr_ver=0 next_ver=0 entry_cnt=2\n"),
        "{refs}"
    );
    // The ACL line's own (empty) pattern list is a reference of its own.
    assert!(refs.contains("1 () acl 'src' file '"), "{refs}");
    assert_eq!(
        admin(&format!("get acl {file} 127.0.0.5")),
        "type=ip, case=sensitive, match=yes, idx=tree, pattern=\"127.0.0.5\"\n\n"
    );

    // A pattern the ACL can't read: refused, named, nothing changes.
    let bad = admin(&format!("add acl {file} not/an/address"));
    assert!(bad.contains("not/an/address"), "{bad}");
    assert_eq!(admin(&format!("show acl {file}")), listed);
    assert_eq!(
        admin("add acl /no/such/file 127.0.0.1"),
        "Unknown ACL identifier. Please use #<id> or <file>.\n\n"
    );

    // By key; then by the handle `show acl` printed.
    assert_eq!(admin(&format!("del acl {file} 127.0.0.5")), "\n");
    assert!(
        served("127.0.0.5", fe),
        "a source deleted from the blocklist"
    );
    assert_eq!(
        admin(&format!("del acl {file} 127.0.0.5")),
        "Key not found.\n\n"
    );
    assert_eq!(admin("add acl #1 127.0.0.6"), "\n");
    assert!(
        !served("127.0.0.6", fe),
        "the line's own list is matched too"
    );
    let handle = admin("show acl #1");
    let handle = handle.split_whitespace().next().unwrap();
    assert_eq!(admin(&format!("del acl #1 #{handle}")), "\n");
    assert!(served("127.0.0.6", fe));

    // A reload reads the file again: what was added at run time is gone.
    assert_eq!(admin(&format!("add acl {file} 127.0.0.7")), "\n");
    assert!(!served("127.0.0.7", fe));
    lb.signal(libc::SIGHUP);
    assert!(lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)));
    assert!(served("127.0.0.7", fe));
    let after = admin(&format!("show acl {file}"));
    assert_eq!(
        after.lines().filter(|l| !l.is_empty()).count(),
        1,
        "{after}"
    );
}

fn map_changes_reroute_new_connections(dataplane: &str) {
    let scratch = Scratch::new("routes");
    let map = scratch.write("routes.map", b"127.0.0.7 be_a\n");
    let (a, b, c) = (
        Backend::ident("a"),
        Backend::ident("b"),
        Backend::ident("c"),
    );
    let dir = SockDir::new("pat-map");
    let port = free_port();
    let body = format!(
        "frontend fe\n    bind 127.0.0.1:{port}\n    use_backend %[src,map_ip({map})]\n    \
         default_backend be_c\n\nbackend be_a\n    server a {}\n\nbackend be_b\n    server b \
         {}\n\nbackend be_c\n    server c {}\n",
        a.addr, b.addr, c.addr
    );
    let _lb = Lb::start(&config(&dir, &body), dataplane);
    let fe = local(port);
    let admin = |cmd: &str| cli(&dir.sock("admin.sock"), cmd);
    assert_eq!(served_by("127.0.0.7", fe), "a");
    assert_eq!(served_by("127.0.0.8", fe), "c");

    assert_eq!(admin(&format!("set map {map} 127.0.0.7 be_b")), "\n");
    assert_eq!(served_by("127.0.0.7", fe), "b");
    assert_eq!(admin(&format!("add map {map} 127.0.0.8/32 be_a")), "\n");
    assert_eq!(served_by("127.0.0.8", fe), "a");
    assert_eq!(
        admin(&format!("get map {map} 127.0.0.8")),
        "type=ip, case=sensitive, found=yes, idx=tree, key=\"127.0.0.8/32\", value=\"be_a\", \
         type=\"str\"\n\n"
    );
    let shown = admin(&format!("show map {map}"));
    let lines: Vec<&str> = shown.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[0].ends_with(" 127.0.0.7 be_b"), "{shown}");
    assert!(lines[1].ends_with(" 127.0.0.8/32 be_a"), "{shown}");
    assert!(admin("show map").contains(&format!("0 ({map}) pattern loaded from file")));
    // A key the map can't read: refused with its reason, nothing changes.
    let bad = admin(&format!("add map {map} nowhere be_a"));
    assert!(bad.ends_with(".\n\n") && bad.contains("nowhere"), "{bad}");
    assert_eq!(admin(&format!("show map {map}")), shown);
    assert_eq!(
        admin(&format!("set map {map} 127.0.0.9 be_a")),
        "entry not found.\n\n"
    );

    assert_eq!(admin(&format!("del map {map} 127.0.0.7")), "\n");
    assert_eq!(served_by("127.0.0.7", fe), "c");
    assert_eq!(admin(&format!("clear map {map}")), "\n");
    assert_eq!(admin(&format!("show map {map}")), "\n");
    assert_eq!(served_by("127.0.0.8", fe), "c");

    // Many entries in one command: a payload after `<<`, up to an empty line.
    assert_eq!(
        admin(&format!(
            "add map {map} <<\n127.0.0.9 be_b\n127.0.0.0/8   be_a\n"
        )),
        "\n"
    );
    assert_eq!(served_by("127.0.0.9", fe), "b");
    assert_eq!(served_by("127.0.0.8", fe), "a");
    let bad = admin(&format!("add map {map} <<\n127.0.0.11 be_b\nlonely\n"));
    assert_eq!(bad, "Missing value for key 'lonely'.\n\n");
    assert_eq!(
        served_by("127.0.0.11", fe),
        "a",
        "a payload with an error adds nothing"
    );
    let bad = admin(&format!(
        "add map {map} <<\n127.0.0.12 be_b\nnowhere be_b\n"
    ));
    assert!(bad.contains("nowhere"), "{bad}");
    assert_eq!(served_by("127.0.0.12", fe), "a", "all or nothing");
}
