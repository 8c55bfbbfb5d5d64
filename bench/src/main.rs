//! `bench`: measures lb (both data planes) against HAProxy, nginx and a direct connection, in one
//! run on one machine with one load generator, and writes a markdown table (stdout), JSON and an
//! SVG chart to `target/bench/`. Run it with `cargo xtask bench [--quick]`.

mod clients;
mod data;
mod load;
mod procfs;
mod report;
mod stats;
mod syscalls;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use data::Verify;
use report::{Metric, Results};
use targets::{Backends, Kind, Programs, Running, Tuning};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "lb against HAProxy, nginx and the wire: bulk, connection rate, latency, concurrency."
)]
struct Args {
    /// A shorter run (< 2 minutes): fewer repetitions, less data, shorter phases.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each workload per target (default 5, quick 2).
    #[arg(long)]
    reps: Option<usize>,
    /// Targets of the synthetic workloads, comma-separated (default
    /// direct,lb-sockmap,lb-splice,haproxy,nginx; lb-auto is also known).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Workloads to run, comma-separated (default all): bulk,rate,latency,concurrency.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// The lb binary.
    #[arg(long, default_value = "target/release/lb")]
    lb: PathBuf,
    /// Where the JSON and SVG go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Idle connections held in the concurrency workload.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Concurrent clients in the connection-rate workload.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Proxy threads (HAProxy/lb `nbthread`, nginx `worker_processes`); default: the CPU count.
    #[arg(long)]
    threads: Option<usize>,
    /// Real clients: alternating rounds per variant (default 3, quick 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Real clients: seconds per client run (default 1).
    #[arg(long)]
    round_secs: Option<u64>,
    /// Real clients to run, comma-separated (default all): iperf3,redis,sysbench,pgbench.
    #[arg(long, value_delimiter = ',')]
    client_tools: Vec<String>,
    /// Real clients' targets, comma-separated (default lb-auto,lb-splice,lb-sockmap,haproxy,direct;
    /// nginx is also known).
    #[arg(long, value_delimiter = ',')]
    client_targets: Vec<String>,
    /// Real clients without the busy-core variant (quiet rounds only).
    #[arg(long)]
    no_busy: bool,
}

/// Sizes and durations of one run.
#[derive(Clone, Copy, Debug)]
struct Plan {
    reps: usize,
    bulk_bytes: u64,
    rate_dur: Duration,
    lat_dur: Duration,
    conc_reps: usize,
}

fn plan(args: &Args) -> Plan {
    let mut p = if args.quick {
        Plan {
            reps: 2,
            bulk_bytes: 512 << 20,
            rate_dur: Duration::from_millis(1500),
            lat_dur: Duration::from_secs(1),
            conc_reps: 1,
        }
    } else {
        Plan {
            reps: 5,
            bulk_bytes: 2 << 30,
            rate_dur: Duration::from_secs(3),
            lat_dur: Duration::from_secs(2),
            conc_reps: 3,
        }
    };
    if let Some(r) = args.reps {
        p.reps = r.max(1);
        p.conc_reps = p.conc_reps.min(p.reps);
    }
    p
}

const WORKLOADS: [&str; 6] = [
    "bulk",
    "rate",
    "latency",
    "concurrency",
    "syscalls",
    "clients",
];

/// The real-client part's plan from the arguments.
fn client_plan(args: &Args) -> Result<clients::Plan> {
    let tools = if args.client_tools.is_empty() {
        clients::Tool::ALL.to_vec()
    } else {
        args.client_tools
            .iter()
            .map(|t| {
                clients::Tool::from_name(t).with_context(|| {
                    format!("--client-tools: unknown tool '{t}' (iperf3, redis, sysbench, pgbench)")
                })
            })
            .collect::<Result<_>>()?
    };
    let targets = if args.client_targets.is_empty() {
        clients::Plan::TARGETS.to_vec()
    } else {
        args.client_targets
            .iter()
            .map(|t| {
                Kind::from_name(t)
                    .with_context(|| format!("--client-targets: unknown target '{t}'"))
            })
            .collect::<Result<_>>()?
    };
    let mut variants = vec![clients::Variant::Quiet];
    if !args.no_busy {
        variants.push(clients::Variant::BusyCore);
    }
    Ok(clients::Plan {
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        secs: args.round_secs.unwrap_or(1).max(1),
        tools,
        targets,
        variants,
    })
}

