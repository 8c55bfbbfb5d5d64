//! Statistics as HAProxy shows them: one row per frontend, server and backend, read from the
//! live tables and counters, rendered as CSV (`<uri>;csv`, `show stat`), HTML (the stats page)
//! and Prometheus text (`/metrics`). `http` serves them; `auth` checks the page's users.

pub mod auth;
pub mod csv;
pub mod html;
pub mod http;
pub mod prom;

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Balance;
use crate::generation::Generation;
use crate::table::{AdminState, BackendSnapshot, Health, ServerEntry};

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
    /// A server's slow start in progress, in percent of its weight (HAProxy's throttle).
    pub throttle: Option<u64>,
    pub qlimit: Option<u64>,
    pub lbtot: Option<u64>,
    /// `BACKEND/SERVER` a server tracks (`track`), empty otherwise.
    pub tracked: String,
    /// Seconds since the last connection was sent to the server (backend: to any of its
    /// servers), -1 when none was yet (`lastsess`, the page's "Last": `?`).
    pub lastsess: Option<i64>,
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
    /// Requests, responses, connections and sessions denied by `tcp-request`/`tcp-response`
    /// rules (`dreq`, `dresp`, `dcon`, `dses`), where HAProxy counts them.
    pub dreq: Option<u64>,
    pub dresp: Option<u64>,
    pub dcon: Option<u64>,
    pub dses: Option<u64>,
    /// Sessions per second now and the highest (`rate`, `rate_max`; the page's "Session
    /// rate"), and a frontend's limit (`rate_lim`, 0 = none).
    pub rate: u64,
    pub rate_max: u64,
    pub rate_lim: Option<u64>,
    /// A frontend's accepted connections per second now and the highest (`conn_rate`,
    /// `conn_rate_max`).
    pub conn_rate: Option<u64>,
    pub conn_rate_max: Option<u64>,
}

/// Unix time now, in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Process start, unix seconds.
pub fn start_secs(gen: &Generation) -> u64 {
    gen.process
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
        Balance::Hash(_) => "hash",
        Balance::Random { .. } => "random",
        Balance::RdpCookie => "rdp-cookie",
    }
}

/// A server's status as HAProxy writes it: `MAINT`, `MAINT (resolution)`, `MAINT (via B/S)`
/// (inherited from the tracked server), `DRAIN`, `NOLB`, `no check`, `UP`, `UP 1/3` (going
/// down), `DOWN 1/2` (going up), `DOWN`, and with an agent check `DOWN (agent)` (the agent
/// holds it DOWN) and `DRAIN (agent)`. `reference`: whose checks the status shows, the server
/// itself or, for one that tracks, the end of its tracking chain (HAProxy's `ref`).
pub fn server_status(e: &ServerEntry, reference: &ServerEntry) -> String {
    let st = &e.state;
    let rs = &reference.state;
    let agent = rs.agent_enabled;
    let h = &reference.conf.health;
    let counter = Health::at(h.rise.max(1), h.fall.max(1), rs.check_h);
    let down = || {
        if agent && !rs.agent_up {
            "DOWN (agent)".to_owned()
        } else if rs.check_enabled && counter.counter() > 0 && !counter.is_up() {
            counter.status()
        } else {
            "DOWN".to_owned()
        }
    };
    if st.resolution_maint {
        return "MAINT (resolution)".to_owned();
    }
    if let (true, Some(t)) = (st.via_maint, &e.conf.track) {
        return format!("MAINT (via {})", t.name);
    }
    match st.admin {
        AdminState::Maint => "MAINT".to_owned(),
        _ if st.draining() && st.up && agent => "DRAIN (agent)".to_owned(),
        _ if st.draining() && st.up => "DRAIN".to_owned(),
        _ if st.draining() => down(),
        AdminState::Drain | AdminState::Ready => {
            if !st.up {
                down()
            } else if st.weight == 0 && !st.stopping {
                // HAProxy: "a zero weight is reported on the stats page as DRAIN since it has
                // the same effect on the server (it's removed from the LB farm)".
                "DRAIN".to_owned()
            } else if st.stopping {
                "NOLB".to_owned()
            } else if !rs.check_enabled {
                "no check".to_owned()
            } else if counter.is_up() {
                counter.status()
            } else {
                "UP".to_owned()
            }
        }
    }
}

