"""Test harness: nsshell as a real process (root, or an unprivileged uid), in-process
sessions, and the check that a test run leaves nothing on the host.

Every nsshell process a test starts carries NSSHELL_TEST_RUN in its environment, so
anything it leaves behind (init holders, keepers) can be found by that mark.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_MARK = uuid.uuid4().hex[:12]
NOBODY = 65534
HELPER_COMMS = ("nsshell-init", "nsshell-keeper", "nsshell-holder", "nsshell-create",
                "nsshell-standby")


def nsshell_argv() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "nsshell")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "nsshell"]


@dataclass
class Done:
    rc: int
    out: str
    err: str

    def __repr__(self) -> str:
        return f"Done(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["NSSHELL_TEST_RUN"] = RUN_MARK
    env.pop("NO_COLOR", None)
    env.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
    env["PYTHONPATH"] = ROOT
    if extra:
        env.update(extra)
    return env


def run_nsshell(*args: str, input: str | None = None, user: int | None = None,
                env: dict | None = None, timeout: float = 60, cwd: str | None = None) -> Done:
    argv = nsshell_argv() + list(args)
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
    e = _env(env)
    if user is not None:
        e["HOME"] = "/tmp"
        e.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.run(argv, input=input, capture_output=True, text=True, env=e,
                       timeout=timeout, cwd=cwd or "/tmp")
    return Done(p.returncode, p.stdout, p.stderr)


def run_on_a_terminal(argv: list[str], env: dict) -> tuple[int, str]:
    """Run ARGV with a pseudo-terminal as its stdin, stdout and stderr: (status, all it wrote)."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def json_docs(text: str) -> list:
    """The JSON documents `--json` prints one after another (one per command); lines of
    other output between them (a program's, under `run`) are passed over."""
    dec, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl + 1
            continue
        out.append(obj)
    return out


@pytest.fixture
def nsshell():
    """nsshell('-c', 'ctx') -> Done(rc, out, err), as root."""
    return run_nsshell


def _rootless_usable() -> str | None:
    if os.geteuid() != 0:
        return "the tests must run as root to switch to an unprivileged uid"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is missing"
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
                           + nsshell_argv() + ["-c", "echo ok"], capture_output=True, text=True,
                           env=_env(), cwd="/tmp")
    if probe.stdout.strip() != "ok":
        return ("nsshell cannot run as uid 65534 from this checkout (is every directory above "
                f"it searchable by others?): {probe.stderr.strip()[:200]}")
    return None


@pytest.fixture(scope="session")
def rootless_ok():
    why = _rootless_usable()
    if why:
        pytest.skip(why)
    return True


@pytest.fixture
def rootless(rootless_ok):
    """rootless('-c', '...', user=65534) -> Done, as an unprivileged uid."""
    def run(*args, user: int = NOBODY, **kw):
        return run_nsshell(*args, user=user, **kw)
    return run


@pytest.fixture
def prefix(request):
    """A per-test name prefix for anything a test names on the host."""
    base = "".join(c for c in request.node.name if c.isalnum())[:12]
    return f"t{RUN_MARK[:4]}{base}"


@pytest.fixture
def open_tmpdir():
    """A scratch directory under /tmp that every uid can enter (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="nsshell-scratch-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- directories mounted on themselves ------------------------------------------------------

def mount_points_under(path: str) -> list[str]:
    path = path.rstrip("/")
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


@pytest.fixture
def bound_dir():
    """bound_dir('shared' | 'private' | ...) -> a new directory under /tmp bind-mounted on
    itself with that propagation (what `unshare --net=FILE` needs, or what `persist` must
    refuse); everything mounted under it is unmounted and it is removed afterwards."""
    made = []

    def make(propagation: str) -> str:
        d = tempfile.mkdtemp(prefix=f"nsshell-{propagation}-", dir="/tmp")
        made.append(d)
        subprocess.run(["mount", "--bind", d, d], check=True)
        subprocess.run(["mount", f"--make-{propagation}", d], check=True)
        return d

    yield make
    for d in made:
        for point in sorted(mount_points_under(d), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


# -- in-process sessions ---------------------------------------------------------------

class Shell:
    """An Engine over a real Session, with output captured."""

    def __init__(self, json: bool = False):
        from nsshell import commands  # noqa: F401
        from nsshell.engine import Engine
        from nsshell.render import Renderer
        from nsshell.session import Session
        self.out, self.err = io.StringIO(), io.StringIO()
        from nsshell.cli import persist_root
        from nsshell.commands.persist import install
        self.session = Session()
        install(self.session, persist_root())  # as the CLI does
        self.engine = Engine(self.session, Renderer(self.out, self.err,
                                                    mode="json" if json else "plain"))

    def __call__(self, line: str) -> Done:
        self.out.seek(0), self.out.truncate()
        self.err.seek(0), self.err.truncate()
        rc = self.engine.run_line(line, "test")
        return Done(rc, self.out.getvalue(), self.err.getvalue())

    def close(self):
        self.session.close_all()


@pytest.fixture
def shell():
    s = Shell()
    yield s
    s.close()


# -- nothing left behind -------------------------------------------------------------------

def kill_group(p: subprocess.Popen) -> None:
    """End P's whole process group (it was started in a session of its own) and reap it."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            p.kill()
    p.wait(timeout=10)


