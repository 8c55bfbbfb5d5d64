//! The new process's side of `_getflows` (see [`super::give`] for the exchange): it receives
//! the old process's established flows in batches, answers which it takes (their frontend and
//! backend exist here, both fds are connected TCP sockets), and serves only those the old
//! process then commits to it, each on one of its threads.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt, SockType};

use super::{lock, wire, UpgradeError};
use crate::dataplane::sockmap::adopt::{self, KernelFlow, OldMaps, MAP_FDS};
use crate::flows::{Adoption, HandedFlow};
use crate::generation::Generation;

/// How long a round may take on the old side (its threads park their flows within half a
/// second, then empty rounds pause) before the new process gives up waiting.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection for `_getflows`, opened at `-x` time: the runtime API socket's path is
/// this process's own once it has bound its sockets, so the old process is reached before.
fn conn() -> &'static Mutex<Option<(PathBuf, UnixStream)>> {
    static CONN: OnceLock<Mutex<Option<(PathBuf, UnixStream)>>> = OnceLock::new();
    CONN.get_or_init(|| Mutex::new(None))
}

/// Opens the connection [`take_flows`] will use (a failure only means no flow is taken).
pub fn prepare(path: &Path) {
    match UnixStream::connect(path) {
        Ok(s) => *lock(conn()) = Some((path.to_path_buf(), s)),
        Err(e) => log::warn!(
            "-x {}: no second connection for the established flows ({e}): they stay with the \
             old process",
            path.display()
        ),
    }
}

/// Takes the old process's established flows, as far as it hands them over, and gives each to
/// one of `gen`'s threads. Returns how many; 0 when the old process hands none over (an older
/// lb, HAProxy, or a socket without `expose-fd listeners`).
pub fn take_flows(gen: &Generation) -> Result<usize, UpgradeError> {
    let Some((path, mut stream)) = lock(conn()).take() else {
        return Ok(0);
    };
    let io_err = |source| UpgradeError::Io {
        path: path.clone(),
        source,
    };
    let bad = |why: String| UpgradeError::BadAnswer {
        path: path.clone(),
        why,
    };
    stream
        .set_read_timeout(Some(ROUND_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ROUND_TIMEOUT)))
        .and_then(|()| stream.write_all(b"_getflows\n"))
        .map_err(io_err)?;
    let mut magic = [0u8; wire::MAGIC.len()];
    let have = read_some(&mut stream, &mut magic).map_err(io_err)?;
    let v2 = &magic == wire::MAGIC_V2;
    if have < magic.len() || (&magic != wire::MAGIC && !v2) {
        log::info!(
            "-x {}: the old process hands over no established flows (it answered {:?}): they \
             stay with it until they end",
            path.display(),
            String::from_utf8_lossy(&magic[..have])
        );
        return Ok(0);
    }
    let old_pid = getsockopt(&stream.as_fd(), sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid());
    let mut taken = 0;
    let mut n = 0;
    loop {
        let Some((flows, fds)) = recv_batch(&mut stream, v2).map_err(|e| match e {
            Received::Io(e) => io_err(e),
            Received::Bad(why) => bad(why),
        })?
        else {
            return Ok(taken);
        };
        let mut adopt = |flow: HandedFlow, kernel, client, server| {
            let a = Adoption {
                flow,
                kernel,
                client,
                server,
                generation: gen.number,
            };
            if gen.process.flows.adopt(n, a) {
                taken += 1;
            }
            n += 1;
        };
        answer_batch(&mut stream, gen, ((flows, fds), old_pid), &mut adopt).map_err(
            |e| match e {
                Received::Io(e) => io_err(e),
                Received::Bad(why) => bad(why),
            },
        )?;
    }
}

