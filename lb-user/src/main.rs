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
use lb_user::fd_budget::{self, FdPlan, PipeUse};
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
    /// Write the process id to this file at start (removed at exit).
    #[arg(short = 'p', value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
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
        return serve(config, plane, &[], cli.pidfile.as_deref());
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
    serve(config, plane, &cli.files, cli.pidfile.as_deref())
}

/// The start line of the sockmap data plane, with when flows enter the kernel.
fn log_sockmap(after: Duration) {
    if after.is_zero() {
        log::info!("data plane: sockmap (eBPF stream verdict, flows spliced in the kernel)");
    } else {
        log::info!(
            "data plane: sockmap (eBPF stream verdict, flows spliced in the kernel after {} ms \
             on splice)",
            after.as_millis()
        );
    }
}

/// fds lb holds besides connections and pipes: those open now (less the budget's), what
/// comes and goes (a socket per check, agent check and resolver; room for log targets,
/// external checks and a reload's new listeners), and, before the threads have started
/// (`threads` > 0), an estimate of what each will hold (its ring, pollers and map handles)
/// and of the control threads' runtimes.
fn fds_besides_connections(config: &Config, threads: usize) -> u64 {
    const PER_THREAD: u64 = 8;
    const CONTROL_THREADS: u64 = 16;
    const SLACK: u64 = 32;
    let open = fd_budget::open_fds().unwrap_or(64);
    let held = fd_budget::process().used();
    let checks: u64 = config
        .backends
        .iter()
        .flat_map(|b| &b.servers)
        .map(|s| u64::from(s.health.check) + u64::from(s.health.agent.enabled))
        .sum();
    let resolvers = config.global.resolvers.len() as u64;
    let threads = if threads == 0 {
        0
    } else {
        threads as u64 * PER_THREAD + CONTROL_THREADS
    };
    open.saturating_sub(held) + threads + checks + resolvers + SLACK
}

/// What [`maxconn_for`] found, for [`settle_fd_budget`].
struct FdLimits {
    /// The soft limit at start, the one set, and the hard one.
    before: u64,
    soft: u64,
    hard: u64,
    /// What the configured `maxconn` needs, when the hard limit is lower.
    short_of: Option<u64>,
    pipes: PipeUse,
    maxconn: u32,
}

/// Derives `maxconn` from `RLIMIT_NOFILE`, as HAProxy does: without `global maxconn`, as many
/// connections as the hard limit allows (the soft limit is raised to it); with it, the soft
/// limit is raised to what it needs when the hard limit allows. A connection holds 2 fds (its
/// two sockets), plus pipes on splice while bytes move: room is kept for a pipe per four
/// connections, as HAProxy's `maxpipes`. What lb holds itself is estimated here;
/// [`settle_fd_budget`] measures it once the threads run and sizes the budget. Whatever
/// `maxconn` says, lb stops accepting when the budget is spent: clients wait in the backlog.
fn maxconn_for(config: &Config, threads: usize, pipes: PipeUse) -> FdLimits {
    let (before, hard) = fd_budget::nofile_limits();
    let base = fds_besides_connections(config, threads);
    let mut plan = FdPlan::new(before, hard, base, config.global.maxconn, pipes);
    let mut soft = before;
    if plan.soft != before {
        match fd_budget::set_soft_nofile(plan.soft) {
            Ok(()) => soft = plan.soft,
            Err(e) => {
                log::warn!(
                    "cannot raise RLIMIT_NOFILE from {before} to {}: {e}",
                    plan.soft
                );
                plan = FdPlan::new(before, before, base, config.global.maxconn, pipes);
            }
        }
    }
    FdLimits {
        before,
        soft,
        hard,
        short_of: plan.short_of,
        pipes,
        maxconn: plan.maxconn,
    }
}

/// Sizes the fd budget on what lb holds itself, measured now that its threads run, and says
/// what the limit gives.
fn settle_fd_budget(config: &Config, l: &FdLimits) {
    let base = fds_besides_connections(config, 0);
    let plan = FdPlan::new(l.soft, l.soft, base, Some(l.maxconn), l.pipes);
    let budget = fd_budget::install(plan.capacity, plan.pipe_share);
    let raised = if l.soft == l.before {
        String::new()
    } else {
        format!(", raised from {}", l.before)
    };
    log::info!(
        "file descriptors: RLIMIT_NOFILE {}{raised} (hard {}), {base} for lb itself, {} for \
         connections (2 each) and splice pipes ({} kept for pipes): maxconn {}",
        l.soft,
        l.hard,
        budget.capacity(),
        budget.pipe_share(),
        l.maxconn
    );
    if let Some(need) = l.short_of {
        log::warn!(
            "RLIMIT_NOFILE {} (hard {}) is too low for maxconn {}: it needs about {need}; lb \
             accepts about {} connections at a time and leaves the others waiting in the \
             backlog",
            l.soft,
            l.hard,
            l.maxconn,
            plan.connections()
        );
    }
}

