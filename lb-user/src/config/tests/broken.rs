//! Broken configs: the first error names its line and problem; every error is collected.

use super::*;

/// (config, line of the first error, text the message must contain)
const BROKEN: &[(&str, u32, &str)] = &[
    ("defaults\n  timeout connect 5x\n", 2, "'timeout connect': invalid time '5x' (expected a number with optional unit us|ms|s|m|h|d)"),
    ("backend be\n  balanse roundrobin\n", 2, "unknown keyword 'balanse' in 'backend' section 'be' (did you mean 'balance'?)"),
    ("backend be\n  server s1 127.0.0.1:80 weight 300\n", 2, "server 'be/s1': weight 300 out of range 0..=256"),
    ("backend be\n  tcp-request content reject if { fe_conn(nope) gt 1 }\n", 2, "no frontend named 'nope' (named in an expression)"),
    ("backend be\n  tcp-request content reject if { queue(nope) gt 1 }\n", 2, "no backend named 'nope' (named in an expression)"),
    ("frontend fe\n  bind :80\n  default_backend nope\n", 3, "frontend 'fe': default_backend 'nope' not found"),
    ("backend be\n  bind :80\n", 2, "'bind' in a 'backend' section is not allowed"),
    ("backend x\nbackend x\n", 2, "proxy name 'x' is used twice (first at t.cfg:1)"),
    ("listen x\n  bind :81\nbackend x\n", 3, "proxy name 'x' is used twice"),
    ("backend be\n  server s1 127.0.0.1:80\n  server s1 127.0.0.1:81\n", 3, "server 'be/s1' is defined twice (first at t.cfg:2)"),
    ("backend be\n  server s 127.0.0.1:x\n", 2, "server 'be/s': invalid port 'x'"),
    ("backend be\n  server s nonexistent-host.invalid:80\n", 2, "server 'be/s': cannot resolve 'nonexistent-host.invalid'"),
    ("backend be\n  server s 127.0.0.1:80 rise x\n", 2, "server 'be/s': 'rise': invalid number 'x'"),
    ("backend be\n  server s 127.0.0.1:80 frobnicate\n", 2, "server 'be/s': unknown parameter 'frobnicate'"),
    ("backend be\n  server s 127.0.0.1:80 ssl verify none crt c.pem\n", 2, "server 'be/s': 'crt': lb's TLS to servers presents no client certificate"),
    ("backend be\n  server s 127.0.0.1:80 ssl\n", 2, "server 'be/s': 'ssl': verify is enabled by default but no CA file specified."),
    ("backend be\n  server s 127.0.0.1:80 inter\n", 2, "server 'be/s': 'inter' needs a value"),
    ("backend be\n  server s1 127.0.0.1:80 id 1\n  server s2 127.0.0.1:81 id 1\n", 3, "server 'be/s2': id 1 is already used by server 's1'"),
    ("global\n  maxconn 0\n", 2, "'maxconn': 0 out of range 1..=4294967295"),
    ("global\n  nbthread 0\n", 2, "'nbthread': 0 out of range 1..=4096"),
    ("global\n  nbproc 2\n", 2, "multi-process mode was removed in HAProxy 2.5"),
    ("global\n  frobnicate\n", 2, "unknown keyword 'frobnicate' in 'global' section"),
    ("defaults\n  backlog 0\n", 2, "'backlog': 0 out of range"),
    ("global\n  maxconnrate fast\n", 2, "'maxconnrate': "),
    ("global\n  maxsessrate\n", 2, "'maxsessrate': expects"),
    ("defaults\n  rate-limit connections 5\n", 2, "'rate-limit': unknown limit 'connections' (expected 'sessions')"),
    ("defaults\n  rate-limit sessions lots\n", 2, "'rate-limit sessions': "),
    ("defaults\n  rate-limit sessions\n", 2, "'rate-limit': expects"),
    ("frontend f\n  bind :1 backlog many\n", 2, "'bind' option 'backlog': "),
    ("frontend f\n  bind :1 backlog\n", 2, "'bind' option 'backlog' needs a value"),
    ("global\n  tune.lb.sockmap-backlog 1k\n", 2, "'tune.lb.sockmap-backlog': 1024 bytes is below the minimum of 64k"),
    ("global\n  tune.lb.sockmap-backlog lots\n", 2, "'tune.lb.sockmap-backlog': invalid size 'lots'"),
    ("global\n  tune.lb.sockmap-backlog\n", 2, "'tune.lb.sockmap-backlog': expects 1 argument, got 0"),
    ("frontend fe\n  mode http\n  bind :80\n  default_backend be\nbackend be\n", 2, "mode http is not supported (lb is a TCP load balancer); only a stats section may use it"),
    ("defaults\n  mode http\nbackend be\n", 3, "backend 'be': mode http (inherited from defaults at t.cfg:2) is not supported"),
    ("backend be\n  mode health\n", 2, "mode health is not supported"),
    ("backend be\n  balance uri\n", 2, "'balance uri' needs mode http or is not supported"),
    ("backend be\n  balance hdr(host)\n", 2, "'balance hdr(host)' needs mode http"),
    ("backend be\n  balance random(0)\n", 2, "'balance random': draws 0 out of range"),
    ("backend be\n  balance wrr\n", 2, "'balance': unknown algorithm 'wrr'"),
    ("backend be\n  hash-type consistent md5\n", 2, "'hash-type': unexpected argument 'md5'"),
    ("backend be\n  hash-type consistent avalanche sdbm\n", 2, "'hash-type': unexpected argument 'sdbm'"),
    ("backend be\n  hash-type ring\n", 2, "'hash-type': unknown method 'ring' (expected map-based, consistent or maglev)"),
    ("backend be\n  balance hash dst\n", 2, "'balance hash dst': lb evaluates only the expression 'src'"),
    ("backend be\n  balance source src\n", 2, "'balance': unexpected argument 'src'"),
    ("defaults\n  contimeout 5000\n", 2, "'contimeout' was removed in HAProxy 2.1; use 'timeout connect'"),
    ("defaults\n  timeout server 30d\n", 2, "'timeout server': time '30d' is too large"),
    ("defaults\n  timeout bogus 5s\n", 2, "'timeout': unknown timeout 'bogus'"),
    ("frontend fe\n  bind :80\n", 1, "frontend 'fe' has no backend: add 'default_backend NAME'"),
    ("backend be\nfrontend fe\n  default_backend be\n", 2, "frontend 'fe' has no 'bind' line"),
    ("frontend fe\n  bind :443 ssl crt /etc/x.pem\n", 2, "unable to load SSL certificate file '/etc/x.pem'"),
    ("frontend fe\n  bind :443 ssl\n", 2, "no SSL certificate specified (use 'crt')"),
    ("frontend fe\n  bind :443 ssl crt x ciphers DHE-RSA-AES128-SHA\n", 2, "no cipher lb can offer in 'DHE-RSA-AES128-SHA'"),
    ("frontend fe\n  bind :443 ssl crt x ssl-max-ver TLSv1.4\n", 2, "unknown version 'TLSv1.4'"),
    ("global\n  ssl-default-bind-options no-sslv3 frob\n", 2, "'ssl-default-bind-options': unknown option 'frob'"),
    ("frontend fe\n  bind :443 ssl crt-list /etc/l\n", 2, "'bind' option 'crt-list' is not supported yet"),
    ("frontend fe\n  bind :80 frob\n", 2, "'bind': unknown option 'frob'"),
    ("frontend fe\n  bind 127.0.0.1\n", 2, "'bind': '127.0.0.1': port required"),
    ("frontend fe\n  bind :80-70\n", 2, "':80-70': invalid port range '80-70'"),
    ("backend be\n  option tcp-check\n  tcp-check expect\n", 3, "'tcp-check expect': needs a match type"),
    ("backend be\n  tcp-check expect string\n", 2, "'tcp-check expect': 'string' needs a pattern"),
    ("backend be\n  tcp-check send-binary abc\n", 2, "invalid hex string 'abc'"),
    ("backend be\n  option mysql-check user\n", 2, "'option mysql-check user' needs a user name"),
    ("backend be\n  option mysql-check user u post-99\n", 2, "unknown version 'post-99'"),
    ("backend be\n  option pgsql-check\n", 2, "'option pgsql-check': expects 'user NAME'"),
    ("backend be\n  option frobnicate\n", 2, "unknown option 'frobnicate'"),
    ("backend be\n  retries -1\n", 2, "'retries': invalid number '-1'"),
    ("backend be\n  log 127.0.0.1:514\n", 2, "'log': a facility is required"),
    ("global\n  log 127.0.0.1:514 local9\n", 2, "'log': unknown facility 'local9'"),
    ("bind :80\n", 1, "'bind' outside of any section"),
    ("backend be\n  server s 127.0.0.1:80 init-addr dns\n", 2, "'init-addr': invalid method 'dns'"),
    ("backend be\n  server s 127.0.0.1:80 resolvers nodns\n", 2, "resolvers 'nodns' not found"),
    ("frontend fe from nodef\n", 1, "no defaults section named 'nodef'"),
    ("backend be\n  server s \"unterminated\n", 2, "unmatched quote"),
    ("frontend a\n  bind :80\n  default_backend be\nfrontend b\n  bind :80\n  default_backend be\nbackend be\n", 5, "address 0.0.0.0:80 is already bound by frontend 'a' at t.cfg:2"),
    ("listen l\n  bind :80\n  default_backend x\n", 3, "'default_backend' in a 'listen' section is not supported"),
    ("resolvers dns\n  nameserver ns1 example:53\n", 2, "expected IP:PORT"),
    ("userlist u\n  user admin secret x\n", 2, "expects 'password' or 'insecure-password'"),
    ("frontend fe\n  bind :80\n  default_backend be\n  timeout server 5s\nbackend be\n  server s 127.0.0.1:80 weight 257\n", 6, "weight 257 out of range"),
    ("backend be\n  stats auth admin\n", 2, "'stats auth': expects 'user:password'"),
    ("backend be\n  clitcpka-idle 30\n  srvtcpka-cnt 0\n", 3, "'srvtcpka-cnt': 0 out of range 1..=127"),
    ("backend 'b e'\n", 1, "backend name 'b e' contains invalid character ' '"),
];

#[test]
fn broken_configs_report_line_and_problem() {
    assert!(BROKEN.len() >= 25);
    for (text, line, needle) in BROKEN {
        let e = errs(text);
        let first = &e.0[0];
        let loc = first.loc.as_ref().expect("error has a location");
        assert_eq!(
            (loc.line, first.message.contains(needle)),
            (*line, true),
            "config:\n{text}\nexpected line {line} containing {needle:?}, got:\n{e}"
        );
        assert!(e.to_string().starts_with(&format!("t.cfg:{line}: ")), "{e}");
    }
}

#[test]
fn all_errors_are_collected() {
    let e = errs(
        "global\n  nbthread 0\nbackend be\n  timeout connect 5x\n  server s1 127.0.0.1:80 weight 999\n  balanse x\n",
    );
    let lines: Vec<u32> = e.0.iter().map(|e| e.loc.as_ref().unwrap().line).collect();
    assert_eq!(lines, [2, 4, 5, 6], "{e}");
}
