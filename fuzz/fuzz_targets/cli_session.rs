//! A runtime API session at level admin on a fresh generation of `lb_fuzz::CONFIG`: every
//! input line (with its payload after a `<<`) runs through `Session::run_line` (parse, level check, the state writer, the
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
        let mut lines = data.split(|&b| b == b'\n');
        while let Some(line) = lines.next() {
            let text = lb_fuzz::text(line);
            let text = text.trim_end_matches(['\n', '\r']);
            // A line ending in `<<` takes the lines up to an empty one as its payload.
            let (cmd, payload) = match text.strip_suffix("<<") {
                Some(cmd) => {
                    let mut payload = String::new();
                    for l in lines.by_ref() {
                        let l = lb_fuzz::text(l);
                        if l.is_empty() {
                            break;
                        }
                        payload.push_str(&l);
                        payload.push('\n');
                    }
                    (cmd, Some(payload))
                }
                None => (text, None),
            };
            let _ = session.run_line(&gen, cmd, payload.as_deref()).await;
            if session.quit {
                break;
            }
        }
    });
});
