"""The net plugin on the real kernel: veth pairs, addresses, links, routes, bridges, errors.

Every namespace here is created by the test's own nsshell process and held only by
it, so it ends when that process exits; the addresses (10.x, fd00::) never leave
those namespaces.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from conftest import json_docs

PING = "run ping -c1 -W2"


def _ok(done):
    assert done.rc == 0, done
    return done


def test_veth_pair_with_addresses_ping_each_other(nsshell):
    d = _ok(nsshell("-c", "new net as a --no-join; new net as b --no-join; "
                          "net veth a:eth0 b:eth0 --up; "
                          "net addr a eth0 10.77.0.1/24; net addr b eth0 10.77.0.2/24; "
                          "net up a lo; net up b lo; "
                          f"join a; {PING} 10.77.0.2; join b; {PING} 10.77.0.1"))
    assert d.out.count("1 received") == 2, d.out


def test_veth_ends_are_where_asked_and_up(nsshell):
    d = _ok(nsshell("--json", "-c", "new net as a --no-join; new net as b --no-join; "
                                    "net veth a:left b:right --up; net ls a; net ls b"))
    docs = [doc for doc in json_docs(d.out) if "links" in doc]
    a, b = docs
    names_a = {link["name"]: link for link in a["links"]}
    names_b = {link["name"]: link for link in b["links"]}
    assert "left" in names_a and "right" not in names_a
    assert "right" in names_b and "left" not in names_b
    assert names_a["left"]["kind"] == "veth" and names_a["left"]["up"]
    assert names_b["right"]["up"]
    assert a["ns"] != b["ns"]


def test_default_end_names_are_the_other_sets_names(nsshell):
    d = _ok(nsshell("--json", "-c", "new net as red --no-join; new net as blue --no-join; "
                                    "net veth red blue; net ls red; net ls blue"))
    red, blue = [doc for doc in json_docs(d.out) if "links" in doc]
    assert "blue" in [link["name"] for link in red["links"]]
    assert "red" in [link["name"] for link in blue["links"]]


def test_three_namespaces_on_a_bridge_reach_each_other(nsshell):
    script = ["new net as sw --no-join", "net bridge sw br0 --up"]
    for i in (1, 2, 3):
        script += [f"new net as h{i} --no-join", f"net veth h{i}:eth0 sw:p{i} --up",
                   f"net addr h{i} eth0 10.78.0.{i}/24", f"net up h{i} lo"]
    script.append("net bridge sw br0 p1 p2 p3 --up")
    setup = list(script)
    for i in (1, 2, 3):
        others = [j for j in (1, 2, 3) if j != i]
        script.append(f"join h{i}")
        script += [f"{PING} 10.78.0.{j}" for j in others]
    d = _ok(nsshell("-c", "; ".join(script)))
    assert d.out.count("1 received") == 6, d.out
    d = _ok(nsshell("--json", "-c", "; ".join(setup) + "; net ls sw"))
    sw = [doc for doc in json_docs(d.out) if "links" in doc][0]
    ports = sorted(link["name"] for link in sw["links"] if link["master"] == "br0")
    assert ports == ["p1", "p2", "p3"]


def test_routes_through_a_router_namespace(nsshell):
    d = _ok(nsshell("-c", "; ".join([
        "new net as a --no-join", "new net as r --no-join", "new net as b --no-join",
        "net veth a:eth0 r:ra --up", "net veth b:eth0 r:rb --up",
        "net addr a eth0 10.79.1.2/24", "net addr r ra 10.79.1.1/24",
        "net addr b eth0 10.79.2.2/24", "net addr r rb 10.79.2.1/24",
        "net route a default via 10.79.1.1", "net route b 10.79.1.0/24 via 10.79.2.1 dev eth0",
        "join r", "run sysctl -q -w net.ipv4.ip_forward=1",
        "join a", f"{PING} 10.79.2.2",
    ])))
    assert "1 received" in d.out
    d = _ok(nsshell("--json", "-c", "new net as a --no-join; net veth a:eth0 a:peer --up; "
                                    "net addr a eth0 10.79.3.2/24; "
                                    "net route a default via 10.79.3.1; net ls a"))
    a = [doc for doc in json_docs(d.out) if "routes" in doc][0]
    default = [r for r in a["routes"] if r["dst"] == "default"]
    assert default and default[0]["gateway"] == "10.79.3.1" and default[0]["dev"] == "eth0"


def test_ipv6_address_routes_and_ls(nsshell):
    d = _ok(nsshell("--json", "-c", "new net as a --no-join; net up a lo; "
                                    "net addr a lo fd00:79::1/64 --nodad; "
                                    "net veth a:x a:y --up; net addr a x fd00:7a::2/64 --nodad; "
                                    "net route a default via fd00:7a::1; "
                                    "net route a 10.2.0.0/16 dev y; net ls a"))
    a = [doc for doc in json_docs(d.out) if "links" in doc][0]
    lo = [link for link in a["links"] if link["name"] == "lo"][0]
    assert "fd00:79::1/64" in lo["addresses"] and "127.0.0.1/8" in lo["addresses"]
    routes = {(r["dst"], r["family"]): r for r in a["routes"]}
    assert routes[("default", "inet6")]["gateway"] == "fd00:7a::1"
    assert routes[("10.2.0.0/16", "inet")]["dev"] == "y"
    assert routes[("10.2.0.0/16", "inet")]["gateway"] is None


def test_net_ls_defaults_to_the_context(nsshell):
    d = _ok(nsshell("--json", "-c", "new net as a; net up a lo; net veth a:only a:other; net ls"))
    a = [doc for doc in json_docs(d.out) if "links" in doc][0]
    assert sorted(link["name"] for link in a["links"]) == ["lo", "only", "other"]


# -- errors: one line saying what was asked and why -------------------------------------------

def _one_error(done, *needles, rc=1):
    assert done.rc == rc, done
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in done.err
    return lines[0]


def test_duplicate_veth_says_exists(nsshell):
    d = nsshell("-c", "new net as a --no-join; new net as b --no-join; "
                      "net veth a:eth0 b:eth0; net veth a:eth0 b:eth1")
    _one_error(d, "creating veth a:eth0 <-> b:eth1", "exists")


def test_missing_device_says_no_such_device(nsshell):
    _one_error(nsshell("-c", "new net as a --no-join; net addr a nosuch0 10.0.0.1/24"),
               "adding 10.0.0.1/24 to nosuch0 in a", "no such device")
    _one_error(nsshell("-c", "new net as a --no-join; net up a nosuch0"),
               "setting nosuch0 up in a", "no such device")
    _one_error(nsshell("-c", "new net as a --no-join; net bridge a br0 nosuch0"),
               "adding nosuch0 to bridge br0 in a", "no such device")


def test_interface_names_are_looked_up_in_the_target_namespace(nsshell):
    """A name the host has but the target lacks is no such device there, and an index
    found in the target is the target's (the address lands on the target's link)."""
    host_names = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not host_names:
        pytest.skip("the host has no interface but lo")
    name = host_names[0]
    _one_error(nsshell("-c", f"new net as a --no-join; net addr a {name} 10.0.0.1/24"),
               f"adding 10.0.0.1/24 to {name} in a", "no such device")
    d = _ok(nsshell("--json", "-c", f"new net as a --no-join; net veth a:pad0 a:pad1; "
                                    f"net veth a:{name} a:other; net addr a {name} 10.83.0.1/24; "
                                    "net ls a"))
    a = [doc for doc in json_docs(d.out) if "links" in doc][0]
    link = [x for x in a["links"] if x["name"] == name][0]
    assert link["addresses"] == ["10.83.0.1/24"], a["links"]


def test_route_errors_name_the_device_and_the_reason(nsshell):
    line = _one_error(nsshell("-c", "new net as a --no-join; net route a 10.1.0.0/16 dev lo"),
                      "adding route 10.1.0.0/16 dev lo in a", "network down")
    assert "net up" in line


def test_bad_cidr_is_a_usage_error_and_changes_nothing(nsshell):
    d = nsshell("-c", "new net as a --no-join; net addr a lo 10.0.0.300/24")
    _one_error(d, "10.0.0.300/24", "not an address", rc=2)
    _one_error(nsshell("-c", "new net as a --no-join; net route a 10.1.2.3/16 via 10.0.0.1"),
               "host bits", rc=2)
    _one_error(nsshell("-c", "new net as a --no-join; net route a default via nowhere"),
               "not an IP address", rc=2)
    _one_error(nsshell("-c", "new net as a --no-join; net route a 10.3.0.0/16"),
               "needs `via GW` or `dev IF`", rc=2)


def test_duplicate_address_and_unreachable_gateway(nsshell):
    _one_error(nsshell("-c", "new net as a --no-join; net addr a lo 10.0.0.1/24; "
                             "net addr a lo 10.0.0.1/24"), "exists")
    _one_error(nsshell("-c", "new net as a --no-join; net route a default via 10.9.9.9"),
               "adding route default via 10.9.9.9 in a", "unreachable")


def test_bridge_over_a_non_bridge_and_twice(nsshell):
    _one_error(nsshell("-c", "new net as a --no-join; net bridge a lo"), "exists", "not a bridge")
    _one_error(nsshell("-c", "new net as a --no-join; net bridge a br0; net bridge a br0"),
               "creating bridge br0 in a", "exists")


def test_ref_without_a_network_namespace(nsshell):
    _one_error(nsshell("-c", "new uts as u --no-join; net up u lo"), "u has no net namespace")


def test_unknown_ref_is_not_found(nsshell):
    _one_error(nsshell("-c", "net veth nosuchset:eth0 host:x"), "nosuchset")


# -- sockets: one per namespace, none keeping a namespace alive -----------------------------

def test_closed_namespace_is_not_kept_alive_by_the_socket(nsshell):
    d = _ok(nsshell("--json", "-c", "new net as a --no-join; net up a lo; net ls a; "
                                    "close a; ls net"))
    docs = json_docs(d.out)
    a = [x for x in docs if isinstance(x, dict) and "links" in x][0]
    ino = int(a["ns"].split("[")[1].rstrip("]"))
    listing = [x for x in docs if isinstance(x, dict) and "namespaces" in x][0]
    inodes = [n["ns"] for n in listing["namespaces"]]
    assert inodes and ino not in inodes, f"{a['ns']} still exists after close"
    # and while it is held, `ls` finds it (so the check above can fail)
    d = _ok(nsshell("--json", "-c", "new net as a --no-join; net up a lo; net ls a; ls net"))
    docs = json_docs(d.out)
    a = [x for x in docs if isinstance(x, dict) and "links" in x][0]
    listing = [x for x in docs if isinstance(x, dict) and "namespaces" in x][0]
    held = [n for n in listing["namespaces"] if n["ns"] == int(a["ns"].split("[")[1].rstrip("]"))]
    assert held and "process" not in held[0]["held"], held  # no helper sits in it


def test_interface_names_complete_from_the_target_namespace(nsshell):
    d = _ok(nsshell("--complete", "net up host "))
    names = [line.split("\t")[0] for line in d.out.splitlines()]
    assert "lo" in names
    d = _ok(nsshell("--complete", "net veth host:l"))
    assert "host:lo" in [line.split("\t")[0] for line in d.out.splitlines()]


# -- rootless ---------------------------------------------------------------------------------

def test_rootless_veth_pair_pings(rootless):
    d = rootless("-c", "new user as lab; map root; new net as a --no-join; new net as b --no-join; "
                       "net veth a:eth0 b:eth0 --up; net addr a eth0 10.80.0.1/24; "
                       "net addr b eth0 10.80.0.2/24; net up a lo; net up b lo; "
                       f"join a; {PING} 10.80.0.2")
    assert d.rc == 0, d
    assert "1 received" in d.out


def test_rootless_host_is_not_permitted(rootless):
    d = rootless("-c", "net up host lo")
    assert d.rc == 1, d
    assert "is the host's own net namespace" in d.err and "--host" in d.err, d.err
    assert len(d.err.strip().splitlines()) == 1, d.err
    d = rootless("-c", "net up host lo --host")
    assert d.rc == 1, d
    assert "setting lo up in host: not permitted" in d.err, d.err
    assert len(d.err.strip().splitlines()) == 1, d.err


# -- the host's own network namespace: nothing changes it without --host ------------------------

# Every interface named here does not exist on the host, so a guard that failed would
# show as a different error (or a link the finally below removes), never as a host
# whose lo or eth0 went down.
_HOST_CHANGES = [
    "net del {ref} fzq0", "net down {ref} fzq0", "net up {ref} fzq0",
    "net addr {ref} fzq0 10.251.0.1/24", "net route {ref} 10.252.0.0/16 dev fzq0",
    "net bridge {ref} fzqbr0", "net veth {ref}:fzqv0 {ref}:fzqv1",
]


@pytest.fixture
def host_process():
    """A process of the host's own namespaces that is not the shell."""
    import subprocess
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