@pytest.fixture
def procs():
    """procs(argv, **popen) -> a process in a session of its own, killed with its group
    afterwards (stdin from /dev/null unless given)."""
    started: list[subprocess.Popen] = []

    def start(argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        started.append(p)
        return p
    yield start
    for p in reversed(started):
        kill_group(p)


def nsfs_mounts() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "nsfs":
                out.add(fields[4])
    return out


def netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def processes_named(comm: str, *, env_mark: str | None = None, ppid: int | None = None) -> list[int]:
    """Live processes (not zombies) named COMM; only those whose environment holds ENV_MARK
    (NAME=VALUE), or whose parent is PPID, when given."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
            state, parent = data[data.rfind(b")") + 2:].split()[:2]
            if state in (b"Z", b"X") or (ppid is not None and int(parent) != ppid):
                continue
            if env_mark is not None:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if env_mark.encode() not in f.read():
                        continue
        except (OSError, ValueError):
            continue
        found.append(int(entry))
    return found


def marked_processes() -> set[int]:
    """Processes started by this test run (environment mark) or nsshell helpers."""
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"NSSHELL_TEST_RUN={RUN_MARK}".encode() in f.read():
                    found.add(int(entry))
                    continue
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() in HELPER_COMMS:
                    found.add(int(entry))
        except OSError:
            continue
    return found


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def host_state() -> dict:
    return {"nsfs mounts": nsfs_mounts(), "mount points": mount_points(),
            "/run/netns": netns_names(), "processes": marked_processes()}


# Directories that nsshell (like `ip netns`, for /run/netns) makes private or shared
# bind mounts of themselves the first time something is kept there, and leaves so.
STORE_ROOTS = ("/run/nsshell", "/run/netns")


def remove_store_roots(before: dict) -> None:
    """Undo the store roots the test run created: unmount the self-bind and remove the
    directory, when it was not a mount point before the run and is empty now."""
    from nsshell.kernel import syscalls
    for root in STORE_ROOTS:
        if root in before.get("mount points", set()):
            continue
        try:
            if os.listdir(root):
                continue
        except FileNotFoundError:
            continue
        while root in mount_points():
            syscalls.umount2(root, syscalls.UMOUNT_NOFOLLOW)
        existed = before.get("dirs", {}).get(root, False)
        if not existed:
            os.rmdir(root)


_BEFORE: dict = {}


def pytest_sessionstart(session):
    _BEFORE.update(host_state())
    _BEFORE["dirs"] = {root: os.path.isdir(root) for root in STORE_ROOTS}


def pytest_sessionfinish(session, exitstatus):
    # test_zz_leftovers does this and checks the host in a whole run; a run of some
    # files only (-k, one file) must not leave the store roots mounted either
    if _BEFORE:
        remove_store_roots(_BEFORE)


def leftovers(before: dict, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        now = host_state()
        left = {k: sorted(now[k] - before.get(k, set())) for k in now if k in before}
        left = {k: v for k, v in left.items() if v}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="session")
def start_state():
    return dict(_BEFORE)


def lsns_json(*args: str) -> dict:
    """`lsns -J ARGS`, parsed.  lsns itself exits 1, with no message, when a process or
    namespace goes away while it reads /proc (other tests' processes come and go): such
    a run is tried again, up to five times in all."""
    import json
    for attempt in range(5):
        done = subprocess.run(["lsns", "-J", *args], capture_output=True, text=True)
        if done.returncode == 0:
            return json.loads(done.stdout)
        time.sleep(0.05)
    raise AssertionError(f"lsns -J {' '.join(args)} failed 5 times: rc {done.returncode}, "
                         f"{done.stderr.strip()!r}")
