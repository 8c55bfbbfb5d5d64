//! The `lb` binary: command line shaped like haproxy's (`-f`, `-c`), plus `lb demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use lb_user::config::{self, Config};
use lb_user::dataplane::{sockmap, DataplaneChoice};
use lb_user::flows::FlowControl;
use lb_user::generation::{Current, Generation, Process};
use lb_user::listener::{self, Listeners, PlaneSetup};
use nix::sys::signal::{SigSet, Signal};

/// lb: a TCP load balancer that reads haproxy.cfg and splices flows in the kernel.
#[derive(Parser, Debug)]
#[command(
    name = "lb",
    version,
    about,
    after_help = "Signals: SIGHUP reloads the -f files (a broken configuration is rejected and \
                  the running one keeps serving); SIGTERM and SIGINT stop.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Configuration file (haproxy.cfg syntax, mode tcp); repeat to read several in order.
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
    /// Data plane: `auto` uses sockmap when the kernel and privileges allow, else splice.
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
        default_value = "info",
        help = "Log level (error, warn, info, debug, trace); RUST_LOG overrides it"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(Command::Demo { port, dataplane }) = &cli.command {
        let (port, dataplane) = (*port, *dataplane);
        let (config, text) = lb_user::demo::start(port)?;
        println!("{text}");
        let plane = (dataplane, Duration::from_millis(cli.sockmap_after));
        return serve(config, plane, &[], cli);
    }
    if cli.files.is_empty() {
        bail!("no configuration file: use -f FILE (or `lb demo`); see --help");
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
    for w in &config.warnings {
        eprintln!("{w}");
    }
    if cli.check {
        println!("Configuration file is valid");
        return Ok(());
    }
    let plane = (cli.dataplane, Duration::from_millis(cli.sockmap_after));
    serve(config, plane, &cli.files, cli)
}

/// The start line of the sockmap data plane, with when flows enter the kernel.
fn log_sockmap(after: Duration, ids: sockmap::MapIds) {
    let backlog = ids.backlog() >> 10;
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

/// Raises `RLIMIT_NOFILE` to its hard limit and derives the default `maxconn` from it: each
/// flow needs two sockets and, on splice, two pipes (four fds).
fn maxconn_for(config: &Config) -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
        match config.global.ulimit_n {
            // `ulimit-n`: soft and hard, as HAProxy.
            Some(n) => {
                lim.rlim_cur = libc::rlim_t::from(n);
                lim.rlim_max = lim.rlim_max.max(libc::rlim_t::from(n));
            }
            None => lim.rlim_cur = lim.rlim_max,
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) != 0 {
            log::warn!(
                "cannot set RLIMIT_NOFILE to {}: {}",
                lim.rlim_cur,
                std::io::Error::last_os_error()
            );
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
    }
    let by_fds = (lim.rlim_cur.saturating_sub(64) / 6).clamp(1, u64::from(u32::MAX)) as u32;
    match config.global.maxconn {
        Some(m) => {
            if m > by_fds {
                log::warn!(
                    "global maxconn {m} needs about {} file descriptors, RLIMIT_NOFILE is {}",
                    u64::from(m) * 6 + 64,
                    lim.rlim_cur
                );
            }
            m
        }
        None => by_fds,
    }
}

