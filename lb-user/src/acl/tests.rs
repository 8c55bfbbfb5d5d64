//! The ACL parser and evaluator on configuration words and connection bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::expr::NameFormat;
use super::*;
use crate::tls_hello::build::hello_record;

/// A backend of the test environment: usable servers, sessions, servers and whether each is up.
type TestBackend = (i64, i64, Vec<(&'static str, bool)>);

/// A fixed environment.
struct TestEnv {
    backends: HashMap<&'static str, TestBackend>,
}

impl TestEnv {
    fn new() -> Self {
        let mut backends = HashMap::new();
        backends.insert(
            "backend_pg",
            (1, 3, vec![("pgnode1", true), ("pgnode2", false)]),
        );
        backends.insert("fe", (0, 0, vec![]));
        Self { backends }
    }

    fn be(&self, b: Option<&str>) -> Option<&TestBackend> {
        self.backends.get(b.unwrap_or("fe"))
    }
}

impl Env for TestEnv {
    fn frontend_name(&self) -> &'static str {
        "fe"
    }
    fn backend_name(&self) -> &'static str {
        "fe"
    }
    fn nbsrv(&self, b: Option<&str>) -> Option<i64> {
        self.be(b).map(|x| x.0)
    }
    fn srv_is_up(&self, b: Option<&str>, s: &str) -> Option<bool> {
        self.be(b)?.2.iter().find(|x| x.0 == s).map(|x| x.1)
    }
    fn be_conn(&self, b: Option<&str>) -> Option<i64> {
        self.be(b).map(|x| x.1)
    }
    fn connslots(&self, b: Option<&str>) -> Option<i64> {
        self.be(b).map(|_| -1)
    }
}

/// Files by name, for `-f` and maps.
struct Files(HashMap<&'static str, &'static str>);

impl Loader for Files {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(path)
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| format!("cannot read '{path}': No such file or directory"))
    }
}

fn files() -> Files {
    Files(HashMap::from([
        ("blocked.ips", "# bad guys\n10.9.0.0/16\n192.0.2.7\n"),
        ("tcp2be.map", "127.0.0.1:4000 ldap\n127.0.0.1:4001 ldap2\n"),
        ("nets.map", "10.0.0.0/8 ten\n"),
    ]))
}

fn words(s: &str) -> Vec<String> {
    crate::config::split_words_for_tests(s)
}

