"""What handlers return: data, with no notion of a screen.

The renderer turns these into rich tables, plain text or JSON.  Every result has
a `json()` that gives the documented JSON shape for `--json`.
"""

from __future__ import annotations

from .kernel.values import Value

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
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


class Message(Result, Value):
    """A line (or lines) of text for the person; JSON: {"message": text}."""
    text: str

    _fields = ("text",)

    def __init__(self, text) -> None:
        self.text = text

    def json(self) -> Any:
        return {"message": self.text}


class Table(Result, Value):
    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None
    key: str = "rows"              # top-level JSON key, like lsns's "namespaces"
    data: Any = None               # JSON given explicitly, instead of rows by column
    cut: Any = None                # columns a narrow terminal may cut (render.CUT_COLUMNS)

    _fields = ("columns", "rows", "title", "key", "data", "cut")

    def __init__(self, columns, rows, title=None, key="rows", data=None, cut=None) -> None:
        self.columns = columns
        self.rows = rows
        self.title = title
        self.key = key
        self.data = data
        self.cut = cut

    def json(self) -> Any:
        if self.data is not None:
            return {self.key: _jsonable(self.data)}
        keys = [c.lower().replace(" ", "_") for c in self.columns]
        return {self.key: [dict(zip(keys, map(_jsonable, r))) for r in self.rows]}


class Record(Result, Value):
    """Key/value pairs about one thing (ctx, show)."""
    fields: dict[str, Any]
    title: str | None = None
    data: Any = None

    _fields = ("fields", "title", "data")

    def __init__(self, fields, title=None, data=None) -> None:
        self.fields = fields
        self.title = title
        self.data = data

    def json(self) -> Any:
        return _jsonable(self.data if self.data is not None else self.fields)


class Node(Value):
    label: str
    children: list["Node"]
    data: Any = None

    _fields = ("label", "children", "data")

    def __init__(self, label, children=None, data=None) -> None:
        self.label = label
        self.children = [] if children is None else children
        self.data = data

    def to_json(self) -> Any:
        out = dict(self.data) if isinstance(self.data, dict) else {"label": self.label}
        out["children"] = [c.to_json() for c in self.children]
        return out


class Tree(Result, Value):
    roots: list[Node]
    title: str | None = None
    key: str = "tree"

    _fields = ("roots", "title", "key")

    def __init__(self, roots, title=None, key="tree") -> None:
        self.roots = roots
        self.title = title
        self.key = key

    def json(self) -> Any:
        return {self.key: [r.to_json() for r in self.roots]}


class Diff(Result, Value):
    """Per-section lists of (sign, text) lines; sign is '+', '-', '~' or ' '."""
    sections: list[tuple[str, list[tuple[str, str]]]]
    title: str | None = None
    data: Any = None

    _fields = ("sections", "title", "data")

    def __init__(self, sections, title=None, data=None) -> None:
        self.sections = sections
        self.title = title
        self.data = data

    def json(self) -> Any:
        if self.data is not None:
            return _jsonable(self.data)
        return {name: [{"op": s, "text": t} for s, t in lines] for name, lines in self.sections}


class Status(Result, Value):
    """A command whose output went straight to the terminal (run, sh): only a status."""
    code: int

    _fields = ("code",)

    def __init__(self, code) -> None:
        self.code = code

    def json(self) -> Any:
        return {"status": self.code}


class Multi(Result, Value):
    """Several results: PARTS for the screen (drawn one after the other), and DATA, the
    one documented object `--json` prints for them all (`show` of a set, `identify`,
    `net ls`, `net graph`)."""
    parts: list[Result]
    data: Any

    _fields = ("parts", "data")

    def __init__(self, parts, data) -> None:
        self.parts = parts
        self.data = data

    def json(self) -> Any:
        return self.data


jsonable = _jsonable
