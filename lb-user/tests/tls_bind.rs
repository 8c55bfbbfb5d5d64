//! TLS termination on a bind (`bind ... ssl crt ...`) through the real lb: a rustls client
//! through lb's TLS bind to plain servers. Bytes intact both ways with a half-close (every data
//! plane: such flows stay off the sockmap), `send-proxy` with the client's real address, SNI's
//! choice of certificate, `strict-sni`, ALPN, `ssl_fc_sni` routing, `%sslv %sslc` in logs, a
//! plain client refused and logged without a server, `accept-proxy` before TLS, PROXY v2's TLS
//! TLVs, and a bad `crt` as a load error (and a rejected reload). Certificates are made by `openssl req -x509` in a temporary directory.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::data::{recv_to_eof, stream_summary, DataStream, Summary, REPLY_SEED};
use common::servers::{wait_until, Backend};
use common::{free_port, lb_check, Lb, DEFAULTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// Every wait of these tests.
const T: Duration = Duration::from_secs(20);
const MIB: u64 = 1 << 20;

/// A temporary directory with certificates `a.pem` (a.example), `b.pem` (b.example, key in
/// `b.pem.key`) and `w.pem` (*.w.example).
struct Certs(PathBuf);

impl Certs {
    fn new() -> Certs {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-tls-bind-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, cn) in [("a", "a.example"), ("b", "b.example"), ("w", "*.w.example")] {
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj"])
                .arg(format!("/CN={cn}"))
                .arg("-addext")
                .arg(format!("subjectAltName=DNS:{cn}"))
                .args([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                ])
                .current_dir(&dir)
                .output()
                .expect("openssl (installed by cargo xtask setup)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (crt, key) = (
                std::fs::read(dir.join(format!("{name}.crt"))).unwrap(),
                std::fs::read(dir.join(format!("{name}.key"))).unwrap(),
            );
            if name == "b" {
                std::fs::write(dir.join("b.pem"), crt).unwrap();
                std::fs::write(dir.join("b.pem.key"), key).unwrap();
            } else {
                std::fs::write(dir.join(format!("{name}.pem")), [crt, key].concat()).unwrap();
            }
        }
        Certs(dir)
    }

    fn path(&self, f: &str) -> String {
        self.0.join(f).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn connector(alpn: &[&str]) -> TlsConnector {
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(lb_user::tls_client::NoVerify(provider)))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    TlsConnector::from(Arc::new(c))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `sni`: a name, or `None` for no SNI (an IP address as the server name sends none).
fn server_name(sni: Option<&str>) -> ServerName<'static> {
    match sni {
        Some(s) => ServerName::try_from(s.to_owned()).unwrap(),
        None => ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into()),
    }
}

/// What one TLS exchange through lb gave: the bytes received, the certificate served, ALPN.
struct Exchanged {
    got: Vec<u8>,
    cert: Vec<u8>,
    alpn: Option<Vec<u8>>,
}

