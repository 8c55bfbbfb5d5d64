//! The stick-table fetches (`src/stick_table.c`'s `smp_fetch_sc_*`): for each counter, the
//! `sc0_`, `sc1_`, `sc2_` forms (the entry a `track-scN` rule tracks), `sc_` (the slot as first
//! argument) and `src_` (the client address's entry), each with an optional table argument;
//! and `sc*_tracked`, `sc*_trackers`, `src_updt_conn_cnt`, `table_cnt`, `table_avl`. What they
//! read comes through [`Env::stick`](super::Env::stick).

use super::args::{Arg, ArgSpec, ArgType};
use super::fetch::{def, FetchDef};
use super::{Ctx, Fetched, Places as P, StickRef, Type as T};

const OPT_TABLE: ArgSpec = ArgSpec {
    types: &[ArgType::Str],
    min: 0,
};
const SC_ARGS: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Str],
    min: 1,
};

/// `sc_get_gpc(IDX,SC[,table])` and the other array fetches of a tracked entry.
const SC_ARRAY_ARGS: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Int, ArgType::Str],
    min: 2,
};
/// `src_get_gpc(IDX,table)`...: HAProxy 2.6 requires the table here (`ARG2(2,SINT,TAB)`).
const SRC_ARRAY_ARGS: ArgSpec = ArgSpec {
    types: &[ArgType::Int, ArgType::Str],
    min: 2,
};

fn answer(c: &Ctx<'_>, which: StickRef, table: Option<&Arg>, what: &str) -> Fetched {
    answer_at(c, which, table, what, 0)
}

fn answer_at(c: &Ctx<'_>, which: StickRef, table: Option<&Arg>, what: &str, idx: i64) -> Fetched {
    let table = table.map(Arg::str).filter(|t| !t.is_empty());
    // A negative element is never stored (HAProxy reads it unsigned: out of range).
    let Ok(idx) = usize::try_from(idx) else {
        return Fetched::none();
    };
    c.env
        .stick(which, table, what, idx)
        .map_or_else(Fetched::none, Fetched::one)
}

fn slot(c: &Ctx<'_>, n: u8, table: Option<&Arg>, what: &str) -> Fetched {
    answer(c, StickRef::Slot(n), table, what)
}

/// `sc_WHAT(IDX,SC[,table])`: element `IDX` of an array.
fn sc_array(c: &Ctx<'_>, a: &[Arg], what: &str) -> Fetched {
    match u8::try_from(a[1].int()) {
        Ok(n) if n < 3 => answer_at(c, StickRef::Slot(n), a.get(2), what, a[0].int()),
        _ => Fetched::none(),
    }
}

/// `src_WHAT(IDX,table)`.
fn src_array(c: &Ctx<'_>, a: &[Arg], what: &str) -> Fetched {
    answer_at(c, StickRef::Src(c.src.ip()), a.get(1), what, a[0].int())
}

/// `sc_WHAT(N[,table])`.
fn sc(c: &Ctx<'_>, a: &[Arg], what: &str) -> Fetched {
    match u8::try_from(a[0].int()) {
        Ok(n) if n < 3 => slot(c, n, a.get(1), what),
        _ => Fetched::none(),
    }
}

fn src(c: &Ctx<'_>, table: Option<&Arg>, what: &str) -> Fetched {
    answer(c, StickRef::Src(c.src.ip()), table, what)
}

macro_rules! counters {
    ([$($extra:expr),* $(,)?] [$($arr:literal),* $(,)?]; $($what:literal),* $(,)?) => {
        &[
            $($extra,)*
            // The array fetches (HAProxy 2.5+): `sc_` + name (`IDX,SC[,table]`) and `src_` +
            // name (`IDX,table`).
            $(
                def(concat!("sc_", $arr), SC_ARRAY_ARGS, T::Int, P::ALL, |c, a| {
                    sc_array(c, a, $arr)
                }),
                def(concat!("src_", $arr), SRC_ARRAY_ARGS, T::Int, P::ALL, |c, a| {
                    src_array(c, a, $arr)
                }),
            )*
            $(
                def(concat!("sc0_", $what), OPT_TABLE, T::Int, P::ALL, |c, a| {
                    slot(c, 0, a.first(), $what)
                }),
                def(concat!("sc1_", $what), OPT_TABLE, T::Int, P::ALL, |c, a| {
                    slot(c, 1, a.first(), $what)
                }),
                def(concat!("sc2_", $what), OPT_TABLE, T::Int, P::ALL, |c, a| {
                    slot(c, 2, a.first(), $what)
                }),
                def(concat!("sc_", $what), SC_ARGS, T::Int, P::ALL, |c, a| sc(c, a, $what)),
                def(concat!("src_", $what), OPT_TABLE, T::Int, P::ALL, |c, a| {
                    src(c, a.first(), $what)
                }),
            )*
        ]
    };
}

