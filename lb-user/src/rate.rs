//! HAProxy's `freq_ctr` over a period (`src/freq_ctr.c`): two buckets, the events of the
//! current period and of the previous one; a read counts the current bucket whole and the
//! previous one in proportion to the part of the period not yet elapsed. `conn_rate(10s)`
//! therefore reads as HAProxy's does, including its flapping correction at very low rates.
//! Times are milliseconds of [`clock`]. [`FreqCtr`] is for a caller that serialises access
//! (a stick-table entry's lock); [`SharedRate`] is the lock-free per-second one of the
//! proxies' and servers' statistics (`rate`, `rate_max`, `conn_rate`), updated by every thread.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the process started: the clock of expiry and rates.
pub fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One rate counter (HAProxy's `struct freq_ctr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreqCtr {
    /// Start of the current period, in ms.
    curr_tick: u64,
    curr: u64,
    prev: u64,
}

impl FreqCtr {
    /// Adds `inc` events at `now` (HAProxy's `update_freq_ctr_period`): rotates the buckets
    /// first when the current period is over, dropping both when two or more periods passed.
    pub fn add(&mut self, period: u64, now: u64, inc: u64) {
        let period = period.max(1);
        if now.saturating_sub(self.curr_tick) >= period {
            self.prev = self.curr;
            self.curr = 0;
            self.curr_tick += period;
            if now.saturating_sub(self.curr_tick) >= period {
                // At least two periods missed.
                self.prev = 0;
                self.curr_tick = now;
            }
        }
        self.curr += inc;
    }

    /// Makes `n` the count of a period starting at `now`, the previous one empty (HAProxy's
    /// `set table ... data.<rate> N`): the rate reads `n` through that period, then fades out.
    pub fn set(&mut self, now: u64, n: u64) {
        *self = FreqCtr {
            curr_tick: now,
            curr: n,
            prev: 0,
        };
    }

    /// Events counted in the current period so far (HAProxy's `curr_ctr`, what
    /// `sc_inc_gpc` returns when only the rate is stored).
    pub fn current(&self) -> u64 {
        self.curr
    }

    /// Events per `period` at `now` (HAProxy's `read_freq_ctr_period`).
    pub fn read(&self, period: u64, now: u64) -> u64 {
        let period = period.max(1);
        let (past, curr, total) = self.weighed(period, now);
        // Flapping correction at very low rates.
        if curr == 0 && past <= 1 {
            return past;
        }
        // In 64 bits when the total fits (always, for per-second rates of 32-bit counts).
        match u64::try_from(total) {
            Ok(t) => t / period,
            Err(_) => u64::try_from(total / u128::from(period)).unwrap_or(u64::MAX),
        }
    }

    /// The buckets as they stand at `now` (rotated if the period ended), and the events times
    /// `period`: the current bucket whole, the previous one for the part of the period still
    /// to come (HAProxy's `freq_ctr_total`).
    fn weighed(&self, period: u64, now: u64) -> (u64, u64, u128) {
        // `remain`: the part of the current period still to come (may go negative).
        let end = self.curr_tick.saturating_add(period);
        let (mut past, mut curr) = (self.prev, self.curr);
        let remain = if now <= end {
            end - now
        } else {
            // Past the first period: part of the last one may still count.
            let late = now - end;
            past = if late <= period { curr } else { 0 };
            curr = 0;
            period.saturating_sub(late)
        };
        // In 64 bits when the products fit (always for 32-bit counts), else in 128.
        let narrow = past
            .checked_mul(remain)
            .zip(curr.checked_mul(period))
            .and_then(|(a, b)| a.checked_add(b));
        let total = narrow.map_or_else(
            || u128::from(past) * u128::from(remain) + u128::from(curr) * u128::from(period),
            u128::from,
        );
        (past, curr, total)
    }

    /// How long until one more event keeps the rate within `limit` per `period`; `None`: at
    /// once (HAProxy's `next_event_delay_period` with nothing pending: at least 1 ms).
    pub fn wait_for_room(&self, period: u64, limit: u64, now: u64) -> Option<u64> {
        let period = period.max(1);
        let (_, _, total) = self.weighed(period, now);
        let allowed = u128::from(limit) * u128::from(period);
        if total < allowed {
            return None;
        }
        let wait = (total - allowed) / u128::from(limit.max(1));
        Some(u64::try_from(wait).unwrap_or(u64::MAX).max(1))
    }
}

