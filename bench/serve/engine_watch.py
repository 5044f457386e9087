#!/usr/bin/env python3
"""Runs ON THE ENGINE'S HOST (bench/serve/run.py pipes it through ssh, or
`docker exec` into the runtime container): an independent stopwatch for a
vLLM engine that `clusterkit serve up` starts.

Polls every --poll-ms (default 5 ms) the engine's state folder
(/tmp/ck-vllm-NAME: pid, vllm.log) and records wall-clock times
(time.time(), the same clock as the machine's: lab hosts share its kernel):

  pid_file      the pid file appeared (the launch script wrote it)
  proc_start    the engine process's start, from /proc/PID/stat (10 ms ticks)
  first_log     the log's first byte
  complete      the log line "Application startup complete" appeared
  health_200    /health on 127.0.0.1:PORT answered 200 (polled only after
                `complete`, so the probes do not disturb the start)

Stdlib only (the runtime container has python3). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--name", required=True)
ap.add_argument("--port", type=int, default=8000)
ap.add_argument("--poll-ms", type=float, default=5)
ap.add_argument("--timeout", type=float, default=900)
a = ap.parse_args()

d = f"/tmp/ck-vllm-{a.name}"
t_begin = time.time()
poll = a.poll_ms / 1000
print(json.dumps({"watching": d, "t": t_begin}), flush=True)

hz = os.sysconf("SC_CLK_TCK")
btime = None
with open("/proc/stat") as f:
    for line in f:
        if line.startswith("btime "):
            btime = int(line.split()[1])


def proc_start_wall(pid: int) -> float | None:
    """Wall time of the process's start. btime is whole seconds, so this is
    only as good as btime's rounding; also reported: the process's age
    (uptime - start ticks), read at one moment, which has no rounding."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        start_ticks = int(rest[19])
        now = time.time()
        return now - (up - start_ticks / hz)
    except (OSError, IndexError, ValueError):
        return None


out: dict = {"state_dir": d}
pid = None
log_pos = 0
buf = b""
marks = {
    "complete": re.compile(rb"Application startup complete"),
    "api_route_list": re.compile(rb"Available routes are"),
    "init_engine": re.compile(rb"init engine .* took"),
}
deadline = t_begin + a.timeout
while time.time() < deadline:
    now = time.time()
    if pid is None:
        try:
            st = os.stat(f"{d}/pid")
            if st.st_mtime >= t_begin - 1 and st.st_size > 0:
                with open(f"{d}/pid") as f:
                    text = f.read().strip()
                if text:
                    pid = int(text)
                    out["pid"] = pid
                    out["pid_file"] = now
                    out["proc_start"] = proc_start_wall(pid)
        except (OSError, ValueError):
            pass
    if pid is not None:
        try:
            with open(f"{d}/vllm.log", "rb") as f:
                f.seek(log_pos)
                chunk = f.read()
        except OSError:
            chunk = b""
        if chunk:
            if "first_log" not in out:
                out["first_log"] = now
            log_pos += len(chunk)
            buf += chunk
            for k, rx in marks.items():
                if k not in out and rx.search(buf):
                    out[k] = now
            buf = buf[-4096:]
        if "complete" in out:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/health", timeout=2) as r:
                    if r.status == 200:
                        out["health_200"] = time.time()
                        break
            except Exception:
                pass
        if not os.path.exists(f"/proc/{pid}"):
            out["died"] = now
            break
    time.sleep(poll)
out["log_bytes"] = log_pos
print(json.dumps(out), flush=True)
