"""Signals sent to the shell (or to the run helper) while a program runs: passed on to
the program, none lost.

While it waits for the program (wait_child) or for a message about it (wait_readable),
the waiter sleeps in poll() on a wakeup pipe (_signal.set_wakeup_fd), not in waitpid()
or recv() themselves.  A Python handler runs between bytecodes: a signal that lands
after the interpreter's last check and before it enters a blocking call only sets a
flag, and the handler would wait for the call to return, which waits for the program,
which waits for the signal (a SIGTERM sent just as a program started hung nsshell:
tests/test_signals.py).  The interpreter's own C handler writes every signal's number
to the pipe at once, from whichever thread took it, so poll() returns and the handler
runs; a child's exit or stop writes SIGCHLD there too.  Not signals blocked and taken
with sigwaitinfo(): a mask is a thread's, and in a Python program using the API another
thread would take them.

Outside the main thread (a Python program's worker using the API) nothing is forwarded:
Python sets handlers in the main thread only.

A helper of our own is one thread, so there the mask is the process's: the run helper
keeps FORWARD and SIGCHLD blocked and takes them with sigwaitinfo() (wait_blocked):
two syscalls a program, no handlers to set and restore.
"""

from __future__ import annotations

import _signal
import os
import select   # imported here: the run helper waits inside a context (no imports there)
import sys

from ...errors import ExitRequest

# What `unshare --forward-signals` forwards, and SIGINT (a Ctrl-C the shell got because
# it had no terminal to hand over, or a `kill -INT`).
FORWARD = (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT)
# After forwarding one of these, the shell ends with the program's status (the signal
# was meant to end the shell); after SIGINT, the run's status decides (errexit), as in sh.
EXIT_AFTER = frozenset({_signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT})
_FORWARDED = frozenset(FORWARD)
# what the wakeup pipe carries that is the waiter's own (any other byte is passed on
# to the wakeup fd that was set before, an event loop's)
_OWN = frozenset(FORWARD + (_signal.SIGCHLD,))


class SignalExit(ExitRequest):
    """The shell got SIGNUM while a program ran, forwarded it, and the program has ended:
    leave with the program's STATUS (128+N if it died of signal N)."""

    def __init__(self, status: int, signum: int):
        super().__init__(status)
        self.args = (status, signum)
        self.signum = signum


