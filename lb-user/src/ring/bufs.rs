//! The ring's receive buffers: one block of [`COUNT`] buffers of [`SIZE`] bytes given to the
//! kernel; a receive takes one only when bytes arrive, the flow gives it back once they are
//! sent. An idle flow holds none.
//!
//! They go to the kernel through a provided-buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19):
//! giving one back is a write of its entry and of the ring's tail, no submission entry and no
//! work in the kernel until a receive takes it. Where the kernel has no such rings, each goes
//! back with an `IORING_OP_PROVIDE_BUFFERS` entry (the kernel then keeps its buffers in a list
//! of its own allocations).

use std::alloc::Layout;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::opcode::ProvideBuffers;
use io_uring::types::BufRingEntry;
use io_uring::{squeue, IoUring};

use super::Tag;

/// Size of one buffer: HAProxy's `bufsize`, the copy path's buffer (a receive that fills it
/// is a stream, and the flow moves to splice or the maps).
pub(super) const SIZE: usize = 16 * 1024;
/// Buffers per thread: bytes in flight at once on the thread's ring flows (4 MiB of address
/// space; only pages ever used count in RSS). A receive that finds none waits for one.
pub(super) const COUNT: u16 = 256;
/// The buffer group of the ring's receives.
pub(super) const GROUP: u16 = 0;

pub(super) struct Bufs {
    /// `count * SIZE` bytes, leaked: the kernel may write into a buffer until the ring is torn
    /// down, which it finishes asynchronously after the thread let go of it.
    mem: &'static mut [u8],
    /// Buffers in the pool ([`COUNT`]; tests make it smaller).
    count: u16,
    /// Buffers the kernel has, as the ring knows it: given (or queued to be given) minus those
    /// completions came back with. The receives waiting for a buffer are re-armed while it is
    /// above 0 (see `Ring::rearm_starved`).
    free: u16,
    /// The provided-buffer ring they go back through; `None` where the kernel has none.
    ring: Option<BufRing>,
}

/// A provided-buffer ring: entries the kernel reads from its head to the tail lb writes.
struct BufRing {
    /// `mask + 1` entries, page-aligned, leaked as `Bufs::mem` is. The first entry's last two
    /// bytes are the ring's tail (`struct io_uring_buf_ring`).
    entries: *mut BufRingEntry,
    mask: u16,
    /// The tail as lb last stored it.
    tail: u16,
}

impl Bufs {
    pub(super) fn new(count: u16) -> Self {
        // Zeroed allocation: pages are mapped on first use.
        let mem = vec![0u8; usize::from(count) * SIZE].leak();
        Self {
            mem,
            count,
            free: 0,
            ring: None,
        }
    }

    /// Gives every buffer to the kernel (once, at start): through a buffer ring registered on
    /// `uring` where the kernel has them and `ring` asks for one (`None` then), else the entry
    /// that provides them all.
    pub(super) fn provide_all(&mut self, uring: &IoUring, ring: bool) -> Option<squeue::Entry> {
        self.free = self.count;
        let registered = if ring {
            BufRing::register(uring, self.count)
        } else {
            Err(std::io::ErrorKind::Unsupported.into())
        };
        match registered {
            Ok(mut ring) => {
                for id in 0..self.count {
                    ring.push(addr(self.mem, id), id);
                }
                self.ring = Some(ring);
                None
            }
            Err(e) => {
                log::debug!("io_uring: no provided-buffer ring ({e}): buffers go back as entries");
                let e =
                    ProvideBuffers::new(self.mem.as_mut_ptr(), SIZE as i32, self.count, GROUP, 0)
                        .build()
                        .user_data(Tag::Ignored.user_data(0));
                Some(e)
            }
        }
    }

    /// Gives buffer `id` back to the kernel: at once through the buffer ring, or as the entry
    /// returned, which completes only if it fails (`IOSQE_CQE_SKIP_SUCCESS`). Either way
    /// returns wake nobody.
    pub(super) fn give_back(&mut self, id: u16) -> Option<squeue::Entry> {
        self.free += 1;
        if let Some(ring) = self.ring.as_mut() {
            ring.push(addr(self.mem, id), id);
            return None;
        }
        let at = usize::from(id) * SIZE;
        let e = ProvideBuffers::new(self.mem[at..].as_mut_ptr(), SIZE as i32, 1, GROUP, id)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0));
        Some(e)
    }

    /// Whether a buffer given back is a submission entry (no buffer ring).
    #[cfg(test)]
    pub(super) fn returns_are_entries(&self) -> bool {
        self.ring.is_none()
    }

    /// A completion came with a buffer: the kernel has one less. (It never hands out more
    /// than it was given, so this stays at 0 or above; saturating all the same.)
    pub(super) fn taken(&mut self) {
        self.free = self.free.saturating_sub(1);
    }

    /// Buffers the kernel has (see [`Bufs::free`]'s field).
    pub(super) fn free(&self) -> u16 {
        self.free
    }

    /// Bytes `off..off + len` of buffer `id`.
    pub(super) fn bytes(&self, id: u16, off: u32, len: u32) -> &[u8] {
        let at = usize::from(id) * SIZE + off as usize;
        &self.mem[at..at + len as usize]
    }

    /// Writes `bytes` at the start of buffer `id` (tests that play the kernel's part).
    #[cfg(test)]
    pub(super) fn fill(&mut self, id: u16, bytes: &[u8]) {
        let at = usize::from(id) * SIZE;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

/// Where buffer `id` starts.
fn addr(mem: &[u8], id: u16) -> u64 {
    mem[usize::from(id) * SIZE..].as_ptr() as u64
}

impl BufRing {
    /// A ring of as many entries as `count` rounded up to a power of two (the kernel's rule),
    /// registered as [`GROUP`] on `uring`.
    fn register(uring: &IoUring, count: u16) -> std::io::Result<Self> {
        let n = count.max(1).next_power_of_two();
        let layout = Layout::array::<BufRingEntry>(usize::from(n))
            .and_then(|l| l.align_to(page_size()))
            .map_err(std::io::Error::other)?;
        // SAFETY: a layout of at least one 16-byte entry (never zero-sized).
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "allocated with the layout of the entries, page-aligned"
        )]
        let entries = mem.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        // SAFETY: `n` entries at `entries`, page-aligned; never freed (leaked on purpose: the
        // kernel may read them until the ring is torn down, after the thread let go of it).
        if let Err(e) = unsafe {
            uring
                .submitter()
                .register_buf_ring(entries as u64, n, GROUP)
        } {
            // SAFETY: allocated just above with `layout`, not registered.
            unsafe { std::alloc::dealloc(entries.cast(), layout) };
            return Err(e);
        }
        Ok(Self {
            entries,
            mask: n - 1,
            tail: 0,
        })
    }

    /// Queues buffer `id` at `addr` for the kernel: its entry, then the tail that publishes it.
    fn push(&mut self, addr: u64, id: u16) {
        // SAFETY: the index is masked into the ring; lb is the ring's only writer, and the
        // kernel reads an entry only once the tail below covers it. The first entry's tail
        // field is not touched by the setters.
        let e = unsafe { &mut *self.entries.add(usize::from(self.tail & self.mask)) };
        e.set_addr(addr);
        e.set_len(SIZE as u32);
        e.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a u16 in the ring's first entry, aligned; the kernel reads it
        // with acquire ordering, so the entry written above is seen first.
        unsafe {
            AtomicU16::from_ptr(BufRingEntry::tail(self.entries).cast_mut())
                .store(self.tail, Ordering::Release);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}
