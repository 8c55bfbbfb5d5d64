//! `show table` and `clear table` (HAProxy 2.6's `cli_parse_table_req` and its dump format):
//! the words parsed without state ([`parse`]), then run against a generation's tables.

use crate::config::CliLevel;
use crate::generation::Generation;
use crate::stick::{clock, DataType, Filter, Key, Op, Table};

/// `show table [NAME [key K | data.T OP V ...]]`, `clear table NAME [...]`, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableQuery {
    pub table: String,
    pub key: Option<String>,
    /// `(data.<type>, op, value)` words, checked against the table when run.
    pub filters: Vec<(String, String, String)>,
}

const SHOW_ARGS: &str = "Optional argument only supports \"data.<store_data_type>\" <operator> \
                         <value> or key <key> or ptr <ptr>\n";
const CLEAR_ARGS: &str = "Required arguments: <table> \"data.<store_data_type>\" <operator> \
                          <value> or <table> key <key> or <table> ptr <ptr>\n";

/// The words after `show table NAME` / `clear table NAME`.
pub fn parse(table: &str, rest: &[&str], clear: bool) -> Result<TableQuery, String> {
    let mut q = TableQuery {
        table: table.to_owned(),
        key: None,
        filters: Vec::new(),
    };
    let bad = || if clear { CLEAR_ARGS } else { SHOW_ARGS }.to_owned();
    match rest {
        [] => {}
        ["key"] => return Err("Key value expected\n".to_owned()),
        ["key", k, ..] => q.key = Some((*k).to_owned()),
        [first, ..] if first.starts_with("data.") => {
            for (i, chunk) in rest.chunks(3).enumerate() {
                let n = i + 1;
                if !chunk[0].starts_with("data.") {
                    return Err(format!(
                        "Detected extra data in filter, {}th word of input, after '{}'\n",
                        3 + 3 * i + 1,
                        rest[3 * i - 1]
                    ));
                }
                let op = chunk.get(1).copied().unwrap_or("");
                let value = chunk.get(2).copied().unwrap_or("");
                if Op::parse(op).is_none() {
                    return Err(format!(
                        "Filter entry #{n}: Require and operator among \"eq\", \"ne\", \"le\", \
                         \"ge\", \"lt\", \"gt\"\n"
                    ));
                }
                if value.parse::<i64>().is_err() {
                    return Err(format!(
                        "Filter entry #{n}: Require a valid integer value to compare against\n"
                    ));
                }
                q.filters
                    .push((chunk[0].to_owned(), op.to_owned(), value.to_owned()));
            }
        }
        _ => return Err(bad()),
    }
    Ok(q)
}

/// The filters and key of `q`, checked against `t`.
fn resolve(t: &Table, q: &TableQuery) -> Result<(Option<Key>, Vec<Filter>), String> {
    let mut filters = Vec::new();
    for (i, (dt, op, value)) in q.filters.iter().enumerate() {
        let n = i + 1;
        let name = dt.strip_prefix("data.").unwrap_or(dt);
        let Some(dt) = DataType::by_name(name) else {
            return Err(format!("Filter entry #{n}: Unknown data type\n"));
        };
        if !t.def.stores(dt) {
            return Err(format!(
                "Filter entry #{n}: Data type not stored in this table\n"
            ));
        }
        filters.push(Filter {
            dt,
            op: Op::parse(op).unwrap_or(Op::Eq),
            value: value.parse().unwrap_or(0),
        });
    }
    let key = match &q.key {
        Some(k) => Some(
            Key::parse(k, t.def.key, t.def.key_len).ok_or_else(|| "Invalid key\n".to_owned())?,
        ),
        None => None,
    };
    Ok((key, filters))
}

/// `show table`: every table's header; with a name, its entries too (from `operator` level,
/// as HAProxy).
pub fn show(gen: &Generation, q: Option<&TableQuery>, level: CliLevel) -> Result<String, String> {
    let Some(q) = q else {
        return Ok(gen.tables.iter().map(|t| t.head()).collect());
    };
    let t = gen
        .tables
        .get(&q.table)
        .ok_or_else(|| "No such table\n".to_owned())?;
    let (key, filters) = resolve(t, q)?;
    let now = clock();
    let mut out = t.head();
    if level < CliLevel::Operator {
        out.push_str("# contents not dumped due to insufficient privileges\n");
        return Ok(out);
    }
    out.push_str(&t.dump(key.as_ref(), &filters, now));
    Ok(out)
}

