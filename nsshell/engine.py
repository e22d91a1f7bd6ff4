"""The one path every command takes: split -> look up -> parse -> call -> render.

The REPL, `-c`, script files, piped stdin and `source` all come through
run_line / run_script, so a command behaves the same wherever it is typed.
"""

from __future__ import annotations

import os

from . import lexer
from .errors import (RESOURCE_ERRNOS, ExitRequest, NsshellError, UsageError,
                     from_oserror, internal, one_line)
from .registry import REGISTRY, Registry
from .results import Result, Status



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


class _Stop(Exception):
    """errexit: a command failed; the running batch stops."""


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
        self.vars: dict[str, str] = {}     # a for loop's NAME
        self._failure = 0
        self._where = lambda n: None
        self._json = False                 # the running command was given --json
        self._next = None                  # what tells the command that runs next (next_command)
        session.attach(self)

    # -- variables ($1, $?, $HOME, a for loop's NAME) -----------------------------------

    def lookup(self, key: str) -> str:
        if key in self.vars:
            return self.vars[key]
        if key.isdigit():
            i = int(key)
            return self.argv[i] if i < len(self.argv) else ""
        if key == "?":
            return str(self.session.last_status)
        if key == "#":
            return str(max(len(self.argv) - 1, 0))
        return os.environ.get(key, "")

    def expand(self, words: list) -> list[str]:
        """The fields of a simple command's words: values are data, never code
        (lexer.expand_word); `!CMD` (as typed, not from a value) is `! CMD`: the command
        whose alias is `!` (`run`) runs CMD."""
        out: list[str] = []
        for w in words:
            out.extend(lexer.expand_word(w, self.lookup, self.argv[1:]))
        for f in out:
            lexer.check_text(f)
        first = words[0].parts[0] if words and words[0].parts else None
        if out and first is not None and first.kind == "lit" and not first.quoted \
                and first.text.startswith("!") and out[0].startswith("!") and len(out[0]) > 1:
            out = ["!", out[0][1:]] + out[1:]
        return out

    # -- running -------------------------------------------------------------------

    def _top(self, fn, *args) -> int:
        """Run a line or script; when the outermost one ends, end the session's `run`
        helper (core/proc/runner.py) so nothing of it outlives the batch."""
        self._level += 1
        try:
            return fn(*args)
        finally:
            self._level -= 1
            if self._level == 0:
                self.session.drop_helpers()

    def wants_json(self) -> bool:
        """Whether the running command's result is shown as JSON (`nsshell --json`, or
        `CMD --json`): a command that would draw on the terminal itself prints data."""
        return self._json or self.renderer.mode == "json"

    def run_line(self, line: str, where: str | None = None) -> int:
        """Run the commands of LINE (all of it is one text: quotes and blocks may span its
        lines); with errexit, stop at the first failure.  Returns the status of the first
        failing command, or 0."""
        return self._top(self._run_stream, iter([line]), lambda n: where, None)

    def run_script(self, text: str, name: str) -> int:
        """Run a script's lines; where-prefixes are NAME:LINE."""
        lines = text.splitlines(keepends=True)
        multi = len(lines) > 1
        return self.run_lines(iter(lines), name, multi, total=len(lines), ahead=True)

    def run_lines(self, lines, name: str, multi: bool = True, total: int | None = None,
                  ahead: bool = False) -> int:
        """Run the text LINES gives (an iterator of lines, e.g. a pipe read as it comes),
        each command as soon as it is complete.  AHEAD: the lines are all there (a script,
        not a pipe), so the next one may be read before the running command ends
        (next_command)."""
        def where(n: int) -> str:
            return f"{name}:{n}" if multi or name not in ("-c",) else name
        # a long batch shows how far it got (on a terminal only; nothing in a pipe)
        with self.session.progress.task(name, total=total) as task:
            return self._top(self._run_stream, lines, where, task, ahead)

    def _run_stream(self, lines, where, task, ahead: bool = False) -> int:
        saved = self._failure, self._where
        self._failure, self._where = 0, where
        back: list = []   # lines read ahead (next_command), the next one last
        after = (lambda: self._peek_line(lines, back)) if ahead else None
        try:
            buf, start, n = "", 1, 0
            while True:
                try:
                    chunk = back.pop() if back else next(lines, None)
                except NsshellError as e:     # input that cannot be read as text
                    self.report(e, None, None)
                    self.session.last_status = e.status
                    return self._failure or e.status
                if chunk is not None:
                    n += chunk.count("\n") + (0 if chunk.endswith("\n") else 1)
                    buf += chunk
                    if task is not None:
                        task.update(n)
                if not buf.strip():
                    buf, start = "", n + 1
                    if chunk is None:
                        break
                    continue
                try:
                    items = lexer.parse(buf, final=chunk is None, line=start)
                except lexer.Incomplete as e:
                    if chunk is not None:
                        continue
                    self._syntax(e, start)
                    break
                except NsshellError as e:
                    buf, start = "", n + 1
                    self._syntax(e, start)
                    continue
                buf, start = "", n + 1
                self._top_list(items, after)
                if chunk is None:
                    break
            return self._failure
        except _Stop:
            return self._failure
        finally:
            self._failure, self._where = saved

    def _syntax(self, e: NsshellError, line: int) -> None:
        self.report(e, self._where(line), None)
        self.session.last_status = e.status
        self._failed(e.status)

    def _failed(self, status: int) -> None:
        """A command failed outside any condition: the batch's status; errexit stops it."""
        if not self._failure:
            self._failure = status
        if self.session.get("errexit"):
            raise _Stop()

    # -- the language: lists, && and ||, !, for, if (sh's rules for errexit) --------------

    # -- what runs next (a batch `run` may start it early: core/proc/runner.py) -----------

    def next_command(self) -> list[str] | None:
        """The words of the command that runs right after the running one, when that is
        certain already: the running one is a plain command (one simple command: no
        `&&`, `||`, `!`, not in a block) at the top of a script or a line, and so is
        the next, whose words need no expanding (nothing in them can change before it
        runs).  Else None.  Whether it runs still depends on the running one's status
        (errexit): the caller must check that too."""
        peek = self._next
        return peek() if peek is not None else None

    def _top_list(self, items: list, after) -> int:
        """A script's (or a line's) top-level commands, in order; while a plain one runs,
        next_command() tells the next: the next item, or AFTER's (the next line's)."""
        saved = self._next
        status = 0
        try:
            for i, item in enumerate(items):
                if not _plain(item):
                    self._next = None
                elif i + 1 < len(items):
                    self._next = lambda nxt=items[i + 1]: self._plain_words(nxt)
                else:
                    self._next = after
                status = self._andor(item, False)
        finally:
            self._next = saved
        return status

    def _plain_words(self, node) -> list[str] | None:
        """NODE's fields, when it is a plain command whose words hold only text."""
        if not _plain(node):
            return None
        words = node.first.command.words
        if not words or any(p.kind != "lit" for w in words for p in w.parts):
            return None
        try:
            return self.expand(words)   # braces at most: nothing is looked up
        except NsshellError:
            return None

    def _peek_line(self, lines, back: list) -> list[str] | None:
        """The next command of a script when it is a line of its own (_plain_words), read
        ahead past blank lines and comments; what is read is put back for the loop."""
        taken: list = []
        try:
            for _ in range(16):
                chunk = back.pop() if back else next(lines, None)
                taken.append(chunk)
                if chunk is None:
                    return None
                if not chunk.strip():
                    continue
                try:
                    items = lexer.parse(chunk, final=False)
                except (lexer.Incomplete, NsshellError):
                    return None
                if not items:
                    continue   # a comment
                return self._plain_words(items[0]) if len(items) == 1 else None
            return None
        finally:
            back.extend(reversed(taken))

    def _list(self, items: list, cond: bool) -> int:
        status = 0
        for item in items:
            status = self._andor(item, cond)
        return status

    def _andor(self, node, cond: bool) -> int:
        last = len(node.rest)
        status = self._pipeline(node.first, cond or last > 0)
        for i, (op, p) in enumerate(node.rest, 1):
            if (op == "&&") == (status == 0):
                status = self._pipeline(p, cond or i < last)
        return status

    def _pipeline(self, p, cond: bool) -> int:
        status = self._command(p.command, cond or p.negate)
        if p.negate:
            status = 0 if status else 1
            self.session.last_status = status
        return status

    def _command(self, c, cond: bool) -> int:
        if isinstance(c, lexer.Simple):
            try:
                words = self.expand(c.words)
            except NsshellError as e:
                self.report(e, self._where(c.line), None)
                status = e.status
                self.session.last_status = status
            else:
                if not words:
                    return 0
                status = self.run_words(words, self._where(c.line))
            if status and not cond:
                self._failed(status)
            return status
        if isinstance(c, lexer.For):
            values: list[str] = []
            try:
                for w in c.words:
                    values.extend(lexer.expand_word(w, self.lookup, self.argv[1:]))
            except NsshellError as e:
                self._syntax(e, c.line)
                return e.status
            status = 0
            for v in values:
                self.vars[c.name] = v
                status = self._list(c.body, cond)
        else:
            status = self._if(c, cond)
        self.session.last_status = status   # $? after a block is its status (0 if none ran)
        return status

    def _if(self, c, cond: bool) -> int:
        for test, body in c.clauses:   # if / elif
            if self._list(test, True) == 0:
                return self._list(body, cond)
        return self._list(c.orelse, cond) if c.orelse else 0

    def run_words(self, words: list[str], where: str | None = None) -> int:
        cmd = None
        try:
            found = self.registry.lookup(words)
            if found is None:
                raise self._unknown(words)
            cmd, used = found
            # no other command may see the `run` or the `new` helper: nothing stale after
            # `map`, `join` ...
            self.session.drop_helpers(keep_runner=cmd.runner, keep_creator=cmd.creator)
            if len(words) > used and all(p.generic for p in cmd.params) \
                    and self.registry.subcommands(cmd.name):
                raise self._unknown(words)
            kwargs, generic = cmd.parse_all(words[used:], self.session)
            as_json = bool(generic.get("json"))   # `CMD --json`: JSON for this one command
            saved, self._json = self._json, as_json
            try:
                result = cmd.func(self.session, **kwargs)
            finally:
                self._json = saved
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



def _plain(node) -> bool:
    """One simple command: no `&&`/`||`, no `!`, no block."""
    return not node.rest and not node.first.negate and isinstance(node.first.command,
                                                                   lexer.Simple)


def _wrap(value) -> Result:
    from .results import Message
    return Message(str(value))
