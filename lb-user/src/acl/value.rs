//! Sample values and their types, with HAProxy's casts (`sample_casts` in `src/sample.c`):
//! what a converter or a matching method may be given, and how a value turns into another type.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The type of a sample (HAProxy's `SMP_T_*`; `Addr` is "IPv4 or IPv6").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Addr,
    Str,
    Bin,
    /// Any type (variables: known only at run time).
    Any,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "boolean",
            Type::Int => "integer",
            Type::Addr => "address",
            Type::Str => "string",
            Type::Bin => "binary",
            Type::Any => "any",
        })
    }
}

impl Type {
    /// Whether a value of type `self` can always be turned into `to` (the cast may still fail
    /// on a given value, e.g. a string that is not a number).
    pub fn casts_to(self, to: Type) -> bool {
        use Type::{Addr, Any, Bin, Bool, Int, Str};
        match (self, to) {
            (Any, _) | (_, Any) => true,
            (a, b) if a == b => true,
            (Bool | Int, Bool | Int | Str | Bin)
            | (Int, Addr)
            | (Addr, Int | Str | Bin)
            | (Str, _)
            | (Bin, Str) => true,
            _ => false,
        }
    }
}

/// One sample value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Addr(IpAddr),
    Str(Vec<u8>),
    Bin(Vec<u8>),
}

impl Value {
    pub fn ty(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Addr(_) => Type::Addr,
            Value::Str(_) => Type::Str,
            Value::Bin(_) => Type::Bin,
        }
    }

    pub fn str(s: impl Into<Vec<u8>>) -> Self {
        Value::Str(s.into())
    }

    /// This value as type `to`, or `None` when it has no such form (HAProxy's failed cast:
    /// the sample is then absent).
    pub fn cast(self, to: Type) -> Option<Value> {
        Some(match (self, to) {
            (v, Type::Any) => v,
            (Value::Bool(b), Type::Bool) => Value::Bool(b),
            (Value::Bool(b), Type::Int) => Value::Int(i64::from(b)),
            (Value::Int(i), Type::Int) => Value::Int(i),
            (Value::Int(i), Type::Bool) => Value::Bool(i != 0),
            (Value::Int(i), Type::Addr) => {
                Value::Addr(IpAddr::V4(Ipv4Addr::from(u32::try_from(i).ok()?)))
            }
            (v @ (Value::Bool(_) | Value::Int(_)), Type::Str) => {
                Value::Str(v.as_int()?.to_string().into_bytes())
            }
            (v @ (Value::Bool(_) | Value::Int(_)), Type::Bin) => {
                Value::Bin(v.as_int()?.to_be_bytes().to_vec())
            }
            (Value::Addr(a), Type::Addr) => Value::Addr(a),
            (Value::Addr(IpAddr::V4(a)), Type::Int) => Value::Int(i64::from(u32::from(a))),
            (Value::Addr(IpAddr::V6(_)), Type::Int) => return None,
            (Value::Addr(a), Type::Str) => Value::Str(a.to_string().into_bytes()),
            (Value::Addr(IpAddr::V4(a)), Type::Bin) => Value::Bin(a.octets().to_vec()),
            (Value::Addr(IpAddr::V6(a)), Type::Bin) => Value::Bin(a.octets().to_vec()),
            (Value::Str(s), Type::Str) => Value::Str(s),
            (Value::Str(s) | Value::Bin(s), Type::Bin) => Value::Bin(s),
            (Value::Str(s), Type::Int) => Value::Int(parse_int(&s)?),
            (Value::Str(s), Type::Bool) => Value::Bool(parse_int(&s)? != 0),
            (Value::Str(s), Type::Addr) => Value::Addr(parse_addr(&s)?),
            // HAProxy's bin-to-string keeps the bytes (a NUL ends C strings, not ours).
            (Value::Bin(b), Type::Str) => Value::Str(b),
            (Value::Bin(_), _) | (Value::Bool(_), Type::Addr) | (Value::Addr(_), Type::Bool) => {
                return None
            }
        })
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as text, as `%[...]` prints it (a string or binary value as its bytes, the
    /// others in decimal or address form).
    pub fn to_text(&self) -> Vec<u8> {
        match self {
            Value::Bool(b) => {
                if *b {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                }
            }
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Addr(a) => a.to_string().into_bytes(),
            Value::Str(s) | Value::Bin(s) => s.clone(),
        }
    }
}

/// A decimal integer as HAProxy's string-to-integer cast reads it: optional sign, digits,
/// nothing else.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.is_empty()
        || !t
            .trim_start_matches(['-', '+'])
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    t.parse().ok()
}

/// An IPv4 or IPv6 address written as text.
pub fn parse_addr(s: &[u8]) -> Option<IpAddr> {
    let t = std::str::from_utf8(s).ok()?;
    t.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| t.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_follow_haproxy() {
        assert_eq!(Value::Int(5).cast(Type::Str), Some(Value::str("5")));
        assert_eq!(Value::Bool(true).cast(Type::Int), Some(Value::Int(1)));
        assert_eq!(Value::str("-12").cast(Type::Int), Some(Value::Int(-12)));
        assert_eq!(Value::str("12a").cast(Type::Int), None);
        assert_eq!(
            Value::str("10.0.0.1").cast(Type::Addr),
            Some(Value::Addr("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            Value::Addr("::1".parse().unwrap()).cast(Type::Str),
            Some(Value::str("::1"))
        );
        assert_eq!(Value::Bin(vec![1]).cast(Type::Int), None);
        assert!(!Type::Bin.casts_to(Type::Int));
        assert!(Type::Str.casts_to(Type::Addr));
    }
}
