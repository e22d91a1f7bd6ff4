"""The net commands: veth, addr, up, down, route, bridge, del, ls.

Every command speaks rtnetlink (pyroute2's messages, netlink.Conn) over the
connection conn.py keeps for the target network namespace (a socket opened
inside it by a helper, closed when the namespace's handle closes), so a script
of hundreds of commands opens one socket per namespace and forks no `ip`.  pyroute2 is imported on the first net
command, never at start-up.
"""

from __future__ import annotations

import errno as E

from nsshell.plugin import (Annotated, Choice, Int, KernelError, Kw, Message, Multi, NotFoundError,
                            NsSet, Opt, Ref, Table, UsageError, Word, resolve_handle)

from .conn import conn_for, connect, fail
from .types import Cidr, Endpoint, Gateway, IfName, RouteDest

RefArg = Annotated[NsSet, Ref()]

def _index(conn, name: str, label: str, what: str) -> int:
    try:
        index = conn.index(name)
    except OSError as e:
        raise fail(e, what) from None
    if index is None:
        raise NotFoundError(f"{what}: no such device",
                            f"`net ls {label}` lists its links")
    return index


def _default_ifname(other: NsSet, taken: set[str]) -> str:
    base = other.name if other.name and len(other.name) <= 15 else "veth"
    name, n = base, 0
    while name in taken:
        name = f"{base[:14 - len(str(n))]}{n}"
        n += 1
    return name


