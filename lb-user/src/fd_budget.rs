//! The process's file-descriptor budget: how many fds connections and splice pipes may hold
//! under `RLIMIT_NOFILE`, so that lb stops accepting before it runs out (clients wait in the
//! listen backlog, as HAProxy leaves them) instead of accepting a client it then resets.
//!
//! Self-contained, for any accept loop: take a lease before `accept` ([`FdBudget::take`] waits
//! while the budget is spent), keep it as long as the connection's fds are open, drop it after
//! they are closed. What a flow holds: its two sockets for its whole life, plus a pipe (2 fds)
//! per direction on splice while bytes move. Connections leave a share of the budget free for
//! those pipes; pipes may use all of it. Warnings about a spent budget are logged at most
//! once per second, whoever reports them.
//!
//! A flow copying on its thread's ring holds its sockets as direct descriptors (see
//! `ring::direct`): in the ring's fixed-file table, not in the process's fd table. Its lease
//! stays out, but its fds are *parked* ([`FdBudget::park`]): they leave room in the fd table
//! for others until the flow needs real fds back ([`FdBudget::try_unpark`]). How many flows
//! the fixed tables hold is [`direct_per_ring`] per thread; [`FdPlan`] counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::released::Released;

/// fds of one client connection: the client's socket and the server's.
pub const CONNECTION_FDS: u64 = 2;
/// fds of one splice pipe (read and write ends).
pub const PIPE_FDS: u64 = 2;
/// Most slots of a ring's fixed-file table. The kernel allows `RLIMIT_NOFILE` (soft) slots per
/// ring (`io_sqe_files_register`), up to 2^20; its table costs 8 bytes of kernel memory per
/// slot from the start, so lb asks for no more than this: 64 Ki connections per thread.
pub const MAX_FIXED_SLOTS: u64 = 1 << 17;

/// Slots of a ring's fixed-file table under the soft `RLIMIT_NOFILE` `soft`: as many as the
/// kernel allows, up to [`MAX_FIXED_SLOTS`], an even number (a flow takes two).
pub fn fixed_slots(soft: u64) -> u64 {
    soft.min(MAX_FIXED_SLOTS) / CONNECTION_FDS * CONNECTION_FDS
}

/// Connections one ring's fixed-file table holds as direct descriptors under `soft`.
pub fn direct_per_ring(soft: u64) -> u64 {
    fixed_slots(soft) / CONNECTION_FDS
}

/// Shortest time between two warnings about the budget.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What a lease is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A connection's sockets (client connections, stats and runtime API clients): leaves
    /// the pipes' share free.
    Connection,
    /// A splice pipe: may use the whole budget.
    Pipe,
}

/// The fds connections and pipes may hold, and how many they hold now.
#[derive(Debug)]
pub struct FdBudget {
    /// fds leases may hold in all: `RLIMIT_NOFILE` minus what lb holds besides connections.
    capacity: AtomicU64,
    /// Of `capacity`, what only pipes may take.
    pipe_share: AtomicU64,
    /// fds leased now.
    used: AtomicU64,
    /// Of `used`, fds whose sockets are direct descriptors now (not in the fd table).
    parked: AtomicU64,
    /// Wakes takers waiting in [`FdBudget::take`] when fds come back; counts them.
    released: Released,
    /// When the last warning was logged, in ms since `origin` (+1, so 0 = never).
    last_warning: AtomicU64,
    origin: Instant,
}

