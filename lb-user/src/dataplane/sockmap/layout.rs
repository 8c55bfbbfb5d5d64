//! Where the verdict program finds a socket's read point: the offsets of `sk_buff.sk` and
//! `tcp_sock.copied_seq` in the running kernel, read from its BTF (`/sys/kernel/btf/vmlinux`)
//! at load and given to the program as a global ([`KernelLayout`]).
//!
//! Why: the program cuts the head of an skb that repeats bytes the socket already delivered
//! (trap 9 in the module header). For every skb after the first it knows where the data ended
//! from the skb before; for the first skb after a hand-over from splice it compares with the
//! socket's `copied_seq`, the point up to which userspace read (the kernel advances it for the
//! program's skbs only after the verdict, in `tcp_eat_skb`). `tcp_sock`'s layout depends on the
//! kernel's configuration, so it is looked up, not assumed. Without BTF the offsets are 0 and
//! the first skb is not checked, as before.
//!
//! The BTF format (Documentation/bpf/btf.rst): a header, then type records numbered from 1,
//! each a `btf_type` (`name_off`, `info`: kind in bits 24–28, member count in bits 0–15,
//! `kind_flag` in bit 31; `size`/`type`) followed by data whose length depends on the kind,
//! then a string section that `name_off`s index.

use lb_common::KernelLayout;

/// Where the running kernel describes its types.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// The running kernel's layout, or zeros (nothing checked) with a log line saying why.
pub(super) fn kernel_layout() -> KernelLayout {
    let found = std::fs::read(VMLINUX_BTF)
        .map_err(|e| format!("{VMLINUX_BTF}: {e}"))
        .and_then(|data| {
            let btf = Btf::parse(&data)?;
            Ok(KernelLayout {
                // The program reads `seq`, `end_seq`, the GSO fields and `tcp_flags`.
                skb_cb: btf.member_offset("sk_buff", "cb", 16)?,
                skb_sk: btf.member_offset("sk_buff", "sk", 8)?,
                tcp_copied_seq: btf.member_offset("tcp_sock", "copied_seq", 4)?,
            })
        });
    found.unwrap_or_else(|e| {
        log::info!(
            "sockmap: kernel layout unknown ({e}): sk_buff.cb is assumed at byte {}, and a \
             retransmission overlapping what splice read before a flow entered the maps is not \
             cut",
            KernelLayout::UNKNOWN.skb_cb
        );
        KernelLayout::UNKNOWN
    })
}

/// One type record: its kind, name, `size`/`type` word, member count and where its data starts.
#[derive(Clone, Copy)]
struct Type {
    kind: u32,
    name_off: u32,
    kind_flag: bool,
    size_or_id: u32,
    vlen: usize,
    data: usize,
}

