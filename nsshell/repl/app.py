"""The REPL: a prompt_toolkit PromptSession loop whose every line goes to engine.run_line.

No command logic lives here: the prompt shows the context, a bottom toolbar shows
the context, the current user namespace's uid mapping and the last status, Tab
completes from the registry (nsshell.complete), history is kept in
$XDG_STATE_HOME/nsshell/history and suggested while typing (Right arrow takes
the suggestion; repl/suggest.py), Ctrl-R searches it (Enter runs the line found).  Ctrl-C clears the line, Ctrl-D leaves with
status 0, `exit N` with N.
"""

from __future__ import annotations

import os
import sys

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.styles import Style

from ..errors import ExitRequest
from ..kernel import idmap
from .completer import NsCompleter
from .suggest import HistorySuggest

STYLE = Style.from_dict({
    "prompt.context": "ansicyan bold",
    "prompt.host": "ansigreen bold",
    "prompt.mark": "",
    "bottom-toolbar": "noreverse bg:ansibrightblack fg:ansiwhite",
    "bottom-toolbar.key": "bold",
    "bottom-toolbar.ok": "fg:ansibrightgreen",
    "bottom-toolbar.bad": "fg:ansibrightred bold",
})


GLUED = frozenset({128 + 2, 128 + 3})   # a program ended by ^C or ^\ (^Z: run says so)
CONTINUATION = FormattedText([("class:prompt.mark", "> ")])


def history_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "nsshell", "history")


def open_history(path: str | None = None) -> tuple[History, str | None]:
    """FileHistory at PATH (its folder made 0700), or an in-memory one and why not."""
    path = path or history_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        return FileHistory(path), None
    except OSError as e:
        return InMemoryHistory(), f"history is not kept: {path}: {e.strerror}"


class UserMapView:
    """'uid 0->1000' for the context's user namespace, cached: a written map never changes."""

    def __init__(self, session):
        self.session = session
        self._cache: dict = {}

    def text(self) -> str:
        s = self.session
        try:
            if s.is_host("user"):
                return "uid " + idmap.format_idmap(s.uid_map(), limit=3)
            key = s.context["user"].nsid
            if key not in self._cache:
                ranges = s.uid_map()
                if not ranges:
                    return "uid unmapped (ids show as 65534)"
                self._cache[key] = "uid " + idmap.format_idmap(ranges, limit=3)
            return self._cache[key]
        except Exception:  # noqa: BLE001 - the toolbar must never break the prompt
            return "uid ?"


