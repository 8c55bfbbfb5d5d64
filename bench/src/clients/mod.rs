//! Real clients nobody here wrote, through every target: iperf3, redis-benchmark, sysbench on
//! MariaDB and pgbench on PostgreSQL, against servers the bench starts on loopback (private data
//! directories, free ports) and stops. Rounds alternate: in each, every workload runs on every
//! target, the target order rotated by one each round; then the same with one core kept busy.
//! A tool or server that is missing or fails to start is reported by name and the rest runs.

mod busy;
mod iperf;
mod pgbench;
mod proc;
mod redis;
pub mod summary;
mod sysbench;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::targets::{self, Kind, Programs, Running, Tuning};
pub use summary::Results;

/// What a figure counts, and which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Gbit,
    PerSecond,
    CpuPerGib,
    /// The proxy's CPU time (user + system, its process tree) per request or transaction, µs.
    CpuPerOp,
}

impl Unit {
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Unit::CpuPerGib | Unit::CpuPerOp)
    }
}

/// One measured number of one client run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub unit: Unit,
}

impl Figure {
    pub fn new(value: f64, unit: Unit) -> Figure {
        Figure { value, unit }
    }
}

/// With or without the background load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    Quiet,
    BusyCore,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Quiet => "quiet",
            Variant::BusyCore => "one busy core",
        }
    }
}

/// The client tools, as named in `--client-tools`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Iperf3,
    Redis,
    Sysbench,
    Pgbench,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Iperf3, Tool::Redis, Tool::Sysbench, Tool::Pgbench];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Iperf3 => "iperf3",
            Tool::Redis => "redis",
            Tool::Sysbench => "sysbench",
            Tool::Pgbench => "pgbench",
        }
    }

    pub fn from_name(s: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// One client invocation; it gives one figure per label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Iperf(usize),
    Redis { connect_per_request: bool },
    Sysbench(sysbench::Test),
    Pgbench { connect_per_transaction: bool },
}

impl Job {
    pub const ALL: [Job; 9] = [
        Job::Iperf(1),
        Job::Iperf(8),
        Job::Redis {
            connect_per_request: false,
        },
        Job::Redis {
            connect_per_request: true,
        },
        Job::Sysbench(sysbench::Test::ReadOnly),
        Job::Sysbench(sysbench::Test::PointSelect),
        Job::Sysbench(sysbench::Test::ConnectPerQuery),
        Job::Pgbench {
            connect_per_transaction: false,
        },
        Job::Pgbench {
            connect_per_transaction: true,
        },
    ];

    pub fn tool(self) -> Tool {
        match self {
            Job::Iperf(_) => Tool::Iperf3,
            Job::Redis { .. } => Tool::Redis,
            Job::Sysbench(_) => Tool::Sysbench,
            Job::Pgbench { .. } => Tool::Pgbench,
        }
    }

