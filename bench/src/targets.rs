//! The things measured: a direct connection (no proxy: the limit), lb on each data plane (and
//! `auto`, as users run it), HAProxy (and a second, identical one: the control) and nginx. Each proxy runs as our child with a config generated into a temp dir,
//! listening on loopback ports chosen at run time, and is killed when the bench ends (normally,
//! on Ctrl-C, or on a panic).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::procfs;

/// Errors starting a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{what} is not installed ({path} missing){hint}")]
    Missing {
        what: &'static str,
        path: String,
        hint: &'static str,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited during start-up ({status}); its output:\n{log}")]
    Exited {
        what: &'static str,
        status: String,
        log: String,
    },
    #[error("{what} was not listening after {secs} s; its output:\n{log}")]
    NotReady {
        what: &'static str,
        secs: u64,
        log: String,
    },
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
}

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Client straight to the backend: what the machine can do without a proxy.
    Direct,
    /// lb with `--dataplane auto`, the default users run.
    LbAuto,
    LbSockmap,
    LbSplice,
    Haproxy,
    /// A second HAProxy, started exactly as [`Kind::Haproxy`] (the same config, its own process
    /// and ports): the A/A control. Its ratio to HAProxy is HAProxy against itself, what a
    /// per-round ratio moves by with nothing changed (the noise floor the lb targets' ratios
    /// are read against).
    HaproxyAgain,
    Nginx,
}

impl Kind {
    /// Every target, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Direct,
        Kind::LbAuto,
        Kind::LbSockmap,
        Kind::LbSplice,
        Kind::Haproxy,
        Kind::HaproxyAgain,
        Kind::Nginx,
    ];

    /// The synthetic workloads' default targets (`auto` and the control `haproxy-again` are
    /// measured with the real clients).
    pub const SYNTHETIC: [Kind; 5] = [
        Kind::Direct,
        Kind::LbSockmap,
        Kind::LbSplice,
        Kind::Haproxy,
        Kind::Nginx,
    ];

    /// Short name used in tables, JSON and `--targets`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::LbAuto => "lb-auto",
            Kind::LbSockmap => "lb-sockmap",
            Kind::LbSplice => "lb-splice",
            Kind::Haproxy => "haproxy",
            Kind::HaproxyAgain => "haproxy-again",
            Kind::Nginx => "nginx",
        }
    }

    /// The inverse of [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// The two services every target forwards to: a sink for bulk transfers and an echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backends {
    pub sink: SocketAddr,
    pub echo: SocketAddr,
}

/// Where a proxy listens, one frontend per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frontends {
    pub bulk: SocketAddr,
    pub echo: SocketAddr,
}

/// Settings shared by every proxy's config, so that they are compared on equal terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Worker threads (HAProxy `nbthread`, lb `nbthread`, nginx `worker_processes`).
    pub threads: usize,
    /// Concurrent connections each proxy must accept (`maxconn`, `worker_connections`).
    pub maxconn: u32,
}

/// The haproxy.cfg that both HAProxy and lb run: the same file, which is lb's promise. HAProxy
/// splices (`option splice-auto`); lb warns that it does not know that option and ignores it.
#[cfg(test)]
pub fn haproxy_cfg(fe: Frontends, be: Backends, t: Tuning) -> String {
    haproxy_cfg_routes(&synthetic_routes(fe, be), t)
}

/// One frontend forwarding to one server: its name in the config, where it listens, where it
/// forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub name: &'static str,
    pub bind: SocketAddr,
    pub server: SocketAddr,
}

#[cfg(test)]
fn synthetic_routes(fe: Frontends, be: Backends) -> [Route; 2] {
    [
        Route {
            name: "bulk",
            bind: fe.bulk,
            server: be.sink,
        },
        Route {
            name: "echo",
            bind: fe.echo,
            server: be.echo,
        },
    ]
}

/// [`haproxy_cfg`] for any set of routes.
pub fn haproxy_cfg_routes(routes: &[Route], t: Tuning) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "global\n    maxconn {maxconn}\n    nbthread {threads}\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 120s\n    \
         timeout server 120s\n    option splice-auto\n\n",
        maxconn = t.maxconn,
        threads = t.threads
    );
    for &Route { name, bind, server } in routes {
        let _ = write!(
            s,
            "frontend fe_{name}\n    bind {bind}\n    maxconn {maxconn}\n    default_backend be_{name}\n\n\
             backend be_{name}\n    server s1 {server} maxconn 0\n\n",
            maxconn = t.maxconn
        );
    }
    s
}