def _host_links() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


@pytest.mark.parametrize("cmd", _HOST_CHANGES)
@pytest.mark.parametrize("ref", ["host", "pid:{pid}", "/proc/{pid}/ns/net", "net:[{ino}]",
                                 "hostset"])
def test_every_change_of_the_hosts_network_is_refused_by_identity(nsshell, host_process,
                                                                  ref, cmd):
    before = _host_links()
    ino = os.stat(f"/proc/{host_process}/ns/net").st_ino
    ref = ref.format(pid=host_process, ino=ino)
    try:
        d = nsshell("-c", f"open pid:{host_process} as hostset; "
                          + cmd.format(ref=ref))
        assert d.rc == 1, d
        assert "is the host's own net namespace" in d.err and "--host" in d.err, d
        assert len(d.err.strip().splitlines()) == 1, d.err
    finally:
        made = _host_links() - before
        for name in made:
            os.system(f"ip link del {name}")
    assert not made, f"the refused command made {made} on the host"


def test_host_flag_changes_the_hosts_network(nsshell):
    before = _host_links()
    try:
        d = nsshell("-c", "new net as fzqa --no-join; net veth host:fzqh0 fzqa:eth0 --host; "
                          "net ls host --json; net del host fzqh0 --host")
        assert d.rc == 0, d
        assert "fzqh0" in d.out
    finally:
        if "fzqh0" in _host_links():
            os.system("ip link del fzqh0")
    assert _host_links() == before


