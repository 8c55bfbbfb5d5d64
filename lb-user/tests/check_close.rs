//! Health checks close as HAProxy's do, seen from the real server's log: a plain connect
//! check never reaches PostgreSQL at all (the handshake's last ACK held back, then a reset:
//! the server never accepts it); `pgsql-check`
//! against a real PostgreSQL and `mysql-check` against a real MariaDB leave no trace (HAProxy
//! builds them as `tcp-check connect default linger`: a FIN, never a reset), over 20 checks
//! each; against a real Redis, `redis-check` and `tcp-check` with and without `linger` end
//! their connections the way Debian's HAProxy, run beside lb on the same config, ends them (a
//! reset or a FIN, as Redis logs each). The unit tests in `health::probe` pin the same closes
//! against a local server.

#[macro_use]
mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::haproxy::Haproxy;
use common::health::{poll, MariaDb, Redis};
use common::postgres::Postgres;
use common::stats::{col, parse_csv};
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
    // Read before lb stops: a check in flight when it stops is cut (seen once: PostgreSQL's
    // "could not receive data from client" logged after lb's SIGTERM).
    let log = pg.log();
    drop(lb);
    assert!(
        !lb_saw_failures(&log),
        "PostgreSQL logged a trace of the checks' close:\n{log}"
    );
}

/// `EmbryonicRsts` of `/proc/net/netstat`: resets a listener received for a connection still
/// in `SYN_RECV`, i.e. never accepted. System-wide, so only a lower bound of this test's own.
fn embryonic_resets() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").expect("read /proc/net/netstat");
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "EmbryonicRsts")
        .and_then(|(_, v)| v.parse().ok())
        .expect("TcpExt EmbryonicRsts")
}

#[test]
fn plain_connect_checks_never_reach_postgresql() {
    // Issue #11: each plain connect check used to complete the handshake, and PostgreSQL
    // accepted it and logged "incomplete startup packet". As HAProxy's, it now resets before
    // the handshake's last ACK: PostgreSQL never accepts it.
    let pg = Postgres::start();
    let inter = Duration::from_millis(100);
    let before = embryonic_resets();
    let started = Instant::now();
    let lb = common::stats::start(
        "plainpg",
        "splice",
        &[],
        &[format!("pg 127.0.0.1:{} check inter 100ms", pg.port)],
    );
    // At least CHECKS checks: CHECKS intervals have passed, and the kernel counted as many
    // resets of connections in SYN_RECV.
    let enough = || {
        started.elapsed() >= inter * (CHECKS as u32 + 2)
            && embryonic_resets().saturating_sub(before) >= CHECKS as u64
    };
    assert!(
        poll(Duration::from_secs(30), enough),
        "fewer than {CHECKS} checks were reset in SYN_RECV ({} since lb started)",
        embryonic_resets() - before
    );
    let (_, rows) = parse_csv(&lb.admin("show stat"));
    let row = rows
        .iter()
        .find(|r| col(r, "pxname") == "be" && col(r, "svname") == "pg")
        .expect("server pg in show stat");
    assert_eq!(
        (col(row, "status"), col(row, "check_status")),
        ("UP", "L4OK"),
        "{row:?}"
    );
    drop(lb);
    let log = pg.log();
    assert!(
        !log.contains("connection received") && !lb_saw_failures(&log),
        "PostgreSQL accepted a plain connect check; its log:\n{log}"
    );
    // The log does show a client that completes its handshake, then resets as the check does.
    let bare = std::net::TcpStream::connect(("127.0.0.1", pg.port)).expect("connect to PostgreSQL");
    socket2::SockRef::from(&bare)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(bare);
    assert!(
        poll(Duration::from_secs(10), || {
            let log = pg.log();
            log.contains("connection received") && lb_saw_failures(&log)
        }),
        "PostgreSQL did not log a bare connection's reset; its log:\n{}",
        pg.log()
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
    // Read before the proxy stops: a check in flight when it stops is closed by the stop, not
    // by the check (seen once in CI: HAProxy's plain connect checks left one FIN at Redis,
    // logged after its SIGTERM, while none of the 40 before it reached Redis).
    let closes = Closes::of(&since());
    drop(proxy);
    closes
}

/// How long a check kind may leave Redis's log without a close (40 checks' time).
const QUIET_FOR: Duration = Duration::from_secs(4);

#[test]
fn every_check_kind_closes_at_redis_as_haproxys() {
    // The plain connect check resets before the handshake's last ACK (TCP_QUICKACK off), in
    // both: it never reaches Redis, which logs nothing.
    let kinds: [(&str, &[&str]); 4] = [
        ("plain connect", &[]),
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