class Repl:
    def __init__(self, engine, *, input=None, output=None, history: History | None = None):
        self.engine = engine
        self.session = engine.session
        self.usermap = UserMapView(self.session)
        self.map_text = ""
        self._warned = False
        note = None
        if history is None:
            history, note = open_history()
        if note:
            engine.renderer.warn(note)
        if output is None and not _isatty(sys.stdout) and _isatty(sys.stderr):
            # `nsshell | tee log`: the prompt goes to the terminal, as a shell's does
            from prompt_toolkit.output import create_output
            output = create_output(stdout=sys.stderr)
        completer = NsCompleter(self.session)
        self.prompt_session = PromptSession(
            message=self.message,
            bottom_toolbar=self.toolbar,
            completer=completer,
            complete_while_typing=False,
            auto_suggest=HistorySuggest(),
            history=history,
            enable_history_search=False,
            style=STYLE,
            input=input,
            output=output,
            include_default_pygments_style=False,
            key_bindings=_bindings(completer),
        )
        _lean(self.prompt_session.app)
        _finish_in_place(self.prompt_session.app)
        _history_at_once(self.prompt_session.default_buffer)
        # once a prompt is drawn, the next `run`'s process gets ready (core/proc/standby.py)
        self.prompt_session.app.after_render += self._after_render
        self._loop = None
        self.refresh()

    def refresh(self) -> None:
        """What the toolbar shows, computed once a command has run (not at every redraw)."""
        self.map_text = self.usermap.text()

    def message(self):
        label = self.session.context_label()
        style = "class:prompt.host" if label == "host" else "class:prompt.context"
        return FormattedText([(style, label), ("class:prompt.mark", "> ")])

    def toolbar(self):
        s = self.session
        status = s.last_status
        parts = [("class:bottom-toolbar.key", " context "), ("", s.context_label()),
                 ("", "  |  "), ("", self.map_text), ("", "  |  "),
                 ("class:bottom-toolbar.key", "status "),
                 ("class:bottom-toolbar.ok" if status == 0 else "class:bottom-toolbar.bad", str(status)),
                 ("", "  |  Tab completes, Ctrl-R searches, Ctrl-D leaves ")]
        return FormattedText(parts)

    def read(self) -> str:
        """One whole command: an open quote or `for`/`if` block (or a trailing `&&`, `\\`)
        asks for more lines at a continuation prompt, as sh's PS2 does.  Ctrl-C drops
        it all (KeyboardInterrupt); Ctrl-D inside it ends it (the engine says what is open)."""
        from .. import lexer
        # What the prompt and the toolbar show changes only when a command has run:
        # made once per line, not at each of the ~7 looks a drawing takes (prompt()
        # keeps what it is given: the first line's is given each time).
        bar = self.toolbar()
        text = self._prompt(self.message(), bar)
        while text.strip() and not lexer.is_complete(text):
            try:
                more = self._prompt(CONTINUATION, bar)
            except EOFError:
                break
            text += "\n" + more
        return text

    def _prompt(self, message, toolbar) -> str:
        """PromptSession.prompt on one event loop kept for the whole REPL: prompt() runs
        each line in asyncio.run, which makes a loop (an epoll fd, a socket pair, signal
        handlers) and tears it down again, between Enter and the next prompt.  A prompt
        interrupted before its end (a signal's KeyboardInterrupt) is cancelled and
        waited for, as asyncio.run would, so the next one starts clean."""
        import asyncio
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = _event_loop()
        task = loop.create_task(self.prompt_session.prompt_async(message=message,
                                                                      bottom_toolbar=toolbar))
        try:
            return loop.run_until_complete(task)
        finally:
            if not task.done():
                task.cancel()
                try:
                    loop.run_until_complete(task)
                except BaseException:  # noqa: BLE001 - the interruption is what propagates
                    pass

    def _after_render(self, _app) -> None:
        try:
            self.session.keep_standby()
        except Exception:  # noqa: BLE001 - the prompt must not break: `run` forks instead
            pass

    def close(self) -> None:
        """What the REPL holds ends with it: the event loop, the standby."""
        self.session.keep_standby(ready=False)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()
        self._loop = None

    def may_leave(self) -> bool:
        """Whether `exit` or Ctrl-D may leave now: the first time namespaces made here and
        not persisted would end with the shell, say which (once); the next time leaves."""
        if self._warned:
            return True
        ending = sorted(n for n, s in self.session.sets.items()
                        if s.origin == "new" and not s.persisted)
        if not ending:
            return True
        self._warned = True
        shown = ", ".join(ending[:8]) + (f" and {len(ending) - 8} more" if len(ending) > 8 else "")
        self.engine.renderer.warn(f"leaving ends what this shell made and did not persist: "
                                  f"{shown}; `persist NAME` keeps one; exit (or Ctrl-D) "
                                  f"again to leave")
        return False

    def run(self) -> int:
        while True:
            try:
                text = self.read()
            except KeyboardInterrupt:
                continue          # Ctrl-C at the prompt: a fresh line
            except EOFError:
                if self.may_leave():
                    return 0      # Ctrl-D
                continue
            if not text.strip():
                continue
            try:
                self.engine.run_line(text)
            except ExitRequest as e:
                # `exit` may be asked again; a signal that ends the shell (SignalExit) may not
                if type(e) is not ExitRequest or self.may_leave():
                    return e.status
            except KeyboardInterrupt:
                self.session.last_status = 130
            finally:
                _flush()
            if self.session.last_status in GLUED and _isatty(sys.stderr):
                # the terminal echoed ^C or ^\ where the cursor was: the prompt goes
                # on a line of its own, as bash's does
                sys.stderr.write("\n")
                sys.stderr.flush()
            self.refresh()


