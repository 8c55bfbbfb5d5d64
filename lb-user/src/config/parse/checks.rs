//! Health-check lines: `tcp-check` and `http-check` rules (validated, then built into the model),
//! and the backend's check method once its section is read.

use std::net::IpAddr;

use super::super::lex::Line;
use super::super::scalar::{
    check_hex, parse_port, parse_u32, parse_uint, resolve, split_host_port, Host,
};
use super::super::{
    CheckKind, ConnectRule, ExpectPattern, Global, HttpCheck, HttpExpect, HttpExpectKind, LfPart,
    LogFormat, TcpCheckRule,
};
use super::proxy::{HttpRules, ProxyDraft};
use super::{arity, Diag, Parser};

/// Match types of `tcp-check expect`.
const TCP_EXPECT_TYPES: [&str; 6] = [
    "string",
    "rstring",
    "binary",
    "rbinary",
    "string-lf",
    "binary-lf",
];

/// `tcp-check connect` options that take a value.
const CONNECT_VALUED: [&str; 6] = ["port", "addr", "sni", "alpn", "proto", "comment"];

/// `tcp-check expect` options that take a value (before the match type).
const EXPECT_VALUED: [&str; 8] = [
    "min-recv",
    "error-status",
    "tout-status",
    "ok-status",
    "on-success",
    "on-error",
    "status-code",
    "comment",
];

impl Parser {
    /// Validates a `tcp-check` line.
    pub(super) fn tcp_check(&mut self, line: &Line) -> bool {
        let w = &line.words;
        let d = &mut self.diag;
        let Some(sub) = w.get(1).map(String::as_str) else {
            d.err(
                &line.loc,
                "'tcp-check': expects an action (connect, send, expect, ...)",
            );
            return false;
        };
        let problem = match sub {
            "connect" => connect_problem(w),
            "send" | "send-lf" => return arity(d, line, 2, 1, 3),
            "send-binary" | "send-binary-lf" => {
                if !arity(d, line, 2, 1, 3) {
                    return false;
                }
                if sub == "send-binary" {
                    check_hex(&w[2]).err()
                } else {
                    None
                }
            }
            "expect" => expect_problem(w),
            "comment" => return arity(d, line, 2, 1, 1),
            _ if sub.starts_with("set-var")
                || sub.starts_with("unset-var")
                || sub == "set-var-fmt" =>
            {
                return arity(d, line, 2, 0, usize::MAX);
            }
            _ => Some(
                "unknown action (expected connect, send, send-lf, send-binary, send-binary-lf, \
                 expect, comment, set-var, unset-var)"
                    .into(),
            ),
        };
        match problem {
            Some(m) => {
                d.err(&line.loc, format!("'tcp-check {sub}': {m}"));
                false
            }
            None => true,
        }
    }

    /// Builds the rule of a `tcp-check` line that [`Self::tcp_check`] accepted. Actions lb does
    /// not run (variables, log-format sends) get a warning and no rule; `comment` is dropped.
    pub(super) fn tcp_rule(&mut self, line: &Line) -> Option<TcpCheckRule> {
        let w = &line.words;
        let sub = w[1].as_str();
        match sub {
            "connect" => self
                .connect_rule(line, "tcp-check connect")
                .map(TcpCheckRule::Connect),
            "send" => Some(TcpCheckRule::Send(w[2].as_bytes().to_vec())),
            "send-binary" => Some(TcpCheckRule::Send(decode_hex(&w[2]))),
            "expect" => self.expect_rule(line),
            "comment" => None,
            _ => {
                self.not_yet(line, &format!("tcp-check {sub}"), "health checks");
                None
            }
        }
    }

