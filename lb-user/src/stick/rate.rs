//! HAProxy's `freq_ctr` over a period (`src/freq_ctr.c`): two buckets, the events of the
//! current period and of the previous one; a read counts the current bucket whole and the
//! previous one in proportion to the part of the period not yet elapsed. `conn_rate(10s)`
//! therefore reads as HAProxy's does, including its flapping correction at very low rates.
//! Times are milliseconds of [`super::clock`]; the caller serialises access (entry lock).

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

    /// Events counted in the current period so far (HAProxy's `curr_ctr`, what
    /// `sc_inc_gpc` returns when only the rate is stored).
    pub fn current(&self) -> u64 {
        self.curr
    }

    /// Events per `period` at `now` (HAProxy's `read_freq_ctr_period`).
    pub fn read(&self, period: u64, now: u64) -> u64 {
        let period = period.max(1);
        // `remain`: the part of the current period still to come (may go negative).
        let mut remain = i128::from(self.curr_tick) + i128::from(period) - i128::from(now);
        let (mut past, mut curr) = (self.prev, self.curr);
        if remain < 0 {
            // Past the first period: part of the last one may still count.
            remain += i128::from(period);
            past = if remain >= 0 { curr } else { 0 };
            curr = 0;
        }
        // Flapping correction at very low rates.
        if curr == 0 && past <= 1 {
            return past;
        }
        let remain = u128::try_from(remain.max(0)).unwrap_or(0);
        let total = u128::from(past) * remain + u128::from(curr) * u128::from(period);
        u64::try_from(total / u128::from(period)).unwrap_or(u64::MAX)
    }
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
    fn huge_counts_do_not_overflow() {
        let mut c = FreqCtr::default();
        c.add(1000, 1000, u64::MAX / 2);
        c.add(1000, 2500, 1);
        assert!(c.read(1000, 2500) >= u64::MAX / 4);
    }
}
