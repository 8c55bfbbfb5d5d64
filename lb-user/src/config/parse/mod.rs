//! Lines -> sections -> validated [`Config`]. This file holds what every section shares: the
//! diagnostics, the split into sections, the [`Parser`] state and the dispatch by section kind.
//! Each section kind and concern has its own file; a keyword lives in one table entry there
//! (`global`: [`global`], proxy lines: [`proxy_kw`], `option`: [`option`], `bind`: [`bind`],
//! `server`/`default-server`: [`server_kw`], rule actions: [`tcp_rules`]).

mod bind;
mod checks;
mod finish;
mod global;
mod log;
mod option;
mod proxy;
mod proxy_kw;
mod resolvers;
mod server;
mod server_kw;
mod source;
mod state_file;
mod stats;
mod stick;
mod suggest;
mod tcp_rules;
mod userlist;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::lex::{is_section_word, Line};
use super::{Config, ConfigError, Global, Loc, StatsProxy, Userlist, Warning};
use crate::acl::ConfigLoader;
use proxy::{Kind, ProxyDraft, ProxyOpts};
pub use stats::master_socket;

/// Errors and warnings collected while loading; loading never stops at the first error.
#[derive(Debug, Default)]
pub(crate) struct Diag {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<Warning>,
}

impl Diag {
    pub(crate) fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        self.errors.push(ConfigError {
            loc: Some(loc.clone()),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Warning {
            loc: loc.clone(),
            message: message.into(),
        });
    }
}

/// Checks that `line` has between `min` and `max` words after its first `kw_words` words.
fn arity(diag: &mut Diag, line: &Line, kw_words: usize, min: usize, max: usize) -> bool {
    let kw = line.words[..kw_words.min(line.words.len())].join(" ");
    let n = line.words.len().saturating_sub(kw_words);
    if n < min {
        let what = if min == 1 { "argument" } else { "arguments" };
        let exp = if min == max {
            format!("{min} {what}")
        } else {
            format!("at least {min} {what}")
        };
        diag.err(&line.loc, format!("'{kw}': expects {exp}, got {n}"));
        return false;
    }
    if n > max {
        let extra = &line.words[kw_words + max];
        diag.err(&line.loc, format!("'{kw}': unexpected argument '{extra}'"));
        return false;
    }
    true
}

/// A section header and its lines.
struct Section<'a> {
    header: &'a Line,
    body: &'a [Line],
}

/// Splits the lines of all files (in order, as one stream) into sections. Lines before the
/// first section header are errors.
fn sections<'a>(lines: &'a [Line], diag: &mut Diag) -> Vec<Section<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if !is_section_word(&line.words[0]) {
            diag.err(
                &line.loc,
                format!(
                    "'{}' outside of any section (expected global, defaults, frontend, backend, \
                     listen, ...)",
                    line.words[0]
                ),
            );
            i += 1;
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| is_section_word(&l.words[0]))
            .map_or(lines.len(), |p| i + 1 + p);
        out.push(Section {
            header: line,
            body: &lines[i + 1..end],
        });
        i = end;
    }
    out
}

/// Builds a [`Config`] from tokenized lines (all files, in order), adding to `diag`. The
/// returned config is `None` when there are errors; its `warnings` are left empty for the caller.
pub(crate) fn build(lines: &[Line], diag: Diag) -> (Option<Config>, Diag) {
    let mut p = Parser {
        diag,
        global: global::builtin(),
        defaults: ProxyOpts::builtin(),
        named_defaults: HashMap::new(),
        proxies: Vec::new(),
        stats_sections: HashMap::new(),
        stats_backends: HashMap::new(),
        stats: Vec::new(),
        userlists: Vec::new(),
        fe_names: HashMap::new(),
        be_names: HashMap::new(),
        resolvers: HashMap::new(),
        resolver_refs: Vec::new(),
        state_locs: HashMap::new(),
        expr_refs: Vec::new(),
        waiting_for_state: HashMap::new(),
        peers: HashMap::new(),
        loader: ConfigLoader::default(),
    };
    let secs = sections(lines, &mut p.diag);
    for sec in &secs {
        p.section(sec);
    }
    let config = p.finish();
    (config, p.diag)
}

/// Everything read so far; each section kind's file adds its `impl Parser` methods.
struct Parser {
    diag: Diag,
    global: Global,
    /// The settings of the last `defaults` section (built-ins before the first one).
    defaults: ProxyOpts,
    named_defaults: HashMap<String, (ProxyOpts, Loc)>,
    proxies: Vec<ProxyDraft>,
    /// Stats-only sections (accepted, not served), by name.
    stats_sections: HashMap<String, Loc>,
    /// Stats backends (`backend` with `stats enable|uri`), by name: a frontend forwarding to one
    /// serves its page.
    stats_backends: HashMap<String, StatsProxy>,
    /// The stats pages, in file order.
    stats: Vec<StatsProxy>,
    /// `userlist` sections, in file order.
    userlists: Vec<Userlist>,
    /// Names used by frontend-capable and backend-capable proxies.
    fe_names: HashMap<String, Loc>,
    be_names: HashMap<String, Loc>,
    /// `resolvers` sections by name.
    resolvers: HashMap<String, Loc>,
    /// `resolvers NAME` on server lines, checked once every section is read.
    resolver_refs: Vec<(String, Loc)>,
    /// Where `server-state-file` and `server-state-base` were set (each is set once).
    state_locs: HashMap<String, Loc>,
    /// Backends and servers named by expressions, checked once every section is read.
    expr_refs: Vec<tcp_rules::ExprRef>,
    /// Servers (by `be/server` location) whose every `init-addr` method but `last` failed,
    /// with the resolver's error: the server-state file decides at the end.
    waiting_for_state: HashMap<Loc, Option<String>>,
    /// `peers` sections by name.
    peers: HashMap<String, Loc>,
    /// Files read by ACLs and maps, and their pattern references.
    loader: ConfigLoader,
}

impl Parser {
    fn section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        let word = h.words[0].as_str();
        match word {
            "global" => {
                arity(&mut self.diag, h, 1, 0, 0);
                for line in sec.body {
                    self.global_line(line);
                }
            }
            "defaults" => self.proxy_section(Kind::Defaults, sec),
            "frontend" => self.proxy_section(Kind::Frontend, sec),
            "backend" => self.proxy_section(Kind::Backend, sec),
            "listen" => self.proxy_section(Kind::Listen, sec),
            "resolvers" => self.resolvers_section(sec),
            "userlist" => self.userlist_section(sec),
            "peers" => self.peers_section(sec),
            _ => self.diag.warn(
                &h.loc,
                format!(
                    "'{word}' section is not supported; ignored ({} lines)",
                    sec.body.len()
                ),
            ),
        }
    }

    /// The warning for a keyword lb accepts but does not act on yet.
    fn not_yet(&mut self, line: &Line, kw: &str, feature: &str) {
        self.diag.warn(
            &line.loc,
            format!("'{kw}' is not supported yet ({feature}); ignored"),
        );
    }
}

/// Stable-sorts diagnostics by file order, then line.
pub(crate) fn sort_diag(diag: &mut Diag, files: &[Arc<PathBuf>]) {
    let rank = |loc: &Loc| {
        let f = files
            .iter()
            .position(|p| **p == *loc.file)
            .unwrap_or(usize::MAX);
        (f, loc.line)
    };
    diag.errors
        .sort_by_key(|e| e.loc.as_ref().map_or((0, 0), &rank));
    diag.warnings.sort_by_key(|w| rank(&w.loc));
}
