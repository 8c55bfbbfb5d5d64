//! The `lb` binary: command line shaped like haproxy's (`-f`, `-c`), plus `lb demo` and
//! `lb ctl` (a runtime API client for scripts).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod fd_limits;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use fd_limits::{maxconn_for, ring_threads, settle_fd_budget, strict_limits_error};
use lb_user::config::{self, Config};
use lb_user::daemon::{
    block_signals, daemonize, enter_chroot, wait_signal, wait_signal_for, PidFile,
};
use lb_user::dataplane::{sockmap, DataplaneChoice};
use lb_user::flows::FlowControl;
use lb_user::generation::{Current, Generation, Process, Reloading, Serving};
use lb_user::listener::{self, Listeners, PlaneSetup};
use nix::sys::signal::Signal;

/// lb: a TCP load balancer that reads haproxy.cfg and splices flows in the kernel.
#[derive(Parser, Debug)]
#[command(
    name = "lb",
    version,
    about,
    disable_version_flag = true,
    after_help = "Signals: SIGHUP and SIGUSR2 reload the -f files (a broken configuration is \
                  rejected and the running one keeps serving); SIGUSR1 soft-stops (stop \
                  accepting, finish the established connections, within `hard-stop-after`, \
                  then exit); SIGTTOU pauses every frontend (its sockets stop listening) and \
                  SIGTTIN resumes them; SIGTERM and SIGINT stop.\n\nBinary upgrade (as HAProxy's): with `stats socket PATH \
                  level admin expose-fd listeners` in the running lb's configuration, \
                  `lb -f CFG -x PATH -sf OLDPID` takes the old process's listening sockets \
                  (their queued clients with them), serves, then soft-stops the old one: no \
                  connection is refused.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Configuration file (haproxy.cfg syntax, mode tcp), or a directory of `.cfg` files read in
    /// name order; repeat to read several in order.
    #[arg(short = 'f', value_name = "FILE")]
    files: Vec<PathBuf>,
    #[arg(
        short = 'c',
        help = "Check the configuration and exit: 0 if valid, else every error as FILE:LINE: message"
    )]
    check: bool,
    /// Write the process id to this file once ready (removed at exit); overrides the global
    /// `pidfile`.
    #[arg(short = 'p', value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    /// Run in the background (as the global `daemon`): the command returns once lb serves, with
    /// the pid file written.
    #[arg(short = 'D')]
    daemon: bool,
    /// Data plane: `auto` uses sockmap when the kernel and privileges allow (for bulk flows,
    /// with 4 CPUs or more), else splice.
    #[arg(long, value_enum, default_value_t = DataplaneChoice::Auto)]
    dataplane: DataplaneChoice,
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_SOCKMAP_AFTER_MS,
        help = "sockmap: a flow runs on splice for its first MS milliseconds, then moves into \
                the kernel maps (0: at once). Short connections end before and skip the \
                kernel's per-socket setup"
    )]
    sockmap_after: u64,
    #[arg(
        long,
        value_name = "US",
        default_value_t = lb_user::ring::spin::DEFAULT_LIMIT_US,
        help = "Before a thread sleeps, it keeps its CPU up to US microseconds while work comes \
                that soon (learned per thread), so the next completion needs no wake of an idle \
                CPU (0: sleep at once)"
    )]
    spin_us: u32,
    #[arg(
        long,
        help = "Log level (error, warn, info, debug, trace; default info, error with -q); \
                RUST_LOG overrides it"
    )]
    log_level: Option<String>,
    /// Binary upgrade: take the listening sockets of the lb (or HAProxy) whose runtime API
    /// socket is SOCKET (`stats socket SOCKET expose-fd listeners`) instead of binding them;
    /// once serving, take an old lb's established flows too (those it can hand over).
    #[arg(short = 'x', value_name = "SOCKET")]
    old_socket: Option<PathBuf>,
    /// Once serving, soft-stop these processes (SIGUSR1): they stop accepting, finish the
    /// connections they did not hand over and exit. Spelled `-sf PID...` as in HAProxy.
    #[arg(long = "sf", value_name = "PID", num_args = 1..)]
    soft_finish: Vec<i32>,
    /// Once serving, stop these processes at once (SIGTERM). Spelled `-st PID...`.
    #[arg(long = "st", value_name = "PID", num_args = 1..)]
    terminate: Vec<i32>,
    /// HAProxy's master-worker mode (`-W`, or `-Ws` for a systemd `Type=notify` unit, as
    /// global `master-worker`): lb is one process that reloads itself in place on SIGHUP or
    /// SIGUSR2 and tells systemd when `NOTIFY_SOCKET` is set, so there is nothing to switch
    /// on; accepted so that HAProxy's command lines run unchanged.
    #[arg(short = 'W')]
    master_worker: bool,
    #[arg(long = "Ws", hide = true)]
    master_worker_systemd: bool,
    /// HAProxy's master CLI on a unix socket (`-S PATH[,mode,600][,level,operator]`, level
    /// admin by default): `show proc`, `reload`, and the runtime API's commands after `@1`
    /// (e.g. `echo '@1 show stat' | socat PATH -`).
    #[arg(short = 'S', value_name = "PATH[,OPTIONS]")]
    master_socket: Option<String>,
    /// Ignore server address resolution failures (HAProxy's `-dr`): a server whose name does
    /// not resolve starts in MAINT (resolution), as with `init-addr ...,none`, instead of
    /// stopping the start (or `-c`).
    #[arg(long = "dr")]
    ignore_resolution: bool,
    /// Stay in the foreground even with `daemon` in the configuration (HAProxy's `-db`).
    #[arg(long = "db")]
    no_background: bool,
    /// Quiet (as global `quiet`): no warnings and no "Configuration file is valid" on the
    /// console; the console log shows errors only unless --log-level is given.
    #[arg(short = 'q')]
    quiet: bool,
    /// Verbose: undoes -q and global `quiet`.
    #[arg(short = 'V')]
    verbose: bool,
    /// Print the version and exit (`-vv` too).
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// Whether the console stays quiet (`-q`, global `quiet`), `-V` undoing both.
    fn quiet(&self, config_quiet: bool) -> bool {
        (self.quiet || config_quiet) && !self.verbose
    }
}

