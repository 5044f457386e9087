"""Fixtures shared by the Python tests.

`local`: a Host on this machine (no ssh). `lab`: a lab of real sshd hosts in
network namespaces for the whole module (root only), named by the module's
LAB and SUBNET (and LAB_HOSTS, default 2), always taken down. Helpers for
waiting are in waiting.py, the real components' whereabouts in components.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from components import require_root

import clusterkit as ck


@pytest.fixture
def local() -> ck.Host:
    return ck.Host(ck.HostSpec.local_machine("me"))


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[ck.LabStatus]:
    require_root()
    name: str = request.module.LAB
    subnet: str = request.module.SUBNET
    status = None
    try:
        status = ck.lab_up(hosts=getattr(request.module, "LAB_HOSTS", 2), name=name, subnet=subnet)
        yield status
    finally:
        if status is not None and status.inventory_path:
            try:
                for host in ck.Inventory.load(status.inventory_path).hosts_for():
                    host.disconnect()
            except ck.Error:
                pass
        ck.lab_down(name)
        assert not ck.lab_status(name).exists
