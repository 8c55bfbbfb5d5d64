//! Arguments of fetches and converters, `name(arg1,arg2)`, parsed as HAProxy's `make_arg_list`
//! does: comma-separated, single and double quotes, `\` escapes, empty arguments kept, typed
//! by the keyword's argument list.

use super::vars::VarName;

/// The type of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// A signed integer.
    Int,
    /// Any text (may be empty).
    Str,
    /// A backend name (checked once every section is read).
    Backend,
    /// A frontend name (checked once every section is read).
    Frontend,
    /// `[BACKEND/]SERVER` (checked once every section is read).
    Server,
    /// A variable name, or nothing (empty).
    Var,
}

impl ArgType {
    fn name(self) -> &'static str {
        match self {
            ArgType::Int => "integer",
            ArgType::Str => "string",
            ArgType::Backend => "backend",
            ArgType::Frontend => "frontend",
            ArgType::Server => "server",
            ArgType::Var => "variable",
        }
    }
}

/// What a keyword takes: the types in order, and how many are mandatory.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    pub types: &'static [ArgType],
    pub min: usize,
}

impl ArgSpec {
    pub const NONE: ArgSpec = ArgSpec { types: &[], min: 0 };
}

/// One parsed argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Int(i64),
    Str(String),
    Backend(String),
    Frontend(String),
    Server {
        backend: Option<String>,
        server: String,
    },
    /// `None`: the argument was empty.
    Var(Option<VarName>),
}

impl Arg {
    pub fn int(&self) -> i64 {
        match self {
            Arg::Int(i) => *i,
            _ => 0,
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Arg::Str(s) | Arg::Backend(s) | Arg::Frontend(s) => s,
            _ => "",
        }
    }
}

/// Parses the argument list that may start `s` (`(` ... `)`), returning the arguments and what
/// follows the list. Without `(`, the keyword has no arguments (an error when some are
/// mandatory).
pub fn parse(s: &str, spec: ArgSpec) -> Result<(Vec<Arg>, &str), String> {
    let Some(mut rest) = s.strip_prefix('(') else {
        if spec.min > 0 {
            return Err(missing(0, spec));
        }
        return Ok((Vec::new(), s));
    };
    let mut args = Vec::new();
    if spec.types.is_empty() {
        return match rest.strip_prefix(')') {
            Some(after) => Ok((args, after)),
            None => Err(format!(
                "expected ')' before '{rest}' (no argument is taken)"
            )),
        };
    }
    loop {
        let (text, after) = one(rest)?;
        rest = after;
        let ty = spec.types[args.len()];
        if text.is_empty() && matches!(ty, ArgType::Int) {
            // An empty number ends the list when enough arguments were given (HAProxy's
            // `empty_err`).
            if args.len() >= spec.min {
                break;
            }
            return Err(format!(
                "expected type '{}' at position {}, but got nothing",
                ty.name(),
                args.len() + 1
            ));
        }
        args.push(typed(&text, ty, args.len())?);
        if rest.starts_with(')') || rest.is_empty() || args.len() >= spec.types.len() {
            break;
        }
        // Skip the comma.
        rest = &rest[1..];
    }
    if args.len() < spec.min {
        return Err(missing(args.len(), spec));
    }
    match rest.strip_prefix(')') {
        Some(after) => Ok((args, after)),
        None if rest.is_empty() => Err("expected ')'".to_owned()),
        None => Err(format!("expected ')' before '{rest}'")),
    }
}

fn missing(got: usize, spec: ArgSpec) -> String {
    format!(
        "missing arguments (got {got}/{}), type '{}' expected",
        spec.min,
        spec.types.get(got).map_or("?", |t| t.name())
    )
}

