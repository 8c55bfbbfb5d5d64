//! `cpu-map [auto:]GROUP[/THREADS] CPUS...` (global): which CPUs each worker thread may run on,
//! as HAProxy pins its threads. lb has one thread group: `GROUP` must take in group 1 (a line
//! for other groups only is ignored with a warning, as HAProxy ignores groups above
//! `thread-groups`), and a lone group means all its threads (`1` is `1/all`). Thread and group
//! sets are `all`, `odd`, `even`, `N`, `N-M` or `N-` (up to 64); CPU sets are `N`, `N-M` or
//! `N-`, comma-separated or as more arguments. With `auto:` the threads (ascending) take the
//! CPUs (ascending) one each, and both sets must have the same size; without it every thread
//! of the set may run on every CPU of the set. A later line wins where it overlaps an earlier
//! one. Threads are 1-based here, as in HAProxy (lb's thread 0 is HAProxy's thread 1).

/// The highest thread number a set can name (HAProxy's `LONGBITS`).
pub const MAX_THREAD: usize = 64;
/// The highest CPU a set can name (`CPU_SETSIZE - 1`).
pub const MAX_CPU: usize = 1023;

/// One `cpu-map` line, resolved: the CPUs of each thread it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuMap {
    /// (1-based thread, its CPUs ascending).
    pub threads: Vec<(usize, Vec<usize>)>,
}

/// The CPUs worker thread `thread` (1-based) is pinned to by `maps` (the last line naming it
/// wins); `None`: not pinned.
#[must_use]
pub fn cpus_of(maps: &[CpuMap], thread: usize) -> Option<&[usize]> {
    maps.iter()
        .rev()
        .find_map(|m| m.threads.iter().find(|(t, _)| *t == thread))
        .map(|(_, cpus)| cpus.as_slice())
}

/// What a `cpu-map` line asks: `Ok(None)` for a line about other thread groups only (ignored,
/// with a warning from the caller).
pub fn parse(args: &[String]) -> Result<Option<CpuMap>, String> {
    let Some((first, cpu_words)) = args.split_first() else {
        return Err("expects [auto:]<thread-group>[/<thread-set>] <cpu-set>...".to_owned());
    };
    if cpu_words.is_empty() {
        return Err(format!("'{first}' needs a CPU set after it"));
    }
    let (auto, sets) = match first.strip_prefix("auto:") {
        Some(rest) => (true, rest),
        None => (false, first.as_str()),
    };
    let (groups, threads) = match sets.split_once('/') {
        Some((g, t)) => (set(g, 1, MAX_THREAD, "thread group")?, Some(t)),
        None => (set(sets, 1, MAX_THREAD, "thread group")?, None),
    };
    let threads = match threads {
        Some(t) => set(t, 1, MAX_THREAD, "thread")?,
        None => (1..=MAX_THREAD).collect(),
    };
    let mut cpus = Vec::new();
    for w in cpu_words {
        for part in w.split(',').filter(|p| !p.is_empty()) {
            cpus.extend(set(part, 0, MAX_CPU, "CPU")?);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err("empty CPU set".to_owned());
    }
    if !groups.contains(&1) {
        return Ok(None);
    }
    let threads = if auto {
        if threads.len() != cpus.len() {
            return Err(format!(
                "auto: the thread set and the CPU set must have the same size ({} threads, {} \
                 CPUs)",
                threads.len(),
                cpus.len()
            ));
        }
        threads
            .into_iter()
            .zip(cpus)
            .map(|(t, c)| (t, vec![c]))
            .collect()
    } else {
        threads.into_iter().map(|t| (t, cpus.clone())).collect()
    };
    Ok(Some(CpuMap { threads }))
}

/// `all`, `odd`, `even`, `N`, `N-M`, `N-` within `low..=high`, ascending.
fn set(word: &str, low: usize, high: usize, what: &str) -> Result<Vec<usize>, String> {
    let num = |s: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| format!("invalid {what} '{s}' in '{word}' (expected {low} to {high})"))
    };
    let range = match word {
        "all" => (low..=high).collect(),
        "odd" => (low..=high).filter(|n| n % 2 == 1).collect(),
        "even" => (low..=high).filter(|n| n % 2 == 0).collect(),
        _ => match word.split_once('-') {
            None => vec![num(word)?],
            Some((a, "")) => (num(a)?..=high).collect(),
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!(
                        "invalid {what} range '{word}' (the first is higher)"
                    ));
                }
                (a..=b).collect()
            }
        },
    };
    Ok(range)
}

