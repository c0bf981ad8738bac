#!/usr/bin/env python3
"""A real user's login latency from 127.0.0.2 while 127.0.0.1 floods the server with
concurrent registrations (issue 10, item 3). Prints figures; passes or fails nothing.

usage: scripts/login_during_flood.py SERVER_BINARY [--flood N] [--logins N] [-- SERVER_FLAGS...]

The server runs with --ephemeral and its defaults (600,000 PBKDF2 iterations, one hashing
thread) unless SERVER_FLAGS say otherwise. The real user registers before the flood; each of
its logins retries every 0.5 s on 503 and reports the time until it succeeds.
"""
import json, socket, subprocess, sys, threading, time
from collections import Counter

PASSWORD = "correct horse battery staple"


def call(port, src, path, body, timeout=600):
    data = json.dumps(body).encode()
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n\r\n".encode() + data)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head = buf.split(b"\r\n", 1)[0].decode()
    return int(head.split()[1]) if head else 0


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    binary, flood, logins = args[0], 400, 3
    if "--flood" in args:
        flood = int(args[args.index("--flood") + 1])
    if "--logins" in args:
        logins = int(args[args.index("--logins") + 1])
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1:0", "--ephemeral", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        real = {"username": "realuser", "password": PASSWORD}
        assert call(port, "127.0.0.2", "/api/v1/register", real) == 201
        statuses, sent = Counter(), threading.Barrier(flood + 1)
        lock = threading.Lock()

        def one(i):
            sent.wait()
            st = call(port, "127.0.0.1", "/api/v1/register",
                      {"username": f"flood{i}", "password": PASSWORD})
            with lock:
                statuses[st] += 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(flood)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        sent.wait()
        time.sleep(0.5)  # let the flood reach the hashing queue
        lat = []
        for _ in range(logins):
            # A patient client: on 503 it waits half a second and tries again.
            a, tries, st = time.monotonic(), 0, 0
            while st != 200 and time.monotonic() - a < 300:
                if tries:
                    time.sleep(0.5)
                st, tries = call(port, "127.0.0.2", "/api/v1/login", real), tries + 1
            lat.append((time.monotonic() - a, f"status {st} after {tries} attempt(s)"))
        for t in threads:
            t.join()
        flood_s = time.monotonic() - t0
        print(f"binary: {binary} {' '.join(extra)}")
        print(f"flood: {flood} concurrent registrations from 127.0.0.1, done in {flood_s:.1f} s, "
              f"statuses {dict(sorted(statuses.items()))}")
        for i, (l, st) in enumerate(lat):
            print(f"login {i + 1} from 127.0.0.2 during the flood: {l * 1000:.0f} ms ({st})")
        a = time.monotonic()
        st = call(port, "127.0.0.2", "/api/v1/login", real)
        print(f"login after the flood: {(time.monotonic() - a) * 1000:.0f} ms (status {st})")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
