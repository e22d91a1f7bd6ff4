"""The per-user keeper process, and its wire format (the client is core/store/keeper.py).

An unprivileged user cannot bind-mount, so `persist` hands a set's fds to this
small process over a Unix socket with SCM_RIGHTS; it holds them until
`unpersist` asks for them back, and exits when it holds nothing.  It runs as
`nsshell-keeper` (`python -m nsshell.core.store.keeperd DIR [READY_FD]`), detached
from the shell that started it, in the directory the client chose (see
keeper.py for where, and why that cannot be squatted).

Wire format: core/proc/channel.py's frame, JSON only (a pickled frame is
refused: the keeper is no child of the shell), the fds on its first sendmsg.
One request and one answer per connection.

What the keeper promises (issue 11.3): no request, however malformed, ends it
or changes what it holds.  A request that is not a frame (cut short, oversize),
not JSON, not an object, has the wrong types, an unknown op, or fds that do not
match what it says is answered `{"ok": false, "error": ...}` (when an answer
can still be written), its fds are closed, and the next connection is served.
Only peers of the keeper's own uid (SO_PEERCRED) get a word.  It raises its
RLIMIT_NOFILE soft limit to the hard limit; when it still runs out of fds the
answer says so ("out of file descriptors"), never "wrong number of fds".  It
waits with poll() only (select() fails past fd 1023).

It exits when it holds nothing (after the last `drop`, or IDLE_EXIT seconds
after it started without ever being given a set), and when its socket can no
longer be reached (its directory removed or replaced, and not recoverable): a
keeper nobody can talk to would hold its sets for ever.  On the way out it
unlinks its socket first (new clients then start a new keeper instead of
talking to a dying one), then closes its listening socket.

This module imports nothing from nsshell at start but the kernel layer
(nsshell/kernel: syscalls, procfs, nstypes) and core/proc/channel.py (stdlib only): the daemon
must not depend on the shell's state.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import _signal
import socket
import stat
import struct
import sys
import time

from ... import names  # the name rule: light (nstypes only)
from ...kernel import nstypes, syscalls
from ..proc import channel  # stdlib only: the daemon starts light

COMM = "nsshell-keeper"
SOCK = "keeper.sock"
IDLE_EXIT = 20.0          # seconds a keeper that was never given anything waits before leaving
TICK = 1.0                # how often an idle keeper checks that its socket is still its own
MAX_REQUEST = 1 << 20     # bytes of JSON a request may have
MAX_REPLY = 1 << 28       # bytes of JSON a client accepts (a `list` of many sets)
MAX_FDS = 64              # fds one request may carry (8 namespaces + lifeline + pidfd)
CONN_TIMEOUT = 5.0        # seconds a peer has to send its request

NS_TYPES = nstypes.NAMES

# The wire is core/proc/channel.py's frame, JSON only (the keeper is not the shell's own
# child: a pickled frame is refused).  Its errors keep the names the keeper has used.
ProtocolError = channel.ChannelError   # a frame answered with an error (fds already closed)
FdsLost = channel.FdsLost              # the kernel dropped some fds (MSG_CTRUNC), or too many
_close_all = channel.close_all


def send(sock: socket.socket, obj, fds=()) -> None:
    channel.send(sock, obj, fds)


def recv(sock: socket.socket, maxfds: int = MAX_FDS, maxsize: int = MAX_REPLY):
    """(decoded JSON, fds) of one frame; fds are closed on every error (channel.recv)."""
    return channel.recv(sock, maxfds=maxfds, maxsize=maxsize)


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def fd_limit() -> tuple[int, int]:
    """(fds open now, soft limit) of this process."""
    try:
        n = len(os.listdir("/proc/self/fd")) - 1  # the listing's own fd
    except OSError:
        n = -1
    import resource
    return n, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def out_of_fds_error() -> str:
    n, limit = fd_limit()
    used = f"{n} open" if n >= 0 else "all in use"  # counting them needs an fd too
    return (f"the keeper is out of file descriptors ({used}, limit {limit}): "
            "unpersist a set it holds, or start it with a higher hard limit (ulimit -Hn)")


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: the keeper's fds are the user's sets."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


# --- what the keeper holds -----------------------------------------------------------------

def _is_name(v) -> bool:
    """The one name rule (names.py): the keeper holds nothing its clients could not name."""
    return isinstance(v, str) and names.valid(v)


def _bad(msg: str) -> dict:
    return {"ok": False, "error": msg}


class Keeper:
    def __init__(self) -> None:
        self.sets: dict[str, dict] = {}
        self.given = False

    def handle(self, req, fds: list[int]) -> tuple[dict, list[int]]:
        """The answer to REQ (and the fds to send with it).  Takes the ownership of FDS:
        they are kept (a good `put`) or closed, whatever happens."""
        try:
            if not isinstance(req, dict):
                raise ProtocolError(f"a request is a JSON object, not {type(req).__name__}")
            op = req.get("op")
            if op == "put":
                taken, fds = fds, []  # put() keeps them or closes them, whatever happens
                return self.put(req, taken), []
            _close_all(fds)
            fds = []
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "held": len(self.sets),
                        "fds": _open_fds()}, []
            if op == "list":
                return {"ok": True, "pid": os.getpid(), "sets": [self._describe(n, s)
                                             for n, s in sorted(self.sets.items())]}, []
            if op in ("get", "drop"):
                name = req.get("name")
                if not _is_name(name):
                    raise ProtocolError(f"{op}: 'name' must be a set name, not {name!r:.40}")
                if op == "get":
                    return self.get(name)
                s = self.sets.pop(name, None)
                if s is None:
                    return {"ok": False, "missing": True}, []
                self._close(s)
                return {"ok": True, "types": list(s["fds"]), "held": len(self.sets)}, []
            if op is None:
                raise ProtocolError("a request needs an 'op': put, get, drop, list or ping")
            raise ProtocolError(f"unknown request {op!r:.40} (put, get, drop, list or ping)")
        except ProtocolError as e:
            _close_all(fds)
            return _bad(str(e)), []
        except OSError as e:
            _close_all(fds)
            if e.errno in (errno.EMFILE, errno.ENFILE):
                return _bad(out_of_fds_error()), []
            return _bad(f"the keeper failed: {e.strerror or e}"), []
        except Exception as e:  # noqa: BLE001 - a request never ends the keeper
            _close_all(fds)
            return _bad(f"the keeper failed on this request: {type(e).__name__}: {e}"), []

    def get(self, name: str) -> tuple[dict, list[int]]:
        s = self.sets.get(name)
        if s is None:
            return {"ok": False, "missing": True}, []
        order = list(s["fds"])
        out = [s["fds"][t] for t in order]
        if s.get("pidfd") is not None:
            out.append(s["pidfd"])
        return {"ok": True, "types": order, "meta": s["meta"],
                "pidfd": s.get("pidfd") is not None}, out

    @staticmethod
    def _check_put(req: dict, fds: list[int]) -> tuple[str, list[str], bool, bool, dict | None]:
        name = req.get("name")
        if not _is_name(name):
            raise ProtocolError(f"put: 'name' must be a set name, not {name!r:.40}")
        types = req.get("types")
        if (not isinstance(types, list) or not types or len(types) > len(NS_TYPES)
                or not all(isinstance(t, str) and t in NS_TYPES for t in types)
                or len(set(types)) != len(types)):
            raise ProtocolError(f"put: 'types' must be a list of distinct namespace types, "
                                f"not {types!r:.60}")
        lifeline, pidfd = req.get("lifeline", False), req.get("pidfd", False)
        if not isinstance(lifeline, bool) or not isinstance(pidfd, bool):
            raise ProtocolError("put: 'lifeline' and 'pidfd' are true or false")
        if (lifeline or pidfd) and "pid" not in types:
            raise ProtocolError("put: a lifeline or pidfd comes only with a PID namespace")
        init = req.get("init")
        if init is not None and not (isinstance(init, dict) and set(init) <= {"pid", "start"} and all(
                init.get(k) is None or (isinstance(init[k], int) and not isinstance(init[k], bool))
                for k in ("pid", "start"))):
            raise ProtocolError("put: 'init' is null or {\"pid\": N, \"start\": N}")
        want = len(types) + lifeline + pidfd
        if len(fds) != want:
            raise ProtocolError(f"put: {want} fd{'s' if want != 1 else ''} expected "
                                f"({' '.join(types)}{' lifeline' if lifeline else ''}"
                                f"{' pidfd' if pidfd else ''}), {len(fds)} received")
        for t, fd in zip(types, fds):
            try:
                kind = syscalls.ns_get_nstype(fd)
            except OSError:
                kind = None
            if kind != nstypes.BY_NAME[t].flag:
                raise ProtocolError(f"put: the fd given for {t} is not a {t} namespace")
        return name, types, lifeline, pidfd, init

    def put(self, req: dict, fds: list[int]) -> dict:
        try:
            name, types, lifeline, pidfd, init = self._check_put(req, fds)
            ids = {}
            for t, fd in zip(types, fds):
                st = os.fstat(fd)
                ids[t] = [st.st_ino, st.st_dev]
        except BaseException:
            _close_all(fds)
            raise
        old = self.sets.get(name)
        if old is not None:
            _close_all(fds)
            if old["meta"]["ids"] == ids:
                return {"ok": True, "same": True}
            return {"ok": False, "error": f"{name!r} is already kept, as "
                    + " ".join(f"{t}:[{v[0]}]" for t, v in old["meta"]["ids"].items()),
                    "taken": True}
        rest = fds[len(types):]
        entry = {"fds": dict(zip(types, fds[:len(types)])), "lifeline": None, "pidfd": None,
                 "meta": {"ids": ids, "init": init, "created": time.time()}}
        if lifeline:
            entry["lifeline"] = rest.pop(0)
        if pidfd:
            entry["pidfd"] = rest.pop(0)
        self.sets[name] = entry
        self.given = True
        return {"ok": True, "same": False, "pid": os.getpid()}

    def _describe(self, name: str, s: dict) -> dict:
        d = {"name": name, "types": {t: v[0] for t, v in s["meta"]["ids"].items()},
             "fds": dict(s["fds"])}
        if s.get("pidfd") is not None:
            p = select.poll()  # never select(): the pidfd may be past fd 1023
            p.register(s["pidfd"], select.POLLIN)
            d["alive"] = not p.poll(0)
        owners = {}
        for t, fd in s["fds"].items():
            try:
                ufd = syscalls.ns_get_userns(fd)
            except OSError:
                continue
            try:
                owners[t] = f"user:[{os.fstat(ufd).st_ino}]"
            finally:
                os.close(ufd)
        d["owners"] = owners
        return d

    @staticmethod
    def _close(s: dict) -> None:
        _close_all(fd for fd in list(s["fds"].values()) + [s.get("lifeline"), s.get("pidfd")]
                   if fd is not None)

    def close(self) -> None:
        for s in self.sets.values():
            self._close(s)
        self.sets.clear()


# --- the place: a locked private directory and the socket in it ------------------------------

def _private_dir_ok(st: os.stat_result, uid: int) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and (st.st_mode & 0o077) == 0


class Busy(Exception):
    """Another keeper holds the directory's lock."""


