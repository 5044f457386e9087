#!/usr/bin/env python3
"""The whole seed from Python: Qwen2.5-72B-Instruct on two servers with 2x L20
each (Ray head gpu1, worker gpu2, in Docker), downloaded on the CPU server cpu1
and copied into the NAS at /mnt, served by `vllm serve` with TP 2 x PP 2 as
qwen2.5-72b-instruct on port 8000, smoke-tested and benchmarked: one spec
(examples/deployments/qwen72b-two-node.yaml), one call.

    python3 examples/python/qwen72b_two_node.py            # the plan: every step and command, nothing changed
    python3 examples/python/qwen72b_two_node.py --up       # deploy (idempotent, resumable: run it again after a failure)
    python3 examples/python/qwen72b_two_node.py --status   # every layer: NAS, model, Ray nodes, the engine
    python3 examples/python/qwen72b_two_node.py --down     # remove the engine, Ray and the containers (NAS and model stay)
    python3 examples/python/qwen72b_two_node.py --spec examples/deployments/lab.yaml --up   # the same on the lab

The calls block with the GIL released; Ctrl-C stops the commands on the hosts
(`--up` again picks up where it stopped). A failure raises clusterkit.Error with
the run's record as its .result. The same in C++: examples/qwen72b_two_node.cpp;
through the CLI: `clusterkit plan|up|status|down SPEC`.

examples/deployments/lab.yaml runs the same steps on the project's lab, where
the GPUs (2 per host, Ray's logical GPUs; vLLM's CPU build) and the model hub
(a local fake serving a tiny Qwen2) are SIMULATED; the record and the summary
say so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import clusterkit as ck

SEED_SPEC = Path(__file__).resolve().parents[1] / "deployments" / "qwen72b-two-node.yaml"


def show(p: ck.DeploymentProgress) -> None:
    """One line per step per host, as they happen."""
    print(f"[{p.elapsed_seconds:6.1f}s] {p.step:<9} {p.host:<6} {p.status:<8} {p.message}", file=sys.stderr, flush=True)


def describe(d: ck.Deployment) -> str:
    s = d.spec
    tp = s.serve.tensor_parallel or "auto"
    pp = s.serve.pipeline_parallel or "auto"
    return (
        f"deployment {s.name}: {s.model.id} on {s.head} (head) + {len(s.workers)} worker(s), "
        f"TP {tp} x PP {pp}, downloaded on {d.download_host or '(nowhere: already there)'}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(SEED_SPEC), help="the deployment spec (default: the seed's)")
    action = ap.add_mutually_exclusive_group()
    action.add_argument("--plan", action="store_true", help="a dry run: every step and command (the default)")
    action.add_argument("--up", action="store_true", help="deploy")
    action.add_argument("--status", action="store_true", help="every layer of the deployment")
    action.add_argument("--down", action="store_true", help="remove the engine, Ray and the containers")
    ap.add_argument("--unmount-nas", action="store_true", help="with --down: also unmount the NAS on every host")
    ap.add_argument("--remove-model", action="store_true", help="with --down: also delete the model folder on the NAS and the download host's copy")
    a = ap.parse_args()

    try:
        # Every mistake of the spec at once (file:line:column; did you mean ...), before anything starts.
        d = ck.Deployment.from_file(a.spec)
        print(describe(d), file=sys.stderr)
        if a.up:
            record = d.up(on_progress=show)
            print(record.summary(), end="")
            print(f"record:    {d.record_path}")
            return 0
        if a.status:
            st = d.status()
            print(st.summary(), end="")
            return 0 if st.state == "up" else 1
        if a.down:
            result = d.down(unmount_nas=a.unmount_nas, remove_model=a.remove_model)
            for x in result.removed:
                print(f"removed: {x}")
            return 0
        print(d.plan().text(), end="")
        return 0
    except ck.Error as e:
        print(f"error ({e.code}): {e}", file=sys.stderr)
        if isinstance(e.result, ck.DeploymentRecord):
            # What ran and what failed, step by step (the record is saved as well).
            print(e.result.summary(), end="", file=sys.stderr)
        elif isinstance(e.result, ck.DeploymentDownResult):
            for x in e.result.problems:
                print(f"problem: {x}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: what started stays; --up resumes, --down removes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
