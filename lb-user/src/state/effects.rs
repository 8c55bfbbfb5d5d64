//! What follows a published change, done once by the writer: HAProxy's log lines (with the
//! counts after the change), `backend has no server available!`, ending flows
//! (`on-marked-down shutdown-sessions`, `on-marked-up shutdown-backup-sessions`), slow start,
//! waking checkers, and the check details the stats show.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::transition::{Event, OpCause};
use super::{Applied, By, CheckReport};
use crate::flows::KillReason;
use crate::generation::Generation;
use crate::table::{CheckInfo, ServerEntry, ServerState};

/// What the writer decided under the lock.
pub(super) struct Decided {
    pub applied: Applied,
    pub events: Vec<Event>,
    pub counts_before: (usize, usize),
    pub counts_after: (usize, usize),
    /// The name the server followed before a `Change::Fqdn` (for its log line).
    pub fqdn_before: Option<String>,
}

/// Everything a log line about one server needs.
struct Ctx<'a> {
    gen: &'a Arc<Generation>,
    backend: usize,
    entry: ServerEntry,
    after: ServerState,
    counts: (usize, usize),
    fqdn_before: Option<String>,
}

impl Ctx<'_> {
    fn be_name(&self) -> &str {
        &self.gen.config.backends[self.backend].name
    }

    /// ` via B/S` for a server that tracks another (HAProxy appends it to the lines of its
    /// changes), else nothing.
    fn via(&self) -> String {
        self.entry
            .conf
            .track
            .as_ref()
            .map(|t| format!(" via {}", t.name))
            .unwrap_or_default()
    }

    /// `Server bk/s1` (or `Backup Server bk/s1`).
    fn server(&self) -> String {
        format!(
            "{}Server {}/{}",
            if self.entry.conf.backup {
                "Backup "
            } else {
                ""
            },
            self.be_name(),
            self.entry.conf.name
        )
    }

    fn queue_len(&self) -> usize {
        self.gen.backends[self.backend].queue_len()
    }

    fn running_on_backup(&self) -> &'static str {
        let (a, b) = self.counts;
        if b > 0 && a == 0 {
            " Running on backup."
        } else {
            ""
        }
    }

    /// HAProxy's `srv_append_more` for a server that is now DOWN.
    fn more_left(&self) -> String {
        let (a, b) = self.counts;
        format!(
            ". {a} active and {b} backup servers left.{} {} sessions active, 0 requeued, {} \
             remaining in queue",
            self.running_on_backup(),
            self.entry.counters.cur.load(Ordering::Relaxed),
            self.queue_len()
        )
    }

    /// HAProxy's `srv_append_more` for a server that is UP (or NOLB).
    fn more_online(&self) -> String {
        let (a, b) = self.counts;
        format!(
            ". {a} active and {b} backup servers online.{} 0 sessions requeued, {} total in \
             queue",
            self.running_on_backup(),
            self.queue_len()
        )
    }
}

/// `, reason: Layer4 connection problem, info: "...", check duration: 3ms` (HAProxy's
/// `check_append_info`).
pub fn check_details(r: &CheckReport) -> String {
    let mut s = format!(", reason: {}", r.result.desc());
    if let Some(c) = r.code {
        let _ = write!(s, ", code: {c}");
    }
    if !r.info.is_empty() {
        let _ = write!(s, ", info: \"{}\"", printable(&r.info));
    }
    let _ = write!(s, ", check duration: {}ms", r.duration.as_millis());
    s
}

/// `text` with control characters escaped (`\r`, `\n`, `\u{1b}`): server-supplied text must
/// not break a log line.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn op_cause(c: &OpCause) -> String {
    match c {
        OpCause::Check(r) | OpCause::Agent(r) => check_details(r),
        OpCause::Cli => ", changed from CLI".to_owned(),
        OpCause::StatsPage => ", changed from Web interface".to_owned(),
        OpCause::StateFile => ", changed from server-state after a reload".to_owned(),
        OpCause::Quiet => String::new(),
    }
}