    /// `tcp-check connect` / `http-check connect [port N] [addr A] [send-proxy] [linger] [ssl]
    /// [sni S] [alpn A] [default]` (validated by [`connect_problem`]). `via-socks4` and `proto`
    /// get a warning.
    pub(super) fn connect_rule(&mut self, line: &Line, kw: &str) -> Option<ConnectRule> {
        let w = &line.words;
        let loc = &line.loc;
        let mut rule = ConnectRule::default();
        let mut i = 2;
        while i < w.len() {
            let value = w.get(i + 1).map(String::as_str).unwrap_or_default();
            match w[i].as_str() {
                "port" => rule.port = parse_port(value).ok(),
                "addr" => match connect_addr(value) {
                    Ok((ip, port)) => {
                        rule.addr = Some(ip);
                        rule.port = port.or(rule.port);
                    }
                    Err(e) => {
                        self.diag.err(loc, format!("'{kw}': 'addr': {e}"));
                        return None;
                    }
                },
                "linger" => rule.linger = true,
                "send-proxy" => rule.send_proxy = true,
                "ssl" => rule.ssl = true,
                "default" => rule.default = true,
                "sni" => rule.sni = Some(value.to_owned()),
                "alpn" => rule.alpn = Some(value.split(',').map(str::to_owned).collect()),
                "comment" => {}
                other => {
                    self.diag.warn(
                        loc,
                        format!("'{kw}': option '{other}' is not supported yet; ignored"),
                    );
                }
            }
            i += if CONNECT_VALUED.contains(&w[i].as_str()) {
                2
            } else {
                1
            };
        }
        Some(rule)
    }

    /// `http-check send [meth M] [uri U | uri-lf FMT] [ver V] [hdr N V]... [body S]`: merged
    /// into `rules` (validated by [`Self::http_check`]).
    pub(super) fn http_send(&mut self, line: &Line, rules: &mut HttpRules) {
        let w = &line.words;
        let mut i = 2;
        while i < w.len() {
            let v = w.get(i + 1).cloned().unwrap_or_default();
            match w[i].as_str() {
                "meth" => rules.method = Some(v),
                "uri" => rules.uri = Some(LogFormat::text(&v)),
                "uri-lf" => match check_log_format(&v) {
                    Ok(f) => rules.uri = Some(f),
                    Err(e) => {
                        self.diag
                            .err(&line.loc, format!("'http-check send uri-lf': {e}"));
                        return;
                    }
                },
                "ver" => rules.version = Some(v),
                "hdr" => {
                    let value = w.get(i + 2).cloned().unwrap_or_default();
                    rules.headers.push((v, value));
                    i += 1;
                }
                "body" => rules.body = Some(v),
                _ => {} // `comment`
            }
            i += 2;
        }
    }

    /// `tcp-check expect [min-recv N] [!] TYPE PATTERN` (validated by [`expect_problem`]).
    fn expect_rule(&mut self, line: &Line) -> Option<TcpCheckRule> {
        let w = &line.words;
        let (mut min_recv, mut negate) = (None, false);
        let mut i = 2;
        loop {
            match w[i].as_str() {
                "min-recv" => {
                    min_recv = parse_u32(&w[i + 1], 0, u32::MAX).ok();
                    i += 2;
                }
                "!" => {
                    negate = true;
                    i += 1;
                }
                o if EXPECT_VALUED.contains(&o) => i += 2,
                _ => break,
            }
        }
        let pat = &w[i + 1];
        let pattern = match w[i].as_str() {
            "string" => ExpectPattern::String(pat.as_bytes().to_vec()),
            "binary" => ExpectPattern::Binary(decode_hex(pat)),
            t @ ("rstring" | "rbinary") => {
                if let Err(e) = regex::bytes::Regex::new(pat) {
                    self.diag.err(
                        &line.loc,
                        format!("'tcp-check expect {t}': invalid regex '{pat}': {e}"),
                    );
                    return None;
                }
                if t == "rstring" {
                    ExpectPattern::Rstring(pat.clone())
                } else {
                    ExpectPattern::Rbinary(pat.clone())
                }
            }
            t => {
                self.not_yet(line, &format!("tcp-check expect {t}"), "log-format");
                return None;
            }
        };
        Some(TcpCheckRule::Expect {
            min_recv,
            negate,
            pattern,
        })
    }

