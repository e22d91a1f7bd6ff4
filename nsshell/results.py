"""What handlers return: data, with no notion of a screen.

The renderer turns these into rich tables, plain text or JSON.  Every result has
a `json()` that gives the documented JSON shape for `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Result:
    def json(self) -> Any:
        raise NotImplementedError


@dataclass
class Message(Result):
    """A line (or lines) of text for the person; JSON: {"message": text}."""
    text: str

    def json(self) -> Any:
        return {"message": self.text}


@dataclass
class Table(Result):
    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None
    key: str = "rows"              # top-level JSON key, like lsns's "namespaces"
    data: Any = None               # JSON given explicitly, instead of rows by column
    cut: Any = None                # columns a narrow terminal may cut (render.CUT_COLUMNS)

    def json(self) -> Any:
        if self.data is not None:
            return {self.key: _jsonable(self.data)}
        keys = [c.lower().replace(" ", "_") for c in self.columns]
        return {self.key: [dict(zip(keys, map(_jsonable, r))) for r in self.rows]}


@dataclass
class Record(Result):
    """Key/value pairs about one thing (ctx, show)."""
    fields: dict[str, Any]
    title: str | None = None
    data: Any = None

    def json(self) -> Any:
        return _jsonable(self.data if self.data is not None else self.fields)


@dataclass
class Node:
    label: str
    children: list["Node"] = field(default_factory=list)
    data: Any = None

    def to_json(self) -> Any:
        out = dict(self.data) if isinstance(self.data, dict) else {"label": self.label}
        out["children"] = [c.to_json() for c in self.children]
        return out


@dataclass
class Tree(Result):
    roots: list[Node]
    title: str | None = None
    key: str = "tree"

    def json(self) -> Any:
        return {self.key: [r.to_json() for r in self.roots]}


@dataclass
class Diff(Result):
    """Per-section lists of (sign, text) lines; sign is '+', '-', '~' or ' '."""
    sections: list[tuple[str, list[tuple[str, str]]]]
    title: str | None = None
    data: Any = None

    def json(self) -> Any:
        if self.data is not None:
            return _jsonable(self.data)
        return {name: [{"op": s, "text": t} for s, t in lines] for name, lines in self.sections}


@dataclass
class Status(Result):
    """A command whose output went straight to the terminal (run, sh): only a status."""
    code: int

    def json(self) -> Any:
        return {"status": self.code}


@dataclass
class Multi(Result):
    """Several results: PARTS for the screen (drawn one after the other), and DATA, the
    one documented object `--json` prints for them all (`show` of a set, `identify`,
    `net ls`, `net graph`)."""
    parts: list[Result]
    data: Any

    def json(self) -> Any:
        return self.data


jsonable = _jsonable
