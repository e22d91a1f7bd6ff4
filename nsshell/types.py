"""Parameter types: each parses a word and offers completions for it.

A type's `parse(text, session)` returns the value handed to the command (or
raises ValueError with a short reason); `complete(prefix, session)` returns
(candidate, description) pairs; `hint(session)` says what would have been valid.
"""

from __future__ import annotations

import os
from typing import Any

from .core.ns.handle import NsSet
from .errors import NotFoundError, UsageError
from .kernel import nstypes


class ParamType:
    metavar = ""
    type_prefix = False   # True: `TYPE VALUE` may fill this one parameter (Ref)

    def parse(self, text: str, session) -> Any:
        return text

    def complete(self, prefix: str, session) -> list[tuple[str, str]]:
        return []

    def hint(self, session) -> str | None:
        return None


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

    def complete(self, prefix, session):
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

    def complete(self, prefix, session):
        head, _, last = prefix.rpartition("+")
        done = set(head.split("+")) if head else set()
        out = [((head + "+" if head else "") + n, TYPE_HELP[n])
               for n in nstypes.NAMES if n.startswith(last) and n not in done]
        if not head and "all".startswith(last):
            out.append(("all", "all eight types"))
        return out


class NsType(ParamType):
    """Exactly one namespace type."""
    metavar = "TYPE"

    def parse(self, text, session):
        try:
            return nstypes.get(text)
        except KeyError:
            raise ValueError(f"unknown namespace type (valid: {' '.join(nstypes.NAMES)})") from None

    def complete(self, prefix, session):
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

    def complete(self, prefix, session):
        return session.ref_candidates(prefix)

    def hint(self, session):
        return "`handles` lists the names this session knows"


class NewName(ParamType):
    metavar = "NAME"

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

    def complete(self, prefix, session):
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
            try:
                with open(f"/proc/{entry}/comm") as f:
                    out.append((entry, f.read().strip()))
            except OSError:
                continue
    out.sort(key=lambda c: int(c[0]))
    return out[:200]


class Path(ParamType):
    metavar = "PATH"

    def __init__(self, metavar: str = "PATH", dirs_only: bool = False):
        self.metavar = metavar
        self.dirs_only = dirs_only

    def complete(self, prefix, session):
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

    def complete(self, prefix, session):
        if "/" in prefix:
            return complete_path(prefix)
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
