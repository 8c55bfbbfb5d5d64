//! `redis-benchmark` against a `redis-server` the bench starts: PING, SET and GET, on held
//! connections and with `-k 0` (a new connection per request), requests per second from its
//! `--csv` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{find_tool, run_bounded, Server};
use super::{Figure, Unit};
use crate::procfs;

/// Concurrent clients (`-c`), as in the measurement.
const CLIENTS: usize = 4;
/// The tests run, and the rows reported (`PING_MBULK` is the `PING` a client library sends).
const TESTS: &str = "ping_mbulk,set,get";
pub const ROWS: [&str; 3] = ["PING_MBULK", "SET", "GET"];

/// A running `redis-server` and the benchmark tool.
#[derive(Debug)]
pub struct Redis {
    bench: PathBuf,
    pub addr: SocketAddr,
    _server: Server,
}

/// Requests per second of each row of `redis-benchmark --csv`, in [`ROWS`] order.
pub fn parse(csv: &str) -> Result<[f64; 3], String> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("redis-benchmark printed nothing")?;
    if !header.starts_with("\"test\",\"rps\"") {
        return Err(format!("redis-benchmark: unexpected CSV header '{header}'"));
    }
    let mut out = [f64::NAN; 3];
    for l in lines {
        let mut f = l.split(',').map(|c| c.trim_matches('"'));
        let (Some(name), Some(rps)) = (f.next(), f.next()) else {
            return Err(format!("redis-benchmark: short CSV line '{l}'"));
        };
        if let Some(i) = ROWS.iter().position(|r| *r == name) {
            out[i] = rps
                .parse()
                .map_err(|e| format!("redis-benchmark: {name} rps '{rps}': {e}"))?;
        }
    }
    if let Some(i) = out.iter().position(|v| v.is_nan()) {
        return Err(format!("redis-benchmark: no {} row", ROWS[i]));
    }
    Ok(out)
}

/// Requests each of a run's three tests makes (`-n`): a third of what a proxied run does per
/// second on a small machine (held connections ~25 000 requests/s, one connection per request
/// ~5 000), times `secs`.
pub fn requests_per_test(connect_per_request: bool, secs: u64) -> u64 {
    let per_s = if connect_per_request { 2_000 } else { 10_000 };
    per_s * secs.max(1)
}

impl Redis {
    /// Starts `redis-server` on a free loopback port (no persistence) with its files in `dir`.
    pub fn start(dir: &Path) -> Result<Redis, String> {
        let bench = find_tool(
            "redis-benchmark",
            &["/usr/bin/redis-benchmark"],
            "redis-tools",
        )?;
        let server = find_tool("redis-server", &["/usr/bin/redis-server"], "redis-server")?;
        let addr = crate::targets::free_loopback_port().map_err(|e| e.to_string())?;
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut c = Command::new(server);
        c.args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--maxclients", "10000"])
            .arg("--dir")
            .arg(&dir);
        let mut s = Server::spawn("redis-server", c, dir.join("redis.log"))?;
        s.stop_signal = Some(libc::SIGTERM);
        s.wait(Duration::from_secs(10), || {
            procfs::listening_now(addr.port()).unwrap_or(false)
        })?;
        Ok(Redis {
            bench,
            addr,
            _server: s,
        })
    }

    /// One `redis-benchmark` run through `front`, sized so that its three tests take about
    /// `secs` together: requests/s of PING, SET and GET.
    pub fn run(
        &self,
        front: SocketAddr,
        connect_per_request: bool,
        secs: u64,
        dir: &Path,
    ) -> Result<[Figure; 3], String> {
        let n = requests_per_test(connect_per_request, secs);
        let mut c = Command::new(&self.bench);
        c.args(["-h", "127.0.0.1", "-p", &front.port().to_string()])
            .args(["-c", &CLIENTS.to_string(), "-n", &n.to_string()])
            .args(["-t", TESTS, "--csv"]);
        if connect_per_request {
            c.args(["-k", "0"]);
        }
        // redis-benchmark retries a refused connection forever: the limit turns that into an
        // error.
        let out = run_bounded(
            &mut c,
            dir,
            "redis-benchmark",
            Duration::from_secs(30 + 6 * secs),
        )?;
        if !out.ok {
            return Err(format!(
                "redis-benchmark exited {}:\n{}",
                out.status,
                out.tail()
            ));
        }
        let rps = parse(&out.stdout).map_err(|e| format!("{e}\n{}", out.tail()))?;
        if let Some(l) = out
            .stderr
            .lines()
            .find(|l| l.contains("rror") || l.contains("ould not"))
        {
            return Err(format!("redis-benchmark reported: {l}"));
        }
        Ok(rps.map(|v| Figure::new(v, Unit::PerSecond)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_csv() {
        let r = parse(include_str!("samples/redis_k1.csv")).unwrap();
        assert_eq!(
            r.map(|x| (x * 100.0).round() as u64),
            [4_866_180, 5_390_836, 4_716_981]
        );
        let r = parse(include_str!("samples/redis_k0.csv")).unwrap();
        assert_eq!(
            r.map(|x| (x * 100.0).round() as u64),
            [1_754_386, 1_339_286, 1_357_466]
        );
    }

    #[test]
    fn bad_output_is_named() {
        assert_eq!(parse("").unwrap_err(), "redis-benchmark printed nothing");
        assert!(parse("PING: 5.00\n")
            .unwrap_err()
            .contains("unexpected CSV header"));
        let only_ping = "\"test\",\"rps\"\n\"PING_MBULK\",\"1.5\"\n";
        assert_eq!(parse(only_ping).unwrap_err(), "redis-benchmark: no SET row");
        let bad = "\"test\",\"rps\"\n\"SET\",\"fast\"\n";
        assert!(parse(bad)
            .unwrap_err()
            .starts_with("redis-benchmark: SET rps 'fast'"));
    }
}
