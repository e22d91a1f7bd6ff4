"""Running programs in the current context: run (and !), sh, fg."""

from __future__ import annotations

import os
from ..kernel.values import Value, replace

from ..core.proc import program, runner
from ..errors import NsshellError, ProgramNotFound, UsageError
from ..registry import Annotated, Rest, command
from ..progress import clear_line
from ..results import Status
from ..types import Int, Path, ProgramName, Word


_SETTINGS = ("uid", "gid", "groups", "cwd", "root", "env_from_target", "keep_caps",
             "cgroup", "pid1")
_SETTING_NAMES = tuple(f"run_{n}" for n in _SETTINGS)


def _defaults(sh, opts: "RunOptions") -> "RunOptions":
    """OPTS, with what `set run_*` gives for what the command line left unset."""
    settings = sh.settings
    for name in _SETTING_NAMES:
        if getattr(settings.get(name), "value", None):
            break
    else:
        return opts  # no `set run_*` (the usual case): nothing to add, no copy to make
    def get(name):
        try:
            return sh.get(f"run_{name}")
        except KeyError:
            return None
    out = replace(opts, env=dict(opts.env))
    for name in ("uid", "gid", "cwd"):
        if getattr(out, name) is None:
            setattr(out, name, get(name))
    if out.root_dir is None:
        out.root_dir = get("root")
    if out.groups is None and get("groups") is not None:
        out.groups = tuple(int(g) for g in get("groups").split(",") if g)
    for flag in ("env_from_target", "keep_caps", "cgroup", "pid1"):
        setattr(out, flag, getattr(out, flag) or bool(get(flag)))
    return out


# The shell's environment as a plain dict, decoded once: `dict(os.environ)` decodes
# every variable again (~40 us a `run`).  Rebuilt whenever os.environ's bytes change.
_ENV: list = [None, None]


def _environ() -> dict[str, str]:
    data = os.environ._data  # what os.environ keeps (bytes): compared, not decoded
    if _ENV[0] != data:
        _ENV[0], _ENV[1] = dict(data), dict(os.environ)
    return dict(_ENV[1])


def _next_run(sh) -> "list[str] | None":
    """The program of the command that runs right after this one, when that is a plain
    `run PROGRAM ...` with no option of its own (the same environment, directory and
    set-up as this one): the run helper may start it as soon as this one ends."""
    words = sh.engine.next_command()
    if not words:
        return None
    try:
        # (a lookup may load the module of a command declared lazily: that line's own
        # error, if it fails, is told when the line runs)
        found = sh.engine.registry.lookup(words)
        if found is None or found[0].func is not run:
            return None
        opts, argv = parse_options(words[found[1]:])
    except Exception:  # noqa: BLE001
        return None
    return argv if argv and opts == _PLAIN else None


def _run(sh, argv: list[str], opts: "RunOptions | None" = None) -> Status:
    opts = _defaults(sh, opts or RunOptions())
    env = _environ()
    if opts.uid is None and opts.gid is None and opts.groups is None and opts.cwd is None \
            and opts.root_dir is None and not opts.keep_caps and not opts.pid1:
        setup = program.NO_SETUP  # the same value, not built again for every run
    else:
        setup = program.Setup(uid=opts.uid, gid=opts.gid, groups=opts.groups, cwd=opts.cwd,
                              root_dir=opts.root_dir, keep_caps=opts.keep_caps, pid1=opts.pid1)
    if opts.env_from_target or opts.cgroup:
        pid = _context_pid(sh)
        if opts.env_from_target:
            env = _environ_of(pid)
        if opts.cgroup:
            setup = replace(setup, cgroup_procs=_cgroup_procs(pid))
    env.update(opts.env)
    netns, name = _netns_exec(sh)
    if netns:
        setup = replace(setup, netns=True, netns_name=name)
    clear_line()  # the program writes to the terminal: no progress line in its way
    if sh.terminal.fd is None and not setup.pid1:
        # A batch: no terminal to hand over, so a pre-entered helper starts the
        # program (core/proc/runner.py) -- much faster for many runs in one context.
        then = _next_run(sh) if opts == _PLAIN and setup is program.NO_SETUP else None
        status, job = sh.run_in_helper(argv, env, _cwd(), sh.get("root"), setup, then)
    else:
        status, job = program.run_program(
            sh.entries(), argv, env=env, cwd=_cwd(),
            fork_after=sh.needs_fork_after(), terminal=sh.terminal, root=sh.get("root"),
            setup=setup)
    if job is not None:
        sh.jobs.append(job)
        sh.engine.renderer.warn(f"{argv[0]} (pid {job.pid}) stopped; `fg` resumes it")
    return Status(status)


