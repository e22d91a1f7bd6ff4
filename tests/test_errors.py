"""Bad input of every kind: one clear line on stderr, the right status, nothing changed."""

import os

import pytest

# (command line, exit status, words the one error line must contain)
BAD = [
    ("frobnicate", 2, ["unknown command 'frobnicate'", "help"]),
    ("jion net x", 2, ["unknown command", "join"]),
    ("new", 2, ["missing TYPES"]),
    ("new usr+mnt", 2, ["unknown namespace type 'usr'", "user mnt pid net uts ipc cgroup time"]),
    ("new net as", 2, ["'as' needs a NAME"]),
    ("new net as 1abc", 2, ["NAME '1abc'"]),
    ("new net as host", 2, ["reserved"]),
    ("new net --bogus", 2, ["unknown option --bogus"]),
    ("new net --monotonic", 2, ["--monotonic needs a value"]),
    ("new net --monotonic 5", 2, ["clock offsets need a new time namespace"]),
    ("new net --propagation weird", 2, ["MODE 'weird'", "private"]),
    ("join", 2, ["missing REF"]),
    ("join nosuch", 1, ["no namespace set named 'nosuch'"]),
    ("join net nosuch extra", 2, ["unexpected argument"]),
    ("join pid:999999999", 1, ["no process 999999999"]),
    ("join pid:abc", 2, ["not a process id"]),
    ("join /etc/passwd", 2, ["not a namespace file"]),
    ("join /no/such/file", 1, ["no file /no/such/file"]),
    ("join net:[1]", 1, ["no net namespace with inode 1"]),
    ("join bogus:[1]", 2, ["unknown namespace type 'bogus'"]),
    ("join net:[abc]", 2, ["not a TYPE:[INODE] reference", "net:[4026531840]"]),
    ("show pid:-3", 2, ["not a process id", "greater than 0"]),
    ("leave frob", 2, ["unknown namespace type 'frob'"]),
    ("map 0 1000 1", 1, ["current user namespace is the one the shell started in", "new user"]),
    ("new user; map 0 1000", 2, ["IN OUT COUNT triples"]),
    ("new user; map 0 1000 0", 2, ["count of 0"]),
    ("new user; map 0 x 1", 2, ["not a number"]),
    ("new user; map 0 1000 10 5 2000 10", 2, ["overlap on the inside side"]),
    ("new user; map 0 1000 10 20 1005 10", 2, ["overlap on the outside side"]),
    ("new user; map -u -g 0 0 1", 2, ["exclude each other"]),
    ("new user; map root; map root", 1, ["already written", "once"]),
    ("setgroups maybe", 2, ["not one of allow, deny"]),
    ("close host", 2, ["cannot be closed"]),
    ("close nosuch", 1, ["no namespace set named"]),
    ("name nosuch x", 1, ["no namespace set named"]),
    ("new uts as a; name a a", 2, ["taken"]),
    ("open /etc/hostname", 2, ["not a namespace file"]),
    ("new net as n; join uts n", 1, ["n has no uts namespace", "it has: net"]),
    ("run", 2, ["missing CMD"]),
    ("run /no/such/program", 127, ["command not found"]),
    ("source /no/such/file", 1, ["cannot read /no/such/file"]),
    ("set nosuchoption on", 2, ["no such option"]),
    ("set errexit maybe", 2, ["expected on or off"]),
    ("exit abc", 2, ["not a whole number"]),
    ("help frob", 2, ["no command 'frob'"]),
    ("echo 'unterminated", 2, ["unterminated single quote"]),
    ('echo "unterminated', 2, ["unterminated double quote"]),
    ("hostname " + "x" * 65, 2, ["64 bytes"]),
    ("fg", 1, ["no stopped program"]),
]


