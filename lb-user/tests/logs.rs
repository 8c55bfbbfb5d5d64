//! Logging through the real lb: `option tcplog` lines over UDP syslog in HAProxy's exact
//! format (checked with a strict regex) with real byte counts, server and termination state,
//! `<NOSRV>`, connect failures, `option dontlognull`, the default `Connect from` line, and
//! `log stdout format raw`. On both data planes.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::ops::{wait, Syslog};
use common::servers::{refusing_addr, Backend};
use common::{free_port, lb_bin, local, Lb, TempCfg, DEFAULTS};
use regex::Regex;

on_both_planes!(
    tcplog_line_per_connection,
    nosrv_and_connect_failure_states,
    queue_timeout_state,
    dontlognull_skips_silent_connections,
    dontlog_normal_logs_only_errors_at_err,
    logasap_logs_when_the_server_is_connected,
    a_frontends_log_tag_names_its_lines,
    logasap_with_dontlog_normal_logs_only_errors_at_their_end,
    connect_line_without_tcplog,
    stdout_format_raw,
    unix_socket_target_and_a_dead_one,
    reload_applies_new_log_settings,
);

const MONTHS: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";

/// HAProxy's rfc3164 header (no hostname, as HAProxy without `log-send-hostname`) and its
/// tcplog format: `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`.
fn tcplog_re() -> Regex {
    Regex::new(&format!(
        r"^<(?P<pri>\d+)>{MONTHS} [ 1-3]\d \d\d:\d\d:\d\d lb\[(?P<pid>\d+)\]: (?P<body>(?P<ci>\d+\.\d+\.\d+\.\d+):(?P<cp>\d+) \[[0-3]\d/{MONTHS}/\d{{4}}:\d\d:\d\d:\d\d\.\d{{3}}\] (?P<ft>\S+) (?P<b>\S+)/(?P<s>\S+) (?P<tw>-1|\d+)/(?P<tc>-1|\d+)/(?P<tt>\d+) (?P<bytes>\d+) (?P<ts>[-A-Za-z]{{2}}) (?P<ac>\d+)/(?P<fc>\d+)/(?P<bc>\d+)/(?P<sc>\d+)/(?P<rc>\+?\d+) (?P<sq>\d+)/(?P<bq>\d+))\n$"
    ))
    .unwrap()
}

/// Global `log` to `syslog`, a frontend `fe` on `port` with `fe_lines`, backend `be`.
fn config(
    syslog: &Syslog,
    port: u16,
    fe_lines: &str,
    servers: &[String],
    be_lines: &str,
) -> String {
    let mut c = format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n\nfrontend fe\n    bind 127.0.0.1:{port}\n{fe_lines}    default_backend be\n\nbackend be\n{be_lines}",
        syslog.addr.port()
    );
    for s in servers {
        let _ = writeln!(c, "    server {s}");
    }
    c
}

/// Sends `data`, half-closes, reads everything back; returns (what came back, local addr).
fn exchange(addr: SocketAddr, data: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("connect to lb");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = s.local_addr().unwrap();
    // lb may already have closed a connection it has no server for: writing and half-closing
    // may then fail, and that is fine here.
    if !data.is_empty() {
        let _ = s.write_all(data);
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (got, me)
}

fn line_for(syslog: &Syslog, port: u16) -> Option<String> {
    let needle = format!("127.0.0.1:{port} [");
    syslog
        .wait_for(&needle, 1, Duration::from_secs(10))
        .into_iter()
        .next()
}

fn tcplog_line_per_connection(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident("s1");
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n",
        &[format!("s1 {}", s1.addr)],
        "",
    );
    let lb = Lb::start(&cfg, dataplane);
    let re = tcplog_re();
    for i in 0..3 {
        let payload = vec![b'x'; 1000 * (i + 1)];
        let (got, me) = exchange(local(port), &payload);
        assert_eq!(got, b"s1\n");
        let line = line_for(&syslog, me.port())
            .unwrap_or_else(|| panic!("no log line for {me}; got {:?}", syslog.lines()));
        let c = re
            .captures(&line)
            .unwrap_or_else(|| panic!("not HAProxy's tcplog format: {line:?}"));
        // local0 (16) * 8 + info (6).
        assert_eq!(&c["pri"], "134", "{line}");
        assert_eq!(c["pid"].parse::<u32>().unwrap(), lb.pid(), "{line}");
        assert_eq!(&c["ci"], "127.0.0.1");
        assert_eq!(c["cp"].parse::<u16>().unwrap(), me.port());
        assert_eq!((&c["ft"], &c["b"], &c["s"]), ("fe", "be", "s1"), "{line}");
        assert_ne!(&c["tw"], "-1", "{line}");
        assert_ne!(&c["tc"], "-1", "{line}");
        let tt: u64 = c["tt"].parse().unwrap();
        assert!(tt >= c["tc"].parse::<u64>().unwrap(), "{line}");
        // %B is server -> client: the 3 bytes of "s1\n", whatever the client sent.
        assert_eq!(&c["bytes"], "3", "{line}");
        assert_eq!(&c["ts"], "--", "{line}");
        // This connection is still counted while its line is written.
        assert_eq!(
            (&c["ac"], &c["fc"], &c["bc"], &c["sc"]),
            ("1", "1", "1", "1"),
            "{line}"
        );
        assert_eq!(&c["rc"], "0");
        assert_eq!((&c["sq"], &c["bq"]), ("0", "0"));
    }
}

