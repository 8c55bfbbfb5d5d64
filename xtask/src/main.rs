//! `cargo xtask`: lb's orchestration. Installs what the build needs (`setup`), builds `lb`, runs
//! it, runs the whole test suite as CI does, the fuzz targets, the chaos soak and the
//! benchmarks; every command it runs is printed first.

mod cmd;
mod fuzz;
mod setup;
mod soak;
mod suite;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, build, run, test, fuzz, soak and benchmark lb."
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
enum Task {
    /// Install what is missing: nightly + rust-src, LLVM 22 dev packages, bpf-linker, test tools.
    Setup,
    /// Set up, then build `lb` (with its eBPF program) and print the binary's path.
    Build {
        /// Build the debug profile (target/debug/lb) instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run `lb ARGS` (`lb demo` when no ARGS are given).
    Run {
        /// Run the debug build instead of release.
        #[arg(long)]
        debug: bool,
        /// Arguments for lb, e.g. `cargo xtask run -- -f haproxy.cfg`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// The whole suite, as CI runs it: setup, fmt, clippy, release build, cargo test.
    Test {
        /// Passed to `cargo test` (a filter, `-p PKG`); after a further `--`, to the test binaries.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Build and run the libFuzzer targets of `fuzz/` (cargo fuzz, nightly), each for a while;
    /// a crash fails with its input saved under fuzz/artifacts/TARGET/.
    Fuzz {
        /// Seconds per target.
        #[arg(long, value_name = "S", default_value_t = fuzz::DEFAULT_SECS)]
        time: u64,
        /// Run only this target (default: all).
        #[arg(value_name = "TARGET")]
        target: Option<String>,
    },
    /// The chaos workload (flows checked byte for byte while backends die, servers flip
    /// MAINT/READY, lb reloads and DNS answers change) for N minutes, then a summary.
    Soak {
        /// How long the chaos lasts.
        #[arg(long, value_name = "N", default_value_t = 10)]
        minutes: u64,
        /// The data plane: sockmap (lb's default), sockmap-at-once or splice.
        #[arg(long, value_name = "PLANE", default_value = "sockmap")]
        dataplane: String,
    },
    /// Build, then run the benchmarks (`cargo run --release -p bench -- ARGS`).
    Bench {
        /// Passed to the bench binary.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
}

/// Directories of the system programs that setup installs and tests start (`dnsmasq`,
/// `mariadbd`, `ip`): root's usual `PATH` has them, a minimal one (`/usr/bin:/bin`) does not.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// `path` with every directory of [`SBIN_DIRS`] it lacks appended.
fn with_sbin(path: &str) -> String {
    let mut dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
    for d in SBIN_DIRS {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

fn main() -> ExitCode {
    let path = with_sbin(&std::env::var("PATH").unwrap_or_default());
    // Single-threaded here, before any command is started; every child inherits it.
    std::env::set_var("PATH", path);
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> Result<ExitCode> {
    let root = cmd::workspace_root();
    match task {
        Task::Setup => setup::setup(&root)?,
        Task::Build { debug } => {
            let lb = build(&root, debug)?;
            println!("{}", lb.display());
        }
        Task::Run { debug, args } => {
            let lb = build(&root, debug)?;
            let mut c = std::process::Command::new(&lb);
            c.args(lb_args(args));
            eprintln!("+ {}", cmd::show(&c));
            // Replace this process: signals (Ctrl-C) and the exit status are lb's own.
            let err = c.exec();
            return Err(err).with_context(|| format!("run: could not execute {}", lb.display()));
        }
        Task::Test { args } => suite::test(&root, &args)?,
        Task::Fuzz { time, target } => fuzz::fuzz(&root, time, target.as_deref())?,
        Task::Soak { minutes, dataplane } => {
            setup::setup(&root)?;
            soak::soak(&root, minutes, &dataplane)?;
        }
        Task::Bench { args } => {
            build(&root, false)?;
            let mut c = cmd::cargo(&root);
            c.args(["run", "--release", "-p", "bench", "--"]).args(args);
            let status = cmd::status("bench", &mut c)?;
            if !status.success() {
                eprintln!("xtask: bench: {}", cmd::describe(status));
            }
            return Ok(exit_code(status.code()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Setup, then `cargo build [--release] -p lb-user`; returns the path of `lb`.
fn build(root: &Path, debug: bool) -> Result<PathBuf> {
    setup::setup(root)?;
    let mut c = cmd::cargo(root);
    c.args(["build", "-p", "lb-user"]);
    if !debug {
        c.arg("--release");
    }
    cmd::run("build", &mut c)?;
    let lb = cmd::target_dir(root)
        .join(if debug { "debug" } else { "release" })
        .join("lb");
    if !lb.is_file() {
        bail!("build: cargo succeeded but {} is not there", lb.display());
    }
    Ok(lb)
}

/// `lb demo` unless arguments were given.
fn lb_args(args: Vec<String>) -> Vec<String> {
    if args.is_empty() {
        vec!["demo".into()]
    } else {
        args
    }
}

/// A child's exit code as ours; a child killed by a signal (no code) is a failure.
fn exit_code(code: Option<i32>) -> ExitCode {
    match code.map(u8::try_from) {
        Some(Ok(c)) => ExitCode::from(c),
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbin_dirs_are_added_once() {
        assert_eq!(
            with_sbin("/usr/bin:/bin"),
            "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
        );
        assert_eq!(
            with_sbin("/usr/sbin:/usr/bin"),
            "/usr/sbin:/usr/bin:/usr/local/sbin:/sbin"
        );
    }
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Task {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn setup_and_build() {
        assert_eq!(parse(&["setup"]), Task::Setup);
        assert_eq!(parse(&["build"]), Task::Build { debug: false });
        assert_eq!(parse(&["build", "--debug"]), Task::Build { debug: true });
        assert!(Cli::try_parse_from(["xtask", "build", "extra"]).is_err());
        assert!(Cli::try_parse_from(["xtask"]).is_err());
    }

    #[test]
    fn run_passes_everything_after_the_separator_to_lb() {
        assert_eq!(
            parse(&["run"]),
            Task::Run {
                debug: false,
                args: vec![]
            }
        );
        assert_eq!(
            parse(&["run", "--", "-c", "-f", "haproxy.cfg"]),
            Task::Run {
                debug: false,
                args: strings(&["-c", "-f", "haproxy.cfg"])
            }
        );
        assert_eq!(
            parse(&["run", "--debug", "--", "--debug"]),
            Task::Run {
                debug: true,
                args: strings(&["--debug"])
            }
        );
        assert_eq!(
            parse(&["run", "demo"]),
            Task::Run {
                debug: false,
                args: strings(&["demo"])
            }
        );
    }

    #[test]
    fn run_defaults_to_the_demo() {
        assert_eq!(lb_args(vec![]), strings(&["demo"]));
        assert_eq!(
            lb_args(strings(&["-f", "x.cfg"])),
            strings(&["-f", "x.cfg"])
        );
    }

    #[test]
    fn test_keeps_a_second_separator_for_the_test_binaries() {
        assert_eq!(parse(&["test"]), Task::Test { args: vec![] });
        assert_eq!(
            parse(&["test", "--", "-p", "lb-user", "--", "--nocapture"]),
            Task::Test {
                args: strings(&["-p", "lb-user", "--", "--nocapture"])
            }
        );
        assert_eq!(
            parse(&["test", "config"]),
            Task::Test {
                args: strings(&["config"])
            }
        );
    }

    #[test]
    fn bench_passes_its_arguments_through() {
        assert_eq!(
            parse(&["bench", "--runs", "5"]),
            Task::Bench {
                args: strings(&["--runs", "5"])
            }
        );
        assert_eq!(
            parse(&["bench", "--", "--help"]),
            Task::Bench {
                args: strings(&["--help"])
            }
        );
    }

    #[test]
    fn fuzz_and_soak_options() {
        assert_eq!(
            parse(&["fuzz"]),
            Task::Fuzz {
                time: fuzz::DEFAULT_SECS,
                target: None
            }
        );
        assert_eq!(
            parse(&["fuzz", "--time", "600", "config"]),
            Task::Fuzz {
                time: 600,
                target: Some("config".into())
            }
        );
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--time", "soon"]).is_err());
        assert_eq!(
            parse(&["soak"]),
            Task::Soak {
                minutes: 10,
                dataplane: "sockmap".into()
            }
        );
        assert_eq!(
            parse(&["soak", "--minutes", "60", "--dataplane", "splice"]),
            Task::Soak {
                minutes: 60,
                dataplane: "splice".into()
            }
        );
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(Some(0)), ExitCode::SUCCESS);
        assert_eq!(exit_code(Some(2)), ExitCode::from(2));
        assert_eq!(exit_code(None), ExitCode::FAILURE);
        assert_eq!(exit_code(Some(300)), ExitCode::FAILURE);
    }
}
