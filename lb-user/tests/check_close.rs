//! Health checks close as HAProxy's do, seen from the real server's log: `pgsql-check`
//! against a real PostgreSQL and `mysql-check` against a real MariaDB leave no trace (HAProxy
//! builds them as `tcp-check connect default linger`: a FIN, never a reset), over 20 checks
//! each; against a real Redis, `redis-check` and `tcp-check` with and without `linger` end
//! their connections the way Debian's HAProxy, run beside lb on the same config, ends them (a
//! reset or a FIN, as Redis logs each). The unit tests in `health::probe` pin the same closes
//! against a local server.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::haproxy::Haproxy;
use common::health::{poll, MariaDb, Redis};
use common::postgres::Postgres;
use common::{free_port, local, simple_config, Lb};

/// Checks to watch; each check is one connection to the server.
const CHECKS: usize = 20;

/// What a server logs when a client resets or drops its connection.
const RESET_TRACES: [&str; 4] = [
    "could not receive data from client",
    "Connection reset by peer",
    "unexpected EOF",
    "incomplete startup packet",
];

#[test]
fn pgsql_checks_leave_no_reset_in_postgresqls_log() {
    let pg = Postgres::start();
    let cfg = simple_config(
        free_port(),
        &["option pgsql-check user postgres"],
        &[format!("pg 127.0.0.1:{} check inter 100ms", pg.port)],
    );
    let lb = Lb::start(&cfg, "splice");
    // Checks run one after another: once CHECKS + 2 have connected, the first CHECKS have
    // closed and PostgreSQL has logged whatever their close made it log.
    let checks = |log: &str| log.matches("connection authorized: user=postgres").count();
    assert!(
        poll(Duration::from_secs(30), || checks(&pg.log()) >= CHECKS + 2),
        "fewer than {} pgsql-checks reached PostgreSQL; its log:\n{}",
        CHECKS + 2,
        pg.log()
    );
    drop(lb);
    let log = pg.log();
    assert!(
        !lb_saw_failures(&log),
        "PostgreSQL logged a trace of the checks' close:\n{log}"
    );
}

fn lb_saw_failures(server_log: &str) -> bool {
    RESET_TRACES.iter().any(|t| server_log.contains(t))
}

