//! User-space instructions a proxy executes per short connection (connect, 64 B, its 64 B
//! answer, close, one after the other): the proxy run under `valgrind --tool=callgrind`, its
//! counters zeroed after a warm-up and dumped after the counted connections. A count of the
//! proxy's own code and its libraries (not the kernel's): it does not move with the machine's
//! speed or load the way CPU time does, only by a few per cent with how the proxy's event-loop
//! turns fall (how many completions or events each turn finds).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::load;
use crate::procfs::ProcError;
use crate::targets::{self, Wrapper};

/// Errors counting a proxy's instructions.
#[derive(Debug, thiserror::Error)]
pub enum InstrError {
    #[error("`{cmd}` failed ({status}): {output}")]
    Control {
        cmd: String,
        status: String,
        output: String,
    },
    #[error("`{cmd}` did not finish in {secs} s")]
    ControlTimeout { cmd: String, secs: u64 },
    #[error("cannot run `{cmd}` (Debian package valgrind)")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A dump or its directory could not be read, or a dump could not be parsed.
    #[error(transparent)]
    File(#[from] ProcError),
    #[error("no callgrind dump of pid {pid} in {dir}")]
    NoDump { pid: u32, dir: PathBuf },
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

/// Start-up under callgrind: valgrind translates every block it runs; 2–6 s here for HAProxy
/// with instrumentation off, more on a machine busy with builds.
const READY_WITHIN: Duration = Duration::from_mins(1);

/// Time for one `callgrind_control` command (it reaches valgrind's gdbserver through `vgdb`).
const CONTROL_TIME: Duration = Duration::from_secs(30);

/// The command a target is started under, writing its dumps to `dir`. Instrumentation starts
/// off (start-up runs three times faster) and is switched on before the warm-up. No
/// `--trace-children`: that follows `exec`, and no target execs; the processes it forks stay
/// under valgrind anyway, but only the one it started can be controlled (see
/// [`Wrapper::single_process`]).
pub fn valgrind_command(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()),
        vgdb_prefix(dir),
    ]
}

/// Where valgrind's gdbserver puts its FIFOs, for `callgrind_control` to find them: in `dir`,
/// not `/tmp`, since a valgrind that is killed (as the bench kills its targets) leaves them.
fn vgdb_prefix(dir: &Path) -> String {
    format!("--vgdb-prefix={}/vgdb", dir.display())
}