class Place:
    """DIRPATH, locked (flock on the directory: one keeper per directory), with our
    listening socket bound in it."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.dfd: int | None = None
        self.dir_id: tuple[int, int] | None = None
        self.lsock: socket.socket | None = None
        self.sock_id: tuple[int, int] | None = None

    def lock(self) -> None:
        uid = os.geteuid()
        try:
            os.mkdir(self.dirpath, 0o700)
        except FileExistsError:
            pass
        dfd = os.open(self.dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(dfd)
        if not _private_dir_ok(st, uid):
            os.close(dfd)
            raise OSError(errno.EPERM, f"{self.dirpath} is not a private directory of uid {uid}")
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dfd)
            raise Busy() from None
        self.dfd, self.dir_id = dfd, (st.st_dev, st.st_ino)

    def bind(self) -> None:
        path = os.path.join(self.dirpath, SOCK)
        try:
            os.unlink(SOCK, dir_fd=self.dfd)
        except FileNotFoundError:
            pass
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o077)
        try:
            lsock.bind(path)
        except BaseException:
            lsock.close()
            raise
        finally:
            os.umask(old)
        lsock.listen(64)
        st = os.stat(SOCK, dir_fd=self.dfd, follow_symlinks=False)
        if self.lsock is not None:
            self.lsock.close()
        self.lsock, self.sock_id = lsock, (st.st_dev, st.st_ino)

    def still_ours(self) -> str:
        """'ok'; 'socket' when the socket file is gone or replaced (rebind); 'dir' when the
        directory's path no longer leads to the locked directory."""
        try:
            st = os.lstat(self.dirpath)
        except OSError:
            return "dir"
        if (st.st_dev, st.st_ino) != self.dir_id:
            return "dir"
        try:
            s = os.stat(SOCK, dir_fd=self.dfd, follow_symlinks=False)
        except OSError:
            return "socket"
        return "ok" if (s.st_dev, s.st_ino) == self.sock_id else "socket"

    def release(self) -> None:
        """Unlink our socket (if it is still ours), then stop listening, then unlock."""
        if self.dfd is not None and self.sock_id is not None:
            try:
                s = os.stat(SOCK, dir_fd=self.dfd, follow_symlinks=False)
                if (s.st_dev, s.st_ino) == self.sock_id:
                    os.unlink(SOCK, dir_fd=self.dfd)
            except OSError:
                pass
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None


