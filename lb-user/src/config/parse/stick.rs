//! `stick-table` and `stick` lines of proxies, `peers` sections, and the load-time checks that
//! tie them together (every `track-sc*` and `stick` rule names a table that exists; tables used
//! by `stick` rules store `server_id` and `server_key`, as HAProxy adds them).

use std::collections::HashMap;

use super::super::lex::Line;
use super::super::scalar::{parse_size, parse_time, TimeUnit};
use super::proxy::{Kind, ProxyDraft};
use super::suggest::suggest;
use super::{arity, Parser, Section};
use crate::acl::{FsLoader, Places, SampleExpr};
use crate::rules::{Action, StickKind, StickRule};
use crate::stick::def::ALL;
use crate::stick::{DataType, KeyType, TableDef};

/// The `stick-table` of a proxy being read, with where it was written.
pub(super) type DraftTable = Option<(TableDef, super::super::Loc)>;

/// Parses `stick-table type T [len N] size N [expire T] [nopurge] [peers P] [srvkey K]
/// [write-to T] [store a,b(P),...]` (HAProxy's `parse_stick_table`).
fn table_def(name: &str, w: &[String]) -> Result<(TableDef, Vec<String>), String> {
    let mut def = TableDef {
        name: name.to_owned(),
        key: KeyType::Ip,
        key_len: 32,
        size: 0,
        expire: None,
        store: Vec::new(),
        peers: None,
        nopurge: false,
    };
    let mut warnings = Vec::new();
    let (mut typed, mut sized) = (false, false);
    let mut i = 0;
    let value = |i: usize, kw: &str| {
        w.get(i + 1)
            .map(String::as_str)
            .ok_or_else(|| format!("'stick-table {kw}' expects a value"))
    };
    while i < w.len() {
        let kw = w[i].as_str();
        match kw {
            "type" => {
                let t = value(i, kw)?;
                def.key = KeyType::parse(t).ok_or_else(|| {
                    format!(
                        "'stick-table type': unknown type '{t}' (expected ip, ipv6, integer, \
                         string or binary){}",
                        suggest(t, &["ip", "ipv6", "integer", "string", "binary"])
                    )
                })?;
                typed = true;
                i += 2;
                if w.get(i).map(String::as_str) == Some("len") {
                    let n = value(i, "len")?;
                    def.key_len = n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=65_535).contains(n))
                        .ok_or_else(|| format!("'stick-table len': invalid length '{n}'"))?;
                    i += 2;
                }
            }
            "size" => {
                let s = value(i, kw)?;
                def.size = parse_size(s).map_err(|e| format!("'stick-table size': {e}"))?;
                sized = true;
                i += 2;
            }
            "expire" => {
                let t = value(i, kw)?;
                let d = parse_time(t, TimeUnit::Ms)
                    .map_err(|e| format!("'stick-table expire': {e}"))?;
                def.expire = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                i += 2;
            }
            "nopurge" => {
                def.nopurge = true;
                i += 1;
            }
            "peers" => {
                def.peers = Some(value(i, kw)?.to_owned());
                i += 2;
            }
            "srvkey" => {
                let k = value(i, kw)?;
                if k != "name" && k != "addr" {
                    return Err(format!(
                        "'stick-table srvkey': expects 'name' or 'addr', got '{k}'"
                    ));
                }
                i += 2;
            }
            "write-to" | "recv-only" => {
                warnings.push(format!(
                    "'stick-table {kw}' is not supported yet (table chaining); ignored"
                ));
                i += if kw == "write-to" { 2 } else { 1 };
            }
            "store" => {
                for item in value(i, kw)?.split(',') {
                    store_item(&mut def, item)?;
                }
                i += 2;
            }
            other => {
                return Err(format!(
                    "'stick-table': unknown argument '{other}'{}",
                    suggest(
                        other,
                        &["type", "size", "expire", "store", "peers", "nopurge", "srvkey"]
                    )
                ))
            }
        }
    }
    if !typed {
        return Err("'stick-table': missing 'type'".to_owned());
    }
    if !sized || def.size == 0 {
        return Err("'stick-table': missing or zero 'size'".to_owned());
    }
    if matches!(def.key, KeyType::Ip | KeyType::Ipv6 | KeyType::Integer) {
        def.key_len = match def.key {
            KeyType::Ipv6 => 16,
            _ => 4,
        };
    }
    def.store.sort_by_key(|(d, _)| *d as usize);
    Ok((def, warnings))
}

