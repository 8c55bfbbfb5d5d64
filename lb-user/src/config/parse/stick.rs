//! `stick-table` and `stick` lines of proxies, `peers` sections, and the load-time checks that
//! tie them together (every `track-sc*` and `stick` rule names a table that exists; tables used
//! by `stick` rules store `server_id` and `server_key`, as HAProxy adds them).

use std::collections::HashMap;

use super::super::lex::Line;
use super::super::scalar::{parse_size, parse_time, TimeUnit};
use super::proxy::{Kind, ProxyDraft};
use super::suggest::suggest;
use super::{arity, Parser, Section};
use crate::acl::{Places, SampleExpr};
use crate::rules::{Action, StickKind, StickRule};
use crate::stick::def::{Arrays, ALL, MAX_ARRAY};
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
        arrays: Arrays::default(),
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
                for item in store_items(value(i, kw)?)? {
                    store_item(&mut def, item)?;
                }
                overlaps(&def)?;
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

/// The items of `store a,b(P),gpc_rate(4,10s)`: commas inside parentheses do not split.
fn store_items(list: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut start, mut depth) = (Vec::new(), 0, 0u32);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(format!(
            "'stick-table store': missing closing parenthesis after store option '{}'",
            list[start..].split('(').next().unwrap_or("")
        ));
    }
    out.push(&list[start..]);
    Ok(out)
}

/// HAProxy refuses an array with the scalars it overrides (`gpc` and `gpc0`...).
fn overlaps(def: &TableDef) -> Result<(), String> {
    use DataType as D;
    let clash = if def.stores(D::Gpt) && def.stores(D::Gpt0) {
        "'gpt' and 'gpt0' in a same table is not permitted as 'gpt' overrides 'gpt0'"
    } else if def.stores(D::Gpc) && (def.stores(D::Gpc0) || def.stores(D::Gpc1)) {
        "'gpc' and 'gpc[0/1]' in a same table is not permitted as 'gpc' overrides 'gpc[0/1]'"
    } else if def.stores(D::GpcRate) && (def.stores(D::Gpc0Rate) || def.stores(D::Gpc1Rate)) {
        "'gpc_rate' and 'gpc[0/1]_rate' in a same table is not permitted as 'gpc_rate' \
         overrides 'gpc[0/1]_rate'"
    } else {
        return Ok(());
    };
    Err(format!(
        "'stick-table store': simultaneous usage of {clash}"
    ))
}

/// One `store` item: `conn_cnt`, `conn_rate(10s)`, `gpc(4)`, `gpc_rate(4,10s)`...
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
    let names: Vec<&str> = ALL.iter().map(|d| d.name()).collect();
    let dt = DataType::by_name(name)
        .filter(|d| *d != DataType::ServerKey || arg.is_none())
        .ok_or_else(|| {
            format!(
                "'stick-table store': unknown data type '{name}'{}",
                suggest(name, &names)
            )
        })?;
    // Arrays take their element count first: `gpc(4)`, `gpc_rate(4,10s)`.
    let mut arg = arg;
    if dt.is_array() {
        let (n, rest) = match arg {
            Some(a) => a.split_once(',').map_or((a, None), |(n, r)| (n, Some(r))),
            None => {
                return Err(format!(
                    "'stick-table store': missing argument to store option '{name}' (write \
                     '{name}(<count>{})')",
                    if dt.is_rate() { ",<period>" } else { "" }
                ))
            }
        };
        let n = n
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ARRAY).contains(n))
            .ok_or_else(|| {
                format!(
                    "'stick-table store': array size is out of allowed range (1-{MAX_ARRAY}) \
                     for store option '{name}'"
                )
            })?;
        match dt {
            DataType::Gpt => def.arrays.gpt = n,
            DataType::Gpc => def.arrays.gpc = n,
            _ => def.arrays.gpc_rate = n,
        }
        arg = rest;
    }
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

