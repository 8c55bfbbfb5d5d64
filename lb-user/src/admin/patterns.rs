//! `show|get|add|del|set|clear acl|map` (HAProxy 2.6's `src/map.c`, its messages and dump
//! formats): the words parsed without state ([`parse`]), then run against a generation's
//! pattern references ([`run`]). A change reaches every ACL and map using the reference at
//! once and lasts until the next reload, which reads the files again, as in HAProxy.
//!
//! Not supported: versions (`prepare`, `commit`, `@VER` other than the current one, 0).

use std::fmt::Write;

use crate::acl::patref::{Form, PatRefs, RefInfo, Use, Which};
use crate::acl::pattern::Method;
use crate::acl::Value;

/// One command, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatCommand {
    /// `show acl|map [[@VER] REF]`: the list of references, or one's entries.
    Show {
        of: Use,
        name: Option<String>,
        version: Option<String>,
    },
    /// `get acl|map REF VALUE`: what each user of the reference matches.
    Get {
        of: Use,
        name: String,
        value: String,
    },
    /// `add acl [@VER] REF PATTERN`, `add map [@VER] REF KEY VALUE`, or `add map [@VER] REF
    /// <<` and a `KEY VALUE` per payload line: the entries, in order.
    Add {
        of: Use,
        name: String,
        entries: Vec<(String, Option<String>)>,
        version: Option<String>,
    },
    /// `del acl|map REF KEY|#HANDLE`.
    Del { of: Use, name: String, key: String },
    /// `set map REF KEY|#HANDLE VALUE`.
    Set {
        name: String,
        key: String,
        value: String,
    },
    /// `clear acl|map [@VER] REF`.
    Clear {
        of: Use,
        name: String,
        version: Option<String>,
    },
}

/// `Unknown map identifier...` / `Unknown ACL identifier...`.
fn unknown(of: Use) -> String {
    match of {
        Use::Map => "Unknown map identifier. Please use #<id> or <file>.\n",
        Use::Acl => "Unknown ACL identifier. Please use #<id> or <file>.\n",
    }
    .to_owned()
}

const ADD_MAP_ARGS: &str = "'add map' expects three parameters (map identifier, key and value) \
                            or one parameter (map identifier) and a payload\n";
const ADD_ACL_ARGS: &str = "'add acl' expects two parameters: ACL identifier and pattern.\n";

const MALFORMED: &str = "Malformed identifier. Please use #<id> or <file>.\n";

/// Versions other than the current one (0) are not kept.
const NO_VERSIONS: &str = "lb keeps no pattern versions: only @0 (the current one) is known.\n";

/// The words after `VERB acl|map` (`verb` one of show, get, add, del, set, clear), and the
/// payload after a command ending in `<<` (read by `add map` only).
pub fn parse(
    verb: &str,
    kind: &str,
    rest: &[&str],
    payload: Option<&str>,
) -> Result<PatCommand, String> {
    let of = if kind == "map" { Use::Map } else { Use::Acl };
    let word = |i: usize| rest.get(i).map(|w| (*w).to_owned());
    // `@VER` before the reference (show, add, clear).
    let (version, rest_v) = match rest.first() {
        Some(v) if v.starts_with('@') && matches!(verb, "show" | "add" | "clear") => {
            (Some(v[1..].to_owned()), &rest[1..])
        }
        _ => (None, rest),
    };
    let word_v = |i: usize| rest_v.get(i).map(|w| (*w).to_owned());
    let missing = |map: &str, acl: &str| {
        Err(match of {
            Use::Map => map,
            Use::Acl => acl,
        }
        .to_owned())
    };
    Ok(match verb {
        "show" => PatCommand::Show {
            of,
            name: word_v(0),
            version,
        },
        "get" => match (word(0), word(1)) {
            (Some(name), Some(value)) => PatCommand::Get { of, name, value },
            _ => {
                return missing(
                    "Missing map identifier and/or key.\n",
                    "Missing ACL identifier and/or key.\n",
                )
            }
        },
        "add" => match (of, word_v(0), word_v(1), word_v(2), payload) {
            (Use::Acl, Some(name), Some(key), _, _) => PatCommand::Add {
                of,
                name,
                entries: vec![(key, None)],
                version,
            },
            (Use::Map, Some(name), _, _, Some(payload)) => PatCommand::Add {
                of,
                name,
                entries: payload_entries(payload)?,
                version,
            },
            (Use::Map, Some(name), Some(key), Some(value), None) => PatCommand::Add {
                of,
                name,
                entries: vec![(key, Some(value))],
                version,
            },
            _ => return missing(ADD_MAP_ARGS, ADD_ACL_ARGS),
        },
        "del" => match (word(0), word(1)) {
            (Some(name), Some(key)) => PatCommand::Del { of, name, key },
            _ => {
                return missing(
                    "This command expects two parameters: map identifier and key.\n",
                    "This command expects two parameters: ACL identifier and key.\n",
                )
            }
        },
        "set" => match (word(0), word(1), word(2)) {
            (Some(name), Some(key), Some(value)) => PatCommand::Set { name, key, value },
            _ => {
                return Err(
                    "'set map' expects three parameters: map identifier, key and value.\n"
                        .to_owned(),
                )
            }
        },
        _ => match word_v(0) {
            Some(name) => PatCommand::Clear { of, name, version },
            None => return missing("Missing map identifier.\n", "Missing ACL identifier.\n"),
        },
    })
}

