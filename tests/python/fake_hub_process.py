"""tests/fixtures/fake_hub.py in a subprocess on 127.0.0.1, and the test model
it serves (tests/fixtures/make_test_model.py), for the Python tests.

A local stand-in for the Hugging Face and ModelScope hubs (SIMULATED; it binds
127.0.0.1 only and calls out nowhere), on a free port, stopped by its pid.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from waiting import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load_make_test_model() -> Any:
    spec = importlib.util.spec_from_file_location("ck_make_test_model", FIXTURES / "make_test_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_test_model


#: make_test_model(path, total_mb=..., shards=..., seed=...) -> {relative path: sha256}
make_test_model = _load_make_test_model()


class FakeHub:
    """`with FakeHub(root, work, *extra_args) as hub:` ... `hub.url`, `hub.requests()`."""

    def __init__(self, root: Path, work: Path, *args: str) -> None:
        stamp = time.monotonic_ns()
        self.port_file = work / f"port-{stamp}"
        self.log = work / f"requests-{stamp}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(FIXTURES / "fake_hub.py"), "--root", str(root), "--host", "127.0.0.1",
             "--port", "0", "--port-file", str(self.port_file), "--log", str(self.log), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # The port file is complete once it ends with a newline.
        def started() -> bool:
            return self.port_file.exists() and self.port_file.read_text().endswith("\n")

        if not wait_until(lambda: started() or self.proc.poll() is not None, 15) or not started():
            if self.proc.poll() is None:
                self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"fake hub did not start: {err.decode(errors='replace')}")
        self.port = int(self.port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # by its pid (Popen), never by name
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self) -> list[dict[str, Any]]:
        """The hub's log: one dict per request (see fake_hub.py --log)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
