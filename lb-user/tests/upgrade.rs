//! Binary upgrade (`lb -x SOCKET -sf PID`, HAProxy's): a new lb takes the running one's
//! listening sockets over its runtime API socket (`expose-fd listeners`) and soft-stops it. On
//! every plane: a 64 MiB flow and 200 held echo flows started on the old process finish intact
//! (SHA-256 both ways, half-close), a bounded connect loop across the upgrade sees no refusal
//! and no reset, and the old process exits once its flows end or are handed over (or at
//! `hard-stop-after`). Beyond HAProxy, established flows move to the new process
//! (`_getflows`): the old one exits within seconds while they are still open, and a flow
//! busy both ways moves without losing a byte; with both on sockmap, flows in the kernel maps
//! move in place (`in_kernel_maps`). A socket without `expose-fd listeners`, or one
//! that answers nonsense, is a clear error.
//!
//! `LB_TEST_OLD_BIN=PATH`: the old process of the flow-moving tests runs that binary (an older
//! lb), to check that flows move from the release before.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::data::{stream_summary, DataStream};
use common::scenarios::connect;
use common::servers::{Backend, FlowHeader, HalfClose};
use common::upgrade::{
    big_flow, config, connect_loop, echo_flow, mark_exit, socket_path, BEFORE, BIG, HELD_ECHO,
    HOLD, MOVING,
};
use common::{free_port, local, run_lb, Lb, LbOpts};

/// Names the binary the old process of the flow-moving tests runs instead of this build's.
const OLD_BIN: &str = "LB_TEST_OLD_BIN";

on_both_planes!(
    upgrade_keeps_every_connection,
    old_process_exits_at_hard_stop_after,
    established_flows_move_to_the_new_process,
    a_busy_flow_moves_without_losing_a_byte,
);

/// Both lbs on a sockmap plane: the flows in the old one's kernel maps move in place.
mod in_kernel_maps {
    use crate::common::SOCKMAP_AT_ONCE;

    #[test]
    fn established_flows_move() {
        super::flows_move("sockmap", "sockmap");
    }

    #[test]
    fn established_flows_move_at_once() {
        super::flows_move(SOCKMAP_AT_ONCE, SOCKMAP_AT_ONCE);
    }

    #[test]
    fn a_busy_flow_keeps_every_byte() {
        super::busy_flow_moves("sockmap", "sockmap");
    }

    #[test]
    fn a_busy_flow_keeps_every_byte_at_once() {
        super::busy_flow_moves(SOCKMAP_AT_ONCE, SOCKMAP_AT_ONCE);
    }
}

