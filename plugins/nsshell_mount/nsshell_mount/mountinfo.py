"""/proc/PID/mountinfo, parsed (proc(5)): one dict per mount, in the kernel's order.

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
"""

from __future__ import annotations

import re

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(text: str) -> str:
    """The kernel writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def propagation(optional: list[str]) -> str:
    """'shared:1 master:2' -> 'shared:1,master:2'; no tag -> 'private'."""
    tags = [t for t in optional if t.split(":")[0] in ("shared", "master", "propagate_from",
                                                      "unbindable")]
    return ",".join(tags) if tags else "private"


def parse(text: str) -> list[dict]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue  # not a mountinfo line
        optional = fields[6:sep]
        fstype, source = fields[sep + 1], fields[sep + 2] if len(fields) > sep + 2 else ""
        mounts.append({
            "id": int(fields[0]),
            "parent": int(fields[1]),
            "dev": fields[2],
            "root": unescape(fields[3]),
            "target": unescape(fields[4]),
            "options": fields[5],
            "propagation": propagation(optional),
            "fstype": fstype,
            "source": unescape(source),
            "super_options": fields[sep + 3] if len(fields) > sep + 3 else "",
        })
    return mounts


def is_mount_point(mounts: list[dict], path: str) -> bool:
    return any(m["target"] == path for m in mounts)
