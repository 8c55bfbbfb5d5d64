//! Tests of the check probes (`probe.rs`): each check kind against small real servers.

use super::*;
use crate::config::{HttpCheck, LogFormat};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;

/// Runs a check future on a current-thread runtime, as the checker threads do.
pub(in crate::health) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    crate::test_runtime().block_on(f)
}

fn target(addr: SocketAddr, read: Option<Duration>) -> Target {
    Target::plain(addr, Duration::from_secs(1), read, Duration::from_secs(2))
}

/// A server that runs `f` on each of its first `n` connections.
fn server(n: usize, f: impl Fn(std::net::TcpStream) + Send + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().take(n).flatten() {
            f(c);
        }
    });
    a
}

fn expect(pattern: ExpectPattern) -> TcpCheckRule {
    TcpCheckRule::Expect {
        min_recv: None,
        negate: false,
        pattern,
    }
}

#[test]
fn mysql_packets_are_haproxys_bytes() {
    let p = mysql_packet("haproxy", MysqlVersion::Post41);
    let mut want = vec![
        34 + 7,
        0,
        0,
        1,
        0x00,
        0x82,
        0x00,
        0x00,
        0x00,
        0x80,
        0x00,
        0x01,
        0x21,
    ];
    want.extend_from_slice(&[0; 23]);
    want.extend_from_slice(b"haproxy\0\0");
    want.extend_from_slice(&[1, 0, 0, 0, 1]);
    assert_eq!(p, want);
    let p = mysql_packet("u", MysqlVersion::Pre41);
    assert_eq!(
        p,
        [8, 0, 0, 1, 0x00, 0x80, 0, 0, 1, b'u', 0, 0, 1, 0, 0, 0, 1]
    );
    let p = mysql_packet("u", MysqlVersion::Post80);
    assert_eq!(p[0] as usize, 34 + 1 + 22);
    assert_eq!(&p[4..8], &[0x00, 0x82, 0x08, 0x00]);
    assert!(p.ends_with(b"mysql_native_password\0\x01\x00\x00\x00\x01"));
    let p = pgsql_packet("pg");
    assert_eq!(&p[..8], &[0, 0, 0, 17, 0, 3, 0, 0]);
    assert_eq!(&p[8..], b"user\0pg\0\0");
}

#[test]
fn fill_never_holds_more_than_the_buffer_cap() {
    // 1 MB of garbage: the check reads 16 KiB and stops.
    let addr = server(2, |mut c| {
        let junk = vec![b'x'; 1 << 20];
        let _ = c.write_all(&junk);
    });
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = open(
            &ConnectRule::default(),
            AfterConnect::Other,
            &target(addr, None),
            deadline,
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let mut reads = 0;
        while !s.fill(&mut buf, deadline).await.unwrap() {
            reads += 1;
            assert!(buf.len() <= BUF_CAP);
            assert!(reads < 10_000);
        }
        assert_eq!(buf.len(), BUF_CAP);
        assert!(buf.capacity() <= 2 * BUF_CAP, "{}", buf.capacity());
        let probe = Probe::compile(&CheckKind::TcpCheck(vec![expect(ExpectPattern::String(
            b"never".to_vec(),
        ))]));
        let o = probe.run(&target(addr, Some(Duration::from_secs(3)))).await;
        assert_eq!(o.result, "L7RSP", "{o:?}");
        assert!(!o.passed);
        assert!(
            o.info.contains("did not match content string 'never'"),
            "{o:?}"
        );
    });
}

#[test]
fn silent_server_is_bounded_by_the_read_timeout() {
    let addr = server(1, |c| {
        std::thread::sleep(Duration::from_secs(3));
        drop(c);
    });
    block_on(async {
        let probe = Probe::compile(&CheckKind::Redis);
        let o = probe
            .run(&target(addr, Some(Duration::from_millis(200))))
            .await;
        assert_eq!(o.result, "L7TOUT", "{o:?}");
        assert!(o.duration >= Duration::from_millis(190) && o.duration < Duration::from_secs(2));
    });
}