/// The end of `e`'s tracking chain (`e` itself when it tracks none): whose checks its status
/// shows. A chain is checked at load to end, and is at most as long as the servers.
fn track_reference(gen: &Generation, e: &ServerEntry) -> ServerEntry {
    let mut at = e.clone();
    let servers: usize = gen.config.backends.iter().map(|b| b.servers.len()).sum();
    for _ in 0..servers {
        let Some(t) = &at.conf.track else { break };
        let next = gen
            .backends
            .get(t.to.0)
            .and_then(|table| table.snapshot().servers.get(t.to.1).cloned());
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    at
}

/// HAProxy's `server_throttle_rate` while a slow start runs (and the server does not drain):
/// its weight now against the one it ramps to, rounded up; 100 with a static algorithm or
/// weight 0.
fn throttle(st: &crate::table::ServerState) -> Option<u64> {
    if st.ramp_start.is_none() || st.draining() {
        return None;
    }
    if st.user_weight == 0 {
        return Some(100);
    }
    Some(u64::from((100 * st.weight).div_ceil(st.user_weight)))
}

/// `lastsess`: seconds from `last` (unix seconds, 0 = never) to `now`, or -1 for never.
fn session_age(now: u64, last: u64) -> i64 {
    if last == 0 {
        -1
    } else {
        i64::try_from(now.saturating_sub(last)).unwrap_or(i64::MAX)
    }
}

fn server_row(
    gen: &Generation,
    b: usize,
    iid: u32,
    i: usize,
    e: &ServerEntry,
    now: u64,
    start: u64,
) -> Row {
    let be = &gen.config.backends[b];
    let c = &e.counters;
    let check = c.check.load();
    let agent = c.agent.load();
    let agent_on = e.state.agent_enabled;
    let checked = e.state.check_enabled;
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
        slim: (e.maxconn() > 0).then_some(u64::from(e.maxconn())),
        stot: c.total.load(Ordering::Relaxed),
        bin: c.bytes_in.load(Ordering::Relaxed),
        bout: c.bytes_out.load(Ordering::Relaxed),
        econ: Some(c.connect_errors.load(Ordering::Relaxed)),
        wretr: Some(c.retries.load(Ordering::Relaxed)),
        wredis: Some(c.redispatches.load(Ordering::Relaxed)),
        status: server_status(e, &track_reference(gen, e)),
        weight: Some(u64::from(e.state.weight)),
        act: Some(u64::from(!e.conf.backup)),
        bck: Some(u64::from(e.conf.backup)),
        chkfail: checked.then_some(check.failed),
        chkdown: checked.then_some(check.down_transitions),
        lastchg: Some(now.saturating_sub(if last == 0 { start } else { last })),
        downtime: checked.then(|| c.downtime.load(Ordering::Relaxed)),
        throttle: throttle(&e.state),
        qlimit: (e.conf.maxqueue > 0).then_some(u64::from(e.conf.maxqueue)),
        lbtot: Some(c.total.load(Ordering::Relaxed)),
        tracked: e
            .conf
            .track
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        rate: c.sess_rate.read(),
        rate_max: c.sess_rate.max(),
        rate_lim: None,
        conn_rate: None,
        conn_rate_max: None,
        lastsess: Some(session_age(now, c.last_session.load(Ordering::Relaxed))),
        check_status: if checked {
            check.result.name().to_owned()
        } else {
            String::new()
        },
        check_code: (checked && check.result.has_code()).then(|| check.code.map_or(0, u64::from)),
        check_duration: check.duration_ms.filter(|_| checked),
        check_desc: if checked {
            check.result.desc().to_owned()
        } else {
            String::new()
        },
        check_info: if checked {
            check.info.clone()
        } else {
            String::new()
        },
        checked,
        agent_status: if agent_on {
            agent.result.name().to_owned()
        } else {
            String::new()
        },
        agent_duration: agent.duration_ms.filter(|_| agent_on),
        agent_desc: if agent_on {
            agent.result.desc().to_owned()
        } else {
            String::new()
        },
        agent_info: if agent_on {
            agent.info.clone()
        } else {
            String::new()
        },
        agent_health: agent_on.then_some(u64::from(e.state.agent_up)),
        backup: e.conf.backup,
        admin: Some(e.state.admin),
        uweight: Some(u64::from(e.state.user_weight)),
        iweight: Some(u64::from(e.conf.weight)),
        algo: String::new(),
        addr: e.addr().to_string(),
        dreq: None,
        dresp: None,
        dcon: None,
        dses: None,
    }
}

