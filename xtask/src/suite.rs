//! `cargo xtask test`: the whole suite as CI runs it — setup, fmt, clippy, release build, tests,
//! and a short slice of every fuzz target — stopping at the first failing step (but running every
//! test binary), timing each, and ending with one totals line and the names of the failed tests.
//!
//! Each step starts and ends by showing the free disk space, and a failure says when the disk was
//! nearly full. On a fresh clone (the suite's first run there, with no release build in `target/`,
//! as on CI's clean clone) or with `CI` set, the suite also keeps its disk use low, since it builds
//! everything once on a disk that may be small: no incremental caches, and each profile's build is
//! removed once no later step reads it (see [`Lean`]). A developer's `target/` that holds a release
//! build (every earlier run of the suite left one) is never removed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, fuzz, setup};

/// What libtest's `test result:` lines add up to over all test binaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// How many `test result:` lines were seen (test binaries and doc-test runs).
    pub runs: u64,
    /// Names of the failed tests, from libtest's `test NAME ... FAILED` lines.
    pub failed_names: Vec<String>,
}

impl Totals {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line or one
    /// `test NAME ... FAILED` line; others are ignored.
    pub fn add_line(&mut self, line: &str) {
        if let Some(name) = line
            .trim()
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            self.failed_names.push(name.to_string());
            return;
        }
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let Some((_, counts)) = rest.split_once(". ") else {
            return;
        };
        let mut seen = false;
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => continue,
            }
            seen = true;
        }
        if seen {
            self.runs += 1;
        }
    }
}

/// The arguments of the `cargo test` step. `extra` is what came after `cargo xtask test --`:
/// cargo test's own arguments (filters, `-p`), and after a further `--`, the test binaries'.
/// `--workspace` is dropped when `extra` picks packages, and `--test-threads=2` (two cores here)
/// when `extra` sets its own. `--no-fail-fast`: every test binary runs, so one failure does not
/// hide the others.
pub fn cargo_test_args(extra: &[String]) -> Vec<String> {
    let (for_cargo, for_tests) = match extra.iter().position(|a| a == "--") {
        Some(i) => (&extra[..i], &extra[i + 1..]),
        None => (extra, &[][..]),
    };
    let picks_package = for_cargo.iter().any(|a| {
        a == "-p"
            || a == "--package"
            || a.starts_with("--package=")
            || (a.starts_with("-p") && a.len() > 2)
    });
    let mut args: Vec<String> = vec!["test".into(), "--release".into(), "--no-fail-fast".into()];
    if !picks_package {
        args.push("--workspace".into());
    }
    args.extend(for_cargo.iter().cloned());
    args.push("--".into());
    if !for_tests.iter().any(|a| a.starts_with("--test-threads")) {
        args.push("--test-threads=2".into());
    }
    args.extend(for_tests.iter().cloned());
    args
}

/// Runs the suite; `Err` names the failing step.
pub fn test(root: &Path, extra: &[String]) -> Result<()> {
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut totals = Totals::default();
    let result = steps(root, extra, &mut timings, &mut totals);
    eprintln!("xtask test: step times");
    for (name, took) in &timings {
        eprintln!("  {name:<8} {:>7.1}s", took.as_secs_f64());
    }
    if totals.runs > 0 {
        // The plain closing line, summed over every test binary (cargo prints one per binary).
        println!(
            "tests: {} passed, {} failed, {} skipped",
            totals.passed, totals.failed, totals.ignored
        );
        for name in &totals.failed_names {
            println!("failed: {name}");
        }
    }
    result
}

/// Below this much free space a failing step is said to have met a nearly full disk: a linker
/// writes hundreds of MiB at once, and what a failed write had written is often gone again by the
/// time the step's failure is reported.
const LOW_DISK: u64 = 2 << 30;

/// The space left for us on the disk holding `dir` (statvfs's `f_bavail`, df's "Available": here
/// the blocks reserved for others are not root's either); `None` when it cannot be read.
fn free_space(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is NUL-terminated and statvfs only writes the struct it is given.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &raw mut st) != 0 {
            return None;
        }
        st
    };
    // Both are 64-bit on the 64-bit Linux targets lb builds for.
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `disk: 41.3 GiB free` for a step's opening and closing lines, and whether that is nearly full.
pub fn disk_note(free: Option<u64>) -> (String, bool) {
    match free {
        Some(b) => (
            format!("disk: {:.1} GiB free", b as f64 / f64::from(1u32 << 30)),
            b < LOW_DISK,
        ),
        None => ("disk: free space unknown".to_owned(), false),
    }
}

