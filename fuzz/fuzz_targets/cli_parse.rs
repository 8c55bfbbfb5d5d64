//! The runtime API's command parser (`admin::cli::parse`), pure: any line, cut into commands
//! and words as a session cuts it, gives a command or HAProxy's error text.
#![no_main]

use lb_user::admin::cli;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = lb_fuzz::text(data);
    for command in line.split(';') {
        let words: Vec<&str> = command.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let _ = cli::level(&words);
        match cli::parse(&words) {
            Ok(_) => {}
            Err(e) => assert!(!e.is_empty(), "{words:?}: an error without text"),
        }
    }
});
