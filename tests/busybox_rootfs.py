"""For the mount and container tests: a busybox root filesystem built by
scripts/build-rootfs.sh (in a directory every uid can read: uid 65534 uses it as an
overlay's lower layer; removed at the end), and the host's mount table."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rootfs():
    if not os.path.exists("/bin/busybox") and not os.path.exists("/usr/bin/busybox"):
        pytest.skip("busybox-static is not installed (sh scripts/setup.sh installs it)")
    base = tempfile.mkdtemp(prefix="nsshell-mnttest-rootfs-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        path = os.path.join(base, "rootfs")
        # Owned by uid 65534, the rootless tests' user: root in its container.
        owner = ["--owner", "65534"] if os.geteuid() == 0 else []
        p = subprocess.run(["sh", os.path.join(ROOT, "scripts", "build-rootfs.sh")] + owner
                           + [path], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == path
        yield path
    finally:
        shutil.rmtree(base, ignore_errors=True)


def host_mounts() -> list[str]:
    """The host's mount table, less what other tests running at the same time may add
    (nsfs bind mounts of persisted namespaces, /run/netns, /run/nsshell, other tests'
    scratch directories under /tmp); these tests' own directories are /tmp/nsshell-mnttest-*."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            target = fields[4]
            if fstype == "nsfs" or target.startswith(("/run/netns/", "/run/nsshell")):
                continue
            if target.startswith("/tmp/") and not target.startswith("/tmp/nsshell-mnttest-"):
                continue
            out.append(line)
    return out