class RunOptions(Value):
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    cwd: str | None = None
    root_dir: str | None = None
    env: dict
    env_from_target: bool = False
    keep_caps: bool = False
    cgroup: bool = False
    pid1: bool = False

    _fields = ("uid", "gid", "groups", "cwd", "root_dir", "env", "env_from_target", "keep_caps",
               "cgroup", "pid1")

    def __init__(self, uid=None, gid=None, groups=None, cwd=None, root_dir=None, env=None,
                 env_from_target=False, keep_caps=False, cgroup=False, pid1=False) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.cwd = cwd
        self.root_dir = root_dir
        self.env = {} if env is None else env
        self.env_from_target = env_from_target
        self.keep_caps = keep_caps
        self.cgroup = cgroup
        self.pid1 = pid1


_PLAIN = RunOptions()   # no option given

_VALUED = {"--uid", "--gid", "--groups", "--cwd", "--root", "--env"}
_FLAGS = {"--env-from-target", "--keep-caps", "--cgroup", "--pid1"}
USAGE = ("usage: run [--uid N] [--gid N] [--groups LIST] [--cwd DIR] [--root DIR] "
         "[--env NAME=VALUE]... [--env-from-target] [--keep-caps] [--cgroup] [--pid1] "
         "[--] CMD [ARG ...]")


def _id(opt: str, text: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        n = -1
    if not 0 <= n < 2**32 - 1:
        raise UsageError(f"{opt}: {text!r} is not a numeric id", USAGE)
    return n


def parse_options(argv: list[str]) -> tuple[RunOptions, list[str]]:
    """run's own options, before the program (nsenter's way: `--` ends them)."""
    opts = RunOptions()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("--") or a == "-":
            break
        name, eq, value = a.partition("=")
        if name in _FLAGS:
            if eq:
                raise UsageError(f"{name} takes no value", USAGE)
            setattr(opts, name[2:].replace("-", "_"), True)
            i += 1
            continue
        if name not in _VALUED:
            raise UsageError(f"unknown option {name}", USAGE + " (`--` before a program whose "
                             "name starts with --)")
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"{name} needs a value", USAGE)
            value = argv[i + 1]
            i += 2
        else:
            i += 1
        if name == "--uid":
            opts.uid = _id(name, value)
        elif name == "--gid":
            opts.gid = _id(name, value)
        elif name == "--groups":
            opts.groups = tuple(_id(name, g) for g in value.split(",") if g) if value else ()
        elif name == "--cwd":
            opts.cwd = value
        elif name == "--root":
            opts.root_dir = value
        elif name == "--env":
            key, eq2, val = value.partition("=")
            if not eq2 or not key or "\0" in value:
                raise UsageError(f"--env {value!r}: expected NAME=VALUE", USAGE)
            opts.env[key] = val
    return opts, argv[i:]


def _context_pid(sh) -> int:
    """A process whose namespaces are the context's (for --env-from-target, --cgroup):
    the process the joined sets came from, their PID init, else any process in them."""
    joined = {t: h for t, h in sh.context.items() if not sh.is_host(t)}
    if not joined:
        return os.getpid()
    candidates = []
    for h in joined.values():
        if h.holder is not None and h.holder.pid:
            candidates.append(h.holder.pid)
        if h.origin.startswith("pid:") and h.origin[4:].isdigit():
            candidates.append(int(h.origin[4:]))

    def inside(pid: int) -> bool:
        try:
            return all(os.stat(f"/proc/{pid}/ns/{h.type.proc}").st_ino
                       == h.nsid.ino for t, h in joined.items())
        except OSError:
            return False

    for pid in candidates:
        if inside(pid):
            return pid
    for entry in sorted((int(e) for e in os.listdir("/proc") if e.isdigit())):
        if entry != os.getpid() and inside(entry):
            return entry
    raise NsshellError("no process is in the context's namespaces",
                       "--env-from-target and --cgroup take them from a process there "
                       "(`join pid:N` a process's namespaces)")