    /// The workload label of each figure the job gives, in order.
    pub fn labels(self) -> &'static [&'static str] {
        use sysbench::Test;
        match self {
            Job::Iperf(1) => &["iperf3, 1 stream: Gbit/s", "iperf3, 1 stream: CPU s/GiB"],
            Job::Iperf(_) => &["iperf3, 8 streams: Gbit/s", "iperf3, 8 streams: CPU s/GiB"],
            Job::Redis {
                connect_per_request: false,
            } => &["redis PING: req/s", "redis SET: req/s", "redis GET: req/s"],
            Job::Redis {
                connect_per_request: true,
            } => &[
                "redis PING -k 0: req/s",
                "redis SET -k 0: req/s",
                "redis GET -k 0: req/s",
            ],
            Job::Sysbench(Test::ReadOnly) => &["sysbench oltp_read_only: tps"],
            Job::Sysbench(Test::PointSelect) => &["sysbench oltp_point_select: tps"],
            Job::Sysbench(Test::ConnectPerQuery) => &["sysbench connect per query: tps"],
            Job::Pgbench {
                connect_per_transaction: false,
            } => &["pgbench -S: tps"],
            Job::Pgbench {
                connect_per_transaction: true,
            } => &["pgbench -S -C: tps"],
        }
    }

    /// The label of the proxy's CPU time per operation, for the jobs that count operations
    /// (iperf3 has CPU per GiB instead). A rate moves with the machine from round to round;
    /// the CPU one request costs the proxy moves much less, so it tells a cost from noise.
    pub fn cpu_label(self) -> Option<&'static str> {
        use sysbench::Test;
        Some(match self {
            Job::Iperf(_) => return None,
            Job::Redis {
                connect_per_request: false,
            } => "redis PING/SET/GET: proxy CPU µs/request",
            Job::Redis {
                connect_per_request: true,
            } => "redis -k 0: proxy CPU µs/request",
            Job::Sysbench(Test::ReadOnly) => "sysbench oltp_read_only: proxy CPU µs/tx",
            Job::Sysbench(Test::PointSelect) => "sysbench oltp_point_select: proxy CPU µs/tx",
            Job::Sysbench(Test::ConnectPerQuery) => "sysbench connect per query: proxy CPU µs/tx",
            Job::Pgbench {
                connect_per_transaction: false,
            } => "pgbench -S: proxy CPU µs/tx",
            Job::Pgbench {
                connect_per_transaction: true,
            } => "pgbench -S -C: proxy CPU µs/tx",
        })
    }

    /// Whether the job opens a connection per request or transaction: its runs leave
    /// thousands of `TIME_WAIT` connections to its server behind (see [`crate::targets::ports_reusable`]).
    pub fn churns_connections(self) -> bool {
        matches!(
            self,
            Job::Redis {
                connect_per_request: true
            } | Job::Sysbench(sysbench::Test::ConnectPerQuery)
                | Job::Pgbench {
                    connect_per_transaction: true
                }
        )
    }

    /// Requests or transactions a run made, from its figures: redis-benchmark makes a fixed
    /// count per test, sysbench and pgbench run `secs` at the rate they report.
    fn ops(self, figs: &[Figure], secs: u64) -> Option<f64> {
        match self {
            Job::Iperf(_) => None,
            Job::Redis {
                connect_per_request,
            } => {
                Some(redis::requests_per_test(connect_per_request, secs) as f64 * figs.len() as f64)
            }
            Job::Sysbench(_) | Job::Pgbench { .. } => figs.first().map(|f| f.value * secs as f64),
        }
    }
}

/// Every workload label, in report order.
pub fn all_labels() -> Vec<&'static str> {
    Job::ALL
        .iter()
        .flat_map(|j| j.labels().iter().copied().chain(j.cpu_label()))
        .collect()
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub rounds: usize,
    /// Seconds per client run (redis-benchmark: per test, by request count).
    pub secs: u64,
    pub tools: Vec<Tool>,
    pub targets: Vec<Kind>,
    pub variants: Vec<Variant>,
}

impl Plan {
    /// The default targets: lb as users run it, lb on each plane, HAProxy, HAProxy again (the
    /// A/A control: HAProxy against itself shows how far a per-round ratio moves with nothing
    /// changed), and the ceiling.
    pub const TARGETS: [Kind; 6] = [
        Kind::LbAuto,
        Kind::LbSplice,
        Kind::LbSockmap,
        Kind::Haproxy,
        Kind::HaproxyAgain,
        Kind::Direct,
    ];
}

/// The order of `targets` in round `round` (from 0): rotated left by `round`.
pub fn rotation<T: Copy>(targets: &[T], round: usize) -> Vec<T> {
    if targets.is_empty() {
        return Vec::new();
    }
    let k = round % targets.len();
    targets[k..].iter().chain(&targets[..k]).copied().collect()
}

/// The busiest the machine may be (share of all CPUs' time, over [`SETTLE_WINDOW`]) for the
/// first run to start. In one run the first round's first run measured 6.2 Gbit/s through a
/// proxy that made 18.6–20.9 in the later rounds, as if whatever ran just before (the
/// synthetic workloads, the servers starting) had not finished; not shown to be the cause,
/// and on a quiet machine this waits one window (0.5 s).
const SETTLED_BUSY: f64 = 0.15;
const SETTLE_WINDOW: Duration = Duration::from_millis(500);
/// Longest wait for the machine to settle; the runs start anyway after it.
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Whether the machine was quiet between two samples of its CPU time.
fn quiet(before: procfs::CpuTimes, after: procfs::CpuTimes) -> bool {
    let total = after.total.saturating_sub(before.total);
    total > 0 && (after.busy().saturating_sub(before.busy()) as f64) < SETTLED_BUSY * total as f64
}

