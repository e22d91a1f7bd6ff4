"""What the net commands ask rtnetlink, over one namespace's socket (conn.py opens and
keeps it).

`Conn` adds to the plugin API's rtnetlink connection (`nsshell.plugin.rtnl`,
pyroute2's messages over a blocking socket) links by name, veth pairs, bridges,
addresses, routes and dumps of the three as plain dicts -- the shape `net ls
--json` prints.  A refused request raises rtnl.RequestFailed: the kernel's errno
and its extended-ACK text.

It imports pyroute2's message classes (~25 ms), so it is imported only when a
connection is first opened (conn.py) or a `show`/`diff` helper reads bridges.
"""

from __future__ import annotations

import fcntl
import socket
import struct

from nsshell.plugin import rtnl  # imports pyroute2's message classes

SIOCGIFINDEX = 0x8933
_IFREQ = struct.Struct("=16si20x")  # struct ifreq: name, ifindex (the union is 24 bytes)

IFF_UP, IFF_LOOPBACK, IFF_LOWER_UP = 0x1, 0x8, 0x10000
ARPHRD_LOOPBACK = 772
IFA_F_NODAD = 0x02
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RTN_UNICAST = 1
RTM_DELADDR, RTM_DELROUTE, RTM_GETNSID = 21, 25, 90  # linux/rtnetlink.h
NETNSA_NSID = 1
CREATE = rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL

ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
               6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static"}


# -- the shapes sent by the hundred, packed with struct ------------------------------------
#
# A lab script sends hundreds of these (a link set up, a veth pair, an address, a port
# put on a bridge), and pyroute2 encodes each in ~0.1-0.2 ms of Python (its nested
# attribute classes, field by field); struct packs one in a few microseconds.  They are
# fixed layouts of the kernel ABI (linux/rtnetlink.h, if_link.h, veth.h, if_addr.h) that
# pyroute2 itself packs exactly so: tests/test_net_fast.py compares the bytes with
# pyroute2's for every shape.  pyroute2 keeps decoding every answer, and encodes what is
# rare or has more shapes (routes, other link kinds, MTU/MAC/netns moves, nsid queries).

_NLA = struct.Struct("=HH")               # struct nlattr: length (unpadded), type
_IFINFO = struct.Struct("=BxHiII")        # struct ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")         # struct ifaddrmsg: family, prefixlen, flags, scope, index
_U32 = struct.Struct("=I")
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4


def _nla(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + bytes(-size % 4)


def _ifinfo(name: str | None = None, flags: int = 0, change: int = 0, attrs: bytes = b"") -> bytes:
    """An ifinfomsg (index 0: the link is named) with IFLA_IFNAME NAME, then ATTRS."""
    named = _nla(IFLA_IFNAME, name.encode() + b"\0") if name is not None else b""
    return _IFINFO.pack(0, 0, 0, flags, change) + named + attrs


def _linkinfo(kind: str, data: bytes | None = None) -> bytes:
    inner = _nla(IFLA_INFO_KIND, kind.encode() + b"\0")
    if data is not None:
        inner += _nla(IFLA_INFO_DATA, data)
    return _nla(IFLA_LINKINFO, inner)


def pack_veth(name: str, peer: str, peer_nsfd: int | None, up: bool) -> bytes:
    peer_attrs = _nla(IFLA_NET_NS_FD, _U32.pack(peer_nsfd)) if peer_nsfd is not None else b""
    data = _nla(VETH_INFO_PEER, _ifinfo(peer, attrs=peer_attrs))
    return _ifinfo(name, IFF_UP if up else 0, IFF_UP, _linkinfo("veth", data))


def pack_bridge(name: str, up: bool) -> bytes:
    return _ifinfo(name, IFF_UP if up else 0, IFF_UP, _linkinfo("bridge"))


def pack_set_link(name: str, up: bool | None, master: int | None) -> bytes:
    return _ifinfo(name, IFF_UP if up else 0, IFF_UP if up is not None else 0,
                   _nla(IFLA_MASTER, _U32.pack(master)) if master is not None else b"")


def pack_addr(index: int, iface, nodad: bool) -> bytes:
    """An ifaddrmsg for IFACE (an ipaddress interface) on link INDEX, as `ip addr` sends it:
    IFA_LOCAL and IFA_ADDRESS, and an IPv4 network's broadcast address."""
    four = iface.version == 4
    prefixlen = iface.network.prefixlen
    ip = iface.ip.packed
    attrs = _nla(IFA_LOCAL, ip) + _nla(IFA_ADDRESS, ip)
    if four and prefixlen < 31:
        attrs += _nla(IFA_BROADCAST, iface.network.broadcast_address.packed)
    return _IFADDR.pack(socket.AF_INET if four else socket.AF_INET6, prefixlen,
                        IFA_F_NODAD if nodad else 0, RT_SCOPE_UNIVERSE, index) + attrs


def _attrs(data: bytes, at: int, end: int):
    """(type, payload) of each attribute in DATA[AT:END] (the nested flag masked off)."""
    while at + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, at)
        if size < _NLA.size or at + size > end:
            return
        yield kind & 0x3FFF, data[at + _NLA.size:at + size]
        at += (size + 3) & ~3


