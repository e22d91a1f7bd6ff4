"""The fast paths of a batch: `run` through one pre-entered helper, `new --count`.

Behaviour only (bench/ measures the speed): a program started by the helper
sees what a forked one sees, the helper never outlives the run of `run`s that
used it, and `new --count` holds many sets, raising RLIMIT_NOFILE when it must
and saying so when the hard limit forbids it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from conftest import _env, nsshell_argv, run_nsshell

PARENT = "run sh -c 'echo parent=$PPID comm=$(cat /proc/$PPID/comm)'"


def parents(out: str) -> list[tuple[str, str]]:
    return re.findall(r"parent=(\d+) comm=(\S+)", out)


def runners() -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == "nsshell-run":
                        found.append(int(p))
            except OSError:
                pass
    return found


def test_consecutive_runs_share_one_helper_in_the_context(nsshell):
    before = set(runners())
    # (no pid among the types: in a new PID namespace the parent is outside, $PPID 0)
    d = nsshell("-c", f"new user+mnt+net+uts; map root; {PARENT}; {PARENT}; "
                      "run readlink /proc/self/ns/net")
    assert d.rc == 0, d
    ps = parents(d.out)
    assert len(ps) == 2 and ps[0] == ps[1] and ps[0][1] == "nsshell-run", d.out
    links = [line for line in d.out.splitlines() if line.startswith("net:[")]
    # The program is in the context's netns (the helper's own /proc files are closed to
    # the program: it is not dumpable, core/proc/harden.py).
    made = d.out.splitlines()[0].split()
    assert links == [w for w in made if w.startswith("net:[")], d.out
    assert set(runners()) <= before  # gone with the batch


def test_any_other_command_ends_the_helper(nsshell):
    d = nsshell("-c", f"new net; {PARENT}; ctx; {PARENT}; leave; {PARENT}")
    assert d.rc == 0, d
    ps = parents(d.out)
    assert len(ps) == 3 and len({p for p, _ in ps}) == 3, d.out


def test_the_helper_is_not_seen_by_other_commands(nsshell):
    # `pids` of the set right after runs in it: no extra process there.
    d = nsshell("-c", "new net as t; run true; run true; pids t")
    assert d.rc == 0, d
    assert "nsshell-run" not in d.out


def test_a_program_gets_fds_0_1_2_only_env_and_cwd(nsshell, tmp_path):
    tmp_path.chmod(0o755)
    d = run_nsshell("-c", "new user+mnt+net; map root; "
                    "run sh -c 'ls /proc/self/fd | tr \"\\n\" \" \"; echo; echo v=$NSB_X; pwd'",
                    env={"NSB_X": "42"}, cwd=str(tmp_path))
    assert d.rc == 0, d
    fds = d.out.splitlines()[-3].split()
    assert fds in (["0", "1", "2"], ["0", "1", "2", "3"]), d.out  # 3: ls's own directory
    assert "v=42" in d.out and d.out.splitlines()[-1] == str(tmp_path)


def test_the_helper_gets_each_programs_environment_sent_once_or_changed(nsshell):
    """The environment reaches the helper with the first run and again only when it
    changes: a run with --env and the run after it (without) each see their own."""
    show = "sh -c 'echo a=${NSB_A-unset} parent=$PPID'"
    d = nsshell("-c", f"new user+mnt+net; map root; run {show}; run --env NSB_A=1 {show}; "
                      f"run {show}; run --env NSB_A=2 {show}; run --env NSB_A=2 {show}; run {show}")
    assert d.rc == 0, d
    got = re.findall(r"a=(\S+) parent=(\d+)", d.out)
    assert [a for a, _ in got] == ["unset", "1", "unset", "2", "2", "unset"], d.out
    assert len({p for _, p in got}) == 1, d.out  # one helper served them all


def test_path_is_searched_on_every_run_as_execvpe_does(nsshell, tmp_path):
    """No stale PATH cache in the helper: a program that appears in an earlier PATH
    directory between two runs is the one run next; one that goes away is looked for
    further on, then not found (127); a directory that is not one is passed over."""
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir(), late.mkdir()
    (tmp_path / "file").write_text("")
    prog = late / "nsb-prog"
    prog.write_text("#!/bin/sh\necho late\n")
    prog.chmod(0o755)
    tmp_path.chmod(0o755)
    path = f"{tmp_path}/file:{early}:{late}:/usr/bin:/bin"
    d = run_nsshell("-c", f"set errexit off; new net; run nsb-prog; "
                    f"run sh -c 'printf \"#!/bin/sh\\necho early\\n\" > {early}/nsb-prog; "
                    f"chmod 755 {early}/nsb-prog'; run nsb-prog; run rm {early}/nsb-prog; "
                    f"run nsb-prog; run rm {prog}; run nsb-prog; echo status=$?",
                    env={"PATH": path})
    assert d.out.split()[-4:] == ["late", "early", "late", "status=127"], d
    assert "nsb-prog: command not found" in d.err, d


@pytest.mark.parametrize("line,status,err", [
    ("run sh -c 'exit 7'", 7, ""),
    ("run sh -c 'kill -TERM $$'", 128 + 15, ""),
    ("run /no/such/program", 127, "command not found"),
    ("run nsb-no-such-program", 127, "command not found"),
    ("run /etc/hostname", 126, "cannot execute"),
])
def test_statuses_are_those_of_the_forked_path(nsshell, line, status, err):
    d = nsshell("-c", f"new net; {line}")
    assert d.rc == status, d
    assert err in d.err


def test_a_stopped_program_resumes_with_fg(nsshell):
    d = nsshell("-k", "-c", "new net; run sh -c 'kill -STOP $$; echo resumed'; fg; echo after=$?")
    assert "stopped; `fg` resumes it" in d.err, d
    assert "resumed" in d.out and "after=0" in d.out, d


def test_a_stopped_program_is_not_left_behind(nsshell):
    d = nsshell("-c", "new net; run sh -c 'kill -STOP $$; echo never'")
    assert d.rc == 128 + 19, d
    out = subprocess.run(["pgrep", "-f", "kill -STOP"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_runs_in_a_batch_rootless(rootless):
    d = rootless("-c", f"new user+mnt+net+uts; map root; run id -u; {PARENT}")
    assert d.rc == 0, d
    assert "0" in d.out.split(), d.out  # root in the user namespace
    assert parents(d.out)[0][1] == "nsshell-run"
    d = rootless("-c", "new user+mnt+pid; map root; run sh -c 'echo pid=$$'; run sh -c 'echo pid=$$'")
    assert d.rc == 0, d
    pids = [int(p) for p in re.findall(r"pid=(\d+)", d.out)]
    assert len(pids) == 2 and all(1 < p < 100 for p in pids), d.out  # inside the new PID namespace


# --- new --count ---------------------------------------------------------------------

def test_new_count_holds_many_sets_unjoined(nsshell, prefix):
    d = nsshell("-c", f"new net --count 300 as {prefix}; handles --json")
    assert d.rc == 0, d
    import json
    data = json.loads(d.out[d.out.index("\n") + 1:])
    rows = data["handles"] if isinstance(data, dict) else data
    names = [r["name"] for r in rows if r["name"].startswith(prefix)]
    assert names[:2] == [f"{prefix}1", f"{prefix}2"] and len(names) == 300
    assert len({r["inode"] for r in rows if r["name"] in names}) == 300  # distinct namespaces
    assert not any(r["current"] for r in rows)


@pytest.mark.parametrize("count", [1, 15, 33, 100, 240, 241, 10_000])
def test_new_count_splits_over_cpus_within_one_message_each(count, monkeypatch):
    from nsshell.core.ns import create
    monkeypatch.setattr(create, "_cpus", lambda: 4)
    sizes = create._chunk_sizes(count, 240)
    assert sum(sizes) == count and max(sizes) <= 240
    assert len(sizes) == 1 or min(sizes) >= create._MIN_CHUNK
    assert len(sizes) >= min(4, count // create._MIN_CHUNK)  # every CPU once it pays


def test_new_count_raises_the_soft_fd_limit(nsshell):
    # nsshell's own limit (a program it runs gets the one nsshell started with: test_run);
    # the program's grandparent is nsshell
    own_limit = ("run sh -c 'p=$(ps -o ppid= -p $PPID); "
                 "set -- $(grep Max.open.files /proc/$((p))/limits); echo $4; ulimit -n'")
    d = subprocess.run(["prlimit", "--nofile=200:4096", *nsshell_argv(), "-c",
                        f"new net --count 400; {own_limit}"], env=_env(),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert d.returncode == 0, d.stderr
    shell_soft, program_soft = map(int, d.stdout.split()[-2:])
    assert shell_soft > 400
    assert program_soft == 200


def test_new_count_says_when_the_hard_limit_is_too_low(nsshell):
    d = subprocess.run(["prlimit", "--nofile=200:300", *nsshell_argv(), "-c",
                        "new net --count 500"], env=_env(),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert d.returncode != 0
    assert "hard limit" in d.stderr and "RLIMIT_NOFILE" in d.stderr and "Traceback" not in d.stderr
    assert len(d.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("line", ["new user+net --count 2", "new pid --count 2",
                                  "new net --count 0"])
def test_new_count_refuses_what_it_cannot_do(nsshell, line):
    d = nsshell("-c", line)
    assert d.rc == 2, d
    assert len(d.err.strip().splitlines()) == 1


def test_many_single_news_grow_the_soft_fd_limit():
    script = "new net --no-join\n" * 120 + "run sh -c 'ulimit -n'\n"
    d = subprocess.run(["prlimit", "--nofile=96:4096", *nsshell_argv()], input=script,
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert d.returncode == 0, d.stderr
    assert int(d.stdout.split()[-1]) > 96


def test_single_news_at_the_hard_fd_limit_say_so():
    script = "new net --no-join\n" * 120
    d = subprocess.run(["prlimit", "--nofile=64:96", *nsshell_argv()], input=script,
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert d.returncode == 1, d
    assert "too many open files" in d.stderr and "hard 96" in d.stderr
    assert "internal error" not in d.stderr and len(d.stderr.strip().splitlines()) == 1


def test_ctrl_c_at_a_terminal_reaches_the_program_once(tmp_path):
    """stdin not a terminal (the helper's path), but Ctrl-C typed at one: the
    program gets exactly one SIGINT (the shell passes it on, as on the fork path)."""
    pexpect = pytest.importorskip("pexpect")
    prog = tmp_path / "count.py"
    prog.write_text("import signal, sys, time\nn = []\n"
                    "signal.signal(signal.SIGINT, lambda *a: n.append(1))\n"
                    "print('ready', flush=True)\ntime.sleep(1.5)\nprint('got', len(n))\n")
    prog.chmod(0o755)
    line = " ".join(nsshell_argv()) + f" -c 'set errexit off; run {sys.executable} {prog}; echo alive $?' < /dev/null"
    child = pexpect.spawn("/bin/sh", ["-c", line], env=_env(), encoding="utf-8", timeout=20)
    child.expect("ready")
    time.sleep(0.3)
    child.sendintr()
    child.expect(r"got (\d+)")
    assert child.match.group(1) == "1"
    child.expect(r"alive (\d+)")
    child.expect(pexpect.EOF)
