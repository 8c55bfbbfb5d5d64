//! `source`: the address lb's connections to servers, and their health checks, come from. On a
//! backend (`source` in `defaults`, `backend`, `listen`) or a server (`server`,
//! `default-server`), the server's own winning, as in `HAProxy` (`srv->conn_src`, else
//! `be->conn_src`). One parser for both places.
//!
//! `HAProxy`'s forms: `source ADDR[:PORT] [usesrc ...] [interface NAME]`. `usesrc`
//! (transparent proxying from the client's address) is not done yet: the line's warning says
//! so, and the connections come from `ADDR`. A port range (`ADDR:LOW-HIGH`, servers only in
//! `HAProxy`) is refused with its reason.

use super::super::scalar::{resolve, split_host_port, unspecified, Host};
use super::super::Source;

/// What a `source` names: the source, and whether `usesrc` was given (not acted on yet).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed {
    pub(super) source: Source,
    pub(super) usesrc: bool,
}

/// `ADDR[:PORT]`: an IP address or a name resolved now (its first address), port 0 (the
/// kernel's choice at connect) when none is written.
pub(super) fn source_addr(word: &str) -> Result<std::net::SocketAddr, String> {
    let hp = split_host_port(word)?;
    let port = match hp.port.as_deref() {
        None | Some("" | "0") => 0,
        Some(p) if p.contains('-') => {
            return Err(format!(
                "port range '{p}' in source '{word}' is not supported yet (give one port, or \
                 none for the kernel's choice)"
            ))
        }
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port '{p}' in source '{word}' (expected 0..=65535)"))?,
    };
    let ip = match hp.host {
        None => unspecified(hp.family),
        Some(Host::Ip(ip)) => ip,
        Some(Host::Name(name)) => resolve(&name, port, hp.family)?.ip(),
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// The words after `source`: the address, then `usesrc X` and `interface NAME` in any order.
pub(super) fn source_words(words: &[String]) -> Result<Parsed, String> {
    let Some((addr, rest)) = words.split_first() else {
        return Err("'source' needs an address".to_owned());
    };
    let mut parsed = Parsed {
        source: Source {
            addr: source_addr(addr)?,
            interface: None,
        },
        usesrc: false,
    };
    let mut i = 0;
    while i < rest.len() {
        let kw = rest[i].as_str();
        let Some(value) = rest.get(i + 1) else {
            return Err(format!("'{kw}' after the source address needs a value"));
        };
        match kw {
            "usesrc" => parsed.usesrc = true,
            "interface" => parsed.source.interface = Some(interface(value)?),
            _ => {
                return Err(format!(
                    "unexpected '{kw}' after the source address (expected 'usesrc' or \
                     'interface')"
                ))
            }
        }
        i += 2;
    }
    Ok(parsed)
}

/// An interface name as the kernel takes it (`SO_BINDTODEVICE`: under 16 bytes, no `/`).
pub(super) fn interface(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
        return Err(format!("invalid interface name '{name}'"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn addresses_ports_and_options() {
        let p = source_words(&words("127.0.0.2")).unwrap();
        assert_eq!(p.source.addr, "127.0.0.2:0".parse().unwrap());
        assert_eq!(p.source.interface, None);
        assert!(!p.usesrc);
        let p = source_words(&words("10.0.0.1:5000 interface eth1 usesrc clientip")).unwrap();
        assert_eq!(p.source.addr, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(p.source.interface.as_deref(), Some("eth1"));
        assert!(p.usesrc);
        assert_eq!(source_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(source_addr("ipv6@[::]").unwrap(), "[::]:0".parse().unwrap());
        assert_eq!(
            source_addr("0.0.0.0").unwrap(),
            "0.0.0.0:0".parse().unwrap()
        );
    }

    #[test]
    fn bad_words_say_why() {
        let e = source_words(&words("10.0.0.1:1024-65000")).unwrap_err();
        assert!(e.contains("port range '1024-65000'"), "{e}");
        let e = source_words(&words("10.0.0.1:99999")).unwrap_err();
        assert!(e.contains("invalid port '99999'"), "{e}");
        let e = source_words(&words("10.0.0.1 interface")).unwrap_err();
        assert!(
            e.contains("'interface' after the source address needs a value"),
            "{e}"
        );
        let e = source_words(&words("10.0.0.1 bogus x")).unwrap_err();
        assert!(e.contains("unexpected 'bogus'"), "{e}");
        let e = source_words(&words("10.0.0.1 interface a-name-far-too-long")).unwrap_err();
        assert!(e.contains("invalid interface name"), "{e}");
        assert!(source_words(&[]).is_err());
        assert!(source_addr("not an address!").is_err());
    }
}
