"""Host and domain names of a UTS namespace, read and written by a helper inside it."""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import from_oserror
from ..kernel import syscalls
from . import spawn


def _names() -> dict:
    u = os.uname()
    try:
        with open("/proc/sys/kernel/domainname") as f:
            domain = f.read().strip()
    except OSError:
        domain = ""
    return {"hostname": u.nodename, "domainname": domain}


def get_names(entries: Sequence[spawn.Entry]) -> dict:
    value, _ = spawn.call(entries, _names)
    return value


def _set(name: str) -> None:
    try:
        syscalls.sethostname(name)
    except OSError as err:
        raise from_oserror(err, f"sethostname({name!r})",
                           "needs CAP_SYS_ADMIN in the user namespace that owns the UTS namespace"
                           if err.errno == 1 else None)


def set_hostname(entries: Sequence[spawn.Entry], name: str) -> None:
    spawn.call(entries, _set, name)