fn nosrv_and_connect_failure_states(dataplane: &str) {
    let syslog = Syslog::start();
    let re = tcplog_re();
    // A backend whose only server is disabled: no server at all.
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n",
        &[format!("s1 {} disabled", refusing_addr())],
        "",
    );
    let lb = Lb::start(&cfg, dataplane);
    let (got, me) = exchange(local(port), b"hello");
    assert!(got.is_empty());
    let line = line_for(&syslog, me.port()).expect("a line for a <NOSRV> connection");
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    assert_eq!((&c["b"], &c["s"]), ("be", "<NOSRV>"), "{line}");
    assert_eq!((&c["tw"], &c["tc"]), ("-1", "-1"), "{line}");
    assert_eq!(&c["bytes"], "0");
    assert_eq!(&c["ts"], "SC", "{line}");
    assert_eq!(&c["sc"], "0", "{line}");
    // lb's own warning about it reaches the syslog target too, as a warning (16 * 8 + 4).
    let warned = syslog.wait_for("no server available", 1, Duration::from_secs(10));
    assert!(
        warned
            .first()
            .is_some_and(|l| l.starts_with("<132>") && l.contains(" lb[")),
        "{warned:?}"
    );
    drop(lb);

    // A server that refuses: the server is named, Tc is -1, %rc counts the retries.
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n",
        &[format!("s1 {}", refusing_addr())],
        "    retries 1\n    timeout connect 500ms\n",
    );
    let _lb = Lb::start(&cfg, dataplane);
    let (got, me) = exchange(local(port), b"hello");
    assert!(got.is_empty());
    let line = line_for(&syslog, me.port()).expect("a line for a refused connection");
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    assert_eq!((&c["b"], &c["s"]), ("be", "s1"), "{line}");
    assert_ne!(&c["tw"], "-1", "{line}");
    assert_eq!(&c["tc"], "-1", "{line}");
    assert_eq!(&c["ts"], "SC", "{line}");
    assert_eq!(&c["rc"], "1", "{line}");
}

