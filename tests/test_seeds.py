"""The seed scenarios of the workbench-core issue, on the real kernel, as root."""

import os
import socket
import subprocess
import tempfile


def test_uts_hostname_is_isolated_from_the_host(nsshell):
    before = socket.gethostname()
    d = nsshell("-c", "new uts; hostname box; run hostname; hostname")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["box", "box"]
    assert socket.gethostname() == before


def test_pid_namespace_has_init_as_pid1_and_reaps_orphans(nsshell):
    script = (
        "new pid+mnt --mount-proc\n"
        "run cat /proc/1/comm\n"
        "run sh -c 'echo $$'\n"
        # an orphan: its parent exits at once, so init (pid 1) must adopt and reap it
        "run sh -c 'sleep 0.2 & echo orphan $!'\n"
        "run sh -c 'sleep 0.5; ps -o pid=,ppid=,stat=,comm= -e'\n"
    )
    d = nsshell("-c", script)
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert "nsshell-init" in lines[1]
    assert int(lines[2]) > 1
    ps = [line.split() for line in lines[4:]]
    pids = {int(p[0]) for p in ps}
    assert 1 in pids
    assert all(p[2][0] != "Z" for p in ps), f"zombies left: {ps}"
    orphan = int(lines[3].split()[1])
    assert orphan not in pids  # reaped by init, not a zombie


def test_mount_proc_is_in_place_when_new_returns(nsshell):
    # The init mounts the new proc while `new` still opens the set's fds: both
    # must be done, in that order, before the next command (a race CI once hit).
    script = "".join("new pid+mnt as p --mount-proc\nrun cat /proc/1/comm\nleave\nclose p\n" for _ in range(15))
    d = nsshell("-c", script)
    assert d.rc == 0, d
    assert d.out.splitlines().count("nsshell-init") == 15


def test_new_network_namespace_holds_only_lo_down(nsshell):
    d = nsshell("-c", "new net; run ip -o link")
    assert d.rc == 0, d
    links = d.out.strip().splitlines()[1:]  # after `new`'s line naming the set
    assert len(links) == 1
    assert ": lo:" in links[0] and "state DOWN" in links[0]


def test_user_namespace_overflow_uid_then_map_root(nsshell):
    d = nsshell("-c", "new user; run id -u; map root; run id -u")
    assert d.rc == 0, d
    out = d.out.splitlines()
    assert out[1] == "65534"
    assert out[-1] == "0"


def test_tmpfs_in_new_mount_namespace_is_invisible_to_host(nsshell):
    with tempfile.TemporaryDirectory() as target:
        d = nsshell("-c", f"new mnt; run mount -t tmpfs nsshelltest {target}; "
                          f"run grep -c nsshelltest /proc/self/mountinfo")
        assert d.rc == 0, d
        assert d.out.splitlines()[-1] == "1"
        with open("/proc/self/mountinfo") as f:
            assert "nsshelltest" not in f.read()
        assert not os.path.ismount(target)


def test_sysv_queue_in_new_ipc_namespace_is_invisible_to_host(nsshell):
    before = subprocess.run(["ipcs", "-q"], capture_output=True, text=True).stdout
    d = nsshell("-c", "new ipc; run ipcmk -Q; run ipcs -q")
    assert d.rc == 0, d
    assert "Message queue id:" in d.out
    inside = d.out.split("Message queue id:")[1]
    assert "0x" in inside  # the queue is listed inside
    after = subprocess.run(["ipcs", "-q"], capture_output=True, text=True).stdout
    assert after == before


def test_the_pid_init_looks_like_one_in_ps(nsshell):
    # Its command line, not only its comm: ps -ef / ps aux inside show args.
    d = nsshell("-c", "new pid+mnt --mount-proc; run ps -o pid=,args= -p 1")
    assert d.rc == 0, d
    assert d.out.splitlines()[-1].split() == ["1", "nsshell-init"]