/// `KEY VALUE` per line (blanks between; the value is the rest of the line).
fn payload_entries(payload: &str) -> Result<Vec<(String, Option<String>)>, String> {
    payload
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once([' ', '\t']) {
            Some((k, v)) => Ok((
                k.to_owned(),
                Some(v.trim_start_matches([' ', '\t']).to_owned()),
            )),
            None => Err(format!("Missing value for key '{l}'.\n")),
        })
        .collect()
}

/// Only the current version, 0, exists.
fn current(version: Option<&String>) -> Result<bool, String> {
    match version.map(|v| v.parse::<u32>()) {
        None | Some(Ok(0)) => Ok(true),
        Some(Ok(_)) => Ok(false),
        Some(Err(_)) => Err(NO_VERSIONS.to_owned()),
    }
}

/// Runs `c` on `refs`: the answer, or HAProxy's error message.
pub fn run(refs: &PatRefs, c: &PatCommand) -> Result<String, String> {
    // The reference named, used as `of` when `checked` (HAProxy checks it for some commands).
    let find = |name: &str, of: Use, checked: bool| {
        refs.lookup(name)
            .filter(|r| !checked || r.used_as(of))
            .ok_or_else(|| unknown(of))
    };
    match c {
        PatCommand::Show {
            of,
            name: None,
            version: _,
        } => Ok(list(refs, *of)),
        PatCommand::Show {
            of,
            name: Some(name),
            version,
        } => {
            let r = find(name, *of, true)?;
            let mut out = String::new();
            if current(version.as_ref())? {
                for e in r.pat.entries() {
                    let _ = match &e.value {
                        Some(v) => writeln!(out, "0x{:x} {} {v}", e.id, e.key),
                        None => writeln!(out, "0x{:x} {}", e.id, e.key),
                    };
                }
            }
            Ok(out)
        }
        PatCommand::Get { of, name, value } => Ok(get(find(name, *of, false)?, *of, value)),
        PatCommand::Add {
            of,
            name,
            entries,
            version,
        } => {
            let r = find(name, *of, false)?;
            if !current(version.as_ref())? {
                return Err(NO_VERSIONS.to_owned());
            }
            if *of == Use::Acl && r.pat.two_columns() {
                return Err(
                    "This ACL is shared with a map containing samples. You must use \
                            the command 'add map' to add values.\n"
                        .to_owned(),
                );
            }
            // All or nothing (HAProxy keeps the entries before a refused one).
            let new: Vec<(&str, Option<&str>)> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            r.pat.add(&new).map_err(|e| format!("{e}.\n"))?;
            Ok(String::new())
        }
        PatCommand::Del { of, name, key } => {
            // HAProxy names maps in this message whichever it was asked.
            let r = find(name, *of, true).map_err(|_| unknown(Use::Map))?;
            let which = Which::parse(key).ok_or(MALFORMED)?;
            if r.pat.delete(which) {
                Ok(String::new())
            } else {
                Err("Key not found.\n".to_owned())
            }
        }
        PatCommand::Set { name, key, value } => {
            let r = find(name, Use::Map, false)?;
            let which = Which::parse(key).ok_or(MALFORMED)?;
            match r.pat.set(which, value) {
                Ok(true) => Ok(String::new()),
                Ok(false) => Err("entry not found.\n".to_owned()),
                Err(e) => Err(format!("{e}.\n")),
            }
        }
        PatCommand::Clear { of, name, version } => {
            let r = find(name, *of, true)?;
            if current(version.as_ref())? {
                r.pat.clear();
            }
            Ok(String::new())
        }
    }
}

