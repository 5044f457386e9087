#!/usr/bin/env python3
"""A minimal streaming client as a third opinion (stdlib, blocking sockets,
one request at a time, one keep-alive connection): POST /v1/completions
with ignore_eos, TTFT = first SSE event with a token read, E2E = [DONE] read,
both from just before the send. Prints one JSON line: per-request
ttft_ms/e2e_ms and their means."""
from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", type=int, default=8000)
ap.add_argument("--key", required=True)
ap.add_argument("--model", default="tiny")
ap.add_argument("--requests", type=int, default=16)
ap.add_argument("--words", type=int, default=52)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

WORDS = ["time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part", "child", "eye",
         "woman", "place", "work", "week", "case", "point", "number", "group", "fact", "system", "water", "room",
         "mother", "area", "money", "story", "month", "lot", "right"]
rng = random.Random(a.seed)
s = socket.create_connection((a.host, a.port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rows = []
for i in range(a.requests):
    prompt = " ".join([str(i)] + [rng.choice(WORDS) for _ in range(a.words - 1)])
    body = json.dumps({"model": a.model, "prompt": prompt, "max_tokens": a.max_tokens, "stream": True,
                       "stream_options": {"include_usage": True}, "ignore_eos": True}).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {a.host}:{a.port}\r\nAuthorization: Bearer {a.key}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    t0 = time.perf_counter()
    s.sendall(head + body)
    data = b""
    first = None
    while b"data: [DONE]" not in data:
        b = s.recv(65536)
        if not b:
            raise SystemExit("connection closed")
        if first is None and b'"text":"' in b:
            first = time.perf_counter()
        data += b
    end = time.perf_counter()
    # The chunked body ends with a 0-length chunk after [DONE]; read it so the
    # next response starts clean.
    while not data.endswith(b"0\r\n\r\n"):
        data += s.recv(65536)
    rows.append({"ttft_ms": (first - t0) * 1e3, "e2e_ms": (end - t0) * 1e3})
print(json.dumps({"ttft_mean": statistics.mean(r["ttft_ms"] for r in rows),
                  "e2e_mean": statistics.mean(r["e2e_ms"] for r in rows), "requests": rows}))
