//! The stats pages' HTTP server: just what a stats page needs of HTTP/1.1 (GET, HEAD and POST
//! with `Content-Length`; one request per connection, answered with `Connection: close`).
//! Requests are bounded in size (16 KiB of head, 64 KiB of body) and time (`timeout
//! http-request`, a few seconds by default, for the whole request; `timeout client` between
//! its packets); each line is judged as soon as it arrives, so anything malformed gets a 400
//! at once, and a request that times out a 408. Lines may end in CRLF or a bare LF.
//!
//! Connections: at most the section's `maxconn` (the global `maxconn` without one, as HAProxy
//! gives a proxy), within the process's fd budget; a client still sending its request cannot
//! keep a new one out (see `admission`). It runs on the control thread's tokio runtime (see
//! `admin::spawn_control_thread`), never on the accept threads, so a slow or hostile stats
//! client cannot delay the data path.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};

use super::{auth, csv, html, prom, rows, StatsError};
use crate::admission::{Admission, Slot};
use crate::config::StatsProxy;
use crate::flows::KillReason;
use crate::generation::{Current, Generation, Serving};
use crate::state::{self, By, Change, ForcedHealth};
use crate::table::AdminState;

/// Largest request head (request line + headers) accepted; HAProxy's default buffer is 16 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest POST body accepted (the admin form is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Time to receive a whole request without `timeout http-request`. HAProxy then bounds only
/// the silence between packets (`timeout client`), which lets a client sending one byte a
/// second hold its connection for hours; its documentation advises "a few seconds".
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on writing an answer without `timeout client`.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time limits of one stats connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole request (head and body) from the accept: `timeout http-request`.
    pub request: Duration,
    /// Silence between two packets of the request: `timeout client`.
    pub idle: Option<Duration>,
    /// Writing the answer: `timeout client`.
    pub write: Duration,
}

impl Limits {
    /// A section's limits.
    pub fn of(st: &StatsProxy) -> Self {
        Self {
            request: st.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            idle: st.timeout,
            write: st.timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
        }
    }
}

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

/// The request line: method, target (absolute-form reduced to its path), version.
fn request_line(line: &str) -> Result<Request, RequestError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), version, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("bad request line"));
    };
    // No version: HTTP/0.9, which HAProxy refuses with a 400.
    if !matches!(version, Some("HTTP/1.1" | "HTTP/1.0")) {
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
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return Err(RequestError::Method);
    }
    Ok(Request {
        method: method.to_owned(),
        target,
        ..Request::default()
    })
}

/// One header line into `req`.
fn header_line(req: &mut Request, line: &str, seen_length: &mut bool) -> Result<(), RequestError> {
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
        if *seen_length && n != req.content_length {
            return Err(RequestError::Malformed("conflicting Content-Length"));
        }
        *seen_length = true;
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
    Ok(())
}

/// Whether `partial`, the start of a request line, can still become a valid one.
fn request_line_may_continue(partial: &[u8]) -> bool {
    let partial = partial.strip_suffix(b"\r").unwrap_or(partial);
    let mut parts = partial.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let version = parts.next();
    method.iter().all(u8::is_ascii_uppercase)
        && target.iter().all(|&b| b > b' ' && b != 0x7f)
        && version.is_none_or(|v| b"HTTP/1.1".starts_with(v) || b"HTTP/1.0".starts_with(v))
        && parts.next().is_none()
}

/// Whether `partial`, the start of a header line, can still become a valid one.
fn header_line_may_continue(partial: &[u8]) -> bool {
    let partial = partial.strip_suffix(b"\r").unwrap_or(partial);
    let name_end = partial
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(partial.len());
    partial[..name_end].iter().all(|&b| b > b' ' && b != 0x7f)
        && partial[name_end..].iter().all(|&b| b >= b' ' || b == b'\t')
}

/// A request head as it arrives: each line is judged as soon as it is complete, and the
/// line being received as soon as it can no longer become valid, so that a malformed
/// request is refused at once. Lines end in CRLF or a bare LF; empty lines before the
/// request line are skipped (RFC 9112, section 2.2).
#[derive(Debug, Default)]
pub struct HeadParser {
    /// Bytes of the lines judged so far.
    scanned: usize,
    req: Option<Request>,
    seen_length: bool,
}

