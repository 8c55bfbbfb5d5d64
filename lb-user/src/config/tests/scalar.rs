//! Scalar parsers: accept and reject.

use super::*;

#[test]
fn time_accepts() {
    let ms = |v| Duration::from_millis(v);
    assert_eq!(parse_time("100", TimeUnit::Ms), Ok(ms(100)));
    assert_eq!(parse_time("0", TimeUnit::Ms), Ok(ms(0)));
    assert_eq!(parse_time("500ms", TimeUnit::Ms), Ok(ms(500)));
    assert_eq!(parse_time("5s", TimeUnit::Ms), Ok(ms(5_000)));
    assert_eq!(parse_time("2m", TimeUnit::Ms), Ok(ms(120_000)));
    assert_eq!(parse_time("1h", TimeUnit::Ms), Ok(ms(3_600_000)));
    assert_eq!(parse_time("1d", TimeUnit::Ms), Ok(ms(86_400_000)));
    assert_eq!(
        parse_time("250us", TimeUnit::Ms),
        Ok(Duration::from_micros(250))
    );
    assert_eq!(parse_time("30", TimeUnit::S), Ok(Duration::from_secs(30)));
    assert_eq!(
        parse_time("2147483647", TimeUnit::Ms),
        Ok(ms(2_147_483_647))
    );
    assert_eq!(parse_time("24d", TimeUnit::Ms), Ok(ms(24 * 86_400_000)));
}

#[test]
fn time_rejects() {
    for bad in [
        "", "5x", "x", "s", "-1", "1.5s", "5 s", "5S", "+5", "5sec", "1e3", " 5",
    ] {
        let e = parse_time(bad, TimeUnit::Ms).unwrap_err();
        assert!(e.contains("invalid time"), "{bad:?}: {e}");
    }
    for big in [
        "2147483648",
        "25d",
        "99999999999999999999999",
        "18446744073709551615d",
    ] {
        let e = parse_time(big, TimeUnit::Ms).unwrap_err();
        assert!(e.contains("too large"), "{big:?}: {e}");
    }
}

#[test]
fn size_accepts_and_rejects() {
    assert_eq!(parse_size("16384"), Ok(16384));
    assert_eq!(parse_size("16k"), Ok(16 * 1024));
    assert_eq!(parse_size("1m"), Ok(1 << 20));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert_eq!(parse_size("0"), Ok(0));
    for bad in ["", "k", "1kb", "1.5k", "-1", "1t", " 1"] {
        assert!(
            parse_size(bad).unwrap_err().contains("invalid size"),
            "{bad:?}"
        );
    }
    assert!(parse_size("5g").unwrap_err().contains("too large"));
    assert!(parse_size("99999999999999999999")
        .unwrap_err()
        .contains("too large"));
}

