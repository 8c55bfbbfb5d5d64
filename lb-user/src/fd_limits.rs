//! How many connections the file-descriptor limit gives, at start and at each reload: the
//! limit raised as HAProxy raises it, `maxconn` derived from it, `strict-limits`, and the fd
//! budget sized once the threads run (the budget itself is `lb_user::fd_budget`). A module of
//! the `lb` binary, not of the library.

use lb_user::config::Config;
use lb_user::fd_budget::{self, FdPlan, PipeUse};
use lb_user::listener::PlaneSetup;

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
pub(crate) struct FdLimits {
    /// The soft limit at start, the one set, and the hard one.
    before: u64,
    soft: u64,
    hard: u64,
    /// What the configured `maxconn` needs, when the hard limit is lower.
    short_of: Option<u64>,
    /// A `setrlimit` that failed (`ulimit-n`, or raising the soft limit), in HAProxy's words.
    refused: Option<String>,
    pipes: PipeUse,
    /// Threads whose flows copy on their ring (their sockets direct descriptors there).
    rings: u64,
    pub(crate) maxconn: u32,
}

/// Threads whose flows copy on their ring first, holding their sockets as direct
/// descriptors in its fixed table: all but on a sockmap plane that puts flows into the maps at
/// once.
pub(crate) fn ring_threads(plane: PlaneSetup, threads: usize) -> u64 {
    if !lb_user::ring::direct::wanted() {
        return 0;
    }
    match plane {
        PlaneSetup::Sockmap(_, after) if after.is_zero() => 0,
        PlaneSetup::Sockmap(..) | PlaneSetup::Splice => threads as u64,
    }
}

/// How the data plane and `maxpipes` use pipes, for the fd budget.
fn pipe_use(plane: PlaneSetup, config: &Config) -> PipeUse {
    match (config.global.maxpipes, plane) {
        (Some(n), _) => PipeUse::Fixed(n),
        (None, PlaneSetup::Sockmap(_, after)) if after.is_zero() => PipeUse::Rare,
        (None, PlaneSetup::Sockmap(..) | PlaneSetup::Splice) => PipeUse::Splice,
    }
}

/// Derives `maxconn` from `RLIMIT_NOFILE` (`rings`: threads whose flows copy on a ring, see
/// [`FdPlan::new`]), as HAProxy does: `ulimit-n` sets the limit (soft
/// and hard); without it and without `global maxconn`, as many connections as the hard limit
/// allows (the soft limit is raised to it); with `maxconn`, the soft limit is raised to what it
/// needs when the hard limit allows. A connection holds 2 fds (its two sockets), plus pipes on
/// splice while bytes move: room is kept for `maxpipes`, else for a pipe per four connections
/// as HAProxy's default. What lb holds itself is estimated here; [`settle_fd_budget`]
/// measures it once the threads run and sizes the budget. Whatever `maxconn` says, lb stops
/// accepting when the budget is spent: clients wait in the backlog.
pub(crate) fn maxconn_for(
    config: &Config,
    threads: usize,
    plane: PlaneSetup,
    rings: u64,
) -> FdLimits {
    let pipes = pipe_use(plane, config);
    let (before, mut hard) = fd_budget::nofile_limits();
    let base = fds_besides_connections(config, threads);
    let mut soft = before;
    let mut refused = None;
    if let Some(n) = config.global.ulimit_n.map(u64::from) {
        // `ulimit-n`: soft and hard, as HAProxy sets them.
        match fd_budget::set_nofile(n, hard.max(n)) {
            Ok(()) => (soft, hard) = fd_budget::nofile_limits(),
            Err(e) => {
                log::warn!("cannot set RLIMIT_NOFILE to ulimit-n {n}: {e}");
                refused = Some(format!("Cannot raise FD limit to {n}, limit is {soft}."));
            }
        }
    }
    let mut plan = if config.global.ulimit_n.is_some() {
        FdPlan::new(soft, soft, base, config.global.maxconn, pipes, rings)
    } else {
        FdPlan::new(soft, hard, base, config.global.maxconn, pipes, rings)
    };
    if plan.soft != soft {
        match fd_budget::set_nofile(plan.soft, hard) {
            Ok(()) => soft = plan.soft,
            Err(e) => {
                log::warn!(
                    "cannot raise RLIMIT_NOFILE from {soft} to {}: {e}",
                    plan.soft
                );
                refused = Some(format!(
                    "Cannot raise FD limit to {}, limit is {soft}.",
                    plan.soft
                ));
                plan = FdPlan::new(soft, soft, base, config.global.maxconn, pipes, rings);
            }
        }
    }
    FdLimits {
        before,
        soft,
        hard,
        short_of: plan.short_of,
        refused,
        pipes,
        rings,
        maxconn: plan.maxconn,
    }
}

/// With `strict-limits`, why the file-descriptor limit stops a start or a reload (HAProxy's
/// alerts): a `setrlimit` refused, or a limit too low for the configured `maxconn`.
pub(crate) fn strict_limits_error(config: &Config, l: &FdLimits) -> Option<String> {
    if !config.global.strict_limits {
        return None;
    }
    l.refused.clone().or_else(|| {
        l.short_of.map(|need| {
            format!(
                "FD limit ({}) too low for maxconn={}. Please raise 'ulimit-n' to {need} or \
                 more to avoid any trouble (strict-limits).",
                l.soft, l.maxconn
            )
        })
    })
}

/// Sizes the fd budget on what lb holds itself, measured now that its threads run, and says
/// what the limit gives.
pub(crate) fn settle_fd_budget(config: &Config, l: &FdLimits) {
    let base = fds_besides_connections(config, 0);
    let plan = FdPlan::new(l.soft, l.soft, base, Some(l.maxconn), l.pipes, l.rings);
    let budget = fd_budget::install(plan.capacity, plan.pipe_share);
    let raised = if l.soft == l.before {
        String::new()
    } else {
        format!(", raised from {}", l.before)
    };
    let direct = if plan.direct > 0 {
        format!(
            ", and {} connections more as io_uring direct descriptors while they copy on the \
             rings",
            plan.direct
        )
    } else {
        String::new()
    };
    log::info!(
        "file descriptors: RLIMIT_NOFILE {}{raised} (hard {}), {base} for lb itself, {} for \
         connections (2 each) and splice pipes ({} kept for pipes){direct}: maxconn {}",
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
