//! `user`/`group` in `global`: after binding and loading BPF, and after every accept thread
//! has opened its BPF map handles, the process drops root: `setgroups(0)` (no supplementary
//! groups), `setgid`, `setuid`, as HAProxy does.
//!
//! Which capabilities the data plane keeps: none. Found by experiment on Linux 6.18 (see
//! the privileges end-to-end test): what needs privilege is loading the program, attaching it
//! and opening the maps by id (`BPF_MAP_GET_FD_BY_ID` needs `CAP_SYS_ADMIN`); all of that is
//! done before the drop. Inserting established sockets into the sockmap, updating the peer
//! map and deleting entries go through the map fds already open, and the kernel checks only
//! the fd's mode for those (since 6.5 the `unprivileged_bpf_disabled` sysctl gates program
//! loads and map creation, not operations on an fd one holds). So the process ends with empty
//! permitted and effective sets, like HAProxy after `user`/`group`.
//!
//! One exception: `source ... usesrc` (transparent proxying) makes each connection's socket
//! `IP_TRANSPARENT`, which needs `CAP_NET_ADMIN` at every connect. When any server has it, the
//! accept threads (which connect) keep `CAP_NET_ADMIN` alone, permitted and effective, across
//! the drop (`PR_SET_KEEPCAPS`, then `capset`); every other thread ends with none. `HAProxy`
//! 2.6 has no such thing: it refuses to start with `usesrc` and `uid`/`user` ("Some
//! configuration options require full privileges"). A reload that adds `usesrc` after a drop
//! without it cannot get the capability back: its connections fail saying so (restart then).
//!
//! Threads: glibc applies `setuid`/`setgid`/`setgroups` to every thread of the process.
//! Accept threads call [`thread_started`] once their map handles are open; it holds them until
//! the drop is done, so no connection is ever served as root.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::{Config, Global};

/// Why privileges cannot be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("global 'user {0}': no such user")]
    NoUser(String),
    #[error("global 'group {0}': no such group")]
    NoGroup(String),
    #[error("cannot look up '{name}': {source}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("'user'/'group' need lb to start as root (it runs as uid {0})")]
    NotRoot(u32),
    #[error("{what} failed: {source}")]
    Syscall {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("accept threads did not open their maps within {0:?}")]
    ThreadsLate(Duration),
}

/// The uid/gid to switch to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
    /// The accept threads keep `CAP_NET_ADMIN` (see [`needs_net_admin`]).
    pub keep_net_admin: bool,
}

/// Whether a server's connections are transparent (`usesrc`), or those an `option
/// transparent` backend makes with no server (from the backend's `source`): their sockets
/// need `CAP_NET_ADMIN`.
pub fn needs_net_admin(config: &Config) -> bool {
    let usesrc = |s: Option<&crate::config::Source>| s.is_some_and(|src| src.usesrc.is_some());
    config.backends.iter().any(|b| {
        (b.transparent && usesrc(b.source.as_ref()))
            || b.servers.iter().any(|s| usesrc(s.source.as_ref()))
    })
}

/// `CAP_NET_ADMIN` (12, linux/capability.h): its bit in the first word of the capability sets.
const NET_ADMIN: u32 = 1 << 12;

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, two words.
const CAP_V3: u32 = 0x2008_0522;

/// The calling thread's capability sets.
fn capget() -> nix::Result<[CapData; 2]> {
    let mut head = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: the header and two data structs the V3 call reads and writes, both outliving it.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut head, data.as_mut_ptr()) };
    if rc == 0 {
        Ok(data)
    } else {
        Err(nix::Error::last())
    }
}

/// Whether the calling thread holds `CAP_NET_ADMIN` (effective).
pub fn has_net_admin() -> bool {
    capget().is_ok_and(|d| d[0].effective & NET_ADMIN != 0)
}

/// Leaves the calling thread `CAP_NET_ADMIN` alone, permitted and effective.
fn only_net_admin() -> nix::Result<()> {
    let mut head = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: NET_ADMIN,
            permitted: NET_ADMIN,
            inheritable: 0,
        },
        CapData::default(),
    ];
    // SAFETY: as in `capget`; the kernel only reads the data.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut head, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

fn lookup_user(name: &str) -> Result<Uid, PrivError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Uid::from_raw(n));
    }
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        Ok(None) => Err(PrivError::NoUser(name.to_owned())),
        Err(source) => Err(PrivError::Lookup {
            name: name.to_owned(),
            source,
        }),
    }
}

fn lookup_group(name: &str) -> Result<Gid, PrivError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(PrivError::NoGroup(name.to_owned())),
        Err(source) => Err(PrivError::Lookup {
            name: name.to_owned(),
            source,
        }),
    }
}

/// Resolves `user`/`group` (names or numbers). `None` when neither is set. Unknown names are
/// errors, found before anything is bound.
pub fn plan(global: &Global) -> Result<Option<Plan>, PrivError> {
    if global.user.is_none() && global.group.is_none() {
        return Ok(None);
    }
    let uid = global.user.as_deref().map(lookup_user).transpose()?;
    let gid = global.group.as_deref().map(lookup_group).transpose()?;
    let me = Uid::effective();
    let needs_root = uid.is_some_and(|u| u != me) || gid.is_some_and(|g| g != Gid::effective());
    if needs_root && !me.is_root() {
        return Err(PrivError::NotRoot(me.as_raw()));
    }
    Ok(Some(Plan {
        uid,
        gid,
        keep_net_admin: false,
    }))
}

/// Coordination between the main thread (which drops) and the accept threads (which must have
/// opened their map handles first, and must not serve before the drop).
struct Gate {
    /// Threads still to report, `None` when no drop is planned.
    state: Mutex<Option<GateState>>,
    changed: Condvar,
}

