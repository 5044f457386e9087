#!/usr/bin/env python3
"""Bring up the seed's Ray cluster: a Ray head on the `head` host and a worker
on every other GPU host, one container per host (`docker run --network host
--shm-size 10.24g -v /mnt/Qwen:/models vllm/vllm-openai`, Ray started inside,
as vLLM's run_cluster.sh does), then wait until Ray itself reports every node
and every GPU, and print the cluster's status. Run it again: a cluster already
up as asked is left alone. --down stops Ray and removes the containers.

    python3 examples/python/ray_cluster.py                          # examples/inventories/seed-cluster.yaml
    python3 examples/python/ray_cluster.py --inventory cluster.yaml --models-dir /mnt/Qwen
    python3 examples/python/ray_cluster.py --down

In the lab (real sshd hosts, each with its own real Docker engine, on this
machine; root):

    sudo scripts/install-serving.sh                  # once: Docker, debootstrap, the Ray/vLLM venv /opt/ck-serve
    sudo clusterkit lab up --name ck --hosts 2 --docker --gpus 2
    /opt/ck-serve/bin/python3 tests/fixtures/make_tiny_qwen2.py /var/tmp/ck-models   # for vllm_serve.py
    sudo python3 examples/python/ray_cluster.py --inventory /run/clusterkit/lab-ck/inventory.yaml \\
        --models-dir /var/tmp/ck-models/Qwen

What is real in the lab and what is SIMULATED: the hosts (network, pid,
mount and uts namespaces with their own addresses), ssh, each host's Docker
engine and containers, and Ray 2.60.0 itself (a real GCS, raylets, the
dashboard) are real. The GPUs are not: the lab's inventory declares 2
SIMULATED GPUs per host (`simulated: true`), which become Ray's *logical* GPU
resource (`ray start --num-gpus=2`): Ray schedules on them, nothing computes
on them, and every report says SIMULATED. The image is the lab's small Debian
image (the inventory's vars.runtime_image) with the venv /opt/ck-serve mounted
at the same path (vars.serve_venv) instead of vllm/vllm-openai, and the
containers share the machine's /dev/shm (--ipc host), which vLLM's CPU build
needs between pipeline stages; Ray's object store is kept to 256 MiB a node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import clusterkit as ck

SEED_INVENTORY = Path(__file__).resolve().parents[1] / "inventories" / "seed-cluster.yaml"

#: The environment every lab node starts with: Ray's workers see only what
#: their node had when it started (vllm#6803), so the CPU engine's settings go here.
LAB_NODE_ENV = {"OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def is_lab(cluster: ck.RayCluster) -> bool:
    """The inventory declares SIMULATED GPUs (a lab made by `clusterkit lab up --gpus N`)."""
    return any(h.gpus_simulated for h in cluster.hosts)


def seed_cluster(
    inventory: ck.Inventory, *, name: str = "ck", models_dir: str = "/mnt/Qwen", runtime: str | None = None
) -> ck.RayCluster:
    """The seed's cluster on an inventory: the hosts with role head/worker/gpu (not the download
    box, never the NAS), the model folder at /models in every container, and what the
    inventory's vars add (runtime, runtime_image, serve_venv, ...). vllm_serve.py uses the same
    function: the same spec gives the same nodes, so a second `up` keeps them."""
    base = ck.RayClusterSpec(name=name, volumes=[ck.VolumeMount(models_dir, "/models")])
    cluster = ck.RayCluster.from_inventory(inventory, "all", spec=base)
    spec = cluster.spec
    if runtime is not None:
        spec.runtime = runtime  # type: ignore[assignment]
    if is_lab(cluster):
        spec.ipc_host = True  # the containers share the machine's /dev/shm
        spec.env = {**spec.env, **LAB_NODE_ENV}
        spec.object_store_memory = 256 << 20
    return ck.RayCluster(spec, cluster.hosts)


class ProgressLine:
    """One line on stderr, redrawn in place on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, line: str) -> None:
        if line == self.last:
            return
        self.last = line
        if self.tty:
            print(f"\r\033[K{line[:150]}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and self.last:
            print(file=sys.stderr)
        self.last = ""


def bring_up(cluster: ck.RayCluster) -> ck.RayUpResult:
    """cluster.up() with a progress line; raises clusterkit.Error naming the host and the fix."""
    line = ProgressLine()

    def progress(p: ck.RayProgress) -> None:
        line.show(f"ray: {p.phase}: {p.alive_nodes}/{p.expected_nodes} nodes, {p.gpus:g}/{p.expected_gpus:g} GPUs; {p.message}")

    try:
        return cluster.up(on_progress=progress)
    finally:
        line.end()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", "-i", default=str(SEED_INVENTORY), help="the inventory (default: the seed's)")
    ap.add_argument("--name", default="ck", help="cluster name: container ck-ray-NAME on every host")
    ap.add_argument("--models-dir", default="/mnt/Qwen", help="the model folder on every host, /models in the containers")
    ap.add_argument("--runtime", choices=["docker", "bare"], default=None, help="default: vars.runtime, else docker")
    ap.add_argument("--down", action="store_true", help="stop Ray and remove the containers on every host")
    a = ap.parse_args()

    inventory = ck.Inventory.load(a.inventory)
    cluster = seed_cluster(inventory, name=a.name, models_dir=a.models_dir, runtime=a.runtime)
    print(cluster, file=sys.stderr)
    try:
        if a.down:
            for d in cluster.down():
                print(f"{d.host:<10} {d.message}")
            return 0
        up = bring_up(cluster)
        for n in up.nodes:
            print(f"{n.host:<10} {n.action:<8} {n.message}")
        print(up.status.summary(), end="")
        print(f"{up.message} ({up.total_ms / 1000:.1f} s)", file=sys.stderr)
        return 0 if up.status.healthy else 1
    except ck.Error as e:
        print(f"error ({e.code}): {e}", file=sys.stderr)
        if isinstance(e.result, ck.RayUpResult):
            for n in e.result.nodes:
                if n.error is not None:
                    print(f"  {n.host}: {n.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: what started stays; --down removes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