/// `show acl|map`: the references used as ACLs (or maps), by id.
fn list(refs: &PatRefs, of: Use) -> String {
    let mut out = String::from("# id (file) description\n");
    for r in refs.iter().filter(|r| r.used_as(of)) {
        let _ = writeln!(
            out,
            "{} ({}) {}. curr_ver=0 next_ver=0 entry_cnt={}",
            r.id,
            r.file.as_deref().unwrap_or_default(),
            r.display,
            r.pat.entry_count()
        );
    }
    out
}

/// `get acl|map REF VALUE`: a line per user of the reference (each ACL expression or map
/// converter), with what it matches.
fn get(r: &RefInfo, of: Use, value: &str) -> String {
    let mut out = String::new();
    let entries = r.pat.entries();
    for u in r.pat.users() {
        let form = u.form();
        let c = u.load();
        let _ = write!(
            out,
            "type={}, case={}",
            form.method.name(),
            if form.icase {
                "insensitive"
            } else {
                "sensitive"
            }
        );
        let (found, key) = match of {
            Use::Map => ("found", "key"),
            Use::Acl => ("match", "pattern"),
        };
        let Some(i) = c.find(&Value::str(value)) else {
            let _ = writeln!(out, ", {found}=no");
            continue;
        };
        let idx = if indexed_in_tree(form) {
            "tree"
        } else {
            "list"
        };
        let entry = entries.get(i);
        let pattern = entry.map_or("unknown", |e| e.key.as_str());
        let _ = write!(out, ", {found}=yes, idx={idx}, {key}=\"{pattern}\"");
        if of == Use::Map {
            match (c.values.get(i), entry.and_then(|e| e.value.as_deref())) {
                (Some(v), Some(text)) => {
                    let _ = write!(out, ", value=\"{text}\", type=\"{}\"", type_name(v));
                }
                _ => out.push_str(", value=none"),
            }
        }
        out.push('\n');
    }
    out
}

/// HAProxy keeps exact strings and prefixes (case-sensitive ones) and networks in trees, the
/// rest in lists (`pat_idx_tree_str`, `_pfx`, `_ip`).
fn indexed_in_tree(f: Form) -> bool {
    match f.method {
        Method::Ip => true,
        Method::Str | Method::Beg => !f.icase,
        _ => false,
    }
}

