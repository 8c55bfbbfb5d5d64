//! The runtime API's commands on a frontend by name: HAProxy 2.6's `cli_find_frontend`, and
//! `disable frontend`, `enable frontend`, `shutdown frontend` (`proxy.c`), with its messages.
//! The sockets and the state change in [`crate::listener::frontends`].

use crate::fe_state::FeState;
use crate::generation::Generation;
use crate::listener::frontends;

/// Which of the three commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontendOp {
    Disable,
    Enable,
    Shutdown,
}

/// Frontend `name`'s index, HAProxy's `cli_find_frontend`: its messages for no name and an
/// unknown one (a `listen` section is a frontend too; a backend is not).
pub(super) fn find(gen: &Generation, name: &str) -> Result<usize, String> {
    if name.is_empty() {
        return Err("A frontend name is expected.\n".to_owned());
    }
    gen.config
        .frontends
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| "No such frontend.\n".to_owned())
}

/// Runs `op` on frontend `name`, HAProxy's `cli_parse_{disable,enable,shutdown}_frontend`:
/// an empty answer once done, else its message. Until the next reload.
pub(super) fn run(gen: &Generation, op: FrontendOp, name: &str) -> Result<String, String> {
    let f = find(gen, name)?;
    let state = gen.fe_states.get(f);
    // A frontend without a `bind` has no socket: HAProxy counts it as all ready and all
    // paused at once.
    let no_socket = gen.config.frontends[f].binds.is_empty();
    match op {
        FrontendOp::Shutdown => {
            if state == FeState::Stopped {
                return Ok("Frontend was already shut down.\n".to_owned());
            }
            frontends::stop(gen, f);
        }
        FrontendOp::Disable => {
            if state == FeState::Stopped {
                return Ok("Frontend was previously shut down, cannot disable.\n".to_owned());
            }
            if state == FeState::Paused || no_socket {
                return Ok("All sockets are already disabled.\n".to_owned());
            }
            if !frontends::pause(gen, f) {
                return Err("Failed to pause frontend, check logs for precise cause.\n".to_owned());
            }
        }
        FrontendOp::Enable => {
            if state == FeState::Stopped {
                return Err("Frontend was previously shut down, cannot enable.\n".to_owned());
            }
            if state == FeState::Ready || no_socket {
                return Ok("All sockets are already enabled.\n".to_owned());
            }
            if !frontends::resume(gen, f) {
                return Err(
                    "Failed to resume frontend, check logs for precise cause (port conflict?).\n"
                        .to_owned(),
                );
            }
        }
    }
    Ok(String::new())
}
