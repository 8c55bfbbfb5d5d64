//! HAProxy's pattern references (`pat_ref` in `src/pattern.c`): the entries of one pattern file,
//! or of one ACL line's own patterns, kept beside every compiled form built from them, so that
//! the runtime API (`add acl`, `del acl`, `set map`, `clear map`...) changes what every ACL and
//! map using them matches, at once.
//!
//! A reference is shared by every ACL (`-f FILE`, `-M -f FILE`) and map converter
//! (`map_ip(FILE)`) of one configuration that names the same file; each inline pattern list is
//! a reference of its own (`#ID`). Each user compiles the entries with its own matching method
//! and flags ([`Form`]) into a [`Compiled`] that readers load without a lock ([`Live::load`]);
//! a change compiles the new entries for every user first and swaps them in only when all
//! succeeded, so a pattern one user can't read changes nothing (HAProxy's `pat_ref_load`).
//! A reload reads the files again: run-time changes are lost, as in HAProxy.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use super::pattern::{file_lines, trim_start, Method, Patterns};
use super::value::{Type, Value};

/// One entry (HAProxy's `pat_ref_elt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its handle: `show acl|map REF` prints it as `0x…`, `del`/`set` take it back as `#0x…`
    /// (HAProxy prints the entry's address).
    pub id: u64,
    pub key: String,
    /// Its value, in a two-column reference (maps, `-M`).
    pub value: Option<String>,
    /// Its line in the file it was read from (0: added at run time).
    line: usize,
}

/// Entry handles, unique in the process (as addresses would be).
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(1);

impl Entry {
    fn new(key: String, value: Option<String>, line: usize) -> Self {
        Entry {
            id: NEXT_ENTRY.fetch_add(1, Ordering::Relaxed),
            key,
            value,
            line,
        }
    }
}

/// How one user compiles a reference's entries: an ACL expression's method and flags, or a
/// map converter's method and output type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Form {
    pub method: Method,
    /// `-i`.
    pub icase: bool,
    /// `-n`.
    pub no_dns: bool,
    /// Integers written as dotted versions.
    pub dotted: bool,
    /// A map's output type (`None`: an ACL, which reads the keys only).
    pub out: Option<Type>,
}

impl Form {
    pub fn acl(method: Method) -> Self {
        Form {
            method,
            icase: false,
            no_dns: false,
            dotted: false,
            out: None,
        }
    }

    pub fn map(method: Method, out: Type) -> Self {
        Form {
            out: Some(out),
            ..Form::acl(method)
        }
    }

    /// No pattern yet, with this form's method and flags.
    pub fn empty_patterns(self) -> Patterns {
        let mut keys = Patterns::new(self.method);
        keys.icase = self.icase;
        keys.no_dns = self.no_dns;
        keys.dotted = self.dotted;
        keys
    }

    fn empty(self) -> Compiled {
        Compiled {
            keys: self.empty_patterns(),
            values: Vec::new(),
        }
    }
}

/// A reference's entries compiled in one [`Form`]: key `i` is entry `i`, with value `i`.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub keys: Patterns,
    /// A map's values (empty for an ACL).
    pub values: Vec<Value>,
}

impl Compiled {
    /// Adds one entry: the error says why its key or value doesn't read in this form.
    fn push(&mut self, form: Form, e: &Entry) -> Result<(), String> {
        let value = match form.out {
            Some(out) => {
                let v = e.value.as_deref().unwrap_or_default();
                Some(
                    Value::str(v)
                        .cast(out)
                        .ok_or_else(|| format!("value '{v}' is not a {out}"))?,
                )
            }
            None => None,
        };
        self.keys.add(&e.key)?;
        self.values.extend(value);
        Ok(())
    }

