"""The container engines, asked read-only through their own interfaces.

- podman: `podman ps --format json` (JSON, never the table), as the calling user
  (root sees root's containers, a user their rootless ones).  Asked only when the
  binary is on PATH and podman's run-time directory exists (it does while podman
  runs containers), so a machine without podman forks nothing.
- docker: the Engine API over its unix socket ($DOCKER_HOST unix://..., default
  /var/run/docker.sock), HTTP/1.0 written by hand: GET /containers/json, then
  /containers/ID/json for each one's State.Pid.  No socket: nothing.
- k8s (containerd and CRI-O): the OCI bundles' config.json annotations
  (io.kubernetes.*) and the pid files in the runtimes' state directories.  No
  directory: nothing.  $NSSHELL_K8S_STATE_DIRS (colon-separated) replaces them.

Each engine is bounded by TIMEOUT seconds; one that does not answer (or fails) gives
one warning line per process and names nothing.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time

from nsshell.plugin import nstypes, procfs

TIMEOUT = 2.0
QUIET_AFTER_TIMEOUT = 60.0   # seconds an engine that did not answer is left alone
COMPLETION_TTL = 2.0     # completion may reuse a list this old; REFs and names never do

_WARNED: set[str] = set()
_FAILED = object()   # what Engine.start gives when begin() failed (said once)


def warn(engine: str, text: str) -> None:
    if engine in _WARNED:
        return
    _WARNED.add(engine)
    sys.stderr.write(f"nsshell: containers: {engine}: {text}; its containers are not named\n")
    sys.stderr.flush()


def which(name: str) -> str | None:
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d or ".", name)
        try:
            if stat.S_ISREG(os.stat(p).st_mode) and os.access(p, os.X_OK):
                return p
        except OSError:
            continue
    return None


# Container names as the engines allow them (podman, docker: [a-zA-Z0-9][a-zA-Z0-9_.-]*;
# Kubernetes: DNS labels and subdomains): anything else (control characters, spaces,
# '/' inside a part) is not printed or matched.
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


def ok_name(name: str, parts: int = 1) -> bool:
    bits = name.split("/")
    return len(bits) == parts and all(_PART.fullmatch(b) for b in bits)


def trusted(st: os.stat_result) -> bool:
    """Written by root or by the caller: a file another user controls never names
    anything (root may run with a user's environment pointing at that user's files)."""
    return st.st_uid in (0, os.geteuid())


def _alive(pid) -> bool:
    return isinstance(pid, int) and pid > 0 and os.path.isdir(f"/proc/{pid}")


class Engine:
    scheme = ""
    what = ""

    def __init__(self) -> None:
        self._cache: tuple[float, list] | None = None
        self.quiet_until = 0.0   # an engine that timed out is not asked again before this

    def timed_out(self, text: str) -> None:
        warn(self.scheme, text)
        self.quiet_until = time.monotonic() + QUIET_AFTER_TIMEOUT

    def containers(self) -> list[tuple[str, int, str]]:
        """(name after the scheme, init pid, description) of every running container."""
        raise NotImplementedError

    def may_run(self, monitors: set[str] | None) -> bool:
        """False only when MONITORS (monitors(): what the scan found) shows that none of
        this engine's containers runs."""
        return True

    def begin(self):
        """Start asking the engine, for finish() to read the answer (an engine asked
        through a subprocess starts it here, and the caller goes on meanwhile)."""
        return None

    def finish(self, begun) -> list[tuple[str, int, str]]:
        return self.containers()

    def cancel(self, begun) -> None:
        """Give up what begin() started, unread."""

    def start(self):
        """begin(), or _FAILED (said once) when even that fails."""
        try:
            return self.begin()
        except Exception as e:  # noqa: BLE001 - an engine never breaks a command
            warn(self.scheme, f"{type(e).__name__}: {e}")
            return _FAILED

    def listed(self, begun=None, *, started: bool = False) -> list[tuple[str, int, str]]:
        """The running containers (alive): asked now, or, STARTED, read from what
        start() began (BEGUN)."""
        if not started:
            if time.monotonic() < self.quiet_until:
                return []
            begun = self.start()
        try:
            found = [] if begun is _FAILED else \
                [c for c in self.finish(begun) if _alive(c[1])]
        except Exception as e:  # noqa: BLE001 - an engine never breaks a command
            warn(self.scheme, f"{type(e).__name__}: {e}")
            found = []
        self._cache = (time.monotonic(), found)
        return found

    def resolve(self, session, rest: str):
        found = self.listed()
        for name, pid, _ in found:
            if name == rest:
                return pid
        return self.by_id(found, rest)

    def by_id(self, found, rest):
        return None

    def complete(self, session, prefix: str):
        c = self._cache
        found = c[1] if c and time.monotonic() - c[0] < COMPLETION_TTL else self.listed()
        return [(name, desc) for name, _, desc in found if name.startswith(prefix)]


