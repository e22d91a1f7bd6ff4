"""One network namespace's rtnetlink connection, on pyroute2's messages, over a socket
opened inside that namespace.

`Conn` gives the net commands what they ask for (links by name, veth pairs,
bridges, addresses, routes, dumps of the three) as plain dicts, the shape `net
ls --json` prints, and turns pyroute2's NetlinkError into an OSError carrying
the kernel's errno and its extended-ACK text.

pyroute2 does the netlink work: its message classes (ifinfmsg, ifaddrmsg,
rtmsg) encode the requests, and its Marshal splits and decodes the answers
(errors and extended ACKs included).  This module only sends and receives, one
request at a time, on a blocking socket.  Not IPRoute, nor IPRSocket: both run
through pyroute2's asyncio core (~0.17 ms a request, against ~0.05 ms here),
and importing them costs ~100 ms, which missed the bench lab's target; the
message classes, loaded by `lean_pyroute2`, cost ~25 ms.

It is imported only when a net command runs (or a `show`/`diff` helper reads
links).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from .lean_pyroute2 import load

load()
# These come after load(): it keeps pyroute2's package __init__ (every family, asyncio,
# ndb) from running for them.
from pyroute2.netlink import (NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,  # noqa: E402
                              NLM_F_EXCL, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.marshal import Marshal  # noqa: E402
from pyroute2.netlink.rtnl import (RTM_DELLINK, RTM_GETADDR, RTM_GETLINK,  # noqa: E402
                                   RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

SOL_NETLINK = 270
SIOCGIFINDEX = 0x8933
_IFREQ = struct.Struct("=16si20x")  # struct ifreq: name, ifindex (the union is 24 bytes)
NETLINK_EXT_ACK = 11

IFF_UP, IFF_LOOPBACK, IFF_LOWER_UP = 0x1, 0x8, 0x10000
ARPHRD_LOOPBACK = 772
IFA_F_NODAD = 0x02
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
CREATE = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL

ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
               6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static"}


class RequestFailed(OSError):
    """The kernel refused a request: errno, and the extended-ACK text when there is one."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, os.strerror(errno))
        self.detail = detail


def _refused(err: NetlinkError) -> RequestFailed:
    text = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], str) else ""
    return RequestFailed(err.code, "" if text == os.strerror(err.code) else text)


def _link_msg(name: str | None = None, index: int = 0, flags: int = 0, change: int = 0,
              attrs: list | None = None) -> ifinfmsg:
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, flags, change
    msg["attrs"] = ([("IFLA_IFNAME", name)] if name is not None else []) + (attrs or [])
    return msg


class _RtnlMarshal(Marshal):
    """Decodes the answers to the requests Conn sends."""
    msg_map = {RTM_NEWLINK: ifinfmsg, RTM_NEWADDR: ifaddrmsg, RTM_NEWROUTE: rtmsg}


_RECV_SIZE = 1 << 16  # a dump comes in chunks of at most 32 KiB (NLMSG_GOODSIZE-ish)


_NLMSG_HEAD = struct.Struct("=IHHIIi")  # nlmsghdr, then nlmsgerr's error


def _is_plain_ack(data: bytes, seq: int) -> bool:
    """DATA is exactly one acknowledgement of request SEQ (an NLMSG_ERROR with error 0):
    most answers are, and this saves decoding them as messages (a third of a request's
    time in Python)."""
    if len(data) < _NLMSG_HEAD.size:
        return False
    length, kind, _flags, got_seq, _pid, error = _NLMSG_HEAD.unpack_from(data)
    return kind == NLMSG_ERROR and error == 0 and got_seq == seq and length == len(data)