def register(api):
    """Declare the net commands, and the bridges `show` and `diff` report."""
    api.state_reader("net", "bridges", summary=_bridges_summary,
                     prepare=prepare_bridges)(read_bridges)

    @api.command("net veth", changes="net")
    def net_veth(sh, a: Annotated[tuple, Endpoint()], b: Annotated[tuple, Endpoint()], *,
                 up: bool = False, host: bool = False):
        """Create a veth pair with one end in each network namespace.

        The pair is created in the first end's namespace with its peer placed
        straight into the second's (one netlink request).  An end's interface
        name defaults to the name of the set at the other end.

        Arguments:
          a: the first end: a REF (its network namespace) and the interface's name there
          b: the second end, likewise

        Options:
          up: bring both ends up
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net veth red:eth0 blue:eth0
          net veth lab:v1 host1 --up
        """
        (ref_a, if_a), (ref_b, if_b) = a, b
        ha = resolve_handle(sh, ref_a, "net")
        hb = resolve_handle(sh, ref_b, "net")
        if if_a is None:
            if_a = _default_ifname(ref_b, {if_b} if if_b else set())
        if if_b is None:
            if_b = _default_ifname(ref_a, {if_a} if ha.nsid == hb.nsid else set())
        if ha.nsid == hb.nsid and if_a == if_b:
            raise UsageError(f"both ends would be named {if_a!r} in one namespace")
        conn = connect(ha, ref_a.label)
        try:
            conn.add_veth(if_a, if_b, hb.fd, up=up)
        except OSError as e:
            what = f"creating veth {ref_a.label}:{if_a} <-> {ref_b.label}:{if_b}"
            hint = None
            if e.errno == E.EEXIST:
                hint = (f"an interface named {if_a!r} exists in {ref_a.label} or {if_b!r} in "
                        f"{ref_b.label}; pick other names with REF:IF")
            raise fail(e, what, hint) from None
        if up:
            try:
                connect(hb, ref_b.label).set_link(if_b, up=True)
            except OSError as e:
                raise fail(e, f"setting {if_b} up in {ref_b.label}") from None
        return Message(f"veth {ref_a.label}:{if_a} <-> {ref_b.label}:{if_b}" + (" (up)" if up else ""))

    @api.command("net addr", changes="net")
    def net_addr(sh, ref: RefArg, ifname: Annotated[str, IfName()], cidr: Annotated[object, Cidr()], *,
                 nodad: bool = False, delete: Annotated[bool, Opt("-d")] = False,
                 host: bool = False):
        """Add an address to an interface (with --delete, remove it).

        Arguments:
          ref: the namespace set whose network namespace to change
          ifname: the interface
          cidr: the address with its prefix length (10.0.0.1/24, fd00::1/64)

        Options:
          nodad: (IPv6) no duplicate address detection: usable at once
          delete: remove the address instead (as ip addr del)
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net addr red eth0 10.0.0.1/24
          net addr red eth0 fd00::1/64 --nodad
          net addr red eth0 10.0.0.1/24 --delete
        """
        _, label, conn = conn_for(sh, ref)
        what = (f"removing {cidr} from {ifname} in {label}" if delete
                else f"adding {cidr} to {ifname} in {label}")
        index = _index(conn, ifname, label, what)
        try:
            conn.add_addr(index, cidr, nodad=nodad, delete=delete)
        except OSError as e:
            hint = f"{ifname} in {label} already has {cidr}" if e.errno == E.EEXIST else None
            if delete and e.errno == E.EADDRNOTAVAIL:
                hint = f"`net ls {label}` lists its addresses"
            raise fail(e, what, hint) from None
        return Message(f"{label}: {ifname} {cidr}" + (" removed" if delete else ""))

    def _links_command(word: str, summary: str, examples: str, change, doing: str, done: str):
        """Declare `net WORD REF IF...`: CHANGE(conn, IF) for each link in turn."""
        def net_links(sh, ref: RefArg, ifnames: Annotated[list, IfName()], *, host: bool = False):
            _, label, conn = conn_for(sh, ref)
            for name in ifnames:
                try:
                    change(conn, name)
                except OSError as e:
                    hint = f"`net ls {label}` lists its links" if e.errno == E.ENODEV else None
                    raise fail(e, doing.format(name=name, label=label), hint) from None
            return Message(done.format(label=label, names=" ".join(ifnames)))

        net_links.__name__ = f"net_{word}"
        net_links.__doc__ = f"""{summary}

        Arguments:
          ref: the namespace set whose network namespace to change
          ifnames: the interfaces

        Options:
          host: allow changing the host's own network namespace (by default refused)

        Examples:
{examples}
        """
        return api.command(f"net {word}", changes="net")(net_links)

    _links_command("up", "Set links up (`lo` included).", """\
          net up red lo
          net up red lo eth0""", lambda conn, name: conn.set_link(name, up=True),
                   "setting {name} up in {label}", "{label}: {names} up")
    _links_command("down", "Set links down.", """\
          net down red eth0""", lambda conn, name: conn.set_link(name, up=False),
                   "setting {name} down in {label}", "{label}: {names} down")

    @api.command("net route", changes="net")
    def net_route(sh, ref: RefArg, dest: Annotated[object, RouteDest()],
                  gateway: Annotated[object, Kw("via"), Gateway()] = None,
                  dev: Annotated[str, Kw("dev"), IfName()] = None,
                  src: Annotated[object, Kw("src"), Gateway()] = None,
                  metric: Annotated[int, Kw("metric"), Int("N", minimum=0)] = None, *,
                  delete: Annotated[bool, Opt("-d")] = False, host: bool = False):
        """Add a route: `default` or a network, via a gateway (or straight out of a device).

        Arguments:
          ref: the namespace set whose network namespace to change
          dest: default, or a network (10.1.0.0/16, fd01::/64)
          gateway: the next hop, on a network the namespace is connected to
          dev: the interface to use (default: the kernel picks it from the gateway)
          src: the preferred source address (an address of this namespace)
          metric: the route's priority (lower wins)

        Options:
          delete: remove the route that matches what is given instead (as ip route del)
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net route red default via 10.0.0.254
          net route red 10.1.0.0/16 via 10.0.0.2
          net route red 10.2.0.0/16 dev eth0 src 10.0.0.1 metric 10
          net route red 10.1.0.0/16 --delete
        """
        if gateway is None and dev is None and not delete:
            raise UsageError("a route needs `via GW` or `dev IF`",
                             "e.g. net route REF default via 10.0.0.1")
        _, label, conn = conn_for(sh, ref)
        shown = "default" if dest == "default" else str(dest)
        network = None if dest == "default" else dest
        version = gateway.version if gateway is not None else (network.version if network else 4)
        if network is not None and network.version != version:
            raise UsageError(f"{shown} and gateway {gateway} are of different IP versions")
        for other, name in ((src, "source"),):
            if other is not None and other.version != version:
                raise UsageError(f"{shown} and {name} {other} are of different IP versions")
        spec = (f"{shown}" + (f" via {gateway}" if gateway else "") + (f" dev {dev}" if dev else "")
                + (f" src {src}" if src else "") + (f" metric {metric}" if metric is not None else ""))
        what = f"{'removing' if delete else 'adding'} route {spec} in {label}"
        oif = _index(conn, dev, label, what) if dev else None
        try:
            conn.add_route(network, gateway, oif, version=version, src=src, metric=metric,
                           delete=delete)
        except OSError as e:
            hint = f"{label} has a {shown} route already" if e.errno == E.EEXIST else None
            if delete and e.errno in (E.ESRCH, E.ENOENT):
                hint = f"`net ls {label}` lists its routes"
            raise fail(e, what, hint) from None
        return Message(f"{label}: {spec}" + (" removed" if delete else ""))

    @api.command("net bridge", changes="net")
    def net_bridge(sh, ref: RefArg, name: Annotated[str, IfName(existing=False)],
                   ports: Annotated[list, IfName()] = None, *, up: bool = False,
                   host: bool = False):
        """Create a bridge, with ports; on an existing bridge, add the ports.

        Arguments:
          ref: the namespace set whose network namespace to change
          name: the bridge's name
          ports: interfaces of that namespace to attach to the bridge

        Options:
          up: bring the bridge (and the ports) up
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net bridge lab br0 --up
          net bridge lab br0 v1 v2 v3 --up
        """
        _, label, conn = conn_for(sh, ref)
        ports = ports or []
        existing = conn.link(name)
        if existing is None:
            try:
                conn.add_bridge(name, up=up)
            except OSError as e:
                raise fail(e, f"creating bridge {name} in {label}") from None
            existing = conn.link(name)
            verb = "bridge"
        elif existing["kind"] != "bridge":
            raise KernelError(f"creating bridge {name} in {label}: exists "
                              f"(a {existing['kind'] or 'link'}, not a bridge)", None, E.EEXIST)
        elif not ports:
            raise KernelError(f"creating bridge {name} in {label}: exists",
                              f"to add ports: net bridge {label} {name} IF ...", E.EEXIST)
        else:
            if up and not existing["up"]:
                conn.set_link(name, up=True)
            verb = "bridge (existing)"
        for port in ports:
            try:
                conn.set_link(port, up=True if up else None, master=existing["index"])
            except OSError as e:
                raise fail(e, f"adding {port} to bridge {name} in {label}") from None
        return Message(f"{label}: {verb} {name}" + (f" ports {' '.join(ports)}" if ports else "")
                       + (" (up)" if up else ""))

    _links_command("del", "Delete links (deleting one end of a veth pair deletes both).", """\
          net del red eth0""", lambda conn, name: conn.del_link(name),
                   "deleting {name} in {label}", "{label}: deleted {names}")

    @api.command("net link", changes="net")
    def net_link(sh, ref: RefArg, name: Annotated[str, IfName(existing=False)],
                 kind: Annotated[str, Choice("dummy", "macvlan", "ipvlan", "vlan", metavar="TYPE")],
                 parent: Annotated[str, Kw("link"), IfName()] = None,
                 vid: Annotated[int, Kw("id"), Int("N", minimum=1)] = None,
                 mode: Annotated[str, Kw("mode"), Word("MODE")] = None, *,
                 up: bool = False, host: bool = False):
        """Create a dummy, macvlan, ipvlan or vlan link (as ip link add ... type TYPE).

        Arguments:
          ref: the namespace set whose network namespace to change
          name: the new link's name
          kind: dummy, macvlan, ipvlan or vlan
          parent: the link it sits on (macvlan, ipvlan, vlan)
          vid: the VLAN id (vlan)
          mode: macvlan: private, vepa, bridge (default), passthru; ipvlan: l2, l3 (default), l3s

        Options:
          up: bring it up
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net link lab d0 dummy
          net link lab mv0 macvlan link eth0 mode bridge
          net link lab eth0.5 vlan link eth0 id 5
        """
        modes = {"macvlan": {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8},
                 "ipvlan": {"l2": 0, "l3": 1, "l3s": 2}}
        if kind != "dummy" and parent is None:
            raise UsageError(f"a {kind} link needs `link IF` (the link it sits on)",
                             f"e.g. net link REF {name} {kind} link eth0")
        if kind == "dummy" and parent is not None:
            raise UsageError("a dummy link sits on no other link")
        if (vid is not None) != (kind == "vlan"):
            raise UsageError("`id N` is for vlan links, and a vlan link needs it")
        if mode is not None and mode not in modes.get(kind, {}):
            raise UsageError(f"mode {mode!r} is not one of a {kind} link's",
                             "modes: " + (", ".join(modes[kind]) if kind in modes else "none"))
        _, label, conn = conn_for(sh, ref)
        what = f"creating {kind} {name} in {label}"
        index = _index(conn, parent, label, what) if parent else None
        data = []
        if kind == "vlan":
            data = [("IFLA_VLAN_ID", vid)]
        elif kind == "macvlan":
            data = [("IFLA_MACVLAN_MODE", modes["macvlan"][mode or "bridge"])]
        elif kind == "ipvlan":
            data = [("IFLA_IPVLAN_MODE", modes["ipvlan"][mode or "l3"])]
        try:
            conn.add_link(name, kind, index, data)
            if up:
                conn.set_link(name, up=True)
        except OSError as e:
            hint = None
            if e.errno == E.EEXIST:
                hint = f"`net ls {label}` lists its links"
            elif e.errno == E.EOPNOTSUPP or "Unknown device type" in getattr(e, "detail", ""):
                hint = f"the kernel lacks {kind} links (is its module loaded?)"
            raise fail(e, what, hint) from None
        return Message(f"{label}: {kind} {name}" + (f" on {parent}" if parent else "")
                       + (" (up)" if up else ""))

    @api.command("net set", changes="net")
    def net_set(sh, ref: RefArg, ifname: Annotated[str, IfName()],
                mtu: Annotated[int, Kw("mtu"), Int("N", minimum=68)] = None,
                address: Annotated[str, Kw("address"), Word("MAC")] = None, *,
                host: bool = False):
        """Set a link's MTU and/or MAC address (as ip link set IF mtu N address MAC).

        Arguments:
          ref: the namespace set whose network namespace to change
          ifname: the interface
          mtu: the MTU in bytes
          address: the MAC address (aa:bb:cc:dd:ee:ff)

        Options:
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net set red eth0 mtu 1400
          net set red eth0 address 02:00:00:00:00:01
          net set red eth0 mtu 9000 address 02:00:00:00:00:02
        """
        if mtu is None and address is None:
            raise UsageError("nothing to set", "net set REF IF [mtu N] [address MAC]")
        if address is not None:
            parts = address.split(":")
            if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                          for p in parts):
                raise UsageError(f"address {address!r}: not a MAC address", "e.g. 02:00:00:00:00:01")
            address = address.lower()
        _, label, conn = conn_for(sh, ref)
        spec = " ".join(x for x in (f"mtu {mtu}" if mtu is not None else "",
                                    f"address {address}" if address else "") if x)
        what = f"setting {ifname} {spec} in {label}"
        _index(conn, ifname, label, what)
        try:
            conn.set_attrs(ifname, mtu=mtu, address=address)
        except OSError as e:
            raise fail(e, what) from None
        return Message(f"{label}: {ifname} {spec}")

    @api.command("net move", changes="net")
    def net_move(sh, ref: RefArg, ifname: Annotated[str, IfName()],
                 to: Annotated[NsSet, Kw("to"), Ref()] = ..., *, host: bool = False):
        """Move a link into another network namespace (as ip link set IF netns NS).

        Both namespaces change: `--host` is needed when either is the host's.

        Arguments:
          ref: the namespace set the link is in
          ifname: the interface
          to: the namespace set to move it into

        Options:
          host: allow changing the host's own network namespace (by default refused)

        Examples:
          net move red eth1 to blue
        """
        _, label, conn = conn_for(sh, ref)
        target = resolve_handle(sh, to, "net")
        what = f"moving {ifname} from {label} to {to.label}"
        _index(conn, ifname, label, what)
        try:
            conn.set_attrs(ifname, netns_fd=target.fd)
        except OSError as e:
            hint = (f"{to.label} has a link named {ifname} already" if e.errno == E.EEXIST else None)
            raise fail(e, what, hint) from None
        return Message(f"{ifname}: {label} -> {to.label}")

    @api.command("net ls")
    def net_ls(sh, ref: RefArg = None):
        """Links, addresses and routes of a network namespace (default: the current one).

        Arguments:
          ref: the namespace set (default: the current context)

        Examples:
          net ls
          net ls red
          net ls red --json
        """
        handle, label, conn = conn_for(sh, ref)
        try:
            links, addrs, routes = conn.links(), conn.addrs(), conn.routes()
        except OSError as e:
            raise fail(e, f"listing the links of {label}") from None
        if any(link.get("peer_netnsid") is not None for link in links):
            names = _nsid_names(sh, conn)
            for link in links:
                n = link.get("peer_netnsid")
                link["peer_ns"] = None if n is None else names.get(n, f"nsid {n}")
        return net_view(label, str(handle.nsid), links, addrs, routes)


