//! Direct descriptors: a flow copying on the ring holds its two sockets in the ring's
//! fixed-file table, not in the process's fd table, so that how many flows idle on the rings
//! is bounded by the tables (up to `RLIMIT_NOFILE` slots per ring) and not by the fds lb may
//! open (2 per connection under the same limit).
//!
//! - **The table.** At [`super::install`], one sparse table per ring of
//!   [`fd_budget::fixed_slots`] slots (the soft `RLIMIT_NOFILE`, the kernel's bound per
//!   ring, up to `MAX_FIXED_SLOTS`): one `io_uring_register` per thread, at start. The flow at
//!   slab key `k` owns slots `2k` (client) and `2k + 1` (server): the slab allocates the
//!   slots. A flow whose key is past the table keeps its fds, as every flow did before.
//! - **Entering.** [`Ring::enter_table`] takes the flow's two fds and queues, ahead of its
//!   first receives and in the same `io_uring_enter`, one linked chain:
//!   `IORING_OP_FILES_UPDATE` (both slots) → `close(client)` → `close(server)`, each
//!   `IOSQE_CQE_SKIP_SUCCESS`. The update runs inline at submission (`io_files_update` takes
//!   the ring's lock and never goes async), so the receives queued after it find the slots;
//!   the closes run after it, as linked work. On success nothing completes: no syscall, no
//!   wake-up of the loop. The fds it reads are in [`Table::staged`] (one pair per key, never
//!   moved) until it ran. A failed update completes (`Tag::Files`): its closes were cancelled,
//!   the ring closes the fds; the flow's receives fail on the empty slots and it ends as a
//!   reset.
//! - **Copying.** Receives, sends and shutdowns name the slot (`IOSQE_FIXED_FILE`): no file
//!   lookup (an atomic get and put) per operation.
//! - **Ending.** The slots are closed with `IORING_OP_CLOSE`; the `SO_LINGER` 0 that
//!   HAProxy's closing rule asks for (`dataplane::reset_on_close`) goes through the ring too
//!   (`IORING_OP_URING_CMD` `SOCKET_URING_OP_SETSOCKOPT`, 6.7+), queued just before the close:
//!   one entry where it was a `setsockopt` syscall. Neither is linked: both run inline at
//!   submission, in queue order, so they are done before any later entry runs. The flow
//!   leaves the slab (its key and slots free for the next flow) when they are queued, not
//!   when they ran, and the next flow's `FILES_UPDATE` on the same slots is queued after
//!   them. A linked close would run later, as the chain's task work, after that update:
//!   it would close the next flow's socket.
//! - **Leaving with real fds** (graduation to splice and the maps; an upgrade's hand-over,
//!   which graduates first; anything that needs a socket option or the fd): once nothing of
//!   the flow is in flight, `IORING_OP_FIXED_FD_INSTALL` (6.8+) gives each socket a real fd,
//!   then the slots are closed. That needs room in the fd table: when the budget has none, the
//!   graduation is given up as one that found the flow busy (it copies on and tries again
//!   later, see `copy::RETRY`). `show sess` reads nothing of the sockets.
//! - **Lending an fd for a FIN.** `IORING_OP_SHUTDOWN` always runs on an io-wq worker; to
//!   pass a FIN on, the flow's socket gets a short-lived fd instead (`FIXED_FD_INSTALL`,
//!   inline, with one fd of the budget unparked for it), the loop calls `shutdown(2)` on it and
//!   closes it through the ring ([`LentFd`], `copy`'s `Ring::shutdown`).
//! - **The fd budget.** A direct flow's lease (2 fds, taken before its accept) stays out, its
//!   fds parked ([`crate::fd_budget::FdBudget::park`]): they make room for other connections
//!   until the flow needs fds again or ends.
//!
//! When it pays: always, where the table has room. Per connection it adds three entries (the
//! update and two closes) and no syscall: they go in the `io_uring_enter` that submits the
//! first receives and post no completion; the closes at the end are as many as before, and
//! the `SO_LINGER` 0 is an entry instead of a syscall. Every operation on the flow saves a
//! file lookup. Doing it only under fd pressure would keep a second, rarely run path for no
//! saving.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};

use super::{Ring, Tag};

use crate::dataplane::{reset_on_close, FlowEnd};
use crate::fd_budget::{self, Use, CONNECTION_FDS};

