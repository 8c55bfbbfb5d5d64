//! Logs the way HAProxy does: `log` targets (syslog over UDP or a unix socket, stdout,
//! stderr), per-connection lines (`option tcplog`, or the default `Connect from` line), and
//! lb's own warnings and notices forwarded to the global targets, next to stderr.
//!
//! The tag in syslog headers is `lb` (the process name, as HAProxy uses its own), so a line
//! reads `<134>Aug  5 18:04:02 lb[1234]: 127.0.0.1:40000 [05/Aug/2020:18:04:02.001] fe be/s1
//! 0/0/3 120 -- 1/1/1/1/0 0/0`: pipelines that match on HAProxy's format only need to accept
//! the tag `lb` as well as `haproxy`.

pub mod target;
pub mod tcplog;
pub mod time;

use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, LogTarget};
pub use target::{Header, Target, TargetError, ERR, INFO, NOTICE, WARNING};

/// The default syslog tag (program name); `log-tag` changes it.
pub const TAG: &str = "lb";

/// `log` crate target for notices: `log::info!(target: logging::NOTICE_TARGET, ...)` goes to
/// stderr as info and to the global syslog targets with severity `notice` (HAProxy logs
/// state changes such as DNS address changes at that level).
pub const NOTICE_TARGET: &str = "lb::notice";

/// Log targets of one frontend and what it logs.
#[derive(Debug, Default)]
pub struct FrontendLog {
    pub targets: Vec<Arc<Target>>,
    /// `option tcplog` or `log-format`: the line at the end of each session; `None`: the
    /// `Connect from` line at accept.
    pub format: Option<Arc<crate::log_format::LogFormat>>,
    /// `%lc`: lines this frontend sent.
    pub log_count: std::sync::atomic::AtomicU64,
    /// `option dontlognull`.
    pub dontlognull: bool,
    /// `option dontlog-normal`.
    pub dontlog_normal: bool,
    /// `option log-separate-errors`.
    pub log_separate_errors: bool,
    /// `option logasap`.
    pub logasap: bool,
    /// Syslog header fields of the configuration this was opened for.
    pub header: Arc<Header>,
}

impl FrontendLog {
    /// Whether this frontend logs anything at all.
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Sends `msg` to every target of the frontend.
    pub fn send(&self, severity: u8, msg: &str) {
        for t in &self.targets {
            t.send(severity, msg, &self.header);
        }
    }
}

/// The log targets of one configuration: global ones (lb's own messages) and per frontend
/// (connection lines). Each generation holds its own, so a connection always logs with the
/// settings of the configuration it was accepted under.
#[derive(Debug)]
pub struct LogSet {
    /// `log-tag`, `log-send-hostname`: they follow reloads like the targets.
    header: Arc<Header>,
    global: Vec<Arc<Target>>,
    frontends: Vec<Arc<FrontendLog>>,
    all: Vec<Arc<Target>>,
}

impl LogSet {
    /// The log settings of frontend `index` (`Config::frontends` order).
    pub fn frontend(&self, index: usize) -> Option<&Arc<FrontendLog>> {
        self.frontends.get(index)
    }

    /// Messages dropped so far by this set's targets (receiver full, absent or failing).
    pub fn dropped(&self) -> u64 {
        self.all.iter().map(|t| t.dropped()).sum()
    }
}

/// The set whose global targets receive lb's own messages ([`activate`]).
static ACTIVE: ArcSwapOption<LogSet> = ArcSwapOption::const_empty();

/// Opens every log target of `config` (global and per frontend; identical lines share one
/// socket). Nothing changes until the set is given to a generation and [`activate`]d: a
/// reload that fails later leaves the targets in force as they were.
pub fn open(config: &Config) -> Result<Arc<LogSet>, TargetError> {
    let header = Arc::new(Header {
        tag: config
            .global
            .log_tag
            .clone()
            .unwrap_or_else(|| TAG.to_owned()),
        pid: std::process::id(),
        host: config.global.log_send_hostname.clone(),
    });
    let mut open: HashMap<String, Arc<Target>> = HashMap::new();
    let mut get = |l: &LogTarget| -> Result<Arc<Target>, TargetError> {
        let key = l.args.join(" ");
        if let Some(t) = open.get(&key) {
            return Ok(t.clone());
        }
        let t = Arc::new(Target::open(l)?);
        open.insert(key, t.clone());
        Ok(t)
    };
    let global = config
        .global
        .logs
        .iter()
        .filter(|l| l.args != ["global"])
        .map(&mut get)
        .collect::<Result<Vec<_>, _>>()?;
    let mut frontends = Vec::new();
    for fe in &config.frontends {
        frontends.push(Arc::new(FrontendLog {
            targets: fe.logs.iter().map(&mut get).collect::<Result<_, _>>()?,
            format: fe.log_format.clone(),
            log_count: std::sync::atomic::AtomicU64::new(0),
            dontlognull: fe.dontlognull,
            dontlog_normal: fe.dontlog_normal,
            log_separate_errors: fe.log_separate_errors,
            logasap: fe.logasap,
            // The frontend's own `log-tag`, else the global one.
            header: match &fe.log_tag {
                Some(tag) => Arc::new(Header {
                    tag: tag.clone(),
                    ..Header::clone(&header)
                }),
                None => header.clone(),
            },
        }));
    }
    let all = open.into_values().collect();
    Ok(Arc::new(LogSet {
        header,
        global,
        frontends,
        all,
    }))
}