def _bindings(completer):
    """Enter during Ctrl-R runs the line found, as bash does (not only takes it).  Tab
    completes at once, before the keys typed after it (prompt_toolkit's own Tab starts an
    asynchronous completion that keys typed ahead overtake: `ech<Tab> hi` ran `ech hi`):
    one candidate is inserted, several insert their common part and show the menu."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.completion.base import get_common_complete_suffix
    from prompt_toolkit.filters import has_completions, is_searching
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.search import accept_search
    kb = KeyBindings()

    @kb.add("enter", filter=is_searching)
    def _(event):
        accept_search()
        event.app.current_buffer.validate_and_handle()

    @kb.add("tab", filter=~is_searching & ~has_completions)
    def _(event):
        buf = event.current_buffer
        found = list(completer.get_completions(buf.document,
                                               CompleteEvent(completion_requested=True)))
        if len(found) == 1:
            buf.apply_completion(found[0])
        elif found:
            common = get_common_complete_suffix(buf.document, found)
            if common:
                buf.insert_text(common)
            else:
                buf.start_completion(select_first=False)
    return kb


def _lean(app) -> None:
    """Costs prompt_toolkit pays between Enter and the next prompt, measured (bench
    `repl`, stamps around its phases) and left out:

    - the keys of a line typed at once (`echo x` and Enter in one read) schedule a redraw
      of the still-editable prompt; Enter accepts the line, and that redraw ran anyway
      before the final ("done") one that replaces it.  A redraw asked for once the
      line is accepted is skipped; the final one is drawn as before.
    - every key looked its bindings up twice (matches, longer prefixes), and each lookup
      walked the whole layout to key its cache on the set of controls.  A PromptSession's
      layout never changes (its one DynamicContainer, the body of the optional frame,
      always gives the same input), so the set is computed once; the
      cache is still keyed on the focused window (Ctrl-R moves the focus).
    - a redraw asked for while a prompt ran (the keys of its line) and not drawn before
      its end stayed queued on the event loop the REPL keeps (Repl._prompt), and drew
      the next prompt a second time right after its first drawing.  A redraw is drawn
      for the prompt that asked for it only (_invalidate).
    - after each drawing, the events that ask for a redraw were looked for again in the
      whole layout, unhooked and hooked again; the layout never changes, so they are
      hooked once per prompt.
    - each of those lookups also walked the tree of merged, conditional and dynamic
      key-binding sets to compare their versions (bindings added since?): the versions
      are compared once per prompt and window, the flat set they gave is used until the
      prompt ends (nothing adds bindings while a prompt runs).
    """
    redraw = app._redraw

    def _redraw(render_as_done: bool = False) -> None:
        future = app.future
        if not render_as_done and future is not None and future.done():
            return
        redraw(render_as_done)
    app._redraw = _redraw
    if getattr(app, "min_redraw_interval", None) is None and hasattr(app, "_invalidated"):
        app.invalidate = lambda: _invalidate(app)
    update = getattr(app, "_update_invalidate_events", None)
    if update is not None and isinstance(getattr(app, "_invalidate_events", None), list):
        def _update_invalidate_events() -> None:
            if not app._invalidate_events:   # once per prompt (emptied at its end)
                update()
        app._update_invalidate_events = _update_invalidate_events

    registry = app.key_processor._bindings
    cache = getattr(registry, "_cache", None)
    create = getattr(registry, "_create_key_bindings", None)
    if cache is None or create is None:
        return  # another prompt_toolkit: its own lookup stays
    controls: list = []
    flat: dict = {}   # focused window -> its merged bindings, versions checked this prompt

    class _Fixed(type(registry)):
        @property
        def _key_bindings(self):
            if not controls:
                controls.extend(app.layout.find_all_controls())
            window = app.layout.current_window
            found = flat.get(window)
            if found is None:
                merged = cache.get(window, lambda: create(window, controls))
                merged._update_cache()
                found = flat[window] = getattr(merged, "_bindings2", merged)
            return found
    registry.__class__ = _Fixed
    app.on_reset += lambda _app: flat.clear()   # each prompt checks the versions again


def _finish_in_place(app) -> None:
    """The "done" drawing of an accepted line, when the screen already shows it.

    prompt_toolkit ends a prompt by drawing the whole prompt again, from its first row,
    without what only an editable line shows (the toolbar, a suggestion, menus): ~1 ms
    of every Enter, before the line runs.  When the last drawing showed this very line
    with the cursor at its end (typed and drawn, then Enter: the usual case), the same
    screen is reached by erasing what follows the cursor: the rest of its row (a
    suggestion) and every row below (the toolbar).  Anything else (a line pasted with
    its Enter and never drawn, a cursor inside the line, a search, a menu, an error, a
    new terminal size, Ctrl-C or Ctrl-D) gets prompt_toolkit's own drawing."""
    renderer = app.renderer
    render = renderer.render
    if not callable(render) or not hasattr(renderer, "_cursor_pos"):
        return   # another prompt_toolkit: its own drawing stays
    shown: list = [None]   # what the last drawing showed (_what_is_shown)

    def _render(app_, layout, is_done: bool = False) -> None:
        if is_done and _in_place(app_, shown[0]):
            shown[0] = None
            return
        render(app_, layout, is_done)
        shown[0] = None if is_done else _what_is_shown(app_)

    def _what_is_shown(app_) -> tuple:
        # all that decides what a drawing shows besides the line: a menu (it may float
        # above the line), an error, a repeat count, the focus (Ctrl-R's search)
        b = app_.current_buffer
        return (b.text, b.cursor_position, app_.layout.current_window, renderer._last_size,
                b.complete_state is None, b.validation_error is None,
                app_.key_processor.arg is None)

    def _in_place(app_, last) -> bool:
        if last is None or renderer.full_screen or app_.exit_style != "class:accepted":
            return False
        now = _what_is_shown(app_)
        text, cursor, _, size = last[:4]
        if (now[:3] != last[:3] or now[4:] != last[4:] or not all(last[4:])
                or cursor != len(text) or "\n" in text):
            return False
        out = renderer.output
        if size is None or out.get_size() != size or renderer._cursor_pos.x >= size.columns - 1:
            return False
        out.erase_end_of_line()   # a suggestion after the cursor
        out.write("\r\n")         # as prompt_toolkit leaves the line: on the next row ...
        out.erase_down()          # ... with the toolbar and anything below it gone
        out.reset_attributes()
        out.enable_autowrap()
        out.flush()
        renderer.reset()
        return True

    renderer.render = _render


