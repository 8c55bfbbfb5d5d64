//! Session counters of one frontend or backend (`scur`, `smax`, `stot`, bytes, denials,
//! rates), shared by every generation that has a proxy of that name. Below the server table,
//! which counts a backend's sessions (HAProxy's `beconn`) in them. And the counters of each
//! `resolvers` nameserver, which the DNS client counts in and `show resolvers` prints.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Session counters of one frontend or backend, all atomics (Relaxed: statistics, read
/// independently). Shared by every generation that has a proxy of that name.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Sessions being served now (`scur`). A frontend's count from accept until the
    /// connection's log line, as HAProxy's; a backend's from the server pick.
    pub cur: AtomicU32,
    /// Sessions accepted since start (`stot`).
    pub total: AtomicU64,
    /// Highest concurrent sessions seen (`smax`).
    pub max: AtomicU32,
    /// Bytes client -> lb of finished flows (`bin`).
    pub bytes_in: AtomicU64,
    /// Bytes lb -> client of finished flows (`bout`).
    pub bytes_out: AtomicU64,
    /// Connections closed by `tcp-request connection reject` (`dcon`, frontends).
    pub denied_conn: AtomicU64,
    /// Sessions closed by `tcp-request session reject` (`dses`, frontends).
    pub denied_sess: AtomicU64,
    /// Requests closed by `tcp-request content reject|silent-drop` (`dreq`; frontends, and a
    /// backend for `silent-drop` once it was chosen, as HAProxy counts).
    pub denied_req: AtomicU64,
    /// Responses closed by `tcp-response content reject|close` (`dresp`, frontend and backend).
    pub denied_resp: AtomicU64,
    /// Sessions per second and the highest (`rate`, `rate_max`): a backend's at the server
    /// pick, a frontend's once the `tcp-request connection` and `session` rules let the
    /// connection in (HAProxy's `proxy_inc_fe_sess_ctr`); what `rate-limit sessions` limits.
    pub sess_rate: crate::rate::SharedRate,
    /// A frontend's accepted connections per second and the highest (`conn_rate`,
    /// `conn_rate_max`).
    pub conn_rate: crate::rate::SharedRate,
}

