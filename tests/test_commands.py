"""Every core command of the workbench, on the real kernel, as root."""

import os
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import json_docs


def nsid(path):
    return os.stat(path).st_ino


@pytest.fixture
def sleeper():
    """A process in its own net+uts namespaces (made by unshare), killed afterwards."""
    p = subprocess.Popen(["unshare", "--net", "--uts", "sleep", "60"])
    deadline = time.monotonic() + 5
    while nsid(f"/proc/{p.pid}/ns/net") == nsid("/proc/self/ns/net"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield p
    p.kill()
    p.wait()


def test_new_names_sets_and_joins(nsshell):
    d = nsshell("--json", "-c", "new net+uts; new ipc as box --no-join; ctx; handles")
    assert d.rc == 0, d
    docs = json_docs(d.out)
    ctx = {r["type"]: r for r in docs[2]["context"]}
    assert ctx["net"]["name"] == "ns1" and ctx["uts"]["name"] == "ns1"
    assert ctx["ipc"]["name"] == "host"  # --no-join
    # only what this session made: persisted sets and ip netns names on the host are listed too
    names = {(r["name"], r["type"]) for r in docs[3]["handles"] if r["origin"] == "new"}
    assert names == {("ns1", "net"), ("ns1", "uts"), ("box", "ipc")}




def test_join_leave_and_type_ref(nsshell):
    d = nsshell("-c", "new net+uts as a; hostname aa; leave; run hostname; "
                      "join uts a; run hostname; run readlink /proc/self/ns/net; leave uts; run hostname")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    host = os.uname().nodename
    assert host in lines[2]
    assert "aa" in lines[4]
    assert lines[5] == os.readlink("/proc/self/ns/net")  # net was left, only uts joined
    assert lines[-1] == host


def test_open_join_pid_and_path(nsshell, sleeper):
    net = os.readlink(f"/proc/{sleeper.pid}/ns/net")
    d = nsshell("-c", f"open pid:{sleeper.pid} net+uts as web; join web; run readlink /proc/self/ns/net; "
                      f"leave; join net /proc/{sleeper.pid}/ns/net; run readlink /proc/self/ns/net; "
                      f"leave; join {sleeper.pid}; run readlink /proc/self/ns/uts; handles")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert lines.count(net) == 2
    assert os.readlink(f"/proc/{sleeper.pid}/ns/uts") in d.out
    assert "web" in d.out and "pid:" in d.out


def test_join_by_inode(nsshell, sleeper):
    net = os.readlink(f"/proc/{sleeper.pid}/ns/net")
    d = nsshell("-c", f"join {net}; run readlink /proc/self/ns/net")
    assert d.rc == 0, d
    assert d.out.strip().splitlines()[-1] == net


def test_name_and_close(nsshell):
    d = nsshell("-c", "new uts; name ns1 box; hostname named; handles; close box; handles; ctx")
    assert d.rc == 0, d
    assert "ns1 is now box" in d.out
    after_close = d.out.split("closed box")[1]
    assert "box" not in after_close.split("TYPE")[0]
    assert "uts     host" in after_close


def test_close_ends_the_namespace(shell):
    d = shell("new net as gone")
    assert d.rc == 0, d
    h = shell.session.sets["gone"].handles["net"]
    path = f"/proc/self/fd/{h.fd}"
    ino = os.stat(path).st_ino
    assert shell("close gone").rc == 0
    assert h.closed
    assert not any(_proc_holds(ino))


def _proc_holds(ino):
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if st.st_ino == ino:
            yield fd


def test_map_ranges_and_files_owned_on_host(nsshell):
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        f = os.path.join(d, "made")
        r = nsshell("-c", f"new user; map 0 1000 1; run touch {f}")
        assert r.rc == 0, r
        st = os.stat(f)
        assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_map_uid_and_gid_separately(nsshell):
    r = nsshell("-c", "new user; map -u 0 1000 1 1 200000 100; map -g 0 2000 1; "
                      "run cat /proc/self/uid_map /proc/self/gid_map")
    assert r.rc == 0, r
    rows = [line.split() for line in r.out.splitlines()[-3:]]
    assert rows == [["0", "1000", "1"], ["1", "200000", "100"], ["0", "2000", "1"]]


def test_setgroups_deny(nsshell):
    r = nsshell("-c", "new user; setgroups deny; map root; run cat /proc/self/setgroups")
    assert r.rc == 0, r
    assert r.out.splitlines()[-1] == "deny"


def test_nested_user_namespace_map(nsshell):
    r = nsshell("-c", "new user as outer; map 0 0 1000; new user as inner; map 0 10 1; "
                      "run cat /proc/self/uid_map; run id -u")
    assert r.rc == 0, r
    assert r.out.splitlines()[-2].split() == ["0", "10", "1"]
    assert r.out.splitlines()[-1] == "0"


def test_time_namespace_offsets(nsshell):
    r = nsshell("-c", "new time --boottime 86400 --monotonic 3600; run cat /proc/uptime; "
                      "run python3 -c 'import time; print(time.monotonic())'")
    assert r.rc == 0, r
    uptime = float(r.out.splitlines()[1].split()[0])
    mono = float(r.out.splitlines()[2])
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    assert uptime >= host_uptime + 86400 - 5
    assert mono >= time.monotonic() + 3600 - 5


def test_cgroup_namespace_root(nsshell):
    r = nsshell("-c", "new cgroup; run cat /proc/self/cgroup")
    assert r.rc == 0, r
    lines = r.out.splitlines()[1:]
    assert lines and all(x.endswith(":/") for x in lines), lines


def test_new_all_types(nsshell):
    r = nsshell("-c", "new all; map root; run id -u; ctx")
    assert r.rc == 0, r
    assert "host" not in r.out.split("TYPE")[1]


def test_new_inside_context_is_owned_by_the_context_user(shell):
    assert shell("new user as u; map root; new net+uts as inner").rc == 0
    from nsshell.kernel import nsfs
    inner = shell.session.sets["inner"].handles["net"]
    assert nsfs.owner_nsid(inner.fd) == shell.session.sets["u"].handles["user"].nsid


def test_mount_namespace_is_made_private(nsshell):
    r = nsshell("-c", "new mnt; run findmnt -no PROPAGATION /")
    assert r.rc == 0, r
    assert r.out.splitlines()[-1].strip() == "private"
    r = nsshell("-c", "new mnt --propagation unchanged; run findmnt -no PROPAGATION /")
    host = subprocess.run(["findmnt", "-no", "PROPAGATION", "/"], capture_output=True,
                          text=True).stdout.strip()
    assert r.out.splitlines()[-1].strip() == host


def test_hostname_refuses_the_host_uts(nsshell):
    r = nsshell("-c", "hostname whatever")
    assert r.rc == 1
    assert "refusing to rename the host" in r.err
    assert os.uname().nodename != "whatever"


def test_echo_set_source_exit(nsshell, tmp_path):
    lib = tmp_path / "lib.nss"
    lib.write_text("echo from source $1\nnew uts as s\nhostname src\n")
    r = nsshell("-c", f"set errexit; echo a b; source {lib}; run hostname; set errexit off; set; exit 3")
    assert r.rc == 3, r
    assert "a b" in r.out and "from source" in r.out and "src" in r.out
    assert "errexit" in r.out and "off" in r.out


def test_help(nsshell):
    r = nsshell("-c", "help")
    assert r.rc == 0 and "join" in r.out and "map root" in r.out
    r = nsshell("-c", "help new")
    assert r.rc == 0 and "new TYPES [as NAME]" in r.out and "new user+mnt" in r.out


def test_work_after_threads_started(shell, capfd):
    """unshare(CLONE_NEWUSER) is EINVAL in a threaded process: helpers fork, so it works."""
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert threading.active_count() > 1
        d = shell("new user+mnt; map root; run id -u")
        assert d.rc == 0, d
        assert capfd.readouterr().out.strip().endswith("0")
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_killed_pid_init_gives_clear_error_and_shell_lives(shell):
    assert shell("new pid as p").rc == 0
    holder = shell.session.sets["p"].handles["pid"].holder
    os.kill(holder.pid, 9)
    deadline = time.monotonic() + 5
    while holder.alive():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    d = shell("run true")
    assert d.rc == 1
    assert "init process has exited" in d.err
    assert d.err.count("\n") == 1
    assert shell("ctx").rc == 0
    d = shell("handles")
    assert "dead" in d.out
    assert shell("close p").rc == 0
    assert shell("run true").rc == 0


def test_script_file_shebang_and_args(tmp_path):
    from conftest import _env, nsshell_argv
    script = tmp_path / "s.nss"
    script.write_text("#!/usr/bin/env nsshell\nnew uts\nhostname $1\nrun hostname\necho args $#\n")
    script.chmod(0o755)
    env = _env()
    env["PATH"] = os.path.dirname(nsshell_argv()[0]) + ":" + env["PATH"]
    p = subprocess.run([str(script), "scripted", "x"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p
    assert p.stdout.splitlines()[1:] == ["scripted", "args 2"]


def test_piped_stdin(nsshell):
    d = nsshell(input="new uts\nhostname piped\nrun hostname\n")
    assert d.rc == 0, d
    assert d.out.splitlines()[-1] == "piped"
    assert "\x1b" not in d.out


def test_bang_is_run(nsshell):
    d = nsshell("-c", "new uts; hostname bang; !hostname; ! hostname")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["bang", "bang"]


def test_the_shell_process_never_leaves_its_namespaces(shell, capfd, sleeper):
    """Every setns()/unshare() happens in a forked helper: the shell's own stay put."""
    def own():
        return {t: os.readlink(f"/proc/self/ns/{t}") for t in
                ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time",
                 "pid_for_children", "time_for_children")}
    before = own()
    for line in ("new user+mnt+pid+net+uts+ipc+cgroup+time as a", "map root", "hostname inner",
                 "run true", "new net as b", "join net b", "ctx", "show a", "leave",
                 f"join pid:{sleeper.pid}", "run true", "leave", "close a", "close b"):
        d = shell(line)
        assert d.rc == 0, (line, d)
    assert own() == before
