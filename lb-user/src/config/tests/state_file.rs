//! The server-state file keywords (`server-state-file`, `server-state-base`,
//! `load-server-state-from-file`, `server-state-file-name`): what they put in the model, what they
//! refuse, and the warning that the runtime does not apply them yet.

use std::path::Path;

use super::super::{Global, ServerStateFrom};
use super::*;

/// The first error's message (the configs below have one).
fn first_error(text: &str) -> String {
    errs(text).0[0].message.clone()
}

#[test]
fn global_state_file_and_base_are_stored() {
    let c = ok(&format!(
        "global\n  server-state-base /var/lib/lb/\n  server-state-file state\n{TIMEOUTS}\
         backend be\n  load-server-state-from-file global\n  server s 127.0.0.1:1\n"
    ));
    let g = &c.global;
    assert_eq!(g.server_state_base, Some(PathBuf::from("/var/lib/lb/")));
    assert_eq!(g.server_state_file, Some(PathBuf::from("state")));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::Global);
    // Relative to the base, as HAProxy's srv_state_get_filepath.
    assert_eq!(
        g.server_state_file_of(&c.backends[0]),
        Some(PathBuf::from("/var/lib/lb/state"))
    );
    // Until the runtime applies the file, lb -c says so.
    assert!(has_warning(
        &c,
        2,
        "'server-state-base' is not supported yet (server-state file); ignored"
    ));
    assert!(has_warning(
        &c,
        3,
        "'server-state-file' is not supported yet"
    ));
    assert!(has_warning(
        &c,
        10,
        "'load-server-state-from-file' is not supported yet"
    ));
}

#[test]
fn state_paths_resolve_as_haproxy() {
    let mut g = Global {
        server_state_base: None,
        ..ok(&format!("{TIMEOUTS}backend be\n")).global
    };
    // No base: the name as written (relative to the working directory).
    assert_eq!(g.server_state_path(Path::new("s")), PathBuf::from("s"));
    g.server_state_base = Some(PathBuf::from("/b"));
    assert_eq!(g.server_state_path(Path::new("s")), PathBuf::from("/b/s"));
    assert_eq!(
        g.server_state_path(Path::new("d/s")),
        PathBuf::from("/b/d/s")
    );
    // Absolute names ignore the base.
    assert_eq!(
        g.server_state_path(Path::new("/abs/s")),
        PathBuf::from("/abs/s")
    );
}

#[test]
fn global_state_keywords_reject_bad_arguments() {
    for kw in ["server-state-file", "server-state-base"] {
        assert_eq!(
            first_error(&format!("global\n  {kw}\n")),
            format!("'{kw}': expects 1 argument, got 0")
        );
        assert_eq!(
            first_error(&format!("global\n  {kw} a b\n")),
            format!("'{kw}': unexpected argument 'b'")
        );
        assert_eq!(
            first_error(&format!("global\n  {kw} \"\"\n")),
            format!("'{kw}': expects a path")
        );
    }
}

#[test]
fn global_state_file_set_twice_keeps_the_first() {
    let c = ok(&format!(
        "global\n  server-state-file /a\n  server-state-file /b\n{TIMEOUTS}backend be\n"
    ));
    assert_eq!(c.global.server_state_file, Some(PathBuf::from("/a")));
    assert!(has_warning(
        &c,
        3,
        "'server-state-file' is already set (first at t.cfg:2); this one is ignored"
    ));
}

#[test]
fn load_server_state_from_file_values_and_inheritance() {
    let c = ok(&format!(
        "global\n  server-state-file /s\n{TIMEOUTS}  load-server-state-from-file global\n\
         backend inherits\n\
         backend local_default\n  load-server-state-from-file local\n\
         backend local_named\n  load-server-state-from-file local\n  server-state-file-name bk.state\n\
         backend local_use_name\n  load-server-state-from-file local\n  server-state-file-name use-backend-name\n\
         backend local_empty\n  load-server-state-from-file local\n  server-state-file-name\n\
         backend off\n  load-server-state-from-file none\n\
         backend name_only\n  load-server-state-from-file none\n  server-state-file-name x\n"
    ));
    let state = |name: &str| {
        c.backends
            .iter()
            .find(|b| b.name == name)
            .unwrap()
            .server_state
            .clone()
    };
    assert_eq!(state("inherits"), ServerStateFrom::Global);
    assert_eq!(
        state("local_default"),
        ServerStateFrom::Local("local_default".into())
    );
    assert_eq!(
        state("local_named"),
        ServerStateFrom::Local("bk.state".into())
    );
    assert_eq!(
        state("local_use_name"),
        ServerStateFrom::Local("local_use_name".into())
    );
    assert_eq!(
        state("local_empty"),
        ServerStateFrom::Local("local_empty".into())
    );
    assert_eq!(state("off"), ServerStateFrom::None);
    // A file name without `local` changes nothing (as in HAProxy).
    assert_eq!(state("name_only"), ServerStateFrom::None);
    let g = &c.global;
    let named = c.backends.iter().find(|b| b.name == "local_named").unwrap();
    assert_eq!(
        g.server_state_file_of(named),
        Some(PathBuf::from("bk.state"))
    );
    let off = c.backends.iter().find(|b| b.name == "off").unwrap();
    assert_eq!(g.server_state_file_of(off), None);
}

#[test]
fn no_load_server_state_means_none() {
    let c = ok(&format!("{TIMEOUTS}backend be\n  server s 127.0.0.1:1\n"));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::None);
    assert_eq!(c.global.server_state_file, None);
    assert_eq!(c.global.server_state_base, None);
}

#[test]
fn load_server_state_rejects_bad_values() {
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file both\n"
        )),
        "'load-server-state-from-file': unknown value 'both' (expected global, local or none)"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file\n"
        )),
        "'load-server-state-from-file': expects 1 argument, got 0"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  load-server-state-from-file local x\n"
        )),
        "'load-server-state-from-file': unexpected argument 'x'"
    );
    assert_eq!(
        first_error(&format!(
            "{TIMEOUTS}backend be\n  server-state-file-name a b\n"
        )),
        "'server-state-file-name': unexpected argument 'b'"
    );
}

#[test]
fn state_keywords_where_haproxy_ignores_them() {
    let c = ok(&format!(
        "{TIMEOUTS}  server-state-file-name d\n\
         frontend fe\n  bind :1\n  load-server-state-from-file global\n  server-state-file-name f\n  default_backend be\n\
         backend be\n  load-server-state-from-file global\n  server s 127.0.0.1:1\n"
    ));
    // defaults: accepted, not passed on.
    assert!(has_warning(
        &c,
        6,
        "'server-state-file-name' in a defaults section is not passed on to backends"
    ));
    // A frontend has no servers.
    assert!(has_warning(
        &c,
        9,
        "'load-server-state-from-file' ignored because frontend 'fe' has no backend capability"
    ));
    assert!(has_warning(
        &c,
        10,
        "'server-state-file-name' ignored because frontend 'fe'"
    ));
    // `global` with no global file: HAProxy warns too.
    assert!(has_warning(
        &c,
        13,
        "backend 'be': 'load-server-state-from-file global' but the global section has no \
         'server-state-file'"
    ));
    assert_eq!(c.backends[0].server_state, ServerStateFrom::Global);
    assert_eq!(c.global.server_state_file_of(&c.backends[0]), None);
}
