#!/usr/bin/env python3
"""Model-file benchmarks: clusterkit against the tools people use today,
side by side in one run, with ratios.

1. inspect: `clusterkit model inspect DIR` against reading the headers with
   plain Python (bench/models/read_headers.py) on many-shard models (sparse
   files: real safetensors headers, the weights a hole), and against reading
   every byte (`cat FILES > /dev/null`) on a real model.
2. hash: `clusterkit model verify DIR --write-manifest` (SHA-256 in parallel
   with OpenSSL) against `sha256sum`, `xargs -P2 sha256sum` and
   `xargs -P2 openssl dgst -sha256`; and `clusterkit model verify DIR`
   (with the manifest) against `sha256sum -c`. Files warm in the page cache.
3. sync: `clusterkit model sync SRC /mnt/DEST --on h1 --streams N` into the
   lab's sshfs NAS against `rsync -a --info=progress2` and `cp -rv` run on h1,
   same data, each into an empty destination.

Python 3 standard library only. Benchmark 3 needs root (the lab). See
bench/models/README.md.

    python3 bench/models/run.py                        # all three, 5 rounds (sync 5)
    python3 bench/models/run.py --only inspect,hash    # no lab
    python3 bench/models/run.py --help
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT_DIR = REPO / "bench" / "out"
DEFAULT_WORK = OUT_DIR / "models-work"   # git-ignored; must be on the disk the lab hosts share
DEFAULT_CK = REPO / "build" / "clusterkit"
PEER = HERE / "read_headers.py"
LAB_NAME = "tbench"
LAB_SUBNET = "10.88.20"
NAS_EXPORT = "/srv/nas"
BENCH_SUB = "ck-bench-models"          # folder inside the NAS export used (and emptied) by the run


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.run(argv, **kw)


def timed(argv, *, cwd=None, stdout=subprocess.PIPE, timeout=600, check=True) -> dict:
    """Runs argv; returns wall seconds, CPU seconds of it and its children,
    the 1-minute load average before it, and its output."""
    load = loadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))[:300]} failed ({r.returncode}):\n"
                         f"{(r.stderr or '')[-2000:]}\n{(r.stdout or '')[-1000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "load1": load, "rc": r.returncode,
            "stdout": r.stdout or "", "stderr": r.stderr or ""}


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    os_name = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass

    def first_line(argv):
        try:
            r = run(argv)
            return (r.stdout or r.stderr).strip().split("\n")[0]
        except OSError:
            return None

    return {
        "nproc": int(run(["nproc"]).stdout.strip() or 0),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(),
        "os": os_name,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "sha256sum": first_line(["sha256sum", "--version"]),
        "openssl": first_line(["openssl", "version"]),
        "rsync": first_line(["rsync", "--version"]),
        "cp": first_line(["cp", "--version"]),
        "uptime": run(["uptime"]).stdout.strip(),
    }


# --------------------------------------------------------------------------
# Models: config.json, model.safetensors.index.json and real safetensors
# shards (8-byte little-endian header length, JSON header padded with spaces
# to a multiple of 8, then the data). "sparse": the data is a hole (the file
# has its full size, the disk holds only the header); "random": real bytes.

MODELS = {
    # Qwen2.5-72B-Instruct's shapes and its 37 shards (~145 GB of BF16).
    "qwen2.5-72b": dict(kind="dense", arch="Qwen2ForCausalLM", model_type="qwen2", hidden=8192, inter=29568,
                        layers=80, heads=64, kv=8, head_dim=128, vocab=152064, bias=True, tie=False, shards=37),
    # Qwen3-235B-A22B's shapes and its 118 shards (~470 GB, 37,000 tensors: many experts).
    "qwen3-235b-a22b": dict(kind="moe", arch="Qwen3MoeForCausalLM", model_type="qwen3_moe", hidden=4096,
                            inter=12288, layers=94, heads=64, kv=4, head_dim=128, vocab=151936, experts=128,
                            moe_inter=1536, topk=8, tie=False, shards=118),
}


def data_model_spec(total_mib: int, shards: int) -> dict:
    """A small dense model, as many layers as fit in total_mib."""
    spec = dict(kind="dense", arch="Qwen2ForCausalLM", model_type="qwen2", hidden=1024, inter=2816, layers=1,
                heads=16, kv=4, head_dim=64, vocab=32000, bias=True, tie=False, shards=shards)
    while True:
        spec["layers"] += 1
        if sum(n for _, _, n in tensor_specs(spec)) > total_mib * 1048576:
            spec["layers"] -= 1
            return spec


def tensor_specs(m: dict) -> list[tuple[str, list[int], int]]:
    """(name, shape, bytes) in checkpoint order; BF16."""
    h, kvd = m["hidden"], m["kv"] * m["head_dim"]
    qd = m["heads"] * m["head_dim"]
    out = [("model.embed_tokens.weight", [m["vocab"], h])]
    for i in range(m["layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [h]),
                (p + "self_attn.q_proj.weight", [qd, h]),
                (p + "self_attn.k_proj.weight", [kvd, h]),
                (p + "self_attn.v_proj.weight", [kvd, h]),
                (p + "self_attn.o_proj.weight", [h, qd]),
                (p + "post_attention_layernorm.weight", [h])]
        if m.get("bias"):
            out += [(p + "self_attn.q_proj.bias", [qd]), (p + "self_attn.k_proj.bias", [kvd]),
                    (p + "self_attn.v_proj.bias", [kvd])]
        if m["kind"] == "moe":
            out += [(p + "self_attn.q_norm.weight", [m["head_dim"]]), (p + "self_attn.k_norm.weight", [m["head_dim"]]),
                    (p + "mlp.gate.weight", [m["experts"], h])]
            for e in range(m["experts"]):
                q = f"{p}mlp.experts.{e}."
                out += [(q + "gate_proj.weight", [m["moe_inter"], h]), (q + "up_proj.weight", [m["moe_inter"], h]),
                        (q + "down_proj.weight", [h, m["moe_inter"]])]
        else:
            out += [(p + "mlp.gate_proj.weight", [m["inter"], h]), (p + "mlp.up_proj.weight", [m["inter"], h]),
                    (p + "mlp.down_proj.weight", [h, m["inter"]])]
    out += [("model.norm.weight", [h])]
    if not m.get("tie"):
        out += [("lm_head.weight", [m["vocab"], h])]
    res = []
    for name, shape in out:
        n = 2
        for d in shape:
            n *= d
        res.append((name, shape, n))
    return res


def config_of(m: dict) -> dict:
    c = {"architectures": [m["arch"]], "model_type": m["model_type"], "hidden_size": m["hidden"],
         "intermediate_size": m["inter"], "num_hidden_layers": m["layers"], "num_attention_heads": m["heads"],
         "num_key_value_heads": m["kv"], "head_dim": m["head_dim"], "vocab_size": m["vocab"],
         "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
         "tie_word_embeddings": m["tie"], "torch_dtype": "bfloat16", "hidden_act": "silu"}
    if m["kind"] == "moe":
        c.update(num_experts=m["experts"], num_experts_per_tok=m["topk"], moe_intermediate_size=m["moe_inter"],
                 decoder_sparse_step=1, norm_topk_prob=True)
    return c


def write_model(d: Path, m: dict, mode: str) -> dict:
    """Writes the folder (mode "sparse" or "random"); returns a summary.
    Kept if a stamp says the same model is already there, whole."""
    stamp = d.parent / f"{d.name}.stamp"  # outside the folder: a manifest would list it
    want = json.dumps({"spec": m, "mode": mode}, sort_keys=True)
    specs = tensor_specs(m)
    n = m["shards"]
    total = sum(b for _, _, b in specs)
    if len(specs) < n:
        raise BenchError(f"{d.name}: {n} shards is too many for {len(specs)} tensors")
    # In checkpoint order, each shard about (bytes left) / (shards left).
    groups: list[list] = [[]]
    left = total
    target = left / n
    cur = 0
    for i, t in enumerate(specs):
        shards_after = n - len(groups)
        if groups[-1] and shards_after and (cur + t[2] / 2 > target or len(specs) - i <= shards_after):
            left -= cur
            groups.append([])
            cur = 0
            target = left / (shards_after)
        groups[-1].append(t)
        cur += t[2]
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    summary = {"dir": str(d), "mode": mode, "shards": n, "tensors": len(specs), "tensor_bytes": total,
               "parameters": total // 2}
    if stamp.exists() and stamp.read_text() == want and all((d / x).exists() for x in names):
        summary["apparent_bytes"] = sum((d / x).stat().st_size for x in names)
        return summary
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    log(f"writing {d} ({n} shards, {len(specs)} tensors, {total / 1e9:.2f} GB, {mode})")
    (d / "config.json").write_text(json.dumps(config_of(m), indent=2) + "\n")
    (d / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.7}) + "\n")
    weight_map = {}
    for name, group in zip(names, groups):
        header: dict = {"__metadata__": {"format": "pt"}}
        off = 0
        for tname, shape, nbytes in group:
            header[tname] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + nbytes]}
            weight_map[tname] = name
            off += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(d / name, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            if mode == "sparse":
                f.truncate(8 + len(raw) + off)
            else:
                left = off
                while left:
                    k = min(left, 8 << 20)
                    f.write(os.urandom(k))
                    left -= k
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    stamp.write_text(want)
    summary["apparent_bytes"] = sum((d / x).stat().st_size for x in names)
    return summary


def model_files(d: Path) -> list[str]:
    """The files a manifest covers, sorted by name (what `ls` gives)."""
    return sorted(p.name for p in d.iterdir() if p.is_file() and p.name not in ("sha256sums",)
                  and not p.name.startswith("."))


def warm(d: Path, files: list[str]) -> str:
    """Reads every file once so every tool reads from the page cache; returns fincore's summary."""
    for f in files:
        with open(d / f, "rb") as fh:
            while fh.read(8 << 20):
                pass
    if shutil.which("fincore"):
        r = run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *[str(d / f) for f in files]])
        res = size = 0
        for line in r.stdout.split("\n"):
            p = line.split()
            if len(p) == 2:
                res += int(p[0])
                size += int(p[1])
        return f"{res} of {size} bytes resident ({100 * res / max(size, 1):.1f}%)"
    return "fincore not available"


