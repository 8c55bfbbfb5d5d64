//! Server lines: default-server, ids, escapes, host names, init-addr.

use super::*;
use crate::config::UseSrc;

#[test]
fn default_server_applies_to_following_servers_only() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server a 127.0.0.1:1\n  default-server weight 50 maxconn 20 check inter 2s\n  server b 127.0.0.1:2\n  server c 127.0.0.1:3 weight 5 no-backup\n"));
    let s = &c.backends[0].servers;
    assert_eq!((s[0].weight, s[0].maxconn), (1, 0));
    assert_eq!((s[1].weight, s[1].maxconn), (50, 20));
    assert_eq!((s[2].weight, s[2].maxconn), (5, 20));
    // Health-check keywords are acted on now: stored, no warning.
    assert!(
        !c.warnings.iter().any(|w| w.loc.line == 8),
        "{:?}",
        c.warnings
    );
    assert!(!s[0].health.check);
    assert!(s[1].health.check && s[2].health.check);
    assert_eq!(s[1].health.inter, Duration::from_secs(2));
}

#[test]
fn explicit_ids_reserve_numbers() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server a 127.0.0.1:1\n  server b 127.0.0.1:2 id 1\n  server c 127.0.0.1:3\n"));
    let ids: Vec<u32> = c.backends[0].servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, [2, 1, 3]);
}

#[test]
fn escapes_in_values() {
    let c = ok(&format!("global\n  user lb\\ user # a comment\n  log \"127.0.0.1:514\" 'local0'\n{TIMEOUTS}frontend fe\n  bind :1 name \"front door\"\n  bind :2 name a\\#b\n  default_backend \"be\"\nbackend \"be\" # comment\n  tcp-check send \"PING\\r\\n\"\n  tcp-check expect string +PONG\n"));
    assert_eq!(c.global.user.as_deref(), Some("lb user"));
    assert_eq!(c.global.logs[0].args, ["127.0.0.1:514", "local0"]);
    assert_eq!(c.backends[0].name, "be");
    assert_eq!(c.frontends[0].binds[0].name.as_deref(), Some("front door"));
    assert_eq!(c.frontends[0].binds[1].name.as_deref(), Some("a#b"));
}

#[test]
fn escaped_hash_in_server_name_is_rejected_with_its_line() {
    let e = errs("backend be\n  server s\\#1 127.0.0.1:80\n");
    assert_eq!(e.0[0].loc.as_ref().unwrap().line, 2);
    assert!(e.0[0].message.contains("invalid character '#'"), "{e}");
}

#[test]
fn hostnames_resolve_and_keep_fqdn() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n  server s localhost:6379\n  server t ipv4@localhost:6380\n"
    ));
    let s = &c.backends[0].servers[0];
    assert!(s.addr.ip().is_loopback());
    assert_eq!(s.addr.port(), 6379);
    assert_eq!(s.fqdn.as_deref(), Some("localhost"));
    assert!(c.backends[0].servers[1].addr.is_ipv4());
}

#[test]
fn init_addr_none_starts_in_maint() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server s nonexistent-host.invalid:80 init-addr libc,none\n  server t nonexistent-host.invalid:81 init-addr last,libc,127.0.0.9\n"));
    let s = &c.backends[0].servers[0];
    // MAINT (resolution), not the operator's MAINT: DNS takes it out.
    assert!(!s.disabled);
    assert!(s.unresolved);
    assert!(s.addr.ip().is_unspecified());
    assert_eq!(s.fqdn.as_deref(), Some("nonexistent-host.invalid"));
    assert!(has_warning(
        &c,
        7,
        "starting in MAINT (resolution) (init-addr none)"
    ));
    let t = &c.backends[0].servers[1];
    assert_eq!(t.addr, sa("127.0.0.9:81"));
    assert!(!t.disabled);
}

/// `source`: a server's own (or its `default-server`'s) wins over its backend's, which may come
/// from `defaults` and may follow the servers; `interface` needs a source before it.
#[test]
fn source_of_backends_defaults_and_servers() {
    let c = ok(&format!(
        "{TIMEOUTS}  source 10.0.0.9
backend be
  server a 127.0.0.1:1
  server b 127.0.0.1:2 source 127.0.0.3:4000 interface lo tfo
  default-server source 127.0.0.4
  server c 127.0.0.1:3
  source 127.0.0.2 usesrc clientip
backend plain
  server d 127.0.0.1:4
frontend fe
  bind 127.0.0.1:8080
  source 127.0.0.5
  default_backend be
"
    ));
    let src = |b: usize, s: usize| c.backends[b].servers[s].source.clone();
    let a = src(0, 0).unwrap();
    assert_eq!((a.addr, a.interface), (sa("127.0.0.2:0"), None));
    let b = src(0, 1).unwrap();
    assert_eq!(
        (b.addr, b.interface.as_deref()),
        (sa("127.0.0.3:4000"), Some("lo"))
    );
    assert_eq!(src(0, 2).unwrap().addr, sa("127.0.0.4:0"));
    assert!(c.backends[0].servers[1].tfo && !c.backends[0].servers[0].tfo);
    assert_eq!(src(1, 0).unwrap().addr, sa("10.0.0.9:0"), "from defaults");
    assert_eq!(src(0, 0).unwrap().usesrc, Some(UseSrc::ClientIp));
    assert_eq!(
        src(0, 1).unwrap().usesrc,
        None,
        "the server's own source wins whole"
    );
    assert!(
        !c.warnings.iter().any(|w| w.message.contains("usesrc")),
        "{:?}",
        c.warnings
    );
    assert!(
        has_warning(&c, 17, "no backend capability"),
        "{:?}",
        c.warnings
    );

    let e = errs(&format!(
        "{TIMEOUTS}backend be\n  server a 127.0.0.1:1 interface lo\n  source 10.0.0.1:1-9\n"
    ))
    .to_string();
    assert!(
        e.contains("t.cfg:7") && e.contains("'interface' needs a 'source' before it"),
        "{e}"
    );
    assert!(
        e.contains("t.cfg:8") && e.contains("port range '1-9'"),
        "{e}"
    );
}

