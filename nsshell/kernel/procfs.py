"""/proc/PID/stat and the "Key:<TAB>value" files of /proc (status, fdinfo), parsed
(proc(5)): the one reader of each.

stat is one line, "pid (comm) state ppid ...": comm is the raw command name (up to 15
bytes, set by exec or prctl(PR_SET_NAME)), which may itself hold spaces, parentheses
and even newlines, so it runs from the first " (" to the LAST ")" of the line, and the
numbered fields follow that.  status and fdinfo are one "Key:\\tvalue" pair a line.

Paths are relative to /proc, or to DIR_FD (an open /proc directory, e.g. the
procfd of a helper that has entered a namespace) when one is given.  A file that
cannot be read gives None: the process is gone or hidden, which callers expect.
"""

from __future__ import annotations

import os

PROC = "/proc"


def read(rel: str, dir_fd: int | None = None) -> bytes:
    """The bytes of /proc/REL (or REL under DIR_FD); OSError when it cannot be read."""
    fd = os.open(rel if dir_fd is not None else f"{PROC}/{rel}", os.O_RDONLY | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


class Stat:
    """One /proc/PID/stat line.  field(N) is proc(5)'s field N (1 = pid, 2 = comm)."""

    __slots__ = ("pid", "comm", "fields")

    def __init__(self, pid: int, comm: str, fields: list[bytes]):
        self.pid = pid          # (1)
        self.comm = comm        # (2) without its parentheses
        self.fields = fields    # (3) on, as bytes

    def field(self, n: int) -> int:
        """Numeric field N (3 and on; fields 4..22 are always there, later ones
        IndexError on an old kernel; ValueError for state, the one letter field)."""
        if n < 3:
            raise IndexError(n)
        return int(self.fields[n - 3])

    @property
    def state(self) -> str:
        """(3) R, S, D, Z, X, ..."""
        return self.fields[0].decode()

    @property
    def alive(self) -> bool:
        """Not a zombie (Z) nor dead (X)."""
        return self.fields[0] not in (b"Z", b"X")

    @property
    def ppid(self) -> int:
        return self.field(4)

    @property
    def starttime(self) -> int:
        """(22) clock ticks after boot: with the pid, names one process for good."""
        return self.field(22)


def parse_stat(data: bytes) -> Stat:
    """Parse a stat line; ValueError when it is not one."""
    open_ = data.find(b" (")
    close = data.rfind(b")")
    if open_ <= 0 or close < open_ + 1:
        raise ValueError("not a /proc/PID/stat line")
    fields = data[close + 1:].split()
    if len(fields) < 20:     # every kernel since 2.6 writes 3..22 (starttime) and more
        raise ValueError("not a /proc/PID/stat line")
    return Stat(int(data[:open_]), data[open_ + 2:close].decode("utf-8", "replace"), fields)


def stat(pid: int | str = "self", dir_fd: int | None = None) -> Stat | None:
    """/proc/PID/stat parsed; None when it cannot be read."""
    try:
        return parse_stat(read(f"{pid}/stat", dir_fd))
    except (OSError, ValueError):
        return None


def parse_keyed(text: str | bytes) -> dict[str, str]:
    """{"Key": "value"} of "Key:<TAB>value" lines (value stripped; the first ':' splits)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def keyed(rel: str, dir_fd: int | None = None) -> dict[str, str] | None:
    """A "Key:<TAB>value" file of /proc (REL under DIR_FD) as a dict; None when unreadable."""
    try:
        return parse_keyed(read(rel, dir_fd))
    except OSError:
        return None


def status(pid: int | str = "self", dir_fd: int | None = None) -> dict[str, str] | None:
    """/proc/PID/status as {"Name": ..., "Uid": "0\\t0\\t0\\t0", "NSpid": ...}; None when unreadable."""
    return keyed(f"{pid}/status", dir_fd)


def fdinfo(fd: int, pid: int | str = "self") -> dict[str, str] | None:
    """/proc/PID/fdinfo/FD (pos, flags, and per kind: Pid of a pidfd, ...); None when unreadable."""
    return keyed(f"{pid}/fdinfo/{fd}")


def ints(value: str | None) -> list[int] | None:
    """"0\\t1\\t2" -> [0, 1, 2]; None for None or a value that is not all integers."""
    if value is None:
        return None
    try:
        return [int(x) for x in value.split()]
    except ValueError:
        return None


def nspids(pid: int | str = "self", dir_fd: int | None = None) -> list[int] | None:
    """PID's id in every PID namespace from the reader's down to its own (NSpid of
    status; the last is its id in its own namespace); None when it cannot be read."""
    return ints((status(pid, dir_fd) or {}).get("NSpid"))
