"""uid_map / gid_map / setgroups: parse, validate, read and write.

The kernel's rules (user_namespaces(7)): a map is written once, at most 340 lines,
ranges may not overlap on either side, and an unprivileged writer maps only its own
id and must deny setgroups before writing gid_map.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_LINES = 340
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 is never a valid id


class MapError(ValueError):
    """A map that the kernel would refuse; the message says which rule."""


@dataclass(frozen=True)
class IdRange:
    inside: int
    outside: int
    count: int

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


def read_map(path: str) -> list[IdRange]:
    with open(path) as f:
        return [IdRange(*map(int, line.split())) for line in f if line.strip()]


def read_setgroups(pid: int | str) -> str:
    with open(f"/proc/{pid}/setgroups") as f:
        return f.read().strip()


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
