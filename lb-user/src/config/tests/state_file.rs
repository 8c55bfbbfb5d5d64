//! The server-state file keywords (`server-state-file`, `server-state-base`,
//! `load-server-state-from-file`, `server-state-file-name`), `init-addr last` and `resolve-net`:
//! what they put in the model and what they refuse.

use std::net::IpAddr;
use std::path::Path;

use super::super::scalar::parse_net;
use super::super::{Global, InitAddr, IpNet, ServerStateFrom};
use super::*;

fn net(addr: &str, prefix_len: u8) -> IpNet {
    IpNet {
        addr: addr.parse().unwrap(),
        prefix_len,
    }
}

/// The first error's message (the configs below have one).
fn first_error(text: &str) -> String {
    errs(text).0[0].message.clone()
}

#[test]
fn global_state_file_and_base_are_stored() {
    let c = ok(&format!(
        "global\n  server-state-base /var/lib/lb/\n  server-state-file state\n{TIMEOUTS}\
         backend be\n  load-server-state-from-file global\n  server s 127.0.0.1:1\n"
    ));
    let g = &c.global;
    assert_eq!(g.server_state_base, Some(PathBuf::from("/var/lib/lb/")));
    assert_eq!(g.server_state_file, Some(PathBuf::from("state")));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::Global);
    // Relative to the base, as HAProxy's srv_state_get_filepath.
    assert_eq!(
        g.server_state_file_of(&c.backends[0]),
        Some(PathBuf::from("/var/lib/lb/state"))
    );
    // The runtime applies the file: nothing is "not supported".
    assert!(c
        .warnings
        .iter()
        .all(|w| !w.message.contains("not supported")));
}

#[test]
fn state_paths_resolve_as_haproxy() {
    let mut g = Global {
        server_state_base: None,
        ..ok(&format!("{TIMEOUTS}backend be\n")).global
    };
    // No base: the name as written (relative to the working directory).
    assert_eq!(g.server_state_path(Path::new("s")), PathBuf::from("s"));
    g.server_state_base = Some(PathBuf::from("/b"));
    assert_eq!(g.server_state_path(Path::new("s")), PathBuf::from("/b/s"));
    assert_eq!(
        g.server_state_path(Path::new("d/s")),
        PathBuf::from("/b/d/s")
    );
    // Absolute names ignore the base.
    assert_eq!(
        g.server_state_path(Path::new("/abs/s")),
        PathBuf::from("/abs/s")
    );
}

#[test]
fn global_state_keywords_reject_bad_arguments() {
    for kw in ["server-state-file", "server-state-base"] {
        assert_eq!(
            first_error(&format!("global\n  {kw}\n")),
            format!("'{kw}': expects 1 argument, got 0")
        );
        assert_eq!(
            first_error(&format!("global\n  {kw} a b\n")),
            format!("'{kw}': unexpected argument 'b'")
        );
        assert_eq!(
            first_error(&format!("global\n  {kw} \"\"\n")),
            format!("'{kw}': expects a path")
        );
    }
}

#[test]
fn global_state_file_set_twice_keeps_the_first() {
    let c = ok(&format!(
        "global\n  server-state-file /a\n  server-state-file /b\n{TIMEOUTS}backend be\n"
    ));
    assert_eq!(c.global.server_state_file, Some(PathBuf::from("/a")));
    assert!(has_warning(
        &c,
        3,
        "'server-state-file' is already set (first at t.cfg:2); this one is ignored"
    ));
}

