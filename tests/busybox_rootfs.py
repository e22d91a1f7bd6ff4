"""A busybox root filesystem built by scripts/build-rootfs.sh, for the mount and container
tests: in a directory every uid can read (uid 65534 uses it as an overlay's lower layer),
removed at the end."""

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
    base = tempfile.mkdtemp(prefix="nsshell-rootfs-", dir="/tmp")
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
