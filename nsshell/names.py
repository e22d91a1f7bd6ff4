"""The one name rule: names of session sets and of persisted sets alike.

A name is one safe path component (it becomes /run/nsshell/NAME and
/run/netns/NAME) that can never be read as something else on a command line:
not a pid (it starts with a letter or _), not a TYPE:[INODE] or a path (no ':'
or '/'), not a word of the language.
"""

from __future__ import annotations

from .kernel import nstypes

MAX = 64
# [A-Za-z_][A-Za-z0-9_.-]{0,MAX-1}, checked without re (start-up: see PATTERN below)
_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | frozenset("0123456789.-")
RESERVED = frozenset({"host", "all", "as", "via", "default"} | set(nstypes.NAMES)
                     | set(nstypes.ALIASES))
RULE = (f"a name starts with a letter or _, then letters, digits, _ . or - ({MAX} characters "
        f"at most), and is none of: {', '.join(sorted(RESERVED))}")


def problem(name: str) -> str | None:
    """Why NAME cannot be a name (None when it can)."""
    if not name:
        return "a name cannot be empty"
    if len(name) > MAX:
        return f"a name is {MAX} characters at most"
    if name[0] not in _FIRST:
        return ("a name starts with a letter or _" +
                (" (a number would be read as a pid)" if name[0].isdigit() else ""))
    if not _REST.issuperset(name):
        return "a name has only letters, digits, _ . or - after its first character"
    if name in RESERVED:
        return f"{name!r} is reserved"
    return None


def valid(name: str) -> bool:
    return problem(name) is None


def check(name: str) -> str:
    """NAME, or ValueError saying which part of the rule it breaks."""
    why = problem(name)
    if why is not None:
        raise ValueError(why)
    return name


def __getattr__(attr: str):
    # PATTERN, the rule as a regular expression, for whoever wants one: compiled on
    # first use, so that a batch does not import re to start
    if attr == "PATTERN":
        import re
        return re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,%d}" % (MAX - 1))
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
