//! Handing a flow to another process (binary upgrade, `_getflows`): asked through its
//! [`KillSwitch`](super::KillSwitch), the flow stops where it holds no byte (both pumps parked at their read point,
//! nothing in a pipe or a buffer), offers duplicates of its two sockets with what it has read
//! from each, and waits for the verdict. Taken, it closes its own descriptors (no shutdown, no
//! reset: the other process holds the same sockets) and ends as
//! [`FlowEnd::HandedOff`](super::FlowEnd::HandedOff); not
//! taken, or no verdict at all, it forwards on from where it stopped. So a flow is served by
//! one process at a time, whatever happens to the exchange.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// A request that a flow stop at a quiet point and offer itself ([`KillSwitch::hand_off`](super::KillSwitch::hand_off)).
#[derive(Debug)]
pub struct HandOffAsk {
    /// After this the asker no longer waits: the flow forwards on.
    pub until: Instant,
    to: oneshot::Sender<Parked>,
}

impl HandOffAsk {
    /// An ask valid until `until`, and where the parked flow arrives (an error there: the flow
    /// could not be handed off, and goes on where it is).
    pub fn new(until: Instant) -> (Self, oneshot::Receiver<Parked>) {
        let (to, rx) = oneshot::channel();
        (Self { until, to }, rx)
    }

    /// The asker still waits.
    pub(super) fn wanted(&self) -> bool {
        !self.to.is_closed() && Instant::now() < self.until
    }
}

/// A flow stopped at a quiet point: duplicates of its sockets, and where its owner waits for
/// the verdict. Dropping it, or sending `false`, lets the flow forward on.
#[derive(Debug)]
pub struct Parked {
    pub client: OwnedFd,
    pub server: OwnedFd,
    /// Bytes read from the client and from the server since accept, every one passed on (the
    /// rules' inspection included): where the other process's FIN accounting starts.
    pub read: (u64, u64),
    /// A flow in the kernel maps: what userspace keeps of it (handed over with the maps).
    pub kernel: Option<super::sockmap::adopt::KernelFlow>,
    /// `true`: the other process serves the flow from now on; this one ends it quietly.
    pub verdict: oneshot::Sender<bool>,
}

/// Offers a flow stopped at a quiet point through `ask`: duplicates of its sockets and what it
/// read from each. `true` once the other process has taken it; `false` (refused, no answer,
/// or the duplicates could not be made) and the flow goes on here.
pub(super) async fn offer(
    ask: HandOffAsk,
    (client, server): (&AsyncFd<OwnedFd>, &AsyncFd<OwnedFd>),
    read: (u64, u64),
) -> bool {
    // A TLS side's relay (client or server) lives in this process: the flow stays here.
    let inet = |s: &AsyncFd<OwnedFd>| super::sockopt::is_inet(s.get_ref().as_fd());
    if !inet(client) || !inet(server) {
        return false;
    }
    let (Ok(client), Ok(server)) = (client.get_ref().try_clone(), server.get_ref().try_clone())
    else {
        return false;
    };
    offer_fds(ask, (client, server), read, None).await
}

/// [`offer`] with the duplicates made, and for a flow in the kernel maps its state.
pub(super) async fn offer_fds(
    ask: HandOffAsk,
    (client, server): (OwnedFd, OwnedFd),
    read: (u64, u64),
    kernel: Option<super::sockmap::adopt::KernelFlow>,
) -> bool {
    let (verdict, taken) = oneshot::channel();
    let parked = Parked {
        client,
        server,
        read,
        kernel,
        verdict,
    };
    if ask.to.send(parked).is_err() {
        return false;
    }
    taken.await.unwrap_or(false)
}
