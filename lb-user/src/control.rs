//! The control-side threads (health checkers, DNS resolvers, stats page and runtime API): each
//! runs a tokio current-thread runtime with a `LocalSet`, away from the accept threads.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

/// Starts thread `name` running the future that `make` builds, on its own current-thread
/// runtime with a `LocalSet` (so it may `spawn_local`). If the runtime cannot be built, the
/// thread logs why, naming `what` stops working, and ends.
pub fn spawn_local_thread<F, Fut>(
    name: &str,
    what: &'static str,
    make: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("{what}: cannot start a runtime: {e}; {what} stop working");
                    return;
                }
            };
            tokio::task::LocalSet::new().block_on(&rt, make());
        })
}
