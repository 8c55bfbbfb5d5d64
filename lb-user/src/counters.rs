//! Session counters of one frontend or backend (`scur`, `smax`, `stot`, bytes, denials,
//! rates), shared by every generation that has a proxy of that name. Below the server table,
//! which counts a backend's sessions (HAProxy's `beconn`) in them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