    /// Every entry, or the first error, named by its file and line when it has one.
    fn build(form: Form, entries: &[Entry], file: Option<&str>) -> Result<Compiled, String> {
        let mut c = form.empty();
        for e in entries {
            c.push(form, e).map_err(|err| match file {
                Some(path) if e.line > 0 => {
                    let what = if form.out.is_some() {
                        "map file"
                    } else {
                        "file"
                    };
                    format!("{what} '{path}' line {}: {err}", e.line)
                }
                _ => err,
            })?;
        }
        Ok(c)
    }

    /// The index of the entry `v` matches (see [`Patterns::find`]).
    pub fn find(&self, v: &Value) -> Option<usize> {
        self.keys.find(v)
    }
}

/// One user's compiled form of a reference, replaced whole when the reference changes: a
/// reader never waits for a writer.
#[derive(Debug)]
pub struct Live {
    form: Form,
    current: ArcSwap<Compiled>,
}

impl Live {
    /// The entries as of now.
    pub fn load(&self) -> Guard<Arc<Compiled>> {
        self.current.load()
    }

    pub fn form(&self) -> Form {
        self.form
    }
}

/// Which entries a `del` or `set` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which<'a> {
    /// Every entry with this key.
    Key(&'a str),
    /// The entry with this handle (`#0x…`).
    Id(u64),
}

impl<'a> Which<'a> {
    /// `#0x…` names an entry by its handle, anything else by its key; `None`: a `#0x` handle
    /// that is not hexadecimal (HAProxy's "Malformed identifier").
    pub fn parse(word: &'a str) -> Option<Self> {
        match word.strip_prefix("#0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok().map(Which::Id),
            None => Some(Which::Key(word)),
        }
    }

    fn names(self, e: &Entry) -> bool {
        match self {
            Which::Key(k) => e.key == k,
            Which::Id(id) => e.id == id,
        }
    }
}

/// The entries and their users.
#[derive(Debug, Default)]
struct RefState {
    entries: Vec<Entry>,
    users: Vec<Arc<Live>>,
}

/// One pattern reference.
#[derive(Debug)]
pub struct PatRef {
    /// The file it was read from (`None`: an ACL line's own patterns).
    file: Option<String>,
    /// Its entries have values (a map file; HAProxy's `PAT_REF_SMP`).
    two_columns: bool,
    state: Mutex<RefState>,
}

impl PatRef {
    /// An ACL line's own patterns (added by its parser, [`PatRef::add_initial`]).
    pub fn inline() -> Arc<Self> {
        Arc::new(PatRef {
            file: None,
            two_columns: false,
            state: Mutex::default(),
        })
    }

    /// The entries of pattern file `path`: one per line, the whole line less its leading
    /// blanks (`two_columns`: a key, blanks, and the rest of the line as its value, less its
    /// trailing blanks); lines starting with `#` and empty lines skipped.
    pub fn from_file(path: &str, bytes: &[u8], two_columns: bool) -> Arc<Self> {
        let mut entries = Vec::new();
        for (n, line) in file_lines(bytes) {
            if line.first() == Some(&b'#') {
                continue;
            }
            let line = trim_start(line);
            if line.is_empty() {
                continue;
            }
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            if !two_columns {
                entries.push(Entry::new(text(line), None, n));
                continue;
            }
            let key_end = line
                .iter()
                .position(|c| *c == b' ' || *c == b'\t')
                .unwrap_or(line.len());
            let mut value = trim_start(&line[key_end..]);
            while let Some((l, rest)) = value.split_last() {
                if *l != b' ' && *l != b'\t' {
                    break;
                }
                value = rest;
            }
            entries.push(Entry::new(text(&line[..key_end]), Some(text(value)), n));
        }
        Arc::new(PatRef {
            file: Some(path.to_owned()),
            two_columns,
            state: Mutex::new(RefState {
                entries,
                users: Vec::new(),
            }),
        })
    }

    pub fn two_columns(&self) -> bool {
        self.two_columns
    }

