//! Tokenizer: splits haproxy.cfg text into lines of words with `HAProxy`'s quoting rules, keeping
//! the `file:line` of every line.
//!
//! Rules (`HAProxy` `parse_line`): blank lines and `#` comments are skipped; words are separated by
//! spaces and tabs; `"..."` and `'...'` quote (quotes are removed and may sit inside a word, as in
//! `a"b c"d`); outside single quotes a backslash escapes ` `, `#`, `\`, `'`, `"` and `$`, and
//! `\r`, `\n`, `\t`, `\xHH` give the control byte; any other backslash is kept as written (so
//! regexes like `\d` survive). Inside double quotes `$NAME` and `${NAME}` expand to the
//! environment variable (empty when unset), as `HAProxy` does.

use std::sync::Arc;

use super::Loc;
use std::path::PathBuf;

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
    for (idx, raw) in text.split('\n').enumerate() {
        let loc = Loc {
            file: Arc::clone(file),
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
        };
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match split_words(raw) {
            Ok(words) if words.is_empty() => {}
            Ok(words) => lines.push(Line { loc, words }),
            Err(msg) => errors.push((loc, msg)),
        }
    }
    lines
}

/// Splits one line into words. Returns no words for blank and comment-only lines.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    if line.contains('\0') {
        return Err("line contains a NUL byte".to_owned());
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    // A word exists once any character or a quote pair was seen (so `""` is an empty word).
    let mut in_word = false;
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
                cur.push(c);
                i += 1;
            }
            (_, '\\') => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(
                        "backslash at end of line (HAProxy has no line continuation)".to_owned(),
                    );
                };
                in_word = true;
                match next {
                    ' ' | '#' | '\\' | '\'' | '"' | '$' => {
                        cur.push(next);
                        i += 2;
                    }
                    'r' => {
                        cur.push('\r');
                        i += 2;
                    }
                    'n' => {
                        cur.push('\n');
                        i += 2;
                    }
                    't' => {
                        cur.push('\t');
                        i += 2;
                    }
                    'x' => {
                        let hex: String = chars.iter().skip(i + 2).take(2).collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(b)
                                if hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()) =>
                            {
                                cur.push(char::from(b));
                                i += 4;
                            }
                            _ => {
                                return Err(format!(
                                    "invalid escape '\\x{hex}' (expected two hex digits)"
                                ))
                            }
                        }
                    }
                    other => {
                        cur.push('\\');
                        cur.push(other);
                        i += 2;
                    }
                }
            }
            (Some('"'), '$') => {
                let (value, used) = expand_env(&chars[i + 1..])?;
                cur.push_str(&value);
                i += 1 + used;
            }
            (Some(_), _) => {
                cur.push(c);
                i += 1;
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                quote_start = i;
                in_word = true;
                i += 1;
            }
            (None, '#') => break,
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
            }
            (None, _) => {
                cur.push(c);
                in_word = true;
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
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Expands `NAME` or `{NAME}` (the text after a `$` inside double quotes). Returns the value and
/// the number of characters consumed after the `$`. A `$` not followed by a name is literal.
fn expand_env(rest: &[char]) -> Result<(String, usize), String> {
    let braced = rest.first() == Some(&'{');
    let start = usize::from(braced);
    let name: String = rest[start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect();
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_ok {
        if braced {
            return Err("invalid environment variable reference '${' (expected ${NAME})".into());
        }
        return Ok(("$".to_owned(), 0));
    }
    let mut used = start + name.chars().count();
    if braced {
        if rest.get(used) != Some(&'}') {
            return Err(format!(
                "unterminated environment variable reference '${{{name}'"
            ));
        }
        used += 1;
    }
    Ok((std::env::var(&name).unwrap_or_default(), used))
}
