"""The one path every command takes: split -> look up -> parse -> call -> render.

The REPL, `-c`, script files, piped stdin and `source` all come through
run_line / run_script, so a command behaves the same wherever it is typed.
"""

from __future__ import annotations

import os
import re

from . import lexer
from .core import runner as _runner
from .errors import (RESOURCE_ERRNOS, ExitRequest, NsshellError, UsageError,
                     from_oserror, internal, one_line)
from .registry import REGISTRY, Registry
from .results import Result, Status

_VAR = re.compile(r"\$(\d|\?|#|@|\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def script_text(data: bytes, name: str) -> str:
    """The text of a script (a file, `source`, piped stdin): UTF-8, or a UsageError that
    names the line and the byte, before any of it runs."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{name}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x})",
                         "nsshell reads scripts as UTF-8: convert it (`iconv -t UTF-8`); "
                         "nothing of it was run") from None


def read_script(path: str) -> str:
    """A script file's text.  Opened without blocking (a FIFO does not hang the shell)
    and read only when it is a regular file; OSError when it cannot be opened,
    UsageError when it is not a regular file of UTF-8 text."""
    import stat
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    with open(fd, "rb", closefd=True) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{path} is not a regular file", "a script is a file of commands")
        return script_text(f.read(), path)


class Engine:
    def __init__(self, session, renderer, registry: Registry = REGISTRY, debug: bool = False,
                 argv: list[str] | None = None):
        self.session = session
        self.renderer = renderer
        self.registry = registry
        self.debug = debug
        self.argv = list(argv or [])
        self.depth = 0
        self._level = 0
        session.engine = self

    # -- variables ($1, $?, $HOME) ------------------------------------------------

    def _expand(self, line: str) -> str:
        if "$" not in line:
            return line

        def value(m: re.Match) -> str:
            key = m.group(1).strip("{}")
            if key.isdigit():
                i = int(key)
                return self.argv[i] if i < len(self.argv) else ""
            if key == "?":
                return str(self.session.last_status)
            if key == "#":
                return str(max(len(self.argv) - 1, 0))
            if key == "@":
                return " ".join(lexer.quote(a) for a in self.argv[1:])
            return os.environ.get(key, "")

        # No expansion inside single quotes.
        parts = re.split(r"('(?:[^'])*')", line)
        return "".join(p if p.startswith("'") else _VAR.sub(value, p) for p in parts)

    # -- running -------------------------------------------------------------------

    def _top(self, fn, *args) -> int:
        """Run a line or script; when the outermost one ends, end the session's `run`
        helper (core/runner.py) so nothing of it outlives the batch."""
        self._level += 1
        try:
            return fn(*args)
        finally:
            self._level -= 1
            if self._level == 0 and getattr(self.session, "runner", None) is not None:
                _runner.drop(self.session)

    def run_line(self, line: str, where: str | None = None) -> int:
        """Run every command of LINE; with errexit, stop at the first failure.
        Returns the status of the first failing command, or 0."""
        return self._top(self._run_line, line, where)

    def _run_line(self, line: str, where: str | None = None) -> int:
        first_failure = 0
        for segment in lexer.segments(line):
            try:
                commands = lexer.split(self._expand(segment))
            except NsshellError as e:
                self.report(e, where, None)
                self.session.last_status = e.status
                return first_failure or e.status
            if not commands:
                continue
            status = self.run_words(commands[0], where)
            if status and not first_failure:
                first_failure = status
                if self.session.get("errexit"):
                    break
        return first_failure

    def run_script(self, text: str, name: str) -> int:
        """Run a script's lines; where-prefixes are NAME:LINE."""
        return self._top(self._run_script, text, name)

    def _run_script(self, text: str, name: str) -> int:
        lines = text.splitlines()
        multi = len(lines) > 1
        # a long batch shows how far it got (on a terminal only; nothing in a pipe)
        with self.session.progress.task(name, total=len(lines)) as task:
            return self._run_lines(lines, name, multi, task)

    def _run_lines(self, lines: list[str], name: str, multi: bool, task) -> int:
        first_failure = 0
        i = 0
        while i < len(lines):
            start = i
            line = lines[i]
            while i + 1 < len(lines):
                if line.endswith("\\"):           # a continued line
                    i += 1
                    line = line[:-1] + lines[i]
                elif lexer.open_quote(line):      # a quote that spans lines
                    i += 1
                    line = line + "\n" + lines[i]
                else:
                    break
            i += 1
            if start == 0 and line.startswith("#!"):
                continue
            where = f"{name}:{start + 1}" if multi or name not in ("-c",) else name
            status = self.run_line(line, where)
            task.update(i)
            if status and not first_failure:
                first_failure = status
                if self.session.get("errexit"):
                    break
        return first_failure

    def run_words(self, words: list[str], where: str | None = None) -> int:
        cmd = None
        try:
            found = self.registry.lookup(words)
            if found is None:
                raise self._unknown(words)
            cmd, used = found
            if cmd.name not in _runner.KEEP and getattr(self.session, "runner", None) is not None:
                _runner.drop(self.session)  # no other command may see the `run` helper
            if cmd.params == [] and len(words) > used and self.registry.subcommands(cmd.name):
                raise self._unknown(words)
            args = words[used:]
            as_json = False
            if cmd.rest_param() is None and "--json" in args and cmd.option("--json") is None:
                # `--json` after any command that shows data: JSON for this one command
                args = [a for a in args if a != "--json"]
                as_json = True
            kwargs = cmd.parse(args, self.session)
            result = cmd.func(self.session, **kwargs)
            status = self._status(result)
            if result is not None and not isinstance(result, Status):
                self.renderer.show(result if isinstance(result, Result) else _wrap(result),
                                   as_json=as_json)
        except (ExitRequest, BrokenPipeError):  # exit, or nobody reads our output any more
            raise
        except NsshellError as e:
            self.report(e, where, cmd)
            status = e.status
        except KeyboardInterrupt:
            self.renderer.error(self._prefix(where, cmd) + "interrupted")
            status = 130
        except (OSError, MemoryError) as e:
            # A resource that ran out (fork's EAGAIN under a pids limit, EMFILE, ENOMEM)
            # is the failure it is, wherever it surfaced; any other OSError is a bug.
            err = self._resource_error(e)
            if err is None:
                err = internal(e)
                if self.debug:
                    import traceback
                    traceback.print_exc()
            self.report(err, where, cmd, trace=False)
            status = err.status
        except Exception as e:  # noqa: BLE001 - a bug must not take the shell down
            if self.debug:
                import traceback
                traceback.print_exc()
            err = internal(e)
            self.report(err, where, cmd, trace=False)
            status = err.status
        self.session.last_status = status
        return status

    def _status(self, result) -> int:
        if isinstance(result, Status):
            return result.code
        return 0

    def _unknown(self, words: list[str]) -> UsageError:
        first = words[0]
        subs = self.registry.subcommands(first)
        if subs:
            names = ", ".join(c.words[1] for c in subs)
            what = f"unknown {first} command {words[1]!r}" if len(words) > 1 else f"{first} needs a sub-command"
            return UsageError(what, f"{first} has: {names}")
        import difflib
        words = self.registry.top_words()
        close = difflib.get_close_matches(first, words, n=3, cutoff=0.6)
        close += [w for w in words if first and w.startswith(first[:2]) and w not in close]
        hint = f"did you mean: {', '.join(close[:4])}? " if close else ""
        return UsageError(f"unknown command {first!r}", hint + "`help` lists the commands")

    def _prefix(self, where: str | None, cmd) -> str:
        parts = [p for p in (where, cmd.name if cmd else None) if p]
        return "".join(f"{p}: " for p in parts)

    def report(self, e: NsshellError, where: str | None, cmd, trace: bool = True) -> None:
        if self.debug and trace:
            import traceback
            traceback.print_exc()
        # one line, whatever the words it quotes hold (a newline, an escape sequence)
        self.renderer.error(one_line(self._prefix(where, cmd) + str(e)))

    @staticmethod
    def _resource_error(e: BaseException) -> NsshellError | None:
        if isinstance(e, MemoryError):
            return NsshellError("out of memory", "end what uses it, or raise the limit")
        if isinstance(e, OSError) and e.errno in RESOURCE_ERRNOS:
            what = f"{e.filename}" if e.filename else (
                "starting a process" if e.errno == 11 else "a system resource ran out")
            return from_oserror(e, what)
        return None



def _wrap(value) -> Result:
    from .results import Message
    return Message(str(value))
