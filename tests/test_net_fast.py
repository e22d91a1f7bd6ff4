"""What the net commands cost (issue 14, the 100-namespace bridge lab): no look the
command does not need, and the fast paths give what the slow ones gave.

Every namespace here is created by the test's own nsshell process (and ends with it),
or is an `ip netns` entry the test adds and deletes; names start with nlx.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import NOBODY, _env, json_docs, nsshell_argv


def _tmp_scans(trace: str) -> list[str]:
    """The opens of /tmp as a directory (what looking for a keeper does) in an strace log."""
    with open(trace) as f:
        return [l for l in f if '"/tmp"' in l and "O_DIRECTORY" in l]


def _traced(tmp_path, script: str, user: int | None = None):
    """Run nsshell -c SCRIPT under strace -f (as USER): (Done-like result, /tmp scans)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    trace = str(tmp_path / "trace")
    argv = nsshell_argv() + ["-c", script]
    env = _env()
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        env["HOME"] = "/nonexistent"
        env.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.run([shutil.which("strace"), "-f", "-qq", "-o", trace, "-e", "trace=openat"]
                       + argv, env=env, capture_output=True, text=True, timeout=60, cwd="/")
    return p, _tmp_scans(trace)


def test_an_endpoint_with_a_colon_costs_no_keeper_scan(tmp_path):
    """`net veth a:eth0 b:eth0` first resolves the whole text 'a:eth0' as a REF: no name
    has a ':', so neither the keeper (a scan of /tmp) nor the store is asked."""
    p, scans = _traced(tmp_path, "new net as nlxa --no-join; new net as nlxb --no-join; "
                                 "net veth nlxa:eth0 nlxb:eth0; net veth nlxa:e1 nlxb:e1; net ls nlxa")
    assert p.returncode == 0 and "e1" in p.stdout, p
    assert scans == [], scans


def test_rootless_an_endpoint_costs_no_keeper_scan(tmp_path, rootless_ok):
    """The same without root, where the keeper is asked first for every name."""
    p, scans = _traced(tmp_path, "new user as nlxu; map root; new net as nlxa --no-join; "
                                 "new net as nlxb --no-join; net veth nlxa:eth0 nlxb:eth0; "
                                 "net ls nlxa", user=NOBODY)
    assert p.returncode == 0 and "eth0" in p.stdout, p
    assert scans == [], scans
    # ...while a name that is none of the session's still asks the keeper (the scan is
    # the lookup of a name, not gone for good)
    p, scans = _traced(tmp_path, "new user as nlxu; map root; net ls nlxnosuch", user=NOBODY)
    assert p.returncode != 0 and "nlxnosuch" in p.stderr, p
    assert scans, "a name not held by the session must still be looked up in the keeper"


@pytest.fixture
def colon_netns(prefix):
    """An `ip netns` entry whose name has a ':' (ip allows it; nsshell names do not)."""
    name = f"nlx{prefix}:x"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_an_ip_netns_name_with_a_colon_still_resolves(nsshell, colon_netns):
    d = nsshell("--json", "-c", f"new net as nlxb --no-join; net veth {colon_netns}:v0 nlxb:v1; "
                f"net up {colon_netns} v0 lo; net ls {colon_netns}")
    assert d.rc == 0, d
    view = next(doc for doc in json_docs(d.out) if isinstance(doc, dict) and "links" in doc)
    links = {link["name"]: link for link in view["links"]}
    assert view["name"] == colon_netns and "v0" in links and links["lo"]["up"], view
    ip = subprocess.run(["ip", "-n", colon_netns, "-j", "link", "show", "lo"],
                        capture_output=True, text=True, check=True)
    assert "UP" in json.loads(ip.stdout)[0]["flags"]


def test_one_handle_closing_leaves_the_object_another_live_handle_got(shell):
    """HandleCache: two handles on one namespace (a set held, and the same namespace
    opened again as an unheld set is, e.g. an `ip netns` name with ':'): the older one
    closing -- whenever the collector gets to it -- leaves the object the newer one got;
    the last one closing closes it."""
    import socket as so
    from nsshell.plugin import HandleCache, socket_in
    closed = []
    cache = HandleCache(lambda h: so.socket(fileno=socket_in(h, so.AF_INET, so.SOCK_DGRAM)),
                        lambda s: (closed.append(s.fileno()), s.close()))
    try:
        assert shell("new net as nlxa --no-join").rc == 0
        held = shell.session.sets["nlxa"].handles["net"]
        again = shell.session.resolve(f"/proc/self/fd/{held.fd}").handles["net"]
        assert again is not held and again.nsid == held.nsid
        first = cache.get(again)
        assert cache.get(held) is first              # one per namespace
        again.close()                                # the unheld one goes first
        assert closed == [] and first.fileno() >= 0  # the held one still uses it
        assert shell("close nlxa").rc == 0
        assert len(closed) == 1 and first.fileno() == -1
    finally:
        cache.clear()


