"""`ls`'s one pass over /proc (core/look/discover.py): readlink of each ns link, the owner
read once per namespace's lowest process, and half of /proc read by a forked reader
when there are many processes and a CPU to spare.  Real processes in real namespaces;
the split is forced on (SPLIT_AT, _cpu_to_spare) so that it runs on a busy machine too.
"""

from __future__ import annotations

import os
import time

import pytest

from conftest import lsns_json
from nsshell.core.look import discover
from nsshell.kernel import nstypes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, setpriv)")

N = 24


def _ready(pids: list[int]) -> None:
    """Until every process has exec'd sleep in its new namespaces."""
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            time.sleep(0.01)


@pytest.fixture
def crowd(procs):
    """N processes, each in a network and a UTS namespace of its own; every third runs
    as uid 65534 (its /proc directory is nobody's, as lsns's USER says)."""
    ps = []
    for i in range(N):
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if i % 3 == 0 else []
        ps.append(procs(["unshare", "-n", "-u", *drop, "sleep", "60"]))
    pids = [p.pid for p in ps]
    _ready(pids)
    return pids


def _links() -> tuple[str, ...]:
    return tuple(f"/ns/{t.proc}" for t in nstypes.ALL)


def _split_on(monkeypatch) -> None:
    monkeypatch.setattr(discover, "SPLIT_AT", 2)
    monkeypatch.setattr(discover, "_cpu_to_spare", lambda: True)


def _children() -> set[str]:
    out = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            out.update(f.read().split())
    return out


def test_the_forked_reader_reads_what_one_process_reads(crowd, monkeypatch):
    entries = [str(p) for p in crowd] + ["1", str(os.getpid())]
    alone = discover._read_procs(entries, _links(), True, True, os.getpid())
    _split_on(monkeypatch)
    before = _children()
    ticks = []
    split = discover._read_all(entries, _links(), True, True, os.getpid(),
                               lambda: ticks.append(1))
    assert split == alone
    assert len(ticks) == len(entries)          # the progress counts both halves
    assert _children() == before               # the reader is gone (reaped)


def test_a_scan_split_in_two_finds_the_same(crowd, monkeypatch):
    def ours(scan):
        return {k: (v.nprocs, v.pid, v.uid, sorted(v.kinds)) for k, v in scan.namespaces.items()
                if v.pid in crowd}
    alone = ours(discover.scan())
    _split_on(monkeypatch)
    split = ours(discover.scan())
    assert split == alone
    assert len(alone) == 2 * N                 # a net and a uts namespace each


def test_when_the_reader_fails_its_half_is_read_here(crowd, monkeypatch):
    parent = os.getpid()
    real = discover._read_procs

    def failing_in_the_child(*args, **kw):
        if os.getpid() != parent:
            raise RuntimeError("the reader breaks")
        return real(*args, **kw)

    entries = [str(p) for p in crowd]
    alone = real(entries, _links(), True, True, parent)
    _split_on(monkeypatch)
    monkeypatch.setattr(discover, "_read_procs", failing_in_the_child)
    assert discover._read_all(entries, _links(), True, True, parent, lambda: None) == alone


def test_the_user_is_the_owner_of_the_lowest_process_as_lsns_says(crowd):
    scan = discover.scan([nstypes.get("net")])
    lsns = lsns_json("-t", "net")["namespaces"]
    theirs = {int(r["ns"]): r["user"] for r in lsns if int(r["pid"]) in crowd}
    mine = {info.ino: discover.user_name(scan.user_of(info))
            for info in scan.namespaces.values() if info.pid in crowd}
    assert mine == theirs and len(mine) == N
    assert sorted(set(mine.values())) == ["nobody", "root"]


def test_a_reader_is_not_forked_beside_other_threads(monkeypatch):
    # A lock another thread holds would stay held in a forked Python child.
    import threading
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert discover._may_fork() is False
    finally:
        stop.set()
        t.join()
    assert discover._may_fork() is True


def test_the_live_view_never_forks_a_reader(crowd, monkeypatch):
    """`top` refreshes every interval and is judged by its CPU: a forked reader saves time,
    not CPU (it adds a fork), so the view's scans (full and light) never split, even with
    a CPU to spare; `ls`'s scan does."""
    from nsshell.commands.top import Refresher
    from nsshell.session import Session
    _split_on(monkeypatch)
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    sh = Session(interactive=False)
    try:
        refresh = Refresher(sh)
        for _ in range(refresh.FULL_EVERY + 1):   # a full scan and light ones
            refresh.scan()
        assert forks == []
        discover.scan(session=sh)
        assert forks == [1]   # the same machine, as `ls` scans: split
    finally:
        sh.close_all()