/// The stick counter (0..=2, HAProxy's `MAX_SESS_STKCTR` - 1), data type and element of
/// `sc-inc-gpc0[(SC)]`, `sc-inc-gpc1[(SC)]`, `sc-inc-gpc(IDX,SC)`, `sc-set-gpt0[(SC)]`,
/// `sc-set-gpt(IDX,SC)`, with HAProxy's errors (`parse_inc_gpc`, `parse_set_gpt`).
pub(super) fn counter_action(word: &str) -> Result<(u8, DataType, usize), String> {
    let (base, array, scalars): (&str, DataType, &[(char, DataType)]) =
        if word.starts_with("sc-inc-gpc") {
            (
                "sc-inc-gpc",
                DataType::Gpc,
                &[('0', DataType::Gpc0), ('1', DataType::Gpc1)],
            )
        } else {
            ("sc-set-gpt", DataType::Gpt, &[('0', DataType::Gpt0)])
        };
    let what = &base[7..];
    let up = what.to_uppercase();
    let tail = word.get(base.len()..).unwrap_or("");
    let max = || format!("invalid stick table track ID '{word}'. The max allowed ID is 2");
    if let Some(args) = tail.strip_prefix('(') {
        let expects = format!("Expects {base}(<{up} ID>,<Track ID>)");
        let (idx, sc) = args
            .split_once(',')
            .ok_or_else(|| format!("Missing {what} ID '{word}'. {expects}"))?;
        let idx = idx
            .parse::<u32>()
            .map_err(|_| format!("Missing {what} ID '{word}'. {expects}"))?;
        let sc = sc
            .strip_suffix(')')
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| format!("invalid stick table track ID '{word}'. {expects}"))?;
        let sc = u8::try_from(sc).ok().filter(|n| *n < 3).ok_or_else(max)?;
        return Ok((sc, array, idx as usize));
    }
    let mut chars = tail.chars();
    let Some(&(_, dt)) = chars
        .next()
        .and_then(|c| scalars.iter().find(|(d, _)| *d == c))
    else {
        return Err(format!(
            "invalid {what} ID '{word}'. Expects {base}(<{up} ID>,<Track ID>)"
        ));
    };
    let sc = match chars.as_str() {
        "" => 0,
        s => {
            let kw = &word[..=base.len()];
            let n = s
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    format!("invalid stick table track ID '{word}'. Expects {kw}(<Track ID>)")
                })?;
            u8::try_from(n).ok().filter(|n| *n < 3).ok_or_else(max)?
        }
    };
    Ok((sc, dt, 0))
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
    let (key, mut used, w) = match SampleExpr::parse_words(rest, true, &p.loader) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(list: &str) -> Result<TableDef, String> {
        let w: Vec<String> = ["type", "ip", "size", "10", "store", list]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        table_def("t", &w).map(|(d, _)| d)
    }

    #[test]
    fn arrays_are_stored_with_their_sizes() {
        let d = store("gpc(3),gpc_rate(2,10s),gpt(1),conn_cnt").unwrap();
        assert_eq!(d.len(DataType::Gpc), 3);
        assert_eq!(d.len(DataType::GpcRate), 2);
        assert_eq!(d.period(DataType::GpcRate), Some(10_000));
        assert_eq!(d.len(DataType::Gpt), 1);
        assert_eq!(d.len(DataType::ConnCnt), 1);
        // `gpc0` is element 0 of the array here.
        assert_eq!(d.cell(DataType::Gpc0, 0), Some((DataType::Gpc, 0)));
        assert_eq!(d.cell(DataType::Gpc, 3), None);
    }

    /// HAProxy's messages (`parse_stick_table`, `stktable_alloc_data_type`).
    #[test]
    fn bad_arrays_are_refused_as_haproxy_says() {
        let cases = [
            ("gpc", "missing argument to store option 'gpc'"),
            (
                "gpc(0)",
                "array size is out of allowed range (1-100) for store option 'gpc'",
            ),
            (
                "gpt(101)",
                "out of allowed range (1-100) for store option 'gpt'",
            ),
            ("gpc_rate(2)", "missing the period"),
            ("gpt(1,5)", "'gpt' takes no argument"),
            (
                "gpc(2,x",
                "missing closing parenthesis after store option 'gpc'",
            ),
            (
                "gpc(2),gpc0",
                "simultaneous usage of 'gpc' and 'gpc[0/1]' in a same table is not permitted",
            ),
            ("gpt0,gpt(1)", "'gpt' overrides 'gpt0'"),
            (
                "gpc1_rate(1s),gpc_rate(1,1s)",
                "'gpc_rate' overrides 'gpc[0/1]_rate'",
            ),
        ];
        for (list, want) in cases {
            let e = store(list).unwrap_err();
            assert!(e.contains(want), "{list}: {e}");
        }
    }

    #[test]
    fn counter_actions_read_as_haproxy() {
        use DataType as D;
        assert_eq!(counter_action("sc-inc-gpc(4,1)"), Ok((1, D::Gpc, 4)));
        assert_eq!(counter_action("sc-inc-gpc0"), Ok((0, D::Gpc0, 0)));
        assert_eq!(counter_action("sc-inc-gpc1(2)"), Ok((2, D::Gpc1, 0)));
        assert_eq!(counter_action("sc-set-gpt(0,2)"), Ok((2, D::Gpt, 0)));
        assert_eq!(counter_action("sc-set-gpt0(1)"), Ok((1, D::Gpt0, 0)));
        assert_eq!(
            counter_action("sc-inc-gpc(4)").unwrap_err(),
            "Missing gpc ID 'sc-inc-gpc(4)'. Expects sc-inc-gpc(<GPC ID>,<Track ID>)"
        );
        assert_eq!(
            counter_action("sc-set-gpt(1,x)").unwrap_err(),
            "invalid stick table track ID 'sc-set-gpt(1,x)'. Expects \
             sc-set-gpt(<GPT ID>,<Track ID>)"
        );
        assert_eq!(
            counter_action("sc-inc-gpc(0,3)").unwrap_err(),
            "invalid stick table track ID 'sc-inc-gpc(0,3)'. The max allowed ID is 2"
        );
        assert_eq!(
            counter_action("sc-inc-gpc0(3)").unwrap_err(),
            "invalid stick table track ID 'sc-inc-gpc0(3)'. The max allowed ID is 2"
        );
        assert_eq!(
            counter_action("sc-set-gpt1").unwrap_err(),
            "invalid gpt ID 'sc-set-gpt1'. Expects sc-set-gpt(<GPT ID>,<Track ID>)"
        );
    }
}
