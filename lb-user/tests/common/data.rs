//! Deterministic test data: a position-addressed splitmix64 byte stream (so both ends of a flow
//! can produce or check gigabytes without storing them), SHA-256 summaries, and a small PRNG for
//! test decisions (sizes, half-close orders).

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// splitmix64's increment (2^64 / golden ratio).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Seed of the extra bytes a sink appends to its reply (see `servers::Backend::sink`).
pub const REPLY_SEED: u64 = 0x5EED_0000_0000_0001;

/// Size of the reading/writing buffers used on bulk paths.
pub const CHUNK: usize = 64 * 1024;

/// splitmix64's output function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small PRNG (splitmix64) for test decisions. Fixed seeds make failures reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant at test sizes). `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// The byte stream for `seed`: 64-bit word `i` is splitmix64's `i`-th output when seeded with
/// `seed`, little endian. Any position can be computed directly, so the bytes produced do not
/// depend on how the stream is cut into chunks.
#[derive(Clone, Debug)]
pub struct DataStream {
    seed: u64,
    pos: u64,
}

impl DataStream {
    pub fn new(seed: u64) -> Self {
        Self { seed, pos: 0 }
    }

    fn word(&self, index: u64) -> u64 {
        mix64(
            self.seed
                .wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)),
        )
    }

    fn byte_at(&self, pos: u64) -> u8 {
        self.word(pos / 8).to_le_bytes()[(pos % 8) as usize]
    }

    /// Fills `buf` with the next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() && !self.pos.is_multiple_of(8) {
            buf[i] = self.byte_at(self.pos);
            i += 1;
            self.pos += 1;
        }
        let rest = &mut buf[i..];
        let aligned = rest.len() / 8 * 8;
        let (body, tail) = rest.split_at_mut(aligned);
        for (index, c) in (self.pos / 8..).zip(body.chunks_exact_mut(8)) {
            c.copy_from_slice(&self.word(index).to_le_bytes());
        }
        self.pos += aligned as u64;
        for b in tail {
            *b = self.byte_at(self.pos);
            self.pos += 1;
        }
    }

    /// The next `n` bytes as a vector.
    pub fn take_vec(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Length and SHA-256 of a byte sequence: what both ends of a flow compare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub len: u64,
    pub sha: [u8; 32],
}

impl fmt::Debug for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes sha256={}", self.len, hex(&self.sha))
    }
}

impl Summary {
    /// The summary of bytes given in full.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            len: bytes.len() as u64,
            sha: Sha256::digest(bytes).into(),
        }
    }

    /// The 40-byte wire form: SHA-256 then length (u64 little endian).
    pub fn to_wire(self) -> [u8; 40] {
        let mut w = [0; 40];
        w[..32].copy_from_slice(&self.sha);
        w[32..].copy_from_slice(&self.len.to_le_bytes());
        w
    }

    pub fn from_wire(w: &[u8]) -> Self {
        assert!(w.len() >= 40, "summary needs 40 bytes, got {}", w.len());
        let mut sha = [0; 32];
        sha.copy_from_slice(&w[..32]);
        let mut len = [0; 8];
        len.copy_from_slice(&w[32..40]);
        Self {
            len: u64::from_le_bytes(len),
            sha,
        }
    }
}

/// Summary of the first `len` bytes of the stream `seed`, computed locally.
pub fn stream_summary(seed: u64, len: u64) -> Summary {
    let mut s = DataStream::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Summary {
        len,
        sha: h.finalize().into(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// An I/O error with what was being done, so a failing test says where it broke.
pub fn ctx(e: &io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn check_deadline(deadline: Instant, what: &str) -> io::Result<()> {
    if Instant::now() > deadline {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: deadline passed"),
        ));
    }
    Ok(())
}

/// Writes the first `len` bytes of stream `seed` to `w`, hashing them on the way.
pub fn send_stream<W: Write>(
    w: &mut W,
    seed: u64,
    len: u64,
    deadline: Instant,
) -> io::Result<Summary> {
    send_stream_in(w, (seed, len), CHUNK, deadline)
}

/// [`send_stream`] in writes of `chunk` bytes.
pub fn send_stream_in<W: Write>(
    w: &mut W,
    (seed, len): (u64, u64),
    chunk: usize,
    deadline: Instant,
) -> io::Result<Summary> {
    let mut s = DataStream::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0; chunk];
    let mut left = len;
    while left > 0 {
        check_deadline(deadline, "sending stream")?;
        let n = left.min(chunk as u64) as usize;
        s.fill(&mut buf[..n]);
        w.write_all(&buf[..n])
            .map_err(|e| ctx(&e, &format!("write at byte {}", len - left)))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Summary {
        len,
        sha: h.finalize().into(),
    })
}

/// Reads `r` to EOF, hashing everything. Errors (including a reset) are returned as errors.
pub fn recv_to_eof<R: Read>(r: &mut R, deadline: Instant) -> io::Result<Summary> {
    let mut h = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut len = 0u64;
    loop {
        check_deadline(deadline, "reading to EOF")?;
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ctx(&e, &format!("read after {len} bytes"))),
        }
    }
    Ok(Summary {
        len,
        sha: h.finalize().into(),
    })
}

/// Reads `r` to EOF into memory, refusing more than `max` bytes.
pub fn read_all<R: Read>(r: &mut R, max: usize, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        check_deadline(deadline, "reading to EOF")?;
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > max {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("more than {max} bytes"),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ctx(&e, &format!("read after {} bytes", out.len()))),
        }
    }
}

/// Reads one `\n`-terminated line byte by byte (so nothing after it is consumed).
pub fn read_line<R: Read>(r: &mut R, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        check_deadline(deadline, "reading a line")?;
        match r.read(&mut b) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before end of line (got {:?})",
                        String::from_utf8_lossy(&line)
                    ),
                ))
            }
            Ok(_) if b[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => {
                line.push(b[0]);
                if line.len() > 4096 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ctx(&e, "reading a line")),
        }
    }
}

/// How the read side of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// A clean EOF (FIN).
    Eof,
    /// `ECONNRESET` (RST).
    Reset,
    /// The read timed out: the connection was still open.
    StillOpen,
    /// Any other error.
    Other(io::ErrorKind),
}

/// Whether a read's result says the peer closed the connection: EOF or a reset.
pub fn closed_by_peer(read: &io::Result<usize>) -> bool {
    matches!(read, Ok(0))
        || read
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset)
}

/// Reads and discards until the read side ends; returns how it ended and how many bytes came.
pub fn read_until_end<R: Read>(r: &mut R, deadline: Instant) -> (ReadEnd, u64) {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        if Instant::now() > deadline {
            return (ReadEnd::StillOpen, n);
        }
        match r.read(&mut buf) {
            Ok(0) => return (ReadEnd::Eof, n),
            Ok(k) => n += k as u64,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::ConnectionReset => return (ReadEnd::Reset, n),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    return (ReadEnd::StillOpen, n)
                }
                k => return (ReadEnd::Other(k), n),
            },
        }
    }
}
