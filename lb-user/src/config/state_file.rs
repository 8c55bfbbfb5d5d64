//! HAProxy's server-state file format, version 1 (what `show servers state` prints): the
//! parser of its lines. Read at load for `init-addr last` (addresses) and at start by the
//! state writer (`crate::state::file`) for everything else. Every problem names the line.

use std::net::IpAddr;

/// HAProxy's highest `srv_op_state` (`SRV_ST_STOPPING`).
const SRV_STOPPING: u32 = 3;
/// Highest weight (`SRV_UWGHT_MAX`).
const MAX_WEIGHT: u32 = 256;

/// One server's line of a state file, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLine {
    /// Line number in the file (1-based).
    pub line: usize,
    pub be_name: String,
    pub srv_name: String,
    pub addr: Option<IpAddr>,
    pub op_state: u32,
    pub admin: u32,
    pub uweight: u32,
    pub iweight: u32,
    pub since_change: u64,
    pub check_status: u32,
    pub check_health: u32,
    pub check_state: u32,
    pub agent_state: u32,
    pub port: Option<u16>,
}

/// Parses a state file: its lines and, for each line that can't be used, `LINE: why`.
pub fn parse(text: &str) -> (Vec<StateLine>, Vec<String>) {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut rows = text.lines().enumerate();
    match rows.next() {
        Some((_, v)) if v.trim() == "1" => {}
        Some((_, v)) => {
            problems.push(format!(
                "1: unsupported version '{}' (lb reads version 1)",
                v.trim()
            ));
            return (lines, problems);
        }
        None => return (lines, problems),
    }
    for (i, raw) in rows {
        let n = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match parse_line(n, t) {
            Ok(l) => lines.push(l),
            Err(why) => problems.push(format!("{n}: {why}")),
        }
    }
    (lines, problems)
}

fn parse_line(n: usize, t: &str) -> Result<StateLine, String> {
    let f: Vec<&str> = t.split_whitespace().collect();
    if f.len() < 19 {
        return Err(format!(
            "{} fields, a version 1 line has at least 19",
            f.len()
        ));
    }
    let num = |i: usize, what: &str| -> Result<u64, String> {
        f[i].parse::<u64>()
            .map_err(|_| format!("invalid {what} value '{}'", f[i]))
    };
    let small = |i: usize, what: &str| -> Result<u32, String> {
        u32::try_from(num(i, what)?).map_err(|_| format!("invalid {what} value '{}'", f[i]))
    };
    let op_state = small(5, "srv_op_state")?;
    if op_state > SRV_STOPPING {
        return Err(format!("invalid srv_op_state value '{}'", f[5]));
    }
    let admin = small(6, "srv_admin_state")?;
    let uweight = small(7, "srv_uweight")?;
    let iweight = small(8, "srv_iweight")?;
    if uweight > MAX_WEIGHT || iweight > MAX_WEIGHT {
        return Err("invalid srv_uweight/srv_iweight value (0 to 256)".to_owned());
    }
    let addr = if f[4] == "-" {
        None
    } else {
        Some(
            f[4].parse::<IpAddr>()
                .map_err(|_| format!("invalid srv_addr value '{}'", f[4]))?,
        )
    };
    let port = match f[18] {
        "-" | "0" => None,
        p => Some(
            p.parse::<u16>()
                .map_err(|_| format!("invalid srv_port value '{p}'"))?,
        ),
    };
    Ok(StateLine {
        line: n,
        be_name: f[1].to_owned(),
        srv_name: f[3].to_owned(),
        addr,
        op_state,
        admin,
        uweight,
        iweight,
        since_change: num(9, "srv_time_since_last_change")?,
        check_status: small(10, "srv_check_status")?,
        check_health: small(12, "srv_check_health")?,
        check_state: small(13, "srv_check_state")?,
        agent_state: small(14, "srv_agent_state")?,
        port,
    })
}

/// The address a state file holds for `backend`/`server`, if any.
pub fn address_of(lines: &[StateLine], backend: &str, server: &str) -> Option<IpAddr> {
    lines
        .iter()
        .find(|l| l.be_name == backend && l.srv_name == server)
        .and_then(|l| l.addr)
}
