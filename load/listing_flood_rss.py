#!/usr/bin/env python3
"""RSS of parley-server holding ROOMS rooms (default 50,000) while CONNS connections (300)
each pipeline PIPELINE (1,000) `GET LISTPATH` requests (/api/v1/rooms) and never read.
Usage: load/listing_flood_rss.py BINARY [extra server flags...]; see docs/BENCHMARKS.md."""
import json, os, socket, subprocess, sys, time, http.client

ROOMS = int(os.environ.get("ROOMS", "50000"))
CONNS = int(os.environ.get("CONNS", "300"))
PIPELINE = int(os.environ.get("PIPELINE", "1000"))
binary, extra = sys.argv[1], sys.argv[2:]
srv = subprocess.Popen([binary, "--bind", "127.0.0.1:0", "--ephemeral", "--pbkdf2-iterations", "1000",
                        "--min-password-length", "8", "--max-rooms-per-user", "1048576"] + extra,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = srv.stdout.readline()
host, port = line.split()[-1].rsplit(":", 1)
port = int(port)

def rss():
    out = {}
    for l in open(f"/proc/{srv.pid}/status"):
        k, v = l.split(":", 1)
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) // 1024
    return out

c = http.client.HTTPConnection(host, port)
def call(method, path, body=None, token=None):
    h = {"Content-Type": "application/json"}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); data = r.read()
    return r.status, data
call("POST", "/api/v1/register", {"username": "flooder", "password": "correct horse"})
tok = json.loads(call("POST", "/api/v1/login", {"username": "flooder", "password": "correct horse"})[1])["token"]
t0 = time.time()
for i in range(ROOMS):
    st, data = call("POST", "/api/v1/rooms", {"name": f"flood room {i:06d}"}, tok)
    if st != 201:
        print("create failed", i, st, data[:200]); break
print(f"created {ROOMS} rooms in {time.time()-t0:.0f}s; rss {rss()}")
st, data = call("GET", "/api/v1/rooms", None, tok)
print(f"GET /api/v1/rooms: {st}, {len(data)} bytes")

LISTPATH = os.environ.get("LISTPATH", "/api/v1/rooms")
req = (f"GET {LISTPATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n").encode()
socks = []
for _ in range(CONNS):
    s = socket.create_connection((host, port)); s.setblocking(False)
    socks.append([s, PIPELINE * len(req)])
blob = req * PIPELINE
peak = 0
t0 = time.time()
while time.time() - t0 < 20:
    for e in socks:
        s, left = e
        if left > 0:
            try:
                n = s.send(blob[len(blob) - left:])
                e[1] -= n
            except BlockingIOError:
                pass
    r = rss(); peak = max(peak, r["VmRSS"])
    time.sleep(0.2)
sent = sum(PIPELINE * len(req) - e[1] for e in socks)
print(f"{CONNS} connections pipelined {sent/1e6:.1f} MB of requests, never reading; "
      f"RSS now {rss()['VmRSS']} MiB, peak sampled {peak} MiB, VmHWM {rss()['VmHWM']} MiB")
srv.kill(); srv.wait()
