//! ACLs and conditions, as HAProxy's `src/acl.c`: `acl NAME CRITERION [FLAGS] [OPERATOR]
//! [PATTERNS]` lines (lines with the same name add alternatives: OR), anonymous ACLs in braces,
//! predefined ACLs, and conditions `if|unless [!]ACL [[!]ACL ...] [or|'||' ...]` (implicit AND,
//! `or` between groups). Evaluation is three-valued: an ACL that can't decide on the bytes
//! received so far answers [`Test::Miss`], and the rule waits for more.

use super::expr::{did_you_mean, Ref, SampleExpr};
use super::fetch;
use super::patref::{Form, Live, Use};
use super::pattern::{parse_dotted, Method};
use super::{Ctx, Loader, Places, Type, Value, Warnings};

use std::sync::Arc;

/// The result of an ACL or condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    Fail,
    /// Not decidable yet: more bytes could change the answer.
    Miss,
    Pass,
}

impl Test {
    fn neg(self) -> Test {
        match self {
            Test::Fail => Test::Pass,
            Test::Pass => Test::Fail,
            Test::Miss => Test::Miss,
        }
    }

    /// HAProxy's OR of results (`FAIL | MISS = MISS`, anything `| PASS = PASS`).
    fn or(self, o: Test) -> Test {
        match (self, o) {
            (Test::Pass, _) | (_, Test::Pass) => Test::Pass,
            (Test::Miss, _) | (_, Test::Miss) => Test::Miss,
            _ => Test::Fail,
        }
    }
}

/// One criterion with its patterns.
#[derive(Clone, Debug)]
struct AclExpr {
    sample: SampleExpr,
    /// `None`: a fetch lb never answers; the expression never matches.
    patterns: Option<AclPatterns>,
}

/// An expression's patterns: those of each `-f` file and its own, each compiled from a
/// reference the runtime API may change ([`super::patref`]).
#[derive(Clone, Debug)]
struct AclPatterns {
    method: Method,
    sets: Vec<Arc<Live>>,
}

impl AclPatterns {
    /// Whether `v` matches (`found` and `bool` need no pattern).
    fn matches(&self, v: &Value) -> bool {
        match self.method {
            Method::Found => true,
            Method::Bool => matches!(v.clone().cast(Type::Bool), Some(Value::Bool(true))),
            _ => self.sets.iter().any(|s| s.load().find(v).is_some()),
        }
    }
}

impl AclExpr {
    /// HAProxy's per-expression loop: every value of the sample, the first match passes; a
    /// sample that may still change makes a non-final evaluation a miss.
    fn eval(&self, ctx: &Ctx<'_>) -> Test {
        let Some(patterns) = &self.patterns else {
            return Test::Fail;
        };
        let f = self.sample.eval(ctx);
        if f.values.iter().any(|v| patterns.matches(v)) {
            return Test::Pass;
        }
        if f.may_change && !ctx.final_ {
            Test::Miss
        } else {
            Test::Fail
        }
    }
}

/// A named or anonymous ACL: its expressions are alternatives.
#[derive(Clone, Debug)]
pub struct Acl {
    /// Empty for an anonymous ACL.
    pub name: String,
    exprs: Vec<AclExpr>,
}

impl Acl {
    fn eval(&self, ctx: &Ctx<'_>) -> Test {
        let mut r = Test::Fail;
        for e in &self.exprs {
            r = r.or(e.eval(ctx));
            if r == Test::Pass {
                break;
            }
        }
        r
    }

    fn places(&self) -> Places {
        self.exprs
            .iter()
            .fold(Places(0), |p, e| Places(p.0 | e.sample.places().0))
    }
}

/// The ACLs of one proxy section: named ones, anonymous ones, predefined ones once used.
#[derive(Clone, Debug, Default)]
pub struct AclTable {
    acls: Vec<Acl>,
}

/// `if` or `unless`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    If,
    Unless,
}

#[derive(Clone, Copy, Debug)]
struct Term {
    acl: usize,
    neg: bool,
}

