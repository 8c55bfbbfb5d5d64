//! sysbench on MariaDB: `oltp_read_only`, `oltp_point_select`, and one connection per query.
//! sysbench 1.0.20 (Debian 12) has no `--reconnect`; the connect-per-query run is a six-line Lua
//! script on sysbench's own SQL driver (connect, one point select, disconnect per event).
//! Transactions per second from its report, which also gives ignored errors and reconnects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{find_tool, run_bounded, Server};
use super::{Figure, Unit};

const TABLE_SIZE: u32 = 10_000;
const THREADS: usize = 4;
const USER: &str = "sbtest";
const PASSWORD: &str = "sbtest-bench";

/// The connect-per-query event: sysbench's driver, a fresh connection per point select.
const CONNECT_PER_QUERY_LUA: &str = r#"-- lb bench: one connection per point select.
function thread_init()
   drv = sysbench.sql.driver()
end
function event()
   local con = drv:connect()
   con:query(string.format("SELECT c FROM sbtest1 WHERE id=%d",
                           sysbench.rand.default(1, sysbench.opt.table_size)))
   con:disconnect()
end
sysbench.cmdline.options = {
   table_size = {"Number of rows per table", 10000},
}
"#;

/// The three sysbench workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    ReadOnly,
    PointSelect,
    ConnectPerQuery,
}

/// What a sysbench report says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    pub tps: f64,
    pub errors: u64,
    pub p95_ms: f64,
}

fn number_after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
    line.trim_start()[label.len()..].split_whitespace().next()
}

/// Parses sysbench's final report; its `FATAL:` line when it has none.
pub fn parse(text: &str) -> Result<Report, String> {
    let Some(tx) = text
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
    else {
        let fatal = text
            .lines()
            .find(|l| l.starts_with("FATAL:"))
            .unwrap_or("no report");
        return Err(format!("sysbench: {fatal}"));
    };
    let tps = tx
        .split('(')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| format!("sysbench: no rate in '{tx}'"))?;
    let tps: f64 = tps
        .parse()
        .map_err(|e| format!("sysbench: rate '{tps}': {e}"))?;
    let errors = number_after(text, "ignored errors:")
        .ok_or("sysbench: no 'ignored errors' line")?
        .parse()
        .map_err(|e| format!("sysbench: ignored errors: {e}"))?;
    let p95_ms = number_after(text, "95th percentile:")
        .ok_or("sysbench: no '95th percentile' line")?
        .parse()
        .map_err(|e| format!("sysbench: 95th percentile: {e}"))?;
    Ok(Report {
        tps,
        errors,
        p95_ms,
    })
}

/// A running MariaDB with the `sbtest` table prepared, and sysbench.
#[derive(Debug)]
pub struct Sysbench {
    bin: PathBuf,
    lua: PathBuf,
    pub addr: SocketAddr,
    _server: Server,
}

