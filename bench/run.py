#!/usr/bin/env python3
"""nsshell's benchmark suite: whole processes, each beside its peer, in one invocation.

    .venv/bin/python bench/run.py                 # every case
    .venv/bin/python bench/run.py startup run     # some cases
    .venv/bin/python bench/run.py --runs 5 --list

Each case runs nsshell and its peers (util-linux, iproute2, a bare Python)
alternately, several runs each, and compares medians.  The table goes to
stdout, the figures to bench/results/LATEST.json (and a dated copy).  Exit
status 0 when every case that could run met its target, 1 otherwise.

Needs root (namespaces are created for real).  Every case cleans up after
itself: processes, namespaces, /run/netns entries.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".venv"
NSSHELL = str(VENV / "bin" / "nsshell")
# The interpreter nsshell runs on, without pyenv's shell-script shim in front of it.
PYTHON = os.path.realpath(VENV / "bin" / "python3")
RESULTS = HERE / "results"

SEVEN = "user+mnt+pid+net+uts+ipc+cgroup"


def run_env() -> dict[str, str]:
    """The environment of every timed process: a normal install caches bytecode, so
    PYTHONDONTWRITEBYTECODE (set in some CI images) is dropped; no colours, no pager."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_COLOR"] = "1"
    return env


class Skip(Exception):
    """A case that cannot run here (a missing command, plugin or tool)."""


class Failed(Exception):
    """A timed command failed: the case has no figures."""


# --- timing ------------------------------------------------------------------

