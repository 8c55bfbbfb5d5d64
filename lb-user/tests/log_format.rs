//! `log-format` through the real lb, on both data planes: every address variable (`%fi:%fp`,
//! `%bi:%bp`, `%si:%sp`), bytes both ways, `%rt` counting sessions, captures through `%hr`
//! and `%[capture.req.hdr(0)]`, a quoted sample, and the termination state, compared whole
//! with what the test knows of each connection.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::ops::Syslog;
use common::servers::Backend;
use common::{free_port, local, Lb, DEFAULTS};
use regex::Regex;

on_both_planes!(every_variable_of_a_custom_format);

fn every_variable_of_a_custom_format(dataplane: &str) {
    let syslog = Syslog::start();
    let s1 = Backend::ident("s1");
    let port = free_port();
    let cfg = format!(
        "global\n    log 127.0.0.1:{} local0\n\n{DEFAULTS}    log global\n\n\
         frontend fe\n    bind 127.0.0.1:{port}\n\
         \x20   tcp-request inspect-delay 2s\n\
         \x20   tcp-request content capture req.payload(0,5) len 5\n\
         \x20   tcp-request content accept if {{ req.len ge 5 }}\n\
         \x20   log-format \"%ci:%cp>%fi:%fp %bi:%bp>%si:%sp %b/%s %U/%B #%rt %hr \
         {{%[capture.req.hdr(0)]}} %{{+Q}}[fe_name] %ts\"\n\
         \x20   default_backend be\n\n\
         backend be\n    server s1 {}\n",
        syslog.addr.port(),
        s1.addr
    );
    let _lb = Lb::start(&cfg, dataplane);
    let re = Regex::new(
        r#"(?P<ci>[\d.]+):(?P<cp>\d+)>(?P<fi>[\d.]+):(?P<fp>\d+) (?P<bi>[\d.]+):(?P<bp>\d+)>(?P<si>[\d.]+):(?P<sp>\d+) be/s1 (?P<up>\d+)/(?P<down>\d+) #(?P<rt>\d+) \{(?P<hr>[^}]*)\} \{(?P<cap>[^}]*)\} "fe" (?P<ts>\S\S)\n?$"#,
    )
    .unwrap();
    let mut counters = Vec::new();
    for payload in [&b"hello world"[..], &b"HELLO, again"[..]] {
        let mut c = TcpStream::connect(local(port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(payload).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"s1\n");
        let needle = format!("127.0.0.1:{}>", me.port());
        let line = syslog
            .wait_for(&needle, 1, Duration::from_secs(10))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no line for {me}: {:?}", syslog.lines()));
        let m = re
            .captures(&line)
            .unwrap_or_else(|| panic!("not the format: {line:?}"));
        assert_eq!(&m["fi"], "127.0.0.1", "{line}");
        assert_eq!(m["fp"].parse::<u16>().unwrap(), port, "{line}");
        assert_eq!(&m["bi"], "127.0.0.1", "{line}");
        assert_ne!(&m["bp"], "0", "{line}");
        assert_ne!(m["bp"].parse::<u16>().unwrap(), port, "{line}");
        assert_eq!(
            format!("{}:{}", &m["si"], &m["sp"]),
            s1.addr.to_string(),
            "{line}"
        );
        assert_eq!(m["up"].parse::<usize>().unwrap(), payload.len(), "{line}");
        assert_eq!(&m["down"], "3", "{line}");
        let first5 = String::from_utf8_lossy(&payload[..5]).into_owned();
        assert_eq!(&m["hr"], first5, "{line}");
        assert_eq!(&m["cap"], first5, "{line}");
        assert_eq!(&m["ts"], "--", "{line}");
        counters.push(m["rt"].parse::<u64>().unwrap());
    }
    assert!(
        counters[1] > counters[0],
        "%rt counts sessions: {counters:?}"
    );
}