def _environ_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError as err:
        raise NsshellError(f"--env-from-target: cannot read the environment of pid {pid}: "
                           f"{err.strerror}", "it takes the privilege to read its /proc/PID/environ")
    env = {}
    for item in data.split(b"\0"):
        k, eq, v = item.partition(b"=")
        if eq and k:
            env[os.fsdecode(k)] = os.fsdecode(v)
    return env


def _cgroup_procs(pid: int) -> tuple[str, ...]:
    """The cgroup.procs files (in the shell's mount namespace) of PID's cgroups, one per
    hierarchy mounted here: v2 (0::PATH) and each v1 hierarchy by its controllers."""
    from ..kernel import mountinfo
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        mounts = mountinfo.read()
    except OSError as err:
        raise NsshellError(f"--cgroup: cannot read the cgroups of pid {pid}: {err.strerror}")
    table = [(m.fstype, set(m.super_options.split(",")), m.root, m.target) for m in mounts
             if m.fstype in ("cgroup", "cgroup2")]
    out = []
    for line in lines:
        hier, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        for fstype, opts, mroot, mpoint in table:
            if hier == "0" and not ctrls:
                ok = fstype == "cgroup2"
            else:
                ok = fstype == "cgroup" and set(ctrls.split(",")) <= opts
            if not ok or not (path == mroot or path.startswith(mroot.rstrip("/") + "/")):
                continue
            rel = path[len(mroot.rstrip("/")):].lstrip("/")
            procs = os.path.join(mpoint, rel, "cgroup.procs")
            if procs not in out:
                out.append(procs)
            break
    if not out:
        raise NsshellError(f"--cgroup: no cgroup hierarchy of pid {pid} is mounted here")
    return tuple(out)


def _netns_exec(sh) -> tuple[bool, str | None]:
    """Does `run` give `ip netns exec`'s view, and for which /run/netns NAME?  Yes when
    the context's network namespace is joined without its mount namespace (the mount
    namespace is the host's or another set's), unless `set netns_exec off`."""
    try:
        on = sh.get("netns_exec")
    except KeyError:
        on = True
    if "net" not in sh.context or sh.is_host("net") or not on:
        return False, None
    if not sh.is_host("mnt") and sh.context_names.get("mnt") == sh.context_names.get("net"):
        return False, None
    h = sh.context["net"]
    names = []
    try:
        for n in sorted(os.listdir("/run/netns")):
            try:
                st = os.stat(os.path.join("/run/netns", n))
            except OSError:
                continue
            if st.st_ino == h.nsid.ino and (not h.nsid.dev or st.st_dev == h.nsid.dev):
                names.append(n)
    except OSError:
        pass
    own = sh.context_names.get("net")
    name = own if own in names else (names[0] if names else None)
    return True, name


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


