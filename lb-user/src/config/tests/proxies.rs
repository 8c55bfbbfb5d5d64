//! Proxy sections: defaults, names, binds, keepalive, capabilities, timeouts, balance.

use super::*;

#[test]
fn basic_frontend_backend() {
    let c = ok(&format!(
        "{TIMEOUTS}frontend fe\n  bind 127.0.0.1:8080\n  default_backend be\nbackend be\n  balance leastconn\n  server a 127.0.0.1:9001\n  server b 127.0.0.1:9002 weight 3 backup maxconn 10 maxqueue 5 disabled port 9999\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.frontends.len(), 1);
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "fe");
    assert_eq!(fe.binds[0].addr, sa("127.0.0.1:8080"));
    assert_eq!(fe.backend, Some(0));
    assert_eq!(fe.timeouts.client, Some(Duration::from_secs(30)));
    let be = &c.backends[0];
    assert_eq!((be.id, be.balance, be.retries), (1, Balance::LeastConn, 3));
    assert_eq!(be.timeouts.connect, Some(Duration::from_secs(5)));
    let a = &be.servers[0];
    assert_eq!(
        (a.id, a.weight, a.backup, a.maxconn, a.disabled),
        (1, 1, false, 0, false)
    );
    assert_eq!(a.addr, sa("127.0.0.1:9001"));
    assert_eq!(a.fqdn, None);
    assert_eq!(a.loc.line, 11);
    let b = &be.servers[1];
    assert_eq!(
        (
            b.id,
            b.weight,
            b.backup,
            b.maxconn,
            b.maxqueue,
            b.disabled,
            b.check_port
        ),
        (2, 3, true, 10, 5, true, Some(9999))
    );
}

#[test]
fn defaults_inheritance_and_reset() {
    let c = ok("defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 2s\n  timeout server 3s\n  retries 5\n  option redispatch\n  balance source\n  hash-type consistent sdbm avalanche\n  default-server weight 7\nbackend one\n  server s 127.0.0.1:1\ndefaults\n  timeout connect 4s\nbackend two\n  server s 127.0.0.1:1\n");
    let one = &c.backends[0];
    assert_eq!(one.retries, 5);
    assert!(one.redispatch);
    assert_eq!(one.balance, Balance::Source);
    assert_eq!(
        one.hash_type,
        HashType {
            method: HashMethod::Consistent,
            function: HashFunction::Sdbm,
            avalanche: true
        }
    );
    assert_eq!(one.servers[0].weight, 7);
    assert_eq!(one.timeouts.server, Some(Duration::from_secs(3)));
    // A new defaults section starts from the built-ins again.
    let two = &c.backends[1];
    assert_eq!(two.id, 2);
    assert_eq!(two.retries, 3);
    assert!(!two.redispatch);
    assert_eq!(two.balance, Balance::RoundRobin);
    assert_eq!(two.hash_type, HashType::default());
    assert_eq!(two.servers[0].weight, 1);
    assert_eq!(two.timeouts.connect, Some(Duration::from_secs(4)));
    assert_eq!(two.timeouts.server, None);
    assert!(has_warning(
        &c,
        15,
        "missing timeouts for backend 'two': 'server'"
    ));
}

#[test]
fn named_defaults_with_from() {
    let c = ok("defaults tcpdef\n  mode tcp\n  timeout connect 1s\n  timeout server 1s\n  retries 9\ndefaults other\n  timeout connect 7s\n  timeout server 7s\nbackend a from tcpdef\nbackend b\n");
    assert_eq!(c.backends[0].retries, 9);
    assert_eq!(c.backends[0].timeouts.connect, Some(Duration::from_secs(1)));
    assert_eq!(c.backends[1].retries, 3);
    assert_eq!(c.backends[1].timeouts.connect, Some(Duration::from_secs(7)));
}

#[test]
fn listen_uses_its_own_servers() {
    let c = ok(&format!("{TIMEOUTS}backend other\n  server o 127.0.0.1:1\nlisten mysql\n  bind 127.0.0.1:3306\n  bind [::1]:3306 name v6\n  balance first\n  server m 127.0.0.1:3307 id 10\n  server r 127.0.0.1:3308\n"));
    assert_eq!(c.backends.len(), 2);
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "mysql");
    assert_eq!(fe.backend, Some(1));
    assert_eq!(c.backends[1].name, "mysql");
    assert_eq!(c.backends[1].balance, Balance::First);
    assert_eq!(
        fe.binds.iter().map(|b| b.addr).collect::<Vec<_>>(),
        [sa("127.0.0.1:3306"), sa("[::1]:3306")]
    );
    assert_eq!(fe.binds[1].name.as_deref(), Some("v6"));
    let ids: Vec<u32> = c.backends[1].servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, [10, 1]);
}

