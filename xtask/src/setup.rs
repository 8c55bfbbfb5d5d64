//! `cargo xtask setup`: checks for, and installs only when missing, everything that building and
//! testing lb needs: nightly + `rust-src` (the eBPF crate), LLVM 22 dev packages and bpf-linker
//! built against them (its linker), the Debian packages the tests use, and cargo-fuzz (the fuzz
//! targets). Idempotent.
//!
//! It works in three stages so that the decisions are plain functions with tests: observe what is
//! there (runs probes), plan what to install (pure), then install and observe again to verify.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Needed to build bpf-linker against LLVM 22 (`llvm-sys` links `libLLVM`, polly, zstd, zlib).
const LLVM_PACKAGES: [&str; 4] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Used by the test suites: peers (`socat`), network namespaces (`ip`), and real backends and the
/// reference proxy, a DNS server (`dnsmasq-base`: the binary without a system service) for the
/// resolvers tests, a headless browser for the stats page (`chromium`) and `promtool` for the
/// Prometheus exporter (`prometheus`), PostgreSQL (`postgresql`: `initdb`, `postgres`) for the
/// health checks' close, an LDAP server (`slapd`) for `ldap-check`, VRRP for the HA pair
/// (`keepalived`), and for the package
/// (`cargo xtask deb`) `dpkg-shlibdeps` (`dpkg-dev`) and `systemd-analyze` (`systemd`). Their
/// services are not meant to run: tests start their own instances.
const TEST_PACKAGES: [&str; 14] = [
    "socat",
    "strace",
    "iproute2",
    "redis-server",
    "mariadb-server",
    "postgresql",
    "haproxy",
    "dnsmasq-base",
    "chromium",
    "prometheus",
    "keepalived",
    "slapd",
    "dpkg-dev",
    "systemd",
];
/// Used by `cargo xtask bench`: nginx with its stream module (a proxy lb is compared with; HAProxy
/// is in the test packages), `perf`/`bpftool` to profile where lb falls short, the real
/// clients (`iperf3`, `sysbench`; `redis-benchmark` and `pgbench` come with the servers), and
/// `valgrind` (callgrind and `callgrind_control`: the `instructions` workload's counts).
const BENCH_PACKAGES: [&str; 7] = [
    "nginx",
    "libnginx-mod-stream",
    "linux-perf",
    "bpftool",
    "iperf3",
    "sysbench",
    "valgrind",
];
/// Packages whose postinst may start a system service, and that service's unit name.
const SERVICES: [(&str, &str); 8] = [
    ("redis-server", "redis-server"),
    ("mariadb-server", "mariadb"),
    ("postgresql", "postgresql"),
    ("haproxy", "haproxy"),
    ("nginx", "nginx"),
    ("prometheus", "prometheus"),
    ("keepalived", "keepalived"),
    ("slapd", "slapd"),
];
/// Where `llvm-22-dev` puts LLVM; `llvm-sys` looks in `/usr` unless told, and fails with
/// `unable to find library -lLLVM`.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The bpf-linker release known to build against LLVM 22 with aya 0.14 here (sockmap notes).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The cargo-fuzz release installed when none is there (`cargo fuzz`: builds and runs the
/// libFuzzer targets of `fuzz/` with nightly).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Components of the active (stable) toolchain that `cargo xtask test` runs.
const LINT_COMPONENTS: [&str; 2] = ["rustfmt", "clippy"];

/// What is on the machine, as far as setup cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `rustc --version` of the nightly toolchain, if it is installed.
    pub nightly: Option<String>,
    pub rust_src: bool,
    /// Entries of [`LINT_COMPONENTS`] the active toolchain lacks.
    pub missing_components: Vec<&'static str>,
    /// Each wanted Debian package and its installed version, if installed.
    pub packages: Vec<(&'static str, Option<String>)>,
    /// `bpf-linker --version`'s version, if it runs.
    pub bpf_linker: Option<String>,
    /// `cargo-fuzz --version`'s version, if it runs.
    pub cargo_fuzz: Option<String>,
}