impl FdBudget {
    /// A budget of `capacity` fds of which `pipe_share` are kept for pipes.
    pub fn new(capacity: u64, pipe_share: u64) -> Self {
        Self {
            capacity: AtomicU64::new(capacity),
            pipe_share: AtomicU64::new(pipe_share.min(capacity)),
            used: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            released: Released::new(),
            last_warning: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// A budget that never runs out (before the process's own is installed, and in tests).
    pub fn unlimited() -> Self {
        Self::new(u64::MAX, u64::MAX / 2)
    }

    /// Changes the sizes (a reload, or a measurement of what lb holds itself). Leases out
    /// stay valid; if more are out than the new size allows, nothing more is given until
    /// enough come back.
    pub fn resize(&self, capacity: u64, pipe_share: u64) {
        self.capacity.store(capacity, Ordering::Relaxed);
        self.pipe_share
            .store(pipe_share.min(capacity), Ordering::Relaxed);
        self.released.release();
    }

    /// fds leases may hold in all.
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Of [`FdBudget::capacity`], the fds connections leave free for pipes.
    pub fn pipe_share(&self) -> u64 {
        self.pipe_share.load(Ordering::Relaxed)
    }

    /// fds leased now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Of [`FdBudget::used`], fds parked now (see [`FdBudget::park`]).
    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// `n` leased fds became direct descriptors (their sockets left the fd table): they make
    /// room for others until [`FdBudget::unpark`] or [`FdBudget::try_unpark`].
    pub fn park(&self, n: u64) {
        self.parked.fetch_add(n, Ordering::AcqRel);
        self.released.release();
    }

    /// `n` parked fds leave the budget with their lease (the sockets are closed): counted in
    /// the fd table again until the lease is dropped.
    pub fn unpark(&self, n: u64) {
        self.parked.fetch_sub(n, Ordering::AcqRel);
    }

    /// `n` parked fds become real fds again, if the fd table has room for them as for `what`.
    pub fn try_unpark(&self, n: u64, what: Use) -> bool {
        let ceiling = self.ceiling(what);
        let used = self.used();
        self.parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |parked| {
                let left = parked.checked_sub(n)?;
                (used.saturating_sub(left) <= ceiling).then_some(left)
            })
            .is_ok()
    }

    /// Whether someone waits for fds now: whoever keeps fds it does not need (a pool of
    /// empty pipes) should give them back.
    pub fn has_waiters(&self) -> bool {
        self.released.has_waiters()
    }

    /// How many fds a lease for `what` may bring the total to.
    fn ceiling(&self, what: Use) -> u64 {
        let capacity = self.capacity();
        match what {
            Use::Connection => capacity.saturating_sub(self.pipe_share()),
            Use::Pipe => capacity,
        }
    }

    /// `n` fds for `what` if the budget has them now.
    pub fn try_take(self: &Arc<Self>, n: u64, what: Use) -> Option<FdLease> {
        let ceiling = self.ceiling(what);
        // AcqRel: a lease taken here and one returned on another thread are ordered, so
        // the count never goes below what is really out.
        let parked = self.parked();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let total = used.checked_add(n)?;
                (total.saturating_sub(parked) <= ceiling).then_some(total)
            })
            .ok()?;
        Some(FdLease {
            budget: self.clone(),
            n,
        })
    }

    /// `n` fds for `what`, waiting until leases come back if the budget is spent. `spent` is
    /// called each time the wait starts or goes on (to warn, see [`FdBudget::warn`]).
    pub async fn take(self: &Arc<Self>, n: u64, what: Use, spent: impl FnMut()) -> FdLease {
        self.released
            .wait_for(|| self.try_take(n, what), spent)
            .await
    }

    /// Logs `message()` as a warning unless one was logged less than a second ago (by any
    /// user of this budget). Returns whether it was logged.
    pub fn warn(&self, message: impl FnOnce() -> String) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        self.warn_at(now, message)
    }

    /// [`FdBudget::warn`] at `now` ms since `origin` (+1).
    fn warn_at(&self, now: u64, message: impl FnOnce() -> String) -> bool {
        let last = self.last_warning.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return false;
        }
        // One winner when several threads hit the limit at once.
        if self
            .last_warning
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        log::warn!("{}", message());
        true
    }

    /// Gives back `n` fds kept with [`FdLease::into_raw`].
    pub fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.released.release();
    }

    /// One line on the state of the budget, for warnings.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} file descriptors for connections and pipes in use ({} kept for pipes; {} \
             more held as io_uring direct descriptors)",
            self.used().saturating_sub(self.parked()),
            self.capacity(),
            self.pipe_share(),
            self.parked()
        )
    }
}

/// fds taken from a budget; given back when dropped. Drop it after the fds it stands for are
/// closed.
#[derive(Debug)]
pub struct FdLease {
    budget: Arc<FdBudget>,
    n: u64,
}

impl FdLease {
    /// Gives back all but `n` of the leased fds (e.g. the accept's temporary duplicate).
    pub fn shrink_to(&mut self, n: u64) {
        if n < self.n {
            self.budget.used.fetch_sub(self.n - n, Ordering::AcqRel);
            self.n = n;
            self.budget.released.release();
        }
    }

