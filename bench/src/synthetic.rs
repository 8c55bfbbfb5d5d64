//! The synthetic workloads, run with the bench's own load generator: bulk, connection rate,
//! syscalls and instructions per short connection, round trip and idle connections, one
//! function each over the running targets (each with its own sink and echo backend).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use crate::data::Verify;
use crate::report::{Metric, Results};
use crate::targets::{self, Backends, Kind, Programs, Running, Tuning};
use crate::{instructions, load, procfs, syscalls, Plan};

/// A running target with its own backends.
pub type Target = (Kind, load::Sink, load::Echo, Running);

/// What every workload reads and records.
pub struct Ctx<'a> {
    pub p: Plan,
    pub rt: &'a tokio::runtime::Runtime,
    pub prog: Progress,
    pub res: Results,
    /// Source-address epoch: each load run uses fresh client addresses.
    pub epoch: u32,
    pub programs: &'a Programs,
    pub tmp: &'a Path,
    pub tuning: Tuning,
    /// Idle connections held in the concurrency workload.
    pub conns: usize,
    /// Concurrent clients of the connection-rate workload.
    pub clients: usize,
}

/// Progress on stderr: step count, elapsed time, what ran and what it gave.
pub struct Progress {
    pub t0: Instant,
    pub step: usize,
    pub total: usize,
}