def test_in_a_new_namespace_no_host_flag_is_needed(nsshell):
    _ok(nsshell("-c", "new net as fzqn; net up fzqn lo; net bridge fzqn br0; net del fzqn br0"))


def test_a_plugin_command_that_changes_state_must_take_host():
    from nsshell.plugin import changes_state

    def no_flag(sh, ref):
        """x"""
    with pytest.raises(TypeError, match="--host"):
        changes_state("net")(no_flag)

    def flag(sh, ref, *, host: bool = False):
        """x"""
    assert changes_state("net")(flag).changes == "net"


def test_rootless_reads_its_own_namespace_without_a_helper(rootless):
    d = rootless("--json", "-c", "net ls")
    assert d.rc == 0, d
    assert "lo" in [link["name"] for link in json.loads(d.out)["links"]]


def test_rootless_sockets_come_from_one_opener_that_ends_with_its_user_namespace(rootless):
    """Unprivileged, the sockets of every namespace a user namespace owns come from one
    opener inside it (no fork per namespace); closing that user namespace ends the opener
    too, so nothing keeps the namespace alive.  Seen by root: the opener is not dumpable
    (core/proc/harden.py), so not even its own user can see its namespaces in /proc."""
    import subprocess
    from conftest import NOBODY, _env, nsshell_argv, processes_named
    pause = "run sh -c 'echo {0}; read x'"
    script = ("new user as u; map root; new net --count 6 as n --no-join; "
              + "; ".join(f"net up n{i} lo" for i in range(1, 7)) + "; " + pause.format("UP")
              + "; leave; " + "; ".join(f"close n{i}" for i in range(1, 7)) + "; close u; "
              + pause.format("CLOSED"))
    env = dict(_env(), HOME="/tmp")
    env.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          *nsshell_argv(), "-c", script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd="/tmp")

    def openers_in(ino: int) -> list[int]:
        found = []
        for pid in processes_named("nsshell-sockets"):
            try:
                if os.stat(f"/proc/{pid}/ns/user").st_ino == ino:
                    found.append(pid)
            except OSError:
                pass
        return found

    try:
        ino = int(p.stdout.readline().split("[")[1].split("]")[0])  # "u: user:[INODE]"
        while (line := p.stdout.readline()) and line.strip() != "UP":
            pass
        assert line.strip() == "UP", p.stderr.read()
        assert len(openers_in(ino)) == 1
        p.stdin.write("\n")
        p.stdin.flush()
        while (line := p.stdout.readline()) and line.strip() != "CLOSED":
            pass
        assert line.strip() == "CLOSED", p.stderr.read()
        assert openers_in(ino) == []
        p.stdin.write("\n")
        p.stdin.close()
        assert p.wait(timeout=30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# -- helpers ------------------------------------------------------------------------------------



@pytest.fixture(autouse=True)
def _net_plugin_installed(nsshell):
    d = nsshell("--json", "-c", "plugins")
    loaded = [p["name"] for p in json.loads(d.out)["plugins"] if p["status"] == "loaded"]
    if "net" not in loaded:
        pytest.fail(f"the net plugin is not loaded (run scripts/setup.sh): {d}")


def test_iproute2_sees_what_net_made(nsshell):
    """Interop: `ip` run inside the namespace agrees with the net commands."""
    d = _ok(nsshell("-c", "new net as a --no-join; new net as b --no-join; "
                          "net veth a:eth0 b:peer0 --up; net addr a eth0 10.81.0.1/24; "
                          "net bridge a br9 --up; net veth a:p1 b:q1; net bridge a br9 p1; "
                          "net route a 10.82.0.0/16 via 10.81.0.254; "
                          "join a; run ip -o link show; run ip -o addr show dev eth0; "
                          "run ip route show 10.82.0.0/16"))
    out = d.out
    eth0 = out.split("eth0@if")[1].splitlines()[0]
    flags = eth0[eth0.index("<") + 1:eth0.index(">")].split(",")
    assert "UP" in flags, eth0   # admin up (operstate follows asynchronously: not checked)
    assert "master br9" in [line for line in out.splitlines() if ": p1@" in line][0]
    assert "inet 10.81.0.1/24" in out
    assert "10.82.0.0/16 via 10.81.0.254 dev eth0" in out


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "bridge-lab.nss")


