//! The runtime API (`stats socket PATH [mode M] [level L]`): HAProxy's text commands on unix
//! sockets, one command line per connection (or many after `prompt`), so that
//! `echo "set server be/s1 state maint" | socat stdio /run/lb/admin.sock` works unchanged.
//! `cli` parses and runs commands; this file owns the sockets and the control thread (which
//! also serves the stats pages). Server changes go through the state writer (`crate::state`).

pub mod cli;
mod fqdn;
pub mod frontend;
mod help;
pub mod master;
pub mod patterns;
mod process;
pub mod resolvers;
pub mod table;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::{timeout_at, Instant};

use crate::admission::{Admission, Slot};
use crate::config::{CliLevel, StatsSocket};
use crate::generation::{Current, Generation, Serving};
use crate::stats;

/// Longest command line accepted; HAProxy's buffer is 16 KiB. Longer lines are refused and the
/// connection closed.
pub const MAX_LINE: usize = 16 * 1024;

/// Longest payload (the lines after a command ending in `<<`). HAProxy's must fit its 16 KiB
/// buffer with the command; lb takes more, so that a map loads in fewer commands.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// A session's input, cut into lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// The next line (its newline included), at most `max` bytes: `None` at the end of the
    /// input, at `deadline`, or when the session gives its place to a new client. A longer
    /// line is refused: the client is told, and the error ends the session.
    async fn next(
        &mut self,
        stream: &mut UnixStream,
        deadline: Instant,
        slot: &Slot,
        max: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.buf.drain(..=p).collect()));
            }
            if self.buf.len() > max {
                let msg = format!("Command line too long (limit {max} bytes).\n\n");
                stream.write_all(msg.as_bytes()).await?;
                return Err(io::Error::other(msg.trim_end()));
            }
            let n = tokio::select! {
                r = timeout_at(deadline, stream.read(&mut chunk)) => match r {
                    Ok(r) => r?,
                    Err(_) => return Ok(None),
                },
                () = slot.evicted() => return Ok(None),
            };
            if n == 0 {
                // A last line without its newline still counts (`printf 'show info' | socat`).
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Errors of the runtime API's setup.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket path exists and is not a socket (lb will not delete a regular file).
    #[error("stats socket {path}: the path exists and is not a socket")]
    NotASocket { path: PathBuf },
    /// bind/chmod/remove failed.
    #[error("stats socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The control thread could not start.
    #[error("cannot start the control thread: {0}")]
    Thread(#[source] io::Error),
}

/// A bound runtime API socket, ready to serve.
#[derive(Debug)]
pub struct BoundSocket {
    pub conf: StatsSocket,
    listener: StdUnixListener,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let _ = crate::outside::remove_file(&self.conf.path);
    }
}

/// Binds one `stats socket`: removes a stale socket file left by a previous run, binds, and
/// applies `mode`.
pub fn bind_socket(conf: &StatsSocket) -> Result<BoundSocket, AdminError> {
    let path = &conf.path;
    let io_err = |source| AdminError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io_err)?,
        Ok(_) => return Err(AdminError::NotASocket { path: path.clone() }),
        Err(_) => {}
    }
    let listener = StdUnixListener::bind(path).map_err(io_err)?;
    if let Some(mode) = conf.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(BoundSocket {
        conf: conf.clone(),
        listener,
    })
}

/// Starts the control thread: a tokio current-thread runtime of its own serving every stats
/// page and runtime API socket, away from the accept threads. Stats and admin traffic is small;
/// one thread is plenty, and a slow client only holds its own task.
pub fn spawn_control_thread(
    current: Current,
    stats_listeners: Vec<(usize, std::net::TcpListener)>,
    sockets: Vec<BoundSocket>,
) -> Result<std::thread::JoinHandle<()>, AdminError> {
    crate::control::spawn_local_thread(
        "lb-control",
        "the stats page and runtime API",
        move || async move {
            let shared = current.load_full();
            let mut tasks = Vec::new();
            // One limit per stats section, whatever its number of listeners.
            let mut sections: HashMap<usize, Rc<Admission>> = HashMap::new();
            for (i, l) in stats_listeners {
                let slots = sections
                    .entry(i)
                    .or_insert_with(|| stats::http::admission(&shared, i))
                    .clone();
                tasks.push(tokio::task::spawn_local(stats::http::serve(
                    current.clone(),
                    i,
                    l,
                    slots,
                )));
            }
            // `stats maxconn` limits all runtime API sockets together, as HAProxy's CLI
            // frontend does.
            let cli = Admission::new(shared.config.global.stats_maxconn as usize);
            for s in sockets {
                tasks.push(tokio::task::spawn_local(serve_socket(
                    current.clone(),
                    s,
                    cli.clone(),
                )));
            }
            drop(shared);
            for t in tasks {
                let _ = t.await;
            }
        },
    )
    .map_err(AdminError::Thread)
}

