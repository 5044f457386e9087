#!/usr/bin/env python3
"""What the engine put on the wire, and when: an AF_PACKET capture on the
lab bridge (root; stdlib only) with the KERNEL's receive timestamps
(SO_TIMESTAMPNS), so a capture process that runs late still gets the time a
packet crossed the bridge, not the time it read it.

    python3 wire.py --iface ckbr-tw1 --port 8000 --out F.json   # until SIGTERM/SIGINT

Writes one row per TCP segment with a payload, either way on --port:
[kernel time, "out"|"in", client port, payload bytes, SSE events in it,
first bytes]. `requests(rows)` turns them into one record per HTTP request:
when its POST left, when the first SSE event with a token came back, when
[DONE] came back, how many segments and events.
"""
from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import time

SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003


def capture(iface: str, port: int, out: str) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    rows = []
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("capturing", flush=True)
    while not stop:
        try:
            r, _, _ = select.select([s], [], [], 0.2)
        except InterruptedError:
            continue
        if not r:
            continue
        data, anc, _flags, addr = s.recvmsg(65536, 1024)
        ts = None
        for lvl, typ, d in anc:
            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                sec, ns = struct.unpack("qq", d[:16])
                ts = sec + ns / 1e9
        if data[12:14] != b"\x08\x00":  # IPv4 only
            continue
        ip = data[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6:
            continue
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if port not in (sport, dport):
            continue
        thl = (ip[ihl + 12] >> 4) * 4
        payload = ip[ihl + thl:]
        if not payload:
            continue
        direction = "in" if sport == port else "out"
        client = dport if sport == port else sport
        rows.append([ts or time.time(), direction, client, len(payload), payload.count(b"data: "),
                     payload[:8].decode("latin-1"), b"[DONE]" in payload])
    with open(out, "w") as f:
        json.dump(rows, f)


def requests(rows: list) -> list[dict]:
    """One record per request: POST out, first token event in, [DONE] in."""
    by_port: dict[int, list] = {}
    for r in sorted(rows, key=lambda r: r[0]):
        by_port.setdefault(r[2], []).append(r)
    out = []
    for port, rs in by_port.items():
        cur = None
        for ts, direction, _port, size, events, head, done in rs:
            if direction == "out" and head.startswith("POST "):
                cur = {"port": port, "post": ts, "first_event": None, "done": None, "segments": 0, "events": 0}
                out.append(cur)
            elif direction == "in" and cur is not None and cur["done"] is None:
                if events:
                    cur["segments"] += 1
                    cur["events"] += events
                    if cur["first_event"] is None:
                        cur["first_event"] = ts
                if done:
                    cur["done"] = ts
    return sorted((r for r in out if r["first_event"] and r["done"]), key=lambda r: r["post"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    capture(a.iface, a.port, a.out)