    /// Builds an `http-check expect` that [`Self::http_check`] accepted.
    pub(super) fn http_expect(&mut self, line: &Line) -> Option<HttpExpect> {
        let w = &line.words;
        let mut i = 2;
        let mut negate = false;
        while w[i] == "!" {
            negate = true;
            i += 1;
        }
        let pat = &w[i + 1];
        let bad_regex = |d: &mut Diag, e: regex::Error| {
            d.err(
                &line.loc,
                format!("'http-check expect {}': invalid regex '{pat}': {e}", w[i]),
            );
        };
        let kind = match w[i].as_str() {
            "status" => {
                let mut ranges = Vec::new();
                for part in pat.split(',') {
                    let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                    match (parse_uint(lo, 100, 999), parse_uint(hi, 100, 999)) {
                        (Ok(lo), Ok(hi)) if lo <= hi => ranges.push((lo as u16, hi as u16)),
                        _ => {
                            self.diag.err(
                                &line.loc,
                                format!(
                                    "'http-check expect status': invalid status '{part}'                                      (expected a code 100-999 or a range LO-HI)"
                                ),
                            );
                            return None;
                        }
                    }
                }
                HttpExpectKind::Status(ranges)
            }
            "rstatus" | "rstring" => {
                if let Err(e) = regex::Regex::new(pat) {
                    bad_regex(&mut self.diag, e);
                    return None;
                }
                if w[i] == "rstatus" {
                    HttpExpectKind::Rstatus(pat.clone())
                } else {
                    HttpExpectKind::Rstring(pat.clone())
                }
            }
            "string" => HttpExpectKind::String(pat.clone()),
            other => {
                self.not_yet(line, &format!("http-check expect {other}"), "HTTP headers");
                return None;
            }
        };
        Some(HttpExpect { negate, kind })
    }

    /// Validates an `http-check` line.
    pub(super) fn http_check(&mut self, line: &Line) -> bool {
        let w = &line.words;
        let d = &mut self.diag;
        let Some(sub) = w.get(1).map(String::as_str) else {
            d.err(
                &line.loc,
                "'http-check': expects an action (send, expect, ...)",
            );
            return false;
        };
        match sub {
            "expect" => {
                let mut i = 2;
                while w.get(i).is_some_and(|s| s == "!") {
                    i += 1;
                }
                let types = [
                    "status",
                    "rstatus",
                    "string",
                    "rstring",
                    "hdr",
                    "fhdr",
                    "status-code",
                ];
                match w.get(i).map(String::as_str) {
                    Some(t) if types.contains(&t) || t.starts_with("min-recv") => {
                        if w.get(i + 1).is_none() {
                            d.err(
                                &line.loc,
                                format!("'http-check expect {t}' needs a pattern"),
                            );
                            return false;
                        }
                        true
                    }
                    Some(t) => {
                        d.err(
                            &line.loc,
                            format!(
                                "'http-check expect': unknown match type '{t}' (expected {})",
                                types.join("|")
                            ),
                        );
                        false
                    }
                    None => {
                        d.err(
                            &line.loc,
                            "'http-check expect' needs a match type and a pattern",
                        );
                        false
                    }
                }
            }
            "connect" => match connect_problem(w) {
                Some(m) => {
                    d.err(&line.loc, format!("'http-check connect': {m}"));
                    false
                }
                None => true,
            },
            "send" => match send_problem(w) {
                Some(m) => {
                    d.err(&line.loc, format!("'http-check send': {m}"));
                    false
                }
                None => true,
            },
            "disable-on-404" => arity(d, line, 2, 0, 0),
            "comment" | "send-state" => true,
            _ if sub.starts_with("set-var") || sub.starts_with("unset-var") => true,
            _ => {
                d.err(
                    &line.loc,
                    format!(
                        "'http-check': unknown action '{sub}' (expected send, expect, connect, \
                         comment, send-state, disable-on-404)"
                    ),
                );
                false
            }
        }
    }
}