fn serve(
    config: Config,
    (choice, sockmap_after): (DataplaneChoice, Duration),
    files: &[PathBuf],
    pidfile: Option<&Path>,
) -> anyhow::Result<()> {
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
    let (plane, _loaded) = load_plane(choice, sockmap_after)?;
    let pipes = match plane {
        PlaneSetup::Sockmap(_, after) if after.is_zero() => PipeUse::Rare,
        PlaneSetup::Sockmap(..) | PlaneSetup::Splice => PipeUse::Splice,
    };
    let fds = maxconn_for(&config, threads, pipes);
    let maxconn = fds.maxconn;
    let gen = Generation::first(
        Arc::new(config),
        maxconn,
        logs,
        Process::new(flows, threads),
    );
    // The server-state file, before any check or connection sees the servers.
    lb_user::state::file::load_configured(&gen);
    // Stats pages and runtime API sockets: bound here (errors stop the start), served by the
    // control thread from whatever generation is current.
    let stats_listeners = lb_user::stats::http::bind(&gen)?;
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
    let socket_paths: Vec<PathBuf> = sockets.iter().map(|s| s.conf.path.clone()).collect();
    let current: Current = Arc::new(ArcSwap::new(gen.clone()));
    block_signals()?;
    if privileges.is_some() {
        lb_user::privileges::arm();
    }
    let checkers = lb_user::health::start(&gen).context("health checks")?;
    let _control = lb_user::admin::spawn_control_thread(current.clone(), stats_listeners, sockets)?;
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
    if let Some(plan) = &privileges {
        lb_user::privileges::drop_after_threads(plan, threads)?;
        log::info!(
            "dropped privileges: now {}",
            lb_user::privileges::describe(plan)
        );
        if plan.uid.is_some() && plan.gid.is_none() {
            log::warn!(
                "global 'user' without 'group': the group stays as it was (HAProxy does the \
                 same); add 'group' to drop it too"
            );
        }
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
    for fe in &gen.config.frontends {
        for b in &fe.binds {
            log::info!("frontend '{}': listening on {}", fe.name, b.addr);
        }
    }
    let _pidfile = pidfile.map(PidFile::create).transpose()?;
    log::info!("lb ready: {threads} threads, maxconn {maxconn}");
    let mut running = Running {
        gen,
        _checkers: checkers,
        _resolvers: resolvers,
    };
    loop {
        let sig = wait_signal()?;
        if sig == Signal::SIGHUP {
            if files.is_empty() {
                log::warn!("SIGHUP: nothing to reload (no -f files)");
                continue;
            }
            if let Some(next) = reload(files, pipes, &mut listeners, &running.gen, &rt) {
                current.store(next.clone());
                running.gen.retire();
                listeners.close_removed(&next.config);
                lb_user::state::resume(&next);
                match Running::start(next) {
                    // The old generation's checkers and resolvers stop as it is dropped.
                    Ok(r) => running = r,
                    Err(e) => log::error!("reload: {e:#}"),
                }
            }
            continue;
        }
        log::info!("received {sig}, stopping");
        listeners.close_all();
        for p in socket_paths {
            // The control thread ends with the process; its socket files should not outlive it.
            let _ = std::fs::remove_file(p);
        }
        return Ok(());
    }
}

/// Loads the data plane `--dataplane` asks for; with `auto`, sockmap when it loads, else
/// splice. The loaded program must stay alive as long as the process serves.
fn load_plane(
    choice: DataplaneChoice,
    sockmap_after: Duration,
) -> anyhow::Result<(PlaneSetup, Option<sockmap::Loaded>)> {
    Ok(match choice {
        DataplaneChoice::Splice => {
            log::info!("data plane: splice (chosen with --dataplane splice)");
            (PlaneSetup::Splice, None)
        }
        DataplaneChoice::Sockmap => {
            let loaded = sockmap::load().context("--dataplane sockmap")?;
            log_sockmap(sockmap_after);
            (
                PlaneSetup::Sockmap(loaded.map_ids(), sockmap_after),
                Some(loaded),
            )
        }
        DataplaneChoice::Auto => match sockmap::load() {
            Ok(loaded) => {
                log_sockmap(sockmap_after);
                (
                    PlaneSetup::Sockmap(loaded.map_ids(), sockmap_after),
                    Some(loaded),
                )
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
    pipes: PipeUse,
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
    let fds = maxconn_for(&config, 0, pipes);
    let next = current.next(Arc::new(config), fds.maxconn, logs);
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
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
