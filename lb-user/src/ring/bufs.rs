//! The ring's receive buffers: one block of [`COUNT`] buffers of [`SIZE`] bytes given to the
//! kernel (`IORING_OP_PROVIDE_BUFFERS`); a receive takes one only when bytes arrive, the flow
//! gives it back once they are sent. An idle flow holds none.

use io_uring::{opcode, squeue};

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
}

impl Bufs {
    pub(super) fn new(count: u16) -> Self {
        // Zeroed allocation: pages are mapped on first use.
        let mem = vec![0u8; usize::from(count) * SIZE].leak();
        Self {
            mem,
            count,
            free: 0,
        }
    }

    /// The entry giving every buffer to the kernel (once, at start).
    pub(super) fn provide_all(&mut self) -> squeue::Entry {
        self.free = self.count;
        opcode::ProvideBuffers::new(self.mem.as_mut_ptr(), SIZE as i32, self.count, GROUP, 0)
            .build()
            .user_data(Tag::Ignored.user_data(0))
    }

    /// The entry giving buffer `id` back to the kernel: it completes only if it fails
    /// (`IOSQE_CQE_SKIP_SUCCESS`), so returns wake nobody.
    pub(super) fn give_back(&mut self, id: u16) -> squeue::Entry {
        self.free += 1;
        let at = usize::from(id) * SIZE;
        opcode::ProvideBuffers::new(self.mem[at..].as_mut_ptr(), SIZE as i32, 1, GROUP, id)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Tag::Ignored.user_data(0))
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
