//! The records of `_getflows` (lb's own runtime API command, see [`super::give`] and
//! [`super::take`]): one per handed-over flow, little-endian, each length checked before use.
//!
//! A record: frontend, backend, server and client (`ip:port`) as `u16` length + UTF-8; the
//! flow's age in ms (`u64`); bytes read from the client and from the server (`u64` each); the
//! five timeouts in ms (`u32`, `u32::MAX` = none: client, server, tunnel, client-fin,
//! server-fin); a `u8` of the flow's options (bit 0: the backend's `option nolinger`; not in
//! the `LBFLOWS2` format, whose records a taker still reads, the option off); unsent bytes
//! client -> server and server -> client (`u32` length + bytes);
//! then a `u8`: 0, or for a flow in the kernel maps the directions the kernel carries (1 both,
//! as lb put flows in before it carried one direction only; 2 client -> server; 3 server ->
//! client), followed by what userspace keeps of it
//! ([`KernelFlow`]): the two sockets' cookies (`u64`), their slots (`u32`), their baselines,
//! the bytes read from each before the kernel took over, the passed bytes sent on each way and
//! the bytes carried in the kernel each way (`u64` pairs), and the time since its last
//! activity in ms (`u64`).
//! A batch message: `u32` flow count, `u32` record bytes, the records, and two fds per flow
//! (client, server) as `SCM_RIGHTS`, then, when a record is a kernel flow's, the old process's
//! [`MAP_FDS`] map fds.

use std::io::{self, IoSlice, IoSliceMut, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::dataplane::sockmap::adopt::{KernelFlow, MAP_FDS};
use crate::dataplane::FlowTimeouts;
use crate::flows::HandedFlow;

/// First bytes of an lb's answer to `_getflows` (HAProxy answers text: "Unknown command").
pub const MAGIC: &[u8; 8] = b"LBFLOWS3";

/// The answer of an lb of the previous format (records without the options byte): its flows
/// are taken all the same.
pub const MAGIC_V2: &[u8; 8] = b"LBFLOWS2";

/// The option bits of a record: the backend's `option nolinger`.
const OPT_NOLINGER: u8 = 1;

/// Flows per batch message: two fds each, and the maps' when a flow is in the kernel, and the
/// kernel takes at most 253 fds in one `SCM_RIGHTS` message (`SCM_MAX_FD`).
pub const MAX_BATCH: usize = (253 - MAP_FDS) / 2;

/// Most fds in one batch message.
pub const MAX_FDS: usize = 2 * MAX_BATCH + MAP_FDS;

/// Most unsent bytes per direction a record may carry (lb's own pipes hold 1 MiB).
pub const MAX_UNSENT: usize = 4 << 20;

/// Most record bytes in one batch: more is a bad answer, not a process.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// A batch message's header: flow count and record bytes.
pub const HEADER: usize = 8;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn ms32(t: Option<Duration>) -> u32 {
    t.map_or(u32::MAX, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX - 1)
    })
}

/// A flow's record: its wire fields, and its kernel state when it lives in the kernel maps.
pub type Record<'a> = (&'a HandedFlow, Option<&'a KernelFlow>);

