//! `option httpchk` with `http-check connect|send|expect|disable-on-404`: the request HAProxy
//! sends (its request line, `hdr` headers, `connection: close` unless a `connection` header
//! is given, a `content-length` for a body or a method that carries one, then the body), and
//! the verdict on the response. Header names go out lowercased, as HAProxy's HTTP/1 writer
//! sends them.

use std::fmt::Write as _;

use tokio::time::Instant;

use super::probe::{
    default_connect, io_text, open, read_deadline, regex, AfterConnect, Outcome, SendError, Target,
};
use crate::config::{ConnectRule, HttpCheck, HttpExpect, HttpExpectKind, LfPart, LogFormat};

/// A compiled `option httpchk`.
#[derive(Debug)]
pub struct HttpProbe {
    /// `http-check connect`, else the default connect.
    pub connect: Option<ConnectRule>,
    check: HttpCheck,
    regex: Option<regex::bytes::Regex>,
}

impl HttpProbe {
    pub fn compile(h: &HttpCheck) -> Self {
        let regex = match h.expect.as_ref().map(|e| &e.kind) {
            Some(HttpExpectKind::Rstatus(r) | HttpExpectKind::Rstring(r)) => Some(regex(r)),
            _ => None,
        };
        Self {
            connect: h.connect.clone(),
            check: h.clone(),
            regex,
        }
    }

    /// The request for the server `t` is about.
    pub fn request(&self, t: &Target) -> Vec<u8> {
        let h = &self.check;
        let mut uri = expand(&h.uri, t);
        if uri.is_empty() {
            uri.push('/');
        }
        let mut r = format!("{} {uri} {}\r\n", h.method, h.version);
        let mut has_connection = false;
        for (name, value) in &h.headers {
            has_connection |= name.eq_ignore_ascii_case("connection");
            let _ = write!(r, "{}: {value}\r\n", name.to_ascii_lowercase());
        }
        if !has_connection {
            r.push_str("connection: close\r\n");
        }
        let bodyless = matches!(h.method.as_str(), "OPTIONS" | "GET" | "HEAD" | "DELETE");
        if !bodyless || !h.body.is_empty() {
            let _ = write!(r, "content-length: {}\r\n", h.body.len());
        }
        r.push_str("\r\n");
        r.push_str(&h.body);
        r.into_bytes()
    }

    pub async fn run(&self, t: &Target, started: Instant) -> Outcome {
        let whole = started + t.inter;
        // The default connect has no `linger`, as HAProxy's httpchk: a reset unless the server
        // closed first (HTTP/1.0 servers do, once the response is out).
        let rule = self
            .connect
            .clone()
            .unwrap_or_else(|| default_connect(false));
        let mut s = match open(&rule, AfterConnect::Send, t, whole).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let deadline = read_deadline(t, whole);
        let request = self.request(t);
        match s.send(&request, deadline).await {
            Ok(()) => {}
            Err(SendError::Io(e)) => return Outcome::new(false, "L7RSP", io_text(&e)),
            Err(SendError::Timeout) => return Outcome::new(false, "L7TOUT", ""),
        }
        // As HAProxy, the verdict waits for the whole response: its head and its body by
        // `Content-Length`, chunked encoding, or the server's close (or the buffer cap).
        let no_body = self.check.method == "HEAD";
        let mut buf = Vec::new();
        while !http_response_complete(&buf, no_body) {
            match s.fill(&mut buf, deadline).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(()) => return Outcome::new(false, "L7TOUT", ""),
            }
        }
        drop(s);
        let nolb = self.check.disable_on_404 && t.server_up;
        http_verdict(&buf, self.check.expect.as_ref(), self.regex.as_ref(), nolb)
    }
}

/// A check's log-format string for the server of `t`.
fn expand(f: &LogFormat, t: &Target) -> String {
    let mut out = String::new();
    for p in &f.0 {
        match p {
            LfPart::Text(s) => out.push_str(s),
            LfPart::SrvName => out.push_str(&t.who.server),
            LfPart::SrvId => out.push_str(&t.who.server_id.to_string()),
            LfPart::BeName => out.push_str(&t.who.backend),
            LfPart::BeId => out.push_str(&t.who.backend_id.to_string()),
        }
    }
    out
}

/// Whether `buf` holds a whole HTTP/1 response: the head, then as much body as
/// `Content-Length` says, or a chunked body's last chunk. A response without either ends
/// with the connection (never complete here). `no_body`: the answer to a HEAD request.
pub fn http_response_complete(buf: &[u8], no_body: bool) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let body = &buf[end + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if no_body || (100..200).contains(&status) || status == 204 || status == 304 {
        return true;
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => body.len() >= n,
        None => false,
    }
}

