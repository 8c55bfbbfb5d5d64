# Saves each HTTP request it gets to DIR/req-NNN and answers a small page: `python3
# http_server.py DIR PORT`, then send requests (see README.md). Used for fuzz/seeds/stats_http.
import socket, sys, threading
out = sys.argv[1]; port = int(sys.argv[2]); n = [0]; lock = threading.Lock()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(64)
def serve(c):
    data = b""
    c.settimeout(3)
    try:
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d: break
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        cl = 0
        for l in head.split(b"\r\n"):
            if l.lower().startswith(b"content-length:"): cl = int(l.split(b":")[1])
        while len(body) < cl:
            d = c.recv(65536)
            if not d: break
            body += d
        data = head + b"\r\n\r\n" + body
    except Exception: pass
    if data.strip():
        with lock:
            n[0] += 1
            open(f"{out}/req-{n[0]:03d}", "wb").write(data)
    page = b"<html><head><link rel=icon href=/favicon.ico></head><body>stats</body></html>"
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(page) + page)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,)).start()