/// `clear table NAME [key K | data.T OP V ...]`: removes the matching entries no connection
/// tracks (all of them without a key or filter). Below level operator, as HAProxy 2.6: with a
/// key, "Permission denied" once the table and the key are read
/// (`table_process_entry_per_key`); without, nothing is removed and nothing said (its dump
/// loop visits no entry below that level).
pub fn clear(gen: &Generation, q: &TableQuery, level: CliLevel) -> Result<String, String> {
    let t = gen
        .tables
        .get(&q.table)
        .ok_or_else(|| "No such table\n".to_owned())?;
    let (key, filters) = resolve(t, q)?;
    if level < CliLevel::Operator {
        return match key {
            Some(_) => Err(super::cli::PERMISSION_DENIED.to_owned()),
            None => Ok(String::new()),
        };
    }
    t.clear(key.as_ref(), &filters, clock());
    Ok(String::new())
}

const SET_ARGS: &str = "Required arguments: <table> key <key> [data.<store_data_type> <value>]*\n";

/// `set table NAME key K [data.T V]*`: creates the entry when missing, then writes each value
/// in turn, refreshing its expiry, as HAProxy 2.6 (`table_process_entry_per_key`): a bad
/// pair stops there with its error, the values before it written; below level operator,
/// "Permission denied" once the table and the key are read, as there. `words`: what follows
/// `set table`.
pub fn set(gen: &Generation, words: &[&str], level: CliLevel) -> Result<String, String> {
    let [name, rest @ ..] = words else {
        return Err(SET_ARGS.to_owned());
    };
    let t = gen
        .tables
        .get(name)
        .ok_or_else(|| "No such table\n".to_owned())?;
    let (key, data) = match rest {
        [] => return Ok(String::new()),
        ["key"] => return Err("Key value expected\n".to_owned()),
        ["key", k, data @ ..] => (*k, data),
        [first, ..] if first.starts_with("data.") => {
            return Err(
                "content-based lookup is only supported with the \"show\" and \
                        \"clear\" actions\n"
                    .to_owned(),
            )
        }
        _ => return Err(SET_ARGS.to_owned()),
    };
    let key =
        Key::parse(key, t.def.key, t.def.key_len).ok_or_else(|| "Invalid key\n".to_owned())?;
    if level < CliLevel::Operator {
        return Err(super::cli::PERMISSION_DENIED.to_owned());
    }
    let now = clock();
    let e = t
        .get(&key, now)
        .ok_or_else(|| "Unable to allocate a new entry\n".to_owned())?;
    let written = set_pairs(t, &e, data, now);
    t.touch(&e, now);
    written.map(|()| String::new())
}

/// The `data.<type> <value>` pairs of `set table`, written into `e` in turn.
fn set_pairs(t: &Table, e: &crate::stick::Entry, data: &[&str], now: u64) -> Result<(), String> {
    for pair in data.chunks(2) {
        let Some(name) = pair[0].strip_prefix("data.") else {
            return Err("\"data.<type>\" followed by a value expected\n".to_owned());
        };
        let dt = DataType::by_name(name).ok_or_else(|| "Unknown data type\n".to_owned())?;
        if !t.def.stores(dt) {
            return Err("Data type not stored in this table\n".to_owned());
        }
        let value = pair
            .get(1)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| "Require a valid integer value to store\n".to_owned())?;
        t.set_data(e, dt, value, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_commands_parse_as_haproxy() {
        let q = parse("t", &["data.conn_rate", "gt", "10"], false).unwrap();
        assert_eq!(q.filters.len(), 1);
        assert_eq!(
            parse("t", &["key", "1.2.3.4"], true)
                .unwrap()
                .key
                .as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            parse("t", &["key"], false).unwrap_err(),
            "Key value expected\n"
        );
        assert!(parse("t", &["data.conn_rate", "bigger", "1"], false)
            .unwrap_err()
            .contains("Require and operator"));
        assert!(parse("t", &["data.conn_rate", "gt", "x"], false)
            .unwrap_err()
            .contains("valid integer"));
        assert_eq!(parse("t", &["what"], false).unwrap_err(), SHOW_ARGS);
        assert_eq!(parse("t", &["what"], true).unwrap_err(), CLEAR_ARGS);
    }
}
