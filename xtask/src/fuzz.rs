//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` (`cargo +nightly fuzz build`)
//! and runs each for a while. A target's corpus grows in `fuzz/corpus/TARGET` and starts from
//! the seeds kept in `fuzz/seeds/TARGET` (with `fuzz/dicts/TARGET.dict` when there is one). A
//! crash, a hang or a blow-up stops that target with the input saved under
//! `fuzz/artifacts/TARGET/` and named, and the run fails. `cargo xtask test` runs every target
//! for a short slice ([`SMOKE_SECS`]).
//!
//! Built without a sanitizer: the parsers are safe Rust, where address sanitizing finds nothing
//! more and halves the executions; debug assertions and overflow checks stay on (cargo fuzz's
//! default), so an overflow is a crash.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, setup};

/// Every fuzz target (a `[[bin]]` of `fuzz/Cargo.toml`), in the order they run.
pub const TARGETS: &[&str] = &[
    "config",
    "cli_parse",
    "cli_session",
    "stats_http",
    "dns_answer",
    "agent_answer",
    "proxy_header",
    "client_hello",
];

/// Seconds per target of `cargo xtask fuzz` without `--time`.
pub const DEFAULT_SECS: u64 = 120;
/// Seconds per target in `cargo xtask test`: enough to replay the corpus and try some new
/// inputs; all targets stay well under a minute.
pub const SMOKE_SECS: u64 = 4;
/// An input running longer than this (wall clock) is a hang (libFuzzer's `-timeout`): generous,
/// as a fuzzer sharing a loaded machine may wait long for a core. The stateful targets catch a
/// future that never ends on their own, at once (a paused tokio clock).
const INPUT_TIMEOUT_SECS: u64 = 30;
/// Memory a target may use before libFuzzer calls it a blow-up.
const RSS_LIMIT_MB: u64 = 2048;

/// What libFuzzer said last about a run: its final `#N DONE cov: ... ft: ... corp: N/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs executed.
    pub execs: u64,
    /// Coverage counters hit (libFuzzer's `cov:`: edges of the instrumented code).
    pub cov: u64,
    /// Features (`ft:`: edges with hit counts, comparisons).
    pub ft: u64,
    /// Inputs in the corpus.
    pub corpus: u64,
}

impl Stats {
    /// Reads a libFuzzer status line (`#12\tNEW    cov: 5 ft: 6 corp: 3/9b ...`); `None` for
    /// any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix('#')?;
        let execs = rest.split_whitespace().next()?.parse().ok()?;
        let field = |name: &str| -> Option<u64> {
            let mut words = line.split_whitespace();
            words.find(|w| *w == name)?;
            let value = words.next()?;
            value.split('/').next()?.parse().ok()
        };
        Some(Self {
            execs,
            cov: field("cov:")?,
            ft: field("ft:").unwrap_or(0),
            corpus: field("corp:").unwrap_or(0),
        })
    }
}

/// How one target's run ended.
#[derive(Debug)]
pub struct Run {
    pub target: &'static str,
    /// CPU time the target used (user + system).
    pub cpu: Duration,
    pub wall: Duration,
    pub stats: Option<Stats>,
    /// The input libFuzzer saved when it found a crash, a hang or a blow-up.
    pub artifact: Option<PathBuf>,
    /// The last lines of its output (shown when it failed).
    pub tail: Vec<String>,
    pub success: bool,
}

/// The file libFuzzer saved an input to, from its `Test unit written to PATH` line.
pub fn artifact_of(line: &str) -> Option<PathBuf> {
    line.split_once("Test unit written to ")
        .map(|(_, p)| PathBuf::from(p.trim()))
}

/// The targets named by `only` (all when `None`); an unknown name is an error listing them.
pub fn pick(only: Option<&str>) -> Result<Vec<&'static str>> {
    match only {
        None => Ok(TARGETS.to_vec()),
        Some(name) => match TARGETS.iter().find(|t| **t == name) {
            Some(t) => Ok(vec![*t]),
            None => bail!(
                "fuzz: no target `{name}`; the targets are: {}",
                TARGETS.join(", ")
            ),
        },
    }
}

