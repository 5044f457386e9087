#!/usr/bin/env python3
"""VllmServe benchmarks on a REAL vLLM engine (vLLM's CPU build, a tiny
random Qwen2, no GPU) in a clusterkit lab. Two parts, each printing the
peer and clusterkit side by side from the same run:

  startup  Start-to-ready overhead. An independent stopwatch on the engine's
           host (engine_watch.py, 5 ms polls) times the engine's own start:
           its process start -> the log line "Application startup complete"
           (and /health 200 right after it). clusterkit's ready = the moment
           `clusterkit --json serve up` exits, having seen /health 200,
           /v1/models list the name and one streamed token. Overhead =
           clusterkit ready - engine ready (target: under 1 s). Also what
           clusterkit itself reports (ready_seconds - engine_start_seconds),
           and, against the healthy engine: `serve up` again, `serve status`,
           and a minimal Python client doing the same three checks (the floor).
  bench    `clusterkit bench` next to `vllm bench serve` on the same engine,
           same load (random prompts of N tokens, fixed output with
           ignore_eos, same concurrency and request count), the order
           alternating each round; the engine's own /metrics around every run
           (server-side TTFT, ITL, prompt tokens, prefix-cache hits).
  ray      (optional) the startup part once for TP2 x PP2 over Ray in Docker.

    python3 bench/serve/run.py --inventory /run/clusterkit/lab-tw1/inventory.yaml
    python3 bench/serve/run.py --parts bench --rounds 3
    python3 bench/serve/run.py --help

Setup: README.md beside this file. Run as root on the machine that runs
the lab; it starts ONE engine at a time and stops what it started.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHM_PATTERNS = re.compile(r"cpushm|^psm_|^sem\.mp-|vllm_dist_")


# ---------------------------------------------------------------------------
# Machine and lab

def load1() -> float:
    return os.getloadavg()[0]


def cpu_pressure() -> str:
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "mem_total_gib": round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1),
            "load_avg_at_start": os.getloadavg(), "cpu_pressure_at_start": cpu_pressure(),
            "mem_available_gib_at_start": round(mem_available_gib(), 1)}


class Lab:
    """The lab's inventory: the engine host's address and the ssh identity."""

    def __init__(self, inventory: str, host: str):
        text = Path(inventory).read_text()
        self.inventory = inventory
        self.identity = re.search(r"identity_file:\s*(\S+)", text).group(1)
        self.known_hosts = re.search(r"known_hosts_file:\s*(\S+)", text).group(1)
        m = re.search(rf"^\s*{re.escape(host)}:\s*{{address:\s*([0-9.]+)", text, re.M)
        if not m:
            raise SystemExit(f"{inventory}: no host {host}")
        self.host = host
        self.address = m.group(1)

    def ssh_argv(self, address: str | None = None) -> list[str]:
        return ["ssh", "-i", self.identity, "-o", f"UserKnownHostsFile={self.known_hosts}", "-o",
                "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address or self.address}"]

    def sh(self, command: str, timeout: float = 60) -> str:
        r = subprocess.run(self.ssh_argv() + [command], capture_output=True, text=True, timeout=timeout)
        return r.stdout


def shm_names() -> set[str]:
    """vLLM's leftovers in /dev/shm (the lab hosts share the machine's)."""
    try:
        return {n for n in os.listdir("/dev/shm") if SHM_PATTERNS.search(n)}
    except OSError:
        return set()


# ---------------------------------------------------------------------------
# Running things

class Timed:
    """A command, its wall time, its CPU time (getrusage of the children),
    its stdout, and each stderr line with the wall time it arrived."""

    def __init__(self, argv: list[str], env: dict | None = None, timeout: float = 3600):
        self.argv = argv
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t_start = time.time()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.stderr_lines: list[tuple[float, str]] = []

        def read_err():
            for raw in iter(p.stderr.readline, b""):
                self.stderr_lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))

        t = threading.Thread(target=read_err, daemon=True)
        t.start()
        chunks: list[bytes] = []
        t_out = threading.Thread(target=lambda: chunks.append(p.stdout.read()), daemon=True)
        t_out.start()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.t_end = time.time()
        t_out.join(10)
        t.join(5)
        out = b"".join(chunks)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rc = p.returncode
        self.stdout = out.decode(errors="replace")
        self.wall = self.t_end - self.t_start
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def first_err(self, needle: str) -> float | None:
        for t, line in self.stderr_lines:
            if needle in line:
                return t
        return None

    def err_text(self) -> str:
        return "\n".join(line for _, line in self.stderr_lines)


class Engine:
    """`clusterkit serve` for one engine (the brief's one-host command, or
    TP2 x PP2 over Ray in Docker)."""

    def __init__(self, a, lab: Lab, name: str, kind: str):
        self.a, self.lab, self.name, self.kind = a, lab, name, kind
        self.ck = [a.clusterkit, "-i", lab.inventory]
        if kind == "one-host":
            self.sel = ["--name", name, "--runtime", "bare", "--venv", a.venv, "-g", lab.host]
            self.engine = ["--backend", "mp", "--model", a.model, "--served-model-name", a.served,
                           "--max-model-len", "512", "--dtype", "bfloat16",
                           "--engine-env", "VLLM_CPU_KVCACHE_SPACE=1", "--engine-env", "HF_HUB_OFFLINE=1",
                           "--engine-env", f"VLLM_CACHE_ROOT={a.cache_root}"]
        else:
            self.sel = ["--name", name, "--runtime", "docker", "--venv", a.venv, "-g", a.ray_group]
            self.engine = ["--backend", "ray", "--tp", "2", "--pp", "2", "--model", a.container_model,
                           "--served-model-name", a.served, "--max-model-len", "512", "--dtype", "bfloat16",
                           "--engine-env", "VLLM_CPU_KVCACHE_SPACE=1", "--engine-env", "HF_HUB_OFFLINE=1",
                           "--engine-env", f"VLLM_CACHE_ROOT={a.cache_root}"]
        self.url = f"http://{lab.address}:8000"

    def up(self) -> Timed:
        return Timed(self.ck + ["--json", "serve", "up"] + self.sel + self.engine)

    def status(self, with_backend: bool = True) -> Timed:
        backend = ["--backend", "mp" if self.kind == "one-host" else "ray"] if with_backend else []
        return Timed(self.ck + ["serve", "status"] + self.sel + backend)

    def down(self) -> Timed:
        return Timed(self.ck + ["serve", "down"] + self.sel + ["--backend", "mp" if self.kind == "one-host" else "ray"])

    def key(self) -> str:
        path = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "clusterkit" / "keys" / f"{self.name}.key"
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
        raise SystemExit(f"no key in {path}")

    def watcher_argv(self) -> list[str]:
        watch = ["python3", "-", "--name", self.name]
        if self.kind == "one-host":
            return self.lab.ssh_argv() + [shlex.join(watch)]
        # The image's python3-minimal has no urllib: the venv's (mounted) python.
        watch[0] = f"{self.a.venv}/bin/python3"
        return self.lab.ssh_argv() + [shlex.join(["docker", "exec", "-i", f"ck-ray-{self.name}"] + watch)]

    def alive_processes(self) -> str:
        """vLLM processes left on the head (one-host: the host's own pid namespace)."""
        if self.kind == "one-host":
            return self.lab.sh("ps -eo pid,comm,args | grep -E 'vllm|VLLM|EngineCore' | grep -v grep || true").strip()
        return self.lab.sh(f"docker exec ck-ray-{self.name} sh -c \"ps -eo pid,comm,args 2>/dev/null | "
                           f"grep -E 'vllm|VLLM|EngineCore' | grep -v grep\" || true").strip()


def metrics(url: str) -> dict[str, float]:
    """Counters and histogram sums/counts of the engine's /metrics."""
    want = ("vllm:time_to_first_token_seconds_", "vllm:inter_token_latency_seconds_",
            "vllm:e2e_request_latency_seconds_", "vllm:request_time_per_output_token_seconds_",
            "vllm:request_queue_time_seconds_", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
            "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:request_success_total")
    text = urllib.request.urlopen(url + "/metrics", timeout=20).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(want) or "_bucket" in line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            pass
    return out


def server_view(before: dict, after: dict) -> dict:
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}

    def mean_ms(h):
        c = d.get(h + "_count", 0)
        return d.get(h + "_sum", 0) / c * 1e3 if c else None

    return {"requests": d.get("vllm:request_success_total", 0),
            "prompt_tokens": d.get("vllm:prompt_tokens_total", 0),
            "generation_tokens": d.get("vllm:generation_tokens_total", 0),
            "prefix_cache_hits": d.get("vllm:prefix_cache_hits_total", 0),
            "prefix_cache_queries": d.get("vllm:prefix_cache_queries_total", 0),
            "ttft_mean_ms": mean_ms("vllm:time_to_first_token_seconds"),
            "itl_mean_ms": mean_ms("vllm:inter_token_latency_seconds"),
            "tpot_mean_ms": mean_ms("vllm:request_time_per_output_token_seconds"),
            "e2e_mean_ms": mean_ms("vllm:e2e_request_latency_seconds"),
            "queue_mean_ms": mean_ms("vllm:request_queue_time_seconds")}