impl Progress {
    pub fn line(&mut self, what: &str) {
        self.step += 1;
        eprintln!(
            "[{:>3}/{} {:>5.0}s] {what}",
            self.step,
            self.total,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// Short connections counted per target by the `syscalls` workload (strace slows each down,
/// so a few hundred, in series).
const SYSCALL_CONNS: usize = 300;

/// Short connections counted per target by the `instructions` workload (callgrind runs the
/// proxy about 50 times slower: 400 take about 2 s).
const INSTR_CONNS: usize = 400;

/// Bulk: 1 and 8 streams to the sink, a warm-up with a full integrity check first.
pub fn bulk(c: &mut Ctx, running: &mut [Target]) {
    for (streams, gbit, cpu) in [
        (1usize, Metric::Bulk1Gbit, Metric::Bulk1Cpu),
        (8, Metric::Bulk8Gbit, Metric::Bulk8Cpu),
    ] {
        // Repetition 0 is the warm-up and full-integrity pass (xxh3 of every byte); the
        // measured ones check block stamps only, so hashing never bounds the sink.
        for rep in 0..=c.p.reps {
            for (k, sink, _, r) in running.iter_mut() {
                let verify = if rep == 0 {
                    Verify::Full
                } else {
                    Verify::Stamps
                };
                let what = format!(
                    "bulk {streams} stream(s), {}, {}",
                    if rep == 0 {
                        "warm-up + xxh3 check".to_string()
                    } else {
                        format!("rep {rep}/{}", c.p.reps)
                    },
                    k.name()
                );
                match load::bulk(sink, r.addrs.bulk, streams, c.p.bulk_bytes, verify) {
                    Ok(s) => {
                        c.prog.line(&format!(
                            "{what}: {:.2} Gbit/s, {:.2} CPU s/GiB",
                            s.gbit_s, s.cpu_s_per_gib
                        ));
                        if rep > 0 {
                            c.res.push(gbit, *k, s.gbit_s);
                            c.res.push(cpu, *k, s.cpu_s_per_gib);
                        }
                    }
                    Err(e) => {
                        c.prog.line(&format!("{what}: FAILED: {e}"));
                        c.res.errors.push((
                            k.name(),
                            format!("bulk {streams}"),
                            with_log(&e.to_string(), r),
                        ));
                    }
                }
                alive(r, &mut c.res);
            }
        }
    }
}

/// Connection rate: short connections from many clients.
pub fn rate(c: &mut Ctx, running: &mut [Target]) {
    for rep in 1..=c.p.reps {
        for (k, _, echo, r) in running.iter_mut() {
            c.epoch += 1;
            let cpu = CpuMeter::start(r.pid());
            let s = load::conn_rate(c.rt, r.addrs.echo, c.clients, c.p.rate_dur, c.epoch);
            let (proxy_s, machine_s) = cpu.stop();
            c.prog.line(&format!(
                "connection rate, rep {rep}/{}, {}: {:.0} conn/s, {} failures{}",
                c.p.reps,
                k.name(),
                s.conns_per_s,
                s.failures,
                s.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ));
            c.res.push(Metric::ConnRate, *k, s.conns_per_s);
            if s.conns > 0 {
                let us_each = |secs: f64| secs * 1e6 / s.conns as f64;
                if let Some(p) = proxy_s {
                    c.res.push(Metric::ConnProxyUser, *k, us_each(p.user));
                    c.res.push(Metric::ConnProxySys, *k, us_each(p.system));
                }
                if let Some(m) = machine_s {
                    c.res.push(Metric::ConnMachineCpu, *k, us_each(m));
                }
            }
            c.res.push(Metric::ConnFailures, *k, s.failures as f64);
            if let Some(e) = s.first_error {
                c.res.errors.push((k.name(), "connection rate".into(), e));
            }
            let _ = echo;
            alive(r, &mut c.res);
            // The clients' TIME_WAIT is on other source addresses (see `load::source_ip`),
            // the proxy's to the echo server is not: the next proxy connects there too.
            crate::targets::ports_reusable();
        }
    }
}

/// CPU time spent over a load run: the proxy's own (its process tree, user + system) and the
/// whole machine's (the proxy, the load's clients and servers, softirqs and kworkers).
struct CpuMeter {
    pid: Option<u32>,
    proxy: Option<procfs::ProcCpu>,
    machine: Option<procfs::CpuTimes>,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> Self {
        CpuMeter {
            pid,
            proxy: pid.and_then(|p| procfs::tree_cpu(p).ok()),
            machine: procfs::cpu_times().ok(),
        }
    }

    /// (the proxy's CPU, the machine's busy CPU seconds) since [`CpuMeter::start`]; `None`
    /// where `/proc` could not be read (or there is no proxy process: the direct target).
    fn stop(self) -> (Option<procfs::ProcCpu>, Option<f64>) {
        let proxy = match (self.pid, self.proxy) {
            (Some(p), Some(before)) => procfs::tree_cpu(p).ok().map(|now| now.since(before)),
            _ => None,
        };
        let machine = self
            .machine
            .and_then(|before| Some(before.busy_seconds_until(procfs::cpu_times().ok()?)));
        (proxy, machine)
    }
}

/// Syscalls per short connection, counted with strace on the proxy.
pub fn syscalls(c: &mut Ctx, running: &mut [Target]) {
    for (k, _, _, r) in running.iter_mut() {
        let Some(pid) = r.pid() else {
            c.prog.line(&format!(
                "syscalls, {}: no proxy process, skipped",
                k.name()
            ));
            continue;
        };
        match syscalls::per_short_conn(pid, r.addrs.echo, SYSCALL_CONNS) {
            Ok(per) => {
                c.prog.line(&format!(
                    "syscalls, {}: {per:.1} per short connection ({SYSCALL_CONNS} in series)",
                    k.name()
                ));
                c.res.push(Metric::SyscallsPerConn, *k, per);
            }
            Err(e) => {
                c.prog.line(&format!("syscalls, {}: FAILED: {e}", k.name()));
                c.res.errors.push((k.name(), "syscalls".into(), e));
            }
        }
        alive(r, &mut c.res);
    }
}

/// User-space instructions per short connection: a second instance of each proxy, started
/// under callgrind with the target's echo backend, counted and killed.
pub fn instructions(c: &mut Ctx, running: &mut [Target]) {
    let dir = c.tmp.join("instructions");
    for (k, _, echo, r) in running.iter_mut() {
        if r.pid().is_none() {
            c.prog.line(&format!(
                "instructions, {}: no proxy process, skipped",
                k.name()
            ));
            continue;
        }
        match count_instructions(c, *k, &dir, echo.addr) {
            Ok(per) => {
                c.prog.line(&format!(
                    "instructions, {}: {per:.0} per short connection ({INSTR_CONNS} in series, \
                     callgrind)",
                    k.name()
                ));
                c.res.push(Metric::InstrPerConn, *k, per);
            }
            Err(e) => {
                c.prog
                    .line(&format!("instructions, {}: FAILED: {e}", k.name()));
                c.res.errors.push((k.name(), "instructions".into(), e));
            }
        }
        alive(r, &mut c.res);
    }
}

/// Starts `k` under callgrind (its files in `dir/<kind>`), forwarding to `echo`, and counts;
/// the instance is killed on return, whatever happened.
fn count_instructions(c: &Ctx, k: Kind, dir: &Path, echo: SocketAddr) -> Result<f64, String> {
    let out = dir.join(k.name());
    let command = instructions::valgrind_command(&out);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let wrapper = instructions::wrapper(&command);
    let r = targets::start_wrapped(k, c.programs, dir, &[("echo", echo)], c.tuning, wrapper)
        .map_err(|e| match &e {
            targets::TargetError::Spawn { source, .. } => format!(
                "under callgrind: {e}: {source} (Debian's `valgrind`; `cargo xtask setup` \
                 installs it)"
            ),
            _ => format!("under callgrind: {e}"),
        })?;
    let pid = r.pid().ok_or("no proxy process")?;
    instructions::per_short_conn(pid, &out, r.fronts[0], INSTR_CONNS)
        .map_err(|e| with_log(&e.to_string(), &r))
}

/// Round trip on a held connection.
pub fn latency(c: &mut Ctx, running: &mut [Target]) {
    for rep in 1..=c.p.reps {
        for (k, _, _, r) in running.iter_mut() {
            match load::latency(r.addrs.echo, c.p.lat_dur) {
                Ok(s) => {
                    c.prog.line(&format!(
                        "latency, rep {rep}/{}, {}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({} round trips)",
                        c.p.reps,
                        k.name(),
                        s.p50_us,
                        s.p99_us,
                        s.p999_us,
                        s.count
                    ));
                    c.res.push(Metric::LatP50, *k, s.p50_us);
                    c.res.push(Metric::LatP99, *k, s.p99_us);
                    c.res.push(Metric::LatP999, *k, s.p999_us);
                }
                Err(e) => {
                    c.prog.line(&format!("latency, {}: FAILED: {e}", k.name()));
                    c.res
                        .errors
                        .push((k.name(), "latency".into(), with_log(&e.to_string(), r)));
                }
            }
            alive(r, &mut c.res);
        }
    }
}

/// Idle connections held against a freshly started proxy: RSS growth, then one exchange each.
pub fn concurrency(c: &mut Ctx, running: &mut [Target]) {
    for rep in 1..=c.p.conc_reps {
        for (k, sink, echo, r) in running.iter_mut() {
            // A fresh process each time: memory an allocator kept from earlier connections
            // would hide the growth.
            if *k != Kind::Direct {
                let be = Backends {
                    sink: sink.addr,
                    echo: echo.addr,
                };
                r.stop();
                match targets::start(*k, c.programs, c.tmp, be, c.tuning) {
                    Ok(new) => *r = new,
                    Err(e) => {
                        c.prog
                            .line(&format!("concurrency, {}: restart FAILED: {e}", k.name()));
                        c.res
                            .errors
                            .push((k.name(), "concurrency".into(), e.to_string()));
                        continue;
                    }
                }
            }
            c.epoch += 1;
            match load::concurrency(c.rt, r.addrs.echo, echo, r.pid(), c.conns, c.epoch) {
                Ok(s) => {
                    c.prog.line(&format!(
                        "concurrency {} idle, rep {rep}/{}, {}: RSS/conn {}, exchange {:.0} ms, {} failures{}",
                        c.conns,
                        c.p.conc_reps,
                        k.name(),
                        s.rss_per_conn.map_or("n/a".into(), |b| format!("{b:.0} B")),
                        s.exchange_ms,
                        s.failures,
                        s.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
                    ));
                    if let Some(b) = s.rss_per_conn {
                        c.res.push(Metric::RssPerConn, *k, b);
                    }
                    c.res.push(Metric::ConcExchangeMs, *k, s.exchange_ms);
                    c.res.push(Metric::ConcFailures, *k, s.failures as f64);
                    if let Some(e) = s.first_error {
                        c.res.errors.push((k.name(), "concurrency".into(), e));
                    }
                }
                Err(e) => {
                    c.prog
                        .line(&format!("concurrency, {}: FAILED: {e}", k.name()));
                    c.res.errors.push((
                        k.name(),
                        "concurrency".into(),
                        with_log(&e.to_string(), r),
                    ));
                }
            }
            alive(r, &mut c.res);
        }
    }
}

/// An error message with the proxy's recent output appended.
fn with_log(e: &str, r: &Running) -> String {
    let log = r.log_tail();
    if log.is_empty() {
        e.to_string()
    } else {
        format!("{e}\n--- {} output ---\n{log}", r.kind.name())
    }
}

/// Records a proxy that died under load (its later runs then fail and say so).
fn alive(r: &mut Running, res: &mut Results) {
    if let Err(e) = r.check_alive() {
        eprintln!("bench: {e}");
        res.errors.push((r.kind.name(), "process".into(), e));
    }
}
