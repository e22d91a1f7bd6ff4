"""nsshell: an interactive shell and scripting language for Linux namespaces.

From Python (docs/python.md):

    import nsshell
    with nsshell.Session() as s:
        s.run("new net as a --no-join")

The API (nsshell.api) is imported on first use of one of its names, so that
`import nsshell` stays cheap for the command line.
"""

from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (~6 ms with re, enum)

from .version import __version__

# name -> module that defines it; loaded on first access (PEP 562)
_LAZY = {
    "Session": "api", "Completed": "api", "CommandFailed": "api", "InternalError": "api",
    "NsshellError": "errors", "UsageError": "errors", "NotFoundError": "errors",
    "KernelError": "errors", "ProgramNotFound": "errors", "StaleError": "errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and editors; nothing is imported at run time
    from typing import Any

    from .api import CommandFailed, Completed, InternalError, Session
    from .errors import (KernelError, NotFoundError, NsshellError, ProgramNotFound,
                         StaleError, UsageError)


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nsshell' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
