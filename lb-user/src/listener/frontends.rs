//! Stopping and restarting a frontend's listening at run time: the runtime API's `disable
//! frontend` ([`pause`]), `enable frontend` ([`resume`]) and `shutdown frontend` ([`stop`]),
//! as HAProxy 2.6 does them on Linux. A paused socket is "unlistened" (`connect(AF_UNSPEC)`,
//! HAProxy's `tcp_suspend_receiver`): it stays bound, new clients are refused (those in its
//! accept queue get a reset), established connections are untouched; `listen()` again resumes
//! it. A shut-down frontend's sockets are unlistened the same way, for good: lb keeps them
//! bound (HAProxy closes them) so that a reload that keeps the frontend listens again.
//!
//! The frontend's state ([`crate::fe_state`], in its generation) is written here only, in the
//! order the accept loops rely on: the state leaves `Ready` before a socket stops listening
//! (a loop whose accept fails on an unlistened socket finds it not ready and waits), and
//! comes back to `Ready` only once every socket listens. Each change wakes the waiting loops
//! ([`crate::generation::Process::fe_state_changed`]).
//!
//! The sockets are reached here through a registry of every bound address's sockets (one per
//! thread, duplicates of those [`super::Listeners`] keeps; recorded at bind, forgotten when the
//! address closes), so that the control thread acts on them directly and the command's answer
//! comes when they are changed.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, OnceLock};

use socket2::SockRef;

use crate::config::Frontend;
use crate::fe_state::FeState;
use crate::generation::Generation;

/// Every bound address's sockets and their listen backlog.
type Registry = HashMap<SocketAddr, (Vec<TcpListener>, i32)>;

fn registry() -> MutexGuard<'static, Registry> {
    static SOCKETS: OnceLock<Mutex<Registry>> = OnceLock::new();
    SOCKETS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records `addr`'s freshly bound (or inherited) sockets, `backlog` being what they listen
/// with. A socket that cannot be duplicated is left out (and so never paused): logged.
pub(super) fn record(addr: SocketAddr, socks: &[TcpListener], backlog: i32) {
    let dups = socks
        .iter()
        .filter_map(|s| {
            s.try_clone()
                .map_err(|e| log::warn!("{addr}: `disable frontend` will not reach a socket: {e}"))
                .ok()
        })
        .collect();
    registry().insert(addr, (dups, backlog));
}

/// Forgets `addr`'s sockets (the address was closed).
pub(super) fn forget(addr: &SocketAddr) {
    registry().remove(addr);
}

/// Forgets every address (the process stops listening).
pub(super) fn forget_all() {
    registry().clear();
}

/// Whether the socket listens now.
pub(super) fn is_listening(s: &impl std::os::fd::AsFd) -> bool {
    SockRef::from(s).is_listener().unwrap_or(false)
}

/// Stops `s` listening, as HAProxy's `tcp_suspend_receiver`: `connect(AF_UNSPEC)`. A socket
/// that did not listen is fine.
fn unlisten(s: &TcpListener) -> io::Result<()> {
    let sa = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr>())
        .map_err(io::Error::other)?;
    // SAFETY: connect reads `len` bytes of the address we pass, on a socket we own.
    let r = unsafe { libc::connect(s.as_raw_fd(), &raw const sa, len) };
    if r == 0 || !is_listening(s) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Stops every socket of `fe`'s binds listening; the first failure.
fn unlisten_binds(fe: &Frontend, reg: &Registry) -> Result<(), (SocketAddr, io::Error)> {
    let mut first = Ok(());
    for b in &fe.binds {
        super::spread::unregister(&b.addr);
        for s in reg.get(&b.addr).into_iter().flat_map(|(socks, _)| socks) {
            if let Err(e) = unlisten(s) {
                first = first.and(Err((b.addr, e)));
            }
        }
    }
    first
}

/// Makes every socket of `fe`'s binds listen (again), each address back with the thread
/// balancer; the first failure (the sockets that listen again then stay so).
fn listen_binds(fe: &Frontend, reg: &Registry) -> Result<(), (SocketAddr, io::Error)> {
    for b in &fe.binds {
        let Some((socks, backlog)) = reg.get(&b.addr) else {
            continue;
        };
        if socks.iter().all(is_listening) {
            continue;
        }
        for s in socks {
            if !is_listening(s) {
                SockRef::from(s).listen(*backlog).map_err(|e| (b.addr, e))?;
            }
        }
        super::spread::register(b.addr, socks);
    }
    Ok(())
}

/// Sockets handed to a new process (binary upgrade) are its sockets too: this one leaves
/// them as they are.
fn shared_with_new_process(fe: &Frontend) -> bool {
    let shared = crate::upgrade::handed_over();
    if shared {
        log::warn!(
            "frontend '{}': its sockets were handed to a new process, which listens on them: \
             left as they are",
            fe.name
        );
    }
    shared
}

