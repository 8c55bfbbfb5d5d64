//! The stats pages' HTTP server: just what a stats page needs of HTTP/1.1 (GET, HEAD and POST
//! with `Content-Length`; one request per connection, answered with `Connection: close`).
//! Requests are bounded in size (16 KiB of head, 64 KiB of body) and time (`timeout client`,
//! at most 10 s); anything malformed gets a 400 and the connection is closed.
//!
//! It runs on the control thread's tokio runtime (see `admin::spawn_control_thread`), never on
//! the accept threads, so a slow or hostile stats client cannot delay the data path.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{auth, csv, html, prom, rows, StatsError};
use crate::config::StatsProxy;
use crate::flows::KillReason;
use crate::generation::{Current, Generation};
use crate::state::{self, By, Change, ForcedHealth};
use crate::table::AdminState;

/// Largest request head (request line + headers) accepted; HAProxy's default buffer is 16 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest POST body accepted (the admin form is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Request timeout without `timeout client`, and its upper bound.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default concurrent connections per stats section without `maxconn`.
const DEFAULT_MAXCONN: u32 = 100;

/// A parsed request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The origin-form target (`/stats;csv`), absolute-form reduced to its path.
    pub target: String,
    pub authorization: Option<String>,
    pub content_length: usize,
}

/// Why a request is refused before routing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("method not allowed")]
    Method,
    #[error("request body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
}

/// Parses a request head (everything before the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let text = std::str::from_utf8(head).map_err(|_| RequestError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(RequestError::Malformed("empty"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("bad request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(RequestError::Malformed("bad HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::Malformed("bad method"));
    }
    let target = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |i| &rest[i..]).to_owned()
    } else if target.starts_with('/') {
        target.to_owned()
    } else {
        return Err(RequestError::Malformed("bad target"));
    };
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RequestError::Malformed("bad target"));
    }
    let mut req = Request {
        method: method.to_owned(),
        target,
        ..Request::default()
    };
    let mut seen_length = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(RequestError::Malformed("header without ':'"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ') {
            return Err(RequestError::Malformed("bad header name"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| RequestError::Malformed("bad Content-Length"))?;
            if seen_length && n != req.content_length {
                return Err(RequestError::Malformed("conflicting Content-Length"));
            }
            seen_length = true;
            if n > MAX_BODY {
                return Err(RequestError::BodyTooLarge);
            }
            req.content_length = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::Malformed(
                "Transfer-Encoding is not supported",
            ));
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.to_owned());
        }
    }
    if !matches!(req.method.as_str(), "GET" | "HEAD" | "POST") {
        return Err(RequestError::Method);
    }
    Ok(req)
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type", content_type.to_owned()),
                ("cache-control", "no-cache".to_owned()),
            ],
            body: body.into(),
        }
    }

    fn error(status: u16, text: &str) -> Self {
        Self::new(
            status,
            "text/html",
            format!(
                "<html><body><h1>{status} {}</h1>\n{text}\n</body></html>\n",
                reason(status)
            ),
        )
    }

    fn redirect(location: String) -> Self {
        let mut r = Self::new(303, "text/plain", "");
        r.headers.push(("location", location));
        r
    }

    /// The bytes on the wire (no body for HEAD).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        let _ = write!(
            out,
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        );
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Decodes `application/x-www-form-urlencoded` into (name, value) pairs.
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the request carries valid credentials (or the section asks for none).
fn authorized(shared: &Generation, st: &StatsProxy, req: &Request) -> bool {
    let lists: Vec<_> = shared
        .config
        .userlists
        .iter()
        .filter(|u| st.userlists.contains(&u.name))
        .flat_map(|u| u.users.iter())
        .collect();
    if st.users.is_empty() && st.userlists.is_empty() {
        return true;
    }
    let Some((user, pass)) = req.authorization.as_deref().and_then(auth::parse_basic) else {
        return false;
    };
    auth::check(st.users.iter().chain(lists), &user, &pass)
}

fn unauthorized(st: &StatsProxy) -> Response {
    let mut r = Response::error(
        401,
        "You need a valid user and password to access this content.",
    );
    r.headers.push((
        "www-authenticate",
        format!("Basic realm=\"{}\"", st.realm.replace(['"', '\\'], "")),
    ));
    r
}

