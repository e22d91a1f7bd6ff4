"""`show`, `pids`, `identify`, and the state-reader extension point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import json_docs




def _last(nsshell, script):
    done = nsshell("--json", "-c", script)
    assert done.rc == 0, done
    return json_docs(done.out)[-1]


def test_show_set_ids_owner_parent_state(nsshell):
    res = _last(nsshell, "new user+net+uts as box; map root; hostname boxy; "
                         "run ip link set lo up; show box")
    assert res["ref"] == "box"
    by = {e["type"]: e for e in res["namespaces"]}
    assert list(by) == ["user", "net", "uts"]
    user = by["user"]
    host_user = f"user:[{os.stat('/proc/self/ns/user').st_ino}]"
    assert user["parent"] == host_user and user["owner"] == host_user
    assert user["owner_uid"] == 0
    assert user["state"]["uid_map"] == ["0 0 1"] and user["state"]["setgroups"] in ("allow", "deny")
    for t in ("net", "uts"):
        assert by[t]["owner"] == user["label"]
        assert by[t]["held"] == ["session"] and "box" in by[t]["names"]
        assert by[t]["nprocs"] == 0 and by[t]["errors"] == {}
    assert by["uts"]["state"]["hostname"] == "boxy"
    lo = by["net"]["state"]["links"]["lo"]
    assert lo["up"] is True and lo["mtu"] == 65536
    assert "lo 127.0.0.1/8" in by["net"]["state"]["addresses"]


def test_show_every_type_reads_state(nsshell):
    res = _last(nsshell, "new user+mnt+pid+net+uts+ipc+cgroup+time --monotonic 7 as box --no-join; "
                         "show box")
    by = {e["type"]: e for e in res["namespaces"]}
    assert set(by) == {"user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time"}
    for e in by.values():
        assert e["errors"] == {}, e
    assert by["mnt"]["state"]["mounts"] and by["mnt"]["state"]["root"].endswith(")")
    assert by["pid"]["state"]["processes"] == {"1": "nsshell-init"}
    assert by["pid"]["parent"] == f"pid:[{os.stat('/proc/self/ns/pid').st_ino}]"
    assert by["ipc"]["state"] == {"sysv": {}, "mqueues": {}}
    assert by["time"]["state"]["offsets"]["monotonic"] == "7"
    assert by["cgroup"]["state"]["root"] != "?"


def test_show_plain_and_types(nsshell):
    done = nsshell("-c", "new net+uts as box --no-join; show box uts")
    assert done.rc == 0, done
    assert "hostname:" in done.out and "links:" not in done.out
    assert done.out.splitlines()[1].startswith("uts:[")


def test_show_does_not_change_the_namespace(nsshell):
    done = nsshell("--json", "-c", "new net+ipc as box --no-join; show box; show box")
    first, second = json_docs(done.out)[-2:]
    strip = lambda d: [e["state"] for e in d["namespaces"]]  # noqa: E731
    assert strip(first) == strip(second)
    assert set(first["namespaces"][0]["state"]["links"]) == {"lo"}
    with open("/proc/self/mountinfo") as f:
        assert " mqueue " not in f.read() or os.path.ismount("/dev/mqueue")


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--net", "sleep", "300"],
                         start_new_session=True)
    leaf = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and leaf is None:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.getpgid(int(name)) == p.pid:
                        with open(f"/proc/{name}/comm") as f:
                            if f.read().strip() == "sleep":
                                leaf = int(name)
                except OSError:
                    continue
        time.sleep(0.02)
    assert leaf
    yield leaf
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=10)


def test_pids(nsshell, sleeper):
    res = _last(nsshell, f"pids pid:{sleeper} pid")
    assert [(r["pid"], r["nspid"]) for r in res["processes"]] == [(sleeper, 1)]
    assert res["processes"][0]["command"] == "sleep 300"
    net = os.stat(f"/proc/{sleeper}/ns/net").st_ino
    res = _last(nsshell, f"pids net:[{net}]")
    assert {r["pid"] for r in res["processes"]} >= {sleeper}
    assert all(r["nspid"] is None for r in res["processes"])


def test_identify(shell, sleeper):
    done = shell(f"open pid:{sleeper} net as web")
    assert done.rc == 0, done
    shell.engine.renderer.mode = "json"
    done = shell(f"identify {sleeper}")
    assert done.rc == 0, done
    res = json.loads(done.out)
    assert res["pid"] == sleeper
    by = {e["type"]: e for e in res["namespaces"]}
    assert by["net"]["names"] == ["web"] and by["net"]["host"] is False
    assert by["pid"]["host"] is False and by["pid"]["names"] == []
    assert by["uts"]["host"] is True and by["mnt"]["host"] is True


def test_identify_gone_process(nsshell):
    done = nsshell("-c", "identify 4194303")
    assert done.rc == 2 and "no such process" in done.err


def test_state_registry_is_an_extension_point(shell):
    from nsshell.plugin import register_state, unregister_state

    def read_ip_forward(ctx):
        return ctx.read("sys/net/ipv4/ip_forward").strip()

    register_state("net", "ip_forward", read_ip_forward,
                   differ=lambda a, b: [] if a == b else [
                       {"op": "~", "key": None, "a": a, "b": b, "text": f"forwarding {a}->{b}"}])
    try:
        shell.engine.renderer.mode = "json"
        assert shell("new net as a --no-join").rc == 0
        assert shell("new net as b").rc == 0
        assert shell("run sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'").rc == 0
        done = shell("show b")
        assert json.loads(done.out)["namespaces"][0]["state"]["ip_forward"] == "1"
        done = shell("diff a b net")
        r = json.loads(done.out)["types"][0]
        assert r["changes"]["ip_forward"][0]["text"] == "forwarding 0->1"
    finally:
        unregister_state("net", "ip_forward")


def test_show_rootless(rootless):
    done = rootless("--json", "-c", "new user+net+uts+ipc as u; map root; hostname rl; show u")
    assert done.rc == 0, done
    by = {e["type"]: e for e in json_docs(done.out)[-1]["namespaces"]}
    assert by["uts"]["state"]["hostname"] == "rl"
    assert by["user"]["owner_uid"] == 65534
    assert by["user"]["state"]["uid_map"] == ["0 65534 1"]
    assert by["net"]["errors"] == {} and "lo" in by["net"]["state"]["links"]
    assert by["ipc"]["errors"] == {}


def test_show_net_reads_links_addresses_and_routes_of_both_families(nsshell):
    res = _last(nsshell, "new net as lab --no-join; net veth lab:x lab:y --up; net up lab lo y; "
                         "net addr lab x 10.1.1.1/24; net addr lab x fd10::1/64 --nodad; show lab net")
    (net,) = res["namespaces"]
    state = net["state"]
    assert set(state["links"]) == {"lo", "x", "y"} and state["links"]["x"]["kind"] == "veth"
    assert {"x 10.1.1.1/24", "x fd10::1/64", "lo 127.0.0.1/8", "lo ::1/128"} <= set(state["addresses"])
    assert {"10.1.1.0/24 dev x", "fd10::/64 dev x", "fe80::/64 dev x"} <= set(state["routes"])
