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
  scripts/serve-stall.py --counts "" --stream   # only the streaming and cancel timings

--stream times a streamed default request (teacher 50 steps + arcflow-2, n 4): first event, first
progress, steps, result; then how long the worker stays busy after a client hangs up mid-request
and after DELETE /v1/jobs/ID (teacher 200 steps, n 4).
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


def stream(port, body, timeout, stop_after=None):
    """Sends a streamed request; returns [(seconds, event, data)] and the open socket when it hung
    up after `stop_after` progress events (the caller closes it), else None."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    raw = json.dumps(body).encode()
    s.sendall(b"POST /v1/generate HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(raw)).encode() + b"\r\n\r\n" + raw)
    t0 = time.monotonic()
    buf, events, progress = b"", [], 0
    head_done = False
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if not head_done and b"\r\n\r\n" in buf:
            buf = buf.split(b"\r\n\r\n", 1)[1]
            head_done = True
        while head_done and b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            name, data = "", None
            for line in block.decode().split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            events.append((time.monotonic() - t0, name, data))
            if name == "progress":
                progress += 1
                if stop_after and progress == stop_after:
                    return events, s
    s.close()
    return events, None


def until_idle(port, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", "/healthz")
        h = json.loads(c.getresponse().read())
        c.close()
        if not h["busy"] and h["queue_depth"] == 0:
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


def stream_report(port, timeout):
    ev, _ = stream(port, {"n": 4, "seed": 1, "method": ["teacher", "arcflow-2"], "stream": True}, timeout)
    first_progress = next(t for t, n, _ in ev if n == "progress")
    teacher = [d["elapsed_ms"] for _, n, d in ev if n == "progress" and d["method"] == "teacher"]
    steps = [b - a for a, b in zip(teacher, teacher[1:])]
    print(f"stream (teacher 50 steps + arcflow-2, n 4): {len(ev)} events; first ({ev[0][1]}) after "
          f"{ev[0][0] * 1000:.1f} ms, first progress after {first_progress * 1000:.1f} ms, teacher steps "
          f"{min(steps):.1f}-{max(steps):.1f} ms apart (median {sorted(steps)[len(steps) // 2]:.1f}), "
          f"{ev[-1][1]} after {ev[-1][0]:.2f} s")
    long_job = {"n": 4, "seed": 2, "method": "teacher", "teacher_steps": 200, "stream": True}
    ev, s = stream(port, long_job, timeout, stop_after=5)
    step_ms = ev[-1][2]["elapsed_ms"] / 5
    s.close()
    free = until_idle(port, timeout)
    print(f"hang-up after 5 of 200 steps ({step_ms:.1f} ms per step): worker free {free * 1000:.1f} ms later "
          f"(the job had {(200 - 5) * step_ms / 1000:.1f} s left)")
    ev, s = stream(port, long_job, timeout, stop_after=5)
    job = ev[0][2]["job"]
    t0 = time.monotonic()
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.request("DELETE", "/v1/jobs/" + job)
    answer = json.loads(c.getresponse().read())
    deleted = time.monotonic() - t0
    free = until_idle(port, timeout)
    rest = b""
    s.settimeout(timeout)
    while chunk := s.recv(65536):
        rest += chunk
    s.close()
    last = rest.decode().strip().split("\n\n")[-1].replace("\n", " ")
    print(f"DELETE /v1/jobs/{job}: answered in {deleted * 1000:.1f} ms ({answer['was']}), worker free "
          f"{free * 1000:.1f} ms after that; the stream ended with: {last[:90]}")


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
    ap.add_argument("--stream", action="store_true", help="also time streaming and cancelling (see above)")
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
            for k in [int(x) for x in a.counts.split(",") if x]:
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
        if a.stream:
            stream_report(port, a.timeout)
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
