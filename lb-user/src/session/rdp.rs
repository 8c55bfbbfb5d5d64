//! `persist rdp-cookie`: the server an RDP cookie names, as HAProxy 2.6's
//! `tcp_persist_rdp_cookie` reads it. A Windows session broker (or a previous HAProxy) writes
//! `Cookie: msts=IP.PORT.0000` in the connection request: `IP` is the decimal of the IPv4
//! address's bytes read as a little-endian integer, `PORT` the port with its two bytes swapped
//! (HAProxy compares `strtoul`'s result with `sin_addr.s_addr`, and `ntohs` of the next one
//! with the server's port, on a little-endian machine).

use crate::table::ServerEntry;

/// The index of the server `value` (the cookie's value) names, when it takes the connection:
/// usable, or in any state with `option persist` (as HAProxy: `force-persist` plays no part
/// here). Only IPv4 servers with their own port can be named.
pub(super) fn server(servers: &[ServerEntry], value: &[u8], persist: bool) -> Option<usize> {
    let (addr, port) = parse(value)?;
    servers.iter().position(|e| {
        let a = e.state.addr;
        let ip_matches = match a.ip() {
            std::net::IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()) == addr,
            std::net::IpAddr::V6(_) => false,
        };
        ip_matches && a.port() == port && e.state.takes_assignment(persist)
    })
}

/// `IP.PORT.` and anything after: the address as compared with `s_addr`, and the port in host
/// order. HAProxy's `strtoul` truncated to the field's width: digits only here (a value that
/// is not a broker's names no server).
fn parse(value: &[u8]) -> Option<(u32, u16)> {
    let text = std::str::from_utf8(value).ok()?;
    let (addr, rest) = text.split_once('.')?;
    let (port, _) = rest.split_once('.')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "HAProxy stores strtoul's result in 32 and 16 bits"
    )]
    Some((number(addr)? as u32, (number(port)? as u16).swap_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_decode_as_haproxy_reads_them() {
        // 10.0.0.1:3389, as a broker writes it.
        let ip = u32::from_le_bytes([10, 0, 0, 1]);
        let port = 3389u16.swap_bytes();
        let cookie = format!("{ip}.{port}.0000");
        assert_eq!(cookie, "16777226.15629.0000");
        assert_eq!(parse(cookie.as_bytes()), Some((ip, 3389)));
        assert_eq!(parse(b"16777226.15629."), Some((ip, 3389)));
        for bad in [
            &b"16777226.15629"[..],
            b"x.1.0",
            b"1..0",
            b"",
            b"1.2",
            b"\xff.1.0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
