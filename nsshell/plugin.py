"""The plugin API: everything a plugin may use, and nothing else.

A plugin is a module (or package) with a `register(api)` function, found through
the entry-point group `nsshell.plugins` or as a file in the user plugin folder
($XDG_CONFIG_HOME/nsshell/plugins/).  It declares commands exactly as built-ins
are declared, so help, completion, the man page and completion scripts cover
them with no extra work.

    from nsshell.plugin import Annotated, Ref, command, Message

    def register(api):
        @api.command("hello world")
        def hello(sh, ref: Annotated[object, Ref()]):
            '''Say hello to a namespace set.'''
            return Message(f"hello {ref.label}")
"""

from __future__ import annotations

from .core.handle import Handle, NsSet
from .core.spawn import Entry, Handoff, call as call_in
from .errors import KernelError, NotFoundError, NsshellError, UsageError, from_oserror
from .kernel import nstypes, syscalls  # syscalls: mount, umount2, pivot_root, ioctl_ns...
from .registry import Annotated, Kw, Opt, Rest
from .results import Diff, Message, Node, Record, Status, Table, Tree
from .types import (Choice, Int, NsType, NsTypes, ParamType, Path, Pid, Ref, Seconds, Word,
                    complete_path)

__all__ = [
    "Annotated", "Kw", "Opt", "Rest", "Choice", "Int", "NsType", "NsTypes", "ParamType", "Path",
    "Pid", "Ref", "Seconds", "Word", "complete_path", "Message", "Record", "Table", "Tree", "Node",
    "Diff", "Status", "NsshellError", "UsageError", "NotFoundError", "KernelError", "from_oserror",
    "Handle", "NsSet", "Entry", "Handoff", "call_in", "nstypes", "syscalls",
]