fn main() {
    targets::install_cleanup();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            targets::kill_all_children();
            eprintln!("bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Progress on stderr: step count, elapsed time, what ran and what it gave.
struct Progress {
    t0: Instant,
    step: usize,
    total: usize,
}

impl Progress {
    fn line(&mut self, what: &str) {
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

/// File descriptors to budget per idle proxied connection in the proxy. lb holds 2 (its two
/// sockets; it leases pipes from a pool only while bytes move), but HAProxy refuses to start
/// unless `RLIMIT_NOFILE` covers what it reserves for `maxconn` with `option splice-auto`
/// (sockets and pipes); 6 per connection is what it accepted here (3 did not), and every target
/// gets the same count.
const FDS_PER_CONN: usize = 6;

/// The idle connections every target can hold within `nofile` descriptors per process (the
/// proxy's: [`FDS_PER_CONN`] each; the bench's: client and echo-side socket, 2 each), rounded
/// down to hundreds; at most `wanted`.
fn conns_that_fit(wanted: usize, nofile: u64) -> usize {
    let usable = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(1000);
    let fit = (usable / FDS_PER_CONN).min(usable / 2) / 100 * 100;
    wanted.min(fit.max(100))
}

fn raise_nofile() -> u64 {
    let want: libc::rlim_t = 262_144;
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: a valid pointer to an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } == 0 {
        return want;
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to writable rlimit storage.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut cur) };
    cur.rlim_cur = cur.rlim_max;
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const cur) };
    cur.rlim_cur
}

fn about(threads: usize, p: Plan, nofile: u64) -> Vec<(String, String)> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let version = |prog: &str, arg: &str| {
        std::process::Command::new(prog)
            .arg(arg)
            .output()
            .ok()
            .map_or_else(
                || "not installed".into(),
                |o| {
                    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                    t.push_str(&String::from_utf8_lossy(&o.stderr));
                    t.lines().next().unwrap_or("").trim().to_string()
                },
            )
    };
    vec![
        ("machine".into(), format!("{cpus} vCPU, {cpu}")),
        ("kernel".into(), kernel.trim().to_string()),
        ("haproxy".into(), version("/usr/sbin/haproxy", "-v")),
        ("nginx".into(), version("/usr/sbin/nginx", "-v")),
        ("proxy threads".into(), threads.to_string()),
        (
            "repetitions".into(),
            format!("{} (concurrency {})", p.reps, p.conc_reps),
        ),
        (
            "bulk bytes per run".into(),
            format!("{} MiB", p.bulk_bytes >> 20),
        ),
        ("RLIMIT_NOFILE".into(), nofile.to_string()),
    ]
}