/// One `store` item: `conn_cnt`, `conn_rate(10s)`, ...
fn store_item(def: &mut TableDef, item: &str) -> Result<(), String> {
    let (name, arg) = match item.split_once('(') {
        Some((n, a)) => (
            n,
            Some(
                a.strip_suffix(')')
                    .ok_or_else(|| format!("'store {item}': missing ')'"))?,
            ),
        ),
        None => (item, None),
    };
    if matches!(name, "gpc" | "gpt" | "gpc_rate") {
        return Err(format!(
            "'store {item}': the counter arrays (gpc, gpt, gpc_rate) are not supported yet; use \
             gpc0, gpc1, gpt0"
        ));
    }
    let names: Vec<&str> = ALL.iter().map(|d| d.name()).collect();
    let dt = DataType::by_name(name)
        .filter(|d| *d != DataType::ServerKey || arg.is_none())
        .ok_or_else(|| {
            format!(
                "'stick-table store': unknown data type '{name}'{}",
                suggest(name, &names)
            )
        })?;
    let period = match (dt.is_rate(), arg) {
        (true, Some(p)) => {
            let d = parse_time(p, TimeUnit::Ms).map_err(|e| format!("'store {item}': {e}"))?;
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        }
        (true, None) => {
            return Err(format!(
                "'store {name}': missing the period (write '{name}(<period>)')"
            ))
        }
        (false, Some(_)) => return Err(format!("'store {item}': '{name}' takes no argument")),
        (false, None) => 0,
    };
    if def.stores(dt) {
        return Err(format!("'store': '{name}' given twice"));
    }
    def.store.push((dt, period));
    Ok(())
}

/// `stick-table ...` in a proxy.
pub(super) fn stick_table(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if px.kind == Kind::Defaults {
        p.diag.err(
            &line.loc,
            "'stick-table' is not allowed in 'defaults' sections",
        );
        return;
    }
    if let Some((_, first)) = &px.table {
        p.diag.err(
            &line.loc,
            format!(
                "{}: only one 'stick-table' per proxy (the first is at {first})",
                px.ctx()
            ),
        );
        return;
    }
    match table_def(&px.name, &line.words[1..]) {
        Ok((def, warnings)) => {
            for w in warnings {
                p.diag.warn(&line.loc, w);
            }
            px.table = Some((def, line.loc.clone()));
        }
        Err(e) => p.diag.err(&line.loc, e),
    }
}

/// `stick on|match|store-request|store-response PATTERN [table T] [if|unless COND]`.
pub(super) fn stick(p: &mut Parser, px: &mut ProxyDraft, line: &Line) {
    if !arity(&mut p.diag, line, 1, 2, usize::MAX) {
        return;
    }
    if px.kind == Kind::Frontend || px.kind == Kind::Defaults {
        p.diag.err(
            &line.loc,
            format!(
                "{}: 'stick' rules need a backend (write them in a backend or listen section)",
                px.ctx()
            ),
        );
        return;
    }
    let (kind, place) = match line.words[1].as_str() {
        "on" => (StickKind::On, Places::REQUEST),
        "match" => (StickKind::Match, Places::REQUEST),
        "store-request" => (StickKind::StoreRequest, Places::REQUEST),
        "store-response" => (StickKind::StoreResponse, Places::RESPONSE),
        other => {
            p.diag.err(
                &line.loc,
                format!(
                    "'stick': unknown rule '{other}' (expected on, match, store-request or \
                     store-response){}",
                    suggest(other, &["on", "match", "store-request", "store-response"])
                ),
            );
            return;
        }
    };
    let rest = &line.words[2..];
    let (key, mut used, w) = match SampleExpr::parse_words(rest, true, &FsLoader) {
        Ok(x) => x,
        Err(e) => {
            p.diag
                .err(&line.loc, format!("'stick {}': {e}", line.words[1]));
            return;
        }
    };
    for w in w {
        p.diag.warn(&line.loc, w);
    }
    let mut table = px.name.clone();
    if rest.get(used).map(String::as_str) == Some("table") {
        let Some(t) = rest.get(used + 1) else {
            p.diag
                .err(&line.loc, "'stick ... table' expects a table name");
            return;
        };
        table.clone_from(t);
        used += 2;
    }
    let rule = format!("stick {}", line.words[1]);
    let Some(cond) = super::tcp_rules::condition(p, px, line, &rule, &rest[used..], place) else {
        return;
    };
    px.rules.source.push(line.words.join(" "));
    px.table_refs.push((table.clone(), line.loc.clone()));
    px.rules.stick.push(StickRule {
        at: line.loc.to_string(),
        kind,
        key,
        table,
        cond,
    });
}