/// A rule's condition.
#[derive(Clone, Debug)]
pub struct Cond {
    pub polarity: Polarity,
    /// OR of ANDs.
    suites: Vec<Vec<Term>>,
}

/// HAProxy's predefined ACLs: name and the words of its definition.
const PREDEFINED: &[(&str, &[&str])] = &[
    ("TRUE", &["always_true"]),
    ("FALSE", &["always_false"]),
    ("LOCALHOST", &["src", "127.0.0.1/8", "::1"]),
    ("HTTP", &["req.proto_http"]),
    ("REQ_CONTENT", &["req.len", "gt", "0"]),
    ("WAIT_END", &["wait_end"]),
    ("RDP_COOKIE", &["req.rdp_cookie_cnt", "gt", "0"]),
];

/// Predefined ACLs that need HTTP: they never match in `mode tcp`.
const PREDEFINED_HTTP: &[&str] = &[
    "HTTP_1.0",
    "HTTP_1.1",
    "HTTP_2.0",
    "METH_CONNECT",
    "METH_DELETE",
    "METH_GET",
    "METH_HEAD",
    "METH_OPTIONS",
    "METH_POST",
    "METH_PUT",
    "METH_TRACE",
    "HTTP_URL_ABS",
    "HTTP_URL_SLASH",
    "HTTP_URL_STAR",
    "HTTP_CONTENT",
];

/// ACL keywords with a matching method of their own (HAProxy's `acl_kws`): the keyword, the
/// fetch it reads, the method, and whether integers are dotted versions.
const ACL_KEYWORDS: &[(&str, &str, Method, bool)] = &[
    ("payload", "req.payload", Method::Bin, false),
    ("payload_lv", "req.payload_lv", Method::Bin, false),
    ("req_rdp_cookie", "req.rdp_cookie", Method::Str, false),
    (
        "req_rdp_cookie_cnt",
        "req.rdp_cookie_cnt",
        Method::Int,
        false,
    ),
    ("req_ssl_sni", "req.ssl_sni", Method::Str, false),
    ("req_ssl_ver", "req.ssl_ver", Method::Int, true),
    ("req.ssl_ver", "req.ssl_ver", Method::Int, true),
];