/// The next session's number (`%rt`, HAProxy's `uniq_id`): counted over the process, from 0.
pub fn next_session_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Makes `set`'s global targets the ones lb's own messages go to (start, and the switch of a
/// reload). Targets of the previous set close once nothing uses them.
pub fn activate(set: &Arc<LogSet>) {
    ACTIVE.store(Some(set.clone()));
}

/// Sends one of lb's own messages to the global targets.
pub fn global(severity: u8, msg: &str) {
    if let Some(r) = ACTIVE.load().as_ref() {
        for t in &r.global {
            t.send(severity, msg, &r.header);
        }
    }
}

/// Messages dropped so far by all targets (receiver full, absent or failing).
pub fn dropped() -> u64 {
    ACTIVE.load().as_ref().map_or(0, |r| r.dropped())
}

/// The `log` crate logger of the daemon: everything goes to `stderr` as the given `env_logger`
/// decides, and in addition errors, warnings and notices ([`NOTICE_TARGET`]) go to the
/// global `log` targets with severities err, warning and notice.
struct Bridge {
    stderr: env_logger::Logger,
}

/// Whether a record is lb's own (its library's or binary's modules). Other crates' records
/// (rustls on a client's odd handshake: "Illegal SNI extension: ignoring IP address presented
/// as hostname") say what a remote peer did, which any peer can repeat at will: they count as
/// debug, never reach the log targets, and show on stderr only with `--log-level debug`.
fn own(target: &str) -> bool {
    target == NOTICE_TARGET
        || ["lb_user", "lb"]
            .iter()
            .any(|c| target == *c || target.strip_prefix(c).is_some_and(|r| r.starts_with("::")))
}

impl log::Log for Bridge {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        if !own(meta.target()) {
            return self.stderr.enabled(&as_debug(meta));
        }
        self.stderr.enabled(meta)
            || meta.level() <= log::Level::Warn
            || meta.target() == NOTICE_TARGET
    }

    fn log(&self, record: &log::Record<'_>) {
        if !own(record.target()) {
            if self.stderr.enabled(&as_debug(record.metadata())) {
                self.stderr.log(record);
            }
            return;
        }
        if self.stderr.matches(record) {
            self.stderr.log(record);
        }
        let severity = match record.level() {
            log::Level::Error => ERR,
            log::Level::Warn => WARNING,
            log::Level::Info if record.target() == NOTICE_TARGET => NOTICE,
            _ => return,
        };
        if ACTIVE.load().as_ref().is_some_and(|r| !r.global.is_empty()) {
            global(severity, &record.args().to_string());
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

/// `meta` at debug level (another crate's record, see [`own`]).
fn as_debug<'a>(meta: &log::Metadata<'a>) -> log::Metadata<'a> {
    log::Metadata::builder()
        .level(log::Level::Debug)
        .target(meta.target())
        .build()
}

/// Installs the process logger: `stderr` as configured, plus forwarding to syslog targets
/// once a [`LogSet`] is [`activate`]d.
pub fn install(stderr: env_logger::Logger) -> Result<(), log::SetLoggerError> {
    let max = stderr.filter().max(log::LevelFilter::Info);
    log::set_boxed_logger(Box::new(Bridge { stderr }))?;
    log::set_max_level(max);
    Ok(())
}

#[cfg(test)]
mod own_tests {
    use super::{own, NOTICE_TARGET};

    #[test]
    fn only_lbs_own_records_are_worth_their_level() {
        for t in [
            "lb",
            "lb::fd_limits",
            "lb_user",
            "lb_user::listener::serve",
            NOTICE_TARGET,
        ] {
            assert!(own(t), "{t}");
        }
        for t in [
            "rustls::server::hs",
            "tokio_rustls",
            "aya::bpf",
            "lbx",
            "lb_userland",
        ] {
            assert!(!own(t), "{t}");
        }
    }
}
