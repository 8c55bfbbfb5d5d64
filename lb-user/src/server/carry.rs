//! What a server keeps across a reload. A reload builds the next generation's tables from the
//! new configuration and, server by server (matched by backend and server name), from the
//! previous generation's state: what was set at run time survives, what the configuration
//! says follows the configuration. The rules are HAProxy's for its server-state file
//! (`srv_state_srv_update`), applied in-process.

use std::sync::Arc;

use super::health::Health;
use super::{AddrOrigin, Origin, ServerEntry, ServerState};
use crate::config::Server;

/// The entry of `conf` in the next generation, given its entry `prev` in the previous one.
///
/// - A server whose address, port or hostname changed in the configuration is a new server:
///   it starts as HAProxy starts it, with fresh counters.
/// - Otherwise it keeps its counters (statistics continue, `cur` counts its flows of every
///   generation, ending its flows reaches old ones too), and:
///   - the admin state set at run time, unless the configuration's `disabled` changed;
///   - the operational state: UP/DOWN, NOLB, the check's rise/fall counter (clamped to the
///     new `rise`/`fall`), the agent's verdict, `disable health|agent`;
///   - the weight set at run time, if the configured weight did not change (HAProxy keeps
///     `srv_uweight` only when `srv_iweight` is the same), with a slow start in progress;
///   - the address from DNS, `set server addr` or the state file, with `MAINT (resolution)`;
///   - a `maxconn` set at run time (the agent's), if the configured one did not change;
///   - where `set server` sent the checks (`check-addr|check-port`, `agent-addr|agent-port`)
///     and the agent's `agent-send`, each while the configured one is the same;
///   - the name `set server B/S fqdn` gave it (it lives in the counters, which are kept only
///     while the configured name is the same: a new configured name is a new server, and the
///     run-time name is forgotten), with the address it resolved to.
pub fn carry_over(prev: &ServerEntry, conf: &Server) -> ServerEntry {
    let old = &prev.conf;
    if old.addr != conf.addr || old.fqdn != conf.fqdn {
        return ServerEntry::new(conf);
    }
    let p = prev.state;
    let mut st = ServerState::initial(conf);
    if p.admin_origin == Origin::Runtime && old.disabled == conf.disabled {
        st.admin = p.admin;
        st.admin_origin = Origin::Runtime;
    }
    if p.addr_origin != AddrOrigin::Config {
        st.addr = p.addr;
        st.addr_origin = p.addr_origin;
        st.resolution_maint = p.resolution_maint;
    }
    // What it inherits from the server it tracks, while it tracks the same one (the writer
    // then brings it up to date with that server's state in the new generation).
    if old.track.as_ref().map(|t| &t.name) == conf.track.as_ref().map(|t| &t.name) {
        st.track_up = p.track_up;
        st.tracked_stopping = p.tracked_stopping;
        st.via_maint = p.via_maint;
        st.via_drain = p.via_drain;
    }
    st.check_enabled = conf.health.check && (p.check_enabled || !old.health.check);
    st.agent_enabled = conf.health.agent.enabled && (p.agent_enabled || !old.health.agent.enabled);
    st.agent_up = !st.agent_enabled || p.agent_up;
    let (rise, fall) = (conf.health.rise.max(1), conf.health.fall.max(1));
    if st.in_maint() {
        // HAProxy: maintenance means DOWN with a zero counter; leaving it starts at `rise`.
        st.up = false;
        st.check_h = 0;
    } else {
        st.up = p.up && !p.in_maint();
        st.stopping = p.stopping && st.up;
        st.check_h = if old.health.check && st.check_enabled {
            let h = Health::at(rise, fall, p.check_h).counter();
            // The new rise/fall may put the counter on the other side: keep UP/DOWN as is.
            if st.up {
                h.max(rise)
            } else {
                h.min(rise - 1)
            }
        } else if st.up {
            rise
        } else {
            0
        };
        st.down_since = if st.up { None } else { p.down_since };
    }
    if p.weight_origin == Origin::Runtime && old.weight == conf.weight {
        st.user_weight = p.user_weight;
        st.weight = p.weight;
        st.weight_origin = Origin::Runtime;
    }
    if p.ramp_start.is_some() && st.up && conf.health.slowstart.is_some() {
        st.ramp_start = p.ramp_start;
        st.ramp_pct = p.ramp_pct;
        st.weight = p.weight.min(st.user_weight);
    }
    if p.maxconn != old.maxconn && old.maxconn == conf.maxconn && old.minconn == conf.minconn {
        st.maxconn = p.maxconn;
        st.minconn = p.minconn;
    }
    forget_runtime_checks(prev, conf);
    ServerEntry {
        conf: Arc::new(conf.clone()),
        counters: Arc::clone(&prev.counters),
        state: st,
        load: None,
    }
}

