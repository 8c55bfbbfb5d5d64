//! Converters (`fetch,conv1,conv2(args)`), one [`ConvDef`] each in [`CONVERTERS`], and the map
//! converters `map_<match>[_<output>](FILE[,DEFAULT])` built from a map file at load, as in
//! HAProxy's `src/sample.c` and `src/map.c`.

use std::net::IpAddr;
use std::sync::Arc;

use super::args::{self, Arg, ArgSpec, ArgType};
use super::patref::{Form, Live, Use};
use super::pattern::Method;
use super::{Ctx, Loader, Type, Value};

/// A converter as written, ready to run.
#[derive(Clone, Debug)]
pub enum Conv {
    Lower,
    Upper,
    /// `concat([prefix][,var][,suffix])`.
    Concat(String, Option<super::VarName>, String),
    Length,
    Hex,
    /// `bytes(offset[,length])`.
    Bytes(usize, Option<usize>),
    /// `ipmask(v4 mask[,v6 mask])`: prefix lengths.
    Ipmask(u8, Option<u8>),
    Bool,
    Not,
    /// `field(index,delimiters[,count])`: 1-based index, negative from the end.
    Field(i64, Vec<u8>, Option<i64>),
    Map(Arc<Map>),
}

/// How a converter is read from its arguments.
type Build = fn(&[Arg], &dyn Loader) -> Result<Conv, String>;

/// One converter.
pub struct ConvDef {
    pub name: &'static str,
    pub args: ArgSpec,
    pub input: Type,
    pub out: Type,
    build: Build,
}

const fn def(name: &'static str, args: ArgSpec, input: Type, out: Type, build: Build) -> ConvDef {
    ConvDef {
        name,
        args,
        input,
        out,
        build,
    }
}

const CONCAT: ArgSpec = ArgSpec {
    types: &[ArgType::Str, ArgType::Var, ArgType::Str],
    min: 1,
};
const BYTES: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Int],
    min: 1,
};
const IPMASK: ArgSpec = ArgSpec {
    types: &[ArgType::Str, ArgType::Str],
    min: 1,
};
const FIELD: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Str, ArgType::Int],
    min: 2,
};
const MAP: ArgSpec = ArgSpec {
    types: &[ArgType::Str, ArgType::Str],
    min: 1,
};

/// Every converter except the maps (see [`lookup`]).
pub static CONVERTERS: &[ConvDef] = &[
    def("lower", ArgSpec::NONE, Type::Str, Type::Str, |_, _| {
        Ok(Conv::Lower)
    }),
    def("upper", ArgSpec::NONE, Type::Str, Type::Str, |_, _| {
        Ok(Conv::Upper)
    }),
    def("concat", CONCAT, Type::Str, Type::Str, |a, _| {
        let var = match a.get(1) {
            Some(Arg::Var(v)) => v.clone(),
            _ => None,
        };
        Ok(Conv::Concat(
            a[0].str().to_owned(),
            var,
            a.get(2).map_or_else(String::new, |s| s.str().to_owned()),
        ))
    }),
    def("length", ArgSpec::NONE, Type::Str, Type::Int, |_, _| {
        Ok(Conv::Length)
    }),
    def("hex", ArgSpec::NONE, Type::Bin, Type::Str, |_, _| {
        Ok(Conv::Hex)
    }),
    def("bytes", BYTES, Type::Bin, Type::Bin, |a, _| {
        let off = usize::try_from(a[0].int()).map_err(|_| "offset must be 0 or more".to_owned())?;
        let len = match a.get(1) {
            Some(l) => {
                Some(usize::try_from(l.int()).map_err(|_| "length must be 0 or more".to_owned())?)
            }
            None => None,
        };
        Ok(Conv::Bytes(off, len))
    }),
    def("ipmask", IPMASK, Type::Addr, Type::Addr, |a, _| {
        let v4 = mask_len(a[0].str(), 32)?;
        let v6 = a.get(1).map(|m| mask_len(m.str(), 128)).transpose()?;
        Ok(Conv::Ipmask(v4, v6))
    }),
    def("bool", ArgSpec::NONE, Type::Int, Type::Bool, |_, _| {
        Ok(Conv::Bool)
    }),
    def("not", ArgSpec::NONE, Type::Int, Type::Bool, |_, _| {
        Ok(Conv::Not)
    }),
    def("field", FIELD, Type::Str, Type::Str, |a, _| {
        if a[0].int() == 0 || a[1].str().is_empty() {
            return Err("field index must not be 0 and delimiters must not be empty".to_owned());
        }
        Ok(Conv::Field(
            a[0].int(),
            a[1].str().as_bytes().to_vec(),
            a.get(2).map(Arg::int),
        ))
    }),
];

