"""One way to hold a lab for a test module: up, yielded, always taken down
(connections closed first), and checked gone. Used by conftest's `lab`
fixture and by the modules that need a lab of another shape."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from components import require_root

import clusterkit as ck


@contextlib.contextmanager
def running_lab(name: str, subnet: str, **options: Any) -> Iterator[ck.LabStatus]:
    require_root()
    status = None
    try:
        status = ck.lab_up(name=name, subnet=subnet, **options)
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
