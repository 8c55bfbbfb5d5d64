//! The package as an administrator gets it: built from the release binary, installed with dpkg
//! into a fresh root, its `lb` checking its `lb.cfg`, its unit verified by `systemd-analyze`
//! with the package laid over this system (private mount namespace, read-only overlays).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::assemble;
use crate::cmd;

/// A directory of this test process, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("xtask-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Tmp(path)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The release `lb`: `cargo xtask test` builds it before the tests run.
fn release_lb(root: &Path) -> PathBuf {
    let lb = cmd::target_dir(root).join("release/lb");
    assert!(
        lb.is_file(),
        "{} is missing: build it first (cargo build --release -p lb-user; cargo xtask test does)",
        lb.display()
    );
    lb
}

/// `systemd-analyze verify lb.service` with `units` laid over the system's unit directory and
/// `sbin` over `/usr/sbin`, in a private mount namespace. Ok when it exits 0 and says nothing
/// about lb.service (unknown keys are only warnings there).
fn verify(units: &Path, sbin: &Path) -> Result<(), String> {
    let script = format!(
        "set -e; mount --make-rprivate /; \
         mount -t overlay lbunits -o lowerdir={}:/usr/lib/systemd/system /usr/lib/systemd/system; \
         mount -t overlay lbsbin -o lowerdir={}:/usr/sbin /usr/sbin; \
         test -x /usr/sbin/lb; exec systemd-analyze verify lb.service",
        units.display(),
        sbin.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let said = text(&out);
    if out.status.success() && !said.contains("lb.service") {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

#[test]
fn the_package_installs_into_a_fresh_root_and_its_unit_verifies() {
    let root = cmd::workspace_root();
    let lb = release_lb(&root);
    let tmp = Tmp::new("deb");
    let deb = assemble(&root, &lb, &tmp.0.join("work")).unwrap();
    let deb_s = deb.to_str().unwrap();
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("lb_{}_", env!("CARGO_PKG_VERSION"))),
        "{}",
        deb.display()
    );

    let fields = text(&run(
        "dpkg-deb",
        &["--field", deb_s, "Package", "Architecture", "Depends"],
    ));
    assert!(fields.contains("Package: lb\n"), "{fields}");
    assert!(fields.contains("Depends: libc6 (>= "), "{fields}");
    let contents = text(&run("dpkg-deb", &["--contents", deb_s]));
    for (mode, path) in [
        ("-rwxr-xr-x root/root", "./usr/sbin/lb"),
        ("-rw-r--r-- root/root", "./etc/lb/lb.cfg"),
        ("-rw-r--r-- root/root", "./lib/systemd/system/lb.service"),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/lb/examples/keepalived.conf",
        ),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "no {mode} {path} in\n{contents}"
        );
    }

    // A fresh root: an empty dpkg database and nothing else (libc6 is not recorded there,
    // hence --force-depends; the files themselves are all the package's).
    let fresh = tmp.0.join("root");
    let admin = fresh.join("var/lib/dpkg");
    for d in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    let fresh_s = fresh.to_str().unwrap();
    run(
        "dpkg",
        &[
            &format!("--root={fresh_s}"),
            "--force-depends",
            "--install",
            deb_s,
        ],
    );
    let status = text(&run(
        "dpkg",
        &[&format!("--root={fresh_s}"), "--status", "lb"],
    ));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Conffiles:\n /etc/lb/lb.cfg "), "{status}");

    // The installed lb accepts the installed configuration (what ExecStartPre runs).
    let checked = text(&run(
        fresh.join("usr/sbin/lb").to_str().unwrap(),
        &["-c", "-f", fresh.join("etc/lb/lb.cfg").to_str().unwrap()],
    ));
    assert!(checked.contains("Configuration file is valid"), "{checked}");

    let units = fresh.join("lib/systemd/system");
    let sbin = fresh.join("usr/sbin");
    let unit = std::fs::read_to_string(units.join("lb.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/sbin/lb -c -f ${CONFIG}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "no '{line}' in the unit");
    }
    verify(&units, &sbin).unwrap_or_else(|e| panic!("systemd-analyze verify: {e}"));

    // The same check fails on a unit with a misspelt key or a missing program.
    let bad = tmp.0.join("bad-units");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("lb.service"),
        unit.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .unwrap();
    let e = verify(&bad, &sbin).unwrap_err();
    assert!(e.contains("NoNewPrivilege"), "{e}");
    std::fs::write(
        bad.join("lb.service"),
        unit.replace("/usr/sbin/lb -c", "/usr/sbin/lbx -c"),
    )
    .unwrap();
    let e = verify(&bad, &sbin).unwrap_err();
    assert!(e.contains("/usr/sbin/lbx"), "{e}");
}
