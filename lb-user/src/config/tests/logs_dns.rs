//! Logs, resolvers, user/group (stored, no "not supported yet").

use super::*;

#[test]
fn log_lines_tcplog_and_dontlognull_are_stored() {
    let c = ok(&format!(
        "global\n  log 127.0.0.1:514 local0\n  log stdout format raw daemon\n  log-tag db-lb\n  log-send-hostname lb1\n{TIMEOUTS}  log global\n  option tcplog\n\
         frontend a\n  bind :1\n  option dontlognull\n  default_backend be\n\
         frontend b\n  bind :2\n  no log\n  log /dev/log local1 notice\n  no option tcplog\n  default_backend be\n\
         backend be\n  server s 127.0.0.1:2\n"
    ));
    assert_eq!(c.global.log_tag.as_deref(), Some("db-lb"));
    assert_eq!(c.global.log_send_hostname.as_deref(), Some("lb1"));
    let a = &c.frontends[0];
    let args: Vec<_> = a.logs.iter().map(|l| l.args.join(" ")).collect();
    assert_eq!(args, ["127.0.0.1:514 local0", "stdout format raw daemon"]);
    assert!(a.log_format.is_some() && a.dontlognull);
    let b = &c.frontends[1];
    let args: Vec<_> = b.logs.iter().map(|l| l.args.join(" ")).collect();
    assert_eq!(args, ["/dev/log local1 notice"]);
    assert!(b.log_format.is_none() && !b.dontlognull);
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.message.contains("not supported yet")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn resolvers_and_server_resolution_are_stored() {
    let c = ok(&format!(
        "global\n  user nobody\n  group nogroup\nresolvers dns\n  nameserver ns1 127.0.0.1:5353\n  resolve_retries 5\n  timeout resolve 2s\n  timeout retry 500ms\n  hold valid 3s\n  hold nx 4s\n  hold obsolete 1s\n  accepted_payload_size 1232\n  parse-resolv-conf\n\
         {TIMEOUTS}backend be\n  server s localhost:80 resolvers dns resolve-prefer ipv4\n  server t 127.0.0.1:81\n"
    ));
    let r = &c.global.resolvers[0];
    assert_eq!(r.name, "dns");
    assert_eq!(r.nameservers[0], ("ns1".to_owned(), sa("127.0.0.1:5353")));
    // Then those of /etc/resolv.conf (this machine's), named by their address, port 53.
    for (name, addr) in &r.nameservers[1..] {
        assert_eq!(addr.port(), 53);
        assert_eq!(name.split('%').next(), Some(addr.ip().to_string().as_str()));
    }
    assert_eq!(r.resolve_retries, 5);
    assert_eq!(r.timeout_resolve, Duration::from_secs(2));
    assert_eq!(r.timeout_retry, Duration::from_millis(500));
    assert_eq!(r.hold_valid, Duration::from_secs(3));
    assert_eq!(r.hold_nx, Duration::from_secs(4));
    assert_eq!(r.hold_other, Duration::from_secs(30));
    assert_eq!(r.hold_obsolete, Duration::from_secs(1));
    assert_eq!(r.accepted_payload_size, 1232);
    assert!(r.parse_resolv_conf);
    let s = &c.backends[0].servers[0];
    assert_eq!(s.resolvers.as_deref(), Some("dns"));
    assert!(s.resolve_prefer_ipv4);
    assert_eq!(c.backends[0].servers[1].resolvers, None);
    assert_eq!(c.global.user.as_deref(), Some("nobody"));
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.message.contains("not supported yet")),
        "{:?}",
        c.warnings
    );
}

/// HAProxy 2.6 adds a `default` section (nameservers of /etc/resolv.conf) after the others
/// unless the file has one: `resolvers default` needs no section.
#[test]
fn resolvers_default_is_implicit() {
    let c = ok(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n\
         {TIMEOUTS}backend be\n  server s localhost:80 resolvers default\n"
    ));
    let names: Vec<&str> = c.global.resolvers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["dns", "default"]);
    let d = &c.global.resolvers[1];
    assert!(d.parse_resolv_conf);
    assert_eq!(d.loc.to_string(), "<internal>:0");
    assert_eq!(d.hold_valid, Duration::from_secs(10));
    assert!(d.nameservers.iter().all(|(_, a)| a.port() == 53));
    // One of the file's own is used as it is.
    let c = ok(&format!(
        "resolvers default\n  nameserver ns1 127.0.0.1:5353\n\
         {TIMEOUTS}backend be\n  server s localhost:80 resolvers default\n"
    ));
    assert_eq!(c.global.resolvers.len(), 1);
    assert_eq!(
        c.global.resolvers[0].nameservers,
        [("ns1".to_owned(), sa("127.0.0.1:5353"))]
    );
}