#[test]
fn scripts_with_several_steps_and_kinds_of_expect() {
    let addr = server(1, |mut c| {
        let mut b = [0u8; 64];
        let n = c.read(&mut b).unwrap();
        assert_eq!(&b[..n], b"HELLO\r\n");
        c.write_all(b"+OK\r\n").unwrap();
        let n = c.read(&mut b).unwrap();
        assert_eq!(&b[..n], &[0xde, 0xad]);
        c.write_all(&[0x2b, 0x00, 0x7f]).unwrap();
        let _ = c.read(&mut b);
    });
    block_on(async {
        let probe = Probe::compile(&CheckKind::TcpCheck(vec![
            TcpCheckRule::Send(b"HELLO\r\n".to_vec()),
            expect(ExpectPattern::Rstring(r"^\+OK".into())),
            TcpCheckRule::Expect {
                min_recv: None,
                negate: true,
                pattern: ExpectPattern::String(b"-ERR".to_vec()),
            },
            TcpCheckRule::Send(vec![0xde, 0xad]),
            expect(ExpectPattern::Binary(vec![0x00, 0x7f])),
            expect(ExpectPattern::Rbinary("^2B007F$".into())),
        ]));
        let o = probe.run(&target(addr, Some(Duration::from_secs(2)))).await;
        assert_eq!(o.result, "L7OK", "{o:?}");
    });
}

#[test]
fn refused_connect_is_l4con() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    block_on(async {
        let o = Probe::compile(&CheckKind::Connect)
            .run(&target(addr, None))
            .await;
        assert_eq!((o.result, o.passed), ("L4CON", false));
        assert_eq!(o.info, "Connection refused");
        assert_eq!(o.result, "L4CON");
    });
}

#[test]
fn mysql_error_greeting_gives_the_code() {
    let addr = server(1, |mut c| {
        let msg = b"\xff\x15\x04#28000Access denied";
        let mut p = vec![msg.len() as u8, 0, 0, 0];
        p.extend_from_slice(msg);
        let _ = c.write_all(&p);
    });
    block_on(async {
        let probe = Probe::compile(&CheckKind::Mysql {
            user: Some("u".into()),
            version: MysqlVersion::Post41,
        });
        let o = probe.run(&target(addr, Some(Duration::from_secs(2)))).await;
        assert_eq!((o.result, o.code), ("L7STS", Some(1045)), "{o:?}");
        assert_eq!(o.info, "Access denied");
    });
}

/// How a check's connection ended, as the server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::health) enum Close {
    Fin,
    Reset,
    /// `accept()` returned nothing within [`ACCEPT_WAIT`]: the handshake never completed on
    /// the server's side (a plain connect check's held-back ACK, then its reset).
    NeverAccepted,
    /// Still open after 5 s, or another error.
    Other,
}

/// How long a test server waits for the check's connection. Ten times Linux's longest delayed
/// ACK (`TCP_DELACK_MAX`, 200 ms): a held-back ACK that was not cancelled by a reset would
/// have completed the handshake well within it.
pub(in crate::health) const ACCEPT_WAIT: Duration = Duration::from_secs(2);

/// The first connection `l` accepts within `wait`, if any.
pub(in crate::health) fn accept_within(
    l: &TcpListener,
    wait: Duration,
) -> Option<std::net::TcpStream> {
    l.set_nonblocking(true).unwrap();
    let until = std::time::Instant::now() + wait;
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).unwrap();
                return Some(c);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A server for one connection: `serve` answers the check, then the server reads until
/// the check's close and reports whether it was a FIN or a reset, or that no connection came.
pub(in crate::health) fn closing_server(
    serve: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<Close>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let Some(mut c) = accept_within(&l, ACCEPT_WAIT) else {
            return Close::NeverAccepted;
        };
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        serve(&mut c);
        let mut b = [0u8; 512];
        loop {
            match c.read(&mut b) {
                Ok(0) => return Close::Fin,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Close::Reset,
                Err(_) => return Close::Other,
            }
        }
    });
    (addr, h)
}

/// Reads one chunk (what the check sent).
fn read_some(c: &mut std::net::TcpStream) {
    let mut b = [0u8; 4096];
    let _ = c.read(&mut b).unwrap();
}

