# Captures what real peers send first, on loopback: the PROXY headers of HAProxy (Debian 12,
# 2.6) with `send-proxy`, `send-proxy-v2` (and `proxy-v2-options`) in front of a server and
# before its health checks, and the ClientHellos of OpenSSL 3.0's `s_client` and curl.
# `python3 proxy_tls.py DIR`: writes DIR/proxy_header/haproxy-* and DIR/client_hello/*.
import os, socket, subprocess, sys, tempfile, threading, time
out = sys.argv[1]
for d in ("proxy_header", "client_hello"):
    os.makedirs(os.path.join(out, d), exist_ok=True)

def listen(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0)); s.listen(16); s.settimeout(10)
    return s

def first_bytes(srv, settle=0.5):
    """What the first connection accepted on `srv` sends within `settle` s of its last byte."""
    c, _ = srv.accept()
    c.settimeout(settle)
    data = b""
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    except (socket.timeout, ConnectionResetError):
        pass  # settled, or a check closing with a reset after its header
    c.close()
    return data

def save(kind, name, data):
    open(os.path.join(out, kind, name), "wb").write(data)
    print(kind, name, len(data))

def haproxy():
    tmp = tempfile.mkdtemp(prefix="lb-capture-")
    unix = os.path.join(tmp, "fe.sock")
    cases = [  # name, bind, server options, server family
        ("v1-tcp4", "127.0.0.1:0", "send-proxy", socket.AF_INET),
        ("v1-tcp6", "[::1]:0", "send-proxy", socket.AF_INET6),
        ("v1-unknown-unix", f"unix@{unix}", "send-proxy", socket.AF_INET),
        ("v2-tcp4", "127.0.0.1:0", "send-proxy-v2", socket.AF_INET),
        ("v2-tcp6", "[::1]:0", "send-proxy-v2", socket.AF_INET6),
        ("v2-unix", f"unix@{unix}2", "send-proxy-v2", socket.AF_INET),
        ("v2-tcp4-options", "127.0.0.1:0",
         "send-proxy-v2 proxy-v2-options crc32c,unique-id,ssl", socket.AF_INET),
        ("v2-tcp6-crc32c", "[::1]:0", "send-proxy-v2 proxy-v2-options crc32c", socket.AF_INET6),
    ]
    servers, fes, cfg = [], [], ["global\n    log stderr format raw local0 err\n",
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n"]
    for i, (name, bind, opts, fam) in enumerate(cases):
        srv = listen(fam, "::1" if fam == socket.AF_INET6 else "127.0.0.1")
        servers.append(srv)
        if bind.endswith(":0"):
            probe = listen(socket.AF_INET6 if bind.startswith("[") else socket.AF_INET,
                           "::1" if bind.startswith("[") else "127.0.0.1")
            port = probe.getsockname()[1]; probe.close()
            bind = bind[:-1] + str(port)
        fes.append(bind)
        host = f"[{srv.getsockname()[0]}]" if fam == socket.AF_INET6 else srv.getsockname()[0]
        cfg.append(f"listen l{i}\n    bind {bind}\n    unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt\n"
                   f"    server s {host}:{srv.getsockname()[1]} {opts}\n")
    # A health check with the PROXY header: HAProxy sends v2 LOCAL before its check.
    chk = listen()
    cfg.append(f"backend chk\n    server c 127.0.0.1:{chk.getsockname()[1]} check inter 60s "
               "send-proxy-v2 check-send-proxy\n")
    path = os.path.join(tmp, "h.cfg")
    open(path, "w").write("".join(cfg))
    p = subprocess.Popen(["haproxy", "-f", path], stdout=subprocess.DEVNULL)
    try:
        save("proxy_header", "haproxy-v2-check-local", first_bytes(chk))
        for (name, _, _, _), bind, srv in zip(cases, fes, servers):
            time.sleep(0.2)
            if bind.startswith("unix@"):
                c = socket.socket(socket.AF_UNIX); c.connect(bind[5:])
            elif bind.startswith("["):
                host, port = bind[1:].split("]:"); c = socket.create_connection((host, int(port)))
            else:
                host, port = bind.split(":"); c = socket.create_connection((host, int(port)))
            c.sendall(b"PING\r\n")
            save("proxy_header", f"haproxy-{name}", first_bytes(srv))
            c.close()
    finally:
        p.kill()

def hello(name, cmd):
    srv = listen()
    port = srv.getsockname()[1]
    args = [a.replace("PORT", str(port)) for a in cmd]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        save("client_hello", name, first_bytes(srv))
    finally:
        p.kill(); srv.close()

haproxy()
sc = ["openssl", "s_client", "-connect", "127.0.0.1:PORT"]
hello("openssl-sni-alpn", sc + ["-servername", "redis-1.acme.com", "-alpn", "h2,http/1.1"])
hello("openssl-tls12-sni-alpn", sc + ["-tls1_2", "-servername", "db.example", "-alpn", "postgresql"])
hello("openssl-no-sni", sc + ["-noservername"])
hello("openssl-tls13-only", sc + ["-tls1_3", "-servername", "mqtt.example", "-alpn", "mqtt"])
hello("openssl-fragmented", sc + ["-servername", "frag.example", "-max_send_frag", "512", "-alpn",
                                  ",".join(f"proto-{i:03}" for i in range(60))])
hello("curl-sni-alpn", ["curl", "-sk", "--max-time", "3", "--resolve", "web.example:PORT:127.0.0.1",
                        "https://web.example:PORT/"])