#[test]
fn several_binds_and_ipv6() {
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind :80,:81\n  bind [::]:443 v6only\n  bind ipv4@127.0.0.1:90 name local\n  maxconn 100\n  default_backend be\nbackend be\n"));
    let fe = &c.frontends[0];
    let addrs: Vec<SocketAddr> = fe.binds.iter().map(|b| b.addr).collect();
    assert_eq!(
        addrs,
        [
            sa("0.0.0.0:80"),
            sa("0.0.0.0:81"),
            sa("[::]:443"),
            sa("127.0.0.1:90")
        ]
    );
    assert_eq!(fe.binds[2].loc.line, 8);
    assert_eq!(fe.maxconn, Some(100));
    assert_eq!(fe.binds[2].opts.v6only, Some(true));
    // An empty backend is allowed (connections fail with no server).
    assert!(c.backends[0].servers.is_empty());
}

#[test]
fn keepalive_options() {
    let c = ok(&format!("{TIMEOUTS}  option tcpka\nlisten l\n  bind :1\n  clitcpka-idle 60\n  srvtcpka-intvl 10s\n  srvtcpka-cnt 5\n  server s 127.0.0.1:2\nbackend b\n  no option tcpka\n  option srvtcpka\nfrontend f\n  bind :3\n  default_backend b\n  option clitcpka\n  clitcpka-cnt 9\n  option splice-auto\n"));
    let l_fe = &c.frontends[0];
    assert!(l_fe.keepalive.enabled);
    assert_eq!(l_fe.keepalive.idle, secs(60));
    assert_eq!(l_fe.keepalive.intvl, Duration::from_secs(30));
    let l_be = &c.backends[0];
    assert!(l_be.keepalive.enabled);
    assert_eq!(l_be.keepalive.intvl, Duration::from_secs(10));
    assert_eq!(
        (l_be.keepalive.idle, l_be.keepalive.cnt),
        (Duration::from_secs(110), 5)
    );
    assert!(c.backends[1].keepalive.enabled);
    let f = &c.frontends[1];
    assert!(f.keepalive.enabled);
    assert_eq!(f.keepalive.cnt, 9);
    // splice options are what lb does anyway: no warning.
    assert!(!c.warnings.iter().any(|w| w.message.contains("splice")));
}

#[test]
fn smart_accept_and_connect_follow_defaults_and_capabilities() {
    let c = ok(&format!("{TIMEOUTS}  option tcp-smart-accept\n  option tcp-smart-connect\nlisten l\n  bind :1\n  bind :2\n  server s 127.0.0.1:3\nfrontend f\n  bind :4\n  no option tcp-smart-accept\n  option tcp-smart-connect\n  default_backend b\nbackend b\n  no option tcp-smart-connect\n  option tcp-smart-accept\n  server s 127.0.0.1:5\n"));
    // Every listener of a frontend with the option gets it; `no option` in a section wins over
    // its defaults.
    let l = &c.frontends[0];
    assert!(l.binds.iter().all(|b| b.opts.smart_accept) && l.binds.len() == 2);
    assert!(!c.frontends[1].binds[0].opts.smart_accept);
    assert!(c.backends[0].smart_connect);
    assert!(!c.backends[1].smart_connect);
    // Each option belongs to one side, as in HAProxy: the other side ignores it with a word.
    assert!(has_warning(
        &c,
        15,
        "'option tcp-smart-connect' ignored because frontend 'f' has no backend capability"
    ));
    assert!(has_warning(
        &c,
        19,
        "'option tcp-smart-accept' ignored because backend 'b' has no frontend capability"
    ));
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.message.contains("not supported yet")));
}

/// `option nolinger` is a frontend and backend option (`HAProxy`'s `PR_CAP_FE | PR_CAP_BE`):
/// from `defaults` into every section, a `listen` takes it on both halves, `no option nolinger`
/// clears it, and it is acted on (no "not supported yet").
#[test]
fn nolinger_on_both_sides_from_defaults_and_cleared_by_no_option() {
    let c = ok(&format!("{TIMEOUTS}  option nolinger\nlisten l\n  bind :1\n  server s 127.0.0.1:2\nfrontend f\n  bind :3\n  default_backend b\nbackend b\n  no option nolinger\n  server s 127.0.0.1:4\nfrontend g\n  bind :5\n  no option nolinger\n  default_backend c\nbackend c\n  server s 127.0.0.1:6\nfrontend h\n  bind :7\n  default_backend b\n  option nolinger\n"));
    let fe = |name: &str| c.frontends.iter().find(|f| f.name == name).unwrap();
    let be = |name: &str| c.backends.iter().find(|b| b.name == name).unwrap();
    assert!(
        fe("l").nolinger && be("l").nolinger,
        "a listen has both sides"
    );
    assert!(fe("f").nolinger, "from defaults");
    assert!(
        !be("b").nolinger,
        "'no option nolinger' clears the defaults' one"
    );
    assert!(!fe("g").nolinger);
    assert!(be("c").nolinger, "from defaults");
    assert!(fe("h").nolinger, "set in the section itself");
    assert!(
        c.warnings.is_empty(),
        "no warning: {:?}",
        c.warnings.iter().map(|w| &w.message).collect::<Vec<_>>()
    );
    let off = ok(&format!(
        "{TIMEOUTS}listen l\n  bind :1\n  server s 127.0.0.1:2\n"
    ));
    assert!(
        !off.frontends[0].nolinger && !off.backends[0].nolinger,
        "off by default"
    );
    let e = errs(&format!(
        "{TIMEOUTS}listen l\n  bind :1\n  option nolinger now\n  server s 127.0.0.1:2\n"
    ));
    let e = e.to_string();
    assert!(
        e.contains("t.cfg:8") && e.contains("'option nolinger': unexpected argument 'now'"),
        "{e}"
    );
}

