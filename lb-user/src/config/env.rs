//! The environment a configuration's `$NAME` and `${NAME}` read: the process's, changed by
//! `global`'s `setenv`, `presetenv`, `unsetenv` and `resetenv` from their line on, as HAProxy
//! changes its own environment while it reads the file ("the next line in the configuration
//! file sees the new value").
//!
//! lb does not change its process environment: other threads read it (the system resolver,
//! the time zone), which makes `setenv(3)` unsafe once threads run, and a reload starts again
//! from the environment lb was started with. So the changes live in an overlay that exists
//! while one configuration is loaded, on the loading thread ([`loading`]). External checks
//! run with their own clean environment, as HAProxy's, so the overlay does not reach them.

use std::cell::RefCell;
use std::collections::HashMap;

/// The changes made so far to the process environment.
#[derive(Debug, Default)]
struct Overlay {
    /// Set (`Some`) or removed (`None`) variables.
    vars: HashMap<String, Option<String>>,
    /// `resetenv` ran: a variable not in `vars` does not exist.
    reset: bool,
}

impl Overlay {
    fn get(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(v) => v.clone(),
            None if self.reset => None,
            None => std::env::var(name).ok(),
        }
    }
}

thread_local! {
    /// The overlay of the configuration this thread loads now, if any.
    static LOADING: RefCell<Option<Overlay>> = const { RefCell::new(None) };
}

/// Runs `load` (the reading of one configuration) with a fresh overlay on this thread.
pub(crate) fn loading<T>(load: impl FnOnce() -> T) -> T {
    /// Removes the overlay however `load` ends.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            LOADING.with(|l| l.borrow_mut().take());
        }
    }
    LOADING.with(|l| *l.borrow_mut() = Some(Overlay::default()));
    let _done = Done;
    load()
}

/// The value of variable `name` for the configuration being loaded (the process's own
/// outside of [`loading`]).
pub(crate) fn var(name: &str) -> Option<String> {
    LOADING.with(|l| match &*l.borrow() {
        Some(o) => o.get(name),
        None => std::env::var(name).ok(),
    })
}

/// Applies a `global` line if it changes the environment (`words[0]` is `setenv`,
/// `presetenv`, `unsetenv` or `resetenv`, with the right number of arguments; the parser
/// says what is wrong with the others). Returns whether it did.
pub(crate) fn apply(words: &[String]) -> bool {
    LOADING.with(|l| {
        let mut l = l.borrow_mut();
        let Some(o) = l.as_mut() else {
            return false;
        };
        match (words[0].as_str(), &words[1..]) {
            ("setenv", [name, value]) => {
                o.vars.insert(name.clone(), Some(value.clone()));
            }
            ("presetenv", [name, value]) => {
                if o.get(name).is_none() {
                    o.vars.insert(name.clone(), Some(value.clone()));
                }
            }
            ("unsetenv", names) if !names.is_empty() => {
                for n in names {
                    o.vars.insert(n.clone(), None);
                }
            }
            ("resetenv", keep) => {
                let kept = keep
                    .iter()
                    .map(|n| (n.clone(), o.get(n)))
                    .collect::<HashMap<_, _>>();
                o.vars = kept;
                o.reset = true;
            }
            _ => return false,
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn each_keyword_changes_what_later_lines_read() {
        // PATH exists in any test's environment; the LB_ENV_TEST_* names in none.
        let path = std::env::var("PATH").unwrap();
        loading(|| {
            assert!(apply(&w("setenv LB_ENV_TEST_A 1")));
            assert_eq!(var("LB_ENV_TEST_A").as_deref(), Some("1"));
            assert!(apply(&w("presetenv LB_ENV_TEST_A 2")));
            assert!(apply(&w("presetenv LB_ENV_TEST_B 3")));
            assert_eq!(var("LB_ENV_TEST_A").as_deref(), Some("1"), "kept");
            assert_eq!(var("LB_ENV_TEST_B").as_deref(), Some("3"));
            assert!(apply(&w("setenv LB_ENV_TEST_A 4")));
            assert_eq!(var("LB_ENV_TEST_A").as_deref(), Some("4"), "overwritten");
            assert!(apply(&w("unsetenv LB_ENV_TEST_B PATH")));
            assert_eq!(var("LB_ENV_TEST_B"), None);
            assert_eq!(var("PATH"), None);
            assert!(apply(&w("setenv PATH /x")));
            assert!(apply(&w("resetenv LB_ENV_TEST_A PATH")));
            assert_eq!(var("LB_ENV_TEST_A").as_deref(), Some("4"));
            assert_eq!(var("PATH").as_deref(), Some("/x"));
            assert_eq!(var("HOME"), None, "everything else is gone");
            // Wrong arity: left to the parser.
            assert!(!apply(&w("setenv LB_ENV_TEST_C")));
            assert!(!apply(&w("unsetenv")));
            assert!(!apply(&w("maxconn 10")));
        });
        // The process environment never changed, and the overlay is gone.
        assert_eq!(var("PATH").as_deref(), Some(path.as_str()));
        assert_eq!(std::env::var("LB_ENV_TEST_A").ok(), None);
        assert!(!apply(&w("setenv LB_ENV_TEST_A 1")));
    }
}
