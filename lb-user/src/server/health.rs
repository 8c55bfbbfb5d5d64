//! HAProxy's health state machine, as pure data: the `rise`/`fall` counter, the status strings
//! users see (`UP`, `UP 1/3`, `DOWN 1/2`, `DOWN`) and the interval until the next check. The
//! state writer runs it (the counter is part of a server's published state, so a reload
//! carries it over); checkers only report results.

use std::time::Duration;

use crate::config::{HealthParams, OnError};

/// Where a server is after a check result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Still on the same side (UP or DOWN), maybe with a different counter.
    None,
    /// Just went from UP to DOWN.
    WentDown,
    /// Just went from DOWN to UP.
    WentUp,
}

/// The health counter `h` in `[0, rise + fall - 1]`: the server is UP while `h >= rise`.
/// Success: `h += 1`, and reaching `rise` jumps to `rise + fall - 1`. Failure: `h -= 1`, and
/// dropping below `rise` resets to 0. Both directions need consecutive results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    rise: u32,
    fall: u32,
    h: u32,
}

impl Health {
    /// A server at start: `h = rise`, UP, one failure away from DOWN (as HAProxy).
    pub fn new(rise: u32, fall: u32) -> Self {
        let (rise, fall) = (rise.max(1), fall.max(1));
        Self {
            rise,
            fall,
            h: rise,
        }
    }

    /// A counter carried over (from a previous generation, the server-state file), clamped
    /// into `[0, rise + fall - 1]`.
    pub fn at(rise: u32, fall: u32, h: u32) -> Self {
        let mut me = Self::new(rise, fall);
        me.h = h.min(me.max());
        me
    }

    /// The counter's maximum, `rise + fall - 1` (fully UP).
    pub fn max(&self) -> u32 {
        self.rise + self.fall - 1
    }

    /// Whether the server counts as UP.
    pub fn is_up(&self) -> bool {
        self.h >= self.rise
    }

    /// The raw counter.
    pub fn counter(&self) -> u32 {
        self.h
    }

    /// Applies one check result and says whether the server changed side. Returns whether the
    /// counter moved (HAProxy's "report": `option log-health-checks` logs those).
    pub fn record(&mut self, passed: bool) -> (Transition, bool) {
        let was_up = self.is_up();
        let before = self.h;
        if passed {
            if self.h < self.max() {
                self.h += 1;
                if self.h >= self.rise {
                    self.h = self.max();
                }
            }
        } else if self.h > 0 {
            self.h -= 1;
            if self.h < self.rise {
                self.h = 0;
            }
        }
        let t = match (was_up, self.is_up()) {
            (true, false) => Transition::WentDown,
            (false, true) => Transition::WentUp,
            _ => Transition::None,
        };
        (t, before != self.h)
    }

    /// A passive-check `on-error` action after `error-limit` observed errors (HAProxy's
    /// `check_notify_failure` paths). `fastinter` does not touch the counter.
    pub fn on_error(&mut self, action: OnError) -> (Transition, bool) {
        let was_up = self.is_up();
        let before = self.h;
        match action {
            OnError::Fastinter => {}
            OnError::FailCheck => {
                self.record(false);
            }
            OnError::SuddenDeath => {
                // One failure left before DOWN.
                if self.h > self.rise {
                    self.h = self.rise + 1;
                }
                self.record(false);
            }
            OnError::MarkDown => {
                if self.h > 1 {
                    self.h = 1;
                }
                self.record(false);
            }
        }
        let t = match (was_up, self.is_up()) {
            (true, false) => Transition::WentDown,
            (false, true) => Transition::WentUp,
            _ => Transition::None,
        };
        (t, before != self.h)
    }

    /// The status text of HAProxy's stats: `UP`, `UP n/fall` going down, `DOWN n/rise` going
    /// up, `DOWN`.
    pub fn status(&self) -> String {
        if self.h == self.max() {
            "UP".to_owned()
        } else if self.is_up() {
            format!("UP {}/{}", self.h - self.rise + 1, self.fall)
        } else if self.h == 0 {
            "DOWN".to_owned()
        } else {
            format!("DOWN {}/{}", self.h, self.rise)
        }
    }

    /// Time until the next check: fully UP → `inter`; fully DOWN → `downinter` (else `inter`);
    /// changing state or never checked → `fastinter` (else `inter`).
    pub fn interval(&self, p: &HealthParams) -> Duration {
        if self.h == self.max() {
            p.inter
        } else if self.h == 0 {
            p.downinter.unwrap_or(p.inter)
        } else {
            fastinter(p)
        }
    }
}