#[test]
fn http_defaults_are_fine_when_proxies_say_mode_tcp() {
    let c = ok("defaults\n  mode http\n  option httplog\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n  timeout http-request 10s\nfrontend fe\n  mode tcp\n  bind :5000\n  default_backend be\nbackend be\n  mode tcp\n  server s 127.0.0.1:5001\nlisten stats\n  bind :8404\n  stats uri /\n");
    assert_eq!(c.frontends.len(), 1);
    assert!(has_warning(&c, 3, "'option httplog' is HTTP-only"));
    // Used by the stats page (inherited from the defaults), so no warning there.
    assert!(!has_warning(&c, 7, "'timeout http-request'"));
    assert_eq!(c.stats[0].uri, "/");
    assert_eq!(c.stats[0].request_timeout, Some(Duration::from_secs(10)));
    assert_eq!(c.stats[0].timeout, Some(Duration::from_mins(1)));
}

#[test]
fn not_supported_yet_warnings_name_the_feature() {
    let c = ok(&format!("global\n  stats socket /run/lb.sock mode 660 level admin\n  pidfile /run/lb.pid\n  tune.bufsize 32k\n  log 127.0.0.1:514 local0 notice\n  daemon\n  user lb\n  group lb\n  maxconn 1000\n  nbthread 4\n{TIMEOUTS}frontend fe\n  bind :1\n  use_backend be if {{ src 10.0.0.0/8 }}\n  default_backend be\n  tcp-request connection reject if {{ src 1.2.3.4 }}\n  acl a src 1.2.3.4\nbackend be\n  option mysql-check user haproxy post-41\n  option log-health-checks\n  server s 127.0.0.1:2 check inter 2s rise 2 fall 3 send-proxy\n"));
    assert_eq!(c.global.maxconn, Some(1000));
    assert_eq!(c.global.nbthread, Some(4));
    assert_eq!(c.global.user.as_deref(), Some("lb"));
    assert!(c.global.daemon);
    assert_eq!(c.global.logs[0].args, ["127.0.0.1:514", "local0", "notice"]);
    assert_eq!(c.global.stats_sockets.len(), 1);
    assert_eq!(
        c.global.pidfile.as_deref(),
        Some(std::path::Path::new("/run/lb.pid"))
    );
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.loc.line == 3 || w.loc.line == 6));
    assert_eq!(c.global.bufsize, 32 * 1024);
    // ACLs, rules, routing and send-proxy are supported: no warning on their lines.
    assert!(has_warning(
        &c,
        20,
        "a 'tcp-request connection' rule placed after a 'use_backend' rule will still be processed before"
    ));
    for line in [4, 18, 21, 23, 24, 25] {
        assert!(
            !c.warnings.iter().any(|w| w.loc.line == line),
            "line {line}: {:?}",
            c.warnings
        );
    }
    assert_eq!(
        c.backends[0].servers[0].proxy.version,
        Some(crate::config::ProxyVersion::V1)
    );
}

#[test]
fn capability_warnings() {
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind :1\n  default_backend be\n  balance leastconn\nbackend be\n  maxconn 5\n"));
    assert!(has_warning(
        &c,
        9,
        "'balance' ignored because frontend 'fe' has no backend capability"
    ));
    assert!(has_warning(
        &c,
        11,
        "'maxconn' ignored because backend 'be' has no frontend capability"
    ));
    assert_eq!(c.backends[0].balance, Balance::RoundRobin);
}

#[test]
fn missing_timeouts_warn() {
    let c = ok("frontend fe\n  bind :1\n  default_backend be\nbackend be\n");
    assert!(has_warning(
        &c,
        1,
        "missing timeouts for frontend 'fe': 'client'"
    ));
    assert!(has_warning(
        &c,
        4,
        "missing timeouts for backend 'be': 'connect', 'server'"
    ));
}

#[test]
fn frontend_and_backend_may_share_a_name() {
    let c = ok(&format!("{TIMEOUTS}frontend app\n  bind :1\n  default_backend app\nbackend app\n  server s 127.0.0.1:2\n"));
    assert_eq!(c.frontends[0].backend, Some(0));
    assert_eq!(c.backends[0].name, "app");
}

#[test]
fn zero_timeout_means_none_and_units_apply() {
    let c = ok("defaults\n  timeout connect 0\n  timeout client 1m\n  timeout server 90000\n  timeout tunnel 1h\n  timeout queue 250ms\n  timeout client-fin 1s\n  timeout server-fin 2s\n  timeout check 3s\nbackend be\n");
    let t = c.backends[0].timeouts;
    assert_eq!(t.connect, None);
    assert_eq!(t.client, Some(secs(60)));
    assert_eq!(t.server, Some(Duration::from_secs(90)));
    assert_eq!(t.tunnel, Some(secs(3600)));
    assert_eq!(t.queue, Some(Duration::from_millis(250)));
    assert_eq!(t.client_fin, Some(Duration::from_secs(1)));
    assert_eq!(t.server_fin, Some(Duration::from_secs(2)));
    assert_eq!(t.check, Some(Duration::from_secs(3)));
}

