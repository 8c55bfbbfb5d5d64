//! Unit tests for the config pipeline: scalar parsers, tokenizer, broken configs (exact line and
//! message), happy paths (resulting values), example files, and garbage input (no panics).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::lex::split_words;
use super::scalar::{
    check_hex, check_name, parse_bind_addrs, parse_port, parse_size, parse_time, parse_u32,
    parse_weight, split_host_port, Family, Host, TimeUnit,
};
use super::{load, load_str, Balance, CliLevel, Config, ConfigErrors, HashType, Password};

/// `Duration::from_mins` needs a newer Rust than the workspace's rust-version.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Loads `text`, panicking with every error when it does not load.
fn ok(text: &str) -> Config {
    match load_str("t.cfg", text) {
        Ok(c) => c,
        Err(e) => panic!("config should load, got:\n{e}"),
    }
}

fn errs(text: &str) -> ConfigErrors {
    match load_str("t.cfg", text) {
        Ok(_) => panic!("config should fail:\n{text}"),
        Err(e) => e,
    }
}

fn has_warning(c: &Config, line: u32, needle: &str) -> bool {
    c.warnings
        .iter()
        .any(|w| w.loc.line == line && w.message.contains(needle))
}

const TIMEOUTS: &str =
    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

// ----- scalars -----

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

// ----- tokenizer -----

#[test]
fn tokenizer_rules() {
    let w = |s: &str| split_words(s).unwrap();
    assert!(w("").is_empty());
    assert!(w("   \t ").is_empty());
    assert!(w("  # a comment").is_empty());
    assert_eq!(w("bind :80 # trailing"), ["bind", ":80"]);
    assert_eq!(w("a\\ b c"), ["a b", "c"]);
    assert_eq!(w("a\\#b"), ["a#b"]);
    assert_eq!(w("\"a b\" 'c d'"), ["a b", "c d"]);
    assert_eq!(w("x\"a b\"y"), ["xa by"]);
    assert_eq!(w("'a\\ b'"), ["a\\ b"]);
    assert_eq!(w("\"a#b\""), ["a#b"]);
    assert_eq!(w("\"\""), [""]);
    assert_eq!(w("send PING\\r\\n"), ["send", "PING\r\n"]);
    assert_eq!(w("rstring \\d+"), ["rstring", "\\d+"]);
    assert_eq!(w("\\x41\\x42"), ["AB"]);
    assert_eq!(w("a\\\\b"), ["a\\b"]);
    assert_eq!(w("say \\\"hi\\\""), ["say", "\"hi\""]);
    assert_eq!(w("\"\\$4 x\""), ["$4 x"]);
    assert_eq!(w("\\$4"), ["\\$4"]);
    assert_eq!(w("a\x0bb\x0cc"), ["a", "b", "c"]);
    assert!(split_words("\"$4\"")
        .unwrap_err()
        .contains("invalid environment variable name"));
    assert!(split_words("\"open")
        .unwrap_err()
        .contains("unmatched quote"));
    assert!(split_words("'open")
        .unwrap_err()
        .contains("unmatched quote"));
    // Not an escape sequence: HAProxy keeps a trailing backslash as is.
    assert_eq!(w("trail\\"), ["trail\\"]);
    assert!(split_words("\\xZZ").unwrap_err().contains("invalid escape"));
    assert!(split_words("a\0b").unwrap_err().contains("NUL"));
}

#[test]
fn tokenizer_env_in_double_quotes() {
    // PATH is set in any test environment; expansion happens only inside double quotes.
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(
        split_words("\"${PATH}\"").unwrap(),
        std::slice::from_ref(&path)
    );
    assert_eq!(split_words("\"$PATH\"").unwrap(), [path]);
    assert_eq!(split_words("$PATH").unwrap(), ["$PATH"]);
    assert_eq!(split_words("'$PATH'").unwrap(), ["$PATH"]);
    assert_eq!(
        split_words("\"${LB_SURELY_UNSET_VAR_XYZ}x\"").unwrap(),
        ["x"]
    );
    assert!(split_words("\"${PATH\"")
        .unwrap_err()
        .contains("unmatched brace"));
    assert_eq!(
        split_words("\"${LB_SURELY_UNSET_VAR_XYZ-127.0.0.1:80}\"").unwrap(),
        ["127.0.0.1:80"]
    );
    assert_eq!(
        split_words("\"${PATH-x}\"").unwrap(),
        [std::env::var("PATH").unwrap()]
    );
    assert_eq!(split_words("\"$.LINE\" \"$.FILE\"").unwrap(), ["0", "-"]);
    assert!(split_words("\"$.SECTION\"")
        .unwrap_err()
        .contains("pseudo-variable"));
    assert!(split_words("\"${PATH[x]}\"")
        .unwrap_err()
        .contains("word expansion"));
}

