//! Sample expressions: a fetch with its arguments, then converters (`req.ssl_sni,lower`, or in
//! HAProxy's other form, converter names as the following words), typed at load; and
//! [`NameFormat`], the `%[expr]` text of `use_backend %[...]`.

use super::args::{self, Arg};
use super::conv::{self, Conv};
use super::fetch::{self, FetchDef};
use super::{Ctx, Fetched, Loader, Places, Type, Value, Warnings};

/// Where a sample comes from.
#[derive(Clone, Debug)]
enum Source {
    Fetch(&'static FetchDef, Vec<Arg>),
    /// A fetch lb knows but never answers (stick tables, TLS, HTTP): no sample.
    Never,
}

impl std::fmt::Debug for FetchDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A fetch followed by converters.
#[derive(Clone, Debug)]
pub struct SampleExpr {
    source: Source,
    /// Each converter with the type its input is cast to.
    convs: Vec<(Conv, Type)>,
    out: Type,
    /// The fetch keyword, for messages.
    kw: String,
}

/// HAProxy's `is_idchar`: what a fetch or converter name is made of.
fn is_idchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '$' | '{' | '}')
}

fn name_len(s: &str) -> usize {
    s.find(|c: char| !is_idchar(c)).unwrap_or(s.len())
}

impl SampleExpr {
    /// Parses the expression in `words[0]`; with `more_words`, following words that are
    /// converter names are taken as converters too (HAProxy's "one converter per word").
    /// Returns the expression, the number of words used and warnings.
    pub fn parse_words(
        words: &[String],
        more_words: bool,
        loader: &dyn Loader,
    ) -> Result<(SampleExpr, usize, Warnings), String> {
        let first = words.first().map_or("", String::as_str);
        let (mut expr, rest, warnings) = Self::parse_str(first, loader)?;
        if !rest.is_empty() {
            return Err(format!(
                "missing comma after {} in '{first}'",
                expr.last_word()
            ));
        }
        let mut used = 1;
        while let Some(w) = words.get(used).filter(|_| more_words) {
            let name = &w[..name_len(w)];
            if name.is_empty() || conv::lookup(name).is_none() {
                break;
            }
            let rest = expr.add_converters(w, true, loader)?;
            if !rest.is_empty() {
                return Err(format!("missing comma after converter '{name}' in '{w}'"));
            }
            used += 1;
        }
        Ok((expr, used, warnings))
    }