/// The lb config: HAProxy's without `option splice-auto`, which lb would only warn about (it
/// chooses its data plane with `--dataplane`).
#[cfg(test)]
pub fn lb_cfg(fe: Frontends, be: Backends, t: Tuning) -> String {
    lb_cfg_routes(&synthetic_routes(fe, be), t)
}

/// [`lb_cfg`] for any set of routes.
pub fn lb_cfg_routes(routes: &[Route], t: Tuning) -> String {
    haproxy_cfg_routes(routes, t).replace("    option splice-auto\n", "")
}

/// nginx with the stream module: one `server` per frontend, `proxy_half_close on` so that a
/// half-close passes through as with the others, as many workers as the others have threads.
#[cfg(test)]
pub fn nginx_conf(dir: &Path, module: &Path, fe: Frontends, be: Backends, t: Tuning) -> String {
    nginx_conf_routes(dir, module, &synthetic_routes(fe, be), t, true)
}

/// [`nginx_conf`] for any set of routes; without `master`, one process that does a worker's
/// work (`master_process off`, and `worker_processes` is then ignored).
pub fn nginx_conf_routes(
    dir: &Path,
    module: &Path,
    routes: &[Route],
    t: Tuning,
    master: bool,
) -> String {
    let dir = dir.display();
    let mut s = format!(
        "load_module {module};\n\
         daemon off;\n\
         master_process {master};\n\
         worker_processes {threads};\n\
         worker_rlimit_nofile {nofile};\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\n\
         events {{\n    worker_connections {conns};\n    multi_accept on;\n}}\n\n\
         stream {{\n",
        module = module.display(),
        master = if master { "on" } else { "off" },
        threads = t.threads,
        nofile = u64::from(t.maxconn) * 4 + 1024,
        // Each proxied connection takes two (client and upstream), per worker.
        conns = u64::from(t.maxconn) * 2 + 64,
    );
    for &Route { bind, server, .. } in routes {
        let _ = write!(
            s,
            "    server {{\n        listen {bind} backlog=4096;\n        proxy_pass {server};\n        \
             proxy_half_close on;\n        proxy_timeout 120s;\n    }}\n"
        );
    }
    s.push_str("}\n");
    s
}

/// Paths of the proxies to run.
#[derive(Clone, Debug)]
pub struct Programs {
    pub lb: PathBuf,
    pub haproxy: PathBuf,
    pub nginx: PathBuf,
    pub nginx_stream_module: PathBuf,
}

impl Default for Programs {
    fn default() -> Self {
        Programs {
            lb: PathBuf::from("target/release/lb"),
            haproxy: PathBuf::from("/usr/sbin/haproxy"),
            nginx: PathBuf::from("/usr/sbin/nginx"),
            nginx_stream_module: PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so"),
        }
    }
}

/// A running target: where to connect, and the process (none for direct).
#[derive(Debug)]
pub struct Running {
    pub kind: Kind,
    /// The synthetic workloads' two frontends (the first two routes).
    pub addrs: Frontends,
    /// Where each route given to [`start_routes`] listens, in the same order.
    pub fronts: Vec<SocketAddr>,
    proc: Option<Proc>,
}

impl Running {
    /// The pid whose memory (with its children) counts as the proxy's.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// Kills the proxy now (a fresh one is started in its place by the caller).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// An error if the proxy has exited since it started (a crash mid-run).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match &mut self.proc {
            None => Ok(()),
            Some(p) => match p.child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(st)) => Err(format!(
                    "{} exited ({st}); its output:\n{}",
                    self.kind.name(),
                    tail(&p.log)
                )),
                Err(e) => Err(format!("{}: cannot wait for it: {e}", self.kind.name())),
            },
        }
    }

    /// The last lines of the proxy's output (stderr/stdout, and nginx's error log).
    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(|p| tail(&p.log)).unwrap_or_default()
    }
}