def brief_link(msg: bytes) -> dict:
    """index, kind (IFLA_LINKINFO's IFLA_INFO_KIND, None when it has none, as lo) and the
    admin state of the link an RTM_NEWLINK message MSG (nlmsghdr first) describes."""
    _family, _type, index, flags, _change = _IFINFO.unpack_from(msg, 16)
    kind = None
    for t, payload in _attrs(msg, 16 + _IFINFO.size, len(msg)):
        if t == IFLA_LINKINFO:
            for t2, value in _attrs(payload, 0, len(payload)):
                if t2 == IFLA_INFO_KIND:
                    kind = value.split(b"\0", 1)[0].decode("utf-8", "replace")
    return {"index": index, "kind": kind, "up": bool(flags & IFF_UP)}


def _link_msg(name: str | None = None, index: int = 0, flags: int = 0, change: int = 0,
              attrs: list | None = None) -> rtnl.ifinfmsg:
    msg = rtnl.ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = index, flags, change
    msg["attrs"] = ([("IFLA_IFNAME", name)] if name is not None else []) + (attrs or [])
    return msg


class Conn(rtnl.Rtnl):
    """rtnetlink in one namespace, in the net commands' terms."""

    # -- links ------------------------------------------------------------------------

    def link(self, name: str) -> dict | None:
        """A link by name: {"index", "kind", "up"} (as in the link record of `net ls`), or
        None.  Read from the answer's bytes: `net bridge` asks it twice per bridge, and
        decoding one link with pyroute2 means importing it (~20 ms)."""
        try:
            got = self.request_packed(_ifinfo(name), rtnl.RTM_GETLINK, 0, raw=True)
        except rtnl.RequestFailed as e:
            if e.errno == 19:  # ENODEV
                return None
            raise
        return brief_link(got[0]) if got else None

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
        return [_link(m) for m in self.dump(rtnl.ifinfmsg(), rtnl.RTM_GETLINK)]

    def add_veth(self, name: str, peer: str, peer_nsfd: int | None, up: bool = False) -> None:
        """A veth pair NAME (here) and PEER (in PEER_NSFD's namespace).  UP sets only NAME up:
        the peer cannot be (veth_open answers ENOTCONN until both ends exist)."""
        self.request_packed(pack_veth(name, peer, peer_nsfd, up), rtnl.RTM_NEWLINK, CREATE)

    def add_bridge(self, name: str, up: bool = False) -> None:
        self.request_packed(pack_bridge(name, up), rtnl.RTM_NEWLINK, CREATE)

    def set_link(self, name: str, up: bool | None = None, master: int | None = None) -> None:
        self.request_packed(pack_set_link(name, up, master), rtnl.RTM_NEWLINK)

    def add_link(self, name: str, kind: str, parent: int | None = None,
                 data: list | None = None) -> None:
        """A link of KIND (dummy, macvlan, ipvlan, vlan...) on PARENT's index, with KIND's
        IFLA_INFO_DATA attributes DATA (as `ip link add link PARENT NAME type KIND ...`)."""
        info: dict = {"attrs": [("IFLA_INFO_KIND", kind)]}
        if data:
            info["attrs"].append(("IFLA_INFO_DATA", {"attrs": data}))
        attrs: list = [("IFLA_LINKINFO", info)]
        if parent is not None:
            attrs.append(("IFLA_LINK", parent))
        self.request(_link_msg(name, attrs=attrs), rtnl.RTM_NEWLINK, CREATE)

    def set_attrs(self, name: str, mtu: int | None = None, address: str | None = None,
                  netns_fd: int | None = None) -> None:
        """`ip link set NAME mtu N address MAC netns NS`, in one request."""
        attrs: list = []
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        if address is not None:
            attrs.append(("IFLA_ADDRESS", address))
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        self.request(_link_msg(name, attrs=attrs), rtnl.RTM_NEWLINK)

    def nsid_of(self, fd: int) -> int | None:
        """The NETNSID this namespace knows the network namespace FD (an fd of this
        process) by, as IFLA_LINK_NETNSID names a veth's peer namespace; None if it
        has none assigned (RTM_GETNSID)."""
        rtnl.load_pyroute2()   # pyroute2's submodules, not its whole package
        from pyroute2.netlink.rtnl.nsidmsg import nsidmsg
        msg = nsidmsg()
        msg["attrs"] = [("NETNSA_FD", fd)]
        got = self.request(msg, RTM_GETNSID, 0)
        if not got:
            return None
        # The answer (RTM_NEWNSID) is not among the messages the parser knows: its
        # attributes are read from the raw bytes (nlmsghdr, rtgenmsg, then nlattrs).
        m = got[0]
        raw = bytes(m.data[getattr(m, "offset", 0):][:m["header"]["length"]])
        at = 16 + 4
        while at + 4 <= len(raw):
            alen, atype = struct.unpack_from("=HH", raw, at)
            if alen < 4:
                break
            if atype & 0x3FFF == NETNSA_NSID and alen >= 8:
                (value,) = struct.unpack_from("=i", raw, at + 4)
                return None if value < 0 else value
            at += (alen + 3) & ~3
        return None

    def del_link(self, name: str) -> None:
        self.request_packed(_ifinfo(name), rtnl.RTM_DELLINK)

    # -- addresses ---------------------------------------------------------------------

    def add_addr(self, index: int, iface, nodad: bool = False, delete: bool = False) -> None:
        """IFACE (an ipaddress interface) on link INDEX (DELETE: off it)."""
        if delete:
            self.request_packed(pack_addr(index, iface, nodad), RTM_DELADDR, rtnl.NLM_F_ACK)
        else:
            self.request_packed(pack_addr(index, iface, nodad), rtnl.RTM_NEWADDR, CREATE)

    def addrs(self) -> list[dict]:
        out = []
        for m in self.dump(rtnl.ifaddrmsg(), rtnl.RTM_GETADDR):
            ip = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            out.append({"index": m["index"],
                        "family": "inet" if m["family"] == socket.AF_INET else "inet6",
                        "address": ip, "prefixlen": m["prefixlen"], "cidr": f"{ip}/{m['prefixlen']}",
                        "scope": SCOPES.get(m["scope"], str(m["scope"])),
                        "label": m.get_attr("IFA_LABEL")})
        return out

    # -- routes --------------------------------------------------------------------------

    def add_route(self, dst, gateway, oif: int | None = None, version: int = 4,
                  src=None, metric: int | None = None, delete: bool = False) -> None:
        """DST (an ipaddress network, None for the default route) via GATEWAY (an address)
        or out of link OIF, in the main table, with preferred source SRC and METRIC.
        DELETE: the route that matches what is given (as `ip route del`)."""
        msg = rtnl.rtmsg()
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
        if src is not None:
            attrs.append(("RTA_PREFSRC", str(src)))
        if metric is not None:
            attrs.append(("RTA_PRIORITY", metric))
        msg["attrs"] = attrs
        if delete:
            msg["proto"] = 0
            msg["scope"] = RT_SCOPE_NOWHERE  # any scope (as ip route del asks)
            self.request(msg, RTM_DELROUTE, rtnl.NLM_F_ACK)
        else:
            self.request(msg, rtnl.RTM_NEWROUTE, CREATE)

    def routes(self) -> list[dict]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            query = rtnl.rtmsg()
            query["family"] = family
            for m in self.dump(query, rtnl.RTM_GETROUTE):
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
    from nsshell.plugin import link_record   # the one link object (show's too)
    return link_record(m)


def links_here() -> list[dict]:
    """The links of the namespace this process is in (a helper of `show`/`diff`)."""
    conn = Conn(rtnl.open_here().sock)
    try:
        return conn.links()
    finally:
        conn.close()
