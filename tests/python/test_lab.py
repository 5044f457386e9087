"""The lab: real sshd hosts in network namespaces (root only).

One lab ("tlpy", 10.88.72.0/24) for most of the module and one with Docker
engines and simulated GPUs ("tlpyd", 10.88.73.0/24), each always taken down.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest
from labs import running_lab

import clusterkit as ck

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the lab needs root (network namespaces)"
)

LAB = "tlpy"
SUBNET = "10.88.72"
DOCKER_LAB = "tlpyd"
DOCKER_SUBNET = "10.88.73"
IMAGE = "clusterkit/lab-runtime:bookworm"


@pytest.fixture(scope="module")
def inventory(lab: ck.LabStatus) -> ck.Inventory:
    return lab.inventory()


def test_lab_status(lab: ck.LabStatus) -> None:
    assert isinstance(lab, ck.LabStatus)
    assert lab.exists and lab.name == LAB
    assert [h.name for h in lab.hosts] == ["h1", "h2"]
    assert [h.address for h in lab.hosts] == [f"{SUBNET}.11", f"{SUBNET}.12"]
    assert all(isinstance(h, ck.LabHostStatus) and h.running and h.sshd_pid > 0 for h in lab.hosts)
    assert all(h.netns for h in lab.hosts)
    for path in (lab.inventory_path, lab.identity_file, lab.known_hosts_file):
        assert os.path.exists(path), path
    now = ck.lab_status(LAB)
    assert now.exists and [h.sshd_pid for h in now.hosts] == [h.sshd_pid for h in lab.hosts]


def test_hostname_on_each_lab_host_through_the_inventory(inventory: ck.Inventory) -> None:
    assert [h.name for h in inventory.hosts] == ["h1", "h2"]
    for name in ("h1", "h2"):
        host = inventory.host(name)
        assert not host.spec.local
        r = host.run(["hostname"], timeout=30)
        assert r.ok, r.stderr
        assert r.stdout.strip() == name
        assert host.connection_alive()  # the shared connection stays up


def test_run_on_hosts_over_the_lab(inventory: ck.Inventory) -> None:
    lines: list[tuple[str, str, str]] = []
    outcomes = ck.run_on_hosts(
        inventory.hosts_for("all"),
        script='echo "$(hostname) $CK_MARK"',
        env={"CK_MARK": "py"},
        timeout=30,
        on_line=lambda h, s, line: lines.append((h, s, line)),
    )
    assert [o.host for o in outcomes] == ["h1", "h2"]
    assert all(o.ok for o in outcomes), [o.result.message for o in outcomes]
    assert [o.result.stdout for o in outcomes] == ["h1 py\n", "h2 py\n"]
    assert sorted(lines) == [("h1", "stdout", "h1 py"), ("h2", "stdout", "h2 py")]


def test_remote_timeout_kills_the_remote_process(inventory: ck.Inventory) -> None:
    host = inventory.host("h1")
    with pytest.raises(ck.Error) as e:
        host.run(script="sleep 30 & echo $!; wait", timeout=1)
    assert e.value.code == "timed_out"
    assert e.value.result is not None
    pid = e.value.result.stdout.split()[0]
    # The remote process group was stopped: the pid is gone on the host.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if host.run(["kill", "-0", pid]).exit_code != 0:
            break
        time.sleep(0.1)
    assert host.run(["kill", "-0", pid]).exit_code != 0


def test_remote_transfer_and_async(inventory: ck.Inventory, tmp_path: "os.PathLike[str]") -> None:
    import asyncio
    from pathlib import Path

    src = Path(tmp_path) / "payload"
    src.write_bytes(os.urandom(200_000))
    host = inventory.host("h2")
    up = host.upload(src, "/tmp/ck-py-payload")
    assert up.bytes == 200_000
    host.download("/tmp/ck-py-payload", Path(tmp_path) / "back")
    assert (Path(tmp_path) / "back").read_bytes() == src.read_bytes()

    async def both() -> list[ck.RunResult]:
        return list(await asyncio.gather(*(h.run_async(["hostname"]) for h in inventory.hosts_for())))

    assert [r.stdout.strip() for r in asyncio.run(both())] == ["h1", "h2"]


def test_upload_to_hosts_bounded_with_progress(inventory: ck.Inventory, tmp_path: "os.PathLike[str]") -> None:
    import hashlib
    from pathlib import Path

    src = Path(tmp_path) / "blob"
    src.write_bytes(os.urandom(500_000))
    seen: dict[str, int] = {}
    outcomes = ck.upload_to_hosts(
        inventory.hosts_for("all"),
        src,
        "/tmp/ck-py-fanout",
        concurrency=1,
        on_progress=lambda host, done, total: seen.__setitem__(host, total),
    )
    assert [o.host for o in outcomes] == ["h1", "h2"]
    assert all(isinstance(o, ck.TransferOutcome) and o.ok and o.error is None for o in outcomes)
    assert [o.result.bytes for o in outcomes] == [500_000, 500_000]
    assert seen == {"h1": 500_000, "h2": 500_000}
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    for h in inventory.hosts_for("all"):
        assert h.run(["sha256sum", "/tmp/ck-py-fanout"]).stdout.split()[0] == digest

    missing = ck.upload_to_hosts(inventory.hosts_for("all"), Path(tmp_path) / "nope", "/tmp/ck-py-nope", fail_fast=True)
    assert not missing[0].ok and isinstance(missing[0].error, ck.Error)
    assert "nope" in missing[0].result.message
    with pytest.raises(ValueError, match="concurrency"):
        ck.upload_to_hosts(inventory.hosts_for("all"), src, "/tmp/x", concurrency=0)


# --- Docker engines, simulated GPUs and roles -------------------------------


def _docker_missing() -> str:
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    missing = [p for p in ("dockerd", "containerd", "debootstrap") if shutil.which(p, path=path) is None]
    if not os.access("/opt/ck-serve/bin/python3", os.X_OK):
        missing.append("/opt/ck-serve")
    if not missing:
        return ""
    return ", ".join(missing) + " not installed: run scripts/install-serving.sh"


@pytest.fixture(scope="module")
def docker_lab() -> Iterator[ck.LabStatus]:
    # A missing component is a failure, not a skip: the test would prove nothing.
    missing = _docker_missing()
    if missing:
        pytest.fail(missing)
    with running_lab(DOCKER_LAB, DOCKER_SUBNET, hosts=2, docker=True, gpus=2, roles=["head", "download"]) as status:
        yield status


def test_docker_lab_status(docker_lab: ck.LabStatus) -> None:
    lab = docker_lab
    assert lab.docker and lab.gpus == 2 and lab.runtime_image == IMAGE
    assert [(h.name, h.role, h.gpus) for h in lab.hosts] == [("h1", "head", 2), ("h2", "download", 0)]
    for h in lab.hosts:
        assert h.docker and h.docker_running and h.dockerd_pid > 0 and h.dockerd_pid != h.sshd_pid
        assert h.docker_host == f"unix://{lab.state_dir}/docker-{h.name}.sock"
    now = ck.lab_status(DOCKER_LAB)
    assert [h.dockerd_pid for h in now.hosts] == [h.dockerd_pid for h in lab.hosts]
    # Same shape: left alone.
    again = ck.lab_up(hosts=2, name=DOCKER_LAB, subnet=DOCKER_SUBNET, docker=True, gpus=2, roles=["head", "download"])
    assert [h.dockerd_pid for h in again.hosts] == [h.dockerd_pid for h in lab.hosts]


def test_docker_lab_inventory_declares_simulated_gpus(docker_lab: ck.LabStatus) -> None:
    inv = docker_lab.inventory()
    h1, h2 = inv.find("h1"), inv.find("h2")
    assert h1 is not None and h2 is not None
    assert h1.roles == ["head"] and h2.roles == ["download"]
    assert h1.extra["gpus"] == {"count": 2, "model": "NVIDIA L20", "memory_gib": 48, "simulated": True}
    assert "gpus" not in h2.extra
    assert h1.extra["vars"]["runtime_image"] == IMAGE
    assert h1.extra["vars"]["serve_venv"] == "/opt/ck-serve"
    with open(docker_lab.inventory_path) as f:
        assert "SIMULATED" in f.read()


def test_docker_over_ssh_is_the_hosts_own_engine(docker_lab: ck.LabStatus) -> None:
    inv = docker_lab.inventory()
    h1, h2 = inv.host("h1"), inv.host("h2")
    version = h1.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=60)
    assert version.ok, version.stderr
    assert version.stdout.startswith("20.10")
    r = h1.run(["docker", "run", "--rm", "--network", "host", IMAGE, "sh", "-c", "hostname; ip -o -4 addr"], timeout=60)
    assert r.ok, r.stderr
    assert r.stdout.splitlines()[0] == "h1"
    assert f"inet {DOCKER_SUBNET}.11/24" in r.stdout
    ids = {h.run(["docker", "info", "--format", "{{.ID}}"], timeout=60).stdout for h in (h1, h2)}
    assert len(ids) == 2
    gpus = h2.run(["docker", "run", "--rm", "--gpus", "all", IMAGE, "true"], timeout=60)
    assert not gpus.ok
    assert 'could not select device driver "" with capabilities: [[gpu]]' in gpus.stderr


def test_lab_roles_are_checked() -> None:
    with pytest.raises(ck.Error) as e:
        ck.lab_up(hosts=2, name="tlpyx", subnet="10.88.74", gpus=1, roles=["head", "wroker"])
    assert e.value.code == "invalid_argument"
    assert "did you mean" in str(e.value)
    with pytest.raises(TypeError):
        ck.lab_up(hosts=2, name="tlpyx", subnet="10.88.74", roles="head,worker")  # type: ignore[arg-type]
    assert not ck.lab_status("tlpyx").exists


def test_lab_up_ctrl_c_stops_the_step_and_leaves_nothing() -> None:
    """Ctrl-C while lab_up waits for the hosts: KeyboardInterrupt once what it
    made (namespaces, bridge, veths, state folder) is gone again. An `sshd`
    that never answers (first on PATH) holds lab_up in that wait."""
    import signal
    import subprocess
    import sys
    import tempfile

    name, subnet = "tlpyc", "10.88.75"
    # Not under /tmp: each lab host has a private /tmp and would not see it.
    fake_bin = tempfile.mkdtemp(prefix="ck-test-fake-sshd-", dir="/run")
    sshd = os.path.join(fake_bin, "sshd")
    with open(sshd, "w") as f:
        f.write("#!/bin/sh\nexec sleep 60\n")
    os.chmod(sshd, 0o755)
    env = dict(os.environ, PATH=fake_bin + ":" + os.environ.get("PATH", ""), PYTHONPATH=":".join(sys.path))
    code = (
        "import clusterkit as ck, time\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    ck.lab_up(hosts=2, name={name!r}, subnet={subnet!r})\n"
        "    print('came up')\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )

    def ours() -> list[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(f"ck-{name}-")]

    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ours() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ours(), f"lab_up never made its namespaces: {proc.communicate(timeout=30)}"
        time.sleep(0.3)  # its hosts are starting; their sshd never answers
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - asked
        assert out.strip() == "KeyboardInterrupt", (out, err)
        assert took < 10, f"the stop took {took:.1f} s"
        assert ours() == []
        assert not os.path.exists(f"/sys/class/net/ckbr-{name}")
        assert not os.path.exists(f"/run/clusterkit/lab-{name}")
        status = ck.lab_status(name)
        assert not status.exists and status.hosts == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ck.lab_down(name)
        shutil.rmtree(fake_bin, ignore_errors=True)


def test_http_request_beside_a_host_command_completes(inventory: ck.Inventory) -> None:
    """An OpenAIClient request started beside a host's command must end.
    Boost.Process stops Asio's resolver thread around every fork; a name
    lookup queued just then waited for good (a deployment's status hung,
    2026-12-05). Both an address and a name (localhost), 6 rounds each."""
    import asyncio
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def rounds(url: str) -> list[float]:
        took = []
        for _ in range(6):
            client = ck.OpenAIClient(url, max_retries=0, connect_timeout=3)
            host = inventory.host("h1")
            started = time.monotonic()

            async def health() -> str:
                try:
                    await client.health_async()
                    return "answered"
                except ck.OpenAIError as e:
                    return e.code

            got, ran = await asyncio.wait_for(asyncio.gather(health(), host.run_async(["true"])), 20)
            assert got == "connection_refused" and ran.ok
            took.append(time.monotonic() - started)
        return took

    for url in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        took = asyncio.run(rounds(url))
        assert max(took) < 5, (url, took)