/// One argument's text (quotes removed, escapes applied) and what follows it (the `,` or `)`
/// that ended it, or nothing).
fn one(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let (mut squote, mut dquote) = (false, false);
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' if !squote => dquote = !dquote,
            '\'' if !dquote => squote = !squote,
            '\\' if !squote => match chars.peek().map(|(_, n)| *n) {
                Some(n @ ('\\' | ' ' | '"' | '\'')) => {
                    out.push(n);
                    chars.next();
                }
                Some('r') => {
                    out.push('\r');
                    chars.next();
                }
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some('t') => {
                    out.push('\t');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            ',' | ')' if !squote && !dquote => return Ok((out, &s[i..])),
            c => out.push(c),
        }
    }
    if squote || dquote {
        return Err(format!("unterminated quote in argument '{out}'"));
    }
    Ok((out, ""))
}

fn typed(text: &str, ty: ArgType, pos: usize) -> Result<Arg, String> {
    let bad = || {
        format!(
            "failed to parse '{text}' as type '{}' at position {}",
            ty.name(),
            pos + 1
        )
    };
    Ok(match ty {
        ArgType::Int => Arg::Int(text.trim().parse().map_err(|_| bad())?),
        ArgType::Str => Arg::Str(text.to_owned()),
        ArgType::Backend | ArgType::Frontend => {
            if text.is_empty() {
                return Err(bad());
            }
            if ty == ArgType::Backend {
                Arg::Backend(text.to_owned())
            } else {
                Arg::Frontend(text.to_owned())
            }
        }
        ArgType::Server => {
            let (backend, server) = match text.split_once('/') {
                Some((b, s)) => (Some(b.to_owned()), s.to_owned()),
                None => (None, text.to_owned()),
            };
            if server.is_empty() || backend.as_deref() == Some("") {
                return Err(bad());
            }
            Arg::Server { backend, server }
        }
        ArgType::Var => {
            if text.is_empty() {
                Arg::Var(None)
            } else {
                Arg::Var(Some(VarName::parse(text)?))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_INTS: ArgSpec = ArgSpec {
        types: &[ArgType::Int, ArgType::Int],
        min: 2,
    };
    const CONCAT: ArgSpec = ArgSpec {
        types: &[ArgType::Str, ArgType::Var, ArgType::Str],
        min: 1,
    };

    #[test]
    fn lists_quotes_escapes_and_empty_arguments() {
        let (a, rest) = parse("(0,5),lower", TWO_INTS).unwrap();
        assert_eq!(a, vec![Arg::Int(0), Arg::Int(5)]);
        assert_eq!(rest, ",lower");
        let (a, _) = parse("(,sess.src,:)", CONCAT).unwrap();
        assert_eq!(a[0], Arg::Str(String::new()));
        assert!(matches!(&a[1], Arg::Var(Some(v)) if &*v.name == "src"));
        assert_eq!(a[2], Arg::Str(":".into()));
        let (a, _) = parse("('a,b',,\"c)\")", CONCAT).unwrap();
        assert_eq!(a[0], Arg::Str("a,b".into()));
        assert_eq!(a[2], Arg::Str("c)".into()));
        let (a, _) = parse(r"(a\,)", CONCAT).unwrap();
        assert_eq!(a[0], Arg::Str(r"a\".into()));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("", TWO_INTS)
            .unwrap_err()
            .contains("missing arguments"));
        assert!(parse("(1)", TWO_INTS)
            .unwrap_err()
            .contains("missing arguments"));
        assert!(parse("(1,x)", TWO_INTS)
            .unwrap_err()
            .contains("failed to parse 'x'"));
        assert!(parse("(1,2", TWO_INTS)
            .unwrap_err()
            .contains("expected ')'"));
        assert!(parse("(1,2,3)", TWO_INTS)
            .unwrap_err()
            .contains("expected ')' before ',3)'"));
        assert!(parse("(x)", ArgSpec::NONE).is_err());
        assert!(parse("()", ArgSpec::NONE).is_ok());
        assert!(parse("('a)", CONCAT).unwrap_err().contains("unterminated"));
    }
}
