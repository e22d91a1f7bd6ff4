"""A pre-entered helper that starts programs in a context: `run` in a batch, fast.

Forking the shell for every `run` costs about a millisecond (the shell is a
large Python process) plus the setns() calls, and a PID or time namespace
needs a second fork.  In a batch (no terminal to hand over) the first `run`
in a context forks one helper that enters the context once; every further
`run` asks it to posix_spawn() the program (a vfork: cheap), and it reports
the pid and then the status.  Measured in bench/README.md.

The helper lives only while consecutive `run`s use it: the engine drops it
before any other command and when a batch (or a line typed at the prompt)
ends, so no other command can see an extra process in the context, and a
changed context or uid map is never served by a stale helper.  With a
terminal, the program must own the terminal before it starts, which posix_spawn
cannot arrange: that path is program.run_program (and core/proc/standby.py).

Per run the shell sends the program's argv and working directory, and its
environment only when it differs from the one the helper holds (the first run
sends it); the helper searches PATH afresh every time (nothing cached that a new
or removed program could make stale) and answers once, when the program ends.

Consecutive `run`s: when the command after a `run` is certain to be another plain
`run` (engine.next_command: a script's next line or item, literal words, no
option), the request names it (a FollowUp) and the helper starts it the moment the
first ends -- unless a signal came for the first, or errexit would stop the batch at
its status -- then answers for the first, saying it did.  The shell keeps passing
its signals on (the Forwarding stays) until that `run` comes, which then only tells
the helper what follows it ("then") and waits for its end.  So a script's runs go
one after the other at the helper's pace, without a round trip through the shell
between two programs (bench/README.md).

The program sees what a forked one sees: its own process group, default
signal dispositions, an empty signal mask, fds 0, 1 and 2 only, the shell's
environment, the working directory (else $HOME, else /), and the same
exit-status rules (128+N when killed by signal N).
"""

from __future__ import annotations

import _signal
import errno
import os

from ...errors import RESOURCE_ERRNOS, NsshellError, ProgramNotFound, from_oserror
from ...kernel import syscalls
from . import channel, forwarding, harden, program, spawn
from .forwarding import EXIT_AFTER, Forwarding

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, Sequence


class _Gone(Exception):
    """The runner was not there to take a request."""


def _died(how: str) -> NsshellError:
    return spawn.HelperCrash(f"the run helper (nsshell-run) died: {how}",
                             "it was killed from outside; the next `run` starts another")


class FollowUp:
    """The program of the `run` that comes right after one (engine.next_command), with
    the same environment, directory and set-up: the helper starts it as soon as the one
    before ends, unless a signal came for that one or NEED_ZERO (errexit) and it failed.
    Its `run` then only waits for it (Runner.started)."""

    __slots__ = ("argv", "need_zero")

    def __init__(self, argv: list[str], need_zero: bool) -> None:
        self.argv = list(argv)
        self.need_zero = need_zero

    def spec(self) -> tuple:
        return (self.argv, self.need_zero)


class RunnerJob(program.Job):
    """A program started by a runner and stopped: `fg` resumes it through the runner."""
    runner: Any = None

    _fields = ("pid", "argv", "runner")

    def __init__(self, pid, argv, runner=None) -> None:
        super().__init__(pid, argv)
        self.runner = runner


def _key(entries: Sequence[spawn.Entry], root: bool, setup: program.Setup) -> tuple:
    # Entries compare by value (type, fd, label); the session hands the same objects
    # while its context is unchanged, which tuple comparison sees first (identity).
    return (tuple(entries), root, setup)


def _exec_error(err: int, prog: str) -> NsshellError:
    """The error run_program raises for the same failure (127 not found, 126 not executable)."""
    if err == errno.ENOENT:
        return ProgramNotFound(f"{prog}: command not found in the context",
                               "the program must exist in the context's mount namespace "
                               "(PATH is searched there)")
    if err in RESOURCE_ERRNOS:  # no process to run it in (a pids limit): not the program's fault
        return from_oserror(OSError(err, os.strerror(err)), f"starting {prog}")
    return ProgramNotFound(f"cannot execute {prog}: {os.strerror(err)}", None, 126)


# --- the channel: channel.py, pickled (the shell and its own child) --------------------
# One message is one write, so the reader wakes once; strictly one request, one answer.

MAX_MESSAGE = 1 << 26   # argv and environment of a program, with room to spare


def _send(sock, obj: Any) -> None:
    channel.send(sock, obj, pickle=True)


def _recv(sock) -> Any:
    return channel.recv(sock, maxsize=MAX_MESSAGE, pickle=True)[0]