# ---------------------------------------------------------------------------
# Part 1: start-to-ready

def floor_checks(url: str, key: str, model: str) -> dict:
    """The three checks `serve up` makes, by a minimal client (stdlib, a new
    connection each): /health, /v1/models, one streamed token."""
    h = {"Authorization": f"Bearer {key}"}
    t0 = time.time()
    urllib.request.urlopen(urllib.request.Request(url + "/health"), timeout=30).read()
    t1 = time.time()
    urllib.request.urlopen(urllib.request.Request(url + "/v1/models", headers=h), timeout=30).read()
    t2 = time.time()
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4,
                       "stream": True}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                 headers=dict(h, **{"Content-Type": "application/json"}))
    first = None
    with urllib.request.urlopen(req, timeout=60) as r:
        for line in r:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                first = time.time()
    t3 = time.time()
    return {"health_s": t1 - t0, "models_s": t2 - t1, "first_token_s": (first or t3) - t2, "stream_done_s": t3 - t2,
            "total_s": (first or t3) - t0}


def startup_round(a, eng: Engine, rnd: int, healthy_checks: bool, stop: bool) -> dict:
    need = a.min_mem_gib if eng.kind == "one-host" else a.min_mem_gib_ray
    waited = 0
    while mem_available_gib() < need and waited < a.mem_wait:
        time.sleep(10)
        waited += 10
    if mem_available_gib() < need:
        return {"round": rnd, "skipped": f"only {mem_available_gib():.1f} GiB available (< {need})"}
    res: dict = {"round": rnd, "kind": eng.kind, "load1_before": load1(), "cpu_pressure_before": cpu_pressure(),
                 "mem_available_gib_before": round(mem_available_gib(), 1)}
    shm_before = shm_names()
    watch = subprocess.Popen(eng.watcher_argv(), stdin=open(HERE / "engine_watch.py", "rb"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    hello = watch.stdout.readline()
    if not hello.startswith("{"):
        watch.kill()
        raise SystemExit("the watcher did not start: " + hello + watch.stderr.read())
    up = eng.up()
    try:
        watch_out, watch_err = watch.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        watch.kill()
        watch_out, watch_err = watch.communicate()
    w = json.loads(watch_out.strip().splitlines()[-1]) if watch_out.strip() else {}
    try:
        ck = json.loads(up.stdout)
    except json.JSONDecodeError:
        ck = {"ok": False, "stdout": up.stdout[-2000:]}
    res.update({"up_rc": up.rc, "up_wall_s": up.wall, "up_cpu_s": up.cpu, "ck": ck, "watch": w,
                "up_stderr": [(round(t - up.t_start, 3), line) for t, line in up.stderr_lines],
                "load1_after_ready": load1()})
    if up.rc != 0 or not ck.get("ok"):
        res["error"] = up.err_text()[-3000:]
        if stop:
            res["down_wall_s"] = eng.down().wall
        return res
    t_launched = up.first_err("launched the engine")      # async_up done: wait_ready's t0
    t_http = up.first_err(" http ")                        # clusterkit saw "Application startup complete"
    ps, complete, health = w.get("proc_start"), w.get("complete"), w.get("health_200")
    res["times"] = {
        "invoke_to_engine_process_s": ps - up.t_start if ps else None,
        "engine_process_to_first_log_s": w["first_log"] - ps if ps and w.get("first_log") else None,
        "engine_start_s": complete - ps if ps and complete else None,           # the peer: the engine's own start
        "engine_start_from_first_log_s": complete - w["first_log"] if complete and w.get("first_log") else None,
        "engine_health_after_complete_s": health - complete if health and complete else None,
        "ck_detect_after_complete_s": t_http - complete if t_http and complete else None,
        "ck_http_checks_s": ck["ready_seconds"] - ck["startup_complete_seconds"],
        "ck_health_s": ck["health_seconds"] - ck["startup_complete_seconds"],
        "ck_models_and_token_s": ck["ready_seconds"] - ck["health_seconds"],
        "ck_exit_after_ready_s": up.t_end - (t_launched + ck["ready_seconds"]) if t_launched else None,
        "overhead_s": up.t_end - complete if complete else None,                 # clusterkit ready - engine ready
        "overhead_vs_health_s": up.t_end - health if health else None,
        "ck_reported_overhead_s": ck["ready_seconds"] - ck["engine_start_seconds"],
        "ck_engine_start_error_s": ck["engine_start_seconds"] - (complete - ps) if ps and complete else None,
        "launch_to_t0_s": t_launched - ps if t_launched and ps else None,
    }
    if healthy_checks:
        key = eng.key()
        again, status, status_default, floor = [], [], [], []
        for _ in range(a.healthy_reps):
            u = eng.up()
            j = json.loads(u.stdout) if u.rc == 0 else {}
            again.append({"wall_s": u.wall, "rc": u.rc, "ready_seconds": j.get("ready_seconds"),
                          "action": "running" if any("already running" in l for _, l in u.stderr_lines) else "?"})
            s = eng.status()
            status.append({"wall_s": s.wall, "rc": s.rc, "state": (re.search(r": (\S+) \(pid", s.stdout) or [None, None])[1]})
            floor.append(floor_checks(eng.url, key, a.served))
        s = eng.status(with_backend=False)
        status_default.append({"wall_s": s.wall, "rc": s.rc,
                               "state": (re.search(r": (\S+) \(pid", s.stdout) or [None, None])[1]})
        res["healthy"] = {"up_again": again, "status": status, "status_without_backend": status_default,
                          "floor_checks": floor}
    if stop:
        d = eng.down()
        time.sleep(1)
        res["down"] = {"wall_s": d.wall, "rc": d.rc, "message": d.stdout.strip()[-300:],
                       "processes_left": eng.alive_processes(),
                       "shm_left": sorted(shm_names() - shm_before)}
    return res


# ---------------------------------------------------------------------------
# Part 2: clusterkit bench vs vllm bench serve

def run_ck(a, url: str, conc: int, n: int, words: int, out_tokens: int, seed: int, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # it finds the engine's key itself
    t = Timed([a.clusterkit, "bench", "--url", url, "--model", a.served, "--endpoint", "completions",
               "--concurrency", str(conc), "--requests", str(n), "--prompt-tokens", str(words),
               "--max-tokens", str(out_tokens), "--seed", str(seed), "--no-progress", "--json", str(out)], env=env)
    if t.rc != 0:
        raise RuntimeError("clusterkit bench failed: " + t.err_text()[-2000:] + t.stdout[-1000:])
    j = json.loads(out.read_text())
    chunks = j["itl_ms"]["count"] + j["completed"]
    return {"tool": "clusterkit", "wall_s": t.wall, "cpu_s": t.cpu, "completed": j["completed"], "failed": j["failed"],
            "duration_s": j["duration_s"], "req_s": j["request_throughput"], "out_tok_s": j["output_token_throughput"],
            "total_tok_s": j["total_token_throughput"], "prompt_tokens": j["prompt_tokens"],
            "output_tokens": j["output_tokens"],
            "ttft_mean": j["ttft_ms"]["mean"], "ttft_p50": j["ttft_ms"]["p50"], "ttft_p99": j["ttft_ms"]["p99"],
            "tpot_mean": j["tpot_ms"]["mean"], "tpot_p50": j["tpot_ms"]["p50"], "tpot_p99": j["tpot_ms"]["p99"],
            "itl_mean": j["itl_ms"]["mean"], "itl_p50": j["itl_ms"]["p50"], "itl_p99": j["itl_ms"]["p99"],
            "e2e_mean": j["e2e_ms"]["mean"], "e2e_p50": j["e2e_ms"]["p50"], "e2e_p99": j["e2e_ms"]["p99"],
            "chunks": chunks, "tokens_per_chunk": j["output_tokens"] / chunks if chunks else None}


def run_vllm(a, url: str, key: str, conc: int, n: int, in_tokens: int, out_tokens: int, seed: int, out: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OPENAI_API_KEY=key, HF_HOME=str(out.parent / "hf"))
    t = Timed([a.vllm, "bench", "serve", "--backend", "openai", "--base-url", url, "--model", a.served,
               "--tokenizer", a.tokenizer, "--dataset-name", "random", "--random-input-len", str(in_tokens),
               "--random-output-len", str(out_tokens), "--num-prompts", str(n), "--max-concurrency", str(conc),
               "--seed", str(seed), "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
               "--metric-percentiles", "50,90,99", "--disable-tqdm", "--save-result", "--save-detailed",
               "--result-dir", str(out.parent), "--result-filename", out.name], env=env)
    if t.rc != 0:
        raise RuntimeError("vllm bench serve failed: " + t.err_text()[-3000:] + t.stdout[-2000:])
    j = json.loads(out.read_text())
    itls = [x for per in j.get("itls", []) for x in per]
    zero_gaps = sum(1 for x in itls if x < 1e-4)
    chunks = len(itls) + j["completed"]
    return {"tool": "vllm bench serve", "wall_s": t.wall, "cpu_s": t.cpu, "completed": j["completed"],
            "failed": j.get("failed", 0), "duration_s": j["duration"], "req_s": j["request_throughput"],
            "out_tok_s": j["output_throughput"], "total_tok_s": j["total_token_throughput"],
            "prompt_tokens": j["total_input_tokens"], "output_tokens": j["total_output_tokens"],
            "ttft_mean": j["mean_ttft_ms"], "ttft_p50": j["median_ttft_ms"], "ttft_p99": j["p99_ttft_ms"],
            "tpot_mean": j["mean_tpot_ms"], "tpot_p50": j["median_tpot_ms"], "tpot_p99": j["p99_tpot_ms"],
            "itl_mean": j["mean_itl_ms"], "itl_p50": j["median_itl_ms"], "itl_p99": j["p99_itl_ms"],
            "e2e_mean": j["mean_e2el_ms"], "e2e_p50": j["median_e2el_ms"], "e2e_p99": j["p99_e2el_ms"],
            "chunks": chunks, "tokens_per_chunk": j["total_output_tokens"] / chunks if chunks else None,
            "itl_zero_gap_fraction": zero_gaps / len(itls) if itls else None,
            "peak_concurrent_requests": j.get("max_concurrent_requests")}


class Wire:
    """wire.py around one tool run: the engine's segments on the lab bridge."""

    def __init__(self, a, lab: Lab, out: Path):
        self.out = out
        self.proc = None
        if not a.wire:
            return
        dev = subprocess.run(["ip", "route", "get", lab.address], capture_output=True, text=True).stdout.split()
        iface = dev[dev.index("dev") + 1]
        self.proc = subprocess.Popen([sys.executable, str(HERE / "wire.py"), "--iface", iface, "--out", str(out)],
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdout.readline()  # "capturing"

    def stop(self, skip_first: int = 0) -> dict | None:
        if self.proc is None:
            return None
        time.sleep(0.3)
        self.proc.terminate()
        self.proc.wait(30)
        sys.path.insert(0, str(HERE))
        import wire  # noqa: E402
        reqs = wire.requests(json.loads(self.out.read_text()))[skip_first:]
        if not reqs:
            return None
        ttft = [(r["first_event"] - r["post"]) * 1e3 for r in reqs]
        e2e = [(r["done"] - r["post"]) * 1e3 for r in reqs]
        return {"requests": len(reqs), "ttft_mean": statistics.mean(ttft), "ttft_p50": statistics.median(ttft),
                "e2e_mean": statistics.mean(e2e), "e2e_p50": statistics.median(e2e),
                "events_per_segment": sum(r["events"] for r in reqs) / max(1, sum(r["segments"] for r in reqs))}


def calibrate_words(a, url: str, in_tokens: int, work: Path) -> tuple[int, list]:
    """clusterkit's synthetic prompts are words, not tokens: find the word
    count whose prompts the engine counts as `in_tokens` tokens (usage)."""
    est = max(2, round(in_tokens / 2.4))
    tried = []
    for words in range(max(2, est - 4), est + 5):
        out = work / f"cal-{words}.json"
        t = Timed([a.clusterkit, "bench", "--url", url, "--model", a.served, "--endpoint", "completions",
                   "--concurrency", "4", "--requests", "32", "--prompt-tokens", str(words), "--max-tokens", "1",
                   "--seed", "999", "--no-progress", "--json", str(out)],
                  env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"})
        j = json.loads(out.read_text())
        tried.append((words, j["prompt_tokens"] / max(1, j["completed"])))
    words = min(tried, key=lambda x: abs(x[1] - in_tokens))[0]
    return words, tried


def bench_part(a, eng: Engine, work: Path) -> dict:
    key = eng.key()
    res: dict = {"load1_before": load1(), "cpu_pressure_before": cpu_pressure(), "scenarios": []}
    # Warm the engine (the first requests after a start are slower) and the tools.
    run_ck(a, eng.url, 4, 16, 20, 8, int(time.time()) % 100000, work / "warm-ck.json")
    run_vllm(a, eng.url, key, 4, 16, 64, 8, int(time.time()) % 100000, work / "warm-vllm.json")
    words, tried = calibrate_words(a, eng.url, a.input_len, work)
    res["ck_prompt_words"] = words
    res["calibration"] = tried
    # Seeds never used before on this engine: a repeated prompt longer than one
    # KV block (128 tokens on CPU) would hit the prefix cache.
    seed_base = int(time.time()) % 1000000 * 100
    res["seed_base"] = seed_base
    for si, (conc, n) in enumerate(a.scenarios):
        sc = {"concurrency": conc, "requests": n, "input_tokens": a.input_len, "output_tokens": a.output_len,
              "ck_prompt_words": words, "rounds": []}
        for r in range(a.bench_rounds):
            order = ["ck", "vllm"] if r % 2 == 0 else ["vllm", "ck"]
            rnd = {"round": r + 1, "order": order}
            for tool in order:
                seed = seed_base + 10 * si + r
                before = metrics(eng.url)
                lb = load1()
                wire = Wire(a, eng.lab, work / f"wire-{tool}-c{conc}-r{r}.json")
                if tool == "ck":
                    m = run_ck(a, eng.url, conc, n, words, a.output_len, seed, work / f"ck-c{conc}-r{r}.json")
                else:
                    m = run_vllm(a, eng.url, key, conc, n, a.input_len, a.output_len, seed,
                                 work / f"vllm-c{conc}-r{r}.json")
                # vllm bench serve sends one test request before its clock starts.
                m["wire"] = wire.stop(skip_first=1 if tool == "vllm" else 0)
                m["server"] = server_view(before, metrics(eng.url))
                m["load1"] = (lb + load1()) / 2
                rnd[tool] = m
                print(f"  c={conc} round {r + 1} {m['tool']:17s} {m['req_s']:7.2f} req/s {m['out_tok_s']:8.1f} tok/s "
                      f"TTFT p50 {m['ttft_p50']:8.2f} ms  server TTFT mean {m['server']['ttft_mean_ms'] or 0:8.2f} ms  "
                      f"load1 {m['load1']:.1f}", flush=True)
            sc["rounds"].append(rnd)
        res["scenarios"].append(sc)
    res["load1_after"] = load1()
    return res


def clients_part(a, eng: Engine, work: Path, words: int) -> dict:
    """Concurrency 1: how late each client reads what the engine already sent.
    Four clients, the order rotating: clusterkit bench, clusterkit bench
    --poll-interval 0 (no batched wake-ups), vllm bench serve, raw_client.py
    (blocking sockets). For each: its TTFT and E2E per request, the wire's,
    and the share of requests whose whole answer was read in one go at the
    end (TTFT > 80% of E2E)."""
    key = eng.key()
    tools = ["ck", "ck-poll0", "vllm", "raw"]
    seed_base = int(time.time()) % 1000000 * 100 + 50
    res: dict = {"n": a.clients_requests, "rounds": [], "load1_before": load1()}
    for r in range(a.clients_rounds):
        order = tools[r % 4:] + tools[:r % 4]
        rnd = {"round": r + 1, "order": order}
        for ti, tool in enumerate(order):
            seed = seed_base + 10 * r + ti
            wire_out = work / f"clients-wire-{tool}-r{r}.json"
            w = Wire(a, eng.lab, wire_out)
            lb = load1()
            if tool.startswith("ck"):
                out = work / f"clients-{tool}-r{r}.json"
                argv = [a.clusterkit, "bench", "--url", eng.url, "--model", a.served, "--endpoint", "completions",
                        "--concurrency", "1", "--requests", str(a.clients_requests), "--prompt-tokens", str(words),
                        "--max-tokens", str(a.output_len), "--seed", str(seed), "--no-progress", "--json", str(out)]
                if tool == "ck-poll0":
                    argv += ["--poll-interval", "0"]
                t = Timed(argv, env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"})
                j = json.loads(out.read_text())
                per = [(q["ttft_ms"], q["e2e_ms"]) for q in j["requests"]]
                skip = 0
            elif tool == "vllm":
                out = work / f"clients-vllm-r{r}.json"
                run_vllm(a, eng.url, key, 1, a.clients_requests, a.input_len, a.output_len, seed, out)
                j = json.loads(out.read_text())
                per = [(x * 1e3, y * 1e3) for x, y in zip(j["ttfts"], j["latencies"])]
                skip = 1
            else:
                t = Timed([sys.executable, str(HERE / "raw_client.py"), "--host", eng.lab.address, "--key", key,
                           "--model", a.served, "--requests", str(a.clients_requests), "--words", str(words),
                           "--max-tokens", str(a.output_len), "--seed", str(seed)])
                per = [(q["ttft_ms"], q["e2e_ms"]) for q in json.loads(t.stdout.strip().splitlines()[-1])["requests"]]
                skip = 0
            wire = w.stop(skip_first=skip)
            m = {"ttft_mean": statistics.mean(x for x, _ in per), "e2e_mean": statistics.mean(y for _, y in per),
                 "read_at_end": sum(1 for x, y in per if x > 0.8 * y) / len(per), "wire": wire,
                 "load1": (lb + load1()) / 2}
            if wire:
                m["client_ttft_delay"] = m["ttft_mean"] - wire["ttft_mean"]
            rnd[tool] = m
            print(f"  clients round {r + 1} {tool:9s} TTFT mean {m['ttft_mean']:7.1f} ms, wire "
                  f"{(wire or {}).get('ttft_mean', 0):6.1f} ms, read at the end {100 * m['read_at_end']:3.0f}%, "
                  f"load1 {m['load1']:.1f}", flush=True)
        res["rounds"].append(rnd)
    return res


# ---------------------------------------------------------------------------
# Report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Run of {results['date']} on {m['cores']} cores ({m['cpu']}), {m['mem_total_gib']} GiB, kernel "
             f"{m['kernel']}; load average at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}, "
             f"CPU pressure `{m['cpu_pressure_at_start']}`. clusterkit {results['clusterkit']}.", ""]
    st = results.get("startup")
    if st:
        lines += ["### Start-to-ready, one-host engine (mp backend, bare runtime)", "",
                  "| round | load1 | engine start s (process -> `Application startup complete`) | log first line -> complete s "
                  "| clusterkit ready after complete s (overhead) | of it: detect the line | health | /v1/models + 1 token "
                  "| clusterkit's own (ready_seconds - engine_start_seconds) | `serve up` wall s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in st:
            if "times" not in r:
                lines.append(f"| {r['round']} | - | {r.get('skipped') or r.get('error', '')[:80]} | | | | | | | |")
                continue
            t = r["times"]
            lines.append(f"| {r['round']} | {r['load1_before']:.1f} | {f(t['engine_start_s'])} | "
                         f"{f(t['engine_start_from_first_log_s'])} | **{f(t['overhead_s'], 3)}** | "
                         f"{f(t['ck_detect_after_complete_s'], 3)} | {f(t['ck_health_s'], 3)} | "
                         f"{f(t['ck_models_and_token_s'], 3)} | {f(t['ck_reported_overhead_s'], 3)} | {f(r['up_wall_s'], 1)} |")
        hs = [r["healthy"] for r in st if "healthy" in r]
        if hs:
            again = [x["wall_s"] for h in hs for x in h["up_again"]]
            status = [x["wall_s"] for h in hs for x in h["status"]]
            sdef = [x for h in hs for x in h["status_without_backend"]]
            floor = [x["total_s"] for h in hs for x in h["floor_checks"]]
            lines += ["", "Against the healthy engine (every repetition, seconds):", "",
                      f"- `serve up` again (finds it running, re-checks /health, /v1/models, one token): "
                      f"{', '.join(f(x, 3) for x in again)} (median {f(med(again), 3)})",
                      f"- `serve status --backend mp`: {', '.join(f(x, 3) for x in status)} (median {f(med(status), 3)})",
                      f"- `serve status` without `--backend`: "
                      f"{', '.join(f(x['wall_s'], 2) + ' (' + str(x['state']) + ')' for x in sdef)}",
                      f"- floor, a minimal stdlib client doing the same 3 checks: {', '.join(f(x, 3) for x in floor)} "
                      f"(median {f(med(floor), 3)})"]
    ray = results.get("ray")
    if ray:
        lines += ["", "### Start-to-ready, TP2 x PP2 over Ray in Docker", ""]
        for r in ray:
            if "times" in r:
                t = r["times"]
                lines.append(f"- engine start {f(t['engine_start_s'])} s; clusterkit overhead {f(t['overhead_s'], 3)} s "
                             f"(detect {f(t['ck_detect_after_complete_s'], 3)}, health {f(t['ck_health_s'], 3)}, "
                             f"models + token {f(t['ck_models_and_token_s'], 3)}); clusterkit's own figure "
                             f"{f(t['ck_reported_overhead_s'], 3)} s; `serve up` wall {f(r['up_wall_s'], 1)} s")
            else:
                lines.append(f"- {r.get('skipped') or r.get('error', '')[:300]}")
    b = results.get("bench")
    if b:
        lines += ["", f"### clusterkit bench vs vllm bench serve (completions, {b['scenarios'][0]['input_tokens']} "
                      f"prompt tokens, {b['scenarios'][0]['output_tokens']} output tokens, ignore_eos)", "",
                  f"clusterkit's prompts: {b['ck_prompt_words']} words (calibrated: words -> tokens/request "
                  f"{', '.join(f'{w}: {t:.1f}' for w, t in b['calibration'])}).", ""]
        keys = [("ttft_mean", "TTFT mean ms"), ("ttft_p50", "TTFT p50 ms"), ("ttft_p99", "TTFT p99 ms"),
                ("tpot_mean", "TPOT mean ms"), ("tpot_p50", "TPOT p50 ms"), ("itl_mean", "ITL mean ms"),
                ("itl_p50", "ITL p50 ms"), ("itl_p99", "ITL p99 ms"), ("e2e_mean", "E2E mean ms"),
                ("e2e_p50", "E2E p50 ms"), ("req_s", "requests/s"), ("out_tok_s", "output tok/s"),
                ("total_tok_s", "total tok/s"), ("prompt_per_req", "prompt tokens/request"),
                ("tokens_per_chunk", "output tokens per stream chunk"), ("cpu_s", "CPU s of the tool"),
                ("wall_s", "wall s of the tool's process"),
                ("srv_ttft", "server TTFT mean ms (/metrics)"), ("srv_itl", "server ITL mean ms (/metrics)"),
                ("srv_e2e", "server E2E mean ms (/metrics)"), ("wire_ttft_mean", "wire TTFT mean ms (POST out -> 1st event in)"),
                ("wire_ttft_p50", "wire TTFT p50 ms"), ("client_ttft_delay", "client's own TTFT delay ms (TTFT mean - wire)"),
                ("wire_e2e_mean", "wire E2E mean ms (POST out -> [DONE] in)"),
                ("client_e2e_delay", "client's own E2E delay ms (E2E mean - wire)"),
                ("wire_events_per_segment", "SSE events per TCP segment (wire)"), ("prefix_hits", "prefix-cache hit tokens"),
                ("load1", "load1 during")]
        for sc in b["scenarios"]:
            def vals(tool, k):
                out = []
                for r in sc["rounds"]:
                    x = r[tool]
                    if k == "prompt_per_req":
                        out.append(x["prompt_tokens"] / max(1, x["completed"]))
                    elif k.startswith("srv_"):
                        out.append(x["server"][{"srv_ttft": "ttft_mean_ms", "srv_itl": "itl_mean_ms",
                                                "srv_e2e": "e2e_mean_ms"}[k]])
                    elif k.startswith("wire_"):
                        out.append((x.get("wire") or {}).get(k[5:]))
                    elif k == "client_ttft_delay":
                        out.append(x["ttft_mean"] - x["wire"]["ttft_mean"] if x.get("wire") else None)
                    elif k == "client_e2e_delay":
                        out.append(x["e2e_mean"] - x["wire"]["e2e_mean"] if x.get("wire") else None)
                    elif k == "prefix_hits":
                        out.append(x["server"]["prefix_cache_hits"])
                    else:
                        out.append(x.get(k))
                return out

            lines += [f"Concurrency {sc['concurrency']}, {sc['requests']} requests, {len(sc['rounds'])} rounds "
                      f"(orders: {', '.join('/'.join(r['order']) for r in sc['rounds'])}); medians over rounds, "
                      f"every round in brackets:", "",
                      "| metric | clusterkit bench | vllm bench serve | clusterkit / vllm (medians) | median of per-round ratios |",
                      "| --- | --- | --- | --- | --- |"]
            for k, label in keys:
                c, v = vals("ck", k), vals("vllm", k)
                mc, mv = med(c), med(v)
                ratio = f"{mc / mv:.3f}" if mc is not None and mv not in (None, 0) else "-"
                paired = med([x / y for x, y in zip(c, v) if x is not None and y])
                lines.append(f"| {label} | {f(mc)} ({', '.join(f(x) for x in c)}) | {f(mv)} ({', '.join(f(x) for x in v)}) "
                             f"| {ratio} | {f(paired, 3)} |")
            zero = med([r["vllm"].get("itl_zero_gap_fraction") for r in sc["rounds"]])
            lines += ["", f"vllm bench serve: ITL gaps under 0.1 ms (events read together): {f((zero or 0) * 100, 1)}%; "
                          f"its 'Peak concurrent requests': {', '.join(str(r['vllm'].get('peak_concurrent_requests')) for r in sc['rounds'])}.", ""]
    cl = results.get("clients")
    if cl:
        tools = ["ck", "ck-poll0", "vllm", "raw"]
        names = {"ck": "clusterkit bench", "ck-poll0": "clusterkit bench --poll-interval 0", "vllm": "vllm bench serve",
                 "raw": "raw_client.py (blocking socket)"}
        lines += [f"### How late each client reads (concurrency 1, {cl['n']} requests, {len(cl['rounds'])} rounds, "
                  f"order rotating; medians over rounds, every round in brackets)", "",
                  "| client | TTFT mean ms | wire TTFT mean ms | client's own TTFT delay ms | answers read whole at the end |",
                  "| --- | --- | --- | --- | --- |"]
        for t in tools:
            rs = [r[t] for r in cl["rounds"]]
            tt = [x["ttft_mean"] for x in rs]
            wt = [(x.get("wire") or {}).get("ttft_mean") for x in rs]
            dl = [x.get("client_ttft_delay") for x in rs]
            ae = [100 * x["read_at_end"] for x in rs]
            lines.append(f"| {names[t]} | {f(med(tt), 1)} ({', '.join(f(x, 1) for x in tt)}) | {f(med(wt), 1)} | "
                         f"{f(med(dl), 1)} ({', '.join(f(x, 1) for x in dl)}) | {f(med(ae), 0)}% ({', '.join(f(x, 0) for x in ae)}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))  # the tables again, from a raw file
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", default="/run/clusterkit/lab-tw1/inventory.yaml")
    ap.add_argument("--host", default="h1", help="the engine's host (one-host engine; Ray head)")
    ap.add_argument("--clusterkit", default=None, help="default: build/clusterkit, else build-test/clusterkit")
    ap.add_argument("--venv", default="/opt/ck-serve")
    ap.add_argument("--vllm", default=None, help="default: VENV/bin/vllm")
    ap.add_argument("--model", default="/mnt/Qwen/Tiny2___5-4M-Instruct", help="the model as the one-host engine sees it")
    ap.add_argument("--container-model", default="/models/Tiny2___5-4M-Instruct", help="as the Ray containers see it")
    ap.add_argument("--tokenizer", default="/run/clusterkit/lab-tw1/nas-export/Qwen/Tiny2___5-4M-Instruct",
                    help="the model folder on THIS machine (vllm bench serve's tokenizer)")
    ap.add_argument("--served", default="tiny")
    ap.add_argument("--name", default="tw1", help="the engine's name (state dir, key file)")
    ap.add_argument("--cache-root", default="/var/tmp/tw-vllm-cache", help="the engine's VLLM_CACHE_ROOT")
    ap.add_argument("--parts", default="startup,bench", help="startup, bench, clients, ray (comma list)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench-rounds", type=int, default=5)
    ap.add_argument("--clients-rounds", type=int, default=4)
    ap.add_argument("--clients-requests", type=int, default=16)
    ap.add_argument("--healthy-reps", type=int, default=2, help="serve up/status against the healthy engine, per round")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--scenario", action="append", default=None, help="CONCURRENCY:REQUESTS (repeatable; default 1:16 and 8:64)")
    ap.add_argument("--ray-group", default="gpu")
    ap.add_argument("--min-mem-gib", type=float, default=5)
    ap.add_argument("--min-mem-gib-ray", type=float, default=12)
    ap.add_argument("--mem-wait", type=float, default=300, help="seconds to wait for that memory")
    ap.add_argument("--no-wire", dest="wire", action="store_false", help="no packet capture on the lab bridge")
    ap.add_argument("--keep", action="store_true", help="leave the engine up at the end")
    ap.add_argument("--out", default=None, help="default bench/out/serve-DATE.json (and .md)")
    a = ap.parse_args()
    if a.clusterkit is None:
        a.clusterkit = next((str(p) for p in (REPO / "build/clusterkit", REPO / "build-test/clusterkit") if p.exists()), "clusterkit")
    a.vllm = a.vllm or f"{a.venv}/bin/vllm"
    a.scenarios = [tuple(int(x) for x in s.split(":")) for s in (a.scenario or ["1:16", "8:64"])]
    parts = set(a.parts.split(","))
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = Path(a.out) if a.out else REPO / "bench/out" / f"serve-{date.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    lab = Lab(a.inventory, a.host)
    sha = subprocess.run(["sha256sum", a.clusterkit], capture_output=True, text=True).stdout[:16]
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    results: dict = {"date": date, "machine": machine(), "clusterkit": f"{a.clusterkit} (sha256 {sha}, git {git})",
                     "args": {k: v for k, v in vars(a).items() if k != "scenarios"}}

    def save():
        out.write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(markdown(results))

    eng = Engine(a, lab, a.name, "one-host")
    up_now = False
    try:
        if "startup" in parts:
            results["startup"] = []
            for r in range(a.rounds):
                last = r == a.rounds - 1
                keep = last and "bench" in parts
                print(f"startup round {r + 1}/{a.rounds} (load1 {load1():.1f}, {mem_available_gib():.1f} GiB free)", flush=True)
                res = startup_round(a, eng, r + 1, healthy_checks=True, stop=not keep)
                results["startup"].append(res)
                up_now = keep and "times" in res
                t = res.get("times", {})
                print(f"  engine start {f(t.get('engine_start_s'))} s, overhead {f(t.get('overhead_s'), 3)} s, "
                      f"serve up wall {f(res.get('up_wall_s'), 1)} s {res.get('skipped') or ''}", flush=True)
                save()
        if "bench" in parts:
            if not up_now:
                print("starting the engine for the bench", flush=True)
                u = eng.up()
                if u.rc != 0:
                    raise SystemExit("serve up failed: " + u.err_text()[-2000:])
                up_now = True
            print("bench", flush=True)
            results["bench"] = bench_part(a, eng, work)
            save()
        if "clients" in parts:
            if not up_now:
                print("starting the engine for the client comparison", flush=True)
                u = eng.up()
                if u.rc != 0:
                    raise SystemExit("serve up failed: " + u.err_text()[-2000:])
                up_now = True
            words = (results.get("bench") or {}).get("ck_prompt_words") or calibrate_words(a, eng.url, a.input_len, work)[0]
            results["clients"] = clients_part(a, eng, work, words)
            save()
        if up_now and not a.keep:
            d = eng.down()
            results["final_down"] = {"wall_s": d.wall, "rc": d.rc, "processes_left": eng.alive_processes()}
            up_now = False
        if "ray" in parts:
            reng = Engine(a, lab, a.name + "r", "ray")
            rc = [a.clusterkit, "-i", lab.inventory, "ray"]
            rsel = ["--name", reng.name, "--runtime", "docker", "--venv", a.venv, "-g", a.ray_group]
            ray_up = Timed(rc + ["up"] + rsel + ["--ipc-host", "-e", "OMP_NUM_THREADS=1", "-v", "/mnt/Qwen:/models",
                                                 "--object-store-memory", "268435456"])
            results["ray"] = [{"ray_up_wall_s": ray_up.wall, "ray_up_rc": ray_up.rc}]
            if ray_up.rc == 0:
                results["ray"][0].update(startup_round(a, reng, 1, healthy_checks=False, stop=True))
            else:
                results["ray"][0]["error"] = ray_up.err_text()[-2000:]
            rd = Timed(rc + ["down"] + rsel)
            results["ray"][0]["ray_down_wall_s"] = rd.wall
            save()
    finally:
        if up_now and not a.keep:
            eng.down()
        results["load_avg_at_end"] = os.getloadavg()
        save()
    print(markdown(results))
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
