//! `cpu-map` (global): lb's worker threads (`lb-0`, `lb-1`: HAProxy's threads 1 and 2) run on
//! the CPUs it names, as the kernel reports them (`Cpus_allowed_list` of each task); a reload
//! re-pins them, and one that removes the lines gives them back the CPUs they started with.
//! Traffic goes through at each step (concurrent flows of the flow protocol: SHA-256 of both
//! directions checked at both ends, each half-close order), on every data plane. Needs two CPUs (this machine has them; with one, the
//! test says so and checks the one-CPU map only).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::scenarios::{concurrent_flows, flow_plan};
use common::servers::Backend;
use common::{free_port, local, Lb, DEFAULTS};

on_both_planes!(worker_threads_run_on_the_cpus_cpu_map_names);

const SEED: u64 = 0xc0_ffee;

/// Each worker thread's `Cpus_allowed_list`, by thread name.
fn worker_cpus(pid: u32) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !(comm.starts_with("lb-") && comm[3..].chars().all(|c| c.is_ascii_digit())) {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            out.insert(comm.to_owned(), list.trim().to_owned());
        }
    }
    out
}

fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn config(port: u16, echo: &Backend, cpu_map: &str) -> String {
    format!(
        "global\n    nbthread 2\n{cpu_map}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:{port}\n    \
         default_backend be\n\nbackend be\n    server s1 {}\n",
        echo.addr
    )
}

/// Flows through lb, checked at both ends.
fn traffic(port: u16, server: &Backend, seed: u64) {
    let plan = flow_plan(4, seed, 256 * 1024);
    concurrent_flows(local(port), server, &plan, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn worker_threads_run_on_the_cpus_cpu_map_names(dataplane: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let echo = Backend::flow("flow");
    let port = free_port();
    let wait = Duration::from_secs(10);
    let first = if cpus >= 2 {
        "    cpu-map auto:1/1-2 0-1\n"
    } else {
        eprintln!("one CPU: only 'cpu-map 1/all 0' is checked");
        "    cpu-map 1/all 0\n"
    };
    let mut lb = Lb::start(&config(port, &echo, first), dataplane);
    let start = if cpus >= 2 {
        want(&[("lb-0", "0"), ("lb-1", "1")])
    } else {
        want(&[("lb-0", "0"), ("lb-1", "0")])
    };
    assert!(
        common::servers::wait_until(wait, || worker_cpus(lb.pid()) == start),
        "{dataplane}: {:?}",
        worker_cpus(lb.pid())
    );
    assert!(lb.wait_for_log("thread 1: cpu-map: runs on CPUs 0", wait));
    traffic(port, &echo, SEED);

    if cpus >= 2 {
        // A reload moves both to CPU 1.
        lb.rewrite_config(0, &config(port, &echo, "    cpu-map 1/all 1\n"));
        lb.signal(libc::SIGHUP);
        assert!(lb.wait_for_log("reload done: generation 1", wait));
        assert_eq!(worker_cpus(lb.pid()), want(&[("lb-0", "1"), ("lb-1", "1")]));
        traffic(port, &echo, SEED);
    }
    // A reload without cpu-map gives them back every CPU they started with.
    lb.rewrite_config(0, &config(port, &echo, ""));
    lb.signal(libc::SIGHUP);
    let done = if cpus >= 2 {
        "generation 2"
    } else {
        "generation 1"
    };
    assert!(lb.wait_for_log(&format!("reload done: {done}"), wait));
    let all = if cpus >= 2 {
        format!("0-{}", cpus - 1)
    } else {
        "0".to_owned()
    };
    assert_eq!(
        worker_cpus(lb.pid()),
        want(&[("lb-0", &all), ("lb-1", &all)])
    );
    traffic(port, &echo, SEED);
    lb.stop();
}
