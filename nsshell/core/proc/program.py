"""Running a program in a context, in the foreground: its own process group and the
terminal (Ctrl-C, Ctrl-Z and `fg` reach it, not the shell), only fds 0-2, the fd
limit nsshell started with, and its exit status as a shell gives it."""

from __future__ import annotations

import _signal
import os
from ...kernel.values import Frozen, Value

from ...errors import RESOURCE_ERRNOS, ProgramNotFound, from_oserror
from ...kernel import nstypes, syscalls
from . import channel, harden
from .forwarding import EXIT_AFTER, FORWARD, Forwarding, killpg_sender
from .spawn import (Entry, enter, exit_status, no_imports_inside, portable, read_all,
                    reset_signals, spawnp)

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Sequence


class Job(Value):
    """A program stopped by Ctrl-Z, resumable with `fg`.  RELAY: the pipe on which its
    relay (PID/time namespaces) will say the exit code, or None."""
    pid: int
    argv: list[str]

    _fields = ("pid", "argv")

    def __init__(self, pid, argv, relay=None) -> None:
        self.pid = pid
        self.argv = argv
        self.relay = relay

    def forget(self) -> None:
        """The shell is done with it: its relay's pipe is closed."""
        relay, self.relay = getattr(self, "relay", None), None
        if relay is not None:
            os.close(relay)


class Terminal:
    """Hands the controlling terminal to a child's process group and takes it back."""

    def __init__(self) -> None:
        self.fd: int | None = None
        # after forwarding one of these to a running program, the shell leaves with its status
        self.exit_after: frozenset = EXIT_AFTER
        # a `run` gave the terminal to a program: the REPL keeps a standby ready
        # (core/proc/standby.keep_ready puts it here; run_program takes it)
        self.used = False
        self.standby = None
        # relays that said their program's exit code and are exiting: reaped later, so the
        # next prompt does not wait for a process's teardown (_wait_foreground)
        self.exiting: list[int] = []
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
                self.fd = 0
        except OSError:
            self.fd = None

    def take_standby(self):
        """The standby if it is ready (it then serves this run only), else None."""
        standby = self.standby
        if standby is None or not standby.ready():
            if standby is not None and not standby.alive():
                self.close()
            return None
        self.standby = None
        return standby

    def close(self) -> None:
        """End the standby (the REPL ends, or it died) and reap the relays that are
        ending: nothing is left behind."""
        standby, self.standby = self.standby, None
        if standby is not None:
            standby.close()
        self.reap(wait=0.1)
        for pid in self.exiting:   # still there (stopped from outside?): it only had to exit
            try:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.exiting = []

    def reap(self, wait: float = 0) -> None:
        """Reap the relays in `exiting` that have exited, giving each up to WAIT seconds
        (each has nothing left to do but exit; a bound all the same: one stopped from
        outside must not hang the shell)."""
        left = []
        for pid in self.exiting:
            if wait:
                _wait_exit(pid, wait)
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                left.append(pid)
        self.exiting = left

    def give(self, pgid: int) -> None:
        """The terminal to PGID's group (the program's child may have taken it already:
        then the shell is in the background, and tcsetpgrp would stop it with SIGTTOU)."""
        if self.fd is not None:
            _set_foreground(self.fd, pgid)

    def take_back(self) -> None:
        if self.fd is not None:
            _set_foreground(self.fd, os.getpgrp())