/// Serves one runtime API socket until the process ends. It accepts while `slots` has room
/// and the process's fd budget a descriptor; otherwise clients wait in the backlog. At the
/// limit, a client that has not sent a whole command yet gives its place to a new one (see
/// `admission`).
async fn serve_socket(current: Current, sock: BoundSocket, slots: Rc<Admission>) {
    let shared = current.load_full();
    let path = sock.conf.path.clone();
    let std = match sock.listener.try_clone() {
        Ok(l) => l,
        Err(e) => {
            log::error!("stats socket {}: {e}", path.display());
            return;
        }
    };
    let listener = match UnixListener::from_std(std) {
        Ok(l) => l,
        Err(e) => {
            log::error!("stats socket {}: {e}", path.display());
            return;
        }
    };
    let level = sock.conf.level;
    let expose_fd = sock.conf.expose_fd;
    let master = sock.conf.master;
    let timeout = shared.config.global.stats_timeout;
    drop(shared);
    // Keeps the socket file until the process ends (BoundSocket removes it on drop).
    let _sock = sock;
    let what = format_args!("stats socket {}", path.display()).to_string();
    loop {
        let ((stream, _), slot, fd) = slots.accept(&what, || listener.accept()).await;
        let current = current.clone();
        tokio::task::spawn_local(async move {
            let access = Access {
                level,
                expose_fd,
                master,
            };
            if let Err(e) = session(&current, stream, access, timeout, &slot).await {
                log::debug!("stats socket: {e}");
            }
            // The session's stream is closed by now.
            drop(fd);
            drop(slot);
        });
    }
}

/// What a runtime API socket allows: its `level`, and `expose-fd listeners`; `master`: it is
/// the master CLI (`-S`).
#[derive(Clone, Copy, Debug)]
struct Access {
    level: CliLevel,
    expose_fd: bool,
    master: bool,
}

/// A connection's command state: the runtime API's, or the master CLI's around it.
enum Commands {
    Worker(cli::Session),
    Master(master::Master),
}

impl Commands {
    fn new(access: Access) -> Self {
        if access.master {
            Commands::Master(master::Master::new(access.level))
        } else {
            Commands::Worker(cli::Session::new(access.level))
        }
    }

    /// How long the next line may take (`set timeout cli` on the runtime API).
    fn timeout(&self) -> Option<Duration> {
        match self {
            Commands::Worker(s) => s.timeout,
            Commands::Master(_) => None,
        }
    }

    async fn run_line(
        &mut self,
        gen: &Arc<Generation>,
        text: &str,
        payload: Option<&str>,
    ) -> String {
        match self {
            Commands::Worker(s) => s.run_line(gen, text, payload).await,
            Commands::Master(m) => m.run_line(gen, text, payload).await,
        }
    }

    /// The prompt after an answer, or `None` when the connection ends there.
    fn prompt(&self) -> Option<String> {
        match self {
            Commands::Worker(s) => (!s.quit && s.interactive).then(|| "> ".to_owned()),
            Commands::Master(m) => (!m.quit && m.interactive()).then(|| m.prompt_text()),
        }
    }

    /// After the answer: the master CLI's `reload` reloads as SIGUSR2 does, through the
    /// signal loop.
    fn after_answer(&self) {
        if let Commands::Master(m) = self {
            if m.reload {
                let me = nix::unistd::Pid::this();
                if let Err(e) = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGUSR2) {
                    log::error!("master CLI: reload: cannot signal the process: {e}");
                }
            }
        }
    }
}

