//! Which names the resolvers of a generation follow, and for which servers: one resolution
//! per (resolvers section, name), as HAProxy shares a resolution between the servers of one
//! hostname (and one per backend for `server-template` servers, which spread one answer). A
//! server's name is the one it follows now (`ServerCounters::fqdn`: the configured one, or
//! the one `set server B/S fqdn` gave it), read here each time: [`supervise`] starts a
//! resolution when a server comes to follow a new name and stops one nobody follows any more;
//! each resolution reads its servers ([`members`]) at each answer.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::generation::Generation;
use crate::table::name_key;

/// One resolution's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    /// Index of the `resolvers` section in `config.global.resolvers`.
    pub section: usize,
    /// The name, as DNS compares it ([`name_key`]).
    pub name: String,
    /// `server-template` servers resolve within their backend (its index).
    pub template: Option<usize>,
    /// An SRV name (a configured name starting with `_`).
    pub srv: bool,
}

/// One server that follows a name: its backend and index in the generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Member {
    pub backend: usize,
    pub server: usize,
    /// Made by a `server-template`: gets an address of its own.
    pub template: bool,
    /// `resolve-opts ignore-weight`: an SRV record's weight is not its weight.
    pub ignore_weight: bool,
}

/// What starting a resolution needs besides its key: the name as its first server writes
/// it, and that server's `resolve-prefer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Start {
    pub name: String,
    pub prefer_v4: bool,
}

/// Every server of `gen` that follows a name with a `resolvers` section (only those of
/// `only`'s resolution, when given), with its key and written name, in configuration order.
fn following(gen: &Generation, only: Option<&Key>) -> Vec<(Key, String, Member, bool)> {
    let config = &gen.config;
    let mut out = Vec::new();
    for (bi, table) in gen.backends.iter().enumerate() {
        for (si, e) in table.snapshot().servers.iter().enumerate() {
            let srv = &e.conf;
            let Some(rname) = &srv.resolvers else {
                continue;
            };
            let Some(section) = config
                .global
                .resolvers
                .iter()
                .position(|r| &r.name == rname)
            else {
                continue; // the config checked it exists
            };
            let template = srv.template.then_some(bi);
            if only.is_some_and(|k| k.section != section || k.template != template) {
                continue;
            }
            let runtime = e.counters.fqdn.load();
            let Some(fqdn) = runtime.as_deref().or(srv.fqdn.as_ref()) else {
                continue; // written with an address: nothing to resolve until it gets a name
            };
            // Compared without copying: this runs at each answer of each resolution.
            let bare = fqdn.strip_suffix('.').unwrap_or(fqdn);
            if only.is_some_and(|k| !k.name.eq_ignore_ascii_case(bare)) {
                continue;
            }
            let key = Key {
                section,
                name: name_key(fqdn),
                template,
                srv: crate::state::fqdn::is_srv(srv),
            };
            let member = Member {
                backend: bi,
                server: si,
                template: srv.template,
                ignore_weight: srv.resolve_ignore_weight,
            };
            out.push((key, fqdn.clone(), member, srv.resolve_prefer_ipv4));
        }
    }
    out
}

/// The resolutions `gen` needs now.
pub(super) fn wanted(gen: &Generation) -> BTreeMap<Key, Start> {
    let mut out = BTreeMap::new();
    for (key, name, _, prefer_v4) in following(gen, None) {
        out.entry(key).or_insert(Start { name, prefer_v4 });
    }
    out
}

/// The servers that follow `key` now, in configuration order.
pub(super) fn members(gen: &Generation, key: &Key) -> Vec<Member> {
    following(gen, Some(key))
        .into_iter()
        .filter(|(k, ..)| k == key)
        .map(|(_, _, m, _)| m)
        .collect()
}

/// Runs the resolutions `gen` needs, on this (the DNS) thread: those of the configuration at
/// once, then, each time the writer says a server follows another name, those of new names
/// (and stops those nobody follows any more). Until `stopped`'s sender is dropped.
pub(super) async fn supervise(gen: Arc<Generation>, mut stopped: tokio::sync::watch::Receiver<()>) {
    let mut running: BTreeMap<Key, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted = wanted(&gen);
        running.retain(|key, task| {
            let keep = wanted.contains_key(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, start) in wanted {
            if let Entry::Vacant(slot) = running.entry(key) {
                if let Some(r) = super::Resolution::new(&gen, slot.key().clone(), start) {
                    slot.insert(tokio::task::spawn_local(super::follow(r)));
                }
            }
        }
        tokio::select! {
            () = gen.dns_wake.notified() => {}
            changed = stopped.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for task in running.values() {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{self, By, Change};

    #[test]
    fn a_new_name_gets_its_own_resolution_and_leaves_the_old_one() {
        let text = "resolvers dns\n  nameserver ns1 127.0.0.1:5353\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             backend be\n  server s1 localhost:80 resolvers dns\n  \
             server s2 LocalHost.:81 resolvers dns\n  server s3 127.0.0.1:82 resolvers dns\n  \
             server s4 localhost:83\n";
        let cfg = crate::config::load_str("t.cfg", text).expect("config");
        let gen = Generation::standalone(Arc::new(cfg));
        let key = |name: &str| Key {
            section: 0,
            name: name.to_owned(),
            template: None,
            srv: false,
        };
        let servers =
            |k: &Key| -> Vec<usize> { members(&gen, k).iter().map(|m| m.server).collect() };
        // One resolution for both spellings of the name; none for the address nor for the
        // server without `resolvers`.
        let names: Vec<String> = wanted(&gen).into_keys().map(|k| k.name).collect();
        assert_eq!(names, ["localhost"]);
        assert_eq!(servers(&key("localhost")), [0, 1]);
        state::apply(&gen, 0, 1, Change::Fqdn("b.example".into()), &By::Cli).unwrap();
        state::apply(&gen, 0, 2, Change::Fqdn("B.example".into()), &By::Cli).unwrap();
        let wanted = wanted(&gen);
        let names: Vec<&str> = wanted.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["b.example", "localhost"]);
        // The name as its first server writes it is what is asked.
        assert_eq!(wanted[&key("b.example")].name, "b.example");
        assert_eq!(servers(&key("localhost")), [0]);
        assert_eq!(servers(&key("b.example")), [1, 2]);
        // An answer for the name a server left is refused by the writer.
        let before = gen.backends[0].snapshot().servers[0].state;
        assert_eq!(
            state::apply_for_name(
                &gen,
                (0, 1),
                "b.example",
                Change::Resolved("127.0.0.9".parse().unwrap(), None, None),
                &By::DnsCache,
            )
            .map(|a| a.after.addr.ip().to_string()),
            Ok("127.0.0.9".to_owned())
        );
        let old = state::apply_for_name(
            &gen,
            (0, 0),
            "b.example",
            Change::Resolution(Some("DNS NX status")),
            &By::DnsCache,
        );
        assert_eq!(old, Err(state::StateError::NameChanged));
        assert_eq!(gen.backends[0].snapshot().servers[0].state, before);
        let old = state::apply_for_name(
            &gen,
            (0, 1),
            "localhost",
            Change::Resolution(Some("DNS NX status")),
            &By::DnsCache,
        );
        assert_eq!(old, Err(state::StateError::NameChanged));
    }
}
