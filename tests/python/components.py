"""Where the tests' real components are, and the one line that installs each.

A test whose component is missing FAILS and names that line: a skip would let
a machine without the component pass the suite without testing anything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What scripts/install-deps.sh installs: the pinned hub CLIs, in a venv of their own.
HUB_CLI_BIN = Path(os.environ.get("CLUSTERKIT_HUB_CLI_BIN") or "/opt/ck-hubcli/bin")


def simulator() -> str:
    """llm-d-inference-sim (a vLLM simulator): $CLUSTERKIT_SIM, then PATH, then where
    scripts/install-sim.sh puts it."""
    env = os.environ.get("CLUSTERKIT_SIM")
    candidates = [env] if env else []
    candidates += [shutil.which("llm-d-inference-sim"), "/usr/local/bin/llm-d-inference-sim",
                   str(ROOT / "tools/bin/llm-d-inference-sim")]
    for p in candidates:
        if p and os.access(p, os.X_OK):
            return p
    pytest.fail("llm-d-inference-sim (a vLLM simulator) not found: run scripts/install-sim.sh", pytrace=False)


def hub_cli(name: str) -> Path:
    """A hub CLI (hf, modelscope) of the pinned versions in $CLUSTERKIT_HUB_CLI_BIN
    (default /opt/ck-hubcli/bin)."""
    path = HUB_CLI_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"`{name}` not found in {HUB_CLI_BIN}: run scripts/install-deps.sh "
                    "(or point CLUSTERKIT_HUB_CLI_BIN at a folder holding it)", pytrace=False)
    return path


def require_root() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces): run the tests as root (sudo scripts/test.sh)",
                    pytrace=False)
