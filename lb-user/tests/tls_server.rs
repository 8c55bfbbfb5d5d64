//! TLS to servers end to end (`server ... ssl`): a plain client → lb → a TLS server (a rustls
//! server in the test, with certificates made by `openssl`): 1 MiB each way checked by SHA-256
//! at both ends with a half-close; `verify required` + `ca-file` + `sni str(...)` against the
//! right certificate, a wrong name and a stranger's CA (failed connects, retried, logged and
//! counted); `verify none` against a self-signed certificate; `send-proxy` + `ssl` (the PROXY
//! header in clear before the ClientHello); checks over TLS because of `ssl`; `%bi:%bp` of the
//! TCP connection, and a handshake that never ends failing by `timeout connect` (`sC`); a
//! binary upgrade leaving a TLS flow with the old process.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ServerConfig, ServerConnection, Stream};

use common::certs::{make_certs, openssl, EC};
use common::data::{read_all, send_stream, stream_summary, Summary};
use common::health::{poll, TempDir};
use common::ops::Syslog;
use common::servers::Backend;
use common::stats::{col, config, parse_csv, start, Setup, SockDir};
use common::{free_port, local, Lb, LbOpts, DEFAULTS};

on_both_planes!(bulk_both_ways_with_half_close_over_tls);

/// What the client sends, and the server answers (seeds of `common::data` streams).
const UP: (u64, u64) = (11, 1 << 20);
const DOWN: (u64, u64) = (12, 1 << 20);
const DEADLINE: Duration = Duration::from_secs(30);

/// A self-signed certificate `NAME.pem`/`NAME.key` (no CA behind it).
fn make_self_signed(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut a = vec!["req", "-x509"];
    a.extend(EC);
    a.extend([
        "-keyout", &key, "-out", &pem, "-days", "2", "-subj", "/CN=self",
    ]);
    openssl(dir, &a);
}

/// What the TLS server saw of one connection.
#[derive(Debug, Clone)]
struct Seen {
    /// The PROXY header line read in clear before TLS, when one was expected.
    proxy: Option<String>,
    /// The first byte after it was a TLS handshake record (0x16).
    hello_next: bool,
    sni: Option<String>,
    /// What it received over TLS, to the client's end.
    got: Summary,
    /// lb's address on the connection.
    peer: std::net::SocketAddr,
}

/// A TLS server on `name`'s certificate: per connection, an optional PROXY header line in
/// clear, the handshake, everything to the peer's end (its `close_notify`, or EOF), then
/// [`DOWN`]'s bytes, the summary of what it received, `close_notify` and FIN. Each finished
/// connection is sent on the channel; checks' connections, which end early, are not.
fn tls_server(dir: &Path, name: &str, expect_proxy: bool) -> (Backend, mpsc::Receiver<Seen>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let b = Backend::spawn(&format!("tls-{name}"), move |tcp, _| {
        tcp.set_read_timeout(Some(DEADLINE))?;
        tcp.set_write_timeout(Some(DEADLINE))?;
        let seen = serve_tls(tcp, config.clone(), expect_proxy)?;
        let _ = tx.lock().unwrap().send(seen);
        Ok(())
    });
    (b, rx)
}

fn serve_tls(tcp: &mut TcpStream, config: Arc<ServerConfig>, proxy: bool) -> io::Result<Seen> {
    let peer = tcp.peer_addr()?;
    let proxy = if proxy {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        // A v1 header is at most 107 bytes.
        while !line.ends_with(b"\r\n") && line.len() < 108 {
            tcp.read_exact(&mut b)?;
            line.push(b[0]);
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    } else {
        None
    };
    let mut b = [0u8; 1];
    let hello_next = tcp.peek(&mut b)? == 1 && b[0] == 0x16;
    let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = Stream::new(&mut conn, tcp);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // The end without a close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !got.is_empty() => break,
            Err(e) => return Err(e),
        }
        if got.len() > 4 << 20 {
            return Err(io::Error::other("more than 4 MiB"));
        }
    }
    let got = Summary::of(&got);
    let sni = tls.conn.server_name().map(str::to_owned);
    send_stream(&mut tls, DOWN.0, DOWN.1, Instant::now() + DEADLINE)?;
    tls.write_all(&got.to_wire())?;
    tls.conn.send_close_notify();
    tls.flush()?;
    tcp.shutdown(Shutdown::Write)?;
    Ok(Seen {
        proxy,
        hello_next,
        sni,
        got,
        peer,
    })
}

/// A client exchange through lb: [`UP`] sent, its write side shut, then everything read to
/// the end: [`DOWN`]'s bytes and the server's summary of what it received.
fn exchange(fe: std::net::SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    let mut c = TcpStream::connect(fe).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let sent = send_stream(&mut c, UP.0, UP.1, deadline).map_err(|e| e.to_string())?;
    c.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let back = read_all(&mut c, (3 << 20) as usize, deadline).map_err(|e| e.to_string())?;
    if back.len() as u64 != DOWN.1 + 40 {
        return Err(format!("got {} bytes back", back.len()));
    }
    let (data, wire) = back.split_at(DOWN.1 as usize);
    let down = Summary::of(data);
    if down != stream_summary(DOWN.0, DOWN.1) {
        return Err(format!("the server's bytes arrived changed: {down:?}"));
    }
    let server_got = Summary::from_wire(wire);
    if server_got != sent {
        return Err(format!("sent {sent:?}, the server got {server_got:?}"));
    }
    Ok(())
}

