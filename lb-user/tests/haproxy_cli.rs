//! HAProxy's command lines and signals work on lb unchanged: Debian's `haproxy.service`
//! (`-Ws -f CFG -c -q` before a start and a reload, `-Ws -f CFG -p PID`, reload by `kill -USR2
//! $MAINPID`), the Docker image's `-W -db -f CFG`, `-vv`, global `master-worker` and `quiet`,
//! and an old init script's SIGTTOU/SIGTTIN (pause and resume the listeners). Before, lb refused
//! `-W`, `-db` and `-q`, warned that `master-worker` and `quiet` were not supported, and SIGUSR2
//! (default action: terminate) or SIGTTOU (stop the process) would have ended or frozen it.

#[macro_use]
mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::scenarios::{concurrent_flows, flow_plan};
use common::servers::Backend;
use common::stats::{cli, SockDir};
use common::{free_port, lb_bin, local, simple_config, Lb, LbOpts, TempCfg};

/// `simple_config` with HAProxy's master-worker and quiet settings, and `daemon`, which `-db`
/// must override (the test harness follows lb's own process).
fn config(port: u16, server: &Backend) -> String {
    simple_config(port, &[], &[format!("s1 {}", server.addr)]).replacen(
        "global\n",
        "global\n    master-worker\n    quiet\n    daemon\n",
        1,
    )
}

