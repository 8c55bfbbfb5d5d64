# Writes the byte strings of lb's unit tests for `proxy_proto` and `tls_hello` (the same
# literals, and the same builders written again here) as fuzz seeds:
# `python3 unit_vectors.py DIR` -> DIR/proxy_header/unit-*, DIR/client_hello/unit-*.
import os, struct, sys
out = sys.argv[1]
for d in ("proxy_header", "client_hello"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
def save(kind, name, data):
    open(os.path.join(out, kind, "unit-" + name), "wb").write(data)

SIG = b"\r\n\r\n\0\r\nQUIT\n"
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF
def v2(body_addr, tlvs=b"", cmd=0x21, fam=0x11, crc=False):
    body = body_addr + tlvs
    if crc:
        body += b"\x03\x00\x04\0\0\0\0"
    h = SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body
    if crc:
        h = h[:-4] + struct.pack(">I", crc32c(h))
    return h
inet = bytes([1, 2, 3, 4, 6, 7, 8, 9]) + struct.pack(">HH", 5, 10)
for i, line in enumerate([
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /",
    b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5 6\r\n",
]):
    save("proxy_header", f"v1-{i:02}", line)
v6 = bytes(15) + b"\x05" + bytes(15) + b"\x01" + struct.pack(">HH", 65535, 1)
save("proxy_header", "v2-tcp4", v2(inet))
save("proxy_header", "v2-tcp6", v2(v6, fam=0x21))
save("proxy_header", "v2-local", v2(b"", cmd=0x20, fam=0))
save("proxy_header", "v2-tlvs-crc", v2(inet, b"\x02\x00\x0chost.example" + b"\x20\x00\x05" + bytes(5), crc=True))
save("proxy_header", "v2-unix-tlv", v2(bytes(216) + b"\xe0\x00\x01\x07", fam=0x31))
save("proxy_header", "v2-udp4", v2(inet, fam=0x12))
save("proxy_header", "v2-unspec", v2(b"", fam=0))
save("proxy_header", "v2-tlv-past-end", SIG + b"\x21\x11\x00\x0f" + inet + b"\x04\x00\x09")
save("proxy_header", "v2-crc-short", SIG + b"\x21\x11\x00\x11" + inet + b"\x03\x00\x02\x00\x00")

def ext(ty, data):
    return struct.pack(">HH", ty, len(data)) + data
def hello_record(sni, alpn):
    exts = b""
    if sni is not None:
        n = sni.encode()
        exts += ext(0, struct.pack(">HBH", len(n) + 3, 0, len(n)) + n)
    if alpn:
        lst = b"".join(bytes([len(a)]) + a.encode() for a in alpn)
        exts += ext(16, struct.pack(">H", len(lst)) + lst)
    exts += ext(10, b"\x00\x02\x00\x1d")
    body = b"\x03\x03" + bytes([7]) * 32 + bytes([32]) + bytes([9]) * 32
    body += b"\x00\x04\x13\x01\xc0\x2f" + b"\x01\x00" + struct.pack(">H", len(exts)) + exts
    return record(0x16, handshake(1, body))
def handshake(ty, body):
    return bytes([ty]) + struct.pack(">I", len(body))[1:] + body
def record(ty, payload, version=0x0301):
    return struct.pack(">BHH", ty, version, len(payload)) + payload
def fragmented(h, size):
    p = h[5:]
    return b"".join(record(0x16, p[i:i + size]) for i in range(0, len(p), size))
save("client_hello", "sni-alpn", hello_record("redis-1.acme.com", ["h2", "http/1.1"]))
save("client_hello", "no-sni-no-alpn", hello_record(None, []))
save("client_hello", "fragmented-60", fragmented(hello_record("frag.example", ["h2"]), 60))
save("client_hello", "server-hello", record(0x16, handshake(2, bytes(70)), 0x0303))
save("client_hello", "sslv2-hello", bytes([0x80, 9 + 3 + 16, 1, 3, 1, 0, 3, 0, 0, 0, 16, 0, 0, 4]) + b"\xaa" * 16)
save("client_hello", "http", b"GET / HTTP/1.1\r\n")
save("client_hello", "short-record", b"\x16\x03\x01\x00\x10\x01")