#[test]
fn load_server_state_from_file_values_and_inheritance() {
    let c = ok(&format!(
        "global\n  server-state-file /s\n{TIMEOUTS}  load-server-state-from-file global\n\
         backend inherits\n\
         backend local_default\n  load-server-state-from-file local\n\
         backend local_named\n  load-server-state-from-file local\n  server-state-file-name bk.state\n\
         backend local_use_name\n  load-server-state-from-file local\n  server-state-file-name use-backend-name\n\
         backend local_empty\n  load-server-state-from-file local\n  server-state-file-name\n\
         backend off\n  load-server-state-from-file none\n\
         backend name_only\n  load-server-state-from-file none\n  server-state-file-name x\n"
    ));
    let state = |name: &str| {
        c.backends
            .iter()
            .find(|b| b.name == name)
            .unwrap()
            .server_state
            .clone()
    };
    assert_eq!(state("inherits"), ServerStateFrom::Global);
    assert_eq!(
        state("local_default"),
        ServerStateFrom::Local("local_default".into())
    );
    assert_eq!(
        state("local_named"),
        ServerStateFrom::Local("bk.state".into())
    );
    assert_eq!(
        state("local_use_name"),
        ServerStateFrom::Local("local_use_name".into())
    );
    assert_eq!(
        state("local_empty"),
        ServerStateFrom::Local("local_empty".into())
    );
    assert_eq!(state("off"), ServerStateFrom::None);
    // A file name without `local` changes nothing (as in HAProxy).
    assert_eq!(state("name_only"), ServerStateFrom::None);
    let g = &c.global;
    let named = c.backends.iter().find(|b| b.name == "local_named").unwrap();
    assert_eq!(
        g.server_state_file_of(named),
        Some(PathBuf::from("bk.state"))
    );
    let off = c.backends.iter().find(|b| b.name == "off").unwrap();
    assert_eq!(g.server_state_file_of(off), None);
}

#[test]
fn no_load_server_state_means_none() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server s 127.0.0.1:1\n"));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::None);
    assert_eq!(c.global.server_state_file, None);
    assert_eq!(c.global.server_state_base, None);
}

#[test]
fn load_server_state_rejects_bad_values() {
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file both\n"
        )),
        "'load-server-state-from-file': unknown value 'both' (expected global, local or none)"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file\n"
        )),
        "'load-server-state-from-file': expects 1 argument, got 0"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file local x\n"
        )),
        "'load-server-state-from-file': unexpected argument 'x'"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server-state-file-name a b\n"
        )),
        "'server-state-file-name': unexpected argument 'b'"
    );
}

#[test]
fn state_keywords_where_haproxy_ignores_them() {
    let c = ok(&format!(
        "{TIMEOUTS}  server-state-file-name d\n\
         frontend fe\n  bind :1\n  load-server-state-from-file global\n  server-state-file-name f\n  default_backend be\n\
         backend be\n  load-server-state-from-file global\n  server s 127.0.0.1:1\n"
    ));
    // defaults: accepted, not passed on.
    assert!(has_warning(
        &c,
        6,
        "'server-state-file-name' in a defaults section is not passed on to backends"
    ));
    // A frontend has no servers.
    assert!(has_warning(
        &c,
        9,
        "'load-server-state-from-file' ignored because frontend 'fe' has no backend capability"
    ));
    assert!(has_warning(
        &c,
        10,
        "'server-state-file-name' ignored because frontend 'fe'"
    ));
    // `global` with no global file: HAProxy warns too.
    assert!(has_warning(
        &c,
        13,
        "backend 'be': 'load-server-state-from-file global' but the global section has no \
         'server-state-file'"
    ));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::Global);
    assert_eq!(c.global.server_state_file_of(&c.backends[0]), None);
}

#[test]
fn init_addr_methods_are_kept_with_last() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n\
         server dflt localhost:1\n\
         server libc_first localhost:2 init-addr libc,last\n\
         server ip nonexistent-host.invalid:3 init-addr last,192.0.2.7\n\
         server none nonexistent-host.invalid:4 init-addr last,none\n\
         server numeric 127.0.0.1:5 init-addr last,libc\n\
         default-server init-addr none,last\n\
         server inherited nonexistent-host.invalid:6\n"
    ));
    let s = |name: &str| {
        c.backends[0]
            .servers
            .iter()
            .find(|s| s.name == name)
            .unwrap()
    };
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    // The default is HAProxy's `last,libc`; `last` is skipped at load.
    assert_eq!(s("dflt").init_addr, vec![InitAddr::Last, InitAddr::Libc]);
    assert_eq!(s("dflt").init_addr_used, Some(1));
    assert!(s("dflt").state_addr_wins());
    assert_eq!(
        s("libc_first").init_addr,
        vec![InitAddr::Libc, InitAddr::Last]
    );
    assert_eq!(s("libc_first").init_addr_used, Some(0));
    assert!(!s("libc_first").state_addr_wins());
    assert_eq!(s("ip").init_addr, vec![InitAddr::Last, InitAddr::Ip(ip)]);
    assert_eq!(s("ip").init_addr_used, Some(1));
    assert!(s("ip").state_addr_wins());
    assert_eq!(s("none").init_addr_used, Some(1));
    assert!(s("none").unresolved);
    assert!(s("none").state_addr_wins());
    // A numeric address needs no method: the state file's address does not replace it here.
    assert_eq!(s("numeric").init_addr_used, None);
    assert!(!s("numeric").state_addr_wins());
    // From default-server; `none` succeeds first, so `last` is never reached.
    assert_eq!(
        s("inherited").init_addr,
        vec![InitAddr::None, InitAddr::Last]
    );
    assert_eq!(s("inherited").init_addr_used, Some(0));
    assert!(!s("inherited").state_addr_wins());
}

