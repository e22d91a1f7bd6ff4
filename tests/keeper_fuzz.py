"""Drivers for tests/test_keeper_faults.py, run as the keeper's own (unprivileged) user.

    python keeper_fuzz.py fuzz NAME SEED COUNT   malformed requests against the keeper that
                                                 holds NAME; after each it must still answer,
                                                 and NAME must be intact
    python keeper_fuzz.py fill                   puts one-fd sets until the keeper runs out
                                                 of fds (run it under a low hard limit)
    python keeper_fuzz.py churn TAG ROUNDS       put/get/drop in a loop (several at once: the
                                                 keeper exits and restarts under them)

Each prints one JSON object with its figures on its last line.
"""

from __future__ import annotations

import array
import json
import os
import random
import socket
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nsshell.core.proc import channel  # noqa: E402
from nsshell.core.store import keeper, keeperd  # noqa: E402


class HDR:
    """The channel's frame header (core/proc/channel.py); NFDS is set to the number of fds
    sent with it by `fit` unless a case is about that count."""
    size = channel.HEADER_SIZE

    @staticmethod
    def pack(size: int, nfds: int = 0) -> bytes:
        return channel.header(size, nfds)


def frame(body: bytes) -> bytes:
    return HDR.pack(len(body)) + body


def fit(data: bytes, nfds: int) -> bytes:
    """DATA with its header's fd count set to NFDS (when it starts with a header)."""
    if len(data) >= HDR.size and data[:2] == channel.MAGIC:
        return data[:3] + bytes([min(nfds, 255)]) + data[4:]
    return data


def jframe(obj) -> bytes:
    return frame(json.dumps(obj).encode())


def sock_path() -> str:
    dirs = [d for d in keeper.keeper_dirs() if os.path.exists(os.path.join(d, keeper.SOCK))]
    assert dirs, "no keeper"
    return os.path.join(dirs[0], keeper.SOCK)