/// The command line with HAProxy's two-letter options (`-sf`, `-st`, `-Ws`, `-db`, `-dr`, `-vv`)
/// spelled as clap reads them.
fn haproxy_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .map(|a| match a.to_str() {
            Some("-sf") => "--sf".into(),
            Some("-st") => "--st".into(),
            Some("-Ws") => "--Ws".into(),
            Some("-db") => "--db".into(),
            Some("-dr") => "--dr".into(),
            Some("-vv") => "-v".into(),
            _ => a,
        })
        .collect()
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start two demo backends, a listener in front of them and a stats page, and print how to
    /// try it.
    Demo {
        /// Port of the demo listener (the stats page takes 8404, or this port + 1).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Data plane for the demo.
        #[arg(long, value_enum, default_value_t = DataplaneChoice::Auto)]
        dataplane: DataplaneChoice,
    },
    /// Talk to a running lb through its runtime API socket (`stats socket`), e.g. from
    /// keepalived's `vrrp_script`: `lb ctl -S /run/lb/admin.sock check --backend app`.
    Ctl {
        /// The runtime API socket.
        #[arg(short = 'S', value_name = "SOCKET", default_value = lb_user::ctl::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Give up on lb after this long (connect, send, whole answer).
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout: u64,
        #[command(subcommand)]
        action: CtlAction,
    },
}

