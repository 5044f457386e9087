"""Round trips through pickle, checked field by field.

Results travel to other processes (multiprocessing pools, Ray tasks): a
copy must hold every field of the original. `assert_pickles` compares the
whole public state of both, nested values included, so a field the C++
member list leaves out (python/src/register_pickling.cpp) fails here.
"""

from __future__ import annotations

import pickle
from typing import Any

import clusterkit as ck


def public_state(obj: Any, depth: int = 0) -> Any:
    """Every public, non-callable attribute, recursively, as plain values."""
    assert depth < 12, f"nesting too deep at {type(obj).__name__}"
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, ck.Error):
        return ("Error", type(obj).__name__, obj.code, obj.message)
    if isinstance(obj, (list, tuple)):
        return [public_state(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {k: public_state(v, depth + 1) for k, v in obj.items()}
    if hasattr(obj, "__members__") or type(obj).__name__ in ("timedelta", "datetime"):
        return repr(obj)  # an enum or a time
    out: dict[str, Any] = {"__type__": type(obj).__name__}
    for name in dir(type(obj)):
        if name.startswith("_"):
            continue
        if not isinstance(getattr(type(obj), name, None), property):
            continue
        out[name] = public_state(getattr(obj, name), depth + 1)
    if hasattr(obj, "to_json"):
        out["__json__"] = obj.to_json()
    return out


def assert_pickles(obj: Any) -> Any:
    """Pickles `obj` and back; the copy must have the same type and state."""
    copy = pickle.loads(pickle.dumps(obj))
    assert type(copy) is type(obj)
    assert public_state(copy) == public_state(obj)
    assert repr(copy) == repr(obj)
    return copy