def exchange(path: str, data: bytes, fds=(), shut: bool = True):
    """Send DATA (FDS on the first sendmsg) on a new connection; the reply, or None when the
    keeper closed without one."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    try:
        try:
            if fds:
                sent = s.sendmsg([data[:65536]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                   array.array("i", list(fds)))])
                data = data[sent:]
            if data:
                s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered (or not) and closed before reading everything: see below
        try:
            reply, rfds = keeperd.recv(s)
        except (EOFError, ConnectionResetError):
            return None
        for fd in rfds:
            os.close(fd)
        return reply
    finally:
        s.close()


class Fds:
    """Fds of every kind to send: namespaces of this process, and things that are not."""

    def __init__(self) -> None:
        self.kinds = {}
        for t in keeperd.NS_TYPES:
            self.kinds[t] = lambda t=t: os.open(f"/proc/self/ns/{t}", os.O_RDONLY)
        self.kinds["pipe"] = self._pipe
        self.kinds["null"] = lambda: os.open("/dev/null", os.O_RDONLY)
        self.kinds["socket"] = lambda: socket.socket().detach()
        self.kinds["dir"] = lambda: os.open("/", os.O_RDONLY)

    @staticmethod
    def _pipe() -> int:
        r, w = os.pipe()
        os.close(w)
        return r

    def make(self, kinds) -> list[int]:
        return [self.kinds[k]() for k in kinds]


def ids_of(name: str):
    got = keeper.request({"op": "get", "name": name})
    assert got is not None
    reply, fds = got
    for fd in fds:
        os.close(fd)
    return reply.get("meta", {}).get("ids") if reply.get("ok") else None


def structured(fds: Fds):
    """(kind, data, fd kinds, shut, expected answer) for each fault named in issue 11.3, and more:
    refused (ok false, an error), silent (no answer: the frame never ended), ok, missing."""
    deep = b"[" * 200000 + b"]" * 200000
    yield "non-json", "refused", frame(b"hello"), [], True
    yield "non-json", "refused", frame(b"\xff\xfe\x00\x01"), [], True
    yield "non-json", "refused", frame(b"{"), [], True
    yield "non-json", "refused", frame(b'{"op": "ping"'), [], True
    yield "non-json", "refused", frame(b""), [], True
    yield "non-json", "refused", frame("{\"op\": \"g\u00e9t\"}".encode("latin-1")), [], True
    for text in (b'"hello"', b"42", b"[]", b'[{"op": "ping"}]', b"null", b"true", b"1e999",
                 b"NaN", b'"\\ud800"', deep):
        yield "json-not-object", "refused", frame(text), [], True
    for req in ({}, {"op": 1}, {"op": None}, {"op": ["put"]}, {"op": "nope"},
                {"op": "get"}, {"op": "get", "name": 5}, {"op": "get", "name": ["a"]},
                {"op": "get", "name": "a/b"}, {"op": "get", "name": "a\nb"},
                {"op": "get", "name": "x" * 5000}, {"op": "drop", "name": None},
                {"op": "drop", "name": {}}, {"op": "put"},
                {"op": "put", "name": "fz", "types": "net"},
                {"op": "put", "name": "fz", "types": ["nett"]},
                {"op": "put", "name": "fz", "types": ["net", "net"]},
                {"op": "put", "name": "fz", "types": []},
                {"op": "put", "name": "fz", "types": [1]},
                {"op": "put", "name": 7, "types": ["net"]},
                {"op": "put", "name": "fz", "types": ["net"], "lifeline": "yes"},
                {"op": "put", "name": "fz", "types": ["net"], "init": "x"},
                {"op": "put", "name": "fz", "types": ["net"], "init": {"pid": "1"}},
                {"op": "put", "name": "fz", "types": ["net"], "lifeline": True}):
        yield "wrong-types", "refused", jframe(req), ["net"] if req.get("types") == ["net"] else [], True
    put = {"op": "put", "name": "fz", "types": ["net"]}
    yield "fds-mismatch", "refused", jframe(put), [], True
    yield "fds-mismatch", "refused", jframe(put), ["net", "net"], True
    yield "fds-mismatch", "refused", jframe(put), ["pipe"], True
    yield "fds-mismatch", "refused", jframe(put), ["user"], True
    yield "fds-mismatch", "refused", jframe(put), ["socket"], True
    yield "fds-mismatch", "refused", jframe({"op": "put", "name": "fz", "types": ["user", "net"]}), \
        ["net", "user"], True
    yield "fds-mismatch", "refused", jframe({"op": "put", "name": "fz", "types": ["pid"], "lifeline": True}), \
        ["pid"], True
    yield "fds-mismatch", "refused", jframe({"op": "ping"}), ["net"] * 70, True   # more than MAX_FDS
    yield "fds-extra", "ok", jframe({"op": "ping"}), ["net", "pipe"], True
    yield "fds-extra", "ok", jframe({"op": "list"}), ["dir"], True
    yield "fds-count", "refused", jframe({"op": "ping"}), ["net"], "keep"     # says 0, has 1
    yield "fds-count", "refused", HDR.pack(2, 2) + b"{}", ["net"], "keep"     # says 2, has 1
    yield "pickled", "refused", channel.header(4, 0, channel.PICKLE) + b"\x80\x04N.", [], True
    yield "bad-magic", "refused", b"XY" + HDR.pack(2)[2:] + b"{}", [], True
    yield "truncated", "silent", HDR.pack(100) + b'{"op"', [], True
    yield "truncated", "silent", HDR.pack(100)[:2], [], True
    yield "truncated", "silent", b"", [], True
    yield "truncated", "silent", HDR.pack(100), ["net"], True
    yield "oversize", "refused", HDR.pack(0xFFFFFFFF) + b"{}", [], True
    yield "oversize", "refused", HDR.pack(keeperd.MAX_REQUEST + 1) + b" " * 300000, [], True
    yield "oversize", "refused", frame(b" " * (keeperd.MAX_REQUEST + 1)), [], True
    yield "trailing", "refused", jframe({"op": "ping"}) + b"junk", [], True
    yield "trailing", "refused", jframe({"op": "ping"}) + jframe({"op": "ping"}), [], True
    yield "valid", "ok", jframe({"op": "ping"}), [], True
    pad = keeperd.MAX_REQUEST - len(json.dumps({"op": "ping", "pad": ""}))
    yield "valid", "ok", jframe({"op": "ping", "pad": "x" * pad}), [], True   # exactly the limit
    yield "valid", "ok", jframe({"op": "list"}), [], True
    yield "valid", "missing", jframe({"op": "get", "name": "no-such-set"}), [], True
    yield "valid", "missing", jframe({"op": "drop", "name": "no-such-set"}), [], True


def value(rng: random.Random, depth: int = 0):
    pick = rng.randrange(12)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.randint(-2**70, 2**70)
    if pick == 3:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
    if pick == 5:
        return "x" * rng.choice([0, 1, 64, 65, 256, 5000])
    if pick == 6 and depth < 3:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 7 and depth < 3:
        return {str(value(rng, 3)): value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if pick == 8:
        return rng.choice(keeperd.NS_TYPES + ("nett", "", "pid\x00"))
    if pick == 9:
        return rng.sample(keeperd.NS_TYPES, rng.randrange(1, 4))
    if pick == 10:
        return rng.choice(["put", "get", "drop", "list", "ping", "PUT", "get "])
    return {"pid": rng.randint(-5, 2**40), "start": rng.choice([None, 0, "1", 2**64])}


def randomized(rng: random.Random, count: int, protect: str):
    for _ in range(count):
        req = {"op": rng.choice(["put", "get", "drop", "list", "ping"]),
               "name": rng.choice(["fz", "fz2", "a b", protect + "x"]),
               "types": rng.sample(["user", "net", "uts"], rng.randrange(1, 4))}
        for _ in range(rng.randrange(1, 4)):
            key = rng.choice(["op", "name", "types", "lifeline", "pidfd", "init", "extra"])
            if rng.random() < 0.25:
                req.pop(key, None)
            else:
                req[key] = value(rng)
        if req.get("name") == protect:  # never drop (or shadow) the set under watch
            req["name"] = protect + "y"
        fkinds = [rng.choice(list(Fds().kinds)) for _ in range(rng.choice([0, 0, 1, 2, 3, 5]))]
        if isinstance(req.get("types"), list) and rng.random() < 0.4:
            fkinds = [t if t in keeperd.NS_TYPES and t != "pid" else "net"
                      for t in req["types"] if isinstance(t, str)]
        data = json.dumps(req).encode()
        how = rng.random()
        kind = "random"
        if how < 0.1:
            data = HDR.pack(len(data) + rng.randint(1, 50)) + data       # says more: cut short
            kind = "random-truncated"
        elif how < 0.2:
            data = HDR.pack(max(0, len(data) - rng.randint(1, 5))) + data  # says less
            kind = "random-length"
        elif how < 0.3 and data:
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = frame(bytes(b))
            kind = "random-bytes"
        else:
            data = frame(data)
        yield kind, None, data, fkinds, True


def fuzz(name: str, seed: int, count: int) -> dict:
    path = sock_path()
    rng = random.Random(seed)
    fds = Fds()
    kpid = keeper.request({"op": "ping"})[0]["pid"]
    base = ids_of(name)
    assert base, f"{name} is not kept"
    fd_before = keeper.request({"op": "ping"})[0]["fds"]
    stats = Counter()
    errors = Counter()
    cases = list(structured(fds)) + list(randomized(rng, count, name))
    wrong = []
    for i, (kind, expect, data, fkinds, shut) in enumerate(cases):
        if shut == "keep":  # a case about the header's fd count: sent as it is
            shut = True
        else:
            data = fit(data, len(fkinds))
        sent = fds.make(fkinds)
        try:
            reply = exchange(path, data, sent, shut)
        finally:
            for fd in sent:
                os.close(fd)
        stats[kind] += 1
        got = ("silent" if reply is None else "ok" if reply.get("ok") else
               "missing" if reply.get("missing") else "refused" if reply.get("error") else "?")
        if expect is not None and got != expect:
            wrong.append(f"case {i} ({kind}): {got}, not {expect}: {data[:60]!r}")
        if reply is None:
            stats["unanswered"] += 1
        elif reply.get("ok"):
            stats["accepted"] += 1
        else:
            stats["refused"] += 1
            errors[str(reply.get("error", "missing" if reply.get("missing") else "?"))[:60]] += 1
        ping = keeper.request({"op": "ping"})
        assert ping is not None and ping[0].get("ok") and ping[0]["pid"] == kpid, \
            f"case {i} ({kind}): the keeper stopped answering: {data[:80]!r}"
        if ping[0]["held"] != 1:
            # a put the fuzz made that was valid: release it, the set under watch stays
            for s in keeper.request({"op": "list"})[0]["sets"]:
                if s["name"] != name:
                    keeper.request({"op": "drop", "name": s["name"]})
        if i % 25 == 0 or i == len(cases) - 1:
            assert ids_of(name) == base, f"case {i} ({kind}): {name} changed"
    time.sleep(0.1)
    fd_after = keeper.request({"op": "ping"})[0]["fds"]
    listed = [s["name"] for s in keeper.request({"op": "list"})[0]["sets"]]
    return {"cases": len(cases), "kinds": dict(stats), "keeper_pid": kpid,
            "fd_before": fd_before, "fd_after": fd_after, "held": listed,
            "errors": dict(errors.most_common(12)), "unexpected": wrong}


def fill() -> dict:
    """One-fd sets (this process's uts namespace) until the keeper says it is out of fds."""
    names, error, kpid = [], None, None
    for i in range(4096):
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        try:
            reply, _ = keeper.request({"op": "put", "name": f"fill{i}", "types": ["uts"]},
                                      [fd], start=True)
        finally:
            os.close(fd)
        if not reply.get("ok"):
            error = reply.get("error")
            break
        kpid = reply.get("pid") or kpid
        names.append(f"fill{i}")
    with open(f"/proc/{kpid}/limits") as f:
        limit = [line.split()[3:5] for line in f if line.startswith("Max open files")][0]
    open_fds = keeper.request({"op": "ping"})[0]["fds"]
    still = keeper.request({"op": "ping"})[0]
    # one released: room for one more
    keeper.request({"op": "drop", "name": names[0]})
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    again, _ = keeper.request({"op": "put", "name": "fill-again", "types": ["uts"]}, [fd])
    os.close(fd)
    for n in names[1:] + ["fill-again"]:
        keeper.request({"op": "drop", "name": n})
    return {"held_at_most": len(names), "error": error, "keeper_pid": kpid,
            "keeper_limit": limit, "keeper_fds": open_fds, "still_answers": still.get("ok"),
            "put_after_drop": again.get("ok")}


def churn(tag: str, rounds: int) -> dict:
    """Put, get and drop a set of one's own ROUNDS times; the keeper exits whenever it holds
    nothing, so with several of these at once every request can meet one on its way out."""
    done, pids = Counter(), set()
    for i in range(rounds):
        name = f"{tag}{i}"
        fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            reply, _ = keeper.request({"op": "put", "name": name, "types": ["net"]}, [fd],
                                      start=True)
        finally:
            os.close(fd)
        assert reply.get("ok"), reply
        pids.add(reply.get("pid"))
        done["put"] += 1
        assert ids_of(name), f"{name} lost"
        done["get"] += 1
        got = keeper.request({"op": "drop", "name": name})
        assert got is not None and got[0].get("ok"), got
        done["drop"] += 1
    return dict(done, keepers=sorted(pids))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "fuzz":
        out = fuzz(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "fill":
        out = fill()
    else:
        out = churn(sys.argv[2], int(sys.argv[3]))
    print(json.dumps(out))
