//! `source`: the address lb's connections to servers, and their health checks, come from. On a
//! backend (`source` in `defaults`, `backend`, `listen`) or a server (`server`,
//! `default-server`), the server's own winning, as in `HAProxy` (`srv->conn_src`, else
//! `be->conn_src`). One parser for both places.
//!
//! `HAProxy`'s forms: `source ADDR[:PORT] [usesrc ...] [interface NAME]`. `usesrc client`,
//! `clientip` or `ADDR2[:PORT2]`: transparent proxying, the traffic's connections come from
//! the client's address (and port) or that one (see [`UseSrc`] and
//! `crate::dataplane::sockopt::bind_source`); `usesrc hdr_ip(...)` reads an HTTP header and is
//! refused. A port range (`ADDR:LOW-HIGH`) is for servers only, as in `HAProxy`: each
//! connection binds a free port of it (see `crate::server::PortPool`).

use super::super::scalar::{resolve, split_host_port, unspecified, Host};
use super::super::{Source, UseSrc};

/// `ADDR[:PORT]`: an IP address or a name resolved now (its first address), port 0 (the
/// kernel's choice at connect) when none is written. A port range is refused (a backend's
/// `source`, as in `HAProxy`).
pub(super) fn source_addr(word: &str) -> Result<std::net::SocketAddr, String> {
    match source_addr_range(word)? {
        (addr, None) => Ok(addr),
        (_, Some((low, high))) => Err(format!(
            "port range '{low}-{high}' in source '{word}': ranges are only allowed on a \
             'server' or 'default-server' line (as in HAProxy)"
        )),
    }
}

/// `ADDR[:PORT]` or `ADDR:LOW-HIGH` (a server's): the address (port 0 with a range) and the
/// range, `LOW <= HIGH` in 1..=65535 (`LOW-LOW` is the one port, as in `HAProxy`).
pub(super) fn source_addr_range(
    word: &str,
) -> Result<(std::net::SocketAddr, Option<(u16, u16)>), String> {
    let hp = split_host_port(word)?;
    let port_of = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port '{p}' in source '{word}' (expected 0..=65535)"))
    };
    let (port, range) = match hp.port.as_deref() {
        None | Some("" | "0") => (0, None),
        Some(p) => match p.split_once('-') {
            None => (port_of(p)?, None),
            Some((lo, hi)) => {
                let (lo, hi) = (port_of(lo)?, port_of(hi)?);
                if lo == 0 || lo > hi {
                    return Err(format!(
                        "invalid port range '{p}' in source '{word}' (expected LOW-HIGH with \
                         1 <= LOW <= HIGH <= 65535)"
                    ));
                }
                if lo == hi {
                    (lo, None)
                } else {
                    (0, Some((lo, hi)))
                }
            }
        },
    };
    let ip = match hp.host {
        None => unspecified(hp.family),
        Some(Host::Ip(ip)) => ip,
        Some(Host::Name(name)) => resolve(&name, port, hp.family)?.ip(),
    };
    Ok((std::net::SocketAddr::new(ip, port), range))
}

/// The words after `source`: the address, then `usesrc X` and `interface NAME` in any order
/// (the last of each winning, as in `HAProxy`).
pub(super) fn source_words(words: &[String]) -> Result<Source, String> {
    let Some((addr, rest)) = words.split_first() else {
        return Err(
            "'source' expects <addr>[:<port>], and optionally 'usesrc' <addr>, and 'interface' \
             <name>"
                .to_owned(),
        );
    };
    let mut source = Source {
        addr: source_addr(addr)?,
        interface: None,
        ports: None,
        usesrc: None,
    };
    let mut i = 0;
    while i < rest.len() {
        let kw = rest[i].as_str();
        let value = rest.get(i + 1).map(String::as_str);
        match kw {
            "usesrc" => source.usesrc = Some(usesrc(value)?),
            "interface" => {
                let Some(value) = value else {
                    return Err("'interface' after the source address needs a value".to_owned());
                };
                source.interface = Some(interface(value)?);
            }
            _ => {
                return Err(format!(
                    "unexpected '{kw}' after the source address (expected 'usesrc' or \
                     'interface')"
                ))
            }
        }
        i += 2;
    }
    Ok(source)
}