fn upgrade_keeps_every_connection(dataplane: &str) {
    // The kernel's psock workers, traced: their stalls excuse late echoes, nothing else.
    let works = common::kernel::PsockWorks::start();
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(
        &sock,
        "expose-fd listeners",
        "    hard-stop-after 2m",
        ports,
        &flow,
        &echo,
    );
    let mut old = Lb::start(&cfg, dataplane);
    let (big_addr, echo_addr) = (local(ports.0), local(ports.1));

    let held = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let big = {
        let (held, go) = (held.clone(), go.clone());
        thread::spawn(move || big_flow(big_addr, &held, &go))
    };
    let echoes: Vec<_> = (0..HELD_ECHO)
        .map(|id| {
            let (held, go) = (held.clone(), go.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || echo_flow(echo_addr, id, &held, &go))
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_mins(1);
    while held.load(Ordering::SeqCst) < HELD_ECHO + 1 {
        assert!(
            Instant::now() < deadline,
            "the held flows did not all start"
        );
        thread::sleep(Duration::from_millis(10));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let phase = Arc::new(AtomicUsize::new(BEFORE));
    let looping = {
        let (stop, done) = (stop.clone(), done.clone());
        let phase = phase.clone();
        thread::spawn(move || connect_loop(echo_addr, &stop, &done, &phase))
    };
    let wait_done = |n: u64| {
        let until = done.load(Ordering::SeqCst) + n;
        let end = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < until && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_done(200);

    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    let exited = mark_exit(old.pid(), phase.clone(), stop.clone());
    phase.store(MOVING, Ordering::SeqCst);
    let new =
        Lb::start_with(&LbOpts::new(&cfg, dataplane).args(&["-x", &sock_arg, "-sf", &old_pid]));
    assert!(
        new.wait_for_log("taken over from the old process", Duration::ZERO),
        "the new lb bound its own sockets: {}",
        new.logs().join("\n")
    );
    assert!(
        old.wait_for_log("soft stop: no longer accepting", Duration::from_secs(5)),
        "the old lb did not soft-stop: {}",
        old.logs().join("\n")
    );
    // Connections go on while the old process holds its flows, and after.
    wait_done(500);
    go.store(true, Ordering::SeqCst);
    let mut failures: Vec<String> = echoes
        .into_iter()
        .filter_map(|t| t.join().unwrap().err())
        .collect();
    if let Err(e) = big.join().unwrap() {
        failures.push(e);
    }
    let exit = old.wait_exit(Duration::from_secs(20));
    wait_done(500);
    stop.store(true, Ordering::SeqCst);
    let mut tally = looping.join().unwrap();
    exited.join().unwrap();
    eprintln!("connect loop across the upgrade: {tally:?}");
    excuse_kernel_stalls(&mut tally, works.as_ref());

    assert!(
        failures.is_empty(),
        "held flows broken:\n{}\nthe backends' errors (a held flow they ended): {:?} {:?}",
        failures.join("\n"),
        echo.errors(),
        flow.errors()
    );
    let want_up = stream_summary(
        FlowHeader {
            id: 0,
            order: HalfClose::ClientFirst,
            up: 0,
            down: 0,
        }
        .up_seed(),
        BIG,
    );
    assert_eq!(
        flow.wait_received(0, Duration::from_secs(5)),
        Some(want_up),
        "64 MiB upload"
    );
    assert!(
        exit.is_some_and(|s| s.success()),
        "the old lb did not exit once its flows ended ({exit:?}): {}",
        old.logs().join("\n")
    );
    assert!(old.find_log("soft stop: no connection left").is_some());
    assert!(
        old.find_log("did not take").is_none(),
        "{}",
        old.logs().join("\n")
    );
    assert_eq!(
        (tally.refused, tally.reset, &tally.other),
        (0, 0, &Vec::<String>::new()),
        "the connect loop across the upgrade: {} ok",
        tally.ok
    );
    // The loop ran across the whole upgrade (how many it made is the machine's speed).
    let [before, moving, after] = tally.ok_in;
    assert!(
        before > 0 && moving > 0 && after > 0,
        "the connect loop did not run across the upgrade: {before} good connection(s) \
         before the new lb started, {moving} while the old one lived on, {after} after it \
         exited"
    );
    // The new lb serves alone now.
    common::scenarios::ping_pong(echo_addr, 10, 100, Duration::from_secs(10)).unwrap();
    drop(new);
    assert!(!sock.exists(), "the new lb left its socket file");
}

fn old_process_exits_at_hard_stop_after(dataplane: &str) {
    // The kernel's psock workers, traced: their stalls excuse late echoes, nothing else.
    let works = common::kernel::PsockWorks::start();
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(
        &sock,
        "expose-fd listeners",
        "    hard-stop-after 3s",
        ports,
        &flow,
        &echo,
    );
    let mut old = Lb::start(&cfg, dataplane);
    let mut held = connect(local(ports.1)).unwrap();
    held.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();
    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    let t0 = Instant::now();
    // The new configuration has no backend 'echoes': it refuses the held flow (it would take
    // it otherwise), which stays with the old process until hard-stop-after.
    let new_cfg = cfg.replace("echoes", "echoes2");
    let new =
        Lb::start_with(&LbOpts::new(&new_cfg, dataplane).args(&["-x", &sock_arg, "-sf", &old_pid]));
    // Refused (splice) or never offered (in the kernel maps), the flow goes on in the old
    // process: a refused one was stopped and offered, and must forward on after.
    assert!(new.wait_for_log(
        "established flow(s) from the old process",
        Duration::from_secs(3)
    ));
    held.write_all(b"pong").unwrap();
    let wrote = common::kernel::unix_now();
    match held.read_exact(&mut back) {
        Ok(()) => assert_eq!(&back, b"pong", "the held flow after the refusal"),
        // Its echo waits in the kernel's queues while the kernel's workers are stuck, and
        // hard-stop-after comes first: the kernel's fault, not lb's, only with the proof.
        Err(e) => match common::kernel::stall_at(wrote, works.as_ref()) {
            Some(report) => eprintln!(
                "the held flow's echo never came ({e}) while the kernel reported: {report}"
            ),
            None => panic!("the held flow after the refusal: {e}"),
        },
    }
    let exit = old.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(
        exit.is_some(),
        "the old lb outlived hard-stop-after: {}",
        old.logs().join("\n")
    );
    assert!(
        took >= Duration::from_secs(3),
        "exited after {took:?}, before hard-stop-after"
    );
    assert!(
        old.find_log("hard-stop-after: closing the 1 connection(s) left")
            .is_some(),
        "{}",
        old.logs().join("\n")
    );
    // On splice the refusal is certain; on sockmap the held flow may still be entering the
    // kernel maps when asked (it then stays without being offered).
    assert!(
        dataplane != "splice"
            || new
                .find_log("left with the old process: no backend 'echoes' here")
                .is_some(),
        "{}",
        new.logs().join("\n")
    );
    // The held flow was the old process's: it ends with it.
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    // The new one serves.
    common::scenarios::ping_pong(local(ports.1), 5, 100, Duration::from_secs(10)).unwrap();
    drop(new);
}

#[test]
fn x_without_expose_fd_is_a_clear_error() {
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(&sock, "", "", ports, &flow, &echo);
    let old = Lb::start(&cfg, "splice");
    let sock_arg = sock.display().to_string();
    let (out, _cfgs) = run_lb(
        &[&cfg],
        &["-x", &sock_arg, "--dataplane", "splice"],
        &[],
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("sent no sockets") && out.stderr.contains("expose-fd listeners"),
        "{}",
        out.stderr
    );
    assert!(old.wait_for_log("_getsocks refused", Duration::from_secs(2)));
    // The old one serves on, unharmed.
    common::scenarios::ping_pong(local(ports.1), 5, 100, Duration::from_secs(10)).unwrap();
}

/// A unix socket that answers one connection with `answer` and closes.
fn fake_old_process(answer: &'static [u8]) -> (PathBuf, thread::JoinHandle<()>) {
    let path = socket_path();
    let l = UnixListener::bind(&path).unwrap();
    let t = thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut line = [0u8; 10];
            let _ = s.read_exact(&mut line);
            let _ = s.write_all(answer);
            let _ = s.shutdown(Shutdown::Write);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    });
    (path, t)
}

#[test]
fn a_bad_answer_is_a_clear_error() {
    let echo = Backend::echo_idle("e", HOLD);
    let port = free_port();
    let cfg = common::simple_config(port, &[], &[format!("e {}", echo.addr)]);
    let three = 3i32.to_ne_bytes();
    let cases: [(&'static [u8], &str); 3] = [
        (
            b"Unknown command, try 'help'.\n",
            "bad answer from the old process: announces",
        ),
        (
            Box::leak(Box::new(three)),
            "the connection ended after 0 of 3 sockets",
        ),
        (b"\x01\x00", "2 byte(s) where the socket count was due"),
    ];
    for (answer, want) in cases {
        let (path, t) = fake_old_process(answer);
        let arg = path.display().to_string();
        let (out, _cfgs) = run_lb(
            &[&cfg],
            &["-x", &arg, "--dataplane", "splice"],
            &[],
            Duration::from_secs(20),
        );
        t.join().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(!out.status.success(), "{}", out.stderr);
        assert!(
            out.stderr.contains(want),
            "want {want:?} in:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let missing = socket_path().display().to_string();
    let (out, _cfgs) = run_lb(&[&cfg], &["-x", &missing], &[], Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("cannot connect to the old process"),
        "{}",
        out.stderr
    );
}

/// Debian's HAProxy started with `-x SOCKET -sf PID`, killed on drop (its config file with it).
struct HaproxyTakingOver {
    child: std::process::Child,
    _cfg: common::TempCfg,
}

impl HaproxyTakingOver {
    /// `haproxy -f CFG -db -x SOCKET -sf PID`.
    fn start(cfg: &str, sock: &std::path::Path, pid: u32) -> HaproxyTakingOver {
        let cfg = common::TempCfg::new(cfg);
        let child = std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&cfg.path)
            .arg("-db")
            .arg("-x")
            .arg(sock)
            .arg("-sf")
            .arg(pid.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("haproxy is installed (cargo xtask setup)");
        HaproxyTakingOver { child, _cfg: cfg }
    }
}

impl Drop for HaproxyTakingOver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wire format is HAProxy's: HAProxy 2.6 takes lb's sockets with `-x`, and lb takes them
/// back from HAProxy, with a connect loop across both upgrades seeing no refusal or reset.
#[test]
fn haproxy_and_lb_take_each_others_sockets() {
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let (lb_sock, ha_sock) = (socket_path(), socket_path());
    let ports = (free_port(), free_port());
    let expose = "expose-fd listeners";
    // One thread: HAProxy takes one socket per `bind`; lb's other threads' sockets in the
    // SO_REUSEPORT group would be left to the old lb, their queues reset at its exit.
    let lb_cfg = config(&lb_sock, expose, "    nbthread 1", ports, &flow, &echo);
    let ha_cfg = config(&ha_sock, expose, "", ports, &flow, &echo);
    let mut first = Lb::start(&lb_cfg, "splice");
    let echo_addr = local(ports.1);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let looping = {
        let (stop, done) = (stop.clone(), done.clone());
        thread::spawn(move || connect_loop(echo_addr, &stop, &done, &AtomicUsize::new(BEFORE)))
    };
    let wait_done = |n: u64| {
        let until = done.load(Ordering::SeqCst) + n;
        let end = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < until && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_done(100);

    let mut ha = HaproxyTakingOver::start(&ha_cfg, &lb_sock, first.pid());
    assert!(
        first.wait_exit(Duration::from_secs(10)).is_some(),
        "lb did not exit after haproxy -x -sf: {}",
        first.logs().join("\n")
    );
    assert!(first.find_log("_getsocks: handed").is_some());
    wait_done(300);
    eprintln!(
        "haproxy serves alone from connection {}",
        done.load(Ordering::SeqCst)
    );

    let ha_sock_arg = ha_sock.display().to_string();
    let ha_pid = ha.child.id().to_string();
    let second =
        Lb::start_with(&LbOpts::new(&lb_cfg, "splice").args(&["-x", &ha_sock_arg, "-sf", &ha_pid]));
    assert!(
        second.wait_for_log(
            &format!("{echo_addr}: serving on 1 socket(s) taken over"),
            Duration::ZERO
        ),
        "lb did not take HAProxy's socket: {}",
        second.logs().join("\n")
    );
    let end = Instant::now() + Duration::from_secs(10);
    while ha.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "haproxy did not exit after lb -x -sf");
        thread::sleep(Duration::from_millis(20));
    }
    wait_done(300);
    stop.store(true, Ordering::SeqCst);
    let tally = looping.join().unwrap();
    eprintln!("connect loop across lb → haproxy → lb: {tally:?}");
    assert_eq!(
        (tally.refused, tally.reset, &tally.other),
        (0, 0, &Vec::<String>::new()),
        "{} ok",
        tally.ok
    );
    assert!(tally.ok >= 600, "only {} connections in the loop", tally.ok);
}

/// HAProxy takes one socket per `bind`; lb with two threads has two: the old lb says which it
/// keeps (their queues leave with it) instead of losing them silently.
#[test]
fn sockets_haproxy_leaves_are_named() {
    if std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|s| s.trim() == "1")
    {
        eprintln!("SKIPPED: net.ipv4.tcp_migrate_req is 1 here: nothing is lost, nothing to say");
        return;
    }
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let (lb_sock, ha_sock) = (socket_path(), socket_path());
    let ports = (free_port(), free_port());
    let expose = "expose-fd listeners";
    let lb_cfg = config(&lb_sock, expose, "    nbthread 2", ports, &flow, &echo);
    let ha_cfg = config(&ha_sock, expose, "", ports, &flow, &echo);
    let mut old = Lb::start(&lb_cfg, "splice");
    let _ha = HaproxyTakingOver::start(&ha_cfg, &lb_sock, old.pid());
    assert!(
        old.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        old.logs().join("\n")
    );
    let warn = old
        .find_log("listening socket(s) the new process did not take")
        .unwrap_or_else(|| panic!("no warning: {}", old.logs().join("\n")));
    assert!(
        warn.contains("2 listening socket(s)") && warn.contains(&local(ports.1).to_string()),
        "{warn}"
    );
}

/// `-st PID`: the old lb stops at once (SIGTERM), yet the sockets it handed over stay open in
/// the new one: the connect loop sees no refusal.
#[test]
fn hard_stop_of_the_old_lb_spares_the_handed_over_sockets() {
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(&sock, "expose-fd listeners", "", ports, &flow, &echo);
    let mut old = Lb::start(&cfg, "splice");
    let echo_addr = local(ports.1);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let looping = {
        let (stop, done) = (stop.clone(), done.clone());
        thread::spawn(move || connect_loop(echo_addr, &stop, &done, &AtomicUsize::new(BEFORE)))
    };
    let wait_done = |n: u64| {
        let until = done.load(Ordering::SeqCst) + n;
        let end = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < until && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_done(100);
    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    let _new =
        Lb::start_with(&LbOpts::new(&cfg, "splice").args(&["-x", &sock_arg, "-st", &old_pid]));
    assert!(old.wait_exit(Duration::from_secs(10)).is_some());
    wait_done(500);
    stop.store(true, Ordering::SeqCst);
    let tally = looping.join().unwrap();
    assert_eq!(tally.refused, 0, "{tally:?}");
    assert!(tally.ok >= 500, "{tally:?}");
}

/// Takes the connect loop's late echoes that the kernel's stalls explain out of its failures
/// ([`common::upgrade::LoopTally::excuse_kernel_stalls`]), and says which.
fn excuse_kernel_stalls(
    tally: &mut common::upgrade::LoopTally,
    works: Option<&common::kernel::PsockWorks>,
) {
    for e in tally.excuse_kernel_stalls(works) {
        eprintln!("late echo during a kernel stall (not lb's): {e}");
    }
}

/// `FDSize` of process `pid`: how many fds its table holds (`/proc/PID/status`).
fn fd_table_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("FDSize in /proc/PID/status")
}

/// lb sizes its fd table at start, before its threads exist, for every fd `RLIMIT_NOFILE`
/// allows (up to 65,536): a multi-threaded process that grows its table waits for an RCU
/// grace period with every fd allocation of every thread stalled (`expand_fdtable`), which on
/// a loaded machine held the old lb ~10 s in `fcntl(F_DUPFD_CLOEXEC)` during `_getflows`.
#[test]
fn the_fd_table_is_sized_at_start() {
    let echo = Backend::echo_idle("e", HOLD);
    let port = free_port();
    let cfg = common::simple_config(port, &[], &[format!("e {}", echo.addr)]);
    for plane in ["splice", common::SOCKMAP_AT_ONCE] {
        let lb = Lb::start(&cfg, plane);
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", lb.pid())).unwrap();
        let hard: u64 = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        let size = fd_table_size(lb.pid());
        assert!(
            size >= hard.min(1 << 16),
            "{plane}: an fd table of {size} fds at start, for a hard RLIMIT_NOFILE of {hard}"
        );
    }
}

/// `scur` of `proxy/name` in the CSV of `show stat` on `sock`.
fn scur(sock: &std::path::Path, proxy: &str, name: &str) -> Option<u64> {
    let csv = common::stats::cli(sock, "show stat");
    csv.lines().find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.len() > 4 && f[0] == proxy && f[1] == name)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// Beyond HAProxy: the new lb takes the old one's established flows (`_getflows`), so the old
/// process exits within seconds while they are still open. The old lb runs on splice; the new
/// one runs on `dataplane` and puts them on its own.
fn established_flows_move_to_the_new_process(dataplane: &str) {
    flows_move("splice", dataplane);
}

/// The old lb on `old_plane`, the new one on `dataplane`. The 64 MiB flow (stopped half-way up)
/// and the 200 held echo flows go on after the move with SHA-256 intact and their half-close
/// passed on, the new lb's stats count them, and a connect loop across it all sees no refusal
/// and no reset. With both on sockmap, the flows in the old one's kernel maps move in place
/// (the new lb serves them from those maps).
fn flows_move(old_plane: &str, dataplane: &str) {
    // The kernel's psock workers, traced: their stalls excuse late echoes, nothing else.
    let works = common::kernel::PsockWorks::start();
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(
        &sock,
        "expose-fd listeners",
        "    hard-stop-after 2m",
        ports,
        &flow,
        &echo,
    );
    let mut old = Lb::start_with(&LbOpts::new(&cfg, old_plane).bin_from_env(OLD_BIN));
    let (big_addr, echo_addr) = (local(ports.0), local(ports.1));
    let held = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let big = {
        let (held, go) = (held.clone(), go.clone());
        thread::spawn(move || big_flow(big_addr, &held, &go))
    };
    let echoes: Vec<_> = (0..HELD_ECHO)
        .map(|id| {
            let (held, go) = (held.clone(), go.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || echo_flow(echo_addr, id, &held, &go))
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_mins(1);
    while held.load(Ordering::SeqCst) < HELD_ECHO + 1 {
        assert!(
            Instant::now() < deadline,
            "the held flows did not all start"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let looping = {
        let (stop, done) = (stop.clone(), done.clone());
        thread::spawn(move || connect_loop(echo_addr, &stop, &done, &AtomicUsize::new(BEFORE)))
    };
    let wait_done = |n: u64| {
        let until = done.load(Ordering::SeqCst) + n;
        let end = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < until && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_done(200);
    let in_maps = old_plane != "splice";
    if in_maps {
        // Past `--sockmap-after`: the held flows are in the kernel maps.
        thread::sleep(Duration::from_millis(300));
    }

    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    let t0 = Instant::now();
    let new =
        Lb::start_with(&LbOpts::new(&cfg, dataplane).args(&["-x", &sock_arg, "-sf", &old_pid]));
    // Every held flow is still open: the old process exits all the same.
    let exit = old.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    eprintln!("the old lb exited {took:?} after the new one was started");
    assert!(
        exit.is_some_and(|s| s.success()),
        "the old lb did not exit while its flows were open ({exit:?}): {}",
        old.logs().join("\n")
    );
    assert!(
        !in_maps
            || new
                .find_log("serving flows in the old process's kernel maps")
                .is_some(),
        "no flow came in the old kernel maps: {}",
        new.logs().join("\n")
    );
    // The new lb logs its count once the exchange has ended, which may be after the old lb
    // is gone.
    let _ = new.wait_for_log(
        "established flow(s) from the old process",
        Duration::from_secs(5),
    );
    let taken = new
        .find_log("established flow(s) from the old process")
        .unwrap_or_default();
    // The held flows, and any of the connect loop's that was open at the time.
    let n: u64 = taken
        .split("took ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n > HELD_ECHO, "{taken}\n{}", new.logs().join("\n"));
    // The new lb counts them: the frontend's and the server's sessions (the connect loop's
    // short connections come on top).
    assert_eq!(scur(&sock, "big", "FRONTEND"), Some(1));
    assert_eq!(scur(&sock, "flows", "f"), Some(1));
    let echo_cur = scur(&sock, "echoes", "e").unwrap_or(0);
    assert!(echo_cur >= HELD_ECHO, "server e counts {echo_cur} sessions");
    assert!(scur(&sock, "echo", "FRONTEND").unwrap_or(0) >= HELD_ECHO);

    wait_done(500);
    go.store(true, Ordering::SeqCst);
    let mut failures: Vec<String> = echoes
        .into_iter()
        .filter_map(|t| t.join().unwrap().err())
        .collect();
    if let Err(e) = big.join().unwrap() {
        failures.push(e);
    }
    stop.store(true, Ordering::SeqCst);
    let mut tally = looping.join().unwrap();
    eprintln!("connect loop across the move: {tally:?}");
    excuse_kernel_stalls(&mut tally, works.as_ref());
    assert!(
        failures.is_empty(),
        "moved flows broken:\n{}\nthe backends' errors (a held flow they ended): {:?} {:?}",
        failures.join("\n"),
        echo.errors(),
        flow.errors()
    );
    let want_up = stream_summary(
        FlowHeader {
            id: 0,
            order: HalfClose::ClientFirst,
            up: 0,
            down: 0,
        }
        .up_seed(),
        BIG,
    );
    assert_eq!(
        flow.wait_received(0, Duration::from_secs(5)),
        Some(want_up),
        "64 MiB upload"
    );
    assert_eq!(
        (tally.refused, tally.reset, &tally.other),
        (0, 0, &Vec::<String>::new()),
        "the connect loop: {} ok",
        tally.ok
    );
    // Ended in the new process: its counts drop back.
    let end = Instant::now() + Duration::from_secs(10);
    while scur(&sock, "echoes", "e") != Some(0) && Instant::now() < end {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(scur(&sock, "echoes", "e"), Some(0));
    assert_eq!(scur(&sock, "flows", "f"), Some(0));
    drop(new);
}

/// A flow moved while bytes stream through it both ways (an echo fed without a pause, read
/// at once): the old lb stops it between a read and a write, and not one byte is lost or
/// doubled. The new lb logs it at its end as one session (its tcplog line: every byte since
/// the first accept, `Tw`/`Tc` unknown); the old one logs nothing for it.
fn a_busy_flow_moves_without_losing_a_byte(dataplane: &str) {
    busy_flow_moves("splice", dataplane);
}

/// [`a_busy_flow_moves_without_losing_a_byte`] with the old lb on `old_plane` (on sockmap, a
/// flow that moves does so in the kernel maps, in place).
fn busy_flow_moves(old_plane: &str, dataplane: &str) {
    use sha2::{Digest, Sha256};
    let flow = Backend::flow_idle("f", HOLD);
    let echo = Backend::echo_idle("e", HOLD);
    let syslog = common::ops::Syslog::start();
    let sock = socket_path();
    let ports = (free_port(), free_port());
    let cfg = config(
        &sock,
        "expose-fd listeners",
        &format!(
            "    hard-stop-after 2m\n    log 127.0.0.1:{} local0",
            syslog.addr.port()
        ),
        ports,
        &flow,
        &echo,
    )
    .replace(
        "frontend echo\n",
        "frontend echo\n    log global\n    option tcplog\n",
    );
    let mut old = Lb::start_with(&LbOpts::new(&cfg, old_plane).bin_from_env(OLD_BIN));
    let s = connect(local(ports.1)).unwrap();
    let me = s.local_addr().unwrap();
    let mut reader = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent_bytes = Arc::new(AtomicU64::new(0));
    // At most 8 GiB or 60 s: stops once told, after the move.
    let writer = {
        let (stop, sent_bytes) = (stop.clone(), sent_bytes.clone());
        let mut s = s;
        thread::spawn(move || -> Result<(u64, [u8; 32]), String> {
            let mut data = DataStream::new(0xB05E);
            let mut sha = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let end = Instant::now() + Duration::from_mins(1);
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < end && sent < 8 << 30 {
                data.fill(&mut buf);
                s.write_all(&buf)
                    .map_err(|e| format!("write at {sent}: {e}"))?;
                sha.update(&buf);
                sent += buf.len() as u64;
                sent_bytes.store(sent, Ordering::SeqCst);
            }
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            Ok((sent, sha.finalize().into()))
        })
    };
    let read = thread::spawn(move || -> Result<(u64, [u8; 32]), String> {
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        reader
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok((got, sha.finalize().into())),
                Ok(n) => {
                    sha.update(&buf[..n]);
                    got += n as u64;
                }
                Err(e) => return Err(format!("read at {got}: {e}")),
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent_bytes.load(Ordering::SeqCst) < 16 << 20 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let sock_arg = sock.display().to_string();
    let old_pid = old.pid().to_string();
    let before = sent_bytes.load(Ordering::SeqCst);
    let new =
        Lb::start_with(&LbOpts::new(&cfg, dataplane).args(&["-x", &sock_arg, "-sf", &old_pid]));
    // A flow moves only at a point where lb holds none of its bytes: a spliced one between
    // a read and a write, one in the kernel maps when its drain (what lb moves itself once a
    // direction's credit runs out) is empty. One this busy both ways may find no such point
    // within the hand-over's wait (on a loaded machine, often: seen on splice, and on the maps
    // under a load average of 25-35), and then stays with the old lb until it ends, as a flow
    // that can't be handed over does (#12). Both ends are checked the same way. Idle flows in
    // the maps must move: `established_flows_move_to_the_new_process`.
    assert!(
        new.wait_for_log(
            "established flow(s) from the old process",
            Duration::from_secs(30)
        ),
        "{}",
        new.logs().join("\n")
    );
    let moved = new.find_log("took 1 established flow(s)").is_some();
    eprintln!("busy flow handed over: {moved}");
    let mut exit = if moved {
        old.wait_exit(Duration::from_secs(10))
    } else {
        None
    };
    let at_move = sent_bytes.load(Ordering::SeqCst);
    // Some more after the move (through the new process, or the old one that kept it), then
    // the end.
    let until = at_move + (16 << 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent_bytes.load(Ordering::SeqCst) < until && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().unwrap();
    let got = read.join().unwrap();
    eprintln!(
        "busy flow: {before} bytes sent before the upgrade, {at_move} when it moved or was \
         kept, {:?} in all",
        sent.as_ref().map(|s| s.0)
    );
    if !moved {
        // Kept: the old lb exits once its last flow has ended.
        exit = old.wait_exit(Duration::from_secs(10));
    }
    assert!(
        exit.is_some_and(|s| s.success()),
        "the old lb did not exit once its busy flow was handed over or had ended ({exit:?}): \
         {}",
        old.logs().join("\n")
    );
    // At once, the flow is in the maps from its start; after `--sockmap-after`, a flow this
    // busy may not have found the quiet point to enter them yet, and moves from splice.
    let in_maps = new
        .find_log("serving flows in the old process's kernel maps")
        .is_some();
    eprintln!("busy flow moved from the kernel maps: {in_maps}");
    assert!(
        !moved || old_plane != common::SOCKMAP_AT_ONCE || in_maps,
        "the busy flow moved, but not in the old kernel maps: {}",
        new.logs().join("\n")
    );
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert!(at_move > before, "the flow stood still across the upgrade");
    assert_eq!(got.0, sent.0, "bytes echoed");
    assert!(
        got.1 == sent.1,
        "SHA-256 of the echo differs from what was sent"
    );
    let needle = format!("127.0.0.1:{} [", me.port());
    let _ = syslog.wait_for(&needle, 1, Duration::from_secs(10));
    thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = syslog
        .lines()
        .into_iter()
        .filter(|l| l.contains(&needle))
        .collect();
    assert_eq!(lines.len(), 1, "one session line: {lines:?}");
    let line = &lines[0];
    // Logged by the process that ended it; a moved flow's `Tw`/`Tc` are unknown there.
    let pid = if moved { new.pid() } else { old.pid() };
    assert!(line.contains(&format!("[{pid}]")), "{line}");
    assert!(
        line.contains(" echo echoes/e -1/-1/") == moved
            && line.contains(" echo echoes/e ")
            && line.contains(&format!(" {} --", got.0)),
        "{line}"
    );
    drop(new);
}
