#!/usr/bin/env python3
"""Launch the seed's `vllm serve` (TP 2 x PP 2 over Ray, the engine on the head)
on the seed's Ray cluster, follow it with a progress line until it answers a
real request, print the endpoint and the API key's file, then send one chat
through ck.OpenAIClient with the key read from that file.

    python3 examples/python/vllm_serve.py                              # the seed: Qwen2.5-72B-Instruct on 2 x 2 L20
    python3 examples/python/vllm_serve.py --inventory cluster.yaml --model /models/Qwen2___5-72B-Instruct \\
        --served-model-name qwen2.5-72b-instruct --tp 2 --pp 2
    python3 examples/python/vllm_serve.py --dry-run                    # what would run, nothing started
    python3 examples/python/vllm_serve.py --down                       # stop the engine (Ray stays: ray_cluster.py --down)
    python3 examples/python/vllm_serve.py --follow                     # the engine's log as it grows, until Ctrl-C

The Ray cluster is the one examples/python/ray_cluster.py brings up (the same
spec, so it is kept if already up, started if not). The API key is generated
on the first launch, stored mode 0600 on this machine
(~/.config/clusterkit/keys/NAME.key), handed to the engine through a 0600 file
and VLLM_API_KEY, never an argument; it is never printed here.

In the lab (see ray_cluster.py for bringing it up and making the tiny model):

    sudo python3 examples/python/vllm_serve.py --inventory /run/clusterkit/lab-ck/inventory.yaml \\
        --models-dir /var/tmp/ck-models/Qwen

What is SIMULATED in the lab: the GPUs. The inventory declares 2 per host
(`simulated: true`); Ray counts them as logical GPUs, and the engine is
vLLM's *CPU* build from /opt/ck-serve, which scripts/install-serving.sh patches
(lab only) to accept Ray's logical GPUs as its devices: TP 2 x PP 2 really runs
as 4 CPU workers, 2 per host, tensors passing through the machine's shared
/dev/shm. The model is the tiny random Qwen2 of tests/fixtures/make_tiny_qwen2.py
(served as "tiny": its answers are random words), with --max-model-len 512,
--dtype bfloat16 and VLLM_CPU_KVCACHE_SPACE=1 (1 GiB of KV cache per worker:
"CPU KV cache size: 2,097,152 tokens"). Expect about 2 minutes to ready and
about 9 GB of memory for the pair. Everything else (ssh, Docker, Ray, vLLM's
API server, the key, the HTTP checks, the chat) is the real thing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import clusterkit as ck

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_cluster import SEED_INVENTORY, ProgressLine, bring_up, is_lab, seed_cluster  # noqa: E402

SEED_MODEL = "/models/Qwen2___5-72B-Instruct"
SEED_SERVED_NAME = "qwen2.5-72b-instruct"
LAB_MODEL = "/models/Tiny2___5-4M-Instruct"
LAB_SERVED_NAME = "tiny"


def read_key(path: str) -> str | None:
    """The key in a clusterkit key file ('#' lines are comments); None without a file."""
    if not path:
        return None
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            return line
    return None


def engine_spec(a: argparse.Namespace, cluster: ck.RayCluster) -> ck.VllmServeSpec:
    lab = is_lab(cluster)
    spec = ck.VllmServeSpec(
        a.model or (LAB_MODEL if lab else SEED_MODEL),
        name=a.name,
        served_model_name=a.served_model_name or (LAB_SERVED_NAME if lab else SEED_SERVED_NAME),
        tensor_parallel=a.tp,
        pipeline_parallel=a.pp,
        max_model_len=a.max_model_len or (512 if lab else None),
        gpu_memory_utilization=a.gpu_memory_utilization,
        port=a.port,
        ready_timeout=a.ready_timeout,
        api_key_file=a.api_key_file,
    )
    if lab:
        # vLLM's CPU build on logical GPUs: the captures' settings (tests/fixtures/vllm-cpu/README.md).
        spec.dtype = "bfloat16"
        spec.env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    return spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", "-i", default=str(SEED_INVENTORY), help="the inventory (default: the seed's)")
    ap.add_argument("--name", default="ck", help="the Ray cluster's and the engine's name")
    ap.add_argument("--models-dir", default="/mnt/Qwen", help="the model folder on every host, /models in the containers")
    ap.add_argument("--runtime", choices=["docker", "bare"], default=None, help="default: vars.runtime, else docker")
    ap.add_argument("--model", default=None, help=f"the model as the engine sees it (default {SEED_MODEL}; lab: {LAB_MODEL})")
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--tp", type=int, default=2, help="tensor parallel size (default 2, the seed's)")
    ap.add_argument("--pp", type=int, default=2, help="pipeline parallel size (default 2, the seed's)")
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--gpu-memory-utilization", type=float, default=None)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--ready-timeout", type=float, default=1800.0, help="seconds to wait for the engine")
    ap.add_argument("--api-key-file", default=None, help="where the key is kept (default ~/.config/clusterkit/keys/NAME.key)")
    ap.add_argument("--prompt", default="Who are you?")
    ap.add_argument("--dry-run", action="store_true", help="print what would run; start nothing")
    ap.add_argument("--down", action="store_true", help="stop the engine and remove its files")
    ap.add_argument("--follow", action="store_true", help="print the engine's log as it grows (like tail -F) until Ctrl-C")
    a = ap.parse_args()

    inventory = ck.Inventory.load(a.inventory)
    cluster = seed_cluster(inventory, name=a.name, models_dir=a.models_dir, runtime=a.runtime)
    serve = ck.VllmServe(engine_spec(a, cluster), cluster)
    print(serve, file=sys.stderr)
    try:
        if a.down:
            print(serve.down().message)
            return 0
        if a.follow:
            # Each line as the engine writes it; Ctrl-C ends it (KeyboardInterrupt, below).
            serve.logs(tail=20, follow=True, on_line=print)
            return 0
        if a.dry_run:
            print("cluster: ", cluster.spec)
            print("hosts:   ", ", ".join(f"{h.name}{' (head)' if h.head else ''} gpus={h.gpus}" for h in cluster.hosts))
            print("engine:  ", " ".join(ck.vllm_serve_argv(serve.spec)))
            print("endpoint:", serve.endpoint)
            print("api key: ", serve.api_key_file, "(mode 0600, written on the first launch)")
            return 0

        up = bring_up(cluster)  # kept as it is when already up
        print(up.message, file=sys.stderr)
        launched = serve.up()
        print(launched.message, file=sys.stderr)

        line = ProgressLine()
        try:
            ready = serve.wait_ready(
                on_progress=lambda p: line.show(f"vllm: {p.elapsed_seconds:5.0f} s {p.phase:<10} {p.message}")
            )
        finally:
            line.end()
        print(ready.message)
        print(f"endpoint:  {ready.endpoint}/v1")
        print(f"api key:   {launched.api_key_file} (mode 0600)")
        if ready.log.kv_cache_tokens:
            print(f"KV cache:  {ready.log.kv_cache_tokens:,} tokens per worker")

        client = ck.OpenAIClient(ready.endpoint, api_key=read_key(launched.api_key_file), first_token_timeout=120)
        answer = client.chat(ready.served_model_name, prompt=a.prompt, max_tokens=64)
        print(f"chat:      {answer.text!r} ({answer.usage})")
        return 0
    except ck.Error as e:
        # The engine's own log, explained (model missing, placement group never satisfied, ...).
        print(f"error ({e.code}): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not a.follow:
            print("interrupted: the engine, if launched, keeps starting; --down stops it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
