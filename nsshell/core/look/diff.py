"""The difference of two namespaces' observable state (snapshots from core/look/nsstate.py).

A change is a dict:

    {"op": "+" | "-" | "~", "key": KEY or None, "a": VALUE or None, "b": VALUE or None,
     "text": "one line for a person"}

'-' is only in A, '+' only in B, '~' in both but different.  The generic rule:
dicts are compared key by key (nested dict values field by field), lists as
sets of items, anything else by value.  A registered differ replaces the rule
for its key.
"""

from __future__ import annotations

import os

from ...kernel import nstypes
from ...kernel.nstypes import NsType
from . import nsstate

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, Iterable


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}={'-' if x is None else x}" for k, x in v.items()) or "{}"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "[]"
    return "-" if v is None else str(v)


def change(op: str, key: Any, a: Any, b: Any, text: str | None = None) -> dict:
    if text is None:
        if op == "-":
            text = f"{key}: {_fmt(a)}" if key is not None else _fmt(a)
        elif op == "+":
            text = f"{key}: {_fmt(b)}" if key is not None else _fmt(b)
        else:
            text = (f"{key}: " if key is not None else "") + _changed_text(a, b)
    return {"op": op, "key": key, "a": a, "b": b, "text": text}


def _changed_text(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        parts = []
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                parts.append(f"{k} {_fmt(a.get(k))} -> {_fmt(b.get(k))}")
        return ", ".join(parts)
    return f"{_fmt(a)} -> {_fmt(b)}"


def diff_values(a: Any, b: Any) -> list[dict]:
    """The generic rule: dicts by key, lists as sets, other values by equality."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in a:
            if k not in b:
                out.append(change("-", k, a[k], None))
        for k in b:
            if k not in a:
                out.append(change("+", k, None, b[k]))
        for k in a:
            if k in b and a[k] != b[k]:
                out.append(change("~", k, a[k], b[k]))
        return out
    if isinstance(a, list) and isinstance(b, list):
        sa = {_hashable(x): x for x in a}
        sb = {_hashable(x): x for x in b}
        out = [change("-", None, x, None) for k, x in sa.items() if k not in sb]
        out += [change("+", None, None, x) for k, x in sb.items() if k not in sa]
        return out
    if a != b:
        return [change("~", None, a, b)]
    return []


def _hashable(x: Any):
    if isinstance(x, (dict, list)):
        import json
        return json.dumps(x, sort_keys=True, default=str)
    return x


def diff_snapshots(t: str, a: dict[str, dict], b: dict[str, dict]) -> tuple[dict, dict]:
    """(changes by key, errors by key) between two snapshots of type T."""
    changes: dict[str, list[dict]] = {}
    errors: dict[str, str] = {}
    for key in list(a) + [k for k in b if k not in a]:
        ea, eb = a.get(key, {}), b.get(key, {})
        if "error" in ea or "error" in eb or "value" not in ea or "value" not in eb:
            errors[key] = "; ".join(f"{side}: {e['error']}" for side, e in (("a", ea), ("b", eb))
                                    if "error" in e) or "not read"
            continue
        s = nsstate.spec(t, key)
        differ = s.differ if s is not None and s.differ is not None else diff_values
        found = differ(ea["value"], eb["value"])
        if found:
            changes[key] = found
    return changes, errors


def diff_namespaces(fd_a: int, fd_b: int, t: NsType, label_a: str | None = None,
                    label_b: str | None = None) -> dict:
    """One type's comparison, in the documented JSON shape (docs/json.md)."""
    ia, ib = os.fstat(fd_a).st_ino, os.fstat(fd_b).st_ino
    out = {"type": t.name, "a": f"{t.name}:[{ia}]", "b": f"{t.name}:[{ib}]",
           "same_namespace": ia == ib, "equal": True, "changes": {}, "errors": {}}
    if ia == ib:
        return out
    sa = nsstate.snapshot(fd_a, t, label=label_a)
    sb = nsstate.snapshot(fd_b, t, label=label_b)
    changes, errors = diff_snapshots(t.name, sa, sb)
    out["changes"] = changes
    out["errors"] = errors
    out["equal"] = not changes and not errors
    return out


def diff_sets(a, b, types: Iterable[NsType] | None = None) -> list[dict]:
    """Compare two NsSets type by type (the types both have, or TYPES)."""
    wanted = list(types) if types else [t for t in nstypes.ALL
                                        if t.name in a.handles and t.name in b.handles]
    out = []
    for t in wanted:
        ha, hb = a.handles.get(t.name), b.handles.get(t.name)
        if ha is None or hb is None:
            missing = a.label if ha is None else b.label
            out.append({"type": t.name, "a": str(ha.nsid) if ha else None,
                        "b": str(hb.nsid) if hb else None, "same_namespace": False,
                        "equal": False, "changes": {}, "errors": {"*": f"{missing} has no {t.name} namespace"}})
            continue
        ha.check_usable()
        hb.check_usable()
        out.append(diff_namespaces(ha.fd, hb.fd, t, ha.label, hb.label))
    return out