    /// How many fds this lease holds.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Keeps the fds taken without the lease that gives them back: the caller gives them
    /// back with [`FdBudget::give_back`] on the same budget (a value too small to hold a
    /// lease, e.g. a pooled pipe).
    pub fn into_raw(self) -> u64 {
        let n = self.n;
        std::mem::forget(self);
        n
    }
}

impl Drop for FdLease {
    fn drop(&mut self) {
        self.budget.give_back(self.n);
    }
}

static PROCESS: OnceLock<Arc<FdBudget>> = OnceLock::new();

/// The process's budget: the one [`install`]ed at start, else an unlimited one (tests and
/// tools that never install one).
pub fn process() -> &'static Arc<FdBudget> {
    PROCESS.get_or_init(|| Arc::new(FdBudget::unlimited()))
}

/// Sets the process's budget (at start). Later calls resize the installed one.
pub fn install(capacity: u64, pipe_share: u64) -> &'static Arc<FdBudget> {
    let budget = PROCESS.get_or_init(|| Arc::new(FdBudget::new(capacity, pipe_share)));
    budget.resize(capacity, pipe_share);
    budget
}

/// How a data plane uses pipes, for the share of the budget kept for them. Past it, a
/// direction copies through a buffer (see `dataplane::splice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeUse {
    /// Flows move bytes through pipes (splice, and sockmap's first moments on splice): as
    /// HAProxy without `maxpipes`, room for a pipe per four connections.
    Splice,
    /// Flows go into the kernel maps at once; pipes only for those that cannot: room for a
    /// pipe per sixteen connections.
    Rare,
    /// `maxpipes N`: room for N pipes, as HAProxy counts them.
    Fixed(u32),
}

impl PipeUse {
    /// fds per connection, in sixteenths: two sockets, and the connection's part of the pipes
    /// (none when their number is fixed).
    fn cost16(self) -> u64 {
        let pipe_fds16 = match self {
            // A pipe (2 fds) per 4 connections.
            PipeUse::Splice => 8,
            // A pipe per 16 connections.
            PipeUse::Rare => 2,
            PipeUse::Fixed(_) => 0,
        };
        CONNECTION_FDS * 16 + pipe_fds16
    }

    /// fds of a fixed number of pipes.
    fn fixed_fds(self) -> u64 {
        match self {
            PipeUse::Fixed(n) => u64::from(n) * PIPE_FDS,
            PipeUse::Splice | PipeUse::Rare => 0,
        }
    }
}

/// What a file-descriptor limit gives: the soft limit to ask for, `maxconn`, and the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdPlan {
    /// The soft `RLIMIT_NOFILE` to set (never below the current one, never above the hard).
    pub soft: u64,
    /// `maxconn`: the configured one, or what the fds allow.
    pub maxconn: u32,
    /// What the configured `maxconn` needs when the hard limit and the rings' fixed tables
    /// are too small for it (warn about it).
    pub short_of: Option<u64>,
    /// Budget for connections and pipes, and its share kept for pipes.
    pub capacity: u64,
    pub pipe_share: u64,
    /// Connections the rings' fixed-file tables hold besides, as direct descriptors.
    pub direct: u64,
}

