#!/usr/bin/env python3
"""What two kinds of hostile client cost a `watchbus serve`, measured from
outside (docs/BENCHMARKS.md, "Hostile clients").

    bench/hostile-clients.py trickle BIN   # server CPU for one 56 KiB head sent in pieces
    bench/hostile-clients.py sparse BIN    # publish latency while two clients page a sparse filter

`trickle` sends a head of 95 headers of 600 bytes in pieces of the whole,
64, 16 and 4 bytes, and prints the server's CPU time for each (from
/proc). `sparse` fills a log of 200,000 events on keys k0..k99, then has
two clients read `history?key=nomatch&limit=1000` in a loop for 5 s while
a third publishes one event at a time, and prints the publish latency.
BIN is a `watchbus` binary; each run starts its own server on port 0.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def start(binary, *flags):
    server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
    return server, port


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trickle(binary):
    server, port = start(binary)
    head = (b"GET /v1/stats HTTP/1.1\r\nHost: localhost\r\n"
            + b"".join(b"X-%02d: %s\r\n" % (i, b"v" * 600) for i in range(95)) + b"\r\n")
    for piece in [len(head), 64, 16, 4]:
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = cpu_seconds(server.pid)
        for at in range(0, len(head), piece):
            conn.send(head[at:at + piece])
            if piece < len(head):
                time.sleep(0.0002)
        conn.settimeout(30)
        status = conn.recv(15)
        print(f"{len(head)} B head in {piece} B pieces: server CPU "
              f"{cpu_seconds(server.pid) - before:.2f} s, {status.decode()}")
        conn.close()
    server.terminate()
    server.wait()


def sparse(binary):
    server, port = start(binary, "--retention-events", "200000")
    for batch in range(200):
        body = json.dumps([{"key": f"k{i % 100}", "data": i} for i in range(1000)]).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events", data=body,
            headers={"content-type": "application/json"})).read()
    stop = False

    def reader():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while not stop:
            conn.request("GET", "/v1/events/history?key=nomatch&limit=1000")
            conn.getresponse().read()

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    end = time.time() + 5
    while time.time() < end:
        started = time.perf_counter()
        conn.request("POST", "/v1/events?key=p", body=b"x")
        conn.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
    stop = True
    for thread in readers:
        thread.join()
    latencies.sort()
    print(f"{len(latencies)} publishes, p50 {latencies[len(latencies) // 2]:.2f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)]:.2f} ms, max {latencies[-1]:.2f} ms")
    server.terminate()
    server.wait()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("trickle", "sparse"):
        sys.exit(__doc__)
    {"trickle": trickle, "sparse": sparse}[sys.argv[1]](sys.argv[2])
