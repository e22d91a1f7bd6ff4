"""Built-in commands, grouped by subject.  Importing this package makes them known.

Start-up imports none of the modules here: the registry knows every built-in
command by name from nsshell/command_index.py (generated, with the man page and
the completion scripts, by `python -m nsshell.docgen`; a test fails when it is
stale) and imports a command's module on the first lookup of one of its
commands.  A module that adds to an extension point when imported (session
settings, names for `ls`: extension_points) is imported here, so that what it
adds is there from the start.
"""

from __future__ import annotations

import os

from .. import command_index as _index
from ..registry import REGISTRY, Registry

REGISTRY.defer(_index.COMMANDS, _index.ALIASES)
for _module in _index.EAGER:
    __import__(_module)   # (importlib.import_module is invisible to `python -X importtime`)


def modules() -> list[str]:
    """Every module of this package (from the files, not the index: a module the index
    does not know yet is found too)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(f"{__name__}.{n[:-3]}" for n in os.listdir(here)
                  if n.endswith(".py") and n != "__init__.py")


def load_all() -> None:
    """Import every built-in command module (docgen, and `help` through the registry)."""
    for module in modules():
        __import__(module)
    REGISTRY.load_all()


def extension_points() -> dict[str, list]:
    """What a module may add to when imported, beside commands: session settings and
    resolvers (INIT_HOOKS), names for `ls` (NAME_SOURCES), what runs when a handle
    closes (CLOSE_HOOKS), state readers for `show`/`diff`.  A built-in module that adds
    to one of them must be imported at start-up (EAGER): otherwise what it adds would
    be missing until one of its commands ran."""
    from ..core.look import discover, nsstate
    from ..core.ns import handle
    from ..session import INIT_HOOKS
    readers = [k.reader for keys in nsstate._REGISTRY.values() for k in keys.values()]  # noqa: SLF001
    return {"INIT_HOOKS": list(INIT_HOOKS), "NAME_SOURCES": list(discover.NAME_SOURCES),
            "CLOSE_HOOKS": list(handle.CLOSE_HOOKS), "state readers": readers}


def render_index(registry: Registry = REGISTRY) -> str:
    """The text of nsshell/command_index.py for the built-ins declared now (load_all first)."""
    builtin = sorted((c for c in registry.commands.values()
                      if getattr(c.func, "__module__", "").startswith(__name__ + ".")),
                     key=lambda c: c.name)
    eager = sorted({m for added in extension_points().values() for f in added
                    for m in [getattr(f, "__module__", None) or ""]
                    if m.startswith(__name__ + ".")})
    lines = ['"""Every built-in command -> the module that declares it (GENERATED: do not edit).',
             "",
             "Written by `python -m nsshell.docgen` from the declarations in nsshell/commands/;",
             "tests/test_command_index.py fails when it is stale.  The registry imports a",
             "module on the first use of one of its commands; EAGER modules add to an",
             'extension point (settings, names for ls...) and are imported at start-up."""',
             "",
             "COMMANDS = {"]
    lines += [f"    {c.name!r}: {c.func.__module__!r}," for c in builtin]
    lines += ["}", "", "ALIASES = {"]
    lines += [f"    {a!r}: {c.name!r}," for c in builtin for a in sorted(c.aliases)]
    lines += ["}", "", "EAGER = ("]
    lines += [f"    {m!r}," for m in eager]
    lines += [")", ""]
    return "\n".join(lines)