/// One thing to install, in the order they must happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    InstallNightly,
    AddRustSrc,
    AddComponents(Vec<&'static str>),
    /// `apt-get update` once, then install these.
    AptInstall(Vec<&'static str>),
    InstallBpfLinker,
    InstallCargoFuzz,
}

/// Runs setup: prints one line per item, installs what is missing, verifies.
pub fn setup(root: &Path) -> Result<()> {
    eprintln!("setup: checking what building and testing lb needs");
    let observed = observe(root)?;
    let (report, actions) = plan(&observed);
    for line in &report {
        eprintln!("{line}");
    }
    if actions.is_empty() {
        eprintln!("setup: everything is installed already; nothing to do");
        return Ok(());
    }
    if let Some(Action::AptInstall(pkgs)) =
        actions.iter().find(|a| matches!(a, Action::AptInstall(_)))
    {
        if !is_root()? {
            bail!(
                "setup: Debian packages missing: {}. Install them as root, then run setup again:\n  \
                 {}",
                pkgs.join(" "),
                root_command(pkgs)
            );
        }
    }
    for action in &actions {
        execute(root, action)?;
    }
    let after = observe(root)?;
    let (_, left) = plan(&after);
    if !left.is_empty() {
        bail!("setup: installed, but still missing afterwards: {left:?}");
    }
    eprintln!("setup: done; everything is installed now");
    Ok(())
}

/// What the machine has. Runs probes only; changes nothing.
fn observe(root: &Path) -> Result<Observed> {
    let rustup = |args: &[&str]| {
        let mut c = Command::new("rustup");
        c.args(args).current_dir(root);
        cmd::probe(&mut c)
    };
    let Some((status, toolchains)) = rustup(&["toolchain", "list"])? else {
        bail!(
            "setup: `rustup` not found on PATH. lb's eBPF crate needs a rustup-managed nightly; \
             install rustup and make sure ~/.cargo/bin is on PATH"
        );
    };
    if !status.success() {
        bail!(
            "setup: `rustup toolchain list` failed ({})",
            cmd::describe(status)
        );
    }
    let mut observed = Observed::default();
    if has_nightly(&toolchains) {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "rustc", "--version"])
            .current_dir(root);
        observed.nightly = match cmd::probe(&mut c)? {
            Some((s, out)) if s.success() => Some(out.trim().to_string()),
            _ => None,
        };
    }
    if observed.nightly.is_some() {
        if let Some((s, out)) =
            rustup(&["component", "list", "--toolchain", "nightly", "--installed"])?
        {
            observed.rust_src = s.success() && has_component(&out, "rust-src");
        }
    }
    if let Some((s, out)) = rustup(&["component", "list", "--installed"])? {
        observed.missing_components = LINT_COMPONENTS
            .into_iter()
            .filter(|c| !(s.success() && has_component(&out, c)))
            .collect();
    }
    observed.packages = dpkg_status(root, &wanted_packages())?;
    let mut c = Command::new("bpf-linker");
    c.arg("--version").current_dir(root);
    observed.bpf_linker = match cmd::probe(&mut c)? {
        Some((s, out)) if s.success() => Some(bpf_linker_version(&out)),
        _ => None,
    };
    let mut c = Command::new("cargo-fuzz");
    c.arg("--version").current_dir(root);
    observed.cargo_fuzz = match cmd::probe(&mut c)? {
        Some((s, out)) if s.success() => Some(tool_version(&out, "cargo-fuzz")),
        _ => None,
    };
    Ok(observed)
}

fn wanted_packages() -> Vec<&'static str> {
    LLVM_PACKAGES
        .into_iter()
        .chain(TEST_PACKAGES)
        .chain(BENCH_PACKAGES)
        .collect()
}

/// The report lines (`ok: X 1.2` / `installing: X`) and the actions, in order.
pub fn plan(o: &Observed) -> (Vec<String>, Vec<Action>) {
    let mut report = Vec::new();
    let mut actions = Vec::new();
    if let Some(version) = &o.nightly {
        report.push(format!("ok: rust nightly toolchain ({version})"));
    } else {
        report.push("installing: rust nightly toolchain (builds lb-ebpf)".into());
        actions.push(Action::InstallNightly);
    }
    if o.nightly.is_some() && o.rust_src {
        report.push("ok: rust-src for nightly".into());
    } else {
        report.push("installing: rust-src for nightly (-Z build-std=core for BPF)".into());
        actions.push(Action::AddRustSrc);
    }
    if o.missing_components.is_empty() {
        report.push(format!("ok: {}", LINT_COMPONENTS.join(", ")));
    } else {
        report.push(format!("installing: {}", o.missing_components.join(", ")));
        actions.push(Action::AddComponents(o.missing_components.clone()));
    }
    let mut missing = Vec::new();
    for (name, version) in &o.packages {
        match version {
            Some(v) => report.push(format!("ok: {name} {v}")),
            None => missing.push(*name),
        }
    }
    if !missing.is_empty() {
        report.push(format!("installing: {}", missing.join(" ")));
        actions.push(Action::AptInstall(missing));
    }
    if let Some(v) = &o.bpf_linker {
        report.push(format!("ok: bpf-linker {v}"));
    } else {
        report.push(format!(
            "installing: bpf-linker {BPF_LINKER_VERSION} (against LLVM 22)"
        ));
        actions.push(Action::InstallBpfLinker);
    }
    if let Some(v) = &o.cargo_fuzz {
        report.push(format!("ok: cargo-fuzz {v}"));
    } else {
        report.push(format!(
            "installing: cargo-fuzz {CARGO_FUZZ_VERSION} (the fuzz targets)"
        ));
        actions.push(Action::InstallCargoFuzz);
    }
    (report, actions)
}

