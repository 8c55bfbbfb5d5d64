//! Which flows enter the kernel maps: the one home of that decision ([`enter_maps`]).
//!
//! Why `--dataplane auto` does not put every flow into the maps (measured on Linux 6.18, two
//! vCPUs, iperf3 through lb on loopback; README, "Data plane"):
//! - A direction whose credit runs out (its receiver, or the kworker that sends from the
//!   peer's psock queue, fell behind by more than the credit) pauses: the program passes its
//!   skbs and lb copies them ([`super::drain`]). Before the resume handshake of
//!   `drain_passed` (peek, publish, then consume), a sender that kept the source's queue
//!   non-empty kept the direction in that copy loop for the rest of the flow: 12,000–14,000
//!   `recvfrom` of ~256 KiB in 5 s, 6–7.5 Gbit/s where splice made 7–14, and all but 0.03 of
//!   7.7 GB passed instead of redirected. It now resumes, but each credit's end pauses it
//!   again and a pause copies the sender's whole window: one iperf3 stream still measured
//!   7.7–8.1 Gbit/s on sockmap against 8.3–15.2 on splice (3 alternating rounds, 10 s, two
//!   vCPUs shared with other builds), 3.0–8.5 against 5.1–6.3 with a busy core. So the rules
//!   below stay.
//! - Under a busy core the backlog kworker's wake-up latency has a tail to 16–256 ms (none of
//!   the `-EAGAIN` one-jiffy re-arms were seen), which is what runs the credit out.
//! - A flow can't leave the maps without risking its bytes: deleting the source from `SOCKS`
//!   clears the psock's verdict program (`sk_psock_stop_verdict`) under `sk_callback_lock`,
//!   which `sk_psock_verdict_data_ready` does not take, so an skb being read at that moment
//!   meets no program, and `sk_psock_verdict_recv` applies `__SK_DROP` to it (`tcp_eat_skb`,
//!   `sock_drop`: gone, its sequence space consumed); deleting it from both maps drops the
//!   psock, whose `sk_psock_destroy` purges both its queues (`__sk_psock_zap_ingress`). So
//!   the choice is made before the insert, and only there.
//!
//! - On two vCPUs the kernel path lost to splice in every run on record (2026-12-02/03, bench
//!   and iperf3, quiet and with a busy core): one stream 4.6–15.3 Gbit/s in the maps against
//!   20.2–24.7 on splice, 8 streams 8.9–20.5 against 20.8–28.4, and more machine CPU per GiB
//!   (1.0–2.4 s against 0.6–0.7). The backlog kworker that sends every redirected skb needs a
//!   CPU beside the sender, the receiver and lb's thread; with two it waits its turn, the
//!   credit runs out, and the direction spends its life paused, copied by userspace.
//!
//! So with `auto` a flow enters the maps only when the process may run on at least
//! [`MIN_CPUS`] CPUs, it is bulk (its splice phase carried at
//! least [`BULK_BYTES`]), the CPUs are not contended (the kernel's pressure stall information,
//! `/proc/pressure/cpu` `some avg10`, below [`CPU_PRESSURE_MAX`] %: a runnable task waiting
//! for a CPU is what delays the kworker), and its thread has seen no in-kernel direction pause
//! for [`HOLD_OFF`]; every other flow stays on splice for its whole life. `--dataplane
//! sockmap` keeps the old rule: every flow still open at its hand-over point enters.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The one direction of a flow the kernel carries; the other stays on splice.
///
/// Never both: a socket that is a source in `SOCKS` (its data goes through the program) and
/// also a redirect target (the other direction's skbs wait in its psock's `ingress_skb` until
/// the backlog worker sends them) has what the program *passes* on it queued behind those
/// skbs, charged to no receive buffer: its TCP window stays open, and a client that pushes and
/// doesn't read got a whole 256 MiB push into the kernel's queues whenever the worker ran late
/// (module header of [`super`]). With one direction in the maps, no socket is both: the
/// source's passed skbs are charged to it, and the target only sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Client to server (an upload).
    Up,
    /// Server to client (a download, an answer).
    Down,
}

/// Which direction of a flow enters the maps: the one that carried more before its hand-over
/// point (`read`: bytes read from the client and from the server so far); the download when
/// they are equal or nothing was read yet (a flow entering at once), as answers are where the
/// bulk of most traffic is.
pub fn kernel_way((from_client, from_server): (u64, u64)) -> Way {
    if from_client > from_server {
        Way::Up
    } else {
        Way::Down
    }
}

