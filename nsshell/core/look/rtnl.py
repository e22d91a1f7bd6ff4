"""rtnetlink requests over a NETLINK_ROUTE socket, with pyroute2's messages where they pay.

pyroute2 encodes requests given as its message classes (ifinfmsg, ifaddrmsg,
rtmsg) and decodes the messages answers carry (its Marshal: links, addresses,
routes); a caller may also pack a request itself (`request_packed`: the net
plugin's veth pairs, links up, addresses, sent by the hundred).  `Rtnl` sends
and receives, one request at a time, on a blocking socket -- any namespace's: a
socket belongs to the network namespace it was created in (core/ns/nssocket.py
opens them inside others) -- and frames every answer itself: an acknowledgement,
or a refusal with its errno and extended-ACK text, costs no pyroute2 (nor its
import).  Not IPRoute, nor IPRSocket: both run through pyroute2's asyncio core
(~0.17 ms a request, against ~0.05 ms here), and importing them costs ~100 ms.

Importing pyroute2's modules first runs `pyroute2/__init__.py`, which imports
every family pyroute2 has (ndb with sqlite, ipdb, conntrack, nl80211,
asyncio...): ~100 ms, against ~25 ms for the message classes used here.
`load_pyroute2()` puts the package in sys.modules without executing it, so
importing its submodules runs only theirs.  The package stays whole for
everyone else: `from pyroute2 import IPRoute` (any name that is not a
submodule) runs the real __init__ then, once, in the same module object.

pyroute2 is imported on first use of a message class or of an answer that
carries messages (~20 ms), never by importing this module; still, import it only
where netlink is spoken (a net command, a `show`/`diff` helper).
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


# The protocol's numbers (linux/netlink.h, linux/rtnetlink.h; tests/test_net_fast.py checks
# them against pyroute2's): a request packed by the caller, answered by an acknowledgement
# or a refusal, needs no pyroute2 at all.
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200   # on an NLMSG_ERROR (or NLMSG_DONE) answer
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

__all__ = ["Rtnl", "RequestFailed", "load_pyroute2", "ifinfmsg", "ifaddrmsg", "rtmsg",
           "NLM_F_ACK", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_EXCL", "RTM_DELLINK",
           "RTM_GETADDR", "RTM_GETLINK", "RTM_GETROUTE", "RTM_NEWADDR", "RTM_NEWLINK",
           "RTM_NEWROUTE"]

def __getattr__(name: str):
    """pyroute2's message classes (ifinfmsg, ifaddrmsg, rtmsg), imported on first use
    (~20 ms): what only sends packed changes never pays for them."""
    if name not in ("ifinfmsg", "ifaddrmsg", "rtmsg"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load_pyroute2()
    # import statements (not importlib.import_module): `python -X importtime` sees them
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    globals().update(ifinfmsg=ifinfmsg, ifaddrmsg=ifaddrmsg, rtmsg=rtmsg)
    return globals()[name]


_MARSHAL = None


def preload() -> None:
    """Import all that requests and answers need (pyroute2's message classes and decoder)
    now: a helper about to enter a network namespace imports nothing once inside."""
    _marshal()


def _marshal():
    """pyroute2's decoder of the messages answers carry (links, addresses, routes)."""
    global _MARSHAL
    if _MARSHAL is None:
        load_pyroute2()
        from pyroute2.netlink.marshal import Marshal

        class _Marshal(Marshal):
            msg_map = {RTM_NEWLINK: __getattr__("ifinfmsg"), RTM_NEWADDR: __getattr__("ifaddrmsg"),
                       RTM_NEWROUTE: __getattr__("rtmsg")}
        _MARSHAL = _Marshal
    return _MARSHAL()


SOL_NETLINK = 270
NETLINK_EXT_ACK = 11


class RequestFailed(OSError):
    """The kernel refused a request: errno, and the extended-ACK text when there is one."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, os.strerror(errno))
        self.detail = detail


_RECV_SIZE = 1 << 16  # a dump comes in chunks of at most 32 KiB (NLMSG_GOODSIZE-ish)


_NLMSG_HEAD = struct.Struct("=IHHIIi")  # nlmsghdr, then nlmsgerr's error
_NLMSG_HDR = struct.Struct("=IHHII")    # nlmsghdr: length, type, flags, seq, pid
_NLA = struct.Struct("=HH")             # nlattr: length, type


def _is_plain_ack(data: bytes, seq: int) -> bool:
    """DATA is exactly one acknowledgement of request SEQ (an NLMSG_ERROR with error 0):
    most answers are, and this saves decoding them as messages (a third of a request's
    time in Python)."""
    if len(data) < _NLMSG_HEAD.size:
        return False
    length, kind, _flags, got_seq, _pid, error = _NLMSG_HEAD.unpack_from(data)
    return kind == NLMSG_ERROR and error == 0 and got_seq == seq and length == len(data)


def _refusal(msg: bytes) -> RequestFailed | None:
    """The refusal an NLMSG_ERROR (or a dump's NLMSG_DONE) MSG carries, None for an
    acknowledgement: -error, and the extended ACK's text (NLMSGERR_ATTR_MSG), which
    follows the nlmsgerr (the request's nlmsghdr, and its payload unless NLM_F_CAPPED)."""
    length, kind, flags, _seq, _pid = _NLMSG_HDR.unpack_from(msg)
    if len(msg) < _NLMSG_HEAD.size:
        return None
    (error,) = struct.unpack_from("=i", msg, _NLMSG_HDR.size)
    if error == 0:
        return None
    code = -error if error < 0 else error
    text = ""
    if flags & NLM_F_ACK_TLVS:
        at = _NLMSG_HEAD.size
        if kind == NLMSG_ERROR:
            inner = _NLMSG_HDR.unpack_from(msg, at)[0] if len(msg) >= at + _NLMSG_HDR.size else 0
            at += _NLMSG_HDR.size if flags & NLM_F_CAPPED else (inner + 3) & ~3
        while at + _NLA.size <= length:
            alen, atype = _NLA.unpack_from(msg, at)
            if alen < _NLA.size:
                break
            if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
                text = msg[at + _NLA.size:at + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
            at += (alen + 3) & ~3
    return RequestFailed(code, "" if text == os.strerror(code) else text)


class Rtnl:
    """A NETLINK_ROUTE socket SOCK (taken over: closed with the Rtnl), one request at a time."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's reason, as text
        except OSError:
            pass
        self.marshal = None   # pyroute2's decoder: made when an answer carries messages
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

    def request_packed(self, body: bytes, kind: int, flags: int = NLM_F_ACK,
                       raw: bool = False) -> list:
        """`request` for a message the caller packed itself: BODY is what follows the
        nlmsghdr (the family's header, then the attributes, each padded to 4 bytes).  For
        the fixed shapes sent by the hundred (a link set up, a veth pair, an address):
        pyroute2 takes ~0.1-0.2 ms to encode one, struct a few microseconds.  RAW: the
        answer's messages as bytes (nlmsghdr included), for a caller that reads them itself."""
        self.seq = seq = self.seq % 0x7FFFFFFF + 1
        self.sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), kind,
                                       NLM_F_REQUEST | flags, seq, 0) + body)
        return self._answer(seq, flags, raw)

    def _answer(self, seq: int, flags: int, raw: bool = False) -> list:
        """The answer to request SEQ: its messages (pyroute2's, or RAW bytes) up to the
        acknowledgement or NLMSG_DONE; a refusal raises RequestFailed.  One framing loop
        for every request; pyroute2 decodes only messages that carry objects."""
        out = []
        while True:
            data = self.sock.recv(_RECV_SIZE)
            if _is_plain_ack(data, seq):
                return out
            at = 0
            while at + _NLMSG_HDR.size <= len(data):
                length, kind, mflags, got_seq, _pid = _NLMSG_HDR.unpack_from(data, at)
                if length < _NLMSG_HDR.size or at + length > len(data):
                    break
                msg = data[at:at + length]
                at += (length + 3) & ~3
                if got_seq != seq:
                    continue  # the answer to an earlier request, interrupted half way
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    refused = _refusal(msg)
                    if refused is not None:
                        raise refused
                    return out
                if raw:
                    out.append(msg)
                else:
                    if self.marshal is None:
                        self.marshal = _marshal()
                    for m in self.marshal.parse(msg):
                        if m["header"].get("error") is not None:
                            raise m["header"]["error"]  # one pyroute2 could not decode
                        out.append(m)
                if not mflags & NLM_F_MULTI and not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return out

    def dump(self, msg, kind: int) -> list:
        """Every object of a GET KIND dump (links, addresses, routes), as pyroute2 messages."""
        new = kind - 2  # RTM_GETx answers with RTM_NEWx
        return [m for m in self.request(msg, kind, NLM_F_DUMP) if m["header"]["type"] == new]


def open_here() -> Rtnl:
    """A connection in the network namespace this process is in (a helper's)."""
    return Rtnl(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0))
