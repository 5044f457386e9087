"""Load an OpenAI-compatible endpoint (vLLM) as `clusterkit bench` does, from Python.

    python3 examples/python/bench.py http://gpu1:8000 --concurrency 8 --requests 200

Against the simulator (a vLLM SIMULATOR, no model, no GPU):

    llm-d-inference-sim --model tiny --port 8000 --force-dummy-tokenizer &
    python3 examples/python/bench.py http://127.0.0.1:8000

The run goes on a thread of its own with the GIL released; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import json
import sys

import clusterkit as ck


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", help="write the report (the CLI's --json format) here")
    a = ap.parse_args()

    spec = ck.BenchSpec(a.url, concurrency=a.concurrency, requests=a.requests, max_tokens=a.max_tokens)
    for problem in spec.problems():  # each names the setting and its range
        print(problem, file=sys.stderr)
    if spec.problems():
        return 2

    def progress(p: ck.BenchProgress) -> None:
        print(f"\r{p.completed} done, {p.in_flight} in flight, {p.failed} failed", end="", file=sys.stderr)

    result = ck.run_bench(spec, on_progress=progress)
    print(file=sys.stderr)
    print(result.to_text(), end="")
    s = result.summary
    print(f"TTFT p99 {s.ttft.p99 * 1e3:.1f} ms, {s.output_token_throughput:.0f} output tok/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result.to_json(), f, indent=2)
    return 0 if s.completed else 1


if __name__ == "__main__":
    sys.exit(main())