/// `IORING_OP_FIXED_FD_INSTALL` (6.8) and `IORING_OP_URING_CMD`, with the socket command
/// `SOCKET_URING_OP_SETSOCKOPT` (6.7): the io-uring crate 0.6 builds neither.
const OP_FIXED_FD_INSTALL: u8 = 54;
const OP_URING_CMD: u8 = 46;
const SOCKET_URING_OP_SETSOCKOPT: u32 = 3;

/// What `SO_LINGER` 0 sets: read by the kernel when the entry runs, so never moved.
static LINGER_ZERO: libc::linger = libc::linger {
    l_onoff: 1,
    l_linger: 0,
};

/// Where a flow's sockets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sockets {
    /// In the flow's fds (in the process's fd table).
    Fds,
    /// In the ring's fixed table only (its lease's fds parked).
    Direct,
    /// In the fixed table, and getting real fds (`FIXED_FD_INSTALL` in flight) into the
    /// flow's fds: its lease's fds are counted again.
    Installing,
}

impl Sockets {
    /// Whether operations name the sockets by their slots.
    pub(super) fn in_table(self) -> bool {
        self != Self::Fds
    }
}

/// A ring's fixed-file table.
pub(super) struct Table {
    /// Flows with a key below this hold their sockets in the table.
    flows: usize,
    /// The fds each key's update reads (allocated zeroed: pages are mapped on first use).
    staged: Box<[[RawFd; 2]]>,
}

impl Table {
    /// Registers `uring`'s sparse table, as large as the soft `RLIMIT_NOFILE` allows. None
    /// (flows keep their fds) when the kernel refuses it.
    /// Also none on a kernel without `IORING_OP_FIXED_FD_INSTALL` (before 6.8): a flow could
    /// enter the table but never leave it with fds (to splice, the maps or an upgrade).
    pub(super) fn new(uring: &IoUring) -> Self {
        let (soft, _) = fd_budget::nofile_limits();
        let slots = u32::try_from(fd_budget::fixed_slots(soft)).unwrap_or(0);
        let flows = if !wanted() {
            0
        } else if can_install(uring) {
            match uring.submitter().register_files_sparse(slots) {
                Ok(()) => slots as usize / 2,
                Err(e) => {
                    log::info!("io_uring: no fixed-file table ({e}): flows on the ring hold fds");
                    0
                }
            }
        } else {
            log::info!(
                "io_uring: no IORING_OP_FIXED_FD_INSTALL (Linux 6.8+): flows on the ring hold fds"
            );
            0
        };
        Self {
            flows,
            staged: vec![[0; 2]; flows].into_boxed_slice(),
        }
    }
}

/// The environment variable that turns direct descriptors off (`0`); on otherwise. (They
/// were off for a while: a request and its FIN once did not reach the server; the ring's
/// lost wake-ups that explain it are fixed, see `turn_tests`.)
pub const SWITCH: &str = "LB_DIRECT_DESCRIPTORS";

/// Whether flows on the rings are to hold their sockets as direct descriptors ([`SWITCH`]).
pub fn wanted() -> bool {
    std::env::var_os(SWITCH).is_none_or(|v| v != "0")
}

/// Whether the kernel knows `IORING_OP_FIXED_FD_INSTALL` (which also means it has the socket
/// commands of `IORING_OP_URING_CMD`, 6.7).
fn can_install(uring: &IoUring) -> bool {
    let mut probe = io_uring::Probe::new();
    uring.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(OP_FIXED_FD_INSTALL)
}

/// Slot of socket `i` (0 client, 1 server) of the flow at `key`.
pub(super) fn slot(key: usize, i: usize) -> u32 {
    u32::try_from(2 * key + i).expect("a slot of a table of at most 2^20")
}

/// An entry the io-uring crate has no builder for: `f` sets the bytes of a zeroed
/// `struct io_uring_sqe` (the kernel's layout, 64 bytes).
fn raw_entry(f: impl FnOnce(&mut [u8; 64])) -> squeue::Entry {
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    let mut sqe = [0u8; 64];
    f(&mut sqe);
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's `io_uring_sqe`: 64 bytes of
    // integers and unions of integers, valid for any bit pattern.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(sqe) }
}

/// Sets the fields common to an entry on slot `slot`: `opcode`, `IOSQE_FIXED_FILE`, `fd`.
fn on_slot(sqe: &mut [u8; 64], op: u8, slot: u32) {
    sqe[0] = op;
    sqe[1] = squeue::Flags::FIXED_FILE.bits();
    sqe[4..8].copy_from_slice(&slot.to_ne_bytes());
}

/// `IORING_OP_FIXED_FD_INSTALL` of slot `slot`: its result is a new fd (close-on-exec) for the
/// same socket.
fn install_entry(slot: u32) -> squeue::Entry {
    raw_entry(|sqe| on_slot(sqe, OP_FIXED_FD_INSTALL, slot))
}

