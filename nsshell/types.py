"""Parameter types: each parses a word and offers completions for it.

A type's `parse(text, session)` returns the value handed to the command (or
raises ValueError with a short reason); `complete(prefix, session, ctx)` returns
its candidates for a word starting with PREFIX, as (candidate, description) pairs
or `Candidate`s (which also say what follows an accepted candidate); `hint(session)`
says what would have been valid.  Completion asks only the type of the parameter
under the cursor (nsshell/complete.py): what a parameter offers is its type's business.
"""

from __future__ import annotations

import os
from .kernel.values import Frozen

from .core.ns.handle import NsSet
from .errors import NotFoundError, UsageError
from .kernel import nstypes, procfs

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any


class Candidate(Frozen):
    text: str            # what replaces the word being typed
    meta: str = ""       # a one-line description shown beside it
    suffix: str = " "    # appended when accepted ('' when the word may go on: dirs, TYPES)

    _fields = ("text", "meta", "suffix")

    def __init__(self, text, meta="", suffix=" ") -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "suffix", suffix)


class Ctx(dict):
    """What a type's `complete` knows of the line: the words already typed for the command,
    by parameter name (a list for a parameter that takes several words, e.g. the REF
    before an interface name is `ctx["ref"]`); OWN, the words already typed for the
    parameter being completed (`run cat /e<Tab>`: ["cat"]); REGISTRY, the commands."""

    def __init__(self, words: dict | None = None, own: list[str] | None = None,
                 registry=None):
        super().__init__(words or {})
        self.own = list(own or [])
        self.registry = registry


def _param_names(fn) -> list[str]:
    """The names of FN's parameters, *args and **kwargs included, as inspect.signature
    lists them (read from the code object: inspect costs milliseconds to import)."""
    code = getattr(fn, "__code__", None)
    if code is None or hasattr(fn, "__wrapped__") or hasattr(fn, "__signature__"):
        import inspect
        return list(inspect.signature(fn).parameters)
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)   # CO_VARARGS, CO_VARKEYWORDS
    names = list(code.co_varnames[:n])
    if code.co_flags & 0x04 and code.co_kwonlyargcount:
        # the order inspect gives: positional, *args, keyword-only, **kwargs
        pos = code.co_argcount
        kw = names[pos:pos + code.co_kwonlyargcount]
        names[pos:pos + code.co_kwonlyargcount + 1] = [names[pos + code.co_kwonlyargcount]] + kw
    return names


class ParamType:
    metavar = ""
    type_prefix = False   # True: `TYPE VALUE` may fill this one parameter (Ref)
    gives_name = False    # True: the word is a name the command gives (`new ... as NAME`)
    help = ""             # what a word of this type is, where a docstring says nothing else

    def parse(self, text: str, session) -> Any:
        return text

    def complete(self, prefix: str, session, ctx: Ctx) -> list:
        """Candidates for a word starting with PREFIX; none by default (a number, an
        address, a free word: nothing to offer)."""
        return []

    def __init_subclass__(cls, **kwargs):
        """A third-party plugin's type written for the older forms, `complete(prefix,
        session)` or `complete(prefix, session, *, args=None)`, is given the one form here,
        once (the plugin API keeps working for them; nsshell's own types use the one form)."""
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("complete")
        if fn is None:
            return
        params = _param_names(fn)[1:]
        if "args" in params:
            def complete(self, prefix, session, ctx=None, _fn=fn):
                return _fn(self, prefix, session, args=ctx)
        elif len(params) == 2:
            def complete(self, prefix, session, ctx=None, _fn=fn):
                return _fn(self, prefix, session)
        else:
            return
        complete.__doc__ = fn.__doc__
        cls.complete = complete

    def hint(self, session) -> str | None:
        return None

    @property
    def completes(self) -> bool:
        """Whether this type offers candidates at all (False: deliberately none, as a
        number or a new name); a test asks every declared parameter's type."""
        return type(self).complete is not ParamType.complete


class Word(ParamType):
    metavar = "WORD"

    def __init__(self, metavar: str = "WORD"):
        self.metavar = metavar


class Int(ParamType):
    metavar = "N"

    def __init__(self, metavar: str = "N", minimum: int | None = None):
        self.metavar = metavar
        self.minimum = minimum

    def parse(self, text, session):
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError("not a whole number") from None
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum}")
        return value