/// How a process's sockmap plane chooses the flows that enter the maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choosing {
    /// `--dataplane sockmap`: every flow still open at its hand-over point.
    #[default]
    Every,
    /// `--dataplane auto`: by what the thread saw ([`enter_maps`]).
    ByEvidence,
}

/// Bytes (both ways) a flow's splice phase must have carried for it to count as bulk: 256 KiB
/// in the default 20 ms window is 100 Mbit/s. Request/answer traffic (a database connection,
/// Redis) stays far below it.
pub const BULK_BYTES: u64 = 256 << 10;

/// CPU pressure (`some avg10`, % of the last 10 s in which a runnable task waited for a CPU)
/// from which no flow enters the maps. With a busy core beside iperf3 on the two vCPUs it was
/// 95 %; the kworker's wake-up latency then had its 16–256 ms tail.
pub const CPU_PRESSURE_MAX: f32 = 20.0;

/// How often a thread reads `/proc/pressure/cpu` (at most; only when a flow is decided).
const PRESSURE_EVERY: Duration = Duration::from_secs(1);

/// The fewest CPUs the process may run on for `auto` to put flows into the maps: one each for
/// the sender, the receiver, lb's thread and the backlog kworker. Measured: with 2 the maps
/// always lost to splice (module header); from 4 on not measured here (this machine has 2), so
/// the earlier rules decide there, as they did everywhere before.
pub const MIN_CPUS: usize = 4;

/// Where a thread learns what it knows of the machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Machine {
    /// The CPU pressure from `/proc/pressure/cpu` (none on a kernel without PSI: not a reason
    /// to stay out), the CPUs from the process's affinity and CPU quota
    /// (`available_parallelism`).
    Proc,
    /// Fixed values (tests): CPU pressure in %, and CPUs.
    Fixed { pressure: f32, cpus: usize },
}

/// How a thread chooses: [`Choosing`], what counts as bulk (bytes, both ways, in a flow's
/// splice phase: [`BULK_BYTES`] but in tests), and where it learns the CPU pressure and count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub choosing: Choosing,
    pub bulk_bytes: u64,
    pub machine: Machine,
}

/// Whether `cpus` (`None`: unknown, not a reason to stay out) are too few for the kernel path
/// ([`MIN_CPUS`]): the one home of that rule, for [`enter_maps`] and the start line.
pub fn too_few_cpus(cpus: Option<usize>) -> bool {
    cpus.is_some_and(|n| n < MIN_CPUS)
}

/// The CPUs this process may run on, read once (`None`: unknown).
pub fn process_cpus() -> Option<usize> {
    static CPUS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().ok().map(usize::from))
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            choosing: Choosing::Every,
            bulk_bytes: BULK_BYTES,
            machine: Machine::Proc,
        }
    }
}

/// `some avg10` of `/proc/pressure/cpu`, in %.
fn proc_cpu_pressure() -> Option<f32> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    parse_some_avg10(&text)
}

fn parse_some_avg10(text: &str) -> Option<f32> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?;
    v.parse().ok()
}

/// How long after an in-kernel direction of the thread paused no new flow enters the maps:
/// longer than the spells of the database runs (~25 s).
pub const HOLD_OFF: Duration = Duration::from_secs(30);

/// What [`enter_maps`] decided for one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Into the maps.
    Enter,
    /// Stays on splice: too few bytes in its splice phase.
    Interactive,
    /// Stays on splice: an in-kernel direction of this thread paused less than
    /// [`HOLD_OFF`] ago.
    KernelPaused,
    /// Stays on splice: the CPUs are contended ([`CPU_PRESSURE_MAX`]).
    CpuBusy,
    /// Stays on splice: the process runs on fewer than [`MIN_CPUS`] CPUs.
    FewCpus,
}

/// What the thread knows of the machine when it decides.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// When an in-kernel direction of the thread last paused.
    pub last_pause: Option<Instant>,
    /// CPU pressure, `some avg10` in % (`None`: unknown).
    pub cpu_pressure: Option<f32>,
    /// CPUs the process may run on (`None`: unknown, not a reason to stay out).
    pub cpus: Option<usize>,
}

/// Whether a flow enters the maps. `moved`: bytes its splice phase carried both ways before
/// its hand-over point (`None` when it had no splice phase, `--sockmap-after 0`).
pub fn enter_maps(rule: Rule, moved: Option<u64>, seen: Seen, now: Instant) -> Verdict {
    if rule.choosing == Choosing::Every {
        return Verdict::Enter;
    }
    if seen
        .last_pause
        .is_some_and(|at| now.saturating_duration_since(at) < HOLD_OFF)
    {
        return Verdict::KernelPaused;
    }
    if seen.cpu_pressure.is_some_and(|p| p >= CPU_PRESSURE_MAX) {
        return Verdict::CpuBusy;
    }
    if too_few_cpus(seen.cpus) {
        return Verdict::FewCpus;
    }
    if moved.is_some_and(|m| m < rule.bulk_bytes) {
        return Verdict::Interactive;
    }
    Verdict::Enter
}

