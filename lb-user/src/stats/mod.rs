//! Statistics as HAProxy shows them: one row per frontend, server and backend, read from the
//! live tables and counters, rendered as CSV (`<uri>;csv`, `show stat`), HTML (the stats page)
//! and Prometheus text (`/metrics`). `http` serves them; `auth` checks the page's users.

pub mod auth;
pub mod csv;
pub mod html;
pub mod http;
pub mod prom;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Balance, Config, Loc};
use crate::listener::Shared;
use crate::table::{AdminState, BackendSnapshot, ServerEntry};

/// Errors of the stats page server.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A listening socket of a stats section could not be bound.
    #[error("stats section '{name}': cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What a row describes (HAProxy's `type` column: 0 frontend, 1 backend, 2 server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    Frontend,
    Backend,
    Server,
}

impl RowKind {
    /// HAProxy's numeric `type`.
    pub fn code(self) -> u32 {
        match self {
            Self::Frontend => 0,
            Self::Backend => 1,
            Self::Server => 2,
        }
    }
}

/// One stats row; `None` where HAProxy leaves the field empty for this kind of row.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub kind: Option<RowKind>,
    pub pxname: String,
    /// `FRONTEND`, `BACKEND` or the server name.
    pub svname: String,
    /// Proxy id (`iid`) and server id (`sid`, 0 for frontend/backend rows).
    pub iid: u32,
    pub sid: u32,
    /// Index of the backend in `Config::backends` and of the server in it (admin actions).
    pub backend: Option<usize>,
    pub server: Option<usize>,
    pub qcur: Option<u64>,
    pub qmax: Option<u64>,
    pub scur: u64,
    pub smax: u64,
    pub slim: Option<u64>,
    pub stot: u64,
    pub bin: u64,
    pub bout: u64,
    pub econ: Option<u64>,
    pub wretr: Option<u64>,
    pub wredis: Option<u64>,
    /// `OPEN`, `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, `UP 1/3`, ...
    pub status: String,
    pub weight: Option<u64>,
    pub act: Option<u64>,
    pub bck: Option<u64>,
    pub chkfail: Option<u64>,
    pub chkdown: Option<u64>,
    /// Seconds since the last state change.
    pub lastchg: Option<u64>,
    pub downtime: Option<u64>,
    pub qlimit: Option<u64>,
    pub lbtot: Option<u64>,
    /// Last check result (`L4OK`, `L7RSP`, ...), empty without checks.
    pub check_status: String,
    pub check_code: Option<u64>,
    pub check_duration: Option<u64>,
    /// HAProxy's description of the check result (`Layer4 connection problem`).
    pub check_desc: String,
    /// Free text of the last check (`Connection refused`, server version).
    pub check_info: String,
    /// Whether the server is checked at all.
    pub checked: bool,
    /// Agent check (`agent-check`, enabled): last result (`L7OK`, `L7STS`, `L4CON`, `CHECKED`),
    /// its duration, HAProxy's description of it, the agent's text, and its health (1 = UP, 0 =
    /// DOWN; rise = fall = 1). Empty without an enabled agent.
    pub agent_status: String,
    pub agent_duration: Option<u64>,
    pub agent_desc: String,
    pub agent_info: String,
    pub agent_health: Option<u64>,
    pub backup: bool,
    pub admin: Option<AdminState>,
    /// Effective and configured weight (servers).
    pub uweight: Option<u64>,
    pub iweight: Option<u64>,
    /// `balance` algorithm name (backends).
    pub algo: String,
    /// `host:port` of a server.
    pub addr: String,
}

/// Unix time now, in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Process start, unix seconds.
pub fn start_secs(shared: &Shared) -> u64 {
    shared
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HAProxy's name of a `balance` algorithm.
pub fn algo_name(b: Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "roundrobin",
        Balance::StaticRr => "static-rr",
        Balance::LeastConn => "leastconn",
        Balance::First => "first",
        Balance::Source => "source",
        Balance::Random { .. } => "random",
    }
}

/// HAProxy's description of a check result code.
pub fn check_desc(result: &str) -> &'static str {
    match result {
        "INI" => "Initializing",
        "SOCKERR" => "Socket error",
        "L4OK" => "Layer4 check passed",
        "L4TOUT" => "Layer4 timeout",
        "L4CON" => "Layer4 connection problem",
        "L6OK" => "Layer6 check passed",
        "L6TOUT" => "Layer6 timeout",
        "L6RSP" => "Layer6 invalid response",
        "L7TOUT" => "Layer7 timeout",
        "L7RSP" => "Layer7 invalid response",
        "L7OK" => "Layer7 check passed",
        "L7OKC" => "Layer7 check conditionally passed",
        "L7STS" => "Layer7 wrong status",
        "PROCERR" => "External check error",
        "PROCTOUT" => "External check timeout",
        "PROCOK" => "External check passed",
        "CHECKED" => "No status change",
        _ => "",
    }
}

