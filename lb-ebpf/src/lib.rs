//! Host-side stub so that `lb-user` can name this crate as a build dependency (which makes cargo
//! rebuild the daemon when the programs change), and what the programs share. The programs are
//! `src/main.rs` (the data plane) and `src/balance.rs` (the thread balancer).
#![no_std]

/// What every program object of this crate ends with: the panic handler the BPF target needs
/// (no program can panic: the verifier rejects a path to it), the license the kernel reads (GPL:
/// the helpers the programs call are GPL-only), and an empty `main` for host builds
/// (`cargo clippy --workspace`), as aya's own test programs have.
#[macro_export]
macro_rules! program_boilerplate {
    () => {
        #[cfg(target_arch = "bpf")]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 4] = *b"GPL\0";

        #[cfg(not(target_arch = "bpf"))]
        fn main() {}
    };
}