def test_example_bridge_lab(nsshell):
    d = _ok(nsshell(EXAMPLE))
    assert d.out.count(" 1 received") == 3, d.out


def test_example_bridge_lab_rootless(rootless):
    d = rootless(EXAMPLE)
    assert d.rc == 0, d
    assert d.out.count(" 1 received") == 3, d.out


# -- ip link / ip addr / ip route breadth (issue 16), checked against `ip -j` --------------

def _ip_json(out: str) -> list:
    return [json.loads(line) for line in out.splitlines() if line.startswith("[")]


def test_set_mtu_mac_delete_addresses_and_routes_as_ip_shows(nsshell):
    d = nsshell("-c", "new net as pa --no-join; new net as pb --no-join; net veth pa:v0 pb:v0; "
                "net set pa v0 mtu 1400 address 02:00:00:00:00:0A; "
                "net addr pa v0 10.9.0.1/24; net addr pa v0 10.9.0.2/24; "
                "net addr pa v0 10.9.0.2/24 --delete; net up pa lo v0; "
                "net route pa 10.8.0.0/16 dev v0 src 10.9.0.1 metric 7; "
                "net route pa 10.7.0.0/16 dev v0; net route pa 10.7.0.0/16 --delete; "
                "join net pa; run ip -j link show v0; run ip -j addr show v0; run ip -j -4 route")
    assert d.rc == 0, d
    link, addr, routes = _ip_json(d.out)
    assert link[0]["mtu"] == 1400 and link[0]["address"] == "02:00:00:00:00:0a"
    assert [a["local"] for a in addr[0]["addr_info"] if a["family"] == "inet"] == ["10.9.0.1"]
    by_dst = {r["dst"]: r for r in routes}
    assert "10.7.0.0/16" not in by_dst
    assert by_dst["10.8.0.0/16"]["prefsrc"] == "10.9.0.1" and by_dst["10.8.0.0/16"]["metric"] == 7
    assert by_dst["10.8.0.0/16"]["dev"] == "v0"