/// `show stat` of backend `be`'s server `name`: column `c`.
fn stat(s: &Setup, name: &str, c: &str) -> String {
    let (_, rows) = parse_csv(&s.admin("show stat"));
    rows.iter()
        .find(|r| col(r, "pxname") == "be" && col(r, "svname") == name)
        .map(|r| col(r, c).to_owned())
        .unwrap_or_default()
}

fn bulk_both_ways_with_half_close_over_tls(dataplane: &str) {
    let dir = TempDir::new("tls-server");
    make_certs(&dir.path, "good");
    let (server, seen) = tls_server(&dir.path, "good", true);
    let ca = dir.path.join("good-ca.pem");
    let fe = free_port();
    let socks = SockDir::new("tls-bulk");
    let line = format!(
        "s1 {} send-proxy ssl verify required ca-file {} sni str(db.test)",
        server.addr,
        ca.display()
    );
    let cfg = config(fe, &socks, &[], &[line], "");
    // Debug: each flow's end names the plane that carried it.
    let lb = Lb::start_with(&LbOpts::new(&cfg, dataplane).args(&["--log-level", "debug"]));
    exchange(local(fe)).unwrap();
    // Never the kernel maps, whose programs are TCP's: the server side is a relay's socket.
    assert!(
        lb.wait_for_log("bytes out (splice)", DEADLINE),
        "{:#?}",
        lb.logs()
    );
    assert!(lb.find_log("bytes out (sockmap)").is_none());
    let seen = seen
        .recv_timeout(DEADLINE)
        .expect("the server saw the flow");
    let proxy = seen.proxy.as_deref().unwrap_or_default();
    assert!(
        proxy.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{seen:?}"
    );
    assert!(
        seen.hello_next,
        "the ClientHello follows the header: {seen:?}"
    );
    assert_eq!(seen.sni.as_deref(), Some("db.test"));
    assert_eq!(seen.got, stream_summary(UP.0, UP.1));
}

#[test]
fn wrong_names_and_cas_fail_connects_and_verify_none_accepts_self_signed() {
    let dir = TempDir::new("tls-verify");
    make_certs(&dir.path, "good");
    make_certs(&dir.path, "rogue");
    make_self_signed(&dir.path, "self");
    let (good, good_seen) = tls_server(&dir.path, "good", false);
    let (rogue, _r) = tls_server(&dir.path, "rogue", false);
    let (own, own_seen) = tls_server(&dir.path, "self", false);
    let ca = dir.path.join("good-ca.pem");
    let ca = ca.display();
    let s = start(
        "tls-verify",
        "splice",
        &[],
        &[
            format!("self {} ssl verify none", own.addr),
            format!("vhost {} ssl ca-file {ca} verifyhost db.test", good.addr),
        ],
    );
    // `verify none`: a self-signed certificate is taken; without `sni`, no SNI is sent and
    // `verifyhost` names what the certificate must hold. Round robin: one flow each.
    exchange(s.fe).unwrap();
    exchange(s.fe).unwrap();
    for seen in [&own_seen, &good_seen] {
        assert_eq!(seen.recv_timeout(DEADLINE).unwrap().sni, None);
    }
    drop(s);

    for (name, addr, sni, why) in [
        ("wrongname", good.addr, "sni str(other.test)", "name"),
        ("wronghost", good.addr, "verifyhost other.test", "name"),
        ("stranger", rogue.addr, "", "issuer"),
    ] {
        let s = start(
            &format!("tls-{name}"),
            "splice",
            &["retries 2"],
            &[format!("{name} {addr} ssl ca-file {ca} {sni}")],
        );
        exchange(s.fe).expect_err("no server to reach");
        let line = s.lb.expect_log("SSL handshake failure");
        let lower = line.to_lowercase();
        assert!(
            line.contains(&format!("be/{name}")) && lower.contains(why),
            "{line}"
        );
        // Three attempts, two retries, each a connection error.
        assert!(
            poll(Duration::from_secs(5), || stat(&s, name, "wretr") == "2"
                && stat(&s, name, "econ") == "3"),
            "{name}: wretr {} econ {}",
            stat(&s, name, "wretr"),
            stat(&s, name, "econ")
        );
    }
}