impl FdPlan {
    /// The plan for limits `soft`/`hard`, with `base` fds held by lb besides connections,
    /// for `configured` maxconn (if any), `rings` threads whose flows copy on a ring, as
    /// HAProxy plans: without `maxconn`, as many connections as the hard limit allows (the
    /// soft limit is raised to it), HAProxy's figure; with it, the soft limit raised to what it
    /// needs when the hard limit allows.
    ///
    /// A flow on a ring holds its sockets as direct descriptors, outside the fd table: each
    /// ring's fixed table holds [`direct_per_ring`] more connections under the soft limit.
    /// They count when a configured `maxconn` is weighed against the limit (no warning while
    /// fds and fixed tables hold it together), not in the derived `maxconn`, which stays
    /// HAProxy's: a flow that leaves the ring (splice, the maps, an upgrade's hand-over) needs
    /// its real fds back, so `maxconn` past the fds is a choice made in the config.
    pub fn new(
        soft: u64,
        hard: u64,
        base: u64,
        configured: Option<u32>,
        pipes: PipeUse,
        rings: u64,
    ) -> Self {
        let cost16 = pipes.cost16();
        let fixed = pipes.fixed_fds();
        let hard = hard.max(soft);
        let (wanted, maxconn) = if let Some(m) = configured {
            (base + fixed + (u64::from(m) * cost16).div_ceil(16), m)
        } else {
            let mut room = hard.saturating_sub(base);
            // As HAProxy: fixed pipes count only when the fds leave room for them.
            if fixed < room {
                room -= fixed;
            }
            let fit = room * 16 / cost16;
            (hard, u32::try_from(fit.max(1)).unwrap_or(u32::MAX))
        };
        let new_soft = wanted.clamp(soft, hard);
        let capacity = new_soft.saturating_sub(base);
        let pipe_share = match pipes {
            PipeUse::Fixed(_) => fixed.min(capacity),
            PipeUse::Splice | PipeUse::Rare => capacity * (cost16 - CONNECTION_FDS * 16) / cost16,
        };
        let mut plan = Self {
            soft: new_soft,
            maxconn,
            short_of: None,
            capacity,
            pipe_share,
            direct: rings * direct_per_ring(new_soft),
        };
        if wanted > hard && plan.connections() < u64::from(maxconn) {
            plan.short_of = Some(wanted);
        }
        plan
    }

    /// Connections the budget lets in when none holds a pipe: those the fd table holds, and
    /// those the rings' fixed tables hold.
    pub fn connections(&self) -> u64 {
        (self.capacity - self.pipe_share) / CONNECTION_FDS + self.direct
    }
}

/// The soft and hard `RLIMIT_NOFILE`.
pub fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}