/// `name` from MariaDB's `USER_STATISTICS` for the check's user.
fn user_stat(db: &MariaDb, name: &str) -> u64 {
    let out = db
        .sql(&format!(
            "SELECT {name} FROM information_schema.USER_STATISTICS WHERE USER = 'haproxy'"
        ))
        .unwrap_or_default();
    out.lines()
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn mysql_checks_leave_no_aborted_connection_in_mariadbs_log() {
    // log-warnings=4 logs every aborted connection; userstat counts connections per user,
    // and those that ended without a proper close (LOST_CONNECTIONS).
    let db = MariaDb::start_with(&["--log-warnings=4", "--userstat=1"]);
    db.sql("CREATE USER 'haproxy'@'127.0.0.1'")
        .expect("create the check's user");
    let cfg = simple_config(
        free_port(),
        &["option mysql-check user haproxy post-41"],
        &[format!("db 127.0.0.1:{} check inter 100ms", db.port)],
    );
    let lb = Lb::start(&cfg, "splice");
    assert!(
        poll(Duration::from_secs(30), || user_stat(
            &db,
            "TOTAL_CONNECTIONS"
        ) >= (CHECKS + 2) as u64),
        "fewer than {} mysql-checks reached MariaDB; its log:\n{}",
        CHECKS + 2,
        db.log()
    );
    drop(lb);
    let log = db.log();
    assert_eq!(
        (
            user_stat(&db, "LOST_CONNECTIONS"),
            user_stat(&db, "DENIED_CONNECTIONS")
        ),
        (0, 0),
        "MariaDB counted checks that ended uncleanly or were refused; its log:\n{log}"
    );
    assert!(
        !log.contains("Aborted connection") && !lb_saw_failures(&log),
        "MariaDB logged a trace of the checks' close:\n{log}"
    );
}

/// How a check's connections ended, as Redis logged them (`loglevel verbose`).
#[derive(Debug, PartialEq, Eq)]
struct Closes {
    fin: usize,
    reset: usize,
}

impl Closes {
    /// Counts the closes in `log` (what Redis logged since the server was ready).
    fn of(log: &str) -> Closes {
        Closes {
            fin: log.matches("Client closed connection").count(),
            reset: log
                .matches("Reading from client: Connection reset by peer")
                .count(),
        }
    }

    /// The kinds of close seen: FIN, reset, or both.
    fn kinds(&self) -> (bool, bool) {
        (self.fin > 0, self.reset > 0)
    }
}

/// Runs `backend_lines`' checks against a fresh Redis for `proxy` (lb or HAProxy, started by
/// `start` on the config) until `CHECKS` of them have closed (or for [`QUIET_FOR`] when they
/// leave no line), and returns how they closed. The checked server is in a backend of its own: the frontend's connections (HAProxy's
/// readiness probe) do not reach it.
fn closes_of<P>(backend_lines: &[&str], start: impl FnOnce(&str, u16) -> P) -> Closes {
    let redis = Redis::start_logging();
    // Redis::start's own readiness probe may be logged late: wait for its close.
    assert!(
        poll(Duration::from_secs(5), || Closes::of(&redis.log()).fin >= 1),
        "Redis did not log the close of its readiness probe:\n{}",
        redis.log()
    );
    let skip = redis.log().len();
    let since = || redis.log().get(skip..).unwrap_or_default().to_owned();
    let port = free_port();
    let mut cfg = simple_config(port, &[], &[]);
    cfg.push_str("\nbackend checked\n");
    for l in backend_lines {
        let _ = writeln!(cfg, "    {l}");
    }
    let _ = writeln!(
        cfg,
        "    server r 127.0.0.1:{} check inter 100ms",
        redis.port
    );
    let proxy = start(&cfg, port);
    let closed = |c: &Closes| c.fin + c.reset >= CHECKS;
    poll(QUIET_FOR, || closed(&Closes::of(&since())));
    drop(proxy);
    Closes::of(&since())
}

/// How long a check kind may leave Redis's log without a close (40 checks' time).
const QUIET_FOR: Duration = Duration::from_secs(4);

#[test]
fn every_check_kind_closes_at_redis_as_haproxys() {
    // Not compared: the plain connect check. HAProxy's resets before the handshake's last ACK
    // (TCP_QUICKACK off) and never reaches Redis; lb's is logged as a reset (see README).
    let kinds: [(&str, &[&str]); 3] = [
        ("redis-check", &["option redis-check"]),
        (
            "tcp-check",
            &[
                "option tcp-check",
                "tcp-check send PING\\r\\n",
                "tcp-check expect string +PONG",
            ],
        ),
        (
            "tcp-check connect linger",
            &[
                "option tcp-check",
                "tcp-check connect linger",
                "tcp-check send PING\\r\\n",
                "tcp-check expect string +PONG",
            ],
        ),
    ];
    for (name, lines) in kinds {
        let haproxy = closes_of(lines, |cfg, port| Haproxy::start(cfg, local(port)));
        let lb = closes_of(lines, |cfg, _| Lb::start(cfg, "splice"));
        assert_eq!(
            lb.kinds(),
            haproxy.kinds(),
            "{name}: lb's checks closed as {lb:?} at Redis, HAProxy's as {haproxy:?}"
        );
        // Those that reach Redis's log, reach it every time: the comparison saw many checks.
        if haproxy.kinds() != (false, false) {
            assert!(
                lb.fin + lb.reset >= CHECKS,
                "{name}: only {lb:?} of lb's checks closed at Redis"
            );
        }
        eprintln!("{name}: lb {lb:?}, HAProxy {haproxy:?}");
    }
}