/// Until `port` refuses connections (`refused`) or accepts them, within 5 s.
fn wait_refused(port: u16, refused: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let r = TcpStream::connect_timeout(&local(port), Duration::from_millis(500));
        if r.is_err() == refused {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn master_worker_command_line_and_signals(dataplane: &str) {
    let server = Backend::flow("s1");
    let port = free_port();
    let cfg = config(port, &server);
    let opts = LbOpts::new(&cfg, dataplane).args(&["-W", "-db"]);
    let mut lb = Lb::start_with(&opts);
    let flows = |lb: &Lb, what: &str| {
        concurrent_flows(
            local(port),
            &server,
            &flow_plan(4, 2, 256 << 10),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("flows {what}: {e}\n{}", lb.logs().join("\n")));
    };
    flows(&lb, "at start");

    // systemd's `ExecReload=/bin/kill -USR2 $MAINPID`.
    lb.signal(libc::SIGUSR2);
    assert!(
        lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)),
        "SIGUSR2 did not reload:\n{}",
        lb.logs().join("\n")
    );
    assert!(lb.wait_exit(Duration::ZERO).is_none(), "SIGUSR2 ended lb");
    flows(&lb, "after the SIGUSR2 reload");

    // SIGTTOU pauses every frontend, SIGTTIN resumes them.
    lb.signal(libc::SIGTTOU);
    assert!(
        wait_refused(port, true),
        "SIGTTOU: the frontend still accepts\n{}",
        lb.logs().join("\n")
    );
    assert!(lb.wait_exit(Duration::ZERO).is_none(), "SIGTTOU ended lb");
    lb.signal(libc::SIGTTIN);
    assert!(
        wait_refused(port, false),
        "SIGTTIN: the frontend still refuses\n{}",
        lb.logs().join("\n")
    );
    flows(&lb, "after SIGTTOU and SIGTTIN");
    let status = lb.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

on_both_planes!(master_worker_command_line_and_signals);

/// `-Ws -f CFG -c -q` (Debian's `ExecStartPre` and `ExecReload`): valid, silent, exit 0, even
/// with warnings; an error still prints and fails. `-vv` prints the version.
#[test]
fn check_quiet_and_version() {
    let server = Backend::flow("s1");
    let port = free_port();
    // A warning on load: `option httplog` in a tcp proxy.
    let quiet_text =
        config(port, &server).replacen("backend be\n", "backend be\n    option httplog\n", 1);
    let text = quiet_text.replacen("    quiet\n", "", 1);
    let (cfg, quiet_cfg) = (TempCfg::new(&text), TempCfg::new(&quiet_text));
    let path = cfg.path.to_str().expect("utf-8 path");
    let quiet_path = quiet_cfg.path.to_str().expect("utf-8 path");
    let run = |args: &[&str]| Command::new(lb_bin()).args(args).output().expect("run lb");
    let loud = run(&["-Ws", "-f", path, "-c"]);
    let loud_err = String::from_utf8_lossy(&loud.stderr);
    assert!(loud.status.success(), "{loud_err}");
    assert!(
        loud_err.contains("httplog"),
        "no warning to hide without -q: {loud_err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&loud.stdout),
        "Configuration file is valid\n"
    );

    for args in [
        &["-Ws", "-f", path, "-c", "-q"][..],
        &["-W", "-c", "-f", quiet_path][..], // global `quiet`
    ] {
        let quiet = run(args);
        assert!(quiet.status.success(), "{args:?}: {quiet:?}");
        assert!(
            quiet.stdout.is_empty() && quiet.stderr.is_empty(),
            "{args:?} printed: {quiet:?}"
        );
    }
    // -V undoes `quiet`.
    let verbose = run(&["-f", quiet_path, "-c", "-V"]);
    assert_eq!(
        String::from_utf8_lossy(&verbose.stdout),
        "Configuration file is valid\n"
    );

    let bad = TempCfg::new(&text.replacen("    maxconn 4096\n", "    maxconn lots\n", 1));
    let out = run(&["-Ws", "-f", bad.path.to_str().expect("utf-8"), "-c", "-q"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("maxconn"),
        "{out:?}"
    );

    let version = run(&["-vv"]);
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("lb "),
        "{version:?}"
    );
}

/// `-S PATH`: HAProxy's master CLI. `show proc` lists lb as master and worker, `@1` and
/// `@!PID` reach the runtime API, a prefix alone sends the next commands there, an unknown pid
/// is refused, `reload` reloads (and a rejected one shows in the prompt), a `level user`
/// socket may not reload.
#[test]
fn master_cli() {
    let server = Backend::flow("s1");
    let port = free_port();
    let dir = SockDir::new("mcli");
    let (path, user_path) = (dir.sock("master.sock"), dir.sock("user.sock"));
    let cfg = config(port, &server);
    let cfg_file = TempCfg::new(&cfg);
    let spec = format!("{},mode,600", path.display());
    let lb = Lb::start_with(&opts_with(&cfg_file, &["-W", "-db", "-S", &spec]));
    let pid = lb.pid();

    let proc = cli(&path, "show proc");
    let lines: Vec<&str> = proc.lines().collect();
    assert!(lines[0].starts_with("#<PID>          <type>"), "{proc}");
    assert!(
        lines[1].starts_with(&format!("{pid:<15} master          0 [failed: 0]")),
        "{proc}"
    );
    assert_eq!(lines[2], "# workers", "{proc}");
    assert!(lines[3].starts_with(&format!("{pid:<15} worker")), "{proc}");
    assert!(proc.contains("# programs\n"), "{proc}");

    let stat = cli(&path, "@1 show stat");
    assert!(stat.starts_with("# pxname,svname,"), "{stat}");
    assert!(stat.contains("\nbe,s1,"), "{stat}");
    let info = cli(&path, &format!("@!{pid} show info"));
    assert!(info.contains(&format!("Pid: {pid}\n")), "{info}");
    // A prefix alone: the commands after it go to the worker, `@` brings them back.
    let both = cli(&path, "@1; show backend; @; show proc");
    assert!(
        both.contains("be\n") && both.contains("# workers"),
        "{both}"
    );
    // Without a prefix, a worker's command is unknown to the master.
    let unknown = cli(&path, "show backend");
    assert!(unknown.starts_with("Unknown command"), "{unknown}");
    let wrong = cli(&path, &format!("@!{} show info", pid + 1));
    assert_eq!(
        wrong,
        format!(
            "Can't find the target PID matching the prefix '@!{}'\n",
            pid + 1
        )
    );

    // `reload` (operator or admin) reloads the -f files, as SIGUSR2 does.
    assert_eq!(cli(&path, "reload"), "");
    assert!(
        lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)),
        "{}",
        lb.logs().join("\n")
    );
    std::fs::write(
        &cfg_file.path,
        cfg.replacen("maxconn 4096", "maxconn lots", 1),
    )
    .expect("write config");
    assert_eq!(cli(&path, "reload"), "");
    assert!(
        lb.wait_for_log("reload rejected", Duration::from_secs(10)),
        "{}",
        lb.logs().join("\n")
    );
    let prompt = cli(&path, "prompt; show proc");
    assert!(
        prompt.contains(&format!("{pid:<15} master          2 [failed: 1]")),
        "{prompt}"
    );
    assert!(prompt.ends_with("master[ReloadFailed]> "), "{prompt}");
    drop(lb);

    // A `level user` master CLI may read, not reload.
    let spec = format!("{},level,user", user_path.display());
    std::fs::write(&cfg_file.path, &cfg).expect("write config");
    let opts = opts_with(&cfg_file, &["-db", "-S", &spec]);
    let lb = Lb::start_with(&opts);
    assert_eq!(cli(&user_path, "reload"), "Permission denied\n\n");
    assert!(cli(&user_path, "@1 show info").contains("Pid: "));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !lb.logs().iter().any(|l| l.contains("reloading")),
        "{}",
        lb.logs().join("\n")
    );
}

