//! The old process's side of `_getflows`: established flows go to the new process, so that a
//! soft-stopped lb exits at once instead of waiting for them to end.
//!
//! In rounds: every thread parks the flows it can hand off (a splice or copy flow, both ways
//! open, at a point where lb holds none of its bytes; a flow wholly in the kernel maps while
//! both its directions wait for an event, handed over in place with the maps themselves:
//! `dataplane::sockmap::adopt`; a half-closed flow, one still in its rules or connecting, or
//! one the kernel carries one way only goes on here until it ends, as before), and they go in
//! batches of at most [`wire::MAX_BATCH`]. Ownership changes hands in three steps, so that it
//! is never held by both: the batch (records and duplicated fds), the new process's answer
//! (taken or refused, per flow), and this process's commit (yours or mine). A flow is the new
//! process's once the commit was written: this one then closes its descriptors. Before that,
//! any failure (refusal, error, timeout, a closed connection) leaves it here, and it forwards
//! on; the new process serves a flow only once it has read the commit, and closes its copies
//! of the others. Rounds go on while they hand flows over, so connections still being set up
//! at the first one follow.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::wire;
use crate::dataplane::sockmap::adopt;
use crate::flows::{FlowControl, Offer};

/// How long the threads have to park their flows in one round: a flow still moving bytes
/// into a receiver that doesn't read finds no quiet point, and goes on here.
const PARK_WAIT: Duration = Duration::from_secs(1);

/// How long the new process has to answer a batch.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Rounds at most, and empty rounds in a row that end the exchange (with a pause between).
const MAX_ROUNDS: usize = 20;
const EMPTY_ROUNDS: usize = 2;
const EMPTY_PAUSE: Duration = Duration::from_millis(100);

/// Answers `_getflows` on `stream`; returns how many flows the new process took.
pub async fn give_flows(stream: UnixStream, flows: &FlowControl) -> io::Result<usize> {
    let mut stream = Some(stream);
    let mut sent = 0;
    let mut empty = 0;
    let mut first = true;
    for _ in 0..MAX_ROUNDS {
        let offers = flows.hand_off(Instant::now() + PARK_WAIT).await;
        if offers.is_empty() {
            empty += 1;
            if empty >= EMPTY_ROUNDS {
                break;
            }
            tokio::time::sleep(EMPTY_PAUSE).await;
            continue;
        }
        empty = 0;
        let Some(mut s) = stream.take() else { break };
        let greet = std::mem::take(&mut first);
        // Blocking, each step bounded: off the control thread's runtime.
        let (s, offers, (committed, failed)) = tokio::task::spawn_blocking(move || {
            let r = give_round(&mut s, &offers, greet);
            (s, offers, r)
        })
        .await
        .map_err(io::Error::other)?;
        let kept = offers.len();
        let taken = settle(offers, &committed);
        sent += taken;
        if let Some(e) = failed {
            log::warn!(
                "_getflows: {e}; {} flow(s) of this round stay with this process",
                kept - taken
            );
            return Err(e);
        }
        if taken == 0 {
            break;
        }
        stream = Some(s);
    }
    if let Some(mut s) = stream {
        tokio::task::spawn_blocking(move || {
            if first {
                s.write_all(wire::MAGIC)?;
            }
            s.write_all(&wire::batch(&[]))
        })
        .await
        .map_err(io::Error::other)??;
    }
    Ok(sent)
}

/// Tells each parked flow whether it was committed to the new process (`true`: it ends here);
/// the others forward on. Returns how many were.
fn settle(offers: Vec<Offer>, committed: &[bool]) -> usize {
    let mut n = 0;
    for (i, o) in offers.into_iter().enumerate() {
        let yours = committed.get(i).copied().unwrap_or(false);
        n += usize::from(yours);
        let _ = o.parked.verdict.send(yours);
    }
    n
}

/// One round on the wire: every batch, its answer and its commit. Returns, per offer, whether
/// it was committed, and the error that ended the round early, if one did (the batches
/// committed before it stay committed; the rest stay here).
pub(super) fn give_round(
    stream: &mut UnixStream,
    offers: &[Offer],
    greet: bool,
) -> (Vec<bool>, Option<io::Error>) {
    let mut committed = Vec::with_capacity(offers.len());
    let mut setup = || -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        if greet {
            stream.write_all(wire::MAGIC)?;
        }
        Ok(())
    };
    let mut failed = setup().err();
    for batch in offers.chunks(wire::MAX_BATCH) {
        if failed.is_some() {
            break;
        }
        match give_batch(stream, batch) {
            Ok(c) => committed.extend(c),
            Err(e) => failed = Some(e),
        }
    }
    committed.resize(offers.len(), false);
    (committed, failed)
}

/// One batch: its records and fds, the new process's answer, and the commit.
fn give_batch(stream: &mut UnixStream, batch: &[Offer]) -> io::Result<Vec<bool>> {
    let flows: Vec<wire::Record<'_>> = batch
        .iter()
        .map(|o| (&o.flow, o.parked.kernel.as_ref()))
        .collect();
    let data = wire::batch(&flows);
    let kernel = flows.iter().any(|(_, k)| k.is_some());
    // Opened for this batch, closed when it is sent: the other process holds its own.
    let maps = if kernel {
        adopt::map_fds()?
    } else {
        Vec::new()
    };
    let fds: Vec<RawFd> = batch
        .iter()
        .flat_map(|o| [o.parked.client.as_raw_fd(), o.parked.server.as_raw_fd()])
        .chain(maps.iter().map(AsRawFd::as_raw_fd))
        .collect();
    // The fds ride on the first bytes; the rest of a large batch follows without them.
    wire::send_with_fds(stream, &data, &fds)?;
    let mut count = [0u8; 4];
    stream.read_exact(&mut count)?;
    let mut flags = vec![0u8; batch.len()];
    stream.read_exact(&mut flags)?;
    let taken = wire::parse_answer(count, &flags, batch.len()).map_err(io::Error::other)?;
    if batch
        .iter()
        .zip(&taken)
        .any(|(o, &t)| t && o.parked.kernel.is_some())
    {
        // Before the commit: the program must stay attached to the maps when this process
        // ends, from the moment a flow in them may be the other's.
        adopt::mark_handed_over();
    }
    // From this write on, a taken flow is the new process's.
    stream.write_all(&wire::answer(&taken))?;
    Ok(taken)
}
