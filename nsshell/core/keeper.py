"""The per-user keeper: holds namespace fds for an unprivileged user, who cannot bind-mount.

`persist` as a non-root user hands the set's fds (and, for a PID namespace, a
copy of its init's lifeline and a pidfd) to this small process over a Unix
socket with SCM_RIGHTS; a later nsshell of the same user asks for them by
name; `unpersist` releases them, and the keeper exits when it holds nothing.

The socket lives in $XDG_RUNTIME_DIR/nsshell/ when that is a private directory
of the user, otherwise in /tmp/nsshell-keeper-UID/ (mode 0700, owned by the
user, not a symlink: anything else is refused).  Both ends check the other's
uid with SO_PEERCRED, so another user can neither talk to it nor be fooled by
a socket that someone else put there.  The keeper runs as `nsshell-keeper`
(`python -m nsshell.core.keeper DIR`), detached from the shell that started it.

Wire format: a 4-byte length, then JSON; fds ride on the first sendmsg.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

COMM = "nsshell-keeper"
SOCK = "keeper.sock"
IDLE_EXIT = 20.0   # seconds a keeper that was never given anything waits before leaving

_HDR = struct.Struct("=I")


# --- where ---------------------------------------------------------------------------

def _private_dir_ok(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and (st.st_mode & 0o077) == 0


def socket_dir(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/") and _private_dir_ok(xdg, uid):
        return os.path.join(xdg, "nsshell")
    return f"/tmp/nsshell-keeper-{uid}"


def _check_dir(path: str, create: bool) -> bool:
    uid = os.geteuid()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or (st.st_mode & 0o077):
        from ..errors import NsshellError
        raise NsshellError(f"{path} is not a private directory of uid {uid} (a symlink, another "
                           "owner, or open to others): the keeper will not use it",
                           "remove it, or set XDG_RUNTIME_DIR to a directory of your own")
    return True


def socket_path() -> str:
    return os.path.join(socket_dir(), SOCK)


def available() -> bool:
    """Is a keeper socket there (cheap: one lstat)?"""
    d = socket_dir()
    try:
        return stat.S_ISSOCK(os.lstat(os.path.join(d, SOCK)).st_mode) and \
            _private_dir_ok(d, os.geteuid())
    except OSError:
        return False


# --- the wire --------------------------------------------------------------------------

def send(sock: socket.socket, obj, fds=()) -> None:
    payload = json.dumps(obj).encode()
    data = _HDR.pack(len(payload)) + payload
    if fds:
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", list(fds)))])
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv(sock: socket.socket, maxfds: int = 64):
    fds = array.array("i")
    first, anc, _flags, _ = sock.recvmsg(65536, socket.CMSG_SPACE(maxfds * fds.itemsize),
                                         socket.MSG_CMSG_CLOEXEC)
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    buf = first
    while len(buf) < _HDR.size:
        more = sock.recv(_HDR.size - len(buf))
        if not more:
            for fd in fds:
                os.close(fd)
            raise EOFError("the other end closed")
        buf += more
    (size,) = _HDR.unpack(buf[:_HDR.size])
    body = buf[_HDR.size:]
    while len(body) < size:
        more = sock.recv(size - len(body))
        if not more:
            for fd in fds:
                os.close(fd)
            raise EOFError("message cut short")
        body += more
    return json.loads(body[:size]), list(fds)


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


# --- the keeper process ------------------------------------------------------------------------

class Keeper:
    def __init__(self) -> None:
        self.sets: dict[str, dict] = {}
        self.given = False

    def handle(self, req: dict, fds: list[int]) -> tuple[dict, list[int]]:
        op = req.get("op")
        if op == "put":
            return self.put(req, fds)
        for fd in fds:
            os.close(fd)
        if op == "get":
            s = self.sets.get(req.get("name"))
            if s is None:
                return {"ok": False, "missing": True}, []
            order = list(s["fds"])
            out = [s["fds"][t] for t in order]
            if s.get("pidfd") is not None:
                out.append(s["pidfd"])
            return {"ok": True, "types": order, "meta": s["meta"],
                    "pidfd": s.get("pidfd") is not None}, out
        if op == "list":
            return {"ok": True, "sets": [self._describe(n, s) for n, s in sorted(self.sets.items())]}, []
        if op == "drop":
            s = self.sets.pop(req.get("name"), None)
            if s is None:
                return {"ok": False, "missing": True}, []
            self._close(s)
            return {"ok": True, "types": list(s["fds"]), "held": len(self.sets)}, []
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "held": len(self.sets)}, []
        return {"ok": False, "error": f"unknown request {op!r}"}, []

    def put(self, req: dict, fds: list[int]) -> tuple[dict, list[int]]:
        types = req["types"]
        name = req["name"]
        nfds = len(types) + (1 if req.get("lifeline") else 0) + (1 if req.get("pidfd") else 0)
        if len(fds) != nfds:
            for fd in fds:
                os.close(fd)
            return {"ok": False, "error": "wrong number of fds"}, []
        ids = {t: [os.fstat(fd).st_ino, os.fstat(fd).st_dev] for t, fd in zip(types, fds)}
        old = self.sets.get(name)
        if old is not None:
            for fd in fds:
                os.close(fd)
            if old["meta"]["ids"] == ids:
                return {"ok": True, "same": True}, []
            return {"ok": False, "error": f"{name!r} is already kept, as "
                    + " ".join(f"{t}:[{v[0]}]" for t, v in old["meta"]["ids"].items()),
                    "taken": True}, []
        rest = fds[len(types):]
        entry = {"fds": dict(zip(types, fds[:len(types)])), "lifeline": None, "pidfd": None,
                 "meta": {"ids": ids, "init": req.get("init"), "created": time.time()}}
        if req.get("lifeline"):
            entry["lifeline"] = rest.pop(0)
        if req.get("pidfd"):
            entry["pidfd"] = rest.pop(0)
        self.sets[name] = entry
        self.given = True
        return {"ok": True, "same": False, "pid": os.getpid()}, []

    def _describe(self, name: str, s: dict) -> dict:
        d = {"name": name, "types": {t: v[0] for t, v in s["meta"]["ids"].items()}}
        if s.get("pidfd") is not None:
            r, _, _ = select.select([s["pidfd"]], [], [], 0)
            d["alive"] = not r
        owners = {}
        for t, fd in s["fds"].items():
            try:
                ufd = fcntl.ioctl(fd, 0xB701)  # NS_GET_USERNS
            except OSError:
                continue
            owners[t] = f"user:[{os.fstat(ufd).st_ino}]"
            os.close(ufd)
        d["owners"] = owners
        return d

    @staticmethod
    def _close(s: dict) -> None:
        for fd in list(s["fds"].values()) + [s.get("lifeline"), s.get("pidfd")]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


def serve(dirpath: str, ready_fd: int | None = None) -> int:
    """The keeper's main loop: one request per connection, peers of our uid only."""
    uid = os.geteuid()
    _check_dir(dirpath, create=True)
    dfd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _ready(ready_fd, "busy")
        return 0
    # Named only once it holds the lock: a keeper that lost the race to start (above)
    # never shows up as one, not even while it exits.
    from ..kernel.syscalls import set_process_title
    from .harden import protect
    protect()  # it holds the user's namespaces: nothing inside one may drive it (core/harden.py)
    set_process_title(COMM)
    path = os.path.join(dirpath, SOCK)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)
    try:
        lsock.bind(path)
    finally:
        os.umask(old)
    lsock.listen(16)
    sock_ino = os.stat(path).st_ino
    keeper = Keeper()
    _ready(ready_fd, "ok")
    started = time.monotonic()
    try:
        while True:
            r, _, _ = select.select([lsock], [], [], 1.0)
            if not r:
                if not keeper.given and time.monotonic() - started > IDLE_EXIT:
                    return 0
                continue
            try:
                conn, _ = lsock.accept()
            except InterruptedError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    if peer_uid(conn) != uid:
                        continue  # another user: not a word
                    req, fds = recv(conn)
                    reply, out = keeper.handle(req, fds)
                    send(conn, reply, out)
                except (OSError, EOFError, ValueError, KeyError, TypeError):
                    continue
            if keeper.given and not keeper.sets:
                return 0
    finally:
        lsock.close()
        try:
            if os.stat(path).st_ino == sock_ino:
                os.unlink(path)
        except OSError:
            pass
        for s in keeper.sets.values():
            Keeper._close(s)
        os.close(dfd)


