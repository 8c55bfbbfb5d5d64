//! The process around lb: daemon mode (`-D`, the pid file, the parent that reports readiness),
//! chroot, and the signals the main thread waits for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{SigSet, Signal};

/// `-p PIDFILE`: written at start, removed at exit.
pub struct PidFile(pub PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        crate::outside::write(path, format!("{}\n", std::process::id()).as_bytes())
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Unless a process that replaced this one (binary upgrade) wrote its own pid there.
        let ours = format!("{}\n", std::process::id());
        if std::fs::read_to_string(&self.0).is_ok_and(|s| s == ours) {
            let _ = crate::outside::remove_file(&self.0);
        }
    }
}

/// The daemon's end of the pipe its parent waits on: [`Ready::tell`] once lb serves. If the
/// daemon dies before, the parent reads end-of-file and exits with an error.
pub struct Ready(std::fs::File);

impl Ready {
    pub fn tell(mut self) {
        use std::io::Write as _;
        let _ = self.0.write_all(b"R");
    }
}

/// `daemon`: forks; the parent waits until the child serves (or fails), writes the child's
/// pid to `pidfile` and exits; the child starts its own session and points stdin, stdout and
/// stderr at /dev/null, as `HAProxy` does (logs go to the `log` targets). Must run while lb has
/// one thread.
pub fn daemonize(pidfile: Option<&Path>) -> anyhow::Result<Ready> {
    use std::io::Read as _;
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: one thread (the caller's contract), so the child may go on running lb.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(r);
            nix::unistd::setsid().context("setsid")?;
            // SAFETY: /dev/null is opened, duplicated onto 0, 1 and 2, and closed.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            Ok(Ready(std::fs::File::from(w)))
        }
        child => {
            drop(w);
            let mut byte = [0u8; 1];
            let n = std::fs::File::from(r).read(&mut byte).unwrap_or(0);
            if n == 0 {
                eprintln!("lb: the daemon stopped before it was ready (see its log targets)");
                // SAFETY: exits the parent without running the child's share of destructors.
                unsafe { libc::_exit(1) }
            }
            if let Some(p) = pidfile {
                if let Err(e) = std::fs::write(p, format!("{child}\n")) {
                    eprintln!("lb: cannot write pid file {}: {e}", p.display());
                    // SAFETY: as above.
                    unsafe { libc::_exit(1) }
                }
            }
            // SAFETY: as above: the parent's job is done; the daemon owns every resource.
            unsafe { libc::_exit(0) }
        }
    }
}

/// `chroot DIR`: starts the helper that keeps the host's view for reloads (see
/// `crate::outside`), then enters DIR. After binding and loading BPF, before any thread.
pub fn enter_chroot(
    dir: &Path,
    privileges: Option<&crate::privileges::Plan>,
) -> anyhow::Result<()> {
    let plan = privileges.cloned();
    crate::outside::start(move || {
        plan.as_ref()
            .is_none_or(|p| crate::privileges::apply(p).is_ok())
    })
    .context("chroot: cannot start the helper")?;
    crate::outside::enter_chroot(dir)
        .with_context(|| format!("cannot chroot to {}", dir.display()))?;
    log::info!("chroot: serving inside {}", dir.display());
    Ok(())
}

/// The signals lb handles, as HAProxy (its master process for SIGUSR2): SIGTERM/SIGINT stop,
/// SIGHUP and SIGUSR2 reload, SIGUSR1 soft-stops, SIGTTOU pauses the frontends and SIGTTIN
/// resumes them (unhandled, the last two would stop the process, and SIGUSR2 end it).
pub fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTTOU,
        Signal::SIGTTIN,
    ] {
        set.add(sig);
    }
    set
}

/// Blocks the handled signals in this thread and (by inheritance) every thread spawned after
/// it, so that [`wait_signal`] receives them.
pub fn block_signals() -> anyhow::Result<()> {
    signal_set().thread_block().context("cannot block signals")
}

pub fn wait_signal() -> anyhow::Result<Signal> {
    signal_set().wait().context("sigwait")
}

/// [`wait_signal`] for at most `t`: `None` when none came.
pub fn wait_signal_for(t: Duration) -> anyhow::Result<Option<Signal>> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos().min(999_999_999) as i32),
    };
    // SAFETY: the set and timespec outlive the call; no siginfo is asked for.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &raw const ts) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(e).context("sigtimedwait"),
        };
    }
    Ok(Signal::try_from(n).ok())
}