/// A parsed BTF blob: its type records (index = type id) and its sections.
struct Btf<'a> {
    types: Vec<Type>,
    type_section: &'a [u8],
    strings: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let magic = data
            .get(..2)
            .map(|m| u16::from_ne_bytes([m[0], m[1]]))
            .ok_or("empty")?;
        if magic != BTF_MAGIC {
            return Err(format!("not BTF in this byte order (magic {magic:#x})"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let section = |off: usize, len: usize| -> Result<&'a [u8], String> {
            let (off, len) = (u32_at(data, off)? as usize, u32_at(data, len)? as usize);
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or_else(|| "a section runs past the end".to_string())
        };
        let type_section = section(8, 12)?;
        let strings = section(16, 20)?;
        // Type 0 is `void`, never recorded.
        let mut types = vec![Type {
            kind: 0,
            name_off: 0,
            kind_flag: false,
            size_or_id: 0,
            vlen: 0,
            data: 0,
        }];
        let mut at = 0;
        while at < type_section.len() {
            let info = u32_at(type_section, at + 4)?;
            let t = Type {
                kind: (info >> 24) & 0x1f,
                name_off: u32_at(type_section, at)?,
                kind_flag: info >> 31 == 1,
                size_or_id: u32_at(type_section, at + 8)?,
                vlen: (info & 0xffff) as usize,
                data: at + 12,
            };
            at = t.data + data_len(t.kind, t.vlen)?;
            types.push(t);
        }
        Ok(Self {
            types,
            type_section,
            strings,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn get(&self, id: u32) -> Result<Type, String> {
        self.types
            .get(id as usize)
            .copied()
            .ok_or_else(|| format!("type id {id} out of range"))
    }

    /// The type behind typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<Type, String> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_id;
                }
                _ => return Ok(t),
            }
        }
        Err(format!("type id {id}: qualifiers nest too deep"))
    }

    /// Byte offset of `member` in the struct named `strukt`, looking into anonymous structs and
    /// unions; the member must be a whole-byte field of `size` bytes (an integer or a pointer),
    /// or an array of integers of at least `size` bytes.
    fn member_offset(&self, strukt: &str, member: &str, size: u32) -> Result<u32, String> {
        let t = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == strukt.as_bytes())
            .ok_or_else(|| format!("no struct {strukt}"))?;
        let (bits, ty) = self
            .find_member(*t, member.as_bytes(), 0, 0)?
            .ok_or_else(|| format!("no member {member} in struct {strukt}"))?;
        let ty = self.resolve(ty)?;
        let fits = match ty.kind {
            KIND_INT => ty.size_or_id == size,
            KIND_PTR => size == 8,
            KIND_ARRAY => self.array_bytes(ty)? >= u64::from(size),
            k => {
                return Err(format!(
                    "{strukt}.{member}: of kind {k}, not an integer, pointer or array"
                ))
            }
        };
        if bits % 8 != 0 || !fits {
            return Err(format!(
                "{strukt}.{member}: at bit {bits}, not {size} whole bytes"
            ));
        }
        Ok(bits / 8)
    }

    /// Bytes of an array of integers (`struct btf_array`: element type, index type, count).
    fn array_bytes(&self, array: Type) -> Result<u64, String> {
        let elem = self.resolve(u32_at(self.type_section, array.data)?)?;
        if elem.kind != KIND_INT {
            return Err(format!("an array of kind {} elements", elem.kind));
        }
        let count = u32_at(self.type_section, array.data + 8)?;
        Ok(u64::from(elem.size_or_id) * u64::from(count))
    }

    /// `(bit offset, type id)` of `name` among `t`'s members, `base` bits into the outer struct.
    fn find_member(
        &self,
        t: Type,
        name: &[u8],
        base: u32,
        depth: u32,
    ) -> Result<Option<(u32, u32)>, String> {
        if depth > 8 {
            return Err("anonymous members nest too deep".into());
        }
        for i in 0..t.vlen {
            let at = t.data + 12 * i;
            let (name_off, ty, off) = (
                u32_at(self.type_section, at)?,
                u32_at(self.type_section, at + 4)?,
                u32_at(self.type_section, at + 8)?,
            );
            // With `kind_flag`, the high 8 bits are a bitfield's width.
            let (bits, bitfield) = if t.kind_flag {
                (off & 0x00ff_ffff, off >> 24 != 0)
            } else {
                (off, false)
            };
            let at_bits = base
                .checked_add(bits)
                .ok_or("a member's offset overflows")?;
            if name_off == 0 {
                let inner = self.resolve(ty)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                    if let Some(found) = self.find_member(inner, name, at_bits, depth + 1)? {
                        return Ok(Some(found));
                    }
                }
            } else if self.name(name_off) == name {
                if bitfield {
                    return Err("a bitfield".into());
                }
                return Ok(Some((at_bits, ty)));
            }
        }
        Ok(None)
    }
}

