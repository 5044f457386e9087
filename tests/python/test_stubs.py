"""The .pyi stub of clusterkit._core lists exactly what the module has, with
the same signatures: the names below, mypy's stubtest (members, their kinds,
classes), and the signatures pybind11 writes into the docstrings
(stub_signatures.py: stubtest cannot see into pybind11's functions)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stub_signatures

import clusterkit
from clusterkit import _core

ALLOWLIST = Path(__file__).with_name("stubtest-allowlist.txt")


def stub_tree() -> ast.Module:
    path = Path(clusterkit.__file__).with_name("_core.pyi")
    return ast.parse(path.read_text(), filename=str(path))


def public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def defined_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_module_names_match_the_stub() -> None:
    in_stub = public(defined_names(stub_tree().body))
    in_module = public(set(dir(_core)))
    assert in_module - in_stub == set(), "missing from _core.pyi"
    assert in_stub - in_module == set(), "in _core.pyi but not in the module"


def test_class_members_match_the_stub() -> None:
    classes = {n.name: n for n in stub_tree().body if isinstance(n, ast.ClassDef)}
    assert classes
    for name, node in classes.items():
        cls = getattr(_core, name)
        in_stub = public(defined_names(node.body))
        if issubclass(cls, BaseException):
            # Instance attributes of a Python exception class are set in __init__;
            # those of its builtin bases (OSError's errno, ...) and of its bases
            # in the stub are accounted for there.
            instance = cls("m", "timed_out")
            builtin: set[str] = set()
            stubbed: set[str] = set()
            for base in cls.__mro__[1:]:
                if base.__module__ == "builtins":
                    builtin |= set(dir(base))
                elif base.__name__ in classes:
                    stubbed |= defined_names(classes[base.__name__].body)
            in_module = public(set(dir(instance))) - public(builtin)
            assert in_module - in_stub - stubbed == set(), f"{name}: missing from _core.pyi"
            assert in_stub - in_module == set(), f"{name}: in _core.pyi but not in the module"
            continue
        else:
            in_module = public(set(dir(cls)))
        assert in_module - in_stub == set(), f"{name}: missing from _core.pyi"
        assert in_stub - in_module == set(), f"{name}: in _core.pyi but not in the module"


def test_package_exports_exist() -> None:
    for name in clusterkit.__all__:
        assert hasattr(clusterkit, name), name
    assert (Path(clusterkit.__file__).parent / "py.typed").exists()


def test_stubtest_finds_nothing_but_the_allowlisted_pybind11_differences(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy (for stubtest) is not installed for this python: run scripts/install-deps.sh", pytrace=False)
    package_parent = str(Path(clusterkit.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "mypy.stubtest", "clusterkit._core", "--concise",
                        "--allowlist", str(ALLOWLIST)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, (
        f"stubtest found differences between _core.pyi and the module (a new class's pybind11-only lines go "
        f"into {ALLOWLIST.name}, see its top):\n{p.stdout}{p.stderr}")


def test_mypy_accepts_the_package_and_refuses_a_string_for_argv(tmp_path: Path) -> None:
    """The package and its examples type-check; `host.run("hostname")` does
    not (a str is a Sequence of str: the stubs take a list or a tuple)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed for this python: run scripts/install-deps.sh", pytrace=False)
    package_parent = Path(clusterkit.__file__).resolve().parent.parent
    use = tmp_path / "use.py"
    use.write_text(
        "from pathlib import Path\n"
        "import clusterkit as ck\n"
        "h = ck.Host(ck.HostSpec.local_machine('me'))\n"
        "cmd: list[str] = ['echo', 'x']\n"
        "h.run(cmd)\n"
        "h.run(['echo', Path('/tmp')])\n"
        "h.run(('echo', 'y'))\n"
        "ck.run_on_hosts([h], ['true'])\n"
        "h.run('hostname')  # line 9: refused\n")
    env = dict(os.environ, MYPYPATH=str(package_parent))
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                        str(use)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in p.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "use.py:9:" in errors[0] and '"str"' in errors[0], p.stdout + p.stderr
    examples = sorted(str(f) for f in (Path(__file__).parents[2] / "examples" / "python").glob("*.py"))
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                        str(package_parent / "clusterkit"), *examples], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_signatures_match_the_docstrings() -> None:
    stub = Path(clusterkit.__file__).with_name("_core.pyi").read_text()
    problems = stub_signatures.check(_core, stub)
    assert problems == [], "_core.pyi and the bindings disagree:\n" + "\n".join(problems)


def test_the_signature_check_has_teeth() -> None:
    """A stub with a renamed parameter, a changed default or type, a parameter
    made positional: each is found."""
    stub = Path(clusterkit.__file__).with_name("_core.pyi").read_text()
    for before, after in [
        ("    concurrency: int = 64,\n", "    concurrenzy: int = 64,\n"),
        ("    concurrency: int = 64,\n", "    concurrency: int = 32,\n"),
        ("    fail_fast: bool = False,\n", "    fail_fast: str = \"\",\n"),
        (") -> list[HostOutcome]: ...", ") -> list[RunResult]: ..."),
        ("    def stdout_truncated(self) -> bool: ...", "    def stdout_truncated(self) -> str: ..."),
        ("def run_on_hosts(\n    hosts: Sequence[Host],\n    argv: _Argv | None = None,\n    *,\n",
         "def run_on_hosts(\n    hosts: Sequence[Host],\n    argv: _Argv | None = None,\n"),
    ]:
        assert before in stub, before
        assert stub_signatures.check(_core, stub.replace(before, after, 1)), after


def test_every_class_has_a_repr_of_its_own() -> None:
    # A default repr (<clusterkit._core.X object at 0x...>) says nothing in a
    # log or a REPL (issue 14).
    missing = [
        name
        for name in dir(_core)
        if isinstance(getattr(_core, name), type)
        and not issubclass(getattr(_core, name), BaseException)
        and not name.startswith("_")
        and "__repr__" not in getattr(_core, name).__dict__
    ]
    assert missing == []


def test_the_module_says_its_version() -> None:
    # The same version as the CLI's --version and pyproject.toml (issue 14).
    import re

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    version = re.search(r'^version = "(.*)"$', text, re.M)
    assert version is not None
    assert clusterkit.__version__ == version.group(1)
