//! Health checks leave no trace in the server's log: `pgsql-check` against a real PostgreSQL
//! and `mysql-check` against a real MariaDB end as HAProxy's do (`tcp-check connect default
//! linger`: a FIN, never a reset), over 20 checks each. How every other check kind closes
//! (a reset where HAProxy resets) is pinned by the unit tests in `health::probe`.

#[macro_use]
mod common;

use std::time::Duration;

use common::health::{poll, MariaDb};
use common::postgres::Postgres;
use common::{free_port, simple_config, Lb};

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