/// A server's status as HAProxy writes it: `MAINT`, `DRAIN`, `no check`, `UP`, `UP 1/3`, `DOWN`,
/// and with an agent check `DOWN (agent)` (the agent holds it DOWN) and `DRAIN (agent)`.
pub fn server_status(e: &ServerEntry) -> String {
    let check = e.counters.check.load();
    let agent = e.agent_enabled();
    let down = || {
        if agent && e.state.agent_down {
            "DOWN (agent)".to_owned()
        } else {
            "DOWN".to_owned()
        }
    };
    match e.state.admin {
        AdminState::Maint => "MAINT".to_owned(),
        AdminState::Drain if e.state.healthy && agent => "DRAIN (agent)".to_owned(),
        AdminState::Drain if e.state.healthy => "DRAIN".to_owned(),
        AdminState::Drain => down(),
        AdminState::Ready => {
            if !e.state.healthy {
                down()
            } else if e.state.weight == 0 && !e.state.stopping {
                // HAProxy: "a zero weight is reported on the stats page as DRAIN since it has
                // the same effect on the server (it's removed from the LB farm)".
                "DRAIN".to_owned()
            } else if e.state.stopping {
                "NOLB".to_owned()
            } else if !check.enabled {
                "no check".to_owned()
            } else if check.status.is_empty() || check.status.starts_with("DOWN") {
                // The table says healthy: the checker's view is being published.
                "UP".to_owned()
            } else {
                check.status.clone()
            }
        }
    }
}

/// Proxy ids (`iid`) in file order, a `listen` counting once, as HAProxy numbers proxies.
pub fn proxy_ids(config: &Config) -> HashMap<String, u32> {
    let mut locs: Vec<(&Loc, &str)> = config
        .frontends
        .iter()
        .map(|f| (&f.loc, f.name.as_str()))
        .chain(config.backends.iter().map(|b| (&b.loc, b.name.as_str())))
        .collect();
    locs.sort_by(|a, b| (a.0.file.as_ref(), a.0.line).cmp(&(b.0.file.as_ref(), b.0.line)));
    let mut ids = HashMap::new();
    for (_, name) in locs {
        let next = u32::try_from(ids.len() + 1).unwrap_or(u32::MAX);
        ids.entry(name.to_owned()).or_insert(next);
    }
    ids
}

fn server_row(
    shared: &Shared,
    b: usize,
    iid: u32,
    i: usize,
    e: &ServerEntry,
    now: u64,
    start: u64,
) -> Row {
    let be = &shared.config.backends[b];
    let c = &e.counters;
    let check = c.check.load();
    let agent = c.agent.load();
    let agent_on = e.agent_enabled();
    let last = c.last_change.load(Ordering::Relaxed);
    Row {
        kind: Some(RowKind::Server),
        pxname: be.name.clone(),
        svname: e.conf.name.clone(),
        iid,
        sid: e.conf.id,
        backend: Some(b),
        server: Some(i),
        qcur: Some(0),
        qmax: Some(0),
        scur: u64::from(c.cur.load(Ordering::Relaxed)),
        smax: u64::from(c.max.load(Ordering::Relaxed)),
        slim: (e.conf.maxconn > 0).then_some(u64::from(e.conf.maxconn)),
        stot: c.total.load(Ordering::Relaxed),
        bin: c.bytes_in.load(Ordering::Relaxed),
        bout: c.bytes_out.load(Ordering::Relaxed),
        econ: Some(c.connect_errors.load(Ordering::Relaxed)),
        wretr: Some(c.retries.load(Ordering::Relaxed)),
        wredis: Some(c.redispatches.load(Ordering::Relaxed)),
        status: server_status(e),
        weight: Some(u64::from(e.state.weight)),
        act: Some(u64::from(!e.conf.backup)),
        bck: Some(u64::from(e.conf.backup)),
        chkfail: check.enabled.then_some(check.failed),
        chkdown: check.enabled.then_some(check.down_transitions),
        lastchg: Some(now.saturating_sub(if last == 0 { start } else { last })),
        downtime: check.enabled.then(|| c.downtime.load(Ordering::Relaxed)),
        qlimit: (e.conf.maxqueue > 0).then_some(u64::from(e.conf.maxqueue)),
        lbtot: Some(c.total.load(Ordering::Relaxed)),
        check_status: if check.enabled {
            check.result.clone()
        } else {
            String::new()
        },
        check_code: check.code.map(u64::from).filter(|_| check.enabled),
        check_duration: check.duration_ms.filter(|_| check.enabled),
        check_desc: if check.enabled {
            check_desc(&check.result).to_owned()
        } else {
            String::new()
        },
        check_info: if check.enabled {
            check.info.clone()
        } else {
            String::new()
        },
        checked: check.enabled,
        agent_status: if agent_on {
            agent.result.clone()
        } else {
            String::new()
        },
        agent_duration: agent.duration_ms.filter(|_| agent_on),
        agent_desc: if agent_on {
            check_desc(&agent.result).to_owned()
        } else {
            String::new()
        },
        agent_info: if agent_on {
            agent.info.clone()
        } else {
            String::new()
        },
        agent_health: agent_on.then_some(u64::from(!e.state.agent_down)),
        backup: e.conf.backup,
        admin: Some(e.state.admin),
        uweight: Some(u64::from(e.state.weight)),
        iweight: Some(u64::from(e.conf.weight)),
        algo: String::new(),
        addr: e.conf.addr.to_string(),
    }
}

