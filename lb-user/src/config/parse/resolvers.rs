//! `resolvers NAME` sections: the nameservers and timers for re-resolving server hostnames,
//! `parse-resolv-conf`, and the implicit `default` section HAProxy 2.6 adds.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::super::lex::Line;
use super::super::scalar::{parse_port, parse_time, parse_uint, split_host_port, Host, TimeUnit};
use super::super::{Loc, Resolvers};
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
        let mut res = new_section(name, h.loc.clone());
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

    /// HAProxy 2.6's `resolvers_create_default`: when no section is named `default`, one is
    /// added after the others, with the nameservers of `/etc/resolv.conf` (none when it cannot
    /// be read: silently, as HAProxy), so that `resolvers default` works without a section
    /// and `show resolvers` lists it.
    pub(super) fn default_resolvers(&mut self) {
        if self.resolvers.contains_key("default") {
            return;
        }
        let loc = Loc {
            file: Arc::new(PathBuf::from("<internal>")),
            line: 0,
        };
        let mut res = new_section("default", loc.clone());
        res.parse_resolv_conf = true;
        if let Ok(text) = read_resolv_conf() {
            for (_, name, addr) in resolv_conf(&text) {
                if !res.nameservers.iter().any(|(n, _)| *n == name) {
                    res.nameservers.push((name, addr));
                }
            }
        }
        self.resolvers.insert("default".to_owned(), loc);
        self.global.resolvers.push(res);
    }
}

/// A section with HAProxy's defaults.
fn new_section(name: &str, loc: Loc) -> Resolvers {
    let secs = Duration::from_secs;
    Resolvers {
        name: name.to_owned(),
        loc,
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
    }
}

/// `/etc/resolv.conf`, from outside the chroot on a reload (a fixed stand-in when fuzzing:
/// no file read per input).
fn read_resolv_conf() -> std::io::Result<String> {
    #[cfg(not(fuzzing))]
    {
        crate::outside::read_to_string(std::path::Path::new("/etc/resolv.conf"))
    }
    #[cfg(fuzzing)]
    {
        Ok("nameserver 127.0.0.1\n".to_owned())
    }
}

/// The `nameserver` lines of a resolv.conf, as HAProxy 2.6's `parse_resolve_conf` reads them:
/// (line number, name, address port 53). The name is the address as written (HAProxy names
/// these nameservers by it); a `%scope` is dropped from the address. Lines whose address is
/// not an IP are left out.
fn resolv_conf(text: &str) -> Vec<(usize, String, SocketAddr)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let rest = l.strip_prefix("nameserver")?;
            // "nameserverX ..." is not a nameserver line: a blank must follow the keyword.
            if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
                return None;
            }
            let word = rest.split_ascii_whitespace().next()?;
            let ip = word.split('%').next()?.parse::<IpAddr>().ok()?;
            Some((i + 1, word.to_owned(), SocketAddr::new(ip, 53)))
        })
        .collect()
}

/// The nameservers of resolv.conf `text` into `res`; one whose name (its address) another
/// nameserver of the section already has is left out with HAProxy's warning.
fn add_resolv_conf(d: &mut Diag, res: &mut Resolvers, line: &Line, text: &str) {
    for (n, name, addr) in resolv_conf(text) {
        if res.nameservers.iter().any(|(have, _)| *have == name) {
            d.warn(
                &line.loc,
                format!(
                    "/etc/resolv.conf:{n}: generated name for /etc/resolv.conf nameserver \
                     '{name}' conflicts with another nameserver of resolvers '{}', it appears \
                     to be a duplicate and will be excluded",
                    res.name
                ),
            );
        } else {
            res.nameservers.push((name, addr));
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
                // Read here, in line order, as HAProxy: these nameservers take their place
                // among the section's `nameserver` lines.
                match read_resolv_conf() {
                    Ok(text) => add_resolv_conf(d, res, line, &text),
                    Err(e) => d.err(
                        &line.loc,
                        format!("'parse-resolv-conf': failed to open /etc/resolv.conf: {e}"),
                    ),
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_named_by_their_address() {
        let ns = resolv_conf(
            "# c\nsearch x\nnameserver 10.0.0.1\nnameserver\tfe80::1%eth0\nnameserver bad\n\
             nameserver\nnameserverx 10.0.0.9\n  nameserver 10.0.0.8\n",
        );
        assert_eq!(
            ns,
            vec![
                (3, "10.0.0.1".to_owned(), "10.0.0.1:53".parse().unwrap()),
                (
                    4,
                    "fe80::1%eth0".to_owned(),
                    "[fe80::1]:53".parse().unwrap()
                ),
            ]
        );
    }
}