    /// A pattern written on its ACL line, while the configuration loads (before any user).
    pub fn add_initial(&self, key: String) {
        self.state.lock().entries.push(Entry::new(key, None, 0));
    }

    /// A new user compiling the entries in `form`; errors name the file and line.
    pub fn user(&self, form: Form) -> Result<Arc<Live>, String> {
        let mut st = self.state.lock();
        let c = Compiled::build(form, &st.entries, self.file.as_deref())?;
        let live = Arc::new(Live {
            form,
            current: ArcSwap::from_pointee(c),
        });
        st.users.push(live.clone());
        Ok(live)
    }

    /// The entries, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.state.lock().entries.clone()
    }

    /// How many entries (`show acl|map`'s `entry_cnt`).
    pub fn entry_count(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// The compiled forms (`get acl|map`).
    pub fn users(&self) -> Vec<Arc<Live>> {
        self.state.lock().users.clone()
    }

    /// Adds entries (`add acl|map`, a payload's lines in order) for every user, or, when one
    /// user can't read one of them, none at all. Names are not resolved at run time (HAProxy
    /// resolves them only while starting): an `ip` pattern must be an address.
    pub fn add(&self, new: &[(&str, Option<&str>)]) -> Result<(), String> {
        let mut st = self.state.lock();
        let added: Vec<Entry> = new
            .iter()
            .map(|(k, v)| Entry::new((*k).to_owned(), v.map(str::to_owned), 0))
            .collect();
        let mut next = Vec::with_capacity(st.users.len());
        for u in &st.users {
            let form = Form {
                no_dns: true,
                ..u.form
            };
            let mut c = Compiled::clone(&u.load());
            for e in &added {
                c.push(form, e)?;
            }
            next.push(c);
        }
        for (u, c) in st.users.iter().zip(next) {
            u.current.store(Arc::new(c));
        }
        st.entries.extend(added);
        Ok(())
    }

    /// Deletes the entries `which` names (`del acl|map`); whether there was one. The other
    /// entries keep their compiled form (a name a pattern file gave is not resolved again).
    pub fn delete(&self, which: Which<'_>) -> bool {
        let mut st = self.state.lock();
        let keep: Vec<bool> = st.entries.iter().map(|e| !which.names(e)).collect();
        if keep.iter().all(|k| *k) {
            return false;
        }
        for u in &st.users {
            let mut c = Compiled::clone(&u.load());
            c.keys.retain_indices(&keep);
            if !c.values.is_empty() {
                let mut k = keep.iter();
                c.values.retain(|_| *k.next().unwrap_or(&true));
            }
            u.current.store(Arc::new(c));
        }
        let mut k = keep.iter();
        st.entries.retain(|_| *k.next().unwrap_or(&true));
        true
    }

    /// Sets the value of the entries `which` names (`set map`) for every user, or for none
    /// when one can't read it; `Ok(false)`: no such entry.
    pub fn set(&self, which: Which<'_>, value: &str) -> Result<bool, String> {
        let mut st = self.state.lock();
        let hit: Vec<usize> = (0..st.entries.len())
            .filter(|i| which.names(&st.entries[*i]))
            .collect();
        if hit.is_empty() {
            return Ok(false);
        }
        let mut next = Vec::with_capacity(st.users.len());
        for u in &st.users {
            let Some(out) = u.form.out else {
                next.push(None);
                continue;
            };
            let v = Value::str(value)
                .cast(out)
                .ok_or_else(|| format!("value '{value}' is not a {out}"))?;
            let mut c = Compiled::clone(&u.load());
            for i in &hit {
                if let Some(slot) = c.values.get_mut(*i) {
                    *slot = v.clone();
                }
            }
            next.push(Some(c));
        }
        for (u, c) in st.users.iter().zip(next) {
            if let Some(c) = c {
                u.current.store(Arc::new(c));
            }
        }
        for i in hit {
            st.entries[i].value = Some(value.to_owned());
        }
        Ok(true)
    }

    /// Deletes every entry (`clear acl|map`).
    pub fn clear(&self) {
        let mut st = self.state.lock();
        for u in &st.users {
            u.current.store(Arc::new(u.form.empty()));
        }
        st.entries.clear();
    }
}