class Seconds(ParamType):
    metavar = "SECONDS"

    def parse(self, text, session):
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number of seconds")
        return value

    def hint(self, session):
        return "a (finite) number of seconds, e.g. 86400, -1.5"


class Choice(ParamType):
    def __init__(self, *choices: str, metavar: str | None = None, help: dict | None = None):
        self.choices = choices
        self.metavar = metavar or "|".join(choices)
        self.help = help or {}

    def parse(self, text, session):
        if text not in self.choices:
            raise ValueError(f"not one of {', '.join(self.choices)}")
        return text

    def complete(self, prefix, session, ctx=None):
        return [(c, self.help.get(c, "")) for c in self.choices if c.startswith(prefix)]


TYPE_HELP = {
    "user": "user and group ids, capabilities", "mnt": "mount table",
    "pid": "process ids", "net": "network stack", "uts": "host and domain name",
    "ipc": "System V IPC, POSIX queues", "cgroup": "cgroup root", "time": "clock offsets",
}


class NsTypes(ParamType):
    """user+mnt+net, all, mount (= mnt)."""
    metavar = "TYPES"

    def parse(self, text, session):
        try:
            return nstypes.parse(text)
        except ValueError as e:
            raise ValueError(f"unknown namespace type {str(e)!r} "
                             f"(valid: {' '.join(nstypes.NAMES)}, all)") from None

    def complete(self, prefix, session, ctx=None):
        head, _, last = prefix.rpartition("+")
        done = set(head.split("+")) if head else set()
        # no space after a type: `user+mnt` may go on with +net
        out = [Candidate((head + "+" if head else "") + n, TYPE_HELP[n], "")
               for n in nstypes.NAMES if n.startswith(last) and n not in done]
        if not head and "all".startswith(last):
            out.append(Candidate("all", f"all {len(nstypes.NAMES)} types"))
        return out


class NsType(ParamType):
    """Exactly one namespace type."""
    metavar = "TYPE"

    def parse(self, text, session):
        try:
            return nstypes.get(text)
        except KeyError:
            raise ValueError(f"unknown namespace type (valid: {' '.join(nstypes.NAMES)})") from None

    def complete(self, prefix, session, ctx=None):
        return [(n, TYPE_HELP[n]) for n in nstypes.NAMES if n.startswith(prefix)]


def is_types_word(text: str) -> bool:
    """Whether TEXT reads as TYPES (net, user+mnt, all): the TYPE of `TYPE REF`."""
    try:
        nstypes.parse(text)
    except ValueError:
        return False
    return bool(text)


class Picked(NsSet):
    """TYPES of a set, as `TYPE REF` names them (`net box`); WHOLE is the set itself, so
    that a command acting on held sets (`close net box`) acts on only those handles."""
    __slots__ = ("whole",)

    def __init__(self, whole: NsSet, types):
        picked = whole.pick(types)
        super().__init__(picked.name, picked.handles, picked.origin)
        self.persisted = whole.persisted
        self.whole = whole


