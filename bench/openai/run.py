#!/usr/bin/env python3
"""OpenAI endpoint benchmark: clusterkit bench vs GuideLLM vs the OpenAI
Python client (asyncio), each pinned to ONE core, against the same
llm-d-inference-sim (a vLLM SIMULATOR: no model, no GPU) pinned to another.

Part 1 (throughput): the simulator with no artificial latency; each tool
drives it at fixed concurrency; completed requests/s and streamed output
tokens/s. Part 2 (TTFT accuracy): the simulator's TTFT set to 50 ms;
clusterkit's measured TTFT p50 at concurrency 1, 16, 64, 256 must be within
1 ms of 50 ms.

    python3 bench/openai/run.py                      # everything
    python3 bench/openai/run.py --skip-guidellm --quick
    python3 bench/openai/run.py --help

Setup (see README.md): scripts/install-sim.sh; a clusterkit build;
python3 -m venv /tmp/guidellm-venv && /tmp/guidellm-venv/bin/pip install guidellm openai
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODEL = "qwen2.5-72b-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """llm-d-inference-sim on its own core and a free loopback port."""

    def __init__(self, binary: str, core: str, extra: list[str]):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="ck-bench-sim-", suffix=".log", delete=False)
        args = ["taskset", "-c", core, binary, "--model", MODEL, "--port", str(self.port),
                "--force-dummy-tokenizer", "--max-num-seqs", "4096", "--max-waiting-queue-length", "100000",
                *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("simulator did not start: " + Path(self.log.name).read_text()[-2000:])
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prefill_mean_ms(self) -> float | None:
        """The simulator's own view of its prefill (TTFT) sleep, mean over
        every request: how much of the measured TTFT is the server's."""
        import urllib.request
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        total = count = None
        for line in text.splitlines():
            if line.startswith("vllm:request_prefill_time_seconds_sum"):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith("vllm:request_prefill_time_seconds_count"):
                count = float(line.rsplit(" ", 1)[1])
        return total / count * 1e3 if total is not None and count else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


LAST_CPU_S = 0.0


def run(cmd: list[str], timeout: float = 900) -> str:
    """Runs a tool and records the CPU seconds it (and every process it
    started) used, in LAST_CPU_S."""
    global LAST_CPU_S
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}")
    return r.stdout


def clusterkit_bench(a, url, core, concurrency, requests, prompt_tokens, max_tokens) -> dict:
    out = Path(tempfile.mkdtemp(prefix="ck-bench-")) / "ck.json"
    run(["taskset", "-c", core, a.clusterkit, "bench", "--url", url, "--model", MODEL, "--concurrency",
         str(concurrency), "--requests", str(requests), "--prompt-tokens", str(prompt_tokens), "--max-tokens",
         str(max_tokens), "--no-progress", "--json", str(out)])
    j = json.loads(out.read_text())
    shutil.rmtree(out.parent)
    return {"tool": "clusterkit", "completed": j["completed"], "failed": j["failed"], "duration_s": j["duration_s"],
            "request_throughput": j["request_throughput"], "output_token_throughput": j["output_token_throughput"],
            "ttft_ms": j["ttft_ms"], "e2e_ms": j["e2e_ms"]}


def openai_asyncio(a, url, core, concurrency, requests, prompt_tokens, max_tokens) -> dict:
    outp = run(["taskset", "-c", core, a.python, str(HERE / "openai_asyncio_driver.py"), "--base-url", url + "/v1",
                "--model", MODEL, "--concurrency", str(concurrency), "--requests", str(requests),
                "--prompt-tokens", str(prompt_tokens), "--max-tokens", str(max_tokens)])
    return json.loads(outp.strip().splitlines()[-1])


def raw_socket(a, url, core, concurrency, requests, prompt_tokens, max_tokens) -> dict:
    port = url.rsplit(":", 1)[1]
    outp = run(["taskset", "-c", core, sys.executable, str(HERE / "raw_socket_probe.py"), "--port", port,
                "--model", MODEL, "--concurrency", str(concurrency), "--requests", str(requests),
                "--prompt-tokens", str(prompt_tokens), "--max-tokens", str(max_tokens)])
    return json.loads(outp.strip().splitlines()[-1])