/// Events per second, updated by any thread without a lock, with the highest rate seen
/// (HAProxy's `sess_per_sec` and `sps_max`). The current bucket and its start share one word
/// (start in ms of [`clock`], 32 bits, wrapping after 49 days; count, 32 bits), so an event
/// lands in exactly one bucket; the previous bucket is written just after a rotation, so a
/// read in that instant may miss it once.
#[derive(Debug, Default)]
pub struct SharedRate {
    /// `curr_tick << 32 | curr`.
    curr: AtomicU64,
    prev: AtomicU32,
    max: AtomicU64,
}

/// The period of [`SharedRate`], in ms.
const SECOND: u64 = 1000;

impl SharedRate {
    /// Counts one event now; returns the rate with it.
    pub fn add(&self) -> u64 {
        self.add_at(clock())
    }

    /// Counts one event at `now` (ms of [`clock`]: one reading for the counters that count
    /// the same event); returns the rate with it.
    pub fn add_at(&self, now: u64) -> u64 {
        let now32 = now as u32;
        let mut cur = self.curr.load(Ordering::Relaxed);
        loop {
            let (tick, count) = ((cur >> 32) as u32, cur as u32);
            let since = since(now32, tick);
            let (next, prev) = if cur == 0 {
                (pack(now32, 1), Some(0))
            } else if since < SECOND {
                (cur + 1, None)
            } else if since < 2 * SECOND {
                (pack(tick.wrapping_add(SECOND as u32), 1), Some(count))
            } else {
                (pack(now32, 1), Some(0))
            };
            match self
                .curr
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if let Some(p) = prev {
                        self.prev.store(p, Ordering::Relaxed);
                    }
                    let rate = self.read_at(now);
                    self.max.fetch_max(rate, Ordering::Relaxed);
                    return rate;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Events in the last second, as [`FreqCtr::read`] counts them.
    pub fn read(&self) -> u64 {
        self.read_at(clock())
    }

    fn read_at(&self, now: u64) -> u64 {
        self.snapshot(now).read(SECOND, now)
    }

    /// How long until one more event keeps the rate within `limit` per second (see
    /// [`FreqCtr::wait_for_room`]); `None`: at once.
    pub fn wait_for_room(&self, limit: u64) -> Option<std::time::Duration> {
        let now = clock();
        self.snapshot(now)
            .wait_for_room(SECOND, limit, now)
            .map(std::time::Duration::from_millis)
    }

    /// The counter as a [`FreqCtr`] at `now`, whose arithmetic reads it.
    fn snapshot(&self, now: u64) -> FreqCtr {
        let cur = self.curr.load(Ordering::Acquire);
        if cur == 0 {
            return FreqCtr::default();
        }
        let (tick, count) = ((cur >> 32) as u32, cur as u32);
        // The bucket's start on the 64-bit clock.
        let since = since(now as u32, tick);
        FreqCtr {
            curr_tick: now.saturating_sub(since),
            curr: u64::from(count),
            prev: u64::from(self.prev.load(Ordering::Relaxed)),
        }
    }

    /// The highest rate seen by [`Self::add`].
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Forgets the highest rate seen (`clear counters`): the next event sets it again.
    pub fn clear_max(&self) {
        self.max.store(0, Ordering::Relaxed);
    }
}

/// Milliseconds from `tick` to `now` on the 32-bit clock (wrapping every 49 days); 0 when
/// `now` is before `tick`: another thread read the clock after this one and started the
/// bucket first, and this event belongs to it.
fn since(now: u32, tick: u32) -> u64 {
    u64::try_from(now.wrapping_sub(tick).cast_signed()).unwrap_or(0)
}

fn pack(tick: u32, count: u32) -> u64 {
    (u64::from(tick) << 32) | u64::from(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arithmetic of HAProxy's `_freq_ctr_total_from_values` and
    /// `update_freq_ctr_period_slow`, step by step over a 10 s period.
    #[test]
    fn reads_as_haproxy() {
        let p = 10_000;
        let mut c = FreqCtr::default();
        // The first event starts the period at `now` (two periods missed since tick 0).
        c.add(p, 100_000, 1);
        assert_eq!(c.curr_tick, 100_000);
        for _ in 0..9 {
            c.add(p, 101_000, 1);
        }
        assert_eq!(c.read(p, 101_000), 10);
        // Next period, half way: previous 10 counts for half, current 4 in full.
        c.add(p, 110_000, 4);
        assert_eq!(c.curr_tick, 110_000);
        assert_eq!(c.prev, 10);
        assert_eq!(c.read(p, 115_000), 4 + 5);
        // 25% into the period: 10 * 0.75 + 4 = 11.5, truncated.
        assert_eq!(c.read(p, 112_500), 11);
        // No update for one period: current becomes past, read with what remains.
        assert_eq!(c.read(p, 122_500), 3);
        // Two periods later: nothing.
        assert_eq!(c.read(p, 130_001), 0);
        // An update after two idle periods drops both buckets.
        c.add(p, 140_000, 1);
        assert_eq!((c.prev, c.curr, c.curr_tick), (0, 1, 140_000));
    }

    #[test]
    fn low_rates_do_not_flap() {
        let p = 1000;
        let mut c = FreqCtr::default();
        c.add(p, 5000, 1);
        // Next period, no new event: the single past event reads 1 all along, not 1 -> 0.
        assert_eq!(c.read(p, 6100), 1);
        assert_eq!(c.read(p, 6900), 1);
        assert_eq!(c.read(p, 7001), 0);
    }

    #[test]
    fn a_shared_rate_reads_as_a_freq_ctr_and_keeps_its_highest() {
        let (s, mut f) = (SharedRate::default(), FreqCtr::default());
        let p = SECOND;
        // Events at 5.0 s .. 5.9 s, then 6.2 s .. 6.5 s, then nothing until 9 s.
        let times: Vec<u64> = (0..10)
            .map(|i| 5000 + i * 100)
            .chain((0..4).map(|i| 6200 + i * 100))
            .collect();
        for &t in &times {
            let rate = s.add_at(t);
            f.add(p, t, 1);
            assert_eq!(rate, f.read(p, t), "at {t} ms");
        }
        for t in [6500, 6700, 6999, 7001, 7500, 8100, 9000] {
            assert_eq!(s.read_at(t), f.read(p, t), "at {t} ms");
        }
        assert_eq!(s.max(), 10);
        assert_eq!(s.read_at(9000), 0);
        // After two idle periods the next event starts afresh.
        assert_eq!(s.add_at(9000), 1);
        assert_eq!(s.max(), 10);
    }

    /// A thread that read the clock just before another one started a new bucket counts in
    /// that bucket, not as if two periods had passed (which would drop both buckets).
    #[test]
    fn an_event_timed_just_before_the_buckets_start_counts_in_it() {
        let s = SharedRate::default();
        for _ in 0..5 {
            s.add_at(5000);
        }
        s.add_at(6000);
        assert_eq!(s.add_at(5999), 5 + 2);
        assert_eq!(s.read_at(5999), 7);
    }

    #[test]
    fn a_shared_rate_counts_every_event_of_every_thread() {
        let s = std::sync::Arc::new(SharedRate::default());
        let now = clock();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add_at(now + 10);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.read_at(now + 10), 4000);
    }

    /// HAProxy's `next_event_delay`: the events over the limit, each worth `period / limit`.
    #[test]
    fn waits_for_room_as_haproxy() {
        let mut c = FreqCtr::default();
        for _ in 0..10 {
            c.add(1000, 5000, 1);
        }
        assert_eq!(c.wait_for_room(1000, 11, 5100), None);
        // Exactly at the limit: nothing over it, so the least wait, 1 ms.
        assert_eq!(c.wait_for_room(1000, 10, 5100), Some(1));
        assert_eq!(c.wait_for_room(1000, 5, 5100), Some(1000));
        // Half a period later the previous 10 weigh 5: room for the limit of 10.
        assert_eq!(c.wait_for_room(1000, 10, 6500), None);
        assert_eq!(c.wait_for_room(1000, 4, 6500), Some(250));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut c = FreqCtr::default();
        c.add(1000, 1000, u64::MAX / 2);
        c.add(1000, 2500, 1);
        assert!(c.read(1000, 2500) >= u64::MAX / 4);
    }
}