def _settle(place: Place) -> Place | None:
    """After a tick: PLACE if it is still reachable (the socket rebound if someone removed
    it), a new Place when the directory was removed and could be made again, or None (no
    one can reach this keeper any more)."""
    what = place.still_ours()
    if what == "ok":
        return place
    try:
        if what == "socket":
            place.bind()
            return place
        fresh = Place(place.dirpath)
        fresh.lock()
        fresh.bind()
    except (OSError, Busy):
        return None
    place.release()
    return fresh


class _Reserve:
    """One fd kept in reserve, so that a keeper out of fds can still accept a connection
    and say so (instead of spinning on a listening socket it cannot accept from)."""

    def __init__(self) -> None:
        self.fd = self._take()

    @staticmethod
    def _take() -> int | None:
        try:
            return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def spend(self) -> bool:
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True

    def refill(self) -> None:
        if self.fd is None:
            self.fd = self._take()


def _serve_one(keeper: Keeper, conn: socket.socket, uid: int) -> None:
    conn.settimeout(CONN_TIMEOUT)
    if peer_uid(conn) != uid:
        return  # another user: not a word
    try:
        req, fds = channel.recv(conn, maxfds=MAX_FDS, maxsize=MAX_REQUEST)
    except channel.PeerGone:
        return  # cut short: no answer is possible
    except channel.Undecodable:
        send(conn, _bad("a request is one JSON object (this is not JSON)"))
        return
    except FdsLost:
        n, limit = fd_limit()
        msg = (out_of_fds_error() if n < 0 or n >= limit - 8 else
               f"too many fds in one request (at most {MAX_FDS})")
        send(conn, _bad(msg))
        return
    except ProtocolError as e:
        send(conn, _bad(str(e)))
        return
    if _more_waiting(conn):
        _close_all(fds)
        send(conn, _bad("bytes after the message (one request per connection)"))
        return
    reply, out = keeper.handle(req, fds)
    send(conn, reply, out)


