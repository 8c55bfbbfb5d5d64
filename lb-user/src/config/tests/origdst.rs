//! Connections to the client's original destination: servers without an address, `option
//! transparent` and the deprecated `transparent`.

use super::*;

/// `0.0.0.0`, `::` in brackets or with a port, `*` and an empty host are a server without an
/// address (HAProxy's `str2ip2`: the any address, IPv4 unless `ipv6@`), with a fixed or a
/// mapped port; not a host name waiting for DNS.
#[test]
fn servers_without_an_address() {
    let c = ok(&format!(
        "{TIMEOUTS}backend be
  server a 0.0.0.0
  server b 0.0.0.0:9000
  server c [::]:80
  server d :::81
  server e *:9002
  server f *
  server g :9003
  server h ipv6@*:82
  server i 0.0.0.0:+1
  server j [::]
"
    ));
    let s = &c.backends[0].servers;
    let want = [
        ("0.0.0.0:0", Some(0)),
        ("0.0.0.0:9000", None),
        ("[::]:80", None),
        ("[::]:81", None),
        ("0.0.0.0:9002", None),
        ("0.0.0.0:0", Some(0)),
        ("0.0.0.0:9003", None),
        ("[::]:82", None),
        ("0.0.0.0:0", Some(1)),
        ("[::]:0", Some(0)),
    ];
    for (srv, (addr, offset)) in s.iter().zip(want) {
        assert_eq!(srv.addr, sa(addr), "{}", srv.name);
        assert_eq!(srv.port_offset, offset, "{}", srv.name);
        // Not a DNS server waiting for an address (those are in MAINT until resolved).
        assert_eq!((srv.fqdn.as_deref(), srv.unresolved), (None, false));
    }
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!c.backends[0].transparent);

    // A bare `::` is an address `:` and an empty port to HAProxy too: refused.
    let e = errs(&format!("{TIMEOUTS}backend be\n  server a ::\n")).to_string();
    assert!(
        e.contains("t.cfg:7") && e.contains("invalid address '::'"),
        "{e}"
    );
}

/// `option transparent` where HAProxy takes it (defaults, listen, backend; a frontend warns),
/// `no option transparent`, and the deprecated `transparent` keyword (any section, as 2.6).
#[test]
fn option_transparent_forms() {
    let c = ok(&format!(
        "{TIMEOUTS}  option transparent
backend inherits
backend own_no
  no option transparent
listen l
  bind 127.0.0.1:0
  server s 10.0.0.1:80
backend kw
  no option transparent
  transparent
frontend f
  bind 127.0.0.1:0
  option transparent
  default_backend kw
"
    ));
    let t: Vec<(&str, bool)> = c
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.transparent))
        .collect();
    assert_eq!(
        t,
        [
            ("inherits", true),
            ("own_no", false),
            ("l", true),
            ("kw", true)
        ]
    );
    assert!(
        has_warning(
            &c,
            18,
            "'option transparent' ignored because frontend 'f' has no backend capability"
        ),
        "{:?}",
        c.warnings
    );
}

/// HAProxy refuses `option transparent` with a `balance` (its own or its defaults'), and
/// arguments after either keyword.
#[test]
fn option_transparent_errors() {
    let e = errs(&format!(
        "{TIMEOUTS}backend both
  balance roundrobin
  option transparent
  server s 0.0.0.0
"
    ))
    .to_string();
    assert!(
        e.contains("t.cfg:6")
            && e.contains("backend 'both' cannot use both transparent and balance mode"),
        "{e}"
    );

    let e = errs(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server \
         30s\n  balance leastconn\nbackend from_defaults\n  transparent\n",
    )
    .to_string();
    assert!(
        e.contains("backend 'from_defaults' cannot use both transparent and balance mode"),
        "{e}"
    );

    let e = errs(&format!(
        "{TIMEOUTS}backend be
  option transparent yes
  transparent yes
"
    ))
    .to_string();
    for line in [7, 8] {
        assert!(e.contains(&format!("t.cfg:{line}")), "line {line}: {e}");
    }

    // `no option transparent` leaves the balance alone.
    let c = ok(&format!(
        "{TIMEOUTS}  option transparent\nbackend be\n  balance first\n  no option transparent\n"
    ));
    assert!(!c.backends[0].transparent);
}
