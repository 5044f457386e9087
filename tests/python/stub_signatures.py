"""Compare the signatures in clusterkit/_core.pyi with the ones pybind11 writes
into each function's docstring (``name(a: int, *, b: str = 'x') -> T``).

mypy's stubtest (tests/python/test_stubs.py runs it too) checks names, classes
and kinds of members, but cannot see into pybind11's functions: they carry no
``__text_signature__``, so stubtest silently accepts any parameter list. This
check reads the docstrings instead and compares, per function and overload:
parameter names and their order, which are keyword-only, which have defaults
(and the default values, where the stub gives one), and the types where the
binding's are precise (bool, int, float, str, clusterkit classes; a binding
that takes `object` checks the type itself, so any stub type is accepted).
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

_ABSENT = object()


@dataclass
class Param:
    name: str
    kind: str  # "pos" (positional or keyword), "posonly", "kwonly", "varargs", "varkw"
    annotation: str = ""
    default: str | None = None  # source text; None: no default


@dataclass
class Sig:
    params: list[Param] = field(default_factory=list)
    returns: str = ""
    text: str = ""


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside brackets and quotes."""
    parts: list[str] = []
    depth, quote, current = 0, "", ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def docstring_signatures(obj: Any, name: str) -> list[Sig]:
    """The signature lines pybind11 put at the top of `obj.__doc__` (one per overload)."""
    doc = getattr(obj, "__doc__", None) or ""
    sigs = []
    for line in doc.splitlines():
        m = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\)(?: -> (.+))?$", line)
        if not m:
            continue
        sig = Sig(returns=(m.group(2) or "").strip(), text=line)
        kind = "pos"
        for part in split_top_level(m.group(1)):
            if part == "*":
                kind = "kwonly"
                continue
            if part == "/":
                for p in sig.params:
                    p.kind = "posonly"
                continue
            if part.startswith("**"):
                sig.params.append(Param(part[2:].split(":")[0].strip(), "varkw"))
                continue
            if part.startswith("*"):
                sig.params.append(Param(part[1:].split(":")[0].strip(), "varargs"))
                kind = "kwonly"
                continue
            head, _, default = part.partition(" = ")
            pname, _, annotation = head.partition(":")
            sig.params.append(Param(pname.strip(), kind, annotation.strip(), default.strip() if default else None))
        sigs.append(sig)
    if len(sigs) > 1 and not re.match(r"^\d+\. ", sigs[0].text):
        sigs = sigs[1:]  # "name(*args, **kwargs)\nOverloaded function.\n\n1. ...": the overloads
    return sigs


def stub_signature(node: ast.FunctionDef) -> Sig:
    a = node.args
    sig = Sig(returns=ast.unparse(node.returns) if node.returns else "", text=f"def {node.name}(...) at line {node.lineno}")
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = "posonly" if i < len(a.posonlyargs) else "pos"
        sig.params.append(Param(arg.arg, kind, ast.unparse(arg.annotation) if arg.annotation else "",
                                ast.unparse(default) if default is not None else None))
    if a.vararg:
        sig.params.append(Param(a.vararg.arg, "varargs"))
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults):
        sig.params.append(Param(arg.arg, "kwonly", ast.unparse(arg.annotation) if arg.annotation else "",
                                ast.unparse(kw_default) if kw_default is not None else None))
    if a.kwarg:
        sig.params.append(Param(a.kwarg.arg, "varkw"))
    return sig


# Types: the binding's spelling -> the stub's.
_RUNTIME_TYPE = [
    (r"\btyping\.SupportsInt \| typing\.SupportsIndex\b", "int"),
    (r"\btyping\.SupportsFloat \| typing\.SupportsIndex\b", "float"),
    (r"\bclusterkit\._core\.", ""),
    (r"\btyping\.", ""),
    (r"\bcollections\.abc\.", ""),
]


def _normalise(annotation: str) -> str:
    for pattern, repl in _RUNTIME_TYPE:
        annotation = re.sub(pattern, repl, annotation)
    return annotation.replace(" ", "")


def _names(annotation: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9.]*", annotation))


