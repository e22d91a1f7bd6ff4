"""The per-user keeper, the shell's side: where it lives, starting it, the requests.

`persist` as a non-root user hands the set's fds (and, for a PID namespace, a
copy of its init's lifeline and a pidfd) to the keeper process (core/store/keeperd.py)
over a Unix socket with SCM_RIGHTS; a later nsshell of the same user asks for
them by name; `unpersist` releases them, and the keeper exits when it holds
nothing.

Where (issue 10.8: a place no other user can take or fake):
- $XDG_RUNTIME_DIR/nsshell/ when $XDG_RUNTIME_DIR is a private directory of the
  user (owned by them, mode 0700, not a symlink);
- otherwise a private directory of the user in /tmp: /tmp/nsshell-keeper-UID,
  or, when another user has taken that name first (/tmp is shared: anyone can
  create any name in it), /tmp/nsshell-keeper-UID.1 ... .8, then
  /tmp/nsshell-keeper-UID.RANDOM (mkdtemp).  A directory counts only if lstat
  shows it owned by the user, mode 0700, not a symlink: no other user can make
  such a directory (only root can give a file away), and /tmp's sticky bit
  stops them renaming or removing ours.  So a squatter can make us skip names,
  never use theirs, and never run us out of names (the random one cannot be
  guessed).  The numbered names come first so that two shells of the user
  starting at once pick the same directory (mkdir of the same name: one makes
  it, the other finds it owned by the user); the keeper's flock on its
  directory then leaves one keeper.  Only if all eight are squatted can two
  racing shells start two keepers in two random directories; every request
  that looks a set up asks each keeper found, so nothing is lost.
- Not an abstract Unix socket: abstract names have no owner or mode, so any
  user can bind `\\0nsshell-keeper-UID` first (SO_PEERCRED would stop us
  trusting it, but we would be locked out all the same); and they are per
  network namespace, while a path is per mount namespace: nsshell never
  changes its own namespaces (the shell process makes no setns/unshare), but a
  later nsshell may be started inside another network namespace (`ip netns
  exec`, a container sharing /tmp) and must still find the user's keeper.
Both ends check the other's uid with SO_PEERCRED, so another user can neither
talk to the keeper nor be fooled by a socket someone else put there.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time

from .keeperd import (COMM, IDLE_EXIT, SOCK, FdsLost, ProtocolError, peer_uid, recv,  # noqa: F401
                      send)

TMP = "/tmp"
NUMBERED = 8          # /tmp/nsshell-keeper-UID.1 .. .8 before a random name


# --- where ---------------------------------------------------------------------------

def _private_dir_ok(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and (st.st_mode & 0o077) == 0


def _xdg_dir(uid: int) -> str | None:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/") and _private_dir_ok(xdg, uid):
        return os.path.join(xdg, "nsshell")
    return None


def _tmp_base(uid: int) -> str:
    return f"nsshell-keeper-{uid}"


def _tmp_order(base: str, name: str) -> tuple:
    if name == base:
        return (0, 0, "")
    suffix = name[len(base) + 1:]
    return (1, int(suffix), "") if suffix.isdigit() else (2, 0, suffix)


def keeper_dirs(uid: int | None = None) -> list[str]:
    """The private directories of UID a keeper of UID may be in, in the order they are
    asked: $XDG_RUNTIME_DIR/nsshell alone when $XDG_RUNTIME_DIR is private, else every
    /tmp/nsshell-keeper-UID[.SUFFIX] that UID owns (mode 0700, not a symlink)."""
    uid = os.geteuid() if uid is None else uid
    xdg = _xdg_dir(uid)
    if xdg is not None:
        return [xdg] if _private_dir_ok(xdg, uid) else []
    base = _tmp_base(uid)
    names = []
    try:
        with os.scandir(TMP) as it:
            for e in it:
                if e.name == base or (e.name.startswith(base + ".") and len(e.name) > len(base) + 1):
                    names.append(e.name)
    except OSError:
        return []
    names.sort(key=lambda n: _tmp_order(base, n))
    return [p for p in (os.path.join(TMP, n) for n in names) if _private_dir_ok(p, uid)]


def socket_dir(uid: int | None = None) -> str:
    """Where the keeper of UID is (or would be started first)."""
    uid = os.geteuid() if uid is None else uid
    found = keeper_dirs(uid)
    return found[0] if found else (_xdg_dir(uid) or os.path.join(TMP, _tmp_base(uid)))


def _dir_to_start_in(uid: int) -> str:
    """A private directory of UID for a new keeper: the first that is UID's already or
    that can be made, in the order of keeper_dirs; a random name when all are taken."""
    from ...errors import NsshellError
    xdg = _xdg_dir(uid)
    candidates = [xdg] if xdg else [os.path.join(TMP, _tmp_base(uid))] + [
        os.path.join(TMP, f"{_tmp_base(uid)}.{i}") for i in range(1, NUMBERED + 1)]
    for path in candidates:
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # whatever the umask was
        except FileExistsError:
            pass
        except OSError as e:
            raise NsshellError(f"cannot make the keeper's directory {path}: {e.strerror}",
                               "set XDG_RUNTIME_DIR to a private directory of your own") from None
        if _private_dir_ok(path, uid):
            return path
    if xdg:
        raise NsshellError(f"{xdg} is not a private directory of uid {uid}: the keeper will "
                           "not use it", "remove it, or unset XDG_RUNTIME_DIR")
    import tempfile   # here: `ls` imports this module to look for a keeper (~5 ms with subprocess)
    try:
        return tempfile.mkdtemp(prefix=_tmp_base(uid) + ".", dir=TMP)
    except OSError as e:
        raise NsshellError(f"cannot make a directory for the keeper in {TMP}: {e.strerror}",
                           "set XDG_RUNTIME_DIR to a private directory of your own") from None


def _has_socket(d: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(os.path.join(d, SOCK)).st_mode)
    except OSError:
        return False


def socket_path() -> str:
    return os.path.join(socket_dir(), SOCK)


def available() -> bool:
    """Is a keeper socket of this user there (cheap: a look at /tmp and an lstat)?"""
    return any(_has_socket(d) for d in keeper_dirs())


# --- talking to it -------------------------------------------------------------------------------

def _connect(d: str) -> socket.socket | None:
    """A connection to the keeper in D, or None when none listens there."""
    from ...errors import NsshellError
    path = os.path.join(d, SOCK)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(5)
        s.connect(path)
        if peer_uid(s) != os.geteuid():
            raise NsshellError(f"{path} is answered by another user: refusing it",
                               "remove the directory and try again")
        return s
    except (ConnectionRefusedError, FileNotFoundError, NotADirectoryError):
        s.close()
        return None
    except BaseException:
        s.close()
        raise


def _out_of_fds(e: BaseException) -> bool:
    import errno
    return isinstance(e, FdsLost) or getattr(e, "errno", None) in (errno.EMFILE, errno.ENFILE)


def _shell_out_of_fds():
    from ...errors import NsshellError
    from .keeperd import fd_limit
    n, limit = fd_limit()
    return NsshellError(f"this shell is out of file descriptors ({n} open, limit {limit}): "
                        "the keeper's answer could not be received",
                        "close some handles, or raise the limit (ulimit -n)")


def _ask(d: str, req: dict, fds=()):
    """(reply, fds) from the keeper in D; None when no keeper listens there.  A keeper on
    its way out (it closed the connection unanswered) is asked again, a few times."""
    from ...errors import NsshellError
    for attempt in range(6):
        try:
            s = _connect(d)
        except OSError as e:
            if _out_of_fds(e):
                raise _shell_out_of_fds() from None
            raise
        if s is None:
            return None
        try:
            send(s, req, fds)
            return recv(s)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            time.sleep(0.02 * (attempt + 1))  # a keeper that just exited: ask again
        except ProtocolError as e:
            if _out_of_fds(e):
                raise _shell_out_of_fds() from None
            raise NsshellError(f"the keeper's answer is garbled: {e}",
                               f"its socket: {os.path.join(d, SOCK)}") from None
        except OSError as e:
            if _out_of_fds(e):
                raise _shell_out_of_fds() from None
            if isinstance(e, TimeoutError):
                raise NsshellError("the keeper did not answer within 5 s",
                                   f"its socket: {os.path.join(d, SOCK)}") from None
            raise
        finally:
            s.close()
    return None


def _start(d: str) -> str:
    """Start a keeper in D: 'ok', or 'busy' when one holds D already (it may be exiting)."""
    import subprocess
    from ...errors import NsshellError
    r, w = os.pipe()
    env = dict(os.environ)
    root = os.path.abspath(__file__)   # the directory that holds the package, for -m
    for _ in range(__name__.count(".") + 1):
        root = os.path.dirname(root)
    env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        p = subprocess.Popen([sys.executable, "-m", "nsshell.core.store.keeperd", d, str(w)],
                             pass_fds=[w], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True)
    finally:
        os.close(w)
    try:
        from ..proc.spawn import read_all
        data = read_all(r)
    finally:
        os.close(r)
        p.wait()
    word = data.decode(errors="replace")
    if word not in ("ok", "busy"):
        raise NsshellError(f"the keeper did not start: {word or 'no answer'}")
    return word


def _live_dirs() -> list[str]:
    return [d for d in keeper_dirs() if _has_socket(d)]


def request(req: dict, fds=(), start: bool = False):
    """Send REQ to the user's keeper (starting one with START); (reply, fds), or None
    when there is no keeper.  Without START, every keeper found is asked until one has
    an answer other than 'missing'."""
    from ...errors import NsshellError
    if not start:
        last = None
        for d in _live_dirs():
            got = _ask(d, req, fds)
            if got is None:
                continue
            if got[0].get("ok") or not got[0].get("missing"):
                return got
            last = got
        return last
    uid = os.geteuid()
    for attempt in range(30):
        for d in _live_dirs():
            got = _ask(d, req, fds)
            if got is not None:
                return got
        # No keeper answers: start one (in the first directory that is ours or can be);
        # 'busy' is one on its way out, still holding the lock: wait a little, try again.
        if _start(_dir_to_start_in(uid)) == "busy":
            time.sleep(min(0.02 * (attempt + 1), 0.2))
    raise NsshellError("the keeper did not answer", f"its socket: {socket_path()}")


def persist(nsset, name: str):
    from ...errors import NsshellError
    from .entry import Persisted, init_info
    types = [t for t in nsset.handles]
    fds = [nsset.handles[t].fd for t in types]
    req = {"op": "put", "name": name, "types": types}
    notes = ["no bind mounts without root: ip netns and nsenter do not see it"]
    if "pid" in nsset.handles:
        lifeline, info, pidfd = init_info(nsset.handles["pid"])
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
    """Handles on the set NAME that the keeper holds, or None (at once for a text that is
    not a name: the keeper holds only names, persist checks each before the put)."""
    from ... import names
    if not names.valid(name):
        return None
    from ...kernel import nstypes
    from ..ns.handle import Handle
    from .holder import PersistedInit
    got = request({"op": "get", "name": name})
    if got is None:
        return None
    reply, fds = got
    types = reply.get("types")
    if not reply.get("ok") or not isinstance(types, list) or len(fds) < len(types):
        for fd in fds:
            os.close(fd)
        return None
    pidfd = fds[len(types)] if reply.get("pidfd") and len(fds) > len(types) else None
    for fd in fds[len(types) + (pidfd is not None):]:
        os.close(fd)
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
    """Every set the user's keepers hold, one row per (name, type).  A keeper that cannot
    be reached is left out (`ls` must not fail for it)."""
    out = []
    seen = set()
    for d in _live_dirs():
        try:
            got = _ask(d, {"op": "list"})
        except Exception:  # noqa: BLE001
            continue
        if got is None:
            continue
        reply, fds = got
        for fd in fds:
            os.close(fd)
        for s in reply.get("sets", []) if reply.get("ok") else []:
            if s["name"] in seen:
                continue
            seen.add(s["name"])
            for t, ino in s["types"].items():
                row = {"name": s["name"], "type": t, "path": f"keeper:{s['name']}",
                       "nsid": f"{t}:[{ino}]", "inode": ino, "source": "keeper",
                       "owner": s.get("owners", {}).get(t)}
                if t == "pid" and "alive" in s:
                    row["alive"] = s["alive"]
                fd = s.get("fds", {}).get(t)
                if isinstance(fd, int) and isinstance(reply.get("pid"), int):
                    row["holder"] = {"kind": "fd", "pid": reply["pid"], "fd": fd}
                out.append(row)
    return out
