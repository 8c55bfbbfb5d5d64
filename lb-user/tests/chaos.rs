//! Chaos, through the real lb on every data plane: mixed concurrent flows, every byte checked at
//! both ends (and SHA-256 both ways), while backends are killed (their connections reset) and
//! started again, servers flip MAINT/READY through the runtime API, lb reloads with
//! configurations that add and remove servers, and DNS answers move a server between two
//! addresses. No flow may be silently corrupt: each completes with both digests equal or fails
//! in a way an end sees (a reset, an error, an EOF before the planned length with no server
//! behind it). Afterwards lb serves every flow again, its fds and RSS are back to the baseline
//! taken before the chaos, and its log has no panic.
//!
//! `soak` runs the same workload for `LB_SOAK_MINUTES` (`cargo xtask soak --minutes N`) and
//! prints a summary.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::chaos::{judge, plan_flow, run_flow, FlowServer, Journal, Verdict};
use common::data::Rng;
use common::ops::{proc_status, wait, Dnsmasq};
use common::stats::{cli, col, parse_csv, SockDir};
use common::{free_port, local, Lb};

on_both_planes!(chaos);

/// How long the chaos lasts in the suite, per plane.
const CHAOS: Duration = Duration::from_secs(20);
/// A flow that has not ended by then is stalled.
const FLOW_DEADLINE: Duration = Duration::from_secs(20);
/// Client threads, each running one flow after another.
const WORKERS: usize = 6;
/// Largest flow, per direction.
const MAX_SIZE: u64 = 1 << 20;
/// A slow client's pause after every 16 KiB it moves.
const SLOW_PACE: Duration = Duration::from_millis(15);
/// Flows each worker runs in the warm-up and the final round (no chaos: all must complete).
const CLEAN_ROUND: u64 = 12;

fn chaos(dataplane: &str) {
    let report = run(&Plan {
        dataplane,
        chaos: CHAOS,
        max_flows: 20_000,
        progress: None,
    });
    eprintln!("{}", report.summary());
    report.assert_ok();
}

/// `cargo xtask soak --minutes N [--dataplane P]`: the chaos for N minutes, with a progress line
/// every 30 s and the summary at the end.
#[test]
#[ignore = "runs for minutes: `cargo xtask soak --minutes N` runs it"]
fn soak() {
    let minutes: u64 = std::env::var("LB_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let dataplane = std::env::var("LB_SOAK_DATAPLANE").unwrap_or_else(|_| "sockmap".to_owned());
    let report = run(&Plan {
        dataplane: &dataplane,
        chaos: Duration::from_secs(minutes * 60),
        max_flows: u64::MAX / 2,
        progress: Some(Duration::from_secs(30)),
    });
    println!("{}", report.summary());
    report.assert_ok();
}

struct Plan<'a> {
    dataplane: &'a str,
    chaos: Duration,
    /// Bound on the flows of the chaos phase (besides its time).
    max_flows: u64,
    /// Print a progress line this often.
    progress: Option<Duration>,
}

/// A loopback address of this process's own (`127.N.P.host`): restarted servers find their
/// port free, whatever other tests bind on 127.0.0.1.
fn own_ip(n: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        n,
        (std::process::id() % 250) as u8,
        host,
    ))
}

/// The static servers' names; configuration 0 has the first three, configuration 1 swaps
/// `s3` for `s4` (a reload removes one server and adds another).
const STATICS: [&str; 4] = ["s1", "s2", "s3", "s4"];

fn servers_of(variant: usize) -> Vec<&'static str> {
    let mut v = vec!["s1", "s2", if variant == 0 { "s3" } else { "s4" }];
    v.push("dyn");
    v
}

/// Everything a chaos run stands on.
struct Rig {
    journal: Arc<Journal>,
    statics: Vec<Mutex<FlowServer>>,
    /// Their addresses (a restarted server keeps its own).
    static_addrs: Vec<SocketAddr>,
    /// `dyn` at its two addresses (DNS moves it between them).
    _dyns: [FlowServer; 2],
    dyn_ips: [IpAddr; 2],
    dyn_port: u16,
    dns: Dnsmasq,
    dir: SockDir,
    fe: u16,
}

