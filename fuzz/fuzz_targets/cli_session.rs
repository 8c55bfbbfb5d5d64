//! A runtime API session at level admin on a fresh generation of `lb_fuzz::CONFIG`: every
//! input line runs through `Session::run_line` (parse, level check, the state writer, the
//! answers), as `admin::session` runs what a client sends. A line must be answered, never
//! panic or hang.
#![no_main]

use lb_user::admin::cli::Session;
use lb_user::config::CliLevel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let gen = lb_fuzz::generation();
    let mut session = Session::new(CliLevel::Admin);
    lb_fuzz::block_on("run_line", async {
        for line in data.split(|&b| b == b'\n') {
            let text = lb_fuzz::text(line);
            let _ = session
                .run_line(&gen, text.trim_end_matches(['\n', '\r']))
                .await;
            if session.quit {
                break;
            }
        }
    });
});
