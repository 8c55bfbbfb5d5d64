//! What the fuzz targets share: the small configuration the stateful targets (runtime API
//! session, stats page) run against, a fresh generation built from it for every input (so an
//! input's outcome does not depend on the ones before it), and a runtime on which every wait is
//! bounded (a command that never answers is a hang, reported as a crash).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lb_user::config::{self, Config};
use lb_user::flows::FlowControl;
use lb_user::generation::{Generation, Process};

/// A configuration with something for every command and every stats page feature: several
/// backends, checked and agent-checked servers, a backup, a server named by a resolvers name,
/// a disabled one, and a stats section with clear-text users, admin and the exporter. No
/// `log` lines, no slow start, no crypt(3) hashes: nothing slow or with effects outside the
/// process. Nothing is bound: the addresses are only parsed.
pub const CONFIG: &str = "\
global
    maxconn 100
    stats socket /nonexistent/lb-fuzz.sock level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s

resolvers dns
    nameserver ns1 127.0.0.1:53

userlist ops
    user alice insecure-password hunter2

frontend fe
    bind 127.0.0.1:1
    default_backend be

backend be
    balance roundrobin
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string +PONG
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
    server s1 127.0.0.1:2 check weight 10 agent-check agent-port 3
    server s2 127.0.0.1:4 check weight 256 maxconn 5 maxqueue 3
    server s3 db.test:5 resolvers dns init-addr none
    server b1 127.0.0.1:6 backup
    server d1 127.0.0.1:7 disabled

backend other
    balance leastconn
    server o1 [::1]:8 check

listen stats
    mode http
    bind 127.0.0.1:9
    stats enable
    stats uri /stats
    stats refresh 5s
    stats auth admin:secret
    stats admin if TRUE
    http-request use-service prometheus-exporter if { path /metrics }
";

/// [`CONFIG`], parsed once.
pub fn config() -> Arc<Config> {
    static CONFIG_ONCE: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG_ONCE
        .get_or_init(|| {
            Arc::new(
                config::load_str("fuzz.cfg", CONFIG)
                    .unwrap_or_else(|e| panic!("the fuzz configuration does not load:\n{e}")),
            )
        })
        .clone()
}

/// A fresh first generation of [`CONFIG`]. Its one thread channel has no receiver: commands
/// for the flows (`show sess`, `shutdown sessions`) find no thread, as after every accept
/// thread stopped.
pub fn generation() -> Arc<Generation> {
    let config = config();
    let (flows, receivers) = FlowControl::new(1);
    drop(receivers);
    let logs = lb_user::logging::open(&config).expect("no log targets to open");
    Generation::first(config, 100, logs, Process::new(flows, 1))
}

/// How long, on the runtime's clock, one input's future may take before it counts as a hang.
pub const HANG: Duration = Duration::from_secs(10);

/// Runs `f` to completion on a current-thread runtime; panics (a crash for libFuzzer, with
/// the input saved) when it is not done within [`HANG`]. The runtime's clock is paused: when
/// nothing can run, it jumps to the next timer, so a future that waits for something that never
/// comes is caught at once, on a loaded machine as on an idle one.
pub fn block_on<F: Future>(what: &str, f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    });
    // The timer is made inside the runtime: it needs its time driver.
    match rt.block_on(async { tokio::time::timeout(HANG, f).await }) {
        Ok(out) => out,
        Err(_) => panic!("{what}: no answer within {HANG:?} (a hang)"),
    }
}

/// The text lb makes of bytes it reads (invalid UTF-8 replaced, as the runtime API and the
/// agent check do).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Where a stream of `len` bytes is cut into the reads a socket might return: after every
/// byte when the stream is short (the parsers' headers fit in 256 bytes), else at
/// pseudo-random steps of 1 to 64 bytes drawn from the bytes themselves (so each input has its
/// own split, and a mutation changes it). Increasing, ending at `len`.
pub fn cuts(data: &[u8]) -> Vec<usize> {
    const EVERY_BYTE_UP_TO: usize = 256;
    if data.len() <= EVERY_BYTE_UP_TO {
        return (1..=data.len()).collect();
    }
    // FNV-1a of the stream, then xorshift.
    let mut x = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        at = (at + 1 + (x % 64) as usize).min(data.len());
        out.push(at);
    }
    out
}

/// Feeds `data` in the pieces [`cuts`] gives to `decide` (called on everything received so
/// far, as lb's readers call their parsers) and checks that the first answer that is not
/// "need more" is the answer on the whole stream: how the bytes were split never changes what
/// lb decides. `pending` says which answers mean "need more".
pub fn same_answer_in_pieces<T: PartialEq + std::fmt::Debug>(
    what: &str,
    data: &[u8],
    decide: impl Fn(&[u8]) -> T,
    pending: impl Fn(&T) -> bool,
) {
    let whole = decide(data);
    for n in cuts(data) {
        let early = decide(&data[..n]);
        if !pending(&early) {
            assert_eq!(
                early,
                whole,
                "{what}: decided on the first {n} of {} bytes, differently from the whole",
                data.len()
            );
            return;
        }
    }
}