impl Rig {
    fn new() -> Rig {
        let journal = Arc::new(Journal::default());
        let statics: Vec<Mutex<FlowServer>> = STATICS
            .iter()
            .map(|n| {
                let s = FlowServer::start(n, SocketAddr::new(own_ip(77, 1), 0), &journal)
                    .expect("bind a chaos server");
                Mutex::new(s)
            })
            .collect();
        let static_addrs = statics.iter().map(|s| s.lock().unwrap().addr).collect();
        let dyn_ips = [own_ip(78, 1), own_ip(78, 2)];
        let (dyns, dyn_port) = (0..20)
            .find_map(|_| {
                let a =
                    FlowServer::start("dyn@a", SocketAddr::new(dyn_ips[0], 0), &journal).ok()?;
                let b = FlowServer::start(
                    "dyn@b",
                    SocketAddr::new(dyn_ips[1], a.addr.port()),
                    &journal,
                )
                .ok()?;
                let port = a.addr.port();
                Some(([a, b], port))
            })
            .expect("bind the two addresses of dyn");
        let dns = Dnsmasq::start(&format!("{} dyn.test\n", dyn_ips[0]));
        Rig {
            journal,
            statics,
            static_addrs,
            _dyns: dyns,
            dyn_ips,
            dyn_port,
            dns,
            dir: SockDir::new("chaos"),
            fe: free_port(),
        }
    }

    fn sock(&self) -> std::path::PathBuf {
        self.dir.sock("admin.sock")
    }

    /// Configuration `variant` (0 or 1, see [`STATICS`]).
    fn config(&self, variant: usize) -> String {
        let mut c = format!(
            "global\n    maxconn 4096\n    stats socket {} level admin\n\n\
             resolvers dns\n    nameserver ns1 {}\n    resolve_retries 2\n    timeout resolve 200ms\n    \
             timeout retry 200ms\n    hold valid 300ms\n    hold nx 60s\n    hold timeout 60s\n\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    \
             retries 2\n    option redispatch\n\n\
             frontend fe\n    bind 127.0.0.1:{}\n    default_backend be\n\n\
             backend be\n    balance roundrobin\n    default-server check inter 300ms fall 2 rise 1\n",
            self.sock().display(),
            self.dns.addr,
            self.fe
        );
        for name in servers_of(variant) {
            if name == "dyn" {
                let _ = writeln!(
                    c,
                    "    server dyn dyn.test:{} resolvers dns resolve-prefer ipv4 init-addr none",
                    self.dyn_port
                );
            } else {
                let i = STATICS.iter().position(|s| *s == name).unwrap();
                let _ = writeln!(c, "    server {name} {}", self.static_addrs[i]);
            }
        }
        c
    }

    /// Waits until every server of `variant` is UP (and `dyn` resolved).
    fn wait_all_up(&self, variant: usize, lb: &Lb) {
        let sock = self.sock();
        let ok = wait(Duration::from_secs(20), || {
            let (_, rows) = parse_csv(&cli(&sock, "show stat"));
            servers_of(variant).iter().all(|name| {
                rows.iter()
                    .any(|r| col(r, "svname") == *name && col(r, "status") == "UP")
            })
        });
        assert!(
            ok,
            "servers not all UP:\n{}\n{:#?}",
            cli(&sock, "show stat"),
            lb.logs()
        );
    }
}

/// Flow outcomes, summed.
#[derive(Debug, Default)]
struct Tally {
    flows: u64,
    complete: u64,
    failed: BTreeMap<&'static str, u64>,
    stalled: Vec<String>,
    corrupt: Vec<String>,
}

impl Tally {
    fn add(&mut self, v: Verdict) {
        self.flows += 1;
        match v {
            Verdict::Complete => self.complete += 1,
            Verdict::Failed(why) => *self.failed.entry(why).or_default() += 1,
            Verdict::Stalled(what) => self.stalled.push(what),
            Verdict::Corrupt(what) => self.corrupt.push(what),
        }
    }