def _more_waiting(conn: socket.socket) -> bool:
    """Bytes already there after the request's frame (the socket has a timeout: poll
    first, so this never waits)."""
    p = select.poll()
    p.register(conn.fileno(), select.POLLIN)
    if not p.poll(0):
        return False
    try:
        return bool(conn.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _open_fds() -> int | None:
    """How many fds the keeper has open (its own /proc/self/fd: readable to itself even
    though it is not dumpable, unlike to anyone else of its uid)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        return None


def serve(dirpath: str, ready_fd: int | None = None) -> int:
    """The keeper's main loop: one request per connection, peers of our uid only."""
    uid = os.geteuid()
    place = Place(dirpath)
    try:
        place.lock()
    except Busy:
        _ready(ready_fd, "busy")
        return 0
    # Named only once it holds the lock: a keeper that lost the race to start (above)
    # never shows up as one, not even while it exits.
    from ..proc.harden import protect
    protect()  # it holds the user's namespaces: nothing inside one may drive it (core/proc/harden.py)
    syscalls.set_process_title(COMM)
    raise_fd_limit()
    keeper = Keeper()
    reserve = _Reserve()
    try:
        place.bind()
        _ready(ready_fd, "ok")
        started = time.monotonic()
        while True:
            if not keeper.sets and (keeper.given or time.monotonic() - started > IDLE_EXIT):
                return 0
            poller = select.poll()
            poller.register(place.lsock.fileno(), select.POLLIN)
            if not poller.poll(TICK * 1000):
                place = _settle(place)
                if place is None:
                    return 0
                continue
            try:
                conn, _ = place.lsock.accept()
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE) or not reserve.spend():
                    time.sleep(0.05)
                    continue
                try:
                    conn, _ = place.lsock.accept()
                    with conn:
                        conn.settimeout(CONN_TIMEOUT)
                        if peer_uid(conn) == uid:
                            send(conn, _bad(out_of_fds_error()))
                except OSError:
                    pass
                reserve.refill()
                continue
            with conn:
                try:
                    _serve_one(keeper, conn, uid)
                except (OSError, EOFError):
                    pass  # the peer went away, or timed out: nothing to answer
                except Exception:  # noqa: BLE001 - no request ends the keeper
                    pass
            reserve.refill()
    finally:
        place.release()
        keeper.close()


_answered: set[int] = set()   # ready fds written and closed (their numbers may be reused)


def _ready(fd: int | None, word: str) -> None:
    if fd is None or fd in _answered:
        return
    _answered.add(fd)
    try:
        os.write(fd, word.encode())
    except OSError:
        pass
    os.close(fd)


def _stop(_sig, _frame):
    raise SystemExit(0)  # through serve()'s finally: the socket is unlinked


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
    for sig in (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTERM, _stop)
    try:
        return serve(dirpath, ready)
    except Exception as e:  # noqa: BLE001
        _ready(ready, f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
