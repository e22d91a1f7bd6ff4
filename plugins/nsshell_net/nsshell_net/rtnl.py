"""A small rtnetlink client over a socket opened inside the target namespace.

Only what the net commands need: links (veth, bridge, up/down, master),
addresses, routes, and dumps of the three.  Requests are encoded with struct
(rtnetlink's layouts are in linux/rtnetlink.h, linux/if_link.h,
linux/if_addr.h); every request asks for an ACK, and an error comes back as an
OSError carrying the kernel's errno and, when the kernel gives one, its
extended-ACK message.

Why not pyroute2's IPRoute: importing pyroute2 costs ~110 ms (its package
__init__ imports every protocol it supports), and each IPRoute carries an
asyncio loop (3 more fds per namespace); a 100-namespace lab must build in a
fraction of that.  This module imports only the standard library.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

# -- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h) -----

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

IFF_UP, IFF_LOOPBACK, IFF_LOWER_UP = 0x1, 0x8, 0x10000

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_LINK_NETNSID = 16, 18, 28, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1

IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST = 1, 2, 3, 4
IFA_F_NODAD = 0x02

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTN_UNICAST = 1

OPERSTATES = {0: "unknown", 1: "notpresent", 2: "down", 3: "lowerlayerdown",
              4: "testing", 5: "dormant", 6: "up"}
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
               6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static"}

_HDR = struct.Struct("=IHHII")        # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")    # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")     # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
                                      #        scope, type, flags
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")


class NetlinkError(OSError):
    """The kernel refused a request: errno, and the extended-ACK text when there is one."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, os.strerror(errno))
        self.detail = detail


# -- encoding --------------------------------------------------------------------------------

def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    n = _ATTR.size + len(payload)
    return _ATTR.pack(n, kind) + payload + b"\0" * (_pad(n) - n)


def a_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def a_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def a_nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind, b"".join(parts))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


# -- decoding --------------------------------------------------------------------------------

def attrs(buf: bytes, offset: int = 0) -> dict[int, bytes]:
    """type -> payload (the last one wins; nested flag bits dropped)."""
    out: dict[int, bytes] = {}
    end = len(buf)
    while offset + _ATTR.size <= end:
        n, kind = _ATTR.unpack_from(buf, offset)
        if n < _ATTR.size:
            break
        out[kind & 0x3FFF] = buf[offset + _ATTR.size:offset + n]
        offset += _pad(n)
    return out


