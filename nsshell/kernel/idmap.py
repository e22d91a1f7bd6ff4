"""uid_map / gid_map / setgroups: parse, validate, read and write.

The kernel's rules (user_namespaces(7)): a map is written once, at most 340 lines,
ranges may not overlap on either side, and an unprivileged writer maps only its own
id and must deny setgroups before writing gid_map.
"""

from __future__ import annotations

import os
from .values import Frozen

MAX_LINES = 340
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 is never a valid id


class MapError(ValueError):
    """A map that the kernel would refuse; the message says which rule."""


class IdRange(Frozen):
    inside: int
    outside: int
    count: int

    _fields = ("inside", "outside", "count")

    def __init__(self, inside, outside, count) -> None:
        object.__setattr__(self, "inside", inside)
        object.__setattr__(self, "outside", outside)
        object.__setattr__(self, "count", count)

    def __str__(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"

    def to_json(self) -> dict:
        return {"inside": self.inside, "outside": self.outside, "count": self.count}


def _int(text: str, what: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise MapError(f"{what} {text!r} is not a number") from None
    if value < 0 or value > MAX_ID:
        raise MapError(f"{what} {value} is out of range (0..{MAX_ID})")
    return value


def parse_triples(words: list[str]) -> list[IdRange]:
    """['0', '1000', '1', ...] -> ranges, validated as the kernel would."""
    if not words or len(words) % 3:
        raise MapError(f"a map is IN OUT COUNT triples; got {len(words)} number(s)")
    ranges = []
    for i in range(0, len(words), 3):
        inside = _int(words[i], "inside id")
        outside = _int(words[i + 1], "outside id")
        count = _int(words[i + 2], "count")
        if count == 0:
            raise MapError(f"range {i // 3 + 1}: a count of 0 maps nothing")
        if inside + count - 1 > MAX_ID or outside + count - 1 > MAX_ID:
            raise MapError(f"range {i // 3 + 1} ({inside} {outside} {count}) runs past {MAX_ID}")
        ranges.append(IdRange(inside, outside, count))
    validate(ranges)
    return ranges


def validate(ranges: list[IdRange]) -> None:
    if len(ranges) > MAX_LINES:
        raise MapError(f"{len(ranges)} ranges; the kernel takes at most {MAX_LINES}")
    for side in ("inside", "outside"):
        spans = sorted((getattr(r, side), getattr(r, side) + r.count - 1) for r in ranges)
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            if b0 <= a1:
                raise MapError(f"ranges overlap on the {side} side: {a0}-{a1} and {b0}-{b1}")


def format_map(ranges: list[IdRange]) -> str:
    return "".join(f"{r}\n" for r in ranges)


def parse_map(text: str) -> list[IdRange]:
    """The ranges of a uid_map or gid_map as the kernel shows it (three numbers a line,
    padded with spaces).  ValueError on a line that is not three numbers."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) != 3:
            raise ValueError(f"not an id map line: {line!r}")
        out.append(IdRange(int(words[0]), int(words[1]), int(words[2])))
    return out


def _read_proc(pid: int | str, name: str, proc_fd: int | None) -> str:
    rel = f"{pid}/{name}"
    fd = os.open(rel if proc_fd is not None else f"/proc/{rel}", os.O_RDONLY | os.O_CLOEXEC,
                 dir_fd=proc_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii")
    finally:
        os.close(fd)


def read_map(pid: int | str, kind: str, *, proc_fd: int | None = None) -> list[IdRange]:
    """The KIND ("uid" or "gid") map of the user namespace of process PID ("self" too), as
    the reader's user namespace sees it; [] when it is not written yet.  PROC_FD: an open
    /proc to read it under (a helper inside another mount namespace).  OSError when it
    cannot be read: a map that cannot be read is never taken for an empty one."""
    return parse_map(_read_proc(pid, f"{kind}_map", proc_fd))


def is_identity(ranges: list[IdRange]) -> bool:
    """Is this the initial user namespace's map (every id to itself)?"""
    return len(ranges) == 1 and _identity(ranges[0].inside, ranges[0].outside, ranges[0].count)


def _identity(inside: int, outside: int, count: int) -> bool:
    return inside == outside == 0 and count >= MAX_ID + 1


def format_idmap(ranges, limit: int | None = None) -> str:
    """The one way nsshell writes an id map for people (show, tree, map, the toolbar):
    '0->1000', '0-65535->100000-165535', 'all (identity)' for the initial namespace's,
    comma-separated; 'unmapped' when empty.  RANGES: uid_map lines ('0 1000 1'), (inside,
    outside, count) triples, {"inside", "outside", "count"} dicts or IdRange objects."""
    triples = []
    for r in ranges or ():
        if isinstance(r, str):
            r = r.split()
        elif isinstance(r, dict):
            r = (r["inside"], r["outside"], r["count"])
        elif isinstance(r, IdRange):
            r = (r.inside, r.outside, r.count)
        inside, outside, count = (int(x) for x in r)
        triples.append((inside, outside, count))
    if not triples:
        return "unmapped"
    parts = []
    for inside, outside, count in triples[:limit]:
        if _identity(inside, outside, count):
            parts.append("all (identity)")
        elif count == 1:
            parts.append(f"{inside}->{outside}")
        else:
            parts.append(f"{inside}-{inside + count - 1}->{outside}-{outside + count - 1}")
    if limit is not None and len(triples) > limit:
        parts.append(f"... (+{len(triples) - limit} more)")
    return ", ".join(parts)


def read_setgroups(pid: int | str, *, proc_fd: int | None = None) -> str:
    """'allow' or 'deny': /proc/PID/setgroups (under PROC_FD when given)."""
    return _read_proc(pid, "setgroups", proc_fd).strip()


def write_setgroups(pid: int | str, value: str) -> None:
    fd = os.open(f"/proc/{pid}/setgroups", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def write_map(pid: int | str, kind: str, ranges: list[IdRange]) -> None:
    """Write /proc/PID/{uid,gid}_map in one write(2), as the kernel requires."""
    fd = os.open(f"/proc/{pid}/{kind}_map", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, format_map(ranges).encode())
    finally:
        os.close(fd)


def helper_for(kind: str) -> str | None:
    """Path of newuidmap/newgidmap, or None when the uidmap package is missing."""
    import shutil  # here: start-up does not pay for it (bench/README.md)
    return shutil.which(f"new{kind}map")


def write_map_with_helper(pid: int, kind: str, ranges: list[IdRange]) -> None:
    """Map through setuid newuidmap/newgidmap (ranges from /etc/subuid, /etc/subgid)."""
    tool = helper_for(kind)
    if tool is None:
        raise FileNotFoundError(2, f"new{kind}map not found (Debian package uidmap)")
    args = [tool, str(pid)]
    for r in ranges:
        args += [str(r.inside), str(r.outside), str(r.count)]
    import subprocess
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        raise PermissionError(1, f"new{kind}map: {proc.stderr.strip() or 'failed'}")


def subordinate_ranges(kind: str, user: str, uid: int) -> list[tuple[int, int]]:
    """(start, count) ranges of /etc/subuid or /etc/subgid for USER (by name or id)."""
    out = []
    try:
        with open(f"/etc/sub{kind}") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, str(uid)):
                    out.append((int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return out