fn backend_row(
    shared: &Shared,
    b: usize,
    iid: u32,
    snap: &BackendSnapshot,
    now: u64,
    start: u64,
) -> Row {
    let be = &shared.config.backends[b];
    let table = &shared.backends[b];
    let sum = |f: &dyn Fn(&ServerEntry) -> u64| snap.servers.iter().map(f).sum::<u64>();
    let (act, bck) = snap.usable_counts();
    let weight: u64 = snap
        .serving()
        .iter()
        .map(|&i| u64::from(snap.servers[i].state.weight))
        .sum();
    let last = snap
        .servers
        .iter()
        .map(|e| e.counters.last_change.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    Row {
        kind: Some(RowKind::Backend),
        pxname: be.name.clone(),
        svname: "BACKEND".to_owned(),
        iid,
        sid: 0,
        backend: Some(b),
        server: None,
        qcur: Some(table.queue_len() as u64),
        qmax: Some(table.queue_max() as u64),
        scur: u64::from(shared.be_stats[b].cur.load(Ordering::Relaxed)),
        smax: u64::from(shared.be_stats[b].max.load(Ordering::Relaxed)),
        slim: None,
        stot: shared.be_stats[b].total.load(Ordering::Relaxed),
        bin: sum(&|e| e.counters.bytes_in.load(Ordering::Relaxed)),
        bout: sum(&|e| e.counters.bytes_out.load(Ordering::Relaxed)),
        econ: Some(sum(&|e| e.counters.connect_errors.load(Ordering::Relaxed))),
        wretr: Some(sum(&|e| e.counters.retries.load(Ordering::Relaxed))),
        wredis: Some(sum(&|e| e.counters.redispatches.load(Ordering::Relaxed))),
        status: if act + bck > 0 { "UP" } else { "DOWN" }.to_owned(),
        weight: Some(weight),
        act: Some(act as u64),
        bck: Some(bck as u64),
        chkfail: None,
        chkdown: Some(sum(&|e| e.counters.check.load().down_transitions)),
        lastchg: Some(now.saturating_sub(if last == 0 { start } else { last })),
        downtime: Some(0),
        qlimit: None,
        lbtot: Some(sum(&|e| e.counters.total.load(Ordering::Relaxed))),
        algo: algo_name(be.balance).to_owned(),
        ..Row::default()
    }
}

/// Every row, proxy by proxy in file order: FRONTEND, then servers, then BACKEND.
pub fn rows(shared: &Shared) -> Vec<Row> {
    let config = &shared.config;
    let ids = proxy_ids(config);
    let now = now_secs();
    let start = start_secs(shared);
    let mut names: Vec<(&str, u32)> = ids.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    names.sort_by_key(|(_, i)| *i);
    let mut out = Vec::new();
    for (name, iid) in names {
        if let Some(f) = config.frontends.iter().position(|f| f.name == name) {
            let fe = &config.frontends[f];
            let st = &shared.fe_stats[f];
            out.push(Row {
                kind: Some(RowKind::Frontend),
                pxname: fe.name.clone(),
                svname: "FRONTEND".to_owned(),
                iid,
                scur: u64::from(st.cur.load(Ordering::Relaxed)),
                smax: u64::from(st.max.load(Ordering::Relaxed)),
                slim: Some(u64::from(fe.maxconn.unwrap_or(shared.maxconn))),
                stot: st.total.load(Ordering::Relaxed),
                bin: st.bytes_in.load(Ordering::Relaxed),
                bout: st.bytes_out.load(Ordering::Relaxed),
                status: "OPEN".to_owned(),
                ..Row::default()
            });
        }
        if let Some(b) = config.backends.iter().position(|b| b.name == name) {
            let snap = shared.backends[b].snapshot();
            for (i, e) in snap.servers.iter().enumerate() {
                out.push(server_row(shared, b, iid, i, e, now, start));
            }
            out.push(backend_row(shared, b, iid, &snap, now, start));
        }
    }
    out
}

/// Finds a backend and server by name (`B/S`), as the runtime API and the page's form name them.
pub fn find_server(
    shared: &Shared,
    backend: &str,
    server: &str,
) -> Result<(usize, usize), &'static str> {
    let b = shared
        .config
        .backends
        .iter()
        .position(|x| x.name == backend)
        .ok_or("No such backend.")?;
    let s = shared.backends[b]
        .server_index(server)
        .ok_or("No such server.")?;
    Ok((b, s))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::table::CheckInfo;

    fn shared() -> Arc<Shared> {
        let cfg = crate::config::load_str(
            "t.cfg",
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             frontend fe\n  bind 127.0.0.1:1\n  default_backend be\n\
             backend be\n  server s1 127.0.0.1:2 check\n  server s2 127.0.0.1:3 backup\n",
        )
        .unwrap();
        Shared::new(Arc::new(cfg), 100, 1).0
    }

    #[test]
    fn checked_server_rows_show_the_checker_view() {
        let sh = shared();
        let snap = sh.backends[0].snapshot();
        snap.servers[0].counters.check.store(Arc::new(CheckInfo {
            enabled: true,
            status: "UP 2/3".into(),
            result: "L4CON".into(),
            code: None,
            info: "Connection refused".into(),
            duration_ms: Some(1500),
            failed: 4,
            down_transitions: 1,
        }));
        let all = rows(&sh);
        let names: Vec<&str> = all.iter().map(|r| r.svname.as_str()).collect();
        assert_eq!(names, ["FRONTEND", "s1", "s2", "BACKEND"]);
        let s1 = &all[1];
        assert_eq!(s1.status, "UP 2/3");
        assert_eq!(html::row_class(s1), "active_going_down");
        assert_eq!(csv::field(s1, "check_status"), "L4CON");
        assert_eq!(csv::field(s1, "check_desc"), "Layer4 connection problem");
        assert_eq!(csv::field(s1, "chkfail"), "4");
        assert_eq!(csv::field(s1, "check_duration"), "1500");
        let s2 = &all[2];
        assert_eq!(
            (s2.status.as_str(), csv::field(s2, "chkfail").as_str()),
            ("no check", "")
        );
        assert_eq!(html::row_class(s2), "backup_no_check");
        // Health and admin state override the checker's text.
        sh.backends[0].set_healthy(0, false).unwrap();
        assert_eq!(rows(&sh)[1].status, "DOWN");
        sh.backends[0].set_admin(0, AdminState::Maint).unwrap();
        assert_eq!(rows(&sh)[1].status, "MAINT");
        let text = prom::render(&sh, &rows(&sh));
        assert!(text
            .contains("haproxy_server_check_status{proxy=\"be\",server=\"s1\",state=\"L4CON\"} 1"));
        assert!(text
            .contains("haproxy_server_check_duration_seconds{proxy=\"be\",server=\"s1\"} 1.500"));
        assert!(
            text.contains("haproxy_server_status{proxy=\"be\",server=\"s1\",state=\"MAINT\"} 1")
        );
        let page = html::render(
            &sh,
            &sh.config.stats.first().cloned().unwrap_or_else(page_conf),
            &rows(&sh),
            true,
            None,
        );
        assert!(page.contains("class=\"maintain\""));
        assert!(page.contains("L4CON in 1500ms"));
    }

    fn page_conf() -> crate::config::StatsProxy {
        crate::config::StatsProxy {
            name: "stats".into(),
            loc: crate::config::Loc {
                file: Arc::new("t.cfg".into()),
                line: 1,
            },
            binds: Vec::new(),
            page: true,
            uri: "/".into(),
            realm: "r".into(),
            users: Vec::new(),
            userlists: Vec::new(),
            refresh: None,
            admin: true,
            hide_version: true,
            prometheus: None,
            maxconn: None,
            timeout: None,
            request_timeout: None,
        }
    }
}