/// What one thread saw of its flows: when an in-kernel direction last paused, and how many
/// flows each verdict had (tests and logs read them).
#[derive(Debug, Default)]
pub struct Evidence {
    last_pause: Cell<Option<Instant>>,
    /// The last CPU pressure read, and when.
    pressure: Cell<Option<(Instant, Option<f32>)>>,
    entered: Cell<u64>,
    interactive: Cell<u64>,
    kernel_paused: Cell<u64>,
    cpu_busy: Cell<u64>,
    few_cpus: Cell<u64>,
}

impl Evidence {
    /// An in-kernel direction of this thread paused (its credit ran out) at `at`.
    pub(super) fn paused(&self, at: Instant) {
        self.last_pause.set(Some(at));
    }

    /// Decides for one flow and counts the verdict.
    pub(super) fn decide(&self, rule: Rule, moved: Option<u64>) -> Verdict {
        let now = Instant::now();
        let seen = Seen {
            last_pause: self.last_pause.get(),
            cpu_pressure: self.cpu_pressure(rule, now),
            cpus: Self::cpus(rule),
        };
        let v = enter_maps(rule, moved, seen, now);
        let n = self.counter(v);
        n.set(n.get() + 1);
        if v != Verdict::Enter {
            log::debug!("sockmap: flow stays on splice ({v:?})");
        }
        v
    }

    /// The CPUs as `rule` says (only `auto` asks).
    fn cpus(rule: Rule) -> Option<usize> {
        match rule.machine {
            _ if rule.choosing == Choosing::Every => None,
            Machine::Fixed { cpus, .. } => Some(cpus),
            Machine::Proc => process_cpus(),
        }
    }

    /// The CPU pressure as `rule` says, read at most every [`PRESSURE_EVERY`] (only `auto`
    /// reads it).
    fn cpu_pressure(&self, rule: Rule, now: Instant) -> Option<f32> {
        match rule.machine {
            _ if rule.choosing == Choosing::Every => None,
            Machine::Fixed { pressure, .. } => Some(pressure),
            Machine::Proc => match self.pressure.get() {
                Some((at, p)) if now.saturating_duration_since(at) < PRESSURE_EVERY => p,
                _ => {
                    let p = proc_cpu_pressure();
                    self.pressure.set(Some((now, p)));
                    p
                }
            },
        }
    }

    fn counter(&self, v: Verdict) -> &Cell<u64> {
        match v {
            Verdict::Enter => &self.entered,
            Verdict::Interactive => &self.interactive,
            Verdict::KernelPaused => &self.kernel_paused,
            Verdict::CpuBusy => &self.cpu_busy,
            Verdict::FewCpus => &self.few_cpus,
        }
    }

