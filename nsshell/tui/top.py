"""The `top` view: a prompt_toolkit full-screen Application over rows a command supplies.

It knows nothing of namespaces beyond the row dicts it is given (key, depth, parent,
label, type, nprocs, held, names, command, children): `source()` gives a fresh list,
`details(row)` the text of the side pane.  A background thread calls source() every
interval; the view keeps what is new highlighted for a moment and what vanished greyed
for one more refresh.  run() returns None (q, Esc) or an action for the command to
carry out at the prompt: ("join", label) or ("close", label).
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

TYPE_KEYS = {"u": "user", "m": "mnt", "p": "pid", "n": "net", "t": "uts", "i": "ipc",
             "c": "cgroup", "T": "time"}

FOOTER = ("up/down PgUp/PgDn move  left/right fold  / filter  u m p n t i c T a type  "
          "Enter show  j join  x close  ? help  q quit")

HELP = """Keys
  up, down, PgUp, PgDn, Home, End   move
  left / right       fold / unfold a user namespace's rows
  /                  filter by text (Enter keeps it, Esc clears it)
  u m p n t i c T    only user, mnt, pid, net, uts, ipc, cgroup, time rows
  a                  all types again
  Enter              the `show` details of the row (Enter or Esc closes them)
  j                  join the row's namespace: back at the prompt in that context
  x                  close this session's handle of it (back at the prompt)
  ?                  this help
  Ctrl-L             redraw the whole screen
  q, Esc             back to the prompt (the session and its handles are kept)

Rows: NEW ones are highlighted for a moment; GONE ones are greyed for one
refresh before they go.  Columns: namespace (indented under its owning user
namespace), type, processes, how it is held, names, command."""

STYLE = Style.from_dict({
    "header": "reverse",
    "footer": "reverse",
    "cursor": "reverse bold",
    "new": "fg:ansigreen bold",
    "gone": "fg:ansibrightblack",
    "pane": "",
    "pane.title": "bold underline",
    "status": "fg:ansiyellow",
})

HIGHLIGHT_SECONDS = 2.0


class TopModel:
    """The rows on screen and the view's state, without a screen (tested alone)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.seen: dict = {}            # key -> time first seen (0: there from the start)
        self.gone: dict = {}            # key -> refreshes since it vanished
        self.folded: set = set()
        self.type_filter: str | None = None
        self.text_filter = ""
        self.cursor_key = None
        self.loaded = False
        self.refreshes = 0

    def update(self, fresh: list[dict], now: float) -> None:
        keys = {r["key"] for r in fresh}
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
    def __init__(self, source, details, interval: float = 1.0, context=None,
                 input=None, output=None):
        self.source = source
        self.details = details
        self.interval = interval
        self.context = context or (lambda: "")
        self.model = TopModel()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pane: str | None = None       # the side pane's text (details or help)
        self.pane_title = ""
        self.status = ""
        self.error = ""
        self.filtering = False
        self.filter_buffer = Buffer(multiline=False, on_text_changed=self._filter_changed)
        self.app = self._build(input, output)

    # -- data --------------------------------------------------------------------------

    def refresh(self) -> None:
        try:
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

    def _filter_changed(self, buf: Buffer) -> None:
        with self.lock:
            self.model.text_filter = buf.text

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
        if err or self.status:
            head = [("class:status", (err or self.status) + "\n")] + head
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
                style = ""
                if r["key"] in m.gone:
                    style = "class:gone"
                    tag = " (gone)"
                elif m.is_new(r, now):
                    style = "class:new"
                    tag = " (new)"
                else:
                    tag = ""
                if i == ci:
                    style += " class:cursor"
                    out.append(("[SetCursorPosition]", ""))
                out.append((style, m.line(r) + tag))
                out.append(("", "\n"))
            return out

    def _pane(self):
        return [("class:pane.title", self.pane_title + "\n"), ("class:pane", self.pane or "")]

    def _filter_prompt(self):
        return [("bold", "/")]

    def _build(self, input, output) -> Application:
        kb = KeyBindings()
        browsing = Condition(lambda: not self.filtering)
        editing = Condition(lambda: self.filtering)
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

        @kb.add("/", filter=browsing)
        def _filter(e):
            self.filtering = True
            self.filter_buffer.text = self.model.text_filter
            self.filter_buffer.cursor_position = len(self.filter_buffer.text)
            e.app.layout.focus(self.filter_window)

        @kb.add("enter", filter=editing)
        def _keep(e):
            self.filtering = False
            e.app.layout.focus(self.rows_window)

        @kb.add("escape", filter=editing, eager=True)
        def _clear(e):
            self.filter_buffer.text = ""
            self.filtering = False
            e.app.layout.focus(self.rows_window)

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
            self.filter_buffer.text = ""

        @kb.add("enter", filter=browsing)
        def _show(e):
            if self.pane is not None and self.pane_title != "help":
                self.pane = None
                return
            with self.lock:
                r = self.model.current()
            if r is None:
                return
            self.pane_title = f"show {r['label']}"
            try:
                self.pane = self.details(r)
            except Exception as err:  # noqa: BLE001 - shown, never fatal to the view
                self.pane = f"cannot show {r['label']}: {err}"

        @kb.add("?", filter=browsing)
        def _help(e):
            if self.pane_title == "help" and self.pane is not None:
                self.pane = None
            else:
                self.pane_title, self.pane = "help", HELP

        @kb.add("escape", filter=browsing & pane_open, eager=True)
        def _close_pane(e):
            self.pane = None

        def act(verb):
            def handler(e):
                with self.lock:
                    r = self.model.current()
                if r is None or r.get("ns") is None or r["key"] in self.model.gone:
                    self.status = f"nothing to {verb} here"
                    return
                if verb == "close" and "session" not in r["held"]:
                    self.status = f"{r['label']} is not held by this session: nothing to close"
                    return
                e.app.exit(result=(verb, r["label"]))
            return handler

        kb.add("j", filter=browsing)(act("join"))
        kb.add("x", filter=browsing)(act("close"))

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
        self.filter_window = Window(BufferControl(self.filter_buffer), height=1)
        pane = ConditionalContainer(
            Window(FormattedTextControl(self._pane), width=64, wrap_lines=True,
                   style="class:pane"),
            filter=pane_open)
        body = HSplit([
            Window(FormattedTextControl(self._header), height=None, dont_extend_height=True),
            VSplit([self.rows_window, ConditionalContainer(Window(width=1, char="|"),
                                                           filter=pane_open), pane]),
            ConditionalContainer(VSplit([Window(FormattedTextControl(self._filter_prompt),
                                                width=1), self.filter_window]),
                                 filter=editing),
            Window(FormattedTextControl(lambda: [("class:footer", FOOTER)]), height=1),
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
