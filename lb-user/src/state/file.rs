//! HAProxy's server-state file, version 1: `show servers state` writes it, and a start with
//! `server-state-file` + `load-server-state-from-file` reads it back, so that the usual
//! `echo "show servers state" | socat ... > state` before a restart works as it does for
//! HAProxy users. Applying follows HAProxy's `srv_state_srv_update`: the configuration wins
//! where it changed, run-time values come back where it did not. Every problem in the file is
//! reported with its line and the line is skipped; nothing in it can stop lb from starting.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{apply, By, Change, ForcedHealth};
pub use crate::config::state_file::{parse, StateLine};
use crate::generation::Generation;
use crate::table::{AdminState, CheckInfo, CheckResult, ServerEntry};

/// The header `show servers state` prints (format version 1).
pub const HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

/// HAProxy's `SRV_ADMF_*` bits.
const FMAINT: u32 = 0x01;
const IMAINT: u32 = 0x02;
const CMAINT: u32 = 0x04;
const FDRAIN: u32 = 0x08;
const IDRAIN: u32 = 0x10;
const RMAINT: u32 = 0x20;
/// The name was set at run time (`set server B/S fqdn`).
const HMAINT: u32 = 0x40;
/// HAProxy's `CHK_ST_*` bits.
const CHK_CONFIGURED: u32 = 0x02;
const CHK_ENABLED: u32 = 0x04;
const CHK_PAUSED: u32 = 0x08;
const CHK_AGENT: u32 = 0x10;
/// HAProxy's `SRV_ST_*` (operational state).
const SRV_STOPPED: u32 = 0;
const SRV_STARTING: u32 = 1;
const SRV_RUNNING: u32 = 2;
const SRV_STOPPING: u32 = 3;

/// The `srv_admin_state` bits of a server.
fn admin_bits(e: &ServerEntry) -> u32 {
    let config = if e.conf.disabled { CMAINT } else { 0 };
    let forced = match e.state.admin {
        AdminState::Ready => 0,
        AdminState::Drain => FDRAIN,
        AdminState::Maint => FMAINT,
    };
    let bit = |on: bool, b: u32| if on { b } else { 0 };
    config
        | forced
        | bit(e.state.resolution_maint, RMAINT)
        | bit(e.state.via_maint, IMAINT)
        | bit(e.state.via_drain, IDRAIN)
        | bit(e.counters.fqdn_set_at_runtime(), HMAINT)
}

/// The `srv_op_state` of a server.
fn op_state(e: &ServerEntry) -> u32 {
    match (e.state.up, e.state.stopping, e.state.ramp_start.is_some()) {
        (false, ..) => SRV_STOPPED,
        (true, true, _) => SRV_STOPPING,
        (true, false, true) => SRV_STARTING,
        (true, false, false) => SRV_RUNNING,
    }
}

/// `show servers state [backend]`: the header and one line per server, HAProxy's format.
pub fn render(gen: &Generation, only: Option<&str>, now: u64, start: u64) -> String {
    let mut s = HEADER.to_owned();
    for (b, table) in gen.backends.iter().enumerate() {
        let be = &gen.config.backends[b];
        if only.is_some_and(|o| o != be.name) {
            continue;
        }
        for e in &table.snapshot().servers {
            let id = gen.proxy_ids.get(&be.name).copied().unwrap_or(be.id);
            let _ = writeln!(s, "{}", line(id, &be.name, e, now, start));
        }
    }
    s
}

fn line(be_id: u32, be_name: &str, e: &ServerEntry, now: u64, start: u64) -> String {
    let check = e.counters.check.load();
    let last = e.counters.last_change.load(Ordering::Relaxed);
    let since = now.saturating_sub(if last == 0 { start } else { last });
    let st = &e.state;
    let checked = e.conf.health.check;
    let check_state = if checked {
        CHK_CONFIGURED
            | if st.check_enabled { CHK_ENABLED } else { 0 }
            | if st.in_maint() { CHK_PAUSED } else { 0 }
    } else {
        0
    };
    let agent = &e.conf.health.agent;
    let agent_state = if agent.enabled {
        CHK_CONFIGURED | CHK_AGENT | if st.agent_enabled { CHK_ENABLED } else { 0 }
    } else {
        0
    };
    let (status, result) = if checked {
        (check.result.code(), check.result.verdict_code())
    } else {
        (CheckResult::Ini.code(), 0)
    };
    // As configured, or as `set server` left them.
    let (check, agent_at) = (
        e.counters.check_place(&e.conf),
        e.counters.agent_place(&e.conf),
    );
    let agent_addr = agent_at
        .addr
        .filter(|_| agent.enabled)
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    let agent_port = agent_at.port.filter(|_| agent.enabled).unwrap_or(0);
    let check_addr = check.addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
    format!(
        "{be_id} {be_name} {} {} {} {} {} {} {} {since} {status} {result} {} {check_state} \
         {agent_state} 0 0 {} {} - 0 {} {check_addr} {agent_addr} {agent_port}",
        e.conf.id,
        e.conf.name,
        st.addr.ip(),
        op_state(e),
        admin_bits(e),
        st.user_weight,
        e.conf.weight,
        st.check_h,
        e.counters.fqdn(&e.conf).as_deref().unwrap_or("-"),
        st.addr.port(),
        check.port.unwrap_or(0),
    )
}

