//! Who gets a slot on a control listener (a stats page, the runtime API sockets): at most
//! `maxconn` connections at a time, as HAProxy's limit, but a client that has not finished
//! its first request (or command line) cannot keep a client that could be served out. At the
//! limit, a new client takes the slot of the oldest connection still reading its first
//! request, which is told to go (the stats page answers it 408, as a timeout would); only when
//! every slot has been served once does the listener stop accepting, and clients wait in the
//! backlog until a slot frees, as HAProxy leaves them.
//!
//! For the control thread's tasks (one thread, `!Send`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::fd_budget::{self, FdLease, Use};

/// The slots of one control listener (or of several sharing one limit).
#[derive(Debug)]
pub struct Admission {
    max: usize,
    /// Connections holding a slot, in accept order.
    slots: RefCell<BTreeMap<u64, Rc<SlotState>>>,
    next: Cell<u64>,
    /// Woken when a slot frees.
    freed: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Its first request is complete: it is being (or was) served and is not evicted.
    served: Cell<bool>,
    /// Told to go to make room.
    evicted: Cell<bool>,
    wake: Notify,
}

impl Admission {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Rc<Self> {
        Rc::new(Self {
            max: max.max(1),
            slots: RefCell::new(BTreeMap::new()),
            next: Cell::new(0),
            freed: Notify::new(),
        })
    }

    /// Connections holding a slot now.
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.slots.borrow().is_empty()
    }

    /// Whether a client accepted now would get a slot: one is free, or one is held by a
    /// connection still reading its first request.
    fn has_room(&self) -> bool {
        let slots = self.slots.borrow();
        slots.len() < self.max || slots.values().any(|s| !s.served.get())
    }

    /// Waits until a client accepted now would get a slot (see [`Admission::admit`]); until
    /// then, the caller does not accept and clients wait in the backlog.
    pub async fn room(&self) {
        loop {
            // Registered before the check, so a slot freed in between is not missed.
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// Gives an accepted client a slot; at the limit, the oldest connection still reading its
    /// first request is told to go (see [`Slot::evicted`]) and its slot given to this one.
    pub fn admit(self: &Rc<Self>) -> Slot {
        let mut slots = self.slots.borrow_mut();
        if slots.len() >= self.max {
            let oldest = slots
                .iter()
                .find(|(_, s)| !s.served.get())
                .map(|(&id, _)| id);
            if let Some(state) = oldest.and_then(|id| slots.remove(&id)) {
                state.evicted.set(true);
                state.wake.notify_one();
            }
            // Else every slot was served since `room` returned: this one is over the limit
            // until one frees (at most one per accept in flight).
        }
        let id = self.next.get();
        self.next.set(id + 1);
        let state = Rc::new(SlotState::default());
        slots.insert(id, state.clone());
        Slot {
            admission: self.clone(),
            id,
            state,
        }
    }
}

/// How long a control listener pauses after `accept` failed (HAProxy pauses a listener 100 ms).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Admission {
    /// The next connection of a control listener named `what` in warnings: waits for a slot
    /// ([`Admission::room`]) and a descriptor of the process's budget, then calls `accept`; a
    /// failed accept is reported and retried after [`ACCEPT_PAUSE`]. The connection comes with
    /// its slot and its descriptor lease, to be dropped once it is closed.
    pub async fn accept<T, F>(
        self: &Rc<Self>,
        what: &dyn Display,
        mut accept: impl FnMut() -> F,
    ) -> (T, Slot, FdLease)
    where
        F: Future<Output = io::Result<T>>,
    {
        let budget = fd_budget::process();
        loop {
            self.room().await;
            let fd = budget
                .take(1, Use::Connection, || {
                    budget.warn(|| {
                        format!(
                            "{what}: {}; not accepting until connections close",
                            budget.describe()
                        )
                    });
                })
                .await;
            match accept().await {
                Ok(conn) => return (conn, self.admit(), fd),
                Err(e) => {
                    budget.warn(|| format!("{what}: accept failed: {e}"));
                    drop(fd);
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
    }
}

/// A connection's slot; frees it when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Rc<Admission>,
    id: u64,
    state: Rc<SlotState>,
}

impl Slot {
    /// The connection's first request is complete: from now on it keeps its slot until it
    /// ends.
    pub fn served(&self) {
        self.state.served.set(true);
    }

    /// Resolves once the connection was told to go to make room for a new client (never,
    /// once [`Slot::served`]).
    pub async fn evicted(&self) {
        while !self.state.evicted.get() {
            self.state.wake.notified().await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // An evicted slot was removed (and its room given) already.
        self.admission.slots.borrow_mut().remove(&self.id);
        self.admission.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        let rt = crate::test_runtime();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn a_new_client_takes_the_slot_of_the_oldest_unserved_one() {
        run(async {
            let a = Admission::new(2);
            let first = a.admit();
            let second = a.admit();
            assert_eq!(a.len(), 2);
            // Room: both are still reading their first request.
            tokio::time::timeout(Duration::from_millis(50), a.room())
                .await
                .unwrap();
            let third = a.admit();
            assert_eq!(a.len(), 2);
            tokio::time::timeout(Duration::from_millis(50), first.evicted())
                .await
                .expect("the oldest was told to go");
            assert!(
                tokio::time::timeout(Duration::from_millis(50), second.evicted())
                    .await
                    .is_err(),
                "only the oldest goes"
            );
            drop(first);
            assert_eq!(a.len(), 2, "an evicted slot is not freed twice");
            // Served connections keep their slots: no room until one ends.
            second.served();
            third.served();
            assert!(tokio::time::timeout(Duration::from_millis(50), a.room())
                .await
                .is_err());
            let waiter = {
                let a = a.clone();
                tokio::task::spawn_local(async move { a.room().await })
            };
            tokio::task::yield_now().await;
            drop(second);
            tokio::time::timeout(Duration::from_millis(200), waiter)
                .await
                .expect("room once a slot frees")
                .unwrap();
            assert_eq!(a.len(), 1);
        });
    }
}