def test_move_a_link_and_the_peer_namespace_in_ls(nsshell):
    d = nsshell("-c", "new net as pa --no-join; new net as pb --no-join; new net as pc --no-join; "
                "net veth pa:m0 pb:m1; net move pa m0 to pc; "
                "join net pc; run ip -j link show m0; join net pa; run ip -j link")
    assert d.rc == 0, d
    moved, left = _ip_json(d.out)
    assert moved[0]["ifname"] == "m0"
    assert [l["ifname"] for l in left] == ["lo"]


def test_set_and_move_refuse_the_host_and_bad_input(nsshell):
    d = nsshell("-c", "net set host lo mtu 1500")
    assert d.rc != 0 and "--host" in d.err and len(d.err.splitlines()) == 1, d
    d = nsshell("-c", "new net as pa --no-join; net veth pa:m0 pa:m1; net move pa m0 to host")
    assert d.rc != 0 and "--host" in d.err, d
    for line, what in (("net set pa m0 address zz", "not a MAC address"),
                       ("net set pa m0", "nothing to set"),
                       ("net set pa nosuch mtu 1400", "no such device"),
                       ("net addr pa m0 10.1.1.1/24 --delete", "removing 10.1.1.1/24")):
        d = nsshell("-c", "new net as pa --no-join; net veth pa:m0 pa:m1; " + line)
        assert d.rc != 0 and what in d.err and len(d.err.strip().splitlines()) == 1, (line, d)


