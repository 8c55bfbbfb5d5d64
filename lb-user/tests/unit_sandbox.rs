//! The packaged systemd unit (`packaging/lb.service`) gives lb what it needs and no more: lb
//! started as the unit starts it — the unit's `CapabilityBoundingSet`, `NoNewPrivileges` —
//! binds a port below 1024, loads the sockmap program, enters a `chroot`, drops to
//! `nobody`/`nogroup`, and forwards (SHA-256 both ways, half-close), on every plane. Then each
//! capability of the set is taken away in turn: the sockmap start must fail, so the set has
//! nothing to spare and the test cannot pass because `setpriv` changed nothing.

#[macro_use]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::health::TempDir;
use common::scenarios::{concurrent_flows, flow_plan};
use common::servers::Backend;
use common::{Lb, LbOpts};

fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/lb.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `CapabilityBoundingSet`, e.g. `["CAP_BPF", "CAP_NET_ADMIN", ...]`.
fn unit_caps() -> Vec<String> {
    let unit = unit();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    assert!(
        unit.lines().any(|l| l == "NoNewPrivileges=yes"),
        "the unit sets NoNewPrivileges=yes"
    );
    line.split_whitespace().map(str::to_owned).collect()
}

/// Linux capability numbers (`linux/capability.h`) of the names the unit may use.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_CHROOT" => 18,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("capability {other}: add its number to this test"),
    }
}

/// `setpriv` as systemd applies the unit: only `caps` in the bounding set, `no_new_privs`.
fn sandbox(caps: &[String]) -> Vec<String> {
    let mut set = String::from("--bounding-set=-all");
    for c in caps {
        set.push_str(",+");
        set.push_str(&c.trim_start_matches("CAP_").to_lowercase());
    }
    vec!["setpriv".into(), "--no-new-privs".into(), set]
}

/// A loopback address of its own per call (127.X.Y.Z), so port 443 is free for this test.
fn own_loopback() -> String {
    static N: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("127.{}.{}.{n}", 100 + (pid >> 8) % 100, pid & 0xff)
}

/// A config as the package's would be used: a frontend on :443, `user`, `group`, `chroot`.
fn config(bind: &str, chroot: &Path, sock: &Path, server: &Backend) -> String {
    format!(
        "global\n    maxconn 1000\n    user nobody\n    group nogroup\n    chroot {}\n    \
         stats socket {} mode 600 level admin\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    \
         timeout server 30s\n\n\
         frontend fe\n    bind {bind}:443\n    default_backend be\n\n\
         backend be\n    server s1 {}\n",
        chroot.display(),
        sock.display(),
        server.addr
    )
}

/// `CapBnd` of a process as a bit set.
fn bounding_set(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

fn serves_in_the_units_sandbox(dataplane: &str) {
    let dir = TempDir::new("unit-sandbox");
    let chroot = dir.path.join("chroot");
    std::fs::create_dir(&chroot).unwrap();
    let server = Backend::flow("s1");
    let bind = own_loopback();
    let cfg = config(&bind, &chroot, &dir.path.join("admin.sock"), &server);
    let caps = unit_caps();
    let words = sandbox(&caps);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let lb = Lb::start_with(&LbOpts::new(&cfg, dataplane).wrapped(&words));
    let want = caps.iter().fold(0u64, |m, c| m | 1 << cap_number(c));
    assert_eq!(
        bounding_set(lb.pid()),
        want,
        "lb does not run with the unit's bounding set"
    );
    assert!(
        lb.wait_for_log(
            "dropped privileges: now user 65534, group 65534",
            Duration::from_secs(2)
        ),
        "{}",
        lb.logs().join("\n")
    );
    let addr = format!("{bind}:443").parse().unwrap();
    concurrent_flows(
        addr,
        &server,
        &flow_plan(8, 7, 1 << 20),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("flows through lb in the unit's sandbox: {e}"));
}

on_both_planes!(serves_in_the_units_sandbox);

#[test]
fn every_capability_of_the_unit_is_needed() {
    let dir = TempDir::new("unit-caps");
    let chroot = dir.path.join("chroot");
    std::fs::create_dir(&chroot).unwrap();
    let server = Backend::flow("s1");
    let caps = unit_caps();
    for (i, missing) in caps.iter().enumerate() {
        let fewer: Vec<String> = caps
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, c)| c.clone())
            .collect();
        let cfg = config(
            &own_loopback(),
            &chroot,
            &dir.path.join(format!("admin{i}.sock")),
            &server,
        );
        let words = sandbox(&fewer);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let started = Lb::try_start_with(&LbOpts::new(&cfg, "sockmap").wrapped(&words));
        // `lb ready` comes before the threads opened the maps: a start that got that far must
        // still die.
        if let Ok(mut lb) = started {
            let died = lb
                .wait_exit(Duration::from_secs(5))
                .is_some_and(|s| !s.success());
            assert!(
                died,
                "lb runs on the sockmap plane without {missing}: the unit's set has one to \
                 spare\n{}",
                lb.logs().join("\n")
            );
        }
    }
}