/// Pins the calling thread to `cpus` (`sched_setaffinity`; CPUs past [`MAX_CPU`] are left
/// out).
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|c| **c <= MAX_CPU) {
        // SAFETY: `c` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut mask) };
    }
    // SAFETY: `mask` is a valid cpu_set_t of the size passed; 0 is the calling thread.
    let rc = unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const mask)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs the calling thread may run on now (`sched_getaffinity`).
pub fn current_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is a valid cpu_set_t of the size passed; 0 is the calling thread.
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut mask)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `c` is below CPU_SETSIZE.
    Ok((0..=MAX_CPU)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &mask) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Option<CpuMap>, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&words)
    }

    fn map(line: &str) -> Vec<(usize, Vec<usize>)> {
        p(line).unwrap().unwrap().threads
    }

    #[test]
    fn haproxys_examples() {
        let one_each = vec![(1, vec![0]), (2, vec![1]), (3, vec![2]), (4, vec![3])];
        for line in [
            "auto:1/1-4 0-3",
            "auto:1/1-4 0-1 2-3",
            "auto:1/1-4 3 2 1 0",
            "auto:1/1-4 3,2,1,0",
        ] {
            assert_eq!(map(line), one_each, "{line}");
        }
        let all = map("1/all 0-3");
        assert_eq!(all.len(), 64);
        assert!(all.iter().all(|(_, c)| *c == [0, 1, 2, 3]));
        assert_eq!(
            map("1 0-1"),
            map("1/all 0-1"),
            "a lone group is all its threads"
        );
        assert_eq!(map("1/1- 0-").len(), 64);
        assert_eq!(map("1/1- 0-")[0].1.len(), 1024);
        assert_eq!(map("auto:1/all 0-63")[63], (64, vec![63]));
        let even = map("auto:1/even 0-31");
        assert_eq!((even[0].clone(), even.len()), ((2, vec![0]), 32));
        assert_eq!(map("auto:1/odd 32-63")[0], (1, vec![32]));
    }

    #[test]
    fn bad_lines_say_why_and_other_groups_are_left() {
        let e = p("auto:1/1-4 0").unwrap_err();
        assert!(e.contains("same size (4 threads, 1 CPUs)"), "{e}");
        assert!(p("auto:1/1 0-3").unwrap_err().contains("same size"));
        assert!(p("1/65 0").unwrap_err().contains("invalid thread '65'"));
        assert!(p("1/1 1024").unwrap_err().contains("invalid CPU '1024'"));
        assert!(p("1/4-2 0").unwrap_err().contains("the first is higher"));
        assert!(p("1/1").unwrap_err().contains("needs a CPU set"));
        assert!(p("x 0").unwrap_err().contains("invalid thread group 'x'"));
        assert_eq!(
            p("2/1-4 4-7").unwrap(),
            None,
            "thread group 2 does not exist"
        );
    }

    #[test]
    fn the_last_line_wins_where_lines_overlap() {
        let maps = vec![map_of("1/all 0-3"), map_of("1/2 1")];
        assert_eq!(cpus_of(&maps, 1), Some(&[0, 1, 2, 3][..]));
        assert_eq!(cpus_of(&maps, 2), Some(&[1][..]));
        assert_eq!(cpus_of(&[], 1), None);
    }

    fn map_of(line: &str) -> CpuMap {
        p(line).unwrap().unwrap()
    }

    #[test]
    fn pinning_the_calling_thread_and_back() {
        std::thread::spawn(|| {
            let all = current_cpus().unwrap();
            pin_current_thread(&all[..1]).unwrap();
            assert_eq!(current_cpus().unwrap(), all[..1]);
            pin_current_thread(&all).unwrap();
            assert_eq!(current_cpus().unwrap(), all);
        })
        .join()
        .unwrap();
    }
}
