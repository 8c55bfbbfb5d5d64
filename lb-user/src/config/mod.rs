//! haproxy.cfg (tcp subset): parse -> validate -> an immutable [`Config`], with `file:line` kept
//! on everything so that every error names where and why.

//!
//! Pipeline: read files -> [`lex`] (words per line, `HAProxy` quoting) -> [`parse`] (sections,
//! keywords, `defaults`, cross-checks) -> [`Config`]. Every error is collected, none is fatal on
//! its own, and nothing panics on any input.

pub mod ca;
mod checks;
pub mod cpu_map;
mod env;
mod lex;
mod model;
mod parse;
mod scalar;
pub mod state_file;
#[cfg(test)]
mod tests;
mod tls;

pub use checks::*;
pub use model::*;
pub use parse::master_socket;
/// Durations as HAProxy writes them (`10s`, `500ms`), for the runtime API too.
pub(crate) use scalar::{parse_time, TimeUnit};
pub use tls::*;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One configuration error, printed as `FILE:LINE: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// `None` for errors about a whole file (cannot read it).
    pub loc: Option<Loc>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every error found in a configuration (loading does not stop at the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// `-dr` (HAProxy's `GTUNE_RESOLVE_DONTFAIL`): every server's address methods end with
/// `none`, so a name that does not resolve starts the server in MAINT (resolution) instead of
/// failing the load. Set once, before the first load; reloads keep it, as HAProxy's process.
static RESOLVE_DONTFAIL: AtomicBool = AtomicBool::new(false);

/// Turns `-dr` on for every load from now on.
pub fn ignore_resolution_failures() {
    RESOLVE_DONTFAIL.store(true, Ordering::Relaxed);
}

fn resolution_failures_ignored() -> bool {
    RESOLVE_DONTFAIL.load(Ordering::Relaxed)
}

/// Reads, parses and validates the given files in order, as `haproxy -f A -f B` does (sections
/// continue across files); a directory stands for its `.cfg` files, in name order
/// ([`crate::outside::cfg_files`]).
pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match crate::outside::cfg_files(path) {
            Ok(Some(in_dir)) => files.extend(in_dir),
            Ok(None) => files.push(path.clone()),
            Err(e) => errors.push(ConfigError {
                loc: None,
                message: format!("{}: cannot read: {e}", path.display()),
            }),
        }
    }
    if files.is_empty() && errors.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        errors.push(ConfigError {
            loc: None,
            message: format!("{}: no configuration file (no .cfg file)", names.join(", ")),
        });
    }
    let mut texts = Vec::new();
    for path in &files {
        match crate::outside::read(path) {
            Ok(bytes) => texts.push((Arc::new(path.clone()), bytes)),
            Err(e) => errors.push(ConfigError {
                loc: None,
                message: format!("{}: cannot read: {e}", path.display()),
            }),
        }
    }
    let files: Vec<(Arc<PathBuf>, String)> = texts
        .into_iter()
        .map(|(path, bytes)| {
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    // Keep going with the valid part replaced; report the first bad line.
                    let bytes = e.into_bytes();
                    let valid = std::str::from_utf8(&bytes)
                        .map_or_else(|u| &bytes[..u.valid_up_to()], str::as_bytes);
                    let line = bytecount_newlines(valid) + 1;
                    errors.push(ConfigError {
                        loc: Some(Loc {
                            file: Arc::clone(&path),
                            line: u32::try_from(line).unwrap_or(u32::MAX),
                        }),
                        message: "invalid UTF-8".to_owned(),
                    });
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            (path, text)
        })
        .collect();
    load_files(&files, errors)
}

/// Parses and validates configuration text; `file` is only used to name locations.
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_files(
        &[(Arc::new(PathBuf::from(file)), text.to_owned())],
        Vec::new(),
    )
}

/// Tokenizes every file in order, as one stream of lines, then parses and validates it, with
/// the environment its `global` section sets ([`env`]).
fn load_files(
    files: &[(Arc<PathBuf>, String)],
    errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    env::loading(|| load_files_in_env(files, errors))
}

fn load_files_in_env(
    files: &[(Arc<PathBuf>, String)],
    mut errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    let mut lines = Vec::new();
    let mut lex_errors = Vec::new();
    for (path, text) in files {
        lines.extend(lex::tokenize(path, text, &mut lex_errors));
    }
    errors.extend(lex_errors.into_iter().map(|(loc, message)| ConfigError {
        loc: Some(loc),
        message,
    }));
    let diag = parse::Diag {
        errors,
        warnings: Vec::new(),
    };
    let (config, mut diag) = parse::build(&lines, diag);
    let order: Vec<Arc<PathBuf>> = files.iter().map(|(p, _)| Arc::clone(p)).collect();
    parse::sort_diag(&mut diag, &order);
    match config {
        Some(mut config) if diag.errors.is_empty() => {
            config.warnings = diag.warnings;
            Ok(config)
        }
        _ => Err(ConfigErrors(diag.errors)),
    }
}

/// Number of `\n` in `bytes` (to name the line of invalid UTF-8).
fn bytecount_newlines(bytes: &[u8]) -> usize {
    bytes.split(|b| *b == b'\n').count() - 1
}

/// Splits one configuration line into words with the tokenizer's rules (for other modules'
/// tests).
#[cfg(test)]
pub(crate) fn split_words_for_tests(line: &str) -> Vec<String> {
    lex::split_words(line).expect("valid test line")
}
