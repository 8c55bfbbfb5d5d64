//! What the bench reads from `/proc`: whole-machine CPU time (`/proc/stat`, because sockmap
//! forwarding runs in softirq and kworkers, not in the proxy), a process's `VmRSS`, and listening
//! sockets (`/proc/net/tcp`, to know a proxy is up without connecting through it).

use std::path::PathBuf;

/// Errors reading or parsing a file the bench reads (`/proc`, callgrind's dumps).
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Parse { path: PathBuf, what: String },
}

/// Aggregate CPU time of the machine, in clock ticks (`USER_HZ`), from the `cpu` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every field of the line summed, except `guest`/`guest_nice` (already in user/nice).
    pub total: u64,
    /// `idle + iowait`: time no CPU was working.
    pub idle: u64,
}

impl CpuTimes {
    /// Ticks spent working (user, nice, system, irq, softirq, steal).
    pub fn busy(self) -> u64 {
        self.total - self.idle
    }

    /// Busy CPU seconds between `self` (earlier) and `later`.
    pub fn busy_seconds_until(self, later: CpuTimes) -> f64 {
        later.busy().saturating_sub(self.busy()) as f64 / clock_ticks_per_second()
    }
}

/// Parses the aggregate `cpu ` line of `/proc/stat` text.
pub fn parse_stat(text: &str) -> Result<CpuTimes, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("no aggregate 'cpu' line")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().map_err(|e| format!("field '{f}': {e}")))
        .collect::<Result<_, _>>()?;
    if fields.len() < 4 {
        return Err(format!("'cpu' line has {} fields, want >= 4", fields.len()));
    }
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Ok(CpuTimes { total, idle })
}