def _wait_exit(pid: int, timeout: float) -> None:
    """Until the child PID has exited (its pidfd is readable), at most TIMEOUT seconds."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll(int(timeout * 1000))
    finally:
        os.close(fd)


def _set_foreground(fd: int, pgid: int) -> None:
    """tcsetpgrp(FD, PGID) with SIGTTOU ignored meanwhile: from a background group it
    would stop the caller (unless its group is orphaned: a session leader's, as under
    pexpect or a terminal emulator; from a job-control shell such as bash it is not)."""
    old = _signal.signal(_signal.SIGTTOU, _signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass
    finally:
        _signal.signal(_signal.SIGTTOU, old if old is not None else _signal.SIG_DFL)


# The RLIMIT_NOFILE nsshell started with, once it raised the soft limit to hold many
# handles: programs it runs get the limit their user gave, not the shell's.
_started_nofile: tuple[int, int] | None = None


def remember_nofile(soft: int, hard: int) -> None:
    global _started_nofile
    if _started_nofile is None:
        _started_nofile = (soft, hard)


def started_nofile() -> tuple[int, int] | None:
    """The RLIMIT_NOFILE nsshell started with, once it raised it (else None)."""
    return _started_nofile


def restore_nofile() -> None:
    """In a child about to run a program: the fd limit nsshell was started with."""
    if _started_nofile is not None:
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, _started_nofile)
        except (OSError, ValueError):
            pass


class Setup(Frozen):
    """What `run`'s options (and `ip netns exec` parity) ask of the process that starts
    the program, beyond entering the context.  Applied in the forked helper: CGROUP_PROCS
    before entering (they are paths in the shell's mount namespace), the rest after.

    netns: give the program a private mount namespace with /sys for the joined network
      namespace and /etc/netns/NETNS_NAME/* bound over /etc (what `ip netns exec` does);
    root_dir, cwd: chroot, then chdir (strict: an error, not a fallback);
    uid, gid, groups, keep_caps: ids in the context's user namespace (harden.become)."""
    netns: bool = False
    netns_name: str | None = None
    cgroup_procs: tuple[str, ...] = ()
    root_dir: str | None = None
    cwd: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    keep_caps: bool = False
    pid1: bool = False

    _fields = ("netns", "netns_name", "cgroup_procs", "root_dir", "cwd", "uid", "gid", "groups",
               "keep_caps", "pid1")

    def __init__(self, netns=False, netns_name=None, cgroup_procs=(), root_dir=None, cwd=None,
                 uid=None, gid=None, groups=None, keep_caps=False, pid1=False) -> None:
        object.__setattr__(self, "netns", netns)
        object.__setattr__(self, "netns_name", netns_name)
        object.__setattr__(self, "cgroup_procs", cgroup_procs)
        object.__setattr__(self, "root_dir", root_dir)
        object.__setattr__(self, "cwd", cwd)
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "keep_caps", keep_caps)
        object.__setattr__(self, "pid1", pid1)

    @property
    def sets_cwd(self) -> bool:
        return self.cwd is not None or self.root_dir is not None


NO_SETUP = Setup()


def before_enter(setup: Setup) -> None:
    """In the helper, still in the shell's namespaces: join the target's cgroups."""
    for procs in setup.cgroup_procs:
        try:
            with open(procs, "w") as f:
                f.write("0")
        except OSError as err:
            raise from_oserror(err, f"joining the cgroup {os.path.dirname(procs)}",
                               "moving into a cgroup needs write access to its cgroup.procs "
                               "and to the common ancestor's") from None


def after_enter(setup: Setup) -> None:
    """In the helper, inside the context: the rest of SETUP, in nsenter's order
    (mounts, root, working directory, then the ids: chroot needs the privilege)."""
    if setup.netns:
        netns_exec(setup.netns_name)
    if setup.pid1:
        # unshare --mount-proc: a mount namespace of its own for the new namespace's
        # /proc, private before anything is mounted (before a chroot hides /).
        try:
            syscalls.unshare(nstypes.CLONE_NEWNS)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        except OSError as err:
            raise from_oserror(err, "--pid1: creating a mount namespace for its /proc",
                               "it needs CAP_SYS_ADMIN in the context's user namespace") from None
    if setup.root_dir is not None:
        try:
            os.chroot(setup.root_dir)
        except OSError as err:
            raise from_oserror(err, f"--root {setup.root_dir}",
                               "the directory must exist in the context's mount namespace") from None
    if setup.sets_cwd:
        where = setup.cwd if setup.cwd is not None else "/"
        try:
            os.chdir(where)
        except OSError as err:
            raise from_oserror(err, f"--cwd {where}",
                               "the directory must exist in the context (under --root if given)") from None
    if not setup.pid1:
        _ids(setup)


def _ids(setup: Setup) -> None:
    if setup.uid is not None or setup.gid is not None or setup.groups is not None or setup.keep_caps:
        harden.become(setup.uid, setup.gid, setup.groups, setup.keep_caps)


def _pid1_fork(setup: Setup, argv: list[str], env: dict[str, str], errpipe: int) -> None:
    """unshare -fp: a new PID namespace (the caller must be in the PID namespace its
    children get, so after the fork_after fork), and the program as its PID 1; this
    process relays the program's stops and status.  Never returns."""
    try:
        syscalls.unshare(nstypes.CLONE_NEWPID)
    except OSError as err:
        raise from_oserror(err, "--pid1: creating a PID namespace",
                           "it needs CAP_SYS_ADMIN in the context's user namespace") from None
    child = os.fork()
    if child == 0:
        try:
            pid1_child(setup)
        except BaseException as exc:  # noqa: BLE001
            try:
                os.write(errpipe, channel.pickled(("err", portable(exc))))
            finally:
                os._exit(127)
        _exec_child(argv, env, errpipe)
    os.close(errpipe)
    _relay(child)


def pid1_child(setup: Setup) -> None:
    """In the program's process, PID 1 of the namespace --pid1 made: its own /proc."""
    if setup.pid1:
        try:
            syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV |
                           syscalls.MS_NOEXEC)
        except OSError as err:
            raise from_oserror(err, "--pid1: mounting proc on /proc") from None
        _ids(setup)  # after the mount, which needs the privilege


def netns_exec(name: str | None) -> None:
    """What `ip netns exec NAME` does before exec, in this helper only: a mount namespace
    of its own (slave of the context's: nothing it mounts propagates back), /sys remounted
    so that it shows this network namespace's links, and each file of /etc/netns/NAME bound
    over /etc/FILE.  The host's /etc and /sys are untouched.  Best effort where the kernel
    refuses (e.g. a rootless context cannot replace a locked /sys): the program then sees
    the /sys it would have seen."""
    try:
        syscalls.unshare(nstypes.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    except OSError:
        return
    try:
        ro = os.statvfs("/sys").f_flag & os.ST_RDONLY
    except OSError:
        ro = 0
    try:
        syscalls.umount2("/sys", syscalls.MNT_DETACH)
    except OSError:
        pass
    try:
        syscalls.mount(name or "sysfs", "/sys", "sysfs", syscalls.MS_RDONLY if ro else 0)
    except OSError:
        pass
    if not name:
        return
    etc = os.path.join("/etc/netns", name)
    try:
        files = sorted(os.listdir(etc))
    except OSError:
        return
    for f in files:
        src, dst = os.path.join(etc, f), os.path.join("/etc", f)
        try:
            syscalls.mount(src, dst, None, syscalls.MS_BIND)
        except OSError:
            pass  # ip netns exec warns and goes on (a missing /etc/FILE, say)


def _before_exec() -> None:
    """What the program inherits from this process: the fd limit nsshell started with,
    fds 0-2 only (the others close at exec)."""
    restore_nofile()
    try:
        syscalls.close_range(3, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)
    except OSError:
        pass


def _exec_child(argv: list[str], env: dict[str, str], errpipe: int) -> None:
    reset_signals()
    _before_exec()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as err:
        _exec_failed(err, argv, env, errpipe)


def _exec_failed(err: OSError, argv: list[str], env: dict[str, str], errpipe: int) -> None:
    """Tell the shell why ARGV could not be executed (it raises ProgramNotFound); exit."""
    code = err.errno
    if code == 13 and "/" not in argv[0] and not _on_path(argv[0], env):
        code = 2  # only unsearchable PATH entries refused us: the program is not there
    try:
        os.write(errpipe, channel.pickled(("exec", code, argv[0])))
    finally:
        os._exit(127 if code == 2 else 126)


def _spawn_relay(argv: list[str], env: dict[str, str], errpipe: int) -> None:
    """fork_after (a PID or time namespace applies to children only), without a second
    fork of this copy of the shell: posix_spawn the program (a vfork: ~0.6 ms against
    ~1.3 ms for fork() of the big Python process plus its copy-on-write faults, measured
    in bench/README.md) and relay it as _relay does.  It inherits this process's group,
    which owns the terminal already, so it is in the foreground before it starts; its
    signal dispositions and mask are reset by the spawn (spawn.spawnp), as
    reset_signals does after a fork.  Never returns."""
    _before_exec()
    try:
        child = spawnp(argv, env)
    except OSError as err:
        _exec_failed(err, argv, env, errpipe)
    os.write(errpipe, RELAYING)
    _relay(child, errpipe)


# What a relay started by _spawn_relay writes on the error pipe once the program runs; it
# keeps the pipe and writes the program's exit code there (one byte) before it exits.
# An error is a pickle: its first byte is never this.
RELAYING = b"R"


def _on_path(name: str, env: dict[str, str]) -> bool:
    for d in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.stat(os.path.join(d or ".", name))
            return True
        except OSError:
            continue
    return False


def _relay(child: int, report: int | None = None) -> None:
    """The middle process when a grandchild must be forked (PID/time namespaces):
    mirror the grandchild's stop and exit so the shell sees one job.  The signals the
    shell forwards reach the whole group: the grandchild acts on them, this one waits.
    The exit code goes to REPORT first: the shell goes on while this process's own exit
    (the teardown of a Python's memory, ~1 ms: bench/README.md) is still under way."""
    for sig in (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU,
                _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    while True:
        try:
            _, status = os.waitpid(child, os.WUNTRACED)
        except InterruptedError:
            continue
        if os.WIFSTOPPED(status):
            _stop_as(os.WSTOPSIG(status))
            os.kill(child, _signal.SIGCONT)
            continue
        code = exit_status(status) & 0xFF
        if report is not None:
            try:
                os.write(report, bytes((code,)))
            except OSError:
                pass
            # the shell, woken by the write, runs before this teardown even when it was
            # woken on this CPU (else it often waited for the whole exit)
            os.sched_yield()
        os._exit(code)


def _stop_as(sig: int) -> None:
    """Stop this relay with SIG, the signal that stopped the program, so the shell sees
    the status a direct child gives (128+SIGTSTP after Ctrl-Z); continued, go on.  The
    relay ignores the terminal's stop signals (they are for the program): SIG's own
    disposition is the default only while it is sent."""
    if sig == _signal.SIGSTOP:
        os.kill(os.getpid(), sig)
        return
    old = _signal.signal(sig, _signal.SIG_DFL)
    try:
        os.kill(os.getpid(), sig)   # delivered, and this process stopped, before kill returns
    finally:
        _signal.signal(sig, old)


def program_child(entries: Sequence[Entry], argv: list[str], env: dict[str, str],
                  cwd: str | None, fork_after: bool, root: bool, setup: Setup,
                  tty: int | None, errpipe_w: int) -> None:
    """The program's process, before exec: a forked copy of the shell, or the standby
    (core/proc/standby.py) given the run.  Its own process group, the terminal TTY
    (when the shell has it), the context, SETUP, then the program.  Errors go back
    pickled through ERRPIPE_W.  Never returns."""
    # What the errors and the PATH search need, imported before entering: inside the
    # context's mount namespace a module would come from the context's files (os.execvpe
    # imports warnings in os.get_exec_path; a planted one would run here).
    import _pickle  # noqa: F401 - channel.pickled (it loads copyreg from files)
    import resource  # noqa: F401 - restore_nofile
    import warnings  # noqa: F401
    no_imports_inside()   # also with no namespace to enter: --root changes the files
    try:
        # a signal forwarded before exec waits for the program (the fork inherits this)
        _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARD)
        harden.protect()  # until exec, it is a copy of the shell: not the container's
        os.setpgid(0, 0)
        # Still a background group until one of us hands it the terminal: a bare
        # tcsetpgrp from there would stop this child for good (the shell waits on it).
        if tty is not None:
            _set_foreground(tty, os.getpid())
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        before_enter(setup)
        enter(entries, root=root)
        after_enter(setup)
        if cwd is not None and not setup.sets_cwd:
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir(env.get("HOME", "/") if os.path.isdir(env.get("HOME", "/")) else "/")
        if fork_after and not setup.pid1:
            _spawn_relay(argv, env, errpipe_w)
        if fork_after:
            inner = os.fork()
            if inner == 0:
                _pid1_fork(setup, argv, env, errpipe_w)
            os.close(errpipe_w)
            _relay(inner)
        if setup.pid1:
            _pid1_fork(setup, argv, env, errpipe_w)
        _exec_child(argv, env, errpipe_w)
    except BaseException as exc:  # noqa: BLE001
        try:
            os.write(errpipe_w, channel.pickled(("err", portable(exc))))
        finally:
            os._exit(127)
    os._exit(127)  # not reached: every path above execs or exits


def run_program(entries: Sequence[Entry], argv: list[str], *, env: dict[str, str],
                cwd: str | None, fork_after: bool, terminal: Terminal,
                root: bool = True, setup: Setup = NO_SETUP) -> tuple[int, Job | None]:
    """Run ARGV inside ENTRIES, in the foreground; return (status, stopped job or None).

    The program gets its own process group and the terminal, so Ctrl-C and
    Ctrl-Z reach it and not the shell.  Status is 128+N when killed by signal N.
    Its process is the terminal's standby when one is ready (no fork of the shell
    on the way: core/proc/standby.py), else a fork of the shell; either is the
    shell's child, waited for and resumed alike.
    """
    terminal.reap()
    errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC)
    fwd = Forwarding().block()  # until the handlers are set (the child unblocks at exec)
    terminal.used = True
    standby = terminal.take_standby()
    pid = None
    if standby is not None:
        pid = standby.start(entries, argv, env, cwd, fork_after, root, setup, terminal.fd,
                            errpipe_w)
    if pid is None:
        try:
            pid = os.fork()
        except BaseException:
            fwd.unblock()
            raise
        if pid == 0:
            os.close(errpipe_r)
            program_child(entries, argv, env, cwd, fork_after, root, setup, terminal.fd,
                          errpipe_w)
    os.close(errpipe_w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child did it already, or has exec'd
    fwd.send = killpg_sender(pid)
    with fwd:  # SIGTERM, SIGHUP, SIGINT, SIGQUIT sent to the shell go to the program
        terminal.give(pid)
        relay = None
        try:
            # (a signal meanwhile waits: so does the child, until exec)
            report = _read1(errpipe_r)
            if report == RELAYING:
                report, relay = b"", errpipe_r   # it says the exit code there
            elif report:
                report += read_all(errpipe_r)
        finally:
            if relay is None:
                os.close(errpipe_r)
        try:
            status, job = _wait_foreground(fwd, pid, argv, relay, terminal)
        finally:
            terminal.take_back()
    if report:
        what = channel.unpickled(report)
        if what[0] == "err":
            raise what[1]
        _, err, prog = what
        if err == 2:
            raise ProgramNotFound(f"{prog}: command not found in the context",
                                  "the program must exist in the context's mount namespace "
                                  "(PATH is searched there)")
        if err in RESOURCE_ERRNOS:  # no process to run it in (a pids limit)
            raise from_oserror(OSError(err, os.strerror(err)), f"starting {prog}")
        raise ProgramNotFound(f"cannot execute {prog}: {os.strerror(err)}", None, 126)
    if job is None:
        fwd.end(status, terminal.exit_after)
    return status, job


def _read1(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:
            continue


def _wait_foreground(fwd: Forwarding, pid: int, argv: list[str], relay: int | None,
                     terminal: Terminal) -> tuple[int, Job | None]:
    """Wait for the job PID: its stop (a Job to resume, holding RELAY) or its exit
    status, which a relay says on RELAY before it exits (it is then reaped later)."""
    try:
        status = fwd.wait_child(pid, report=relay)
    except BaseException:
        if relay is not None:
            os.close(relay)
        raise
    if os.WIFSTOPPED(status):
        return 128 + os.WSTOPSIG(status), Job(pid, argv, relay)
    if relay is not None:
        os.close(relay)
    if fwd.reported:
        terminal.exiting.append(pid)
    return exit_status(status), None


def resume(job: Job, terminal: Terminal) -> tuple[int, Job | None]:
    """`fg`: give the terminal back to a stopped job and continue it."""
    with Forwarding(killpg_sender(job.pid)) as fwd:
        terminal.give(job.pid)
        try:
            os.killpg(job.pid, _signal.SIGCONT)
            relay, job.relay = getattr(job, "relay", None), None
            status, again = _wait_foreground(fwd, job.pid, job.argv, relay, terminal)
        finally:
            terminal.take_back()
    if again is None:
        fwd.end(status, terminal.exit_after)
    return status, again