def _ready(fd: int | None, word: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, word.encode())
        os.close(fd)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    dirpath = argv[1]
    ready = int(argv[2]) if len(argv) > 2 else None
    # Detach: own session, reparented away from the shell that started us.
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    try:
        return serve(dirpath, ready)
    except Exception as e:  # noqa: BLE001
        _ready(ready, f"error: {e}")
        return 1


# --- the client (the shell) -------------------------------------------------------------------

def _connect() -> socket.socket | None:
    path = socket_path()
    if not available():
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(5)
        s.connect(path)
        if peer_uid(s) != os.geteuid():
            s.close()
            from ..errors import NsshellError
            raise NsshellError(f"{path} is answered by another user: refusing it",
                               "remove the directory and try again")
        return s
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
        return None
    except OSError:
        s.close()
        raise


def _start() -> None:
    from ..errors import NsshellError
    d = socket_dir()
    _check_dir(d, create=True)
    r, w = os.pipe()
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        p = subprocess.Popen([sys.executable, "-m", "nsshell.core.keeper", d, str(w)],
                             pass_fds=[w], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True)
    finally:
        os.close(w)
    try:
        from .spawn import read_all  # the keeper process itself imports no nsshell module
        data = read_all(r)
    finally:
        os.close(r)
        p.wait()
    word = data.decode(errors="replace")
    if word not in ("ok", "busy"):
        raise NsshellError(f"the keeper did not start: {word or 'no answer'}")