def types_agree(runtime: str, stub: str, aliases: dict[str, str]) -> bool:
    """Whether the stub's type can describe what the binding declares."""
    rt = _normalise(runtime)
    if rt in ("", "object", "Any") or not stub:
        return True
    st = stub
    for alias, meaning in aliases.items():
        st = re.sub(rf"\b{re.escape(alias)}\b", meaning, st)
    # Literal["a", "b"] is a str the binding checks by value.
    st = re.sub(r"Literal\[\s*(['\"][^\]]*)\]", "str", st)
    st = st.replace(" ", "").replace("'", "").replace('"', "")
    if rt == st:
        return True
    st_names = _names(st)
    if rt in ("bool", "int", "float", "str", "bytes", "None"):
        return rt in st_names or (rt == "int" and "float" in st_names) or "Any" in st_names
    # Containers and classes: every class the binding names must be in the stub.
    wanted = {n for n in _names(rt) if n[:1].isupper() and n not in ("Sequence", "Mapping", "Callable", "Iterable",
                                                                         "Iterator", "PathLike", "Optional", "Union")}
    return wanted <= st_names or "Any" in st_names


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _ABSENT


def compare(stub: Sig, runtime: Sig, is_method: bool, aliases: dict[str, str], narrowing: bool = False,
            dunder: bool = False) -> list[str]:
    """What differs, in words; [] when the stub signature describes the binding's.

    narrowing: the stub signature may describe a subset of the calls the binding
    takes (one overload of several, or a binding that takes **kwargs): it may leave
    out parameters that have defaults, require what has a default, make a
    parameter keyword-only, and name keywords that the binding's **kwargs takes.
    dunder: an operator's parameter names are nobody's business (arg0 vs other).
    """
    def strip_self(params: list[Param]) -> list[Param]:
        return params[1:] if is_method and params and params[0].name in ("self", "cls") else params

    rt_params, st_params = strip_self(runtime.params), strip_self(stub.params)
    problems: list[str] = []
    if dunder:
        rt_pos = [p for p in rt_params if p.kind in ("pos", "posonly")]
        st_pos = [p for p in st_params if p.kind in ("pos", "posonly")]
        if len(rt_pos) != len(st_pos):
            return [f"{len(st_pos)} parameters in the stub, {len(rt_pos)} in the module"]
        pairs = list(zip(st_pos, rt_pos))
    elif not narrowing:
        rt_names, st_names = [p.name for p in rt_params], [p.name for p in st_params]
        if rt_names != st_names:
            return [f"parameters {st_names} in the stub, {rt_names} in the module"]
        pairs = list(zip(st_params, rt_params))
    else:
        by_name = {p.name: p for p in rt_params if p.kind not in ("varargs", "varkw")}
        takes_kwargs = any(p.kind == "varkw" for p in rt_params)
        rt_positional = [p.name for p in rt_params if p.kind in ("pos", "posonly")]
        st_positional = [p.name for p in st_params if p.kind in ("pos", "posonly")]
        if st_positional != rt_positional[: len(st_positional)]:
            return [f"positional parameters {st_positional} in the stub, {rt_positional} in the module"]
        pairs = []
        for sp in st_params:
            if sp.name in by_name:
                pairs.append((sp, by_name[sp.name]))
            elif not (takes_kwargs and sp.kind == "kwonly") and sp.kind not in ("varargs", "varkw"):
                problems.append(f"{sp.name}: in the stub, not in the module")
        named = {sp.name for sp in st_params}
        for rp in rt_params:
            if rp.kind not in ("varargs", "varkw") and rp.default is None and rp.name not in named:
                problems.append(f"{rp.name}: required by the module, not in the stub")
    for s, r in pairs:
        if s.kind != r.kind and {s.kind, r.kind} != {"pos", "posonly"} and not (
                narrowing and (s.kind, r.kind) == ("kwonly", "pos")):
            problems.append(f"{s.name}: {s.kind} in the stub, {r.kind} in the module")
        if s.default is not None and r.default is None:
            problems.append(f"{s.name}: default {s.default} in the stub, none in the module")
        elif s.default is None and r.default is not None and not narrowing:
            problems.append(f"{s.name}: no default in the stub, {r.default} in the module")
        elif s.default not in (None, "...") and r.default is not None:
            sv, rv = _literal(s.default), _literal(r.default)
            if sv is not _ABSENT and rv is not _ABSENT and (sv != rv or type(sv) is not type(rv)):
                if not (isinstance(sv, (int, float)) and isinstance(rv, (int, float)) and sv == rv
                        and bool not in (type(sv), type(rv))):
                    problems.append(f"{s.name}: default {s.default} in the stub, {r.default} in the module")
        if not dunder and not types_agree(r.annotation, s.annotation, aliases):  # __eq__(self, other: object)
            problems.append(f"{s.name}: type {s.annotation!r} in the stub, {r.annotation!r} in the module")
    if runtime.returns and not types_agree(runtime.returns, stub.returns, aliases):
        problems.append(f"returns {stub.returns!r} in the stub, {runtime.returns!r} in the module")
    return problems


