# Captures real DNS answers from dnsmasq (Debian 12, 2.90) to the queries lb sends (A/AAAA with
# EDNS0): `python3 dns.py DIR`. Used for fuzz/seeds/dns_answer.
import socket, struct, subprocess, sys, time, os
out = sys.argv[1]  # the directory to write the answers to
hosts = os.path.join(out, "hosts.tmp")
lines = ["127.0.0.2 db.test", "::2 v6.test", "127.0.0.2 both.test", "::3 both.test"]
lines += [f"127.0.1.{i} multi.test" for i in range(1, 4)]
lines += [f"10.0.{i//250}.{i%250+1} big.test" for i in range(60)]
open(hosts, "w").write("\n".join(lines) + "\n")
def start(port, local):
    args = ["dnsmasq", "--no-daemon", "--keep-in-foreground", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--cache-size=0", "--local-ttl=0", "--user=root",
            "--pid-file=", f"--addn-hosts={hosts}", "--cname=alias.test,db.test", "--cname=chain.test,alias.test"]
    if local: args.append("--local=/test/")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p
def query(qid, name, qtype, size):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    for l in name.split("."): q += bytes([len(l)]) + l.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    q += b"\0" + struct.pack(">HHIH", 41, size, 0, 0)
    return q
def ask(port, tag, name, qtype, size=512, qid=0x1234):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(query(qid, name, qtype, size), ("127.0.0.1", port))
    d = s.recv(65535)
    open(f"{out}/dnsmasq-{tag}", "wb").write(d)
    print(tag, len(d), "rcode", d[3] & 15, "tc", (d[2] >> 1) & 1)
p1 = start(15353, True); p2 = start(15354, False)
try:
    ask(15353, "a", "db.test", 1)
    ask(15353, "a-multi", "multi.test", 1)
    ask(15353, "aaaa", "v6.test", 28)
    ask(15353, "aaaa-nodata", "db.test", 28)
    ask(15353, "a-both", "both.test", 1)
    ask(15353, "aaaa-both", "both.test", 28)
    ask(15353, "nxdomain", "missing.test", 1)
    ask(15353, "cname", "alias.test", 1)
    ask(15353, "cname-chain", "chain.test", 1)
    ask(15353, "truncated", "big.test", 1, 512)
    ask(15353, "big-edns4096", "big.test", 1, 4096)
    ask(15353, "mixed-case", "Db.TeSt", 1)
    ask(15354, "refused-aaaa", "db.test", 28)
    ask(15354, "refused-unknown", "missing.test", 1)
finally:
    p1.kill(); p2.kill(); os.remove(hosts)
