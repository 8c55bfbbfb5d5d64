//! `cargo xtask soak --minutes N [--dataplane P]`: the chaos suite's workload
//! (`lb-user/tests/chaos.rs`: flows checked byte for byte while backends die, servers flip
//! MAINT/READY, lb reloads and DNS answers change) for N minutes on one data plane, with a
//! progress line every 30 s and a summary at the end: flows completed, failed visibly, stalled
//! and corrupt (both must be 0), and lb's fd and RSS drift. It fails as the chaos test fails.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cmd;

/// The data planes the chaos runs on (the test's `dataplane` argument).
pub const PLANES: [&str; 3] = ["sockmap", "sockmap-at-once", "splice"];

/// The `cargo test` arguments that run the soak (an ignored test of the chaos binary).
pub fn cargo_args() -> Vec<&'static str> {
    vec![
        "test",
        "--release",
        "-p",
        "lb-user",
        "--test",
        "chaos",
        "--",
        "--ignored",
        "--exact",
        "soak",
        "--nocapture",
    ]
}

pub fn soak(root: &Path, minutes: u64, dataplane: &str) -> Result<()> {
    if !PLANES.contains(&dataplane) {
        bail!(
            "soak: unknown data plane `{dataplane}`; one of: {}",
            PLANES.join(", ")
        );
    }
    if minutes == 0 {
        bail!("soak: --minutes must be at least 1");
    }
    let mut c = cmd::cargo(root);
    c.env("LB_SOAK_MINUTES", minutes.to_string())
        .env("LB_SOAK_DATAPLANE", dataplane)
        .args(cargo_args());
    cmd::run("soak", &mut c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_ignored_soak_test_of_the_chaos_binary() {
        let args = cargo_args().join(" ");
        assert_eq!(
            args,
            "test --release -p lb-user --test chaos -- --ignored --exact soak --nocapture"
        );
        let chaos = std::fs::read_to_string(cmd::workspace_root().join("lb-user/tests/chaos.rs"))
            .expect("lb-user/tests/chaos.rs");
        assert!(
            chaos.contains("\nfn soak() {"),
            "the chaos binary has no `soak` test"
        );
        assert!(chaos.contains("LB_SOAK_MINUTES") && chaos.contains("LB_SOAK_DATAPLANE"));
    }

    #[test]
    fn bad_options_are_refused_before_anything_runs() {
        let root = cmd::workspace_root();
        assert!(soak(&root, 1, "xdp")
            .unwrap_err()
            .to_string()
            .contains("unknown data plane"));
        assert!(soak(&root, 0, "splice")
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
    }
}
