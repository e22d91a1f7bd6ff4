"""nsshell from Python: the same engine as `nsshell -c`, with data instead of text.

    import nsshell

    with nsshell.Session() as s:
        s.run("new net as a --no-join; new net as b --no-join; net veth a b")
        print(s.show("a")["types"])

A Session is an nsshell session (nsshell/session.py) driven by the engine
(nsshell/engine.py) exactly as `nsshell -c TEXT` drives it; only the renderer
differs: the data each command would print with `--json` is returned, after
the same conversion to JSON (so it is equal to what `nsshell --json -c`
prints), and an error is raised as the nsshell.errors exception the command
raised, whose `.status` is the exit status the CLI would give.  See
docs/python.md.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import _signal
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from . import lexer
from .errors import (ExitRequest, KernelError, NotFoundError, NsshellError,
                     ProgramNotFound, StaleError, UsageError)
from .render import Renderer
from .results import Result, Status, jsonable

__all__ = ["Session", "Completed", "NsshellError", "UsageError", "NotFoundError",
           "KernelError", "ProgramNotFound", "StaleError", "CommandFailed", "InternalError"]

log = logging.getLogger("nsshell")


class CommandFailed(NsshellError):
    """A line ended with a non-zero status and no error message: a program `run` exited
    non-zero (`.status` is its status, 128+N if killed by signal N), or `exit N`."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.args = (message, status)
        self.status = status


class InternalError(NsshellError):
    """A bug in nsshell or a plugin (the CLI says `internal error`, status 70); the
    original exception is the __cause__."""
    status = 70


@dataclass
class Completed:
    """What run_program() returns, like subprocess.CompletedProcess."""
    argv: list[str]
    status: int
    stdout: str | None = None
    stderr: str | None = None

    @property
    def returncode(self) -> int:
        return self.status

    def check(self) -> "Completed":
        """Raise CommandFailed if the status is not 0; else return self."""
        if self.status:
            raise CommandFailed(f"{self.argv[0]} exited with status {self.status}", self.status)
        return self


@dataclass
class _Outcome:
    status: int = 0
    docs: list[Any] = field(default_factory=list)
    errors: list[tuple[str, BaseException | None]] = field(default_factory=list)
    stdout: str | None = None
    stderr: str | None = None


_PERSISTED = re.compile(r"^(\S+): [a-z ]+ kept at ([^\s;]+)")


class _Collector(Renderer):
    """The renderer of an API session: keeps each result's --json data, and each error
    with the exception being handled when the engine reported it."""

    def __init__(self, owner: "Session") -> None:
        super().__init__(out=io.StringIO(), err=io.StringIO(), mode="json")
        self.owner = weakref.ref(owner)
        self.outcome = _Outcome()

    def show(self, result: Result, as_json: bool = False, *args, **kwargs) -> None:
        if isinstance(result, Status):
            return
        # through JSON and back: exactly the values `--json` prints (tuples as lists, ...)
        self.outcome.docs.append(json.loads(json.dumps(jsonable(result.json()))))
        owner = self.owner()
        if owner is not None:
            owner._saw(result)

    def error(self, text: str) -> None:
        self.outcome.errors.append((text, sys.exc_info()[1]))

    def warn(self, text: str) -> None:
        owner = self.owner()
        if owner is not None:
            owner.warnings.append(text)
        log.warning("%s", text)


