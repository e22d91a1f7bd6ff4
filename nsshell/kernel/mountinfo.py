"""/proc/PID/mountinfo, parsed (proc(5)): the one parser of the mount table.

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)

(1) mount id, (2) parent id, (3) major:minor, (4) root of the mount in its file system,
(5) mount point, (6) per-mount options, (7) zero or more optional fields (shared:N,
master:N, propagate_from:N, unbindable), (8) "-", (9) file system type, (10) source,
(11) super-block options.  Fields are separated by one space; the kernel writes a
space, tab, newline and backslash inside a field as \\040, \\011, \\012 and \\134
(seq_file's mangle), so a line is one mount and a field never holds a space.  Paths
are bytes: they are decoded as os.fsdecode does (surrogateescape), so a name that is
not UTF-8 round-trips to the same bytes.
"""

from __future__ import annotations

import os

DEFAULT = "/proc/self/mountinfo"
PROPAGATION_TAGS = ("shared", "master", "propagate_from", "unbindable")
_OCTAL = frozenset("01234567")


class Mount:
    """One line of mountinfo."""

    __slots__ = ("id", "parent", "dev", "root", "target", "options", "optional", "fstype",
                 "source", "super_options")

    def __init__(self, id: int, parent: int, dev: str, root: str, target: str, options: str,
                 optional: tuple[str, ...], fstype: str, source: str, super_options: str):
        self.id = id                      # (1) mount id
        self.parent = parent              # (2) parent mount id (itself at the bottom)
        self.dev = dev                    # (3) "major:minor" of the file system
        self.root = root                  # (4) what of the file system is mounted
        self.target = target              # (5) mount point, as this process sees it
        self.options = options            # (6) per-mount options, as written
        self.optional = optional          # (7) shared:N, master:N, ...
        self.fstype = fstype              # (9)
        self.source = source              # (10)
        self.super_options = super_options  # (11) as written (a file system's own
        #                                       options escape ',' and '=' in values too)

    @property
    def st_dev(self) -> int:
        """The st_dev (os.stat) of files on this mount."""
        major, _, minor = self.dev.partition(":")
        return os.makedev(int(major), int(minor))

    @property
    def propagation(self) -> str:
        """'shared:1,master:2' as the optional fields say it; 'private' when none does."""
        tags = [t for t in self.optional if t.split(":", 1)[0] in PROPAGATION_TAGS]
        return ",".join(tags) if tags else "private"

    @property
    def shared(self) -> str | None:
        """'shared:N' when the mount is in peer group N; None otherwise."""
        for tag in self.optional:
            if tag.startswith("shared:"):
                return tag
        return None

    def peer_groups(self) -> set[int]:
        """The propagation peer groups it takes part in (shared:N and master:N)."""
        out = set()
        for tag in self.optional:
            kind, _, n = tag.partition(":")
            if kind in ("shared", "master") and n.isdigit():
                out.add(int(n))
        return out

    def to_json(self) -> dict:
        return {"id": self.id, "parent": self.parent, "dev": self.dev, "root": self.root,
                "target": self.target, "options": self.options,
                "propagation": self.propagation, "fstype": self.fstype,
                "source": self.source, "super_options": self.super_options}

    def __repr__(self) -> str:
        return f"<Mount {self.id} {self.target!r} {self.fstype}>"


def unescape(text: str) -> str:
    """A field as the kernel wrote it, with each \\ooo (octal) back to its character."""
    if "\\" not in text:
        return text
    parts = text.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and _OCTAL.issuperset(code):
            byte = int(code, 8)
            # a byte past ASCII as os.fsdecode gives it (the kernel escapes none today)
            out.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
            out.append(part[3:])
        else:
            out.append("\\")
            out.append(part)
    return "".join(out)


def parse_line(line: str) -> Mount | None:
    """One mountinfo line (without its newline); None when it is not one."""
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
        return Mount(int(fields[0]), int(fields[1]), fields[2], unescape(fields[3]),
                     unescape(fields[4]), fields[5], tuple(fields[6:sep]), fields[sep + 1],
                     unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
                     fields[sep + 3] if len(fields) > sep + 3 else "")
    except (ValueError, IndexError):
        return None


def parse(data: str | bytes, fstype: str | None = None) -> list[Mount]:
    """The mounts of a mountinfo text, in the kernel's order (the last of those on one
    mount point is the one on top).  FSTYPE: only mounts of that type; lines that cannot
    be of it are skipped before they are decoded or parsed (a fast filter: discovery
    reads the tables of many mount namespaces for a few nsfs lines)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    mark = None if fstype is None else f" - {fstype} ".encode()
    if mark is not None and mark not in data:
        return []
    out = []
    for raw in data.split(b"\n"):
        if not raw or (mark is not None and mark not in raw):
            continue
        m = parse_line(raw.decode("utf-8", "surrogateescape"))
        if m is not None and (fstype is None or m.fstype == fstype):
            out.append(m)
    return out


def read(path: str = DEFAULT, *, dir_fd: int | None = None,
         fstype: str | None = None) -> list[Mount]:
    """The mounts of PATH (relative to DIR_FD when given: e.g. "self/mountinfo" under an
    open /proc), parsed as parse() does.  OSError when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return parse(b"".join(chunks), fstype)


def mount_at(mounts: list[Mount], path: str) -> Mount | None:
    """The mount on top of the mount point PATH (the last mounted there); None when
    PATH is not a mount point."""
    found = None
    for m in mounts:
        if m.target == path:
            found = m
    return found


def covering(mounts: list[Mount], path: str) -> Mount | None:
    """The mount an absolute, canonical PATH lies on: the last mounted on the longest
    mount point that is PATH or one of its ancestors."""
    best = None
    for m in mounts:
        t = m.target
        if t == path or t == "/" or path.startswith(t.rstrip("/") + "/"):
            if best is None or len(t) >= len(best.target):
                best = m
    return best
