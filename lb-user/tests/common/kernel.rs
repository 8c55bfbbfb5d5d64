//! What the kernel says of its own stalls, so that a test can tell them from lb's faults.
//!
//! On a loaded 2-vCPU machine the kernel's per-CPU workers starve for tens of seconds (seen:
//! `BUG: workqueue lockup - pool cpus=1 ... stuck for 59s!` with `sk_psock_backlog` in flight
//! and pending, beside `rcu_preempt kthread starved for 14752 jiffies`). Every flow in the
//! sockmaps of every process waits then: a redirected skb goes out only when its peer's
//! `sk_psock_backlog` work runs. A connection whose echo was late within such a stuck
//! interval was the kernel's; one outside any was not proven to be. The workqueue watchdog
//! reports a pool only once it is stuck for `workqueue.watchdog_thresh` (30 s): shorter stalls
//! leave no proof, and the failures they cause stand.

use std::time::{SystemTime, UNIX_EPOCH};

/// A span of wall-clock time, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub from: f64,
    pub to: f64,
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The workqueue pools the kernel reported stuck (`dmesg`), as spans of wall-clock time, each
/// with its report line. `dmesg` stamps are seconds since boot: converted through
/// `/proc/uptime`, within a few ms.
pub fn workqueue_stalls() -> Vec<(Span, String)> {
    let Ok(out) = std::process::Command::new("dmesg").output() else {
        return Vec::new();
    };
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let boot = unix_now() - uptime;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (stamp, rest) = l.strip_prefix('[')?.split_once(']')?;
            let at: f64 = stamp.trim().parse().ok()?;
            let stuck: f64 = rest
                .split_once("BUG: workqueue lockup")?
                .1
                .split_once("stuck for ")?
                .1
                .split_once('s')?
                .0
                .parse()
                .ok()?;
            let to = boot + at;
            Some((
                Span {
                    from: to - stuck,
                    to,
                },
                l.trim().to_owned(),
            ))
        })
        .collect()
}

/// The report of a stuck workqueue pool whose interval covers `span` (with a second's slack
/// each side for the clocks), if one does.
pub fn stall_covering(span: Span) -> Option<String> {
    workqueue_stalls()
        .into_iter()
        .find(|(s, _)| s.from - 1.0 <= span.from && span.to <= s.to + 1.0)
        .map(|(_, line)| line)
}