def _history_at_once(buffer) -> None:
    """Up and Ctrl-R walk the buffer's copy of the history, which prompt_toolkit fills
    again at every prompt (the buffer is reset) from a task taking the history one
    entry per await: ~5 ms of the shell's time after each prompt with 50 000 entries,
    taken from the keys typed next.  Once the history is loaded (the first prompt), the
    copy is made in one step, in the same order."""
    from prompt_toolkit.history import History
    history = buffer.history
    load = buffer.load_history_if_not_yet_loaded

    def load_at_once() -> None:
        strings = getattr(history, "_loaded_strings", None)
        if (buffer._load_history_task is not None or getattr(history, "_loaded", False) is not True
                or type(history).load is not History.load or not isinstance(strings, list)):
            load()
            return
        import asyncio
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        buffer._load_history_task = done
        buffer._working_lines.extendleft(strings)   # newest first: the oldest ends leftmost
        buffer._Buffer__working_index += len(strings)
    buffer.load_history_if_not_yet_loaded = load_at_once


def _event_loop():
    """The REPL's event loop.  Each prompt adds and removes its SIGINT and SIGWINCH
    handlers (loop.add_signal_handler), and asyncio checks each signal number against
    signal.valid_signals(), which builds a set of ~64 Signals enums every time: ~70 us a
    check, four checks a line (~0.3 ms between Enter and the next prompt).  The set a
    process may catch never changes: this loop checks against one made once, with
    asyncio's errors."""
    import asyncio
    import signal
    loop = asyncio.new_event_loop()
    if callable(getattr(loop, "_check_signal", None)):
        valid = frozenset(signal.valid_signals())

        def _check_signal(sig) -> None:
            if not isinstance(sig, int):
                raise TypeError(f"sig must be an int, not {sig!r}")
            if sig not in valid:
                raise ValueError(f"invalid signal number {sig}")
        loop._check_signal = _check_signal
    return loop


def _invalidate(app) -> None:
    """Application.invalidate (no min_redraw_interval), whose redraw is dropped once
    the prompt that asked for it has ended.  Asked from the loop's own thread (keys,
    the prompt's events), the redraw is queued with call_soon: call_soon_threadsafe
    also wrote to the loop's self-pipe, which woke the loop once more to read it, for
    each invalidation and each postponement of its redraw (~10 a line).  From another
    thread it is queued as before."""
    import asyncio
    import time
    loop = app.loop
    if not app._is_running or loop is None or loop.is_closed() or app._invalidated:
        return
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    soon = loop.call_soon if here else loop.call_soon_threadsafe
    app._invalidated = True
    soon(app.on_invalidate.fire)
    future = app.future

    def redraw() -> None:
        if future is not None and app.future is not future:
            # asked by a prompt that has ended: the next one draws itself (and cleared
            # _invalidated as it started)
            return
        app._invalidated = False
        app._redraw()
    postpone = app.max_render_postpone_time
    if postpone is None:
        soon(redraw)
        return
    until = time.time() + postpone

    def schedule() -> None:
        # as prompt_toolkit's call_soon_threadsafe(max_postpone_time=): drawn once no
        # other callback is ready, or when the time is up; this runs on the loop
        if not getattr(loop, "_ready", ()) or time.time() > until:
            redraw()
            return
        loop.call_soon(schedule)
    soon(schedule)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def run_repl(engine, *, input=None, output=None, history: History | None = None) -> int:
    """The interactive loop; returns the exit status."""
    repl = Repl(engine, input=input, output=output, history=history)
    try:
        return repl.run()
    finally:
        repl.close()