fn serve(
    config: Config,
    (choice, sockmap_after): (DataplaneChoice, Duration),
    files: &[PathBuf],
    cli: &Cli,
) -> anyhow::Result<()> {
    let pidfile = cli
        .pidfile
        .clone()
        .or_else(|| config.global.pidfile.clone());
    // The demo has started its backends' threads already: it never forks.
    let daemon = (cli.daemon || config.global.daemon) && !files.is_empty();
    let threads = config.global.nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Unknown user/group and unusable log targets stop the start before anything is bound.
    let privileges = lb_user::privileges::plan(&config.global)?;
    let logs = lb_user::logging::open(&config)?;
    lb_user::logging::activate(&logs);
    let (flows, flow_inboxes) = FlowControl::new(threads);
    let (mut listeners, inboxes) = Listeners::new(flow_inboxes);
    // Bind first: errors (address in use, permission) stop the start with a clear message.
    let new = listeners.bind_new(&config).map_err(anyhow::Error::msg)?;
    let backlog = config
        .global
        .sockmap_backlog
        .unwrap_or(lb_common::DEFAULT_BACKLOG);
    let (plane, _loaded) = load_plane(choice, sockmap_after, backlog)?;
    let maxconn = maxconn_for(&config);
    lb_user::dataplane::splice::set_maxpipes(config.global.maxpipes);
    let gen = Generation::first(
        Arc::new(config),
        maxconn,
        logs,
        Process::new(flows, threads),
    );
    // The server-state file, before any check or connection sees the servers.
    lb_user::state::file::load_configured(&gen);
    let (stats_listeners, sockets) = bind_control(&gen)?;
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
    let current: Current = Arc::new(ArcSwap::new(gen.clone()));
    block_signals()?;
    if privileges.is_some() {
        lb_user::privileges::arm();
    }
    let checkers = lb_user::health::start(&gen).context("health checks")?;
    let _control = lb_user::admin::spawn_control_thread(current.clone(), stats_listeners, sockets)?;
    spawn_threads(inboxes, plane)?;
    if let Some(plan) = &privileges {
        drop_privileges(plan, threads)?;
    }
    // Resolvers run unprivileged, after the drop.
    let resolvers = lb_user::dns::start(&gen)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the control runtime")?;
    rt.block_on(listeners.switch(listeners.plans(&gen, &new)?));
    lb_user::state::resume(&gen);
    for fe in &gen.config.frontends {
        for b in &fe.binds {
            log::info!("frontend '{}': listening on {}", fe.name, b.addr);
        }
    }
    // A daemon's pid file is written by its parent (it knows the pid before it returns).
    let _pidfile = match (&ready, pidfile) {
        (None, Some(p)) => Some(PidFile::create(&p)?),
        (Some(_), Some(p)) => Some(PidFile(p)),
        (_, None) => None,
    };
    log::info!("lb ready: {threads} threads, maxconn {maxconn}");
    if let Some(ready) = ready {
        ready.tell();
    }
    let running = Running {
        gen,
        _checkers: checkers,
        _resolvers: resolvers,
    };
    serve_signals(running, &current, files, &mut listeners, &rt)?;
    for p in socket_paths {
        // The control thread ends with the process; its socket files should not outlive it.
        let _ = lb_user::outside::remove_file(&p);
    }
    Ok(())
}

/// The stats pages' listeners (by stats section) and the runtime API sockets.
type ControlSockets = (
    Vec<(usize, std::net::TcpListener)>,
    Vec<lb_user::admin::BoundSocket>,
);

/// Binds the stats pages and runtime API sockets (errors stop the start); the control thread
/// serves them from whatever generation is current.
fn bind_control(gen: &Generation) -> anyhow::Result<ControlSockets> {
    let stats_listeners = lb_user::stats::http::bind(gen)?;
    let sockets = gen
        .config
        .global
        .stats_sockets
        .iter()
        .map(lb_user::admin::bind_socket)
        .collect::<Result<Vec<_>, _>>()?;
    for s in &sockets {
        log::info!("stats socket: listening on {}", s.conf.path.display());
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
        "dropped privileges: now {}",
        lb_user::privileges::describe(plan)
    );
    if plan.uid.is_some() && plan.gid.is_none() {
        log::warn!(
            "global 'user' without 'group': the group stays as it was (HAProxy does the same); \
             add 'group' to drop it too"
        );
    }
    Ok(())
}

/// Serves signals until a stop: SIGHUP reloads (the old generation's checkers and resolvers
/// stop as it is replaced), SIGTERM/SIGINT stop listening and return.
fn serve_signals(
    mut running: Running,
    current: &Current,
    files: &[PathBuf],
    listeners: &mut Listeners,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    loop {
        let sig = wait_signal()?;
        if sig != Signal::SIGHUP {
            log::info!("received {sig}, stopping");
            listeners.close_all();
            return Ok(());
        }
        if files.is_empty() {
            log::warn!("SIGHUP: nothing to reload (no -f files)");
            continue;
        }
        if let Some(next) = reload(files, listeners, &running.gen, rt) {
            current.store(next.clone());
            running.gen.retire();
            listeners.close_removed(&next.config);
            lb_user::state::resume(&next);
            match Running::start(next) {
                Ok(r) => running = r,
                Err(e) => log::error!("reload: {e:#}"),
            }
        }
    }
}

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
                let ids = loaded.map_ids().with_backlog(backlog);
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