/// `resolve-opts`: `ignore-weight` is kept (from `default-server` too), `prevent-dup-ip` is
/// lb's way anyway, `allow-dup-ip` is warned about, anything else is HAProxy's error.
#[test]
fn resolve_opts_ignore_weight() {
    let c = ok(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n\
         {TIMEOUTS}backend be\n  default-server resolvers dns\n\
         server s localhost:80 resolve-opts ignore-weight,prevent-dup-ip\n\
         server t localhost:81\n\
         server u localhost:82 resolve-opts allow-dup-ip\n"
    ));
    let s = &c.backends[0].servers;
    assert!(s[0].resolve_ignore_weight);
    assert!(!s[1].resolve_ignore_weight && !s[2].resolve_ignore_weight);
    let warned: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.message.contains("not supported yet"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].message.contains("'resolve-opts allow-dup-ip'"));
    let c = ok(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n\
         {TIMEOUTS}backend be\n  default-server resolvers dns resolve-opts ignore-weight\n\
         server s localhost:80\n"
    ));
    assert!(c.backends[0].servers[0].resolve_ignore_weight);
    let e = errs(&format!(
        "{TIMEOUTS}backend be\n  server s localhost:80 resolve-opts ignore-weight,bogus\n"
    ));
    assert!(
        e.to_string().contains(
            "'resolve-opts' : unknown resolve-opts option 'bogus', supported methods are \
             'allow-dup-ip', 'ignore-weight', and 'prevent-dup-ip'."
        ),
        "{e}"
    );
}

#[test]
fn server_template_makes_numbered_servers() {
    let c = ok(&format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n{TIMEOUTS}backend be\n  server-template pg 3 _pg._tcp.db.test resolvers dns check weight 5\n  server-template app 8-9 app.test:80 resolvers dns init-addr none\n  server last 127.0.0.1:1\n"
    ));
    let s = &c.backends[0].servers;
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pg1", "pg2", "pg3", "app8", "app9", "last"]);
    let ids: Vec<u32> = s.iter().map(|s| s.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    // SRV: no address nor port until DNS answers; the parameters apply to each.
    assert!(s[0].template && s[0].unresolved && s[0].health.check && s[0].weight == 5);
    assert_eq!(s[0].fqdn.as_deref(), Some("_pg._tcp.db.test"));
    assert_eq!(s[0].port_offset, None);
    assert_eq!(s[3].addr.port(), 80);
    assert!(s[3].template && s[3].unresolved);
    assert!(!s[5].template);
}

#[test]
fn server_template_errors_name_the_line() {
    for (body, want) in [
        ("server-template pg 0 a.test:1", "invalid server number '0'"),
        ("server-template pg 5-2 a.test:1", "invalid range '5-2'"),
        ("server-template pg x a.test:1", "invalid server number 'x'"),
        (
            "server-template pg 1-20000 a.test:1",
            "more than 10000 servers",
        ),
        (
            "server-template pg 2",
            "needs a prefix, a number and an address",
        ),
        ("server-template pg 2 _pg._tcp.db.test", "needs 'resolvers'"),
        (
            "server-template pg 2 _pg._tcp.db.test:5 resolvers dns",
            "takes no port",
        ),
        (
            "server-template pg 2 _x._tcp.t resolvers dns id 4",
            "'id' cannot be set",
        ),
        (
            "server pg1 127.0.0.1:1\n  server-template pg 2 _x._tcp.t resolvers dns",
            "defined twice",
        ),
    ] {
        let text = format!(
            "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n{TIMEOUTS}backend be\n  {body}\n"
        );
        let e = errs(&text).to_string();
        assert!(e.contains("t.cfg:"), "{e}");
        assert!(e.contains(want), "{body}: got {e}, want {want}");
    }
}

#[test]
fn no_negates_the_global_keywords_haproxy_lets_it() {
    let c = ok(&format!(
        "global\n  log 127.0.0.1:514 local0\n  no log\n  log stdout format raw local1\n  \
         set-dumpable\n  strict-limits\n  no strict-limits\n  no busy-polling\n  \
         no insecure-fork-wanted\n  no numa-cpu-mapping\n{TIMEOUTS}"
    ));
    // `no log` dropped the targets before it.
    assert_eq!(c.global.logs.len(), 1);
    assert_eq!(c.global.logs[0].args[0], "stdout");
    assert!(c.global.set_dumpable && !c.global.strict_limits);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = ok(&format!(
        "global\n  set-dumpable\n  no set-dumpable\n{TIMEOUTS}"
    ));
    assert!(!c.global.set_dumpable);
    let e = errs(&format!("global\n  no maxconn\n{TIMEOUTS}")).to_string();
    assert!(
        e.contains(":2: negation/default currently supported only for options, log,"),
        "{e}"
    );
    let e = errs(&format!("global\n  no log x\n{TIMEOUTS}")).to_string();
    assert!(e.contains(":2: "), "{e}");
}
