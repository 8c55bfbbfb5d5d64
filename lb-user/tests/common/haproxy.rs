//! Debian's HAProxy as the reference: started on a temp config (`haproxy -f cfg -db`:
//! foreground, no daemon), stopped when dropped. Tests run it beside lb on the same config to
//! check that lb behaves as it does.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::TempCfg;

/// A running HAProxy, killed and reaped on drop.
pub struct Haproxy {
    child: Child,
    _cfg: TempCfg,
}

impl Haproxy {
    /// Starts HAProxy on `cfg` and waits until its frontend at `addr` accepts connections.
    pub fn start(cfg: &str, addr: SocketAddr) -> Haproxy {
        Self::start_with_nofile(cfg, addr, None)
    }

    /// As [`Haproxy::start`], with `RLIMIT_NOFILE` (soft and hard) set to `nofile`.
    pub fn start_with_nofile(cfg: &str, addr: SocketAddr, nofile: Option<u64>) -> Haproxy {
        let cfg = TempCfg::new(cfg);
        let mut cmd = Command::new("haproxy");
        if let Some(n) = nofile {
            super::limit_nofile(&mut cmd, n);
        }
        let mut child = cmd
            .arg("-f")
            .arg(&cfg.path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy is installed (cargo xtask setup)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("haproxy exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, _cfg: cfg }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