/// What is wrong with the options of `tcp-check connect ...` (`w` = the line's words), if
/// anything.
fn connect_problem(w: &[String]) -> Option<String> {
    let mut i = 2;
    while i < w.len() {
        match w[i].as_str() {
            "port" => match w.get(i + 1).map(|p| parse_port(p)) {
                Some(Ok(_)) => i += 2,
                Some(Err(e)) => return Some(e),
                None => return Some("'port' needs a value".into()),
            },
            o if CONNECT_VALUED.contains(&o) => {
                if w.get(i + 1).is_none() {
                    return Some(format!("'{o}' needs a value"));
                }
                i += 2;
            }
            "send-proxy" | "via-socks4" | "ssl" | "linger" | "default" => i += 1,
            other => return Some(format!("unknown option '{other}'")),
        }
    }
    None
}

/// `connect ... addr HOST[:PORT]`: as `HAProxy`'s `str2sa_range` with `PA_O_RESOLVE`, a host
/// name is resolved once at load with the system resolver.
fn connect_addr(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    let hp = split_host_port(text)?;
    let port = match hp.port.as_deref() {
        None | Some("") => None,
        Some(p) => Some(parse_port(p)?),
    };
    let ip = match hp.host {
        Some(Host::Ip(ip)) => ip,
        Some(Host::Name(n)) => resolve(&n, 0, hp.family)?.ip(),
        None => return Err(format!("address required in '{text}'")),
    };
    Ok((ip, port))
}

/// What is wrong with `http-check send ...` (`w` = the line's words), if anything.
fn send_problem(w: &[String]) -> Option<String> {
    let mut i = 2;
    while i < w.len() {
        let o = w[i].as_str();
        let n = match o {
            "meth" | "uri" | "uri-lf" | "ver" | "body" | "comment" => 1,
            "hdr" => 2,
            "body-lf" => {
                return Some(
                    "'body-lf' is not supported (log-format bodies); use 'body' with the text"
                        .into(),
                )
            }
            other => {
                return Some(format!(
                    "unknown option '{other}' (expected meth, uri, uri-lf, ver, hdr, body, \
                     comment)"
                ))
            }
        };
        if w.len() <= i + n {
            return Some(format!(
                "'{o}' needs {}",
                if n == 1 {
                    "a value"
                } else {
                    "a name and a value"
                }
            ));
        }
        if o == "meth"
            && !w[i + 1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some(format!("'meth': invalid method '{}'", w[i + 1]));
        }
        i += 1 + n;
    }
    None
}

/// A check's log-format string (`uri-lf`): text with `%[srv_name]`, `%[srv_id]`,
/// `%[be_name]`, `%[be_id]` (the sample fetches a check has, without converters) and `%%`.
/// Anything else is refused with the reason.
pub(super) fn check_log_format(text: &str) -> Result<LogFormat, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(p) = rest.find('%') {
        lit.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        if let Some(r) = after.strip_prefix('%') {
            lit.push('%');
            rest = r;
            continue;
        }
        let Some(inner) = after.strip_prefix('[') else {
            return Err(format!(
                "'%{}' in '{text}': only %[srv_name], %[srv_id], %[be_name], %[be_id] and %% are \
                 supported in a check's log-format",
                after.chars().next().map(String::from).unwrap_or_default()
            ));
        };
        let Some(end) = inner.find(']') else {
            return Err(format!("unterminated '%[' in '{text}'"));
        };
        let part = match &inner[..end] {
            "srv_name" => LfPart::SrvName,
            "srv_id" => LfPart::SrvId,
            "be_name" => LfPart::BeName,
            "be_id" => LfPart::BeId,
            other => {
                return Err(format!(
                    "'%[{other}]' in '{text}': only %[srv_name], %[srv_id], %[be_name] and \
                     %[be_id] are supported in a check's log-format (no converters)"
                ))
            }
        };
        if !lit.is_empty() {
            parts.push(LfPart::Text(std::mem::take(&mut lit)));
        }
        parts.push(part);
        rest = &inner[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(LfPart::Text(lit));
    }
    Ok(LogFormat(parts))
}

