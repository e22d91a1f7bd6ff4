"""One message channel for every helper: a frame with optional fds over SCM_RIGHTS.

Every process nsshell talks to over a Unix socket speaks this: the forked
helpers (spawn), the run helper (runner), the socket openers (core/ns/nssocket)
and the per-user keeper (core/store/keeperd, a separate process of the same
user).  One encoder, `send`, and ONE decoder, `recv`.

A frame is a header, then the payload:

    magic  2 bytes   b"nC"
    codec  1 byte    0 = JSON, 1 = pickle
    nfds   1 byte    how many fds ride on the frame (at most 253, SCM_MAX_FD)
    size   4 bytes   payload length (native order: both ends are this machine)

`send` writes the whole frame with one sendmsg() (the fds attached to it), so
the reader wakes once; only a frame larger than the socket buffer takes more.

`recv(sock, maxfds=, maxsize=, pickle=)` takes the limits from the caller and
returns (obj, fds).  The fds it returns are the caller's; on EVERY error it
raises, it has closed every fd it received first:
  PeerGone (also an EOFError)  the peer closed before a whole frame arrived;
  FdsLost                      more fds than MAXFDS (or than the header says
                               may come), or the kernel dropped some (MSG_CTRUNC:
                               the buffer was too small, or we are out of fds);
  BadFrame                     not our magic, a codec the caller does not
                               accept, a payload over MAXSIZE, fds that do not
                               match the header's count, a payload that does
                               not decode (Undecodable, a BadFrame).
All three are ChannelError.  An OSError of the socket itself (a timeout set
on it, ECONNRESET) propagates unchanged, the fds closed all the same.

The codec is decided here, once: JSON by default; pickle only where both ends
are nsshell's own processes, i.e. the shell and a child it forked itself
(spawn and runner, which hand back exceptions and dataclasses).  Unpickling
runs code of the sender's choosing, so a receiver must ask for it
(pickle=True): a frame marked pickle is refused (BadFrame) by every other
receiver, whatever it says.  The keeper is a separately started process that
any program of the user could impersonate or talk to, so it and its clients
speak JSON only.

Stdlib only, and nothing of nsshell is imported: the keeper daemon starts
without the shell's heavy parts.
"""

from __future__ import annotations

import os
import struct
TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    import socket
    from typing import Any, Sequence

__all__ = ["send", "recv", "header", "pickled", "unpickled", "socketpair", "ChannelError", "PeerGone", "FdsLost", "BadFrame",
           "Undecodable", "close_all",
           "JSON", "PICKLE", "SCM_MAX_FD", "HEADER_SIZE"]

MAGIC = b"nC"
JSON = 0
PICKLE = 1
SCM_MAX_FD = 253                 # the kernel's limit of fds in one SCM_RIGHTS message
DEFAULT_MAXSIZE = 1 << 24        # 16 MiB unless the caller says otherwise

_HDR = struct.Struct("=2sBBI")
HEADER_SIZE = _HDR.size
_INT = struct.calcsize("i")


class ChannelError(Exception):
    """A frame that could not be received whole and right (its fds already closed)."""


class PeerGone(ChannelError, EOFError):
    """The other end closed before a whole frame arrived."""


class FdsLost(ChannelError):
    """More fds than allowed came with a frame, or the kernel dropped some (MSG_CTRUNC)."""


class BadFrame(ChannelError):
    """Not a frame of ours: bad header, refused codec, oversize, fd count, undecodable."""


class Undecodable(BadFrame):
    """A whole frame whose payload does not decode (not JSON, a broken pickle)."""


def header(size: int, nfds: int = 0, codec: int = JSON) -> bytes:
    """The header of a frame of SIZE payload bytes carrying NFDS fds (for tests and fuzzers)."""
    return _HDR.pack(MAGIC, codec, nfds, size)


# Pickle through the built-in `_pickle`, not the `pickle` module: that one imports re
# (~5 ms a batch that forks a helper paid), and a built-in module is never read from
# files, so a helper can still use it inside a context's mount namespace.

def pickled(obj: Any) -> bytes:
    """OBJ pickled, as every pipe and channel between the shell and its own children carries it."""
    import _pickle
    return _pickle.dumps(obj, protocol=5)


def unpickled(data: bytes) -> Any:
    """What pickled() made (only ever from a child of this process: it runs the sender's code)."""
    import _pickle
    return _pickle.loads(data)


