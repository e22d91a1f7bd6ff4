"""`tree`: the user-namespace hierarchy (NS_GET_PARENT / NS_GET_USERNS), ancestors no
process is in included, and `tree pid`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest


def _ino(pid, t):
    return os.stat(f"/proc/{pid}/ns/{t}").st_ino


def _walk(nodes, path=()):
    for n in nodes:
        yield path + (n,), n
        yield from _walk(n["children"], path + (n,))


def _find(tree, t, ino):
    for path, n in _walk(tree):
        if n["type"] == t and n["ns"] == ino:
            return path
    raise AssertionError(f"{t}:[{ino}] not in the tree")


@pytest.fixture
def chain():
    """A process three user namespaces deep (each made by an unshare that exec'd the
    next, so the outer two have no process), in its own net and uts namespaces."""
    p = subprocess.Popen(["unshare", "-Ur", "unshare", "-Ur", "unshare", "-Ur", "--net", "--uts",
                          "sleep", "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{p.pid}/comm") as f:
                    if f.read().strip() == "sleep":
                        break
            except OSError:
                pass
            time.sleep(0.02)
        yield p
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def test_user_tree_three_deep_with_owned_namespaces(nsshell, chain):
    done = nsshell("--json", "-c", "tree")
    assert done.rc == 0, done
    tree = json.loads(done.out)["tree"]
    inner = _ino(chain.pid, "user")
    path = _find(tree, "user", inner)
    users = [n for n in path if n["type"] == "user"]
    host = _ino(os.getpid(), "user")
    # host -> level 1 -> level 2 -> level 3, each the parent of the next.
    assert users[-4]["ns"] == host
    l1, l2, l3 = users[-3:]
    assert l1["parent"] == host and l2["parent"] == l1["ns"] and l3["parent"] == l2["ns"]
    # The outer two hold no process: reached only through NS_GET_PARENT (held as parents).
    assert l1["nprocs"] == 0 and l2["nprocs"] == 0
    assert l1["held"] == ["parent"] and l2["held"] == ["parent"]
    assert l3["nprocs"] == 1 and l3["pid"] == chain.pid
    for n in (l1, l2, l3):
        assert n["owner_uid"] == 0
    assert l3["uid_map"] == ["0 0 1"]
    # Its net and uts namespaces sit under level 3, not elsewhere.
    owned = {(c["type"], c["ns"]) for c in l3["children"]}
    assert ("net", _ino(chain.pid, "net")) in owned
    assert ("uts", _ino(chain.pid, "uts")) in owned
    net_path = _find(tree, "net", _ino(chain.pid, "net"))
    assert net_path[-2]["ns"] == inner
    # ... and its other namespaces (the host's) stay under the host's user namespace.
    mnt_path = _find(tree, "mnt", _ino(chain.pid, "mnt"))
    assert mnt_path[-2]["ns"] == host


def test_user_tree_plain(nsshell, chain):
    done = nsshell("-c", "tree")
    assert done.rc == 0, done
    inner = _ino(chain.pid, "user")
    lines = done.out.splitlines()
    hit = next(l for l in lines if f"user:[{inner}]" in l)
    assert "owner uid 0" in hit and "uid 0->0" in hit
    depth = lambda l: len(l) - len(l.lstrip("│ ├└─"))  # noqa: E731
    net = next(l for l in lines if f"net:[{_ino(chain.pid, 'net')}]" in l)
    assert depth(net) > depth(hit)


def test_pid_tree(nsshell):
    p = subprocess.Popen(["unshare", "--pid", "--fork", "unshare", "--pid", "--fork", "sleep",
                          "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        leaf = None
        while time.monotonic() < deadline and leaf is None:
            for name in os.listdir("/proc"):
                if name.isdigit() and _pgid(int(name)) == p.pid:
                    try:
                        with open(f"/proc/{name}/comm") as f:
                            if f.read().strip() == "sleep":
                                leaf = int(name)
                    except OSError:
                        continue
            time.sleep(0.05)
        assert leaf, "the nested sleep did not start"
        done = nsshell("--json", "-c", "tree pid")
        assert done.rc == 0, done
        tree = json.loads(done.out)["tree"]
        path = _find(tree, "pid", _ino(leaf, "pid"))
        assert [n["ns"] for n in path][0] == _ino(os.getpid(), "pid")
        assert len(path) == 3
        assert path[2]["parent"] == path[1]["ns"] and path[1]["parent"] == path[0]["ns"]
        assert path[2]["owner"] == f"user:[{_ino(os.getpid(), 'user')}]"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_tree_rootless(rootless):
    done = rootless("--json", "-c", "new user+net as u --no-join; tree")
    assert done.rc == 0, done
    docs = [json.loads(x) for x in _split(done.out)]
    tree = docs[-1]["tree"]
    found = [n for _, n in _walk(tree) if n["type"] == "user" and "u" in n["names"]]
    assert len(found) == 1
    assert found[0]["owner_uid"] == 65534
    assert any(c["type"] == "net" and "u" in c["names"] for c in found[0]["children"])


def _split(text):
    dec, i, out = json.JSONDecoder(), 0, []
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = dec.raw_decode(text, i)
        out.append(json.dumps(obj))
    return out