def _nsid_names(sh, conn) -> dict[int, str]:
    """NETNSID (as CONN's namespace numbers the others) -> a name: the session's sets,
    the host, then the /run/netns names."""
    import os
    out: dict[int, str] = {}
    seen = set()
    candidates = [(name, s.handles.get("net")) for name, s in sh.sets.items()]
    candidates.append(("host", sh.host.handles.get("net")))
    for name, h in candidates:
        if h is None or h.closed or h.nsid in seen:
            continue
        seen.add(h.nsid)
        try:
            nsid = conn.nsid_of(h.fd)
        except OSError:
            continue
        if nsid is not None:
            out.setdefault(nsid, name)
    try:
        entries = sorted(os.listdir("/run/netns"))
    except OSError:
        entries = []
    for name in entries:
        try:
            fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            nsid = conn.nsid_of(fd)
        except OSError:
            nsid = None
        finally:
            os.close(fd)
        if nsid is not None:
            out.setdefault(nsid, name)
    return out


def _state(link: dict) -> str:
    return link["state"] or "-"   # the kernel's operstate, as `ip link` and `show` print it


def net_view(label: str, nsid: str, links: list[dict], addrs: list[dict], routes: list[dict]):
    names = {link["index"]: link["name"] for link in links}
    for link in links:
        link["addresses"] = [a["cidr"] for a in addrs if a["index"] == link["index"]]
        link["master"] = names.get(link["master"]) if link["master"] else None
    for r in routes:
        r["dev"] = names.get(r["oif"]) if r["oif"] else None
    link_rows = [[link["index"], link["name"], link["kind"] or "", _state(link),
                  link["master"] or "", " ".join(link["addresses"]), link["mtu"], link["mac"] or "",
                  link.get("peer_ns") or ""]
                 for link in links]
    route_rows = [[r["dst"], r["gateway"] or "", r["dev"] or "", r["proto"], r["scope"],
                   r["prefsrc"] or ""] for r in routes if r["type"] == "unicast"]
    parts = [Table(["index", "name", "kind", "state", "master", "addresses", "mtu", "mac", "peer ns"],
                   link_rows, title=f"{label} {nsid}: links", key="links"),
             Table(["dst", "via", "dev", "proto", "scope", "src"], route_rows,
                   title=f"{label}: routes", key="routes")]
    # `net ls`: a table of links (with their addresses) and one of routes; JSON
    # {"ns", "name", "links": [...], "routes": [...]}
    return Multi(parts, {"ns": nsid, "name": label, "links": links, "routes": routes})


# -- what `show` and `diff` report (besides nsshell's own links, addresses, routes) ---------

def prepare_bridges() -> None:
    """In the shell, before the helper enters: what read_bridges imports (nothing is
    imported inside a namespace's files)."""
    from . import netlink
    netlink.rtnl.preload()


def read_bridges(ctx) -> dict:
    """Runs in a helper inside the namespace: each bridge and its ports."""
    from .netlink import links_here
    links = links_here()
    names = {link["index"]: link["name"] for link in links}
    return {link["name"]: sorted(names.get(x["index"]) for x in links if x["master"] == link["index"])
            for link in links if link["kind"] == "bridge"}


def _bridges_summary(value: dict):
    return [f"{br}: {' '.join(ports) or '(no ports)'}" for br, ports in value.items()] or "-"