def guidellm(a, url, core, concurrency, requests, prompt_tokens, max_tokens) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ck-bench-guidellm-"))
    out = work / "g.json"
    run(["taskset", "-c", core, a.guidellm, "run",
         "--backend", f"kind=openai_http,target={url},request_format=/v1/chat/completions",
         "--profile", f"kind=concurrent,streams={concurrency}",
         "--constraint", f"kind=max_requests,count={requests}",
         "--tokenizer", f"kind=huggingface_auto,model={a.tokenizer}",
         "--data", f"kind=synthetic_text,prompt_tokens={prompt_tokens},output_tokens={max_tokens}",
         "--output", f"kind=json,path={out}", "--disable-progress", "--disable-console"],
        timeout=1800)
    b = json.loads(out.read_text())["benchmarks"][0]
    shutil.rmtree(work)
    m = b["metrics"]
    done = m["request_totals"]["successful"]
    dur = b["duration"]
    out_tokens = m["output_token_count"]["successful"]["total_sum"]
    t = m["time_to_first_token_ms"]["successful"]
    return {"tool": "guidellm", "completed": done, "failed": m["request_totals"]["errored"], "duration_s": dur,
            "request_throughput": done / dur, "output_token_throughput": out_tokens / dur,
            "ttft_ms": {"p50": t["median"], "mean": t["mean"]}}


def make_tokenizer(path: Path, python: str):
    """GuideLLM sizes synthetic prompts with a Hugging Face tokenizer and the
    machine has no hub access: build a word-level one for Faker's lorem words
    (what GuideLLM's synthetic text is made of), one token per word, as the
    simulator's dummy tokenizer counts."""
    if (path / "tokenizer.json").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    code = f"""
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, normalizers
from faker.providers.lorem.en_US import Provider
import json
vocab = {{"[UNK]": 0}}
for w in list(Provider.word_list) + [".", ",", "!", "?"] + [str(i) for i in range(10)]:
    vocab.setdefault(w.lower(), len(vocab))
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
tok.normalizer = normalizers.Lowercase()
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.decoder = decoders.WordPiece(prefix="##")
tok.save("{path}/tokenizer.json")
json.dump({{"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 100000}},
          open("{path}/tokenizer_config.json", "w"))
"""
    subprocess.run([python, "-c", code], check=True)


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "load_avg_at_start": os.getloadavg(), "cpu_pressure_at_start": cpu_pressure(),
            "python": platform.python_version()}


