//! Syscalls a proxy makes per short connection (connect, 64 B, its 64 B answer, close, one
//! after the other): `strace -c -f` attached to the proxy's processes while they run. A count,
//! not a time; `clock_gettime` (vDSO, when strace sees it) is left out.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{load, procfs};

/// Syscalls per connection of the process tree `pid`, over `n` short connections to `addr`.
pub fn per_short_conn(pid: u32, addr: SocketAddr, n: usize) -> Result<f64, String> {
    let series = |n| {
        load::short_conns_in_series(addr, n, Instant::now() + load::SERIES_TIME)
            .map_err(|e| e.to_string())
    };
    series(load::SERIES_WARM_UP)?;
    let out = std::env::temp_dir().join(format!("lb-bench-strace-{}-{pid}", std::process::id()));
    let mut cmd = Command::new("strace");
    cmd.args(["-c", "-f", "-o"]).arg(&out);
    let pids = procfs::descendants_and_self(pid);
    for p in &pids {
        cmd.args(["-p", &p.to_string()]);
    }
    let mut strace = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("strace (Debian package strace): {e}"))?;
    // strace says on stderr when it is attached, once per process.
    let mut stderr = BufReader::new(strace.stderr.take().ok_or("strace: no stderr")?);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attached = 0;
    let mut line = String::new();
    while attached < pids.len() {
        line.clear();
        if stderr.read_line(&mut line).map_err(|e| e.to_string())? == 0 || Instant::now() > deadline
        {
            let _ = strace.kill();
            return Err(format!("strace did not attach: {line}"));
        }
        attached += usize::from(line.contains("attached"));
    }
    let run = series(n);
    // The proxy closes its side right after the client: let it finish the last one.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    run?;
    Ok(total_calls(&text) as f64 / n as f64)
}

/// The calls of a `strace -c` table (`% time  seconds  usecs/call  calls  [errors]  syscall`),
/// without its total and `clock_gettime`.
fn total_calls(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let name = *words.last()?;
            let calls = words.get(3)?.parse::<u64>().ok()?;
            (words.len() >= 5 && name != "total" && name != "clock_gettime").then_some(calls)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_skips_the_total_row_and_clock_gettime() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                     40.00    0.000400           1       400       200 accept4\n\
                     30.00    0.000300           1       300           read\n\
                     10.00    0.000100           1       100           clock_gettime\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    100.00    0.001000           1       800       200 total\n";
        assert_eq!(total_calls(text), 700);
    }
}