#[derive(Subcommand, Debug)]
enum CtlAction {
    /// Exit 0 if lb answers and every --backend has a usable server (UP, ready, weight > 0);
    /// 1 if lb does not answer; 3 if a named backend has no usable server or does not exist.
    Check {
        /// A backend that must have a usable server; repeat for several.
        #[arg(long = "backend", value_name = "NAME")]
        backends: Vec<String>,
    },
    /// Send one runtime API command (e.g. `show stat`) and print the answer.
    Cmd {
        /// The command's words.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

/// Default of `--sockmap-after`: longer than a request/answer connection on a LAN, short
/// enough that a bulk or long-lived flow spends almost all of its life in the kernel.
const DEFAULT_SOCKMAP_AFTER_MS: u64 = 20;

fn init_logging(level: &str) {
    let stderr = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .build();
    // stderr as before; warnings and notices also reach the `log` targets once they are open.
    if let Err(e) = lb_user::logging::install(stderr) {
        eprintln!("lb: cannot install the logger: {e}");
    }
}

/// lb's allocator: jemalloc. An idle flow's state is a few hundred bytes, but each flow's setup
/// (rules, balancing, connect) allocates and frees several KiB around it; glibc's heap reuses
/// those holes poorly and gives back only whole free pages at its top, so 3,000 idle flows
/// kept ~3.6 KiB of RSS each, ~10 MiB of it free holes between them. jemalloc keeps each size
/// class in runs of its own, so freed setups leave whole free pages (mimalloc does too, but
/// kept 7.5 KiB per idle flow at two threads).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read at its start; `_RJEM_MALLOC_CONF` in the environment overrides):
/// free pages go back to the system at once instead of after ~10 s, so a burst's setups leave
/// nothing behind: 1,167 -> 781 B per idle flow in the bench, with no more syscalls or page
/// faults per connection, in series or 16 at a time (measured: the pages a flow's setup frees
/// are reused by the next, or stay within a page still in use). Each thread's cache of freed
/// objects is swept every 1 MiB allocated instead of every 64 KiB: a connection's setup
/// allocates ~15 KiB, so the sweep ran every four connections (~500 instructions per
/// connection, 2 % of lb's own); a thread that goes quiet is flushed whole anyway
/// (`listener::trim`).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 63] = b"dirty_decay_ms:0,muzzy_decay_ms:0,tcache_gc_incr_bytes:1048576\0";

fn main() -> ExitCode {
    let cli = Cli::parse_from(haproxy_args());
    if let Some(Command::Ctl {
        socket,
        timeout,
        action,
    }) = &cli.command
    {
        return ctl(socket, Duration::from_millis(*timeout), action);
    }
    let level = match &cli.log_level {
        Some(l) => l.as_str(),
        None if cli.quiet(false) => "error",
        None => "info",
    };
    init_logging(level);
    // Still one thread: it takes NOTIFY_SOCKET out of the environment.
    let notify = lb_user::notify::Notifier::from_env();
    match run(&cli, &notify) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lb ctl`: one exchange with a running lb; the exit status is the answer.
fn ctl(socket: &Path, timeout: Duration, action: &CtlAction) -> ExitCode {
    match action {
        CtlAction::Check { backends } => {
            ExitCode::from(lb_user::ctl::check(socket, backends, timeout))
        }
        CtlAction::Cmd { words } => match lb_user::ctl::query(socket, &words.join(" "), timeout) {
            Ok(answer) => {
                print!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lb ctl: {e}");
                ExitCode::from(lb_user::ctl::EXIT_NOT_SERVING)
            }
        },
    }
}

fn run(cli: &Cli, notify: &lb_user::notify::Notifier) -> anyhow::Result<()> {
    lb_user::ring::spin::set_limit(Duration::from_micros(u64::from(cli.spin_us)));
    if let Some(Command::Demo { port, dataplane }) = &cli.command {
        let (port, dataplane) = (*port, *dataplane);
        let (config, text) = lb_user::demo::start(port)?;
        println!("{text}");
        let plane = (dataplane, Duration::from_millis(cli.sockmap_after));
        return serve(config, plane, &[], cli, notify);
    }
    if cli.files.is_empty() {
        bail!("no configuration file: use -f FILE (or `lb demo`); see --help");
    }
    if cli.ignore_resolution {
        config::ignore_resolution_failures();
    }
    let config = match config::load(&cli.files) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            bail!(
                "configuration has {} error{}",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
        }
    };
    // A bad `-S` stops the start before anything is bound (`-c` checks it too).
    if let Some(spec) = &cli.master_socket {
        config::master_socket(spec).map_err(anyhow::Error::msg)?;
    }
    let quiet = cli.quiet(config.global.quiet);
    for w in config.warnings.iter().filter(|_| !quiet) {
        eprintln!("{w}");
    }
    if cli.check {
        if !quiet {
            println!("Configuration file is valid");
        }
        return Ok(());
    }
    let plane = (cli.dataplane, Duration::from_millis(cli.sockmap_after));
    serve(config, plane, &cli.files, cli, notify)
}

/// The start line of the sockmap data plane, with when flows enter the kernel.
fn log_sockmap(after: Duration, ids: sockmap::MapIds) {
    let backlog = ids.backlog() >> 10;
    if ids.choosing() == sockmap::policy::Choosing::ByEvidence {
        let cpus = sockmap::policy::process_cpus();
        if let Some(n) = cpus.filter(|_| sockmap::policy::too_few_cpus(cpus)) {
            log::info!(
                "data plane: sockmap for bulk flows (auto), but every flow stays on splice: \
                 this process may run on {n} CPUs, fewer than the {} the kernel path needs to \
                 beat splice (the backlog kworker needs one of its own)",
                sockmap::policy::MIN_CPUS
            );
            return;
        }
        log::info!(
            "data plane: sockmap for bulk flows (auto: a flow that carried {} KiB on splice in \
             its first {} ms enters the kernel maps unless the CPU pressure is {} % or more or \
             one of its thread's flows there paused in the last {} s; every other flow stays \
             on splice; at most {backlog} KiB in flight per direction)",
            sockmap::policy::BULK_BYTES >> 10,
            after.as_millis(),
            sockmap::policy::CPU_PRESSURE_MAX,
            sockmap::policy::HOLD_OFF.as_secs()
        );
        return;
    }
    if after.is_zero() {
        log::info!(
            "data plane: sockmap (eBPF stream verdict, flows spliced in the kernel, at most \
             {backlog} KiB in flight per direction)"
        );
    } else {
        log::info!(
            "data plane: sockmap (eBPF stream verdict, flows spliced in the kernel after {} ms \
             on splice, at most {backlog} KiB in flight per direction)",
            after.as_millis()
        );
    }
}

/// Whether lb goes to the background (`-D`, global `daemon`; `-db` keeps it in front). The demo has started its
/// backends' threads already: it never forks. Nor does lb under a `Type=notify` unit: systemd
/// watches the process it started, which must stay in front.
fn forks(
    (asked, no_background): (bool, bool),
    files: &[PathBuf],
    notify: &lb_user::notify::Notifier,
) -> bool {
    if !asked || files.is_empty() || no_background {
        return false;
    }
    if notify.active() {
        log::warn!("'daemon' ignored: lb runs under systemd (NOTIFY_SOCKET is set)");
        return false;
    }
    true
}

/// What the process does before any thread starts (the sockmap plane's wake dispatcher starts
/// when it loads), since every thread inherits it.
fn before_threads() -> anyhow::Result<()> {
    // Each thread inherits the mask, so the handled signals reach only the signal loop. A
    // thread that left them unblocked would take one whenever the loop is busy (reloading,
    // starting) and die of it, with the whole process.
    block_signals()?;
    // Sized now, the fd table never grows while lb serves (a shared table grows only after an
    // RCU grace period, every thread's fd allocation waiting: `fd_table`).
    match lb_user::fd_table::reserve() {
        Ok(n) => log::debug!("fd table: {n} fds"),
        Err(e) => log::warn!("cannot size the fd table at start: {e}"),
    }
    Ok(())
}

/// Logs the listeners and `lb ready`, and writes the pid file (a daemon's is written by its
/// parent, which knows the pid before it returns: here it is only removed at the end).
fn announce_ready(
    gen: &Generation,
    (threads, maxconn): (usize, u32),
    daemonized: bool,
    pidfile: Option<PathBuf>,
) -> anyhow::Result<Option<PidFile>> {
    for fe in &gen.config.frontends {
        for b in &fe.binds {
            log::info!("frontend '{}': listening on {}", fe.name, b.addr);
        }
    }
    let pidfile = match (daemonized, pidfile) {
        (false, Some(p)) => Some(PidFile::create(&p)?),
        (true, Some(p)) => Some(PidFile(p)),
        (_, None) => None,
    };
    log::info!("lb ready: {threads} threads, maxconn {maxconn}");
    Ok(pidfile)
}

fn serve(
    config: Config,
    (choice, sockmap_after): (DataplaneChoice, Duration),
    files: &[PathBuf],
    cli: &Cli,
    notify: &lb_user::notify::Notifier,
) -> anyhow::Result<()> {
    before_threads()?;
    let pidfile = cli
        .pidfile
        .clone()
        .or_else(|| config.global.pidfile.clone());
    let daemon = forks(
        (cli.daemon || config.global.daemon, cli.no_background),
        files,
        notify,
    );
    let threads = config.global.nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Unknown user/group and unusable log targets stop the start before anything is bound.
    let tproxy = lb_user::privileges::needs_net_admin(&config);
    let privileges =
        lb_user::privileges::plan(&config.global)?.map(|p| lb_user::privileges::Plan {
            keep_net_admin: tproxy,
            ..p
        });
    if tproxy && !lb_user::privileges::has_net_admin() {
        // As HAProxy's "Some options which require full privileges might not work well".
        log::warn!(
            "'usesrc' (transparent proxying) needs CAP_NET_ADMIN, which lb does not have: \
             the connections of servers with it will fail"
        );
    }
    let logs = lb_user::logging::open(&config)?;
    lb_user::logging::activate(&logs);
    let (flows, flow_inboxes) = FlowControl::new(threads);
    let (mut listeners, inboxes) = Listeners::new(flow_inboxes);
    if let Some(path) = &cli.old_socket {
        let n = lb_user::upgrade::inherit_from(path)?;
        log::info!(
            "-x {}: received {n} socket(s) from the old process",
            path.display()
        );
    }
    lb_user::listener::spread::init(threads);
    // Bind first: errors (address in use, permission) stop the start with a clear message.
    let new = listeners.bind_new(&config).map_err(anyhow::Error::msg)?;
    lb_user::upgrade::finish_inheriting();
    let backlog = config
        .global
        .sockmap_backlog
        .unwrap_or(lb_common::DEFAULT_BACKLOG);
    let (plane, _loaded) = load_plane(choice, sockmap_after, backlog)?;
    let fds = maxconn_for(&config, threads, plane, ring_threads(plane, threads));
    if let Some(e) = strict_limits_error(&config, &fds) {
        anyhow::bail!("{e}");
    }
    let maxconn = fds.maxconn;
    lb_user::dataplane::splice::set_maxpipes(config.global.maxpipes);
    let gen = Generation::first(
        Arc::new(config),
        maxconn,
        logs,
        Process::new(flows, threads),
    );
    // Tracking servers take their tracked servers' state, then the server-state file, before
    // any check or connection sees the servers.
    lb_user::state::follow_tracked(&gen);
    lb_user::state::file::load_configured(&gen);
    let (stats_listeners, sockets) = bind_control(&gen, cli.master_socket.as_deref())?;
    let socket_paths: Vec<PathBuf> = sockets.iter().map(|s| s.conf.path.clone()).collect();
    // Still one thread: the last moment to fork. Everything is bound and loaded.
    let ready = if daemon {
        Some(daemonize(pidfile.as_deref())?)
    } else {
        None
    };
    if let Some(dir) = &gen.config.global.chroot {
        enter_chroot(dir, privileges.as_ref())?;
    }
    let current: Current = Serving::new(gen.clone());
    if let Some(plan) = &privileges {
        lb_user::privileges::arm(plan);
    }
    let checkers = lb_user::health::start(&gen).context("health checks")?;
    let _control = lb_user::admin::spawn_control_thread(current.clone(), stats_listeners, sockets)?;
    spawn_threads(inboxes, plane)?;
    if let Some(plan) = &privileges {
        drop_privileges(plan, threads)?;
    }
    if gen.config.global.set_dumpable {
        lb_user::privileges::make_dumpable(gen.config.global.strict_limits)?;
    }
    // Resolvers run unprivileged, after the drop.
    let resolvers = lb_user::dns::start(&gen)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the control runtime")?;
    rt.block_on(listeners.switch(listeners.plans(&gen, &new)?));
    settle_fd_budget(&gen.config, &fds);
    lb_user::state::resume(&gen);
    let _pidfile = announce_ready(&gen, (threads, maxconn), ready.is_some(), pidfile)?;
    notify.ready(&format!("serving generation {}", gen.number));
    if let Some(ready) = ready {
        ready.tell();
    }
    replace_old_processes(cli, &gen);
    let running = Running {
        gen,
        _checkers: checkers,
        _resolvers: resolvers,
    };
    serve_signals(
        running,
        &current,
        (files, plane),
        &mut listeners,
        &rt,
        notify,
    )?;
    remove_socket_files(&socket_paths);
    Ok(())
}

/// The old processes named by `-sf`/`-st`: soft-stopped first, so that they stop accepting
/// before their flows are taken; stopped (`-st`) after, so that their flows are taken before
/// they close them.
fn replace_old_processes(cli: &Cli, gen: &Generation) {
    stop_old_processes(cli, Signal::SIGUSR1);
    take_old_flows(cli, gen);
    stop_old_processes(cli, Signal::SIGTERM);
}

/// The runtime API's socket files, at the end: the control thread ends with the process and
/// its files should not outlive it; after a soft stop the paths belong to the process that
/// replaced this one.
fn remove_socket_files(paths: &[PathBuf]) {
    if lb_user::upgrade::is_soft_stopped() {
        return;
    }
    for p in paths {
        let _ = lb_user::outside::remove_file(p);
    }
}

/// The stats pages' listeners (by stats section) and the runtime API sockets.
type ControlSockets = (
    Vec<(usize, std::net::TcpListener)>,
    Vec<lb_user::admin::BoundSocket>,
);

/// Binds the stats pages and runtime API sockets (errors stop the start); the control thread
/// serves them from whatever generation is current.
fn bind_control(gen: &Generation, master_cli: Option<&str>) -> anyhow::Result<ControlSockets> {
    let stats_listeners = lb_user::stats::http::bind(gen)?;
    let master = master_cli.map(config::master_socket).transpose();
    let master = master.map_err(anyhow::Error::msg)?.map(|(sock, warnings)| {
        for w in warnings {
            log::warn!("{w}");
        }
        sock
    });
    let sockets = gen
        .config
        .global
        .stats_sockets
        .iter()
        .chain(&master)
        .map(lb_user::admin::bind_socket)
        .collect::<Result<Vec<_>, _>>()?;
    for s in &sockets {
        let what = if s.conf.master {
            "master CLI"
        } else {
            "stats socket"
        };
        log::info!("{what}: listening on {}", s.conf.path.display());
    }
    for st in &gen.config.stats {
        for b in &st.binds {
            log::info!("stats '{}': listening on {}", st.name, b.addr);
        }
    }
    Ok((stats_listeners, sockets))
}

/// Starts the accept threads, inbox `i` to thread `i`.
fn spawn_threads(inboxes: Vec<listener::ThreadInbox>, plane: PlaneSetup) -> anyhow::Result<()> {
    let threads = inboxes.len();
    for (thread, inbox) in inboxes.into_iter().enumerate() {
        std::thread::Builder::new()
            .name(format!("lb-{thread}"))
            .spawn(move || {
                if let Err(e) = listener::run_thread(inbox, plane, thread, threads) {
                    log::error!("thread {thread} stopped: {e}");
                    std::process::exit(1);
                }
            })
            .context("cannot start a thread")?;
    }
    Ok(())
}

/// `user`/`group`: drops once every thread has opened what needs privileges.
fn drop_privileges(plan: &lb_user::privileges::Plan, threads: usize) -> anyhow::Result<()> {
    lb_user::privileges::drop_after_threads(plan, threads)?;
    log::info!(
        "dropped privileges: now {}{}",
        lb_user::privileges::describe(plan),
        if plan.keep_net_admin {
            " (the accept threads keep CAP_NET_ADMIN, for usesrc)"
        } else {
            ""
        }
    );
    if plan.uid.is_some() && plan.gid.is_none() {
        log::warn!(
            "global 'user' without 'group': the group stays as it was (HAProxy does the same); \
             add 'group' to drop it too"
        );
    }
    Ok(())
}

/// Serves signals until a stop: SIGHUP and SIGUSR2 reload (the old generation's checkers and resolvers
/// stop as it is replaced), SIGTTOU/SIGTTIN pause and resume the frontends, SIGTERM/SIGINT stop
/// listening and return.
fn serve_signals(
    mut running: Running,
    current: &Current,
    (files, plane): (&[PathBuf], PlaneSetup),
    listeners: &mut Listeners,
    rt: &tokio::runtime::Runtime,
    notify: &lb_user::notify::Notifier,
) -> anyhow::Result<()> {
    loop {
        let sig = wait_signal()?;
        if sig == Signal::SIGUSR1 {
            notify.stopping();
            return soft_stop(listeners, &running.gen);
        }
        if sig == Signal::SIGTTOU || sig == Signal::SIGTTIN {
            let pause = sig == Signal::SIGTTOU;
            if !listener::frontends::pause_or_resume_all(&running.gen, pause) && pause {
                notify.stopping();
                return soft_stop(listeners, &running.gen);
            }
            continue;
        }
        if sig != Signal::SIGHUP && sig != Signal::SIGUSR2 {
            log::info!("received {sig}, stopping");
            notify.stopping();
            listeners.close_all();
            return Ok(());
        }
        if files.is_empty() {
            log::warn!("{sig}: nothing to reload (no -f files)");
            continue;
        }
        notify.reloading();
        log::info!("{sig}: reloading the configuration");
        let reloaded = reload((files, plane), listeners, current, rt);
        lb_user::admin::master::note_reload(reloaded.is_some());
        if let Some((next, reloading)) = reloaded {
            reloading.switch(next.clone());
            running.gen.retire();
            listeners.close_removed(&next.config);
            lb_user::state::resume(&next);
            match Running::start(next.clone()) {
                Ok(r) => running = r,
                Err(e) => log::error!("reload: {e:#}"),
            }
            // Only now: the runtime API and the state writer act on the new generation (the
            // changes that came during the reload waited for the switch and went there too).
            log::info!(
                "reload done: generation {} serves {} frontend(s) and {} backend(s)",
                next.number,
                next.config.frontends.len(),
                next.config.backends.len()
            );
        }
        // A rejected reload leaves the old generation serving: ready again either way.
        notify.ready(&format!("serving generation {}", running.gen.number));
    }
}

/// `-x`: takes the old process's established flows (those it can hand over), so that it can
/// exit at once; the others stay with it until they end.
fn take_old_flows(cli: &Cli, gen: &Generation) {
    let Some(path) = &cli.old_socket else {
        return;
    };
    let started = std::time::Instant::now();
    match lb_user::upgrade::take_flows(gen) {
        Ok(n) => log::info!(
            "-x {}: took {n} established flow(s) from the old process in {} ms",
            path.display(),
            started.elapsed().as_millis()
        ),
        Err(e) => log::warn!("{e}; the flows not taken stay with the old process"),
    }
}

/// `-sf`/`-st`: once this process serves, soft-stops (SIGUSR1) or stops (SIGTERM) the old
/// ones, as HAProxy does; `sig` says which of the two lists this call signals.
fn stop_old_processes(cli: &Cli, sig: Signal) {
    let pids = if sig == Signal::SIGUSR1 {
        &cli.soft_finish
    } else {
        &cli.terminate
    };
    for &pid in pids {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) => log::info!("sent {sig} to the old process {pid}"),
            Err(e) => log::warn!("cannot send {sig} to the old process {pid}: {e}"),
        }
    }
}

/// SIGUSR1: stops accepting (sockets shared with a new process stay open there, their queued
/// clients with them), lets the established connections finish, and returns once none is
/// left, at `hard-stop-after`, or at SIGTERM/SIGINT, whichever comes first.
fn soft_stop(listeners: &mut Listeners, gen: &Generation) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    lb_user::upgrade::soft_stop();
    if lb_user::upgrade::handed_over() && !lb_user::upgrade::migrates_requests() {
        let untaken = lb_user::upgrade::untaken();
        if !untaken.is_empty() {
            log::warn!(
                "soft stop: {} listening socket(s) the new process did not take ({}): clients \
                 queued on them get a reset when this process exits; run lb with nbthread 1 \
                 before an upgrade to HAProxy, or set net.ipv4.tcp_migrate_req=1",
                untaken.len(),
                untaken
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    listeners.close_all();
    let limit = gen.config.global.hard_stop_after;
    let left = || gen.process.conns.load(Ordering::Acquire);
    log::info!(
        "SIGUSR1: soft stop: no longer accepting; waiting for {} connection(s) to end{}",
        left(),
        limit.map_or(String::new(), |t| format!(
            " (hard-stop-after {} ms)",
            t.as_millis()
        ))
    );
    let deadline = limit.map(|t| std::time::Instant::now() + t);
    loop {
        // Unfinished work first: a connection an accept loop took is counted before it ends.
        let unfinished = lb_user::upgrade::unfinished();
        let n = left();
        if n == 0 && unfinished == 0 {
            log::info!("soft stop: no connection left; exiting");
            return Ok(());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            log::warn!("hard-stop-after: closing the {n} connection(s) left and exiting");
            return Ok(());
        }
        match wait_signal_for(SOFT_STOP_POLL)? {
            Some(sig @ (Signal::SIGTERM | Signal::SIGINT)) => {
                log::info!("received {sig} during the soft stop; closing {n} connection(s)");
                return Ok(());
            }
            Some(sig) => log::info!("soft stop under way: {sig} ignored"),
            None => {}
        }
    }
}

/// How often a soft-stopping process looks at its connection count.
const SOFT_STOP_POLL: Duration = Duration::from_millis(50);

/// Loads the data plane `--dataplane` asks for; with `auto`, sockmap when it loads, else
/// splice. The loaded program must stay alive as long as the process serves.
/// `backlog`: `tune.lb.sockmap-backlog` (bytes), the sockmap plane's bound per direction.
fn load_plane(
    choice: DataplaneChoice,
    sockmap_after: Duration,
    backlog: u64,
) -> anyhow::Result<(PlaneSetup, Option<sockmap::Loaded>)> {
    Ok(match choice {
        DataplaneChoice::Splice => {
            log::info!("data plane: splice (chosen with --dataplane splice)");
            (PlaneSetup::Splice, None)
        }
        DataplaneChoice::Sockmap => {
            let loaded = sockmap::load().context("--dataplane sockmap")?;
            let ids = loaded.map_ids().with_backlog(backlog);
            log_sockmap(sockmap_after, ids);
            (PlaneSetup::Sockmap(ids, sockmap_after), Some(loaded))
        }
        DataplaneChoice::Auto => match sockmap::load() {
            Ok(loaded) => {
                let ids = loaded.map_ids().with_backlog(backlog).by_evidence();
                log_sockmap(sockmap_after, ids);
                (PlaneSetup::Sockmap(ids, sockmap_after), Some(loaded))
            }
            Err(e) => {
                log::warn!(
                    "data plane: splice, because the sockmap data plane is unavailable: {e}"
                );
                (PlaneSetup::Splice, None)
            }
        },
    })
}

/// What runs for the generation serving now besides the threads' accept loops: its health
/// checkers and DNS resolvers. Dropping it stops them.
struct Running {
    gen: Arc<Generation>,
    _checkers: lb_user::health::Checkers,
    _resolvers: lb_user::dns::Resolving,
}

impl Running {
    fn start(gen: Arc<Generation>) -> anyhow::Result<Self> {
        let checkers = lb_user::health::start(&gen).context("health checks")?;
        let resolvers = lb_user::dns::start(&gen).context("resolvers")?;
        Ok(Self {
            gen,
            _checkers: checkers,
            _resolvers: resolvers,
        })
    }
}

/// SIGHUP (or SIGUSR2), as one transaction: load → open log targets → bind → build → hand out → switch.
/// Every step before the switch can fail, and a failure undoes what the steps before it did
/// (new log targets are dropped unused, new addresses unbound), so the running generation
/// keeps serving exactly as before, with its log targets, listeners and server state. The
/// switch itself cannot fail: every thread takes the new generation, and its log targets
/// become the ones in force. Established flows (in the kernel maps or in splice) carry on
/// untouched with the generation they were accepted in. From the copy of run-time state to the
/// switch, run-time changes wait (the returned [`Reloading`]; the caller switches).
fn reload<'a>(
    (files, plane): (&[PathBuf], PlaneSetup),
    listeners: &mut Listeners,
    serving: &'a Serving,
    rt: &tokio::runtime::Runtime,
) -> Option<(Arc<Generation>, Reloading<'a>)> {
    let current = &serving.load_full();
    let rejected = |why: &dyn std::fmt::Display| {
        log::error!(
            "reload rejected ({why}); still serving generation {}",
            current.number
        );
    };
    let config = match config::load(files) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                log::error!("{e}");
            }
            let n = errors.0.len();
            rejected(&format_args!("{n} error{}", if n == 1 { "" } else { "s" }));
            return None;
        }
    };
    for w in &config.warnings {
        log::warn!("{w}");
    }
    let threads = current.process.threads;
    if config.global.nbthread.is_some_and(|n| n != threads) {
        log::warn!("reload: a new nbthread takes effect only after a restart; keeping {threads}");
    }
    // Opened, not in force: dropped unused if a later step fails.
    let logs = match lb_user::logging::open(&config) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            rejected(&"cannot open a log target");
            return None;
        }
    };
    let new = match listeners.bind_new(&config) {
        Ok(new) => new,
        Err(e) => {
            log::error!("{e}");
            rejected(&"cannot bind");
            return None;
        }
    };
    let fds = maxconn_for(&config, 0, plane, ring_threads(plane, threads));
    if let Some(e) = strict_limits_error(&config, &fds) {
        log::error!("{e}");
        listeners.unbind(&new);
        rejected(&"strict-limits");
        return None;
    }
    let reloading = serving.begin_reload();
    let next = current.next(Arc::new(config), fds.maxconn, logs);
    lb_user::state::follow_tracked(&next);
    test_pause_after_copy();
    let plans = match listeners.plans(&next, &new) {
        Ok(p) => p,
        Err(e) => {
            listeners.unbind(&new);
            rejected(&format_args!(
                "cannot hand the listeners to the threads: {e}"
            ));
            return None;
        }
    };
    rt.block_on(listeners.switch(plans));
    settle_fd_budget(&next.config, &fds);
    lb_user::logging::activate(&next.logs);
    lb_user::dataplane::splice::set_maxpipes(next.config.global.maxpipes);
    Some((next, reloading))
}

/// Test switch: `LB_TEST_RELOAD_PAUSE_MS=N` holds a reload for N ms between its copy of
/// run-time state and its switch, so that a test can send a change in between.
const RELOAD_PAUSE_ENV: &str = "LB_TEST_RELOAD_PAUSE_MS";

fn test_pause_after_copy() {
    if let Some(ms) = std::env::var(RELOAD_PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        log::info!("reload: pausing {ms} ms after the copy of run-time state ({RELOAD_PAUSE_ENV})");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
