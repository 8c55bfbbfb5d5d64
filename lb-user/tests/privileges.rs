//! `user`/`group` in global through the real lb, started as root: after start every thread
//! runs as nobody/nogroup with no supplementary groups and no capabilities, and both data
//! planes still forward (on sockmap, flows still enter the map and are spliced in the
//! kernel). An unknown user or group stops the start with a clear error. `set-dumpable` makes
//! the process dumpable again after the drop, with no core-size limit, as HAProxy's.

#[macro_use]
mod common;

use std::time::Duration;

use common::ops::{proc_status, thread_statuses};
use common::scenarios;
use common::servers::Backend;
use common::{free_port, local, run_lb, simple_config, Lb, LbOpts};

on_both_planes!(drops_to_nobody_and_still_forwards);

fn with_user(cfg: &str, lines: &str) -> String {
    cfg.replacen("global\n", &format!("global\n{lines}"), 1)
}

fn drops_to_nobody_and_still_forwards(dataplane: &str) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test starts lb as root");
    let s1 = Backend::sink("s1", 0);
    let port = free_port();
    let cfg = with_user(
        &simple_config(port, &[], &[format!("s1 {}", s1.addr)]),
        "    user nobody\n    group nogroup\n",
    );
    // Debug logs say, per flow, which plane carried it.
    let lb = Lb::start_with(&LbOpts::new(&cfg, dataplane).env("RUST_LOG", "debug"));
    assert!(lb
        .find_log("dropped privileges: now user nobody (65534), group nogroup (65534)")
        .is_some());

    let threads = thread_statuses(lb.pid()).expect("read /proc/PID/task/*/status");
    assert!(threads.len() >= 2, "lb has its accept threads");
    let main = proc_status(lb.pid()).unwrap();
    // After setuid the process is not dumpable: the kernel keeps /proc/PID root's.
    assert_eq!(proc_owner(lb.pid()), 0, "dumpable without set-dumpable");
    for st in threads.iter().chain(std::iter::once(&main)) {
        let name = st.get("Name").cloned().unwrap_or_default();
        assert_eq!(st["Uid"], "65534\t65534\t65534\t65534", "thread {name}");
        assert_eq!(st["Gid"], "65534\t65534\t65534\t65534", "thread {name}");
        assert_eq!(st["Groups"], "", "thread {name}: supplementary groups");
        assert_eq!(st["CapEff"], "0000000000000000", "thread {name}");
        assert_eq!(st["CapPrm"], "0000000000000000", "thread {name}");
    }

    // Each upload pauses longer than `--sockmap-after` midway, so that on sockmap the flow
    // is handed over to the maps: the insert must work without privileges.
    for i in 0..3 {
        let bulk = scenarios::bulk_upload_paused(
            local(port),
            4 << 20,
            i,
            Duration::from_millis(100),
            Duration::from_secs(30),
        );
        assert!(bulk.is_ok(), "upload {i}: {bulk:?}");
    }
    let plane = if dataplane.starts_with("sockmap") {
        "(sockmap)"
    } else {
        "(splice)"
    };
    assert!(
        lb.wait_for_log(&format!("bytes out {plane}"), Duration::from_secs(5)),
        "flows are carried by {dataplane} after the drop: {:#?}",
        lb.logs()
    );
}

/// Owner of `/proc/PID/status`: the process's uid when it is dumpable, root when not.
fn proc_owner(pid: u32) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{pid}/status")).unwrap())
}

/// `set-dumpable` with `user`/`group`: dumpable again after the drop (so `/proc/PID` is the
/// user's, and a crash leaves a core), with no core-size limit.
#[test]
fn set_dumpable_makes_the_dropped_process_dumpable() {
    let s1 = Backend::sink("s1", 0);
    let port = free_port();
    let cfg = with_user(
        &simple_config(port, &[], &[format!("s1 {}", s1.addr)]),
        "    user nobody\n    group nogroup\n    set-dumpable\n",
    );
    let lb = Lb::start_with(&LbOpts::new(&cfg, "splice"));
    assert_eq!(
        proc_owner(lb.pid()),
        65534,
        "not dumpable after set-dumpable"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", lb.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace()
            .filter(|w| *w == "unlimited")
            .count()
            == 2,
        "{core}"
    );
}

#[test]
fn unknown_user_or_group_is_a_clear_startup_error() {
    for (lines, want) in [
        (
            "    user no-such-user-xyz\n",
            "global 'user no-such-user-xyz': no such user",
        ),
        (
            "    group no-such-group-xyz\n",
            "global 'group no-such-group-xyz': no such group",
        ),
    ] {
        let cfg = with_user(
            &simple_config(free_port(), &[], &["s1 127.0.0.1:9".into()]),
            lines,
        );
        let (out, _cfgs) = run_lb(
            &[&cfg],
            &["--dataplane", "splice"],
            &[],
            Duration::from_secs(10),
        );
        assert!(!out.status.success(), "{}", out.stderr);
        assert!(out.stderr.contains(want), "{}", out.stderr);
    }
}
