"""What a kept set is, alike for the bind-mount store (persist.py) and the per-user
keeper (keeper.py): the record `persist` returns, and what a PID handle's init is
(the lifeline and pidfd a new holder needs).  Both import it; neither imports the other
for it."""

from __future__ import annotations

from ...kernel.values import Value

from ..ns.handle import Handle
from .holder import PersistedInit, start_time


class Persisted(Value):
    name: str
    path: str
    types: list[str]
    netns: str | None = None
    holder: int | None = None
    same: bool = False
    keeper: bool = False
    notes: list[str]

    _fields = ("name", "path", "types", "netns", "holder", "same", "keeper", "notes")

    def __init__(self, name, path, types, netns=None, holder=None, same=False, keeper=False,
                 notes=None) -> None:
        self.name = name
        self.path = path
        self.types = types
        self.netns = netns
        self.holder = holder
        self.same = same
        self.keeper = keeper
        self.notes = [] if notes is None else notes


def init_info(h: Handle) -> tuple[int | None, dict | None, int | None]:
    """(lifeline fd, {"pid", "start"} of the init, init pidfd) of a PID handle."""
    holder = h.holder
    if holder is None:
        return None, None, None
    if isinstance(holder, PersistedInit):
        info = {"pid": holder.init_pid, "start": holder.start} if holder.init_pid else None
        if holder.lifeline is not None and holder.lifeline >= 0 and info is not None:
            # a lifeline of our own (see take_lifeline): this entry gets a holder of its own
            return holder.lifeline, info, holder.pidfd if holder.pidfd >= 0 else None
        return None, info, None
    pid = holder.pid
    info = {"pid": pid, "start": start_time(pid)} if pid else None
    lifeline = holder.lifeline if holder.lifeline is not None and holder.lifeline >= 0 else None
    return lifeline, info, holder.pidfd
