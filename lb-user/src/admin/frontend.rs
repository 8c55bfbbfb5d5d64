//! The runtime API's commands on a frontend by name: HAProxy 2.6's `cli_find_frontend`, and
//! `disable frontend`, `enable frontend`, `shutdown frontend` (`proxy.c`), with its messages.
//! The sockets and the state change in [`crate::listener::frontends`].

use super::cli::Command;
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

/// The command `VERB frontend NAME...` (`verb`: `disable`, `enable` or `shutdown`; `rest`: the
/// words after `frontend`, the first one the name, the others ignored as by HAProxy). No name
/// is an empty one: the lookup answers for it when run.
pub(super) fn command(verb: &str, rest: &[&str]) -> Command {
    let op = match verb {
        "disable" => FrontendOp::Disable,
        "enable" => FrontendOp::Enable,
        _ => FrontendOp::Shutdown,
    };
    Command::Frontend(op, rest.first().copied().unwrap_or_default().to_owned())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::cli::{parse, Session};
    use super::*;
    use crate::config::CliLevel;
    use crate::stats;

    #[test]
    fn frontend_commands_parse() {
        let p = |l: &str| parse(&l.split_whitespace().collect::<Vec<_>>());
        let fe = |op, name: &str| Ok(Command::Frontend(op, name.to_owned()));
        assert_eq!(p("disable frontend fe"), fe(FrontendOp::Disable, "fe"));
        assert_eq!(p("enable frontend fe"), fe(FrontendOp::Enable, "fe"));
        assert_eq!(p("shutdown frontend fe"), fe(FrontendOp::Shutdown, "fe"));
        // Words after the name are ignored, as HAProxy's.
        assert_eq!(p("disable frontend fe now"), fe(FrontendOp::Disable, "fe"));
        // No name: looked up when run, which answers "A frontend name is expected."
        assert_eq!(p("enable frontend"), fe(FrontendOp::Enable, ""));
        assert_eq!(p("shutdown frontend"), fe(FrontendOp::Shutdown, ""));
        for l in [
            "disable frontend fe",
            "enable frontend",
            "shutdown frontend x",
        ] {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(super::super::cli::level(&words), CliLevel::Admin, "{l}");
        }
        // Not these commands.
        assert_eq!(
            p("disable frontends fe"),
            Ok(Command::Unknown("disable".into()))
        );
        assert_eq!(p("shutdown fe"), Ok(Command::Unknown("shutdown".into())));
    }

    #[test]
    fn frontend_commands_run_with_haproxys_messages() {
        let cfg = crate::config::load_str(
            "t.cfg",
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             frontend fe\n  bind 127.0.0.1:1\n  default_backend be\n\
             backend be\n  server s1 127.0.0.1:2\n",
        )
        .unwrap();
        let gen = Generation::standalone(Arc::new(cfg));
        crate::test_runtime().block_on(async {
            let mut admin = Session::new(CliLevel::Admin);
            let mut oper = Session::new(CliLevel::Operator);
            for (cmd, want) in [
                ("disable frontend", "A frontend name is expected.\n\n"),
                ("enable frontend nope", "No such frontend.\n\n"),
                ("shutdown frontend be", "No such frontend.\n\n"),
                // No socket was bound for this generation: only the state moves.
                ("enable frontend fe", "All sockets are already enabled.\n\n"),
            ] {
                assert_eq!(admin.run_line(&gen, cmd, None).await, want, "{cmd}");
            }
            assert_eq!(
                oper.run_line(&gen, "disable frontend fe", None).await,
                "Permission denied\n\n"
            );
            assert_eq!(
                admin.run_line(&gen, "disable frontend fe", None).await,
                "\n"
            );
            assert_eq!(gen.fe_states.get(0), crate::fe_state::FeState::Paused);
            assert_eq!(
                admin.run_line(&gen, "disable frontend fe", None).await,
                "All sockets are already disabled.\n\n"
            );
            assert_eq!(admin.run_line(&gen, "enable frontend fe", None).await, "\n");
            assert_eq!(
                admin.run_line(&gen, "shutdown frontend fe", None).await,
                "\n"
            );
            for (cmd, want) in [
                (
                    "shutdown frontend fe",
                    "Frontend was already shut down.\n\n",
                ),
                (
                    "disable frontend fe",
                    "Frontend was previously shut down, cannot disable.\n\n",
                ),
                (
                    "enable frontend fe",
                    "Frontend was previously shut down, cannot enable.\n\n",
                ),
            ] {
                assert_eq!(admin.run_line(&gen, cmd, None).await, want, "{cmd}");
            }
            let rows = stats::rows(&gen);
            assert_eq!(rows[0].status, "STOP");
        });
    }
}