# -- podman ------------------------------------------------------------------------------------

class Podman(Engine):
    scheme = "podman"
    what = "a podman container (the calling user's)"

    def _state(self) -> bool:
        """Whether podman may have containers: its run-time directory exists (or the
        environment points podman elsewhere).  One or two stats."""
        if os.environ.get("CONTAINERS_CONF") or os.environ.get("CONTAINERS_STORAGE_CONF"):
            return True
        uid = os.geteuid()
        if uid == 0:
            dirs = ["/run/libpod"]
        else:
            rt = os.environ.get("XDG_RUNTIME_DIR")
            dirs = [os.path.join(rt, "libpod")] if rt else []
            dirs += [f"/run/user/{uid}/libpod", f"/tmp/podman-run-{uid}/libpod"]
        return any(os.path.isdir(d) for d in dirs)

    def may_run(self, monitors: set[str] | None) -> bool:
        """A podman container runs only under its conmon (see monitors())."""
        return monitors is None or any(c.startswith("conmon") for c in monitors)

    def containers(self):
        return self.finish(self.begin())

    def begin(self):
        """`podman ps` started (with its deadline), or None when podman cannot have any."""
        exe = which("podman")
        if exe is None or not self._state():
            return None
        import subprocess
        p = subprocess.Popen([exe, "ps", "--format", "json"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        return p, time.monotonic() + TIMEOUT

    def cancel(self, begun) -> None:
        if begun is not None and begun is not _FAILED:
            begun[0].kill()
            begun[0].communicate()

    def finish(self, begun):
        if begun is None:
            return []
        import subprocess
        p, deadline = begun
        try:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.timed_out(f"`podman ps` did not answer within {TIMEOUT:g} s")
            return []
        except BaseException:
            p.kill()
            p.communicate()
            raise
        if p.returncode != 0:
            err = stderr.decode(errors="replace").strip().splitlines()
            warn("podman", f"`podman ps` failed: {err[-1] if err else f'status {p.returncode}'}")
            return []
        import json   # here: a scan with nothing to ask pays nothing for it
        out, data = [], json.loads(stdout or b"[]") or []
        for c in data:
            if c.get("State") not in (None, "running"):
                continue
            desc = f"podman {c.get('Image', '')} {str(c.get('Id', ''))[:12]}".strip()
            for n in c.get("Names") or []:
                if ok_name(str(n)):
                    out.append((n, c.get("Pid"), desc))
        self._ids = {str(c.get("Id", "")): c.get("Pid") for c in data}
        return out

    def by_id(self, found, rest):
        return _by_id(getattr(self, "_ids", {}), rest)


def _by_id(ids: dict, rest: str):
    """A container id, or a unique prefix of at least 12 hex digits."""
    if len(rest) < 12:
        return None
    hits = [pid for i, pid in ids.items() if i.startswith(rest)]
    return hits[0] if len(hits) == 1 and _alive(hits[0]) else None


# -- docker ------------------------------------------------------------------------------------

def docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return "/var/run/docker.sock"


def http_get(path: str, url: str, deadline: float):
    """GET URL from the HTTP server on the unix socket PATH; the JSON body."""
    import socket
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(left)
        s.connect(path)
        s.sendall(f"GET {url} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n"
                  .encode())
        chunks, size = [], 0
        while True:
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
            size += len(b)
            if size > 64 << 20:
                raise ValueError("answer larger than 64 MiB")
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no HTTP header in the answer")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    if parts[1] != "200":
        raise ValueError(f"GET {url}: HTTP {' '.join(parts[1:])}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    import json
    return json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out, i = [], 0
    while True:
        j = body.index(b"\r\n", i)
        n = int(body[i:j].split(b";")[0], 16)
        if n == 0:
            return b"".join(out)
        out.append(body[j + 2:j + 2 + n])
        i = j + 2 + n + 2


class Docker(Engine):
    scheme = "docker"
    what = "a docker container"

    def containers(self):
        path = docker_socket()
        try:
            st = os.stat(path)
            if not stat.S_ISSOCK(st.st_mode) or not trusted(st):
                return []
        except OSError:
            return []
        deadline = time.monotonic() + TIMEOUT
        try:
            listed = http_get(path, "/containers/json", deadline)
            out, ids = [], {}
            for c in listed:
                cid = str(c.get("Id", ""))
                info = http_get(path, f"/containers/{cid}/json", deadline)
                state = info.get("State") or {}
                if not state.get("Running"):
                    continue
                pid = state.get("Pid")
                ids[cid] = pid
                desc = f"docker {c.get('Image', '')} {cid[:12]}".strip()
                for n in c.get("Names") or [info.get("Name", "")]:
                    n = n.lstrip("/")
                    if ok_name(n):   # not /other/alias: a legacy link, not a name
                        out.append((n, pid, desc))
        except PermissionError:
            return []   # not in the docker group: nothing to say, every time
        except (TimeoutError, OSError) as e:
            if isinstance(e, TimeoutError) or "timed out" in str(e):
                self.timed_out(f"{path} did not answer within {TIMEOUT:g} s")
            else:
                warn("docker", f"{path}: {e.strerror or e}")
            return []
        self._ids = ids
        return out

    def by_id(self, found, rest):
        return _by_id(getattr(self, "_ids", {}), rest)


# -- Kubernetes pods: containerd and CRI-O -----------------------------------------------------

# (directory, bundle layout): containerd's k8s.io tasks (ID/config.json, ID/init.pid)
# and CRI-O's containers (ID/userdata/config.json, ID/userdata/pidfile).
K8S_DIRS = ["/run/containerd/io.containerd.runtime.v2.task/k8s.io",
            "/run/containers/storage/overlay-containers"]
_BUNDLES = (("config.json", "init.pid"), ("userdata/config.json", "userdata/pidfile"))


def k8s_dirs() -> list[str]:
    env = os.environ.get("NSSHELL_K8S_STATE_DIRS")
    return [d for d in env.split(":") if d] if env is not None else K8S_DIRS


def k8s_name(annotations: dict) -> str | None:
    """NAMESPACE/POD for a pod's sandbox, NAMESPACE/POD/CONTAINER for a container; None
    for a bundle that is not a Kubernetes one (e.g. podman's, beside CRI-O's)."""
    a = annotations
    ns = a.get("io.kubernetes.pod.namespace") or a.get("io.kubernetes.cri.sandbox-namespace")
    pod = a.get("io.kubernetes.pod.name") or a.get("io.kubernetes.cri.sandbox-name")
    if not ns or not pod:
        return None
    kind = a.get("io.kubernetes.cri.container-type") or a.get("io.kubernetes.cri-o.ContainerType")
    cname = a.get("io.kubernetes.container.name") or a.get("io.kubernetes.cri.container-name")
    if kind == "sandbox" or not cname or cname == "POD":
        return f"{ns}/{pod}"
    return f"{ns}/{pod}/{cname}"


class K8s(Engine):
    scheme = "k8s"
    what = "a Kubernetes pod or container: k8s:NAMESPACE/POD[/CONTAINER]"

    def may_run(self, monitors: set[str] | None) -> bool:
        """A pod's containers run under CRI-O's conmon (or conmon-rs) or containerd's
        shim (containerd-shim, containerd-shim-runc-v2, -kata-v2 ...)."""
        return monitors is None or any(c.startswith(("conmon", "containerd-shim"))
                                       for c in monitors)

    def containers(self):
        out = []
        deadline = time.monotonic() + TIMEOUT
        for d in k8s_dirs():
            try:
                ids = os.listdir(d)
            except OSError:
                continue
            for cid in ids:
                if time.monotonic() > deadline:
                    self.timed_out(f"reading {d} took over {TIMEOUT:g} s")
                    return out
                for conf, pidfile in _BUNDLES:
                    try:
                        with open(os.path.join(d, cid, conf), "rb") as f:
                            if not trusted(os.fstat(f.fileno())):
                                continue
                            import json
                            config = json.loads(f.read(16 << 20))
                        with open(os.path.join(d, cid, pidfile), "rb") as f:
                            if not trusted(os.fstat(f.fileno())):
                                continue
                            pid = int(f.read(32).strip() or 0)
                    except (OSError, ValueError):
                        continue
                    name = k8s_name(config.get("annotations") or {})
                    if name and ok_name(name, name.count("/") + 1) and name.count("/") in (1, 2):
                        out.append((name, pid, f"k8s {cid[:12]}"))
                    break
        return out


ENGINES: list[Engine] = [Podman(), Docker(), K8s()]


def monitors(scan, own: dict[str, int]) -> set[str] | None:
    """The commands (comm) of the processes that are the parent of a process in a mount
    namespace other than the shell's (OWN["mnt"]) while outside it themselves: a
    container's monitor is the parent of its first process (podman's and CRI-O's
    conmon, containerd's shim: it waits for it), and every container has a mount
    namespace of its own.  So an engine whose monitor is not among them runs no
    container, and need not be asked: exact, and without a fork.  One read of
    /proc/PID/stat per process in another mount namespace (few or none on most
    machines) and per parent outside.  None when SCAN did not look at mount namespaces
    (every engine is asked then)."""
    mnts = scan.pids("mnt")
    if mnts is None:
        return None
    comms: dict[int, str | None] = {}   # parent pid -> its comm
    for ino, pids in mnts.items():
        if ino == own.get("mnt"):
            continue
        members = set(pids)
        for pid in pids:
            st = procfs.stat(pid)
            ppid = st.ppid if st is not None else 0
            if ppid <= 0 or ppid in members or ppid in comms:
                continue
            parent = procfs.stat(ppid)
            comms[ppid] = parent.comm if parent is not None else None
    return {c for c in comms.values() if c is not None}


def names(session, scan=None) -> "Names":
    """The name source: (type, inode, SCHEME:NAME) for each namespace of each running
    container that is not the shell's own (a rootful container shares the host's user
    namespace: that is not named after it).  SCAN (what `ls` found) tells which engines
    may have anything to say (monitors(), Engine.may_run).
    The engines are asked here (`podman ps` starts) and read when the names are."""
    own: dict[str, int] = {}
    for t in nstypes.ALL:
        try:
            own[t.name] = os.stat(f"/proc/self/ns/{t.proc}").st_ino
        except OSError:
            pass
    names = Names(own)
    found = monitors(scan, own) if scan is not None else None
    try:
        for eng in ENGINES:
            if time.monotonic() < eng.quiet_until:
                continue
            if not eng.may_run(found):
                continue
            names.begun.append((eng, eng.start()))
    except BaseException:
        names.close()
        raise
    return names


class Names:
    """The names of the containers the engines were asked about, read when iterated;
    close() ends what was begun and not read (e.g. the scan failed meanwhile)."""

    def __init__(self, own: dict[str, int]):
        self.own = own
        self.begun: list = []   # (engine, what its start() gave)

    def __iter__(self):
        while self.begun:
            eng, begun = self.begun.pop(0)
            for name, pid, _ in eng.listed(begun, started=True):
                label = f"{eng.scheme}:{name}"
                for t in nstypes.ALL:
                    try:
                        ino = os.stat(f"/proc/{pid}/ns/{t.proc}").st_ino
                    except OSError:
                        continue
                    if self.own.get(t.name) != ino:
                        yield t.name, ino, label

    def close(self) -> None:
        while self.begun:
            eng, begun = self.begun.pop(0)
            try:
                eng.cancel(begun)
            except Exception:  # noqa: BLE001
                pass
BY_SCHEME = {e.scheme: e for e in ENGINES}