/// Judges an HTTP response (status line, body) against `http-check expect`; without one, any
/// 2xx or 3xx passes. `disable_404`: `disable-on-404` and the server is UP, so a 404 is
/// HAProxy's "conditionally passed" (L7OKC: the server goes NOLB), whatever the expect says.
pub fn http_verdict(
    buf: &[u8],
    expect: Option<&HttpExpect>,
    regex: Option<&regex::bytes::Regex>,
    disable_404: bool,
) -> Outcome {
    let line_end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let mut parts = line.splitn(3, ' ');
    let (Some(ver), Some(code)) = (parts.next(), parts.next()) else {
        return Outcome::new(false, "L7RSP", "Invalid HTTP response");
    };
    let reason = parts.next().unwrap_or("").to_owned();
    let Ok(status) = code.parse::<u16>() else {
        return Outcome::new(false, "L7RSP", "Invalid HTTP response");
    };
    if !ver.starts_with("HTTP/") || !(100..=999).contains(&status) {
        return Outcome::new(false, "L7RSP", "Invalid HTTP response");
    }
    if disable_404 && status == 404 {
        return Outcome::new(true, "L7OKC", reason).code(404);
    }
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |p| &buf[p + 4..]);
    let Some(e) = expect else {
        return if (200..400).contains(&status) {
            Outcome::new(true, "L7OK", reason).code(u32::from(status))
        } else {
            Outcome::new(false, "L7STS", reason).code(u32::from(status))
        };
    };
    let matched = match &e.kind {
        HttpExpectKind::Status(ranges) => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
        }
        HttpExpectKind::Rstatus(_) => regex.is_some_and(|r| r.is_match(code.as_bytes())),
        HttpExpectKind::String(s) => {
            let p = s.as_bytes();
            p.is_empty() || body.windows(p.len()).any(|w| w == p)
        }
        HttpExpectKind::Rstring(_) => regex.is_some_and(|r| r.is_match(body)),
    };
    let is_status = matches!(
        e.kind,
        HttpExpectKind::Status(_) | HttpExpectKind::Rstatus(_)
    );
    if matched != e.negate {
        Outcome::new(true, "L7OK", reason).code(u32::from(status))
    } else if is_status {
        Outcome::new(false, "L7STS", reason).code(u32::from(status))
    } else {
        Outcome::new(false, "L7RSP", "HTTP content check did not match").code(u32::from(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use super::super::probe::Who;

    fn http_verdict(
        buf: &[u8],
        expect: Option<&HttpExpect>,
        regex: Option<&regex::bytes::Regex>,
    ) -> Outcome {
        super::http_verdict(buf, expect, regex, false)
    }

    #[test]
    fn requests_are_haproxys() {
        let mut h = HttpCheck {
            method: "GET".into(),
            uri: crate::config::LogFormat(vec![
                LfPart::Text("/".into()),
                LfPart::SrvName,
                LfPart::Text("?be=".into()),
                LfPart::BeName,
            ]),
            version: "HTTP/1.1".into(),
            headers: vec![("Host".into(), "db".into())],
            ..HttpCheck::default()
        };
        let mut t = Target::plain(
            "127.0.0.1:1".parse().unwrap(),
            std::time::Duration::from_secs(1),
            None,
            std::time::Duration::from_secs(1),
        );
        t.who = Arc::new(Who {
            server: "replica1".into(),
            server_id: 1,
            backend: "pg".into(),
            backend_id: 2,
        });
        assert_eq!(
            HttpProbe::compile(&h).request(&t),
            b"GET /replica1?be=pg HTTP/1.1\r\nhost: db\r\nconnection: close\r\n\r\n"
        );
        h.method = "POST".into();
        h.body = "ping".into();
        h.headers = vec![("Connection".into(), "keep-alive".into())];
        assert_eq!(
            HttpProbe::compile(&h).request(&t),
            b"POST /replica1?be=pg HTTP/1.1\r\nconnection: keep-alive\r\ncontent-length: 4\r\n\r\nping"
        );
        h.body.clear();
        assert!(String::from_utf8(HttpProbe::compile(&h).request(&t))
            .unwrap()
            .contains("content-length: 0\r\n"));
    }

    #[test]
    fn disable_on_404_is_a_conditional_pass_only_when_asked() {
        let r = b"HTTP/1.0 404 Not Found\r\n\r\n";
        let e = HttpExpect {
            negate: false,
            kind: HttpExpectKind::Status(vec![(200, 200)]),
        };
        let o = super::http_verdict(r, Some(&e), None, true);
        assert_eq!((o.passed, o.result, o.code), (true, "L7OKC", Some(404)));
        let o = super::http_verdict(r, Some(&e), None, false);
        assert_eq!((o.passed, o.result), (false, "L7STS"));
    }

    #[test]
    fn http_status_line_and_expect() {
        let r = b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n\r\nbody down";
        let o = http_verdict(r, None, None);
        assert_eq!((o.result, o.code), ("L7STS", Some(503)));
        let o = http_verdict(b"HTTP/1.1 200 OK\r\n\r\nall good", None, None);
        assert!(o.passed);
        let e = HttpExpect {
            negate: false,
            kind: HttpExpectKind::String("good".into()),
        };
        assert!(http_verdict(b"HTTP/1.1 200 OK\r\n\r\nall good", Some(&e), None).passed);
        assert!(!http_verdict(b"HTTP/1.1 200 OK\r\n\r\nall bad", Some(&e), None).passed);
        let e = HttpExpect {
            negate: false,
            kind: HttpExpectKind::Status(vec![(503, 503)]),
        };
        assert!(http_verdict(r, Some(&e), None).passed);
        assert_eq!(http_verdict(b"garbage", None, None).result, "L7RSP");
    }

    #[test]
    fn http_checks_wait_for_the_whole_response() {
        let done = |r: &[u8]| http_response_complete(r, false);
        assert!(!done(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"));
        assert!(!done(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"));
        assert!(done(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd"));
        assert!(!done(b"HTTP/1.0 200 OK\r\n\r\nuntil close"));
        assert!(done(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!done(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
        ));
        assert!(done(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
        assert!(http_response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true
        ));
    }
}