# --------------------------------------------------------------------------
# Results

class Results:
    def __init__(self):
        self.runs: list[dict] = []

    def add(self, bench: str, case: str, tool: str, rnd: int, r: dict, quiet=False, **extra):
        row = {"bench": bench, "case": case, "tool": tool, "round": rnd, "wall_s": r["wall_s"],
               "cpu_s": r.get("cpu_s"), "load1": r["load1"], **extra}
        self.runs.append(row)
        if not quiet:
            log(f"  {bench}/{case} {tool:<34} {r['wall_s']:8.3f} s  (load {r['load1']:.2f})")

    def stats(self, bench: str, case: str, tool: str) -> dict | None:
        rows = [x for x in self.runs if (x["bench"], x["case"], x["tool"]) == (bench, case, tool)]
        if not rows:
            return None
        w = [x["wall_s"] for x in rows]
        cpu = [x["cpu_s"] for x in rows if x.get("cpu_s") is not None]
        out = {"runs": len(w), "median_s": statistics.median(w), "min_s": min(w), "max_s": max(w),
               "cpu_median_s": statistics.median(cpu) if cpu else None,
               "load1_mean": statistics.fmean(x["load1"] for x in rows)}
        for key in ("hash_seconds", "inner_s", "work_s"):
            v = [x[key] for x in rows if x.get(key) is not None]
            if v:
                out[key + "_median"] = statistics.median(v)
        return out


def fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def table(results: Results, bench: str, case: str, tools: list[str], ref: str, extra_cols=()) -> list[str]:
    rs = results.stats(bench, case, ref)
    head = ["tool", "runs", "median s", "min s", "max s", "CPU s (median)", f"x {ref}", "load1"]
    head += [c for c, _ in extra_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in tools:
        s = results.stats(bench, case, t)
        if not s:
            continue
        ratio = s["median_s"] / rs["median_s"] if rs else None
        cells = [t, str(s["runs"]), fmt(s["median_s"], 4), fmt(s["min_s"], 4), fmt(s["max_s"], 4),
                 fmt(s["cpu_median_s"]), fmt(ratio), fmt(s["load1_mean"], 2)]
        cells += [fmt(s.get(k), 4) for _, k in extra_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio_lines(results: Results, bench: str, case: str, pairs: list[tuple[str, str]]) -> list[str]:
    lines = ["| ours | peer | ours median s | peer median s | ours / peer | min / min |", "|" + " --- |" * 6]
    for ours, peer in pairs:
        a, b = results.stats(bench, case, ours), results.stats(bench, case, peer)
        if not a or not b:
            continue
        lines.append(f"| {ours} | {peer} | {a['median_s']:.4f} | {b['median_s']:.4f} | "
                     f"{a['median_s'] / b['median_s']:.3f} | {a['min_s'] / b['min_s']:.3f} |")
    return lines


def wait_for_load(a, label: str, info: dict) -> None:
    """Waits (up to --load-wait s) for the 1-minute load average to fall below
    --max-load, so that other people's builds disturb less; records it."""
    t0 = time.time()
    first = loadavg()
    while loadavg() >= a.max_load and time.time() - t0 < a.load_wait:
        time.sleep(5)
    rec = {"before": label, "load_at_start": first, "load_after_wait": loadavg(),
           "waited_s": round(time.time() - t0, 1)}
    info.setdefault("load_waits", []).append(rec)
    log(f"{label}: load {first:.2f} -> {rec['load_after_wait']:.2f} after waiting {rec['waited_s']} s")


def rotate(xs: list, k: int) -> list:
    k %= len(xs)
    return xs[k:] + xs[:k]


# --------------------------------------------------------------------------
# 1. inspect

def bench_inspect(a, ck: str, py: str, work: Path, data_dir: Path, res: Results, report: list[str]):
    cases = []
    for name in a.inspect_models:
        s = write_model(work / name, MODELS[name], "sparse")
        cases.append((name, work / name, s, False))
    cases.append(("data (real bytes)", data_dir, None, True))
    report.append("## 1. Inspect: clusterkit model inspect vs reading the files\n")
    for case, d, summary, real in cases:
        if summary is None:
            files = model_files(d)
            summary = {"shards": sum(f.endswith(".safetensors") for f in files),
                       "apparent_bytes": sum((d / f).stat().st_size for f in files)}
            summary["warm"] = warm(d, files)
        du = int(run(["du", "-sb", "--apparent-size", str(d)]).stdout.split()[0])
        on_disk = int(run(["du", "-sB1", str(d)]).stdout.split()[0])
        log(f"inspect: {case}: {d} ({summary['shards']} shards, {du / 1e9:.1f} GB apparent, "
            f"{on_disk / 1e6:.1f} MB on disk)")
        tools = {
            "clusterkit model inspect": [ck, "--json", "model", "inspect", str(d)],
            "python: read every header": [py, str(PEER), str(d)],
            "floor: python3 -c pass": [py, "-c", "pass"],
            "floor: clusterkit --help": [ck, "--help"],
        }
        if real:
            files = [str(d / f) for f in model_files(d)]
            tools["cat every file > /dev/null"] = ["cat", *files]
            # The same read from the disk: O_DIRECT bypasses the page cache without dropping anyone's cache.
            tools["dd iflag=direct every file (disk)"] = [
                "/bin/sh", "-c", 'for f; do dd if="$f" of=/dev/null bs=8M iflag=direct status=none || exit 1; done',
                "sh", *files]
        # Same answer? (untimed)
        ckj = json.loads(timed(tools["clusterkit model inspect"])["stdout"])
        pyj = json.loads(timed(tools["python: read every header"])["stdout"])
        same = {k: (ckj.get(k), pyj.get(k)) for k in ("parameter_count", "total_tensor_bytes", "tensor_count")}
        same["shards"] = (len(ckj.get("shards", [])), len(pyj.get("shards", [])))
        agree = all(x == y for x, y in same.values())
        if not agree:
            raise BenchError(f"clusterkit and the Python reader disagree on {case}: {same}")
        if ckj.get("warnings") or pyj.get("warnings"):
            log(f"WARNING: warnings on {case}: {ckj.get('warnings')[:3]} {pyj.get('warnings')[:3]}")
        # Warm-up, untimed.
        for argv in tools.values():
            timed(argv, stdout=subprocess.DEVNULL)
        names = list(tools)
        for rnd in range(a.rounds):
            for t in rotate(names, rnd):
                reads = t.startswith(("cat", "dd"))
                for _ in range(max(1, a.inspect_runs // 5) if reads else a.inspect_runs):
                    stdout = subprocess.DEVNULL if reads or t.startswith("floor") else subprocess.PIPE
                    r = timed(tools[t], stdout=stdout)
                    work_s = json.loads(r["stdout"])["work_seconds"] if t.startswith("python:") else None
                    res.add("inspect", case, t, rnd, r, work_s=work_s, quiet=True)
        report.append(f"### {case}: {summary['shards']} shards, {same['tensor_count'][0]:,} tensors, "
                      f"{du / 1e9:.1f} GB apparent, {on_disk / 1e6:.1f} MB on disk"
                      + (f"; page cache: {summary['warm']}" if real else " (sparse)") + "\n")
        report.append(f"Both report {same['parameter_count'][0]:,} parameters, "
                      f"{same['total_tensor_bytes'][0]:,} tensor bytes, {same['tensor_count'][0]:,} tensors "
                      f"in {same['shards'][0]} shards.\n")
        report += table(res, "inspect", case, names, "python: read every header",
                        extra_cols=[("python in-process s", "work_s_median")])
        pairs = [("clusterkit model inspect", "python: read every header")]
        if real:
            pairs.append(("clusterkit model inspect", "cat every file > /dev/null"))
            pairs.append(("clusterkit model inspect", "dd iflag=direct every file (disk)"))
        report.append("")
        report += ratio_lines(res, "inspect", case, pairs)
        report.append("")
        if real:
            for t in ("cat every file > /dev/null", "dd iflag=direct every file (disk)"):
                s = res.stats("inspect", case, t)
                rate = du / s["median_s"]
                report.append(f"- `{t}`: {rate / 1e9:.2f} GB/s; at that rate the "
                              + ", ".join(f"{MODELS[n]['shards']}-shard {n} ({sum(b for *_, b in tensor_specs(MODELS[n])) / 1e9:.0f} GB) "
                                          f"would take {sum(b for *_, b in tensor_specs(MODELS[n])) / rate:.0f} s"
                                          for n in a.inspect_models)
                              + " (extrapolated, not measured).")
            report.append("")


# --------------------------------------------------------------------------
# 2. hash

def bench_hash(a, ck: str, data_dir: Path, work: Path, res: Results, report: list[str]):
    d = data_dir
    files = model_files(d)
    total = sum((d / f).stat().st_size for f in files)
    sums = d / "sha256sums"
    scratch = work / "hash-scratch"
    scratch.mkdir(exist_ok=True)
    # The reference manifest, untimed, from sha256sum.
    if sums.exists():
        sums.unlink()
    ref = run(["sha256sum", *files], cwd=d).stdout
    ref_map = {line[66:]: line[:64] for line in ref.splitlines()}
    sums.write_text(ref)
    lines = ref.splitlines()
    (scratch / "half1").write_text("".join(x + "\n" for x in lines[0::2]))
    (scratch / "half2").write_text("".join(x + "\n" for x in lines[1::2]))
    list0 = scratch / "files0"
    list0.write_bytes(b"".join(f.encode() + b"\0" for f in files))
    cache = warm(d, files + ["sha256sums"])
    log(f"hash: {d}: {len(files)} files, {total / 1e9:.3f} GB; page cache: {cache}")

    def check_map(text: str, tool: str, openssl=False):
        got = {}
        for line in text.splitlines():
            if openssl:  # "HEX *NAME"
                h, n = line.split(" ", 1)
                got[n.lstrip("*")] = h
            else:
                got[line[66:]] = line[:64]
        if got != ref_map:
            raise BenchError(f"{tool}: digests differ from sha256sum's")

    sh = "/bin/sh"
    tools = {
        "clusterkit verify --write-manifest --no-checksums": [ck, "--json", "model", "verify", str(d),
                                                               "--write-manifest", "--no-checksums"],
        "clusterkit verify --write-manifest": [ck, "--json", "model", "verify", str(d), "--write-manifest"],
        "sha256sum (serial)": [sh, "-c", f'sha256sum "$@" > {scratch}/out', "sh", *files],
        "xargs -P2 sha256sum": [sh, "-c", f"xargs -0 -P2 -n1 sha256sum < {list0} > {scratch}/out"],
        "xargs -P2 openssl dgst -sha256": [sh, "-c", f"xargs -0 -P2 -n1 openssl dgst -sha256 -r < {list0} "
                                                     f"> {scratch}/out"],
        "clusterkit verify (with sha256sums)": [ck, "--json", "model", "verify", str(d)],
        "sha256sum -c (serial)": ["sha256sum", "-c", "--quiet", "sha256sums"],
        "sha256sum -c, 2 halves at once": [sh, "-c", f"sha256sum -c --quiet {scratch}/half1 & p=$!; "
                                                     f"sha256sum -c --quiet {scratch}/half2; b=$?; wait $p; "
                                                     f"exit $(( $? | b ))"],
    }
    names = list(tools)
    for rnd in range(a.rounds):
        for t in rotate(names, rnd):
            r = timed(tools[t], cwd=d)
            hash_s = None
            if t.startswith("clusterkit"):
                j = json.loads(r["stdout"])
                if not j.get("ok"):
                    raise BenchError(f"{t}: not ok: {j.get('problems')}")
                hash_s = j.get("hash_seconds") or None
                if "write-manifest" in t:
                    check_map(sums.read_text(), t)
            elif t in ("sha256sum (serial)", "xargs -P2 sha256sum"):
                check_map((scratch / "out").read_text(), t)
            elif t.startswith("xargs -P2 openssl"):
                check_map((scratch / "out").read_text(), t, openssl=True)
            res.add("hash", "data", t, rnd, r, hash_seconds=hash_s)
    sums.write_text(ref)
    report.append("## 2. SHA-256 of a model folder: clusterkit vs sha256sum\n")
    report.append(f"{len(files)} files ({sum(f.endswith('.safetensors') for f in files)} shards of random bytes), "
                  f"{total / 1e9:.3f} GB, read from the page cache ({cache}). "
                  "`hash s` = the `hash_seconds` clusterkit's JSON reports for its checking pass.\n")
    report += table(res, "hash", "data", names, "sha256sum (serial)", extra_cols=[("hash s", "hash_seconds_median")])
    report.append("")
    report += ratio_lines(res, "hash", "data", [
        ("clusterkit verify --write-manifest --no-checksums", "sha256sum (serial)"),
        ("clusterkit verify --write-manifest --no-checksums", "xargs -P2 sha256sum"),
        ("clusterkit verify --write-manifest --no-checksums", "xargs -P2 openssl dgst -sha256"),
        ("clusterkit verify --write-manifest", "xargs -P2 sha256sum"),
        ("clusterkit verify (with sha256sums)", "sha256sum -c (serial)"),
        ("clusterkit verify (with sha256sums)", "sha256sum -c, 2 halves at once"),
    ])
    report.append("")
    return total


# --------------------------------------------------------------------------
# 3. sync into the lab NAS

class Lab:
    def __init__(self, ck: str, name: str, subnet: str):
        self.ck, self.name, self.subnet = ck, name, subnet
        self.inventory = self.identity = self.known_hosts = ""
        self.brought_up = False

    def up(self):
        log(f"lab up: name {self.name}, subnet {self.subnet}, 2 hosts and a nas")
        r = run([self.ck, "lab", "up", "--name", self.name, "--subnet", self.subnet, "--hosts", "2", "--nas"])
        m = re.search(r"^inventory:\s*(\S+)", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise BenchError(f"`clusterkit lab up` failed (rc {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.brought_up = True
        self.inventory = m.group(1)
        text = Path(self.inventory).read_text()
        self.identity = re.search(r"identity_file:\s*(\S+)", text).group(1)
        self.known_hosts = re.search(r"known_hosts_file:\s*(\S+)", text).group(1)
        r = run([self.ck, "-i", self.inventory, "nas", "mount", "-g", "lab", "--type", "sshfs",
                 f"root@{self.subnet}.250:{NAS_EXPORT}", "--identity", self.identity,
                 "--known-hosts", self.known_hosts])
        if r.returncode != 0:
            raise BenchError(f"`clusterkit nas mount` failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        run([self.ck, "-i", self.inventory, "connect", "-g", "all"])

    def sh(self, host: str, script: str, check=True) -> dict:
        """Runs `sh -c script` on a lab host (over the kept connection)."""
        return timed([self.ck, "-i", self.inventory, "exec", "-g", host, "--", "sh", "-c", script], check=check)

    def down(self):
        if not self.brought_up:
            return
        run([self.ck, "-i", self.inventory, "nas", "umount", "-g", "lab"])
        run([self.ck, "-i", self.inventory, "disconnect", "-g", "all"])
        r = run([self.ck, "lab", "down", "--name", self.name])
        log(f"lab down: rc {r.returncode} {r.stdout.strip()[-300:]}")


INNER = re.compile(r"CKBENCH_NS (\d+)")


def bench_sync(a, ck: str, lab: Lab, data_dir: Path, res: Results, report: list[str]):
    src = "/tmp/ck-bench-src/model"          # h1's private tmpfs
    nas_dir = f"{NAS_EXPORT}/{BENCH_SUB}"     # on the nas host
    dest = f"/mnt/{BENCH_SUB}/model"          # the same folder, through h1's sshfs mount
    lab.sh("h1", f"rm -rf /tmp/ck-bench-src && mkdir -p /tmp/ck-bench-src && cp -r {data_dir} {src}")
    listing = lab.sh("h1", f"cd {src} && find . -type f -printf '%s %P\\n' | sort")["stdout"]
    want = sorted(line.split(": ", 1)[1] for line in listing.splitlines() if ": " in line)
    total = sum(int(x.split()[0]) for x in want)
    h1fs = lab.sh("h1", "df -h /tmp | tail -1; mount | grep ' /mnt '")["stdout"].strip()
    log(f"sync: {len(want)} files, {total / 1e9:.3f} GB in h1:{src}; {h1fs}")

    def reset():
        lab.sh("nas", f"rm -rf {nas_dir} && mkdir -p {nas_dir} && sync -f {NAS_EXPORT}")

    def check_copy(tool):
        got = lab.sh("nas", f"cd {nas_dir}/model && find . -type f -not -path './.rsync-partial/*' "
                            f"-printf '%s %P\\n' | sort")["stdout"]
        got = sorted(line.split(": ", 1)[1] for line in got.splitlines() if ": " in line)
        if got != want:
            raise BenchError(f"{tool}: the copy on the NAS differs from the source:\n{got[:5]}\n{want[:5]}")

    def on_h1(cmd):
        # The command's own wall time on h1 (without the ssh round trip) as CKBENCH_NS.
        return [ck, "-i", lab.inventory, "exec", "-g", "h1", "--", "sh", "-c",
                f"s=$(date +%s%N); {cmd}; r=$?; e=$(date +%s%N); echo CKBENCH_NS $((e - s)); exit $r"]

    tools = {}
    for n in a.streams:
        tools[f"clusterkit model sync --streams {n}"] = [ck, "-i", lab.inventory, "model", "sync", src, dest,
                                                         "--on", "h1", "--streams", str(n)]
    tools[f"clusterkit model sync --streams {max(a.streams)} --no-verify"] = [
        ck, "-i", lab.inventory, "model", "sync", src, dest, "--on", "h1", "--streams", str(max(a.streams)),
        "--no-verify"]
    tools["rsync -a --info=progress2 (on h1)"] = on_h1(f"rsync -a --info=progress2 {src}/ {dest}/")
    tools["cp -rv (on h1)"] = on_h1(f"cp -rv {src} {dest}")
    names = list(tools)
    reset()
    for rnd in range(a.sync_rounds):
        for t in rotate(names, rnd):
            reset()
            r = timed(tools[t], timeout=a.sync_timeout)
            m = INNER.search(r["stdout"])
            inner = int(m.group(1)) / 1e9 if m else None
            check_copy(t)
            res.add("sync", "data", t, rnd, r, inner_s=inner)
    reset()
    lab.sh("nas", f"rm -rf {nas_dir}")
    lab.sh("h1", "rm -rf /tmp/ck-bench-src")
    report.append("## 3. Copy into the lab NAS (sshfs): clusterkit model sync vs rsync and cp on h1\n")
    report.append(f"{len(want)} files, {total / 1e9:.3f} GB, from h1's /tmp (tmpfs) to `{dest}` "
                  f"(sshfs from the lab's nas host, whose `{NAS_EXPORT}` is on this machine's disk); "
                  "each run into an emptied destination. Wall time is measured here, so every row includes "
                  "one ssh command to h1 over a kept connection; `on h1 s` is the peer's own time on h1.\n")
    report += table(res, "sync", "data", names, "rsync -a --info=progress2 (on h1)",
                    extra_cols=[("on h1 s", "inner_s_median")])
    report.append("")
    pairs = []
    for n in a.streams:
        pairs += [(f"clusterkit model sync --streams {n}", "rsync -a --info=progress2 (on h1)"),
                  (f"clusterkit model sync --streams {n}", "cp -rv (on h1)")]
    report += ratio_lines(res, "sync", "data", pairs)
    report.append("")
    return total


# --------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusterkit", default=str(DEFAULT_CK), help="the CLI (copied first: a rebuild cannot swap it)")
    p.add_argument("--only", default="inspect,hash,sync", help="comma list of inspect, hash, sync")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the tool order rotates each round")
    p.add_argument("--max-load", type=float, default=1.0, help="wait for the 1-minute load to fall below this")
    p.add_argument("--load-wait", type=float, default=180, help="longest wait for it, per benchmark (s)")
    p.add_argument("--inspect-runs", type=int, default=10, help="runs of each inspect tool per round")
    p.add_argument("--inspect-models", default="qwen2.5-72b,qwen3-235b-a22b",
                   help=f"sparse models for inspect: {', '.join(MODELS)}")
    p.add_argument("--data-mib", type=int, default=1024, help="size of the real model (hash, sync, cat)")
    p.add_argument("--data-shards", type=int, default=8)
    p.add_argument("--streams", default="1,2,4", help="--streams values for model sync")
    p.add_argument("--sync-rounds", type=int, default=5, help="rounds of the sync benchmark (noisier)")
    p.add_argument("--sync-timeout", type=float, default=300)
    p.add_argument("--work", default=str(DEFAULT_WORK), help="where the models go (the lab hosts must see it)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated models for the next run")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up")
    p.add_argument("--lab-name", default=LAB_NAME)
    p.add_argument("--subnet", default=LAB_SUBNET)
    a = p.parse_args()
    a.only = [x for x in a.only.split(",") if x]
    a.inspect_models = [x for x in a.inspect_models.split(",") if x]
    a.streams = [int(x) for x in a.streams.split(",")]
    for name in a.inspect_models:
        if name not in MODELS:
            p.error(f"unknown model {name}")

    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ck-bench-models-"))
    src_ck = Path(a.clusterkit)
    if not (src_ck.is_file() and os.access(src_ck, os.X_OK)):
        raise BenchError(f"{src_ck} is missing or not executable; build it: ninja -C {REPO}/build clusterkit_cli")
    ck = str(tmp / "clusterkit")
    shutil.copy2(src_ck, ck)
    os.chmod(ck, 0o755)
    if run([ck, "--help"]).returncode not in (0, 106):
        raise BenchError(f"the copy of {src_ck} does not run (a link in progress?); try again")
    ck_sha = hashlib.sha256(Path(ck).read_bytes()).hexdigest()
    git = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = bool(run(["git", "-C", str(REPO), "status", "--porcelain"]).stdout.strip())
    py = sys.executable  # the interpreter itself, not a pyenv shim (which costs ~100 ms a start)
    info = {"started": started.isoformat(timespec="seconds"), "machine": machine_info(),
            "clusterkit": {"source": str(src_ck), "sha256": ck_sha, "git": git + (" + uncommitted" if dirty else ""),
                           "mtime": dt.datetime.fromtimestamp(src_ck.stat().st_mtime, dt.timezone.utc).isoformat()},
            "args": {k: v for k, v in vars(a).items()}}
    log(f"clusterkit {ck_sha[:16]} (git {info['clusterkit']['git']}), python {py}, load {loadavg():.2f}")
    res = Results()
    report: list[str] = []
    data_dir = work / "data"
    lab = Lab(ck, a.lab_name, a.subnet)
    rc = 0
    try:
        data_spec = data_model_spec(a.data_mib, a.data_shards)
        info["data_model"] = write_model(data_dir, data_spec, "random")
        if "inspect" in a.only:
            wait_for_load(a, "inspect", info)
            t0 = time.time()
            bench_inspect(a, ck, py, work, data_dir, res, report)
            info["inspect_seconds"] = time.time() - t0
        if "hash" in a.only:
            wait_for_load(a, "hash", info)
            t0 = time.time()
            bench_hash(a, ck, data_dir, work, res, report)
            info["hash_seconds"] = time.time() - t0
        if "sync" in a.only:
            t0 = time.time()
            if os.geteuid() != 0:
                raise BenchError("sync needs root (the lab)")
            lab.up()
            wait_for_load(a, "sync", info)
            bench_sync(a, ck, lab, data_dir, res, report)
            info["sync_seconds"] = time.time() - t0
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"ERROR: {e}")
        rc = 2
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        if not a.keep_lab:
            try:
                lab.down()
            except Exception as e:  # noqa: BLE001 - report, keep cleaning
                log(f"WARNING: lab down: {e}; run `clusterkit lab down --name {a.lab_name}`")
        if not a.keep_data:
            for d in [work / n for n in MODELS] + [data_dir, work / "hash-scratch"]:
                shutil.rmtree(d, ignore_errors=True)
                Path(f"{d}.stamp").unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    info["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    info["load_end"] = loadavg()
    info["uptime_end"] = run(["uptime"]).stdout.strip()
    stats = {}
    for bench, case, tool in dict.fromkeys((x["bench"], x["case"], x["tool"]) for x in res.runs):
        stats[f"{bench} | {case} | {tool}"] = res.stats(bench, case, tool)
    out = OUT_DIR / f"models-{stamp}{'' if rc == 0 else '-partial'}.json"
    out.write_text(json.dumps({"info": info, "stats": stats, "runs": res.runs}, indent=2) + "\n")
    m = info["machine"]
    head = [f"# Model benchmarks, {info['started']}", "",
            f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_gib']} GiB, {m['os']}, kernel {m['kernel']}.",
            f"- clusterkit: sha256 {ck_sha[:16]}, git {info['clusterkit']['git']}; python {m['python']} "
            f"({py}); {m['sha256sum']}; {m['openssl']}; {m['rsync']}.",
            f"- Load: {m['uptime']} at the start; {info['uptime_end']} at the end. Waits for load1 < {a.max_load}: "
            + "; ".join(f"{w['before']}: {w['load_at_start']:.2f} -> {w['load_after_wait']:.2f} after {w['waited_s']} s"
                        for w in info.get("load_waits", [])) + ".",
            f"- Rounds: {a.rounds} for inspect and hash, {a.sync_rounds} for sync; the order rotates each round; "
            f"inspect: {a.inspect_runs} runs of each tool per round ({max(1, a.inspect_runs // 5)} of cat and dd).",
            ""]
    md = "\n".join(head + report) + "\n"
    (OUT_DIR / f"models-{stamp}.md").write_text(md)
    print(md)
    log(f"wrote {out} and {OUT_DIR / f'models-{stamp}.md'}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(2)
