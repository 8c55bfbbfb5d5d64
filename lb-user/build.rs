//! Builds the eBPF program (`lb-ebpf`, nightly + bpf-linker) into `OUT_DIR`, where `lb` embeds it
//! with `include_bytes_aligned!`. `cargo xtask setup` installs what this needs.
//!
//! With `AYA_BUILD_SKIP=1` (aya-build's switch) no program is built and an empty object is
//! embedded instead: `lb` then builds anywhere, and its sockmap data plane reports at start that
//! the program is missing (`--dataplane auto` falls back to splice).
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf");
    // aya-build passes every line the nested cargo writes to stderr on as a `cargo:warning`,
    // so each build of lb printed ~40 "warning: lb-user@0.1.0: Compiling ..." lines. A quiet
    // nested cargo prints no progress; its errors, and rustc's diagnostics (which aya-build
    // reads from the JSON messages), still come through, so a failing eBPF build says why.
    // Setting it here only affects that child: this process is a build script, one thread.
    std::env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lb-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    for name in ["lb-ebpf", "lb-balance"] {
        let object = PathBuf::from(std::env::var("OUT_DIR")?).join(name);
        if !object.exists() {
            std::fs::write(&object, [])?;
        }
    }
    Ok(())
}