#[test]
fn tokenizer_word_expansion_and_positions() {
    let e = errs("global\n  user \"${LB_SURELY_UNSET_VAR_XYZ-a b}\" \"$.LINE\"\n");
    assert_eq!(e.0[0].loc.as_ref().unwrap().line, 2);
    assert!(
        e.0[0].message.contains("'user': unexpected argument '2'"),
        "{e}"
    );
    // ${X[*]} splits the value into words (here: a default value).
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind \"${{LB_SURELY_UNSET_VAR_XYZ[*]-:1 name x}}\"\n  default_backend be\nbackend be\n"));
    assert_eq!(c.frontends[0].binds[0].name.as_deref(), Some("x"));
}

// ----- broken configs -----

/// (config, line of the first error, text the message must contain)
const BROKEN: &[(&str, u32, &str)] = &[
    ("defaults\n  timeout connect 5x\n", 2, "'timeout connect': invalid time '5x' (expected a number with optional unit us|ms|s|m|h|d)"),
    ("backend be\n  balanse roundrobin\n", 2, "unknown keyword 'balanse' in 'backend' section 'be' (did you mean 'balance'?)"),
    ("backend be\n  server s1 127.0.0.1:80 weight 300\n", 2, "server 'be/s1': weight 300 out of range 0..=256"),
    ("frontend fe\n  bind :80\n  default_backend nope\n", 3, "frontend 'fe': default_backend 'nope' not found"),
    ("backend be\n  bind :80\n", 2, "'bind' in a 'backend' section is not allowed"),
    ("backend x\nbackend x\n", 2, "proxy name 'x' is used twice (first at t.cfg:1)"),
    ("listen x\n  bind :81\nbackend x\n", 3, "proxy name 'x' is used twice"),
    ("backend be\n  server s1 127.0.0.1:80\n  server s1 127.0.0.1:81\n", 3, "server 'be/s1' is defined twice (first at t.cfg:2)"),
    ("backend be\n  server s 127.0.0.1\n", 2, "server 'be/s': port required (lb does not forward to the client's destination port yet)"),
    ("backend be\n  server s 127.0.0.1:+1\n", 2, "port offset '+1' is not supported"),
    ("backend be\n  server s nonexistent-host.invalid:80\n", 2, "server 'be/s': cannot resolve 'nonexistent-host.invalid'"),
    ("backend be\n  server s 127.0.0.1:80 rise x\n", 2, "server 'be/s': 'rise': invalid number 'x'"),
    ("backend be\n  server s 127.0.0.1:80 frobnicate\n", 2, "server 'be/s': unknown parameter 'frobnicate'"),
    ("backend be\n  server s 127.0.0.1:80 ssl verify none\n", 2, "'ssl' needs TLS"),
    ("backend be\n  server s 127.0.0.1:80 inter\n", 2, "server 'be/s': 'inter' needs a value"),
    ("backend be\n  server s1 127.0.0.1:80 id 1\n  server s2 127.0.0.1:81 id 1\n", 3, "server 'be/s2': id 1 is already used by server 's1'"),
    ("global\n  maxconn 0\n", 2, "'maxconn': 0 out of range 1..=4294967295"),
    ("global\n  nbthread 0\n", 2, "'nbthread': 0 out of range 1..=4096"),
    ("global\n  nbproc 2\n", 2, "'nbproc' was removed in HAProxy 2.5"),
    ("global\n  frobnicate\n", 2, "unknown keyword 'frobnicate' in 'global' section"),
    ("frontend fe\n  mode http\n  bind :80\n  default_backend be\nbackend be\n", 2, "mode http is not supported (lb is a TCP load balancer); only a stats section may use it"),
    ("defaults\n  mode http\nbackend be\n", 3, "backend 'be': mode http (inherited from defaults at t.cfg:2) is not supported"),
    ("backend be\n  mode health\n", 2, "mode health is not supported"),
    ("backend be\n  balance uri\n", 2, "'balance uri' needs mode http or is not supported"),
    ("backend be\n  balance hdr(host)\n", 2, "'balance hdr(host)' needs mode http"),
    ("backend be\n  balance random(0)\n", 2, "'balance random': draws 0 out of range"),
    ("backend be\n  balance wrr\n", 2, "'balance': unknown algorithm 'wrr'"),
    ("backend be\n  hash-type consistent md5\n", 2, "'hash-type': unexpected argument 'md5'"),
    ("defaults\n  contimeout 5000\n", 2, "'contimeout' was removed in HAProxy 2.1; use 'timeout connect'"),
    ("defaults\n  timeout server 30d\n", 2, "'timeout server': time '30d' is too large"),
    ("defaults\n  timeout bogus 5s\n", 2, "'timeout': unknown timeout 'bogus'"),
    ("frontend fe\n  bind :80\n", 1, "frontend 'fe' has no backend: add 'default_backend NAME'"),
    ("backend be\nfrontend fe\n  default_backend be\n", 2, "frontend 'fe' has no 'bind' line"),
    ("frontend fe\n  bind :443 ssl crt /etc/x.pem\n", 2, "'bind' option 'ssl' needs TLS"),
    ("frontend fe\n  bind :80 frob\n", 2, "'bind': unknown option 'frob'"),
    ("frontend fe\n  bind 127.0.0.1\n", 2, "'bind': '127.0.0.1': port required"),
    ("frontend fe\n  bind :80-70\n", 2, "':80-70': invalid port range '80-70'"),
    ("backend be\n  option tcp-check\n  tcp-check expect\n", 3, "'tcp-check expect': needs a match type"),
    ("backend be\n  tcp-check expect string\n", 2, "'tcp-check expect': 'string' needs a pattern"),
    ("backend be\n  tcp-check send-binary abc\n", 2, "invalid hex string 'abc'"),
    ("backend be\n  option mysql-check user\n", 2, "'option mysql-check user' needs a user name"),
    ("backend be\n  option mysql-check user u post-99\n", 2, "unknown version 'post-99'"),
    ("backend be\n  option pgsql-check\n", 2, "'option pgsql-check': expects 'user NAME'"),
    ("backend be\n  option frobnicate\n", 2, "unknown option 'frobnicate'"),
    ("backend be\n  retries -1\n", 2, "'retries': invalid number '-1'"),
    ("backend be\n  log 127.0.0.1:514\n", 2, "'log': a facility is required"),
    ("global\n  log 127.0.0.1:514 local9\n", 2, "'log': unknown facility 'local9'"),
    ("bind :80\n", 1, "'bind' outside of any section"),
    ("backend be\n  server s 127.0.0.1:80 init-addr dns\n", 2, "'init-addr': invalid method 'dns'"),
    ("backend be\n  server s 127.0.0.1:80 resolvers nodns\n", 2, "resolvers 'nodns' not found"),
    ("frontend fe from nodef\n", 1, "no defaults section named 'nodef'"),
    ("backend be\n  server s \"unterminated\n", 2, "unmatched quote"),
    ("frontend a\n  bind :80\n  default_backend be\nfrontend b\n  bind :80\n  default_backend be\nbackend be\n", 5, "address 0.0.0.0:80 is already bound by frontend 'a' at t.cfg:2"),
    ("listen l\n  bind :80\n  default_backend x\n", 3, "'default_backend' in a 'listen' section is not supported"),
    ("resolvers dns\n  nameserver ns1 example:53\n", 2, "expected IP:PORT"),
    ("userlist u\n  user admin secret x\n", 2, "expects 'password' or 'insecure-password'"),
    ("frontend fe\n  bind :80\n  default_backend be\n  timeout server 5s\nbackend be\n  server s 127.0.0.1:80 weight 257\n", 6, "weight 257 out of range"),
    ("backend be\n  stats auth admin\n", 2, "'stats auth': expects 'user:password'"),
    ("backend be\n  clitcpka-idle 30\n  srvtcpka-cnt 0\n", 3, "'srvtcpka-cnt': 0 out of range 1..=127"),
    ("backend 'b e'\n", 1, "backend name 'b e' contains invalid character ' '"),
];

