//! `lb -c -f FILE`: every shipped example is valid, and realistic mistakes are refused with
//! `FILE:LINE: message` naming the right line and the problem. Message wording belongs to the
//! config code: each case asserts the line number and one of a few distinctive words only.

mod common;

use std::path::PathBuf;

use common::{lb_check, lb_check_file, TempCfg};

/// A broken config. Its text marks the offending line with a leading `!`; a line where reporting
/// the error is also right (e.g. the section that holds the mistake) may be marked `?`. Markers
/// are replaced by a space.
struct Case {
    name: &'static str,
    /// At least one of these (case-insensitive) must be in the error line.
    words: &'static [&'static str],
    text: &'static str,
}

impl Case {
    /// The config text and the 1-based numbers of the acceptable lines (the `!` one first).
    fn render(&self) -> (String, Vec<usize>) {
        let text = self.text.strip_prefix('\n').unwrap_or(self.text);
        let mut lines = vec![0];
        let mut out = String::new();
        for (i, l) in text.lines().enumerate() {
            if let Some(rest) = l.strip_prefix('!') {
                assert_eq!(lines[0], 0, "case {}: more than one `!` line", self.name);
                lines[0] = i + 1;
                out.push(' ');
                out.push_str(rest);
            } else if let Some(rest) = l.strip_prefix('?') {
                lines.push(i + 1);
                out.push(' ');
                out.push_str(rest);
            } else {
                out.push_str(l);
            }
            out.push('\n');
        }
        assert_ne!(lines[0], 0, "case {}: no `!` line", self.name);
        (out, lines)
    }
}

/// The valid config every case breaks in one place.
const VALID: &str = "
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    balance roundrobin
    server s1 127.0.0.1:9000
";

