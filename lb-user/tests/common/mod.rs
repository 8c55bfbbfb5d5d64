//! Shared harness of the end-to-end tests: starts the real `lb` binary on a temp config, collects
//! its stderr, waits for `lb ready`, and stops it again; free ports; `lb -c` runs. Backend
//! servers live in `servers`, deterministic data in `data`, client sides in `scenarios`.
//!
//! Environment: `LB_TEST_BIN` runs the suite against another binary with lb's CLI (another
//! build, or a wrapper around a reference implementation to check the tests themselves);
//! `LB_TEST_BULK_BYTES` changes the size of the bulk transfers (default 1 GiB in release builds).
#![allow(
    dead_code,
    unused_macros,
    reason = "shared by several test binaries; each uses only part of it"
)]

pub mod certs;
pub mod chaos;
pub mod data;
pub mod haproxy;
pub mod health;
pub mod kernel;
pub mod line_echo;
pub mod netns;
pub mod ops;
pub mod peers;
pub mod postgres;
pub mod routed;
pub mod scenarios;
pub mod servers;
pub mod stats;
pub mod upgrade;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const LB: &str = env!("CARGO_BIN_EXE_lb");

/// How long a log line may trail the state it reports: the test reads lb's stderr through a
/// thread, so a line lb wrote may not be read yet when the effect it names is already visible.
pub const LOG_LAG: Duration = Duration::from_secs(3);