/// Waits (at most [`SETTLE_MAX`]) until the machine is quiet over a whole [`SETTLE_WINDOW`].
fn settle() {
    let t0 = Instant::now();
    while t0.elapsed() < SETTLE_MAX {
        let Ok(before) = procfs::cpu_times() else {
            return;
        };
        std::thread::sleep(SETTLE_WINDOW);
        let Ok(after) = procfs::cpu_times() else {
            return;
        };
        if quiet(before, after) {
            eprintln!(
                "bench: clients: the machine is quiet ({:.1} s)",
                t0.elapsed().as_secs_f64()
            );
            return;
        }
    }
    eprintln!(
        "bench: clients: the machine did not go quiet in {} s; running anyway",
        SETTLE_MAX.as_secs()
    );
}

/// The servers that could be started.
struct Servers {
    iperf: Option<iperf::Iperf>,
    redis: Option<redis::Redis>,
    sysbench: Option<sysbench::Sysbench>,
    pgbench: Option<pgbench::Pgbench>,
}

impl Servers {
    fn start(tools: &[Tool], dir: &Path, res: &mut Results) -> Servers {
        fn keep<T>(
            tool: Tool,
            wanted: &[Tool],
            res: &mut Results,
            f: impl FnOnce() -> Result<T, String>,
        ) -> Option<T> {
            if !wanted.contains(&tool) {
                return None;
            }
            let t0 = Instant::now();
            match f() {
                Ok(s) => {
                    eprintln!(
                        "bench: clients: {} ready ({:.1} s)",
                        tool.name(),
                        t0.elapsed().as_secs_f64()
                    );
                    Some(s)
                }
                Err(e) => {
                    eprintln!("bench: clients: {} is MISSING: {e}", tool.name());
                    res.missing.insert(tool.name().to_string(), e);
                    None
                }
            }
        }
        Servers {
            iperf: keep(Tool::Iperf3, tools, res, iperf::Iperf::setup),
            redis: keep(Tool::Redis, tools, res, || redis::Redis::start(dir)),
            sysbench: keep(Tool::Sysbench, tools, res, || {
                sysbench::Sysbench::start(dir)
            }),
            pgbench: keep(Tool::Pgbench, tools, res, || pgbench::Pgbench::start(dir)),
        }
    }

    /// (tool, server address) of each running server: the routes every proxy gets.
    fn routes(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut r = Vec::new();
        if let Some(s) = &self.iperf {
            r.push((Tool::Iperf3.name(), s.addr));
        }
        if let Some(s) = &self.redis {
            r.push((Tool::Redis.name(), s.addr));
        }
        if let Some(s) = &self.sysbench {
            r.push((Tool::Sysbench.name(), s.addr));
        }
        if let Some(s) = &self.pgbench {
            r.push((Tool::Pgbench.name(), s.addr));
        }
        r
    }

    /// Runs `job` through `front`; `None` when its server is not running.
    fn run(
        &self,
        job: Job,
        front: SocketAddr,
        secs: u64,
        dir: &Path,
    ) -> Option<Result<Vec<Figure>, String>> {
        Some(match job {
            Job::Iperf(n) => self.iperf.as_ref()?.run(front, n, secs, dir).map(Vec::from),
            Job::Redis {
                connect_per_request,
            } => self
                .redis
                .as_ref()?
                .run(front, connect_per_request, secs, dir)
                .map(Vec::from),
            Job::Sysbench(t) => self
                .sysbench
                .as_ref()?
                .run(front, t, secs, dir)
                .map(|f| vec![f]),
            Job::Pgbench {
                connect_per_transaction,
            } => self
                .pgbench
                .as_ref()?
                .run(front, connect_per_transaction, secs, dir)
                .map(|f| vec![f]),
        })
    }
}