/// Runs what follows a change of `gen`'s `backend`/`server`.
pub(super) fn run(gen: &Arc<Generation>, backend: usize, server: usize, by: &By, d: Decided) {
    let table = &gen.backends[backend];
    let Some(entry) = table.snapshot().servers.get(server).cloned() else {
        return;
    };
    let Decided {
        applied: Applied { before, after },
        events,
        counts_before,
        counts_after,
        fqdn_before,
    } = d;
    let ctx = Ctx {
        gen,
        backend,
        entry,
        after,
        counts: counts_after,
        fqdn_before,
    };
    bookkeeping(&ctx, &before);
    // What the configuration itself sets up (a tracking server taking its tracked server's
    // state at start or at a reload) is not logged, as HAProxy logs nothing while starting.
    let quiet = *by == By::Config;
    // Every line first (HAProxy logs a transition, then "no server available", then acts),
    // so whoever sees a consequence finds its cause in the log already.
    for ev in events.iter().filter(|_| !quiet) {
        log_event(&ctx, by, &before, ev);
    }
    if counts_before != (0, 0) && counts_after == (0, 0) && !quiet {
        log::error!("backend {} has no server available!", ctx.be_name());
    }
    for ev in events {
        act(&ctx, ev);
    }
    if before.track_view() != after.track_view() {
        for &(b, s) in &ctx.entry.conf.trackers {
            // The tracker reads this server's state anew under its own lock (see `apply`).
            let _ = super::apply(
                gen,
                b,
                s,
                super::Change::Tracked(after.track_view()),
                &By::Tracking,
            );
        }
    }
}

/// `lastchg` and `downtime`.
fn bookkeeping(ctx: &Ctx<'_>, before: &ServerState) {
    let a = &ctx.after;
    let c = &ctx.entry.counters;
    if before.up != a.up
        || before.stopping != a.stopping
        || before.admin != a.admin
        || before.resolution_maint != a.resolution_maint
        || before.via_maint != a.via_maint
        || before.via_drain != a.via_drain
    {
        c.last_change.store(unix_now(), Ordering::Relaxed);
    }
    if let (Some(since), true) = (before.down_since, a.up) {
        c.downtime
            .fetch_add(since.elapsed().as_secs(), Ordering::Relaxed);
    }
}

/// HAProxy's log line for one event, and what the stats show of a check's result.
fn log_event(ctx: &Ctx<'_>, by: &By, before: &ServerState, ev: &Event) {
    let c = &ctx.entry.counters;
    match ev {
        Event::Down(cause) => {
            log::warn!(
                "{} is DOWN{}{}{}.",
                ctx.server(),
                op_cause(cause),
                ctx.via(),
                ctx.more_left()
            );
            if let OpCause::Check(_) = cause {
                c.check.rcu(|i| CheckInfo {
                    down_transitions: i.down_transitions + 1,
                    ..CheckInfo::clone(i)
                });
            }
        }
        Event::Up(cause) => {
            log::warn!(
                "{} is UP{}{}{}.",
                ctx.server(),
                op_cause(cause),
                ctx.via(),
                ctx.more_online()
            );
        }
        Event::Stopping(cause) => {
            log::warn!(
                "{} is stopping{}{}{}.",
                ctx.server(),
                op_cause(cause),
                ctx.via(),
                ctx.more_online()
            );
        }
        Event::EnterMaint {
            was_down,
            resolution,
            via,
        } => {
            let mut cause = resolution.map(|c| format!(" ({c})")).unwrap_or_default();
            if *via {
                cause += &ctx.via();
            }
            if *was_down {
                log::warn!(
                    "{} was DOWN and now enters maintenance{cause}.",
                    ctx.server()
                );
            } else {
                log::warn!(
                    "{} is going DOWN for maintenance{cause}{}.",
                    ctx.server(),
                    ctx.more_left()
                );
            }
        }
        Event::LeaveMaint {
            resolution,
            still,
            via,
        } => leave_maint(ctx, by, *resolution, *still, *via),
        Event::EnterDrain { via } => {
            let more = if ctx.after.up {
                ctx.more_online()
            } else {
                ctx.more_left()
            };
            let via = if *via { ctx.via() } else { String::new() };
            log::warn!("{} enters drain state{via}{more}.", ctx.server());
        }
        Event::LeaveDrain { via } => {
            let side = if ctx.after.up { "UP" } else { "DOWN" };
            if *via {
                log::warn!("{} is {side} (leaving drain){}.", ctx.server(), ctx.via());
            } else {
                log::warn!("{} is {side} (leaving forced drain).", ctx.server());
            }
        }
        Event::CheckResult { report, moved } => check_result(ctx, before, report, *moved),
        Event::AgentResult(report) => agent_result(ctx, report),
        Event::AddrChanged { old, new } => addr_changed(ctx, by, *old, *new),
        Event::Fqdn(new) => fqdn_changed(ctx, by, new),
        Event::CheckNow | Event::StartRamp | Event::AgentSend(_) | Event::MoveCheck(_) => {}
    }
}