/// The binary to run: [`LB`], or `LB_TEST_BIN` when set (to run the suite against another build,
/// or against a wrapper around a reference implementation to check the tests themselves).
pub fn lb_bin() -> String {
    std::env::var("LB_TEST_BIN").unwrap_or_else(|_| LB.to_string())
}
/// How long lb may take to print `lb ready`: a hang detector, not a speed bound (on the sockmap
/// planes the start loads and verifies the eBPF program; under a load average near 100 that took
/// more than 10 s once).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long lb's stderr may stay open after it exited (a child it left holding it, or the
/// reader thread behind on a loaded machine).
pub const LOG_DRAIN: Duration = Duration::from_secs(2);
/// How long lb may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Generates one `#[test]` per data plane for each named `fn name(dataplane: &str)`:
/// `sockmap::name` (lb's default: a flow starts on splice and is handed over to the maps after
/// `--sockmap-after`), `sockmap_at_once::name` (in the maps from the first byte, `--sockmap-after
/// 0`: every byte of every flow goes through the kernel path) and `splice::name`.
macro_rules! on_both_planes {
    ($($name:ident),* $(,)?) => {
        mod sockmap {
            $( #[test] fn $name() { super::$name("sockmap"); } )*
        }
        mod sockmap_at_once {
            $( #[test] fn $name() { super::$name(crate::common::SOCKMAP_AT_ONCE); } )*
        }
        mod splice {
            $( #[test] fn $name() { super::$name("splice"); } )*
        }
    };
}

/// The `dataplane` argument of tests for `--dataplane sockmap --sockmap-after 0`.
pub const SOCKMAP_AT_ONCE: &str = "sockmap-at-once";

/// lb's arguments for a test's `dataplane` argument.
pub fn dataplane_args(dataplane: &str) -> Vec<&str> {
    if dataplane == SOCKMAP_AT_ONCE {
        vec!["--dataplane", "sockmap", "--sockmap-after", "0"]
    } else {
        vec!["--dataplane", dataplane]
    }
}

/// A port on 127.0.0.1 for lb's frontends, free (TCP and UDP) when picked.
///
/// It lies below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so no `bind` to
/// `:0` and no `connect` of this or any other test can be given it before lb binds it: a port
/// taken from `:0` and released was once handed straight back to the test's own backend, and lb
/// then failed to bind. Ports are handed out in turn from a start that differs per process, so
/// two tests of one binary never get the same one. Where the range leaves too few ports below it,
/// the OS picks as before.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SPAN: std::sync::OnceLock<Option<(u16, u16)>> = std::sync::OnceLock::new();
    let Some((low, high)) = *SPAN.get_or_init(below_ephemeral_ports) else {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        return l.local_addr().unwrap().port();
    };
    let span = usize::from(high - low);
    let start = std::process::id() as usize * 7919;
    for _ in 0..span {
        let port = low + ((start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(local(port)).is_ok() && std::net::UdpSocket::bind(local(port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {low}..{high}");
}

/// Ports `10000..` up to the start of the kernel's ephemeral range, when that leaves at least
/// 1 000 of them.
fn below_ephemeral_ports() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_low: u16 = range.split_whitespace().next()?.parse().ok()?;
    (ephemeral_low >= 11_000).then_some((10_000, ephemeral_low))
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `defaults` with `mode tcp` and generous timeouts, for tests that do not test timeouts.
pub const DEFAULTS: &str = "\
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
";

/// The simplest full config: `frontend fe` on `port` → `backend be` with `servers`
/// (`server` lines without the keyword, e.g. `"s1 127.0.0.1:1234 weight 2"`) and extra `backend`
/// lines (`balance ...`, `option ...`).
pub fn simple_config(port: u16, backend_lines: &[&str], servers: &[String]) -> String {
    let mut c = String::from("global\n    maxconn 4096\n\n");
    c.push_str(DEFAULTS);
    let _ = write!(
        c,
        "\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\nbackend be\n"
    );
    for l in backend_lines {
        let _ = writeln!(c, "    {l}");
    }
    for s in servers {
        let _ = writeln!(c, "    server {s}");
    }
    c
}

/// A config file that exists as long as this value does.
pub struct TempCfg {
    pub path: PathBuf,
}

impl TempCfg {
    pub fn new(text: &str) -> TempCfg {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "lb-test-{}-{}.cfg",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempCfg { path }
    }

    /// The file name alone (what any form of the path printed in `FILE:LINE:` ends with).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for TempCfg {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

/// Lines read from a child's stream, shared with the reader thread.
#[derive(Default)]
struct LogBuf {
    state: Mutex<LogState>,
    changed: Condvar,
}

fn spawn_reader(stream: impl Read + Send + 'static, prefix: String, buf: Option<Arc<LogBuf>>) {
    thread::Builder::new()
        .name(format!("log-{prefix}"))
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{prefix}] {line}");
                if let Some(b) = &buf {
                    b.state.lock().unwrap().lines.push(line);
                    b.changed.notify_all();
                }
            }
            if let Some(b) = &buf {
                b.state.lock().unwrap().closed = true;
                b.changed.notify_all();
            }
        })
        .expect("spawn log reader");
}

/// How to start lb.
#[derive(Clone, Debug, Default)]
pub struct LbOpts {
    /// Config texts, one `-f` each, in order.
    pub configs: Vec<String>,
    /// `--dataplane` value; `None` leaves it out.
    pub dataplane: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Words run before lb, a program that execs lb in a changed context (`ip netns exec NAME`,
    /// `setpriv ...`); lb's pid stays the child's pid.
    pub wrapper: Vec<String>,
    /// `RLIMIT_NOFILE` (soft and hard) to run lb under; `None` leaves the test's own.
    pub nofile: Option<u64>,
    /// Extra arguments after the `-f` files and `--dataplane` (`-x SOCKET`, `-sf PID`).
    pub args: Vec<String>,
    /// The binary, instead of [`lb_bin`]'s.
    pub bin: Option<String>,
}

impl LbOpts {
    pub fn new(config: &str, dataplane: &str) -> LbOpts {
        LbOpts {
            configs: vec![config.to_string()],
            dataplane: Some(dataplane.to_string()),
            env: Vec::new(),
            wrapper: Vec::new(),
            nofile: None,
            args: Vec::new(),
            bin: None,
        }
    }

    /// Runs the binary named by the environment variable `var` where it is set (an older
    /// release, for a test between two versions), else [`lb_bin`]'s.
    #[must_use]
    pub fn bin_from_env(mut self, var: &str) -> LbOpts {
        self.bin = std::env::var(var).ok().filter(|b| !b.is_empty());
        self
    }

    /// Adds arguments after the others (`-x SOCKET`, `-sf PID`).
    #[must_use]
    pub fn args(mut self, words: &[&str]) -> LbOpts {
        self.args.extend(words.iter().map(ToString::to_string));
        self
    }

    /// Runs lb in network namespace `name` (`ip netns exec NAME lb ...`).
    #[must_use]
    pub fn netns(self, name: &str) -> LbOpts {
        self.wrapped(&["ip", "netns", "exec", name])
    }

    /// Runs lb as `WORDS... lb ...`; the first word must exec lb (`setpriv`, `ip netns exec`).
    #[must_use]
    pub fn wrapped(mut self, words: &[&str]) -> LbOpts {
        self.wrapper = words.iter().map(ToString::to_string).collect();
        self
    }

    #[must_use]
    pub fn env(mut self, k: &str, v: &str) -> LbOpts {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// A running `lb`. Dropping it stops it (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and
/// removes its config files.
pub struct Lb {
    child: Child,
    log: Arc<LogBuf>,
    cfgs: Vec<TempCfg>,
    exit: Option<ExitStatus>,
}

impl Lb {
    /// Starts lb on `config` with `--dataplane dataplane` and waits for `lb ready`. Panics with
    /// lb's log if it does not come within [`READY_TIMEOUT`] or lb exits. For `sockmap` or
    /// `splice` it also checks lb said `data plane: <that>`, so a test never passes on the
    /// wrong plane.
    pub fn start(config: &str, dataplane: &str) -> Lb {
        Lb::start_with(&LbOpts::new(config, dataplane))
    }

    pub fn start_with(opts: &LbOpts) -> Lb {
        let plane = opts.dataplane.clone();
        let lb = Lb::try_start_with(opts).unwrap_or_else(|e| panic!("{e}"));
        if let Some(p) = plane.filter(|p| p == "sockmap" || p == SOCKMAP_AT_ONCE || p == "splice") {
            let want = format!("data plane: {}", p.trim_end_matches("-at-once"));
            assert!(
                lb.wait_for_log(&want, Duration::from_secs(2)),
                "lb --dataplane {p} did not log `{want}`; log:\n{}",
                lb.logs().join("\n")
            );
        }
        lb
    }

    /// Like [`Lb::start_with`] but returns lb's log as the error instead of panicking.
    pub fn try_start_with(opts: &LbOpts) -> Result<Lb, String> {
        let cfgs: Vec<TempCfg> = opts.configs.iter().map(|c| TempCfg::new(c)).collect();
        let bin = opts.bin.clone().unwrap_or_else(lb_bin);
        let mut cmd = match opts.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        for c in &cfgs {
            cmd.arg("-f").arg(&c.path);
        }
        if let Some(p) = &opts.dataplane {
            cmd.args(dataplane_args(p));
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.nofile {
            limit_nofile(&mut cmd, n);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {bin}: {e}"))?;
        let log = Arc::new(LogBuf::default());
        let pid = child.id();
        spawn_reader(
            child.stderr.take().unwrap(),
            format!("lb {pid}"),
            Some(log.clone()),
        );
        spawn_reader(
            child.stdout.take().unwrap(),
            format!("lb {pid} stdout"),
            None,
        );
        let mut lb = Lb {
            child,
            log,
            cfgs,
            exit: None,
        };
        if lb.wait_for_log("lb ready", READY_TIMEOUT) {
            return Ok(lb);
        }
        let status = lb.stop();
        Err(format!(
            "lb did not get ready within {READY_TIMEOUT:?} (exit: {status:?}); config:\n{}\nlog:\n{}",
            opts.configs.join("\n---\n"),
            lb.logs().join("\n")
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the text of config file `i` (the `i`-th `-f`), for a reload with SIGHUP.
    pub fn rewrite_config(&self, i: usize, text: &str) {
        std::fs::write(&self.cfgs[i].path, text).expect("rewrite config");
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.state.lock().unwrap().lines.clone()
    }

    /// The first stderr line containing `needle`.
    pub fn find_log(&self, needle: &str) -> Option<String> {
        let st = self.log.state.lock().unwrap();
        st.lines.iter().find(|l| l.contains(needle)).cloned()
    }

    /// Waits until a stderr line contains `needle`; false after `timeout` or when lb's stderr
    /// closes (lb exited) without one.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.log.state.lock().unwrap();
        loop {
            if st.lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                return false;
            }
            st = self.log.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Asserts that lb logs a line containing `needle`, now or within [`LOG_LAG`]: the line that
    /// reports a state may trail the state itself, which the test may already see elsewhere.
    pub fn expect_log(&self, needle: &str) -> String {
        assert!(
            self.wait_for_log(needle, LOG_LAG),
            "lb never logged {needle:?}; log:\n{}",
            self.logs().join("\n")
        );
        self.find_log(needle).expect("the line just seen")
    }

    /// Waits up to `timeout` for lb's stderr to close (its reader has every line).
    fn wait_log_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.log.state.lock().unwrap();
        while !st.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self.log.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it cannot have been reaped (and its pid
        // reused) before `exit` is set, which only happens through `wait_exit`.
        if self.exit.is_none() {
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// Waits up to `timeout` for lb to exit, and then (at most [`LOG_DRAIN`] more) for its
    /// reader to take its last stderr lines: a test that looks for what lb said as it exited
    /// finds it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exit = Some(s);
                self.wait_log_closed(LOG_DRAIN);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns the exit status after SIGTERM,
    /// or `None` when lb had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_exit(STOP_TIMEOUT) {
            return Some(s);
        }
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
        None
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if self.stop().is_none() {
            eprintln!(
                "lb {} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed",
                self.pid()
            );
        }
    }
}

/// What a run of lb that ends by itself (`lb -c`, a failing start) gave.
#[derive(Debug)]
pub struct RunOutcome {
    pub status: ExitStatus,
    pub stderr: String,
}

/// Runs lb with `args` (after the `-f` files made from `configs`) to its exit; kills it and
/// panics if it runs longer than `timeout`. Returns the outcome and the config files (kept until
/// the caller drops them, so their names can be matched in messages).
pub fn run_lb(
    configs: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (RunOutcome, Vec<TempCfg>) {
    let cfgs: Vec<TempCfg> = configs.iter().map(|c| TempCfg::new(c)).collect();
    let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
    for c in &cfgs {
        argv.push("-f".into());
        argv.push(c.path.clone().into_os_string());
    }
    (run_lb_args(&argv, env, timeout), cfgs)
}

/// Runs lb with exactly `argv` to its exit; kills it and panics after `timeout`.
pub fn run_lb_args(argv: &[OsString], env: &[(&str, &str)], timeout: Duration) -> RunOutcome {
    let mut cmd = Command::new(lb_bin());
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", lb_bin()));
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait lb") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("lb {argv:?} still running after {timeout:?}; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap_or_default();
    for l in stderr.lines() {
        eprintln!("[lb {}] {l}", child.id());
    }
    RunOutcome { status, stderr }
}

/// `lb -c -f FILE...` on the given config texts.
pub fn lb_check(configs: &[&str]) -> (RunOutcome, Vec<TempCfg>) {
    run_lb(configs, &["-c"], &[], Duration::from_secs(20))
}

/// `lb -c -f path` on an existing file.
pub fn lb_check_file(path: &Path) -> RunOutcome {
    let argv = [
        OsString::from("-c"),
        "-f".into(),
        path.as_os_str().to_owned(),
    ];
    run_lb_args(&argv, &[], Duration::from_secs(20))
}

/// Size of the bulk transfers: 1 GiB as the issue asks. Debug builds (where SHA-256 and the
/// generator are ~50× slower) use 64 MiB; `LB_TEST_BULK_BYTES` overrides both.
pub fn bulk_bytes() -> u64 {
    if let Some(n) = std::env::var("LB_TEST_BULK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if cfg!(debug_assertions) {
        64 << 20
    } else {
        1 << 30
    }
}

/// Sets the child's `RLIMIT_NOFILE` (soft and hard) to `n`.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
