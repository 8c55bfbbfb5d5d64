//! `balance first`: the member with the lowest `id` that is below its maxconn.

use std::net::SocketAddr;

use super::{Algorithm, Pick};
use crate::server::ServerEntry;

#[derive(Debug)]
pub(crate) struct First {
    /// Members by ascending config id.
    by_id: Vec<usize>,
}

impl First {
    pub(crate) fn build(servers: &[ServerEntry], members: &[usize]) -> Self {
        let mut by_id = members.to_vec();
        by_id.sort_by_key(|&i| (servers[i].conf.id, i));
        Self { by_id }
    }
}

impl Algorithm for First {
    fn pick(
        &self,
        _members: &[usize],
        servers: &[ServerEntry],
        _client: SocketAddr,
        exclude: Option<usize>,
    ) -> Pick {
        for &i in &self.by_id {
            if Some(i) != exclude && servers[i].try_reserve() {
                return Pick::Got(i);
            }
        }
        Pick::Full
    }
}
