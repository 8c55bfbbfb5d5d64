//! `option external-check`: runs `external-check command` with HAProxy's argv and environment,
//! bounded by the check timeout (SIGTERM, then SIGKILL), always reaped, and with no file
//! descriptor of lb's but stdin/stdout/stderr (every fd lb opens is close-on-exec).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{timeout, Instant};

use super::probe::Outcome;

/// After SIGTERM, how long the child gets to exit before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// What the command is told about the proxy and the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalArgs {
    /// The program (`external-check command`).
    pub command: String,
    /// `PATH` of its environment (`external-check path`), empty when unset as in HAProxy.
    pub path: String,
    /// `<proxy_addr>`: the first bind address of a `listen`, `NOT_USED` for a backend.
    pub proxy_addr: String,
    /// `<proxy_port>`, `NOT_USED` for a backend.
    pub proxy_port: String,
    pub proxy_name: String,
    pub proxy_id: u32,
    pub server_name: String,
    pub server_id: u32,
    pub server_addr: String,
    pub server_port: u16,
    pub server_maxconn: u32,
}

impl ExternalArgs {
    /// argv after the program: `<proxy_addr> <proxy_port> <server_addr> <server_port>`.
    pub fn argv(&self) -> [String; 4] {
        [
            self.proxy_addr.clone(),
            self.proxy_port.clone(),
            self.server_addr.clone(),
            self.server_port.to_string(),
        ]
    }

    /// The whole environment of the command (nothing of lb's own is passed on).
    pub fn env(&self, curconn: u32) -> Vec<(&'static str, String)> {
        vec![
            ("HAPROXY_PROXY_NAME", self.proxy_name.clone()),
            ("HAPROXY_PROXY_ID", self.proxy_id.to_string()),
            ("HAPROXY_PROXY_ADDR", self.proxy_addr.clone()),
            ("HAPROXY_PROXY_PORT", self.proxy_port.clone()),
            ("HAPROXY_SERVER_NAME", self.server_name.clone()),
            ("HAPROXY_SERVER_ID", self.server_id.to_string()),
            ("HAPROXY_SERVER_ADDR", self.server_addr.clone()),
            ("HAPROXY_SERVER_PORT", self.server_port.to_string()),
            ("HAPROXY_SERVER_MAXCONN", self.server_maxconn.to_string()),
            ("HAPROXY_SERVER_CURCONN", curconn.to_string()),
            ("PATH", self.path.clone()),
        ]
    }
}

