#!/usr/bin/env python3
"""The least a client can do: N threads, one keep-alive socket each, the same
streamed chat request written by hand, TTFT taken when the first bytes with
"content" arrive. Used by run.py as the reference for TTFT accuracy: what the
simulator itself delivers at that concurrency, with no client library in the
way. Prints one JSON object.
"""
import argparse
import json
import socket
import statistics
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=8)
    a = ap.parse_args()
    body = json.dumps({"model": a.model, "max_tokens": a.max_tokens, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": " ".join(["word"] * a.prompt_tokens)}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    ttft, lock = [], threading.Lock()
    per_worker = max(1, a.requests // a.concurrency)

    def worker():
        s = socket.create_connection(("127.0.0.1", a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(per_worker):
            t0 = time.perf_counter()
            s.sendall(req)
            buf, first = b"", None
            while True:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
                if first is None and b'"content"' in buf:
                    first = time.perf_counter()
                if buf.endswith(b"0\r\n\r\n") and b"[DONE]" in buf:
                    break
            with lock:
                ttft.append((first - t0) * 1e3)
        s.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dur = time.perf_counter() - t0
    ttft.sort()
    print(json.dumps({"tool": "raw-socket", "completed": len(ttft), "failed": 0, "duration_s": dur,
                      "request_throughput": len(ttft) / dur, "output_token_throughput": 0.0,
                      "ttft_ms": {"p50": statistics.median(ttft), "p99": ttft[int(0.99 * (len(ttft) - 1))]}}))


if __name__ == "__main__":
    main()