/// What uses a reference (the flags of HAProxy's `show acl` and `show map` lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Acl,
    Map,
}

impl Use {
    fn name(self) -> &'static str {
        match self {
            Use::Acl => "acl",
            Use::Map => "map",
        }
    }
}

/// A reference as the runtime API lists it.
#[derive(Debug)]
pub struct RefInfo {
    /// `#ID`.
    pub id: u32,
    /// The file it was read from (`None`: inline patterns).
    pub file: Option<String>,
    /// Where it is used, as HAProxy describes it.
    pub display: String,
    pub acl: bool,
    pub map: bool,
    pub pat: Arc<PatRef>,
}

impl RefInfo {
    pub fn used_as(&self, u: Use) -> bool {
        match u {
            Use::Acl => self.acl,
            Use::Map => self.map,
        }
    }
}

/// Every reference of one configuration, by id.
#[derive(Debug, Default)]
pub struct PatRefs {
    refs: Vec<RefInfo>,
}

impl PatRefs {
    /// `#ID` or a file name (HAProxy's `pat_ref_lookup_ref`).
    pub fn lookup(&self, name: &str) -> Option<&RefInfo> {
        match name.strip_prefix('#') {
            Some(id) => {
                let id: u32 = id.parse().ok()?;
                self.refs.iter().find(|r| r.id == id)
            }
            None => self.refs.iter().find(|r| r.file.as_deref() == Some(name)),
        }
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = &RefInfo> {
        self.refs.iter()
    }
}

/// A reference while the configuration loads.
#[derive(Debug)]
struct Draft {
    /// `-u ID`.
    id: Option<u32>,
    /// Made for a map converter: HAProxy loads those after every section was read, so their
    /// ids come after the ACLs'.
    late: bool,
    info: RefInfo,
}

/// The references of a configuration being loaded: where each line's ACLs and maps find the
/// references of the files they name.
#[derive(Debug, Default)]
pub struct RefBuilder {
    drafts: Vec<Draft>,
}

impl RefBuilder {
    /// File `path`'s reference, read by `read` the first time, for a user of kind `by` at
    /// `place` (`FILE:LINE` of the configuration), one or two columns.
    pub fn file(
        &mut self,
        path: &str,
        two_columns: bool,
        by: Use,
        place: (&str, u32),
        read: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Arc<PatRef>, String> {
        let (cfg, line) = place;
        let by_name = by.name();
        if let Some(d) = self
            .drafts
            .iter_mut()
            .find(|d| d.info.file.as_deref() == Some(path))
        {
            let i = &mut d.info;
            if two_columns != i.pat.two_columns {
                let (is, wanted) = if two_columns {
                    ("one", "two")
                } else {
                    ("two", "one")
                };
                return Err(format!(
                    "The file \"{path}\" is already used as {is} column file and cannot be used \
                     by as {wanted} column file."
                ));
            }
            let _ = write!(i.display, ", by {by_name} at file '{cfg}' line {line}");
            match by {
                Use::Acl => i.acl = true,
                Use::Map => i.map = true,
            }
            return Ok(i.pat.clone());
        }
        let pat = PatRef::from_file(path, &read()?, two_columns);
        self.drafts.push(Draft {
            id: None,
            late: by == Use::Map,
            info: RefInfo {
                id: 0,
                file: Some(path.to_owned()),
                display: format!(
                    "pattern loaded from file '{path}' used by {by_name} at file '{cfg}' line \
                     {line}"
                ),
                acl: by == Use::Acl,
                map: by == Use::Map,
                pat: pat.clone(),
            },
        });
        Ok(pat)
    }

    /// The reference of an ACL line's own patterns (`kw`: its criterion), `-u ID` when given.
    pub fn inline(
        &mut self,
        kw: &str,
        id: Option<u32>,
        place: (&str, u32),
    ) -> Result<Arc<PatRef>, String> {
        if id.is_some() && self.drafts.iter().any(|d| d.id == id) {
            return Err("the id is already used".to_owned());
        }
        let pat = PatRef::inline();
        self.drafts.push(Draft {
            id,
            late: false,
            info: RefInfo {
                id: 0,
                file: None,
                display: format!("acl '{kw}' file '{}' line {}", place.0, place.1),
                acl: true,
                map: false,
                pat: pat.clone(),
            },
        });
        Ok(pat)
    }

    /// Gives every reference without `-u` the lowest free id, in the order HAProxy creates
    /// them (`pattern_finalize_config`): ACLs' in file order, then maps'.
    pub fn finish(self) -> PatRefs {
        let taken: Vec<u32> = self.drafts.iter().filter_map(|d| d.id).collect();
        let (mut early, late): (Vec<_>, Vec<_>) = self.drafts.into_iter().partition(|d| !d.late);
        early.extend(late);
        let mut next = 0;
        let mut refs: Vec<RefInfo> = early
            .into_iter()
            .map(|d| {
                let id = d.id.unwrap_or_else(|| {
                    while taken.contains(&next) {
                        next += 1;
                    }
                    next += 1;
                    next - 1
                });
                RefInfo { id, ..d.info }
            })
            .collect();
        refs.sort_by_key(|r| r.id);
        PatRefs { refs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    #[test]
    fn a_file_reads_as_one_or_two_columns() {
        let one = PatRef::from_file("f", b"# c\n  10.0.0.0/8 x \n\n192.0.2.1\n", false);
        let keys: Vec<_> = one.entries().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["10.0.0.0/8 x ", "192.0.2.1"]);
        let two = PatRef::from_file("m", b"a  one two \t\nb\n", true);
        let e = two.entries();
        assert_eq!(
            (e[0].key.as_str(), e[0].value.as_deref()),
            ("a", Some("one two"))
        );
        assert_eq!((e[1].key.as_str(), e[1].value.as_deref()), ("b", Some("")));
        assert_ne!(e[0].id, e[1].id);
    }

    #[test]
    fn changes_reach_every_user_or_none() {
        let r = PatRef::from_file("m", b"10.0.0.0/8 1\n", true);
        let ip = r.user(Form::map(Method::Ip, Type::Int)).unwrap();
        let st = r.user(Form::map(Method::Str, Type::Str)).unwrap();
        let addr = Value::Addr("10.1.2.3".parse().unwrap());
        assert_eq!(ip.load().find(&addr), Some(0));
        // A key one user can't read: refused, nothing added anywhere.
        let e = r.add(&[("not-an-ip", Some("2"))]).unwrap_err();
        assert!(e.contains("not-an-ip"), "{e}");
        assert_eq!(r.entries().len(), 1);
        assert_eq!(st.load().keys.len(), 1);
        // A value one user can't read: refused too.
        assert!(r.add(&[("192.0.2.0/24", Some("two"))]).is_err());
        r.add(&[("192.0.2.0/24", Some("2"))]).unwrap();
        let c = ip.load();
        let i = c.find(&Value::Addr("192.0.2.9".parse().unwrap())).unwrap();
        assert_eq!(c.values[i], Value::Int(2));
        assert_eq!(st.load().find(&s("192.0.2.0/24")), Some(1));
        // set: every entry with the key; a value a user can't read changes nothing.
        assert_eq!(r.set(Which::Key("192.0.2.0/24"), "7"), Ok(true));
        assert!(r.set(Which::Key("192.0.2.0/24"), "seven").is_err());
        assert_eq!(ip.load().values[1], Value::Int(7));
        assert_eq!(r.set(Which::Key("nope"), "1"), Ok(false));
        // del by key and by handle; clear.
        let id = r.entries()[0].id;
        assert!(r.delete(Which::Id(id)));
        assert!(!r.delete(Which::Id(id)));
        assert_eq!(ip.load().find(&addr), None);
        assert!(r.delete(Which::Key("192.0.2.0/24")));
        assert!(r.entries().is_empty() && st.load().keys.is_empty());
        r.add(&[("10.0.0.1", Some("1")), ("a", Some("1"))])
            .unwrap_err();
        assert!(r.entries().is_empty(), "all or nothing");
        r.add(&[("10.0.0.1", Some("1"))]).unwrap();
        r.clear();
        assert!(ip.load().keys.is_empty());
    }

    #[test]
    fn errors_of_file_entries_name_their_line() {
        let r = PatRef::from_file("bad.lst", b"10.0.0.1\nnope!\n", false);
        let e = r.user(Form::acl(Method::Ip)).unwrap_err();
        assert!(e.starts_with("file 'bad.lst' line 2: "), "{e}");
        let m = PatRef::from_file("bad.map", b"a 1\nb x\n", true);
        let e = m.user(Form::map(Method::Str, Type::Int)).unwrap_err();
        assert_eq!(e, "map file 'bad.map' line 2: value 'x' is not a integer");
    }

    #[test]
    fn handles_parse_as_haproxy_reads_them() {
        assert_eq!(Which::parse("#0x1f"), Some(Which::Id(31)));
        assert_eq!(Which::parse("#0xzz"), None);
        assert_eq!(Which::parse("#12"), Some(Which::Key("#12")));
        assert_eq!(Which::parse("k"), Some(Which::Key("k")));
    }

    #[test]
    fn ids_files_and_descriptions() {
        let mut b = RefBuilder::default();
        let read = || Ok(b"1.2.3.4\n".to_vec());
        let f = b
            .file("/b.lst", false, Use::Acl, ("h.cfg", 3), read)
            .unwrap();
        b.inline("src", None, ("h.cfg", 3)).unwrap();
        b.file("/m.map", true, Use::Map, ("h.cfg", 4), || {
            Ok(b"k v\n".to_vec())
        })
        .unwrap();
        b.inline("dst", Some(1), ("h.cfg", 5)).unwrap();
        assert_eq!(
            b.inline("dst", Some(1), ("h.cfg", 6)).unwrap_err(),
            "the id is already used"
        );
        // Shared by a second ACL: read once, described twice.
        let again = b
            .file("/b.lst", false, Use::Acl, ("h.cfg", 9), || {
                Err("read twice".into())
            })
            .unwrap();
        assert!(Arc::ptr_eq(&f, &again));
        let e = b
            .file("/b.lst", true, Use::Map, ("h.cfg", 10), read)
            .unwrap_err();
        assert!(e.contains("already used as one column file"), "{e}");
        let refs = b.finish();
        let ids: Vec<_> = refs.iter().map(|r| (r.id, r.file.clone())).collect();
        assert_eq!(
            ids,
            [
                (0, Some("/b.lst".to_owned())),
                (1, None),
                (2, None),
                (3, Some("/m.map".to_owned()))
            ]
        );
        assert_eq!(
            refs.lookup("/b.lst").unwrap().display,
            "pattern loaded from file '/b.lst' used by acl at file 'h.cfg' line 3, by acl at \
             file 'h.cfg' line 9"
        );
        assert_eq!(
            refs.lookup("#1").unwrap().display,
            "acl 'dst' file 'h.cfg' line 5"
        );
        assert_eq!(
            refs.lookup("#2").unwrap().display,
            "acl 'src' file 'h.cfg' line 3"
        );
        assert!(refs.lookup("#x").is_none() && refs.lookup("/none").is_none());
        assert!(refs.lookup("/m.map").unwrap().used_as(Use::Map));
    }
}
