#!/usr/bin/env python3
"""Measures how `arcflow serve` copes with slow and idle clients (issue 17).

For each count K it opens K connections to the server that either send nothing ("idle") or half a
request line and then wait ("half"), then times, on a fresh connection, GET /healthz and a one-image
arcflow-2 request, then closes the K connections. With --excess it also opens more connections
than the server allows and counts how many the server closed at once (select() needs fewer than
1024 open files: keep it under about 1000).

Loopback only, bounded: every wait has a timeout (--timeout), nothing loops forever, and a server
it started itself is stopped at the end.

  scripts/serve-stall.py                         # starts build/arcflow serve --port 0 itself
  scripts/serve-stall.py --port 8080             # an already running server on 127.0.0.1:8080
  scripts/serve-stall.py --counts 0,8,16,64 --kind half --timeout 30
"""
import argparse
import http.client
import json
import re
import select
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def timed_request(port, method, path, body, timeout):
    """Seconds until the whole answer arrived, and its status; (None, error) after `timeout`."""
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        r.read()
        c.close()
        return time.monotonic() - t0, r.status
    except (OSError, http.client.HTTPException) as e:
        return None, type(e).__name__


def open_slow(port, k, kind):
    socks = []
    for _ in range(k):
        s = socket.create_connection((HOST, port), timeout=5)
        if kind == "half":
            s.sendall(b"GET /healthz HT")
        socks.append(s)
    return socks


def closed_by_server(socks):
    """How many of `socks` the server has closed (end of file or reset), looking now without waiting."""
    readable, _, _ = select.select(socks, [], [], 0)
    closed = 0
    for s in readable:
        try:
            closed += s.recv(1) == b""
        except OSError:
            closed += 1
    return closed


def start_server(binary, extra):
    p = subprocess.Popen([binary, "serve", "--port", "0", "--toy-dir", ""] + extra,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
        if m:
            return p, int(m.group(1))
    p.kill()
    sys.exit("the server did not print its port within 60 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, help="a running server on 127.0.0.1 (default: start one)")
    ap.add_argument("--binary", default="build/arcflow", help="arcflow to start when --port is not given")
    ap.add_argument("--server-args", default="", help="extra flags for `arcflow serve` (quoted)")
    ap.add_argument("--counts", default="0,8,16,64", help="numbers of slow connections to try")
    ap.add_argument("--kind", choices=["idle", "half", "both"], default="both")
    ap.add_argument("--timeout", type=float, default=30, help="seconds to wait for each answer")
    ap.add_argument("--excess", type=int, default=0,
                    help="also open this many connections at once and count those the server closed 1 s later")
    a = ap.parse_args()

    proc = None
    port = a.port
    if port is None:
        proc, port = start_server(a.binary, a.server_args.split())
    gen = json.dumps({"n": 1, "method": "arcflow-2", "seed": 1})
    rows = []
    try:
        timed_request(port, "POST", "/v1/generate", gen, a.timeout)  # warm-up
        kinds = ["idle", "half"] if a.kind == "both" else [a.kind]
        for kind in kinds:
            for k in [int(x) for x in a.counts.split(",")]:
                t_open = time.monotonic()
                socks = open_slow(port, k, kind)
                open_s = time.monotonic() - t_open
                time.sleep(0.2)
                h, hs = timed_request(port, "GET", "/healthz", None, a.timeout)
                g, gs = timed_request(port, "POST", "/v1/generate", gen, a.timeout)
                for s in socks:
                    s.close()
                rows.append((kind, k, h, hs, g, gs))
                fmt = lambda t, s: f"{t:.3f} s ({s})" if t is not None else f"> {a.timeout:g} s ({s})"
                print(f"{kind:5} connections {k:4} (opened in {open_s:5.2f} s): /healthz {fmt(h, hs):>22}   "
                      f"arcflow-2 n=1 {fmt(g, gs):>22}", flush=True)
                time.sleep(0.5)
        if a.excess:
            socks = []
            refused_at_connect = 0
            for _ in range(a.excess):
                try:
                    socks.append(socket.create_connection((HOST, port), timeout=2))
                except OSError:
                    refused_at_connect += 1
            time.sleep(1)
            closed = closed_by_server(socks)
            h, hs = timed_request(port, "GET", "/healthz", None, a.timeout)
            for s in socks:
                s.close()
            print(f"excess: opened {a.excess}: {closed} closed by the server within 1 s, "
                  f"{refused_at_connect} refused at connect, {len(socks) - closed} kept open; "
                  f"/healthz meanwhile {h if h is None else round(h, 3)} s ({hs})")
    finally:
        if proc:
            proc.send_signal(2)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
