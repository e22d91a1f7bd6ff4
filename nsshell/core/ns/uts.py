"""Setting the host name of a UTS namespace, by a helper inside it (core/look/nsstate.py reads
it, as every piece of state)."""

from __future__ import annotations


from ...errors import from_oserror
from ...kernel import syscalls
from ..proc import spawn

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Sequence


def _set(name: str) -> None:
    try:
        syscalls.sethostname(name)
    except OSError as err:
        raise from_oserror(err, f"sethostname({name!r})",
                           "needs CAP_SYS_ADMIN in the user namespace that owns the UTS namespace"
                           if err.errno == 1 else None)


def set_hostname(entries: Sequence[spawn.Entry], name: str) -> None:
    spawn.call(entries, _set, name)
