//! The deterministic byte stream bulk transfers send, and its cheap and full checks.
//!
//! The stream is made of 1 MiB blocks: one fixed pseudo-random pattern whose first 8 bytes are
//! replaced by a stamp of the block's index. Generating it costs a memcpy-free 8-byte store per
//! block. The sink checks it in one of two ways: `Full` hashes every byte with xxh3 (done in a
//! warm-up pass per target), `Stamps` compares each block's stamp and last 8 bytes (every
//! measured repetition: a lost, repeated or reordered block is caught, hashing can't become the
//! bottleneck).

use xxhash_rust::xxh3::Xxh3;

/// Block size of the stream, and the sink's read buffer.
pub const BLOCK: usize = 1 << 20;
const SEED: u64 = 0x6c62_2d62_656e_6368; // "lb-bench"

/// The fixed pattern every block is built from.
pub fn pattern() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut v = vec![0u8; BLOCK];
    rng.fill(&mut v);
    v
}

/// The 8 bytes that start block `index`.
pub fn stamp(index: u64) -> [u8; 8] {
    (index ^ SEED)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .to_le_bytes()
}

/// Writes block `index` into `block` (a copy of [`pattern`]); only the stamp changes.
pub fn make_block(block: &mut [u8], index: u64) {
    block[..8].copy_from_slice(&stamp(index));
}

/// The xxh3 of a stream of `len` bytes, as the sink computes it in `Full` mode.
pub fn expected_hash(len: u64) -> u64 {
    let mut block = pattern();
    let mut h = Xxh3::new();
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        make_block(&mut block, i);
        let n = left.min(BLOCK as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
        i += 1;
    }
    h.digest()
}

/// How thoroughly the sink checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    Full,
    Stamps,
}

/// The sink's view of one received stream.
pub struct Checker {
    mode: Verify,
    hash: Xxh3,
    tail: [u8; 8],
    /// Bytes seen so far.
    pub bytes: u64,
    /// The first problem found, if any.
    pub error: Option<String>,
}

impl Checker {
    /// A checker expecting the stream from its start.
    pub fn new(mode: Verify) -> Checker {
        let p = pattern();
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&p[BLOCK - 8..]);
        Checker {
            mode,
            hash: Xxh3::new(),
            tail,
            bytes: 0,
            error: None,
        }
    }

    /// Takes the next chunk; `chunk` must be a whole block, or the stream's last part.
    pub fn block(&mut self, chunk: &[u8]) {
        let index = self.bytes / BLOCK as u64;
        if self.mode == Verify::Full {
            self.hash.update(chunk);
        } else if self.error.is_none() {
            let stamp_ok = chunk.len() < 8 || chunk[..8] == stamp(index);
            let tail_ok = chunk.len() < BLOCK || chunk[BLOCK - 8..] == self.tail;
            if !(stamp_ok && tail_ok) {
                self.error = Some(format!("block {index} (at byte {}) is wrong", self.bytes));
            }
        }
        self.bytes += chunk.len() as u64;
    }

    /// The verdict once the stream ended: `Err` names what is wrong.
    pub fn finish(self, want_len: u64, want_hash: Option<u64>) -> Result<u64, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.bytes != want_len {
            return Err(format!("received {} bytes, sent {want_len}", self.bytes));
        }
        if let (Verify::Full, Some(want)) = (self.mode, want_hash) {
            let got = self.hash.digest();
            if got != want {
                return Err(format!("xxh3 {got:016x}, sent {want:016x}"));
            }
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(len: u64) -> Vec<Vec<u8>> {
        let mut block = pattern();
        let mut out = Vec::new();
        let mut left = len;
        let mut i = 0;
        while left > 0 {
            make_block(&mut block, i);
            let n = left.min(BLOCK as u64) as usize;
            out.push(block[..n].to_vec());
            left -= n as u64;
            i += 1;
        }
        out
    }

    #[test]
    fn intact_stream_passes_both_checks() {
        let len = 3 * BLOCK as u64 + 100;
        let want = expected_hash(len);
        for mode in [Verify::Full, Verify::Stamps] {
            let mut c = Checker::new(mode);
            for b in stream(len) {
                c.block(&b);
            }
            assert_eq!(c.finish(len, Some(want)), Ok(len), "{mode:?}");
        }
    }

    #[test]
    fn reordered_or_corrupt_blocks_are_caught() {
        let len = 3 * BLOCK as u64;
        let mut blocks = stream(len);
        blocks.swap(0, 1);
        for mode in [Verify::Full, Verify::Stamps] {
            let mut c = Checker::new(mode);
            for b in &blocks {
                c.block(b);
            }
            assert!(c.finish(len, Some(expected_hash(len))).is_err(), "{mode:?}");
        }
        let mut blocks = stream(len);
        blocks[2][500] ^= 1;
        let mut c = Checker::new(Verify::Full);
        for b in &blocks {
            c.block(b);
        }
        assert!(c
            .finish(len, Some(expected_hash(len)))
            .unwrap_err()
            .starts_with("xxh3"));
    }

    #[test]
    fn short_streams_are_caught() {
        let mut c = Checker::new(Verify::Stamps);
        for b in stream(BLOCK as u64) {
            c.block(&b);
        }
        assert_eq!(
            c.finish(2 * BLOCK as u64, None),
            Err(format!("received {BLOCK} bytes, sent {}", 2 * BLOCK))
        );
    }

    #[test]
    fn stamps_differ() {
        assert_ne!(stamp(0), stamp(1));
        assert_eq!(stamp(7), stamp(7));
    }
}
