//! A server's name at run time: `set server B/S fqdn NAME` and the server-state file's
//! `srv_fqdn`, with HAProxy 2.6's checks in its order (`cli_parse_set_server`,
//! `srv_update_fqdn`, `srv_set_fqdn`). The name goes through the writer ([`super::Change::Fqdn`]),
//! which keeps it in the server's counters (`ServerCounters::fqdn`, its one home), where the
//! resolvers read it each turn. The address in use stays until the new name resolves.

use crate::config::Server;
use crate::table::name_key;

pub use crate::config::state_file::MAX_FQDN as MAX_NAME;

/// What a valid `set server B/S fqdn NAME` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FqdnUpdate {
    /// A new name: resolved from now on.
    New,
    /// The name the server has, as written: nothing (`no need to change the FDQN`).
    Same,
    /// The name the server has in another case or with a final dot: HAProxy answers as for a
    /// change and keeps the name (its resolution is the same one).
    Alike,
}

/// Why a name is refused, in HAProxy's words where they do not name the server or the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FqdnRefusal {
    #[error("set server <b>/<s> fqdn requires a FQDN.")]
    Missing,
    #[error("set server <b>/<s> fqdn failed because no resolution is configured.")]
    NoResolution,
    #[error("set server <b>/<s> fqdn failed because SRV resolution is configured.")]
    Srv,
    /// Longer than [`MAX_NAME`] or a character outside `[A-Za-z0-9._-]` (HAProxy's
    /// `invalid fqdn 'NAME'`).
    #[error("invalid fqdn")]
    Invalid,
    /// Not a DNS name: an empty label (`a..b`, `.a`, `.`), HAProxy's `could not update B/S
    /// FQDN`.
    #[error("could not update the FQDN")]
    Unusable,
}

/// A server that follows an SRV record (its configured name starts with `_`): its names come
/// from the record.
pub fn is_srv(conf: &Server) -> bool {
    conf.fqdn.as_deref().is_some_and(|f| f.starts_with('_'))
}

/// HAProxy's `invalid_domainchar` and length check: 1 to 255 characters of `[A-Za-z0-9._-]`.
pub fn valid_chars(name: &str) -> bool {
    crate::config::state_file::fqdn_valid(name)
}

/// HAProxy's `resolv_str_to_dn_label`: every label has a character (one final dot allowed).
/// A label longer than 63 characters passes, as in HAProxy; no nameserver answers for it.
pub fn dn_label_ok(name: &str) -> bool {
    name.strip_suffix('.')
        .unwrap_or(name)
        .split('.')
        .all(|l| !l.is_empty())
}

/// Whether a server configured as `conf` may follow a name at run time at all.
pub fn may_follow(conf: &Server) -> Result<(), FqdnRefusal> {
    if conf.resolvers.is_none() {
        return Err(FqdnRefusal::NoResolution);
    }
    if is_srv(conf) {
        return Err(FqdnRefusal::Srv);
    }
    Ok(())
}

/// `set server B/S fqdn NAME` for the server configured as `conf` whose name is `current`
/// (`None`: written with an address, no name yet): HAProxy's checks in its order.
pub fn check(name: &str, conf: &Server, current: Option<&str>) -> Result<FqdnUpdate, FqdnRefusal> {
    if name.is_empty() {
        return Err(FqdnRefusal::Missing);
    }
    may_follow(conf)?;
    if current == Some(name) {
        return Ok(FqdnUpdate::Same);
    }
    usable(name)?;
    if current.is_some_and(|c| name_key(c) == name_key(name)) {
        return Ok(FqdnUpdate::Alike);
    }
    Ok(FqdnUpdate::New)
}

/// The checks of the name alone (after the server's): characters and length, then labels.
pub fn usable(name: &str) -> Result<(), FqdnRefusal> {
    if !valid_chars(name) {
        return Err(FqdnRefusal::Invalid);
    }
    if !dn_label_ok(name) {
        return Err(FqdnRefusal::Unusable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::testing::server;

    fn resolved(fqdn: Option<&str>) -> Server {
        let mut s = server("s1", 1, 1);
        s.fqdn = fqdn.map(str::to_owned);
        s.resolvers = Some("dns".to_owned());
        s
    }

    #[test]
    fn names_are_checked_in_haproxys_order() {
        let conf = resolved(Some("a.example"));
        let cur = Some("a.example");
        assert_eq!(check("", &conf, cur), Err(FqdnRefusal::Missing));
        assert_eq!(check("b.example", &conf, cur), Ok(FqdnUpdate::New));
        assert_eq!(check("a.example", &conf, cur), Ok(FqdnUpdate::Same));
        assert_eq!(check("A.Example", &conf, cur), Ok(FqdnUpdate::Alike));
        assert_eq!(check("a.example.", &conf, cur), Ok(FqdnUpdate::Alike));
        assert_eq!(check("b_1-x.Example.", &conf, cur), Ok(FqdnUpdate::New));
        for bad in ["b example", "b!x", "é.example", "a/b", "a:1"] {
            assert_eq!(check(bad, &conf, cur), Err(FqdnRefusal::Invalid), "{bad}");
        }
        let long = format!("{}.example", "a".repeat(250));
        assert_eq!(check(&long, &conf, cur), Err(FqdnRefusal::Invalid));
        let longest = "a.".repeat(127) + "b";
        assert_eq!(longest.len(), MAX_NAME);
        assert_eq!(check(&longest, &conf, cur), Ok(FqdnUpdate::New));
        for bad in ["a..b", ".a", ".", "a.."] {
            assert_eq!(check(bad, &conf, cur), Err(FqdnRefusal::Unusable), "{bad}");
        }
        // A server written with an address and `resolvers` takes a name (HAProxy's "from
        // (null)"); the name is checked before the server's name is compared.
        let by_addr = resolved(None);
        assert_eq!(check("b.example", &by_addr, None), Ok(FqdnUpdate::New));
    }

    #[test]
    fn servers_without_resolution_or_with_srv_refuse() {
        let mut plain = resolved(Some("a.example"));
        plain.resolvers = None;
        // The server's checks come before the name's (a bad name gets the server's answer).
        assert_eq!(
            check("b!", &plain, Some("a.example")),
            Err(FqdnRefusal::NoResolution)
        );
        let srv = resolved(Some("_db._tcp.example"));
        assert_eq!(
            check("b.example", &srv, Some("_db._tcp.example")),
            Err(FqdnRefusal::Srv)
        );
        assert_eq!(check("", &srv, None), Err(FqdnRefusal::Missing));
        assert_eq!(
            FqdnRefusal::NoResolution.to_string(),
            "set server <b>/<s> fqdn failed because no resolution is configured."
        );
    }
}
