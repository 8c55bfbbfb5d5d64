//! Several files, unreadable files, invalid UTF-8, the example configs.

use super::*;

#[test]
fn several_files_behave_like_one() {
    let a = temp_file("a.cfg", TIMEOUTS);
    let b = temp_file(
        "b.cfg",
        "frontend fe\n  bind :7000\n  default_backend be\nbackend be\n  server s 127.0.0.1:7001\n",
    );
    let c = load(&[a.clone(), b.clone()]).unwrap();
    // The defaults of the first file apply to the second.
    assert_eq!(
        c.frontends[0].timeouts.client,
        Some(Duration::from_secs(30))
    );
    assert_eq!(*c.frontends[0].loc.file, b);
    assert_eq!(c.frontends[0].loc.line, 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Errors in several files come in file order, each naming its file.
    let bad1 = temp_file("bad1.cfg", "backend x\n  retries x\n");
    let bad2 = temp_file("bad2.cfg", "backend x\n");
    let e = load(&[bad1.clone(), a, bad2.clone()]).unwrap_err();
    let shown = e.to_string();
    assert_eq!(
        shown,
        format!(
            "{}:2: 'retries': invalid number 'x' (expected an integer)\n{}:1: proxy name 'x' is \
             used twice (first at {}:1)",
            bad1.display(),
            bad2.display(),
            bad1.display()
        )
    );
}

#[test]
fn unreadable_file_is_an_error_without_line() {
    let e = load(&[PathBuf::from("/nonexistent/lb/x.cfg")]).unwrap_err();
    assert_eq!(e.0[0].loc, None);
    assert!(e.0[0]
        .message
        .contains("/nonexistent/lb/x.cfg: cannot read"));
}

#[test]
fn invalid_utf8_names_its_line() {
    let p = temp_file("utf8.cfg", "");
    std::fs::write(&p, b"global\n  daemon\n  user \xff\n").unwrap();
    let e = load(&[p]).unwrap_err();
    assert_eq!(e.0[0].loc.as_ref().unwrap().line, 3);
    assert!(e.0[0].message.contains("invalid UTF-8"));
}

#[test]
fn example_configs_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cfg") {
            found += 1;
            match load(std::slice::from_ref(&path)) {
                // Shown with --nocapture: what a user migrating this file would read.
                Ok(c) => c.warnings.iter().for_each(|w| eprintln!("{w}")),
                Err(e) => panic!("{} does not load:\n{e}", path.display()),
            }
        }
    }
    assert!(
        found >= 4,
        "expected the example configs in {}",
        dir.display()
    );
}
