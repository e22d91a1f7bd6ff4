"""Turning results into output: rich on a terminal, plain text in a pipe, JSON on request.

rich is imported only when a terminal is being drawn on, so a batch in a pipe
starts fast.  NO_COLOR (https://no-color.org) gives plain text on a terminal too.
"""

from __future__ import annotations

import os
import sys

from .progress import clear_line
from .results import Diff, Message, Multi, Node, Record, Result, Status, Table, Tree, jsonable

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, TextIO


def choose_mode(stream: TextIO, want_json: bool) -> str:
    if want_json:
        return "json"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return "plain"
    try:
        return "rich" if stream.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


class Renderer:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None,
                 mode: str | None = None, want_json: bool = False):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.mode = mode or choose_mode(self.out, want_json)
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console
            self._console = Console(file=self.out, highlight=False, soft_wrap=False)
        return self._console

    # -- errors and notes go to stderr as one line ------------------------------------

    def error(self, text: str) -> None:
        clear_line()  # a progress line on the terminal goes first
        self.err.write(f"nsshell: {text}\n")
        self.err.flush()

    def warn(self, text: str) -> None:
        clear_line()  # a progress line on the terminal goes first
        self.err.write(f"nsshell: warning: {text}\n")
        self.err.flush()

    # -- results --------------------------------------------------------------------

    def show(self, result: Result, as_json: bool = False) -> None:
        clear_line()  # a progress line on the terminal goes first
        if isinstance(result, Status):
            return
        if self.mode == "json" or as_json:
            import json  # here: only --json pays for it
            # JSON Lines: one compact document per line, so that a batch's documents
            # parse one by one (docs/json.md); indented for a person at a terminal
            data = jsonable(result.json())
            if _isatty(self.out):
                self.out.write(json.dumps(data, indent=2) + "\n")
            else:
                self.out.write(json.dumps(data, separators=(",", ":")) + "\n")
        elif self.mode == "rich":
            self._rich(result)
        else:
            self.out.write(self.plain(result))
        self.out.flush()

    def plain(self, result: Result) -> str:
        if isinstance(result, Message):
            return result.text + ("\n" if result.text and not result.text.endswith("\n") else "")
        if isinstance(result, Table):
            return self._plain_table(result)
        if isinstance(result, Record):
            width = max((len(k) for k in result.fields), default=0)
            lines = [f"{result.title}"] if result.title else []
            for k, v in result.fields.items():
                if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                    lines.append(f"{k + ':':<{width + 1}} {v[0]}")
                    lines.extend(f"{'':<{width + 1}} {x}" for x in v[1:])
                else:
                    lines.append(f"{k + ':':<{width + 1}} {_cell(v)}")
            return "".join(line + "\n" for line in lines)
        if isinstance(result, Tree):
            lines = [result.title] if result.title else []
            for root in result.roots:
                lines.append(root.label)
                _plain_tree(root.children, "", lines)
            return "".join(line + "\n" for line in lines)
        if isinstance(result, Diff):
            lines = [result.title] if result.title else []
            for name, entries in result.sections:
                lines.append(f"{name}:")
                lines.extend(f"  {sign} {text}" for sign, text in entries)
            return "".join(line + "\n" for line in lines)
        if isinstance(result, Multi):
            return "".join(self.plain(p) for p in result.parts)
        return str(result) + "\n"

    def _plain_table(self, t: Table) -> str:
        rows = [[_cell(c) for c in r] for r in t.rows]
        heads = [c.upper() for c in t.columns]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
        out = []
        for r in [heads] + rows:
            cells = [c.ljust(w) for c, w in zip(r, widths)]
            out.append("  ".join(cells).rstrip() + "\n")
        return "".join(out)

    def _rich(self, result: Result) -> None:
        from rich.table import Table as RTable
        from rich.tree import Tree as RTree
        from rich.text import Text
        c = self.console
        if isinstance(result, Message):
            c.print(Text(result.text))
        elif isinstance(result, Table):
            if result.title:
                c.print(Text(result.title, style="italic"))
            heads, rows, widths = fit_table(result, c.width)
            for i, cells in enumerate([heads] + rows):
                line = Text("  ".join(_clip(x, w).ljust(w) for x, w in zip(cells, widths)).rstrip(),
                            style="bold" if i == 0 else "")
                # never wrapped nor cropped: what does not fit runs on, as lsns's lines do
                c.print(line, no_wrap=True, overflow="ignore", crop=False)
        elif isinstance(result, Record):
            t = RTable(title=result.title, show_header=False, box=None, pad_edge=False)
            t.add_column(style="bold")
            t.add_column()
            for k, v in result.fields.items():
                text = "\n".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else _cell(v)
                t.add_row(k, Text(text))
            c.print(t)
        elif isinstance(result, Tree):
            for root in result.roots:
                rt = RTree(Text(root.label, style="bold"))
                _rich_tree(rt, root.children)
                c.print(rt)
        elif isinstance(result, Diff):
            if result.title:
                c.print(Text(result.title, style="bold"))
            styles = {"+": "green", "-": "red", "~": "yellow"}
            for name, entries in result.sections:
                c.print(Text(f"{name}:", style="bold"))
                for sign, text in entries:
                    c.print(Text(f"  {sign} {text}", style=styles.get(sign, "")))
        elif isinstance(result, Multi):
            for p in result.parts:
                self._rich(p)
        else:
            c.print(str(result))


# Columns a narrow terminal may cut (with an ellipsis), as lsns cuts COMMAND: commands,
# paths and other free text.  Ids, types, counts and names are never cut.
CUT_COLUMNS = frozenset({"command", "path", "paths", "persisted", "origin", "source", "target",
                         "options", "addresses", "holders", "src"})
MIN_CUT = 8


def fit_table(t: Table, total: int) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, cells and column widths of T for a terminal TOTAL columns wide: every column
    as wide as its widest cell, then the cuttable ones (t.cut, else CUT_COLUMNS) narrowed,
    widest first and down to MIN_CUT, until the table fits (or nothing is left to cut)."""
    heads = [c.upper() for c in t.columns]
    rows = [[_cell(x) for x in r] for r in t.rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
    cuttable = t.cut if t.cut is not None else CUT_COLUMNS
    cut = [i for i, col in enumerate(t.columns) if col.lower() in cuttable]
    over = sum(widths) + 2 * (len(widths) - 1) - total
    for i in sorted(cut, key=lambda i: -widths[i]):
        if over <= 0:
            break
        take = min(over, widths[i] - max(len(heads[i]), MIN_CUT))
        if take > 0:
            widths[i] -= take
            over -= take
    return heads, rows, widths


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _plain_tree(children: list[Node], prefix: str, lines: list[str]) -> None:
    for i, child in enumerate(children):
        last = i == len(children) - 1
        lines.append(f"{prefix}{'└─' if last else '├─'}{child.label}")
        _plain_tree(child.children, prefix + ("  " if last else "│ "), lines)


def _rich_tree(parent, children: list[Node]) -> None:
    from rich.text import Text
    for child in children:
        _rich_tree(parent.add(Text(child.label)), child.children)
