//! The runtime API's commands about the process as a whole: `show info`, `show env`, and the
//! limits `set maxconn global|frontend` and `set rate-limit` change until the next reload.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::generation::Generation;
use crate::stats::{html::human_uptime, now_secs, start_secs};

/// `show info`, HAProxy's fields in its order.
pub(super) fn show_info(gen: &Generation) -> String {
    let now = now_secs();
    let start = start_secs(gen);
    let up = now.saturating_sub(start);
    let cum: u64 = gen
        .fe_stats
        .iter()
        .map(|f| f.total.load(Ordering::Relaxed))
        .sum();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    let v = env!("CARGO_PKG_VERSION");
    let p = &gen.process;
    let mut s = String::new();
    for (k, val) in [
        ("Name", "lb".to_owned()),
        ("Version", v.to_owned()),
        ("Release_date", String::new()),
        ("Nbthread", gen.process.threads.to_string()),
        ("Nbproc", "1".to_owned()),
        ("Process_num", "1".to_owned()),
        ("Pid", std::process::id().to_string()),
        ("Uptime", human_uptime(up)),
        ("Uptime_sec", up.to_string()),
        ("Memmax_MB", "0".to_owned()),
        ("Ulimit-n", lim.rlim_cur.to_string()),
        ("Maxsock", lim.rlim_cur.to_string()),
        ("Maxconn", gen.limits.global().to_string()),
        ("Hard_maxconn", gen.maxconn.to_string()),
        (
            "CurrConns",
            gen.process.conns.load(Ordering::Relaxed).to_string(),
        ),
        ("CumConns", cum.to_string()),
        ("CumReq", "0".to_owned()),
        ("ConnRate", p.conn_rate.read().to_string()),
        (
            "ConnRateLimit",
            gen.limits.conn_rate.load(Ordering::Relaxed).to_string(),
        ),
        ("MaxConnRate", p.conn_rate.max().to_string()),
        ("SessRate", p.sess_rate.read().to_string()),
        (
            "SessRateLimit",
            gen.limits.sess_rate.load(Ordering::Relaxed).to_string(),
        ),
        ("MaxSessRate", p.sess_rate.max().to_string()),
        ("Stopping", "0".to_owned()),
        (
            "Listeners",
            gen.config
                .frontends
                .iter()
                .map(|f| f.binds.len())
                .sum::<usize>()
                .to_string(),
        ),
        ("Build info", v.to_owned()),
        ("Start_time_sec", start.to_string()),
    ] {
        let _ = writeln!(s, "{k}: {val}");
    }
    s
}

/// `set maxconn global N`, HAProxy's `cli_parse_set_maxconn_global`: at most `Hard_maxconn`,
/// 0 or less gives that back; accept loops paused at the old limit look again.
pub(super) fn set_global_maxconn(gen: &Generation, value: Option<i64>) -> Result<String, String> {
    let Some(v) = value else {
        return Err("Expects an integer value.\n".to_owned());
    };
    if v > i64::from(gen.maxconn) {
        return Err("Value out of range.\n".to_owned());
    }
    // 0 or less: no limit but the hard one, as HAProxy's.
    let v = u32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .unwrap_or(gen.maxconn);
    gen.limits.global.store(v, Ordering::Relaxed);
    // Accept loops paused at the old limit look again.
    gen.process.conn_released.release();
    Ok(String::new())
}

/// `set maxconn frontend NAME N`, HAProxy's `cli_parse_set_maxconn_frontend`: 0 stops its
/// accepts (as HAProxy's), and accept loops paused at the old limit look again.
pub(super) fn set_frontend_maxconn(
    gen: &Generation,
    name: &str,
    value: Option<i64>,
) -> Result<String, String> {
    let f = super::frontend::find(gen, name)?;
    let Some(v) = value else {
        return Err("Integer value expected.\n".to_owned());
    };
    let Ok(v) = u32::try_from(v) else {
        return Err("Value out of range.\n".to_owned());
    };
    gen.limits.frontends[f].store(v, Ordering::Relaxed);
    gen.process.conn_released.release();
    Ok(String::new())
}

/// `show env [NAME]`, HAProxy's `cli_parse_show_env`: the process's environment, one
/// `NAME=VALUE` a line, or the one variable named.
pub(super) fn show_env(name: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    for (k, v) in std::env::vars_os() {
        let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
        if name.is_none_or(|n| n == k) {
            let _ = writeln!(out, "{k}={v}");
            if name.is_some() {
                return Ok(out);
            }
        }
    }
    if name.is_some() {
        return Err("Variable not found\n".to_owned());
    }
    Ok(out)
}

/// `set rate-limit connections|sessions global N`, HAProxy's `cli_parse_set_ratelimit`: the
/// process's `maxconnrate` or `maxsessrate` until the next reload; 0 is no limit. HAProxy's
/// `ssl-sessions` and `http-compression` limit what lb does not do: refused, with the list.
pub(super) fn set_rate_limit(
    gen: &Generation,
    setting: &[String],
    value: Option<i64>,
) -> Result<String, String> {
    let limit = match setting {
        [what, global] if what == "connections" && global == "global" => &gen.limits.conn_rate,
        [what, global] if what == "sessions" && global == "global" => &gen.limits.sess_rate,
        _ => {
            return Err(
                "'set rate-limit' only supports :\n   - 'connections global' to set the \
                        per-process maximum connection rate\n   - 'sessions global' to set the \
                        per-process maximum session rate\n"
                    .to_owned(),
            )
        }
    };
    let Some(v) = value else {
        return Err("Expects an integer value.\n".to_owned());
    };
    let Ok(v) = u32::try_from(v) else {
        return Err("Value out of range.\n".to_owned());
    };
    limit.store(v, Ordering::Relaxed);
    Ok(String::new())
}
