//! The runtime API (`stats socket PATH [mode M] [level L]`): HAProxy's text commands on unix
//! sockets, one command line per connection (or many after `prompt`), so that
//! `echo "set server be/s1 state maint" | socat stdio /run/lb/admin.sock` works unchanged.
//! `cli` parses and runs commands; this file owns the sockets and the control thread (which
//! also serves the stats pages). Server changes go through the state writer (`crate::state`).

pub mod cli;

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::config::{CliLevel, StatsSocket};
use crate::generation::{Current, Generation};
use crate::stats;

/// Longest command line accepted; HAProxy's buffer is 16 KiB. Longer lines are refused and the
/// connection closed.
pub const MAX_LINE: usize = 16 * 1024;

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
            let mut tasks = Vec::new();
            for (i, l) in stats_listeners {
                tasks.push(tokio::task::spawn_local(stats::http::serve(
                    current.clone(),
                    i,
                    l,
                )));
            }
            for s in sockets {
                tasks.push(tokio::task::spawn_local(serve_socket(current.clone(), s)));
            }
            for t in tasks {
                let _ = t.await;
            }
        },
    )
    .map_err(AdminError::Thread)
}

async fn serve_socket(current: Current, sock: BoundSocket) {
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
    let limit = Arc::new(Semaphore::new(shared.config.global.stats_maxconn as usize));
    let level = sock.conf.level;
    let timeout = shared.config.global.stats_timeout;
    // Keeps the socket file until the process ends (BoundSocket removes it on drop).
    let _sock = sock;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("stats socket {}: accept failed: {e}", path.display());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Each session answers from the generation serving when it starts (reload).
        let shared = current.load_full();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            if let Err(e) = session(&shared, stream, level, timeout).await {
                log::debug!("stats socket: {e}");
            }
        });
    }
}

/// One runtime API connection: reads command lines and answers them; closes after the first
/// line unless `prompt` made it interactive.
async fn session(
    shared: &Arc<Generation>,
    mut stream: UnixStream,
    level: CliLevel,
    timeout: Duration,
) -> io::Result<()> {
    let mut state = cli::Session::new(level);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        // One line, bounded in size and time.
        let line = loop {
            if let Some(p) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=p).collect();
                break Some(line);
            }
            if buf.len() > MAX_LINE {
                stream
                    .write_all(b"Command line too long (limit 16384 bytes).\n\n")
                    .await?;
                return Ok(());
            }
            let n = match tokio::time::timeout(timeout, stream.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
            if n == 0 {
                // A last line without its newline still counts (`printf 'show info' | socat`).
                break (!buf.is_empty()).then(|| std::mem::take(&mut buf));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(line) = line else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&line);
        let out = state
            .run_line(shared, text.trim_end_matches(['\n', '\r']))
            .await;
        stream.write_all(out.as_bytes()).await?;
        if state.quit || !state.interactive {
            return Ok(());
        }
        stream.write_all(b"> ").await?;
    }
}
