//! Stats pages, userlists and the runtime API socket.

use super::*;

#[test]
fn stats_section_is_a_stats_page_without_warnings() {
    let c = ok(&format!("{TIMEOUTS}listen stats\n  mode http\n  bind :8404\n  stats enable\n  stats uri /stats\n  stats refresh 10s\n  stats auth admin:admin\n  stats admin if TRUE\n  stats realm My\\ stats\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n"));
    assert!(c.frontends.is_empty() && c.backends.is_empty());
    let stats: Vec<_> = c.warnings.iter().filter(|w| w.loc.line >= 6).collect();
    assert!(stats.is_empty(), "{stats:?}");
    let st = &c.stats[0];
    assert_eq!(st.name, "stats");
    assert!(st.page && st.admin);
    assert_eq!(st.uri, "/stats");
    assert_eq!(st.realm, "My stats");
    assert_eq!(st.refresh, Some(std::time::Duration::from_secs(10)));
    assert_eq!(st.binds[0].addr.port(), 8404);
    assert_eq!(st.users[0].name, "admin");
    assert_eq!(st.users[0].password, Password::Clear("admin".into()));
    assert_eq!(st.prometheus.as_deref(), Some("/metrics"));
}

#[test]
fn userlist_and_http_auth_are_kept() {
    let c = ok(&format!("{TIMEOUTS}userlist ops\n  user alice password $6$salt$hash\n  user bob insecure-password pw\nlisten stats\n  mode http\n  bind :8404\n  stats uri /\n  http-request auth realm Ops unless {{ http_auth(ops) }}\n"));
    assert_eq!(c.userlists[0].name, "ops");
    assert_eq!(
        c.userlists[0].users[0].password,
        Password::Crypt("$6$salt$hash".into())
    );
    assert_eq!(
        c.userlists[0].users[1].password,
        Password::Clear("pw".into())
    );
    assert_eq!(c.stats[0].userlists, ["ops"]);
    assert_eq!(c.stats[0].realm, "Ops");
    let e = errs(&format!("{TIMEOUTS}listen stats\n  mode http\n  bind :8404\n  stats uri /\n  http-request auth unless {{ http_auth(nope) }}\n"));
    assert!(e.to_string().contains("userlist 'nope' not found"), "{e}");
}

#[test]
fn stats_socket_is_kept() {
    let c = ok("global\n  stats socket /run/lb.sock mode 660 level admin\n  stats socket unix@/run/u.sock\n  stats timeout 30s\n");
    let s = &c.global.stats_sockets;
    assert_eq!(s[0].path, std::path::Path::new("/run/lb.sock"));
    assert_eq!((s[0].mode, s[0].level), (Some(0o660), CliLevel::Admin));
    assert_eq!((s[1].mode, s[1].level), (None, CliLevel::Operator));
    assert_eq!(c.global.stats_timeout, std::time::Duration::from_secs(30));
    for bad in [
        "global\n  stats socket /a level root\n",
        "global\n  stats socket /a mode 99\n",
        "global\n  stats socket /a mode\n",
        "global\n  stats socket /a\n  stats socket /a\n",
    ] {
        let _ = errs(bad);
    }
}
