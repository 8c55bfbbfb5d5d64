//! The process's fd table, sized once at start so that it never grows while lb serves.
//!
//! The kernel grows a process's fd table (`expand_fdtable`, `fs/file.c`) by doubling it when an
//! fd is due past its end, and when the table is shared (`files->count > 1`: any process with
//! more than one thread) it waits there for an RCU grace period (`synchronize_rcu()`), while
//! every other thread that allocates an fd (`accept`, `socket`, `dup`, `SCM_RIGHTS`) waits for
//! the resize. On a loaded machine a grace period stretches to seconds: a binary upgrade,
//! where the old process duplicates two sockets per established flow and the new one receives
//! them, stalled that long in `fcntl(F_DUPFD_CLOEXEC)`. Grown once here, before any thread
//! exists, the table never needs it again below [`MOST`] fds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::fd_budget;

/// The largest table reserved at start, in fds: 512 KiB of kernel memory for its pointers. A
/// process allowed more grows past it under load as before.
pub const MOST: u64 = 1 << 16;

/// Grows this process's fd table to hold fds below `RLIMIT_NOFILE`'s hard limit (at most
/// [`MOST`]), by duplicating an fd onto the last one and closing it. Call it before any
/// thread starts: the table is not shared yet, so the kernel waits for no grace period. The
/// soft limit is raised for the duplicate only, and set back. Returns the fds the table holds
/// now (`FDSize` in `/proc/self/status`), or the error that left it as it was.
pub fn reserve() -> std::io::Result<u64> {
    let (soft, hard) = fd_budget::nofile_limits();
    let want = hard.min(MOST);
    if want > soft {
        fd_budget::set_nofile(want, hard)?;
    }
    let dup = dup_onto(want.saturating_sub(1));
    if want > soft {
        fd_budget::set_nofile(soft, hard)?;
    }
    drop(dup?);
    size()
}

/// Duplicates a fresh fd onto fd `at`, when `at` is free (`None`: it is open, so the table
/// holds it already).
fn dup_onto(at: u64) -> std::io::Result<Option<OwnedFd>> {
    let at = i32::try_from(at).map_err(std::io::Error::other)?;
    // SAFETY: F_GETFD reads the flags of fd `at`, if open; it changes nothing.
    if unsafe { libc::fcntl(at, libc::F_GETFD) } >= 0 {
        return Ok(None);
    }
    let probe = std::fs::File::open("/dev/null")?;
    // SAFETY: `at` is not open (checked just above, and no other thread runs to open it), so
    // dup3 closes nothing of this process's; the new fd is owned by the OwnedFd below.
    let fd = unsafe { libc::dup3(probe.as_raw_fd(), at, libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened by dup3 and is owned by nothing else.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The fds this process's table holds now (`FDSize` in `/proc/self/status`).
pub fn size() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no FDSize in /proc/self/status"))
}
