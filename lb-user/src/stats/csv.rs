//! CSV statistics in HAProxy 2.6's column order (`<uri>;csv`, `show stat`): a `# ` header line,
//! then one line per row; every line ends with a comma, as HAProxy's do. Columns lb has no
//! figure for are empty, as HAProxy leaves fields that do not apply.

use std::fmt::Write as _;

use super::{Row, RowKind};

/// HAProxy 2.6's CSV columns, in order.
pub const COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

#[expect(
    clippy::match_same_arms,
    reason = "one arm per HAProxy column (group), in header order, reads best against the docs"
)]
/// Value of column `name` for `row` (empty when lb has no such figure or it doesn't apply).
pub fn field(row: &Row, name: &str) -> String {
    let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    let kind = row.kind.unwrap_or(RowKind::Frontend);
    let fe = kind == RowKind::Frontend;
    let sv = kind == RowKind::Server;
    match name {
        "pxname" => row.pxname.clone(),
        "svname" => row.svname.clone(),
        "qcur" => opt(row.qcur),
        "qmax" => opt(row.qmax),
        "scur" => row.scur.to_string(),
        "smax" => row.smax.to_string(),
        "slim" => opt(row.slim),
        "stot" => row.stot.to_string(),
        "bin" => row.bin.to_string(),
        "bout" => row.bout.to_string(),
        "dreq" if sv => String::new(),
        "ereq" if !fe => String::new(),
        "dreq" => opt(row.dreq.or(Some(0))),
        "dresp" => opt(row.dresp.or(Some(0))),
        "ereq" => "0".to_owned(),
        "econ" => opt(row.econ),
        "eresp" if !fe => "0".to_owned(),
        "wretr" => opt(row.wretr),
        "wredis" => opt(row.wredis),
        "status" => row.status.clone(),
        "weight" => opt(row.weight),
        "act" => opt(row.act),
        "bck" => opt(row.bck),
        "chkfail" => opt(row.chkfail),
        "chkdown" => opt(row.chkdown),
        "lastchg" => opt(row.lastchg),
        "downtime" => opt(row.downtime),
        "qlimit" => opt(row.qlimit),
        "pid" => "1".to_owned(),
        "iid" => row.iid.to_string(),
        "sid" => row.sid.to_string(),
        "lbtot" => opt(row.lbtot),
        "throttle" => opt(row.throttle),
        "tracked" => row.tracked.clone(),
        "type" => kind.code().to_string(),
        "rate" => row.rate.to_string(),
        "rate_max" => row.rate_max.to_string(),
        "rate_lim" if fe => opt(row.rate_lim.or(Some(0))),
        "check_status" => row.check_status.clone(),
        "check_code" => opt(row.check_code),
        "check_duration" => opt(row.check_duration),
        "cli_abrt" | "srv_abrt" if !fe => "0".to_owned(),
        "lastsess" => row.lastsess.map_or_else(String::new, |v| v.to_string()),
        "last_chk" => row.check_info.clone(),
        "last_agt" => row.agent_info.clone(),
        "agent_status" => row.agent_status.clone(),
        "agent_duration" => opt(row.agent_duration),
        "agent_desc" => row.agent_desc.clone(),
        // HAProxy's agent goes DOWN and UP on one answer.
        "agent_rise" | "agent_fall" if row.agent_health.is_some() => "1".to_owned(),
        "agent_health" => opt(row.agent_health),
        "qtime" | "ctime" | "rtime" | "ttime" if !fe => "0".to_owned(),
        "check_desc" => row.check_desc.clone(),
        "mode" => "tcp".to_owned(),
        "addr" if sv => row.addr.clone(),
        "algo" => row.algo.clone(),
        "conn_rate" if fe => opt(row.conn_rate.or(Some(0))),
        "conn_rate_max" if fe => opt(row.conn_rate_max.or(Some(0))),
        "conn_tot" if fe => row.stot.to_string(),
        "dcon" if fe => opt(row.dcon.or(Some(0))),
        "dses" if fe => opt(row.dses.or(Some(0))),
        "wrew" | "eint" => "0".to_owned(),
        "qtime_max" | "ctime_max" | "rtime_max" | "ttime_max" if !fe => "0".to_owned(),
        "uweight" if !fe => opt(row.uweight.or(row.weight)),
        _ => String::new(),
    }
}