@pytest.mark.parametrize("line,status,words", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_input_one_line(nsshell, line, status, words):
    d = nsshell("-c", line)
    assert d.rc == status, d
    lines = d.err.splitlines()
    assert len(lines) == 1, d.err
    assert lines[0].startswith("nsshell: -c: "), lines[0]
    assert "Traceback" not in d.err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_usage_error_has_where_and_hint_in_a_script(nsshell, tmp_path):
    f = tmp_path / "bad.nss"
    f.write_text("echo ok\n\nnew frob\necho never\n")
    d = nsshell(str(f))
    assert d.rc == 2
    assert d.err.startswith(f"nsshell: {f}:3: new: ")
    assert "never" not in d.out


def test_batch_stops_at_first_failure_with_its_status(nsshell):
    d = nsshell("-c", "run sh -c 'exit 7'; echo after; run false")
    assert d.rc == 7
    assert "after" not in d.out


def test_keep_going_reports_first_failure(nsshell):
    d = nsshell("-k", "-c", "run sh -c 'exit 7'; echo after; run false")
    assert d.rc == 7
    assert "after" in d.out
    d = nsshell("-c", "set errexit off; run sh -c 'exit 4'; echo after")
    assert d.rc == 4 and "after" in d.out


def test_nothing_changed_after_bad_map(shell):
    assert shell("new user as u").rc == 0
    assert shell("map 0 1000 10 5 2000 10").rc == 2
    # the map is still unwritten: a correct one goes through
    d = shell("map root")
    assert d.rc == 0, d


def test_rootless_eperm_is_explained(rootless):
    d = rootless("-c", "new net")
    assert d.rc == 1
    assert "Operation not permitted" in d.err
    assert "new user+net" in d.err
    assert len(d.err.splitlines()) == 1


def test_rootless_map_other_uid_is_explained(rootless):
    d = rootless("-c", "new user; map 0 0 1")
    assert d.rc == 1, d
    assert "only your own uid (65534)" in d.err
    assert len(d.err.splitlines()) == 1


def test_cli_usage_errors(nsshell):
    d = nsshell("--bogus")
    assert d.rc == 2 and d.err.startswith("nsshell: ") and len(d.err.splitlines()) == 1
    d = nsshell("/no/such/script")
    assert d.rc == 127 and "No such file" in d.err


GARBAGE = ["'", '"', ";;;", "# only a comment", "!", "run --", "new +", "new ++",
           "join :[", "join net:[]", "map -u", "map --ns", "new time --monotonic x",
           "\\", "echo \\", "new all as ''", "set", "join ''", "open ''", "ctx extra",
           "new net; join net ns1 ns1", "help " + "x" * 5000, "name", "close", "$1 $2 $?"]


@pytest.mark.parametrize("line", GARBAGE)
def test_no_traceback_whatever_the_input(nsshell, line):
    d = nsshell("-c", line)
    assert "Traceback" not in d.err
    assert d.rc in (0, 1, 2, 127), d
    assert len(d.err.splitlines()) <= 1, d.err


def test_nul_byte_from_stdin(nsshell):
    d = nsshell(input="echo a\x00b\n")
    assert "Traceback" not in d.err
    assert len(d.err.splitlines()) <= 1


def test_closed_output_pipe_stops_quietly():
    import subprocess
    from conftest import _env, nsshell_argv
    p = subprocess.Popen(nsshell_argv() + ["-c", "ls; " * 60 + "echo never"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
    p.stdout.readline()
    p.stdout.close()  # as `| head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=30) == 141
    assert err == ""


# -- faults from input and limits: one line, a hint, status 1 or 2 (issue 11.7, 11.8) -------------

def _one_line(d, status, *words):
    assert d.rc == status, d
    lines = d.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsshell: "), d.err
    assert "Traceback" not in d.err and "internal error" not in d.err, d.err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_a_script_or_sourced_file_that_is_not_utf8_runs_nothing(nsshell, tmp_path):
    f = tmp_path / "bad.nss"
    f.write_bytes(b"echo ran\necho \xff\xfe\n")
    _one_line(nsshell(str(f)), 2, f"{f}:2: not UTF-8 text (byte 0xff)", "hint:")
    d = nsshell("-c", f"echo before; source {f}")
    _one_line(d, 2, "source:", f"{f}:2: not UTF-8", "hint:")
    assert "ran" not in d.out and "before" in d.out
    d = nsshell(input=b"echo ran\n\xc3\x28\n".decode("latin-1"))  # through stdin: bytes
    assert d.rc in (1, 2)


def test_stdin_that_is_not_utf8(tmp_path):
    import subprocess
    from conftest import _env, nsshell_argv
    p = subprocess.run(nsshell_argv(), input=b"echo ran\necho \xc3\x28\n", capture_output=True,
                       env=_env(), timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and len(err.splitlines()) == 1, err
    # a pipe's commands run as they arrive (issue 13.2): line 1 ran, nothing from line 2 on
    assert "stdin:2: not UTF-8 text (byte 0xc3)" in err and p.stdout == b"ran\n"


def test_a_command_line_that_is_not_utf8(nsshell):
    import subprocess
    from conftest import _env, nsshell_argv
    p = subprocess.run(nsshell_argv() + ["-c", b"new uts; hostname \xf0x".decode("utf-8",
                                                                                "surrogateescape")],
                       capture_output=True, env=_env(), timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 2 and len(err.splitlines()) == 1, err
    assert "not UTF-8 text (byte 0xf0)" in err


def test_a_fifo_as_a_script_does_not_hang(nsshell, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _one_line(nsshell(str(fifo), timeout=10), 2, "not a regular file")
    _one_line(nsshell("-c", f"source {fifo}", timeout=10), 2, "not a regular file")


@pytest.mark.parametrize("limit", [10, 12, 16, 20, 24, 63])
def test_a_low_fd_limit_is_one_line(limit):
    import resource
    import subprocess
    from conftest import _env, nsshell_argv

    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    p = subprocess.run(nsshell_argv() + ["-c", "new net; ls"], capture_output=True, text=True,
                       env=_env(), preexec_fn=lower, timeout=30)
    assert p.returncode == 1, p
    assert p.stderr.startswith(f"nsshell: the open-file limit is {limit}"), p.stderr
    assert "hint:" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


def test_at_the_fd_floor_commands_run_and_run_out_clearly():
    import resource
    import subprocess
    from conftest import _env, nsshell_argv
    from nsshell.cli import MIN_FDS

    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (MIN_FDS, MIN_FDS))
    p = subprocess.run(nsshell_argv() + ["-k", "-c", "new net+uts as a; run true; "
                                                     "new net+uts+ipc+mnt+cgroup --count 20 --no-join"],
                       capture_output=True, text=True, env=_env(), preexec_fn=lower, timeout=60)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    assert "a: " in p.stdout, p
    assert p.returncode in (0, 1), p
    for line in p.stderr.splitlines():
        assert line.startswith("nsshell: ") and "hint:" in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "-1e300", "9223372037",
                                   "-99999999999"])
def test_time_offsets_out_of_the_kernels_range_are_refused(nsshell, value):
    _one_line(nsshell("-c", f"new time --monotonic {value}"), 2, "hint:")
    _one_line(nsshell("-c", f"new time --boottime {value}"), 2, "hint:")


def test_time_offsets_at_the_edge_of_the_kernels_range_are_taken(nsshell):
    """The check is the kernel's own rule: the largest offset it allows goes through."""
    import time
    from nsshell.commands.context import KTIME_SEC_MAX
    high = KTIME_SEC_MAX // 2 - int(time.clock_gettime(time.CLOCK_MONOTONIC)) - 5
    d = nsshell("-c", f"new time --monotonic {high}; run cat /proc/self/timens_offsets")
    assert d.rc == 0, d
    assert f"monotonic {high} " in " ".join(d.out.split()) + " ", d.out
    _one_line(nsshell("-c", f"new time --monotonic {high + 100}"), 2, "out of range")


@pytest.mark.parametrize("line", ["new uts; hostname a\x00b", "open /tmp/a\x00b",
                                  "set persist_root /tmp/a\x00b", "run echo a\x00b",
                                  "new net as a\x00b", "echo a\x00b"])
def test_nul_in_a_word_is_refused_and_changes_nothing(nsshell, line):
    d = nsshell("-k", input=line + "\nset\nhostname\n")
    assert "Traceback" not in d.err and "internal error" not in d.err, d
    assert "killed" not in d.err
    errors = d.err.splitlines()
    assert len(errors) == 1 and "a NUL byte" in errors[0] and "hint:" in errors[0], d.err
    assert d.rc == 2, d
    assert "a\x00b" not in d.out and "/tmp/a" not in d.out  # not set, not half set


@pytest.fixture
def pids_cgroup():
    """A pids cgroup (v1 or v2) whose pids.max the test sets; removed afterwards."""
    import uuid
    for base in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(f"{base}/cgroup.procs") and (
                os.path.exists(f"{base}/pids.current") or base.endswith("/pids")
                or os.path.exists(f"{base}/cgroup.controllers")
                and "pids" in open(f"{base}/cgroup.controllers").read()):
            path = f"{base}/nsshell-test-{uuid.uuid4().hex[:8]}"
            try:
                os.mkdir(path)
            except OSError:
                continue
            if not os.path.exists(f"{path}/pids.max"):
                os.rmdir(path)
                continue
            yield path
            import time
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.1)
            return
    pytest.skip("no pids cgroup to make here")


@pytest.mark.parametrize("pids_max", [1, 2, 3])
def test_a_pids_limit_says_so(pids_cgroup, pids_max):
    """fork() fails with EAGAIN under a real pids limit, in the shell or in a helper:
    one line naming the limit, status 1."""
    import subprocess
    from conftest import _env, nsshell_argv
    with open(f"{pids_cgroup}/pids.max", "w") as f:
        f.write(str(pids_max))

    def enter():
        with open(f"{pids_cgroup}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    p = subprocess.run(nsshell_argv() + ["-k", "-c", "new pid+net as a; run true; net up a lo; "
                                                     "show a"],
                       capture_output=True, text=True, env=_env(), preexec_fn=enter, timeout=60)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    assert p.returncode == 1, p
    lines = p.stderr.splitlines()
    assert lines and all(l.startswith("nsshell: ") for l in lines), p.stderr
    assert "process limit was reached" in lines[0] and "pids.max" in lines[0], lines[0]
    assert "Resource temporarily unavailable" in lines[0]


def test_a_newline_inside_a_word_is_escaped_in_the_error(nsshell):
    line = _one_line(nsshell("-c", 'new net as "a\nb"'), 2)
    assert "a\\nb" in line
    line = _one_line(nsshell("-c", "join '/tmp/x\x1b[31my'"), 1)
    assert "\\x1b[31m" in line and "\x1b" not in line


def test_quotes_span_the_lines_of_a_script(nsshell, tmp_path):
    f = tmp_path / "q.nss"
    f.write_text('echo "one\ntwo"\necho three\n')
    d = nsshell(str(f))
    assert d.rc == 0 and d.out == "one\ntwo\nthree\n", d


@pytest.mark.parametrize("name", ["0abc", "123", "9", "-x", ".x", "a:b", "a/b", "host", "net",
                                  "a" * 65, "é"])
def test_one_name_rule_with_a_hint_that_states_it(nsshell, name):
    from nsshell import names
    from nsshell.core.store import persist
    assert not names.valid(name) and not persist.NAME_OK(name)
    line = _one_line(nsshell("-c", f"new net as '{name}'"), 2, "hint: " + names.RULE)
    assert f"NAME '{name}'" in line


@pytest.mark.parametrize("name", ["a", "_x", "A1", "a.b-c_d", "a" * 64])
def test_names_the_rule_allows_are_allowed_everywhere(name):
    from nsshell import names
    from nsshell.core.store import persist
    assert names.valid(name) and persist.NAME_OK(name)


def test_internal_errors_of_helpers_are_the_shells_status():
    """A helper's unexpected exception is an internal error like the shell's own: the
    status documented (errors.EXIT_INTERNAL), the same words."""
    from nsshell.core.proc import spawn
    from nsshell.errors import EXIT_INTERNAL, EXIT_STATUSES, InternalError
    with pytest.raises(InternalError) as e:
        spawn.call([], int, "not a number")
    assert e.value.status == EXIT_INTERNAL
    assert "internal error" in str(e.value) and "--debug" in str(e.value)
    assert str(EXIT_INTERNAL) in dict(EXIT_STATUSES)
    with open(os.path.join(os.path.dirname(__file__), "..", "man", "nsshell.1")) as f:
        man = f.read()
    assert f"\\fB{EXIT_INTERNAL}\\fR\nan internal error" in man


def test_hostname_of_the_host_needs_host_flag():
    """Run inside `unshare --uts`, so that the shell's "host" is a throwaway UTS namespace:
    renaming it is refused without --host, and done with it; another UTS namespace (that of
    a process outside) is not the shell's host."""
    import subprocess
    from conftest import _env, nsshell_argv
    sleeper = subprocess.Popen(["unshare", "--uts", "sh", "-c", "exec sleep 30"])
    try:
        import time
        time.sleep(0.2)
        script = "hostname fzq-one; hostname fzq-two --host; run hostname"
        p = subprocess.run(["unshare", "--uts"] + nsshell_argv() + ["-k", "-c", script],
                           capture_output=True, text=True, env=_env(), timeout=30)
        errors = p.stderr.splitlines()
        assert len(errors) == 1 and "refusing to rename the host" in errors[0], p.stderr
        assert "--host" in errors[0]
        assert p.stdout.splitlines()[-1] == "fzq-two", p.stdout
        p = subprocess.run(["unshare", "--uts"] + nsshell_argv() + [
            "-c", f"join uts pid:{sleeper.pid}; hostname fzq-three"],
            capture_output=True, text=True, env=_env(), timeout=30)
        assert p.returncode == 0, p   # another UTS namespace than the shell's: allowed
    finally:
        sleeper.kill()
        sleeper.wait()
