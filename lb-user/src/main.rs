//! The `lb` binary: command line shaped like haproxy's (`-f`, `-c`), plus `lb demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use lb_user::config::{self, Config};
use lb_user::dataplane::{sockmap, DataplaneChoice};
use lb_user::listener::{self, PlaneSetup, Shared};

/// lb: a TCP load balancer that reads haproxy.cfg and splices flows in the kernel.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file (haproxy.cfg syntax, mode tcp); repeat to read several in order.
    #[arg(short = 'f', value_name = "FILE")]
    files: Vec<PathBuf>,
    #[arg(
        short = 'c',
        help = "Check the configuration and exit: 0 if valid, else every error as FILE:LINE: message"
    )]
    check: bool,
    /// Data plane: `auto` uses sockmap when the kernel and privileges allow, else splice.
    #[arg(long, value_enum, default_value_t = DataplaneChoice::Auto)]
    dataplane: DataplaneChoice,
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
    /// Start two demo backends and a listener in front of them, and print how to try it.
    Demo {
        /// Port of the demo listener.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Data plane for the demo.
        #[arg(long, value_enum, default_value_t = DataplaneChoice::Auto)]
        dataplane: DataplaneChoice,
    },
}

fn init_logging(level: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();
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
        return serve(config, dataplane);
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
    serve(config, cli.dataplane)
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
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
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

fn serve(config: Config, choice: DataplaneChoice) -> anyhow::Result<()> {
    let threads = config.global.nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Bind first: errors (address in use, permission) stop the start with a clear message.
    let listeners = listener::bind_all(&config, threads).map_err(anyhow::Error::msg)?;

    let (plane, _loaded) = match choice {
        DataplaneChoice::Splice => {
            log::info!("data plane: splice (chosen with --dataplane splice)");
            (PlaneSetup::Splice, None)
        }
        DataplaneChoice::Sockmap => {
            let loaded = sockmap::load().context("--dataplane sockmap")?;
            log::info!("data plane: sockmap (eBPF stream verdict, flows spliced in the kernel)");
            (PlaneSetup::Sockmap(loaded.map_ids()), Some(loaded))
        }
        DataplaneChoice::Auto => match sockmap::load() {
            Ok(loaded) => {
                log::info!(
                    "data plane: sockmap (eBPF stream verdict, flows spliced in the kernel)"
                );
                (PlaneSetup::Sockmap(loaded.map_ids()), Some(loaded))
            }
            Err(e) => {
                log::warn!(
                    "data plane: splice, because the sockmap data plane is unavailable: {e}"
                );
                (PlaneSetup::Splice, None)
            }
        },
    };

    let maxconn = maxconn_for(&config);
    let config = Arc::new(config);
    let (shared, commands) = Shared::new(config.clone(), maxconn, threads);
    // Stats pages and runtime API sockets: bound here (errors stop the start), served by the
    // control thread.
    let stats_listeners = lb_user::stats::http::bind(&shared)?;
    let sockets = config
        .global
        .stats_sockets
        .iter()
        .map(lb_user::admin::bind_socket)
        .collect::<Result<Vec<_>, _>>()?;
    for s in &sockets {
        log::info!("stats socket: listening on {}", s.conf.path.display());
    }
    for st in &config.stats {
        for b in &st.binds {
            log::info!("stats '{}': listening on {}", st.name, b.addr);
        }
    }
    let socket_paths: Vec<PathBuf> = sockets.iter().map(|s| s.conf.path.clone()).collect();
    block_stop_signals()?;
    let _control = lb_user::admin::spawn_control_thread(shared.clone(), stats_listeners, sockets)?;
    for (thread, (l, commands)) in listeners.into_iter().zip(commands).enumerate() {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("lb-{thread}"))
            .spawn(move || {
                if let Err(e) = listener::run_thread(shared, l, commands, plane, thread, threads) {
                    log::error!("thread {thread} stopped: {e}");
                    std::process::exit(1);
                }
            })
            .context("cannot start a thread")?;
    }
    for fe in &config.frontends {
        for b in &fe.binds {
            log::info!("frontend '{}': listening on {}", fe.name, b.addr);
        }
    }
    log::info!("lb ready: {threads} threads, maxconn {maxconn}");
    let sig = wait_stop_signal()?;
    log::info!("received {sig}, stopping");
    for p in socket_paths {
        // The control thread ends with the process; its socket files should not outlive it.
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Blocks SIGTERM/SIGINT in this thread and (by inheritance) every thread spawned
/// after it, so that [`wait_stop_signal`] receives them.
fn block_stop_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("cannot block signals")?;
    Ok(())
}

fn wait_stop_signal() -> anyhow::Result<nix::sys::signal::Signal> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.wait().context("sigwait")
}
