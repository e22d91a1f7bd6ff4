"""Bad input of every kind: one clear line on stderr, the right status, nothing changed."""

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