/// `24` or `255.255.255.0` (IPv4 only) as a prefix length.
fn mask_len(s: &str, max: u8) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        if n <= max {
            return Ok(n);
        }
    }
    if max == 32 {
        if let Ok(m) = s.parse::<std::net::Ipv4Addr>() {
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() == 32 {
                return Ok(bits.leading_ones() as u8);
            }
        }
    }
    Err(format!("invalid mask '{s}'"))
}

/// A converter name, resolved.
pub enum Lookup {
    Plain(&'static ConvDef),
    /// `map_<match>[_<out>]`: the key's method and the output type.
    Map {
        method: Method,
        out: Type,
    },
}

impl Lookup {
    pub fn args(&self) -> ArgSpec {
        match self {
            Lookup::Plain(d) => d.args,
            Lookup::Map { .. } => MAP,
        }
    }

    pub fn input(&self) -> Type {
        match self {
            Lookup::Plain(d) => d.input,
            Lookup::Map { method, .. } => method.input(),
        }
    }

    pub fn out(&self) -> Type {
        match self {
            Lookup::Plain(d) => d.out,
            Lookup::Map { out, .. } => *out,
        }
    }

    /// Builds the converter from its arguments (a map reads its file now).
    pub fn build(&self, args: &[Arg], loader: &dyn Loader) -> Result<Conv, String> {
        match self {
            Lookup::Plain(d) => (d.build)(args, loader),
            Lookup::Map { method, out } => {
                let path = args[0].str();
                let r = loader.file_ref(path, true, Use::Map)?;
                let mut map = Map {
                    live: r.user(Form::map(*method, *out))?,
                    default: None,
                };
                if let Some(d) = args.get(1) {
                    map.default =
                        Some(Value::str(d.str()).cast(*out).ok_or_else(|| {
                            format!("default value '{}' is not a {out}", d.str())
                        })?);
                }
                Ok(Conv::Map(Arc::new(map)))
            }
        }
    }
}

/// Finds the converter called `name`.
pub fn lookup(name: &str) -> Option<Lookup> {
    if let Some(d) = CONVERTERS.iter().find(|d| d.name == name) {
        return Some(Lookup::Plain(d));
    }
    let rest = name.strip_prefix("map")?;
    let (matching, out) = if rest.is_empty() {
        ("str", "str")
    } else {
        let r = rest.strip_prefix('_')?;
        r.split_once('_').unwrap_or((r, "str"))
    };
    let method = match matching {
        "str" | "beg" | "sub" | "dir" | "dom" | "end" | "reg" | "int" | "ip" => {
            Method::from_name(matching)?
        }
        _ => return None,
    };
    let out = match out {
        "str" => Type::Str,
        "int" => Type::Int,
        "ip" => Type::Addr,
        _ => return None,
    };
    Some(Lookup::Map { method, out })
}

/// A map file: keys matched with the map's method, values of its output type, as its
/// reference holds them now ([`super::patref`]: `add map`, `set map`... change them).
#[derive(Debug)]
pub struct Map {
    live: Arc<Live>,
    default: Option<Value>,
}

impl Map {
    pub fn lookup(&self, key: &Value) -> Option<Value> {
        let c = self.live.load();
        match c.find(key) {
            Some(i) => c.values.get(i).cloned(),
            None => self.default.clone(),
        }
    }
}

impl Conv {
    /// Runs the converter on `v` (already cast to its input type). `None`: no sample.
    pub fn apply(&self, v: Value, ctx: &Ctx<'_>) -> Option<Value> {
        Some(match (self, v) {
            (Conv::Lower, Value::Str(s)) => Value::Str(s.to_ascii_lowercase()),
            (Conv::Upper, Value::Str(s)) => Value::Str(s.to_ascii_uppercase()),
            (Conv::Concat(pre, var, post), Value::Str(mut s)) => {
                s.extend_from_slice(pre.as_bytes());
                if let Some(v) = var.as_ref().and_then(|v| ctx.vars.get(v)) {
                    if let Some(Value::Str(t)) = v.cast(Type::Str) {
                        s.extend_from_slice(&t);
                    }
                }
                s.extend_from_slice(post.as_bytes());
                s.truncate(ctx.bufsize);
                Value::Str(s)
            }
            (Conv::Length, Value::Str(s)) => Value::Int(s.len() as i64),
            (Conv::Hex, Value::Bin(b)) => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                Value::Str(
                    b.iter()
                        .flat_map(|x| [HEX[usize::from(x >> 4)], HEX[usize::from(x & 15)]])
                        .collect(),
                )
            }
            (Conv::Bytes(off, len), Value::Bin(b)) => {
                let start = (*off).min(b.len());
                let end = len.map_or(b.len(), |l| (start + l).min(b.len()));
                if *off >= b.len() {
                    return None;
                }
                Value::Bin(b[start..end].to_vec())
            }
            (Conv::Ipmask(v4, v6), Value::Addr(a)) => Value::Addr(mask(a, *v4, *v6)?),
            (Conv::Bool, Value::Int(i)) => Value::Bool(i != 0),
            (Conv::Not, Value::Int(i)) => Value::Bool(i == 0),
            (Conv::Field(idx, delims, count), Value::Str(s)) => {
                Value::Str(field(&s, *idx, delims, *count))
            }
            (Conv::Map(m), v) => m.lookup(&v)?,
            _ => return None,
        })
    }
}

