//! The runtime API's `help`: every command lb answers, in HAProxy 2.6's words, with the level
//! it needs; also what an unknown command gets, filtered by its first word.

use std::fmt::Write as _;

use crate::config::CliLevel;

/// A command's usage, its help line and the level it needs.
pub(super) type Usage = (&'static str, &'static str, CliLevel);

/// Listed by `help`, in HAProxy's wording.
const COMMANDS: &[Usage] = &[
    (
        "disable server (DEPRECATED)",
        "disable a server for maintenance (use 'set server' instead)",
        CliLevel::Admin,
    ),
    ("disable agent", "disable agent checks", CliLevel::Admin),
    (
        "disable frontend <frontend>",
        "temporarily disable specific frontend",
        CliLevel::Admin,
    ),
    ("disable health", "disable health checks", CliLevel::Admin),
    ("enable agent", "enable agent checks", CliLevel::Admin),
    (
        "enable frontend <frontend>",
        "re-enable specific frontend",
        CliLevel::Admin,
    ),
    ("enable health", "enable health checks", CliLevel::Admin),
    (
        "enable server  (DEPRECATED)",
        "enable a disabled server (use 'set server' instead)",
        CliLevel::Admin,
    ),
    (
        "get weight <bk>/<srv>",
        "report a server's current weight",
        CliLevel::User,
    ),
    (
        "operator",
        "lower the level of the current CLI session to operator",
        CliLevel::User,
    ),
    (
        "set maxconn frontend <frontend> <value>",
        "change a frontend's maxconn setting",
        CliLevel::Admin,
    ),
    (
        "set maxconn global <value>",
        "change the per-process maxconn setting",
        CliLevel::Admin,
    ),
    (
        "set maxconn server <bk>/<srv>",
        "change a server's maxconn setting",
        CliLevel::Admin,
    ),
    (
        "set rate-limit <setting> <value>",
        "change a rate limiting value",
        CliLevel::Admin,
    ),
    (
        "set timeout [cli] <delay>",
        "change a timeout setting",
        CliLevel::User,
    ),
    (
        "set server <bk>/<srv> [opts]",
        "change a server's state, weight, address or ssl",
        CliLevel::Admin,
    ),
    (
        "set weight <bk>/<srv>  (DEPRECATED)",
        "change a server's weight (use 'set server' instead)",
        CliLevel::Admin,
    ),
    (
        "show backend",
        "list backends in the current running config",
        CliLevel::User,
    ),
    (
        "show cli level",
        "display the level of the current CLI session",
        CliLevel::User,
    ),
    (
        "show env [var]",
        "dump environment variables known to the process",
        CliLevel::Operator,
    ),
    (
        "show info [desc|json|typed|float]*",
        "report information about the running process",
        CliLevel::User,
    ),
    (
        "show resolvers [id]",
        "dumps counters from all resolvers section and associated name servers",
        CliLevel::User,
    ),
    (
        "show servers state [<backend>]",
        "dump volatile server information (all or for a single backend)",
        CliLevel::User,
    ),
    (
        "clear counters [all]",
        "clear max statistics counters (or all counters)",
        CliLevel::Operator,
    ),
    (
        "clear table <table> [<filter>]*",
        "remove an entry from a table (filter: data/key)",
        CliLevel::Operator,
    ),
    (
        "set table <table> key <k> [data.* <v>]*",
        "update or create a table entry's data",
        CliLevel::Operator,
    ),
    (
        "show table <table> [<filter>]*",
        "report table usage stats or dump this table's contents (filter: data/key)",
        CliLevel::User,
    ),
    (
        "add acl [@<ver>] <acl> <pattern>",
        "add an acl entry",
        CliLevel::User,
    ),
    (
        "clear acl [@<ver>] <acl>",
        "clear the contents of this acl",
        CliLevel::User,
    ),
    (
        "del acl <acl> [<key>|#<ref>]",
        "delete acl entries matching <key>",
        CliLevel::User,
    ),
    (
        "get acl <acl> <value>",
        "report the patterns matching a sample for an ACL",
        CliLevel::User,
    ),
    (
        "show acl [@<ver>] <acl>]",
        "report available acls or dump an acl's contents",
        CliLevel::User,
    ),
    (
        "add map [@<ver>] <map> <key> <val>",
        "add a map entry",
        CliLevel::User,
    ),
    (
        "clear map [@<ver>] <map>",
        "clear the contents of this map",
        CliLevel::User,
    ),
    (
        "del map <map> [<key>|#<ref>]",
        "delete map entries matching <key>",
        CliLevel::User,
    ),
    (
        "get map <acl> <value>",
        "report the keys and values matching a sample for a map",
        CliLevel::User,
    ),
    (
        "set map <map> [<key>|#<ref>] <value>",
        "modify a map entry",
        CliLevel::User,
    ),
    (
        "show map [@ver] [map]",
        "report available maps or dump a map's contents",
        CliLevel::User,
    ),
    (
        "show sess [id]",
        "report the list of current sessions or dump this exact session",
        CliLevel::Operator,
    ),
    (
        "show stat [desc|json|no-maint|typed|up]*",
        "report counters for each proxy and server",
        CliLevel::User,
    ),
    (
        "show version",
        "show version of the current process",
        CliLevel::User,
    ),
    (
        "shutdown frontend <frontend>",
        "stop a specific frontend",
        CliLevel::Admin,
    ),
    (
        "shutdown session [id]",
        "kill a specific session",
        CliLevel::Admin,
    ),
    (
        "shutdown sessions server <bk>/<srv>",
        "kill sessions on a server",
        CliLevel::Admin,
    ),
    (
        "user",
        "lower the level of the current CLI session to user",
        CliLevel::User,
    ),
    (
        "help [<command>]",
        "list matching or all commands",
        CliLevel::User,
    ),
    (
        "prompt",
        "toggle interactive mode with prompt",
        CliLevel::User,
    ),
    ("quit", "disconnect", CliLevel::User),
];

