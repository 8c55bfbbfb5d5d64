//! haproxy.cfg health-check keywords -> the model: what is stored, inherited and rejected.

use std::time::Duration;

use crate::config::{
    load_str, CheckKind, Config, ConnectRule, ExpectPattern, HttpExpectKind, LfPart, LogFormat,
    MysqlVersion, OnError, TcpCheckRule,
};

const HEAD: &str =
    "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n";

fn ok(body: &str) -> Config {
    load_str("t.cfg", &format!("{HEAD}{body}")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(body: &str) -> String {
    load_str("t.cfg", &format!("{HEAD}{body}")).map_or_else(|e| e.to_string(), |_| String::new())
}

fn no_check_warnings(c: &Config) {
    for w in &c.warnings {
        assert!(
            !w.message.contains("health checks"),
            "unexpected warning: {w}"
        );
    }
}

#[test]
fn server_health_keywords_and_default_server() {
    let c = ok("global\n  spread-checks 5\nbackend be\n  default-server inter 300ms fastinter 100ms downinter 1s rise 3 fall 2 slowstart 10s on-marked-down shutdown-sessions\n  server a 127.0.0.1:1 check port 9 addr 127.0.0.2 observe layer4 error-limit 5 on-error sudden-death\n  server b 127.0.0.1:2 check inter 2s on-marked-up shutdown-backup-sessions\n  server c 127.0.0.1:3\n");
    no_check_warnings(&c);
    assert_eq!(c.global.spread_checks, 5);
    let s = &c.backends[0].servers;
    let a = &s[0].health;
    assert!(a.check);
    assert_eq!(a.inter, Duration::from_millis(300));
    assert_eq!(a.fastinter, Some(Duration::from_millis(100)));
    assert_eq!(a.downinter, Some(Duration::from_secs(1)));
    assert_eq!((a.rise, a.fall), (3, 2));
    assert_eq!(a.slowstart, Some(Duration::from_secs(10)));
    assert!(a.shutdown_on_down && !a.shutdown_backup_on_up);
    assert!(a.observe_layer4);
    assert_eq!((a.error_limit, a.on_error), (5, OnError::SuddenDeath));
    assert_eq!(a.addr, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(s[0].check_port, Some(9));
    assert_eq!(s[1].health.inter, Duration::from_secs(2));
    assert!(s[1].health.shutdown_backup_on_up);
    assert!(!s[2].health.check);
    assert_eq!(
        s[2].health.rise, 3,
        "default-server applies to unchecked servers too"
    );
    assert_eq!(c.backends[0].check, CheckKind::Connect);
}

#[test]
fn tcp_check_rules_are_stored_in_order() {
    let c = ok("backend be\n  option tcp-check\n  tcp-check connect port 6379 linger\n  tcp-check send AUTH\\ pw\\r\\n\n  tcp-check send-binary 0a0B\n  tcp-check expect min-recv 3 ! string -ERR\n  tcp-check expect rstring role:(master|x)\n  tcp-check expect binary 0d0a\n  tcp-check expect rbinary ^2B\n  tcp-check comment hi\n  server s 127.0.0.1:1 check\n");
    no_check_warnings(&c);
    let CheckKind::TcpCheck(rules) = &c.backends[0].check else {
        panic!("{:?}", c.backends[0].check)
    };
    assert_eq!(
        rules,
        &vec![
            TcpCheckRule::Connect(ConnectRule {
                port: Some(6379),
                linger: true,
                ..ConnectRule::default()
            }),
            TcpCheckRule::Send(b"AUTH pw\r\n".to_vec()),
            TcpCheckRule::Send(vec![0x0a, 0x0b]),
            TcpCheckRule::Expect {
                min_recv: Some(3),
                negate: true,
                pattern: ExpectPattern::String(b"-ERR".to_vec())
            },
            TcpCheckRule::Expect {
                min_recv: None,
                negate: false,
                pattern: ExpectPattern::Rstring("role:(master|x)".into())
            },
            TcpCheckRule::Expect {
                min_recv: None,
                negate: false,
                pattern: ExpectPattern::Binary(vec![0x0d, 0x0a])
            },
            TcpCheckRule::Expect {
                min_recv: None,
                negate: false,
                pattern: ExpectPattern::Rbinary("^2B".into())
            },
        ]
    );
}

#[test]
fn option_tcp_check_without_rules_is_a_connect_check() {
    let c = ok("backend be\n  option tcp-check\n  server s 127.0.0.1:1 check\n");
    assert_eq!(c.backends[0].check, CheckKind::Connect);
}

#[test]
fn check_options() {
    let c = ok("backend m\n  option mysql-check user haproxy_user post-80\nbackend m2\n  option mysql-check\nbackend r\n  option redis-check\n  option log-health-checks\nbackend p\n  option pgsql-check user pg\nbackend h\n  option httpchk GET /health\n  http-check expect status 200-204,301\nbackend h2\n  option httpchk\n  http-check expect ! rstring ^err\n");
    no_check_warnings(&c);
    let b = &c.backends;
    assert_eq!(
        b[0].check,
        CheckKind::Mysql {
            user: Some("haproxy_user".into()),
            version: MysqlVersion::Post80
        }
    );
    assert_eq!(
        b[1].check,
        CheckKind::Mysql {
            user: None,
            version: MysqlVersion::Post41
        }
    );
    assert_eq!(b[2].check, CheckKind::Redis);
    assert!(b[2].log_health_checks && !b[1].log_health_checks);
    assert_eq!(b[3].check, CheckKind::Pgsql { user: "pg".into() });
    let CheckKind::Http(h) = &b[4].check else {
        panic!()
    };
    assert_eq!(
        (h.method.as_str(), &h.uri, h.version.as_str()),
        ("GET", &LogFormat::text("/health"), "HTTP/1.0")
    );
    assert_eq!(
        h.expect.as_ref().unwrap().kind,
        HttpExpectKind::Status(vec![(200, 204), (301, 301)])
    );
    let CheckKind::Http(h) = &b[5].check else {
        panic!()
    };
    assert_eq!(h.method, "OPTIONS");
    let e = h.expect.as_ref().unwrap();
    assert!(e.negate);
    assert_eq!(e.kind, HttpExpectKind::Rstring("^err".into()));
}

#[test]
fn checks_are_inherited_from_defaults_and_rules_replaced() {
    let c = ok("defaults d\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n  option tcp-check\n  tcp-check send PING\\r\\n\n  tcp-check expect string +PONG\nbackend a from d\n  server s 127.0.0.1:1 check\nbackend b from d\n  tcp-check send HELLO\\r\\n\n  server s 127.0.0.1:1 check\n");
    let CheckKind::TcpCheck(a) = &c.backends[0].check else {
        panic!()
    };
    assert_eq!(a.len(), 2);
    let CheckKind::TcpCheck(b) = &c.backends[1].check else {
        panic!()
    };
    assert_eq!(b, &vec![TcpCheckRule::Send(b"HELLO\r\n".to_vec())]);
}

#[test]
fn external_check_needs_global_and_command() {
    let e = err("backend be\n  option external-check\n  external-check command /bin/true\n  server s 127.0.0.1:1 check\n");
    assert!(
        e.contains("t.cfg:7: backend 'be': 'option external-check' needs 'external-check' in the global section"),
        "{e}"
    );
    let e = err("global\n  external-check\nbackend be\n  option external-check\n  server s 127.0.0.1:1 check\n");
    assert!(e.contains("needs 'external-check command PATH'"), "{e}");
    let c = ok("global\n  external-check\n  insecure-fork-wanted\nbackend be\n  option external-check\n  external-check command /bin/true\n  external-check path /usr/bin\n  server s 127.0.0.1:1 check\n");
    no_check_warnings(&c);
    assert!(c.global.external_check);
    assert_eq!(c.backends[0].check, CheckKind::External);
    assert_eq!(
        c.backends[0].external_check.command.as_deref(),
        Some("/bin/true")
    );
    assert_eq!(
        c.backends[0].external_check.path.as_deref(),
        Some("/usr/bin")
    );
}

#[test]
fn bad_health_input_is_reported_with_its_line() {
    for (body, want) in [
        (
            "backend be\n  tcp-check expect rstring (unclosed\n",
            "t.cfg:7: 'tcp-check expect rstring': invalid regex '(unclosed'",
        ),
        (
            "backend be\n  tcp-check connect addr nowhere\n",
            "t.cfg:7: 'tcp-check connect': 'addr': cannot resolve 'nowhere'",
        ),
        (
            "backend be\n  http-check expect status 99\n",
            "t.cfg:7: 'http-check expect status': invalid status '99'",
        ),
        (
            "backend be\n  http-check expect rstring (x\n",
            "t.cfg:7: 'http-check expect rstring': invalid regex",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 check addr db.example\n",
            "'addr': cannot resolve 'db.example'",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 check rise 0\n",
            "'rise'",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 check inter 0\n",
            "'inter': must be greater than 0",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 check on-error explode\n",
            "'on-error': invalid value 'explode'",
        ),
        ("global\n  spread-checks 51\n", "'spread-checks'"),
    ] {
        let e = err(body);
        assert!(e.contains(want), "{body:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn agent_check_keywords_are_stored_and_inherited() {
    let c = ok("backend be\n  default-server agent-check agent-port 9 agent-inter 500ms agent-send \"ping\\n\"\n  server a 127.0.0.1:1 check agent-addr 127.0.0.9\n  server b 127.0.0.1:2 inter 3s agent-port 10 no-agent-check\n  server c 127.0.0.1:3\n");
    assert!(
        c.warnings.iter().all(|w| !w.message.contains("agent")),
        "agent keywords are supported now: {:?}",
        c.warnings
    );
    let s = &c.backends[0].servers;
    let a = &s[0].health.agent;
    assert!(a.enabled);
    assert_eq!(a.port, Some(9));
    assert_eq!(a.addr, Some("127.0.0.9".parse().unwrap()));
    assert_eq!(a.inter, Some(Duration::from_millis(500)));
    assert_eq!(a.send.as_deref(), Some(&b"ping\n"[..]));
    let b = &s[1].health.agent;
    assert!(
        !b.enabled,
        "no-agent-check undoes default-server's agent-check"
    );
    assert_eq!(b.port, Some(10));
    assert!(s[2].health.agent.enabled);
    assert_eq!(s[2].health.agent.addr, None);
    // Without agent-check nothing is enabled.
    let c = ok("backend be\n  server a 127.0.0.1:1 agent-port 9\n");
    assert!(!c.backends[0].servers[0].health.agent.enabled);
}

#[test]
fn agent_check_errors_name_the_line() {
    for (body, want) in [
        (
            "backend be\n  server s 127.0.0.1:1 check agent-check\n",
            "t.cfg:7: server 'be/s': 'agent-check' is enabled but no 'agent-port' is set",
        ),
        (
            "backend be\n  default-server agent-check\n  server s 127.0.0.1:1\n",
            "t.cfg:8: server 'be/s': 'agent-check' is enabled but no 'agent-port' is set",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 agent-check agent-port 0\n",
            "t.cfg:7: server 'be/s': 'agent-port': invalid port '0'",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 agent-check agent-port 9 agent-inter 0\n",
            "'agent-inter': must be greater than 0",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 agent-check agent-port 9 agent-addr agent.example\n",
            "'agent-addr': cannot resolve 'agent.example'",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 agent-check agent-port 9 agent-addr 1.2.3.4.5:6\n",
            "'agent-addr': invalid address",
        ),
        (
            "backend be\n  server s 127.0.0.1:1 agent-check agent-port\n",
            "'agent-port' needs a value",
        ),
    ] {
        let e = err(body);
        assert!(e.contains(want), "{body:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn http_check_connect_send_and_disable_on_404() {
    let c = ok("backend pg\n  option httpchk\n  http-check connect port 8008 addr 127.0.0.9 ssl sni hc.test alpn h2,http/1.1\n  http-check send meth GET uri-lf /%[srv_name]/x%%y ver HTTP/1.1 hdr Host hc hdr X-A b body hi\n  http-check expect status 200\n  http-check disable-on-404\n  server replica1 127.0.0.1:5432 check\n");
    no_check_warnings(&c);
    let CheckKind::Http(h) = &c.backends[0].check else {
        panic!("{:?}", c.backends[0].check)
    };
    let conn = h.connect.as_ref().unwrap();
    assert_eq!(conn.port, Some(8008));
    assert_eq!(conn.addr, Some("127.0.0.9".parse().unwrap()));
    assert!(conn.ssl && !conn.linger);
    assert_eq!(conn.sni.as_deref(), Some("hc.test"));
    assert_eq!(conn.alpn, Some(vec!["h2".into(), "http/1.1".into()]));
    assert_eq!((h.method.as_str(), h.version.as_str()), ("GET", "HTTP/1.1"));
    assert_eq!(
        h.uri,
        LogFormat(vec![
            LfPart::Text("/".into()),
            LfPart::SrvName,
            LfPart::Text("/x%y".into())
        ])
    );
    assert_eq!(
        h.headers,
        vec![("Host".into(), "hc".into()), ("X-A".into(), "b".into())]
    );
    assert_eq!(h.body, "hi");
    assert!(h.disable_on_404);
}

#[test]
fn http_check_send_refuses_what_it_cannot_do() {
    let e = err("backend b\n  option httpchk\n  http-check send uri-lf /%[srv_name,lower]\n");
    assert!(
        e.contains("only %[srv_name], %[srv_id], %[be_name] and %[be_id]"),
        "{e}"
    );
    let e = err("backend b\n  option httpchk\n  http-check send uri-lf /%ci\n");
    assert!(e.contains("'%c' in '/%ci'"), "{e}");
    let e = err("backend b\n  option httpchk\n  http-check send body-lf %[srv_name]\n");
    assert!(e.contains("'body-lf' is not supported"), "{e}");
    let e = err("backend b\n  option httpchk\n  http-check send hdr X\n");
    assert!(e.contains("'hdr' needs a name and a value"), "{e}");
    let e = err("backend b\n  option httpchk\n  http-check connect port 0\n");
    assert!(e.contains("'http-check connect'"), "{e}");
}

#[test]
fn check_ssl_verify_and_ca_file() {
    // HAProxy's default is `verify required`: a CA file is needed.
    let e = err("backend b\n  server s 127.0.0.1:1 check check-ssl\n");
    assert!(
        e.contains("verify is enabled by default but no CA file specified"),
        "{e}"
    );
    let e = err("global\n  ssl-server-verify none\nbackend b\n  server s 127.0.0.1:1 check check-ssl verify required\n");
    assert!(
        e.contains("verify is enabled but no CA file specified."),
        "{e}"
    );
    let e = err("global\n  ca-base /nonexistent-lb\nbackend b\n  server s 127.0.0.1:1 check check-ssl ca-file ca.pem\n");
    assert!(
        e.contains("unable to load CA file '/nonexistent-lb/ca.pem'"),
        "{e}"
    );
    let c = ok("backend b\n  server s 127.0.0.1:1 check check-ssl verify none check-sni db.test check-alpn h2\n  server t 127.0.0.1:2 check\n");
    let t = &c.backends[0].servers[0].health.tls;
    assert!(t.enabled);
    assert_eq!(c.backends[0].servers[0].tls.verify, Some(false));
    assert_eq!(t.sni.as_deref(), Some("db.test"));
    assert_eq!(t.alpn, vec!["h2".to_owned()]);
    assert!(!c.backends[0].servers[1].health.tls.enabled);
    let c =
        ok("global\n  ssl-server-verify none\nbackend b\n  server s 127.0.0.1:1 check check-ssl\n");
    assert_eq!(c.backends[0].servers[0].tls.verify, Some(false));
    assert!(
        err("backend b\n  server s 127.0.0.1:1 check-sni 10.0.0.1\n")
            .contains("invalid server name")
    );
    let c = ok("backend b\n  option ssl-hello-chk\n  server s 127.0.0.1:1 check\n");
    assert_eq!(c.backends[0].check, CheckKind::SslHello);
}
