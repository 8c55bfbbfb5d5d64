//! One shared copy per thread of values that thousands of flows hold alike: a flow's
//! inactivity limits and the names `show sess` prints are the same for every flow of a
//! frontend and backend, so each flow keeps a pointer (8 bytes) to the thread's copy instead
//! of its own (80 bytes of timeouts, a string allocation per name).

use std::cell::RefCell;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::HashSet;

use crate::dataplane::FlowTimeouts;

/// A thread's set of shared values. Values no flow holds any more are let go of when the set
/// has doubled since it was last swept, so it stays as small as what its flows use (configs
/// change on reload; a set of names never grows without bound).
struct Interned<T: ?Sized> {
    set: HashSet<Arc<T>>,
    /// Its size after the last sweep.
    swept: usize,
}

impl<T: ?Sized + Eq + Hash> Interned<T> {
    fn new() -> Self {
        Self {
            set: HashSet::default(),
            swept: 0,
        }
    }

    /// The thread's copy of `v`, made by `make` the first time.
    fn get(&mut self, v: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
        if let Some(a) = self.set.get(v) {
            return a.clone();
        }
        if self.set.len() >= 2 * self.swept.max(8) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept = self.set.len();
        }
        let a = make(v);
        self.set.insert(a.clone());
        a
    }
}

thread_local! {
    static NAMES: RefCell<Interned<str>> = RefCell::new(Interned::new());
    static TIMEOUTS: RefCell<Interned<FlowTimeouts>> = RefCell::new(Interned::new());
}

/// The thread's shared copy of the name `s`.
pub fn name(s: &str) -> Arc<str> {
    NAMES.with(|n| n.borrow_mut().get(s, |s: &str| Arc::from(s)))
}

/// The thread's shared copy of `t`.
pub fn timeouts(t: FlowTimeouts) -> Arc<FlowTimeouts> {
    TIMEOUTS.with(|n| n.borrow_mut().get(&t, |t| Arc::new(*t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn equal_values_share_one_copy_and_unused_ones_go() {
        let (a, b) = (name("fe"), name("fe"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*name("be"), "be");
        let t = FlowTimeouts {
            client: Some(Duration::from_secs(1)),
            ..FlowTimeouts::default()
        };
        assert!(Arc::ptr_eq(&timeouts(t), &timeouts(t)));
        // Names held by nobody are swept once the set doubles: it stays bounded.
        for i in 0..1000 {
            drop(name(&format!("gone-{i}")));
        }
        let len = NAMES.with(|n| n.borrow().set.len());
        assert!(len < 40, "{len} names kept");
        assert!(Arc::ptr_eq(&a, &name("fe")), "a held name stays");
    }
}
