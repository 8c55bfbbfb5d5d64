//! The server-state file keywords: `server-state-file` and `server-state-base` (global),
//! `load-server-state-from-file` and `server-state-file-name` (backends). They are parsed into
//! the model ([`Global::server_state_file`], [`Global::server_state_base`],
//! [`Backend::server_state`]); `crate::state::file` applies the file at start.
//!
//! [`Global::server_state_file`]: super::super::Global::server_state_file
//! [`Global::server_state_base`]: super::super::Global::server_state_base
//! [`Backend::server_state`]: super::super::Backend::server_state

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::super::lex::Line;
use super::super::state_file::{address_of, parse, StateLine};
use super::super::{Backend, InitAddr, ServerStateFrom};
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

impl Parser {
    /// `init-addr last`: the address a server's backend's state file holds for it, read at
    /// load as `HAProxy` reads it before trying the other methods. A server written as a host
    /// name takes it when `last` comes before the method that gave its address (or when every
    /// other method failed); a server that nothing gave an address is an error.
    pub(super) fn state_file_addresses(&mut self, backends: &mut [Backend]) {
        let mut files: HashMap<PathBuf, Vec<StateLine>> = HashMap::new();
        for be in backends.iter_mut() {
            let path = self.global.server_state_file_of(be);
            for s in &mut be.servers {
                if !s.state_addr_wins() {
                    continue;
                }
                let lines = path.as_ref().map_or(&[][..], |p| {
                    files.entry(p.clone()).or_insert_with(|| {
                        crate::outside::read_to_string(p)
                            .map(|t| parse(&t).0)
                            .unwrap_or_default()
                    })
                });
                if let Some(ip) = address_of(lines, &be.name, &s.name) {
                    s.addr = SocketAddr::new(ip, s.addr.port());
                    s.unresolved = false;
                    s.init_addr_used = s.init_addr.iter().position(|m| *m == InitAddr::Last);
                } else if let Some(why) = self.waiting_for_state.get(&s.loc) {
                    let name = s.fqdn.as_deref().unwrap_or_default();
                    let why = why
                        .clone()
                        .unwrap_or_else(|| "no init-addr method gave an address".to_owned());
                    self.diag.err(
                        &s.loc,
                        format!(
                            "server '{}/{}': {why}, and no server-state file has an address for \
                             '{name}' (add 'init-addr libc,none' to start it in MAINT instead)",
                            be.name, s.name
                        ),
                    );
                }
            }
        }
    }
}