def socketpair() -> tuple:
    """A connected pair of Unix stream sockets, close-on-exec, as every helper's channel
    is: `_socket`'s own (the socket module costs ~4 ms to import: its enums, selectors)."""
    import _socket
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)


def _encode(obj: Any, use_pickle: bool) -> bytes:
    if use_pickle:
        return pickled(obj)
    import json
    return json.dumps(obj).encode()


def send(sock: socket.socket, obj: Any, fds: Sequence[int] = (), *, pickle: bool = False) -> None:
    """Send OBJ (JSON, or pickle with PICKLE) and FDS as one frame.  The fds stay open
    here (the kernel passes copies)."""
    fds = list(fds)
    if len(fds) > SCM_MAX_FD:
        raise ValueError(f"{len(fds)} fds in one frame (at most {SCM_MAX_FD})")
    payload = _encode(obj, pickle)
    data = _HDR.pack(MAGIC, PICKLE if pickle else JSON, len(fds), len(payload)) + payload
    if fds:
        import array
        import _socket
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                      array.array("i", fds))])
    else:
        sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# Imported where used, not at the top (the shell imports this module at start-up and
# may never fork a helper).  `_socket`, not `socket`: plain ints, where the socket
# module's flags are enum members (slow to combine per message) and cost ~2 ms to import.

def _take_fds(anc, fds: list[int]) -> None:
    import array
    import _socket
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(data[:len(data) - len(data) % _INT])
            fds.extend(got)


def recv(sock: socket.socket, *, maxfds: int = 0, maxsize: int = DEFAULT_MAXSIZE,
         pickle: bool = False) -> tuple[Any, list[int]]:
    """One frame from SOCK: (obj, fds).  At most MAXFDS fds and MAXSIZE payload bytes;
    a pickled payload only with PICKLE.  Raises PeerGone, FdsLost or BadFrame (all
    ChannelError) with every received fd closed; see the module's docstring."""
    import _socket
    ctrunc, cloexec = _socket.MSG_CTRUNC, _socket.MSG_CMSG_CLOEXEC
    fds: list[int] = []
    try:
        anc_size = _socket.CMSG_SPACE(maxfds * _INT) if maxfds > 0 else 0
        # recvmsg for the header: the fds ride on its first byte.  Exactly the header's
        # bytes, so a frame queued behind this one is left alone.
        head, anc, flags, _ = sock.recvmsg(_HDR.size, anc_size, cloexec)
        while True:
            if anc:
                _take_fds(anc, fds)
            if flags & ctrunc:
                raise FdsLost(f"fds were dropped (more than {maxfds}, or none left to "
                              "receive them)")
            if len(head) >= _HDR.size:
                break
            data, anc, flags, _ = sock.recvmsg(_HDR.size - len(head), anc_size, cloexec)
            if not data:
                raise PeerGone("the other end closed" + (" mid-frame" if head else ""))
            head += data
        magic, codec, nfds, size = _HDR.unpack(head)
        if magic != MAGIC:
            raise BadFrame("not a frame (bad header)")
        if nfds > maxfds:
            raise FdsLost(f"a frame with {nfds} fds (at most {maxfds})")
        if len(fds) != nfds:
            raise BadFrame(f"a frame that says {nfds} fds came with {len(fds)}")
        if codec != JSON and (codec != PICKLE or not pickle):
            raise BadFrame("a pickled frame where only JSON is accepted" if codec == PICKLE
                           else f"unknown codec {codec}")
        if size > maxsize:
            raise BadFrame(f"a message of {size} bytes (at most {maxsize})")
        # Plain recv for the payload: fds a peer attached further on are never installed
        # (the kernel releases them when the reader asks for no control data).
        body = sock.recv(size) if size else b""
        if len(body) < size:
            parts, got = [body], len(body)
            while got < size:
                chunk = sock.recv(min(size - got, 1 << 20))
                if not chunk:
                    raise PeerGone("the other end closed mid-frame")
                parts.append(chunk)
                got += len(chunk)
            body = b"".join(parts)
        try:
            if codec == PICKLE:
                obj = unpickled(body)
            else:
                import json
                obj = json.loads(body)
        except Exception as e:  # noqa: BLE001 - any decoding failure is the frame's
            raise Undecodable(f"the payload does not decode: {type(e).__name__}") from None
        return obj, fds
    except BaseException:
        close_all(fds)
        raise