impl ProxyCounters {
    /// Counts a new session in (`cur`, `max`, `total`, `rate`); [`Self::count_out`] ends it.
    /// The count is held by `crate::table::BackendSession`, then by the session's server slot.
    pub fn count_in(&self) {
        let cur = self.cur.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(cur, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sess_rate.add();
    }

    /// `clear counters`: the highest values (`smax`, the rates' highest); with `all`, the
    /// totals too (sessions, bytes, denials), as HAProxy's `cli_parse_clear_counters`. What is
    /// live now (`cur`) stays.
    pub fn clear(&self, all: bool) {
        self.max.store(0, Ordering::Relaxed);
        self.sess_rate.clear_max();
        self.conn_rate.clear_max();
        if all {
            for c in [
                &self.total,
                &self.bytes_in,
                &self.bytes_out,
                &self.denied_conn,
                &self.denied_sess,
                &self.denied_req,
                &self.denied_resp,
            ] {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    /// A session counted by [`Self::count_in`] ended.
    pub fn count_out(&self) {
        self.cur.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One nameserver's counters, HAProxy 2.6's `struct dns_counters` (`show resolvers`), all
/// atomics (Relaxed: statistics). Each is counted where HAProxy counts it.
#[derive(Debug, Default)]
pub struct NameserverCounters {
    /// Queries sent to it (`dns_send_nameserver`).
    pub sent: AtomicU64,
    /// Queries that could not be sent (the send failed).
    pub snd_error: AtomicU64,
    /// Valid answers (NOERROR with records, not truncated, that ended the resolution).
    pub valid: AtomicU64,
    /// Valid answers that changed the address of the first server of the resolution
    /// (HAProxy's `snr_resolution_cb`, `save_ip`).
    pub update: AtomicU64,
    /// Never counted by HAProxy 2.6 (declared and printed only): always 0.
    pub cname: AtomicU64,
    /// Answers whose last record is a CNAME with no record of the type asked.
    pub cname_error: AtomicU64,
    /// NOERROR answers without any record (`RSLV_RESP_ANCOUNT_ZERO`).
    pub any_err: AtomicU64,
    /// NXDOMAIN answers.
    pub nx: AtomicU64,
    /// Never counted by HAProxy 2.6 (a resolution without an answer counts nowhere): always 0.
    pub timeout: AtomicU64,
    /// REFUSED answers.
    pub refused: AtomicU64,
    /// Answers with any other error RCODE (SERVFAIL, ...).
    pub other: AtomicU64,
    /// Malformed answers, or for another question.
    pub invalid: AtomicU64,
    /// Answers longer than `accepted_payload_size`.
    pub too_big: AtomicU64,
    /// Answers with the TC bit.
    pub truncated: AtomicU64,
    /// Answers to a query that is no longer pending (another ID).
    pub outdated: AtomicU64,
}

impl NameserverCounters {
    /// Adds one to `c` (one of this struct's fields).
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `show resolvers`' lines for this nameserver (after ` nameserver ID:`), in HAProxy's
    /// order, each name padded to the same column as HAProxy's `chunk_appendf` formats.
    pub fn lines(&self) -> [(&'static str, u64); 15] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("sent", v(&self.sent)),
            ("snd_error", v(&self.snd_error)),
            ("valid", v(&self.valid)),
            ("update", v(&self.update)),
            ("cname", v(&self.cname)),
            ("cname_error", v(&self.cname_error)),
            ("any_err", v(&self.any_err)),
            ("nx", v(&self.nx)),
            ("timeout", v(&self.timeout)),
            ("refused", v(&self.refused)),
            ("other", v(&self.other)),
            ("invalid", v(&self.invalid)),
            ("too_big", v(&self.too_big)),
            ("truncated", v(&self.truncated)),
            ("outdated", v(&self.outdated)),
        ]
    }
}

/// One `resolvers` section's nameservers (configuration order) and their counters.
#[derive(Debug)]
pub struct ResolversCounters {
    pub name: String,
    pub nameservers: Vec<(String, Arc<NameserverCounters>)>,
}

impl ResolversCounters {
    /// The counters of `sections` (name, nameserver names): those of a nameserver of the same
    /// name in a section of the same name in `prev` (a reload keeps them, as it keeps proxy
    /// counters), fresh ones otherwise.
    pub fn build<'a>(
        sections: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
        prev: &[ResolversCounters],
    ) -> Vec<ResolversCounters> {
        sections
            .into_iter()
            .map(|(name, nameservers)| {
                let old = prev.iter().find(|p| p.name == name);
                ResolversCounters {
                    name: name.to_owned(),
                    nameservers: nameservers
                        .into_iter()
                        .map(|ns| {
                            let kept = old
                                .and_then(|o| o.nameservers.iter().find(|(n, _)| n == ns))
                                .map(|(_, c)| c.clone());
                            (ns.to_owned(), kept.unwrap_or_default())
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_counters_of_kept_nameservers() {
        let first = ResolversCounters::build([("dns", vec!["ns1", "ns2"])], &[]);
        NameserverCounters::inc(&first[0].nameservers[0].1.sent);
        NameserverCounters::inc(&first[0].nameservers[1].1.sent);
        let next = ResolversCounters::build(
            [("dns", vec!["ns2", "ns3"]), ("other", vec!["ns1"])],
            &first,
        );
        let sent = |r: &ResolversCounters, i: usize| r.nameservers[i].1.lines()[0].1;
        assert_eq!(sent(&next[0], 0), 1, "ns2 kept its count");
        assert_eq!(sent(&next[0], 1), 0, "ns3 is new");
        assert_eq!(
            sent(&next[1], 0),
            0,
            "another section's ns1 is another nameserver"
        );
        assert!(Arc::ptr_eq(
            &next[0].nameservers[0].1,
            &first[0].nameservers[1].1
        ));
    }
}