/// lb on the file of `cfg` (so that a reload reads it again) with `args`.
fn opts_with(cfg: &TempCfg, args: &[&str]) -> LbOpts {
    let mut opts = LbOpts::new("", "splice");
    opts.configs.clear();
    opts.args(&["-f", cfg.path.to_str().expect("utf-8")])
        .args(args)
}

/// `-dr`: a server name that does not resolve no longer fails the load: the server starts in
/// MAINT (resolution), as with `init-addr ...,none` (HAProxy appends `none` to every server's
/// methods); without `-dr`, the same file is refused.
#[test]
fn dr_ignores_resolution_failures() {
    let port = free_port();
    let text = simple_config(port, &[], &["s1 no-such-host.invalid:5432".to_owned()]);
    let cfg = TempCfg::new(&text);
    let path = cfg.path.to_str().expect("utf-8 path");
    let run = |args: &[&str]| Command::new(lb_bin()).args(args).output().expect("run lb");
    let refused = run(&["-c", "-f", path]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot resolve 'no-such-host.invalid'"),
        "{refused:?}"
    );
    let accepted = run(&["-c", "-dr", "-f", path]);
    assert!(accepted.status.success(), "{accepted:?}");
    assert!(
        String::from_utf8_lossy(&accepted.stderr).contains("starting in MAINT (resolution)"),
        "{accepted:?}"
    );
}

/// `-f DIR`, as HAProxy: the directory's `.cfg` files in name order (not hidden ones, not
/// other names, not directories), read again at each reload, so a file added since is served.
#[test]
fn config_directory() {
    let server = Backend::flow("s1");
    let (port, port2) = (free_port(), free_port());
    let dir = SockDir::new("cfgdir");
    let whole = simple_config(port, &[], &[format!("s1 {}", server.addr)]);
    // Split after `defaults`: sections continue across files in order.
    let at = whole.find("\nfrontend fe").expect("frontend line");
    let write = |name: &str, text: &str| std::fs::write(dir.sock(name), text).expect("write");
    write("20-fe.cfg", &whole[at..]);
    write("10-global.cfg", &whole[..at]);
    for junk in [".hidden.cfg", "notes.txt", "30-fe.cfg.bak"] {
        write(junk, "this is not a configuration\n");
    }
    std::fs::create_dir_all(dir.sock("sub.cfg")).expect("mkdir");
    let path = dir.path.to_str().expect("utf-8");
    let check = Command::new(lb_bin())
        .args(["-c", "-f", path])
        .output()
        .expect("run");
    assert!(check.status.success(), "{check:?}");

    let mut opts = LbOpts::new("", "splice");
    opts.configs.clear();
    let lb = Lb::start_with(&opts.args(&["-f", path]));
    let flows = |lb: &Lb, port: u16, what: &str| {
        concurrent_flows(
            local(port),
            &server,
            &flow_plan(2, 2, 64 << 10),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("flows {what}: {e}\n{}", lb.logs().join("\n")));
    };
    flows(&lb, port, "from the directory");
    write(
        "30-fe2.cfg",
        &format!("\nfrontend fe2\n    bind 127.0.0.1:{port2}\n    default_backend be\n"),
    );
    lb.signal(libc::SIGHUP);
    assert!(
        lb.wait_for_log("reload done: generation 1", Duration::from_secs(10)),
        "{}",
        lb.logs().join("\n")
    );
    flows(&lb, port2, "to the file added before the reload");

    let empty = SockDir::new("cfgdir-empty");
    let out = Command::new(lb_bin())
        .args(["-c", "-f", empty.path.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no configuration file"),
        "{out:?}"
    );
}