fn mask(a: IpAddr, v4: u8, v6: Option<u8>) -> Option<IpAddr> {
    Some(match a {
        IpAddr::V4(x) => {
            let m = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            IpAddr::V4((u32::from(x) & m).into())
        }
        IpAddr::V6(x) => {
            let len = v6?;
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(x) & m).into())
        }
    })
}

/// HAProxy's `field`: the `idx`-th field (1-based; negative counts from the end), and `count`
/// fields from there.
fn field(s: &[u8], idx: i64, delims: &[u8], count: Option<i64>) -> Vec<u8> {
    let parts: Vec<&[u8]> = s.split(|c| delims.contains(c)).collect();
    let n = parts.len() as i64;
    let start = if idx > 0 { idx - 1 } else { n + idx };
    if start < 0 || start >= n {
        return Vec::new();
    }
    let count = count.filter(|c| *c > 0).unwrap_or(1);
    let (first, last) = if idx > 0 {
        (start, (start + count - 1).min(n - 1))
    } else {
        ((start - count + 1).max(0), start)
    };
    let sep = delims[0];
    let mut out = Vec::new();
    for (i, p) in parts[first as usize..=last as usize].iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.extend_from_slice(p);
    }
    out
}

/// Parses one converter's arguments and builds it.
pub fn parse_one(
    look: &Lookup,
    text_after_name: &str,
    loader: &dyn Loader,
) -> Result<(Conv, usize), String> {
    let (a, rest) = args::parse(text_after_name, look.args())?;
    let conv = look.build(&a, loader)?;
    Ok((conv, text_after_name.len() - rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names() {
        assert!(matches!(
            lookup("map_str"),
            Some(Lookup::Map {
                method: Method::Str,
                out: Type::Str
            })
        ));
        assert!(matches!(
            lookup("map_beg_int"),
            Some(Lookup::Map {
                method: Method::Beg,
                out: Type::Int
            })
        ));
        assert!(matches!(
            lookup("map_ip"),
            Some(Lookup::Map {
                method: Method::Ip,
                out: Type::Str
            })
        ));
        assert!(matches!(lookup("map"), Some(Lookup::Map { .. })));
        assert!(lookup("map_xyz").is_none());
        assert!(lookup("map_str_xyz").is_none());
    }

    #[test]
    fn map_files() {
        let load = |method, out, path: &str, bytes: &[u8]| {
            let live = super::super::patref::PatRef::from_file(path, bytes, true)
                .user(Form::map(method, out))?;
            Ok::<_, String>(Map {
                live,
                default: None,
            })
        };
        let m = load(
            Method::Str,
            Type::Str,
            "tcp2be.map",
            b"# src:port backend\n10.0.0.1:389   ldap  \n10.0.0.2:389\tldap2\n\n",
        )
        .unwrap();
        assert_eq!(
            m.lookup(&Value::str("10.0.0.2:389")),
            Some(Value::str("ldap2"))
        );
        assert_eq!(
            m.lookup(&Value::str("10.0.0.1:389")),
            Some(Value::str("ldap"))
        );
        assert_eq!(m.lookup(&Value::str("x")), None);
        let e = load(Method::Str, Type::Int, "m", b"a 1\nb two\n").unwrap_err();
        assert!(e.contains("map file 'm' line 2"), "{e}");
        let ip = load(Method::Ip, Type::Str, "m", b"10.0.0.0/8 a\n10.1.0.0/16 b\n").unwrap();
        assert_eq!(
            ip.lookup(&Value::Addr("10.1.1.1".parse().unwrap())),
            Some(Value::str("b"))
        );
    }

    #[test]
    fn fields() {
        assert_eq!(field(b"a:b:c", 2, b":", None), b"b".to_vec());
        assert_eq!(field(b"a:b:c", -1, b":", None), b"c".to_vec());
        assert_eq!(field(b"a:b:c", 1, b":", Some(2)), b"a:b".to_vec());
        assert_eq!(field(b"a:b:c", 5, b":", None), Vec::<u8>::new());
    }
}