/// Message for `;st=CODE`, HAProxy's wording.
fn status_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "DONE" => "Action processed successfully.",
        "NONE" => "Nothing has changed.",
        "PART" => "Action partially processed.",
        "ERRP" => "Action not processed because of invalid parameters.",
        "DENY" => "Action denied.",
        _ => return None,
    })
}

/// Applies the admin form (`s=SRV&...&action=A&b=#IID|NAME`), returns the `st=` code.
fn admin_post(shared: &Arc<Generation>, body: &str) -> &'static str {
    let form = parse_form(body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(action), Some(b)) = (get("action"), get("b")) else {
        return "ERRP";
    };
    let backend = if let Some(id) = b.strip_prefix('#') {
        let ids = &shared.proxy_ids;
        id.parse::<u32>().ok().and_then(|id| {
            shared
                .config
                .backends
                .iter()
                .position(|be| ids.get(&be.name) == Some(&id))
        })
    } else {
        shared.config.backends.iter().position(|be| be.name == b)
    };
    let Some(backend) = backend else {
        return "ERRP";
    };
    let servers: Vec<&str> = form
        .iter()
        .filter(|(n, _)| n == "s")
        .map(|(_, v)| v.as_str())
        .collect();
    if servers.is_empty() || action.is_empty() {
        return "NONE";
    }
    let mut done = 0;
    for name in &servers {
        let Some(s) = shared.backends[backend].server_index(name) else {
            continue;
        };
        let change = match action {
            "ready" => Change::Admin(AdminState::Ready),
            "drain" => Change::Admin(AdminState::Drain),
            "maint" => Change::Admin(AdminState::Maint),
            "hrunn" => Change::ForceHealth(ForcedHealth::Up),
            "hdown" => Change::ForceHealth(ForcedHealth::Down),
            "shutdown" => {
                let uid = shared.backends[backend].snapshot().servers[s].counters.uid;
                shared.process.flows.kill(&[uid], KillReason::Admin);
                done += 1;
                continue;
            }
            _ => return "ERRP",
        };
        let r = state::apply(shared, backend, s, change, &By::StatsPage);
        if r.is_ok() {
            done += 1;
        }
    }
    match done {
        0 => "ERRP",
        n if n < servers.len() => "PART",
        _ => "DONE",
    }
}

/// Answers one request.
pub fn route(shared: &Arc<Generation>, st: &StatsProxy, req: &Request, body: &[u8]) -> Response {
    let path = req.target.split('?').next().unwrap_or("");
    let on_page = st.page && req.target.starts_with(&st.uri);
    if let Some(p) = &st.prometheus {
        if (p.is_empty() && !on_page) || path == p {
            if !st.userlists.is_empty() && !authorized(shared, st, req) {
                return unauthorized(st);
            }
            if req.method == "POST" {
                return Response::error(405, "Method not allowed.");
            }
            return Response::new(200, prom::CONTENT_TYPE, prom::render(shared, &rows(shared)));
        }
    }
    if !on_page {
        return Response::error(503, "No server is available to handle this request.");
    }
    if !authorized(shared, st, req) {
        return unauthorized(st);
    }
    let rest = &req.target[st.uri.len()..];
    if req.method == "POST" {
        if !st.admin {
            return Response::redirect(format!("{};st=DENY", st.uri));
        }
        let code = admin_post(shared, &String::from_utf8_lossy(body));
        return Response::redirect(format!("{};st={code}", st.uri));
    }
    let all = rows(shared);
    if rest.contains(";csv") {
        return Response::new(200, "text/plain", csv::render(&all));
    }
    let message = rest
        .split(';')
        .find_map(|p| p.strip_prefix("st="))
        .and_then(|c| status_message(c.split(['?', '&', ';']).next().unwrap_or("")));
    Response::new(
        200,
        "text/html",
        html::render(shared, st, &all, st.admin, message),
    )
}

