"""Built-in commands, grouped by subject.  Importing this package makes them known.

Start-up imports none of the modules here: the registry knows every built-in
command by name from nsshell/command_index.py (generated, with the man page and
the completion scripts, by `python -m nsshell.docgen`; a test fails when it is
stale) and imports a command's module on the first lookup of one of its
commands.  A module that adds session settings when imported (an INIT_HOOK) is
imported here, so that `set` knows its settings from the start.
"""

from __future__ import annotations

import importlib
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
        importlib.import_module(module)
    REGISTRY.load_all()


def render_index(registry: Registry = REGISTRY) -> str:
    """The text of nsshell/command_index.py for the built-ins declared now (load_all first)."""
    from ..session import INIT_HOOKS
    builtin = sorted((c for c in registry.commands.values()
                      if getattr(c.func, "__module__", "").startswith(__name__ + ".")),
                     key=lambda c: c.name)
    eager = sorted({h.__module__ for h in INIT_HOOKS if h.__module__.startswith(__name__ + ".")})
    lines = ['"""Every built-in command -> the module that declares it (GENERATED: do not edit).',
             "",
             "Written by `python -m nsshell.docgen` from the declarations in nsshell/commands/;",
             "tests/test_command_index.py fails when it is stale.  The registry imports a",
             "module on the first use of one of its commands; EAGER modules add settings",
             'when imported and are imported at start-up."""',
             "",
             "COMMANDS = {"]
    lines += [f"    {c.name!r}: {c.func.__module__!r}," for c in builtin]
    lines += ["}", "", "ALIASES = {"]
    lines += [f"    {a!r}: {c.name!r}," for c in builtin for a in sorted(c.aliases)]
    lines += ["}", "", "EAGER = ("]
    lines += [f"    {m!r}," for m in eager]
    lines += [")", ""]
    return "\n".join(lines)