/// The keywords of a `peers` section.
const KEYWORDS: &[&str] = &[
    "peer",
    "server",
    "bind",
    "default-bind",
    "default-server",
    "table",
    "disabled",
    "enabled",
    "log",
    "shards",
];

/// The proxies' tables with where each was written, by name.
type TableSet = HashMap<String, (TableDef, super::super::Loc)>;

impl Parser {
    /// A `peers` section: its lines are checked and kept for `lb -c`'s warning; tables are
    /// not synchronised.
    pub(super) fn peers_section(&mut self, sec: &Section<'_>) {
        let h = sec.header;
        if !arity(&mut self.diag, h, 1, 1, 1) {
            return;
        }
        for line in sec.body {
            let kw = line.words[0].as_str();
            if !KEYWORDS.contains(&kw) {
                self.diag.err(
                    &line.loc,
                    format!(
                        "unknown keyword '{kw}' in 'peers' section{}",
                        suggest(kw, KEYWORDS)
                    ),
                );
            } else if kw == "peer" && line.words.len() < 3 {
                self.diag
                    .err(&line.loc, "'peer' expects a name and an address");
            }
        }
        self.diag.warn(
            &h.loc,
            format!(
                "'peers' section '{}' is parsed, but lb does not synchronise stick tables \
                 between nodes yet: each node keeps its own",
                h.words[1]
            ),
        );
        self.peers.insert(h.words[1].clone(), h.loc.clone());
    }

    /// Once every section is read: the stick tables, each `track-sc*` and `stick` rule's table
    /// checked (a `track-sc*` without `table` uses its proxy's own).
    pub(super) fn stick_tables(&mut self) -> Vec<TableDef> {
        let mut tables: TableSet = HashMap::new();
        let mut order = Vec::new();
        for px in &self.proxies {
            if let Some((def, loc)) = &px.table {
                order.push(def.name.clone());
                tables.insert(def.name.clone(), (def.clone(), loc.clone()));
            }
        }
        let mut proxies = std::mem::take(&mut self.proxies);
        for px in &mut proxies {
            self.proxy_tables(px, &mut tables);
        }
        self.proxies = proxies;
        for (def, loc) in tables.values() {
            if let Some(peers) = &def.peers {
                if !self.peers.contains_key(peers) {
                    self.diag.err(
                        loc,
                        format!("'stick-table peers': no 'peers' section named '{peers}'"),
                    );
                }
            }
        }
        order
            .iter()
            .filter_map(|n| tables.remove(n).map(|(d, _)| d))
            .collect()
    }

    fn proxy_tables(&mut self, px: &mut ProxyDraft, tables: &mut TableSet) {
        let ctx = px.ctx();
        let own = px.table.as_ref().map(|(d, _)| d.name.clone());
        let lists = [
            &mut px.rules.connection,
            &mut px.rules.session,
            &mut px.rules.content,
        ];
        let mut refs = Vec::new();
        for rule in lists.into_iter().flatten() {
            if let Action::Track(t) = &mut rule.action {
                if t.table.is_none() {
                    t.table.clone_from(&own);
                }
                match &t.table {
                    Some(name) => refs.push((name.clone(), rule.at.clone())),
                    // A named defaults section's rule: its proxies' tables, at run time.
                    None if px.kind == Kind::Defaults => {}
                    None => self.diag.err(
                        &px.loc,
                        format!(
                            "{ctx}: 'track-sc{}' at {} needs a stick table: this proxy has \
                             none (add 'stick-table' or 'table <name>')",
                            t.slot, rule.at
                        ),
                    ),
                }
            }
        }
        for (name, at) in refs {
            if !tables.contains_key(&name) {
                self.diag.err(
                    &px.loc,
                    format!("{ctx}: 'track-sc' at {at}: no stick table named '{name}'"),
                );
            }
        }
        for (name, loc) in std::mem::take(&mut px.table_refs) {
            match tables.get_mut(&name) {
                Some((def, _)) => {
                    def.ensure(DataType::ServerId);
                    def.ensure(DataType::ServerKey);
                }
                None => self.diag.err(
                    &loc,
                    format!("{ctx}: 'stick' rule: no stick table named '{name}'"),
                ),
            }
        }
    }
}
