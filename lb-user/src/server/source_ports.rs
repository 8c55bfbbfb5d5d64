//! A server's source port range (`source ADDR:LOW-HIGH` on a server or `default-server`): each
//! connection to the server, and each of its health checks, binds a port of the range that no
//! other connection of this process holds, and gives it back when it closes (HAProxy's
//! `port_range`). First in, first out: a port given back is taken again last, which leaves
//! the kernel time to forget its last connection.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

/// The free ports of one server's range: two bytes a port (a whole range is 128 KiB; a
/// lock-free queue's slots took 16 bytes a port, 1 MiB). Taking and giving back hold the lock
/// for one queue operation, once per connect and once per close.
#[derive(Debug)]
pub struct PortPool {
    range: (u16, u16),
    free: Mutex<VecDeque<u16>>,
}

impl PortPool {
    /// Every port of `low..=high` free, in order.
    pub fn new((low, high): (u16, u16)) -> Arc<Self> {
        Arc::new(Self {
            range: (low, high),
            free: Mutex::new((low..=high).collect()),
        })
    }

    /// The range, as configured.
    pub fn range(&self) -> (u16, u16) {
        self.range
    }

    /// A free port, held until the lease drops; `None` when every port is held.
    pub fn take(self: &Arc<Self>) -> Option<PortLease> {
        let port = self.free.lock().pop_front();
        port.map(|port| PortLease {
            pool: Arc::clone(self),
            port,
        })
    }

    /// How many ports are free now.
    pub fn free(&self) -> usize {
        self.free.lock().len()
    }
}

/// One port of a [`PortPool`], given back on drop.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.free.lock().push_back(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_held_until_given_back_first_in_first_out() {
        let pool = PortPool::new((5000, 5002));
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let c = pool.take().unwrap();
        assert_eq!((a.port(), b.port(), c.port()), (5000, 5001, 5002));
        assert!(pool.take().is_none(), "all three held");
        drop(b);
        assert_eq!(pool.free(), 1);
        let again = pool.take().unwrap();
        assert_eq!(again.port(), 5001);
        drop(a);
        drop(c);
        assert_eq!(
            pool.take().unwrap().port(),
            5000,
            "the first given back comes first"
        );
    }

    #[test]
    fn a_range_of_one_port_and_the_whole_space() {
        let one = PortPool::new((7, 7));
        assert_eq!(one.take().map(|l| l.port()), Some(7));
        let all = PortPool::new((1, 65535));
        assert_eq!(all.free(), 65535);
    }
}
