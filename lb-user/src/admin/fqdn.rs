//! `set server B/S fqdn NAME`, HAProxy 2.6's answers (`cli_parse_set_server`,
//! `srv_update_fqdn`): the checks are [`crate::state::fqdn::check`]'s, the change goes
//! through the state writer.

use std::sync::Arc;

use crate::generation::Generation;
use crate::state::fqdn::{check, FqdnRefusal, FqdnUpdate};
use crate::state::{self, By, Change};

/// Who HAProxy names as the updater.
const BY: &str = " by 'stats socket command'\n";

/// Runs `set server B/S fqdn NAME` on `backend`'s `server` (`name` empty: none given).
pub fn set(
    gen: &Arc<Generation>,
    backend: usize,
    server: usize,
    name: &str,
) -> Result<String, String> {
    let Some(entry) = gen.backends[backend]
        .snapshot()
        .servers
        .get(server)
        .cloned()
    else {
        return Err("No such server.\n".to_owned());
    };
    let who = format!("{}/{}", gen.config.backends[backend].name, entry.conf.name);
    let current = entry.counters.fqdn(&entry.conf);
    // HAProxy prints a missing name with C's `%s`: `(null)`.
    let changed = || {
        format!(
            "{who} changed its FQDN from {} to {name}{BY}",
            current.as_deref().unwrap_or("(null)")
        )
    };
    match check(name, &entry.conf, current.as_deref()) {
        Ok(FqdnUpdate::Same) => Ok(format!("no need to change the FDQN{BY}")),
        Ok(FqdnUpdate::Alike) => Ok(changed()),
        Ok(FqdnUpdate::New) => {
            match state::apply(
                gen,
                backend,
                server,
                Change::Fqdn(name.to_owned()),
                &By::Cli,
            ) {
                Ok(_) => Ok(changed()),
                Err(e) => Err(format!("{e}\n")),
            }
        }
        Err(FqdnRefusal::Invalid) => Ok(format!("invalid fqdn '{name}'{BY}")),
        Err(FqdnRefusal::Unusable) => Ok(format!("could not update {who} FQDN{BY}")),
        Err(refusal) => Err(format!("{refusal}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::cli::{parse, Command, ServerOp};

    fn gen() -> Arc<Generation> {
        let text = "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             backend be\n  server s1 localhost:80 resolvers dns\n  server s2 127.0.0.1:81\n  \
             server s3 127.0.0.1:82 resolvers dns\n  server s4 localhost:83\n  \
             server-template pg 1 _pg._tcp.db.test resolvers dns\n";
        let cfg = crate::config::load_str("t.cfg", text).expect("config");
        Generation::standalone(Arc::new(cfg))
    }

    fn name(gen: &Generation, s: usize) -> Option<String> {
        let e = &gen.backends[0].snapshot().servers[s];
        e.counters.fqdn(&e.conf)
    }

    #[test]
    fn the_words_parse_to_fqdn() {
        let p = |l: &str| parse(&l.split_whitespace().collect::<Vec<_>>());
        let op = |n: &str| {
            let target = crate::admin::cli::ServerRef {
                backend: "be".into(),
                server: "s1".into(),
            };
            Ok(Command::SetServer(target, ServerOp::Fqdn(n.into())))
        };
        assert_eq!(p("set server be/s1 fqdn b.example"), op("b.example"));
        assert_eq!(p("set server be/s1 fqdn b.example more"), op("b.example"));
        // Missing: answered when run, after the level and the server (HAProxy's order).
        assert_eq!(p("set server be/s1 fqdn"), op(""));
        assert!(p("set server be/s1 frobnicate")
            .unwrap_err()
            .contains("check-port | fqdn | health"));
    }

    #[test]
    fn answers_are_haproxys() {
        let g = gen();
        assert_eq!(
            set(&g, 0, 0, ""),
            Err("set server <b>/<s> fqdn requires a FQDN.\n".to_owned())
        );
        for s in [1, 3] {
            assert_eq!(
                set(&g, 0, s, "b.example"),
                Err(
                    "set server <b>/<s> fqdn failed because no resolution is configured.\n"
                        .to_owned()
                )
            );
        }
        assert_eq!(
            set(&g, 0, 4, "b.example"),
            Err(
                "set server <b>/<s> fqdn failed because SRV resolution is configured.\n".to_owned()
            )
        );
        assert_eq!(
            set(&g, 0, 0, "localhost"),
            Ok("no need to change the FDQN by 'stats socket command'\n".to_owned())
        );
        assert_eq!(
            set(&g, 0, 0, "b!x"),
            Ok("invalid fqdn 'b!x' by 'stats socket command'\n".to_owned())
        );
        let long = "a".repeat(256);
        assert_eq!(
            set(&g, 0, 0, &long),
            Ok(format!("invalid fqdn '{long}' by 'stats socket command'\n"))
        );
        assert_eq!(
            set(&g, 0, 0, "a..b"),
            Ok("could not update be/s1 FQDN by 'stats socket command'\n".to_owned())
        );
        assert_eq!(name(&g, 0).as_deref(), Some("localhost"));
        // Another case of the same name: answered as a change, the name stays.
        assert_eq!(
            set(&g, 0, 0, "LocalHost"),
            Ok(
                "be/s1 changed its FQDN from localhost to LocalHost by 'stats socket command'\n"
                    .to_owned()
            )
        );
        assert_eq!(name(&g, 0).as_deref(), Some("localhost"));
        let before = g.backends[0].snapshot().servers[0].state;
        assert_eq!(
            set(&g, 0, 0, "b.example"),
            Ok(
                "be/s1 changed its FQDN from localhost to b.example by 'stats socket command'\n"
                    .to_owned()
            )
        );
        assert_eq!(name(&g, 0).as_deref(), Some("b.example"));
        // The address and the state stay until the new name resolves.
        assert_eq!(g.backends[0].snapshot().servers[0].state, before);
        assert_eq!(
            set(&g, 0, 0, "b.example"),
            Ok("no need to change the FDQN by 'stats socket command'\n".to_owned())
        );
        // A server written with an address takes a name (C's "(null)" for none).
        assert_eq!(
            set(&g, 0, 2, "c.example"),
            Ok(
                "be/s3 changed its FQDN from (null) to c.example by 'stats socket command'\n"
                    .to_owned()
            )
        );
        assert_eq!(name(&g, 2).as_deref(), Some("c.example"));
        // Back to the configured name: no run-time name any more.
        set(&g, 0, 0, "localhost").unwrap();
        let e = &g.backends[0].snapshot().servers[0];
        assert!(!e.counters.fqdn_set_at_runtime());
    }

    #[test]
    fn the_state_file_prints_and_restores_a_runtime_name() {
        let g = gen();
        set(&g, 0, 0, "b.example").unwrap();
        set(&g, 0, 2, "c.example").unwrap();
        let out = crate::state::file::render(&g, Some("be"), 0, 0);
        let fields = |srv: &str| -> Vec<String> {
            let line = out
                .lines()
                .find(|l| l.split(' ').nth(3) == Some(srv))
                .unwrap_or_else(|| panic!("{srv} in {out}"));
            line.split(' ').map(str::to_owned).collect()
        };
        // srv_admin_state has HAProxy's "FQDN set from the stats socket" bit (0x40).
        let s1 = fields("s1");
        assert_eq!((s1[6].as_str(), s1[17].as_str()), ("64", "b.example"));
        assert_eq!(fields("s3")[17], "c.example");
        assert_eq!(fields("s2")[6..=6], ["0"]);
        assert_eq!(fields("s2")[17], "-");
        assert_eq!(fields("s4")[17], "localhost");

        // A new process reading it: the run-time name of a server configured with a name
        // comes back (HAProxy's `srv_state_srv_update`), not one of a server written with an
        // address, nor one without the bit.
        let fresh = gen();
        let (lines, problems) = crate::state::file::parse(&out);
        assert!(problems.is_empty(), "{problems:?}");
        for l in &lines {
            let s = fresh.backends[0].server_index(&l.srv_name).unwrap();
            crate::state::file::apply_line(&fresh, 0, s, l);
        }
        assert_eq!(name(&fresh, 0).as_deref(), Some("b.example"));
        assert_eq!(name(&fresh, 2), None);
        let unflagged = out.replace(" 64 ", " 0 ");
        let fresh = gen();
        for l in &crate::state::file::parse(&unflagged).0 {
            let s = fresh.backends[0].server_index(&l.srv_name).unwrap();
            crate::state::file::apply_line(&fresh, 0, s, l);
        }
        assert_eq!(name(&fresh, 0).as_deref(), Some("localhost"));
    }
}