def request(req: dict, fds=(), start: bool = False):
    """Send REQ to the keeper (starting one with START); (reply, fds), or None when
    there is no keeper."""
    for attempt in range(3):
        s = _connect()
        if s is None:
            if not start:
                return None
            _start()
            s = _connect()
            if s is None:
                time.sleep(0.05 * (attempt + 1))
                continue
        try:
            send(s, req, fds)
            return recv(s)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            time.sleep(0.05)  # a keeper on its way out: try again
            continue
        finally:
            s.close()
    from ..errors import NsshellError
    raise NsshellError("the keeper did not answer", f"its socket: {socket_path()}")


def persist(nsset, name: str):
    from ..errors import NsshellError
    from .persist import Persisted, _init_info
    types = [t for t in nsset.handles]
    fds = [nsset.handles[t].fd for t in types]
    req = {"op": "put", "name": name, "types": types}
    notes = ["no bind mounts without root: ip netns and nsenter do not see it"]
    if "pid" in nsset.handles:
        lifeline, info, pidfd = _init_info(nsset.handles["pid"])
        req["init"] = info
        if lifeline is not None:
            req["lifeline"] = True
            fds.append(lifeline)
        if pidfd is not None and pidfd >= 0:
            req["pidfd"] = True
            fds.append(pidfd)
        elif nsset.handles["pid"].holder is not None:
            hp = nsset.handles["pid"].holder
            if hp.pidfd is not None and hp.pidfd >= 0:
                req["pidfd"] = True
                fds.append(hp.pidfd)
    reply, _ = request(req, fds, start=True)
    if not reply.get("ok"):
        raise NsshellError(reply.get("error", "the keeper refused"),
                           "`unpersist` it first, or pick another name" if reply.get("taken") else None)
    path = f"keeper:{name}"
    if nsset.name:
        nsset.persisted = path
    if reply.get("same"):
        notes.append("already kept (same namespaces)")
    return Persisted(name, path, types, None, reply.get("pid"), bool(reply.get("same")),
                     keeper=True, notes=notes)


def get(name: str):
    """Handles on the set NAME that the keeper holds, or None."""
    from ..kernel import nstypes
    from .handle import Handle
    from .holder import PersistedInit
    got = request({"op": "get", "name": name})
    if got is None:
        return None
    reply, fds = got
    if not reply.get("ok"):
        for fd in fds:
            os.close(fd)
        return None
    types = reply["types"]
    pidfd = fds[len(types)] if reply.get("pidfd") and len(fds) > len(types) else None
    init = reply.get("meta", {}).get("init") or {}
    handles = {}
    for t, fd in zip(types, fds):
        holder = None
        if t == "pid" and (pidfd is not None or init):
            holder = PersistedInit(init.get("pid"), init.get("start"), pidfd=pidfd)
            pidfd = None
        handles[t] = Handle(fd, nstypes.BY_NAME[t], origin=f"keeper:{name}", holder=holder)
    if pidfd is not None:
        os.close(pidfd)
    return handles


def drop(name: str):
    got = request({"op": "drop", "name": name})
    if got is None:
        return None
    reply, fds = got
    for fd in fds:
        os.close(fd)
    if not reply.get("ok"):
        return None
    return [f"keeper:{name}/{t}" for t in reply.get("types", [])]


def listing() -> list[dict]:
    try:
        got = request({"op": "list"})
    except Exception:
        return []
    if got is None:
        return []
    reply, fds = got
    for fd in fds:
        os.close(fd)
    out = []
    for s in reply.get("sets", []):
        for t, ino in s["types"].items():
            row = {"name": s["name"], "type": t, "path": f"keeper:{s['name']}",
                   "nsid": f"{t}:[{ino}]", "inode": ino, "source": "keeper",
                   "owner": s.get("owners", {}).get(t)}
            if t == "pid" and "alive" in s:
                row["alive"] = s["alive"]
            out.append(row)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
