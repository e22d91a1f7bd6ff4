"""rtnetlink requests over a NETLINK_ROUTE socket, with pyroute2's messages.

pyroute2 encodes every request (its message classes ifinfmsg, ifaddrmsg,
rtmsg) and decodes every answer (its Marshal: dumps, errors and extended
ACKs); `Rtnl` only sends and receives, one request at a time, on a blocking
socket -- any namespace's: a socket belongs to the network namespace it was
created in (core/ns/nssocket.py opens them inside others).  Not IPRoute, nor
IPRSocket: both run through pyroute2's asyncio core (~0.17 ms a request,
against ~0.05 ms here), and importing them costs ~100 ms.

Importing pyroute2's modules first runs `pyroute2/__init__.py`, which imports
every family pyroute2 has (ndb with sqlite, ipdb, conntrack, nl80211,
asyncio...): ~100 ms, against ~25 ms for the message classes used here.
`load_pyroute2()` puts the package in sys.modules without executing it, so
importing its submodules runs only theirs.  The package stays whole for
everyone else: `from pyroute2 import IPRoute` (any name that is not a
submodule) runs the real __init__ then, once, in the same module object.

This module imports pyroute2: import it only where netlink is spoken (a net
command, a `show`/`diff` helper), never at start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import struct
import sys

PACKAGE = "pyroute2"


def load_pyroute2() -> None:
    if PACKAGE in sys.modules:
        return  # already imported (whole, or by an earlier load)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {PACKAGE!r}", name=PACKAGE)
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str):
        # `from pyroute2 import config` asks the package for a submodule first.
        if not attr.startswith("__") and importlib.util.find_spec(f"{PACKAGE}.{attr}"):
            return importlib.import_module(f"{PACKAGE}.{attr}")
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)  # the whole package after all
        return getattr(package, attr)

    package.__getattr__ = __getattr__
    sys.modules[PACKAGE] = package


load_pyroute2()
# After load_pyroute2(): these must not run pyroute2's package __init__.
from pyroute2.netlink import (NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,  # noqa: E402
                              NLM_F_EXCL, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.marshal import Marshal  # noqa: E402
from pyroute2.netlink.rtnl import (RTM_DELLINK, RTM_GETADDR, RTM_GETLINK,  # noqa: E402
                                   RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

__all__ = ["Rtnl", "RequestFailed", "load_pyroute2", "ifinfmsg", "ifaddrmsg", "rtmsg",
           "NLM_F_ACK", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_EXCL", "RTM_DELLINK",
           "RTM_GETADDR", "RTM_GETLINK", "RTM_GETROUTE", "RTM_NEWADDR", "RTM_NEWLINK",
           "RTM_NEWROUTE"]

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11


class RequestFailed(OSError):
    """The kernel refused a request: errno, and the extended-ACK text when there is one."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, os.strerror(errno))
        self.detail = detail


def _refused(err: NetlinkError) -> RequestFailed:
    text = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], str) else ""
    return RequestFailed(err.code, "" if text == os.strerror(err.code) else text)


class _Marshal(Marshal):
    """Decodes the answers to the requests Rtnl sends."""
    msg_map = {RTM_NEWLINK: ifinfmsg, RTM_NEWADDR: ifaddrmsg, RTM_NEWROUTE: rtmsg}


_RECV_SIZE = 1 << 16  # a dump comes in chunks of at most 32 KiB (NLMSG_GOODSIZE-ish)


_NLMSG_HEAD = struct.Struct("=IHHIIi")  # nlmsghdr, then nlmsgerr's error
_NLMSG_HDR = struct.Struct("=IHHII")    # nlmsghdr: length, type, flags, seq, pid


def _is_plain_ack(data: bytes, seq: int) -> bool:
    """DATA is exactly one acknowledgement of request SEQ (an NLMSG_ERROR with error 0):
    most answers are, and this saves decoding them as messages (a third of a request's
    time in Python)."""
    if len(data) < _NLMSG_HEAD.size:
        return False
    length, kind, _flags, got_seq, _pid, error = _NLMSG_HEAD.unpack_from(data)
    return kind == NLMSG_ERROR and error == 0 and got_seq == seq and length == len(data)


class Rtnl:
    """A NETLINK_ROUTE socket SOCK (taken over: closed with the Rtnl), one request at a time."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's reason, as text
        except OSError:
            pass
        self.marshal = _Marshal()
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def request(self, msg, kind: int, flags: int = NLM_F_ACK) -> list:
        """Send MSG as a KIND request and collect its answer: the messages of a dump (up to
        NLMSG_DONE), the one answer of a get, nothing for an acknowledged change.  A
        refusal raises RequestFailed; answers to earlier requests (one interrupted half
        way) are skipped."""
        self.seq = seq = self.seq % 0x7FFFFFFF + 1
        head = msg["header"]
        head["type"], head["flags"], head["sequence_number"], head["pid"] = \
            kind, NLM_F_REQUEST | flags, seq, 0
        msg.encode()
        self.sock.send(msg.data)
        return self._answer(seq, flags)

    def request_packed(self, body: bytes, kind: int, flags: int = NLM_F_ACK) -> list:
        """`request` for a message the caller packed itself: BODY is what follows the
        nlmsghdr (the family's header, then the attributes, each padded to 4 bytes).  For
        the fixed shapes sent by the hundred (a link set up, a veth pair, an address):
        pyroute2 takes ~0.1-0.2 ms to encode one, struct a few microseconds."""
        self.seq = seq = self.seq % 0x7FFFFFFF + 1
        self.sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), kind,
                                       NLM_F_REQUEST | flags, seq, 0) + body)
        return self._answer(seq, flags)

    def _answer(self, seq: int, flags: int) -> list:
        out = []
        while True:
            data = self.sock.recv(_RECV_SIZE)
            if _is_plain_ack(data, seq):
                return out
            for m in self.marshal.parse(data):
                head = m["header"]
                if head["sequence_number"] != seq:
                    continue
                err = head.get("error")
                if err is not None:
                    if isinstance(err, NetlinkError):
                        raise _refused(err)
                    raise err
                if head["type"] in (NLMSG_ERROR, NLMSG_DONE):
                    return out
                out.append(m)
                if not head["flags"] & NLM_F_MULTI and not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return out

    def dump(self, msg, kind: int) -> list:
        """Every object of a GET KIND dump (links, addresses, routes), as pyroute2 messages."""
        new = kind - 2  # RTM_GETx answers with RTM_NEWx
        return [m for m in self.request(msg, kind, NLM_F_DUMP) if m["header"]["type"] == new]


def open_here() -> Rtnl:
    """A connection in the network namespace this process is in (a helper's)."""
    return Rtnl(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0))