# -- the messages packed with struct are pyroute2's, byte for byte ----------------------------

def _pyroute2_bytes(msg) -> bytes:
    head = msg["header"]
    head["type"], head["flags"], head["sequence_number"], head["pid"] = 16, 5, 1, 0
    msg.encode()
    data = bytes(msg.data)
    assert int.from_bytes(data[:4], "little") == len(data)
    return data[16:]


def _pr_link(name, flags=0, change=0, attrs=()):
    from nsshell.plugin import rtnl
    msg = rtnl.ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = 0, flags, change
    msg["attrs"] = ([("IFLA_IFNAME", name)] if name is not None else []) + list(attrs)
    return _pyroute2_bytes(msg)


NAMES = ["e", "eth0", "v1", "abcdefghijklmno", "br-lab.5", "é0"]


@pytest.mark.parametrize("name", NAMES)
def test_packed_link_messages_are_pyroute2s(name):
    from nsshell_net import netlink as nl
    for up in (True, False):
        for peer, fd in (("v1", None), ("p" * 15, 7), ("x", 2**31)):
            peer_attrs = [("IFLA_IFNAME", peer)] + ([("IFLA_NET_NS_FD", fd)] if fd is not None else [])
            info = {"attrs": [("IFLA_INFO_KIND", "veth"),
                              ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]}
            assert nl.pack_veth(name, peer, fd, up) == _pr_link(
                name, nl.IFF_UP if up else 0, nl.IFF_UP, [("IFLA_LINKINFO", info)]), (name, peer, fd, up)
        info = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
        assert nl.pack_bridge(name, up) == _pr_link(name, nl.IFF_UP if up else 0, nl.IFF_UP,
                                                    [("IFLA_LINKINFO", info)])
    for up in (True, False, None):
        for master in (None, 1, 4096):
            attrs = [("IFLA_MASTER", master)] if master is not None else []
            assert nl.pack_set_link(name, up, master) == _pr_link(
                name, nl.IFF_UP if up else 0, nl.IFF_UP if up is not None else 0, attrs), (up, master)
    assert nl._ifinfo(name) == _pr_link(name)


@pytest.mark.parametrize("cidr", ["10.9.0.2/16", "10.0.0.1/24", "192.168.1.1/31", "10.1.1.1/32",
                                  "1.2.3.4/0", "10.0.0.1/8", "fd00::1/64", "fe80::2/128", "::1/0"])
def test_packed_address_messages_are_pyroute2s(cidr):
    import ipaddress
    from nsshell.plugin import rtnl
    from nsshell_net import netlink as nl
    iface = ipaddress.ip_interface(cidr)
    for index in (1, 3, 70000):
        for nodad in (False, True):
            msg = rtnl.ifaddrmsg()
            msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
            msg["prefixlen"] = iface.network.prefixlen
            msg["flags"] = nl.IFA_F_NODAD if nodad else 0
            msg["scope"] = nl.RT_SCOPE_UNIVERSE
            msg["index"] = index
            ip = str(iface.ip)
            attrs = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
            if iface.version == 4 and iface.network.prefixlen < 31:
                attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
            msg["attrs"] = attrs
            assert nl.pack_addr(index, iface, nodad) == _pyroute2_bytes(msg), (cidr, index, nodad)


def test_rtnl_numbers_are_pyroute2s():
    from nsshell.core.look import rtnl
    rtnl.load_pyroute2()
    import pyroute2.netlink as pn
    import pyroute2.netlink.rtnl as pr
    for name in ("NLM_F_REQUEST", "NLM_F_MULTI", "NLM_F_ACK", "NLM_F_DUMP", "NLM_F_EXCL",
                 "NLM_F_CREATE", "NLM_F_CAPPED", "NLM_F_ACK_TLVS", "NLMSG_ERROR", "NLMSG_DONE"):
        assert getattr(rtnl, name) == getattr(pn, name), name
    for name in ("RTM_NEWLINK", "RTM_DELLINK", "RTM_GETLINK", "RTM_NEWADDR", "RTM_GETADDR",
                 "RTM_NEWROUTE", "RTM_GETROUTE"):
        assert getattr(rtnl, name) == getattr(pr, name), name


LAB = ("new net as nlxhub --no-join; net bridge nlxhub br0; net up nlxhub br0; "
       "new net as nlxn1 --no-join; new net as nlxn2 --no-join; "
       "net veth nlxn1:eth0 nlxhub:v1; net addr nlxn1 eth0 10.9.0.2/16; net up nlxn1 lo eth0; "
       "net up nlxhub v1; net veth nlxn2:eth0 nlxhub:v2 --up; net addr nlxn2 eth0 fd00::2/64 --nodad; "
       "net bridge nlxhub br0 v1 v2; net del nlxn2 eth0; net addr nlxn1 eth0 10.9.0.2/16 --delete")