/// The word after `usesrc` (on a backend's `source` line or a server's): `client`,
/// `clientip`, or `ADDR[:PORT]` (a name resolved now; no port range). `hdr_ip(...)` takes the
/// address from an HTTP header: refused, lb proxies TCP (`HAProxy` warns in a TCP proxy that
/// it ignores the header, and its connections then fail).
pub(super) fn usesrc(word: Option<&str>) -> Result<UseSrc, String> {
    match word {
        None | Some("") => {
            Err("'usesrc' expects <addr>[:<port>], 'client', or 'clientip' as argument".to_owned())
        }
        Some("client") => Ok(UseSrc::Client),
        Some("clientip") => Ok(UseSrc::ClientIp),
        Some(w) if w.starts_with("hdr_ip(") => Err(format!(
            "'usesrc {w}' is HTTP-only (it takes the address from an HTTP header); lb proxies \
             TCP only: use 'client', 'clientip' or an address"
        )),
        Some(w) => match source_addr_range(w) {
            Ok((addr, None)) => Ok(UseSrc::Addr(addr)),
            Ok((_, Some((lo, hi)))) => Err(format!(
                "'usesrc {w}': port range '{lo}-{hi}' not allowed (expected <addr>[:<port>], \
                 'client', or 'clientip')"
            )),
            Err(e) => Err(format!("'usesrc {w}': {e}")),
        },
    }
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
        assert_eq!(p.addr, "127.0.0.2:0".parse().unwrap());
        assert_eq!(p.interface, None);
        assert_eq!(p.usesrc, None);
        let p = source_words(&words("10.0.0.1:5000 interface eth1 usesrc clientip")).unwrap();
        assert_eq!(p.addr, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(p.interface.as_deref(), Some("eth1"));
        assert_eq!(p.usesrc, Some(UseSrc::ClientIp));
        assert_eq!(source_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(source_addr("ipv6@[::]").unwrap(), "[::]:0".parse().unwrap());
        assert_eq!(
            source_addr("0.0.0.0").unwrap(),
            "0.0.0.0:0".parse().unwrap()
        );
    }

    #[test]
    fn each_usesrc_form() {
        let u = |w: &str| source_words(&words(w)).unwrap().usesrc;
        assert_eq!(u("0.0.0.0 usesrc client"), Some(UseSrc::Client));
        assert_eq!(u("0.0.0.0 usesrc clientip"), Some(UseSrc::ClientIp));
        assert_eq!(
            u("0.0.0.0 usesrc 10.77.1.50"),
            Some(UseSrc::Addr("10.77.1.50:0".parse().unwrap()))
        );
        assert_eq!(
            u("0.0.0.0 usesrc 10.77.1.50:4000"),
            Some(UseSrc::Addr("10.77.1.50:4000".parse().unwrap()))
        );
        assert_eq!(
            u("[::] usesrc [2001:db8::5]:80"),
            Some(UseSrc::Addr("[2001:db8::5]:80".parse().unwrap()))
        );
        // The last one wins, as in HAProxy.
        assert_eq!(
            u("0.0.0.0 usesrc client usesrc clientip"),
            Some(UseSrc::ClientIp)
        );
        let p = source_words(&words("10.0.0.1 usesrc client interface eth0")).unwrap();
        assert_eq!(p.interface.as_deref(), Some("eth0"));
        assert_eq!(usesrc(Some("client")), Ok(UseSrc::Client));
        let client: std::net::SocketAddr = "10.77.1.2:40000".parse().unwrap();
        assert_eq!(UseSrc::Client.foreign(client), client);
        assert_eq!(
            UseSrc::ClientIp.foreign(client),
            "10.77.1.2:0".parse().unwrap()
        );
        let fixed = UseSrc::Addr("10.77.1.50:0".parse().unwrap());
        assert_eq!(fixed.foreign(client), "10.77.1.50:0".parse().unwrap());
        assert_eq!(fixed.to_string(), "10.77.1.50:0");
        assert_eq!(UseSrc::ClientIp.to_string(), "clientip");
    }

    #[test]
    fn bad_usesrc_forms_say_why() {
        let err = |w: &str| source_words(&words(w)).unwrap_err();
        assert_eq!(
            err("0.0.0.0 usesrc"),
            "'usesrc' expects <addr>[:<port>], 'client', or 'clientip' as argument"
        );
        let hdr = err("0.0.0.0 usesrc hdr_ip(x-forwarded-for,-1)");
        assert!(
            hdr.starts_with("'usesrc hdr_ip(x-forwarded-for,-1)' is HTTP-only"),
            "{hdr}"
        );
        let range = err("0.0.0.0 usesrc 10.0.0.9:1000-2000");
        assert!(
            range.contains("port range '1000-2000' not allowed"),
            "{range}"
        );
        let addr = err("0.0.0.0 usesrc not-an-address!");
        assert!(addr.starts_with("'usesrc not-an-address!': "), "{addr}");
        let port = err("0.0.0.0 usesrc 10.0.0.9:70000");
        assert!(port.contains("invalid port '70000'"), "{port}");
        assert!(err("").starts_with("'source' expects <addr>[:<port>]"));
    }

    #[test]
    fn a_servers_port_range() {
        let r = |w| source_addr_range(w).unwrap();
        assert_eq!(
            r("10.0.0.1:1025-65000"),
            ("10.0.0.1:0".parse().unwrap(), Some((1025, 65000)))
        );
        assert_eq!(
            r("10.0.0.1:80-80"),
            ("10.0.0.1:80".parse().unwrap(), None),
            "one port"
        );
        assert_eq!(r("10.0.0.1:80"), ("10.0.0.1:80".parse().unwrap(), None));
    }

    #[test]
    fn bad_words_say_why() {
        let e = source_words(&words("10.0.0.1:1024-65000")).unwrap_err();
        assert!(
            e.contains(
                "port range '1024-65000' in source '10.0.0.1:1024-65000': ranges are only \
                 allowed on a 'server' or 'default-server' line"
            ),
            "{e}"
        );
        for bad in [
            "10.0.0.1:0-5",
            "10.0.0.1:9-5",
            "10.0.0.1:5-70000",
            "10.0.0.1:a-b",
        ] {
            assert!(source_addr_range(bad).is_err(), "{bad}");
        }
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
