//! TLS and HTTP health checks end to end: `check-ssl` with `option httpchk` (kubeadm's
//! `/readyz`) and `option ssl-hello-chk` against `openssl s_server`, certificates made by the
//! test (a CA, a server certificate it signs, and a stranger's); `http-check connect|send`
//! with `uri-lf %[srv_name]` and `http-check disable-on-404` against Python's `http.server`.
//! Results are read from the runtime API's `show stat`, as an operator would.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::certs::make_certs;
use common::health::{poll, TempDir};
use common::servers::Backend;
use common::stats::{col, parse_csv, start, Setup};
use common::{free_port, local};

on_both_planes!(tls_checks_pass_and_fail_as_haproxys);

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server -HTTP` on a free port with certificate `name`, serving the files of
/// `dir` as whole HTTP responses.
fn s_server(dir: &Path, name: &str) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-HTTP", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-cert",
            &format!("{name}.pem"),
            "-key",
            &format!("{name}.key"),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    assert!(
        poll(Duration::from_secs(5), || TcpStream::connect(local(port))
            .is_ok()),
        "s_server did not listen"
    );
    (Proc(child), port)
}

/// `show stat` rows of backend `be`: (name, `status`, `check_status`, `check_code`).
fn servers(s: &Setup) -> Vec<(String, String, String, String)> {
    let (_, rows) = parse_csv(&s.admin("show stat"));
    rows.iter()
        .filter(|r| {
            col(r, "pxname") == "be" && !["FRONTEND", "BACKEND"].contains(&col(r, "svname"))
        })
        .map(|r| {
            (
                col(r, "svname").to_owned(),
                col(r, "status").to_owned(),
                col(r, "check_status").to_owned(),
                col(r, "check_code").to_owned(),
            )
        })
        .collect()
}

/// Waits until server `name` shows `status` and `check` (e.g. `L7OK`), or panics with the
/// table.
fn wait_state(s: &Setup, name: &str, status: &str, check: &str) {
    let ok = poll(Duration::from_secs(10), || {
        servers(s)
            .iter()
            .any(|(n, st, c, _)| n == name && st == status && c.starts_with(check))
    });
    assert!(ok, "{name}: want {status}/{check}, have {:?}", servers(s));
}

const OK_200: &str = "HTTP/1.0 200 OK\r\nContent-type: text/plain\r\n\r\nok\n";

fn tls_checks_pass_and_fail_as_haproxys(dataplane: &str) {
    let dir = TempDir::new("tls");
    make_certs(&dir.path, "good");
    make_certs(&dir.path, "rogue");
    std::fs::write(dir.path.join("readyz"), OK_200).unwrap();
    std::fs::write(
        dir.path.join("broken"),
        "HTTP/1.0 503 Service Unavailable\r\n\r\ndown\n",
    )
    .unwrap();
    let (_good, gp) = s_server(&dir.path, "good");
    let (_rogue, rp) = s_server(&dir.path, "rogue");
    let ca = dir.path.join("good-ca.pem");
    let ca = ca.display();
    // A plain HTTP server: not TLS, so ssl-hello-chk must fail on it.
    let plain = Backend::spawn("plain-http", |s, _| {
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
        s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    });
    let inter = "inter 200ms rise 1 fall 1";
    let srv = |name: &str, port: u16, extra: &str| {
        format!("{name} 127.0.0.1:{port} check {inter} {extra}")
    };
    let s = start(
        "tls-httpchk",
        dataplane,
        &[
            "option httpchk GET /readyz HTTP/1.0",
            "http-check expect status 200",
        ],
        &[
            // kubeadm's line, corpus file 33.
            srv("none", gp, "check-ssl verify none"),
            srv(
                "required",
                gp,
                &format!("check-ssl verify required ca-file {ca}"),
            ),
            srv(
                "named",
                gp,
                &format!("check-ssl ca-file {ca} check-sni db.test"),
            ),
            srv(
                "wrongname",
                gp,
                &format!("check-ssl ca-file {ca} check-sni other.test"),
            ),
            srv("stranger", rp, &format!("check-ssl ca-file {ca}")),
            srv("stranger_none", rp, "check-ssl verify none"),
            srv("cleartext", plain.addr.port(), "check-ssl verify none"),
        ],
    );
    wait_state(&s, "none", "UP", "L7OK");
    wait_state(&s, "required", "UP", "L7OK");
    wait_state(&s, "named", "UP", "L7OK");
    wait_state(&s, "stranger_none", "UP", "L7OK");
    // Certificates the CA did not sign, or for another name: the handshake fails (L6RSP).
    wait_state(&s, "stranger", "DOWN", "L6RSP");
    wait_state(&s, "wrongname", "DOWN", "L6RSP");
    wait_state(&s, "cleartext", "DOWN", "L6");
    // A wrong status: L7STS with the code.
    std::fs::write(
        dir.path.join("readyz"),
        "HTTP/1.0 503 Service Unavailable\r\n\r\n",
    )
    .unwrap();
    wait_state(&s, "none", "DOWN", "L7STS");
    assert!(servers(&s)
        .iter()
        .any(|(n, _, _, code)| n == "none" && code == "503"));
    std::fs::write(dir.path.join("readyz"), OK_200).unwrap();
    wait_state(&s, "none", "UP", "L7OK");
    drop(s);

    // ssl-hello-chk: any TLS record back passes (s_server answers HAProxy's SSLv3 hello with
    // an alert), a plain server fails with L6RSP, a silent one with L6TOUT.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let sp = silent.local_addr().unwrap().port();
    let s = start(
        "tls-hello",
        dataplane,
        &["option ssl-hello-chk", "timeout check 300ms"],
        &[
            srv("tls", gp, ""),
            srv("http", plain.addr.port(), ""),
            srv("silent", sp, ""),
        ],
    );
    wait_state(&s, "tls", "UP", "L6OK");
    wait_state(&s, "http", "DOWN", "L6RSP");
    wait_state(&s, "silent", "DOWN", "L6TOUT");
    drop(s);
    drop(silent);
}

/// Python's `http.server` on a free port serving `dir`: 200 for a file, 404 otherwise.
fn http_server(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    assert!(
        poll(Duration::from_secs(10), || TcpStream::connect(local(port))
            .is_ok()),
        "http.server did not listen"
    );
    (Proc(child), port)
}

/// Corpus file 06: one health service for every server, asked for `/<server name>` through
/// `http-check connect port N addr A` and `http-check send meth GET uri-lf /%[srv_name]`.
/// With `disable-on-404`, a 404 sets an UP server NOLB, a 200 brings it back.
#[test]
fn http_check_connect_send_and_disable_on_404() {
    let dir = TempDir::new("hc");
    std::fs::write(dir.path.join("replica1"), "ok\n").unwrap();
    std::fs::write(dir.path.join("replica2"), "ok\n").unwrap();
    let (_http, hp) = http_server(&dir.path);
    let data = Backend::echo("data");
    let dp = data.addr.port();
    let s = start(
        "http-check-send",
        "splice",
        &[
            "option httpchk",
            &format!("http-check connect port {hp} addr 127.0.0.1"),
            "http-check send meth GET uri-lf /%[srv_name] ver HTTP/1.1 hdr Host healthcheck",
            "http-check expect status 200",
            "http-check disable-on-404",
        ],
        &[
            format!("replica1 127.0.0.1:{dp} check inter 200ms rise 1 fall 1"),
            format!("replica2 127.0.0.1:{dp} check inter 200ms rise 1 fall 1"),
        ],
    );
    wait_state(&s, "replica1", "UP", "L7OK");
    wait_state(&s, "replica2", "UP", "L7OK");
    // The file of replica2 goes: its check gets a 404, HAProxy's NOLB.
    std::fs::remove_file(dir.path.join("replica2")).unwrap();
    wait_state(&s, "replica2", "NOLB", "L7OKC");
    wait_state(&s, "replica1", "UP", "L7OK");
    assert!(s
        .lb
        .wait_for_log("be/replica2 is stopping", Duration::from_secs(5)));
    // NOLB takes no new connection: every flow goes to replica1.
    let (_, rows) = parse_csv(&s.admin("show stat"));
    let before: u64 = rows
        .iter()
        .find(|r| col(r, "svname") == "replica2")
        .map(|r| col(r, "stot").parse().unwrap())
        .unwrap();
    for _ in 0..6 {
        let mut c = TcpStream::connect(s.fe).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"ping\n");
    }
    let (_, rows) = parse_csv(&s.admin("show stat"));
    let after: u64 = rows
        .iter()
        .find(|r| col(r, "svname") == "replica2")
        .map(|r| col(r, "stot").parse().unwrap())
        .unwrap();
    assert_eq!(before, after, "a NOLB server took new connections");
    std::fs::write(dir.path.join("replica2"), "ok\n").unwrap();
    wait_state(&s, "replica2", "UP", "L7OK");
}