fn execute(root: &Path, action: &Action) -> Result<()> {
    match action {
        Action::InstallNightly => {
            let mut c = Command::new("rustup");
            c.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
            cmd::run(
                "setup (rust nightly)",
                c.current_dir(root).stdin(Stdio::null()),
            )
        }
        Action::AddRustSrc => {
            let mut c = Command::new("rustup");
            c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
            cmd::run("setup (rust-src)", c.current_dir(root).stdin(Stdio::null()))
        }
        Action::AddComponents(components) => {
            let mut c = Command::new("rustup");
            c.args(["component", "add"]).args(components);
            cmd::run(
                "setup (rustfmt, clippy)",
                c.current_dir(root).stdin(Stdio::null()),
            )
        }
        Action::AptInstall(pkgs) => apt_install(pkgs),
        Action::InstallBpfLinker => {
            let path = std::env::var("PATH").unwrap_or_default();
            let mut c = cmd::cargo(root);
            c.env("PATH", format!("{LLVM_PREFIX}/bin:{path}"))
                .env("LLVM_SYS_220_PREFIX", LLVM_PREFIX)
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--locked",
                ])
                .args(["--no-default-features", "--features", "llvm-22"])
                .stdin(Stdio::null());
            cmd::run("setup (bpf-linker)", &mut c)
        }
        Action::InstallCargoFuzz => {
            let mut c = cmd::cargo(root);
            c.args([
                "install",
                "cargo-fuzz",
                "--version",
                CARGO_FUZZ_VERSION,
                "--locked",
            ])
            .stdin(Stdio::null());
            cmd::run("setup (cargo-fuzz)", &mut c)
        }
    }
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let step = "setup (Debian packages)";
    let mut update = Command::new("apt-get");
    update.arg("update").stdin(Stdio::null());
    cmd::run(step, &mut update)?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(pkgs)
        .stdin(Stdio::null());
    cmd::run(step, &mut install)?;
    stop_services(pkgs);
    Ok(())
}

/// The tests start their own redis/mariadb/postgresql/haproxy; the ones a postinst may have started as
/// system services would only hold ports and memory. Under systemd, stop and disable them. Without
/// systemd (containers, where a `policy-rc.d` usually forbids starts anyway), stop only what the
/// init script reports running. Never fails setup.
fn stop_services(installed: &[&str]) {
    let step = "setup (stop services)";
    let units: Vec<&str> = SERVICES
        .iter()
        .filter(|(pkg, _)| installed.contains(pkg))
        .map(|(_, unit)| *unit)
        .collect();
    if units.is_empty() {
        return;
    }
    let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let mut commands = Vec::new();
    if is_systemd(&init) {
        let mut c = Command::new("systemctl");
        c.args(["disable", "--now"]).args(&units);
        commands.push(c);
    } else {
        for unit in units {
            let mut status = Command::new("service");
            status
                .args([unit, "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if matches!(cmd::status(step, &mut status), Ok(s) if s.success()) {
                let mut c = Command::new("service");
                c.args([unit, "stop"]);
                commands.push(c);
            }
        }
    }
    for mut c in commands {
        c.stdin(Stdio::null());
        if let Err(e) = cmd::status(step, &mut c).and_then(|s| cmd::check(step, &c, s)) {
            eprintln!("warning: {e:#}; tests start their own instances, so going on");
        }
    }
}

/// Installed versions of `pkgs` (one `dpkg-query` for all; unknown packages are missing).
fn dpkg_status(root: &Path, pkgs: &[&'static str]) -> Result<Vec<(&'static str, Option<String>)>> {
    let mut c = Command::new("dpkg-query");
    c.args(["-W", "-f=${Package}\\t${Status}\\t${Version}\\n"])
        .args(pkgs)
        .current_dir(root);
    // Exit status 1 only means some package is unknown; the known ones are still listed.
    let Some((_, out)) = cmd::probe(&mut c)? else {
        bail!(
            "setup: `dpkg-query` not found. Setup installs system packages with apt (Debian 12 \
             here); on another system install these yourself: {}",
            pkgs.join(" ")
        );
    };
    Ok(pkgs
        .iter()
        .map(|&p| (p, installed_version(&out, p)))
        .collect())
}

/// The installed version of `pkg` in `dpkg-query -W -f='${Package}\t${Status}\t${Version}\n'`
/// output, or `None` when it is absent or not fully installed (e.g. only config files left).
pub fn installed_version(dpkg_output: &str, pkg: &str) -> Option<String> {
    dpkg_output.lines().find_map(|line| {
        let mut fields = line.split('\t');
        let (name, status, version) = (fields.next()?, fields.next()?, fields.next()?);
        let name = name.split(':').next()?; // `zlib1g-dev:amd64` on multi-arch systems
        (name == pkg && is_installed_status(status)).then(|| version.trim().to_string())
    })
}

/// dpkg's `${Status}` is "WANT ERROR STATE"; usable means state `installed`, with no error.
pub fn is_installed_status(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), [_, "ok", "installed"])
}

