#!/usr/bin/env python3
"""Load driver built on the official OpenAI Python client (AsyncOpenAI,
asyncio): N concurrent streamed chat requests, latencies measured from each
request's start, usage from the last chunk. Prints one JSON object.

This is how many people "just measure" an endpoint; bench/openai/run.py runs
it beside clusterkit bench and GuideLLM against the same vLLM simulator.
"""
import argparse
import asyncio
import json
import random
import statistics
import time

import httpx
import openai


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    words = "time person year way day thing man world life hand part child eye woman place work".split()
    prompts = [str(i) + " " + " ".join(rng.choice(words) for _ in range(a.prompt_tokens - 1)) for i in range(256)]
    client = openai.AsyncOpenAI(
        base_url=a.base_url, api_key="sk-bench", max_retries=0,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=a.concurrency,
                                                          max_keepalive_connections=a.concurrency),
                                      timeout=600))
    ttft, e2e, out_tokens, errors = [], [], 0, 0
    next_index = 0

    async def worker():
        nonlocal next_index, out_tokens, errors
        while next_index < a.requests:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            first = None
            try:
                stream = await client.chat.completions.create(
                    model=a.model, messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
                    max_tokens=a.max_tokens, stream=True, stream_options={"include_usage": True},
                    extra_body={"ignore_eos": True})
                async for chunk in stream:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter()
                    if chunk.usage is not None:
                        out_tokens += chunk.usage.completion_tokens
                end = time.perf_counter()
                if first is not None:
                    ttft.append(first - start)
                e2e.append(end - start)
            except Exception:  # counted, like the other tools
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(a.concurrency)))
    duration = time.perf_counter() - t0
    done = len(e2e)
    print(json.dumps({
        "tool": "openai-python-asyncio", "openai_version": openai.__version__,
        "completed": done, "failed": errors, "duration_s": duration,
        "request_throughput": done / duration, "output_token_throughput": out_tokens / duration,
        "ttft_ms": {"p50": pct(ttft, 50) * 1e3, "p90": pct(ttft, 90) * 1e3, "p99": pct(ttft, 99) * 1e3,
                    "mean": (statistics.fmean(ttft) * 1e3) if ttft else 0.0},
        "e2e_ms": {"p50": pct(e2e, 50) * 1e3, "p99": pct(e2e, 99) * 1e3},
    }))


if __name__ == "__main__":
    asyncio.run(main())