#[test]
fn init_addr_last_alone_still_needs_an_address_at_load() {
    // No state file gives one: the configuration does not load (HAProxy refuses to start).
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server s nonexistent-host.invalid:1 init-addr last\n"
        )),
        "server 'be/s': no init-addr method gave an address, and no server-state file has an \
         address for 'nonexistent-host.invalid' (add 'init-addr libc,none' to start it in MAINT \
         instead)"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server s localhost:1 init-addr last,bogus\n"
        )),
        "server 'be/s': 'init-addr': invalid method 'bogus' (expected last|libc|none|<ip>, \
         comma-separated)"
    );
}

#[test]
fn init_addr_last_takes_the_state_file_address_at_load() {
    let dir = std::env::temp_dir().join(format!("lb-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state"),
        "1\n# be_id be_name srv_id srv_name srv_addr ...\n\
         1 be 1 s 10.0.0.7 2 0 1 1 5 6 3 4 6 0 0 0 nonexistent-host.invalid 1 - 0 0 - - 0\n\
         1 be 2 t 10.0.0.8 2 0 1 1 5 6 3 4 6 0 0 0 - 2 - 0 0 - - 0\n",
    )
    .unwrap();
    let c = ok(&format!(
        "global\n  server-state-base {}\n  server-state-file state\n{TIMEOUTS}backend be\n\
         load-server-state-from-file global\n\
         server s nonexistent-host.invalid:1 init-addr last\n\
         server t 127.0.0.1:2\n\
         server u localhost:3 init-addr libc,last\n",
        dir.display()
    ));
    let s = &c.backends[0].servers;
    assert_eq!(s[0].addr, "10.0.0.7:1".parse().unwrap());
    assert!(!s[0].unresolved);
    // Written as an IP: no init-addr, the configuration's address.
    assert_eq!(s[1].addr, "127.0.0.1:2".parse().unwrap());
    // libc comes first and answers: the file is not asked.
    assert!(s[2].addr.ip().is_loopback());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resolve_net_is_stored() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n\
         server z 127.0.0.1:9\n\
         default-server resolve-net 10.0.0.0/8\n\
         server a 127.0.0.1:1\n\
         server b 127.0.0.1:2 resolve-net 192.168.0.0/255.255.0.0,fd00::/8,10.1.2.3,::1,\n"
    ));
    // Default: no preference.
    assert!(c.backends[0].servers[0].resolve_net.is_empty());
    assert_eq!(
        c.backends[0].servers[1].resolve_net,
        vec![net("10.0.0.0", 8)]
    );
    assert_eq!(
        c.backends[0].servers[2].resolve_net,
        vec![
            net("192.168.0.0", 16),
            net("fd00::", 8),
            net("10.1.2.3", 32),
            net("::1", 128)
        ]
    );
    // DNS uses it: nothing is "not supported".
    assert!(c
        .warnings
        .iter()
        .all(|w| !w.message.contains("resolve-net")));
}