/// `cargo xtask fuzz [--time S] [TARGET]`: setup, build, run each target for `secs` seconds
/// (its output shown as it comes), then one summary line per target.
pub fn fuzz(root: &Path, secs: u64, only: Option<&str>) -> Result<()> {
    let targets = pick(only)?;
    setup::setup(root)?;
    build(root)?;
    let mut runs = Vec::new();
    for t in targets {
        runs.push(run_target(root, t, secs, true)?);
    }
    report(&runs)
}

/// The suite's slice: build, then every target for [`SMOKE_SECS`] with only the summary shown.
pub fn smoke(root: &Path) -> Result<()> {
    build(root)?;
    let mut runs = Vec::new();
    for t in TARGETS {
        runs.push(run_target(root, t, SMOKE_SECS, false)?);
    }
    report(&runs)
}

/// Prints one line per run; an error naming every target that failed and its saved input.
fn report(runs: &[Run]) -> Result<()> {
    eprintln!("fuzz: summary");
    let mut failed = Vec::new();
    for r in runs {
        let stats = r.stats.as_ref().map_or_else(
            || "no status line".to_owned(),
            |s| {
                format!(
                    "{} execs, cov {} ft {}, corpus {}",
                    s.execs, s.cov, s.ft, s.corpus
                )
            },
        );
        eprintln!(
            "  {:<14} {:>7.1} CPU-s {:>7.1} s  {stats}  {}",
            r.target,
            r.cpu.as_secs_f64(),
            r.wall.as_secs_f64(),
            if r.success { "ok" } else { "FAILED" }
        );
        if !r.success {
            for l in &r.tail {
                eprintln!("    | {l}");
            }
            let what = match &r.artifact {
                Some(a) => format!(
                    "{}: input saved as {}; reproduce: {} {}; minimize: (cd fuzz && cargo +nightly \
                     fuzz tmin -s none {} {})",
                    r.target,
                    a.display(),
                    binary(&fuzz_dir(&cmd::workspace_root()), r.target).display(),
                    a.display(),
                    r.target,
                    a.display()
                ),
                None => format!("{}: failed without saving an input (see above)", r.target),
            };
            failed.push(what);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz: {}", failed.join("\n"))
    }
}

fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("fuzz")
}

/// Where cargo fuzz puts a target's binary (built for the host's triple, its default).
fn binary(fuzz: &Path, target: &str) -> PathBuf {
    fuzz.join("target")
        .join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .join("release")
        .join(target)
}

/// Builds every target. `AYA_BUILD_SKIP=1`: the parsers need no eBPF program, and lb-user's
/// build script would otherwise build one under the fuzzing flags.
fn build(root: &Path) -> Result<()> {
    let mut c = cmd::cargo(&fuzz_dir(root));
    c.env("AYA_BUILD_SKIP", "1")
        .args(["+nightly", "fuzz", "build", "--sanitizer", "none"]);
    cmd::run("fuzz build", &mut c)
}

/// libFuzzer's arguments for one run of `target`.
pub fn libfuzzer_args(fuzz: &Path, target: &str, secs: u64) -> Vec<String> {
    let mut args = vec![
        fuzz.join("corpus").join(target).display().to_string(),
        fuzz.join("seeds").join(target).display().to_string(),
        format!("-max_total_time={secs}"),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!(
            "-artifact_prefix={}/",
            fuzz.join("artifacts").join(target).display()
        ),
        "-print_final_stats=1".to_owned(),
    ];
    let dict = fuzz.join("dicts").join(format!("{target}.dict"));
    if dict.is_file() {
        args.push(format!("-dict={}", dict.display()));
    }
    args
}

