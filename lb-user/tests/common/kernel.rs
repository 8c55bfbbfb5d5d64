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

/// What proves that the kernel's workers were stuck at `at` (wall clock): a workqueue pool
/// reported stuck then (`dmesg`, with a second's slack for the clocks), or, traced by
/// `works`, an `sk_psock_backlog` work queued by then that no worker started until a second
/// later at least.
pub fn stall_at(at: f64, works: Option<&PsockWorks>) -> Option<String> {
    if let Some((_, line)) = workqueue_stalls()
        .into_iter()
        .find(|(s, _)| s.from - 1.0 <= at && at <= s.to + 1.0)
    {
        return Some(line);
    }
    works?
        .waits(1.0)
        .into_iter()
        .find(|w| w.from <= at + 0.5 && w.to >= at + 1.0)
        .map(|w| {
            format!(
                "an sk_psock_backlog work queued at unix {:.3} waited {:.3} s for a worker",
                w.from,
                w.to - w.from
            )
        })
}

/// `CLOCK_MONOTONIC` now, in seconds (the clock of tracefs's `mono` trace clock).
fn mono_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The kernel's `sk_psock_backlog` work items, traced for the life of this value in a tracefs
/// instance of its own (`/sys/kernel/tracing/instances/NAME`: its own buffer, nothing shared
/// with other tracers): when each was queued and when a worker started it. Stalls shorter than
/// the workqueue watchdog's 30 s leave no `dmesg` line; they show here, as a work that waited.
pub struct PsockWorks {
    dir: std::path::PathBuf,
}

/// Mounts tracefs at its usual place when it is not there (a fresh machine may not have it, as
/// `perf` and `bpftrace` also find and mount it). Once per process; failures leave the tracer
/// off, and only the `dmesg` check applies.
fn mount_tracefs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let at = std::path::Path::new("/sys/kernel/tracing");
        if at.join("instances").exists() || !at.exists() {
            return;
        }
        // SAFETY: mount(2) with NUL-terminated strings and no data.
        let r = unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                c"/sys/kernel/tracing".as_ptr(),
                c"tracefs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            eprintln!(
                "tracefs not mounted at /sys/kernel/tracing: {}; kernel stalls are told by dmesg only",
                std::io::Error::last_os_error()
            );
        }
    });
}

const EVENTS: [&str; 2] = ["workqueue_queue_work", "workqueue_execute_start"];

impl PsockWorks {
    /// Starts tracing; `None` where tracefs can't be mounted or is not writable.
    pub fn start() -> Option<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        mount_tracefs();
        let dir = std::path::Path::new("/sys/kernel/tracing/instances").join(format!(
            "lb-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir(&dir).ok()?;
        let me = Self { dir };
        let set = |file: &str, v: &str| std::fs::write(me.dir.join(file), v);
        set("trace_clock", "mono").ok()?;
        set("buffer_size_kb", "8192").ok()?;
        for e in EVENTS {
            let ev = format!("events/workqueue/{e}");
            set(
                &format!("{ev}/filter"),
                "function.function == sk_psock_backlog",
            )
            .ok()?;
            set(&format!("{ev}/enable"), "1").ok()?;
        }
        Some(me)
    }

    /// The works that waited more than `least` seconds between their queueing and their start,
    /// as wall-clock spans.
    pub fn waits(&self, least: f64) -> Vec<Span> {
        let trace = std::fs::read_to_string(self.dir.join("trace")).unwrap_or_default();
        let to_unix = unix_now() - mono_now();
        let mut queued: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
        let mut waits = Vec::new();
        for l in trace.lines() {
            // `... 4339.420432: workqueue_queue_work: work struct=0000…: function=…`
            let Some((head, event)) = l.split_once(": workqueue_") else {
                continue;
            };
            let Some(at) = head.rsplit(' ').next().and_then(|t| t.parse::<f64>().ok()) else {
                continue;
            };
            let Some(work) = event
                .split_once("work struct")
                .and_then(|(_, r)| r.trim_start_matches(['=', ' ']).split([':', ' ']).next())
            else {
                continue;
            };
            if event.starts_with("queue_work") {
                queued.entry(work).or_insert(at);
            } else if let Some(q) = queued.remove(work) {
                if at - q > least {
                    waits.push(Span {
                        from: q + to_unix,
                        to: at + to_unix,
                    });
                }
            }
        }
        waits
    }
}

impl Drop for PsockWorks {
    fn drop(&mut self) {
        for e in EVENTS {
            let _ = std::fs::write(self.dir.join(format!("events/workqueue/{e}/enable")), "0");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
