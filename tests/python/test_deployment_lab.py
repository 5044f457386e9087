"""The whole seed through the Python API, for real, as a user runs it:
examples/python/qwen72b_two_node.py with examples/deployments/lab.yaml on a lab
of the README's shape (h1 head and h2 worker with 2 SIMULATED GPUs each, h3
downloads, a NAS host, a Docker engine per host), the model made here and
served by tests/fixtures/fake_hub.py (the SIMULATED hub) to the real
modelscope CLI. Plan, up (real Ray in Docker, real vLLM CPU with TP 2 x PP 2,
a streamed answer, a benchmark), up again (a quick look), status, down.

A missing component (Docker, Ray, vLLM's CPU build, the hub CLI) fails the
test naming the install step; nothing is skipped."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub_process import FakeHub
from labs import running_lab
from pickles import assert_pickles

import clusterkit as ck

LAB = "tpdl"
SUBNET = "10.88.64"
VENV = "/opt/ck-serve"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python" / "qwen72b_two_node.py"
DOWNLOADED = "/var/tmp/ck-download/Qwen/Tiny2___5-4M-Instruct"


def _missing() -> str:
    path = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin"
    missing = [p for p in ("docker", "dockerd", "containerd", "debootstrap", "sshfs") if shutil.which(p, path=path) is None]
    if not os.access(f"{VENV}/bin/vllm", os.X_OK) or not glob.glob(f"{VENV}/lib/python3*/site-packages/ray-2.60.0.dist-info"):
        missing.append(f"Ray 2.60.0 and vLLM's CPU build in {VENV}")
    if not (os.access("/opt/ck-hubcli/bin/modelscope", os.X_OK) or shutil.which("modelscope")):
        missing.append("the modelscope CLI")
    return ", ".join(missing) + " not installed: run scripts/install-serving.sh (as root)" if missing else ""


@pytest.fixture(scope="module")
def lab() -> Iterator[ck.LabStatus]:
    missing = _missing()
    if missing:
        pytest.fail(missing)
    with running_lab(LAB, SUBNET, hosts=3, nas=True, docker=True, gpus=2, roles=["head", "worker", "download"]) as status:
        yield status


def test_the_python_example_deploys_the_seed_on_the_lab(lab: ck.LabStatus, tmp_path: Path) -> None:
    # The SIMULATED hub on the lab's bridge, serving the tiny Qwen2 made here.
    made = tmp_path / "made"
    subprocess.run([f"{VENV}/bin/python3", str(ROOT / "tests" / "fixtures" / "make_tiny_qwen2.py"), str(made)], check=True,
                   capture_output=True, timeout=300)
    (tmp_path / "hub" / "Qwen").mkdir(parents=True)
    (made / "Qwen" / "Tiny2___5-4M-Instruct").rename(tmp_path / "hub" / "Qwen" / "Tiny2.5-4M-Instruct")
    inventory = lab.inventory()
    h1, h2, h3 = inventory.host("h1"), inventory.host("h2"), inventory.host("h3")
    spec = tmp_path / "pylab.yaml"
    env = {**os.environ, "PYTHONPATH": str(Path(ck.__file__).resolve().parents[1])}

    def example(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(EXAMPLE), "--spec", str(spec), *args], env=env,
                              capture_output=True, text=True, timeout=1200)

    hub = FakeHub(tmp_path / "hub", tmp_path, "--host", f"{SUBNET}.1")
    try:
        # examples/deployments/lab.yaml as written, with this lab's inventory
        # and hub, its own name and state folder, and a shorter benchmark.
        text = (ROOT / "examples" / "deployments" / "lab.yaml").read_text()
        for old, new in [
            ("\nname: lab\n", "\nname: pylab\n"),
            ("inventory: /run/clusterkit/lab-ck/inventory.yaml", f"inventory: {lab.inventory_path}"),
            ("endpoint: http://10.88.0.1:8765", f"endpoint: http://{SUBNET}.1:{hub.port}"),
            ("bench: {requests: 16, concurrency: 4, max_tokens: 16}", "bench: {requests: 8, concurrency: 4, max_tokens: 8}"),
        ]:
            assert old in text, f"examples/deployments/lab.yaml changed: {old!r} is gone; update this test with it"
            text = text.replace(old, new)
        spec.write_text(text + f"state_dir: {tmp_path / 'state'}\n")
        assert h3.run(["rm", "-rf", DOWNLOADED], timeout=60).ok
        plan = example()
        assert plan.returncode == 0, plan.stderr
        assert plan.stdout.startswith("1. preflight: ") and "nothing was changed" in plan.stdout, plan.stdout

        up = example("--up")
        assert up.returncode == 0, up.stdout + up.stderr
        # The summary a user reads: every step, the endpoint, the key's file,
        # a chat line, what is simulated; the progress went to stderr.
        for said in ("deployment 'pylab': up", "endpoint:  http://", "api key:", "try:       clusterkit chat",
                     "SIMULATED: GPUs", "record:    "):
            assert said in up.stdout, (said, up.stdout)
        assert " ray " in up.stderr and " h2 " in up.stderr and " serve " in up.stderr, up.stderr
        record = ck.load_deployment_record(ck.load_deployment_spec(spec))
        assert record is not None and record.status == "up"
        assert (record.layout["tp"], record.layout["pp"]) == (2, 2)
        assert record.smoke["ok"] and record.bench["ok"] == 8, (record.smoke, record.bench)

        again = example("--up")
        assert again.returncode == 0 and "already up" in again.stdout, again.stdout + again.stderr

        status = example("--status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith("deployment 'pylab': up\n") and "2/2 nodes alive" in status.stdout, status.stdout

        # The same look in this process: every host first, with its roles,
        # and the whole status survives a pickle (for Ray and pool users).
        seen = ck.Deployment.from_file(spec).status()
        assert seen.state == "up", seen.problems
        assert {h.host: h.roles for h in seen.hosts} == {"h1": ["head"], "h2": ["worker"], "h3": ["download"]}
        assert all(h.reachable and h.uptime_seconds > 0 and h.load for h in seen.hosts), seen.hosts
        assert "  host h1 (head): answered in " in seen.summary()
        assert_pickles(seen)
    finally:
        down = example("--down") if spec.exists() else None
        hub.stop()
        # The whole download folder: the machine's /var/tmp (lab hosts share it).
        h3.run(["rm", "-rf", str(Path(DOWNLOADED).parents[1])], timeout=60)
    assert down is not None and down.returncode == 0, down and down.stdout + down.stderr
    assert "removed: engine" in down.stdout, down.stdout
    for host in (h1, h2):
        left = host.run(["docker", "ps", "-a", "-q"], timeout=60)
        assert left.ok and left.stdout == "", left.stdout