/// Drops what `set server` changed in the checks of `prev` where the configuration now says
/// otherwise (the counters that hold it go on with the next generation's server).
fn forget_runtime_checks(prev: &ServerEntry, conf: &Server) {
    let (old, c) = (&prev.conf.health, &prev.counters);
    if old.addr != conf.health.addr || prev.conf.check_port != conf.check_port {
        c.check_place.store(None);
    }
    let (a, b) = (&old.agent, &conf.health.agent);
    if a.addr != b.addr || a.port != b.port {
        c.agent_place.store(None);
    }
    if a.send != b.send {
        c.agent_send.store(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AdminState;
    use crate::table::testing::server;

    fn entry(conf: &Server) -> ServerEntry {
        ServerEntry::new(conf)
    }

    #[test]
    fn runtime_admin_state_and_weight_survive() {
        let conf = server("a", 1, 50);
        let mut prev = entry(&conf);
        prev.state.admin = AdminState::Maint;
        prev.state.admin_origin = Origin::Runtime;
        prev.state.up = false;
        prev.state.check_h = 0;
        prev.state.weight = 5;
        prev.state.user_weight = 5;
        prev.state.weight_origin = Origin::Runtime;
        let next = carry_over(&prev, &conf);
        assert_eq!(next.state.admin, AdminState::Maint);
        assert_eq!(next.state.weight, 5);
        assert!(Arc::ptr_eq(&next.counters, &prev.counters));
    }

    #[test]
    fn a_runtime_check_place_stays_until_the_configuration_moves_the_checks() {
        use crate::server::CheckPlace;
        let conf = server("a", 1, 50);
        let prev = entry(&conf);
        let moved = CheckPlace {
            addr: Some("127.0.0.2".parse().unwrap()),
            port: Some(9),
        };
        prev.counters.check_place.store(Some(Arc::new(moved)));
        prev.counters.agent_place.store(Some(Arc::new(moved)));
        let next = carry_over(&prev, &conf);
        assert_eq!(next.counters.check_place(&next.conf), moved);
        assert_eq!(next.counters.agent_place(&next.conf), moved);
        // The configuration's check port changes: its place wins; the agent's stays.
        let mut other = conf.clone();
        other.check_port = Some(8);
        let next = carry_over(&next, &other);
        assert_eq!(
            next.counters.check_place(&next.conf),
            CheckPlace {
                addr: None,
                port: Some(8)
            }
        );
        assert_eq!(next.counters.agent_place(&next.conf), moved);
        other.health.agent.port = Some(7);
        let next = carry_over(&next, &other);
        assert_eq!(next.counters.agent_place(&next.conf).port, Some(7));
    }

    #[test]
    fn a_runtime_name_stays_until_the_configuration_changes_the_name() {
        let mut conf = server("a", 1, 1);
        conf.fqdn = Some("a.example".to_owned());
        conf.resolvers = Some("dns".to_owned());
        let mut prev = entry(&conf);
        prev.counters
            .fqdn
            .store(Some(Arc::new("b.example".to_owned())));
        prev.state.addr = "192.0.2.98:80".parse().unwrap();
        prev.state.addr_origin = AddrOrigin::Dns;
        let next = carry_over(&prev, &conf);
        assert_eq!(next.counters.fqdn(&next.conf).as_deref(), Some("b.example"));
        assert_eq!(next.state.addr, prev.state.addr);
        let mut renamed = conf.clone();
        renamed.fqdn = Some("c.example".to_owned());
        let next = carry_over(&next, &renamed);
        assert_eq!(next.counters.fqdn(&next.conf).as_deref(), Some("c.example"));
        assert!(!next.counters.fqdn_set_at_runtime());
    }

    #[test]
    fn configuration_changes_win() {
        let conf = server("a", 1, 50);
        let mut prev = entry(&conf);
        prev.state.weight = 5;
        prev.state.user_weight = 5;
        prev.state.weight_origin = Origin::Runtime;
        let mut heavier = conf.clone();
        heavier.weight = 60;
        assert_eq!(carry_over(&prev, &heavier).state.weight, 60);
        // A new address: a new server, fresh counters.
        let mut moved = conf.clone();
        moved.addr = "192.0.2.200:80".parse().unwrap();
        prev.state.up = false;
        let next = carry_over(&prev, &moved);
        assert!(next.state.up);
        assert!(!Arc::ptr_eq(&next.counters, &prev.counters));
        // `disabled` added to the configuration: MAINT from the configuration.
        let mut disabled = conf.clone();
        disabled.disabled = true;
        let next = carry_over(&entry(&conf), &disabled);
        assert_eq!(next.state.admin, AdminState::Maint);
        assert_eq!(next.state.admin_origin, Origin::Config);
    }

    #[test]
    fn a_down_server_stays_down_and_its_counter_is_clamped() {
        let mut conf = server("a", 1, 1);
        conf.health.check = true;
        conf.health.rise = 3;
        conf.health.fall = 3;
        let mut prev = entry(&conf);
        prev.state.up = false;
        prev.state.check_h = 2; // DOWN 2/3
        let mut next_conf = conf.clone();
        next_conf.health.rise = 2;
        let next = carry_over(&prev, &next_conf);
        assert!(!next.state.up);
        assert_eq!(next.state.check_h, 1, "still DOWN, one success from UP");
        // UP servers stay UP with at least `rise`.
        prev.state.up = true;
        prev.state.check_h = 5;
        let next = carry_over(&prev, &next_conf);
        assert!(next.state.up);
        assert_eq!(next.state.check_h, 4, "clamped to rise + fall - 1");
    }

    #[test]
    fn dns_addresses_survive_config_addresses_do_not() {
        let conf = server("a", 1, 1);
        let mut prev = entry(&conf);
        prev.state.addr = "192.0.2.99:80".parse().unwrap();
        prev.state.addr_origin = AddrOrigin::Dns;
        assert_eq!(carry_over(&prev, &conf).state.addr, prev.state.addr);
        prev.state.addr_origin = AddrOrigin::Config;
        assert_eq!(carry_over(&prev, &conf).state.addr, conf.addr);
    }
}