def run_once(argv: list[str], env: dict[str, str], cwd: str | None = None,
             capture: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise Failed(f"{' '.join(argv)[:120]} exited {proc.returncode}: "
                     f"{proc.stderr.strip().splitlines()[-1:] or ''}")
    return elapsed, proc.stdout if capture else ""


def alternate(commands: dict[str, list[str]], runs: int, env: dict[str, str],
              between: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run each command RUNS times, alternating (the order flips every round so no
    command always follows the same one); one untimed warm-up run each first."""
    for argv in commands.values():
        run_once(argv, env)
        if between:
            between()
    times: dict[str, list[float]] = {k: [] for k in commands}
    labels = list(commands)
    for i in range(runs):
        for label in (labels if i % 2 == 0 else labels[::-1]):
            times[label].append(run_once(commands[label], env)[0])
            if between:
                between()
    return times


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class Row:
    case: str
    what: str
    median_ms: float | None
    peer: str = ""
    peer_ms: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""
    runs: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.median_ms is None or not self.peer_ms:
            return None
        return round(self.median_ms / self.peer_ms, 2)


def compare(case: str, times: dict[str, list[float]], subject: str, peer: str,
            target: str = "", ok: bool | None = None, note: str = "") -> Row:
    return Row(case, subject, ms(statistics.median(times[subject])), peer,
               ms(statistics.median(times[peer])), target, ok, note, len(times[subject]),
               {"runs_ms": [ms(t) for t in times[subject]],
                "peer_runs_ms": [ms(t) for t in times[peer]]})


# --- helpers the cases share -----------------------------------------------------

def has_command(words: str) -> bool:
    """Does this nsshell know the command WORDS (e.g. "ls", "net veth")?"""
    proc = subprocess.run([NSSHELL, "-c", f"help {words}"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=run_env())
    return proc.returncode == 0


def has_option(words: str, option: str) -> bool:
    proc = subprocess.run([NSSHELL, "-c", f"help {words}"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=run_env())
    return proc.returncode == 0 and option in proc.stdout


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


class Holder:
    """A process (started by unshare) that keeps a set of namespaces; killed at the end."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self.inner = self._inner_pid()

    def _inner_pid(self) -> int:
        """The pid of `sleep` that `unshare --fork` started (its namespaces are the full set)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    with open(f"/proc/{kids[0]}/comm") as f:
                        if f.read().strip() == "sleep":
                            return int(kids[0])
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise Failed(f"{' '.join(self.proc.args)} exited {self.proc.returncode}")
            time.sleep(0.01)
        raise Failed("the unshare holder did not start")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


# --- the cases -----------------------------------------------------------------

def case_startup(runs: int, tmp: Path) -> list[Row]:
    env = run_env()
    cmds = {
        "nsshell -c ctx": [NSSHELL, "-c", "ctx"],
        "nsshell -c 'new net; run true'": [NSSHELL, "-c", "new net; run true"],
        "unshare -n true": ["unshare", "-n", "true"],
        "python3 -c pass": [PYTHON, "-c", "pass"],
    }
    t = alternate(cmds, runs, env)
    ctx_ms = ms(statistics.median(t["nsshell -c ctx"]))
    row = compare("startup", t, "nsshell -c ctx", "python3 -c pass", "<= 3x python3")
    row.ok = row.ratio is not None and row.ratio <= 3.0
    return [
        row,
        Row("startup", "nsshell -c ctx", ctx_ms, target="< 80 ms", ok=ctx_ms < 80,
            runs=len(t["nsshell -c ctx"])),
        compare("startup", t, "nsshell -c ctx", "unshare -n true"),
        compare("startup", t, "nsshell -c 'new net; run true'", "unshare -n true"),
        compare("startup", t, "nsshell -c 'new net; run true'", "python3 -c pass"),
    ]


def _run_case(name: str, types: str, unshare_flags: list[str], runs: int, tmp: Path,
              n: int = 200) -> list[Row]:
    env = run_env()
    script = write(tmp / f"{name}.nss",
                   f"new {types}\nmap root\n" + "run true\n" * n)
    holder = Holder(["unshare", *unshare_flags, "--map-root-user", "--fork", "--kill-child",
                     "sleep", "infinity"])
    try:
        loop = (f"for i in $(seq {n}); do nsenter -a -t {holder.inner} true "
                "|| exit 1; done")
        cmds = {f"nsshell: new {types}; {n}x run true": [NSSHELL, script],
                f"bash: {n}x nsenter -a -t PID true": ["bash", "-c", loop]}
        t = alternate(cmds, runs, env)
    finally:
        holder.close()
    subject, peer = list(cmds)
    row = compare(name, t, subject, peer, "<= 0.5x the nsenter loop", None)
    row.ok = row.ratio is not None and row.ratio <= 0.5
    row.note = f"{ms(statistics.median(t[subject]) / n)} vs {ms(statistics.median(t[peer]) / n)} ms per run"
    return [row]


def case_run(runs: int, tmp: Path) -> list[Row]:
    return _run_case("run", SEVEN, ["-U", "-m", "-p", "-n", "-u", "-i", "-C"], runs, tmp)


def case_run_time(runs: int, tmp: Path) -> list[Row]:
    """The same with the eighth type, time (Linux 5.6+)."""
    if not os.path.exists("/proc/self/ns/time"):
        raise Skip("no time namespaces on this kernel")
    return _run_case("run+time", SEVEN + "+time",
                     ["-U", "-m", "-p", "-n", "-u", "-i", "-C", "-T"], runs, tmp)


@contextlib.contextmanager
def _crowd():
    """1,000 extra processes over 300 namespaces (bench/crowd.py) while the block runs."""
    crowd = subprocess.Popen([PYTHON, str(HERE / "crowd.py"), "1000", "300"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if not crowd.stdout.readline().startswith("ready"):
            raise Failed("the crowd of 1,000 processes did not start")
        yield
    finally:
        crowd.stdin.close()
        crowd.wait()


def case_discovery(runs: int, tmp: Path) -> list[Row]:
    if not has_command("ls"):
        raise Skip("nsshell has no `ls` command yet")
    env = run_env()
    with _crowd():
        cmds = {"nsshell --json -c ls": [NSSHELL, "--json", "-c", "ls"],
                "lsns -J": ["lsns", "-J"]}
        # Both must see the crowd: count what each reports once.
        _, out = run_once(cmds["nsshell --json -c ls"], env, capture=True)
        seen_ns = _count_namespaces(out)
        _, out = run_once(cmds["lsns -J"], env, capture=True)
        lsns_ns = len(json.loads(out)["namespaces"])
        t = alternate(cmds, runs, env)
    row = compare("discovery", t, *cmds, "<= 1.0x lsns (a superset)", None,
                  f"1,000 extra processes over 300 namespaces; nsshell listed {seen_ns}, "
                  f"lsns {lsns_ns} namespaces")
    row.ok = (row.ratio is not None and row.ratio <= 1.0
              and isinstance(seen_ns, int) and seen_ns >= lsns_ns)
    return [row]


def case_top(runs: int, tmp: Path) -> list[Row]:
    """One `top` refresh (the scan and tree the view's thread runs every interval), its
    CPU measured inside one process, with the crowd of the discovery case running."""
    if not has_command("top"):
        raise Skip("nsshell has no `top` command yet")
    env = run_env()
    with _crowd():
        _, out = run_once([str(VENV / "bin" / "python"), str(HERE / "top_refresh.py"), str(runs)],
                          env, capture=True)
    data = json.loads(out)
    cpu = statistics.mean(data["cpu_ms"])    # what the view costs over time: full and light
    full = [c for c, f in zip(data["cpu_ms"], data["full"]) if f]
    light = [c for c, f in zip(data["cpu_ms"], data["full"]) if not f]
    share = cpu / 1000.0 * 100          # of one core, at the default interval of 1 s
    return [Row("top", "one refresh (CPU, mean)", round(cpu, 1), target="< 10% of a core at 1 s",
                ok=share < 10, runs=len(data["cpu_ms"]),
                note=f"{share:.1f}% of a core at 1 s; full scan {statistics.median(full):.1f} ms "
                     f"(every 5th), light {statistics.median(light):.1f} ms; {data['rows']} rows; "
                     "1,000 extra processes over 300 namespaces",
                extra={"cpu_ms": data["cpu_ms"], "wall_ms": data["wall_ms"], "full": data["full"]})]


def _count_namespaces(text: str) -> int | str:
    try:
        data = json.loads(text)
    except ValueError:
        return "?"
    if isinstance(data, dict):
        for key in ("namespaces", "ls", "rows"):
            if isinstance(data.get(key), list):
                return len(data[key])
        lists = [v for v in data.values() if isinstance(v, list)]
        return len(lists[0]) if lists else "?"
    return len(data) if isinstance(data, list) else "?"


LAB_N = 100


def _lab_nsshell(n: int, count: bool = False) -> str:
    """The bridge lab as an nsshell script: a hub namespace with a bridge, N namespaces
    each with a veth into the hub (a port of the bridge), an address, links up.
    Teardown: `close` everything (the namespaces die, their veths with them).
    As a person writes it, one `new net as nI --no-join` per namespace; COUNT: one
    `new net --count N` (written for the benchmark)."""
    lines = ["new net as hub --no-join", "net bridge hub br0", "net up hub br0"]
    if count:
        lines.append(f"new net --count {n} as n")
    else:
        lines += [f"new net as n{i} --no-join" for i in range(1, n + 1)]
    for i in range(1, n + 1):
        lines += [f"net veth n{i}:eth0 hub:v{i}",
                  f"net addr n{i} eth0 10.9.{i // 250}.{i % 250 + 1}/16",
                  f"net up n{i} lo eth0", f"net up hub v{i}"]
    lines.append("net bridge hub br0 " + " ".join(f"v{i}" for i in range(1, n + 1)))
    lines += [f"close n{i}" for i in range(1, n + 1)] + ["close hub"]
    return "\n".join(lines) + "\n"


def _lab_ip(n: int, prefix: str) -> str:
    """The same lab with iproute2, as people write it: one `ip` per step, named netns."""
    hub = f"{prefix}hub"
    lines = ["set -e", f"ip netns add {hub}",
             f"ip -n {hub} link add br0 type bridge", f"ip -n {hub} link set br0 up"]
    for i in range(1, n + 1):
        lines.append(f"ip netns add {prefix}n{i}")
    for i in range(1, n + 1):
        ns = f"{prefix}n{i}"
        lines += [f"ip -n {ns} link add eth0 type veth peer name v{i} netns {hub}",
                  f"ip -n {ns} addr add 10.9.{i // 250}.{i % 250 + 1}/16 dev eth0",
                  f"ip -n {ns} link set lo up", f"ip -n {ns} link set eth0 up",
                  f"ip -n {hub} link set v{i} up"]
    lines += [f"ip -n {hub} link set v{i} master br0" for i in range(1, n + 1)]
    lines += [f"ip netns del {prefix}n{i}" for i in range(1, n + 1)] + [f"ip netns del {hub}"]
    return "\n".join(lines) + "\n"


def _netns_left(prefix: str) -> list[str]:
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def _net_namespaces_allocated() -> int | None:
    """Network namespaces the kernel has allocated, dead ones still being torn down
    included (the net_namespace slab's active objects; root only)."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _wait_net_teardown(limit: float = 3.0) -> None:
    """Wait until the kernel has torn down the namespaces of the run before (it does so
    in a worker after the last reference goes, ~1-2 ms each with a veth), so a run is
    not timed while the previous one's cleanup holds a CPU and the rtnl lock: until
    the count of allocated network namespaces has stopped falling for 0.2 s."""
    deadline = time.monotonic() + limit
    last, steady_since = _net_namespaces_allocated(), time.monotonic()
    if last is None:
        time.sleep(1.0)
        return
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = _net_namespaces_allocated()
        if now is not None and now < last:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= 0.2:
            return


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _undo_netns_dir(was_mount: bool, existed: bool) -> None:
    """`ip netns add` leaves /run/netns a bind mount of itself: undo that when the bench
    made it (and it is empty again), as the test suite does for its own runs."""
    netns = "/run/netns"
    try:
        if was_mount or os.listdir(netns):
            return
    except FileNotFoundError:
        return
    while netns in _mount_points():
        if subprocess.run(["umount", netns], stderr=subprocess.DEVNULL).returncode != 0:
            return
    if not existed:
        os.rmdir(netns)


def case_lab(runs: int, tmp: Path) -> list[Row]:
    for words in ("net veth", "net bridge", "net addr", "net up"):
        if not has_command(words):
            raise Skip(f"nsshell has no `{words}` command yet (the net plugin)")
    env = run_env()
    prefix = f"nsbench{os.getpid()}"
    lines = f"nsshell: {LAB_N}-namespace bridge lab, one command per line"
    count = f"nsshell: the same with `new net --count {LAB_N}`"
    cmds = {lines: [NSSHELL, write(tmp / "lab.nss", _lab_nsshell(LAB_N))],
            count: [NSSHELL, write(tmp / "lab-count.nss", _lab_nsshell(LAB_N, count=True))],
            "bash: the same with ip": ["bash", write(tmp / "lab.sh", _lab_ip(LAB_N, prefix))]}

    t, left = _alternate_netns(cmds, runs, env, prefix)
    rows = []
    for subject in (lines, count):
        row = compare("bridge-lab", t, subject, "bash: the same with ip", "nsshell >= 5x faster",
                      None, "build and tear down" + (f"; LEFT BEHIND: {left}" if left else ""))
        row.ok = row.ratio is not None and row.ratio <= 0.2 and not left
        rows.append(row)
    return rows


def _alternate_netns(cmds: dict, runs: int, env: dict, prefix: str) -> tuple[dict, list[str]]:
    """alternate() over CMDS, whose peer makes `ip netns` names starting with PREFIX: those
    are deleted (and the kernel's teardown waited for) between runs and at the end, and
    /run/netns is left as it was.  Returns the times and the names left behind."""
    def clean() -> None:
        for name in _netns_left(prefix):
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        _wait_net_teardown()

    netns_was_mount = "/run/netns" in _mount_points()
    netns_existed = os.path.isdir("/run/netns")
    try:
        t = alternate(cmds, runs, env, between=clean)
    finally:
        clean()
        _undo_netns_dir(netns_was_mount, netns_existed)
    return t, _netns_left(prefix)


NEW_N = 100


def case_new(runs: int, tmp: Path) -> list[Row]:
    """100 lines of `new net as aN --no-join`, then 100 of `close aN`, against 100 `ip netns
    add` and 100 `ip netns del` in a bash script; an nsshell script of one `ctx` in the same
    rounds gives the start-up to subtract for the cost of one `new` + `close`."""
    env = run_env()
    prefix = f"nsbnew{os.getpid()}a"
    script = ("".join(f"new net as a{i} --no-join\n" for i in range(1, NEW_N + 1))
              + "".join(f"close a{i}\n" for i in range(1, NEW_N + 1)))
    ip = ("set -e\n" + "".join(f"ip netns add {prefix}{i}\n" for i in range(1, NEW_N + 1))
          + "".join(f"ip netns del {prefix}{i}\n" for i in range(1, NEW_N + 1)))
    subject = f"nsshell: {NEW_N} x `new net as aN --no-join` + {NEW_N} x close"
    peer = f"bash: {NEW_N} x ip netns add + {NEW_N} x ip netns del"
    cmds = {subject: [NSSHELL, write(tmp / "new.nss", script)],
            peer: ["bash", write(tmp / "new.sh", ip)],
            "nsshell: ctx": [NSSHELL, write(tmp / "ctx.nss", "ctx\n")]}

    t, left = _alternate_netns(cmds, runs, env, prefix)
    each = (statistics.median(t[subject]) - statistics.median(t["nsshell: ctx"])) / NEW_N
    row = compare("new", t, subject, peer, "nsshell >= 3x faster", None,
                  f"one `new net` + `close` ~{ms(each)} ms after start-up (goal: `new` <= 1 ms)"
                  + (f"; LEFT BEHIND: {left}" if left else ""))
    row.ok = row.ratio is not None and row.ratio <= 1 / 3 and not left
    row.extra["per_namespace_ms"] = ms(each)
    return [row]


def _pty_latency(line: str, runs: int, env: dict[str, str], setup: str, label: str,
                 pasted: bool = False) -> list[float]:
    """Seconds from Enter at nsshell's prompt in a pseudo-terminal to the next prompt,
    RUNS times (one untimed first), after SETUP made the context LABEL.  LINE is typed
    and drawn first, as a person types it, and only Enter is timed; PASTED: LINE and
    Enter arrive together and the keys of the line are timed too."""
    try:
        import pexpect
    except ImportError:
        raise Skip("pexpect is not installed (pip install pexpect)") from None
    esc = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"
    with tempfile.TemporaryDirectory(prefix="nsbench-repl.") as home:
        penv = dict(env, HOME=home, XDG_CONFIG_HOME=f"{home}/config",
                    XDG_STATE_HOME=f"{home}/state", TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        penv.pop("NO_COLOR", None)
        child = pexpect.spawn(NSSHELL, [], env=penv, encoding="utf-8", timeout=30,
                              dimensions=(40, 160))
        # pexpect sleeps 50 ms before every send by default: inside the timed span, it
        # was most of what this row measured
        child.delaybeforesend = None
        try:
            child.expect("host" + esc + ">")
            child.send(setup + "\r")
            prompt = re.escape(label) + esc + ">"
            child.expect(prompt)
            times = []
            for i in range(runs + 1):
                if not pasted:
                    time.sleep(0.05)
                    child.send(line)
                time.sleep(0.05)   # let the prompt finish drawing; then read it all
                try:
                    child.read_nonblocking(1 << 20, timeout=0.05)
                except pexpect.TIMEOUT:
                    pass
                start = time.perf_counter()
                child.send("\r" if not pasted else line + "\r")
                child.expect("\r\n")       # the line accepted
                child.expect(prompt)        # ... and the next prompt drawn
                if i:
                    times.append(time.perf_counter() - start)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            raise Failed(f"the REPL did not answer: {type(e).__name__}") from None
        finally:
            for _ in range(2):    # Ctrl-D; a second one when it warns of sets made here
                if not child.isalive():
                    break
                child.sendcontrol("d")
                try:
                    child.expect(pexpect.EOF, timeout=5)
                except (pexpect.TIMEOUT, pexpect.EOF):
                    pass
            child.close(force=True)
    return times


def case_repl(runs: int, tmp: Path) -> list[Row]:
    """`run true` typed at the prompt (the terminal path: the program gets the terminal)
    in a seven-type context, from Enter to the next prompt, against one `nsenter -a -t PID
    true` as a process; an `echo` line gives the REPL's own floor."""
    env = run_env()
    setup = f"new {SEVEN} as bx; map root"
    holder = Holder(["unshare", "-U", "-m", "-p", "-n", "-u", "-i", "-C", "--map-root-user",
                     "--fork", "--kill-child", "sleep", "infinity"])
    try:
        peer = "nsenter -a -t PID true"
        t = alternate({peer: ["nsenter", "-a", "-t", str(holder.inner), "true"]}, runs, env)
    finally:
        holder.close()
    subject = "REPL: run true (Enter to prompt)"
    t[subject] = _pty_latency("run true", runs, env, setup, "bx")
    t["REPL: echo x (Enter to prompt)"] = _pty_latency("echo x", runs, env, setup, "bx")
    t["REPL: run true pasted with its Enter"] = _pty_latency("run true", runs, env, setup, "bx",
                                                             pasted=True)
    row = compare("repl", t, subject, peer, "<= 2x nsenter", None,
                  "seven-type context; the line typed first, Enter timed")
    row.ok = row.ratio is not None and row.ratio <= 2.0
    floor = compare("repl", t, "REPL: echo x (Enter to prompt)", peer,
                    note="the REPL's own cost of a line (no program)")
    pasted = compare("repl", t, "REPL: run true pasted with its Enter", peer,
                     note="the keys of the line inside the span too")
    return [row, floor, pasted]


SCALE_N = 10_000
_MARK = re.compile(r"^@(\w+) ([\d.]+)$", re.M)


def _scale_script(n: int, batch: bool) -> str:
    stamp = "run sh -c 'echo @{0} $(date +%s.%N)'\n"
    # nsshell's RSS: the program's parent is nsshell, or its `run` helper (then its parent).
    rss = ("run sh -c 'p=$PPID; [ \"$(cat /proc/$p/comm)\" = nsshell-run ] && "
           "p=$(sed -n \"s/^PPid:[[:space:]]*//p\" /proc/$p/status); "
           "echo @{0} $(sed -n \"s/^VmRSS:[^0-9]*\\([0-9]*\\) kB/\\1/p\" /proc/$p/status)'\n")
    text = rss.format("rss0") + stamp.format("t0")
    if batch:
        text += f"new net --count {n} --no-join\n"
    else:
        text += "new net --no-join\n" * n
    text += stamp.format("t1") + rss.format("rss1")
    # nsshell's own soft limit (programs it runs get the limit it started with): the
    # program's grandparent is nsshell, through the run helper or the forked child
    text += ("run sh -c 'p=$(ps -o ppid= -p $PPID); "
             "set -- $(grep Max.open.files /proc/$((p))/limits); echo @nofile $4'\n")
    text += "handles\n" + stamp.format("t2")
    text += "".join(f"close ns{i}\n" for i in range(1, n + 1))
    text += stamp.format("t3") + "handles\n"
    return text


def case_scale(runs: int, tmp: Path) -> list[Row]:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    batch = has_option("new", "--count")
    env = run_env()
    script = write(tmp / "scale.nss", _scale_script(SCALE_N, batch))
    # Start from the usual soft limit (1024): nsshell raises it itself when it must.
    start_soft = min(1024, hard)
    argv = ["prlimit", f"--nofile={start_soft}:{hard if hard != resource.RLIM_INFINITY else 'unlimited'}",
            NSSHELL, script]
    rows = []
    samples: dict[str, list[float]] = {"create": [], "handles": [], "close": [], "rss": [], "total": []}
    for _ in range(max(1, runs // 3)):
        total, out = run_once(argv, env, capture=True)
        marks = {k: float(v) for k, v in _MARK.findall(out)}
        raised = int(marks.get("nofile", 0))
        samples["create"].append(marks["t1"] - marks["t0"])
        samples["handles"].append(marks["t2"] - marks["t1"])
        samples["close"].append(marks["t3"] - marks["t2"])
        samples["rss"].append((marks["rss1"] - marks["rss0"]) * 1024 / SCALE_N)
        samples["total"].append(total)
    med = {k: statistics.median(v) for k, v in samples.items()}
    how = "new net --count" if batch else "one `new net` per namespace"
    limit = f"RLIMIT_NOFILE soft {start_soft} -> {raised} by nsshell (hard {hard})"
    rows.append(Row("scale", f"create {SCALE_N:,} net namespaces ({how})", ms(med["create"]),
                    note=f"{ms(med['create']) / SCALE_N * 1000:.0f} us each; {limit}",
                    runs=len(samples["create"]), extra={"runs_s": samples["create"]}))
    rows.append(Row("scale", "memory per held namespace", None, target="< 5 KiB",
                    ok=med["rss"] < 5 * 1024, note=f"{med['rss'] / 1024:.2f} KiB (RSS growth)",
                    runs=len(samples["rss"]), extra={"bytes": samples["rss"]}))
    rows.append(Row("scale", f"`handles` over {SCALE_N:,}", ms(med["handles"]), target="< 2 s",
                    ok=med["handles"] < 2, runs=len(samples["handles"]),
                    extra={"runs_s": samples["handles"]}))
    rows.append(Row("scale", f"close {SCALE_N:,} (one `close` each)", ms(med["close"]),
                    runs=len(samples["close"]), extra={"runs_s": samples["close"]}))
    rows.append(Row("scale", "the whole script", ms(med["total"]), runs=len(samples["total"])))
    return rows


CASES: dict[str, tuple[Callable[[int, Path], list[Row]], str]] = {
    "startup": (case_startup, "nsshell -c ctx / new net; run true vs unshare -n true, python3 -c pass"),
    "run": (case_run, f"200 run true in {SEVEN} vs a bash loop of nsenter -a"),
    "run+time": (case_run_time, "the same with a time namespace too"),
    "discovery": (case_discovery, "nsshell --json -c ls vs lsns -J, 1,000 processes over 300 namespaces"),
    "top": (case_top, "one top refresh's CPU with 1,000 processes over 300 namespaces"),
    "lab": (case_lab, "the 100-namespace bridge lab (one command per line; --count) vs the ip script"),
    "new": (case_new, "100 lines of new net as aN --no-join + close vs ip netns add + del"),
    "repl": (case_repl, "run true at the prompt through a pseudo-terminal vs nsenter -a -t PID true"),
    "scale": (case_scale, "10,000 held network namespaces: time, memory, handles, close"),
}
DEFAULT_RUNS = {"startup": 21, "run": 9, "run+time": 9, "discovery": 7, "top": 20, "lab": 3,
                "new": 5, "repl": 15, "scale": 3}


# --- output ----------------------------------------------------------------------

def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.2f} s" if v >= 10_000 else f"{v:.1f} ms"


def table(rows: list[Row]) -> str:
    head = ["case", "nsshell", "median", "peer", "median", "ratio", "target", "ok", "note"]
    body = []
    for r in rows:
        ok = {True: "yes", False: "NO", None: ""}[r.ok]
        body.append([r.case, r.what, fmt_ms(r.median_ms), r.peer, fmt_ms(r.peer_ms),
                     f"{r.ratio:.2f}" if r.ratio is not None else "", r.target, ok, r.note])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict:
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg": os.getloadavg(),
            "util-linux": subprocess.run(["unshare", "--version"], capture_output=True,
                                         text=True).stdout.strip(),
            "iproute2": subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", help="cases to run (default: all)")
    p.add_argument("--runs", type=int, help="runs of each command (default: per case)")
    p.add_argument("--list", action="store_true", help="list the cases")
    p.add_argument("--out", help="JSON file to write (default bench/results/LATEST.json)")
    opts = p.parse_args(argv)
    if opts.list:
        for name, (_, what) in CASES.items():
            print(f"{name:10} {what}")
        return 0
    unknown = [c for c in opts.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; --list shows them")
    if os.geteuid() != 0:
        print("bench: needs root (it creates namespaces)", file=sys.stderr)
        return 2
    if not os.access(NSSHELL, os.X_OK):
        print(f"bench: {NSSHELL} missing; run sh scripts/setup.sh", file=sys.stderr)
        return 2
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="nsbench.") as d:
        for name in opts.cases or list(CASES):
            fn = CASES[name][0]
            runs = opts.runs or DEFAULT_RUNS[name]
            print(f"bench: {name} ({runs} runs each) ...", file=sys.stderr, flush=True)
            try:
                rows += fn(runs, Path(d))
            except Skip as e:
                skipped[name] = str(e)
                rows.append(Row(name, "(skipped)", None, note=str(e)))
            except Failed as e:
                failed[name] = str(e)
                rows.append(Row(name, "(failed)", None, ok=False, note=str(e)))
    print(table(rows))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs; other work on the machine moves the medians)")
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
           "rows": [dict(vars(r), ratio=r.ratio) for r in rows],
           "skipped": skipped, "failed": failed}
    RESULTS.mkdir(exist_ok=True)
    out = Path(opts.out) if opts.out else RESULTS / "LATEST.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if not opts.out:
        shutil.copy(out, RESULTS / f"{doc['when'].replace(':', '')}.json")
    print(f"\nbench: figures in {out}", file=sys.stderr)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