fn backend_row(
    gen: &Generation,
    b: usize,
    iid: u32,
    snap: &BackendSnapshot,
    now: u64,
    start: u64,
) -> Row {
    let be = &gen.config.backends[b];
    let table = &gen.backends[b];
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
        scur: u64::from(gen.be_stats[b].cur.load(Ordering::Relaxed)),
        smax: u64::from(gen.be_stats[b].max.load(Ordering::Relaxed)),
        // HAProxy's backend `slim` is its `fullconn`.
        slim: Some(u64::from(table.load.fullconn)),
        stot: gen.be_stats[b].total.load(Ordering::Relaxed),
        rate: gen.be_stats[b].sess_rate.read(),
        rate_max: gen.be_stats[b].sess_rate.max(),
        // Its servers' bytes, and those of the connections it sent with no server (`option
        // transparent`), counted on the backend itself.
        bin: sum(&|e| e.counters.bytes_in.load(Ordering::Relaxed))
            + gen.be_stats[b].bytes_in.load(Ordering::Relaxed),
        bout: sum(&|e| e.counters.bytes_out.load(Ordering::Relaxed))
            + gen.be_stats[b].bytes_out.load(Ordering::Relaxed),
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
        // HAProxy stamps the backend whenever it assigns a server; lb stamps the server, so
        // the backend's last session is its servers' latest.
        lastsess: Some(session_age(
            now,
            snap.servers
                .iter()
                .map(|e| e.counters.last_session.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0),
        )),
        algo: algo_name(be.balance).to_owned(),
        dreq: Some(gen.be_stats[b].denied_req.load(Ordering::Relaxed)),
        dresp: Some(gen.be_stats[b].denied_resp.load(Ordering::Relaxed)),
        ..Row::default()
    }
}

/// Every row, proxy by proxy in file order: FRONTEND, then servers, then BACKEND.
pub fn rows(gen: &Generation) -> Vec<Row> {
    let config = &gen.config;
    let ids = &gen.proxy_ids;
    let now = now_secs();
    let start = start_secs(gen);
    let mut names: Vec<(&str, u32)> = ids.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    names.sort_by_key(|(_, i)| *i);
    let mut out = Vec::new();
    for (name, iid) in names {
        if let Some(f) = config.frontends.iter().position(|f| f.name == name) {
            let fe = &config.frontends[f];
            let st = &gen.fe_stats[f];
            out.push(Row {
                kind: Some(RowKind::Frontend),
                pxname: fe.name.clone(),
                svname: "FRONTEND".to_owned(),
                iid,
                scur: u64::from(st.cur.load(Ordering::Relaxed)),
                smax: u64::from(st.max.load(Ordering::Relaxed)),
                slim: Some(u64::from(gen.limits.frontend(f))),
                stot: st.total.load(Ordering::Relaxed),
                rate: st.sess_rate.read(),
                rate_max: st.sess_rate.max(),
                rate_lim: Some(u64::from(fe.rate_limit_sessions.unwrap_or(0))),
                conn_rate: Some(st.conn_rate.read()),
                conn_rate_max: Some(st.conn_rate.max()),
                bin: st.bytes_in.load(Ordering::Relaxed),
                bout: st.bytes_out.load(Ordering::Relaxed),
                status: gen.fe_states.get(f).status().to_owned(),
                dreq: Some(st.denied_req.load(Ordering::Relaxed)),
                dresp: Some(st.denied_resp.load(Ordering::Relaxed)),
                dcon: Some(st.denied_conn.load(Ordering::Relaxed)),
                dses: Some(st.denied_sess.load(Ordering::Relaxed)),
                ..Row::default()
            });
        }
        if let Some(b) = config.backends.iter().position(|b| b.name == name) {
            let snap = gen.backends[b].snapshot();
            for (i, e) in snap.servers.iter().enumerate() {
                out.push(server_row(gen, b, iid, i, e, now, start));
            }
            out.push(backend_row(gen, b, iid, &snap, now, start));
        }
    }
    out
}

