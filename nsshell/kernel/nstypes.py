"""The eight namespace types: names, CLONE_* flags, /proc/PID/ns file names."""

from __future__ import annotations


class NsType:
    """One namespace type (immutable; equal by value).  A plain class, not
    kernel.values.Frozen: the keeper daemon imports this module and nothing else."""
    __slots__ = ("name", "flag", "proc", "for_children")

    def __init__(self, name: str, flag: int, proc: str, for_children: str) -> None:
        s = object.__setattr__
        s(self, "name", name)                  # canonical name, as lsns prints it
        s(self, "flag", flag)                  # CLONE_NEW* (also the nstype argument of setns)
        s(self, "proc", proc)                  # file under /proc/PID/ns/ for a process's namespace
        s(self, "for_children", for_children)  # file for its children's (pid, time differ)

    def _key(self) -> tuple:
        return (self.name, self.flag, self.proc, self.for_children)

    def __eq__(self, other):
        return self._key() == other._key() if other.__class__ is NsType else NotImplemented

    def __hash__(self):
        return hash(self._key())

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __reduce__(self):
        return (NsType, self._key())

    def __repr__(self) -> str:
        return (f"NsType(name={self.name!r}, flag={self.flag!r}, proc={self.proc!r}, "
                f"for_children={self.for_children!r})")

    def __str__(self) -> str:
        return self.name


CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Order matters: user first (it owns whatever is created with it), then the rest
# in the order unshare(1) lists them.
ALL: tuple[NsType, ...] = (
    NsType("user", CLONE_NEWUSER, "user", "user"),
    NsType("mnt", CLONE_NEWNS, "mnt", "mnt"),
    NsType("pid", CLONE_NEWPID, "pid", "pid_for_children"),
    NsType("net", CLONE_NEWNET, "net", "net"),
    NsType("uts", CLONE_NEWUTS, "uts", "uts"),
    NsType("ipc", CLONE_NEWIPC, "ipc", "ipc"),
    NsType("cgroup", CLONE_NEWCGROUP, "cgroup", "cgroup"),
    NsType("time", CLONE_NEWTIME, "time", "time_for_children"),
)

NAMES: tuple[str, ...] = tuple(t.name for t in ALL)
ALIASES = {"mount": "mnt", "network": "net", "cgroups": "cgroup"}
BY_NAME: dict[str, NsType] = {t.name: t for t in ALL}
BY_FLAG: dict[int, NsType] = {t.flag: t for t in ALL}

USER, MNT, PID, NET, UTS, IPC, CGROUP, TIME = ALL


def get(name: str) -> NsType:
    """The type called NAME (or an alias); KeyError when there is none."""
    name = name.strip().lower()
    return BY_NAME[ALIASES.get(name, name)]


def parse(text: str) -> tuple[NsType, ...]:
    """'user+mnt' or 'all' -> types in canonical order; ValueError names the bad part."""
    if text.strip().lower() == "all":
        return ALL
    wanted = set()
    for part in text.split("+"):
        try:
            wanted.add(get(part))
        except KeyError:
            raise ValueError(part) from None
    return tuple(t for t in ALL if t in wanted)


def flags_of(types) -> int:
    flags = 0
    for t in types:
        flags |= t.flag
    return flags