/// `setsockopt(SOL_SOCKET, SO_LINGER, {1, 0})` on slot `slot`, through the ring.
fn linger_zero_entry(slot: u32) -> squeue::Entry {
    raw_entry(|sqe| {
        on_slot(sqe, OP_URING_CMD, slot);
        sqe[8..12].copy_from_slice(&SOCKET_URING_OP_SETSOCKOPT.to_ne_bytes());
        sqe[16..20].copy_from_slice(&(libc::SOL_SOCKET as u32).to_ne_bytes());
        sqe[20..24].copy_from_slice(&(libc::SO_LINGER as u32).to_ne_bytes());
        let len = std::mem::size_of::<libc::linger>() as u32;
        sqe[44..48].copy_from_slice(&len.to_ne_bytes());
        let at = (&raw const LINGER_ZERO) as u64;
        sqe[48..56].copy_from_slice(&at.to_ne_bytes());
    })
}

impl Ring {
    /// Moves the sockets of the flow at `key`, just started with its fds, into the fixed
    /// table, if it has room for the key: see the module's header. Before its first receives.
    pub(super) fn enter_table(&mut self, key: usize) {
        if key >= self.table.flows {
            return;
        }
        let f = &mut self.flows[key];
        let (Some(client), Some(server)) = (f.fds[0].take(), f.fds[1].take()) else {
            unreachable!("a flow starts with both its sockets")
        };
        f.socks = Sockets::Direct;
        let fds = [client.into_raw_fd(), server.into_raw_fd()];
        self.table.staged[key] = fds;
        self.room_for(3);
        let chained = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let update = opcode::FilesUpdate::new(self.table.staged[key].as_ptr(), 2)
            .offset(slot(key, 0) as i32)
            .build()
            .flags(chained)
            .user_data(Tag::Files.user_data(key));
        self.push(&update);
        for (i, fd) in fds.into_iter().enumerate() {
            let flags = if i == 0 {
                chained
            } else {
                squeue::Flags::SKIP_SUCCESS
            };
            let close = opcode::Close::new(types::Fd(fd))
                .build()
                .flags(flags)
                .user_data(Tag::Ignored.user_data(0));
            self.push(&close);
        }
        fd_budget::process().park(CONNECTION_FDS);
    }

    /// Submits what is queued if fewer than `n` entries fit: a chain goes in one submission
    /// (a full queue, submitted in the middle, would cut its links).
    pub(super) fn room_for(&mut self, n: usize) {
        let free = {
            let sq = self.uring.submission();
            sq.capacity() - sq.len()
        };
        if free < n {
            self.submit();
        }
    }

    /// The update that put the sockets of the flow at `key` into the table failed (`res`):
    /// the ring closes their fds (the chain's closes were cancelled), and the flow, whose
    /// operations find empty slots, ends.
    pub(super) fn files_failed(&mut self, key: usize, res: i32) {
        log::warn!(
            "io_uring: a flow's sockets did not enter the fixed-file table: {}",
            std::io::Error::from_raw_os_error(-res)
        );
        for fd in self.table.staged[key] {
            self.close_raw(fd);
        }
        // The completion comes at the submission, before any of the flow's own: it is still
        // the flow that queued the update.
        if let Some(f) = self.flows.get_mut(key) {
            if f.socks == Sockets::Direct {
                f.socks = Sockets::Fds;
                fd_budget::process().unpark(CONNECTION_FDS);
            }
        }
    }

    /// Makes sure the flow at `key`, graduating with nothing in flight, holds real fds:
    /// `true` when it does. A direct flow gets them back (`FIXED_FD_INSTALL`) when the fd
    /// table has room, `false` meanwhile; without room, the graduation is given up.
    pub(super) fn real_fds(&mut self, key: usize) -> bool {
        match self.flows[key].socks {
            Sockets::Fds => true,
            Sockets::Direct => {
                if fd_budget::process().try_unpark(CONNECTION_FDS, Use::Connection) {
                    let f = &mut self.flows[key];
                    f.socks = Sockets::Installing;
                    f.in_flight += 2;
                    for d in 0..2 {
                        let e =
                            install_entry(slot(key, d)).user_data(Tag::Install(d).user_data(key));
                        self.push(&e);
                    }
                } else {
                    self.give_up_graduation(key);
                }
                false
            }
            Sockets::Installing => {
                // Both installed (a failure went back to `Direct`): the slots go.
                for d in 0..2 {
                    self.close_slot(key, d, false);
                }
                self.flows[key].socks = Sockets::Fds;
                true
            }
        }
    }

