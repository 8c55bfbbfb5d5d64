//! `show resolvers [<section>]`: each `resolvers` section's nameservers and their counters, in
//! HAProxy 2.6's text (`cli_io_handler_dump_resolvers_to_buffer`), which scripts parse.

use std::fmt::Write as _;

use crate::counters::ResolversCounters;

/// HAProxy's answer to a section name it does not know.
pub const NOT_FOUND: &str = "Can't find that resolvers section\n";

/// The dump of every section, or of the one named `only`.
pub fn show(sections: &[ResolversCounters], only: Option<&str>) -> Result<String, String> {
    if let Some(name) = only {
        if !sections.iter().any(|s| s.name == name) {
            return Err(NOT_FOUND.to_owned());
        }
    }
    if sections.is_empty() {
        return Ok("No resolvers found\n".to_owned());
    }
    let mut out = String::new();
    for s in sections.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
        let _ = writeln!(out, "Resolvers section {}", s.name);
        for (id, c) in &s.nameservers {
            let _ = writeln!(out, " nameserver {id}:");
            for (name, v) in c.lines() {
                // HAProxy's "  %-12s" layout: `name:` padded to 13 columns.
                let _ = writeln!(out, "  {:<13}{v}", format!("{name}:"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::NameserverCounters;

    #[test]
    fn haproxys_layout() {
        let s = ResolversCounters::build([("dns", vec!["ns1"]), ("default", vec![])], &[]);
        let c = &s[0].nameservers[0].1;
        for _ in 0..3 {
            NameserverCounters::inc(&c.sent);
        }
        NameserverCounters::inc(&c.valid);
        NameserverCounters::inc(&c.outdated);
        let want =
            "Resolvers section dns\n nameserver ns1:\n  sent:        3\n  snd_error:   0\n  \
                    valid:       1\n  update:      0\n  cname:       0\n  cname_error: 0\n  \
                    any_err:     0\n  nx:          0\n  timeout:     0\n  refused:     0\n  \
                    other:       0\n  invalid:     0\n  too_big:     0\n  truncated:   0\n  \
                    outdated:    1\n";
        assert_eq!(show(&s, Some("dns")).unwrap(), want);
        assert_eq!(
            show(&s, None).unwrap(),
            format!("{want}Resolvers section default\n")
        );
        assert_eq!(show(&s, Some("nope")), Err(NOT_FOUND.to_owned()));
        assert_eq!(show(&[], None).unwrap(), "No resolvers found\n");
    }
}
