"""The `top` view: a prompt_toolkit full-screen Application over rows a command supplies.

It knows nothing of namespaces beyond the row dicts it is given (key, depth, parent,
label, type, nprocs, held, names, command, children): `source()` gives a fresh list,
`details(row)` the text of the side pane.  A background thread calls source() every
interval; the view keeps what is new highlighted for a moment and what vanished greyed
for one more refresh.  run() returns None (q, Esc) or an action for the command to
carry out at the prompt: ("join", row).
"""

from __future__ import annotations

import threading
import time

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout import (ConditionalContainer, HSplit, Layout, VSplit, Window)
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.styles import Style

TYPE_KEYS = {"u": "user", "m": "mnt", "P": "pid", "n": "net", "t": "uts", "i": "ipc",
             "c": "cgroup", "T": "time"}

FOOTER = ("up/down PgUp/PgDn move  left/right fold  / filter  u m P n t i c T a type  "
          "Enter show  j join  p persist  x close  d diff  g net  ? help  q quit")

HELP = """Keys
  up, down, PgUp, PgDn, Home, End   move
  left / right       fold / unfold a user namespace's rows
  /                  filter by text (Enter keeps it, Esc clears it)
  u m P n t i c T    only user, mnt, pid, net, uts, ipc, cgroup, time rows
  a                  all types again
  Enter              the `show` details of the row (Enter or Esc closes them)
  j                  join the row's namespace: back at the prompt in that context
  p                  persist it (asks for the name)
  x                  close this session's handle of it
  d                  mark the row; d on a second row shows their `diff`
  g                  the network topology (`net graph` of the session's namespaces)
  ?                  this help
  Ctrl-L             redraw the whole screen
  q, Esc             back to the prompt (the session and its handles are kept)

Rows: NEW ones are highlighted for a moment (green), as are rows whose
processes, holders or names changed (yellow); GONE ones are greyed for one
refresh before they go.  Columns: namespace (indented under its owning user
namespace), type, processes, how it is held, names, command."""

STYLE = Style.from_dict({
    "header": "reverse",
    "footer": "reverse",
    "cursor": "reverse bold",
    "new": "fg:ansigreen bold",
    "changed": "fg:ansiyellow bold",
    "gone": "fg:ansibrightblack",
    "pane": "",
    "pane.title": "bold underline",
    "status": "fg:ansiyellow",
    "marked": "underline",
})

HIGHLIGHT_SECONDS = 2.0
_WATCHED = ("nprocs", "held", "names", "command")   # a change of these is highlighted