/// Finds a backend and server by name (`B/S`), as the runtime API and the page's form name them.
pub fn find_server(
    gen: &Generation,
    backend: &str,
    server: &str,
) -> Result<(usize, usize), &'static str> {
    let b = gen
        .config
        .backends
        .iter()
        .position(|x| x.name == backend)
        .ok_or("No such backend.")?;
    let s = gen.backends[b]
        .server_index(server)
        .ok_or("No such server.")?;
    Ok((b, s))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::{self, By, Change, CheckReport, ForcedHealth};
    use crate::table::CheckResult;

    fn gen() -> Arc<Generation> {
        let cfg = crate::config::load_str(
            "t.cfg",
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             frontend fe\n  bind 127.0.0.1:1\n  default_backend be\n\
             backend be\n  server s1 127.0.0.1:2 check\n  server s2 127.0.0.1:3 backup\n",
        )
        .unwrap();
        Generation::standalone(Arc::new(cfg))
    }

    fn check(passed: bool, result: CheckResult, ms: u64) -> Change {
        Change::Check(CheckReport {
            passed,
            result,
            code: None,
            info: if passed { "" } else { "Connection refused" }.into(),
            duration: std::time::Duration::from_millis(ms),
        })
    }

    #[test]
    fn checked_server_rows_show_the_checker_view() {
        let sh = gen();
        let apply = |c: Change, by: &By| state::apply(&sh, 0, 0, c, by).unwrap();
        apply(check(true, CheckResult::L4Ok, 1), &By::Check);
        apply(check(false, CheckResult::L4Con, 1500), &By::Check);
        let all = rows(&sh);
        let names: Vec<&str> = all.iter().map(|r| r.svname.as_str()).collect();
        assert_eq!(names, ["FRONTEND", "s1", "s2", "BACKEND"]);
        let s1 = &all[1];
        assert_eq!(s1.status, "UP 2/3");
        assert_eq!(html::row_class(s1), "active_going_down");
        assert_eq!(csv::field(s1, "check_status"), "L4CON");
        assert_eq!(csv::field(s1, "check_desc"), "Layer4 connection problem");
        assert_eq!(csv::field(s1, "chkfail"), "1");
        assert_eq!(csv::field(s1, "check_duration"), "1500");
        assert_eq!(csv::field(s1, "lastsess"), "-1");
        assert!(csv::render_typed(&all).contains(".lastsess.1:KNS:s32:-1\n"));
        let s2 = &all[2];
        assert_eq!(
            (s2.status.as_str(), csv::field(s2, "chkfail").as_str()),
            ("no check", "")
        );
        assert_eq!(html::row_class(s2), "backup_no_check");
        // Health and admin state override the checker's text.
        apply(Change::ForceHealth(ForcedHealth::Down), &By::Cli);
        assert_eq!(rows(&sh)[1].status, "DOWN");
        apply(Change::Admin(AdminState::Maint), &By::Cli);
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

    #[test]
    fn status_follows_the_counter_and_both_kinds_of_maintenance() {
        let sh = gen();
        let apply = |c: Change| state::apply(&sh, 0, 0, c, &By::Check).unwrap();
        let status = || rows(&sh)[1].status.clone();
        assert_eq!(
            status(),
            "UP 1/3",
            "a checked server starts one failure from DOWN"
        );
        apply(check(false, CheckResult::L4Con, 1));
        assert_eq!(status(), "DOWN");
        apply(check(true, CheckResult::L4Ok, 1));
        assert_eq!(status(), "DOWN 1/2");
        apply(Change::Resolution(Some("DNS NX status")));
        assert_eq!(status(), "MAINT (resolution)");
    }

    /// `disable frontend` leaves the frontend `OPEN` and UP, `shutdown frontend` makes it
    /// `STOP` and DOWN, in `show stat`, on the page and for Prometheus, as HAProxy 2.6.
    #[test]
    fn a_shut_down_frontend_is_stop_everywhere_and_a_paused_one_open() {
        use crate::fe_state::FeState;
        let g = gen();
        let status = |g: &Generation| {
            rows(g)
                .into_iter()
                .find(|r| r.kind == Some(RowKind::Frontend))
                .map(|r| r.status)
        };
        let shown = |g: &Generation| {
            let rows = rows(g);
            (
                prom::render(g, &rows),
                html::render(g, &page_conf(), &rows, false, None),
            )
        };
        for (state, word, up, down) in [
            (FeState::Ready, "OPEN", 1, 0),
            (FeState::Paused, "OPEN", 1, 0),
            (FeState::Stopped, "STOP", 0, 1),
        ] {
            g.fe_states.set(0, state);
            assert_eq!(status(&g).as_deref(), Some(word), "{state:?}");
            let (metrics, page) = shown(&g);
            for (label, v) in [("UP", up), ("DOWN", down)] {
                let line =
                    format!("haproxy_frontend_status{{proxy=\"fe\",state=\"{label}\"}} {v}\n");
                assert!(
                    metrics.contains(&line),
                    "{state:?}: no {line} in\n{metrics}"
                );
            }
            assert!(
                page.contains(&format!("<td class=ac>{word}</td>")),
                "{state:?}: the page does not say {word}"
            );
        }
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
            show_legends: false,
            show_node: None,
            show_desc: None,
            prometheus: None,
            maxconn: None,
            timeout: None,
            request_timeout: None,
        }
    }
}
