//! HAProxy's master CLI (`-S PATH[,mode,M][,level,L]`, its management guide's section 9.4),
//! for lb, which is master and worker in one process: the same words on a socket of its own,
//! so that scripts written for HAProxy's master socket (`echo reload | socat
//! /run/haproxy-master.sock -`, `@1 show stat`) work unchanged.
//!
//! A command goes to the master or to the worker: `@1`, `@!PID` (lb's own pid) send the rest of
//! the command to the worker, `@`, `@0`, `@master` to the master; a prefix alone sends every
//! later command there. The worker is lb's runtime API at the socket's level. The master's own
//! commands are `show proc`, `reload` (as SIGUSR2), `show version` and `help`; `prompt`,
//! `quit`, `operator`, `user` and the three modes act on the session wherever it points, as
//! HAProxy's master reads them before it forwards anything.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::cli;
use super::help::{usage, Usage};
use crate::config::CliLevel;
use crate::generation::Generation;

/// The master's commands, as HAProxy 2.6's master lists them.
const MASTER_COMMANDS: &[Usage] = &[
    (
        "help [<command>]",
        "list matching or all commands",
        CliLevel::User,
    ),
    (
        "prompt",
        "toggle interactive mode with prompt",
        CliLevel::User,
    ),
    ("quit", "disconnect", CliLevel::User),
    (
        "operator",
        "lower the level of the current CLI session to operator",
        CliLevel::User,
    ),
    (
        "user",
        "lower the level of the current CLI session to user",
        CliLevel::User,
    ),
    (
        "show version",
        "show version of the current process",
        CliLevel::User,
    ),
    ("show proc", "show processes status", CliLevel::User),
    ("reload", "reload haproxy", CliLevel::Operator),
    (
        "@<relative pid>",
        "send a command to the <relative pid> process",
        CliLevel::User,
    ),
    (
        "@!<pid>",
        "send a command to the <pid> process",
        CliLevel::User,
    ),
    (
        "@master",
        "send a command to the master process",
        CliLevel::User,
    ),
    (
        "expert-mode [on|off]",
        "activate or deactivate expert mode",
        CliLevel::Admin,
    ),
    (
        "experimental-mode [on|off]",
        "activate or deactivate experimental mode",
        CliLevel::Admin,
    ),
    (
        "mcli-debug-mode [on|off]",
        "activate or deactivate the master CLI debug mode",
        CliLevel::Admin,
    ),
];

/// Reloads rejected since the last one that switched (the prompt's `[ReloadFailed]`), and in
/// all; when the last one switched.
static FAILED_SINCE: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static SWITCHED: Mutex<Option<SystemTime>> = Mutex::new(None);

