//! `option external-check`: runs `external-check command` with HAProxy's argv and environment,
//! bounded by the check timeout (SIGTERM, then SIGKILL), always reaped, and with no file
//! descriptor of lb's but stdin/stdout/stderr (every fd lb opens is close-on-exec).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
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
        .stderr(Stdio::inherit())
        // Reaped by us below; if this future is dropped, tokio reaps it in the background.
        .kill_on_drop(true);
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
    let mut out = match cmd.spawn() {
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
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our own child, which is not reaped yet (we still
                    // hold it and have not seen it exit), so the pid is still its.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                if timeout(TERM_GRACE, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                Outcome::new(false, "PROCTOUT", format!("timed out after {limit:?}"))
            }
        },
    };
    out.duration = started.elapsed();
    out
}