#[test]
fn hash_type_defaults_follow_haproxy() {
    use HashFunction::{Crc32, Djb2, None as NoHash, Sdbm, Wt6};
    use HashMethod::{Consistent, Maglev, MapBased};
    let ht = |line: &str| {
        let c = ok(&format!(
            "backend be\n  balance source\n  {line}\n  server s 127.0.0.1:1\n"
        ));
        c.backends[0].hash_type
    };
    let t = |method, function, avalanche| HashType {
        method,
        function,
        avalanche,
    };
    // No function named: sdbm, and consistent hashing adds avalanche (cfgparse-listen.c).
    assert_eq!(ht("hash-type map-based"), t(MapBased, Sdbm, false));
    assert_eq!(ht("hash-type consistent"), t(Consistent, Sdbm, true));
    assert_eq!(ht("hash-type consistent sdbm"), t(Consistent, Sdbm, false));
    assert_eq!(
        ht("hash-type consistent djb2 avalanche"),
        t(Consistent, Djb2, true)
    );
    assert_eq!(ht("hash-type map-based wt6"), t(MapBased, Wt6, false));
    assert_eq!(
        ht("hash-type map-based crc32 avalanche"),
        t(MapBased, Crc32, true)
    );
    assert_eq!(
        ht("hash-type consistent none"),
        t(Consistent, NoHash, false)
    );
    assert_eq!(ht("hash-type maglev"), t(Maglev, Sdbm, true));
    let c = ok("backend be\n  balance hash src\n  hash-type maglev\n  server s 127.0.0.1:1\n");
    assert_eq!(c.backends[0].balance, Balance::Hash(HashExpr::Src));
    let r = ok(
        "backend a\n  balance rdp-cookie\n  server s 127.0.0.1:1\nbackend b\n  balance \
                rdp-cookie(user)\n  server s 127.0.0.1:1\nbackend c\n  balance roundrobin\n  \
                server s 127.0.0.1:1\n",
    );
    assert_eq!(r.backends[0].balance, Balance::RdpCookie);
    assert_eq!(
        r.backends[0].balance_rdp_cookie.as_deref(),
        Some("mstshash")
    );
    assert_eq!(r.backends[1].balance_rdp_cookie.as_deref(), Some("user"));
    assert_eq!(r.backends[2].balance_rdp_cookie, None);
    for bad in ["rdp-cookie()", "rdp-cookie(x", "rdp-cookiex"] {
        let e = errs(&format!(
            "backend be\n  balance {bad}\n  server s 127.0.0.1:1\n"
        ));
        assert!(
            format!("{e}").contains("rdp-cookie : missing cookie name."),
            "{bad}: {e}"
        );
    }
    // maglev is lb's own: `lb -c` says so, at its line.
    assert!(has_warning(
        &c,
        3,
        "'hash-type maglev' is an lb extension that HAProxy does not have"
    ));
    assert!(
        !ok("backend be\n  hash-type consistent wt6\n  server s 127.0.0.1:1\n")
            .warnings
            .iter()
            .any(|w| w.message.contains("hash-type"))
    );
}

#[test]
fn balance_variants() {
    for (word, b) in [
        ("roundrobin", Balance::RoundRobin),
        ("static-rr", Balance::StaticRr),
        ("leastconn", Balance::LeastConn),
        ("first", Balance::First),
        ("source", Balance::Source),
        ("random", Balance::Random { draws: 2 }),
        ("random(3)", Balance::Random { draws: 3 }),
    ] {
        let c = ok(&format!("{TIMEOUTS}backend be\n  balance {word}\n"));
        assert_eq!(c.backends[0].balance, b, "{word}");
    }
}