/// At start: reads the server-state file of every backend that loads one
/// (`load-server-state-from-file global|local`) and applies it. (Addresses for `init-addr last`
/// were taken when the configuration was loaded.)
pub fn load_configured(gen: &Arc<Generation>) {
    let g = &gen.config.global;
    let mut by_path: Vec<(std::path::PathBuf, Vec<usize>)> = Vec::new();
    for (b, be) in gen.config.backends.iter().enumerate() {
        let Some(path) = g.server_state_file_of(be) else {
            continue;
        };
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, list)) => list.push(b),
            None => by_path.push((path, vec![b])),
        }
    }
    for (path, backends) in &by_path {
        load(gen, path, backends);
    }
}

/// Reads `path` and applies its lines to the servers of `backends` (indices into `gen`'s
/// backends) that it names. Problems are logged as warnings naming the file and line.
pub fn load(gen: &Arc<Generation>, path: &Path, backends: &[usize]) {
    let text = match crate::outside::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("server-state file {}: cannot read: {e}", path.display());
            return;
        }
    };
    let (lines, problems) = parse(&text);
    for p in problems {
        log::warn!("server-state file {}:{p}; line ignored", path.display());
    }
    for l in &lines {
        let Some(b) = backends
            .iter()
            .copied()
            .find(|&b| gen.config.backends[b].name == l.be_name)
        else {
            continue;
        };
        let Some(s) = gen.backends[b].server_index(&l.srv_name) else {
            continue;
        };
        apply_line(gen, b, s, l);
    }
}

/// Applies one line to `backend`'s `server` (HAProxy's `srv_state_srv_update`).
pub fn apply_line(gen: &Arc<Generation>, backend: usize, server: usize, l: &StateLine) {
    let by = By::StateFile;
    let snap = gen.backends[backend].snapshot();
    let Some(e) = snap.servers.get(server).cloned() else {
        return;
    };
    drop(snap);
    let mut changes = Vec::new();
    if let Some(p) = l.port {
        changes.push(Change::Addr {
            ip: None,
            port: Some(p),
        });
    }
    // Administrative state: the configuration wins where its `disabled` changed.
    let conf_cmaint = e.conf.disabled;
    let file_cmaint = l.admin & CMAINT != 0;
    if file_cmaint == conf_cmaint {
        if l.admin & FMAINT != 0 {
            changes.push(Change::Admin(AdminState::Maint));
        } else if conf_cmaint {
            changes.push(Change::Admin(AdminState::Ready));
        }
    }
    if l.admin & FMAINT == 0 && l.admin & FDRAIN != 0 && (l.iweight > 0 || e.conf.weight == 0) {
        changes.push(Change::Admin(AdminState::Drain));
    }
    // Operational state; a tracking server's is its tracked server's (restored from its own
    // line, and passed on).
    if e.conf.track.is_none() {
        changes.push(Change::ForceHealth(match l.op_state {
            SRV_STOPPED => ForcedHealth::Down,
            SRV_STOPPING => ForcedHealth::Stopping,
            _ => ForcedHealth::Up,
        }));
    }
    if l.iweight == e.conf.weight && l.uweight != e.state.user_weight {
        changes.push(Change::Weight(l.uweight));
    }
    let configured = |st: u32| st & CHK_CONFIGURED != 0;
    if e.conf.health.check && configured(l.check_state) && l.check_state & CHK_ENABLED == 0 {
        changes.push(Change::CheckEnabled(false));
    }
    if e.conf.health.agent.enabled && configured(l.agent_state) && l.agent_state & CHK_ENABLED == 0
    {
        changes.push(Change::AgentEnabled(false));
    }
    // Where the checks go, as HAProxy's `srv_update_check_addr_port`/`..._agent_...` take it.
    for (agent, (addr, port)) in [(false, &l.check_place), (true, &l.agent_place)] {
        if addr.is_none() && port.is_none() {
            continue;
        }
        match super::place_change((agent, addr.as_deref(), port.as_deref()), &e.conf, &e.state) {
            Ok(c) => changes.push(c),
            Err(why) => log::warn!(
                "server-state partially applied for server '{}/{}': {why}",
                l.be_name,
                l.srv_name
            ),
        }
    }
    // The name set at run time (HAProxy: `SRV_ADMF_HMAINT`), on a server configured with a
    // name, when the file's differs from the configured one.
    if let (Some(name), Some(configured)) = (&l.fqdn, &e.conf.fqdn) {
        if l.admin & HMAINT != 0 && name != configured {
            changes.push(Change::Fqdn(name.clone()));
        }
    }
    for c in changes {
        if let Err(err) = apply(gen, backend, server, c, &by) {
            log::warn!(
                "server-state partially applied for server '{}/{}': {err}",
                l.be_name,
                l.srv_name
            );
        }
    }
    restore_details(&e, l);
}

/// What the stats show about the last check and the last change.
fn restore_details(e: &ServerEntry, l: &StateLine) {
    if let Some(result) = CheckResult::from_code(l.check_status).filter(|_| e.conf.health.check) {
        e.counters.check.rcu(|i| CheckInfo {
            result,
            ..CheckInfo::clone(i)
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    e.counters
        .last_change
        .store(now.saturating_sub(l.since_change), Ordering::Relaxed);
}