/// `usesrc` (transparent proxying) on a backend's `source` and a server's, each form; a server's
/// `usesrc` needs its `source` before it; a bad form is an error at its line.
#[test]
fn usesrc_forms_on_backends_and_servers() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be
  source 0.0.0.0 usesrc client
  server a 10.0.0.1:1
  server b 10.0.0.1:2 source 0.0.0.0 usesrc clientip check
  server c 10.0.0.1:3 source 10.0.0.9 usesrc 10.77.1.50:4000 interface lo
  default-server source 0.0.0.0 usesrc 10.77.1.51
  server d 10.0.0.1:4
  server e 10.0.0.1:5 source 10.0.0.8
"
    ));
    let u = |s: usize| c.backends[0].servers[s].source.as_ref().unwrap().usesrc;
    assert_eq!(u(0), Some(UseSrc::Client));
    assert_eq!(u(1), Some(UseSrc::ClientIp));
    assert_eq!(u(2), Some(UseSrc::Addr(sa("10.77.1.50:4000"))));
    assert_eq!(
        c.backends[0].servers[2]
            .source
            .as_ref()
            .unwrap()
            .interface
            .as_deref(),
        Some("lo")
    );
    assert_eq!(
        u(3),
        Some(UseSrc::Addr(sa("10.77.1.51:0"))),
        "from default-server"
    );
    assert_eq!(
        u(4),
        Some(UseSrc::Addr(sa("10.77.1.51:0"))),
        "a server's source keeps the default-server's usesrc, as in HAProxy"
    );
    assert_eq!(
        c.backends[0].servers[4].source.as_ref().unwrap().addr,
        sa("10.0.0.8:0")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let e = errs(&format!(
        "{TIMEOUTS}backend be
  source 0.0.0.0 usesrc
  source 0.0.0.0 usesrc hdr_ip(x-forwarded-for,-1)
  source 0.0.0.0 usesrc 10.0.0.1:1-9
  usesrc clientip
  server a 10.0.0.1:1 usesrc client
  server b 10.0.0.1:1 source 0.0.0.0 usesrc hdr_ip(x-forwarded-for)
  server c 10.0.0.1:1 source 0.0.0.0 usesrc bad-address!
"
    ))
    .to_string();
    for (line, needle) in [
        (
            7,
            "'usesrc' expects <addr>[:<port>], 'client', or 'clientip' as argument",
        ),
        (8, "'usesrc hdr_ip(x-forwarded-for,-1)' is HTTP-only"),
        (9, "'usesrc 10.0.0.1:1-9': port range '1-9' not allowed"),
        (10, "'usesrc' only allowed after a 'source' statement"),
        (11, "'usesrc' only allowed after a 'source' statement"),
        (12, "'usesrc hdr_ip(x-forwarded-for)' is HTTP-only"),
        (13, "'usesrc bad-address!'"),
    ] {
        let at = format!("t.cfg:{line}");
        assert!(
            e.lines().any(|l| l.contains(&at) && l.contains(needle)),
            "{at}: {needle}\n{e}"
        );
    }
}