    fn failed(&self) -> u64 {
        self.failed.values().sum()
    }

    fn line(&self) -> String {
        format!(
            "{} flows: {} complete, {} failed visibly {:?}, {} stalled, {} corrupt",
            self.flows,
            self.complete,
            self.failed(),
            self.failed,
            self.stalled.len(),
            self.corrupt.len()
        )
    }
}

/// Runs flows from `workers` threads until `until` or `max` flows (ids from `next`), judging
/// each as it ends.
fn load(
    rig: &Rig,
    workers: usize,
    until: Instant,
    next: &AtomicU64,
    max: u64,
    tally: &Mutex<Tally>,
) {
    let fe = local(rig.fe);
    thread::scope(|scope| {
        for w in 0..workers {
            scope.spawn(move || {
                let mut rng = Rng::new(0xC4A0_5000 + w as u64 + next.load(Ordering::SeqCst));
                while Instant::now() < until {
                    let id = next.fetch_add(1, Ordering::SeqCst);
                    if id >= max {
                        return;
                    }
                    let h = plan_flow(id, &mut rng, MAX_SIZE);
                    // One flow in four is slow: open for a second or two, for the chaos to hit.
                    let pace = if rng.below(4) == 0 {
                        SLOW_PACE
                    } else {
                        Duration::ZERO
                    };
                    let c = run_flow(fe, h, pace, Instant::now() + FLOW_DEADLINE);
                    let s = rig.journal.take(id, Duration::from_secs(5));
                    tally.lock().unwrap().add(judge(&h, &c, s.as_ref()));
                }
            });
        }
    });
}

/// A round of flows without chaos: every one must complete.
fn clean_round(rig: &Rig, next: &AtomicU64, what: &str) -> Vec<String> {
    let tally = Mutex::new(Tally::default());
    let start = next.load(Ordering::SeqCst);
    let end = start + CLEAN_ROUND * WORKERS as u64;
    load(
        rig,
        WORKERS,
        Instant::now() + Duration::from_mins(1),
        next,
        end,
        &tally,
    );
    next.store(end, Ordering::SeqCst);
    let t = tally.into_inner().unwrap();
    if t.complete == t.flows {
        Vec::new()
    } else {
        vec![format!(
            "{what}: not every flow completed: {}\n{:#?}",
            t.line(),
            t
        )]
    }
}

/// lb's open fds by kind (`socket`, `pipe`, `anon_inode:[eventpoll]`, a file's path...).
type Census = BTreeMap<String, usize>;

fn census(pid: u32) -> Census {
    let mut c = Census::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return c;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let kind = match t.split_once(":[") {
            Some((k @ ("socket" | "pipe"), _)) => k.to_owned(),
            _ => t.into_owned(),
        };
        *c.entry(kind).or_default() += 1;
    }
    c
}

/// The census with the fewest fds of 10 taken 100 ms apart: health checks and DNS queries
/// hold sockets for moments; the quietest sample is lb at rest.
fn quiet_census(pid: u32) -> Census {
    (0..10)
        .map(|i| {
            if i > 0 {
                thread::sleep(Duration::from_millis(100));
            }
            census(pid)
        })
        .min_by_key(|c| c.values().sum::<usize>())
        .unwrap_or_default()
}