#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // The whole process group: nginx's workers too.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        forget_child(pid);
    }
}

/// How a target's process is started: by itself ([`Wrapper::NONE`]), or as the last arguments
/// of another program's command line (`valgrind --tool=callgrind ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrapper<'a> {
    /// The command line put before the target's; empty: none.
    pub command: &'a [&'a str],
    /// How long start-up may take, until every frontend listens (and lb says it is ready).
    pub ready_within: Duration,
    /// nginx without its master (`master_process off`): the one process does a worker's work.
    /// For wrappers that can only reach the process they started (valgrind's gdbserver is not
    /// set up in forked children, so `callgrind_control` does not see nginx's workers).
    pub single_process: bool,
}

impl Wrapper<'_> {
    /// The target run directly.
    pub const NONE: Wrapper<'static> = Wrapper {
        command: &[],
        ready_within: Duration::from_secs(20),
        single_process: false,
    };
}

/// Starts `kind` forwarding to `be`, with its files in `dir`; waits until it listens.
pub fn start(
    kind: Kind,
    programs: &Programs,
    dir: &Path,
    be: Backends,
    tuning: Tuning,
) -> Result<Running, TargetError> {
    start_routes(
        kind,
        programs,
        dir,
        &[("bulk", be.sink), ("echo", be.echo)],
        tuning,
    )
}

