//! The configuration pipeline (tokenizer, sections, keywords, cross-checks) on any text: it
//! must give a configuration or errors naming where, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `config::load` reads a file's bytes the same way: invalid UTF-8 is replaced (and
    // reported), the rest is parsed.
    let text = String::from_utf8_lossy(data);
    match lb_user::config::load_str("fuzz.cfg", &text) {
        Ok(config) => {
            for w in &config.warnings {
                let _ = w.to_string();
            }
        }
        Err(errors) => {
            assert!(
                !errors.0.is_empty(),
                "a configuration was rejected without an error"
            );
            let _ = errors.to_string();
        }
    }
});