/// HAProxy's "fastinter, or inter when it is not set": the interval of a server changing
/// state, and of the check that follows a passive-check error.
pub fn fastinter(p: &HealthParams) -> Duration {
    p.fastinter.unwrap_or(p.inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `results` ('+' pass, '-' fail) from the start state and returns the status after
    /// each step.
    fn run(rise: u32, fall: u32, results: &str) -> Vec<String> {
        let mut h = Health::new(rise, fall);
        results
            .chars()
            .map(|c| {
                h.record(c == '+');
                h.status()
            })
            .collect()
    }

    #[test]
    fn start_state_is_up_one_failure_from_down() {
        let h = Health::new(2, 3);
        assert!(h.is_up());
        assert_eq!(h.status(), "UP 1/3");
        assert_eq!(run(2, 3, "-"), ["DOWN"]);
        assert_eq!(run(2, 3, "+"), ["UP"]);
    }

    #[test]
    fn tables_of_results() {
        // (rise, fall, results, expected status after each result)
        let table: &[(u32, u32, &str, &[&str])] = &[
            (2, 3, "+--", &["UP", "UP 2/3", "UP 1/3"]),
            (2, 3, "+---", &["UP", "UP 2/3", "UP 1/3", "DOWN"]),
            (2, 3, "+--+", &["UP", "UP 2/3", "UP 1/3", "UP"]),
            (2, 3, "-+", &["DOWN", "DOWN 1/2"]),
            (2, 3, "-++", &["DOWN", "DOWN 1/2", "UP"]),
            (2, 3, "-+-+", &["DOWN", "DOWN 1/2", "DOWN", "DOWN 1/2"]),
            (3, 2, "-++", &["DOWN", "DOWN 1/3", "DOWN 2/3"]),
            (3, 2, "-+++", &["DOWN", "DOWN 1/3", "DOWN 2/3", "UP"]),
            (
                3,
                2,
                "-+++-",
                &["DOWN", "DOWN 1/3", "DOWN 2/3", "UP", "UP 1/2"],
            ),
            (1, 1, "-+-+", &["DOWN", "UP", "DOWN", "UP"]),
            (1, 3, "-", &["DOWN"]),
            (1, 3, "+--", &["UP", "UP 2/3", "UP 1/3"]),
            (2, 3, "----", &["DOWN", "DOWN", "DOWN", "DOWN"]),
            (2, 3, "+++", &["UP", "UP", "UP"]),
        ];
        for (rise, fall, results, want) in table {
            assert_eq!(
                run(*rise, *fall, results),
                *want,
                "rise {rise} fall {fall} results {results}"
            );
        }
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut h = Health::new(2, 2);
        assert_eq!(h.record(true), (Transition::None, true));
        assert_eq!(h.record(true), (Transition::None, false));
        assert_eq!(h.record(false), (Transition::None, true));
        assert_eq!(h.record(false), (Transition::WentDown, true));
        assert_eq!(h.record(false), (Transition::None, false));
        assert_eq!(h.record(true), (Transition::None, true));
        assert_eq!(h.record(true), (Transition::WentUp, true));
    }

    #[test]
    fn intervals_follow_the_state() {
        let p = HealthParams {
            inter: Duration::from_secs(1),
            fastinter: Some(Duration::from_millis(100)),
            downinter: Some(Duration::from_secs(5)),
            ..HealthParams::default()
        };
        let mut h = Health::new(2, 3);
        assert_eq!(
            h.interval(&p),
            Duration::from_millis(100),
            "never checked: fastinter"
        );
        h.record(true);
        assert_eq!(h.interval(&p), Duration::from_secs(1), "fully up: inter");
        h.record(false);
        assert_eq!(
            h.interval(&p),
            Duration::from_millis(100),
            "going down: fastinter"
        );
        h.record(false);
        h.record(false);
        assert_eq!(
            h.interval(&p),
            Duration::from_secs(5),
            "fully down: downinter"
        );
        h.record(true);
        assert_eq!(
            h.interval(&p),
            Duration::from_millis(100),
            "going up: fastinter"
        );
        let plain = HealthParams::default();
        assert_eq!(
            h.interval(&plain),
            Duration::from_secs(2),
            "no fastinter: inter"
        );
    }

    #[test]
    fn on_error_actions() {
        let mut h = Health::new(2, 3);
        h.record(true);
        assert_eq!(h.on_error(OnError::Fastinter), (Transition::None, false));
        assert_eq!(h.status(), "UP");
        h.on_error(OnError::FailCheck);
        assert_eq!(h.status(), "UP 2/3");
        let mut h = Health::new(2, 3);
        h.record(true);
        h.on_error(OnError::SuddenDeath);
        assert_eq!(h.status(), "UP 1/3", "one failure left");
        assert_eq!(h.record(false).0, Transition::WentDown);
        let mut h = Health::new(2, 3);
        h.record(true);
        assert_eq!(h.on_error(OnError::MarkDown).0, Transition::WentDown);
        assert_eq!(h.status(), "DOWN");
    }
}