/// A table from `acl` lines (without the keyword).
fn table(lines: &[&str]) -> AclTable {
    let mut t = AclTable::default();
    for l in lines {
        t.add_line(&words(l), &files())
            .unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    t
}

struct Conn {
    req: Vec<u8>,
    final_: bool,
    src: SocketAddr,
    dst: SocketAddr,
    vars: Vars,
}

impl Conn {
    fn new(req: &[u8]) -> Self {
        Self {
            req: req.to_vec(),
            final_: false,
            src: "127.0.0.1:4000".parse().unwrap(),
            dst: "127.0.0.1:443".parse().unwrap(),
            vars: Vars::new(Arc::new(ProcVars::default())),
        }
    }

    fn with<R>(&self, env: &TestEnv, f: impl FnOnce(&Ctx<'_>) -> R) -> R {
        let ctx = Ctx {
            place: Places::REQUEST,
            dir: Dir::Request,
            final_: self.final_,
            req: &self.req,
            res: &[],
            stream: true,
            src: self.src,
            dst: self.dst,
            vars: &self.vars,
            env,
            bufsize: 16384,
        };
        f(&ctx)
    }
}

/// Evaluates `if|unless ...` over `t` on `c`.
fn applies(t: &mut AclTable, cond: &str, c: &Conn) -> Option<bool> {
    let (cond, _) = t.parse_cond(&words(cond), &files()).unwrap();
    c.with(&TestEnv::new(), |ctx| cond.applies(t, ctx))
}

#[test]
fn sni_routing_as_in_the_corpus() {
    let hello = hello_record(Some("Redis-1.ACME.com"), &[]);
    let mut t = AclTable::default();
    let mut c = Conn::new(&hello);
    assert_eq!(
        applies(&mut t, "if { req_ssl_hello_type 1 }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req_ssl_sni -i redis-1.acme.com }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req_ssl_sni -i redis-2.acme.com }", &c),
        Some(false)
    );
    assert_eq!(
        applies(&mut t, "if { req.ssl_sni redis-1.acme.com }", &c),
        Some(false)
    );
    // Half a hello: the rule waits; at the end of the delay it is a plain "no".
    c.req.truncate(20);
    assert_eq!(
        applies(&mut t, "if { req_ssl_sni -i redis-1.acme.com }", &c),
        None
    );
    assert_eq!(
        applies(&mut t, "unless { req_ssl_sni -i redis-1.acme.com }", &c),
        None
    );
    c.final_ = true;
    assert_eq!(
        applies(&mut t, "if { req_ssl_sni -i redis-1.acme.com }", &c),
        Some(false)
    );
    assert_eq!(
        applies(&mut t, "unless { req_ssl_sni -i redis-1.acme.com }", &c),
        Some(true)
    );
}

#[test]
fn alpn_names_negations_and_found() {
    let mut t = table(&[
        "is_h2 req.ssl_alpn -i h2",
        "is_h1 req.ssl_alpn -i http/1.1",
        "has_sni req.ssl_sni -m found",
    ]);
    let h2 = Conn::new(&hello_record(Some("a.example"), &["http/1.1", "h2"]));
    let plain = Conn::new(&hello_record(None, &[]));
    let sni_only = Conn::new(&hello_record(Some("vpn.example"), &[]));
    // As config 36: openvpn if !is_h1 !is_h2 !has_sni, v2ray if !is_h1 !is_h2 has_sni.
    assert_eq!(
        applies(&mut t, "if !is_h1 !is_h2 !has_sni", &plain),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if !is_h1 !is_h2 has_sni", &sni_only),
        Some(true)
    );
    assert_eq!(applies(&mut t, "if is_h2", &h2), Some(true));
    assert_eq!(applies(&mut t, "if is_h1", &h2), Some(true));
    assert_eq!(
        applies(&mut t, "if !is_h1 !is_h2 has_sni", &h2),
        Some(false)
    );
}

#[test]
fn or_and_and_and_three_valued_logic() {
    let mut t = table(&["tls req.ssl_hello_type 1", "no req.len 0"]);
    let part = Conn::new(b"\x16\x03");
    // A miss in a suite hides its later terms; an OR with a pass passes.
    assert_eq!(applies(&mut t, "if tls FALSE", &part), None);
    assert_eq!(applies(&mut t, "if FALSE tls", &part), Some(false));
    assert_eq!(applies(&mut t, "if tls || TRUE", &part), Some(true));
    assert_eq!(applies(&mut t, "if tls or FALSE", &part), None);
    assert_eq!(applies(&mut t, "if !!TRUE", &part), Some(true));
    assert_eq!(applies(&mut t, "if ! TRUE", &part), Some(false));
    // REQ_CONTENT waits on an empty buffer, passes once a byte is there.
    assert_eq!(applies(&mut t, "if REQ_CONTENT", &Conn::new(b"")), None);
    assert_eq!(applies(&mut t, "if REQ_CONTENT", &part), Some(true));
    // WAIT_END waits until the evaluation is final.
    let mut end = Conn::new(b"x");
    assert_eq!(applies(&mut t, "if WAIT_END", &end), None);
    end.final_ = true;
    assert_eq!(applies(&mut t, "if WAIT_END", &end), Some(true));
}

#[test]
fn same_name_is_or_and_later_lines_extend_earlier_references() {
    let mut t = table(&["web dst_port 80", "web dst_port 443"]);
    let (cond, _) = t.parse_cond(&words("if web"), &files()).unwrap();
    t.add_line(&words("web dst_port 8443"), &files()).unwrap();
    let mut c = Conn::new(b"");
    for (port, want) in [(80, true), (443, true), (8443, true), (22, false)] {
        c.dst.set_port(port);
        assert_eq!(
            c.with(&TestEnv::new(), |x| cond.applies(&t, x)),
            Some(want),
            "{port}"
        );
    }
}

#[test]
fn addresses_files_and_localhost() {
    let mut t = table(&["blocked src -n -f blocked.ips", "net src 10.0.0.0/8 ::1"]);
    let mut c = Conn::new(b"");
    c.src = "10.9.3.4:1".parse().unwrap();
    assert_eq!(applies(&mut t, "if blocked", &c), Some(true));
    assert_eq!(applies(&mut t, "if LOCALHOST", &c), Some(false));
    c.src = "192.0.2.7:1".parse().unwrap();
    assert_eq!(applies(&mut t, "if blocked", &c), Some(true));
    c.src = "[::1]:1".parse().unwrap();
    assert_eq!(applies(&mut t, "if net LOCALHOST", &c), Some(true));
    assert_eq!(applies(&mut t, "if blocked", &c), Some(false));
}

#[test]
fn integers_operators_and_backend_state() {
    let mut t = table(&[
        "pg_single_master nbsrv(backend_pg) eq 1",
        "high be_conn(backend_pg) gt 2",
        "low be_conn(backend_pg) lt 3",
        "up srv_is_up(backend_pg/pgnode1)",
        "down srv_is_up(backend_pg/pgnode2)",
        "port dst_port 400:500",
    ]);
    let c = Conn::new(b"");
    assert_eq!(applies(&mut t, "if pg_single_master", &c), Some(true));
    assert_eq!(applies(&mut t, "if high", &c), Some(true));
    assert_eq!(applies(&mut t, "if low", &c), Some(false));
    assert_eq!(applies(&mut t, "if up !down port", &c), Some(true));
    assert_eq!(applies(&mut t, "unless { int(5) ge 5 }", &c), Some(false));
    assert_eq!(
        applies(
            &mut t,
            "if { req.ssl_ver 3.1: }",
            &Conn::new(&hello_record(None, &[]))
        ),
        Some(true)
    );
}

#[test]
fn payload_fetches_and_strings() {
    let mut t = AclTable::default();
    let c = Conn::new(b"\x00\x05hello world");
    assert_eq!(
        applies(&mut t, "if { req.payload(2,5) -m str hello }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { payload(2,5) 68656c6c6f }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req.payload_lv(0,2) -m bin 68656c6c6f }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req.payload_lv(0,2,+6) -m str world }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req.payload(20,2) -m found }", &c),
        None
    );
    assert_eq!(applies(&mut t, "if { req.len ge 13 }", &c), Some(true));
    assert_eq!(
        applies(&mut t, "if { req.payload(2,5),upper -m beg HEL }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req.payload(2,5) -m reg ^h.l+o$ }", &c),
        Some(true)
    );
    assert_eq!(
        applies(&mut t, "if { req.payload(0,0),length 13 }", &c),
        Some(true)
    );
    let http = Conn::new(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(applies(&mut t, "if HTTP", &http), Some(true));
    assert_eq!(
        applies(&mut t, "if HTTP", &Conn::new(b"GET / HTTP/1.1\r\n")),
        None
    );
    assert_eq!(
        applies(&mut t, "if HTTP", &Conn::new(b"\x16\x03\x01")),
        Some(false)
    );
}

#[test]
fn variables_concat_and_maps() {
    let mut c = Conn::new(b"");
    c.vars.start_stream();
    c.vars.set(
        &VarName::parse("sess.src").unwrap(),
        Value::str("127.0.0.1"),
    );
    c.vars
        .set(&VarName::parse("sess.src_port").unwrap(), Value::Int(4001));
    let env = TestEnv::new();
    // Config 40's dynamic backend name.
    let (nf, _) = NameFormat::parse(
        "%[var(sess.src),concat(:,sess.src_port),lower,map_str(tcp2be.map)]",
        &files(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.with(&env, |x| nf.render(x)), b"ldap2");
    let (nf, _) = NameFormat::parse("be_%[dst_port]_%%", &files())
        .unwrap()
        .unwrap();
    assert_eq!(c.with(&env, |x| nf.render(x)), b"be_443_%");
    let (nf, _) = NameFormat::parse("%[var(txn.none)]", &files())
        .unwrap()
        .unwrap();
    assert_eq!(c.with(&env, |x| nf.render(x)), b"-");
    assert!(NameFormat::parse("plain", &files()).unwrap().is_none());
    let mut t = AclTable::default();
    assert_eq!(
        applies(
            &mut t,
            "if { var(sess.src),concat(:,sess.src_port),lower,map_str(tcp2be.map) -m found }",
            &c
        ),
        Some(true)
    );
    let (e, _, _) = SampleExpr::parse_str("str(),concat(,sess.src,:)", &files()).unwrap();
    assert_eq!(c.with(&env, |x| e.first(x)), Some(Value::str("127.0.0.1:")));
    let (e, _, _) = SampleExpr::parse_str("src,map_ip(nets.map,none)", &files()).unwrap();
    assert_eq!(c.with(&env, |x| e.first(x)), Some(Value::str("none")));
}

#[test]
fn converters_as_following_words() {
    let (e, used, _) =
        SampleExpr::parse_words(&words("req.ssl_sni lower if x"), true, &files()).unwrap();
    assert_eq!(used, 2);
    let c = Conn::new(&hello_record(Some("UP.example"), &[]));
    assert_eq!(
        c.with(&TestEnv::new(), |x| e.first(x)),
        Some(Value::str("up.example"))
    );
}

/// Every parsing error names the word and why.
#[test]
fn parse_errors_name_the_word() {
    let cases: &[(&str, &str)] = &[
        (
            "x req.ssl_snii foo",
            "unknown fetch method 'req.ssl_snii' (did you mean 'req.ssl_sni'?)",
        ),
        ("x req.ssl_sni,lowr foo", "unknown converter 'lowr'"),
        ("x req.payload(0) 00", "missing arguments"),
        ("x req.payload(0,x) 00", "failed to parse 'x'"),
        ("x src -m nope 1", "unknown matching method 'nope'"),
        ("x src -x 1", "'-x' is not a valid ACL option"),
        ("x src 1.2.3.4/99", "invalid mask '99'"),
        ("x dst_port abc", "'abc' is not a number"),
        (
            "x var(txn.a) foo",
            "matching method must be specified first",
        ),
        ("x src -f nope.ips", "cannot read 'nope.ips'"),
        (
            "x req.payload(0,1) -m ip 1.2.3.4",
            "matching method 'ip' cannot be used with fetch keyword 'req.payload'",
        ),
        ("x req.ssl_sni -m reg (", "invalid regex '('"),
        (
            "x req.ssl_sni,map_str(missing.map) a",
            "cannot read 'missing.map'",
        ),
        ("x str(a)b c", "missing comma after fetch keyword 'str'"),
        ("b@d src 1.2.3.4", "invalid character in ACL name"),
        ("x var(nope) 1", "invalid variable name 'nope'"),
    ];
    for (line, want) in cases {
        let e = AclTable::default()
            .add_line(&words(line), &files())
            .expect_err(line);
        assert!(e.contains(want), "{line}: got {e:?}, want {want:?}");
    }
    let cond_cases: &[(&str, &str)] = &[
        ("if nope", "no such ACL: 'nope'"),
        ("if TRU", "no such ACL: 'TRU' (did you mean 'TRUE'?)"),
        ("if { src 1.2.3.4", "missing closing '}'"),
        (
            "when TRUE",
            "conditions must start with either 'if' or 'unless'",
        ),
        ("if", "needs at least one ACL"),
    ];
    for (cond, want) in cond_cases {
        let e = AclTable::default()
            .parse_cond(&words(cond), &files())
            .expect_err(cond);
        assert!(e.contains(want), "{cond}: got {e:?}, want {want:?}");
    }
}

#[test]
fn warnings_for_what_never_matches() {
    let mut t = AclTable::default();
    let (w, _) = t
        .add_line(&words("rate sc0_gpt_rate gt 2"), &files())
        .unwrap();
    assert!(
        w[0].contains("stick-table fetch lb does not serve"),
        "{w:?}"
    );
    let (w, _) = t
        .add_line(&words("served sc0_conn_rate gt 2"), &files())
        .unwrap();
    assert!(w.is_empty(), "{w:?}");
    let (w, _) = t.add_line(&words("empty req.ssl_sni"), &files()).unwrap();
    assert!(w[0].contains("no pattern to match against"), "{w:?}");
    let (_, w) = t.parse_cond(&words("if HTTP_1.1"), &files()).unwrap();
    assert!(w[0].contains("HTTP-only"), "{w:?}");
    // Never-answering fetches never match.
    let mut t2 = t.clone();
    assert_eq!(applies(&mut t2, "if rate", &Conn::new(b"")), Some(false));
    assert_eq!(
        applies(&mut t2, "unless { sc0_get_gpc0() ge 1 }", &Conn::new(b"")),
        Some(true)
    );
    // Place checks.
    let (cond, _) = t
        .parse_cond(&words("if { req.ssl_sni -m found }"), &files())
        .unwrap();
    let msg = cond
        .conflict(&t, Places::CONNECTION, "tcp-request connection")
        .unwrap();
    assert!(
        msg.contains("will never match in 'tcp-request connection'"),
        "{msg}"
    );
    let (cond, _) = t
        .parse_cond(&words("if { src 1.2.3.4 }"), &files())
        .unwrap();
    assert!(cond.conflict(&t, Places::CONNECTION, "x").is_none());
}
