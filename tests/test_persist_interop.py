"""Round trips with the tools people already use, both ways: namespaces persisted by nsshell
used by `ip netns` and `nsenter`; namespaces made by `ip netns add` and `unshare --TYPE=FILE`
joined and shown by nsshell."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import run_nsshell
from test_persist import Store, handles_json, nsfs_under, scrub_root, store  # noqa: F401

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (shutil.which("ip") and shutil.which("nsenter") and shutil.which("unshare")),
                       reason="needs iproute2 and util-linux"),
]


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def test_nsshell_persisted_used_by_ip_netns_and_nsenter(store, prefix):
    name = f"{prefix}a"
    store.netns.append(name)
    made = store.run(f"new user+net+uts as {name} --no-join", f"map root --ns {name}",
                     f"persist {name}")
    assert made.rc == 0, made
    net_ino = os.stat(store.path(name, "net")).st_ino
    user_ino = os.stat(store.path(name, "user")).st_ino

    listed = sh("ip", "netns", "list")
    assert name in listed.stdout.split(), listed
    inside = sh("ip", "netns", "exec", name, "readlink", "/proc/self/ns/net")
    assert inside.returncode == 0 and inside.stdout.strip() == f"net:[{net_ino}]", inside
    links = sh("ip", "netns", "exec", name, "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]

    entered = sh("nsenter", f"--net={store.path(name, 'net')}", f"--user={store.path(name, 'user')}",
                 "sh", "-c", "readlink /proc/self/ns/net /proc/self/ns/user; id -u")
    assert entered.returncode == 0, entered
    assert entered.stdout.split() == [f"net:[{net_ino}]", f"user:[{user_ino}]", "0"]

    gone = store.run(f"unpersist {name}")
    assert gone.rc == 0, gone
    assert name not in sh("ip", "netns", "list").stdout.split()
    assert nsfs_under(store.root) == [] and not os.path.lexists(f"/run/netns/{name}")


def test_ip_netns_add_joined_and_shown_by_nsshell(store, prefix):
    name = f"{prefix}b"
    store.netns.append(name)
    assert sh("ip", "netns", "add", name).returncode == 0
    try:
        want = sh("ip", "netns", "exec", name, "readlink", "/proc/self/ns/net").stdout.strip()
        rows = [r for r in handles_json(store) if r["name"] == name]
        assert rows and rows[0]["type"] == "net" and rows[0]["ns"] == want
        assert rows[0]["origin"] == "ip netns" and rows[0]["persisted"] == f"/run/netns/{name}"
        used = store.run(f"join {name}", "run readlink /proc/self/ns/net", "ctx")
        assert used.rc == 0 and want in used.out, used
        # `open` by path works as well
        opened = store.run(f"open /run/netns/{name} as o", "handles")
        assert opened.rc == 0 and want in opened.out
        # nsshell did not make it, so it does not remove it (issue 10.6): refused, with ip's way
        dropped = store.run(f"unpersist {name}")
        assert dropped.rc == 1 and f"`ip netns del {name}`" in dropped.err, dropped
        assert "Traceback" not in dropped.err and len(dropped.err.splitlines()) == 1
        assert os.path.exists(f"/run/netns/{name}")
        assert name in sh("ip", "netns", "list").stdout.split()
    finally:
        sh("ip", "netns", "del", name)


@pytest.fixture
def private_dir(bound_dir):
    """A tmp directory that is a private mount, as unshare --TYPE=FILE needs."""
    return bound_dir("private")


def test_unshare_net_file_joined_by_nsshell(private_dir):
    f = os.path.join(private_dir, "net")
    open(f, "w").close()
    made = sh("unshare", f"--net={f}", "true")
    assert made.returncode == 0, made
    want = f"net:[{os.stat(f).st_ino}]"
    done = run_nsshell("-c", f"open {f} as u; handles; join u; run readlink /proc/self/ns/net; "
                             f"join net {f}; run readlink /proc/self/ns/net")
    assert done.rc == 0, done
    assert done.out.count(want) >= 3, done
    assert sh("umount", f).returncode == 0
    assert nsfs_under(private_dir) == []


def test_unshare_user_and_mount_files_shown_by_nsshell(private_dir):
    user, mnt = os.path.join(private_dir, "user"), os.path.join(private_dir, "mnt")
    open(user, "w").close()
    open(mnt, "w").close()
    # util-linux 2.38 binds a lone --user=FILE from inside the new user namespace (EPERM);
    # with --mount=FILE it forks a helper that binds both from outside.
    made = sh("unshare", f"--user={user}", f"--mount={mnt}", "true")
    assert made.returncode == 0, made
    u_ino, m_ino = os.stat(user).st_ino, os.stat(mnt).st_ino
    done = run_nsshell("--json", "-c", f"open {user} as u; open {mnt} as m; handles")
    assert done.rc == 0, done
    from test_persist import last_json
    rows = {r["name"]: r for r in last_json(done.out)["handles"]}
    assert rows["u"]["ns"] == f"user:[{u_ino}]"
    assert rows["m"]["ns"] == f"mnt:[{m_ino}]" and rows["m"]["owner"] == f"user:[{u_ino}]"
    # nsenter and nsshell agree on the same files
    ent = sh("nsenter", "--preserve-credentials", f"--user={user}", "readlink", "/proc/self/ns/user")
    assert ent.stdout.strip() == f"user:[{u_ino}]"
    joined = run_nsshell("-c", f"join {user}; run readlink /proc/self/ns/user")
    assert joined.rc == 0 and f"user:[{u_ino}]" in joined.out, joined
    for f in (user, mnt):
        assert sh("umount", f).returncode == 0
    assert nsfs_under(private_dir) == []


def test_nsshell_persisted_set_rejoined_by_unshare_style_path(store, prefix):
    """A persisted mount namespace (made from outside it) is entered by nsenter --mount."""
    name = f"{prefix}m"
    made = store.run(f"new mnt+uts as {name} --no-join", f"persist {name}")
    assert made.rc == 0, made
    m_ino = os.stat(store.path(name, "mnt")).st_ino
    ent = sh("nsenter", f"--mount={store.path(name, 'mnt')}", f"--uts={store.path(name, 'uts')}",
             "readlink", "/proc/self/ns/mnt")
    assert ent.returncode == 0 and ent.stdout.strip() == f"mnt:[{m_ino}]", ent
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == []
