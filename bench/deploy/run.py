#!/usr/bin/env python3
"""The whole seed from nothing: `clusterkit up SPEC` against the hand
procedure of shared/seed/ (the peer), on the same lab, side by side in one
run, and the ratio of their times.

The hand procedure is what a person following the seed types, one command at
a time over plain ssh (a new connection each, as in a terminal): mount the
NAS on each host, download the model on the CPU host with the modelscope CLI,
rsync it into the NAS, `docker run` Ray's head and then its worker (vLLM's
run_cluster.sh, with the same image, volumes and environment clusterkit
uses, taken from `clusterkit --json plan`), `ray status` every POLL seconds
until each node's log says "Ray runtime started" (what run_cluster.sh's
terminal shows), `vllm serve` in the head's container, /v1/models
every POLL seconds until it answers, and one streamed chat. Both start from
the same state (nothing mounted, no model, no containers) and end at a
streamed answer; clusterkit also runs its preflight, verify and smoke test
(its benchmark is turned off here).

Needs root, the CLI, scripts/install-serving.sh (Docker, the Ray/vLLM venv)
and the hub CLIs; the lab (3 hosts, a NAS, Docker engines, SIMULATED GPUs)
and the SIMULATED hub (tests/fixtures/fake_hub.py) are made here and taken
down at the end.

    python3 bench/deploy/run.py                 # 1 round, hand polls every 5 s
    python3 bench/deploy/run.py --rounds 2 --poll 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "bench" / "out"
LAB = "ck"  # examples/deployments/lab.yaml names this lab's inventory
STATE = Path("/run/clusterkit/lab-ck")
HUB_HOST, HUB_PORT = "10.88.0.1", 8765
NAS_ADDRESS = "10.88.0.250"
MODEL_ID = "Qwen/Tiny2.5-4M-Instruct"
MODEL_DIR = "Qwen/Tiny2___5-4M-Instruct"
HAND_DOWNLOAD = "/var/tmp/hand-download"
HAND_CONTAINER = "node-hand"
MODELSCOPE = "/opt/ck-hubcli/bin/modelscope"  # scripts/install-deps.sh puts the hub CLIs there


def log(*a: object) -> None:
    print(*a, flush=True)


def sh(cmd: list[str], check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {shlex.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


class Lab:
    def __init__(self, ck: str) -> None:
        self.ck = ck
        self.hosts = {"h1": "10.88.0.11", "h2": "10.88.0.12", "h3": "10.88.0.13"}
        self.shm_before = set(os.listdir("/dev/shm"))  # what vLLM engines leave is removed against this

    def ssh(self, host: str, script: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """A new ssh connection per command, as a person's terminal."""
        return sh(["ssh", "-i", str(STATE / "id_ed25519"), "-o", f"UserKnownHostsFile={STATE / 'known_hosts'}",
                   "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{self.hosts[host]}", script],
                  check=check, timeout=timeout)

    def clean(self, spec: str) -> None:
        """Nothing of either side left: containers, mounts, the model, and
        the shared-memory files of the hand procedure's vLLM (`docker rm -f`
        kills it without its clean-up; the lab's hosts share this machine's
        /dev/shm, the containers run with --ipc host)."""
        sh([self.ck, "down", spec, "--remove-model", "--unmount-nas"], check=False)
        for h in ("h1", "h2"):
            self.ssh(h, f"docker rm -f {HAND_CONTAINER} >/dev/null 2>&1; true", check=False)
        # Only the NAS (fuse.sshfs) is unmounted: under it, each lab host's
        # /mnt is a private tmpfs that must stay (without it the host would
        # see the machine's own /mnt).
        nas_on_mnt = "[ \"$(findmnt -n -o FSTYPE /mnt | tail -n 1)\" = fuse.sshfs ]"
        self.ssh("h3", f"rm -rf {HAND_DOWNLOAD} /var/tmp/ck-download; if {nas_on_mnt}; then rm -rf /mnt/Qwen; fi", check=False)
        for h in self.hosts:
            self.ssh(h, f"if {nas_on_mnt}; then fusermount -u /mnt || umount -l /mnt; fi; true", check=False)
        # Both downloads land on the NAS export: empty it for a true start.
        sh(["rm", "-rf", str(STATE / "nas-export" / "Qwen")], check=False)
        for name in set(os.listdir("/dev/shm")) - self.shm_before:
            if "-cpushm_" in name or name.startswith("psm_"):
                Path("/dev/shm", name).unlink(missing_ok=True)


def hand_procedure(lab: Lab, plan: dict, serve_env: dict[str, str], poll: float) -> dict:
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t0, 2)
        log(f"  [hand {marks[name]:7.2f} s] {name}")

    steps = {s["step"]: s for s in plan["steps"]}
    # 1. the NAS on every host (the plan's own sshfs line for each)
    for c in steps["nas"]["commands"]:
        lab.ssh(c["host"], "mkdir -p /mnt && " + c["command"])
    mark("NAS mounted on h1, h2, h3")
    # 2. the CPU host downloads, then copies into the NAS
    lab.ssh("h3", f"MODELSCOPE_ENDPOINT=http://{HUB_HOST}:{HUB_PORT} {MODELSCOPE} download {MODEL_ID} "
                  f"--local-dir {HAND_DOWNLOAD}/{MODEL_DIR}")
    mark("downloaded on h3")
    lab.ssh("h3", f"mkdir -p /mnt/Qwen && rsync -a {HAND_DOWNLOAD}/{MODEL_DIR}/ /mnt/{MODEL_DIR}/")
    mark("copied into the NAS")
    # 3. Ray: run_cluster.sh's docker run on the head, then on the worker
    # The plan leaves what only a probe finds as placeholders; a person fills
    # them in: the node's address and its interface on the lab's bridge.
    values = {f"<{host}'s IP>": ip for host, ip in lab.hosts.items()}
    values.update({"<head IP>": lab.hosts["h1"], "<its interface>": "eth0"})

    def filled(word: str) -> str:
        if word.startswith("exec "):  # the `ray start` line the container runs, quoted again
            return "exec " + shlex.join(filled(w) for w in shlex.split(word[5:]))
        for placeholder, value in values.items():
            word = word.replace(placeholder, value)
        return word

    ray = {c["host"]: [filled(w) for w in shlex.split(c["command"])] for c in steps["ray"]["commands"]}
    for host in ("h1", "h2"):
        argv = ray[host]
        argv[argv.index("--name") + 1] = HAND_CONTAINER
        lab.ssh(host, shlex.join(argv) + " >/dev/null")
    mark("ray containers started")
    # What the seed's user watches: run_cluster.sh's terminal on each host
    # saying "Ray runtime started". (`ray status` itself crashed here inside
    # these containers, Ray 2.60.0 started with usage stats off:
    # AttributeError in get_cluster_metadata.)
    for host in ("h1", "h2"):
        while "Ray runtime started" not in lab.ssh(host, f"docker logs {HAND_CONTAINER} 2>&1", check=False).stdout:
            time.sleep(poll)
    mark("both Ray nodes say they run")
    # 4. vllm serve in the head's container, its log in a file
    serve = steps["serve"]["commands"][0]["command"].split("  (key:")[0]
    argv = shlex.split(serve)
    argv = argv[argv.index("exec") + 2:] if "exec" in argv else argv  # `docker exec NAME vllm serve ...`
    env = " ".join(f"-e {shlex.quote(k + '=' + v)}" for k, v in serve_env.items())
    lab.ssh("h1", f"docker exec -d {env} {HAND_CONTAINER} sh -c {shlex.quote('exec ' + shlex.join(argv) + ' > /tmp/hand-vllm.log 2>&1')}")
    mark("vllm serve started")
    url = f"http://{lab.hosts['h1']}:8000"
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                if r.status == 200 and b'"tiny"' in r.read():
                    break
        except OSError:
            pass
        time.sleep(poll)
    mark("/v1/models answers")
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "Who are you?"}],
                       "max_tokens": 32, "stream": True}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    # The whole answer, to its [DONE], as a person reads it and as
    # clusterkit's smoke test streams it (the same request). Before
    # 2026-12-06 this stopped at the first chunk (any() returns there), so
    # the hand's answer cost ~0.2 s against clusterkit's 4-9 s.
    chunks = 0
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            chunks += line.startswith(b"data: {")
            if line.strip() == b"data: [DONE]":
                break
    if not chunks:
        raise SystemExit("the hand procedure's chat streamed no answer")
    mark("a streamed answer")
    return {"total_s": round(time.monotonic() - t0, 2), "marks": marks}


def clusterkit_up(ck: str, spec: str) -> dict:
    t0 = time.monotonic()
    r = sh([ck, "up", spec], check=False, timeout=1800)
    total = round(time.monotonic() - t0, 2)
    if r.returncode != 0:
        raise SystemExit(f"clusterkit up failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    rec = json.loads((Path.home() / ".local/state/clusterkit/deployments/lab/record.json").read_text())
    serve = next(s for s in rec["steps"] if s["step"] == "serve")["detail"]
    return {"total_s": total, "record_total_s": round(rec["total_seconds"], 2), "own_s": round(rec["own_seconds"], 2),
            "engine_start_s": serve.get("engine_start_seconds"),
            "steps": {s["step"]: round(s["ended_s"] - s["started_s"], 2) for s in rec["steps"]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusterkit", default=str(REPO / "build-test" / "clusterkit"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between the hand procedure's checks (a person's loop)")
    args = ap.parse_args()
    ck = args.clusterkit
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab is network namespaces)")
    for tool in ("ssh", "rsync", "sshfs", MODELSCOPE, "/opt/ck-serve/bin/vllm"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run scripts/install-deps.sh and scripts/install-serving.sh")
    work = Path(tempfile.mkdtemp(prefix="ck-bench-deploy-"))
    hub = None
    lab = Lab(ck)
    results: list[dict] = []
    try:
        log("lab: 3 hosts, a NAS, Docker engines, 2 SIMULATED GPUs per GPU host")
        sh([ck, "lab", "up", "--hosts", "3", "--nas", "--docker", "--gpus", "2", "--roles", "head,worker,download"])
        os.environ["CLUSTERKIT_INVENTORY"] = str(STATE / "inventory.yaml")
        log("hub (SIMULATED): a small Qwen2 made here")
        sh(["/opt/ck-serve/bin/python3", str(REPO / "tests/fixtures/make_tiny_qwen2.py"), str(work / "made")])
        (work / "hub/Qwen").mkdir(parents=True)
        shutil.move(str(work / "made" / MODEL_DIR), str(work / "hub/Qwen/Tiny2.5-4M-Instruct"))
        hub_log = open(work / "hub.log", "w")
        hub = subprocess.Popen([sys.executable, str(REPO / "tests/fixtures/fake_hub.py"), "--root", str(work / "hub"),
                                "--host", HUB_HOST, "--port", str(HUB_PORT)], stdout=hub_log, stderr=subprocess.STDOUT)
        for _ in range(100):
            if '"port"' in (work / "hub.log").read_text():
                break
            time.sleep(0.1)
        # The spec, with clusterkit's benchmark off (the hand procedure has none).
        text = (REPO / "examples/deployments/lab.yaml").read_text()
        text = text.replace("checks:\n  bench: {requests: 16, concurrency: 4, max_tokens: 16}", "checks:\n  bench: {requests: 0}")
        spec = str(work / "lab.yaml")
        Path(spec).write_text(text)
        plan = json.loads(sh([ck, "--json", "plan", spec]).stdout)
        # The spec's serve env, and Ray's address (Ray's temp dir is not the
        # default one, so `vllm serve` would not find the cluster by itself).
        serve_env = {"OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                     "RAY_ADDRESS": "10.88.0.11:6379"}
        for rnd in range(1, args.rounds + 1):
            lab.clean(spec)
            log(f"round {rnd}: the hand procedure (polls every {args.poll:g} s)")
            hand = hand_procedure(lab, plan, serve_env, args.poll)
            lab.clean(spec)
            log(f"round {rnd}: clusterkit up")
            ours = clusterkit_up(ck, spec)
            log(f"  clusterkit up: {ours['total_s']} s, own part {ours['own_s']} s")
            lab.clean(spec)
            results.append({"round": rnd, "hand": hand, "clusterkit": ours,
                            "ratio": round(ours["total_s"] / hand["total_s"], 3)})
    finally:
        try:
            lab.clean(str(work / "lab.yaml"))  # `clusterkit down` first, then the rest
        except Exception as e:  # the lab goes down below in any case
            log(f"clean-up: {e}")
        if hub:
            hub.terminate()
            hub.wait()
        sh([ck, "lab", "down"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    info = {"date": stamp, "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "poll_s": args.poll, "rounds": results}
    (OUT_DIR / f"deploy-{stamp}.json").write_text(json.dumps(info, indent=2))
    log("")
    log(f"| round | hand procedure (s) | clusterkit up (s) | ratio | clusterkit's own part (s) | engine start (s) |")
    log("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        log(f"| {r['round']} | {r['hand']['total_s']} | {r['clusterkit']['total_s']} | {r['ratio']} | "
            f"{r['clusterkit']['own_s']} | {r['clusterkit']['engine_start_s']} |")
    if results:
        log(f"median ratio clusterkit / hand: {statistics.median(r['ratio'] for r in results):.3f} "
            f"(hand polls every {args.poll:g} s; written to {OUT_DIR / f'deploy-{stamp}.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
