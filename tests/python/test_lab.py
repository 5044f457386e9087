"""The lab: real sshd hosts in network namespaces (root only).

One lab ("tpy", 10.88.9.0/24) for the whole module, always taken down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import clusterkit as ck

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the lab needs root (network namespaces)"
)

LAB = "tpy"
SUBNET = "10.88.9"


@pytest.fixture(scope="module")
def lab() -> Iterator[ck.LabStatus]:
    status = None
    try:
        status = ck.lab_up(hosts=2, name=LAB, subnet=SUBNET)
        yield status
    finally:
        if status is not None and status.inventory_path:
            try:
                for host in ck.Inventory.load(status.inventory_path).hosts_for():
                    host.disconnect()
            except ck.Error:
                pass
        ck.lab_down(LAB)
        assert not ck.lab_status(LAB).exists


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
        assert r.success, r.stderr
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
    assert all(o.success for o in outcomes), [o.result.diagnostic for o in outcomes]
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
