"""The .pyi stub of clusterkit._core lists exactly what the module has."""

from __future__ import annotations

import ast
from pathlib import Path

import clusterkit
from clusterkit import _core


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
            # Instance attributes of a Python exception class are set in __init__.
            instance = cls("m", "timed_out")
            in_module = public(set(dir(instance))) - public(set(dir(Exception)))
        else:
            in_module = public(set(dir(cls)))
        assert in_module - in_stub == set(), f"{name}: missing from _core.pyi"
        assert in_stub - in_module == set(), f"{name}: in _core.pyi but not in the module"


def test_package_exports_exist() -> None:
    for name in clusterkit.__all__:
        assert hasattr(clusterkit, name), name
    assert (Path(clusterkit.__file__).parent / "py.typed").exists()