def test_a_lab_that_only_changes_things_imports_no_pyroute2():
    """veth pairs, addresses, links up, bridges, deletions: packed requests, answered by
    acknowledgements; pyroute2 (~20 ms to import) is for what decodes links, as `net ls`."""
    from test_imports import imported
    mods = imported("-c", LAB)
    assert not [m for m in mods if m.startswith("pyroute2")], sorted(m for m in mods if "pyroute2" in m)
    assert "pyroute2.netlink.rtnl.ifinfmsg" in imported("-c", LAB + "; net ls nlxhub")


def test_the_lab_builds_what_pyroute2_reads_back(nsshell):
    """The packed requests do what they say: read back by pyroute2 (`net ls`) and ip."""
    d = nsshell("--json", "-c", LAB + "; net ls nlxhub; net ls nlxn1; net ls nlxn2")
    assert d.rc == 0, d
    hub, n1, n2 = [doc for doc in json_docs(d.out) if isinstance(doc, dict) and "links" in doc]
    links = {link["name"]: link for link in hub["links"]}
    assert links["br0"]["kind"] == "bridge" and links["br0"]["up"]
    assert links["v1"]["master"] == "br0" and links["v1"]["up"] and "v2" not in links
    assert {link["name"] for link in n2["links"]} == {"lo"}
    eth0 = {link["name"]: link for link in n1["links"]}["eth0"]
    assert eth0["up"] and eth0["kind"] == "veth" and "10.9.0.2/16" not in eth0["addresses"]
    assert {link["name"]: link for link in n1["links"]}["lo"]["up"]


@pytest.fixture
def api():
    """An in-process session with the plugins (nsshell.Session), closed afterwards."""
    import nsshell
    with nsshell.Session() as s:
        yield s


def _conn(api, name):
    from nsshell_net.conn import connect
    return connect(api.session.sets[name].handles["net"], name)


def test_a_link_read_from_its_bytes_is_the_link_record(api):
    """Conn.link (what `net bridge` asks, read without pyroute2) agrees with the link
    record pyroute2 decodes (`net ls`, `show`) for every kind of link at hand."""
    api.run("new net as nlxa --no-join; net veth nlxa:v0 nlxa:v1 --up; net bridge nlxa br0 v0 --up; "
            "net bridge nlxa br1")
    try:
        api.run("net link nlxa d0 dummy")  # when the kernel has dummy links
    except Exception:  # noqa: BLE001
        pass
    conn = _conn(api, "nlxa")
    records = conn.links()
    assert {"lo", "v0", "v1", "br0", "br1"} <= {r["name"] for r in records}
    for r in records:
        assert conn.link(r["name"]) == {"index": r["index"], "kind": r["kind"], "up": r["up"]}, r
    assert conn.link("nosuch") is None


def test_refusals_read_from_their_bytes_are_pyroute2s(api):
    """The one framing loop decodes a refusal itself (errno, extended-ACK text): the same
    as pyroute2's decoding of the same bytes, with and without a text."""
    import ipaddress
    from nsshell.core.look import rtnl
    from nsshell_net import netlink as nl
    api.run("new net as nlxa --no-join; net veth nlxa:v0 nlxa:v1")
    conn = _conn(api, "nlxa")
    index = conn.index("v0")
    addr = nl.pack_addr(index, ipaddress.ip_interface("10.5.0.1/24"), False)
    conn.request_packed(addr, rtnl.RTM_NEWADDR, nl.CREATE)
    cases = [(addr, rtnl.RTM_NEWADDR, nl.CREATE),                        # exists, with a text
             (nl.pack_set_link("nosuch", True, None), rtnl.RTM_NEWLINK, rtnl.NLM_F_ACK),  # ENODEV
             (nl.pack_veth("v0", "v9", None, False), rtnl.RTM_NEWLINK, nl.CREATE),
             (nl.pack_addr(index, ipaddress.ip_interface("10.6.0.1/24"), False),
              nl.RTM_DELADDR, rtnl.NLM_F_ACK)]
    rtnl.load_pyroute2()
    from pyroute2.netlink.exceptions import NetlinkError
    marshal = rtnl._marshal()
    seen = set()
    for body, kind, flags in cases:
        with pytest.raises(rtnl.RequestFailed) as ours:
            conn.request_packed(body, kind, flags)
        # the same request once more, its answer's bytes read here and given to pyroute2
        conn.seq += 1
        conn.sock.send(rtnl._NLMSG_HDR.pack(16 + len(body), kind, rtnl.NLM_F_REQUEST | flags,
                                            conn.seq, 0) + body)
        (msg,) = list(marshal.parse(conn.sock.recv(65536)))
        err = msg["header"]["error"]
        assert isinstance(err, NetlinkError)
        text = err.args[1] if isinstance(err.args[1], str) else ""
        assert ours.value.errno == err.code
        assert ours.value.detail == ("" if text == os.strerror(err.code) else text)
        seen.add(bool(ours.value.detail))
    assert seen == {True, False}   # both shapes met: with an extended-ACK text and without