class Session:
    """An nsshell session: the handles it holds, their names, the current context.

    Lines run as `nsshell -c` runs them (errexit on: the first failure stops the
    line).  Not thread-safe: use one Session per thread, or a lock.  Handles
    close (and namespaces nothing else holds end) on close(), at the end of a
    `with` block, when the Session is collected, and at interpreter exit.
    """

    def __init__(self, *, plugins: bool = True, keep_going: bool = False,
                 capture: bool = False, terminal: bool = False, debug: bool = False) -> None:
        """plugins: load nsshell's plugins (net, mount, ...), as the CLI does.
        keep_going: as `nsshell -k`: a failing command does not stop the line.
        capture: capture the output of programs `run` starts (else they write to this
        process's stdout/stderr, as in the CLI); per call with run(..., capture=).
        terminal: hand this process's terminal to programs, as the interactive shell
        does (default: no, as `nsshell -c` in a pipe: they run in the background
        process group and Ctrl-C reaches them through this process)."""
        from . import commands  # noqa: F401 - registers the built-ins
        from .engine import Engine
        from .session import Session as _Session
        if plugins:
            from .cli import _load_plugins
            _load_plugins()
        self._lock = threading.RLock()
        self.warnings: list[str] = []
        self.capture = capture
        self._persisted: dict[str, str] = {}
        self._closed = False
        from .cli import persist_root
        from .commands.persist import install
        root = persist_root()  # as the CLI decides it: $NSSHELL_PERSIST_ROOT or the default
        self._session = _Session(interactive=False)
        install(self._session, root)
        if keep_going:
            self._session.settings["errexit"].value = False
        if not terminal:
            self._session.terminal.fd = None
        # A signal forwarded to a program is given back to this process afterwards
        # (its handler, or the default action): see _redeliver.
        self._session.terminal.exit_after = frozenset({_signal.SIGTERM, _signal.SIGHUP,
                                                       _signal.SIGQUIT, _signal.SIGINT})
        self._renderer = _Collector(self)
        self._engine = Engine(self._session, self._renderer, debug=debug, argv=["nsshell"])
        # closes the handles when the Session is collected, or at interpreter exit
        self._finalizer = weakref.finalize(self, _Session.close_all, self._session)

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Close every handle the session holds; end its helpers.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def session(self):
        """The underlying nsshell.session.Session (sets, context, settings)."""
        return self._session

    @property
    def last_status(self) -> int:
        """`$?`: the status of the last command run."""
        return self._session.last_status

    @property
    def persisted(self) -> dict[str, str]:
        """What this session persisted and has not unpersisted: {name: path}."""
        return dict(self._persisted)

    # -- running lines --------------------------------------------------------------

    def run(self, text: str, *, check: bool = True, capture: bool | None = None) -> Any:
        """Run TEXT (one or several commands, `;`- or newline-separated) as `nsshell -c`
        does, and return the data `nsshell --json -c TEXT` prints: None when no command
        has data, the one document when one has, a list of them (in order) when several
        have (run_all() always gives the list).

        Raises the nsshell.errors exception of the first failing command (its `.status`
        is the CLI's exit status), or CommandFailed when a line fails without an error
        (a program's non-zero status); with check=False, returns the data regardless
        (the status is then in last_status)."""
        docs = self.run_all(text, check=check, capture=capture)
        if not docs:
            return None
        return docs[0] if len(docs) == 1 else docs

    def run_all(self, text: str, *, check: bool = True, capture: bool | None = None) -> list[Any]:
        """As run(), but always the list of documents, one per command that has data."""
        return self._checked(self._run(text, capture), check).docs

    def _run(self, text: str, capture: bool | None) -> _Outcome:
        with self._lock:
            if self._closed:
                raise NsshellError("this nsshell session is closed", "start a new Session()")
            out = self._renderer.outcome = _Outcome()
            redeliver = None
            with _Captured(self.capture if capture is None else capture) as cap:
                try:
                    out.status = self._engine.run_script(text, "-c")
                except ExitRequest as e:  # `exit N`, or a forwarded signal ended the run
                    out.status = self._session.last_status = e.status
                    redeliver = getattr(e, "signum", None)
            out.stdout, out.stderr = cap.stdout, cap.stderr
            if redeliver is not None:
                # What would have happened to this process without the program: its own
                # handler runs (KeyboardInterrupt for SIGINT), or the default action.
                _signal.raise_signal(redeliver)
            return out

    def _checked(self, out: _Outcome, check: bool) -> _Outcome:
        if not check or out.status == 0:
            return out
        if out.errors:
            text, exc = out.errors[0]
            if isinstance(exc, NsshellError):
                exc.where = text  # the line the CLI prints, without "nsshell: "
                raise exc
            if isinstance(exc, KeyboardInterrupt):
                raise exc
            if exc is not None:
                raise InternalError(text) from exc
            err = NsshellError(text)
            err.status = out.status
            raise err
        raise CommandFailed(f"the line ended with status {out.status}", out.status)

    def _saw(self, result: Result) -> None:
        from .results import Message
        if isinstance(result, Message):
            m = _PERSISTED.match(result.text)
            if m:
                self._persisted[m.group(1)] = m.group(2)
            elif result.text.startswith("unpersisted "):
                name = result.text.split()[1].rstrip(":")
                for k, v in list(self._persisted.items()):
                    if name in (k, v):
                        del self._persisted[k]

    # -- helpers for the common commands -------------------------------------------------

    def new(self, types: str | Iterable[str], name: str | None = None, join: bool = True,
            options: Sequence[str] = ()) -> dict:
        """`new TYPES [as NAME] [--no-join] [OPTIONS]`: create namespaces and hold them
        (and join them, unless join=False).  Returns {"name": the set's name,
        "message": what `new --json` prints as its message, "handles": the set's rows
        of `handles --json`}."""
        types = types if isinstance(types, str) else "+".join(types)
        words = ["new", types] + (["as", name] if name else []) + ([] if join else ["--no-join"])
        done = self.run(_line(words + list(options)))
        message = done.get("message", "") if isinstance(done, dict) else ""
        made = name or message.split(":", 1)[0]
        rows = [h for h in (self.handles() or {}).get("handles", []) if h.get("name") == made]
        return {"name": made, "message": message, "handles": rows}

    def ls(self, types: str | Iterable[str] | None = None) -> dict:
        """`ls [TYPES]`: every namespace on the system ({"namespaces": [...]})."""
        words = ["ls"]
        if types:
            words.append(types if isinstance(types, str) else "+".join(types))
        return self.run(_line(words))

    def show(self, ref: str) -> dict:
        """`show REF`: one namespace or set, with its state."""
        return self.run(_line(["show", ref]))

    def handles(self) -> dict:
        """`handles`: what this session holds."""
        return self.run("handles")

    def ctx(self) -> dict:
        """`ctx`: the current context."""
        return self.run("ctx")

    def join(self, ref: str, types: str | None = None) -> Any:
        return self.run(_line(["join"] + ([types] if types else []) + [ref]))

    def leave(self, types: str | None = None) -> Any:
        return self.run(_line(["leave"] + ([types] if types else [])))

    def close_ref(self, ref: str) -> Any:
        """`close REF` (close() ends the whole session)."""
        return self.run(_line(["close", ref]))

    def persist(self, ref: str, name: str | None = None) -> Any:
        return self.run(_line(["persist", ref] + (["as", name] if name else [])))

    def unpersist(self, ref: str, *, force: bool = False) -> Any:
        return self.run(_line(["unpersist"] + (["--force"] if force else []) + [ref]))

    def run_program(self, argv: Sequence[str], *, capture: bool = True,
                    check: bool = False) -> Completed:
        """`run ARGV...` in the current context: the program's status and, with capture
        (the default), its stdout and stderr as text.  A program that is not there raises
        ProgramNotFound (status 127; 126 if not executable); check=True raises
        CommandFailed for a non-zero status, as subprocess.run(check=True) does."""
        argv = [str(a) for a in argv]
        if not argv:
            raise UsageError("missing CMD", "run_program(['prog', 'arg', ...])")
        out = self._run(_line(["run"] + argv), capture)
        if out.errors:
            self._checked(out, True)
        done = Completed(argv, out.status, out.stdout, out.stderr)
        return done.check() if check else done


def _line(words: Sequence[str]) -> str:
    return " ".join(lexer.quote(w) for w in words)


class _Captured:
    """Capture fds 1 and 2 (what programs write) into files for the length of a call."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.stdout: str | None = None
        self.stderr: str | None = None

    def __enter__(self) -> "_Captured":
        if not self.on:
            return self
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        self._files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._files[0].fileno(), 1)
        os.dup2(self._files[1].fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        if not self.on:
            return
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        texts = []
        for fd, f in zip(self._saved, self._files):
            os.close(fd)
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        self.stdout, self.stderr = texts

