"""pytest plugin (entry point `pytest11`): the `nsshell_session` fixture.

    def test_ping(nsshell_session):
        s = nsshell_session
        s.run("new net as a --no-join; new net as b --no-join")
        s.run("net veth a:v0 b:v0; net addr a v0 10.9.0.1/24; net addr b v0 10.9.0.2/24")
        s.run("net up a v0; net up b v0; join a")
        assert s.run_program(["ping", "-c1", "-W2", "10.9.0.2"]).status == 0

The fixture gives each test a fresh nsshell.Session (as root, or whatever the
test process may do) and, after the test: unpersists what the session
persisted and did not unpersist, closes the session (every namespace only it
held ends), and fails the test if a helper process the session started is
still alive.  nsshell.api is imported only when a test uses the fixture.
"""

from __future__ import annotations

import os
import time

import pytest

from .kernel import procfs

HELPER_NAMES = ("nsshell",)
# process-wide helpers that outlive a session by design (the socket opener, ended at exit)
SHARED = ("nsshell-sockets",)


def _children() -> dict[int, str]:
    """This process's live children, by pid, with their names."""
    out = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            if (name := _comm(pid)) is not None:
                out[pid] = name
    return out


def _comm(pid: int) -> str | None:
    """The name of process PID; None when it is gone or a zombie."""
    st = procfs.stat(pid)
    return st.comm if st is not None and st.alive else None


def _inits(s) -> set[int]:
    """The PID-namespace inits of the handles the session holds."""
    try:
        rows = (s.handles() or {}).get("handles", [])
    except Exception:  # noqa: BLE001 - a broken session is reported by close()
        return set()
    return {r["init_pid"] for r in rows if r.get("init_pid") and r.get("alive")
            and r.get("name") not in (None, "host")}


def _helpers_left(before: set[int], inits: set[int], timeout: float = 3.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = {p: n for p, n in _children().items()
                if p not in before and n.startswith(HELPER_NAMES) and n not in SHARED}
        left.update({p: n for p in inits if (n := _comm(p)) and n.startswith(HELPER_NAMES)})
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def nsshell_session():
    """A fresh nsshell.Session for one test, cleaned up after it (see the module's doc)."""
    from nsshell.api import Session
    before = set(_children())
    s = Session()
    problems = []
    inits: set[int] = set()
    try:
        yield s
    finally:
        if not s.closed:
            inits = _inits(s)
            for name, path in s.persisted.items():
                try:
                    s.unpersist(path if path.startswith("/") else name, force=True)
                except Exception as e:  # noqa: BLE001 - report all, after closing
                    problems.append(f"unpersist {name}: {e}")
        s.close()
    left = _helpers_left(before, inits)
    if left:
        problems.append("helpers still running after the session closed: " +
                        ", ".join(f"{n} (pid {p})" for p, n in sorted(left.items())))
    if problems:
        pytest.fail("nsshell_session: " + "; ".join(problems), pytrace=False)
