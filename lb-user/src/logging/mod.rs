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
    /// `option tcplog`.
    pub tcplog: bool,
    /// `option dontlognull`.
    pub dontlognull: bool,
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

struct Registry {
    /// `log-tag`, `log-send-hostname`: they follow reloads like the targets.
    header: Arc<Header>,
    global: Vec<Arc<Target>>,
    frontends: Vec<Arc<FrontendLog>>,
    all: Vec<Arc<Target>>,
}

/// The targets of the configuration in force; a reload replaces them ([`init`] again).
static REGISTRY: ArcSwapOption<Registry> = ArcSwapOption::const_empty();

/// Opens every log target of `config` (global and per frontend; identical lines share one
/// socket) and makes them the ones in force. Called at start, and by a reload before it
/// switches generations (targets of the old configuration close once no line uses them).
pub fn init(config: &Config) -> Result<(), TargetError> {
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
            tcplog: fe.tcplog,
            dontlognull: fe.dontlognull,
            header: header.clone(),
        }));
    }
    let all = open.into_values().collect();
    REGISTRY.store(Some(Arc::new(Registry {
        header,
        global,
        frontends,
        all,
    })));
    Ok(())
}

/// The log settings of frontend `index` (`Config::frontends` order) of the configuration in
/// force, once [`init`] ran.
pub fn frontend(index: usize) -> Option<Arc<FrontendLog>> {
    REGISTRY.load().as_ref()?.frontends.get(index).cloned()
}

/// Sends one of lb's own messages to the global targets.
pub fn global(severity: u8, msg: &str) {
    if let Some(r) = REGISTRY.load().as_ref() {
        for t in &r.global {
            t.send(severity, msg, &r.header);
        }
    }
}

/// Messages dropped so far by all targets (receiver full, absent or failing).
pub fn dropped() -> u64 {
    REGISTRY
        .load()
        .as_ref()
        .map_or(0, |r| r.all.iter().map(|t| t.dropped()).sum())
}

/// The `log` crate logger of the daemon: everything goes to `stderr` as the given `env_logger`
/// decides, and in addition errors, warnings and notices ([`NOTICE_TARGET`]) go to the
/// global `log` targets with severities err, warning and notice.
struct Bridge {
    stderr: env_logger::Logger,
}

impl log::Log for Bridge {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        self.stderr.enabled(meta)
            || meta.level() <= log::Level::Warn
            || meta.target() == NOTICE_TARGET
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.stderr.matches(record) {
            self.stderr.log(record);
        }
        let severity = match record.level() {
            log::Level::Error => ERR,
            log::Level::Warn => WARNING,
            log::Level::Info if record.target() == NOTICE_TARGET => NOTICE,
            _ => return,
        };
        if REGISTRY
            .load()
            .as_ref()
            .is_some_and(|r| !r.global.is_empty())
        {
            global(severity, &record.args().to_string());
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

/// Installs the process logger: `stderr` as configured, plus forwarding to syslog targets
/// once [`init`] has opened them.
pub fn install(stderr: env_logger::Logger) -> Result<(), log::SetLoggerError> {
    let max = stderr.filter().max(log::LevelFilter::Info);
    log::set_boxed_logger(Box::new(Bridge { stderr }))?;
    log::set_max_level(max);
    Ok(())
}
