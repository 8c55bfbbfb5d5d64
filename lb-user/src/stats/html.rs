//! The HTML stats page, laid out like HAProxy's: process information and legend, then one
//! table per proxy with its frontend, server and backend rows, HAProxy's column groups and
//! status colours, and (with `stats admin`) the form that changes server states.

use std::fmt::Write as _;

use super::{now_secs, start_secs, Row, RowKind};
use crate::config::StatsProxy;
use crate::generation::Generation;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// HAProxy's short durations: `10s`, `1m5s`, `2h3m`, `1d2h`.
pub fn human_time(secs: u64) -> String {
    // HAProxy's `human_time`: at most two units, the largest first, zero units left out except
    // a lone `0s` (`1h`, `1h1m`, `1d1s`, `59m59s`).
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut left = 2;
    for (v, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
        if left > 0 && v > 0 {
            out.push_str(&v.to_string());
            out.push(unit);
            left -= 1;
        }
    }
    if (left > 0 && s > 0) || secs == 0 {
        out.push_str(&s.to_string());
        out.push('s');
    }
    out
}

/// A signed age for the page: [`human_time`], or `?` when there is none (negative).
fn human_age(secs: Option<i64>) -> String {
    match secs.map(u64::try_from) {
        Some(Ok(s)) => human_time(s),
        _ => "?".to_owned(),
    }
}

/// The CSS class of a server row, HAProxy's names (`active_up`, `backup_down`, `maintain`...).
pub fn row_class(r: &Row) -> &'static str {
    let backup = r.backup;
    let s = r.status.as_str();
    let pick = |a: &'static str, b: &'static str| if backup { b } else { a };
    if s == "MAINT" {
        "maintain"
    } else if s == "DRAIN" || s == "DRAIN (agent)" {
        pick("active_draining", "backup_draining")
    } else if s == "NOLB" {
        pick("active_nolb", "backup_nolb")
    } else if s == "no check" {
        pick("active_no_check", "backup_no_check")
    } else if s == "DOWN" || s == "DOWN (agent)" {
        pick("active_down", "backup_down")
    } else if s.starts_with("DOWN ") {
        pick("active_going_up", "backup_going_up")
    } else if s.starts_with("UP ") {
        pick("active_going_down", "backup_going_down")
    } else {
        pick("active_up", "backup_up")
    }
}

