//! `resolvers NAME` sections: the nameservers and timers for re-resolving server hostnames.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::lex::Line;
use super::super::scalar::{parse_port, parse_time, parse_uint, split_host_port, Host, TimeUnit};
use super::super::Resolvers;
use super::{arity, Diag, Parser, Section};

impl Parser {
    pub(super) fn resolvers_section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        if !arity(&mut self.diag, h, 1, 1, 1) {
            return;
        }
        let name = &h.words[1];
        let duplicate = if let Some(first) = self.resolvers.get(name) {
            self.diag.err(
                &h.loc,
                format!("resolvers name '{name}' is used twice (first at {first})"),
            );
            true
        } else {
            self.resolvers.insert(name.clone(), h.loc.clone());
            false
        };
        let secs = Duration::from_secs;
        let mut res = Resolvers {
            name: name.clone(),
            loc: h.loc.clone(),
            nameservers: Vec::new(),
            parse_resolv_conf: false,
            resolve_retries: 3,
            timeout_resolve: secs(1),
            timeout_retry: secs(1),
            hold_valid: secs(10),
            hold_nx: secs(30),
            hold_other: secs(30),
            hold_refused: secs(30),
            hold_timeout: secs(30),
            hold_obsolete: Duration::ZERO,
            accepted_payload_size: 512,
        };
        for line in sec.body {
            resolvers_line(&mut self.diag, &mut res, line);
        }
        if res.nameservers.is_empty() && !res.parse_resolv_conf {
            self.diag.warn(
                &h.loc,
                format!(
                    "resolvers '{name}' has no nameserver, so it resolves nothing (add 'nameserver NAME IP:PORT' or \
                     'parse-resolv-conf')"
                ),
            );
        }
        if !duplicate {
            self.global.resolvers.push(res);
        }
    }
}

/// One line of a `resolvers` section, into `res`.
fn resolvers_line(d: &mut Diag, res: &mut Resolvers, line: &Line) {
    let w = &line.words;
    let kw = w[0].as_str();
    match kw {
        "nameserver" => {
            if arity(d, line, 1, 2, 2) {
                let addr = split_host_port(&w[2]).and_then(|hp| match (hp.host, hp.port) {
                    (Some(Host::Ip(ip)), Some(p)) => parse_port(&p).map(|p| SocketAddr::new(ip, p)),
                    _ => Err(format!("expected IP:PORT, got '{}'", w[2])),
                });
                match addr {
                    Ok(a) => {
                        if res.nameservers.iter().any(|(n, _)| n == &w[1]) {
                            d.err(&line.loc, format!("'nameserver {}': name used twice", w[1]));
                        }
                        res.nameservers.push((w[1].clone(), a));
                    }
                    Err(e) => d.err(&line.loc, format!("'nameserver {}': {e}", w[1])),
                }
            }
        }
        "resolve_retries" | "accepted_payload_size" => {
            if arity(d, line, 1, 1, 1) {
                let (min, max) = if kw == "resolve_retries" {
                    (1, 1000)
                } else {
                    (512, 65535)
                };
                match parse_uint(&w[1], min, max) {
                    Ok(v) if kw == "resolve_retries" => res.resolve_retries = v as u32,
                    Ok(v) => res.accepted_payload_size = v as u16,
                    Err(e) => d.err(&line.loc, format!("'{kw}': {e}")),
                }
            }
        }
        "timeout" | "hold" => {
            let subs: &[&str] = if kw == "timeout" {
                &["resolve", "retry"]
            } else {
                &["valid", "nx", "other", "refused", "timeout", "obsolete"]
            };
            if !w.get(1).is_some_and(|s| subs.contains(&s.as_str())) {
                d.err(
                    &line.loc,
                    format!("'{kw}': expects one of {} and a time", subs.join("|")),
                );
            } else if arity(d, line, 2, 1, 1) {
                match parse_time(&w[2], TimeUnit::Ms) {
                    Ok(t) if t.is_zero() && kw == "timeout" => {
                        d.err(&line.loc, format!("'{kw} {}': must be more than 0", w[1]));
                    }
                    Ok(t) => {
                        let slot = match (kw, w[1].as_str()) {
                            ("timeout", "resolve") => &mut res.timeout_resolve,
                            ("timeout", _) => &mut res.timeout_retry,
                            (_, "valid") => &mut res.hold_valid,
                            (_, "nx") => &mut res.hold_nx,
                            (_, "other") => &mut res.hold_other,
                            (_, "refused") => &mut res.hold_refused,
                            (_, "timeout") => &mut res.hold_timeout,
                            _ => &mut res.hold_obsolete,
                        };
                        *slot = t;
                    }
                    Err(e) => d.err(&line.loc, format!("'{kw} {}': {e}", w[1])),
                }
            }
        }
        "parse-resolv-conf" => {
            if arity(d, line, 1, 0, 0) {
                res.parse_resolv_conf = true;
            }
        }
        _ => d.err(
            &line.loc,
            format!(
                "unknown keyword '{kw}' in 'resolvers' section '{}'",
                res.name
            ),
        ),
    }
}
