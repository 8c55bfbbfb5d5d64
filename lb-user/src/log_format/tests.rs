use super::*;

struct NoFiles;
impl Loader for NoFiles {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!("no file {path}"))
    }
}

fn parse(fmt: &str) -> Result<LogFormat, String> {
    LogFormat::parse(fmt, &NoFiles).map(|(f, _)| f)
}

/// 2020-08-25 18:24:02.387 UTC, seen from UTC+2.
fn data() -> Data<'static> {
    Data {
        client: "10.0.1.8:37336".parse().unwrap(),
        frontend_addr: Some("10.0.0.1:6443".parse().unwrap()),
        backend_src: Some("10.0.0.1:40000".parse().unwrap()),
        server_addr: Some("[2001:db8::7]:6443".parse().unwrap()),
        accepted: Stamp {
            epoch: 1_598_379_842,
            micros: 387_512,
            gmtoff: 7200,
        },
        frontend: "fe",
        backend: "be",
        server: Some("s1"),
        th: 0,
        tw: Some(0),
        tc: Some(2),
        tt: 50,
        bytes_in: 11,
        bytes_out: 1234,
        term: "--",
        actconn: 3,
        feconn: 2,
        beconn: 1,
        srvconn: 1,
        retries: 0,
        redispatched: false,
        srv_queue: 0,
        backend_queue: 0,
        counter: 42,
        log_count: 7,
        pid: 99,
        hostname: "edge1",
        captures: &[],
        samples: &[],
        asap: false,
        ssl: None,
    }
}

#[test]
fn tcplog_is_haproxys_line() {
    let d = data();
    assert_eq!(
        tcplog().render(&d),
        "10.0.1.8:37336 [25/Aug/2020:20:24:02.387] fe be/s1 0/2/50 1234 -- 3/2/1/1/0 0/0"
    );
}