def _is_overload(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list)


def _decorators(node: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d) for d in node.decorator_list}


def check(module: ModuleType, stub_source: str) -> list[str]:
    """Every disagreement between the stub's signatures and the module's, one line each."""
    tree = ast.parse(stub_source)
    aliases = {t.id: ast.unparse(n.value) for n in tree.body if isinstance(n, ast.Assign)
               for t in n.targets if isinstance(t, ast.Name) and t.id.startswith("_")}
    problems: list[str] = []

    def visit(body: list[ast.stmt], owner: Any, where: str) -> None:
        functions: dict[str, list[ast.FunctionDef]] = {}
        for node in body:
            if isinstance(node, ast.ClassDef):
                cls = getattr(owner, node.name, None)
                if cls is not None:
                    visit(node.body, cls, f"{where}{node.name}.")
            elif isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, []).append(node)
        for name, nodes in functions.items():
            is_class = inspect.isclass(owner)
            target = inspect.getattr_static(owner, name, None) if is_class else getattr(owner, name, None)
            if target is None:
                continue  # missing altogether: test_stubs' name checks say so
            label = f"{where}{name}"
            if isinstance(target, property):
                getter = [n for n in nodes if "property" in _decorators(n)]
                rt = docstring_signatures(target.fget, "") if target.fget else []
                if getter and rt and rt[0].returns and not types_agree(rt[0].returns, stub_signature(getter[0]).returns,
                                                                       aliases):
                    problems.append(f"{label}: property type {stub_signature(getter[0]).returns!r} in the stub, "
                                    f"{rt[0].returns!r} in the module")
                continue
            if isinstance(target, (staticmethod, classmethod)):
                target = getattr(owner, name)
            runtime = docstring_signatures(target, name)
            if not runtime:
                continue  # not a pybind11 function (or one without a signature line)
            is_method = is_class and not any(d in ("staticmethod", "classmethod") for n in nodes for d in _decorators(n))
            stubs = [stub_signature(n) for n in nodes if _is_overload(n)] or [stub_signature(nodes[-1])]
            dunder = name.startswith("__") and name.endswith("__") and name != "__init__"
            # One stub signature for one binding signature: the same calls. Overloads
            # on either side, or a binding taking **kwargs: each stub signature
            # describes some of the calls the binding takes, and each of the
            # binding's signatures is described by some stub signature.
            exact = len(stubs) == 1 and len(runtime) == 1 and not any(p.kind == "varkw" for p in runtime[0].params)
            for st in stubs:
                results = [compare(st, r, is_method, aliases, not exact, dunder) for r in runtime]
                if all(results):
                    best = min(results, key=len)
                    problems.append(f"{label}: `{st.text}`: " + "; ".join(best)
                                    + " (the module: " + " | ".join(r.text for r in runtime) + ")")
            if not exact:
                for r in runtime:
                    if not any(p.kind == "varkw" for p in r.params) and all(
                            compare(st, r, is_method, aliases, False, dunder) for st in stubs):
                        problems.append(f"{label}: the module's `{r.text}` has no signature in the stub")
    visit(tree.body, module, "")
    return problems
