//! `bench`: measures lb (both data planes) against HAProxy, nginx and a direct connection, in one
//! run on one machine with one load generator, and writes a markdown table (stdout), JSON and an
//! SVG chart to `target/bench/`. Run it with `cargo xtask bench [--quick]`.

mod clients;
mod data;
mod instructions;
mod load;
mod procfs;
mod report;
mod stats;
mod synthetic;
mod syscalls;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::Results;
use synthetic::Progress;
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
    /// direct,lb-sockmap,lb-splice,haproxy,nginx; lb-auto and haproxy-again are also known).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Workloads to run, comma-separated (default all):
    /// bulk,rate,latency,concurrency,syscalls,instructions (callgrind),clients (the real clients).
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
    /// Real clients' targets, comma-separated (default
    /// lb-auto,lb-splice,lb-sockmap,haproxy,haproxy-again,direct; nginx is also known).
    /// haproxy-again is a second HAProxy with the same config: the control, HAProxy against
    /// itself.
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

const WORKLOADS: [&str; 7] = [
    "bulk",
    "rate",
    "latency",
    "concurrency",
    "syscalls",
    "instructions",
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

/// The markdown on stdout and in `results.md`, the JSON and the chart; `clients.json` when the
/// real clients ran.
fn write_outputs(
    args: &Args,
    res: Option<&Results>,
    real: Option<&clients::Results>,
    t0: Instant,
) -> Result<()> {
    let mut md = res.map(report::markdown).unwrap_or_default();
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
    let md_path = args.out.join("results.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let mut wrote = vec![md_path];
    if let Some(res) = res {
        let json_path = args.out.join("results.json");
        let svg_path = args.out.join("results.svg");
        let j = serde_json::to_string_pretty(&report::json(res)).context("JSON")?;
        std::fs::write(&json_path, j)
            .with_context(|| format!("writing {}", json_path.display()))?;
        std::fs::write(&svg_path, report::svg(res))
            .with_context(|| format!("writing {}", svg_path.display()))?;
        wrote.extend([json_path, svg_path]);
    }
    if real.is_some() {
        wrote.push(args.out.join("clients.json"));
    }
    let wrote: Vec<String> = wrote.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "bench: done in {:.0} s; wrote {}",
        t0.elapsed().as_secs_f64(),
        wrote.join(", ")
    );
    Ok(())
}

/// Starts each of `kinds` with its own sink and echo backend; a target that can't start is
/// recorded as missing.
fn start_synthetic(
    kinds: &[Kind],
    rt: &tokio::runtime::Runtime,
    programs: &Programs,
    tmp: &std::path::Path,
    tuning: Tuning,
    res: &mut Results,
) -> Result<Vec<synthetic::Target>> {
    // Each target gets its own sink and echo backend: no TIME_WAIT or backlog is shared.
    let mut running: Vec<(Kind, load::Sink, load::Echo, Running)> = Vec::new();
    for &k in kinds {
        let sink = load::Sink::start()?;
        let echo = load::Echo::start(rt.handle())?;
        let be = Backends {
            sink: sink.addr,
            echo: echo.addr,
        };
        match targets::start(k, programs, tmp, be, tuning) {
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
    Ok(running)
}

/// How many progress lines the synthetic workloads print for `n` targets.
fn progress_steps(workloads: &[&str], n: usize, p: Plan) -> usize {
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
    if has("instructions") {
        total += n;
    }
    total
}

/// `--targets`, or the synthetic workloads' default targets.
fn synthetic_targets(args: &Args) -> Result<Vec<Kind>> {
    if args.targets.is_empty() {
        return Ok(Kind::SYNTHETIC.to_vec());
    }
    args.targets
        .iter()
        .map(|t| Kind::from_name(t).with_context(|| format!("--targets: unknown target '{t}'")))
        .collect()
}

/// `--workloads` in run order, or all of them.
fn chosen_workloads(args: &Args) -> Result<Vec<&'static str>> {
    if args.workloads.is_empty() {
        return Ok(WORKLOADS.to_vec());
    }
    for w in &args.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            bail!(
                "--workloads: unknown workload '{w}' (one of {})",
                WORKLOADS.join(",")
            );
        }
    }
    Ok(WORKLOADS
        .into_iter()
        .filter(|w| args.workloads.iter().any(|a| a == w))
        .collect())
}

fn run(args: &Args) -> Result<()> {
    let p = plan(args);
    let nofile = raise_nofile();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let kinds = synthetic_targets(args)?;
    let workloads = chosen_workloads(args)?;
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
        "bench: workloads {}; synthetic: {} targets, {} repetitions; real clients: {} targets, \
         {} round(s) of {} s per variant; files in {}",
        workloads.join(","),
        kinds.len(),
        p.reps,
        client_plan.targets.len(),
        client_plan.rounds,
        client_plan.secs,
        tmp.display()
    );

    let synthetic = workloads.iter().any(|w| *w != "clients");
    let mut running = if synthetic {
        start_synthetic(&kinds, &rt, &programs, &tmp, tuning, &mut res)?
    } else {
        Vec::new()
    };

    let has = |w: &str| workloads.contains(&w);
    let total = progress_steps(&workloads, running.len(), p);
    let mut c = synthetic::Ctx {
        p,
        rt: &rt,
        prog: Progress {
            t0: Instant::now(),
            step: 0,
            total,
        },
        res,
        epoch: 0,
        programs: &programs,
        tmp: &tmp,
        tuning,
        conns,
        clients: args.clients,
    };

    if has("bulk") {
        synthetic::bulk(&mut c, &mut running);
    }
    if has("rate") {
        synthetic::rate(&mut c, &mut running);
    }
    if has("syscalls") {
        synthetic::syscalls(&mut c, &mut running);
    }
    if has("instructions") {
        synthetic::instructions(&mut c, &mut running);
    }
    if has("latency") {
        synthetic::latency(&mut c, &mut running);
    }
    if has("concurrency") {
        synthetic::concurrency(&mut c, &mut running);
    }
    drop(running); // kills the proxies
    let (res, prog) = (c.res, c.prog);
    let real = has("clients").then(|| clients::run(&client_plan, &programs, &tmp));
    let real_failed = real.as_ref().is_some_and(|r| !r.errors.is_empty());
    if res.errors.is_empty() && !real_failed {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        eprintln!("bench: proxy configs and logs kept in {}", tmp.display());
    }

    write_outputs(args, synthetic.then_some(&res), real.as_ref(), prog.t0)
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
    fn the_control_is_a_real_client_default_only() {
        let args = Args::parse_from(["bench"]);
        let defaults = client_plan(&args).unwrap().targets;
        assert_eq!(
            defaults,
            [
                Kind::LbAuto,
                Kind::LbSplice,
                Kind::LbSockmap,
                Kind::Haproxy,
                Kind::HaproxyAgain,
                Kind::Direct
            ]
        );
        assert!(!synthetic_targets(&args)
            .unwrap()
            .contains(&Kind::HaproxyAgain));
        // A list given is run as given: the control only when named.
        let given = |list| {
            let a = Args::parse_from(["bench", "--client-targets", list, "--targets", list]);
            (
                client_plan(&a).unwrap().targets,
                synthetic_targets(&a).unwrap(),
            )
        };
        let two = vec![Kind::LbAuto, Kind::Haproxy];
        assert_eq!(given("lb-auto,haproxy"), (two.clone(), two));
        let three = vec![Kind::LbAuto, Kind::Haproxy, Kind::HaproxyAgain];
        assert_eq!(
            given("lb-auto,haproxy,haproxy-again"),
            (three.clone(), three)
        );
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