#[test]
fn stats_in_a_backend_is_served_by_the_frontends_that_forward_to_it() {
    // File 12 of the corpus: a mode http frontend, a stats backend defined after it.
    let c = ok(&format!("{TIMEOUTS}frontend stats-front\n  bind 127.0.0.1:8404\n  mode http\n  default_backend stats-back\nfrontend tcpfe\n  bind 127.0.0.1:8405\n  default_backend stats-back\nbackend stats-back\n  mode http\n  balance roundrobin\n  stats uri /haproxy/stats\n  stats auth u:p\n  stats show-legends\n  stats show-node n1\n  stats show-desc hello world\n"));
    assert!(c.frontends.is_empty());
    assert_eq!(c.stats.len(), 2, "{:?}", c.stats);
    let st = &c.stats[0];
    assert_eq!(st.name, "stats-front");
    assert_eq!(st.binds[0].addr, "127.0.0.1:8404".parse().unwrap());
    assert_eq!(st.uri, "/haproxy/stats");
    assert_eq!(st.users.len(), 1);
    assert!(st.show_legends);
    assert_eq!(st.show_node.as_deref(), Some("n1"));
    assert_eq!(st.show_desc.as_deref(), Some("hello world"));
    // A mode tcp frontend forwarding to it too (HAProxy upgrades the stream to HTTP).
    assert_eq!(c.stats[1].name, "tcpfe");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn mode_http_frontend_to_a_tcp_backend_is_still_refused() {
    let e = err(&format!("{TIMEOUTS}frontend fe\n  bind :1\n  mode http\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    assert!(e.contains("t.cfg:8: mode http is not supported"), "{e}");
}

#[test]
fn stats_in_mode_tcp_is_ignored_as_haproxy_does() {
    let c = ok(&format!("{TIMEOUTS}listen stats\n  bind :9999\n  stats enable\n  stats uri /\n  server s 127.0.0.1:2\n"));
    assert!(has_warning(
        &c,
        8,
        "'stats enable' is HTTP-only; ignored in mode tcp"
    ));
}

#[test]
fn process_keywords_are_kept() {
    let c = ok(&format!("global\n  daemon\n  pidfile /run/x.pid\n  chroot /var/empty\n  maxpipes 10\n  node n1\n  description a b\n  crt-base /etc/ssl\n  ssl-default-bind-ciphers HIGH\n  tune.ssl.default-dh-param 2048\n{TIMEOUTS}backend be\n  server s 127.0.0.1:2\n"));
    let g = &c.global;
    assert!(g.daemon);
    assert_eq!(
        g.chroot.as_deref(),
        Some(std::path::Path::new("/var/empty"))
    );
    assert_eq!(g.maxpipes, Some(10));
    assert_eq!(g.node.as_deref(), Some("n1"));
    assert_eq!(g.description.as_deref(), Some("a b"));
    // TLS listener settings change nothing in a config without TLS listeners: no warning.
    assert!(
        c.warnings.iter().all(|w| w.loc.line > 11),
        "{:?}",
        c.warnings
    );
    let e = err(&format!("global\n  maxpipes 0\n{TIMEOUTS}"));
    assert!(e.contains("'maxpipes'"), "{e}");
}

#[test]
fn servers_without_port_map_the_client_port() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server a 127.0.0.1\n  server b 127.0.0.1:+10\n  server c 127.0.0.1:-1\n  server d 127.0.0.1:0 check port 22\n  server e 127.0.0.1:80\n"));
    let s = &c.backends[0].servers;
    assert_eq!(s[0].port_offset, Some(0));
    assert_eq!(s[1].port_offset, Some(10));
    assert_eq!(s[2].port_offset, Some(-1));
    assert_eq!(s[3].port_offset, Some(0));
    assert_eq!(s[4].port_offset, None);
    assert_eq!(s[1].target_port(0, 20000), 20010);
    assert_eq!(s[2].target_port(0, 0), 65535, "wraps as a 16-bit port");
    assert_eq!(s[4].target_port(80, 20000), 80);
    // A checked server needs a port to check.
    let e = err(&format!(
        "{TIMEOUTS}backend be\n  server a 127.0.0.1 check\n"
    ));
    assert!(e.contains("has neither service port nor check port"), "{e}");
    let e = err(&format!("{TIMEOUTS}backend be\n  server a 127.0.0.1:+x\n"));
    assert!(e.contains("invalid port '+x'"), "{e}");
}

#[test]
fn the_backlog_is_the_binds_then_the_frontends_then_maxconn() {
    let c = ok(&format!("global\n  maxconn 300\n{TIMEOUTS}  backlog 200\nfrontend a\n  bind :1 backlog 33\n  bind :2\n  default_backend be\nfrontend b\n  maxconn 55\n  backlog 77\n  bind :3\n  default_backend be\nfrontend c\n  bind :4\n  default_backend be\nbackend be\n  backlog 9\n  server s 127.0.0.1:2\n"));
    let backlog = |f: usize, b: usize| c.frontends[f].binds[b].opts.backlog;
    assert_eq!(backlog(0, 0), Some(33));
    assert_eq!(backlog(0, 1), Some(200));
    assert_eq!(backlog(1, 0), Some(77));
    assert_eq!(backlog(2, 0), Some(200));
    assert!(has_warning(
        &c,
        22,
        "'backlog' ignored because backend 'be' has no frontend capability"
    ));
    let c = ok(&format!("global\n  maxconn 300\n{TIMEOUTS}frontend b\n  maxconn 55\n  bind :3\n  default_backend be\nfrontend c\n  bind :4\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    assert_eq!(c.frontends[0].binds[0].opts.backlog, Some(55));
    assert_eq!(c.frontends[1].binds[0].opts.backlog, Some(300));
    let c = ok(&format!("{TIMEOUTS}frontend c\n  bind :4\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    assert_eq!(c.frontends[0].binds[0].opts.backlog, None);
    assert_eq!(c.frontends[0].binds[0].opts.listen_backlog(), 4096);
}

#[test]
fn a_binds_maxconn_is_its_own_limit_and_its_backlog_before_the_frontends_maxconn() {
    let c = ok(&format!("{TIMEOUTS}frontend a\n  maxconn 55\n  bind :1-2 maxconn 7\n  bind :3 maxconn 0\n  bind :4 maxconn 9 backlog 3\n  bind :5\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    let b = &c.frontends[0].binds;
    let got: Vec<_> = b.iter().map(|b| (b.maxconn, b.opts.backlog)).collect();
    assert_eq!(
        got,
        [
            // Each address of a range has the line's limit.
            (Some(7), Some(7)),
            (Some(7), Some(7)),
            // 0: no limit of its own (HAProxy's), the frontend's maxconn then.
            (None, Some(55)),
            (Some(9), Some(3)),
            (None, Some(55)),
        ]
    );
    for bad in ["-1", "x", "1x"] {
        let e = err(&format!("{TIMEOUTS}frontend a\n  bind :1 maxconn {bad}\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
        assert!(e.contains(":7: 'bind' option 'maxconn': "), "{e}");
    }
    let e = err(&format!("{TIMEOUTS}frontend a\n  bind :1 maxconn\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    assert!(e.contains("'bind' option 'maxconn' needs a value"), "{e}");
}

#[test]
fn rate_limit_sessions_is_a_frontends_and_zero_is_none() {
    let c = ok(&format!("{TIMEOUTS}  rate-limit sessions 50\nfrontend a\n  bind :1\n  default_backend be\nfrontend b\n  bind :2\n  rate-limit sessions 0\n  default_backend be\nfrontend c\n  bind :3\n  rate-limit sessions 7\n  default_backend be\nbackend be\n  rate-limit sessions 9\n  server s 127.0.0.1:2\n"));
    assert_eq!((c.global.maxconnrate, c.global.maxsessrate), (None, None));
    let limit = |f: usize| c.frontends[f].rate_limit_sessions;
    assert_eq!((limit(0), limit(1), limit(2)), (Some(50), None, Some(7)));
    assert!(has_warning(
        &c,
        19,
        "'rate-limit' ignored because backend 'be' has no frontend capability"
    ));
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.message.contains("not supported yet")));
    let c = ok(&format!(
        "global\n  maxconnrate 100\n  maxsessrate 0\n{TIMEOUTS}backend be\n"
    ));
    assert_eq!(
        (c.global.maxconnrate, c.global.maxsessrate),
        (Some(100), None)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn bind_socket_options_are_kept() {
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind :::1 v6only defer-accept tfo interface lo transparent name x\n  bind :2 v4v6\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n"));
    let b = &c.frontends[0].binds;
    assert_eq!(b[0].opts.v6only, Some(true));
    assert!(b[0].opts.defer_accept && b[0].opts.tfo && b[0].opts.transparent);
    assert_eq!(b[0].opts.interface.as_deref(), Some("lo"));
    assert_eq!(b[0].name.as_deref(), Some("x"));
    assert_eq!(b[1].opts.v6only, Some(false));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn bind_mss_and_user_timeout_are_kept_and_checked() {
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind :1 mss 1200 tcp-ut 30s\n  bind :2 mss -40 tcp-ut 500\n  bind :3 tcp-ut 0\n  default_backend be\nbackend be\n  server s 127.0.0.1:2 tcp-ut 20s\n  server t 127.0.0.1:3\n"));
    let b = &c.frontends[0].binds;
    assert_eq!(
        (b[0].opts.mss, b[0].opts.user_timeout),
        (Some(1200), Some(Duration::from_secs(30)))
    );
    assert_eq!(
        (b[1].opts.mss, b[1].opts.user_timeout),
        (Some(-40), Some(Duration::from_millis(500)))
    );
    assert_eq!((b[2].opts.mss, b[2].opts.user_timeout), (None, None));
    let servers = &c.backends[0].servers;
    assert_eq!(servers[0].tcp_ut, Some(Duration::from_secs(20)));
    assert_eq!(servers[1].tcp_ut, None);
    // A negative MSS is HAProxy's "lower each accepted connection's": nothing on Linux.
    let warned: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        warned.len() == 1 && warned[0].contains("'mss -40' does nothing on Linux"),
        "{warned:?}"
    );
    for bad in ["mss 0", "mss 65536", "mss -70000", "mss x"] {
        let e = err(&format!(
            "{TIMEOUTS}frontend fe\n  bind :1 {bad}\n  default_backend be\nbackend be\n"
        ));
        assert!(
            e.contains("t.cfg:") && e.contains("'bind' option 'mss'"),
            "{bad}: {e}"
        );
    }
    let e = err(&format!(
        "{TIMEOUTS}frontend fe\n  bind :1 tcp-ut soon\n  default_backend be\nbackend be\n  server s 127.0.0.1:2 tcp-ut 3q\n"
    ));
    assert!(
        e.contains("'bind' option 'tcp-ut': invalid time 'soon'"),
        "{e}"
    );
    assert!(
        e.contains("server 'be/s': 'tcp-ut': invalid time '3q'"),
        "{e}"
    );
}

#[test]
fn check_addr_may_be_a_host_name() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n  server s 127.0.0.1:2 check addr localhost port 8008\n"
    ));
    assert!(c.backends[0].servers[0]
        .health
        .addr
        .is_some_and(|a| a.is_loopback()));
}

/// The errors of a config that must fail, as one text.
fn err(text: &str) -> String {
    errs(text).to_string()
}

#[test]
fn sockmap_backlog_is_a_size_in_bytes() {
    let c = ok(&format!(
        "global\n  tune.lb.sockmap-backlog 8m\n{TIMEOUTS}backend be\n"
    ));
    assert_eq!(c.global.sockmap_backlog, Some(8 << 20));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = ok(&format!("{TIMEOUTS}backend be\n"));
    assert_eq!(c.global.sockmap_backlog, None);
}

/// `option persist` (from `defaults` too, `no option persist` clears it), `force-persist`
/// rules (backends only: an error in `defaults`, ignored with a warning in a frontend, an
/// `if|unless` condition required) and `persist rdp-cookie[(NAME)]`, as HAProxy's.
/// `ignore-persist` only acts on HTTP cookies.
#[test]
fn persist_options_and_rules() {
    let c = ok(&format!(
        "{TIMEOUTS}  option persist\nbackend be\n  force-persist if {{ src 10.0.0.1 }}\n  \
         force-persist unless {{ src 10.0.0.3 }}\n  ignore-persist if {{ src 10.0.0.2 }}\n  \
         server s1 127.0.0.1:1\nbackend other\n  no option persist\n  server s2 127.0.0.1:2\n\
         frontend fe\n  bind :1\n  force-persist if TRUE\n  default_backend be\n"
    ));
    assert!(c.backends[0].persist && !c.backends[1].persist);
    assert_eq!(c.backends[0].rules.force_persist.len(), 2);
    assert!(has_warning(&c, 10, "'ignore-persist' is HTTP-only"));
    assert!(has_warning(
        &c,
        17,
        "'force-persist' ignored because frontend 'fe' has no backend capability"
    ));
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.message.contains("not supported yet")));
    let e = err(&format!(
        "{TIMEOUTS}  force-persist if TRUE\nbackend be\n  server s 127.0.0.1:1\n"
    ));
    assert!(
        e.contains("t.cfg:6: 'force-persist' not allowed in 'defaults' section."),
        "{e}"
    );
    let e = err(&format!(
        "{TIMEOUTS}backend be\n  force-persist\n  server s 127.0.0.1:1\n"
    ));
    assert!(
        e.contains(
            "t.cfg:7: 'force-persist' requires either 'if' or 'unless' followed by a condition."
        ),
        "{e}"
    );
    let c = ok(&format!(
        "{TIMEOUTS}  persist rdp-cookie\nbackend a\n  server s 127.0.0.1:1\nbackend b\n  \
         persist rdp-cookie(mstshash)\n  server s 127.0.0.1:1\n"
    ));
    assert_eq!(c.backends[0].rdp_cookie_persist.as_deref(), Some("msts"));
    assert_eq!(
        c.backends[1].rdp_cookie_persist.as_deref(),
        Some("mstshash")
    );
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n  persist rdp-cookie\n  server s 127.0.0.1\n  server t \
         127.0.0.1:3389\n"
    ));
    assert!(has_warning(
        &c,
        8,
        "backend 'be' : RDP cookie persistence will not work for server 's' because it lacks an \
         explicit port number."
    ));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    for (line, want) in [
        ("persist", "missing persist method."),
        ("persist cookie", "unknown persist method."),
        (
            "persist rdp-cookie()",
            "persist rdp-cookie(name)' requires an rdp cookie name.",
        ),
        (
            "persist rdp-cookiex",
            "persist rdp-cookie(name)' requires an rdp cookie name.",
        ),
    ] {
        let e = err(&format!(
            "{TIMEOUTS}backend be\n  {line}\n  server s 127.0.0.1:1\n"
        ));
        assert!(e.contains(&format!("t.cfg:7: {want}")), "{line}: {e}");
    }
}

#[test]
fn description_on_each_proxy_refused_in_defaults() {
    let c = ok(&format!(
        "{TIMEOUTS}listen db\n  bind :3306\n  description MySQL   replicas (eu)\n  server a 127.0.0.1:9001\nfrontend fe\n  bind :1\n  default_backend be\nbackend be\n  description  cache\n  server b 127.0.0.1:9002\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.frontends[0].description.as_deref(),
        Some("MySQL replicas (eu)")
    );
    assert_eq!(c.frontends[1].description, None);
    assert_eq!(
        c.backends[0].description.as_deref(),
        Some("MySQL replicas (eu)")
    );
    assert_eq!(c.backends[1].description.as_deref(), Some("cache"));
    let e = err(&format!(
        "{TIMEOUTS}  description shared\nlisten db\n  bind :3306\n  server a 127.0.0.1:9001\n"
    ));
    assert!(
        e.contains("t.cfg:6: 'description' not allowed in 'defaults' section"),
        "{e}"
    );
    let e = err(&format!(
        "{TIMEOUTS}listen db\n  bind :3306\n  description\n  server a 127.0.0.1:9001\n"
    ));
    assert!(
        e.contains("t.cfg:8: 'description' expects a string argument"),
        "{e}"
    );
}

#[test]
fn minconn_and_maxconn_settle_as_haproxy_settles_them() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be\n  fullconn 300\n  server dynamic 127.0.0.1:1 minconn 10 maxconn 100\n  server only_max 127.0.0.1:2 maxconn 50\n  server only_min 127.0.0.1:3 minconn 20\n  server min_above 127.0.0.1:4 minconn 30 maxconn 5\n  server none 127.0.0.1:5\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let limits: Vec<(u32, u32)> = c.backends[0]
        .servers
        .iter()
        .map(|s| (s.minconn, s.maxconn))
        .collect();
    assert_eq!(limits, [(10, 100), (50, 50), (20, 20), (30, 30), (0, 0)]);
    assert_eq!(c.backends[0].fullconn, Some(300));
    assert_eq!(c.fullconn(0, 4096), 300);
}

#[test]
fn fullconn_defaults_to_a_tenth_of_the_frontends_that_reach_the_backend() {
    let c = ok(&format!(
        "global\n  maxconn 1000\n{TIMEOUTS}frontend a\n  bind :1\n  maxconn 95\n  default_backend be\nfrontend b\n  bind :2\n  use_backend be if TRUE\n  use_backend be if FALSE\n  default_backend other\nfrontend c\n  bind :3\n  default_backend other\nlisten own\n  bind :4\n  maxconn 30\n  server s 127.0.0.1:9\nbackend be\n  server s 127.0.0.1:9\nbackend other\n  fullconn 0\n  server s 127.0.0.1:9\nbackend unreached\n  server s 127.0.0.1:9\n"
    ));
    let idx = |name: &str| c.backends.iter().position(|b| b.name == name).unwrap();
    // a (95) and b (the process's 1000, once however many rules name it): 110.
    assert_eq!(c.fullconn(idx("be"), 1000), 110);
    // b and c, 2000; `fullconn 0` is the default.
    assert_eq!(c.fullconn(idx("other"), 1000), 200);
    assert_eq!(c.fullconn(idx("own"), 1000), 3);
    assert_eq!(c.fullconn(idx("unreached"), 1000), 1);
}

#[test]
fn fullconn_in_a_frontend_is_ignored_with_haproxys_warning() {
    let c = ok(&format!(
        "{TIMEOUTS}frontend fe\n  bind :1\n  fullconn 10\n  default_backend be\nbackend be\n  server s 127.0.0.1:9\n"
    ));
    assert!(
        has_warning(
            &c,
            8,
            "'fullconn' ignored because frontend 'fe' has no backend capability"
        ),
        "{:?}",
        c.warnings
    );
    let e = err(&format!("{TIMEOUTS}backend be\n  fullconn many\n"));
    assert!(e.contains("t.cfg:7: 'fullconn'"), "{e}");
}

#[test]
fn abortonclose_is_a_backend_option() {
    let c = ok(&format!(
        "{TIMEOUTS}  option abortonclose\nfrontend fe\n  bind :1\n  option abortonclose\n  default_backend be\nbackend be\n  server s 127.0.0.1:9\nbackend plain\n  no option abortonclose\n  server s 127.0.0.1:9\n"
    ));
    assert!(c.backends[0].abortonclose);
    assert!(!c.backends[1].abortonclose);
    assert!(
        has_warning(
            &c,
            9,
            "'option abortonclose' ignored because frontend 'fe' has no backend capability"
        ),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn tls_bind_options_and_global_defaults_are_kept() {
    use crate::tls::ciphers::Version;
    let dir = crate::tls::testutil::temp_dir("cfg");
    crate::tls::testutil::self_signed(&dir, "a.pem", "a.example", &["a.example"]);
    let c = ok(&format!(
        "global\n  crt-base {}\n  ssl-default-bind-ciphers ECDHE+AESGCM\n  \
         ssl-default-bind-options no-sslv3 no-tls-tickets ssl-max-ver TLSv1.3\n\
         {TIMEOUTS}frontend fe\n  bind :1 ssl crt a.pem alpn h2,http/1.1 ciphersuites \
         TLS_AES_128_GCM_SHA256 ssl-min-ver TLSv1.2 strict-sni\n  bind :2\n  \
         bind :3 crt a.pem\n  default_backend be\nbackend be\n  server s 127.0.0.1:2\n",
        dir.display()
    ));
    let b = &c.frontends[0].binds;
    let t = b[0].tls.as_ref().expect("a TLS bind");
    assert_eq!(t.crts, [dir.join("a.pem")]);
    assert_eq!(t.opts.alpn, ["h2", "http/1.1"]);
    assert!(t.opts.strict_sni && t.opts.no_tls_tickets);
    assert_eq!(t.settings.ciphers.as_deref(), Some("ECDHE+AESGCM"));
    assert_eq!(
        t.settings.ciphersuites.as_deref(),
        Some("TLS_AES_128_GCM_SHA256")
    );
    assert_eq!(
        (t.settings.min, t.settings.max),
        (Some(Version::Tls12), Some(Version::Tls13))
    );
    assert!(t.settings.no[0]);
    assert!(b[1].tls.is_none());
    // TLS options without `ssl` do nothing, as HAProxy's: a warning.
    assert!(b[2].tls.is_none());
    assert!(
        has_warning(&c, 13, "TLS options without 'ssl'"),
        "{:?}",
        c.warnings
    );
    let _ = std::fs::remove_dir_all(&dir);
}
