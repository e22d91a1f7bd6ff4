"""`run`: statuses, signals, inherited fds, environment and working directory."""

import os

from conftest import run_nsshell

LIST_FDS = "run /usr/bin/python3 -c 'import os; print(sorted(int(f) for f in os.listdir(\"/proc/self/fd\")))'"


def test_exit_status_is_the_programs(nsshell):
    assert nsshell("-c", "run sh -c 'exit 42'").rc == 42
    assert nsshell("-c", "run true").rc == 0


def test_killed_by_signal_is_128_plus_n(nsshell):
    assert nsshell("-c", "run sh -c 'kill -9 $$'").rc == 137
    assert nsshell("-c", "run sh -c 'kill -TERM $$'").rc == 143


def test_signal_status_through_a_pid_namespace(nsshell):
    # with a PID namespace the program is a grandchild; its status must come through
    assert nsshell("-c", "new pid; run sh -c 'kill -9 $$'").rc == 137
    assert nsshell("-c", "new pid; run sh -c 'exit 5'").rc == 5


def test_program_inherits_only_0_1_2(nsshell):
    # the shell holds many fds (handles, lifelines, pidfds): none may leak
    d = nsshell("-c", f"new user+mnt+pid+net+uts+ipc+cgroup+time; new net as b --no-join; {LIST_FDS}")
    assert d.rc == 0, d
    fds = eval(d.out.splitlines()[-1])
    assert fds == [0, 1, 2, 3]  # 3 is listdir's own


def test_program_inherits_only_0_1_2_in_process(shell, capfd):
    assert shell("new net+pid as a; new uts as b --no-join").rc == 0
    d = shell(LIST_FDS)
    assert d.rc == 0, d
    assert capfd.readouterr().out.strip().splitlines()[-1] == "[0, 1, 2, 3]"


def test_environment_and_cwd(nsshell, tmp_path):
    d = nsshell("-c", "new net; run sh -c 'echo $NSSHELL_PROBE; pwd'", env={"NSSHELL_PROBE": "v1"},
                cwd=str(tmp_path))
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["v1", str(tmp_path)]


def test_cwd_falls_back_when_missing_in_mount_namespace(nsshell, tmp_path):
    # the directory is hidden by a tmpfs mounted over its parent inside the new mount namespace
    inner = tmp_path / "inner"
    inner.mkdir()
    d = nsshell("-c", f"new mnt; run mount -t tmpfs t {tmp_path}; run pwd", cwd=str(inner),
                env={"HOME": "/"})
    assert d.rc == 0, d
    assert d.out.splitlines()[-1] == "/"


def test_sh_runs_shell_in_context(nsshell):
    d = nsshell("-c", "new uts; hostname inner; sh", input="hostname; exit 3\n",
                env={"SHELL": "/bin/sh"})
    assert d.rc == 3, d
    assert d.out.splitlines()[-1] == "inner"


def test_run_in_every_type_at_once(nsshell):
    d = nsshell("-c", "new all; map root; run sh -c 'id -u; hostname -F /dev/null 2>/dev/null; echo $$'")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:][0] == "0"


def test_joined_process_namespaces_match(nsshell):
    d = nsshell("-c", "new user+net+uts+ipc+mnt+pid+cgroup+time as all7; "
                      "run sh -c 'for t in user net uts ipc mnt pid cgroup time; do readlink /proc/self/ns/$t; done'; "
                      "handles")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    seen = lines[1:9]
    for ns in seen:
        assert ns in d.out.split("NAME")[1], ns
    assert all(ns != os.readlink(f"/proc/self/ns/{ns.split(':')[0]}") for ns in seen)


def test_set_root_off_keeps_the_callers_ids(nsshell):
    d = nsshell("-c", "new user; map 0 0 1 1000 1000 1; run id -u; set root off; run id -u")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["0", "0"]
    d = nsshell("-c", "new user; map 0 1000 1; set root off; run id -u")
    assert d.out.splitlines()[-1] == "65534"  # root of the host is not mapped: overflow id


def test_missing_program_is_127_even_with_unsearchable_path_entries(rootless, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)  # uid 65534 cannot search it: execvp sees EACCES there
    os.chmod(tmp_path, 0o755)
    d = rootless("-c", "run no-such-program-anywhere", env={"PATH": f"{locked}:/usr/bin:/bin"})
    assert d.rc == 127, d
    assert "command not found" in d.err


def test_programs_get_the_fd_limit_nsshell_started_with(nsshell):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, soft)

    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    import subprocess
    from conftest import _env, nsshell_argv
    # `new net --count` raises nsshell's own soft limit to hold the handles
    script = "new net --count 1200 as many --no-join; run sh -c 'ulimit -n'"
    for stdin in (subprocess.DEVNULL, None):  # the batch helper and the forked path
        p = subprocess.run(nsshell_argv() + ["-c", script], capture_output=True, text=True,
                           env=_env(), preexec_fn=limits, stdin=stdin)
        assert p.returncode == 0, p
        assert p.stdout.splitlines()[-1] == str(low)


def test_sh_falls_back_to_bin_sh_when_shell_is_not_there():
    """Issue 13.7: $SHELL names a shell the context does not have (a container's root,
    or here a path that does not exist): `sh` starts /bin/sh instead of failing."""
    done = run_nsshell("-c", "sh", input="echo from-sh $0\n",
                       env={"SHELL": "/nonexistent/zsh"})
    assert done.rc == 0, done
    assert "from-sh /bin/sh" in done.out
    explicit = run_nsshell("-c", "sh /nonexistent/zsh", input="")
    assert explicit.rc == 127 and "not found" in explicit.err, explicit
