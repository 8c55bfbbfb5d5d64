//! The Prometheus exporter (`http-request use-service prometheus-exporter`): text exposition
//! format 0.0.4 with HAProxy's metric names, help texts and `proxy`/`server`/`state` labels.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{now_secs, start_secs, Row, RowKind};
use crate::generation::Generation;
use crate::table::CheckResult;

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// States of `haproxy_*_status` for servers, in HAProxy's order.
const SERVER_STATES: [&str; 5] = ["DOWN", "UP", "MAINT", "DRAIN", "NOLB"];
/// States of `haproxy_server_check_status`, in HAProxy's order (then `UNKNOWN`).
const CHECK_STATES: [CheckResult; 18] = [
    CheckResult::Hana,
    CheckResult::SockErr,
    CheckResult::L4Ok,
    CheckResult::L4Tout,
    CheckResult::L4Con,
    CheckResult::L6Ok,
    CheckResult::L6Tout,
    CheckResult::L6Rsp,
    CheckResult::L7Tout,
    CheckResult::L7Rsp,
    CheckResult::L7Ok,
    CheckResult::L7OkC,
    CheckResult::L7Sts,
    CheckResult::ProcErr,
    CheckResult::ProcTout,
    CheckResult::ProcOk,
    CheckResult::Ini,
    CheckResult::Start,
];

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP haproxy_{name} {help}");
        let _ = writeln!(self.out, "# TYPE haproxy_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.sample_str(name, labels, &value.to_string());
    }

    fn sample_str(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str("haproxy_");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Escapes a label value (`\`, `"`, newline), as the exposition format requires.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type Get = fn(&Row) -> Option<u64>;

/// (name suffix, type, help, value) for frontend rows.
const FRONTEND: &[(&str, &str, &str, Get)] = &[
    ("current_sessions", "gauge", "Number of current sessions on the frontend, backend or server", |r| Some(r.scur)),
    ("max_sessions", "gauge", "Highest value of current sessions encountered since process started", |r| Some(r.smax)),
    ("limit_sessions", "gauge", "Frontend/listener/server's maxconn, backend's fullconn", |r| r.slim),
    ("sessions_total", "counter", "Total number of sessions since process started", |r| Some(r.stot)),
    ("limit_session_rate", "gauge", "Limit on the number of sessions accepted in a second (frontend only, 'rate-limit sessions' setting)", |r| r.rate_lim),
    ("max_session_rate", "gauge", "Highest value of sessions per second observed since the worker process started", |r| Some(r.rate_max)),
    ("bytes_in_total", "counter", "Total number of request bytes since process started", |r| Some(r.bin)),
    ("bytes_out_total", "counter", "Total number of response bytes since process started", |r| Some(r.bout)),
    ("connections_rate_max", "gauge", "Highest value of connections per second observed since the worker process started", |r| r.conn_rate_max),
    ("connections_total", "counter", "Total number of new connections accepted on this frontend since the worker process started", |r| Some(r.stot)),
    ("requests_denied_total", "counter", "Total number of denied requests since process started", |r| r.dreq),
    ("responses_denied_total", "counter", "Total number of denied responses since process started", |r| r.dresp),
    ("denied_connections_total", "counter", "Total number of incoming connections blocked on a listener/frontend by a tcp-request connection rule since the worker process started", |r| r.dcon),
    ("denied_sessions_total", "counter", "Total number of incoming sessions blocked on a listener/frontend by a tcp-request connection rule since the worker process started", |r| r.dses),
];

/// Metrics gen by backend and server rows.
const BACKEND_AND_SERVER: &[(&str, &str, &str, Get)] = &[
    ("current_queue", "gauge", "Number of current queued connections", |r| r.qcur),
    ("max_queue", "gauge", "Highest value of queued connections encountered since process started", |r| r.qmax),
    ("current_sessions", "gauge", "Number of current sessions on the frontend, backend or server", |r| Some(r.scur)),
    ("max_sessions", "gauge", "Highest value of current sessions encountered since process started", |r| Some(r.smax)),
    ("sessions_total", "counter", "Total number of sessions since process started", |r| Some(r.stot)),
    ("max_session_rate", "gauge", "Highest value of sessions per second observed since the worker process started", |r| Some(r.rate_max)),
    ("bytes_in_total", "counter", "Total number of request bytes since process started", |r| Some(r.bin)),
    ("bytes_out_total", "counter", "Total number of response bytes since process started", |r| Some(r.bout)),
    ("connection_errors_total", "counter", "Total number of failed connections to server since the worker process started", |r| r.econ),
    ("retry_warnings_total", "counter", "Total number of server connection retries since the worker process started", |r| r.wretr),
    ("redispatch_warnings_total", "counter", "Total number of server redispatches due to connection failures since the worker process started", |r| r.wredis),
    ("weight", "gauge", "Server's effective weight, or sum of active servers' effective weights for a backend", |r| r.weight),
    ("check_last_change_seconds", "gauge", "How long ago the last server state changed, in seconds", |r| r.lastchg),
    ("loadbalanced_total", "counter", "Total number of requests routed by load balancing since the worker process started (ignores queue pop and stickiness)", |r| r.lbtot),
];

const BACKEND_ONLY: &[(&str, &str, &str, Get)] = &[
    (
        "requests_denied_total",
        "counter",
        "Total number of denied requests since process started",
        |r| r.dreq,
    ),
    (
        "responses_denied_total",
        "counter",
        "Total number of denied responses since process started",
        |r| r.dresp,
    ),
    (
        "active_servers",
        "gauge",
        "Total number of active UP servers with a non-zero weight",
        |r| r.act,
    ),
    (
        "backup_servers",
        "gauge",
        "Total number of backup UP servers with a non-zero weight",
        |r| r.bck,
    ),
];

const SERVER_ONLY: &[(&str, &str, &str, Get)] = &[
    ("limit_sessions", "gauge", "Frontend/listener/server's maxconn, backend's fullconn", |r| r.slim),
    ("queue_limit", "gauge", "Limit on the number of connections in queue, for servers only (maxqueue argument)", |r| r.qlimit),
    ("check_failures_total", "counter", "Total number of failed individual health checks per server/backend, since the worker process started", |r| r.chkfail),
    ("check_up_down_total", "counter", "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the worker process started", |r| r.chkdown),
    ("downtime_seconds_total", "counter", "Total time spent in DOWN state, for server or backend", |r| r.downtime),
    ("current_throttle", "gauge", "Current throttle percentage for the server, when slowstart is active, or no value if not in slowstart.", |r| r.throttle),
];

fn family(out: &mut String, scope: &str, rows: &[&Row], defs: &[(&str, &str, &str, Get)]) {
    let mut f = Family { out };
    for (name, kind, help, get) in defs {
        let full = format!("{scope}_{name}");
        let present: Vec<(&Row, u64)> = rows
            .iter()
            .filter_map(|r| get(r).map(|v| (*r, v)))
            .collect();
        if present.is_empty() {
            continue;
        }
        f.head(&full, kind, help);
        for (r, v) in present {
            if r.kind == Some(RowKind::Server) {
                f.sample(&full, &[("proxy", &r.pxname), ("server", &r.svname)], v);
            } else {
                f.sample(&full, &[("proxy", &r.pxname)], v);
            }
        }
    }
}

/// The whole exposition.
pub fn render(gen: &Generation, rows: &[Row]) -> String {
    let mut out = String::new();
    process(&mut out, gen);
    let of = |kind| -> Vec<&Row> { rows.iter().filter(|r| r.kind == Some(kind)).collect() };
    let (fes, bes, svs) = (
        of(RowKind::Frontend),
        of(RowKind::Backend),
        of(RowKind::Server),
    );
    family(&mut out, "frontend", &fes, FRONTEND);
    // A frontend is UP until `shutdown frontend` (a paused one too, as HAProxy 2.6's); a
    // backend is UP while one server is usable.
    proxy_status(&mut out, "frontend", &fes, |r| r.status != "STOP");
    family(&mut out, "backend", &bes, BACKEND_AND_SERVER);
    family(&mut out, "backend", &bes, BACKEND_ONLY);
    proxy_status(&mut out, "backend", &bes, |r| r.status == "UP");
    family(&mut out, "server", &svs, BACKEND_AND_SERVER);
    family(&mut out, "server", &svs, SERVER_ONLY);
    server_status(&mut out, &svs);
    checks(&mut out, &svs);
    out
}

/// The `haproxy_process_*` families.
fn process(out: &mut String, gen: &Generation) {
    let now = now_secs();
    let start = start_secs(gen);
    let cum: u64 = gen
        .fe_stats
        .iter()
        .map(|f| f.total.load(Ordering::Relaxed))
        .sum();
    let mut f = Family { out };
    let threads = gen.process.threads as u64;
    for (name, kind, help, v) in [
        ("process_nbthread", "gauge", "Number of started threads (global.nbthread)", threads),
        ("process_uptime_seconds", "gauge", "How long ago this worker process was started (seconds)", now.saturating_sub(start)),
        ("process_start_time_seconds", "gauge", "Start time in seconds", start),
        ("process_max_connections", "gauge", "Hard limit on the number of per-process connections (configured or imposed by Ulimit-n)", u64::from(gen.limits.global())),
        ("process_current_connections", "gauge", "Current number of connections on this worker process", u64::from(gen.process.conns.load(Ordering::Relaxed))),
        ("process_connections_total", "counter", "Total number of connections on this worker process since started", cum),
        ("process_current_connection_rate", "gauge", "Number of front connections created on this worker process over the last second", gen.process.conn_rate.read()),
        ("process_limit_connection_rate", "gauge", "Hard limit for ConnRate (global.maxconnrate)", u64::from(gen.limits.conn_rate.load(Ordering::Relaxed))),
        ("process_max_connection_rate", "gauge", "Highest ConnRate reached on this worker process since started (in connections per second)", gen.process.conn_rate.max()),
        ("process_current_session_rate", "gauge", "Number of sessions created on this worker process over the last second", gen.process.sess_rate.read()),
        ("process_limit_session_rate", "gauge", "Hard limit for SessRate (global.maxsessrate)", u64::from(gen.limits.sess_rate.load(Ordering::Relaxed))),
        ("process_max_session_rate", "gauge", "Highest SessRate reached on this worker process since started (in sessions per second)", gen.process.sess_rate.max()),
    ] {
        f.head(name, kind, help);
        f.sample(name, &[], v);
    }
    f.head("process_build_info", "gauge", "Build info");
    f.sample(
        "process_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
}

/// `haproxy_frontend_status` / `haproxy_backend_status`: DOWN and UP per proxy.
fn proxy_status(out: &mut String, what: &str, rows: &[&Row], up: impl Fn(&Row) -> bool) {
    if rows.is_empty() {
        return;
    }
    let name = format!("{what}_status");
    let mut f = Family { out };
    f.head(
        &name,
        "gauge",
        "Current status of the service, per state label value.",
    );
    for r in rows {
        let up = u64::from(up(r));
        f.sample(&name, &[("proxy", &r.pxname), ("state", "DOWN")], 1 - up);
        f.sample(&name, &[("proxy", &r.pxname), ("state", "UP")], up);
    }
}

/// `haproxy_server_status`, per state label value.
fn server_status(out: &mut String, svs: &[&Row]) {
    if svs.is_empty() {
        return;
    }
    let mut f = Family { out };
    f.head(
        "server_status",
        "gauge",
        "Current status of the service, per state label value.",
    );
    for r in svs {
        // "no check" and "UP 1/3" are UP; "DOWN 1/2" is DOWN; both maintenances are MAINT.
        let state = match r.status.as_str() {
            s if s.starts_with("MAINT") => "MAINT",
            "DRAIN" | "DRAIN (agent)" => "DRAIN",
            "NOLB" => "NOLB",
            s if s.starts_with("DOWN") => "DOWN",
            _ => "UP",
        };
        for s in SERVER_STATES {
            let lab = [
                ("proxy", r.pxname.as_str()),
                ("server", r.svname.as_str()),
                ("state", s),
            ];
            f.sample("server_status", &lab, u64::from(s == state));
        }
    }
}

/// `haproxy_server_check_status` and `haproxy_server_check_duration_seconds` of checked
/// servers.
fn checks(out: &mut String, svs: &[&Row]) {
    let checked: Vec<&&Row> = svs.iter().filter(|r| r.checked).collect();
    if checked.is_empty() {
        return;
    }
    let mut f = Family { out };
    f.head(
        "server_check_status",
        "gauge",
        "Status of last health check, per state label value.",
    );
    for r in &checked {
        let names = CHECK_STATES.iter().map(|c| c.name());
        for s in names.chain(["UNKNOWN"]) {
            let lab = [
                ("proxy", r.pxname.as_str()),
                ("server", r.svname.as_str()),
                ("state", s),
            ];
            f.sample("server_check_status", &lab, u64::from(r.check_status == s));
        }
    }
    f.head(
        "server_check_duration_seconds",
        "gauge",
        "Total duration of the latest server health check, in seconds.",
    );
    for r in &checked {
        let lab = [("proxy", r.pxname.as_str()), ("server", r.svname.as_str())];
        let ms = r.check_duration.unwrap_or(0);
        let secs = format!("{}.{:03}", ms / 1000, ms % 1000);
        f.sample_str("server_check_duration_seconds", &lab, &secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