/// The signal loop's account of a reload: `switched` when the new configuration serves.
pub fn note_reload(switched: bool) {
    if switched {
        FAILED_SINCE.store(0, Ordering::Relaxed);
        *SWITCHED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(SystemTime::now());
    } else {
        FAILED_SINCE.fetch_add(1, Ordering::Relaxed);
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
}

/// One master CLI connection.
pub struct Master {
    level: CliLevel,
    prompt: bool,
    /// Commands without a prefix go to the worker (`@1` alone), else to the master.
    to_worker: bool,
    /// expert, experimental, mcli-debug: shown in the prompt.
    modes: [bool; 3],
    worker: cli::Session,
    /// The session ends after this line (`quit`, a bad prefix, `reload`).
    pub quit: bool,
    /// `reload` was given: the caller signals it once the answer is sent.
    pub reload: bool,
}

impl Master {
    pub fn new(level: CliLevel) -> Self {
        let mut worker = cli::Session::new(level);
        // Every line is answered the same way whether or not it was interactive: the master
        // keeps the prompt of the session.
        worker.interactive = true;
        Master {
            level,
            prompt: false,
            to_worker: false,
            modes: [false; 3],
            worker,
            quit: false,
            reload: false,
        }
    }

    /// Whether the connection stays open after this line's answer (`prompt`).
    pub fn interactive(&self) -> bool {
        self.prompt
    }

    /// The prompt after each answer (HAProxy's `pcli_write_prompt`): `master> `,
    /// `master[ReloadFailed]> ` after a rejected reload, `PID> ` toward the worker, the modes
    /// in parentheses.
    pub fn prompt_text(&self) -> String {
        let mut p = if self.to_worker {
            std::process::id().to_string()
        } else if FAILED_SINCE.load(Ordering::Relaxed) > 0 {
            "master[ReloadFailed]".to_owned()
        } else {
            "master".to_owned()
        };
        let flags: String = [(1, 'x'), (0, 'e'), (2, 'd')]
            .iter()
            .filter(|(i, _)| self.modes[*i])
            .map(|(_, c)| *c)
            .collect();
        if !flags.is_empty() {
            let _ = write!(p, "({flags})");
        }
        p.push_str("> ");
        p
    }

    /// Runs one input line: commands separated by `;`, each for the master or the worker.
    pub async fn run_line(
        &mut self,
        gen: &Arc<Generation>,
        line: &str,
        payload: Option<&str>,
    ) -> String {
        let mut out = String::new();
        let cmds: Vec<&str> = line.split(';').collect();
        for (i, cmd) in cmds.iter().enumerate() {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let Some(&first) = words.first() else {
                continue;
            };
            let (to_worker, words) = if first.starts_with('@') {
                let Some(to_worker) = target(first) else {
                    let _ = writeln!(
                        out,
                        "Can't find the target PID matching the prefix '{first}'"
                    );
                    self.quit = true;
                    return out;
                };
                if words.len() == 1 {
                    self.to_worker = to_worker;
                    continue;
                }
                (to_worker, &words[1..])
            } else {
                match self.session_word(&words) {
                    Some(Ok(())) if self.quit => return out,
                    Some(Ok(())) => continue,
                    Some(Err(e)) => {
                        out.push_str(e);
                        self.quit = true;
                        return out;
                    }
                    None => (self.to_worker, &words[..]),
                }
            };
            if to_worker {
                let payload = payload.filter(|_| i + 1 == cmds.len());
                let answer = self.worker.run_line(gen, &words.join(" "), payload).await;
                out.push_str(&answer);
                continue;
            }
            let mut answer = self.master_command(gen, words);
            if self.reload {
                return out;
            }
            if !answer.ends_with('\n') {
                answer.push('\n');
            }
            out.push_str(&answer);
            out.push('\n');
        }
        out
    }

    /// The words HAProxy's master reads itself before forwarding a line without a prefix
    /// (`pcli_find_and_exec_kw`); `None` for the others.
    fn session_word(&mut self, words: &[&str]) -> Option<Result<(), &'static str>> {
        let on = words.get(1) == Some(&"on");
        let lower = |to: CliLevel, m: &mut Self| {
            if m.level < to {
                return Err("Permission denied!\n");
            }
            m.level = to;
            m.worker = cli::Session::new(to);
            m.worker.interactive = true;
            Ok(())
        };
        let mode = |i: usize, m: &mut Self| {
            if m.level < CliLevel::Admin {
                return Err("Permission denied!\n");
            }
            m.modes[i] = on;
            Ok(())
        };
        Some(match words[0] {
            "prompt" => {
                self.prompt = !self.prompt;
                Ok(())
            }
            "quit" => {
                self.quit = true;
                Ok(())
            }
            "operator" => lower(CliLevel::Operator, self),
            "user" => lower(CliLevel::User, self),
            "expert-mode" => mode(0, self),
            "experimental-mode" => mode(1, self),
            "mcli-debug-mode" => mode(2, self),
            _ => return None,
        })
    }

    /// A command for the master itself.
    fn master_command(&mut self, gen: &Generation, words: &[&str]) -> String {
        match words {
            ["show", "proc", ..] => show_proc(gen),
            ["show", "version", ..] => format!("{}\n", env!("CARGO_PKG_VERSION")),
            ["reload", ..] if self.level < CliLevel::Operator => "Permission denied\n".to_owned(),
            ["reload", ..] => {
                self.reload = true;
                self.quit = true;
                String::new()
            }
            ["help", rest @ ..] => usage(MASTER_COMMANDS, self.level, rest.first().copied()),
            [first, ..] => usage(MASTER_COMMANDS, self.level, Some(first)),
            [] => String::new(),
        }
    }
}

/// Where a prefix sends commands: `Some(true)` to the worker (`@1`, `@!` lb's pid), `Some(false)`
/// to the master (`@`, `@0`, `@master`); `None` when no process matches (HAProxy's
/// `pcli_prefix_to_pid`: lb has one worker, itself).
fn target(prefix: &str) -> Option<bool> {
    let p = prefix.strip_prefix('@')?;
    match p {
        "" | "master" => Some(false),
        _ => match p.strip_prefix('!') {
            Some(pid) => (pid.parse::<u32>().ok()? == std::process::id()).then_some(true),
            None => match p.parse::<u32>().ok()? {
                0 => Some(false),
                // The worker with the fewest reloads: lb's only one.
                _ => Some(true),
            },
        },
    }
}

/// HAProxy's `show proc`: lb is the master and the current worker.
fn show_proc(gen: &Generation) -> String {
    let now = SystemTime::now();
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
    let uptime = |up: u64| {
        format!(
            "{}d{:02}h{:02}m{:02}s",
            up / 86400,
            (up % 86400) / 3600,
            (up % 3600) / 60,
            up % 60
        )
    };
    let pid = std::process::id();
    let version = env!("CARGO_PKG_VERSION");
    let failed = u64::from(FAILED.load(Ordering::Relaxed));
    let reloads = format!("{} [failed: {failed}]", gen.number + failed);
    let switched = SWITCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .unwrap_or(gen.process.started);
    let mut s = format!(
        "#{:<14} {:<15} {:<15} {:<15} {:<15}\n",
        "<PID>", "<type>", "<reloads>", "<uptime>", "<version>"
    );
    let started = uptime(since(gen.process.started));
    let _ = writeln!(
        s,
        "{pid:<15} {:<15} {reloads:<15} {started:<15} {version:<15}",
        "master"
    );
    s.push_str("# workers\n");
    let worker_up = uptime(since(switched));
    let _ = writeln!(
        s,
        "{pid:<15} {:<15} {:<15} {worker_up:<15} {version:<15}",
        "worker", 0
    );
    s.push_str("# programs\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let me = std::process::id();
        assert_eq!(target("@"), Some(false));
        assert_eq!(target("@master"), Some(false));
        assert_eq!(target("@0"), Some(false));
        assert_eq!(target("@1"), Some(true));
        assert_eq!(target(&format!("@!{me}")), Some(true));
        assert_eq!(target(&format!("@!{}", me + 1)), None);
        assert_eq!(target("@!"), None);
        assert_eq!(target("@x"), None);
        assert_eq!(target("@1x"), None);
    }
}
