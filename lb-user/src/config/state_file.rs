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
    /// `srv_check_addr` and `srv_check_port`, `srv_agent_addr` and `srv_agent_port` as
    /// written (optional fields; `-` and `0`, "none", are left out as HAProxy leaves them).
    pub check_place: (Option<String>, Option<String>),
    pub agent_place: (Option<String>, Option<String>),
    /// `srv_fqdn` (`-`: none).
    pub fqdn: Option<String>,
}

/// HAProxy's `DNS_MAX_NAME_SIZE`: the longest hostname a server may follow.
pub const MAX_FQDN: usize = 255;

/// HAProxy's check of a server's hostname from the runtime API or a state file
/// (`invalid_domainchar` and `DNS_MAX_NAME_SIZE`): 1 to 255 characters of `[A-Za-z0-9._-]`.
pub fn fqdn_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FQDN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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
    let word = |i: usize, none: &str| f.get(i).filter(|w| **w != none).map(|w| (*w).to_owned());
    // HAProxy applies nothing of a line whose name is not one.
    let fqdn = word(17, "-");
    if let Some(name) = fqdn.as_deref().filter(|n| !fqdn_valid(n)) {
        return Err(format!("invalid srv_fqdn value '{name}'"));
    }
    Ok(StateLine {
        fqdn,
        check_place: (word(22, "-"), word(21, "0")),
        agent_place: (word(23, "-"), word(24, "0")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as `show servers state` prints it, with `check` (22nd, 23rd fields) and `agent`
    /// (24th, 25th) places.
    fn line(check: &str, agent: &str) -> String {
        format!("1\n3 be 1 s1 127.0.0.1 2 0 1 1 5 6 3 4 6 0 0 0 - 6379 - 0 {check} {agent}\n")
    }

    #[test]
    fn check_and_agent_places_are_read_as_haproxy_leaves_none_out() {
        let (lines, problems) = parse(&line("9000 127.0.0.2", "127.0.0.3 9001"));
        assert!(problems.is_empty(), "{problems:?}");
        let l = &lines[0];
        assert_eq!(l.port, Some(6379));
        assert_eq!(
            l.check_place,
            (Some("127.0.0.2".to_owned()), Some("9000".to_owned()))
        );
        assert_eq!(
            l.agent_place,
            (Some("127.0.0.3".to_owned()), Some("9001".to_owned()))
        );
        // `0` and `-` say none; the fields are optional.
        let (lines, _) = parse(&line("0 -", "- 0"));
        assert_eq!(lines[0].check_place, (None, None));
        assert_eq!(lines[0].agent_place, (None, None));
        let (lines, problems) = parse("1\n3 be 1 s1 127.0.0.1 2 0 1 1 5 6 3 4 6 0 0 0 - 6379\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(lines[0].check_place, (None, None));
    }

    #[test]
    fn fqdns_are_read_and_a_bad_one_skips_the_line() {
        let at =
            |fqdn: &str| format!("1\n3 be 1 s1 127.0.0.1 2 64 1 1 5 6 3 4 6 0 0 0 {fqdn} 6379\n");
        let (lines, problems) = parse(&at("b.example"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(lines[0].fqdn.as_deref(), Some("b.example"));
        assert_eq!(lines[0].admin, 64);
        assert_eq!(parse(&at("-")).0[0].fqdn, None);
        let (lines, problems) = parse(&at("b!x"));
        assert!(lines.is_empty());
        assert_eq!(problems, ["2: invalid srv_fqdn value 'b!x'"]);
        assert!(fqdn_valid(&"a".repeat(MAX_FQDN)));
        assert!(!fqdn_valid(&"a".repeat(MAX_FQDN + 1)));
        assert!(!fqdn_valid(""));
    }
}
