"""Fixtures shared by the Python tests.

`local`: a Host on this machine (no ssh). `lab`: a lab of real sshd hosts in
network namespaces for the whole module (root only), named by the module's
LAB and SUBNET (and LAB_HOSTS, default 2), always taken down. Helpers for
waiting are in waiting.py, the real components' whereabouts in components.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from labs import running_lab

import clusterkit as ck


@pytest.fixture
def local() -> ck.Host:
    return ck.Host(ck.HostSpec.local_machine("me"))


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[ck.LabStatus]:
    with running_lab(request.module.LAB, request.module.SUBNET, hosts=getattr(request.module, "LAB_HOSTS", 2)) as status:
        yield status
