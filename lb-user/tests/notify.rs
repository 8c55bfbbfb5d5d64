//! systemd's readiness protocol, seen from systemd's side: the test binds the datagram socket
//! systemd would (a path, or a name in the abstract namespace), passes it in `NOTIFY_SOCKET`,
//! and reads what lb sends across a start, a reload, a rejected reload and a stop, in order.

mod common;

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use common::health::TempDir;
use common::servers::Backend;
use common::{free_port, simple_config, Lb, LbOpts};

/// Reads the next datagram (5 s at most) as text.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification from lb within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The value of `KEY=` in a notification.
fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Start, good reload, broken reload, stop: READY, RELOADING + READY twice, STOPPING.
fn lifecycle(sock: &UnixDatagram, notify_socket: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let echo = Backend::echo("echo");
    let cfg = simple_config(free_port(), &[], &[format!("s1 {}", echo.addr)]);
    let mut lb = Lb::start_with(&LbOpts::new(&cfg, "splice").env("NOTIFY_SOCKET", notify_socket));

    let ready = next(sock);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(lb.pid().to_string().as_str())
    );
    assert_eq!(field(&ready, "STATUS"), Some("serving generation 0"));
    assert!(lb.find_log("lb ready").is_some());

    // A reload that works: RELOADING=1 with the time it began, then READY=1.
    let cfg2 = simple_config(free_port(), &[], &[format!("s1 {}", echo.addr)]);
    lb.rewrite_config(0, &cfg2);
    let before = monotonic_usec();
    lb.signal(libc::SIGHUP);
    let reloading = next(sock);
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let usec: u64 = field(&reloading, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "{usec} vs {before}"
    );
    let ready = next(sock);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(field(&ready, "STATUS"), Some("serving generation 1"));
    assert!(lb.wait_for_log("reload done: generation 1", Duration::from_secs(2)));

    // A rejected reload: lb goes on serving generation 1, and says it is ready again.
    lb.rewrite_config(0, "frontend broken\n    bind :notaport\n");
    lb.signal(libc::SIGHUP);
    let reloading = next(sock);
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let ready = next(sock);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(field(&ready, "STATUS"), Some("serving generation 1"));
    assert!(lb.wait_for_log("reload rejected", Duration::from_secs(2)));

    // Stop: STOPPING=1, and nothing after it.
    let status = lb.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let stopping = next(sock);
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        sock.recv(&mut buf).is_err(),
        "a notification after STOPPING=1"
    );
}

#[test]
fn notifications_on_a_socket_file() {
    let dir = TempDir::new("notify");
    let path = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    lifecycle(&sock, path.to_str().unwrap());
}

#[test]
fn notifications_on_an_abstract_socket() {
    let name = format!("lb-test-notify-{}", std::process::id());
    let sock =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    lifecycle(&sock, &format!("@{name}"));
}

/// Under systemd lb stays the process systemd started (`daemon` is ignored with a warning),
/// and the commands it starts (external checks) do not get `NOTIFY_SOCKET`.
#[test]
fn under_systemd_no_fork_and_no_inherited_socket() {
    let dir = TempDir::new("notify-env");
    let path = dir.path.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let env_file = dir.path.join("check-env");
    let script = dir.path.join("check.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n/usr/bin/env > {}.tmp\n/bin/mv {0}.tmp {0}\n",
            env_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let echo = Backend::echo("echo");
    let cfg = simple_config(
        free_port(),
        &[
            "option external-check",
            &format!("external-check command {}", script.display()),
        ],
        &[format!("s1 {} check inter 200ms", echo.addr)],
    )
    .replacen("global\n", "global\n    daemon\n    external-check\n", 1);
    let lb =
        Lb::start_with(&LbOpts::new(&cfg, "splice").env("NOTIFY_SOCKET", path.to_str().unwrap()));
    let ready = next(&sock);
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(lb.pid().to_string().as_str())
    );
    assert!(
        lb.find_log("'daemon' ignored: lb runs under systemd")
            .is_some(),
        "{:?}",
        lb.logs()
    );
    let ran = common::servers::wait_until(Duration::from_secs(5), || env_file.exists());
    assert!(ran, "the external check never ran");
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains("NOTIFY_SOCKET"), "{env}");
}