/// Starts `kind` with one frontend per `(name, server)`, each on a free loopback port, with its
/// files in `dir/<kind>`; waits until every frontend listens.
pub fn start_routes(
    kind: Kind,
    programs: &Programs,
    dir: &Path,
    servers: &[(&'static str, SocketAddr)],
    tuning: Tuning,
) -> Result<Running, TargetError> {
    start_wrapped(kind, programs, dir, servers, tuning, Wrapper::NONE)
}

/// [`start_routes`] with the target's command line run by `wrapper`: the one place where a
/// target's command line is built.
pub fn start_wrapped(
    kind: Kind,
    programs: &Programs,
    dir: &Path,
    servers: &[(&'static str, SocketAddr)],
    tuning: Tuning,
    wrapper: Wrapper,
) -> Result<Running, TargetError> {
    let unset = SocketAddr::from(([0, 0, 0, 0], 0));
    let frontends = |fronts: &[SocketAddr]| Frontends {
        bulk: fronts.first().copied().unwrap_or(unset),
        echo: fronts.get(1).or(fronts.first()).copied().unwrap_or(unset),
    };
    if kind == Kind::Direct {
        let fronts: Vec<SocketAddr> = servers.iter().map(|&(_, a)| a).collect();
        return Ok(Running {
            kind,
            addrs: frontends(&fronts),
            fronts,
            proc: None,
        });
    }
    let avoid: Vec<u16> = servers.iter().map(|(_, a)| a.port()).collect();
    let binds = free_loopback_ports(servers.len(), &avoid)?;
    let routes: Vec<Route> = servers
        .iter()
        .zip(binds)
        .map(|(&(name, server), bind)| Route { name, bind, server })
        .collect();
    let fronts: Vec<SocketAddr> = routes.iter().map(|r| r.bind).collect();
    let dir = dir.join(kind.name());
    std::fs::create_dir_all(&dir).map_err(|source| TargetError::Write {
        path: dir.clone(),
        source,
    })?;
    let log = dir.join("output.log");
    // The program and its arguments, run directly or by the wrapper.
    let (mut cmd, ready_line) = match kind {
        Kind::Direct => unreachable!("handled above"),
        Kind::LbAuto | Kind::LbSockmap | Kind::LbSplice => {
            need(
                &programs.lb,
                "lb",
                " (run `cargo xtask build`, or `cargo xtask bench` which builds it)",
            )?;
            let cfg = write(&dir.join("lb.cfg"), &lb_cfg_routes(&routes, tuning))?;
            let plane = match kind {
                Kind::LbSockmap => "sockmap",
                Kind::LbSplice => "splice",
                _ => "auto",
            };
            let mut c = wrapped(wrapper, &programs.lb);
            c.arg("-f").arg(cfg).args(["--dataplane", plane]);
            c.env("RUST_LOG", "info");
            (c, Some("lb ready"))
        }
        // The control is HAProxy again: the same program, config and flags, in `dir/haproxy-again`.
        Kind::Haproxy | Kind::HaproxyAgain => {
            need(
                &programs.haproxy,
                "HAProxy",
                " (Debian's `haproxy`; `cargo xtask setup` installs it)",
            )?;
            let cfg = write(
                &dir.join("haproxy.cfg"),
                &haproxy_cfg_routes(&routes, tuning),
            )?;
            let mut c = wrapped(wrapper, &programs.haproxy);
            // -db: foreground, no daemon; -f: our config only.
            c.arg("-db").arg("-f").arg(cfg);
            (c, None)
        }
        Kind::Nginx => {
            need(
                &programs.nginx,
                "nginx",
                " (Debian's `nginx`; `cargo xtask setup` installs it)",
            )?;
            need(
                &programs.nginx_stream_module,
                "nginx's stream module",
                " (Debian's `libnginx-mod-stream`; `cargo xtask setup` installs it)",
            )?;
            let text = nginx_conf_routes(
                &dir,
                &programs.nginx_stream_module,
                &routes,
                tuning,
                !wrapper.single_process,
            );
            let cfg = write(&dir.join("nginx.conf"), &text)?;
            let mut c = wrapped(wrapper, &programs.nginx);
            // -p: prefix for relative paths; -e: the start-up error log (else /var/log/nginx).
            c.arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(cfg);
            (c, None)
        }
    };
    let out = std::fs::File::create(&log).map_err(|source| TargetError::Write {
        path: log.clone(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| TargetError::Write {
        path: log.clone(),
        source,
    })?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            // Die with the bench even if it is SIGKILLed and cannot clean up.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let shown = format!("{cmd:?}");
    let child = cmd
        .spawn()
        .map_err(|source| TargetError::Spawn { cmd: shown, source })?;
    remember_child(child.id() as i32);
    let mut proc = Proc { child, log };
    wait_ready(kind, &mut proc, &fronts, ready_line, wrapper.ready_within)?;
    Ok(Running {
        kind,
        addrs: frontends(&fronts),
        fronts,
        proc: Some(proc),
    })
}

/// `program` to run with its arguments to come, under `wrapper`'s command if it has one.
fn wrapped(wrapper: Wrapper, program: &Path) -> Command {
    match wrapper.command.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

fn wait_ready(
    kind: Kind,
    p: &mut Proc,
    fronts: &[SocketAddr],
    ready_line: Option<&str>,
    limit: Duration,
) -> Result<(), TargetError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Err(TargetError::Exited {
                what: kind.name(),
                status: st.to_string(),
                log: tail(&p.log),
            });
        }
        let logged =
            ready_line.is_none_or(|l| std::fs::read_to_string(&p.log).is_ok_and(|s| s.contains(l)));
        let mut listening = logged;
        for f in fronts {
            listening = listening && procfs::listening_now(f.port())?;
        }
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TargetError::NotReady {
                what: kind.name(),
                secs: limit.as_secs(),
                log: tail(&p.log),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn need(path: &Path, what: &'static str, hint: &'static str) -> Result<(), TargetError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(TargetError::Missing {
            what,
            path: path.display().to_string(),
            hint,
        })
    }
}

fn write(path: &Path, text: &str) -> Result<PathBuf, TargetError> {
    std::fs::write(path, text).map_err(|source| TargetError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// `n` distinct loopback ports nobody listens on now, none of them in `avoid` (a server's port
/// that is not listening at this moment): all held while they are picked, then released.
pub fn free_loopback_ports(n: usize, avoid: &[u16]) -> Result<Vec<SocketAddr>, TargetError> {
    let mut held = Vec::new();
    let mut out = Vec::with_capacity(n);
    // Bounded: the kernel hands out each held port once.
    for _ in 0..n + avoid.len() + 16 {
        if out.len() == n {
            break;
        }
        let l =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| TargetError::Write {
                path: PathBuf::from("127.0.0.1:0"),
                source,
            })?;
        let a = l.local_addr().map_err(|source| TargetError::Write {
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })?;
        if !avoid.contains(&a.port()) {
            out.push(a);
        }
        held.push(l);
    }
    Ok(out)
}

/// How long a loopback connection stays in `TIME_WAIT` before a connect to the same server may
/// take its port: `net.ipv4.tcp_tw_reuse` (2, loopback only, the default) lets a connect reuse
/// it once a second passed (`tcp_twsk_unique`: the monotonic second of its last timestamp on
/// older kernels, a second since it entered `TIME_WAIT` on newer ones); until then connects
/// search the port range past it.
const TIME_WAIT_REUSE: Duration = Duration::from_millis(1_050);

/// Waits until the `TIME_WAIT` connections the last run left can be reused, before the next
/// target's run against the same server. Every proxy connects to its server from 127.0.0.1
/// (and so do the real clients' `direct` runs): a run with a connection per request leaves
/// thousands of them to the server's port, and without this wait the next run paid for the
/// last one's. In the real clients' rounds, whose rotation keeps the targets' cyclic order,
/// `lb-auto` came right after `direct` (whose clients connect twice as fast as a proxy's) in
/// every round but the first: in 10-round runs of `redis-benchmark -k 0` (2 000 connections
/// per test) SET through `lb-auto` fell to 5 300–6 300 requests/s in one or two rounds of every
/// run against 11 500–14 400 in the others (`lb-splice`, second after `direct`, down to
/// 6 700–9 200), HAProxy and `lb-sockmap` never below 9 500; with only `lb-auto`, HAProxy and
/// `direct` running, HAProxy fell to 6 000 in the rounds it followed `direct`. With the wait,
/// none.
pub fn ports_reusable() {
    std::thread::sleep(TIME_WAIT_REUSE);
}

/// A loopback port nobody listens on now (bound to `:0`, then released).
pub fn free_loopback_port() -> Result<SocketAddr, TargetError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| TargetError::Write {
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    l.local_addr().map_err(|source| TargetError::Write {
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })
}

fn tail(log: &Path) -> String {
    let mut text = std::fs::read_to_string(log).unwrap_or_default();
    if let Ok(e) = std::fs::read_to_string(log.with_file_name("error.log")) {
        text.push_str(&e);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Pids of running children, readable from a signal handler (no locks, no allocation).
static CHILDREN: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

pub fn remember_child(pid: i32) {
    for slot in &CHILDREN {
        if slot
            .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

pub fn forget_child(pid: i32) {
    for slot in &CHILDREN {
        let _ = slot.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Kills every child's process group. Async-signal-safe: atomics and `kill` only.
pub fn kill_all_children() {
    for slot in &CHILDREN {
        let pid = slot.swap(0, Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe and has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    kill_all_children();
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// On Ctrl-C/SIGTERM kill the proxies and exit; on a panic kill them too.
pub fn install_cleanup() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only uses async-signal-safe calls.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all_children();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (Frontends, Backends, Tuning) {
        (
            Frontends {
                bulk: "127.0.0.1:40001".parse().unwrap(),
                echo: "127.0.0.1:40002".parse().unwrap(),
            },
            Backends {
                sink: "127.0.0.1:50001".parse().unwrap(),
                echo: "127.0.0.1:50002".parse().unwrap(),
            },
            Tuning {
                threads: 2,
                maxconn: 12000,
            },
        )
    }

    #[test]
    fn haproxy_config_is_tcp_spliced_and_sized() {
        let (fe, be, t) = addrs();
        let c = haproxy_cfg(fe, be, t);
        assert!(c.contains("    mode tcp\n"));
        assert!(c.contains("    option splice-auto\n"));
        assert!(c.contains("    nbthread 2\n"));
        assert!(c.contains("global\n    maxconn 12000\n"));
        assert!(c.contains("frontend fe_bulk\n    bind 127.0.0.1:40001\n"));
        assert!(c.contains("backend be_bulk\n    server s1 127.0.0.1:50001 maxconn 0\n"));
        assert!(c.contains("frontend fe_echo\n    bind 127.0.0.1:40002\n"));
        assert!(c.contains("backend be_echo\n    server s1 127.0.0.1:50002 maxconn 0\n"));
        assert_eq!(c.matches("maxconn 12000").count(), 3);
    }

    #[test]
    fn lb_config_is_haproxys_without_splice_auto() {
        let (fe, be, t) = addrs();
        let c = lb_cfg(fe, be, t);
        assert!(!c.contains("splice"));
        assert_eq!(
            c.lines().count() + 1,
            haproxy_cfg(fe, be, t).lines().count()
        );
    }

    #[test]
    fn nginx_config_half_closes_and_sizes() {
        let (fe, be, t) = addrs();
        let m = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        let c = nginx_conf(Path::new("/tmp/x"), m, fe, be, t);
        assert!(c.starts_with("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"));
        assert!(c.contains("daemon off;\n"));
        assert!(c.contains("worker_processes 2;\n"));
        assert!(c.contains("pid /tmp/x/nginx.pid;\n"));
        assert!(c.contains("worker_connections 24064;\n"));
        assert!(
            c.contains("listen 127.0.0.1:40001 backlog=4096;\n        proxy_pass 127.0.0.1:50001;")
        );
        assert!(
            c.contains("listen 127.0.0.1:40002 backlog=4096;\n        proxy_pass 127.0.0.1:50002;")
        );
        assert_eq!(c.matches("proxy_half_close on;").count(), 2);
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn nginx_single_process_has_no_master() {
        let (fe, be, t) = addrs();
        let m = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        let routes = synthetic_routes(fe, be);
        let one = nginx_conf_routes(Path::new("/tmp/x"), m, &routes, t, false);
        assert!(one.contains("master_process off;\n"));
        assert!(!one.contains("master_process on;"));
        assert!(nginx_conf(Path::new("/tmp/x"), m, fe, be, t).contains("master_process on;\n"));
    }

    #[test]
    fn a_wrapper_goes_before_the_program() {
        let prog = Path::new("/usr/sbin/haproxy");
        let bare = wrapped(Wrapper::NONE, prog);
        assert_eq!(bare.get_program(), prog);
        assert_eq!(bare.get_args().count(), 0);
        let w = Wrapper {
            command: &["valgrind", "--tool=callgrind"],
            ..Wrapper::NONE
        };
        let mut c = wrapped(w, prog);
        c.arg("-db");
        assert_eq!(c.get_program(), "valgrind");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["--tool=callgrind", "/usr/sbin/haproxy", "-db"]);
    }

    #[test]
    fn picked_ports_are_distinct_and_avoid_the_servers() {
        let first = free_loopback_ports(1, &[]).unwrap()[0].port();
        let p = free_loopback_ports(6, &[first]).unwrap();
        assert_eq!(p.len(), 6);
        let mut ports: Vec<u16> = p.iter().map(SocketAddr::port).collect();
        assert!(!ports.contains(&first));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("envoy"), None);
        assert_eq!(Kind::HaproxyAgain.name(), "haproxy-again");
        assert_eq!(Kind::from_name("haproxy-again"), Some(Kind::HaproxyAgain));
    }

    #[test]
    fn the_control_is_not_a_synthetic_default() {
        assert!(Kind::ALL.contains(&Kind::HaproxyAgain));
        assert!(!Kind::SYNTHETIC.contains(&Kind::HaproxyAgain));
        assert!(Kind::SYNTHETIC.contains(&Kind::Haproxy));
    }

    #[test]
    fn the_control_is_started_as_haproxy_in_its_own_dir() {
        let p = Programs {
            haproxy: PathBuf::from("/nonexistent/haproxy"),
            ..Programs::default()
        };
        let dir = std::env::temp_dir().join(format!("bench-test-aa-{}", std::process::id()));
        let (_, be, t) = addrs();
        let e = start(Kind::HaproxyAgain, &p, &dir, be, t).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("HAProxy is not installed (/nonexistent/haproxy missing)"),
            "{e}"
        );
        assert!(dir.join("haproxy-again").is_dir());
        assert!(!dir.join("haproxy").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_programs_are_named() {
        let p = Programs {
            haproxy: PathBuf::from("/nonexistent/haproxy"),
            ..Programs::default()
        };
        let dir = std::env::temp_dir().join(format!("bench-test-{}", std::process::id()));
        let (_, be, t) = addrs();
        let e = start(Kind::Haproxy, &p, &dir, be, t).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("HAProxy is not installed (/nonexistent/haproxy missing)"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
