//! The acceptance corpus: 43 real `mode tcp` haproxy.cfg files from public projects
//! (`shared/corpus/haproxy-tcp/`, tiers in its SOURCES.md), each loaded with `lb -c` as
//! `shared/corpus/check` does: host names mapped to 127.0.0.1 in a private mount namespace
//! (`/etc/hosts` bind-mounted), the variables of `env` set, 15 and 16 loaded together.
//!
//! What must hold today, file by file (the table [`EXPECTED`]):
//! - tier A: `full` (exit 0, nothing ignored or "not supported yet"), except the files that
//!   wait on a feature not built yet.
//!   Those are listed with the reason, and every message lb prints for them must be about
//!   that feature only: a new gap fails the test.
//! - tier B: an error, every error line about TLS termination, HTTP-mode proxying or Lua
//!   (or the listed waits).
//! - tier C: an error naming `nbproc`'s removal.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a configuration loads, as `shared/corpus/check` sorts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Full,
    Partial,
    Error,
}

/// What each non-full message may be about, by the words lb uses for it.
const ACL_RULES: &[&str] = &[
    "'acl' is not supported yet",
    "'tcp-request'",
    "'tcp-response'",
];
const USE_BACKEND: &[&str] = &["'use_backend'", "has no backend", "'use-server'"];
const PROXY: &[&str] = &["(PROXY protocol)", "'accept-proxy'", "send-proxy"];
/// Tier B: what lb refuses on purpose.
const OUT_OF_SCOPE: &[&str] = &[
    "needs TLS, which lb does not do",
    "mode http is not supported",
    "mode http (inherited",
    "send-proxy-v2-ssl-cn",
    "Lua",
    "UNIX sockets are not supported",
];
/// ACL and map files the configs name that the corpus does not hold: HAProxy refuses to load
/// without them too.
const ABSENT_FILES: &[&str] = &["cannot read '", "unable to load SSL certificate file '"];

/// The expected outcome of each file, and the features its other messages may name.
const EXPECTED: &[(&str, Kind, &[&[&str]])] = &[
    ("01", Kind::Full, &[]),
    ("02", Kind::Full, &[]),
    ("03", Kind::Full, &[]),
    ("04", Kind::Full, &[]),
    ("05", Kind::Full, &[]),
    ("06", Kind::Full, &[]),
    ("07", Kind::Full, &[]),
    ("08", Kind::Error, &[OUT_OF_SCOPE, USE_BACKEND, ACL_RULES]),
    ("09", Kind::Full, &[]),
    ("10", Kind::Full, &[]),
    ("11", Kind::Full, &[]),
    ("12", Kind::Full, &[]),
    ("13", Kind::Full, &[]),
    ("14", Kind::Full, &[]),
    ("15", Kind::Full, &[]),
    ("17", Kind::Full, &[]),
    ("18", Kind::Full, &[]),
    ("19", Kind::Full, &[]),
    ("20", Kind::Full, &[]),
    ("21", Kind::Full, &[]),
    ("22", Kind::Full, &[]),
    ("23", Kind::Full, &[]),
    // Server-side `ssl` (and its certificate, not in the corpus).
    ("24", Kind::Error, &[OUT_OF_SCOPE, PROXY, ABSENT_FILES]),
    ("25", Kind::Error, &[OUT_OF_SCOPE, ABSENT_FILES]),
    ("26", Kind::Full, &[]),
    ("27", Kind::Error, &[OUT_OF_SCOPE]),
    // Its certificate is not in the corpus (it loads fully with one: see
    // `corpus_28_loads_with_its_certificate`).
    ("28", Kind::Error, &[ABSENT_FILES]),
    ("29", Kind::Full, &[]),
    ("30", Kind::Full, &[]),
    ("31", Kind::Error, &[OUT_OF_SCOPE, ABSENT_FILES]),
    ("32", Kind::Full, &[]),
    ("33", Kind::Full, &[]),
    ("34", Kind::Full, &[]),
    (
        "35",
        Kind::Error,
        &[OUT_OF_SCOPE, PROXY, USE_BACKEND, ACL_RULES, ABSENT_FILES],
    ),
    ("36", Kind::Full, &[]),
    ("37", Kind::Full, &[]),
    ("38", Kind::Full, &[]),
    ("39", Kind::Error, &[OUT_OF_SCOPE, ABSENT_FILES]),
    // use_backend %[...map_str()]: its map file is not in the corpus.
    ("40", Kind::Error, &[ABSENT_FILES]),
    ("41", Kind::Full, &[]),
    ("42", Kind::Full, &[]),
    (
        "43",
        Kind::Error,
        &[&["multi-process mode was removed in HAProxy 2.5"]],
    ),
];

/// Host names the corpus's configs use that its `hosts` file lacks (file 06's servers): HAProxy
/// would not load 06 either without them.
const EXTRA_HOSTS: &str = "127.0.0.1 replica1\n127.0.0.1 replica2\n127.0.0.1 primary\n";