impl AclTable {
    /// An `acl NAME CRITERION ...` line (the words after `acl`). Returns the warnings and the
    /// backends and servers the line names.
    pub fn add_line(
        &mut self,
        words: &[String],
        loader: &dyn Loader,
    ) -> Result<(Warnings, Vec<Ref>), String> {
        let name = &words[0];
        if let Some(c) = name
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(format!("invalid character in ACL name '{name}': '{c}'"));
        }
        let (expr, mut warnings) = parse_expr(&words[1..], loader)?;
        if words.len() > 3 && !words[1].contains('(') && words[2].starts_with('(') {
            warnings.push(format!(
                "acl '{name}': matching '{}' for pattern '{}' is likely a mistake (a space \
                 before '('?); put '--' between them if it is meant",
                words[1], words[2]
            ));
        }
        let refs = expr.sample.refs();
        match self.acls.iter_mut().find(|a| a.name == *name) {
            Some(acl) => acl.exprs.push(expr),
            None => self.acls.push(Acl {
                name: name.clone(),
                exprs: vec![expr],
            }),
        }
        Ok((warnings, refs))
    }

    /// A condition: `if|unless` and its terms. Returns it with the warnings (the backends and
    /// servers its anonymous ACLs name are in [`Self::refs_from`]).
    pub fn parse_cond(
        &mut self,
        words: &[String],
        loader: &dyn Loader,
    ) -> Result<(Cond, Warnings), String> {
        let polarity = match words.first().map(String::as_str) {
            Some("if") => Polarity::If,
            Some("unless") => Polarity::Unless,
            _ => return Err("conditions must start with either 'if' or 'unless'".to_owned()),
        };
        let mut warnings = Vec::new();
        let mut suites: Vec<Vec<Term>> = Vec::new();
        let mut cur: Vec<Term> = Vec::new();
        let mut neg = false;
        let mut i = 1;
        while i < words.len() {
            let mut w = words[i].as_str();
            while let Some(r) = w.strip_prefix('!') {
                neg = !neg;
                w = r;
            }
            if w.is_empty() {
                i += 1;
                continue;
            }
            if w.eq_ignore_ascii_case("or") || w == "||" {
                if !cur.is_empty() {
                    suites.push(std::mem::take(&mut cur));
                }
                neg = false;
                i += 1;
                continue;
            }
            let acl = if w == "{" {
                let Some(end) = words[i + 1..].iter().position(|x| x == "}") else {
                    return Err("missing closing '}' in condition".to_owned());
                };
                let inner = &words[i + 1..i + 1 + end];
                if inner.is_empty() {
                    return Err("empty anonymous ACL '{ }' in condition".to_owned());
                }
                let (expr, w2) = parse_expr(inner, loader)?;
                warnings.extend(w2);
                self.acls.push(Acl {
                    name: String::new(),
                    exprs: vec![expr],
                });
                i += end + 2;
                self.acls.len() - 1
            } else {
                i += 1;
                self.find_or_predefined(w, loader, &mut warnings)?
            };
            cur.push(Term { acl, neg });
            neg = false;
        }
        if !cur.is_empty() {
            suites.push(cur);
        }
        if suites.is_empty() {
            return Err(format!("'{}' needs at least one ACL", words[0]));
        }
        Ok((Cond { polarity, suites }, warnings))
    }

    fn find_or_predefined(
        &mut self,
        name: &str,
        loader: &dyn Loader,
        warnings: &mut Warnings,
    ) -> Result<usize, String> {
        if let Some(i) = self.acls.iter().position(|a| a.name == name) {
            return Ok(i);
        }
        if let Some((_, def)) = PREDEFINED.iter().find(|(n, _)| *n == name) {
            let words: Vec<String> = def.iter().map(|s| (*s).to_owned()).collect();
            let (expr, w) = parse_expr(&words, loader)?;
            warnings.extend(w);
            self.acls.push(Acl {
                name: name.to_owned(),
                exprs: vec![expr],
            });
            return Ok(self.acls.len() - 1);
        }
        if PREDEFINED_HTTP.contains(&name) {
            warnings.push(format!(
                "predefined ACL '{name}' is HTTP-only; it never matches in mode tcp"
            ));
            self.acls.push(Acl {
                name: name.to_owned(),
                exprs: Vec::new(),
            });
            return Ok(self.acls.len() - 1);
        }
        let mut known: Vec<&str> = self
            .acls
            .iter()
            .filter(|a| !a.name.is_empty())
            .map(|a| a.name.as_str())
            .collect();
        known.extend(PREDEFINED.iter().map(|(n, _)| *n));
        Err(format!(
            "no such ACL: '{name}'{}",
            did_you_mean(name, &known)
        ))
    }

    /// The backends and servers the ACLs name.
    pub fn refs(&self) -> Vec<Ref> {
        self.refs_from(0)
    }

    /// How many ACLs the table holds (to find the ones a condition adds).
    pub fn len(&self) -> usize {
        self.acls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acls.is_empty()
    }

    /// The backends and servers named by the ACLs from the `first`-th on.
    pub fn refs_from(&self, first: usize) -> Vec<Ref> {
        self.acls[first.min(self.acls.len())..]
            .iter()
            .flat_map(|a| a.exprs.iter().flat_map(|e| e.sample.refs()))
            .collect()
    }
}

impl Cond {
    /// HAProxy's `acl_exec_cond`: OR of suites, each an AND stopping at its first term that
    /// does not pass (so a miss there hides what follows). The polarity is not applied.
    pub fn eval(&self, table: &AclTable, ctx: &Ctx<'_>) -> Test {
        let mut res = Test::Fail;
        for suite in &self.suites {
            let mut s = Test::Pass;
            for t in suite {
                let mut r = table.acls[t.acl].eval(ctx);
                if t.neg {
                    r = r.neg();
                }
                if r != Test::Pass {
                    s = r;
                    break;
                }
            }
            res = res.or(s);
            if res == Test::Pass {
                break;
            }
        }
        res
    }

