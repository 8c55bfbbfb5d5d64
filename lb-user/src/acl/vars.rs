//! Variables (`set-var(SCOPE.NAME)`, `var(SCOPE.NAME)`), with HAProxy's scopes: `proc` (the whole
//! configuration generation: every connection sees it; a reload starts afresh, as HAProxy's new
//! process does), `sess`, `txn`, `req`, `res` (one connection; in `mode tcp` a connection is one
//! session and one transaction, and HAProxy keeps `req` and `res` in one store, as here).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Value;

/// A variable's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Proc,
    Sess,
    Txn,
    Req,
    Res,
}

impl Scope {
    fn word(self) -> &'static str {
        match self {
            Scope::Proc => "proc",
            Scope::Sess => "sess",
            Scope::Txn => "txn",
            Scope::Req => "req",
            Scope::Res => "res",
        }
    }

    /// Whether a variable of this scope exists before the stream does (`tcp-request
    /// connection` and `session` rules): only `sess` and `proc` (HAProxy has no transaction
    /// yet; setting another scope there does nothing).
    pub fn before_stream(self) -> bool {
        matches!(self, Scope::Proc | Scope::Sess)
    }
}

/// `SCOPE.NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarName {
    pub scope: Scope,
    pub name: Arc<str>,
}

impl fmt::Display for VarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.scope.word(), self.name)
    }
}

impl VarName {
    /// Parses `SCOPE.NAME` with HAProxy's rules (`vars_hash_name`).
    pub fn parse(s: &str) -> Result<VarName, String> {
        if s.is_empty() {
            return Err("empty variable name".to_owned());
        }
        let scopes = [
            ("proc.", Scope::Proc),
            ("sess.", Scope::Sess),
            ("txn.", Scope::Txn),
            ("req.", Scope::Req),
            ("res.", Scope::Res),
        ];
        let Some((name, scope)) = scopes.iter().find_map(|(p, sc)| {
            s.strip_prefix(p)
                .filter(|n| !n.is_empty())
                .map(|n| (n, *sc))
        }) else {
            if s.starts_with("check.") {
                return Err(format!(
                    "variable '{s}': scope 'check' is for health checks, which lb's tcp-check \
                     has no variables for"
                ));
            }
            return Err(format!(
                "invalid variable name '{s}' (it must start with its scope: proc, sess, txn, \
                 req or res)"
            ));
        };
        if let Some(bad) = name
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '_' && *c != '.')
        {
            return Err(format!("variable '{s}': invalid character '{bad}'"));
        }
        Ok(VarName {
            scope,
            name: Arc::from(name),
        })
    }
}

/// The `proc` scope of one configuration generation, shared by its connections.
#[derive(Debug, Default)]
pub struct ProcVars(Mutex<HashMap<Arc<str>, Value>>);

/// The variables one connection sees.
#[derive(Debug)]
pub struct Vars {
    proc: Arc<ProcVars>,
    sess: HashMap<Arc<str>, Value>,
    txn: HashMap<Arc<str>, Value>,
    reqres: HashMap<Arc<str>, Value>,
    /// Whether the stream exists yet (see [`Scope::before_stream`]).
    stream: bool,
}

impl Vars {
    pub fn new(proc: Arc<ProcVars>) -> Self {
        Self {
            proc,
            sess: HashMap::new(),
            txn: HashMap::new(),
            reqres: HashMap::new(),
            stream: false,
        }
    }

    /// From now on the connection has a stream: every scope can be set.
    pub fn start_stream(&mut self) {
        self.stream = true;
    }

    pub fn get(&self, v: &VarName) -> Option<Value> {
        match v.scope {
            Scope::Proc => self.proc.0.lock().get(&v.name).cloned(),
            Scope::Sess => self.sess.get(&v.name).cloned(),
            Scope::Txn => self.txn.get(&v.name).cloned(),
            Scope::Req | Scope::Res => self.reqres.get(&v.name).cloned(),
        }
    }

    /// Sets `v`; does nothing for a stream scope before the stream exists.
    pub fn set(&mut self, v: &VarName, value: Value) {
        if !self.stream && !v.scope.before_stream() {
            return;
        }
        match v.scope {
            Scope::Proc => {
                self.proc.0.lock().insert(v.name.clone(), value);
            }
            Scope::Sess => {
                self.sess.insert(v.name.clone(), value);
            }
            Scope::Txn => {
                self.txn.insert(v.name.clone(), value);
            }
            Scope::Req | Scope::Res => {
                self.reqres.insert(v.name.clone(), value);
            }
        }
    }

    pub fn unset(&mut self, v: &VarName) {
        match v.scope {
            Scope::Proc => {
                self.proc.0.lock().remove(&v.name);
            }
            Scope::Sess => {
                self.sess.remove(&v.name);
            }
            Scope::Txn => {
                self.txn.remove(&v.name);
            }
            Scope::Req | Scope::Res => {
                self.reqres.remove(&v.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_a_scope_and_plain_characters() {
        let v = VarName::parse("sess.src_ip.port").unwrap();
        assert_eq!((v.scope, &*v.name), (Scope::Sess, "src_ip.port"));
        assert!(VarName::parse("src").is_err());
        assert!(VarName::parse("txn.").is_err());
        assert!(VarName::parse("txn.a-b").is_err());
        assert!(VarName::parse("check.x").is_err());
    }

    #[test]
    fn stream_scopes_wait_for_the_stream_and_proc_is_shared() {
        let proc = Arc::new(ProcVars::default());
        let mut a = Vars::new(proc.clone());
        let txn = VarName::parse("txn.x").unwrap();
        let sess = VarName::parse("sess.x").unwrap();
        let pv = VarName::parse("proc.x").unwrap();
        a.set(&txn, Value::Int(1));
        a.set(&sess, Value::Int(2));
        a.set(&pv, Value::Int(3));
        assert_eq!(a.get(&txn), None);
        assert_eq!(a.get(&sess), Some(Value::Int(2)));
        a.start_stream();
        a.set(&txn, Value::Int(1));
        assert_eq!(a.get(&txn), Some(Value::Int(1)));
        let b = Vars::new(proc);
        assert_eq!(b.get(&pv), Some(Value::Int(3)));
        assert_eq!(b.get(&sess), None);
    }
}