    /// The completion of socket `d`'s install for the flow at `key`.
    pub(super) fn installed(&mut self, key: usize, d: usize, res: i32) {
        let f = &mut self.flows[key];
        if res >= 0 {
            // SAFETY: a successful install's result is a new fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if f.socks == Sockets::Installing {
                f.fds[d] = Some(fd);
            }
            // Else the other install failed first: the fd is closed here.
            return;
        }
        if f.socks != Sockets::Installing {
            return;
        }
        log::debug!(
            "io_uring: a flow could not get its socket back as an fd: {}",
            std::io::Error::from_raw_os_error(-res)
        );
        f.socks = Sockets::Direct;
        f.fds = [None, None];
        fd_budget::process().park(CONNECTION_FDS);
        self.give_up_graduation(key);
    }

    /// Queues the `FIXED_FD_INSTALL` that gives socket `i` of the flow at `key` a short-lived
    /// fd ([`LentFd`]), completing with `tag`: `false` (nothing queued) when the flow's sockets
    /// are not in the table alone, or the fd budget has no room for one more fd.
    pub(super) fn lend_fd(&mut self, key: usize, i: usize, tag: Tag) -> bool {
        if self.flows[key].socks != Sockets::Direct
            || !fd_budget::process().try_unpark(1, Use::Connection)
        {
            return false;
        }
        let e = install_entry(slot(key, i)).user_data(tag.user_data(key));
        self.push(&e);
        true
    }

    /// Closes a lent fd through the ring, and parks its place in the fd budget again.
    pub(super) fn close_lent(&mut self, mut fd: LentFd) {
        if let Some(fd) = fd.0.take() {
            self.close_raw(fd.into_raw_fd());
        }
    }

    /// Closes `fd`, which the caller gives up, through the ring: an entry in the next
    /// submission where `close(2)` would be a syscall of its own; it completes only on failure.
    pub(super) fn close_raw(&mut self, fd: RawFd) {
        let e = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        self.push(&e);
    }

    /// Closes the slots of the flow at `key`, which ends with `end`: the peer that HAProxy's
    /// rule resets gets `SO_LINGER` 0 first, through the ring, unless the flow holds real fds
    /// too (installs done as it ended: `close_flow` sets it on those). A direct flow's parked
    /// fds leave the budget with its lease.
    pub(super) fn close_slots(&mut self, key: usize, end: FlowEnd, server_closed: bool) {
        let socks = self.flows[key].socks;
        let linger = match socks {
            Sockets::Fds => return,
            Sockets::Direct => reset_on_close(end, server_closed),
            Sockets::Installing => None,
        };
        for d in 0..2 {
            self.close_slot(key, d, linger == Some(d));
        }
        self.flows[key].socks = Sockets::Fds;
        if socks == Sockets::Direct {
            fd_budget::process().unpark(CONNECTION_FDS);
        }
    }

    /// Closes slot `d` of the flow at `key`, after `SO_LINGER` 0 when `reset`. Not linked
    /// (see the module's header): the slot may be the next flow's once this returns.
    fn close_slot(&mut self, key: usize, d: usize, reset: bool) {
        let at = slot(key, d);
        if reset {
            let e = linger_zero_entry(at)
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(Tag::Ignored.user_data(0));
            self.push(&e);
        }
        let e = opcode::Close::new(types::Fixed(at))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        self.push(&e);
    }
}

/// A socket of a flow in the fixed table, lent as an fd by [`Ring::lend_fd`]: closed, and its
/// place in the fd budget parked again, when dropped.
pub(super) struct LentFd(Option<OwnedFd>);

impl LentFd {
    /// The fd a [`Ring::lend_fd`] install gave, from its result; `None` when it failed (its
    /// place in the budget is parked again).
    pub(super) fn of(res: i32) -> Option<Self> {
        if res < 0 {
            log::debug!(
                "io_uring: a socket could not be lent as an fd: {}",
                std::io::Error::from_raw_os_error(-res)
            );
            fd_budget::process().park(1);
            return None;
        }
        // SAFETY: a successful install's result is a new fd nobody else owns.
        Some(Self(Some(unsafe { OwnedFd::from_raw_fd(res) })))
    }
}

impl AsFd for LentFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_ref().expect("a lent fd until dropped").as_fd()
    }
}

impl Drop for LentFd {
    fn drop(&mut self) {
        drop(self.0.take());
        fd_budget::process().park(1);
    }
}