/// Runs the command once: exit 0 = `PROCOK`, else `PROCERR` with the exit status as code;
/// past `limit` the child gets SIGTERM and the result is `PROCTOUT`.
pub async fn run(args: &ExternalArgs, curconn: u32, limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new(&args.command);
    cmd.args(args.argv())
        .env_clear()
        .envs(args.env(curconn))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (sigprocmask, close_range); it touches no memory of the
    // parent's that another thread could hold locked.
    unsafe {
        cmd.pre_exec(|| {
            // lb's threads block SIGTERM/SIGINT (the main thread waits for them with sigwait);
            // the check must get a clean mask, or the timeout's SIGTERM would not reach it.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
            // Every fd lb opens is close-on-exec already; this also covers fds lb inherited
            // from whoever started it (e.g. a jobserver pipe). CLOEXEC rather than close keeps
            // the spawner's own exec-error pipe working.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut out = match Check::spawn(&mut cmd) {
        Err(e) => Outcome::new(
            false,
            "PROCERR",
            format!("cannot run {}: {e}", args.command),
        ),
        Ok(mut child) => match timeout(limit, child.wait()).await {
            Ok(Ok(st)) if st.success() => Outcome::new(true, "PROCOK", ""),
            Ok(Ok(st)) => {
                let code = st.code().map_or_else(
                    || {
                        use std::os::unix::process::ExitStatusExt as _;
                        128 + st.signal().unwrap_or(0) as u32
                    },
                    |c| c as u32,
                );
                let mut o = Outcome::new(false, "PROCERR", format!("exit status {code}"));
                o.code = Some(code);
                o
            }
            Ok(Err(e)) => Outcome::new(false, "PROCERR", format!("wait: {e}")),
            Err(_) => {
                child.signal(libc::SIGTERM);
                if timeout(TERM_GRACE, child.wait()).await.is_err() {
                    child.signal(libc::SIGKILL);
                    let _ = child.wait().await;
                }
                Outcome::new(false, "PROCTOUT", format!("timed out after {limit:?}"))
            }
        },
    };
    out.duration = started.elapsed();
    out
}

/// The check's process, waited for through a pidfd on the thread's reactor (not tokio's
/// process driver, whose orphan check runs at every park of every thread: once or more per
/// proxied connection). Dropped before it was reaped (the check was cancelled), it is killed
/// and reaped.
struct Check {
    process: std::process::Child,
    /// Readable once the process exited; `None` on a kernel without `pidfd_open` (before
    /// 5.3): then polled every [`EXIT_POLL`].
    exited: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
}

/// How often a check's exit is looked for where there is no pidfd.
const EXIT_POLL: Duration = Duration::from_millis(10);

impl Check {
    fn spawn(cmd: &mut Command) -> io::Result<Self> {
        let process = cmd.spawn()?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd (close-on-exec)
        // or -1; the pid is our child's, not reaped yet.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, process.id(), 0) };
        let exited = i32::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            // SAFETY: a new fd that nothing else owns.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .and_then(|fd| crate::dataplane::async_fd_for(fd, Interest::READABLE).ok());
        Ok(Self {
            process,
            exited,
            reaped: false,
        })
    }

    /// Waits for the process to exit and reaps it.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.process.try_wait()? {
                self.reaped = true;
                return Ok(status);
            }
            match &self.exited {
                Some(fd) => fd.readable().await?.clear_ready(),
                None => tokio::time::sleep(EXIT_POLL).await,
            }
        }
    }

    /// Sends `signal` to the process, unless it was reaped (its pid may be another's then).
    fn signal(&self, signal: libc::c_int) {
        if !self.reaped {
            // SAFETY: kill(2) on our own child, not reaped yet, so the pid is still its.
            unsafe { libc::kill(self.process.id() as libc::pid_t, signal) };
        }
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        if self.reaped || matches!(self.process.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal(libc::SIGKILL);
        // Killed: it exits at once unless the kernel holds it in an uninterruptible wait; a
        // thread reaps it rather than this thread's loop waiting for that. (`std`'s `Child`
        // neither kills nor waits when dropped.)
        let pid = self.process.id() as libc::pid_t;
        let reaper = std::thread::Builder::new()
            .name("lb-reap".into())
            // SAFETY: waitpid(2) on our own child, which nothing else waits for.
            .spawn(move || unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) });
        if let Err(e) = reaper {
            log::warn!("external check: pid {pid} killed, not reaped (no thread: {e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    use super::*;

    /// A script `name` with `body`, in a directory of this test's own.
    fn script(name: &str, body: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("lb-extcheck-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("check.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    fn args(command: &std::path::Path) -> ExternalArgs {
        ExternalArgs {
            command: command.display().to_string(),
            path: "/usr/bin:/bin".into(),
            proxy_addr: "NOT_USED".into(),
            proxy_port: "NOT_USED".into(),
            proxy_name: "be".into(),
            proxy_id: 1,
            server_name: "s".into(),
            server_id: 1,
            server_addr: "127.0.0.1".into(),
            server_port: 1,
            server_maxconn: 0,
        }
    }

    /// Whether `pid` is gone (reaped: no zombie left behind).
    fn gone(pid: &str) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn exit_statuses_and_a_timeout_are_the_check_results() {
        let (ok_dir, ok) = script("ok", "exit 0");
        let (three_dir, three) = script("three", "exit 3");
        let (slow_dir, slow) = script("slow", "echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 30");
        let rt = crate::test_runtime();
        let o = rt.block_on(run(&args(&ok), 0, Duration::from_secs(5)));
        assert_eq!((o.passed, o.result), (true, "PROCOK"), "{}", o.info);
        let o = rt.block_on(run(&args(&three), 0, Duration::from_secs(5)));
        assert_eq!((o.passed, o.result, o.code), (false, "PROCERR", Some(3)));
        let o = rt.block_on(run(&args(&slow), 0, Duration::from_millis(200)));
        assert_eq!((o.passed, o.result), (false, "PROCTOUT"));
        // SIGTERM ends `sleep` at once: well inside the grace before SIGKILL.
        assert!(o.duration < Duration::from_secs(1), "{:?}", o.duration);
        let pid = std::fs::read_to_string(slow_dir.join("pid")).unwrap();
        assert!(gone(pid.trim()), "the timed-out check was not reaped");
        for dir in [ok_dir, three_dir, slow_dir] {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_cancelled_check_is_killed_and_reaped() {
        let (dir, slow) = script(
            "cancel",
            "echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 30",
        );
        let pid_file = dir.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        let pid = crate::test_runtime().block_on(async {
            let a = args(&slow);
            let check = run(&a, 0, Duration::from_mins(1));
            tokio::select! {
                _ = check => panic!("the check ended by itself"),
                pid = async {
                    loop {
                        if let Ok(p) = std::fs::read_to_string(&pid_file) {
                            if p.ends_with('\n') {
                                return p;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } => pid,
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gone(pid.trim()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            gone(pid.trim()),
            "the cancelled check {} lives on or was not reaped",
            pid.trim()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
