//! Helpers for the stats page and runtime API tests: a raw HTTP/1.1 client, the runtime API
//! through `socat`, a config with a stats section and a `stats socket`, and where artifacts go.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, local, simple_config, Lb};

/// A response: status, raw header block (lower-cased names as lb sends them), body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Sends `raw` and reads the response to EOF (lb closes after each response), 10 s at most.
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> Result<HttpResponse, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (400) and close before it has read everything: ignore write errors.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err("response not finished in 10 s".into());
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&out)))?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok(HttpResponse {
        status,
        head,
        body: out[end + 4..].to_vec(),
    })
}

/// Standard base64 (for `Authorization: Basic`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// `METHOD path` with optional Basic credentials and body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> HttpResponse {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some((u, p)) = auth {
        let _ = write!(
            r,
            "Authorization: Basic {}\r\n",
            base64(format!("{u}:{p}").as_bytes())
        );
    }
    if !body.is_empty() {
        let _ = write!(
            r,
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    r.push_str("\r\n");
    r.push_str(body);
    http_raw(addr, r.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET path` with optional credentials.
pub fn get(addr: SocketAddr, path: &str, auth: Option<(&str, &str)>) -> HttpResponse {
    request(addr, "GET", path, auth, "")
}

/// Runs `echo INPUT | socat stdio PATH`, as users do, and returns its output (10 s at most).
pub fn cli(path: &Path, input: &str) -> String {
    let mut child = Command::new("socat")
        .arg("stdio")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat (installed by cargo xtask setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .expect("write to socat");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(_status) = child.try_wait().expect("wait socat") {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("socat {} '{input}' did not finish in 10 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// A directory for this test's sockets, removed on drop.
pub struct SockDir {
    pub path: PathBuf,
}

impl SockDir {
    pub fn new(tag: &str) -> SockDir {
        let path =
            std::env::temp_dir().join(format!("lb-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&path).unwrap();
        SockDir { path }
    }

    pub fn sock(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for SockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A config: `frontend fe` on `fe_port` → `backend be` (`servers` as `server` line tails),
/// runtime API sockets `admin.sock`, `oper.sock`, `user.sock` in `dir` at those levels, and
/// `extra` appended (a stats section, userlists).
pub fn config(
    fe_port: u16,
    dir: &SockDir,
    backend_lines: &[&str],
    servers: &[String],
    extra: &str,
) -> String {
    let mut sockets = String::new();
    for (f, l) in [
        ("admin.sock", "admin"),
        ("oper.sock", "operator"),
        ("user.sock", "user"),
    ] {
        let _ = writeln!(
            sockets,
            "    stats socket {} mode 600 level {l}",
            dir.sock(f).display()
        );
    }
    let c = simple_config(fe_port, backend_lines, servers).replacen(
        "global\n    maxconn 4096\n",
        &format!("global\n    maxconn 4096\n{sockets}"),
        1,
    );
    c + extra
}

/// A `listen stats` section on `port` with `stats auth admin:pass`, admin actions, and the
/// Prometheus exporter on /metrics.
pub fn stats_section(port: u16) -> String {
    format!(
        "\nlisten stats\n    mode http\n    bind 127.0.0.1:{port}\n    stats enable\n    stats uri /stats\n    stats refresh 10s\n    stats auth admin:pass\n    stats admin if TRUE\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n"
    )
}

/// `target/test-artifacts/`, created.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Parses CSV output: (header columns without the `# `, rows as column→value maps in order).
pub fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<(String, String)>>) {
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header = lines.next().expect("a header line");
    let cols: Vec<String> = header
        .strip_prefix("# ")
        .expect("header starts with '# '")
        .trim_end_matches(',')
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| {
            let vals: Vec<&str> = l.trim_end_matches(',').split(',').collect();
            assert!(vals.len() <= cols.len(), "row longer than the header: {l}");
            cols.iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), vals.get(i).copied().unwrap_or("").to_owned()))
                .collect()
        })
        .collect();
    (cols, rows)
}

/// Value of `col` in a parsed CSV row.
pub fn col<'a>(row: &'a [(String, String)], col: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == col)
        .map_or_else(|| panic!("no column {col}"), |(_, v)| v.as_str())
}

/// lb started on [`config`]: its frontend's address and the directory of its runtime API
/// sockets.
pub struct Setup {
    pub lb: Lb,
    pub fe: SocketAddr,
    pub dir: SockDir,
}

/// Starts lb on [`config`] with `backend_lines` and `servers`; sockets in a fresh directory
/// named after `name`.
pub fn start(name: &str, dataplane: &str, backend_lines: &[&str], servers: &[String]) -> Setup {
    let fe = free_port();
    let dir = SockDir::new(name);
    let cfg = config(fe, &dir, backend_lines, servers, "");
    Setup {
        lb: Lb::start(&cfg, dataplane),
        fe: local(fe),
        dir,
    }
}

impl Setup {
    /// One command on the `level admin` runtime API socket; its whole answer.
    pub fn admin(&self, cmd: &str) -> String {
        cli(&self.dir.sock("admin.sock"), cmd)
    }
}