fn mariadb_sql(client: &Path, socket: &Path, q: &str) -> Result<(), String> {
    let out = Command::new(client)
        .arg("--no-defaults")
        .arg("-uroot")
        .arg(format!("--socket={}", socket.display()))
        .arg("--connect-timeout=2")
        .arg("-e")
        .arg(q)
        .output()
        .map_err(|e| format!("mariadb: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Sysbench {
    /// Creates a data directory, starts `mariadbd` on a free loopback port, creates the
    /// `sbtest` user and database and prepares the table (directly, not through a proxy).
    pub fn start(dir: &Path) -> Result<Sysbench, String> {
        let bin = find_tool("sysbench", &["/usr/bin/sysbench"], "sysbench")?;
        let install = find_tool(
            "mariadb-install-db",
            &["/usr/bin/mariadb-install-db"],
            "mariadb-server",
        )?;
        let server = find_tool("mariadbd", &["/usr/sbin/mariadbd"], "mariadb-server")?;
        let client = find_tool("mariadb", &["/usr/bin/mariadb"], "mariadb-client")?;
        let dir = dir.join("mariadb");
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut i = Command::new(install);
        i.arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--skip-test-db"]);
        let out = run_bounded(&mut i, &dir, "install-db", Duration::from_mins(2))?;
        if !out.ok {
            return Err(format!("mariadb-install-db failed:\n{}", out.tail()));
        }
        let addr = crate::targets::free_loopback_port().map_err(|e| e.to_string())?;
        let socket = dir.join("mysqld.sock");
        let mut c = Command::new(server);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={}", addr.port()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--user=root",
            ])
            .args([
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=2000",
            ])
            .arg(format!("--log-error={}", dir.join("error.log").display()));
        let mut s = Server::spawn("mariadbd", c, dir.join("mariadbd.out"))?;
        s.log = dir.join("error.log");
        s.stop_signal = Some(libc::SIGTERM);
        s.wait(Duration::from_mins(1), || {
            mariadb_sql(&client, &socket, "SELECT 1").is_ok()
        })?;
        mariadb_sql(
            &client,
            &socket,
            &format!(
                "CREATE DATABASE sbtest; CREATE USER {USER}@'%' IDENTIFIED BY '{PASSWORD}'; \
                 GRANT ALL ON sbtest.* TO {USER}@'%';"
            ),
        )
        .map_err(|e| format!("mariadb: creating the sbtest user: {e}"))?;
        let lua = dir.join("connect_per_query.lua");
        std::fs::write(&lua, CONNECT_PER_QUERY_LUA)
            .map_err(|e| format!("{}: {e}", lua.display()))?;
        let sb = Sysbench {
            bin,
            lua,
            addr,
            _server: s,
        };
        let mut p = sb.command("oltp_read_only", addr);
        p.arg("prepare");
        let out = run_bounded(&mut p, &dir, "sysbench-prepare", Duration::from_mins(2))?;
        if !out.ok {
            return Err(format!("sysbench prepare failed:\n{}", out.tail()));
        }
        Ok(sb)
    }

    fn command(&self, script: &str, to: SocketAddr) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg(script)
            .args([
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={}", to.port()),
            ])
            .arg(format!("--mysql-user={USER}"))
            .arg(format!("--mysql-password={PASSWORD}"))
            .arg(format!("--table-size={TABLE_SIZE}"));
        c
    }

    /// One run of `test` through `front` for `secs`: transactions/s (a point select is one).
    pub fn run(
        &self,
        front: SocketAddr,
        test: Test,
        secs: u64,
        dir: &Path,
    ) -> Result<Figure, String> {
        let lua = self.lua.display().to_string();
        let script = match test {
            Test::ReadOnly => "oltp_read_only",
            Test::PointSelect => "oltp_point_select",
            Test::ConnectPerQuery => lua.as_str(),
        };
        let mut c = self.command(script, front);
        c.arg(format!("--threads={THREADS}"))
            .arg(format!("--time={}", secs.max(1)))
            .arg("run");
        let out = run_bounded(&mut c, dir, "sysbench", Duration::from_secs(30 + secs))?;
        let r = parse(&out.stdout).map_err(|e| format!("{e}\n{}", out.tail()))?;
        if !out.ok {
            return Err(format!("sysbench exited {}:\n{}", out.status, out.tail()));
        }
        if r.errors > 0 {
            return Err(format!(
                "sysbench: {} ignored errors:\n{}",
                r.errors,
                out.tail()
            ));
        }
        Ok(Figure::new(r.tps, Unit::PerSecond))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_reports() {
        let r = parse(include_str!("samples/sb_ro.txt")).unwrap();
        assert_eq!(
            r,
            Report {
                tps: 458.50,
                errors: 0,
                p95_ms: 14.73
            }
        );
        let r = parse(include_str!("samples/sb_ps.txt")).unwrap();
        assert!(r.tps > 1000.0 && r.errors == 0, "{r:?}");
        let r = parse(include_str!("samples/sb_cpq.txt")).unwrap();
        assert_eq!((r.tps * 100.0).round() as u64, 559_238);
    }

    #[test]
    fn a_failed_connect_gives_its_fatal_line() {
        let e = parse(include_str!("samples/sb_refused.txt")).unwrap_err();
        assert_eq!(
            e,
            "sysbench: FATAL: unable to connect to MySQL server on host '127.0.0.1', port 1, aborting..."
        );
        assert_eq!(parse("").unwrap_err(), "sysbench: no report");
        assert!(parse("    transactions: 5 (x per sec.)\n")
            .unwrap_err()
            .contains("rate 'x'"));
    }

    #[test]
    fn the_connect_per_query_script_connects_per_event() {
        let event = CONNECT_PER_QUERY_LUA
            .split("function event()")
            .nth(1)
            .unwrap();
        let connect = event.find("drv:connect()").unwrap();
        let query = event.find("con:query(").unwrap();
        let close = event.find("con:disconnect()").unwrap();
        assert!(connect < query && query < close);
    }
}
