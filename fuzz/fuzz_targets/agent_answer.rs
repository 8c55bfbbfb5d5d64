//! The agent check's answer parser (`health::agent::parse`) and its report, on any bytes as
//! the agent check reads them (the first line, invalid UTF-8 replaced), against a configured
//! weight taken from the first byte (1 to 256). Never a panic.
#![no_main]

use lb_user::health::agent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&w, rest)) = data.split_first() else {
        return;
    };
    let weight = u32::from(w) + 1;
    let end = rest
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(rest.len());
    let line = lb_fuzz::text(&rest[..end]);
    let a = agent::parse(&line, weight);
    if let Some(Ok(w)) = a.weight {
        assert!(w <= 256, "{line:?} with weight {weight} gave weight {w}");
    }
    let _ = a.report(None);
    let _ = a.report(Some("a warning"));
});