    /// Whether the rule applies: `None` while undecidable (the rule waits), else the result
    /// with `unless` applied.
    pub fn applies(&self, table: &AclTable, ctx: &Ctx<'_>) -> Option<bool> {
        match self.eval(table, ctx) {
            Test::Miss => None,
            t => Some((t == Test::Pass) != (self.polarity == Polarity::Unless)),
        }
    }

    /// HAProxy's warnings when a condition uses fetches that can't answer at `place` (`rule`
    /// names the rule, e.g. `tcp-request connection`).
    pub fn conflict(&self, table: &AclTable, place: Places, rule: &str) -> Option<String> {
        let terms = || self.suites.iter().flatten().map(|t| &table.acls[t.acl]);
        if let Some(acl) = terms().find(|a| !a.exprs.is_empty() && !a.places().intersects(place)) {
            return Some(if acl.name.is_empty() {
                format!(
                    "anonymous acl will never match in '{rule}' because it uses keyword '{}' \
                     which is incompatible with '{}'",
                    acl.exprs[0].sample.keyword(),
                    place.name()
                )
            } else {
                format!(
                    "acl '{}' will never match in '{rule}' because it only involves keywords \
                     that are incompatible with '{}'",
                    acl.name,
                    place.name()
                )
            });
        }
        for acl in terms() {
            if let Some(e) = acl
                .exprs
                .iter()
                .find(|e| !e.sample.places().intersects(place))
            {
                let who = if acl.name.is_empty() {
                    "anonymous acl".to_owned()
                } else {
                    format!("acl '{}'", acl.name)
                };
                return Some(format!(
                    "{who} involves keyword '{}' which is incompatible with '{}'",
                    e.sample.keyword(),
                    place.name()
                ));
            }
        }
        None
    }
}