/// Reads `/proc/stat` now.
pub fn cpu_times() -> Result<CpuTimes, ProcError> {
    let path = PathBuf::from("/proc/stat");
    let text = read(&path)?;
    parse_stat(&text).map_err(|what| ProcError::Parse { path, what })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// `VmRSS` in KiB from `/proc/<pid>/status` text.
pub fn parse_vmrss_kib(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line (a kernel thread or a zombie?)")?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let n = words.next().ok_or("VmRSS without a value")?;
    match words.next() {
        Some("kB") => {}
        other => return Err(format!("VmRSS unit {other:?}, want kB")),
    }
    n.parse().map_err(|e| format!("VmRSS '{n}': {e}"))
}

/// Resident set of `pid` and all its descendants (nginx's workers are children of its master),
/// in KiB.
pub fn tree_rss_kib(pid: u32) -> Result<u64, ProcError> {
    let mut total = 0;
    for (path, text) in read_tree(pid, "status")? {
        total += parse_vmrss_kib(&text).map_err(|what| ProcError::Parse { path, what })?;
    }
    Ok(total)
}

/// `/proc/<p>/<file>` of `pid` and each of its descendants, with its path. A child that exited
/// between listing and reading is left out (it holds no memory and spends no CPU any more).
fn read_tree(pid: u32, file: &str) -> Result<Vec<(PathBuf, String)>, ProcError> {
    let mut out = Vec::new();
    for p in descendants_and_self(pid) {
        let path = PathBuf::from(format!("/proc/{p}/{file}"));
        match std::fs::read_to_string(&path) {
            Ok(t) => out.push((path, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && p != pid => {}
            Err(source) => return Err(ProcError::Read { path, source }),
        }
    }
    Ok(out)
}

/// A process's CPU time in seconds: in its own code (user) and in the kernel on its behalf
/// (system: its syscalls, and the TCP work they do inline).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcCpu {
    pub user: f64,
    pub system: f64,
}

impl ProcCpu {
    /// What was spent between `before` and `self`.
    #[must_use]
    pub fn since(self, before: ProcCpu) -> ProcCpu {
        ProcCpu {
            user: self.user - before.user,
            system: self.system - before.system,
        }
    }

    /// User and system together.
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

/// CPU time of `pid` and all its descendants, every thread.
pub fn tree_cpu(pid: u32) -> Result<ProcCpu, ProcError> {
    let (mut user, mut system) = (0, 0);
    for (path, text) in read_tree(pid, "stat")? {
        let (u, s) = parse_cpu_ticks(&text).ok_or_else(|| ProcError::Parse {
            path,
            what: "no utime/stime fields".into(),
        })?;
        user += u;
        system += s;
    }
    let hz = clock_ticks_per_second();
    Ok(ProcCpu {
        user: user as f64 / hz,
        system: system as f64 / hz,
    })
}

/// `(utime, stime)` in `/proc/<pid>/stat` text, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime.
    let mut words = after.split_whitespace().skip(11);
    let utime: u64 = words.next()?.parse().ok()?;
    let stime: u64 = words.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `pid` followed by its descendants, found through `/proc/*/stat` parent ids.
pub fn descendants_and_self(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(pp) = parse_ppid(&stat) {
                    parents.push((p, pp));
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The parent pid in `/proc/<pid>/stat` text (the field after the parenthesised command, which
/// may itself contain spaces and parentheses).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut words = after.split_whitespace();
    words.next()?; // state
    words.next()?.parse().ok()
}

/// Whether `/proc/net/tcp` text shows a socket listening on `127.0.0.1:port`.
pub fn is_listening(proc_net_tcp: &str, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    proc_net_tcp.lines().skip(1).any(|l| {
        let mut w = l.split_whitespace();
        let (_, local, _, state) = (w.next(), w.next(), w.next(), w.next());
        local == Some(want.as_str()) && state == Some("0A")
    })
}

/// Reads `/proc/net/tcp` and checks [`is_listening`].
pub fn listening_now(port: u16) -> Result<bool, ProcError> {
    let path = PathBuf::from("/proc/net/tcp");
    Ok(is_listening(&read(&path)?, port))
}

fn read(path: &std::path::Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line() {
        let text = "cpu  100 5 50 1000 20 3 7 2 9 1\ncpu0 50 2 25 500 10 1 3 1 0 0\nintr 1 2\n";
        let t = parse_stat(text).unwrap();
        assert_eq!(t.total, 100 + 5 + 50 + 1000 + 20 + 3 + 7 + 2);
        assert_eq!(t.idle, 1020);
        assert_eq!(t.busy(), 167);
        // Old kernels: only four fields.
        let t = parse_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!((t.total, t.idle), (10, 4));
        assert!(parse_stat("cpu0 1 2 3 4\n").is_err());
        assert!(parse_stat("cpu 1 2 x 4\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn cpu_ticks_of_a_stat_line() {
        let stat = "4242 (lb (x) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 170 35 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some((170, 35)));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3"), None);
    }

    #[test]
    fn busy_seconds_never_negative() {
        let a = CpuTimes {
            total: 1000,
            idle: 500,
        };
        let b = CpuTimes {
            total: 1100,
            idle: 550,
        };
        assert!(a.busy_seconds_until(b) > 0.0);
        assert!(b.busy_seconds_until(a).abs() < 1e-12);
    }

    #[test]
    fn real_proc_stat_parses() {
        let t = cpu_times().unwrap();
        assert!(t.total >= t.idle);
    }

    #[test]
    fn vmrss() {
        let s = "Name:\tlb\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_kib(s), Ok(4242));
        assert!(parse_vmrss_kib("Name:\tkthreadd\n").is_err());
        assert!(parse_vmrss_kib("VmRSS:\t 12 MB\n").is_err());
        assert!(parse_vmrss_kib("VmRSS:\t x kB\n").is_err());
        let me = tree_rss_kib(std::process::id()).unwrap();
        assert!(me > 0);
    }

    #[test]
    fn ppid_survives_odd_command_names() {
        assert_eq!(parse_ppid("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("1 (systemd) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn listening_sockets() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
                    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n   \
                    1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000\n";
        assert!(is_listening(text, 8080));
        assert!(!is_listening(text, 8081)); // established, not listening
        assert!(!is_listening(text, 80));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listening_now(l.local_addr().unwrap().port()).unwrap());
    }
}
