//! Whether each frontend takes new connections: HAProxy's proxy states that the runtime API's
//! `disable frontend`, `enable frontend` and `shutdown frontend` change. One value per frontend
//! of a generation, the one place the accept loops read and [`crate::listener::frontends`]
//! writes (with the listening sockets it changes). A reload builds its generation with every
//! frontend ready again, as HAProxy's new process starts from its configuration.

use std::sync::atomic::{AtomicU8, Ordering};

/// A frontend's state at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeState {
    /// Listening: its accept loops take connections.
    Ready,
    /// `disable frontend`: its sockets do not listen (new clients are refused), established
    /// connections go on; `enable frontend` listens again.
    Paused,
    /// `shutdown frontend`: as paused, for good (until a reload); `show stat` says `STOP`.
    Stopped,
}

impl FeState {
    fn code(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Paused => 1,
            Self::Stopped => 2,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            0 => Self::Ready,
            1 => Self::Paused,
            _ => Self::Stopped,
        }
    }

    /// The frontend row's `status` in `show stat`, as HAProxy 2.6 writes it: `STOP` once shut
    /// down, else `OPEN` (a paused frontend too: HAProxy 2.6 has no word for it).
    pub fn status(self) -> &'static str {
        match self {
            Self::Stopped => "STOP",
            Self::Ready | Self::Paused => "OPEN",
        }
    }
}

/// The state of each frontend of a generation (`config.frontends` order).
#[derive(Debug)]
pub struct FeStates(Vec<AtomicU8>);

impl FeStates {
    /// `n` frontends, all ready.
    pub fn ready(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| AtomicU8::new(FeState::Ready.code()))
                .collect(),
        )
    }

    /// Frontend `f`'s state (`Ready` for an index out of range: nothing to hold back).
    pub fn get(&self, f: usize) -> FeState {
        self.0.get(f).map_or(FeState::Ready, |s| {
            FeState::from_code(s.load(Ordering::Acquire))
        })
    }

    /// Sets frontend `f`'s state. Callers: [`crate::listener::frontends`] only, which changes
    /// the sockets in the order the accept loops rely on.
    pub fn set(&self, f: usize, state: FeState) {
        if let Some(s) = self.0.get(f) {
            s.store(state.code(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_show_as_haproxy_2_6() {
        let s = FeStates::ready(2);
        assert_eq!(s.get(0), FeState::Ready);
        s.set(1, FeState::Paused);
        assert_eq!(s.get(1), FeState::Paused);
        s.set(1, FeState::Stopped);
        assert_eq!(s.get(1), FeState::Stopped);
        assert_eq!(s.get(7), FeState::Ready);
        s.set(7, FeState::Stopped);
        assert_eq!(FeState::Ready.status(), "OPEN");
        assert_eq!(FeState::Paused.status(), "OPEN");
        assert_eq!(FeState::Stopped.status(), "STOP");
    }
}