#[test]
fn resolve_net_rejects_bad_networks() {
    let bad = |arg: &str| {
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server s 127.0.0.1:1 resolve-net {arg}\n"
        ))
    };
    assert_eq!(
        bad("10.0.0.0/33"),
        "server 'be/s': 'resolve-net': network '10.0.0.0/33': prefix length must be 0..=32"
    );
    assert_eq!(
        bad("fd00::/129"),
        "server 'be/s': 'resolve-net': network 'fd00::/129': prefix length must be 0..=128"
    );
    assert_eq!(
        bad("10.0.0.0/255.0.255.0"),
        "server 'be/s': 'resolve-net': network '10.0.0.0/255.0.255.0': mask '255.0.255.0' is not \
         contiguous"
    );
    assert!(bad("example.com/8").contains("invalid network 'example.com/8'"));
    assert!(bad("10.0.0.0/").contains("invalid network '10.0.0.0/'"));
    assert!(bad("10.0.0.0/8,,10.1.0.0/16").contains("invalid network ''"));
    assert_eq!(
        bad("1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8,6.0.0.0/8"),
        "server 'be/s': 'resolve-net': more than 5 networks (HAProxy's limit)"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server s 127.0.0.1:1 resolve-net\n"
        )),
        "server 'be/s': 'resolve-net' needs a value"
    );
}

#[test]
fn networks_parse_and_match() {
    assert_eq!(parse_net("10.0.0.0/8"), Ok(net("10.0.0.0", 8)));
    assert_eq!(parse_net("10.0.0.0/255.0.0.0"), Ok(net("10.0.0.0", 8)));
    assert_eq!(parse_net("0.0.0.0/0.0.0.0"), Ok(net("0.0.0.0", 0)));
    assert_eq!(parse_net("192.0.2.1"), Ok(net("192.0.2.1", 32)));
    assert_eq!(parse_net("2001:db8::/32"), Ok(net("2001:db8::", 32)));
    assert_eq!(parse_net("::"), Ok(net("::", 128)));
    for bad in [
        "",
        "/8",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "::1/1.2.3.4",
        "10.0.0/8",
        "a::b::c",
    ] {
        assert!(parse_net(bad).is_err(), "{bad}");
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Host bits of the network are ignored.
    assert!(net("10.1.2.3", 8).contains(ip("10.200.0.1")));
    assert!(!net("10.0.0.0", 8).contains(ip("11.0.0.1")));
    assert!(net("0.0.0.0", 0).contains(ip("203.0.113.9")));
    assert!(net("192.0.2.1", 32).contains(ip("192.0.2.1")));
    assert!(!net("192.0.2.1", 32).contains(ip("192.0.2.2")));
    assert!(net("fd00::", 8).contains(ip("fd12::1")));
    assert!(!net("fd00::", 8).contains(ip("fe80::1")));
    assert!(net("::", 0).contains(ip("2001:db8::1")));
    // Families never match each other.
    assert!(!net("0.0.0.0", 0).contains(ip("::ffff:10.0.0.1")));
    assert!(!net("::", 0).contains(ip("10.0.0.1")));
}

#[test]
fn init_addr_default_adds_none_with_resolvers() {
    // HAProxy (since 2.3): a server with `resolvers` and no `init-addr` uses last,libc,none, so
    // a name DNS will answer later does not stop the start.
    let c = ok(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:53\n{TIMEOUTS}backend be\n\
         server s nonexistent-host.invalid:1 resolvers dns\n\
         server t localhost:2\n"
    ));
    let s = &c.backends[0].servers[0];
    assert_eq!(
        s.init_addr,
        vec![InitAddr::Last, InitAddr::Libc, InitAddr::None]
    );
    assert!(s.unresolved);
    assert_eq!(s.init_addr_used, Some(2));
    assert!(has_warning(&c, 9, "starting in MAINT (resolution)"));
    // Without resolvers the default stays last,libc.
    assert_eq!(
        c.backends[0].servers[1].init_addr,
        vec![InitAddr::Last, InitAddr::Libc]
    );
    // An explicit init-addr is kept as written.
    assert!(first_error(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:53\n{TIMEOUTS}backend be\n\
         server s nonexistent-host.invalid:1 resolvers dns init-addr last,libc\n"
    ))
    .ends_with("(add 'init-addr libc,none' to start it in MAINT instead)"));
}
