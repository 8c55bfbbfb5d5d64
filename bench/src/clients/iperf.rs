//! iperf3: one stream and eight, Gbit/s as the receiving side counted them (`-J`,
//! `end.sum_received`), and the whole machine's CPU seconds per GiB moved from `/proc/stat`
//! around the run, as the synthetic bulk workload measures it.
//!
//! A fresh one-off server (`iperf3 -s -1`) on the same port for every run: a client killed
//! mid-test can leave a persistent server "busy" for minutes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{find_tool, run_bounded, Server};
use super::{Figure, Unit};
use crate::{procfs, stats};

/// The iperf3 binary and the port its one-off servers listen on.
#[derive(Debug)]
pub struct Iperf {
    bin: PathBuf,
    pub addr: SocketAddr,
}

/// What `iperf3 -J` reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    pub bytes: u64,
    pub bits_per_second: f64,
}

/// Parses `iperf3 -J` output: the received bytes and rate, or the error iperf3 reported (it
/// exits 0 with an `"error"` key when it cannot connect).
pub fn parse(json: &str) -> Result<Report, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 output is not JSON: {e}"))?;
    if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(format!("iperf3: {e}"));
    }
    let sum = v
        .pointer("/end/sum_received")
        .ok_or("iperf3 output has no end.sum_received")?;
    let bytes = sum
        .get("bytes")
        .and_then(serde_json::Value::as_u64)
        .ok_or("iperf3: end.sum_received.bytes missing")?;
    let bits_per_second = sum
        .get("bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or("iperf3: end.sum_received.bits_per_second missing")?;
    Ok(Report {
        bytes,
        bits_per_second,
    })
}

impl Iperf {
    /// Finds iperf3 and picks the port.
    pub fn setup() -> Result<Iperf, String> {
        let bin = find_tool("iperf3", &["/usr/bin/iperf3"], "iperf3")?;
        let addr = crate::targets::free_loopback_port().map_err(|e| e.to_string())?;
        Ok(Iperf { bin, addr })
    }

    /// One run of `streams` streams for `secs` through `front`: Gbit/s and CPU s/GiB.
    pub fn run(
        &self,
        front: SocketAddr,
        streams: usize,
        secs: u64,
        dir: &Path,
    ) -> Result<[Figure; 2], String> {
        let mut s = Command::new(&self.bin);
        s.args([
            "-s",
            "-1",
            "-B",
            "127.0.0.1",
            "-p",
            &self.addr.port().to_string(),
        ]);
        let mut server = Server::spawn("iperf3 server", s, dir.join("iperf3-server.log"))?;
        let port = self.addr.port();
        server.wait(Duration::from_secs(5), || {
            procfs::listening_now(port).unwrap_or(false)
        })?;
        let mut c = Command::new(&self.bin);
        c.args(["-c", "127.0.0.1", "-p", &front.port().to_string(), "-J"])
            .args(["-t", &secs.to_string(), "-P", &streams.to_string()]);
        let before = procfs::cpu_times().map_err(|e| e.to_string())?;
        let out = run_bounded(&mut c, dir, "iperf3", Duration::from_secs(secs + 20))?;
        let after = procfs::cpu_times().map_err(|e| e.to_string())?;
        let r = parse(&out.stdout).map_err(|e| format!("{e}\n{}", out.tail()))?;
        if !out.ok {
            return Err(format!("iperf3 exited {}:\n{}", out.status, out.tail()));
        }
        let cpu = stats::cpu_s_per_gib(before.busy_seconds_until(after), r.bytes);
        Ok([
            Figure::new(r.bits_per_second / 1e9, Unit::Gbit),
            Figure::new(cpu, Unit::CpuPerGib),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_and_eight_streams() {
        let r = parse(include_str!("samples/ip1.json")).unwrap();
        assert_eq!(r.bytes, 695_992_320);
        assert!(
            (r.bits_per_second - 2_758_390_722.827_223).abs() < 1.0,
            "{r:?}"
        );
        let r8 = parse(include_str!("samples/ip8.json")).unwrap();
        assert_eq!(r8.bytes, 3_334_471_680);
        assert!((r8.bits_per_second - 13_164_653_050.508_362).abs() < 1.0);
    }

    #[test]
    fn a_refused_connection_is_an_error_not_a_zero() {
        let e = parse(include_str!("samples/ip_refused.json")).unwrap_err();
        assert_eq!(e, "iperf3: unable to connect to server: Connection refused");
        assert!(parse("iperf3: error - unable to start")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse("{\"end\": {}}")
            .unwrap_err()
            .contains("no end.sum_received"));
    }
}
