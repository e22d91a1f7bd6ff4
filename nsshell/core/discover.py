"""Finding namespaces on the system (the discovery issue grows this into `ls`)."""

from __future__ import annotations

import os

from ..kernel.nstypes import NsType


def path_for(t: NsType, ino: int) -> str | None:
    """A /proc path through which the namespace TYPE:[INO] can be opened, or None."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        path = f"/proc/{entry.name}/ns/{t.proc}"
        try:
            if os.stat(path).st_ino == ino:
                return path
        except OSError:
            continue
    return None