const STYLE: &str = "
body { font-family: arial, helvetica, sans-serif; font-size: 12px; font-weight: normal; color: black; background: white; }
th, td { font-size: 10px; }
h1 { font-size: x-large; margin-bottom: 0.5em; }
h2 { font-family: helvetica, arial; font-size: x-large; font-weight: bold; font-style: italic; color: #6020a0; margin-top: 0em; margin-bottom: 0em; }
h3 { font-family: helvetica, arial; font-size: 16px; font-weight: bold; color: #b00040; background: #e8e8d0; margin-top: 0em; margin-bottom: 0em; }
li { margin-top: 0.25em; margin-right: 2em; }
.hr { margin-top: 0.25em; border-color: black; border-bottom-style: solid; }
.titre { background: #20D0D0; color: #000000; font-weight: bold; text-align: center; }
.frontend { background: #e8e8d0; }
.backend { background: #e8e8d0; }
.active_down { background: #ff9090; }
.active_going_up { background: #ffd020; }
.active_going_down { background: #ffffa0; }
.active_up { background: #c0ffc0; }
.active_nolb { background: #20a0ff; }
.active_draining { background: #20a0FF; }
.active_no_check { background: #e0e0e0; }
.backup_down { background: #ff9090; }
.backup_going_up { background: #ff80ff; }
.backup_going_down { background: #c060ff; }
.backup_up { background: #b0d0ff; }
.backup_nolb { background: #90b0e0; }
.backup_draining { background: #cc9900; }
.backup_no_check { background: #e0e0e0; }
.maintain { background: #c07820; }
a.px:link, a.px:visited { color: #ffff40; text-decoration: none; }
a.lfsb:link, a.lfsb:visited { color: #000000; text-decoration: none; }
table.tbl { border-collapse: collapse; border-style: none; }
table.tbl td { text-align: right; border-width: 1px; border-style: solid; padding: 2px 3px; border-color: gray; white-space: nowrap; }
table.tbl td.ac { text-align: center; }
table.tbl th { border-width: 1px; border-style: solid; border-color: gray; }
table.tbl th.pxname { background: #b00040; color: #ffff40; font-weight: bold; border-style: solid solid none solid; padding: 2px 3px; white-space: nowrap; }
table.tbl th.empty { border-style: none; empty-cells: hide; background: white; }
table.tbl th.desc { background: white; border-style: solid solid none solid; text-align: left; padding: 2px 3px; }
table.lgd { border-collapse: collapse; border-width: 1px; border-style: none none none solid; border-color: black; }
table.lgd td { border-width: 1px; border-style: solid; border-color: gray; padding: 2px; }
table.lgd td.noborder { border-style: none; padding: 2px; white-space: nowrap; }
div.msg { padding: 4px; margin: 4px 0; border: 1px solid gray; }
u { text-decoration: none; position: relative; }
div.tips { position: absolute; visibility: hidden; z-index: 2147483647; border: solid 1px black; border-radius: 3px; background: #eef; padding: 2px 5px; white-space: nowrap; text-align: left; }
u:hover div.tips { visibility: visible; }
";

const HEAD1: &str = "<tr class=\"titre\"><th rowspan=2>{CB}</th><th rowspan=2></th><th colspan=3>Queue</th><th colspan=3>Session rate</th><th colspan=6>Sessions</th><th colspan=2>Bytes</th><th colspan=2>Denied</th><th colspan=3>Errors</th><th colspan=2>Warnings</th><th colspan=9>Server</th></tr>\n";
const HEAD2: &str = "<tr class=\"titre\"><th>Cur</th><th>Max</th><th>Limit</th><th>Cur</th><th>Max</th><th>Limit</th><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>LbTot</th><th>Last</th><th>In</th><th>Out</th><th>Req</th><th>Resp</th><th>Req</th><th>Conn</th><th>Resp</th><th>Retr</th><th>Redis</th><th>Status</th><th>LastChk</th><th>Wght</th><th>Act</th><th>Bck</th><th>Chk</th><th>Dwn</th><th>Dwntme</th><th>Thrtle</th></tr>\n";

fn opt(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// A server's tooltip with `stats show-legends`, as `HAProxy` writes it: its address (with its
/// family), `id` and `rid`.
fn legend(r: &Row) -> String {
    let addr = if r.addr.starts_with(|c: char| c.is_ascii_digit()) {
        format!("IPv4: {}, ", esc(&r.addr))
    } else if r.addr.starts_with('[') {
        format!("IPv6: {}, ", esc(&r.addr))
    } else if r.addr.is_empty() {
        String::new()
    } else {
        format!("{}, ", esc(&r.addr))
    };
    format!("<div class=tips>{addr}id: {0}, rid: {0}</div>", r.sid)
}

fn data_row(s: &mut String, r: &Row, admin: bool, legends: bool) {
    let kind = r.kind.unwrap_or(RowKind::Frontend);
    let (class, label) = match kind {
        RowKind::Frontend => ("frontend", "Frontend".to_owned()),
        RowKind::Backend => ("backend", "Backend".to_owned()),
        RowKind::Server => (row_class(r), esc(&r.svname)),
    };
    let anchor = format!("{}/{}", esc(&r.pxname), label);
    let cb = if admin && kind == RowKind::Server {
        format!(
            "<input class='{}-checkbox' type=\"checkbox\" name=\"s\" value=\"{}\">",
            esc(&r.pxname),
            esc(&r.svname)
        )
    } else {
        String::new()
    };
    let (u, tips, nu) = if legends && kind == RowKind::Server {
        ("<u>", legend(r), "</u>")
    } else {
        ("", String::new(), "")
    };
    let _ = write!(
        s,
        "<tr class=\"{class}\"><td>{cb}</td><td class=ac><a name=\"{anchor}\"></a>{u}<a class=lfsb href=\"#{anchor}\">{label}</a>{tips}{nu}</td>"
    );
    match kind {
        RowKind::Frontend => {
            let _ = writeln!(
                s,
                "<td colspan=3></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td><td>{}</td><td>{}</td><td>0</td><td>0</td><td>0</td><td></td><td></td><td></td><td></td><td class=ac>{}</td><td class=ac colspan=8></td></tr>",
                r.rate,
                r.rate_max,
                r.rate_lim
                    .filter(|l| *l > 0)
                    .map_or_else(|| "-".to_owned(), |l| l.to_string()),
                r.scur,
                r.smax,
                opt(r.slim),
                r.stot,
                r.bin,
                r.bout,
                esc(&r.status)
            );
        }
        RowKind::Server | RowKind::Backend => {
            let sv = kind == RowKind::Server;
            let status = if r.status == "no check" {
                "<i>no check</i>".to_owned()
            } else {
                format!("{} {}", human_time(r.lastchg.unwrap_or(0)), esc(&r.status))
            };
            let lastchk = if sv && r.checked {
                let dur = r
                    .check_duration
                    .map_or_else(String::new, |d| format!(" in {d}ms"));
                format!(
                    "<span title=\"{}: {}\">{}{dur}</span>",
                    esc(&r.check_desc),
                    esc(&r.check_info),
                    esc(&r.check_status)
                )
            } else if sv {
                String::new()
            } else {
                "&nbsp;".to_owned()
            };
            let (act, bck) = if sv {
                (
                    if r.backup { "-" } else { "Y" }.to_owned(),
                    if r.backup { "Y" } else { "-" }.to_owned(),
                )
            } else {
                (opt(r.act), opt(r.bck))
            };
            let wght = if sv {
                format!("{}/{}", opt(r.uweight), opt(r.iweight))
            } else {
                format!("{}/{}", opt(r.weight), opt(r.weight))
            };
            let chk = if sv && r.checked {
                format!(
                    "<td>{}</td><td>{}</td><td>{}</td>",
                    opt(r.chkfail),
                    opt(r.chkdown),
                    human_time(r.downtime.unwrap_or(0))
                )
            } else if sv && !r.tracked.is_empty() && r.status != "MAINT" {
                // HAProxy: a tracking server's checks are its tracked server's.
                let t = esc(&r.tracked);
                format!("<td class=ac colspan=3><a class=lfsb href=\"#{t}\">via {t}</a></td>")
            } else if sv {
                "<td colspan=3></td>".to_owned()
            } else {
                format!(
                    "<td class=ac>&nbsp;</td><td>{}</td><td>{}</td>",
                    opt(r.chkdown),
                    human_time(r.downtime.unwrap_or(0))
                )
            };
            let throttle = r
                .throttle
                .map_or_else(|| "-".to_owned(), |t| format!("{t} %"));
            let _ = writeln!(
                s,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>0</td><td></td><td>{}</td><td>0</td><td>{}</td><td>{}</td><td class=ac>{status}</td><td class=ac>{lastchk}</td><td class=ac>{wght}</td><td class=ac>{act}</td><td class=ac>{bck}</td>{chk}<td class=ac>{throttle}</td></tr>",
                opt(r.qcur),
                opt(r.qmax),
                if sv { opt(r.qlimit) } else { String::new() },
                r.rate,
                r.rate_max,
                r.scur,
                r.smax,
                opt(r.slim),
                r.stot,
                opt(r.lbtot),
                human_age(r.lastsess),
                r.bin,
                r.bout,
                if sv { String::new() } else { "0".to_owned() },
                opt(r.econ),
                opt(r.wretr),
                opt(r.wredis),
            );
        }
    }
}

/// The whole page. `uri` is the stats URI (links), `admin` whether the form is shown,
/// `message` the result of the last admin action (`st=` in the URI).
pub fn render(
    gen: &Generation,
    st: &StatsProxy,
    rows: &[Row],
    admin: bool,
    message: Option<&str>,
) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let now = now_secs();
    let uptime = now.saturating_sub(start_secs(gen));
    let pid = std::process::id();
    s.push_str("<!DOCTYPE html>\n<html><head><title>Statistics Report for HAProxy</title>\n<meta charset=\"utf-8\">\n");
    if let Some(r) = st.refresh {
        let _ = writeln!(
            s,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let _ = writeln!(s, "<style>{STYLE}</style></head>\n<body>");
    let version = if st.hide_version {
        String::new()
    } else {
        format!(" version {}", env!("CARGO_PKG_VERSION"))
    };
    let global = &gen.config.global;
    let node = st.show_node.as_ref().map_or_else(String::new, |n| {
        let name = if n.is_empty() {
            global.node.clone().unwrap_or_else(host_name)
        } else {
            n.clone()
        };
        format!(" on {}", esc(&name))
    });
    let desc = st.show_desc.as_ref().map_or_else(String::new, |d| {
        let text = if d.is_empty() {
            global.description.as_deref().unwrap_or("")
        } else {
            d
        };
        format!(": {}", esc(text))
    });
    let _ = writeln!(
        s,
        "<h1>lb{version}</h1>\n<h2>Statistics Report for pid {pid}{node}{desc}</h2>\n<hr width=\"100%\" class=\"hr\">\n<h3>&gt; General process information</h3>"
    );
    let cur: u32 = gen
        .fe_stats
        .iter()
        .map(|f| f.cur.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let _ = writeln!(
        s,
        "<table border=0><tr><td align=\"left\" nowrap width=\"1%\"><p><b>pid = </b> {pid} (process #1, nbproc = 1)<br>\n<b>uptime = </b> {}<br>\n<b>system limits:</b> maxconn = {}<br>\n<b>current conns = </b> {cur}<br>\n</td><td align=\"center\" nowrap>",
        human_uptime(uptime),
        gen.limits.global()
    );
    s.push_str("<table class=\"lgd\"><tr>\n<td class=\"active_up\">&nbsp;</td><td class=\"noborder\">active UP </td><td class=\"backup_up\">&nbsp;</td><td class=\"noborder\">backup UP </td></tr>\n<tr><td class=\"active_going_down\"></td><td class=\"noborder\">active UP, going down </td><td class=\"backup_going_down\"></td><td class=\"noborder\">backup UP, going down </td></tr>\n<tr><td class=\"active_going_up\"></td><td class=\"noborder\">active DOWN, going up </td><td class=\"backup_going_up\"></td><td class=\"noborder\">backup DOWN, going up </td></tr>\n<tr><td class=\"active_down\"></td><td class=\"noborder\">active or backup DOWN &nbsp;</td><td class=\"active_no_check\"></td><td class=\"noborder\">not checked </td></tr>\n<tr><td class=\"maintain\"></td><td class=\"noborder\" colspan=\"3\">active or backup DOWN for maintenance (MAINT) &nbsp;</td></tr>\n<tr><td class=\"active_draining\"></td><td class=\"noborder\" colspan=\"3\">active or backup SOFT STOPPED for maintenance &nbsp;</td></tr>\n</table>\nNote: \"NOLB\"/\"DRAIN\" = UP with load-balancing disabled.</td>");
    let uri = esc(&st.uri);
    let _ = writeln!(
        s,
        "<td align=\"left\" valign=\"top\" nowrap width=\"1%\"><b>Display option:</b><ul style=\"margin-top: 0.25em;\"><li><a href=\"{uri}\">Refresh now</a></li></ul><b>External resources:</b><ul style=\"margin-top: 0.25em;\"><li><a href=\"{uri};csv\">CSV export</a></li></ul></td></tr></table>"
    );
    if let Some(m) = message {
        let _ = writeln!(
            s,
            "<div class=\"msg {}\">{}</div>",
            if m.starts_with("Action processed") {
                "active_up"
            } else {
                "active_down"
            },
            esc(m)
        );
    }
    let mut i = 0;
    while i < rows.len() {
        let px = &rows[i].pxname;
        let iid = rows[i].iid;
        let end = rows[i..]
            .iter()
            .position(|r| r.pxname != *px)
            .map_or(rows.len(), |p| i + p);
        let group = &rows[i..end];
        let has_servers = group.iter().any(|r| r.kind == Some(RowKind::Server));
        let form = admin && has_servers;
        if form {
            let _ = writeln!(s, "<form method=\"post\">");
        }
        let (desc_class, desc) =
            proxy_description(gen, px).map_or(("empty", String::new()), |d| ("desc", esc(d)));
        let _ = writeln!(
            s,
            "<table class=\"tbl\" width=\"100%\">\n<tr class=\"titre\"><th class=\"pxname\" width=\"10%\"><a name=\"{0}\"></a><a class=px href=\"#{0}\">{0}</a></th><th class=\"{desc_class}\" width=\"90%\">{desc}</th></tr>\n</table>\n<table class=\"tbl\" width=\"100%\">",
            esc(px)
        );
        let cb = if form {
            "<input type=\"checkbox\" onclick=\"for (const c of document.querySelectorAll('input[name=s]')) c.checked = this.checked\">"
        } else {
            ""
        };
        s.push_str(&HEAD1.replace("{CB}", cb));
        s.push_str(HEAD2);
        for r in group {
            data_row(&mut s, r, form, st.show_legends);
        }
        s.push_str("</table>");
        if form {
            let _ = write!(
                s,
                "Choose the action to perform on the checked servers : <select name=action><option value=\"\"></option><option value=\"ready\">Set state to READY</option><option value=\"drain\">Set state to DRAIN</option><option value=\"maint\">Set state to MAINT</option><option value=\"hrunn\">Health: force UP</option><option value=\"hdown\">Health: force DOWN</option><option value=\"shutdown\">Kill Sessions</option></select><input type=\"hidden\" name=\"b\" value=\"#{iid}\">&nbsp;<input type=\"submit\" value=\"Apply\"></form>"
            );
        }
        s.push_str("<p>\n");
        i = end;
    }
    s.push_str("</body></html>\n");
    s
}

/// A proxy's `description` (a `listen` has it on both halves).
fn proxy_description<'a>(gen: &'a Generation, px: &str) -> Option<&'a str> {
    let c = &gen.config;
    c.frontends
        .iter()
        .find(|f| f.name == px)
        .and_then(|f| f.description.as_deref())
        .or_else(|| {
            c.backends
                .iter()
                .find(|b| b.name == px)
                .and_then(|b| b.description.as_deref())
        })
}

/// The system's host name (`HAProxy`'s default `node`).
fn host_name() -> String {
    crate::outside::read_to_string(std::path::Path::new("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// `0d 0h01m05s`, HAProxy's uptime format.
pub fn human_uptime(secs: u64) -> String {
    format!(
        "{}d {}h{:02}m{:02}s",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_classes() {
        assert_eq!(human_time(0), "0s");
        assert_eq!(human_time(10), "10s");
        assert_eq!(human_time(65), "1m5s");
        assert_eq!(human_time(60), "1m");
        assert_eq!(human_time(3600), "1h");
        assert_eq!(human_time(3661), "1h1m");
        assert_eq!(human_time(7380), "2h3m");
        assert_eq!(human_time(93600), "1d2h");
        assert_eq!(human_time(86401), "1d1s");
        assert_eq!(human_age(Some(3)), "3s");
        assert_eq!(human_age(Some(-1)), "?");
        assert_eq!(human_uptime(65), "0d 0h01m05s");
        let mut r = Row {
            status: "UP 1/3".into(),
            ..Row::default()
        };
        assert_eq!(row_class(&r), "active_going_down");
        r.backup = true;
        r.status = "DOWN".into();
        assert_eq!(row_class(&r), "backup_down");
        r.status = "MAINT".into();
        assert_eq!(row_class(&r), "maintain");
        assert_eq!(esc("<a&\"'>"), "&lt;a&amp;&quot;&#39;&gt;");
    }
}