class Ref(ParamType):
    """A namespace reference: name, persisted name, pid:N, host, path, TYPE:[INODE].

    Wherever a REF is taken, `TYPE REF` picks those types of it (`show net box`): the
    parser hands both words to parse_typed when the first reads as TYPES and a word is
    to spare (registry.Command.plan_positionals)."""
    metavar = "REF"
    type_prefix = True
    help = "a name, pid:N, host, a path or TYPE:[INODE] (TYPE REF: those types of it)"

    def parse(self, text, session):
        try:
            return session.resolve(text)
        except NotFoundError:
            if is_types_word(text):
                raise UsageError(f"{text!r} is a namespace type, not a REF",
                                 f"`TYPE REF` picks that type of a set, e.g. `{text} box`; "
                                 "a REF is a name, pid:N, host, a path or TYPE:[INODE]") from None
            raise

    def parse_typed(self, types_text: str, text: str, session) -> NsSet:
        """`TYPE REF`: the TYPES (user+net, all) of REF."""
        types = NsTypes().parse(types_text, session)
        ref = self.parse(text, session)
        return Picked(getattr(ref, "whole", ref), types)

    def complete(self, prefix, session, ctx=None):
        """Every REF form that can start with PREFIX: the session's names and `host`, the
        forms extensions add (persisted names, a plugin's `podman:`...), `pid:N` or a bare
        number, a path (/proc/PID/ns/TYPE, a bind mount), `TYPE:[INODE]` of held handles."""
        sets = session.sets
        out = []
        for text, meta in session.ref_candidates(prefix):
            if text in sets:
                meta = f"held set: {' '.join(sets[text].handles)}"
            # a REF scheme (pid:, podman:) goes on after its colon
            out.append(Candidate(text, meta, "" if text.endswith(":") else " "))
        if prefix.startswith("pid:") or prefix.isdigit():
            lead = "pid:" if prefix.startswith("pid:") else ""
            out += [Candidate(lead + pid, comm) for pid, comm in complete_pids(prefix[len(lead):])]
        elif prefix and "pid:".startswith(prefix):
            out.append(Candidate("pid:", "the namespaces of a process", ""))
        if "/" in prefix or prefix[:1] in ("~", "."):
            out += [Candidate(t, m, "" if t.endswith("/") else " ")
                    for t, m in complete_path(prefix)]
        elif ":" in prefix or "[" in prefix or any(n.startswith(prefix) for n in nstypes.NAMES):
            if prefix:
                held = {str(h.nsid): name or "held" for name, h in session.held()}
                out += [Candidate(label, f"held by {name}") for label, name in sorted(held.items())
                        if label.startswith(prefix)]
        return out

    def hint(self, session):
        return "`handles` lists the names this session knows"


class NewName(ParamType):
    """A name the command gives (`new ... as NAME`, `name REF NEWNAME`): nothing to offer,
    but an earlier command of the same line makes it known (complete.names_made_earlier)."""
    metavar = "NAME"
    gives_name = True

    def parse(self, text, session):
        return session.check_new_name(text)

    def hint(self, session):
        from .names import RULE
        return RULE


class Pid(ParamType):
    metavar = "PID"

    def parse(self, text, session):
        t = text[4:] if text.startswith("pid:") else text
        if not t.isdigit() or int(t) <= 0:
            raise ValueError("not a process id")
        pid = int(t)
        if not os.path.exists(f"/proc/{pid}"):
            raise ValueError("no such process")
        return pid

    def complete(self, prefix, session, ctx=None):
        return complete_pids(prefix)


def complete_pids(prefix: str) -> list[tuple[str, str]]:
    """Process ids starting with PREFIX, each with its command name, lowest first."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit() and entry.startswith(prefix):
            st = procfs.stat(entry)
            if st is not None:
                out.append((entry, st.comm))
    out.sort(key=lambda c: int(c[0]))
    return out[:200]


class Path(ParamType):
    metavar = "PATH"

    def __init__(self, metavar: str = "PATH", dirs_only: bool = False):
        self.metavar = metavar
        self.dirs_only = dirs_only

    def complete(self, prefix, session, ctx=None):
        return complete_path(prefix, self.dirs_only)


def complete_path(prefix: str, dirs_only: bool = False) -> list[tuple[str, str]]:
    head, tail = os.path.split(os.path.expanduser(prefix))
    base = head or "."
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    out = []
    for e in sorted(entries):
        if not e.startswith(tail) or (e.startswith(".") and not tail.startswith(".")):
            continue
        full = os.path.join(head, e) if head else e
        is_dir = os.path.isdir(os.path.join(base, e))
        if dirs_only and not is_dir:
            continue
        out.append((full + ("/" if is_dir else ""), "directory" if is_dir else ""))
    return out[:200]


class ProgramName(ParamType):
    """The program of `run`: completes from $PATH."""
    metavar = "CMD"

    def complete(self, prefix, session, ctx=None):
        if getattr(ctx, "own", None) or "/" in prefix:
            return complete_path(prefix)    # the program's arguments, or a program by path
        seen = set()
        for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
            try:
                for e in os.listdir(d):
                    if e.startswith(prefix):
                        seen.add(e)
            except OSError:
                continue
        return [(e, "") for e in sorted(seen)[:200]]


def type_for(py_type) -> ParamType:
    """The parameter type for a plain Python annotation."""
    if py_type is int:
        return Int()
    if py_type is float:
        return Seconds()
    return Word()