/// Appends `flow`'s record to `out`.
pub fn encode((flow, kernel): Record<'_>, out: &mut Vec<u8>) {
    put_str(out, &flow.frontend);
    put_str(out, &flow.backend);
    put_str(out, &flow.server);
    put_str(out, &flow.client.to_string());
    let age = u64::try_from(flow.age.as_millis()).unwrap_or(u64::MAX);
    out.extend_from_slice(&age.to_le_bytes());
    out.extend_from_slice(&flow.bytes.0.to_le_bytes());
    out.extend_from_slice(&flow.bytes.1.to_le_bytes());
    let t = &flow.timeouts;
    for v in [t.client, t.server, t.tunnel, t.client_fin, t.server_fin] {
        out.extend_from_slice(&ms32(v).to_le_bytes());
    }
    out.push(if t.nolinger { OPT_NOLINGER } else { 0 });
    for u in [&flow.unsent.0, &flow.unsent.1] {
        let u = &u[..u.len().min(MAX_UNSENT)];
        out.extend_from_slice(&(u.len() as u32).to_le_bytes());
        out.extend_from_slice(u);
    }
    let Some(k) = kernel else {
        out.push(0);
        return;
    };
    out.push(kernel_tag(k.kernel));
    let u64s = [
        k.cookies.0,
        k.cookies.1,
        u64::from(k.slots.0),
        u64::from(k.slots.1),
        k.bases.0,
        k.bases.1,
        k.read.0,
        k.read.1,
        k.drained.0,
        k.drained.1,
        k.carried.0,
        k.carried.1,
        u64::try_from(k.idle.as_millis()).unwrap_or(u64::MAX),
    ];
    for v in u64s {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The record's `u8` for a kernel flow whose directions `kernel` (client -> server, server ->
/// client) the kernel carries.
fn kernel_tag(kernel: (bool, bool)) -> u8 {
    match kernel {
        (true, false) => 2,
        (false, true) => 3,
        _ => 1,
    }
}

/// Whether a batch of these records carries the map fds (one of them is a kernel flow's).
pub fn has_kernel(records: &[(HandedFlow, Option<KernelFlow>)]) -> bool {
    records.iter().any(|(_, k)| k.is_some())
}

/// The fds a batch of `count` flows carries: two per flow, and the maps' when `kernel`.
pub fn fds_due(count: usize, kernel: bool) -> usize {
    2 * count + if kernel { MAP_FDS } else { 0 }
}

/// A batch message's bytes (without its fds).
pub fn batch(flows: &[Record<'_>]) -> Vec<u8> {
    let mut records = Vec::new();
    for f in flows {
        encode(*f, &mut records);
    }
    let mut out = Vec::with_capacity(HEADER + records.len());
    out.extend_from_slice(&(flows.len() as u32).to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend(records);
    out
}

/// Reads one record field after another, naming the record and field that ends too soon.
struct Reader<'a> {
    r: &'a [u8],
    flow: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.r.len() < n {
            return Err(format!(
                "flow {}: the record ends inside its {what} ({} of {n} bytes)",
                self.flow,
                self.r.len()
            ));
        }
        let (v, rest) = self.r.split_at(n);
        self.r = rest;
        Ok(v)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self, what: &str) -> Result<String, String> {
        let n = usize::from(self.u16(what)?);
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("flow {}: its {what} is not UTF-8", self.flow))
    }

    fn timeout(&mut self, what: &str) -> Result<Option<Duration>, String> {
        let v = self.u32(what)?;
        Ok((v != u32::MAX).then(|| Duration::from_millis(u64::from(v))))
    }

    fn pair(&mut self, what: &str) -> Result<(u64, u64), String> {
        Ok((self.u64(what)?, self.u64(what)?))
    }

    fn slot(&mut self, what: &str) -> Result<u32, String> {
        let v = self.u64(what)?;
        u32::try_from(v).map_err(|_| format!("flow {}: its {what} {v} is no map slot", self.flow))
    }

    /// A kernel flow's state after its record's `u8` (0: none), checked against the record.
    fn kernel(&mut self, flow: &HandedFlow) -> Result<Option<KernelFlow>, String> {
        let kernel = match self.take(1, "kernel flag")?[0] {
            0 => return Ok(None),
            1 => (true, true),
            2 => (true, false),
            3 => (false, true),
            other => {
                return Err(format!(
                    "flow {}: kernel flag {other} (0 to 3 expected)",
                    self.flow
                ))
            }
        };
        let k = KernelFlow {
            cookies: self.pair("socket cookie")?,
            slots: (self.slot("client slot")?, self.slot("server slot")?),
            bases: self.pair("baseline")?,
            read: self.pair("bytes read before the maps")?,
            drained: self.pair("bytes drained")?,
            carried: self.pair("bytes carried in the kernel")?,
            idle: Duration::from_millis(self.u64("idle time")?),
            kernel,
        };
        let i = self.flow;
        if k.cookies.0 == 0 || k.cookies.1 == 0 || k.cookies.0 == k.cookies.1 {
            return Err(format!("flow {i}: socket cookies {:?}", k.cookies));
        }
        if k.drained.0 > k.carried.0 || k.drained.1 > k.carried.1 {
            return Err(format!(
                "flow {i}: more bytes drained ({:?}) than carried ({:?})",
                k.drained, k.carried
            ));
        }
        if k.total_read() != flow.bytes {
            return Err(format!(
                "flow {i}: its kernel state counts {:?} bytes read, its record {:?}",
                k.total_read(),
                flow.bytes
            ));
        }
        if !flow.unsent.0.is_empty() || !flow.unsent.1.is_empty() {
            return Err(format!("flow {i}: a kernel flow with unsent bytes"));
        }
        Ok(Some(k))
    }

    fn unsent(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let n = self.u32(what)? as usize;
        if n > MAX_UNSENT {
            return Err(format!(
                "flow {}: {n} {what} bytes (at most {MAX_UNSENT})",
                self.flow
            ));
        }
        Ok(self.take(n, what)?.to_vec())
    }
}

/// Splits `count` records out of `r`, which must hold exactly them; `v2`: records of the
/// `LBFLOWS2` format (no options byte).
pub fn decode(
    r: &[u8],
    count: usize,
    v2: bool,
) -> Result<Vec<(HandedFlow, Option<KernelFlow>)>, String> {
    let mut rd = Reader { r, flow: 0 };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        rd.flow = i;
        let frontend = rd.str("frontend name")?;
        let backend = rd.str("backend name")?;
        let server = rd.str("server name")?;
        let client = rd.str("client address")?;
        let client: SocketAddr = client
            .parse()
            .map_err(|_| format!("flow {i}: bad client address '{client}'"))?;
        let age = Duration::from_millis(rd.u64("age")?);
        let bytes = (rd.u64("bytes in")?, rd.u64("bytes out")?);
        let mut timeouts = FlowTimeouts {
            client: rd.timeout("timeout client")?,
            server: rd.timeout("timeout server")?,
            tunnel: rd.timeout("timeout tunnel")?,
            client_fin: rd.timeout("timeout client-fin")?,
            server_fin: rd.timeout("timeout server-fin")?,
            nolinger: false,
        };
        if !v2 {
            let opts = rd.take(1, "options")?[0];
            if opts & !OPT_NOLINGER != 0 {
                return Err(format!(
                    "flow {i}: option bits {opts:#04x} (only 0x01 known)"
                ));
            }
            timeouts.nolinger = opts & OPT_NOLINGER != 0;
        }
        let unsent = (
            rd.unsent("unsent upstream")?,
            rd.unsent("unsent downstream")?,
        );
        let flow = HandedFlow {
            frontend,
            backend,
            server,
            client,
            age,
            bytes,
            timeouts,
            unsent,
        };
        let kernel = rd.kernel(&flow)?;
        out.push((flow, kernel));
    }
    if !rd.r.is_empty() {
        return Err(format!(
            "{} byte(s) after the last flow's record",
            rd.r.len()
        ));
    }
    Ok(out)
}