class Conn:
    """A NETLINK_ROUTE socket SOCK (taken over: closed with the Conn), one request at a time."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's reason, as text
        except OSError:
            pass
        self.marshal = _RtnlMarshal()
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

    # -- links ------------------------------------------------------------------------

    def link(self, name: str) -> dict | None:
        """One link by name, or None."""
        try:
            got = self.request(_link_msg(name), RTM_GETLINK, 0)
        except RequestFailed as e:
            if e.errno == 19:  # ENODEV
                return None
            raise
        return _link(got[0]) if got else None

    def index(self, name: str) -> int | None:
        """A link's index by name, or None: SIOCGIFINDEX asked of this socket, which the kernel
        answers in the socket's network namespace (no link message to decode)."""
        try:
            raw = fcntl.ioctl(self.sock.fileno(), SIOCGIFINDEX, _IFREQ.pack(name.encode(), 0))
        except OSError as e:
            if e.errno == 19:  # ENODEV
                return None
            raise
        return _IFREQ.unpack(raw)[1]

    def links(self) -> list[dict]:
        return [_link(m) for m in self.request(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP)
                if m["header"]["type"] == RTM_NEWLINK]

    def add_veth(self, name: str, peer: str, peer_nsfd: int | None, up: bool = False) -> None:
        """A veth pair NAME (here) and PEER (in PEER_NSFD's namespace).  UP sets only NAME up:
        the peer cannot be (veth_open answers ENOTCONN until both ends exist)."""
        peer_attrs = [("IFLA_IFNAME", peer)]
        if peer_nsfd is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", peer_nsfd))
        info = {"attrs": [("IFLA_INFO_KIND", "veth"),
                          ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]}
        self.request(_link_msg(name, flags=IFF_UP if up else 0, change=IFF_UP,
                               attrs=[("IFLA_LINKINFO", info)]), RTM_NEWLINK, CREATE)

    def add_bridge(self, name: str, up: bool = False) -> None:
        info = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
        self.request(_link_msg(name, flags=IFF_UP if up else 0, change=IFF_UP,
                               attrs=[("IFLA_LINKINFO", info)]), RTM_NEWLINK, CREATE)

    def set_link(self, name: str, up: bool | None = None, master: int | None = None) -> None:
        attrs = [("IFLA_MASTER", master)] if master is not None else []
        self.request(_link_msg(name, flags=IFF_UP if up else 0,
                               change=IFF_UP if up is not None else 0, attrs=attrs), RTM_NEWLINK)

    def del_link(self, name: str) -> None:
        self.request(_link_msg(name), RTM_DELLINK)

    # -- addresses ---------------------------------------------------------------------

    def add_addr(self, index: int, iface, nodad: bool = False) -> None:
        """IFACE (an ipaddress interface) on link INDEX."""
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        msg["prefixlen"] = iface.network.prefixlen
        msg["flags"] = IFA_F_NODAD if nodad else 0
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["index"] = index
        ip = str(iface.ip)
        attrs = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
        if iface.version == 4 and iface.network.prefixlen < 31:
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWADDR, CREATE)

    def addrs(self) -> list[dict]:
        out = []
        for m in self.request(ifaddrmsg(), RTM_GETADDR, NLM_F_DUMP):
            if m["header"]["type"] != RTM_NEWADDR:
                continue
            ip = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            out.append({"index": m["index"],
                        "family": "inet" if m["family"] == socket.AF_INET else "inet6",
                        "address": ip, "prefixlen": m["prefixlen"], "cidr": f"{ip}/{m['prefixlen']}",
                        "scope": SCOPES.get(m["scope"], str(m["scope"])),
                        "label": m.get_attr("IFA_LABEL")})
        return out

    # -- routes --------------------------------------------------------------------------

    def add_route(self, dst, gateway, oif: int | None = None, version: int = 4) -> None:
        """DST (an ipaddress network, None for the default route) via GATEWAY (an address)
        or out of link OIF, in the main table."""
        msg = rtmsg()
        msg["family"] = socket.AF_INET if version == 4 else socket.AF_INET6
        msg["dst_len"] = dst.prefixlen if dst is not None else 0
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        msg["type"] = RTN_UNICAST
        attrs = []
        if dst is not None and dst.prefixlen:
            attrs.append(("RTA_DST", str(dst.network_address)))
        if gateway is not None:
            attrs.append(("RTA_GATEWAY", str(gateway)))
        if oif is not None:
            attrs.append(("RTA_OIF", oif))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWROUTE, CREATE)

    def routes(self) -> list[dict]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            query = rtmsg()
            query["family"] = family
            for m in self.request(query, RTM_GETROUTE, NLM_F_DUMP):
                if m["header"]["type"] != RTM_NEWROUTE:
                    continue
                table = m.get_attr("RTA_TABLE") or m["table"]
                if table != RT_TABLE_MAIN:
                    continue
                dst = m.get_attr("RTA_DST")
                out.append({
                    "family": "inet" if m["family"] == socket.AF_INET else "inet6",
                    "dst": f"{dst}/{m['dst_len']}" if dst else "default",
                    "gateway": m.get_attr("RTA_GATEWAY"),
                    "oif": m.get_attr("RTA_OIF"),
                    "prefsrc": m.get_attr("RTA_PREFSRC"),
                    "proto": PROTOS.get(m["proto"], str(m["proto"])),
                    "scope": SCOPES.get(m["scope"], str(m["scope"])),
                    "type": ROUTE_TYPES.get(m["type"], str(m["type"])),
                    "metric": m.get_attr("RTA_PRIORITY"),
                })
        return out


def _link(m) -> dict:
    flags = m["flags"]
    info = m.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    if kind is None and flags & IFF_LOOPBACK:
        kind = "loopback"
    state = m.get_attr("IFLA_OPERSTATE")
    return {
        "index": m["index"],
        "name": m.get_attr("IFLA_IFNAME"),
        "kind": kind,
        "up": bool(flags & IFF_UP),
        "lower_up": bool(flags & IFF_LOWER_UP),
        "state": state.lower() if isinstance(state, str) else state,
        "mtu": m.get_attr("IFLA_MTU"),
        "mac": m.get_attr("IFLA_ADDRESS") if m["ifi_type"] != ARPHRD_LOOPBACK else None,
        "master": m.get_attr("IFLA_MASTER"),
        "peer": m.get_attr("IFLA_LINK"),
        "peer_netnsid": m.get_attr("IFLA_LINK_NETNSID"),
    }


def links_here() -> list[dict]:
    """The links of the namespace this process is in (a helper of `show`/`diff`)."""
    conn = Conn(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0))
    try:
        return conn.links()
    finally:
        conn.close()
