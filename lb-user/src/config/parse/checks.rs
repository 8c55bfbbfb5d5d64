//! Health-check lines: `tcp-check` and `http-check` rules (validated, then built into the model),
//! and the backend's check method once its section is read.

use std::net::IpAddr;

use super::super::lex::Line;
use super::super::scalar::{check_hex, parse_port, parse_u32, parse_uint};
use super::super::{CheckKind, ExpectPattern, Global, HttpExpect, HttpExpectKind, TcpCheckRule};
use super::proxy::ProxyDraft;
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
            "connect" => self.connect_rule(line),
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

    /// `tcp-check connect [port N] [addr A] [send-proxy] [default] [linger] ...` (validated by
    /// [`connect_problem`]).
    fn connect_rule(&mut self, line: &Line) -> Option<TcpCheckRule> {
        let w = &line.words;
        let loc = &line.loc;
        let (mut port, mut addr, mut linger) = (None, None, false);
        let (mut send_proxy, mut default) = (false, false);
        let mut i = 2;
        while i < w.len() {
            match w[i].as_str() {
                "port" => port = parse_port(&w[i + 1]).ok(),
                "addr" => {
                    let Ok(a) = w[i + 1].parse::<IpAddr>() else {
                        self.diag.err(
                            loc,
                            format!(
                                "'tcp-check connect': 'addr': invalid IP address '{}'",
                                w[i + 1]
                            ),
                        );
                        return None;
                    };
                    addr = Some(a);
                }
                "linger" => linger = true,
                "send-proxy" => send_proxy = true,
                "default" => default = true,
                "comment" => {}
                other => {
                    self.diag.warn(
                        loc,
                        format!(
                            "'tcp-check connect': option '{other}' is not supported yet; ignored"
                        ),
                    );
                }
            }
            i += if CONNECT_VALUED.contains(&w[i].as_str()) {
                2
            } else {
                1
            };
        }
        Some(TcpCheckRule::Connect {
            port,
            addr,
            linger,
            send_proxy,
            default,
        })
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
            "send" | "connect" | "comment" | "send-state" | "disable-on-404" => true,
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
        CheckKind::Http {
            method,
            uri,
            version,
            ..
        } => CheckKind::Http {
            method: method.clone(),
            uri: uri.clone(),
            version: version.clone(),
            expect: px.opts.http_expect.clone(),
        },
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
