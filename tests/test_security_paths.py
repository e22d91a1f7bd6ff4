"""Issue 10 items 3 and 4, attacked for real.

Plugins: root never runs code from a plugin folder another user controls (the folder, a
file, or any directory above them owned by someone else, or reached through a symlink);
a folder root owns still loads.

Namespace paths: a FIFO, a device, a symlink (to /etc/shadow or anywhere) or a regular
file given where a namespace file is expected gives one error line at once; none of them
is opened (inotify sees no open).  The over-mount attack: a user binds a network
namespace onto a file in its own mount namespace and covers it (a FIFO bound on it, a
directory holding a FIFO or a symlink mounted over its folder): root's `ls`, `tree`,
`show`, `join` of that namespace do not hang and open nothing the user put there.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from conftest import NOBODY, nsshell_argv, run_nsshell

LIMIT = 3.0      # seconds: an error comes at once (a hang runs into the timeout)
TIMEOUT = 8.0

IN_OPEN = 0x20
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class OpenWatch:
    """inotify IN_OPEN on some files: did anyone open them for real (O_PATH does not count)?"""

    def __init__(self, *paths: str):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        for p in paths:
            assert _libc.inotify_add_watch(self.fd, os.fsencode(p), IN_OPEN) >= 0, p

    def opened(self) -> bool:
        try:
            return bool(os.read(self.fd, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


def _timed(*args, **kw):
    t0 = time.monotonic()
    d = run_nsshell(*args, timeout=TIMEOUT, **kw)
    return d, time.monotonic() - t0


def _one_error_line(d) -> bool:
    lines = [ln for ln in d.err.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("nsshell: ") and "Traceback" not in d.err


# -- plugins ---------------------------------------------------------------------------------

EVIL = '''
import os
open(os.environ["PATHSX_MARK"], "w").write("ran as %d" % os.geteuid())
from nsshell.plugin import Message

def register(api):
    @api.command("pathsx hello")
    def hello(sh):
        """Say hello."""
        return Message("hello from the plugin")
'''


@pytest.fixture
def plugtree():
    """A scratch tree under /tmp (root-owned, 0755) and a marker path a plugin writes."""
    d = tempfile.mkdtemp(prefix="nsshell-pathsx-plug-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d, os.path.join(d, "ran")
    shutil.rmtree(d, ignore_errors=True)


def _make_home(base: str, owner: int = 0, inner_owner: int | None = None) -> str:
    """BASE/home/.config/nsshell/plugins/greet.py; HOME owned by OWNER, what is below it
    by INNER_OWNER (default OWNER)."""
    inner = owner if inner_owner is None else inner_owner
    home = os.path.join(base, "home")
    folder = os.path.join(home, ".config", "nsshell", "plugins")
    os.makedirs(folder)
    with open(os.path.join(folder, "greet.py"), "w") as f:
        f.write(EVIL)
    os.chown(home, owner, owner)
    for p in (os.path.join(home, ".config"), os.path.join(home, ".config", "nsshell"), folder,
              os.path.join(folder, "greet.py")):
        os.chown(p, inner, inner)
    return home


def _run_as_root_with_home(home: str, mark: str, xdg: str = ""):
    return run_nsshell("-c", "pathsx hello", timeout=TIMEOUT,
                       env={"HOME": home, "XDG_CONFIG_HOME": xdg, "PATHSX_MARK": mark})


def _refused(d, mark: str, why: str) -> None:
    assert not os.path.exists(mark), f"the plugin ran: {open(mark).read()}"
    assert d.rc == 2 and "unknown command 'pathsx'" in d.err, d
    warnings = [ln for ln in d.err.splitlines() if ln.startswith("nsshell: plugin greet:")]
    assert len(warnings) == 1 and "not loaded" in warnings[0] and why in warnings[0], d


def test_root_loads_a_folder_root_owns(plugtree):
    base, mark = plugtree
    home = _make_home(base)
    d = _run_as_root_with_home(home, mark)
    assert d.rc == 0 and "hello from the plugin" in d.out and d.err == "", d
    assert open(mark).read() == "ran as 0"


def test_root_loads_a_package_with_submodules_from_checked_fds(plugtree):
    base, mark = plugtree
    home = _make_home(base)
    folder = os.path.join(home, ".config", "nsshell", "plugins")
    os.unlink(os.path.join(folder, "greet.py"))
    pkg = os.path.join(folder, "greetpkg")
    os.makedirs(os.path.join(pkg, "sub"))
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("from .words import WORD\nfrom .sub.more import MORE\n" + EVIL.replace(
            '"hello from the plugin"', 'f"{WORD} {MORE}"'))
    with open(os.path.join(pkg, "words.py"), "w") as f:
        f.write("WORD = 'hello-from-words'\n")
    with open(os.path.join(pkg, "sub", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(pkg, "sub", "more.py"), "w") as f:
        f.write("MORE = 'and-sub'\n")
    d = _run_as_root_with_home(home, mark)
    assert d.rc == 0 and "hello-from-words and-sub" in d.out, d


def test_root_refuses_a_folder_another_user_owns(plugtree):
    base, mark = plugtree
    home = _make_home(base, owner=NOBODY)
    d = _run_as_root_with_home(home, mark)
    _refused(d, mark, f"belongs to uid {NOBODY}")


def test_root_refuses_a_root_owned_folder_inside_another_users_home(plugtree):
    """sudo -E: the user owns HOME, so it can rename .config and put its own in place,
    whoever owns the folder and the file themselves."""
    base, mark = plugtree
    home = _make_home(base, owner=NOBODY, inner_owner=0)
    d = _run_as_root_with_home(home, mark)
    _refused(d, mark, f"{home} belongs to uid {NOBODY}")


def test_root_refuses_a_folder_reached_through_a_symlink(plugtree):
    base, mark = plugtree
    real = _make_home(os.path.join(base, "real"))
    home = os.path.join(base, "home")
    os.makedirs(os.path.join(home, ".config", "nsshell"))
    os.symlink(os.path.join(real, ".config", "nsshell", "plugins"),
               os.path.join(home, ".config", "nsshell", "plugins"))
    d = _run_as_root_with_home(home, mark)
    _refused(d, mark, "is a symbolic link")
    # a symlink anywhere above counts the same (XDG_CONFIG_HOME through a link)
    os.symlink(os.path.join(real, ".config"), os.path.join(base, "cfglink"))
    d = _run_as_root_with_home(home, mark, xdg=os.path.join(base, "cfglink"))
    _refused(d, mark, "is a symbolic link")


def test_root_refuses_a_plugin_file_that_is_a_symlink(plugtree):
    base, mark = plugtree
    home = _make_home(base)
    folder = os.path.join(home, ".config", "nsshell", "plugins")
    os.rename(os.path.join(folder, "greet.py"), os.path.join(base, "elsewhere.py"))
    os.symlink(os.path.join(base, "elsewhere.py"), os.path.join(folder, "greet.py"))
    d = _run_as_root_with_home(home, mark)
    _refused(d, mark, "is a symbolic link")


def test_root_refuses_a_plugin_file_another_user_owns(plugtree):
    base, mark = plugtree
    home = _make_home(base)
    os.chown(os.path.join(home, ".config", "nsshell", "plugins", "greet.py"), NOBODY, NOBODY)
    d = _run_as_root_with_home(home, mark)
    _refused(d, mark, f"belongs to uid {NOBODY}")


def test_a_user_loads_its_own_folder(rootless, plugtree):
    base, mark = plugtree
    os.chown(base, NOBODY, NOBODY)
    home = _make_home(base, owner=NOBODY)
    d = rootless("-c", "pathsx hello", timeout=TIMEOUT,
                 env={"XDG_CONFIG_HOME": os.path.join(home, ".config"), "PATHSX_MARK": mark})
    assert d.rc == 0 and "hello from the plugin" in d.out, d


# -- paths that are not namespace files --------------------------------------------------------

@pytest.fixture(scope="module")
def bad_paths():
    d = tempfile.mkdtemp(prefix="nsshell-pathsx-bad-", dir="/tmp")
    os.chmod(d, 0o755)
    paths = {"fifo": os.path.join(d, "fifo"), "device": os.path.join(d, "nulldev"),
             "shadowlink": os.path.join(d, "shadowlink"), "regular": os.path.join(d, "regular"),
             "fifolink": os.path.join(d, "fifolink"), "secretlink": os.path.join(d, "secretlink"),
             "secret": os.path.join(d, "secret")}
    os.mkfifo(paths["fifo"])
    os.mknod(paths["device"], 0o666 | 0o020000, os.makedev(1, 3))   # like /dev/null
    os.symlink("/etc/shadow", paths["shadowlink"])
    os.symlink(paths["fifo"], paths["fifolink"])
    with open(paths["secret"], "w") as f:
        f.write("root only\n")
    os.chmod(paths["secret"], 0o600)
    os.symlink(paths["secret"], paths["secretlink"])
    with open(paths["regular"], "w") as f:
        f.write("not a namespace\n")
    yield paths
    shutil.rmtree(d, ignore_errors=True)


COMMANDS = ["pids {}", "join net {}", "open {}", "persist {}", "show {}"]


@pytest.mark.parametrize("kind", ["fifo", "device", "shadowlink", "fifolink", "secretlink",
                                  "regular"])
def test_a_path_that_is_not_a_namespace_is_one_error_at_once(bad_paths, kind):
    path = bad_paths[kind]
    target = {"shadowlink": "/etc/shadow", "fifolink": bad_paths["fifo"],
              "secretlink": bad_paths["secret"]}.get(kind, path)
    watch = OpenWatch(target)
    try:
        for cmd in COMMANDS:
            d, took = _timed("-c", cmd.format(path))
            assert d.rc != 0 and _one_error_line(d), (cmd, d)
            assert "not a namespace file" in d.err, (cmd, d)
            assert took < LIMIT, (cmd, took)
            if kind != "shadowlink":  # other processes may open /etc/shadow meanwhile
                assert not watch.opened(), f"{cmd}: {path} was opened"
    finally:
        watch.close()


def test_the_proc_links_people_use_still_work(nsshell):
    pid = os.getpid()
    d = nsshell("-c", f"join net /proc/{pid}/ns/net; open /proc/self/ns/uts as u; "
                      f"pids /proc/{pid}/task/{pid}/ns/pid")
    assert d.rc == 0, d
    d = nsshell("-c", f"join net /proc/{pid}/ns/uts")
    assert d.rc != 0 and _one_error_line(d), d


def test_the_opener_refuses_the_wrong_type_and_non_nsfs():
    from nsshell.kernel import nsfs, nstypes
    fd = nsfs.open_ns("/proc/self/ns/net", nstypes.NET)
    try:
        assert nsfs.type_of_fd(fd) is nstypes.NET
    finally:
        os.close(fd)
    with pytest.raises(nsfs.WrongTypeError):
        nsfs.open_ns("/proc/self/ns/uts", nstypes.NET)
    with pytest.raises(nsfs.NotNamespaceError):
        nsfs.open_ns("/proc/self/status")
    with pytest.raises(nsfs.NotNamespaceError):
        nsfs.open_ns("/dev/null")


# -- the over-mount attack: a user covers its own bound namespace files ------------------------

ATTACK = r'''
set -e
cd "$1"
mkdir -p fifo fifo.cover link link.cover direct plain
touch fifo/netfile link/netfile direct/netfile plain/netfile
for d in fifo link direct plain; do unshare -n mount --bind /proc/self/ns/net $d/netfile; done
mkfifo fifo.cover/netfile fifo.direct
ln -s "$2" link.cover/netfile
mount --bind fifo.cover fifo          # a folder holding a FIFO over the bound file's folder
mount --bind link.cover link          # a folder holding a symlink to root's secret
mount --bind fifo.direct direct/netfile   # a FIFO bound straight onto the bound file
echo ready
exec sleep 120
'''


@pytest.fixture
def overmounted(rootless_ok):
    """As uid 65534, in its own user+mnt namespace: four network namespaces bound onto
    files, three of them covered.  Yields (pid, {case: inode}, secret, fifos)."""
    d = tempfile.mkdtemp(prefix="nsshell-pathsx-atk-", dir="/tmp")
    os.chmod(d, 0o755)
    work = os.path.join(d, "u")
    os.mkdir(work)
    os.chown(work, NOBODY, NOBODY)
    secret = os.path.join(d, "secret")
    with open(secret, "w") as f:
        f.write("root only\n")
    os.chmod(secret, 0o600)
    p = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          "unshare", "-U", "-r", "-m", "--propagation", "private",
                          "sh", "-c", ATTACK, "sh", work, secret],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        line = p.stdout.readline()
        if line.strip() != "ready":
            pytest.fail(f"attack set-up failed: {line!r} {p.stderr.read()[:500]}")
        with open(f"/proc/{p.pid}/mountinfo") as f:
            table = f.read()
        inos = {}
        for row in table.splitlines():
            fields = row.split()
            if " - nsfs " in row and fields[4].startswith(work + "/"):
                inos[fields[4][len(work) + 1:].split("/")[0]] = int(fields[3][5:-1])
        assert set(inos) == {"fifo", "link", "direct", "plain"}, table
        yield p.pid, inos, secret, [os.path.join(work, "fifo.cover", "netfile"),
                                    os.path.join(work, "fifo.direct")]
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stderr.close()
        shutil.rmtree(d, ignore_errors=True)


def test_the_over_mount_attack_hangs_nothing_and_opens_nothing(overmounted):
    pid, inos, secret, fifos = overmounted
    watch = OpenWatch(secret, *fifos)
    try:
        d, took = _timed("--json", "-c", "ls net")
        assert d.rc == 0 and took < LIMIT, (d, took)
        listed = {n["ns"]: n for n in json.loads(d.out)["namespaces"]}
        for case, ino in inos.items():   # discovery still sees every one of them
            assert ino in listed and "mount" in listed[ino]["held"], (case, listed.get(ino))
        d, took = _timed("-c", "tree")
        assert d.rc == 0 and took < LIMIT, (d, took)
        assert f"net:[{inos['plain']}]" in d.out, d.out
        for case in ("fifo", "link", "direct"):
            for cmd in ("show", "join", "open"):
                d, took = _timed("-c", f"{cmd} net:[{inos[case]}]")
                assert d.rc != 0 and _one_error_line(d) and took < LIMIT, (case, cmd, d, took)
                assert "cannot be opened" in d.err, (case, cmd, d)
        # the bound file nobody covered is reached, as the very mount the scan found
        d, took = _timed("-c", f"show net:[{inos['plain']}]")
        assert d.rc == 0 and f"net:[{inos['plain']}]" in d.out and took < LIMIT, (d, took)
        assert not watch.opened(), "root opened what the user put over its namespace files"
    finally:
        watch.close()


def test_the_mount_opener_takes_only_the_scanned_mount(overmounted):
    from nsshell.kernel import nsfs, nstypes
    pid, inos, secret, fifos = overmounted
    with open(f"/proc/{pid}/mountinfo") as f:
        rows = [r.split() for r in f if " - nsfs " in r]
    by_case = {r[4].rsplit("/", 2)[-2]: (int(r[0]), r[4]) for r in rows}
    mnt_id, mp = by_case["plain"]
    fd = nsfs.open_bind_mount(pid, mp, mnt_id, nstypes.NET)
    try:
        assert os.fstat(fd).st_ino == inos["plain"]
    finally:
        os.close(fd)
    with pytest.raises(nsfs.NotNamespaceError):     # same path, another mount id
        nsfs.open_bind_mount(pid, mp, mnt_id + 100000, nstypes.NET)
    with pytest.raises(nsfs.WrongTypeError):
        nsfs.open_bind_mount(pid, mp, mnt_id, nstypes.UTS)
    for case in ("fifo", "link", "direct"):
        with pytest.raises(OSError):
            nsfs.open_bind_mount(pid, *reversed(by_case[case]), nstypes.NET)


def test_a_store_folder_with_fifos_in_it_hangs_nothing():
    """`join DIR` reads DIR/meta.json and opens DIR/TYPE: FIFOs there must not block."""
    d = tempfile.mkdtemp(prefix="nsshell-pathsx-store-", dir="/tmp")
    try:
        os.mkfifo(os.path.join(d, "meta.json"))
        os.mkfifo(os.path.join(d, "net"))
        for cmd in (f"join {d}", f"show {d}", f"unpersist {d}"):
            d_, took = _timed("-c", cmd)
            assert d_.rc != 0 and _one_error_line(d_) and took < LIMIT, (cmd, d_, took)
    finally:
        shutil.rmtree(d, ignore_errors=True)