/// SIGHUP, as one transaction: load → open log targets → bind → build → hand out → switch.
/// Every step before the switch can fail, and a failure undoes what the steps before it did
/// (new log targets are dropped unused, new addresses unbound), so the running generation
/// keeps serving exactly as before, with its log targets, listeners and server state. The
/// switch itself cannot fail: every thread takes the new generation, and its log targets
/// become the ones in force. Established flows (in the kernel maps or in splice) carry on
/// untouched with the generation they were accepted in.
fn reload(
    files: &[PathBuf],
    listeners: &mut Listeners,
    current: &Arc<Generation>,
    rt: &tokio::runtime::Runtime,
) -> Option<Arc<Generation>> {
    log::info!("SIGHUP: reloading the configuration");
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
    let maxconn = maxconn_for(&config);
    let next = current.next(Arc::new(config), maxconn, logs);
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
    lb_user::logging::activate(&next.logs);
    lb_user::dataplane::splice::set_maxpipes(next.config.global.maxpipes);
    log::info!(
        "reload done: generation {} serves {} frontend(s) and {} backend(s)",
        next.number,
        next.config.frontends.len(),
        next.config.backends.len()
    );
    Some(next)
}

/// `-p PIDFILE`: written at start, removed at exit.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<Self> {
        lb_user::outside::write(path, format!("{}\n", std::process::id()).as_bytes())
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = lb_user::outside::remove_file(&self.0);
    }
}

/// The daemon's end of the pipe its parent waits on: [`Ready::tell`] once lb serves. If the
/// daemon dies before, the parent reads end-of-file and exits with an error.
struct Ready(std::fs::File);

impl Ready {
    fn tell(mut self) {
        use std::io::Write as _;
        let _ = self.0.write_all(b"R");
    }
}

/// `daemon`: forks; the parent waits until the child serves (or fails), writes the child's
/// pid to `pidfile` and exits; the child starts its own session and points stdin, stdout and
/// stderr at /dev/null, as `HAProxy` does (logs go to the `log` targets). Must run while lb has
/// one thread.
fn daemonize(pidfile: Option<&Path>) -> anyhow::Result<Ready> {
    use std::io::Read as _;
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: one thread (the caller's contract), so the child may go on running lb.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(r);
            nix::unistd::setsid().context("setsid")?;
            // SAFETY: /dev/null is opened, duplicated onto 0, 1 and 2, and closed.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            Ok(Ready(std::fs::File::from(w)))
        }
        child => {
            drop(w);
            let mut byte = [0u8; 1];
            let n = std::fs::File::from(r).read(&mut byte).unwrap_or(0);
            if n == 0 {
                eprintln!("lb: the daemon stopped before it was ready (see its log targets)");
                // SAFETY: exits the parent without running the child's share of destructors.
                unsafe { libc::_exit(1) }
            }
            if let Some(p) = pidfile {
                if let Err(e) = std::fs::write(p, format!("{child}\n")) {
                    eprintln!("lb: cannot write pid file {}: {e}", p.display());
                    // SAFETY: as above.
                    unsafe { libc::_exit(1) }
                }
            }
            // SAFETY: as above: the parent's job is done; the daemon owns every resource.
            unsafe { libc::_exit(0) }
        }
    }
}

/// `chroot DIR`: starts the helper that keeps the host's view for reloads (see
/// `lb_user::outside`), then enters DIR. After binding and loading BPF, before any thread.
fn enter_chroot(dir: &Path, privileges: Option<&lb_user::privileges::Plan>) -> anyhow::Result<()> {
    let plan = privileges.cloned();
    lb_user::outside::start(move || {
        plan.as_ref()
            .is_none_or(|p| lb_user::privileges::apply(p).is_ok())
    })
    .context("chroot: cannot start the helper")?;
    lb_user::outside::enter_chroot(dir)
        .with_context(|| format!("cannot chroot to {}", dir.display()))?;
    log::info!("chroot: serving inside {}", dir.display());
    Ok(())
}

/// The signals lb handles: SIGTERM/SIGINT stop, SIGHUP reloads.
fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Blocks the handled signals in this thread and (by inheritance) every thread spawned after
/// it, so that [`wait_signal`] receives them.
fn block_signals() -> anyhow::Result<()> {
    signal_set().thread_block().context("cannot block signals")
}

fn wait_signal() -> anyhow::Result<Signal> {
    signal_set().wait().context("sigwait")
}