/// `disable frontend`, HAProxy's `pause_proxy`: frontend `f` stops listening. `false` when a
/// socket refused (logged; the frontend then listens as before).
pub fn pause(gen: &Generation, f: usize) -> bool {
    let fe = &gen.config.frontends[f];
    if shared_with_new_process(fe) {
        return false;
    }
    let reg = registry();
    gen.fe_states.set(f, FeState::Paused);
    let paused = unlisten_binds(fe, &reg);
    if let Err((addr, e)) = &paused {
        log::warn!(
            "frontend '{}' failed to enter pause mode: {addr}: {e}",
            fe.name
        );
        if listen_binds(fe, &reg).is_ok() {
            gen.fe_states.set(f, FeState::Ready);
        }
    } else {
        log::info!("frontend '{}' paused: new connections are refused", fe.name);
    }
    drop(reg);
    gen.process.fe_state_changed.release();
    paused.is_ok()
}

/// `enable frontend`, HAProxy's `resume_proxy`: frontend `f` listens again. `false` when a
/// socket could not listen (logged, HAProxy's words; the frontend then stays paused).
pub fn resume(gen: &Generation, f: usize) -> bool {
    let fe = &gen.config.frontends[f];
    if shared_with_new_process(fe) {
        return false;
    }
    let reg = registry();
    let resumed = listen_binds(fe, &reg);
    match &resumed {
        Ok(()) => {
            gen.fe_states.set(f, FeState::Ready);
            log::info!("frontend '{}' resumed", fe.name);
        }
        Err((addr, e)) => {
            log::warn!(
                "Port {} busy while trying to enable frontend {} ({e}).",
                addr.port(),
                fe.name
            );
            // Another address might have been enabled: back to all paused, as HAProxy.
            let _ = unlisten_binds(fe, &reg);
        }
    }
    drop(reg);
    gen.process.fe_state_changed.release();
    resumed.is_ok()
}

/// `shutdown frontend`, HAProxy's `stop_proxy`: frontend `f` stops listening for good (until
/// a reload); its established connections go on.
pub fn stop(gen: &Generation, f: usize) {
    let fe = &gen.config.frontends[f];
    gen.fe_states.set(f, FeState::Stopped);
    if !shared_with_new_process(fe) {
        if let Err((addr, e)) = unlisten_binds(fe, &registry()) {
            log::warn!("frontend '{}': {addr} still listens: {e}", fe.name);
        }
    }
    log::info!(
        "frontend '{}' shut down: new connections are refused until a reload",
        fe.name
    );
    gen.process.fe_state_changed.release();
}

/// Before `gen` serves: every address of its ready frontends listens, those a paused or
/// shut-down frontend of the previous generation had stopped too (a reload brings them back,
/// as HAProxy's new process binds them), and sockets inherited from an old process that had
/// paused them. A socket that cannot listen leaves its frontend paused (logged).
pub(super) fn listen_ready(gen: &Generation) {
    let reg = registry();
    for (f, fe) in gen.config.frontends.iter().enumerate() {
        if gen.fe_states.get(f) != FeState::Ready {
            continue;
        }
        if let Err((addr, e)) = listen_binds(fe, &reg) {
            log::error!(
                "frontend '{}': cannot listen on {addr} again ({e}): the frontend is paused; \
                 `enable frontend {}` tries again",
                fe.name,
                fe.name
            );
            gen.fe_states.set(f, FeState::Paused);
            let _ = unlisten_binds(fe, &reg);
        }
    }
}

/// SIGTTOU and SIGTTIN, HAProxy's `protocol_pause_all` and `protocol_resume_all`: `pause`
/// pauses every listening frontend, else every paused one listens again (whether a signal or
/// `disable frontend` paused it; not those shut down). A frontend that refuses is logged by
/// [`pause`] or [`resume`]; then HAProxy's warning, and `false`: after a refused pause the
/// caller soft-stops, as HAProxy does.
pub fn pause_or_resume_all(gen: &Generation, pause_them: bool) -> bool {
    let mut ok = true;
    for f in 0..gen.config.frontends.len() {
        match (pause_them, gen.fe_states.get(f)) {
            (true, FeState::Ready) => ok &= pause(gen, f),
            (false, FeState::Paused) => ok &= resume(gen, f),
            _ => {}
        }
    }
    if !ok && pause_them {
        log::warn!("Some proxies refused to pause, performing soft stop now.");
    } else if !ok {
        log::warn!(
            "Some proxies refused to resume, probably due to a conflict on a listening port. \
             You may want to try again after the conflicting application is stopped, \
             otherwise a restart might be needed to resume safe operations."
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlistened_socket_refuses_clients_and_listens_again() {
        // A port bound by number, as `bind` lines do (a socket bound to port 0 gives its port
        // back when it stops listening, and would get another one).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let l = TcpListener::bind(addr).unwrap();
        assert!(is_listening(&l));
        unlisten(&l).unwrap();
        assert!(!is_listening(&l));
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        unlisten(&l).expect("a socket that does not listen is fine");
        SockRef::from(&l).listen(16).unwrap();
        assert!(is_listening(&l));
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (_s, _) = l.accept().unwrap();
    }
}