class TopModel:
    """The rows on screen and the view's state, without a screen (tested alone)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.seen: dict = {}            # key -> time first seen (0: there from the start)
        self.changed: dict = {}         # key -> time its process count, holders or names changed
        self.gone: dict = {}            # key -> refreshes since it vanished
        self.folded: set = set()
        self.type_filter: str | None = None
        self.text_filter = ""
        self.cursor_key = None
        self.loaded = False
        self.refreshes = 0

    def update(self, fresh: list[dict], now: float) -> None:
        keys = {r["key"] for r in fresh}
        before = {r["key"]: r for r in self.rows if r["key"] not in self.gone}
        for r in fresh:
            old = before.get(r["key"])
            if old is not None and any(old.get(f) != r.get(f) for f in _WATCHED):
                self.changed[r["key"]] = now
        for k in [k for k, t in self.changed.items() if now - t >= HIGHLIGHT_SECONDS]:
            del self.changed[k]
        out = list(fresh)
        pos = {r["key"]: i for i, r in enumerate(out)}
        prev = None
        for r in self.rows:
            k = r["key"]
            if k not in keys:
                n = self.gone.get(k, 0) + 1
                if n <= 1:                       # greyed for one refresh, then dropped
                    self.gone[k] = n
                    at = pos[prev] + 1 if prev in pos else len(out)
                    out.insert(at, r)
                    pos = {x["key"]: i for i, x in enumerate(out)}
                else:
                    self.gone.pop(k, None)
            prev = k
        for k in list(self.gone):
            if k in keys:
                del self.gone[k]
        for r in fresh:
            if r["key"] not in self.seen:
                self.seen[r["key"]] = now if self.loaded else 0.0
        self.rows = out
        self.loaded = True
        self.refreshes += 1
        if self.cursor_key is None and out:
            self.cursor_key = out[0]["key"]

    def is_new(self, row: dict, now: float) -> bool:
        t = self.seen.get(row["key"], 0.0)
        return bool(t) and now - t < HIGHLIGHT_SECONDS

    def is_changed(self, row: dict, now: float) -> bool:
        t = self.changed.get(row["key"])
        return t is not None and now - t < HIGHLIGHT_SECONDS

    def line(self, row: dict) -> str:
        fold = ("+" if row["key"] in self.folded else "-") if row.get("children") else " "
        indent = "  " * row["depth"]
        names = ",".join(row["names"])
        return (f"{indent}{fold} {row['label']:<{max(1, 26 - len(indent))}} {row['type'] or '':<6} "
                f"{row['nprocs']:>6}  {','.join(row['held']):<16} {names:<24} {row['command']}")

    def visible(self) -> list[dict]:
        out = []
        hidden_under: set = set()
        text = self.text_filter.lower()
        for r in self.rows:
            if r["parent"] in hidden_under or r["parent"] in self.folded:
                hidden_under.add(r["key"])
                continue
            if self.type_filter and r["type"] != self.type_filter:
                continue
            if text and text not in self.line(r).lower():
                continue
            out.append(r)
        return out

    def cursor_index(self, rows: list[dict]) -> int:
        for i, r in enumerate(rows):
            if r["key"] == self.cursor_key:
                return i
        return 0

    def move(self, delta: int) -> None:
        rows = self.visible()
        if not rows:
            return
        i = self.cursor_index(rows) if any(r["key"] == self.cursor_key for r in rows) else 0
        i = max(0, min(len(rows) - 1, i + delta))
        self.cursor_key = rows[i]["key"]

    def current(self) -> dict | None:
        rows = self.visible()
        if not rows:
            return None
        return rows[self.cursor_index(rows)]


class TopView:
    """The Application.  SOURCE() -> rows; DETAILS(row) -> text; ACTIONS: optional
    callables the command offers, each returning the text to show in the side pane:
    persist(row, name), close(row), diff(row_a, row_b), graph()."""

    def __init__(self, source, details, interval: float = 1.0, context=None,
                 actions: dict | None = None, input=None, output=None):
        self.source = source
        self.details = details
        self.actions = actions or {}
        self.interval = interval
        self.context = context or (lambda: "")
        self.model = TopModel()
        self.lock = threading.Lock()      # the model
        self.work = threading.Lock()      # the session: a refresh and an action never overlap
        self.stop = threading.Event()
        self.pane: str | None = None       # the side pane's text (details, help, results)
        self.pane_title = ""
        self.status = ""
        self.error = ""
        self.mark = None                   # the first row of a `d` diff
        self.input_mode: str | None = None  # "filter" or "persist" while the line is edited
        self.input_row = None
        self.input_buffer = Buffer(multiline=False, on_text_changed=self._input_changed)
        self.app = self._build(input, output)

    # -- data --------------------------------------------------------------------------

    def refresh(self) -> None:
        try:
            with self.work:
                fresh = self.source()
            err = ""
        except Exception as e:  # noqa: BLE001 - a failed scan is shown, the view goes on
            fresh, err = None, f"refresh failed: {e}"
        with self.lock:
            self.error = err
            if fresh is not None:
                self.model.update(fresh, time.monotonic())

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.refresh()
            try:
                self.app.invalidate()
            except Exception:  # noqa: BLE001 - the app may be ending
                pass

    def _input_changed(self, buf: Buffer) -> None:
        if self.input_mode == "filter":
            with self.lock:
                self.model.text_filter = buf.text

    def _open_pane(self, title: str, produce) -> None:
        self.pane_title = title
        try:
            with self.work:
                text = produce()
        except Exception as err:  # noqa: BLE001 - shown, never fatal to the view
            text = f"{title}: {err}"
        self.pane = text.rstrip("\n") if text else "(nothing)"

    # -- drawing -----------------------------------------------------------------------

    def _header(self):
        with self.lock:
            m = self.model
            n = sum(1 for r in m.rows if r["key"] not in m.gone)
            shown = len(m.visible())
            filt = []
            if m.type_filter:
                filt.append(f"type {m.type_filter}")
            if m.text_filter:
                filt.append(f"text {m.text_filter!r}")
            err = self.error
        text = (f" nsshell top  {n} namespaces ({shown} shown)  every {self.interval:g}s  "
                f"context {self.context()}" + (f"  filter: {', '.join(filt)}" if filt else ""))
        head = [("class:header", text + "\n"),
                ("class:header", f" {'NAMESPACE':<28}{'TYPE':<7}{'NPROCS':>6}  {'HELD':<16} "
                                 f"{'NAMES':<24} COMMAND")]
        note = err or self.status
        if note:
            head = [("class:status", note + "\n")] + head
        return head

    def _rows(self):
        now = time.monotonic()
        with self.lock:
            m = self.model
            rows = m.visible()
            if not rows:
                return [("", "no namespaces match" if m.loaded else "reading...")]
            ci = m.cursor_index(rows)
            out = []
            for i, r in enumerate(rows):
                style, tag = "", ""
                if r["key"] in m.gone:
                    style, tag = "class:gone", " (gone)"
                elif m.is_new(r, now):
                    style, tag = "class:new", " (new)"
                elif m.is_changed(r, now):
                    style = "class:changed"
                if self.mark is not None and r["key"] == self.mark["key"]:
                    style += " class:marked"
                    tag += " (marked)"
                if i == ci:
                    style += " class:cursor"
                    out.append(("[SetCursorPosition]", ""))
                out.append((style, m.line(r) + tag))
                out.append(("", "\n"))
            return out

    def _pane(self):
        return [("class:pane.title", self.pane_title + "\n"), ("class:pane", self.pane or "")]

    def _pane_width(self) -> int:
        longest = max([len(self.pane_title)] + [len(x) for x in (self.pane or "").splitlines()])
        try:
            cols = self.app.output.get_size().columns
        except Exception:  # noqa: BLE001
            cols = 160
        return max(20, min(longest + 1, cols - 40, 100))

    def _input_prompt(self):
        return [("bold", "/" if self.input_mode == "filter" else "persist as: ")]

    def _build(self, input, output) -> Application:
        kb = KeyBindings()
        browsing = Condition(lambda: self.input_mode is None)
        editing = Condition(lambda: self.input_mode is not None)
        pane_open = Condition(lambda: self.pane is not None)

        def moved(delta):
            with self.lock:
                self.model.move(delta)
            self.status = ""

        def page() -> int:
            try:
                return max(1, self.app.output.get_size().rows - 6)
            except Exception:  # noqa: BLE001
                return 20

        def current():
            with self.lock:
                return self.model.current()

        def usable(r, verb: str) -> bool:
            if r is None or r.get("ns") is None or r["key"] in self.model.gone:
                self.status = f"nothing to {verb} here"
                return False
            return True

        kb.add("up", filter=browsing)(lambda e: moved(-1))
        kb.add("down", filter=browsing)(lambda e: moved(1))
        kb.add("pageup", filter=browsing)(lambda e: moved(-page()))
        kb.add("pagedown", filter=browsing)(lambda e: moved(page()))
        kb.add("home", filter=browsing)(lambda e: moved(-10 ** 9))
        kb.add("end", filter=browsing)(lambda e: moved(10 ** 9))

        @kb.add("left", filter=browsing)
        def _fold(e):
            with self.lock:
                r = self.model.current()
                if r is None:
                    return
                if r.get("children"):
                    self.model.folded.add(r["key"])
                elif r["parent"] is not None:
                    self.model.cursor_key = r["parent"]   # on a leaf: to its owner

        @kb.add("right", filter=browsing)
        def _unfold(e):
            with self.lock:
                r = self.model.current()
                if r is not None:
                    self.model.folded.discard(r["key"])

        def start_input(e, mode: str, text: str = "", row=None):
            self.input_mode, self.input_row = mode, row
            self.input_buffer.text = text
            self.input_buffer.cursor_position = len(text)
            e.app.layout.focus(self.input_window)

        def end_input(e):
            self.input_mode = None
            e.app.layout.focus(self.rows_window)

        @kb.add("/", filter=browsing)
        def _filter(e):
            start_input(e, "filter", self.model.text_filter)

        @kb.add("enter", filter=editing)
        def _accept(e):
            mode, row, text = self.input_mode, self.input_row, self.input_buffer.text.strip()
            end_input(e)
            if mode == "persist":
                if not text:
                    self.status = "persist: no name given"
                    return
                self._open_pane(f"persist {row['label']} as {text}",
                                lambda: self.actions["persist"](row, text))

        @kb.add("escape", filter=editing, eager=True)
        def _cancel(e):
            if self.input_mode == "filter":
                self.input_buffer.text = ""
            end_input(e)

        for key, t in TYPE_KEYS.items():
            def set_type(e, t=t):
                with self.lock:
                    self.model.type_filter = t
                    self.model.move(0)
            kb.add(key, filter=browsing)(set_type)

        @kb.add("a", filter=browsing)
        def _all(e):
            with self.lock:
                self.model.type_filter = None
                self.model.text_filter = ""

        @kb.add("enter", filter=browsing)
        def _show(e):
            if self.pane is not None and self.pane_title.startswith("show "):
                self.pane = None
                return
            r = current()
            if r is None:
                return
            self._open_pane(f"show {r['label']}", lambda: self.details(r))

        @kb.add("?", filter=browsing)
        def _help(e):
            if self.pane_title == "help" and self.pane is not None:
                self.pane = None
            else:
                self.pane_title, self.pane = "help", HELP

        @kb.add("escape", filter=browsing & pane_open, eager=True)
        def _close_pane(e):
            self.pane = None

        @kb.add("j", filter=browsing)
        def _join(e):
            r = current()
            if usable(r, "join"):
                e.app.exit(result=("join", r))

        @kb.add("x", filter=browsing)
        def _close(e):
            r = current()
            if not usable(r, "close") or "close" not in self.actions:
                return
            if "session" not in r["held"]:
                self.status = f"{r['label']} is not held by this session: nothing to close"
                return
            self._open_pane(f"close {r['label']}", lambda: self.actions["close"](r))
            threading.Thread(target=self.refresh, daemon=True).start()

        @kb.add("p", filter=browsing & Condition(lambda: "persist" in self.actions))
        def _persist(e):
            r = current()
            if usable(r, "persist"):
                name = next((n for n in r["names"] if not n.startswith("(")), "")
                start_input(e, "persist", name, r)

        @kb.add("d", filter=browsing & Condition(lambda: "diff" in self.actions))
        def _diff(e):
            r = current()
            if not usable(r, "diff"):
                return
            if self.mark is None or self.mark["key"] == r["key"]:
                self.mark = None if self.mark is not None else r
                self.status = (f"marked {r['label']}: d on another row shows their diff"
                               if self.mark else "")
                return
            a, self.mark = self.mark, None
            self.status = ""
            self._open_pane(f"diff {a['label']} {r['label']}", lambda: self.actions["diff"](a, r))

        @kb.add("g", filter=browsing & Condition(lambda: "graph" in self.actions))
        def _graph(e):
            if self.pane is not None and self.pane_title == "network topology":
                self.pane = None
                return
            with self.lock:
                rows = [r for r in self.model.rows if r["key"] not in self.model.gone]
            self._open_pane("network topology", lambda: self.actions["graph"](rows))

        @kb.add("c-l")
        def _redraw(e):
            e.app.renderer.clear()   # the whole screen again, as in top

        @kb.add("q", filter=browsing)
        @kb.add("escape", filter=browsing & ~pane_open, eager=True)
        @kb.add("c-c")
        def _quit(e):
            e.app.exit(result=None)

        self.rows_window = Window(FormattedTextControl(self._rows, focusable=True,
                                                       show_cursor=False),
                                  wrap_lines=False)
        self.input_window = Window(BufferControl(self.input_buffer), height=1)
        pane = ConditionalContainer(
            Window(FormattedTextControl(self._pane), width=self._pane_width, wrap_lines=True,
                   style="class:pane"),
            filter=pane_open)
        body = HSplit([
            Window(FormattedTextControl(self._header), height=None, dont_extend_height=True),
            VSplit([self.rows_window,
                    ConditionalContainer(Window(width=1, char="|"), filter=pane_open), pane]),
            ConditionalContainer(VSplit([Window(FormattedTextControl(self._input_prompt),
                                                dont_extend_width=True), self.input_window]),
                                 filter=editing),
            Window(FormattedTextControl(lambda: [("class:footer", FOOTER)]), wrap_lines=True,
                   dont_extend_height=True),
        ])
        return Application(layout=Layout(body, focused_element=self.rows_window),
                           key_bindings=kb, style=STYLE, full_screen=True,
                           input=input, output=output, mouse_support=False)

    def run(self):
        self.refresh()
        worker = threading.Thread(target=self._loop, name="nsshell-top", daemon=True)
        worker.start()
        try:
            return self.app.run()
        finally:
            self.stop.set()
            worker.join(timeout=max(5.0, self.interval * 2))