/// Runs one target for `secs` seconds; its output is read line by line (shown when `echo`).
fn run_target(root: &Path, target: &'static str, secs: u64, echo: bool) -> Result<Run> {
    let fuzz = fuzz_dir(root);
    for d in ["corpus", "artifacts"] {
        let dir = fuzz.join(d).join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut c = Command::new(binary(&fuzz, target));
    c.args(libfuzzer_args(&fuzz, target, secs))
        .current_dir(&fuzz)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("+ {}", cmd::show(&c));
    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut child = c
        .spawn()
        .with_context(|| format!("fuzz: could not start target {target}"))?;
    let mut stats = None;
    let mut artifact = None;
    let mut tail: Vec<String> = Vec::new();
    let stderr = child.stderr.take().expect("stderr was piped");
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if echo {
            eprintln!("{line}");
        }
        if let Some(s) = Stats::parse(&line) {
            stats = Some(s);
        }
        if let Some(a) = artifact_of(&line) {
            artifact = Some(fuzz.join(a));
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("fuzz: waiting for target {target}"))?;
    Ok(Run {
        target,
        cpu: children_cpu().saturating_sub(cpu_before),
        wall: start.elapsed(),
        stats,
        artifact,
        tail,
        success: status.success(),
    })
}

/// User + system CPU time of every child this process has waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_of_the_fuzz_crate_is_listed() {
        let manifest = std::fs::read_to_string(cmd::workspace_root().join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "lb-fuzz")
            .collect();
        assert_eq!(bins, TARGETS);
        for t in TARGETS {
            let seeds = cmd::workspace_root().join("fuzz/seeds").join(t);
            let n = std::fs::read_dir(&seeds)
                .unwrap_or_else(|e| panic!("{}: {e}", seeds.display()))
                .count();
            assert!(n > 0, "{t} has no seeds");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            Stats::parse(
                "#1048576\tDONE   cov: 2345 ft: 9876 corp: 321/45Kb lim: 4096 exec/s: 3495 rss: 61Mb"
            ),
            Some(Stats {
                execs: 1_048_576,
                cov: 2345,
                ft: 9876,
                corpus: 321
            })
        );
        assert_eq!(
            Stats::parse("#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb"),
            Some(Stats {
                execs: 2,
                cov: 12,
                ft: 13,
                corpus: 1
            })
        );
        assert_eq!(Stats::parse("INFO: Seed: 1234"), None);
        assert_eq!(Stats::parse("#3 something else"), None);
    }

    #[test]
    fn artifact_lines() {
        assert_eq!(
            artifact_of("artifact_prefix='/r/fuzz/artifacts/config/'; Test unit written to /r/fuzz/artifacts/config/crash-0a1b"),
            Some(PathBuf::from("/r/fuzz/artifacts/config/crash-0a1b"))
        );
        assert_eq!(artifact_of("==1== ERROR: libFuzzer: deadly signal"), None);
    }

    #[test]
    fn targets_are_picked_by_name() {
        assert_eq!(pick(None).unwrap(), TARGETS);
        assert_eq!(pick(Some("dns_answer")).unwrap(), vec!["dns_answer"]);
        let e = pick(Some("dns")).unwrap_err().to_string();
        assert!(
            e.contains("no target `dns`") && e.contains("dns_answer"),
            "{e}"
        );
    }

    #[test]
    fn libfuzzer_gets_corpus_seeds_limits_and_artifacts() {
        let args = libfuzzer_args(Path::new("/r/fuzz"), "config", 7);
        assert_eq!(args[0], "/r/fuzz/corpus/config");
        assert_eq!(args[1], "/r/fuzz/seeds/config");
        assert!(args.contains(&"-max_total_time=7".to_owned()));
        assert!(args.contains(&"-timeout=30".to_owned()));
        assert!(args.contains(&"-artifact_prefix=/r/fuzz/artifacts/config/".to_owned()));
    }
}
