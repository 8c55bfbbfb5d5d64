//! pgbench on PostgreSQL: `-S` (select only, held connections) and `-S -C` (a new connection per
//! transaction), transactions per second from its report.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{find_tool, run_bounded, Server};
use super::{Figure, Unit};
use crate::procfs;

/// PostgreSQL refuses to run as root: `nobody`.
const UID: u32 = 65534;
const GID: u32 = 65534;
const CLIENTS: usize = 4;

/// What a pgbench report says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    pub tps: f64,
    pub failed: u64,
}

/// Parses pgbench's report: `tps = X (...)` and the failed transactions; its error when it has
/// no report.
pub fn parse(text: &str) -> Result<Report, String> {
    let Some(line) = text.lines().find(|l| l.starts_with("tps = ")) else {
        let err = text
            .lines()
            .find(|l| l.starts_with("pgbench: error:"))
            .unwrap_or("pgbench: no report");
        return Err(err.to_string());
    };
    let v = line["tps = ".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    let tps = v.parse().map_err(|e| format!("pgbench: tps '{v}': {e}"))?;
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|r| r.split_whitespace().next())
        .map_or(Ok(0), str::parse)
        .map_err(|e| format!("pgbench: failed transactions: {e}"))?;
    Ok(Report { tps, failed })
}

/// A running PostgreSQL with pgbench's tables, and pgbench.
#[derive(Debug)]
pub struct Pgbench {
    bin: PathBuf,
    pub addr: SocketAddr,
    _server: Server,
}

/// Where Debian puts the server binaries: the highest `/usr/lib/postgresql/N/bin`.
fn server_bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}; Debian's `postgresql`)")
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .ok_or("PostgreSQL is not installed (no version under /usr/lib/postgresql)")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

fn as_nobody(cmd: &mut Command, dir: &Path) {
    cmd.uid(UID)
        .gid(GID)
        .current_dir(dir)
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin");
}

impl Pgbench {
    /// `initdb` (trust authentication for `postgres` on loopback), `postgres` on a free
    /// loopback port as `nobody`, then `pgbench -i` directly.
    pub fn start(dir: &Path) -> Result<Pgbench, String> {
        let bin = find_tool("pgbench", &["/usr/bin/pgbench"], "postgresql-client")?;
        let sbin = server_bin_dir()?;
        let dir = dir.join("postgres");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::os::unix::fs::chown(&dir, Some(UID), Some(GID))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        let data = dir.join("data");
        let mut i = Command::new(sbin.join("initdb"));
        i.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"]);
        as_nobody(&mut i, &dir);
        let out = run_bounded(&mut i, &dir, "initdb", Duration::from_mins(2))?;
        if !out.ok {
            return Err(format!("initdb failed:\n{}", out.tail()));
        }
        let addr = crate::targets::free_loopback_port().map_err(|e| e.to_string())?;
        let mut c = Command::new(sbin.join("postgres"));
        c.arg("-D")
            .arg(&data)
            .args(["-p", &addr.port().to_string()])
            .arg("-k")
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"]);
        as_nobody(&mut c, &dir);
        let mut s = Server::spawn("postgres", c, dir.join("postgres.log"))?;
        // Fast shutdown: it removes its shared memory segment.
        s.stop_signal = Some(libc::SIGINT);
        s.wait(Duration::from_mins(1), || {
            procfs::listening_now(addr.port()).unwrap_or(false)
        })?;
        let pg = Pgbench {
            bin,
            addr,
            _server: s,
        };
        let mut init = pg.command(addr);
        init.args(["-i", "-s", "1", "-q", "postgres"]);
        let out = run_bounded(&mut init, &dir, "pgbench-init", Duration::from_mins(2))?;
        if !out.ok {
            return Err(format!("pgbench -i failed:\n{}", out.tail()));
        }
        Ok(pg)
    }

    fn command(&self, to: SocketAddr) -> Command {
        let mut c = Command::new(&self.bin);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &to.port().to_string(),
            "-U",
            "postgres",
        ])
        .env("PGCONNECT_TIMEOUT", "5");
        c
    }

    /// One `pgbench -S` run (with `-C` when `connect_per_transaction`) through `front` for
    /// `secs`: transactions/s.
    pub fn run(
        &self,
        front: SocketAddr,
        connect_per_transaction: bool,
        secs: u64,
        dir: &Path,
    ) -> Result<Figure, String> {
        let mut c = self.command(front);
        c.args(["-n", "-S", "-c", &CLIENTS.to_string(), "-j", "2"])
            .args(["-T", &secs.max(1).to_string()]);
        if connect_per_transaction {
            c.arg("-C");
        }
        c.arg("postgres");
        let out = run_bounded(&mut c, dir, "pgbench", Duration::from_secs(30 + secs))?;
        let r = parse(&out.stdout)
            .or_else(|_| parse(&out.stderr))
            .map_err(|e| format!("{e}\n{}", out.tail()))?;
        if !out.ok {
            return Err(format!("pgbench exited {}:\n{}", out.status, out.tail()));
        }
        if r.failed > 0 {
            return Err(format!(
                "pgbench: {} failed transactions:\n{}",
                r.failed,
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
    fn parses_both_reports() {
        let r = parse(include_str!("samples/pg_S.txt")).unwrap();
        assert_eq!(
            r,
            Report {
                tps: 8_653.899_121,
                failed: 0
            }
        );
        let r = parse(include_str!("samples/pg_SC.txt")).unwrap();
        assert_eq!(
            r,
            Report {
                tps: 157.960_148,
                failed: 0
            }
        );
    }

    #[test]
    fn a_refused_connection_gives_its_error() {
        let e = parse(include_str!("samples/pg_refused.txt")).unwrap_err();
        assert!(
            e.starts_with("pgbench: error: connection to server at \"127.0.0.1\", port 1 failed"),
            "{e}"
        );
        assert_eq!(parse("").unwrap_err(), "pgbench: no report");
        assert!(parse("tps = many (x)\n")
            .unwrap_err()
            .contains("tps 'many'"));
        let failed = "tps = 10.0 (x)\nnumber of failed transactions: 3 (1.0%)\n";
        assert_eq!(
            parse(failed).unwrap(),
            Report {
                tps: 10.0,
                failed: 3
            }
        );
    }
}