/// What an event does besides its log line: ending flows, waking checkers, slow start.
fn act(ctx: &Ctx<'_>, ev: Event) {
    let c = &ctx.entry.counters;
    match ev {
        Event::Down(_)
        | Event::EnterMaint {
            was_down: false, ..
        } => shutdown_sessions(ctx),
        Event::Up(_) | Event::LeaveMaint { still: false, .. } if ctx.after.up => {
            shutdown_backups(ctx);
        }
        Event::CheckNow => {
            c.check_now.send_modify(|n| *n = n.wrapping_add(1));
        }
        Event::StartRamp => {
            if let Some(ss) = ctx.entry.conf.health.slowstart {
                super::timers::ramp(ctx.gen, ctx.backend, ctx.entry.conf.name.clone(), ss);
            }
        }
        Event::AgentSend(bytes) => c.agent_send.store(Some(Arc::new(bytes))),
        // The writer keeps the name; the resolvers pick it up now.
        Event::Fqdn(_) => ctx.gen.dns_wake.notify_one(),
        Event::MoveCheck(m) => {
            let conf = &ctx.entry.conf;
            let (now, slot) = if m.agent {
                (c.agent_place(conf), &c.agent_place)
            } else {
                (c.check_place(conf), &c.check_place)
            };
            slot.store(Some(Arc::new(now.with(m.addr, m.port))));
        }
        _ => {}
    }
}

fn leave_maint(ctx: &Ctx<'_>, by: &By, resolution: bool, still: bool, via: bool) {
    let conf = &ctx.entry.conf;
    // HAProxy names the tracked server when the maintenance that remains is its.
    let remains_via = if ctx.after.via_maint {
        ctx.via()
    } else {
        String::new()
    };
    if still {
        if resolution {
            log::warn!(
                "{} ('{}') resolves again but remains in maintenance{remains_via}.",
                ctx.server(),
                ctx.entry.counters.fqdn(conf).unwrap_or_default()
            );
        } else if via {
            log::warn!("{} remains in forced maintenance.", ctx.server());
        } else {
            log::warn!(
                "{} is leaving forced maintenance but remains in maintenance{remains_via}.",
                ctx.server()
            );
        }
        return;
    }
    let side = if ctx.after.up { "UP" } else { "DOWN" };
    let admin = if ctx.after.draining() {
        "DRAIN"
    } else {
        "READY"
    };
    if via {
        log::warn!("{} is {side}/{admin} (leaving maintenance).", ctx.server());
        return;
    }
    if resolution {
        log::warn!(
            "{} ('{}') is {side}/{admin} (resolves again).",
            ctx.server(),
            ctx.entry.counters.fqdn(conf).unwrap_or_default()
        );
        if matches!(by, By::Dns { .. } | By::DnsCache) {
            log::warn!(
                "Server {}/{} administratively READY thanks to valid DNS answer.",
                ctx.be_name(),
                conf.name
            );
        }
    } else {
        log::warn!(
            "{} is {side}/{admin} (leaving forced maintenance).",
            ctx.server()
        );
    }
}

/// `on-marked-down shutdown-sessions`: ends the server's flows, every generation's.
fn shutdown_sessions(ctx: &Ctx<'_>) {
    if ctx.entry.conf.health.shutdown_on_down {
        ctx.gen
            .process
            .flows
            .kill(&[ctx.entry.counters.uid], KillReason::ServerDown);
    }
}

/// `on-marked-up shutdown-backup-sessions`: a normal server that can take connections again
/// ends the flows of the backend's backup servers.
fn shutdown_backups(ctx: &Ctx<'_>) {
    let conf = &ctx.entry.conf;
    if !conf.health.shutdown_backup_on_up || conf.backup || ctx.after.weight == 0 {
        return;
    }
    let backups: Vec<u64> = ctx.gen.backends[ctx.backend]
        .snapshot()
        .servers
        .iter()
        .filter(|e| e.conf.backup)
        .map(|e| e.counters.uid)
        .collect();
    ctx.gen.process.flows.kill(&backups, KillReason::BackupOff);
}

