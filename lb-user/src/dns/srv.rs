//! SRV answers as HAProxy 2.6 keeps them (`resolv_check_response` in `src/resolvers.c`): a
//! record is known by its target and port; each valid answer refreshes the records it has, and
//! a record missing from the answers stays in use until it has not been seen for `hold
//! obsolete` (0 by default: gone at the first answer without it). Each record's weight becomes
//! its server's weight, mapped from DNS's 0..=65535 onto 0..=256 as HAProxy does.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::wire::SrvRecord;
use super::Offer;

/// HAProxy's mapping of an SRV weight onto a server weight: `(w + 255) / 256`, so that 0
/// stays 0 and any other weight is at least 1 (SRV weights 2560 and 7680 give 10 and 30;
/// 10 and 30 both give 1).
pub fn weight(w: u16) -> u32 {
    u32::from(w).div_ceil(256)
}

/// One record last seen in an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    rec: SrvRecord,
    ip: IpAddr,
    seen: Instant,
}

/// The SRV records of one name, across answers.
#[derive(Debug, Default)]
pub struct SrvCache {
    held: Vec<Held>,
}

impl SrvCache {
    /// A valid answer's records, each with its target's address, at `now`: the records it
    /// has are refreshed (a target's new address, a new weight), the others are kept while
    /// seen within `obsolete` (HAProxy drops a record when `last_seen + obsolete < now`).
    /// Returns what the servers take, by priority (lowest first, answer order within one).
    pub fn update(
        &mut self,
        answer: Vec<(SrvRecord, IpAddr)>,
        now: Instant,
        obsolete: Duration,
    ) -> Vec<Offer> {
        for (rec, ip) in answer {
            let same = |h: &&mut Held| h.rec.target == rec.target && h.rec.port == rec.port;
            match self.held.iter_mut().find(same) {
                Some(h) => {
                    h.rec = rec;
                    h.ip = ip;
                    h.seen = now;
                }
                None => self.held.push(Held { rec, ip, seen: now }),
            }
        }
        self.held
            .retain(|h| now.saturating_duration_since(h.seen) <= obsolete);
        let mut held: Vec<&Held> = self.held.iter().collect();
        held.sort_by_key(|h| h.rec.priority);
        held.iter()
            .map(|h| Offer {
                ip: h.ip,
                port: Some(h.rec.port),
                weight: Some(weight(h.rec.weight)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(target: &str, port: u16, weight: u16) -> SrvRecord {
        SrvRecord {
            priority: 0,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn weights_map_as_haproxy() {
        assert_eq!(weight(0), 0);
        assert_eq!(weight(1), 1);
        assert_eq!(weight(10), 1);
        assert_eq!(weight(256), 1);
        assert_eq!(weight(257), 2);
        assert_eq!(weight(2560), 10);
        assert_eq!(weight(7680), 30);
        assert_eq!(weight(65535), 256);
    }

    /// A record missing from the answers is offered until it has not been seen for `hold
    /// obsolete`, then dropped; one seen again is refreshed, weight included.
    #[test]
    fn missing_records_are_held_for_hold_obsolete() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t0 = Instant::now();
        let hold = Duration::from_secs(2);
        let mut c = SrvCache::default();
        let both = vec![
            (rec("a.test", 1, 2560), ip("127.0.0.1")),
            (rec("b.test", 2, 7680), ip("127.0.0.2")),
        ];
        let offers = c.update(both, t0, hold);
        assert_eq!(
            offers.iter().map(|o| o.weight).collect::<Vec<_>>(),
            [Some(10), Some(30)]
        );
        // b disappears: still offered 1 s and 2 s later, gone after.
        let only_a = || vec![(rec("a.test", 1, 512), ip("127.0.0.1"))];
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.update(only_a(), t1, hold).len(), 2);
        assert_eq!(c.update(only_a(), t0 + hold, hold).len(), 2);
        let left = c.update(only_a(), t0 + Duration::from_millis(2001), hold);
        assert_eq!(
            left,
            [Offer {
                ip: ip("127.0.0.1"),
                port: Some(1),
                weight: Some(2),
            }]
        );
        // Without `hold obsolete`: gone at the first answer without it.
        let mut c = SrvCache::default();
        c.update(
            vec![
                (rec("a.test", 1, 0), ip("127.0.0.1")),
                (rec("a.test", 2, 0), ip("127.0.0.1")),
            ],
            t0,
            Duration::ZERO,
        );
        let left = c.update(only_a(), t0 + Duration::from_millis(1), Duration::ZERO);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].port, Some(1));
    }
}