/// Whether the suite runs under CI: `CI` set to anything but empty, `0` or `false` (CI's runner
/// sets `CI=true`; so does every common CI service).
pub fn under_ci(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// How the suite spares the disk under CI, where it builds everything once on a fresh clone whose
/// disk may be small. Off on a developer's machine, whose `target/` is their build cache.
struct Lean {
    on: bool,
}

/// Whether the suite spares the disk: with `CI` set ([`under_ci`]), or on the suite's first run in
/// a `target/` with no release build yet (`fresh`): a clean clone, as CI's runner makes whether or
/// not it sets `CI`, where nothing in `target/` is anyone's cache yet (only xtask's own debug
/// build, which cargo redoes in seconds).
pub fn lean_disk(ci: Option<&str>, fresh: bool) -> bool {
    under_ci(ci) || fresh
}

impl Lean {
    /// `cargo` for one of the suite's builds. Under CI without incremental caches: every crate is
    /// compiled once, so the cache (some hundreds of MiB in `target/debug/incremental`) would
    /// never be read.
    fn cargo(&self, root: &Path) -> std::process::Command {
        let mut c = cmd::cargo(root);
        if self.on {
            c.env("CARGO_INCREMENTAL", "0");
        }
        c
    }

    /// Under CI, removes `dir`, a build that no later step reads (`why` says so), and tells how
    /// much that freed.
    fn prune(&self, root: &Path, dir: &Path, why: &str) -> Result<()> {
        if !self.on || !dir.exists() {
            return Ok(());
        }
        let before = free_space(root);
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        let freed = match (before, free_space(root)) {
            (Some(b), Some(a)) => format!(
                "{:.1} GiB",
                a.saturating_sub(b) as f64 / f64::from(1u32 << 30)
            ),
            _ => "an unknown amount".to_owned(),
        };
        eprintln!("ci: removed {} ({why}): {freed} freed", dir.display());
        Ok(())
    }
}

fn steps(
    root: &Path,
    extra: &[String],
    timings: &mut Vec<(&'static str, Duration)>,
    totals: &mut Totals,
) -> Result<()> {
    let target = cmd::target_dir(root);
    // A target/ where the suite ran before is a developer's cache even once a lean run removed
    // its builds: only the first run in a clone counts as fresh.
    let ran_here = target.join(".xtask-suite-ran");
    let lean = Lean {
        on: lean_disk(
            std::env::var("CI").ok().as_deref(),
            !target.join("release").exists() && !ran_here.exists(),
        ),
    };
    std::fs::create_dir_all(&target)
        .and_then(|()| std::fs::write(&ran_here, b""))
        .with_context(|| format!("writing {}", ran_here.display()))?;
    if lean.on {
        eprintln!(
            "xtask test: sparing the disk (CI set, or a fresh target/): no incremental caches, \
             and each build is removed once no later step reads it"
        );
    }
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| {
        eprintln!("==> {name} ({})", disk_note(free_space(root)).0);
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        timings.push((name, took));
        let (disk, low) = disk_note(free_space(root));
        match result {
            Ok(()) => {
                eprintln!("<== {name}: ok ({:.1}s, {disk})", took.as_secs_f64());
                Ok(())
            }
            Err(e) => {
                let full = if low {
                    "; the disk is nearly full: a write that found no space (\"No space left on \
                     device\") is the likely cause"
                } else {
                    ""
                };
                bail!(
                    "step `{name}` failed after {:.1}s ({disk}{full}): {e:#}",
                    took.as_secs_f64()
                )
            }
        }
    };
    step("setup", &mut || setup::setup(root))?;
    step("fmt", &mut || {
        cmd::run(
            "fmt",
            cmd::cargo(root).args(["fmt", "--all", "--", "--check"]),
        )
    })?;
    step("clippy", &mut || {
        cmd::run(
            "clippy",
            lean.cargo(root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        )
    })?;
    // Clippy is the only step on the debug profile: build and test use release, the fuzz targets
    // their own target directory. (The running xtask was built there too; Linux keeps a running
    // program's file until it exits.)
    lean.prune(
        root,
        &target.join("debug"),
        "only clippy reads the debug profile",
    )?;
    step("build", &mut || {
        cmd::run(
            "build",
            lean.cargo(root)
                .args(["build", "--release", "-p", "lb-user"]),
        )
    })?;
    step("test", &mut || {
        let mut c = lean.cargo(root);
        c.args(cargo_test_args(extra));
        let status = cmd::run_tee("test", &mut c, |line| totals.add_line(line))?;
        cmd::check("test", &c, status)
    })?;
    // A filter or a package picks some tests: the fuzz slice is part of the whole suite only.
    if extra.is_empty() {
        // The fuzz targets are a workspace of their own, built into fuzz/target; nothing after
        // the tests reads the release build.
        lean.prune(
            root,
            &target.join("release"),
            "the tests were its last reader; the fuzz targets build in fuzz/target",
        )?;
        step("fuzz", &mut || fuzz::smoke(root))
    } else {
        eprintln!("==> fuzz: skipped (`cargo xtask test` was given a filter)");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn default_test_command() {
        assert_eq!(
            cargo_test_args(&[]).join(" "),
            "test --release --no-fail-fast --workspace -- --test-threads=2"
        );
    }

    #[test]
    fn a_filter_goes_to_cargo_test() {
        assert_eq!(
            cargo_test_args(&strings(&["config"])).join(" "),
            "test --release --no-fail-fast --workspace config -- --test-threads=2"
        );
    }

    #[test]
    fn a_second_separator_reaches_the_test_binaries() {
        assert_eq!(
            cargo_test_args(&strings(&["-p", "lb-user", "--", "--nocapture"])).join(" "),
            "test --release --no-fail-fast -p lb-user -- --test-threads=2 --nocapture"
        );
        assert_eq!(
            cargo_test_args(&strings(&["--package=xtask", "--", "--test-threads=1"])).join(" "),
            "test --release --no-fail-fast --package=xtask -- --test-threads=1"
        );
        assert_eq!(
            cargo_test_args(&strings(&["-pxtask"])).join(" "),
            "test --release --no-fail-fast -pxtask -- --test-threads=2"
        );
    }

    #[test]
    fn disk_notes_say_when_the_disk_is_nearly_full() {
        assert_eq!(
            disk_note(Some(41 << 30)),
            ("disk: 41.0 GiB free".to_owned(), false)
        );
        assert_eq!(
            disk_note(Some(300 << 20)),
            ("disk: 0.3 GiB free".to_owned(), true)
        );
        assert!(!disk_note(Some(LOW_DISK)).1);
        assert_eq!(
            disk_note(None),
            ("disk: free space unknown".to_owned(), false)
        );
        let (note, _) = disk_note(free_space(&cmd::workspace_root()));
        assert!(note.ends_with("GiB free"), "{note}");
    }

    #[test]
    fn ci_is_told_by_its_variable() {
        assert!(under_ci(Some("true")));
        assert!(under_ci(Some("1")));
        for off in [None, Some(""), Some("0"), Some("false"), Some("FALSE")] {
            assert!(!under_ci(off), "{off:?}");
        }
    }

    #[test]
    fn a_fresh_target_spares_the_disk_with_or_without_ci() {
        assert!(lean_disk(None, true), "a clean clone, CI unset");
        assert!(lean_disk(Some("true"), false));
        assert!(
            !lean_disk(None, false),
            "a developer's target/ with a release build"
        );
        assert!(!lean_disk(Some("false"), false));
    }

    #[test]
    fn totals_add_up_test_result_lines() {
        let mut t = Totals::default();
        for line in [
            "running 3 tests",
            "test a ... ok",
            "test b::c ... FAILED",
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s",
            "   Doc-tests lb_user",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "test result: nonsense",
        ] {
            t.add_line(line);
        }
        assert_eq!(
            t,
            Totals {
                passed: 4,
                failed: 2,
                ignored: 1,
                runs: 3,
                failed_names: vec!["b::c".to_string()],
            }
        );
    }
}