def cpu_pressure() -> str:
    """/proc/pressure/cpu's "some" line: how much other work competed."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "unknown"


def markdown(results: dict) -> str:
    """RESULTS-openai.md: every number from this run, nothing else."""
    m = results["machine"]
    out = ["# OpenAI endpoint benchmark results", "",
           f"Run {results['date']} by `bench/openai/run.py` on {m['cpu']}, {m['cores']} cores, "
           f"Linux {m['kernel']}. Server: llm-d-inference-sim {results['simulator']['version']} "
           "(a vLLM SIMULATOR: no model, no GPU) pinned to core " + results["pinning"]["simulator_core"] +
           ", each tool pinned to core " + results["pinning"]["tool_core"] + ".",
           f"Load average at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}, "
           f"at end {tuple(round(x, 2) for x in results['load_avg_at_end'])}; CPU pressure at start "
           f"`{m['cpu_pressure_at_start']}`, at end `{results['cpu_pressure_at_end']}`.", ""]
    if results["throughput"]:
        out += ["## Throughput, no artificial latency (concurrency 64, streamed chat, usage in the last chunk)", "",
                "| scenario | tool | requests/s | output tokens/s | ok / failed | tool CPU s | requests per CPU-s |"
                " tokens per CPU-s |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in results["throughput"]:
            for tool, r in row["tools"].items():
                out.append(f"| {row['scenario']} | {tool} | {r['request_throughput']:.1f} | "
                           f"{r['output_token_throughput']:.0f} | {r['completed']} / {r['failed']} | "
                           f"{r['cpu_s']:.2f} | {r['requests_per_cpu_s']:.0f} | {r['tokens_per_cpu_s']:.0f} |")
        out += ["", "Ratios (clusterkit / other):", "",
                "| scenario | vs | requests/s | tokens/s | requests per CPU-s | tokens per CPU-s |",
                "|---|---|---:|---:|---:|---:|"]
        for row in results["throughput"]:
            for k, v in row["ratios"].items():
                out.append(f"| {row['scenario']} | {k.split('/')[1]} | {v['requests']:.2f}x | {v['tokens']:.2f}x | "
                           f"{v['requests_per_cpu_s']:.2f}x | {v['tokens_per_cpu_s']:.2f}x |")
        out.append("")
    if results["ttft"]:
        out += ["## TTFT accuracy: simulator TTFT 50 ms (8 tokens, 100 ms apart)", "",
                "| concurrency | tool | TTFT p50 ms | TTFT p99 ms | requests/s | simulator's own prefill mean ms |",
                "|---:|---|---:|---:|---:|---:|"]
        for row in results["ttft"]:
            for tool, r in row["tools"].items():
                p99 = r["ttft_p99_ms"]
                sp = r["simulator_prefill_mean_ms"]
                out.append(f"| {row['concurrency']} | {tool} | {r['ttft_p50_ms']:.3f} | "
                           f"{p99 if p99 is not None else float('nan'):.3f} | {r['request_throughput']:.1f} | "
                           f"{sp if sp is not None else float('nan'):.3f} |")
        out += ["", "clusterkit TTFT p50 minus 50 ms: " + ", ".join(
            f"c={row['concurrency']}: {row['clusterkit_error_ms']:+.3f} ms"
            f" ({'within' if row['within_1ms'] else 'NOT within'} 1 ms)" for row in results["ttft"]), "",
            "clusterkit TTFT p50 minus the raw-socket reference's at the same concurrency: " + ", ".join(
            f"c={row['concurrency']}: {row['clusterkit_minus_raw_socket_ms']:+.3f} ms" for row in results["ttft"]), ""]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusterkit", default=os.environ.get("CLUSTERKIT_BIN", str(REPO / "build" / "clusterkit")))
    ap.add_argument("--sim", default=shutil.which("llm-d-inference-sim") or "/usr/local/bin/llm-d-inference-sim")
    ap.add_argument("--venv", default="/tmp/guidellm-venv", help="venv with guidellm and openai")
    ap.add_argument("--sim-core", default="0")
    ap.add_argument("--tool-core", default="1")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--skip-guidellm", action="store_true")
    ap.add_argument("--skip-openai", action="store_true", help="leave out the OpenAI Python client (no venv needed)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-ttft", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "openai-results.json"))
    ap.add_argument("--markdown", help="also write the results as Markdown (RESULTS-openai.md)")
    a = ap.parse_args()
    a.python = str(Path(a.venv) / "bin" / "python")
    a.guidellm = str(Path(a.venv) / "bin" / "guidellm")
    a.tokenizer = Path(tempfile.gettempdir()) / "ck-bench-wordlevel-tokenizer"
    if not a.skip_guidellm:
        make_tokenizer(a.tokenizer, a.python)
    scale = 0.25 if a.quick else 1.0
    results = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "simulator": {"binary": a.sim, "version": (Path(a.sim + ".version").read_text().strip()
                                                         if Path(a.sim + ".version").exists() else "unknown"),
                             "note": "llm-d-inference-sim is a vLLM SIMULATOR (no model, no GPU)"},
               "pinning": {"simulator_core": a.sim_core, "tool_core": a.tool_core}, "throughput": [], "ttft": []}
    tools = [("clusterkit", clusterkit_bench)] + ([] if a.skip_openai else [("openai-asyncio", openai_asyncio)])
    if not a.skip_guidellm:
        tools.append(("guidellm", guidellm))

    # Part 1: highest sustained rates, no artificial latency.
    scenarios = [
        # name, concurrency, requests, prompt tokens, output tokens
        ("requests (8 output tokens)", 64, 6000, 32, 8),
        ("tokens (256 output tokens)", 64, 1000, 32, 256),
    ]
    if not a.skip_throughput:
        for name, conc, n, p, o in scenarios:
            n = max(200, int(n * scale))
            row = {"scenario": name, "concurrency": conc, "requests": n, "prompt_tokens": p, "max_tokens": o,
                   "tools": {}}
            for tool, fn in tools:
                with Simulator(a.sim, a.sim_core, []) as sim:
                    r = fn(a, sim.url, a.tool_core, conc, n, p, o)
                # CPU the tool burnt (its whole process tree, start-up included):
                # when the simulator caps the rate, this is what still tells the
                # tools apart.
                r["cpu_s"] = LAST_CPU_S
                r["requests_per_cpu_s"] = r["completed"] / max(LAST_CPU_S, 1e-9)
                r["tokens_per_cpu_s"] = r["output_token_throughput"] * r["duration_s"] / max(LAST_CPU_S, 1e-9)
                row["tools"][tool] = r
                print(f"[{name}] {tool:15s} {r['request_throughput']:9.1f} req/s  "
                      f"{r['output_token_throughput']:10.1f} tok/s  ({r['completed']} ok, {r['failed']} failed)  "
                      f"cpu {LAST_CPU_S:6.2f} s: {r['requests_per_cpu_s']:8.1f} req/cpu-s "
                      f"{r['tokens_per_cpu_s']:9.1f} tok/cpu-s", flush=True)
            ck = row["tools"]["clusterkit"]
            row["ratios"] = {f"clusterkit/{t}": {
                "requests": ck["request_throughput"] / max(row["tools"][t]["request_throughput"], 1e-9),
                "tokens": ck["output_token_throughput"] / max(row["tools"][t]["output_token_throughput"], 1e-9),
                "requests_per_cpu_s": ck["requests_per_cpu_s"] / max(row["tools"][t]["requests_per_cpu_s"], 1e-9),
                "tokens_per_cpu_s": ck["tokens_per_cpu_s"] / max(row["tools"][t]["tokens_per_cpu_s"], 1e-9)}
                for t, _ in tools if t != "clusterkit"}
            for k, v in row["ratios"].items():
                print(f"[{name}] ratio {k}: {v['requests']:.2f}x requests/s, {v['tokens']:.2f}x tokens/s; "
                      f"per CPU-second {v['requests_per_cpu_s']:.2f}x requests, {v['tokens_per_cpu_s']:.2f}x tokens",
                      flush=True)
            results["throughput"].append(row)

    # Part 2: TTFT accuracy with the simulator's TTFT at 50 ms.
    if not a.skip_ttft:
        for conc in (1, 16, 64, 256):
            # 8 tokens 100 ms apart after the first: long enough requests that
            # 256 in flight stay a light load for a simulator on one core.
            n = max(100, int(conc * 4 * scale))
            row = {"concurrency": conc, "requests": n, "tools": {}}
            ttft_tools = [("clusterkit", clusterkit_bench), ("raw-socket", raw_socket)]
            if not a.skip_openai:
                ttft_tools.append(("openai-asyncio", openai_asyncio))
            for tool, fn in ttft_tools:
                with Simulator(a.sim, a.sim_core,
                               ["--time-to-first-token", "50ms", "--inter-token-latency", "100ms"]) as sim:
                    r = fn(a, sim.url, a.tool_core, conc, n, 32, 8)
                    server = sim.prefill_mean_ms()
                row["tools"][tool] = {"ttft_p50_ms": r["ttft_ms"]["p50"], "ttft_p99_ms": r["ttft_ms"].get("p99"),
                                      "request_throughput": r["request_throughput"],
                                      "simulator_prefill_mean_ms": server}
                print(f"[TTFT 50 ms, c={conc:3d}] {tool:15s} p50 {r['ttft_ms']['p50']:8.3f} ms  "
                      f"p99 {r['ttft_ms'].get('p99', float('nan')):8.3f} ms  ({r['request_throughput']:.1f} req/s; "
                      f"the simulator's own prefill mean {server if server is not None else float('nan'):.3f} ms)",
                      flush=True)
            ck = row["tools"]["clusterkit"]["ttft_p50_ms"]
            row["clusterkit_error_ms"] = ck - 50.0
            row["clusterkit_minus_raw_socket_ms"] = ck - row["tools"]["raw-socket"]["ttft_p50_ms"]
            row["within_1ms"] = abs(ck - 50.0) <= 1.0
            results["ttft"].append(row)

    results["load_avg_at_end"] = os.getloadavg()
    results["cpu_pressure_at_end"] = cpu_pressure()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {a.out}")
    if a.markdown:
        Path(a.markdown).write_text(markdown(results))
        print(f"markdown: {a.markdown}")


if __name__ == "__main__":
    main()