/// `_getsocks` (binary upgrade, `lb -x`): hands the listening sockets over when the socket has
/// `expose-fd listeners`; then, or else, closes the connection without a word, as HAProxy.
async fn getsocks(stream: UnixStream, expose_fd: bool) -> io::Result<()> {
    if !expose_fd {
        log::warn!("stats socket: _getsocks refused: the socket has no 'expose-fd listeners'");
        return Ok(());
    }
    // Until it has logged: the new process stops this one as soon as it has the sockets.
    let _unfinished = crate::upgrade::Unfinished::enter();
    let mut std = stream.into_std()?;
    // Blocking and short (each step bounded to 1 s): off this thread's runtime.
    // The new process registers the sockets with its own thread balancer as soon as it has
    // them: a socket is in one balancer at a time, so ours lets them go first.
    crate::listener::spread::hand_over();
    let sent = tokio::task::spawn_blocking(move || crate::upgrade::send_sockets(&mut std))
        .await
        .map_err(io::Error::other)??;
    log::info!("stats socket: _getsocks: handed {sent} listening socket(s) to a new process");
    Ok(())
}

/// `_getflows` (lb's own, binary upgrade): hands the established flows that can go to a new
/// process, on a socket with `expose-fd listeners`; else closes without a word, as
/// `_getsocks`.
async fn getflows(shared: &Generation, stream: UnixStream, expose_fd: bool) -> io::Result<()> {
    if !expose_fd {
        log::warn!("stats socket: _getflows refused: the socket has no 'expose-fd listeners'");
        return Ok(());
    }
    let std = stream.into_std()?;
    let sent = crate::upgrade::give_flows(std, &shared.process.flows).await?;
    log::info!("stats socket: _getflows: handed {sent} established flow(s) to a new process");
    Ok(())
}

/// One runtime API connection: reads command lines and answers them; closes after the first
/// line unless `prompt` made it interactive. Each line must be complete within `timeout`
/// (`stats timeout`) of the wait for it, however slowly its bytes come; until its first line
/// is complete, the session gives its slot up to a new client at the limit. Each line acts on
/// the generation serving when it runs (an interactive session outlives reloads), and not
/// while a reload copies state ([`Serving::for_change`]).
async fn session(
    current: &Serving,
    mut stream: UnixStream,
    access: Access,
    timeout: Duration,
    slot: &Slot,
) -> io::Result<()> {
    let mut state = Commands::new(access);
    let mut lines = Lines::default();
    loop {
        // One line, bounded in size and time (`set timeout cli` changes the bound).
        let deadline = Instant::now() + state.timeout().unwrap_or(timeout);
        let Some(line) = lines.next(&mut stream, deadline, slot, MAX_LINE).await? else {
            return Ok(());
        };
        slot.served();
        let text = String::from_utf8_lossy(&line);
        match text.trim_end_matches(['\n', '\r']) {
            // Not on the master CLI (HAProxy's cannot hand sockets over either).
            _ if access.master => {}
            "_getsocks" => return getsocks(stream, access.expose_fd).await,
            "_getflows" => return getflows(&current.load_full(), stream, access.expose_fd).await,
            _ => {}
        }
        let text = text.trim_end_matches(['\n', '\r']);
        // A line ending in `<<` is followed by a payload, up to an empty line (HAProxy's
        // `PAYLOAD_PATTERN`), read under the same deadline.
        let (text, payload) = match text.strip_suffix("<<") {
            Some(cmd) if !cmd.trim().is_empty() => {
                let mut payload = String::new();
                while let Some(l) = lines.next(&mut stream, deadline, slot, MAX_PAYLOAD).await? {
                    let l = String::from_utf8_lossy(&l);
                    let l = l.trim_end_matches(['\n', '\r']);
                    if l.is_empty() {
                        break;
                    }
                    if payload.len() + l.len() >= MAX_PAYLOAD {
                        stream
                            .write_all(b"Payload too long (limit 1048576 bytes).\n\n")
                            .await?;
                        return Ok(());
                    }
                    payload.push_str(l);
                    payload.push('\n');
                }
                (cmd, Some(payload))
            }
            _ => (text, None),
        };
        let hold = current.for_change().await;
        let out = state.run_line(&hold.gen, text, payload.as_deref()).await;
        drop(hold);
        stream.write_all(out.as_bytes()).await?;
        let prompt = state.prompt();
        state.after_answer();
        let Some(prompt) = prompt else {
            return Ok(());
        };
        stream.write_all(prompt.as_bytes()).await?;
    }
}
