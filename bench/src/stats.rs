//! Summaries of repeated measurements: medians across repetitions and the ratios the report
//! compares (lb over HAProxy, nginx and direct).

/// The median of `values`, ignoring NaN; the mean of the two middle values for an even count.
/// `None` when there is nothing to summarise.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    })
}

/// `a / b`, or `None` when either is missing or `b` is zero (a ratio to nothing means nothing).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// The median of `a[i] / b[i]`: repetition `i` of two targets ran back to back, so each pair
/// shares the machine's state of the moment, and the median of their ratios does not move
/// with a machine that speeds up or slows down during the run the way a ratio of medians does.
/// `None` unless both have the same number (> 0) of repetitions.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let each: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(&x, &y)| ratio(Some(x), Some(y)))
        .collect();
    if each.len() != a.len() {
        return None;
    }
    median(&each)
}

/// Smallest and largest of `values` (NaN ignored), to show the spread beside a median.
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let mut it = values.iter().copied().filter(|x| !x.is_nan());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
}

/// Bytes over seconds as Gbit/s (decimal gigabits, as network speeds are quoted).
pub fn gbit_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return f64::NAN;
    }
    bytes as f64 * 8.0 / seconds / 1e9
}

/// CPU seconds spent per GiB moved.
pub fn cpu_s_per_gib(cpu_seconds: f64, bytes: u64) -> f64 {
    if bytes == 0 {
        return f64::NAN;
    }
    cpu_seconds / (bytes as f64 / f64::from(1u32 << 30))
}

/// RSS growth per connection in bytes; negative growth (the allocator returned memory) is 0.
pub fn rss_per_conn(before_kib: u64, after_kib: u64, conns: usize) -> f64 {
    if conns == 0 {
        return f64::NAN;
    }
    after_kib.saturating_sub(before_kib) as f64 * 1024.0 / conns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratio_follows_a_drifting_machine() {
        // A machine slowing down rep by rep, `a` 10 % ahead of `b` in every rep: both ways
        // say 1.1.
        let a = [110.0, 55.0, 33.0];
        let b = [100.0, 50.0, 30.0];
        let p = paired_ratio(&a, &b).unwrap();
        assert!((p - 1.1).abs() < 1e-9, "{p}");
        assert_eq!(ratio(median(&a), median(&b)), Some(1.1));
        let drifted = [30.0 * 1.1, 100.0 * 1.1, 50.0 * 1.1];
        assert!((paired_ratio(&drifted, &[30.0, 100.0, 50.0]).unwrap() - 1.1).abs() < 1e-9);
        // Even in two reps of three, but the machine slowed down between `a`'s and `b`'s
        // middle rep: the ratio of medians takes that drift for a 1.2 x difference.
        let (a, b) = ([100.0, 60.0, 30.0], [100.0, 50.0, 30.0]);
        assert_eq!(paired_ratio(&a, &b), Some(1.0));
        assert!((ratio(median(&a), median(&b)).unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(paired_ratio(&a, &b[..2]), None, "unpaired");
        assert_eq!(paired_ratio(&[], &[]), None);
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None, "a ratio to nothing");
    }

    #[test]
    fn median_odd_even_empty_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[f64::NAN, 5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[-1.0, -3.0, -2.0]), Some(-2.0));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(15.0), Some(10.0)), Some(1.5));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(f64::NAN), Some(1.0)), None);
        assert_eq!(ratio(Some(0.0), Some(4.0)), Some(0.0));
    }

    #[test]
    fn spread() {
        assert_eq!(range(&[2.0, 9.0, f64::NAN, -1.0]), Some((-1.0, 9.0)));
        assert_eq!(range(&[]), None);
    }

    #[test]
    fn units() {
        // 1 GB in one second is 8 Gbit/s.
        assert!((gbit_per_s(1_000_000_000, 1.0) - 8.0).abs() < 1e-9);
        assert!(gbit_per_s(1, 0.0).is_nan());
        assert!((cpu_s_per_gib(3.0, 2 << 30) - 1.5).abs() < 1e-9);
        assert!(cpu_s_per_gib(1.0, 0).is_nan());
        assert!((rss_per_conn(1000, 1010, 10) - 1024.0).abs() < 1e-9);
        assert!(rss_per_conn(1010, 1000, 10).abs() < 1e-12);
        assert!(rss_per_conn(1, 2, 0).is_nan());
    }
}