#[test]
fn broken_configs_report_line_and_problem() {
    assert!(BROKEN.len() >= 25);
    for (text, line, needle) in BROKEN {
        let e = errs(text);
        let first = &e.0[0];
        let loc = first.loc.as_ref().expect("error has a location");
        assert_eq!(
            (loc.line, first.message.contains(needle)),
            (*line, true),
            "config:\n{text}\nexpected line {line} containing {needle:?}, got:\n{e}"
        );
        assert!(e.to_string().starts_with(&format!("t.cfg:{line}: ")), "{e}");
    }
}

#[test]
fn all_errors_are_collected() {
    let e = errs(
        "global\n  nbthread 0\nbackend be\n  timeout connect 5x\n  server s1 127.0.0.1:80 weight 999\n  balanse x\n",
    );
    let lines: Vec<u32> = e.0.iter().map(|e| e.loc.as_ref().unwrap().line).collect();
    assert_eq!(lines, [2, 4, 5, 6], "{e}");
}

// ----- happy paths -----

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
    assert_eq!(fe.backend, 0);
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
    assert_eq!(one.hash_type, HashType::Consistent);
    assert_eq!(one.servers[0].weight, 7);
    assert_eq!(one.timeouts.server, Some(Duration::from_secs(3)));
    // A new defaults section starts from the built-ins again.
    let two = &c.backends[1];
    assert_eq!(two.id, 2);
    assert_eq!(two.retries, 3);
    assert!(!two.redispatch);
    assert_eq!(two.balance, Balance::RoundRobin);
    assert_eq!(two.hash_type, HashType::MapBased);
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
fn listen_uses_its_own_servers() {
    let c = ok(&format!("{TIMEOUTS}backend other\n  server o 127.0.0.1:1\nlisten mysql\n  bind 127.0.0.1:3306\n  bind [::1]:3306 name v6\n  balance first\n  server m 127.0.0.1:3307 id 10\n  server r 127.0.0.1:3308\n"));
    assert_eq!(c.backends.len(), 2);
    let fe = &c.frontends[0];
    assert_eq!(fe.name, "mysql");
    assert_eq!(fe.backend, 1);
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
fn explicit_ids_reserve_numbers() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server a 127.0.0.1:1\n  server b 127.0.0.1:2 id 1\n  server c 127.0.0.1:3\n"));
    let ids: Vec<u32> = c.backends[0].servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, [2, 1, 3]);
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
    assert!(has_warning(&c, 8, "'v6only'"));
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
    assert!(has_warning(&c, 3, "'pidfile' is not supported yet"));
    assert!(has_warning(&c, 4, "'tune.bufsize'"));
    assert!(has_warning(
        &c,
        18,
        "'use_backend' is not supported yet (content switching"
    ));
    assert!(has_warning(&c, 20, "'tcp-request'"));
    assert!(has_warning(&c, 21, "'acl' is not supported yet (ACLs)"));
    // Health checks are supported: `option mysql-check`, `option log-health-checks` and the
    // server's check keywords give no warning; only send-proxy does.
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.loc.line == 23 || w.loc.line == 24));
    let line25: Vec<_> = c.warnings.iter().filter(|w| w.loc.line == 25).collect();
    assert_eq!(line25.len(), 1);
    assert!(line25[0]
        .message
        .ends_with("not supported yet, ignored: 'send-proxy' (PROXY protocol)"));
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
    assert_eq!(c.frontends[0].backend, 0);
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

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn several_files_behave_like_one() {
    let a = temp_file("a.cfg", TIMEOUTS);
    let b = temp_file(
        "b.cfg",
        "frontend fe\n  bind :7000\n  default_backend be\nbackend be\n  server s 127.0.0.1:7001\n",
    );
    let c = load(&[a.clone(), b.clone()]).unwrap();
    // The defaults of the first file apply to the second.
    assert_eq!(
        c.frontends[0].timeouts.client,
        Some(Duration::from_secs(30))
    );
    assert_eq!(*c.frontends[0].loc.file, b);
    assert_eq!(c.frontends[0].loc.line, 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Errors in several files come in file order, each naming its file.
    let bad1 = temp_file("bad1.cfg", "backend x\n  retries x\n");
    let bad2 = temp_file("bad2.cfg", "backend x\n");
    let e = load(&[bad1.clone(), a, bad2.clone()]).unwrap_err();
    let shown = e.to_string();
    assert_eq!(
        shown,
        format!(
            "{}:2: 'retries': invalid number 'x' (expected an integer)\n{}:1: proxy name 'x' is \
             used twice (first at {}:1)",
            bad1.display(),
            bad2.display(),
            bad1.display()
        )
    );
}

#[test]
fn unreadable_file_is_an_error_without_line() {
    let e = load(&[PathBuf::from("/nonexistent/lb/x.cfg")]).unwrap_err();
    assert_eq!(e.0[0].loc, None);
    assert!(e.0[0]
        .message
        .contains("/nonexistent/lb/x.cfg: cannot read"));
}

#[test]
fn invalid_utf8_names_its_line() {
    let p = temp_file("utf8.cfg", "");
    std::fs::write(&p, b"global\n  daemon\n  user \xff\n").unwrap();
    let e = load(&[p]).unwrap_err();
    assert_eq!(e.0[0].loc.as_ref().unwrap().line, 3);
    assert!(e.0[0].message.contains("invalid UTF-8"));
}

#[test]
fn example_configs_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cfg") {
            found += 1;
            match load(std::slice::from_ref(&path)) {
                // Shown with --nocapture: what a user migrating this file would read.
                Ok(c) => c.warnings.iter().for_each(|w| eprintln!("{w}")),
                Err(e) => panic!("{} does not load:\n{e}", path.display()),
            }
        }
    }
    assert!(
        found >= 4,
        "expected the example configs in {}",
        dir.display()
    );
}