const CASES: &[Case] = &[
    Case {
        name: "log-format with an unknown variable",
        words: &["log-format", "foo"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
!   log-format \"%ci %foo\"
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "log-format with unescaped spaces",
        words: &["escape spaces"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
!   log-format %ci %b
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "log-format with an HTTP variable",
        words: &["reserved for HTTP mode"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
!   log-format \"%ci %r\"
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "bad time unit",
        words: &["timeout", "10x"],
        text: "
global
    maxconn 100
defaults
    mode tcp
!   timeout connect 10x
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "timeout without value",
        words: &["timeout", "connect"],
        text: "
defaults
    mode tcp
!   timeout connect
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "weight 300 (max 256)",
        words: &["weight", "300"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    balance roundrobin
    server s1 127.0.0.1:9000 weight 10
!   server s2 127.0.0.1:9001 weight 300
",
    },
    Case {
        name: "unknown keyword in backend",
        words: &["foobar"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   foobar 1
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "default_backend names no backend",
        words: &["nosuch"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
?frontend fe
    bind 127.0.0.1:8080
!   default_backend nosuch
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "bind without port",
        words: &["port"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
!   bind 127.0.0.1
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "server without address",
        words: &["address", "addr"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   server s1
",
    },
    Case {
        name: "server port out of range",
        words: &["99999", "port"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   server s1 127.0.0.1:99999
",
    },
    Case {
        name: "duplicate backend name",
        words: &["duplicate", "same name", "already", "twice"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
!backend app
    server s2 127.0.0.1:9001
",
    },
    Case {
        name: "duplicate server name",
        words: &["duplicate", "same name", "already", "twice"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
!   server s1 127.0.0.1:9001
",
    },
    Case {
        name: "unknown balance algorithm",
        words: &["fastest", "balance"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   balance fastest
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "mode http frontend (not stats)",
        words: &["http"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
?frontend fe
!   mode http
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "unknown mode",
        words: &["udp", "mode"],
        text: "
defaults
!   mode udp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "retries -1",
        words: &["retries"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
!   retries -1
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "global maxconn abc",
        words: &["maxconn", "abc"],
        text: "
global
!   maxconn abc
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "server maxconn abc",
        words: &["maxconn", "abc"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   server s1 127.0.0.1:9000 maxconn abc
",
    },
    Case {
        name: "nbthread 0",
        words: &["nbthread"],
        text: "
global
    maxconn 100
!   nbthread 0
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "bind in a backend",
        words: &["bind"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   bind 127.0.0.1:8081
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "server in a frontend",
        words: &["server"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
!   server s9 127.0.0.1:9009
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "unterminated quote",
        words: &["quot", "unterminated"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
!   bind \"127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "keyword outside any section",
        words: &["section", "maxconn"],
        text: "
!maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "misspelt section name",
        words: &["frontned"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
backend app
    server s1 127.0.0.1:9000
!frontned fe
",
    },
    Case {
        name: "ssl on bind (tcp only, no TLS)",
        words: &["ssl"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
!   bind 127.0.0.1:8443 ssl crt /etc/ssl/site.pem
    default_backend app
backend app
    server s1 127.0.0.1:9000
",
    },
    Case {
        name: "unknown option",
        words: &["frobnicate"],
        text: "
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
!   option frobnicate
    server s1 127.0.0.1:9000
",
    },
];

/// The stderr line of `FILE:LINE:` for this file and line, if any.
fn error_line<'a>(stderr: &'a str, cfg: &TempCfg, line: usize) -> Option<&'a str> {
    let tag = format!("{}:{line}:", cfg.file_name());
    stderr.lines().find(|l| l.contains(&tag))
}

#[test]
fn valid_base_config_passes() {
    let (out, _cfg) = lb_check(&[VALID]);
    assert!(
        out.status.success(),
        "lb -c refused a valid config:\n{}",
        out.stderr
    );
}

#[test]
fn broken_configs_are_refused_with_file_line_and_reason() {
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for case in CASES {
        let (text, lines) = case.render();
        let (out, cfgs) = lb_check(&[&text]);
        let cfg = &cfgs[0];
        if out.status.success() {
            failures.push(format!(
                "[{}] accepted (exit 0); stderr:\n{}",
                case.name, out.stderr
            ));
            continue;
        }
        let Some(err) = lines.iter().find_map(|&l| error_line(&out.stderr, cfg, l)) else {
            failures.push(format!(
                "[{}] no `{}:LINE:` line for line {lines:?}; stderr:\n{}",
                case.name,
                cfg.file_name(),
                out.stderr
            ));
            continue;
        };
        let lower = err.to_lowercase();
        if !case.words.iter().any(|w| lower.contains(&w.to_lowercase())) {
            failures.push(format!(
                "[{}] error does not name the problem (want one of {:?}): {err}",
                case.name, case.words
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken configs not reported right:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = "\
defaults
    mode tcp
    timeout connect 10x
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000 weight 300
";
    let (out, cfgs) = lb_check(&[text]);
    assert!(!out.status.success());
    for line in [3, 10] {
        assert!(
            error_line(&out.stderr, &cfgs[0], line).is_some(),
            "no error for line {line}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn error_in_second_file_names_that_file() {
    let first = "\
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
";
    let second = "\
backend app
    balance roundrobin
    server s1 127.0.0.1:9000 weight 300
";
    let (out, cfgs) = lb_check(&[first, second]);
    assert!(
        !out.status.success(),
        "weight 300 accepted:\n{}",
        out.stderr
    );
    let err = error_line(&out.stderr, &cfgs[1], 3)
        .unwrap_or_else(|| panic!("no `{}:3:` line:\n{}", cfgs[1].file_name(), out.stderr));
    assert!(err.contains("weight"), "{err}");
    // And the two files together form one valid config once fixed.
    let fixed = second.replace("weight 300", "weight 3");
    let (out, _c) = lb_check(&[first, &fixed]);
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn warnings_do_not_fail_the_check() {
    // No timeouts at all: HAProxy (and lb, per its config model) warns but accepts.
    let text = "\
defaults
    mode tcp
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    server s1 127.0.0.1:9000
";
    let (out, cfgs) = lb_check(&[text]);
    assert!(
        out.status.success(),
        "warnings must not fail `lb -c`:\n{}",
        out.stderr
    );
    let tag = format!("{}:", cfgs[0].file_name());
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert!(
        warnings.iter().any(|l| l.contains("timeout")),
        "no warning about the missing timeouts:\n{}",
        out.stderr
    );
    for w in warnings {
        assert!(
            w.contains(&tag) && w.contains(": warning: "),
            "warning not in `FILE:LINE: warning: ...` form: {w}"
        );
    }
}

#[test]
fn every_example_passes_check() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the issue expects example configs there)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {}/*.cfg", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let out = lb_check_file(f);
            (!out.status.success()).then(|| format!("{}:\n{}", f.display(), out.stderr))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "examples refused by lb -c:\n{}",
        failed.join("\n")
    );
}