/// Sets `RLIMIT_NOFILE` (raising the hard limit needs `CAP_SYS_RESOURCE`).
pub fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How many fds the process has open now (`/proc/self/fd`); `None` where it can't be read.
pub fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory being read is one of the entries.
    Some((dir.count() as u64).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_the_pipes_share_free() {
        let b = Arc::new(FdBudget::new(10, 4));
        let first = b.try_take(3, Use::Connection).unwrap();
        let second = b.try_take(3, Use::Connection).unwrap();
        assert!(b.try_take(1, Use::Connection).is_none(), "6 of 10, 4 kept");
        let pipes = b.try_take(4, Use::Pipe).unwrap();
        assert!(b.try_take(1, Use::Pipe).is_none());
        assert_eq!(b.used(), 10);
        drop((first, pipes));
        assert_eq!(b.used(), 3);
        let mut third = b.try_take(3, Use::Connection).unwrap();
        third.shrink_to(2);
        assert_eq!((b.used(), third.count()), (5, 2));
        drop((second, third));
        assert_eq!(b.used(), 0);
        let raw = b.try_take(2, Use::Pipe).unwrap().into_raw();
        assert_eq!(b.used(), 2);
        b.give_back(raw);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn parked_fds_make_room_until_they_are_taken_back() {
        let b = Arc::new(FdBudget::new(10, 4));
        let direct = b.try_take(2, Use::Connection).unwrap();
        let _other = b.try_take(4, Use::Connection).unwrap();
        assert!(b.try_take(2, Use::Connection).is_none(), "6 of 10, 4 kept");
        // The first connection's sockets became direct descriptors: room for another.
        b.park(2);
        let third = b.try_take(2, Use::Connection).unwrap();
        assert_eq!((b.used(), b.parked()), (8, 2));
        // No room to take its fds back now; once the third is gone, there is.
        assert!(!b.try_unpark(2, Use::Connection));
        drop(third);
        assert!(b.try_unpark(2, Use::Connection));
        assert_eq!((b.used(), b.parked()), (6, 0));
        // Or it ends direct: its parked fds leave with its lease.
        b.park(2);
        b.unpark(2);
        drop(direct);
        assert_eq!((b.used(), b.parked()), (4, 0));
        assert!(!b.try_unpark(2, Use::Connection), "nothing parked");
    }

    #[test]
    fn take_waits_for_a_lease_to_come_back() {
        let rt = crate::test_runtime();
        rt.block_on(async {
            let b = Arc::new(FdBudget::new(2, 0));
            let held = b.try_take(2, Use::Connection).unwrap();
            let mut spent = 0;
            let waiter = {
                let b = b.clone();
                tokio::spawn(async move {
                    let l = b.take(2, Use::Connection, || {}).await;
                    l.count()
                })
            };
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            assert!(b.has_waiters());
            drop(held);
            assert_eq!(waiter.await.unwrap(), 2);
            assert!(!b.has_waiters());
            // A budget with room does not call `spent`.
            let b = Arc::new(FdBudget::new(4, 0));
            let _l = b.take(2, Use::Connection, || spent += 1).await;
            assert_eq!(spent, 0);
        });
    }

    #[test]
    fn warnings_are_logged_at_most_once_per_second() {
        let b = FdBudget::new(1, 0);
        assert!(b.warn_at(5, || "first".into()));
        assert!(!b.warn_at(6, || "again".into()));
        assert!(!b.warn_at(1004, || "still within the second".into()));
        assert!(b.warn_at(1005, || "a second later".into()));
        assert!(!b.warn_at(1500, || "again".into()));
    }

    #[test]
    fn plans_follow_haproxys_arithmetic() {
        // No maxconn: everything the hard limit allows, 2.5 fds per connection on splice.
        let p = FdPlan::new(1024, 20_000, 100, None, PipeUse::Splice, 0);
        assert_eq!((p.soft, p.maxconn, p.short_of), (20_000, 7960, None));
        assert_eq!((p.capacity, p.pipe_share), (19_900, 3980));
        assert_eq!(p.connections(), 7960);
        // Sockmap at once: pipes are rare.
        let p = FdPlan::new(20_000, 20_000, 100, None, PipeUse::Rare, 0);
        assert_eq!(p.maxconn, 9364);
        // maxconn given: the soft limit rises to what it needs, no further.
        let p = FdPlan::new(1024, 20_000, 100, Some(1000), PipeUse::Splice, 0);
        assert_eq!((p.soft, p.maxconn, p.short_of), (2600, 1000, None));
        // ... and never falls below where it was.
        let p = FdPlan::new(8000, 20_000, 100, Some(10), PipeUse::Splice, 0);
        assert_eq!(p.soft, 8000);
        // A hard limit too low for maxconn: said, and the budget is what there is.
        let p = FdPlan::new(256, 256, 56, Some(4096), PipeUse::Splice, 0);
        assert_eq!((p.soft, p.maxconn, p.short_of), (256, 4096, Some(10_296)));
        assert_eq!((p.capacity, p.pipe_share, p.connections()), (200, 40, 80));
        // maxpipes: HAProxy's maxconn * 2 + maxpipes * 2.
        let p = FdPlan::new(20_000, 20_000, 100, None, PipeUse::Fixed(1000), 0);
        assert_eq!((p.maxconn, p.pipe_share), (8950, 2000));
        let p = FdPlan::new(1024, 20_000, 100, Some(1000), PipeUse::Fixed(100), 0);
        assert_eq!((p.soft, p.pipe_share), (2300, 200));
    }

    #[test]
    fn fixed_tables_hold_connections_besides_the_fds() {
        // One ring under 20 000: 10 000 connections as direct descriptors, 7 960 in fds;
        // 10 000 configured needs 25 100 fds alone, but not a warning.
        let p = FdPlan::new(1024, 20_000, 100, Some(10_000), PipeUse::Splice, 1);
        assert_eq!((p.soft, p.direct, p.short_of), (20_000, 10_000, None));
        assert_eq!(p.connections(), 7960 + 10_000);
        // The derived maxconn stays HAProxy's.
        let p = FdPlan::new(20_000, 20_000, 100, None, PipeUse::Splice, 2);
        assert_eq!((p.maxconn, p.direct), (7960, 20_000));
        // Past both, said.
        let p = FdPlan::new(256, 256, 56, Some(4096), PipeUse::Splice, 2);
        assert_eq!(
            (p.direct, p.connections(), p.short_of),
            (256, 336, Some(10_296))
        );
        // No ring (sockmap at once): the fds alone.
        let p = FdPlan::new(1024, 20_000, 100, Some(10_000), PipeUse::Rare, 0);
        assert_eq!((p.direct, p.short_of), (0, Some(21_350)));
        // A table is at most MAX_FIXED_SLOTS, an even number of slots.
        assert_eq!(fixed_slots(1_000_001), MAX_FIXED_SLOTS);
        assert_eq!((fixed_slots(257), direct_per_ring(257)), (256, 128));
    }
}
