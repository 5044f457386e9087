"""The Python API's fuzz run (tests/python/fuzz_api.py) in a child process:
a crash by signal fails this test naming it, rather than ending pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_every_parser_and_settings_check_takes_hostile_input_without_crashing() -> None:
    script = Path(__file__).with_name("fuzz_api.py")
    per_input = os.environ.get("CK_FUZZ_API_MUTATIONS", "150")
    p = subprocess.run([sys.executable, str(script), per_input, "20261206"], capture_output=True, text=True, timeout=600)
    print(p.stdout[-3000:], p.stderr[-3000:])
    assert p.returncode == 0, f"fuzz_api.py exited {p.returncode}:\n{p.stdout[-5000:]}\n{p.stderr[-3000:]}"
    assert "fuzz_api: " in p.stdout and ", 0 failed" in p.stdout
