//! Tokenizer: splits haproxy.cfg text into lines of words with `HAProxy`'s quoting rules, keeping
//! the `file:line` of every line.
//!
//! Rules (`HAProxy`'s `parse_line`): a line ends at LF or CR; blank lines and `#` comments
//! (outside quotes) are skipped; words are separated by white space; `"..."` and `'...'` quote
//! (quotes are removed and may sit inside a word, as in `a"b c"d`). Outside single quotes a
//! backslash escapes ` `, `\`, `#`, `'`, `"` (and `$` inside double quotes); `\r`, `\n`, `\t` and
//! `\xHH` give the control byte; any other backslash is kept as written (so regexes like `\d`
//! survive). Inside double quotes `$NAME`, `${NAME}`, `${NAME-default}` and `${NAME[*]}` (one
//! word per space-separated part) expand environment variables (empty when unset), and
//! `$.FILE`/`$.LINE` the current position.

use std::path::PathBuf;
use std::sync::Arc;

use super::Loc;

/// One non-empty configuration line, split into words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) loc: Loc,
    pub(crate) words: Vec<String>,
}

/// Splits `text` (one file) into [`Line`]s. Lines that cannot be tokenized are reported in
/// `errors` as `(loc, message)` and skipped.
pub(crate) fn tokenize(
    file: &Arc<PathBuf>,
    text: &str,
    errors: &mut Vec<(Loc, String)>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    // In `global`, whose environment keywords apply from their line on (`config::env`).
    let mut in_global = false;
    for (idx, raw) in text.split('\n').enumerate() {
        let loc = Loc {
            file: Arc::clone(file),
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
        };
        // As in HAProxy, a CR ends the line (CRLF files work; the rest of a CR line is dropped).
        let raw = raw.split('\r').next().unwrap_or("");
        match split_words_at(raw, &loc) {
            Ok(words) if words.is_empty() => {}
            Ok(words) => {
                if is_section_word(&words[0]) {
                    in_global = words[0] == "global";
                } else if in_global {
                    super::env::apply(&words);
                }
                lines.push(Line { loc, words });
            }
            Err(msg) => errors.push((loc, msg)),
        }
    }
    lines
}

/// Splits one line into words (for tests: `$.FILE`/`$.LINE` give `-` and `0`).
#[cfg(test)]
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let loc = Loc {
        file: Arc::new(PathBuf::from("-")),
        line: 0,
    };
    split_words_at(line, &loc)
}

/// White space as C's `isspace` (what `HAProxy` separates words with).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c')
}

/// Splits one line into words; `loc` feeds `$.FILE` and `$.LINE`. Returns no words for blank and
/// comment-only lines.
fn split_words_at(line: &str, loc: &Loc) -> Result<Vec<String>, String> {
    if line.contains('\0') {
        return Err("line contains a NUL byte".to_owned());
    }
    let mut out = Words::default();
    let mut quote: Option<char> = None;
    let mut quote_start = 0usize;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => {
                quote = None;
                i += 1;
            }
            (Some('\''), _) => {
                out.push(c);
                i += 1;
            }
            (_, '\\') => {
                let next = chars.get(i + 1).copied();
                let (ch, used) = match next {
                    Some(n @ (' ' | '\\' | '#' | '\'' | '"')) => (n, 2),
                    Some('$') if quote == Some('"') => ('$', 2),
                    Some('r') => ('\r', 2),
                    Some('n') => ('\n', 2),
                    Some('t') => ('\t', 2),
                    Some('x') => {
                        let hex: String = chars.iter().skip(i + 2).take(2).collect();
                        if hex.len() != 2 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                            return Err(format!(
                                "invalid escape '\\x{hex}' (expected two hex digits)"
                            ));
                        }
                        let b = u8::from_str_radix(&hex, 16).unwrap_or(0);
                        (char::from(b), 4)
                    }
                    // Not an escape sequence: the backslash stays.
                    _ => ('\\', 1),
                };
                out.push(ch);
                i += used;
            }
            (Some('"'), '$') => {
                i += 1 + expand_env(&chars[i + 1..], loc, &mut out)?;
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                quote_start = i;
                out.in_word = true;
                i += 1;
            }
            (None, '#') => break,
            (None, _) if is_space(c) => {
                out.end_word();
                i += 1;
            }
            // Any other character, quoted or not.
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!(
            "unmatched quote {q} (opened at column {})",
            quote_start + 1
        ));
    }
    out.end_word();
    Ok(out.done)
}

/// Words being built.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    cur: String,
    /// A word exists once any character or a quote was seen (so `""` is an empty word).
    in_word: bool,
}

impl Words {
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }

    fn end_word(&mut self) {
        if self.in_word {
            self.done.push(std::mem::take(&mut self.cur));
            self.in_word = false;
        }
    }
}

/// Expands the variable reference after a `$` inside double quotes into `out`. Returns the
/// number of characters used after the `$`.
fn expand_env(rest: &[char], loc: &Loc, out: &mut Words) -> Result<usize, String> {
    let braced = rest.first() == Some(&'{');
    let mut i = usize::from(braced);
    let first = rest.get(i).copied();
    if !first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.') {
        return Err(
            "invalid environment variable name after '$' (expected a letter, '_' or '.'; write \
             \\$ for a literal '$')"
                .to_owned(),
        );
    }
    let start = i;
    if first == Some('.') {
        i += 1;
    }
    while rest
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
    {
        i += 1;
    }
    let name: String = rest[start..i].iter().collect();
    let mut value = match name.as_str() {
        ".LINE" => Some(loc.line.to_string()),
        ".FILE" => Some(loc.file.display().to_string()),
        _ if name.starts_with('.') => {
            return Err(format!(
                "unsupported pseudo-variable '${name}' (lb knows $.FILE and $.LINE)"
            ))
        }
        _ => super::env::var(&name),
    };
    let mut word_expand = false;
    if braced {
        if rest.get(i) == Some(&'[') {
            if rest.get(i + 1) != Some(&'*') || rest.get(i + 2) != Some(&']') {
                return Err(format!(
                    "invalid word expansion in '${{{name}[' (expected [*])"
                ));
            }
            word_expand = true;
            i += 3;
        }
        if rest.get(i) == Some(&'-') {
            let Some(end) = rest[i..].iter().position(|c| *c == '}') else {
                return Err(format!("unmatched brace in '${{{name}'"));
            };
            if value.is_none() {
                value = Some(rest[i + 1..i + end].iter().collect());
            }
            i += end;
        }
        if rest.get(i) != Some(&'}') {
            return Err(format!("unmatched brace in '${{{name}'"));
        }
        i += 1;
    }
    for c in value.unwrap_or_default().chars() {
        if word_expand && is_space(c) {
            out.end_word();
        } else {
            out.push(c);
        }
    }
    Ok(i)
}

/// Sections lb skips entirely (with one warning each).
const IGNORED_SECTIONS: &[&str] = &[
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
    "log-forward",
    "fcgi-app",
    "crt-store",
];

/// Whether `word` starts a section.
pub(crate) fn is_section_word(word: &str) -> bool {
    matches!(
        word,
        "global"
            | "defaults"
            | "frontend"
            | "backend"
            | "listen"
            | "resolvers"
            | "userlist"
            | "peers"
    ) || IGNORED_SECTIONS.contains(&word)
}