/// Calls `$m!($($pre)*; NAME, ...)` with every counter name: the one list behind both
/// [`COUNTERS`] and the fetches of [`STICK_FETCHES`] (the fetch names need literals).
macro_rules! with_counters {
    ($m:ident $(, $pre:tt)*) => {
        $m!($($pre)*;
            "conn_cnt",
            "conn_cur",
            "conn_rate",
            "sess_cnt",
            "sess_rate",
            "bytes_in_rate",
            "bytes_out_rate",
            "kbytes_in",
            "kbytes_out",
            "get_gpc0",
            "get_gpc1",
            "get_gpt0",
            "gpc0_rate",
            "gpc1_rate",
            "inc_gpc0",
            "inc_gpc1",
            "clr_gpc0",
            "clr_gpc1",
            "http_req_cnt",
            "http_req_rate",
            "http_err_cnt",
            "http_err_rate",
            "http_fail_cnt",
            "http_fail_rate",
        )
    };
}

macro_rules! names {
    (; $($what:literal),* $(,)?) => {
        &[$($what),*]
    };
}

/// The counter suffixes of the stick-table fetches (`sc0_`, `sc1_`, `sc2_`, `sc_`, `src_` +
/// suffix), which [`crate::stick::counter`] answers.
pub const COUNTERS: &[&str] = with_counters!(names);

/// Every stick-table fetch.
pub static STICK_FETCHES: &[FetchDef] = with_counters!(
    counters,
    [
        def("sc0_tracked", OPT_TABLE, T::Bool, P::ALL, |c, a| {
            slot(c, 0, a.first(), "tracked")
        }),
        def("sc1_tracked", OPT_TABLE, T::Bool, P::ALL, |c, a| {
            slot(c, 1, a.first(), "tracked")
        }),
        def("sc2_tracked", OPT_TABLE, T::Bool, P::ALL, |c, a| {
            slot(c, 2, a.first(), "tracked")
        }),
        def("sc_tracked", SC_ARGS, T::Bool, P::ALL, |c, a| {
            sc(c, a, "tracked")
        }),
        def("sc0_trackers", OPT_TABLE, T::Int, P::ALL, |c, a| {
            slot(c, 0, a.first(), "trackers")
        }),
        def("sc1_trackers", OPT_TABLE, T::Int, P::ALL, |c, a| {
            slot(c, 1, a.first(), "trackers")
        }),
        def("sc2_trackers", OPT_TABLE, T::Int, P::ALL, |c, a| {
            slot(c, 2, a.first(), "trackers")
        }),
        def("sc_trackers", SC_ARGS, T::Int, P::ALL, |c, a| {
            sc(c, a, "trackers")
        }),
        def("src_updt_conn_cnt", OPT_TABLE, T::Int, P::ALL, |c, a| {
            src(c, a.first(), "updt_conn_cnt")
        }),
        def("table_cnt", OPT_TABLE, T::Int, P::ALL, |c, a| {
            answer(c, StickRef::Table, a.first(), "cnt")
        }),
        def("table_avl", OPT_TABLE, T::Int, P::ALL, |c, a| {
            answer(c, StickRef::Table, a.first(), "avl")
        }),
    ],
    ["get_gpc", "get_gpt", "gpc_rate", "inc_gpc", "clr_gpc"]
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The array counters' suffixes HAProxy 2.6 has (`sc_get_gpc(IDX,SC)`, `src_inc_gpc(IDX)`...):
    /// what the table must hold, written here as the expectation.
    const ARRAY_COUNTERS: &[&str] = &["get_gpc", "get_gpt", "gpc_rate", "inc_gpc", "clr_gpc"];

    /// One home for the counter names: the fetches answer exactly what the stick module knows.
    #[test]
    fn every_counter_has_its_five_fetches() {
        for what in COUNTERS {
            for p in ["sc0_", "sc1_", "sc2_", "sc_", "src_"] {
                let name = format!("{p}{what}");
                assert!(
                    STICK_FETCHES.iter().any(|f| f.name == name),
                    "{name} missing"
                );
            }
        }
        for what in ARRAY_COUNTERS {
            for p in ["sc_", "src_"] {
                let name = format!("{p}{what}");
                assert!(
                    STICK_FETCHES.iter().any(|f| f.name == name),
                    "{name} missing"
                );
            }
        }
        assert_eq!(
            STICK_FETCHES.len(),
            11 + 5 * COUNTERS.len() + 2 * ARRAY_COUNTERS.len()
        );
    }
}