/// The [`Wrapper`] for [`valgrind_command`]: nginx in one process, since `callgrind_control`
/// cannot reach forked workers (valgrind sets up its gdbserver only in the process it
/// started), and a generous start-up time.
pub fn wrapper<'a>(command: &'a [&'a str]) -> Wrapper<'a> {
    Wrapper {
        command,
        ready_within: READY_WITHIN,
        single_process: true,
    }
}

/// Instructions per connection of the proxy `pid` (running under [`valgrind_command`] with
/// dumps in `dir`), over `n` short connections to `addr`.
pub fn per_short_conn(pid: u32, dir: &Path, addr: SocketAddr, n: usize) -> Result<f64, InstrError> {
    control(dir, pid, "--instr=on")?;
    load::short_conns_in_series(
        addr,
        load::SERIES_WARM_UP,
        Instant::now() + load::SERIES_TIME,
    )?;
    control(dir, pid, "--zero")?;
    load::short_conns_in_series(addr, n, Instant::now() + load::SERIES_TIME)?;
    // The proxy closes its side right after the client: let it finish the last one (if it did
    // not, at most one connection's close would be missing out of n).
    std::thread::sleep(Duration::from_millis(300));
    control(dir, pid, "--dump")?;
    let path = last_dump(dir, pid)?;
    let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let ir = total_ir(&text).map_err(|what| ProcError::Parse { path, what })?;
    Ok(ir as f64 / n as f64)
}

/// Runs `callgrind_control <action> <pid>` for a target started with [`valgrind_command`]`(dir)`,
/// bounded by [`CONTROL_TIME`].
fn control(dir: &Path, pid: u32, action: &str) -> Result<(), InstrError> {
    let shown = format!("callgrind_control {action} {pid}");
    let mut cmd = Command::new("callgrind_control");
    cmd.arg(vgdb_prefix(dir)).arg(action).arg(pid.to_string());
    // Its own process group (the script runs vgdb), killed whole when it is done or late, or
    // by the bench's cleanup.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InstrError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    let group = i32::try_from(child.id()).unwrap_or(i32::MAX);
    targets::remember_child(group);
    let deadline = Instant::now() + CONTROL_TIME;
    let finished = loop {
        match child.try_wait() {
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => break false,
            Ok(Some(_)) => break true,
        }
    };
    // SAFETY: kill has no memory-safety preconditions; the group is our child's.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    // A few lines of output: they fit in the pipes, so the script never waited on them.
    let out = child.wait_with_output();
    targets::forget_child(group);
    let out = out.map_err(|source| InstrError::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    // It exits 0 even when no callgrind process has that pid, saying "Error: ... not detected".
    if !finished {
        Err(InstrError::ControlTimeout {
            cmd: shown,
            secs: CONTROL_TIME.as_secs(),
        })
    } else if out.status.success() && !output.contains("Error") {
        Ok(())
    } else {
        Err(InstrError::Control {
            cmd: shown,
            status: out.status.to_string(),
            output: output.trim().to_string(),
        })
    }
}

/// The newest dump of `pid` in `dir`: `callgrind.out.<pid>.<part>`, the highest part.
fn last_dump(dir: &Path, pid: u32) -> Result<PathBuf, InstrError> {
    let prefix = format!("callgrind.out.{pid}.");
    let entries = std::fs::read_dir(dir).map_err(|source| ProcError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let part = name.to_str()?.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((part, e.path()))
        })
        .max_by_key(|(part, _)| *part)
        .map(|(_, path)| path)
        .ok_or_else(|| InstrError::NoDump {
            pid,
            dir: dir.to_path_buf(),
        })
}

/// The `Ir` (instructions executed) total of a callgrind dump: its `totals:` line (the sum of
/// every cost in the file, what `callgrind_annotate` reports), else its `summary:` line, the
/// column that `events:` names `Ir`.
pub fn total_ir(text: &str) -> Result<u64, String> {
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix(key))
            .next_back()
            .map(str::trim)
    };
    let events = field("events:").ok_or("no 'events:' line (not a callgrind dump?)")?;
    let column = events
        .split_whitespace()
        .position(|e| e == "Ir")
        .ok_or_else(|| format!("no Ir among the events '{events}'"))?;
    let (key, costs) = match (field("totals:"), field("summary:")) {
        (Some(t), _) => ("totals", t),
        (None, Some(s)) => ("summary", s),
        (None, None) => {
            return Err("no 'totals:' or 'summary:' line (a dump cut short?)".into());
        }
    };
    let cost = costs
        .split_whitespace()
        .nth(column)
        .ok_or_else(|| format!("'{key}: {costs}' has no column {} for Ir", column + 1))?;
    cost.parse::<u64>()
        .map_err(|e| format!("'{key}:' Ir '{cost}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
                        pid: 12158\ncmd:  haproxy -db -f h.cfg\npart: 1\n\n\
                        positions: line\nevents: Ir\nsummary: 11670110\n\n\
                        ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6\nfn=(2396) socket\n\
                        120 1600\n+2 400\n\ntotals: 11673614\n";

    #[test]
    fn totals_win_over_summary() {
        assert_eq!(total_ir(DUMP), Ok(11_673_614));
    }

    #[test]
    fn summary_when_there_is_no_totals_line() {
        let text = DUMP.replace("totals: 11673614\n", "");
        assert_eq!(total_ir(&text), Ok(11_670_110));
    }

    #[test]
    fn ir_is_found_among_several_events() {
        let text = "events: Dr Ir Dw\nsummary: 5 7 9\ntotals: 6 8 10\n";
        assert_eq!(total_ir(text), Ok(8));
    }

    #[test]
    fn bad_dumps_say_what_is_wrong() {
        let err = |t: &str| total_ir(t).unwrap_err();
        assert!(err("").contains("no 'events:' line"), "{}", err(""));
        assert!(err("events: Dr Dw\ntotals: 1 2\n").contains("no Ir among the events 'Dr Dw'"));
        assert!(err("events: Ir\n").contains("no 'totals:' or 'summary:' line"));
        assert!(err("events: Dr Ir\ntotals: 5\n").contains("no column 2 for Ir"));
        assert!(err("events: Ir\ntotals: 12x\n").contains("'totals:' Ir '12x'"));
        assert!(err("events: Ir\ntotals: -4\n").contains("'totals:' Ir '-4'"));
    }

    #[test]
    fn valgrind_writes_a_dump_per_pid_into_dir() {
        let c = valgrind_command(Path::new("/tmp/x"));
        assert_eq!(c[..2], ["valgrind", "--tool=callgrind"]);
        assert!(c.contains(&"--callgrind-out-file=/tmp/x/callgrind.out.%p".to_string()));
        assert!(c.contains(&"--vgdb-prefix=/tmp/x/vgdb".to_string()));
        assert!(!c.iter().any(|a| a.starts_with("--trace-children")));
    }

    #[test]
    fn the_newest_dump_part_is_read() {
        let dir = std::env::temp_dir().join(format!("bench-instr-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "callgrind.out.42",
            "callgrind.out.42.2",
            "callgrind.out.42.10",
            "callgrind.out.420.11",
            "callgrind.out.43.12",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(
            last_dump(&dir, 42).unwrap(),
            dir.join("callgrind.out.42.10")
        );
        assert!(last_dump(&dir, 7)
            .unwrap_err()
            .to_string()
            .starts_with("no callgrind dump of pid 7"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