/// `rustup toolchain list` has a `nightly-<host>` line (what `cargo +nightly` resolves to), as
/// opposed to a dated `nightly-2026-05-20-<host>` one.
pub fn has_nightly(toolchain_list: &str) -> bool {
    toolchain_list.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name.strip_prefix("nightly-")
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// `rustup component list --installed` has `component` (`rust-src`) or `component-<suffix>`
/// (`clippy-x86_64-unknown-linux-gnu`, `rustfmt-preview-...`).
pub fn has_component(component_list: &str, component: &str) -> bool {
    component_list.lines().map(str::trim).any(|line| {
        line.strip_prefix(component)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

/// "bpf-linker 0.13.0" -> "0.13.0"; anything else is kept whole (it ran, so it is there).
pub fn bpf_linker_version(output: &str) -> String {
    tool_version(output, "bpf-linker")
}

/// "`tool` 1.2.3" (a `--version` line) -> "1.2.3"; anything else is kept whole.
pub fn tool_version(output: &str, tool: &str) -> String {
    let first = output.lines().next().unwrap_or("").trim();
    first
        .strip_prefix(tool)
        .and_then(|rest| rest.strip_prefix(' '))
        .unwrap_or(first)
        .trim()
        .to_string()
}

/// Whether `/proc/1/comm` names systemd.
pub fn is_systemd(pid1_comm: &str) -> bool {
    pid1_comm.trim() == "systemd"
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("setup: running `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// What a non-root user must run, exactly.
pub fn root_command(pkgs: &[&str]) -> String {
    format!(
        "sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
         --no-install-recommends {}'",
        pkgs.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Observed {
        Observed {
            nightly: Some("rustc 1.97.0-nightly (e50aa6fba 2026-05-19)".into()),
            rust_src: true,
            missing_components: vec![],
            packages: wanted_packages()
                .into_iter()
                .map(|p| (p, Some("1.0".to_string())))
                .collect(),
            bpf_linker: Some("0.13.0".into()),
            cargo_fuzz: Some("0.13.2".into()),
        }
    }

    #[test]
    fn nothing_to_do_when_everything_is_there() {
        let (report, actions) = plan(&everything());
        assert!(actions.is_empty());
        assert!(report.iter().all(|l| l.starts_with("ok: ")), "{report:?}");
        assert!(report.contains(&"ok: bpf-linker 0.13.0".to_string()));
        assert!(report.contains(&"ok: llvm-22-dev 1.0".to_string()));
    }

    #[test]
    fn fresh_machine_installs_everything_in_order() {
        let o = Observed {
            nightly: None,
            rust_src: false,
            missing_components: vec!["rustfmt", "clippy"],
            packages: wanted_packages().into_iter().map(|p| (p, None)).collect(),
            bpf_linker: None,
            cargo_fuzz: None,
        };
        let (report, actions) = plan(&o);
        assert_eq!(
            actions,
            vec![
                Action::InstallNightly,
                Action::AddRustSrc,
                Action::AddComponents(vec!["rustfmt", "clippy"]),
                Action::AptInstall(wanted_packages()),
                Action::InstallBpfLinker,
                Action::InstallCargoFuzz,
            ]
        );
        assert!(
            report.iter().all(|l| l.starts_with("installing: ")),
            "{report:?}"
        );
    }

    #[test]
    fn installs_only_the_missing_packages_in_one_apt_call() {
        let mut o = everything();
        for (name, version) in &mut o.packages {
            if ["redis-server", "haproxy"].contains(name) {
                *version = None;
            }
        }
        let (report, actions) = plan(&o);
        assert_eq!(
            actions,
            vec![Action::AptInstall(vec!["redis-server", "haproxy"])]
        );
        assert!(report.contains(&"installing: redis-server haproxy".to_string()));
        assert!(report.contains(&"ok: socat 1.0".to_string()));
    }

    #[test]
    fn rust_src_follows_a_missing_nightly() {
        let mut o = everything();
        o.nightly = None;
        o.rust_src = true; // cannot be: a stale reading is not trusted without the toolchain
        let (_, actions) = plan(&o);
        assert_eq!(actions, vec![Action::InstallNightly, Action::AddRustSrc]);
    }

    #[test]
    fn only_bpf_linker_missing() {
        let mut o = everything();
        o.bpf_linker = None;
        assert_eq!(plan(&o).1, vec![Action::InstallBpfLinker]);
    }

    #[test]
    fn only_cargo_fuzz_missing() {
        let mut o = everything();
        o.cargo_fuzz = None;
        let (report, actions) = plan(&o);
        assert_eq!(actions, vec![Action::InstallCargoFuzz]);
        assert!(report.contains(&"installing: cargo-fuzz 0.13.2 (the fuzz targets)".to_string()));
    }

    #[test]
    fn dpkg_output_parsing() {
        let out = "llvm-22-dev\tinstall ok installed\t1:22.1.8-1~deb12u1\n\
                   redis-server\tdeinstall ok config-files\t5:7.0.15-1~deb12u10\n\
                   haproxy\tinstall ok unpacked\t2.6.12-1+deb12u4\n\
                   zlib1g-dev:amd64\tinstall ok installed\t1:1.2.13.dfsg-1\n\
                   socat\thold ok installed\t1.7.4.4-2\n";
        assert_eq!(
            installed_version(out, "llvm-22-dev").as_deref(),
            Some("1:22.1.8-1~deb12u1")
        );
        assert_eq!(installed_version(out, "redis-server"), None);
        assert_eq!(installed_version(out, "haproxy"), None);
        assert_eq!(installed_version(out, "mariadb-server"), None);
        assert_eq!(
            installed_version(out, "zlib1g-dev").as_deref(),
            Some("1:1.2.13.dfsg-1")
        );
        assert_eq!(
            installed_version(out, "socat").as_deref(),
            Some("1.7.4.4-2")
        );
        assert_eq!(installed_version(out, "llvm-22"), None);
        assert_eq!(installed_version("", "socat"), None);
    }

    #[test]
    fn dpkg_status_words() {
        assert!(is_installed_status("install ok installed"));
        assert!(is_installed_status("hold ok installed"));
        assert!(!is_installed_status("install reinstreq half-installed"));
        assert!(!is_installed_status("unknown ok not-installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn nightly_detection() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(!has_nightly("stable-x86_64-unknown-linux-gnu (default)\n"));
        assert!(!has_nightly(
            "nightly-2026-05-20-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly("no installed toolchains\n"));
        assert!(has_nightly("nightly-aarch64-unknown-linux-gnu (default)\n"));
    }

    #[test]
    fn component_detection() {
        let list = "cargo-x86_64-unknown-linux-gnu\n\
                    clippy-x86_64-unknown-linux-gnu\n\
                    rust-src\n\
                    rust-std-x86_64-unknown-linux-gnu\n\
                    rustc-x86_64-unknown-linux-gnu\n";
        assert!(has_component(list, "rust-src"));
        assert!(has_component(list, "clippy"));
        assert!(!has_component(list, "rustfmt"));
        assert!(!has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
        assert!(!has_component("rustfmtx\n", "rustfmt"));
        assert!(has_component(
            "rustfmt-preview-x86_64-unknown-linux-gnu\n",
            "rustfmt"
        ));
        assert!(!has_component("", "rust-src"));
    }

    #[test]
    fn bpf_linker_version_parsing() {
        assert_eq!(bpf_linker_version("bpf-linker 0.13.0\n"), "0.13.0");
        assert_eq!(bpf_linker_version("something 1\n"), "something 1");
        assert_eq!(tool_version("cargo-fuzz 0.13.2\n", "cargo-fuzz"), "0.13.2");
        assert_eq!(
            tool_version("cargo-fuzzy 1\n", "cargo-fuzz"),
            "cargo-fuzzy 1"
        );
    }

    #[test]
    fn systemd_detection() {
        assert!(is_systemd("systemd\n"));
        assert!(!is_systemd("process_api\n"));
        assert!(!is_systemd("init\n"));
    }

    #[test]
    fn non_root_is_told_the_exact_command() {
        assert_eq!(
            root_command(&["haproxy", "socat"]),
            "sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
             --no-install-recommends haproxy socat'"
        );
    }
}