/// A started target and its frontend per route name.
struct Target {
    running: Running,
    routes: Vec<(&'static str, SocketAddr)>,
}

impl Target {
    fn front(&self, tool: Tool) -> Option<SocketAddr> {
        self.routes
            .iter()
            .find(|(n, _)| *n == tool.name())
            .map(|&(_, a)| a)
    }
}

fn start_targets(
    plan: &Plan,
    programs: &Programs,
    dir: &Path,
    routes: &[(&'static str, SocketAddr)],
    res: &mut Results,
) -> Vec<Target> {
    let tuning = Tuning {
        threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        maxconn: 4000,
    };
    let mut out = Vec::new();
    for &k in &plan.targets {
        match targets::start_routes(k, programs, dir, routes, tuning) {
            Ok(running) => {
                let routes = routes
                    .iter()
                    .map(|&(n, _)| n)
                    .zip(running.fronts.iter().copied())
                    .collect();
                out.push(Target { running, routes });
            }
            Err(e) => {
                eprintln!("bench: clients: {} is MISSING: {e}", k.name());
                res.missing.insert(k.name().to_string(), e.to_string());
            }
        }
    }
    out
}

/// Runs the plan: servers, targets, then `rounds` alternating rounds per variant.
pub fn run(plan: &Plan, programs: &Programs, tmp: &Path) -> Results {
    let t0 = Instant::now();
    let mut res = Results {
        rounds: plan.rounds,
        secs: plan.secs,
        targets: Vec::new(),
        ..Results::default()
    };
    let dir = tmp.join("clients");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        res.missing
            .insert("clients".into(), format!("{}: {e}", dir.display()));
        return res;
    }
    let servers = Servers::start(&plan.tools, &dir, &mut res);
    let routes = servers.routes();
    if routes.is_empty() {
        return res;
    }
    let mut targets = start_targets(plan, programs, &dir, &routes, &mut res);
    res.targets = targets.iter().map(|t| t.running.kind).collect();
    let jobs: Vec<Job> = Job::ALL
        .into_iter()
        .filter(|j| plan.tools.contains(&j.tool()))
        .collect();
    let runs_dir: PathBuf = dir.join("runs");
    let _ = std::fs::create_dir_all(&runs_dir);
    settle();
    for &variant in &plan.variants {
        // Bounded: the whole variant's runs with a wide margin.
        let limit = Duration::from_secs(
            (plan.secs * 8 + 60) * (plan.rounds * targets.len() * jobs.len()) as u64,
        );
        let busy = (variant == Variant::BusyCore).then(|| busy::BusyCore::start(limit));
        for round in 0..plan.rounds {
            for &job in &jobs {
                let order = rotation(&(0..targets.len()).collect::<Vec<_>>(), round);
                for (n, &i) in order.iter().enumerate() {
                    if n > 0 && job.churns_connections() {
                        crate::targets::ports_reusable();
                    }
                    run_one(
                        &servers,
                        &mut targets[i],
                        job,
                        variant,
                        round,
                        plan.secs,
                        &runs_dir,
                        &mut res,
                        t0,
                    );
                }
            }
        }
        if let Some(b) = busy {
            eprintln!("bench: clients: busy core did {} rounds of work", b.spins());
        }
    }
    res
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    servers: &Servers,
    t: &mut Target,
    job: Job,
    variant: Variant,
    round: usize,
    secs: u64,
    dir: &Path,
    res: &mut Results,
    t0: Instant,
) {
    let kind = t.running.kind;
    let Some(front) = t.front(job.tool()) else {
        return;
    };
    let proxy_cpu = || t.running.pid().and_then(|p| procfs::tree_cpu(p).ok());
    let cpu_before = proxy_cpu();
    let Some(outcome) = servers.run(job, front, secs, dir) else {
        return;
    };
    let cpu = cpu_before
        .zip(proxy_cpu())
        .map(|(before, now)| now.since(before).total());
    let what = format!(
        "[{:>5.0}s] clients, {}, round {}, {}, {}",
        t0.elapsed().as_secs_f64(),
        variant.name(),
        round + 1,
        job.labels()[0].split(':').next().unwrap_or(""),
        kind.name()
    );
    match outcome {
        Ok(figs) => {
            let per_op = job
                .ops(&figs, secs)
                .filter(|n| *n > 0.0)
                .zip(cpu)
                .map(|(n, c)| c * 1e6 / n);
            let mut shown = Vec::new();
            for (label, f) in job.labels().iter().zip(figs) {
                // The busy core's own CPU time would count in the machine's CPU per GiB.
                if variant == Variant::BusyCore && f.unit == Unit::CpuPerGib {
                    continue;
                }
                shown.push(format!("{:.2}", f.value));
                res.push(variant, label, kind, round, f);
            }
            if let (Some(label), Some(us)) = (job.cpu_label(), per_op) {
                shown.push(format!("proxy {us:.1} µs each"));
                res.push(variant, label, kind, round, Figure::new(us, Unit::CpuPerOp));
            }
            eprintln!("{what}: {}", shown.join(" / "));
        }
        Err(e) => {
            eprintln!("{what}: FAILED: {e}");
            let msg = match t.running.log_tail() {
                l if l.is_empty() => e,
                l => format!("{e}\n--- {} output ---\n{l}", kind.name()),
            };
            res.errors
                .push((variant, job.labels()[0], kind.name(), round, msg));
        }
    }
    if let Err(e) = t.running.check_alive() {
        eprintln!("bench: clients: {e}");
        res.errors.push((variant, "process", kind.name(), round, e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_is_under_the_busy_share_of_all_cpu_time() {
        let at = |total, idle| procfs::CpuTimes { total, idle };
        assert!(quiet(at(1000, 500), at(1200, 690)), "10 % busy");
        assert!(!quiet(at(1000, 500), at(1200, 670)), "15 % busy");
        assert!(!quiet(at(1000, 500), at(1200, 600)), "50 % busy");
        assert!(!quiet(at(1000, 500), at(1000, 500)), "no time passed");
    }

    #[test]
    fn the_control_runs_with_the_real_clients_by_default() {
        let t = Plan::TARGETS;
        let at = |k| t.iter().position(|&x| x == k);
        assert_eq!(at(Kind::Haproxy), Some(3));
        assert_eq!(at(Kind::HaproxyAgain), Some(4));
        assert!(!Kind::SYNTHETIC.contains(&Kind::HaproxyAgain));
        // It rotates like any other target: each round starts one later, every target first once.
        let firsts: Vec<Kind> = (0..t.len()).map(|r| rotation(&t, r)[0]).collect();
        assert_eq!(firsts, t);
    }

    #[test]
    fn rounds_rotate_the_target_order() {
        let t = ["a", "b", "c"];
        assert_eq!(rotation(&t, 0), ["a", "b", "c"]);
        assert_eq!(rotation(&t, 1), ["b", "c", "a"]);
        assert_eq!(rotation(&t, 2), ["c", "a", "b"]);
        assert_eq!(rotation(&t, 3), ["a", "b", "c"]);
        assert!(rotation::<u8>(&[], 4).is_empty());
    }

    #[test]
    fn every_job_labels_what_it_measures() {
        let labels = all_labels();
        // Every job's figures, and a CPU per operation for each but iperf3's.
        assert_eq!(labels.len(), 2 + 2 + 3 + 3 + 3 + 2 + 7);
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        for t in Tool::ALL {
            assert_eq!(Tool::from_name(t.name()), Some(t));
            assert!(Job::ALL.iter().any(|j| j.tool() == t));
        }
        assert!(labels.contains(&"redis SET -k 0: req/s"));
        assert!(labels.contains(&"pgbench -S -C: tps"));
        assert!(labels.contains(&"redis -k 0: proxy CPU µs/request"));
    }

    #[test]
    fn only_the_connection_per_request_jobs_wait_for_their_ports() {
        let churning: Vec<&str> = Job::ALL
            .into_iter()
            .filter(|j| j.churns_connections())
            .map(|j| j.labels()[0])
            .collect();
        assert_eq!(
            churning,
            [
                "redis PING -k 0: req/s",
                "sysbench connect per query: tps",
                "pgbench -S -C: tps"
            ]
        );
    }

    #[test]
    fn operations_come_from_the_count_or_the_rate() {
        let rate = |x| Figure::new(x, Unit::PerSecond);
        let redis = Job::Redis {
            connect_per_request: true,
        };
        let n = redis::requests_per_test(true, 2) as f64;
        assert_eq!(
            redis.ops(&[rate(1.0), rate(2.0), rate(3.0)], 2),
            Some(3.0 * n)
        );
        let pg = Job::Pgbench {
            connect_per_transaction: false,
        };
        assert_eq!(pg.ops(&[rate(500.0)], 3), Some(1500.0));
        assert_eq!(pg.ops(&[], 3), None);
        assert_eq!(Job::Iperf(1).ops(&[rate(9.0)], 3), None);
        assert!(!Unit::CpuPerOp.higher_is_better());
    }
}