fn queue_timeout_state(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident_hold("s1");
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n",
        &[format!("s1 {} maxconn 1", s1.addr)],
        "    timeout queue 300ms\n",
    );
    let _lb = Lb::start(&cfg, dataplane);
    // The one slot of s1 is taken by a held connection.
    let mut held = TcpStream::connect(local(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut name = [0u8; 3];
    held.read_exact(&mut name).unwrap();
    assert_eq!(&name, b"s1\n");
    let (got, me) = exchange(local(port), b"waiting");
    assert!(got.is_empty());
    let line = line_for(&syslog, me.port()).expect("a line for a queue timeout");
    let c = tcplog_re()
        .captures(&line)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    assert_eq!(
        (&c["s"], &c["ts"], &c["tc"]),
        ("<NOSRV>", "sQ", "-1"),
        "{line}"
    );
    // Tw is the time spent in the queue: `timeout queue` (the clock may round down by 1 ms).
    let tw: u64 = c["tw"].parse().unwrap();
    assert!(tw >= 299, "{line}");
    // First in line: nobody was queued before it. The held connection counts in %ac/%fc.
    assert_eq!((&c["ac"], &c["fc"], &c["bq"]), ("2", "2", "0"), "{line}");
    drop(held);
}

fn dontlognull_skips_silent_connections(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident("s1");
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n    option dontlognull\n",
        &[format!("s1 {}", s1.addr)],
        "",
    );
    let _lb = Lb::start(&cfg, dataplane);
    let (_, silent) = exchange(local(port), b"");
    let (got, talking) = exchange(local(port), b"some request");
    assert_eq!(got, b"s1\n");
    assert!(
        line_for(&syslog, talking.port()).is_some(),
        "a connection that sent data is logged: {:?}",
        syslog.lines()
    );
    // The silent one ended first; give its line (which must not exist) time to arrive anyway.
    let needle = format!("127.0.0.1:{} [", silent.port());
    let late = syslog.wait_for(&needle, 1, Duration::from_secs(1));
    assert!(
        late.is_empty(),
        "dontlognull logged a silent connection: {late:?}"
    );
}

/// `option dontlog-normal` and `option log-separate-errors` (HAProxy's `strm_log`): a session
/// that ended normally is not logged; one that failed, or succeeded only after a retry and a
/// redispatch, is logged at `err` (local0: `<131>`).
fn dontlog_normal_logs_only_errors_at_err(dataplane: &str) {
    let syslog = Syslog::start();
    let good = Backend::ident("good");
    let (ok, bad, retried) = (free_port(), free_port(), free_port());
    let refusing = refusing_addr();
    let fe = |name: &str, port: u16| {
        format!(
            "frontend {name}\n    bind 127.0.0.1:{port}\n    option tcplog\n    \
             option dontlog-normal\n    option log-separate-errors\n    default_backend b_{name}\n\n"
        )
    };
    let cfg = format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n\n{}{}{}\
         backend b_ok\n    server s1 {}\n\n\
         backend b_bad\n    retries 0\n    server s1 {refusing}\n\n\
         backend b_retried\n    balance first\n    retries 1\n    option redispatch\n    \
         server s1 {refusing}\n    server s2 {}\n",
        syslog.addr.port(),
        fe("ok", ok),
        fe("bad", bad),
        fe("retried", retried),
        good.addr,
        good.addr,
    );
    let _lb = Lb::start(&cfg, dataplane);
    let (got, normal) = exchange(local(ok), b"hello");
    assert_eq!(got, b"good\n");
    let (got, failed) = exchange(local(bad), b"hello");
    assert!(got.is_empty());
    let (got, redispatched) = exchange(local(retried), b"hello");
    assert_eq!(got, b"good\n", "the redispatch reached the good server");
    let re = tcplog_re();
    let line = line_for(&syslog, failed.port()).expect("a failed session is logged");
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    assert_eq!((&c["pri"], &c["ts"]), ("131", "SC"), "{line}");
    let line = line_for(&syslog, redispatched.port()).expect("a redispatched session is logged");
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("format: {line:?}"));
    assert_eq!(
        (&c["pri"], &c["ts"], &c["rc"]),
        ("131", "--", "+1"),
        "{line}"
    );
    let late = syslog.wait_for(
        &format!("127.0.0.1:{} [", normal.port()),
        1,
        Duration::from_secs(1),
    );
    assert!(
        late.is_empty(),
        "dontlog-normal logged a normal session: {late:?}"
    );
}

/// `option logasap` (HAProxy's `sess_establish`): the line leaves once the server connection is
/// established, while the client still holds its connection, with `--` and a `+` on `%Tt` and
/// `%B`; nothing more at its end.
fn logasap_logs_when_the_server_is_connected(dataplane: &str) {
    let syslog = Syslog::start();
    let echo = Backend::echo("echo");
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n    option logasap\n",
        &[format!("s1 {}", echo.addr)],
        "",
    );
    let _lb = Lb::start(&cfg, dataplane);
    let mut held = TcpStream::connect(local(port)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = held.local_addr().unwrap();
    held.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    let line = line_for(&syslog, me.port()).expect("a line while the connection is open");
    let re = Regex::new(r" be/s1 \d+/\d+/\+\d+ \+\d+ -- ").unwrap();
    assert!(re.is_match(&line), "{line}");
    held.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    let needle = format!("127.0.0.1:{} [", me.port());
    let more = syslog.wait_for(&needle, 2, Duration::from_secs(1));
    assert_eq!(more.len(), 1, "a second line at the end: {more:?}");
}

