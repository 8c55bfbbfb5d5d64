//! `log` lines (global and proxy): argument checks, and `log global` resolved for a proxy.

use super::super::lex::Line;
use super::super::scalar::parse_u32;
use super::super::LogTarget;
use super::Diag;

const SYSLOG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

const SYSLOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// A proxy's log targets with each `log global` replaced by the global section's targets.
pub(super) fn resolve_log_global(own: &[LogTarget], global: &[LogTarget]) -> Vec<LogTarget> {
    let mut out = Vec::new();
    for t in own {
        if t.args.len() == 1 && t.args[0] == "global" {
            out.extend(global.iter().cloned());
        } else {
            out.push(t.clone());
        }
    }
    out
}

/// Checks the arguments of a `log` line (`start` = index of the first argument):
/// `global`, or `TARGET [len N] [format F] [sample R:S] FACILITY [LEVEL [MINLEVEL]]`.
pub(super) fn check_log_args(d: &mut Diag, line: &Line, start: usize) -> bool {
    let w = &line.words[start..];
    let err = |d: &mut Diag, m: String| {
        d.err(&line.loc, format!("'log': {m}"));
        false
    };
    match w {
        [] => return err(d, "expects 'global' or a target and a facility".into()),
        [g] if g == "global" => return true,
        [g, extra, ..] if g == "global" => return err(d, format!("unexpected argument '{extra}'")),
        _ => {}
    }
    let mut i = 1;
    while i < w.len() {
        match w[i].as_str() {
            "len" => match w.get(i + 1).map(|v| parse_u32(v, 80, 65535)) {
                Some(Ok(_)) => i += 2,
                Some(Err(e)) => return err(d, format!("'len': {e}")),
                None => return err(d, "'len' needs a value".into()),
            },
            "format" => match w.get(i + 1).map(String::as_str) {
                Some(
                    "rfc3164" | "rfc5424" | "short" | "raw" | "timed" | "iso" | "priority",
                ) => i += 2,
                Some(f) => {
                    return err(
                        d,
                        format!(
                            "unknown format '{f}' (expected rfc3164|rfc5424|short|raw|timed|iso|priority)"
                        ),
                    )
                }
                None => return err(d, "'format' needs a value".into()),
            },
            "sample" | "profile" => {
                if w.get(i + 1).is_none() {
                    return err(d, format!("'{}' needs a value", w[i]));
                }
                i += 2;
            }
            _ => break,
        }
    }
    let Some(fac) = w.get(i) else {
        return err(d, "a facility is required (e.g. local0)".into());
    };
    if !SYSLOG_FACILITIES.contains(&fac.as_str()) {
        return err(
            d,
            format!("unknown facility '{fac}' (e.g. local0, daemon, user)"),
        );
    }
    for lvl in &w[i + 1..(i + 3).min(w.len())] {
        if !SYSLOG_LEVELS.contains(&lvl.as_str()) {
            return err(
                d,
                format!(
                    "unknown level '{lvl}' (expected {})",
                    SYSLOG_LEVELS.join("|")
                ),
            );
        }
    }
    if let Some(extra) = w.get(i + 3) {
        return err(d, format!("unexpected argument '{extra}'"));
    }
    true
}