# --- inside the helper ---------------------------------------------------------------

def _chdir(cwd: str | None, env: dict[str, str]) -> None:
    if cwd is None:
        return
    try:
        os.chdir(cwd)
    except OSError:
        home = env.get("HOME", "/")
        os.chdir(home if os.path.isdir(home) else "/")


def _start(argv: list[str], env: dict[str, str], cwd: str | None) -> int:
    _chdir(cwd, env)
    return spawn.spawnp(argv, env, setpgroup=0)


def _serve(entries: Sequence[spawn.Entry], root: bool, setup: program.Setup, sock,
           parent: int) -> None:
    harden.protect()  # it serves the shell from inside: the inside must not drive it
    program.restore_nofile()  # what it posix_spawn()s inherits its limits
    try:
        # A group of its own: a Ctrl-C the terminal sends to the shell's group must
        # not reach the helper too (the shell passes it on once, as run_program does).
        os.setpgid(0, 0)
    except OSError:
        pass
    for sig in (_signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU):
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # its programs are waited for, not ignored
    # What the shell passes on while a program runs (forwarding.FORWARD) goes to the
    # program; one that came before the program was started waits, blocked, for it.
    # SIGCHLD too: the helper is one thread and takes them with sigwaitinfo().
    _signal.pthread_sigmask(_signal.SIG_BLOCK, forwarding.HELPER_BLOCKED)
    try:
        _signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != parent:
        return
    syscalls.set_process_title("nsshell-run")
    spawn.no_imports_inside()   # also with no namespace to enter: --root changes the files
    try:
        program.before_enter(setup)
        spawn.enter(entries, root=root)
        program.after_enter(setup)
    except BaseException as exc:  # noqa: BLE001
        _send(sock, ("err", spawn.portable(exc)))
        return
    # Hold nothing but the channel and 0, 1, 2: no handle of the shell stays alive here.
    fd = sock.fileno()
    syscalls.close_range(3, fd - 1) if fd > 3 else None
    syscalls.close_range(fd + 1)
    _send(sock, ("ok", None))
    stopped: set[int] = set()
    env: dict[str, str] = {}  # the programs' environment: sent with the first run, then when it changes
    try:
        while True:
            try:
                msg = _recv(sock)
            except channel.ChannelError:  # the shell closed its end (or spoke nonsense)
                return
            then = None   # the next program, to start when this one ends well
            if msg[0] == "run":
                _, argv, new_env, cwd, then = msg
                if new_env is not None:
                    env = new_env
                try:
                    pid = _start(argv, env, cwd)
                except OSError as e:
                    forwarding.take_pending()  # what was sent for it: dropped, as it is
                    _send(sock, ("exec", e.errno, argv[0]))
                    continue
            elif msg[0] == "cont":
                pid = msg[1]
                stopped.discard(pid)
                try:
                    os.killpg(pid, _signal.SIGCONT)
                except OSError:
                    pass
            else:
                continue
            started_here = False   # PID is a next program, started by this loop
            while True:
                # the signals pending for it go first; those left at its end are dropped
                passed: list[int] = []
                send = forwarding.killpg_sender(pid)
                try:
                    status = forwarding.wait_blocked(pid, lambda sig: (passed.append(sig),
                                                                       send(sig)))
                except ChildProcessError:
                    status = 0
                passed += forwarding.take_pending()
                if started_here:
                    # the shell says what follows a program started here once it comes to
                    # that program's `run` (the message is there already, or comes)
                    try:
                        told = _recv(sock)
                    except channel.ChannelError:
                        return
                    then = told[1] if told[0] == "then" else None
                # One message per program, at its end: the shell sleeps until then.
                if os.WIFSTOPPED(status):
                    stopped.add(pid)
                    _send(sock, ("stopped", os.WSTOPSIG(status), pid, None))
                    break
                code = spawn.exit_status(status)
                nxt = None
                # The next program starts at once, unless a signal came for this one (the
                # shell may leave: SIGTERM) or errexit stops the batch at this status.
                if then is not None and not passed and not (then[1] and code):
                    try:
                        nxt = _start(then[0], env, cwd)
                    except OSError:
                        forwarding.take_pending()
                        nxt = None   # the shell asks for it itself, and hears why it failed
                _send(sock, ("exit", code, pid, nxt))
                if nxt is None:
                    break
                pid, started_here, then = nxt, True, None
    finally:
        for pid in stopped:  # the shell is done with them: leave nothing behind
            try:
                os.killpg(pid, _signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue


# --- in the shell ------------------------------------------------------------------

class Runner:
    def __init__(self, entries: Sequence[spawn.Entry], root: bool,
                 setup: program.Setup = program.NO_SETUP):
        # Imported before the fork: after entering, a pivoted mount namespace may have
        # no Python library to import from.
        import _pickle  # noqa: F401 - channel.pickled (it loads copyreg from files)
        import array  # noqa: F401
        import warnings  # noqa: F401 - os.get_exec_path (the PATH search) imports it
        self.key = _key(entries, root, setup)
        self.busy = False
        self.env: dict[str, str] | None = None  # the environment the helper holds (a copy)
        self.stopped: set[int] = set()
        # the next `run`'s program when the helper started it (argv, env, cwd), and the
        # forwarding of the shell's signals to it, kept until that `run` comes
        self.started: tuple | None = None
        self._fwd: Forwarding | None = None
        parent_sock, child_sock = channel.socketpair()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                parent_sock.close()
                _serve(entries, root, setup, child_sock, me)
            except BaseException:  # noqa: BLE001
                pass
            finally:
                os._exit(0)
        child_sock.close()
        try:
            os.setpgid(pid, pid)  # as the child does: either may run first
        except OSError:
            pass
        self.pid: int | None = pid
        self.sock = parent_sock
        try:
            kind, value = self._recv()
        except BaseException:
            self.close()
            raise
        if kind == "err":
            self.close()
            raise value

    def alive(self) -> bool:
        """Still there? (waitpid: it is our child.)"""
        if self.sock is None or self.pid is None:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid = self.pid
        if pid:
            self.pid = None
            self.sock.close()
            self.sock = None
            return False
        return True

    def _drop_started(self) -> None:
        """No next program runs (any more): the shell's signals act on it again."""
        if self._fwd is not None:
            fwd, self._fwd, self.started = self._fwd, None, None
            fwd.__exit__(None, None, None)

    def _recv(self):
        try:
            msg = _recv(self.sock)
        except channel.ChannelError as e:
            raise _died(str(e)) from None
        return msg

    def _forward(self, signum: int) -> None:
        """A signal the shell got while a program runs: the runner passes it on."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass

    def run(self, argv: list[str], env: dict[str, str], cwd: str | None,
            exit_after=EXIT_AFTER, then: FollowUp | None = None
            ) -> tuple[int, program.Job | None]:
        """Run ARGV; THEN: the `run` that comes next (its program), for the helper to
        start as soon as this one ends (_finish keeps it as `started` when it did)."""
        if self.started is not None:
            return self._run_started(argv, env, cwd, exit_after, then)
        # The environment goes once, and again only when it differs from the helper's.
        same = env == self.env
        # lost: it is gone (killed from outside) with our request unread: nothing started
        fwd, msg = self._ask(("run", argv, None if same else env, cwd,
                              None if then is None else then.spec()), None, _Gone)
        if not same:
            self.env = dict(env)
        if msg[0] == "exec":
            fwd.__exit__(None, None, None)
            raise _exec_error(msg[1], msg[2])
        return self._finish(fwd, msg, argv, exit_after, (then, env, cwd))

    def _run_started(self, argv, env, cwd, exit_after, then) -> tuple[int, program.Job | None]:
        """The `run` whose program the helper started after the last one: tell it what
        comes after this one, and wait for this one's end."""
        (expected, fwd), self.started, self._fwd = (self.started, self._fwd), None, None
        mine = expected == (argv, env, cwd)
        fwd, msg = self._ask(("then", then.spec() if then is not None and mine else None), fwd,
                             lambda: _died("after it started this program (it may still be running)"))
        if not mine:
            # Not the program this `run` asks for (next_command() said otherwise: never
            # expected): the one started has ended; this one is asked for as usual.
            fwd.__exit__(None, None, None)
            return self.run(argv, env, cwd, exit_after, then)
        return self._finish(fwd, msg, argv, exit_after, (then, env, cwd))

    def resume(self, job: RunnerJob, exit_after=EXIT_AFTER) -> tuple[int, program.Job | None]:
        self.stopped.discard(job.pid)
        fwd, msg = self._ask(("cont", job.pid), None, None)
        return self._finish(fwd, msg, job.argv, exit_after, None)

    def _ask(self, message, fwd: Forwarding | None, lost) -> tuple[Forwarding, Any]:
        """Send MESSAGE and wait for the helper's answer, the shell's signals going on to
        it meanwhile (FWD: the forwarding kept for a program the helper started, else a
        new one); returns the forwarding, still on, and the answer.  On any failure the
        forwarding ends and the helper is closed; an OSError of the channel is raised as
        LOST() when given (what a lost helper means depends on what was asked)."""
        if fwd is None:
            fwd = Forwarding(self._forward)
            fwd.__enter__()
        try:
            try:
                _send(self.sock, message)
                msg = self._wait(fwd)
            except OSError:
                if lost is None:
                    raise
                raise lost() from None
        except BaseException:
            fwd.__exit__(None, None, None)
            self.close()
            raise
        return fwd, msg

    def _finish(self, fwd, msg, argv, exit_after, planned) -> tuple[int, program.Job | None]:
        """After a program's end: its status (or its job, stopped).  When the helper
        started the next `run`'s program (PLANNED: that follow-up, the environment and
        the directory), the signals the shell gets go on passing to the helper until
        that `run` comes for it (`started`); else the forwarding ends here."""
        status, job = self._done(msg, argv)
        if msg[3] is not None and planned is not None and planned[0] is not None:
            then, env, cwd = planned
            self.started, self._fwd = (then.argv, env, cwd), fwd
            self.busy = True   # a program runs: close() ends it
        else:
            fwd.__exit__(None, None, None)
        if job is None:
            fwd.end(status, exit_after)  # SIGTERM/SIGHUP/SIGQUIT: the shell leaves now
        return status, job

    def _wait(self, fwd: Forwarding):
        """The runner's answer; signals meanwhile (a Ctrl-C with no terminal to hand
        over, a kill) go to the runner, which passes them to the program."""
        self.busy = True
        try:
            fwd.wait_readable(self.sock)
            msg = self._recv()
        except BaseException:
            self.close()
            raise
        self.busy = False
        return msg

    def _done(self, msg, argv: list[str]) -> tuple[int, program.Job | None]:
        if msg[0] == "stopped":
            self.stopped.add(msg[2])
            return 128 + msg[1], RunnerJob(msg[2], argv, self)
        return msg[1], None

    def close(self) -> None:
        """End the helper (and any program of it still running or stopped)."""
        self._drop_started()   # the program started after the last one: ended below
        if self.busy and self.pid is not None:
            # A program is still running (the shell was interrupted): end it too.
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                    for child in f.read().split():
                        try:
                            os.killpg(int(child), _signal.SIGKILL)
                        except OSError:
                            pass
            except OSError:
                pass
            self.busy = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid is not None:
            spawn._wait(self.pid)
            self.pid = None


# --- the session's runner (Session holds it; these take and return plain values) -----

def run(current: Runner | None, entries: Sequence[spawn.Entry], argv: list[str],
        env: dict[str, str], cwd: str | None, root: bool, exit_after: bool,
        setup: program.Setup = program.NO_SETUP, then: FollowUp | None = None
        ) -> tuple[Runner | None, int, program.Job | None]:
    """Run ARGV through CURRENT when it serves ENTRIES and SETUP, else through a new
    runner (CURRENT ended).  Returns (the runner to keep, or None; status; job)."""
    r = current
    key = _key(entries, root, setup)
    if setup.sets_cwd:
        cwd = None  # the runner went there once, strictly (program.after_enter)
    if r is not None and (r.key != key or r.sock is None or not r.alive()):
        lost = r.started is not None
        r._drop_started()   # (a runner kept for its stopped jobs keeps no forwarding)
        close(r)  # another context, it died, or it was killed between two runs
        r = None
        if lost:   # it had started this program already: not run a second time
            raise _died("after it started this program (it may still be running)")
    if r is None:
        r = Runner(entries, root, setup)
    try:
        try:
            status, job = r.run(argv, env, cwd, exit_after, then)
        except _Gone:
            close(r)
            r = Runner(entries, root, setup)
            status, job = r.run(argv, env, cwd, exit_after, then)
    except BaseException:
        if r is not current:   # not the session's yet: nothing else would end it (and a
            r.close()          # next program it started, on a SignalExit)
        raise
    return (r if r.sock is not None else None), status, job


def close(r: Runner | None) -> None:
    """End runner R, unless a stopped job still needs it."""
    if r is not None and not r.stopped:
        r.close()


def close_jobs(jobs) -> None:
    """End the runners of JOBS (stopped programs too: the shell is ending)."""
    for job in jobs:
        if isinstance(job, RunnerJob) and job.runner is not None:
            job.runner.close()


def finished(current: Runner | None, job: RunnerJob) -> None:
    """After `fg`: a runner that is no longer the session's closes with its last job."""
    r = job.runner
    if r is not None and r is not current and not r.stopped:
        r.close()
