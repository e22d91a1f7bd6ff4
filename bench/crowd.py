"""A crowd of idle processes spread over many namespaces, for the discovery benchmark.

    python bench/crowd.py PROCS NAMESPACES

Forks NAMESPACES group leaders; each unshares one new namespace (net, uts and
ipc in turn) and forks its share of PROCS - NAMESPACES more processes that stay
in it.  Prints "ready PGID" when every process is in place, then waits for
stdin to close (or SIGTERM) and kills the whole crowd, which is its own
process group.  Every member also dies with its parent (PR_SET_PDEATHSIG), so
nothing outlives the benchmark.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x04000000, 0x08000000, 0x40000000
KINDS = (CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC)
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent() -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def member(ready_w: int) -> None:
    """Tell the controller we are in place, then sleep until killed."""
    os.write(ready_w, b".")
    os.close(ready_w)
    while True:
        signal.pause()


def leader(kind: int, extra: int, ready_w: int) -> None:
    if libc.unshare(kind) != 0:
        err = ctypes.get_errno()
        os.write(2, f"crowd: unshare: {os.strerror(err)}\n".encode())
        os._exit(1)
    for _ in range(extra):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            member(ready_w)
    member(ready_w)


def main() -> int:
    procs, spaces = int(sys.argv[1]), int(sys.argv[2])
    if procs < spaces:
        raise SystemExit("crowd: PROCS must be at least NAMESPACES")
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda *_: None)
    ready_r, ready_w = os.pipe()
    share, rest = divmod(procs, spaces)
    for i in range(spaces):
        extra = share - 1 + (1 if i < rest else 0)
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            leader(KINDS[i % len(KINDS)], extra, ready_w)
    os.close(ready_w)
    got = 0
    while got < procs:
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        got += len(chunk)
    if got < procs:
        os.killpg(0, signal.SIGKILL)
        return 1
    sys.stdout.write(f"ready {os.getpgrp()}\n")
    sys.stdout.flush()
    try:
        sys.stdin.read()  # until the benchmark closes our stdin
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)  # members keep SIGTERM default: they die; we ignore it
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
