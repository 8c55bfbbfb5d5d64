//! Running the real clients and their servers as child processes: each in its own process group,
//! killed with the bench (`PR_SET_PDEATHSIG`, and the bench's Ctrl-C/panic cleanup), every
//! client run bounded in time, every tool checked for before it is used.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::targets;

/// The first of `candidates` that exists as a file, or a message naming the tool, where it was
/// looked for and the Debian package that has it.
pub fn find_tool(tool: &str, candidates: &[&str], package: &str) -> Result<PathBuf, String> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{tool} is not installed (looked for {}; Debian's `{package}`, which `cargo xtask \
                 setup` installs)",
                candidates.join(", ")
            )
        })
}

/// Process-group, parent-death and cleanup settings every child gets.
fn own_group(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn kill_group(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: kill has no memory-safety preconditions; the group is our child's own.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
    targets::forget_child(pid);
}

/// What a bounded client run printed.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The last lines of both streams, for an error message.
    pub fn tail(&self) -> String {
        let mut t = self.stdout.clone();
        t.push_str(&self.stderr);
        let lines: Vec<&str> = t.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

/// Runs `cmd` to its end, or kills it (its whole group) after `limit`: a client that stalls
/// against a proxy is reported as such, never waited for. Output goes through files in `dir`
/// (no pipe to fill up and block the client).
pub fn run_bounded(
    cmd: &mut Command,
    dir: &Path,
    tag: &str,
    limit: Duration,
) -> Result<Output, String> {
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let out =
        std::fs::File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err =
        std::fs::File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    own_group(cmd);
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    targets::remember_child(child.id() as i32);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("waiting for {shown}: {e}"));
            }
        }
    };
    if status.is_none() {
        kill_group(&mut child);
    } else {
        targets::forget_child(child.id() as i32);
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let o = Output {
        ok: status.is_some_and(|s| s.success()),
        status: status.map_or_else(|| "killed".into(), |s| s.to_string()),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    match status {
        None => Err(format!(
            "still running after {} s, killed (a stall?); its last output:\n{}",
            limit.as_secs(),
            o.tail()
        )),
        Some(_) => Ok(o),
    }
}

/// A server the bench started; stopped on drop: its shutdown signal if it has one (PostgreSQL
/// killed outright leaves its shared memory segment behind), then its whole group killed.
#[derive(Debug)]
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub log: PathBuf,
    /// Sent to the server's own pid first on drop; it then gets [`STOP_GRACE`] to exit.
    pub stop_signal: Option<libc::c_int>,
}

/// How long a server may take to shut down on its stop signal.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Server {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Server, String> {
        let f = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let f2 = f
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        own_group(&mut cmd);
        let shown = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start {shown}: {e}"))?;
        targets::remember_child(child.id() as i32);
        Ok(Server {
            name,
            child,
            log,
            stop_signal: None,
        })
    }

    /// Waits until `ready()` holds, up to `limit`; an error with the server's log if it exits
    /// or does not get ready.
    pub fn wait(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited at start-up ({st}):\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready after {} s:\n{}",
                    self.name,
                    limit.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(sig) = self.stop_signal {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        kill_group(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of the test's own: tests run in parallel and each removes its directory.
    fn tmp(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bench-proc-test-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let e = find_tool("sysbench", &["/nonexistent/sysbench"], "sysbench").unwrap_err();
        assert!(
            e.starts_with("sysbench is not installed (looked for /nonexistent/sysbench;"),
            "{e}"
        );
        assert!(e.contains("Debian's `sysbench`"), "{e}");
        assert_eq!(
            find_tool("sh", &["/nonexistent/sh", "/bin/sh"], "dash"),
            Ok(PathBuf::from("/bin/sh"))
        );
    }

    #[test]
    fn a_server_gets_its_stop_signal_before_the_kill() {
        let d = tmp("a_server_gets_its_stop_signal_before_the_kill");
        let mark = d.join("stopped");
        let ready = d.join("ready");
        let mut c = Command::new("/bin/sh");
        // Exits by itself on SIGTERM, leaving a mark; a SIGKILL would leave none. It says when
        // its trap is set: a signal before that would end the shell with no mark. Not SIGINT:
        // a shell started from a background job inherits it ignored and can't trap it (POSIX),
        // so the test failed whenever the suite ran in the background.
        c.arg("-c").arg(format!(
            "trap 'touch {}; exit 0' TERM; touch {}; while :; do sleep 0.05; done",
            mark.display(),
            ready.display()
        ));
        let mut s = Server::spawn("trap", c, d.join("trap.log")).unwrap();
        s.stop_signal = Some(libc::SIGTERM);
        let t0 = Instant::now();
        while !ready.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the shell never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(s);
        assert!(mark.exists());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_stalled_client_is_killed_at_its_limit() {
        let d = tmp("a_stalled_client_is_killed_at_its_limit");
        let t0 = Instant::now();
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "echo started; exec sleep 30"]);
        // The limit leaves the shell time to start and print on a loaded machine (300 ms did
        // not, once); the sleep it stalls in is ten times longer.
        let e = run_bounded(&mut c, &d, "stall", Duration::from_secs(3)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(15));
        assert!(
            e.contains("killed (a stall?)") && e.contains("started"),
            "{e}"
        );
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = run_bounded(&mut c, &d, "exit", Duration::from_secs(10)).unwrap();
        assert!(!o.ok);
        assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
        assert!(o.status.contains('3'), "{}", o.status);
        let _ = std::fs::remove_dir_all(d);
    }
}
