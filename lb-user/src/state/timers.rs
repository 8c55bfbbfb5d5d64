//! The writer's timed consequences (slow start's ramp), on one small thread of their own: a
//! change may come from any thread, with or without a runtime.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{apply, By, Change};
use crate::generation::Generation;

/// The timer thread's runtime, started on first use.
fn handle() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let started =
                crate::control::spawn_local_thread("lb-state", "slow start", move || async move {
                    let _ = tx.send(tokio::runtime::Handle::current());
                    std::future::pending::<()>().await;
                });
            if let Err(e) = started {
                log::error!("cannot start the state timer thread: {e}; slow start stops working");
                return None;
            }
            rx.recv().ok()
        })
        .as_ref()
}

/// Runs the slow start of `backend`'s server `server` (by name: indices may differ in a later
/// generation) in `gen` until the ramp ends or a newer generation takes over (which resumes it,
/// see [`resume`]).
pub(super) fn ramp(gen: &Arc<Generation>, backend: usize, server: String, total: Duration) {
    let Some(h) = handle() else {
        return;
    };
    let gen = gen.clone();
    let step = super::transition::ramp_interval(total);
    h.spawn(async move {
        loop {
            tokio::time::sleep(step).await;
            if gen.is_retired() {
                return;
            }
            let table = &gen.backends[backend];
            let Some(index) = table.server_index(&server) else {
                return;
            };
            match apply(&gen, backend, index, Change::RampStep, &By::Slowstart) {
                Ok(a) if a.after.ramp_start.is_some() => {}
                _ => return,
            }
        }
    });
}

/// Starts the timers that `gen`'s carried-over state needs (a reload's slow starts in
/// progress). Call once the generation serves.
pub fn resume(gen: &Arc<Generation>) {
    for (b, table) in gen.backends.iter().enumerate() {
        for e in &table.snapshot().servers {
            if let (Some(_), Some(ss)) = (e.state.ramp_start, e.conf.health.slowstart) {
                ramp(gen, b, e.conf.name.clone(), ss);
            }
        }
    }
}