#[test]
fn track_names_a_server_here_or_in_another_backend() {
    let c = ok(&format!(
        "{TIMEOUTS}backend w\n  server db1 127.0.0.1:1 check\n  server db2 127.0.0.1:2 agent-check agent-port 9\n\
         backend r\n  server db1 127.0.0.1:1 track w/db1\n  server db2 127.0.0.1:2 track w/db2\n  server chained 127.0.0.1:1 track db1\n"
    ));
    let (w, r) = (&c.backends[0].servers, &c.backends[1].servers);
    let track = |s: &crate::config::Server| s.track.as_ref().map(|t| (t.to, t.name.clone()));
    assert_eq!(track(&r[0]), Some(((0, 0), "w/db1".to_owned())));
    assert_eq!(
        track(&r[1]),
        Some(((0, 1), "w/db2".to_owned())),
        "an agent is enough"
    );
    assert_eq!(
        track(&r[2]),
        Some(((1, 0), "r/db1".to_owned())),
        "a tracker may be tracked"
    );
    assert_eq!(w[0].trackers, [(1, 0)]);
    assert_eq!(w[1].trackers, [(1, 1)]);
    assert_eq!(r[0].trackers, [(1, 2)]);
    assert!(w[0].track.is_none() && r[2].trackers.is_empty());
    assert!(
        !c.warnings.iter().any(|w| w.message.contains("track")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn track_errors_name_the_line_and_the_reason() {
    let cases: &[(&str, u32, &str)] = &[
        (
            "backend r\n  server s 127.0.0.1:1 track nope/db1\n",
            7,
            "server 'r/s': unable to find required proxy 'nope' for tracking",
        ),
        (
            "backend r\n  server s 127.0.0.1:1 track r/db9\n",
            7,
            "server 'r/s': unable to find required server 'db9' in backend 'r' for tracking",
        ),
        (
            "backend w\n  server db1 127.0.0.1:1\nbackend r\n  server s 127.0.0.1:1 track w/db1\n",
            9,
            "server 'r/s': unable to use w/db1 for tracking as it does not have any check nor \
             agent enabled",
        ),
        (
            "backend r\n  server a 127.0.0.1:1 check track b\n  server b 127.0.0.1:2 check track a\n",
            7,
            "server 'r/a': unable to track r/b as it belongs to a tracking chain looping back to r/a",
        ),
        (
            "backend r\n  server a 127.0.0.1:1 check track a\n",
            7,
            "tracking chain looping back to r/a",
        ),
        ("backend r\n  server a 127.0.0.1:1 track w/\n", 7, "'track' expects [<proxy>/]<server>"),
        ("backend r\n  server a 127.0.0.1:1 track\n", 7, "'track' needs a value"),
    ];
    for (text, line, needle) in cases {
        let e = errs(&format!("{TIMEOUTS}{text}"));
        let first = &e.0[0];
        assert!(
            first.loc.as_ref().is_some_and(|l| l.line == *line) && first.message.contains(needle),
            "{text}: got {e}"
        );
    }
}

#[test]
fn server_tls_settings_and_their_defaults() {
    let c = ok(&format!(
        "global\n  ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256\n  \
         ssl-default-server-options no-tlsv12\n{TIMEOUTS}backend be\n  \
         default-server ssl verify none alpn h2,http/1.1\n  \
         server a 127.0.0.1:1 sni str(db.example) check\n  \
         server b 127.0.0.1:2 check port 9000\n  \
         server c 127.0.0.1:3 no-ssl check\n  \
         server d 127.0.0.1:4 check no-check-ssl ssl-max-ver TLSv1.2\n"
    ));
    let s = &c.backends[0].servers;
    assert!(s[0].tls.ssl && s[0].health.tls.enabled, "checks follow ssl");
    assert_eq!(
        s[0].tls.sni.as_ref().map(|e| e.text.as_str()),
        Some("str(db.example)")
    );
    assert_eq!(s[0].tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(s[0].tls.verify, Some(false));
    let set = &s[0].tls.settings;
    assert_eq!(set.ciphersuites.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert!(set.no[crate::tls::ciphers::Version::Tls12 as usize]);
    assert!(
        s[1].tls.ssl && !s[1].health.tls.enabled,
        "a check port keeps checks in clear"
    );
    assert!(!s[2].tls.ssl && !s[2].health.tls.enabled);
    assert!(s[3].tls.ssl && !s[3].health.tls.enabled);
    assert_eq!(
        s[3].tls.settings.max,
        Some(crate::tls::ciphers::Version::Tls12)
    );
    // Resumption keywords are accepted.
    ok(&format!(
        "{TIMEOUTS}backend be\n  server a 127.0.0.1:1 ssl verify none no-ssl-reuse no-tls-tickets\n"
    ));
}

#[test]
fn server_tls_errors_name_the_line() {
    let cases = [
        (
            "server s 127.0.0.1:1 ssl verify none ssl-min-ver TLSv9",
            "'ssl-min-ver': expects one of",
        ),
        (
            "server s 127.0.0.1:1 ssl verify none ciphers NOTHING",
            "'ciphers'",
        ),
        (
            "server s 127.0.0.1:1 ssl verify none sni nosuchfetch",
            "'sni': error detected while parsing sni expression",
        ),
        (
            "server s 127.0.0.1:1 ssl verify none ssl-max-ver TLSv1.1",
            "'ssl': the SSL/TLS versions allowed",
        ),
        (
            "default-server no-tlsv12",
            "'no-tlsv12' is not allowed on default-server",
        ),
        (
            "server s 127.0.0.1:1 ssl ca-file /nonexistent-lb/ca.pem",
            "unable to load CA file",
        ),
    ];
    for (line, needle) in cases {
        let e = errs(&format!("{TIMEOUTS}backend be\n  {line}\n")).to_string();
        assert!(e.contains("t.cfg:7:") && e.contains(needle), "{line}: {e}");
    }
    let e = errs("global\n  ssl-default-server-options frob\n").to_string();
    assert!(
        e.contains("unknown option 'frob' on global statement"),
        "{e}"
    );
}