/// Sends `data` on `stream` with `fds` as `SCM_RIGHTS` on its first bytes (one `sendmsg`),
/// then what that `sendmsg` left of `data`. For `_getsocks` and `_getflows` alike.
pub fn send_with_fds(stream: &mut UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let first = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(data)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    stream.write_all(&data[first..])
}

/// What one [`recv_with_fds`] got.
pub struct RecvFds {
    /// Bytes read into the buffer.
    pub bytes: usize,
    /// The fds that came with them, owned here (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// More fds came than `max_fds`: the kernel closed the rest.
    pub truncated: bool,
}

/// One `recvmsg` on `stream` into `buf`, with room for `max_fds` fds (`EINTR` is retried).
pub fn recv_with_fds(stream: &UnixStream, buf: &mut [u8], max_fds: usize) -> io::Result<RecvFds> {
    let room = u32::try_from(max_fds * std::mem::size_of::<RawFd>()).unwrap_or(u32::MAX);
    // SAFETY: CMSG_SPACE only computes a size.
    let mut cmsg: Vec<u8> = Vec::with_capacity(unsafe { libc::CMSG_SPACE(room) } as usize);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(list) = c {
                    // SAFETY: the kernel just installed these fds for us.
                    fds.extend(
                        list.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        return Ok(RecvFds {
            bytes: msg.bytes,
            fds,
            truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC),
        });
    }
}

/// A batch header: (flow count, record bytes), each checked against the limits.
pub fn header(h: [u8; HEADER]) -> Result<(usize, usize), String> {
    let count = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if count > MAX_BATCH {
        return Err(format!("a batch of {count} flows (at most {MAX_BATCH})"));
    }
    if len > MAX_BATCH_BYTES {
        return Err(format!(
            "a batch of {len} record bytes (at most {MAX_BATCH_BYTES})"
        ));
    }
    if count == 0 && len != 0 {
        return Err(format!("{len} record bytes for no flow"));
    }
    Ok((count, len))
}

/// A per-flow answer (taken/refused, then yours/mine): `u32` count, then one byte per flow.
pub fn answer(flags: &[bool]) -> Vec<u8> {
    let mut out = (flags.len() as u32).to_le_bytes().to_vec();
    out.extend(flags.iter().map(|&f| u8::from(f)));
    out
}