/// Publishes a regular check's result for the stats, and logs it with `option
/// log-health-checks` when its result or counter changed.
fn check_result(ctx: &Ctx<'_>, before: &ServerState, r: &CheckReport, moved: bool) {
    let c = &ctx.entry.counters;
    let prev = c.check.load_full();
    let changed_side = before.up != ctx.after.up;
    c.check.store(Arc::new(CheckInfo {
        result: r.result,
        code: r.code,
        info: r.info.clone(),
        duration_ms: Some(r.duration.as_millis() as u64),
        failed: prev.failed + u64::from(!r.passed && (moved || changed_side)),
        down_transitions: prev.down_transitions,
    }));
    let be = &ctx.gen.config.backends[ctx.backend];
    let result_changed = prev.result != r.result || prev.duration_ms.is_none();
    if !be.log_health_checks || !(moved || result_changed) {
        return;
    }
    let h = &ctx.entry.conf.health;
    let (rise, fall) = (h.rise.max(1), h.fall.max(1));
    let counter = ctx.after.check_h;
    let up = counter >= rise;
    let (n, of) = if up {
        (counter - rise + 1, fall)
    } else {
        (counter, rise)
    };
    log::info!(
        "Health check for server {}/{} {}{}, status: {n}/{of} {}.",
        be.name,
        ctx.entry.conf.name,
        if r.passed { "succeeded" } else { "failed" },
        check_details(r),
        if up { "UP" } else { "DOWN" }
    );
}

/// Publishes an agent check's result, and logs it with `option log-health-checks` when it
/// changed.
fn agent_result(ctx: &Ctx<'_>, r: &CheckReport) {
    let c = &ctx.entry.counters;
    let prev = c.agent.load_full();
    c.agent.store(Arc::new(CheckInfo {
        result: r.result,
        code: r.code,
        info: r.info.clone(),
        duration_ms: Some(r.duration.as_millis() as u64),
        failed: prev.failed + u64::from(!r.passed),
        down_transitions: prev.down_transitions,
    }));
    let be = &ctx.gen.config.backends[ctx.backend];
    let changed = prev.result != r.result || prev.info != r.info;
    if !be.log_health_checks || !changed {
        return;
    }
    let (h, side) = if ctx.after.agent_up {
        (1, "UP")
    } else {
        (0, "DOWN")
    };
    log::info!(
        "Agent check for server {}/{} {}{}, status: {h}/1 {side}.",
        be.name,
        ctx.entry.conf.name,
        if r.passed { "succeeded" } else { "failed" },
        check_details(r)
    );
}

/// Unix time now, in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ip_text(ip: std::net::IpAddr) -> String {
    if ip.is_unspecified() {
        "(none)".to_owned()
    } else {
        ip.to_string()
    }
}

/// The server follows another name (HAProxy's `srv_update_fqdn` message, which HAProxy only
/// answers on the runtime API; lb logs it too, as a notice).
fn fqdn_changed(ctx: &Ctx<'_>, by: &By, new: &str) {
    let who = match by {
        By::Cli => "by 'stats socket command'",
        By::StateFile => "by the server-state file",
        _ => "",
    };
    log::info!(
        target: crate::logging::NOTICE_TARGET,
        "{}/{} changed its FQDN from {} to {new} {who}.",
        ctx.be_name(),
        ctx.entry.conf.name,
        ctx.fqdn_before.as_deref().unwrap_or("(null)"),
    );
}

fn addr_changed(ctx: &Ctx<'_>, by: &By, old: std::net::SocketAddr, new: std::net::SocketAddr) {
    let who = format!("{}/{}", ctx.be_name(), ctx.entry.conf.name);
    match by {
        By::Dns {
            resolvers,
            nameserver,
        } => log::info!(
            target: crate::logging::NOTICE_TARGET,
            "{who} changed its IP from {} to {} by {resolvers}/{nameserver}.",
            ip_text(old.ip()),
            ip_text(new.ip())
        ),
        By::DnsCache => log::info!(
            target: crate::logging::NOTICE_TARGET,
            "{who} changed its IP from {} to {} by DNS cache.",
            ip_text(old.ip()),
            ip_text(new.ip())
        ),
        By::StateFile => log::info!(
            target: crate::logging::NOTICE_TARGET,
            "{who} changed its address from {old} to {new} by the server-state file."
        ),
        _ => log::warn!("{who} changed its IP from {old} to {new} by stats socket command"),
    }
}