/// HAProxy's name of a sample's type (`smp_to_type`).
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Int(_) => "sint",
        Value::Addr(std::net::IpAddr::V4(_)) => "ipv4",
        Value::Addr(std::net::IpAddr::V6(_)) => "ipv6",
        Value::Str(_) => "str",
        Value::Bin(_) => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::patref::RefBuilder;
    use crate::acl::Type;

    fn p(verb: &str, kind: &str, rest: &str) -> Result<PatCommand, String> {
        parse(
            verb,
            kind,
            &rest.split_whitespace().collect::<Vec<_>>(),
            None,
        )
    }

    #[test]
    fn commands_parse_with_haproxy_messages() {
        assert_eq!(
            p("add", "acl", "@0 /b.lst 1.2.3.4"),
            Ok(PatCommand::Add {
                of: Use::Acl,
                name: "/b.lst".into(),
                entries: vec![("1.2.3.4".into(), None)],
                version: Some("0".into())
            })
        );
        assert_eq!(
            parse("add", "map", &["/m"], Some("k1 v 1\nk2\tv2\n")),
            Ok(PatCommand::Add {
                of: Use::Map,
                name: "/m".into(),
                entries: vec![
                    ("k1".into(), Some("v 1".into())),
                    ("k2".into(), Some("v2".into()))
                ],
                version: None
            })
        );
        assert_eq!(
            parse("add", "map", &["/m"], Some("k1 v\nlonely\n")),
            Err("Missing value for key 'lonely'.\n".into())
        );
        // Only `add map` reads a payload.
        assert_eq!(
            parse("add", "acl", &["/b"], Some("1.2.3.4\n")),
            Err(ADD_ACL_ARGS.into())
        );
        assert_eq!(
            p("add", "map", "/m k"),
            Err(
                "'add map' expects three parameters (map identifier, key and value) or one \
                 parameter (map identifier) and a payload\n"
                    .into()
            )
        );
        assert_eq!(
            p("add", "acl", "/b"),
            Err("'add acl' expects two parameters: ACL identifier and pattern.\n".into())
        );
        assert_eq!(
            p("get", "map", "/m"),
            Err("Missing map identifier and/or key.\n".into())
        );
        assert_eq!(
            p("del", "acl", ""),
            Err("This command expects two parameters: ACL identifier and key.\n".into())
        );
        assert_eq!(
            p("set", "map", "/m k"),
            Err("'set map' expects three parameters: map identifier, key and value.\n".into())
        );
        assert_eq!(
            p("clear", "map", ""),
            Err("Missing map identifier.\n".into())
        );
        assert_eq!(
            p("show", "map", ""),
            Ok(PatCommand::Show {
                of: Use::Map,
                name: None,
                version: None
            })
        );
    }

    fn refs() -> PatRefs {
        let mut b = RefBuilder::default();
        let acl = b
            .file("/b.lst", false, Use::Acl, ("h.cfg", 3), || {
                Ok(b"10.0.0.0/8\n".to_vec())
            })
            .unwrap();
        acl.user(Form::acl(Method::Ip)).unwrap();
        let map = b
            .file("/m.map", true, Use::Map, ("h.cfg", 7), || {
                Ok(b"192.0.2.0/24 eu\n".to_vec())
            })
            .unwrap();
        map.user(Form::map(Method::Ip, Type::Str)).unwrap();
        b.finish()
    }

    fn run_words(refs: &PatRefs, verb: &str, kind: &str, rest: &str) -> Result<String, String> {
        run(refs, &p(verb, kind, rest)?)
    }

    #[test]
    fn the_runtime_api_reads_and_changes_references() {
        let refs = refs();
        let r = |v, k, rest| run_words(&refs, v, k, rest);
        assert_eq!(
            r("show", "acl", ""),
            Ok(
                "# id (file) description\n0 (/b.lst) pattern loaded from file '/b.lst' used \
                by acl at file 'h.cfg' line 3. curr_ver=0 next_ver=0 entry_cnt=1\n"
                    .into()
            )
        );
        assert!(r("show", "map", "").unwrap().contains("1 (/m.map) "));
        assert_eq!(
            r("show", "acl", "/m.map"),
            Err("Unknown ACL identifier. Please use #<id> or <file>.\n".into())
        );
        assert_eq!(
            r("get", "acl", "/b.lst 10.1.1.1"),
            Ok("type=ip, case=sensitive, match=yes, idx=tree, pattern=\"10.0.0.0/8\"\n".into())
        );
        assert_eq!(
            r("get", "acl", "/b.lst 192.0.2.1"),
            Ok("type=ip, case=sensitive, match=no\n".into())
        );
        assert_eq!(r("add", "acl", "/b.lst 192.0.2.1"), Ok(String::new()));
        assert!(r("get", "acl", "/b.lst 192.0.2.1")
            .unwrap()
            .contains("match=yes"));
        let e = r("add", "acl", "/b.lst not-an-address").unwrap_err();
        assert!(e.contains("not-an-address") && e.ends_with(".\n"), "{e}");
        assert_eq!(
            r("add", "acl", "/m.map 10.0.0.1"),
            Err(
                "This ACL is shared with a map containing samples. You must use the command \
                 'add map' to add values.\n"
                    .into()
            )
        );
        assert_eq!(
            r("get", "map", "#1 192.0.2.9"),
            Ok(
                "type=ip, case=sensitive, found=yes, idx=tree, key=\"192.0.2.0/24\", \
                value=\"eu\", type=\"str\"\n"
                    .into()
            )
        );
        assert_eq!(r("set", "map", "/m.map 192.0.2.0/24 us"), Ok(String::new()));
        assert!(r("get", "map", "/m.map 192.0.2.9")
            .unwrap()
            .contains("value=\"us\""));
        assert_eq!(
            r("set", "map", "/m.map 198.51.100.0/24 us"),
            Err("entry not found.\n".into())
        );
        // Entries by handle.
        let shown = r("show", "map", "/m.map").unwrap();
        let handle = shown.split_whitespace().next().unwrap().to_owned();
        assert!(shown.ends_with(" 192.0.2.0/24 us\n"), "{shown}");
        assert_eq!(r("del", "map", "/m.map #0xzz"), Err(MALFORMED.into()));
        let by_handle = format!("/m.map #{handle}");
        assert_eq!(
            run_words(&refs, "del", "map", &by_handle),
            Ok(String::new())
        );
        assert_eq!(
            run_words(&refs, "del", "map", &by_handle),
            Err("Key not found.\n".into())
        );
        assert_eq!(
            r("del", "acl", "/m.map 1"),
            Err("Unknown map identifier. Please use #<id> or <file>.\n".into())
        );
        assert_eq!(r("clear", "acl", "/b.lst"), Ok(String::new()));
        assert_eq!(r("show", "acl", "/b.lst"), Ok(String::new()));
        assert_eq!(r("show", "acl", "@1 /b.lst"), Ok(String::new()));
        assert_eq!(
            r("add", "acl", "@1 /b.lst 10.0.0.1"),
            Err(NO_VERSIONS.into())
        );
    }
}
