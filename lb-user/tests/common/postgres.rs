//! A real PostgreSQL for the tests: `initdb` and `postgres` from Debian's `postgresql`
//! package, run as `nobody` (PostgreSQL refuses to run as root) in a temp dir, on a free
//! loopback port, its log in a file the test reads. Stopped and removed on drop.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;
use super::health::{poll, TempDir};

/// The user PostgreSQL runs as (it refuses root).
const UID: u32 = 65534;
const GID: u32 = 65534;

/// A running `postgres` with trust authentication for user `postgres` on 127.0.0.1.
pub struct Postgres {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

/// Where Debian puts the server binaries: the highest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (cargo xtask setup installs postgresql)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
}

fn as_nobody(cmd: &mut Command, dir: &TempDir) {
    cmd.uid(UID)
        .gid(GID)
        .current_dir(&dir.path)
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
}

impl Postgres {
    /// `initdb` (superuser `postgres`, trust authentication), then `postgres` with
    /// `log_connections` on, so that the log shows every connection (each health check).
    pub fn start() -> Postgres {
        let dir = TempDir::new("pgsql");
        std::os::unix::fs::chown(&dir.path, Some(UID), Some(GID)).expect("chown the temp dir");
        let bin = bin_dir();
        let data = dir.path.join("data");
        let mut init = Command::new(bin.join("initdb"));
        init.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"]);
        as_nobody(&mut init, &dir);
        let out = init.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path.join("postgres.log")).expect("create the log");
        std::os::unix::fs::fchown(&log, Some(UID), Some(GID)).expect("chown the log");
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(&dir.path)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "logging_collector=off"])
            .args(["-c", "log_connections=on"])
            .args(["-c", "fsync=off"]);
        as_nobody(&mut cmd, &dir);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let pg = Postgres { port, dir, child };
        assert!(
            poll(Duration::from_secs(30), || pg
                .log()
                .contains("database system is ready to accept connections")),
            "postgres did not come up on port {port}; log:\n{}",
            pg.log()
        );
        pg
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's "fast shutdown".
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        if !poll(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