#[test]
fn checks_speak_tls_because_of_ssl() {
    let dir = TempDir::new("tls-checks");
    make_certs(&dir.path, "good");
    let (good, _g) = tls_server(&dir.path, "good", false);
    // A plain server: a TLS check fails on it, a plain one would pass.
    let plain = Backend::spawn("plain", |s, _| {
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
        s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    });
    let inter = "check inter 200ms rise 1 fall 1";
    let s = start(
        "tls-checks",
        "splice",
        &[],
        &[
            format!("tls {} ssl verify none {inter}", good.addr),
            format!("plain {} ssl verify none {inter}", plain.addr),
            format!("clear {} ssl verify none no-check-ssl {inter}", plain.addr),
        ],
    );
    let state = |n: &str| (stat(&s, n, "status"), stat(&s, n, "check_status"));
    // The TLS server passes (a connect check reports L4OK, TLS or not); the plain one fails
    // the handshake (L6RSP) unless `no-check-ssl` keeps the check in clear.
    let want = [
        ("tls", "UP", "L4OK"),
        ("plain", "DOWN", "L6RSP"),
        ("clear", "UP", "L4OK"),
    ];
    let ok = poll(Duration::from_secs(10), || {
        want.iter()
            .all(|(n, st, c)| state(n) == ((*st).to_owned(), (*c).to_owned()))
    });
    let have: Vec<_> = want.iter().map(|(n, _, _)| (n, state(n))).collect();
    assert!(ok, "want {want:?}, have {have:?}");
}

#[test]
fn logs_name_the_tcp_side_and_a_silent_handshake_times_out() {
    let dir = TempDir::new("tls-logs");
    make_self_signed(&dir.path, "self");
    let (own, own_seen) = tls_server(&dir.path, "self", false);
    // Connects complete in its backlog; nothing ever answers the ClientHello.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let syslog = Syslog::start();
    let (p1, p2) = (free_port(), free_port());
    let cfg = format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n\
         \x20   log-format \"%ft %bi:%bp %s %ts %rc\"\n\n\
         frontend fe1\n    bind 127.0.0.1:{p1}\n    default_backend ok\n\n\
         frontend fe2\n    bind 127.0.0.1:{p2}\n    default_backend silent\n\n\
         backend ok\n    server s1 {} ssl verify none\n\n\
         backend silent\n    timeout connect 300ms\n    retries 1\n\
         \x20   server mute {} ssl verify none\n",
        syslog.addr.port(),
        own.addr,
        mute.local_addr().unwrap(),
    );
    let lb = Lb::start(&cfg, "splice");
    exchange(local(p1)).unwrap();
    let seen = own_seen.recv_timeout(DEADLINE).unwrap();
    // `%bi:%bp`: the TCP connection's address, as the server saw it (not the relay's).
    let line = syslog.wait_for("fe1 ", 1, DEADLINE).concat();
    assert!(
        line.contains(&format!("fe1 {} s1 -- 0", seen.peer)),
        "{line}"
    );

    let mut c = TcpStream::connect(local(p2)).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = c.write_all(b"hello");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // Two attempts, each ended by `timeout connect` in the handshake: `sC`, one retry.
    let line = syslog.wait_for("fe2 ", 1, DEADLINE).concat();
    assert!(line.contains(" mute sC 1"), "{line}");
    assert!(lb.wait_for_log("connection timed out", DEADLINE));
    drop(mute);
}

/// A binary upgrade (`-x`, `-sf`) leaves a flow to a TLS server with the old process, where
/// its relay holds the TLS connection: the new process takes none, the old one carries it to
/// its end (a hand-off would have let the old process exit and cut it).
#[test]
fn an_upgrade_leaves_tls_flows_with_the_old_process() {
    let dir = TempDir::new("tls-upgrade");
    make_self_signed(&dir.path, "self");
    let (own, own_seen) = tls_server(&dir.path, "self", false);
    let sock = std::env::temp_dir().join(format!("lb-tls-upgrade-{}.sock", std::process::id()));
    let fe = free_port();
    let cfg = format!(
        "global\n    stats socket {} level admin expose-fd listeners\n\n{DEFAULTS}\n\
         frontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
         backend be\n    server s1 {} ssl verify none\n",
        sock.display(),
        own.addr
    );
    let mut old = Lb::start(&cfg, "splice");
    let deadline = Instant::now() + DEADLINE;
    let mut c = TcpStream::connect(local(fe)).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    // Half of the upload before the upgrade, the rest after.
    let data = common::data::DataStream::new(UP.0).take_vec(UP.1 as usize);
    let (first, rest) = data.split_at(data.len() / 2);
    c.write_all(first).unwrap();
    let (sock_arg, old_pid) = (sock.display().to_string(), old.pid().to_string());
    let new =
        Lb::start_with(&LbOpts::new(&cfg, "splice").args(&["-x", &sock_arg, "-sf", &old_pid]));
    let took = new.expect_log("established flow(s) from the old process");
    assert!(took.contains("took 0 established"), "{took}");
    // The old process lives on with the flow.
    assert!(old.wait_exit(Duration::from_millis(500)).is_none());
    c.write_all(rest).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let back = read_all(&mut c, 3 << 20, deadline).unwrap();
    assert_eq!(back.len() as u64, DOWN.1 + 40);
    assert_eq!(
        Summary::from_wire(&back[DOWN.1 as usize..]),
        Summary::of(&data)
    );
    assert_eq!(
        own_seen.recv_timeout(DEADLINE).unwrap().got,
        Summary::of(&data)
    );
    // Its last flow over, the old process exits.
    assert!(old.wait_exit(DEADLINE).is_some(), "{:#?}", old.logs());
    drop(new);
}