def _str(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def _u32(raw: bytes | None) -> int | None:
    return _U32.unpack(raw[:4])[0] if raw is not None and len(raw) >= 4 else None


def _ip(family: int, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return socket.inet_ntop(family, raw)


def _mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw else None


# -- the socket ------------------------------------------------------------------------------

class Rtnl:
    """One NETLINK_ROUTE socket (an fd the caller hands over) and its requests."""

    def __init__(self, fd: int):
        """Takes FD over (it is closed here if the socket cannot be set up)."""
        self.sock = socket.socket(fileno=fd)
        try:
            try:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:
                pass
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- raw requests ---------------------------------------------------------------

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        msg = _HDR.pack(_HDR.size + len(body), kind, flags | NLM_F_REQUEST, self.seq, 0) + body
        self.sock.send(msg)
        return self.seq

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its ACK; NetlinkError when the kernel refuses."""
        seq = self._send(kind, flags | NLM_F_ACK, body)
        for _ in self._replies(seq):
            pass

    def get(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """A request answered by messages (a dump, or one object by name)."""
        seq = self._send(kind, 0, body)
        return list(self._replies(seq))

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        seq = self._send(kind, NLM_F_DUMP, body)
        return list(self._replies(seq))

    def _replies(self, seq: int):
        while True:
            data = self.sock.recv(1 << 18)
            off = 0
            while off + _HDR.size <= len(data):
                n, kind, flags, mseq, _pid = _HDR.unpack_from(data, off)
                if n < _HDR.size:
                    return
                body = data[off + _HDR.size:off + n]
                off += _pad(n)
                if mseq != seq:
                    continue  # a late answer to something earlier: not ours
                if kind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", body)
                    if err == 0:
                        return
                    detail = ""
                    if flags & NLM_F_ACK_TLVS:
                        # after the error code, the original header (and payload unless capped)
                        olen = _HDR.unpack_from(body, 4)[0]
                        skip = 4 + (olen if not flags & 0x100 else _HDR.size)
                        detail = _str(attrs(body, _pad(skip)).get(NLMSGERR_ATTR_MSG)) or ""
                    raise NetlinkError(-err, detail)
                if kind == NLMSG_DONE:
                    return
                yield kind, body
                if not flags & NLM_F_MULTI:
                    return

    # -- links ------------------------------------------------------------------------

    def link(self, name: str) -> dict | None:
        """One link by name, or None."""
        try:
            got = self.get(RTM_GETLINK, ifinfo() + a_str(IFLA_IFNAME, name))
        except NetlinkError as e:
            if e.errno == 19:  # ENODEV
                return None
            raise
        return _link(got[0][1]) if got else None

    def links(self) -> list[dict]:
        return [_link(body) for kind, body in self.dump(RTM_GETLINK, ifinfo())
                if kind == RTM_NEWLINK]

    def add_veth(self, name: str, peer: str, peer_nsfd: int | None, up: bool = False) -> None:
        """A veth pair NAME (here) and PEER (in PEER_NSFD's namespace).  UP sets only NAME up:
        the peer cannot be (veth_open answers ENOTCONN until both ends exist)."""
        flags = IFF_UP if up else 0
        peer_attrs = a_str(IFLA_IFNAME, peer)
        if peer_nsfd is not None:
            peer_attrs += a_u32(IFLA_NET_NS_FD, peer_nsfd)
        info = a_nest(IFLA_LINKINFO, a_str(IFLA_INFO_KIND, "veth"),
                      a_nest(IFLA_INFO_DATA, a_nest(VETH_INFO_PEER, ifinfo() + peer_attrs)))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                     ifinfo(0, flags, IFF_UP) + a_str(IFLA_IFNAME, name) + info)

    def add_bridge(self, name: str, up: bool = False) -> None:
        flags = IFF_UP if up else 0
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                     ifinfo(0, flags, IFF_UP) + a_str(IFLA_IFNAME, name)
                     + a_nest(IFLA_LINKINFO, a_str(IFLA_INFO_KIND, "bridge")))

    def set_link(self, name: str, up: bool | None = None, master: int | None = None) -> None:
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = ifinfo(0, flags, change) + a_str(IFLA_IFNAME, name)
        if master is not None:
            body += a_u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, 0, body)

    def del_link(self, name: str) -> None:
        self.request(RTM_DELLINK, 0, ifinfo() + a_str(IFLA_IFNAME, name))

    # -- addresses ---------------------------------------------------------------------

    def add_addr(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                 nodad: bool = False) -> None:
        family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        raw = iface.ip.packed
        body = _IFADDR.pack(family, iface.network.prefixlen, IFA_F_NODAD if nodad else 0,
                            RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if iface.version == 4 and iface.network.prefixlen < 31:
            body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def addrs(self) -> list[dict]:
        out = []
        for kind, body in self.dump(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0)):
            if kind != RTM_NEWADDR:
                continue
            family, plen, flags, scope, index = _IFADDR.unpack_from(body)
            a = attrs(body, _IFADDR.size)
            ip = _ip(family, a.get(IFA_LOCAL) or a.get(IFA_ADDRESS))
            out.append({"index": index, "family": "inet" if family == socket.AF_INET else "inet6",
                        "address": ip, "prefixlen": plen, "cidr": f"{ip}/{plen}",
                        "scope": SCOPES.get(scope, str(scope)), "label": _str(a.get(IFA_LABEL))})
        return out

    # -- routes --------------------------------------------------------------------------

    def add_route(self, dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
                  gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                  oif: int | None = None, version: int = 4) -> None:
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        body = _RTMSG.pack(family, dst.prefixlen if dst is not None else 0, 0, 0, RT_TABLE_MAIN,
                           RTPROT_BOOT, scope, RTN_UNICAST, 0)
        if dst is not None and dst.prefixlen:
            body += attr(RTA_DST, dst.network_address.packed)
        if gateway is not None:
            body += attr(RTA_GATEWAY, gateway.packed)
        if oif is not None:
            body += a_u32(RTA_OIF, oif)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)

    def routes(self) -> list[dict]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for kind, body in self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
                if kind != 24:
                    continue
                fam, dlen, _slen, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(body)
                a = attrs(body, _RTMSG.size)
                table = _u32(a.get(RTA_TABLE)) or table
                if table != RT_TABLE_MAIN:
                    continue
                dst = _ip(fam, a.get(RTA_DST))
                out.append({
                    "family": "inet" if fam == socket.AF_INET else "inet6",
                    "dst": f"{dst}/{dlen}" if dst else "default",
                    "gateway": _ip(fam, a.get(RTA_GATEWAY)),
                    "oif": _u32(a.get(RTA_OIF)),
                    "prefsrc": _ip(fam, a.get(RTA_PREFSRC)),
                    "proto": PROTOS.get(proto, str(proto)),
                    "scope": SCOPES.get(scope, str(scope)),
                    "type": ROUTE_TYPES.get(rtype, str(rtype)),
                    "metric": _u32(a.get(RTA_PRIORITY)),
                })
        return out


def _link(body: bytes) -> dict:
    _family, arptype, index, flags, _change = _IFINFO.unpack_from(body)
    a = attrs(body, _IFINFO.size)
    kind = None
    info = a.get(IFLA_LINKINFO)
    if info is not None:
        kind = _str(attrs(info).get(IFLA_INFO_KIND))
    if kind is None and flags & IFF_LOOPBACK:
        kind = "loopback"
    return {
        "index": index,
        "name": _str(a.get(IFLA_IFNAME)),
        "kind": kind,
        "up": bool(flags & IFF_UP),
        "lower_up": bool(flags & IFF_LOWER_UP),
        "state": OPERSTATES.get(a[IFLA_OPERSTATE][0], "?") if IFLA_OPERSTATE in a else None,
        "mtu": _u32(a.get(IFLA_MTU)),
        "mac": _mac(a.get(IFLA_ADDRESS)) if arptype != 772 else None,
        "master": _u32(a.get(IFLA_MASTER)),
        "peer": _u32(a.get(IFLA_LINK)) if IFLA_LINK in a else None,
        "peer_netnsid": struct.unpack("=i", a[IFLA_LINK_NETNSID][:4])[0]
        if IFLA_LINK_NETNSID in a else None,
    }