/// What is wrong with `tcp-check expect [options] [!] TYPE PATTERN`, if anything.
fn expect_problem(w: &[String]) -> Option<String> {
    let mut i = 2;
    loop {
        match w.get(i).map(String::as_str) {
            Some("min-recv") => match w.get(i + 1).map(|v| parse_u32(v, 0, u32::MAX)) {
                Some(Ok(_)) => i += 2,
                Some(Err(e)) => return Some(format!("'min-recv': {e}")),
                None => return Some("'min-recv' needs a value".into()),
            },
            Some(o) if EXPECT_VALUED.contains(&o) => {
                if w.get(i + 1).is_none() {
                    return Some(format!("'{o}' needs a value"));
                }
                i += 2;
            }
            Some("!") => i += 1,
            _ => break,
        }
    }
    let types = TCP_EXPECT_TYPES.join("|");
    match w.get(i).map(String::as_str) {
        Some(t) if TCP_EXPECT_TYPES.contains(&t) => match w.get(i + 1) {
            Some(pat) => {
                if t == "binary" {
                    if let Err(e) = check_hex(pat) {
                        return Some(e);
                    }
                }
                w.get(i + 2)
                    .map(|extra| format!("unexpected argument '{extra}'"))
            }
            None => Some(format!("'{t}' needs a pattern")),
        },
        Some(t) => Some(format!("unknown match type '{t}' (expected {types})")),
        None => Some(format!("needs a match type ({types}) and a pattern")),
    }
}

/// Hex text already checked by `check_hex` -> bytes.
fn decode_hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap_or("00");
            u8::from_str_radix(s, 16).unwrap_or(0)
        })
        .collect()
}

/// The backend's health-check method from its options, with the checks HAProxy makes at load:
/// `option external-check` needs `external-check` in `global` and an `external-check command`.
pub(super) fn check_kind(diag: &mut Diag, global: &Global, px: &ProxyDraft) -> CheckKind {
    let (kind, loc) = &px.opts.check;
    match kind {
        CheckKind::TcpCheck(_) if px.opts.tcp_rules.is_empty() => CheckKind::Connect,
        CheckKind::TcpCheck(_) => CheckKind::TcpCheck(px.opts.tcp_rules.clone()),
        CheckKind::Http(base) => {
            let r = &px.opts.http_rules;
            CheckKind::Http(Box::new(HttpCheck {
                connect: r.connect.clone(),
                method: r.method.clone().unwrap_or_else(|| base.method.clone()),
                uri: r.uri.clone().unwrap_or_else(|| base.uri.clone()),
                version: r.version.clone().unwrap_or_else(|| base.version.clone()),
                headers: r.headers.clone(),
                body: r.body.clone().unwrap_or_default(),
                expect: r.expect.clone(),
                disable_on_404: r.disable_on_404,
            }))
        }
        CheckKind::External => {
            let loc = loc.as_ref().unwrap_or(&px.loc);
            let checked = px.servers.iter().any(|(s, _)| s.health.check);
            if !global.external_check && checked {
                diag.err(
                    loc,
                    format!(
                        "{}: 'option external-check' needs 'external-check' in the global \
                         section (as in HAProxy)",
                        px.ctx()
                    ),
                );
            }
            if px.opts.external_check.command.is_none() && checked {
                diag.err(
                    loc,
                    format!(
                        "{}: 'option external-check' needs 'external-check command PATH'",
                        px.ctx()
                    ),
                );
            }
            CheckKind::External
        }
        other => other.clone(),
    }
}