/// Connects to lb on `port` over TLS (after `before`, written in clear: a PROXY header),
/// sends `up`, closes its write side (`close_notify` + FIN), and reads to the end.
fn exchange(
    port: u16,
    (sni, alpn): (Option<&str>, &[&str]),
    before: &[u8],
    up: &[u8],
) -> Result<Exchanged, String> {
    runtime().block_on(async {
        let work = async {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tcp.write_all(before).await.map_err(|e| e.to_string())?;
            let tls = connector(alpn)
                .connect(server_name(sni), tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let conn = tls.get_ref().1;
            let cert = conn
                .peer_certificates()
                .map_or(Vec::new(), |c| c[0].to_vec());
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let (mut r, mut w) = tokio::io::split(tls);
            let writing = async {
                w.write_all(up).await?;
                w.shutdown().await
            };
            let mut got = Vec::new();
            let (wrote, read) = tokio::join!(writing, r.read_to_end(&mut got));
            wrote.map_err(|e| format!("write: {e}"))?;
            read.map_err(|e| format!("read: {e}"))?;
            Ok(Exchanged { got, cert, alpn })
        };
        tokio::time::timeout(T, work)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    })
}

/// Whether a DER certificate names `name` (its CN and SAN hold it as text).
fn names(cert: &[u8], name: &str) -> bool {
    cert.windows(name.len()).any(|w| w == name.as_bytes())
}

fn config(port: u16, bind_opts: &str, fe_lines: &str, backends: &str) -> String {
    format!(
        "global\n    log stderr format raw local0\n\n{DEFAULTS}    log global\n\n\
         frontend fe\n    bind 127.0.0.1:{port} {bind_opts}\n{fe_lines}    default_backend be\n\n\
         {backends}"
    )
}

/// 1 MiB each way, SHA-256 checked at both ends, the client's half-close first: the sink
/// server replies (summary + 1 MiB) only once the client's FIN reached it through lb.
fn a_mebibyte_each_way_with_a_half_close(dataplane: &str) {
    let certs = Certs::new();
    let sink = Backend::sink("sink", MIB);
    let port = free_port();
    let cfg = config(
        port,
        &format!("ssl crt {}", certs.path("a.pem")),
        "",
        &format!("backend be\n    server s1 {}\n", sink.addr),
    );
    let lb = Lb::start(&cfg, dataplane);
    let up = DataStream::new(7).take_vec(MIB as usize);
    for round in 0..2 {
        let ex = exchange(port, (Some("a.example"), &[]), b"", &up)
            .unwrap_or_else(|e| panic!("round {round}: {e}; log:\n{}", lb.logs().join("\n")));
        assert!(ex.got.len() >= 40, "round {round}: {} bytes", ex.got.len());
        assert_eq!(
            Summary::from_wire(&ex.got[..40]),
            Summary::of(&up),
            "server got"
        );
        assert_eq!(
            Summary::of(&ex.got[40..]),
            stream_summary(REPLY_SEED, MIB),
            "client got"
        );
    }
    assert!(sink.errors().is_empty(), "{:?}", sink.errors());
}

/// `send-proxy` toward the server carries the client's own address, not the relay's.
fn send_proxy_carries_the_clients_address(dataplane: &str) {
    let certs = Certs::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let srv = Backend::spawn("pp", move |c, conn| {
        let line = common::data::read_line(c, conn.deadline)?;
        s.lock().unwrap().push(line.trim_end().to_owned());
        let got = recv_to_eof(c, conn.deadline)?;
        c.write_all(&got.to_wire())?;
        c.shutdown(Shutdown::Write)
    });
    let port = free_port();
    let cfg = config(
        port,
        &format!("ssl crt {}", certs.path("a.pem")),
        "",
        &format!("backend be\n    server s1 {} send-proxy\n", srv.addr),
    );
    let lb = Lb::start(&cfg, dataplane);
    let ex = exchange(port, (Some("a.example"), &[]), b"", b"hello").unwrap();
    assert_eq!(Summary::from_wire(&ex.got), Summary::of(b"hello"));
    let line = seen.lock().unwrap()[0].clone();
    assert!(
        line.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 ") && line.contains(&format!(" {port}")),
        "{line:?}; log:\n{}",
        lb.logs().join("\n")
    );
}

on_both_planes!(
    a_mebibyte_each_way_with_a_half_close,
    send_proxy_carries_the_clients_address
);

/// An echo of what the server got, for the tests that look at the handshake only.
fn summary_backend() -> Backend {
    Backend::spawn("sum", |c, conn| {
        let got = recv_to_eof(c, conn.deadline)?;
        c.write_all(&got.to_wire())?;
        c.shutdown(Shutdown::Write)
    })
}

#[test]
fn sni_picks_the_certificate_and_no_sni_gets_the_first() {
    let certs = Certs::new();
    let srv = summary_backend();
    let port = free_port();
    let crts = format!(
        "ssl crt {} crt {} crt {}",
        certs.path("a.pem"),
        certs.path("b.pem"),
        certs.path("w.pem")
    );
    let cfg = config(
        port,
        &crts,
        "",
        &format!("backend be\n    server s1 {}\n", srv.addr),
    );
    let _lb = Lb::start(&cfg, "splice");
    for (sni, want) in [
        (Some("b.example"), "b.example"),
        (Some("A.EXAMPLE"), "a.example"),
        (Some("x.w.example"), "*.w.example"),
        (Some("other.example"), "a.example"),
        (None, "a.example"),
    ] {
        let ex = exchange(port, (sni, &[]), b"", b"x").unwrap();
        assert!(names(&ex.cert, want), "SNI {sni:?}: expected {want}");
        assert_eq!(Summary::from_wire(&ex.got), Summary::of(b"x"));
    }
}

#[test]
fn strict_sni_refuses_unknown_names_and_no_sni() {
    let certs = Certs::new();
    let srv = summary_backend();
    let port = free_port();
    let opts = format!("ssl crt {} strict-sni", certs.path("a.pem"));
    let cfg = config(
        port,
        &opts,
        "",
        &format!("backend be\n    server s1 {}\n", srv.addr),
    );
    let _lb = Lb::start(&cfg, "splice");
    assert!(exchange(port, (Some("a.example"), &[]), b"", b"x").is_ok());
    let e = exchange(port, (Some("b.example"), &[]), b"", b"x").err();
    assert!(
        e.as_deref().is_some_and(|e| e.contains("handshake")),
        "{e:?}"
    );
    assert!(exchange(port, (None, &[]), b"", b"x").is_err());
    assert_eq!(srv.accepted(), 1);
}

/// ALPN (the bind's preference), `ssl_fc_sni` routing to two backends, and the log line's
/// `%ft` (with HAProxy's `~`), `%sslv`, `%sslc` and `%[ssl_fc_alpn]`.
#[test]
fn alpn_sni_routing_and_the_log_line() {
    let certs = Certs::new();
    let (s1, s2) = (Backend::ident("one"), Backend::ident("two"));
    let port = free_port();
    let opts = format!(
        "ssl crt {} crt {} alpn h2,http/1.1",
        certs.path("a.pem"),
        certs.path("b.pem")
    );
    let fe = "    log-format \"TLSLOG %ft %b %sslv %sslc %[ssl_fc_alpn] %[ssl_fc_sni] %[ssl_fc]\"\n    use_backend b2 if { ssl_fc_sni -i b.example }\n";
    let backends = format!(
        "backend be\n    server s1 {}\n\nbackend b2\n    server s2 {}\n",
        s1.addr, s2.addr
    );
    let lb = Lb::start(&config(port, &opts, fe, &backends), "splice");
    let ex = exchange(port, (Some("b.example"), &["http/1.1", "h2"]), b"", b"").unwrap();
    assert_eq!(ex.got, b"two\n");
    assert_eq!(ex.alpn.as_deref(), Some(&b"h2"[..]));
    let ex = exchange(port, (Some("a.example"), &["http/1.1"]), b"", b"").unwrap();
    assert_eq!(ex.got, b"one\n");
    assert_eq!(ex.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let line = lb.expect_log("TLSLOG fe~ b2 ");
    assert!(
        line.contains("TLSLOG fe~ b2 TLSv1.3 TLS_AES_") && line.ends_with(" h2 b.example 1"),
        "{line}"
    );
    let line = lb.expect_log("TLSLOG fe~ be ");
    assert!(line.ends_with(" http/1.1 a.example 1"), "{line}");
}

/// A plain client sending garbage to the TLS bind: closed, logged as HAProxy logs a failed
/// handshake, no server contacted; lb keeps serving. Also a client closing at once (the
/// "closed during SSL handshake" line) and the tcplog line of a good one (`fe~`).
#[test]
fn a_plain_client_is_refused_and_logged_without_a_server() {
    let certs = Certs::new();
    let srv = summary_backend();
    let port = free_port();
    let opts = format!("ssl crt {}", certs.path("a.pem"));
    let fe = "    option tcplog\n";
    let cfg = config(
        port,
        &opts,
        fe,
        &format!("backend be\n    server s1 {}\n", srv.addr),
    );
    let lb = Lb::start(&cfg, "splice");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + T;
    // The alert rustls sends, if any, then the close.
    while Instant::now() < deadline {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let line = lb.expect_log("fe/1: SSL handshake failure");
    assert!(line.starts_with("127.0.0.1:"), "{line}");
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    lb.expect_log("fe/1: Connection closed during SSL handshake");
    let ex = exchange(port, (Some("a.example"), &[]), b"", b"still here").unwrap();
    assert_eq!(Summary::from_wire(&ex.got), Summary::of(b"still here"));
    assert!(wait_until(T, || srv.accepted() == 1));
    assert_eq!(srv.accepted(), 1, "only the TLS client reached the server");
    let tcplog = lb.expect_log(" fe~ be/s1 ");
    assert!(tcplog.contains(" -- "), "{tcplog}");
}

/// `accept-proxy` + `ssl`: the PROXY header in clear, then TLS; the header's addresses are
/// the client's for the rules and for `send-proxy`.
#[test]
fn accept_proxy_then_tls() {
    let certs = Certs::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let srv = Backend::spawn("pp", move |c, conn| {
        let line = common::data::read_line(c, conn.deadline)?;
        s.lock().unwrap().push(line.trim_end().to_owned());
        let got = recv_to_eof(c, conn.deadline)?;
        c.write_all(&got.to_wire())?;
        c.shutdown(Shutdown::Write)
    });
    let port = free_port();
    let opts = format!("accept-proxy ssl crt {}", certs.path("a.pem"));
    let fe = "    tcp-request content reject if !{ src 10.1.2.3 }\n";
    let backends = format!("backend be\n    server s1 {} send-proxy\n", srv.addr);
    let lb = Lb::start(&config(port, &opts, fe, &backends), "splice");
    let header = b"PROXY TCP4 10.1.2.3 10.4.5.6 1111 2222\r\n";
    let ex = exchange(port, (Some("a.example"), &[]), header, b"behind a proxy")
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", lb.logs().join("\n")));
    assert_eq!(Summary::from_wire(&ex.got), Summary::of(b"behind a proxy"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["PROXY TCP4 10.1.2.3 10.4.5.6 1111 2222"]
    );
    // No header: refused as a plain accept-proxy bind refuses it.
    assert!(exchange(port, (Some("a.example"), &[]), b"", b"x").is_err());
    lb.expect_log("fe/1: Received something which does not look like a PROXY protocol header");
}

#[test]
fn a_bad_crt_is_a_load_error_naming_the_line() {
    let certs = Certs::new();
    let missing = certs.path("nope.pem");
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1 ssl crt {missing}\n    default_backend be\n\nbackend be\n    server s1 127.0.0.1:2\n"
    );
    let (out, cfgs) = lb_check(&[&cfg]);
    assert!(!out.status.success(), "{}", out.stderr);
    let name = cfgs[0].file_name();
    assert!(
        out.stderr.contains(&format!("{name}:8:")) && out.stderr.contains(&missing),
        "{}",
        out.stderr
    );
    // A certificate without its key anywhere.
    std::fs::remove_file(certs.0.join("b.pem.key")).unwrap();
    let cfg = cfg.replace(&missing, &certs.path("b.pem"));
    let (out, _cfgs) = lb_check(&[&cfg]);
    assert!(out.stderr.contains("private key"), "{}", out.stderr);
    // And a good one loads.
    let cfg = cfg.replace(&certs.path("b.pem"), &certs.path("a.pem"));
    let (out, _cfgs) = lb_check(&[&cfg]);
    assert!(out.status.success(), "{}", out.stderr);
}

/// `send-proxy-v2` with `proxy-v2-options ssl,authority`: the ALPN TLV, the SNI as the
/// authority and the SSL TLV with the client flag and the version, as HAProxy sends them for a
/// TLS client.
#[test]
fn send_proxy_v2_carries_the_tls_facts() {
    let certs = Certs::new();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let s = seen.clone();
    let srv = Backend::spawn("pp2", move |c, conn| {
        let mut head = [0u8; 16];
        c.read_exact(&mut head)?;
        let mut rest = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
        c.read_exact(&mut rest)?;
        s.lock().unwrap().push(rest);
        let got = recv_to_eof(c, conn.deadline)?;
        c.write_all(&got.to_wire())?;
        c.shutdown(Shutdown::Write)
    });
    let port = free_port();
    let opts = format!("ssl crt {} alpn h2", certs.path("a.pem"));
    let backends = format!(
        "backend be\n    server s1 {} send-proxy-v2 proxy-v2-options ssl,authority\n",
        srv.addr
    );
    let lb = Lb::start(&config(port, &opts, "", &backends), "splice");
    let ex = exchange(port, (Some("a.example"), &["h2"]), b"", b"v2").unwrap();
    assert_eq!(
        Summary::from_wire(&ex.got),
        Summary::of(b"v2"),
        "{:?}",
        lb.logs()
    );
    let tlvs = seen.lock().unwrap()[0].clone();
    let has = |want: &[u8]| tlvs.windows(want.len()).any(|w| w == want);
    assert!(has(&[0x01, 0, 2, b'h', b'2']), "ALPN: {tlvs:?}");
    assert!(has(b"\x02\x00\x09a.example"), "authority: {tlvs:?}");
    assert!(
        has(b"\x20\x00\x0f\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3"),
        "SSL: {tlvs:?}"
    );
}

/// A reload whose certificate is missing is rejected with the line and path; the running
/// configuration keeps serving TLS. A reload to another certificate serves it.
#[test]
fn a_reload_with_a_bad_crt_keeps_the_running_one() {
    let certs = Certs::new();
    let srv = summary_backend();
    let port = free_port();
    let backends = format!("backend be\n    server s1 {}\n", srv.addr);
    let with = |crt: &str| config(port, &format!("ssl crt {crt}"), "", &backends);
    let lb = Lb::start(&with(&certs.path("a.pem")), "splice");
    let missing = certs.path("gone.pem");
    lb.rewrite_config(0, &with(&missing));
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload rejected", T),
        "{}",
        lb.logs().join("\n")
    );
    let line = lb.expect_log(&missing);
    assert!(line.contains(".cfg:12: "), "{line}");
    let ex = exchange(port, (None, &[]), b"", b"after").unwrap();
    assert!(names(&ex.cert, "a.example"));
    // A good reload: the new default certificate.
    lb.rewrite_config(0, &with(&certs.path("b.pem")));
    lb.signal(libc::SIGHUP);
    assert!(wait_until(T, || exchange(port, (None, &[]), b"", b"x")
        .is_ok_and(|ex| names(&ex.cert, "b.example"))));
}

/// A client that sends an IP address as its SNI (OpenSSL's `s_client -servername 127.0.0.1`,
/// socat) is served, and what rustls says of it ("Illegal SNI extension", at warning level) is
/// not a warning of lb's: any peer could fill the logs with it. Before, each such handshake
/// put a warning on stderr and into the `log` targets.
#[test]
fn a_peers_odd_handshake_is_not_a_warning_of_lbs() {
    let certs = Certs::new();
    let srv = summary_backend();
    let port = free_port();
    let cfg = config(
        port,
        &format!("ssl crt {}", certs.path("a.pem")),
        "",
        &format!("backend be\n    server s1 {}\n", srv.addr),
    );
    let lb = Lb::start(&cfg, "splice");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("a.example"), "no handshake: {shown}");
    std::thread::sleep(Duration::from_millis(300));
    let logs = lb.logs().join("\n");
    assert!(!logs.contains("Illegal SNI"), "{logs}");
    assert!(!logs.contains("WARN"), "{logs}");
}
