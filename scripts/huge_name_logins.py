#!/usr/bin/env python3
"""Failed logins with huge usernames from one address (issue 20, item 1): the server's RSS and
log size after SECS seconds of them. Prints figures; passes or fails nothing.

usage: scripts/huge_name_logins.py SERVER_BINARY [--secs N] [--conns N] [--name-bytes N]

The server runs with --ephemeral --pbkdf2-iterations 1000, logging to a file. Each of CONNS
keep-alive connections sends `POST /api/v1/login` with a fresh name of NAME_BYTES bytes
(default 65,000, under the 65,536-byte body limit) as fast as the answers come.
"""
import json, os, socket, subprocess, sys, tempfile, threading, time
from collections import Counter


def arg(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def flood(port, deadline, name_bytes, counts, lock, seed):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    n = 0
    while time.time() < deadline:
        n += 1
        name = (f"{seed}-{n}-" + "x" * name_bytes)[:name_bytes]
        body = json.dumps({"username": name, "password": "wrong password!"}).encode()
        s.sendall(
            f"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        status = int(f.readline().split()[1])
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        f.read(length)
        with lock:
            counts[status] += 1
    s.close()


def main():
    binary = sys.argv[1]
    secs, conns, name_bytes = arg("--secs", 30), arg("--conns", 4), arg("--name-bytes", 65000)
    log = tempfile.NamedTemporaryFile(prefix="parley-huge-names-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1:0", "--ephemeral", "--pbkdf2-iterations", "1000"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline()
    port = int(line.strip().rsplit(":", 1)[1])
    time.sleep(0.5)
    rss0 = status_kb(server.pid, "VmRSS")
    counts, lock = Counter(), threading.Lock()
    deadline = time.time() + secs
    threads = [threading.Thread(target=flood, args=(port, deadline, name_bytes, counts, lock, i))
               for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rss, hwm = status_kb(server.pid, "VmRSS"), status_kb(server.pid, "VmHWM")
    log.flush()
    size = os.path.getsize(log.name)
    server.terminate()
    server.wait()
    total = sum(counts.values())
    print(f"| name bytes | seconds | failed logins | answers | RSS before | RSS after | peak RSS | log |")
    print(f"| --- | --- | --- | --- | --- | --- | --- | --- |")
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"| {name_bytes} | {secs} | {total} | {answers} | {rss0 / 1024:.1f} MiB | "
          f"{rss / 1024:.1f} MiB | {hwm / 1024:.1f} MiB | {size / 1024:.1f} KiB "
          f"({size / max(total, 1):.0f} B a login) |")
    os.unlink(log.name)


if __name__ == "__main__":
    main()