#[test]
fn ints_weights_ports() {
    assert_eq!(parse_u32("0", 0, 10), Ok(0));
    assert_eq!(parse_u32("10", 0, 10), Ok(10));
    assert!(parse_u32("11", 0, 10)
        .unwrap_err()
        .contains("out of range 0..=10"));
    assert!(parse_u32("0", 1, 10)
        .unwrap_err()
        .contains("out of range 1..=10"));
    for bad in ["", "-1", "+1", "1.0", "0x10", "ten", " 1"] {
        assert!(
            parse_u32(bad, 0, 100)
                .unwrap_err()
                .contains("invalid number"),
            "{bad:?}"
        );
    }
    assert!(parse_u32("99999999999999999999999", 0, u32::MAX).is_err());

    assert_eq!(parse_weight("0"), Ok(0));
    assert_eq!(parse_weight("256"), Ok(256));
    assert_eq!(
        parse_weight("300").unwrap_err(),
        "weight 300 out of range 0..=256"
    );
    assert!(parse_weight("-1").is_err());

    assert_eq!(parse_port("1"), Ok(1));
    assert_eq!(parse_port("65535"), Ok(65535));
    for bad in ["0", "65536", "", "http", "-80"] {
        assert!(parse_port(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn host_port_accepts() {
    let hp = split_host_port("127.0.0.1:3306").unwrap();
    assert_eq!(hp.host, Some(Host::Ip("127.0.0.1".parse().unwrap())));
    assert_eq!(hp.port.as_deref(), Some("3306"));

    let hp = split_host_port("[::1]:6379").unwrap();
    assert_eq!(hp.host, Some(Host::Ip("::1".parse().unwrap())));
    assert_eq!(hp.port.as_deref(), Some("6379"));
    assert_eq!(hp.family, Some(Family::V6));

    // Bare IPv6: the port is after the last colon (HAProxy's rule).
    let hp = split_host_port("::1:8080").unwrap();
    assert_eq!(hp.host, Some(Host::Ip("::1".parse().unwrap())));
    assert_eq!(hp.port.as_deref(), Some("8080"));

    let hp = split_host_port("db.example.com:5432").unwrap();
    assert_eq!(hp.host, Some(Host::Name("db.example.com".into())));

    let hp = split_host_port("ipv4@localhost:80").unwrap();
    assert_eq!(hp.family, Some(Family::V4));

    let hp = split_host_port("10.0.0.1").unwrap();
    assert_eq!(hp.port, None);

    let hp = split_host_port("*:80").unwrap();
    assert_eq!(hp.host, None);
}

#[test]
fn host_port_rejects() {
    for (bad, needle) in [
        ("2001:db8::1", "IPv6 address needs a port"),
        ("[::1", "missing ']'"),
        ("[::1]x", "expected ':port'"),
        ("[zz::1]:80", "invalid IPv6"),
        ("unix@/run/x.sock", "not supported"),
        ("/run/x.sock", "UNIX sockets"),
        ("foo@1.2.3.4:80", "unknown address prefix"),
        ("ipv4@[::1]:80", "does not match"),
        ("bad host:80", "invalid address"),
        ("-x:80", "invalid address"),
    ] {
        let e = split_host_port(bad).unwrap_err();
        assert!(e.contains(needle), "{bad:?}: {e}");
    }
}

#[test]
fn bind_addrs_accepts_and_rejects() {
    assert_eq!(parse_bind_addrs(":80").unwrap(), vec![sa("0.0.0.0:80")]);
    assert_eq!(parse_bind_addrs("*:80").unwrap(), vec![sa("0.0.0.0:80")]);
    assert_eq!(
        parse_bind_addrs("0.0.0.0:80").unwrap(),
        vec![sa("0.0.0.0:80")]
    );
    assert_eq!(parse_bind_addrs("[::]:443").unwrap(), vec![sa("[::]:443")]);
    assert_eq!(
        parse_bind_addrs("[::1]:443").unwrap(),
        vec![sa("[::1]:443")]
    );
    assert_eq!(
        parse_bind_addrs("ipv6@:8443").unwrap(),
        vec![sa("[::]:8443")]
    );
    assert_eq!(
        parse_bind_addrs("ipv4@:81").unwrap(),
        vec![sa("0.0.0.0:81")]
    );
    assert_eq!(parse_bind_addrs(":::82").unwrap(), vec![sa("[::]:82")]);
    assert_eq!(
        parse_bind_addrs(":80,:81").unwrap(),
        vec![sa("0.0.0.0:80"), sa("0.0.0.0:81")]
    );
    assert_eq!(
        parse_bind_addrs("127.0.0.1:8000-8002").unwrap(),
        vec![
            sa("127.0.0.1:8000"),
            sa("127.0.0.1:8001"),
            sa("127.0.0.1:8002")
        ]
    );
    assert_eq!(
        parse_bind_addrs("127.0.0.1:0").unwrap(),
        vec![sa("127.0.0.1:0")]
    );
    assert_eq!(
        parse_bind_addrs("localhost:90").unwrap(),
        vec![sa("127.0.0.1:90")]
    );
    for (bad, needle) in [
        ("127.0.0.1", "port required"),
        (":80,", "empty address"),
        (":70000", "invalid port"),
        (":90-80", "invalid port range"),
        (":0-5", "invalid port range"),
        (":http", "invalid port"),
        ("unix@/x", "not supported"),
        (":+1", "port offsets"),
    ] {
        let e = parse_bind_addrs(bad).unwrap_err();
        assert!(e.contains(needle), "{bad:?}: {e}");
    }
}

#[test]
fn names_and_hex() {
    assert!(check_name("be_mysql-1.a:b").is_ok());
    assert!(check_name("a b")
        .unwrap_err()
        .contains("invalid character ' '"));
    assert!(check_name("").is_err());
    assert!(check_name("x/y").is_err());
    assert!(check_hex("0a0B").is_ok());
    assert!(check_hex("abc").is_err());
    assert!(check_hex("zz").is_err());
    assert!(check_hex("").is_err());
}

#[test]
fn env_expand_follows_haproxy() {
    let var = |n: &str| match n {
        "A" => Some("10.0.0.1".to_owned()),
        "PG_ADDR" => Some("::1".to_owned()),
        "P" => Some("5432".to_owned()),
        _ => None,
    };
    let e = |s: &str| env_expand_with(s, var);
    assert_eq!(e("$A:80"), "10.0.0.1:80");
    assert_eq!(e("[$PG_ADDR]:5432"), "[::1]:5432");
    assert_eq!(e("*:${P}"), "*:5432");
    assert_eq!(e("${A}0:1"), "10.0.0.10:1");
    // Unset: empty. A name stops at the first character that is not alnum or '_'.
    assert_eq!(e("$UNSET.internal:5433"), ".internal:5433");
    assert_eq!(e("x$"), "x");
    assert_eq!(e("${A"), "10.0.0.1");
    assert_eq!(e("no vars"), "no vars");
    // Multi-byte text around a variable stays whole.
    assert_eq!(e("é$A€"), "é10.0.0.1€");
}

#[test]
fn host_port_expands_env_and_rejects_empty() {
    let e = split_host_port("$LB_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
    assert!(e.contains("resolves to an empty address"), "{e}");
    // PATH is set in every environment the tests run in; it is no address.
    assert!(split_host_port("$PATH:80").is_err());
}