@command("run", aliases=("!",), runner=True)
def run(sh, *, uid: Annotated[int, Int("N", minimum=0)] = None,
        gid: Annotated[int, Int("N", minimum=0)] = None,
        groups: Annotated[str, Word("LIST")] = None,
        cwd: Annotated[str, Path("DIR", dirs_only=True)] = None,
        root: Annotated[str, Path("DIR", dirs_only=True)] = None,
        env: Annotated[str, Word("NAME=VALUE")] = None,
        env_from_target: bool = False, keep_caps: bool = False, cgroup: bool = False,
        pid1: bool = False, argv: Annotated[list, Rest(), ProgramName()]):
    """Run a program in the current context, wait for it, and report its status.

    The program gets the terminal (Ctrl-C and Ctrl-Z go to it, not the shell),
    the shell's environment, and the same working directory if it exists in
    the context's mount namespace (else $HOME or /).  It inherits no fd of the
    shell but 0, 1 and 2.  Its exit status becomes the command's status
    (128+N when killed by signal N).  `!CMD ...` is short for `run CMD ...`.

    Its options come before CMD (`--` ends them), as nsenter's.  In a joined
    network namespace whose mount namespace is not joined with it, the program
    sees what `ip netns exec NAME` gives: a private mount namespace, /sys for
    that network namespace, and each /etc/netns/NAME/FILE over /etc/FILE (NAME:
    its /run/netns name); the host's /etc is untouched.  `set netns_exec off`
    turns that off.

    PID 1: a `new pid` namespace is held by nsshell-init, its PID 1, which reaps
    orphans and keeps the namespace alive as long as its handle; programs run
    there are PID 2, 3...  `run --pid1 CMD` instead makes CMD PID 1 of a PID
    namespace of its own, created for it and gone with it: CMD must reap its
    orphans, and only signals it handles reach it (SIGTERM from outside does
    nothing to a shell that set no trap; SIGKILL always does).

    Arguments:
      argv: the program and its arguments (PATH is searched in the context)

    Options:
      uid: the uid to run as, in the context's user namespace (default: its root when mapped, see `set root`), as nsenter -S
      gid: the gid to run as, in the context's user namespace, as nsenter -G
      groups: supplementary groups, comma-separated ids (default: none)
      cwd: the working directory, in the context (under --root if given); an error if missing
      root: chroot to DIR first, as nsenter --root (the working directory is then / unless --cwd)
      env: set a variable for the program (repeatable)
      env_from_target: start from the environment of the context's process, not the shell's (newer nsenter's --env)
      keep_caps: keep the capabilities held in the user namespace with --uid (raised as ambient capabilities), as nsenter --keep-caps
      cgroup: join the cgroups of the context's process first, as nsenter --join-cgroup
      pid1: run CMD as PID 1 of a new PID namespace (inside the context's) with its own /proc, as unshare -fp --mount-proc; the namespace ends with CMD

    Examples:
      run ip link
      !hostname
      run sh -c 'echo $$'
      run --uid 1000 --gid 1000 --cwd /tmp id
      run --env LANG=C --env-from-target -- env
      run --pid1 ps
    """
    # The options are declared above for help, the man page and completion; the words
    # come in ARGV (the program's own options must reach it untouched), parsed here.
    opts, argv = parse_options(argv)
    if not argv:
        raise UsageError("missing CMD", USAGE)
    return _run(sh, argv, opts)


@command("sh", runner=True, data=False)
def sh_(sh, program: Annotated[str, Path("PROGRAM")] = None):
    """Start an interactive shell ($SHELL, else /bin/sh) in the current context
    (/bin/sh also when $SHELL is not there in the context's mount namespace).

    Arguments:
      program: the shell to run instead of $SHELL

    Examples:
      sh
      sh /bin/bash
    """
    if program:
        return _run(sh, [program])
    shell = os.environ.get("SHELL") or "/bin/sh"
    try:
        return _run(sh, [shell])
    except ProgramNotFound as e:
        # $SHELL is the host's; a container's root may have only /bin/sh
        if e.status != 127 or shell == "/bin/sh":
            raise
        return _run(sh, ["/bin/sh"])


@command("fg", runner=True, data=False)
def fg(sh):
    """Resume the program most recently stopped with Ctrl-Z, in the foreground.

    Examples:
      fg
    """
    if not sh.jobs:
        raise NsshellError("no stopped program", "Ctrl-Z during `run` stops one")
    job = sh.jobs.pop()
    clear_line()
    if isinstance(job, runner.RunnerJob):
        status, again = job.runner.resume(job)
        if again is None:
            runner.finished(sh.runner, job)
    else:
        status, again = program.resume(job, sh.terminal)
    if again is not None:
        sh.jobs.append(again)
        sh.engine.renderer.warn(f"{job.argv[0]} (pid {job.pid}) stopped; `fg` resumes it")
    return Status(status)