/// `VmRSS` in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status(pid)
        .ok()
        .and_then(|s| {
            s.get("VmRSS")
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Splice pipes lb may keep for reuse after the chaos beyond the baseline's: its pools keep at
/// most the pipes that were leased at once, two per flow (one per direction), two fds each.
fn pipe_slack() -> usize {
    4 * WORKERS
}

/// How far lb's RSS may end above the baseline: allocator caches and tokio's slabs keep their
/// high-water marks; a leak per flow or per reload over thousands of flows goes past it.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Where the fds are not back to the baseline (pipes within [`pipe_slack`]).
fn fd_drift(base: &Census, now: &Census) -> Vec<String> {
    let kinds: BTreeSet<&String> = base.keys().chain(now.keys()).collect();
    kinds
        .into_iter()
        .filter_map(|k| {
            let (b, n) = (
                base.get(k).copied().unwrap_or(0),
                now.get(k).copied().unwrap_or(0),
            );
            let slack = if k == "pipe" { pipe_slack() } else { 0 };
            (n > b + slack).then(|| format!("{k}: {b} -> {n}"))
        })
        .collect()
}

/// What happened around the flows.
#[derive(Debug, Default)]
struct Events {
    kills: AtomicU64,
    restarts: AtomicU64,
    flips: AtomicU64,
    reloads: AtomicU64,
    dns_moves: AtomicU64,
    /// Things that went wrong outside the flows (a reload that did not finish, a runtime API
    /// answer that makes no sense, a server that could not be restarted).
    anomalies: Mutex<Vec<String>>,
}

impl Events {
    fn anomaly(&self, what: String) {
        self.anomalies.lock().unwrap().push(what);
    }

    fn line(&self) -> String {
        format!(
            "{} kills, {} restarts, {} MAINT/READY flips, {} reloads, {} DNS moves",
            self.kills.load(Ordering::SeqCst),
            self.restarts.load(Ordering::SeqCst),
            self.flips.load(Ordering::SeqCst),
            self.reloads.load(Ordering::SeqCst),
            self.dns_moves.load(Ordering::SeqCst)
        )
    }
}

/// Bound on each kind of chaos event in one run (besides the run's time): more than a day of
/// soak at their pace.
const MAX_EVENTS: u64 = 1_000_000;

/// Sleeps about `ms` milliseconds (±50 %, from `rng`) unless `stop` comes first; false then.
fn pause(rng: &mut Rng, ms: u64, stop: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_millis(rng.range(ms / 2, ms * 3 / 2));
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    !stop.load(Ordering::SeqCst)
}

/// Kills a static server now and then, and starts it again a moment later.
fn killer(rig: &Rig, stop: &AtomicBool, ev: &Events) {
    let mut rng = Rng::new(0xDEAD);
    for _ in 0..MAX_EVENTS {
        if !pause(&mut rng, 800, stop) {
            break;
        }
        let i = rng.below(STATICS.len() as u64) as usize;
        rig.statics[i].lock().unwrap().kill();
        ev.kills.fetch_add(1, Ordering::SeqCst);
        pause(&mut rng, 400, stop);
        if rig.statics[i].lock().unwrap().restart() {
            ev.restarts.fetch_add(1, Ordering::SeqCst);
        } else {
            ev.anomaly(format!("{} could not be restarted", STATICS[i]));
        }
    }
}

/// Flips servers between MAINT and READY through the runtime API (at most two in MAINT).
fn flipper(rig: &Rig, stop: &AtomicBool, ev: &Events, variant: &AtomicUsize) {
    let mut rng = Rng::new(0xF11F);
    let mut maint: BTreeSet<&str> = BTreeSet::new();
    let sock = rig.sock();
    for _ in 0..MAX_EVENTS {
        if !pause(&mut rng, 500, stop) {
            break;
        }
        let names = servers_of(variant.load(Ordering::SeqCst));
        let name = names[rng.below(names.len() as u64) as usize];
        let state = if maint.remove(name) {
            "ready"
        } else if maint.len() < 2 {
            maint.insert(name);
            "maint"
        } else {
            continue;
        };
        let answer = cli(&sock, &format!("set server be/{name} state {state}"));
        // The server may have just been removed by a reload.
        if answer != "\n" && answer != "No such server.\n\n" {
            ev.anomaly(format!("set server be/{name} state {state}: {answer:?}"));
        }
        ev.flips.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reloads lb, alternating between the two configurations.
fn reloader(rig: &Rig, lb: &Lb, stop: &AtomicBool, ev: &Events, variant: &AtomicUsize) {
    let mut rng = Rng::new(0x2E10);
    for _ in 0..MAX_EVENTS {
        if !pause(&mut rng, 2500, stop) {
            break;
        }
        let v = 1 - variant.load(Ordering::SeqCst);
        lb.rewrite_config(0, &rig.config(v));
        let n = ev.reloads.fetch_add(1, Ordering::SeqCst) + 1;
        lb.signal(libc::SIGHUP);
        if !lb.wait_for_log(
            &format!("reload done: generation {n} "),
            Duration::from_secs(10),
        ) {
            ev.anomaly(format!("reload {n} did not finish within 10 s"));
            return;
        }
        variant.store(v, Ordering::SeqCst);
    }
}

/// Moves `dyn.test` between its two addresses.
fn dns_mover(rig: &Rig, stop: &AtomicBool, ev: &Events) {
    let mut rng = Rng::new(0xD25);
    let mut at = 0;
    for _ in 0..MAX_EVENTS {
        if !pause(&mut rng, 1500, stop) {
            break;
        }
        at = 1 - at;
        rig.dns
            .set_hosts(&format!("{} dyn.test\n", rig.dyn_ips[at]));
        ev.dns_moves.fetch_add(1, Ordering::SeqCst);
    }
}

/// Prints a progress line every `every` until `stop`.
fn monitor(pid: u32, every: Duration, stop: &AtomicBool, tally: &Mutex<Tally>, ev: &Events) {
    let start = Instant::now();
    let mut next = start + every;
    for _ in 0..MAX_EVENTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        if Instant::now() >= next {
            next += every;
            println!(
                "soak {:>5.0} s: {}; {}; lb fds {:?}, RSS {} KiB",
                start.elapsed().as_secs_f64(),
                tally.lock().unwrap().line(),
                ev.line(),
                census(pid),
                rss_kib(pid)
            );
        }
    }
}

struct Report {
    dataplane: String,
    chaos: Duration,
    tally: Tally,
    events: Events,
    fds_base: Census,
    fds_end: Census,
    rss_base: u64,
    rss_end: u64,
    problems: Vec<String>,
}

impl Report {
    fn summary(&self) -> String {
        format!(
            "chaos on {} for {:.0} s: {}\n  events: {}\n  lb fds: {:?} -> {:?}\n  lb RSS: {} KiB -> {} KiB ({:+} KiB)",
            self.dataplane,
            self.chaos.as_secs_f64(),
            self.tally.line(),
            self.events.line(),
            self.fds_base,
            self.fds_end,
            self.rss_base,
            self.rss_end,
            self.rss_end as i64 - self.rss_base as i64
        )
    }

    fn assert_ok(&self) {
        let mut problems = self.problems.clone();
        problems.extend(self.tally.corrupt.iter().map(|c| format!("CORRUPT {c}")));
        problems.extend(self.tally.stalled.iter().map(|c| format!("STALLED {c}")));
        problems.extend(self.events.anomalies.lock().unwrap().iter().cloned());
        assert!(
            problems.is_empty(),
            "{}\n{} problems:\n{}",
            self.summary(),
            problems.len(),
            problems.join("\n")
        );
    }
}

fn run(plan: &Plan<'_>) -> Report {
    let rig = Rig::new();
    let mut lb = Lb::start(&rig.config(0), plan.dataplane);
    let pid = lb.pid();
    rig.wait_all_up(0, &lb);
    let next = AtomicU64::new(0);
    let mut problems = clean_round(&rig, &next, "warm-up");
    let fds_base = quiet_census(pid);
    let rss_base = rss_kib(pid);

    let tally = Mutex::new(Tally::default());
    let events = Events::default();
    let stop = AtomicBool::new(false);
    let variant = AtomicUsize::new(0);
    let started = Instant::now();
    thread::scope(|scope| {
        let (rig, lb, stop, ev, variant, tally) = (&rig, &lb, &stop, &events, &variant, &tally);
        scope.spawn(move || killer(rig, stop, ev));
        scope.spawn(move || flipper(rig, stop, ev, variant));
        scope.spawn(move || reloader(rig, lb, stop, ev, variant));
        scope.spawn(move || dns_mover(rig, stop, ev));
        if let Some(every) = plan.progress {
            scope.spawn(move || monitor(pid, every, stop, tally, ev));
        }
        let max = next.load(Ordering::SeqCst) + plan.max_flows;
        load(rig, WORKERS, started + plan.chaos, &next, max, tally);
        stop.store(true, Ordering::SeqCst);
    });
    let chaos = started.elapsed();

    // Back to calm: every server alive and READY, configuration 0, dyn at its first address.
    for s in &rig.statics {
        if !s.lock().unwrap().restart() {
            problems.push("a server could not be restarted after the chaos".to_owned());
        }
    }
    rig.dns.set_hosts(&format!("{} dyn.test\n", rig.dyn_ips[0]));
    lb.rewrite_config(0, &rig.config(0));
    let n = events.reloads.fetch_add(1, Ordering::SeqCst) + 1;
    lb.signal(libc::SIGHUP);
    if !lb.wait_for_log(
        &format!("reload done: generation {n} "),
        Duration::from_secs(10),
    ) {
        problems.push(format!("the last reload ({n}) did not finish"));
    }
    for name in servers_of(0) {
        let _ = cli(&rig.sock(), &format!("set server be/{name} state ready"));
    }
    rig.wait_all_up(0, &lb);
    problems.extend(clean_round(&rig, &next, "after the chaos"));

    // Resources back to the baseline (waiting for closes to settle).
    let mut fds_end = quiet_census(pid);
    let settled = wait(Duration::from_secs(10), || {
        fds_end = quiet_census(pid);
        fd_drift(&fds_base, &fds_end).is_empty()
    });
    if !settled {
        problems.push(format!(
            "lb's fds are not back to the baseline: {}",
            fd_drift(&fds_base, &fds_end).join(", ")
        ));
    }
    let rss_end = rss_kib(pid);
    if rss_end > rss_base + RSS_SLACK_KIB {
        problems.push(format!(
            "lb's RSS grew from {rss_base} KiB to {rss_end} KiB (more than {RSS_SLACK_KIB} KiB)"
        ));
    }
    for (id, v) in rig.journal.leftovers() {
        if v.corrupt.is_some() || v.servers.len() > 1 {
            problems.push(format!(
                "flow {id} judged before its server was done: {v:?}"
            ));
        }
    }
    let panics: Vec<String> = lb
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    if !panics.is_empty() {
        problems.push(format!("lb panicked:\n{}", panics.join("\n")));
    }
    if lb.wait_exit(Duration::ZERO).is_some() {
        problems.push("lb exited".to_owned());
    }
    Report {
        dataplane: plan.dataplane.to_owned(),
        chaos,
        tally: tally.into_inner().unwrap(),
        events,
        fds_base,
        fds_end,
        rss_base,
        rss_end,
        problems,
    }
}

// The harness itself, without lb: a killed server's flows end in a reset, and the verdicts
// catch what a broken proxy would do (a FIN passed on for a reset, a changed byte, a cut
// upload), so a chaos run that passes means something.

/// What a [`faulty_proxy`] does wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Passes a server's reset on to the client as a FIN.
    FinAfterReset,
    /// Flips a bit of server→client byte N.
    FlipByte(u64),
    /// Forwards only the first N client→server bytes, then the client's FIN.
    CutUpload(u64),
}

/// A one-connection proxy to `target` with `fault`; returns its address.
fn faulty_proxy(target: SocketAddr, fault: Fault) -> SocketAddr {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((c, _)) = l.accept() else { return };
        let s = std::net::TcpStream::connect(target).unwrap();
        let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        let up = thread::spawn(move || relay(c, s, fault, true));
        relay(s2, c2, fault, false);
        let _ = up.join();
    });
    addr
}