fn run(args: &Args) -> Result<()> {
    let p = plan(args);
    let nofile = raise_nofile();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let kinds: Vec<Kind> = if args.targets.is_empty() {
        Kind::SYNTHETIC.to_vec()
    } else {
        args.targets
            .iter()
            .map(|t| Kind::from_name(t).with_context(|| format!("--targets: unknown target '{t}'")))
            .collect::<Result<_>>()?
    };
    let workloads: Vec<&str> = if args.workloads.is_empty() {
        WORKLOADS.to_vec()
    } else {
        for w in &args.workloads {
            if !WORKLOADS.contains(&w.as_str()) {
                bail!(
                    "--workloads: unknown workload '{w}' (one of {})",
                    WORKLOADS.join(",")
                );
            }
        }
        WORKLOADS
            .into_iter()
            .filter(|w| args.workloads.iter().any(|a| a == w))
            .collect()
    };
    let client_plan = client_plan(args)?;
    let conns = conns_that_fit(args.conns, nofile);
    if conns < args.conns {
        eprintln!(
            "bench: concurrency: {} idle connections don't fit in RLIMIT_NOFILE {nofile} (the \
             hard limit here; raising it needs CAP_SYS_RESOURCE): HAProxy needs about {} fds \
             per connection to start, so every target gets {conns}",
            args.conns, FDS_PER_CONN
        );
    }
    let tuning = Tuning {
        threads,
        maxconn: u32::try_from(conns)
            .unwrap_or(u32::MAX)
            .saturating_add(2000),
    };
    let programs = Programs {
        lb: args.lb.clone(),
        ..Programs::default()
    };
    let tmp = std::env::temp_dir().join(format!("lb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;

    let mut res = Results {
        targets: kinds.clone(),
        about: {
            let mut a = about(threads, p, nofile);
            a.push(("idle connections".into(), conns.to_string()));
            a
        },
        ..Results::default()
    };
    eprintln!(
        "bench: {} targets, workloads {}, {} repetitions; proxy files in {}",
        kinds.len(),
        workloads.join(","),
        p.reps,
        tmp.display()
    );

    // Each target gets its own sink and echo backend: no TIME_WAIT or backlog is shared.
    let mut running: Vec<(Kind, load::Sink, load::Echo, Running)> = Vec::new();
    let synthetic = workloads.iter().any(|w| *w != "clients");
    for &k in kinds.iter().filter(|_| synthetic) {
        let sink = load::Sink::start()?;
        let echo = load::Echo::start(rt.handle())?;
        let be = Backends {
            sink: sink.addr,
            echo: echo.addr,
        };
        match targets::start(k, &programs, &tmp, be, tuning) {
            Ok(r) => {
                eprintln!("bench: {} up ({:?})", k.name(), r.addrs);
                running.push((k, sink, echo, r));
            }
            Err(e) => {
                eprintln!("bench: {} is MISSING: {e}", k.name());
                res.missing.insert(k.name(), e.to_string());
            }
        }
    }

    let n = running.len();
    let has = |w: &str| workloads.contains(&w);
    let mut total = 0;
    if has("bulk") {
        total += n * 2 * (p.reps + 1);
    }
    if has("rate") {
        total += n * p.reps;
    }
    if has("latency") {
        total += n * p.reps;
    }
    if has("concurrency") {
        total += n * p.conc_reps;
    }
    if has("syscalls") {
        total += n;
    }
    let mut prog = Progress {
        t0: Instant::now(),
        step: 0,
        total,
    };

    if has("bulk") {
        for (streams, gbit, cpu) in [
            (1usize, Metric::Bulk1Gbit, Metric::Bulk1Cpu),
            (8, Metric::Bulk8Gbit, Metric::Bulk8Cpu),
        ] {
            // Repetition 0 is the warm-up and full-integrity pass (xxh3 of every byte); the
            // measured ones check block stamps only, so hashing never bounds the sink.
            for rep in 0..=p.reps {
                for (k, sink, _, r) in &mut running {
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
                            format!("rep {rep}/{}", p.reps)
                        },
                        k.name()
                    );
                    match load::bulk(sink, r.addrs.bulk, streams, p.bulk_bytes, verify) {
                        Ok(s) => {
                            prog.line(&format!(
                                "{what}: {:.2} Gbit/s, {:.2} CPU s/GiB",
                                s.gbit_s, s.cpu_s_per_gib
                            ));
                            if rep > 0 {
                                res.push(gbit, *k, s.gbit_s);
                                res.push(cpu, *k, s.cpu_s_per_gib);
                            }
                        }
                        Err(e) => {
                            prog.line(&format!("{what}: FAILED: {e}"));
                            res.errors.push((
                                k.name(),
                                format!("bulk {streams}"),
                                with_log(&e.to_string(), r),
                            ));
                        }
                    }
                    alive(r, &mut res);
                }
            }
        }
    }

    let mut epoch = 0u32;
    if has("rate") {
        for rep in 1..=p.reps {
            for (k, _, echo, r) in &mut running {
                epoch += 1;
                let s = load::conn_rate(&rt, r.addrs.echo, args.clients, p.rate_dur, epoch);
                prog.line(&format!(
                    "connection rate, rep {rep}/{}, {}: {:.0} conn/s, {} failures{}",
                    p.reps,
                    k.name(),
                    s.conns_per_s,
                    s.failures,
                    s.first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                ));
                res.push(Metric::ConnRate, *k, s.conns_per_s);
                res.push(Metric::ConnFailures, *k, s.failures as f64);
                if let Some(e) = s.first_error {
                    res.errors.push((k.name(), "connection rate".into(), e));
                }
                let _ = echo;
                alive(r, &mut res);
                // TIME_WAIT of this run is on other source addresses; a short breather lets
                // the proxy's own closes finish before the next target is measured.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }

    if has("syscalls") {
        for (k, _, _, r) in &mut running {
            let Some(pid) = r.pid() else {
                prog.line(&format!(
                    "syscalls, {}: no proxy process, skipped",
                    k.name()
                ));
                continue;
            };
            match syscalls::per_short_conn(pid, r.addrs.echo, SYSCALL_CONNS) {
                Ok(per) => {
                    prog.line(&format!(
                        "syscalls, {}: {per:.1} per short connection ({SYSCALL_CONNS} in series)",
                        k.name()
                    ));
                    res.push(Metric::SyscallsPerConn, *k, per);
                }
                Err(e) => {
                    prog.line(&format!("syscalls, {}: FAILED: {e}", k.name()));
                    res.errors.push((k.name(), "syscalls".into(), e));
                }
            }
            alive(r, &mut res);
        }
    }

    if has("latency") {
        for rep in 1..=p.reps {
            for (k, _, _, r) in &mut running {
                match load::latency(r.addrs.echo, p.lat_dur) {
                    Ok(s) => {
                        prog.line(&format!(
                            "latency, rep {rep}/{}, {}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({} round trips)",
                            p.reps,
                            k.name(),
                            s.p50_us,
                            s.p99_us,
                            s.p999_us,
                            s.count
                        ));
                        res.push(Metric::LatP50, *k, s.p50_us);
                        res.push(Metric::LatP99, *k, s.p99_us);
                        res.push(Metric::LatP999, *k, s.p999_us);
                    }
                    Err(e) => {
                        prog.line(&format!("latency, {}: FAILED: {e}", k.name()));
                        res.errors
                            .push((k.name(), "latency".into(), with_log(&e.to_string(), r)));
                    }
                }
                alive(r, &mut res);
            }
        }
    }

    if has("concurrency") {
        for rep in 1..=p.conc_reps {
            for (k, sink, echo, r) in &mut running {
                // A fresh process each time: memory an allocator kept from earlier connections
                // would hide the growth.
                if *k != Kind::Direct {
                    let be = Backends {
                        sink: sink.addr,
                        echo: echo.addr,
                    };
                    r.stop();
                    match targets::start(*k, &programs, &tmp, be, tuning) {
                        Ok(new) => *r = new,
                        Err(e) => {
                            prog.line(&format!("concurrency, {}: restart FAILED: {e}", k.name()));
                            res.errors
                                .push((k.name(), "concurrency".into(), e.to_string()));
                            continue;
                        }
                    }
                }
                epoch += 1;
                match load::concurrency(&rt, r.addrs.echo, echo, r.pid(), conns, epoch) {
                    Ok(s) => {
                        prog.line(&format!(
                            "concurrency {} idle, rep {rep}/{}, {}: RSS/conn {}, exchange {:.0} ms, {} failures{}",
                            conns,
                            p.conc_reps,
                            k.name(),
                            s.rss_per_conn.map_or("n/a".into(), |b| format!("{b:.0} B")),
                            s.exchange_ms,
                            s.failures,
                            s.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
                        ));
                        if let Some(b) = s.rss_per_conn {
                            res.push(Metric::RssPerConn, *k, b);
                        }
                        res.push(Metric::ConcExchangeMs, *k, s.exchange_ms);
                        res.push(Metric::ConcFailures, *k, s.failures as f64);
                        if let Some(e) = s.first_error {
                            res.errors.push((k.name(), "concurrency".into(), e));
                        }
                    }
                    Err(e) => {
                        prog.line(&format!("concurrency, {}: FAILED: {e}", k.name()));
                        res.errors.push((
                            k.name(),
                            "concurrency".into(),
                            with_log(&e.to_string(), r),
                        ));
                    }
                }
                alive(r, &mut res);
            }
        }
    }
    drop(running); // kills the proxies
    let real = has("clients").then(|| clients::run(&client_plan, &programs, &tmp));
    let real_failed = real.as_ref().is_some_and(|r| !r.errors.is_empty());
    if res.errors.is_empty() && !real_failed {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        eprintln!("bench: proxy configs and logs kept in {}", tmp.display());
    }

    let mut md = if synthetic {
        report::markdown(&res)
    } else {
        String::new()
    };
    if let Some(r) = &real {
        md.push('\n');
        md.push_str(&r.markdown());
        let p = args.out.join("clients.json");
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let j = serde_json::to_string_pretty(&r.json()).context("JSON")?;
        std::fs::write(&p, j).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("{md}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json_path = args.out.join("results.json");
    let svg_path = args.out.join("results.svg");
    let md_path = args.out.join("results.md");
    let j = serde_json::to_string_pretty(&report::json(&res)).context("JSON")?;
    std::fs::write(&json_path, j).with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&svg_path, report::svg(&res))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    eprintln!(
        "bench: done in {:.0} s; wrote {}, {} and {}",
        prog.t0.elapsed().as_secs_f64(),
        md_path.display(),
        json_path.display(),
        svg_path.display()
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_fits_the_fd_limit() {
        assert_eq!(conns_that_fit(10_000, 262_144), 10_000);
        assert_eq!(conns_that_fit(10_000, 20_000), 3100);
        assert_eq!(conns_that_fit(500, 20_000), 500);
        assert_eq!(conns_that_fit(10_000, 1024), 100);
    }

    #[test]
    fn quick_is_shorter() {
        let a = Args::parse_from(["bench", "--quick"]);
        let q = plan(&a);
        let f = plan(&Args::parse_from(["bench"]));
        assert!(q.reps < f.reps && q.bulk_bytes < f.bulk_bytes && q.rate_dur < f.rate_dur);
        assert_eq!(f.bulk_bytes, 2 << 30);
        let r = plan(&Args::parse_from(["bench", "--reps", "1"]));
        assert_eq!((r.reps, r.conc_reps), (1, 1));
    }
}
