"""The rootless keeper under faults (issue 11.3, 11.5), for real as uid 65534: malformed
requests of every kind (tests/keeper_fuzz.py), running out of fds, a keeper exiting
under its clients, its socket or directory removed, and sessions and a keeper holding
more than 1,024 fds.  Each test has its own XDG_RUNTIME_DIR, so its own keeper."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import NOBODY, ROOT, Done, _env, json_docs, nsshell_argv
from test_persist import alive, last_json, marked, wait_gone

DRIVER = os.path.join(ROOT, "tests", "keeper_fuzz.py")


class Nobody:
    """Commands as uid 65534 with XDG_RUNTIME_DIR=self.xdg (a private directory)."""

    def __init__(self) -> None:
        self.xdg = tempfile.mkdtemp(prefix="nsshell-kf-", dir="/tmp")
        os.chown(self.xdg, NOBODY, NOBODY)
        os.chmod(self.xdg, 0o700)
        self.before = set(marked("nsshell-keeper"))

    def argv(self, argv: list[str], nofile: str | None = None) -> list[str]:
        pre = ["prlimit", f"--nofile={nofile}", "--"] if nofile else []
        return pre + ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                      "env", f"XDG_RUNTIME_DIR={self.xdg}"] + argv

    def run(self, argv: list[str], nofile: str | None = None, timeout: float = 120) -> Done:
        p = subprocess.run(self.argv(argv, nofile), capture_output=True, text=True,
                           env=_env({"HOME": "/tmp"}), cwd="/tmp", timeout=timeout)
        return Done(p.returncode, p.stdout, p.stderr)

    def nsshell(self, *args: str, **kw) -> Done:
        return self.run(nsshell_argv() + list(args), **kw)

    def driver(self, *args: str, nofile: str | None = None) -> dict:
        done = self.run([sys.executable, DRIVER] + list(args), nofile=nofile)
        assert done.rc == 0, done
        return json.loads(done.out.strip().splitlines()[-1])

    @property
    def sock(self) -> str:
        return f"{self.xdg}/nsshell/keeper.sock"

    def keepers(self) -> list[int]:
        return [p for p in marked("nsshell-keeper")
                if p not in self.before and os.stat(f"/proc/{p}").st_uid == NOBODY]

    def cleanup(self) -> None:
        left = self.keepers()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        wait_gone(left)
        wait_gone([p for p in marked("nsshell-init") if os.stat(f"/proc/{p}").st_uid == NOBODY], 5)
        shutil.rmtree(self.xdg, ignore_errors=True)


@pytest.fixture
def nobody(rootless_ok):
    n = Nobody()
    yield n
    n.cleanup()


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_fuzzed_requests_never_end_the_keeper(nobody, prefix):
    """Non-JSON, JSON that is not an object, wrong types, fds that do not match, cut-short
    and oversize frames, random mutations: each is refused (or gets no answer when the
    frame never ended), the keeper answers the next request, the set it holds is intact,
    and it leaks no fd."""
    name = f"{prefix}k"
    made = nobody.nsshell("-c", f"new user+pid+net+uts as {name} --no-join; map root --ns {name}; "
                                f"persist {name}; handles --json")
    assert made.rc == 0, made
    net = [r["inode"] for r in json_docs(made.out)[-1]["handles"]
           if r["name"] == name and r["type"] == "net"][0]
    ks = nobody.keepers()
    assert len(ks) == 1

    got = nobody.driver("fuzz", name, "20260", "3000")
    print("keeper fuzz:", json.dumps(got))
    kinds = got["kinds"]
    assert got["cases"] >= 3000 and got["keeper_pid"] == ks[0]
    assert got["unexpected"] == []  # each structured case got the answer it should
    assert got["held"] == [name]
    assert got["fd_after"] == got["fd_before"], got  # every fd of every bad request closed
    # every structured fault was seen; the only silent ones are frames that never ended
    for k in ("non-json", "json-not-object", "wrong-types", "fds-mismatch", "truncated",
              "oversize", "trailing"):
        assert kinds.get(k), k
    assert kinds["unanswered"] <= kinds["truncated"] + kinds.get("random-truncated", 0)
    assert kinds["refused"] >= kinds["non-json"] + kinds["json-not-object"] + kinds["wrong-types"]
    assert any("out of file descriptors" not in e and "wrong number" not in e
               for e in got["errors"])
    assert not any("Error:" in e for e in got["errors"]), got["errors"]  # no internal error

    used = nobody.nsshell("-c", f"join {name}; run readlink /proc/self/ns/net; run id -u")
    assert used.rc == 0, used
    assert f"net:[{net}]" in used.out
    assert used.out.split()[-1] == "0"
    inits = [p for p in marked("nsshell-init") if os.stat(f"/proc/{p}").st_uid == NOBODY]
    gone = nobody.nsshell("-c", f"unpersist {name}")
    assert gone.rc == 0, gone
    assert wait_gone(ks) == []  # it held nothing any more: it left, and took its socket
    assert not os.path.lexists(nobody.sock)
    assert not [p for p in inits if alive(p) and p not in marked("nsshell-init")]


def test_keeper_out_of_fds_says_so(nobody):
    """Started under a hard limit of 96 fds (soft 32): the keeper raises its soft limit to
    the hard one, holds sets until it cannot receive more, then says it is out of fds (not
    "wrong number of fds"), keeps serving, and takes a set again once one is dropped."""
    got = nobody.driver("fill", nofile="32:96")
    print("keeper fd limit:", json.dumps(got))
    assert got["keeper_limit"] == ["96", "96"]  # soft raised to hard
    assert got["held_at_most"] > 32  # past the soft limit it was started with
    assert "out of file descriptors" in got["error"] and "wrong number" not in got["error"]
    assert "limit 96" in got["error"]
    assert got["still_answers"] and got["put_after_drop"]
    assert wait_gone([got["keeper_pid"]]) == []  # all dropped: it left
    assert not os.path.lexists(nobody.sock)


def test_clients_cope_with_a_keeper_that_just_left(nobody):
    """Four clients put, get and drop at once: every drop that empties the keeper ends it,
    under the others' feet; each client starts a new one or retries, and nothing fails."""
    procs = [subprocess.Popen(nobody.argv([sys.executable, DRIVER, "churn", f"c{i}x", "12"]),
                              env=_env({"HOME": "/tmp"}), cwd="/tmp", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    done = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    print("keeper churn:", done)
    assert all(d["put"] == d["get"] == d["drop"] == 12 for d in done)
    assert len(set().union(*(d["keepers"] for d in done))) > 1  # it did leave and come back
    assert wait_for(lambda: not nobody.keepers())
    assert not os.path.lexists(nobody.sock)


def test_a_keeper_whose_socket_is_taken_away(nobody, prefix):
    """Its socket unlinked: it binds it again.  Its directory removed: it makes it again.
    Its directory replaced by something it cannot use: no one can reach it, so it leaves
    (it must not hold sets for ever with no socket)."""
    name = f"{prefix}s"
    made = nobody.nsshell("-c", f"new user+net as {name} --no-join; persist {name}")
    assert made.rc == 0, made
    ks = nobody.keepers()
    assert len(ks) == 1
    os.unlink(nobody.sock)
    assert wait_for(lambda: os.path.lexists(nobody.sock), 5)
    assert nobody.nsshell("-c", f"join {name}").rc == 0 and nobody.keepers() == ks
    shutil.rmtree(f"{nobody.xdg}/nsshell")
    assert wait_for(lambda: os.path.lexists(nobody.sock), 5)
    st = os.lstat(f"{nobody.xdg}/nsshell")
    assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o700
    assert nobody.nsshell("-c", f"join {name}").rc == 0 and nobody.keepers() == ks
    shutil.rmtree(f"{nobody.xdg}/nsshell")
    with open(f"{nobody.xdg}/nsshell", "w"):
        pass
    assert wait_gone(ks, 5) == []
    os.unlink(f"{nobody.xdg}/nsshell")
    assert nobody.nsshell("-c", f"join {name}").rc == 1


def test_more_than_1024_fds_rootless(nobody):
    """Issue 11.5: sessions holding 1,100 handles, and a keeper holding 1,100 sets (so the
    pidfd of the PID set it gets last is past fd 1023): persist, `handles`, `ls` (the kept
    sets are there, the PID set alive) and unpersist all work; then the keeper leaves."""
    n = 1100
    puts = "; ".join(f"persist ns{i}" for i in range(1, n + 1))
    made = nobody.nsshell("-c", f"new user as u; map root; new net --count {n} --no-join; {puts}; "
                                "new user+pid as kp --no-join; persist kp")
    assert made.rc == 0, made.err
    ks = nobody.keepers()
    assert len(ks) == 1 and len(os.listdir(f"/proc/{ks[0]}/fd")) > n
    seen = nobody.nsshell("--json", "-c", f"new user as u; map root; new net as q --count {n} "
                                          "--no-join; handles --all; ls")
    assert seen.rc == 0, seen.err
    docs = json_docs(seen.out)
    kept = [r for r in docs[-2]["handles"] if r["origin"] == "keeper"]
    assert len(kept) == n + 2, len(kept)  # ns1..ns1100 (net) and kp (user, pid)
    assert [r.get("alive") for r in kept if r["name"] == "kp" and r["type"] == "pid"] == [True]
    named = {nm for row in docs[-1]["namespaces"] for nm in row["names"]}
    assert {"kp", "ns1", f"ns{n}"} <= named
    print(f"keeper fds: {len(os.listdir(f'/proc/{ks[0]}/fd'))}, session handles: {n + 1}")
    drops = "; ".join(f"unpersist ns{i}" for i in range(1, n + 1))
    gone = nobody.nsshell("-c", f"new user as u; map root; new net as q --count {n} --no-join; "
                                f"{drops}; unpersist kp")
    assert gone.rc == 0, gone.err
    assert wait_gone(ks) == []
    assert not os.path.lexists(nobody.sock)


def test_the_keeper_holds_only_what_the_name_rule_allows():
    """keeperd's name check is names.py's: a `put` of a real namespace fd under a name the
    rule refuses (what its clients would have refused) is refused, and the fd is closed."""
    from nsshell import names
    from nsshell.core.store import keeperd
    k = keeperd.Keeper()
    for bad in ("a:b", "1abc", "host", "net", "a b", "x" * 65, "", "é", "a/b", "-a"):
        assert not names.valid(bad)
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        answer, out = k.handle({"op": "put", "name": bad, "types": ["uts"]}, [fd])
        assert answer["ok"] is False and "must be a set name" in answer["error"], (bad, answer)
        assert out == [] and k.sets == {}
        with pytest.raises(OSError):
            os.fstat(fd)  # the keeper closed what it refused
        for op in ("get", "drop"):
            answer, _ = k.handle({"op": op, "name": bad}, [])
            assert answer["ok"] is False and "must be a set name" in answer["error"], (op, bad)
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    answer, _ = k.handle({"op": "put", "name": "good_1.x-y", "types": ["uts"]}, [fd])
    assert answer["ok"] is True, answer
    answer, _ = k.handle({"op": "drop", "name": "good_1.x-y"}, [])
    assert answer["ok"] is True and k.sets == {}
