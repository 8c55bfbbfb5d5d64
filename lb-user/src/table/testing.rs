//! Configuration builders for the table and balancer tests.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Backend, Balance, HashType, Keepalive, Loc, Server, Timeouts};

fn loc(line: u32) -> Loc {
    Loc {
        file: Arc::new(PathBuf::from("test.cfg")),
        line,
    }
}

/// A server `name` with config `id` and `weight`, no limits, address 192.0.2.id:80.
pub(crate) fn server(name: &str, id: u32, weight: u32) -> Server {
    Server {
        name: name.to_owned(),
        loc: loc(10 + id),
        id,
        addr: SocketAddr::from((Ipv4Addr::new(192, 0, 2, id as u8), 80)),
        port_offset: None,
        fqdn: None,
        weight,
        backup: false,
        maxconn: 0,
        minconn: 0,
        maxqueue: 0,
        disabled: false,
        check_port: None,
        health: crate::config::HealthParams::default(),
        resolvers: None,
        resolve_prefer_ipv4: false,
        resolve_ignore_weight: false,
        unresolved: false,
        init_addr: vec![crate::config::InitAddr::Last, crate::config::InitAddr::Libc],
        init_addr_used: None,
        resolve_net: Vec::new(),
        proxy: crate::config::SendProxy::default(),
        template: false,
        source: None,
        tfo: false,
        track: None,
        tls: crate::config::ServerTls::default(),
        trackers: Vec::new(),
        tcp_ut: None,
    }
}

/// A backend `bk` with these servers.
pub(crate) fn backend(balance: Balance, servers: Vec<Server>) -> Backend {
    Backend {
        name: "bk".to_owned(),
        loc: loc(1),
        id: 1,
        balance,
        hash_type: HashType::default(),
        servers,
        timeouts: Timeouts::default(),
        retries: 3,
        redispatch: false,
        allbackups: false,
        smart_connect: false,
        nolinger: false,
        abortonclose: false,
        transparent: false,
        source: None,
        persist: false,
        rdp_cookie_persist: None,
        balance_rdp_cookie: None,
        keepalive: Keepalive::default(),
        check: crate::config::CheckKind::default(),
        log_health_checks: false,
        external_check: crate::config::ExternalCheck::default(),
        server_state: crate::config::ServerStateFrom::None,
        description: None,
        fullconn: None,
        rules: std::sync::Arc::default(),
    }
}

/// The `n`th distinct client address (distinct IPs, port varying with `n` too).
pub(crate) fn client(n: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 + n);
    SocketAddr::from((ip, 1024 + (n % 60000) as u16))
}

/// Direct writes for tests of the table and the balancer (everything else goes through
/// `crate::state`, whose rules these skip; only the weight check is shared).
impl super::BackendTable {
    fn test_write(
        &self,
        server: usize,
        f: impl FnOnce(&mut super::ServerEntry) -> Result<(), crate::state::StateError>,
    ) -> Result<(), crate::state::StateError> {
        let backend = self.conf.name.clone();
        self.write(|servers| {
            let e = servers
                .get_mut(server)
                .ok_or(crate::state::StateError::NoSuchServer {
                    backend,
                    index: server,
                })?;
            f(e)
        })
    }

    pub(crate) fn set_admin(
        &self,
        server: usize,
        admin: super::AdminState,
    ) -> Result<(), crate::state::StateError> {
        self.test_write(server, |e| {
            e.state.admin = admin;
            Ok(())
        })
    }

    /// UP or DOWN, whatever the checks say.
    pub(crate) fn set_healthy(
        &self,
        server: usize,
        up: bool,
    ) -> Result<(), crate::state::StateError> {
        self.test_write(server, |e| {
            e.state.up = up;
            Ok(())
        })
    }

    pub(crate) fn set_weight(&self, server: usize, w: u32) -> Result<(), crate::state::StateError> {
        let be = self.conf.clone();
        self.test_write(server, |e| {
            crate::state::check_weight(&e.conf, &be, w)?;
            e.state.weight = w;
            e.state.user_weight = w;
            Ok(())
        })
    }

    pub(crate) fn set_maxconn(
        &self,
        server: usize,
        m: u32,
    ) -> Result<(), crate::state::StateError> {
        self.test_write(server, |e| {
            e.state.set_maxconn(m);
            Ok(())
        })
    }

    /// The new address; returns the old one.
    pub(crate) fn set_addr(
        &self,
        server: usize,
        addr: SocketAddr,
    ) -> Result<SocketAddr, crate::state::StateError> {
        let mut old = addr;
        self.test_write(server, |e| {
            old = e.state.addr;
            e.state.addr = addr;
            Ok(())
        })?;
        Ok(old)
    }
}