/// The header line, `# pxname,svname,...,` and a newline.
pub fn header() -> String {
    let mut s = String::from("# ");
    for c in COLUMNS {
        s.push_str(c);
        s.push(',');
    }
    s.push('\n');
    s
}

/// The header and every row.
pub fn render(rows: &[Row]) -> String {
    let mut s = header();
    for r in rows {
        for c in COLUMNS {
            let v = field(r, c);
            // Fields never contain commas or newlines except free text: keep the CSV parseable.
            let _ = write!(s, "{},", v.replace([',', '\n', '\r'], " "));
        }
        s.push('\n');
    }
    s
}

/// `show stat typed`: `F.iid.sid.col.name.1:KNS:type:value` lines, one per non-empty field, a
/// blank line between rows. The letters are lb's best match to HAProxy's field nature/origin.
pub fn render_typed(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let t = match r.kind {
            Some(RowKind::Frontend) | None => 'F',
            Some(RowKind::Backend) => 'B',
            Some(RowKind::Server) => 'S',
        };
        for (i, c) in COLUMNS.iter().enumerate() {
            let v = field(r, c);
            if v.is_empty() {
                continue;
            }
            let ty = if v.parse::<u64>().is_ok() {
                "u64"
            } else if v.parse::<i32>().is_ok() {
                // lastsess: -1 before the first session (HAProxy's s32).
                "s32"
            } else {
                "str"
            };
            let _ = writeln!(s, "{t}.{}.{}.{i}.{c}.1:KNS:{ty}:{v}", r.iid, r.sid);
        }
        s.push('\n');
    }
    s
}

/// `show stat json`: an array of rows, each an array of `{objType, proxyId, id, field: {pos,
/// name}, value: {type, value}}` objects, as HAProxy's.
pub fn render_json(rows: &[Row]) -> String {
    let mut s = String::from("[");
    for (k, r) in rows.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        let obj = match r.kind {
            Some(RowKind::Frontend) | None => "Frontend",
            Some(RowKind::Backend) => "Backend",
            Some(RowKind::Server) => "Server",
        };
        s.push('[');
        let mut first = true;
        for (i, c) in COLUMNS.iter().enumerate() {
            let v = field(r, c);
            if v.is_empty() {
                continue;
            }
            if !first {
                s.push(',');
            }
            first = false;
            let value = match v.parse::<u64>() {
                Ok(n) => format!("{{\"type\":\"u64\",\"value\":{n}}}"),
                Err(_) => format!("{{\"type\":\"str\",\"value\":\"{}\"}}", json_escape(&v)),
            };
            let _ = write!(
                s,
                "{{\"objType\":\"{obj}\",\"proxyId\":{},\"id\":{},\"field\":{{\"pos\":{i},\"name\":\"{c}\"}},\"processNum\":1,\"tags\":{{\"origin\":\"Key\",\"nature\":\"Name\",\"scope\":\"Service\"}},\"value\":{value}}}",
                r.iid, r.sid
            );
        }
        s.push(']');
    }
    s.push_str("]\n");
    s
}

/// Escapes a string for a JSON string literal.
pub fn json_escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_starts_with_haproxy_columns() {
        let h = header();
        assert!(h.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,"));
        assert!(h.ends_with(",\n"));
        assert_eq!(COLUMNS.len(), 128);
        assert_eq!(COLUMNS[17], "status");
        assert_eq!(COLUMNS[38], "check_duration");
    }

    #[test]
    fn frontend_row_matches_haproxy_shape() {
        let r = Row {
            kind: Some(RowKind::Frontend),
            pxname: "fe".into(),
            svname: "FRONTEND".into(),
            iid: 2,
            slim: Some(9984),
            status: "OPEN".into(),
            ..Row::default()
        };
        let line = render(&[r]);
        let row = line.lines().nth(1).unwrap();
        // HAProxy 2.6: fe,FRONTEND,,,0,0,9984,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,
        assert!(
            row.starts_with(
                "fe,FRONTEND,,,0,0,9984,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,"
            ),
            "{row}"
        );
        assert_eq!(row.matches(',').count(), COLUMNS.len());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
