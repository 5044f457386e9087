"""Issue 15's abuse suite through the Python API (the CLI's is
tests/cli/fuzz_cli.py): every parser the module exposes gets mutated real
input (the example inventories and specs, the shipped model configs, captured
nvidia-smi, Ray, rsync and download output, this machine's own mountinfo, the
output of the library's own scripts run here), and the settings structs get
hostile values before their validation. Each call must return, or raise
clusterkit.Error, ValueError, TypeError or OverflowError, within 5 s, with a
message free of ESC and NUL; never another exception, never a crash.

    python3 tests/python/fuzz_api.py [MUTATIONS-PER-INPUT] [SEED]

Run by test_fuzz_api.py in a child process, so that a crash (a signal) is
reported with the case that caused it rather than ending pytest. A failure
prints the seed, the target and the mutation number that reproduce it.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import clusterkit as ck

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
PER_INPUT = int(sys.argv[1]) if len(sys.argv) > 1 else 150
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 20261206
ALLOWED = (ck.Error, ValueError, TypeError, OverflowError)
MARK = f"/run/ck-fuzz-api-{os.getpid()}"

# What a careless edit or a hostile file puts into text: characters YAML,
# JSON and the line formats give meaning to, numbers past any range, NUL,
# ESC, invalid UTF-8 (as U+FFFD and lone surrogates are not representable
# in Python str passed to C++, the replacement char and C1 controls stand
# for them), shell syntax.
TOKENS = [
    "&a ", "*a", "<<: *a", "!!binary ", "!!python/object ", "[", "]", "{", "}", ",", ":", "- ", "#", "'", '"',
    "\\", "\n", "\t", "\0", "\x1b[2J", "\x9b", "\ufffd", "-1", "nan", "inf", "1e309", "99999999999999999999",
    "0x7fffffff", f"$(touch {MARK})", f"x'$(touch {MARK})'", "`id`", ";", "|", "../../", "/dev/zero", " " * 200, "x" * 5000,
    "null", "~", "true", "GiB", "%", "MiB/s", "100%", "\r",
]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        if not text:
            text = rng.choice(TOKENS)
            continue
        r = rng.random()
        i = rng.randrange(len(text))
        if r < 0.3:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif r < 0.5:
            text = text[:i] + rng.choice("{}[]:,-&*!|>'\"#\n\t\0 0123456789.") + text[i + 1:]
        elif r < 0.7:
            text = text[:i] + text[i + rng.randint(1, 64):]
        elif r < 0.85:
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        else:
            text = text[:i]
    return text


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def sh(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, errors="replace", timeout=60).stdout


def inputs(tmp: Path) -> list[tuple[str, Callable[[str], Any], list[str]]]:
    """(name, the call, real inputs to mutate)."""
    spec_file = tmp / "spec.yaml"

    def deployment_spec_from_file(text: str) -> Any:
        spec_file.write_text(text, encoding="utf-8", errors="surrogatepass")
        return ck.load_deployment_spec(spec_file)

    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text(read(ROOT / "examples/models/Qwen2.5-7B-Instruct/config.json"))
    (model / "model.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0" + b'{"__metadata__":{}}'[:16])
    nas = ck.NasSpec("nfs", "nas:/srv/nas", mount_point=str(tmp / "mnt"))
    smi = {name: [read(d / name) for d in sorted((FIXTURES / "nvidia-smi").iterdir()) if (d / name).exists()]
           for name in ("query.csv", "topo.txt", "torchrun-nccl-allreduce.txt")}
    ray = {p.name: read(p) for p in (FIXTURES / "ray").iterdir()}
    # The dashboard's answers, one JSON document per line after a "== URL" line.
    dashboard = ray["ray-dashboard-api.txt"].splitlines()
    nodes_json = [dashboard[i + 1] for i, line in enumerate(dashboard) if line.startswith("== /api/v0/nodes")]
    # The lab's deployment spec names the lab's inventory: here, one of the
    # same shape as `lab up --gpus 2 --hosts 3 --nas` writes.
    lab_inventory = tmp / "lab-inventory.yaml"
    lab_inventory.write_text(
        "defaults: {user: root}\n"
        "hosts:\n"
        "  h1: {address: 10.88.0.11, roles: [head], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
        "  h2: {address: 10.88.0.12, roles: [worker], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
        "  h3: {address: 10.88.0.13, roles: [download]}\n"
        "  nas: {address: 10.88.0.10, roles: [nas], vars: {nas_export: /srv/nas}}\n")
    lab_spec = read(ROOT / "examples/deployments/lab.yaml").replace("/run/clusterkit/lab-ck/inventory.yaml", str(lab_inventory))
    bare = ck.RayClusterSpec()
    bare.runtime = ck.RayRuntimeKind.bare
    bare.ray_command = "/nonexistent/ray"
    progress = [read(p) for p in sorted((FIXTURES / "download-progress").glob("*.txt"))]
    return [
        ("Inventory.parse", lambda t: ck.Inventory.parse(t, "fuzz.yaml"),
         [read(p) for p in sorted((ROOT / "examples/inventories").iterdir())]),
        ("parse_deployment_spec", lambda t: ck.parse_deployment_spec(t, "fuzz.yaml", str(ROOT / "examples/deployments")),
         [read(ROOT / "examples/deployments/qwen72b-two-node.yaml"), lab_spec]),
        ("load_deployment_spec", deployment_spec_from_file, [lab_spec]),
        ("model_facts_from_config", lambda t: ck.model_facts_from_config(t, "config.json"),
         [read(p / "config.json") for p in sorted((ROOT / "examples/models").iterdir()) if p.is_dir()]),
        ("parse_gpu_inventory", ck.parse_gpu_inventory, ["2 nodes x 2 L20 48GB", "1x H200", "8x A10", "4 x H100 80GB"]),
        ("VolumeMount.parse", ck.VolumeMount.parse, ["/mnt/models:/models:ro", "/data:/data"]),
        ("parse_gpu_query", ck.parse_gpu_query, smi["query.csv"]),
        ("parse_gpu_topology", ck.parse_gpu_topology, smi["topo.txt"]),
        ("parse_nccl_check_output", ck.parse_nccl_check_output, smi["torchrun-nccl-allreduce.txt"]),
        ("parse_mountinfo", ck.parse_mountinfo, [read(Path("/proc/self/mountinfo"))]),
        ("parse_mount_probe", ck.parse_mount_probe, [sh(ck.mount_probe_script(nas))]),
        ("parse_model_snapshot", ck.parse_model_snapshot, [sh(ck.model_snapshot_script(str(model)))]),
        ("parse_file_listing", ck.parse_file_listing, [sh(f"cd {model} && find . -type f -printf '%s\\t%P\\n'")]),
        ("parse_tqdm_bar", ck.parse_tqdm_bar, [line for t in progress for line in t.splitlines()[:40]][:60]),
        ("parse_rsync_progress", ck.parse_rsync_progress, read(FIXTURES / "rsync/rsync-3.5.0-progress2.txt").split("\r")[:40]),
        ("parse_ray_status", ck.parse_ray_status, [ray["ray-status.txt"], ray["ray-status-with-vllm.txt"]]),
        ("parse_ray_node_usage", ck.parse_ray_node_usage, [ray["dashboard-node-usage.txt"].splitlines()[1]]),
        ("parse_ray_nodes_json", ck.parse_ray_nodes_json, nodes_json),
        ("parse_ray_amount", ck.parse_ray_amount, ["4.0/4.0", "1.2GiB", "0.0", "2"]),
        ("parse_ray_probe", lambda t: ck.parse_ray_probe("h1", t),
         [sh(ck.ray_probe_script(bare, "127.0.0.1", True))]),
        ("parse_vllm_watch", ck.parse_vllm_watch, [read(p) for p in sorted((FIXTURES / "vllm-cpu").glob("*.log"))]),
        ("resolve_model", lambda t: ck.resolve_model(t, str(tmp)), [str(model), "model"]),
        ("known_gpu_memory_bytes", ck.known_gpu_memory_bytes, ["L20", "H200", "NVIDIA H100 80GB HBM3"]),
    ]


HOSTILE_VALUES: list[Any] = [
    -1, 0, 2**31, 2**63, -(2**63), 2**64, 1e309, -1e309, math.nan, math.inf, -0.0, 1e-12, "", "nan", "-1",
    "\x1b[2J", "\0", "a" * 5000, f"$(touch {MARK})", f"x'$(touch {MARK})'", f'x"$(touch {MARK})"', "../../etc/shadow", "/dev/zero", None, [], {}, 3.5,
]


def settings(rng: random.Random) -> list[tuple[str, Callable[[], Any]]]:
    """Settings structs with hostile fields, then the library's own check
    (or the call that checks them)."""

    def hostile(make: Callable[[], Any], check: Callable[[Any], Any]) -> Callable[[], Any]:
        def case() -> Any:
            obj = make()
            fields = [f for f in dir(obj) if not f.startswith("_") and not callable(getattr(obj, f))]
            for _ in range(rng.randint(1, 3)):
                try:
                    setattr(obj, rng.choice(fields), rng.choice(HOSTILE_VALUES))
                except ALLOWED + (AttributeError,):  # wrong type, or a read-only property
                    pass
            return check(obj)
        return case

    def nas() -> Any:
        return ck.NasSpec(rng.choice(["nfs", "sshfs"]), "nas:/srv/nas", mount_point="/mnt")

    def bench() -> Any:
        return ck.BenchSpec("http://127.0.0.1:1/v1", model="m")

    def check_bench(b: Any) -> Any:
        # Whatever the other hostile fields, one request to a refused port
        # and no pacing: a spec that passes validation ends at once, sending
        # nothing anywhere (a hostile rate or duration would run for hours).
        b.url = "http://127.0.0.1:1/v1"
        b.requests, b.duration, b.rate = 1, None, None
        return ck.run_bench(b)

    return [
        ("NasSpec -> validate_nas_spec", hostile(nas, ck.validate_nas_spec)),
        ("NasSpec -> nas_mount_script", hostile(nas, ck.nas_mount_script)),
        ("RayClusterSpec -> validate_ray_cluster_spec", hostile(ck.RayClusterSpec, ck.validate_ray_cluster_spec)),
        ("VllmServeSpec -> validate_vllm_serve_spec", hostile(ck.VllmServeSpec, ck.validate_vllm_serve_spec)),
        ("RayClusterSpec -> ray_probe_script", hostile(ck.RayClusterSpec, lambda s: ck.ray_probe_script(s, "10.0.0.1", True))),
        ("DownloadSpec -> download_script", hostile(ck.DownloadSpec, lambda s: ck.download_script(s, "/mnt/m"))),
        ("SyncSpec -> rsync_stream_argv", hostile(ck.SyncSpec, ck.rsync_stream_argv)),
        ("BenchSpec -> run_bench", hostile(bench, check_bench)),
    ]


def main() -> int:
    rng = random.Random(SEED)
    failures = calls = 0

    def call(name: str, i: int, fn: Callable[[], Any], shown: str) -> None:
        nonlocal failures, calls
        calls += 1
        started = time.monotonic()
        problem = ""
        try:
            fn()
        except ALLOWED as e:
            if i < 0:  # the real input itself: it must be read, or its mutations prove little
                problem = f"the unmutated input was refused: {str(e)[:300]!r}"
            text = str(e)
            if problem:
                pass
            elif "\x1b" in text or "\0" in text:
                problem = f"its message carries an ESC or NUL: {text[:300]!r}"
        except Exception as e:  # noqa: BLE001: anything else is the finding
            problem = f"raised {type(e).__name__}: {str(e)[:300]!r}"
        took = time.monotonic() - started
        if took > 5:
            problem = problem or f"took {took:.1f} s"
        if problem:
            failures += 1
            print(f"FAILED: {name} mutation {i} (seed {SEED}): {problem}; input {shown}")

    with tempfile.TemporaryDirectory() as tmp:
        for name, fn, originals in inputs(Path(tmp)):
            if not originals or not any(originals):
                print(f"FAILED: {name}: no real input to mutate (a fixture is missing)")
                failures += 1
                continue
            for original in originals:
                call(name, -1, lambda: fn(original), "(unmutated)")
                for i in range(PER_INPUT):
                    text = mutate(original, rng)
                    call(name, i, lambda: fn(text), repr(text[:120]))
        # Every field of every class made without arguments, set to every
        # hostile value: taken, or refused with TypeError/ValueError (a
        # read-only property: AttributeError).
        for cls_name in sorted(dir(ck)):
            cls = getattr(ck, cls_name)
            if not isinstance(cls, type) or issubclass(cls, BaseException):
                continue
            try:
                sample = cls()
            except Exception:  # noqa: BLE001: needs arguments; its parser or factory is fuzzed above
                continue
            for field in [f for f in dir(sample) if not f.startswith("_")]:
                try:
                    if callable(getattr(sample, field)):
                        continue
                except Exception:  # noqa: BLE001
                    continue
                for i, value in enumerate(HOSTILE_VALUES):
                    def assign(obj: Any = cls(), f: str = field, v: Any = value) -> None:
                        try:
                            setattr(obj, f, v)
                        except AttributeError:
                            pass
                    call(f"{cls_name}.{field} =", i, assign, repr(value)[:60])
        for name, case in settings(rng):
            for i in range(PER_INPUT):
                call(name, i, case, "(random fields)")
    if os.path.exists(MARK):
        failures += 1
        print(f"FAILED: shell syntax from a value ran ({MARK} exists)")
        os.unlink(MARK)
    print(f"fuzz_api: {calls} calls (seed {SEED}, {PER_INPUT} mutations per input), {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