/// Reads into `buf` until it is full or the stream ends; how many bytes came.
fn read_some(stream: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    while have < buf.len() {
        match stream.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(have)
}

/// A batch's flows (with their kernel state, for those in the kernel maps), and their fds
/// (client, server, in the flows' order; then the maps' when a flow is in the kernel).
pub(super) type Batch = (Vec<(HandedFlow, Option<KernelFlow>)>, Vec<OwnedFd>);

/// What [`answer_batch`] calls for each flow committed to this process.
pub(super) type Adopt<'a> =
    dyn FnMut(HandedFlow, Option<(KernelFlow, Arc<OldMaps>)>, OwnedFd, OwnedFd) + 'a;

pub(super) enum Received {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Received {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One batch: its records and its two fds per flow (client, server). `None`: the end (an
/// empty batch, or the old process gone between batches, its flows all handed or ended).
/// `v2`: the old process answered in the `LBFLOWS2` format.
pub(super) fn recv_batch(stream: &mut UnixStream, v2: bool) -> Result<Option<Batch>, Received> {
    let mut buf = vec![0u8; 64 * 1024];
    let got = wire::recv_with_fds(stream, &mut buf, wire::MAX_FDS).map_err(Received::Io)?;
    let (n, fds, truncated) = (got.bytes, got.fds, got.truncated);
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Err(Received::Bad("more fds in one batch than fit".into()));
    }
    let mut got = buf[..n].to_vec();
    if got.len() < wire::HEADER {
        let mut rest = vec![0u8; wire::HEADER - got.len()];
        stream
            .read_exact(&mut rest)
            .map_err(|e| Received::Bad(format!("the batch ends inside its header ({e})")))?;
        got.extend(rest);
    }
    let mut h = [0u8; wire::HEADER];
    h.copy_from_slice(&got[..wire::HEADER]);
    let (count, len) = wire::header(h).map_err(Received::Bad)?;
    if count == 0 {
        return Ok(None);
    }
    if got.len() > wire::HEADER + len {
        return Err(Received::Bad(format!(
            "{} byte(s) after the batch's {len} record bytes",
            got.len() - wire::HEADER - len
        )));
    }
    if got.len() < wire::HEADER + len {
        let mut rest = vec![0u8; wire::HEADER + len - got.len()];
        stream
            .read_exact(&mut rest)
            .map_err(|e| Received::Bad(format!("the batch ends inside its records ({e})")))?;
        got.extend(rest);
    }
    let flows = wire::decode(&got[wire::HEADER..], count, v2).map_err(Received::Bad)?;
    let due = wire::fds_due(count, wire::has_kernel(&flows));
    if fds.len() != due {
        return Err(Received::Bad(format!(
            "{} fd(s) for {count} flow(s) ({due} due)",
            fds.len(),
        )));
    }
    Ok(Some((flows, fds)))
}

/// Why this process would not serve a flow: an unknown frontend or backend, or an fd that is
/// not a connected TCP socket. (A server gone from the backend is no reason: the flow is
/// counted under its backend.)
fn refusal(gen: &Generation, flow: &HandedFlow, fds: (&OwnedFd, &OwnedFd)) -> Option<String> {
    if !gen.config.frontends.iter().any(|f| f.name == flow.frontend) {
        return Some(format!("no frontend '{}' here", flow.frontend));
    }
    if !gen.config.backends.iter().any(|b| b.name == flow.backend) {
        return Some(format!("no backend '{}' here", flow.backend));
    }
    for (fd, side) in [(fds.0, "client"), (fds.1, "server")] {
        let ok = getsockopt(&fd.as_fd(), sockopt::SockType).is_ok_and(|t| t == SockType::Stream)
            && getsockopt(&fd.as_fd(), sockopt::AcceptConn).is_ok_and(|l| !l)
            && socket2::SockRef::from(fd).peer_addr().is_ok();
        if !ok {
            return Some(format!("its {side} fd is not a connected TCP socket"));
        }
    }
    None
}

/// Answers a batch (taken or refused, per flow), reads the commit, and hands each committed
/// flow to `adopt`; the fds of the others close here (the old process still holds them).
/// `old_pid`: the old process, for the wakes of its maps ([`OldMaps`]).
pub(super) fn answer_batch(
    stream: &mut UnixStream,
    gen: &Generation,
    ((flows, mut fds), old_pid): (Batch, Option<i32>),
    adopt: &mut Adopt<'_>,
) -> Result<(), Received> {
    let maps = if wire::has_kernel(&flows) {
        let map_fds = fds.split_off(fds.len().saturating_sub(MAP_FDS));
        Some(if adopt::available() {
            OldMaps::from_fds(map_fds, old_pid)
        } else {
            Err("this process runs no in-kernel data plane".to_owned())
        })
    } else {
        None
    };
    let mut fds = fds.into_iter();
    let pairs: Vec<(HandedFlow, Option<KernelFlow>, OwnedFd, OwnedFd)> = flows
        .into_iter()
        .filter_map(|(f, k)| Some((f, k, fds.next()?, fds.next()?)))
        .collect();
    let taken: Vec<bool> = pairs
        .iter()
        .map(|(f, k, c, s)| {
            match refusal(gen, f, (c, s)).or_else(|| {
                let k = k.as_ref()?;
                match maps.as_ref()? {
                    Ok(m) => m.refusal(k, c.as_fd(), s.as_fd()),
                    Err(e) => Some(format!("its kernel maps: {e}")),
                }
            }) {
                Some(why) => {
                    log::warn!(
                        "_getflows: flow of {} ({}/{}/{}) left with the old process: {why}",
                        f.client,
                        f.frontend,
                        f.backend,
                        f.server
                    );
                    false
                }
                None => true,
            }
        })
        .collect();
    stream.write_all(&wire::answer(&taken))?;
    let mut count = [0u8; 4];
    stream.read_exact(&mut count)?;
    let mut flags = vec![0u8; pairs.len()];
    stream.read_exact(&mut flags)?;
    let committed = wire::parse_answer(count, &flags, pairs.len()).map_err(Received::Bad)?;
    for (((flow, k, client, server), yours), asked) in pairs.into_iter().zip(committed).zip(taken) {
        if yours && !asked {
            // The old process let it go all the same: served here as well as can be, not lost.
            log::warn!(
                "_getflows: the old process committed a flow of {} that was refused",
                flow.client
            );
        }
        if yours {
            let kernel = match (k, &maps) {
                (Some(k), Some(Ok(m))) => Some((k, m.clone())),
                (Some(_), _) => {
                    log::warn!(
                        "_getflows: a kernel flow of {} committed without its maps: closed",
                        flow.client
                    );
                    continue;
                }
                (None, _) => None,
            };
            adopt(flow, kernel, client, server);
        }
    }
    Ok(())
}