fn relay(mut from: std::net::TcpStream, mut to: std::net::TcpStream, fault: Fault, up: bool) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let mut buf = [0u8; 16 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => {
                if matches!(fault, Fault::FinAfterReset) {
                    let _ = to.shutdown(Shutdown::Write);
                } else {
                    let _ = socket2::SockRef::from(&to).set_linger(Some(Duration::ZERO));
                }
                return;
            }
        };
        let mut chunk = buf[..n].to_vec();
        match fault {
            Fault::FlipByte(at) if !up && (pos..pos + n as u64).contains(&at) => {
                chunk[(at - pos) as usize] ^= 1;
            }
            Fault::CutUpload(keep) if up => {
                chunk.truncate(keep.saturating_sub(pos).min(n as u64) as usize);
            }
            _ => {}
        }
        pos += n as u64;
        if to.write_all(&chunk).is_err() {
            return;
        }
    }
}

/// Runs a flow of `size` bytes each way in `order` through `addr` against `server`, killing
/// the server after `kill_after` (when given); returns the verdict.
fn harness_flow(
    (addr, server, journal): (SocketAddr, &mut FlowServer, &Journal),
    order: common::servers::HalfClose,
    size: u64,
    kill_after: Option<Duration>,
) -> Verdict {
    let h = common::servers::FlowHeader {
        id: 7,
        order,
        up: size,
        down: size,
    };
    let deadline = Instant::now() + FLOW_DEADLINE;
    let client = thread::spawn(move || run_flow(addr, h, Duration::ZERO, deadline));
    if let Some(after) = kill_after {
        thread::sleep(after);
        server.kill();
    }
    let c = client.join().unwrap();
    let s = journal.take(h.id, Duration::from_secs(5));
    judge(&h, &c, s.as_ref())
}

