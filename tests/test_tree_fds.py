"""`tree` with more namespaces on the system than the shell's soft fd limit (issue 11.6):
it opens, asks and closes one namespace at a time, so 300 network and 300 PID
namespaces held by a helper all show under a soft limit of 200."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import _env, json_docs, nsshell_argv

N = 300

HOLDER = f"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/pid", os.O_RDONLY)
net, pid = [], []
for _ in range({N}):
    assert libc.unshare(0x40000000 | 0x20000000) == 0, ctypes.get_errno()   # net + pid
    net.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    r, w = os.pipe()
    c = os.fork()  # the new PID namespace is openable once it has an init
    if c == 0:
        os.close(w); os.read(r, 1); os._exit(0)
    pid.append(os.open(f"/proc/{{c}}/ns/pid", os.O_RDONLY))
    os.close(r); os.close(w); os.waitpid(c, 0)
    assert libc.setns(home, 0x20000000) == 0  # children in our own PID namespace again
print(json.dumps({{"net": [os.fstat(f).st_ino for f in net],
                   "pid": [os.fstat(f).st_ino for f in pid]}}), flush=True)
sys.stdin.read()
"""


def _walk(nodes):
    for n in nodes:
        yield n
        yield from _walk(n["children"])


def test_tree_needs_few_fds(prefix):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        held = json.loads(holder.stdout.readline())
        assert len(set(held["net"])) == N and len(set(held["pid"])) == N
        for kind, t in (("user", "net"), ("pid", "pid")):
            p = subprocess.run(["prlimit", "--nofile=200:4096", "--"] + nsshell_argv()
                               + ["--json", "-c", f"tree {kind}"], capture_output=True,
                               text=True, env=_env(), cwd="/tmp", timeout=120)
            assert p.returncode == 0, (kind, p.stderr[-500:])
            nodes = list(_walk(json_docs(p.stdout)[-1]["tree"]))
            shown = {n["ns"] for n in nodes if n["type"] == t}
            assert set(held[t]) <= shown, (kind, len(set(held[t]) - shown))
            if t == "pid":  # made by a process of the host's PID namespace: its children
                host = [n for n in nodes if n["parent"] is None][0]
                assert set(held[t]) <= {c["ns"] for c in host["children"]}
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