struct GateState {
    started: usize,
    dropped: bool,
    /// The accept threads keep `CAP_NET_ADMIN` across the drop.
    keep_net_admin: bool,
}

static GATE: Gate = Gate {
    state: Mutex::new(None),
    changed: Condvar::new(),
};

/// Called by the main thread before it starts the accept threads when a drop is planned.
pub fn arm(plan: &Plan) {
    *GATE
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(GateState {
        started: 0,
        dropped: false,
        keep_net_admin: plan.keep_net_admin,
    });
}

/// Called by each accept thread once its BPF map handles are open. Without a planned drop it
/// returns at once; otherwise it waits (at most 30 s) until the main thread has dropped
/// privileges.
pub fn thread_started() {
    let mut st = GATE
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(s) = st.as_mut() else { return };
    let keep = s.keep_net_admin;
    if keep {
        // Per thread: this thread's `setuid` (glibc runs it on every thread) keeps the
        // permitted set; the effective one is raised again below.
        // SAFETY: prctl(PR_SET_KEEPCAPS, 1) takes no pointer.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            log::warn!(
                "usesrc: cannot keep CAP_NET_ADMIN across the privilege drop ({})",
                nix::Error::last()
            );
        }
    }
    s.started += 1;
    GATE.changed.notify_all();
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.as_ref().is_some_and(|s| !s.dropped) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        st = GATE
            .changed
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    let dropped = st.as_ref().is_some_and(|s| s.dropped);
    drop(st);
    // Still root (`user root`): nothing was lost, nothing to narrow.
    if keep && dropped && !Uid::effective().is_root() {
        if let Err(e) = only_net_admin() {
            log::warn!(
                "usesrc: cannot keep CAP_NET_ADMIN after the privilege drop ({e}): transparent \
                 connections will fail"
            );
        }
    }
}

/// Waits until `threads` accept threads have called [`thread_started`], then drops to
/// `plan` and lets them go on.
pub fn drop_after_threads(plan: &Plan, threads: usize) -> Result<(), PrivError> {
    let limit = Duration::from_secs(10);
    let deadline = Instant::now() + limit;
    let mut st = GATE
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while st.as_ref().is_some_and(|s| s.started < threads) {
        let now = Instant::now();
        if now >= deadline {
            return Err(PrivError::ThreadsLate(limit));
        }
        st = GATE
            .changed
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    let result = apply(plan);
    if let Some(s) = st.as_mut() {
        s.dropped = true;
    }
    GATE.changed.notify_all();
    result
}

/// setgroups(0), setgid, setuid; every thread of the process follows (glibc).
pub fn apply(plan: &Plan) -> Result<(), PrivError> {
    let sys = |what| move |source| PrivError::Syscall { what, source };
    if Uid::effective().is_root() {
        nix::unistd::setgroups(&[]).map_err(sys("setgroups"))?;
    }
    if let Some(g) = plan.gid {
        nix::unistd::setgid(g).map_err(sys("setgid"))?;
    }
    if let Some(u) = plan.uid {
        nix::unistd::setuid(u).map_err(sys("setuid"))?;
    }
    Ok(())
}

/// `set-dumpable`, as HAProxy does it after the drop: no file-size and no core-size limit
/// (a failure is a warning, an error with `strict-limits`), and the process dumpable again
/// (`setuid` cleared the flag; a failure is a warning). Also makes `/proc/PID` the user's.
pub fn make_dumpable(strict: bool) -> Result<(), PrivError> {
    for (resource, what) in [
        (libc::RLIMIT_FSIZE, "maximum file size"),
        (libc::RLIMIT_CORE, "core dump size"),
    ] {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(resource, &raw const unlimited) } != 0 {
            let source = nix::Error::last();
            if strict {
                return Err(PrivError::Syscall {
                    what: "setrlimit (set-dumpable, strict-limits)",
                    source,
                });
            }
            log::warn!("set-dumpable: failed to raise the {what}: {source}");
        }
    }
    // SAFETY: prctl(PR_SET_DUMPABLE, 1) takes no pointer.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        log::warn!(
            "set-dumpable: failed to set the dumpable flag ({}), no core will be dumped",
            nix::Error::last()
        );
    }
    Ok(())
}

/// A user name for messages: the name when known, else the number.
pub fn describe(plan: &Plan) -> String {
    let user = plan.uid.map_or_else(
        || "unchanged".to_owned(),
        |u| match User::from_uid(u) {
            Ok(Some(x)) => format!("{} ({u})", x.name),
            _ => u.to_string(),
        },
    );
    let group = plan.gid.map_or_else(
        || "unchanged".to_owned(),
        |g| match Group::from_gid(g) {
            Ok(Some(x)) => format!("{} ({g})", x.name),
            _ => g.to_string(),
        },
    );
    format!("user {user}, group {group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(user: Option<&str>, group: Option<&str>) -> Global {
        Global {
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            ..Global::default()
        }
    }

    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(plan(&global(None, None)).unwrap(), None);
        let p = plan(&global(Some("nobody"), Some("nogroup")))
            .unwrap()
            .unwrap();
        assert_eq!(p.uid, Some(Uid::from_raw(65534)));
        assert_eq!(p.gid, Some(Gid::from_raw(65534)));
        let p = plan(&global(Some("0"), None)).unwrap().unwrap();
        assert_eq!(p.uid, Some(Uid::from_raw(0)));
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = plan(&global(Some("no-such-user-xyz"), None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "global 'user no-such-user-xyz': no such user"
        );
        let e = plan(&global(None, Some("no-such-group-xyz"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "global 'group no-such-group-xyz': no such group"
        );
    }
}
