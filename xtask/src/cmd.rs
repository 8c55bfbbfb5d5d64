//! Running commands the way xtask promises: each one is printed first (`+ cargo build ...`), runs
//! from the workspace root, and a failure names the step and the command.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// The workspace root: xtask's own manifest directory's parent, so that `cargo xtask` behaves the
/// same from any working directory. The directory `cargo run` names at run time comes first: the
/// one compiled in is where xtask was *built*, and a target directory copied to another checkout
/// (cargo does not rebuild xtask for that) would run every step in the first checkout.
pub fn workspace_root() -> PathBuf {
    root_of(std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from))
}

/// [`workspace_root`] given the manifest directory `cargo run` passed (if any).
fn root_of(run_time: Option<PathBuf>) -> PathBuf {
    run_time
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the root), else `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// `cargo` from `PATH` (the rustup proxy), run from the workspace root.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` with inherited stdio after printing it; an error if it cannot start or exits
/// non-zero, naming `step` and the command.
pub fn run(step: &str, cmd: &mut Command) -> Result<()> {
    let status = status(step, cmd)?;
    check(step, cmd, status)
}

/// Like [`run`] but hands back the exit status instead of judging it.
pub fn status(step: &str, cmd: &mut Command) -> Result<ExitStatus> {
    let shown = show(cmd);
    eprintln!("+ {shown}");
    cmd.status()
        .with_context(|| format!("{step}: could not start `{shown}`"))
}

/// Runs `cmd` with its stdout passed through to ours as it arrives and also handed to `on_line`
/// line by line (stderr stays inherited). Used to read the test runner's summary lines without
/// hiding them.
pub fn run_tee(step: &str, cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<ExitStatus> {
    let shown = show(cmd);
    eprintln!("+ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("{step}: could not start `{shown}`"))?;
    let mut pipe = child.stdout.take().expect("stdout was piped");
    let mut out = io::stdout().lock();
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("{step}: reading from `{shown}`")),
        };
        // Pass bytes on as they come (libtest prints "test x ... " before "ok"), so nothing is
        // held back; a failed write to our own stdout is not a reason to abandon the child.
        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
        for &b in &buf[..n] {
            if b == b'\n' {
                on_line(&String::from_utf8_lossy(&line));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        on_line(&String::from_utf8_lossy(&line));
    }
    child
        .wait()
        .with_context(|| format!("{step}: waiting for `{shown}`"))
}

/// Runs a probe (`dpkg-query`, `bpf-linker --version`, ...) after printing it and returns its
/// exit status and stdout; `None` when the program does not exist.
pub fn probe(cmd: &mut Command) -> Result<Option<(ExitStatus, String)>> {
    let shown = show(cmd);
    eprintln!("+ {shown}");
    match cmd.stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(out) => Ok(Some((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not start `{shown}`")),
    }
}

/// An error unless `status` is success, naming the step and the command.
pub fn check(step: &str, cmd: &Command, status: ExitStatus) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    bail!("{step}: `{}` failed ({})", show(cmd), describe(status))
}

/// "exit status 101" / "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The command as a shell line: variables it sets, program, arguments, quoted where needed. A
/// `PATH` that extends ours is shown as `PATH=/added:$PATH`.
pub fn show(cmd: &Command) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let value = if key == "PATH" {
            shorten_path(&value.to_string_lossy(), &path.to_string_lossy())
        } else {
            quote(value)
        };
        words.push(format!("{}={value}", key.to_string_lossy()));
    }
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

/// `NEW:<ours>` becomes `NEW:$PATH`, so printed commands stay readable and copyable.
fn shorten_path(value: &str, ours: &str) -> String {
    match value.strip_suffix(ours) {
        Some(prefix) if !ours.is_empty() && prefix.ends_with(':') => format!("{prefix}$PATH"),
        _ => quote(OsStr::new(value)),
    }
}

/// Single-quotes a word unless it only has characters a shell leaves alone.
fn quote(word: impl AsRef<OsStr>) -> String {
    let word = word.as_ref().to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_plain_words_unquoted() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--release", "-p", "lb-user"]);
        assert_eq!(show(&cmd), "cargo build --release -p lb-user");
    }

    #[test]
    fn quotes_words_a_shell_would_split() {
        let mut cmd = Command::new("dpkg-query");
        cmd.args(["-f", "${Status} x", "it's", ""]);
        assert_eq!(show(&cmd), r"dpkg-query -f '${Status} x' 'it'\''s' ''");
    }

    #[test]
    fn shows_env_and_shortens_an_extended_path() {
        assert_eq!(
            shorten_path("/usr/lib/llvm-22/bin:/usr/bin:/bin", "/usr/bin:/bin"),
            "/usr/lib/llvm-22/bin:$PATH"
        );
        assert_eq!(shorten_path("/only/this", "/usr/bin"), "/only/this");
        assert_eq!(shorten_path("/a:/b", ""), "/a:/b");
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_SYS_220_PREFIX", "/usr/lib/llvm-22")
            .arg("install");
        assert_eq!(
            show(&cmd),
            "LLVM_SYS_220_PREFIX=/usr/lib/llvm-22 cargo install"
        );
    }

    #[test]
    fn root_follows_the_manifest_directory_cargo_run_names() {
        let copy = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        std::fs::create_dir_all(copy.join("xtask")).unwrap();
        std::fs::write(copy.join("xtask").join("Cargo.toml"), "").unwrap();
        assert_eq!(root_of(Some(copy.join("xtask"))), copy);
        // No manifest there (not a checkout): the compiled-in directory.
        let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(root_of(Some(copy.join("elsewhere"))), compiled);
        assert_eq!(root_of(None), compiled);
        std::fs::remove_dir_all(&copy).unwrap();
    }

    #[test]
    fn root_is_the_parent_of_xtask() {
        let root = workspace_root();
        assert!(root.join("xtask").join("Cargo.toml").is_file());
        assert!(root.join("Cargo.toml").is_file());
    }
}