#[test]
fn the_corpus_formats_render() {
    let d = data();
    // 08-pkonotopov: tcplog with the frontend port.
    let f =
        parse("%ci:%cp [%t] %ft %fp %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq").unwrap();
    assert_eq!(
        f.render(&d),
        "10.0.1.8:37336 [25/Aug/2020:20:24:02.387] fe 6443 be/s1 0/2/50 1234 -- 3/2/1/1/0 0/0"
    );
    // 15-percona: JSON.
    let f = parse(r#"{"time":"%t", "client_ip": "%ci", "backend_source_ip": "%bi", "backend_source_port": "%bp",  "Tt": "%Tt"}"#).unwrap();
    assert_eq!(
        f.render(&d),
        r#"{"time":"25/Aug/2020:20:24:02.387", "client_ip": "10.0.1.8", "backend_source_ip": "10.0.0.1", "backend_source_port": "40000", "Tt": "50"}"#
    );
    // 39-aptos: `%sp[%rt]`, the variable name ends at the bracket.
    let f = parse("%ci:%cp - %sp[%rt] [%t] %ft %Tw/%Tc/%Tt %B [%ts]").unwrap();
    assert_eq!(
        f.render(&d),
        "10.0.1.8:37336 - 6443[42] [25/Aug/2020:20:24:02.387] fe 0/2/50 1234 [--]"
    );
}

#[test]
fn spaces_merge_and_absent_values_print_a_dash() {
    let mut d = data();
    d.backend_src = None;
    d.server_addr = None;
    let f = parse("  %bi:%bp   %si  x ").unwrap();
    assert_eq!(f.render(&d), "-:- - x ");
    let f = parse("%{+Q}bi %{+Q}f %{+Q}ft %{+Q}cp %{-M}si|").unwrap();
    assert_eq!(f.render(&d), "\"\" \"fe\" \"fe\" 37336 |");
}

#[test]
fn flags_and_global_options() {
    let d = data();
    let f = parse("%{+X}ci:%{+X}cp %{+X}rt %{+X}si").unwrap();
    assert_eq!(
        f.render(&d),
        "0A000108:91D8 002A 20010DB8000000000000000000000007"
    );
    // `%o` sets the flags of what follows; unknown flags are ignored.
    let f = parse("%b %{+Q,+nope}o %b %s %{-Q}s").unwrap();
    assert_eq!(f.render(&d), "be \"be\" \"s1\" s1");
    let mut e = data();
    e.server = Some("a\"b]c");
    let f = parse("%{+E}s").unwrap();
    assert_eq!(f.render(&e), "a\\\"b\\]c");
}

#[test]
fn dates_times_and_counters() {
    let mut d = data();
    d.redispatched = true;
    d.retries = 2;
    let f = parse("%T|%Tl|%Ts|%ms|%{+X}ms|%Td|%Tu|%U|%rc|%tsc|%lc|%pid|%H|%ID|%ST").unwrap();
    assert_eq!(
        f.render(&d),
        "25/Aug/2020:18:24:02 +0000|25/Aug/2020:20:24:02 +0200|1598379842|387|183|48|50|11\
         |+2|----|7|99|edge1|-|0"
    );
    d.tc = None;
    assert_eq!(parse("%Td %Tc").unwrap().render(&d), "-1 -1");
}

#[test]
fn captures_as_hr_and_hrl() {
    let caps = [Some(b"a.example|x".to_vec()), None, Some(b"b\x01".to_vec())];
    let mut d = data();
    d.captures = &caps;
    let f = parse("%hr %hrl %{+Q}hrl").unwrap();
    assert_eq!(
        f.render(&d),
        "{a.example#7Cx||b#01} a.example#7Cx - b#01 \"a.example#7Cx\" \"\" \"b#01\""
    );
    d.captures = &[];
    assert_eq!(parse("[%hr]").unwrap().render(&d), "[]");
}

#[test]
fn samples_render_through_the_session() {
    let f = parse("%[src] %{+Q}[fe_name,upper] %[capture.req.hdr(0)]").unwrap();
    assert!(f.has_samples());
    assert_eq!(f.samples().count(), 3);
    let keywords: Vec<&str> = f.samples().map(SampleExpr::keyword).collect();
    assert_eq!(keywords, ["src", "fe_name", "capture.req.hdr"]);
    let values = [Some(b"10.0.1.8".to_vec()), Some(b"FE".to_vec()), None];
    let mut d = data();
    d.samples = &values;
    assert_eq!(f.render(&d), "10.0.1.8 \"FE\" -");
    assert!(!f.needs_backend_src());
    assert!(parse("%bp").unwrap().needs_backend_src());
}

#[test]
fn percent_signs() {
    let d = data();
    assert_eq!(parse("100%% %b").unwrap().render(&d), "100% be");
    // A `%` before what can't start a variable is dropped, as HAProxy does.
    assert_eq!(parse("a%-b").unwrap().render(&d), "a-b");
}

#[test]
fn errors_name_the_cause() {
    let e = |f: &str| parse(f).unwrap_err();
    assert_eq!(
        e("%ci %foo"),
        "no such format variable 'foo'. If you wanted to emit the '%' character verbatim, you \
         need to use '%%'"
    );
    assert_eq!(e("%ci %r"), "format variable 'r' is reserved for HTTP mode");
    assert_eq!(e("%HM"), "format variable 'HM' is reserved for HTTP mode");
    assert!(e("50% off").contains("unexpected variable name near ' ' at position 3"));
    assert!(e("%5").contains("Maybe you want to write a single '%', use the syntax '%%'"));
    assert_eq!(e("abc%"), "truncated line after '%'");
    assert_eq!(e("%{+Q"), "truncated line after '%{+Q'");
    assert_eq!(
        e("%{+Q} x"),
        "parse argument modifier without variable name near '%{+Q}'"
    );
    assert_eq!(e("%[src"), "missing ']' after 'src'");
    assert!(
        e("%[nosuchfetch]").contains("nosuchfetch"),
        "{}",
        e("%[nosuchfetch]")
    );
}

#[test]
fn parse_never_panics_on_any_prefix() {
    let f = r#"%{+Q,+X}ci:%cp %[src,ipmask(24)] %% "%{+E}b" %hr %hrl %o %Tl é%"#;
    for i in 0..=f.len() {
        if f.is_char_boundary(i) {
            let _ = parse(&f[..i]);
        }
    }
}

#[test]
fn logasap_marks_total_time_and_bytes_with_a_plus() {
    let f = parse("%Tw/%Tc/%Tt %Tu %B %U %ts").unwrap();
    let d = Data {
        asap: true,
        ..data()
    };
    assert_eq!(f.render(&d), "0/2/+50 +50 +1234 11 --");
    assert_eq!(f.render(&data()), "0/2/50 50 1234 11 --");
}