    /// Parses an expression at the start of `s`, up to the first character that can't continue
    /// it; returns it with the rest of `s`.
    pub fn parse_str<'s>(
        s: &'s str,
        loader: &dyn Loader,
    ) -> Result<(SampleExpr, &'s str, Warnings), String> {
        let n = name_len(s);
        if n == 0 {
            return Err("missing fetch method".to_owned());
        }
        let name = &s[..n];
        let mut warnings = Vec::new();
        let (source, out, rest) = match fetch::lookup(name) {
            fetch::Lookup::Found(def) => {
                let (a, rest) = args::parse(&s[n..], def.args)
                    .map_err(|e| format!("fetch method '{name}': {e}"))?;
                if def.name.ends_with("payload_lv") {
                    if let Some(o) = a.get(2) {
                        fetch::check_buf_offset(o.str())
                            .map_err(|e| format!("fetch method '{name}': {e}"))?;
                    }
                }
                (Source::Fetch(def, a), def.out, rest)
            }
            fetch::Lookup::Never(why) => {
                warnings.push(format!("fetch method '{name}' {why}"));
                // Skip its arguments, whatever they are.
                let rest = skip_parens(&s[n..])
                    .ok_or_else(|| format!("fetch method '{name}': expected ')'"))?;
                (Source::Never, Type::Any, rest)
            }
            fetch::Lookup::Unknown => {
                let known: Vec<&str> = fetch::FETCHES.iter().map(|f| f.name).collect();
                return Err(format!(
                    "unknown fetch method '{name}'{}",
                    did_you_mean(name, &known)
                ));
            }
        };
        let mut expr = SampleExpr {
            source,
            convs: Vec::new(),
            out,
            kw: name.to_owned(),
        };
        let rest = expr.add_converters(rest, false, loader)?;
        Ok((expr, rest, warnings))
    }

    /// Reads `,conv(args),conv...` (with `word_start`: `conv(args),...`) from `s`; returns what
    /// follows.
    fn add_converters<'s>(
        &mut self,
        mut s: &'s str,
        word_start: bool,
        loader: &dyn Loader,
    ) -> Result<&'s str, String> {
        let mut at_word_start = word_start;
        loop {
            if !at_word_start {
                if !s.starts_with(',') {
                    return Ok(s);
                }
                s = s.trim_start_matches(',');
                if s.is_empty() {
                    return Ok(s);
                }
            }
            at_word_start = false;
            let n = name_len(s);
            let name = &s[..n];
            let look = conv::lookup(name).ok_or_else(|| {
                format!(
                    "unknown converter '{}'",
                    if name.is_empty() { s } else { name }
                )
            })?;
            if !self.out.casts_to(look.input()) {
                return Err(format!(
                    "converter '{name}' cannot be applied to a {} sample",
                    self.out
                ));
            }
            let (c, used) = conv::parse_one(&look, &s[n..], loader)
                .map_err(|e| format!("converter '{name}': {e}"))?;
            self.convs.push((c, look.input()));
            self.out = look.out();
            s = &s[n + used..];
        }
    }

    /// Evaluates the expression: the fetch, then every converter on each of its values.
    pub fn eval(&self, ctx: &Ctx<'_>) -> Fetched {
        let fetched = match &self.source {
            Source::Fetch(def, a) => (def.eval)(ctx, a),
            Source::Never => Fetched::none(),
        };
        let values = fetched
            .values
            .into_iter()
            .filter_map(|v| {
                self.convs.iter().try_fold(v, |v, (c, input)| {
                    let v = v.cast(*input)?;
                    c.apply(v, ctx)
                })
            })
            .collect();
        Fetched {
            values,
            may_change: fetched.may_change,
        }
    }

    /// The first value, as the text `%[...]` and `set-var` see.
    pub fn first(&self, ctx: &Ctx<'_>) -> Option<Value> {
        self.eval(ctx).values.into_iter().next()
    }

    pub fn out(&self) -> Type {
        self.out
    }

    /// Whether the fetch is one lb never answers (stick tables, TLS, HTTP).
    pub fn never(&self) -> bool {
        matches!(self.source, Source::Never)
    }

    /// Whether converters follow the fetch.
    pub fn has_converters(&self) -> bool {
        !self.convs.is_empty()
    }

    /// The fetch keyword.
    pub fn keyword(&self) -> &str {
        &self.kw
    }

    /// Where the fetch can answer.
    pub fn places(&self) -> Places {
        match &self.source {
            Source::Fetch(def, _) => def.places,
            Source::Never => Places::ALL,
        }
    }

    /// The proxies and servers the expression names (checked once every section is read).
    pub fn refs(&self) -> Vec<Ref> {
        let Source::Fetch(_, a) = &self.source else {
            return Vec::new();
        };
        a.iter()
            .filter_map(|a| match a {
                Arg::Backend(b) => Some(Ref::Backend(b.clone())),
                Arg::Frontend(f) => Some(Ref::Frontend(f.clone())),
                Arg::Server { backend, server } => {
                    Some(Ref::Server(backend.clone(), server.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn last_word(&self) -> String {
        if self.convs.is_empty() {
            format!("fetch keyword '{}'", self.kw)
        } else {
            "converter".to_owned()
        }
    }
}

/// A backend or server an expression refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ref {
    Backend(String),
    Frontend(String),
    /// `[backend/]server` (no backend: the rule's own).
    Server(Option<String>, String),
}

/// Skips a balanced `( ... )` at the start of `s` (quotes respected).
fn skip_parens(s: &str) -> Option<&str> {
    if !s.starts_with('(') {
        return Some(s);
    }
    let (mut sq, mut dq) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            '\'' if !dq => sq = !sq,
            '"' if !sq => dq = !dq,
            ')' if !sq && !dq => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

/// " (did you mean 'x'?)" for the closest name within two edits.
pub fn did_you_mean(word: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 2 => format!(" (did you mean '{k}'?)"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A name built from text and `%[expr]` parts (`use_backend be_%[dst_port]`).
#[derive(Clone, Debug)]
pub struct NameFormat {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(SampleExpr),
}

impl NameFormat {
    /// Parses `text`; `None` when it holds no `%[` (a plain name).
    pub fn parse(
        text: &str,
        loader: &dyn Loader,
    ) -> Result<Option<(NameFormat, Warnings)>, String> {
        if !text.contains('%') {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut warnings = Vec::new();
        let mut lit = String::new();
        let mut s = text;
        while let Some(p) = s.find('%') {
            lit.push_str(&s[..p]);
            let after = &s[p + 1..];
            if let Some(r) = after.strip_prefix('%') {
                lit.push('%');
                s = r;
            } else if let Some(r) = after.strip_prefix('[') {
                let (e, rest, w) = SampleExpr::parse_str(r, loader)?;
                let Some(rest) = rest.strip_prefix(']') else {
                    return Err(format!("missing ']' after the expression in '{text}'"));
                };
                warnings.extend(w);
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Expr(e));
                s = rest;
            } else {
                return Err(format!(
                    "'{text}': only %[expr] and %% are supported in a backend name"
                ));
            }
        }
        lit.push_str(s);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        if !parts.iter().any(|p| matches!(p, Part::Expr(_))) {
            return Ok(None);
        }
        Ok(Some((NameFormat { parts }, warnings)))
    }

    /// The name for this connection; a sample that is missing writes `-`, as HAProxy's
    /// log-format does.
    pub fn render(&self, ctx: &Ctx<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Expr(e) => match e.first(ctx) {
                    Some(v) => out.extend_from_slice(&v.to_text()),
                    None => out.push(b'-'),
                },
            }
        }
        out
    }

    /// The expressions it holds.
    pub fn exprs(&self) -> impl Iterator<Item = &SampleExpr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }
}
