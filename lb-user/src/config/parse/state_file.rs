//! The server-state file keywords: `server-state-file` and `server-state-base` (global),
//! `load-server-state-from-file` and `server-state-file-name` (backends). They are parsed into
//! the model ([`Global::server_state_file`], [`Global::server_state_base`],
//! [`Backend::server_state`]); applying the file is the runtime's job.
//!
//! [`Global::server_state_file`]: super::super::Global::server_state_file
//! [`Global::server_state_base`]: super::super::Global::server_state_base
//! [`Backend::server_state`]: super::super::Backend::server_state

use std::path::PathBuf;

use super::super::lex::Line;
use super::super::ServerStateFrom;
use super::proxy::{Kind, ProxyDraft};
use super::{arity, Parser};

/// `load-server-state-from-file` as written (`local` gets its file name once the backend is
/// read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum StateLoad {
    #[default]
    None,
    Global,
    Local,
}

/// The warning that the runtime does not apply server-state files yet. Remove its calls once
/// it does.
fn runtime_ignores(p: &mut Parser, line: &Line) {
    p.not_yet(line, &line.words[0], "server-state file");
}

/// Global `server-state-file PATH`, `server-state-base DIR`: set once (a later line is ignored
/// with a warning, as `HAProxy` keeps the first).
pub(super) fn global_path(p: &mut Parser, line: &Line) {
    let kw = line.words[0].as_str();
    if !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    let path = &line.words[1];
    if path.is_empty() {
        p.diag.err(&line.loc, format!("'{kw}': expects a path"));
        return;
    }
    let slot = if kw == "server-state-file" {
        &mut p.global.server_state_file
    } else {
        &mut p.global.server_state_base
    };
    if slot.is_some() {
        let first = p
            .state_locs
            .get(kw)
            .map_or_else(String::new, ToString::to_string);
        p.diag.warn(
            &line.loc,
            format!("'{kw}' is already set (first at {first}); this one is ignored, as in HAProxy"),
        );
        return;
    }
    *slot = Some(PathBuf::from(path));
    p.state_locs.insert(kw.to_owned(), line.loc.clone());
    runtime_ignores(p, line);
}

/// `load-server-state-from-file global|local|none` (backends and defaults).
pub(super) fn load_from_file(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let kw = "load-server-state-from-file";
    if !p.cap(px, line, kw, false, true) || !arity(&mut p.diag, line, 1, 1, 1) {
        return;
    }
    let load = match line.words[1].as_str() {
        "global" => StateLoad::Global,
        "local" => StateLoad::Local,
        "none" => StateLoad::None,
        other => {
            p.diag.err(
                &line.loc,
                format!("'{kw}': unknown value '{other}' (expected global, local or none)"),
            );
            return;
        }
    };
    px.opts.load_server_state = (load, Some(line.loc.clone()));
    runtime_ignores(p, line);
}

/// `server-state-file-name [use-backend-name|NAME]` (backends; `HAProxy` accepts it in
/// `defaults` but does not pass it on).
pub(super) fn file_name(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    let kw = "server-state-file-name";
    if !p.cap(px, line, kw, false, true) || !arity(&mut p.diag, line, 1, 0, 1) {
        return;
    }
    if px.kind == Kind::Defaults {
        p.diag.warn(
            &line.loc,
            format!(
                "'{kw}' in a defaults section is not passed on to backends (as in HAProxy); \
                 ignored"
            ),
        );
        return;
    }
    let name = match line.words.get(1).map(String::as_str) {
        None | Some("" | "use-backend-name") => px.name.clone(),
        Some(name) => name.to_owned(),
    };
    px.state_file_name = Some(name);
    runtime_ignores(p, line);
}

impl Parser {
    /// Where a backend reads its servers' states, with `HAProxy`'s warning for `global` without
    /// a global `server-state-file`.
    pub(super) fn server_state_of(&mut self, px: &ProxyDraft) -> ServerStateFrom {
        match &px.opts.load_server_state {
            (StateLoad::None, _) => ServerStateFrom::None,
            (StateLoad::Global, loc) => {
                if self.global.server_state_file.is_none() {
                    self.diag.warn(
                        loc.as_ref().unwrap_or(&px.loc),
                        format!(
                            "{}: 'load-server-state-from-file global' but the global section \
                             has no 'server-state-file'; no server state is loaded",
                            px.ctx()
                        ),
                    );
                }
                ServerStateFrom::Global
            }
            (StateLoad::Local, _) => ServerStateFrom::Local(
                px.state_file_name
                    .clone()
                    .unwrap_or_else(|| px.name.clone()),
            ),
        }
    }
}
