//! `cargo xtask deb`: a Debian package of lb, built with `dpkg-deb` from the release binary and
//! the files under `packaging/`: `/usr/sbin/lb`, `/etc/lb/lb.cfg` (a conffile), the systemd
//! unit, and the README and examples as documentation. `Depends` comes from `dpkg-shlibdeps`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Files taken from the workspace as they are: (source, path in the package, mode).
const FILES: [(&str, &str, u32); 8] = [
    ("packaging/lb.cfg", "etc/lb/lb.cfg", 0o644),
    (
        "packaging/lb.service",
        "lib/systemd/system/lb.service",
        0o644,
    ),
    ("README.md", "usr/share/doc/lb/README.md", 0o644),
    (
        "examples/keepalived.conf",
        "usr/share/doc/lb/examples/keepalived.conf",
        0o644,
    ),
    (
        "examples/basic.cfg",
        "usr/share/doc/lb/examples/basic.cfg",
        0o644,
    ),
    (
        "examples/web.cfg",
        "usr/share/doc/lb/examples/web.cfg",
        0o644,
    ),
    (
        "examples/redis.cfg",
        "usr/share/doc/lb/examples/redis.cfg",
        0o644,
    ),
    (
        "examples/mysql.cfg",
        "usr/share/doc/lb/examples/mysql.cfg",
        0o644,
    ),
];

/// Files dpkg must not overwrite when the administrator changed them.
const CONFFILES: [&str; 1] = ["/etc/lb/lb.cfg"];

const DESCRIPTION: &str = "L4 (TCP) load balancer that reads haproxy.cfg
 lb reads an unchanged haproxy.cfg (mode tcp) and behaves as HAProxy 2.6-2.8 does: health
 checks, stats page and Prometheus exporter, runtime API, tcplog, DNS resolvers, reload on
 SIGHUP. Flows are forwarded with splice(2) or, with an eBPF sockmap program, in the kernel.
 .
 The package runs lb as the systemd service lb.service (Type=notify) on /etc/lb/lb.cfg;
 'lb ctl check' tells keepalived whether lb serves.";

/// `cargo xtask deb`: builds lb (release) and the package; returns the `.deb`'s path.
pub fn deb(root: &Path, lb: &Path) -> Result<PathBuf> {
    let work = cmd::target_dir(root).join("deb");
    let deb = assemble(root, lb, &work)?;
    println!("{}", deb.display());
    Ok(deb)
}

/// Builds the package from `lb` (a built binary) and the workspace's files under `work`
/// (emptied first); returns the `.deb`'s path, `work/lb_VERSION_ARCH.deb`.
pub fn assemble(root: &Path, lb: &Path, work: &Path) -> Result<PathBuf> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("deb: remove {}", work.display()))?;
    }
    // dpkg-shlibdeps wants the package tree at debian/PACKAGE beside a debian/control.
    let stage = work.join("debian/lb");
    let sbin = stage.join("usr/sbin");
    fs::create_dir_all(&sbin).with_context(|| format!("deb: create {}", sbin.display()))?;
    // The release profile keeps debug info for profiling; the package need not carry it.
    cmd::run(
        "deb",
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(sbin.join("lb"))
            .arg(lb),
    )?;
    set_mode(&sbin.join("lb"), 0o755)?;
    for (from, to, mode) in FILES {
        install(&root.join(from), &stage.join(to), mode)?;
    }
    let copyright = stage.join("usr/share/doc/lb/copyright");
    write(
        &copyright,
        &format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: lb\nSource: {}\n\nFiles: *\nLicense: {}\n",
            env!("CARGO_PKG_REPOSITORY"),
            env!("CARGO_PKG_LICENSE")
        ),
    )?;
    write(
        &work.join("debian/control"),
        "Source: lb\n\nPackage: lb\nArchitecture: any\n",
    )?;
    let depends = shlib_depends(work)?;
    let control = control(&arch()?, &depends, installed_size_kib(&stage)?);
    write(&stage.join("DEBIAN/control"), &control)?;
    let conffiles = CONFFILES.join("\n") + "\n";
    write(&stage.join("DEBIAN/conffiles"), &conffiles)?;
    let deb = work.join(format!("lb_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch()?));
    cmd::run(
        "deb",
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// The `DEBIAN/control` text.
fn control(arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: lb\nVersion: {}\nArchitecture: {arch}\nMaintainer: lb developers \
         <lb@example.invalid>\nInstalled-Size: {installed_kib}\nDepends: {depends}\n\
         Suggests: keepalived, socat\nSection: net\nPriority: optional\nHomepage: {}\n\
         Description: {DESCRIPTION}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_REPOSITORY"),
    )
}

fn arch() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("deb: run dpkg --print-architecture")?;
    if !out.status.success() {
        bail!(
            "deb: dpkg --print-architecture: {}",
            cmd::describe(out.status)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `dpkg-shlibdeps -O debian/lb/usr/sbin/lb` run in `work`: the libraries lb links, as
/// `Depends` (e.g. `libc6 (>= 2.34), libgcc-s1 (>= 4.2)`).
fn shlib_depends(work: &Path) -> Result<String> {
    let mut c = Command::new("dpkg-shlibdeps");
    c.current_dir(work).args(["-O", "debian/lb/usr/sbin/lb"]);
    eprintln!("+ {}", cmd::show(&c));
    let out = c
        .output()
        .context("deb: run dpkg-shlibdeps (package dpkg-dev)")?;
    if !out.status.success() {
        bail!(
            "deb: dpkg-shlibdeps: {}: {}",
            cmd::describe(out.status),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("deb: dpkg-shlibdeps printed no shlibs:Depends: {text}"))
}

/// What the files under `dir` take, in KiB (each file rounded up), for `Installed-Size`.
fn installed_size_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("deb: read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            installed_size_kib(&entry.path())?
        } else {
            meta.len().div_ceil(1024)
        };
    }
    Ok(total)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("deb: create {}", dir.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("deb: copy {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("deb: create {}", dir.display()))?;
    }
    fs::write(path, text).with_context(|| format!("deb: write {}", path.display()))?;
    set_mode(path, 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("deb: chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests;