/// Runs `kind` against a server answering with `serve`; returns the check's outcome and
/// how its connection ended.
fn close_of(
    kind: &CheckKind,
    serve: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> (Outcome, Close) {
    let (addr, h) = closing_server(serve);
    let o = block_on(Probe::compile(kind).run(&target(addr, Some(Duration::from_secs(2)))));
    (o, h.join().unwrap())
}

#[test]
fn checks_close_as_haproxys_do() {
    // Plain connect: the handshake's last ACK held back, then a reset (HAProxy's
    // FD_LINGER_RISK): the server never accepts a connection, and the check passes.
    let (o, c) = close_of(&CheckKind::Connect, |_| {});
    assert_eq!((o.result, c), ("L4OK", Close::NeverAccepted));
    // tcp-check without `linger`: a reset.
    let rules = vec![
        TcpCheckRule::Send(b"PING\r\n".to_vec()),
        expect(ExpectPattern::String(b"+OK".to_vec())),
    ];
    let answer_ok = |c: &mut std::net::TcpStream| {
        read_some(c);
        c.write_all(b"+OK\r\n").unwrap();
    };
    let (o, c) = close_of(&CheckKind::TcpCheck(rules.clone()), answer_ok);
    assert_eq!((o.result, c), ("L7OK", Close::Reset));
    // `tcp-check connect linger`: a FIN.
    let mut lingering = vec![TcpCheckRule::Connect(ConnectRule {
        linger: true,
        ..ConnectRule::default()
    })];
    lingering.extend(rules);
    let (o, c) = close_of(&CheckKind::TcpCheck(lingering), answer_ok);
    assert_eq!((o.result, c), ("L7OK", Close::Fin));
    // redis-check is an implicit connect: a reset, as HAProxy's.
    let (o, c) = close_of(&CheckKind::Redis, |c| {
        read_some(c);
        c.write_all(b"+PONG\r\n").unwrap();
    });
    assert_eq!((o.result, c), ("L7OK", Close::Reset));
    // mysql-check and pgsql-check are `connect default linger`: a FIN, and unread bytes
    // the server sent after the verdict do not turn it into a reset.
    let mysql = CheckKind::Mysql {
        user: Some("haproxy".into()),
        version: MysqlVersion::Post41,
    };
    let (o, c) = close_of(&mysql, |c| {
        let greeting = b"\x0a10.11.0-MariaDB\0rest";
        let mut p = vec![greeting.len() as u8, 0, 0, 0];
        p.extend_from_slice(greeting);
        c.write_all(&p).unwrap();
        read_some(c);
        c.write_all(&[7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]).unwrap();
    });
    assert_eq!((o.result, c), ("L7OK", Close::Fin), "{o:?}");
    let pgsql = CheckKind::Pgsql {
        user: "postgres".into(),
    };
    let (o, c) = close_of(&pgsql, |c| {
        read_some(c);
        // AuthenticationOk, then a ParameterStatus the check never reads, in one write as
        // PostgreSQL flushes them: a second write could land after the check's close, and
        // any kernel answers bytes for a closed socket with a reset (HAProxy's as well).
        let mut answer = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
        answer.extend_from_slice(b"S\0\0\0\x19server_version\x0015.1\0");
        c.write_all(&answer).unwrap();
    });
    assert_eq!((o.result, c), ("L7OK", Close::Fin), "{o:?}");
    // httpchk: an implicit connect. A server that closes after its response gets a FIN
    // (the check read its close); one that keeps the connection gets a reset.
    let http = CheckKind::Http(Box::new(HttpCheck {
        method: "OPTIONS".into(),
        uri: LogFormat::text("/"),
        version: "HTTP/1.0".into(),
        ..HttpCheck::default()
    }));
    let (o, c) = close_of(&http, |c| {
        read_some(c);
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\nbody").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
    });
    assert_eq!((o.result, c), ("L7OK", Close::Fin), "{o:?}");
    let (o, c) = close_of(&http, |c| {
        read_some(c);
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    assert_eq!((o.result, c), ("L7OK", Close::Reset), "{o:?}");
}

/// A TLS check's connection: verify none, the client's only setting that matters here.
fn tls_target(addr: SocketAddr) -> Target {
    let trust = crate::config::ServerTls {
        verify: Some(false),
        ..crate::config::ServerTls::default()
    };
    let tls = crate::tls_client::TlsClient::new(&trust, None, &[]).unwrap();
    let mut t = target(addr, Some(Duration::from_secs(2)));
    t.tls = Some(Ok(Arc::new(tls)));
    t.check_ssl = true;
    t
}

#[test]
fn the_proxy_header_goes_before_the_tls_handshake() {
    // HAProxy writes the PROXY header in clear, then starts TLS: the server reads the
    // header's line, then a TLS record (a handshake, 0x16), and refuses it; the check
    // fails its handshake (L6RSP) and its connection ends.
    let (addr, h) = closing_server(|c| {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n") {
            c.read_exact(&mut b).unwrap();
            got.push(b[0]);
        }
        let line = String::from_utf8(got).unwrap();
        assert!(
            line.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
            "{line:?}"
        );
        let mut record = [0u8; 3];
        c.read_exact(&mut record).unwrap();
        assert_eq!(record, [0x16, 0x03, 0x01], "a TLS handshake record");
        c.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut t = tls_target(addr);
    t.send_proxy = Some(ProxyVersion::V1);
    let o = block_on(Probe::compile(&CheckKind::Connect).run(&t));
    assert_eq!(o.result, "L6RSP", "{o:?}");
    assert_ne!(h.join().unwrap(), Close::Other);
}

/// A TLS server's `serve` for [`closing_server`]: a self-signed certificate (made with
/// `openssl`), the handshake, and no session tickets (they would come after the check's
/// handshake and race its close).
fn tls_serve() -> impl FnOnce(&mut std::net::TcpStream) + Send + 'static {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto, ServerConfig, ServerConnection};
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lb-probe-tls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("k.pem"), dir.join("c.pem"));
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=check",
            "-days",
        ])
        .args(["1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let certs = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.send_tls13_tickets = 0;
    let config = Arc::new(config);
    move |c| {
        let mut tls = ServerConnection::new(config).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(c).unwrap();
        }
    }
}

#[test]
fn tls_checks_close_as_plain_ones() {
    // The default connect of a check-ssl server: a reset, as a plain check's.
    let (addr, h) = closing_server(tls_serve());
    let o = block_on(Probe::compile(&CheckKind::Connect).run(&tls_target(addr)));
    assert_eq!(
        (o.result, h.join().unwrap()),
        ("L4OK", Close::Reset),
        "{o:?}"
    );
    // `tcp-check connect ssl linger`: a close_notify, then a FIN.
    let (addr, h) = closing_server(tls_serve());
    let rules = vec![TcpCheckRule::Connect(ConnectRule {
        ssl: true,
        linger: true,
        ..ConnectRule::default()
    })];
    let mut t = tls_target(addr);
    t.check_ssl = false;
    let o = block_on(Probe::compile(&CheckKind::TcpCheck(rules)).run(&t));
    assert_eq!((o.result, h.join().unwrap()), ("L4OK", Close::Fin), "{o:?}");
}

#[test]
fn a_plain_connect_check_never_reaches_the_application() {
    // 20 plain connect checks pass, and the server's application accepts none of them: the
    // last ACK of each handshake was held back, then cancelled by the check's reset.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let probe = Probe::compile(&CheckKind::Connect);
    block_on(async {
        for _ in 0..20 {
            let o = probe.run(&target(addr, None)).await;
            assert_eq!((o.result, o.passed), ("L4OK", true), "{o:?}");
        }
    });
    assert!(accept_within(&l, ACCEPT_WAIT).is_none());
    // Nobody listening: DOWN (L4CON), as before.
    drop(l);
    let o = block_on(probe.run(&target(addr, None)));
    assert_eq!((o.result, o.passed), ("L4CON", false), "{o:?}");
    // A server that speaks first gets its ACK at once: it accepts and greets, the check
    // reads the greeting.
    let addr = server(1, |mut c| {
        c.write_all(b"220 ready\r\n").unwrap();
        let mut b = [0u8; 16];
        let _ = c.read(&mut b);
    });
    let o = block_on(
        Probe::compile(&CheckKind::TcpCheck(vec![expect(ExpectPattern::String(
            b"220".to_vec(),
        ))]))
        .run(&target(addr, Some(Duration::from_secs(2)))),
    );
    assert_eq!(o.result, "L7OK", "{o:?}");
}

#[test]
fn the_ack_waits_when_nothing_follows_or_the_check_speaks_first() {
    // HAProxy's rule (tcpcheck_eval_connect), per step after the connect.
    let send = Step::Send(b"x".to_vec());
    let connect = Step::Connect(ConnectRule::default());
    let greeting = Step::Expect {
        min_recv: None,
        negate: false,
        matcher: Matcher::Bytes(Vec::new()),
        text: String::new(),
        statuses: L7,
    };
    let cases = [
        (None, AfterConnect::Nothing, true),
        (Some(&send), AfterConnect::Send, true),
        (Some(&Step::SendSslHello), AfterConnect::Send, true),
        (Some(&greeting), AfterConnect::Other, false),
        (Some(&connect), AfterConnect::Other, false),
    ];
    for (next, after, delays) in cases {
        assert_eq!(AfterConnect::of(next), after, "{next:?}");
        assert_eq!(after.delays_ack(), delays, "{after:?}");
    }
    // The kinds built as scripts: plain connect, redis-check and ssl-hello-chk send first.
    for kind in [CheckKind::Connect, CheckKind::Redis, CheckKind::SslHello] {
        let Probe::Script { steps, .. } = Probe::compile(&kind) else {
            panic!("{kind:?} is a script")
        };
        assert!(
            AfterConnect::of(steps.get(1)).delays_ack(),
            "{kind:?}: {steps:?}"
        );
    }
}