/// `shared/corpus/haproxy-tcp`, beside the repository (its copy in CI) or where
/// `LB_CORPUS_DIR` says.
fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LB_CORPUS_DIR") {
        return PathBuf::from(d);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/corpus/haproxy-tcp"))
        .find(|d| d.join("SOURCES.md").is_file())
        .expect("shared/corpus/haproxy-tcp not found beside the repository (set LB_CORPUS_DIR)")
}

/// `KEY=VALUE` lines of the corpus's `env` file.
fn corpus_env(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `lb -c` on `files` in a private mount namespace whose /etc/hosts is `hosts`.
fn check(dir: &Path, hosts: &Path, files: &[PathBuf]) -> (Kind, Vec<String>) {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(hosts)
        .arg(env!("CARGO_BIN_EXE_lb"))
        .arg("-c")
        .current_dir(dir)
        .envs(corpus_env(dir));
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .output()
        .expect("run unshare (needs root and util-linux)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // As the check script: HTTP-only keywords are ignored by HAProxy too in tcp mode.
    let notes: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("HTTP-only"))
        .filter(|l| {
            l.contains("not supported")
                || l.contains("ignored")
                || (!out.status.success() && !l.contains(": warning: "))
        })
        .filter(|l| !l.starts_with("lb: configuration has") && !l.starts_with("Configuration file"))
        .map(str::to_owned)
        .collect();
    let kind = if !out.status.success() {
        Kind::Error
    } else if notes.is_empty() {
        Kind::Full
    } else {
        Kind::Partial
    };
    (kind, notes)
}

#[test]
fn every_corpus_config_loads_as_far_as_lb_supports_it() {
    let dir = corpus_dir();
    let hosts = std::env::temp_dir().join(format!("lb-corpus-hosts-{}", std::process::id()));
    let base = std::fs::read_to_string(dir.join("hosts")).unwrap();
    std::fs::write(&hosts, base + EXTRA_HOSTS).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    names.sort();
    let mut problems = Vec::new();
    let (mut full, mut partial, mut error) = (0, 0, 0);
    for path in &names {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let n = &file[..2];
        if n == "16" {
            continue; // loaded with 15
        }
        let mut files = vec![path.clone()];
        if n == "15" {
            files.push(dir.join("16-percona-percona-docker-pxc-external-check.cfg"));
        }
        let Some((_, want, allowed)) = EXPECTED.iter().find(|(k, _, _)| *k == n) else {
            problems.push(format!("{file}: not in EXPECTED"));
            continue;
        };
        let (kind, notes) = check(&dir, &hosts, &files);
        match kind {
            Kind::Full => full += 1,
            Kind::Partial => partial += 1,
            Kind::Error => error += 1,
        }
        if kind != *want {
            problems.push(format!(
                "{file}: {kind:?}, expected {want:?}:\n  {}",
                notes.join("\n  ")
            ));
            continue;
        }
        for note in &notes {
            if !allowed
                .iter()
                .flat_map(|a| a.iter())
                .any(|w| note.contains(w))
            {
                problems.push(format!("{file}: unexpected message: {note}"));
            }
        }
    }
    let _ = std::fs::remove_file(&hosts);
    eprintln!(
        "corpus: {full} full, {partial} partial, {error} error, of {}",
        full + partial + error
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(full + partial + error, EXPECTED.len());
}

/// File 28 with a certificate where it names one (`/certs/lelylan-mqtt.pem`, which the corpus
/// does not hold): its TLS bind loads; `tune.maxaccept` is all it lacks then.
#[test]
fn corpus_28_loads_with_its_certificate() {
    let dir = corpus_dir();
    let tmp = std::env::temp_dir().join(format!("lb-corpus-28-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (crt, key) = (tmp.join("c.pem"), tmp.join("k.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mqtt.lelylan.com",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    let pem = tmp.join("lelylan-mqtt.pem");
    let both = [std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&pem, both).unwrap();
    let src = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("28-"))
        .unwrap();
    let text = std::fs::read_to_string(&src).unwrap();
    assert!(text.contains("/certs/lelylan-mqtt.pem"));
    let cfg = tmp.join("28.cfg");
    std::fs::write(
        &cfg,
        text.replace("/certs/lelylan-mqtt.pem", &pem.display().to_string()),
    )
    .unwrap();
    let hosts = tmp.join("hosts");
    let base = std::fs::read_to_string(dir.join("hosts")).unwrap();
    std::fs::write(&hosts, base + EXTRA_HOSTS).unwrap();
    let (kind, notes) = check(&dir, &hosts, &[cfg]);
    let _ = std::fs::remove_dir_all(&tmp);
    // Its one other gap: `tune.maxaccept` (a tuning keyword lb ignores with a warning).
    assert_eq!(kind, Kind::Partial, "{notes:?}");
    assert!(
        notes.len() == 1 && notes[0].contains("'tune.maxaccept' is not supported yet"),
        "{notes:?}"
    );
}