/// The commands a session at `level` may run (those starting with `filter` when some do, under
/// HAProxy's "Unknown command" line).
pub(super) fn help(level: CliLevel, filter: Option<&str>) -> String {
    usage(COMMANDS, level, filter)
}

/// [`help`] over another list of commands (the master CLI's).
pub(super) fn usage(commands: &[Usage], level: CliLevel, filter: Option<&str>) -> String {
    let mut s = String::new();
    let matching: Vec<_> = commands
        .iter()
        .filter(|(_, _, l)| *l <= level)
        .filter(|(u, _, _)| filter.is_none_or(|f| u.starts_with(f)))
        .collect();
    if filter.is_some() && !matching.is_empty() {
        s.push_str("Unknown command, but maybe one of the following ones is a better match:\n");
    } else {
        s.push_str("The following commands are valid at this level:\n");
    }
    let list = if matching.is_empty() {
        commands.iter().filter(|(_, _, l)| *l <= level).collect()
    } else {
        matching
    };
    for (u, h, _) in list {
        let _ = writeln!(s, "  {u:<40}: {h}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_respects_levels() {
        let user = help(CliLevel::User, None);
        assert!(user.contains("show stat"));
        assert!(!user.contains("set server"));
        let admin = help(CliLevel::Admin, None);
        assert!(admin.contains("set server <bk>/<srv>"));
        assert!(help(CliLevel::Admin, Some("show")).starts_with("Unknown command"));
        assert!(admin.contains(
            "  disable frontend <frontend>             : temporarily disable specific frontend\n"
        ));
        assert!(admin
            .contains("  enable frontend <frontend>              : re-enable specific frontend\n"));
        assert!(admin
            .contains("  shutdown frontend <frontend>            : stop a specific frontend\n"));
        assert!(!help(CliLevel::Operator, None).contains("frontend <frontend>"));
    }
}
