"""The one rule for "the host's own namespace": nothing changes it without --host.

A namespace is the host's when it IS one the shell started in, or one of PID 1's
(as the shell's /proc shows them): identity is the nsfs (st_dev, st_ino), never
the word `host`, so `pid:1`, `net:[INODE]` of the host's, /proc/1/ns/net, or a set
opened from any process of the host all count.

Commands that change a namespace's state call refuse_host() (the plugin API's
`changes=TYPE` marker does it for every plugin command; see nsshell/plugin.py).
"""

from __future__ import annotations

import os

from .errors import NsshellError
from .kernel.nsfs import NsId

# what each type's change means, for the message
_WHAT = {"net": "change the host's network (links, addresses, routes)",
         "mnt": "change the host's mounts", "uts": "rename the host"}


def host_ids(session, nstype: str) -> set[NsId]:
    """The identities of the host's namespaces of NSTYPE: the shell's own at start, and
    PID 1's when this process may see them."""
    ids = set()
    own = session.host.handles.get(nstype)
    if own is not None:
        ids.add(own.nsid)
    from .kernel import nstypes
    try:
        st = os.stat(f"/proc/1/ns/{nstypes.get(nstype).proc}")
    except (OSError, KeyError):
        pass
    else:
        ids.add(NsId(nstype, st.st_ino, st.st_dev))
    return ids


def is_host(session, handle) -> bool:
    return handle.nsid in host_ids(session, handle.type.name)


def refuse_host(session, handle, allowed: bool = False, label: str | None = None) -> None:
    """Raise unless HANDLE's namespace is not the host's, or ALLOWED (--host) says so."""
    if allowed or not is_host(session, handle):
        return
    t = handle.type.name
    who = f"{label} ({handle.nsid})" if label and label not in ("host", str(handle.nsid)) else str(handle.nsid)
    raise NsshellError(
        f"{who} is the host's own {t} namespace; refusing to "
        f"{_WHAT.get(t, 'change the host')}",
        f"create or join a {t} namespace first (`new {t}`), or give --host if you mean the host")
