//! `lb ctl` against a running lb: the exit status and the line that keepalived's `vrrp_script`
//! and an operator get (0 serving, 1 not serving, 3 a backend without a usable server), and the
//! socat line documented beside it (`examples/keepalived.conf`, README) agreeing with it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::servers::{refusing_addr, wait_until, Backend};
use common::stats;

/// `lb ctl -S SOCK --timeout 1000 ARGS`: (exit code, stdout, stderr); 10 s at most.
fn ctl(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(common::lb_bin())
        .arg("ctl")
        .arg("-S")
        .arg(sock)
        .args(["--timeout", "1000"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lb ctl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "lb ctl {args:?} still running after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("lb ctl output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The documented socat equivalent of `check --backend NAME`: true when it exits 0.
fn socat_check(sock: &Path, backend: &str) -> bool {
    let line = format!(
        "echo \"show stat\" | socat -t 2 stdio UNIX-CONNECT:{} | \
         awk -F, '$1 == \"{backend}\" && $2 == \"BACKEND\" {{ up = ($18 == \"UP\") }} END {{ exit !up }}'",
        sock.display()
    );
    Command::new("sh")
        .args(["-c", &line])
        .status()
        .expect("sh")
        .success()
}

#[test]
fn check_follows_what_lb_serves() {
    let up = Backend::flow("up");
    let setup = stats::start(
        "ctl",
        "splice",
        &["default-server check inter 200ms fall 1 rise 1"],
        &[format!("s1 {}", up.addr), format!("s2 {}", refusing_addr())],
    );
    let sock = setup.dir.sock("admin.sock");

    // s2 is refused: once its check failed, one server of two is usable.
    let mut last = (0, String::new(), String::new());
    let settled = wait_until(Duration::from_secs(5), || {
        last = ctl(&sock, &["check", "--backend", "be"]);
        last.1.contains("backend be: 1 of 2 servers usable")
    });
    assert!(settled, "{last:?}");
    let (code, out, err) = &last;
    assert_eq!(*code, 0, "{last:?}");
    assert!(out.starts_with("lb serving: pid "), "{out}");
    assert!(out.contains(&format!("socket {}", sock.display())), "{out}");
    assert!(err.is_empty(), "{err}");
    assert!(socat_check(&sock, "be"));

    // No usable server left: 3, and the reason on stderr.
    let answer = setup.admin("set server be/s1 state maint");
    assert!(answer.trim().is_empty(), "{answer}");
    let (code, out, err) = ctl(&sock, &["check", "--backend", "be"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("lb ctl: backend be: no usable server (0 of 2)"),
        "{err}"
    );
    assert!(err.contains("lb ctl: lb serving: pid "), "{err}");
    assert!(!socat_check(&sock, "be"));
    // Without --backend only "lb answers" counts.
    let (code, out, _) = ctl(&sock, &["check"]);
    assert_eq!(code, 0, "{out}");

    // An unknown backend is a failed check that says so.
    let (code, _, err) = ctl(&sock, &["check", "--backend", "be", "--backend", "nope"]);
    assert_eq!(code, 3);
    assert!(err.contains("backend nope: no such backend"), "{err}");
    assert!(!socat_check(&sock, "nope"));

    // Back in service: 0 again.
    setup.admin("set server be/s1 state ready");
    let (code, out, err) = ctl(&sock, &["check", "--backend", "be"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(socat_check(&sock, "be"));

    // `cmd` prints the answer as socat would; a user-level socket answers the check too.
    let (code, out, _) = ctl(&sock, &["cmd", "show", "info"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Name: lb\n"), "{out}");
    let steady = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("Uptime"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(steady(&out), steady(&stats::cli(&sock, "show info")));
    let (code, out, _) = ctl(&setup.dir.sock("user.sock"), &["check", "--backend", "be"]);
    assert_eq!(code, 0, "{out}");

    // lb gone: 1, "not serving", and why.
    let mut setup = setup;
    setup.lb.stop();
    let (code, out, err) = ctl(&sock, &["check", "--backend", "be"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.starts_with("lb ctl: not serving: "), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!socat_check(&sock, "be"));
}

#[test]
fn check_gives_up_on_a_socket_that_never_answers() {
    let dir = stats::SockDir::new("ctl-silent");
    let sock = dir.sock("silent.sock");
    // The backlog accepts the connection; nobody ever reads or answers.
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let start = Instant::now();
    let (code, _, err) = ctl(&sock, &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no complete answer within 1s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn help_lists_ctl() {
    let out = Command::new(common::lb_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("ctl"), "{help}");
    let out = Command::new(common::lb_bin())
        .args(["ctl", "check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--backend <NAME>"), "{help}");
}