/// Parses an answer's bytes after its count, which must be `want`.
pub fn parse_answer(count: [u8; 4], flags: &[u8], want: usize) -> Result<Vec<bool>, String> {
    let n = u32::from_le_bytes(count) as usize;
    if n != want {
        return Err(format!("an answer for {n} flows where {want} were sent"));
    }
    flags
        .iter()
        .map(|&b| match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("answer byte {other} (0 or 1 expected)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> HandedFlow {
        HandedFlow {
            frontend: "fe".into(),
            backend: "be".into(),
            server: "s1".into(),
            client: "[::1]:4242".parse().unwrap(),
            age: Duration::from_millis(1234),
            bytes: (1 << 33, 7),
            timeouts: FlowTimeouts {
                client: Some(Duration::from_secs(30)),
                server: None,
                tunnel: Some(Duration::from_hours(1)),
                client_fin: None,
                server_fin: Some(Duration::from_millis(5)),
                nolinger: true,
            },
            unsent: (b"abc".to_vec(), Vec::new()),
        }
    }

    #[test]
    fn records_round_trip() {
        let (a, mut b) = (flow(), flow());
        b.client = "10.0.0.1:1".parse().unwrap();
        b.unsent = (Vec::new(), vec![9; 1000]);
        let msg = batch(&[(&a, None), (&b, None)]);
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&msg[..HEADER]);
        assert_eq!(header(h), Ok((2, msg.len() - HEADER)));
        assert_eq!(
            decode(&msg[HEADER..], 2, false),
            Ok(vec![(a, None), (b, None)])
        );
    }

    /// The options byte carries the backend's `option nolinger`; a record of the `LBFLOWS2`
    /// format has none (the option off), and an unknown bit is refused.
    #[test]
    fn the_options_byte_and_the_previous_format() {
        let mut f = flow();
        f.timeouts.nolinger = false;
        let mut rec = Vec::new();
        encode((&f, None), &mut rec);
        // Names and client (u16 length + bytes each), age and two byte counts, five timeouts.
        let names = [&f.frontend, &f.backend, &f.server, &f.client.to_string()];
        let at = names.iter().map(|n| 2 + n.len()).sum::<usize>() + 3 * 8 + 5 * 4;
        assert_eq!(rec[at], 0);
        assert_eq!(decode(&rec, 1, false), Ok(vec![(f.clone(), None)]));
        rec[at] = OPT_NOLINGER;
        assert!(decode(&rec, 1, false).unwrap()[0].0.timeouts.nolinger);
        rec[at] = 0x81;
        let e = decode(&rec, 1, false).unwrap_err();
        assert_eq!(e, "flow 0: option bits 0x81 (only 0x01 known)");
        rec.remove(at);
        assert_eq!(decode(&rec, 1, true), Ok(vec![(f, None)]));
    }

    #[test]
    fn every_truncation_is_a_clear_error() {
        let msg = batch(&[(&flow(), None)]);
        let records = &msg[HEADER..];
        for cut in 0..records.len() {
            let e = decode(&records[..cut], 1, false).unwrap_err();
            assert!(
                e.starts_with("flow 0: the record ends inside its"),
                "{cut}: {e}"
            );
        }
        assert!(decode(records, 2, false)
            .unwrap_err()
            .starts_with("flow 1:"));
        let mut longer = records.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&longer, 1, false).unwrap_err(),
            "1 byte(s) after the last flow's record"
        );
    }

    #[test]
    fn bad_fields_and_headers_are_refused() {
        let mut f = flow();
        f.client = "127.0.0.1:80".parse().unwrap();
        let mut rec = Vec::new();
        encode((&f, None), &mut rec);
        // The client address's text sits after three names ("fe", "be", "s1").
        let at = 3 * 4 + 2;
        rec[at] = b'x';
        assert!(decode(&rec, 1, false)
            .unwrap_err()
            .contains("bad client address"));
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(&500u32.to_le_bytes());
        assert!(header(h).unwrap_err().contains("at most 123"));
        h[..4].copy_from_slice(&0u32.to_le_bytes());
        h[4..].copy_from_slice(&3u32.to_le_bytes());
        assert!(header(h).unwrap_err().contains("for no flow"));
        let mut rec = Vec::new();
        encode((&flow(), None), &mut rec);
        // Unsent length past the limit: overwrite the first unsent length (before the second
        // one, 3 unsent bytes and the kernel flag).
        let unsent_at = rec.len() - 1 - 4 - 3 - 4;
        rec[unsent_at..unsent_at + 4].copy_from_slice(&(MAX_UNSENT as u32 + 1).to_le_bytes());
        assert!(decode(&rec, 1, false).unwrap_err().contains("at most"));
    }

    fn kernel() -> KernelFlow {
        KernelFlow {
            cookies: (11, 12),
            slots: (4, 5),
            bases: (1, 2),
            read: (1 << 33, 3),
            drained: (10, 0),
            carried: (100, 4),
            idle: Duration::from_millis(250),
            kernel: (true, false),
        }
    }

    /// A flow in the kernel maps: its record counts what its kernel state does.
    fn kernel_flow() -> (HandedFlow, KernelFlow) {
        let k = kernel();
        let mut f = flow();
        f.unsent = (Vec::new(), Vec::new());
        f.bytes = k.total_read();
        (f, k)
    }

    #[test]
    fn kernel_records_round_trip() {
        let (f, k) = kernel_flow();
        let plain = flow();
        let msg = batch(&[(&plain, None), (&f, Some(&k))]);
        let got = decode(&msg[HEADER..], 2, false).unwrap();
        assert_eq!(got, vec![(plain, None), (f.clone(), Some(k))]);
        assert!(has_kernel(&got));
        // Each set of kernel directions, the older lb's both-ways flows among them.
        for kernel in [(true, true), (true, false), (false, true)] {
            let k = KernelFlow { kernel, ..k };
            let msg = batch(&[(&f, Some(&k))]);
            assert_eq!(
                decode(&msg[HEADER..], 1, false).unwrap(),
                vec![(f.clone(), Some(k))]
            );
        }
        assert_eq!(fds_due(2, true), 4 + MAP_FDS);
        assert!(fds_due(MAX_BATCH, true) <= 253, "SCM_MAX_FD");
    }

    #[test]
    fn a_truncated_kernel_record_is_a_clear_error() {
        let (f, k) = kernel_flow();
        let msg = batch(&[(&f, Some(&k))]);
        let records = &msg[HEADER..];
        let mut plain = Vec::new();
        encode((&f, None), &mut plain);
        // Every cut inside the kernel part (after the flag byte's position).
        for cut in plain.len()..records.len() {
            let e = decode(&records[..cut], 1, false).unwrap_err();
            assert!(
                e.starts_with("flow 0: the record ends inside its"),
                "{cut}: {e}"
            );
        }
    }

    #[test]
    fn a_lying_kernel_record_is_refused() {
        let (rec, state) = kernel_flow();
        let lie = |rec: &HandedFlow, state: &KernelFlow| {
            let mut bytes = Vec::new();
            encode((rec, Some(state)), &mut bytes);
            decode(&bytes, 1, false).unwrap_err()
        };
        // Bytes read that its kernel state does not add up to.
        let mut more = rec.clone();
        more.bytes.1 += 1;
        let e = lie(&more, &state);
        assert!(e.contains("its kernel state counts"), "{e}");
        // More drained than carried.
        let mut drained = state;
        drained.drained.1 = drained.carried.1 + 1;
        let mut counted = rec.clone();
        counted.bytes = drained.total_read();
        assert!(lie(&counted, &drained).contains("more bytes drained"));
        // One socket's cookie for both.
        let mut same = state;
        same.cookies.1 = same.cookies.0;
        assert!(lie(&rec, &same).contains("socket cookies"));
        // Unsent bytes: lb hands a kernel flow over only where userspace holds none.
        let mut unsent = rec.clone();
        unsent.unsent.0 = b"x".to_vec();
        assert!(lie(&unsent, &state).contains("unsent"));
        // A flag past 3, and a slot past u32.
        let mut bytes = Vec::new();
        encode((&rec, Some(&state)), &mut bytes);
        let mut plain = Vec::new();
        encode((&rec, None), &mut plain);
        let flag = plain.len() - 1;
        bytes[flag] = 4;
        assert!(decode(&bytes, 1, false)
            .unwrap_err()
            .contains("kernel flag 4"));
        bytes[flag] = 1;
        let slot = flag + 1 + 16 + 4;
        bytes[slot] = 1;
        assert!(decode(&bytes, 1, false)
            .unwrap_err()
            .contains("is no map slot"));
    }

    #[test]
    fn answers_are_checked() {
        let a = answer(&[true, false]);
        let count = [a[0], a[1], a[2], a[3]];
        assert_eq!(parse_answer(count, &a[4..], 2), Ok(vec![true, false]));
        assert!(parse_answer(count, &a[4..], 3)
            .unwrap_err()
            .contains("3 were sent"));
        assert!(parse_answer(count, &[1, 7], 2)
            .unwrap_err()
            .contains("byte 7"));
    }
}
