"""The containers plugin against real engines: podman (with runc) running a real
container from an image imported from scripts/build-rootfs.sh's busybox root
filesystem.  podman's state for these tests lives in a private directory
(CONTAINERS_STORAGE_CONF / CONTAINERS_CONF, passed to nsshell too), so the
containers, images and storage they make are removed whole, and the host's own
podman storage is never touched.  Containers get `--network none` (a private
network namespace with lo only; no bridge, no firewall rules on the host).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import RUN_MARK, ROOT, json_docs, mount_points, run_nsshell

NS_TYPES = ("mnt", "uts", "ipc", "pid", "net")   # what a rootful podman container gets new
PFX = f"t{RUN_MARK[:4]}ctr"
RUN_OPTS = ["--runtime", "runc", "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


class Podman:
    def __init__(self, base: str):
        self.base = base
        self.env = dict(os.environ, CONTAINERS_STORAGE_CONF=f"{base}/storage.conf",
                        CONTAINERS_CONF=f"{base}/containers.conf")
        self.image = f"localhost/{PFX}img:1"

    def __call__(self, *args, check=True, timeout=60):
        p = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {p.stderr.strip()}")
        return p

    def start(self, name: str, *extra: str) -> int:
        self("run", "-d", "--name", name, "--hostname", f"{name}h", *RUN_OPTS, *extra,
             self.image, "sleep", "300")
        return int(self("inspect", "-f", "{{.State.Pid}}", name).stdout)

    def nsshell(self, *args, **kw):
        return run_nsshell(*args, env={k: self.env[k] for k in
                                       ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")}, **kw)


def _why_no_podman() -> str | None:
    for b in ("podman", "runc"):
        if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}"):
            return f"{b} is not installed (scripts/setup.sh installs it as root)"
    if os.geteuid() != 0:
        return "the podman tests run as root"
    return None


@pytest.fixture(scope="module")
def podman():
    why = _why_no_podman()
    if why:
        pytest.skip(why)
    lock = "/dev/shm/libpod_lock"
    lock_existed = os.path.exists(lock)
    base = tempfile.mkdtemp(prefix=f"{PFX}-", dir="/tmp")
    with open(f"{base}/storage.conf", "w") as f:
        f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/graph"\n'
                f'runroot = "{base}/run"\n')
    with open(f"{base}/containers.conf", "w") as f:
        f.write(f'[engine]\ntmp_dir = "{base}/tmp"\nruntime = "runc"\n')
    pm = Podman(base)
    try:
        rootfs = f"{base}/rootfs"
        subprocess.run(["sh", f"{ROOT}/scripts/build-rootfs.sh", rootfs], check=True,
                       capture_output=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        p = subprocess.run(["podman", "import", "-", pm.image], stdin=tar.stdout, env=pm.env,
                           capture_output=True, text=True, timeout=120)
        tar.wait()
        if p.returncode != 0:
            pytest.skip(f"podman import fails here: {p.stderr.strip()}")
        try:
            pm.pid = pm.start(f"{PFX}web")
        except RuntimeError as e:
            pytest.skip(f"podman cannot run a container here: {e}")
        pm.name = f"{PFX}web"
        yield pm
    finally:
        subprocess.run(["podman", "rm", "-a", "-f", "-t", "0"], env=pm.env, capture_output=True)
        subprocess.run(["podman", "rmi", "-a", "-f"], env=pm.env, capture_output=True)
        for mp in sorted((m for m in mount_points() if m.startswith(base + "/")), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        if not lock_existed and os.path.exists(lock):
            os.unlink(lock)


def _inodes(pid: int) -> dict[str, int]:
    return {t: os.stat(f"/proc/{pid}/ns/{t}").st_ino for t in NS_TYPES}


def test_container_names_in_ls_and_ls_json(podman):
    label = f"podman:{podman.name}"
    want = _inodes(podman.pid)
    r = podman.nsshell("-c", "ls --json")
    assert r.rc == 0, r
    rows = json_docs(r.out)[0]
    rows = rows.get("namespaces", rows) if isinstance(rows, dict) else rows
    named = {(row["type"], row["ns"]) for row in rows if label in row["names"]}
    assert named == {(t, ino) for t, ino in want.items()}
    # the host's user namespace (shared by a rootful container) is not named after it
    assert not any(label in row["names"] for row in rows if row["type"] == "user")
    r = podman.nsshell("-c", "ls net")
    line = [l for l in r.out.splitlines() if str(want["net"]) in l]
    assert line and label in line[0], r


def test_join_runs_in_the_container_and_pids_lists_it(podman):
    label = f"podman:{podman.name}"
    r = podman.nsshell("-c", f"join {label}; run hostname; leave; pids {label} --json")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[1] == f"{podman.name}h", r     # after `joined podman:...: ...`
    docs = json_docs("\n".join(lines[2:]))
    assert podman.pid in [p["pid"] for p in docs[0]["processes"]] if isinstance(docs[0], dict) \
        else podman.pid in [p["pid"] for p in docs[0]]


def test_show_open_handles_identify_tree(podman):
    label = f"podman:{podman.name}"
    r = podman.nsshell("-c", f"show net {label}")
    assert r.rc == 0 and label in r.out and f"net:[{_inodes(podman.pid)['net']}]" in r.out, r
    r = podman.nsshell("-c", f"open {label} as {PFX}w; handles --json")
    assert r.rc == 0, r
    rows = json_docs(r.out)[0]
    rows = rows.get("handles", rows) if isinstance(rows, dict) else rows
    assert {row["origin"] for row in rows if row["name"] == f"{PFX}w"} == {label}
    r = podman.nsshell("-c", f"identify {podman.pid}")
    assert r.rc == 0 and r.out.count(label) == len(NS_TYPES), r
    r = podman.nsshell("-c", "tree")
    assert label in r.out, r


def test_names_complete(podman):
    r = podman.nsshell("--complete", f"join podman:{PFX}w")
    assert f"podman:{podman.name}" in [l.split("\t")[0] for l in r.out.splitlines()], r
    r = podman.nsshell("--complete", "show podm")
    assert "podman:" in [l.split("\t")[0] for l in r.out.splitlines()], r


def test_a_stopped_container_disappears(podman):
    name = f"{PFX}gone"
    pid = podman.start(name)
    net = _inodes(pid)["net"]
    assert f"podman:{name}" in podman.nsshell("-c", "ls net").out
    podman("rm", "-f", "-t", "0", name)
    r = podman.nsshell("-c", "ls net")
    assert r.rc == 0 and f"podman:{name}" not in r.out and str(net) not in r.out, r
    r = podman.nsshell("-c", f"join podman:{name}")
    assert r.rc == 1 and f"no podman '{name}'" in r.err and "Traceback" not in r.err, r


def test_k8s_pod_names_from_real_bundle_annotations(podman, tmp_path):
    """A podman container with CRI-O's Kubernetes annotations: its real OCI bundle
    (config.json written by podman for runc) and pid file, laid out as CRI-O keeps
    them (ID/userdata/config.json, ID/userdata/pidfile), named k8s:NS/POD[/CONTAINER]."""
    made = []
    for cname, kind in (("POD", "sandbox"), ("app", "container")):
        n = f"{PFX}k{cname.lower()}"
        pid = podman.start(n, "--annotation", "io.kubernetes.pod.namespace=default",
                           "--annotation", f"io.kubernetes.pod.name={PFX}pod",
                           "--annotation", f"io.kubernetes.container.name={cname}",
                           "--annotation", f"io.kubernetes.cri-o.ContainerType={kind}")
        cid = podman("inspect", "-f", "{{.Id}}", n).stdout.strip()
        d = tmp_path / "state" / cid / "userdata"
        d.mkdir(parents=True)
        os.symlink(f"{podman.base}/graph/overlay-containers/{cid}/userdata/config.json",
                   d / "config.json")
        os.symlink(f"{podman.base}/run/overlay-containers/{cid}/userdata/pidfile", d / "pidfile")
        made.append((n, pid))
    # containerd's layout and annotations (ID/config.json, ID/init.pid; io.kubernetes.cri.*)
    n = f"{PFX}kcd"
    pid = podman.start(n, "--annotation", "io.kubernetes.cri.sandbox-namespace=kube-system",
                       "--annotation", f"io.kubernetes.cri.sandbox-name={PFX}cd",
                       "--annotation", "io.kubernetes.cri.container-name=etcd",
                       "--annotation", "io.kubernetes.cri.container-type=container")
    cid = podman("inspect", "-f", "{{.Id}}", n).stdout.strip()
    d = tmp_path / "containerd" / cid
    d.mkdir(parents=True)
    os.symlink(f"{podman.base}/graph/overlay-containers/{cid}/userdata/config.json",
               d / "config.json")
    os.symlink(f"{podman.base}/run/overlay-containers/{cid}/userdata/pidfile", d / "init.pid")
    made.append((n, pid))
    # the same bundle, written by another user: never names anything for root
    cid = podman("inspect", "-f", "{{.Id}}", made[1][0]).stdout.strip()
    evil = tmp_path / "state" / ("e" * 64) / "userdata"
    evil.mkdir(parents=True)
    with open(f"{podman.base}/graph/overlay-containers/{cid}/userdata/config.json") as f:
        config = json.load(f)
    config["annotations"]["io.kubernetes.pod.name"] = f"{PFX}evil"
    (evil / "config.json").write_text(json.dumps(config))
    (evil / "pidfile").write_text(str(made[1][1]))
    for f in ("config.json", "pidfile"):
        os.chown(evil / f, 65534, 65534)
    env_dirs = {"NSSHELL_K8S_STATE_DIRS": f"{tmp_path}/containerd:{tmp_path}/state"}
    try:
        def sh(*a):
            return run_nsshell(*a, env=dict(env_dirs, **{k: podman.env[k] for k in
                                    ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")}))
        r = sh("-c", f"join k8s:default/{PFX}pod; run hostname; leave; "
                     f"join k8s:default/{PFX}pod/app; run hostname; ls uts")
        assert r.rc == 0, r
        assert f"{made[0][0]}h" in r.out and f"{made[1][0]}h" in r.out, r
        names = {l.split()[0]: l.split()[6] for l in r.out.splitlines()[5:] if "sleep" in l}
        pod_uts = str(os.stat(f"/proc/{made[0][1]}/ns/uts").st_ino)
        app_uts = str(os.stat(f"/proc/{made[1][1]}/ns/uts").st_ino)
        assert f"k8s:default/{PFX}pod" in names[pod_uts].split(","), r
        assert f"k8s:default/{PFX}pod/app" in names[app_uts].split(","), r
        assert f"{PFX}evil" not in r.out, r
        r = sh("-c", f"pids k8s:kube-system/{PFX}cd/etcd")
        assert r.rc == 0 and str(made[2][1]) in r.out.split(), r
        assert sh("-c", f"show k8s:default/{PFX}evil/app").rc == 1
        r = sh("--complete", f"show k8s:default/{PFX}")
        got = [l.split("\t")[0] for l in r.out.splitlines()]
        assert {f"k8s:default/{PFX}pod", f"k8s:default/{PFX}pod/app"} <= set(got), r
    finally:
        for n, _ in made:
            podman("rm", "-f", "-t", "0", n, check=False)


def _execs(trace: str) -> list[str]:
    with open(trace) as f:
        return [l for l in f if "execve(" in l and "= 0" in l]


def test_an_absent_engine_forks_nothing(podman, tmp_path):
    """podman not on PATH: `ls`, `tree`, a podman REF and its completion exec nothing
    but nsshell itself (strace sees every execve of the tree of processes)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    trace = str(tmp_path / "trace")
    env = dict(podman.env, PATH="/nonexistent", NSSHELL_TEST_RUN=RUN_MARK, PYTHONPATH=ROOT)
    exe = os.path.join(ROOT, ".venv", "bin", "nsshell")
    p = subprocess.run([shutil.which("strace"), "-f", "-qq", "-o", trace, "-e", "trace=execve", exe, "-c",
                        f"ls; tree; ls --json; show podman:{podman.name}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and f"no podman '{podman.name}'" in p.stderr, p
    assert len(_execs(trace)) == 1, _execs(trace)
    # the same with podman on PATH: one `podman ps` per engine question
    p = subprocess.run([shutil.which("strace"), "-f", "-qq", "-o", trace, "-e", "trace=execve", exe, "-c",
                        "ls net"], env=dict(env, PATH=os.environ["PATH"]),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and f"podman:{podman.name}" in p.stdout, p
    assert any("podman" in l for l in _execs(trace))


def test_a_slow_engine_is_bounded_with_one_warning(tmp_path):
    """A podman that never answers: `ls` waits at most the timeout, says so once."""
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "CONTAINERS_CONF": "/nonexistent"}
    t0 = time.monotonic()
    r = run_nsshell("-c", "ls net; ls uts", env=env)
    took = time.monotonic() - t0
    assert r.rc == 0, r
    warnings = [l for l in r.err.splitlines() if "containers: podman" in l]
    assert len(warnings) == 1 and "did not answer within 2 s" in warnings[0], r
    assert took < 10, took


def test_plugin_api_refuses_a_builtin_scheme():
    from nsshell.plugin import PluginAPI, UsageError
    api = PluginAPI("x")
    for bad in ("pid", "net", "host", "a b"):
        with pytest.raises(UsageError):
            api.add_ref_scheme(bad, lambda s, r: None)
    api.rollback()


# -- docker: a private dockerd (its own data, exec root and socket; no iptables, no bridge) ---

def _why_no_docker() -> str | None:
    for b in ("dockerd", "docker"):
        if shutil.which(b) is None:
            return f"{b} is not installed (Debian's docker.io; not installed by scripts/setup.sh)"
    if os.geteuid() != 0:
        return "the docker tests run as root"
    return None


@pytest.fixture(scope="module")
def docker():
    why = _why_no_docker()
    if why:
        pytest.skip(why)
    made_by_dockerd = ["/etc/docker/key.json", "/run/docker"]
    existed = {p: os.path.exists(p) for p in made_by_dockerd}
    base = tempfile.mkdtemp(prefix=f"{PFX}d-", dir="/tmp")
    sock = f"{base}/docker.sock"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    log = open(f"{base}/log", "w")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", f"{base}/data", "--exec-root", f"{base}/exec",
         "--pidfile", f"{base}/pid", "-H", f"unix://{sock}", "--iptables=false",
         "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
         "--userland-proxy=false"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def dk(*args, check=True, stdin=None):
        p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                           stdin=stdin, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()}")
        return p
    try:
        deadline = time.monotonic() + 30
        while dk("version", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                with open(f"{base}/log") as f:
                    pytest.skip(f"dockerd does not start here: {f.read()[-400:]}")
            time.sleep(0.2)
        rootfs = f"{base}/rootfs"
        subprocess.run(["sh", f"{ROOT}/scripts/build-rootfs.sh", rootfs], check=True,
                       capture_output=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        dk("import", "-", f"{PFX}dimg:1", stdin=tar.stdout)
        tar.wait()

        def start(name):
            try:
                dk("run", "-d", "--name", name, "--hostname", f"{name}h", "--network", "none",
                   "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                   f"{PFX}dimg:1", "sleep", "300")
            except RuntimeError as e:
                pytest.skip(f"docker cannot run a container here: {e}")
            return int(dk("inspect", "-f", "{{.State.Pid}}", name).stdout)
        dk.start, dk.env = start, {"DOCKER_HOST": env["DOCKER_HOST"]}
        dk.name = f"{PFX}db"
        dk.pid = start(dk.name)
        yield dk
    finally:
        dk("rm", "-f", *dk("ps", "-aq", check=False).stdout.split(), check=False)
        dk("rmi", "-f", f"{PFX}dimg:1", check=False)
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        for mp in sorted((m for m in mount_points() if m.startswith(base + "/")), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        for p in made_by_dockerd:
            if not existed[p]:
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else \
                    (os.unlink(p) if os.path.exists(p) else None)


def test_docker_names_join_open_pids_over_the_engine_api(docker):
    label = f"docker:{docker.name}"
    sh = lambda *a: run_nsshell(*a, env=docker.env)  # noqa: E731
    r = sh("-c", "ls --json")
    assert r.rc == 0, r
    rows = json_docs(r.out)[0]
    rows = rows.get("namespaces", rows) if isinstance(rows, dict) else rows
    named = {(row["type"], row["ns"]) for row in rows if label in row["names"]}
    assert named == set(_inodes(docker.pid).items()), r
    r = sh("-c", f"join {label}; run hostname; leave; open {label} as {PFX}db; "
                 f"pids {PFX}db; show uts {label}")
    assert r.rc == 0 and f"{docker.name}h" in r.out.splitlines(), r
    assert str(docker.pid) in r.out and label in r.out, r
    r = sh("--complete", f"show docker:{PFX}")
    assert label in [l.split("\t")[0] for l in r.out.splitlines()], r
    name = f"{PFX}dgone"
    docker.start(name)
    assert f"docker:{name}" in sh("-c", "ls uts").out
    docker("rm", "-f", name)
    r = sh("-c", f"ls uts; show docker:{name}")
    assert f"docker:{name}" not in r.out and r.rc == 1 and f"no docker '{name}'" in r.err, r


# -- rootless podman: a user's own containers, as that user ----------------------------------

def test_rootless_podman_names_and_join_as_the_user(podman):
    """uid 65534 runs its own podman container (single-uid mapping: no subuids here);
    nsshell as that uid names it and joins it (the rootless user namespace too)."""
    import pwd  # noqa: F401 - uid 65534 exists (conftest's NOBODY)
    from conftest import NOBODY
    base = tempfile.mkdtemp(prefix=f"{PFX}r-", dir="/tmp")
    lock = f"/dev/shm/libpod_rootless_lock_{NOBODY}"
    lock_existed = os.path.exists(lock)
    for d in ("home", "xdg"):
        os.mkdir(f"{base}/{d}", 0o700)
        os.chown(f"{base}/{d}", NOBODY, NOBODY)
    env = {"PATH": os.environ["PATH"], "HOME": f"{base}/home",
           "XDG_RUNTIME_DIR": f"{base}/xdg", "NSSHELL_TEST_RUN": RUN_MARK, "PYTHONPATH": ROOT}
    as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

    def pm(*args, stdin=None, check=True):
        p = subprocess.run(as_user + ["podman", *args], env=env, capture_output=True, text=True,
                           stdin=stdin, timeout=60, cwd=base)
        if check and p.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {p.stderr.strip()}")
        return p
    name = f"{PFX}rl"
    try:
        rootfs = f"{base}/rootfs"
        subprocess.run(["sh", f"{ROOT}/scripts/build-rootfs.sh", rootfs], check=True,
                       capture_output=True)
        os.chmod(base, 0o755)
        tar = subprocess.Popen(["tar", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs,
                                "-c", "."], stdout=subprocess.PIPE)
        try:
            pm("import", "-", f"{PFX}rimg:1", stdin=tar.stdout)
            pm("run", "-d", "--name", name, "--hostname", f"{name}h", *RUN_OPTS,
               f"localhost/{PFX}rimg:1", "sleep", "300")
        except RuntimeError as e:
            pytest.skip(f"rootless podman cannot run a container here: {e}")
        finally:
            tar.wait()
        pid = int(pm("inspect", "-f", "{{.State.Pid}}", name).stdout)
        r = subprocess.run(as_user + [os.path.join(ROOT, ".venv", "bin", "nsshell"), "-c",
                                      f"ls uts; join podman:{name}; run hostname; "
                                      f"pids podman:{name}"],
                           env=env, capture_output=True, text=True, timeout=60, cwd=base)
        assert r.returncode == 0, r
        uts = str(os.stat(f"/proc/{pid}/ns/uts").st_ino)
        assert [l for l in r.stdout.splitlines() if l.startswith(uts) and f"podman:{name}" in l]
        assert f"{name}h" in r.stdout.splitlines() and str(pid) in r.stdout, r
        # root's session does not see the user's containers (podman as the calling user)
        assert f"podman:{name}" not in podman.nsshell("-c", "ls uts").out
    finally:
        pm("rm", "-a", "-f", "-t", "0", check=False)
        pm("rmi", "-a", "-f", check=False)
        try:  # rootless podman's pause process, holding its user namespace
            with open(f"{base}/xdg/libpod/tmp/pause.pid") as f:
                os.kill(int(f.read()), 9)
        except (OSError, ValueError):
            pass
        shutil.rmtree(base, ignore_errors=True)
        if not lock_existed and os.path.exists(lock):
            os.unlink(lock)


# -- the plugin API: REF schemes and name sources ----------------------------------------------

def test_ref_scheme_and_name_source_api():
    """A scheme resolves to a process's namespaces, labelled SCHEME:REST; an unknown
    REST is one clear error; completion offers the scheme (no space after it) and then
    its names; a name source names namespaces in a scan; rollback removes both."""
    from nsshell import commands  # noqa: F401 - the built-ins (join)
    from nsshell.complete import complete_line
    from nsshell.core.look import discover
    from nsshell.errors import NotFoundError
    from nsshell.kernel import nstypes
    from nsshell.plugin import PluginAPI
    from nsshell.session import Session
    me = os.getpid()
    scheme = f"{PFX}s"
    api = PluginAPI(scheme)
    api.add_ref_scheme(scheme, lambda s, rest: me if rest == "me" else None,
                       lambda s, prefix: [(n, "d") for n in ("me", "other") if n.startswith(prefix)],
                       what="test scheme")
    net = os.stat("/proc/self/ns/net").st_ino
    api.add_name_source(lambda s: [("net", net, f"{scheme}:me")])
    sess = Session()
    try:
        got = sess.resolve(f"{scheme}:me")
        assert got.label == f"{scheme}:me" and got.handles["net"].nsid.ino == net
        assert {h.origin for h in got.handles.values()} == {f"{scheme}:me"}
        with pytest.raises(NotFoundError, match=f"no {scheme} 'nope'"):
            sess.resolve(f"{scheme}:nope")
        c = {x.text: x for x in complete_line(sess, f"join {scheme[:-1]}").candidates}
        assert c[f"{scheme}:"].suffix == "" and c[f"{scheme}:"].meta == "test scheme"
        c = [x.text for x in complete_line(sess, f"join {scheme}:m").candidates]
        assert c == [f"{scheme}:me"]
        scan = discover.scan((nstypes.NET,), relations=False)
        assert f"{scheme}:me" in scan.get("net", net).names
    finally:
        sess.close_all()
        api.rollback()
    sess = Session()
    try:
        with pytest.raises(NotFoundError, match="no namespace set named"):
            sess.resolve(f"{scheme}:me")
        assert f"{scheme}:me" not in discover.scan((nstypes.NET,), relations=False).get("net", net).names
    finally:
        sess.close_all()


def test_engine_answers_are_parsed_strictly():
    """Chunked HTTP bodies (the Engine API's HTTP/1.1 answers) and names: only what
    the engines allow is printed or matched."""
    from nsshell_containers import engines
    assert engines._dechunk(b"4\r\n[{\"a\r\n4;x=1\r\n\":1}\r\n1\r\n]\r\n0\r\n\r\n") == b'[{"a":1}]'
    assert engines.ok_name("web-1.a_b") and engines.ok_name("default/nginx/app", 3)
    for bad in ("", "-x", "a b", "a\nb", "a/b", "\x1b[31m"):
        assert not engines.ok_name(bad), bad
    assert engines.k8s_name({"io.kubernetes.pod.namespace": "ns", "io.kubernetes.pod.name": "p",
                             "io.kubernetes.container.name": "POD"}) == "ns/p"
    assert engines.k8s_name({"io.kubernetes.cri.sandbox-namespace": "ns",
                             "io.kubernetes.cri.sandbox-name": "p",
                             "io.kubernetes.cri.container-type": "sandbox"}) == "ns/p"
    assert engines.k8s_name({"org.opencontainers.image.title": "x"}) is None