/// Garbage in, errors out: never a panic. Lines are built from keywords, values and random
/// characters (fixed seed, so a failure reproduces).
#[test]
fn garbage_never_panics() {
    const WORDS: &[&str] = &[
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "resolvers",
        "userlist",
        "peers",
        "fe",
        "be",
        "bind",
        "server",
        "default-server",
        "balance",
        "random(",
        "random(9999)",
        "option",
        "no",
        "tcp-check",
        "expect",
        "string",
        "!",
        "min-recv",
        "send-binary",
        "timeout",
        "connect",
        "client",
        "5s",
        "99999999999999d",
        "mode",
        "http",
        "tcp",
        "stats",
        "enable",
        "uri",
        "weight",
        "300",
        "0",
        "-1",
        "id",
        "init-addr",
        "none",
        "127.0.0.1:80",
        "[::1]:80",
        "::1:",
        "[",
        "]",
        ":",
        "::",
        "@",
        "ipv6@",
        ":80-1",
        ":1-65535",
        "log",
        "global",
        "local0",
        "default_backend",
        "use_backend",
        "hash-type",
        "consistent",
        "mysql-check",
        "user",
        "from",
        "\"",
        "'",
        "\\",
        "\\x",
        "#",
        "$",
        "\"${",
        "maxconn",
        "retries",
        "clitcpka-idle",
        "nameserver",
        "hold",
        "valid",
        "tune.bufsize",
        "nbthread",
        "nbproc",
        "é",
        "\u{0}",
        "\t",
        "inter",
        "rise",
        "fall",
        "ssl",
        "name",
    ];
    let mut rng = fastrand::Rng::with_seed(0x01bc_0f16);
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..rng.usize(1..12) {
            for _ in 0..rng.usize(0..8) {
                if rng.u8(..) < 40 {
                    let n = rng.usize(1..6);
                    text.extend((0..n).map(|_| char::from(rng.u8(32..127))));
                } else {
                    text.push_str(WORDS[rng.usize(..WORDS.len())]);
                }
                text.push(if rng.bool() { ' ' } else { '\t' });
            }
            text.push(if rng.u8(..) < 10 { '\r' } else { '\n' });
        }
        // Must return (Ok or Err) without panicking; Ok configs must be self-consistent.
        if let Ok(c) = load_str("fuzz.cfg", &text) {
            for fe in &c.frontends {
                assert!(fe.backend < c.backends.len(), "{text}");
            }
        }
    }
}

// ----- logs, resolvers, user/group (stored, no "not supported yet") -----

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
    assert!(a.tcplog && a.dontlognull);
    let b = &c.frontends[1];
    let args: Vec<_> = b.logs.iter().map(|l| l.args.join(" ")).collect();
    assert_eq!(args, ["/dev/log local1 notice"]);
    assert!(!b.tcplog && !b.dontlognull);
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
    assert_eq!(r.nameservers, [("ns1".to_owned(), sa("127.0.0.1:5353"))]);
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