/// Bytes of kind-specific data after a `btf_type` record.
fn data_len(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7..=12 | 16 | 18 => 0,
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        k => return Err(format!("unknown kind {k}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob of `types` (each a record's words) over `strings`.
    fn blob(types: &[Vec<u32>], strings: &[u8]) -> Vec<u8> {
        let ty: Vec<u8> = types
            .iter()
            .flatten()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            ty.len() as u32,
            ty.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend_from_slice(&ty);
        b.extend_from_slice(strings);
        b
    }

    /// Where `name` starts in the string section `strings`.
    fn name_off(strings: &[u8], name: &str) -> u32 {
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        let at = strings.windows(needle.len()).position(|w| w == needle);
        at.expect("a name of the section") as u32 + 1
    }

    fn info(kind: u32, vlen: u32, kind_flag: bool) -> u32 {
        (u32::from(kind_flag) << 31) | (kind << 24) | vlen
    }

    /// `struct tcp_sock { int a; union { u64 x; struct { u32 pad; u32 copied_seq; }; }; u32
    /// flag:1; }` with a typedef `u32`, and an enum between the types.
    #[test]
    fn finds_a_member_inside_anonymous_unions_and_structs() {
        let strings = b"\0int\0u32\0tcp_sock\0a\0copied_seq\0pad\0x\0flag\0E\0V\0";
        let s = |name: &str| name_off(strings, name);
        let types = vec![
            vec![s("int"), info(KIND_INT, 0, false), 4, 0x20], // 1
            vec![s("u32"), info(KIND_TYPEDEF, 0, false), 1],   // 2
            vec![s("E"), info(6, 1, false), 4, s("V"), 0],     // 3: enum
            // 4: struct { u32 pad; u32 copied_seq; } (anonymous)
            vec![
                0,
                info(KIND_STRUCT, 2, false),
                8,
                s("pad"),
                2,
                0,
                s("copied_seq"),
                2,
                32,
            ],
            // 5: union { int x; struct 4; } (anonymous)
            vec![0, info(KIND_UNION, 2, false), 8, s("x"), 1, 0, 0, 4, 0],
            // 6: struct tcp_sock { int a; union 5 (at bit 64); u32 flag:1 (at bit 128) }
            vec![
                s("tcp_sock"),
                info(KIND_STRUCT, 3, true),
                24,
                s("a"),
                1,
                0,
                0,
                5,
                64,
                s("flag"),
                2,
                (1 << 24) | 128,
            ],
        ];
        let data = blob(&types, strings);
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("tcp_sock", "copied_seq", 4), Ok(12));
        assert_eq!(btf.member_offset("tcp_sock", "a", 4), Ok(0));
        assert!(
            btf.member_offset("tcp_sock", "flag", 4).is_err(),
            "a bitfield"
        );
        assert!(
            btf.member_offset("tcp_sock", "a", 8).is_err(),
            "wrong width"
        );
        assert!(btf.member_offset("tcp_sock", "nope", 4).is_err());
        assert!(btf.member_offset("sk_buff", "sk", 8).is_err());
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 24]).is_err());
        let mut data = blob(&[vec![0, info(KIND_INT, 0, false), 4, 0x20]], b"\0");
        // The type section claims more bytes than there are.
        data[12] = 200;
        assert!(Btf::parse(&data).is_err());
        // Offsets that add up past u32: an error, not an overflow.
        let strings = b"\0int\0s\0m\0";
        let data = blob(
            &[
                vec![1, info(KIND_INT, 0, false), 4, 0x20],
                vec![0, info(KIND_STRUCT, 1, false), 4, 7, 1, u32::MAX],
                vec![5, info(KIND_STRUCT, 1, false), 8, 0, 2, u32::MAX],
            ],
            strings,
        );
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.member_offset("s", "m", 4).is_err());
        // A record whose kind is unknown.
        let data = blob(&[vec![0, info(31, 0, false), 4]], b"\0");
        assert!(Btf::parse(&data).is_err());
    }

    /// This kernel's BTF agrees with what lb-common assumes of `sk_buff` (`cb` at 40, `sk`
    /// before `tstamp`), and names `tcp_sock.copied_seq`.
    #[test]
    fn reads_this_kernels_layout() {
        let layout = kernel_layout();
        assert_eq!(layout.skb_cb, lb_common::SKB_CB_OFFSET as u32);
        assert_eq!(layout.skb_sk, 24);
        assert!(
            layout.tcp_copied_seq > 1000,
            "copied_seq lies past the inet_connection_sock: {}",
            layout.tcp_copied_seq
        );
    }

    /// `struct sk_buff { void *sk; char cb[48]; struct { int a; } s[2]; }`: an array of
    /// integers is found when it holds the bytes asked for.
    #[test]
    fn finds_an_array_member() {
        let strings = b"\0char\0sk_buff\0sk\0cb\0s\0a\0";
        let s = |name: &str| name_off(strings, name);
        let types = vec![
            vec![s("char"), info(KIND_INT, 0, false), 1, 8],  // 1
            vec![0, info(KIND_PTR, 0, false), 0],             // 2: void *
            vec![0, info(KIND_ARRAY, 0, false), 0, 1, 1, 48], // 3: char[48]
            vec![0, info(KIND_STRUCT, 1, false), 4, s("a"), 1, 0], // 4: struct { a }
            vec![0, info(KIND_ARRAY, 0, false), 0, 4, 1, 2],  // 5: struct 4 [2]
            vec![
                s("sk_buff"),
                info(KIND_STRUCT, 3, false),
                64,
                s("sk"),
                2,
                0,
                s("cb"),
                3,
                64,
                s("s"),
                5,
                448,
            ],
        ];
        let data = blob(&types, strings);
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("sk_buff", "cb", 16), Ok(8));
        assert_eq!(btf.member_offset("sk_buff", "cb", 48), Ok(8));
        assert!(btf.member_offset("sk_buff", "cb", 49).is_err(), "too small");
        assert!(btf.member_offset("sk_buff", "s", 4).is_err(), "of structs");
        assert_eq!(btf.member_offset("sk_buff", "sk", 8), Ok(0));
    }
}