def test_ls_names_a_veth_peers_namespace(nsshell):
    import subprocess
    name = f"parity_ls{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        d = nsshell("-c", f"new net as pa --no-join; new net as pb --no-join; net veth pa:v0 pb:v0; "
                    f"net veth pa:w0 {name}:w0; net ls pa --json; join net pa; run ip -j link")
        assert d.rc == 0, d
        view = next(doc for doc in json_docs(d.out) if isinstance(doc, dict) and "links" in doc)
        ours = {link["name"]: link for link in view["links"]}
        assert ours["v0"]["peer_ns"] == "pb" and ours["w0"]["peer_ns"] == name
        assert ours["lo"]["peer_ns"] is None
        theirs = {l["ifname"]: l for l in _ip_json(d.out)[-1]}
        for ifname in ("v0", "w0"):
            assert ours[ifname]["peer_netnsid"] == theirs[ifname]["link_netnsid"]
    finally:
        subprocess.run(["ip", "netns", "del", name])


@pytest.mark.parametrize("kind,line,expect", [
    ("macvlan", "net link pa x0 macvlan link v0 mode private --up", {"info_kind": "macvlan", "mode": "private"}),
    ("ipvlan", "net link pa x0 ipvlan link v0 mode l2", {"info_kind": "ipvlan", "mode": "l2"}),
    ("vlan", "net link pa x0 vlan link v0 id 5", {"info_kind": "vlan", "id": 5}),
    ("dummy", "net link pa x0 dummy", {"info_kind": "dummy"}),
])
def test_link_kinds_as_ip_shows_them(nsshell, kind, line, expect):
    d = nsshell("-c", f"new net as pa --no-join; net veth pa:v0 pa:v1; {line}; join net pa; "
                "run ip -j -d link show x0")
    if d.rc != 0 and "Unknown device type" in d.err:
        assert "the kernel lacks" in d.err and len(d.err.strip().splitlines()) == 1, d
        pytest.skip(f"this kernel has no {kind} links")
    assert d.rc == 0, d
    (link,) = _ip_json(d.out)[-1]
    info = link["linkinfo"]
    assert info["info_kind"] == expect.pop("info_kind")
    for k, v in expect.items():
        assert info["info_data"][k] == v
    if kind != "dummy":
        assert link["link"] == "v0"


def test_link_bad_input_is_one_line(nsshell):
    for line, what in (("net link pa m0 macvlan", "needs `link IF`"),
                       ("net link pa m0 vlan link v0", "`id N`"),
                       ("net link pa m0 macvlan link v0 mode l3", "mode 'l3'"),
                       ("net link pa m0 bogus", "bogus"),
                       ("net link host m0 macvlan link lo", "--host")):
        d = nsshell("-c", "new net as pa --no-join; net veth pa:v0 pa:v1; " + line)
        assert d.rc != 0 and what in d.err and len(d.err.strip().splitlines()) == 1, (line, d)