/// What [`HeadParser::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More is needed.
    Incomplete,
    /// The whole head; the body starts at `body_start`.
    Complete { req: Request, body_start: usize },
}

impl HeadParser {
    /// Judges what `buf` (everything received so far) adds.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Head, RequestError> {
        while let Some(nl) = buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let raw = &buf[self.scanned..self.scanned + nl];
            self.scanned += nl + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line =
                std::str::from_utf8(raw).map_err(|_| RequestError::Malformed("not UTF-8"))?;
            if line.contains('\r') {
                return Err(RequestError::Malformed("bare CR"));
            }
            match self.req.as_mut() {
                None if line.is_empty() => {}
                None => self.req = Some(request_line(line)?),
                Some(req) if line.is_empty() => {
                    let req = std::mem::take(req);
                    return Ok(Head::Complete {
                        req,
                        body_start: self.scanned,
                    });
                }
                Some(req) => header_line(req, line, &mut self.seen_length)?,
            }
            if self.scanned > MAX_HEAD {
                return Err(RequestError::TooLarge);
            }
        }
        let partial = &buf[self.scanned..];
        let may_continue = if self.req.is_none() {
            request_line_may_continue(partial)
        } else {
            header_line_may_continue(partial)
        };
        if !may_continue {
            return Err(RequestError::Malformed("bad request line or header"));
        }
        if buf.len() > MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
        Ok(Head::Incomplete)
    }
}

/// Parses a whole request head (everything before the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let mut whole = head.to_vec();
    whole.extend_from_slice(b"\r\n\r\n");
    match HeadParser::default().feed(&whole)? {
        Head::Complete { req, .. } => Ok(req),
        Head::Incomplete => Err(RequestError::Malformed("empty")),
    }
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

/// Why no request could be read.
#[derive(Debug)]
enum ReadError {
    /// The client closed (or reset) before a whole request.
    Closed,
    /// Not complete within the limits, or told to go for a new client.
    Timeout,
    Bad(RequestError),
}

/// Reads one request (head and body) within `limits`, started at `since`.
async fn read_request(
    stream: &mut TcpStream,
    limits: &Limits,
    since: Instant,
) -> Result<(Request, Vec<u8>), ReadError> {
    let whole = since + limits.request;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut head = HeadParser::default();
    let mut read = async |buf: &mut Vec<u8>| {
        let deadline = limits
            .idle
            .map_or(whole, |idle| (Instant::now() + idle).min(whole));
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => Err(ReadError::Closed),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(_) => Err(ReadError::Timeout),
        }
    };
    let (req, body_start) = loop {
        match head.feed(&buf).map_err(ReadError::Bad)? {
            Head::Complete { req, body_start } => break (req, body_start),
            Head::Incomplete => read(&mut buf).await?,
        }
    };
    while buf.len() < body_start + req.content_length {
        read(&mut buf).await?;
    }
    let body = buf[body_start..body_start + req.content_length].to_vec();
    Ok((req, body))
}

/// The answer to a request that could not be read, if it gets one.
fn refusal(e: &ReadError) -> Option<Response> {
    Some(match e {
        ReadError::Closed => return None,
        ReadError::Timeout => {
            Response::error(408, "Your browser didn't send a complete request in time.")
        }
        ReadError::Bad(RequestError::Method) => {
            let mut r = Response::error(405, "Method not allowed.");
            r.headers.push(("allow", "GET, HEAD, POST".to_owned()));
            r
        }
        ReadError::Bad(RequestError::BodyTooLarge) => {
            Response::error(413, "Request body too large.")
        }
        ReadError::Bad(_) => Response::error(400, "Your browser sent an invalid request."),
    })
}