/// One ACL expression: criterion, flags, operator, patterns (HAProxy's `parse_acl_expr`).
fn parse_expr(words: &[String], loader: &dyn Loader) -> Result<(AclExpr, Warnings), String> {
    let crit = words[0].as_str();
    let kw_end = crit.find(['(', ',']).unwrap_or(crit.len());
    let acl_kw = ACL_KEYWORDS.iter().find(|k| k.0 == &crit[..kw_end]);
    let (sample, used, mut warnings) = match acl_kw {
        Some(k) => {
            let text = format!("{}{}", k.1, &crit[kw_end..]);
            let (e, rest, w) = SampleExpr::parse_str(&text, loader)?;
            if !rest.is_empty() {
                return Err(format!(
                    "ACL keyword '{}': missing comma after '{crit}'",
                    k.0
                ));
            }
            (e, 1, w)
        }
        None => SampleExpr::parse_words(words, true, loader)
            .map_err(|e| format!("{e} in ACL expression '{crit}'"))?,
    };
    let never = sample.never();
    let kw = sample.keyword().to_owned();
    let (mut method, mut dotted) = match acl_kw {
        Some(k) if !sample.has_converters() => (Some(k.2), k.3),
        _ => (Method::for_type(sample.out()), false),
    };
    let rest = &words[used..];
    if never {
        // A fetch lb never answers: its patterns are not read (their syntax is the fetch's).
        return Ok((
            AclExpr {
                sample,
                patterns: None,
            },
            warnings,
        ));
    }
    if rest.is_empty() && !matches!(method, Some(Method::Bool | Method::Found)) && method.is_some()
    {
        warnings.push(format!(
            "acl keyword '{kw}': no pattern to match against was given, so this ACL never \
             matches (add '--' if that is meant, use '-m found' to match when it exists, or \
             '-m bool' to match an integer as a boolean)"
        ));
    }
    let mut icase = false;
    let mut no_dns = false;
    let mut as_map = false;
    let mut unique_id = None;
    // `-f` files, read as they come, compiled once every flag is known.
    let mut files = Vec::new();
    let mut i = 0;
    let need_method = |m: Option<Method>| {
        m.ok_or_else(|| {
            format!(
                "matching method must be specified first (using '-m') when using a sample \
                 fetch of this type ('{kw}')"
            )
        })
    };
    while let Some(w) = rest.get(i).filter(|w| w.starts_with('-')) {
        match w.as_str() {
            "-i" => icase = true,
            "-n" => no_dns = true,
            "-M" => as_map = true,
            "-u" => {
                let id = rest.get(i + 1).ok_or("'-u' needs an id")?;
                unique_id = Some(
                    id.parse::<u32>()
                        .map_err(|_| "the argument of -u must be an integer".to_owned())?,
                );
                i += 1;
            }
            "-m" => {
                if !files.is_empty() {
                    return Err(
                        "'-m' must only be specified before patterns and files in parsing ACL \
                         expression"
                            .to_owned(),
                    );
                }
                let name = rest.get(i + 1).ok_or("'-m' needs a matching method")?;
                let m = Method::from_name(name).ok_or_else(|| {
                    format!("unknown matching method '{name}' when parsing ACL expression")
                })?;
                if m != Method::Found && !sample.out().casts_to(m.input()) {
                    return Err(format!(
                        "matching method '{name}' cannot be used with fetch keyword '{kw}'"
                    ));
                }
                method = Some(m);
                dotted = false;
                i += 1;
            }
            "-f" => {
                let path = rest.get(i + 1).ok_or("'-f' needs a file name")?;
                need_method(method)?;
                files.push(loader.file_ref(path, as_map, Use::Acl)?);
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            other => {
                return Err(format!(
                    "'{other}' is not a valid ACL option. Please use '--' before any pattern \
                     beginning with a '-'"
                ))
            }
        }
        i += 1;
    }
    let method = need_method(method)?;
    let form = Form {
        icase,
        no_dns,
        dotted,
        ..Form::acl(method)
    };
    // The line's own patterns: a reference of their own (`#ID` in `show acl`).
    let own = loader.inline_ref(acl_kw.map_or(kw.as_str(), |k| k.0), unique_id)?;
    let mut check = form.empty_patterns();
    let mut op = "eq";
    for w in &rest[i..] {
        let text = if method.numeric() {
            if matches!(w.as_str(), "eq" | "ge" | "gt" | "le" | "lt") {
                op = w;
                continue;
            }
            operator_pattern(op, w, dotted)?
        } else {
            w.clone()
        };
        // Read now, for the error to name the pattern.
        check
            .add(&text)
            .map_err(|e| format!("acl keyword '{kw}': {e}"))?;
        own.add_initial(text);
    }
    let mut sets = Vec::with_capacity(files.len() + 1);
    for r in files.iter().chain([&own]) {
        sets.push(r.user(form)?);
    }
    Ok((
        AclExpr {
            sample,
            patterns: Some(AclPatterns { method, sets }),
        },
        warnings,
    ))
}

/// HAProxy's compatibility layer: `gt 5` is the range `6:`, `le 5` is `:5`, and so on.
fn operator_pattern(op: &str, w: &str, dotted: bool) -> Result<String, String> {
    if op == "eq" || w.contains([':', '-']) {
        return Ok(w.to_owned());
    }
    let v = if dotted {
        parse_dotted(w)
    } else {
        w.parse::<i64>().ok()
    }
    .ok_or_else(|| format!("'{w}' is neither a number nor a supported operator"))?;
    let fmt = |v: i64| {
        if dotted {
            format!("{}.{}", v >> 16, v & 0xffff)
        } else {
            v.to_string()
        }
    };
    Ok(match op {
        "gt" => format!("{}:", fmt(v + 1)),
        "ge" => format!("{}:", fmt(v)),
        "lt" => format!(":{}", fmt(v - 1)),
        _ => format!(":{}", fmt(v)),
    })
}

/// Whether `name` is a fetch or ACL keyword (for the "did you mean" of other parsers).
pub fn is_criterion(name: &str) -> bool {
    ACL_KEYWORDS.iter().any(|k| k.0 == name)
        || matches!(fetch::lookup(name), fetch::Lookup::Found(_))
}