fn harness_server() -> (Arc<Journal>, FlowServer) {
    let journal = Arc::new(Journal::default());
    let s = FlowServer::start("s", SocketAddr::from(([127, 0, 0, 1], 0)), &journal).unwrap();
    (journal, s)
}

/// Big enough that a flow is still moving 100 ms in, whatever the kernel buffers hold.
const BIG: u64 = 256 << 20;
const KILL_AFTER: Option<Duration> = Some(Duration::from_millis(100));

#[test]
fn harness_a_killed_server_resets_its_flows() {
    use common::servers::HalfClose;
    let (journal, mut s) = harness_server();
    for order in [
        HalfClose::ClientFirst,
        HalfClose::ServerFirst,
        HalfClose::Both,
    ] {
        let addr = s.addr;
        let v = harness_flow((addr, &mut s, &journal), order, BIG, KILL_AFTER);
        assert_eq!(v, Verdict::Failed("reset"), "{order:?}");
        assert!(s.restart());
        let v = harness_flow((addr, &mut s, &journal), order, 1 << 20, None);
        assert_eq!(v, Verdict::Complete, "{order:?}");
    }
}

#[test]
fn harness_catches_a_fin_passed_on_for_a_reset() {
    let (journal, mut s) = harness_server();
    let proxy = faulty_proxy(s.addr, Fault::FinAfterReset);
    let order = common::servers::HalfClose::ServerFirst;
    let v = harness_flow((proxy, &mut s, &journal), order, BIG, KILL_AFTER);
    assert!(
        matches!(&v, Verdict::Corrupt(why) if why.contains("client got a clean EOF after")),
        "{v:?}"
    );
}

#[test]
fn harness_catches_a_changed_byte() {
    let (journal, mut s) = harness_server();
    let proxy = faulty_proxy(s.addr, Fault::FlipByte(100_000));
    let order = common::servers::HalfClose::Both;
    let v = harness_flow((proxy, &mut s, &journal), order, 1 << 20, None);
    assert!(
        matches!(&v, Verdict::Corrupt(why) if why.contains("byte 100000 differs")),
        "{v:?}"
    );
}

#[test]
fn harness_catches_a_cut_upload() {
    let (journal, mut s) = harness_server();
    let proxy = faulty_proxy(s.addr, Fault::CutUpload(1 << 20));
    let order = common::servers::HalfClose::ClientFirst;
    let v = harness_flow((proxy, &mut s, &journal), order, 2 << 20, None);
    assert!(
        matches!(&v, Verdict::Corrupt(why) if why.contains("got a clean EOF after 1048551 of")),
        "{v:?}"
    );
}