/// Reads one request and writes its answer. A client still sending its request when its
/// slot is given to a new client (see `admission`) gets the answer to a timeout.
async fn connection(
    current: &Serving,
    st: &StatsProxy,
    stream: &mut TcpStream,
    slot: &Slot,
    limits: &Limits,
) -> std::io::Result<()> {
    let since = Instant::now();
    let read = tokio::select! {
        r = read_request(stream, limits, since) => r,
        () = slot.evicted() => Err(ReadError::Timeout),
    };
    let (resp, head_only) = match read {
        Ok((req, body)) => {
            slot.served();
            // Answered from the generation serving once the request is in; its form's
            // changes not while a reload copies state (`Serving::for_change`).
            let hold = current.for_change().await;
            (route(&hold.gen, st, &req, &body), req.method == "HEAD")
        }
        Err(e) => {
            log::debug!("stats '{}': {e:?}", st.name);
            let Some(r) = refusal(&e) else {
                return Ok(());
            };
            (r, false)
        }
    };
    let deadline = Instant::now() + limits.write;
    match timeout_at(deadline, stream.write_all(&resp.encode(head_only))).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    }
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

/// The slots of a stats section (shared by its listeners): its `maxconn`, else the global
/// one (HAProxy gives a proxy without `maxconn` the global `maxconn`).
pub fn admission(shared: &Generation, index: usize) -> Rc<Admission> {
    let st = &shared.config.stats[index];
    Admission::new(st.maxconn.unwrap_or(shared.maxconn) as usize)
}

/// Serves one stats listener until the process ends. It accepts while the section has a slot
/// (see [`admission`]) and the process's fd budget a descriptor; otherwise clients wait in
/// the backlog.
pub async fn serve(
    current: Current,
    index: usize,
    listener: std::net::TcpListener,
    slots: Rc<Admission>,
) {
    let st = Arc::new(current.load_full().config.stats[index].clone());
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("stats '{}': {e}", st.name);
            return;
        }
    };
    let limits = Limits::of(&st);
    let what = format!("stats '{}'", st.name);
    loop {
        let ((mut stream, peer), slot, fd) = slots.accept(&what, || listener.accept()).await;
        let st = st.clone();
        let current = current.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = connection(&current, &st, &mut stream, &slot, &limits).await {
                log::debug!("stats '{}': client {peer}: {e}", st.name);
            }
            drop(stream);
            drop(fd);
            drop(slot);
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

    /// Feeds `request` one byte at a time; the first verdict that is not "incomplete", and
    /// how many bytes it took.
    fn trickle(request: &[u8]) -> (Result<Head, RequestError>, usize) {
        let mut p = HeadParser::default();
        for n in 1..=request.len() {
            match p.feed(&request[..n]) {
                Ok(Head::Incomplete) => {}
                other => return (other, n),
            }
        }
        (Ok(Head::Incomplete), request.len())
    }

    #[test]
    fn malformed_requests_are_refused_as_soon_as_it_shows() {
        // HTTP/0.9: refused at the end of its line, not after a timeout.
        let (r, n) = trickle(b"GET /stats\r\nmore");
        assert_eq!(
            (r, n),
            (Err(RequestError::Malformed("bad HTTP version")), 12)
        );
        // Garbage: refused on its first byte.
        assert!(matches!(trickle(b"\x16\x03\x01"), (Err(_), 1)));
        assert!(matches!(trickle(b"get /"), (Err(_), 1)));
        assert!(matches!(trickle(b"GET /a HTTP/2"), (Err(_), 13)));
        assert!(matches!(trickle(b"GET /a b c"), (Err(_), 8)));
        assert!(matches!(
            trickle(b"GET /a HTTP/1.1\r\nBad Name: x"),
            (Err(_), 21)
        ));
        assert!(matches!(
            trickle(b"GET /a HTTP/1.1\r\nX: a\x01"),
            (Err(_), 22)
        ));
        // Still valid so far: wait for more.
        assert_eq!(
            trickle(b"GET /stats HTTP/1.1\r\nHost: example\r\n").0,
            Ok(Head::Incomplete)
        );
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let (r, n) = trickle(b"\nGET /stats;csv HTTP/1.0\nHost: x\r\nContent-Length: 2\n\nab");
        let Ok(Head::Complete { req, body_start }) = r else {
            panic!("{r:?}");
        };
        assert_eq!((req.target.as_str(), req.content_length), ("/stats;csv", 2));
        assert_eq!((n, body_start), (53, 53));
        assert_eq!(
            trickle(b"GET /x HTTP/1.1\r\nA: \rb\r\n\r\n").0,
            Err(RequestError::Malformed("bad request line or header"))
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