/// `option logasap` with `option dontlog-normal` (HAProxy: the early log is skipped for a
/// session that went well so far, and its end logs it only if it ended in error): a normal
/// session is never logged, one the server resets is logged at its end, `SD`, with the `+`.
fn logasap_with_dontlog_normal_logs_only_errors_at_their_end(dataplane: &str) {
    let syslog = Syslog::start();
    let probe = Backend::reset_probe("probe");
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n    option logasap\n    option dontlog-normal\n",
        &[format!("s1 {}", probe.addr)],
        "",
    );
    let _lb = Lb::start(&cfg, dataplane);
    let greeting = |s: &mut TcpStream| {
        let mut g = [0u8; 6];
        s.read_exact(&mut g).unwrap();
        assert_eq!(&g, b"ready\n");
    };
    let mut normal = TcpStream::connect(local(port)).unwrap();
    normal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let quiet = normal.local_addr().unwrap();
    greeting(&mut normal);
    normal.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = normal.read_to_end(&mut rest);
    let mut reset = TcpStream::connect(local(port)).unwrap();
    reset
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let failed = reset.local_addr().unwrap();
    greeting(&mut reset);
    reset.write_all(b"R").unwrap();
    let _ = reset.read_to_end(&mut rest);
    let line = line_for(&syslog, failed.port()).expect("the reset session is logged at its end");
    let re = Regex::new(r" be/s1 \d+/\d+/\+\d+ \+\d+ SD ").unwrap();
    assert!(re.is_match(&line), "{line}");
    let late = syslog.wait_for(
        &format!("127.0.0.1:{} [", quiet.port()),
        1,
        Duration::from_secs(1),
    );
    assert!(late.is_empty(), "a normal session was logged: {late:?}");
}

/// `log-tag` in a frontend: its session lines carry that tag; lb's own lines keep the global
/// one.
fn a_frontends_log_tag_names_its_lines(dataplane: &str) {
    let syslog = Syslog::start();
    let port = free_port();
    let cfg = config(
        &syslog,
        port,
        "    option tcplog\n    log-tag edge-sessions\n",
        &[format!("s1 {} disabled", refusing_addr())],
        "",
    )
    .replacen("global\n", "global\n    log-tag edge\n", 1);
    let _lb = Lb::start(&cfg, dataplane);
    let (_, me) = exchange(local(port), b"hello");
    let line = line_for(&syslog, me.port()).expect("a session line");
    assert!(line.contains(" edge-sessions["), "{line}");
    let warned = syslog.wait_for("no server available", 1, Duration::from_secs(10));
    assert!(
        warned.first().is_some_and(|l| l.contains(" edge[")),
        "{warned:?}"
    );
}