def killpg_sender(pgid: int):
    """A SEND for Forwarding: the signal to process group PGID (gone: nothing)."""
    def send(signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass
    return send


def take_pending() -> list[int]:
    """The FORWARD signals pending (blocked) for this process, taken: they are gone."""
    taken = []
    for sig in _FORWARDED.intersection(_signal.sigpending()):
        if _signal.sigtimedwait((sig,), 0) is not None:
            taken.append(sig)
    return taken


# What a single-threaded helper keeps blocked for wait_blocked: a child's exit or stop
# (SIGCHLD stays pending while blocked, even with its default "ignore") and FORWARD.
HELPER_BLOCKED = FORWARD + (_signal.SIGCHLD,)


def wait_blocked(pid: int, send) -> int:
    """waitpid(PID, WUNTRACED)'s status in a single-threaded helper that keeps
    HELPER_BLOCKED blocked: each FORWARD signal pending or sent meanwhile goes to
    SEND(signum).  What comes once PID has ended or stopped waits, still blocked: the
    caller drops it (take_pending) or keeps it for the next program."""
    wanted = HELPER_BLOCKED
    while True:
        # sleep first: PID's end raises SIGCHLD after it was started, and a blocked
        # signal stays pending, so nothing is missed (an older SIGCHLD only wakes it once)
        signum = _signal.sigwaitinfo(wanted).si_signo
        if signum != _signal.SIGCHLD:
            send(signum)
            continue
        done, status = os.waitpid(pid, os.WUNTRACED | os.WNOHANG)
        if done:
            return status


def _main_thread() -> bool:
    threading = sys.modules.get("threading")
    return threading is None or threading.current_thread() is threading.main_thread()


# A wakeup pipe (read end, write end, a poll registered on the read end) kept for the
# next `with` of this process: one per program would cost ~6 us each.  Its pid: a
# forked child makes its own (the run helper closes the fds it inherits).
_spare: list = [0, None]


def _take_pipe() -> tuple:
    pid = os.getpid()
    if _spare[0] == pid and _spare[1] is not None:
        pipe, _spare[1] = _spare[1], None
        return pipe
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    poll = select.poll()
    poll.register(r, select.POLLIN)
    return r, w, poll


def _give_pipe(r: int, w: int, poll) -> None:
    if _spare[1] is None:
        _spare[:] = [os.getpid(), (r, w, poll)]
    else:
        os.close(r)
        os.close(w)


def _woken(_signum, _frame) -> None:
    """SIGCHLD's handler while waiting: its byte in the wakeup pipe is what counts."""


class Forwarding:
    """`with Forwarding(send) as f:` while a program runs: the FORWARD signals sent to
    this process are passed to SEND(signum) instead of acting on it, f.got lists them.
    Wait with f.wait_child() or f.wait_readable(), never in a blocking call of your own.

    block() blocks them before the program is started; one sent in between then waits
    and is passed on as the `with` begins.  The mask, handlers and wakeup fd the process
    had are restored at the end.  (The run helper, one thread, uses wait_blocked.)"""

    def __init__(self, send=None) -> None:
        self.send = send
        self.got: list[int] = []
        self._before_block: set | None = None  # the mask before block(), if it blocked
        self._restore: tuple | None = None     # (mask, handlers, wakeup fd) while entered
        self._pipe: tuple[int, int] | None = None
        self._poll = None
        self._others = b""   # bytes of other signals read from the wakeup pipe
        self.reported = False  # wait_child's status came from its REPORT pipe

    def block(self) -> "Forwarding":
        # _signal, not signal: the module's wrappers turn every number into an enum
        # member and back (~20 us of the shell's time per program).
        if self._before_block is None and _main_thread():
            self._before_block = _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARD)
        return self

    def __enter__(self) -> "Forwarding":
        if not _main_thread():
            return self
        r, w, poll = _take_pipe()
        handlers = {}
        try:
            for sig in FORWARD:
                handlers[sig] = _signal.signal(sig, self._handler)
            wakeup = _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except BaseException:
            for sig, old in handlers.items():
                _signal.signal(sig, old if old is not None else _signal.SIG_DFL)
            _give_pipe(r, w, poll)
            self.unblock()
            raise
        self._pipe = (r, w)
        self._poll = poll
        # let them in: one that came while blocked reaches the handler now
        mask = _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARD)
        if self._before_block is not None:
            mask, self._before_block = self._before_block, None
        self._restore = (mask, handlers, wakeup)
        return self

    def __exit__(self, *exc) -> None:
        if self._restore is None:
            self.unblock()
            return
        (mask, handlers, wakeup), self._restore = self._restore, None
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        for sig, old in handlers.items():
            _signal.signal(sig, old if old is not None else _signal.SIG_DFL)
        _signal.set_wakeup_fd(wakeup)
        others, self._others = self._others + self._drain(), b""
        _give_pipe(*self._pipe, self._poll)
        self._pipe = self._poll = None
        if others and wakeup >= 0:
            try:
                os.write(wakeup, others)
            except OSError:
                pass

    def unblock(self) -> None:
        """Undo block() when the `with` does not follow (no program was started)."""
        if self._before_block is not None:
            mask, self._before_block = self._before_block, None
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)

    def _handler(self, signum, _frame) -> None:
        self.got.append(signum)
        if self.send is not None:
            self.send(signum)

    def _drain(self) -> bytes:
        """Empty the wakeup pipe; the bytes of signals that are not the waiter's."""
        others = b""
        while True:
            try:
                data = os.read(self._pipe[0], 256)
            except BlockingIOError:
                return others
            if not data:
                return others
            others += bytes(b for b in data if b not in _OWN)

    def _sleep(self) -> list:
        """poll() until the wakeup pipe or a registered fd is ready; the ready fds.
        The handlers of the signals that woke it run as it returns."""
        ready = self._poll.poll()
        wakeup = self._pipe[0]
        if any(fd == wakeup for fd, _ in ready):   # (empty otherwise: no read to fail)
            self._others += self._drain()
        return ready

    def wait_child(self, pid: int, options: int = os.WUNTRACED, report: int | None = None) -> int:
        """waitpid(PID, OPTIONS)'s status, passing signals on meanwhile.  REPORT: a pipe
        on which PID may write its exit code (one byte) before it exits: then that exit
        status is returned at once, `reported` is set, and PID is still to be reaped."""
        self.reported = False
        if self._restore is None:   # not forwarding: an ordinary wait
            while True:
                try:
                    return os.waitpid(pid, options)[1]
                except InterruptedError:
                    continue
        handlers = self._restore[1]
        if _signal.SIGCHLD not in handlers:   # a child's exit or stop wakes the poll too
            handlers[_signal.SIGCHLD] = _signal.signal(_signal.SIGCHLD, _woken)
        if report is not None:
            self._poll.register(report, select.POLLIN)
        try:
            while True:
                done, status = os.waitpid(pid, options | os.WNOHANG)
                if done:
                    return status
                ready = self._sleep()
                if report is not None and any(f == report for f, _ in ready):
                    code = os.read(report, 1)
                    if code:
                        self.reported = True
                        return code[0] << 8   # as waitpid gives an exit code
                    # gone without a word (killed): waitpid says how
                    self._poll.unregister(report)
                    report = None
        finally:
            if report is not None:
                self._poll.unregister(report)

    def wait_readable(self, fd) -> None:
        """Return once FD (an fd or a socket) can be read, passing signals on meanwhile."""
        if self._restore is None:
            return   # not forwarding: the caller's read waits
        fileno = fd if isinstance(fd, int) else fd.fileno()
        self._poll.register(fileno, select.POLLIN)
        try:
            while not any(f == fileno for f, _ in self._sleep()):
                pass
        finally:
            self._poll.unregister(fileno)

    def end(self, status: int, exit_after=EXIT_AFTER) -> None:
        """After the program ended with STATUS: SignalExit if a signal in EXIT_AFTER came."""
        for sig in self.got:
            if sig in exit_after:
                raise SignalExit(status, sig)