/// Reads one request and writes its response.
async fn connection(
    shared: &Arc<Generation>,
    st: &StatsProxy,
    stream: &mut TcpStream,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            let r = Response::error(400, "Your browser sent an invalid request.");
            return stream.write_all(&r.encode(false)).await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let req = match parse_head(&buf[..head_end]) {
        Ok(r) => r,
        Err(e) => {
            log::debug!("stats '{}': {e}", st.name);
            let (code, text) = match e {
                RequestError::Method => (405, "Method not allowed."),
                RequestError::BodyTooLarge => (413, "Request body too large."),
                _ => (400, "Your browser sent an invalid request."),
            };
            let mut r = Response::error(code, text);
            if code == 405 {
                r.headers.push(("allow", "GET, HEAD, POST".to_owned()));
            }
            return stream.write_all(&r.encode(false)).await;
        }
    };
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < req.content_length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(req.content_length);
    let resp = route(shared, st, &req, &body);
    stream.write_all(&resp.encode(req.method == "HEAD")).await?;
    stream.shutdown().await
}

/// Binds the listeners of every stats section (before the process reports ready).
pub fn bind(shared: &Generation) -> Result<Vec<(usize, std::net::TcpListener)>, StatsError> {
    let mut out = Vec::new();
    for (i, st) in shared.config.stats.iter().enumerate() {
        for b in &st.binds {
            let l = crate::listener::bind_listener(b.addr, &b.opts).map_err(|source| {
                StatsError::Bind {
                    name: st.name.clone(),
                    addr: b.addr,
                    source,
                }
            })?;
            l.set_nonblocking(true).map_err(|source| StatsError::Bind {
                name: st.name.clone(),
                addr: b.addr,
                source,
            })?;
            out.push((i, l));
        }
    }
    Ok(out)
}

/// Serves one stats listener until the process ends.
pub async fn serve(current: Current, index: usize, listener: std::net::TcpListener) {
    let st = Arc::new(current.load().config.stats[index].clone());
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("stats '{}': {e}", st.name);
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(
        st.maxconn.unwrap_or(DEFAULT_MAXCONN) as usize
    ));
    // A request must be complete within `timeout client`, capped: defaults often carry hours of
    // client timeout meant for TCP flows, which would let idle stats clients pile up.
    let timeout = st
        .timeout
        .map_or(DEFAULT_TIMEOUT, |t| t.min(DEFAULT_TIMEOUT));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (mut stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("stats '{}': accept failed: {e}", st.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Each request is answered from the generation serving when it arrives (reload).
        let shared = current.load_full();
        let st = st.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, connection(&shared, &st, &mut stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("stats '{}': client {peer}: {e}", st.name),
                Err(_) => {
                    let r = Response::error(
                        408,
                        "Your browser didn't send a complete request in time.",
                    );
                    let _ = stream.write_all(&r.encode(false)).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let r =
            parse_head(b"GET /stats;csv HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/stats;csv");
        assert_eq!(r.authorization.as_deref(), Some("Basic eDp5"));
        let r = parse_head(b"POST http://h:1/stats HTTP/1.0\r\nContent-Length: 12").unwrap();
        assert_eq!((r.target.as_str(), r.content_length), ("/stats", 12));
    }

    #[test]
    fn rejects_bad_requests() {
        for bad in [
            &b"GET /x"[..],
            b"GET /x HTTP/2.0",
            b"get /x HTTP/1.1",
            b"GET x HTTP/1.1",
            b"GET /x HTTP/1.1\r\nno-colon",
            b"GET /x HTTP/1.1\r\nContent-Length: -1",
            b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
            b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"\xff\xfe",
            b"",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_head(b"DELETE /x HTTP/1.1"), Err(RequestError::Method));
        assert_eq!(
            parse_head(b"POST /x HTTP/1.1\r\nContent-Length: 99999999"),
            Err(RequestError::BodyTooLarge)
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("s=s1&s=a%2Fb&action=maint&b=%233&x=%zz+y"),
            vec![
                ("s".into(), "s1".into()),
                ("s".into(), "a/b".into()),
                ("action".into(), "maint".into()),
                ("b".into(), "#3".into()),
                ("x".into(), "%zz y".into()),
            ]
        );
    }
}