fn connect_line_without_tcplog(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident("s1");
    let port = free_port();
    let cfg = config(&syslog, port, "", &[format!("s1 {}", s1.addr)], "");
    let _lb = Lb::start(&cfg, dataplane);
    let (_, me) = exchange(local(port), b"x");
    let want = format!(
        "Connect from 127.0.0.1:{} to 127.0.0.1:{port} (fe/TCP)\n",
        me.port()
    );
    let got = syslog.wait_for(&want, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{:?}", syslog.lines());
    assert!(got[0].starts_with("<134>"), "{got:?}");
    // No tcplog line without `option tcplog`.
    assert!(
        !syslog.lines().iter().any(|l| l.contains(" fe be/s1 ")),
        "{:?}",
        syslog.lines()
    );
}

fn stdout_format_raw(dataplane: &str) {
    let s1 = Backend::ident("s1");
    let port = free_port();
    let cfg = TempCfg::new(&format!(
        "global\n    log stdout format raw daemon\n\n{DEFAULTS}    log global\n    option tcplog\n\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend be\n    server s1 {}\n",
        s1.addr
    ));
    let mut child = Command::new(lb_bin())
        .arg("-f")
        .arg(&cfg.path)
        .args(common::dataplane_args(dataplane))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lb");
    let collect = |r: Box<dyn Read + Send>| {
        let buf: Arc<Mutex<Vec<String>>> = Arc::default();
        let b = buf.clone();
        thread::spawn(move || {
            for l in BufReader::new(r).lines() {
                let Ok(l) = l else { break };
                b.lock().unwrap().push(l);
            }
        });
        buf
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let has = |buf: &Arc<Mutex<Vec<String>>>, needle: &str| {
        buf.lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    };
    let ready = wait(Duration::from_secs(10), || has(&err, "lb ready").is_some());
    let result = std::panic::catch_unwind(|| {
        assert!(ready, "lb did not start: {:?}", err.lock().unwrap());
        let (got, me) = exchange(local(port), b"abc");
        assert_eq!(got, b"s1\n");
        let needle = format!("127.0.0.1:{} [", me.port());
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            if let Some(l) = has(&out, &needle) {
                break l;
            }
            assert!(
                Instant::now() < deadline,
                "no stdout line: {:?}",
                out.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        };
        // raw: the message alone, no <PRI>, date or tag.
        let re = Regex::new(&format!(
            r"^127\.0\.0\.1:{} \[[0-3]\d/{MONTHS}/\d{{4}}:\d\d:\d\d:\d\d\.\d{{3}}\] fe be/s1 \d+/\d+/\d+ 3 -- 1/1/1/1/0 0/0$",
            me.port()
        ))
        .unwrap();
        assert!(re.is_match(&line), "{line:?}");
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn unix_socket_target_and_a_dead_one(dataplane: &str) {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "lb-test-log-{}-{dataplane}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind unix log socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let s1 = Backend::ident("s1");
    let port = free_port();
    // Two targets: ours, and one nobody listens on (a syslog daemon that is down). The dead
    // one must cost nothing: every connection is still served and logged to the live one.
    let cfg = format!(
        "global\n    log {} local0\n    log /nonexistent/lb-test/dev/log local0\n\n{DEFAULTS}    log global\n    option tcplog\n\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend be\n    server s1 {}\n",
        path.display(),
        s1.addr
    );
    let _lb = Lb::start(&cfg, dataplane);
    let re = tcplog_re();
    for _ in 0..20 {
        let (got, me) = exchange(local(port), b"q");
        assert_eq!(got, b"s1\n");
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("a line on the unix socket");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        let c = re
            .captures(&line)
            .unwrap_or_else(|| panic!("format: {line:?}"));
        assert_eq!(c["cp"].parse::<u16>().unwrap(), me.port(), "{line}");
    }
    let _ = std::fs::remove_file(&path);
}

/// A reload that turns `option tcplog` on takes effect for new connections: log settings
/// belong to the configuration in force, not to the one lb started with.
fn reload_applies_new_log_settings(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident("s1");
    let port = free_port();
    let servers = [format!("s1 {}", s1.addr)];
    let lb = Lb::start(&config(&syslog, port, "", &servers, ""), dataplane);
    let (_, me) = exchange(local(port), b"x");
    let want = format!(
        "Connect from 127.0.0.1:{} to 127.0.0.1:{port} (fe/TCP)",
        me.port()
    );
    let first = syslog.wait_for(&want, 1, Duration::from_secs(10));
    assert_eq!(
        first.len(),
        1,
        "the connect line before the reload: {:?}",
        syslog.lines()
    );
    // The new configuration also renames the syslog tag: header fields follow reloads too.
    lb.rewrite_config(
        0,
        &config(&syslog, port, "    option tcplog\n", &servers, "").replacen(
            "global\n",
            "global\n    log-tag haproxy\n",
            1,
        ),
    );
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)),
        "{}",
        lb.logs().join("\n")
    );
    let (got, me) = exchange(local(port), b"hello");
    assert_eq!(got, b"s1\n");
    let line = line_for(&syslog, me.port()).expect("a line after the reload");
    assert!(
        line.contains(" haproxy["),
        "the new log-tag after the reload: {line:?}"
    );
    assert!(
        tcplog_re().is_match(&line.replacen(" haproxy[", " lb[", 1)),
        "tcplog after the reload: {line:?}"
    );
}
