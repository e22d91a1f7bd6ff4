"""The fuzz runner: generated command lines through `-c`, script files and stdin, as
root inside a throwaway namespace sandbox and as uid 65534 on the host.

    .venv/bin/python tests/fuzz/run.py --count 5000          # as root; prints the counts
    .venv/bin/python tests/fuzz/run.py --count 300 --json    # one JSON document

Each nsshell process gets a batch of lines (-k: a failing line does not stop the
rest) and a timeout.  Every output is classified:

  traceback       "Traceback (most recent call last)" on stderr
  internal        an `internal error` line, or exit status 70 (errors.EXIT_INTERNAL)
  hang            the process outlived its timeout (it is killed)
  killed          the process died of a signal (the OOM killer's SIGKILL, a crash)
  stray           a line on stderr that is not one `nsshell: ...` error (an error that
                  broke over two lines; the programs `run` is given write nothing there)
  leftovers       after the batch and a clean-up (`unpersist` of every name the lines
                  use), anything the batch left: mounts, /run/netns or store entries,
                  processes, files in the scratch directory

Sandboxes.  Root: `unshare --mount --net --uts --ipc --pid --fork --mount-proc`, with a
private tmpfs on /run and /tmp, so nothing a line does (hostname --host, a persisted
set, a mount) reaches the host, and the sandbox's end kills whatever is left.
Rootless: uid 65534 through setpriv, in the host's namespaces except a private mount
namespace with its own /tmp (the scratch directory), so it sees the host as any user
does; its processes carry a mark in their environment to be found afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from gen import FZ, generate  # noqa: E402

NSSHELL = os.path.join(ROOT, ".venv", "bin", "nsshell")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
MARK = "NSSHELL_FUZZ_MARK"
INTERNAL_STATUS = 70
# the names and places the generated lines persist under (gen.py), for the clean-up
CLEAN_NAMES = ["fz0", "fz1", "fz2", "fz3", "_fz", "fz.a-b", "Fz", "ns1", "ns2", "a" * 64]
# (relative DIRs are taken from the working directory, FZ/cwd: `fzrel`, or a stray word
# such as `extra` that became persist's DIR)
CLEAN_DIRS = [f"{FZ}/p1", f"{FZ}/p2", f"{FZ}/cwd/fzrel", f"{FZ}/cwd/extra"]
CLEAN_ROOTS = [None, f"{FZ}/r1", f"{FZ}/r2"]
STORE_ROOTS = {"/run/nsshell", "/run/netns"}   # self-binds kept by design (as ip netns does)
# Raw inputs that are not text: given to each mode as they are.
RAW_INPUTS = [b"echo \xff\xfe", b"\xc3\x28", b"new net as \xe9t\xe9", b"echo ok\n\xff",
              b"\xed\xa0\x80", b"hostname \xf0\x28\x8c\x28", b"\x00\x00\x00", b"echo a\x00b",
              b"set persist_root /tmp/\x00x", b"run echo a\x00b", b"open /tmp/a\x00b",
              b"hostname a\x00b", b"new uts; hostname a\x00b; hostname"]


# -- one batch ----------------------------------------------------------------------------

def _env(rootless: bool, mark: str) -> dict:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "NO_COLOR": "1", "TERM": "dumb", "LANG": "C.UTF-8", MARK: mark,
           "HOME": f"{FZ}/home", "XDG_CONFIG_HOME": f"{FZ}/config",
           "XDG_STATE_HOME": f"{FZ}/state"}
    if rootless:
        env["XDG_RUNTIME_DIR"] = f"{FZ}/xdg"
    return env


def _argv(rootless: bool, args: list) -> list:
    if rootless:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", NSSHELL] + args
    return [NSSHELL] + args


def run_batch(lines: list, mode: str, rootless: bool, mark: str, timeout: float,
              json_out: bool = False) -> dict:
    """Run LINES (str, or bytes for raw inputs) in one nsshell process; its classification."""
    data = b"\n".join(x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape")
                      for x in lines)
    opts = ["-k"] + (["--json"] if json_out else [])
    stdin = subprocess.DEVNULL
    if mode == "c":
        args = opts + ["-c", os.fsdecode(data.replace(b"\x00", b""))]
    elif mode == "script":
        path = f"{FZ}/batch.nss"
        with open(path, "wb") as f:
            f.write(data + b"\n")
        os.chmod(path, 0o644)
        args = opts + [path]
    else:
        args = opts
        stdin = subprocess.PIPE
    started = time.monotonic()
    p = subprocess.Popen(_argv(rootless, args), stdin=stdin, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(rootless, mark), cwd=f"{FZ}/cwd",
                         start_new_session=True)
    hang = False
    try:
        out, err = p.communicate(data + b"\n" if mode == "stdin" else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        hang = True
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    text = err.decode("utf-8", "replace")
    lines_err = text.splitlines()
    return {
        "mode": mode, "rootless": rootless, "rc": p.returncode, "hang": hang,
        "seconds": round(time.monotonic() - started, 2),
        # killed by a signal it did not ask for (the OOM killer's SIGKILL, a crash)
        "killed": (not hang and p.returncode < 0) and f"signal {-p.returncode}",
        "traceback": [l for l in lines_err if "Traceback (most recent call last)" in l][:3]
                     and text[-2000:],
        "internal": [l for l in lines_err if "internal error" in l]
                    + ([f"exit status {p.returncode}"] if p.returncode == INTERNAL_STATUS else []),
        "stray": [l for l in lines_err if not l.startswith("nsshell: ")][:5],
    }


# -- state and clean-up ------------------------------------------------------------------

def _mounts() -> set:
    with open("/proc/self/mountinfo") as f:
        return {(line.split()[4], line.split(" - ")[1].split()[0]) for line in f}


def _processes(mark: str, sandboxed_root: bool) -> set:
    """Processes a batch may have left: in the root sandbox every process but this
    runner (PID 1) and its own children of the moment; on the host, those carrying MARK."""
    found = set()
    me = os.getpid()
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == me:
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                st = f.read()
            state = st[st.rfind(b")") + 2:].split()[0]
            if state in (b"Z", b"X"):
                continue
            comm = st[st.find(b"(") + 1:st.rfind(b")")].decode(errors="replace")
            if not sandboxed_root:
                with open(f"/proc/{e}/environ", "rb") as f:
                    if f"{MARK}={mark}".encode() not in f.read():
                        continue
        except OSError:
            continue
        found.add((int(e), comm))
    return found


_APP_DIRS = (f"{FZ}/xdg", f"{FZ}/home", f"{FZ}/state", f"{FZ}/config")


def _files() -> set:
    """Files and directories under the scratch directory; an empty directory in the
    user's runtime, state or config directories (nsshell's own folder there) is not
    counted, a file in it is."""
    out = set()
    for base, dirs, files in os.walk(FZ):
        for name in files + dirs:
            p = os.path.join(base, name)
            if name in dirs and p.startswith(_APP_DIRS):
                continue
            if p in (f"{FZ}/batch.nss",):
                continue
            if name in ("work", "index") and base.startswith(f"{FZ}/m"):
                continue  # made by the kernel in an overlay's WORK directory: asked for
            out.add(p)
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(base, d))]
    return out


def _entries(path: str) -> set:
    """The entries of PATH the generated lines may have made (on the host, other
    users' entries come and go meanwhile)."""
    try:
        return {f"{path}/{n}" for n in os.listdir(path)
                if n in CLEAN_NAMES or n.startswith(("fz", "ns", "Fz", "_fz", "a" * 64))}
    except OSError:
        return set()


def state(mark: str, sandboxed_root: bool) -> dict:
    return {"mounts": {m for m in _mounts() if m[0] not in STORE_ROOTS},
            "netns": _entries("/run/netns"), "store": _entries("/run/nsshell"),
            "processes": _processes(mark, sandboxed_root), "files": _files()}


def cleanup_script() -> str:
    lines = []
    for root in CLEAN_ROOTS:
        opt = f" --root {root}" if root else ""
        lines += [f"unpersist {n}{opt}" for n in CLEAN_NAMES]
    lines += [f"unpersist {d}" for d in CLEAN_DIRS]
    return "\n".join(lines)


def diff(before: dict, after: dict) -> dict:
    out = {}
    for k in before:
        extra = after[k] - before[k]
        if k == "processes":
            extra = {p for p in extra if p[0] not in {q[0] for q in before[k]}}
        if extra:
            out[k] = sorted(str(x) for x in extra)[:10]
    return out


def force_clean(before: dict, after: dict, sandboxed_root: bool) -> None:
    """Remove what a batch left, so that the next starts as the first did."""
    for pid, _ in after["processes"] - before["processes"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for target, _ in sorted(after["mounts"] - before["mounts"], key=lambda m: -len(m[0])):
        subprocess.run(["umount", "-l", target], capture_output=True)
    for p in sorted(after["netns"] - before["netns"]) + sorted(after["store"] - before["store"]):
        subprocess.run(["umount", "-l", p], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", p], capture_output=True)
    for p in sorted(after["files"] - before["files"], key=len, reverse=True):
        subprocess.run(["rm", "-rf", "--one-file-system", p], capture_output=True)


WRITABLE = ("/tmp", "/run", "/proc", "/sys", "/dev")


def read_only_elsewhere() -> None:
    """In the sandbox's own mount namespace, every mount but the scratch tmpfs's, /proc,
    /sys and /dev is made read-only: a generated line that writes to a path it was given
    (/etc/shadow is among the REFs and paths) can then change no file of the host."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted(set(points), key=len):
        point = point.encode().decode("unicode_escape")
        if any(point == w or point.startswith(w + "/") for w in WRITABLE):
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", point], capture_output=True)


def prepare(rootless: bool) -> None:
    """The scratch directory: the files the generated lines name."""
    os.makedirs(FZ, exist_ok=True)
    for d in ("m1", "m2", "m3", "dir", "p1", "p2", "r1", "r2", "cwd", "home", "config", "state",
              "cwd/fzrel"):
        os.makedirs(f"{FZ}/{d}", exist_ok=True)
    os.makedirs(f"{FZ}/xdg", mode=0o700, exist_ok=True)
    with open(f"{FZ}/file", "w") as f:
        f.write("not a namespace\n")
    with open(f"{FZ}/script.nss", "w") as f:
        f.write("echo from a script $1\nhandles\nnew uts as fzs --no-join\nclose fzs\n")
    with open(f"{FZ}/self.nss", "w") as f:
        f.write(f"source {FZ}/self.nss\n")
    with open(f"{FZ}/bad-utf8.nss", "wb") as f:
        f.write(b"echo \xff\n")
    if not os.path.exists(f"{FZ}/fifo"):
        os.mkfifo(f"{FZ}/fifo")
    if not os.path.lexists(f"{FZ}/link"):
        os.symlink("/proc/self/ns/net", f"{FZ}/link")
    if rootless:
        for base, dirs, files in os.walk(FZ):
            for n in dirs + files + [""]:
                os.lchown(os.path.join(base, n), 65534, 65534)


# -- inside a sandbox ----------------------------------------------------------------------

def inside(cfg: dict) -> dict:
    """Runs as root in the sandbox: private tmpfs on /tmp (and /run for the root one),
    then every batch, each followed by the clean-up and the leftover check."""
    rootless = cfg["rootless"]
    scratch = [("/tmp", "fuzz-tmp", "mode=1777")]
    if not rootless:
        scratch.append(("/run", "fuzz-run", "mode=755"))
    for point, name, mode in scratch:
        # a checkout (and its .venv) under /tmp or /run stays reachable: the directory,
        # taken before the tmpfs covers it, is bound back at its path on the tmpfs
        keep = ROOT if ROOT == point or ROOT.startswith(point + "/") else None
        fd = os.open(keep, os.O_PATH | os.O_DIRECTORY) if keep else None
        subprocess.run(["mount", "-t", "tmpfs", "-o", mode, name, point], check=True)
        if fd is not None:
            os.makedirs(keep, exist_ok=True)
            # (--no-canonicalize: mount(8) would read the link and bind the covered path)
            subprocess.run(["mount", "--no-canonicalize", "--rbind", f"/proc/self/fd/{fd}",
                            keep], check=True, pass_fds=(fd,))
            os.close(fd)
    prepare(rootless)
    read_only_elsewhere()
    mark = uuid.uuid4().hex[:12]
    results = []
    before = state(mark, not rootless)
    for i, batch in enumerate(cfg["batches"]):
        lines = [bytes.fromhex(x[4:]) if x.startswith("hex:") else x for x in batch["lines"]]
        r = run_batch(lines, batch["mode"], rootless, mark, cfg["timeout"], batch.get("json", False))
        r["index"] = i
        cerr = ""
        if any("persist" in x for x in batch["lines"]):  # what may have been kept: undo it
            c = subprocess.run(_argv(rootless, ["-k", "-c", cleanup_script()]),
                               capture_output=True, env=_env(rootless, mark), cwd=f"{FZ}/cwd",
                               timeout=cfg["timeout"])
            cerr = c.stderr.decode(errors="replace") + (
                f"\nexit status {c.returncode}" if c.returncode == INTERNAL_STATUS else "")
        if "Traceback" in cerr or "internal error" in cerr or "exit status 70" in cerr:
            r["internal"] = r["internal"] + ["(clean-up) " + l for l in cerr.splitlines()
                                             if "internal error" in l or "Traceback" in l
                                             or "exit status" in l][:3]
        after = state(mark, not rootless)
        deadline = time.monotonic() + 3
        while diff(before, after) and time.monotonic() < deadline:  # exits still under way
            time.sleep(0.1)
            after = state(mark, not rootless)
        left = diff(before, after)
        r["leftovers"] = left
        if left:
            force_clean(before, after, not rootless)
            before = state(mark, not rootless)
        results.append(r)
        if cfg.get("progress"):
            bad = [k for k in ("traceback", "internal", "hang", "killed", "stray", "leftovers")
                   if r[k]]
            print(f"fuzz: {'rootless' if rootless else 'root'} {i + 1}/{len(cfg['batches'])} "
                  f"{batch['mode']} {r['seconds']}s {' '.join(bad)}", file=sys.stderr, flush=True)
    return {"results": results}


# -- outside: the sandboxes and the report -------------------------------------------------

def _ends_a_batch(line: str) -> bool:
    """A line after which nothing more of a batch would run: one that leaves a quote or a
    for/if block open (the next lines become part of it) or may `exit`.  Each goes last
    in its batch, so that every line given is run."""
    from nsshell import lexer
    from nsshell.errors import NsshellError
    text = line.replace("\x00", "")
    if not lexer.is_complete(text) or text.rstrip().endswith("\\"):
        return True     # an open quote or block, a trailing && or backslash
    try:
        commands = lexer.split(text)
    except NsshellError:
        return True
    return any(words[0] in ("exit", "quit") for words in commands)


# Lines each batch starts with (not counted as inputs): sets the generated lines name
# exist, as do a persisted one and a joined one, so that REFs reach real namespaces.
PREAMBLE = {
    False: ["new user+mnt+pid+net+uts+ipc as fz0 --no-join", "map root --ns fz0",
            "new net+uts as fz1 --no-join", "new mnt+pid --mount-proc as fz2 --no-join",
            "persist fz1", "new time --monotonic 5 as fz3"],
    True: ["new user+mnt+pid+net+uts+ipc as fz0 --no-join", "map root --ns fz0",
           "join user fz0", "new net+uts as fz1 --no-join", "persist fz1", "leave",
           "new user as fz2 --no-join"],
}


def make_batches(lines: list, size: int, modes: list, seed: int, rootless: bool = False) -> list:
    plain = [x for x in lines if not _ends_a_batch(x)]
    enders = [x for x in lines if _ends_a_batch(x)]
    chunks = []
    for i in range(0, len(plain), size):
        chunks.append(plain[i:i + size] + enders[len(chunks):len(chunks) + 1])
    chunks += [[x] for x in enders[len(chunks):]]
    out = []
    for mode in modes:
        for i, chunk in enumerate(chunks):
            pre = PREAMBLE[rootless] if i % 2 == 0 else []
            out.append({"mode": mode, "lines": pre + chunk, "counted": len(chunk),
                        "json": (i + seed) % 4 == 0})
        for raw in RAW_INPUTS:
            out.append({"mode": mode, "lines": ["hex:" + raw.hex()], "counted": 1})
    return out


def sandbox(batches: list, rootless: bool, timeout: float, progress: bool = False) -> list:
    cfg = {"batches": batches, "rootless": rootless, "timeout": timeout, "progress": progress}
    if rootless:
        wrap = ["unshare", "--mount", "--propagation", "private", "--"]
    else:
        wrap = ["unshare", "--mount", "--net", "--uts", "--ipc", "--pid", "--fork",
                "--mount-proc", "--propagation", "private", "--"]
    p = subprocess.run(wrap + [PYTHON, os.path.abspath(__file__), "--inside"],
                       input=json.dumps(cfg).encode(), stdout=subprocess.PIPE,
                       stderr=None if progress else subprocess.PIPE,
                       timeout=timeout * (len(batches) + 5))
    if p.returncode != 0:
        raise RuntimeError(f"the sandbox failed ({p.returncode}): "
                           f"{(p.stderr or b'').decode(errors='replace')[-3000:]}")
    return json.loads(p.stdout)["results"]


def summarize(results: list, inputs: int) -> dict:
    return {
        "inputs": inputs,
        "processes": len(results),
        "tracebacks": sum(1 for r in results if r["traceback"]),
        "internal_errors": sum(len(r["internal"]) for r in results),
        "hangs": sum(1 for r in results if r["hang"]),
        "killed": sum(1 for r in results if r["killed"]),
        "stray_stderr": sum(len(r["stray"]) for r in results),
        "leftovers": sum(1 for r in results if r["leftovers"]),
    }


def fuzz(count: int, seed: int = 0, batch: int = 40, modes=("c", "script", "stdin"),
         who=("root", "rootless"), timeout: float = 60.0,
         progress: bool = False) -> tuple[dict, list]:
    """Generate COUNT lines for each of WHO, run them in every mode; (counts, findings)."""
    results, inputs = [], 0
    for n, kind in enumerate(who):
        rootless = kind == "rootless"
        lines = generate(count, seed + n, rootless=rootless)
        batches = make_batches(lines, batch, list(modes), seed, rootless)
        inputs += sum(b["counted"] for b in batches)
        for r in sandbox(batches, rootless, timeout, progress):
            r["who"] = kind
            r["lines"] = batches[r["index"]]["lines"]
            results.append(r)
    findings = [r for r in results if r["traceback"] or r["internal"] or r["hang"]
                or r["killed"] or r["stray"] or r["leftovers"]]
    return summarize(results, inputs), findings


def main() -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="lines per user (root, rootless)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=40, help="lines per nsshell process")
    ap.add_argument("--modes", default="c,script,stdin")
    ap.add_argument("--who", default="root,rootless")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per process")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--progress", action="store_true", help="a line per process on stderr")
    ap.add_argument("--findings", default=None, help="write the findings (JSON) here")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inside:
        json.dump(inside(json.load(sys.stdin)), sys.stdout)
        return 0
    counts, findings = fuzz(a.count, a.seed, a.batch, a.modes.split(","), a.who.split(","),
                            a.timeout, a.progress)
    if a.findings:
        with open(a.findings, "w") as f:
            json.dump(findings, f, indent=1)
    if a.json:
        print(json.dumps(counts))
    else:
        for k, v in counts.items():
            print(f"{k:16} {v}")
        for r in findings[:20]:
            print(json.dumps({k: r[k] for k in ("who", "mode", "index", "rc", "hang", "killed",
                                                "internal", "stray", "leftovers")})[:800])
            if r["traceback"]:
                print(r["traceback"][-1500:])
    bad = (counts["tracebacks"] + counts["internal_errors"] + counts["hangs"] + counts["killed"]
           + counts["leftovers"])
    return 1 if bad or counts["stray_stderr"] else 0


if __name__ == "__main__":
    sys.exit(main())