    /// Flows that got `v` on this thread so far.
    pub fn count(&self, v: Verdict) -> u64 {
        self.counter(v).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: Rule = Rule {
        choosing: Choosing::ByEvidence,
        bulk_bytes: BULK_BYTES,
        machine: Machine::Fixed {
            pressure: 0.0,
            cpus: MIN_CPUS,
        },
    };

    fn paused(at: Option<Instant>) -> Seen {
        Seen {
            last_pause: at,
            cpu_pressure: Some(0.0),
            cpus: Some(MIN_CPUS),
        }
    }

    #[test]
    fn sockmap_choice_takes_every_flow() {
        let now = Instant::now();
        for moved in [None, Some(0), Some(BULK_BYTES)] {
            assert_eq!(
                enter_maps(Rule::default(), moved, paused(Some(now)), now),
                Verdict::Enter
            );
        }
    }

    #[test]
    fn auto_takes_bulk_flows_and_leaves_small_ones() {
        let now = Instant::now();
        let by = |moved| enter_maps(AUTO, moved, paused(None), now);
        assert_eq!(by(Some(BULK_BYTES - 1)), Verdict::Interactive);
        assert_eq!(by(Some(0)), Verdict::Interactive);
        assert_eq!(by(Some(BULK_BYTES)), Verdict::Enter);
        assert_eq!(
            by(None),
            Verdict::Enter,
            "no splice phase: nothing to judge by"
        );
    }

    #[test]
    fn auto_holds_off_after_a_pause_and_then_takes_flows_again() {
        let now = Instant::now();
        let at =
            |ago: Duration| enter_maps(AUTO, Some(BULK_BYTES), paused(now.checked_sub(ago)), now);
        assert_eq!(at(Duration::ZERO), Verdict::KernelPaused);
        assert_eq!(
            at(HOLD_OFF.saturating_sub(Duration::from_millis(1))),
            Verdict::KernelPaused
        );
        assert_eq!(at(HOLD_OFF), Verdict::Enter);
        // A pause wins over the size of the flow: no flow enters.
        assert_eq!(
            enter_maps(AUTO, Some(1), paused(Some(now)), now),
            Verdict::KernelPaused
        );
    }

    #[test]
    fn auto_leaves_flows_on_splice_while_the_cpus_are_contended() {
        let now = Instant::now();
        let at = |p| {
            let seen = Seen {
                last_pause: None,
                cpu_pressure: p,
                cpus: Some(MIN_CPUS),
            };
            enter_maps(AUTO, Some(BULK_BYTES), seen, now)
        };
        assert_eq!(at(Some(95.0)), Verdict::CpuBusy);
        assert_eq!(at(Some(CPU_PRESSURE_MAX)), Verdict::CpuBusy);
        assert_eq!(at(Some(CPU_PRESSURE_MAX - 0.1)), Verdict::Enter);
        assert_eq!(at(None), Verdict::Enter, "a kernel without PSI");
    }

    #[test]
    fn auto_leaves_flows_on_splice_with_fewer_cpus_than_the_kernel_path_needs() {
        let now = Instant::now();
        let with = |cpus| {
            let seen = Seen {
                cpus,
                ..paused(None)
            };
            enter_maps(AUTO, Some(BULK_BYTES), seen, now)
        };
        assert_eq!(with(Some(1)), Verdict::FewCpus);
        assert_eq!(with(Some(2)), Verdict::FewCpus);
        assert_eq!(with(Some(MIN_CPUS - 1)), Verdict::FewCpus);
        assert_eq!(with(Some(MIN_CPUS)), Verdict::Enter);
        assert_eq!(with(None), Verdict::Enter, "unknown");
        // `--dataplane sockmap` takes every flow whatever the machine.
        let seen = Seen {
            cpus: Some(1),
            ..paused(None)
        };
        assert_eq!(
            enter_maps(Rule::default(), Some(BULK_BYTES), seen, now),
            Verdict::Enter
        );
    }

    #[test]
    fn the_busier_direction_enters_the_maps_and_the_download_by_default() {
        assert_eq!(kernel_way((0, 0)), Way::Down, "nothing read yet: at once");
        assert_eq!(kernel_way((5, 5)), Way::Down);
        assert_eq!(kernel_way((4, 5 << 20)), Way::Down);
        assert_eq!(kernel_way((5 << 20, 4)), Way::Up);
    }

    #[test]
    fn reads_some_avg10_of_proc_pressure() {
        let text = "some avg10=95.26 avg60=96.15 avg300=97.44 total=32702768213\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_some_avg10(text), Some(95.26));
        assert_eq!(parse_some_avg10("full avg10=1.00\n"), None);
        assert_eq!(parse_some_avg10("some avg10=x\n"), None);
    }

    #[test]
    fn evidence_counts_each_verdict() {
        let e = Evidence::default();
        assert_eq!(e.decide(AUTO, Some(1)), Verdict::Interactive);
        assert_eq!(e.decide(AUTO, Some(BULK_BYTES)), Verdict::Enter);
        e.paused(Instant::now());
        assert_eq!(e.decide(AUTO, Some(BULK_BYTES)), Verdict::KernelPaused);
        let busy = Rule {
            machine: Machine::Fixed {
                pressure: CPU_PRESSURE_MAX,
                cpus: MIN_CPUS,
            },
            ..AUTO
        };
        let e2 = Evidence::default();
        assert_eq!(e2.decide(busy, Some(BULK_BYTES)), Verdict::CpuBusy);
        assert_eq!(
            [Verdict::Enter, Verdict::Interactive, Verdict::KernelPaused].map(|v| e.count(v)),
            [1, 1, 1]
        );
        assert_eq!(e2.count(Verdict::CpuBusy), 1);
        let two = Rule {
            machine: Machine::Fixed {
                pressure: 0.0,
                cpus: 2,
            },
            ..AUTO
        };
        let e3 = Evidence::default();
        assert_eq!(e3.decide(two, Some(BULK_BYTES)), Verdict::FewCpus);
        assert_eq!(e3.count(Verdict::FewCpus), 1);
    }
}
